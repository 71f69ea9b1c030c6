//! The front end's console connection: one line-based session with a daemon (TCP or unix
//! socket), word quoting, and handing the session's rules and file lists over.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cli::ConsoleAddr;
use crate::filter::RuleSpec;

/// A line-based console connection.
pub struct Console {
    r: Box<dyn BufRead>,
    w: Box<dyn Write>,
    /// `--timeout`: no line from the daemon for this long ends the run (exit 30).
    pub timeout: Option<Duration>,
    /// `-q`: no "still waiting" line on stderr.
    pub quiet: bool,
    set_timeout: Box<dyn Fn(Option<Duration>) -> std::io::Result<()>>,
    /// The address, for messages.
    addr: String,
}

/// How long the front end waits on a silent daemon before it says it is still waiting.
pub const STILL_WAITING: Duration = Duration::from_secs(5);

/// The daemon went quiet for longer than `--timeout`.
#[derive(Debug)]
pub struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out waiting for the daemon")
    }
}

impl std::error::Error for TimedOut {}

impl Console {
    /// Connects (TCP `HOST:PORT` or a unix socket path) and authenticates if asked.
    pub fn connect(addr: &ConsoleAddr, password_file: Option<&std::path::Path>) -> Result<Self> {
        Self::connect_with(addr, password_file, None, false)
    }

    /// As [`Console::connect`], with `--timeout` (a silent daemon ends the wait with
    /// [`TimedOut`]) and `-q` in force from the first line on.
    pub fn connect_with(
        addr: &ConsoleAddr,
        password_file: Option<&std::path::Path>,
        timeout: Option<Duration>,
        quiet: bool,
    ) -> Result<Self> {
        type Setter = Box<dyn Fn(Option<Duration>) -> std::io::Result<()>>;
        // Nothing is sent before the console's owner is checked (crate::console_trust).
        let trust = crate::console_trust::Trust::from_config()?;
        let (r, w, set_timeout): (Box<dyn BufRead>, Box<dyn Write>, Setter) = match addr {
            ConsoleAddr::Tcp(a) => {
                let addrs: Vec<_> = std::net::ToSocketAddrs::to_socket_addrs(a.as_str())?.collect();
                let s: TcpStream = crate::console_trust::connect_tcp(
                    a,
                    &addrs,
                    Duration::from_millis(500),
                    &trust,
                )?;
                // Each command leaves in one write, at once (no Nagle wait for an ACK).
                let _ = s.set_nodelay(true);
                let t = s.try_clone()?;
                (
                    Box::new(BufReader::new(s.try_clone()?)),
                    Box::new(s),
                    Box::new(move |d| t.set_read_timeout(d)),
                )
            }
            ConsoleAddr::Unix(p) => {
                let s = UnixStream::connect(p)
                    .with_context(|| format!("no daemon answers on {}", p.display()))?;
                crate::console_trust::check_unix(p, &s, &trust)?;
                let t = s.try_clone()?;
                (
                    Box::new(BufReader::new(s.try_clone()?)),
                    Box::new(s),
                    Box::new(move |d| t.set_read_timeout(d)),
                )
            }
        };
        let mut c = Console {
            r,
            w,
            timeout,
            quiet,
            set_timeout,
            addr: addr.to_string(),
        };
        if let Some(pf) = password_file {
            let pw = crate::secret_file::read_password(pf)?;
            let last = c.command(&format!("password {}", quote(pw.as_str())), |_| {})?;
            if last != "ok" {
                bail!(
                    "console {addr} refused the password: {}",
                    last.trim_start_matches("error: ")
                );
            }
        }
        Ok(c)
    }

    /// Sends one command; calls `line` for every line before the final one, which it returns.
    pub fn command(&mut self, cmd: &str, mut line: impl FnMut(&str)) -> Result<String> {
        self.w.write_all(format!("{cmd}\n").as_bytes())?;
        self.w.flush()?;
        let word = cmd.split_whitespace().next().unwrap_or("").to_string();
        let mut buf = String::new();
        let mut last_line = Instant::now();
        let mut warned = self.quiet;
        loop {
            // Wake for whichever comes first: `--timeout`, or the time to say that the
            // daemon has been silent for a while.
            let quiet_for = last_line.elapsed();
            let to_timeout = self.timeout.map(|t| t.saturating_sub(quiet_for));
            let to_warn = (!warned).then(|| STILL_WAITING.saturating_sub(quiet_for));
            let wait = match (to_timeout, to_warn) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            (self.set_timeout)(wait.map(|d| d.max(Duration::from_millis(1))))?;
            match self.r.read_line(&mut buf) {
                Ok(0) => bail!("the daemon closed the console"),
                Ok(_) => last_line = Instant::now(),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    let quiet_for = last_line.elapsed();
                    if self.timeout.is_some_and(|t| quiet_for >= t) {
                        return Err(TimedOut.into());
                    }
                    if !warned && quiet_for >= STILL_WAITING {
                        warned = true;
                        eprintln!(
                            "makuo: still waiting for the daemon on {} to answer '{}' ({}s so far; \
                             --timeout S gives up)",
                            self.addr,
                            crate::escape::text_str(&word),
                            quiet_for.as_secs()
                        );
                    }
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            let l = buf.trim_end_matches(['\r', '\n']).to_string();
            buf.clear();
            let l = l.as_str();
            if l == "ok" || l.starts_with("error:") {
                return Ok(l.to_string());
            }
            line(l);
        }
    }
}

/// Quotes a word for the console.
pub fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Replaces the console session's rules with `rules`, in order.
pub(super) fn send_rules(c: &mut Console, rules: &[RuleSpec], console: &str) -> Result<()> {
    // The first answer also says whether this console lets us in at all.
    let last = c.command("exclude clear", |_| {})?;
    if last != "ok" {
        bail!("console {console}: {}", last.trim_start_matches("error: "));
    }
    for r in rules {
        let (words, text) = r.console_words();
        let last = c.command(&format!("{words} {}", quote(text)), |_| {})?;
        if last != "ok" {
            bail!("daemon refused rule {text}: {last}");
        }
    }
    Ok(())
}

/// Hands a `--files-from` list to the console session, a few dozen paths a line.
pub(super) fn send_files(c: &mut Console, paths: &[String]) -> Result<()> {
    c.command("files clear", |_| {})?;
    let mut line = String::new();
    let mut flush = |line: &mut String| -> Result<()> {
        if !line.is_empty() {
            let last = c.command(&format!("files add{line}"), |_| {})?;
            if last != "ok" {
                bail!("daemon refused the --files-from list: {last}");
            }
            line.clear();
        }
        Ok(())
    };
    for p in paths {
        line.push(' ');
        line.push_str(&quote(p));
        // The console takes lines of at most 4096 bytes.
        if line.len() > 2048 {
            flush(&mut line)?;
        }
    }
    flush(&mut line)
}
