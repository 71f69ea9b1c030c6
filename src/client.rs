//! The rsync-flavoured front end: `makuo sync|check|members|status|exclude|loglevel`.
//!
//! With a daemon answering on the console (and no `--direct`, `-b`, `-m`, `-p`, `-i`, `-k`),
//! the request goes to it and its answer is printed. Otherwise the front end walks the tree
//! itself, joins the cluster for a moment, discovers the members and multicasts directly with
//! the same engine. Output and exit codes are the same either way: itemized lines for `-n`,
//! then a per-member table (or one JSON document with `--json`; everything else on stderr).

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;

use crate::apply::ApplyOptions;
use crate::cli::{
    self, CheckArgs, ConsoleAddr, ConsoleArgs, FilterArgKind, FrontArgs, ListArgs, OutputArgs,
    SyncArgs,
};
use crate::console;
use crate::exit::Exit;
use crate::filter::RuleSpec;
use crate::node::{self, Node, NodeConfig};
use crate::proto::manifest::{FilterRule, PushOptions};
use crate::proto::{self, Command, Event, PushRequest};
use crate::report::{Absent, Outcome};

/// A line-based console connection.
pub struct Console {
    r: Box<dyn BufRead>,
    w: Box<dyn Write>,
    /// `--timeout`: no line from the daemon for this long ends the run (exit 30).
    pub timeout: Option<Duration>,
    set_timeout: Box<dyn Fn(Option<Duration>) -> std::io::Result<()>>,
}

/// The daemon went quiet for longer than `--timeout`.
#[derive(Debug)]
pub struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out waiting for the daemon")
    }
}

impl std::error::Error for TimedOut {}

impl Console {
    /// Connects (TCP `HOST:PORT` or a unix socket path) and authenticates if asked.
    pub fn connect(addr: &ConsoleAddr, password_file: Option<&std::path::Path>) -> Result<Self> {
        type Setter = Box<dyn Fn(Option<Duration>) -> std::io::Result<()>>;
        let (r, w, set_timeout): (Box<dyn BufRead>, Box<dyn Write>, Setter) = match addr {
            ConsoleAddr::Tcp(a) => {
                let addrs: Vec<_> = std::net::ToSocketAddrs::to_socket_addrs(a.as_str())?.collect();
                let s = addrs
                    .iter()
                    .find_map(|sa| TcpStream::connect_timeout(sa, Duration::from_millis(500)).ok())
                    .ok_or_else(|| anyhow!("no daemon answers on {a}"))?;
                let t = s.try_clone()?;
                (
                    Box::new(BufReader::new(s.try_clone()?)),
                    Box::new(s),
                    Box::new(move |d| t.set_read_timeout(d)),
                )
            }
            ConsoleAddr::Unix(p) => {
                let s = UnixStream::connect(p)
                    .with_context(|| format!("no daemon answers on {}", p.display()))?;
                let t = s.try_clone()?;
                (
                    Box::new(BufReader::new(s.try_clone()?)),
                    Box::new(s),
                    Box::new(move |d| t.set_read_timeout(d)),
                )
            }
        };
        let mut c = Console {
            r,
            w,
            timeout: None,
            set_timeout,
        };
        if let Some(pf) = password_file {
            let pw = crate::secret_file::read_password(pf)?;
            let last = c.command(&format!("password {}", quote(pw.as_str())), |_| {})?;
            if last != "ok" {
                bail!(
                    "console {addr} refused the password: {}",
                    last.trim_start_matches("error: ")
                );
            }
        }
        Ok(c)
    }

    /// Sends one command; calls `line` for every line before the final one, which it returns.
    pub fn command(&mut self, cmd: &str, mut line: impl FnMut(&str)) -> Result<String> {
        writeln!(self.w, "{cmd}")?;
        self.w.flush()?;
        (self.set_timeout)(self.timeout)?;
        let mut buf = String::new();
        loop {
            buf.clear();
            match self.r.read_line(&mut buf) {
                Ok(0) => bail!("the daemon closed the console"),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(TimedOut.into())
                }
                Err(e) => return Err(e.into()),
            }
            let l = buf.trim_end_matches(['\r', '\n']);
            if l == "ok" || l.starts_with("error:") {
                return Ok(l.to_string());
            }
            line(l);
        }
    }
}

/// Quotes a word for the console.
pub fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

fn explicit(m: &ArgMatches, id: &str) -> bool {
    matches!(m.try_get_raw(id), Ok(Some(_))) && m.value_source(id) == Some(ValueSource::CommandLine)
}

/// Whether to run in-process: `--direct`, any of `-b -m -p -i -k`, or no daemon answering.
fn want_direct(front: &FrontArgs, sub: &ArgMatches) -> bool {
    front.direct
        || ["base", "group", "port", "interface", "keys"]
            .iter()
            .any(|id| explicit(sub, id))
}

/// The filter rules of the command line in order, `merge` files and `--exclude-from` /
/// `--include-from` files read (relative to the current directory) and every rule checked.
pub(crate) fn rules_in_order(sub: &ArgMatches) -> Result<Vec<RuleSpec>> {
    let mut rules = Vec::new();
    let mut dash_f = 0;
    let old = |include, pattern| RuleSpec::Old(FilterRule { include, pattern });
    for (kind, v) in cli::filter_args_in_order(sub) {
        match kind {
            FilterArgKind::Include => rules.push(old(true, v)),
            FilterArgKind::Exclude => rules.push(old(false, v)),
            FilterArgKind::ExcludeFrom | FilterArgKind::IncludeFrom => {
                let include = kind == FilterArgKind::IncludeFrom;
                for p in crate::filter::read_rules_file(&v)? {
                    rules.push(old(include, p));
                }
            }
            FilterArgKind::Filter => rules.push(RuleSpec::Rule(v)),
            FilterArgKind::FilterFiles => {
                dash_f += 1;
                rules.push(RuleSpec::Rule(if dash_f == 1 {
                    format!("dir-merge /{}", crate::filter::RSYNC_FILTER)
                } else {
                    format!("- {}", crate::filter::RSYNC_FILTER)
                }));
            }
        }
    }
    let cwd = std::env::current_dir().context("current directory")?;
    let rules = crate::filter::expand_merges(&rules, &cwd)?;
    crate::filter::Filter::build(&rules)?;
    Ok(rules)
}

/// The PATHs of sync/check, or the `--files-from` list in their place.
fn paths_or_list(paths: &[std::path::PathBuf], list: &ListArgs) -> Result<(Vec<String>, bool)> {
    let Some(file) = &list.files_from else {
        return Ok((
            paths
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            false,
        ));
    };
    if paths.iter().any(|p| p.as_os_str() != ".") {
        bail!("--files-from: the listed paths are relative to the base (-b); give no PATH");
    }
    let listed = crate::filter::read_files_from(file, list.from0)?;
    Ok((
        listed
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
        true,
    ))
}

fn print_outcome(o: &Outcome, out: &OutputArgs, check: bool) -> Exit {
    print_outcome_with(o, out, check, false, false)
}

fn print_outcome_with(
    o: &Outcome,
    out: &OutputArgs,
    check: bool,
    itemize: bool,
    stats: bool,
) -> Exit {
    if !out.json && itemize && !o.dry_run && !check {
        let mut so = std::io::stdout().lock();
        for l in o.itemized() {
            let _ = writeln!(so, "{l}");
        }
    }
    if out.json {
        let mut so = std::io::stdout().lock();
        let _ = writeln!(
            so,
            "{}",
            serde_json::to_string_pretty(o).unwrap_or_default()
        );
    } else {
        let mut so = std::io::stdout().lock();
        let lines = console::render(o, check);
        let n = lines.len();
        for (i, l) in lines.into_iter().enumerate() {
            // The table is always printed; with -q only the table.
            if !out.quiet || i + o.members.len() + 1 >= n {
                let _ = writeln!(so, "{l}");
            }
        }
        if stats && !out.quiet {
            if let Some(st) = &o.stats {
                let _ = writeln!(so);
                for l in st.lines(o.seconds) {
                    let _ = writeln!(so, "{l}");
                }
            }
        }
        let last = if check {
            console::check_final(o)
        } else {
            o.final_line()
        };
        if last != "ok" {
            eprintln!("makuo: {}", last.trim_start_matches("error: "));
        }
    }
    Exit::from_code(o.exit)
}

/// `makuo sync`.
pub fn sync(args: &SyncArgs, sub: &ArgMatches) -> Result<Exit> {
    let rules = rules_in_order(sub)?;
    let (paths, files_from) = paths_or_list(&args.paths, &args.list)?;
    if args.itemize_changes && !files_from {
        if let Some(p) = paths.iter().find(|p| p.parse::<std::net::IpAddr>().is_ok()) {
            bail!(
                "{p}: -i is rsync's --itemize-changes here; give the interface as --interface {p}"
            );
        }
    }
    let cmd = PushCmd {
        paths,
        files_from,
        // rsync: -a does not imply -r with --files-from.
        recursive: args.select.recursive || (args.archive && !files_from),
        targets: args.select.targets.clone(),
        rules,
        options: {
            let mut o = PushOptions {
                checksum: args.checksum,
                owners: rustix::process::geteuid().is_root(),
                delete: args.delete,
                delete_only: false,
                dry_run: args.dry_run,
                no_fsync: args.no_fsync,
                ..PushOptions::default()
            };
            args.kinds.apply(&mut o);
            // rsync's -a includes -D.
            if args.archive {
                o.devices = true;
                o.specials = true;
            }
            o
        },
        max_delete: args.max_delete,
        check: false,
        bwlimit: args.bwlimit.filter(|&b| b > 0),
        min_rate: args.min_rate,
        timeout: args.timeout.filter(|&t| t > 0).map(Duration::from_secs),
        progress: args.progress,
        itemize: args.itemize_changes,
        stats: args.stats,
    };
    run_push(&args.front, sub, &cmd)
}

/// `makuo check`.
pub fn check(args: &CheckArgs, sub: &ArgMatches) -> Result<Exit> {
    let rules = rules_in_order(sub)?;
    let (mut paths, files_from) = paths_or_list(&args.paths, &args.list)?;
    if paths.is_empty() && !files_from {
        paths.push(".".into());
    }
    let cmd = PushCmd {
        paths,
        files_from,
        recursive: args.select.recursive,
        targets: args.select.targets.clone(),
        rules,
        options: PushOptions {
            checksum: true,
            owners: false,
            delete: false,
            delete_only: false,
            dry_run: true,
            no_fsync: false,
            ..PushOptions::default()
        },
        max_delete: None,
        check: true,
        bwlimit: None,
        min_rate: None,
        timeout: None,
        progress: false,
        itemize: false,
        stats: false,
    };
    run_push(&args.front, sub, &cmd)
}

struct PushCmd {
    paths: Vec<String>,
    /// `paths` is a `--files-from` list.
    files_from: bool,
    recursive: bool,
    targets: Vec<String>,
    rules: Vec<RuleSpec>,
    options: PushOptions,
    max_delete: Option<u64>,
    check: bool,
    bwlimit: Option<u64>,
    /// `--min-rate` as given (`Some(0)`: no floor; `None`: the default).
    min_rate: Option<u64>,
    timeout: Option<Duration>,
    progress: bool,
    /// `-i`: itemized lines for a real run too.
    itemize: bool,
    /// `--stats`.
    stats: bool,
}

fn run_push(front: &FrontArgs, sub: &ArgMatches, cmd: &PushCmd) -> Result<Exit> {
    if !want_direct(front, sub) {
        match Console::connect(
            &front.console.console,
            front.console.password_file.as_deref(),
        ) {
            Ok(c) => return via_console(c, front, cmd),
            Err(e) => {
                if explicit(sub, "console") {
                    return Err(e);
                }
                if front.output.verbose > 0 {
                    eprintln!("makuo: {e:#}; running direct");
                }
            }
        }
    }
    direct_push(front, cmd)
}

fn via_console(mut c: Console, front: &FrontArgs, cmd: &PushCmd) -> Result<Exit> {
    let out = &front.output;
    if cmd.bwlimit.is_some() && !out.quiet {
        eprintln!("makuo: --bwlimit applies to direct mode; the daemon's rate is its -T");
    }
    if cmd.min_rate.is_some() && !out.quiet {
        eprintln!("makuo: --min-rate applies to direct mode; the daemon's own --min-rate applies");
    }
    c.timeout = cmd.timeout;
    send_rules(&mut c, &cmd.rules, &front.console.console.to_string())?;
    if cmd.files_from {
        send_files(&mut c, &cmd.paths)?;
    }
    let mut line = String::from(if cmd.check {
        "md5"
    } else if cmd.options.delete {
        "sync"
    } else {
        "send"
    });
    if cmd.options.dry_run && !cmd.check {
        line.push_str(" -n");
    }
    if cmd.recursive {
        line.push_str(" -r");
    }
    if cmd.options.checksum && !cmd.check {
        line.push_str(" -c");
    }
    for t in &cmd.targets {
        line.push_str(&format!(" -t {}", quote(t)));
    }
    if let Some(n) = cmd.max_delete {
        line.push_str(&format!(" --max-delete {n}"));
    }
    if cmd.options.no_fsync {
        line.push_str(" --no-fsync");
    }
    for (on, word) in [
        (cmd.options.hard_links, " -H"),
        (cmd.options.sparse, " -S"),
        (cmd.options.devices, " --devices"),
        (cmd.options.specials, " --specials"),
        (cmd.options.xattrs, " -X"),
        (cmd.options.acls, " -A"),
    ] {
        if on {
            line.push_str(word);
        }
    }
    if cmd.itemize {
        line.push_str(" -i");
    }
    if cmd.stats {
        line.push_str(" --stats");
    }
    if cmd.files_from {
        line.push_str(" --files-from");
    }
    line.push_str(" --json --");
    if !cmd.files_from {
        for p in &cmd.paths {
            line.push(' ');
            line.push_str(&quote(p));
        }
    }
    let mut result = None;
    let last = c.command(&line, |l| {
        if let Some(j) = l.strip_prefix("result ") {
            result = serde_json::from_str::<Outcome>(j).ok();
        } else if !out.quiet
            && (out.verbose > 0 || l.starts_with("skipping") || l.starts_with("warning"))
        {
            eprintln!("{l}");
        }
    });
    let last = match last {
        Err(e) if e.is::<TimedOut>() => {
            let t = cmd.timeout.unwrap_or_default().as_secs();
            let o = Outcome::failed(
                Exit::Timeout,
                format!("the daemon said nothing for {t}s"),
                0.0,
            );
            return Ok(print_outcome(&o, out, cmd.check));
        }
        other => other?,
    };
    let _ = c.command("quit", |_| {});
    match result {
        Some(o) => Ok(print_outcome_with(
            &o,
            out,
            cmd.check,
            cmd.itemize,
            cmd.stats,
        )),
        None => {
            eprintln!("makuo: {}", last.trim_start_matches("error: "));
            Ok(Exit::Error)
        }
    }
}

/// Replaces the console session's rules with `rules`, in order.
pub(crate) fn send_rules(c: &mut Console, rules: &[RuleSpec], console: &str) -> Result<()> {
    // The first answer also says whether this console lets us in at all.
    let last = c.command("exclude clear", |_| {})?;
    if last != "ok" {
        bail!("console {console}: {}", last.trim_start_matches("error: "));
    }
    for r in rules {
        let (words, text) = r.console_words();
        let last = c.command(&format!("{words} {}", quote(text)), |_| {})?;
        if last != "ok" {
            bail!("daemon refused rule {text}: {last}");
        }
    }
    Ok(())
}

/// Hands a `--files-from` list to the console session, a few dozen paths a line.
fn send_files(c: &mut Console, paths: &[String]) -> Result<()> {
    c.command("files clear", |_| {})?;
    let mut line = String::new();
    let mut flush = |line: &mut String| -> Result<()> {
        if !line.is_empty() {
            let last = c.command(&format!("files add{line}"), |_| {})?;
            if last != "ok" {
                bail!("daemon refused the --files-from list: {last}");
            }
            line.clear();
        }
        Ok(())
    };
    for p in paths {
        line.push(' ');
        line.push_str(&quote(p));
        // The console takes lines of at most 4096 bytes.
        if line.len() > 2048 {
            flush(&mut line)?;
        }
    }
    flush(&mut line)
}

fn load_keys(front: &FrontArgs) -> Result<Vec<crate::seal::Key>> {
    front
        .cluster
        .keys
        .iter()
        .map(|p| crate::seal::load_key(p).map_err(|e| anyhow!("{e}")))
        .collect()
}

/// Starts an in-process node for direct mode (it does not receive pushes itself).
fn direct_node(front: &FrontArgs, rate: Option<u64>, floor: Option<u64>) -> Result<Node> {
    let name = front
        .cluster
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-sync", crate::daemon::hostname()));
    let keys = load_keys(front)?;
    let engine = proto::Config {
        node_id: node::random_node_id(),
        name: name.clone(),
        receive: false,
        rate_limit: rate,
        min_rate: crate::cli::min_rate_floor(floor),
        seed: node::random_node_id(),
        mtu: front.cluster.mtu as usize,
        ..proto::Config::default()
    };
    Node::new(NodeConfig {
        group: front.cluster.group,
        port: front.cluster.port,
        interface: front.cluster.interface.unwrap_or(Ipv4Addr::UNSPECIFIED),
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

/// Listens for members for at most `d`. Members answer a join within tens of milliseconds
/// and pass along everyone they know, so once some have answered and no new one has appeared
/// for a short quiet period (and every remembered member is live), waiting longer learns
/// nothing: discovery ends early.
fn discover(node: &mut Node, d: Duration, expect: &[String]) -> Result<()> {
    let start = Instant::now();
    let end = start + d;
    let quiet = Duration::from_millis(50);
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
        let n = node.engine.members().filter(|m| m.receives()).count();
        if n != count {
            count = n;
            changed = Instant::now();
        }
        let all_expected = expect
            .iter()
            .all(|name| node.engine.members().any(|m| &m.name == name));
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

fn remembered(
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

fn direct_push(front: &FrontArgs, cmd: &PushCmd) -> Result<Exit> {
    front.cluster.require_key()?;
    let started = Instant::now();
    let out = &front.output;
    let base = &front.cluster.base;
    // Walking (and hashing) the tree and listening for members both take tens of
    // milliseconds on a big tree; they overlap.
    let (sel, found) = std::thread::scope(|s| {
        let walk = s.spawn(|| {
            let sel = node::build_manifest(
                base,
                &node::Select {
                    paths: &cmd.paths,
                    recursive: cmd.recursive,
                    files_from: cmd.files_from,
                    rules: &cmd.rules,
                },
                cmd.options.clone(),
            );
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
            eprintln!("skipping {}: {why}", crate::escape::text(p));
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
    let params = PushParams {
        targets: &cmd.targets,
        max_delete: cmd.max_delete,
        check: cmd.check,
        timeout: cmd.timeout,
        progress: cmd.progress,
        verbose: out.verbose,
        itemize: cmd.itemize,
        stats: cmd.stats,
        walk_time: walked,
        no_member: format!(
            "no member answered on {}:{} within {} ms",
            front.cluster.group, front.cluster.port, front.discover
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
        let mut o = Outcome::failed(Exit::NoMember, why, started.elapsed().as_secs_f64());
        o.members = absent.iter().map(Absent::outcome).collect();
        return Ok(o);
    }
    let manifest_len = if p.stats { manifest.encode().len() } else { 0 };
    let req = PushRequest {
        manifest: manifest.clone(),
        targets: live,
        max_delete: p.max_delete,
    };
    let xfer = node
        .engine
        .handle_command(Instant::now(), Command::Push(req))
        .map_err(|e| anyhow!("{e}"))?;
    let bar = (p.progress && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(100));
        b
    });
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
                Event::Progress { line, .. } => match &bar {
                    Some(b) => b.set_message(crate::escape::text_str(&line).into_owned()),
                    None if p.verbose > 0 => eprintln!("{}", crate::escape::text_str(&line)),
                    None => {}
                },
                Event::PushDone(r) if r.xfer == xfer => done = Some(r),
                _ => {}
            }
        }
        if let Some(r) = done {
            break r;
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
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(s) = state {
        // Remembered: the members that applied the push (a forged heartbeat never is).
        for m in report.members.iter().filter(|m| m.ok) {
            let seen_for = node
                .engine
                .members()
                .find(|i| i.node == m.node)
                .map_or(Duration::ZERO, |i| {
                    i.last_seen.saturating_duration_since(i.since)
                });
            s.seen(&m.name, &m.addr.ip().to_string(), seen_for);
        }
        let _ = s.save();
    }
    let secs = started.elapsed().as_secs_f64();
    let mut o = if p.check {
        Outcome::from_check(&manifest, &report, &absent, secs)
    } else {
        Outcome::from_report(&manifest, &report, &absent, secs)
    };
    if p.itemize && !p.check {
        o.add_itemized(&manifest, &report);
    }
    if p.stats {
        o.add_stats(&manifest, &report, manifest_len, p.walk_time);
    }
    Ok(o)
}

/// `makuo members`.
pub fn members(front: &FrontArgs, sub: &ArgMatches) -> Result<Exit> {
    if !want_direct(front, sub) {
        if let Ok(mut c) = Console::connect(
            &front.console.console,
            front.console.password_file.as_deref(),
        ) {
            return simple(&mut c, "members", &front.output);
        }
    }
    front.cluster.require_key()?;
    let mut node = direct_node(front, None, None)?;
    discover(&mut node, Duration::from_millis(front.discover), &[])?;
    let mut lines = Vec::new();
    for m in node.engine.members() {
        lines.push(crate::node::member_line(m));
    }
    for f in node.engine.foreign() {
        lines.push(crate::node::foreign_line(f, Instant::now()));
    }
    node.leave();
    if front.output.json {
        println!("{}", serde_json::to_string(&lines)?);
    } else {
        for l in &lines {
            println!("{l}");
        }
    }
    Ok(if lines.is_empty() {
        Exit::NoMember
    } else {
        Exit::Ok
    })
}

fn simple(c: &mut Console, cmd: &str, out: &OutputArgs) -> Result<Exit> {
    let mut lines = Vec::new();
    let last = c.command(cmd, |l| lines.push(l.to_string()))?;
    if out.json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({"lines": lines, "result": last}))?
        );
    } else {
        for l in &lines {
            println!("{l}");
        }
    }
    let _ = c.command("quit", |_| {});
    if last == "ok" {
        Ok(Exit::Ok)
    } else {
        eprintln!("makuo: {}", last.trim_start_matches("error: "));
        Ok(Exit::Error)
    }
}

/// `makuo status` (daemon only).
pub fn status(front: &FrontArgs) -> Result<Exit> {
    let mut c = Console::connect(
        &front.console.console,
        front.console.password_file.as_deref(),
    )?;
    simple(&mut c, "status", &front.output)
}

/// `makuo exclude ...` and `makuo loglevel N` (daemon only): forwards the console words.
pub fn console_words(console: &ConsoleArgs, words: &str, out: &OutputArgs) -> Result<Exit> {
    let mut c = Console::connect(&console.console, console.password_file.as_deref())?;
    simple(&mut c, words, out)
}

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
                if explicit(sub, "console") {
                    return Err(e);
                }
                if front.output.verbose > 0 {
                    eprintln!("makuo: {e:#}; watching in the foreground (direct)");
                }
            }
        }
    }
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
        paths: paths
            .iter()
            .map(|p| {
                let p = p.trim_end_matches('/');
                if p.is_empty() {
                    b".".to_vec()
                } else {
                    p.as_bytes().to_vec()
                }
            })
            .collect(),
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
            "no member answered on {}:{}",
            front.cluster.group, front.cluster.port
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
