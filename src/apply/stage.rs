//! Staged files: a received file's hidden temp file in its target directory, created on first
//! write, kept open within a bound, reopened only if it is still the inode created for it, and
//! removed when a transfer ends without committing it.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::OFlags;

use super::dirs::open_dir;
use super::names::with_temp_name;
use super::sys::{open_at, unlink_at};
use super::{checked_split, refused, FsStorage};
use crate::proto::manifest::Entry;
use crate::proto::storage::{show, XferKey};

/// Most staged files kept open at once; beyond this the oldest are closed and reopened by
/// their temp name when written again.
pub(super) const MAX_OPEN: usize = 256;

/// A received file being staged under a temp name.
#[derive(Debug)]
pub(super) struct Staged {
    /// Directory holding the temp file (relative to base, "" for base).
    pub(super) dir: Vec<u8>,
    /// Temp file name inside `dir`.
    pub(super) tmp: Vec<u8>,
    /// Open descriptor, or `None` when closed to bound the number of open files.
    pub(super) file: Option<File>,
    /// Device and inode of the temp file: a reopen by name must find the same one (a
    /// directory writer could otherwise swap in a file of its own, which a parity decode
    /// would then read as received data).
    pub(super) id: (u64, u64),
    /// Contents complete and attributes set (`Storage::complete`): the commit only makes it
    /// durable (if asked), gives it `final_mode` if set, and renames it.
    pub(super) ready: bool,
    /// The mode to set just before the rename, when the early one withheld group/other
    /// write permission.
    pub(super) final_mode: Option<u32>,
    /// Bytes written since writeback was last started (durable daemons only).
    pub(super) unsynced: u64,
}

/// A durable daemon starts writeback of a staged file every this many bytes, so that the
/// fsync before its rename finds little left to write.
pub(super) const WRITEBACK_EVERY: u64 = 8 << 20;

impl FsStorage {
    /// The staged file of `(key, idx)`, reopened if it was closed, created if `create`.
    pub(super) fn staged_file(
        &mut self,
        key: XferKey,
        idx: u32,
        entry: &Entry,
        create: bool,
    ) -> io::Result<&File> {
        let k = (key, idx);
        let open = match self.staged.get(&k) {
            Some(s) => s.file.is_some(),
            None if create => false,
            None => return Err(io::Error::new(io::ErrorKind::NotFound, "not staged")),
        };
        if !open {
            self.make_room();
            let file = if let Some(s) = self.staged.get(&k) {
                let (dir, tmp, id) = (s.dir.clone(), s.tmp.clone(), s.id);
                let dfd = self.open_parent(&dir, false)?;
                reopen_staged(dfd.as_fd(), &tmp, id, OFlags::RDWR)?
            } else {
                let (dir, name) = checked_split(&entry.path, entry.kind).inspect_err(|_| {
                    self.refused += 1;
                })?;
                let dfd = self.open_parent(dir, true)?;
                let (tmp, fd) = create_temp_file(dfd.as_fd(), name)?;
                let file = File::from(fd);
                let id = file_id(&file)?;
                self.staged.insert(
                    k,
                    Staged {
                        dir: dir.to_vec(),
                        tmp,
                        file: None,
                        id,
                        ready: false,
                        final_mode: None,
                        unsynced: 0,
                    },
                );
                file
            };
            if let Some(s) = self.staged.get_mut(&k) {
                s.file = Some(file);
            }
            self.open_count += 1;
            self.open_order.push_back(k);
        }
        self.staged
            .get(&k)
            .and_then(|s| s.file.as_ref())
            .ok_or_else(|| io::Error::other("staged file vanished"))
    }

    /// Closes the oldest open staged files until one more may be opened.
    pub(super) fn make_room(&mut self) {
        while self.open_count >= MAX_OPEN {
            let Some(k) = self.open_order.pop_front() else {
                break;
            };
            if let Some(f) = self.staged.get_mut(&k).and_then(|s| s.file.take()) {
                drop(f);
                self.open_count -= 1;
            }
        }
        if self.open_order.len() > 4 * MAX_OPEN {
            let staged = &self.staged;
            self.open_order
                .retain(|k| staged.get(k).is_some_and(|s| s.file.is_some()));
        }
    }

    /// Takes a staged entry out of the map, keeping the open count right.
    pub(super) fn take_staged(&mut self, k: (XferKey, u32)) -> Option<Staged> {
        let s = self.staged.remove(&k)?;
        if s.file.is_some() {
            self.open_count -= 1;
        }
        Some(s)
    }

    /// Removes every temp file staged for `key`.
    pub(super) fn drop_staged(&mut self, key: XferKey) {
        self.dirs.clear();
        let mut freed = 0;
        self.pending.retain(|(k, _), b| {
            let keep = *k != key;
            if !keep {
                freed += b.len();
            }
            keep
        });
        self.pending_bytes -= freed;
        let mut keys: Vec<_> = self
            .staged
            .keys()
            .filter(|(k, _)| *k == key)
            .copied()
            .collect();
        keys.sort_unstable();
        let mut dir_cache: Option<(Vec<u8>, OwnedFd)> = None;
        for k in keys {
            let Some(s) = self.take_staged(k) else {
                continue;
            };
            drop(s.file);
            if dir_cache.as_ref().is_none_or(|(d, _)| *d != s.dir) {
                // A directory that cannot be resolved any more leaves the temp to sweep_temp.
                dir_cache = open_dir(self.base_dir(), &s.dir, None)
                    .ok()
                    .map(|fd| (s.dir.clone(), fd));
            }
            if let Some((_, dfd)) = &dir_cache {
                let _ = unlink_at(dfd.as_fd(), &s.tmp);
            }
        }
        self.refusals.retain(|(k, _), _| *k != key);
    }
}

/// Device and inode of an open file.
pub(super) fn file_id(file: &File) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let md = file.metadata()?;
    Ok((md.dev(), md.ino()))
}

/// Reopens staged temp file `tmp` in `dfd`, refusing anything but the inode created for it.
pub(super) fn reopen_staged(
    dfd: BorrowedFd<'_>,
    tmp: &[u8],
    id: (u64, u64),
    access: OFlags,
) -> io::Result<File> {
    let file = File::from(open_at(dfd, tmp, access | OFlags::NOFOLLOW, 0)?);
    same_staged(tmp, file_id(&file)?, id)?;
    Ok(file)
}

/// Refuses a staged temp file `tmp` whose device and inode (`found`) are not the ones it
/// was created with (`id`).
pub(super) fn same_staged(tmp: &[u8], found: (u64, u64), id: (u64, u64)) -> io::Result<()> {
    if found == id {
        Ok(())
    } else {
        Err(refused(format!("staged file {} was replaced", show(tmp))))
    }
}

pub(super) fn create_temp_file(dfd: BorrowedFd<'_>, name: &[u8]) -> io::Result<(Vec<u8>, OwnedFd)> {
    // Read-write (not write-only) so that staged data can be read back for repair.
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR;
    with_temp_name(name, |t| open_at(dfd, t, flags, 0o600))
}
