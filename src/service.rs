//! The daemon's life under a service manager: readiness, watchdog keep-alives and status
//! lines to systemd (`$NOTIFY_SOCKET`), and the signals an operator sends (SIGHUP reload,
//! SIGUSR1/SIGUSR2 log level, SIGTERM/SIGINT stop; SIGPIPE is ignored by the Rust runtime).
//!
//! The notify socket is written directly (one datagram per message, the sd_notify(3)
//! protocol) rather than through the `sd-notify` crate, because that crate connects by path
//! on every call and the path (`/run/systemd/notify`) is gone once the daemon has chrooted
//! (`-c`): here the socket is connected once, before the chroot, and kept.
//! Knows nothing of the protocol or the console.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The connection to systemd, if the daemon runs under it (`Type=notify`).
#[derive(Debug, Default)]
pub struct Notifier {
    sock: Option<UnixDatagram>,
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
}

fn connect(path: &std::ffi::OsStr) -> io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path);
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        s.connect_addr(&addr)?;
    } else {
        s.connect(path)?;
    }
    Ok(s)
}

impl Notifier {
    /// Connects to `$NOTIFY_SOCKET` when set, and reads the watchdog interval
    /// (`$WATCHDOG_USEC`, for this process per `$WATCHDOG_PID`). Call before any chroot.
    pub fn from_env() -> io::Result<Notifier> {
        let sock = match std::env::var_os("NOTIFY_SOCKET") {
            Some(p) if !p.is_empty() => Some(connect(&p)?),
            _ => None,
        };
        let pid_ok = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && pid_ok)
            .map(Duration::from_micros);
        Ok(Notifier {
            sock,
            watchdog,
            last_ping: None,
        })
    }

    /// Whether systemd listens.
    pub fn active(&self) -> bool {
        self.sock.is_some()
    }

    /// The watchdog interval systemd asked for.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, msg: &str) {
        if let Some(s) = &self.sock {
            let _ = s.send(msg.as_bytes());
        }
    }

    /// Ready: sockets bound, cluster joined. `status` is shown by `systemctl status`.
    pub fn ready(&mut self, status: &str) {
        self.send(&format!(
            "READY=1\nMAINPID={}\nSTATUS={}",
            std::process::id(),
            one_line(status)
        ));
        self.last_ping = Some(Instant::now());
    }

    /// A status line for `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// A reload (SIGHUP) begins; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
            .unwrap_or(0);
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    /// The daemon is stopping.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Called from the network loop on every turn: sends `WATCHDOG=1` at half the interval,
    /// so a loop that hangs stops the keep-alives and systemd restarts the daemon.
    pub fn keep_alive(&mut self, now: Instant) {
        let Some(w) = self.watchdog else { return };
        if self
            .last_ping
            .is_none_or(|t| now.saturating_duration_since(t) >= w / 2)
        {
            self.send("WATCHDOG=1");
            self.last_ping = Some(now);
        }
    }
}

fn one_line(s: &str) -> String {
    crate::escape::text_str(s).into_owned()
}

/// The signals the daemon acts on, as flags the network loop polls.
#[derive(Debug, Clone)]
pub struct Signals {
    stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
    usr2: Arc<AtomicBool>,
}

/// What arrived since the last [`Signals::take`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arrived {
    /// SIGHUP: reopen the log, reload the config file.
    pub hup: bool,
    /// SIGUSR1: raise the log level.
    pub usr1: bool,
    /// SIGUSR2: lower the log level.
    pub usr2: bool,
}

impl Signals {
    /// Installs the handlers: SIGTERM and SIGINT stop, SIGHUP, SIGUSR1 and SIGUSR2 are noted.
    pub fn install() -> io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
        let s = Signals {
            stop: Arc::new(AtomicBool::new(false)),
            hup: Arc::new(AtomicBool::new(false)),
            usr1: Arc::new(AtomicBool::new(false)),
            usr2: Arc::new(AtomicBool::new(false)),
        };
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register(sig, s.stop.clone())?;
        }
        signal_hook::flag::register(SIGHUP, s.hup.clone())?;
        signal_hook::flag::register(SIGUSR1, s.usr1.clone())?;
        signal_hook::flag::register(SIGUSR2, s.usr2.clone())?;
        Ok(s)
    }

    /// Whether SIGTERM or SIGINT arrived.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The flag SIGTERM and SIGINT set (for loops that only need to know when to stop).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Takes (and clears) what arrived.
    pub fn take(&self) -> Arrived {
        Arrived {
            hup: self.hup.swap(false, Ordering::SeqCst),
            usr1: self.usr1.swap(false, Ordering::SeqCst),
            usr2: self.usr2.swap(false, Ordering::SeqCst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_messages_reach_the_socket_and_watchdog_pings_at_half_the_interval() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("notify");
        let listener = UnixDatagram::bind(&p).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut n = Notifier {
            sock: Some(connect(p.as_os_str()).unwrap()),
            watchdog: Some(Duration::from_secs(10)),
            last_ping: None,
        };
        let mut buf = [0u8; 512];
        let mut recv = || {
            let k = listener.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..k]).into_owned()
        };
        n.ready("up\nforged=1");
        let m = recv();
        assert!(m.starts_with("READY=1\nMAINPID="), "{m}");
        assert!(m.ends_with("STATUS=up\\#012forged=1"), "{m}");
        let t0 = Instant::now();
        n.keep_alive(t0 + Duration::from_secs(1));
        n.keep_alive(t0 + Duration::from_secs(6));
        assert_eq!(recv(), "WATCHDOG=1");
        n.stopping();
        assert_eq!(recv(), "STOPPING=1", "no second ping within 5 s");
        n.reloading();
        assert!(recv().starts_with("RELOADING=1\nMONOTONIC_USEC="));
        // Without systemd nothing is sent and nothing fails.
        let mut quiet = Notifier::default();
        quiet.ready("x");
        quiet.keep_alive(Instant::now());
        assert!(!quiet.active());
    }

    #[test]
    fn abstract_notify_sockets_work() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("makuo-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let s = connect(std::ffi::OsStr::new(&format!("@{name}"))).unwrap();
        s.send(b"READY=1").unwrap();
        let mut buf = [0u8; 16];
        let k = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1");
    }
}
