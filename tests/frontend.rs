//! The front end and console say what happened (issue 14): `check` compares the whole base,
//! a daemon targets only receivers, standing excludes, unreadable sources, `--timeout`
//! against a stopped daemon, `-q`, `skipping directory`, odd names escaped.
//!
//! Clusters of loopback daemons from `common`; each test its own group and port.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The `PATH MEMBER` lines of a check's stdout (the table and its header left out).
fn check_lines(r: &Run, members: &[&str]) -> Vec<String> {
    r.stdout
        .lines()
        .filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() >= 2 && members.contains(&w[1]) && !w[0].eq("MEMBER")
        })
        .map(str::to_string)
        .collect()
}

/// `makuo check` with no flag and no PATH compares the whole base: a corrupted file, a file
/// missing on a member and a file only on a member are each listed as `PATH MEMBER`, exit
/// 23; `-v` says which of the three. The console's `md5` (no words) does the same.
#[test]
fn check_without_path_compares_the_whole_base() {
    let mut c = Cluster::start(2);
    c.initial_sync();
    let r = c.check("");
    assert_eq!(r.code, 0, "identical trees: {r}");
    // Same size, other contents: only a checksum tells.
    write(c.base("m1"), "lib/util.php", "<?php function g() {}\n");
    write(c.base("m2"), "sub/deep/only-here.txt", "stray\n");
    fs::remove_file(c.base("m2").join("many/f03.txt")).unwrap();

    let r = c.check("");
    assert_eq!(r.code, 23, "{r}");
    let mut got = check_lines(&r, &["m1", "m2"]);
    got.sort();
    assert_eq!(
        got,
        [
            "lib/util.php m1",
            "many/f03.txt m2",
            "sub/deep/only-here.txt m2"
        ],
        "{r}"
    );

    let r = c.check("-v");
    assert_eq!(r.code, 23, "{r}");
    for want in [
        "lib/util.php m1 (content differs)",
        "many/f03.txt m2 (missing on member)",
        "sub/deep/only-here.txt m2 (only on member)",
    ] {
        assert!(r.stdout.lines().any(|l| l == want), "no {want:?} in:\n{r}");
    }

    // The console's md5 with no words, from a daemon whose base is the source.
    let src = c.src.clone();
    let s = c.add_sender("s1", &src, &[]);
    c.wait_converged(s);
    let (lines, last) = c.daemon("s1").cmd("md5");
    assert_eq!(last, "error: 3 differ", "{lines:?}");
    for want in [
        "lib/util.php m1",
        "many/f03.txt m2",
        "sub/deep/only-here.txt m2",
    ] {
        assert!(lines.iter().any(|l| l == want), "no {want:?} in {lines:?}");
    }
}

/// A front end's direct-mode sender (`HOST-sync`) and a `-r` daemon announce that they do not
/// receive: a daemon never remembers them as targets, so a console push after both reports
/// only the receivers and exits 0. `members --forget NAME` drops a remembered member.
#[test]
fn daemon_targets_only_receivers_and_forgets_on_request() {
    let mut c = Cluster::start(2);
    let r1base = c.path("r1base");
    fs::create_dir(&r1base).unwrap();
    let r = c.add_sender("r1", &r1base, &["-r"]);
    c.wait_converged(r);
    c.initial_sync();
    // Long enough for the daemons' periodic remembering (every 5 s) to see r1.
    std::thread::sleep(Duration::from_secs(6));
    let r = c.daemon("m1").sync(&[]);
    assert_eq!(r.code, 0, "{r}");
    let rows = r.table(1);
    assert_eq!(rows[0].name, "m2", "{r}");
    assert_eq!(rows[0].result, "ok", "{r}");

    // A receiver that went away is named failed until it is forgotten.
    c.daemons
        .iter_mut()
        .find(|d| d.name == "m2")
        .unwrap()
        .stop();
    let console = c.daemon("m1").console_addr();
    std::thread::sleep(Duration::from_millis(300));
    // No receiver is live now (exit 10), and the remembered m2 is named failed.
    let r = c.daemon("m1").sync(&[]);
    assert_eq!(r.code, 10, "{r}");
    assert!(r.result_of("m2").starts_with("failed"), "{r}");
    let f = via(&console, "members", "--forget m2");
    assert_eq!(f.code, 0, "{f}");
    let f = via(&console, "members", "--forget nosuch");
    assert_eq!(f.code, 1, "{f}");
    assert!(f.stderr.contains("nosuch is not remembered"), "{f}");
    let r = c.daemon("m1").sync(&[]);
    assert_eq!(r.code, 10, "{r}");
    assert!(!r.stdout.contains("m2"), "m2 was forgotten:\n{r}");
}

/// `makuo exclude add '*.tmp'` is the daemon's standing rule: `exclude list` shows it,
/// `status` shows it, it survives a restart, and a push through the daemon skips `*.tmp`.
#[test]
fn standing_excludes_are_kept_and_applied() {
    let mut c = Cluster::start(2);
    let m1 = c.daemon("m1").console_addr();
    let r = via(&m1, "exclude", "add *.tmp");
    assert_eq!(r.code, 0, "{r}");
    let r = via(&m1, "exclude", "list");
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.lines().any(|l| l == "exclude *.tmp"), "{r}");
    let st = c.daemon("m1").cmd("status").0;
    assert!(st.iter().any(|l| l == "standing-exclude *.tmp"), "{st:?}");

    // Kept in the state dir: a restart keeps it.
    {
        let d = c.daemons.iter_mut().find(|d| d.name == "m1").unwrap();
        d.stop();
        d.start();
    }
    let r = via(&m1, "exclude", "list");
    assert!(r.stdout.lines().any(|l| l == "exclude *.tmp"), "{r}");
    c.wait_converged(0);

    write(c.base("m1"), "keep.txt", "keep\n");
    write(c.base("m1"), "scratch.tmp", "scratch\n");
    write(c.base("m1"), "d/more.tmp", "scratch\n");
    let r = c.daemon("m1").sync(&[]);
    assert_eq!(r.code, 0, "{r}");
    assert!(c.base("m2").join("keep.txt").exists());
    assert!(!c.base("m2").join("scratch.tmp").exists(), "{r}");
    assert!(!c.base("m2").join("d/more.tmp").exists(), "{r}");

    let r = via(&m1, "exclude", "del *.tmp");
    assert_eq!(r.code, 0, "{r}");
    let r = via(&m1, "exclude", "list");
    assert!(r.stdout.trim().is_empty(), "{r}");
    let r = c.daemon("m1").sync(&[]);
    assert_eq!(r.code, 0, "{r}");
    assert!(c.base("m2").join("scratch.tmp").exists(), "{r}");
}

/// A source file the sender may not read: `PATH: Permission denied`, the rest arrives, exit
/// 23, and `--delete` deletes nothing in that push (the member's copy stays). Root reads
/// everything, so the front end runs as nobody, on a tree (and key) nobody owns.
#[test]
fn unreadable_source_is_permission_denied_and_the_rest_arrives() {
    if !root_or_skip("unreadable_source", "running the front end as another user") {
        return;
    }
    let c = Cluster::start(1);
    c.initial_sync();
    let tmp = c.path("");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
    let key = c.path("nobody.key");
    fs::copy(c.key.as_ref().unwrap(), &key).unwrap();
    write(&c.src, "new.txt", "new\n");
    write(&c.src, "secret.txt", "secret\n");
    sh(&["chown", "-R", "65534:65534", c.src.to_str().unwrap()]);
    sh(&["chown", "65534:65534", key.to_str().unwrap()]);
    fs::set_permissions(c.src.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    // The member has an older copy: --delete must not remove it.
    write(c.base("m1"), "secret.txt", "old\n");

    for args in [&["-r", "--delete", "."][..], &["-r", "-c", "."][..]] {
        let mut a: Vec<String> = vec!["sync".into(), "--direct".into(), "-b".into()];
        a.push(c.src.to_string_lossy().into_owned());
        a.extend(c.net());
        a.extend(["-k".into(), key.to_string_lossy().into_owned()]);
        a.extend(args.iter().map(|s| s.to_string()));
        let mut cmd = Command::new(EXE);
        cmd.args(&a);
        let r = run(as_user(&mut cmd, 65534, 65534), RUN_LIMIT);
        assert_eq!(r.code, 23, "{args:?}: {r}");
        assert!(
            r.stderr.contains("secret.txt: Permission denied"),
            "{args:?}: {r}"
        );
        assert!(!r.stderr.contains("vanished"), "{args:?}: {r}");
        assert_eq!(
            fs::read_to_string(c.base("m1").join("new.txt")).unwrap(),
            "new\n"
        );
        assert_eq!(
            fs::read_to_string(c.base("m1").join("secret.txt")).unwrap(),
            "old\n",
            "{args:?}: the unreadable file's copy must stay"
        );
    }
}

/// `--timeout 3` against a daemon that stopped (SIGSTOP) ends with exit 30 well within 10 s;
/// without `--timeout` the front end says after 5 s that it is still waiting, and for what.
#[test]
fn timeout_against_a_stopped_daemon_exits_30() {
    let c = Cluster::start(1);
    let d = c.daemon("m1");
    let console = d.console_addr();
    d.signal(libc::SIGSTOP);
    let t = Instant::now();
    let r = makuo(&["sync", "--console", &console, "--timeout", "3", "-r", "."]);
    assert_eq!(r.code, 30, "{r}");
    assert!(t.elapsed() < Duration::from_secs(10), "{r}");
    assert!(r.stderr.contains("said nothing for 3s"), "{r}");

    let mut child = Command::new(EXE)
        .args(["sync", "--console", &console, "-r", "."])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(7));
    d.signal(libc::SIGCONT);
    wait_for("front end ends", Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_))).then_some(())
    });
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        err.contains(&format!("still waiting for the daemon on {console}")),
        "{err}"
    );
}

/// `sync -r -q` prints nothing on success; `sync DIR` without `-r` says `skipping directory
/// DIR` (rsync's words) and neither creates nor, with `--delete`, empties DIR on a member.
#[test]
fn quiet_prints_nothing_and_directories_need_r() {
    let c = Cluster::start(1);
    let r = c.sync("-r -q .");
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.stdout, "", "{r}");
    assert_eq!(r.stderr, "", "{r}");
    c.assert_all_identical();

    write(&c.src, "lib/new.php", "new\n");
    let r = c.sync("--delete lib a.txt");
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stderr.lines().any(|l| l == "skipping directory lib"),
        "{r}"
    );
    assert!(!c.base("m1").join("lib/new.php").exists());
    assert!(
        c.base("m1").join("lib/util.php").exists(),
        "--delete emptied lib"
    );
    let r = c.sync("--delete .");
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.lines().any(|l| l == "skipping directory ."), "{r}");
    assert!(
        c.base("m1").join("index.php").exists(),
        "--delete emptied the base"
    );
}

/// A name holding a newline is one line of `-n` output, the newline written `\#012`.
#[test]
fn newline_in_a_name_is_escaped_in_dry_run_output() {
    let c = Cluster::start(1);
    c.initial_sync();
    write(&c.src, "odd\nname.txt", "x\n");
    let r = c.sync("-n -r .");
    assert_eq!(r.code, 0, "{r}");
    let hits: Vec<&str> = r.stdout.lines().filter(|l| l.contains("odd")).collect();
    assert_eq!(hits.len(), 1, "{r}");
    assert!(hits[0].contains("odd\\#012name.txt"), "{r}");
    assert!(hits[0].starts_with(">f+++++++++ "), "{r}");
}

/// `members` and `status`: a header, this node first then by name, human times; `--json`
/// gives one document of objects; a usage error with `--json` is a JSON document too.
#[test]
fn members_and_status_have_headers_and_json_objects() {
    let c = Cluster::start(2);
    c.initial_sync();
    let m1 = c.daemon("m1").console_addr();
    let r = via(&m1, "members", "");
    assert_eq!(r.code, 0, "{r}");
    let lines = r.lines();
    assert!(
        lines[0].starts_with("MEMBER ") && lines[0].contains("LAST PUSH"),
        "{r}"
    );
    assert!(
        lines[1].starts_with("m1 ") && lines[1].contains(" self "),
        "{r}"
    );
    assert!(
        lines[2].starts_with("m2 ") && lines[2].contains(" live "),
        "{r}"
    );
    assert!(lines[1].contains("ago from "), "a human time: {r}");

    let r = via(&m1, "members", "--json");
    assert_eq!(r.code, 0, "{r}");
    let j = r.json();
    let ms = j["members"].as_array().expect("members[]");
    assert_eq!(ms.len(), 2, "{j}");
    assert_eq!(ms[0]["name"], "m1", "{j}");
    assert_eq!(ms[0]["state"], "self", "{j}");
    assert_eq!(ms[1]["name"], "m2", "{j}");
    assert!(ms[0]["last_push"]["time"].as_u64().unwrap() > 0, "{j}");
    assert!(ms[0]["last_push"]["digest"].is_string(), "{j}");

    let r = via(&m1, "status", "--json");
    assert_eq!(r.code, 0, "{r}");
    let j = r.json();
    assert!(j["pid"].as_u64().unwrap() > 0, "{j}");
    assert!(j["base"].as_str().unwrap().ends_with("m1/base"), "{j}");
    assert!(j["uptime_secs"].is_u64(), "{j}");
    assert!(j["version"].is_string(), "{j}");
    assert!(j["transfers"]["sending"].is_u64(), "{j}");
    assert!(j["counters"].is_object(), "{j}");
    let r = via(&m1, "status", "");
    assert!(r.lines()[0].starts_with("makuo daemon m1 (pid "), "{r}");

    let r = makuo(&["sync", "--json", "--no-such-flag"]);
    assert_eq!(r.code, 1, "{r}");
    let j = r.json();
    assert_eq!(j["exit"], 1, "{j}");
    assert!(
        j["error"].as_str().unwrap().contains("--no-such-flag"),
        "{j}"
    );
}

/// `makuo help [CMD]` is `makuo [CMD] --help`; the completions never offer the hidden
/// `generate`.
#[test]
fn help_command_and_completions() {
    let r = makuo(&["help", "sync"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.starts_with("Push paths to every member"), "{r}");
    let r = makuo(&["help", "exclude", "add"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("standing exclude list"), "{r}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    for f in ["makuo.bash", "_makuo", "makuo.fish"] {
        let text = fs::read_to_string(root.join(f)).unwrap();
        assert!(
            !text
                .lines()
                .any(|l| l.contains("generate") && !l.contains("generated tree")),
            "{f} offers generate"
        );
    }
}

/// The table counts deletions (rsync's `deleting` lines) in its DELETED column; a dry run is
/// marked `(dry run)` in every row, and neither the front end (`-v`) nor the console ever
/// says `committing` for one.
#[test]
fn dry_run_is_marked_and_deletions_are_counted() {
    let mut c = Cluster::start(1);
    c.initial_sync();
    write(c.base("m1"), "gone1.txt", "x\n");
    write(c.base("m1"), "sub/gone2.txt", "y\n");
    write(&c.src, "a.txt", "changed, longer\n");
    let before = c.snapshots();

    let r = c.sync("-r -n -v --delete .");
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(c.snapshots(), before, "-n changed a member");
    let rows = r.table(1);
    assert_eq!(rows[0].result, "ok (dry run)", "{r}");
    assert_eq!(rows[0].deleted, 2, "{r}");
    assert!(rows[0].files >= 1, "{r}");
    assert!(!r.stderr.contains("committing"), "{r}");
    assert!(r.stderr.contains("(dry run)"), "{r}");

    // The console: progress lines, the table and the final `ok`, never `committing`.
    let src = c.src.clone();
    let s = c.add_sender("s1", &src, &["-r"]);
    c.wait_converged(s);
    let (lines, last) = c.daemon("s1").cmd("sync -n -r");
    assert_eq!(last, "ok", "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("committing")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("m1 ") && l.ends_with("ok (dry run)")),
        "{lines:?}"
    );
    assert_eq!(c.snapshots(), before, "console -n changed a member");

    // The real run deletes both, says so, and is not marked.
    let r = c.sync("-r --delete .");
    assert_eq!(r.code, 0, "{r}");
    let rows = r.table(1);
    assert_eq!((rows[0].deleted, rows[0].result.as_str()), (2, "ok"), "{r}");
    assert!(!c.base("m1").join("gone1.txt").exists());
}

/// `-v` lists every path sent or deleted, rsync-style (`deleting PATH`), directly and through
/// the daemon; unchanged paths are not listed.
#[test]
fn verbose_lists_every_path_sent_or_deleted() {
    let mut c = Cluster::start(1);
    c.initial_sync();
    let src = c.src.clone();
    let s = c.add_sender("s1", &src, &["-r"]);
    c.wait_converged(s);

    write(&c.src, "new.txt", "new\n");
    write(&c.src, "lib/util.php", "<?php function f() { return 1; }\n");
    write(c.base("m1"), "old.txt", "old\n");
    let r = c.sync("-r -v --delete .");
    assert_eq!(r.code, 0, "{r}");
    let out = r.lines();
    for want in ["new.txt", "lib/util.php", "deleting old.txt"] {
        assert!(out.contains(&want), "no {want:?} in:\n{r}");
    }
    assert!(
        !out.contains(&"index.php"),
        "an unchanged path listed:\n{r}"
    );
    c.assert_all_identical();

    // Through the daemon.
    write(&c.src, "new2.txt", "new2\n");
    write(c.base("m1"), "old2.txt", "old\n");
    let r = c.daemon("s1").sync(&["-v", "--delete"]);
    assert_eq!(r.code, 0, "{r}");
    let out = r.lines();
    for want in ["new2.txt", "deleting old2.txt"] {
        assert!(out.contains(&want), "no {want:?} in:\n{r}");
    }
    assert!(!out.contains(&"new.txt"), "an unchanged path listed:\n{r}");
}

/// What `rsync -ani --delete SRC/ DST/` says it would do: lines with their whitespace
/// squeezed (rsync pads `*deleting`), sorted; `None` without rsync.
fn rsync_would(src: &std::path::Path, dst: &std::path::Path) -> Option<Vec<String>> {
    let out = match Command::new("rsync")
        .args(["-ani", "--delete"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dst.display()))
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("running rsync: {e}"),
    };
    assert!(out.status.success(), "rsync: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    // The base directory's own attributes (time included) are the operator's: makuo never
    // sets them, where rsync itemizes `./`.
    Some(squeezed(
        &text
            .lines()
            .filter(|l| !l.ends_with(" ./"))
            .collect::<Vec<_>>(),
    ))
}

fn squeezed(lines: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    v.sort();
    v
}

/// Directory mtimes are synced, and makuo itemizes as `rsync -ani` does on the same trees:
/// `.d..t......` (a directory's time), `.d...p.....` (its mode alone), `>f+++++++++`,
/// `cd+++++++++`, `>f.st......`, `>f..t......`, `.f...p.....`, `cL+++++++++ L -> T`,
/// `*deleting`; the real run's `-i` lines are the same, and afterwards rsync finds nothing
/// left to do (directory times included). The base's own `./` line is left out: its
/// attributes are the operator's, never a push's.
#[test]
fn itemized_changes_match_rsync_and_directory_times_are_synced() {
    let c = Cluster::start(1);
    c.initial_sync();
    let s = c.src.clone();
    let m = c.base("m1").to_path_buf();
    let Some(none) = rsync_would(&s, &m) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "rsync is the oracle here: install it"
        );
        eprintln!("skipping: rsync not found");
        return;
    };
    // After a push, rsync sees nothing to do: directory times arrived too.
    let mt = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(p).unwrap();
        (m.mtime(), m.mtime_nsec())
    };
    assert_eq!(
        none,
        Vec::<String>::new(),
        "rsync would still change (src {:?}, m1 {:?}):\n{}",
        mt(&s),
        mt(&m),
        c.daemon("m1").log_text()
    );

    // One change of each kind.
    write(&s, "new.txt", "new\n");
    write(&s, "newdir/x.txt", "x\n");
    write(&s, "a.txt", "hello, longer\n");
    write(&s, "index.php", "<?php echo 'HELLO';\n");
    fs::set_permissions(s.join("lib/notes.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(s.join("many"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("a.txt", s.join("ln")).unwrap();
    write(&m, "extra.txt", "only on the member\n");
    // rsync compares whole seconds: the rewritten files get other seconds.
    set_mtime(&s.join("a.txt"), 1_200_000_000, 0);
    set_mtime(&s.join("index.php"), 1_200_000_000, 0);
    set_mtime(&s.join("lib"), 1_000_000_000, 0);
    set_mtime(&s.join("sub/deep"), 1_100_000_000, 500);

    let theirs = rsync_would(&s, &m).unwrap();
    for code in [
        ".d..t...... lib/",
        ".d..t...... sub/deep/",
        ".d...p..... many/",
        ">f+++++++++ new.txt",
        "cd+++++++++ newdir/",
        ">f.st...... a.txt",
        ">f..t...... index.php",
        ".f...p..... lib/notes.txt",
        "cL+++++++++ ln -> a.txt",
        "*deleting extra.txt",
    ] {
        assert!(
            theirs.iter().any(|l| l == code),
            "rsync: no {code:?} in {theirs:?}"
        );
    }
    let r = c.sync("-r -n --delete .");
    assert_eq!(r.code, 0, "{r}");
    let ours = squeezed(&r.before_table(1));
    assert_eq!(ours, theirs, "makuo -n (left) and rsync -ani (right)");

    let r = c.sync("-r -i --delete .");
    assert_eq!(r.code, 0, "{r}");
    let ours = squeezed(&r.before_table(1));
    assert_eq!(ours, theirs, "makuo -i (left) and rsync -ani (right)");
    assert_eq!(
        rsync_would(&s, &m).unwrap(),
        Vec::<String>::new(),
        "after the push (src {:?}, m1 {:?}):\n{r}\n{}",
        mt(&s),
        mt(&m),
        c.daemon("m1").log_text()
    );
}

/// `--progress` on a terminal draws a bar (bytes of the total, rate, ETA, the file going out)
/// in direct mode and through the daemon (its `progress DONE TOTAL PATH` lines); when stderr
/// is not a terminal nothing is drawn.
#[test]
fn progress_bar_on_a_terminal_directly_and_through_the_daemon() {
    let mut c = Cluster::start(1);
    c.initial_sync();
    write_big(&c.src.join("big1.bin"), 4 << 20);
    // 2 MiB/s: the 4 MiB take about two seconds.
    let mut args: Vec<String> = ["sync", "--direct", "-b"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(c.src.to_string_lossy().into_owned());
    args.extend(c.net());
    args.extend(c.key_args());
    args.extend(
        [
            "-r",
            "--progress",
            "--bwlimit",
            "2M",
            "--min-rate",
            "0",
            ".",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let Some(r) = makuo_on_a_terminal(&args, Duration::from_secs(60)) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "script(1) gives this test its terminal: install util-linux"
        );
        eprintln!("skipping: no script(1)");
        return;
    };
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("ETA"), "no bar on the terminal:\n{r}");
    assert!(r.stdout.contains("big1.bin"), "the bar names no file:\n{r}");
    assert!(r.stdout.contains("MiB"), "no byte counts:\n{r}");
    c.assert_all_identical();

    // Not a terminal: nothing drawn.
    write_big(&c.src.join("big2.bin"), 1 << 20);
    let r = c.sync("-r --progress .");
    assert_eq!(r.code, 0, "{r}");
    assert!(
        !r.stderr.contains("ETA") && !r.stdout.contains("ETA"),
        "{r}"
    );

    // Through a daemon (sending only, its rate capped at 16 Mbit/s).
    let src = c.src.clone();
    let s = c.add_sender("s1", &src, &["-r", "-T", "16", "--min-rate", "0"]);
    c.wait_converged(s);
    write_big(&c.src.join("big3.bin"), 4 << 20);
    let console = c.daemon("s1").console_addr();
    let args: Vec<String> = ["sync", "--console", &console, "-r", "--progress", "."]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let r = makuo_on_a_terminal(&args, Duration::from_secs(60)).unwrap();
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("ETA"), "no bar through the daemon:\n{r}");
    assert!(r.stdout.contains("big3.bin"), "the bar names no file:\n{r}");
    assert!(
        !r.stdout.contains("progress "),
        "raw progress lines shown:\n{r}"
    );
    c.assert_all_identical();
}

/// Bash completion of `makuo sync -t ` offers the member names a live daemon lists.
#[test]
fn bash_completes_member_names_from_a_live_daemon() {
    let c = Cluster::start(2);
    c.wait_converged(0);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/makuo.bash");
    let bin = std::path::Path::new(EXE).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let line = format!(
        "source '{}'; COMP_WORDS=(makuo sync -t ''); COMP_CWORD=3; COMP_LINE='makuo sync -t '; \
         COMP_POINT=${{#COMP_LINE}}; _makuo makuo '' -t; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let r = run(
        Command::new("bash")
            .args(["-c", &line])
            .env("PATH", path)
            .env("MAKUO_CONSOLE", c.daemon("m1").console_addr()),
        Duration::from_secs(30),
    );
    assert_eq!(r.code, 0, "{r}");
    let mut got: Vec<&str> = r.stdout.lines().collect();
    got.sort();
    assert_eq!(got, ["m1", "m2"], "{r}");
}

/// `status` has no direct mode and walks no tree: it lists and takes only the console and
/// output options; `members` does not list the base or state directory it ignores.
#[test]
fn members_and_status_take_only_options_they_use() {
    let r = makuo(&["status", "--help"]);
    assert_eq!(r.code, 0, "{r}");
    for ignored in ["--direct", "--base", "--group", "--discover", "--state-dir"] {
        assert!(!r.stdout.contains(ignored), "status lists {ignored}:\n{r}");
    }
    assert!(
        r.stdout.contains("--console") && r.stdout.contains("--json"),
        "{r}"
    );
    let r = makuo(&["status", "--direct"]);
    assert_eq!(r.code, 1, "{r}");
    let r = makuo(&["status", "-b", "/tmp"]);
    assert_eq!(r.code, 1, "{r}");
    // members does not list what it ignores (scripts passing -b still work).
    let r = makuo(&["members", "--help"]);
    assert_eq!(r.code, 0, "{r}");
    for ignored in ["--base <DIR>", "--state-dir <DIR>"] {
        assert!(!r.stdout.contains(ignored), "members lists {ignored}:\n{r}");
    }
    assert!(
        r.stdout.contains("--discover") && r.stdout.contains("--group"),
        "{r}"
    );
}

/// A sender whose key cannot open the members' datagrams (or that has none) hears no member:
/// its `no member answered` says how many datagrams from which host it could not open (key
/// mismatch?), and the member logs a line naming the sender.
#[test]
fn a_key_mismatch_is_named_not_just_no_member_answered() {
    let c = Cluster::start(1);
    let other = c.keygen("other.key");
    let src = c.src.clone();
    let r = c.direct_keys(&src, &[other.as_path()], "sync", &["-r", "."]);
    assert_eq!(r.code, 10, "{r}");
    assert!(
        r.stderr.contains("no member answered") && r.stderr.contains("from 127.0.0.1"),
        "{r}"
    );
    assert!(r.stderr.contains("key mismatch?"), "{r}");

    // Unkeyed against a keyed member.
    let r = c.direct_keys(&src, &[], "sync", &["-r", "."]);
    assert_eq!(r.code, 10, "{r}");
    assert!(
        r.stderr
            .contains("arrived sealed and this node has no key: key mismatch?"),
        "{r}"
    );

    // The member said so in its log, naming the source.
    let log = wait_for(
        "the member to log the mismatch",
        Duration::from_secs(5),
        || {
            let l = c.daemon("m1").log_text();
            l.contains("could not be opened").then_some(l)
        },
    );
    assert!(
        log.lines()
            .any(|l| l.contains("could not be opened") && l.contains("from 127.0.0.1:")),
        "{log}"
    );
}
