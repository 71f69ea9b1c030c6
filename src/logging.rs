//! The daemon's log: one line per event, to stderr in the foreground (with journald's `<N>`
//! priority prefixes when systemd reads it, `JOURNAL_STREAM`), to a file when detached (RFC
//! 3339 times; reopened on SIGHUP, recreating a file that was moved away), or to syslog.
//!
//! The level (0 quiet … 9 debug) decides which lines are written; errors, warnings and
//! notices (start-up) are written at every level. Every line is escaped ([`crate::escape`]):
//! names and errors from the network cannot forge a line. Knows nothing of the protocol.

use std::fmt::Display;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{self as rfs, Mode, OFlags};

/// Highest log level.
pub const MAX_LEVEL: u8 = 9;

/// Level at which each path written or deleted is logged.
pub const PATH_LEVEL: u8 = 5;

/// syslog(3) severities, as journald and syslog read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// `LOG_ERR`.
    Err = 3,
    /// `LOG_WARNING`.
    Warning = 4,
    /// `LOG_NOTICE`.
    Notice = 5,
    /// `LOG_INFO`.
    Info = 6,
    /// `LOG_DEBUG`.
    Debug = 7,
}

impl Severity {
    /// The severity of a line logged at `level`.
    pub fn of_level(level: u8) -> Severity {
        match level {
            0 => Severity::Notice,
            1 => Severity::Info,
            _ => Severity::Debug,
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(1);
static SINK: Mutex<Sink> = Mutex::new(Sink::Stderr {
    journal: false,
    file: None,
});

/// Where lines go.
enum Sink {
    /// Standard error. `journal`: prefix `<N>`, no time (journald adds its own). `file`: the
    /// log file standard error was pointed at, to reopen on SIGHUP.
    Stderr {
        journal: bool,
        file: Option<LogFile>,
    },
    /// A datagram socket connected to syslog (connected before any chroot).
    Syslog(UnixDatagram),
}

/// A log file and the directory it lives in, held open so that it can be recreated by name
/// after a chroot.
pub struct LogFile {
    dir: OwnedFd,
    name: std::ffi::OsString,
    shown: String,
    file: std::fs::File,
}

impl LogFile {
    /// Opens (creating, appending) `path`, and its directory for later reopening.
    pub fn open(path: &Path) -> io::Result<LogFile> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{}: not a file name", path.display())))?
            .to_os_string();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = rfs::open(
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let file = open_in(&dir, &name)?;
        Ok(LogFile {
            dir,
            name,
            shown: path.display().to_string(),
            file,
        })
    }

    /// The file, for pointing standard error and output at it.
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }

    /// The path as given.
    pub fn path(&self) -> &str {
        &self.shown
    }
}

fn open_in(dir: &OwnedFd, name: &std::ffi::OsStr) -> io::Result<std::fs::File> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o640),
    )?;
    Ok(std::fs::File::from(fd))
}

/// The current level.
pub fn level() -> u8 {
    LEVEL.load(Ordering::Relaxed)
}

/// Sets the level (capped at [`MAX_LEVEL`]).
pub fn set_level(n: u8) {
    LEVEL.store(n.min(MAX_LEVEL), Ordering::Relaxed);
}

/// SIGUSR1: one level more (up to 9); returns the new level.
pub fn raise() -> u8 {
    let n = (level() + 1).min(MAX_LEVEL);
    set_level(n);
    n
}

/// SIGUSR2: one level less (down to 0); returns the new level.
pub fn lower() -> u8 {
    let n = level().saturating_sub(1);
    set_level(n);
    n
}

/// Whether a line at `level` would be written.
pub fn enabled(level: u8) -> bool {
    level <= self::level()
}

/// Logs `msg` when `level` is at most the current level.
pub fn log(level: u8, msg: impl Display) {
    if enabled(level) {
        emit(Severity::of_level(level), &msg.to_string());
    }
}

/// Logs an error (at every level).
pub fn error(msg: impl Display) {
    emit(Severity::Err, &msg.to_string());
}

/// Logs a warning (at every level).
pub fn warn(msg: impl Display) {
    emit(Severity::Warning, &msg.to_string());
}

/// Logs a notice (at every level): start-up, shutdown, reloads, level changes.
pub fn notice(msg: impl Display) {
    emit(Severity::Notice, &msg.to_string());
}

/// Whether standard error is the journal stream systemd gave us (`JOURNAL_STREAM` names its
/// device and inode).
pub fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let v = v.to_string_lossy();
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let Ok(st) = rfs::fstat(io::stderr().as_fd()) else {
        return false;
    };
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let ok = dev.parse::<u64>().ok() == Some(st.st_dev as u64)
        && ino.parse::<u64>().ok() == Some(st.st_ino as u64);
    ok
}

/// Lines go to standard error (foreground); with journald prefixes when it is the journal.
pub fn to_stderr() {
    let journal = stderr_is_journal();
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Sink::Stderr {
        journal,
        file: None,
    };
}

/// Lines go to standard error, which the caller has pointed at `file`; [`reopen`] reopens it.
pub fn to_file(file: LogFile) {
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Sink::Stderr {
        journal: false,
        file: Some(file),
    };
}

/// Lines go to the syslog socket at `path` (facility daemon).
pub fn to_syslog(path: &Path) -> io::Result<()> {
    let s = UnixDatagram::unbound()?;
    s.connect(path)?;
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Sink::Syslog(s);
    Ok(())
}

/// SIGHUP: reopens the log file by name (creating it when it was moved away) and points
/// standard output and error at it. `Ok(None)` when there is no log file.
pub fn reopen() -> io::Result<Option<String>> {
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    let Sink::Stderr { file: Some(lf), .. } = &mut *sink else {
        return Ok(None);
    };
    let fresh = open_in(&lf.dir, &lf.name)?;
    nix::unistd::dup2_stderr(&fresh).map_err(io::Error::from)?;
    nix::unistd::dup2_stdout(&fresh).map_err(io::Error::from)?;
    lf.file = fresh;
    Ok(Some(lf.shown.clone()))
}

/// Formats a time as RFC 3339 in UTC with milliseconds: `2026-01-31T23:59:59.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn emit(sev: Severity, msg: &str) {
    // Names, paths and errors from the network are in it: one line, nothing forged.
    let msg = crate::escape::text_str(msg);
    let pid = std::process::id();
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    match &*sink {
        Sink::Stderr { journal: true, .. } => {
            let _ = io::stderr()
                .lock()
                .write_all(format!("<{}>{msg}\n", sev as u8).as_bytes());
        }
        Sink::Stderr { journal: false, .. } => {
            let line = format!("{} makuo[{pid}]: {msg}\n", rfc3339(SystemTime::now()));
            let _ = io::stderr().lock().write_all(line.as_bytes());
        }
        Sink::Syslog(s) => {
            // LOG_DAEMON is facility 3.
            let line = format!("<{}>makuo[{pid}]: {msg}", (3 << 3) | sev as u8);
            if s.send(line.as_bytes()).is_err() {
                // syslog went away: say so once on stderr and keep logging there.
                *sink = Sink::Stderr {
                    journal: false,
                    file: None,
                };
                let _ = writeln!(
                    io::stderr().lock(),
                    "{} makuo[{pid}]: syslog socket failed; logging to stderr: {msg}",
                    rfc3339(SystemTime::now())
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_in_utc() {
        let at = |s: u64, ms: u64| rfc3339(UNIX_EPOCH + Duration::from_millis(s * 1000 + ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000Z");
        assert_eq!(at(1_767_225_599, 0), "2025-12-31T23:59:59.000Z");
    }

    #[test]
    fn levels_go_up_and_down_within_bounds() {
        set_level(8);
        assert_eq!((raise(), raise()), (9, 9));
        set_level(1);
        assert_eq!((lower(), lower()), (0, 0));
        assert!(enabled(0) && !enabled(1));
        set_level(1);
        assert_eq!(Severity::of_level(0), Severity::Notice);
        assert_eq!(Severity::of_level(5), Severity::Debug);
    }

    #[test]
    fn a_log_file_moved_away_is_recreated_by_name() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("makuo.log");
        let lf = LogFile::open(&p).unwrap();
        assert_eq!(lf.path(), p.display().to_string());
        std::fs::rename(&p, d.path().join("makuo.log.1")).unwrap();
        let fresh = open_in(&lf.dir, &lf.name).unwrap();
        drop(fresh);
        assert!(p.exists());
        // A symlink planted at the name is not followed.
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &p).unwrap();
        assert!(open_in(&lf.dir, &lf.name).is_err());
    }
}
