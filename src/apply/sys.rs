//! Thin wrappers over the `*at` system calls used here (open, mkdir, unlink, stat, readlink,
//! readdir), all relative to a directory descriptor and never following a symlink unless told.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

use crate::proto::manifest::EntryKind;

pub(super) fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

pub(super) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(super) fn open_at(
    dfd: RawFd,
    name: &[u8],
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    loop {
        let fd = unsafe {
            libc::openat(
                dfd,
                c.as_ptr(),
                flags | libc::O_CLOEXEC,
                libc::c_uint::from(mode),
            )
        };
        if fd >= 0 {
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub(super) fn mkdir_at(dfd: RawFd, name: &[u8], mode: libc::mode_t) -> io::Result<()> {
    let c = cstr(name)?;
    cvt(unsafe { libc::mkdirat(dfd, c.as_ptr(), mode) }).map(drop)
}

pub(super) fn unlink_at(dfd: RawFd, name: &[u8], flags: libc::c_int) -> io::Result<()> {
    let c = cstr(name)?;
    cvt(unsafe { libc::unlinkat(dfd, c.as_ptr(), flags) }).map(drop)
}

pub(super) fn lstat_at(dfd: RawFd, name: &[u8]) -> io::Result<libc::stat> {
    let c = cstr(name)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    cvt(unsafe { libc::fstatat(dfd, c.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(unsafe { st.assume_init() })
}

pub(super) fn readlink_at(dfd: RawFd, name: &[u8]) -> io::Result<Vec<u8>> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    let n = unsafe { libc::readlinkat(dfd, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

pub(super) fn kind_of(mode: libc::mode_t) -> Option<EntryKind> {
    Some(match mode & libc::S_IFMT {
        libc::S_IFREG => EntryKind::File,
        libc::S_IFDIR => EntryKind::Dir,
        libc::S_IFLNK => EntryKind::Symlink,
        libc::S_IFCHR | libc::S_IFBLK => EntryKind::Device,
        libc::S_IFIFO => EntryKind::Fifo,
        _ => return None,
    })
}

/// Names in a directory (without `.` and `..`).
pub(super) fn list_dir(dfd: RawFd) -> io::Result<Vec<Vec<u8>>> {
    let fd = open_at(dfd, b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?.into_raw_fd();
    let dp = unsafe { libc::fdopendir(fd) };
    if dp.is_null() {
        let e = io::Error::last_os_error();
        unsafe { libc::close(fd) };
        return Err(e);
    }
    let mut names = Vec::new();
    let mut err = None;
    loop {
        set_errno_zero();
        let ent = unsafe { libc::readdir(dp) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            if e.raw_os_error().is_some_and(|n| n != 0) {
                err = Some(e);
            }
            break;
        }
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    unsafe { libc::closedir(dp) };
    match err {
        Some(e) => Err(e),
        None => Ok(names),
    }
}

/// readdir reports errors only through errno, so it must be cleared before each call.
pub(super) fn set_errno_zero() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    unsafe {
        *libc::__errno_location() = 0;
    }
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    unsafe {
        *libc::__error() = 0;
    }
}
