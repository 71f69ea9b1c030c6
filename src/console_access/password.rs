//! The console password (`-K`): what a network-reachable console needs, the gate every
//! line passes before and after it (strict first words, tries, delays), and its verdicts.

use super::*;

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
    pub(super) fn answer(line: impl Into<String>) -> Verdict {
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
    pub(super) password: Option<&'a Password>,
    pub(super) authed: bool,
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
