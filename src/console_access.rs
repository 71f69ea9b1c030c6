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

/// Shortest password of a console reachable from the network (`--console-addr` beyond
/// loopback): anyone who can reach the port may guess.
pub const MIN_NETWORK_PASSWORD: usize = 16;

/// After this many wrong passwords a peer waits [`BACKOFF_FIRST`] before it may try again,
/// twice as long after each further one, at most [`BACKOFF_MAX`]; it is forgotten an hour
/// after its last wrong password.
pub const BACKOFF_FREE: u32 = MAX_TRIES;
/// See [`BACKOFF_FREE`].
pub const BACKOFF_FIRST: Duration = Duration::from_secs(10);
/// See [`BACKOFF_FREE`].
pub const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// Password tries per connection.
pub const MAX_TRIES: u32 = 3;

/// How long the answer to the `n`th wrong password (from 1) is held back: `n` seconds.
pub fn failure_delay(n: u32) -> Duration {
    Duration::from_secs(u64::from(n.min(MAX_TRIES)))
}

/// A console bound beyond loopback is reachable from the network: it needs `-K`, with a
/// password of at least [`MIN_NETWORK_PASSWORD`] bytes.
pub fn check_console_addr(addr: IpAddr, password: Option<&Password>) -> Result<()> {
    if peercred::is_loopback(addr) {
        return Ok(());
    }
    match password {
        None => bail!(
            "console address {addr} is not loopback: a console reachable from the network needs \
             a password; add -K FILE (or keep --console-addr 127.0.0.1)"
        ),
        Some(p) if p.as_str().len() < MIN_NETWORK_PASSWORD => bail!(
            "console address {addr} is not loopback: a console reachable from the network needs \
             a password of at least {MIN_NETWORK_PASSWORD} bytes (the -K file's has {}); \
             e.g. head -c 15 /dev/urandom | base64 > FILE",
            p.as_str().len()
        ),
        Some(_) => Ok(()),
    }
}

/// The group named by `--console-group`.
#[derive(Clone, Debug)]
struct ConsoleGroup {
    name: String,
    gid: u32,
    /// Its members' uids, read once before a chroot (see [`Policy::freeze_group`]); `None`:
    /// looked up in the group database at every connection.
    frozen: Option<std::collections::BTreeSet<u32>>,
}

/// Who may use the console.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The real uid that started the daemon.
    starter: u32,
    group: Option<ConsoleGroup>,
    /// `-K` is set: remote peers may try the password.
    password: bool,
}

/// Who is at the other end of a new connection, as the kernel says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A local process of this uid.
    Uid(u32),
    /// No such socket on this host: a peer on another host (or network namespace).
    Remote,
    /// Cannot be told; why.
    Unknown(String),
}

/// The verdict on a new connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A local process of an allowed uid.
    Local(u32),
    /// A peer on another host (only with `-K`; the password comes next).
    Remote,
    /// Not allowed; why (for the log, never sent).
    Refused(String),
}

impl Policy {
    /// The policy for `--console-group GROUP` (a name or a gid) and whether `-K` is set.
    pub fn new(group: Option<&str>, password: bool) -> Result<Policy> {
        let group = match group {
            None => None,
            Some(g) => Some(match g.parse::<u32>() {
                Ok(gid) => ConsoleGroup {
                    name: Group::from_gid(Gid::from_raw(gid))
                        .ok()
                        .flatten()
                        .map_or_else(|| gid.to_string(), |gr| gr.name),
                    gid,
                    frozen: None,
                },
                Err(_) => match Group::from_name(g) {
                    Ok(Some(gr)) => ConsoleGroup {
                        name: gr.name,
                        gid: gr.gid.as_raw(),
                        frozen: None,
                    },
                    Ok(None) => bail!("--console-group: no such group {g}"),
                    Err(e) => bail!("--console-group {g}: {e}"),
                },
            }),
        };
        Ok(Policy {
            starter: nix::unistd::getuid().as_raw(),
            group,
            password,
        })
    }

    /// Whether a local process of `uid` may use the console.
    pub fn uid_allowed(&self, uid: u32) -> bool {
        self.privileged(uid)
            || self.group.as_ref().is_some_and(|g| match &g.frozen {
                Some(uids) => uids.contains(&uid),
                None => in_group(uid, g.gid),
            })
    }

    /// Reads the members of `--console-group` once, now, and from then on decides by that
    /// list. Called before a chroot: inside it, `/etc/group` and `/etc/passwd` are files
    /// under the base, which a push may write, so they must not decide who reaches the
    /// console. Members are the group's listed users and every user whose primary group it
    /// is (from `/etc/passwd`, read directly: primary-group members known only to another
    /// name service are not seen). Returns how many uids were found.
    pub fn freeze_group(&mut self) -> Result<usize> {
        let Some(g) = &mut self.group else {
            return Ok(0);
        };
        let mut uids = std::collections::BTreeSet::new();
        if let Ok(Some(gr)) = Group::from_gid(Gid::from_raw(g.gid)) {
            for name in &gr.mem {
                if let Ok(Some(u)) = User::from_name(name) {
                    uids.insert(u.uid.as_raw());
                }
            }
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        uids.extend(primary_members(&passwd, g.gid));
        let n = uids.len();
        g.frozen = Some(uids);
        Ok(n)
    }

    fn refusal(&self, uid: u32) -> String {
        match &self.group {
            Some(g) => format!(
                "uid {uid} is not root, not the daemon's user and not in group {}",
                g.name
            ),
            None => {
                format!("uid {uid} is not root and not the daemon's user (see --console-group)")
            }
        }
    }

    fn admit_uid(&self, uid: u32) -> Admission {
        if self.uid_allowed(uid) {
            Admission::Local(uid)
        } else {
            Admission::Refused(self.refusal(uid))
        }
    }

    /// Whether `uid` is let in without looking at the group database: root, or the user who
    /// started the daemon. Such connections skip the connection cap, so refused users holding
    /// connections open cannot lock root out.
    pub fn privileged(&self, uid: u32) -> bool {
        uid == 0 || uid == self.starter
    }

    /// Who is at the other end of a unix-socket connection (its peer credentials).
    pub fn identify_unix(&self, s: &UnixStream) -> Peer {
        match peercred::unix_peer(s) {
            Ok(p) => Peer::Uid(p.uid),
            Err(e) => Peer::Unknown(format!("no peer credentials: {e}")),
        }
    }

    /// Who is at the other end of a TCP connection: the owner of its client socket in the
    /// kernel's socket table, or a remote peer.
    pub fn identify_tcp(&self, s: &TcpStream, lookup: Duration) -> Peer {
        let (Ok(peer), Ok(local)) = (s.peer_addr(), s.local_addr()) else {
            return Peer::Unknown("connection already gone".into());
        };
        match peercred::tcp_owner(peer, local, lookup) {
            Ok(TcpOwner::Local(uid)) => Peer::Uid(uid),
            Ok(TcpOwner::Unknown) => {
                Peer::Unknown("the client socket belongs to no process any more (closed)".into())
            }
            Ok(TcpOwner::NotHere) if peercred::is_loopback(peer.ip()) => {
                Peer::Unknown("the client socket is not in the kernel's socket table".into())
            }
            Ok(TcpOwner::NotHere) => Peer::Remote,
            Err(e) => Peer::Unknown(format!("cannot tell who connected: {e}")),
        }
    }

    /// The verdict on an identified peer (looks up group membership when needed).
    pub fn admit(&self, peer: Peer) -> Admission {
        match peer {
            Peer::Uid(uid) => self.admit_uid(uid),
            Peer::Remote if self.password => Admission::Remote,
            Peer::Remote => Admission::Refused("remote, and no -K password".into()),
            Peer::Unknown(why) => Admission::Refused(why),
        }
    }

    /// The gid of `--console-group`, if given: the `-U` socket is made that group, mode
    /// 0660, so members can connect (its peer check still applies).
    pub fn group_gid(&self) -> Option<u32> {
        self.group.as_ref().map(|g| g.gid)
    }
}

/// The uids of the `/etc/passwd` lines (`name:pw:uid:gid:...`) whose primary group is `gid`.
fn primary_members(passwd: &str, gid: u32) -> Vec<u32> {
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let (uid, g) = (
                f.get(2)?.parse::<u32>().ok()?,
                f.get(3)?.parse::<u32>().ok()?,
            );
            (g == gid).then_some(uid)
        })
        .collect()
}

/// Whether the user `uid` has `gid` as primary group or as a supplementary group.
fn in_group(uid: u32, gid: u32) -> bool {
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    if user.gid.as_raw() == gid {
        return true;
    }
    let Ok(name) = CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .is_ok_and(|groups| groups.iter().any(|g| g.as_raw() == gid))
}

/// Console counters, shown by `status`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Sessions admitted.
    pub sessions: AtomicU64,
    /// Connections refused by the user check.
    pub refused: AtomicU64,
    /// Sessions ended by a line that is not a console command.
    pub not_a_command: AtomicU64,
    /// Wrong passwords.
    pub bad_password: AtomicU64,
    /// Sessions ended by an over-long line.
    pub too_long: AtomicU64,
    /// Sessions closed for idling.
    pub idle: AtomicU64,
    /// Connections turned away because too many were open.
    pub busy: AtomicU64,
    /// Connections and tries turned away because their peer gave too many wrong passwords.
    pub backoff: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    /// The `status` line.
    pub fn line(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "console sessions {} refused {} not-a-command {} bad-password {} too-long {} idle {} \
             busy {} backoff {}",
            g(&self.sessions),
            g(&self.refused),
            g(&self.not_a_command),
            g(&self.bad_password),
            g(&self.too_long),
            g(&self.idle),
            g(&self.busy),
            g(&self.backoff)
        )
    }
}

/// Why a session was answered with an error (counted and logged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// A line that is not a console command.
    NotACommand,
    /// A wrong password.
    WrongPassword,
}

/// What to do with one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Run this request (the session is authenticated, or needs no password).
    Run(Request),
    /// Wait, write this final line, then close the session or go on.
    Answer {
        /// Hold the answer back this long.
        wait: Duration,
        /// The line (`ok` or `error: ...`).
        line: String,
        /// End the session after it.
        close: bool,
        /// What to count.
        note: Option<Note>,
    },
}

impl Verdict {
    fn answer(line: impl Into<String>) -> Verdict {
        Verdict::Answer {
            wait: Duration::ZERO,
            line: line.into(),
            close: false,
            note: None,
        }
    }
}

/// A session's state before and after the password, as a line-by-line state machine (no
/// I/O: the caller reads lines, sleeps and writes).
#[derive(Debug)]
pub struct Gate<'a> {
    password: Option<&'a Password>,
    authed: bool,
    failures: u32,
}

impl<'a> Gate<'a> {
    /// A new session; `password` is the daemon's `-K`.
    pub fn new(password: Option<&'a Password>) -> Gate<'a> {
        Gate {
            password,
            authed: password.is_none(),
            failures: 0,
        }
    }

    /// Whether the session may run commands.
    pub fn authed(&self) -> bool {
        self.authed
    }

    /// The verdict on one line (as read: bytes, without its newline).
    pub fn line(&mut self, line: &[u8]) -> Verdict {
        let req = match console::parse_line(line) {
            Ok(r) => r,
            Err(ParseError::NotACommand(m)) => {
                return Verdict::Answer {
                    wait: Duration::ZERO,
                    line: format!("error: {m}; closing the session"),
                    close: true,
                    note: Some(Note::NotACommand),
                }
            }
            Err(ParseError::Usage(m)) => return Verdict::answer(format!("error: {m}")),
        };
        if self.authed {
            return Verdict::Run(req);
        }
        match req {
            Request::Password(p) => {
                if self.password.is_some_and(|pw| pw.matches(p.as_bytes())) {
                    self.authed = true;
                    return Verdict::answer("ok");
                }
                self.failures += 1;
                let close = self.failures >= MAX_TRIES;
                Verdict::Answer {
                    wait: failure_delay(self.failures),
                    line: if close {
                        format!(
                            "error: wrong password; closing the session after {MAX_TRIES} tries"
                        )
                    } else {
                        "error: wrong password".into()
                    },
                    close,
                    note: Some(Note::WrongPassword),
                }
            }
            Request::Nothing => Verdict::Run(Request::Nothing),
            Request::Quit => Verdict::Answer {
                wait: Duration::ZERO,
                line: "ok".into(),
                close: true,
                note: None,
            },
            _ => Verdict::answer("error: password required (password SECRET)"),
        }
    }
}

/// Who is at the other end of an admitted connection, as the session sees it.
#[derive(Debug)]
pub struct Who {
    /// How the log names it: `tcp 127.0.0.1:40000 uid 0`, `tcp 198.18.0.9:40000 (remote)`.
    pub name: String,
    /// How the log limit and the password backoff key it: `uid 1000`, `198.18.0.9`.
    key: String,
    /// Root or the daemon's user: no password backoff.
    privileged: bool,
    /// On another host: it must give the password within [`Limits::auth_time`], holding an
    /// unauthenticated slot until then and a session slot after.
    remote: bool,
    slot: std::sync::Mutex<Option<Slot>>,
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Who {
    /// A peer for tests and tools: local, not privileged, holding no slot.
    pub fn local(name: &str, uid: u32) -> Who {
        Who {
            name: name.to_string(),
            key: format!("uid {uid}"),
            privileged: false,
            remote: false,
            slot: std::sync::Mutex::new(None),
        }
    }
}

/// A console connection: TCP or unix.
pub trait Conn: Read + Write + Send + Sized + 'static {
    /// Another handle on the same connection.
    fn try_clone(&self) -> io::Result<Self>;
    /// `SO_RCVTIMEO`.
    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()>;
    /// `SO_SNDTIMEO`.
    fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()>;
}

impl Conn for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }
    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, d)
    }
    fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, d)
    }
}

impl Conn for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }
    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, d)
    }
    fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, d)
    }
}

/// Reads from a connection until a deadline (reset for every line), not for a fixed time per
/// read, so a client trickling bytes cannot hold a session forever.
struct Deadline<S> {
    conn: S,
    until: Instant,
}

impl<S: Conn> Read for Deadline<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.conn
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        self.conn.read(buf)
    }
}

/// What to count a closing line as in the log limit.
fn log_kind(note: Option<Note>) -> &'static str {
    match note {
        Some(Note::WrongPassword) => "wrong passwords",
        Some(Note::NotACommand) => "sessions ended by a foreign line",
        None => "sessions closed",
    }
}

/// Serves one admitted session: reads lines (capped, with the idle deadline), passes them
/// through the [`Gate`], and hands requests to `handle` (which writes the answer) until
/// `quit`, EOF, an error or a verdict that closes the session. A peer on another host must
/// give the password within [`Limits::auth_time`] of connecting, and then takes a session
/// slot (it held an unauthenticated one until then). Wrong passwords count against the
/// peer ([`crate::console_throttle::Backoff`]).
pub fn run_session<S: Conn>(
    srv: &Server,
    conn: S,
    who: &Who,
    mut handle: impl FnMut(Request, &mut S) -> io::Result<()>,
) {
    let limits = &srv.limits;
    let started = Instant::now();
    let Ok(mut w) = conn.try_clone() else {
        return;
    };
    let _ = w.set_write_timeout(Some(limits.write_timeout));
    let mut r = BufReader::new(Deadline {
        conn,
        until: Instant::now(),
    });
    let mut gate = Gate::new(srv.password.as_ref());
    let mut line = Vec::with_capacity(256);
    loop {
        let pre_auth = who.remote && !gate.authed();
        let mut until = Instant::now() + limits.idle;
        if pre_auth {
            until = until.min(started + limits.auth_time);
        }
        r.get_mut().until = until;
        let was_authed = gate.authed();
        let mut verdict = match console::read_line(&mut r, limits.max_line, &mut line) {
            Ok(Input::Line) => srv
                .held_back(who, &gate, &line)
                .unwrap_or_else(|| gate.line(&line)),
            Ok(Input::TooLong) => {
                bump(&srv.stats.too_long);
                Verdict::Answer {
                    wait: Duration::ZERO,
                    line: format!(
                        "error: line longer than {} bytes; closing the session",
                        limits.max_line
                    ),
                    close: true,
                    note: None,
                }
            }
            Ok(Input::Eof) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                bump(&srv.stats.idle);
                let line = if pre_auth {
                    format!(
                        "error: no password within {} s; closing the session",
                        limits.auth_time.as_secs()
                    )
                } else {
                    format!(
                        "error: no complete line for {} s; closing the session",
                        limits.idle.as_secs()
                    )
                };
                Verdict::Answer {
                    wait: Duration::ZERO,
                    line,
                    close: true,
                    note: None,
                }
            }
            Err(_) => break,
        };
        if !was_authed && gate.authed() {
            srv.throttle().backoff.succeeded(&who.key);
            if who.remote {
                // From the unauthenticated pool to a session of its own.
                let slot = srv
                    .sessions
                    .take_upto(limits.max_sessions.saturating_sub(limits.reserved));
                let mut held = who.slot.lock().unwrap_or_else(|e| e.into_inner());
                match slot {
                    Some(s) => *held = Some(s),
                    None => {
                        bump(&srv.stats.busy);
                        verdict = Verdict::Answer {
                            wait: Duration::ZERO,
                            line: format!(
                                "error: too many console sessions ({}); try again later",
                                limits.max_sessions
                            ),
                            close: true,
                            note: None,
                        };
                    }
                }
            }
        }
        match verdict {
            Verdict::Run(req) => {
                let quit = matches!(req, Request::Quit);
                if handle(req, &mut w).is_err() || quit {
                    break;
                }
            }
            Verdict::Answer {
                wait,
                mut line,
                mut close,
                note,
            } => {
                match note {
                    Some(Note::NotACommand) => bump(&srv.stats.not_a_command),
                    Some(Note::WrongPassword) => bump(&srv.stats.bad_password),
                    None => {}
                }
                if note == Some(Note::WrongPassword) && !who.privileged {
                    let now = Instant::now();
                    let mut t = srv.throttle();
                    t.backoff.failed(now, &who.key);
                    if let (Some(left), false) = (t.backoff.wait(now, &who.key), close) {
                        bump(&srv.stats.backoff);
                        close = true;
                        line = backoff_line(&who.key, left);
                    }
                }
                if close || note.is_some() {
                    srv.log_limited(
                        &who.key,
                        log_kind(note),
                        format_args!("console {who}: {line}"),
                    );
                }
                std::thread::sleep(wait);
                if writeln!(w, "{line}").is_err() || close {
                    break;
                }
            }
        }
    }
}

fn backoff_line(key: &str, left: Duration) -> String {
    format!(
        "error: too many wrong passwords from {key}; try again in {} s; closing the session",
        left.as_secs().max(1)
    )
}

/// A count of things in use, with a cap.
#[derive(Debug)]
struct Slots {
    used: AtomicUsize,
    max: usize,
}

/// One taken slot, given back on drop.
#[derive(Debug)]
struct Slot(Arc<Slots>);

impl Slots {
    fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            used: AtomicUsize::new(0),
            max,
        })
    }

    fn take(self: &Arc<Self>) -> Option<Slot> {
        self.take_upto(self.max)
    }

    /// A slot, if fewer than `limit` (at most the cap) are taken.
    fn take_upto(self: &Arc<Self>, limit: usize) -> Option<Slot> {
        let limit = limit.min(self.max);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The log limit and the password backoff of a daemon's console.
#[derive(Debug)]
pub struct Throttle {
    /// Log lines per peer.
    pub log: LogLimit,
    /// Wrong passwords per peer.
    pub backoff: Backoff,
}

/// What every console connection of a daemon shares: the policy, the password, the limits,
/// the counters and the slots.
#[derive(Debug)]
pub struct Server {
    /// Who may connect.
    pub policy: Policy,
    /// `-K`.
    pub password: Option<Password>,
    /// The caps.
    pub limits: Limits,
    /// The counters.
    pub stats: Stats,
    sessions: Arc<Slots>,
    connections: Arc<Slots>,
    /// Peers on other hosts that have not given the password yet.
    unauthenticated: Arc<Slots>,
    throttle: std::sync::Mutex<Throttle>,
}

impl Server {
    /// A server with these rules and limits.
    pub fn new(policy: Policy, password: Option<Password>, limits: Limits) -> Arc<Server> {
        Arc::new(Server {
            sessions: Slots::new(limits.max_sessions),
            connections: Slots::new(limits.max_connections),
            unauthenticated: Slots::new(limits.unauthenticated),
            throttle: std::sync::Mutex::new(Throttle {
                log: LogLimit::new(limits.log_window),
                backoff: Backoff::new(
                    BACKOFF_FREE,
                    BACKOFF_FIRST,
                    BACKOFF_MAX,
                    Duration::from_secs(3600),
                ),
            }),
            policy,
            password,
            limits,
            stats: Stats::default(),
        })
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs `line` if it is the first of its kind from peer `key` in the log window (the
    /// others are counted), after the counts of windows that have ended.
    fn log_limited(&self, key: &str, what: &'static str, line: impl std::fmt::Display) {
        let (full, summaries) = self.throttle().log.note(Instant::now(), key, what);
        for l in summaries {
            log(1, l);
        }
        if full {
            log(1, line);
        }
    }

    /// Logs the counts of log windows that have ended (called every few seconds).
    pub fn flush_log(&self) {
        let lines = self.throttle().log.due(Instant::now());
        for l in lines {
            log(1, l);
        }
    }

    /// Logs every count still pending (at shutdown).
    pub fn drain_log(&self) {
        let lines = self.throttle().log.drain(Instant::now());
        for l in lines {
            log(1, l);
        }
    }

    /// Before the password: a password line from a peer that must still wait is answered
    /// without being tried.
    fn held_back(&self, who: &Who, gate: &Gate<'_>, line: &[u8]) -> Option<Verdict> {
        if gate.authed() || who.privileged {
            return None;
        }
        if !matches!(console::parse_line(line), Ok(Request::Password(_))) {
            return None;
        }
        let left = self.throttle().backoff.wait(Instant::now(), &who.key)?;
        bump(&self.stats.backoff);
        Some(Verdict::Answer {
            wait: Duration::ZERO,
            line: backoff_line(&who.key, left),
            close: true,
            note: None,
        })
    }
}

/// Logs the console's pending log counts every few seconds, for as long as the daemon runs.
pub fn start_log_flush(srv: &Arc<Server>) {
    let srv = srv.clone();
    let _ = std::thread::Builder::new()
        .name("console-log".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            srv.flush_log();
        });
}

/// Says `line` and closes: for TCP, with a FIN after the line, then reads what the client still
/// sends until it closes (at most `limit`), since closing with unread input would send a reset,
/// which can destroy the line before the client has read it.
fn say_and_close<S: Conn>(mut c: S, line: &str, limit: Duration, finish: impl Fn(&S)) {
    let _ = c.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = writeln!(c, "{line}");
    finish(&c);
    drain(&mut c, limit);
}

/// Reads and discards until EOF, an error or `limit`.
fn drain<S: Conn>(c: &mut S, limit: Duration) {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || c.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn tcp_finish(c: &TcpStream) {
    let _ = c.shutdown(std::net::Shutdown::Write);
}

/// Ends a served TCP session: FIN after everything written, then drains the client (at most
/// 2 s) so the last answer is not destroyed by a reset.
pub fn close_tcp(mut c: TcpStream) {
    tcp_finish(&c);
    drain(&mut c, Duration::from_secs(2));
}

/// How the log limit and the backoff key a peer: its uid when local, its address when
/// remote.
fn peer_key(peer: &Peer, addr: Option<IpAddr>) -> String {
    match (peer, addr) {
        (Peer::Uid(uid), _) => format!("uid {uid}"),
        (_, Some(ip)) if matches!(peer, Peer::Remote) => source_key(ip),
        _ => "unidentified peers".into(),
    }
}

/// Admits one connection and, when allowed, runs `session` on it. Runs on the connection's own
/// thread. `name` names the connection in the log, `key` its peer for the log limit and the
/// password backoff.
fn admit_and_serve<S: Conn>(
    srv: &Server,
    conn: S,
    admission: Admission,
    name: String,
    key: String,
    finish: impl Fn(&S),
    session: &(dyn Fn(S, &Who) + Send + Sync),
) {
    let turn_away = |conn: S, line: &str| {
        say_and_close(conn, line, Duration::from_secs(1), &finish);
    };
    let (who, slot) = match admission {
        Admission::Refused(why) => {
            bump(&srv.stats.refused);
            srv.log_limited(
                &key,
                "refused",
                format_args!("console {name}: permission denied: {why}"),
            );
            turn_away(conn, "error: permission denied");
            return;
        }
        Admission::Local(uid) => {
            let privileged = srv.policy.privileged(uid);
            // Root and the daemon's user may also take the reserved sessions.
            let limit = if privileged {
                srv.limits.max_sessions
            } else {
                srv.limits.max_sessions - srv.limits.reserved.min(srv.limits.max_sessions)
            };
            let who = Who {
                name: format!("{name} uid {uid}"),
                key,
                privileged,
                remote: false,
                slot: std::sync::Mutex::new(None),
            };
            (who, srv.sessions.take_upto(limit))
        }
        Admission::Remote => {
            // Not in the `if let`: its guard would live through the block, and
            // `log_limited` takes the lock again.
            let wait = srv.throttle().backoff.wait(Instant::now(), &key);
            if let Some(left) = wait {
                bump(&srv.stats.backoff);
                srv.log_limited(
                    &key,
                    "refused",
                    format_args!("console {name} (remote): too many wrong passwords"),
                );
                turn_away(conn, &backoff_line(&key, left));
                return;
            }
            let Some(slot) = srv.unauthenticated.take() else {
                bump(&srv.stats.busy);
                srv.log_limited(
                    &key,
                    "refused",
                    format_args!("console {name} (remote): too many waiting for the password"),
                );
                let line = format!(
                    "error: too many connections waiting for the password ({}); try again later",
                    srv.limits.unauthenticated
                );
                turn_away(conn, &line);
                return;
            };
            let who = Who {
                name: format!("{name} (remote)"),
                key,
                privileged: false,
                remote: true,
                slot: std::sync::Mutex::new(None),
            };
            (who, Some(slot))
        }
    };
    let Some(slot) = slot else {
        bump(&srv.stats.busy);
        srv.log_limited(
            &who.key,
            "refused",
            format_args!("console {who}: too many sessions"),
        );
        let line = format!(
            "error: too many console sessions ({}); try again later",
            srv.limits.max_sessions
        );
        turn_away(conn, &line);
        return;
    };
    *who.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(slot);
    bump(&srv.stats.sessions);
    log(3, format_args!("console {who}: session opened"));
    session(conn, &who);
}

/// Starts a thread for a new connection. A privileged peer (root, the daemon's user) gets one
/// at once; anyone else only if a connection slot is free, otherwise it is told so and closed
/// at once.
fn spawn_connection<S: Conn>(
    srv: &Arc<Server>,
    mut conn: S,
    peer: &Peer,
    work: impl FnOnce(S) + Send + 'static,
) {
    let privileged = matches!(peer, Peer::Uid(u) if srv.policy.privileged(*u));
    let slot = if privileged {
        None
    } else {
        match srv.connections.take() {
            Some(s) => Some(s),
            None => {
                bump(&srv.stats.busy);
                let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
                let _ = conn.write_all(b"error: too many console connections; try again later\n");
                return;
            }
        }
    };
    let r = std::thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            let _slot = slot;
            work(conn);
        });
    if r.is_err() {
        bump(&srv.stats.busy);
    }
}

/// What serves an admitted session: the connection and who is at the other end.
pub type SessionFn<S> = Arc<dyn Fn(S, &Who) + Send + Sync>;

/// Accepts TCP console connections forever.
pub fn serve_tcp(l: TcpListener, srv: Arc<Server>, session: SessionFn<TcpStream>) {
    for c in l.incoming() {
        let c = match c {
            Ok(c) => c,
            Err(_) => {
                // Out of descriptors or memory: do not spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // Answers are written a line (often a piece of a line) at a time: without
        // TCP_NODELAY, Nagle's algorithm holds a piece until the client's delayed ACK
        // (40 ms on Linux), once or twice per request.
        let _ = c.set_nodelay(true);
        // Asking the kernel is quick; the group database (maybe remote) is asked on the
        // connection's own thread.
        let peer = srv.policy.identify_tcp(&c, srv.limits.lookup);
        let (s2, session) = (srv.clone(), session.clone());
        spawn_connection(&srv, c, &peer.clone(), move |c| {
            let addr = c.peer_addr().ok();
            let name = match addr {
                Some(a) => format!("tcp {a}"),
                None => "tcp ?".into(),
            };
            let key = peer_key(&peer, addr.map(|a| a.ip()));
            let admission = s2.policy.admit(peer);
            let serve = |c: TcpStream, who: &Who| {
                let keep = c.try_clone();
                session(c, who);
                if let Ok(k) = keep {
                    close_tcp(k);
                }
            };
            admit_and_serve(&s2, c, admission, name, key, tcp_finish, &serve);
        });
    }
}

/// Accepts unix-socket console connections forever.
pub fn serve_unix(l: UnixListener, srv: Arc<Server>, session: SessionFn<UnixStream>) {
    for c in l.incoming() {
        let c = match c {
            Ok(c) => c,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let peer = srv.policy.identify_unix(&c);
        let (s2, session) = (srv.clone(), session.clone());
        spawn_connection(&srv, c, &peer.clone(), move |c| {
            let name = match peercred::unix_peer(&c) {
                Ok(p) => format!("unix pid {}", p.pid),
                Err(_) => "unix".into(),
            };
            let key = peer_key(&peer, None);
            let admission = s2.policy.admit(peer);
            let finish = |c: &UnixStream| {
                let _ = c.shutdown(std::net::Shutdown::Write);
            };
            admit_and_serve(&s2, c, admission, name, key, finish, &*session);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    fn pw() -> Password {
        Password::new(b"s3cret!").unwrap()
    }

    #[test]
    fn gate_without_password_runs_commands_and_ends_on_foreign_lines() {
        let mut g = Gate::new(None);
        assert!(g.authed());
        assert_eq!(g.line(b"status"), Verdict::Run(Request::Status));
        assert_eq!(g.line(b""), Verdict::Run(Request::Nothing));
        assert_eq!(g.line(b"   \t"), Verdict::Run(Request::Nothing));
        // A usage error: one line, the session goes on.
        let Verdict::Answer { close, line, .. } = g.line(b"loglevel 12") else {
            panic!()
        };
        assert!(!close && line.starts_with("error: "), "{line}");
        // Another protocol: the session ends.
        for foreign in [
            &b"POST / HTTP/1.1"[..],
            b"GET /sync HTTP/1.0",
            b"Host: 127.0.0.1:5000",
            b"Content-Type: application/x-www-form-urlencoded",
            b"frobnicate",
            b"\x16\x03\x01\x02\x00\x01",
            b"sync\x1b[2J -r .",
            b"\xff\xf4\xff\xfd\x06",
            b"\"sync\" -r .",
        ] {
            match g.line(foreign) {
                Verdict::Answer {
                    close: true,
                    note: Some(Note::NotACommand),
                    line,
                    ..
                } => assert!(line.starts_with("error: ") && line.len() < 200, "{line}"),
                v => panic!("{:?}: {v:?}", String::from_utf8_lossy(foreign)),
            }
        }
    }

    #[test]
    fn gate_with_password_three_tries_growing_delays() {
        let p = pw();
        let mut g = Gate::new(Some(&p));
        assert!(!g.authed());
        assert_eq!(
            g.line(b"status"),
            Verdict::answer("error: password required (password SECRET)")
        );
        assert_eq!(g.line(b""), Verdict::Run(Request::Nothing));
        let mut waits = Vec::new();
        for i in 1..=MAX_TRIES {
            match g.line(b"password wrong1") {
                Verdict::Answer {
                    wait,
                    close,
                    note: Some(Note::WrongPassword),
                    ..
                } => {
                    assert_eq!(close, i == MAX_TRIES);
                    waits.push(wait);
                }
                v => panic!("{v:?}"),
            }
        }
        assert_eq!(
            waits,
            [1, 2, 3].map(Duration::from_secs),
            "the delay grows with every failure"
        );
        assert!(!g.authed());

        let mut g = Gate::new(Some(&p));
        assert!(matches!(
            g.line(b"password nope"),
            Verdict::Answer { close: false, .. }
        ));
        assert_eq!(g.line(b"password \"s3cret!\""), Verdict::answer("ok"));
        assert!(g.authed());
        assert_eq!(g.line(b"status"), Verdict::Run(Request::Status));
        // HTTP before the password ends the session too.
        let mut g = Gate::new(Some(&p));
        assert!(matches!(
            g.line(b"POST / HTTP/1.1"),
            Verdict::Answer { close: true, .. }
        ));
        // quit before the password: ok, closed.
        let mut g = Gate::new(Some(&p));
        assert!(
            matches!(g.line(b"quit"), Verdict::Answer { close: true, line, .. } if line == "ok")
        );
    }

    #[test]
    fn console_address_beyond_loopback_needs_a_long_password() {
        let short = pw();
        let long = Password::new(b"sixteen bytes ok").unwrap();
        for a in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(check_console_addr(a.parse().unwrap(), None).is_ok(), "{a}");
            assert!(check_console_addr(a.parse().unwrap(), Some(&short)).is_ok());
        }
        for a in ["0.0.0.0", "10.0.0.5", "::", "198.18.0.1"] {
            let e = check_console_addr(a.parse().unwrap(), None).unwrap_err();
            assert!(e.to_string().contains("-K"), "{e}");
            let e = check_console_addr(a.parse().unwrap(), Some(&short)).unwrap_err();
            assert!(e.to_string().contains("at least 16 bytes"), "{e}");
            assert!(check_console_addr(a.parse().unwrap(), Some(&long)).is_ok());
        }
    }

    #[test]
    fn policy_allows_root_and_the_starter_and_group_members() {
        let p = Policy::new(None, false).unwrap();
        assert!(p.uid_allowed(0));
        assert!(p.uid_allowed(nix::unistd::getuid().as_raw()));
        if nix::unistd::getuid().is_root() {
            assert!(!p.uid_allowed(65534));
            assert!(p.refusal(65534).contains("--console-group"));
        }
        assert!(Policy::new(Some("no-such-group-makuo"), false).is_err());
        // Root's primary group (gid 0) names root as a member; nobody is not in it.
        let root = Policy::new(Some("0"), false).unwrap();
        assert!(in_group(0, 0));
        if nix::unistd::getuid().is_root() {
            assert_eq!(root.uid_allowed(65534), in_group(65534, 0));
        }
    }

    #[test]
    fn a_frozen_group_decides_by_the_list_read_at_start() {
        let passwd = "root:x:0:0::/root:/bin/sh\nweb:x:1001:33::/:/bin/false\n\
                      bad line\nother:x:1002:1002::/:/bin/false\nx:y:nope:33\n";
        assert_eq!(primary_members(passwd, 33), [1001]);
        assert_eq!(primary_members(passwd, 0), [0]);
        // Frozen, membership no longer follows the group database: gid 0's members as read
        // now, and later lookups (which, inside a chroot, would read files under the base)
        // are never made.
        let mut p = Policy::new(Some("0"), false).unwrap();
        let n = p.freeze_group().unwrap();
        assert!(n >= 1, "root is in its own primary group");
        let frozen = p.group.as_ref().unwrap().frozen.clone().unwrap();
        assert!(frozen.contains(&0));
        if nix::unistd::getuid().is_root() {
            assert_eq!(p.uid_allowed(65534), frozen.contains(&65534));
        }
        p.group.as_mut().unwrap().frozen = Some([4242].into());
        assert!(p.uid_allowed(4242), "decided by the frozen list alone");
    }

    #[test]
    fn limits_are_the_documented_ones() {
        use clap::CommandFactory;
        let help = crate::cli::Cli::command()
            .find_subcommand_mut("daemon")
            .unwrap()
            .render_long_help()
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for want in [
            format!("lines of {} bytes", LIMITS.max_line),
            format!("{} sessions at a time", LIMITS.max_sessions),
            format!("{} s without a complete line", LIMITS.idle.as_secs()),
            format!("at most {MAX_TRIES} tries"),
        ] {
            assert!(help.contains(&want), "daemon --help lacks {want:?}");
        }
    }

    /// A whole session over a socket pair: strict lines, the line cap and the idle deadline.
    #[test]
    fn session_caps_lines_and_idle_time() {
        let policy = Policy::new(None, false).unwrap();
        let limits = Limits {
            idle: Duration::from_millis(300),
            ..LIMITS
        };
        let srv = Server::new(policy, None, limits);
        let run = |input: &[u8], keep_open: bool| -> (String, Duration) {
            let (a, b) = UnixStream::pair().unwrap();
            let s2 = srv.clone();
            let t = std::thread::spawn(move || {
                let start = Instant::now();
                run_session(&s2, b, &Who::local("test", 0), |req, w| match req {
                    Request::Nothing => Ok(()),
                    Request::Status => writeln!(w, "status here\nok"),
                    _ => writeln!(w, "ok"),
                });
                start.elapsed()
            });
            (&a).write_all(input).unwrap();
            if !keep_open {
                a.shutdown(std::net::Shutdown::Write).unwrap();
            }
            let mut out = String::new();
            let mut r = io::BufReader::new(&a);
            let mut l = String::new();
            while r.read_line(&mut l).unwrap_or(0) > 0 {
                out.push_str(&l);
                l.clear();
            }
            (out, t.join().unwrap())
        };
        let (out, _) = run(b"status\r\n\nalive\n", false);
        assert_eq!(out, "status here\nok\nok\n");
        let curl =
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1:5000\r\nContent-Length: 12\r\n\r\n\nsync -r .\n";
        let (out, _) = run(curl, false);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.starts_with("error: 'POST' is not a console command"),
            "{out}"
        );
        let mut long = vec![b'e'; LIMITS.max_line + 10];
        long.extend_from_slice(b"\nstatus\n");
        let (out, _) = run(&long, false);
        assert_eq!(
            out,
            format!(
                "error: line longer than {} bytes; closing the session\n",
                LIMITS.max_line
            )
        );
        // Exactly at the cap is fine.
        let mut at_cap = b"echo ".to_vec();
        at_cap.resize(LIMITS.max_line, b'x');
        at_cap.extend_from_slice(b"\r\nstatus\n");
        let (out, _) = run(&at_cap, false);
        assert_eq!(out, "ok\nstatus here\nok\n");
        // Silence, or a line trickling in forever, is closed after the idle time.
        let (out, took) = run(b"stat", true);
        assert!(out.starts_with("error: no complete line for 0 s"), "{out}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert!(srv.stats.line().contains("idle 1"), "{}", srv.stats.line());
        assert!(
            srv.stats.line().contains("not-a-command 1"),
            "{}",
            srv.stats.line()
        );
        assert!(
            srv.stats.line().contains("too-long 1"),
            "{}",
            srv.stats.line()
        );
    }

    #[test]
    fn slots_are_capped_and_given_back() {
        let s = Slots::new(2);
        let a = s.take().unwrap();
        let _b = s.take().unwrap();
        assert!(s.take().is_none());
        drop(a);
        assert!(s.take().is_some());
    }
}
