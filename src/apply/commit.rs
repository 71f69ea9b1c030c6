//! The commit: every staged file, directory, link and attribute applied and renamed into place
//! in one pass, then deletions, directory attributes and durability (fsync or batched syncfs).
//! Nodes without contents and hard links are made in `special`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::OFlags;

use super::attrs::{finish_attrs, set_attrs_at};
use super::delete::remove_tree;
use super::dirs::open_dir;
use super::names::with_temp_name;
use super::stage::{check_installed, check_name, create_temp_file, reopen_staged, StagedId};
use super::sys::{fchmod, lstat_at, mkdir_at, open_at, rename_at, symlink_at, syncfs, unlink_at};
use super::xattrs::{sync_xattrs, sync_xattrs_at, XattrPolicy};
use super::{checked_split, FsStorage, Protect, Refused};
use crate::proto::manifest::change::Flags;
use crate::proto::manifest::{change, needs_data, Entry, EntryKind, Manifest};
use crate::proto::storage::{show, CommitOutcome, CommitRequest, XferKey};

/// Work collected during one commit.
#[derive(Default)]
pub(super) struct CommitState {
    pub(super) out: CommitOutcome,
    /// Directories that had entries created, renamed into or removed (fsynced when durable).
    pub(super) touched: HashSet<Vec<u8>>,
    /// Indices of directory entries whose mode and times are set in the final pass.
    pub(super) dirs: Vec<usize>,
    /// Of those, the ones whose extended attributes or ACLs are made to match too.
    pub(super) xattr_dirs: HashSet<usize>,
    /// Entries that failed (a hard link to one of them fails too).
    pub(super) failed: HashSet<usize>,
    /// Files and directories whose attributes changed in place, with no fsync of their own
    /// (made durable at the end, like data).
    pub(super) meta: Vec<(Vec<u8>, bool)>,
    /// A symlink or FIFO had its attributes changed in place: such nodes cannot be opened
    /// to fsync (or must not be), so the end of the commit calls syncfs.
    pub(super) meta_other: bool,
    /// The file the last applied entry wrote (held open: its inode cannot be reused).
    pub(super) written: Option<File>,
    /// Files this commit wrote that hard links still wait for, held open until the last
    /// of their links is made (at most [`HELD_TARGETS`]).
    pub(super) targets: HashMap<usize, File>,
}

/// Most written files a commit holds open for hard links still to come; beyond it, the
/// links of a file are made right after it (out of manifest order).
pub(super) const HELD_TARGETS: usize = 256;

/// Staged files in one commit from which on durability is batched with syncfs(2).
pub(super) const BATCH_SYNC_FILES: usize = 8;

impl FsStorage {
    pub(super) fn commit_with(
        &mut self,
        key: XferKey,
        req: &CommitRequest<'_>,
        protect: Protect<'_>,
    ) -> CommitOutcome {
        let m = req.manifest;
        let mut st = CommitState::default();
        self.dirs.clear();
        // Many small files: one syncfs makes every staged file durable at once (the data
        // is all written by now), instead of one fsync per file; a second one after the
        // renames replaces the per-directory fsyncs.
        // Gathered files never reported complete (the engine reports every one; this keeps
        // the Storage contract whole) go to disk first, so the syncfs below covers them.
        let mut unwritten: HashMap<u32, String> = HashMap::new();
        let mut gathered: Vec<u32> = self
            .pending
            .keys()
            .filter(|(k, _)| *k == key)
            .map(|&(_, i)| i)
            .collect();
        gathered.sort_unstable();
        for i in gathered {
            if let Some(e) = m.entries.get(i as usize) {
                if let Err(err) = self.flush_pending(key, i, e) {
                    unwritten.insert(i, err.to_string());
                }
            }
        }
        let staged = self.staged.keys().filter(|(k, _)| *k == key).count();
        self.batch_sync = self.opts.durable && staged >= BATCH_SYNC_FILES;
        if self.batch_sync {
            if let Err(err) = self.syncfs() {
                st.out.errors.push(format!("syncfs: {err}"));
            }
        }
        let leaders = m.hard_link_leaders();
        // A hard link to a file that vanished at the source goes with it.
        let vanished = |i: usize| req.skip.contains(&(i as u32));
        // A path this member protects (`--protect`) is never written.
        let applies = |i: usize| {
            let f = req.flags.get(i).copied().unwrap_or(0);
            f != 0
                && f & change::PROTECTED == 0
                && !vanished(i)
                && !leaders
                    .get(&(i as u32))
                    .is_some_and(|&l| vanished(l as usize))
        };
        // The links each file has still to get in this commit, in manifest order.
        let mut links: HashMap<usize, Vec<usize>> = HashMap::new();
        for (&h, &l) in &leaders {
            if applies(h as usize) {
                links.entry(l as usize).or_default().push(h as usize);
            }
        }
        for v in links.values_mut() {
            v.sort_unstable();
        }
        let mut early: HashSet<usize> = HashSet::new();
        for (i, e) in m.entries.iter().enumerate() {
            if !applies(i) || early.contains(&i) {
                continue;
            }
            let f = req.flags[i];
            if let Some(err) = unwritten.remove(&(i as u32)) {
                st.out.errors.push(format!("{}: {err}", show(&e.path)));
                st.failed.insert(i);
                continue;
            }
            let leader = leaders.get(&(i as u32)).map(|&l| l as usize);
            self.apply_counted(key, i, e, f, m, protect, leader, &mut st);
            if let Some(l) = leader {
                // The last link of its file lets the file go.
                let left = links.get_mut(&l).map(|v| {
                    v.retain(|&h| h != i);
                    v.len()
                });
                if left == Some(0) {
                    st.targets.remove(&l);
                }
            }
            let Some(file) = st.written.take() else {
                continue;
            };
            if links.get(&i).is_none_or(|v| v.is_empty()) {
                continue;
            }
            if st.targets.len() < HELD_TARGETS {
                st.targets.insert(i, file);
                continue;
            }
            // Too many held: its links now, from the file still open.
            st.targets.insert(i, file);
            for h in links.remove(&i).unwrap_or_default() {
                early.insert(h);
                let (he, hf) = (&m.entries[h], req.flags[h]);
                self.apply_counted(key, h, he, hf, m, protect, Some(i), &mut st);
            }
            st.targets.remove(&i);
        }
        st.targets.clear();
        for p in req.deletions {
            match self.delete_one(p, protect, &mut st) {
                Ok(true) => {
                    st.out.deleted += 1;
                    st.out.removed.push(p.clone());
                }
                Ok(false) => {}
                Err(err) => st.out.errors.push(format!("{}: delete: {err}", show(p))),
            }
        }
        self.finish_dirs(m, &mut st);
        if self.batch_sync {
            self.made_dirs.clear();
            if let Err(err) = self.syncfs() {
                st.out.errors.push(format!("syncfs: {err}"));
            }
            self.batch_sync = false;
        } else if self.opts.durable {
            self.sync_metadata(&mut st);
            st.touched.extend(self.made_dirs.drain(..));
            let mut dirs: Vec<_> = st.touched.iter().collect();
            dirs.sort_unstable_by(|a, b| b.cmp(a));
            for d in dirs {
                if let Err(err) = self.sync_dir(d) {
                    let name = if d.is_empty() { ".".into() } else { show(d) };
                    st.out.errors.push(format!("{name}: fsync: {err}"));
                }
            }
        } else {
            self.made_dirs.clear();
        }
        self.drop_staged(key);
        st.out
    }

    /// Applies one entry and counts the outcome.
    #[allow(clippy::too_many_arguments)]
    fn apply_counted(
        &mut self,
        key: XferKey,
        i: usize,
        e: &Entry,
        f: Flags,
        m: &Manifest,
        protect: Protect<'_>,
        leader: Option<usize>,
        st: &mut CommitState,
    ) {
        match self.apply_entry(key, i, e, f, m, protect, leader, st) {
            Ok(()) => {
                note_metadata(st, e, f, m.options.checksum);
                st.out.files += 1;
                st.out.written.push(e.path.clone());
            }
            Err(err) => {
                st.out.errors.push(format!("{}: {err}", show(&e.path)));
                st.failed.insert(i);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_entry(
        &mut self,
        key: XferKey,
        i: usize,
        e: &Entry,
        f: Flags,
        m: &Manifest,
        protect: Protect<'_>,
        leader: Option<usize>,
        st: &mut CommitState,
    ) -> io::Result<()> {
        if let Some(why) = self.refusals.remove(&(key, i as u32)) {
            // Counted when staging was refused.
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                Refused(why),
            ));
        }
        let (dir, name) = checked_split(&e.path, e.kind).inspect_err(|_| {
            self.refused += 1;
        })?;
        let owners = self.owners(m);
        let xattrs = XattrPolicy::of(m, self.owners(m));
        match e.kind {
            EntryKind::File if needs_data(e.kind, f, m.options.checksum) => {
                let dfd = self.open_parent(dir, true)?;
                let dfd = dfd.as_fd();
                let staged = match self.take_staged((key, i as u32)) {
                    Some(s) => {
                        let access = if s.ready {
                            OFlags::RDONLY
                        } else {
                            OFlags::RDWR
                        };
                        let file = match s.file {
                            Some(file) => Ok(file),
                            None => reopen_staged(dfd, &s.tmp, &s.id, access),
                        };
                        file.map(|file| (s.tmp.clone(), file, s.id, s.ready, s.final_mode))
                            .inspect_err(|_| {
                                let _ = unlink_at(dfd, &s.tmp);
                            })?
                    }
                    None => {
                        let (tmp, fd) = create_temp_file(dfd, name)?;
                        let file = File::from(fd);
                        let id = StagedId::of(&file).inspect_err(|_| {
                            let _ = unlink_at(dfd, &tmp);
                        })?;
                        (tmp, file, id, false, None)
                    }
                };
                let (tmp, file, id, ready, final_mode) = staged;
                let r = if ready {
                    // Contents and attributes were finished early (`Storage::complete`);
                    // extended attributes and ACLs come now, before the final mode.
                    let xa = if xattrs.active() {
                        sync_xattrs(&file, e, &xattrs)
                    } else {
                        Ok(())
                    };
                    xa.and_then(|()| final_mode.map_or(Ok(()), |mode| fchmod(&file, mode)))
                        .and_then(|()| {
                            if self.opts.durable && !self.batch_sync {
                                self.fsync(&file)?;
                            }
                            Ok(())
                        })
                } else {
                    self.finish_file(&file, e, owners, &xattrs)
                };
                // The name is checked while the file is held open (so its inode is ours),
                // then renamed, then what landed is checked again.
                let r = r
                    .and_then(|()| check_name(dfd, &tmp, &id))
                    .and_then(|()| replace(dfd, &tmp, name, &e.path, f, protect))
                    .and_then(|()| check_installed(dfd, name, &tmp, &id));
                if let Err(err) = r {
                    drop(file);
                    let _ = unlink_at(dfd, &tmp);
                    return Err(err);
                }
                // Hard links to it are made from this very file (`special`).
                st.written = Some(file);
                st.out.bytes += e.payload_len();
                st.touched.insert(dir.to_vec());
            }
            EntryKind::File => {
                let dfd = self.open_parent(dir, false)?;
                let mode = self.want_mode(e, owners);
                set_attrs_at(dfd.as_fd(), name, e.kind, e, f, mode, owners)?;
                if f & (change::XATTR | change::ACL) != 0 {
                    sync_xattrs_at(dfd.as_fd(), name, e, &xattrs)?;
                }
            }
            EntryKind::Dir => {
                let dfd = self.open_parent(dir, true)?;
                let dfd = dfd.as_fd();
                match lstat_at(dfd, name) {
                    Ok(s) if s.kind == Some(EntryKind::Dir) => {}
                    Ok(_) if f & change::TYPE != 0 => {
                        unlink_at(dfd, name)?;
                        mkdir_at(dfd, name, 0o700)?;
                        st.touched.insert(dir.to_vec());
                    }
                    Ok(_) => return Err(io::Error::other("not a directory on this node")),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {
                        mkdir_at(dfd, name, 0o700)?;
                        st.touched.insert(dir.to_vec());
                    }
                    Err(err) => return Err(err),
                }
                // Owner, mode and times once the contents are in place.
                st.dirs.push(i);
                // A new directory may have inherited a default ACL: made to match too.
                let made = f & (change::MISSING | change::TYPE) != 0;
                if xattrs.active() && (made || f & (change::XATTR | change::ACL) != 0) {
                    st.xattr_dirs.insert(i);
                }
            }
            EntryKind::Symlink => {
                let dfd = self.open_parent(dir, true)?;
                let dfd = dfd.as_fd();
                if f & (change::MISSING | change::TYPE | change::LINK) != 0 {
                    let (tmp, ()) = with_temp_name(name, |t| symlink_at(&e.target, dfd, t))?;
                    let attrs = change::TIME | if owners { change::OWNER } else { 0 };
                    let r = set_attrs_at(dfd, &tmp, e.kind, e, attrs, 0, owners)
                        .and_then(|()| replace(dfd, &tmp, name, &e.path, f, protect));
                    if r.is_err() {
                        let _ = unlink_at(dfd, &tmp);
                    }
                    r?;
                    st.touched.insert(dir.to_vec());
                } else {
                    set_attrs_at(dfd, name, e.kind, e, f, 0, owners)?;
                }
            }
            EntryKind::Fifo | EntryKind::Socket | EntryKind::Device => {
                self.apply_node(dir, name, e, f, owners, protect)?;
                st.touched.insert(dir.to_vec());
            }
            EntryKind::HardLink => {
                if let Some(l) = leader.filter(|l| st.failed.contains(l)) {
                    return Err(io::Error::other(format!(
                        "not linked: its target {} failed",
                        show(&m.entries[l].path)
                    )));
                }
                let target = leader.map(|l| (&m.entries[l], st.targets.get(&l)));
                self.apply_hard_link(dir, name, e, target, f, protect)?;
                st.touched.insert(dir.to_vec());
            }
        }
        Ok(())
    }

    /// Size, attributes (extended ones too) and durability of a staged file, before its
    /// rename.
    pub(super) fn finish_file(
        &self,
        file: &File,
        e: &Entry,
        owners: bool,
        xattrs: &XattrPolicy,
    ) -> io::Result<()> {
        if file.metadata()?.len() > e.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "staged data longer than the entry",
            ));
        }
        file.set_len(e.size)?;
        finish_attrs(file, e, owners, self.want_mode(e, owners))?;
        if xattrs.active() {
            sync_xattrs(file, e, xattrs)?;
        }
        if self.opts.durable && !self.batch_sync {
            // After the attributes so that they are on disk too.
            self.fsync(file)?;
        }
        Ok(())
    }

    /// Final pass over directories, deepest first: owner, mode and times, now that their
    /// contents have been applied. Unchanged directories whose contents changed get their
    /// times back.
    pub(super) fn finish_dirs(&mut self, m: &Manifest, st: &mut CommitState) {
        let owners = self.owners(m);
        let xattrs = XattrPolicy::of(m, self.owners(m));
        let mut todo: HashMap<&[u8], (usize, bool)> = st
            .dirs
            .iter()
            .map(|&i| (m.entries[i].path.as_slice(), (i, true)))
            .collect();
        if !st.touched.is_empty() {
            for (i, e) in m.entries.iter().enumerate() {
                let p: &[u8] = if e.path == b"." { b"" } else { &e.path };
                if e.kind == EntryKind::Dir && st.touched.contains(p) {
                    todo.entry(e.path.as_slice()).or_insert((i, false));
                }
            }
        }
        let mut todo: Vec<_> = todo.into_iter().collect();
        todo.sort_unstable_by(|a, b| b.0.cmp(a.0));
        for (path, (i, applied)) in todo {
            let e = &m.entries[i];
            // The base directory's own owner and mode are the operator's, never a push's.
            let attrs = if applied && path != b"." {
                change::TIME | change::PERM | change::OWNER
            } else {
                change::TIME
            };
            let mode = self.want_mode(e, owners);
            // The base directory's attributes, like its mode, are the operator's.
            let sync = st.xattr_dirs.contains(&i) && path != b".";
            let r = checked_split(path, EntryKind::Dir).and_then(|(dir, name)| {
                let dfd = self.dirs.get(&self.base_fd, dir, None)?;
                set_attrs_at(dfd.as_fd(), name, EntryKind::Dir, e, attrs, mode, owners)?;
                if sync {
                    sync_xattrs_at(dfd.as_fd(), name, e, &xattrs)?;
                }
                Ok(())
            });
            match r {
                Err(err) => st.out.errors.push(format!("{}: {err}", show(path))),
                Ok(()) => st.meta.push((path.to_vec(), true)),
            }
        }
    }

    /// Flushes the whole file system holding the base (syncfs needs a real descriptor, not
    /// the O_PATH one kept for walking).
    pub(super) fn syncfs(&self) -> io::Result<()> {
        let fd = open_at(self.base_dir(), b".", OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
        self.sync_calls.syncfs.set(self.sync_calls.syncfs.get() + 1);
        syncfs(fd)
    }

    /// fsync(2) of an open file, counted.
    pub(super) fn fsync(&self, file: &File) -> io::Result<()> {
        self.sync_calls.fsync.set(self.sync_calls.fsync.get() + 1);
        file.sync_all()
    }

    pub(super) fn sync_dir(&self, rel: &[u8]) -> io::Result<()> {
        let dfd = open_dir(self.base_dir(), rel, None)?;
        let fd = open_at(dfd.as_fd(), b".", OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
        self.fsync(&File::from(fd))
    }

    /// Makes attribute changes made in place durable: each file or directory fsynced (a
    /// directory also fsynced for its entries is left to that), or one syncfs when there are
    /// many, or a symlink or FIFO among them.
    fn sync_metadata(&self, st: &mut CommitState) {
        let meta: Vec<(Vec<u8>, bool)> = std::mem::take(&mut st.meta)
            .into_iter()
            .filter(|(p, dir)| !(*dir && st.touched.contains(dir_key(p))))
            .collect();
        if meta.is_empty() && !st.meta_other {
            return;
        }
        let all_at_once = || self.syncfs().map_err(|err| format!("syncfs: {err}")).err();
        if st.meta_other || meta.len() >= BATCH_SYNC_FILES {
            st.out.errors.extend(all_at_once());
            return;
        }
        for (p, is_dir) in meta {
            let (dir, name) = if p == b"." {
                (&b""[..], &b"."[..])
            } else {
                super::split(&p)
            };
            let flags = if is_dir {
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW
            } else {
                super::sys::READ_NOFOLLOW
            };
            let r = open_dir(self.base_dir(), dir, None)
                .and_then(|d| open_at(d.as_fd(), name, flags, 0))
                .and_then(|fd| self.fsync(&File::from(fd)));
            if let Err(err) = r {
                st.out.errors.push(format!("{}: fsync: {err}", show(&p)));
            }
        }
    }
}

/// Renames `tmp` over `name` in the same directory. A directory in the way is removed first
/// only when the flags say the type changed.
pub(super) fn replace(
    dfd: BorrowedFd<'_>,
    tmp: &[u8],
    name: &[u8],
    rel: &[u8],
    flags: Flags,
    protect: Protect<'_>,
) -> io::Result<()> {
    let rename = || rename_at(dfd, tmp, name);
    // The rename alone in the common case; only when it fails may a directory be in the way.
    let err = match rename() {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    match lstat_at(dfd, name) {
        Ok(s) if s.kind == Some(EntryKind::Dir) => {
            if flags & change::TYPE == 0 {
                return Err(io::Error::other("a directory is in the way"));
            }
            if !remove_tree(dfd, name, rel, protect)? {
                return Err(io::Error::other(
                    "a directory is in the way and holds protected paths",
                ));
            }
            rename()
        }
        _ => Err(err),
    }
}

/// The key of directory `p` (an entry path, `.` for the base) in `CommitState::touched`.
fn dir_key(p: &[u8]) -> &[u8] {
    if p == b"." {
        b""
    } else {
        p
    }
}

/// Notes an entry whose attributes were changed in place (no new inode, no fsync of its
/// own): durable only once synced at the end of the commit. Directories are noted by
/// `finish_dirs`.
fn note_metadata(st: &mut CommitState, e: &Entry, f: Flags, checksum: bool) {
    let made = f & (change::MISSING | change::TYPE) != 0;
    match e.kind {
        EntryKind::File if !needs_data(e.kind, f, checksum) => {
            st.meta.push((e.path.clone(), false))
        }
        EntryKind::Symlink if !made && f & change::LINK == 0 => st.meta_other = true,
        EntryKind::Fifo if !made => st.meta_other = true,
        _ => {}
    }
}
