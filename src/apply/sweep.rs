//! The start-up sweep: removes makuo temp files left by a crash anywhere under the base, and
//! the private directories device and socket nodes are made in (`special`), once emptied.

use std::collections::HashSet;
use std::io;
use std::os::fd::BorrowedFd;

use super::names::is_temp_name;
use super::sys::{lstat_at, rmdir_at, unlink_at};
use super::walk::DirStack;
use crate::proto::manifest::EntryKind;

/// Removes leftover makuo temp files (`.*.makuo-XXXXXX`) anywhere under `base`, without
/// following symlinks; run at daemon start. Directories that cannot be read are skipped, as
/// is anything deeper than [`super::walk::MAX_DEPTH`] levels (the walk is iterative and holds at
/// most [`super::walk::OPEN_DIRS`] descriptors). `base` is a descriptor of the base directory (the
/// daemon's locked one). Files named in `keep` (the staging of atomic pushes held in doubt,
/// see `journal.rs`) stay. Returns how many were removed.
pub fn sweep_temp(base: BorrowedFd<'_>, keep: &HashSet<Vec<u8>>) -> io::Result<usize> {
    let mut n = 0;
    let mut st: DirStack<'_, ()> = DirStack::new(base);
    st.push(b".", Vec::new(), ())?;
    while st.depth() > 0 {
        let Some(name) = st.next_name() else {
            let (name, _, ()) = st.pop().expect("not empty");
            if is_temp_name(&name) && st.dir().is_ok_and(|fd| rmdir_at(fd, &name).is_ok()) {
                n += 1;
            }
            continue;
        };
        let Ok(fd) = st.dir() else {
            // Moved away meanwhile: what is left of it is not ours to walk.
            st.pop();
            continue;
        };
        let Ok(m) = lstat_at(fd, &name) else {
            continue;
        };
        if m.kind == Some(EntryKind::Dir) {
            if st.push(&name, Vec::new(), ()).is_err()
                && is_temp_name(&name)
                && st.dir().is_ok_and(|fd| rmdir_at(fd, &name).is_ok())
            {
                n += 1;
            }
        } else if is_temp_name(&name) && !keep.contains(&name) {
            unlink_at(fd, &name)?;
            n += 1;
        }
    }
    Ok(n)
}
