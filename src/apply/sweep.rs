//! The start-up sweep: removes makuo temp files left by a crash anywhere under the base, and
//! the private directories device and socket nodes are made in (`special`), once emptied.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::names::is_temp_name;
use super::sys::{list_dir, lstat_at, open_at, rmdir_at, unlink_at, DIR_WALK};
use crate::proto::manifest::EntryKind;

/// Removes leftover makuo temp files (`.*.makuo-XXXXXX`) anywhere under `base`, without
/// following symlinks; run at daemon start. Directories that cannot be read are skipped.
/// `base` is a descriptor of the base directory (the daemon's locked one). Returns how many
/// were removed.
pub fn sweep_temp(base: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n = 0;
    sweep_dir(base, &mut n)?;
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
            if is_temp_name(&name) && rmdir_at(fd, &name).is_ok() {
                *n += 1;
            }
        } else if is_temp_name(&name) {
            unlink_at(fd, &name)?;
            *n += 1;
        }
    }
    Ok(())
}
