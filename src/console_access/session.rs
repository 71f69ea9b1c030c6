//! One admitted session: who it is, its counters, the connection it reads with deadlines,
//! and the line loop ([`run_session`]) that caps, gates and runs each line.

use super::*;

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

pub(super) fn bump(c: &AtomicU64) {
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

/// Who is at the other end of an admitted connection, as the session sees it.
#[derive(Debug)]
pub struct Who {
    /// How the log names it: `tcp 127.0.0.1:40000 uid 0`, `tcp 198.18.0.9:40000 (remote)`.
    pub name: String,
    /// How the log limit and the password backoff key it: `uid 1000`, `198.18.0.9`.
    pub(super) key: String,
    /// Root or the daemon's user: no password backoff.
    pub(super) privileged: bool,
    /// On another host: it must give the password within [`Limits::auth_time`], holding an
    /// unauthenticated slot until then and a session slot after.
    pub(super) remote: bool,
    pub(super) slot: std::sync::Mutex<Option<Slot>>,
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
    pub(super) conn: S,
    pub(super) until: Instant,
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

pub(super) fn backoff_line(key: &str, left: Duration) -> String {
    format!(
        "error: too many wrong passwords from {key}; try again in {} s; closing the session",
        left.as_secs().max(1)
    )
}
