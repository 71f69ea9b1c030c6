//! What a receiver finds per entry and what travels for it: the change flags, the rsync-style
//! itemized line, and the payload layout (which entries' contents fill the data stream).

use super::{Entry, EntryKind, Manifest};

/// Change flags: what a receiver found different about one entry. Zero means up to date.
/// The low byte travels as one byte per changed entry in a receiver's report; the high byte
/// (attributes, `-X`/`-A` pushes only) in a section after it.
pub mod change {
    /// The change flags of one entry.
    pub type Flags = u16;
    /// The path does not exist on the receiver.
    pub const MISSING: Flags = 0x01;
    /// It exists with another type (file vs dir vs symlink).
    pub const TYPE: Flags = 0x02;
    /// Size differs.
    pub const SIZE: Flags = 0x04;
    /// Modification time differs.
    pub const TIME: Flags = 0x08;
    /// Permission bits differ.
    pub const PERM: Flags = 0x10;
    /// Owner or group differs (only compared when the push preserves owners).
    pub const OWNER: Flags = 0x20;
    /// Contents differ by checksum (checksum mode); for a device node, its type or number.
    pub const SUM: Flags = 0x40;
    /// Symlink text differs; for a hard link, the path is not (yet) a link to its target.
    pub const LINK: Flags = 0x80;
    /// POSIX ACLs differ (`-A`).
    pub const ACL: Flags = 0x100;
    /// Extended attributes differ (`-X`).
    pub const XATTR: Flags = 0x200;
    /// The entry differs but the receiver protects its path (daemon `--protect`): it is
    /// neither written nor deleted there. Sent alone, never with other flags.
    pub const PROTECTED: Flags = 0x400;
    /// A hard link to this file must be made: its contents travel again, so that the link
    /// is made from the file the push writes, never from whatever is at its path (not shown
    /// in itemized output; rsync links to the file in place).
    pub const RELINK: Flags = 0x800;
}

/// Whether an entry with these change flags needs its contents sent.
pub fn needs_data(kind: EntryKind, flags: change::Flags, checksum_mode: bool) -> bool {
    if kind != EntryKind::File || flags == 0 {
        return false;
    }
    let mut data = change::MISSING | change::TYPE | change::SIZE | change::SUM | change::RELINK;
    if !checksum_mode {
        data |= change::TIME;
    }
    flags & data != 0
}

/// rsync-style itemized change string (`>f+++++++++`, `>f.st......`, `cd+++++++++`,
/// `hf+++++++++`, `cD+++++++++`, `.f.......ax`, ...) for an entry with the given change
/// flags, as a dry run prints it: `>` a file whose contents travel, `h` a hard link, `c` an
/// item created or whose value (link text, device number) changes, `.` attributes only;
/// then the type (`f d L D S`) and the columns `c s t p o g u a x`. A hard link only to be
/// re-linked shows blanks, as rsync's does; [`itemize_suffix`] gives the ` => target`.
pub fn itemize(e: &Entry, flags: change::Flags) -> String {
    let flags = flags & !change::RELINK;
    let t = match e.kind {
        EntryKind::File | EntryKind::HardLink => 'f',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'L',
        EntryKind::Device => 'D',
        EntryKind::Fifo | EntryKind::Socket => 'S',
    };
    let created = flags & (change::MISSING | change::TYPE) != 0;
    let y = match e.kind {
        EntryKind::HardLink => 'h',
        EntryKind::File if created || needs_data(e.kind, flags, false) => '>',
        EntryKind::File => '.',
        _ if created || flags & (change::SUM | change::LINK) != 0 => 'c',
        _ => '.',
    };
    if created {
        return format!("{y}{t}+++++++++");
    }
    if e.kind == EntryKind::HardLink && flags == change::LINK {
        return format!("{y}{t}         ");
    }
    let c = |bit: change::Flags, ch: char| if flags & bit != 0 { ch } else { '.' };
    // The value column: contents by checksum, a symlink's text, a device's number.
    let value = if e.kind == EntryKind::Symlink {
        change::LINK
    } else {
        change::SUM
    };
    format!(
        "{y}{t}{}{}{}{}{}{}.{}{}",
        c(value, 'c'),
        c(change::SIZE, 's'),
        c(change::TIME, 't'),
        c(change::PERM, 'p'),
        c(change::OWNER, 'o'),
        c(change::OWNER, 'g'),
        c(change::ACL, 'a'),
        c(change::XATTR, 'x'),
    )
}

/// What rsync prints after the path of an itemized entry: ` -> TEXT` for a symlink,
/// ` => TARGET` for a hard link that is created or re-linked; `None` otherwise. The text is
/// raw bytes from the network: the caller escapes it.
pub fn itemize_suffix(e: &Entry, flags: change::Flags) -> Option<(&'static str, &[u8])> {
    match e.kind {
        EntryKind::Symlink => Some((" -> ", &e.target)),
        EntryKind::HardLink if flags & (change::MISSING | change::TYPE | change::LINK) != 0 => {
            Some((" => ", &e.target))
        }
        _ => None,
    }
}

/// Where each sent file sits in the payload stream: the contents of the entries selected by
/// the plan, concatenated in manifest order with no padding.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// `(entry index, offset in payload, size)`, sorted by offset; zero-size files omitted.
    pub spans: Vec<(u32, u64, u64)>,
    /// Total payload bytes.
    pub len: u64,
}

impl Layout {
    /// Builds the layout of the entries whose bit is set in `plan` (one bit per entry, LSB
    /// first). Entries that are not regular files are ignored; a sparse file contributes its
    /// data extents only ([`Entry::payload_len`]), and offsets inside a span are offsets in
    /// that data ([`Entry::file_ranges`] maps them to the file).
    pub fn new(manifest: &Manifest, plan: &[u8]) -> Self {
        let mut spans = Vec::new();
        let mut off = 0u64;
        for (i, e) in manifest.entries.iter().enumerate() {
            let n = e.payload_len();
            if n > 0 && bit(plan, i) {
                spans.push((i as u32, off, n));
                off += n;
            }
        }
        Self { spans, len: off }
    }

    /// Indices into `spans` of the spans overlapping payload bytes `[start, end)`.
    pub fn overlapping(&self, start: u64, end: u64) -> std::ops::Range<usize> {
        let first = self
            .spans
            .partition_point(|&(_, off, size)| off + size <= start);
        let last = self.spans.partition_point(|&(_, off, _)| off < end);
        first..last.max(first)
    }
}

/// Reads bit `i` of an LSB-first bitmap; bits past the end are 0.
pub fn bit(map: &[u8], i: usize) -> bool {
    map.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Sets bit `i` of an LSB-first bitmap (which must be long enough).
pub fn set_bit(map: &mut [u8], i: usize) {
    map[i / 8] |= 1 << (i % 8);
}
