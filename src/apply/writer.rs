//! The write pool: received payload is written into staged files on worker threads, so the
//! network thread only checks, copies and hands the bytes over (issue 11); it owns the
//! queue, its byte budget, the threads and the barriers, not how a file is staged
//! (`stage.rs`, `gather.rs`) or committed (`commit.rs`, `offload.rs`).
//!
//! The engine still calls `Storage::write` synchronously; with a pool the write is *accepted*
//! (checked, its staged file created or reopened on the caller's thread, so refusals and
//! failures to create show at once as before) and the `pwrite` itself is queued. Payload
//! blocks never overlap, so queued writes may land in any order; what must wait for them is
//! ordered by barriers:
//! - reading a staged file back waits for that file's queued writes and decodes;
//! - a parity decode handed over (`Storage::restore`) is queued behind every write accepted
//!   before it, and the single writer takes jobs in order, so its read-back sees them; it
//!   counts as a queued write of each file it reads or writes (for the barriers here) and
//!   against the budget, and when the budget stays full it runs on the caller's thread;
//! - finishing a file early (`Storage::complete`) is skipped while its writes are queued (the
//!   commit then sets its attributes, as it does whenever the early step did not happen);
//! - a commit (and an atomic push's PREPARE) waits for every queued write of its transfer —
//!   on the commit worker when commits are offloaded, so the network thread does not — and a
//!   write that failed there fails the transfer with the very message a synchronous failed
//!   write gives (`path: reason`), nothing of it applied;
//! - an abort drops the transfer's queued writes.
//!
//! Memory is bounded by [`BUDGET`] bytes of queued data per daemon, whoever sends. When the
//! budget is full the network thread waits at most [`FULL_WAIT`] for room and then writes
//! the block itself, as without a pool: nothing accepted is ever dropped (the engine counts
//! a block as stored once `write` returned), and a disk slower than the network slows the
//! loop no more than it did before.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::sys::start_writeback;
use crate::proto::manifest::{Entry, Manifest};
use crate::proto::restore::Restore;
use crate::proto::storage::{show, XferKey};

/// Writer threads per daemon. Buffered writes into one file serialize on its inode, so one
/// thread takes all the network thread shed; a second helps only with several files at once.
pub(super) const THREADS: usize = 1;
// A parity decode reads back blocks that writes queued before it produce, and only the queue's
// order makes them land first: with a second writer a decode could overtake a write still
// running on the other one and rebuild wrong blocks. More writers need that barrier first.
const _: () = assert!(THREADS == 1);
/// Most bytes of payload queued (or being written) at once, per daemon.
pub(super) const BUDGET: usize = 48 << 20;
/// How long the network thread waits for room in a full budget before writing itself.
pub(super) const FULL_WAIT: Duration = Duration::from_millis(5);

/// One staged file as the writers see it: a duplicate of its descriptor (so closing the
/// staged copy to stay within the open-file budget does not disturb queued writes) and its
/// path for error messages.
#[derive(Debug)]
pub(super) struct Target {
    file: File,
    path: Vec<u8>,
    key: XferKey,
    idx: u32,
    /// The pool's count of live targets (descriptors held), decremented on drop.
    live: Arc<AtomicUsize>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Most descriptors the writers hold at once (beyond it, blocks of further files are written
/// by the caller): a push of many big files, out of order, must not run the daemon out of
/// descriptors on top of the staged files' own.
pub(super) const MAX_TARGETS: usize = 256;

/// One queued write: `data` goes to the file ranges `pieces` (offset, length) in order.
struct Job {
    target: Arc<Target>,
    pieces: Vec<(u64, u64)>,
    data: Vec<u8>,
    /// Start writeback after the write (durable daemons, every `WRITEBACK_EVERY` bytes).
    writeback: bool,
    /// Bytes it holds (its buffer's capacity), counted against the budget.
    cost: usize,
}

/// A queued parity decode (`Storage::restore`): it reads back and writes the staged files
/// `files` (each counted as a queued write of its file until it ends).
struct RestoreJob {
    key: XferKey,
    job: Restore,
    /// Every entry the job reads or writes: its index, descriptor and manifest entry.
    files: Vec<(u32, Arc<Target>, Entry)>,
    cost: usize,
}

/// What the writers take from the queue, in order.
enum Task {
    Write(Job),
    Restore(RestoreJob),
}

impl Task {
    fn key(&self) -> XferKey {
        match self {
            Task::Write(j) => j.target.key,
            Task::Restore(r) => r.key,
        }
    }
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Task>,
    /// Bytes queued or being written (buffer capacity).
    bytes: usize,
    /// Writes queued or running, per staged file and per transfer.
    per_file: HashMap<(XferKey, u32), usize>,
    per_key: HashMap<XferKey, usize>,
    /// The first failed write of each transfer (`path: reason`).
    errors: HashMap<XferKey, String>,
    stop: bool,
    /// Buffers of finished jobs, for the next ones (a fresh allocation per datagram cost
    /// the network thread more than the copy).
    spare: Vec<Vec<u8>>,
    spare_bytes: usize,
    /// Writers asleep waiting for a job, and threads waiting for one to end: a wake-up
    /// (a futex call) is made only when someone waits.
    idle: usize,
    waiting: usize,
}

/// Most bytes of spare buffers kept.
const SPARE: usize = 8 << 20;
/// Consecutive writes of one file are joined into one write of at most this many bytes while
/// queued (the sender sends a file's blocks in order): fewer jobs for the network thread to
/// queue, fewer system calls for the writer.
const MAX_JOB: usize = 256 << 10;

struct Shared {
    state: Mutex<State>,
    /// Signalled when a job is queued or the pool stops (writers wait on it).
    more: Condvar,
    /// Signalled when a job ended (the budget and the barriers wait on it).
    ended: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A writer that panicked leaves consistent counters (it panics outside the lock).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits (at most `limit`) until a job ends.
    fn wait_ended<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        limit: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        // A writer may sleep on a short queue (see `WritePool::submit`): whoever waits for
        // a job to end wakes it first.
        if st.idle > 0 && !st.jobs.is_empty() {
            self.more.notify_one();
        }
        st.waiting += 1;
        let mut st = match limit {
            None => self.ended.wait(st).unwrap_or_else(|p| p.into_inner()),
            Some(d) => {
                self.ended
                    .wait_timeout(st, d)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
        st.waiting -= 1;
        st
    }

    /// Waits until transfer `key` has no write queued or running, and takes its error.
    fn settle(&self, key: XferKey) -> Option<String> {
        let mut st = self.lock();
        while st.per_key.contains_key(&key) {
            st = self.wait_ended(st, None);
        }
        st.errors.remove(&key)
    }
}

/// A handle on the pool for the commit worker: waits for a transfer's writes.
#[derive(Clone)]
pub(super) struct Fence(Arc<Shared>);

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fence")
    }
}

impl Fence {
    /// Waits until every write of transfer `key` queued so far is done; the first that
    /// failed, as `path: reason`.
    pub(super) fn settle(&self, key: XferKey) -> Option<String> {
        self.0.settle(key)
    }
}

/// Counters of the pool (for tests and `status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Writes handed to the pool.
    pub queued: u64,
    /// Writes the network thread did itself because the budget stayed full.
    pub inline: u64,
    /// Times the network thread waited for room.
    pub waits: u64,
    /// Parity decodes handed to the pool.
    pub restores: u64,
}

/// The network thread's side of the pool.
pub(super) struct WritePool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Writers to start (they start on the first write: after the daemon forked and gave up
    /// root); 0 once started, or when starting failed (every write is then done inline).
    to_start: usize,
    budget: usize,
    /// Descriptors of files being received, by staged entry (dropped at complete/commit).
    targets: HashMap<(XferKey, u32), Arc<Target>>,
    /// Targets alive (in `targets` or in queued jobs).
    pub(super) live: Arc<AtomicUsize>,
    /// The job being joined on this thread (not yet handed to the writers).
    local: Option<Job>,
    pub(super) stats: WriteStats,
    /// Test hook: writers fail every write with this error (a full disk).
    #[cfg(test)]
    pub(super) fail: Arc<Mutex<Option<io::ErrorKind>>>,
}

impl std::fmt::Debug for WritePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritePool")
            .field("threads", &self.threads.len())
            .field("targets", &self.targets.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl WritePool {
    pub(super) fn new(threads: usize, budget: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                more: Condvar::new(),
                ended: Condvar::new(),
            }),
            threads: Vec::new(),
            to_start: threads,
            budget: budget.max(1),
            targets: HashMap::new(),
            live: Arc::new(AtomicUsize::new(0)),
            local: None,
            stats: WriteStats::default(),
            #[cfg(test)]
            fail: Arc::new(Mutex::new(None)),
        }
    }

    /// Whether staged entry `k` has a writers' descriptor.
    pub(super) fn has_target(&self, k: (XferKey, u32)) -> bool {
        self.targets.contains_key(&k)
    }

    /// Gives staged entry `k` a writers' descriptor (`file`, a duplicate of its own).
    pub(super) fn add_target(&mut self, k: (XferKey, u32), file: File, path: &[u8]) {
        self.live.fetch_add(1, Ordering::Relaxed);
        let t = Arc::new(Target {
            file,
            path: path.to_vec(),
            key: k.0,
            idx: k.1,
            live: self.live.clone(),
        });
        self.targets.insert(k, t);
    }

    /// Whether one more file may get a writers' descriptor (idle ones are closed first when
    /// the writers hold [`MAX_TARGETS`]).
    pub(super) fn room_for_target(&mut self) -> bool {
        if self.live.load(Ordering::Relaxed) >= MAX_TARGETS {
            self.push_local();
            self.targets.retain(|_, t| Arc::strong_count(t) > 1);
        }
        self.live.load(Ordering::Relaxed) < MAX_TARGETS
    }

    /// Drops staged entry `k`'s descriptor (queued writes keep theirs until done).
    pub(super) fn forget_target(&mut self, k: (XferKey, u32)) {
        self.targets.remove(&k);
    }

    /// Drops transfer `key`'s descriptors (its commit took its staging elsewhere).
    pub(super) fn forget_transfer(&mut self, key: XferKey) {
        self.targets.retain(|(k, _), _| *k != key);
    }

    /// Writes queued or running for staged entry `k`.
    pub(super) fn in_flight(&mut self, k: (XferKey, u32)) -> usize {
        self.push_local();
        self.shared.lock().per_file.get(&k).copied().unwrap_or(0)
    }

    /// Waits until staged entry `k` has no write queued or running (a read-back barrier).
    pub(super) fn wait_file(&mut self, k: (XferKey, u32)) {
        self.push_local();
        let mut st = self.shared.lock();
        while st.per_file.contains_key(&k) {
            st = self.shared.wait_ended(st, None);
        }
    }

    /// Waits for transfer `key`'s writes; the first that failed, as `path: reason`.
    pub(super) fn settle(&mut self, key: XferKey) -> Option<String> {
        self.push_local();
        self.shared.settle(key)
    }

    /// A handle for waiting on writes from another thread (the commit worker); what this
    /// thread holds is handed over first.
    pub(super) fn fence(&mut self) -> Fence {
        self.push_local();
        Fence(self.shared.clone())
    }

    /// Transfer `key` is dropped: its queued writes go, running ones are waited for (at most
    /// one block per writer), and its error and descriptors are forgotten.
    pub(super) fn cancel(&mut self, key: XferKey) {
        self.push_local();
        self.targets.retain(|(k, _), _| *k != key);
        {
            let mut st = self.shared.lock();
            let (dropped, kept) = std::mem::take(&mut st.jobs)
                .into_iter()
                .partition::<Vec<_>, _>(|t| t.key() == key);
            st.jobs = kept.into();
            for t in dropped {
                end_task(&mut st, &t);
            }
        }
        self.shared.ended.notify_all();
        self.settle(key);
    }

    /// Queues `data` for the file ranges `pieces` of `target` (see the module doc for a full
    /// budget). An error is only returned for a write done here.
    ///
    /// A write that continues the one before it in the same file joins it in a job this
    /// thread still holds (no lock taken); the job goes to the writers when it is
    /// [`MAX_JOB`] bytes, when a write does not join it, at [`WritePool::flush`] (once per
    /// batch of datagrams), or at any barrier.
    ///
    /// The descriptor of staged entry `k` is looked up here, not passed: a reference-count
    /// change per datagram on a count the writers also change cost the network thread a
    /// contended cache line each time.
    pub(super) fn submit(
        &mut self,
        k: (XferKey, u32),
        pieces: Vec<(u64, u64)>,
        data: &[u8],
        writeback: bool,
    ) -> io::Result<()> {
        self.start();
        let len = data.len();
        if let Some(j) = self.local.as_mut().filter(|j| joins(j, k, &pieces, len)) {
            j.data.extend_from_slice(data);
            if let Some(l) = j.pieces.last_mut() {
                l.1 += pieces[0].1;
            }
            j.pieces.extend_from_slice(&pieces[1..]);
            j.writeback |= writeback;
            self.stats.queued += 1;
            if j.data.len() >= MAX_JOB {
                self.push_local();
            }
            return Ok(());
        }
        self.push_local();
        let Some(target) = self.targets.get(&k).cloned() else {
            return Err(io::Error::other("staged file has no writer descriptor"));
        };
        if self.threads.is_empty() {
            return write_pieces(&target.file, &pieces, data);
        }
        let mut st = self.shared.lock();
        if st.bytes > 0 && st.bytes + len > self.budget {
            self.stats.waits += 1;
            let until = Instant::now() + FULL_WAIT;
            while st.bytes > 0 && st.bytes + len > self.budget {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    drop(st);
                    self.stats.inline += 1;
                    let r = write_pieces(&target.file, &pieces, data);
                    if writeback {
                        start_writeback(&target.file);
                    }
                    return r;
                }
                st = self.shared.wait_ended(st, Some(left));
            }
        }
        let mut buf = st.spare.pop().unwrap_or_default();
        st.spare_bytes -= buf.capacity();
        drop(st);
        buf.clear();
        buf.extend_from_slice(data);
        self.local = Some(Job {
            target,
            pieces,
            data: buf,
            writeback,
            cost: 0,
        });
        self.stats.queued += 1;
        Ok(())
    }

    /// Queues parity decode `job` of transfer `key`, which touches the staged files of
    /// `entries` (index and manifest entry), after every write accepted so far. `Err(job)`:
    /// the pool cannot take it (no writer runs, or it holds no descriptor for one of the
    /// files), and the caller does it.
    pub(super) fn submit_restore(
        &mut self,
        key: XferKey,
        job: Restore,
        entries: Vec<(u32, Entry)>,
    ) -> Result<(), Restore> {
        self.start();
        if self.threads.is_empty() {
            return Err(job);
        }
        let mut files = Vec::with_capacity(entries.len());
        for (idx, e) in entries {
            match self.targets.get(&(key, idx)) {
                Some(t) => files.push((idx, t.clone(), e)),
                None => return Err(job),
            }
        }
        // The blocks it reads back may be in the job this thread holds: that goes first.
        self.push_local();
        let cost = job.held_bytes();
        let mut st = self.shared.lock();
        // Within the budget like a write: memory for what any sender makes us decode stays
        // bounded; a decode that finds no room in time is done by the caller.
        if st.bytes > 0 && st.bytes + cost > self.budget {
            self.stats.waits += 1;
            let until = Instant::now() + FULL_WAIT;
            while st.bytes > 0 && st.bytes + cost > self.budget {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    self.stats.inline += 1;
                    return Err(job);
                }
                st = self.shared.wait_ended(st, Some(left));
            }
        }
        st.bytes += cost;
        for (idx, ..) in &files {
            *st.per_file.entry((key, *idx)).or_insert(0) += 1;
            *st.per_key.entry(key).or_insert(0) += 1;
        }
        st.jobs.push_back(Task::Restore(RestoreJob {
            key,
            job,
            files,
            cost,
        }));
        let wake = st.idle > 0;
        drop(st);
        if wake {
            self.shared.more.notify_one();
        }
        self.stats.restores += 1;
        Ok(())
    }

    /// Hands the job this thread holds to the writers.
    fn push_local(&mut self) {
        let Some(mut job) = self.local.take() else {
            return;
        };
        job.cost = job.data.capacity();
        let mut st = self.shared.lock();
        st.bytes += job.cost;
        *st.per_file
            .entry((job.target.key, job.target.idx))
            .or_insert(0) += 1;
        *st.per_key.entry(job.target.key).or_insert(0) += 1;
        st.jobs.push_back(Task::Write(job));
        let wake = st.idle > 0;
        drop(st);
        if wake {
            self.shared.more.notify_one();
        }
    }

    /// Hands queued writes to the writers now (the driver calls it once per batch of
    /// datagrams, before it may wait for input).
    pub(super) fn flush(&mut self) {
        self.push_local();
    }

    /// Starts the writers the first time (a thread that cannot start leaves the writes to
    /// the caller).
    fn start(&mut self) {
        if self.to_start == 0 {
            return;
        }
        for i in 0..std::mem::take(&mut self.to_start) {
            let sh = self.shared.clone();
            #[cfg(test)]
            let fail = self.fail.clone();
            #[cfg(not(test))]
            let fail = ();
            match std::thread::Builder::new()
                .name(format!("makuo-write{i}"))
                .spawn(move || run(sh, fail))
            {
                Ok(t) => self.threads.push(t),
                Err(_) => break,
            }
        }
    }
}

impl Drop for WritePool {
    fn drop(&mut self) {
        // Queued writes still go out (the staged files are dropped by their owner anyway).
        self.push_local();
        self.shared.lock().stop = true;
        self.shared.more.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Whether a write of `len` bytes to `pieces` of staged entry `k` may join job `j`.
fn joins(j: &Job, k: (XferKey, u32), pieces: &[(u64, u64)], len: usize) -> bool {
    (j.target.key, j.target.idx) == k
        && j.data.len() + len <= MAX_JOB
        && j.pieces
            .last()
            .zip(pieces.first())
            .is_some_and(|(&(a, n), &(b, _))| a + n == b)
}

/// Counts a job of `key`/`idx` holding `cost` bytes as ended.
fn end_job(st: &mut State, key: XferKey, idx: u32, cost: usize) {
    st.bytes -= cost;
    if let Some(n) = st.per_file.get_mut(&(key, idx)) {
        *n -= 1;
        if *n == 0 {
            st.per_file.remove(&(key, idx));
        }
    }
    if let Some(n) = st.per_key.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            st.per_key.remove(&key);
        }
    }
}

/// Counts task `t` as ended (a restore as one write of each of its files).
fn end_task(st: &mut State, t: &Task) {
    match t {
        Task::Write(j) => end_job(st, j.target.key, j.target.idx, j.cost),
        Task::Restore(r) => {
            let idxs: Vec<u32> = r.files.iter().map(|(i, ..)| *i).collect();
            end_files(st, r.key, &idxs, r.cost);
        }
    }
}

/// Counts a restore of `key` touching files `idxs` and holding `cost` bytes as ended.
fn end_files(st: &mut State, key: XferKey, idxs: &[u32], cost: usize) {
    st.bytes -= cost;
    for &idx in idxs {
        end_job(st, key, idx, 0);
    }
}

/// Runs a queued restore: reads back, decodes and writes through the files' descriptors.
/// An error names its file (`path: reason`).
fn run_restore(files: &[(u32, Arc<Target>, Entry)], job: Restore) -> Result<(), String> {
    let file = |idx: u32| {
        files
            .iter()
            .find(|(i, ..)| *i == idx)
            .map(|(_, t, e)| (t, e))
            .ok_or_else(|| format!("entry {idx}: no descriptor for its staged file"))
    };
    let named = |t: &Target, e: io::Error| format!("{}: {e}", show(&t.path));
    let writes = job
        .decode(|p, buf| {
            let (t, e) = file(p.idx).map_err(io::Error::other)?;
            read_pieces(&t.file, &e.file_ranges(p.offset, p.len as u64), buf)
                .map_err(|err| io::Error::new(err.kind(), named(t, err)))
        })
        .map_err(|e| e.to_string())?;
    for (p, data) in writes {
        let (t, e) = file(p.idx)?;
        write_pieces(&t.file, &e.file_ranges(p.offset, p.len as u64), &data)
            .map_err(|err| named(t, err))?;
    }
    Ok(())
}

/// Reads the file ranges `pieces` of `file` into `buf`, in order (they add up to its length).
pub(super) fn read_pieces(file: &File, pieces: &[(u64, u64)], buf: &mut [u8]) -> io::Result<()> {
    let mut to = 0;
    for &(at, len) in pieces {
        file.read_exact_at(&mut buf[to..to + len as usize], at)?;
        to += len as usize;
    }
    Ok(())
}

/// Writes `data` to the file ranges `pieces` of `file`.
pub(super) fn write_pieces(file: &File, pieces: &[(u64, u64)], data: &[u8]) -> io::Result<()> {
    let mut from = 0;
    for &(at, len) in pieces {
        file.write_all_at(&data[from..from + len as usize], at)?;
        from += len as usize;
    }
    Ok(())
}

#[cfg(test)]
type FailHook = Arc<Mutex<Option<io::ErrorKind>>>;
#[cfg(not(test))]
type FailHook = ();

/// A writer: takes jobs in order until the pool stops and its queue is empty.
fn run(sh: Arc<Shared>, fail: FailHook) {
    let mut st = sh.lock();
    loop {
        let Some(task) = st.jobs.pop_front() else {
            if st.stop {
                return;
            }
            st.idle += 1;
            st = sh.more.wait(st).unwrap_or_else(|p| p.into_inner());
            st.idle -= 1;
            continue;
        };
        drop(st);
        let job = match task {
            Task::Write(job) => job,
            Task::Restore(r) => {
                let RestoreJob {
                    key,
                    job,
                    files,
                    cost,
                } = r;
                let failed = run_restore(&files, job).err();
                let idxs: Vec<u32> = files.iter().map(|(i, ..)| *i).collect();
                drop(files);
                st = sh.lock();
                if let Some(msg) = failed {
                    st.errors.entry(key).or_insert(msg);
                }
                end_files(&mut st, key, &idxs, cost);
                if st.waiting > 0 {
                    sh.ended.notify_all();
                }
                continue;
            }
        };
        #[cfg(test)]
        let forced = *fail.lock().unwrap();
        #[cfg(not(test))]
        let forced: Option<io::ErrorKind> = {
            let _ = &fail;
            None
        };
        let r = match forced {
            Some(kind) => Err(io::Error::from(kind)),
            None => write_pieces(&job.target.file, &job.pieces, &job.data),
        };
        if job.writeback && r.is_ok() {
            start_writeback(&job.target.file);
        }
        let (key, idx, cost) = (job.target.key, job.target.idx, job.cost);
        let failed = r.err().map(|e| format!("{}: {e}", show(&job.target.path)));
        let Job { target, data, .. } = job;
        drop(target);
        st = sh.lock();
        if let Some(msg) = failed {
            st.errors.entry(key).or_insert(msg);
        }
        end_job(&mut st, key, idx, cost);
        if data.capacity() <= 2 * MAX_JOB && st.spare_bytes + data.capacity() <= SPARE {
            st.spare_bytes += data.capacity();
            st.spare.push(data);
        }
        if st.waiting > 0 {
            sh.ended.notify_all();
        }
    }
}

impl super::FsStorage {
    /// Writes received payload on [`THREADS`] writer threads from now on, with at most
    /// [`BUDGET`] bytes queued (the threads start at the first write).
    pub fn pool_writes(&mut self) {
        self.pool_writes_with(THREADS, BUDGET);
    }

    /// [`FsStorage::pool_writes`](super::FsStorage::pool_writes) with `threads` writers and
    /// a `budget` of queued bytes.
    pub(super) fn pool_writes_with(&mut self, threads: usize, budget: usize) {
        self.writer = Some(Box::new(WritePool::new(threads, budget)));
    }

    /// Hands queued writes to a writer now: the driver calls it once per batch of
    /// datagrams, before it waits for more (a short queue does not wake a writer by itself).
    pub fn flush_writes(&mut self) {
        if let Some(w) = self.writer.as_mut() {
            w.flush();
        }
    }

    /// Hands parity decode `job` to the pool when every file it touches is written through
    /// the pool (not gathered in memory, not refused, a descriptor held) and its writes are
    /// ones `write` accepts; otherwise `Err(job)`, for the caller to do on its thread.
    pub(super) fn pool_restore(
        &mut self,
        key: XferKey,
        m: &Manifest,
        job: Restore,
    ) -> Result<(), Restore> {
        let fits = job.writes.iter().flat_map(|(_, ps)| ps).all(|p| {
            m.entries
                .get(p.idx as usize)
                .is_some_and(|e| super::check_write(e, p.offset, p.len).is_ok())
        });
        let mut idxs: Vec<u32> = job.entries().collect();
        idxs.sort_unstable();
        idxs.dedup();
        let ours = |idx: u32| {
            !self.pending.contains_key(&(key, idx)) && !self.refusals.contains_key(&(key, idx))
        };
        if !fits || !idxs.iter().all(|&i| ours(i)) {
            return Err(job);
        }
        let Some(entries) = idxs
            .iter()
            .map(|&i| m.entries.get(i as usize).map(|e| (i, e.clone())))
            .collect::<Option<Vec<_>>>()
        else {
            return Err(job);
        };
        match self.writer.as_mut() {
            Some(w) => w.submit_restore(key, job, entries),
            None => Err(job),
        }
    }

    /// The write pool's counters (zero without one).
    pub fn write_stats(&self) -> WriteStats {
        self.writer
            .as_ref()
            .map_or_else(WriteStats::default, |w| w.stats)
    }
}
