//! `makuo watch`: watch paths under the base with inotify and push what changes, in batches.
//!
//! A [`Watch`] owns the inotify watches ([`notify`]), the changes not pushed yet
//! ([`batch`]) and the filter; [`Watch::run`] loops: read events, and when a batch is due,
//! select it (the changed paths with their parents, a new directory whole, deleted paths as
//! `--delete` scopes) and hand it to a [`Pusher`]. Two pushers exist: the front end's direct
//! mode (its own node, in the foreground) and the daemon's (the console's job queue, on a
//! thread of the daemon, so the watch outlives the client). This module knows neither: it
//! sits below both.
//!
//! Never a half-written file: a file written and not yet closed waits for its close
//! (`IN_CLOSE_WRITE`) or, when a writer keeps it open, until it has been quiet for the longest
//! wait; and the engine refuses to apply a file whose source changed while it was sent
//! ("vanished"), which puts it back in the next batch. A failed push is logged and retried with
//! backoff (1 s doubling to 60 s); an overflow of the kernel's queue, or a change of a
//! per-directory filter file, makes the next push a full compare.

pub mod batch;
pub mod notify;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Result};

use crate::exit::Exit;
use crate::filter::{Filter, RuleSpec};
use crate::node::{self, Selection};
use crate::proto::manifest::PushOptions;
use crate::report::Outcome;
use crate::tree::{self, Depth, ListFilter, Listed, WalkOptions};

use batch::{Batch, Taken};
use notify::{Seen, Tree};

/// What to watch and how to push it.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// The base directory (where paths are relative to).
    pub base: PathBuf,
    /// Watched directories, relative to the base (`.` for the base).
    pub paths: Vec<Vec<u8>>,
    /// Watch and push subdirectories.
    pub recursive: bool,
    /// Propagate deletions.
    pub delete: bool,
    /// Quiet period.
    pub delay: Duration,
    /// Filter rules (merge files expanded).
    pub rules: Vec<RuleSpec>,
    /// Checksum, owners, no-fsync (`delete` is set per push).
    pub options: PushOptions,
}

impl WatchConfig {
    /// How the watch is shown: `PATH... [-r] [--delete]`.
    pub fn describe(&self) -> String {
        let mut s = self
            .paths
            .iter()
            .map(|p| crate::escape::text(p).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if self.recursive {
            s.push_str(" -r");
        }
        if self.delete {
            s.push_str(" --delete");
        }
        s
    }
}

/// Carries a batch to the members.
pub trait Pusher {
    /// Waits up to `d` for nothing in particular, keeping the pusher alive (direct mode
    /// turns its node: heartbeats, members).
    fn idle(&mut self, d: Duration) -> Result<()>;
    /// Pushes one selection and returns the outcome.
    fn push(&mut self, sel: Selection) -> Result<Outcome>;
    /// Reports one line (a push, a failure).
    fn log(&mut self, line: &str);
    /// Whether members appeared that may have missed earlier pushes (then the next push is
    /// a full compare).
    fn new_members(&mut self) -> bool {
        false
    }
}

/// What `status` and `watch list` show of a watch.
#[derive(Clone, Debug, Default)]
pub struct WatchStatus {
    /// `PATH... -r --delete`.
    pub what: String,
    /// Pushes that went out, and those that failed.
    pub pushes: u64,
    /// Pushes that failed.
    pub failed: u64,
    /// Full compares among them.
    pub full: u64,
    /// Kernel queue overflows seen.
    pub overflows: u64,
    /// Last push: when it ended, whether it was ok, entries, bytes, lag (oldest change in
    /// it until done).
    pub last: Option<(SystemTime, bool, u64, u64, Duration)>,
    /// Changed paths waiting, and since when.
    pub pending: usize,
    /// When the oldest waiting change happened.
    pub pending_since: Option<Instant>,
    /// Directories watched.
    pub watched: usize,
    /// The last error, if the last push or the watch itself failed.
    pub error: Option<String>,
}

impl WatchStatus {
    /// One line: `watch PATH -r: pushes N (failed F, full C), last-push 3s-ago ok 2 entries
    /// 10 bytes lag 612ms, pending 0, watching D dirs`.
    pub fn line(&self) -> String {
        let last = match &self.last {
            None => "last-push -".to_string(),
            Some((at, ok, n, b, lag)) => format!(
                "last-push {}s-ago {} {n} entries {b} bytes lag {}ms",
                at.elapsed().map(|d| d.as_secs()).unwrap_or(0),
                if *ok { "ok" } else { "failed" },
                lag.as_millis()
            ),
        };
        let pending = match self.pending_since {
            Some(t) if self.pending > 0 => {
                format!("pending {} for {}ms", self.pending, t.elapsed().as_millis())
            }
            _ => "pending 0".into(),
        };
        let mut l = format!(
            "watch {}: pushes {} (failed {}, full {}, overflows {}), {last}, {pending}, watching {} dirs",
            self.what, self.pushes, self.failed, self.full, self.overflows, self.watched
        );
        if let Some(e) = &self.error {
            l.push_str(&format!(", error: {e}"));
        }
        crate::escape::text_str(&l).into_owned()
    }
}

/// One watch: its inotify watches, pending changes and filter.
pub struct Watch {
    cfg: WatchConfig,
    tree: Tree,
    filter: Filter,
    batch: Batch,
    /// Shared with whoever shows the status.
    pub status: Arc<Mutex<WatchStatus>>,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// A full compare left deletions out (files were held open): compare again once none is.
    compare_again: bool,
}

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Watch {
    /// Sets up the inotify watches of every path (each must be a directory under the base).
    /// The first push is a full compare.
    pub fn new(cfg: WatchConfig) -> Result<Self> {
        let mut filter = Filter::build(&cfg.rules)?;
        let mut tree = Tree::new(&cfg.base, cfg.recursive, &filter)?;
        for p in &cfg.paths {
            let rel: &[u8] = if p == b"." { b"" } else { p };
            crate::proto::manifest::check_rel_path(if rel.is_empty() { b"." } else { rel })
                .map_err(|e| anyhow::anyhow!("{}: {e}", crate::escape::text(p)))?;
            let abs = cfg.base.join(OsStr::from_bytes(rel));
            let md = std::fs::symlink_metadata(&abs)
                .map_err(|e| anyhow::anyhow!("{}: {e}", crate::escape::text(p)))?;
            if !md.is_dir() {
                bail!("{}: makuo watch takes directories", crate::escape::text(p));
            }
            filter.load_parents(&cfg.base, if rel.is_empty() { b"." } else { rel })?;
            tree.add(rel, &mut filter)?;
        }
        let mut batch = Batch::new(cfg.delay);
        batch.full(Instant::now());
        let status = WatchStatus {
            what: cfg.describe(),
            watched: tree.watched(),
            ..WatchStatus::default()
        };
        Ok(Self {
            cfg,
            tree,
            filter,
            batch,
            status: Arc::new(Mutex::new(status)),
            retry_at: None,
            backoff: MIN_BACKOFF,
            compare_again: false,
        })
    }

    /// Runs until `stop` is set: reads events, pushes batches when due.
    pub fn run(&mut self, pusher: &mut dyn Pusher, stop: &AtomicBool) -> Result<()> {
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            self.poll_events(&mut seen)?;
            if pusher.new_members() {
                self.batch.full(Instant::now());
            }
            if self.compare_again && self.batch.held().next().is_none() {
                self.compare_again = false;
                self.batch.full(Instant::now());
            }
            let now = Instant::now();
            let ready = self.retry_at.is_none_or(|t| t <= now);
            if ready {
                if let Some(t) = self.batch.take(now) {
                    self.push(t, pusher);
                    continue;
                }
            }
            let wake = match (self.batch.due(), self.retry_at) {
                (Some(d), Some(r)) => d.max(r),
                (Some(d), None) => d,
                (None, _) => now + Duration::from_millis(100),
            };
            let wait = wake
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), Duration::from_millis(20));
            pusher.idle(wait)?;
        }
        Ok(())
    }

    fn poll_events(&mut self, seen: &mut Vec<Seen>) -> Result<()> {
        seen.clear();
        if let Err(e) = self.tree.read(&mut self.filter, seen) {
            // Cannot read or add watches (limit reached): record it, compare fully later.
            self.set_error(format!("{e:#}"));
            self.batch.full(Instant::now());
        }
        let now = Instant::now();
        for s in seen.drain(..) {
            match s {
                Seen::Overflow => {
                    self.status_mut(|st| st.overflows += 1);
                    self.rewatch(now);
                }
                Seen::RulesChanged => {
                    self.filter.forget_dirs();
                    self.rewatch(now);
                }
                Seen::Changed {
                    path,
                    open,
                    closed,
                    new_dir,
                } => self.batch.changed(now, path, open, closed, new_dir),
            }
        }
        let (n, since, watched) = (self.batch.len(), self.batch.since(), self.tree.watched());
        self.status_mut(|st| {
            st.pending = n;
            st.pending_since = since;
            st.watched = watched;
        });
        Ok(())
    }

    /// Watches every directory again (some may have been missed) and asks for a full compare.
    fn rewatch(&mut self, now: Instant) {
        self.batch.full(now);
        for p in self.cfg.paths.clone() {
            let rel: &[u8] = if p == b"." { b"" } else { &p };
            if let Err(e) = self.tree.add(rel, &mut self.filter) {
                self.set_error(format!("{e:#}"));
            }
        }
    }

    fn status_mut(&self, f: impl FnOnce(&mut WatchStatus)) {
        if let Ok(mut st) = self.status.lock() {
            f(&mut st);
        }
    }

    fn set_error(&self, e: String) {
        self.status_mut(|st| st.error = Some(e));
    }

    /// Selects a batch: a full compare of every watched path, or the changed paths.
    fn select(&mut self, t: &Taken) -> Result<Option<Selection>> {
        let started = Instant::now();
        let mut options = self.cfg.options.clone();
        options.delete = self.cfg.delete;
        if t.full {
            let paths: Vec<String> = self
                .cfg
                .paths
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            // A full compare reads the per-directory files afresh.
            self.filter.forget_dirs();
            let mut sel = node::build_manifest(
                &self.cfg.base,
                &node::Select {
                    paths: &paths,
                    recursive: self.cfg.recursive,
                    files_from: false,
                    rules: &self.cfg.rules,
                },
                options,
            )?;
            // Files a writer still has open wait for their own batch.
            let held: std::collections::HashSet<&[u8]> = self.batch.held().collect();
            if !held.is_empty() {
                sel.manifest
                    .entries
                    .retain(|e| !held.contains(e.path.as_slice()));
                // And --delete must not remove them on the members meanwhile: this compare
                // deletes nothing, and another one follows once they are closed.
                if self.cfg.delete {
                    sel.manifest.options.delete = false;
                    sel.manifest.roots.clear();
                    self.compare_again = true;
                }
            }
            return Ok(Some(sel));
        }
        let mut walks = Vec::new();
        let mut gone = Vec::new();
        for root in &self.cfg.paths {
            let mut list = Vec::new();
            for (p, new_dir) in &t.paths {
                let under = root == b"."
                    || p == root
                    || (p.starts_with(root) && p.get(root.len()) == Some(&b'/'));
                if !under || (!self.cfg.recursive && !self.direct_child(root, p)) {
                    continue;
                }
                let abs = self.cfg.base.join(OsStr::from_bytes(p));
                match std::fs::symlink_metadata(&abs) {
                    Ok(md) => list.push(Listed {
                        path: p.clone(),
                        depth: if md.is_dir() && *new_dir && self.cfg.recursive {
                            Depth::All
                        } else {
                            Depth::Itself
                        },
                    }),
                    Err(_) => {
                        if self.cfg.delete && !self.hidden_parent(root, p) {
                            gone.push(p.clone());
                        }
                    }
                }
            }
            if list.is_empty() {
                continue;
            }
            let w = tree::walk_list(
                &self.cfg.base,
                &list,
                &ListFilter::Walk { root: root.clone() },
                &WalkOptions {
                    recursive: self.cfg.recursive,
                    checksum: options.checksum,
                    kinds: crate::kinds::KindOptions::of(&options),
                },
                &mut self.filter,
            )?;
            walks.push(w);
        }
        let mut all = tree::Walk::default();
        for w in walks {
            all.entries.extend(w.entries);
            all.roots.extend(w.roots);
            all.vanished += w.vanished;
            all.skipped.extend(w.skipped);
        }
        all.entries.sort_by(|a, b| tree::tree_cmp(&a.path, &b.path));
        all.entries.dedup_by(|a, b| a.path == b.path);
        if self.cfg.delete {
            all.roots.extend(gone);
            all.roots.sort();
            all.roots.dedup();
        } else {
            all.roots.clear();
        }
        if all.entries.is_empty() && all.roots.is_empty() {
            return Ok(None);
        }
        Ok(Some(node::selection_of(
            all,
            &self.filter,
            options,
            started.elapsed(),
        )))
    }

    fn direct_child(&self, root: &[u8], p: &[u8]) -> bool {
        let rest = if root == b"." {
            p
        } else {
            p.get(root.len() + 1..).unwrap_or(b"")
        };
        !rest.is_empty() && !rest.contains(&b'/')
    }

    /// Whether a parent of `p` below `root` is excluded on the sender or protected on the
    /// receivers: a deletion there is not the watch's to propagate.
    fn hidden_parent(&self, root: &[u8], p: &[u8]) -> bool {
        (0..p.len())
            .filter(|&i| p[i] == b'/')
            .map(|i| &p[..i])
            .filter(|a| root == b"." || a.len() >= root.len())
            .any(|a| self.filter.excluded(a, true) || self.filter.protected(a, true))
    }

    fn push(&mut self, t: Taken, pusher: &mut dyn Pusher) {
        let since = t.since.unwrap_or_else(Instant::now);
        let full = t.full;
        let sel = match self.select(&t) {
            Ok(Some(sel)) => sel,
            Ok(None) => return,
            Err(e) => {
                pusher.log(&format!(
                    "watch {}: cannot select: {e:#}",
                    self.cfg.describe()
                ));
                self.failed(t, format!("{e:#}"));
                return;
            }
        };
        let entries = sel.manifest.entries.len() as u64;
        let deletes = sel.manifest.roots.len();
        let result = pusher.push(sel);
        let lag = since.elapsed();
        match result {
            Ok(o) if matches!(Exit::from_code(o.exit), Exit::Ok | Exit::Vanished) => {
                let bytes: u64 = o.members.iter().map(|m| m.bytes).max().unwrap_or(0);
                pusher.log(&format!(
                    "watch {}: pushed {}{entries} entries{}, {bytes} bytes to {} members, lag {} ms{}",
                    self.cfg.describe(),
                    if full { "(full compare) " } else { "" },
                    if deletes > 0 && self.cfg.delete {
                        format!(", {deletes} delete scopes")
                    } else {
                        String::new()
                    },
                    o.members.len(),
                    lag.as_millis(),
                    if o.vanished.is_empty() {
                        String::new()
                    } else {
                        format!("; {} changed while sent, again next batch", o.vanished.len())
                    }
                ));
                self.backoff = MIN_BACKOFF;
                self.retry_at = None;
                if !o.vanished.is_empty() {
                    // Files still being written: push this batch's paths again.
                    let mut again = t;
                    again.since = Some(Instant::now());
                    self.batch.put_back(again, Instant::now());
                }
                self.status_mut(|st| {
                    st.pushes += 1;
                    st.full += u64::from(full);
                    st.last = Some((SystemTime::now(), true, entries, bytes, lag));
                    st.error = None;
                });
            }
            Ok(o) => {
                let why = o.final_line();
                pusher.log(&format!(
                    "watch {}: push failed ({why}); retrying in {}s",
                    self.cfg.describe(),
                    self.backoff.as_secs()
                ));
                self.failed(t, why);
            }
            Err(e) => {
                pusher.log(&format!(
                    "watch {}: push failed ({e:#}); retrying in {}s",
                    self.cfg.describe(),
                    self.backoff.as_secs()
                ));
                self.failed(t, format!("{e:#}"));
            }
        }
    }

    fn failed(&mut self, t: Taken, why: String) {
        let now = Instant::now();
        self.batch.put_back(t, now);
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.status_mut(|st| {
            st.pushes += 1;
            st.failed += 1;
            st.last = Some((SystemTime::now(), false, 0, 0, Duration::ZERO));
            st.error = Some(why);
        });
    }
}

/// The daemon's watches: each runs on its own thread with its own pusher.
#[derive(Default)]
pub struct Registry {
    watches: Mutex<Vec<Running>>,
}

struct Running {
    paths: Vec<Vec<u8>>,
    status: Arc<Mutex<WatchStatus>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Most watches one daemon runs.
pub const MAX_WATCHES: usize = 64;

impl Registry {
    /// Starts a watch on a thread of its own. Fails (before starting) when a path is already
    /// watched, the paths are not directories, or there are too many watches.
    pub fn add(&self, cfg: WatchConfig, mut pusher: Box<dyn Pusher + Send>) -> Result<String> {
        let mut ws = self
            .watches
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        ws.retain(|w| w.thread.as_ref().is_some_and(|t| !t.is_finished()));
        if ws.len() >= MAX_WATCHES {
            bail!("too many watches (at most {MAX_WATCHES})");
        }
        if let Some(p) = cfg
            .paths
            .iter()
            .find(|p| ws.iter().any(|w| w.paths.contains(p)))
        {
            bail!("{} is already watched", crate::escape::text(p));
        }
        let mut watch = Watch::new(cfg.clone())?;
        let status = watch.status.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let what = cfg.describe();
        let thread = std::thread::Builder::new()
            .name("makuo-watch".into())
            .spawn(move || {
                if let Err(e) = watch.run(&mut *pusher, &stop2) {
                    pusher.log(&format!("watch {}: stopped: {e:#}", watch.cfg.describe()));
                    if let Ok(mut st) = watch.status.lock() {
                        st.error = Some(format!("stopped: {e:#}"));
                    }
                }
            })?;
        ws.push(Running {
            paths: cfg.paths,
            status,
            stop,
            thread: Some(thread),
        });
        Ok(what)
    }

    /// Stops the watches on `paths`; returns how many stopped.
    pub fn del(&self, paths: &[Vec<u8>]) -> usize {
        let mut stopped = Vec::new();
        if let Ok(mut ws) = self.watches.lock() {
            let mut i = 0;
            while i < ws.len() {
                if ws[i].paths.iter().any(|p| paths.contains(p)) {
                    stopped.push(ws.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        for w in &mut stopped {
            w.stop.store(true, Ordering::SeqCst);
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        stopped.len()
    }

    /// One status line per watch.
    pub fn lines(&self) -> Vec<String> {
        self.watches
            .lock()
            .map(|ws| {
                ws.iter()
                    .map(|w| {
                        let mut l = w.status.lock().map(|s| s.line()).unwrap_or_default();
                        if w.thread.as_ref().is_none_or(|t| t.is_finished()) {
                            l.push_str(" (stopped)");
                        }
                        l
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops every watch (daemon shutdown).
    pub fn stop_all(&self) {
        let all: Vec<Vec<u8>> = self
            .watches
            .lock()
            .map(|ws| ws.iter().flat_map(|w| w.paths.clone()).collect())
            .unwrap_or_default();
        self.del(&all);
    }
}
