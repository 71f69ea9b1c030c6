//! Issue 12's privilege, start-up and output tests, with the real binary and keyed daemons
//! on loopback (fixtures in `tests/common`):
//!
//! - `-u nobody` takes nobody's group and supplementary groups: no root group is left;
//! - with `-c` (chroot to the base) console pushes, the state directory and the log keep
//!   working;
//! - `-U` over a regular file refuses to start and leaves the file;
//! - a second daemon on the same base or state directory exits 1 with a clear message before
//!   sweeping anything: the running daemon's staged files survive;
//! - owners and set-id bits from a push land only with `-O`, and never on the base itself;
//! - a member name holding a newline shows as `\#012` in `members` and in logs.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The numbers of line `key:` of /proc/PID/status.
fn proc_ids(pid: u32, key: &str) -> Vec<u32> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} line in {text}"));
    line[key.len() + 1..]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// `id FLAG USER` as numbers.
fn id_of(flag: &str, user: &str) -> Vec<u32> {
    let out = Command::new("id").args([flag, user]).output().unwrap();
    assert!(out.status.success(), "id {flag} {user}");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

#[test]
fn a_daemon_run_as_nobody_has_nobodys_groups_and_no_root_group() {
    if !root_or_skip(
        "a_daemon_run_as_nobody_has_nobodys_groups_and_no_root_group",
        "to change user",
    ) {
        return;
    }
    let mut c = Cluster::new();
    let i = c.add("asnobody", &["-u", "nobody"]);
    let pid = c.daemons[i].pid();
    let (uid, gid, groups) = (
        id_of("-u", "nobody")[0],
        id_of("-g", "nobody")[0],
        id_of("-G", "nobody"),
    );
    assert_eq!(proc_ids(pid, "Uid"), vec![uid; 4]);
    assert_eq!(
        proc_ids(pid, "Gid"),
        vec![gid; 4],
        "nobody's group, not root's"
    );
    let mut have = proc_ids(pid, "Groups");
    have.sort_unstable();
    let mut want = groups;
    want.sort_unstable();
    assert_eq!(have, want, "nobody's supplementary groups");
    assert!(!have.contains(&0), "no root group: {have:?}");
    // And it still works as a member.
    let (lines, last) = c.daemons[i].cmd("status");
    assert_eq!(last, "ok", "{lines:?}");
}

#[test]
fn a_chrooted_daemon_pushes_from_its_console_and_keeps_its_state_and_log() {
    if !root_or_skip(
        "a_chrooted_daemon_pushes_from_its_console_and_keeps_its_state_and_log",
        "to chroot",
    ) {
        return;
    }
    let mut c = Cluster::new();
    small_site(&c.src);
    let src = c.src.clone();
    let s = c.add_sender("jailed", &src, &["-c"]);
    let r = c.add("m1", &["--no-fsync"]);
    c.wait_converged(s);
    let pid = c.daemons[s].pid();
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/root")).unwrap(),
        src.canonicalize().unwrap(),
        "chrooted into its base"
    );
    // A push through the chrooted daemon's console walks its tree from inside the chroot.
    let out = c.daemons[s].sync(&[]);
    assert_eq!(out.code, 0, "{out}");
    assert_identical(&src, c.base("m1"), "m1");
    wait_for(
        "the chrooted daemon to log the push",
        Duration::from_secs(5),
        || c.daemons[s].log_text().contains(" done in ").then_some(()),
    );
    // State: a push into the chrooted daemon is recorded in its state directory (outside
    // the chroot), and the members it has seen are saved.
    write(c.base("m1"), "news.txt", "from m1");
    let out = c.daemons[r].sync(&[]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(fs::read(src.join("news.txt")).unwrap(), b"from m1");
    let state = c.daemons[s].state.clone();
    // The member answers the push before its loop records it: wait for the record.
    wait_for(
        "the chrooted daemon to record the push from m1",
        Duration::from_secs(5),
        || {
            fs::read_to_string(state.join("last-push"))
                .ok()
                .filter(|t| t.contains(" m1 "))
        },
    );
    wait_for(
        "the chrooted daemon to save its members",
        Duration::from_secs(12),
        || {
            fs::read_to_string(state.join("members"))
                .ok()
                .filter(|t| t.contains("m1\t"))
        },
    );
    let (lines, last) = c.daemons[s].cmd("status");
    assert_eq!(last, "ok", "{lines:?}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("last-push ") && l.contains(" m1 ")));
}

#[test]
fn a_console_socket_path_holding_a_regular_file_is_refused_and_left_alone() {
    let c = Cluster::new();
    let f = c.path("precious.txt");
    fs::write(&f, "keep me").unwrap();
    let mut d = c.daemon_on_loopback("sock", &["-U", f.to_str().unwrap()]);
    d.spawn();
    let st = d.wait_exit(Duration::from_secs(10)).expect("daemon exits");
    assert_eq!(st.code(), Some(1), "{}", d.log_text());
    assert!(d.log_text().contains("not a socket"), "{}", d.log_text());
    assert_eq!(fs::read_to_string(&f).unwrap(), "keep me");
}

#[test]
fn a_second_daemon_on_the_same_base_or_state_dir_exits_before_sweeping() {
    let mut c = Cluster::new();
    let first = c.add("first", &[]);
    let base = c.base("first").to_path_buf();
    // A transfer of the running daemon in flight: its staged file.
    let staged = base.join(".index.html.makuo-Abc123");
    fs::write(&staged, "half of a file").unwrap();

    // Same base, its own state directory and ports.
    let mut d = c.daemon_at(
        "second",
        base.clone(),
        free_tcp_port(),
        None,
        "127.0.0.1",
        c.key_args(),
    );
    d.spawn();
    let st = d
        .wait_exit(Duration::from_secs(10))
        .expect("second daemon exits");
    let log = d.log_text();
    assert_eq!(st.code(), Some(1), "{log}");
    assert!(
        log.contains("base directory") && log.contains("in use by another makuo daemon"),
        "{log}"
    );
    assert!(
        staged.exists(),
        "the second daemon swept the first one's staging"
    );

    // Same state directory, its own base.
    let mut d = c.daemon_on_loopback("third", &[]);
    let at = d.args.iter().position(|a| a == "--state-dir").unwrap();
    d.args[at + 1] = c.daemons[first].state.to_string_lossy().into_owned();
    d.spawn();
    let st = d
        .wait_exit(Duration::from_secs(10))
        .expect("third daemon exits");
    let log = d.log_text();
    assert_eq!(st.code(), Some(1), "{log}");
    assert!(
        log.contains("state directory") && log.contains("in use by another makuo daemon"),
        "{log}"
    );
    assert!(staged.exists());
    assert!(c.daemons[first].alive());
    assert_eq!(c.daemons[first].cmd("status").1, "ok");
}

fn mode_owner(p: &Path) -> (u32, u32, u32) {
    let md = fs::symlink_metadata(p).unwrap();
    (md.mode() & 0o7777, md.uid(), md.gid())
}

#[test]
fn owners_and_set_id_bits_land_only_with_owner_preservation_and_never_on_the_base() {
    if !root_or_skip(
        "owners_and_set_id_bits_land_only_with_owner_preservation_and_never_on_the_base",
        "to push owners",
    ) {
        return;
    }
    let mut c = Cluster::new();
    c.add("plain", &["--no-fsync"]);
    c.add("keeps", &["--no-fsync", "--preserve-owner"]);
    let src = c.src.clone();
    // A crafted tree: a setuid-root program, a setgid+sticky directory, a file of another
    // user, and a wide-open top directory.
    write(&src, "bin/tool", "#!/bin/sh\necho pwned\n");
    fs::set_permissions(src.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(src.join("drop")).unwrap();
    fs::set_permissions(src.join("drop"), fs::Permissions::from_mode(0o3777)).unwrap();
    write(&src, "theirs.txt", "x");
    std::os::unix::fs::chown(src.join("theirs.txt"), Some(65534), Some(65534)).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o777)).unwrap();
    for m in ["plain", "keeps"] {
        fs::set_permissions(c.base(m), fs::Permissions::from_mode(0o750)).unwrap();
    }
    let before: Vec<_> = ["plain", "keeps"]
        .iter()
        .map(|m| mode_owner(c.base(m)))
        .collect();
    let out = c.direct("sync", &["-r", "."]);
    assert_eq!(out.code, 0, "{out}");

    let plain = c.base("plain");
    assert_eq!(mode_owner(&plain.join("bin/tool")), (0o755, 0, 0));
    assert_eq!(mode_owner(&plain.join("drop")).0, 0o777);
    assert_eq!(
        mode_owner(&plain.join("theirs.txt")).1,
        0,
        "the daemon's own user"
    );
    let keeps = c.base("keeps");
    assert_eq!(mode_owner(&keeps.join("bin/tool")), (0o4755, 0, 0));
    assert_eq!(mode_owner(&keeps.join("drop")).0, 0o3777);
    assert_eq!(mode_owner(&keeps.join("theirs.txt")).1, 65534);
    // The base directories themselves: untouched, with or without -O.
    for (m, b) in ["plain", "keeps"].iter().zip(&before) {
        assert_eq!(&mode_owner(c.base(m)), b, "{m}'s base");
    }
}

#[test]
fn a_member_name_with_a_newline_is_escaped_in_members_and_in_logs() {
    let mut c = Cluster::new();
    let w = c.add("watcher", &[]);
    let mut d = c.daemon_on_loopback("evil", &[]);
    let at = d.args.iter().position(|a| a == "--name").unwrap();
    d.args[at + 1] = "evil\nforged 10.9.9.9 live".into();
    // Not pushed into the cluster's list: its name is not the one `Daemon` knows.
    d.start();
    let want = "evil\\#012forged\\#04010.9.9.9\\#040live 127.0.0.1 live";
    let lines = wait_for(
        "the watcher to list the member",
        Duration::from_secs(10),
        || {
            let (lines, last) = c.daemons[w].cmd("members");
            assert_eq!(last, "ok", "{lines:?}");
            lines.iter().any(|l| l.starts_with(want)).then_some(lines)
        },
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("forged")),
        "a forged line: {lines:?}"
    );
    // The front end shows the same.
    let out = via(&c.daemons[w].console_addr(), "members", "");
    assert_eq!(out.code, 0, "{out}");
    // One row: the whole forged name, then the member's real address and state.
    assert!(
        out.stdout.lines().any(
            |l| l.starts_with("evil\\#012forged\\#04010.9.9.9\\#040live ")
                && l.split_whitespace().nth(1) == Some("127.0.0.1")
                && l.split_whitespace().nth(2) == Some("live")
        ),
        "{out}"
    );
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("forged")),
        "{out}"
    );
    // Logs: the watcher's (member up) and the member's own (its start-up line).
    let log = c.daemons[w].log_text();
    assert!(log.contains("member up: evil\\#012forged"), "{log}");
    for text in [log, d.log_text()] {
        assert!(
            text.lines().all(is_log_line),
            "a line not written by the daemon: {text}"
        );
    }
    d.stop();
}
