//! Integration tests of deploy safety (issue 17): receiver-side protection (`--protect`,
//! `--max-delete` on the daemon), hooks around the commit, durable metadata and the
//! cluster-wide all-or-none commit (`--atomic`). Real `makuo` binaries on loopback, through
//! the shared fixtures in `tests/common/mod.rs`; every wait is bounded.

mod common;

use std::fs;

use common::*;

/// Must show: "`--protect 'config/**'` on a member: a push with `--delete` neither overwrites
/// nor deletes under `config/` there." The other member (no protection) gets the push whole;
/// `check` names the protected paths as protected, not as differences, and the push's result
/// names them too.
#[test]
fn protect_keeps_config_on_one_member_against_delete() {
    let mut c = Cluster::new();
    small_site(&c.src);
    write(&c.src, "config/app.conf", "from the sender\n");
    write(&c.src, "config/new.conf", "new from the sender\n");
    c.add("m1", &["--no-fsync", "--protect", "config/**"]);
    c.add("m2", &["--no-fsync"]);
    let m1 = c.base("m1").to_path_buf();
    write(&m1, "config/app.conf", "local to m1\n");
    write(&m1, "config/only-here.conf", "m1's own\n");
    write(&m1, "config/sub/deep.conf", "m1's deep\n");
    write(&m1, "stray.txt", "not in the source: deleted\n");
    let before = fingerprint(&m1.join("config"));

    let check = c.check("-r . --json");
    let j = check.json();
    let row = |name: &str| {
        j["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {check}"))
            .clone()
    };
    let m1row = row("m1");
    let p1: Vec<&str> = m1row["protected"]
        .as_array()
        .unwrap_or_else(|| panic!("m1 lists nothing protected: {check}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        p1.contains(&"config/app.conf") && p1.contains(&"config/new.conf"),
        "{check}"
    );
    let diffs1 = row("m1")["changes"].clone();
    assert!(
        !diffs1.to_string().contains("config/"),
        "protected paths listed as different on m1: {check}"
    );
    assert!(row("m2")["protected"].is_null(), "{check}");

    let r = c.sync("-r . --delete");
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.result_of("m1").contains("protected: config/app.conf"),
        "the result names what was protected: {r}"
    );
    // Nothing under config/ changed on m1: not overwritten, not created, not deleted.
    assert_same(&before, &fingerprint(&m1.join("config")), "m1 config/");
    assert!(
        !m1.join("stray.txt").exists(),
        "--delete still works outside config/"
    );
    assert_eq!(
        fs::read(m1.join("index.php")).unwrap(),
        fs::read(c.src.join("index.php")).unwrap()
    );
    // m2 has no protection: identical to the source.
    assert_identical(&c.src, c.base("m2"), "m2");

    // The JSON of the push says it too.
    let j = c.sync("-r . --delete --json").json();
    let m1row = j["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "m1")
        .unwrap()
        .clone();
    assert!(
        m1row["protected"].to_string().contains("config/app.conf"),
        "{j}"
    );
    assert_same(
        &before,
        &fingerprint(&m1.join("config")),
        "m1 config/ after the 2nd push",
    );
}

/// Daemon `--max-delete N`: a push that would delete more there is refused on that member
/// alone (nothing changes there, the others apply it) and the push exits 25.
#[test]
fn daemon_max_delete_refuses_the_push_there_with_exit_25() {
    let mut c = Cluster::new();
    small_site(&c.src);
    c.add("m1", &["--no-fsync", "--max-delete", "2"]);
    c.add("m2", &["--no-fsync"]);
    c.initial_sync();
    for i in 0..3 {
        fs::remove_file(c.src.join(format!("many/f{i:02}.txt"))).unwrap();
    }
    write(&c.src, "index.php", "<?php echo 'v2';\n");
    let before = fingerprint(c.base("m1"));
    let r = c.sync("-r . --delete");
    assert_eq!(r.code, 25, "{r}");
    assert!(
        r.result_of("m1")
            .contains("refused by this member's --max-delete (2)"),
        "{r}"
    );
    assert_same(&before, &fingerprint(c.base("m1")), "m1 (refused)");
    assert_identical(&c.src, c.base("m2"), "m2");
    // Within the limit the push applies there too.
    for i in 0..2 {
        write(&c.src, &format!("many/f{i:02}.txt"), "back\n");
    }
    let r = c.sync("-r . --delete");
    assert_eq!(r.code, 0, "{r}");
    assert_identical(&c.src, c.base("m1"), "m1");
}

/// The marker an `--after-push`/`--before-commit` hook of these tests writes beside the
/// member's base: the hook's environment and its change list.
const MARK: &str = r#"{ echo "hook=$MAKUO_HOOK id=$MAKUO_PUSH_ID origin=$MAKUO_ORIGIN base=$MAKUO_BASE pwd=$(pwd)"; cat "$MAKUO_CHANGES"; } > "$MAKUO_BASE/../marker-$MAKUO_HOOK""#;

/// Must show: "`--after-push` writes a marker on each member; a hook that exits 3 on one
/// member shows `hook failed: exit 3` for that member and the push exits 23."
#[test]
fn after_push_marks_each_member_and_a_failing_hook_fails_the_push() {
    let mut c = Cluster::new();
    small_site(&c.src);
    let failing = format!("{MARK}; exit 3");
    c.add("m1", &["--no-fsync", "--after-push", MARK]);
    c.add("m2", &["--no-fsync", "--after-push", MARK]);
    c.add("m3", &["--no-fsync", "--after-push", &failing]);
    let r = c.sync("-r . --json");
    assert_eq!(r.code, 23, "{r}");
    let j = r.json();
    for m in j["members"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        if name == "m3" {
            assert_eq!(m["result"], "failed", "{j}");
            assert_eq!(m["error"], "hook failed: exit 3", "{j}");
        } else {
            assert_eq!(m["result"], "ok", "{j}");
        }
    }
    for d in c.receivers() {
        // Every member committed (the hook runs after the commit) and ran its hook once.
        assert_identical(&c.src, &d.base, &d.name);
        let marker = d.base.parent().unwrap().join("marker-after-push");
        let text = fs::read_to_string(&marker)
            .unwrap_or_else(|e| panic!("{}: no marker {}: {e}", d.name, marker.display()));
        let first = text.lines().next().unwrap();
        let base = d.base.to_string_lossy();
        assert!(first.starts_with("hook=after-push id="), "{first}");
        assert!(
            first.contains(&format!("base={base} pwd={base}")),
            "{first}"
        );
        assert!(!first.contains("origin= "), "the origin is named: {first}");
        let listed: Vec<&str> = text.lines().skip(1).collect();
        assert!(
            listed.contains(&"index.php") && listed.contains(&"sub/deep/d.php"),
            "{text}"
        );
        // The change file is removed once the hook ended.
        let id = first.split_whitespace().nth(1).unwrap();
        assert!(id.len() > 4, "{first}");
    }
    // Human output: the table row says it.
    let r = c.sync("-r . --delete");
    assert_eq!(r.code, 23, "{r}");
    assert_eq!(r.result_of("m3"), "failed: hook failed: exit 3", "{r}");
    assert_eq!(r.result_of("m1"), "ok", "{r}");
    // The second push changed nothing: its change list is empty.
    let m1 = c.base("m1").parent().unwrap().join("marker-after-push");
    assert_eq!(fs::read_to_string(m1).unwrap().lines().count(), 1);
}

/// `--before-commit` runs before the commit with the planned changes and can veto it: the
/// vetoing member keeps its tree (and no staged file), the others commit.
#[test]
fn before_commit_vetoes_on_one_member() {
    let mut c = Cluster::new();
    small_site(&c.src);
    let veto = format!("{MARK}; exit 7");
    c.add("m1", &["--no-fsync", "--before-commit", MARK]);
    c.add("m2", &["--no-fsync", "--before-commit", &veto]);
    let r = c.sync("-r .");
    assert_eq!(r.code, 23, "{r}");
    assert!(
        r.result_of("m2")
            .contains("vetoed by --before-commit (hook failed: exit 7)"),
        "{r}"
    );
    assert_identical(&c.src, c.base("m1"), "m1");
    assert!(paths(c.base("m2")).is_empty(), "m2 committed nothing");
    assert!(
        temp_files(c.base("m2")).is_empty(),
        "m2 dropped its staging"
    );
    let text =
        fs::read_to_string(c.base("m2").parent().unwrap().join("marker-before-commit")).unwrap();
    assert!(
        text.lines().any(|l| l == "big.bin"),
        "planned changes listed: {text}"
    );
}

/// A hook that takes a while does not stop the member: its console answers meanwhile, and a
/// hook over `--hook-timeout` is killed and fails.
#[test]
fn slow_hook_runs_off_the_loop_and_times_out() {
    let mut c = Cluster::new();
    small_site(&c.src);
    c.add(
        "m1",
        &[
            "--no-fsync",
            "--after-push",
            "sleep 30",
            "--hook-timeout",
            "3",
        ],
    );
    let src = c.src.clone();
    let args: Vec<String> = {
        let mut a = vec!["sync".to_string(), "--direct".into(), "-b".into()];
        a.push(src.to_string_lossy().into_owned());
        a.extend(c.net());
        a.extend(c.key_args());
        a.extend(["-r".into(), ".".into()]);
        a
    };
    let log = c.path("push.log");
    let mut push = Background::start(&args, log);
    // While the hook sleeps, the member answers its console promptly.
    wait_for(
        "the hook to start",
        std::time::Duration::from_secs(20),
        || {
            let started = paths(c.base("m1")).iter().any(|p| p.ends_with("index.php"));
            started.then_some(())
        },
    );
    let t = std::time::Instant::now();
    c.daemon("m1").status();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(1),
        "status took {:?} while the hook ran",
        t.elapsed()
    );
    let st = push.wait(std::time::Duration::from_secs(30));
    let out = push.log_text();
    assert_eq!(st.and_then(|s| s.code()), Some(23), "{out}");
    assert!(out.contains("hook failed: timed out after 3s"), "{out}");
}

/// Must show: "3 receivers, one of which cannot write one file (a read-only directory):
/// `makuo sync --atomic` exits 23 with `not committed on any member`, and the other two
/// members' trees are unchanged." As root a read-only mode binds nobody, so the directory is
/// made immutable (`chattr +i`). The push also creates a new directory: staging made it on
/// the others, and dropping the staging removes it again.
#[test]
fn atomic_push_commits_nowhere_when_one_member_cannot_write() {
    let mut c = Cluster::start(3);
    c.initial_sync();
    write(&c.src, "index.php", "<?php echo 'v2';\n");
    write(&c.src, "lib/util.php", "<?php function f() { return 2; }\n");
    write(&c.src, "newdir/new.txt", "new\n");
    fs::remove_file(c.src.join("a.txt")).unwrap();
    let before = c.snapshots();
    let _guard = Unwritable::new(&c.base("m2").join("lib"));

    let r = c.sync("-r . --delete --atomic");
    assert_eq!(r.code, 23, "{r}");
    assert!(
        r.stdout.contains("not committed on any member")
            || r.stderr.contains("not committed on any member"),
        "{r}"
    );
    assert!(r.result_of("m2").starts_with("failed: "), "{r}");
    for m in ["m1", "m3"] {
        assert!(
            r.result_of(m)
                .contains("not committed on any member (m2 failed"),
            "{m}: {r}"
        );
    }
    // Every member drops what it staged (bounded wait: the ABORT is on its way).
    wait_for(
        "staging dropped everywhere",
        std::time::Duration::from_secs(10),
        || {
            c.receivers()
                .iter()
                .all(|d| temp_files(&d.base).is_empty() && !d.base.join("newdir").exists())
                .then_some(())
        },
    );
    let after = c.snapshots();
    for m in ["m1", "m2", "m3"] {
        eprintln!("DEBUG {m}: {:?}", paths(c.base(m)));
        assert_same(&before[m], &after[m], m);
    }

    // The same through a daemon's console (`sync --atomic` via the console's `sync`).
    let src = c.src.clone();
    let s = c.add_sender("s", &src, &["--no-fsync", "--no-receive"]);
    c.wait_converged(s);
    let r = c.daemons[s].sync(&["--delete", "--atomic"]);
    assert_eq!(r.code, 23, "{r}");
    assert!(
        r.result_of("m1").contains("not committed on any member"),
        "{r}"
    );
    wait_for(
        "staging dropped everywhere",
        std::time::Duration::from_secs(10),
        || {
            c.receivers()
                .iter()
                .all(|d| temp_files(&d.base).is_empty())
                .then_some(())
        },
    );
    assert_eq!(before, c.snapshots(), "nothing changed anywhere");

    // Without the obstacle the same atomic push commits everywhere.
    drop(_guard);
    let r = c.daemons[s].sync(&["--delete", "--atomic"]);
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
}

/// `--before-commit` runs at PREPARE under `--atomic`: a veto on one member means no commit
/// on any (the others ran their hook and are left unchanged, staging dropped).
#[test]
fn atomic_before_commit_veto_anywhere_commits_nowhere() {
    let mut c = Cluster::new();
    small_site(&c.src);
    let veto = format!("{MARK}; exit 7");
    c.add("m1", &["--no-fsync", "--before-commit", MARK]);
    c.add("m2", &["--no-fsync", "--before-commit", MARK]);
    c.add("m3", &["--no-fsync", "--before-commit", &veto]);
    let before = c.snapshots();
    let r = c.sync("-r . --atomic");
    assert_eq!(r.code, 23, "{r}");
    assert!(
        r.result_of("m3")
            .contains("vetoed by --before-commit (hook failed: exit 7)"),
        "{r}"
    );
    for m in ["m1", "m2"] {
        assert!(
            r.result_of(m)
                .contains("not committed on any member (m3 failed: vetoed by --before-commit"),
            "{m}: {r}"
        );
        // Its hook ran (at PREPARE, with the planned changes), yet nothing was committed.
        let marker = c.base(m).parent().unwrap().join("marker-before-commit");
        let text = fs::read_to_string(&marker).unwrap_or_else(|e| panic!("{m}: {e}"));
        assert!(text.lines().any(|l| l == "index.php"), "{m}: {text}");
    }
    // Every member drops what it staged and the directories staging made (the ABORT is on
    // its way when the push ends: bounded wait).
    wait_for(
        "staging dropped everywhere",
        std::time::Duration::from_secs(10),
        || {
            (c.snapshots() == before
                && c.receivers().iter().all(|d| temp_files(&d.base).is_empty()))
            .then_some(())
        },
    );
    // No hook vetoes: the hooks run once each (at PREPARE, not again at the commit).
    let mut c2 = Cluster::new();
    small_site(&c2.src);
    let count = r#"echo x >> "$MAKUO_BASE/../count-before-commit""#;
    c2.add("m1", &["--no-fsync", "--before-commit", count]);
    c2.add("m2", &["--no-fsync", "--before-commit", count]);
    let r = c2.sync("-r . --atomic");
    assert_eq!(r.code, 0, "{r}");
    c2.assert_all_identical();
    for m in ["m1", "m2"] {
        let n =
            fs::read_to_string(c2.base(m).parent().unwrap().join("count-before-commit")).unwrap();
        assert_eq!(n.lines().count(), 1, "{m}: hook runs: {n:?}");
    }
}

/// A member killed (SIGKILL) after it answered READY, while another member's
/// `--before-commit` holds the push: `status` showed the unfinished commit (journaled in the
/// state dir), the push commits nowhere (exit 23), and on restart the member rolls back from
/// its journal: its tree as before, no staged file, no journal, nothing unfinished.
#[test]
fn a_member_killed_after_ready_rolls_back_from_its_journal_on_restart() {
    let mut c = Cluster::new();
    small_site(&c.src);
    let gate = c.path("gate");
    let hold = format!(
        "for i in $(seq 300); do [ -e '{}' ] && exit 0; sleep 0.1; done; exit 1",
        gate.display()
    );
    let m1 = c.add("m1", &[]);
    c.add("m2", &["--no-fsync", "--before-commit", &hold]);
    fs::write(&gate, "").unwrap();
    c.initial_sync();
    fs::remove_file(&gate).unwrap();
    write(&c.src, "index.php", "<?php echo 'v2';\n");
    write(&c.src, "newdir/new.txt", "new\n");
    let before = c.snapshots();

    let mut args = vec!["sync".to_string(), "--direct".into(), "-b".into()];
    args.push(c.src.to_string_lossy().into_owned());
    args.extend(c.net());
    args.extend(c.key_args());
    args.extend(["-r", ".", "--atomic"].map(String::from));
    let mut push = Background::start(&args, c.path("push.log"));
    // m1 is ready (journaled) and waits for the go; m2's hook holds the push.
    let line = wait_for(
        "m1 to show an unfinished commit",
        std::time::Duration::from_secs(30),
        || {
            let st = c.daemon("m1").status();
            st.lines
                .iter()
                .find(|l| l.starts_with("unfinished-commit "))
                .cloned()
        },
    );
    assert!(
        line.contains("state=ready") && line.contains("journal=yes"),
        "{line}"
    );
    let journal = c.daemon("m1").state.join("journal");
    assert_eq!(fs::read_dir(&journal).unwrap().count(), 1, "one journal");
    // `makuo status --json` names it too.
    let addr = c.daemon("m1").console_addr();
    let js = makuo(&["status", "--console", &addr, "--json"]);
    assert_eq!(js.code, 0, "{js}");
    assert_eq!(js.json()["unfinished_commits"][0]["state"], "ready", "{js}");
    assert!(!temp_files(c.base("m1")).is_empty(), "m1 holds its staging");

    c.daemons[m1].kill9();
    fs::write(&gate, "").unwrap();
    let st = push.wait(std::time::Duration::from_secs(60));
    let out = push.log_text();
    assert_eq!(st.and_then(|s| s.code()), Some(23), "{out}");
    assert!(out.contains("not committed on any member"), "{out}");

    c.daemons[m1].start();
    // In doubt: the sender (a direct push) is gone and no member got the go, so nobody can
    // say; after its patience m1 rolls back (presumed abort).
    wait_for(
        "m1 to roll the push in doubt back",
        std::time::Duration::from_secs(40),
        || {
            let log = c.daemon("m1").log_text();
            log.contains("no go recorded: in doubt")
                .then_some(())
                .filter(|_| log.contains("in doubt since a crash: rolled back (nobody answered"))
        },
    );
    let st = c.daemon("m1").status();
    assert!(
        !st.lines.iter().any(|l| l.starts_with("unfinished-commit ")),
        "{:?}",
        st.lines
    );
    assert_eq!(fs::read_dir(&journal).unwrap().count(), 0, "journal gone");
    wait_for(
        "staging dropped everywhere",
        std::time::Duration::from_secs(10),
        || {
            c.receivers()
                .iter()
                .all(|d| temp_files(&d.base).is_empty() && !d.base.join("newdir").exists())
                .then_some(())
        },
    );
    assert_eq!(before, c.snapshots(), "nothing committed anywhere");
    // And the same push, ungated, commits everywhere.
    let r = c.sync("-r . --atomic");
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
}

/// A member killed (SIGKILL) within an atomic push's last round trip: it answered READY in
/// the confirming round and the go reached it, but it died before recording the go (a test
/// hook stops it there, after it answered BUSY). The others commit. Restarted while the push
/// still waits for it (a member that answered BUSY is waited for up to the commit timeout,
/// 120 s, so the push is stopped afterwards rather than awaited), the member holds the push in doubt (`status`: `state=in-doubt`), asks the cluster, hears
/// from a member that got the go that it was committed, and finishes it from its journal:
/// every member ends the same.
#[test]
fn a_member_killed_before_recording_the_go_commits_on_restart_like_the_others() {
    let mut c = Cluster::new();
    small_site(&c.src);
    let marker = c.path("paused-before-go");
    let mut d = c.daemon_on_loopback("m1", &[]);
    d.env.push((
        "MAKUO_TEST_PAUSE_BEFORE_GO".into(),
        marker.to_string_lossy().into_owned(),
    ));
    let m1 = c.push_daemon(d);
    c.add("m2", &[]);
    c.add("m3", &[]);
    c.initial_sync();
    write(&c.src, "index.php", "<?php echo 'v2';\n");
    write(&c.src, "newdir/new.txt", "new\n");
    fs::remove_file(c.src.join("robots.txt")).ok();

    let mut args = vec!["sync".to_string(), "--direct".into(), "-b".into()];
    args.push(c.src.to_string_lossy().into_owned());
    args.extend(c.net());
    args.extend(c.key_args());
    args.extend(["-r", ".", "--atomic", "--delete"].map(String::from));
    let mut push = Background::start(&args, c.path("push.log"));
    wait_for(
        "m1 to get the go",
        std::time::Duration::from_secs(30),
        || marker.exists().then_some(()),
    );
    c.daemons[m1].kill9();
    let want = fingerprint(&c.src);
    for m in ["m2", "m3"] {
        wait_for(
            &format!("{m} to commit"),
            std::time::Duration::from_secs(30),
            || (fingerprint(c.base(m)) == want).then_some(()),
        );
    }
    let journal = c.daemon("m1").state.join("journal");
    assert_eq!(
        fs::read_dir(&journal).unwrap().count(),
        1,
        "m1's journal, no .go"
    );
    assert!(!temp_files(c.base("m1")).is_empty(), "m1's staging is left");

    // Restarted without the hook: in doubt, then committed on the others' word.
    c.daemons[m1].env.clear();
    c.daemons[m1].start();
    let log = wait_for(
        "m1 to resolve the push in doubt",
        std::time::Duration::from_secs(40),
        || {
            let log = c.daemon("m1").log_text();
            log.contains("in doubt since a crash:").then_some(log)
        },
    );
    assert!(log.contains("no go recorded: in doubt"), "{log}");
    assert!(
        // Told by the sender (its go, repeated, or its answer) or a member that got the go.
        log.contains("in doubt since a crash: committed ("),
        "{log}"
    );
    c.assert_all_identical();
    assert!(temp_files(c.base("m1")).is_empty());
    assert_eq!(fs::read_dir(&journal).unwrap().count(), 0, "journal gone");
    let _ = push.stop(std::time::Duration::from_secs(10));
    assert!(
        !push.log_text().contains("not committed on any member"),
        "{}",
        push.log_text()
    );
    let st = c.daemon("m1").status();
    assert!(
        !st.lines.iter().any(|l| l.starts_with("unfinished-commit ")),
        "{:?}",
        st.lines
    );
}

/// Overlapping pushes (not atomic) from two hosts over the same file end the same on every
/// member: the cluster-wide order is the push id (start time, origin), and a member skips
/// what an older push would write over a newer one's. m3 holds the older push (a
/// `--before-commit` hook sleeps for it alone), so there the newer push commits first; the
/// older one then leaves the file as the newer one made it, as m1 and m2 have it.
#[test]
fn overlapping_pushes_from_two_hosts_end_the_same_on_every_member() {
    let mut c = Cluster::new();
    let hold = "case \"$MAKUO_ORIGIN\" in older) sleep 3 ;; esac; exit 0";
    c.add("m1", &[]);
    c.add("m2", &[]);
    c.add("m3", &["--before-commit", hold]);
    let (a, b) = (c.path("src-older"), c.path("src-newer"));
    write(&a, "same.txt", "from the older push\n");
    write(&a, "only-older.txt", "older\n");
    write(&b, "same.txt", "from the newer push, longer\n");
    write(&b, "only-newer.txt", "newer\n");
    let push = |src: &std::path::Path, name: &str| {
        let mut args = vec!["sync".to_string(), "--direct".into(), "-b".into()];
        args.push(src.to_string_lossy().into_owned());
        args.extend(c.net());
        args.extend(c.key_args());
        args.extend(["--name", name, "-r", "."].map(String::from));
        Background::start(&args, c.path(&format!("push-{name}.log")))
    };
    let mut older = push(&a, "older");
    std::thread::sleep(std::time::Duration::from_millis(600));
    let mut newer = push(&b, "newer");
    for (p, what) in [(&mut newer, "newer"), (&mut older, "older")] {
        let st = p.wait(std::time::Duration::from_secs(60));
        assert_eq!(
            st.and_then(|s| s.code()),
            Some(0),
            "{what}: {}",
            p.log_text()
        );
    }
    for m in ["m1", "m2", "m3"] {
        let base = c.base(m);
        assert_eq!(
            fs::read_to_string(base.join("same.txt")).unwrap(),
            "from the newer push, longer\n",
            "{m}: the newer push's contents win"
        );
        assert!(base.join("only-older.txt").exists(), "{m}");
        assert!(base.join("only-newer.txt").exists(), "{m}");
        wait_for(
            "no staged file left",
            std::time::Duration::from_secs(10),
            || temp_files(base).is_empty().then_some(()),
        );
    }
    let log = c.daemon("m3").log_text();
    assert!(log.contains("left as a newer push made them"), "{log}");
}

/// Catch-up: a member that was down during a push comes back behind the cluster; `status`
/// (on any member) names it, with the push it missed and how to fix it; once the push is
/// repeated to it, nobody is behind.
#[test]
fn status_names_a_member_that_missed_the_last_push_until_it_gets_it() {
    let mut c = Cluster::new();
    small_site(&c.src);
    c.add("m1", &[]);
    c.add("m2", &[]);
    let m3 = c.add("m3", &[]);
    c.initial_sync();
    let behind = |c: &Cluster| -> Vec<String> {
        c.daemon("m1")
            .status()
            .lines
            .iter()
            .filter(|l| l.starts_with("behind "))
            .cloned()
            .collect()
    };
    wait_for(
        "every member's last push heard",
        std::time::Duration::from_secs(10),
        || behind(&c).is_empty().then_some(()),
    );
    let before = c.daemon("m3").status().line("last-push").to_string();

    c.daemons[m3].stop();
    write(&c.src, "index.php", "<?php echo 'v3';\n");
    let r = c.sync("-r .");
    assert_eq!(r.code, 0, "{r}");
    // A member answers a push before its loop records it as its last push.
    let now = wait_for(
        "m1 to record the push as its last",
        std::time::Duration::from_secs(5),
        || {
            let now = c.daemon("m1").status().line("last-push").to_string();
            (now != before).then_some(now)
        },
    );
    c.daemons[m3].start();
    let lines = wait_for(
        "m1's status to name m3 behind",
        std::time::Duration::from_secs(20),
        || {
            let b = behind(&c);
            (!b.is_empty()).then_some(b)
        },
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    let id = now.split_whitespace().nth(1).unwrap().to_string();
    let old = before.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        lines[0].starts_with(&format!("behind m3 missed={id} "))
            && lines[0].ends_with(&format!(" last={old}")),
        "{lines:?} (now {now}, m3 had {before})"
    );
    let st = c.daemon("m1").status();
    assert!(
        st.lines
            .iter()
            .any(|l| l.starts_with("behind-fix ") && l.contains("makuo sync -t NAME")),
        "{:?}",
        st.lines
    );
    let addr = c.daemon("m1").console_addr();
    let js = makuo(&["status", "--console", &addr, "--json"]);
    assert_eq!(js.code, 0, "{js}");
    assert_eq!(js.json()["behind"][0]["name"], "m3", "{js}");
    assert_eq!(js.json()["behind"][0]["missed"], id.as_str(), "{js}");

    // The fix the status names: the push again, to m3.
    let r = c.sync("-t m3 -r .");
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    wait_for("nobody behind", std::time::Duration::from_secs(20), || {
        behind(&c).is_empty().then_some(())
    });
}
