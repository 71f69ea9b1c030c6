//! `makuo watch`: hands a watch to the daemon, or runs one in the foreground with its own node.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::ArgMatches;

use super::direct::{direct_node, discover, push_on, remembered, PushParams};
use super::info::simple;
use super::{explicit, quote, rules_in_order, send_rules, want_direct, Console};
use crate::exit::Exit;
use crate::node::{self, Node};
use crate::proto::manifest::PushOptions;
use crate::report::Outcome;

/// `makuo watch`: hands the watch to the daemon, or runs it here in the foreground.
pub fn watch(args: &crate::cli::WatchArgs, sub: &ArgMatches) -> Result<Exit> {
    let front = &args.front;
    let paths: Vec<String> = args
        .paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if args.list || args.stop {
        let mut c = Console::connect(
            &front.console.console,
            front.console.password_file.as_deref(),
        )?;
        let mut line = String::from(if args.list {
            "watch list"
        } else {
            "watch del --"
        });
        for p in &paths {
            line.push(' ');
            line.push_str(&quote(p));
        }
        return simple(&mut c, &line, &front.output);
    }
    let rules = rules_in_order(sub)?;
    let recursive = args.select.recursive || args.archive;
    if !want_direct(front, sub) {
        match Console::connect(
            &front.console.console,
            front.console.password_file.as_deref(),
        ) {
            Ok(mut c) => {
                send_rules(&mut c, &rules, &front.console.console.to_string())?;
                let mut line = String::from("watch add");
                if recursive {
                    line.push_str(" -r");
                }
                if args.delete {
                    line.push_str(" --delete");
                }
                if args.checksum {
                    line.push_str(" -c");
                }
                if args.no_fsync {
                    line.push_str(" --no-fsync");
                }
                line.push_str(&format!(" --delay {}", args.delay));
                for t in &args.select.targets {
                    line.push_str(&format!(" -t {}", quote(t)));
                }
                line.push_str(" --");
                for p in &paths {
                    line.push(' ');
                    line.push_str(&quote(p));
                }
                return simple(&mut c, &line, &front.output);
            }
            Err(e) => {
                // A console held by someone else is reported, never silently bypassed.
                if explicit(sub, "console") || e.is::<crate::console_trust::Untrusted>() {
                    return Err(e);
                }
                if !front.output.quiet {
                    eprintln!(
                        "makuo: {} (watching in the foreground)",
                        super::direct_line(front, &e)
                    );
                }
            }
        }
    }
    super::check_base(front)?;
    front.cluster.require_key()?;
    if front.cluster.keys.is_empty() && !front.output.quiet {
        eprintln!(
            "makuo: WARNING: --insecure: no cluster key (-k); these pushes are UNAUTHENTICATED"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("signal handler")?;
    }
    let cfg = crate::watch::WatchConfig {
        base: front.cluster.base.clone(),
        paths: paths.iter().map(|p| crate::tree::path_arg(p)).collect(),
        recursive,
        delete: args.delete,
        delay: Duration::from_millis(args.delay),
        rules,
        options: PushOptions {
            checksum: args.checksum,
            owners: rustix::process::geteuid().is_root(),
            delete: args.delete,
            delete_only: false,
            dry_run: false,
            no_fsync: args.no_fsync,
            // rsync's -a includes -D.
            devices: args.archive,
            specials: args.archive,
            ..PushOptions::default()
        },
    };
    let mut watch = crate::watch::Watch::new(cfg)?;
    let mut node = direct_node(front, None, None)?;
    let (_, remembered) = remembered(front)?;
    let expect: Vec<String> = remembered.iter().map(|r| r.name.clone()).collect();
    discover(&mut node, Duration::from_millis(front.discover), &expect)?;
    if !front.output.quiet {
        eprintln!(
            "makuo: watching {} ({} directories); {} members",
            paths.join(" "),
            watch.status.lock().map(|s| s.watched).unwrap_or(0),
            node.engine.members().filter(|m| m.receives()).count()
        );
    }
    let known = node.engine.members().map(|m| m.node).collect();
    let mut pusher = DirectPusher {
        node,
        remembered,
        targets: args.select.targets.clone(),
        out: front.output.quiet,
        verbose: front.output.verbose,
        itemize: args.itemize_changes,
        no_member: format!(
            "no member answered on {}",
            std::net::SocketAddr::new(front.cluster.group, front.cluster.port)
        ),
        known,
    };
    let r = watch.run(&mut pusher, &stop);
    pusher.node.leave();
    r.map(|_| Exit::Ok)
}

/// The foreground watch's pusher: its own node, kept turning between pushes.
struct DirectPusher {
    node: Node,
    remembered: Vec<crate::state::Remembered>,
    targets: Vec<String>,
    /// `-q`.
    out: bool,
    verbose: u8,
    itemize: bool,
    no_member: String,
    /// Members already pushed to (a new one gets a full compare).
    known: std::collections::BTreeSet<u64>,
}

impl crate::watch::Pusher for DirectPusher {
    fn idle(&mut self, d: Duration) -> Result<()> {
        self.node.turn(d)?;
        Ok(())
    }

    fn push(&mut self, sel: node::Selection) -> Result<Outcome> {
        let started = Instant::now();
        let params = PushParams {
            targets: &self.targets,
            max_delete: None,
            atomic: false,
            check: false,
            timeout: Some(Duration::from_secs(60)),
            progress: false,
            verbose: self.verbose,
            itemize: self.itemize,
            stats: false,
            walk_time: sel.walk_time,
            no_member: self.no_member.clone(),
        };
        let mut o = push_on(
            &mut self.node,
            sel.manifest,
            &self.remembered,
            None,
            &params,
            started,
        )?;
        o.fold_walk(sel.vanished, sel.missing.len());
        if self.itemize {
            for l in o.itemized() {
                println!("{l}");
            }
        }
        Ok(o)
    }

    fn log(&mut self, line: &str) {
        if !self.out || line.contains("failed") {
            eprintln!("makuo: {}", crate::escape::text_str(line));
        }
    }

    fn new_members(&mut self) -> bool {
        let now: std::collections::BTreeSet<u64> = self
            .node
            .engine
            .members()
            .filter(|m| m.receives())
            .map(|m| m.node)
            .collect();
        let new = now.iter().any(|n| !self.known.contains(n));
        if new {
            self.known.extend(now);
        }
        new
    }
}
