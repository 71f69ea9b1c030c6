//! Deletions: listing what the manifest lacks under its roots (sparing protected paths and
//! temp files) and removing trees without following symlinks.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::commit::CommitState;
use super::dirs::open_dir;
use super::names::is_temp_name;
use super::sys::{lstat_at, rmdir_at, unlink_at};
use super::walk::DirStack;
use super::{checked_split, join, refused, split, FsStorage, Protect};
use crate::proto::manifest::{check_rel_path, EntryKind, Manifest};

impl FsStorage {
    /// Receiver paths under the manifest's roots that the manifest lacks, not protected and
    /// not makuo temp files, deepest first. An unwanted directory is listed once (its whole
    /// tree goes) unless something inside it must stay.
    pub(super) fn list_deletions(&self, m: &Manifest, protect: Protect<'_>) -> Vec<Vec<u8>> {
        let wanted: HashSet<&[u8]> = m.entries.iter().map(|e| e.path.as_slice()).collect();
        let mut out = Vec::new();
        for r in &m.roots {
            if check_rel_path(r).is_err() {
                continue;
            }
            if r == b"." {
                scan_children(self.base_dir(), b"", &wanted, protect, &mut out);
                continue;
            }
            let (dir, name) = split(r);
            if let Ok(dfd) = open_dir(self.base_dir(), dir, None) {
                scan(dfd.as_fd(), name, r, &wanted, protect, &mut out);
            }
        }
        // Reverse byte order puts every path after all of its descendants.
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.dedup();
        out
    }

    /// Deletes one path (a whole tree for a directory) without following symlinks. Returns
    /// whether it was removed.
    pub(super) fn delete_one(
        &mut self,
        p: &[u8],
        protect: Protect<'_>,
        st: &mut CommitState,
    ) -> io::Result<bool> {
        if p == b"." {
            self.refused += 1;
            return Err(refused("will not delete the base directory".into()));
        }
        let (dir, name) = checked_split(p, EntryKind::File).inspect_err(|_| {
            self.refused += 1;
        })?;
        let dfd = match self.open_parent(dir, false) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let dfd = dfd.as_fd();
        let s = match lstat_at(dfd, name) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let is_dir = s.kind == Some(EntryKind::Dir);
        if protect(p, is_dir) {
            return Ok(false);
        }
        let gone = if is_dir {
            let gone = remove_tree(dfd, name, p, protect);
            self.dirs.clear();
            gone?
        } else {
            unlink_at(dfd, name)?;
            true
        };
        st.touched.insert(dir.to_vec());
        Ok(gone)
    }
}

/// Removes directory `name` and its contents without following symlinks, sparing protected
/// paths. Returns whether the directory itself is gone. Iterative (see `walk`): a tree
/// deeper than [`super::walk::MAX_DEPTH`] levels is not removed (an error says why).
pub(super) fn remove_tree(
    dfd: BorrowedFd<'_>,
    name: &[u8],
    rel: &[u8],
    protect: Protect<'_>,
) -> io::Result<bool> {
    // Per level: whether anything in it stays.
    let mut st: DirStack<'_, bool> = DirStack::new(dfd);
    st.push(name, rel.to_vec(), false)?;
    loop {
        let Some(child) = st.next_name() else {
            let (n, _, kept) = st.pop().expect("not empty");
            if !kept {
                rmdir_at(st.dir()?, &n)?;
            }
            match st.top() {
                None => return Ok(!kept),
                Some((_, up)) => *up |= kept,
            }
            continue;
        };
        let (crel, s) = {
            let fd = st.dir()?;
            let s = match lstat_at(fd, &child) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let (r, _) = st.top().expect("not empty");
            (join(r, &child), s)
        };
        let is_dir = s.kind == Some(EntryKind::Dir);
        if protect(&crel, is_dir) {
            *st.top().expect("not empty").1 = true;
        } else if is_dir {
            st.push(&child, crel, false)?;
        } else {
            unlink_at(st.dir()?, &child)?;
        }
    }
}

/// What the deletion scan keeps per directory level: whether the directory itself is
/// wanted, whether anything under it must stay, and what under it is to be deleted.
#[derive(Default)]
struct ScanLevel {
    want: bool,
    kept: bool,
    sub: Vec<Vec<u8>>,
}

/// Deletion scan of one path; returns whether anything at or under it must stay.
pub(super) fn scan(
    dfd: BorrowedFd<'_>,
    name: &[u8],
    rel: &[u8],
    wanted: &HashSet<&[u8]>,
    protect: Protect<'_>,
    out: &mut Vec<Vec<u8>>,
) -> bool {
    if is_temp_name(name) {
        // Another transfer's work in progress: never listed by itself.
        return false;
    }
    let Ok(st) = lstat_at(dfd, name) else {
        return true;
    };
    let is_dir = st.kind == Some(EntryKind::Dir);
    if protect(rel, is_dir) {
        return true;
    }
    let want = wanted.contains(rel);
    if !is_dir {
        if !want {
            out.push(rel.to_vec());
        }
        return want;
    }
    scan_tree(dfd, name, rel, want, wanted, protect, out)
}

/// Deletion scan of the children of the directory `fd` (at `rel`).
pub(super) fn scan_children(
    fd: BorrowedFd<'_>,
    rel: &[u8],
    wanted: &HashSet<&[u8]>,
    protect: Protect<'_>,
    out: &mut Vec<Vec<u8>>,
) {
    // The directory itself is wanted (the base): never listed.
    scan_tree(fd, b".", rel, true, wanted, protect, out);
}

/// The deletion scan of directory `name` in `dfd` (at `rel`), iterative (see `walk`): a
/// directory that cannot be read, or lies deeper than [`super::walk::MAX_DEPTH`] levels, is kept.
fn scan_tree(
    dfd: BorrowedFd<'_>,
    name: &[u8],
    rel: &[u8],
    want: bool,
    wanted: &HashSet<&[u8]>,
    protect: Protect<'_>,
    out: &mut Vec<Vec<u8>>,
) -> bool {
    let mut st: DirStack<'_, ScanLevel> = DirStack::new(dfd);
    let first = ScanLevel {
        want,
        ..ScanLevel::default()
    };
    if st.push(name, rel.to_vec(), first).is_err() {
        return true;
    }
    loop {
        let Some(child) = st.next_name() else {
            let (_, r, lvl) = st.pop().expect("not empty");
            let stays = lvl.want || lvl.kept;
            let into = match st.top() {
                Some((_, up)) => {
                    up.kept |= stays;
                    &mut up.sub
                }
                None => out,
            };
            if stays {
                into.extend(lvl.sub);
            } else {
                into.push(r);
            }
            if st.depth() == 0 {
                return stays;
            }
            continue;
        };
        if is_temp_name(&child) {
            continue;
        }
        let m = st.dir().and_then(|fd| lstat_at(fd, &child));
        let (r, lvl) = st.top().expect("not empty");
        let Ok(m) = m else {
            lvl.kept = true;
            continue;
        };
        let crel = join(r, &child);
        let is_dir = m.kind == Some(EntryKind::Dir);
        if protect(&crel, is_dir) {
            lvl.kept = true;
            continue;
        }
        let want = wanted.contains(crel.as_slice());
        if !is_dir {
            if want {
                lvl.kept = true;
            } else {
                lvl.sub.push(crel);
            }
            continue;
        }
        let next = ScanLevel {
            want,
            ..ScanLevel::default()
        };
        if st.push(&child, crel, next).is_err() {
            st.top().expect("not empty").1.kept = true;
        }
    }
}
