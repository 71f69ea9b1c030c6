//! Commits on a worker thread, so that a big commit's renames and fsyncs never stall the
//! network loop (issue 13): the engine is told "pending", keeps answering heartbeats and other
//! transfers, and hears the outcome later (`Engine::handle_committed`), which is when the
//! sender gets its RESULT.
//!
//! A commit's state is moved whole out of the network thread's [`FsStorage`] (its staged
//! files, gathered small files, refusals, the directories its staging made, its compiled
//! filter) and into a second `FsStorage` on the same base descriptor that only the worker
//! uses; the worker runs the very same commit code on it. One worker, fed in order: commits
//! apply in the order the engine asked for them, as they did on the loop. The queue to it is
//! bounded ([`QUEUE`]); what does not fit waits in a backlog on the loop's side, which the
//! engine bounds (one commit per inbound transfer, and it bounds those). The thread starts at
//! the first commit (after the daemon forked and gave up root), and stopping waits for the
//! commits already handed over: a commit, once started, finishes.
//!
//! What it owns: the hand-over and the thread. It does not touch how a commit is done
//! (`commit.rs`, `hooked.rs`).

use std::collections::{HashSet, VecDeque};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::stage::Staged;
use super::FsStorage;
use crate::filter::Filter;
use crate::proto::manifest::change::Flags;
use crate::proto::manifest::Manifest;
use crate::proto::storage::{CommitOutcome, CommitRequest, XferKey};

/// Commits handed to the worker at once (the rest wait in the backlog).
pub(super) const QUEUE: usize = 4;

/// How the worker wakes the network loop when a commit ended (an eventfd write).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// One transfer's commit, with everything of it the network side held.
pub(super) struct Job {
    key: XferKey,
    manifest: Manifest,
    flags: Vec<Flags>,
    deletions: Vec<Vec<u8>>,
    skip: Vec<u32>,
    staged: Vec<((XferKey, u32), Staged)>,
    pending: Vec<((XferKey, u32), Vec<u8>)>,
    refusals: Vec<((XferKey, u32), String)>,
    made_dirs: Vec<Vec<u8>>,
    made_by: Option<Vec<Vec<u8>>>,
    filter: Option<Arc<Result<Filter, String>>>,
    overrun: bool,
    /// An atomic push's journal entry (its `.go` is written and the journal removed by the
    /// commit, on the worker); its claim on paths stays with the loop until the commit ends.
    journal: Option<super::journal::Unfinished>,
    /// The write pool's barrier: the commit waits there for the transfer's queued writes
    /// (`writer.rs`), and one that failed fails it.
    fence: Option<super::writer::Fence>,
}

/// A finished commit and what it cost.
struct Done {
    key: XferKey,
    out: CommitOutcome,
    took: Duration,
    fsync: u64,
    syncfs: u64,
    refused: u64,
}

/// The loop's side of the worker.
pub(super) struct Offload {
    wake: Wake,
    tx: Option<SyncSender<Job>>,
    rx: Option<Receiver<Done>>,
    thread: Option<JoinHandle<()>>,
    backlog: VecDeque<Job>,
    /// Commits handed over (queued or running) and not reported back yet.
    in_flight: HashSet<XferKey>,
    /// Test hook: the worker sleeps this long before each commit (a slow fsync).
    #[cfg(test)]
    pub(super) delay: Duration,
}

impl std::fmt::Debug for Offload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offload")
            .field("in_flight", &self.in_flight.len())
            .field("backlog", &self.backlog.len())
            .finish()
    }
}

impl Offload {
    pub(super) fn new(wake: Wake) -> Self {
        Self {
            wake,
            tx: None,
            rx: None,
            thread: None,
            backlog: VecDeque::new(),
            in_flight: HashSet::new(),
            #[cfg(test)]
            delay: Duration::ZERO,
        }
    }
}

impl Drop for Offload {
    fn drop(&mut self) {
        // Commits handed over finish (the backlog too): a stop never leaves one half done.
        if let Some(tx) = self.tx.take() {
            for job in self.backlog.drain(..) {
                let _ = tx.send(job);
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FsStorage {
    /// Runs this storage's commits on a worker thread from now on; `wake` is called when one
    /// ended, and the outcomes are then collected with [`FsStorage::take_commits`].
    pub fn offload_commits(&mut self, wake: Wake) {
        self.offload = Some(Box::new(Offload::new(wake)));
    }

    /// Commits handed to the worker and not collected yet (0 without a worker).
    pub fn commits_in_flight(&self) -> usize {
        self.offload.as_ref().map_or(0, |o| o.in_flight.len())
    }

    /// Test hook: the worker sleeps `d` before each commit.
    #[cfg(test)]
    pub(crate) fn set_commit_delay(&mut self, d: Duration) {
        if let Some(o) = &mut self.offload {
            o.delay = d;
        }
    }

    /// Applies the transfer now, or hands it to the worker (`None`: its outcome comes
    /// from [`FsStorage::take_commits`]).
    pub(super) fn commit_or_offload(
        &mut self,
        key: XferKey,
        req: &CommitRequest<'_>,
    ) -> Option<CommitOutcome> {
        if self.offload.is_none() {
            if let Some(msg) = self.settle_writes(key) {
                return Some(self.fail_written(key, msg));
            }
            return Some(self.commit_now(key, req));
        }
        let job = self.detach(key, req);
        let o = self.offload.as_mut().expect("checked");
        o.in_flight.insert(key);
        o.backlog.push_back(job);
        self.feed();
        None
    }

    /// Hands backlog jobs to the worker (starting it the first time) while its queue has room.
    fn feed(&mut self) {
        let Some(o) = self.offload.as_ref() else {
            return;
        };
        if o.tx.is_none() && !o.backlog.is_empty() {
            let worker = self.sibling();
            let o = self.offload.as_mut().expect("checked");
            let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
            let (done_tx, done_rx) = mpsc::channel::<Done>();
            let wake = o.wake.clone();
            #[cfg(test)]
            let delay = o.delay;
            #[cfg(not(test))]
            let delay = Duration::ZERO;
            let t = std::thread::Builder::new()
                .name("makuo-commit".into())
                .spawn(move || run(worker, rx, done_tx, wake, delay));
            match t {
                Ok(t) => {
                    o.thread = Some(t);
                    o.tx = Some(tx);
                    o.rx = Some(done_rx);
                }
                Err(_) => {
                    // No thread: commit here, as without a worker.
                    let jobs: Vec<Job> = o.backlog.drain(..).collect();
                    self.offload = None;
                    for job in jobs {
                        let key = job.key;
                        let done = commit_job(self, job, Duration::ZERO);
                        self.finished.push((key, done.out));
                    }
                    return;
                }
            }
        }
        let o = self.offload.as_mut().expect("checked");
        let Some(tx) = &o.tx else { return };
        while let Some(job) = o.backlog.pop_front() {
            match tx.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) => {
                    o.backlog.push_front(job);
                    break;
                }
                Err(TrySendError::Disconnected(job)) => {
                    o.backlog.push_front(job);
                    break;
                }
            }
        }
    }

    /// Commits the worker finished since the last call, with their outcomes (after the
    /// hooks: an `--after-push` hook holds its outcome back), for `Engine::handle_committed`.
    pub fn take_commits(&mut self) -> Vec<(XferKey, CommitOutcome)> {
        let mut ended = std::mem::take(&mut self.finished);
        let Some(o) = self.offload.as_mut() else {
            return self.after_commits(ended);
        };
        let mut gone = false;
        let mut ended_keys = Vec::new();
        if let Some(rx) = &o.rx {
            loop {
                match rx.try_recv() {
                    Ok(d) => {
                        o.in_flight.remove(&d.key);
                        ended_keys.push(d.key);
                        self.last_commit = d.took;
                        self.sync_calls
                            .fsync
                            .set(self.sync_calls.fsync.get() + d.fsync);
                        self.sync_calls
                            .syncfs
                            .set(self.sync_calls.syncfs.get() + d.syncfs);
                        self.refused += d.refused;
                        ended.push((d.key, d.out));
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        gone = true;
                        break;
                    }
                }
            }
        }
        if gone {
            // The worker died (a panic): what it held is reported failed, not waited for.
            for key in o.in_flight.drain() {
                ended.push((
                    key,
                    CommitOutcome {
                        errors: vec!["commit worker stopped; nothing more committed".into()],
                        ..Default::default()
                    },
                ));
            }
            o.backlog.clear();
            self.offload = None;
        }
        for key in ended_keys {
            // The push's claim on its paths (atomic pushes) ends with its commit.
            self.journal_done(key);
        }
        if !ended.is_empty() {
            // The tree changed under the loop's cached directories.
            self.dirs.clear();
        }
        self.feed();
        self.after_commits(ended)
    }

    fn after_commits(
        &mut self,
        ended: Vec<(XferKey, CommitOutcome)>,
    ) -> Vec<(XferKey, CommitOutcome)> {
        ended
            .into_iter()
            .filter_map(|(key, out)| self.after_commit(key, out).map(|o| (key, o)))
            .collect()
    }

    /// Takes transfer `key`'s commit state out of this storage.
    fn detach(&mut self, key: XferKey, req: &CommitRequest<'_>) -> Job {
        let mine: Vec<(XferKey, u32)> = self
            .staged
            .keys()
            .filter(|(k, _)| *k == key)
            .copied()
            .collect();
        let staged = mine
            .into_iter()
            .filter_map(|k| self.take_staged(k).map(|s| (k, s)))
            .collect();
        let gathered: Vec<(XferKey, u32)> = self
            .pending
            .keys()
            .filter(|(k, _)| *k == key)
            .copied()
            .collect();
        let pending: Vec<_> = gathered
            .into_iter()
            .filter_map(|k| self.pending.remove(&k).map(|b| (k, b)))
            .collect();
        self.pending_bytes -= pending.iter().map(|(_, b)| b.len()).sum::<usize>();
        let refused: Vec<(XferKey, u32)> = self
            .refusals
            .keys()
            .filter(|(k, _)| *k == key)
            .copied()
            .collect();
        let refusals = refused
            .into_iter()
            .filter_map(|k| self.refusals.remove(&k).map(|r| (k, r)))
            .collect();
        let fence = self.writer.as_mut().map(|w| {
            w.forget_transfer(key);
            w.fence()
        });
        Job {
            fence,
            key,
            manifest: req.manifest.clone(),
            flags: req.flags.to_vec(),
            deletions: req.deletions.to_vec(),
            skip: req.skip.to_vec(),
            staged,
            pending,
            refusals,
            made_dirs: std::mem::take(&mut self.made_dirs),
            made_by: self.made_by.remove(&key),
            filter: self.filters.remove(&key),
            overrun: self.filter_overrun.remove(&key),
            journal: self.journals.open.remove(&key),
        }
    }

    /// Takes a detached commit's state in (the worker's storage).
    fn attach(&mut self, job: &mut Job) {
        for (k, s) in job.staged.drain(..) {
            if s.file.is_some() {
                self.open_count += 1;
                self.open_order.push_back(k);
            }
            self.staged.insert(k, s);
        }
        for (k, b) in job.pending.drain(..) {
            self.pending_bytes += b.len();
            self.pending.insert(k, b);
        }
        self.refusals.extend(job.refusals.drain(..));
        self.made_dirs.append(&mut job.made_dirs);
        if let Some(m) = job.made_by.take() {
            self.made_by.insert(job.key, m);
        }
        if let Some(f) = job.filter.take() {
            self.filters.insert(job.key, f);
        }
        if job.overrun {
            self.filter_overrun.insert(job.key);
        }
        if let Some(u) = job.journal.take() {
            self.journals.open.insert(job.key, u);
        }
    }

    /// Waits for transfer `key`'s queued writes (on this thread); the first that failed.
    pub(super) fn settle_writes(&mut self, key: XferKey) -> Option<String> {
        self.writer.as_mut().and_then(|w| w.settle(key))
    }

    /// A queued write of transfer `key` failed: it is dropped as the engine drops a transfer
    /// whose write failed, with the same message.
    pub(super) fn fail_written(&mut self, key: XferKey, msg: String) -> CommitOutcome {
        crate::proto::storage::Storage::abort(self, key);
        CommitOutcome {
            errors: vec![msg],
            ..Default::default()
        }
    }

    /// A storage on the same base descriptor and options, for the worker.
    fn sibling(&self) -> FsStorage {
        let mut s =
            FsStorage::with_base_fd(self.base.clone(), self.base_fd.clone(), self.opts.clone());
        s.is_root = self.is_root;
        s
    }
}

/// Attaches and commits one job on `s`, counting what it cost.
fn commit_job(s: &mut FsStorage, mut job: Job, delay: Duration) -> Done {
    let (fsync, syncfs, refused) = (s.sync_calls.fsync(), s.sync_calls.syncfs(), s.refused);
    let failed = job.fence.take().and_then(|f| f.settle(job.key));
    s.attach(&mut job);
    if let Some(msg) = failed {
        let started = Instant::now();
        let out = s.fail_written(job.key, msg);
        return Done {
            key: job.key,
            out,
            took: started.elapsed(),
            fsync: 0,
            syncfs: 0,
            refused: s.refused - refused,
        };
    }
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let started = Instant::now();
    let req = CommitRequest {
        manifest: &job.manifest,
        flags: &job.flags,
        deletions: &job.deletions,
        skip: &job.skip,
    };
    let out = s.commit_now(job.key, &req);
    Done {
        key: job.key,
        out,
        took: started.elapsed() + delay,
        fsync: s.sync_calls.fsync() - fsync,
        syncfs: s.sync_calls.syncfs() - syncfs,
        refused: s.refused - refused,
    }
}

/// The worker: commits jobs in order until the loop's side goes away.
fn run(mut s: FsStorage, rx: Receiver<Job>, tx: mpsc::Sender<Done>, wake: Wake, delay: Duration) {
    for job in rx {
        let done = commit_job(&mut s, job, delay);
        if tx.send(done).is_err() {
            // Nobody collects outcomes any more (the daemon is stopping): keep committing.
            continue;
        }
        wake();
    }
}
