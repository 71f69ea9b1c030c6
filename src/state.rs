//! What a member remembers across restarts, kept in its state directory (never in BASE):
//! the members it has seen (so a push names a down server as failed instead of silently
//! skipping it) and the last push it applied (so a member that is behind is visible).
//!
//! Files are plain text, one record a line, written to a temp file and renamed into place,
//! relative to a descriptor of the directory opened at start: the daemon may chroot (and the
//! state directory need not be inside the chroot). They are read back the same way, never
//! through a symlink, only as regular files and at most [`MAX_STATE_FILE`] bytes: the
//! directory may belong to the daemon's `-u` user, and root reads it at start.
//!
//! The daemon's standing excludes (`makuo exclude add`) are kept here too, one pattern a line
//! in `excludes`, and apply to every push the daemon sends.
//!
//! Remembered members are bounded and age out. A member is kept for ten times as long as it
//! was seen (from its first sighting to its last), at least [`REMEMBER_MIN`] and at most
//! [`REMEMBER_FOR`]: a server that ran for days is named failed for a day after it went
//! down, a name that showed up for a moment (in an unkeyed cluster, perhaps forged) for a
//! minute. At most [`MAX_REMEMBERED`] are kept; past that, those due to be forgotten first
//! go.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::escape;

/// Most members remembered.
pub const MAX_REMEMBERED: usize = 1024;
/// Longest a member is remembered after it was last seen.
pub const REMEMBER_FOR: Duration = Duration::from_secs(24 * 3600);
/// Shortest a member is remembered after it was last seen.
pub const REMEMBER_MIN: Duration = Duration::from_secs(60);

/// A member seen at some time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remembered {
    /// Name (the identity that survives restarts).
    pub name: String,
    /// Last address.
    pub addr: String,
    /// Unix seconds when last seen.
    pub last_seen: u64,
    /// Unix seconds when first seen.
    pub since: u64,
}

impl Remembered {
    /// Unix seconds when it is forgotten: ten times as long after it was last seen as it was
    /// seen, within [`REMEMBER_MIN`] and [`REMEMBER_FOR`].
    pub fn forgotten_at(&self) -> u64 {
        let seen = self.last_seen.saturating_sub(self.since);
        let keep = seen
            .saturating_mul(10)
            .clamp(REMEMBER_MIN.as_secs(), REMEMBER_FOR.as_secs());
        self.last_seen.saturating_add(keep)
    }
}

/// The last push this member applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastPush {
    /// Push id (`ORIGIN-NODE/XFER` in hex).
    pub id: String,
    /// Sender's name.
    pub origin: String,
    /// Unix seconds when applied.
    pub time: u64,
    /// Digest of the pushed manifest (hex), identical on members that got the same tree.
    pub digest: String,
    /// When the push started (Unix ms, its sender's stamp): orders pushes across members
    /// (`behind`); absent in lines of older builds.
    pub started: Option<u64>,
}

impl LastPush {
    /// One-line form (also published in heartbeats).
    pub fn line(&self) -> String {
        let mut l = format!("{} {} {} {}", self.id, self.origin, self.time, self.digest);
        if let Some(s) = self.started {
            l.push_str(&format!(" {s}"));
        }
        l
    }

    /// Parses [`LastPush::line`].
    pub fn parse(s: &str) -> Option<Self> {
        let mut w = s.split_whitespace();
        Some(Self {
            id: w.next()?.to_string(),
            origin: w.next()?.to_string(),
            time: w.next()?.parse().ok()?,
            digest: w.next()?.to_string(),
            started: w.next().and_then(|s| s.parse().ok()),
        })
    }
}

impl LastPush {
    /// Its place in the order of pushes: the push's start stamp (ms), else when it was
    /// applied.
    fn order(&self) -> u64 {
        self.started.unwrap_or(self.time.saturating_mul(1000))
    }
}

/// A receiving member whose tree is behind the cluster's: its last applied push is not the
/// newest one any receiving member reports (by the push's start stamp, else applied time),
/// or it applied none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behind {
    /// The member.
    pub name: String,
    /// Its last applied push (`None`: none since its state directory was made).
    pub last: Option<LastPush>,
    /// The newest push it did not get.
    pub missed: LastPush,
}

/// The members behind the newest push among `members` (name, last applied push), which
/// are the receiving members heard now and this node. A heuristic: a push that targeted
/// only some members (`-t`) makes the others look behind until the next push to all.
pub fn behind<'a>(
    members: impl IntoIterator<Item = (&'a str, Option<&'a LastPush>)> + Clone,
) -> Vec<Behind> {
    let Some(newest) = members
        .clone()
        .into_iter()
        .filter_map(|(_, l)| l)
        .max_by_key(|l| (l.order(), l.time, l.id.clone()))
        .cloned()
    else {
        return Vec::new();
    };
    let mut out: Vec<Behind> = members
        .into_iter()
        // The same push, or one of the same tree (a repeat to the members that missed one).
        .filter(|(_, l)| l.is_none_or(|l| l.id != newest.id && l.digest != newest.digest))
        .map(|(name, l)| Behind {
            name: name.to_string(),
            last: l.cloned(),
            missed: newest.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn unescaped(s: &str) -> String {
    String::from_utf8_lossy(&escape::unescape(s)).into_owned()
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A state directory.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    fd: OwnedFd,
    /// Remembered members by name.
    pub members: BTreeMap<String, Remembered>,
    /// Last push applied here.
    pub last_push: Option<LastPush>,
    dirty: bool,
}

/// Writes file `name` in directory `dir` whole: to `name.tmp`, fsynced, renamed over `name`.
fn write_atomic(dir: BorrowedFd<'_>, name: &str, text: &str) -> Result<()> {
    let tmp = format!("{name}.tmp");
    let flags =
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, tmp.as_str(), flags, Mode::from_raw_mode(0o644))
        .map_err(std::io::Error::from)
        .with_context(|| format!("write {tmp}"))?;
    let mut f = fs::File::from(fd);
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    rfs::renameat(dir, tmp.as_str(), dir, name)
        .map_err(std::io::Error::from)
        .with_context(|| format!("rename to {name}"))?;
    Ok(())
}

/// Largest state file read back: [`MAX_REMEMBERED`] members of long names fit many times.
pub const MAX_STATE_FILE: u64 = 4 << 20;

/// Reads state file `name` of directory `dir`, as the daemon wrote it: never through a
/// symlink (the directory may belong to the daemon's `-u` user, and root reads it at start),
/// only a regular file (no FIFO to block on, no device), at most [`MAX_STATE_FILE`] bytes.
/// `Ok(None)` when there is none; an error says why a file that is there was not read.
fn read_state_file(dir: BorrowedFd<'_>, name: &str) -> Result<Option<String>> {
    use std::io::Read;
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rfs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => anyhow::bail!("{name} is a symlink"),
        Err(e) => return Err(std::io::Error::from(e)).with_context(|| format!("open {name}")),
    };
    let st = rfs::fstat(&fd).map_err(std::io::Error::from)?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
        anyhow::bail!("{name} is not a regular file");
    }
    let mut text = String::new();
    fs::File::from(fd)
        .take(MAX_STATE_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("read {name}"))?;
    if text.len() as u64 > MAX_STATE_FILE {
        anyhow::bail!("{name} is larger than {MAX_STATE_FILE} bytes");
    }
    Ok(Some(text))
}

/// [`read_state_file`], a refusal logged and treated as no file (the daemon starts afresh
/// and writes a good one).
fn load(dir: BorrowedFd<'_>, path: &Path, name: &str) -> Option<String> {
    read_state_file(dir, name).unwrap_or_else(|e| {
        crate::logging::warn(format_args!(
            "state dir {}: not reading {e:#}; starting without it",
            path.display()
        ));
        None
    })
}

/// Most standing exclude patterns.
pub const MAX_EXCLUDES: usize = 1024;

/// The daemon's standing exclude patterns (`excludes` in the state directory), shared by the
/// console sessions: every change is written whole before it is answered.
#[derive(Debug)]
pub struct Excludes {
    fd: OwnedFd,
    patterns: std::sync::Mutex<Vec<String>>,
}

impl Excludes {
    /// The patterns kept in `state`'s directory (none when there is no file).
    pub fn load(state: &StateDir) -> Result<Self> {
        let fd = state.fd.try_clone().context("state dir")?;
        let patterns = load(state.fd.as_fd(), &state.dir, "excludes")
            .map(|t| {
                t.lines()
                    .filter(|l| !l.is_empty())
                    .take(MAX_EXCLUDES)
                    .map(unescaped)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            fd,
            patterns: std::sync::Mutex::new(patterns),
        })
    }

    /// The patterns, in order.
    pub fn list(&self) -> Vec<String> {
        self.patterns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the list with `f` and writes it; on an error (from `f` or the write) the list
    /// stays as it was.
    pub fn edit(&self, f: impl FnOnce(&mut Vec<String>) -> Result<()>) -> Result<()> {
        let mut p = self.patterns.lock().unwrap_or_else(|e| e.into_inner());
        let mut new = p.clone();
        f(&mut new)?;
        if new.len() > MAX_EXCLUDES {
            anyhow::bail!("more than {MAX_EXCLUDES} standing excludes");
        }
        let mut text = String::new();
        for pat in &new {
            text.push_str(&escape::text_str(pat));
            text.push('\n');
        }
        write_atomic(self.fd.as_fd(), "excludes", &text)?;
        *p = new;
        Ok(())
    }
}

impl StateDir {
    /// Opens (creating) a state directory and loads what it holds.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create state dir {}", dir.display()))?;
        let fd = rfs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("state dir {}", dir.display()))?;
        let mut members = BTreeMap::new();
        if let Some(text) = load(fd.as_fd(), dir, "members") {
            for line in text.lines() {
                let f: Vec<&str> = line.split('\t').collect();
                // Files written before `since` was kept have three fields: count those
                // members as long seen.
                let (name, addr, seen, since) = match f[..] {
                    [name, addr, seen] => (name, addr, seen, "0"),
                    [name, addr, seen, since] => (name, addr, seen, since),
                    _ => continue,
                };
                if let (Ok(last_seen), Ok(since)) = (seen.parse(), since.parse()) {
                    let name = unescaped(name);
                    members.insert(
                        name.clone(),
                        Remembered {
                            name,
                            addr: unescaped(addr),
                            last_seen,
                            since,
                        },
                    );
                }
            }
        }
        let last_push = load(fd.as_fd(), dir, "last-push").and_then(|t| LastPush::parse(t.trim()));
        let mut s = Self {
            dir: dir.to_path_buf(),
            fd,
            members,
            last_push,
            dirty: false,
        };
        s.prune(unix_now());
        Ok(s)
    }

    /// Forgets members whose time is up, then those due first past [`MAX_REMEMBERED`].
    fn prune(&mut self, now: u64) {
        let before = self.members.len();
        self.members.retain(|_, m| m.forgotten_at() > now);
        if self.members.len() > MAX_REMEMBERED {
            let mut due: Vec<(u64, String)> = self
                .members
                .values()
                .map(|m| (m.forgotten_at(), m.name.clone()))
                .collect();
            due.sort_unstable();
            for (_, name) in &due[..due.len() - MAX_REMEMBERED] {
                self.members.remove(name);
            }
        }
        self.dirty |= self.members.len() != before;
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Notes that `name` is seen now at `addr`, and has been seen without a break for
    /// `seen_for`.
    pub fn seen(&mut self, name: &str, addr: &str, seen_for: Duration) {
        let now = unix_now();
        let since = now.saturating_sub(seen_for.as_secs());
        let e = self
            .members
            .entry(name.to_string())
            .or_insert_with(|| Remembered {
                name: name.into(),
                addr: addr.into(),
                last_seen: 0,
                since,
            });
        if e.addr != addr || now >= e.last_seen + 10 {
            self.dirty = true;
        }
        e.addr = addr.into();
        e.last_seen = now;
        e.since = e.since.min(since);
        if self.members.len() > MAX_REMEMBERED {
            self.prune(now);
        }
    }

    /// Forgets a member (operator's choice, or it was replaced).
    pub fn forget(&mut self, name: &str) -> bool {
        let gone = self.members.remove(name).is_some();
        self.dirty |= gone;
        gone
    }

    /// Members remembered now (see [`Remembered::forgotten_at`]), by name.
    pub fn remembered(&self) -> impl Iterator<Item = &Remembered> {
        let now = unix_now();
        self.members
            .values()
            .filter(move |m| m.forgotten_at() > now)
    }

    /// Records the last push applied.
    pub fn set_last_push(&mut self, p: LastPush) -> Result<()> {
        write_atomic(self.fd.as_fd(), "last-push", &format!("{}\n", p.line()))?;
        self.last_push = Some(p);
        Ok(())
    }

    /// Writes the member list if it changed.
    pub fn save(&mut self) -> Result<()> {
        self.prune(unix_now());
        if !self.dirty {
            return Ok(());
        }
        let mut text = String::new();
        for m in self.members.values() {
            // Names come from heartbeats: escaped, so that a tab or newline in one cannot
            // forge a record.
            let (name, addr) = (escape::text_str(&m.name), escape::text_str(&m.addr));
            text.push_str(&format!("{name}\t{addr}\t{}\t{}\n", m.last_seen, m.since));
        }
        write_atomic(self.fd.as_fd(), "members", &text)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_are_read_only_as_regular_files_not_through_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret");
        let now = unix_now();
        fs::write(&secret, format!("web1\t10.0.0.1\t{now}\t{}\n", now - 100)).unwrap();
        let dir = d.path().join("state");
        fs::create_dir(&dir).unwrap();
        let fd = rfs::open(&dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert_eq!(read_state_file(fd.as_fd(), "members").unwrap(), None);
        // A symlink (the -u user swapped one in, pointing at a root-only file): not followed.
        std::os::unix::fs::symlink(&secret, dir.join("members")).unwrap();
        let e = read_state_file(fd.as_fd(), "members").unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e:#}");
        let s = StateDir::open(&dir).unwrap();
        assert!(s.members.is_empty(), "{:?}", s.members);
        // A FIFO does not block start-up; a directory is refused.
        nix::unistd::mkfifo(&dir.join("last-push"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read_state_file(fd.as_fd(), "last-push").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e:#}");
        assert!(StateDir::open(&dir).unwrap().last_push.is_none());
        // Too large: refused, not read whole.
        fs::remove_file(dir.join("members")).unwrap();
        let f = fs::File::create(dir.join("members")).unwrap();
        f.set_len(MAX_STATE_FILE + 1).unwrap();
        let e = read_state_file(fd.as_fd(), "members").unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e:#}");
        // A regular file is read.
        let now = unix_now();
        let line = format!("web1\t10.0.0.1\t{now}\t{}\n", now - 100);
        fs::write(dir.join("members"), line).unwrap();
        let s = StateDir::open(&dir).unwrap();
        assert!(s.members.contains_key("web1"), "{:?}", s.members);
    }

    #[test]
    fn behind_names_members_without_the_newest_push_or_its_tree() {
        let lp = |id: &str, time, digest: &str, started| LastPush {
            id: id.into(),
            origin: "src".into(),
            time,
            digest: digest.into(),
            started,
        };
        let (old, new) = (
            lp("a/1", 9, "d0", Some(1_000)),
            lp("b/2", 9, "d1", Some(1_001)),
        );
        let again = lp("c/3", 9, "d1", Some(2_000));
        assert!(behind([("m1", Some(&old)), ("m2", Some(&old))]).is_empty());
        let b = behind([("m1", Some(&new)), ("m2", Some(&old)), ("m3", None)]);
        let names: Vec<_> = b.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["m2", "m3"]);
        assert_eq!(b[0].missed, new);
        assert_eq!(b[0].last, Some(old.clone()));
        // A repeat of the same tree to one member does not put the others behind.
        assert!(behind([("m1", Some(&new)), ("m2", Some(&again))]).is_empty());
        // The line keeps the start stamp; a line of an older build has none.
        assert_eq!(LastPush::parse(&new.line()), Some(new.clone()));
        assert_eq!(LastPush::parse("a/1 src 9 d0").unwrap().started, None);
    }

    #[test]
    fn remembers_members_and_last_push_across_reopen() {
        let d = tempfile::tempdir().unwrap();
        let mut s = StateDir::open(d.path()).unwrap();
        s.seen("web1", "198.18.0.2", Duration::from_secs(3600));
        s.save().unwrap();
        s.set_last_push(LastPush {
            id: "a/1".into(),
            origin: "src".into(),
            time: 5,
            digest: "ff".into(),
            started: None,
        })
        .unwrap();
        let mut s = StateDir::open(d.path()).unwrap();
        assert_eq!(s.members["web1"].addr, "198.18.0.2");
        // A name with a tab and a newline is one record, read back as it was.
        s.seen(
            "evil\tx\t1\nforged",
            "198.18.0.3",
            Duration::from_secs(3600),
        );
        s.save().unwrap();
        let s = StateDir::open(d.path()).unwrap();
        assert_eq!(s.members.len(), 2, "{:?}", s.members);
        assert_eq!(s.members["evil\tx\t1\nforged"].addr, "198.18.0.3");
        assert_eq!(s.remembered().count(), 2);
        assert_eq!(s.last_push.as_ref().unwrap().origin, "src");
    }

    #[test]
    fn members_are_kept_ten_times_as_long_as_they_were_seen() {
        let m = |last_seen, since| Remembered {
            name: "x".into(),
            addr: "-".into(),
            last_seen,
            since,
        };
        assert_eq!(m(1000, 1000).forgotten_at(), 1060, "a moment: a minute");
        assert_eq!(m(1000, 900).forgotten_at(), 2000);
        assert_eq!(m(10_000_000, 0).forgotten_at(), 10_086_400, "at most a day");
    }

    #[test]
    fn remembered_members_are_bounded_and_age_out() {
        let d = tempfile::tempdir().unwrap();
        let now = unix_now();
        let day = REMEMBER_FOR.as_secs();
        let mut text = format!("stale\t10.0.0.1\t{}\n", now - day - 1);
        text.push_str(&format!("old-format\t10.0.0.2\t{now}\n"));
        text.push_str(&format!("glimpsed\t10.0.0.3\t{}\t{}\n", now - 61, now - 61));
        text.push_str(&format!(
            "long-lived\t10.0.0.4\t{}\t{}\n",
            now - 3600,
            now - day
        ));
        std::fs::write(d.path().join("members"), text).unwrap();
        let mut s = StateDir::open(d.path()).unwrap();
        assert_eq!(
            s.members.keys().collect::<Vec<_>>(),
            ["long-lived", "old-format"]
        );
        // Many names seen for a moment (a burst of forged heartbeats) push out no one who
        // was seen for long.
        for i in 0..MAX_REMEMBERED + 50 {
            s.seen(&format!("m{i}"), "10.0.0.9", Duration::ZERO);
        }
        assert_eq!(s.members.len(), MAX_REMEMBERED);
        assert!(s.members.contains_key("long-lived"));
        s.save().unwrap();
        let s = StateDir::open(d.path()).unwrap();
        assert_eq!(s.members.len(), MAX_REMEMBERED);
    }
}
