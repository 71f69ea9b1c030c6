//! The sender's side of the file kinds beyond files, directories and symlinks, as rsync's
//! `-H -S -D -X -A` keep them: which special files a walk sends, a device's number, the data
//! extents of a sparse file (`SEEK_DATA`/`SEEK_HOLE`), extended attributes and ACLs, and the
//! grouping of hard-linked files so that each travels once.
//!
//! Reads only; writes nothing. Called by the walk (`tree.rs`) for each path it lists, and
//! reads each through the walk's confined [`Source`] (never by full path).

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use rustix::fs::{fgetxattr, fgetxattr_query, flistxattr, flistxattr_query, seek, SeekFrom};
use rustix::io::Errno;

use crate::apply::source::Source;

use crate::proto::manifest::ext::{
    acl_shape_ok, xattr_class, XattrClass, MAX_EXTENTS, MAX_XATTRS, MAX_XATTR_BYTES,
    MAX_XATTR_VALUE,
};
use crate::proto::manifest::{DevNum, Entry, EntryKind, Extents, PushOptions, Xattr};

/// Which kinds a walk looks for beyond files, directories and symlinks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindOptions {
    /// Group hard-linked files (`-H`).
    pub hard_links: bool,
    /// List the data extents of sparse files (`-S`).
    pub sparse: bool,
    /// Send block and character devices (`--devices`).
    pub devices: bool,
    /// Send FIFOs and sockets (`--specials`).
    pub specials: bool,
    /// Read extended attributes (`-X`).
    pub xattrs: bool,
    /// Read POSIX ACLs (`-A`).
    pub acls: bool,
}

impl KindOptions {
    /// Files, directories and symlinks only.
    pub const NONE: Self = Self {
        hard_links: false,
        sparse: false,
        devices: false,
        specials: false,
        xattrs: false,
        acls: false,
    };

    /// What a push with these options sends.
    pub fn of(o: &PushOptions) -> Self {
        Self {
            hard_links: o.hard_links,
            sparse: o.sparse,
            devices: o.devices,
            specials: o.specials,
            xattrs: o.xattrs,
            acls: o.acls,
        }
    }
}

/// The entry kind of a path that is neither a file, a directory nor a symlink, if these
/// options send it; otherwise why not.
pub fn special_kind(md: &Metadata, o: &KindOptions) -> Result<EntryKind, &'static str> {
    let ft = md.file_type();
    if ft.is_block_device() || ft.is_char_device() {
        if o.devices {
            return Ok(EntryKind::Device);
        }
        return Err("device not transferred (use -D or --devices)");
    }
    if ft.is_fifo() || ft.is_socket() {
        if o.specials {
            return Ok(if ft.is_fifo() {
                EntryKind::Fifo
            } else {
                EntryKind::Socket
            });
        }
        return Err(if ft.is_fifo() {
            "FIFO not transferred (use -D or --specials)"
        } else {
            "socket not transferred (use -D or --specials)"
        });
    }
    Err("unknown file type not transferred")
}

/// Fills what entry `e` (just made from `md`, the metadata of `path`) carries beyond the
/// basics: a device's number, a sparse file's extents, attributes. What cannot travel whole
/// (an attribute over the caps) is left out and said in `warn`.
pub(crate) fn describe(
    src: &mut Source,
    md: &Metadata,
    e: &mut Entry,
    o: &KindOptions,
    warn: &mut Vec<String>,
) -> io::Result<()> {
    if e.kind == EntryKind::Device {
        let rdev = md.rdev();
        e.extra.get_mut().device = Some(DevNum {
            block: md.file_type().is_block_device(),
            major: rustix::fs::major(rdev),
            minor: rustix::fs::minor(rdev),
        });
    }
    // A file with fewer blocks than its size needs has holes.
    if o.sparse && e.kind == EntryKind::File && md.blocks().saturating_mul(512) < md.len() {
        if let Some(x) = data_extents(&src.open_file(&e.path)?, md.len())? {
            e.extra.get_mut().extents = Some(x);
        }
    }
    if (o.xattrs || o.acls) && matches!(e.kind, EntryKind::File | EntryKind::Dir) {
        let f = if e.kind == EntryKind::Dir {
            src.open_dir(&e.path)?
        } else {
            src.open_file(&e.path)?
        };
        let xattrs = read_xattrs(&f, e.kind, o, warn)?;
        if !xattrs.is_empty() {
            e.extra.get_mut().xattrs = xattrs;
        }
    }
    Ok(())
}

/// The data extents of the open file `f` (of `size` bytes), found with `SEEK_DATA` and
/// `SEEK_HOLE`, at most [`MAX_EXTENTS`] (the closest are merged beyond that); `None` when it
/// has no hole or its file system cannot say.
pub fn data_extents(f: &File, size: u64) -> io::Result<Option<Extents>> {
    let mut spans = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let data = match seek(f, SeekFrom::Data(pos)) {
            Ok(d) => d,
            // No data from `pos` on: the rest is a hole.
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if data >= size {
            break;
        }
        let hole = seek(f, SeekFrom::Hole(data))?.min(size);
        if hole <= data {
            // The file changed under us; send it whole.
            return Ok(None);
        }
        spans.push((data, hole - data));
        pos = hole;
    }
    if spans == [(0, size)] {
        return Ok(None);
    }
    Ok(Extents::new(merge_extents(spans, MAX_EXTENTS), size).ok())
}

/// Merges the extents separated by the smallest holes until at most `max` remain (the
/// merged holes then travel as zeros).
fn merge_extents(spans: Vec<(u64, u64)>, max: usize) -> Vec<(u64, u64)> {
    if spans.len() <= max || max == 0 {
        return spans;
    }
    // The gaps to keep: the `max - 1` largest (ties broken by position, so exactly that many).
    let mut gaps: Vec<(u64, usize)> = spans
        .windows(2)
        .enumerate()
        .map(|(i, w)| (w[1].0 - (w[0].0 + w[0].1), i))
        .collect();
    gaps.sort_unstable_by(|a, b| b.cmp(a));
    let mut keep = vec![false; spans.len()];
    for &(_, i) in &gaps[..max - 1] {
        keep[i] = true;
    }
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(max);
    let mut cur = spans[0];
    for i in 1..spans.len() {
        if keep[i - 1] {
            out.push(cur);
            cur = spans[i];
        } else {
            cur.1 = spans[i].0 + spans[i].1 - cur.0;
        }
    }
    out.push(cur);
    out
}

/// Calls `get` with a buffer of the size `query` says, again if the value grew meanwhile.
fn sized(
    mut query: impl FnMut() -> rustix::io::Result<usize>,
    mut get: impl FnMut(&mut Vec<u8>) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    for _ in 0..4 {
        let n = query()?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; n];
        match get(&mut buf) {
            Ok(k) => {
                buf.truncate(k);
                return Ok(buf);
            }
            Err(Errno::RANGE) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

/// The attributes of the open file or directory `f` a push carries, sorted by name:
/// `user.*` with `-X` (and `trusted.*`/`security.*` when the sender runs as root, as rsync),
/// the ACLs with `-A` (a default ACL only on a directory). Those over the caps are left out
/// with a warning.
fn read_xattrs(
    f: &File,
    kind: EntryKind,
    o: &KindOptions,
    warn: &mut Vec<String>,
) -> io::Result<Vec<Xattr>> {
    let root = rustix::process::geteuid().is_root();
    let wanted = |name: &[u8]| match xattr_class(name) {
        Some(XattrClass::User) => o.xattrs,
        Some(XattrClass::Privileged) => o.xattrs && root,
        Some(XattrClass::Acl) => o.acls && (kind == EntryKind::Dir || name.ends_with(b"access")),
        None => false,
    };
    let names = match sized(|| flistxattr_query(f), |b| flistxattr(f, b)) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !wanted(name) {
            continue;
        }
        let value = match sized(|| fgetxattr_query(f, name), |b| fgetxattr(f, name, b)) {
            Ok(v) => v,
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        out.push(Xattr {
            name: name.to_vec(),
            value,
        });
    }
    out.sort();
    let mut total = 0;
    let mut kept = Vec::with_capacity(out.len());
    for x in out {
        let shown = crate::escape::exact(&x.name).into_owned();
        let why = if xattr_class(&x.name) == Some(XattrClass::Acl) && !acl_shape_ok(&x.value) {
            Some("not a POSIX ACL makuo can carry".to_string())
        } else if x.value.len() > MAX_XATTR_VALUE {
            Some(format!("value over {MAX_XATTR_VALUE} bytes"))
        } else if kept.len() >= MAX_XATTRS {
            Some(format!("more than {MAX_XATTRS} attributes"))
        } else if total + x.name.len() + x.value.len() > MAX_XATTR_BYTES {
            Some(format!("more than {MAX_XATTR_BYTES} bytes of attributes"))
        } else {
            None
        };
        match why {
            Some(why) => warn.push(format!("extended attribute {shown} not sent: {why}")),
            None => {
                total += x.name.len() + x.value.len();
                kept.push(x);
            }
        }
    }
    Ok(kept)
}

/// Turns every regular file of `entries` (in tree order) whose inode, from `inodes` (path →
/// device and inode, for files with more than one link), was seen on an earlier entry into a
/// hard link to that entry: it then carries no contents and no attributes of its own.
pub fn group_hard_links(entries: &mut [Entry], inodes: &HashMap<Vec<u8>, (u64, u64)>) {
    if inodes.is_empty() {
        return;
    }
    let mut first: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for e in entries.iter_mut().filter(|e| e.kind == EntryKind::File) {
        let Some(id) = inodes.get(&e.path) else {
            continue;
        };
        match first.get(id) {
            None => {
                first.insert(*id, e.path.clone());
            }
            Some(leader) => {
                e.kind = EntryKind::HardLink;
                e.target = leader.clone();
                e.size = 0;
                e.extra = Default::default();
                e.checksum = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn merging_keeps_the_largest_holes() {
        let spans = vec![(0, 1), (2, 1), (10, 1), (12, 1), (100, 1)];
        assert_eq!(merge_extents(spans.clone(), 5), spans);
        assert_eq!(merge_extents(spans.clone(), 3), [(0, 3), (10, 3), (100, 1)]);
        assert_eq!(merge_extents(spans.clone(), 1), [(0, 101)]);
        let many: Vec<(u64, u64)> = (0..10_000).map(|i| (i * 10, 1)).collect();
        let m = merge_extents(many, MAX_EXTENTS);
        assert_eq!(m.len(), MAX_EXTENTS);
        assert!(Extents::new(m, 100_000).is_ok());
    }

    #[test]
    fn holes_are_found_with_seek_data() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sparse");
        let f = fs::File::create(&p).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&[7u8; 4096], 1 << 20).unwrap();
        f.set_len(8 << 20).unwrap();
        drop(f);
        let x = data_extents(&fs::File::open(&p).unwrap(), 8 << 20)
            .unwrap()
            .expect("a file with holes");
        assert_eq!(x.data_len(), 4096);
        assert_eq!(x.spans(), [(1 << 20, 4096)]);
        let dense = d.path().join("dense");
        fs::write(&dense, vec![1u8; 10_000]).unwrap();
        assert_eq!(
            data_extents(&fs::File::open(&dense).unwrap(), 10_000).unwrap(),
            None
        );
        let hole = d.path().join("hole");
        fs::File::create(&hole).unwrap().set_len(1 << 30).unwrap();
        let hole = fs::File::open(&hole).unwrap();
        assert_eq!(data_extents(&hole, 1 << 30).unwrap().unwrap().data_len(), 0);
    }

    #[test]
    fn hard_links_point_at_the_first_path() {
        let mut es = vec![
            Entry::file(b"a", 5, 0o644, 0),
            Entry::file(b"b", 5, 0o644, 0),
            Entry::file(b"c", 7, 0o644, 0),
            Entry::file(b"d", 5, 0o644, 0),
        ];
        let inodes: HashMap<Vec<u8>, (u64, u64)> = [
            (b"a".to_vec(), (1, 10)),
            (b"b".to_vec(), (1, 10)),
            (b"c".to_vec(), (1, 11)),
            (b"d".to_vec(), (1, 10)),
        ]
        .into();
        group_hard_links(&mut es, &inodes);
        let kinds: Vec<_> = es
            .iter()
            .map(|e| (e.kind, e.target.clone(), e.size))
            .collect();
        assert_eq!(
            kinds,
            [
                (EntryKind::File, vec![], 5),
                (EntryKind::HardLink, b"a".to_vec(), 0),
                (EntryKind::File, vec![], 7),
                (EntryKind::HardLink, b"a".to_vec(), 0),
            ]
        );
    }
}
