//! The daemon's pid file (`--pid-file`): opened before the daemon gives up root or enters a
//! chroot, written once it has detached (so it names the process that serves), and removed
//! when it stops — or, when the daemon can no longer reach it by path (chroot) or remove it
//! (a directory only root may write), emptied, which init scripts and `pidof`-style tools
//! read as "not running".
//!
//! The file is opened without following a symlink and must be a regular file owned by the
//! daemon's effective user: a pid file left by another user in a shared directory is
//! refused, never truncated through.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustix::fs::{self as rfs, Mode, OFlags};

/// An open pid file (see the module documentation).
#[derive(Debug)]
pub struct PidFile {
    file: File,
    path: PathBuf,
    /// Whether the path still leads to it (false after a chroot).
    by_path: bool,
    /// The pid written, once written.
    pid: Option<u32>,
}

impl PidFile {
    /// Opens (creating, mode 0644) the pid file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let fd = rfs::open(
            path,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::from_raw_mode(0o644),
        )
        .with_context(|| format!("pid file {}", path.display()))?;
        let st = rfs::fstat(&fd).with_context(|| format!("pid file {}", path.display()))?;
        if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
            bail!("pid file {} is not a regular file", path.display());
        }
        let me = rustix::process::geteuid().as_raw();
        if st.st_uid != me {
            bail!(
                "pid file {} belongs to uid {}, not to this daemon's user (uid {me}): remove it",
                path.display(),
                st.st_uid
            );
        }
        Ok(Self {
            file: File::from(fd),
            path: path.to_path_buf(),
            by_path: true,
            pid: None,
        })
    }

    /// The daemon entered a chroot: the path no longer leads to the file.
    pub fn chrooted(&mut self) {
        self.by_path = false;
    }

    /// Writes this process's id (call once the daemon has detached).
    pub fn write_pid(&mut self) -> Result<()> {
        let pid = std::process::id();
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file
            .write_all(format!("{pid}\n").as_bytes())
            .with_context(|| format!("pid file {}", self.path.display()))?;
        self.pid = Some(pid);
        Ok(())
    }

    /// Whether the file still holds the pid this daemon wrote.
    fn still_ours(&mut self) -> bool {
        let mut s = String::new();
        self.file.seek(SeekFrom::Start(0)).is_ok()
            && Read::by_ref(&mut self.file)
                .take(32)
                .read_to_string(&mut s)
                .is_ok()
            && self.pid.is_some_and(|p| s.trim() == p.to_string())
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if !self.still_ours() {
            return;
        }
        // Removed when it can be; emptied otherwise (chroot, or a directory only root may
        // write after -u): never left naming a process that may be another's by then.
        let same = self.by_path
            && rfs::lstat(&self.path).is_ok_and(|p| {
                rfs::fstat(&self.file).is_ok_and(|f| (p.st_dev, p.st_ino) == (f.st_dev, f.st_ino))
            });
        if !(same && std::fs::remove_file(&self.path).is_ok()) {
            let _ = self.file.set_len(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_then_removed_and_a_symlink_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("makuo.pid");
        {
            let mut f = PidFile::open(&p).unwrap();
            f.write_pid().unwrap();
            let s = std::fs::read_to_string(&p).unwrap();
            assert_eq!(s, format!("{}\n", std::process::id()));
        }
        assert!(!p.exists(), "removed when the daemon stops");

        // Chrooted: the path is not trusted to lead to it; emptied instead.
        {
            let mut f = PidFile::open(&p).unwrap();
            f.write_pid().unwrap();
            f.chrooted();
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");

        // Someone else's pid now: left alone.
        {
            let mut f = PidFile::open(&p).unwrap();
            f.write_pid().unwrap();
            std::fs::write(&p, "1\n").unwrap();
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1\n");

        // A symlink planted at the path is not followed.
        let target = d.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        let link = d.path().join("link.pid");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(PidFile::open(&link).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
