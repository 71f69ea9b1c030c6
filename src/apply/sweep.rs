//! The start-up sweep: removes makuo temp files left by a crash anywhere under the base.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::dirs::DIR_WALK;
use super::names::is_temp_name;
use super::sys::{cstr, kind_of, list_dir, lstat_at, open_at, unlink_at};
use crate::proto::manifest::EntryKind;

/// Removes leftover makuo temp files (`.*.makuo-XXXXXX`) anywhere under `base`, without
/// following symlinks; run at daemon start. Directories that cannot be read are skipped.
/// Returns how many were removed.
pub fn sweep_temp(base: &Path) -> io::Result<usize> {
    let c = cstr(base.as_os_str().as_bytes())?;
    let fd = unsafe { libc::open(c.as_ptr(), (DIR_WALK & !libc::O_NOFOLLOW) | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut n = 0;
    sweep_dir(fd.as_raw_fd(), &mut n)?;
    Ok(n)
}

pub(super) fn sweep_dir(fd: RawFd, n: &mut usize) -> io::Result<()> {
    for name in list_dir(fd)? {
        let Ok(st) = lstat_at(fd, &name) else {
            continue;
        };
        if kind_of(st.st_mode) == Some(EntryKind::Dir) {
            if let Ok(sub) = open_at(fd, &name, DIR_WALK, 0) {
                let _ = sweep_dir(sub.as_raw_fd(), n);
            }
        } else if is_temp_name(&name) {
            unlink_at(fd, &name, 0)?;
            *n += 1;
        }
    }
    Ok(())
}
