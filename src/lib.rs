//! makuo: push a file tree to every live member of a cluster at once over UDP multicast.
//!
//! Layers, bottom up:
//! - [`proto`]: the protocol engine, a sans-IO state machine. It performs no I/O: time is an
//!   argument, datagrams go in and out as byte slices, files pass through a storage trait.
//! - [`net`]: the UDP sockets (group and unicast), batched sends (GSO, `sendmmsg`) and
//!   receives (`recvmmsg`, GRO). Moves opaque datagrams; knows nothing of the protocol.
//! - [`seal`]: cluster keys and the AEAD sealing of every datagram, with replay protection.
//! - [`apply`]: the receiver's file system side: staging, fsync, rename into place, deletes,
//!   all confined to the base directory. [`tree`] and [`filter`]: the sender's walk and
//!   rsync-style include/exclude rules; [`kinds`]: what the walk reads of hard links,
//!   sparse files, devices, specials and attributes.
//! - [`node`]: the driver loop that joins the engine to sockets, keys, clock and files.
//! - [`daemon`] and [`console`]: the long-running member and its telnet-able control port;
//!   [`state`]: what a daemon remembers across restarts (members, last push); [`startup`]:
//!   locks, the console socket, and giving up root (groups, chroot, user).
//! - [`watch`]: inotify on a tree and batched pushes of what changes, below both the front
//!   end's direct mode and the daemon;
//! - [`client`]: the rsync-flavoured front end (via a daemon's console, or direct), which
//!   talks only to a console held by a user it trusts ([`console_trust`]);
//!   [`report`]: per-member results, tables, JSON and exit codes.
//! - [`cli`]: every subcommand and flag, defined once, and the generated man pages and
//!   completions; [`exit`]: the exit-status table; [`escape`]: how names and text from the
//!   network are printed and logged (rsync's `\#ooo`), below both faces.
//! - [`config`]: flags, environment and config file resolved into settings (below both
//!   faces); [`hook`]: the daemon's `--before-commit`/`--after-push` commands, run off the
//!   network loop; [`logging`], [`service`] (systemd readiness, watchdog, signals) and [`metrics`]:
//!   the daemon as a service; [`dropin`]: the `makuosan` and `msync` front doors.
#![warn(missing_docs)]

pub mod apply;
pub mod cli;
pub mod client;
pub mod config;
pub mod console;
pub mod console_access;
pub mod console_throttle;
pub mod console_trust;
pub mod daemon;
pub mod demo;
pub mod dropin;
pub mod escape;
pub mod exit;
pub mod filter;
pub mod hook;
pub mod kinds;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod node;
mod operate;
pub mod owner_match;
pub mod peercred;
pub mod pidfile;
pub mod proto;
pub mod report;
pub mod seal;
pub mod secret_file;
pub mod service;
pub mod startup;
pub mod state;
pub mod tree;
pub mod watch;
