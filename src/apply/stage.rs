//! Staged files: a received file's hidden temp file in its target directory, created on first
//! write, and removed when a transfer ends without committing it.
//!
//! Its name is not trusted: whoever may write in that directory can unlink it and create a
//! file of their own under the same name, and a file system may then hand out the very inode
//! number just freed (ext4 does). So every staged file stays open, and reads, attributes and
//! fsync go through that descriptor; while it is open its inode cannot be reused, and a name
//! lookup that finds the same device and inode has found our file. Only beyond the open-file
//! budget (most of `RLIMIT_NOFILE`, which the daemon raises at start) is the oldest closed;
//! reopened by name, it must then also still be owned by us, have one link, and (where the
//! file system keeps one) the same birth time: a file made by any other user fails that.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::OFlags;
use rustix::process::{getrlimit, Resource};

use super::dirs::open_dir;
use super::names::with_temp_name;
use super::sys::{btime, fstat, lstat_at, open_at, unlink_at, Meta};
use super::{checked_split, refused, FsStorage};
use crate::proto::manifest::Entry;
use crate::proto::storage::{show, XferKey};

/// Staged files kept open at once when the open-file limit cannot be read.
const MIN_OPEN: usize = 256;

/// Most staged files kept open at once: half the open-file limit (the rest is left to
/// sockets, console sessions and directories), at most 2^20. Beyond it the oldest are closed
/// and reopened by name, with the stricter check described above.
pub(super) fn open_budget() -> usize {
    getrlimit(Resource::Nofile).current.map_or(MIN_OPEN, |n| {
        (n / 2).clamp(MIN_OPEN as u64, 1 << 20) as usize
    })
}

/// What identifies a staged file: its device and inode (enough while our descriptor is open,
/// since the inode cannot be reused then), and for a reopen by name its owner and birth time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct StagedId {
    dev: u64,
    ino: u64,
    uid: u32,
    btime: Option<(i64, u32)>,
}

impl StagedId {
    /// The identity of a staged file just created.
    pub(super) fn of(file: &File) -> io::Result<Self> {
        let m = fstat(file)?;
        Ok(Self {
            dev: m.dev,
            ino: m.ino,
            uid: m.uid,
            btime: btime(file),
        })
    }

    fn same_inode(&self, m: &Meta) -> bool {
        (m.dev, m.ino) == (self.dev, self.ino)
    }

    /// Whether `m` (an lstat) is this file: a regular file of the same device, inode and
    /// owner (after a restart nothing is held open, so the owner is checked too).
    pub(super) fn is_inode_of(&self, m: &Meta) -> bool {
        self.same_inode(m)
            && m.uid == self.uid
            && m.kind == Some(crate::proto::manifest::EntryKind::File)
    }

    /// Bytes of [`StagedId::put_bytes`].
    pub(super) const LEN: usize = 8 + 8 + 4 + 1 + 8 + 4;

    /// Appends the identity (for the commit journal).
    pub(super) fn put_bytes(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&self.dev.to_be_bytes());
        b.extend_from_slice(&self.ino.to_be_bytes());
        b.extend_from_slice(&self.uid.to_be_bytes());
        let (has, (s, n)) = match self.btime {
            Some(t) => (1u8, t),
            None => (0, (0, 0)),
        };
        b.push(has);
        b.extend_from_slice(&s.to_be_bytes());
        b.extend_from_slice(&n.to_be_bytes());
    }

    /// Reads what [`StagedId::put_bytes`] wrote (`b` is [`StagedId::LEN`] bytes).
    pub(super) fn from_bytes(b: &[u8]) -> Self {
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap());
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
        Self {
            dev: u64_at(0),
            ino: u64_at(8),
            uid: u32_at(16),
            btime: (b[20] == 1).then(|| (u64_at(21) as i64, u32_at(29))),
        }
    }
}

fn replaced(tmp: &[u8]) -> io::Error {
    refused(format!("staged file {} was replaced", show(tmp)))
}

/// A received file being staged under a temp name.
#[derive(Debug)]
pub(super) struct Staged {
    /// Directory holding the temp file (relative to base, "" for base).
    pub(super) dir: Vec<u8>,
    /// Temp file name inside `dir`.
    pub(super) tmp: Vec<u8>,
    /// Open descriptor, or `None` when closed to bound the number of open files.
    pub(super) file: Option<File>,
    /// Identity of the temp file: a name lookup or reopen must find the same one (a
    /// directory writer could otherwise swap in a file of its own, which a parity decode
    /// would then read as received data, or the commit install).
    pub(super) id: StagedId,
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
                reopen_staged(dfd.as_fd(), &tmp, &id, OFlags::RDWR)?
            } else {
                let (dir, name) = checked_split(&entry.path, entry.kind).inspect_err(|_| {
                    self.refused += 1;
                })?;
                let dfd = self.open_parent(dir, true)?;
                self.note_made(key);
                let (tmp, fd) = create_temp_file(dfd.as_fd(), name)?;
                let file = File::from(fd);
                let id = StagedId::of(&file)?;
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

    /// The staged file of `(key, idx)` to read back, after checking that its name still
    /// leads to it: a swapped file fails the entry now rather than at the commit.
    pub(super) fn staged_checked(
        &mut self,
        key: XferKey,
        idx: u32,
        entry: &Entry,
    ) -> io::Result<&File> {
        if let Some(s) = self.staged.get(&(key, idx)).filter(|s| s.file.is_some()) {
            let (dir, tmp, id) = (s.dir.clone(), s.tmp.clone(), s.id);
            let dfd = self.open_parent(&dir, false)?;
            check_name(dfd.as_fd(), &tmp, &id)?;
        }
        self.staged_file(key, idx, entry, false)
    }

    /// Closes the oldest open staged files until one more may be opened.
    pub(super) fn make_room(&mut self) {
        while self.open_count >= self.max_open {
            let Some(k) = self.open_order.pop_front() else {
                break;
            };
            if let Some(f) = self.staged.get_mut(&k).and_then(|s| s.file.take()) {
                drop(f);
                self.open_count -= 1;
            }
        }
        if self.open_order.len() > 4 * self.max_open {
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
        self.shrink_when_idle();
    }

    /// Once nothing is staged, gives back the tables' room: a push of many files grows them,
    /// and a map keeps its capacity when emptied (a 60,000-file push left about 10 MB).
    fn shrink_when_idle(&mut self) {
        if self.staged.is_empty() {
            self.staged.shrink_to_fit();
            self.refusals.shrink_to_fit();
            self.made_dirs.shrink_to_fit();
        }
        if self.pending.is_empty() {
            self.pending.shrink_to_fit();
        }
    }
}

/// Reopens staged temp file `tmp` in `dfd` (closed to stay within the open-file budget),
/// refusing anything but the file created for it: same device and inode, still owned by the
/// user who created it, one link, same birth time where the file system records one.
pub(super) fn reopen_staged(
    dfd: BorrowedFd<'_>,
    tmp: &[u8],
    id: &StagedId,
    access: OFlags,
) -> io::Result<File> {
    let file = File::from(open_at(dfd, tmp, access | OFlags::NOFOLLOW, 0)?);
    let m = fstat(&file)?;
    if !id.same_inode(&m) || m.uid != id.uid || m.nlink != 1 || btime(&file) != id.btime {
        return Err(replaced(tmp));
    }
    Ok(file)
}

/// Checks that name `tmp` in `dfd` still leads to the staged file `id`, whose descriptor the
/// caller holds open (so its inode number cannot have been handed to another file), and that
/// nobody linked it elsewhere.
pub(super) fn check_name(dfd: BorrowedFd<'_>, tmp: &[u8], id: &StagedId) -> io::Result<()> {
    match lstat_at(dfd, tmp) {
        Ok(m) if id.same_inode(&m) && m.nlink == 1 => Ok(()),
        Ok(_) => Err(replaced(tmp)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(replaced(tmp)),
        Err(e) => Err(e),
    }
}

/// Checks, after renaming a staged file to `name`, that the file now at `name` is the one we
/// hold open (a swap between the check before the rename and the rename would install
/// someone else's file; it is then reported, not claimed).
pub(super) fn check_installed(
    dfd: BorrowedFd<'_>,
    name: &[u8],
    tmp: &[u8],
    id: &StagedId,
) -> io::Result<()> {
    match lstat_at(dfd, name) {
        Ok(m) if id.same_inode(&m) => Ok(()),
        Ok(_) => Err(replaced(tmp)),
        Err(e) => Err(e),
    }
}

pub(super) fn create_temp_file(dfd: BorrowedFd<'_>, name: &[u8]) -> io::Result<(Vec<u8>, OwnedFd)> {
    // Read-write (not write-only) so that staged data can be read back for repair.
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR;
    with_temp_name(name, |t| open_at(dfd, t, flags, 0o600))
}
