//! The sealing target.

use super::*;

#[derive(Debug, Default)]
pub(crate) struct SealRun {
    pub(crate) opened: u64,
    pub(crate) handshakes: u64,
    pub(crate) refused: u64,
    pub(crate) replay_refused: u64,
    pub(crate) receiver_restarts: u64,
    pub(crate) sender_restarts: u64,
}

pub(crate) fn hash(b: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// One sending process of the sealing target: its sealer and reply address.
pub(crate) struct Tx {
    pub(crate) sealer: Sealer,
    pub(crate) node: u64,
    pub(crate) addr: SocketAddr,
}

/// Node ids of the sealing target's processes: each restart is a new one.
pub(crate) static NEXT_NODE: AtomicU64 = AtomicU64::new(0x5ea1_0000_0000_0001);

pub(crate) fn new_node() -> u64 {
    NEXT_NODE.fetch_add(1, Relaxed)
}

pub(crate) fn new_tx(key: &Key, cluster: u16, i: usize) -> Tx {
    let node = new_node();
    Tx {
        sealer: Sealer::new(key, None, node, cluster),
        node,
        addr: SocketAddr::new([10, 8, 0, i as u8 + 1].into(), 4000 + (node % 1000) as u16),
    }
}

/// The sealing target: a receiving sealer between live senders that seal corpus datagrams
/// and answer its challenges (the fuzzer is their network: it loses, duplicates, replays,
/// reorders, misaddresses and mutates), a key holder forging handshakes, another cluster key,
/// unsealed and old-format datagrams and noise; receivers and senders restart now and then.
/// Asserted: only a genuine datagram opens, once ever (across receiver restarts), to exactly
/// what was sealed, and only above the sequence number of its sender's answer to a challenge
/// of this receiver; every refusal is counted.
pub(crate) fn seal_phase(rng: &mut Rng, cases: u64, corpus: &[Vec<u8>], case0: u64) -> SealRun {
    let key = Key::from_bytes(std::array::from_fn(|_| rng.next() as u8));
    let other = Key::from_bytes(std::array::from_fn(|_| rng.next() as u8));
    let cluster = 0x5ea1_u16;
    let rx_addr: SocketAddr = "10.9.9.9:5000".parse().unwrap();
    let mut rx = Sealer::new(&key, None, new_node(), cluster);
    let mut rx_gen = 0u32;
    let mut txs: Vec<Tx> = (0..4).map(|i| new_tx(&key, cluster, i)).collect();
    let other_node = new_node();
    let mut tx_other = Sealer::new(&other, None, other_node, cluster);
    let forger_node = new_node();
    let mut forger = Sealer::new(&key, None, forger_node, cluster);
    let forger_addr: SocketAddr = "10.7.7.7:6000".parse().unwrap();
    let mut now = Instant::now();
    let wall = 1_700_000_000_000u64;
    // Every datagram sealed with the cluster key, by (node, seq): hashes of its sealed and
    // unsealed forms; which were ever accepted; floors per (receiver run, node); recent
    // datagrams whole (with where they came from) for replays; handshakes in flight to rx.
    let mut genuine: HashMap<(u64, u64), (u64, u64)> = HashMap::new();
    let mut accepted: HashSet<(u64, u64)> = HashSet::new();
    let mut floors: HashMap<(u32, u64), u64> = HashMap::new();
    let mut history: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
    let mut to_rx: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
    let mut buf = vec![0u8; 70_000];
    let mut hs = vec![0u8; 256];
    let mut scratch = vec![0u8; 70_000];
    let mut run = SealRun::default();
    let mut total = SealStats::default();
    for i in 0..cases {
        CASE.store(case0 + i, Relaxed);
        now += Duration::from_micros(rng.below(3000));
        let (input, from): (Vec<u8>, SocketAddr) = match rng.below(20) {
            0..=7 => {
                // Genuine data from a live sender, possibly mutated or from elsewhere.
                let t = rng.below(txs.len() as u64) as usize;
                let tx = &mut txs[t];
                let mut d = pick(rng, corpus).clone();
                d[6..8].copy_from_slice(&cluster.to_be_bytes());
                d[8..16].copy_from_slice(&tx.node.to_be_bytes());
                let plain_len = d.len();
                d.resize(plain_len + wire::SEAL_OVERHEAD, 0);
                let mut plain = d[..plain_len].to_vec();
                let n = tx.sealer.seal(&mut d, plain_len, wall + rng.below(300_000));
                d.truncate(n);
                plain[16..24].copy_from_slice(&d[16..24]);
                let seq = u64::from_be_bytes(d[16..24].try_into().unwrap());
                genuine.insert((tx.node, seq), (hash(&d), hash(&plain)));
                history.push((d.clone(), tx.addr));
                let mut from = tx.addr;
                if rng.chance(0.05) {
                    from = forger_addr;
                }
                if rng.chance(0.2) {
                    let other = pick(rng, corpus);
                    let n = 1 + rng.below(4);
                    mutate(rng, &mut d, other, n);
                }
                (d, from)
            }
            8..=10 => {
                // A handshake datagram on its way to the receiver (or a replay of one).
                if to_rx.is_empty() {
                    continue;
                }
                let k = rng.below(to_rx.len() as u64) as usize;
                let (mut d, mut from) = if rng.chance(0.8) {
                    to_rx.swap_remove(k)
                } else {
                    to_rx[k].clone()
                };
                if rng.chance(0.05) {
                    from = forger_addr;
                }
                if rng.chance(0.1) {
                    let other = pick(rng, corpus);
                    mutate(rng, &mut d, other, 1);
                }
                (d, from)
            }
            11 | 12 => {
                // A replay of anything genuine seen before, possibly mutated.
                if history.is_empty() {
                    continue;
                }
                let (mut d, from) = pick(rng, &history).clone();
                if rng.chance(0.3) {
                    let other = pick(rng, corpus);
                    mutate(rng, &mut d, other, 1);
                }
                (d, from)
            }
            13 => {
                // A key holder's handshakes: challenges and responses with random nonces,
                // and bodies of the wrong length.
                let kind = if rng.chance(0.5) {
                    wire::kind::CHALLENGE
                } else {
                    wire::kind::RESPONSE
                };
                let body = if rng.chance(0.8) {
                    16
                } else {
                    rng.below(40) as usize
                };
                let mut d = vec![0u8; wire::HEADER_LEN + body + wire::SEAL_OVERHEAD];
                d[..3].copy_from_slice(&[b'M', b'K', wire::VERSION]);
                d[3] = kind;
                d[6..8].copy_from_slice(&cluster.to_be_bytes());
                d[8..16].copy_from_slice(&forger_node.to_be_bytes());
                for b in &mut d[wire::HEADER_LEN..wire::HEADER_LEN + body] {
                    *b = rng.next() as u8;
                }
                let n = forger.seal(&mut d, wire::HEADER_LEN + body, wall);
                d.truncate(n);
                (d, forger_addr)
            }
            14 => {
                // Sealed with another key (same layout).
                let mut d = pick(rng, corpus).clone();
                d[6..8].copy_from_slice(&cluster.to_be_bytes());
                d[8..16].copy_from_slice(&other_node.to_be_bytes());
                let l = d.len();
                d.resize(l + wire::SEAL_OVERHEAD, 0);
                let n = tx_other.seal(&mut d, l, wall);
                d.truncate(n);
                (d, txs[0].addr)
            }
            15 => {
                // Unsealed, a forged flag, or a genuine datagram relabelled as another seal
                // format (an older or newer makuo).
                let mut d = pick(rng, corpus).clone();
                d[6..8].copy_from_slice(&cluster.to_be_bytes());
                match rng.below(3) {
                    0 => {}
                    1 => {
                        d[4] |= wire::FLAG_SEALED;
                        d[5] = key.id();
                    }
                    _ => {
                        if let Some((h, _)) = history.last() {
                            d = h.clone();
                            let f = makuo::seal::SEAL_FORMAT;
                            let other = if rng.chance(0.5) { f - 1 } else { f + 1 };
                            d[4] = wire::FLAG_SEALED | (other << 1);
                        }
                    }
                }
                (d, txs[0].addr)
            }
            16 => {
                let mut d = noise(rng, 200);
                if d.len() >= 8 && rng.chance(0.7) {
                    d[..3].copy_from_slice(&[b'M', b'K', wire::VERSION]);
                    d[3] = if rng.chance(0.5) {
                        14 + rng.below(2) as u8
                    } else {
                        d[3]
                    };
                    d[4] = wire::FLAG_SEALED | (makuo::seal::SEAL_FORMAT << 1);
                    d[5] = key.id();
                    d[6..8].copy_from_slice(&cluster.to_be_bytes());
                }
                (d, forger_addr)
            }
            _ => {
                // Events: time passes (tables age), the receiver restarts, a sender restarts.
                match rng.below(100) {
                    0..=2 => {
                        rx = Sealer::new(&key, None, new_node(), cluster);
                        rx_gen += 1;
                        run.receiver_restarts += 1;
                    }
                    3..=9 => {
                        let t = rng.below(txs.len() as u64) as usize;
                        txs[t] = new_tx(&key, cluster, t);
                        run.sender_restarts += 1;
                    }
                    10..=19 => {
                        // Long enough for every table to age out.
                        now += Duration::from_millis(rng.below(90_000));
                        rx.expire(now);
                        for t in &mut txs {
                            t.sealer.expire(now);
                        }
                    }
                    _ => {
                        now += Duration::from_millis(rng.below(2_000));
                        rx.expire(now);
                        for t in &mut txs {
                            t.sealer.expire(now);
                        }
                    }
                }
                continue;
            }
        };
        if history.len() > 10_000 {
            history.drain(..5_000);
        }
        let before = rx.stats();
        buf[..input.len()].copy_from_slice(&input);
        let r = rx.open(&mut buf, input.len(), from, input.len() % 7 == 0, now, wall);
        let node = input
            .get(8..16)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()));
        let seq = input
            .get(16..24)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()));
        match r {
            Ok(Opened::Datagram(n)) => {
                run.opened += 1;
                let (node, seq) = (node.unwrap(), seq.unwrap());
                let g = genuine.get(&(node, seq)).copied();
                assert_eq!(
                    g.map(|g| g.0),
                    Some(hash(&input)),
                    "a datagram that was never sealed opened, at {}",
                    where_()
                );
                assert!(
                    accepted.insert((node, seq)),
                    "a datagram opened twice (across receiver restarts too), at {}",
                    where_()
                );
                let floor = floors.get(&(rx_gen, node)).copied();
                assert!(
                    floor.is_some_and(|f| seq > f),
                    "opened seq {seq} of node {node:016x}, floor {floor:?}, at {}",
                    where_()
                );
                assert_eq!(n, input.len() - wire::SEAL_OVERHEAD);
                assert_eq!(
                    g.map(|g| g.1),
                    Some(hash(&buf[..n])),
                    "opened to other bytes than were sealed, at {}",
                    where_()
                );
                check_decode(&buf[..n], &mut scratch);
            }
            Ok(Opened::Handshake) => {
                run.handshakes += 1;
                assert!(matches!(
                    input[3],
                    wire::kind::CHALLENGE | wire::kind::RESPONSE
                ));
            }
            Err(e) => {
                run.refused += 1;
                if matches!(e, SealError::Replayed { .. }) {
                    run.replay_refused += 1;
                }
                check_decode(&input, &mut scratch);
            }
        }
        // A sender it verified now: that was the response just opened, whose number is the
        // floor.
        while let Some(v) = rx.poll_verified() {
            assert_eq!(
                Some(v),
                node,
                "verified another node than answered, at {}",
                where_()
            );
            assert_eq!(input[3], wire::kind::RESPONSE);
            floors.insert((rx_gen, v), seq.unwrap());
        }
        // The network between: what the receiver sends goes to the sender at that address
        // (mostly), and what senders answer comes back later.
        while let Some((to, n)) = rx.poll_handshake(&mut hs) {
            assert_eq!(n, makuo::seal::HANDSHAKE_LEN);
            let d = hs[..n].to_vec();
            if let Some(tx) = txs.iter_mut().find(|t| t.addr == to) {
                if rng.chance(0.85) {
                    let mut x = d.clone();
                    let _ = tx.sealer.open(&mut x, n, rx_addr, false, now, wall);
                    while tx.sealer.poll_verified().is_some() {}
                    while let Some((back, m)) = tx.sealer.poll_handshake(&mut hs) {
                        assert_eq!(back, rx_addr);
                        to_rx.push((hs[..m].to_vec(), tx.addr));
                        history.push((hs[..m].to_vec(), tx.addr));
                    }
                }
            }
        }
        if to_rx.len() > 64 {
            to_rx.drain(..32);
        }
        add_delta(&mut total, &before, &rx.stats());
    }
    let s = total;
    let refused = s.bad_tag
        + s.unsealed_refused
        + s.unknown_key
        + s.replayed
        + s.malformed
        + s.other_cluster
        + s.format
        + s.unverified
        + s.stale_handshake;
    assert_eq!(s.opened, run.opened);
    assert_eq!(refused, run.refused, "every refusal counted: {s:?}");
    // Every path was taken.
    assert!(
        s.replayed > 0 && s.bad_tag > 0 && s.unverified > 0 && s.stale_handshake > 0,
        "{s:?}"
    );
    assert!(
        s.unknown_key > 0 && s.unsealed_refused > 0 && s.format > 0,
        "{s:?}"
    );
    assert!(
        s.challenges > 0 && s.responses > 0 && s.verified >= txs.len() as u64,
        "{s:?}"
    );
    run
}

/// Adds what one `open` changed in the counters (receivers restart, so totals are summed
/// from differences).
pub(crate) fn add_delta(total: &mut SealStats, before: &SealStats, after: &SealStats) {
    macro_rules! add {
        ($($f:ident),*) => { $( total.$f += after.$f - before.$f; )* };
    }
    add!(
        opened,
        sealed,
        bad_tag,
        unsealed_refused,
        unknown_key,
        replayed,
        malformed,
        other_cluster,
        format,
        unverified,
        stale_handshake,
        challenges,
        responses,
        verified,
        limited
    );
}
