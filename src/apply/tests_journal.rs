//! Unit tests of the `--atomic` commit journal: a push that crashed after READY is held in
//! doubt on restart and finished or rolled back as the cluster answers, one that crashed in the commit (some renames done) is finished, and a
//! journal that is not makuo's is dropped without harm.

use super::tests::{manifest, temps, KEY};
use super::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;

struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    jdir: PathBuf,
    opts: ApplyOptions,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let state = tmp.path().join("state");
    fs::create_dir_all(&base).unwrap();
    fs::create_dir_all(&state).unwrap();
    let opts = ApplyOptions {
        durable: true,
        journal: Some(Arc::new(open_journal_dir(&state).unwrap())),
        ..Default::default()
    };
    Fixture {
        base,
        jdir: state.join("journal"),
        opts,
        _tmp: tmp,
    }
}

fn journal_files(f: &Fixture) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(&f.jdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The old tree: `a` (replaced by the push), `gone` (deleted by it).
fn old_tree(base: &Path) {
    fs::write(base.join("a"), b"old a").unwrap();
    fs::write(base.join("gone"), b"deleted by the push").unwrap();
}

/// A push replacing `a`, making `n/x` (in a new directory) and `c`, deleting `gone`;
/// staged whole and prepared. Returns the storage (ready) and the manifest.
fn prepared(f: &Fixture) -> (FsStorage, Manifest, Inspection) {
    let mut s = FsStorage::new(f.base.clone(), f.opts.clone()).unwrap();
    let mut m = manifest(vec![
        Entry::file(b"a", 5, 0o644, 1_000),
        Entry::file(b"c", 5, 0o600, 2_000),
        Entry::dir(b"n", 0o750, 3_000),
        Entry::file(b"n/x", 5, 0o640, 4_000),
    ]);
    m.options.delete = true;
    let ins = s.inspect(KEY, &m).unwrap();
    assert_eq!(ins.deletions, vec![b"gone".to_vec()]);
    for (i, d) in [(0, b"new a"), (1, b"new c"), (3, b"new x")] {
        s.write(KEY, i, &m.entries[i as usize], 0, d).unwrap();
        s.complete(KEY, i, &m).unwrap();
    }
    let req = CommitRequest {
        manifest: &m,
        flags: &ins.flags,
        deletions: &ins.deletions,
        skip: &[],
    };
    assert_eq!(s.prepare(KEY, &req), Some(Ok(())));
    (s, m, ins)
}

#[test]
fn a_prepared_push_is_journaled_and_the_commit_removes_the_journal() {
    let f = fixture();
    old_tree(&f.base);
    let (mut s, m, ins) = prepared(&f);
    assert_eq!(
        journal_files(&f),
        vec![format!("{:016x}-{:08x}", KEY.origin, KEY.xfer)]
    );
    let u = s.unfinished();
    assert_eq!(u.len(), 1);
    assert_eq!((u[0].state, u[0].journaled), ("ready", true));
    // The staged data is on disk (gathered small files were written out) before READY.
    assert_eq!(temps(&f.base).len(), 3);
    let req = CommitRequest {
        manifest: &m,
        flags: &ins.flags,
        deletions: &ins.deletions,
        skip: &[],
    };
    let out = s.commit(KEY, &req).unwrap();
    assert_eq!(out.errors, Vec::<String>::new());
    assert!(journal_files(&f).is_empty(), "{:?}", journal_files(&f));
    assert!(s.unfinished().is_empty());
    assert_eq!(fs::read(f.base.join("n/x")).unwrap(), b"new x");
    assert!(!f.base.join("gone").exists());
}

/// The daemon died after READY (no abort, no commit, no go): on restart the push is held in
/// doubt, its staging spared by the sweep; returns the restarted storage holding it.
fn restarted_in_doubt(f: &Fixture) -> FsStorage {
    let (s, _, _) = prepared(f);
    std::mem::forget(s);
    let r = recover_journal(&f.base, &f.opts).unwrap();
    assert_eq!(r.lines.len(), 1, "{:?}", r.lines);
    assert!(r.lines[0].contains("in doubt"), "{:?}", r.lines);
    assert_eq!(r.in_doubt.len(), 1);
    assert_eq!(r.in_doubt[0].0, KEY);
    assert_eq!(r.keep.len(), 3);
    let mut s = FsStorage::new(f.base.clone(), f.opts.clone()).unwrap();
    assert_eq!(sweep_temp(s.base_dir(), &r.keep).unwrap(), 0);
    assert_eq!(temps(&f.base).len(), 3, "the staging stays while in doubt");
    s.hold_in_doubt(&r.in_doubt);
    assert_eq!(s.unfinished()[0].state, "in-doubt");
    // An answer about a push never staged here changes nothing.
    assert!(s.resolve(XferKey { origin: 5, xfer: 1 }, true).is_none());
    s
}

#[test]
fn a_push_in_doubt_that_was_committed_elsewhere_is_finished() {
    let f = fixture();
    old_tree(&f.base);
    let mut s = restarted_in_doubt(&f);
    let (out, digest, _) = s.resolve(KEY, true).expect("finished");
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!((out.files, out.deleted), (4, 1));
    assert_ne!(digest, [0; 16]);
    assert_eq!(fs::read(f.base.join("a")).unwrap(), b"new a");
    assert_eq!(fs::read(f.base.join("n/x")).unwrap(), b"new x");
    assert!(!f.base.join("gone").exists());
    assert!(temps(&f.base).is_empty(), "{:?}", temps(&f.base));
    assert!(journal_files(&f).is_empty(), "{:?}", journal_files(&f));
    assert!(s.unfinished().is_empty());
    // A second answer finds nothing to do.
    assert!(s.resolve(KEY, true).is_none());
}

#[test]
fn a_push_in_doubt_that_was_not_committed_is_rolled_back() {
    let f = fixture();
    old_tree(&f.base);
    let mut s = restarted_in_doubt(&f);
    assert!(s.resolve(KEY, false).is_none());
    assert!(s.unfinished().is_empty());
    assert!(temps(&f.base).is_empty(), "{:?}", temps(&f.base));
    assert!(
        !f.base.join("n").exists(),
        "the directory staging made is gone"
    );
    assert!(!f.base.join("c").exists());
    assert_eq!(fs::read(f.base.join("a")).unwrap(), b"old a");
    assert!(f.base.join("gone").exists(), "nothing deleted");
    assert!(journal_files(&f).is_empty(), "{:?}", journal_files(&f));
    // A second start finds nothing to do.
    assert!(recover_journal(&f.base, &f.opts).unwrap().lines.is_empty());
}

#[test]
fn a_crash_in_the_commit_is_finished_on_restart() {
    let f = fixture();
    old_tree(&f.base);
    let (mut s, _, _) = prepared(&f);
    // The go came (journaled), and the first rename was done when the daemon died; the
    // rest (`c`, the directory `n`, `n/x`) is finished on restart.
    s.journal_go(KEY, &[]).unwrap();
    assert_eq!(s.unfinished()[0].state, "committing");
    let tmp_a = s.staged.get(&(KEY, 0)).map(|st| st.tmp.clone()).unwrap();
    fs::rename(
        f.base.join(std::ffi::OsStr::from_bytes(&tmp_a)),
        f.base.join("a"),
    )
    .unwrap();
    std::mem::forget(s);
    assert_eq!(journal_files(&f).len(), 2, "{:?}", journal_files(&f));
    let lines = recover_journal(&f.base, &f.opts).unwrap().lines;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("finished (3 files, 1 deleted)"),
        "{lines:?}"
    );
    assert_eq!(fs::read(f.base.join("a")).unwrap(), b"new a");
    assert_eq!(fs::read(f.base.join("c")).unwrap(), b"new c");
    assert_eq!(fs::read(f.base.join("n/x")).unwrap(), b"new x");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(
        fs::metadata(f.base.join("c")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(fs::metadata(f.base.join("n/x")).unwrap().mtime(), 4_000);
    assert_eq!(
        fs::metadata(f.base.join("n")).unwrap().permissions().mode() & 0o777,
        0o750
    );
    assert!(!f.base.join("gone").exists());
    assert!(temps(&f.base).is_empty(), "{:?}", temps(&f.base));
    assert!(journal_files(&f).is_empty(), "{:?}", journal_files(&f));
}

#[test]
fn a_staged_file_swapped_before_the_restart_is_not_installed() {
    let f = fixture();
    old_tree(&f.base);
    let (mut s, _, _) = prepared(&f);
    s.journal_go(KEY, &[]).unwrap();
    let tmp_c = s.staged.get(&(KEY, 1)).map(|st| st.tmp.clone()).unwrap();
    std::mem::forget(s);
    // Someone replaced the staged file of `c` by a file of their own under its name.
    let p = f.base.join(std::ffi::OsStr::from_bytes(&tmp_c));
    fs::remove_file(&p).unwrap();
    fs::write(&p, b"forged").unwrap();
    let lines = recover_journal(&f.base, &f.opts).unwrap().lines;
    assert!(
        lines[0].contains("c: staged file lost; left as it is"),
        "{lines:?}"
    );
    assert!(
        !f.base.join("c").exists(),
        "the forged file was not installed"
    );
    assert_eq!(fs::read(f.base.join("a")).unwrap(), b"new a");
}

#[test]
fn a_journal_that_is_not_makuos_is_dropped() {
    let f = fixture();
    old_tree(&f.base);
    fs::write(
        f.jdir.join("0000000000000001-00000007"),
        b"MAKUOJ1\n\xff\xff",
    )
    .unwrap();
    fs::write(f.jdir.join("0000000000000002-00000007"), vec![0u8; 100]).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", f.jdir.join("0000000000000003-00000007")).unwrap();
    fs::write(f.jdir.join("0000000000000009-00000007.go"), b"MAKUOJ1\n").unwrap();
    let lines = recover_journal(&f.base, &f.opts).unwrap().lines;
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("unreadable journal dropped")),
        "{lines:?}"
    );
    assert!(journal_files(&f).is_empty(), "{:?}", journal_files(&f));
    assert_eq!(fs::read(f.base.join("a")).unwrap(), b"old a");
}

#[test]
fn a_second_atomic_push_over_the_same_paths_is_refused_while_one_is_ready() {
    let f = fixture();
    old_tree(&f.base);
    let (mut s, _, _) = prepared(&f);
    let other = XferKey { origin: 2, xfer: 9 };
    let try_prepare = |s: &mut FsStorage, entries: Vec<Entry>| {
        let m = manifest(entries);
        let ins = s.inspect(other, &m).unwrap();
        let req = CommitRequest {
            manifest: &m,
            flags: &ins.flags,
            deletions: &ins.deletions,
            skip: &[],
        };
        let r = s.prepare(other, &req);
        s.abort(other);
        r
    };
    // `n/x` is the ready push's; so is the directory `n`, under which `n/y` lies.
    for clash in [
        vec![Entry::file(b"n/x", 0, 0o644, 1)],
        vec![Entry::dir(b"n", 0o700, 1), Entry::file(b"n/y", 0, 0o644, 1)],
        vec![Entry::file(b"a", 0, 0o644, 1)],
    ] {
        let r = try_prepare(&mut s, clash);
        assert!(
            matches!(&r, Some(Err(e)) if e.contains("another atomic push over the same paths")),
            "{r:?}"
        );
    }
    // Elsewhere it gets ready.
    let r = try_prepare(&mut s, vec![Entry::file(b"other", 0, 0o644, 1)]);
    assert_eq!(r, Some(Ok(())));
    // Once the first ended, the same paths are free again.
    s.abort(KEY);
    let r = try_prepare(&mut s, vec![Entry::file(b"n/x", 0, 0o644, 1)]);
    assert_eq!(r, Some(Ok(())));
}
