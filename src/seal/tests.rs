//! Tests of sealing: round trips, refusals, replay, rotation, the handshake, bounded tables,
//! the known answer of `docs/protocol.md`, and old and new seal formats refusing each other.

use super::handshake::SeqWindow;
use super::*;
use std::time::Duration;

fn key(b: u8) -> Key {
    Key::from_bytes([b; KEY_LEN])
}

use crate::proto::wire::{self, Msg, Stream};

const NOW: u64 = 1_700_000_000_000;
const CLUSTER: u16 = 7;
const A: u64 = 0xaaaa;
const B: u64 = 0xbbbb;

fn addr(node: u64) -> SocketAddr {
    SocketAddr::new([10, 0, (node >> 8) as u8, node as u8].into(), 5000)
}

fn hdr(node: u64) -> wire::Header {
    wire::Header {
        version: wire::VERSION,
        kind: 0,
        flags: 0,
        key_id: 0,
        cluster: CLUSTER,
        node,
        seq: 0,
    }
}

/// A sealer for `node` with `k`, and the clock it runs on.
fn sealer(k: &Key, node: u64) -> Sealer {
    Sealer::new(k, None, node, CLUSTER)
}

/// A block datagram from `s`'s node, sealed (unsealed form, sealed form).
fn sealed(s: &mut Sealer, at: u64) -> (Vec<u8>, Vec<u8>) {
    sealed_seq(s, 0, at)
}

/// [`sealed`] of a datagram the engine numbered `seq` (0: none).
fn sealed_seq(s: &mut Sealer, seq: u64, at: u64) -> (Vec<u8>, Vec<u8>) {
    let mut buf = [0u8; 256];
    let m = Msg::Block {
        xfer: 3,
        stream: Stream::Payload,
        idx: 5,
        data: b"delete nothing, please",
    };
    let mut h = hdr(s.node);
    h.seq = seq;
    let n = m.encode(&h, &mut buf);
    let mut plain = buf[..n].to_vec();
    let m = s.seal(&mut buf, n, at);
    assert_eq!(m, n + SEAL_OVERHEAD);
    plain[16..24].copy_from_slice(&buf[16..24]);
    (plain, buf[..m].to_vec())
}

fn open_at(s: &mut Sealer, d: &[u8], from: SocketAddr, now: Instant) -> Result<Vec<u8>, SealError> {
    let mut buf = d.to_vec();
    match s.open(&mut buf, d.len(), from, false, now, NOW)? {
        Opened::Datagram(n) => Ok(buf[..n].to_vec()),
        Opened::Handshake => Ok(Vec::new()),
    }
}

fn open(s: &mut Sealer, d: &[u8], from: SocketAddr) -> Result<Vec<u8>, SealError> {
    open_at(s, d, from, Instant::now())
}

/// Delivers every handshake datagram `from` has queued to `to`; returns how many.
fn deliver(from: &mut Sealer, to: &mut Sealer, now: Instant) -> usize {
    let mut buf = [0u8; HANDSHAKE_LEN];
    let mut n = 0;
    while let Some((dest, len)) = from.poll_handshake(&mut buf) {
        assert_eq!(
            dest,
            addr(to.node),
            "handshakes go back where datagrams came from"
        );
        assert_eq!(len, HANDSHAKE_LEN);
        let _ = to.open(&mut buf, len, addr(from.node), false, now, NOW);
        n += 1;
    }
    n
}

/// `rx` meets `tx`: a datagram of `tx`'s draws a challenge, answered (with a challenge
/// back), answered. Returns the datagram that started it.
fn meet(tx: &mut Sealer, rx: &mut Sealer, now: Instant) -> Vec<u8> {
    let (_, first) = sealed(tx, NOW);
    let from = addr(tx.node);
    assert!(matches!(
        open_at(rx, &first, from, now),
        Err(SealError::Unverified(n)) if n == tx.node
    ));
    assert_eq!(deliver(rx, tx, now), 1, "one challenge");
    assert_eq!(
        deliver(tx, rx, now),
        1,
        "one response, with a challenge back"
    );
    assert_eq!(rx.poll_verified(), Some(tx.node));
    assert_eq!(deliver(rx, tx, now), 1, "the challenge back is answered");
    assert_eq!(tx.poll_verified(), Some(rx.node));
    first
}

#[test]
fn seal_round_trip_after_a_challenge() {
    let k = key(1);
    let (mut tx, mut rx) = (sealer(&k, A), sealer(&k, B));
    let t = Instant::now();
    let first = meet(&mut tx, &mut rx, t);
    // What came before the answer is never accepted (the protocol sends it again).
    assert!(matches!(
        open_at(&mut rx, &first, addr(A), t),
        Err(SealError::Replayed { .. })
    ));
    let (plain, sd) = sealed(&mut tx, NOW);
    assert_eq!(sd[4], FLAG_SEALED | (SEAL_FORMAT << 1));
    assert_eq!(sd[5], k.id());
    assert_eq!(sd[6..16], plain[6..16], "cluster and node in clear");
    assert!(!sd.windows(6).any(|w| w == b"delete"), "body is encrypted");
    let back = open_at(&mut rx, &sd, addr(A), t).unwrap();
    assert_eq!(back, plain);
    let (h, m) = wire::decode(&back).unwrap();
    assert_eq!((h.flags, h.key_id, h.node), (0, 0, A));
    assert!(matches!(
        m,
        Msg::Block {
            data: b"delete nothing, please",
            ..
        }
    ));
    // Sequence numbers are the sealer's own, strictly increasing, handshakes included.
    let seqs: Vec<u64> = (0..3)
        .map(|_| be64(&sealed(&mut tx, NOW).1[16..24]))
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // An empty body (LEAVE) works too, and forgets the sender.
    let mut buf = [0u8; 64];
    let n = Msg::Leave.encode(&hdr(A), &mut buf);
    let m = tx.seal(&mut buf, n, NOW);
    assert_eq!(m, HEADER_LEN + SEAL_OVERHEAD);
    assert_eq!(
        rx.open(&mut buf, m, addr(A), false, t, NOW).unwrap(),
        Opened::Datagram(HEADER_LEN)
    );
    assert_eq!(wire::decode(&buf[..HEADER_LEN]).unwrap().1, Msg::Leave);
    assert_eq!(rx.peers(), 0);
}

#[test]
fn seal_clocks_do_not_matter() {
    // A sender whose clock is two minutes ahead (or a day behind) is accepted: the
    // timestamp is information.
    let k = key(1);
    let (mut tx, mut rx) = (sealer(&k, A), sealer(&k, B));
    let t = Instant::now();
    meet(&mut tx, &mut rx, t);
    let (_, ahead) = sealed(&mut tx, NOW + 120_000);
    assert!(open_at(&mut rx, &ahead, addr(A), t).is_ok());
    assert_eq!(rx.max_clock_offset(), Some((A, 120_000)));
    let (_, behind) = sealed(&mut tx, NOW - 86_400_000);
    assert!(open_at(&mut rx, &behind, addr(A), t).is_ok());
}

#[test]
fn seal_every_bit_flip_is_refused() {
    let k = key(1);
    let (mut tx, mut rx) = (sealer(&k, A), sealer(&k, B));
    let t = Instant::now();
    meet(&mut tx, &mut rx, t);
    let (_, sd) = sealed(&mut tx, NOW);
    for bit in 0..sd.len() * 8 {
        let mut d = sd.clone();
        d[bit / 8] ^= 1 << (bit % 8);
        let e = open_at(&mut rx, &d, addr(A), t).unwrap_err();
        if bit / 8 >= HEADER_LEN {
            assert!(matches!(e, SealError::BadTag), "bit {bit}: {e}");
        }
    }
    for cut in 0..sd.len() {
        assert!(
            open_at(&mut rx, &sd[..cut], addr(A), t).is_err(),
            "cut at {cut}"
        );
    }
    assert_eq!(rx.stats().opened, 0);
    assert!(
        open_at(&mut rx, &sd, addr(A), t).is_ok(),
        "the original still opens"
    );
}

#[test]
fn seal_wrong_key_other_cluster_old_format_and_unsealed_refused() {
    let mut tx = sealer(&key(1), A);
    let (plain, sd) = sealed(&mut tx, NOW);
    let mut other = sealer(&key(2), B);
    assert!(matches!(
        open(&mut other, &sd, addr(A)),
        Err(SealError::UnknownKey(id)) if id == key(1).id()
    ));
    // A different key that happens to claim the same id fails authentication.
    let mut d = sd.clone();
    d[5] = key(2).id();
    assert!(matches!(
        open(&mut other, &d, addr(A)),
        Err(SealError::BadTag)
    ));
    // An unsealed datagram (makuosan-style forgery) is refused.
    assert!(matches!(
        open(&mut other, &plain, addr(A)),
        Err(SealError::Unsealed)
    ));
    // An older makuo's format (flags 0x01) and a newer one: refused by format, so the
    // driver can say so.
    for (flags, f) in [(0x01, 0), (0x03, 1), (0x07, 3)] {
        let mut d = sd.clone();
        d[4] = flags;
        assert!(matches!(open(&mut other, &d, addr(A)), Err(SealError::Format(x)) if x == f));
    }
    let st = other.stats();
    assert_eq!(
        (st.unknown_key, st.bad_tag, st.unsealed_refused, st.format),
        (1, 1, 1, 3)
    );
    // Another cluster on the same group: refused before cryptography.
    let mut mine = Sealer::new(&key(1), None, B, 8);
    assert!(matches!(
        open(&mut mine, &sd, addr(A)),
        Err(SealError::OtherCluster(CLUSTER))
    ));
    assert!(matches!(
        open(&mut mine, b"XX", addr(A)),
        Err(SealError::Malformed)
    ));
}

#[test]
fn seal_rotation_first_seals_both_open() {
    let (old, new) = (key(1), key(2));
    let mut old_tx = Sealer::new(&old, None, A, CLUSTER);
    let mut new_tx = Sealer::new(&new, Some(&old), 0xcccc, CLUSTER);
    let mut rx = Sealer::new(&old, Some(&new), B, CLUSTER);
    assert_eq!(new_tx.key_id(), new.id());
    let t = Instant::now();
    meet(&mut old_tx, &mut rx, t);
    meet(&mut new_tx, &mut rx, t);
    let (pa, a) = sealed(&mut old_tx, NOW);
    let (pb, b) = sealed(&mut new_tx, NOW);
    assert_eq!(b[5], new.id(), "the first key seals");
    assert_eq!(open_at(&mut rx, &a, addr(A), t).unwrap(), pa);
    assert_eq!(open_at(&mut rx, &b, addr(0xcccc), t).unwrap(), pb);
    // A node that only knows the new key cannot open the old one's datagrams.
    let mut only_new = Sealer::new(&new, None, 0xdddd, CLUSTER);
    assert!(matches!(
        open(&mut only_new, &a, addr(A)),
        Err(SealError::UnknownKey(_))
    ));
    assert!(matches!(
        open(&mut only_new, &b, addr(0xcccc)),
        Err(SealError::Unverified(0xcccc))
    ));
}

#[test]
fn seal_rotation_with_colliding_key_ids() {
    // Find two keys with the same id; the receiver must try both.
    let a = key(0);
    let b = (1..=u32::MAX)
        .map(|i| {
            let mut b = [0u8; KEY_LEN];
            b[..4].copy_from_slice(&i.to_be_bytes());
            Key::from_bytes(b)
        })
        .find(|k| k.id() == a.id())
        .unwrap();
    let mut tx = Sealer::new(&b, Some(&a), A, CLUSTER);
    let mut rx = Sealer::new(&a, Some(&b), B, CLUSTER);
    let t = Instant::now();
    meet(&mut tx, &mut rx, t);
    let (p, d) = sealed(&mut tx, NOW);
    assert_eq!(open_at(&mut rx, &d, addr(A), t).unwrap(), p);
}

#[test]
fn seal_nonce_differs_per_seq_and_node() {
    let k = key(1);
    let mut a = sealer(&k, 42);
    let mut b = sealer(&k, 43);
    let (_, x) = sealed(&mut a, NOW);
    let (_, y) = sealed(&mut a, NOW);
    let (_, z) = sealed(&mut b, NOW);
    let body = HEADER_LEN..x.len();
    assert_ne!(x[body.clone()], y[body.clone()]);
    assert_ne!(x[body.clone()], z[body.clone()]);
}

#[test]
#[should_panic(expected = "another node")]
fn seal_refuses_another_nodes_datagram() {
    let mut s = sealer(&key(1), A);
    let mut buf = [0u8; 64];
    let n = Msg::Leave.encode(&hdr(B), &mut buf);
    s.seal(&mut buf, n, NOW);
}

#[test]
fn seal_replay_refused_each_seq_once() {
    let k = key(1);
    let (mut tx, mut rx) = (sealer(&k, A), sealer(&k, B));
    let t = Instant::now();
    meet(&mut tx, &mut rx, t);
    let (_, d1) = sealed(&mut tx, NOW);
    let (_, d2) = sealed(&mut tx, NOW);
    let (_, d3) = sealed(&mut tx, NOW);
    // Reordering is fine, each seq once.
    assert!(open_at(&mut rx, &d3, addr(A), t).is_ok());
    assert!(open_at(&mut rx, &d1, addr(A), t).is_ok());
    for d in [&d1, &d3] {
        assert!(matches!(
            open_at(&mut rx, d, addr(A), t),
            Err(SealError::Replayed { node: A, .. })
        ));
    }
    // From another address too: the window is the sender's, wherever it comes from.
    assert!(open_at(&mut rx, &d1, addr(0x99), t).is_err());
    assert!(open_at(&mut rx, &d2, addr(0x99), t).is_ok());
    assert_eq!(rx.stats().replayed, 3);
}

#[test]
fn seal_replay_window_matches_a_model() {
    let mut w = SeqWindow::above(999);
    let mut seen = std::collections::HashSet::new();
    let mut top = 999u64;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Mostly near the top, some far behind, some big jumps ahead.
        let seq = match x % 100 {
            0 => top + 1 + (x >> 40) % 10_000,
            1..=4 => top.saturating_sub((x >> 20) % 9_000),
            _ => (top + 3).saturating_sub((x >> 20) % 300),
        };
        let fresh = seq > 999 && !seen.contains(&seq) && seq + REPLAY_BITS > top;
        assert_eq!(w.accept(seq), fresh, "step {i}: seq {seq}, top {top}");
        if fresh {
            seen.insert(seq);
            top = top.max(seq);
        }
    }
}

#[test]
fn seal_a_restarted_receiver_challenges_again_and_old_traffic_stays_out() {
    let k = key(1);
    let mut tx = sealer(&k, A);
    let mut before = sealer(&k, B);
    let t = Instant::now();
    meet(&mut tx, &mut before, t);
    let (_, old) = sealed(&mut tx, NOW);
    assert!(open_at(&mut before, &old, addr(A), t).is_ok());
    // The receiver restarts (a new sealer with a new node id): the recording of `old`
    // draws a challenge, the live sender answers with its current number, so `old` (and
    // everything before the answer) stays refused; there is no window of time in which
    // a replay is accepted.
    let mut after = sealer(&k, 0xbbbc);
    let t2 = t + Duration::from_millis(10);
    assert!(matches!(
        open_at(&mut after, &old, addr(A), t2),
        Err(SealError::Unverified(A))
    ));
    assert_eq!(deliver(&mut after, &mut tx, t2), 1);
    assert_eq!(deliver(&mut tx, &mut after, t2), 1);
    assert_eq!(after.poll_verified(), Some(A));
    assert!(matches!(
        open_at(&mut after, &old, addr(A), t2),
        Err(SealError::Replayed { .. })
    ));
    let (p, new) = sealed(&mut tx, NOW);
    assert_eq!(open_at(&mut after, &new, addr(A), t2).unwrap(), p);
}

#[test]
fn seal_a_dead_senders_traffic_can_never_be_replayed() {
    let k = key(1);
    let mut dead = sealer(&k, A);
    let mut rx = sealer(&k, B);
    let (_, d) = sealed(&mut dead, NOW);
    let t = Instant::now();
    // Nobody answers the challenges (the sender is gone); recorded responses to earlier
    // challenges do not fit a new one.
    let mut old_responses = Vec::new();
    {
        let mut other_rx = sealer(&k, 0xb0b0);
        assert!(open_at(&mut other_rx, &d, addr(A), t).is_err());
        deliver(&mut other_rx, &mut dead, t);
        let mut buf = [0u8; HANDSHAKE_LEN];
        while let Some((_, n)) = dead.poll_handshake(&mut buf) {
            old_responses.push(buf[..n].to_vec());
        }
    }
    assert_eq!(old_responses.len(), 1);
    for i in 0..10 {
        // Apart by more than the retry interval and the address's budget rate.
        let ti = t + Duration::from_millis(250) * i;
        assert!(open_at(&mut rx, &d, addr(A), ti).is_err());
        for r in &old_responses {
            assert!(matches!(
                open_at(&mut rx, r, addr(A), ti),
                Err(SealError::StaleHandshake(A))
            ));
        }
    }
    assert_eq!(rx.stats().opened, 0);
    assert_eq!(rx.peers(), 0);
    assert_eq!(
        rx.stats().challenges,
        10,
        "challenged at most every retry interval"
    );
}

#[test]
fn seal_responses_must_come_from_the_challenged_address() {
    let k = key(1);
    let (mut tx, mut rx) = (sealer(&k, A), sealer(&k, B));
    let t = Instant::now();
    let (_, d) = sealed(&mut tx, NOW);
    assert!(open_at(&mut rx, &d, addr(A), t).is_err());
    deliver(&mut rx, &mut tx, t);
    let mut buf = [0u8; HANDSHAKE_LEN];
    let (_, n) = tx.poll_handshake(&mut buf).unwrap();
    let resp = buf[..n].to_vec();
    assert!(matches!(
        open_at(&mut rx, &resp, addr(0x77), t),
        Err(SealError::StaleHandshake(A))
    ));
    assert!(open_at(&mut rx, &resp, addr(A), t).is_ok());
    assert_eq!(rx.poll_verified(), Some(A));
    // Used up: the same response again is stale.
    assert!(matches!(
        open_at(&mut rx, &resp, addr(A), t),
        Err(SealError::StaleHandshake(A))
    ));
}

#[test]
fn seal_handshakes_never_send_more_than_they_got() {
    let k = key(1);
    let (mut tx, mut rx) = (sealer(&k, A), sealer(&k, B));
    let t = Instant::now();
    // A short authentic datagram (a LEAVE, 48 bytes) draws no challenge: it would be
    // longer than what came.
    let mut buf = [0u8; 64];
    let n = Msg::Leave.encode(&hdr(A), &mut buf);
    let m = tx.seal(&mut buf, n, NOW);
    assert!(m < HANDSHAKE_LEN);
    assert!(matches!(
        rx.open(&mut buf, m, addr(A), false, t, NOW),
        Err(SealError::Unverified(A))
    ));
    assert_eq!(rx.stats().challenges, 0);
    // A replayed challenge is answered once, with a response exactly as long as the
    // challenge; a new challenge (a new nonce) is answered again.
    let (_, d) = sealed(&mut tx, NOW);
    assert!(open_at(&mut rx, &d, addr(A), t).is_err());
    let mut c = [0u8; HANDSHAKE_LEN];
    let (_, n) = rx.poll_handshake(&mut c).unwrap();
    for i in 0..100u32 {
        let ti = t + Duration::from_millis(i as u64);
        let mut x = c;
        let _ = tx.open(&mut x, n, addr(B), false, ti, NOW);
    }
    let mut out = 0;
    let mut r = [0u8; HANDSHAKE_LEN];
    while let Some((_, len)) = tx.poll_handshake(&mut r) {
        assert_eq!(len, n);
        out += 1;
    }
    assert_eq!(out, 1, "100 copies of one challenge: one answer");
    assert_eq!(tx.stats().limited, 99);
    let t2 = t + CHALLENGE_RETRY;
    let (_, d) = sealed(&mut tx, NOW);
    assert!(open_at(&mut rx, &d, addr(A), t2).is_err());
    assert_eq!(deliver(&mut rx, &mut tx, t2), 1);
    assert!(
        tx.poll_handshake(&mut r).is_some(),
        "a new challenge is answered"
    );
}

#[test]
fn seal_tables_are_bounded_and_age_out() {
    let k = key(1);
    let mut rx = sealer(&k, B);
    let t = Instant::now();
    for i in 0..(MAX_PEERS + 10) as u64 {
        let mut tx = sealer(&k, 0x1_0000 + i);
        // At the global challenge rate.
        meet(&mut tx, &mut rx, t + Duration::from_millis(2 * i));
    }
    assert_eq!(rx.peers(), MAX_PEERS);
    // Challenges to senders that never answer are bounded too (and budgeted).
    for i in 0..(2 * MAX_PENDING) as u64 {
        let mut tx = sealer(&k, 0x2_0000 + i);
        let (_, d) = sealed(&mut tx, NOW);
        let ti = t + Duration::from_secs(9) + Duration::from_millis(i);
        let _ = open_at(
            &mut rx,
            &d,
            SocketAddr::new([10, 1, (i >> 8) as u8, i as u8].into(), 5000),
            ti,
        );
    }
    assert!(rx.challenged.len() <= MAX_PENDING);
    assert!(rx.addr_budget.len() <= MAX_PENDING);
    rx.expire(t + PEER_IDLE + Duration::from_secs(30));
    assert_eq!(rx.peers(), 0);
    assert_eq!(rx.challenged.len(), 0);
    assert_eq!(rx.used.len(), 0);
    assert_eq!(rx.addr_budget.len(), 0);
}

#[test]
fn seal_a_thousand_members_meet_a_newcomer_in_three_datagrams_each() {
    // A direct-mode sender joins a cluster of 1,000: its join draws 1,000 challenges, it
    // answers each (challenging back), each answers that. Both ends are verified with
    // three 64-byte datagrams per member.
    let k = key(1);
    let t = Instant::now();
    let mut s = sealer(&k, A);
    let mut members: Vec<Sealer> = (0..1000).map(|i| sealer(&k, 0x1_0000 + i)).collect();
    let (_, join) = sealed(&mut s, NOW);
    let mut sent = [0usize; 3];
    for m in &mut members {
        assert!(open_at(m, &join, addr(A), t).is_err());
        sent[0] += deliver(m, &mut s, t);
    }
    for m in &mut members {
        let mut buf = [0u8; HANDSHAKE_LEN];
        while let Some((to, n)) = s.poll_handshake(&mut buf) {
            if to == addr(m.node) {
                let _ = m.open(&mut buf, n, addr(A), false, t, NOW);
                sent[1] += 1;
                break;
            }
        }
        assert_eq!(m.poll_verified(), Some(A));
        sent[2] += deliver(m, &mut s, t);
    }
    assert_eq!(sent, [1000, 1000, 1000]);
    let mut verified = 0;
    while s.poll_verified().is_some() {
        verified += 1;
    }
    assert_eq!(verified, 1000);
    assert_eq!(s.peers(), 1000);
    assert_eq!(s.stats().responses, 1000);
}

/// The test vector of `docs/protocol.md (Sealing)`, checked independently (Python's
/// `cryptography`: HKDF-SHA256, then AES-256-GCM); pins the format.
#[test]
fn seal_known_answer() {
    let k = Key::from_bytes(std::array::from_fn(|i| i as u8));
    assert_eq!(k.id(), 0x48);
    let node = 0x0123_4567_89ab_cdef;
    let mut tx = Sealer::new(&k, None, node, 7);
    let mut buf = [0u8; 64];
    let n = Msg::Abort {
        xfer: 5,
        reason: b"hi",
    }
    .encode(&hdr(node), &mut buf);
    let mut plain = buf[..n].to_vec();
    plain[16..24].copy_from_slice(&1u64.to_be_bytes());
    let n = tx.seal(&mut buf, n, 1_700_000_000_000);
    let hex: String = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "4d4b050d054800070123456789abcdef0000000000000001\
         8b1a9f01dc084677337757b2b43f5c84\
         2eb0e3ee72a8d949f144a8d56839f54b"
    );
    let mut rx = Sealer::new(&k, None, 0x42, 7);
    // Not verified yet: refused, so open it as a verified peer would.
    rx.peers.insert(
        node,
        Peer {
            window: SeqWindow::above(0),
            last: Instant::now(),
            clock_offset_ms: 0,
            key: None,
        },
    );
    assert_eq!(open(&mut rx, &buf[..n], addr(1)).unwrap(), plain);
}

/// Seal format 1, as makuo sealed before format 2 (for these tests only): XChaCha20-Poly1305
/// under the cluster key itself, nonce `node | seq | "MKseal02"`, flags `0x03`; and the checks a
/// format-1 node made on what it received, in its order, with its words.
mod format1 {
    use super::*;
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};

    fn nonce(node: u64, seq: u64) -> XNonce {
        let mut n = [0u8; 24];
        n[..8].copy_from_slice(&node.to_be_bytes());
        n[8..16].copy_from_slice(&seq.to_be_bytes());
        n[16..].copy_from_slice(b"MKseal02");
        n.into()
    }

    /// Seals `buf[..len]` (an unsealed datagram) as a format-1 node numbered it `seq`.
    pub fn seal(key: &Key, buf: &mut [u8], len: usize, seq: u64, now_ms: u64) -> usize {
        let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
        let node = be64(&buf[8..16]);
        buf[16..24].copy_from_slice(&seq.to_be_bytes());
        buf[4] = (buf[4] & !SEAL_FORMAT_MASK) | FLAG_SEALED | (1 << 1);
        buf[5] = key.id();
        buf[len..len + TIMESTAMP_LEN].copy_from_slice(&now_ms.to_be_bytes());
        let (hdr, rest) = buf.split_at_mut(HEADER_LEN);
        let plain = len - HEADER_LEN + TIMESTAMP_LEN;
        let tag = cipher
            .encrypt_in_place_detached(&nonce(node, seq), hdr, &mut rest[..plain])
            .unwrap();
        rest[plain..plain + TAG_LEN].copy_from_slice(&tag);
        len + SEAL_OVERHEAD
    }

    /// What a format-1 node made of sealed datagram `d` up to the tag (the replay checks that
    /// follow are the same in both formats): its body length, or the refusal it logged.
    pub fn open(key: &Key, cluster: u16, d: &[u8]) -> Result<usize, String> {
        if d.len() < HEADER_LEN + SEAL_OVERHEAD || d[..2] != MAGIC || d[4] & FLAG_SEALED == 0 {
            return Err("malformed or unsealed".into());
        }
        if u16::from_be_bytes([d[6], d[7]]) != cluster {
            return Err("another cluster".into());
        }
        let format = (d[4] & SEAL_FORMAT_MASK) >> 1;
        if format != 1 {
            // Format 1's `SealError::Format` message, word for word.
            return Err(format!(
                "sealed in format {format}, this makuo speaks format 1{}",
                if format < 1 {
                    " (an older makuo: upgrade it)"
                } else {
                    " (a newer makuo: upgrade this one)"
                }
            ));
        }
        if d[5] != key.id() {
            return Err(format!("sealed with an unknown key (id {:#04x})", d[5]));
        }
        let mut d = d.to_vec();
        let (node, seq) = (be64(&d[8..16]), be64(&d[16..24]));
        let (hdr, rest) = d.split_at_mut(HEADER_LEN);
        let (ct, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let tag = chacha20poly1305::Tag::clone_from_slice(tag);
        XChaCha20Poly1305::new(key.as_bytes().into())
            .decrypt_in_place_detached(&nonce(node, seq), hdr, ct, &tag)
            .map_err(|_| "authentication failed".to_string())?;
        Ok(ct.len() - TIMESTAMP_LEN)
    }
}

/// The ABORT of the known-answer test, unsealed, from `node`.
fn abort_from(node: u64) -> ([u8; 64], usize) {
    let mut buf = [0u8; 64];
    let n = Msg::Abort {
        xfer: 5,
        reason: b"hi",
    }
    .encode(&hdr(node), &mut buf);
    (buf, n)
}

#[test]
fn seal_format1_encoder_is_the_old_one() {
    // The test vector format 1 documented, so the encoder above is what old nodes send.
    let k = Key::from_bytes(std::array::from_fn(|i| i as u8));
    let (mut buf, n) = abort_from(0x0123_4567_89ab_cdef);
    // Old nodes speak protocol version 2.
    buf[2] = 2;
    buf[6..8].copy_from_slice(&7u16.to_be_bytes());
    let n = format1::seal(&k, &mut buf, n, 1, 1_700_000_000_000);
    let hex: String = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "4d4b020d034800070123456789abcdef0000000000000001\
         e5352c43b544868602cd57529a0e9930\
         86ae7823469838b4a04c2b38bbf436a2"
    );
    assert_eq!(format1::open(&k, 7, &buf[..n]), Ok(8));
}

#[test]
fn seal_old_and_new_formats_refuse_each_other_with_a_clear_message() {
    let k = key(1);
    let t = Instant::now();
    // An old node (format 1) sends to a new one: refused before any cryptography, counted,
    // no challenge drawn, and the message says who must upgrade.
    let (mut old, n) = abort_from(A);
    let n = format1::seal(&k, &mut old, n, 1, NOW);
    let mut rx = sealer(&k, B);
    let e = open_at(&mut rx, &old[..n], addr(A), t).unwrap_err();
    assert!(matches!(e, SealError::Format(1)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "sealed in format 1, this makuo speaks format 2 (an older makuo: upgrade it)"
    );
    assert_eq!((rx.stats().format, rx.stats().opened), (1, 0));
    assert!(rx.poll_handshake(&mut [0u8; HANDSHAKE_LEN]).is_none());
    // A new node sends to an old one: the old node refuses it by format, with its message.
    let mut tx = sealer(&k, A);
    let (_, new) = sealed(&mut tx, NOW);
    assert_eq!(
        format1::open(&k, CLUSTER, &new),
        Err(
            "sealed in format 2, this makuo speaks format 1 (a newer makuo: upgrade this one)"
                .into()
        )
    );
    // Never silently: with the format bits forged to match, each fails authentication.
    let mut forged = new.clone();
    forged[4] = FLAG_SEALED | (1 << 1);
    assert_eq!(
        format1::open(&k, CLUSTER, &forged),
        Err("authentication failed".into())
    );
    let mut forged = old[..n].to_vec();
    forged[4] = FLAG_SEALED | (SEAL_FORMAT << 1);
    assert!(matches!(
        open_at(&mut rx, &forged, addr(A), t),
        Err(SealError::BadTag)
    ));
}

/// Review of issue 12, F4: a recorded CHALLENGE sent to the group would make every
/// member answer its forged source at once; handshakes are only ever unicast.
#[test]
fn seal_handshakes_through_the_group_are_never_answered() {
    let k = key(1);
    let (mut tx, mut rx) = (sealer(&k, A), sealer(&k, B));
    let t = Instant::now();
    let (_, d) = sealed(&mut tx, NOW);
    assert!(open_at(&mut rx, &d, addr(A), t).is_err());
    let mut c = [0u8; HANDSHAKE_LEN];
    let (_, n) = rx.poll_handshake(&mut c).unwrap();
    let mut x = c;
    assert!(matches!(
        tx.open(&mut x, n, addr(B), true, t, NOW),
        Ok(Opened::Handshake)
    ));
    assert!(tx.poll_handshake(&mut x).is_none(), "not answered");
    assert_eq!((tx.stats().limited, tx.stats().responses), (1, 0));
    // The same challenge unicast is answered, and the response through the group is not
    // taken.
    let mut x = c;
    tx.open(&mut x, n, addr(B), false, t, NOW).unwrap();
    let (_, m) = tx.poll_handshake(&mut x).unwrap();
    let mut y = x;
    assert!(matches!(
        rx.open(&mut y, m, addr(A), true, t, NOW),
        Err(SealError::StaleHandshake(A))
    ));
    assert_eq!(rx.peers(), 0);
    rx.open(&mut x, m, addr(A), false, t, NOW).unwrap();
    assert_eq!(rx.poll_verified(), Some(A));
}

/// Review of issue 12, F4: recordings of many exited nodes with a forged source draw at
/// most the address's budget of challenges, and all addresses together the global one.
#[test]
fn seal_challenges_are_budgeted_per_address_and_in_all() {
    let k = key(1);
    let mut rx = sealer(&k, B);
    let t = Instant::now();
    let recordings: Vec<Vec<u8>> = (0..3000u64)
        .map(|i| sealed(&mut sealer(&k, 0x3_0000 + i), NOW).1)
        .collect();
    // 3,000 in one second from one address.
    let victim = addr(0x99);
    for (i, d) in recordings.iter().enumerate() {
        let ti = t + Duration::from_micros(i as u64 * 333);
        let _ = open_at(&mut rx, d, victim, ti);
    }
    let sent = rx.stats().challenges as f64;
    assert!(
        sent <= CHALLENGE_ADDR_BURST + CHALLENGE_ADDR_RATE + 1.0,
        "{sent} challenges to one address in 1 s"
    );
    assert!(sent >= CHALLENGE_ADDR_BURST, "{sent}");
    assert!(rx.stats().limited >= 2900);
    // From 3,000 addresses within 1 s: the global budget.
    let mut rx = sealer(&k, B);
    for (i, d) in recordings.iter().enumerate() {
        let ti = t + Duration::from_micros(i as u64 * 333);
        let from = SocketAddr::new([10, 2, (i >> 8) as u8, i as u8].into(), 5000);
        let _ = open_at(&mut rx, d, from, ti);
    }
    let sent = rx.stats().challenges as f64;
    assert!(
        sent <= CHALLENGE_BURST + CHALLENGE_RATE + 1.0,
        "{sent} challenges in 1 s"
    );
    assert!(sent >= CHALLENGE_BURST, "{sent}");
}

/// Review of issue 12, F5: replayed challenges and heartbeats of exited nodes, however
/// many, evict no challenge of ours, make no new nonce and do not hold back our retry.
#[test]
fn seal_replayed_handshakes_starve_nobody() {
    let k = key(1);
    const L: u64 = 0x1111;
    let (mut live, mut newcomer) = (sealer(&k, L), sealer(&k, B));
    let t = Instant::now();
    // Challenges the live member sent to exited nodes, harvested by the attacker.
    let mut harvested = Vec::new();
    for i in 0..50u64 {
        let (_, d) = sealed(&mut sealer(&k, 0x5_0000 + i), NOW);
        let _ = open_at(&mut live, &d, addr(0x5000 + i), t);
        let mut c = [0u8; HANDSHAKE_LEN];
        while let Some((_, n)) = live.poll_handshake(&mut c) {
            harvested.push(c[..n].to_vec());
        }
    }
    assert_eq!(harvested.len(), 50);
    // The newcomer hears the live member and challenges it.
    let (_, hb) = sealed(&mut live, NOW);
    assert!(open_at(&mut newcomer, &hb, addr(L), t).is_err());
    let mut c = [0u8; HANDSHAKE_LEN];
    let (_, n) = newcomer.poll_handshake(&mut c).unwrap();
    let challenge = c[..n].to_vec();
    let retry_at = newcomer.challenged[&L];
    // The flood: harvested challenges unicast to the newcomer in the live member's name,
    // and recordings of 5,000 exited nodes.
    for (i, h) in harvested.iter().cycle().take(5000).enumerate() {
        let ti = t + Duration::from_micros(i as u64);
        let _ = open_at(&mut newcomer, h, addr(L), ti);
        let (_, d) = sealed(&mut sealer(&k, 0x6_0000 + i as u64), NOW);
        let _ = open_at(&mut newcomer, &d, addr(0x7000 + i as u64), ti);
    }
    assert_eq!(newcomer.challenged[&L], retry_at, "retry timer untouched");
    while newcomer.poll_handshake(&mut c).is_some() {}
    // The live member's answer to the real challenge still verifies it.
    let t2 = t + Duration::from_millis(30);
    let mut x = challenge.clone();
    live.open(&mut x, n, addr(B), false, t2, NOW).unwrap();
    let (_, m) = live.poll_handshake(&mut x).unwrap();
    newcomer.open(&mut x, m, addr(L), false, t2, NOW).unwrap();
    assert_eq!(newcomer.poll_verified(), Some(L));
    // Nonces are valid for PENDING_TTL and no longer, and not after a restart.
    let mut later = sealer(&k, B);
    let (_, hb) = sealed(&mut live, NOW);
    assert!(open_at(&mut later, &hb, addr(L), t).is_err());
    let (_, n) = later.poll_handshake(&mut c).unwrap();
    let mut x = c;
    live.open(&mut x, n, addr(B), false, t, NOW).unwrap();
    let (_, m) = live.poll_handshake(&mut x).unwrap();
    let mut y = x;
    assert!(matches!(
        later.open(
            &mut y,
            m,
            addr(L),
            false,
            t + PENDING_TTL + CHALLENGE_RETRY * 2,
            NOW
        ),
        Err(SealError::StaleHandshake(L))
    ));
    let mut restarted = sealer(&k, B);
    let mut y = x;
    assert!(matches!(
        restarted.open(&mut y, m, addr(L), false, t, NOW),
        Err(SealError::StaleHandshake(L))
    ));
}

/// The number a datagram the engine numbered `seq` went out with.
fn sealed_as(s: &mut Sealer, seq: u64) -> u64 {
    be64(&sealed_seq(s, seq, NOW).1[16..24])
}

#[test]
fn seal_keeps_the_engines_numbers_and_never_reuses_one() {
    // Receivers echo the number they saw; the engine reads round-trip times from it. The
    // sealer keeps the engine's numbers, takes the next one for a handshake, and renumbers
    // (counted) only a number that is not above every one it sealed: a nonce never repeats.
    let (k, mut a, mut b) = (key(1), sealer(&key(1), A), sealer(&key(1), B));
    let _ = k;
    assert_eq!(sealed_as(&mut a, 1), 1);
    assert_eq!(sealed_as(&mut a, 2), 2);
    // B challenges A: A answers with a handshake, numbered 3 by the sealer.
    let (_, d) = sealed(&mut a, NOW);
    assert_eq!(be64(&d[16..24]), 3, "a zero number is the sealer's next");
    let _ = open(&mut b, &d, addr(A));
    assert_eq!(deliver(&mut b, &mut a, Instant::now()), 1);
    assert_eq!(deliver(&mut a, &mut b, Instant::now()), 1);
    assert_eq!(a.last_seq(), 4, "the response took the next number");
    assert_eq!(a.stats().renumbered, 0);
    // An engine that was told to skip numbers past the handshake keeps its numbering.
    assert_eq!(sealed_as(&mut a, 5), 5);
    // One that was not is renumbered, counted, and never reuses a nonce.
    assert_eq!(sealed_as(&mut a, 5), 6);
    assert_eq!(sealed_as(&mut a, 2), 7);
    assert_eq!(a.stats().renumbered, 2);
    assert_eq!(sealed_as(&mut a, 100), 100);
}
