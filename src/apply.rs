//! The disk side of a daemon: [`FsStorage`], the real file system behind the engine's
//! [`Storage`] trait, for senders (reading sources) and receivers (staging, committing,
//! deleting).
//!
//! Everything here is confined to one base directory. Every path from the network is checked
//! again with [`check_rel_path`], and its parent is resolved one component at a time from a
//! descriptor of the base with `openat(O_DIRECTORY|O_NOFOLLOW)`: a symlink or a non-directory
//! in a parent position is refused (and counted), never followed. On the receiving side a few
//! directories so resolved stay open for at most [`DIR_CACHE_AGE`]. Received contents go to a
//! hidden temp file (`.name.makuo-XXXXXX`, mode 0600; small files are gathered in memory
//! first) in the target directory and reach their final name only at commit, by `renameat`,
//! after truncation, attributes and (when durable) fsync: a reader never sees a half-written
//! file. A staged file reopened by name must still be the inode that was created. Attributes are set on the open descriptor
//! or with the `*at(AT_SYMLINK_NOFOLLOW)` calls, never through a symlink. Deletions remove
//! trees without following symlinks and spare filter-protected paths.
//!
//! This file writes nothing outside the base directory; it touches no socket, and reads the
//! clock only to age its directory cache.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{CStr, CString};
use std::fs::{File, Permissions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::filter::Filter;
use crate::proto::manifest::{change, check_rel_path, needs_data, Entry, EntryKind, Manifest};
use crate::proto::storage::{show, CommitOutcome, CommitRequest, Inspection, Storage, XferKey};

/// Most staged files kept open at once; beyond this the oldest are closed and reopened by
/// their temp name when written again.
const MAX_OPEN: usize = 256;
/// Marks makuo's temp names: `.{basename}.makuo-XXXXXX`.
const TEMP_TAG: &[u8] = b".makuo-";
/// Length of the random part of a temp name.
const SUFFIX_LEN: usize = 6;
/// Longest file name most file systems accept.
const NAME_MAX: usize = 255;
/// Characters of the random suffix.
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Flags to open a directory we only walk through or name things in (`O_PATH` needs no read
/// permission on Linux). Never follows a symlink.
#[cfg(any(target_os = "linux", target_os = "android"))]
const DIR_WALK: libc::c_int = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const DIR_WALK: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;

/// How a daemon applies transfers to its base directory.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// This node's name (for messages).
    pub node_name: String,
    /// fsync files before they are renamed into place, and the directories they land in.
    pub durable: bool,
    /// Reproduce owners, groups and set-id bits (only effective when running as root, and
    /// only for pushes that carry owners).
    pub preserve_owner: bool,
    /// Accept special files (FIFOs; device nodes once the manifest can describe them).
    pub allow_devices: bool,
}

/// A path refused for safety (symlinked or non-directory parent, bad path, special file).
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused: {}", self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, Refused(why))
}

fn is_refused(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<Refused>())
}

/// A received file being staged under a temp name.
#[derive(Debug)]
struct Staged {
    /// Directory holding the temp file (relative to base, "" for base).
    dir: Vec<u8>,
    /// Temp file name inside `dir`.
    tmp: Vec<u8>,
    /// Open descriptor, or `None` when closed to bound the number of open files.
    file: Option<File>,
    /// Device and inode of the temp file: a reopen by name must find the same one (a
    /// directory writer could otherwise swap in a file of its own, which a parity decode
    /// would then read as received data).
    id: (u64, u64),
    /// Contents complete and attributes set (`Storage::complete`): the commit only makes it
    /// durable (if asked), gives it `final_mode` if set, and renames it.
    ready: bool,
    /// The mode to set just before the rename, when the early one withheld group/other
    /// write permission.
    final_mode: Option<u32>,
    /// Bytes written since writeback was last started (durable daemons only).
    unsynced: u64,
}

/// A durable daemon starts writeback of a staged file every this many bytes, so that the
/// fsync before its rename finds little left to write.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Predicate telling whether a path (relative, and whether it is a directory) is protected
/// from deletion by the push's filter rules.
type Protect<'a> = &'a dyn Fn(&[u8], bool) -> bool;

/// Work collected during one commit.
#[derive(Default)]
struct CommitState {
    out: CommitOutcome,
    /// Directories that had entries created, renamed into or removed (fsynced when durable).
    touched: HashSet<Vec<u8>>,
    /// Indices of directory entries whose mode and times are set in the final pass.
    dirs: Vec<usize>,
}

/// The real file system behind the engine, confined to one base directory.
#[derive(Debug)]
pub struct FsStorage {
    base: PathBuf,
    base_fd: OwnedFd,
    opts: ApplyOptions,
    is_root: bool,
    staged: HashMap<(XferKey, u32), Staged>,
    /// Staged entries in the order their files were opened (may hold stale keys).
    open_order: VecDeque<(XferKey, u32)>,
    open_count: usize,
    /// Entries whose staging was refused, with the reason (reported at commit).
    refusals: HashMap<(XferKey, u32), String>,
    /// Parents of directories created while staging (fsynced at the next commit if durable).
    made_dirs: Vec<Vec<u8>>,
    /// The source file most recently read (sender side).
    reader: Option<(Vec<u8>, File)>,
    refused: u64,
    /// During a commit of many files: one syncfs before the renames and one after replace
    /// the per-file and per-directory fsyncs.
    batch_sync: bool,
    /// Recently used directories, kept open.
    dirs: DirCache,
    /// Contents of small files still arriving, kept in memory so that each is written with
    /// one call when complete instead of one per datagram.
    pending: HashMap<(XferKey, u32), Vec<u8>>,
    pending_bytes: usize,
    /// How long the last commit took.
    last_commit: Duration,
}

/// Files up to this size are gathered in memory until complete...
const GATHER_FILE: u64 = 64 * 1024;
/// ...as long as all gathered files together stay under this.
const GATHER_BUDGET: usize = 8 << 20;

/// Staged files in one commit from which on durability is batched with syncfs(2).
const BATCH_SYNC_FILES: usize = 8;

impl FsStorage {
    /// Opens the base directory (which must exist) for a daemon.
    pub fn new(base: PathBuf, opts: ApplyOptions) -> io::Result<Self> {
        let c = cstr(base.as_os_str().as_bytes())?;
        // The base itself may be reached through a symlink: the operator chose it.
        let fd =
            unsafe { libc::open(c.as_ptr(), (DIR_WALK & !libc::O_NOFOLLOW) | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let base_fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            base,
            base_fd,
            opts,
            is_root: unsafe { libc::geteuid() } == 0,
            staged: HashMap::new(),
            batch_sync: false,
            dirs: DirCache::default(),
            pending: HashMap::new(),
            pending_bytes: 0,
            last_commit: Duration::ZERO,
            open_order: VecDeque::new(),
            open_count: 0,
            refusals: HashMap::new(),
            made_dirs: Vec::new(),
            reader: None,
            refused: 0,
        })
    }

    /// The base directory.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The options this storage applies with.
    pub fn options(&self) -> &ApplyOptions {
        &self.opts
    }

    /// How many paths were refused for safety (symlinked or non-directory parent, bad path,
    /// special file not allowed) since start.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// How long the last commit took (renames, attributes, deletions, durability).
    pub fn last_commit(&self) -> Duration {
        self.last_commit
    }

    /// Staged files that currently exist (0 when no transfer is in flight).
    pub fn staged_count(&self) -> usize {
        self.staged.len() + self.pending.len()
    }

    fn base_raw(&self) -> RawFd {
        self.base_fd.as_raw_fd()
    }

    /// Whether owners (and set-id bits) are reproduced for this push.
    fn owners(&self, m: &Manifest) -> bool {
        self.is_root && self.opts.preserve_owner && m.options.owners
    }

    /// The permission bits this receiver gives an entry: set-id bits of non-directories only
    /// when owners are reproduced.
    fn want_mode(&self, e: &Entry, owners: bool) -> u32 {
        let mode = e.mode & 0o7777;
        if e.kind == EntryKind::Dir || owners {
            mode
        } else {
            mode & !0o6000
        }
    }

    /// Opens directory `rel` for a path that arrived from the network, counting refusals.
    /// The descriptor comes from the directory cache: use it before the next call.
    fn open_parent(&mut self, rel: &[u8], create: bool) -> io::Result<RawFd> {
        let base = self.base_fd.as_raw_fd();
        let made = if create {
            Some(&mut self.made_dirs)
        } else {
            None
        };
        let r = self.dirs.get(base, rel, made);
        if !self.opts.durable {
            // Only needed to fsync their parents.
            self.made_dirs.clear();
        }
        if let Err(e) = &r {
            if is_refused(e) {
                self.refused += 1;
            }
        }
        r
    }

    /// The staged file of `(key, idx)`, reopened if it was closed, created if `create`.
    fn staged_file(
        &mut self,
        key: XferKey,
        idx: u32,
        entry: &Entry,
        create: bool,
    ) -> io::Result<&File> {
        let k = (key, idx);
        let open = match self.staged.get(&k) {
            Some(s) => s.file.is_some(),
            None if create => false,
            None => return Err(io::Error::new(io::ErrorKind::NotFound, "not staged")),
        };
        if !open {
            self.make_room();
            let file = if let Some(s) = self.staged.get(&k) {
                let (dir, tmp, id) = (s.dir.clone(), s.tmp.clone(), s.id);
                let dfd = self.open_parent(&dir, false)?;
                reopen_staged(dfd, &tmp, id, libc::O_RDWR)?
            } else {
                let (dir, name) = checked_split(&entry.path, entry.kind).inspect_err(|_| {
                    self.refused += 1;
                })?;
                let dfd = self.open_parent(dir, true)?;
                let (tmp, fd) = create_temp_file(dfd, name)?;
                let file = File::from(fd);
                let id = file_id(&file)?;
                self.staged.insert(
                    k,
                    Staged {
                        dir: dir.to_vec(),
                        tmp,
                        file: None,
                        id,
                        ready: false,
                        final_mode: None,
                        unsynced: 0,
                    },
                );
                file
            };
            if let Some(s) = self.staged.get_mut(&k) {
                s.file = Some(file);
            }
            self.open_count += 1;
            self.open_order.push_back(k);
        }
        self.staged
            .get(&k)
            .and_then(|s| s.file.as_ref())
            .ok_or_else(|| io::Error::other("staged file vanished"))
    }

    /// Puts received bytes where they wait for the commit: the gathered copy of a small
    /// file, or its temp file.
    fn stage(
        &mut self,
        key: XferKey,
        idx: u32,
        entry: &Entry,
        offset: u64,
        data: &[u8],
    ) -> io::Result<()> {
        let k = (key, idx);
        let at = offset as usize..offset as usize + data.len();
        if let Some(buf) = self.pending.get_mut(&k) {
            buf[at].copy_from_slice(data);
            return Ok(());
        }
        if entry.size <= GATHER_FILE
            && !self.staged.contains_key(&k)
            && self.pending_bytes + entry.size as usize <= GATHER_BUDGET
        {
            // The parent is resolved (and made) now, so a refusal shows on the first write
            // as for a file written straight to disk.
            let (dir, _) = checked_split(&entry.path, entry.kind).inspect_err(|_| {
                self.refused += 1;
            })?;
            self.open_parent(dir, true)?;
            let mut buf = vec![0; entry.size as usize];
            buf[at].copy_from_slice(data);
            self.pending.insert(k, buf);
            self.pending_bytes += entry.size as usize;
            return Ok(());
        }
        let f = self.staged_file(key, idx, entry, true)?;
        f.write_all_at(data, offset)?;
        let fd = f.as_raw_fd();
        if self.opts.durable {
            if let Some(s) = self.staged.get_mut(&k) {
                s.unsynced += data.len() as u64;
                if s.unsynced >= WRITEBACK_EVERY {
                    s.unsynced = 0;
                    // Asynchronous: starts writing dirty pages, waits for nothing.
                    unsafe { libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
                }
            }
        }
        Ok(())
    }

    /// Writes a gathered file out to its temp file (one write), leaving it open and staged.
    fn flush_pending(&mut self, key: XferKey, idx: u32, e: &Entry) -> io::Result<()> {
        let k = (key, idx);
        let Some(buf) = self.pending.remove(&k) else {
            return Ok(());
        };
        self.pending_bytes -= buf.len();
        let file = self.staged_file(key, idx, e, true)?;
        file.write_all_at(&buf, 0)
    }

    /// Closes the oldest open staged files until one more may be opened.
    fn make_room(&mut self) {
        while self.open_count >= MAX_OPEN {
            let Some(k) = self.open_order.pop_front() else {
                break;
            };
            if let Some(f) = self.staged.get_mut(&k).and_then(|s| s.file.take()) {
                drop(f);
                self.open_count -= 1;
            }
        }
        if self.open_order.len() > 4 * MAX_OPEN {
            let staged = &self.staged;
            self.open_order
                .retain(|k| staged.get(k).is_some_and(|s| s.file.is_some()));
        }
    }

    /// Takes a staged entry out of the map, keeping the open count right.
    fn take_staged(&mut self, k: (XferKey, u32)) -> Option<Staged> {
        let s = self.staged.remove(&k)?;
        if s.file.is_some() {
            self.open_count -= 1;
        }
        Some(s)
    }

    /// Removes every temp file staged for `key`.
    fn drop_staged(&mut self, key: XferKey) {
        self.dirs.clear();
        let mut freed = 0;
        self.pending.retain(|(k, _), b| {
            let keep = *k != key;
            if !keep {
                freed += b.len();
            }
            keep
        });
        self.pending_bytes -= freed;
        let mut keys: Vec<_> = self
            .staged
            .keys()
            .filter(|(k, _)| *k == key)
            .copied()
            .collect();
        keys.sort_unstable();
        let mut dir_cache: Option<(Vec<u8>, OwnedFd)> = None;
        for k in keys {
            let Some(s) = self.take_staged(k) else {
                continue;
            };
            drop(s.file);
            if dir_cache.as_ref().is_none_or(|(d, _)| *d != s.dir) {
                // A directory that cannot be resolved any more leaves the temp to sweep_temp.
                dir_cache = open_dir(self.base_raw(), &s.dir, None)
                    .ok()
                    .map(|fd| (s.dir.clone(), fd));
            }
            if let Some((_, dfd)) = &dir_cache {
                let _ = unlink_at(dfd.as_raw_fd(), &s.tmp, 0);
            }
        }
        self.refusals.retain(|(k, _), _| *k != key);
    }

    /// Opens a source file for reading (sender side), never following a symlink.
    fn open_source(&mut self, e: &Entry) -> io::Result<File> {
        let (dir, name) = checked_split(&e.path, EntryKind::File).inspect_err(|_| {
            self.refused += 1;
        })?;
        // Resolved afresh for every file, not through the cache: a deploy may have swapped a
        // directory since the last push, and contents must come from the tree just walked.
        let dfd = open_dir(self.base_raw(), dir, None).inspect_err(|e| {
            if is_refused(e) {
                self.refused += 1;
            }
        })?;
        let f = File::from(open_at(
            dfd.as_raw_fd(),
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        )?);
        if !f.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        Ok(f)
    }

    /// Change flags of one entry against what is on disk.
    fn compare(&self, e: &Entry, m: &Manifest, dirs: &mut DirCache) -> u8 {
        let Ok((dir, name)) = checked_split(&e.path, e.kind) else {
            // Reported (and refused) at commit rather than silently called up to date.
            return change::MISSING;
        };
        let Ok(dfd) = dirs.get(self.base_raw(), dir, None) else {
            return change::MISSING;
        };
        let Ok(st) = lstat_at(dfd, name) else {
            return change::MISSING;
        };
        if kind_of(st.st_mode) != Some(e.kind) {
            return change::TYPE;
        }
        let owners = self.owners(m);
        let mut f = 0;
        if e.kind == EntryKind::File {
            if st.st_size as u64 != e.size {
                f |= change::SIZE;
            }
            if m.options.checksum {
                if let Some(sum) = e.checksum {
                    // A different size is a different checksum; no need to read the file.
                    if f & change::SIZE != 0 || md5_at(dfd, name).map_or(true, |s| s != sum) {
                        f |= change::SUM;
                    }
                }
            }
        }
        if e.kind != EntryKind::Dir
            && (st.st_mtime != e.mtime || st.st_mtime_nsec != i64::from(e.mtime_nsec))
        {
            f |= change::TIME;
        }
        if e.kind != EntryKind::Symlink && (st.st_mode & 0o7777) != self.want_mode(e, owners) {
            f |= change::PERM;
        }
        if owners && (st.st_uid != e.uid || st.st_gid != e.gid) {
            f |= change::OWNER;
        }
        if e.kind == EntryKind::Symlink && readlink_at(dfd, name).map_or(true, |t| t != e.target) {
            f |= change::LINK;
        }
        f
    }

    /// Receiver paths under the manifest's roots that the manifest lacks, not protected and
    /// not makuo temp files, deepest first. An unwanted directory is listed once (its whole
    /// tree goes) unless something inside it must stay.
    fn list_deletions(&self, m: &Manifest, protect: Protect<'_>) -> Vec<Vec<u8>> {
        let wanted: HashSet<&[u8]> = m.entries.iter().map(|e| e.path.as_slice()).collect();
        let mut out = Vec::new();
        for r in &m.roots {
            if check_rel_path(r).is_err() {
                continue;
            }
            if r == b"." {
                scan_children(self.base_raw(), b"", &wanted, protect, &mut out);
                continue;
            }
            let (dir, name) = split(r);
            if let Ok(dfd) = open_dir(self.base_raw(), dir, None) {
                scan(dfd.as_raw_fd(), name, r, &wanted, protect, &mut out);
            }
        }
        // Reverse byte order puts every path after all of its descendants.
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.dedup();
        out
    }

    fn inspect_with(&self, m: &Manifest, protect: Protect<'_>) -> Inspection {
        let mut dirs = DirCache::default();
        // A directory found missing: everything under it is missing too (a first push of a
        // big tree would otherwise try to open it once per entry).
        let mut gone: Option<&[u8]> = None;
        let flags = m
            .entries
            .iter()
            .map(|e| {
                if let Some(g) = gone {
                    if e.path.starts_with(g) && e.path.get(g.len()) == Some(&b'/') {
                        return change::MISSING;
                    }
                    gone = None;
                }
                let f = self.compare(e, m, &mut dirs);
                if f == change::MISSING && e.kind == EntryKind::Dir {
                    gone = Some(&e.path);
                }
                f
            })
            .collect();
        let deletions = if m.options.delete || m.options.delete_only {
            self.list_deletions(m, protect)
        } else {
            Vec::new()
        };
        Inspection { flags, deletions }
    }

    fn commit_with(
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
        for (i, e) in m.entries.iter().enumerate() {
            let f = req.flags.get(i).copied().unwrap_or(0);
            if f == 0 || req.skip.contains(&(i as u32)) {
                continue;
            }
            if let Some(err) = unwritten.remove(&(i as u32)) {
                st.out.errors.push(format!("{}: {err}", show(&e.path)));
                continue;
            }
            match self.apply_entry(key, i, e, f, m, protect, &mut st) {
                Ok(()) => st.out.files += 1,
                Err(err) => st.out.errors.push(format!("{}: {err}", show(&e.path))),
            }
        }
        for p in req.deletions {
            match self.delete_one(p, protect, &mut st) {
                Ok(true) => st.out.deleted += 1,
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

    #[allow(clippy::too_many_arguments)]
    fn apply_entry(
        &mut self,
        key: XferKey,
        i: usize,
        e: &Entry,
        f: u8,
        m: &Manifest,
        protect: Protect<'_>,
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
        match e.kind {
            EntryKind::File if needs_data(e.kind, f, m.options.checksum) => {
                let dfd = self.open_parent(dir, true)?;
                let (tmp, file) = match self.take_staged((key, i as u32)) {
                    Some(s) if s.ready => {
                        let r = if (self.opts.durable && !self.batch_sync) || s.final_mode.is_some()
                        {
                            reopen_staged(dfd, &s.tmp, s.id, libc::O_RDONLY).and_then(|file| {
                                if let Some(mode) = s.final_mode {
                                    file.set_permissions(Permissions::from_mode(mode))?;
                                }
                                if self.opts.durable && !self.batch_sync {
                                    file.sync_all()?;
                                }
                                Ok(())
                            })
                        } else {
                            // Closed since it was finished: still the inode created for it?
                            lstat_at(dfd, &s.tmp)
                                .and_then(|st| same_staged(&s.tmp, (st.st_dev, st.st_ino), s.id))
                        };
                        let r = r.and_then(|()| replace(dfd, &s.tmp, name, &e.path, f, protect));
                        if r.is_err() {
                            let _ = unlink_at(dfd, &s.tmp, 0);
                        }
                        r?;
                        st.out.bytes += e.size;
                        st.touched.insert(dir.to_vec());
                        return Ok(());
                    }
                    Some(s) => {
                        let file = match s.file {
                            Some(file) => file,
                            None => reopen_staged(dfd, &s.tmp, s.id, libc::O_RDWR)?,
                        };
                        (s.tmp, file)
                    }
                    None => {
                        let (tmp, fd) = create_temp_file(dfd, name)?;
                        (tmp, File::from(fd))
                    }
                };
                let r = self
                    .finish_file(&file, e, owners)
                    .and_then(|()| replace(dfd, &tmp, name, &e.path, f, protect));
                drop(file);
                if r.is_err() {
                    let _ = unlink_at(dfd, &tmp, 0);
                }
                r?;
                st.out.bytes += e.size;
                st.touched.insert(dir.to_vec());
            }
            EntryKind::File => {
                let dfd = self.open_parent(dir, false)?;
                expect_kind(dfd, name, EntryKind::File)?;
                set_attrs_at(dfd, name, e, f, self.want_mode(e, owners), owners)?;
            }
            EntryKind::Dir => {
                let dfd = self.open_parent(dir, true)?;
                match lstat_at(dfd, name) {
                    Ok(s) if kind_of(s.st_mode) == Some(EntryKind::Dir) => {}
                    Ok(_) if f & change::TYPE != 0 => {
                        unlink_at(dfd, name, 0)?;
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
            }
            EntryKind::Symlink => {
                let dfd = self.open_parent(dir, true)?;
                if f & (change::MISSING | change::TYPE | change::LINK) != 0 {
                    let target = cstr(&e.target)?;
                    let (tmp, ()) = with_temp_name(name, |t| {
                        let c = cstr(t)?;
                        cvt(unsafe { libc::symlinkat(target.as_ptr(), dfd, c.as_ptr()) }).map(drop)
                    })?;
                    let attrs = change::TIME | if owners { change::OWNER } else { 0 };
                    let r = set_attrs_at(dfd, &tmp, e, attrs, 0, owners)
                        .and_then(|()| replace(dfd, &tmp, name, &e.path, f, protect));
                    if r.is_err() {
                        let _ = unlink_at(dfd, &tmp, 0);
                    }
                    r?;
                    st.touched.insert(dir.to_vec());
                } else {
                    expect_kind(dfd, name, EntryKind::Symlink)?;
                    // A symlink has no mode of its own: PERM is never applied to one.
                    set_attrs_at(dfd, name, e, f & !change::PERM, 0, owners)?;
                }
            }
            EntryKind::Fifo => {
                if !self.opts.allow_devices {
                    self.refused += 1;
                    return Err(refused("special files are not allowed on this node".into()));
                }
                let dfd = self.open_parent(dir, true)?;
                if f & (change::MISSING | change::TYPE) != 0 {
                    let (tmp, ()) = with_temp_name(name, |t| {
                        let c = cstr(t)?;
                        cvt(unsafe { libc::mkfifoat(dfd, c.as_ptr(), 0o600) }).map(drop)
                    })?;
                    let attrs = change::TIME | change::PERM | change::OWNER;
                    let r = set_attrs_at(dfd, &tmp, e, attrs, self.want_mode(e, owners), owners)
                        .and_then(|()| replace(dfd, &tmp, name, &e.path, f, protect));
                    if r.is_err() {
                        let _ = unlink_at(dfd, &tmp, 0);
                    }
                    r?;
                    st.touched.insert(dir.to_vec());
                } else {
                    expect_kind(dfd, name, EntryKind::Fifo)?;
                    set_attrs_at(dfd, name, e, f, self.want_mode(e, owners), owners)?;
                }
            }
            EntryKind::Device => {
                if !self.opts.allow_devices {
                    self.refused += 1;
                    return Err(refused("device nodes are not allowed on this node".into()));
                }
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "device nodes are not supported yet (the manifest carries no device number)",
                ));
            }
            EntryKind::HardLink => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "hard links are not supported yet",
                ));
            }
        }
        Ok(())
    }

    /// Size, attributes and durability of a staged file, before its rename.
    fn finish_file(&self, file: &File, e: &Entry, owners: bool) -> io::Result<()> {
        if file.metadata()?.len() > e.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "staged data longer than the entry",
            ));
        }
        file.set_len(e.size)?;
        finish_attrs(file, e, owners, self.want_mode(e, owners))?;
        if self.opts.durable && !self.batch_sync {
            // After the attributes so that they are on disk too.
            file.sync_all()?;
        }
        Ok(())
    }

    /// Final pass over directories, deepest first: owner, mode and times, now that their
    /// contents have been applied. Unchanged directories whose contents changed get their
    /// times back.
    fn finish_dirs(&mut self, m: &Manifest, st: &mut CommitState) {
        let owners = self.owners(m);
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
            let attrs = if applied {
                change::TIME | change::PERM | change::OWNER
            } else {
                change::TIME
            };
            let mode = self.want_mode(e, owners);
            let base = self.base_raw();
            let r = checked_split(path, EntryKind::Dir).and_then(|(dir, name)| {
                let dfd = self.dirs.get(base, dir, None)?;
                expect_kind(dfd, name, EntryKind::Dir)?;
                set_attrs_at(dfd, name, e, attrs, mode, owners)
            });
            if let Err(err) = r {
                st.out.errors.push(format!("{}: {err}", show(path)));
            }
        }
    }

    /// Deletes one path (a whole tree for a directory) without following symlinks. Returns
    /// whether it was removed.
    fn delete_one(
        &mut self,
        p: &[u8],
        protect: Protect<'_>,
        st: &mut CommitState,
    ) -> io::Result<bool> {
        if p == b"." {
            self.refused += 1;
            return Err(refused("will not delete the base directory".into()));
        }
        let (dir, name) = checked_split(p, EntryKind::File).inspect_err(|_| {
            self.refused += 1;
        })?;
        let dfd = match self.open_parent(dir, false) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let s = match lstat_at(dfd, name) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let is_dir = kind_of(s.st_mode) == Some(EntryKind::Dir);
        if protect(p, is_dir) {
            return Ok(false);
        }
        let gone = if is_dir {
            let gone = remove_tree(dfd, name, p, protect);
            self.dirs.clear();
            gone?
        } else {
            unlink_at(dfd, name, 0)?;
            true
        };
        st.touched.insert(dir.to_vec());
        Ok(gone)
    }

    /// Re-reads who we run as (after the daemon dropped privileges with `-u`): owners and
    /// set-id bits are only reproduced while running as root.
    pub fn refresh_identity(&mut self) {
        self.is_root = unsafe { libc::geteuid() } == 0;
    }

    /// Flushes the whole file system holding the base (syncfs needs a real descriptor, not
    /// the O_PATH one kept for walking).
    fn syncfs(&self) -> io::Result<()> {
        let fd = cvt(unsafe {
            libc::openat(
                self.base_fd.as_raw_fd(),
                c".".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        cvt(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(drop)
    }

    fn sync_dir(&self, rel: &[u8]) -> io::Result<()> {
        let dfd = open_dir(self.base_raw(), rel, None)?;
        let fd = open_at(dfd.as_raw_fd(), b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        File::from(fd).sync_all()
    }
}

impl Storage for FsStorage {
    fn read(&mut self, entry: &Entry, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if !matches!(&self.reader, Some((p, _)) if *p == entry.path) {
            self.reader = None;
            let f = self.open_source(entry)?;
            self.reader = Some((entry.path.clone(), f));
        }
        let Some((_, f)) = &self.reader else {
            return Err(io::Error::other("no source open"));
        };
        let mut n = 0;
        while n < buf.len() {
            match f.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    fn inspect(&mut self, _key: XferKey, manifest: &Manifest) -> Option<Inspection> {
        Some(match Filter::new(&manifest.rules) {
            Ok(filter) => self.inspect_with(manifest, &|p, d| filter.excluded(p, d)),
            // Rules we cannot read protect everything: nothing is deleted.
            Err(_) => self.inspect_with(manifest, &|_, _| true),
        })
    }

    fn write(
        &mut self,
        key: XferKey,
        idx: u32,
        entry: &Entry,
        offset: u64,
        data: &[u8],
    ) -> io::Result<()> {
        if entry.kind != EntryKind::File {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "data for an entry that is not a regular file",
            ));
        }
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > entry.size)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "write beyond the entry's size",
            ));
        }
        if let Some(why) = self.refusals.get(&(key, idx)) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                Refused(why.clone()),
            ));
        }
        let r = self.stage(key, idx, entry, offset, data);
        if let Err(e) = &r {
            if let Some(why) = e.get_ref().and_then(|r| r.downcast_ref::<Refused>()) {
                self.refusals.insert((key, idx), why.0.clone());
            }
        }
        r
    }

    fn complete(&mut self, key: XferKey, idx: u32, m: &Manifest) -> io::Result<()> {
        let Some(e) = m.entries.get(idx as usize) else {
            return Ok(());
        };
        // A gathered file that cannot be written out fails the transfer, as a failed write
        // of a bigger one does.
        self.flush_pending(key, idx, e)?;
        // Attributes now, while the network is what the transfer waits for; the commit is
        // then one rename per file. Only while the file stays ours alone: it may still be
        // read back to decode parity for other files, so it is not handed to another owner
        // and gets no group/other write permission before the commit (which adds those
        // bits just before the rename), and it must stay readable and writable by its
        // owner without privileges. Otherwise, and on any failure, the commit does it all.
        let owners = self.owners(m);
        let mode = self.want_mode(e, owners);
        let euid = unsafe { libc::geteuid() };
        if (owners && e.uid != euid) || mode & 0o600 != 0o600 {
            return Ok(());
        }
        let early = mode & !0o022;
        let Ok(file) = self.staged_file(key, idx, e, false) else {
            return Ok(());
        };
        if finish_attrs(file, e, owners, early).is_err() {
            return Ok(());
        }
        if let Some(s) = self.staged.get_mut(&(key, idx)) {
            s.ready = true;
            s.final_mode = (early != mode).then_some(mode);
            if s.file.take().is_some() {
                self.open_count -= 1;
            }
        }
        Ok(())
    }

    fn read_staged(
        &mut self,
        key: XferKey,
        idx: u32,
        entry: &Entry,
        offset: u64,
        buf: &mut [u8],
    ) -> io::Result<()> {
        if let Some(b) = self.pending.get(&(key, idx)) {
            let src = usize::try_from(offset)
                .ok()
                .and_then(|o| b.get(o..o.checked_add(buf.len())?))
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "short staged"))?;
            buf.copy_from_slice(src);
            return Ok(());
        }
        self.staged_file(key, idx, entry, false)?
            .read_exact_at(buf, offset)
    }

    fn commit(&mut self, key: XferKey, req: &CommitRequest<'_>) -> Option<CommitOutcome> {
        // A push may ask members to skip the durability step (`sync --no-fsync`).
        let started = Instant::now();
        let durable = self.opts.durable;
        self.opts.durable = durable && !req.manifest.options.no_fsync;
        let out = self.commit_durable(key, req);
        self.opts.durable = durable;
        self.last_commit = started.elapsed();
        out
    }

    fn abort(&mut self, key: XferKey) {
        self.drop_staged(key);
    }
}

impl FsStorage {
    fn commit_durable(&mut self, key: XferKey, req: &CommitRequest<'_>) -> Option<CommitOutcome> {
        Some(match Filter::new(&req.manifest.rules) {
            Ok(filter) => self.commit_with(key, req, &|p, d| filter.excluded(p, d)),
            Err(e) => {
                let mut out = self.commit_with(key, req, &|_, _| true);
                out.errors
                    .push(format!("filter rules: {e:#}; nothing deleted"));
                out
            }
        })
    }
}

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

fn sweep_dir(fd: RawFd, n: &mut usize) -> io::Result<()> {
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

/// Whether a file name is one of makuo's temp names.
fn is_temp_name(name: &[u8]) -> bool {
    let n = name.len();
    n > 1 + TEMP_TAG.len() + SUFFIX_LEN
        && name[0] == b'.'
        && &name[n - SUFFIX_LEN - TEMP_TAG.len()..n - SUFFIX_LEN] == TEMP_TAG
        && name[n - SUFFIX_LEN..].iter().all(u8::is_ascii_alphanumeric)
}

/// A fresh temp name for `name`: `.{name}.makuo-XXXXXX`, at most [`NAME_MAX`] bytes.
fn temp_name(name: &[u8]) -> io::Result<Vec<u8>> {
    let r = temp_suffix()?;
    let keep = name.len().min(NAME_MAX - 1 - TEMP_TAG.len() - SUFFIX_LEN);
    let mut t = Vec::with_capacity(NAME_MAX);
    t.push(b'.');
    t.extend_from_slice(&name[..keep]);
    t.extend_from_slice(TEMP_TAG);
    t.extend(r.iter().map(|b| ALNUM[*b as usize % ALNUM.len()]));
    Ok(t)
}

/// Random bytes for a temp name: a splitmix64 stream seeded once per thread from the OS
/// (one getrandom per file was a measurable share of a 10,000-file commit). The names
/// need to be hard to guess, not secret: `O_EXCL|O_NOFOLLOW` is what makes them safe.
fn temp_suffix() -> io::Result<[u8; SUFFIX_LEN]> {
    thread_local! {
        static STATE: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
    }
    let mut x = match STATE.get() {
        Some(x) => x,
        None => {
            let mut seed = [0u8; 8];
            getrandom::getrandom(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
            u64::from_ne_bytes(seed)
        }
    };
    let mut r = [0u8; SUFFIX_LEN];
    for chunk in r.chunks_mut(8) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_ne_bytes()[..chunk.len()]);
    }
    STATE.set(Some(x));
    Ok(r)
}

/// Runs `make` with fresh temp names until one does not exist yet.
fn with_temp_name<T>(
    name: &[u8],
    mut make: impl FnMut(&[u8]) -> io::Result<T>,
) -> io::Result<(Vec<u8>, T)> {
    for _ in 0..16 {
        let t = temp_name(name)?;
        match make(&t) {
            Ok(v) => return Ok((t, v)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temp name",
    ))
}

/// Device and inode of an open file.
fn file_id(file: &File) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let md = file.metadata()?;
    Ok((md.dev(), md.ino()))
}

/// Reopens staged temp file `tmp` in `dfd`, refusing anything but the inode created for it.
fn reopen_staged(dfd: RawFd, tmp: &[u8], id: (u64, u64), access: libc::c_int) -> io::Result<File> {
    let file = File::from(open_at(dfd, tmp, access | libc::O_NOFOLLOW, 0)?);
    same_staged(tmp, file_id(&file)?, id)?;
    Ok(file)
}

/// Refuses a staged temp file `tmp` whose device and inode (`found`) are not the ones it
/// was created with (`id`).
fn same_staged(tmp: &[u8], found: (u64, u64), id: (u64, u64)) -> io::Result<()> {
    if found == id {
        Ok(())
    } else {
        Err(refused(format!("staged file {} was replaced", show(tmp))))
    }
}

fn create_temp_file(dfd: RawFd, name: &[u8]) -> io::Result<(Vec<u8>, OwnedFd)> {
    // Read-write (not write-only) so that staged data can be read back for repair.
    with_temp_name(name, |t| {
        open_at(
            dfd,
            t,
            libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_RDWR,
            0o600,
        )
    })
}

/// Renames `tmp` over `name` in the same directory. A directory in the way is removed first
/// only when the flags say the type changed.
fn replace(
    dfd: RawFd,
    tmp: &[u8],
    name: &[u8],
    rel: &[u8],
    flags: u8,
    protect: Protect<'_>,
) -> io::Result<()> {
    let (t, n) = (cstr(tmp)?, cstr(name)?);
    let rename = || cvt(unsafe { libc::renameat(dfd, t.as_ptr(), dfd, n.as_ptr()) }).map(drop);
    // The rename alone in the common case; only when it fails may a directory be in the way.
    let err = match rename() {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    match lstat_at(dfd, name) {
        Ok(s) if kind_of(s.st_mode) == Some(EntryKind::Dir) => {
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

/// Removes directory `name` and its contents without following symlinks, sparing protected
/// paths. Returns whether the directory itself is gone.
fn remove_tree(dfd: RawFd, name: &[u8], rel: &[u8], protect: Protect<'_>) -> io::Result<bool> {
    let fd = open_at(dfd, name, DIR_WALK, 0)?;
    let fd = fd.as_raw_fd();
    let mut kept = false;
    for child in list_dir(fd)? {
        let crel = join(rel, &child);
        let s = match lstat_at(fd, &child) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let is_dir = kind_of(s.st_mode) == Some(EntryKind::Dir);
        if protect(&crel, is_dir) {
            kept = true;
        } else if is_dir {
            kept |= !remove_tree(fd, &child, &crel, protect)?;
        } else {
            unlink_at(fd, &child, 0)?;
        }
    }
    if kept {
        return Ok(false);
    }
    unlink_at(dfd, name, libc::AT_REMOVEDIR)?;
    Ok(true)
}

/// Deletion scan of one path; returns whether anything at or under it must stay.
fn scan(
    dfd: RawFd,
    name: &[u8],
    rel: &[u8],
    wanted: &HashSet<&[u8]>,
    protect: Protect<'_>,
    out: &mut Vec<Vec<u8>>,
) -> bool {
    if is_temp_name(name) {
        // Another transfer's work in progress: never listed by itself.
        return false;
    }
    let Ok(st) = lstat_at(dfd, name) else {
        return true;
    };
    let is_dir = kind_of(st.st_mode) == Some(EntryKind::Dir);
    if protect(rel, is_dir) {
        return true;
    }
    let want = wanted.contains(rel);
    if !is_dir {
        if !want {
            out.push(rel.to_vec());
        }
        return want;
    }
    let mut sub = Vec::new();
    let kept = match open_at(dfd, name, DIR_WALK, 0) {
        Ok(fd) => scan_children(fd.as_raw_fd(), rel, wanted, protect, &mut sub),
        Err(_) => true,
    };
    if want || kept {
        out.append(&mut sub);
        true
    } else {
        out.push(rel.to_vec());
        false
    }
}

fn scan_children(
    fd: RawFd,
    rel: &[u8],
    wanted: &HashSet<&[u8]>,
    protect: Protect<'_>,
    out: &mut Vec<Vec<u8>>,
) -> bool {
    let Ok(names) = list_dir(fd) else {
        return true;
    };
    let mut kept = false;
    for n in names {
        kept |= scan(fd, &n, &join(rel, &n), wanted, protect, out);
    }
    kept
}

/// Sets the attributes selected by `flags` (OWNER, PERM, TIME) on `name`, never following a
/// symlink. A chown is followed by a chmod, since it clears set-id bits.
fn set_attrs_at(
    dfd: RawFd,
    name: &[u8],
    e: &Entry,
    flags: u8,
    mode: u32,
    owners: bool,
) -> io::Result<()> {
    let c = cstr(name)?;
    let chown = owners && flags & change::OWNER != 0;
    if chown {
        cvt(unsafe { libc::fchownat(dfd, c.as_ptr(), e.uid, e.gid, libc::AT_SYMLINK_NOFOLLOW) })?;
    }
    if e.kind != EntryKind::Symlink && (chown || flags & change::PERM != 0) {
        // Fails (rather than follows) if `name` has become a symlink.
        cvt(unsafe {
            libc::fchmodat(
                dfd,
                c.as_ptr(),
                mode as libc::mode_t,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
    }
    if flags & change::TIME != 0 {
        let ts = mtime_spec(e);
        cvt(unsafe { libc::utimensat(dfd, c.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })?;
    }
    Ok(())
}

/// Owner, mode and modification time of a staged file.
fn finish_attrs(file: &File, e: &Entry, owners: bool, mode: u32) -> io::Result<()> {
    // Owner first: chown clears set-id bits, which the chmod below then sets.
    if owners {
        std::os::unix::fs::fchown(file, Some(e.uid), Some(e.gid))?;
    }
    file.set_permissions(Permissions::from_mode(mode))?;
    let ts = mtime_spec(e);
    cvt(unsafe { libc::futimens(file.as_raw_fd(), ts.as_ptr()) }).map(drop)
}

/// Times for `utimensat`/`futimens`: access time untouched, modification time from `e`.
fn mtime_spec(e: &Entry) -> [libc::timespec; 2] {
    let mut atime: libc::timespec = unsafe { std::mem::zeroed() };
    atime.tv_nsec = libc::UTIME_OMIT;
    let mut mtime: libc::timespec = unsafe { std::mem::zeroed() };
    mtime.tv_sec = e.mtime as libc::time_t;
    mtime.tv_nsec = e.mtime_nsec as _;
    [atime, mtime]
}

fn expect_kind(dfd: RawFd, name: &[u8], kind: EntryKind) -> io::Result<()> {
    let s = lstat_at(dfd, name)?;
    if kind_of(s.st_mode) != Some(kind) {
        return Err(io::Error::other("changed type since inspection"));
    }
    Ok(())
}

/// MD5 of a regular file, opened without following a symlink.
fn md5_at(dfd: RawFd, name: &[u8]) -> io::Result<[u8; 16]> {
    use md5::{Digest, Md5};
    let f = File::from(open_at(
        dfd,
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        0,
    )?);
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut off = 0u64;
    loop {
        match f.read_at(&mut buf, off) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                off += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(h.finalize().into())
}

/// Checks a path from the network and splits it into parent and last component. `.` (the
/// base itself) is only valid for a directory.
fn checked_split(path: &[u8], kind: EntryKind) -> io::Result<(&[u8], &[u8])> {
    check_rel_path(path).map_err(|e| refused(e.to_string()))?;
    if path == b"." && kind != EntryKind::Dir {
        return Err(refused("the base directory itself is not a file".into()));
    }
    Ok(split(path))
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// Opens directory `rel` (relative to `base`, "" for the base itself) one component at a
/// time, never following a symlink. A symlink or non-directory on the way is refused. With
/// `made`, missing directories are created (mode 0755) and their parents recorded there.
fn open_dir(base: RawFd, rel: &[u8], made: Option<&mut Vec<Vec<u8>>>) -> io::Result<OwnedFd> {
    if rel.is_empty() {
        return open_at(base, b".", DIR_WALK, 0);
    }
    open_dir_from(base, rel, 0, made)
}

/// Opens directory `rel` (non-empty) one component at a time from `start`, the directory
/// `rel[..from]` (`from` is 0 for the base, else just past a '/').
fn open_dir_from(
    start: RawFd,
    rel: &[u8],
    from: usize,
    mut made: Option<&mut Vec<Vec<u8>>>,
) -> io::Result<OwnedFd> {
    let mut cur: Option<OwnedFd> = None;
    let mut end = from;
    for comp in rel[from..].split(|&b| b == b'/') {
        let parent = &rel[..end.max(1) - 1];
        end += comp.len() + 1;
        let at = &rel[..end - 1];
        let dfd = cur.as_ref().map_or(start, |c| c.as_raw_fd());
        let next = match open_at(dfd, comp, DIR_WALK, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && made.is_some() => {
                match mkdir_at(dfd, comp, 0o755) {
                    Ok(()) => {
                        if let Some(m) = made.as_deref_mut() {
                            m.push(parent.to_vec());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                open_at(dfd, comp, DIR_WALK, 0).map_err(|e| why_not_dir(e, dfd, comp, at))?
            }
            Err(e) => return Err(why_not_dir(e, dfd, comp, at)),
        };
        cur = Some(next);
    }
    cur.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty directory path"))
}

/// A few recently used directories of the base, kept open for the receiving side: files
/// arrive in tree order, so most parents resolve with no system call, and the rest from
/// their nearest open ancestor instead of from the base. Each directory was reached the same
/// confined way as without the cache (one `O_NOFOLLOW` component at a time), and none is
/// used longer than [`DIR_CACHE_AGE`] after it was opened: a directory moved away or
/// replaced meanwhile is not written into for longer than that. Also cleared around every
/// commit and abort and after a directory is removed. The sending side does not use it.
#[derive(Debug, Default)]
struct DirCache {
    /// `(path, descriptor, opened at)`, most recently used last.
    open: Vec<(Vec<u8>, OwnedFd, Instant)>,
}

/// Directories a [`DirCache`] keeps open.
const DIR_CACHE: usize = 16;

/// How long a cached directory may be used after it was opened.
const DIR_CACHE_AGE: Duration = Duration::from_millis(50);

impl DirCache {
    /// The descriptor of directory `rel` (`base` itself for ""), valid until the next call
    /// or `clear`. With `made`, missing directories are created (and their parents noted).
    fn get(
        &mut self,
        base: RawFd,
        rel: &[u8],
        made: Option<&mut Vec<Vec<u8>>>,
    ) -> io::Result<RawFd> {
        if rel.is_empty() {
            return Ok(base);
        }
        let now = Instant::now();
        self.open
            .retain(|(_, _, t)| now.saturating_duration_since(*t) <= DIR_CACHE_AGE);
        if let Some(i) = self.open.iter().rposition(|(p, _, _)| p == rel) {
            let hit = self.open.remove(i);
            self.open.push(hit);
        } else {
            // The nearest open ancestor, if any.
            let mut from = (base, 0);
            let mut cut = rel.len();
            while let Some(slash) = rel[..cut].iter().rposition(|&b| b == b'/') {
                if let Some((_, fd, _)) = self.open.iter().find(|(p, _, _)| p == &rel[..slash]) {
                    from = (fd.as_raw_fd(), slash + 1);
                    break;
                }
                cut = slash;
            }
            let fd = open_dir_from(from.0, rel, from.1, made)?;
            if self.open.len() >= DIR_CACHE {
                self.open.remove(0);
            }
            self.open.push((rel.to_vec(), fd, now));
        }
        Ok(self.open.last().map_or(base, |(_, fd, _)| fd.as_raw_fd()))
    }

    fn clear(&mut self) {
        self.open.clear();
    }
}

/// Turns the error of opening a parent into a refusal when it is a symlink or not a
/// directory.
fn why_not_dir(e: io::Error, dfd: RawFd, comp: &[u8], at: &[u8]) -> io::Error {
    if !matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
        return e;
    }
    match lstat_at(dfd, comp).map(|s| kind_of(s.st_mode)) {
        Ok(Some(EntryKind::Symlink)) => refused(format!("parent {} is a symlink", show(at))),
        _ => refused(format!("parent {} is not a directory", show(at))),
    }
}

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn open_at(dfd: RawFd, name: &[u8], flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
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

fn mkdir_at(dfd: RawFd, name: &[u8], mode: libc::mode_t) -> io::Result<()> {
    let c = cstr(name)?;
    cvt(unsafe { libc::mkdirat(dfd, c.as_ptr(), mode) }).map(drop)
}

fn unlink_at(dfd: RawFd, name: &[u8], flags: libc::c_int) -> io::Result<()> {
    let c = cstr(name)?;
    cvt(unsafe { libc::unlinkat(dfd, c.as_ptr(), flags) }).map(drop)
}

fn lstat_at(dfd: RawFd, name: &[u8]) -> io::Result<libc::stat> {
    let c = cstr(name)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    cvt(unsafe { libc::fstatat(dfd, c.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(unsafe { st.assume_init() })
}

fn readlink_at(dfd: RawFd, name: &[u8]) -> io::Result<Vec<u8>> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    let n = unsafe { libc::readlinkat(dfd, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn kind_of(mode: libc::mode_t) -> Option<EntryKind> {
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
fn list_dir(dfd: RawFd) -> io::Result<Vec<Vec<u8>>> {
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
fn set_errno_zero() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    unsafe {
        *libc::__errno_location() = 0;
    }
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    unsafe {
        *libc::__error() = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::storage::md5_of;
    use std::ffi::OsStr;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt};
    use std::time::{Duration, SystemTime};

    const KEY: XferKey = XferKey { origin: 1, xfer: 7 };

    fn storage(base: &Path) -> FsStorage {
        FsStorage::new(base.to_path_buf(), ApplyOptions::default()).unwrap()
    }

    fn manifest(entries: Vec<Entry>) -> Manifest {
        Manifest {
            roots: vec![b".".to_vec()],
            entries,
            ..Default::default()
        }
    }

    fn file(path: &[u8], data: &[u8], mode: u32, mtime: i64) -> Entry {
        Entry::file(path, data.len() as u64, mode, mtime)
    }

    fn p(base: &Path, rel: &[u8]) -> PathBuf {
        base.join(OsStr::from_bytes(rel))
    }

    fn commit(
        s: &mut FsStorage,
        m: &Manifest,
        flags: &[u8],
        deletions: &[Vec<u8>],
    ) -> CommitOutcome {
        let req = CommitRequest {
            manifest: m,
            flags,
            deletions,
            skip: &[],
        };
        s.commit(KEY, &req).unwrap()
    }

    /// Inspects, stages `data[i]` (back half first) for every file that needs data, commits.
    /// Every other file is reported complete before the commit (as the engine does), so
    /// both ways to the commit are covered.
    #[track_caller]
    fn push(s: &mut FsStorage, m: &Manifest, data: &[&[u8]]) -> (Inspection, CommitOutcome) {
        let ins = s.inspect(KEY, m).unwrap();
        for (i, e) in m.entries.iter().enumerate() {
            if needs_data(e.kind, ins.flags[i], m.options.checksum) && e.size > 0 {
                let d = data[i];
                let half = d.len() / 2;
                s.write(KEY, i as u32, e, half as u64, &d[half..]).unwrap();
                s.write(KEY, i as u32, e, 0, &d[..half]).unwrap();
                if i % 2 == 0 {
                    s.complete(KEY, i as u32, m).unwrap();
                }
            }
        }
        let out = commit(s, m, &ins.flags, &ins.deletions);
        (ins, out)
    }

    /// Every makuo temp name under `dir` (symlinks not followed).
    fn temps(dir: &Path) -> Vec<PathBuf> {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| is_temp_name(e.file_name().as_bytes()))
            .map(|e| e.path().to_path_buf())
            .collect()
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn set_mtime(path: &Path, secs: u64, nsec: u32) {
        let t = SystemTime::UNIX_EPOCH + Duration::new(secs, nsec);
        let f = File::options().write(true).open(path).unwrap();
        f.set_times(fs::FileTimes::new().set_modified(t)).unwrap();
    }

    #[test]
    fn stage_and_commit_create_files_with_exact_contents_mode_and_mtime() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let mut s = storage(base);
        let mut a = file(b"d/a.txt", b"hello world", 0o640, 1_700_000_000);
        a.mtime_nsec = 123_456_789;
        let m = manifest(vec![
            Entry::dir(b"d", 0o750, 1_600_000_000),
            a,
            file(b"empty", b"", 0o600, 1_500_000_000),
            file(b"d/sub/deep", b"xyz", 0o644, 1_400_000_000),
            file(b"suid", b"#!", 0o4755, 1_300_000_000),
        ]);
        let data: [&[u8]; 5] = [b"", b"hello world", b"", b"xyz", b"#!"];
        let (ins, out) = push(&mut s, &m, &data);
        assert_eq!(ins.flags, vec![change::MISSING; 5]);
        assert_eq!(out.errors, Vec::<String>::new());
        assert_eq!((out.files, out.bytes, out.deleted), (5, 16, 0));

        assert_eq!(fs::read(base.join("d/a.txt")).unwrap(), b"hello world");
        let md = fs::metadata(base.join("d/a.txt")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_700_000_000, 123_456_789));
        assert_eq!(fs::read(base.join("empty")).unwrap(), b"");
        assert_eq!(mode(&base.join("empty")), 0o600);
        assert_eq!(fs::read(base.join("d/sub/deep")).unwrap(), b"xyz");
        // Directories get mode and time after their contents went in.
        let md = fs::metadata(base.join("d")).unwrap();
        assert_eq!((md.mode() & 0o7777, md.mtime()), (0o750, 1_600_000_000));
        // No owners preserved: set-id bits are dropped.
        assert_eq!(mode(&base.join("suid")), 0o755);

        assert_eq!(s.inspect(KEY, &m).unwrap().flags, vec![0; 5]);
        assert_eq!(s.staged_count(), 0);
        assert!(temps(base).is_empty());
    }

    #[test]
    fn reader_never_sees_a_partial_file() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let mut s = storage(base);
        // Bigger than GATHER_FILE: written to its temp file as it arrives.
        let data = vec![7u8; 100_000];
        let m = manifest(vec![file(b"d/big", &data, 0o644, 1_000)]);
        let e = &m.entries[0];
        s.write(KEY, 0, e, 0, &data[..40_000]).unwrap();
        assert!(!base.join("d/big").exists());
        let t = temps(base);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t[0].parent().unwrap(),
            base.join("d"),
            "temp lives in the target dir"
        );
        assert!(t[0]
            .file_name()
            .unwrap()
            .as_bytes()
            .starts_with(b".big.makuo-"));
        assert_eq!(mode(&t[0]), 0o600);
        s.write(KEY, 0, e, 40_000, &data[40_000..]).unwrap();
        assert!(!base.join("d/big").exists());
        let mut back = vec![0u8; 100];
        s.read_staged(KEY, 0, e, 99_900, &mut back).unwrap();
        assert_eq!(back, vec![7u8; 100]);
        assert!(
            s.read_staged(KEY, 0, e, 99_950, &mut back).is_err(),
            "past staged end"
        );
        let err = s.write(KEY, 0, e, 99_999, b"xx").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "beyond entry size");

        let out = commit(&mut s, &m, &[change::MISSING], &[]);
        assert_eq!(out.errors, Vec::<String>::new());
        assert_eq!(fs::read(base.join("d/big")).unwrap(), data);
        assert!(temps(base).is_empty());
    }

    #[test]
    fn symlinked_parent_is_refused_and_nothing_is_written_outside_base() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let base = tmp.path();
        symlink(outside.path(), base.join("link")).unwrap();
        fs::write(base.join("plain"), b"").unwrap();
        fs::write(outside.path().join("secret"), b"s3cret").unwrap();
        let mut s = storage(base);
        let m = manifest(vec![
            file(b"link/x", b"abc", 0o644, 0),
            file(b"ok", b"ok", 0o644, 0),
            file(b"plain/y", b"y", 0o644, 0),
            file(b"link/secret", b"s3cret", 0o644, 0),
        ]);
        let ins = s.inspect(KEY, &m).unwrap();
        assert_eq!(
            ins.flags,
            vec![change::MISSING; 4],
            "never looks through the link"
        );
        for _ in 0..2 {
            let err = s.write(KEY, 0, &m.entries[0], 0, b"abc").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
            assert!(err.to_string().contains("symlink"), "{err}");
        }
        assert_eq!(s.refused(), 1, "counted once per entry");
        let err = s.write(KEY, 2, &m.entries[2], 0, b"y").unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        s.write(KEY, 1, &m.entries[1], 0, b"ok").unwrap();

        let out = commit(&mut s, &m, &ins.flags[..3], &[]);
        assert_eq!(out.files, 1);
        assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
        assert!(
            out.errors[0].starts_with("link/x: refused"),
            "{:?}",
            out.errors
        );
        assert!(
            out.errors[1].starts_with("plain/y: refused"),
            "{:?}",
            out.errors
        );
        assert_eq!(fs::read(base.join("ok")).unwrap(), b"ok");
        assert_eq!(s.refused(), 2);
        let names: Vec<_> = fs::read_dir(outside.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsStr::new("secret")]);

        // The sender side does not read through the link either.
        let mut buf = [0u8; 16];
        assert!(s.read(&m.entries[3], 0, &mut buf).is_err());
        assert!(temps(base).is_empty() && temps(outside.path()).is_empty());
    }

    #[test]
    fn complete_files_get_attributes_early_and_stay_hidden_until_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let mut s = storage(base);
        let m = manifest(vec![
            Entry::dir(b"d", 0o755, 0),
            file(b"d/a", b"alpha", 0o640, 1_000_000_000),
            file(b"d/b", b"beta", 0o664, 1_000_000_001),
        ]);
        let ins = s.inspect(KEY, &m).unwrap();
        s.write(KEY, 1, &m.entries[1], 0, b"alpha").unwrap();
        s.complete(KEY, 1, &m).unwrap();
        s.write(KEY, 2, &m.entries[2], 0, b"beta").unwrap();
        s.complete(KEY, 2, &m).unwrap();
        // Finished but hidden: only temp names exist, with the final mode already.
        assert!(!base.join("d/a").exists() && !base.join("d/b").exists());
        let staged = temps(base);
        assert_eq!(staged.len(), 2, "{staged:?}");
        assert!(staged.iter().any(|t| mode(t) == 0o640), "{staged:?}");
        // Group write is withheld until the rename (the file may still be read back).
        assert!(staged.iter().any(|t| mode(t) == 0o644), "{staged:?}");
        // Still readable back (parity decoding needs that).
        let mut buf = [0u8; 5];
        s.read_staged(KEY, 1, &m.entries[1], 0, &mut buf).unwrap();
        assert_eq!(&buf, b"alpha");
        let out = commit(&mut s, &m, &ins.flags, &[]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!((out.files, out.bytes), (3, 9));
        assert_eq!(fs::read(base.join("d/a")).unwrap(), b"alpha");
        assert_eq!(mode(&base.join("d/a")), 0o640);
        assert_eq!(mode(&base.join("d/b")), 0o664);
        let mt = fs::metadata(base.join("d/b")).unwrap().mtime();
        assert_eq!(mt, 1_000_000_001);
        assert!(temps(base).is_empty());
    }

    #[test]
    fn small_files_are_gathered_in_memory_and_written_once_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let mut s = storage(base);
        let m = manifest(vec![
            file(b"d/a", b"0123456789", 0o644, 5),
            file(b"d/b", b"abcdefghij", 0o644, 6),
        ]);
        let ins = s.inspect(KEY, &m).unwrap();
        s.write(KEY, 0, &m.entries[0], 5, b"56789").unwrap();
        s.write(KEY, 1, &m.entries[1], 0, b"abcde").unwrap();
        // Parents are made at the first write; no temp file until a file is complete.
        assert!(base.join("d").is_dir());
        assert!(temps(base).is_empty());
        assert_eq!(s.staged_count(), 2);
        let mut back = [0u8; 3];
        s.read_staged(KEY, 0, &m.entries[0], 6, &mut back).unwrap();
        assert_eq!(&back, b"678");
        let mut past = [0u8; 8];
        assert!(s.read_staged(KEY, 0, &m.entries[0], 6, &mut past).is_err());
        s.write(KEY, 0, &m.entries[0], 0, b"01234").unwrap();
        s.complete(KEY, 0, &m).unwrap();
        assert_eq!(temps(base).len(), 1, "the complete one is on disk");
        // Not completed (the engine would not commit this): written out at commit anyway.
        s.write(KEY, 1, &m.entries[1], 5, b"fghij").unwrap();
        let out = commit(&mut s, &m, &ins.flags, &[]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(fs::read(base.join("d/a")).unwrap(), b"0123456789");
        assert_eq!(fs::read(base.join("d/b")).unwrap(), b"abcdefghij");
        assert_eq!(s.staged_count(), 0);
        assert!(temps(base).is_empty());

        // An abort frees what was gathered.
        s.write(KEY, 0, &m.entries[0], 0, b"01234").unwrap();
        assert_eq!(s.staged_count(), 1);
        s.abort(KEY);
        assert_eq!((s.staged_count(), s.pending_bytes), (0, 0));
    }

    #[test]
    fn parent_swapped_for_a_symlink_after_staging_is_refused_at_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let base = tmp.path();
        fs::create_dir(base.join("d")).unwrap();
        let mut s = storage(base);
        let m = manifest(vec![file(b"d/x", b"data", 0o644, 0)]);
        let ins = s.inspect(KEY, &m).unwrap();
        s.write(KEY, 0, &m.entries[0], 0, b"data").unwrap();
        s.complete(KEY, 0, &m).unwrap();
        // The staged file sits in the old directory; the path now leads outside.
        fs::rename(base.join("d"), base.join("old")).unwrap();
        symlink(outside.path(), base.join("d")).unwrap();
        let out = commit(&mut s, &m, &ins.flags, &[]);
        assert_eq!(out.files, 0);
        assert!(
            out.errors.len() == 1 && out.errors[0].contains("symlink"),
            "{:?}",
            out.errors
        );
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_staged_file_swapped_by_name_is_never_read_back_or_installed() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let mut s = storage(base);
        // Bigger than GATHER_FILE, so it is on disk from the first write.
        let data = vec![b'r'; 100_000];
        let m = manifest(vec![file(b"f", &data, 0o644, 0)]);
        let ins = s.inspect(KEY, &m).unwrap();
        s.write(KEY, 0, &m.entries[0], 0, &data).unwrap();
        s.complete(KEY, 0, &m).unwrap();
        let t = temps(base);
        assert_eq!(t.len(), 1);
        fs::remove_file(&t[0]).unwrap();
        fs::write(&t[0], vec![b'x'; 100_000]).unwrap();
        let mut buf = [0u8; 4];
        let err = s
            .read_staged(KEY, 0, &m.entries[0], 0, &mut buf)
            .unwrap_err();
        assert!(err.to_string().contains("replaced"), "{err}");
        let out = commit(&mut s, &m, &ins.flags, &[]);
        assert_eq!(out.files, 0, "{:?}", out.errors);
        assert!(!base.join("f").exists());
    }

    #[test]
    fn absolute_and_dotdot_paths_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        fs::create_dir(&base).unwrap();
        let mut s = storage(&base);
        let bad: [&[u8]; 4] = [
            b"/abs-escape",
            b"../dotdot-escape",
            b"a/../../x-escape",
            b".",
        ];
        let m = manifest(bad.iter().map(|p| file(p, b"x", 0o644, 0)).collect());
        for (i, e) in m.entries.iter().enumerate() {
            let err = s.write(KEY, i as u32, e, 0, b"x").unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::PermissionDenied,
                "{}",
                show(&e.path)
            );
        }
        let out = commit(
            &mut s,
            &m,
            &[change::MISSING; 4],
            &[b"../base".to_vec(), b".".to_vec(), b"/etc".to_vec()],
        );
        assert_eq!((out.files, out.deleted), (0, 0));
        assert_eq!(out.errors.len(), 7, "{:?}", out.errors);
        assert!(
            out.errors.iter().all(|e| e.contains("refused")),
            "{:?}",
            out.errors
        );
        assert_eq!(s.refused(), 7);
        assert!(!tmp.path().join("dotdot-escape").exists());
        assert!(!tmp.path().join("x-escape").exists());
        assert!(!Path::new("/abs-escape").exists());
        assert!(base.exists());
        assert_eq!(fs::read_dir(&base).unwrap().count(), 0);
    }

    #[test]
    fn receiving_a_symlink_does_not_chmod_its_target() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let target = outside.path().join("passwd");
        fs::write(&target, b"root").unwrap();
        fs::set_permissions(&target, Permissions::from_mode(0o600)).unwrap();
        fs::write(base.join("t"), b"t").unwrap();
        fs::set_permissions(base.join("t"), Permissions::from_mode(0o600)).unwrap();
        let mut s = storage(base);
        let m = manifest(vec![
            Entry::symlink(b"l", b"t", 1_000),
            Entry::symlink(b"abs", target.as_os_str().as_bytes(), 2_000),
        ]);
        let (_, out) = push(&mut s, &m, &[b"", b""]);
        assert_eq!(out.errors, Vec::<String>::new());
        assert_eq!(out.files, 2);
        assert_eq!(fs::read_link(base.join("l")).unwrap(), Path::new("t"));
        assert_eq!(
            fs::symlink_metadata(base.join("abs")).unwrap().mtime(),
            2_000
        );
        assert_eq!(mode(&base.join("t")), 0o600);
        assert_eq!(mode(&target), 0o600);

        // Metadata-only flags on an existing link, PERM included, touch only the link.
        let mut m2 = m.clone();
        m2.entries[0].mtime = 3_000;
        let out = commit(&mut s, &m2, &[change::PERM | change::TIME, 0], &[]);
        assert_eq!(out.errors, Vec::<String>::new());
        assert_eq!(fs::symlink_metadata(base.join("l")).unwrap().mtime(), 3_000);
        assert_eq!(mode(&base.join("t")), 0o600);
        assert_eq!(fs::read(&target).unwrap(), b"root");
        assert!(temps(base).is_empty());
    }

    #[test]
    fn metadata_only_change_applies_without_data() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let mut s = storage(base);
        let m = manifest(vec![file(b"f", b"hello", 0o644, 5_000)]);
        push(&mut s, &m, &[b"hello"]);
        let mut m2 = m.clone();
        m2.entries[0].mode = 0o600;
        let ins = s.inspect(KEY, &m2).unwrap();
        assert_eq!(ins.flags, vec![change::PERM]);
        assert!(!needs_data(EntryKind::File, ins.flags[0], false));
        let out = commit(&mut s, &m2, &ins.flags, &[]);
        assert_eq!((out.files, out.bytes), (1, 0));
        assert_eq!(out.errors, Vec::<String>::new());
        assert_eq!(mode(&base.join("f")), 0o600);
        assert_eq!(fs::read(base.join("f")).unwrap(), b"hello");
        assert_eq!(fs::metadata(base.join("f")).unwrap().mtime(), 5_000);
    }

    #[test]
    fn owners_are_reproduced_only_when_asked_and_keep_set_id_bits() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let opts = ApplyOptions {
            preserve_owner: true,
            ..Default::default()
        };
        let mut s = FsStorage::new(base.to_path_buf(), opts).unwrap();
        let mut e = file(b"f", b"x", 0o4755, 1);
        e.uid = 70_000;
        e.gid = 4_000_000_000;
        let mut m = manifest(vec![e]);
        push(&mut s, &m, &[b"x"]);
        // The push does not carry owners: no chown, no set-id bits.
        assert_eq!(mode(&base.join("f")), 0o755);
        m.options.owners = true;
        let ins = s.inspect(KEY, &m).unwrap();
        if !s.is_root {
            assert_eq!(ins.flags, vec![0], "owners are not compared unless root");
            return;
        }
        assert_eq!(ins.flags, vec![change::PERM | change::OWNER]);
        let out = commit(&mut s, &m, &ins.flags, &[]);
        assert_eq!(out.errors, Vec::<String>::new());
        let md = fs::metadata(base.join("f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (70_000, 4_000_000_000), "32-bit ids");
        assert_eq!(
            md.mode() & 0o7777,
            0o4755,
            "chown did not eat the setuid bit"
        );
        assert_eq!(s.inspect(KEY, &m).unwrap().flags, vec![0]);
    }

    #[test]
    fn deletions_respect_protection_and_never_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let base = tmp.path();
        fs::write(outside.path().join("precious"), b"p").unwrap();
        fs::write(base.join("keep.txt"), b"k").unwrap();
        fs::write(base.join("old.txt"), b"o").unwrap();
        fs::create_dir_all(base.join("olddir/a")).unwrap();
        fs::write(base.join("olddir/a/b.txt"), b"b").unwrap();
        fs::create_dir(base.join("olddir2")).unwrap();
        fs::write(base.join("olddir2/keep.log"), b"l").unwrap();
        fs::write(base.join("olddir2/x"), b"x").unwrap();
        fs::write(base.join("protected.log"), b"l").unwrap();
        fs::write(base.join(".keep.txt.makuo-abc123"), b"in flight").unwrap();
        symlink(outside.path(), base.join("lnk")).unwrap();
        let mut s = storage(base);
        let mut m = manifest(vec![file(b"keep.txt", b"k", 0o644, 0)]);
        assert!(
            s.inspect(KEY, &m).unwrap().deletions.is_empty(),
            "no --delete"
        );
        m.options.delete = true;
        let protect = |p: &[u8], _: bool| p.ends_with(b".log");
        let ins = s.inspect_with(&m, &protect);
        let want: Vec<Vec<u8>> = [&b"olddir2/x"[..], b"olddir", b"old.txt", b"lnk"]
            .iter()
            .map(|p| p.to_vec())
            .collect();
        assert_eq!(ins.deletions, want);

        let mut dels = ins.deletions.clone();
        dels.push(b"protected.log".to_vec()); // protection is checked again at commit
        dels.insert(0, b"lnk/precious".to_vec()); // through a symlink: refused
        let req = CommitRequest {
            manifest: &m,
            flags: &ins.flags,
            deletions: &dels,
            skip: &[],
        };
        let out = s.commit_with(KEY, &req, &protect);
        assert_eq!(out.deleted, 4);
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert!(
            out.errors[0].starts_with("lnk/precious: delete: refused"),
            "{:?}",
            out.errors
        );
        assert!(outside.path().join("precious").exists());
        assert!(fs::symlink_metadata(base.join("lnk")).is_err());
        assert!(!base.join("olddir").exists() && !base.join("old.txt").exists());
        assert!(base.join("olddir2/keep.log").exists() && !base.join("olddir2/x").exists());
        assert!(base.join("protected.log").exists());
        assert!(base.join(".keep.txt.makuo-abc123").exists());

        // A root whose path is now a symlink to a directory is removed as a link.
        symlink(outside.path(), base.join("root")).unwrap();
        let mut m = manifest(vec![]);
        m.roots = vec![b"root".to_vec()];
        m.options.delete = true;
        let (ins, out) = push(&mut s, &m, &[]);
        assert_eq!(ins.deletions, vec![b"root".to_vec()]);
        assert_eq!(out.deleted, 1);
        assert!(outside.path().join("precious").exists());
    }

    #[test]
    fn abort_and_sweep_temp_leave_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let mut s = storage(base);
        // Bigger than GATHER_FILE: each write goes to a temp file.
        let m = manifest(vec![
            Entry::file(b"a", 100_000, 0o644, 0),
            Entry::file(b"d/e/b", 100_000, 0o644, 0),
        ]);
        s.write(KEY, 0, &m.entries[0], 0, b"aa").unwrap();
        s.write(KEY, 1, &m.entries[1], 2, b"bb").unwrap();
        let other = XferKey { origin: 2, xfer: 1 };
        s.write(other, 0, &m.entries[0], 0, b"zz").unwrap();
        assert_eq!(temps(base).len(), 3);
        s.abort(KEY);
        assert_eq!(temps(base).len(), 1, "another transfer's temp stays");
        assert_eq!(s.staged_count(), 1);
        s.abort(other);
        assert!(temps(base).is_empty());
        assert_eq!(s.staged_count(), 0);
        assert!(!base.join("a").exists() && !base.join("d/e/b").exists());

        // Leftovers of a crash.
        fs::write(base.join(".a.makuo-Abc123"), b"").unwrap();
        fs::write(base.join("d/e/.b.makuo-zzzzzz"), b"").unwrap();
        symlink("nowhere", base.join("d/.l.makuo-000000")).unwrap();
        fs::write(base.join(".a.makuo-notes"), b"").unwrap();
        fs::write(base.join("a.makuo-Abc123"), b"").unwrap();
        assert_eq!(sweep_temp(base).unwrap(), 3);
        assert!(temps(base).is_empty());
        assert!(base.join(".a.makuo-notes").exists() && base.join("a.makuo-Abc123").exists());
    }

    #[test]
    fn many_staged_files_stay_within_the_fd_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let mut s = storage(base);
        let n = MAX_OPEN + 50;
        let entries: Vec<_> = (0..n)
            .map(|i| file(format!("f{i}").as_bytes(), b"ab", 0o644, 0))
            .collect();
        let m = manifest(entries);
        for (i, e) in m.entries.iter().enumerate() {
            s.write(KEY, i as u32, e, 0, b"a").unwrap();
            assert!(s.open_count <= MAX_OPEN);
        }
        // Second halves reopen the files closed on the way.
        for (i, e) in m.entries.iter().enumerate() {
            s.write(KEY, i as u32, e, 1, b"b").unwrap();
        }
        assert!(s.open_count <= MAX_OPEN);
        let out = commit(&mut s, &m, &vec![change::MISSING; n], &[]);
        assert_eq!(out.errors, Vec::<String>::new());
        assert_eq!(out.files as usize, n);
        assert_eq!(fs::read(base.join("f0")).unwrap(), b"ab");
        assert_eq!(s.open_count, 0);
        assert!(temps(base).is_empty());
    }

    #[test]
    fn non_utf8_names_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        fs::write(p(base, b"junk\xff"), b"").unwrap();
        let mut s = storage(base);
        let long = vec![b'\xe9'; 255];
        let mut long_path = b"d\xff/".to_vec();
        long_path.extend_from_slice(&long);
        let mut m = manifest(vec![
            Entry::dir(b"d\xff", 0o755, 0),
            file(b"d\xff/\xfe\xfdname", b"bytes", 0o644, 0),
            file(&long_path, b"long", 0o644, 0),
            Entry::symlink(b"l\x80", b"\x81target", 0),
        ]);
        m.options.delete = true;
        let (ins, out) = push(&mut s, &m, &[b"", b"bytes", b"long", b""]);
        assert_eq!(ins.deletions, vec![b"junk\xff".to_vec()]);
        assert_eq!(out.errors, Vec::<String>::new());
        assert_eq!((out.files, out.deleted), (4, 1));
        assert_eq!(fs::read(p(base, b"d\xff/\xfe\xfdname")).unwrap(), b"bytes");
        assert_eq!(fs::read(p(base, &long_path)).unwrap(), b"long");
        assert_eq!(
            fs::read_link(p(base, b"l\x80"))
                .unwrap()
                .as_os_str()
                .as_bytes(),
            b"\x81target"
        );
        assert_eq!(
            s.inspect(KEY, &m).unwrap(),
            Inspection {
                flags: vec![0; 4],
                deletions: vec![]
            }
        );
        assert!(temp_name(&long).unwrap().len() <= NAME_MAX);
        assert!(is_temp_name(&temp_name(&long).unwrap()));
    }

    #[test]
    fn inspect_flags_for_each_change_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let mut s = storage(base);
        let m1 = manifest(vec![
            file(b"same", b"abc", 0o644, 100),
            file(b"size", b"abc", 0o644, 100),
            file(b"time", b"abc", 0o644, 100),
            file(b"perm", b"abc", 0o644, 100),
            Entry::dir(b"type", 0o755, 100),
            Entry::dir(b"dir", 0o755, 100),
            Entry::dir(b"dirperm", 0o755, 100),
            Entry::symlink(b"link", b"a", 100),
            Entry::symlink(b"linktime", b"a", 100),
        ]);
        let d: &[u8] = b"abc";
        let (_, out) = push(&mut s, &m1, &[d, d, d, d, b"", b"", b"", b"", b""]);
        assert_eq!(out.errors, Vec::<String>::new());
        let mut m2 = m1.clone();
        let e = &mut m2.entries;
        e[1].size = 4;
        e[2].mtime_nsec = 1; // nanoseconds count
        e[3].mode = 0o600;
        e[4] = Entry::file(b"type", 0, 0o644, 100);
        e[5].mtime = 200; // directories never get TIME
        e[6].mode = 0o700;
        e[7].target = b"b".to_vec();
        e[7].mode = 0o644; // symlinks never get PERM
        e[8].mtime = 101;
        e.push(Entry::file(b"missing", 1, 0o644, 0));
        let flags = s.inspect(KEY, &m2).unwrap().flags;
        use change::*;
        assert_eq!(
            flags,
            vec![0, SIZE, TIME, PERM, TYPE, 0, PERM, LINK, TIME, MISSING]
        );

        // And committing them brings the tree to the new manifest.
        let out = commit(
            &mut s,
            &m2,
            &[0, 0, TIME, PERM, TYPE, 0, PERM, LINK, TIME, 0],
            &[],
        );
        assert_eq!(out.errors, Vec::<String>::new());
        assert!(base.join("type").is_file());
        let left = s.inspect(KEY, &m2).unwrap().flags;
        assert_eq!(left, vec![0, SIZE, 0, 0, 0, 0, 0, 0, 0, MISSING]);
    }

    #[test]
    fn checksum_mode_compares_contents() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let mut s = storage(base);
        let m = manifest(vec![file(b"f", b"abc", 0o644, 100)]);
        push(&mut s, &m, &[b"abc"]);
        // Same size and mtime, other contents: only a checksum sees it.
        fs::write(base.join("f"), b"xyz").unwrap();
        set_mtime(&base.join("f"), 100, 0);
        let mut m = m.clone();
        m.options.checksum = true;
        m.entries[0].checksum = Some(md5_of(b"abc"));
        assert_eq!(s.inspect(KEY, &m).unwrap().flags, vec![change::SUM]);
        m.options.checksum = false;
        assert_eq!(s.inspect(KEY, &m).unwrap().flags, vec![0]);
        m.options.checksum = true;
        let (_, out) = push(&mut s, &m, &[b"abc"]);
        assert_eq!(out.bytes, 3);
        assert_eq!(fs::read(base.join("f")).unwrap(), b"abc");

        // Equal sums, other mtime: TIME alone needs no data in checksum mode.
        m.entries[0].mtime = 200;
        let ins = s.inspect(KEY, &m).unwrap();
        assert_eq!(ins.flags, vec![change::TIME]);
        let (_, out) = push(&mut s, &m, &[b""]);
        assert_eq!((out.files, out.bytes), (1, 0));
        assert_eq!(fs::metadata(base.join("f")).unwrap().mtime(), 200);

        m.entries[0].size = 4;
        assert_eq!(
            s.inspect(KEY, &m).unwrap().flags,
            vec![change::SIZE | change::SUM]
        );
    }

    #[test]
    fn many_files_commit_durably_with_batched_sync() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let opts = ApplyOptions {
            durable: true,
            ..Default::default()
        };
        let mut s = FsStorage::new(base.to_path_buf(), opts).unwrap();
        let bodies: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100 + i as usize]).collect();
        let mut entries = vec![Entry::dir(b"d", 0o750, 7)];
        for (i, b) in bodies.iter().enumerate() {
            entries.push(file(
                format!("d/f{i}").as_bytes(),
                b,
                0o640,
                1_000 + i as i64,
            ));
        }
        let m = manifest(entries);
        let parts: Vec<&[u8]> = std::iter::once(&b""[..])
            .chain(bodies.iter().map(|b| b.as_slice()))
            .collect();
        let (_, out) = push(&mut s, &m, &parts);
        assert_eq!(out.errors, Vec::<String>::new());
        assert_eq!(out.files, 21);
        for (i, b) in bodies.iter().enumerate() {
            let p = base.join(format!("d/f{i}"));
            assert_eq!(&fs::read(&p).unwrap(), b);
            let md = fs::metadata(&p).unwrap();
            assert_eq!(md.permissions().mode() & 0o777, 0o640);
            assert_eq!(md.mtime(), 1_000 + i as i64);
        }
        assert_eq!(s.staged_count(), 0);
        assert!(!s.batch_sync, "batch mode ends with the commit");
    }

    #[test]
    fn type_changes_replace_durably() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        fs::create_dir_all(base.join("x/sub")).unwrap();
        fs::write(base.join("x/sub/f"), b"f").unwrap();
        fs::write(base.join("y"), b"y").unwrap();
        let opts = ApplyOptions {
            durable: true,
            ..Default::default()
        };
        let mut s = FsStorage::new(base.to_path_buf(), opts).unwrap();
        let m = manifest(vec![
            file(b"x", b"now a file", 0o644, 0),
            Entry::dir(b"y", 0o755, 0),
            file(b"y/z", b"z", 0o644, 0),
        ]);
        let ins = s.inspect(KEY, &m).unwrap();
        assert_eq!(ins.flags, vec![change::TYPE, change::TYPE, change::MISSING]);
        s.write(KEY, 0, &m.entries[0], 0, b"now a file").unwrap();
        // y/z cannot be staged while y is a file: refused, and reported at commit.
        assert!(s.write(KEY, 2, &m.entries[2], 0, b"z").is_err());
        let out = commit(&mut s, &m, &ins.flags, &[]);
        assert_eq!(out.files, 2, "{:?}", out.errors);
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert!(
            out.errors[0].starts_with("y/z: refused"),
            "{:?}",
            out.errors
        );
        assert_eq!(fs::read(base.join("x")).unwrap(), b"now a file");
        assert!(base.join("y").is_dir());
        // A second push completes it.
        let (_, out) = push(&mut s, &m, &[b"", b"", b"z"]);
        assert_eq!(out.errors, Vec::<String>::new());
        assert_eq!(fs::read(base.join("y/z")).unwrap(), b"z");

        // Without TYPE in the flags a directory in the way is not removed.
        fs::remove_file(base.join("x")).unwrap();
        fs::create_dir(base.join("x")).unwrap();
        s.write(KEY, 0, &m.entries[0], 0, b"now a file").unwrap();
        let out = commit(&mut s, &m, &[change::SIZE, 0, 0], &[]);
        assert_eq!(out.errors.len(), 1);
        assert!(base.join("x").is_dir());
        assert!(temps(base).is_empty());
    }

    #[test]
    fn special_files_are_refused_unless_allowed() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let mut s = storage(base);
        let mut fifo = Entry::dir(b"fifo", 0o644, 0);
        fifo.kind = EntryKind::Fifo;
        let mut dev = fifo.clone();
        dev.path = b"dev".to_vec();
        dev.kind = EntryKind::Device;
        let mut hard = fifo.clone();
        hard.path = b"hard".to_vec();
        hard.kind = EntryKind::HardLink;
        let m = manifest(vec![fifo, dev, hard]);
        let out = commit(&mut s, &m, &[change::MISSING; 3], &[]);
        assert_eq!(out.files, 0);
        assert_eq!(out.errors.len(), 3);
        assert_eq!(s.refused(), 2);
        assert_eq!(fs::read_dir(base).unwrap().count(), 0);

        let opts = ApplyOptions {
            allow_devices: true,
            ..Default::default()
        };
        let mut s = FsStorage::new(base.to_path_buf(), opts).unwrap();
        let out = commit(&mut s, &m, &[change::MISSING, 0, 0], &[]);
        assert_eq!(out.errors, Vec::<String>::new());
        assert_eq!(s.inspect(KEY, &m).unwrap().flags[0], 0);
    }

    #[test]
    fn sender_reads_sources_without_following_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        fs::create_dir(base.join("d")).unwrap();
        fs::write(base.join("d/f"), b"0123456789").unwrap();
        symlink("f", base.join("d/l")).unwrap();
        let mut s = storage(base);
        let e = Entry::file(b"d/f", 10, 0o644, 0);
        let mut buf = [0u8; 4];
        let mut got = Vec::new();
        for off in (0..12).step_by(4) {
            let n = s.read(&e, off, &mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"0123456789");
        assert!(s.reader.is_some());
        let l = Entry::file(b"d/l", 10, 0o644, 0);
        assert!(s.read(&l, 0, &mut buf).is_err());
    }
}
