//! The manifest's extension sections: what the file kinds beyond files, directories and
//! symlinks carry (device numbers, the data extents of sparse files, extended attributes and
//! POSIX ACLs), their bounds, and their codec.
//!
//! They travel after the entries, in sections (tag u8, *varint* length, body), so that a
//! manifest without them is byte for byte what earlier versions send, and one with them is
//! refused whole (trailing bytes) by a decoder that does not know them, never misread. Every
//! record names its entry by index, and is checked against that entry's kind here: a device
//! number only on a device, extents only on a file and within its size, attributes only on a
//! file or directory, with names in the namespaces makuo carries and sizes under the caps.

use super::{DirRules, EntryKind, FilterTable, Manifest, RuleBudget, WireRule};
use crate::proto::wire::{Reader, WireError, Writer};

/// Most data extents one sparse file may list; a sender merges the closest ones beyond it
/// (the bytes of a merged hole then travel as zeros).
pub const MAX_EXTENTS: usize = 4096;
/// Longest extended attribute name (bytes, namespace included; Linux's `XATTR_NAME_MAX`).
pub const MAX_XATTR_NAME: usize = 255;
/// Largest extended attribute value (bytes; Linux's `XATTR_SIZE_MAX`).
pub const MAX_XATTR_VALUE: usize = 64 << 10;
/// Most extended attributes (ACLs included) one entry may carry.
pub const MAX_XATTRS: usize = 128;
/// Most bytes of names and values together one entry may carry.
pub const MAX_XATTR_BYTES: usize = 256 << 10;
/// Most entries one POSIX ACL may hold.
pub const MAX_ACL_ENTRIES: usize = 1024;

/// The access ACL of a file or directory, as the kernel stores it.
pub const ACL_ACCESS: &[u8] = b"system.posix_acl_access";
/// The default ACL of a directory (inherited by what is created in it).
pub const ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

/// The filter table (rules beyond include/exclude; see [`FilterTable`]).
const SEC_FILTER: u8 = 1;
const SEC_DEVICES: u8 = 2;
const SEC_EXTENTS: u8 = 3;
const SEC_XATTRS: u8 = 4;
/// The release switch (`--release NAME`, `rollback NAME`; see `release.rs`).
const SEC_RELEASE: u8 = 5;
/// The push's start time (Unix ms): one record, a u64.
const SEC_ORDER: u8 = 6;
/// Encoded length of the order section (tag, length 9, count 1, u64); it is always last.
pub(super) const ORDER_SECTION_LEN: usize = 11;

/// A device node's type and number (entries of kind [`EntryKind::Device`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DevNum {
    /// A block device (`b`); otherwise a character device (`c`).
    pub block: bool,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

/// The data extents of a sparse file: `(file offset, length)` pairs, sorted, non-empty,
/// non-overlapping and within the file's size. Only these bytes travel in the payload
/// (concatenated, in order); the rest of the file is holes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extents {
    // Boxed slices: every manifest entry has room for these.
    spans: Box<[(u64, u64)]>,
    /// Payload offset of each span's first byte.
    starts: Box<[u64]>,
}

/// Why a list of extents is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadExtents;

impl Extents {
    /// Checks and indexes `spans` for a file of `size` bytes.
    pub fn new(spans: Vec<(u64, u64)>, size: u64) -> Result<Self, BadExtents> {
        if spans.len() > MAX_EXTENTS {
            return Err(BadExtents);
        }
        let mut starts = Vec::with_capacity(spans.len());
        let mut end = 0u64;
        let mut data = 0u64;
        for (i, &(at, len)) in spans.iter().enumerate() {
            let stop = at.checked_add(len).ok_or(BadExtents)?;
            if len == 0 || (i > 0 && at < end) || stop > size {
                return Err(BadExtents);
            }
            starts.push(data);
            data += len;
            end = stop;
        }
        Ok(Self {
            spans: spans.into(),
            starts: starts.into(),
        })
    }

    /// The `(file offset, length)` pairs.
    pub fn spans(&self) -> &[(u64, u64)] {
        &self.spans
    }

    /// Bytes of data (what travels in the payload).
    pub fn data_len(&self) -> u64 {
        match (self.starts.last(), self.spans.last()) {
            (Some(s), Some(&(_, n))) => s + n,
            _ => 0,
        }
    }

    /// The file ranges `(file offset, length)` holding payload bytes `[off, off + len)` of
    /// this file, in order (their lengths add up to what of that range lies in the data).
    pub fn map(&self, off: u64, len: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let end = off.saturating_add(len).min(self.data_len());
        let off = off.min(end);
        let first = self.starts.partition_point(|&s| s <= off).saturating_sub(1);
        self.spans[first.min(self.spans.len())..]
            .iter()
            .zip(&self.starts[first.min(self.starts.len())..])
            .map_while(move |(&(at, n), &s)| {
                if s >= end {
                    return None;
                }
                let a = off.max(s);
                let b = end.min(s + n);
                Some((at + (a - s), b.saturating_sub(a)))
            })
            .filter(|&(_, n)| n > 0)
    }
}

/// One extended attribute (or POSIX ACL, as its `system.posix_acl_*` attribute).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Xattr {
    /// Full name, namespace included (`user.mime_type`).
    pub name: Vec<u8>,
    /// Value, raw bytes (for an ACL the kernel's `posix_acl_xattr` form).
    pub value: Vec<u8>,
}

/// Which class of attribute a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrClass {
    /// `user.*`: applied by any daemon.
    User,
    /// `trusted.*` or `security.*`: sent by a root sender, applied only by a daemon that
    /// reproduces owners (as root, `--preserve-owner`), like set-id bits.
    Privileged,
    /// `system.posix_acl_access` / `system.posix_acl_default` (`-A`).
    Acl,
}

/// The class of attribute `name` is, or `None` for a name makuo never carries (another
/// namespace, an empty remainder, NUL, too long).
pub fn xattr_class(name: &[u8]) -> Option<XattrClass> {
    if name.len() > MAX_XATTR_NAME || name.contains(&0) {
        return None;
    }
    if name == ACL_ACCESS || name == ACL_DEFAULT {
        return Some(XattrClass::Acl);
    }
    let rest = |p: &[u8]| name.strip_prefix(p).is_some_and(|r| !r.is_empty());
    if rest(b"user.") {
        Some(XattrClass::User)
    } else if rest(b"trusted.") || rest(b"security.") {
        Some(XattrClass::Privileged)
    } else {
        None
    }
}

/// Checks the shape of a POSIX ACL value (`posix_acl_xattr`: version 2, then 8-byte
/// entries); the kernel checks the rest when it is set.
pub fn acl_shape_ok(v: &[u8]) -> bool {
    v.len() >= 4
        && (v.len() - 4) % 8 == 0
        && (v.len() - 4) / 8 <= MAX_ACL_ENTRIES
        && v[..4] == 2u32.to_le_bytes()
}

/// Checks an entry's attribute list: sorted by name without repeats, every name of a class
/// the push carries (`user.*`/`trusted.*`/`security.*` with `xattrs`, ACLs with `acls`), a
/// default ACL only on a directory, and the caps.
pub fn check_xattrs(
    list: &[Xattr],
    kind: EntryKind,
    xattrs: bool,
    acls: bool,
) -> Result<(), WireError> {
    if list.len() > MAX_XATTRS {
        return Err(WireError::TooLarge("xattrs"));
    }
    if !list.is_empty() && !matches!(kind, EntryKind::File | EntryKind::Dir) {
        return Err(WireError::BadValue("xattrs on this kind"));
    }
    let mut total = 0usize;
    for (i, x) in list.iter().enumerate() {
        if i > 0 && list[i - 1].name >= x.name {
            return Err(WireError::BadValue("xattr order"));
        }
        if x.value.len() > MAX_XATTR_VALUE {
            return Err(WireError::TooLarge("xattr value"));
        }
        total += x.name.len() + x.value.len();
        let ok = match xattr_class(&x.name) {
            None => false,
            Some(XattrClass::Acl) => {
                acls && acl_shape_ok(&x.value) && (x.name == ACL_ACCESS || kind == EntryKind::Dir)
            }
            Some(_) => xattrs,
        };
        if !ok {
            return Err(WireError::BadValue("xattr name"));
        }
    }
    if total > MAX_XATTR_BYTES {
        return Err(WireError::TooLarge("xattrs"));
    }
    Ok(())
}

/// Appends the extension sections of `m` (none when no entry needs one, so such a
/// manifest encodes as before). A push with `-X`/`-A` always carries the attribute
/// section, so that a member that cannot apply attributes refuses it rather than ignore them.
pub(super) fn encode_sections(m: &Manifest, w: &mut Writer) {
    if let Some(t) = m
        .filter
        .as_ref()
        .filter(|t| !t.rules.is_empty() || !t.dirs.is_empty())
    {
        section(w, SEC_FILTER, |b| {
            super::encode_rules(b, &t.rules);
            b.varint(t.dirs.len() as u64);
            for d in &t.dirs {
                b.varint(d.merge as u64);
                b.bytes_v(&d.dir);
                b.u8(d.clear as u8);
                super::encode_rules(b, &d.rules);
            }
        });
    }
    let entries = &m.entries;
    let devices: Vec<(usize, DevNum)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.device().map(|d| (i, d)))
        .collect();
    if !devices.is_empty() {
        section(w, SEC_DEVICES, |b| {
            b.varint(devices.len() as u64);
            let mut next = 0;
            for (i, d) in devices {
                b.varint((i - next) as u64);
                next = i + 1;
                b.u8(if d.block { b'b' } else { b'c' });
                b.varint(d.major.into());
                b.varint(d.minor.into());
            }
        });
    }
    let sparse: Vec<(usize, &Extents)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.extents().map(|x| (i, x)))
        .collect();
    if !sparse.is_empty() {
        section(w, SEC_EXTENTS, |b| {
            b.varint(sparse.len() as u64);
            let mut next = 0;
            for (i, x) in sparse {
                b.varint((i - next) as u64);
                next = i + 1;
                b.varint(x.spans.len() as u64);
                let mut end = 0;
                for &(at, len) in x.spans.iter() {
                    b.varint(at - end);
                    b.varint(len);
                    end = at + len;
                }
            }
        });
    }
    let attrs: Vec<usize> = (0..entries.len())
        .filter(|&i| !entries[i].xattrs().is_empty())
        .collect();
    if !attrs.is_empty() || m.options.xattrs || m.options.acls {
        section(w, SEC_XATTRS, |b| {
            b.varint(attrs.len() as u64);
            let mut next = 0;
            for i in attrs {
                b.varint((i - next) as u64);
                next = i + 1;
                b.varint(entries[i].xattrs().len() as u64);
                for x in entries[i].xattrs() {
                    b.bytes_v(&x.name);
                    b.bytes_v(&x.value);
                }
            }
        });
    }
    if let Some(r) = &m.options.release {
        section(w, SEC_RELEASE, |b| super::release::encode(r, b));
    }
    if let Some(t) = m.started_ms {
        section(w, SEC_ORDER, |b| {
            b.varint(1);
            b.raw(&t.to_be_bytes());
        });
    }
}

fn section(w: &mut Writer, tag: u8, body: impl FnOnce(&mut Writer)) {
    let mut b = Writer::new();
    body(&mut b);
    let b = b.into_vec();
    w.u8(tag);
    w.bytes_v(&b);
}

/// Memory an entry's boxed extras take (`EntryExtra` and its box), counted for every record
/// of every section, so an entry named in several sections is counted more than once.
const EXTRA_MEMORY: u64 = 96;

/// Memory that decoding the sections left in `r` takes beyond the entries themselves
/// (whose own size `ENTRY_MEMORY` counts): per record the entry's extras, per sparse file
/// its extents, per attribute its name, value and bookkeeping. Walks the records without
/// building them; errors are those of a malformed section's framing.
pub(super) fn sections_memory(
    r: &mut Reader<'_>,
    budget: &mut RuleBudget,
) -> Result<u64, WireError> {
    let mut total = 0u64;
    while r.remaining() > 0 {
        let tag = r.u8()?;
        let mut b = Reader::new(r.bytes_v(usize::MAX)?);
        let count = b.count(2)?;
        total += EXTRA_MEMORY * count as u64;
        match tag {
            SEC_FILTER => {
                total -= EXTRA_MEMORY * count as u64;
                // A rule as decoded, and the most its compiled form may take.
                fn rules(
                    b: &mut Reader<'_>,
                    n: usize,
                    budget: &mut RuleBudget,
                ) -> Result<u64, WireError> {
                    let mut t = 0u64;
                    for _ in 0..n {
                        b.u8()?;
                        let len = b.bytes_v(super::MAX_PATH)?.len();
                        t += 48 + len as u64 + budget.charge(len)?;
                    }
                    Ok(t)
                }
                total += rules(&mut b, count, budget)?;
                for _ in 0..b.count(4)? {
                    budget.list()?;
                    b.varint()?;
                    total += 64 + b.bytes_v(super::MAX_PATH)?.len() as u64;
                    b.u8()?;
                    let n = b.count(2)?;
                    total += rules(&mut b, n, budget)?;
                }
            }
            SEC_EXTENTS => {
                for _ in 0..count {
                    b.varint()?;
                    let k = b.count(2)?.min(MAX_EXTENTS + 1);
                    // Two boxed slices: offset and length, and the payload start.
                    total += 32 + 24 * k as u64;
                    for _ in 0..2 * k {
                        b.varint()?;
                    }
                }
            }
            SEC_XATTRS => {
                for _ in 0..count {
                    b.varint()?;
                    let k = b.count(2)?.min(MAX_XATTRS + 1);
                    for _ in 0..k {
                        let name = b.bytes_v(MAX_XATTR_NAME)?.len();
                        let value = b.bytes_v(MAX_XATTR_VALUE)?.len();
                        total += (48 + name + value) as u64;
                    }
                }
            }
            // Device numbers live in the entry; anything else is refused when decoding.
            _ => {}
        }
    }
    Ok(total)
}

/// The entry index a record names: `prev + delta` (records come in increasing order).
fn index(r: &mut Reader<'_>, next: &mut usize, n: usize) -> Result<usize, WireError> {
    let d = r.varint()?;
    let i = u64::try_from(*next)
        .ok()
        .and_then(|x| x.checked_add(d))
        .filter(|&i| i < n as u64)
        .ok_or(WireError::BadValue("section entry index"))? as usize;
    *next = i + 1;
    Ok(i)
}

/// Reads the extension sections that follow the entries (everything left in `r`) into
/// `m`'s entries and checks them: each section at most once and in tag order, no unknown
/// tag, every record fitting its entry's kind, every device entry with its number.
pub(super) fn decode_sections(
    r: &mut Reader<'_>,
    m: &mut Manifest,
    budget: &mut RuleBudget,
) -> Result<(), WireError> {
    let n = m.entries.len();
    let mut last = 0u8;
    let mut attrs_seen = false;
    while r.remaining() > 0 {
        let tag = r.u8()?;
        if tag <= last {
            return Err(WireError::BadValue("section order"));
        }
        last = tag;
        attrs_seen |= tag == SEC_XATTRS;
        let body = r.bytes_v(usize::MAX)?;
        let mut b = Reader::new(body);
        let mut next = 0usize;
        // Canonical: a section is there only when it says something (the attribute section
        // of a `-X`/`-A` push always is, and never otherwise).
        let count = b.count(2)?;
        let pointless = match tag {
            SEC_XATTRS => !(m.options.xattrs || m.options.acls),
            // Rules or per-directory lists: a table with neither is never sent.
            SEC_FILTER => false,
            _ => count == 0,
        };
        if pointless {
            return Err(WireError::BadValue("empty or unasked section"));
        }
        match tag {
            SEC_FILTER => {
                let t = decode_filter(&mut b, count, budget)?;
                if t.rules.is_empty() && t.dirs.is_empty() {
                    return Err(WireError::BadValue("empty or unasked section"));
                }
                m.filter = Some(t);
            }
            SEC_DEVICES => {
                for _ in 0..count {
                    let i = index(&mut b, &mut next, n)?;
                    let block = match b.u8()? {
                        b'b' => true,
                        b'c' => false,
                        _ => return Err(WireError::BadValue("device type")),
                    };
                    let major = u32::try_from(b.varint()?)
                        .map_err(|_| WireError::BadValue("device major"))?;
                    let minor = u32::try_from(b.varint()?)
                        .map_err(|_| WireError::BadValue("device minor"))?;
                    let e = &mut m.entries[i];
                    if e.kind != EntryKind::Device {
                        return Err(WireError::BadValue("device number on this kind"));
                    }
                    e.extra.get_mut().device = Some(DevNum {
                        block,
                        major,
                        minor,
                    });
                }
            }
            SEC_EXTENTS => {
                for _ in 0..count {
                    let i = index(&mut b, &mut next, n)?;
                    let k = b.count(2)?;
                    if k > MAX_EXTENTS {
                        return Err(WireError::TooLarge("extents"));
                    }
                    let mut spans = Vec::with_capacity(k);
                    let mut end = 0u64;
                    for _ in 0..k {
                        let at = end
                            .checked_add(b.varint()?)
                            .ok_or(WireError::BadValue("extent"))?;
                        let len = b.varint()?;
                        end = at.checked_add(len).ok_or(WireError::BadValue("extent"))?;
                        spans.push((at, len));
                    }
                    let e = &mut m.entries[i];
                    if e.kind != EntryKind::File {
                        return Err(WireError::BadValue("extents on this kind"));
                    }
                    e.extra.get_mut().extents = Some(
                        Extents::new(spans, e.size).map_err(|_| WireError::BadValue("extents"))?,
                    );
                }
            }
            SEC_XATTRS => {
                for _ in 0..count {
                    let i = index(&mut b, &mut next, n)?;
                    let k = b.count(2)?;
                    if k > MAX_XATTRS {
                        return Err(WireError::TooLarge("xattrs"));
                    }
                    let mut list = Vec::with_capacity(k);
                    for _ in 0..k {
                        let name = b.bytes_v(MAX_XATTR_NAME)?.to_vec();
                        let value = b.bytes_v(MAX_XATTR_VALUE)?.to_vec();
                        list.push(Xattr { name, value });
                    }
                    if list.is_empty() {
                        return Err(WireError::BadValue("empty xattr record"));
                    }
                    let (xattrs, acls) = (m.options.xattrs, m.options.acls);
                    let e = &mut m.entries[i];
                    check_xattrs(&list, e.kind, xattrs, acls)?;
                    e.extra.get_mut().xattrs = list;
                }
            }
            SEC_RELEASE => {
                m.options.release = Some(Box::new(super::release::decode(&mut b, count)?))
            }
            SEC_ORDER => {
                if count != 1 {
                    return Err(WireError::BadValue("order section"));
                }
                m.started_ms = Some(b.u64()?);
            }
            _ => return Err(WireError::BadValue("unknown manifest section")),
        }
        b.finish()?;
    }
    if m.entries
        .iter()
        .any(|e| e.kind == EntryKind::Device && e.device().is_none())
    {
        return Err(WireError::BadValue("device without a number"));
    }
    if (m.options.xattrs || m.options.acls) && !attrs_seen {
        return Err(WireError::BadValue("attribute section missing"));
    }
    Ok(())
}

/// The filter table's body (its rule count already read): the rules, then the per-directory
/// lists, each naming a dir-merge rule of the list, a clean directory path, `clear` 0/1 and
/// rules that are not dir-merge rules themselves.
fn decode_filter(
    b: &mut Reader<'_>,
    count: usize,
    budget: &mut RuleBudget,
) -> Result<FilterTable, WireError> {
    let rules = super::decode_rules_n(b, count, budget)?;
    let n = b.count(4)?;
    let mut dirs = Vec::with_capacity(n);
    for _ in 0..n {
        budget.list()?;
        let merge = u32::try_from(b.varint()?).map_err(|_| WireError::BadValue("merge"))?;
        let is_merge = rules
            .get(merge as usize)
            .is_some_and(|x| x.flags & WireRule::DIR_MERGE != 0);
        if !is_merge {
            return Err(WireError::BadValue("per-directory rules"));
        }
        let dir = b.bytes_v(super::MAX_PATH)?.to_vec();
        super::check_rel_path(&dir).map_err(|_| WireError::BadValue("rule directory"))?;
        let clear = match b.u8()? {
            0 => false,
            1 => true,
            _ => return Err(WireError::BadValue("clear")),
        };
        let list = super::decode_rules(b, budget)?;
        if list.iter().any(|x| x.flags & WireRule::DIR_MERGE != 0) {
            return Err(WireError::BadValue("nested dir-merge"));
        }
        dirs.push(DirRules {
            merge,
            dir,
            clear,
            rules: list,
        });
    }
    b.finish()?;
    Ok(FilterTable { rules, dirs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_map_payload_to_file_ranges() {
        let x = Extents::new(vec![(0, 10), (100, 5), (200, 20)], 1000).unwrap();
        assert_eq!(x.data_len(), 35);
        let m = |o, l| x.map(o, l).collect::<Vec<_>>();
        assert_eq!(m(0, 35), [(0, 10), (100, 5), (200, 20)]);
        assert_eq!(m(8, 4), [(8, 2), (100, 2)]);
        assert_eq!(m(10, 5), [(100, 5)]);
        assert_eq!(m(15, 1), [(200, 1)]);
        assert_eq!(m(34, 10), [(219, 1)]);
        assert_eq!(m(35, 10), []);
        assert_eq!(m(u64::MAX, 1), []);
        let none = Extents::new(vec![], 1 << 30).unwrap();
        assert_eq!(none.data_len(), 0);
        assert_eq!(none.map(0, 10).count(), 0);
    }

    #[test]
    fn bad_extents_are_refused() {
        for bad in [
            vec![(0, 0)],
            vec![(0, 10), (5, 10)],
            vec![(10, 5), (0, 1)],
            vec![(990, 11)],
            vec![(u64::MAX, 2)],
        ] {
            assert!(Extents::new(bad.clone(), 1000).is_err(), "{bad:?}");
        }
        assert!(Extents::new(vec![(0, 1); MAX_EXTENTS + 1], u64::MAX).is_err());
        assert!(Extents::new(vec![(0, 10), (10, 10)], 20).is_ok());
    }

    #[test]
    fn xattr_names_and_acls_are_checked() {
        assert_eq!(xattr_class(b"user.a"), Some(XattrClass::User));
        assert_eq!(xattr_class(b"trusted.a"), Some(XattrClass::Privileged));
        assert_eq!(
            xattr_class(b"security.selinux"),
            Some(XattrClass::Privileged)
        );
        assert_eq!(xattr_class(ACL_ACCESS), Some(XattrClass::Acl));
        for bad in [
            &b"user."[..],
            b"system.nfs4_acl",
            b"os2.x",
            b"user.a\0b",
            b"",
            b"system.posix_acl_access2",
        ] {
            assert_eq!(xattr_class(bad), None, "{bad:?}");
        }
        let acl = [2u32.to_le_bytes().to_vec(), vec![0; 24]].concat();
        assert!(acl_shape_ok(&acl));
        assert!(!acl_shape_ok(&acl[..27]));
        assert!(!acl_shape_ok(&[1, 0, 0, 0]));
        let x = |n: &[u8], v: &[u8]| Xattr {
            name: n.to_vec(),
            value: v.to_vec(),
        };
        let f = EntryKind::File;
        assert!(check_xattrs(&[x(b"user.a", b"1"), x(b"user.b", b"")], f, true, false).is_ok());
        // Order, repeats, the push's switches, kinds, the default ACL only on directories.
        assert!(check_xattrs(&[x(b"user.b", b""), x(b"user.a", b"")], f, true, false).is_err());
        assert!(check_xattrs(&[x(b"user.a", b""), x(b"user.a", b"")], f, true, false).is_err());
        assert!(check_xattrs(&[x(b"user.a", b"")], f, false, true).is_err());
        assert!(check_xattrs(&[x(ACL_ACCESS, &acl)], f, true, false).is_err());
        assert!(check_xattrs(&[x(ACL_ACCESS, &acl)], f, false, true).is_ok());
        assert!(check_xattrs(&[x(ACL_DEFAULT, &acl)], f, false, true).is_err());
        assert!(check_xattrs(&[x(ACL_DEFAULT, &acl)], EntryKind::Dir, false, true).is_ok());
        assert!(check_xattrs(&[x(b"user.a", b"")], EntryKind::Symlink, true, true).is_err());
        let big = vec![0u8; MAX_XATTR_VALUE + 1];
        assert!(check_xattrs(&[x(b"user.a", &big)], f, true, false).is_err());
        let many: Vec<Xattr> = (0..=MAX_XATTRS)
            .map(|i| x(format!("user.{i:04}").as_bytes(), b""))
            .collect();
        assert!(check_xattrs(&many, f, true, false).is_err());
    }
}
