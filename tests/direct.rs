//! The front end end to end: `makuo sync|check|members` against real daemons on loopback.
//!
//! Every test starts its own cluster of receiving daemons (`makuo daemon -n`) on 127.0.0.1,
//! with a random group in 239.255.0.0/16 and a free port, so tests running in parallel never
//! hear each other and nothing leaves the host. Unless a test says otherwise there is no
//! daemon on the sending side: `makuo sync --direct -b SRC` walks SRC itself, discovers the
//! members and multicasts to them. The cluster's `Drop` resumes (SIGCONT) and stops (SIGTERM)
//! every daemon and reaps it, also when a test panics.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::*;

fn names(rows: &[Row]) -> BTreeSet<String> {
    rows.iter().map(|r| r.name.clone()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// sync --direct
// ---------------------------------------------------------------------------------------------

/// The issue's first point: three receiving daemons, no daemon on the sending side, one
/// `sync --direct -r .` makes every receiver identical to SRC (files, dirs, empty dir, symlink,
/// modes, mtimes, a multi-datagram file) and exits 0; the human output ends with the
/// per-member table.
#[test]
fn direct_sync_makes_every_receiver_identical_and_ends_with_the_table() {
    let c = Cluster::start(3);
    let r = c.sync("-r .");
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();

    let rows = r.table(3);
    assert_eq!(names(&rows), c.receiver_names(), "{r}");
    let src_bytes: u64 = fingerprint(&c.src)
        .values()
        .map(|n| match n {
            Node::File { size, .. } => *size,
            _ => 0,
        })
        .sum();
    for row in &rows {
        assert_eq!(row.address, "127.0.0.1", "{r}");
        assert_eq!(row.result, "ok", "{r}");
        assert!(row.files > 0, "{r}");
        assert_eq!(
            row.bytes, src_bytes,
            "fresh member got every byte once: {r}"
        );
    }
    // Nothing but the table on stdout for a real run.
    assert_eq!(r.before_table(3), Vec::<&str>::new(), "{r}");
}

/// A second identical sync transfers nothing, rewrites nothing and is quick.
#[test]
fn second_identical_sync_is_a_fast_no_op() {
    let c = Cluster::start(3);
    c.initial_sync();
    let before = c.snapshots();
    let inodes: Vec<u64> = c
        .receivers()
        .iter()
        .map(|d| fs::metadata(d.base.join("big.bin")).unwrap().ino())
        .collect();

    let r = c.sync("-r .");
    assert_eq!(r.code, 0, "{r}");
    for row in r.table(3) {
        assert_eq!((row.files, row.bytes), (0, 0), "{r}");
        assert_eq!(row.result, "ok", "{r}");
    }
    assert_eq!(c.snapshots(), before);
    let after: Vec<u64> = c
        .receivers()
        .iter()
        .map(|d| fs::metadata(d.base.join("big.bin")).unwrap().ino())
        .collect();
    assert_eq!(
        inodes, after,
        "an unchanged file was rewritten (renamed into place)"
    );
    // The default discovery is 500 ms; the rest of a no-op must be quick.
    assert!(
        r.elapsed < Duration::from_secs(3),
        "no-op took too long: {r}"
    );
}

/// A path that exists only on a receiver survives a plain sync and is removed by
/// `--delete`, which only reaches under the PATHs given; `--max-delete` counts per member.
#[test]
fn receiver_only_paths_survive_plain_sync_and_go_with_delete() {
    let c = Cluster::start(3);
    c.initial_sync();
    write(c.base("m2"), "extra.txt", "only on m2\n");
    write(c.base("m3"), "olddir/sub/f", "only on m3\n");
    write(c.base("m3"), "lib/stale.php", "only on m3\n");

    let r = c.sync("-r .");
    assert_eq!(r.code, 0, "{r}");
    assert!(c.base("m2").join("extra.txt").exists());
    assert!(c.base("m3").join("olddir/sub/f").exists());
    assert!(c.base("m3").join("lib/stale.php").exists());

    // Deleting under lib/ leaves the rest of the member alone.
    let r = c.sync("-r --delete lib");
    assert_eq!(r.code, 0, "{r}");
    assert!(!c.base("m3").join("lib/stale.php").exists());
    assert!(c.base("m3").join("olddir/sub/f").exists());
    assert!(c.base("m2").join("extra.txt").exists());

    // One deletion on each of two members under a limit of 1: the limit is per member.
    let r = c.sync("-r --delete --max-delete 1 --json .");
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    let j = r.json();
    let deleted = |name: &str| {
        j["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {j}"))["deleted"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        (deleted("m1"), deleted("m2"), deleted("m3")),
        (0, 1, 1),
        "{r}"
    );
}

/// `--max-delete 0` with something to delete exits 25 and deletes nothing (the transfer
/// itself still happens, as in rsync).
#[test]
fn max_delete_zero_with_something_to_delete_exits_25_and_deletes_nothing() {
    let c = Cluster::start(3);
    c.initial_sync();
    write(c.base("m1"), "extra.txt", "only on m1\n");
    write(c.base("m2"), "olddir/f", "only on m2\n");
    fs::remove_file(c.src.join("a.txt")).unwrap();
    write(&c.src, "new.txt", "new\n");

    let r = c.sync("-r --delete --max-delete 0 .");
    assert_eq!(r.code, 25, "{r}");
    assert!(r.stderr.contains("--max-delete"), "{r}");
    for d in c.receivers() {
        assert!(d.base.join("a.txt").exists(), "{} lost a.txt", d.name);
        assert_eq!(fs::read(d.base.join("new.txt")).unwrap(), b"new\n");
    }
    assert!(c.base("m1").join("extra.txt").exists());
    assert!(c.base("m2").join("olddir/f").exists());
    assert_eq!(r.table(3).len(), 3, "{r}");
}

/// `-n` changes nothing and prints rsync-style itemized lines; the paths it lists are exactly
/// the paths the real run then changes, member by member.
#[test]
fn dry_run_changes_nothing_and_lists_what_the_real_run_changes() {
    let c = Cluster::start(3);
    c.initial_sync();
    // Content and size change (and a new mtime).
    write(&c.src, "a.txt", "hello, longer\n");
    set_mtime(&c.src.join("a.txt"), 1_600_000_000, 0);
    // Only the mtime changes.
    set_mtime(&c.src.join("lib/notes.txt"), 1_500_000_000, 0);
    // New file, new directory with a file, a file removed from SRC.
    write(&c.src, "new.php", "<?php // new\n");
    write(&c.src, "newdir/x.txt", "x\n");
    fs::remove_file(c.src.join("many/f03.txt")).unwrap();
    // Paths only on one receiver.
    write(c.base("m2"), "extra.txt", "only on m2\n");
    write(c.base("m3"), "olddir/sub/f", "only on m3\n");

    let before = c.snapshots();
    let r = c.sync("-r -n --delete .");
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(c.snapshots(), before, "-n changed a receiver");
    let rows = r.table(3);
    assert_eq!(names(&rows), c.receiver_names(), "{r}");

    let listed: BTreeSet<&str> = r.before_table(3).into_iter().collect();
    let want: BTreeSet<&str> = [
        ">f.st...... a.txt",
        ">f..t...... lib/notes.txt",
        // many/f03.txt went from the source: the directory's time changed (as rsync says).
        ".d..t...... many/",
        ">f+++++++++ new.php",
        "cd+++++++++ newdir/",
        ">f+++++++++ newdir/x.txt",
        "*deleting many/f03.txt",
        "*deleting extra.txt  [m2]",
        "*deleting olddir  [m3]",
    ]
    .into_iter()
    .collect();
    assert_eq!(listed, want, "{r}");

    // What each member would get, from the itemized lines: `[names]` restricts a line.
    let mut per_member: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in &listed {
        // A directory's time alone is not in a fingerprint.
        if line.starts_with(".d..t...... ") {
            continue;
        }
        let (change, who) = match line.split_once("  [") {
            Some((l, w)) => (l, Some(w.trim_end_matches(']'))),
            None => (*line, None),
        };
        let path = change.split_once(' ').unwrap().1.trim_end_matches('/');
        for d in c.receivers() {
            if who.is_none_or(|w| w.split(',').any(|n| n == d.name)) {
                per_member
                    .entry(d.name.clone())
                    .or_default()
                    .insert(path.to_string());
            }
        }
    }

    let r = c.sync("-r --delete .");
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    let after = c.snapshots();
    for (name, b) in &before {
        let did = changed(b, &after[name]);
        let listed = &per_member[name];
        // A deleted directory is listed once; everything under it goes with it.
        let covered = |p: &String| {
            listed.contains(p) || listed.iter().any(|l| p.starts_with(&format!("{l}/")))
        };
        assert!(
            did.iter().all(covered),
            "{name}: changed {did:?}, -n listed {listed:?}"
        );
        assert!(
            listed.iter().all(|l| did.contains(l)),
            "{name}: -n listed {listed:?}, changed {did:?}"
        );
    }
}

/// `--exclude` keeps excluded paths off the receivers, and protects receiver paths that match
/// it from `--delete`.
#[test]
fn exclude_keeps_paths_off_receivers_and_protects_them_from_delete() {
    let c = Cluster::start(3);
    let r = c.sync("-r --exclude *.log --exclude cache/ .");
    assert_eq!(r.code, 0, "{r}");
    let src = fingerprint(&c.src);
    let want: Tree = src
        .iter()
        .filter(|(p, _)| !p.ends_with(".log") && !p.starts_with("cache"))
        .map(|(p, n)| (p.clone(), n.clone()))
        .collect();
    assert!(
        want.len() + 5 == src.len(),
        "3 logs, cache/ and its 2 pages"
    );
    for d in c.receivers() {
        assert_same(&want, &fingerprint(&d.base), &d.name);
    }

    write(c.base("m1"), "local.log", "m1's own log\n");
    write(c.base("m1"), "cache/local.html", "m1's own cache\n");
    let r = c.sync("-r --delete --exclude *.log --exclude cache/ .");
    assert_eq!(r.code, 0, "{r}");
    assert!(c.base("m1").join("local.log").exists());
    assert!(c.base("m1").join("cache/local.html").exists());
    assert!(!c.base("m1").join("lib/access.log").exists());
}

/// Filter rules apply in command-line order and the first match wins (rsync): include every
/// directory and `*.php`, exclude the rest, sends only PHP files; the same rules in another
/// order send nothing.
#[test]
fn include_exclude_order_matters() {
    let c = Cluster::start(3);
    let r = c.sync("-r --exclude * --include */ --include *.php .");
    assert_eq!(r.code, 0, "{r}");
    for d in c.receivers() {
        assert_eq!(fingerprint(&d.base), Tree::new(), "{}: {r}", d.name);
    }

    let r = c.sync("-r --include */ --include *.php --exclude * .");
    assert_eq!(r.code, 0, "{r}");
    let want_files = set(&["index.php", "lib/util.php", "sub/deep/d.php"]);
    for d in c.receivers() {
        let t = fingerprint(&d.base);
        let files: BTreeSet<String> = t
            .iter()
            .filter(|(_, n)| !matches!(n, Node::Dir { .. }))
            .map(|(p, _)| p.clone())
            .collect();
        assert_eq!(files, want_files, "{}", d.name);
        assert!(t.contains_key("sub/deep"), "directories are included");
        assert_eq!(
            fs::read(d.base.join("lib/util.php")).unwrap(),
            fs::read(c.src.join("lib/util.php")).unwrap()
        );
    }
}

/// `--exclude-from FILE` reads one rule a line, skips comments and blank lines, and honours
/// rsync's `+ ` prefix for includes.
#[test]
fn exclude_from_file_applies_its_rules() {
    let c = Cluster::start(3);
    let rules = c.tmp.path().join("rules.txt");
    fs::write(
        &rules,
        "# keep logs and caches off the members\n\n*.log\n; but this one goes\n+ page2.html\ncache/*\n",
    )
    .unwrap();
    let r = c.direct(
        "sync",
        &["-r", "--exclude-from", rules.to_str().unwrap(), "."],
    );
    assert_eq!(r.code, 0, "{r}");
    for d in c.receivers() {
        let t = fingerprint(&d.base);
        assert!(!t.keys().any(|p| p.ends_with(".log")), "{}: {t:?}", d.name);
        assert!(t.contains_key("cache/page2.html"), "{}", d.name);
        assert!(!t.contains_key("cache/page1.html"), "{}", d.name);
        assert!(t.contains_key("index.php") && t.contains_key("big.bin"));
    }

    let missing = c.tmp.path().join("no-such-rules.txt");
    let r = c.direct(
        "sync",
        &["-r", "--exclude-from", missing.to_str().unwrap(), "."],
    );
    assert_eq!(r.code, 1, "a missing rules file is an error: {r}");
}

/// `--json`: stdout is exactly one JSON document with one entry per member and the
/// documented fields; its `exit` is the process's exit status.
#[test]
fn json_is_one_document_with_one_entry_per_member() {
    let c = Cluster::start(3);
    let r = c.sync("-r --json .");
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    let j = r.json();
    for k in ["files", "bytes", "seconds", "exit"] {
        assert!(j[k].is_number(), "top-level {k} in {j}");
    }
    assert_eq!(j["exit"], 0);
    assert!(j["files"].as_u64().unwrap() > 20, "{j}");
    assert!(j["bytes"].as_u64().unwrap() > 300_000, "{j}");
    let members = j["members"].as_array().expect("members[]");
    assert_eq!(members.len(), 3, "{j}");
    let mut seen = BTreeSet::new();
    for m in members {
        for k in ["name", "address", "result", "files", "bytes", "error"] {
            assert!(m.get(k).is_some(), "member field {k} missing in {m}");
        }
        assert_eq!(m["address"], "127.0.0.1");
        assert_eq!(m["result"], "ok");
        assert!(m["error"].is_null());
        assert_eq!(m["bytes"], j["bytes"], "fresh member gets every byte");
        seen.insert(m["name"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, c.receiver_names());
    assert!(r.stderr.is_empty(), "{r}");
}

/// A receiver stopped (SIGSTOP) before the run makes it exit 23 and name that member as
/// failed, while the others get everything.
#[test]
fn stopped_receiver_fails_with_23_and_the_others_get_everything() {
    let c = Cluster::start(3);
    c.initial_sync();
    write(&c.src, "after-stop.txt", "sent while m3 sleeps\n");
    write(&c.src, "a.txt", "changed while m3 sleeps\n");

    // The others still pass m3 along in their heartbeats for a few seconds, so the sender
    // targets it and must wait the member timeout (5 s) before giving up on it.
    c.daemon("m3").signal(libc::SIGSTOP);
    let r = c.sync("-r .");
    let m3_got_it = c.base("m3").join("after-stop.txt").exists();
    c.daemon("m3").signal(libc::SIGCONT);

    assert_eq!(r.code, 23, "{r}");
    assert!(
        r.stderr.contains("m3"),
        "stderr names the failed member: {r}"
    );
    let rows = r.table(3);
    for row in &rows {
        if row.name == "m3" {
            assert!(row.result.starts_with("failed"), "{r}");
        } else {
            assert_eq!(row.result, "ok", "{r}");
        }
    }
    assert_eq!(names(&rows), c.receiver_names(), "{r}");
    assert!(!m3_got_it, "a stopped process wrote a file");
    let want = fingerprint(&c.src);
    assert_same(&want, &fingerprint(c.base("m1")), "m1");
    assert_same(&want, &fingerprint(c.base("m2")), "m2");
    assert!(r.elapsed < Duration::from_secs(12), "{r}");
}

/// `-t NAME` pushes to that member only.
#[test]
fn target_pushes_to_that_member_only() {
    let c = Cluster::start(3);
    let r = c.sync("-r -t m2 .");
    assert_eq!(r.code, 0, "{r}");
    let rows = r.table(1);
    assert_eq!(rows[0].name, "m2", "{r}");
    assert_same(&fingerprint(&c.src), &fingerprint(c.base("m2")), "m2");
    assert_eq!(fingerprint(c.base("m1")), Tree::new());
    assert_eq!(fingerprint(c.base("m3")), Tree::new());
}

/// With no member answering, sync exits 10 (text or JSON) and `members` too.
#[test]
fn no_member_answering_exits_10() {
    let dir = tempfile::tempdir().unwrap();
    let group = random_group();
    let port = free_udp_port().to_string();
    let base = dir.path().to_str().unwrap();
    let net = [
        "-m",
        &group,
        "-p",
        &port,
        "--interface",
        "127.0.0.1",
        "--discover",
        "200",
        "--insecure",
    ];

    let mut a = vec!["sync", "--direct", "-b", base, "-r"];
    a.extend(net);
    a.push(".");
    let r = makuo(&a);
    assert_eq!(r.code, 10, "{r}");
    assert!(r.stderr.contains("no member answered"), "{r}");

    a.insert(1, "--json");
    let r = makuo(&a);
    assert_eq!(r.code, 10, "{r}");
    let j = r.json();
    assert_eq!(j["exit"], 10);
    assert_eq!(j["members"].as_array().map(Vec::len), Some(0), "{j}");

    let mut a = vec!["members", "--direct"];
    a.extend(net);
    let r = makuo(&a);
    assert_eq!(r.code, 10, "{r}");
    assert_eq!(r.stdout, "", "{r}");
}

/// Usage errors exit 1 before anything touches the network.
#[test]
fn usage_errors_exit_1() {
    for args in [
        &["sync"][..],
        &["sync", "--bogus", "."],
        &["sync", "--max-delete", "1", "."],
        &["sync", "--direct", "--console", "127.0.0.1:1", "."],
        &["sync", "--bwlimit", "2Q", "."],
        &["check", "--direct", "--mtu", "100"],
        &["members", "--direct", "--direct"],
    ] {
        let r = makuo(args);
        assert_eq!(r.code, 1, "makuo {args:?}: {r}");
        assert!(!r.stderr.is_empty(), "makuo {args:?} says why: {r}");
    }
}

// ---------------------------------------------------------------------------------------------
// check and members
// ---------------------------------------------------------------------------------------------

/// `check --direct` exits 0 when every receiver matches and 23, naming the member and the
/// path, when one file's contents differ though size and mtime match; a plain sync does not
/// see that difference, `sync -c` repairs it.
#[test]
fn check_exits_0_when_all_match_and_23_naming_member_and_path() {
    let c = Cluster::start(3);
    c.initial_sync();
    let r = c.check("-r .");
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.table(3).len(), 3, "{r}");
    assert_eq!(r.before_table(3), Vec::<&str>::new(), "{r}");

    // Same size, same mtime, other contents.
    let p = c.base("m2").join("lib/util.php");
    let md = fs::metadata(&p).unwrap();
    let mut data = fs::read(&p).unwrap();
    data[0] ^= 0x20;
    fs::write(&p, &data).unwrap();
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(md.modified().unwrap())
        .unwrap();

    let r = c.check("-r .");
    assert_eq!(r.code, 23, "{r}");
    assert_eq!(r.before_table(3), ["lib/util.php m2"], "{r}");
    for row in r.table(3) {
        let want = if row.name == "m2" { "differ" } else { "ok" };
        assert_eq!(row.result, want, "{r}");
    }

    let r = c.sync("-r .");
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(
        fs::read(&p).unwrap(),
        data,
        "quick check skips same size and mtime"
    );

    let r = c.sync("-r -c .");
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    let r = c.check("-r .");
    assert_eq!(r.code, 0, "{r}");
}

/// `members --direct` lists the three daemons, live.
#[test]
fn members_direct_lists_the_daemons() {
    let c = Cluster::start(3);
    let mut a: Vec<String> = vec!["members".into(), "--direct".into()];
    a.extend(c.net());
    a.extend(c.key_args());
    let r = makuo(&a);
    assert_eq!(r.code, 0, "{r}");
    let mut seen = BTreeSet::new();
    let lines = r.lines();
    assert!(lines[0].starts_with("MEMBER "), "a header first: {r}");
    for l in &lines[1..] {
        let w: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(&w[1..3], ["127.0.0.1", "live"], "{r}");
        seen.insert(w[0].to_string());
    }
    assert_eq!(seen, c.receiver_names(), "{r}");
    assert_eq!(lines.len(), 4, "{r}");
    let names: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(
        names.windows(2).all(|p| p[0] <= p[1]),
        "sorted by name: {r}"
    );
}

// ---------------------------------------------------------------------------------------------
// Through a daemon
// ---------------------------------------------------------------------------------------------

/// With a daemon answering on `--console`, `sync --console ADDR -r .` (no -b/-m/-p/-i) goes
/// through it, and gives the same table and exit codes as direct mode.
#[test]
fn console_mode_goes_through_the_daemon_with_the_same_table_and_exits() {
    let mut c = Cluster::start(3);
    let src = c.src.clone();
    let sender = c.add_sender("sender", &src, &["--no-fsync"]);
    let console = c.daemons[sender].console_addr();
    // Wait until the sending daemon has heard the three receivers.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let r = via(&console, "members", "");
        assert_eq!(r.code, 0, "{r}");
        let live = r.lines().iter().filter(|l| l.contains(" live ")).count();
        if live == 3 {
            assert!(r.lines()[1].starts_with("sender "), "self first: {r}");
            assert!(r.lines()[1].contains(" self "), "{r}");
            break;
        }
        assert!(Instant::now() < end, "sender never saw 3 members: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let r = via(&console, "sync", "-r .");
    assert_eq!(r.code, 0, "{r}");
    let rows = r.table(3);
    assert_eq!(names(&rows), c.receiver_names(), "{r}");
    assert!(
        rows.iter().all(|row| row.result == "ok" && row.files > 0),
        "{r}"
    );
    c.assert_all_identical();

    write(c.base("m2"), "extra.txt", "only on m2\n");
    let r = via(&console, "sync", "-r -n --delete .");
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.before_table(3), ["*deleting extra.txt  [m2]"], "{r}");
    assert!(c.base("m2").join("extra.txt").exists());

    let r = via(&console, "sync", "-r --delete --max-delete 0 --json .");
    assert_eq!(r.code, 25, "{r}");
    assert_eq!(r.json()["exit"], 25);
    assert_eq!(r.json()["members"].as_array().unwrap().len(), 3);
    assert!(c.base("m2").join("extra.txt").exists());

    let r = via(&console, "sync", "-r --delete --exclude *.log .");
    assert_eq!(r.code, 0, "{r}");
    assert!(!c.base("m2").join("extra.txt").exists());

    write(&c.src, "new.txt", "new\n");
    let r = via(&console, "sync", "-r -t m2 .");
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(names(&r.table(1)), set(&["m2"]), "{r}");
    assert!(c.base("m2").join("new.txt").exists());
    assert!(!c.base("m1").join("new.txt").exists());
    let r = via(&console, "sync", "-r .");
    assert_eq!(r.code, 0, "{r}");

    let r = via(&console, "check", "-r");
    assert_eq!(r.code, 0, "{r}");
    write(c.base("m1"), "a.txt", "not what SRC has\n");
    let r = via(&console, "check", "-r");
    assert_eq!(r.code, 23, "{r}");
    assert_eq!(r.before_table(3), ["a.txt m1"], "{r}");

    // An explicit console nobody answers on is an error, not a silent fallback to direct.
    let dead = format!("127.0.0.1:{}", free_tcp_port());
    let r = makuo(&["sync", "--console", &dead, "-r", "."]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("no daemon answers"), "{r}");
}

/// A receiver first heard while a direct push is under way was not pushed to: the result
/// names it failed ("not pushed to") instead of leaving it out, and the exit says so.
#[test]
fn a_member_heard_only_during_the_push_is_named_not_pushed_to() {
    let c = Cluster::start(2);
    write_big(&c.src.join("slow.bin"), 48 << 20);
    let mut late = c.daemon_on_loopback("late", &[]);
    let r = std::thread::scope(|s| {
        // 48 MiB at 16 MiB/s: some 3 s, and the late daemon starts 1 s in.
        let push = s.spawn(|| c.direct("sync", &["--bwlimit", "16M", "--json", "-r", "."]));
        std::thread::sleep(Duration::from_millis(1000));
        late.start();
        push.join().unwrap()
    });
    assert_ne!(r.code, 0, "{r}");
    let j = r.json();
    let members = j["members"].as_array().expect("members in the result");
    let of = |name: &str| {
        members
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m.to_string())
            .unwrap_or_default()
    };
    assert!(of("late").contains("not pushed to"), "{r}");
    for name in c.receiver_names() {
        assert!(of(&name).contains("\"result\":\"ok\""), "{name}: {r}");
    }
    c.assert_all_identical();
}
