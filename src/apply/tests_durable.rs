//! Unit tests of durability: metadata-only changes (modes, owners, times; directories too)
//! are as durable as data, counted through the storage's fsync/syncfs counters.

use super::tests::{commit, manifest, push, storage, KEY};
use super::*;
use crate::proto::manifest::change;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn durable(base: &Path) -> FsStorage {
    let opts = ApplyOptions {
        durable: true,
        ..Default::default()
    };
    FsStorage::new(base.to_path_buf(), opts).unwrap()
}

fn calls(s: &FsStorage) -> (u64, u64) {
    (s.sync_calls().fsync(), s.sync_calls().syncfs())
}

/// Inspects `m` and commits it with no data (a metadata-only push); returns the flags and
/// the fsync/syncfs calls the commit made.
#[track_caller]
fn meta_push(s: &mut FsStorage, m: &Manifest) -> (Vec<change::Flags>, (u64, u64)) {
    let before = calls(s);
    let ins = s.inspect(KEY, m).unwrap();
    let out = commit(s, m, &ins.flags, &[]);
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(out.bytes, 0, "no data travels");
    let after = calls(s);
    (ins.flags, (after.0 - before.0, after.1 - before.1))
}

#[test]
fn a_tightening_chmod_alone_is_fsynced() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut s = durable(base);
    let m = manifest(vec![Entry::file(b"secret", 5, 0o644, 5_000)]);
    push(&mut s, &m, &[b"hello"]);
    let mut m2 = m.clone();
    m2.entries[0].mode = 0o600;
    let (flags, synced) = meta_push(&mut s, &m2);
    assert_eq!(flags, vec![change::PERM]);
    assert_eq!(synced, (1, 0), "one fsync of the file whose mode changed");
    assert_eq!(
        fs::metadata(base.join("secret")).unwrap().mode() & 0o777,
        0o600
    );
    // A time-only change too (in checksum mode, where a time alone sends no data).
    let mut m3 = m2.clone();
    m3.options.checksum = true;
    m3.entries[0].checksum = Some(crate::proto::storage::md5_of(b"hello"));
    m3.entries[0].mtime = 6_000;
    let (flags, synced) = meta_push(&mut s, &m3);
    assert_eq!(flags, vec![change::TIME]);
    assert_eq!(synced, (1, 0));
    // Nothing changed: nothing synced.
    assert_eq!(meta_push(&mut s, &m3).1, (0, 0));
}

#[test]
fn directory_attributes_alone_are_fsynced() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut s = durable(base);
    let m = manifest(vec![
        Entry::dir(b"d", 0o755, 7),
        Entry::file(b"d/f", 2, 0o644, 9),
    ]);
    push(&mut s, &m, &[b"", b"hi"]);
    let mut m2 = m.clone();
    m2.entries[0].mode = 0o700;
    let (flags, synced) = meta_push(&mut s, &m2);
    assert_eq!(flags, vec![change::PERM, 0]);
    assert_eq!(synced, (1, 0), "one fsync of the directory");
    assert_eq!(
        fs::metadata(base.join("d")).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn many_metadata_changes_or_a_symlink_use_one_syncfs() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut s = durable(base);
    let n = 12;
    let mut entries: Vec<Entry> = (0..n)
        .map(|i| Entry::file(format!("f{i:02}").as_bytes(), 1, 0o644, 100))
        .collect();
    entries.push(Entry::symlink(b"l", b"f00", 100));
    let m = manifest(entries);
    let data: Vec<&[u8]> = (0..=n).map(|_| &b"x"[..]).collect();
    push(&mut s, &m, &data);
    let mut m2 = m.clone();
    for e in m2.entries.iter_mut().take(n) {
        e.mode = 0o640;
    }
    let (_, synced) = meta_push(&mut s, &m2);
    assert_eq!(
        synced,
        (0, 1),
        "{n} files: one syncfs instead of {n} fsyncs"
    );
    let mut m3 = m2.clone();
    m3.entries[n].mtime = 200;
    let (flags, synced) = meta_push(&mut s, &m3);
    assert_eq!(flags[n], change::TIME);
    assert_eq!(
        synced,
        (0, 1),
        "a symlink cannot be opened to fsync: syncfs"
    );
}

#[test]
fn without_durability_nothing_is_synced() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut s = storage(base);
    let m = manifest(vec![Entry::file(b"f", 1, 0o644, 1)]);
    push(&mut s, &m, &[b"x"]);
    let mut m2 = m.clone();
    m2.entries[0].mode = 0o600;
    assert_eq!(meta_push(&mut s, &m2).1, (0, 0));
    assert_eq!(calls(&s), (0, 0));
}
