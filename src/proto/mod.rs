//! The protocol engine: a sans-IO state machine (no sockets, no clock, no files).
//!
//! Time comes in as an argument, datagrams come in through `handle_datagram` and go out
//! through `poll_transmit`, and file contents pass through the [`storage::Storage`] trait.

pub mod manifest;
pub mod storage;
pub mod wire;
