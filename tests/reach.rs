//! Reach: members that multicast does not reach, networks without multicast, and IPv6
//! (issue 16). Every test here builds its hosts in network namespaces on a private bridge
//! (root only; skipped with a message otherwise, failing under `CI=true`).

mod common;

use std::fs;

use common::*;

/// A ULA /64 of our own for this run (fd00::/8, random 40-bit global id as RFC 4193 says).
fn ula_prefix() -> String {
    let r = rand_u64();
    format!(
        "fd{:02x}:{:04x}:{:04x}:1",
        (r >> 40) as u8,
        (r >> 16) as u16,
        r as u16
    )
}

/// Four namespaces with IPv6 ULA addresses only, veths named `eth0` inside, group
/// `ff15::4d4b`, every member started with `-i eth0`: a direct push from h0 exits 0 and the
/// three receiving daemons end exact.
#[test]
fn ipv6_cluster_by_interface_name() {
    if !root_or_skip("ipv6_cluster_by_interface_name", "network namespaces") {
        return;
    }
    let mut net = Net::new();
    let mut c = Cluster::new();
    c.group = "ff15::4d4b".into();
    let prefix = ula_prefix();
    let addr = |i: usize| format!("{prefix}::{}", 10 + i);
    let ns0 = net.host_with(0, "eth0", &[&format!("{}/64", addr(0))]);
    for i in 1..=3 {
        let ns = net.host_with(i, "eth0", &[&format!("{}/64", addr(i))]);
        let base = c.path(&format!("r{i}/base"));
        fs::create_dir_all(&base).unwrap();
        let mut more = c.key_args();
        more.extend(FAST.map(String::from));
        more.push("--no-fsync".into());
        let d = c.daemon_at(&format!("r{i}"), base, 5000, Some(ns), "eth0", more);
        c.push_daemon(d);
    }
    docroot(&c.src, 200, Some(4 << 20));

    // The receivers find each other over IPv6 multicast, and say so with IPv6 addresses.
    let first = &c.daemons[0];
    wait_for("r1 to see r2 and r3 over IPv6", RUN_LIMIT, || {
        let r = first.members(&[]);
        (r.stdout.contains("r2 ") && r.stdout.contains("r3 ")).then_some(())
    });
    let m = first.members(&[]);
    assert!(
        m.stdout.contains(&prefix),
        "members show IPv6 addresses:\n{m}"
    );

    let r = c.direct_in(&ns0, "eth0", "sync", &["--discover", "1500", "-r", "."]);
    assert_eq!(r.code, 0, "{r}");
    eprintln!("{m}\n{r}");
    for name in ["r1", "r2", "r3"] {
        assert!(
            r.result_of(name).contains("ok"),
            "{name} in the push table:\n{r}"
        );
    }
    c.assert_all_identical();
    drop(c);
    drop(net);
}
