//! The corpus: real datagrams of a push on the simulated LAN.

use super::*;

pub(crate) fn content(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Captures two pushes (a plain one, then a `--delete -c` one after changes) from node 0 to
/// nodes 1 and 2 under 3% loss, so every message kind appears. Returns the datagrams in send
/// order and the receiving node id the fuzzed engine impersonates (every announce targets it).
pub(crate) fn capture_corpus(seed: u64) -> (Vec<Vec<u8>>, u64) {
    let mut rng = Rng(seed);
    let mut src = MemStorage::new();
    for i in 0..60 {
        let size = match rng.below(8) {
            0 => 0,
            1..=5 => rng.below(3000) as usize,
            _ => 3000 + rng.below(40_000) as usize,
        };
        let path = format!("www/d{}/f{i}.html", i % 7);
        src.add_file(
            path.as_bytes(),
            content(&mut rng, size),
            0o644,
            1_600_000_000 + i,
        );
    }
    let mut lan = Lan::new(seed, Faults::lossy(0.03));
    lan.add("sender", src);
    lan.add("victim", MemStorage::new());
    lan.add("other", MemStorage::new());
    lan.drive(Duration::from_secs(5), |l| (0..3).all(|i| l.known(i) == 2));
    lan.capture = Some(Vec::new());
    let m = lan.nodes[0].engine.storage().manifest();
    let x = lan.push(0, &[1, 2], m);
    lan.drive(Duration::from_secs(30), |l| l.report(0, x).is_some());
    // Change some files, then push again with --delete -c.
    {
        let s = lan.nodes[0].engine.storage_mut();
        s.add_file(b"www/new/added.txt", content(&mut rng, 5000), 0o600, 7);
        s.tree.remove(b"www/d1/f1.html".as_slice());
    }
    let mut m = lan.nodes[0].engine.storage().manifest();
    m.options.delete = true;
    m.options.checksum = true;
    let x = lan.push(0, &[1, 2], m);
    lan.drive(Duration::from_secs(30), |l| l.report(0, x).is_some());
    let victim = lan.node_id(1);
    let corpus = lan.capture.take().unwrap();
    let kinds: HashSet<u8> = corpus.iter().map(|d| d[3]).collect();
    assert!(kinds.len() >= 11, "corpus has only kinds {kinds:?}");
    for k in [wire::kind::NAK, wire::kind::PACE, wire::kind::FEEDBACK] {
        assert!(kinds.contains(&k), "corpus lacks kind {k}: {kinds:?}");
    }
    (corpus, victim)
}
