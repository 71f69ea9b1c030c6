//! The file kinds rsync's `-a -H -S -D` keep, and `-X`/`-A`, pushed with the real binary to
//! daemons on loopback: hard links, FIFOs and sockets, device nodes (only on a daemon started
//! with `--allow-devices`, as root), sparse files, extended attributes and ACLs; and the dry
//! run's itemized lines for each, with rsync as the oracle.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::*;
use rustix::fs::{lgetxattr, lsetxattr, XattrFlags};

fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

fn mkfifo(p: &Path, mode: u32) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(mode),
        0,
    )
    .unwrap();
}

fn mknod(p: &Path, block: bool, major: u32, minor: u32) {
    let t = if block {
        rustix::fs::FileType::BlockDevice
    } else {
        rustix::fs::FileType::CharacterDevice
    };
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        t,
        rustix::fs::Mode::from_raw_mode(0o640),
        rustix::fs::makedev(major, minor),
    )
    .unwrap();
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    lsetxattr(p, name, value, XattrFlags::empty()).unwrap();
}

fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    lgetxattr(p, name, &mut buf).ok().map(|n| buf[..n].to_vec())
}

/// A POSIX ACL in the kernel's xattr form: `(tag, perm, id)` entries, sorted by tag and id.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

const NO_ID: u32 = u32::MAX;

/// `user::rw- user:1000:rw- group::r-- mask::rw- other::r--`.
fn file_acl() -> Vec<u8> {
    acl(&[
        (0x01, 6, NO_ID),
        (0x02, 6, 1000),
        (0x04, 4, NO_ID),
        (0x10, 6, NO_ID),
        (0x20, 4, NO_ID),
    ])
}

/// `user::rwx user:1000:r-x group::r-x mask::r-x other::r-x`.
fn dir_acl() -> Vec<u8> {
    acl(&[
        (0x01, 7, NO_ID),
        (0x02, 5, 1000),
        (0x04, 5, NO_ID),
        (0x10, 5, NO_ID),
        (0x20, 5, NO_ID),
    ])
}

fn ok_table(r: &Run, n: usize) -> Vec<Row> {
    assert_eq!(r.code, 0, "push failed:\n{r}");
    let t = r.table(n);
    assert!(t.iter().all(|row| row.result == "ok"), "{r}");
    t
}

/// Review of issue 12, F12: a writer of a member's upload directory swaps the link target
/// for a file of its own (same size, mode and time); the next push links nothing to it.
#[test]
fn a_swapped_hard_link_target_is_rewritten_not_linked_to() {
    let mut c = Cluster::new();
    c.add("m1", &["--no-fsync"]);
    let m1 = c.base("m1").to_path_buf();
    write(&c.src, "media/banner.txt", "official banner v1\n");
    fs::create_dir_all(c.src.join("static")).unwrap();
    fs::hard_link(
        c.src.join("media/banner.txt"),
        c.src.join("static/banner.txt"),
    )
    .unwrap();
    ok_table(&c.sync("-r -H ."), 1);
    assert_eq!(
        ino(&m1.join("media/banner.txt")),
        ino(&m1.join("static/banner.txt"))
    );

    let target = m1.join("media/banner.txt");
    let md = fs::symlink_metadata(&target).unwrap();
    let mine = m1.join("media/.mine");
    fs::write(&mine, "ATTACKER CONTENT!!\n").unwrap();
    fs::set_permissions(&mine, md.permissions()).unwrap();
    fs::File::options()
        .write(true)
        .open(&mine)
        .unwrap()
        .set_modified(md.modified().unwrap())
        .unwrap();
    fs::rename(&mine, &target).unwrap();
    let evil = ino(&target);

    let t = ok_table(&c.sync("-r -H ."), 1);
    assert_eq!(t[0].bytes, 19);
    let got = fs::read(m1.join("static/banner.txt")).unwrap();
    assert_eq!(got, b"official banner v1\n");
    assert_eq!(fs::read(&target).unwrap(), b"official banner v1\n");
    assert_ne!(ino(&m1.join("static/banner.txt")), evil);
    assert_eq!(ino(&m1.join("static/banner.txt")), ino(&target));
}

#[test]
fn hard_links_arrive_as_one_inode_with_h_and_as_copies_without() {
    let mut c = Cluster::new();
    c.add("m1", &["--no-fsync"]);
    let m1 = c.base("m1").to_path_buf();
    write(&c.src, "d/a", "shared contents");
    fs::hard_link(c.src.join("d/a"), c.src.join("d/b")).unwrap();
    fs::hard_link(c.src.join("d/a"), c.src.join("e")).unwrap();
    write(&c.src, "solo", "x");

    // Without -H: three files, the data three times.
    let t = ok_table(&c.sync("-r ."), 1);
    assert_eq!(t[0].bytes, 3 * 15 + 1);
    assert_ne!(ino(&m1.join("d/a")), ino(&m1.join("d/b")));

    // With -H the copies become one inode; the target's contents travel once more (a link
    // is made only from a file the push wrote, never to whatever is at the target's path).
    let t = ok_table(&c.sync("-r -H ."), 1);
    assert_eq!(t[0].bytes, 15);
    let a = ino(&m1.join("d/a"));
    assert_eq!(ino(&m1.join("d/b")), a);
    assert_eq!(ino(&m1.join("e")), a);
    assert_eq!(fs::symlink_metadata(m1.join("e")).unwrap().nlink(), 3);

    // New contents travel once, and every name still shares the new inode.
    fs::write(c.src.join("d/a"), "new shared contents").unwrap();
    let t = ok_table(&c.sync("-r --hard-links ."), 1);
    assert_eq!(t[0].bytes, 19);
    assert_eq!(fs::read(m1.join("e")).unwrap(), b"new shared contents");
    assert_eq!(ino(&m1.join("d/b")), ino(&m1.join("d/a")));
    assert_eq!(ino(&m1.join("e")), ino(&m1.join("d/a")));
    assert_identical(&c.src, &m1, "m1");

    // To an empty member, the data of a hard-linked group travels once.
    c.add("m2", &["--no-fsync"]);
    c.wait_converged(0);
    let r = c.direct("sync", &["-r", "-H", "-t", "m2", "."]);
    let t = ok_table(&r, 1);
    assert_eq!(t[0].bytes, 19 + 1);
    let m2 = c.base("m2");
    assert_eq!(ino(&m2.join("e")), ino(&m2.join("d/a")));
}

#[test]
fn fifos_and_sockets_arrive_with_d_through_a_daemon_console() {
    let mut c = Cluster::new();
    c.add("m1", &["--no-fsync"]);
    let src = c.path("sender-base");
    fs::create_dir(&src).unwrap();
    mkfifo(&src.join("pipe"), 0o640);
    let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    write(&src, "f", "x");
    let s = c.add_sender("sender", &src, &["--no-fsync"]);
    c.wait_converged(s);
    let console = c.daemons[s].console_addr();
    let m1 = c.base("m1").to_path_buf();

    // Without -D they are named and left out.
    let r = via(&console, "sync", "-r -t m1 .");
    assert!(
        r.stdout.contains("FIFO not transferred") || r.stderr.contains("FIFO not transferred"),
        "{r}"
    );
    assert!(!m1.join("pipe").exists());

    let r = via(&console, "sync", "-r -D -t m1 .");
    ok_table(&r, 1);
    let p = fs::symlink_metadata(m1.join("pipe")).unwrap();
    assert!(p.file_type().is_fifo());
    assert_eq!(p.mode() & 0o7777, 0o640);
    assert!(fs::symlink_metadata(m1.join("sock"))
        .unwrap()
        .file_type()
        .is_socket());
    // Nothing left to do.
    let r = via(&console, "sync", "-r --specials -t m1 -n .");
    assert_eq!(r.code, 0, "{r}");
    assert!(r.before_table(1).is_empty(), "{r}");
}

#[test]
fn device_nodes_arrive_only_on_daemons_with_allow_devices_as_root() {
    if !root_or_skip(
        "device_nodes_arrive_only_on_daemons_with_allow_devices_as_root",
        "making device nodes",
    ) {
        return;
    }
    let mut c = Cluster::new();
    c.add("plain", &["--no-fsync"]);
    c.add("devs", &["--no-fsync", "--allow-devices"]);
    mknod(&c.src.join("null"), false, 1, 3);
    mknod(&c.src.join("loop9"), true, 7, 9);
    write(&c.src, "f", "x");
    c.wait_converged(1);
    let r = c.sync("-r -D .");
    assert_eq!(r.code, 23, "a member refused: exit 23\n{r}");
    let plain = r.result_of("plain");
    assert!(
        plain.contains("null") && plain.contains("--allow-devices"),
        "the refusal names the path and the reason: {plain}\n{r}"
    );
    assert_eq!(r.result_of("devs"), "ok", "{r}");
    let devs = c.base("devs");
    let n = fs::symlink_metadata(devs.join("null")).unwrap();
    assert!(n.file_type().is_char_device());
    assert_eq!(n.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(n.mode() & 0o7777, 0o640);
    let l = fs::symlink_metadata(devs.join("loop9")).unwrap();
    assert!(l.file_type().is_block_device());
    assert_eq!(l.rdev(), rustix::fs::makedev(7, 9));
    let plain = c.base("plain");
    assert!(!plain.join("null").exists() && !plain.join("loop9").exists());
    assert_eq!(
        fs::read(plain.join("f")).unwrap(),
        b"x",
        "the rest still arrived"
    );
    assert_nothing_of_makuo(devs, "devs");
    // Without -D devices are not sent at all (and not refused).
    let r = c.direct("sync", &["-r", "-t", "plain", "."]);
    assert_eq!(r.code, 0, "{r}");
}

#[test]
fn a_sparse_gigabyte_with_one_block_of_data_arrives_sparse() {
    let mut c = Cluster::new();
    c.add("m1", &["--no-fsync"]);
    let size = 1u64 << 30;
    let at = 512u64 << 20;
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 + 1).collect();
    let f = fs::File::create(c.src.join("disk.img")).unwrap();
    f.write_all_at(&data, at).unwrap();
    f.set_len(size).unwrap();
    drop(f);
    write(&c.src, "small", "y");
    // Only the data block travels: 4 KiB, not 1 GiB.
    let t = ok_table(&c.sync("-r -S ."), 1);
    assert_eq!(t[0].bytes, 4096 + 1);
    let p = c.base("m1").join("disk.img");
    let md = fs::metadata(&p).unwrap();
    assert_eq!(md.len(), size);
    let allocated = md.blocks() * 512;
    assert!(allocated < 1 << 20, "{allocated} bytes allocated");
    let got = fs::File::open(&p).unwrap();
    let mut buf = vec![0u8; 3 * 4096];
    got.read_exact_at(&mut buf, at - 4096).unwrap();
    assert!(buf[..4096].iter().all(|&b| b == 0));
    assert_eq!(buf[4096..8192], data[..]);
    assert!(buf[8192..].iter().all(|&b| b == 0));
    // Up to date now: nothing travels.
    let t = ok_table(&c.sync("-r -S ."), 1);
    assert_eq!((t[0].files, t[0].bytes), (0, 0));
}

#[test]
fn xattrs_and_acls_arrive_with_x_and_a() {
    let mut c = Cluster::new();
    c.add("m1", &["--no-fsync"]);
    let m1 = c.base("m1").to_path_buf();
    fs::create_dir(c.src.join("d")).unwrap();
    write(&c.src, "d/f", "abc");
    write(&c.src, "d/g", "def");
    fs::set_permissions(
        c.src.join("d/f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o664),
    )
    .unwrap();
    set_xattr(&c.src.join("d/f"), "user.mime_type", b"text/plain");
    set_xattr(&c.src.join("d/f"), "system.posix_acl_access", &file_acl());
    set_xattr(&c.src.join("d"), "system.posix_acl_default", &dir_acl());
    set_xattr(&c.src.join("d"), "user.owner", b"web team");

    // Without -X/-A the attributes stay behind.
    ok_table(&c.sync("-r ."), 1);
    assert_eq!(get_xattr(&m1.join("d/f"), "user.mime_type"), None);
    assert_eq!(get_xattr(&m1.join("d/f"), "system.posix_acl_access"), None);

    let r = c.sync("-r -X -A .");
    ok_table(&r, 1);
    let f = m1.join("d/f");
    assert_eq!(get_xattr(&f, "user.mime_type").unwrap(), b"text/plain");
    assert_eq!(
        get_xattr(&f, "system.posix_acl_access").unwrap(),
        file_acl()
    );
    assert_eq!(
        get_xattr(&m1.join("d"), "system.posix_acl_default").unwrap(),
        dir_acl()
    );
    assert_eq!(get_xattr(&m1.join("d"), "user.owner").unwrap(), b"web team");
    assert_eq!(get_xattr(&m1.join("d/g"), "system.posix_acl_access"), None);
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, 0o664);

    // A changed attribute is itemized in rsync's x column, an ACL in its a column.
    set_xattr(&c.src.join("d/f"), "user.mime_type", b"text/html");
    set_xattr(&c.src.join("d/g"), "system.posix_acl_access", &file_acl());
    let r = c.sync("-r -n -X -A .");
    assert_eq!(r.code, 0, "{r}");
    let lines: BTreeSet<&str> = r.before_table(1).into_iter().collect();
    assert!(lines.contains(".f........x d/f"), "{r}");
    assert!(lines.contains(".f...p...a. d/g"), "{r}");
    ok_table(&c.sync("-r -X -A ."), 1);
    assert_eq!(get_xattr(&f, "user.mime_type").unwrap(), b"text/html");
    assert_eq!(
        get_xattr(&m1.join("d/g"), "system.posix_acl_access").unwrap(),
        file_acl()
    );
}

/// What `rsync -n -i` would do from `src` to `dst`, lines sorted; `None` without rsync.
fn rsync_itemized(src: &Path, dst: &Path, args: &[&str]) -> Option<BTreeSet<String>> {
    let out = match Command::new("rsync")
        .args(["-n", "-i"])
        .args(args)
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dst.display()))
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("running rsync: {e}"),
    };
    assert!(out.status.success(), "rsync: {out:?}");
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
    )
}

#[test]
fn every_kind_is_itemized_as_rsync_itemizes_it() {
    if !root_or_skip(
        "every_kind_is_itemized_as_rsync_itemizes_it",
        "device nodes and rsync -D",
    ) {
        return;
    }
    let mut c = Cluster::new();
    c.add("m1", &["--no-fsync", "--allow-devices"]);
    let s = c.src.clone();
    write(&s, "a", "hello");
    fs::hard_link(s.join("a"), s.join("b")).unwrap();
    fs::hard_link(s.join("a"), s.join("c")).unwrap();
    write(&s, "x", "x");
    set_xattr(&s.join("x"), "user.foo", b"bar");
    set_xattr(&s.join("a"), "system.posix_acl_access", &file_acl());
    mkfifo(&s.join("fifo"), 0o644);
    mknod(&s.join("bdev"), true, 7, 0);
    std::os::unix::fs::symlink("a", s.join("l")).unwrap();
    let flags = "-r -H -D -X -A";
    ok_table(&c.sync(&format!("{flags} .")), 1);
    let m = c.base("m1").to_path_buf();

    // Changes of every kind, on either side.
    set_xattr(&s.join("x"), "user.foo", b"baz");
    set_xattr(
        &s.join("a"),
        "system.posix_acl_access",
        &acl(&[
            (0x01, 6, NO_ID),
            (0x02, 6, 1000),
            (0x02, 4, 1001),
            (0x04, 4, NO_ID),
            (0x10, 6, NO_ID),
            (0x20, 4, NO_ID),
        ]),
    );
    fs::remove_file(m.join("c")).unwrap();
    fs::remove_file(m.join("bdev")).unwrap();
    mknod(&m.join("bdev"), true, 7, 1);
    set_mtime(&m.join("bdev"), 1_000_000_000, 0);
    fs::remove_file(m.join("fifo")).unwrap();
    fs::write(m.join("fifo"), "not a fifo").unwrap();
    mkfifo(&s.join("fifo2"), 0o600);
    mknod(&s.join("cdev"), false, 1, 3);
    fs::remove_file(s.join("l")).unwrap();
    std::os::unix::fs::symlink("x", s.join("l")).unwrap();
    set_mtime(&s.join("l"), 1_000_000_000, 0);

    let r = c.sync(&format!("-n {flags} ."));
    assert_eq!(r.code, 0, "{r}");
    let ours: BTreeSet<String> = r.before_table(1).into_iter().map(str::to_string).collect();
    let Some(theirs) = rsync_itemized(&s, &m, &["-rlptHDAX"]) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "rsync is the oracle here: install it"
        );
        eprintln!("skipping the rsync comparison: rsync not found");
        return;
    };
    assert_eq!(
        ours,
        theirs,
        "\nonly makuo: {:?}\nonly rsync: {:?}",
        ours.difference(&theirs).collect::<Vec<_>>(),
        theirs.difference(&ours).collect::<Vec<_>>()
    );
    // The lines rsync and makuo agree on cover every kind.
    for want in [
        "hf+++++++++ c => a",
        "cDc.t...... bdev",
        "cS+++++++++ fifo",
        ".f........x x",
    ] {
        assert!(ours.contains(want), "{want:?} missing from {ours:?}");
    }
}
