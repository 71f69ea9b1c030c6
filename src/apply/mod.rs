//! The disk side of a daemon: [`FsStorage`], the real file system behind the engine's
//! [`Storage`] trait, for senders (reading sources) and receivers (staging, committing,
//! deleting).
//!
//! Everything here is confined to one base directory. Every path from the network is checked
//! again with [`check_rel_path`], and its parent is resolved one component at a time from a
//! descriptor of the base with `openat(O_DIRECTORY|O_NOFOLLOW)`: a symlink or a non-directory
//! in a parent position is refused (and counted), never followed. On the receiving side a few
//! directories so resolved stay open for at most `DIR_CACHE_AGE`. Received contents go to a
//! hidden temp file (`.name.makuo-XXXXXX`, mode 0600; small files are gathered in memory
//! first) in the target directory and reach their final name only at commit, by `renameat`,
//! after truncation, attributes and (when durable) fsync: a reader never sees a half-written
//! file. A staged file reopened by name must still be the inode that was created. Attributes are set on the open descriptor
//! or with the `*at(AT_SYMLINK_NOFOLLOW)` calls, never through a symlink. Deletions remove
//! trees without following symlinks and spare filter-protected paths.
//!
//! Owners and setuid/setgid/sticky bits from the network are applied only when the daemon
//! reproduces owners (`--preserve-owner`, as root, for a push that carries them); otherwise
//! those bits are stripped. The base directory's own owner and mode are never changed by a
//! push.
//!
//! FIFOs and sockets are made as nodes under a temp name and renamed into place; device nodes
//! too, but only on a daemon started with `--allow-devices` that runs as root (otherwise each
//! is refused with its reason). A hard link is made to its target's path once that is in
//! place, under a temp name, and checked to be that file. Sparse files get only their data
//! written. Extended attributes and ACLs are set through the descriptor before the rename.
//!
//! This module writes nothing outside the base directory; it touches no socket, and reads the
//! clock only to age its directory cache. Its parts: `stage` (temp files of received files and
//! their identity), `names` (temp names), `gather` (receiving data, small files in memory),
//! `commit` (applying a transfer and its durability), `delete` (deletion lists and removal),
//! `inspect` (change flags), `dirs` (confined directory resolution and its cache),
//! `special` (device nodes, FIFOs, sockets, hard links), `xattrs` (extended attributes and
//! ACLs), `sweep` (leftovers at start) and `sys` (the `*at` system calls); this file holds [`FsStorage`]
//! itself and its [`Storage`] implementation.

mod attrs;
mod commit;
mod delete;
mod dirs;
mod gather;
mod hooked;
mod inspect;
mod journal;
mod names;
mod offload;
pub mod order;
mod protect;
mod release;
pub(crate) mod source;
mod special;
mod stage;
mod sweep;
mod sys;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_durable;
#[cfg(test)]
mod tests_journal;
#[cfg(test)]
mod tests_kinds;
#[cfg(test)]
mod tests_writer;
mod walk;
mod writer;
mod xattrs;

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::filter::Filter;
use crate::proto::manifest::{check_rel_path, Entry, EntryKind, Manifest};
use crate::proto::restore::{restore_inline, Restore};
use crate::proto::storage::{CommitOutcome, CommitRequest, Inspection, Storage, XferKey};

use attrs::finish_attrs;
use dirs::{open_dir, DirCache, DirFd};
use stage::Staged;
use sys::{euid, open_at, open_dir_path, DIR_WALK, READ_NOFOLLOW};

pub use journal::{open_journal_dir, recover_journal, Recovery, Unfinished};
pub use offload::Wake;
pub use protect::Protection;
pub(crate) use release::drop_owned;
pub use release::sweep_releases;
pub use sweep::sweep_temp;
pub use writer::WriteStats;

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
    /// Create block and character device nodes from a push (effective only as root).
    /// FIFOs and sockets are always created.
    pub allow_devices: bool,
    /// Paths no push may write or delete here (daemon `--protect`).
    pub protect: Option<Arc<Protection>>,
    /// A push that would delete more paths here is refused (daemon `--max-delete`).
    pub max_delete: Option<u64>,
    /// Hooks around the commit (daemon `--before-commit`, `--after-push`).
    pub hooks: Option<Arc<crate::hook::HookConfig>>,
    /// The directory of `--atomic` commit journals (`journal/` in the state directory),
    /// opened before any chroot (`journal.rs`).
    pub journal: Option<Arc<std::os::fd::OwnedFd>>,
    /// The paths recent pushes wrote or deleted here, and by which push (`order.rs`),
    /// shared with the commit worker.
    pub order: Arc<std::sync::Mutex<order::Recent>>,
}

/// Durability calls made by a storage since it was opened.
#[derive(Debug, Default)]
pub struct SyncCalls {
    fsync: std::cell::Cell<u64>,
    syncfs: std::cell::Cell<u64>,
}

impl SyncCalls {
    /// fsync(2) calls (files and directories).
    pub fn fsync(&self) -> u64 {
        self.fsync.get()
    }

    /// syncfs(2) calls.
    pub fn syncfs(&self) -> u64 {
        self.syncfs.get()
    }
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

/// Whether an error is a refusal for safety (a symlinked or non-directory parent, a bad
/// path, a special file where a regular one was expected is not one).
pub(crate) fn is_refused(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<Refused>())
}

/// Predicate telling whether a path (relative, and whether it is a directory) is protected
/// from deletion by the push's filter rules.
type Protect<'a> = &'a dyn Fn(&[u8], bool) -> bool;

/// The real file system behind the engine, confined to one base directory.
#[derive(Debug)]
pub struct FsStorage {
    base: PathBuf,
    base_fd: DirFd,
    opts: ApplyOptions,
    is_root: bool,
    staged: HashMap<(XferKey, u32), Staged>,
    /// Staged entries in the order their files were opened (may hold stale keys).
    open_order: VecDeque<(XferKey, u32)>,
    open_count: usize,
    /// Most staged files kept open at once.
    max_open: usize,
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
    /// Commits held for hooks, and hooks to start.
    hooks: hooked::HookState,
    /// Directories the last `open_parent` created.
    last_made: Vec<Vec<u8>>,
    /// fsync and syncfs calls made (durability, counted for tests and `status`).
    sync_calls: SyncCalls,
    /// Directories each transfer's staging created (removed again, when empty, if it does
    /// not commit: a push that is not committed leaves the tree as it was).
    made_by: HashMap<XferKey, Vec<Vec<u8>>>,
    /// Each inbound transfer's filter rules, compiled once (at inspection, or at commit when
    /// there was none) and dropped when the transfer ends; an error when they cannot be
    /// compiled (then nothing is deleted). Their size was counted by the engine when it
    /// sized the manifest (`limits::RULE_MEMORY` per rule).
    filters: HashMap<XferKey, Arc<Result<Filter, String>>>,
    /// Transfers whose filter rules cost more than [`Metered`] allows at inspection (the
    /// commit reports it).
    filter_overrun: HashSet<XferKey>,
    /// Atomic pushes ready or committing here, and their journals.
    journals: journal::Journals,
    /// The commit worker, when commits run off the caller's thread (`offload.rs`).
    offload: Option<Box<offload::Offload>>,
    /// Commits finished without the worker and not collected yet (`offload.rs`).
    finished: Vec<(XferKey, CommitOutcome)>,
    /// The write pool, when received payload is written off the caller's thread
    /// (`writer.rs`).
    writer: Option<Box<writer::WritePool>>,
}

impl FsStorage {
    /// Opens the base directory (which must exist) for a daemon.
    pub fn new(base: PathBuf, opts: ApplyOptions) -> io::Result<Self> {
        // The base itself may be reached through a symlink: the operator chose it.
        let base_fd = Arc::new(open_dir_path(&base, DIR_WALK)?);
        Ok(Self::with_base_fd(base, base_fd, opts))
    }

    /// A storage on an open base directory.
    fn with_base_fd(base: PathBuf, base_fd: DirFd, opts: ApplyOptions) -> Self {
        Self {
            base,
            base_fd,
            opts,
            is_root: euid() == 0,
            staged: HashMap::new(),
            batch_sync: false,
            dirs: DirCache::default(),
            pending: HashMap::new(),
            pending_bytes: 0,
            last_commit: Duration::ZERO,
            hooks: hooked::HookState::default(),
            last_made: Vec::new(),
            sync_calls: SyncCalls::default(),
            made_by: HashMap::new(),
            open_order: VecDeque::new(),
            open_count: 0,
            max_open: stage::open_budget(),
            refusals: HashMap::new(),
            made_dirs: Vec::new(),
            reader: None,
            refused: 0,
            filters: HashMap::new(),
            filter_overrun: HashSet::new(),
            journals: journal::Journals::default(),
            offload: None,
            finished: Vec::new(),
            writer: None,
        }
    }

    /// The compiled filter of transfer `key`, compiling it from `m` the first time.
    fn filter_of(&mut self, key: XferKey, m: &Manifest) -> Arc<Result<Filter, String>> {
        self.filters
            .entry(key)
            .or_insert_with(|| Arc::new(Filter::for_manifest(m).map_err(|e| format!("{e:#}"))))
            .clone()
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

    /// The fsync and syncfs calls made so far.
    pub fn sync_calls(&self) -> &SyncCalls {
        &self.sync_calls
    }

    /// Staged files that currently exist (0 when no transfer is in flight).
    pub fn staged_count(&self) -> usize {
        self.staged.len() + self.pending.len()
    }

    fn base_dir(&self) -> BorrowedFd<'_> {
        self.base_fd.as_fd()
    }

    /// Whether owners (and set-id bits) are reproduced for this push.
    fn owners(&self, m: &Manifest) -> bool {
        self.is_root && self.opts.preserve_owner && m.options.owners
    }

    /// The permission bits this receiver gives an entry: setuid, setgid and sticky bits only
    /// when owners are reproduced (they mean something only together with the owner).
    fn want_mode(&self, e: &Entry, owners: bool) -> u32 {
        let mode = e.mode & 0o7777;
        if owners {
            mode
        } else {
            mode & !0o7000
        }
    }

    /// Opens directory `rel` for a path that arrived from the network, counting refusals.
    fn open_parent(&mut self, rel: &[u8], create: bool) -> io::Result<DirFd> {
        let base = &self.base_fd;
        let mut made = Vec::new();
        let r = self.dirs.get(base, rel, create.then_some(&mut made));
        if self.opts.durable {
            // Their parents are fsynced at the commit.
            self.made_dirs
                .extend(made.iter().map(|d| split(d).0.to_vec()));
        }
        self.last_made = made;
        if let Err(e) = &r {
            if is_refused(e) {
                self.refused += 1;
            }
        }
        r
    }

    /// Opens a source file for reading (sender side), never following a symlink.
    fn open_source(&mut self, e: &Entry) -> io::Result<File> {
        let (dir, name) = checked_split(&e.path, EntryKind::File).inspect_err(|_| {
            self.refused += 1;
        })?;
        // Resolved afresh for every file, not through the cache: a deploy may have swapped a
        // directory since the last push, and contents must come from the tree just walked.
        let dfd = open_dir(self.base_dir(), dir, None).inspect_err(|e| {
            if is_refused(e) {
                self.refused += 1;
            }
        })?;
        let f = File::from(open_at(dfd.as_fd(), name, READ_NOFOLLOW, 0)?);
        if !f.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        Ok(f)
    }

    /// Re-reads who we run as (after the daemon dropped privileges with `-u`): owners and
    /// set-id bits are only reproduced while running as root.
    pub fn refresh_identity(&mut self) {
        self.is_root = euid() == 0;
    }
}

/// Whether `len` received bytes at `offset` of `entry`'s payload may be written: only into a
/// regular file, and within its payload (for `write` and for a decode handed to the pool).
fn check_write(entry: &Entry, offset: u64, len: usize) -> io::Result<()> {
    if entry.kind != EntryKind::File {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "data for an entry that is not a regular file",
        ));
    }
    if offset
        .checked_add(len as u64)
        .is_none_or(|end| end > entry.payload_len())
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "write beyond the entry's size",
        ));
    }
    Ok(())
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
        // The offset is in the entry's payload: for a sparse file, in its data extents.
        let mut n = 0;
        for (at, len) in entry.file_ranges(offset, buf.len() as u64) {
            let end = n + len as usize;
            let mut got = 0;
            while n + got < end {
                match f.read_at(&mut buf[n + got..end], at + got as u64) {
                    Ok(0) => return Ok(n + got),
                    Ok(k) => got += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            n = end;
        }
        Ok(n)
    }

    fn inspect(&mut self, key: XferKey, manifest: &Manifest) -> Option<Inspection> {
        // A release push: its directory is made and seeded first (`release.rs`).
        if let Err(why) = self.release_seed(key, manifest) {
            return Some(Inspection {
                refused: Some(why),
                ..Inspection::default()
            });
        }
        let own = self.opts.protect.clone();
        let own = own.as_deref();
        let base = self.base_fd.clone();
        let plain = manifest.release().is_none();
        // Patterns match paths as the sender named them; makuo's own paths are never
        // deleted by a push that is not a release push.
        let mine = |p: &[u8], d: bool| {
            own.is_some_and(|g| g.protects(manifest.sender_path(p), d))
                || (plain && release::makuo_owned(base.as_fd(), p, d))
        };
        let filter = self.filter_of(key, manifest);
        let mut insp = match &*filter {
            Ok(filter) => {
                let meter = Metered::new(filter, FILTER_TIME_FREE, FILTER_TIME_RATIO);
                let i = self.inspect_with(manifest, &|p, d| {
                    mine(p, d) || meter.protected(manifest.sender_path(p), d)
                });
                if meter.overrun() {
                    self.filter_overrun.insert(key);
                }
                i
            }
            // Rules we cannot read protect everything: nothing is deleted.
            Err(_) => self.inspect_with(manifest, &|_, _| true),
        };
        protect::guard(manifest, &mut insp, own, self.opts.max_delete);
        release::guard_owned(self.base_dir(), manifest, &mut insp);
        Some(insp)
    }

    fn write(
        &mut self,
        key: XferKey,
        idx: u32,
        entry: &Entry,
        offset: u64,
        data: &[u8],
    ) -> io::Result<()> {
        check_write(entry, offset, data.len())?;
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
        if let Some(w) = self.writer.as_mut() {
            // Its last writes may still be queued: the commit sets the attributes then.
            w.forget_target((key, idx));
            if w.in_flight((key, idx)) > 0 {
                return Ok(());
            }
        }
        // Attributes now, while the network is what the transfer waits for; the commit is
        // then one rename per file. Only while the file stays ours alone: it may still be
        // read back to decode parity for other files, so it is not handed to another owner
        // and gets no group/other write permission before the commit (which adds those
        // bits just before the rename), and it must stay readable and writable by its
        // owner without privileges. Otherwise, and on any failure, the commit does it all.
        let owners = self.owners(m);
        let mode = self.want_mode(e, owners);
        if (owners && e.uid != euid()) || mode & 0o600 != 0o600 {
            return Ok(());
        }
        let early = mode & !0o022;
        let Ok(file) = self.staged_file(key, idx, e, false) else {
            return Ok(());
        };
        // A sparse file ends in a hole as often as not: its size is set, not written.
        if e.extents().is_some() && file.set_len(e.size).is_err() {
            return Ok(());
        }
        // Extended attributes and ACLs wait for the commit too: an ACL may grant others
        // write access.
        if finish_attrs(file, e, owners, early).is_err() {
            return Ok(());
        }
        if let Some(s) = self.staged.get_mut(&(key, idx)) {
            s.ready = true;
            s.final_mode = (early != mode).then_some(mode);
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
        let short = || io::Error::new(io::ErrorKind::UnexpectedEof, "short staged");
        let pieces = entry.file_ranges(offset, buf.len() as u64);
        if pieces.iter().map(|&(_, n)| n).sum::<u64>() != buf.len() as u64 {
            return Err(short());
        }
        let mut to = 0;
        if let Some(b) = self.pending.get(&(key, idx)) {
            for (at, len) in pieces {
                let src = usize::try_from(at)
                    .ok()
                    .and_then(|o| b.get(o..o.checked_add(len as usize)?))
                    .ok_or_else(short)?;
                buf[to..to + src.len()].copy_from_slice(src);
                to += src.len();
            }
            return Ok(());
        }
        if let Some(w) = self.writer.as_mut() {
            w.wait_file((key, idx));
        }
        let f = self.staged_checked(key, idx, entry)?;
        writer::read_pieces(f, &pieces, buf)
    }

    fn restore(&mut self, key: XferKey, m: &Manifest, job: Restore) -> io::Result<()> {
        // On the write pool when it can take it, so the network thread does not wait for
        // the read-back and the decode; otherwise here.
        match self.pool_restore(key, m, job) {
            Ok(()) => Ok(()),
            Err(job) => restore_inline(self, key, m, job),
        }
    }

    fn commit(&mut self, key: XferKey, req: &CommitRequest<'_>) -> Option<CommitOutcome> {
        self.commit_hooked(key, req)
    }

    fn prepare(&mut self, key: XferKey, req: &CommitRequest<'_>) -> Option<Result<(), String>> {
        if let Err(why) = self.release_ready(req.manifest) {
            return Some(Err(why));
        }
        self.prepare_hooked(key, req)
    }

    fn resolve(
        &mut self,
        key: XferKey,
        commit: bool,
    ) -> Option<(CommitOutcome, [u8; 16], Option<u64>)> {
        self.resolve_doubt(key, commit)
    }

    fn abort(&mut self, key: XferKey) {
        if let Some(w) = self.writer.as_mut() {
            w.cancel(key);
        }
        self.release_abort(key);
        self.journal_done(key);
        self.forget_hooks(key);
        self.drop_staged(key);
        self.unmake_dirs(key);
        self.filters.remove(&key);
        self.filter_overrun.remove(&key);
    }
}

impl FsStorage {
    /// Applies a transfer now.
    fn commit_now(&mut self, key: XferKey, req: &CommitRequest<'_>) -> CommitOutcome {
        self.made_by.remove(&key);
        // A push may ask members to skip the durability step (`sync --no-fsync`).
        let started = Instant::now();
        let durable = self.opts.durable;
        self.opts.durable = durable && !req.manifest.options.no_fsync;
        // An atomic push: the go is journaled before the first rename (a crash from here on
        // is finished at restart), and the journal goes once the commit is done.
        let out = match self.journal_go(key, req.skip) {
            Ok(()) => {
                let mut out = self.commit_ordered(key, req);
                // A release push or rollback: the link flips once the release is in place.
                self.release_finish(key, req, &mut out);
                out
            }
            Err(e) => {
                self.drop_staged(key);
                CommitOutcome {
                    errors: vec![format!(
                        "cannot write the commit journal: {e}; nothing committed"
                    )],
                    ..Default::default()
                }
            }
        };
        self.journal_done(key);
        self.opts.durable = durable;
        self.last_commit = started.elapsed();
        out
    }

    /// Commits in the cluster-wide order of overlapping pushes (`order.rs`): what a newer
    /// push already wrote or deleted here is left as it is; what this one writes or deletes
    /// is noted under its id.
    fn commit_ordered(&mut self, key: XferKey, req: &CommitRequest<'_>) -> CommitOutcome {
        let Some(start) = req.manifest.started_ms else {
            return self.commit_durable(key, req);
        };
        let id = (start, key.origin);
        let recent = self.opts.order.clone();
        let (flags, deletions, superseded) = {
            let r = recent.lock().unwrap_or_else(|e| e.into_inner());
            let mut n = 0usize;
            let flags: Vec<_> = req
                .flags
                .iter()
                .zip(&req.manifest.entries)
                .map(|(&f, e)| {
                    if f != 0 && r.superseded(&e.path, id) {
                        n += 1;
                        0
                    } else {
                        f
                    }
                })
                .collect();
            let deletions: Vec<Vec<u8>> = req
                .deletions
                .iter()
                .filter(|d| {
                    let newer = r.superseded(d, id);
                    n += usize::from(newer);
                    !newer
                })
                .cloned()
                .collect();
            (flags, deletions, n)
        };
        if superseded > 0 {
            crate::logging::log(
                1,
                format_args!(
                    "push {:016x}/{:x}: {superseded} paths left as a newer push made them",
                    key.origin, key.xfer
                ),
            );
        }
        let ordered = CommitRequest {
            manifest: req.manifest,
            flags: &flags,
            deletions: &deletions,
            skip: req.skip,
        };
        let out = self.commit_durable(key, &ordered);
        let mut r = recent.lock().unwrap_or_else(|e| e.into_inner());
        r.expire(journal::unix_now().saturating_mul(1000));
        for p in &out.written {
            r.note(p, id, false);
        }
        for p in &out.removed {
            r.note(p, id, true);
        }
        out
    }

    /// Notes the directories the last `open_parent` created for transfer `key`'s staging.
    fn note_made(&mut self, key: XferKey) {
        if !self.last_made.is_empty() {
            let made = std::mem::take(&mut self.last_made);
            self.made_by.entry(key).or_default().extend(made);
        }
    }

    /// Removes the (still empty) directories transfer `key`'s staging created: it is not
    /// committed.
    fn unmake_dirs(&mut self, key: XferKey) {
        let Some(mut made) = self.made_by.remove(&key) else {
            return;
        };
        made.sort_unstable_by(|a, b| b.cmp(a));
        self.dirs.clear();
        for d in made {
            let (dir, name) = split(&d);
            if let Ok(dfd) = dirs::open_dir(self.base_dir(), dir, None) {
                let _ = sys::rmdir_at(dfd.as_fd(), name);
            }
        }
    }

    /// Sets the hooks (the daemon knows their paths only once it chrooted).
    pub fn set_hooks(&mut self, hooks: Option<Arc<crate::hook::HookConfig>>) {
        self.opts.hooks = hooks;
    }

    fn commit_durable(&mut self, key: XferKey, req: &CommitRequest<'_>) -> CommitOutcome {
        let own = self.opts.protect.clone();
        let m = req.manifest;
        let base = self.base_fd.clone();
        let plain = m.release().is_none();
        let mine = |p: &[u8], d: bool| {
            own.as_ref()
                .is_some_and(|g| g.protects(m.sender_path(p), d))
                || (plain && release::makuo_owned(base.as_fd(), p, d))
        };
        let filter = self.filter_of(key, req.manifest);
        let out = match &*filter {
            Ok(filter) => {
                let meter = Metered::new(filter, FILTER_TIME_FREE, FILTER_TIME_RATIO);
                let mut out = self.commit_with(key, req, &|p, d| {
                    mine(p, d) || meter.protected(m.sender_path(p), d)
                });
                if meter.overrun() {
                    self.filter_overrun.insert(key);
                }
                out.errors.extend(
                    self.filter_overrun
                        .contains(&key)
                        .then(|| FILTER_OVERRUN.to_string()),
                );
                out
            }
            Err(e) => {
                let mut out = self.commit_with(key, req, &|_, _| true);
                out.errors
                    .push(format!("filter rules: {e}; nothing deleted"));
                out
            }
        };
        self.filters.remove(&key);
        self.filter_overrun.remove(&key);
        out
    }
}

/// Time evaluating a push's filter rules may take in one inspection or commit before
/// [`FILTER_TIME_RATIO`] applies.
pub(crate) const FILTER_TIME_FREE: Duration = Duration::from_secs(1);
/// Beyond [`FILTER_TIME_FREE`], evaluating the filter rules may take at most this many times
/// as long as the rest of the inspection or commit (reading the tree, applying): rules
/// written to be slow (each within its compiled-size allowance, but many of them) can make
/// a scan at most this much slower; past it every remaining path is protected (nothing
/// more is deleted) and the commit says so. Measured, ordinary rules (tens of them) cost
/// well under the time of the `lstat` they come with.
pub(crate) const FILTER_TIME_RATIO: u32 = 8;

const FILTER_OVERRUN: &str =
    "filter rules too slow to evaluate on this member: the rest of the tree was protected (not deleted)";

/// A filter whose evaluation is metered (see [`FILTER_TIME_RATIO`]): once it has cost more
/// than allowed, every path is protected.
pub(crate) struct Metered<'a> {
    filter: &'a Filter,
    started: Instant,
    spent: Cell<Duration>,
    over: Cell<bool>,
    free: Duration,
    ratio: u32,
}

impl<'a> Metered<'a> {
    pub(crate) fn new(filter: &'a Filter, free: Duration, ratio: u32) -> Self {
        Self {
            filter,
            started: Instant::now(),
            spent: Cell::new(Duration::ZERO),
            over: Cell::new(false),
            free,
            ratio,
        }
    }

    /// Whether `rel` is protected from deletion (everything is, once over budget).
    pub(crate) fn protected(&self, rel: &[u8], is_dir: bool) -> bool {
        if self.over.get() || self.filter.is_empty() {
            return self.over.get();
        }
        let t = Instant::now();
        let r = self.filter.protected(rel, is_dir);
        let now = Instant::now();
        let spent = self.spent.get() + now.saturating_duration_since(t);
        self.spent.set(spent);
        let rest = now
            .saturating_duration_since(self.started)
            .saturating_sub(spent);
        if spent > self.free + rest * self.ratio {
            self.over.set(true);
        }
        r
    }

    /// Whether the budget ran out.
    pub(crate) fn overrun(&self) -> bool {
        self.over.get()
    }
}

/// Checks a path from the network and splits it into parent and last component. `.` (the
/// base itself) is only valid for a directory. A makuo temp name (`.NAME.makuo-XXXXXX`) is
/// never a component: such names are staging's, swept at start and never deleted, so a
/// pushed one would be mistaken for a leftover.
fn checked_split(path: &[u8], kind: EntryKind) -> io::Result<(&[u8], &[u8])> {
    check_rel_path(path).map_err(|e| refused(e.to_string()))?;
    if path == b"." && kind != EntryKind::Dir {
        return Err(refused("the base directory itself is not a file".into()));
    }
    if path.split(|&b| b == b'/').any(names::is_temp_name) {
        return Err(refused(
            "a name of the form .NAME.makuo-XXXXXX is makuo's own".into(),
        ));
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
