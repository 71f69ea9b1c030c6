//! makuo: push a file tree to every live member of a cluster at once over UDP multicast.
//!
//! Layers, bottom up:
//! - [`proto`]: the protocol engine, a sans-IO state machine. It performs no I/O: time is an
//!   argument, datagrams go in and out as byte slices, files pass through a storage trait.
//! - [`net`]: the UDP sockets (group and unicast), batched sends (GSO, `sendmmsg`) and
//!   receives (`recvmmsg`, GRO). Moves opaque datagrams; knows nothing of the protocol.
#![warn(missing_docs)]

pub mod apply;
//! - [`cli`]: every subcommand and flag, defined once, and the generated man pages and
//!   completions; [`exit`]: the exit-status table.
#![warn(missing_docs)]

pub mod cli;
pub mod exit;
pub mod filter;
pub mod net;
pub mod proto;
pub mod seal;
pub mod tree;
