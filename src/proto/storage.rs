//! The storage boundary: how file contents reach the engine and how received files are
//! staged and applied, without the engine touching a file system.
//!
//! The engine calls [`Storage`] synchronously for cheap operations (reading a source block,
//! writing a received block into a staged file). A write may be *accepted* and carried out
//! later (the daemon's write pool, `apply/writer.rs`), as long as `read_staged`, `prepare`
//! and `commit` see every write accepted before them (and `complete` does not finish a file
//! ahead of its accepted writes), and a write that fails
//! after its acceptance fails the transfer's commit (or prepare) with the message the engine
//! gives a failed write (`path: reason`). The two slow ones, inspecting what a
//! receiver has and committing a transfer, may answer "pending" (`None`); the driver then
//! finishes the work elsewhere and reports back through `Engine::handle_inspected` and
//! `Engine::handle_committed`, while the engine keeps answering the network.
//!
//! [`MemStorage`] is the in-memory implementation used by the simulated-cluster tests; the
//! real file system implementation lives in `apply/`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;

use super::manifest::{change, needs_data, Entry, EntryKind, Manifest};
use super::restore::{restore_inline, Restore};
use change::Flags;

/// Identifies one inbound transfer on a receiver: the sender's node id and its transfer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct XferKey {
    /// Sender's node id.
    pub origin: u64,
    /// Transfer id, unique per sender.
    pub xfer: u32,
}

/// What a receiver found when comparing a manifest with its tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    /// The [`change`] flags of every manifest entry (0 = up to date).
    pub flags: Vec<Flags>,
    /// Paths under the manifest's roots that the manifest lacks and that `--delete` would
    /// remove (filter-protected paths excluded), deepest first. Empty unless the push deletes.
    pub deletions: Vec<Vec<u8>>,
    /// The receiver refuses the transfer (e.g. it would delete more than its own
    /// `--max-delete`): the sender is told this reason and nothing is staged.
    pub refused: Option<String>,
}

/// The start of the reason a receiver gives when it refuses a push for deleting more than
/// its own `--max-delete` allows (the sender's exit status is then 25).
pub const MAX_DELETE_REFUSAL: &str = "refused by this member's --max-delete";

/// What to apply when a transfer commits.
#[derive(Debug)]
pub struct CommitRequest<'a> {
    /// The transfer's manifest.
    pub manifest: &'a Manifest,
    /// Change flags per entry (from the inspection); entries with 0 are left alone.
    pub flags: &'a [Flags],
    /// Paths to delete (empty when deletion is off or was vetoed).
    pub deletions: &'a [Vec<u8>],
    /// Entries whose source vanished during the push: do not apply them.
    pub skip: &'a [u32],
}

/// The result of a commit on one receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Entries created or updated.
    pub files: u32,
    /// File bytes written.
    pub bytes: u64,
    /// Paths deleted.
    pub deleted: u32,
    /// Failures, one line each (path and reason). Empty means success.
    pub errors: Vec<String>,
    /// Paths written (created or updated), for the daemon's per-path log lines.
    pub written: Vec<Vec<u8>>,
    /// Paths deleted.
    pub removed: Vec<Vec<u8>>,
}

/// File access for the engine. See the module doc for the calling contract.
pub trait Storage {
    /// Sender: reads up to `buf.len()` bytes of `entry`'s contents at `offset`. A short read
    /// or an error means the source changed or vanished during the push.
    fn read(&mut self, entry: &Entry, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Receiver: compares the manifest with what is on disk. `None` means the answer will
    /// come later through `Engine::handle_inspected`.
    fn inspect(&mut self, key: XferKey, manifest: &Manifest) -> Option<Inspection>;

    /// Receiver: writes received contents of entry `idx` at `offset` into its staged (hidden)
    /// copy, creating it on first use. `Ok` may mean "accepted": see the module doc.
    fn write(
        &mut self,
        key: XferKey,
        idx: u32,
        entry: &Entry,
        offset: u64,
        data: &[u8],
    ) -> io::Result<()>;

    /// Receiver: every byte of entry `idx` has been written (called once per file with
    /// contents, before the commit). The staged copy may now be finished (attributes set,
    /// file closed) ahead of the commit; it may still be read back with `read_staged`. An
    /// error fails the transfer on this member, as a failed `write` does.
    fn complete(&mut self, _key: XferKey, _idx: u32, _manifest: &Manifest) -> io::Result<()> {
        Ok(())
    }

    /// Receiver: reads back staged contents (needed to decode parity).
    fn read_staged(
        &mut self,
        key: XferKey,
        idx: u32,
        entry: &Entry,
        offset: u64,
        buf: &mut [u8],
    ) -> io::Result<()>;

    /// Receiver: rebuilds a group's lost source blocks from parity, reading back the present
    /// ones it does not hold, and writes the pieces of them the transfer needs. `Ok` may mean
    /// *accepted*, as for `write`: the job is then carried out later, after every write
    /// accepted before it and before `read_staged`, `prepare` and `commit` of its files, and
    /// a failure fails the transfer's commit. The default does it now, on this thread.
    fn restore(&mut self, key: XferKey, manifest: &Manifest, job: Restore) -> io::Result<()> {
        restore_inline(self, key, manifest, job)
    }

    /// Receiver: applies the transfer (renames staged files into place, creates dirs and
    /// links, sets attributes, deletes). `None` means the outcome will come later through
    /// `Engine::handle_committed`.
    fn commit(&mut self, key: XferKey, req: &CommitRequest<'_>) -> Option<CommitOutcome>;

    /// Receiver: drops everything staged for the transfer.
    fn abort(&mut self, key: XferKey);

    /// Receiver, `--atomic`: the transfer is wholly staged and the sender asks whether it
    /// may commit (COMMIT with PREPARE). `Some(Ok(()))`: ready (the commit that follows
    /// applies `req`, less the entries vanished by then); `Some(Err(reason))`: not (the
    /// engine then drops the staging); `None`: the answer comes later through
    /// `Engine::handle_committed`, an outcome without errors meaning ready.
    fn prepare(&mut self, _key: XferKey, _req: &CommitRequest<'_>) -> Option<Result<(), String>> {
        Some(Ok(()))
    }

    /// Receiver, `--atomic` after a restart: push `key`, journaled ready here before a crash
    /// and held in doubt since, was given the go (`commit`: finish it) or not (roll it back).
    /// Returns the commit's outcome, the digest of its manifest and the push's start stamp
    /// when it was finished.
    fn resolve(
        &mut self,
        _key: XferKey,
        _commit: bool,
    ) -> Option<(CommitOutcome, [u8; 16], Option<u64>)> {
        None
    }
}

/// A node of the in-memory tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemNode {
    /// Type.
    pub kind: EntryKind,
    /// Contents (files).
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Modification time.
    pub mtime: i64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link text (symlinks).
    pub target: Vec<u8>,
}

/// An in-memory file tree implementing [`Storage`], for tests.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    /// The tree: relative path -> node.
    pub tree: BTreeMap<Vec<u8>, MemNode>,
    staged: HashMap<(XferKey, u32), Vec<u8>>,
    /// Make every staged write fail (simulates a full disk).
    pub fail_writes: bool,
    /// Answer commits "pending" and keep their outcome here (simulates a slow commit that the
    /// driver finishes elsewhere and reports with `Engine::handle_committed`).
    pub defer_commits: bool,
    /// Outcomes of deferred commits, for the test to hand back.
    pub deferred: Vec<(XferKey, CommitOutcome)>,
    /// Staged files reported complete (`Storage::complete`).
    completed: HashSet<(XferKey, u32)>,
    /// `complete` calls that broke the contract: a second call for the same file, or one
    /// before every byte was written. Tests require 0.
    pub bad_completions: u32,
    /// Receive without keeping contents (tests of many members): every file's contents must
    /// be [`pattern_fill`]'s; each staged write is checked against it and only which bytes
    /// were written is kept. Committed files are counted, not put in the tree.
    pub pattern: bool,
    /// Staged writes that differed from the pattern (pattern mode). Tests require 0.
    pub pattern_mismatches: u64,
    /// Files committed whole in pattern mode (every byte written, none differing).
    pub pattern_files: u64,
    /// Pattern mode: the byte ranges `[start, end)` written of each staged file.
    covered: HashMap<(XferKey, u32), BTreeMap<u64, u64>>,
}

/// The contents pattern-mode storage expects at `offset` of any file (cheap to make and to
/// check: word `i` is `i × φ`, little-endian).
pub fn pattern_fill(offset: u64, buf: &mut [u8]) {
    let word = |w: u64| w.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes();
    // The bytes before the first word boundary, then whole words, then the tail.
    let head = ((8 - (offset & 7)) & 7).min(buf.len() as u64) as usize;
    let whole = (buf.len() - head) / 8;
    let (first, rest) = buf.split_at_mut(head);
    for (i, b) in first.iter_mut().enumerate() {
        let o = offset + i as u64;
        *b = word(o >> 3)[(o & 7) as usize];
    }
    let base = (offset + head as u64) >> 3;
    let mut words = rest.chunks_exact_mut(8);
    for (i, c) in (&mut words).enumerate() {
        c.copy_from_slice(&word(base + i as u64));
    }
    let tail = words.into_remainder();
    let w = word(base + whole as u64);
    let n = tail.len();
    tail.copy_from_slice(&w[..n]);
}

fn pattern_matches(offset: u64, data: &[u8]) -> bool {
    let mut want = [0u8; 4096];
    data.chunks(want.len()).enumerate().all(|(i, c)| {
        pattern_fill(offset + (i * want.len()) as u64, &mut want[..c.len()]);
        c == &want[..c.len()]
    })
}

/// Adds `[a, b)` to a set of disjoint ranges (start -> end), merging neighbours.
fn cover(set: &mut BTreeMap<u64, u64>, mut a: u64, mut b: u64) {
    if let Some((&s, &e)) = set.range(..=a).next_back() {
        if e >= a {
            a = s;
            b = b.max(e);
            set.remove(&s);
        }
    }
    while let Some((&s, &e)) = set.range(a..=b).next() {
        b = b.max(e);
        set.remove(&s);
    }
    set.insert(a, b);
}

fn covers(set: &BTreeMap<u64, u64>, a: u64, b: u64) -> bool {
    a >= b || set.range(..=a).next_back().is_some_and(|(_, &e)| e >= b)
}

impl MemStorage {
    /// Empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file (and its parent dirs) to the tree.
    pub fn add_file(&mut self, path: &[u8], data: Vec<u8>, mode: u32, mtime: i64) {
        self.add_parents(path, mtime);
        self.tree.insert(
            path.to_vec(),
            MemNode {
                kind: EntryKind::File,
                data,
                mode,
                mtime,
                uid: 0,
                gid: 0,
                target: Vec::new(),
            },
        );
    }

    fn add_parents(&mut self, path: &[u8], mtime: i64) {
        let mut end = 0;
        while let Some(p) = path[end..].iter().position(|&b| b == b'/') {
            end += p;
            let dir = path[..end].to_vec();
            self.tree.entry(dir).or_insert(MemNode {
                kind: EntryKind::Dir,
                data: Vec::new(),
                mode: 0o755,
                mtime,
                uid: 0,
                gid: 0,
                target: Vec::new(),
            });
            end += 1;
        }
    }

    /// The manifest of the whole tree (tree order: parents sort before children).
    pub fn manifest(&self) -> Manifest {
        let entries = self
            .tree
            .iter()
            .map(|(p, n)| Entry {
                path: p.clone(),
                kind: n.kind,
                size: if n.kind == EntryKind::File {
                    n.data.len() as u64
                } else {
                    0
                },
                mode: n.mode,
                mtime: n.mtime,
                mtime_nsec: 0,
                uid: n.uid,
                gid: n.gid,
                target: n.target.clone(),
                ..Entry::default()
            })
            .collect();
        let roots = self
            .tree
            .keys()
            .filter(|p| !p.contains(&b'/'))
            .cloned()
            .collect();
        Manifest {
            roots,
            entries,
            ..Default::default()
        }
    }

    /// Staged files that currently exist, or are remembered as complete (should be 0 when
    /// idle).
    pub fn staged_count(&self) -> usize {
        self.staged.len() + self.completed.len() + self.covered.len()
    }

    fn compare(&self, e: &Entry, m: &Manifest) -> Flags {
        let Some(n) = self.tree.get(&e.path) else {
            return change::MISSING;
        };
        if n.kind != e.kind {
            return change::TYPE;
        }
        let mut f = 0;
        if e.kind == EntryKind::File {
            if n.data.len() as u64 != e.size {
                f |= change::SIZE;
            }
            if m.options.checksum {
                if let Some(sum) = e.checksum {
                    if md5_of(&n.data) != sum {
                        f |= change::SUM;
                    }
                }
            }
        }
        if e.kind != EntryKind::Dir && n.mtime != e.mtime {
            f |= change::TIME;
        }
        if e.kind != EntryKind::Symlink && n.mode != e.mode {
            f |= change::PERM;
        }
        if m.options.owners && (n.uid != e.uid || n.gid != e.gid) {
            f |= change::OWNER;
        }
        if e.kind == EntryKind::Symlink && n.target != e.target {
            f |= change::LINK;
        }
        f
    }
}

/// MD5 of a byte string (checksum mode).
pub fn md5_of(data: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(data).into()
}

fn under(path: &[u8], root: &[u8]) -> bool {
    root == b"." || path == root || (path.starts_with(root) && path.get(root.len()) == Some(&b'/'))
}

impl Storage for MemStorage {
    fn read(&mut self, entry: &Entry, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .tree
            .get(&entry.path)
            .filter(|n| n.kind == EntryKind::File)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "vanished"))?;
        // Offsets are in the entry's payload (its data extents when sparse).
        let mut got = 0;
        for (at, want) in entry.file_ranges(offset, buf.len() as u64) {
            let start = (at as usize).min(n.data.len());
            let len = (want as usize).min(n.data.len() - start);
            buf[got..got + len].copy_from_slice(&n.data[start..start + len]);
            got += len;
            if len < want as usize {
                break;
            }
        }
        Ok(got)
    }

    fn inspect(&mut self, _key: XferKey, m: &Manifest) -> Option<Inspection> {
        let flags = m.entries.iter().map(|e| self.compare(e, m)).collect();
        let mut deletions = Vec::new();
        if m.options.delete || m.options.delete_only {
            let wanted: std::collections::HashSet<&[u8]> =
                m.entries.iter().map(|e| e.path.as_slice()).collect();
            for p in self.tree.keys() {
                if m.roots.iter().any(|r| under(p, r)) && !wanted.contains(p.as_slice()) {
                    deletions.push(p.clone());
                }
            }
            deletions.reverse();
        }
        Some(Inspection {
            flags,
            deletions,
            refused: None,
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
        if self.fail_writes {
            return Err(io::Error::other("no space left on device"));
        }
        if offset + data.len() as u64 > entry.payload_len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "beyond size"));
        }
        if self.pattern {
            let set = self.covered.entry((key, idx)).or_default();
            let mut from = 0;
            for (at, len) in entry.file_ranges(offset, data.len() as u64) {
                let d = &data[from..from + len as usize];
                if !pattern_matches(at, d) {
                    self.pattern_mismatches += 1;
                }
                cover(set, at, at + len);
                from += len as usize;
            }
            return Ok(());
        }
        let f = self.staged.entry((key, idx)).or_default();
        let mut from = 0;
        for (at, len) in entry.file_ranges(offset, data.len() as u64) {
            let (at, len) = (at as usize, len as usize);
            if f.len() < at + len {
                f.resize(at + len, 0);
            }
            f[at..at + len].copy_from_slice(&data[from..from + len]);
            from += len;
        }
        Ok(())
    }

    fn complete(&mut self, key: XferKey, idx: u32, m: &Manifest) -> io::Result<()> {
        let entry = &m.entries[idx as usize];
        // The staged copy ends where the last data does (a sparse file's tail is a hole).
        let end = entry.extents().map_or(entry.size, |x| {
            x.spans().last().map_or(0, |&(at, len)| at + len)
        });
        let whole = if self.pattern {
            self.covered.get(&(key, idx)).is_some_and(|c| {
                covers(c, 0, end) && c.last_key_value().is_some_and(|l| *l.1 == end)
            })
        } else {
            self.staged
                .get(&(key, idx))
                .is_some_and(|d| d.len() as u64 == end)
        };
        if !whole || !self.completed.insert((key, idx)) {
            self.bad_completions += 1;
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
        if self.pattern {
            let set = self
                .covered
                .get(&(key, idx))
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not staged"))?;
            let mut to = 0;
            for (at, len) in entry.file_ranges(offset, buf.len() as u64) {
                if !covers(set, at, at + len) {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short staged"));
                }
                pattern_fill(at, &mut buf[to..to + len as usize]);
                to += len as usize;
            }
            if to < buf.len() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short staged"));
            }
            return Ok(());
        }
        let f = self
            .staged
            .get(&(key, idx))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not staged"))?;
        let mut to = 0;
        for (at, len) in entry.file_ranges(offset, buf.len() as u64) {
            let (at, len) = (at as usize, len as usize);
            if at + len > f.len() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short staged"));
            }
            buf[to..to + len].copy_from_slice(&f[at..at + len]);
            to += len;
        }
        if to < buf.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short staged"));
        }
        Ok(())
    }

    fn commit(&mut self, key: XferKey, req: &CommitRequest<'_>) -> Option<CommitOutcome> {
        let out = self.commit_now(key, req);
        if self.defer_commits {
            self.deferred.push((key, out));
            return None;
        }
        Some(out)
    }

    fn abort(&mut self, key: XferKey) {
        self.staged.retain(|(k, _), _| *k != key);
        self.completed.retain(|(k, _)| *k != key);
        self.covered.retain(|(k, _), _| *k != key);
    }
}

impl MemStorage {
    fn commit_now(&mut self, key: XferKey, req: &CommitRequest<'_>) -> CommitOutcome {
        let mut out = CommitOutcome::default();
        let checksum = req.manifest.options.checksum;
        for (i, e) in req.manifest.entries.iter().enumerate() {
            let f = req.flags.get(i).copied().unwrap_or(0);
            let done = self.completed.remove(&(key, i as u32));
            if f == 0 || req.skip.contains(&(i as u32)) {
                self.staged.remove(&(key, i as u32));
                continue;
            }
            let data = if needs_data(e.kind, f, checksum) {
                if e.payload_len() > 0 && !done {
                    // The engine must report every file with contents complete first.
                    out.errors
                        .push(format!("{}: committed before complete", show(&e.path)));
                    self.staged.remove(&(key, i as u32));
                    continue;
                }
                if self.pattern {
                    // Complete means every byte was written; each was checked on its way.
                    self.covered.remove(&(key, i as u32));
                    self.pattern_files += 1;
                    out.bytes += e.payload_len();
                    out.files += 1;
                    continue;
                }
                let mut d = self.staged.remove(&(key, i as u32)).unwrap_or_default();
                if d.len() as u64 > e.size {
                    out.errors
                        .push(format!("{}: staged too long", show(&e.path)));
                    continue;
                }
                d.resize(e.size as usize, 0);
                out.bytes += e.payload_len();
                d
            } else if let Some(n) = self.tree.get(&e.path).filter(|n| n.kind == e.kind) {
                n.data.clone()
            } else {
                Vec::new()
            };
            self.tree.insert(
                e.path.clone(),
                MemNode {
                    kind: e.kind,
                    data,
                    mode: e.mode,
                    mtime: e.mtime,
                    uid: e.uid,
                    gid: e.gid,
                    target: e.target.clone(),
                },
            );
            out.files += 1;
        }
        for p in req.deletions {
            if self.tree.remove(p).is_some() {
                out.deleted += 1;
            }
        }
        self.abort(key);
        out
    }
}

/// A path for messages (lossy UTF-8).
pub fn show(p: &[u8]) -> String {
    crate::escape::exact(p).into_owned()
}

#[cfg(test)]
mod tests {
    use super::pattern_fill;

    #[test]
    fn pattern_fill_is_the_same_bytes_at_any_offset_and_length() {
        let byte = |o: u64| ((o >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (8 * (o & 7))) as u8;
        for offset in 0..20u64 {
            for len in 0..40usize {
                let mut buf = vec![0u8; len];
                pattern_fill(offset, &mut buf);
                let want: Vec<u8> = (0..len as u64).map(|i| byte(offset + i)).collect();
                assert_eq!(buf, want, "offset {offset} len {len}");
            }
        }
    }
}
