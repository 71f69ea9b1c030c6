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
        // No leading zeros: the prefix is matched against addresses as Rust prints them.
        "fd{:02x}:{:x}:{:x}:1",
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

/// 198.18.X.0/24 (or 198.19) for this run: the third octet from the pid, so parallel test
/// processes do not collide on one bridge name space (each test has its own bridge anyway).
fn v4_addr(i: usize) -> String {
    let third = (std::process::id() % 250) as u8 + 1;
    format!("198.18.{third}.{}", 30 + i)
}

/// Four namespaces that drop every multicast datagram (nftables in each): without `--peer`
/// a direct front end finds nobody; with the same `--peer` list everywhere (own address
/// included, and skipped) the daemons find each other by unicast, and a push through the
/// sending daemon's console exits 0 with every member exact, as does a direct push.
#[test]
fn no_multicast_peer_lists() {
    if !root_or_skip("no_multicast_peer_lists", "network namespaces") {
        return;
    }
    let mut net = Net::new();
    let mut c = Cluster::new();
    let peers: Vec<String> = (0..4)
        .flat_map(|i| ["--peer".to_string(), v4_addr(i)])
        .collect();
    let mut spaces = Vec::new();
    for i in 0..4 {
        let ns = net.host(i, &v4_addr(i));
        net.drop_multicast(&ns);
        spaces.push(ns);
    }
    for (i, ns) in spaces.iter().enumerate() {
        let name = if i == 0 {
            "s0".to_string()
        } else {
            format!("r{i}")
        };
        let base = if i == 0 {
            c.src.clone()
        } else {
            let b = c.path(&format!("{name}/base"));
            fs::create_dir_all(&b).unwrap();
            b
        };
        let mut more = c.key_args();
        more.extend(FAST.map(String::from));
        more.push("--no-fsync".into());
        more.extend(peers.iter().cloned());
        let mut d = c.daemon_at(&name, base, 5000, Some(ns.clone()), &v4_addr(i), more);
        d.sender = i == 0;
        c.push_daemon(d);
    }
    docroot(&c.src, 200, Some(4 << 20));

    // Multicast really is gone: a front end without --peer hears nobody.
    let alone = c.direct_in(&spaces[0], &v4_addr(0), "members", &["--discover", "1000"]);
    for r in ["r1", "r2", "r3"] {
        assert!(
            !alone.stdout.contains(r),
            "{r} heard by multicast:\n{alone}"
        );
    }

    let sender = &c.daemons[0];
    wait_for("s0 to see r1..r3 by unicast", RUN_LIMIT, || {
        let r = sender.members(&[]);
        ["r1 ", "r2 ", "r3 "]
            .iter()
            .all(|n| r.stdout.contains(n))
            .then_some(())
    });
    let r = sender.sync(&[]);
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    for ns in &spaces[1..] {
        assert!(net.dropped(ns) > 0, "no multicast was dropped in {ns}");
    }

    // A direct-mode front end with the same list reaches them too.
    write(&c.src, "after/direct.txt", "by unicast copies\n");
    let mut args = vec!["--discover", "1500", "-r", "."];
    args.extend(peers.iter().map(String::as_str));
    let r = c.direct_in(&spaces[0], &v4_addr(0), "sync", &args);
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    drop(c);
    drop(net);
}

/// `path`, `from` and `why` of member `name` in `makuo members --json` output ("" if absent).
fn member_path(r: &Run, name: &str) -> (String, String, String) {
    if r.code != 0 {
        return Default::default();
    }
    let j = r.json();
    let m = j["members"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["name"] == name).cloned())
        .unwrap_or_default();
    let f = |k: &str| m[k].as_str().unwrap_or("").to_string();
    (f("path"), f("from"), f("why"))
}

/// The `members` line of `name` in `text`.
fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or("")
}

/// Four namespaces; nftables drops the group's traffic into r3 (r3 still sends to the group
/// and answers by unicast). A push through the sending daemon's console exits 0 with every
/// member exact, and `makuo members` on that daemon names r3 `unicast` (the others
/// `multicast`); the same with `makuo sync --direct`. When the rule is lifted r3 moves back.
#[test]
fn a_member_deaf_to_the_group_gets_unicast_copies() {
    if !root_or_skip(
        "a_member_deaf_to_the_group_gets_unicast_copies",
        "network namespaces",
    ) {
        return;
    }
    let mut net = Net::new();
    let mut c = Cluster::new();
    let mut spaces = Vec::new();
    for i in 0..4 {
        spaces.push(net.host(i, &v4_addr(i)));
    }
    net.drop_group(&spaces[3], &c.group);
    for (i, ns) in spaces.iter().enumerate() {
        let name = if i == 0 {
            "s0".to_string()
        } else {
            format!("r{i}")
        };
        let base = if i == 0 {
            c.src.clone()
        } else {
            let b = c.path(&format!("{name}/base"));
            fs::create_dir_all(&b).unwrap();
            b
        };
        let mut more = c.key_args();
        more.extend(FAST.map(String::from));
        more.push("--no-fsync".into());
        let mut d = c.daemon_at(&name, base, 5000, Some(ns.clone()), &v4_addr(i), more);
        d.sender = i == 0;
        c.push_daemon(d);
    }
    docroot(&c.src, 200, Some(4 << 20));

    let sender = &c.daemons[0];
    let members = wait_for("s0 to put r3 on the unicast path", RUN_LIMIT, || {
        let r = sender.members(&["--json"]);
        let ok = ["r1", "r2"]
            .iter()
            .all(|n| member_path(&r, n).0 == "multicast")
            && member_path(&r, "r3").0 == "unicast";
        ok.then_some(r)
    });
    eprintln!("{members}");
    let r = sender.sync(&[]);
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    assert!(
        net.dropped(&spaces[3]) > 0,
        "the group rule in r3 dropped nothing"
    );
    // The push table says which path served each member.
    assert_eq!(r.result_of("r3"), "ok (by unicast)", "{r}");
    assert_eq!(r.result_of("r1"), "ok", "{r}");
    let m = sender.members(&["--json"]);
    let (path, from, why) = member_path(&m, "r3");
    assert!(
        path == "unicast" && from == "multicast" && !why.is_empty(),
        "r3 after the push:\n{m}"
    );
    // The table shows the path and why, in its own column.
    let t = sender.members(&[]);
    assert!(
        t.stdout.lines().next().unwrap_or("").contains("PATH"),
        "{t}"
    );
    assert!(line_of(&t.stdout, "r3").contains(" unicast ("), "{t}");

    // makuo doctor alerts on it: exit 1, r3 reachable only by unicast.
    let addr = sender.console_addr();
    let doctor = || {
        run(
            &mut sender.command(&["doctor", "--console", &addr]),
            RUN_LIMIT,
        )
    };
    let d = doctor();
    assert_eq!(d.code, 1, "{d}");
    let r3 = line_of(&d.stdout, "r3");
    assert!(r3.contains(" no ") && r3.contains("unicast"), "{d}");
    assert!(
        line_of(&d.stdout, "r1").contains("multicast  multicast  multicast"),
        "{d}"
    );

    // The direct front end learns the same on its own.
    write(&c.src, "after/direct.txt", "r3 by unicast copies\n");
    let r = c.direct_in(
        &spaces[0],
        &v4_addr(0),
        "sync",
        &["--discover", "1500", "--json", "-r", "."],
    );
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    let j = r.json();
    let path_of = |name: &str| {
        j["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["path"].clone())
    };
    assert_eq!(path_of("r3"), Some("unicast".into()), "{r}");
    assert_eq!(path_of("r2"), Some("multicast".into()), "{r}");

    // Multicast reaches r3 again: it moves back.
    net.undrop_group(&spaces[3]);
    wait_for("r3 back on multicast", RUN_LIMIT, || {
        let r = sender.members(&["--json"]);
        (member_path(&r, "r3").0 == "multicast").then_some(())
    });
    let d = doctor();
    assert_eq!(d.code, 0, "{d}");
    drop(c);
    drop(net);
}
