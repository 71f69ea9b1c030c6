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
