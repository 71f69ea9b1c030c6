//! Reach (issue 16) in the simulator: pacing counts the copies of each group datagram that the
//! sender's link carries (unicast copies for members multicast does not reach, or relays), so
//! with a rate cap the link stays under it however many copies there are.

use std::time::Duration;

use super::lan::{test_config, Faults, Lan};
use super::{assert_all_ok, big_tree};
use makuo::proto::storage::MemStorage;

/// Virtual time one push of the big tree takes from a sender capped at 40 Mbit/s whose driver
/// says its link carries `copies` of each group datagram.
fn capped_push_time(copies: usize) -> Duration {
    let mut lan = Lan::new(7, Faults::default());
    let mut cfg = test_config(0, "sender");
    cfg.rate_limit = Some(5_000_000);
    lan.add_with(cfg, big_tree(3));
    for i in 0..2 {
        lan.add(&format!("web{}", i + 1), MemStorage::new());
    }
    lan.drive(Duration::from_secs(5), |l| (0..3).all(|i| l.known(i) == 2));
    lan.nodes[0].engine.set_link_copies(copies);
    let m = lan.nodes[0].engine.storage().manifest();
    let start = lan.now;
    let x = lan.push(0, &[1, 2], m);
    lan.drive(Duration::from_secs(120), |l| l.report(0, x).is_some());
    let (at, r) = lan.report(0, x).expect("the push ended");
    assert_all_ok(&r);
    at - start
}

#[test]
fn pacing_counts_the_copies_the_link_carries_against_the_cap() {
    let one = capped_push_time(1);
    let four = capped_push_time(4);
    eprintln!("16 MiB at a 5 MB/s cap: {one:?} with 1 copy, {four:?} with 4");
    // 16 MiB at 5 MB/s is 3.4 s; four copies of it must take four times as long.
    assert!(one >= Duration::from_secs(3), "{one:?}");
    assert!(
        four.as_secs_f64() > 3.5 * one.as_secs_f64(),
        "{four:?} with 4 copies vs {one:?} with 1"
    );
}

/// Lines the sender's engine noted of members it probed by unicast copies (`paths.rs`).
fn probe_notes(lan: &Lan, i: usize) -> Vec<String> {
    lan.nodes[i]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            makuo::proto::Event::Progress { line, .. } if line.contains("unicast copies") => {
                Some(line.clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_member_deaf_to_the_group_is_probed_by_unicast_in_the_first_push() {
    let mut lan = Lan::new(11, Faults::default());
    lan.add_with(test_config(0, "sender"), super::small_tree(5, "site", 40));
    for i in 0..3 {
        lan.add(&format!("web{}", i + 1), MemStorage::new());
    }
    lan.nodes[1].link.group_deaf = true;
    // Push as soon as the sender has heard every member once: it has not yet seen the three
    // heartbeats of web1's that would put it on the unicast path.
    lan.drive(Duration::from_secs(5), |l| l.known(0) == 3);
    let web1 = lan.node_id(1);
    let m = lan.nodes[0]
        .engine
        .members()
        .find(|m| m.node == web1)
        .cloned();
    let m = m.expect("the sender heard web1");
    assert_eq!(lan.nodes[0].engine.path(lan.now, &m).word(), "multicast");
    let manifest = lan.nodes[0].engine.storage().manifest();
    let start = lan.now;
    let x = lan.push(0, &[1, 2, 3], manifest);
    lan.drive(Duration::from_secs(30), |l| l.report(0, x).is_some());
    let (at, r) = lan.report(0, x).expect("the push ended");
    assert_all_ok(&r);
    let notes = probe_notes(&lan, 0);
    assert!(
        notes.len() == 1 && notes[0].starts_with("web1:"),
        "{notes:?}"
    );
    eprintln!("push with web1 probed: {:?}", at - start);
    // The group never reached web1: it heard everything through the unicast copies.
    assert!(lan.nodes[1].deaf_dropped > 0);
    assert_eq!(lan.nodes[0].engine.path(lan.now, &m).word(), "unicast");
    super::assert_same_tree(&lan, 0, 1, &["site"]);
}

#[test]
fn no_member_is_probed_falsely_at_5_percent_loss() {
    let faults = Faults {
        loss: 0.05,
        ..Faults::default()
    };
    let mut lan = Lan::new(12, faults);
    lan.add_with(test_config(0, "sender"), super::small_tree(6, "site", 40));
    for i in 0..4 {
        lan.add(&format!("web{}", i + 1), MemStorage::new());
    }
    lan.drive(Duration::from_secs(5), |l| (0..5).all(|i| l.known(i) == 4));
    for _ in 0..10 {
        let manifest = lan.nodes[0].engine.storage().manifest();
        let x = lan.push(0, &[1, 2, 3, 4], manifest);
        lan.drive(Duration::from_secs(30), |l| l.report(0, x).is_some());
        let (_, r) = lan.report(0, x).expect("the push ended");
        assert_all_ok(&r);
    }
    assert_eq!(probe_notes(&lan, 0), Vec::<String>::new());
    let paths: Vec<&str> = lan.nodes[0]
        .engine
        .members()
        .map(|m| lan.nodes[0].engine.path(lan.now, m).word())
        .collect();
    assert_eq!(paths, ["multicast"; 4]);
}

/// A member deaf to the group started before the others listened (its join lost): it hears
/// nobody, so it repeats its join (100 ms on, backing off) and the others learn it within a
/// fraction of a heartbeat, not at its next heartbeat a second later. The repeats are
/// bounded: four, in its first 1.5 s.
#[test]
fn a_lone_deaf_member_repeats_its_join_so_the_others_learn_it_soon() {
    let second = |name: &str| {
        let mut c = test_config(0, name);
        c.heartbeat = Duration::from_secs(1);
        c.member_expiry = Duration::from_secs(5);
        c
    };
    let mut lan = Lan::new(5, Faults::default());
    lan.add_with(second("web1"), MemStorage::new());
    lan.nodes[0].link.group_deaf = true;
    // Its join goes out with nobody listening.
    lan.run_for(Duration::from_millis(20));
    for name in ["web2", "web3"] {
        lan.add_with(second(name), MemStorage::new());
    }
    let start = lan.now;
    lan.drive(Duration::from_secs(5), |l| {
        l.known(1) == 2 && l.known(2) == 2
    });
    let took = lan.now - start;
    eprintln!("the others knew the deaf member after {took:?}");
    assert!(took < Duration::from_millis(400), "{took:?}");

    // Bounded: alone, it heartbeats at 0, 0.1, 0.3, 0.7 and 1.5 s, then once a second, each
    // interval spread over 0.8-1.2 s (the eighth at 3.9-5.1 s; a fifth repeat would bring it
    // before 3.5 s).
    let mut alone = Lan::new(6, Faults::default());
    alone.add_with(second("web1"), MemStorage::new());
    alone.nodes[0].link.group_deaf = true;
    let t0 = alone.now;
    alone.drive(Duration::from_secs(10), |l| l.nodes[0].sent_datagrams == 8);
    let at = alone.now - t0;
    assert!(
        at >= Duration::from_millis(3900) && at <= Duration::from_millis(5100),
        "eighth heartbeat after {at:?}"
    );
}
