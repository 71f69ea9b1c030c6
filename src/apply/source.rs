//! The sender's confined view of its base, for the walk that builds a manifest and for
//! checksums (`tree.rs`): every entry is reached through its parent directory, resolved one
//! `O_NOFOLLOW` component at a time from a descriptor of the base, as
//! `FsStorage::open_source` reads contents. A parent swapped for a symlink while a push
//! walks (a base writer flipping `uploads/d` between a directory and a symlink to `/dev`)
//! is refused, never followed: nothing outside the base is stat'ed, read, hashed or has its
//! link text or attributes read. Files are opened `O_NOFOLLOW|O_NONBLOCK|O_NOCTTY` and must
//! be regular files, so a path that became a FIFO, a device or a symlink is reported, never
//! read.

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::OFlags;

use super::checked_split;
use super::dirs::open_dir;
use super::sys::{open_at, open_dir_path, readlink_at, DIR_WALK, READ_NOFOLLOW};
use crate::proto::manifest::EntryKind;

/// A descriptor of the base and the directory most recently resolved in it.
#[derive(Debug)]
pub(crate) struct Source {
    base: OwnedFd,
    /// The last parent resolved (entries come grouped by directory).
    parent: Option<(Vec<u8>, OwnedFd)>,
}

/// `O_PATH` on Linux: names the entry itself (a symlink too, with `O_NOFOLLOW`) without
/// opening it for reading, so nothing (a device, a FIFO) is ever acted upon.
#[cfg(any(target_os = "linux", target_os = "android"))]
const STAT_ONLY: OFlags = OFlags::PATH.union(OFlags::NOFOLLOW);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const STAT_ONLY: OFlags = READ_NOFOLLOW;

impl Source {
    /// Opens the base (the operator's path: it may itself be reached through a symlink).
    pub(crate) fn open(base: &Path) -> io::Result<Self> {
        Ok(Self {
            base: open_dir_path(base, DIR_WALK)?,
            parent: None,
        })
    }

    /// The parent directory of `rel` (resolved afresh when it differs from the last one)
    /// and its last component; `rel` `.` is the base itself (parent `None`).
    fn parent_of<'a>(&mut self, rel: &'a [u8]) -> io::Result<Option<(BorrowedFd<'_>, &'a [u8])>> {
        if rel == b"." || rel.is_empty() {
            return Ok(None);
        }
        let (dir, name) = checked_split(rel, EntryKind::File)?;
        if dir.is_empty() {
            return Ok(Some((self.base.as_fd(), name)));
        }
        if self.parent.as_ref().is_none_or(|(d, _)| d != dir) {
            self.parent = None;
            let fd = open_dir(self.base.as_fd(), dir, None)?;
            self.parent = Some((dir.to_vec(), fd));
        }
        let fd = self.parent.as_ref().map(|(_, fd)| fd.as_fd());
        Ok(fd.map(|fd| (fd, name)))
    }

    /// `lstat` of `rel`, through its confined parent.
    pub(crate) fn metadata(&mut self, rel: &[u8]) -> io::Result<Metadata> {
        let fd = match self.parent_of(rel)? {
            Some((dfd, name)) => open_at(dfd, name, STAT_ONLY, 0)?,
            None => open_at(self.base.as_fd(), b".", DIR_WALK, 0)?,
        };
        File::from(fd).metadata()
    }

    /// The text of symlink `rel`, through its confined parent.
    pub(crate) fn read_link(&mut self, rel: &[u8]) -> io::Result<Vec<u8>> {
        match self.parent_of(rel)? {
            Some((dfd, name)) => readlink_at(dfd, name),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the base is not a symlink",
            )),
        }
    }

    /// Opens regular file `rel` for reading, through its confined parent (see
    /// [`open_regular`]).
    pub(crate) fn open_file(&mut self, rel: &[u8]) -> io::Result<File> {
        match self.parent_of(rel)? {
            Some((dfd, name)) => open_regular(dfd, name),
            None => Err(not_regular()),
        }
    }

    /// Opens directory `rel` for reading (its attributes), through its confined parent.
    pub(crate) fn open_dir(&mut self, rel: &[u8]) -> io::Result<File> {
        let flags = READ_NOFOLLOW | OFlags::DIRECTORY;
        Ok(File::from(match self.parent_of(rel)? {
            Some((dfd, name)) => open_at(dfd, name, flags, 0)?,
            None => open_at(self.base.as_fd(), b".", flags, 0)?,
        }))
    }

    /// Opens regular file `rel` for reading with its parent resolved afresh (for callers on
    /// several threads sharing one `Source`).
    pub(crate) fn open_file_fresh(&self, rel: &[u8]) -> io::Result<File> {
        let (dir, name) = checked_split(rel, EntryKind::File)?;
        if dir.is_empty() {
            return open_regular(self.base.as_fd(), name);
        }
        let dfd = open_dir(self.base.as_fd(), dir, None)?;
        open_regular(dfd.as_fd(), name)
    }
}

fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
}

/// Opens `name` in `dfd` for reading without following a symlink, blocking on a FIFO or
/// taking a terminal, and only if it is a regular file.
pub(crate) fn open_regular(dfd: BorrowedFd<'_>, name: &[u8]) -> io::Result<File> {
    let f = File::from(open_at(dfd, name, READ_NOFOLLOW, 0)?);
    if !f.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(f)
}

/// The MD5 of an open file's contents.
pub(crate) fn md5_of_file(f: &File) -> io::Result<[u8; 16]> {
    use md5::{Digest, Md5};
    use std::os::unix::fs::FileExt;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    loop {
        match f.read_at(&mut buf, off) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                off += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(h.finalize().into())
}
