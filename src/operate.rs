//! What the daemon's network loop does for its operator between turns: readiness and watchdog
//! keep-alives to systemd, the signals (SIGHUP reopens the log and reloads the config file,
//! SIGUSR1/SIGUSR2 move the log level), the metrics it publishes, and the log lines of each
//! push (one summary line; each path at level 5 and above).
//!
//! Used only by `daemon.rs`; knows the engine's events and counters, not the console.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::config::{self, Resolved};
use crate::escape;
use crate::logging;
use crate::metrics::{self, MemberMetric, Published, Snapshot};
use crate::node::Node;
use crate::proto::manifest::FilterRule;
use crate::proto::storage::{CommitOutcome, XferKey};
use crate::service::{Notifier, Signals};
use crate::state::{LastPush, StateDir};

/// Rules every push this daemon sends applies (`exclude` in the config file), shared with the
/// console sessions; replaced on SIGHUP.
pub(crate) type DaemonRules = Arc<RwLock<Vec<FilterRule>>>;

/// The config file's `exclude` list as rules.
pub(crate) fn rules_of(exclude: &[String]) -> Vec<FilterRule> {
    exclude
        .iter()
        .map(|p| FilterRule {
            include: false,
            pattern: p.clone(),
        })
        .collect()
}

/// Counters the metrics show that the engine does not keep.
#[derive(Debug, Default)]
struct Counters {
    pushes_sent: u64,
    pushes_failed: u64,
    pushes_applied: u64,
    pushes_apply_failed: u64,
    applied_files: u64,
    applied_bytes: u64,
    deleted_paths: u64,
    repair_bytes: u64,
}

/// The operator's side of the daemon.
pub(crate) struct Operator {
    /// The settings last read (replaced by a successful reload).
    pub conf: Resolved,
    /// Every setting's value at start: what runs, for those that cannot change live.
    running: Vec<(String, Option<String>)>,
    notifier: Notifier,
    signals: Signals,
    rules: DaemonRules,
    /// Engine member times before any flag: what a reload falls back to.
    default_times: (Duration, Duration),
    metrics: Option<(Published, metrics::Memory)>,
    counters: Counters,
    dirty: bool,
    last_publish: Option<Instant>,
    started: u64,
    ready: bool,
}

impl Operator {
    /// Everything opened before the chroot: the notify socket, `/proc/self/statm`.
    pub fn new(
        conf: Resolved,
        notifier: Notifier,
        signals: Signals,
        rules: DaemonRules,
        default_times: (Duration, Duration),
        metrics: Option<Published>,
    ) -> Self {
        Operator {
            running: conf.values(),
            conf,
            notifier,
            signals,
            rules,
            default_times,
            metrics: metrics.map(|p| (p, metrics::Memory::open())),
            counters: Counters::default(),
            dirty: true,
            last_publish: None,
            started: crate::state::unix_now(),
            ready: false,
        }
    }

    /// Whether SIGTERM or SIGINT asked the daemon to stop.
    pub fn stop_requested(&self) -> bool {
        self.signals.stop_requested()
    }

    /// After every turn of the network loop.
    pub fn tick(&mut self, node: &mut Node, state: &StateDir, queued: usize) {
        let now = Instant::now();
        if !self.ready {
            // The sockets are bound and the first turn has sent the join: ready.
            self.ready = true;
            self.notifier.ready(&format!(
                "serving {} as {}",
                self.conf.args.cluster.base.display(),
                node.engine.config().name
            ));
        }
        self.notifier.keep_alive(now);
        let arrived = self.signals.take();
        if arrived.usr1 {
            logging::notice(format_args!("SIGUSR1: log level {}", logging::raise()));
            self.dirty = true;
        }
        if arrived.usr2 {
            logging::notice(format_args!("SIGUSR2: log level {}", logging::lower()));
            self.dirty = true;
        }
        if arrived.hup {
            self.notifier.reloading();
            self.hangup(node);
            self.notifier.ready("reloaded");
            self.dirty = true;
        }
        if self.metrics.is_some()
            && (self.dirty
                || self
                    .last_publish
                    .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1)))
        {
            self.publish(node, state, queued);
            self.last_publish = Some(now);
            self.dirty = false;
        }
    }

    /// SIGHUP: reopen the log, read the config file again and apply what can change live.
    fn hangup(&mut self, node: &mut Node) {
        match logging::reopen() {
            Ok(Some(p)) => logging::notice(format_args!("SIGHUP: log file {p} reopened")),
            Ok(None) => {}
            Err(e) => logging::error(format_args!("SIGHUP: cannot reopen the log file: {e}")),
        }
        let Some(file) = self.conf.file.clone() else {
            logging::notice("SIGHUP: no config file to reload");
            return;
        };
        let fresh = match self.conf.reload() {
            Ok(f) => f,
            Err(e) => {
                logging::error(format_args!(
                    "SIGHUP: {e:#}; the settings in force are kept"
                ));
                return;
            }
        };
        let old = self.conf.values();
        let new = fresh.values();
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "unset".into());
        let mut applied = Vec::new();
        let mut stuck = Vec::new();
        for (((key, before), (_, after)), (_, running)) in
            old.iter().zip(new.iter()).zip(self.running.iter())
        {
            if config::RELOADABLE.contains(&key.as_str()) {
                if before != after {
                    applied.push(format!("{key} {} -> {}", show(before), show(after)));
                }
            } else if running != after {
                // Compared with what runs, so every reload names it until a restart.
                stuck.push(format!(
                    "{key} {} (running with {})",
                    show(after),
                    show(running)
                ));
            }
        }
        let a = &fresh.args;
        if a.loglevel != self.conf.args.loglevel {
            logging::set_level(a.loglevel);
        }
        let (dexp, dtime) = self.default_times;
        node.engine.set_member_times(
            a.member_expiry.map_or(dexp, Duration::from_millis),
            a.member_timeout.map_or(dtime, Duration::from_millis),
        );
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = rules_of(&fresh.exclude);
        logging::notice(format_args!(
            "SIGHUP: reloaded {}: {}",
            file.display(),
            if applied.is_empty() {
                "nothing to change live".to_string()
            } else {
                format!("applied {}", applied.join(", "))
            }
        ));
        if !stuck.is_empty() {
            logging::warn(format_args!(
                "SIGHUP: cannot change live (restart makuo to apply): {}",
                stuck.join(", ")
            ));
        }
        self.conf = fresh;
    }

    /// A push this daemon sent has finished with `exit`.
    pub fn push_done(&mut self, exit: u8, payload: u64, neediest: u64) {
        self.counters.pushes_sent += 1;
        if exit != 0 {
            self.counters.pushes_failed += 1;
        }
        self.counters.repair_bytes += payload.saturating_sub(neediest);
        self.dirty = true;
    }

    /// A push from `origin` was applied here: one summary line, and each path at level 5.
    pub fn applied(&mut self, key: XferKey, origin: &str, out: &CommitOutcome, commit_secs: f64) {
        let id = format!("{:016x}/{:x}", key.origin, key.xfer);
        logging::log(
            1,
            format_args!(
                "applied push {id} from {origin}: {} entries, {} bytes, {} deleted \
                 (commit {commit_secs:.3}s){}",
                out.files,
                out.bytes,
                out.deleted,
                if out.errors.is_empty() {
                    String::new()
                } else {
                    format!(", errors: {}", out.errors.join("; "))
                }
            ),
        );
        if logging::enabled(logging::PATH_LEVEL) {
            for p in &out.written {
                logging::log(
                    logging::PATH_LEVEL,
                    format_args!("push {id}: wrote {}", escape::text(p)),
                );
            }
            for p in &out.removed {
                logging::log(
                    logging::PATH_LEVEL,
                    format_args!("push {id}: deleted {}", escape::text(p)),
                );
            }
        }
        if out.errors.is_empty() {
            self.counters.pushes_applied += 1;
        } else {
            self.counters.pushes_apply_failed += 1;
        }
        self.counters.applied_files += out.files as u64;
        self.counters.applied_bytes += out.bytes;
        self.counters.deleted_paths += out.deleted as u64;
        self.dirty = true;
    }

    /// The daemon is leaving.
    pub fn stopping(&self) {
        self.notifier.stopping();
    }

    fn publish(&self, node: &Node, state: &StateDir, queued: usize) {
        let Some((published, memory)) = &self.metrics else {
            return;
        };
        let s = node.engine.stats();
        let (out, inn) = node.engine.transfers();
        let c = &self.counters;
        let now = crate::state::unix_now();
        let mine = state.last_push.as_ref().map(|l| l.digest.clone());
        let mut members = Vec::new();
        let mut live = std::collections::BTreeSet::new();
        for m in node.engine.members() {
            live.insert(m.name.clone());
            let lp = LastPush::parse(&escape::text(&m.info));
            members.push(MemberMetric {
                name: escape::text_str(&m.name).into_owned(),
                address: m.addr.ip().to_string(),
                state: if m.direct { "live" } else { "indirect" },
                last_push: lp.as_ref().map(|l| l.time),
                in_sync: lp.map(|l| Some(&l.digest) == mine.as_ref()),
            });
        }
        let me = &node.engine.config().name;
        for r in state.remembered() {
            if !live.contains(&r.name) && &r.name != me {
                members.push(MemberMetric {
                    name: escape::text_str(&r.name).into_owned(),
                    address: escape::text_str(&r.addr).into_owned(),
                    state: "missing",
                    ..Default::default()
                });
            }
        }
        let mut refused = vec![
            ("malformed", s.dropped_malformed),
            ("unknown_kind", s.dropped_unknown_kind),
            ("version", s.dropped_version),
            ("other_cluster", s.dropped_cluster),
            ("out_of_context", s.dropped_context),
            ("still_sealed", s.dropped_sealed),
        ];
        if let Some(ss) = node.seal_stats() {
            refused.extend([
                ("bad_tag", ss.bad_tag),
                ("replay", ss.replayed),
                ("stale", ss.stale_handshake),
                ("unverified", ss.unverified),
                ("unsealed", ss.unsealed_refused),
                ("unknown_key", ss.unknown_key),
                ("seal_format", ss.format),
                ("seal_malformed", ss.malformed),
                ("seal_other_cluster", ss.other_cluster),
            ]);
        }
        let snap = Snapshot {
            now,
            started: self.started,
            log_level: logging::level(),
            pushes_sent: c.pushes_sent,
            pushes_failed: c.pushes_failed,
            pushes_applied: c.pushes_applied,
            pushes_apply_failed: c.pushes_apply_failed,
            pushes_queued: queued as u64,
            applied_files: c.applied_files,
            applied_bytes: c.applied_bytes,
            deleted_paths: c.deleted_paths,
            sent_bytes: s.sent_bytes,
            repair_bytes: c.repair_bytes,
            datagrams_received: s.received,
            datagrams_sent: s.sent,
            refused,
            transfers_out: out as u64,
            transfers_in: inn as u64,
            memory: memory.resident(),
            members,
        };
        published.set(metrics::render(&snap));
    }
}
