//! Invariants over every command and flag (ripgrep `defs.rs` style) and parse tests.

use super::*;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Every command in the tree, with its path (`makuo sync`, `makuo exclude add`, ...).
fn all_commands() -> Vec<(String, clap::Command)> {
    fn walk(prefix: &str, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
        let path = format!("{prefix} {}", cmd.get_name()).trim().to_owned();
        out.push((path.clone(), cmd.clone()));
        for sub in cmd.get_subcommands() {
            walk(&path, sub, out);
        }
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    walk("", &cmd, &mut out);
    out
}

fn parse(args: &[&str]) -> Result<(Cli, ArgMatches), clap::Error> {
    Cli::parse_with_matches(std::iter::once("makuo").chain(args.iter().copied()))
}

#[test]
fn debug_assert() {
    Cli::command().debug_assert();
}

#[test]
fn no_duplicate_short_or_long_flags() {
    for (path, cmd) in all_commands() {
        let mut shorts: BTreeMap<char, String> = BTreeMap::new();
        let mut longs: BTreeMap<String, String> = BTreeMap::new();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().to_string();
            let aliases = arg.get_short_and_visible_aliases().unwrap_or_default();
            for s in aliases {
                if let Some(prev) = shorts.insert(s, id.clone()) {
                    panic!("{path}: -{s} is used by both --{prev} and --{id}");
                }
            }
            let longs_of = arg.get_long_and_visible_aliases().unwrap_or_default();
            for l in longs_of {
                if let Some(prev) = longs.insert(l.to_owned(), id.clone()) {
                    panic!("{path}: --{l} is used by both {prev} and {id}");
                }
            }
        }
    }
}

/// Value names come from one small vocabulary, so the docs read the same everywhere.
const VALUE_NAMES: &[&str] = &[
    "ADDR", "BYTES", "DIR", "FILE", "GROUP", "HOST", "KEYFILE", "LEVEL", "MBIT", "MS", "N", "RULE",
    "NAME", "PATH", "PATTERN", "PORT", "RATE", "SECONDS", "USER", "WHAT", "GROUPS", "CMD", "IFACE",
];

#[test]
fn every_value_has_a_known_value_name() {
    for (path, cmd) in all_commands() {
        for arg in cmd.get_arguments() {
            if !arg.get_action().takes_values() {
                continue;
            }
            let id = arg.get_id();
            let names = arg.get_value_names().unwrap_or_default();
            assert!(
                !names.is_empty(),
                "{path}: {id} takes a value but has no value name"
            );
            for n in names {
                assert!(
                    VALUE_NAMES.contains(&n.as_str()),
                    "{path}: {id} has value name {n}, not in VALUE_NAMES"
                );
            }
        }
    }
}

#[test]
fn every_arg_and_command_has_help() {
    for (path, cmd) in all_commands() {
        assert!(cmd.get_about().is_some(), "{path} has no about");
        for arg in cmd.get_arguments() {
            assert!(
                arg.get_help()
                    .is_some_and(|h| !h.to_string().trim().is_empty()),
                "{path}: {} has no help",
                arg.get_id()
            );
        }
    }
}

#[test]
fn one_line_helps_fit_one_line() {
    for (path, cmd) in all_commands() {
        for arg in cmd.get_arguments() {
            let h = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(
                !h.contains('\n'),
                "{path}: {}: short help spans lines",
                arg.get_id()
            );
            assert!(
                h.len() <= 100,
                "{path}: {}: short help too long",
                arg.get_id()
            );
        }
    }
}

#[test]
fn daemon_takes_makuosan_letters() {
    let (cli, _) = parse(&[
        "daemon",
        "-b",
        "/srv",
        "-m",
        "239.1.2.3",
        "-p",
        "6000",
        "-i",
        "10.0.0.1",
        "-l",
        "10.0.0.1",
        "-P",
        "5001",
        "-U",
        "/run/makuo.sock",
        "-K",
        "pw",
        "-n",
        "-d",
        "9",
        "-u",
        "www",
        "-g",
        "www",
        "-G",
        "adm,7",
        "-c",
        "-r",
        "-s",
        "-T",
        "100",
        "-R",
        "1000",
        "-S",
        "2000",
        "-k",
        "a",
        "-k",
        "b",
        "-O",
        "-f",
        "3",
    ])
    .unwrap();
    let Command::Daemon(d) = cli.command else {
        panic!("not daemon")
    };
    assert_eq!(d.cluster.base, PathBuf::from("/srv"));
    assert_eq!(d.cluster.group, IpAddr::from([239, 1, 2, 3]));
    assert_eq!(d.cluster.port, 6000);
    assert_eq!(d.cluster.keys.len(), 2);
    assert_eq!(d.console_port(), 5001);
    // makuosan's -l is the console's listen address, -O owner-match, -f parallel sends.
    assert_eq!(d.console_addr, IpAddr::from([10, 0, 0, 1]));
    assert!(d.owner_match && !d.preserve_owner);
    assert_eq!(d.parallel, 3);
    assert_eq!(d.run_group.as_deref(), Some("www"));
    assert_eq!(d.groups.as_deref(), Some("adm,7"));
    assert!(d.chroot && d.chroot_dir.is_none());
    assert!(d.foreground && d.no_receive && d.no_send);
    assert_eq!(
        (d.loglevel, d.rate, d.rcvbuf, d.sndbuf),
        (9, Some(100), Some(1000), Some(2000))
    );
}

#[test]
fn daemon_defaults() {
    let (cli, _) = parse(&["daemon"]).unwrap();
    let Command::Daemon(d) = cli.command else {
        panic!("not daemon")
    };
    assert_eq!(d.cluster.base, PathBuf::from("."));
    assert_eq!(d.cluster.group, IpAddr::from([224, 0, 0, 108]));
    assert_eq!(
        (d.cluster.port, d.console_port(), d.cluster.mtu),
        (5000, 5000, 1500)
    );
    assert_eq!(d.console_addr, IpAddr::from([127, 0, 0, 1]));
    assert!(d.console_socket.is_none() && d.cluster.name.is_none());
    assert!(!d.no_console && !d.owner_match && d.parallel == 5 && d.metrics.is_none());
}

#[test]
fn console_port_follows_the_udp_port_as_in_makuosan() {
    let (cli, _) = parse(&["daemon", "-p", "6000"]).unwrap();
    let Command::Daemon(d) = cli.command else {
        panic!("not daemon")
    };
    assert_eq!(d.console_port(), 6000);
    let (cli, _) = parse(&["daemon", "-p", "6000", "-P", "7000"]).unwrap();
    let Command::Daemon(d) = cli.command else {
        panic!("not daemon")
    };
    assert_eq!(d.console_port(), 7000);
    // -o (no console) and -U (a unix console) contradict each other.
    assert!(parse(&["daemon", "-o", "-U", "/run/m.sock"]).is_err());
    let (cli, _) = parse(&["daemon", "-o", "--bind", "239.1.1.1"]).unwrap();
    let Command::Daemon(d) = cli.command else {
        panic!("not daemon")
    };
    assert!(d.no_console && d.bind == Some(IpAddr::from([239, 1, 1, 1])));
}

#[test]
fn ipv6_group_interface_name_and_ttl() {
    let (cli, _) = parse(&[
        "daemon",
        "-m",
        "ff15::4d4b",
        "-i",
        "eth1",
        "--ttl",
        "4",
        "--bind",
        "::",
    ])
    .unwrap();
    let Command::Daemon(d) = cli.command else {
        panic!("not daemon")
    };
    assert_eq!(d.cluster.group, "ff15::4d4b".parse::<IpAddr>().unwrap());
    assert_eq!(d.cluster.interface.as_deref(), Some("eth1"));
    assert_eq!(d.cluster.ttl, 4);
    assert_eq!(d.bind, Some("::".parse().unwrap()));
    let (cli, _) = parse(&["daemon"]).unwrap();
    let Command::Daemon(d) = cli.command else {
        panic!("not daemon")
    };
    assert_eq!(d.cluster.ttl, 1);
    assert!(parse(&["daemon", "--ttl", "0"]).is_err());
    assert!(parse(&["daemon", "--ttl", "256"]).is_err());
}

#[test]
fn peers_take_addresses_of_both_families_with_or_without_a_port() {
    let (cli, _) = parse(&[
        "daemon",
        "--peer",
        "198.18.0.5",
        "--peer",
        "198.18.0.6:6000",
        "--peer",
        "fd00::1",
        "--peer",
        "[fd00::2]:7000",
    ])
    .unwrap();
    let Command::Daemon(d) = cli.command else {
        panic!("not daemon")
    };
    let got: Vec<String> = d
        .cluster
        .peers
        .iter()
        .map(|p| p.with_default_port(5000).to_string())
        .collect();
    assert_eq!(
        got,
        [
            "198.18.0.5:5000",
            "198.18.0.6:6000",
            "[fd00::1]:5000",
            "[fd00::2]:7000"
        ]
    );
    for bad in ["host.example", "198.18.0.5:0", "fd00::1:5000x", "[fd00::1]"] {
        assert!(parse(&["daemon", "--peer", bad]).is_err(), "{bad}");
    }
}

#[test]
fn group_id_is_an_alias_of_run_group() {
    let (cli, _) = parse(&["daemon", "--group-id", "staff"]).unwrap();
    let Command::Daemon(d) = cli.command else {
        panic!("not daemon")
    };
    assert_eq!(d.run_group.as_deref(), Some("staff"));
}

#[test]
fn at_most_two_keys() {
    let err = parse(&["daemon", "-k", "a", "-k", "b", "-k", "c"]).unwrap_err();
    assert!(err.to_string().contains("at most 2"), "{err}");
    let err = parse(&["sync", "x", "-k", "a", "-k", "b", "-k", "c"]).unwrap_err();
    assert!(err.to_string().contains("at most 2"), "{err}");
}

#[test]
fn value_ranges_are_enforced() {
    assert!(parse(&["daemon", "-d", "10"]).is_err());
    assert!(parse(&["daemon", "--mtu", "100"]).is_err());
    assert!(parse(&["daemon", "-p", "0"]).is_err());
    assert!(parse(&["loglevel", "10"]).is_err());
    assert!(parse(&["loglevel", "3"]).is_ok());
}

#[test]
fn sync_takes_rsync_spellings() {
    let (cli, _) = parse(&[
        "sync",
        "-rnc",
        "-t",
        "web1",
        "--target=10.0.0.2",
        "--delete",
        "--max-delete",
        "5",
        "--bwlimit",
        "1M",
        "--timeout",
        "30",
        "--progress",
        "--no-fsync",
        "--json",
        "-vv",
        "htdocs",
        "lib",
    ])
    .unwrap();
    let Command::Sync(s) = cli.command else {
        panic!("not sync")
    };
    assert_eq!(s.paths, [PathBuf::from("htdocs"), PathBuf::from("lib")]);
    assert!(s.select.recursive && s.dry_run && s.checksum && s.delete);
    assert_eq!(s.select.targets, ["web1", "10.0.0.2"]);
    assert_eq!(
        (s.max_delete, s.bwlimit, s.timeout),
        (Some(5), Some(1 << 20), Some(30))
    );
    assert!(s.progress && s.no_fsync && s.front.output.json);
    assert_eq!(s.front.output.verbose, 2);
    assert_eq!(s.front.discover, 500);
    assert_eq!(
        s.front.console.console,
        ConsoleAddr::Tcp("127.0.0.1:5000".into())
    );
}

#[test]
fn sync_needs_a_path_and_max_delete_needs_delete() {
    assert!(parse(&["sync"]).is_err());
    assert!(parse(&["sync", "x", "--max-delete", "1"]).is_err());
    assert!(parse(&["check"]).is_ok());
}

#[test]
fn direct_conflicts_with_console() {
    assert!(parse(&["members", "--direct"]).is_ok());
    assert!(parse(&["members", "--direct", "--console", "h:1"]).is_err());
}

#[test]
fn exclude_subcommands() {
    let (cli, _) = parse(&["exclude", "add", "*.swp", "*.tmp"]).unwrap();
    let Command::Exclude(e) = cli.command else {
        panic!("not exclude")
    };
    let ExcludeAction::Add(p) = e.action else {
        panic!("not add")
    };
    assert_eq!(p.patterns, ["*.swp", "*.tmp"]);
    assert!(parse(&["exclude", "add"]).is_err());
    assert!(parse(&["exclude", "list"]).is_ok());
    assert!(parse(&["exclude", "clear"]).is_ok());
    assert!(parse(&["exclude", "--direct", "list"]).is_err());
}

#[test]
fn console_addr() {
    assert_eq!(
        "127.0.0.1:5000".parse::<ConsoleAddr>(),
        Ok(ConsoleAddr::Tcp("127.0.0.1:5000".into()))
    );
    assert_eq!(
        "[::1]:5000".parse::<ConsoleAddr>(),
        Ok(ConsoleAddr::Tcp("[::1]:5000".into()))
    );
    assert_eq!(
        "/run/makuo.sock".parse::<ConsoleAddr>(),
        Ok(ConsoleAddr::Unix("/run/makuo.sock".into()))
    );
    assert_eq!(
        "./s".parse::<ConsoleAddr>(),
        Ok(ConsoleAddr::Unix("./s".into()))
    );
    assert_eq!(
        "tcp:127.0.0.1:5000".parse::<ConsoleAddr>(),
        Ok(ConsoleAddr::Tcp("127.0.0.1:5000".into()))
    );
    assert_eq!(
        "unix:makuosan.sock".parse::<ConsoleAddr>(),
        Ok(ConsoleAddr::Unix("makuosan.sock".into()))
    );
    for bad in [
        "localhost",
        ":5000",
        "h:0",
        "h:x",
        "h:70000",
        "",
        "unix:",
        "tcp:h",
    ] {
        assert!(bad.parse::<ConsoleAddr>().is_err(), "{bad}");
    }
}

#[test]
fn bwlimit_units() {
    let ok = [
        ("0", 0),
        ("1", 1024),
        ("100", 100 * 1024),
        ("1k", 1024),
        ("1K", 1024),
        ("1KiB", 1024),
        ("1KB", 1000),
        ("1kb", 1000),
        ("1m", 1 << 20),
        ("1MiB", 1 << 20),
        ("1MB", 1_000_000),
        ("1.5M", 3 << 19),
        ("2G", 2 << 30),
        ("1T", 1 << 40),
        ("1P", 1 << 50),
        ("512b", 512),
        ("600B", 600),
        (" 2k ", 2048),
        ("0.5", 512),
    ];
    for (s, want) in ok {
        assert_eq!(parse_bwlimit(s), Ok(want), "{s}");
    }
    for bad in [
        "",
        "k",
        ".",
        "-1",
        "1x",
        "1kx",
        "1..2",
        "1.2.3",
        "1 k",
        "100b",
        "1bb",
        "0.1",
        "1e3",
        "99999999999999999999P",
    ] {
        assert!(parse_bwlimit(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn min_rate_defaults_and_zero() {
    let (cli, _) = parse(&["sync", "x"]).unwrap();
    let Command::Sync(s) = cli.command else {
        panic!()
    };
    assert_eq!(min_rate_floor(s.min_rate), Some(10 << 20));
    let (cli, _) = parse(&["sync", "--min-rate=0", "x"]).unwrap();
    let Command::Sync(s) = cli.command else {
        panic!()
    };
    assert_eq!(min_rate_floor(s.min_rate), None);
    let (cli, _) = parse(&["sync", "--min-rate=12.5MB", "x"]).unwrap();
    let Command::Sync(s) = cli.command else {
        panic!()
    };
    assert_eq!(min_rate_floor(s.min_rate), Some(12_500_000));
    assert!(parse(&["sync", "--min-rate=fast", "x"]).is_err());
    let (cli, _) = parse(&["daemon", "--min-rate", "50M"]).unwrap();
    let Command::Daemon(d) = cli.command else {
        panic!()
    };
    assert_eq!(d.min_rate, Some(50 << 20));
}

#[test]
fn bwlimit_through_clap() {
    let (cli, _) = parse(&["sync", "--bwlimit=2M", "x"]).unwrap();
    let Command::Sync(s) = cli.command else {
        panic!("not sync")
    };
    assert_eq!(s.bwlimit, Some(2 << 20));
    assert!(parse(&["sync", "--bwlimit=2Q", "x"]).is_err());
}

#[test]
fn filters_keep_command_line_order() {
    use FilterArgKind::*;
    let (_, m) = parse(&[
        "sync",
        "--include",
        "*.php",
        "--exclude=*.tmp",
        "-r",
        "--exclude-from",
        "ex.txt",
        "--include=keep/",
        "src",
        "--exclude",
        "*",
    ])
    .unwrap();
    let want = vec![
        (Include, "*.php".to_owned()),
        (Exclude, "*.tmp".to_owned()),
        (ExcludeFrom, "ex.txt".to_owned()),
        (Include, "keep/".to_owned()),
        (Exclude, "*".to_owned()),
    ];
    let (_, sub) = m.subcommand().unwrap();
    assert_eq!(filter_args_in_order(sub), want);
    // Top-level matches descend into the subcommand.
    assert_eq!(filter_args_in_order(&m), want);

    let (_, m) = parse(&["check", "--exclude", "a", "--include", "b"]).unwrap();
    assert_eq!(
        filter_args_in_order(&m),
        [(Exclude, "a".to_owned()), (Include, "b".to_owned())]
    );
    // Subcommands without filter flags give nothing rather than panicking.
    let (_, m) = parse(&["members"]).unwrap();
    assert!(filter_args_in_order(&m).is_empty());
    let (_, m) = parse(&["sync", "x"]).unwrap();
    assert!(filter_args_in_order(&m).is_empty());
}

#[test]
fn rsync_filter_flags_keep_their_order_and_f_counts() {
    use FilterArgKind::*;
    let (_, m) = parse(&[
        "sync",
        "-F",
        "--exclude=a",
        "-f",
        "P /keep",
        "--include-from",
        "inc.txt",
        "-F",
        "--filter=- b",
        "x",
    ])
    .unwrap();
    assert_eq!(
        filter_args_in_order(&m),
        [
            (FilterFiles, String::new()),
            (Exclude, "a".to_owned()),
            (Filter, "P /keep".to_owned()),
            (IncludeFrom, "inc.txt".to_owned()),
            (FilterFiles, String::new()),
            (Filter, "- b".to_owned()),
        ]
    );
    let (_, m) = parse(&["sync", "-rFF", "x"]).unwrap();
    assert_eq!(filter_args_in_order(&m).len(), 2);
}

#[test]
fn sync_takes_rsync_archive_itemize_stats_and_lists() {
    let (cli, _) = parse(&["sync", "-avzi", "--stats", "."]).unwrap();
    let Command::Sync(s) = cli.command else {
        panic!("not sync")
    };
    assert!(s.archive && s.compress && s.itemize_changes && s.stats);
    assert_eq!(s.front.output.verbose, 1);
    assert!(s.front.cluster.interface.is_none());
    // The interface keeps its long name; -i is itemize here, but still the daemon's -i.
    let (cli, _) = parse(&["sync", "--interface", "10.0.0.1", "x"]).unwrap();
    let Command::Sync(s) = cli.command else {
        panic!("not sync")
    };
    assert_eq!(s.front.cluster.interface, Some("10.0.0.1".to_string()));
    assert!(parse(&["daemon", "-i", "10.0.0.1"]).is_ok());
    assert!(parse(&["members", "-i", "10.0.0.1"]).is_ok());
    // --files-from stands in for PATH; --from0 needs it.
    let (cli, _) = parse(&["sync", "--files-from", "-", "-0"]).unwrap();
    let Command::Sync(s) = cli.command else {
        panic!("not sync")
    };
    assert_eq!(s.list.files_from, Some(PathBuf::from("-")));
    assert!(s.list.from0 && s.paths.is_empty());
    assert!(parse(&["sync", "--from0", "x"]).is_err());
}

#[test]
fn watch_args() {
    let (cli, _) = parse(&["watch", "-a", "--delete", "--delay", "200", "-i", "htdocs"]).unwrap();
    let Command::Watch(w) = cli.command else {
        panic!("not watch")
    };
    assert!(w.archive && w.delete && w.itemize_changes);
    assert_eq!(
        (w.delay, w.paths.clone()),
        (200, vec![PathBuf::from("htdocs")])
    );
    let (cli, _) = parse(&["watch", "x"]).unwrap();
    let Command::Watch(w) = cli.command else {
        panic!("not watch")
    };
    assert_eq!(w.delay, 500);
    assert!(parse(&["watch"]).is_err());
    assert!(parse(&["watch", "--list"]).is_ok());
    assert!(parse(&["watch", "--list", "--direct"]).is_err());
    assert!(parse(&["watch", "--delay", "0", "x"]).is_err());
}

#[test]
fn help_carries_the_exit_table() {
    let help = Cli::command().render_long_help().to_string();
    for e in exit::Exit::ALL {
        assert!(help.contains(e.meaning()), "{help}");
    }
}

/// The defaults the help states for engine timings are the engine's own.
#[test]
fn stated_engine_defaults_are_the_engines() {
    let d = crate::proto::Config::default();
    let cmd = Cli::command();
    let daemon = cmd.find_subcommand("daemon").unwrap();
    let help = |id: &str| {
        daemon
            .get_arguments()
            .find(|a| a.get_id() == id)
            .and_then(|a| a.get_help())
            .unwrap()
            .to_string()
    };
    assert!(help("heartbeat").contains(&format!("[default: {}]", d.heartbeat.as_millis())));
    assert!(
        help("member_timeout").contains(&format!("[default: {}]", d.member_timeout.as_millis()))
    );
    let long = daemon
        .get_arguments()
        .find(|a| a.get_id() == "member_expiry")
        .and_then(|a| a.get_long_help())
        .unwrap()
        .to_string();
    assert!(long.contains(&format!("[default: {},", d.member_expiry.as_millis())));
    for sub in cmd.get_subcommands() {
        let mut sub = sub.clone();
        let h = sub.render_long_help().to_string();
        assert!(!h.contains("the engine's"), "{}: {h}", sub.get_name());
        assert!(!h.contains("JSON lines"), "{}", sub.get_name());
    }
}
