//! Iterative walks of directory trees in the base (the deletion scan, removing a tree, the
//! start-up sweep): one frame per directory level on a heap stack instead of one call per
//! level, at most [`MAX_DEPTH`] levels, and at most [`OPEN_DIRS`] directory descriptors
//! open at once however deep the walk goes.
//!
//! A base writer can make a directory chain far deeper than any path a manifest can name
//! (19,900 levels crashed a member that recursed per level, and held one descriptor per
//! level). Here, a directory whose descriptor was closed to stay within the budget is
//! opened again from its nearest open ancestor, one `O_NOFOLLOW` component at a time, and
//! must still be the directory first opened (device and inode): a tree moved or swapped
//! meanwhile is refused, never followed (no `..` is ever walked). What lies deeper than
//! [`MAX_DEPTH`] is left alone: the deletion scan keeps it, removing a tree that holds it
//! fails with a reason, and the sweep does not look there.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::refused;
use super::sys::{fstat, list_dir, open_at, DIR_WALK};

/// Most directory levels a walk descends (a manifest path of at most 4096 bytes has at
/// most 2048 components, so nothing a push can name lies deeper).
pub(super) const MAX_DEPTH: usize = 2048;

/// Most directory descriptors one walk holds open at once.
pub(super) const OPEN_DIRS: usize = 64;

/// One directory level of a walk.
struct Frame<S> {
    /// Its name in its parent (in the walk's start directory for the first frame).
    name: Vec<u8>,
    /// Device and inode, to recognise it when opened again.
    id: (u64, u64),
    /// Open descriptor (`O_PATH`), or `None` when closed to stay within [`OPEN_DIRS`].
    fd: Option<OwnedFd>,
    /// Names in it not visited yet.
    names: std::vec::IntoIter<Vec<u8>>,
    /// Its path relative to the base.
    rel: Vec<u8>,
    /// What the walker keeps per level.
    state: S,
}

/// The stack of directories a walk is in, from a start directory down.
pub(super) struct DirStack<'a, S> {
    start: BorrowedFd<'a>,
    frames: Vec<Frame<S>>,
    open: usize,
}

/// Whether an error is the depth cap (see [`MAX_DEPTH`]).
#[cfg(test)]
pub(super) fn is_too_deep(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|r| r.to_string().contains(TOO_DEEP))
}

const TOO_DEEP: &str = "directory levels: not walked";

impl<'a, S> DirStack<'a, S> {
    /// A walk from directory `start` (which stays open for the walk).
    pub(super) fn new(start: BorrowedFd<'a>) -> Self {
        Self {
            start,
            frames: Vec::new(),
            open: 0,
        }
    }

    /// Levels on the stack.
    pub(super) fn depth(&self) -> usize {
        self.frames.len()
    }

    /// Opens directory `name` in the current directory (the start directory when the stack
    /// is empty), reads its names and makes it the current directory, at path `rel`.
    pub(super) fn push(&mut self, name: &[u8], rel: Vec<u8>, state: S) -> io::Result<()> {
        if self.frames.len() >= MAX_DEPTH {
            return Err(refused(format!("more than {MAX_DEPTH} {TOO_DEEP}")));
        }
        let fd = open_at(self.dir()?, name, DIR_WALK, 0)?;
        let m = fstat(&fd)?;
        let names = list_dir(fd.as_fd())?;
        self.frames.push(Frame {
            name: name.to_vec(),
            id: (m.dev, m.ino),
            fd: Some(fd),
            names: names.into_iter(),
            rel,
            state,
        });
        self.open += 1;
        self.trim();
        Ok(())
    }

    /// The next name in the current directory not visited yet.
    pub(super) fn next_name(&mut self) -> Option<Vec<u8>> {
        self.frames.last_mut()?.names.next()
    }

    /// The current directory's path and state.
    pub(super) fn top(&mut self) -> Option<(&[u8], &mut S)> {
        self.frames
            .last_mut()
            .map(|f| (f.rel.as_slice(), &mut f.state))
    }

    /// Leaves the current directory: its name (in its parent), path and state. The parent
    /// is the current directory again ([`Self::dir`]).
    pub(super) fn pop(&mut self) -> Option<(Vec<u8>, Vec<u8>, S)> {
        let f = self.frames.pop()?;
        if f.fd.is_some() {
            self.open -= 1;
        }
        Some((f.name, f.rel, f.state))
    }

    /// The current directory's descriptor (the start directory when the stack is empty),
    /// opened again if it was closed.
    pub(super) fn dir(&mut self) -> io::Result<BorrowedFd<'_>> {
        let Some(top) = self.frames.len().checked_sub(1) else {
            return Ok(self.start);
        };
        if self.frames[top].fd.is_none() {
            self.reopen(top)?;
        }
        Ok(self.frames[top]
            .fd
            .as_ref()
            .map_or(self.start, |f| f.as_fd()))
    }

    /// Opens frame `k` again from its nearest open ancestor, one component at a time, each
    /// checked to be the directory first opened there.
    fn reopen(&mut self, k: usize) -> io::Result<()> {
        let from = self.frames[..k].iter().rposition(|f| f.fd.is_some());
        let first = from.map_or(0, |j| j + 1);
        for i in first..=k {
            let fd = {
                let parent = match i.checked_sub(1) {
                    Some(p) => self.frames[p].fd.as_ref().map_or(self.start, |f| f.as_fd()),
                    None => self.start,
                };
                open_at(parent, &self.frames[i].name, DIR_WALK, 0)?
            };
            let m = fstat(&fd)?;
            if (m.dev, m.ino) != self.frames[i].id {
                return Err(refused(format!(
                    "directory {} changed during the walk",
                    crate::proto::storage::show(&self.frames[i].rel)
                )));
            }
            self.frames[i].fd = Some(fd);
            self.open += 1;
        }
        self.trim();
        Ok(())
    }

    /// Closes the shallowest open descriptors beyond [`OPEN_DIRS`].
    fn trim(&mut self) {
        let mut i = 0;
        while self.open > OPEN_DIRS && i < self.frames.len() {
            if self.frames[i].fd.take().is_some() {
                self.open -= 1;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A chain `d/d/d/...` `n` levels deep under `base`, made with `*at` calls (its path is
    /// far longer than PATH_MAX); `leaf` is written in the deepest one.
    pub(crate) fn deep_chain(base: &std::path::Path, n: usize, leaf: &[u8]) {
        use super::super::sys::{mkdir_at, open_at as oa};
        use rustix::fs::OFlags;
        let mut fd = super::super::sys::open_dir_path(base, DIR_WALK).unwrap();
        for _ in 0..n {
            mkdir_at(fd.as_fd(), b"d", 0o755).unwrap();
            fd = oa(fd.as_fd(), b"d", DIR_WALK, 0).unwrap();
        }
        let f = oa(
            fd.as_fd(),
            leaf,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            0o644,
        )
        .unwrap();
        drop(f);
    }

    /// Removes what [`deep_chain`] made (std's `remove_dir_all` recurses per level), one
    /// level at a time: the second level moves up to the base and the first goes.
    pub(crate) fn remove_chain(base: &std::path::Path) {
        use super::super::sys::{rename_noreplace, rmdir_at, unlink_at};
        let b = super::super::sys::open_dir_path(base, DIR_WALK).unwrap();
        let b = b.as_fd();
        while let Ok(d) = open_at(b, b"d", DIR_WALK, 0) {
            for n in list_dir(d.as_fd()).unwrap() {
                if n == b"d" {
                    rename_noreplace(d.as_fd(), b"d", b, b"next").unwrap();
                } else if unlink_at(d.as_fd(), &n).is_err() {
                    rmdir_at(d.as_fd(), &n).unwrap();
                }
            }
            drop(d);
            rmdir_at(b, b"d").unwrap();
            if rename_noreplace(b, b"next", b, b"d").is_err() {
                break;
            }
        }
    }

    #[test]
    fn walk_a_deep_chain_with_few_descriptors() {
        let tmp = tempfile::tempdir().unwrap();
        deep_chain(tmp.path(), 300, b"leaf");
        let base = super::super::sys::open_dir_path(tmp.path(), DIR_WALK).unwrap();
        let mut st: DirStack<'_, ()> = DirStack::new(base.as_fd());
        st.push(b".", Vec::new(), ()).unwrap();
        // Descriptors inside the tree only: tests running beside this one in the process
        // open (and close) descriptors of their own.
        let root = tmp.path().canonicalize().unwrap();
        let fds = || {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|p| p.starts_with(&root))
                .count()
        };
        let before = fds();
        let mut seen = 0;
        let mut max_fds = 0;
        while st.depth() > 0 {
            match st.next_name() {
                Some(n) => {
                    seen += 1;
                    if n == b"d" {
                        st.push(&n, Vec::new(), ()).unwrap();
                    }
                    max_fds = max_fds.max(fds());
                }
                None => {
                    st.pop();
                    // The parent is reachable again, even when its descriptor was closed.
                    st.dir().unwrap();
                }
            }
        }
        assert_eq!(seen, 301);
        assert!(
            max_fds <= before + OPEN_DIRS + 2,
            "{max_fds} descriptors open (from {before})"
        );
    }

    #[test]
    fn walk_refuses_to_go_deeper_than_the_cap() {
        let tmp = tempfile::tempdir().unwrap();
        deep_chain(tmp.path(), MAX_DEPTH + 5, b"leaf");
        let base = super::super::sys::open_dir_path(tmp.path(), DIR_WALK).unwrap();
        let mut st: DirStack<'_, ()> = DirStack::new(base.as_fd());
        let err = loop {
            if let Err(e) = st.push(b"d", Vec::new(), ()) {
                break e;
            }
        };
        assert_eq!(st.depth(), MAX_DEPTH);
        assert!(is_too_deep(&err));
        drop(st);
        remove_chain(tmp.path());
    }
}
