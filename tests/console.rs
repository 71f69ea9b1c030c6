//! The console is root on every member (issue 12): who reaches it, what it accepts, what one
//! connection may cost, and that nothing runs without a key unless asked for.
//!
//! Real daemons on loopback (keyed clusters from `tests/common`), real clients: the `makuo`
//! front end, raw TCP sessions (bash's `/dev/tcp`, so they can run as another user), `curl`
//! when installed, and byte-exact requests from the test itself. Tests that switch users need
//! root (`root_or_skip`); uid 65534 (nobody) is the outsider.
//!
//! - as uid 65534, over TCP (IPv4 and IPv6 loopback) and over the unix socket, `sync -r .` is
//!   refused with `error: permission denied` and nothing changes on any member; as root,
//!   `status` ends in `ok` and the same push goes through;
//! - an HTTP request (curl's bytes) runs nothing, even as root: the session ends at its first
//!   line, the trees and last pushes stay, the daemon counts and logs it;
//! - members of `--console-group` (primary group, supplementary group, over TCP and over a
//!   group-owned unix socket) are let in, other users are not;
//! - `makuo daemon` (and direct mode) without `-k` and without `--insecure` exits 1 at once,
//!   naming both `makuo keygen` and `--insecure`;
//! - `-K`: an empty or group-readable file is refused at start, a console bound beyond
//!   loopback needs it, three wrong tries close the connection with growing delays, a remote
//!   peer (another network namespace) gets in only with the password;
//! - an over-long line and a 17th session are turned away.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A keyed cluster of two receivers that already hold the site, a sending daemon on `src`
/// (with `extra` flags), and a changed source: a `sync -r --delete .` through the sender would
/// add, change and delete files on every receiver. Returns the cluster and the sender's index.
fn cluster_with_pending_changes(extra: &[&str]) -> (Cluster, usize) {
    let mut c = Cluster::start(2);
    c.initial_sync();
    let src = c.src.clone();
    let mut flags = vec!["--no-fsync"];
    flags.extend_from_slice(extra);
    let s = c.add_sender("sender", &src, &flags);
    c.wait_converged(s);
    write(&c.src, "new.txt", "new\n");
    write(&c.src, "a.txt", "changed by the attacker\n");
    fs::remove_file(c.src.join("lib/notes.txt")).unwrap();
    (c, s)
}

/// Each receiver's tree and last push.
fn state_of(c: &Cluster) -> Vec<(Tree, String)> {
    c.receivers()
        .iter()
        .map(|d| {
            (
                fingerprint(&d.base),
                d.status().line("last-push").to_string(),
            )
        })
        .collect()
}

/// `makuo ARGS` as `uid`:`gid`.
fn makuo_as(uid: u32, gid: u32, args: &[&str]) -> Run {
    run(as_user(Command::new(EXE).args(args), uid, gid), RUN_LIMIT)
}

fn console_count(d: &Daemon, what: &str) -> u64 {
    let s = d.status();
    let line = s.line("console ");
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| *w == what)
        .unwrap_or_else(|| panic!("no {what} in {line:?}"));
    words[i + 1].parse().unwrap()
}

#[test]
fn uid_65534_is_refused_over_tcp_and_the_unix_socket_and_nothing_changes() {
    if !root_or_skip(
        "uid_65534_is_refused_over_tcp_and_the_unix_socket_and_nothing_changes",
        "runs clients as uid 65534",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Reachable for uid 65534 (a temp dir is 0700), so the socket's own mode decides.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("console.sock");
    let sock_arg = sock.to_string_lossy().into_owned();
    let (c, s) = cluster_with_pending_changes(&["-U", &sock_arg]);
    let sender = &c.daemons[s];
    let addr = sender.console_addr();
    let before = state_of(&c);

    // The front end over TCP: the daemon's refusal, exit 1.
    let r = makuo_as(
        NOBODY,
        NOBODY,
        &["sync", "--console", &addr, "-r", "--delete", "."],
    );
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("permission denied"), "{r}");
    // A raw session: exactly one line, then the daemon closes the connection.
    let r = tcp_session_as(
        NOBODY,
        NOBODY,
        "127.0.0.1",
        sender.console,
        "sync -r --delete .\nstatus\n",
    );
    assert_eq!(r.stdout, "error: permission denied\n", "{r}");
    // The unix socket is 0600: the kernel refuses the connection.
    let r = makuo_as(NOBODY, NOBODY, &["sync", "--console", &sock_arg, "-r", "."]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("Permission denied"), "{r}");
    // Even on a socket anyone may connect to, SO_PEERCRED refuses uid 65534.
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o666)).unwrap();
    let r = makuo_as(NOBODY, NOBODY, &["sync", "--console", &sock_arg, "-r", "."]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr
            .contains(&format!("console {sock_arg}: permission denied")),
        "{r}"
    );
    let r = makuo_as(NOBODY, NOBODY, &["status", "--console", &sock_arg]);
    assert_eq!(r.code, 1, "{r}");
    assert!(!r.stdout.contains("name sender"), "{r}");

    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state_of(&c), before, "a refused client changed a member");
    assert!(
        console_count(sender, "refused") >= 4,
        "{:?}",
        sender.status().lines
    );
    assert!(console_count(sender, "sessions") > 0);
    let log = sender.log_text();
    assert!(
        log.contains("permission denied: uid 65534 is not root"),
        "{log}"
    );
    assert!(!log.contains("push "), "a push ran: {log}");

    // Root: status answers and ends in ok, and the same push goes through (so the refusals
    // above were refusals, not a broken setup).
    let st = sender.status();
    assert!(
        st.lines.contains(&"name sender".to_string()),
        "{:?}",
        st.lines
    );
    let r = run(
        Command::new(EXE).args(["sync", "--console", &addr, "-r", "--delete", "."]),
        RUN_LIMIT,
    );
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
    let r = run(
        Command::new(EXE).args(["status", "--console", &sock_arg]),
        RUN_LIMIT,
    );
    assert_eq!(r.code, 0, "{r}");
}

#[test]
fn ipv6_loopback_console_checks_the_owner_too() {
    if TcpStream::connect("[::1]:1")
        .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrNotAvailable)
    {
        eprintln!("SKIPPED ipv6_loopback_console_checks_the_owner_too: no ::1 here");
        return;
    }
    let mut c = Cluster::new();
    let i = c.add("v6", &["--console-addr", "::1"]);
    let d = &c.daemons[i];
    assert_eq!(d.console_addr(), format!("[::1]:{}", d.console));
    let st = d.status();
    assert!(st.lines.contains(&"name v6".to_string()), "{:?}", st.lines);
    let r = run(
        Command::new(EXE).args(["status", "--console", &d.console_addr()]),
        RUN_LIMIT,
    );
    assert_eq!(r.code, 0, "{r}");
    if root_or_skip(
        "ipv6_loopback_console_checks_the_owner_too (uid 65534 part)",
        "runs a client as uid 65534",
    ) {
        let r = tcp_session_as(NOBODY, NOBODY, "::1", d.console, "status\n");
        assert_eq!(r.stdout, "error: permission denied\n", "{r}");
        assert!(console_count(d, "refused") >= 1);
    }
}

/// curl's request, byte for byte: `curl --data-binary $'\nsync -r .\n' http://127.0.0.1:PORT/`.
fn curl_bytes(port: u16) -> Vec<u8> {
    let body = b"\nsync -r .\n";
    let mut r = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
         Content-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Sends `bytes` as root and returns everything the daemon says until it closes.
fn raw_exchange(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(RUN_LIMIT)).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn http_request_to_the_console_runs_nothing_even_as_root() {
    let (c, s) = cluster_with_pending_changes(&[]);
    let sender = &c.daemons[s];
    let port = sender.console;
    let before = state_of(&c);

    let out = raw_exchange(port, &curl_bytes(port));
    assert_eq!(
        out, "error: 'POST' is not a console command (try help); closing the session\n",
        "the session must end at the request line"
    );
    // Other spellings: a GET with the command in a header line, a header first, TLS.
    for (bytes, first) in [
        (
            &b"GET / HTTP/1.0\r\nX: 1\r\n\r\nsync -r .\r\n"[..],
            "error: 'GET' is not",
        ),
        (
            b"Host: x\r\n\r\nsync -r --delete .\n",
            "error: 'Host:' is not",
        ),
        (
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\nsync -r .\n",
            "error: not a console command",
        ),
    ] {
        let out = raw_exchange(port, bytes);
        assert!(
            out.starts_with(first) && out.lines().count() == 1,
            "{out:?}"
        );
    }
    // The real curl, when there is one.
    let curl_ran = Command::new("curl").arg("--version").output().is_ok();
    if curl_ran {
        let r = run(
            Command::new("curl").args([
                "-sS",
                "--max-time",
                "10",
                "--data-binary",
                "\nsync -r .\n",
                &format!("http://127.0.0.1:{port}/"),
            ]),
            RUN_LIMIT,
        );
        assert_ne!(r.code, 0, "curl got an HTTP answer: {r}");
    } else {
        eprintln!("note: no curl here; its request was sent byte for byte instead");
    }

    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(state_of(&c), before, "an HTTP request changed a member");
    let st = sender.status();
    assert_eq!(st.line("transfers"), "transfers sending 0 receiving 0");
    let foreign = console_count(sender, "not-a-command");
    assert!(foreign >= 4 + curl_ran as u64, "{:?}", st.lines);
    let log = sender.log_text();
    assert!(log.contains("'POST' is not a console command"), "{log}");
    assert!(!log.contains("push "), "a push ran: {log}");
    // A console that said no to HTTP still serves its users.
    let r = via(&sender.console_addr(), "sync", "-r --delete .");
    assert_eq!(r.code, 0, "{r}");
    c.assert_all_identical();
}

#[test]
fn console_group_members_are_let_in() {
    if !root_or_skip(
        "console_group_members_are_let_in",
        "runs clients as other users, groupadd",
    ) {
        return;
    }
    // A stranger: a uid and gid with no entry in the user database.
    const STRANGER: u32 = 54_321;
    let group = TempGroup::new(&["nobody"]);
    let gid = group.gid();
    let mut c = Cluster::new();
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("grp.sock");
    let sock_arg = sock.to_string_lossy().into_owned();
    // nobody's primary group is 65534 (nogroup).
    let primary = c.add("primary", &["--console-group", "65534"]);
    let supp = c.add("supp", &["--console-group", &group.name, "-U", &sock_arg]);

    for (i, name) in [(primary, "primary"), (supp, "supp")] {
        let d = &c.daemons[i];
        let r = makuo_as(NOBODY, NOBODY, &["status", "--console", &d.console_addr()]);
        assert_eq!(r.code, 0, "{name}: {r}");
        assert!(r.stdout.contains(&format!("name {name}")), "{r}");
        let r = tcp_session_as(NOBODY, NOBODY, "127.0.0.1", d.console, "alive\nquit\n");
        assert_eq!(r.stdout, "alive\nok\nok\n", "{name}: {r}");
        let r = tcp_session_as(STRANGER, STRANGER, "127.0.0.1", d.console, "alive\n");
        assert_eq!(r.stdout, "error: permission denied\n", "{name}: {r}");
    }
    // The unix socket belongs to the group, 0660: a member connects and is let in; the
    // stranger, even with the group's gid for its process, is not in the group database.
    let md = fs::metadata(&sock).unwrap();
    assert_eq!((md.gid(), md.mode() & 0o777), (gid, 0o660));
    let r = makuo_as(NOBODY, gid, &["status", "--console", &sock_arg]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("name supp"), "{r}");
    let r = makuo_as(STRANGER, gid, &["status", "--console", &sock_arg]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("permission denied"), "{r}");
    assert_eq!(console_count(&c.daemons[supp], "refused"), 2);
    assert!(c.daemons[supp].log_text().contains("not in group mkt"));
}

/// With chroot (`-c`), `/etc/group` and `/etc/passwd` inside the chroot are files under the
/// base, which a push may write: a user database planted there must not let anyone in. The
/// group's members are read before the chroot.
#[test]
fn console_group_under_chroot_ignores_a_user_database_planted_in_the_base() {
    if !root_or_skip(
        "console_group_under_chroot_ignores_a_user_database_planted_in_the_base",
        "chroot, runs clients as other users, groupadd",
    ) {
        return;
    }
    const STRANGER: u32 = 54_322;
    let group = TempGroup::new(&["nobody"]);
    let gid = group.gid();
    let mut c = Cluster::new();
    let d = c.daemon_on_loopback("jailed", &["-c", "--console-group", &group.name]);
    // What a push could have written: the stranger in the group, by both routes.
    write(
        &d.base,
        "etc/passwd",
        format!("root:x:0:0::/:/bin/sh\nstranger:x:{STRANGER}:{gid}::/:/bin/sh\n"),
    );
    write(
        &d.base,
        "etc/group",
        format!("{}:x:{gid}:nobody,stranger\n", group.name),
    );
    let i = c.push_daemon(d);
    let d = &c.daemons[i];
    assert!(
        d.log_text().contains("read once at start"),
        "{}",
        d.log_text()
    );
    let r = tcp_session_as(NOBODY, NOBODY, "127.0.0.1", d.console, "alive\nquit\n");
    assert_eq!(r.stdout, "alive\nok\nok\n", "a real member: {r}");
    let r = tcp_session_as(STRANGER, STRANGER, "127.0.0.1", d.console, "alive\n");
    assert_eq!(
        r.stdout, "error: permission denied\n",
        "the planted one: {r}"
    );
    let r = tcp_session_as(STRANGER, gid, "127.0.0.1", d.console, "alive\n");
    assert_eq!(r.stdout, "error: permission denied\n", "with the gid: {r}");
}

#[test]
fn daemon_and_direct_mode_without_a_key_exit_1_naming_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    fs::create_dir(&base).unwrap();
    let base_arg = base.to_string_lossy().into_owned();
    let state = dir.path().join("state").to_string_lossy().into_owned();
    let group = random_group();
    let port = free_udp_port().to_string();
    let console = free_tcp_port().to_string();
    let t = Instant::now();
    let r = run(
        Command::new(EXE).args([
            "daemon",
            "-n",
            "-b",
            &base_arg,
            "--state-dir",
            &state,
            "-i",
            "127.0.0.1",
            "-m",
            &group,
            "-p",
            &port,
            "-P",
            &console,
        ]),
        Duration::from_secs(5),
    );
    assert_eq!(r.code, 1, "{r}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        r.stderr.contains("--insecure") && r.stderr.contains("makuo keygen"),
        "{r}"
    );
    assert!(TcpStream::connect(("127.0.0.1", console.parse::<u16>().unwrap())).is_err());
    let net = [
        "-m",
        &group,
        "-p",
        &port,
        "--interface",
        "127.0.0.1",
        "--discover",
        "100",
    ];
    for cmd in [
        &["sync", "--direct", "-r", "-b", &base_arg, "."][..],
        &["check", "--direct", "-b", &base_arg],
        &["members", "--direct"],
    ] {
        let mut a = cmd.to_vec();
        a.extend(net);
        let r = run(Command::new(EXE).args(&a), Duration::from_secs(5));
        assert_eq!(r.code, 1, "{a:?}: {r}");
        assert!(
            r.stderr.contains("--insecure") && r.stderr.contains("makuo keygen"),
            "{a:?}: {r}"
        );
        // Said out loud, it runs (and finds nobody: exit 10), with a warning for pushes.
        a.push("--insecure");
        let r = run(Command::new(EXE).args(&a), Duration::from_secs(5));
        assert_eq!(r.code, 10, "{a:?}: {r}");
    }
}

fn password_file(dir: &Path, name: &str, text: &str, mode: u32) -> String {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    p.to_string_lossy().into_owned()
}

/// Starts `d` and expects it to exit 1 at once with `want` in its log.
fn refuses_to_start(mut d: Daemon, want: &str) {
    d.spawn();
    let st = d
        .wait_exit(Duration::from_secs(5))
        .expect("the daemon should refuse to start");
    assert_eq!(st.code(), Some(1), "{}", d.log_text());
    assert!(d.log_text().contains(want), "{}", d.log_text());
    assert!(!d.log_text().contains(" up: "), "{}", d.log_text());
}

#[test]
fn password_rules_three_tries_and_growing_delays() {
    let mut c = Cluster::new();
    let dir = c.path("pw");
    fs::create_dir(&dir).unwrap();
    let empty = password_file(&dir, "empty", "", 0o600);
    let open = password_file(&dir, "open", "s3cret pw\n", 0o644);
    let good = password_file(&dir, "good", "s3cret pw\n", 0o600);
    let wrong = password_file(&dir, "wrong", "not it\n", 0o600);
    refuses_to_start(c.daemon_on_loopback("e", &["-K", &empty]), "is empty");
    refuses_to_start(c.daemon_on_loopback("o", &["-K", &open]), "chmod 600");
    // A console reachable from the network needs -K, with a password of 16 bytes or more.
    refuses_to_start(
        c.daemon_on_loopback("n", &["--console-addr", "0.0.0.0"]),
        "add -K FILE",
    );
    refuses_to_start(
        c.daemon_on_loopback("s", &["--console-addr", "0.0.0.0", "-K", &good]),
        "needs a password of at least 16 bytes (the -K file's has 9)",
    );

    let i = c.add("pw", &["-K", &good]);
    let d = &c.daemons[i];
    let mut con = Console::connect(d.console);
    assert_eq!(
        con.cmd("status").1,
        "error: password required (password SECRET)"
    );
    let mut waits = Vec::new();
    for n in 1..=3 {
        let t = Instant::now();
        let (_, last) = con.cmd("password \"s3cret\"");
        waits.push(t.elapsed());
        assert!(last.starts_with("error: wrong password"), "{last}");
        assert_eq!(last.contains("closing"), n == 3, "{last}");
    }
    assert_eq!(con.line(), None, "the third failure closes the connection");
    for (n, w) in waits.iter().enumerate() {
        assert!(
            *w >= Duration::from_secs(n as u64 + 1),
            "failure {} answered after {w:?}",
            n + 1
        );
    }
    assert_eq!(console_count(d, "bad-password"), 3);

    // The right password, then commands.
    let mut con = Console::connect(d.console);
    assert_eq!(con.cmd("password \"s3cret pw\"").1, "ok");
    assert_eq!(con.cmd("alive").1, "ok");
    // The front end with -K.
    let addr = d.console_addr();
    let r = makuo(&["status", "--console", &addr, "-K", &good]);
    assert_eq!(r.code, 0, "{r}");
    let r = makuo(&["status", "--console", &addr, "-K", &wrong]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("refused the password"), "{r}");
    let r = makuo(&["status", "--console", &addr, "-K", &open]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("chmod 600"), "{r}");
}

/// One raw TCP session from network namespace `ns` to `host`:5000: writes `input` and
/// returns everything the daemon answers until it closes the connection.
fn session_in(ns: &str, host: &str, input: &str) -> Run {
    run(
        Command::new("ip")
            .args(["netns", "exec", ns, "bash", "-c"])
            .arg(r#"exec 3<>"/dev/tcp/$HOST/5000" || exit 9; printf '%s' "$INPUT" >&3; exec cat <&3"#)
            .env("HOST", host)
            .env("INPUT", input),
        RUN_LIMIT,
    )
}

#[test]
fn remote_console_peer_gets_in_only_with_the_password() {
    if !root_or_skip(
        "remote_console_peer_gets_in_only_with_the_password",
        "network namespaces",
    ) {
        return;
    }
    let mut net = Net::new();
    let mut c = Cluster::new();
    let third = (std::process::id() % 250) as u8 + 1;
    let addr = |i: usize| format!("198.18.{third}.{}", 20 + i);
    let ns0 = net.host(0, &addr(0));
    let ns1 = net.host(1, &addr(1));
    let dir = c.path("pw");
    fs::create_dir(&dir).unwrap();
    let good = password_file(&dir, "good", "remote console pw\n", 0o600);
    let base = c.path("r0/base");
    fs::create_dir_all(&base).unwrap();
    let mut more = c.key_args();
    more.extend(["-K", &good, "--console-addr", &addr(0)].map(String::from));
    let d = c.daemon_at("r0", base, 5000, Some(ns0), &addr(0), more);
    let i = c.push_daemon(d);
    let remote = |input: &str| session_in(&ns1, &addr(0), input);
    let r = remote("status\nquit\n");
    assert_eq!(
        r.stdout, "error: password required (password SECRET)\nok\n",
        "{r}"
    );
    let r = remote("password \"remote console pw\"\nstatus\nquit\n");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"ok"), "{r}");
    assert!(lines.contains(&"name r0"), "{r}");
    assert_eq!(&lines[lines.len() - 2..], ["ok", "ok"], "{r}");
    let r = remote("password nope\nquit\n");
    assert_eq!(r.stdout, "error: wrong password\nok\n", "{r}");
    let log = c.daemons[i].log_text();
    assert!(log.contains("(remote): error: wrong password"), "{log}");
    drop(c);
    drop(net);
}

#[test]
fn over_long_lines_and_a_17th_session_are_turned_away() {
    let mut c = Cluster::new();
    let i = c.add("lim", &[]);
    let d = &c.daemons[i];
    let mut long = vec![b'e'; 5000];
    long.extend_from_slice(b"\nstatus\n");
    assert_eq!(
        raw_exchange(d.console, &long),
        "error: line longer than 4096 bytes; closing the session\n"
    );
    let mut echo = b"echo ".to_vec();
    echo.resize(4096, b'x');
    let mut con = d.console();
    con.send(&format!("{}\r\n", String::from_utf8(echo).unwrap()));
    let (lines, last) = con.reply();
    assert_eq!((lines[0].len(), last.as_str()), (4091, "ok"));

    let mut open: Vec<Console> = (0..15).map(|_| d.console()).collect();
    for s in &mut open {
        assert_eq!(s.cmd("alive").1, "ok");
    }
    // With `con`, 16 sessions are open: the 17th is told so and closed.
    let mut extra = Console::connect(d.console);
    assert_eq!(
        extra.rest(),
        "error: too many console sessions (16); try again later\n"
    );
    drop(open.pop());
    // A freed slot is usable again (the daemon notices the close within a moment).
    let back = wait_for("a session slot to free up", Duration::from_secs(10), || {
        let mut s = Console::connect(d.console);
        s.send("alive\n");
        let l = s.line()?;
        (l == "alive").then_some(s)
    });
    drop(back);
    // The counters are read in a session of their own: free the rest first, so that a
    // session the daemon has not yet seen closed cannot turn that one away.
    drop(open);
    drop(con);
    assert!(console_count(d, "busy") >= 1);
    assert_eq!(console_count(d, "too-long"), 1);
}

/// Connections being admitted are capped (64), and refused users can fill that cap; root (and
/// the daemon's user) skip it, so a flood of refused connections does not lock them out.
#[test]
fn refused_users_holding_connections_do_not_lock_root_out() {
    if !root_or_skip(
        "refused_users_holding_connections_do_not_lock_root_out",
        "runs a client as uid 65534",
    ) {
        return;
    }
    let mut c = Cluster::new();
    let i = c.add("flooded", &[]);
    let d = &c.daemons[i];
    // One process of uid 65534 opens 100 connections at once, says so, and holds them: every
    // one of the 64 admission slots is held by a refused connection for a second.
    let mut cmd = Command::new("bash");
    cmd.args([
        "-c",
        r#"for i in $(seq 100); do exec {fd}<>"/dev/tcp/127.0.0.1/$PORT" || exit 9; done; echo ready; sleep 4"#,
    ])
    .env("PORT", d.console.to_string())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    let mut flood = as_user(&mut cmd, NOBODY, NOBODY).spawn().unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(flood.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready, "ready\n", "the flood could not connect");
    // Root asks while they are held.
    let st = d.status();
    assert!(
        st.lines.contains(&"name flooded".to_string()),
        "{:?}",
        st.lines
    );
    assert!(console_count(d, "busy") > 0, "{:?}", st.lines);
    assert!(console_count(d, "refused") >= 60, "{:?}", st.lines);
    let _ = flood.kill();
    let _ = flood.wait();
}

/// Issue 12's review, F2: a local user listens on the console's port before the daemon does.
/// Root's daemon then says who holds the port and does not start; root's front end checks who
/// holds the console before it sends anything, so the squatter never reads the password and
/// cannot forge a result. The same on a unix socket. A daemon that runs as another user
/// (`-u`) but listens as root is still trusted, and so is a daemon user configured for the
/// front end.
#[test]
fn a_squatted_console_gets_nothing_from_the_front_end_and_stops_the_daemon() {
    if !root_or_skip(
        "a_squatted_console_gets_nothing_from_the_front_end_and_stops_the_daemon",
        "listens as uid 65534",
    ) {
        return;
    }
    let mut c = Cluster::new();
    small_site(&c.src);
    let port = free_tcp_port();
    let squat = Squatter::tcp(NOBODY, port);
    let addr = squat.addr.clone();

    // Root's daemon: the port is taken, and the error says by whom.
    let base = c.path("d/base");
    fs::create_dir_all(&base).unwrap();
    let d = c.daemon_at("d", base, port, None, "127.0.0.1", c.key_args());
    refuses_to_start(d, "console port 127.0.0.1:");
    let log = fs::read_to_string(c.path("d.log")).unwrap();
    assert!(log.contains("is in use: uid 65534"), "{log}");

    // Root's front end, with the console password: refused, naming the squatter's uid.
    let dir = c.path("pw");
    fs::create_dir(&dir).unwrap();
    let pw = password_file(&dir, "pw", "Sup3rSecret\n", 0o600);
    let src = c.src.to_string_lossy().into_owned();
    let r = run(
        Command::new(EXE)
            .args(["sync", "-r", "--console", &addr, "-K", &pw, "."])
            .current_dir(&src),
        RUN_LIMIT,
    );
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("is held by uid 65534"), "{r}");
    assert!(!r.stdout.contains("web1"), "a forged result was shown: {r}");
    // The console from the environment (not typed): refused the same way, not bypassed.
    for cmd in [&["status"][..], &["members"], &["sync", "-r", "."]] {
        let r = run(
            Command::new(EXE)
                .args(cmd)
                .env("MAKUO_CONSOLE", &addr)
                .current_dir(&src),
            RUN_LIMIT,
        );
        assert_eq!(r.code, 1, "{cmd:?}: {r}");
        assert!(r.stderr.contains("is held by uid 65534"), "{cmd:?}: {r}");
    }
    // As nobody the front end trusts itself: the squatter may see nobody's own lines. Root
    // sent it nothing at all.
    assert_eq!(
        squat.lines(),
        Vec::<String>::new(),
        "root sent the squatter lines"
    );

    // The same on a unix socket, in a directory the squatter may write.
    let run_dir = c.path("run");
    fs::create_dir(&run_dir).unwrap();
    std::os::unix::fs::chown(&run_dir, Some(NOBODY), Some(NOBODY)).unwrap();
    let sock = run_dir.join("console.sock");
    let usquat = Squatter::unix(NOBODY, &sock);
    let r = makuo(&[
        "status",
        "--console",
        &sock.to_string_lossy(),
        "-K",
        pw.as_str(),
    ]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("is held by uid 65534"), "{r}");
    assert!(r.stderr.contains("listens on it"), "{r}");
    assert_eq!(usquat.lines(), Vec::<String>::new());

    // Configured as the daemon's user, that uid is trusted (so this check is what kept the
    // password from the squatter above).
    let r = run(
        Command::new(EXE)
            .args(["status", "--console", &addr, "-K", &pw])
            .env("MAKUO_USER", NOBODY.to_string()),
        RUN_LIMIT,
    );
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(
        squat.lines().first().map(String::as_str),
        Some("password \"Sup3rSecret\"")
    );
    drop(squat);

    // A daemon started by root that runs as nobody accepts as nobody but listens as root: root's
    // front end and a --console-group member both still talk to it.
    let i = c.add(
        "dropped",
        &["-u", "nobody", "--console-group", "65534", "--no-fsync"],
    );
    let d = &c.daemons[i];
    let r = makuo(&["status", "--console", &d.console_addr()]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("name dropped"), "{r}");
    let r = makuo_as(NOBODY, NOBODY, &["status", "--console", &d.console_addr()]);
    assert_eq!(r.code, 0, "{r}");
}

/// Issue 12's review, F3: with `-U` and `--console-group`, a daemon chowned and chmodded the
/// socket by name after binding it, so whoever could write in its directory could swap it for
/// a symlink and have a root-only file made group GROUP, mode 0660. Now the socket is born
/// with its group and mode (nothing is changed by name afterwards), and a directory anyone
/// but root or the daemon's user may write in is refused.
#[test]
fn the_console_socket_is_born_shared_and_its_directory_must_be_safe() {
    if !root_or_skip(
        "the_console_socket_is_born_shared_and_its_directory_must_be_safe",
        "chown, -u nobody, watches as uid 65534",
    ) {
        return;
    }
    let c = Cluster::new();
    // A directory anyone may write in: refused, with the rule.
    let open = c.path("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
    let sock = open.join("console.sock").to_string_lossy().into_owned();
    refuses_to_start(
        c.daemon_on_loopback("o", &["-U", &sock, "--console-group", "65534"]),
        "is writable by anyone (mode 1777): the console socket's directory must belong to root \
         or the daemon's user",
    );
    assert_eq!(fs::read_dir(&open).unwrap().count(), 0);
    // Another user's directory: refused too.
    let theirs = c.path("theirs");
    fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let sock = theirs.join("console.sock").to_string_lossy().into_owned();
    refuses_to_start(
        c.daemon_on_loopback("t", &["-U", &sock]),
        "belongs to uid 65534",
    );

    // The directory of the daemon's own user (-u nobody) is accepted: the socket is born
    // group 65534, mode 0660, and its attributes are never changed afterwards.
    let run_dir = c.path("run");
    fs::create_dir(&run_dir).unwrap();
    std::os::unix::fs::chown(&run_dir, Some(NOBODY), Some(NOBODY)).unwrap();
    let sock = run_dir.join("console.sock");
    let sock_arg = sock.to_string_lossy().into_owned();
    let flags = ["-u", "nobody", "--console-group", "65534", "-U", &sock_arg];
    let watch = DirWatch::new(NOBODY, &run_dir, "console.sock", None);
    let mut d = c.daemon_on_loopback("shared", &flags);
    d.start();
    let md = fs::symlink_metadata(&sock).unwrap();
    assert_eq!((md.gid(), md.mode() & 0o7777), (65534, 0o660));
    let seen = watch.stop();
    assert_eq!(seen, ["create"], "the socket was changed after it was made");
    let r = makuo(&["status", "--console", &sock_arg]);
    assert_eq!(r.code, 0, "{r}");
    d.stop();

    // The race itself: the daemon's user swaps the new socket for a symlink to a root-only
    // file the moment it appears. Whatever the daemon does then, that file stays as it was.
    let secret = c.path("shadow");
    fs::write(&secret, "root:$6$hash:19000:0:99999:7:::\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let mut swapped = 0;
    for attempt in 0..6 {
        let _ = fs::remove_file(&sock);
        let watch = DirWatch::new(NOBODY, &run_dir, "console.sock", Some(&secret));
        let mut d = c.daemon_on_loopback(&format!("race{attempt}"), &flags);
        d.spawn();
        wait_for(
            "the daemon to start or stop",
            Duration::from_secs(10),
            || {
                let up = TcpStream::connect(("127.0.0.1", d.console)).is_ok();
                (up || !d.alive()).then_some(())
            },
        );
        d.stop();
        swapped += watch.stop().iter().filter(|e| *e == "swapped").count();
        let md = fs::metadata(&secret).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (0, 0, 0o600),
            "attempt {attempt}: the daemon changed the file a symlink pointed to"
        );
    }
    assert!(swapped > 0, "the racer never got to swap the socket");
}

/// Issue 12's review, F8: with the console beyond loopback (`-K`), 16 silent connections from
/// another host held every session for the 300 s idle time, locking root out, and guesses
/// were limited only per connection. Now peers on other hosts wait for the password in a pool
/// of 4 with 10 s to give it, a peer with 3 wrong passwords must wait before trying again
/// (10 s, doubling), and wrong passwords are logged once per peer and window with a count.
#[test]
fn remote_peers_cannot_lock_root_out_and_wrong_passwords_back_off() {
    if !root_or_skip(
        "remote_peers_cannot_lock_root_out_and_wrong_passwords_back_off",
        "network namespaces",
    ) {
        return;
    }
    let mut net = Net::new();
    let mut c = Cluster::new();
    let third = (std::process::id() % 250) as u8 + 1;
    let addr = |i: usize| format!("198.18.{third}.{}", 40 + i);
    let ns0 = net.host(0, &addr(0));
    let ns1 = net.host(1, &addr(1));
    let dir = c.path("pw");
    fs::create_dir(&dir).unwrap();
    let good = password_file(&dir, "good", "a long console password\n", 0o600);
    let base = c.path("srv/base");
    fs::create_dir_all(&base).unwrap();
    let mut more = c.key_args();
    more.extend(["-K", &good, "--console-addr", &addr(0)].map(String::from));
    let d = c.daemon_at("srv", base, 5000, Some(ns0.clone()), &addr(0), more);
    let i = c.push_daemon(d);
    let console = format!("{}:5000", addr(0));
    let root_status = || {
        let t = Instant::now();
        let r = run(
            &mut c.daemons[i].command(&["status", "--console", &console, "-K", &good]),
            RUN_LIMIT,
        );
        (r, t.elapsed())
    };

    // A peer on another host opens 20 connections and says nothing.
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns1, "bash", "-c"])
        .arg(
            r#"start=$(date +%s%N); fds=()
               for i in $(seq 20); do exec {fd}<>"/dev/tcp/$HOST/5000" || exit 9; fds+=($fd); done
               echo ready
               for fd in "${fds[@]}"; do cat <&$fd; done
               echo "all closed after $(( ($(date +%s%N) - start) / 1000000 )) ms""#,
        )
        .env("HOST", addr(0))
        .stdout(std::process::Stdio::piped());
    let mut holder = cmd.spawn().unwrap();
    let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut out, &mut ready).unwrap();
    assert_eq!(ready, "ready\n", "the remote peer could not connect");
    // Root on the server is not locked out: it answers at once.
    let (r, took) = root_status();
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("name srv"), "{r}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The peer's connections beyond the pool were turned away; the rest are closed after
    // 10 s without a password.
    let mut rest = String::new();
    let t = Instant::now();
    while t.elapsed() < RUN_LIMIT {
        let mut l = String::new();
        if std::io::BufRead::read_line(&mut out, &mut l).unwrap_or(0) == 0 {
            break;
        }
        rest.push_str(&l);
    }
    let _ = holder.kill();
    let _ = holder.wait();
    let count = |what: &str| rest.lines().filter(|l| l.starts_with(what)).count();
    assert_eq!(
        count("error: too many connections waiting for the password (4); try again later"),
        16,
        "{rest}"
    );
    assert_eq!(
        count("error: no password within 10 s; closing the session"),
        4,
        "{rest}"
    );
    let ms: u64 = rest
        .lines()
        .find_map(|l| {
            l.strip_prefix("all closed after ")?
                .strip_suffix(" ms")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{rest}"));
    assert!(
        (9_500..30_000).contains(&ms),
        "closed after {ms} ms: {rest}"
    );

    // Three wrong passwords: the peer must wait before it may try again, even with the right
    // password; root on the server may go on.
    let r = session_in(&ns1, &addr(0), "password a\npassword b\npassword c\n");
    assert_eq!(
        r.stdout,
        "error: wrong password\nerror: wrong password\n\
         error: wrong password; closing the session after 3 tries\n",
        "{r}"
    );
    let r = session_in(
        &ns1,
        &addr(0),
        "password \"a long console password\"\nstatus\n",
    );
    let want = format!(
        "error: too many wrong passwords from {}; try again in ",
        addr(1)
    );
    assert!(r.stdout.starts_with(&want), "{r}");
    assert_eq!(r.stdout.lines().count(), 1, "{r}");
    let (r, _) = root_status();
    assert_eq!(r.code, 0, "{r}");
    let st = Status::parse(r.stdout.lines().map(String::from).collect());
    let counters = st.line("console ").to_string();
    assert!(counters.contains("bad-password 3"), "{counters}");
    assert!(!counters.contains("backoff 0"), "{counters}");

    // The log: the first wrong password in full, the others counted (written when the
    // window ends, or at the latest when the daemon stops).
    c.daemons[i].stop();
    let log = c.daemons[i].log_text();
    let full = log.matches("(remote): error: wrong password").count();
    assert_eq!(full, 1, "{log}");
    assert!(
        log.contains(&format!(
            "console: … and 2 more wrong passwords from {} in the last",
            addr(1)
        )),
        "{log}"
    );
    drop(c);
    drop(net);
}
