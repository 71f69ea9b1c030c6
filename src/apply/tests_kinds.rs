//! Unit tests of the file kinds beyond files, directories and symlinks on the receiving side:
//! FIFOs, sockets, device nodes, hard links, sparse files, extended attributes and ACLs.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::tests::{commit, manifest, push, storage, KEY};
use super::*;
use crate::proto::manifest::change;
use crate::proto::manifest::ext::{ACL_ACCESS, ACL_DEFAULT};
use crate::proto::manifest::needs_data;
use crate::proto::manifest::{DevNum, Extents, Xattr};

fn node(path: &[u8], kind: EntryKind, mode: u32, mtime: i64) -> Entry {
    Entry {
        kind,
        ..Entry::file(path, 0, mode, mtime)
    }
}

fn link(path: &[u8], target: &[u8]) -> Entry {
    Entry {
        target: target.to_vec(),
        ..node(path, EntryKind::HardLink, 0o644, 0)
    }
}

fn errors_mention(out: &CommitOutcome, what: &str) -> bool {
    out.errors.iter().any(|e| e.contains(what))
}

#[test]
fn fifos_and_sockets_are_made_on_any_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut s = storage(base);
    let m = manifest(vec![
        node(b"fifo", EntryKind::Fifo, 0o640, 1_500_000_000),
        node(b"sock", EntryKind::Socket, 0o600, 1_500_000_001),
    ]);
    let (ins, out) = push(&mut s, &m, &[b"", b""]);
    assert_eq!(ins.flags, [change::MISSING; 2]);
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(out.files, 2);
    let f = fs::symlink_metadata(base.join("fifo")).unwrap();
    assert!(f.file_type().is_fifo());
    assert_eq!((f.mode() & 0o7777, f.mtime()), (0o640, 1_500_000_000));
    let k = fs::symlink_metadata(base.join("sock")).unwrap();
    assert!(k.file_type().is_socket());
    assert_eq!((k.mode() & 0o7777, k.mtime()), (0o600, 1_500_000_001));
    assert_eq!(s.inspect(KEY, &m).unwrap().flags, [0, 0]);
    assert_eq!(
        fs::read_dir(base).unwrap().count(),
        2,
        "no temp name or private dir left"
    );
    // A mode change recreates the socket (never opened) and re-modes the FIFO.
    let mut m2 = m.clone();
    m2.entries[0].mode = 0o600;
    m2.entries[1].mode = 0o640;
    let (ins, out) = push(&mut s, &m2, &[b"", b""]);
    assert_eq!(ins.flags, [change::PERM; 2]);
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(s.inspect(KEY, &m2).unwrap().flags, [0, 0]);
}

#[test]
fn device_nodes_only_with_allow_devices_as_root() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut dev = node(b"null", EntryKind::Device, 0o666, 1_400_000_000);
    dev.extra.get_mut().device = Some(DevNum {
        block: false,
        major: 1,
        minor: 3,
    });
    let m = manifest(vec![dev.clone()]);
    // Without --allow-devices: refused, with the reason, and counted.
    let mut s = storage(base);
    let out = commit(&mut s, &m, &[change::MISSING], &[]);
    assert_eq!(out.files, 0);
    assert!(errors_mention(&out, "--allow-devices"), "{:?}", out.errors);
    assert_eq!(s.refused(), 1);
    assert_eq!(fs::read_dir(base).unwrap().count(), 0);

    let opts = ApplyOptions {
        allow_devices: true,
        ..Default::default()
    };
    let mut s = FsStorage::new(base.to_path_buf(), opts).unwrap();
    // Allowed but not root: refused too.
    let root = s.is_root;
    s.is_root = false;
    let out = commit(&mut s, &m, &[change::MISSING], &[]);
    assert!(errors_mention(&out, "root"), "{:?}", out.errors);
    assert_eq!(fs::read_dir(base).unwrap().count(), 0);
    if !root {
        eprintln!("skipping the rest of device_nodes_only_with_allow_devices_as_root: needs root");
        return;
    }
    s.is_root = true;
    let out = commit(&mut s, &m, &[change::MISSING], &[]);
    assert_eq!(out.errors, Vec::<String>::new());
    let md = fs::symlink_metadata(base.join("null")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!((md.mode() & 0o7777, md.mtime()), (0o666, 1_400_000_000));
    assert_eq!(s.inspect(KEY, &m).unwrap().flags, [0]);
    assert_eq!(fs::read_dir(base).unwrap().count(), 1);
    // Another number, or a block device of the same number, is a changed value.
    let mut m2 = m.clone();
    m2.entries[0].extra.get_mut().device = Some(DevNum {
        block: true,
        major: 7,
        minor: 0,
    });
    let f = s.inspect(KEY, &m2).unwrap().flags;
    assert_eq!(f, [change::SUM]);
    let out = commit(&mut s, &m2, &f, &[]);
    assert_eq!(out.errors, Vec::<String>::new());
    let md = fs::symlink_metadata(base.join("null")).unwrap();
    assert!(md.file_type().is_block_device());
    assert_eq!(md.rdev(), rustix::fs::makedev(7, 0));
}

#[test]
fn hard_links_arrive_as_one_inode_and_follow_their_target() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut s = storage(base);
    let mut m = manifest(vec![
        Entry::dir(b"d", 0o755, 0),
        Entry::file(b"d/a", 5, 0o640, 1_600_000_000),
        link(b"d/b", b"d/a"),
        link(b"e", b"d/a"),
    ]);
    let (ins, out) = push(&mut s, &m, &[b"", b"hello", b"", b""]);
    assert_eq!(ins.flags[2..], [change::MISSING; 2]);
    assert_eq!(out.errors, Vec::<String>::new());
    let ino = |p: &str| fs::symlink_metadata(base.join(p)).unwrap().ino();
    assert_eq!(ino("d/a"), ino("d/b"));
    assert_eq!(ino("d/a"), ino("e"));
    assert_eq!(fs::symlink_metadata(base.join("e")).unwrap().nlink(), 3);
    assert_eq!(s.inspect(KEY, &m).unwrap().flags, [0; 4]);

    // New contents: the target is replaced by a new file; the links follow it and show its
    // changes.
    m.entries[1].size = 6;
    m.entries[1].mtime += 1;
    let (ins, out) = push(&mut s, &m, &[b"", b"hello2", b"", b""]);
    let want = change::SIZE | change::TIME;
    assert_eq!(ins.flags[1..], [want; 3]);
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(fs::read(base.join("e")).unwrap(), b"hello2");
    assert_eq!(ino("d/a"), ino("e"));
    assert_eq!(ino("d/a"), ino("d/b"));

    // A path that is a separate copy is re-linked; its target's contents travel again (a
    // link is made only from a file this commit wrote), and every name gets the new inode.
    fs::remove_file(base.join("e")).unwrap();
    fs::copy(base.join("d/a"), base.join("e")).unwrap();
    let ins = s.inspect(KEY, &m).unwrap();
    assert_eq!(ins.flags, [0, change::RELINK, change::RELINK, change::LINK]);
    let (_, out) = push(&mut s, &m, &[b"", b"hello2", b"", b""]);
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(ino("d/a"), ino("e"));
    assert_eq!(ino("d/a"), ino("d/b"));
    assert_eq!(fs::symlink_metadata(base.join("e")).unwrap().nlink(), 3);
    assert_eq!(s.inspect(KEY, &m).unwrap().flags, [0; 4]);
}

/// Review of issue 12, F12: a writer of the target's directory swaps in a file of its own
/// with the same size, mode and time; the next push must not link anything to it.
#[test]
fn a_hard_link_is_made_only_to_the_file_this_push_wrote() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut s = storage(base);
    let m = manifest(vec![
        Entry::dir(b"media", 0o777, 0),
        Entry::dir(b"static", 0o755, 0),
        Entry::file(b"media/banner.txt", 19, 0o644, 1_600_000_000),
        link(b"static/banner.txt", b"media/banner.txt"),
    ]);
    let official: &[u8] = b"official banner v1\n";
    let (_, out) = push(&mut s, &m, &[b"", b"", official, b""]);
    assert_eq!(out.errors, Vec::<String>::new());
    let ino = |p: &str| fs::symlink_metadata(base.join(p)).unwrap().ino();
    assert_eq!(ino("media/banner.txt"), ino("static/banner.txt"));

    // The swap: same size, mode and mtime, another inode.
    let swap = |base: &Path| {
        let mine = base.join("media/.mine");
        fs::write(&mine, b"ATTACKER CONTENT!!\n").unwrap();
        fs::set_permissions(&mine, fs::Permissions::from_mode(0o644)).unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        fs::File::options()
            .write(true)
            .open(&mine)
            .unwrap()
            .set_modified(t)
            .unwrap();
        fs::rename(&mine, base.join("media/banner.txt")).unwrap();
        // The attacker keeps a name of its own for the inode, to check nothing links to it.
        fs::hard_link(base.join("media/banner.txt"), base.join("media/kept")).unwrap();
        ino("media/kept")
    };
    let evil = swap(base);
    let ins = s.inspect(KEY, &m).unwrap();
    assert_eq!(ins.flags[3], change::LINK);
    assert!(
        needs_data(EntryKind::File, ins.flags[2], false),
        "{:?}",
        ins.flags
    );
    let (_, out) = push(&mut s, &m, &[b"", b"", official, b""]);
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(fs::read(base.join("static/banner.txt")).unwrap(), official);
    assert_eq!(fs::read(base.join("media/banner.txt")).unwrap(), official);
    assert_eq!(ino("media/banner.txt"), ino("static/banner.txt"));
    assert_ne!(ino("static/banner.txt"), evil);
    assert_eq!(
        fs::symlink_metadata(base.join("media/kept"))
            .unwrap()
            .nlink(),
        1
    );

    // A commit asked to link to a target it did not write (the tree changed after the
    // inspection) refuses, and never links to what is at the target's path.
    fs::remove_file(base.join("media/kept")).unwrap();
    let evil = swap(base);
    let out = commit(&mut s, &m, &[0, 0, 0, change::LINK], &[]);
    assert!(
        errors_mention(&out, "changed since it was inspected"),
        "{:?}",
        out.errors
    );
    assert_ne!(ino("static/banner.txt"), evil);
    assert_eq!(fs::read(base.join("static/banner.txt")).unwrap(), official);
}

#[test]
fn a_hard_link_to_nothing_of_the_push_or_to_a_failed_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    fs::write(base.join("outside-the-push"), b"x").unwrap();
    let mut s = storage(base);
    // Not a file of the manifest (a decoder refuses it; storage refuses it again).
    let m = manifest(vec![link(b"l", b"outside-the-push")]);
    let out = commit(&mut s, &m, &[change::MISSING], &[]);
    assert!(errors_mention(&out, "not a regular file of this push"));
    assert!(!base.join("l").exists());
    // A target that failed (its staging was refused: a symlinked parent) fails its links.
    std::os::unix::fs::symlink("/tmp", base.join("sym")).unwrap();
    let m = manifest(vec![
        Entry::file(b"sym/f", 1, 0o644, 0),
        link(b"l", b"sym/f"),
    ]);
    let ins = s.inspect(KEY, &m).unwrap();
    assert!(s.write(KEY, 0, &m.entries[0], 0, b"x").is_err());
    let out = commit(&mut s, &m, &ins.flags, &[]);
    assert_eq!(out.files, 0);
    assert!(
        errors_mention(&out, "not linked: its target sym/f failed"),
        "{:?}",
        out.errors
    );
    assert!(!base.join("l").exists());
}

#[test]
fn a_sparse_gigabyte_arrives_with_its_holes() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut s = storage(base);
    let size = 1u64 << 30;
    let at = 512u64 << 20;
    let mut e = Entry::file(b"sparse.img", size, 0o644, 1_600_000_000);
    e.extra.get_mut().extents = Some(Extents::new(vec![(at, 4096)], size).unwrap());
    assert_eq!(e.payload_len(), 4096);
    // A small sparse file too (gathered in memory), with a hole at both ends.
    let mut small = Entry::file(b"small", 48 << 10, 0o644, 1_600_000_000);
    small.extra.get_mut().extents =
        Some(Extents::new(vec![(8192, 100), (20_000, 50)], 48 << 10).unwrap());
    let m = manifest(vec![e.clone(), small.clone()]);
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 + 1).collect();
    let sdata: Vec<u8> = (0..150u8).collect();
    // The payload is the data only: a write past it is refused.
    s.inspect(KEY, &m).unwrap();
    assert!(s.write(KEY, 0, &e, 4000, &[0; 97]).is_err());
    let (_, out) = push(&mut s, &m, &[&data, &sdata]);
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(out.bytes, 4096 + 150);
    let md = fs::metadata(base.join("sparse.img")).unwrap();
    assert_eq!(md.len(), size);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "{} bytes allocated",
        md.blocks() * 512
    );
    let f = fs::File::open(base.join("sparse.img")).unwrap();
    let mut buf = vec![0u8; 8192];
    use std::os::unix::fs::FileExt;
    f.read_exact_at(&mut buf, at - 4096).unwrap();
    assert!(buf[..4096].iter().all(|&b| b == 0));
    assert_eq!(buf[4096..], data[..]);
    let got = fs::read(base.join("small")).unwrap();
    assert_eq!(got.len(), 48 << 10);
    assert_eq!(got[8192..8292], sdata[..100]);
    assert_eq!(got[20_000..20_050], sdata[100..]);
    assert!(got[..8192]
        .iter()
        .chain(&got[8292..20_000])
        .all(|&b| b == 0));
    assert!(got[20_050..].iter().all(|&b| b == 0));
    let small_md = fs::metadata(base.join("small")).unwrap();
    assert!(
        small_md.blocks() * 512 < 48 << 10,
        "the small file's holes were written"
    );
    assert_eq!(s.inspect(KEY, &m).unwrap().flags, [0, 0]);
}

#[test]
fn staged_sparse_data_reads_back_through_the_extents() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = storage(tmp.path());
    let size = 10u64 << 20;
    let mut e = Entry::file(b"f", size, 0o644, 0);
    e.extra.get_mut().extents =
        Some(Extents::new(vec![(1 << 20, 70_000), (5 << 20, 70_000)], size).unwrap());
    let m = manifest(vec![e.clone()]);
    s.inspect(KEY, &m).unwrap();
    let data: Vec<u8> = (0..140_000u32).map(|i| (i % 253) as u8).collect();
    s.write(KEY, 0, &e, 0, &data).unwrap();
    // Payload bytes 69,990..70,010 straddle the two extents.
    let mut back = [0u8; 20];
    s.read_staged(KEY, 0, &e, 69_990, &mut back).unwrap();
    assert_eq!(back[..], data[69_990..70_010]);
    let mut past = [0u8; 20];
    assert!(s.read_staged(KEY, 0, &e, 139_990, &mut past).is_err());
    s.abort(KEY);
}

fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

const NONE: u32 = u32::MAX;

fn xa(name: &[u8], value: &[u8]) -> Xattr {
    Xattr {
        name: name.to_vec(),
        value: value.to_vec(),
    }
}

fn get(path: &Path, name: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    rustix::fs::lgetxattr(path, name, &mut buf)
        .ok()
        .map(|n| buf[..n].to_vec())
}

#[test]
fn xattrs_and_acls_match_the_push_before_the_rename() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut s = storage(base);
    // user::rw- user:1000:rw- group::r-- mask::rw- other::r--
    let file_acl = acl(&[
        (0x01, 6, NONE),
        (0x02, 6, 1000),
        (0x04, 4, NONE),
        (0x10, 6, NONE),
        (0x20, 4, NONE),
    ]);
    let dir_acl = acl(&[
        (0x01, 7, NONE),
        (0x02, 7, 1000),
        (0x04, 5, NONE),
        (0x10, 7, NONE),
        (0x20, 5, NONE),
    ]);
    let mut d = Entry::dir(b"d", 0o755, 0);
    d.extra.get_mut().xattrs = vec![xa(ACL_DEFAULT, &dir_acl), xa(b"user.dir", b"yes")];
    let mut f = Entry::file(b"d/f", 3, 0o664, 1_600_000_000);
    f.extra.get_mut().xattrs = vec![xa(ACL_ACCESS, &file_acl), xa(b"user.mime", b"text/plain")];
    let mut m = manifest(vec![d, f, Entry::file(b"d/plain", 1, 0o644, 0)]);
    m.options.xattrs = true;
    m.options.acls = true;
    let (_, out) = push(&mut s, &m, &[b"", b"abc", b"x"]);
    assert_eq!(out.errors, Vec::<String>::new());
    let fp = base.join("d/f");
    assert_eq!(get(&fp, b"user.mime").as_deref(), Some(&b"text/plain"[..]));
    assert_eq!(get(&fp, ACL_ACCESS), Some(file_acl.clone()));
    assert_eq!(get(&base.join("d"), ACL_DEFAULT), Some(dir_acl));
    assert_eq!(
        get(&base.join("d"), b"user.dir").as_deref(),
        Some(&b"yes"[..])
    );
    // The mode's group bits are the ACL's mask, as on the sender.
    assert_eq!(fs::metadata(&fp).unwrap().mode() & 0o777, 0o664);
    assert_eq!(get(&base.join("d/plain"), ACL_ACCESS), None);
    assert_eq!(s.inspect(KEY, &m).unwrap().flags, [0; 3]);
    // A file made in a directory with a default ACL inherits one: with -A it is removed.
    let mut m3 = m.clone();
    m3.entries.push(Entry::file(b"d/plain2", 1, 0o644, 0));
    let (_, out) = push(&mut s, &m3, &[b"", b"", b"", b"y"]);
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(get(&base.join("d/plain2"), ACL_ACCESS), None);
    let mut inherits = m3.clone();
    inherits.options.acls = false;
    for e in &mut inherits.entries {
        e.extra
            .get_mut()
            .xattrs
            .retain(|x| !x.name.starts_with(b"system."));
    }
    inherits.entries[3].path = b"d/plain3".to_vec();
    let (_, out) = push(&mut s, &inherits, &[b"", b"", b"", b"y"]);
    assert_eq!(out.errors, Vec::<String>::new());
    assert!(
        get(&base.join("d/plain3"), ACL_ACCESS).is_some(),
        "no ACL was inherited"
    );

    // A changed value, an extra user attribute: XATTR; a changed ACL: ACL.
    rustix::fs::lsetxattr(&fp, "user.mime", b"x", rustix::fs::XattrFlags::empty()).unwrap();
    rustix::fs::lsetxattr(&fp, "user.extra", b"1", rustix::fs::XattrFlags::empty()).unwrap();
    let p = base.join("d/plain");
    rustix::fs::lsetxattr(&p, "user.extra", b"1", rustix::fs::XattrFlags::empty()).unwrap();
    let ins = s.inspect(KEY, &m).unwrap();
    assert_eq!(ins.flags, [0, change::XATTR, change::XATTR]);
    let out = commit(&mut s, &m, &ins.flags, &[]);
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(get(&fp, b"user.extra"), None);
    assert_eq!(get(&p, b"user.extra"), None);
    assert_eq!(get(&fp, b"user.mime").as_deref(), Some(&b"text/plain"[..]));
    let mut m2 = m.clone();
    m2.entries[1].extra.get_mut().xattrs.remove(0);
    assert_eq!(s.inspect(KEY, &m2).unwrap().flags, [0, change::ACL, 0]);

    // Without -X/-A a push leaves attributes alone.
    let mut plain = m.clone();
    plain.options.xattrs = false;
    plain.options.acls = false;
    for e in &mut plain.entries {
        e.extra = Default::default();
    }
    assert_eq!(s.inspect(KEY, &plain).unwrap().flags, [0; 3]);
}

#[test]
fn names_of_makuos_temp_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut s = storage(base);
    fs::write(base.join("a"), b"a").unwrap();
    let m = manifest(vec![
        Entry::file(b"a", 1, 0o644, 0),
        Entry::file(b"new/.f.makuo-AAAAAA", 1, 0o644, 0),
        Entry::file(b".d.makuo-AAAAAA/f", 1, 0o644, 0),
        link(b".l.makuo-BBBBBB", b"a"),
    ]);
    let ins = s.inspect(KEY, &m).unwrap();
    assert_eq!(ins.flags[1..], [change::MISSING; 3]);
    for i in [1, 2] {
        assert!(s.write(KEY, i, &m.entries[i as usize], 0, b"x").is_err());
    }
    let out = commit(&mut s, &m, &ins.flags, &[]);
    assert_eq!(out.errors.len(), 3, "{:?}", out.errors);
    assert!(errors_mention(&out, "makuo's own"));
    assert!(!base.join("new/.f.makuo-AAAAAA").exists());
    assert!(!base.join(".d.makuo-AAAAAA").exists());
    assert!(!base.join(".l.makuo-BBBBBB").exists());
    assert!(s.refused() >= 3);
}
