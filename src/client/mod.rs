//! The rsync-flavoured front end: `makuo sync|check|members|status|exclude|loglevel`.
//!
//! With a daemon answering on the console (and no `--direct`, `-b`, `-m`, `-p`, `-i`, `-k`),
//! the request goes to it and its answer is printed. Otherwise the front end walks the tree
//! itself, joins the cluster for a moment, discovers the members and multicasts directly with
//! the same engine. Output and exit codes are the same either way: itemized lines for `-n`,
//! then a per-member table (or one JSON document with `--json`; everything else on stderr).

mod direct;
mod info;
mod progress;
mod session;
mod watch;

use direct::direct_push;
pub use info::{console_words, doctor, members, status};
pub use session::{quote, Console, TimedOut};
use session::{send_files, send_rules};
pub use watch::watch;

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;

use crate::cli::{
    self, CheckArgs, FilterArgKind, FrontArgs, ListArgs, OutputArgs, RollbackArgs, SyncArgs,
};
use crate::console;
use crate::exit::Exit;
use crate::filter::RuleSpec;
use crate::proto::manifest::release::{self, Release};
use crate::proto::manifest::{FilterRule, PushOptions};
use crate::report::Outcome;

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
    if !out.json && !o.dry_run && !check {
        let mut so = std::io::stdout().lock();
        // -i: rsync's itemized lines; -v: the name of every path sent or deleted.
        let lines = if itemize {
            o.itemized()
        } else if out.verbose > 0 && !out.quiet {
            o.names()
        } else {
            Vec::new()
        };
        for l in lines {
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
        let lines = console::render_with(o, check, out.verbose > 0);
        let n = lines.len();
        for (i, l) in lines.into_iter().enumerate() {
            // -q: nothing on success (rsync); when something failed, the table says where.
            if !out.quiet || (o.exit != 0 && i + o.members.len() + 1 >= n) {
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
                release: args.release.as_ref().map(|name| {
                    Box::new(Release {
                        name: name.clone(),
                        keep: args.keep_releases.unwrap_or(release::DEFAULT_KEEP),
                        rollback: false,
                    })
                }),
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
        // A release switches on every member together or on none.
        atomic: args.atomic || args.release.is_some(),
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

/// `makuo rollback NAME`: an atomic push of no files that switches NAME back on every member.
pub fn rollback(args: &RollbackArgs, sub: &ArgMatches) -> Result<Exit> {
    let cmd = PushCmd {
        paths: Vec::new(),
        files_from: false,
        recursive: false,
        targets: args.targets.clone(),
        rules: Vec::new(),
        options: PushOptions {
            release: Some(Box::new(Release {
                name: args.name.clone(),
                keep: release::DEFAULT_KEEP,
                rollback: true,
            })),
            ..PushOptions::default()
        },
        max_delete: None,
        atomic: true,
        check: false,
        bwlimit: None,
        min_rate: None,
        timeout: args.timeout.filter(|&t| t > 0).map(Duration::from_secs),
        progress: false,
        itemize: false,
        stats: false,
    };
    run_push(&args.front, sub, &cmd)
}

/// `makuo check`.
pub fn check(args: &CheckArgs, sub: &ArgMatches) -> Result<Exit> {
    let rules = rules_in_order(sub)?;
    let (mut paths, files_from) = paths_or_list(&args.paths, &args.list)?;
    // Without PATH the whole base is compared, recursively (makuosan's `md5 -r`).
    let whole = paths.is_empty() && !files_from;
    if whole {
        paths.push(".".into());
    }
    let recursive = args.select.recursive || whole;
    let cmd = PushCmd {
        paths,
        files_from,
        recursive,
        targets: args.select.targets.clone(),
        rules,
        options: PushOptions {
            checksum: true,
            owners: false,
            // A dry `--delete`: what a member would delete exists only there.
            delete: recursive && !files_from,
            delete_only: false,
            dry_run: true,
            no_fsync: false,
            ..PushOptions::default()
        },
        max_delete: None,
        atomic: false,
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
    atomic: bool,
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
        let started = Instant::now();
        match Console::connect_with(
            &front.console.console,
            front.console.password_file.as_deref(),
            cmd.timeout,
            front.output.quiet,
        ) {
            Ok(c) => return via_console(c, front, cmd, started),
            Err(e) if e.is::<TimedOut>() => return Ok(timed_out(front, cmd)),
            Err(e) => {
                // A console held by someone else is reported, never silently bypassed.
                if explicit(sub, "console") || e.is::<crate::console_trust::Untrusted>() {
                    return Err(e);
                }
                if !front.output.quiet {
                    eprintln!("makuo: {}", direct_line(front, &e));
                }
            }
        }
    }
    direct_push(front, cmd)
}

/// The one line that says a command runs directly because no daemon answered: on which
/// group, interface and base.
pub(crate) fn direct_line(front: &FrontArgs, e: &anyhow::Error) -> String {
    let c = &front.cluster;
    format!(
        "{e:#}; running directly: group {}:{}, interface {}, base {}",
        c.group,
        c.port,
        c.interface
            .as_ref()
            .map_or_else(|| "chosen by the kernel".to_string(), |i| i.to_string()),
        std::fs::canonicalize(&c.base)
            .unwrap_or_else(|_| c.base.clone())
            .display()
    )
}

/// Refuses a base that resolves to `/` unless it was given as `/` (a front end started in
/// `/` with no daemon answering must not push the whole file system).
pub(crate) fn check_base(front: &FrontArgs) -> Result<()> {
    let b = &front.cluster.base;
    if b.as_os_str() != "/"
        && std::fs::canonicalize(b).is_ok_and(|c| c == std::path::Path::new("/"))
    {
        bail!(
            "the base {} is /: give -b / to push from the root of the file system",
            b.display()
        );
    }
    Ok(())
}

/// The outcome of a run whose daemon said nothing for `--timeout` seconds (exit 30).
fn timed_out(front: &FrontArgs, cmd: &PushCmd) -> Exit {
    let t = cmd.timeout.unwrap_or_default().as_secs();
    let o = Outcome::failed(
        Exit::Timeout,
        format!(
            "the daemon on {} said nothing for {t}s",
            front.console.console
        ),
        0.0,
    );
    print_outcome(&o, &front.output, cmd.check)
}

fn via_console(c: Console, front: &FrontArgs, cmd: &PushCmd, started: Instant) -> Result<Exit> {
    match via_console_inner(c, front, cmd, started) {
        Err(e) if e.is::<TimedOut>() => Ok(timed_out(front, cmd)),
        other => other,
    }
}

fn via_console_inner(
    mut c: Console,
    front: &FrontArgs,
    cmd: &PushCmd,
    started: Instant,
) -> Result<Exit> {
    let out = &front.output;
    let phase = |what: &str| {
        if out.verbose > 1 {
            eprintln!("{what} after {:.3}s", started.elapsed().as_secs_f64());
        }
    };
    phase("connected to the console");
    if cmd.bwlimit.is_some() && !out.quiet {
        eprintln!("makuo: --bwlimit applies to direct mode; the daemon's rate is its -T");
    }
    if cmd.min_rate.is_some() && !out.quiet {
        eprintln!("makuo: --min-rate applies to direct mode; the daemon's own --min-rate applies");
    }
    c.timeout = cmd.timeout;
    send_rules(&mut c, &cmd.rules, &front.console.console.to_string())?;
    phase("the console took the rules");
    if cmd.files_from {
        send_files(&mut c, &cmd.paths)?;
    }
    let rollback = cmd.options.release.as_ref().filter(|r| r.rollback);
    let mut line = if cmd.check {
        "md5".to_string()
    } else if let Some(r) = rollback {
        format!("rollback {}", quote(&r.name))
    } else if cmd.options.delete {
        "sync".to_string()
    } else {
        "send".to_string()
    };
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
    if cmd.atomic && rollback.is_none() {
        line.push_str(" --atomic");
    }
    if let Some(r) = cmd.options.release.as_ref().filter(|r| !r.rollback) {
        line.push_str(&format!(
            " --release {} --keep-releases {}",
            quote(&r.name),
            r.keep
        ));
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
    // -v lists every path, from the itemized changes.
    if (cmd.itemize || out.verbose > 0) && rollback.is_none() {
        line.push_str(" -i");
    }
    if cmd.stats {
        line.push_str(" --stats");
    }
    if cmd.files_from {
        line.push_str(" --files-from");
    }
    // Progress and keep-alive lines even with --json: `--timeout` counts silence between
    // lines, and --progress draws them.
    line.push_str(if rollback.is_some() {
        " --progress --json"
    } else {
        " --progress --json --"
    });
    if !cmd.files_from {
        for p in &cmd.paths {
            line.push(' ');
            line.push_str(&quote(p));
        }
    }
    let mut result = None;
    let bar = progress::Bar::new(cmd.progress && !out.quiet);
    let last = c.command(&line, |l| {
        if let Some(j) = l.strip_prefix("result ") {
            result = serde_json::from_str::<Outcome>(j).ok();
        } else if l.starts_with("progress ") {
            bar.console_line(l);
        } else if bar.on() && !l.starts_with("skipping") && !l.starts_with("warning") {
            bar.line(l);
        } else if !out.quiet
            && (out.verbose > 0 || l.starts_with("skipping") || l.starts_with("warning"))
        {
            eprintln!("{l}");
        }
    });
    bar.finish();
    let last = last?;
    phase("push done");
    let _ = c.command("quit", |_| {});
    phase("console closed");
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
