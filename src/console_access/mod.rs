//! Who may use the daemon's console, and what one connection may cost.
//!
//! The console runs pushes as the daemon's user (root, usually) on every member, so it is
//! guarded like root:
//! - **Users** ([`Policy`]): root, the user who started the daemon (its real uid at start,
//!   before `-u`), and members of `--console-group` (primary group or supplementary groups in
//!   the group database, looked up for each connection). The peer's uid comes from
//!   `SO_PEERCRED` on the unix socket and from the kernel's socket table for TCP
//!   ([`crate::peercred`]). A TCP peer whose socket is not on this host is *remote*: allowed
//!   only with `-K`, and then only after the password. A loopback peer whose owner cannot be
//!   determined is refused. Anyone refused reads `error: permission denied` and is
//!   disconnected. Both name the socket's *creator*: a connection an allowed user opened and
//!   handed to another process (`SCM_RIGHTS`, an inherited descriptor) is accepted as the
//!   allowed user's (documented in the README; the kernel tells no more).
//! - **Password** (`-K`, [`Gate`]): before it, only `password`, `quit` and blank lines; at most
//!   [`MAX_TRIES`] tries per connection, each failure answered after [`failure_delay`]; a peer
//!   with more wrong passwords than that waits before it may try again, longer each time
//!   ([`crate::console_throttle::Backoff`]). A console reachable from the network needs a
//!   password of at least [`MIN_NETWORK_PASSWORD`] bytes.
//! - **Limits** ([`LIMITS`]): line length, concurrent sessions and connections, idle time, a
//!   write timeout for a client that stops reading. Peers on other hosts wait for the password
//!   in a small pool of their own ([`Limits::unauthenticated`]) and must give it within
//!   [`Limits::auth_time`]; only then do they take a session, so silent or guessing peers
//!   cannot hold the sessions root and local users need. Some sessions are kept for root and
//!   the daemon's user ([`Limits::reserved`]).
//! - **Log**: refusals, wrong passwords and sessions ended for a foreign line are logged once
//!   per peer and window, the rest counted in one line at the window's end
//!   ([`crate::console_throttle::LogLimit`]).
//! - **Strictness**: the first line that is not a console command ends the session (see
//!   [`crate::console`]), so another protocol pointed at the console (an HTTP request from a
//!   browser or `curl`) runs nothing.
//!
//! The accept loops ([`serve_tcp`], [`serve_unix`]) admit each connection on its own thread and
//! hand admitted ones to the daemon's session code, which reads lines through [`run_session`].
//! What a session does with a command lives in `daemon.rs`.

use std::ffi::CString;
use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::unistd::{Gid, Group, Uid, User};

use crate::console::{self, Input, ParseError, Request};
use crate::console_throttle::{source_key, Backoff, LogLimit};
use crate::daemon::log;
use crate::peercred::{self, TcpOwner};
use crate::secret_file::Password;

mod password;
mod policy;
mod server;
mod session;
#[cfg(test)]
mod tests;

pub use password::*;
pub use policy::*;
pub use server::*;
pub use session::*;

/// What one console connection may cost.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest line in bytes; a longer one ends the session.
    pub max_line: usize,
    /// Admitted sessions at a time; one more is told so and disconnected.
    pub max_sessions: usize,
    /// Connections being admitted or refused at a time (each holds a thread for a moment);
    /// beyond it a new connection is closed at once.
    pub max_connections: usize,
    /// A session that sends no complete line for this long is closed.
    pub idle: Duration,
    /// A session whose client stops reading its answers for this long is closed.
    pub write_timeout: Duration,
    /// Longest wait for the kernel's socket table.
    pub lookup: Duration,
    /// Peers on other hosts that have not given the password yet, at a time.
    pub unauthenticated: usize,
    /// How long a peer on another host has, from connecting, to give the password.
    pub auth_time: Duration,
    /// Of `max_sessions`, how many only root and the daemon's user may take.
    pub reserved: usize,
    /// One log line per peer and kind of refusal in this time; the rest are counted.
    pub log_window: Duration,
}

/// The limits every daemon applies (documented in `makuo daemon --help` and the README).
pub const LIMITS: Limits = Limits {
    max_line: console::MAX_LINE,
    max_sessions: 16,
    max_connections: 64,
    idle: Duration::from_secs(300),
    write_timeout: Duration::from_secs(60),
    lookup: Duration::from_secs(1),
    unauthenticated: 4,
    auth_time: Duration::from_secs(10),
    reserved: 4,
    log_window: Duration::from_secs(60),
};
