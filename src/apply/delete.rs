//! Deletions: listing what the manifest lacks under its roots (sparing protected paths and
//! temp files) and removing trees without following symlinks.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::commit::CommitState;
use super::dirs::open_dir;
use super::names::is_temp_name;
use super::sys::{list_dir, lstat_at, open_at, rmdir_at, unlink_at, DIR_WALK};
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
/// paths. Returns whether the directory itself is gone.
pub(super) fn remove_tree(
    dfd: BorrowedFd<'_>,
    name: &[u8],
    rel: &[u8],
    protect: Protect<'_>,
) -> io::Result<bool> {
    let fd = open_at(dfd, name, DIR_WALK, 0)?;
    let fd = fd.as_fd();
    let mut kept = false;
    for child in list_dir(fd)? {
        let crel = join(rel, &child);
        let s = match lstat_at(fd, &child) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let is_dir = s.kind == Some(EntryKind::Dir);
        if protect(&crel, is_dir) {
            kept = true;
        } else if is_dir {
            kept |= !remove_tree(fd, &child, &crel, protect)?;
        } else {
            unlink_at(fd, &child)?;
        }
    }
    if kept {
        return Ok(false);
    }
    rmdir_at(dfd, name)?;
    Ok(true)
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
    let mut sub = Vec::new();
    let kept = match open_at(dfd, name, DIR_WALK, 0) {
        Ok(fd) => scan_children(fd.as_fd(), rel, wanted, protect, &mut sub),
        Err(_) => true,
    };
    if want || kept {
        out.append(&mut sub);
        true
    } else {
        out.push(rel.to_vec());
        false
    }
}

pub(super) fn scan_children(
    fd: BorrowedFd<'_>,
    rel: &[u8],
    wanted: &HashSet<&[u8]>,
    protect: Protect<'_>,
    out: &mut Vec<Vec<u8>>,
) -> bool {
    let Ok(names) = list_dir(fd) else {
        return true;
    };
    let mut kept = false;
    for n in names {
        kept |= scan(fd, &n, &join(rel, &n), wanted, protect, out);
    }
    kept
}
