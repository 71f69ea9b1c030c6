//! Unit tests of the write pool (`writer.rs`): pooled writes land whole, a reader of staged
//! data waits for them, a failed queued write fails the commit with the message a failed
//! synchronous write gives, and a full budget never loses a block.

use super::tests::{manifest, storage, KEY};
use super::*;
use std::fs;
use std::sync::mpsc;

/// A file of `len` bytes (`len` > the gathering size, so it is written block by block).
fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Writes `d` into entry 0 of `m` in `block`-byte pieces, in order (joined into bigger
/// writes) or last block first (each one a write of its own).
fn write_all(s: &mut FsStorage, m: &Manifest, d: &[u8], block: usize, in_order: bool) {
    let e = &m.entries[0];
    let mut offs: Vec<usize> = (0..d.len()).step_by(block).collect();
    if !in_order {
        offs.reverse();
    }
    for o in offs {
        let end = (o + block).min(d.len());
        s.write(KEY, 0, e, o as u64, &d[o..end]).unwrap();
    }
}

fn req<'a>(m: &'a Manifest, flags: &'a [change::Flags]) -> CommitRequest<'a> {
    CommitRequest {
        manifest: m,
        flags,
        deletions: &[],
        skip: &[],
    }
}

use crate::proto::manifest::change;

#[test]
fn pooled_writes_land_and_a_read_back_waits_for_them() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = storage(tmp.path());
    s.pool_writes_with(2, 1 << 20);
    let d = data(3 << 20);
    let m = manifest(vec![Entry::file(b"big", d.len() as u64, 0o644, 5_000)]);
    let ins = s.inspect(KEY, &m).unwrap();
    write_all(&mut s, &m, &d, 1400, true);
    // Read back at once (as a parity decode does): every queued byte is there.
    let mut back = vec![0u8; 1 << 20];
    s.read_staged(KEY, 0, &m.entries[0], 2 << 20, &mut back)
        .unwrap();
    assert_eq!(back, d[2 << 20..]);
    s.complete(KEY, 0, &m).unwrap();
    let out = s.commit(KEY, &req(&m, &ins.flags)).unwrap();
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(fs::read(tmp.path().join("big")).unwrap(), d);
    let st = s.write_stats();
    let writes = (d.len() as u64).div_ceil(1400);
    assert_eq!(st.queued + st.inline, writes, "{st:?}");
    assert!(st.queued > 0, "{st:?}");
    let meta = fs::metadata(tmp.path().join("big")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        meta.mtime(),
        5_000,
        "attributes are set after the last write"
    );
    assert_eq!(meta.mode() & 0o777, 0o644);
}

#[test]
fn a_tiny_budget_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = storage(tmp.path());
    // Room for about two blocks: most writes wait, some are done by the caller.
    s.pool_writes_with(1, 3000);
    let d = data(1 << 20);
    let m = manifest(vec![Entry::file(b"f", d.len() as u64, 0o600, 1)]);
    let ins = s.inspect(KEY, &m).unwrap();
    write_all(&mut s, &m, &d, 1400, false);
    s.complete(KEY, 0, &m).unwrap();
    let out = s.commit(KEY, &req(&m, &ins.flags)).unwrap();
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(fs::read(tmp.path().join("f")).unwrap(), d);
    assert!(s.write_stats().waits > 0, "{:?}", s.write_stats());
}

#[test]
fn a_failed_queued_write_fails_the_commit_as_a_failed_write_does() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = storage(tmp.path());
    s.pool_writes_with(1, 1 << 20);
    if let Some(w) = s.writer.as_mut() {
        *w.fail.lock().unwrap() = Some(io::ErrorKind::StorageFull);
    }
    let d = data(256 << 10);
    let m = manifest(vec![Entry::file(b"dir/full", d.len() as u64, 0o644, 1)]);
    let ins = s.inspect(KEY, &m).unwrap();
    write_all(&mut s, &m, &d, 1400, false);
    s.complete(KEY, 0, &m).unwrap();
    let out = s.commit(KEY, &req(&m, &ins.flags)).unwrap();
    // The engine words a failed write `path: reason` (recv.rs) and drops the staging.
    let want = format!("dir/full: {}", io::Error::from(io::ErrorKind::StorageFull));
    assert_eq!(out.errors, vec![want]);
    assert_eq!(out.files, 0);
    assert!(!tmp.path().join("dir/full").exists());
    assert!(
        !tmp.path().join("dir").exists(),
        "its staging's directory goes too"
    );
    assert_eq!(super::tests::temps(tmp.path()), Vec::<PathBuf>::new());
}

#[test]
fn an_offloaded_commit_waits_for_the_writes_and_reports_their_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = storage(tmp.path());
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    s.offload_commits(Arc::new(move || {
        let _ = tx.lock().unwrap().send(());
    }));
    s.pool_writes_with(1, 8 << 20);
    let d = data(4 << 20);
    let m = manifest(vec![Entry::file(b"a", d.len() as u64, 0o644, 1)]);
    let ins = s.inspect(KEY, &m).unwrap();
    write_all(&mut s, &m, &d, 8192, true);
    s.complete(KEY, 0, &m).unwrap();
    assert!(s.commit(KEY, &req(&m, &ins.flags)).is_none(), "offloaded");
    rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let done = s.take_commits();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1.errors, Vec::<String>::new());
    assert_eq!(fs::read(tmp.path().join("a")).unwrap(), d);

    // The same with every write failing: the worker reports it.
    let key2 = XferKey { origin: 1, xfer: 8 };
    if let Some(w) = s.writer.as_mut() {
        *w.fail.lock().unwrap() = Some(io::ErrorKind::Other);
    }
    let mut m2 = m.clone();
    m2.entries[0].path = b"b".to_vec();
    let ins = s.inspect(key2, &m2).unwrap();
    for o in (0..d.len()).step_by(8192) {
        let end = (o + 8192).min(d.len());
        s.write(key2, 0, &m2.entries[0], o as u64, &d[o..end])
            .unwrap();
    }
    s.complete(key2, 0, &m2).unwrap();
    assert!(s.commit(key2, &req(&m2, &ins.flags)).is_none());
    rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let done = s.take_commits();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1.errors.len(), 1);
    assert!(
        done[0].1.errors[0].starts_with("b: "),
        "{:?}",
        done[0].1.errors
    );
    assert!(!tmp.path().join("b").exists());
    assert_eq!(super::tests::temps(tmp.path()), Vec::<PathBuf>::new());
}

#[test]
fn an_abort_drops_queued_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = storage(tmp.path());
    s.pool_writes_with(1, 64 << 20);
    let d = data(8 << 20);
    let m = manifest(vec![Entry::file(b"gone", d.len() as u64, 0o644, 1)]);
    s.inspect(KEY, &m).unwrap();
    write_all(&mut s, &m, &d, 1400, false);
    s.abort(KEY);
    let w = s.writer.as_mut().unwrap();
    assert_eq!(w.in_flight((KEY, 0)), 0);
    assert!(w.settle(KEY).is_none());
    assert!(!tmp.path().join("gone").exists());
    assert_eq!(super::tests::temps(tmp.path()), Vec::<PathBuf>::new());
}

#[test]
fn the_writers_hold_a_bounded_number_of_descriptors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = storage(tmp.path());
    s.pool_writes_with(1, 64 << 20);
    let d = data(100 << 10);
    let files = 2 * super::writer::MAX_TARGETS + 10;
    let m = manifest(
        (0..files)
            .map(|i| Entry::file(format!("f{i}").as_bytes(), d.len() as u64, 0o644, 1))
            .collect(),
    );
    let ins = s.inspect(KEY, &m).unwrap();
    // The first block of every file, then the rest: every file is open at once.
    for half in [0, 1] {
        for (i, e) in m.entries.iter().enumerate() {
            let (a, b) = if half == 0 {
                (0, 1400)
            } else {
                (1400, d.len())
            };
            s.write(KEY, i as u32, e, a as u64, &d[a..b]).unwrap();
            let live = s
                .writer
                .as_ref()
                .unwrap()
                .live
                .load(std::sync::atomic::Ordering::Relaxed);
            assert!(live <= super::writer::MAX_TARGETS, "{live}");
        }
    }
    for i in 0..files {
        s.complete(KEY, i as u32, &m).unwrap();
    }
    let out = s.commit(KEY, &req(&m, &ins.flags)).unwrap();
    assert_eq!(out.errors, Vec::<String>::new());
    for i in [0, files / 2, files - 1] {
        assert_eq!(fs::read(tmp.path().join(format!("f{i}"))).unwrap(), d);
    }
}

/// Parity for group `g` (blocks of `block` bytes, `k` per group) of `d`, and the job that
/// rebuilds its blocks `lost`: half the present ones held, the others read back.
fn restore_job(d: &[u8], block: usize, k: usize, g: usize, lost: &[usize]) -> Restore {
    use crate::proto::repair::Code;
    use crate::proto::restore::Piece;
    let code = Code {
        block,
        k: k as u32,
        parity: 4,
    };
    let blk = |i: usize| {
        let mut b = d[i * block..((i + 1) * block).min(d.len())].to_vec();
        b.resize(block, 0);
        b
    };
    let sources: Vec<Vec<u8>> = (g * k..g * k + k).map(blk).collect();
    let parity = code.encode(&sources, 0..lost.len() as u16).unwrap();
    let piece = |pos: usize| Piece {
        idx: 0,
        offset: ((g * k + pos) * block) as u64,
        len: block,
        at: 0,
    };
    let present: Vec<usize> = (0..k).filter(|p| !lost.contains(p)).collect();
    Restore {
        code,
        k_g: k,
        held: present
            .iter()
            .step_by(2)
            .map(|&p| (p, blk(g * k + p)))
            .collect(),
        staged: present
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&p| (p, vec![piece(p)]))
            .collect(),
        parity: parity.into_iter().enumerate().collect(),
        writes: lost.iter().map(|&p| (p, vec![piece(p)])).collect(),
    }
}

/// Writes every `block`-byte block of `d` into entry 0 of `m` except blocks `lost` (positions
/// in group `g` of `k` blocks), and none from group `end_group` on.
fn write_but(
    s: &mut FsStorage,
    m: &Manifest,
    d: &[u8],
    (block, k): (usize, usize),
    (g, lost): (usize, &[usize]),
    end_group: usize,
) {
    for i in 0..(d.len() / block).min(end_group.saturating_mul(k)) {
        if i / k == g && lost.contains(&(i % k)) {
            continue;
        }
        let at = i * block;
        s.write(KEY, 0, &m.entries[0], at as u64, &d[at..at + block])
            .unwrap();
    }
}

#[test]
fn a_parity_decode_runs_on_the_pool_after_the_writes_it_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = storage(tmp.path());
    s.pool_writes_with(1, 1 << 20);
    let (block, k) = (1400, 16);
    let d = data(block * k * 8);
    let m = manifest(vec![Entry::file(b"big", d.len() as u64, 0o644, 7)]);
    let ins = s.inspect(KEY, &m).unwrap();
    // Blocks 3 and 9 of group 5 are lost; everything else is written (queued).
    let (g, lost) = (5, [3usize, 9]);
    write_but(&mut s, &m, &d, (block, k), (g, &lost), usize::MAX);
    s.restore(KEY, &m, restore_job(&d, block, k, g, &lost))
        .unwrap();
    assert_eq!(s.write_stats().restores, 1, "the pool took the decode");
    // A reader of the staged file waits for the decode's writes too.
    let mut back = vec![0u8; block];
    let at = (g * k + lost[1]) * block;
    s.read_staged(KEY, 0, &m.entries[0], at as u64, &mut back)
        .unwrap();
    assert_eq!(back, d[at..at + block]);
    s.complete(KEY, 0, &m).unwrap();
    let out = s.commit(KEY, &req(&m, &ins.flags)).unwrap();
    assert_eq!(out.errors, Vec::<String>::new());
    assert_eq!(fs::read(tmp.path().join("big")).unwrap(), d);
}

#[test]
fn a_parity_decode_the_pool_cannot_take_runs_inline() {
    // Without a pool, and for a file gathered in memory, the decode runs on the caller's
    // thread with the same result.
    for pooled in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = storage(tmp.path());
        if pooled {
            s.pool_writes_with(1, 1 << 20);
        }
        let (block, k) = (1000, 8);
        let d = data(block * k * 4);
        assert!(d.len() as u64 <= super::gather::GATHER_FILE);
        let m = manifest(vec![Entry::file(b"small", d.len() as u64, 0o644, 7)]);
        let ins = s.inspect(KEY, &m).unwrap();
        let (g, lost) = (2, [0usize, 7]);
        write_but(&mut s, &m, &d, (block, k), (g, &lost), usize::MAX);
        s.restore(KEY, &m, restore_job(&d, block, k, g, &lost))
            .unwrap();
        assert_eq!(s.write_stats().restores, 0);
        s.complete(KEY, 0, &m).unwrap();
        let out = s.commit(KEY, &req(&m, &ins.flags)).unwrap();
        assert_eq!(out.errors, Vec::<String>::new());
        assert_eq!(fs::read(tmp.path().join("small")).unwrap(), d);
    }
}

#[test]
fn a_failed_read_back_on_the_pool_fails_the_commit_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = storage(tmp.path());
    s.pool_writes_with(1, 1 << 20);
    let (block, k) = (1400, 16);
    let d = data(block * k * 8);
    let m = manifest(vec![Entry::file(b"dir/big", d.len() as u64, 0o644, 7)]);
    let ins = s.inspect(KEY, &m).unwrap();
    // Only the first group is written: the decode of group 5 reads back past the end.
    write_but(&mut s, &m, &d, (block, k), (0, &[]), 1);
    s.restore(KEY, &m, restore_job(&d, block, k, 5, &[1, 2]))
        .unwrap();
    assert_eq!(s.write_stats().restores, 1);
    let out = s.commit(KEY, &req(&m, &ins.flags)).unwrap();
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(out.errors[0].starts_with("dir/big: "), "{:?}", out.errors);
    assert!(!tmp.path().join("dir/big").exists());
}
