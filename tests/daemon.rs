//! Integration tests of the daemon: the real `makuo` binary, several daemons per test.
//!
//! Every test builds its own cluster under a temporary directory: each daemon has its own base,
//! state dir, console port and name, and the cluster gets a random group in 239.255.0.0/16 and
//! a random port, so tests can run in parallel. On loopback every daemon is started with
//! `-i 127.0.0.1`; the root-only test builds network namespaces on a private bridge with
//! addresses in 198.18.0.0/15. Daemons are SIGTERMed and reaped (and namespaces deleted) by
//! Drop guards, so nothing outlives a failing test; on failure the daemons' logs are printed.
//! Every wait is bounded.

mod common;

use std::fs;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Must show: "An integration test on loopback: 3 receiving daemons and 1 sending daemon (each
/// its own base, console port, node id; group in 239.255.0.0/16; `-i 127.0.0.1`); `makuo sync
/// --console 127.0.0.1:PORT -r .` at the sender makes every receiver's base identical to the
/// sender's (contents, modes, mtimes, symlinks, empty dirs); `members` over the TCP console
/// lists all four; `md5 -r` reports no difference (`ok`), then exactly the changed file and
/// member after one receiver file is changed."
///
/// Also: nothing of makuo's (staged files, state) is left in any base, and `quit` right
/// behind a check answers only after it. Directory mtimes are not compared: makuo does not
/// push them (see `src/apply/`).
#[test]
fn loopback_sync_via_console_makes_receivers_identical_and_md5_finds_one_change() {
    let mut c = Cluster::new();
    // Receivers keep the default durability (fsync before rename): the real write path.
    let s = c.add("sender", &["--heartbeat", "200"]);
    for r in ["recv1", "recv2", "recv3"] {
        c.add(r, &["--heartbeat", "200"]);
    }
    let src = c.daemons[s].base.clone();
    docroot(&src, 300, Some(3 << 20));

    // Four daemons, four node ids.
    let mut nodes: Vec<String> = c
        .daemons
        .iter()
        .map(|d| {
            let (lines, last) = d.console().cmd("status");
            assert_eq!(last, "ok");
            lines.into_iter().find(|l| l.starts_with("node ")).unwrap()
        })
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 4, "node ids are not distinct: {nodes:?}");

    // members over the TCP console lists all four (the sender as self).
    c.wait_converged(s);
    let (lines, last) = c.daemons[s].console().cmd("members");
    assert_eq!(last, "ok");
    for n in ["sender", "recv1", "recv2", "recv3"] {
        assert!(
            lines.iter().any(|l| l.split_whitespace().next() == Some(n)),
            "members does not list {n}: {lines:?}"
        );
    }
    assert!(lines.iter().any(|l| l.starts_with("sender 127.0.0.1 self")));
    // Each member's protocol version is shown, so a rolling upgrade is visible.
    let proto = format!("proto={}", makuo::proto::wire::VERSION);
    for l in &lines {
        assert!(
            l.split_whitespace().any(|w| w == proto),
            "no {proto} in {l:?}"
        );
    }

    let r = c.daemons[s].sync(&[]);
    assert_eq!(r.code, 0, "sync failed: {r:?}");
    for n in ["recv1", "recv2", "recv3"] {
        assert_eq!(r.result_of(n), "ok", "{r:?}");
    }
    for d in &c.daemons[1..] {
        assert_identical(&src, &d.base, &d.name);
    }
    for d in &c.daemons {
        assert_nothing_of_makuo(&d.base, &d.name);
    }

    // md5 -r: everything matches.
    let mut con = c.daemons[s].console();
    let (lines, last) = con.cmd("md5 -r");
    assert_eq!(last, "ok", "md5 after the push: {lines:?}");

    // Change one file on one receiver (same size, so only the checksum can see it).
    let victim = c.daemons[2].base.join("site/d6/s1/f13.txt");
    let mut data = fs::read(&victim).unwrap();
    assert!(!data.is_empty());
    data[0] ^= 0xff;
    fs::write(&victim, &data).unwrap();
    let (lines, last) = con.cmd("md5 -r");
    assert_eq!(last, "error: 1 differ", "md5 after the change: {lines:?}");
    let diffs: Vec<&String> = lines
        .iter()
        .filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() == 2 && w[1].starts_with("recv")
        })
        .collect();
    assert_eq!(diffs, ["site/d6/s1/f13.txt recv2"], "{lines:?}");
    assert_eq!(row_result(&lines.join("\n"), "recv2"), "differ");
    assert_eq!(row_result(&lines.join("\n"), "recv1"), "ok");
    // quit right behind a check: the check answers in full first, then quit, then EOF.
    con.send("md5 -r\nquit\n");
    let (lines, last) = con.reply();
    assert_eq!(last, "error: 1 differ", "{lines:?}");
    assert_eq!(con.line().as_deref(), Some("ok"));
    assert_eq!(con.line(), None);
    for d in &c.daemons {
        assert_nothing_of_makuo(&d.base, &d.name);
    }
}

/// The console words: help, alive, echo, errors that do not end the session (and a line that
/// is no command, which does), the session exclude list, status, and quit closing only after
/// the earlier (pipelined) commands answer.
#[test]
fn console_words_each_end_with_one_final_line() {
    let mut c = Cluster::new();
    let d = c.add("solo", &[]);
    let mut con = c.daemons[d].console();

    let (lines, last) = con.cmd("help");
    assert_eq!(last, "ok");
    for w in [
        "send", "sync", "md5", "members", "status", "exclude", "quit",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(w)),
            "help lacks {w}: {lines:?}"
        );
    }
    assert_eq!(con.cmd("alive"), (vec!["alive".to_string()], "ok".into()));
    assert_eq!(
        con.cmd("echo hello   \"big world\""),
        (vec!["hello big world".to_string()], "ok".into())
    );

    // Console commands used wrongly get one error line and the session goes on.
    for bad in [
        "send --bogus",
        "loglevel 12",
        "echo \"unterminated",
        "exclude frob",
    ] {
        let (lines, last) = con.cmd(bad);
        assert!(lines.is_empty(), "{bad}: {lines:?}");
        assert!(last.starts_with("error: "), "{bad}: {last}");
    }
    assert_eq!(con.cmd("alive").1, "ok");
    // A line that is no console command at all ends the session (after one error line).
    let mut other = c.daemons[d].console();
    other.send("frobnicate\nalive\n");
    let rest = other.rest();
    assert!(
        rest.starts_with("error: 'frobnicate' is not a console command")
            && rest.lines().count() == 1,
        "{rest:?}"
    );

    // The session exclude list.
    assert_eq!(con.cmd("exclude list"), (vec![], "ok".into()));
    assert_eq!(con.cmd("exclude add *.tmp").1, "ok");
    assert_eq!(con.cmd("exclude add \"cache dir/\"").1, "ok");
    assert_eq!(con.cmd("include add keep.tmp").1, "ok");
    assert_eq!(
        con.cmd("exclude list").0,
        ["exclude *.tmp", "exclude cache dir/", "include keep.tmp"]
    );
    assert_eq!(con.cmd("exclude del *.tmp").1, "ok");
    assert!(con.cmd("exclude del *.tmp").1.starts_with("error: "));
    assert_eq!(
        con.cmd("exclude list").0,
        ["exclude cache dir/", "include keep.tmp"]
    );
    assert_eq!(con.cmd("exclude clear").1, "ok");
    assert_eq!(con.cmd("exclude list"), (vec![], "ok".into()));
    // The list belongs to the session: a second session starts empty.
    assert_eq!(con.cmd("exclude add x").1, "ok");
    assert_eq!(
        c.daemons[d].console().cmd("exclude list").0,
        Vec::<String>::new()
    );

    // status ends with ok and says who it is.
    let (lines, last) = con.cmd("status");
    assert_eq!(last, "ok");
    assert!(lines.contains(&"name solo".to_string()), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("members ")), "{lines:?}");
    assert_eq!(con.cmd("loglevel 3").1, "ok");
    // md5 with nobody else in the cluster: an error line, and the session goes on.
    assert!(con.cmd("md5 -r").1.starts_with("error: "));
    assert_eq!(con.cmd("alive").1, "ok");

    // quit, pipelined behind other commands: every earlier command answers in full, then the
    // daemon says ok and closes.
    con.send("echo one\nstatus\nmembers\necho two\nquit\n");
    assert_eq!(con.reply(), (vec!["one".to_string()], "ok".into()));
    let (lines, last) = con.reply();
    assert_eq!(last, "ok");
    assert!(lines.contains(&"name solo".to_string()));
    let (lines, last) = con.reply();
    assert_eq!(last, "ok");
    assert!(lines[0].starts_with("solo 127.0.0.1 self"), "{lines:?}");
    assert_eq!(con.reply(), (vec!["two".to_string()], "ok".into()));
    assert_eq!(con.line().as_deref(), Some("ok"), "quit's own ok");
    assert_eq!(con.line(), None, "the console stays open after quit");

    // The daemon still serves new sessions.
    assert_eq!(c.daemons[d].console().cmd("alive").1, "ok");
}

/// The unix-socket console exists only with -U, is mode 0600, answers, and is removed when the
/// daemon stops; SIGTERM makes the daemon exit 0 quickly.
#[test]
fn unix_socket_only_with_u_mode_0600_and_sigterm_exits_0_quickly() {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::net::UnixStream;

    let mut c = Cluster::new();
    let plain = c.add("plain", &[]);
    let sock = c.path("console.sock");
    let sock_arg = sock.to_string_lossy().into_owned();
    let with = c.add("withsock", &["-U", &sock_arg]);

    // Without -U, no socket anywhere in the daemon's dirs.
    for d in [&c.daemons[plain].base, &c.daemons[plain].state] {
        let socks: Vec<_> = fs::read_dir(d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_socket())
            .collect();
        assert!(socks.is_empty(), "{socks:?}");
    }
    let md = fs::symlink_metadata(&sock).expect("-U creates the socket");
    assert!(md.file_type().is_socket());
    assert_eq!(md.mode() & 0o7777, 0o600, "socket mode");
    let s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    (&s).write_all(b"alive\nquit\n").unwrap();
    let mut all = String::new();
    r.read_to_string(&mut all).unwrap();
    assert_eq!(all, "alive\nok\nok\n");
    // The front end speaks to it too.
    let st = run(
        Command::new(EXE).args(["status", "--console", &sock_arg]),
        RUN_LIMIT,
    );
    assert_eq!(st.code, 0, "{st:?}");
    assert!(st.stdout.contains("name withsock"), "{st:?}");

    // An idle console session does not hold the daemon up, and sees EOF when it exits.
    let mut idle = c.daemons[plain].console();
    assert_eq!(idle.cmd("alive").1, "ok");
    for i in [plain, with] {
        let t = Instant::now();
        let status = c.daemons[i]
            .stop()
            .expect("daemon did not exit within 5 s of SIGTERM");
        assert_eq!(status.code(), Some(0), "{}: {status}", c.daemons[i].name);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "SIGTERM took {:?}",
            t.elapsed()
        );
    }
    assert!(!sock.exists(), "the socket outlived the daemon");
    assert_eq!(idle.line(), None);
}

/// A daemon that restarts removes leftover staged files (`.NAME.makuo-XXXXXX`) anywhere in its
/// base, and only those.
#[test]
fn restarted_daemon_sweeps_leftover_temp_files() {
    let mut c = Cluster::new();
    let d = c.add("sweeper", &[]);
    assert_eq!(c.daemons[d].stop().and_then(|s| s.code()), Some(0));
    let base = c.daemons[d].base.clone();
    let t = (1_600_000_000, 0);
    for p in [
        ".a.makuo-Abc123",
        "d/e/.b.makuo-zzzzzz",
        "d/.c d.makuo-000000",
    ] {
        write_file(&base.join(p), b"torn", 0o600, t);
    }
    let keep = [
        "a.makuo-Abc123", // not hidden
        ".a.makuo-notes", // not a random suffix
        "d/.keep",        // not makuo's
        "d/e/plain.txt",  // a normal file
        ".makuo-Abc123x", // no base name
    ];
    for p in keep {
        write_file(&base.join(p), b"mine", 0o644, t);
    }
    c.daemons[d].start();
    assert_eq!(temp_files(&base), Vec::<PathBuf>::new());
    for p in keep {
        assert!(base.join(p).exists(), "the sweep removed {p}");
    }
}

/// Must show: "A receiver killed with SIGKILL mid-transfer and restarted leaves no temp file
/// after restart, the push that lost it exits non-zero naming it, and the next push repairs
/// it." (Exit 23, the member's row says failed.)
#[test]
fn receiver_sigkilled_mid_transfer_is_named_failed_and_repaired_by_the_next_push() {
    let mut c = Cluster::new();
    // -T 200 Mbit/s: the 96 MiB file takes about 4 s, time enough to catch it in flight.
    let mut sender_flags = FAST.to_vec();
    sender_flags.extend(["--no-fsync", "-T", "200"]);
    let s = c.add("sender", &sender_flags);
    for r in ["recv1", "recv2", "recv3"] {
        c.add(r, &["--no-fsync", "--heartbeat", "200"]);
    }
    let src = c.daemons[s].base.clone();
    docroot(&src, 50, Some(96 << 20));
    c.wait_converged(s);

    let sender = std::thread::spawn({
        let d = &c.daemons[s];
        let mut cmd = d.command(&["sync", "--console", &d.console_addr(), "-r", "."]);
        move || run(&mut cmd, RUN_LIMIT)
    });
    let victim = 1;
    let vbase = c.daemons[victim].base.clone();
    let staged = wait_for(
        "a staged .big.bin.makuo-XXXXXX on recv1",
        Duration::from_secs(20),
        || {
            temp_files(&vbase)
                .into_iter()
                .find(|p| p.to_string_lossy().starts_with(".big.bin.makuo-"))
        },
    );
    c.daemons[victim].kill9();
    assert!(
        vbase.join(&staged).exists(),
        "the staged file should outlive SIGKILL (else this test proves nothing)"
    );
    c.daemons[victim].start();
    assert_eq!(
        temp_files(&vbase),
        Vec::<PathBuf>::new(),
        "staged files left after the restart"
    );

    let r = sender.join().unwrap();
    assert_eq!(r.code, 23, "the push that lost recv1: {r:?}");
    assert!(r.result_of("recv1").starts_with("failed"), "{r:?}");
    assert!(r.stderr.contains("recv1"), "{r:?}");
    for n in ["recv2", "recv3"] {
        assert_eq!(r.result_of(n), "ok", "{r:?}");
    }
    for d in &c.daemons[2..] {
        assert_identical(&src, &d.base, &d.name);
    }
    assert_eq!(temp_files(&vbase), Vec::<PathBuf>::new());

    // Wait until the sender knows recv1 once (its old incarnation expired), then push again.
    wait_for(
        "the sender to list recv1 exactly once",
        Duration::from_secs(15),
        || {
            let live = c.daemons[s].live_members();
            (live.iter().filter(|n| *n == "recv1").count() == 1 && live.len() == 4).then_some(())
        },
    );
    let r = c.daemons[s].sync(&[]);
    assert_eq!(r.code, 0, "the repairing push: {r:?}");
    for d in &c.daemons[1..] {
        assert_identical(&src, &d.base, &d.name);
        assert_nothing_of_makuo(&d.base, &d.name);
    }
}

/// A receiver restarted just before a push is targeted once: its dead incarnation (same name
/// and address, old node id), still in the sender's member table, does not fail the push.
#[test]
fn receiver_restarted_just_before_a_push_is_not_failed_by_its_dead_incarnation() {
    let mut c = Cluster::new();
    let mut sender_flags = FAST.to_vec();
    sender_flags.push("--no-fsync");
    let s = c.add("sender", &sender_flags);
    for r in ["recv1", "recv2"] {
        c.add(r, &["--no-fsync", "--heartbeat", "200"]);
    }
    let src = c.daemons[s].base.clone();
    docroot(&src, 30, None);
    c.wait_converged(s);
    c.daemons[1].kill9();
    c.daemons[1].start();
    wait_for(
        "the sender to know both incarnations of recv1",
        Duration::from_secs(4),
        || {
            let live = c.daemons[s].live_members();
            (live.iter().filter(|n| *n == "recv1").count() == 2).then_some(())
        },
    );
    let r = c.daemons[s].sync(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    let rows = r.stdout.lines().filter(|l| l.starts_with("recv1 ")).count();
    assert_eq!(rows, 1, "{r:?}");
    assert_eq!(r.result_of("recv1"), "ok", "{r:?}");
    for d in &c.daemons[1..] {
        assert_identical(&src, &d.base, &d.name);
    }
}

/// Must show: "A receiver that was stopped (SIGSTOP) before a push is named as failed by that
/// push." (Exit 23 while the others get everything.) Also: still named failed once it has
/// expired from the member table (remembered in the state dir), and repaired by a push after
/// SIGCONT.
#[test]
fn receiver_stopped_before_a_push_is_named_failed() {
    let started = Instant::now();
    let mut c = Cluster::new();
    let mut sender_flags = FAST.to_vec();
    sender_flags.push("--no-fsync");
    let s = c.add("sender", &sender_flags);
    for r in ["recv1", "recv2", "recv3"] {
        c.add(r, &["--no-fsync", "--heartbeat", "200"]);
    }
    let src = c.daemons[s].base.clone();
    docroot(&src, 100, None);
    c.wait_converged(s);
    // A member heard only once is never remembered (one forged heartbeat must not make a
    // member the push then fails on): let the sender hear recv2's heartbeats (200 ms) again.
    std::thread::sleep(Duration::from_millis(600));

    // Stopped while still in the sender's member table: targeted, silent, failed.
    let stopped = 2;
    signal(c.daemons[stopped].pid(), libc::SIGSTOP);
    let r = c.daemons[s].sync(&[]);
    assert_eq!(r.code, 23, "{r:?}");
    assert!(r.result_of("recv2").starts_with("failed"), "{r:?}");
    assert!(r.stderr.contains("failed: recv2"), "{r:?}");
    for n in ["recv1", "recv3"] {
        assert_eq!(r.result_of(n), "ok", "{r:?}");
    }
    for i in [1, 3] {
        assert_identical(&src, &c.daemons[i].base, &c.daemons[i].name);
    }

    // Stopped long enough to drop out of the member table: remembered, so still named failed.
    wait_for(
        "recv2 to expire from the sender's members",
        Duration::from_secs(10),
        || (!c.daemons[s].live_members().contains(&"recv2".to_string())).then_some(()),
    );
    let r = c.daemons[s].sync(&[]);
    assert_eq!(r.code, 23, "{r:?}");
    assert!(r.result_of("recv2").starts_with("failed"), "{r:?}");

    // Resumed (with the first push's datagrams still queued): the next push repairs it.
    signal(c.daemons[stopped].pid(), libc::SIGCONT);
    c.wait_converged(s);
    let r = c.daemons[s].sync(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    // Known and left alone here: once resumed, recv2 works through the first push's queued
    // datagrams and stages files for that push, which the sender gave up on without telling
    // it; they stay until the receiver's transfer timeout (30 s) abandons it. So staged
    // files are ignored in this one comparison.
    let mut got = fingerprint(&c.daemons[stopped].base);
    got.retain(|p, _| !is_temp_name(p.rsplit('/').next().unwrap()));
    let d = diff(&fingerprint(&src), &got);
    assert!(d.is_empty(), "recv2 after the repair: {d:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

/// Must show: "A test as root in network namespaces (4 hosts on a bridge, 198.18.0.0/15, 5 %
/// loss on every receiver via nftables): trees identical after one push. It tears everything
/// down even on failure, uses unique names, and is skipped with a clear message when not
/// root." The push is a direct-mode `makuo sync` from the sender's namespace.
#[test]
fn netns_four_hosts_with_5_percent_loss_identical_after_one_push() {
    if !root_or_skip(
        "netns_four_hosts_with_5_percent_loss_identical_after_one_push",
        "network namespaces, nftables",
    ) {
        return;
    }
    // Daemons are declared after the net so they are stopped before it is torn down.
    let mut net = Net::new();
    let mut c = Cluster::new();
    let subnet = 18 + (rand_u64() % 2) as u8; // 198.18.x.0/24 or 198.19.x.0/24
    let third = (std::process::id() % 250) as u8 + 1;
    let addr = |i: usize| format!("198.{subnet}.{third}.{}", 10 + i);
    let sender_ns = net.host(0, &addr(0));
    let mut receivers = Vec::new();
    for i in 1..=3 {
        let ns = net.host(i, &addr(i));
        net.loss(&ns, c.port, 5);
        let base = c.path(&format!("h{i}/base"));
        fs::create_dir_all(&base).unwrap();
        let a = addr(i);
        let mut more = c.key_args();
        more.extend(["--no-fsync", "--heartbeat", "200"].map(String::from));
        let d = c.daemon_at(&format!("h{i}"), base, 5000, Some(ns), &a, more);
        receivers.push(c.push_daemon(d));
    }
    let src = c.src.clone();
    docroot(&src, 400, Some(8 << 20));

    // The receivers hear each other across the bridge (through the loss).
    let first = &c.daemons[receivers[0]];
    wait_for(
        "h1 to see h2 and h3 over the bridge",
        Duration::from_secs(15),
        || {
            let r = run(
                &mut first.command(&["members", "--console", "127.0.0.1:5000"]),
                Duration::from_secs(10),
            );
            (r.stdout.contains("h2 ") && r.stdout.contains("h3 ")).then_some(())
        },
    );

    let t = Instant::now();
    let src_arg = src.to_string_lossy().into_owned();
    let port = c.port.to_string();
    let a0 = addr(0);
    let r = run(
        Command::new("ip")
            .args(["netns", "exec", &sender_ns, EXE, "sync", "--direct"])
            .args([
                "-b",
                &src_arg,
                "-m",
                &c.group,
                "-p",
                &port,
                "--interface",
                &a0,
            ])
            .args(c.key_args())
            .args(["--discover", "1500", "-r", "."]),
        Duration::from_secs(120),
    );
    eprintln!("netns push took {:.2}s", t.elapsed().as_secs_f64());
    assert_eq!(r.code, 0, "{r:?}");
    for i in 1..=3 {
        assert_eq!(r.result_of(&format!("h{i}")), "ok", "{r:?}");
    }
    for &i in &receivers {
        assert_identical(&src, &c.daemons[i].base, &c.daemons[i].name);
        assert_nothing_of_makuo(&c.daemons[i].base, &c.daemons[i].name);
    }
    // Loss really happened: each receiver's nft rule dropped something.
    for i in 1..=3 {
        let ns = net.ns(i);
        assert!(net.dropped(&ns) > 0, "no datagram was dropped in {ns}");
    }
    // Losses in the 8 MiB file were rebuilt from parity on the daemons' write pools, off
    // their network threads.
    let decodes: u64 = receivers
        .iter()
        .map(|&i| {
            let r = run(
                &mut c.daemons[i].command(&["status", "--console", "127.0.0.1:5000"]),
                Duration::from_secs(10),
            );
            Status::parse(r.stdout.lines().map(String::from).collect()).get("decodes")
        })
        .sum();
    assert!(decodes > 0, "no parity decode ran on a write pool");
    drop(c);
    drop(net);
}
