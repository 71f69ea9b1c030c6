//! The scale test: 1,000 members at 1 % independent loss, 16 MiB pushed to all of them as
//! targets. Receivers keep no contents (`MemStorage::pattern`: every write is checked against
//! the pattern the file holds, and every byte must be written), so the test fits in memory.
//! Writes the `scale` line of `target/sim-report.txt`.

use std::time::{Duration, Instant};

use makuo::proto::storage::{pattern_fill, MemStorage};

use super::lan::{Faults, Lan};
use super::{assert_all_ok, assert_reports_every_target, block_overhead, record};

/// Members (receivers); `MAKUO_SIM_SCALE_MEMBERS` overrides it to study smaller clusters.
fn members() -> usize {
    std::env::var("MAKUO_SIM_SCALE_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Members run the operators' timers (1 s heartbeats, spread 0.8-1.2 of the interval) and
/// the push comes after the join has settled. Prints what the sender heard, per kind and in
/// detail (`cargo test --release --test sim scale -- --nocapture`). Measured at 1,000
/// members: feedback per data datagram 0.042 (517 heard / 12,289 data: 165 NAKs during the
/// pass and 9 answering polls, 123 AGGREGATEs (35 of REPORTs, 44 of poll answers, 44 of
/// RESULTs), 162 FEEDBACK (82 from the CLR), 37 heartbeats, 11 REPORTs, 10 RESULTs), wire
/// ratio 1.109. Before the pass's tail was repaired during the pass (the first poll waiting
/// for it), echoes re-armed per repair cycle and data-limited senders told so in PACE, it
/// was 0.0512 (629: 217 NAKs of which 67 answered polls, 192 AGGREGATEs of which 115 of
/// 1,901 poll answers: at the first poll most members still lacked some of the pass's last
/// groups or of a group whose repair they lost, and answered twice); before the feedback
/// rules of issue 11 (TFMCC's: only the CLR and receivers below the sender's rate report,
/// after a random wait; NAK timers in bands by need; answers through the cohort leaders) it
/// was 0.96 (5,906 FEEDBACK, 3,505 NAKs, 1,976 RESULTs, 193 REPORTs).
#[test]
fn scale_1000_members_1pct_loss() {
    let started = Instant::now();
    let members = members();
    let faults = Faults {
        loss: 0.01,
        ..Faults::default()
    };
    let mut lan = Lan::new(1000, faults);
    let mut src = MemStorage::new();
    let mut data = vec![0u8; (16 << 20) + 777];
    pattern_fill(0, &mut data);
    src.add_file(b"big/image.bin", data, 0o644, 1_700_000_000);
    // The timers operators run (1 s heartbeats, 5 s member timeout), not the sim's quick
    // ones: the sim's 200 ms heartbeat makes 1,000 members heartbeat five times as often.
    let cfg = |i: usize, name: &str| makuo::proto::Config {
        name: name.into(),
        seed: (i as u64 + 0x1000).wrapping_mul(7919),
        ..makuo::proto::Config::default()
    };
    lan.add_with(cfg(0, "sender"), src);
    for i in 0..members {
        let mut s = MemStorage::new();
        s.pattern = true;
        let name = format!("web{}", i + 1);
        lan.add_with(cfg(i + 1, &name), s);
    }
    let all = lan.nodes.len();
    lan.drive(Duration::from_secs(30), |l| l.known(0) == all - 1);
    // Steady state: pushes come to a cluster whose members joined long before, not while the
    // answers to the last joins are still on their way.
    let settle = lan.now + Duration::from_secs(3);
    lan.drive(Duration::from_secs(4), |l| l.now >= settle);
    let joined = started.elapsed();
    eprintln!(
        "scale: {members} members joined in {joined:?} (real), {} steps",
        lan.steps
    );

    let to: Vec<usize> = (1..all).collect();
    let m = lan.nodes[0].engine.storage().manifest();
    let payload = m.total_bytes() as f64;
    let sent_before = lan.nodes[0].sent_wire_bytes;
    let heard_before = lan.nodes[0].recv_datagrams;
    let kinds_before = lan.nodes[0].recv_kinds;
    let poll_naks_before = lan.nodes[0].recv_poll_naks;
    let t0 = lan.now;
    lan.nodes[0].heard = Some(Vec::new());
    let x = lan.push(0, &to, m);
    lan.drive(Duration::from_secs(60), |l| l.report(0, x).is_some());
    let (_, r) = lan.report(0, x).unwrap();
    assert_reports_every_target(&lan, &r, &to);
    assert_all_ok(&r);
    for &j in &to {
        let s = lan.nodes[j].engine.storage();
        assert_eq!(s.pattern_files, 1, "member {j}: file not committed whole");
        assert_eq!(s.pattern_mismatches, 0, "member {j}: wrong bytes written");
        assert_eq!(s.bad_completions, 0, "member {j}: bad completion");
        assert_eq!(s.staged_count(), 0, "member {j}: staged files left");
    }
    let wire_ratio = (lan.nodes[0].sent_wire_bytes - sent_before) as f64 / payload;
    let heard = lan.nodes[0].recv_datagrams - heard_before;
    let kinds: Vec<String> = (0..32)
        .filter_map(|k| {
            let n = lan.nodes[0].recv_kinds[k] - kinds_before[k];
            (n > 0).then(|| format!("{}={n}", kind_name(k)))
        })
        .collect();
    eprintln!(
        "scale: the sender heard {} (NAKs answering polls: {})",
        kinds.join(" "),
        lan.nodes[0].recv_poll_naks - poll_naks_before
    );
    eprintln!(
        "scale: in detail: {}",
        breakdown(&lan.nodes[0].heard.take().unwrap_or_default())
    );
    let feedback = heard as f64 / r.datagrams.max(1) as f64;
    record(
        "scale",
        format!(
            "scale members={members} loss_pct=1 wire_ratio={wire_ratio:.4} \
             feedback_per_data={feedback:.4}"
        ),
    );
    eprintln!(
        "scale: joined in {joined:?} (real), push {:.3} s virtual, {heard} datagrams heard / \
         {} data, block overhead {:.4}, real {:?}",
        (lan.now - t0).as_secs_f64(),
        r.datagrams,
        block_overhead(),
        started.elapsed()
    );
    assert!(wire_ratio <= 1.12, "wire ratio {wire_ratio:.4} > 1.12");
    assert!(
        feedback <= 0.05,
        "feedback per data datagram {feedback:.4} > 0.05 ({heard} heard / {} data)",
        r.datagrams
    );
}

/// A push to more targets than one ANNOUNCE lists (173 at MTU 1500): 200 members, 256 KiB,
/// 1 % loss; every member must be in the report and have the file whole.
#[test]
fn push_to_200_members_announces_in_parts() {
    let faults = Faults {
        loss: 0.01,
        ..Faults::default()
    };
    let mut lan = Lan::new(200, faults);
    let mut src = MemStorage::new();
    let mut data = vec![0u8; (256 << 10) + 777];
    pattern_fill(0, &mut data);
    src.add_file(b"big/image.bin", data, 0o644, 1_700_000_000);
    lan.add("sender", src);
    for i in 0..200 {
        let mut s = MemStorage::new();
        s.pattern = true;
        lan.add(&format!("web{}", i + 1), s);
    }
    let all = lan.nodes.len();
    lan.drive(Duration::from_secs(30), |l| l.known(0) == all - 1);
    let to: Vec<usize> = (1..all).collect();
    let m = lan.nodes[0].engine.storage().manifest();
    let x = lan.push(0, &to, m);
    lan.drive(Duration::from_secs(30), |l| l.report(0, x).is_some());
    let (_, r) = lan.report(0, x).unwrap();
    assert_reports_every_target(&lan, &r, &to);
    assert_all_ok(&r);
    for &j in &to {
        let s = lan.nodes[j].engine.storage();
        assert_eq!(s.pattern_files, 1, "member {j}: file not committed whole");
        assert_eq!(s.pattern_mismatches, 0, "member {j}: wrong bytes written");
        assert_eq!(s.staged_count(), 0, "member {j}: staged files left");
    }
}

/// A message kind's name (header byte 3), for the breakdown of what the sender heard.
fn kind_name(k: usize) -> &'static str {
    match k {
        1 => "heartbeat",
        2 => "leave",
        9 => "report",
        10 => "nak",
        12 => "result",
        17 => "feedback",
        _ => "other",
    }
}

/// What the sender heard in detail: NAKs in the pass and answering polls; FEEDBACK as the
/// CLR and not; AGGREGATEs by the kinds of their items (RESULT by status).
fn breakdown(heard: &[(Instant, std::sync::Arc<[u8]>)]) -> String {
    use std::collections::BTreeMap;
    let mut n: BTreeMap<String, u64> = BTreeMap::new();
    for (_, b) in heard {
        let kind = b.get(3).copied().unwrap_or(0) & 31;
        let body = b.get(24..).unwrap_or(&[]);
        let name = match kind {
            10 if body.get(4..8).is_some_and(|r| r != [0; 4]) => "nak-poll".to_string(),
            10 => "nak-pass".to_string(),
            17 if body.get(4).is_some_and(|f| f & 1 != 0) => "feedback-clr".to_string(),
            17 => "feedback-other".to_string(),
            12 => format!("result-{}", body.get(4).copied().unwrap_or(9)),
            18 => {
                let mut items = body.get(12..).unwrap_or(&[]);
                let mut kinds: BTreeMap<String, u32> = BTreeMap::new();
                while items.len() >= 11 {
                    let k = items[8];
                    let len = usize::from(u16::from_be_bytes([items[9], items[10]]));
                    let it = &items[11..(11 + len).min(items.len())];
                    let what = match k {
                        10 if it.get(4..8).is_some_and(|r| r != [0; 4]) => {
                            let round = u32::from_be_bytes(it[4..8].try_into().unwrap());
                            let e = it.get(21..).unwrap_or(&[]);
                            let what = if e.is_empty() { "done" } else { "needy" };
                            *n.entry(format!("poll-r{round}-{what}")).or_default() += 1;
                            "nak-poll".into()
                        }
                        10 => "nak-pass".into(),
                        12 => format!("result-{}", it.get(4).copied().unwrap_or(9)),
                        9 => "report".into(),
                        _ => format!("k{k}"),
                    };
                    *kinds.entry(what).or_default() += 1;
                    items = &items[(11 + len).min(items.len())..];
                }
                let ks: Vec<String> = kinds.keys().cloned().collect();
                for (k, c) in kinds {
                    *n.entry(format!("agg-item-{k}")).or_default() += u64::from(c);
                }
                format!("agg[{}]", ks.join("+"))
            }
            k => kind_name(usize::from(k)).to_string(),
        };
        *n.entry(name).or_default() += 1;
    }
    n.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
