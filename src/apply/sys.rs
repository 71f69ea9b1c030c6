//! Thin wrappers over the `*at` system calls used here (open, mkdir, mknod, link, unlink,
//! rename, stat, readlink, readdir, times, owners), all relative to a directory descriptor and never following
//! a symlink unless told, on rustix. The one call no safe crate offers (`sync_file_range`) is
//! here too.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::proto::manifest::{DevNum, Entry, EntryKind};

/// Flags to open a directory we only walk through or name things in (`O_PATH` needs no read
/// permission on Linux). Never follows a symlink.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) const DIR_WALK: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) const DIR_WALK: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW);

/// Flags to open an existing entry to read it or change its attributes through the
/// descriptor: never follows a symlink, never blocks on a FIFO, never becomes a terminal.
pub(super) const READ_NOFOLLOW: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY);

/// What `lstat` tells about an entry, in the units used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Meta {
    /// Type (`None` for a socket or anything else makuo does not handle).
    pub(super) kind: Option<EntryKind>,
    /// Permission bits (`0o7777`).
    pub(super) perm: u32,
    pub(super) size: u64,
    pub(super) mtime: i64,
    pub(super) mtime_nsec: i64,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) nlink: u64,
    /// Type and number of a device node.
    pub(super) dev_num: Option<DevNum>,
}

impl Meta {
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn of(st: &rfs::Stat) -> Self {
        let ft = FileType::from_raw_mode(st.st_mode as _);
        let dev_num = matches!(ft, FileType::BlockDevice | FileType::CharacterDevice).then(|| {
            let rdev = st.st_rdev as rfs::Dev;
            DevNum {
                block: ft == FileType::BlockDevice,
                major: rfs::major(rdev),
                minor: rfs::minor(rdev),
            }
        });
        Self {
            kind: kind_of(ft),
            perm: st.st_mode as u32 & 0o7777,
            size: st.st_size as u64,
            mtime: st.st_mtime as i64,
            mtime_nsec: st.st_mtime_nsec as i64,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            dev_num,
        }
    }
}

/// The entry kind of a file type.
pub(super) fn kind_of(t: FileType) -> Option<EntryKind> {
    Some(match t {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        FileType::CharacterDevice | FileType::BlockDevice => EntryKind::Device,
        FileType::Fifo => EntryKind::Fifo,
        FileType::Socket => EntryKind::Socket,
        _ => return None,
    })
}

/// Retries a call interrupted by a signal.
fn retry<T>(mut f: impl FnMut() -> Result<T, Errno>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => {}
            r => return r.map_err(io::Error::from),
        }
    }
}

/// `openat(dfd, name, flags | O_CLOEXEC, mode)`.
pub(super) fn open_at(
    dfd: BorrowedFd<'_>,
    name: &[u8],
    flags: OFlags,
    mode: u32,
) -> io::Result<OwnedFd> {
    retry(|| {
        rfs::openat(
            dfd,
            name,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
    })
}

/// Opens a directory by a path of the operator's choosing (may pass through symlinks).
pub(super) fn open_dir_path(path: &std::path::Path, flags: OFlags) -> io::Result<OwnedFd> {
    let flags = (flags & !OFlags::NOFOLLOW) | OFlags::DIRECTORY | OFlags::CLOEXEC;
    retry(|| rfs::open(path, flags, Mode::empty()))
}

pub(super) fn mkdir_at(dfd: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    Ok(rfs::mkdirat(dfd, name, Mode::from_raw_mode(mode))?)
}

/// Removes a non-directory.
pub(super) fn unlink_at(dfd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    Ok(rfs::unlinkat(dfd, name, AtFlags::empty())?)
}

/// Removes an empty directory.
pub(super) fn rmdir_at(dfd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    Ok(rfs::unlinkat(dfd, name, AtFlags::REMOVEDIR)?)
}

/// Renames `from` over `to`, both in `dfd`.
pub(super) fn rename_at(dfd: BorrowedFd<'_>, from: &[u8], to: &[u8]) -> io::Result<()> {
    Ok(rfs::renameat(dfd, from, dfd, to)?)
}

pub(super) fn symlink_at(target: &[u8], dfd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    Ok(rfs::symlinkat(target, dfd, name)?)
}

pub(super) fn mkfifo_at(dfd: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    Ok(rfs::mknodat(
        dfd,
        name,
        FileType::Fifo,
        Mode::from_raw_mode(mode),
        0,
    )?)
}

/// Makes a device node (`dev` given) or a socket node (`None`), mode `mode`.
pub(super) fn mknod_at(
    dfd: BorrowedFd<'_>,
    name: &[u8],
    dev: Option<DevNum>,
    mode: u32,
) -> io::Result<()> {
    let (t, rdev) = match dev {
        Some(d) if d.block => (FileType::BlockDevice, rfs::makedev(d.major, d.minor)),
        Some(d) => (FileType::CharacterDevice, rfs::makedev(d.major, d.minor)),
        None => (FileType::Socket, 0),
    };
    Ok(rfs::mknodat(dfd, name, t, Mode::from_raw_mode(mode), rdev)?)
}

/// Moves `from` in `from_dir` to `to` in `to_dir`, failing (`AlreadyExists`) rather than
/// replace anything at `to`.
pub(super) fn rename_noreplace(
    from_dir: BorrowedFd<'_>,
    from: &[u8],
    to_dir: BorrowedFd<'_>,
    to: &[u8],
) -> io::Result<()> {
    Ok(rfs::renameat_with(
        from_dir,
        from,
        to_dir,
        to,
        rfs::RenameFlags::NOREPLACE,
    )?)
}

/// Changes the permission bits of `name` in `dfd`. It follows a symlink: only for a
/// directory nobody else can write in (see `special`).
pub(super) fn chmod_at(dfd: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    Ok(rfs::chmodat(
        dfd,
        name,
        Mode::from_raw_mode(mode),
        AtFlags::empty(),
    )?)
}

/// Makes `to` in `to_dir` another name of `from` in `from_dir`; a symlink at `from` is
/// linked itself, never followed.
pub(super) fn link_at(
    from_dir: BorrowedFd<'_>,
    from: &[u8],
    to_dir: BorrowedFd<'_>,
    to: &[u8],
) -> io::Result<()> {
    Ok(rfs::linkat(from_dir, from, to_dir, to, AtFlags::empty())?)
}

/// Makes `to` in `to_dir` another name of the open file `file` (`linkat` with
/// `AT_EMPTY_PATH`: needs `CAP_DAC_READ_SEARCH`, so in practice root).
pub(super) fn link_fd_at(file: impl AsFd, to_dir: BorrowedFd<'_>, to: &[u8]) -> io::Result<()> {
    Ok(rfs::linkat(file, c"", to_dir, to, AtFlags::EMPTY_PATH)?)
}

/// `lstat` relative to `dfd`.
pub(super) fn lstat_at(dfd: BorrowedFd<'_>, name: &[u8]) -> io::Result<Meta> {
    Ok(Meta::of(&rfs::statat(
        dfd,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

/// `fstat` of an open descriptor.
pub(super) fn fstat(fd: impl AsFd) -> io::Result<Meta> {
    Ok(Meta::of(&rfs::fstat(fd)?))
}

/// Birth time of an open file, where the file system records one.
pub(super) fn btime(fd: impl AsFd) -> Option<(i64, u32)> {
    let sx = rfs::statx(fd, c"", AtFlags::EMPTY_PATH, rfs::StatxFlags::BTIME).ok()?;
    (sx.stx_mask & rfs::StatxFlags::BTIME.bits() != 0)
        .then_some((sx.stx_btime.tv_sec, sx.stx_btime.tv_nsec))
}

pub(super) fn readlink_at(dfd: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<u8>> {
    Ok(rfs::readlinkat(dfd, name, Vec::new())?.into_bytes())
}

/// Names in a directory (without `.` and `..`).
pub(super) fn list_dir(dfd: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    // A descriptor of its own that can be read (the one given may be an O_PATH one).
    let fd = open_at(dfd, b".", OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
    let mut names = Vec::new();
    for ent in rfs::Dir::new(fd)? {
        let ent = ent?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// This process's effective user id.
pub(super) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Flushes the whole file system holding `fd`.
pub(super) fn syncfs(fd: impl AsFd) -> io::Result<()> {
    Ok(rfs::syncfs(fd)?)
}

/// Starts writeback of a file's dirty pages without waiting for any of it.
pub(super) fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range takes a descriptor and three integers and touches no memory of
    // ours; the descriptor is borrowed from an open `File` for the duration of the call. No
    // safe crate wraps it (rustix offers it only through io_uring).
    unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

/// Times for `utimensat`/`futimens`: access time untouched, modification time from `e`.
fn mtime_of(e: &Entry) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: e.mtime,
            tv_nsec: e.mtime_nsec as _,
        },
    }
}

/// Sets the modification time of an open file to `e`'s.
pub(super) fn set_mtime(fd: impl AsFd, e: &Entry) -> io::Result<()> {
    Ok(rfs::futimens(fd, &mtime_of(e))?)
}

/// Sets the modification time of `name` (a symlink itself, never its target) to `e`'s.
pub(super) fn set_mtime_at(dfd: BorrowedFd<'_>, name: &[u8], e: &Entry) -> io::Result<()> {
    Ok(rfs::utimensat(
        dfd,
        name,
        &mtime_of(e),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// Changes the owner of `name` (a symlink itself, never its target).
pub(super) fn chown_at(dfd: BorrowedFd<'_>, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    Ok(rfs::chownat(
        dfd,
        name,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// Changes the owner of an open file.
pub(super) fn fchown(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    Ok(rfs::fchown(
        fd,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
    )?)
}

/// Changes the permission bits of an open file.
pub(super) fn fchmod(fd: impl AsFd, mode: u32) -> io::Result<()> {
    Ok(rfs::fchmod(fd, Mode::from_raw_mode(mode))?)
}
