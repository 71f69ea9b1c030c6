//! Simulated atomic pushes (`--atomic`): all or none across the cluster, sans IO.

use std::time::Duration;

use super::{assert_all_ok, assert_same_tree, cluster, receivers, small_tree};
use crate::lan::{Faults, Lan};

fn atomic_push(lan: &mut Lan, limit: Duration) -> makuo::proto::PushReport {
    let m = lan.nodes[0].engine.storage().manifest();
    let req = makuo::proto::PushRequest {
        manifest: m,
        targets: receivers().iter().map(|&j| lan.node_id(j)).collect(),
        max_delete: None,
        atomic: true,
    };
    let now = lan.now;
    let x = lan.nodes[0]
        .engine
        .handle_command(now, makuo::proto::Command::Push(req))
        .unwrap();
    lan.drive(limit, |l| l.report(0, x).is_some());
    lan.report(0, x).expect("the push ends").1
}

#[test]
fn atomic_push_with_one_full_disk_commits_nowhere() {
    let mut lan = cluster(171, Faults::default(), small_tree(171, "www", 200));
    lan.nodes[3].engine.storage_mut().fail_writes = true;
    let r = atomic_push(&mut lan, Duration::from_secs(30));
    for m in &r.members {
        assert!(!m.ok, "{} committed", m.name);
        let e = m.error.as_deref().unwrap();
        if m.name == "web3" {
            assert!(e.contains("no space"), "{e}");
        } else {
            assert!(
                e.starts_with(makuo::proto::NOT_COMMITTED),
                "{}: {e}",
                m.name
            );
        }
    }
    // Give the ABORTs time to arrive, then nothing is applied or staged anywhere.
    let until = lan.now + Duration::from_secs(1);
    lan.drive(Duration::from_secs(2), |l| l.now >= until);
    for j in receivers() {
        let s = lan.nodes[j].engine.storage();
        assert!(
            s.tree.keys().all(|p| !p.starts_with(b"www")),
            "web{j} applied"
        );
        assert_eq!(s.staged_count(), 0, "web{j} keeps staging");
    }
}

#[test]
fn atomic_push_over_loss_commits_everywhere() {
    let mut lan = cluster(172, Faults::lossy(0.05), small_tree(172, "www", 300));
    let r = atomic_push(&mut lan, Duration::from_secs(60));
    assert_all_ok(&r);
    for j in receivers() {
        assert_same_tree(&lan, 0, j, &["www"]);
    }
}
