//! The daemon's deploy hooks: `--before-commit CMD` (runs once a push is staged, before its
//! commit, and can veto it) and `--after-push CMD` (runs once a push is committed; its exit
//! status goes back to the sender). This module owns running them: a thread per hook, so the
//! network loop never waits on one, each bounded by `--hook-timeout`; results come back
//! through [`Hooks::poll`].
//!
//! A hook is `/bin/sh -c CMD`, run as the daemon's user, in its own process group (killed
//! whole at the timeout), with the base as working directory, stdin from /dev/null and
//! stdout/stderr into the daemon's log. Its environment: `MAKUO_PUSH_ID` (origin node and
//! transfer, as `status` shows the last push), `MAKUO_ORIGIN` (the sending member's name),
//! `MAKUO_BASE`, `MAKUO_HOOK` (`before-commit` or `after-push`), `MAKUO_RELEASE` when the
//! push uses a release, and `MAKUO_CHANGES`: a file listing the paths the push changes
//! (before the commit) or changed (after), one a line relative to the base, escaped as
//! makuo prints names (`\#ooo`), removed when the hook ends.
//!
//! A daemon that dropped privileges (`-u`) runs hooks as that user; one that chrooted (`-c`)
//! runs them inside the chroot, where `/bin/sh` and whatever CMD needs must exist, paths are
//! inside the chroot (`MAKUO_BASE` is the base as seen there) and the change list is written
//! to the state directory when it is inside the chroot, else to `/tmp` there. A hook that
//! cannot be started fails like one that exits non-zero.

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use crate::proto::storage::{show, XferKey};

/// The default `--hook-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The start of the error a failed hook leaves in a member's result.
pub const HOOK_FAILED: &str = "hook failed";

/// What the daemon was told to run.
#[derive(Clone, Debug)]
pub struct HookConfig {
    /// `--before-commit CMD`.
    pub before_commit: Option<String>,
    /// `--after-push CMD`.
    pub after_push: Option<String>,
    /// Longest a hook may run before it is killed (and failed).
    pub timeout: Duration,
    /// The base directory as the hook sees it (its working directory, `MAKUO_BASE`).
    pub base: PathBuf,
    /// Where change lists are written.
    pub scratch: PathBuf,
}

impl HookConfig {
    /// The daemon's hooks (`None` when it has none). `base` is the base as seen once the
    /// daemon runs (inside its chroot, if any); `state_dir` the state directory's real path
    /// outside, `root` the chroot directory.
    pub fn for_daemon(
        before_commit: Option<String>,
        after_push: Option<String>,
        timeout: Duration,
        base: PathBuf,
        state_dir: &std::path::Path,
        root: Option<&std::path::Path>,
    ) -> Option<Self> {
        if before_commit.is_none() && after_push.is_none() {
            return None;
        }
        let scratch = match root {
            None => state_dir.to_path_buf(),
            Some(r) => match state_dir.strip_prefix(r) {
                Ok(inside) => std::path::Path::new("/").join(inside),
                Err(_) => PathBuf::from("/tmp"),
            },
        };
        Some(Self {
            before_commit,
            after_push,
            timeout,
            base,
            scratch,
        })
    }
}

/// Which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// `--before-commit`.
    BeforeCommit,
    /// `--after-push`.
    AfterPush,
}

impl HookKind {
    fn name(self) -> &'static str {
        match self {
            HookKind::BeforeCommit => "before-commit",
            HookKind::AfterPush => "after-push",
        }
    }
}

/// One hook to run for one push.
#[derive(Clone, Debug)]
pub struct HookJob {
    /// The push.
    pub key: XferKey,
    /// Which hook.
    pub kind: HookKind,
    /// The paths the push changes (or changed).
    pub changes: Vec<Vec<u8>>,
    /// `MAKUO_RELEASE`, when the push uses one.
    pub release: Option<String>,
}

/// How a hook ended: `Ok` when it exited 0, else the error for the result
/// (`hook failed: exit 3`).
pub type HookResult = Result<(), String>;

/// Runs hooks on threads and collects their results.
#[derive(Debug)]
pub struct Hooks {
    cfg: HookConfig,
    tx: Sender<(XferKey, HookKind, HookResult)>,
    rx: Receiver<(XferKey, HookKind, HookResult)>,
    running: usize,
}

impl Hooks {
    /// A runner for these hooks.
    pub fn new(cfg: HookConfig) -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            cfg,
            tx,
            rx,
            running: 0,
        }
    }

    /// Starts `job` on a thread of its own; `origin` is the sending member's name.
    pub fn start(&mut self, job: HookJob, origin: &str) {
        let cmd = match job.kind {
            HookKind::BeforeCommit => self.cfg.before_commit.clone(),
            HookKind::AfterPush => self.cfg.after_push.clone(),
        };
        let tx = self.tx.clone();
        let (key, kind) = (job.key, job.kind);
        let Some(cmd) = cmd else {
            self.running += 1;
            let _ = tx.send((key, kind, Ok(())));
            return;
        };
        let cfg = self.cfg.clone();
        let origin = origin.to_string();
        self.running += 1;
        let spawned = std::thread::Builder::new()
            .name("makuo-hook".into())
            .spawn(move || {
                let r = run(&cfg, &cmd, &job, &origin);
                let _ = tx.send((job.key, job.kind, r));
            });
        if let Err(e) = spawned {
            self.running -= 1;
            let _ = self.tx.send((
                key,
                kind,
                Err(format!("{HOOK_FAILED}: cannot start a thread: {e}")),
            ));
        }
    }

    /// Hooks that ended since the last call.
    pub fn poll(&mut self) -> Vec<(XferKey, HookKind, HookResult)> {
        let mut out = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            self.running = self.running.saturating_sub(1);
            out.push(r);
        }
        out
    }

    /// Hooks still running.
    pub fn running(&self) -> usize {
        self.running
    }
}

fn run(cfg: &HookConfig, cmd: &str, job: &HookJob, origin: &str) -> HookResult {
    let name = job.kind.name();
    let list = cfg.scratch.join(format!(
        ".makuo-changes-{:016x}-{:x}-{name}",
        job.key.origin, job.key.xfer
    ));
    let write_list = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&list)?;
        let mut text = String::new();
        for p in &job.changes {
            text.push_str(&show(p));
            text.push('\n');
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()
    };
    if let Err(e) = write_list() {
        let _ = std::fs::remove_file(&list);
        return Err(format!(
            "{HOOK_FAILED}: cannot write the change list {}: {e}",
            list.display()
        ));
    }
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg(cmd)
        .current_dir(&cfg.base)
        .stdin(Stdio::null())
        .env(
            "MAKUO_PUSH_ID",
            format!("{:016x}/{:x}", job.key.origin, job.key.xfer),
        )
        .env("MAKUO_ORIGIN", origin)
        .env("MAKUO_BASE", &cfg.base)
        .env("MAKUO_HOOK", name)
        .env("MAKUO_CHANGES", &list)
        .process_group(0);
    match &job.release {
        Some(r) => c.env("MAKUO_RELEASE", r),
        None => c.env_remove("MAKUO_RELEASE"),
    };
    let r = wait_bounded(c, cfg.timeout);
    let _ = std::fs::remove_file(&list);
    r
}

fn wait_bounded(mut c: Command, timeout: Duration) -> HookResult {
    let mut child = c
        .spawn()
        .map_err(|e| format!("{HOOK_FAILED}: cannot run /bin/sh: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                return match (st.code(), st.signal()) {
                    (Some(0), _) => Ok(()),
                    (Some(n), _) => Err(format!("{HOOK_FAILED}: exit {n}")),
                    (None, Some(s)) => Err(format!("{HOOK_FAILED}: killed by signal {s}")),
                    (None, None) => Err(format!("{HOOK_FAILED}: {st}")),
                };
            }
            Ok(None) => {}
            Err(e) => return Err(format!("{HOOK_FAILED}: {e}")),
        }
        if Instant::now() >= deadline {
            // The whole process group: a shell's children too.
            if let Some(pid) = i32::try_from(child.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{HOOK_FAILED}: timed out after {}s",
                timeout.as_secs_f64()
            ));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}
