//! Entries without contents, made at commit: FIFOs, sockets and device nodes, and hard links
//! to a file of the same push.
//!
//! A FIFO is made under a temp name in its directory, given its attributes through a
//! descriptor opened without blocking, and renamed into place. A socket or device node is
//! never opened (opening a device can act on the device): it is made in a private directory
//! (a temp name, mode 0700, checked to be the one just made and ours), where nobody else can
//! swap it for a symlink while its owner, mode and time are set by name; then it moves next
//! to its final name under a temp name and is renamed into place. Device nodes are made only
//! by a daemon started with `--allow-devices` that runs as root; anywhere else each is
//! refused with the reason. A hard link is made from the file the commit wrote for its
//! target (which comes first in the manifest, and which inspection has rewritten whenever
//! a link to it must be made) under a temp name, checked to be that inode, and renamed
//! into place.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::attrs::set_attrs_at;
use super::commit::replace;
use super::names::with_temp_name;
use super::sys::{
    chmod_at, chown_at, euid, fstat, link_at, link_fd_at, lstat_at, mkdir_at, mkfifo_at, mknod_at,
    open_at, rename_noreplace, rmdir_at, set_mtime_at, unlink_at, DIR_WALK,
};
use super::{checked_split, refused, FsStorage, Protect};
use crate::proto::manifest::change::{self, Flags};
use crate::proto::manifest::{Entry, EntryKind};
use crate::proto::storage::show;

/// The node's name inside its private directory (a temp name, so that the start-up sweep
/// removes one a crash left behind).
const PRIVATE_NODE: &[u8] = b".n.makuo-000000";

impl FsStorage {
    /// Why this daemon refuses device nodes, if it does.
    fn device_refusal(&self) -> Option<&'static str> {
        if !self.opts.allow_devices {
            Some("device nodes are refused: this daemon runs without --allow-devices")
        } else if !self.is_root {
            Some("device nodes are refused: this daemon does not run as root")
        } else {
            None
        }
    }

    /// Makes (or updates) FIFO, socket or device node `e` as `name` in `dir`.
    pub(super) fn apply_node(
        &mut self,
        dir: &[u8],
        name: &[u8],
        e: &Entry,
        f: Flags,
        owners: bool,
        protect: Protect<'_>,
    ) -> io::Result<()> {
        if e.kind == EntryKind::Device {
            if let Some(why) = self.device_refusal() {
                self.refused += 1;
                return Err(refused(why.into()));
            }
        }
        let dfd = self.open_parent(dir, true)?;
        let dfd = dfd.as_fd();
        // Set-id bits mean nothing on these; a device keeps them only with owners.
        let mode = self.want_mode(e, owners);
        if e.kind == EntryKind::Fifo && f & (change::MISSING | change::TYPE) == 0 {
            return set_attrs_at(dfd, name, e.kind, e, f, mode, owners);
        }
        // A socket or device is never opened, so any change makes a new one.
        let tmp = if e.kind == EntryKind::Fifo {
            let (tmp, ()) = with_temp_name(name, |t| mkfifo_at(dfd, t, 0o600))?;
            let attrs = change::TIME | change::PERM | change::OWNER;
            set_attrs_at(dfd, &tmp, e.kind, e, attrs, mode, owners).inspect_err(|_| {
                let _ = unlink_at(dfd, &tmp);
            })?;
            tmp
        } else {
            make_private_node(dfd, name, e, mode, owners)?
        };
        replace(dfd, &tmp, name, &e.path, f, protect).inspect_err(|_| {
            let _ = unlink_at(dfd, &tmp);
        })
    }

    /// Makes `name` in `dir` another name of `target`'s file (unless it already is).
    ///
    /// The link is made only from the file this commit wrote for the target (`written`,
    /// still open, so its inode cannot be reused): with `linkat(AT_EMPTY_PATH)` from its
    /// descriptor where the kernel allows it (as root), else from the target's name,
    /// checked afterwards to be that very inode. Inspection rewrites a target whenever one
    /// of its links must be made, so a target this commit did not write has only links
    /// that are already right; one that is not (the tree changed since) is refused, never
    /// linked to whatever is at the target's path now.
    pub(super) fn apply_hard_link(
        &mut self,
        dir: &[u8],
        name: &[u8],
        e: &Entry,
        target: Option<(&Entry, Option<&File>)>,
        f: Flags,
        protect: Protect<'_>,
    ) -> io::Result<()> {
        let Some((t, written)) = target else {
            self.refused += 1;
            return Err(refused(
                "hard link target is not a regular file of this push".into(),
            ));
        };
        let (tdir, tname) = checked_split(&t.path, EntryKind::File).inspect_err(|_| {
            self.refused += 1;
        })?;
        let tfd = self.open_parent(tdir, false)?;
        let tfd = tfd.as_fd();
        let dfd = self.open_parent(dir, true)?;
        let dfd = dfd.as_fd();
        let want = match written {
            Some(file) => fstat(file)?,
            None => lstat_at(tfd, tname)?,
        };
        if want.kind != Some(EntryKind::File) {
            return Err(io::Error::other(format!(
                "hard link target {} is not a regular file here",
                show(&t.path)
            )));
        }
        let same = |m: &super::sys::Meta| {
            m.kind == Some(EntryKind::File) && (m.dev, m.ino) == (want.dev, want.ino)
        };
        if lstat_at(dfd, name).is_ok_and(|m| same(&m)) {
            return Ok(());
        }
        let Some(file) = written else {
            self.refused += 1;
            return Err(refused(format!(
                "hard link target {} changed since it was inspected; not linked",
                show(&t.path)
            )));
        };
        let (tmp, ()) = with_temp_name(name, |n| {
            link_fd_at(file, dfd, n).or_else(|_| link_at(tfd, tname, dfd, n))
        })?;
        // Linked by name: the target's name may have been swapped meanwhile.
        let r = match lstat_at(dfd, &tmp) {
            Ok(m) if same(&m) => replace(dfd, &tmp, name, &e.path, f, protect),
            Ok(_) => Err(refused(format!(
                "hard link target {} was replaced",
                show(&t.path)
            ))),
            Err(err) => Err(err),
        };
        if r.is_err() {
            let _ = unlink_at(dfd, &tmp);
        }
        r
    }
}

/// Makes socket or device node `e` with its attributes in a private directory inside `dfd`
/// and moves it to a fresh temp name in `dfd`, which it returns.
fn make_private_node(
    dfd: BorrowedFd<'_>,
    name: &[u8],
    e: &Entry,
    mode: u32,
    owners: bool,
) -> io::Result<Vec<u8>> {
    let (pdir, ()) = with_temp_name(name, |t| mkdir_at(dfd, t, 0o700))?;
    let r = (|| {
        let pfd = open_at(dfd, &pdir, DIR_WALK, 0)?;
        let pfd = pfd.as_fd();
        let m = fstat(pfd)?;
        if m.kind != Some(EntryKind::Dir) || m.uid != euid() || m.perm & 0o077 != 0 {
            return Err(refused(format!(
                "private directory {} was replaced",
                show(&pdir)
            )));
        }
        let made = (|| {
            let dev = if e.kind == EntryKind::Device {
                Some(
                    e.device()
                        .ok_or_else(|| io::Error::other("device without a number"))?,
                )
            } else {
                None
            };
            mknod_at(pfd, PRIVATE_NODE, dev, 0o600)?;
            if owners {
                chown_at(pfd, PRIVATE_NODE, e.uid, e.gid)?;
            }
            // Nobody else can write here: the name is the node just made.
            chmod_at(pfd, PRIVATE_NODE, mode)?;
            set_mtime_at(pfd, PRIVATE_NODE, e)?;
            let (tmp, ()) = with_temp_name(name, |t| rename_noreplace(pfd, PRIVATE_NODE, dfd, t))?;
            Ok(tmp)
        })();
        if made.is_err() {
            let _ = unlink_at(pfd, PRIVATE_NODE);
        }
        made
    })();
    let _ = rmdir_at(dfd, &pdir);
    r
}
