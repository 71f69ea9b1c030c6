//! Console sessions of the daemon: each admitted connection's commands, pushes walked here
//! and handed to the network loop as jobs, and daemon-side watches that push the same way.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::*;
use crate::console::{self, Request, SendCmd};
use crate::console_access;
use crate::escape;
use crate::filter::RuleSpec;
use crate::logging;
use crate::node::{self};
use crate::operate::DaemonRules;
use crate::owner_match;
use crate::proto::manifest::release::{self, Release};
use crate::proto::manifest::PushOptions;
use crate::proto::{self};
use crate::report::Outcome;

/// What console sessions share.
pub(super) struct Session {
    pub(super) base: PathBuf,
    /// `-s`: this daemon never sends (console pushes are refused).
    pub(super) no_send: bool,
    /// `-O`: pushes leave out what this uid does not own.
    pub(super) owner_match: Option<u32>,
    /// The config file's `exclude` rules, applied before each session's own.
    pub(super) rules: DaemonRules,
    /// The standing excludes (`makuo exclude add`), after the config file's.
    pub(super) excludes: Arc<crate::state::Excludes>,
    /// When the daemon started (`status`'s uptime).
    pub(super) started: Instant,
    /// Who may connect, the password, the limits and the counters.
    pub(super) console: Arc<console_access::Server>,
    pub(super) jobs: Mutex<Sender<Job>>,
    /// Daemon-side watches (`watch add`): they outlive the session that made them.
    pub(super) watches: Arc<crate::watch::Registry>,
    /// Ends the network loop's wait, so it takes a job at once (not at its next timeout).
    pub(super) wake: crate::net::Waker,
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
    pub(super) fn serve<S: console_access::Conn>(&self, conn: S, who: &console_access::Who) {
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
        let paths: Vec<Vec<u8>> = c.paths.iter().map(|p| crate::tree::path_arg(p)).collect();
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
            release: c.release.as_ref().map(|name| {
                Box::new(Release {
                    name: name.clone(),
                    keep: c.keep_releases.unwrap_or(release::DEFAULT_KEEP),
                    rollback: c.rollback,
                })
            }),
        };
        // The config file's rules first, then the session's: both apply.
        let all = self.all_rules(rules);
        let select = node::Select {
            paths: if c.files_from { files } else { &c.paths },
            recursive: c.recursive,
            files_from: c.files_from,
            rules: &all,
        };
        let built = if c.rollback {
            Ok(node::Selection::nothing(options))
        } else {
            node::build_manifest(&self.base, &select, options)
        };
        let mut sel = match built {
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
