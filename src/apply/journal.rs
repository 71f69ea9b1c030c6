//! The `--atomic` commit journal, kept in the state directory (`journal/`), never in BASE:
//! what lets a member that crashed after it answered READY roll back, and one that crashed
//! during the commit finish it, on restart, so it never stays half-committed.
//!
//! When an atomic push is ready here (`Storage::prepare`, after `--before-commit`), its
//! staged files are made durable (one `syncfs`, on a durable daemon) and the journal
//! `ORIGIN-XFER` is written whole (temp file, fsync, rename, fsync of the directory): the
//! manifest, the change flags, the deletions, every staged file (its temp name and identity)
//! and the directories staging made. When the go arrives, `ORIGIN-XFER.go` is written the
//! same way before the first rename; after the commit both are removed (and the directory
//! fsynced). On restart, before the sweep of temp files ([`recover_journal`]):
//! - a journal without `.go` (crashed between READY and the go, or before the go arrived):
//!   **in doubt** (the member cannot know whether the others got the go): its staged files
//!   stay (the sweep spares them), `status` shows it `in-doubt`, and the engine asks the
//!   cluster how the push ended (`proto/outcome.rs`); [`FsStorage::resolve`] then finishes
//!   it (the go was given: as below) or **rolls it back** (not committed, or nobody answered
//!   in time): its staged files and the directories staging made are removed;
//! - a journal with `.go` (crashed in the commit): **finished** with the same commit code:
//!   staged files still under their temp name (checked to be the same inode, owner and
//!   birth time) are installed, entries whose temp name is gone and whose final name is that
//!   inode are counted done, deletions are redone (a path already gone is no error),
//!   directory attributes set.
//!
//! Journals are read as the daemon wrote them: never through a symlink, regular files only,
//! at most [`MAX_JOURNAL`] bytes, parsed with bounds checks (a malformed one is logged and
//! removed, and its push's temp files go with the sweep).

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{self as rfs, Mode, OFlags};

use super::dirs::open_dir;
use super::stage::{Staged, StagedId};
use super::sys::{lstat_at, rmdir_at, unlink_at};
use super::{split, ApplyOptions, FsStorage};
use crate::proto::manifest::change::Flags;
use crate::proto::manifest::{EntryKind, Manifest};
use crate::proto::storage::{show, CommitOutcome, CommitRequest, XferKey};

const MAGIC: &[u8; 8] = b"MAKUOJ1\n";
/// Largest journal read back (a 64 MiB manifest decodes to at most 128 MiB of paths; the
/// journal holds the encoded manifest and one line per staged file).
pub const MAX_JOURNAL: u64 = 512 << 20;

/// An atomic push that is ready here or committing, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfinished {
    /// The push.
    pub key: XferKey,
    /// `ready` (waiting for the go) or `committing`.
    pub state: &'static str,
    /// Unix seconds when it became ready.
    pub since: u64,
    /// Whether a journal in the state directory covers it (a crash is recovered from).
    pub journaled: bool,
}

/// The atomic pushes that are ready or committing on this member.
#[derive(Debug, Default)]
pub(super) struct Journals {
    pub(super) open: HashMap<XferKey, Unfinished>,
    /// The paths each atomic push between PREPARE and its end changes here: a second
    /// atomic push over any of them is refused meanwhile (serialized).
    claims: HashMap<XferKey, BTreeSet<Vec<u8>>>,
}

/// Whether `p` is in `set`, or one of its ancestors or descendants is.
fn overlaps(set: &BTreeSet<Vec<u8>>, p: &[u8]) -> bool {
    if set.contains(p) {
        return true;
    }
    // Ancestors.
    let mut end = p.len();
    while let Some(i) = p[..end].iter().rposition(|&b| b == b'/') {
        if set.contains(&p[..i]) {
            return true;
        }
        end = i;
    }
    // Descendants: `p/...` sorts between `p/` and `p0` ('0' follows '/').
    let mut lo = p.to_vec();
    lo.push(b'/');
    let mut hi = p.to_vec();
    hi.push(b'0');
    p == b"." || set.range(lo..hi).next().is_some()
}

impl Journals {
    /// Claims `paths` for atomic push `key`, unless another atomic push holds any of them
    /// (or an ancestor or descendant): then the other's key.
    pub(super) fn claim(&mut self, key: XferKey, paths: Vec<Vec<u8>>) -> Result<(), XferKey> {
        for (k, set) in &self.claims {
            if *k != key && paths.iter().any(|p| overlaps(set, p)) {
                return Err(*k);
            }
        }
        self.claims.insert(key, paths.into_iter().collect());
        Ok(())
    }
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn name_of(key: XferKey) -> String {
    format!("{:016x}-{:08x}", key.origin, key.xfer)
}

fn key_of(name: &str) -> Option<XferKey> {
    let (o, x) = name.split_once('-')?;
    if o.len() != 16 || x.len() != 8 {
        return None;
    }
    Some(XferKey {
        origin: u64::from_str_radix(o, 16).ok()?,
        xfer: u32::from_str_radix(x, 16).ok()?,
    })
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("journal: {what}"))
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}

fn put_bytes(b: &mut Vec<u8>, v: &[u8]) {
    put_u32(b, v.len() as u32);
    b.extend_from_slice(v);
}

/// Reads a journal's fields with bounds checks.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(bad("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A count of items of at least `min` bytes each (bounded by what is left).
    fn count(&mut self, min: usize) -> io::Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.0.len() {
            return Err(bad("count beyond the file"));
        }
        Ok(n)
    }
}

/// What [`recover_journal`] did at start.
#[derive(Debug, Default)]
pub struct Recovery {
    /// One line per push finished or dropped, for the log.
    pub lines: Vec<String>,
    /// Pushes held in doubt (journaled ready, no go recorded), with the Unix second they
    /// became ready: the daemon asks the cluster how they ended.
    pub in_doubt: Vec<(XferKey, u64)>,
    /// The temp names of their staged files, which the start-up sweep must spare.
    pub keep: std::collections::HashSet<Vec<u8>>,
}

/// A journal read back.
struct Record {
    since: u64,
    manifest: Manifest,
    flags: Vec<Flags>,
    deletions: Vec<Vec<u8>>,
    skip: Vec<u32>,
    /// Entry index, directory, temp name, identity.
    staged: Vec<(u32, Vec<u8>, Vec<u8>, StagedId)>,
    made: Vec<Vec<u8>>,
}

impl Record {
    fn parse(buf: &[u8]) -> io::Result<Self> {
        let mut c = Cursor(buf);
        if c.take(MAGIC.len())? != MAGIC {
            return Err(bad("not a makuo journal"));
        }
        let since = c.u64()?;
        let manifest = Manifest::decode(c.bytes()?).map_err(|e| bad(&format!("manifest: {e}")))?;
        let n = c.count(2)?;
        let mut flags = Vec::with_capacity(n);
        for _ in 0..n {
            flags.push(u16::from_be_bytes(c.take(2)?.try_into().unwrap()));
        }
        if flags.len() != manifest.entries.len() {
            return Err(bad("flags do not match the manifest"));
        }
        let n = c.count(4)?;
        let mut deletions = Vec::with_capacity(n);
        for _ in 0..n {
            deletions.push(c.bytes()?.to_vec());
        }
        let n = c.count(4)?;
        let mut skip = Vec::with_capacity(n);
        for _ in 0..n {
            skip.push(c.u32()?);
        }
        let n = c.count(12)?;
        let mut staged = Vec::with_capacity(n);
        for _ in 0..n {
            let idx = c.u32()?;
            if idx as usize >= manifest.entries.len() {
                return Err(bad("staged entry beyond the manifest"));
            }
            let dir = c.bytes()?.to_vec();
            let tmp = c.bytes()?.to_vec();
            let id = StagedId::from_bytes(c.take(StagedId::LEN)?);
            staged.push((idx, dir, tmp, id));
        }
        let n = c.count(4)?;
        let mut made = Vec::with_capacity(n);
        for _ in 0..n {
            made.push(c.bytes()?.to_vec());
        }
        Ok(Self {
            since,
            manifest,
            flags,
            deletions,
            skip,
            staged,
            made,
        })
    }
}

/// Writes `name` in directory `dir` whole and durably: temp file, fsync, rename, fsync of
/// the directory.
fn write_whole(dir: BorrowedFd<'_>, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = format!("{name}.tmp");
    let flags =
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, tmp.as_str(), flags, Mode::from_raw_mode(0o600))?;
    let mut f = File::from(fd);
    f.write_all(data)?;
    f.sync_all()?;
    rfs::renameat(dir, tmp.as_str(), dir, name)?;
    rfs::fsync(dir)?;
    Ok(())
}

/// Reads journal file `name` as the daemon wrote it (see the module doc); `None` if absent.
fn read_whole(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<Vec<u8>>> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rfs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let st = rfs::fstat(&fd)?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
        return Err(bad("not a regular file"));
    }
    let mut buf = Vec::new();
    File::from(fd).take(MAX_JOURNAL + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_JOURNAL {
        return Err(bad("too large"));
    }
    Ok(Some(buf))
}

/// Test hook: with `MAKUO_TEST_PAUSE_BEFORE_GO=FILE` in its environment, a member that gets
/// the go of a journaled atomic push creates FILE and stops for a minute before it records
/// the go, so a test can kill it within the push's last round trip (`tests/deploy.rs`).
fn pause_before_go() {
    if let Some(p) = std::env::var_os("MAKUO_TEST_PAUSE_BEFORE_GO") {
        let _ = std::fs::write(p, b"");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

fn remove(dir: BorrowedFd<'_>, name: &str) {
    let _ = rfs::unlinkat(dir, name, rfs::AtFlags::empty());
}

impl FsStorage {
    /// `--atomic` PREPARE after any `--before-commit`: gathered files go to disk, staged data
    /// is made durable and the journal written; then the push is ready here.
    pub(super) fn get_ready(
        &mut self,
        key: XferKey,
        req: &CommitRequest<'_>,
    ) -> Result<(), String> {
        let mut gathered: Vec<u32> = self
            .pending
            .keys()
            .filter(|(k, _)| *k == key)
            .map(|&(_, i)| i)
            .collect();
        gathered.sort_unstable();
        for i in gathered {
            if let Some(e) = req.manifest.entries.get(i as usize) {
                self.flush_pending(key, i, e)
                    .map_err(|err| format!("{}: {err}", show(&e.path)))?;
            }
        }
        let journaled = self.opts.journal.is_some();
        if journaled {
            if self.opts.durable && !req.manifest.options.no_fsync {
                self.syncfs().map_err(|e| format!("syncfs: {e}"))?;
            }
            self.write_journal(key, req)
                .map_err(|e| format!("cannot write the commit journal: {e}"))?;
        }
        self.journals.open.insert(
            key,
            Unfinished {
                key,
                state: "ready",
                since: unix_now(),
                journaled,
            },
        );
        Ok(())
    }

    fn write_journal(&mut self, key: XferKey, req: &CommitRequest<'_>) -> io::Result<()> {
        let Some(dir) = self.opts.journal.clone() else {
            return Ok(());
        };
        let mut b = Vec::with_capacity(4096);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&unix_now().to_be_bytes());
        put_bytes(&mut b, &req.manifest.encode());
        put_u32(&mut b, req.flags.len() as u32);
        for f in req.flags {
            b.extend_from_slice(&f.to_be_bytes());
        }
        put_u32(&mut b, req.deletions.len() as u32);
        for d in req.deletions {
            put_bytes(&mut b, d);
        }
        put_u32(&mut b, req.skip.len() as u32);
        for s in req.skip {
            put_u32(&mut b, *s);
        }
        let mut staged: Vec<_> = self.staged.iter().filter(|((k, _), _)| *k == key).collect();
        staged.sort_unstable_by_key(|((_, i), _)| *i);
        put_u32(&mut b, staged.len() as u32);
        for ((_, i), s) in staged {
            put_u32(&mut b, *i);
            put_bytes(&mut b, &s.dir);
            put_bytes(&mut b, &s.tmp);
            s.id.put_bytes(&mut b);
        }
        let made = self.made_by.get(&key).cloned().unwrap_or_default();
        put_u32(&mut b, made.len() as u32);
        for d in &made {
            put_bytes(&mut b, d);
        }
        write_whole(dir.as_fd(), &name_of(key), &b)
    }

    /// Whether transfer `key` was prepared here (`--before-commit` already ran for it).
    pub(super) fn is_prepared(&self, key: XferKey) -> bool {
        self.journals.open.contains_key(&key)
    }

    /// The go arrived for a prepared push: noted in the journal before the first rename.
    pub(super) fn journal_go(&mut self, key: XferKey, skip: &[u32]) -> io::Result<()> {
        let Some(u) = self.journals.open.get_mut(&key) else {
            return Ok(());
        };
        u.state = "committing";
        if !u.journaled {
            return Ok(());
        }
        pause_before_go();
        let Some(dir) = self.opts.journal.clone() else {
            return Ok(());
        };
        let mut b = MAGIC.to_vec();
        put_u32(&mut b, skip.len() as u32);
        for s in skip {
            put_u32(&mut b, *s);
        }
        write_whole(dir.as_fd(), &format!("{}.go", name_of(key)), &b)
    }

    /// The push is committed or dropped: its journal goes.
    pub(super) fn journal_done(&mut self, key: XferKey) {
        self.journals.claims.remove(&key);
        let Some(u) = self.journals.open.remove(&key) else {
            return;
        };
        if let (true, Some(dir)) = (u.journaled, self.opts.journal.clone()) {
            let name = name_of(key);
            remove(dir.as_fd(), &name);
            remove(dir.as_fd(), &format!("{name}.go"));
            // Durably gone: a journal found again after a crash would redo its deletions.
            let _ = rfs::fsync(dir.as_fd());
        }
    }

    /// Holds pushes in doubt after a restart ([`Recovery::in_doubt`]): `status` shows them
    /// until [`Storage::resolve`](crate::proto::storage::Storage::resolve) settles each.
    pub fn hold_in_doubt(&mut self, keys: &[(XferKey, u64)]) {
        for &(key, since) in keys {
            self.journals.open.insert(
                key,
                Unfinished {
                    key,
                    state: "in-doubt",
                    since,
                    journaled: true,
                },
            );
        }
    }

    /// Finishes (`commit`) or rolls back a push held in doubt from its journal; the
    /// outcome and manifest digest of a finished one. Anything not held in doubt here is
    /// left alone (an answer about a push this member never staged changes nothing).
    pub(super) fn resolve_doubt(
        &mut self,
        key: XferKey,
        commit: bool,
    ) -> Option<(CommitOutcome, [u8; 16], Option<u64>)> {
        if self.journals.open.get(&key).map(|u| u.state) != Some("in-doubt") {
            return None;
        }
        let dir = self.opts.journal.clone()?;
        let name = name_of(key);
        let rec = match read_whole(dir.as_fd(), &name).and_then(|b| match b {
            Some(b) => Record::parse(&b),
            None => Err(bad("gone")),
        }) {
            Ok(r) => r,
            Err(e) => {
                crate::logging::warn(format_args!(
                    "atomic push {:016x}/{:x}: journal unreadable ({e}); dropped",
                    key.origin, key.xfer
                ));
                self.journal_done(key);
                return None;
            }
        };
        if !commit {
            self.roll_back(&rec);
            self.journal_done(key);
            return None;
        }
        let digest = rec.manifest.tree_digest(&rec.manifest.encode());
        let started = rec.manifest.started_ms;
        let skip = rec.skip.clone();
        // The go is journaled (`commit_now`) before the first rename, as for any go.
        Some((self.roll_forward(key, rec, skip), digest, started))
    }

    /// Atomic pushes ready or committing here now (for `status`).
    pub fn unfinished(&self) -> Vec<Unfinished> {
        let mut v: Vec<_> = self.journals.open.values().cloned().collect();
        v.sort_unstable_by_key(|u| u.key);
        v
    }

    /// Rolls a journaled push back: its staged files (still the same inodes) and the
    /// (empty) directories staging made are removed.
    fn roll_back(&mut self, rec: &Record) -> usize {
        let mut n = 0;
        for (_, dir, tmp, id) in &rec.staged {
            if let Ok(dfd) = open_dir(self.base_dir(), dir, None) {
                let same = lstat_at(dfd.as_fd(), tmp).is_ok_and(|m| id.is_inode_of(&m));
                if same && unlink_at(dfd.as_fd(), tmp).is_ok() {
                    n += 1;
                }
            }
        }
        let mut made = rec.made.clone();
        made.sort_unstable_by(|a, b| b.cmp(a));
        for d in made {
            let (dir, name) = split(&d);
            if let Ok(dfd) = open_dir(self.base_dir(), dir, None) {
                let _ = rmdir_at(dfd.as_fd(), name);
            }
        }
        n
    }

    /// Finishes a journaled commit that a crash interrupted.
    fn roll_forward(&mut self, key: XferKey, mut rec: Record, skip: Vec<u32>) -> CommitOutcome {
        let mut lost = Vec::new();
        for (idx, dir, tmp, id) in std::mem::take(&mut rec.staged) {
            let e = &rec.manifest.entries[idx as usize];
            let Ok(dfd) = open_dir(self.base_dir(), &dir, None) else {
                rec.flags[idx as usize] = 0;
                lost.push(format!(
                    "{}: its directory is gone; left as it is",
                    show(&e.path)
                ));
                continue;
            };
            if lstat_at(dfd.as_fd(), &tmp).is_ok_and(|m| id.is_inode_of(&m)) {
                self.staged.insert(
                    (key, idx),
                    Staged {
                        dir,
                        tmp,
                        file: None,
                        id,
                        ready: false,
                        final_mode: None,
                        unsynced: 0,
                    },
                );
                continue;
            }
            // Renamed into place before the crash, or lost: either way never made anew
            // (an empty file would be installed for it).
            rec.flags[idx as usize] = 0;
            let name = split(&e.path).1;
            let installed = e.kind == EntryKind::File
                && lstat_at(dfd.as_fd(), name).is_ok_and(|m| id.is_inode_of(&m));
            if !installed {
                lost.push(format!(
                    "{}: staged file lost; left as it is",
                    show(&e.path)
                ));
            }
        }
        let req = CommitRequest {
            manifest: &rec.manifest,
            flags: &rec.flags,
            deletions: &rec.deletions,
            skip: &skip,
        };
        let mut out = self.commit_now(key, &req);
        out.errors.extend(lost);
        out
    }
}

/// Opens (creating, mode 0700) `journal/` in the state directory, never through a symlink.
pub fn open_journal_dir(state_dir: &Path) -> io::Result<std::os::fd::OwnedFd> {
    let sd = rfs::open(
        state_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    match rfs::mkdirat(&sd, "journal", Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(rfs::openat(
        &sd,
        "journal",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// At daemon start, before temp files are swept: finishes every journaled atomic push whose
/// go was recorded and holds the others in doubt (see the module doc).
pub fn recover_journal(base: &Path, opts: &ApplyOptions) -> io::Result<Recovery> {
    let mut rcv = Recovery::default();
    let Some(dir) = opts.journal.clone() else {
        return Ok(rcv);
    };
    let names = super::sys::list_dir(dir.as_fd())?;
    let out = &mut rcv.lines;
    let mut storage: Option<FsStorage> = None;
    for raw in names {
        let Ok(name) = std::str::from_utf8(&raw) else {
            continue;
        };
        let Some(key) = key_of(name) else {
            // `.go` and `.tmp` files are handled with their journal; a `.go` or `.tmp` left
            // alone (crashed while removing or writing) goes.
            if name.ends_with(".go") || name.ends_with(".tmp") {
                let main = name.rsplit_once('.').map_or(name, |(m, _)| m);
                let alone = key_of(main).is_none()
                    || name.ends_with(".tmp")
                    || read_whole(dir.as_fd(), main).ok().flatten().is_none();
                if alone {
                    remove(dir.as_fd(), name);
                }
            }
            continue;
        };
        let who = format!("atomic push {:016x}/{:x}", key.origin, key.xfer);
        let rec = match read_whole(dir.as_fd(), name).and_then(|b| match b {
            Some(b) => Record::parse(&b).map(Some),
            None => Ok(None),
        }) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                out.push(format!(
                    "{who}: unreadable journal dropped ({e}); its staging is swept"
                ));
                remove(dir.as_fd(), name);
                remove(dir.as_fd(), &format!("{name}.go"));
                continue;
            }
        };
        let go = read_whole(dir.as_fd(), &format!("{name}.go"))
            .ok()
            .flatten()
            .and_then(|b| {
                let mut c = Cursor(&b);
                if c.take(MAGIC.len()).ok()? != MAGIC {
                    return None;
                }
                let n = c.count(4).ok()?;
                (0..n).map(|_| c.u32().ok()).collect::<Option<Vec<u32>>>()
            });
        if storage.is_none() {
            let mut o = opts.clone();
            o.journal = None;
            o.hooks = None;
            storage = Some(FsStorage::new(base.to_path_buf(), o)?);
        }
        let s = storage.as_mut().expect("made above");
        let age = unix_now().saturating_sub(rec.since);
        match go {
            None => {
                out.push(format!(
                    "{who}: ready {age}s before a crash, no go recorded: in doubt, asking the cluster whether it was committed ({} staged files kept)",
                    rec.staged.len()
                ));
                rcv.keep
                    .extend(rec.staged.iter().map(|(_, _, tmp, _)| tmp.clone()));
                rcv.in_doubt.push((key, rec.since));
                continue;
            }
            Some(skip) => {
                let _ = rec.skip;
                let o = s.roll_forward(key, rec, skip);
                out.push(format!(
                    "{who}: its commit was interrupted by a crash: finished ({} files, {} deleted{})",
                    o.files,
                    o.deleted,
                    if o.errors.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", o.errors.join("; "))
                    }
                ));
            }
        }
        remove(dir.as_fd(), name);
        remove(dir.as_fd(), &format!("{name}.go"));
    }
    let _ = rfs::fsync(dir.as_fd());
    Ok(rcv)
}
