//! The decoder target (manifests; datagrams go through it in the other phases too).

use super::*;

pub(crate) fn decode_phase(
    rng: &mut Rng,
    cases: u64,
    corpus: &[Vec<u8>],
    outside: &Path,
    case0: u64,
) -> u64 {
    let mut ok = 0;
    let mut scratch = vec![0u8; 70_000];
    let mut i = 0;
    while i < cases {
        let m = hostile_manifest(rng, outside);
        let bytes = m.encode();
        for _ in 0..8 {
            CASE.store(case0 + i, Relaxed);
            i += 1;
            let mut b = bytes.clone();
            let other = pick(rng, corpus);
            let n = rng.below(4);
            mutate(rng, &mut b, other, n);
            if let Ok(d) = Manifest::decode(&b) {
                ok += 1;
                for e in &d.entries {
                    assert!(
                        makuo::proto::manifest::check_rel_path(&e.path).is_ok(),
                        "decoded a bad path {:?} at {}",
                        String::from_utf8_lossy(&e.path),
                        where_()
                    );
                }
                assert_eq!(Manifest::decode(&d.encode()).as_ref(), Ok(&d));
            }
            let mut d = pick(rng, corpus).clone();
            let n = 1 + rng.below(4);
            mutate(rng, &mut d, other, n);
            check_decode(&d, &mut scratch);
        }
    }
    ok
}

// ---------------------------------------------------------------------------------------------

#[test]
pub(crate) fn fuzz_decoder_engine_apply_and_sealing() {
    let (seed, cases) = params();
    SEED.store(seed, Relaxed);
    install_panic_hook();
    let done = watchdog(Duration::from_secs(60));
    let started = Instant::now();
    eprintln!("fuzz: seed {seed:#x}, {cases} cases (MAKUO_FUZZ_SEED, MAKUO_FUZZ_CASES to change)");
    let mut rng = Rng(seed);
    let (corpus, victim) = capture_corpus(seed);
    let sandbox = Sandbox::new();

    let n_engine = cases * 6 / 10;
    let n_seal = cases * 3 / 10;
    let n_decode = cases - n_engine - n_seal;

    PHASE.store(1, Relaxed);
    let t = Instant::now();
    let r = engine_phase(&mut rng, n_engine, &corpus, victim, &sandbox, 0);
    let engine_time = t.elapsed();
    check_memory();
    let s = r.engine.stats().clone();
    let (_, inn) = r.engine.transfers();
    assert_eq!(inn, 0, "every transfer expired");
    assert_eq!(
        r.engine.storage().staged_count(),
        0,
        "staged files left after every transfer ended"
    );
    let tally = sandbox.check();
    assert!(
        tally.temps.is_empty(),
        "staged temp files left in the base: {:?}",
        tally.temps
    );
    // The run reached deep code: transfers were applied (and some refused).
    assert!(s.accepted > n_engine / 10, "{s:?}");
    assert!(s.dropped() > n_engine / 10, "{s:?}");
    assert!(
        r.applied_ok > 0 && r.applied_failed > 0,
        "applied ok {} failed {}",
        r.applied_ok,
        r.applied_failed
    );
    assert!(
        r.engine.storage().refused() > 0,
        "no hostile path was ever refused"
    );
    eprintln!(
        "fuzz: engine: {} datagrams in {:.1}s ({} decoded, {} accepted, {} dropped, {} own), \
         {} pushes applied, {} failed, {} abandoned, {} paths refused, {} datagrams sent; \
         base holds {} files, {} dirs, {} symlinks ({} pointing outside, as pushed)",
        r.fed,
        engine_time.as_secs_f64(),
        r.decoded,
        s.accepted,
        s.dropped(),
        s.own,
        r.applied_ok,
        r.applied_failed,
        r.abandoned,
        r.engine.storage().refused(),
        r.sent,
        tally.files,
        tally.dirs,
        tally.symlinks,
        tally.symlinks_pointing_out,
    );
    drop(r);

    PHASE.store(2, Relaxed);
    let t = Instant::now();
    let sr = seal_phase(&mut rng, n_seal, &corpus, n_engine);
    eprintln!(
        "fuzz: seal: {n_seal} datagrams in {:.1}s ({} opened, {} handshakes, {} refused, {} of \
         them replays; {} receiver and {} sender restarts)",
        t.elapsed().as_secs_f64(),
        sr.opened,
        sr.handshakes,
        sr.refused,
        sr.replay_refused,
        sr.receiver_restarts,
        sr.sender_restarts
    );
    assert!(sr.opened > n_seal / 20, "{sr:?}");

    PHASE.store(3, Relaxed);
    let t = Instant::now();
    let ok = decode_phase(
        &mut rng,
        n_decode,
        &corpus,
        &sandbox.outside,
        n_engine + n_seal,
    );
    eprintln!(
        "fuzz: decode: {n_decode} manifests in {:.1}s ({ok} decoded)",
        t.elapsed().as_secs_f64()
    );
    check_memory();
    done.store(true, Relaxed);
    eprintln!(
        "fuzz: {cases} cases in {:.1}s; peak heap {} MiB, largest allocation {} KiB",
        started.elapsed().as_secs_f64(),
        PEAK.load(Relaxed) >> 20,
        BIGGEST.load(Relaxed) >> 10
    );
}
