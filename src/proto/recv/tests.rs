//! Message-level tests of one inbound transfer: NAKs during the pass, their timers and
//! suppression, repair, the end-of-pass poll.

use super::*;
use crate::proto::manifest::change;
use crate::proto::storage::MemStorage;
use crate::proto::wire::naks;
use std::time::Duration;

const BLOCK: usize = 256;
const K: u32 = 4;

/// An inbound transfer of one file of 64 blocks (16 groups of 4), registered and with
/// its plan, so payload blocks count; and the file's blocks, and a storage.
fn inbound(now: Instant) -> (Inbound, Vec<Vec<u8>>, MemStorage) {
    let code = Code {
        block: BLOCK,
        k: K,
        parity: 2,
    };
    let mut src = MemStorage::new();
    let data: Vec<u8> = (0..64 * BLOCK).map(|i| (i * 13 % 251) as u8).collect();
    src.add_file(b"f", data.clone(), 0o644, 1);
    let m = src.manifest();
    let key = XferKey { origin: 7, xfer: 1 };
    let mut ib = Inbound::new(key, "127.0.0.1:9".parse().unwrap(), 0, code, 1, now);
    // The engine sets it from what every inbound transfer holds: room enough here.
    ib.headroom = 1 << 30;
    let n = m.entries.len();
    let f = m.entries.iter().position(|e| e.path == b"f").unwrap();
    ib.manifest = Some(m);
    ib.set_inspection(
        Inspection {
            flags: vec![change::MISSING; n],
            deletions: vec![],
            refused: None,
        },
        false,
    );
    let mut plan = vec![0u8; n.div_ceil(8)];
    plan[f / 8] |= 1 << (f % 8);
    let mut st = MemStorage::new();
    assert!(ib.on_block(now, &mut st, Stream::Plan, 0, &plan));
    let blocks = data.chunks(BLOCK).map(<[u8]>::to_vec).collect();
    (ib, blocks, st)
}

#[test]
fn a_group_is_naked_once_later_blocks_came_naming_what_it_misses() {
    let t0 = Instant::now();
    let (mut ib, blocks, mut st) = inbound(t0);
    let gap = Duration::from_millis(5);
    let renak = Duration::from_millis(20);
    // Blocks 0..40 arrive but block 2 and block 9 (groups 0 and 2).
    for i in (0..40u32).filter(|&i| i != 2 && i != 9) {
        ib.on_block(t0, &mut st, Stream::Payload, i, &blocks[i as usize]);
    }
    // Blocks up to 39 came: groups 0 and 1 are over (32 blocks of tolerance), group 2
    // not yet.
    let w = ib.due_naks(t0, gap, renak, NakSpread::NONE, 100);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(
        (w[0].stream, w[0].group, w[0].need),
        (Stream::Payload, 0, 1)
    );
    assert_eq!(w[0].map, vec![0b0100]);
    // As a NAK: the entry decodes to the same.
    let parts = nak_parts(&w, 1000);
    let e: Vec<_> = naks(&parts[0]).collect();
    assert_eq!(
        (e[0].group, e[0].need, e[0].lacks(2), e[0].lacks(1)),
        (0, 1, true, false)
    );
    // Block 44 comes: group 2 is over too, but the last NAK left less than a gap ago.
    ib.on_block(t0, &mut st, Stream::Payload, 44, &blocks[44]);
    assert!(ib.due_naks(t0, gap, renak, NakSpread::NONE, 100).is_empty());
    assert_eq!(ib.nak_timer(), Some(t0 + gap));
    let t1 = t0 + gap;
    let w = ib.due_naks(t1, gap, renak, NakSpread::NONE, 100);
    assert_eq!(w.iter().map(|w| w.group).collect::<Vec<_>>(), vec![2]);
    // Group 0 got no repair: it is NAKed again once renak has passed.
    let w = ib.due_naks(t0 + renak, gap, renak, NakSpread::NONE, 100);
    assert_eq!(w.iter().map(|w| w.group).collect::<Vec<_>>(), vec![0]);
}

#[test]
fn nak_timers_are_spread_biased_by_need_and_cancelled_by_repair_or_echo() {
    let spread = NakSpread {
        window: Duration::from_millis(30),
        members: 1000,
    };
    // x = 1 draws the full window; small x with the most need draws nothing; more need
    // draws earlier: each need has its band of an eighth of the window.
    assert_eq!(spread.draw(1.0, 1), Duration::from_millis(30));
    assert_eq!(spread.draw(1e-4, 8), Duration::ZERO);
    assert_eq!(
        spread.draw(1e-4, 1),
        Duration::from_secs_f64(0.030 * 7.0 / 8.0)
    );
    assert!(spread.draw(0.3, 2) < spread.draw(0.3, 1));
    let mut ib = inbound(Instant::now()).0;
    let band = spread.window / 8;
    for need in 1..12u32 {
        let b = 8 - need.min(8);
        for _ in 0..1000 {
            let d = spread.draw(ib.uniform(), need);
            assert!(d >= band * b && d <= band * (b + 1), "need {need}: {d:?}");
        }
    }
    // Under a sixth of its band: x < 1000^(-5/6), about 0.3 % of members.
    let early = (0..10_000)
        .filter(|_| spread.draw(ib.uniform(), 3) < band * 5 + band / 6)
        .count();
    assert!((5..100).contains(&early), "{early} of 10,000 early");

    let t0 = Instant::now();
    let (mut ib, blocks, mut st) = inbound(t0);
    let gap = Duration::from_millis(1);
    let renak = Duration::from_millis(20);
    // Group 0 lacks block 2, group 1 lacks block 5; both are over.
    for i in (0..40u32).filter(|&i| i != 2 && i != 5) {
        ib.on_block(t0, &mut st, Stream::Payload, i, &blocks[i as usize]);
    }
    let window = Duration::from_secs(1);
    let wide = NakSpread {
        window,
        members: 1000,
    };
    // Both wait out a backoff (x = 1 would be the whole window; none is zero here
    // unless drawn so).
    let w = ib.due_naks(t0, gap, renak, wide, 100);
    let timer = ib.nak_timer().expect("a NAK timer");
    assert!(w.len() < 2 && timer <= t0 + window, "{w:?}");
    // The sender echoes that someone needs 1 symbol of group 0: this member needs no
    // more, so its group 0 timer is cancelled. Repair for group 1 arrives (another
    // member asked): its timer is cancelled too.
    ib.on_echo(t0, Stream::Payload, 0, 1);
    ib.repair_seen(t0, Stream::Payload, 1);
    let before_renak = t0 + renak / 2;
    assert!(ib.due_naks(before_renak, gap, renak, wide, 100).is_empty());
    // An echo of less than this member needs cancels nothing.
    ib.on_echo(t0, Stream::Payload, 0, 0);
}

#[test]
fn repair_arriving_holds_a_re_nak_back_and_completing_stops_it() {
    let t0 = Instant::now();
    let (mut ib, blocks, mut st) = inbound(t0);
    let gap = Duration::from_millis(1);
    let renak = Duration::from_millis(10);
    for i in (0..40u32).filter(|&i| i != 1 && i != 2) {
        ib.on_block(t0, &mut st, Stream::Payload, i, &blocks[i as usize]);
    }
    assert_eq!(ib.due_naks(t0, gap, renak, NakSpread::NONE, 100)[0].need, 2);
    // One parity symbol arrives 8 ms later: the group still needs one, but a re-NAK
    // waits renak from that arrival.
    let code = ib.code;
    let par = code.encode(&blocks[0..4], 0..2).unwrap();
    let t1 = t0 + Duration::from_millis(8);
    ib.on_parity(t1, &mut st, Stream::Payload, 0, 0, &par[0]);
    let t2 = t0 + Duration::from_millis(12);
    assert!(ib.due_naks(t2, gap, renak, NakSpread::NONE, 100).is_empty());
    let t3 = t1 + renak;
    let w = ib.due_naks(t3, gap, renak, NakSpread::NONE, 100);
    assert_eq!(
        (w[0].group, w[0].need, w[0].map.clone()),
        (0, 1, vec![0b0110])
    );
    // The second parity symbol completes it (decoded): nothing more to NAK, the file's
    // bytes are right.
    ib.on_parity(t3, &mut st, Stream::Payload, 0, 1, &par[1]);
    assert!(ib
        .due_naks(t3 + renak, gap, renak, NakSpread::NONE, 100)
        .is_empty());
    let e = ib
        .manifest
        .as_ref()
        .unwrap()
        .entries
        .iter()
        .position(|e| e.path == b"f");
    let entry = ib.manifest.as_ref().unwrap().entries[e.unwrap()].clone();
    let mut got = vec![0u8; BLOCK];
    st.read_staged(ib.key, e.unwrap() as u32, &entry, BLOCK as u64, &mut got)
        .unwrap();
    assert_eq!(got, blocks[1]);
}

#[test]
fn the_poll_ends_the_pass_lists_every_incomplete_group_and_stops_unasked_naks() {
    let t0 = Instant::now();
    let (mut ib, blocks, mut st) = inbound(t0);
    for i in (0..64u32).filter(|&i| i != 61) {
        ib.on_block(t0, &mut st, Stream::Payload, i, &blocks[i as usize]);
    }
    // Group 15 is the last: no later block will ever come; only the poll says so.
    let gap = Duration::from_millis(1);
    assert!(ib.due_naks(t0, gap, gap, NakSpread::NONE, 100).is_empty());
    let w = ib.naks(t0, 1, 100);
    assert_eq!(
        w.iter().map(|w| (w.group, w.need)).collect::<Vec<_>>(),
        vec![(15, 1)]
    );
    let later = t0 + Duration::from_secs(1);
    assert!(
        ib.due_naks(later, gap, gap, NakSpread::NONE, 100)
            .is_empty(),
        "polls drive the rest"
    );
    assert!(!ib.complete());
    ib.on_block(later, &mut st, Stream::Payload, 61, &blocks[61]);
    assert!(ib.complete());
    assert!(ib.naks(later, 2, 100).is_empty());
}
