//! The makuosan and msync front doors (issue 15): symlinks named `makuosan` and `msync` to
//! the real binary, and every row of docs/makuosan-migration.md checked against what the
//! binary does.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use makuo::dropin::{front_door, Door};

/// A symlink `NAME` to the binary under test, in `dir`.
fn link(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::os::unix::fs::symlink(EXE, &p).unwrap();
    p
}

#[test]
fn msync_lists_the_members_and_pushes_the_whole_base() {
    let mut c = Cluster::new();
    small_site(&c.src);
    let s = c.add_sender("s", &c.src.clone(), &FAST);
    c.add("m1", &["--no-fsync"]);
    c.add("m2", &["--no-fsync"]);
    c.wait_converged(s);
    let msync = link(c.tmp.path(), "msync");
    let target = format!("tcp:127.0.0.1:{}", c.daemons[s].console);
    let r = run(
        Command::new(&msync).args(["-c", &target, "--members"]),
        RUN_LIMIT,
    );
    assert_eq!(r.code, 0, "{r}");
    for m in ["s", "m1", "m2"] {
        assert!(
            r.stdout.lines().any(|l| l.starts_with(&format!("{m} "))),
            "{m}: {r}"
        );
    }
    let r = run(Command::new(&msync).args(["-c", &target, "-r"]), RUN_LIMIT);
    assert_eq!(r.code, 0, "{r}");
    for d in c.receivers() {
        assert_identical(&c.src, &d.base, &d.name);
    }
    // MSYNC_TARGET instead of -c.
    let r = run(
        Command::new(&msync)
            .arg("--status")
            .env("MSYNC_TARGET", &target),
        RUN_LIMIT,
    );
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("name s"), "{r}");
    // -f: console words from a file; a failing line makes the exit status 1.
    let script = c.path("cmds.txt");
    fs::write(&script, "alive\nmembers\nno-such-word\n").unwrap();
    let r = run(
        Command::new(&msync)
            .args(["-c", &target, "-f"])
            .arg(&script),
        RUN_LIMIT,
    );
    assert!(r.stdout.contains("alive"), "{r}");
    // An unknown word ends the session (the console is strict), so msync fails.
    assert_eq!(r.code, 1, "{r}");
    // msync never falls back to direct mode: no daemon, exit 1.
    let r = run(
        Command::new(&msync).args(["-c", &format!("tcp:127.0.0.1:{}", free_tcp_port()), "-r"]),
        RUN_LIMIT,
    );
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("no daemon answers"), "{r}");
}

#[test]
fn makuosan_runs_the_daemon_with_makuosans_letters() {
    let mut c = Cluster::new();
    small_site(&c.src);
    let makuosan = link(c.tmp.path(), "makuosan");
    let key = c.key.clone().unwrap();
    let daemon = |name: &str, extra: &[&str]| {
        let mut d = c.daemon_on_loopback(name, &[]);
        // makuosan's own spelling only: -p also moves the console (no -P), -l is its address.
        let mut args: Vec<String> = [
            "-n",
            "-b",
            &d.base.to_string_lossy(),
            "-m",
            &c.group,
            "-p",
            &c.port.to_string(),
            "-l",
            "127.0.0.1",
            "-d",
            "2",
            "-k",
            &key.to_string_lossy(),
            "-f",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(
            [
                "-i",
                "127.0.0.1",
                "--name",
                name,
                "--state-dir",
                &d.state.to_string_lossy(),
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        d.args = args;
        d.program = Some(makuosan.clone());
        d.console = c.port;
        d
    };
    let mk = daemon("mk", &[]);
    // -o: no console at all, yet it receives.
    let mut quiet = daemon("mk-o", &["-o"]);
    let i = c.push_daemon(mk);
    quiet.spawn();
    wait_for("mk-o to join", Duration::from_secs(10), || {
        c.daemons[i]
            .live_members()
            .contains(&"mk-o".to_string())
            .then_some(())
    });
    let r = c.sync("-r .");
    assert_eq!(r.code, 0, "{r}");
    assert_identical(&c.src, &c.daemons[i].base, "mk");
    assert_identical(&c.src, &quiet.base, "mk-o");
    assert!(
        quiet.log_text().contains("console off (-o)"),
        "{}",
        quiet.log_text()
    );
    let log = c.daemons[i].log_text();
    assert!(
        log.contains(&format!("console 127.0.0.1:{}", c.port)),
        "{log}"
    );
    // With no argument at all makuosan prints its usage and exits 0.
    let r = run(&mut Command::new(&makuosan), RUN_LIMIT);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("--owner-match"), "{r}");
    quiet.stop();
}

#[test]
fn owner_match_sends_only_what_the_daemons_user_owns() {
    if !root_or_skip(
        "owner_match_sends_only_what_the_daemons_user_owns",
        "chown a source file to another user",
    ) {
        return;
    }
    let mut c = Cluster::new();
    small_site(&c.src);
    let theirs = c.src.join("lib/notes.txt");
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let s = c.add_sender("s", &c.src.clone(), &["-O"]);
    let m = c.add("m1", &["--no-fsync"]);
    c.wait_converged(s);
    // A copy the member already has is not deleted by a sync that left it out.
    write(&c.daemons[m].base, "lib/notes.txt", "the member's own\n");
    let r = c.daemons[s].sync(&["--delete", "-v"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("skipping lib/notes.txt: owner unmatch"),
        "{r}"
    );
    assert_eq!(
        fs::read_to_string(c.daemons[m].base.join("lib/notes.txt")).unwrap(),
        "the member's own\n"
    );
    assert!(c.daemons[m].base.join("lib/util.php").exists());
}

/// The rows of each `##` section's table: section title -> rows of cells (backticks kept).
fn tables(doc: &str) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut out: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in doc.lines() {
        if let Some(t) = line.strip_prefix("## ") {
            section = t.trim().to_string();
            continue;
        }
        if !line.starts_with('|') || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_string())
            .collect();
        if cells[0] == "makuosan" || cells[0] == "msync" {
            continue;
        }
        out.entry(section.clone()).or_default().push(cells);
    }
    out
}

/// The first `code span` of a cell.
fn code(cell: &str) -> &str {
    cell.split('`').nth(1).unwrap_or(cell)
}

/// A value that each makuosan flag accepts.
fn sample(letter: char) -> &'static str {
    match letter {
        'b' => "/srv/www",
        'm' => "239.1.2.3",
        'p' | 'f' | 'd' | 'R' | 'S' | 'T' => "3",
        'l' => "127.0.0.2",
        'U' => "/run/makuo.sock",
        'K' | 'k' => "/etc/makuo/file",
        'u' => "nobody",
        'g' => "nogroup",
        'G' => "1,2",
        _ => "",
    }
}

#[test]
fn every_row_of_the_migration_table_holds() {
    let doc = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/makuosan-migration.md"
    ))
    .unwrap();
    let t = tables(&doc);
    let tmp = tempfile::tempdir().unwrap();
    let makuosan = link(tmp.path(), "makuosan");
    let print = |cmd: &mut Command| {
        let r = run(
            cmd.args(["--config", "/dev/null", "--print-config"]),
            RUN_LIMIT,
        );
        assert_eq!(r.code, 0, "{r}");
        r.stdout
    };
    let line_of = |text: &str, key: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_string()
    };

    let flags = &t["Daemon flags (`makuosan` = `makuo daemon`)"];
    assert_eq!(flags.len(), 21, "every makuosan flag has a row");
    for row in flags {
        let flag = code(&row[0]);
        let letter = flag.chars().nth(1).unwrap();
        let long = code(&row[2]).trim_start_matches("--");
        let mut cmd = Command::new(&makuosan);
        cmd.arg(format!("-{letter}"));
        let v = sample(letter);
        if !v.is_empty() {
            cmd.arg(v);
        }
        let out = print(&mut cmd);
        let key = long.replace('-', "_");
        let l = line_of(&out, &key);
        assert!(l.ends_with("# flag"), "{flag} should set {long}: {l}");
        if !v.is_empty() {
            assert!(l.contains(v.split(',').next().unwrap()), "{flag} {v}: {l}");
        } else {
            assert!(l.starts_with(&format!("{key} = true")), "{flag}: {l}");
        }
    }

    link(tmp.path(), "msync");
    for row in &t["Environment"] {
        let var = code(&row[0]);
        let key = code(&row[2]);
        if var == "MSYNC_TARGET" {
            let free = free_tcp_port();
            let r = run(
                Command::new(tmp.path().join("msync"))
                    .arg("--status")
                    .env("MSYNC_TARGET", format!("tcp:127.0.0.1:{free}")),
                RUN_LIMIT,
            );
            assert!(r.stderr.contains(&format!("127.0.0.1:{free}")), "{r}");
            continue;
        }
        let value = match key {
            "port" => "6100",
            "base" => "/srv/from-env",
            _ => "x1",
        };
        let out = print(Command::new(EXE).arg("daemon").env(var, value));
        let l = line_of(&out, key);
        assert!(l.ends_with(&format!("# environment {var}")), "{var}: {l}");
        assert!(l.contains(value), "{var}: {l}");
    }

    for row in &t["msync"] {
        let flag = code(&row[0]);
        let want: Vec<&str> = code(&row[2]).split_whitespace().collect();
        let mut argv: Vec<OsString> = vec!["msync".into()];
        if !flag.starts_with("-c") {
            argv.extend(["-c".into(), "tcp:h:1".into()]);
        }
        argv.extend(flag.split_whitespace().map(|w| {
            OsString::from(match w {
                "PAT" => "*.swp",
                "FILE" | "SCRIPT" => "f.txt",
                "HOST" => "web1",
                "TARGET" => "tcp:h:2",
                "N" => "3",
                w => w.trim_end_matches(','),
            })
        }));
        match front_door(argv.clone()) {
            Door::Makuo(a) => {
                let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
                assert_eq!(a[1], want[1], "{flag}: {a:?}");
                if let Some(opt) = want.get(2) {
                    assert!(
                        a.iter()
                            .any(|x| x == opt || x.starts_with(&format!("{opt}="))),
                        "{flag} should give {opt}: {a:?}"
                    );
                }
            }
            Door::Script(_) => assert_eq!(flag, "-f SCRIPT"),
            Door::Exit(e) => panic!("{flag}: {argv:?} refused ({e:?})"),
        }
    }

    // Console words: each makuosan command line (optional parts left out) is accepted.
    let mut c = Cluster::new();
    let i = c.add("m", &[]);
    let d = &c.daemons[i];
    for row in &t["Console words (`telnet 127.0.0.1 5000`)"] {
        let spelled = code(&row[0]);
        for form in spelled.split(", ") {
            let form = code(form);
            // Optional parts (`[-t host]`) left out.
            let mut bare = String::new();
            let mut depth = 0;
            for ch in form.chars() {
                match ch {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    c if depth == 0 => bare.push(c),
                    _ => {}
                }
            }
            let words: Vec<&str> = bare
                .split_whitespace()
                .map(|w| match w {
                    "PAT" => "*.tmp",
                    "N" => "2",
                    "WORDS" => "hi",
                    w => w,
                })
                .collect();
            let line = words.join(" ");
            assert_eq!(words[0], code(&row[2]).split_whitespace().next().unwrap());
            let mut con = d.console();
            let (lines, last) = con.cmd(&line);
            let reply = format!("{}\n{last}", lines.join("\n"));
            assert!(
                !reply.contains("not a console command") && !reply.contains("usage"),
                "{line}: {reply}"
            );
            // Sends and checks with no other member fail for want of members, not of words.
            assert!(
                last == "ok" || last.contains("no member") || last.contains("no such pattern"),
                "{line}: {reply}"
            );
        }
    }

    // Signals: USR1/USR2 move the level, PIPE is ignored, HUP reloads, INT and TERM stop.
    let tested = [
        "SIGUSR1", "SIGUSR2", "SIGHUP", "SIGPIPE", "SIGINT", "SIGTERM",
    ];
    for row in &t["Signals"] {
        let cell = if row[0].contains("SIG") {
            &row[0]
        } else {
            &row[2]
        };
        for name in cell.split('`').filter(|w| w.starts_with("SIG")) {
            assert!(
                tested.contains(&name),
                "{name} is in the table but not tested"
            );
        }
    }
    let i = c.add("sig", &[]);
    let d = &c.daemons[i];
    for (sig, want) in [
        (libc::SIGUSR1, "SIGUSR1: log level 3"),
        (libc::SIGUSR2, "SIGUSR2: log level 2"),
        (libc::SIGHUP, "SIGHUP: no config file to reload"),
    ] {
        d.signal(sig);
        wait_for(want, Duration::from_secs(10), || {
            d.log_text().contains(want).then_some(())
        });
    }
    d.signal(libc::SIGPIPE);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(d.cmd("alive").1, "ok");
    for (idx, sig) in [(i, libc::SIGINT), (0, libc::SIGTERM)] {
        let d = &mut c.daemons[idx];
        d.signal(sig);
        let st = d.wait_exit(Duration::from_secs(10)).expect("stops");
        assert_eq!(st.code(), Some(0));
    }
}
