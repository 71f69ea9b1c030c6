//! What a member remembers across restarts, kept in its state directory (never in BASE):
//! the members it has seen (so a push names a down server as failed instead of silently
//! skipping it) and the last push it applied (so a member that is behind is visible).
//!
//! Files are plain text, one record a line, written to a temp file and renamed into place,
//! relative to a descriptor of the directory opened at start: the daemon may chroot (and the
//! state directory need not be inside the chroot).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::escape;

/// A member seen at some time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remembered {
    /// Name (the identity that survives restarts).
    pub name: String,
    /// Last address.
    pub addr: String,
    /// Unix seconds when last seen.
    pub last_seen: u64,
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
}

impl LastPush {
    /// One-line form (also published in heartbeats).
    pub fn line(&self) -> String {
        format!("{} {} {} {}", self.id, self.origin, self.time, self.digest)
    }

    /// Parses [`LastPush::line`].
    pub fn parse(s: &str) -> Option<Self> {
        let mut w = s.split_whitespace();
        Some(Self {
            id: w.next()?.to_string(),
            origin: w.next()?.to_string(),
            time: w.next()?.parse().ok()?,
            digest: w.next()?.to_string(),
        })
    }
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
        if let Ok(text) = fs::read_to_string(dir.join("members")) {
            for line in text.lines() {
                let f: Vec<&str> = line.split('\t').collect();
                if let [name, addr, seen] = f[..] {
                    if let Ok(last_seen) = seen.parse() {
                        let name = unescaped(name);
                        members.insert(
                            name.clone(),
                            Remembered {
                                name,
                                addr: unescaped(addr),
                                last_seen,
                            },
                        );
                    }
                }
            }
        }
        let last_push = fs::read_to_string(dir.join("last-push"))
            .ok()
            .and_then(|t| LastPush::parse(t.trim()));
        Ok(Self {
            dir: dir.to_path_buf(),
            fd,
            members,
            last_push,
            dirty: false,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Notes that `name` was seen now at `addr`.
    pub fn seen(&mut self, name: &str, addr: &str) {
        let now = unix_now();
        let e = self
            .members
            .entry(name.to_string())
            .or_insert_with(|| Remembered {
                name: name.into(),
                addr: addr.into(),
                last_seen: 0,
            });
        if e.addr != addr || now >= e.last_seen + 10 {
            self.dirty = true;
        }
        e.addr = addr.into();
        e.last_seen = now;
    }

    /// Forgets a member (operator's choice, or it was replaced).
    pub fn forget(&mut self, name: &str) -> bool {
        let gone = self.members.remove(name).is_some();
        self.dirty |= gone;
        gone
    }

    /// Members seen within `window_secs`, by name.
    pub fn recent(&self, window_secs: u64) -> impl Iterator<Item = &Remembered> {
        let now = unix_now();
        self.members
            .values()
            .filter(move |m| now.saturating_sub(m.last_seen) <= window_secs)
    }

    /// Records the last push applied.
    pub fn set_last_push(&mut self, p: LastPush) -> Result<()> {
        write_atomic(self.fd.as_fd(), "last-push", &format!("{}\n", p.line()))?;
        self.last_push = Some(p);
        Ok(())
    }

    /// Writes the member list if it changed.
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut text = String::new();
        for m in self.members.values() {
            // Names come from heartbeats: escaped, so that a tab or newline in one cannot
            // forge a record.
            let (name, addr) = (escape::text_str(&m.name), escape::text_str(&m.addr));
            text.push_str(&format!("{name}\t{addr}\t{}\n", m.last_seen));
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
    fn remembers_members_and_last_push_across_reopen() {
        let d = tempfile::tempdir().unwrap();
        let mut s = StateDir::open(d.path()).unwrap();
        s.seen("web1", "198.18.0.2");
        s.save().unwrap();
        s.set_last_push(LastPush {
            id: "a/1".into(),
            origin: "src".into(),
            time: 5,
            digest: "ff".into(),
        })
        .unwrap();
        let mut s = StateDir::open(d.path()).unwrap();
        assert_eq!(s.members["web1"].addr, "198.18.0.2");
        // A name with a tab and a newline is one record, read back as it was.
        s.seen("evil\tx\t1\nforged", "198.18.0.3");
        s.save().unwrap();
        let s = StateDir::open(d.path()).unwrap();
        assert_eq!(s.members.len(), 2, "{:?}", s.members);
        assert_eq!(s.members["evil\tx\t1\nforged"].addr, "198.18.0.3");
        assert_eq!(s.recent(60).count(), 2);
        assert_eq!(s.last_push.as_ref().unwrap().origin, "src");
    }
}
