//! The start-up sweep: removes makuo temp files left by a crash anywhere under the base.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use super::names::is_temp_name;
use super::sys::{list_dir, lstat_at, open_at, open_dir_path, unlink_at, DIR_WALK};
use crate::proto::manifest::EntryKind;

/// Removes leftover makuo temp files (`.*.makuo-XXXXXX`) anywhere under `base`, without
/// following symlinks; run at daemon start. Directories that cannot be read are skipped.
/// Returns how many were removed.
pub fn sweep_temp(base: &Path) -> io::Result<usize> {
    let fd = open_dir_path(base, DIR_WALK)?;
    let mut n = 0;
    sweep_dir(fd.as_fd(), &mut n)?;
    Ok(n)
}

fn sweep_dir(fd: BorrowedFd<'_>, n: &mut usize) -> io::Result<()> {
    for name in list_dir(fd)? {
        let Ok(st) = lstat_at(fd, &name) else {
            continue;
        };
        if st.kind == Some(EntryKind::Dir) {
            if let Ok(sub) = open_at(fd, &name, DIR_WALK, 0) {
                let _ = sweep_dir(sub.as_fd(), n);
            }
        } else if is_temp_name(&name) {
            unlink_at(fd, &name)?;
            *n += 1;
        }
    }
    Ok(())
}
