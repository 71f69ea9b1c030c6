//! The engine target.

use super::*;

pub(crate) struct EngineRun {
    pub(crate) engine: Engine<FsStorage>,
    pub(crate) now: Instant,
    pub(crate) from: SocketAddr,
    pub(crate) out: Vec<u8>,
    pub(crate) scratch: Vec<u8>,
    pub(crate) fed: u64,
    pub(crate) decoded: u64,
    pub(crate) applied_ok: u64,
    pub(crate) applied_failed: u64,
    pub(crate) abandoned: u64,
    pub(crate) sent: u64,
}

impl EngineRun {
    pub(crate) fn feed(&mut self, d: &[u8]) {
        if check_decode(d, &mut self.scratch) {
            self.decoded += 1;
        }
        self.engine.handle_datagram(self.now, self.from, d);
        self.fed += 1;
        self.now += Duration::from_micros(100);
        if self.fed % 16 == 0 {
            self.drain();
        }
    }

    pub(crate) fn drain(&mut self) {
        if self.engine.poll_timeout().is_some_and(|t| t <= self.now) {
            self.engine.handle_timeout(self.now);
        }
        while let Some(t) = self.engine.poll_transmit(self.now, &mut self.out) {
            self.sent += 1;
            // The engine's own output always decodes.
            let d = &self.out[..t.len];
            if let Err(e) = wire::decode(d) {
                panic!(
                    "engine emitted an undecodable datagram ({e}) at {}",
                    where_()
                );
            }
        }
        while let Some(e) = self.engine.poll_event() {
            match e {
                Event::Applied { outcome, .. } if outcome.errors.is_empty() => self.applied_ok += 1,
                Event::Applied { .. } => self.applied_failed += 1,
                Event::Abandoned(..) => self.abandoned += 1,
                _ => {}
            }
        }
    }

    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.drain();
    }

    pub(crate) fn check_bounds(&self) {
        let (out, inn) = self.engine.transfers();
        assert_eq!(out, 0, "the fuzzed node never pushes");
        assert!(
            inn <= MAX_INBOUND,
            "{inn} inbound transfers at {}",
            where_()
        );
        let members = self.engine.members().count();
        assert!(members <= MAX_MEMBERS, "{members} members at {}", where_());
        let held = self.engine.inbound_memory();
        assert!(
            held <= MAX_INBOUND_MEMORY,
            "inbound transfers hold {held} bytes at {}",
            where_()
        );
        let s = self.engine.stats();
        assert_eq!(
            s.accepted + s.dropped() + s.own,
            s.received,
            "a datagram neither accepted nor dropped: {s:?}"
        );
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn engine_phase(
    rng: &mut Rng,
    cases: u64,
    corpus: &[Vec<u8>],
    victim: u64,
    sandbox: &Sandbox,
    case0: u64,
) -> EngineRun {
    let mut cfg = lan::test_config(victim, "victim");
    cfg.node_id = victim;
    let storage = FsStorage::new(sandbox.base.clone(), ApplyOptions::default()).unwrap();
    let now = Instant::now();
    let mut r = EngineRun {
        engine: Engine::new(cfg, storage, now),
        now,
        from: "127.0.0.9:4242".parse().unwrap(),
        out: vec![0u8; wire::MAX_DATAGRAM],
        scratch: vec![0u8; 70_000],
        fed: 0,
        decoded: 0,
        applied_ok: 0,
        applied_failed: 0,
        abandoned: 0,
        sent: 0,
    };
    let announces: Vec<usize> = (0..corpus.len())
        .filter(|&i| corpus[i][3] == wire::kind::ANNOUNCE)
        .collect();
    let mut seq = 0u64;
    for (i, r_) in regressions(rng, victim, &mut seq).into_iter().enumerate() {
        for d in r_ {
            r.feed(&d);
            // A commit runs at the next timer, after its BUSY answer: let it run here so
            // that what the case sends after the commit arrives after it.
            if d.get(3) == Some(&wire::kind::COMMIT) {
                r.drain();
            }
        }
        r.drain();
        check_memory();
        if i == 3 {
            // A transfer gives its slot back at its commit: what arrives after it is a
            // straggler, and nothing is staged for it any more.
            assert_eq!(
                r.engine.storage().staged_count(),
                0,
                "regression 4 staged a file after the commit"
            );
            assert_eq!(r.engine.transfers().1, 0, "regression 4 still holds a slot");
        }
    }
    // The sealing layer's own messages (CHALLENGE, RESPONSE) never reach the engine: in the
    // clear they are kinds it does not know, dropped and counted.
    for k in [wire::kind::CHALLENGE, wire::kind::RESPONSE] {
        let before = r.engine.stats().dropped_unknown_kind;
        seq += 1;
        let mut d = encode(&Msg::Leave, SENDERS[0], seq);
        d[3] = k;
        d.extend_from_slice(&[0; 16]);
        r.feed(&d);
        assert_eq!(r.engine.stats().dropped_unknown_kind, before + 1);
    }
    let mut xfers: Vec<u32> = Vec::new();
    let mut next_check = 0;
    while r.fed < cases {
        CASE.store(case0 + r.fed, Relaxed);
        if r.fed >= next_check {
            next_check = r.fed + 2000;
            r.check_bounds();
            check_memory();
            sandbox.plant();
        }
        match rng.below(10) {
            0..=2 => {
                // A run of the captured push, renumbered as a fresh transfer, lightly mutated.
                let start = if rng.chance(0.7) {
                    *pick(rng, &announces)
                } else {
                    rng.below(corpus.len() as u64) as usize
                };
                let len = 50 + rng.below(3000) as usize;
                let p = if rng.chance(0.4) { 0.0 } else { 0.02 };
                let mut renumber: HashMap<u32, u32> = HashMap::new();
                for d in corpus.iter().skip(start).take(len) {
                    let mut d = d.clone();
                    if let Some(x) = xfer_of(&d) {
                        let new = *renumber.entry(x).or_insert_with(|| rng.next() as u32);
                        d[24..28].copy_from_slice(&new.to_be_bytes());
                        xfers.push(new);
                    }
                    if rng.chance(p) {
                        let other = pick(rng, corpus);
                        let n = 1 + rng.below(3);
                        mutate(rng, &mut d, other, n);
                    }
                    r.feed(&d);
                }
            }
            3..=5 => {
                // A structured transfer with a hostile manifest, sometimes mutated.
                let p = if rng.chance(0.5) { 0.0 } else { 0.05 };
                let seqd = structured_transfer(rng, victim, &sandbox.outside, &mut seq);
                for mut d in seqd {
                    if let Some(x) = xfer_of(&d) {
                        xfers.push(x);
                    }
                    if rng.chance(p) {
                        let other = pick(rng, corpus);
                        let n = 1 + rng.below(3);
                        mutate(rng, &mut d, other, n);
                    }
                    r.feed(&d);
                }
            }
            _ => {
                // Single datagrams: mutated corpus, structured random, or noise.
                for _ in 0..1 + rng.below(64) {
                    let mut d = match rng.below(6) {
                        0..=2 => pick(rng, corpus).clone(),
                        3 | 4 => random_message(rng, victim, &xfers, &mut seq),
                        _ => {
                            let mut d = noise(rng, 1600);
                            if d.len() > 4 && rng.chance(0.5) {
                                d[..3].copy_from_slice(&[b'M', b'K', wire::VERSION]);
                                d[3] = rng.below(17) as u8;
                            }
                            d
                        }
                    };
                    let other = pick(rng, corpus);
                    let n = rng.below(5);
                    mutate(rng, &mut d, other, n);
                    if d.len() >= 8 && rng.chance(0.6) {
                        d[6..8].fill(0); // our cluster, so it reaches the state machines
                    }
                    r.feed(&d);
                }
            }
        }
        if xfers.len() > 256 {
            xfers.drain(..128);
        }
        r.drain();
        if rng.chance(0.05) {
            // Let timers run: silent senders' transfers are abandoned, members expire.
            let d = Duration::from_millis(rng.below(12_000));
            r.advance(d);
        }
    }
    // Let everything expire, then look at what is left.
    for _ in 0..3 {
        r.advance(Duration::from_secs(60));
    }
    r.check_bounds();
    r
}
