//! The daemon's network loop: turns of the node, engine events (members, applied pushes,
//! push outcomes to the sessions waiting for them), and jobs from console sessions.

use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::*;
use crate::escape;
use crate::exit::Exit;
use crate::logging;
use crate::node::{self, Node};
use crate::operate::Operator;
use crate::proto::{self, Command, Event, PushRequest};
use crate::report::{Absent, Outcome};
use crate::state::{LastPush, StateDir};

struct Pending {
    reply: Sender<Reply>,
    /// When the session last got a line (a keep-alive goes out every second).
    last_line: Instant,
    /// When it last got a `progress` line.
    last_progress: Instant,
    manifest: proto::manifest::Manifest,
    absent: Vec<Absent>,
    started: Instant,
    check: bool,
    detail: Detail,
    /// The session's walk, and how long the job waited for the loop.
    walk: Duration,
    queued: Duration,
}

pub(super) fn event_loop(
    node: &mut Node,
    state: &mut StateDir,
    jobs: &Receiver<Job>,
    name: &str,
    op: &mut Operator,
    parallel: usize,
) -> Result<()> {
    let mut pending: std::collections::BTreeMap<u32, Pending> = Default::default();
    // Pushes waiting for one of the `-f` send slots, in the order they came.
    let mut waiting: std::collections::VecDeque<Job> = Default::default();
    let mut last_save = Instant::now();
    while !op.stop_requested() {
        let events = node.turn(Duration::from_millis(20))?;
        for n in node.take_notices() {
            log(1, n);
        }
        for e in events {
            handle_event(node, state, &mut pending, e, op);
        }
        while let Ok(job) = jobs.try_recv() {
            match job {
                Job::Push { ref reply, .. } if pending.len() + waiting.len() >= parallel => {
                    // `Lines`, not `Line`: shown even to a front end that asked for JSON.
                    let _ = reply.send(Reply::Lines(vec![format!(
                        "waiting: {} push(es) ahead (at most {parallel} at once, -f)",
                        pending.len() + waiting.len()
                    )]));
                    waiting.push_back(job);
                }
                job => handle_job(node, state, &mut pending, job, name),
            }
        }
        while pending.len() < parallel {
            let Some(job) = waiting.pop_front() else {
                break;
            };
            handle_job(node, state, &mut pending, job, name);
        }
        op.tick(node, state, waiting.len());
        // Sessions hear from a push at least every second, so `--timeout` on the front end
        // measures a stuck daemon, not a long pass.
        let sent = node.engine.stats().sent;
        for (xfer, p) in pending.iter_mut() {
            // `--progress`: where the contents are, four times a second.
            if p.detail.progress && p.last_progress.elapsed() >= Duration::from_millis(250) {
                if let Some((done, total, entry)) = node.engine.push_bytes(*xfer) {
                    p.last_progress = Instant::now();
                    if total > 0 {
                        p.last_line = Instant::now();
                        let path = entry
                            .and_then(|i| p.manifest.entries.get(i as usize))
                            .map(|e| e.path.as_slice());
                        let _ = p.reply.send(Reply::Line(progress_line(done, total, path)));
                    }
                }
            }
            if p.last_line.elapsed() >= Duration::from_secs(1) {
                p.last_line = Instant::now();
                let _ = p.reply.send(Reply::Line(format!(
                    "working: {:.0}s, {sent} datagrams sent by this member",
                    p.started.elapsed().as_secs_f64()
                )));
            }
        }
        if last_save.elapsed() > Duration::from_secs(5) {
            last_save = Instant::now();
            for m in node.engine.members() {
                remember(state, m);
            }
            if let Err(e) = state.save() {
                logging::error(format_args!("cannot save state: {e:#}"));
            }
        }
    }
    for job in waiting {
        if let Job::Push { reply, .. } = job {
            let _ = reply.send(Reply::Done(Outcome::failed(
                Exit::Error,
                "daemon shutting down".into(),
                0.0,
            )));
        }
    }
    for (_, p) in pending {
        let _ = p.reply.send(Reply::Done(Outcome::failed(
            Exit::Error,
            "daemon shutting down".into(),
            0.0,
        )));
    }
    Ok(())
}

/// Remembers a member heard directly more than once (a single forged heartbeat is not
/// remembered), for as long as it has been heard (see `state`).
fn remember(state: &mut StateDir, m: &proto::members::MemberInfo) {
    // Only receivers: a front end's direct-mode sender or a `-r` daemon is never a target.
    if m.direct && m.receives() && m.last_seen > m.since {
        state.seen(
            &m.name,
            &m.addr.ip().to_string(),
            m.last_seen.saturating_duration_since(m.since),
        );
    }
}

fn handle_event(
    node: &mut Node,
    state: &mut StateDir,
    pending: &mut std::collections::BTreeMap<u32, Pending>,
    e: Event,
    op: &mut Operator,
) {
    match e {
        Event::MemberUp(m) => {
            log(
                2,
                format_args!(
                    "member up: {} {} ({})",
                    m.name,
                    m.addr,
                    if m.direct { "heard" } else { "passed along" }
                ),
            );
        }
        Event::MemberDown(m, why) => {
            log(
                1,
                format_args!("member down: {} {} ({why:?})", m.name, m.addr),
            );
            if why == proto::members::LeaveReason::Expired {
                remember(state, &m);
            }
        }
        Event::Progress { xfer, line } => {
            log(3, format_args!("push {xfer:x}: {line}"));
            if let Some(p) = pending.get_mut(&xfer) {
                p.last_line = Instant::now();
                let _ = p
                    .reply
                    .send(Reply::Line(escape::text_str(&line).into_owned()));
            }
        }
        Event::PushDone(r) => {
            node.remember_applied(state, &r);
            if let Some(p) = pending.remove(&r.xfer) {
                let secs = p.started.elapsed().as_secs_f64();
                let mut o = if p.check {
                    Outcome::from_check(&p.manifest, &r, &p.absent, secs)
                } else {
                    Outcome::from_report(&p.manifest, &r, &p.absent, secs)
                };
                for m in &r.members {
                    if let Some(i) = node.engine.members().find(|i| i.node == m.node) {
                        o.set_path(&m.name, &m.addr.ip().to_string(), node.path(i).word());
                    }
                }
                if p.detail.itemize && !p.check {
                    o.add_itemized(&p.manifest, &r);
                }
                if let Some((len, walk)) = p.detail.stats {
                    o.add_stats(&p.manifest, &r, len, walk);
                }
                log(
                    1,
                    format_args!("push {:x} done in {secs:.2}s: exit {}", r.xfer, o.exit),
                );
                log(
                    3,
                    format_args!(
                        "push {:x}: the session walked {} entries in {:.3}s, the job waited \
                         {:.3}s for the network loop, the push took {secs:.3}s",
                        r.xfer,
                        p.manifest.entries.len(),
                        p.walk.as_secs_f64(),
                        p.queued.as_secs_f64()
                    ),
                );
                let neediest = r.members.iter().map(|m| m.planned_bytes).max().unwrap_or(0);
                op.push_done(o.exit, r.payload_bytes, neediest);
                let _ = p.reply.send(Reply::Done(o));
            }
        }
        Event::Applied {
            key,
            origin,
            outcome,
            dry_run,
            digest,
            started_ms,
        } => {
            if dry_run {
                return;
            }
            op.applied(
                key,
                &origin,
                &outcome,
                node.engine.storage().last_commit().as_secs_f64(),
            );
            // A failed --after-push hook does not undo the commit.
            let hook = |e: &String| e.starts_with(crate::hook::HOOK_FAILED);
            if outcome.errors.iter().all(hook) {
                let lp = LastPush {
                    id: format!("{:016x}/{:x}", key.origin, key.xfer),
                    // One word of a space-separated line (also sent in heartbeats).
                    origin: if origin.is_empty() {
                        "?".into()
                    } else {
                        escape::word_str(&origin).into_owned()
                    },
                    time: crate::state::unix_now(),
                    digest: digest.iter().take(8).map(|b| format!("{b:02x}")).collect(),
                    started: started_ms,
                };
                node.engine.set_info(lp.line().into_bytes());
                if let Err(e) = state.set_last_push(lp) {
                    logging::error(format_args!("cannot record last push: {e:#}"));
                }
            }
        }
        Event::Abandoned(key, why) => log(
            1,
            format_args!("abandoned push {:016x}/{:x}: {why}", key.origin, key.xfer),
        ),
        Event::Resolved {
            key,
            committed,
            why,
        } => logging::notice(format_args!(
            "atomic push {:016x}/{:x}, in doubt since a crash: {} ({why})",
            key.origin,
            key.xfer,
            if committed {
                "committed"
            } else {
                "rolled back"
            }
        )),
        Event::Inspect(_) => {}
        Event::VersionRefused(f) => log(0, format_args!("{}", f.describe())),
    }
}

fn handle_job(
    node: &mut Node,
    state: &mut StateDir,
    pending: &mut std::collections::BTreeMap<u32, Pending>,
    job: Job,
    name: &str,
) {
    let now = Instant::now();
    match job {
        Job::Push {
            manifest,
            targets,
            max_delete,
            check,
            reply,
            detail,
            walk,
            sent,
        } => {
            let remembered: Vec<_> = state
                .remembered()
                .filter(|r| r.name != name)
                .cloned()
                .collect();
            let (live, mut absent, unknown) = node::resolve_targets(
                node.engine.members(),
                node.engine.foreign(),
                &remembered,
                &targets,
            );
            for u in unknown {
                absent.push(Absent {
                    name: u.clone(),
                    address: "-".into(),
                    reason: "no such member".into(),
                });
            }
            if live.is_empty() {
                let why = match node.unopened_note() {
                    Some(note) => format!("no member answered ({note})"),
                    None => "no member answered".into(),
                };
                let mut o = Outcome::failed(Exit::NoMember, why, 0.0);
                o.members = absent.iter().map(Absent::outcome).collect();
                let _ = reply.send(Reply::Done(o));
                return;
            }
            let req = PushRequest {
                manifest: manifest.clone(),
                targets: live,
                max_delete,
                atomic: detail.atomic,
            };
            match node.engine.handle_command(now, Command::Push(req)) {
                Ok(x) => {
                    let _ = reply.send(Reply::Line(format!(
                        "push {x:x}: {} entries, {} bytes",
                        manifest.entries.len(),
                        manifest.total_bytes()
                    )));
                    pending.insert(
                        x,
                        Pending {
                            reply,
                            last_line: now,
                            last_progress: now,
                            manifest,
                            absent,
                            started: now,
                            check,
                            detail,
                            walk,
                            queued: now.saturating_duration_since(sent),
                        },
                    );
                }
                Err(e) => {
                    let _ = reply.send(Reply::Done(Outcome::failed(
                        Exit::Error,
                        e.to_string(),
                        0.0,
                    )));
                }
            }
        }
        Job::Forget(who, reply) => {
            let line = if state.forget(&who) {
                match state.save() {
                    Ok(()) => {
                        log(1, format_args!("forgot member {}", escape::text_str(&who)));
                        "ok".to_string()
                    }
                    Err(e) => format!("error: {e:#}"),
                }
            } else {
                format!("error: {} is not remembered", escape::text_str(&who))
            };
            let _ = reply.send(Reply::Line(line));
        }
        Job::Members(reply) => {
            let cfg = node.engine.config();
            let me_info = state
                .last_push
                .as_ref()
                .map(|l| l.line())
                .unwrap_or_else(|| "-".into());
            let mut lines = vec![format!(
                "{} {} self {} proto={} last-push={}",
                escape::word_str(&cfg.name),
                node.local_addr().ip(),
                cfg.version,
                proto::wire::VERSION,
                escape::text_str(&me_info.replace(' ', ","))
            )];
            let mut live = std::collections::BTreeSet::new();
            for m in node.engine.members() {
                live.insert(m.name.clone());
                lines.push(node.member_line(m));
            }
            for f in node.engine.foreign() {
                live.insert(f.name.clone());
                lines.push(crate::node::foreign_line(f, Instant::now()));
            }
            for r in state.remembered() {
                if !live.contains(&r.name) && r.name != cfg.name {
                    lines.push(format!(
                        "{} {} missing - last-seen={}s-ago",
                        escape::word_str(&r.name),
                        escape::word_str(&r.addr),
                        crate::state::unix_now().saturating_sub(r.last_seen)
                    ));
                }
            }
            let _ = reply.send(Reply::Lines(lines));
        }
        Job::Status(reply) => {
            let s = node.engine.stats().clone();
            let (out, inn) = node.engine.transfers();
            let ns = node.net_stats();
            let cfg = node.engine.config();
            let mut lines = vec![
                format!("name {}", escape::text_str(&cfg.name)),
                format!("node {:016x}", cfg.node_id),
                format!("version {}", cfg.version),
                format!("members {}", node.engine.members().count()),
                format!("transfers sending {out} receiving {inn}"),
                format!("datagrams received {} sent {}", s.received, s.sent),
                format!(
                    "dropped {} (malformed {}, unknown-kind {}, version {}, other-cluster {}, out-of-context {}, auth {})",
                    s.dropped() + node.seal_refused,
                    s.dropped_malformed,
                    s.dropped_unknown_kind,
                    s.dropped_version,
                    s.dropped_cluster,
                    s.dropped_context,
                    node.seal_refused
                ),
                format!("refused-paths {}", node.engine.storage().refused()),
                {
                    let w = node.engine.storage().write_stats();
                    format!(
                        "write-pool queued {} inline {} waits {} decodes {}",
                        w.queued, w.inline, w.waits, w.restores
                    )
                },
                format!("socket sent {} in {} syscalls, received {} in {} syscalls, overflows {}", ns.sent_datagrams, ns.sent_syscalls, ns.recv_datagrams, ns.recv_syscalls, ns.recv_overflows),
                format!("authenticated {}", if node.seal_stats().is_some() { "yes" } else { "NO (no cluster key)" }),
                format!("last-push {}", escape::text_str(&state.last_push.as_ref().map(|l| l.line()).unwrap_or_else(|| "-".into()))),
            ];
            // Catch-up: receiving members (this one included) whose last push is not the
            // cluster's newest, with what they missed and how to bring them up to date.
            let infos: Vec<(String, Option<LastPush>)> = node
                .engine
                .members()
                .filter(|m| m.flags & proto::wire::HB_RECEIVER != 0)
                .map(|m| {
                    let name = escape::word_str(&m.name).into_owned();
                    (name, LastPush::parse(&escape::text(&m.info)))
                })
                .chain(cfg.receive.then(|| {
                    (
                        escape::word_str(&cfg.name).into_owned(),
                        state.last_push.clone(),
                    )
                }))
                .collect();
            let behind = crate::state::behind(infos.iter().map(|(n, l)| (n.as_str(), l.as_ref())));
            for b in &behind {
                lines.push(format!(
                    "behind {} missed={} origin={} at={} last={}",
                    b.name,
                    b.missed.id,
                    b.missed.origin,
                    b.missed.time,
                    b.last.as_ref().map_or("-", |l| l.id.as_str())
                ));
            }
            if !behind.is_empty() {
                lines.push(
                    "behind-fix repeat the missed push to each member behind, from its origin: \
                     makuo sync -t NAME -r PATH... (makuo check -t NAME -r PATH... lists what differs)"
                        .into(),
                );
            }
            // `--atomic` pushes ready or committing here (journaled: a crash is recovered).
            for u in node.engine.storage().unfinished() {
                let origin = node
                    .engine
                    .members()
                    .find(|m| m.node == u.key.origin)
                    .map_or("?".to_string(), |m| escape::word_str(&m.name).into_owned());
                lines.push(format!(
                    "unfinished-commit push={:016x}/{:x} origin={origin} state={} since={} journal={}",
                    u.key.origin,
                    u.key.xfer,
                    u.state,
                    u.since,
                    if u.journaled { "yes" } else { "no" }
                ));
            }
            if let Some(ss) = node.seal_stats() {
                lines.push(format!(
                    "seal opened {} bad-tag {} unsealed {} unknown-key {} replayed {} \
                     unverified {} format {} malformed {} other-cluster {} stale-handshake {}",
                    ss.opened,
                    ss.bad_tag,
                    ss.unsealed_refused,
                    ss.unknown_key,
                    ss.replayed,
                    ss.unverified,
                    ss.format,
                    ss.malformed,
                    ss.other_cluster,
                    ss.stale_handshake,
                ));
                lines.push(format!(
                    "handshake peers {} challenges {} responses {} verified {} limited {}{}",
                    node.seal_peers(),
                    ss.challenges,
                    ss.responses,
                    ss.verified,
                    ss.limited,
                    node.clock_offset()
                        .map(|(n, o)| format!(
                            " clock-offset-max {:+.1}s ({n:016x}, information only)",
                            o as f64 / 1000.0
                        ))
                        .unwrap_or_default()
                ));
            }
            let (records, budgets) = node.engine.remembered();
            lines.push(format!(
                "inbound memory {} records {records} reply-budgets {budgets} refused {} \
                 deferred {} evicted {} replies-withheld {}",
                node.engine.inbound_memory(),
                s.refused_transfers,
                s.deferred_transfers,
                s.evicted_transfers,
                s.replies_withheld
            ));
            let _ = reply.send(Reply::Lines(lines));
        }
    }
}
