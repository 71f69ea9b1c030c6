//! `makuo daemon`: the long-running member on every server.
//!
//! The main thread runs the network loop ([`crate::node::Node`]); console sessions (TCP on
//! loopback by default, and a unix socket with `-U`) run on their own threads, walk the tree
//! for `send`/`md5` themselves, and hand requests to the loop over a channel. Nothing of
//! makuo's lives in BASE while idle: state goes to the state directory, and leftover staged
//! files are swept at start. SIGTERM leaves the cluster gracefully and exits 0; SIGHUP,
//! SIGUSR1 and SIGUSR2 are the operator's ([`crate::operate`]). Settings come resolved
//! ([`crate::config`]): flags over environment over config file.
//!
//! Its parts: `start` (the base directory, the start-up lines, keys, going to the
//! background), `netloop` (the network loop: engine events, jobs from the console, push
//! outcomes back to sessions) and `session` (console sessions: commands, pushes handed to the
//! loop, daemon-side watches); this file holds the start-up sequence ([`run`]) and what the
//! parts share (the jobs and replies between sessions and the loop).

mod netloop;
mod session;
mod start;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::apply::ApplyOptions;
use crate::config::Resolved;
use crate::console_access;
use crate::escape;
use crate::exit::Exit;
use crate::logging;
use crate::metrics;
use crate::node::{self, Node, NodeConfig};
use crate::operate::{self, DaemonRules, Operator};
use crate::proto;
use crate::report::Outcome;
use crate::service::{Notifier, Signals};
use crate::startup;
use crate::state::StateDir;

use netloop::event_loop;
use session::Session;
use start::{base_dir, daemonize, load_keys, startup_lines};

/// Logs a line when `level` is at most the current log level ([`crate::logging`]).
pub fn log(level: u8, msg: impl std::fmt::Display) {
    crate::logging::log(level, msg)
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
    pub(super) itemize: bool,
    pub(super) stats: Option<(usize, Duration)>,
    /// `--atomic`: all or none.
    pub(super) atomic: bool,
    /// `--progress`: `progress DONE TOTAL PATH` lines while contents go out.
    pub(super) progress: bool,
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

/// Runs the daemon until SIGTERM.
pub fn run(conf: Resolved) -> Result<Exit> {
    let args = &conf.args;
    args.cluster.require_key()?;
    logging::set_level(args.loglevel);
    let base = base_dir(&conf)?;
    let name = args
        .cluster
        .name
        .clone()
        .unwrap_or_else(crate::node::hostname);
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
    // Once per daemon, before anything waits for it.
    proto::repair::warm_up();
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
        order: Default::default(),
    };
    // An atomic push a crash interrupted is finished or held in doubt before the sweep
    // (which spares the staging of those in doubt).
    let recovered = crate::apply::recover_journal(&base, &apply)
        .with_context(|| format!("commit journal in {}", state_dir.display()))?;
    let swept = crate::apply::sweep_temp(base_lock.fd(), &recovered.keep).unwrap_or(0);
    // Release directories a crash left uncommitted (`apply/release.rs`); those of pushes in
    // doubt stay until the cluster answers.
    let doubtful: Vec<_> = recovered.in_doubt.iter().map(|(k, _)| *k).collect();
    let swept = swept + crate::apply::sweep_releases(base_lock.fd(), &doubtful);
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
    for l in &recovered.lines {
        logging::notice(format_args!("{l}"));
    }
    if !recovered.in_doubt.is_empty() {
        // Asked of the cluster for three member timeouts: the sender decides within one of a
        // silent member, and a sealed cluster first verifies the restarted node.
        node.engine.storage_mut().hold_in_doubt(&recovered.in_doubt);
        let keys: Vec<_> = recovered.in_doubt.iter().map(|(k, _)| *k).collect();
        let patience = (node.engine.config().member_timeout * 3).max(Duration::from_secs(10));
        node.engine
            .resolve_in_doubt(Instant::now(), &keys, patience);
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
