//! Message-level tests of one outbound transfer (`send.rs`): what it sends, how it answers
//! NAKs, reports and the pace.

use super::report::MAX_LISTED_DELETION_BYTES;
use super::*;
use crate::proto::manifest::{change, Entry};
use crate::proto::storage::MemStorage;
use crate::proto::wire::{NakEntry, Writer, NAK_FINAL};

const BLOCK: usize = 256;
const K: u32 = 4;

/// A sender of one file of `blocks` blocks to two targets (nodes 1 and 2), both
/// registered as lacking everything; and its storage.
fn outbound(blocks: usize, now: Instant) -> (Outbound, MemStorage, Config, HeaderGen) {
    let mut st = MemStorage::new();
    let data: Vec<u8> = (0..blocks * BLOCK).map(|i| (i * 7 % 251) as u8).collect();
    st.add_file(b"f", data, 0o644, 1);
    let m = st.manifest();
    let n = m.entries.len();
    let cfg = Config::default();
    let code = Code {
        block: BLOCK,
        k: K,
        parity: 2,
    };
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let targets = vec![(1, "a".into(), addr), (2, "b".into(), addr)];
    let mut ob = Outbound::new(9, now, m, targets, code, None, &cfg);
    let report = encode_report(&vec![change::MISSING; n], &[], false);
    for node in [1, 2] {
        ob.on_report(now, node, 0, 1, &report);
    }
    ob.on_timeout(now, &cfg, |_| Some(now));
    assert_eq!(ob.phase, Phase::Data);
    let hdr = HeaderGen {
        node: 5,
        cluster: 0,
        seq: 0,
        scratch: Vec::new(),
    };
    (ob, st, cfg, hdr)
}

/// Drains what the transfer sends at `now`: (kind, stream, block index or parity
/// (group, index) as `idx`).
fn drain(
    ob: &mut Outbound,
    st: &mut MemStorage,
    hdr: &mut HeaderGen,
    now: Instant,
) -> Vec<(u8, Option<Stream>, u32)> {
    let pace = PaceInfo {
        rate: 1e6,
        interval: Duration::from_millis(5),
        rtt: Duration::from_micros(100),
        ..PaceInfo::default()
    };
    let mut buf = vec![0u8; wire::MAX_DATAGRAM];
    let mut out = Vec::new();
    while let Some((_, len)) = ob.poll(now, st, hdr, &mut buf, &pace) {
        let (_, m) = wire::decode(&buf[..len]).expect("own output decodes");
        out.push(match m {
            Msg::Block { stream, idx, .. } => (m.kind(), Some(stream), idx),
            Msg::Parity {
                stream,
                group,
                index,
                ..
            } => (m.kind(), Some(stream), group * 100 + u32::from(index)),
            other => (other.kind(), None, 0),
        });
    }
    out
}

fn nak(entries: &[NakEntry<'_>]) -> Vec<u8> {
    let mut w = Writer::new();
    for e in entries {
        e.write(&mut w);
    }
    w.into_vec()
}

fn payload(group: u32, need: u32, missing: &[u8]) -> NakEntry<'_> {
    NakEntry {
        stream: Stream::Payload,
        group,
        need,
        missing,
    }
}

#[test]
fn the_pass_sends_every_block_then_polls_and_named_blocks_are_resent_alone() {
    let t0 = Instant::now();
    let (mut ob, mut st, cfg, mut hdr) = outbound(16, t0);
    let sent = drain(&mut ob, &mut st, &mut hdr, t0);
    let payload_blocks: Vec<u32> = sent
        .iter()
        .filter(|(k, s, _)| *k == wire::kind::BLOCK && *s == Some(Stream::Payload))
        .map(|(_, _, i)| *i)
        .collect();
    assert_eq!(payload_blocks, (0..16).collect::<Vec<_>>());
    assert_eq!(sent.first().map(|x| x.0), Some(wire::kind::PACE));
    assert_eq!(sent.last().map(|x| x.0), Some(wire::kind::POLL));
    // Target 1 lost blocks 5 and 6 (group 1); target 2 has everything.
    let seen = hdr.seq;
    let hold = Duration::from_millis(1);
    let proactive = ob.repair_datagrams; // the plan's parity
    let e = nak(&[payload(1, 2, &[0b0110])]);
    ob.on_nak(t0, 1, 1, NAK_FINAL, seen, &e, hold, hold, &cfg);
    ob.on_nak(
        t0,
        2,
        1,
        NAK_FINAL | wire::NAK_DONE,
        seen,
        &[],
        hold,
        hold,
        &cfg,
    );
    let t1 = t0 + Duration::from_millis(2);
    let sent = drain(&mut ob, &mut st, &mut hdr, t1);
    // Only those two blocks (every needy receiver misses them), then the next poll.
    let repair: Vec<(u8, Option<Stream>, u32)> = sent
        .iter()
        .filter(|(k, _, _)| *k == wire::kind::BLOCK || *k == wire::kind::PARITY)
        .copied()
        .collect();
    assert_eq!(
        repair,
        vec![
            (wire::kind::BLOCK, Some(Stream::Payload), 5),
            (wire::kind::BLOCK, Some(Stream::Payload), 6)
        ]
    );
    assert!(sent.iter().any(|(k, _, _)| *k == wire::kind::POLL));
    assert_eq!(ob.repair_datagrams - proactive, 2);
}

#[test]
fn a_nak_during_the_pass_gets_parity_before_new_data_and_is_not_doubled() {
    let t0 = Instant::now();
    let (mut ob, mut st, cfg, mut hdr) = outbound(64, t0);
    let pace = PaceInfo {
        rate: 1e6,
        interval: Duration::from_millis(5),
        ..PaceInfo::default()
    };
    let mut buf = vec![0u8; wire::MAX_DATAGRAM];
    // Send the plan and the first 3 groups (12 blocks) of the payload.
    let mut payload_sent = 0;
    while payload_sent < 12 {
        let (_, len) = ob.poll(t0, &mut st, &mut hdr, &mut buf, &pace).unwrap();
        if let Ok((
            _,
            Msg::Block {
                stream: Stream::Payload,
                ..
            },
        )) = wire::decode(&buf[..len])
        {
            payload_sent += 1;
        }
    }
    // Target 2 lost block 1 of group 0, just sent: others may still NAK it.
    let seen = hdr.seq;
    let hold = Duration::from_millis(1);
    let settle = Duration::from_millis(50);
    let e = nak(&[payload(0, 1, &[0b10])]);
    ob.on_nak(t0, 2, 0, 0, seen, &e, hold, settle, &cfg);
    let t1 = t0 + hold;
    let (_, len) = ob.poll(t1, &mut st, &mut hdr, &mut buf, &pace).unwrap();
    let (_, m) = wire::decode(&buf[..len]).unwrap();
    assert!(
        matches!(
            m,
            Msg::Parity {
                group: 0,
                index: 0,
                ..
            }
        ),
        "repair goes first, as parity: {m:?}"
    );
    // Target 1 NAKs block 3 of the group, written before that parity left (same seen):
    // the parity serves it too; nothing more is sent for the group.
    let e = nak(&[payload(0, 1, &[0b1000])]);
    ob.on_nak(t1, 1, 0, 0, seen, &e, hold, settle, &cfg);
    let t2 = t1 + hold;
    let (_, len) = ob.poll(t2, &mut st, &mut hdr, &mut buf, &pace).unwrap();
    let (_, m) = wire::decode(&buf[..len]).unwrap();
    assert!(
        matches!(
            m,
            Msg::Block {
                stream: Stream::Payload,
                idx: 12,
                ..
            }
        ),
        "new data goes on: {m:?}"
    );
}

#[test]
fn a_member_out_of_the_pace_is_ignored_during_it_and_too_slow_after() {
    let t0 = Instant::now();
    let cfg = Config {
        min_rate: Some(1 << 20),
        ..Config::default()
    };
    let (mut ob, mut st, _, mut hdr) = outbound(16, t0);
    ob.floor = cfg.min_rate;
    ob.leave_pace(1, "it receives 10K/s".into());
    assert!(!ob.targets()[0].in_pace());
    assert!(ob
        .take_progress()
        .iter()
        .any(|l| l.contains("a leaves the group's pace")));
    // Its NAKs during the pass are not served now.
    let hold = Duration::from_millis(1);
    let e = nak(&[payload(0, 1, &[0b1])]);
    ob.on_nak(t0, 1, 0, 0, 0, &e, hold, hold, &cfg);
    let sent = drain(&mut ob, &mut st, &mut hdr, t0 + hold);
    let parity = |s: &[(u8, Option<Stream>, u32)]| {
        s.iter()
            .filter(|(k, st, _)| *k == wire::kind::PARITY && *st == Some(Stream::Payload))
            .count()
    };
    assert_eq!(parity(&sent), 0, "{sent:?}");
    // The pass ended with that poll: it must be done within 2 x 4 KiB / 1 MiB/s + 1 s.
    let deadline = ob.slow_deadline().unwrap();
    assert!(deadline > t0 + Duration::from_millis(1000));
    assert!(deadline <= t0 + hold + Duration::from_millis(1010));
    ob.on_nak(
        t0 + hold,
        2,
        1,
        NAK_FINAL | wire::NAK_DONE,
        hdr.seq,
        &[],
        hold,
        hold,
        &cfg,
    );
    let late = t0 + Duration::from_secs(2);
    ob.on_timeout(late, &cfg, |_| Some(late));
    let r = ob.report(late);
    let a = &r.members[0];
    assert!(
        a.error.as_deref().unwrap().starts_with("too slow"),
        "{:?}",
        a.error
    );
    assert_eq!(a.left_pace.as_deref(), Some("it receives 10K/s"));
    assert_eq!(ob.phase, Phase::Commit, "the others commit");
}

#[test]
fn report_round_trip() {
    let flags = vec![0, 0, 3, 0, 1, 0, 0];
    let dels = vec![b"a/b".to_vec(), b"c".to_vec()];
    // Attribute changes (the high byte) travel after the rest, only when present.
    let high = vec![0x100, 0, 0x283, 0, 0, 0, 0x200];
    let b = encode_report(&high, &dels, true);
    assert_eq!(decode_report(&b, 7).unwrap(), (high, 2, dels.clone()));
    for cut in 0..b.len() {
        if let Ok((f, ..)) = decode_report(&b[..cut], 7) {
            assert!(
                f.iter().all(|&f| f >> 8 == 0),
                "a cut kept part of the high byte"
            );
        }
    }
    let b = encode_report(&flags, &dels, true);
    assert_eq!(
        decode_report(&b, 7).unwrap(),
        (flags.clone(), 2, dels.clone())
    );
    let b = encode_report(&flags, &dels, false);
    assert_eq!(decode_report(&b, 7).unwrap(), (flags, 2, vec![]));
    assert!(decode_report(&b, 8).is_err());
    for cut in 0..b.len() {
        assert!(decode_report(&b[..cut], 7).is_err());
    }
}

/// Review of issue 12: a key holder's REPORT parts are capped per target (what a report
/// of this manifest can take) and for all targets together; a real report still arrives.
#[test]
fn report_parts_are_capped_per_target_and_in_all() {
    let now = Instant::now();
    let m = Manifest {
        entries: vec![
            Entry::file(b"a", 1, 0o644, 0),
            Entry::file(b"b", 1, 0o644, 0),
        ],
        ..Default::default()
    };
    let code = Code {
        block: 1024,
        k: 8,
        parity: 2,
    };
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let targets = (1..=40u64).map(|n| (n, format!("m{n}"), addr)).collect();
    let mut ob = Outbound::new(1, now, m, targets, code, None, &Config::default());
    let cap = max_report_len(2);
    let slot = std::mem::size_of::<Option<Vec<u8>>>();
    // More parts than a report of two entries can have: nothing is kept.
    assert!(!ob.on_report(now, 1, 0, u16::MAX, &[0u8; 1400]));
    assert_eq!(ob.reports_held, 0);
    // Within the count, full parts: kept up to the per-target cap, then dropped.
    let parts = cap.div_ceil(MIN_REPORT_PART) as u16;
    let mut dropped = 0;
    for node in 1..=40u64 {
        for p in 0..parts {
            if !ob.on_report(now, node, p, parts, &[0u8; 1400]) {
                dropped += 1;
            }
        }
        let t = &ob.targets[node as usize - 1];
        assert!(t.held <= cap + parts as usize * slot, "{}", t.held);
        assert!(t.flags.is_none());
    }
    assert!(ob.reports_held <= MAX_REPORTS_HELD, "{}", ob.reports_held);
    let held: usize = ob.targets.iter().map(|t| t.held).sum();
    assert_eq!(held, ob.reports_held);
    assert!(dropped > 40 * parts as usize / 2, "{dropped}");
    // A real report (in small parts) from a fresh transfer arrives whole.
    let m = Manifest {
        entries: vec![
            Entry::file(b"a", 1, 0o644, 0),
            Entry::file(b"b", 1, 0o644, 0),
        ],
        ..Default::default()
    };
    let targets = vec![(7, "m7".to_string(), addr)];
    let mut ob = Outbound::new(2, now, m, targets, code, None, &Config::default());
    let r = encode_report(&[0, change::SIZE], &[b"gone".to_vec()], true);
    let chunks: Vec<&[u8]> = r.chunks(3).collect();
    for (i, c) in chunks.iter().enumerate() {
        assert!(ob.on_report(now, 7, i as u16, chunks.len() as u16, c));
    }
    assert_eq!(ob.targets[0].flags, Some(vec![0, change::SIZE]));
    assert_eq!(ob.reports_held, 0);
}

#[test]
fn listed_deletions_stop_at_the_byte_cap() {
    let long = vec![b'x'; 4000];
    let dels = vec![long; 3000];
    let b = encode_report(&[0], &dels, true);
    let (_, n, list) = decode_report(&b, 1).unwrap();
    assert_eq!(n, 3000);
    assert_eq!(list.len(), MAX_LISTED_DELETION_BYTES / 4004);
    assert!(b.len() <= max_report_len(1));
}
