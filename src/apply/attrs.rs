//! Attributes of entries on disk: owner, permission bits and modification time, applied
//! through an open descriptor of the entry (so they land on the inode that was checked, and
//! no `/proc` is needed, as inside a chroot) or, for a symlink, with the `*at` calls that
//! never follow it.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::OFlags;
use rustix::io::Errno;

use super::sys::{
    chown_at, fchmod, fchown, fstat, lstat_at, open_at, set_mtime, set_mtime_at, READ_NOFOLLOW,
};
use crate::proto::manifest::change::Flags;
use crate::proto::manifest::{change, Entry, EntryKind};

fn changed_type() -> io::Error {
    io::Error::other("changed type since inspection")
}

/// Refuses `name` unless it is of `kind` (not following a symlink).
pub(super) fn expect_kind(dfd: BorrowedFd<'_>, name: &[u8], kind: EntryKind) -> io::Result<()> {
    if lstat_at(dfd, name)?.kind != Some(kind) {
        return Err(changed_type());
    }
    Ok(())
}

/// Opens existing entry `name` (a file, directory or FIFO, never through a symlink) to change
/// its attributes, and checks that it is of `kind`.
pub(super) fn open_for_attrs(
    dfd: BorrowedFd<'_>,
    name: &[u8],
    kind: EntryKind,
) -> io::Result<File> {
    let fd = match open_at(dfd, name, READ_NOFOLLOW, 0) {
        Ok(fd) => fd,
        // A file its owner may not read (mode 0200, a daemon that is not root): write access
        // serves as well. O_NONBLOCK and O_NOCTTY keep a FIFO or a tty from holding us.
        Err(e)
            if e.raw_os_error() == Some(Errno::ACCESS.raw_os_error()) && kind != EntryKind::Dir =>
        {
            let flags = (READ_NOFOLLOW & !OFlags::RDONLY) | OFlags::WRONLY;
            open_at(dfd, name, flags, 0)?
        }
        Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
            return Err(changed_type())
        }
        Err(e) => return Err(e),
    };
    if fstat(&fd)?.kind != Some(kind) {
        return Err(changed_type());
    }
    Ok(File::from(fd))
}

/// Sets the attributes selected by `flags` (OWNER, PERM, TIME) on `name`, which must be of
/// `kind`, never following a symlink. A chown is followed by a chmod, since it clears set-id
/// bits. A symlink has no mode of its own: PERM is never applied to one.
pub(super) fn set_attrs_at(
    dfd: BorrowedFd<'_>,
    name: &[u8],
    kind: EntryKind,
    e: &Entry,
    flags: Flags,
    mode: u32,
    owners: bool,
) -> io::Result<()> {
    let chown = owners && flags & change::OWNER != 0;
    let time = flags & change::TIME != 0;
    if kind == EntryKind::Symlink {
        expect_kind(dfd, name, kind)?;
        if chown {
            chown_at(dfd, name, e.uid, e.gid)?;
        }
        if time {
            set_mtime_at(dfd, name, e)?;
        }
        return Ok(());
    }
    if !chown && !time && flags & change::PERM == 0 {
        return expect_kind(dfd, name, kind);
    }
    let f = open_for_attrs(dfd, name, kind)?;
    if chown {
        fchown(&f, e.uid, e.gid)?;
    }
    if chown || flags & change::PERM != 0 {
        fchmod(&f, mode)?;
    }
    if time {
        set_mtime(&f, e)?;
    }
    Ok(())
}

/// Owner, mode and modification time of a staged file.
pub(super) fn finish_attrs(file: &File, e: &Entry, owners: bool, mode: u32) -> io::Result<()> {
    // Owner first: chown clears set-id bits, which the chmod below then sets.
    if owners {
        fchown(file.as_fd(), e.uid, e.gid)?;
    }
    fchmod(file.as_fd(), mode)?;
    set_mtime(file.as_fd(), e)
}
