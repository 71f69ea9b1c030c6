//! The manifest: what a push announces about every path it covers.
//!
//! A manifest is a header (push options, the transfer roots, the filter rules that protect
//! receiver paths from `--delete`) followed by entries in tree order (a directory before its
//! contents). It travels as the bytes of stream 0 of a transfer (see `docs/protocol.md`), so it
//! has its own compact encoding here: varints and path prefix compression. Decoding takes
//! untrusted bytes and returns a value or an error; it never panics and never allocates more
//! than the input implies.
//!
//! The *change flags* a receiver reports per entry, and the payload layout (which entries'
//! contents are concatenated into the data stream), are in `changes.rs`. What the file
//! kinds beyond files, directories and symlinks carry (device numbers, sparse extents,
//! extended attributes and ACLs) is in [`ext`].

mod changes;
pub mod ext;
pub mod release;

use std::collections::HashMap;

use super::limits::{MAX_FILTER_BYTES, MAX_FILTER_RULES, RULE_MEMORY, RULE_MEMORY_PER_BYTE};
use super::wire::{Reader, WireError, Writer};
pub use changes::{bit, change, itemize, itemize_suffix, needs_data, set_bit, Layout};
pub use ext::{DevNum, Extents, Xattr};

/// The kind of a manifest entry. Values are wire constants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file; its contents travel in the payload stream.
    #[default]
    File = 1,
    /// A directory.
    Dir = 2,
    /// A symbolic link; `target` holds the link text. Never followed.
    Symlink = 3,
    /// Another name of a regular file of the same push (`-H`): `target` is the path of that
    /// file's entry, which comes earlier in the manifest; no contents travel for it.
    HardLink = 4,
    /// A block or character device node (`-D`); its type and number are in `device`.
    /// Receivers create it only when allowed (`--allow-devices`, as root).
    Device = 5,
    /// A FIFO (named pipe, `-D`).
    Fifo = 6,
    /// A named socket (`-D`): the node only, as rsync's `--specials` makes it.
    Socket = 7,
}

impl EntryKind {
    fn from_u8(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            1 => Self::File,
            2 => Self::Dir,
            3 => Self::Symlink,
            4 => Self::HardLink,
            5 => Self::Device,
            6 => Self::Fifo,
            7 => Self::Socket,
            _ => return Err(WireError::BadValue("entry kind")),
        })
    }
}

/// One path of a push, with the attributes receivers reproduce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the base directory, as raw bytes (non-UTF-8 allowed), `/`-separated,
    /// no leading `/`, no `.` or `..` components, no NUL. Checked by [`check_rel_path`].
    pub path: Vec<u8>,
    /// What the path is.
    pub kind: EntryKind,
    /// Size in bytes (files only; 0 otherwise).
    pub size: u64,
    /// Permission bits including set-id and sticky bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_nsec: u32,
    /// Owner (32-bit, never truncated).
    pub uid: u32,
    /// Group (32-bit, never truncated).
    pub gid: u32,
    /// Link text for symlinks, the path of the linked file's entry for hard links; empty
    /// otherwise.
    pub target: Vec<u8>,
    /// MD5 of the contents when the push runs in checksum mode (files only).
    pub checksum: Option<[u8; 16]>,
    /// What the file kinds beyond files, directories and symlinks carry: a device's number,
    /// a sparse file's extents, attributes (read with [`Entry::device`], [`Entry::extents`],
    /// [`Entry::xattrs`]).
    pub extra: Extra,
}

/// What an entry carries beyond the basics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryExtra {
    /// Type and number of a device node (kind [`EntryKind::Device`] only).
    pub device: Option<DevNum>,
    /// The data extents of a sparse file (`--sparse`): only they travel; `None` means the
    /// whole file does.
    pub extents: Option<Extents>,
    /// Extended attributes and ACLs (`-X`/`-A`; files and directories), sorted by name.
    pub xattrs: Vec<Xattr>,
}

/// An [`EntryExtra`] that takes one pointer in an entry without any (most entries): a
/// receiver holds up to millions of entries. Equal when the contents are.
#[derive(Clone, Debug, Default)]
pub struct Extra(Option<Box<EntryExtra>>);

static NO_EXTRA: EntryExtra = EntryExtra {
    device: None,
    extents: None,
    xattrs: Vec::new(),
};

impl Extra {
    /// The contents (all empty when there are none).
    pub fn get(&self) -> &EntryExtra {
        self.0.as_deref().unwrap_or(&NO_EXTRA)
    }

    /// The contents, to change them.
    pub fn get_mut(&mut self) -> &mut EntryExtra {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for Extra {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Extra {}

impl Entry {
    /// A convenience constructor for a regular file (tests and tools).
    pub fn file(path: &[u8], size: u64, mode: u32, mtime: i64) -> Self {
        Self {
            path: path.to_vec(),
            kind: EntryKind::File,
            size,
            mode,
            mtime,
            mtime_nsec: 0,
            uid: 0,
            gid: 0,
            ..Self::default()
        }
    }

    /// A convenience constructor for a directory.
    pub fn dir(path: &[u8], mode: u32, mtime: i64) -> Self {
        Self {
            kind: EntryKind::Dir,
            size: 0,
            ..Self::file(path, 0, mode, mtime)
        }
    }

    /// A convenience constructor for a symbolic link.
    pub fn symlink(path: &[u8], target: &[u8], mtime: i64) -> Self {
        Self {
            kind: EntryKind::Symlink,
            size: 0,
            target: target.to_vec(),
            ..Self::file(path, 0, 0o777, mtime)
        }
    }

    /// Type and number of a device node.
    pub fn device(&self) -> Option<DevNum> {
        self.extra.get().device
    }

    /// The data extents of a sparse file (`None`: the whole file travels).
    pub fn extents(&self) -> Option<&Extents> {
        self.extra.get().extents.as_ref()
    }

    /// Extended attributes and ACLs, sorted by name.
    pub fn xattrs(&self) -> &[Xattr] {
        &self.extra.get().xattrs
    }

    /// Bytes of this entry's contents that travel in the payload: its size, or for a sparse
    /// file the bytes of its data extents; 0 for anything but a regular file.
    pub fn payload_len(&self) -> u64 {
        match (self.kind, self.extents()) {
            (EntryKind::File, Some(x)) => x.data_len(),
            (EntryKind::File, None) => self.size,
            _ => 0,
        }
    }

    /// The file ranges `(file offset, length)` that hold payload bytes `[off, off + len)` of
    /// this entry: the same range for a dense file, pieces of its data extents for a sparse
    /// one. Storage maps every payload offset it is given through this.
    pub fn file_ranges(&self, off: u64, len: u64) -> Vec<(u64, u64)> {
        match self.extents() {
            Some(x) => x.map(off, len).collect(),
            None if len == 0 => Vec::new(),
            None => vec![(off, len)],
        }
    }
}

/// Why a relative path from the network is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Empty path.
    Empty,
    /// Starts with `/`.
    Absolute,
    /// Contains a NUL byte.
    Nul,
    /// Contains a `.`, `..` or empty component.
    BadComponent,
    /// Longer than [`MAX_PATH`].
    TooLong,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty path",
            Self::Absolute => "absolute path",
            Self::Nul => "path contains NUL",
            Self::BadComponent => "path contains '.', '..' or an empty component",
            Self::TooLong => "path too long",
        })
    }
}

/// Longest relative path accepted (bytes).
pub const MAX_PATH: usize = 4096;

/// Checks that `p` is a clean relative path that cannot escape the base directory by itself
/// (symlinked parents are the file layer's concern). `.` alone names the base itself.
pub fn check_rel_path(p: &[u8]) -> Result<(), PathError> {
    if p.is_empty() {
        return Err(PathError::Empty);
    }
    if p.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if p == b"." {
        return Ok(());
    }
    if p[0] == b'/' {
        return Err(PathError::Absolute);
    }
    if p.contains(&0) {
        return Err(PathError::Nul);
    }
    for comp in p.split(|&b| b == b'/') {
        if comp.is_empty() || comp == b"." || comp == b".." {
            return Err(PathError::BadComponent);
        }
    }
    Ok(())
}

/// Push-wide options carried in the manifest header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushOptions {
    /// Compare contents by checksum instead of size+mtime.
    pub checksum: bool,
    /// Compare owners too (the sender runs as root and preserves owners).
    pub owners: bool,
    /// Delete, under each root, receiver paths the manifest lacks (rsync `--delete`).
    pub delete: bool,
    /// Only delete; transfer nothing (makuosan `dsync`).
    pub delete_only: bool,
    /// Report what would change; change nothing.
    pub dry_run: bool,
    /// Receivers skip the durability step (fsync before rename) for this push.
    pub no_fsync: bool,
    /// Extended attributes travel and receivers make theirs match (`-X`): `user.*`, and
    /// `trusted.*`/`security.*` where both sides run as root.
    pub xattrs: bool,
    /// POSIX ACLs travel and receivers make theirs match (`-A`).
    pub acls: bool,
    /// Sender only, not on the wire: files linked within the push travel once (`-H`).
    pub hard_links: bool,
    /// Sender only, not on the wire: holes of sparse files do not travel (`-S`).
    pub sparse: bool,
    /// Sender only, not on the wire: device nodes are sent (`--devices`, `-D`).
    pub devices: bool,
    /// Sender only, not on the wire: FIFOs and sockets are sent (`--specials`, `-D`).
    pub specials: bool,
    /// `--release NAME` / `makuo rollback NAME` (extension section 5, `release.rs`).
    pub release: Option<Box<release::Release>>,
}

const OPT_CHECKSUM: u8 = 1;
const OPT_OWNERS: u8 = 2;
const OPT_DELETE: u8 = 4;
const OPT_DELETE_ONLY: u8 = 8;
const OPT_DRY_RUN: u8 = 16;
const OPT_NO_FSYNC: u8 = 32;
const OPT_XATTRS: u8 = 64;
const OPT_ACLS: u8 = 128;

/// A filter rule as sent to receivers (they need it to protect excluded paths from deletion).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterRule {
    /// `true` for include, `false` for exclude.
    pub include: bool,
    /// rsync-style pattern.
    pub pattern: String,
}

/// One filter rule of a [`FilterTable`]: rsync rule flags and the pattern (or, for a
/// dir-merge rule, the per-directory file's name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRule {
    /// [`WireRule::INCLUDE`], [`WireRule::SENDER`], ...
    pub flags: u8,
    /// rsync pattern (UTF-8).
    pub pattern: String,
}

impl WireRule {
    /// An include rule (else an exclude).
    pub const INCLUDE: u8 = 1;
    /// Applies when selecting what to send.
    pub const SENDER: u8 = 2;
    /// Applies to what `--delete` may remove (an excluded path is protected).
    pub const RECEIVER: u8 = 4;
    /// Matches the names the pattern does not match (`!` modifier).
    pub const NEGATE: u8 = 8;
    /// A `dir-merge` rule: the [`DirRules`] naming it come in at its place.
    pub const DIR_MERGE: u8 = 16;
    /// With `DIR_MERGE`: a directory's rules are not inherited below it (`n` modifier).
    pub const NO_INHERIT: u8 = 32;
    const ALL: u8 = 63;
}

/// The rules one per-directory filter file gave (read by the sender).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirRules {
    /// Index in [`FilterTable::rules`] of the dir-merge rule that read the file.
    pub merge: u32,
    /// The directory, relative to the base (`.` for the base); a rule starting with `/` is
    /// anchored there.
    pub dir: Vec<u8>,
    /// The file held `clear`: rules inherited from parent directories do not apply here.
    pub clear: bool,
    /// Its rules, in order.
    pub rules: Vec<WireRule>,
}

/// Filter rules beyond plain include/exclude (sides, negation, per-directory files), in
/// rsync's order: the receivers evaluate the receiver side of it for `--delete`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterTable {
    /// The rule list; dir-merge rules mark where per-directory rules apply.
    pub rules: Vec<WireRule>,
    /// Per-directory rules, at most one entry per (dir-merge rule, directory).
    pub dirs: Vec<DirRules>,
}

/// A whole manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Push options.
    pub options: PushOptions,
    /// The transfer roots (relative paths as given to `send`), scopes for `--delete`.
    pub roots: Vec<Vec<u8>>,
    /// Filter rules, in order (first match wins).
    pub rules: Vec<FilterRule>,
    /// Entries in tree order.
    pub entries: Vec<Entry>,
    /// Rules that the simple list cannot express (then `rules` is empty). Encoded after the
    /// entries, so a receiver that does not know it refuses the manifest instead of deleting
    /// what these rules protect.
    pub filter: Option<FilterTable>,
    /// When the push started (Unix ms, the sender's clock): with the origin's node id, the
    /// push's place in the cluster-wide order of overlapping pushes (`apply/order.rs`).
    /// `None`: the sender stamped none (an older build, a test).
    pub started_ms: Option<u64>,
}

/// Most entries one manifest may hold.
pub const MAX_ENTRIES: usize = 16 << 20;

const E_HAS_SUM: u8 = 1;
const E_HAS_NSEC: u8 = 2;

impl Manifest {
    /// The digest members compare (`status`, `members`): MD5 of this manifest's encoding
    /// `encoded` less its push-start section, so two pushes of the same tree and options
    /// have the same digest.
    pub fn tree_digest(&self, encoded: &[u8]) -> [u8; 16] {
        let cut = if self.started_ms.is_some() {
            ext::ORDER_SECTION_LEN
        } else {
            0
        };
        super::storage::md5_of(&encoded[..encoded.len().saturating_sub(cut)])
    }

    /// Serialises the manifest.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let o = &self.options;
        let mut flags = 0u8;
        if o.checksum {
            flags |= OPT_CHECKSUM;
        }
        if o.owners {
            flags |= OPT_OWNERS;
        }
        if o.delete {
            flags |= OPT_DELETE;
        }
        if o.delete_only {
            flags |= OPT_DELETE_ONLY;
        }
        if o.dry_run {
            flags |= OPT_DRY_RUN;
        }
        if o.no_fsync {
            flags |= OPT_NO_FSYNC;
        }
        if o.xattrs {
            flags |= OPT_XATTRS;
        }
        if o.acls {
            flags |= OPT_ACLS;
        }
        w.u8(flags);
        w.varint(self.roots.len() as u64);
        for r in &self.roots {
            w.bytes_v(r);
        }
        w.varint(self.rules.len() as u64);
        for r in &self.rules {
            w.u8(r.include as u8);
            w.bytes_v(r.pattern.as_bytes());
        }
        w.varint(self.entries.len() as u64);
        let mut prev: &[u8] = &[];
        for e in &self.entries {
            let common = prev
                .iter()
                .zip(e.path.iter())
                .take_while(|(a, b)| a == b)
                .count();
            w.varint(common as u64);
            w.bytes_v(&e.path[common..]);
            w.u8(e.kind as u8);
            let mut ef = 0u8;
            if e.checksum.is_some() {
                ef |= E_HAS_SUM;
            }
            if e.mtime_nsec != 0 {
                ef |= E_HAS_NSEC;
            }
            w.u8(ef);
            w.varint(e.size);
            w.varint(e.mode as u64);
            w.varint(zigzag(e.mtime));
            if e.mtime_nsec != 0 {
                w.varint(e.mtime_nsec as u64);
            }
            w.varint(e.uid as u64);
            w.varint(e.gid as u64);
            if e.kind == EntryKind::Symlink || e.kind == EntryKind::HardLink {
                w.bytes_v(&e.target);
            }
            if let Some(s) = &e.checksum {
                w.raw(s);
            }
            prev = &e.path;
        }
        ext::encode_sections(self, &mut w);
        w.into_vec()
    }

    /// Parses untrusted manifest bytes. Every path is checked with [`check_rel_path`].
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let flags = r.u8()?;
        let options = PushOptions {
            checksum: flags & OPT_CHECKSUM != 0,
            owners: flags & OPT_OWNERS != 0,
            delete: flags & OPT_DELETE != 0,
            delete_only: flags & OPT_DELETE_ONLY != 0,
            dry_run: flags & OPT_DRY_RUN != 0,
            no_fsync: flags & OPT_NO_FSYNC != 0,
            xattrs: flags & OPT_XATTRS != 0,
            acls: flags & OPT_ACLS != 0,
            ..PushOptions::default()
        };
        let nroots = r.count(1)?;
        let mut roots = Vec::with_capacity(nroots);
        for _ in 0..nroots {
            let p = r.bytes_v(MAX_PATH)?.to_vec();
            check_rel_path(&p).map_err(|_| WireError::BadValue("root path"))?;
            roots.push(p);
        }
        let nrules = r.count(2)?;
        let mut budget = RuleBudget::default();
        let mut rules = Vec::with_capacity(nrules);
        for _ in 0..nrules {
            let include = r.u8()? != 0;
            let pat = r.bytes_v(MAX_PATH)?;
            budget.charge(pat.len())?;
            let pattern = String::from_utf8(pat.to_vec())
                .map_err(|_| WireError::BadValue("filter pattern"))?;
            rules.push(FilterRule { include, pattern });
        }
        // Each entry takes at least 8 bytes, which bounds the allocation by the input size.
        let n = r.count(8)?;
        if n > MAX_ENTRIES {
            return Err(WireError::TooLarge("entries"));
        }
        let mut entries = Vec::with_capacity(n);
        let mut prev: Vec<u8> = Vec::new();
        for _ in 0..n {
            let common = r.varint()? as usize;
            if common > prev.len() {
                return Err(WireError::BadValue("path prefix"));
            }
            let suffix = r.bytes_v(MAX_PATH)?;
            let mut path = Vec::with_capacity(common + suffix.len());
            path.extend_from_slice(&prev[..common]);
            path.extend_from_slice(suffix);
            check_rel_path(&path).map_err(|_| WireError::BadValue("entry path"))?;
            let t = read_tail(&mut r)?;
            prev.clone_from(&path);
            entries.push(Entry {
                path,
                kind: t.kind,
                size: t.size,
                mode: t.mode,
                mtime: t.mtime,
                mtime_nsec: t.mtime_nsec,
                uid: t.uid,
                gid: t.gid,
                target: t.target.to_vec(),
                checksum: t.checksum,
                ..Entry::default()
            });
        }
        let mut m = Self {
            options,
            roots,
            rules,
            entries,
            filter: None,
            started_ms: None,
        };
        ext::decode_sections(&mut r, &mut m, &mut budget)?;
        r.finish()?;
        m.check_hard_links()?;
        Ok(m)
    }

    /// Refuses a hard link whose target is not the path of an earlier regular file of this
    /// manifest (whose own entry was checked like every other).
    fn check_hard_links(&self) -> Result<(), WireError> {
        let leaders = self.hard_link_leaders();
        for (i, e) in self.entries.iter().enumerate() {
            if e.kind == EntryKind::HardLink && !leaders.contains_key(&(i as u32)) {
                return Err(WireError::BadValue("hard link target"));
            }
        }
        Ok(())
    }

    /// For every hard link entry whose target is an earlier regular file of this manifest,
    /// that file's index (keyed by the hard link's index).
    pub fn hard_link_leaders(&self) -> HashMap<u32, u32> {
        let mut out = HashMap::new();
        if !self.entries.iter().any(|e| e.kind == EntryKind::HardLink) {
            return out;
        }
        let mut files: HashMap<&[u8], u32> = HashMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            match e.kind {
                EntryKind::File => {
                    files.entry(e.path.as_slice()).or_insert(i as u32);
                }
                EntryKind::HardLink => {
                    if let Some(&l) = files.get(e.target.as_slice()) {
                        out.insert(i as u32, l);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Puts an exclude rule before every other rule, in whichever form the manifest carries
    /// its rules (the simple list, or the filter section), so that receivers protect what it
    /// matches from `--delete` whatever the other rules say.
    pub fn exclude_first(&mut self, pattern: String) {
        match &mut self.filter {
            Some(t) => {
                t.rules.insert(
                    0,
                    WireRule {
                        flags: WireRule::SENDER | WireRule::RECEIVER,
                        pattern,
                    },
                );
                for d in &mut t.dirs {
                    d.merge += 1;
                }
            }
            None => self.rules.insert(
                0,
                FilterRule {
                    include: false,
                    pattern,
                },
            ),
        }
    }

    /// Total bytes of all regular files.
    pub fn total_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.size)
            .fold(0u64, |a, b| a.saturating_add(b))
    }

    /// The most bytes the payload stream can hold: every regular file's payload (a sparse
    /// file's data extents only; see [`Entry::payload_len`]). What must be addressable.
    pub fn payload_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(Entry::payload_len)
            .fold(0u64, |a, b| a.saturating_add(b))
    }
}

pub(super) fn encode_rules(w: &mut Writer, rules: &[WireRule]) {
    w.varint(rules.len() as u64);
    for x in rules {
        w.u8(x.flags);
        w.bytes_v(x.pattern.as_bytes());
    }
}

pub(super) fn decode_rules(
    r: &mut Reader<'_>,
    budget: &mut RuleBudget,
) -> Result<Vec<WireRule>, WireError> {
    let n = r.count(2)?;
    decode_rules_n(r, n, budget)
}

/// As [`decode_rules`], the count already read.
pub(super) fn decode_rules_n(
    r: &mut Reader<'_>,
    n: usize,
    budget: &mut RuleBudget,
) -> Result<Vec<WireRule>, WireError> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let flags = r.u8()?;
        if flags & !WireRule::ALL != 0 {
            return Err(WireError::BadValue("rule flags"));
        }
        let pat = r.bytes_v(MAX_PATH)?;
        budget.charge(pat.len())?;
        let pattern =
            String::from_utf8(pat.to_vec()).map_err(|_| WireError::BadValue("filter pattern"))?;
        out.push(WireRule { flags, pattern });
    }
    Ok(out)
}

/// The filter rules a manifest carries, counted against [`MAX_FILTER_RULES`] and
/// [`MAX_FILTER_BYTES`] while decoding (or sizing) it, and the memory their compiled form
/// may take (per rule [`RULE_MEMORY`] + [`RULE_MEMORY_PER_BYTE`] per pattern byte: the
/// filter compiler refuses a rule that would take more).
#[derive(Debug, Default)]
pub(super) struct RuleBudget {
    rules: usize,
    bytes: usize,
}

impl RuleBudget {
    /// One more rule, of a pattern `len` bytes long; returns what it may take compiled.
    pub(super) fn charge(&mut self, len: usize) -> Result<u64, WireError> {
        self.rules += 1;
        self.bytes += len;
        if self.rules > MAX_FILTER_RULES {
            return Err(WireError::TooLarge("filter rule count"));
        }
        if self.bytes > MAX_FILTER_BYTES {
            return Err(WireError::TooLarge("filter patterns"));
        }
        Ok(RULE_MEMORY + RULE_MEMORY_PER_BYTE * len as u64)
    }

    /// One more per-directory list (at most as many as rules).
    pub(super) fn list(&mut self) -> Result<(), WireError> {
        self.charge(0).map(|_| ())
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The fields of an encoded entry after its path, borrowed from the input.
struct Tail<'a> {
    kind: EntryKind,
    size: u64,
    mode: u32,
    mtime: i64,
    mtime_nsec: u32,
    uid: u32,
    gid: u32,
    target: &'a [u8],
    checksum: Option<[u8; 16]>,
}

/// Reads the fields of an entry that follow its path (kind, flags, attributes, link text,
/// checksum), checking each.
fn read_tail<'a>(r: &mut Reader<'a>) -> Result<Tail<'a>, WireError> {
    let kind = EntryKind::from_u8(r.u8()?)?;
    let ef = r.u8()?;
    let size = r.varint()?;
    let mode = u32::try_from(r.varint()?).map_err(|_| WireError::BadValue("mode"))?;
    let mtime = unzigzag(r.varint()?);
    let mtime_nsec = if ef & E_HAS_NSEC != 0 {
        let v = r.varint()?;
        if v >= 1_000_000_000 {
            return Err(WireError::BadValue("mtime nsec"));
        }
        v as u32
    } else {
        0
    };
    let uid = u32::try_from(r.varint()?).map_err(|_| WireError::BadValue("uid"))?;
    let gid = u32::try_from(r.varint()?).map_err(|_| WireError::BadValue("gid"))?;
    let target = if kind == EntryKind::Symlink || kind == EntryKind::HardLink {
        r.bytes_v(MAX_PATH)?
    } else {
        &[]
    };
    let checksum = if ef & E_HAS_SUM != 0 {
        let mut s = [0u8; 16];
        s.copy_from_slice(r.raw(16)?);
        Some(s)
    } else {
        None
    };
    if kind != EntryKind::File && size != 0 {
        return Err(WireError::BadValue("size of non-file"));
    }
    Ok(Tail {
        kind,
        size,
        mode,
        mtime,
        mtime_nsec,
        uid,
        gid,
        target,
        checksum,
    })
}

/// Bytes a receiver holds per manifest entry besides its path and link text: the decoded
/// entry with its allocations, and the per-entry bookkeeping of a transfer (change flags,
/// plan bit, payload span, report).
pub const ENTRY_MEMORY: u64 = 192;

/// How much memory decoding the manifest `buf` would take (see [`ENTRY_MEMORY`]), computed
/// from the encoded bytes without decoding them: path lengths are summed, never built, so
/// an input of prefix-sharing paths costs its encoded size to scan, not its decoded size.
/// Errors are those of [`Manifest::decode`] that do not need the paths themselves.
pub fn decoded_memory(buf: &[u8]) -> Result<u64, WireError> {
    let mut r = Reader::new(buf);
    r.u8()?;
    let mut total = 0u64;
    for _ in 0..r.count(1)? {
        total += 32 + r.bytes_v(MAX_PATH)?.len() as u64;
    }
    let mut budget = RuleBudget::default();
    for _ in 0..r.count(2)? {
        r.u8()?;
        total += 48 + budget.charge(r.bytes_v(MAX_PATH)?.len())?;
    }
    let n = r.count(8)?;
    if n > MAX_ENTRIES {
        return Err(WireError::TooLarge("entries"));
    }
    let mut prev = 0usize;
    for _ in 0..n {
        let common = r.varint()?;
        if common > prev as u64 {
            return Err(WireError::BadValue("path prefix"));
        }
        let len = common as usize + r.bytes_v(MAX_PATH)?.len();
        let t = read_tail(&mut r)?;
        total += ENTRY_MEMORY + len as u64 + t.target.len() as u64;
        prev = len;
    }
    total += ext::sections_memory(&mut r, &mut budget)?;
    r.finish()?;
    Ok(total)
}

#[cfg(test)]
mod tests;
