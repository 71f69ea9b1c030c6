//! Unit tests of the receiver's and sender's disk side.

use super::names::{is_temp_name, temp_name, NAME_MAX};
use super::*;
use crate::proto::manifest::{change, needs_data};
use crate::proto::storage::md5_of;
use crate::proto::storage::show;
use std::ffi::OsStr;
use std::fs;
use std::fs::Permissions;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::time::{Duration, SystemTime};

pub(super) const KEY: XferKey = XferKey { origin: 1, xfer: 7 };

pub(super) fn storage(base: &Path) -> FsStorage {
    FsStorage::new(base.to_path_buf(), ApplyOptions::default()).unwrap()
}

pub(super) fn manifest(entries: Vec<Entry>) -> Manifest {
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

pub(super) fn commit(
    s: &mut FsStorage,
    m: &Manifest,
    flags: &[change::Flags],
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
pub(super) fn push(s: &mut FsStorage, m: &Manifest, data: &[&[u8]]) -> (Inspection, CommitOutcome) {
    let ins = s.inspect(KEY, m).unwrap();
    for (i, e) in m.entries.iter().enumerate() {
        if needs_data(e.kind, ins.flags[i], m.options.checksum) && e.payload_len() > 0 {
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
pub(super) fn temps(dir: &Path) -> Vec<PathBuf> {
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
    // The directories staging made are gone too: a push that is not committed leaves the
    // tree as it was.
    assert!(!base.join("d").exists());

    // Leftovers of a crash.
    fs::create_dir_all(base.join("d/e")).unwrap();
    fs::write(base.join(".a.makuo-Abc123"), b"").unwrap();
    fs::write(base.join("d/e/.b.makuo-zzzzzz"), b"").unwrap();
    symlink("nowhere", base.join("d/.l.makuo-000000")).unwrap();
    fs::write(base.join(".a.makuo-notes"), b"").unwrap();
    fs::write(base.join("a.makuo-Abc123"), b"").unwrap();
    let fd = File::open(base).unwrap();
    assert_eq!(
        sweep_temp(std::os::fd::AsFd::as_fd(&fd), &Default::default()).unwrap(),
        3
    );
    assert!(temps(base).is_empty());
    assert!(base.join(".a.makuo-notes").exists() && base.join("a.makuo-Abc123").exists());
}

#[test]
fn many_staged_files_stay_within_the_fd_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut s = storage(base);
    s.max_open = 64;
    let n = s.max_open + 50;
    // Bigger than GATHER_FILE: each is on disk from its first write.
    let entries: Vec<_> = (0..n)
        .map(|i| Entry::file(format!("f{i}").as_bytes(), 100_000, 0o644, 0))
        .collect();
    let m = manifest(entries);
    for (i, e) in m.entries.iter().enumerate() {
        s.write(KEY, i as u32, e, 0, b"a").unwrap();
        assert!(s.open_count <= s.max_open);
    }
    // Second halves reopen the files closed on the way (each checked to be ours).
    for (i, e) in m.entries.iter().enumerate() {
        s.write(KEY, i as u32, e, 1, b"b").unwrap();
    }
    assert!(s.open_count <= s.max_open);
    let out = commit(&mut s, &m, &vec![change::MISSING; n], &[]);
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(out.files as usize, n);
    let f0 = fs::read(base.join("f0")).unwrap();
    assert_eq!((&f0[..2], f0.len()), (&b"ab"[..], 100_000));
    assert_eq!(s.open_count, 0);
    assert!(temps(base).is_empty());
}

/// Root can make a file owned by someone else, as an attacker's own file would be.
fn root_or_skip(what: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what}: needs root in CI"
    );
    eprintln!("skipping {what}: needs root");
    false
}

#[test]
fn a_staged_file_closed_over_budget_and_swapped_is_refused_on_reopen() {
    if !root_or_skip("a_staged_file_closed_over_budget_and_swapped_is_refused_on_reopen") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut s = storage(base);
    s.max_open = 1;
    let data = vec![b'r'; 100_000];
    let m = manifest(vec![
        file(b"a", &data, 0o644, 0),
        file(b"b", &data, 0o644, 0),
    ]);
    let ins = s.inspect(KEY, &m).unwrap();
    s.write(KEY, 0, &m.entries[0], 0, &data[..50_000]).unwrap();
    let ta = temps(base);
    // Staging b closes a's descriptor: its inode number may now be handed out again.
    s.write(KEY, 1, &m.entries[1], 0, &data).unwrap();
    assert_eq!(s.open_count, 1);
    // Someone else's file under a's temp name (same inode number or not).
    fs::remove_file(&ta[0]).unwrap();
    fs::write(&ta[0], vec![b'x'; 50_000]).unwrap();
    std::os::unix::fs::chown(&ta[0], Some(65534), Some(65534)).unwrap();
    let err = s.write(KEY, 0, &m.entries[0], 50_000, &data[50_000..]);
    assert!(err.unwrap_err().to_string().contains("replaced"));
    let mut buf = [0u8; 4];
    let err = s
        .read_staged(KEY, 0, &m.entries[0], 0, &mut buf)
        .unwrap_err();
    assert!(err.to_string().contains("replaced"), "{err}");
    let out = commit(&mut s, &m, &ins.flags, &[]);
    assert_eq!(out.files, 1, "{:?}", out.errors);
    assert!(out.errors[0].contains("replaced"), "{:?}", out.errors);
    assert!(!base.join("a").exists());
    assert_eq!(fs::read(base.join("b")).unwrap(), data);
}

#[test]
fn a_staged_file_linked_elsewhere_is_not_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut s = storage(base);
    let data = vec![b'r'; 100_000];
    let m = manifest(vec![file(b"f", &data, 0o4755, 0)]);
    let ins = s.inspect(KEY, &m).unwrap();
    s.write(KEY, 0, &m.entries[0], 0, &data).unwrap();
    s.complete(KEY, 0, &m).unwrap();
    // A second name kept by someone would outlive every later push of f.
    fs::hard_link(&temps(base)[0], base.join("kept")).unwrap();
    let out = commit(&mut s, &m, &ins.flags, &[]);
    assert_eq!(out.files, 0, "{:?}", out.errors);
    assert!(out.errors[0].contains("replaced"), "{:?}", out.errors);
    assert!(!base.join("f").exists());
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
            deletions: vec![],
            refused: None,
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
    e[5].mtime = 200; // directories get TIME too (rsync's .d..t......)
    e[6].mode = 0o700;
    e[7].target = b"b".to_vec();
    e[7].mode = 0o644; // symlinks never get PERM
    e[8].mtime = 101;
    e.push(Entry::file(b"missing", 1, 0o644, 0));
    let flags = s.inspect(KEY, &m2).unwrap().flags;
    use change::*;
    assert_eq!(
        flags,
        vec![0, SIZE, TIME, PERM, TYPE, TIME, PERM, LINK, TIME, MISSING]
    );

    // And committing them brings the tree to the new manifest.
    let out = commit(
        &mut s,
        &m2,
        &[0, 0, TIME, PERM, TYPE, TIME, PERM, LINK, TIME, 0],
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

#[test]
fn owners_and_set_id_bits_only_with_owner_preservation() {
    if !root_or_skip("owners_and_set_id_bits_only_with_owner_preservation") {
        return;
    }
    let entries = || {
        let mut f = file(b"suid", b"#!/bin/sh\n", 0o6755, 0);
        let mut d = Entry::dir(b"shared", 0o3775, 0);
        (f.uid, f.gid, d.uid, d.gid) = (0, 0, 65534, 65534);
        let mut g = file(b"theirs", b"x", 0o644, 0);
        (g.uid, g.gid) = (65534, 65534);
        let mut m = manifest(vec![f, d, g]);
        m.options.owners = true;
        m
    };
    let data: [&[u8]; 3] = [b"#!/bin/sh\n", b"", b"x"];
    // Off (the default): the daemon's own owner, setuid/setgid/sticky stripped.
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let m = entries();
    let (_, out) = push(&mut storage(base), &m, &data);
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(mode(&base.join("suid")), 0o755);
    assert_eq!(mode(&base.join("shared")), 0o775);
    assert_eq!(fs::metadata(base.join("theirs")).unwrap().uid(), 0);
    // On: exactly what was pushed.
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let opts = ApplyOptions {
        preserve_owner: true,
        ..Default::default()
    };
    let mut s = FsStorage::new(base.to_path_buf(), opts).unwrap();
    let (_, out) = push(&mut s, &m, &data);
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(mode(&base.join("suid")), 0o6755);
    assert_eq!(mode(&base.join("shared")), 0o3775);
    let md = fs::metadata(base.join("shared")).unwrap();
    assert_eq!((md.uid(), md.gid()), (65534, 65534));
    assert_eq!(fs::metadata(base.join("theirs")).unwrap().uid(), 65534);
    assert_eq!(s.inspect(KEY, &m).unwrap().flags, vec![0; 3]);
}

#[test]
fn a_push_never_changes_the_base_directorys_own_owner_or_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    fs::set_permissions(base, Permissions::from_mode(0o750)).unwrap();
    let before = fs::metadata(base).unwrap();
    for preserve_owner in [false, true] {
        let opts = ApplyOptions {
            preserve_owner,
            ..Default::default()
        };
        let mut s = FsStorage::new(base.to_path_buf(), opts).unwrap();
        let mut dot = Entry::dir(b".", 0o7777, 1_234_567);
        (dot.uid, dot.gid) = (65534, 65534);
        let mut m = manifest(vec![dot, file(b"f", b"f", 0o644, 0)]);
        m.options.owners = true;
        let ins = s.inspect(KEY, &m).unwrap();
        assert_eq!(ins.flags[0] & (change::PERM | change::OWNER), 0);
        let (_, out) = push(&mut s, &m, &[b"", b"f"]);
        assert_eq!(out.errors, Vec::<String>::new());
        // Even when told explicitly.
        let all = change::PERM | change::OWNER | change::TIME;
        let out = commit(&mut s, &m, &[all, 0], &[]);
        assert_eq!(out.errors, Vec::<String>::new());
        let md = fs::metadata(base).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o750, "preserve_owner {preserve_owner}");
        assert_eq!((md.uid(), md.gid()), (before.uid(), before.gid()));
    }
}

/// Issue 12 review, F1: a transfer's filter is compiled once (at inspection) and used
/// again at commit, then dropped; one that cannot be compiled protects everything.
#[test]
fn filter_is_compiled_once_per_transfer_and_dropped_after() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    fs::write(base.join("old.txt"), b"o").unwrap();
    fs::write(base.join("old.log"), b"l").unwrap();
    let mut s = storage(base);
    let mut m = manifest(vec![]);
    m.options.delete = true;
    m.rules = vec![crate::proto::manifest::FilterRule {
        include: false,
        pattern: "*.log".into(),
    }];
    let ins = s.inspect(KEY, &m).unwrap();
    assert_eq!(ins.deletions, vec![b"old.txt".to_vec()]);
    let compiled = s.filters.get(&KEY).expect("kept for the commit").clone();
    assert_eq!(Arc::strong_count(&compiled), 2);
    // The commit uses the very same compiled filter.
    let seen = Arc::as_ptr(&s.filter_of(KEY, &m));
    assert_eq!(seen, Arc::as_ptr(&compiled));
    let out = commit(&mut s, &m, &ins.flags, &ins.deletions);
    assert_eq!(out.deleted, 1);
    assert!(s.filters.is_empty(), "dropped after the commit");
    assert!(base.join("old.log").exists());
    // Aborted transfers drop theirs too.
    s.inspect(KEY, &m).unwrap();
    s.abort(KEY);
    assert!(s.filters.is_empty());
    // Rules that cannot be compiled protect everything, and the commit says why.
    m.rules[0].pattern = "**a".repeat(1300);
    fs::write(base.join("new.txt"), b"n").unwrap();
    let ins = s.inspect(KEY, &m).unwrap();
    assert!(ins.deletions.is_empty());
    let out = commit(&mut s, &m, &ins.flags, &[b"new.txt".to_vec()]);
    assert_eq!(out.deleted, 0);
    assert!(
        out.errors.iter().any(|e| e.contains("too complex")),
        "{:?}",
        out.errors
    );
    assert!(base.join("new.txt").exists());
}

/// Issue 12 review, F1: evaluating the filter is metered: once over its time budget,
/// every path is protected.
#[test]
fn metered_filter_protects_everything_once_over_budget() {
    let f = Filter::new(&[crate::proto::manifest::FilterRule {
        include: false,
        pattern: "*.log".into(),
    }])
    .unwrap();
    let generous = Metered::new(&f, Duration::from_secs(3600), 8);
    assert!(generous.protected(b"a.log", false));
    assert!(!generous.protected(b"a.txt", false));
    assert!(!generous.overrun());
    // No free time and no ratio: the first evaluation uses the budget up.
    let none = Metered::new(&f, Duration::ZERO, 0);
    let _ = none.protected(b"a.log", false);
    std::thread::sleep(Duration::from_millis(1));
    let _ = none.protected(b"b.log", false);
    assert!(none.overrun());
    assert!(none.protected(b"a.txt", false), "over budget: protected");
}

/// Issue 12 review, F7: a directory chain 20,000 levels deep in a receiver's tree (a base
/// writer's doing) crashed the member: the deletion scan, tree removal and start-up sweep
/// recursed once per level, holding a descriptor per level. They are iterative now,
/// within `walk::MAX_DEPTH` levels and `walk::OPEN_DIRS` descriptors.
#[test]
fn a_twenty_thousand_level_chain_crashes_nothing() {
    use super::walk::tests::{deep_chain, remove_chain};
    use super::walk::MAX_DEPTH;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    deep_chain(base, 20_000, b".x.makuo-AAAAAA");
    fs::write(base.join("old.txt"), b"o").unwrap();
    let mut s = storage(base);
    let mut m = manifest(vec![]);
    m.options.delete = true;
    // The deletion scan: what lies too deep to see is kept, with its parents.
    let ins = s.inspect(KEY, &m).unwrap();
    assert_eq!(ins.deletions, vec![b"old.txt".to_vec()]);
    // Removing the chain: refused with a reason, nothing crashes.
    let out = commit(&mut s, &m, &ins.flags, &[b"d".to_vec()]);
    assert_eq!(out.deleted, 0);
    assert!(
        out.errors.iter().any(|e| e.contains("directory levels")),
        "{:?}",
        out.errors
    );
    // The start-up sweep walks down to the cap and leaves the rest.
    assert_eq!(sweep_temp(s.base_dir(), &Default::default()).unwrap(), 0);
    remove_chain(base);
    // Within the cap: the sweep finds the deepest temp file, and the tree is removed.
    deep_chain(base, MAX_DEPTH - 1, b".x.makuo-BBBBBB");
    assert_eq!(sweep_temp(s.base_dir(), &Default::default()).unwrap(), 1);
    deep_chain_leaf(base, MAX_DEPTH - 1, b"leaf");
    let ins = s.inspect(KEY, &m).unwrap();
    assert_eq!(ins.deletions, vec![b"old.txt".to_vec(), b"d".to_vec()]);
    let out = commit(&mut s, &m, &ins.flags, &ins.deletions);
    assert_eq!(out.deleted, 2, "{:?}", out.errors);
    assert!(!base.join("d").exists());
}

/// Writes `leaf` at the bottom of an existing chain `d/d/...` `n` levels deep.
fn deep_chain_leaf(base: &Path, n: usize, leaf: &[u8]) {
    let mut fd = sys::open_dir_path(base, DIR_WALK).unwrap();
    for _ in 0..n {
        fd = open_at(fd.as_fd(), b"d", DIR_WALK, 0).unwrap();
    }
    let f = open_at(
        fd.as_fd(),
        leaf,
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CREATE,
        0o644,
    )
    .unwrap();
    drop(f);
}
