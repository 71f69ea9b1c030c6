//! `makuo daemon`: the long-running member on every server.
//!
//! The main thread runs the network loop ([`crate::node::Node`]); console sessions (TCP on
//! loopback by default, and a unix socket with `-U`) run on their own threads, walk the tree
//! for `send`/`md5` themselves, and hand requests to the loop over a channel. Nothing of
//! makuo's lives in BASE while idle: state goes to the state directory, and leftover staged
//! files are swept at start. SIGTERM leaves the cluster gracefully and exits 0; SIGHUP,
//! SIGUSR1 and SIGUSR2 are the operator's ([`crate::operate`]). Settings come resolved
//! ([`crate::config`]): flags over environment over config file.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::apply::ApplyOptions;
use crate::config::Resolved;
use crate::console::{self, Request, SendCmd};
use crate::console_access;
use crate::escape;
use crate::exit::Exit;
use crate::filter::RuleSpec;
use crate::logging;
use crate::metrics;
use crate::node::{self, Node, NodeConfig};
use crate::operate::{self, DaemonRules, Operator};
use crate::owner_match;
use crate::proto::manifest::PushOptions;
use crate::proto::{self, Command, Event, PushRequest};
use crate::report::{Absent, Outcome};
use crate::service::{Notifier, Signals};
use crate::startup;
use crate::state::{LastPush, StateDir};

/// Logs a line when `level` is at most the current log level ([`crate::logging`]).
pub fn log(level: u8, msg: impl std::fmt::Display) {
    crate::logging::log(level, msg)
}

/// The host name (default member name).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "makuo".into())
}

/// A request from a console session to the network loop.
// One message per push: the size of the variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Job {
    Push {
        manifest: proto::manifest::Manifest,
        targets: Vec<String>,
        max_delete: Option<u64>,
        check: bool,
        reply: Sender<Reply>,
        detail: Detail,
        /// How long the session took to walk the tree, and when it handed the job over
        /// (phase times at log level 3).
        walk: Duration,
        sent: Instant,
    },
    Members(Sender<Reply>),
    Status(Sender<Reply>),
    /// `members forget NAME`: answers one line, `ok` or `error: ...`.
    Forget(String, Sender<Reply>),
}

/// What a push's outcome carries beyond the table: `-i` changes, `--stats` (with the
/// manifest's encoded size and the walk time).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Detail {
    itemize: bool,
    stats: Option<(usize, Duration)>,
    /// `--atomic`: all or none.
    atomic: bool,
    /// `--progress`: `progress DONE TOTAL PATH` lines while contents go out.
    progress: bool,
}

/// The console's progress line of a push: payload bytes sent, of how many, and the path
/// whose contents go out now (escaped; `-` between files).
pub(crate) fn progress_line(done: u64, total: u64, path: Option<&[u8]>) -> String {
    let path = path.map_or_else(|| "-".to_string(), |p| escape::text(p).into_owned());
    format!("progress {done} {total} {path}")
}

/// What the loop sends back.
pub(crate) enum Reply {
    Line(String),
    Done(Outcome),
    Lines(Vec<String>),
}

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

/// The canonical base directory. It must be given (`-b`, `base` in the config file or an
/// environment variable) and may be `/` only when given as `/`.
fn base_dir(conf: &Resolved) -> Result<PathBuf> {
    if !conf.base_given() {
        bail!(
            "no base directory: give -b DIR (or base = \"DIR\" in {})",
            conf.file
                .as_deref()
                .unwrap_or(Path::new(crate::config::DEFAULT_FILE))
                .display()
        );
    }
    let given = &conf.args.cluster.base;
    let base = given
        .canonicalize()
        .with_context(|| format!("base directory {}", given.display()))?;
    if base == Path::new("/") && given != Path::new("/") {
        bail!(
            "base directory {} is /: give -b / to serve the whole file system",
            given.display()
        );
    }
    Ok(base)
}

/// Runs the daemon until SIGTERM.
pub fn run(conf: Resolved) -> Result<Exit> {
    let args = &conf.args;
    args.cluster.require_key()?;
    logging::set_level(args.loglevel);
    let base = base_dir(&conf)?;
    let name = args.cluster.name.clone().unwrap_or_else(hostname);
    let state_dir = args
        .cluster
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/lib/makuo").join(&name));
    // Locks first: a second daemon on the same base or state directory stops here, before
    // it sweeps, binds or writes anything.
    let base_lock = startup::lock_dir(&base, "base directory")?;
    let state_is_new = !state_dir.exists();
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create state dir {}", state_dir.display()))?;
    if startup::same_dir(&base, &state_dir) {
        bail!("the state directory must not be the base directory");
    }
    let state_lock = startup::lock_dir(&state_dir, "state directory")?;
    let state_real = state_dir
        .canonicalize()
        .unwrap_or_else(|_| state_dir.clone());
    let keys = load_keys(&args.cluster.keys)?;
    let apply = ApplyOptions {
        node_name: name.clone(),
        durable: !args.no_fsync,
        preserve_owner: args.preserve_owner,
        allow_devices: args.allow_devices,
        protect: crate::apply::Protection::new(&args.protect)?.map(Arc::new),
        max_delete: args.max_delete,
        hooks: None,
        journal: Some(Arc::new(
            crate::apply::open_journal_dir(&state_dir)
                .with_context(|| format!("journal directory in {}", state_dir.display()))?,
        )),
    };
    // An atomic push a crash interrupted is rolled back or finished before the sweep
    // (which would take its staged files).
    let recovered = crate::apply::recover_journal(&base, &apply)
        .with_context(|| format!("commit journal in {}", state_dir.display()))?;
    let swept = crate::apply::sweep_temp(base_lock.fd()).unwrap_or(0);
    let mut state = StateDir::open(&state_dir)?;
    let excludes = Arc::new(crate::state::Excludes::load(&state)?);
    // Every staged file of a transfer stays open until its commit.
    startup::raise_nofile();
    let password = match &args.password_file {
        Some(p) => Some(crate::secret_file::read_password(p)?),
        None => None,
    };
    if !args.no_console {
        console_access::check_console_addr(args.console_addr, password.as_ref())?;
    }
    let mut policy =
        console_access::Policy::new(args.console_group.as_deref(), password.is_some())?;
    let mut engine = proto::Config {
        node_id: node::random_node_id(),
        name: name.clone(),
        receive: !args.no_receive,
        rate_limit: args.rate.map(|m| m as u64 * 1_000_000 / 8),
        min_rate: crate::cli::min_rate_floor(args.min_rate),
        seed: node::random_node_id(),
        relay: args.cluster.relay,
        ..proto::Config::default()
    };
    if let Some(h) = args.heartbeat {
        engine.heartbeat = Duration::from_millis(h);
        engine.member_expiry = engine.member_expiry.max(engine.heartbeat * 3);
    }
    let default_times = (engine.member_expiry, engine.member_timeout);
    if let Some(t) = args.member_timeout {
        engine.member_timeout = Duration::from_millis(t);
    }
    if let Some(e) = args.member_expiry {
        engine.member_expiry = Duration::from_millis(e);
    }
    engine.mtu = args.cluster.mtu as usize;
    let listen = args.bind;
    let mut node = Node::new(NodeConfig {
        group: args.cluster.group,
        port: args.cluster.port,
        interface: args.cluster.interface.clone(),
        ttl: args.cluster.ttl,
        peers: args
            .cluster
            .peers
            .iter()
            .map(|p| p.with_default_port(args.cluster.port))
            .collect(),
        listen,
        // Peers reach a daemon at its unicast address on the group's port.
        reply_port: args.reply_port.unwrap_or(if args.cluster.peers.is_empty() {
            0
        } else {
            args.cluster.port
        }),
        rcvbuf: args.rcvbuf.unwrap_or(0),
        sndbuf: args.sndbuf.unwrap_or(0),
        engine,
        keys: keys.clone(),
        base: base.clone(),
        apply,
    })?;
    if let Some(lp) = &state.last_push {
        node.engine.set_info(lp.line().into_bytes());
    }
    let console_port = args.console_port();
    let tcp = match args.no_console {
        true => None,
        false => Some(startup::bind_console(SocketAddr::new(
            args.console_addr,
            console_port,
        ))?),
    };
    // Who the daemon becomes, looked up while the user and group databases are reachable
    // (before any chroot); the console socket's directory may belong to that user.
    let identity = startup::resolve_identity(
        args.user.as_deref(),
        args.run_group.as_deref(),
        args.groups.as_deref(),
    )?;
    let (unix, socket_path) = match &args.console_socket {
        Some(p) => {
            let share = startup::SocketShare {
                group: policy.group_gid(),
                dir_owners: vec![
                    0,
                    rustix::process::geteuid().as_raw(),
                    identity
                        .uid
                        .unwrap_or_else(|| rustix::process::geteuid().as_raw()),
                ],
            };
            let (l, sp) = startup::bind_unix(p, &share)?;
            (Some(l), Some(sp))
        }
        None => (None, None),
    };
    let metrics_listener = match args.metrics {
        Some(a) => Some(metrics::bind(a).with_context(|| format!("--metrics {a}"))?),
        None => None,
    };
    // The log, syslog and systemd's notify socket are opened before any chroot.
    let log_file = if args.syslog || (args.foreground && args.log_file.is_none()) {
        None
    } else {
        let p = args
            .log_file
            .clone()
            .unwrap_or_else(|| state_dir.join("makuo.log"));
        Some(logging::LogFile::open(&p).with_context(|| format!("log file {}", p.display()))?)
    };
    if args.syslog {
        logging::to_syslog(&args.syslog_socket)
            .with_context(|| format!("--syslog: {}", args.syslog_socket.display()))?;
    } else if args.foreground {
        logging::to_stderr();
    }
    let mut pid_file = match &args.pid_file {
        Some(p) => Some(crate::pidfile::PidFile::open(p)?),
        None => None,
    };
    let notifier = Notifier::from_env().context("NOTIFY_SOCKET")?;
    // Everything the daemon needs is open: now give up root (`identity`, looked up above).
    let root = match (&args.chroot_dir, args.chroot) {
        (Some(d), _) => Some(
            d.canonicalize()
                .with_context(|| format!("chroot directory {}", d.display()))?,
        ),
        (None, true) => Some(base.clone()),
        (None, false) => None,
    };
    let rules: DaemonRules = Arc::new(RwLock::new(operate::rules_of(&conf.exclude)));
    crate::filter::Filter::new(&rules.read().unwrap_or_else(|e| e.into_inner()))
        .context("exclude in the config file")?;
    let signals = Signals::install().context("signal handlers")?;
    let published = metrics_listener
        .as_ref()
        .map(|_| metrics::Published::default());
    // Where console sessions find the base (they walk it by path).
    let session_base = match &root {
        Some(r) => {
            let inside = startup::inside(r, &base)?;
            if args.console_group.is_some() {
                let n = policy.freeze_group()?;
                log(
                    1,
                    format_args!("--console-group with chroot: {n} member(s), read once at start"),
                );
            }
            startup::enter_chroot(r)?;
            if let Some(p) = &mut pid_file {
                p.chrooted();
            }
            inside
        }
        None => base.clone(),
    };
    node.set_hooks(crate::hook::HookConfig::for_daemon(
        args.before_commit.clone(),
        args.after_push.clone(),
        Duration::from_secs(args.hook_timeout),
        session_base.clone(),
        &state_real,
        root.as_deref(),
    ));
    if let (true, Some(uid)) = (state_is_new, identity.uid) {
        // A state directory made now belongs to the user the daemon runs as, who must write
        // into it; one that existed is the operator's to set up.
        startup::give_dir(state_lock.fd(), uid, identity.gid)?;
    }
    startup::become_identity(&identity)?;
    node.engine.storage_mut().refresh_identity();
    if let Some(lf) = log_file {
        if args.foreground {
            nix::unistd::dup2_stderr(lf.file()).context("log to stderr")?;
            nix::unistd::dup2_stdout(lf.file()).context("log to stdout")?;
        } else {
            daemonize(lf.file())?;
        }
        logging::to_file(lf);
    }
    if let Some(p) = &mut pid_file {
        p.write_pid()?;
    }
    startup_lines(
        &conf,
        &node,
        &base,
        root.as_deref(),
        &keys,
        &state_dir,
        swept,
    );
    for l in &recovered {
        logging::notice(format_args!("{l}"));
    }
    if args.preserve_owner && !rustix::process::geteuid().is_root() {
        logging::warn("-u drops root, so owners cannot be preserved (--preserve-owner is off)");
    }
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    let wake = node.waker()?;
    let console = console_access::Server::new(policy, password, console_access::LIMITS);
    let watches = Arc::new(crate::watch::Registry::default());
    console_access::start_log_flush(&console);
    let shared = Arc::new(Session {
        base: session_base,
        no_send: args.no_send,
        owner_match: args
            .owner_match
            .then(|| rustix::process::geteuid().as_raw()),
        rules: rules.clone(),
        excludes,
        started: Instant::now(),
        console: console.clone(),
        jobs: Mutex::new(jobs_tx),
        watches: watches.clone(),
        wake,
    });
    if let Some(tcp) = tcp {
        let (s, c) = (shared.clone(), console.clone());
        std::thread::spawn(move || {
            console_access::serve_tcp(tcp, c, Arc::new(move |conn, who: &_| s.serve(conn, who)))
        });
    }
    if let Some(u) = unix {
        let (s, c) = (shared.clone(), console.clone());
        std::thread::spawn(move || {
            console_access::serve_unix(u, c, Arc::new(move |conn, who: &_| s.serve(conn, who)))
        });
    }
    if let (Some(l), Some(p)) = (metrics_listener, &published) {
        metrics::serve(l, p.clone());
    }
    let parallel = args.parallel as usize;
    let mut op = Operator::new(conf, notifier, signals, rules, default_times, published);
    let result = event_loop(&mut node, &mut state, &jobs_rx, &name, &mut op, parallel);
    watches.stop_all();
    op.stopping();
    console.drain_log();
    logging::notice("leaving the cluster");
    node.engine.abort_all(Instant::now(), "sender shut down");
    node.leave();
    let _ = state.save();
    if let Some(sp) = &socket_path {
        sp.remove();
    }
    drop(pid_file);
    drop((base_lock, state_lock));
    result.map(|_| Exit::Ok)
}

/// The start-up lines, logged at every level: what this daemon serves, where, and with which
/// key (by fingerprint).
fn startup_lines(
    conf: &Resolved,
    node: &Node,
    base: &Path,
    root: Option<&Path>,
    keys: &[crate::seal::Key],
    state_dir: &Path,
    swept: usize,
) {
    let a = &conf.args;
    let console = match (a.no_console, &a.console_socket) {
        (true, _) => "off (-o)".to_string(),
        (false, None) => format!("{}:{}", a.console_addr, a.console_port()),
        (false, Some(s)) => format!(
            "{}:{} and {}",
            a.console_addr,
            a.console_port(),
            s.display()
        ),
    };
    let keyed = if keys.is_empty() {
        "NONE (UNAUTHENTICATED)".to_string()
    } else {
        keys.iter()
            .map(startup::key_fingerprint)
            .collect::<Vec<_>>()
            .join(" ")
    };
    logging::notice(format_args!(
        "makuo {} starting: config {}, log level {}",
        crate::cli::VERSION,
        conf.file
            .as_deref()
            .map_or("none".into(), |p| p.display().to_string()),
        logging::level()
    ));
    logging::notice(format_args!(
        "{} up: node {:016x}, base {}{}, group {}, interface {}, reply {}, console {}, \
         key {keyed}, state {}{}",
        node.engine.config().name,
        node.engine.config().node_id,
        base.display(),
        root.map(|r| format!(" (chroot {})", r.display()))
            .unwrap_or_default(),
        SocketAddr::new(a.cluster.group, a.cluster.port),
        a.cluster.interface.as_deref().unwrap_or("default route"),
        node.local_addr(),
        console,
        state_dir.display(),
        a.metrics
            .map(|m| format!(", metrics http://{m}/metrics"))
            .unwrap_or_default()
    ));
    if keys.is_empty() {
        logging::warn("no cluster key (-k): this cluster is UNAUTHENTICATED; anyone on the LAN can push or delete files");
    }
    if swept > 0 {
        log(
            1,
            format_args!(
                "removed {swept} leftover staged file(s) under {}",
                base.display()
            ),
        );
    }
}

fn load_keys(paths: &[PathBuf]) -> Result<Vec<crate::seal::Key>> {
    paths
        .iter()
        .map(|p| crate::seal::load_key(p).map_err(|e| anyhow::anyhow!("{e}")))
        .collect()
}

/// Goes to the background (the parent exits) with stdout and stderr on the log.
fn daemonize(logf: &std::fs::File) -> Result<()> {
    nix::unistd::daemon(true, true).context("daemon")?;
    nix::unistd::dup2_stderr(logf).context("log to stderr")?;
    nix::unistd::dup2_stdout(logf).context("log to stdout")?;
    Ok(())
}

fn event_loop(
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
            // A member that applied a push is real: remember it at once.
            for m in r.members.iter().filter(|m| m.ok) {
                let seen_for = node
                    .engine
                    .members()
                    .find(|i| i.node == m.node)
                    .map_or(Duration::ZERO, |i| {
                        i.last_seen.saturating_duration_since(i.since)
                    });
                state.seen(&m.name, &m.addr.ip().to_string(), seen_for);
            }
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
                format!("socket sent {} in {} syscalls, received {} in {} syscalls, overflows {}", ns.sent_datagrams, ns.sent_syscalls, ns.recv_datagrams, ns.recv_syscalls, ns.recv_overflows),
                format!("authenticated {}", if node.seal_stats().is_some() { "yes" } else { "NO (no cluster key)" }),
                format!("last-push {}", escape::text_str(&state.last_push.as_ref().map(|l| l.line()).unwrap_or_else(|| "-".into()))),
            ];
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

/// What console sessions share.
struct Session {
    base: PathBuf,
    /// `-s`: this daemon never sends (console pushes are refused).
    no_send: bool,
    /// `-O`: pushes leave out what this uid does not own.
    owner_match: Option<u32>,
    /// The config file's `exclude` rules, applied before each session's own.
    rules: DaemonRules,
    /// The standing excludes (`makuo exclude add`), after the config file's.
    excludes: Arc<crate::state::Excludes>,
    /// When the daemon started (`status`'s uptime).
    started: Instant,
    /// Who may connect, the password, the limits and the counters.
    console: Arc<console_access::Server>,
    jobs: Mutex<Sender<Job>>,
    /// Daemon-side watches (`watch add`): they outlive the session that made them.
    watches: Arc<crate::watch::Registry>,
    /// Ends the network loop's wait, so it takes a job at once (not at its next timeout).
    wake: crate::net::Waker,
}

/// What one console session keeps between commands.
#[derive(Default)]
struct SessionState {
    /// `exclude add`, `include add`, `filter add`, in order.
    rules: Vec<RuleSpec>,
    /// `files add`: the list for `send --files-from`.
    files: Vec<String>,
}

/// Most paths a session's `files add` list holds.
const MAX_SESSION_FILES: usize = 1 << 20;

/// A daemon-side watch pushes through the network loop's job queue, as a console push does.
struct JobPusher {
    jobs: Sender<Job>,
    /// Wakes the network loop once a job is queued.
    wake: crate::net::Waker,
    targets: Vec<String>,
    /// `-O`: leave out what this uid does not own, as console pushes do.
    owner_match: Option<u32>,
}

impl crate::watch::Pusher for JobPusher {
    fn idle(&mut self, d: Duration) -> Result<()> {
        std::thread::sleep(d);
        Ok(())
    }

    fn push(&mut self, mut sel: node::Selection) -> Result<Outcome> {
        if let Some(uid) = self.owner_match {
            let (left_out, _) = owner_match::apply(&mut sel.manifest, uid);
            for p in &left_out {
                logging::log(
                    2,
                    format_args!("skipping {}: {}", escape::text(p), owner_match::SKIP_REASON),
                );
            }
        }
        let (tx, rx) = mpsc::channel();
        let job = Job::Push {
            manifest: sel.manifest,
            targets: self.targets.clone(),
            max_delete: None,
            check: false,
            reply: tx,
            detail: Detail::default(),
            walk: sel.walk_time,
            sent: Instant::now(),
        };
        if self.jobs.send(job).is_err() {
            bail!("daemon is shutting down");
        }
        self.wake.wake();
        loop {
            match rx.recv() {
                Ok(Reply::Done(mut o)) => {
                    o.fold_walk(sel.vanished, sel.missing.len());
                    return Ok(o);
                }
                Ok(_) => {}
                Err(_) => bail!("daemon is shutting down"),
            }
        }
    }

    fn log(&mut self, line: &str) {
        log(1, line);
    }
}

impl Session {
    /// The config file's rules first, then the standing excludes, then `session`'s.
    fn all_rules(&self, session: &[RuleSpec]) -> Vec<RuleSpec> {
        let mut all: Vec<RuleSpec> = self
            .rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .map(RuleSpec::Old)
            .collect();
        all.extend(self.excludes.list().into_iter().map(|pattern| {
            RuleSpec::Old(proto::manifest::FilterRule {
                include: false,
                pattern,
            })
        }));
        all.extend_from_slice(session);
        all
    }

    fn send_job(&self, job: Job) -> bool {
        let sent = self
            .jobs
            .lock()
            .map(|j| j.send(job).is_ok())
            .unwrap_or(false);
        self.wake.wake();
        sent
    }

    /// Serves one admitted console connection until `quit`, EOF, or a line that ends it
    /// (`console_access::run_session` reads, caps and checks the lines).
    fn serve<S: console_access::Conn>(&self, conn: S, who: &console_access::Who) {
        let mut session = SessionState::default();
        console_access::run_session(&self.console, conn, who, |req, w| {
            self.handle(req, &mut session, w)
        });
    }

    fn handle(
        &self,
        req: Request,
        session: &mut SessionState,
        w: &mut impl Write,
    ) -> std::io::Result<()> {
        let rules = &mut session.rules;
        match req {
            Request::Nothing => Ok(()),
            Request::Quit => writeln!(w, "ok"),
            Request::Password(_) => writeln!(w, "ok"),
            Request::Help => {
                for l in console::HELP {
                    writeln!(w, "{l}")?;
                }
                writeln!(w, "ok")
            }
            Request::Alive => writeln!(w, "alive\nok"),
            Request::Echo(s) => writeln!(w, "{s}\nok"),
            Request::Loglevel(n) => {
                logging::set_level(n);
                logging::notice(format_args!("console: log level {n}"));
                writeln!(w, "ok")
            }
            Request::RuleAdd(_) | Request::FilterAdd(_) => {
                // Checked now, within the filter caps (and merge files refused: a daemon
                // reads no file a console user names).
                let mut with = rules.clone();
                with.push(match req {
                    Request::RuleAdd(r) => RuleSpec::Old(r),
                    Request::FilterAdd(t) => RuleSpec::Rule(t),
                    _ => unreachable!(),
                });
                match crate::filter::Filter::build(&with) {
                    Ok(_) => {
                        *rules = with;
                        writeln!(w, "ok")
                    }
                    Err(e) => writeln!(w, "error: {e:#}"),
                }
            }
            Request::FilesAdd(ps) => {
                if session.files.len() + ps.len() > MAX_SESSION_FILES {
                    return writeln!(w, "error: more than {MAX_SESSION_FILES} paths listed");
                }
                session.files.extend(ps);
                writeln!(w, "ok")
            }
            Request::FilesClear => {
                session.files.clear();
                writeln!(w, "ok")
            }
            Request::Watch(c) => self.watch(w, &c, rules),
            Request::RuleDel(p) => {
                let before = rules.len();
                rules.retain(|r| !matches!(r, RuleSpec::Old(o) if o.pattern == p));
                if rules.len() == before {
                    writeln!(w, "error: no such pattern")
                } else {
                    writeln!(w, "ok")
                }
            }
            Request::RuleList => {
                for r in rules.iter() {
                    let (words, text) = r.console_words();
                    let kind = words.split(' ').next().unwrap_or(words);
                    writeln!(w, "{kind} {text}")?;
                }
                writeln!(w, "ok")
            }
            Request::RuleClear => {
                rules.clear();
                writeln!(w, "ok")
            }
            Request::Members { json } => self.simple(w, Job::Members, json, &[]),
            Request::Forget(name) => {
                let (tx, rx) = mpsc::channel();
                if !self.send_job(Job::Forget(name, tx)) {
                    return writeln!(w, "error: daemon is shutting down");
                }
                match rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(Reply::Line(l)) => writeln!(w, "{l}"),
                    _ => writeln!(w, "error: no answer from the network loop"),
                }
            }
            Request::Standing { action, pattern } => {
                let pat = pattern.unwrap_or_default();
                let r = match action.as_str() {
                    "list" => {
                        for p in self.excludes.list() {
                            writeln!(w, "exclude {}", escape::text_str(&p))?;
                        }
                        Ok(())
                    }
                    "clear" => self.excludes.edit(|l| {
                        l.clear();
                        Ok(())
                    }),
                    "add" => {
                        let mut with = self.all_rules(&[]);
                        with.push(RuleSpec::Old(proto::manifest::FilterRule {
                            include: false,
                            pattern: pat.clone(),
                        }));
                        match crate::filter::Filter::build(&with) {
                            Ok(_) => self.excludes.edit(|l| {
                                if !l.contains(&pat) {
                                    l.push(pat.clone());
                                }
                                Ok(())
                            }),
                            Err(e) => Err(e),
                        }
                    }
                    _ => self.excludes.edit(|l| {
                        let before = l.len();
                        l.retain(|p| *p != pat);
                        if l.len() == before {
                            anyhow::bail!("no such pattern");
                        }
                        Ok(())
                    }),
                };
                match r {
                    Ok(()) => {
                        if action != "list" {
                            log(
                                1,
                                format_args!(
                                    "console: standing exclude {action} {}",
                                    escape::text_str(&pat)
                                ),
                            );
                        }
                        writeln!(w, "ok")
                    }
                    Err(e) => writeln!(w, "error: {e:#}"),
                }
            }
            Request::Status => {
                let mut extra = vec![
                    format!("pid {}", std::process::id()),
                    format!(
                        "base {}",
                        escape::text(std::os::unix::ffi::OsStrExt::as_bytes(
                            self.base.as_os_str()
                        ))
                    ),
                    format!("uptime {}s", self.started.elapsed().as_secs()),
                    self.console.stats.line(),
                ];
                extra.extend(self.watches.lines());
                for p in self.excludes.list() {
                    extra.push(format!("standing-exclude {}", escape::text_str(&p)));
                }
                self.simple(w, Job::Status, false, &extra)
            }
            Request::Send(c) => {
                let files = std::mem::take(&mut session.files);
                self.push(w, &c, &session.rules, &files, false)
            }
            Request::Check(c) => {
                let files = std::mem::take(&mut session.files);
                self.push(w, &c, &session.rules, &files, true)
            }
        }
    }

    /// `watch add|del|list`: daemon-side watches with this session's rules.
    fn watch(
        &self,
        w: &mut impl Write,
        c: &console::WatchCmd,
        rules: &[RuleSpec],
    ) -> std::io::Result<()> {
        let paths: Vec<Vec<u8>> = c
            .paths
            .iter()
            .map(|p| {
                let p = p.trim_end_matches('/');
                if p.is_empty() {
                    b".".to_vec()
                } else {
                    p.as_bytes().to_vec()
                }
            })
            .collect();
        match c.action.as_str() {
            "list" => {
                for l in self.watches.lines() {
                    writeln!(w, "{l}")?;
                }
                writeln!(w, "ok")
            }
            "del" => match self.watches.del(&paths) {
                0 => writeln!(w, "error: no such watch"),
                n => writeln!(w, "stopped {n} watch(es)\nok"),
            },
            _ => {
                if self.no_send {
                    return writeln!(w, "error: this daemon never sends (-s)");
                }
                let Ok(jobs) = self.jobs.lock().map(|j| j.clone()) else {
                    return writeln!(w, "error: daemon is shutting down");
                };
                let cfg = crate::watch::WatchConfig {
                    base: self.base.clone(),
                    paths,
                    recursive: c.recursive,
                    delete: c.delete,
                    delay: Duration::from_millis(c.delay_ms),
                    // Standing (config file) rules first, then this session's, as for a
                    // console push; a snapshot: `watch del` and `watch add` to change them.
                    rules: self.all_rules(rules),
                    options: PushOptions {
                        checksum: c.checksum,
                        owners: rustix::process::geteuid().is_root(),
                        delete: c.delete,
                        delete_only: false,
                        dry_run: false,
                        no_fsync: c.no_fsync,
                        ..PushOptions::default()
                    },
                };
                let pusher = JobPusher {
                    jobs,
                    wake: self.wake.clone(),
                    targets: c.targets.clone(),
                    owner_match: self.owner_match,
                };
                match self.watches.add(cfg, Box::new(pusher)) {
                    Ok(what) => {
                        log(1, format_args!("watching {what}"));
                        writeln!(w, "watching {what}\nok")
                    }
                    Err(e) => writeln!(w, "error: {e:#}"),
                }
            }
        }
    }

    fn simple(
        &self,
        w: &mut impl Write,
        job: fn(Sender<Reply>) -> Job,
        json: bool,
        extra: &[String],
    ) -> std::io::Result<()> {
        let (tx, rx) = mpsc::channel();
        if !self.send_job(job(tx)) {
            return writeln!(w, "error: daemon is shutting down");
        }
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Reply::Lines(mut lines)) => {
                lines.extend_from_slice(extra);
                if json {
                    writeln!(
                        w,
                        "result {}",
                        serde_json::to_string(&lines).unwrap_or_default()
                    )?;
                } else {
                    for l in lines {
                        writeln!(w, "{l}")?;
                    }
                }
                writeln!(w, "ok")
            }
            _ => writeln!(w, "error: no answer from the network loop"),
        }
    }

    fn push(
        &self,
        w: &mut impl Write,
        c: &SendCmd,
        rules: &[RuleSpec],
        files: &[String],
        check: bool,
    ) -> std::io::Result<()> {
        if self.no_send {
            return writeln!(w, "error: this daemon never sends (-s)");
        }
        let options = PushOptions {
            checksum: c.checksum || check,
            owners: rustix::process::geteuid().is_root(),
            // A check is a dry `--delete` too: what a member would delete exists only there.
            delete: if check {
                c.recursive && !c.files_from
            } else {
                c.delete
            },
            delete_only: c.delete_only,
            dry_run: c.dry_run || check,
            no_fsync: c.no_fsync,
            xattrs: c.xattrs,
            acls: c.acls,
            hard_links: c.hard_links,
            sparse: c.sparse,
            devices: c.devices,
            specials: c.specials,
        };
        // The config file's rules first, then the session's: both apply.
        let all = self.all_rules(rules);
        let select = node::Select {
            paths: if c.files_from { files } else { &c.paths },
            recursive: c.recursive,
            files_from: c.files_from,
            rules: &all,
        };
        let mut sel = match node::build_manifest(&self.base, &select, options) {
            Ok(s) => s,
            Err(e) => return writeln!(w, "error: {e:#}"),
        };
        for (p, why) in &sel.skipped {
            writeln!(w, "{}", crate::tree::skip_line(p, why))?;
        }
        if let Some(uid) = self.owner_match {
            let (left_out, delete_off) = owner_match::apply(&mut sel.manifest, uid);
            for p in &left_out {
                writeln!(
                    w,
                    "skipping {}: {}",
                    escape::text(p),
                    owner_match::SKIP_REASON
                )?;
            }
            if delete_off {
                writeln!(
                    w,
                    "warning: a name left out (-O) is not UTF-8 and cannot be protected: \
                     nothing is deleted in this push"
                )?;
            }
        }
        for (_, why) in &sel.missing {
            writeln!(w, "warning: {}", escape::text_str(why))?;
        }
        for why in &sel.warnings {
            writeln!(w, "warning: {why}")?;
        }
        let manifest_len = if c.stats {
            sel.manifest.encode().len()
        } else {
            0
        };
        let (tx, rx) = mpsc::channel();
        let job = Job::Push {
            manifest: sel.manifest,
            targets: c.targets.clone(),
            max_delete: c.max_delete,
            check,
            reply: tx,
            detail: Detail {
                itemize: c.itemize,
                stats: c.stats.then_some((manifest_len, sel.walk_time)),
                atomic: c.atomic,
                progress: c.progress,
            },
            walk: sel.walk_time,
            sent: Instant::now(),
        };
        if !self.send_job(job) {
            return writeln!(w, "error: daemon is shutting down");
        }
        loop {
            match rx.recv() {
                Ok(Reply::Line(l)) => {
                    if !c.json || c.progress {
                        writeln!(w, "{l}")?;
                    }
                }
                Ok(Reply::Lines(ls)) => {
                    for l in ls {
                        writeln!(w, "{l}")?;
                    }
                }
                Ok(Reply::Done(mut o)) => {
                    o.fold_walk(sel.vanished, sel.missing.len());
                    if c.json {
                        writeln!(
                            w,
                            "result {}",
                            serde_json::to_string(&o).unwrap_or_default()
                        )?;
                    } else {
                        for l in console::render(&o, check) {
                            writeln!(w, "{l}")?;
                        }
                    }
                    let last = if check {
                        console::check_final(&o)
                    } else {
                        o.final_line()
                    };
                    return writeln!(w, "{last}");
                }
                Err(_) => return writeln!(w, "error: daemon is shutting down"),
            }
        }
    }
}
