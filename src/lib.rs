//! makuo: push a file tree to every live member of a cluster at once over UDP multicast.
//!
//! Layers, bottom up:
//! - [`proto`]: the protocol engine, a sans-IO state machine. It performs no I/O: time is an
//!   argument, datagrams go in and out as byte slices, files pass through a storage trait.
//! - [`net`]: the UDP sockets (group and unicast), batched sends (GSO, `sendmmsg`) and
//!   receives (`recvmmsg`, GRO). Moves opaque datagrams; knows nothing of the protocol.
#![warn(missing_docs)]

pub mod apply;
pub mod filter;
pub mod net;
pub mod proto;
pub mod seal;
pub mod tree;
