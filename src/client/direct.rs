//! Direct mode: the front end's own in-process node, member discovery and one push run to
//! its end (targets chosen, progress shown, results gathered into an [`Outcome`]).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::{print_outcome_with, PushCmd};
use crate::apply::ApplyOptions;
use crate::cli::FrontArgs;
use crate::exit::Exit;
use crate::node::{self, Node, NodeConfig};
use crate::proto::{self, Command, Event, PushRequest};
use crate::report::{Absent, Outcome};

fn load_keys(front: &FrontArgs) -> Result<Vec<crate::seal::Key>> {
    front
        .cluster
        .keys
        .iter()
        .map(|p| crate::seal::load_key(p).map_err(|e| anyhow!("{e}")))
        .collect()
}

/// Starts an in-process node for direct mode (it does not receive pushes itself).
pub(super) fn direct_node(
    front: &FrontArgs,
    rate: Option<u64>,
    floor: Option<u64>,
) -> Result<Node> {
    let name = front
        .cluster
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-sync", node::hostname()));
    let keys = load_keys(front)?;
    let engine = proto::Config {
        node_id: node::random_node_id(),
        name: name.clone(),
        receive: false,
        rate_limit: rate,
        min_rate: crate::cli::min_rate_floor(floor),
        seed: node::random_node_id(),
        mtu: front.cluster.mtu as usize,
        relay: front.cluster.relay,
        ..proto::Config::default()
    };
    Node::new(NodeConfig {
        group: front.cluster.group,
        port: front.cluster.port,
        interface: front.cluster.interface.clone(),
        ttl: front.cluster.ttl,
        peers: front
            .cluster
            .peers
            .iter()
            .map(|p| p.with_default_port(front.cluster.port))
            .collect(),
        listen: None,
        reply_port: 0,
        rcvbuf: 0,
        sndbuf: 0,
        engine,
        keys,
        base: front.cluster.base.clone(),
        apply: ApplyOptions {
            node_name: name,
            ..Default::default()
        },
    })
}

/// Listens for members for at most `d`. Members answer a join within milliseconds (tens in
/// a big group) and pass along everyone they know, so once some have answered and no new one
/// has appeared for a short quiet period (and every remembered member is live), waiting
/// longer learns nothing: discovery ends early. The quiet period is [`QUIET`], or only
/// [`SETTLED`] once every member named by those that answered, and every `--peer` on
/// another host, has answered too (members that hear nobody else, across subnets, are
/// named by nobody: the listed peers stand for them).
pub(super) fn discover(node: &mut Node, d: Duration, expect: &[String]) -> Result<()> {
    const QUIET: Duration = Duration::from_millis(50);
    const SETTLED: Duration = Duration::from_millis(5);
    let start = Instant::now();
    let end = start + d;
    let mut count = 0;
    let mut changed = start;
    while Instant::now() < end {
        for e in node.turn(
            end.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(10)),
        )? {
            if let Event::VersionRefused(f) = e {
                eprintln!("makuo: {}", crate::escape::text_str(&f.describe()));
            }
        }
        warn_notices(node);
        let (mut n, mut heard) = (0, true);
        for m in node.engine.members().filter(|m| m.receives()) {
            n += 1;
            heard &= m.direct;
        }
        if n != count {
            count = n;
            changed = Instant::now();
        }
        let all_expected = expect
            .iter()
            .all(|name| node.engine.members().any(|m| &m.name == name));
        let quiet = if heard && !node.peers_unheard() {
            SETTLED
        } else {
            QUIET
        };
        if count > 0 && all_expected && changed.elapsed() >= quiet {
            break;
        }
    }
    Ok(())
}

/// Prints what the node says an operator must hear (another seal format on the wire).
fn warn_notices(node: &mut Node) {
    for n in node.take_notices() {
        eprintln!("makuo: warning: {n}");
    }
}

pub(super) fn remembered(
    front: &FrontArgs,
) -> Result<(
    Option<crate::state::StateDir>,
    Vec<crate::state::Remembered>,
)> {
    match &front.cluster.state_dir {
        Some(d) => {
            let s = crate::state::StateDir::open(d)?;
            let r = s.remembered().cloned().collect();
            Ok((Some(s), r))
        }
        None => Ok((None, Vec::new())),
    }
}

pub(super) fn direct_push(front: &FrontArgs, cmd: &PushCmd) -> Result<Exit> {
    super::check_base(front)?;
    front.cluster.require_key()?;
    let started = Instant::now();
    let out = &front.output;
    let base = &front.cluster.base;
    // Walking (and hashing) the tree and listening for members both take tens of
    // milliseconds on a big tree; they overlap.
    let (sel, found) = std::thread::scope(|s| {
        s.spawn(proto::repair::warm_up);
        let walk = s.spawn(|| {
            let rollback = cmd.options.release.as_ref().is_some_and(|r| r.rollback);
            let sel = if rollback {
                Ok(node::Selection::nothing(cmd.options.clone()))
            } else {
                node::build_manifest(
                    base,
                    &node::Select {
                        paths: &cmd.paths,
                        recursive: cmd.recursive,
                        files_from: cmd.files_from,
                        rules: &cmd.rules,
                    },
                    cmd.options.clone(),
                )
            };
            (sel, started.elapsed())
        });
        let found = (|| -> Result<_> {
            let mut node = direct_node(front, cmd.bwlimit, cmd.min_rate)?;
            let (state, remembered) = remembered(front)?;
            let expect: Vec<String> = remembered.iter().map(|r| r.name.clone()).collect();
            discover(&mut node, Duration::from_millis(front.discover), &expect)?;
            Ok((node, state, remembered, started.elapsed()))
        })();
        (walk.join(), found)
    });
    let (sel, walked) = sel.map_err(|_| anyhow!("walking the tree failed unexpectedly"))?;
    let sel = match sel {
        Ok(sel) => sel,
        Err(e) => {
            if let Ok((mut node, ..)) = found {
                node.leave();
            }
            return Err(e);
        }
    };
    let (mut node, mut state, remembered, discovered) = found?;
    for (p, why) in &sel.skipped {
        if !out.quiet {
            eprintln!("{}", crate::tree::skip_line(p, why));
        }
    }
    if front.cluster.keys.is_empty() && !out.quiet {
        eprintln!("makuo: WARNING: --insecure: no cluster key (-k); this push is UNAUTHENTICATED");
    }
    if out.verbose > 1 {
        eprintln!(
            "selected {} entries after {:.3}s; discovered {} members after {:.3}s",
            sel.manifest.entries.len(),
            walked.as_secs_f64(),
            node.engine.members().filter(|m| m.receives()).count(),
            discovered.as_secs_f64()
        );
    }
    for (_, why) in &sel.missing {
        // rsync prints these even with -q.
        eprintln!("makuo: {why}");
    }
    for why in &sel.warnings {
        eprintln!("makuo: warning: {why}");
    }
    let params = PushParams {
        targets: &cmd.targets,
        max_delete: cmd.max_delete,
        atomic: cmd.atomic,
        check: cmd.check,
        timeout: cmd.timeout,
        progress: cmd.progress,
        verbose: out.verbose,
        // -v lists every path, from the itemized changes.
        itemize: cmd.itemize || out.verbose > 0,
        stats: cmd.stats,
        walk_time: walked,
        no_member: format!(
            "no member answered on {} within {} ms",
            std::net::SocketAddr::new(front.cluster.group, front.cluster.port),
            front.discover
        ),
    };
    let mut o = push_on(
        &mut node,
        sel.manifest,
        &remembered,
        state.as_mut(),
        &params,
        started,
    )?;
    node.leave();
    if out.verbose > 1 {
        eprintln!("push done after {:.3}s", started.elapsed().as_secs_f64());
    }
    o.fold_walk(sel.vanished, sel.missing.len());
    Ok(print_outcome_with(
        &o,
        out,
        cmd.check,
        cmd.itemize,
        cmd.stats,
    ))
}

/// How [`push_on`] runs one push.
pub(crate) struct PushParams<'a> {
    /// `-t`: only these members.
    pub targets: &'a [String],
    /// `--max-delete`.
    pub max_delete: Option<u64>,
    /// `--atomic`.
    pub atomic: bool,
    /// A check (checksums compared, nothing changed).
    pub check: bool,
    /// Give up after this long without progress.
    pub timeout: Option<Duration>,
    /// Show a spinner on a terminal.
    pub progress: bool,
    /// `-v` count.
    pub verbose: u8,
    /// Fill every member's itemized changes (`-i`).
    pub itemize: bool,
    /// Fill the statistics (`--stats`).
    pub stats: bool,
    /// How long the walk took (for the statistics).
    pub walk_time: Duration,
    /// The reason given when no member is live.
    pub no_member: String,
}

/// Runs one push on a node that has discovered the members: chooses the targets,
/// multicasts, waits for every member's result and returns the outcome (the walk's
/// vanished and missing files not folded in).
pub(crate) fn push_on(
    node: &mut Node,
    manifest: crate::proto::manifest::Manifest,
    remembered: &[crate::state::Remembered],
    state: Option<&mut crate::state::StateDir>,
    p: &PushParams<'_>,
    started: Instant,
) -> Result<Outcome> {
    let (live, mut absent, unknown) = node::resolve_targets(
        node.engine.members(),
        node.engine.foreign(),
        remembered,
        p.targets,
    );
    for u in unknown {
        absent.push(Absent {
            name: u,
            address: "-".into(),
            reason: "no such member".into(),
        });
    }
    if live.is_empty() {
        let heard = node.engine.members().filter(|m| m.receives()).count();
        let why = if heard > 0 && !p.targets.is_empty() {
            format!(
                "none of the targets ({}) is a live member ({heard} others answered)",
                p.targets.join(", ")
            )
        } else {
            p.no_member.clone()
        };
        // Members that could not be heard because of the key are named. Members cannot open
        // our join to answer it, so wait for one heartbeat period to hear theirs.
        let until = Instant::now() + Duration::from_millis(1200);
        while node.unopened().is_empty() && Instant::now() < until {
            node.turn(Duration::from_millis(50))?;
        }
        let why = match node.unopened_note() {
            Some(note) => format!("{why} ({note})"),
            None => why,
        };
        let mut o = Outcome::failed(Exit::NoMember, why, started.elapsed().as_secs_f64());
        o.members = absent.iter().map(Absent::outcome).collect();
        return Ok(o);
    }
    let manifest_len = if p.stats { manifest.encode().len() } else { 0 };
    let req = PushRequest {
        manifest: manifest.clone(),
        targets: live,
        max_delete: p.max_delete,
        atomic: p.atomic,
    };
    let xfer = node
        .engine
        .handle_command(Instant::now(), Command::Push(req))
        .map_err(|e| anyhow!("{e}"))?;
    let bar = super::progress::Bar::new(p.progress);
    let mut last_activity = Instant::now();
    let mut last_rx = 0;
    let report = loop {
        let events = node.turn(Duration::from_millis(50))?;
        warn_notices(node);
        let rx = node.engine.stats().received;
        if rx != last_rx {
            last_rx = rx;
            last_activity = Instant::now();
        }
        let mut done = None;
        for e in events {
            match e {
                // Member names and errors from the network are in it.
                Event::Progress { line, .. } if bar.on() => {
                    bar.line(&crate::escape::text_str(&line))
                }
                Event::Progress { line, .. } if p.verbose > 0 => {
                    eprintln!("{}", crate::escape::text_str(&line))
                }
                Event::PushDone(r) if r.xfer == xfer => done = Some(r),
                _ => {}
            }
        }
        if let Some(r) = done {
            break r;
        }
        if bar.on() {
            if let Some((d, t, e)) = node.engine.push_bytes(xfer) {
                if t > 0 {
                    let path = e
                        .and_then(|i| manifest.entries.get(i as usize))
                        .map(|e| crate::escape::text(&e.path).into_owned())
                        .unwrap_or_default();
                    bar.bytes(d, t, &path);
                }
            }
        }
        if let Some(t) = p.timeout {
            if last_activity.elapsed() >= t {
                node.engine.abort_all(Instant::now(), "sender timed out");
                let mut o = Outcome::failed(
                    Exit::Timeout,
                    format!("no progress for {}s", t.as_secs()),
                    started.elapsed().as_secs_f64(),
                );
                o.exit = Exit::Timeout.code();
                return Ok(o);
            }
        }
    };
    bar.finish();
    if let Some(s) = state {
        node.remember_applied(s, &report);
        let _ = s.save();
    }
    // Every receiving member the front end knows of by now is in the result: one first heard
    // during the push (its heartbeats came late, or nobody had heard it when discovery
    // ended) was not pushed to, and is named failed rather than left out.
    let (now_live, ..) =
        node::resolve_targets(node.engine.members(), std::iter::empty(), &[], p.targets);
    for n in now_live {
        let Some(m) = node.engine.members().find(|m| m.node == n) else {
            continue;
        };
        let named = report.members.iter().any(|r| r.name == m.name)
            || absent.iter().any(|a| a.name == m.name);
        if !named {
            absent.push(Absent {
                name: m.name.clone(),
                address: m.addr.ip().to_string(),
                reason: "heard only after the push began: not pushed to".into(),
            });
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let mut o = if p.check {
        Outcome::from_check(&manifest, &report, &absent, secs)
    } else {
        Outcome::from_report(&manifest, &report, &absent, secs)
    };
    for m in &report.members {
        if let Some(i) = node.engine.members().find(|i| i.node == m.node) {
            o.set_path(&m.name, &m.addr.ip().to_string(), node.path(i).word());
        }
    }
    if p.itemize && !p.check {
        o.add_itemized(&manifest, &report);
    }
    if p.stats {
        o.add_stats(&manifest, &report, manifest_len, p.walk_time);
    }
    Ok(o)
}
