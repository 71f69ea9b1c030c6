//! Tests of the console's access control: the gate, the policy, the session limits.

use super::*;
use std::io::BufRead;

fn pw() -> Password {
    Password::new(b"s3cret!").unwrap()
}

#[test]
fn gate_without_password_runs_commands_and_ends_on_foreign_lines() {
    let mut g = Gate::new(None);
    assert!(g.authed());
    assert_eq!(g.line(b"status"), Verdict::Run(Request::Status));
    assert_eq!(g.line(b""), Verdict::Run(Request::Nothing));
    assert_eq!(g.line(b"   \t"), Verdict::Run(Request::Nothing));
    // A usage error: one line, the session goes on.
    let Verdict::Answer { close, line, .. } = g.line(b"loglevel 12") else {
        panic!()
    };
    assert!(!close && line.starts_with("error: "), "{line}");
    // Another protocol: the session ends.
    for foreign in [
        &b"POST / HTTP/1.1"[..],
        b"GET /sync HTTP/1.0",
        b"Host: 127.0.0.1:5000",
        b"Content-Type: application/x-www-form-urlencoded",
        b"frobnicate",
        b"\x16\x03\x01\x02\x00\x01",
        b"sync\x1b[2J -r .",
        b"\xff\xf4\xff\xfd\x06",
        b"\"sync\" -r .",
    ] {
        match g.line(foreign) {
            Verdict::Answer {
                close: true,
                note: Some(Note::NotACommand),
                line,
                ..
            } => assert!(line.starts_with("error: ") && line.len() < 200, "{line}"),
            v => panic!("{:?}: {v:?}", String::from_utf8_lossy(foreign)),
        }
    }
}

#[test]
fn gate_with_password_three_tries_growing_delays() {
    let p = pw();
    let mut g = Gate::new(Some(&p));
    assert!(!g.authed());
    assert_eq!(
        g.line(b"status"),
        Verdict::answer("error: password required (password SECRET)")
    );
    assert_eq!(g.line(b""), Verdict::Run(Request::Nothing));
    let mut waits = Vec::new();
    for i in 1..=MAX_TRIES {
        match g.line(b"password wrong1") {
            Verdict::Answer {
                wait,
                close,
                note: Some(Note::WrongPassword),
                ..
            } => {
                assert_eq!(close, i == MAX_TRIES);
                waits.push(wait);
            }
            v => panic!("{v:?}"),
        }
    }
    assert_eq!(
        waits,
        [1, 2, 3].map(Duration::from_secs),
        "the delay grows with every failure"
    );
    assert!(!g.authed());

    let mut g = Gate::new(Some(&p));
    assert!(matches!(
        g.line(b"password nope"),
        Verdict::Answer { close: false, .. }
    ));
    assert_eq!(g.line(b"password \"s3cret!\""), Verdict::answer("ok"));
    assert!(g.authed());
    assert_eq!(g.line(b"status"), Verdict::Run(Request::Status));
    // HTTP before the password ends the session too.
    let mut g = Gate::new(Some(&p));
    assert!(matches!(
        g.line(b"POST / HTTP/1.1"),
        Verdict::Answer { close: true, .. }
    ));
    // quit before the password: ok, closed.
    let mut g = Gate::new(Some(&p));
    assert!(matches!(g.line(b"quit"), Verdict::Answer { close: true, line, .. } if line == "ok"));
}

#[test]
fn console_address_beyond_loopback_needs_a_long_password() {
    let short = pw();
    let long = Password::new(b"sixteen bytes ok").unwrap();
    for a in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
        assert!(check_console_addr(a.parse().unwrap(), None).is_ok(), "{a}");
        assert!(check_console_addr(a.parse().unwrap(), Some(&short)).is_ok());
    }
    for a in ["0.0.0.0", "10.0.0.5", "::", "198.18.0.1"] {
        let e = check_console_addr(a.parse().unwrap(), None).unwrap_err();
        assert!(e.to_string().contains("-K"), "{e}");
        let e = check_console_addr(a.parse().unwrap(), Some(&short)).unwrap_err();
        assert!(e.to_string().contains("at least 16 bytes"), "{e}");
        assert!(check_console_addr(a.parse().unwrap(), Some(&long)).is_ok());
    }
}

#[test]
fn policy_allows_root_and_the_starter_and_group_members() {
    let p = Policy::new(None, false).unwrap();
    assert!(p.uid_allowed(0));
    assert!(p.uid_allowed(nix::unistd::getuid().as_raw()));
    if nix::unistd::getuid().is_root() {
        assert!(!p.uid_allowed(65534));
        assert!(p.refusal(65534).contains("--console-group"));
    }
    assert!(Policy::new(Some("no-such-group-makuo"), false).is_err());
    // Root's primary group (gid 0) names root as a member; nobody is not in it.
    let root = Policy::new(Some("0"), false).unwrap();
    assert!(in_group(0, 0));
    if nix::unistd::getuid().is_root() {
        assert_eq!(root.uid_allowed(65534), in_group(65534, 0));
    }
}

#[test]
fn a_frozen_group_decides_by_the_list_read_at_start() {
    let passwd = "root:x:0:0::/root:/bin/sh\nweb:x:1001:33::/:/bin/false\n\
                  bad line\nother:x:1002:1002::/:/bin/false\nx:y:nope:33\n";
    assert_eq!(primary_members(passwd, 33), [1001]);
    assert_eq!(primary_members(passwd, 0), [0]);
    // Frozen, membership no longer follows the group database: gid 0's members as read
    // now, and later lookups (which, inside a chroot, would read files under the base)
    // are never made.
    let mut p = Policy::new(Some("0"), false).unwrap();
    let n = p.freeze_group().unwrap();
    assert!(n >= 1, "root is in its own primary group");
    let frozen = p.group.as_ref().unwrap().frozen.clone().unwrap();
    assert!(frozen.contains(&0));
    if nix::unistd::getuid().is_root() {
        assert_eq!(p.uid_allowed(65534), frozen.contains(&65534));
    }
    p.group.as_mut().unwrap().frozen = Some([4242].into());
    assert!(p.uid_allowed(4242), "decided by the frozen list alone");
}

#[test]
fn limits_are_the_documented_ones() {
    use clap::CommandFactory;
    let help = crate::cli::Cli::command()
        .find_subcommand_mut("daemon")
        .unwrap()
        .render_long_help()
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for want in [
        format!("lines of {} bytes", LIMITS.max_line),
        format!("{} sessions at a time", LIMITS.max_sessions),
        format!("{} s without a complete line", LIMITS.idle.as_secs()),
        format!("at most {MAX_TRIES} tries"),
    ] {
        assert!(help.contains(&want), "daemon --help lacks {want:?}");
    }
}

/// A whole session over a socket pair: strict lines, the line cap and the idle deadline.
#[test]
fn session_caps_lines_and_idle_time() {
    let policy = Policy::new(None, false).unwrap();
    let limits = Limits {
        idle: Duration::from_millis(300),
        ..LIMITS
    };
    let srv = Server::new(policy, None, limits);
    let run = |input: &[u8], keep_open: bool| -> (String, Duration) {
        let (a, b) = UnixStream::pair().unwrap();
        let s2 = srv.clone();
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            run_session(&s2, b, &Who::local("test", 0), |req, w| match req {
                Request::Nothing => Ok(()),
                Request::Status => writeln!(w, "status here\nok"),
                _ => writeln!(w, "ok"),
            });
            start.elapsed()
        });
        (&a).write_all(input).unwrap();
        if !keep_open {
            a.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut out = String::new();
        let mut r = io::BufReader::new(&a);
        let mut l = String::new();
        while r.read_line(&mut l).unwrap_or(0) > 0 {
            out.push_str(&l);
            l.clear();
        }
        (out, t.join().unwrap())
    };
    let (out, _) = run(b"status\r\n\nalive\n", false);
    assert_eq!(out, "status here\nok\nok\n");
    let curl =
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1:5000\r\nContent-Length: 12\r\n\r\n\nsync -r .\n";
    let (out, _) = run(curl, false);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("error: 'POST' is not a console command"),
        "{out}"
    );
    let mut long = vec![b'e'; LIMITS.max_line + 10];
    long.extend_from_slice(b"\nstatus\n");
    let (out, _) = run(&long, false);
    assert_eq!(
        out,
        format!(
            "error: line longer than {} bytes; closing the session\n",
            LIMITS.max_line
        )
    );
    // Exactly at the cap is fine.
    let mut at_cap = b"echo ".to_vec();
    at_cap.resize(LIMITS.max_line, b'x');
    at_cap.extend_from_slice(b"\r\nstatus\n");
    let (out, _) = run(&at_cap, false);
    assert_eq!(out, "ok\nstatus here\nok\n");
    // Silence, or a line trickling in forever, is closed after the idle time.
    let (out, took) = run(b"stat", true);
    assert!(out.starts_with("error: no complete line for 0 s"), "{out}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(srv.stats.line().contains("idle 1"), "{}", srv.stats.line());
    assert!(
        srv.stats.line().contains("not-a-command 1"),
        "{}",
        srv.stats.line()
    );
    assert!(
        srv.stats.line().contains("too-long 1"),
        "{}",
        srv.stats.line()
    );
}

#[test]
fn slots_are_capped_and_given_back() {
    let s = Slots::new(2);
    let a = s.take().unwrap();
    let _b = s.take().unwrap();
    assert!(s.take().is_none());
    drop(a);
    assert!(s.take().is_some());
}
