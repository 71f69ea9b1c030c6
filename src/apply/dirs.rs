//! Resolving directories of the base one component at a time (`O_NOFOLLOW`, a symlink or a
//! non-directory in a parent position is refused), and the small cache of recently used ones.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::io::Errno;

use super::refused;
use super::sys::{lstat_at, mkdir_at, open_at, DIR_WALK};
use crate::proto::manifest::EntryKind;
use crate::proto::storage::show;

/// An open directory of the base, shared between the cache and its users (cheap to clone,
/// closed when the last holder drops it).
pub(super) type DirFd = Arc<OwnedFd>;

/// Opens directory `rel` (relative to `base`, "" for the base itself) one component at a
/// time, never following a symlink. A symlink or non-directory on the way is refused. With
/// `made`, missing directories are created (mode 0755) and recorded there.
pub(super) fn open_dir(
    base: BorrowedFd<'_>,
    rel: &[u8],
    made: Option<&mut Vec<Vec<u8>>>,
) -> io::Result<OwnedFd> {
    if rel.is_empty() {
        return open_at(base, b".", DIR_WALK, 0);
    }
    open_dir_from(base, rel, 0, made)
}

/// Opens directory `rel` (non-empty) one component at a time from `start`, the directory
/// `rel[..from]` (`from` is 0 for the base, else just past a '/').
pub(super) fn open_dir_from(
    start: BorrowedFd<'_>,
    rel: &[u8],
    from: usize,
    mut made: Option<&mut Vec<Vec<u8>>>,
) -> io::Result<OwnedFd> {
    let mut cur: Option<OwnedFd> = None;
    let mut end = from;
    for comp in rel[from..].split(|&b| b == b'/') {
        end += comp.len() + 1;
        let at = &rel[..end - 1];
        let dfd = cur.as_ref().map_or(start, |c| c.as_fd());
        let next = match open_at(dfd, comp, DIR_WALK, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && made.is_some() => {
                match mkdir_at(dfd, comp, 0o755) {
                    Ok(()) => {
                        if let Some(m) = made.as_deref_mut() {
                            m.push(at.to_vec());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                open_at(dfd, comp, DIR_WALK, 0).map_err(|e| why_not_dir(e, dfd, comp, at))?
            }
            Err(e) => return Err(why_not_dir(e, dfd, comp, at)),
        };
        cur = Some(next);
    }
    cur.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty directory path"))
}

/// A few recently used directories of the base, kept open for the receiving side: files
/// arrive in tree order, so most parents resolve with no system call, and the rest from
/// their nearest open ancestor instead of from the base. Each directory was reached the same
/// confined way as without the cache (one `O_NOFOLLOW` component at a time), and none is
/// used longer than [`DIR_CACHE_AGE`] after it was opened: a directory moved away or
/// replaced meanwhile is not written into for longer than that. Also cleared around every
/// commit and abort and after a directory is removed. The sending side does not use it.
#[derive(Debug, Default)]
pub(super) struct DirCache {
    /// `(path, descriptor, opened at)`, most recently used last.
    open: Vec<(Vec<u8>, DirFd, Instant)>,
}

/// Directories a [`DirCache`] keeps open.
pub(super) const DIR_CACHE: usize = 16;

/// How long a cached directory may be used after it was opened.
pub(super) const DIR_CACHE_AGE: Duration = Duration::from_millis(50);

impl DirCache {
    /// The descriptor of directory `rel` (`base` itself for ""). With `made`, missing
    /// directories are created (and noted).
    pub(super) fn get(
        &mut self,
        base: &DirFd,
        rel: &[u8],
        made: Option<&mut Vec<Vec<u8>>>,
    ) -> io::Result<DirFd> {
        if rel.is_empty() {
            return Ok(base.clone());
        }
        let now = Instant::now();
        self.open
            .retain(|(_, _, t)| now.saturating_duration_since(*t) <= DIR_CACHE_AGE);
        if let Some(i) = self.open.iter().rposition(|(p, _, _)| p == rel) {
            let hit = self.open.remove(i);
            self.open.push(hit);
        } else {
            // The nearest open ancestor, if any.
            let mut from = (base.as_fd(), 0);
            let mut cut = rel.len();
            while let Some(slash) = rel[..cut].iter().rposition(|&b| b == b'/') {
                if let Some((_, fd, _)) = self.open.iter().find(|(p, _, _)| p == &rel[..slash]) {
                    from = (fd.as_fd(), slash + 1);
                    break;
                }
                cut = slash;
            }
            let fd = open_dir_from(from.0, rel, from.1, made)?;
            if self.open.len() >= DIR_CACHE {
                self.open.remove(0);
            }
            self.open.push((rel.to_vec(), Arc::new(fd), now));
        }
        Ok(self
            .open
            .last()
            .map_or_else(|| base.clone(), |(_, fd, _)| fd.clone()))
    }

    pub(super) fn clear(&mut self) {
        self.open.clear();
    }
}

/// Turns the error of opening a parent into a refusal when it is a symlink or not a
/// directory.
pub(super) fn why_not_dir(e: io::Error, dfd: BorrowedFd<'_>, comp: &[u8], at: &[u8]) -> io::Error {
    let loop_or_notdir = [Errno::LOOP, Errno::NOTDIR].map(|n| Some(n.raw_os_error()));
    if !loop_or_notdir.contains(&e.raw_os_error()) {
        return e;
    }
    match lstat_at(dfd, comp).map(|s| s.kind) {
        Ok(Some(EntryKind::Symlink)) => refused(format!("parent {} is a symlink", show(at))),
        _ => refused(format!("parent {} is not a directory", show(at))),
    }
}
