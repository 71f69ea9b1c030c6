//! One outbound transfer (a push), from announcement to per-member results.
//!
//! Phases: **register** (announce + manifest stream, repeated polls until every target sent
//! its report of what it needs), **data** (plan stream, then the payload stream: the contents
//! of every file any target needs, packed back to back, with the repair receivers ask for
//! during the pass sent before new data; PACE messages carry the rate control's state; then
//! rounds of poll → NAK → repair mop up until every target has everything), **commit**
//! (repeated until every target sent its result). A target that stays silent past the member
//! timeout is failed and the others go on; one that cannot keep the floor rate leaves the
//! group's pace and is served after the pass, or failed as too slow. Which repair symbols go
//! out is [`super::sched`]'s business. See `docs/protocol.md`.

mod atomic;
mod emit;
mod report;

pub use atomic::NOT_COMMITTED;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::manifest::{bit, change, needs_data, set_bit, Layout, Manifest};
use super::repair::Code;
use super::sched::{Sched, Sym};
use super::storage::{show, Storage};
use super::wire::{
    self, Announce, Msg, Pace, Stream, NAK_DONE, NAK_UNKNOWN, RESULT_BUSY, RESULT_FAILED,
    RESULT_OK, RESULT_UNKNOWN,
};
use super::{Config, Dest, HeaderGen, MemberReport, PushReport};

use report::decode_report;
pub(crate) use report::encode_report;
use report::{max_report_len, MAX_REPORTS_HELD, MIN_REPORT_PART};

/// Repair rounds in a row in which a target's missing count does not go down before it
/// is failed (repair always converges unless a receiver keeps losing everything).
const MAX_STALLED_ROUNDS: u32 = 30;
/// Announces a live target hears through the group and answers (the first one of a transfer
/// excepted) that may go unanswered before it is taken as deaf to our multicast for this
/// transfer: with 5 % loss each way, three in a row are lost about once in a thousand.
pub(crate) const SILENT_ANNOUNCES: u32 = 3;
/// Longest interval between COMMIT retries.
const COMMIT_RETRY_MAX: Duration = Duration::from_millis(100);
/// Pushes to more targets than this (those that gather answers through cohort leaders) poll
/// only once the in-pass repair of the pass's tail is done (`Outbound::tail_poll`).
pub(crate) const TAIL_WAIT_FROM: usize = super::aggregate::AGG_MIN_TARGETS;
/// The longest the first poll waits for the tail's repair, in tail windows.
const TAIL_WAIT_MAX: u32 = 4;

/// Phase of an outbound transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Register,
    Data,
    Commit,
    Done,
}

#[derive(Debug)]
enum Work {
    /// The announce, in parts from target `from` on (parts whose targets all registered are
    /// not repeated).
    Announce {
        from: usize,
    },
    Blocks {
        stream: Stream,
        next: u32,
        end: u32,
    },
    /// `count` fresh parity symbols of a group, sent ahead of need (the plan).
    Proactive {
        stream: Stream,
        group: u32,
        count: u32,
    },
    Poll,
    Commit,
}

#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) node: u64,
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    parts: Vec<Option<Vec<u8>>>,
    /// Parts of the report held, and the bytes they take (with their slots).
    have: usize,
    held: usize,
    flags: Option<Vec<change::Flags>>,
    deletions: u64,
    deletion_list: Vec<Vec<u8>>,
    answered: u32,
    done: bool,
    result: Option<(u8, u32, u64, u32, String)>,
    failed: Option<String>,
    last_heard: Option<Instant>,
    /// It left the group's pace (why); it is served after the pass.
    pub(crate) left_pace: Option<String>,
    /// Served after the pass: it must be done by then, or it is too slow.
    slow_deadline: Option<Instant>,
    /// Symbols it reported missing in the current round, the fewest in any round so far,
    /// and rounds since that fewest went down (repair that makes no progress is bounded).
    missing: u64,
    fewest_missing: u64,
    stalled: u32,
    /// It acknowledged the commit (BUSY): it gets the commit timeout.
    committing: bool,
    /// Announces sent to the group while it had not registered, and when the second went
    /// out (the first, just ahead of the manifest, is not answered by design).
    announced: u32,
    answerable_at: Option<Instant>,
}

impl Target {
    fn active(&self) -> bool {
        self.failed.is_none()
    }

    /// Whether it still needs data.
    pub(crate) fn needs_data(&self) -> bool {
        self.active() && !self.done
    }

    /// Whether it is in the group's pace.
    pub(crate) fn in_pace(&self) -> bool {
        self.left_pace.is_none()
    }
}

/// Parity symbols of recently repaired groups, newest last.
type ParityCache = VecDeque<((Stream, u32), Vec<Vec<u8>>)>;
/// Groups whose parity is kept.
const PARITY_CACHE: usize = 8;

/// What the engine's rate control says, for the PACE messages of this transfer.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PaceInfo {
    /// Current rate, bytes per second.
    pub(crate) rate: f64,
    /// Round-trip time receivers should assume.
    pub(crate) rtt: Duration,
    /// Feedback interval.
    pub(crate) interval: Duration,
    /// Current limiting receiver (0: none).
    pub(crate) clr: u64,
    /// Unicast datagrams this node has sent.
    pub(crate) uni: u32,
    /// A receiver's feedback timestamp to echo: (node, timestamp, µs held).
    pub(crate) echo: Option<(u64, u32, u32)>,
    /// The sender is data-limited ([`wire::PACE_DATA_LIMITED`]).
    pub(crate) data_limited: bool,
}

/// One push in flight.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) xfer: u32,
    started: Instant,
    manifest: Manifest,
    mbytes: Vec<u8>,
    pub(crate) code: Code,
    pub(crate) targets: Vec<Target>,
    /// Bytes of incomplete reports held for all targets (at most [`MAX_REPORTS_HELD`]).
    reports_held: usize,
    pub(crate) phase: Phase,
    round: u32,
    queue: VecDeque<Work>,
    plan: Vec<u8>,
    layout: Layout,
    /// Repair: requests, decisions, and the symbols to send before new data.
    sched: Sched,
    /// When the next PACE is due (during the data phase).
    next_pace: Option<Instant>,
    /// When the first pass finished sending each recent group (newest last, bounded).
    passed: VecDeque<((Stream, u32), Instant)>,
    /// The floor rate (`--min-rate`), bytes per second.
    floor: Option<u64>,
    deadline: Option<Instant>,
    interval: Duration,
    waiting_since: Instant,
    polled_round: u32,
    /// A push to many targets: when its pass's last block went out and the first poll
    /// waits for the in-pass repair of the pass's tail (see [`TAIL_WAIT_FROM`]).
    tail: Option<(Instant, Duration)>,
    max_delete: Option<u64>,
    no_delete: bool,
    vanished: BTreeSet<u32>,
    cache: ParityCache,
    /// Datagrams of this transfer sent in total (for reports).
    pub(crate) sent_datagrams: u64,
    /// Of which repair symbols.
    pub(crate) repair_datagrams: u64,
    progress: Vec<String>,
    /// All or none (`--atomic`).
    atomic: Option<atomic::Atomic>,
    /// The largest need echoed to the group per group of a stream during the pass (NAK
    /// suppression, `feedback.rs`), and when.
    pub(crate) echoed: BTreeMap<(Stream, u32), (u32, Instant)>,
}

impl Outbound {
    pub(crate) fn new(
        xfer: u32,
        now: Instant,
        manifest: Manifest,
        targets: Vec<(u64, String, SocketAddr)>,
        code: Code,
        max_delete: Option<u64>,
        cfg: &Config,
    ) -> Self {
        let mbytes = manifest.encode();
        let nblocks = code.blocks(mbytes.len() as u64);
        let mut queue = VecDeque::new();
        queue.push_back(Work::Announce { from: 0 });
        queue.push_back(Work::Blocks {
            stream: Stream::Manifest,
            next: 0,
            end: nblocks,
        });
        queue.push_back(Work::Announce { from: 0 });
        Self {
            xfer,
            started: now,
            manifest,
            mbytes,
            code,
            reports_held: 0,
            targets: targets
                .into_iter()
                .map(|(node, name, addr)| Target {
                    node,
                    name,
                    addr,
                    parts: Vec::new(),
                    have: 0,
                    held: 0,
                    flags: None,
                    deletions: 0,
                    deletion_list: Vec::new(),
                    answered: 0,
                    done: false,
                    result: None,
                    failed: None,
                    last_heard: None,
                    left_pace: None,
                    slow_deadline: None,
                    missing: 0,
                    fewest_missing: u64::MAX,
                    stalled: 0,
                    committing: false,
                    announced: 0,
                    answerable_at: None,
                })
                .collect(),
            phase: Phase::Register,
            round: 0,
            queue,
            plan: Vec::new(),
            layout: Layout::default(),
            sched: Sched::new(code.parity),
            next_pace: None,
            passed: VecDeque::new(),
            floor: cfg.min_rate,
            deadline: Some(now + cfg.poll_interval),
            interval: cfg.poll_interval,
            waiting_since: now,
            polled_round: 0,
            tail: None,
            max_delete,
            no_delete: false,
            vanished: BTreeSet::new(),
            cache: VecDeque::new(),
            sent_datagrams: 0,
            repair_datagrams: 0,
            progress: Vec::new(),
            atomic: None,
            echoed: BTreeMap::new(),
        }
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        [self.deadline, self.sched.next_due(), self.slow_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    fn slow_deadline(&self) -> Option<Instant> {
        self.targets
            .iter()
            .filter(|t| t.needs_data())
            .filter_map(|t| t.slow_deadline)
            .min()
    }

    pub(crate) fn has_work(&self) -> bool {
        !self.queue.is_empty() || self.sched.backlog() > 0
    }

    /// The targets, for the rate control.
    pub(crate) fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Whether the pass is still going (the rate control's floor applies then).
    pub(crate) fn in_pass(&self) -> bool {
        self.phase == Phase::Data && self.polled_round == 0
    }

    /// Target `node` cannot keep the floor: it leaves the group's pace, and its NAKs wait
    /// for the end of the pass.
    pub(crate) fn leave_pace(&mut self, node: u64, why: String) {
        let Some(p) = self.target_pos(node) else {
            return;
        };
        let pass = self.in_pass();
        let t = &mut self.targets[p];
        if !t.needs_data() || t.left_pace.is_some() || !pass {
            return;
        }
        self.progress.push(format!(
            "{} leaves the group's pace ({why}); it is served after the others",
            t.name
        ));
        t.left_pace = Some(why);
    }

    pub(crate) fn take_progress(&mut self) -> Vec<String> {
        std::mem::take(&mut self.progress)
    }

    fn target_pos(&self, node: u64) -> Option<usize> {
        self.targets.iter().position(|t| t.node == node)
    }

    fn pending_bitmap(&self, pred: impl Fn(&Target) -> bool) -> Vec<u8> {
        let mut map = vec![0u8; self.targets.len().div_ceil(8)];
        for (i, t) in self.targets.iter().enumerate() {
            if t.active() && pred(t) {
                set_bit(&mut map, i);
            }
        }
        map
    }

    fn stream_len(&self, s: Stream) -> u64 {
        match s {
            Stream::Manifest => self.mbytes.len() as u64,
            Stream::Plan => self.plan.len() as u64,
            Stream::Payload => self.layout.len,
        }
    }

    /// A part of a target's report (`part < parts`, checked by the decoder). False when it
    /// is dropped for the caps: a report longer than [`max_report_len`] of this manifest can
    /// be no report, so its parts are not kept (at most that many bytes per target), and
    /// all targets' incomplete reports together hold at most [`MAX_REPORTS_HELD`] (a part
    /// past it is dropped; the target sends its report again at the next announce).
    pub(crate) fn on_report(
        &mut self,
        now: Instant,
        node: u64,
        part: u16,
        parts: u16,
        data: &[u8],
    ) -> bool {
        let Some(p) = self.target_pos(node) else {
            return true;
        };
        let cap = max_report_len(self.manifest.entries.len());
        let t = &mut self.targets[p];
        t.last_heard = Some(now);
        if t.flags.is_some() || !t.active() {
            return true;
        }
        let slot = std::mem::size_of::<Option<Vec<u8>>>();
        if parts as usize > cap.div_ceil(MIN_REPORT_PART) {
            return false;
        }
        if t.parts.len() != parts as usize {
            if self.reports_held - t.held + parts as usize * slot > MAX_REPORTS_HELD {
                return false;
            }
            self.reports_held -= t.held;
            t.held = parts as usize * slot;
            t.have = 0;
            t.parts = vec![None; parts as usize];
            self.reports_held += t.held;
        }
        let old = t.parts[part as usize].as_ref().map_or(0, Vec::len);
        let held = t.held - old + data.len();
        if held > cap + parts as usize * slot
            || self.reports_held - t.held + held > MAX_REPORTS_HELD
        {
            return false;
        }
        self.reports_held = self.reports_held - t.held + held;
        t.held = held;
        if t.parts[part as usize].is_none() {
            t.have += 1;
        }
        t.parts[part as usize] = Some(data.to_vec());
        if t.have == t.parts.len() {
            self.reports_held -= t.held;
            t.held = 0;
            t.have = 0;
            let blob: Vec<u8> = t.parts.drain(..).flatten().flatten().collect();
            match decode_report(&blob, self.manifest.entries.len()) {
                Ok((flags, deletions, list)) => {
                    t.flags = Some(flags);
                    t.deletions = deletions;
                    t.deletion_list = list;
                    self.interval =
                        Duration::ZERO.max(self.interval.min(Duration::from_millis(50)));
                }
                Err(e) => t.failed = Some(format!("bad report: {e}")),
            }
        }
        true
    }

    /// Whether every receiver's NAK for group `g` of `s` is in by now: its first pass ended
    /// more than `settle` ago (or long enough ago to be forgotten).
    fn settled(&self, s: Stream, g: u32, now: Instant, settle: Duration) -> bool {
        self.passed
            .iter()
            .rev()
            .find(|(k, _)| *k == (s, g))
            .is_none_or(|(_, t)| now.saturating_duration_since(*t) >= settle)
    }

    /// A NAK from a target: during registration (an answer to an announce: manifest groups
    /// it lacks), during the pass (`round` 0: groups it can no longer complete from what is
    /// still to come), or its answer to poll `round`. Each entry becomes a repair request,
    /// decided after `holdoff` together with the other targets' (see [`Sched`]); groups
    /// whose first pass ended less than `settle` ago may still be NAKed by others.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_nak(
        &mut self,
        now: Instant,
        node: u64,
        round: u32,
        flags: u8,
        seen: u64,
        entries: &[u8],
        holdoff: Duration,
        settle: Duration,
        cfg: &Config,
    ) {
        let Some(p) = self.target_pos(node) else {
            return;
        };
        let t = &mut self.targets[p];
        t.last_heard = Some(now);
        if !t.active() {
            return;
        }
        if flags & NAK_UNKNOWN != 0 {
            t.failed = Some("lost the transfer (restarted?)".into());
            return;
        }
        let in_pace = t.in_pace();
        let due = now + holdoff;
        match self.phase {
            Phase::Register => {
                let mut any = false;
                for e in wire::naks(entries).filter(|e| e.stream == Stream::Manifest) {
                    let k_g = self.group_len(e.stream, e.group);
                    self.sched.request(node, seen, &e, k_g, due, true);
                    any = true;
                }
                if any {
                    // It answers: announce again soon after its repair left (to learn what
                    // it still lacks), not after a backed-off interval meant for the silent.
                    self.interval = self.interval.min(cfg.poll_interval);
                    let soon = due + cfg.poll_interval;
                    self.deadline = Some(self.deadline.map_or(soon, |d| d.min(soon)));
                }
            }
            Phase::Data => {
                if flags & NAK_DONE != 0 {
                    self.targets[p].done = true;
                }
                if round == 0 {
                    // During the pass; one that left the pace is served after it.
                    if in_pace && self.polled_round == 0 {
                        for e in wire::naks(entries).filter(|e| e.stream != Stream::Manifest) {
                            let k_g = self.group_len(e.stream, e.group);
                            let settled = self.settled(e.stream, e.group, now, settle);
                            self.sched.request(node, seen, &e, k_g, due, settled);
                        }
                    }
                    return;
                }
                let t = &mut self.targets[p];
                if round != self.round || t.answered == round {
                    return;
                }
                t.answered = round;
                t.missing = 0;
                for e in wire::naks(entries).filter(|e| e.stream != Stream::Manifest) {
                    self.targets[p].missing += u64::from(e.need);
                    let k_g = self.group_len(e.stream, e.group);
                    self.sched.request(node, seen, &e, k_g, due, true);
                }
                let t = &mut self.targets[p];
                if let (Some(_), None, Some(floor)) = (&t.left_pace, t.slow_deadline, cfg.min_rate)
                {
                    // Served after the pass: it gets twice what the floor rate would take.
                    let bytes = t.missing as f64 * self.code.block as f64;
                    let secs = 2.0 * bytes / floor.max(1) as f64 + 1.0;
                    t.slow_deadline = Some(now + Duration::from_secs_f64(secs.min(1e6)));
                }
                self.maybe_next_round(now, cfg);
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_result(
        &mut self,
        now: Instant,
        node: u64,
        status: u8,
        files: u32,
        bytes: u64,
        deleted: u32,
        message: &[u8],
    ) {
        let Some(p) = self.target_pos(node) else {
            return;
        };
        let t = &mut self.targets[p];
        t.last_heard = Some(now);
        if self.phase != Phase::Commit && status == RESULT_FAILED && t.active() {
            // Refused before the commit (over one of its limits): it says why.
            // The timer that follows every answer moves the push on without it.
            t.failed = Some(String::from_utf8_lossy(message).into_owned());
            return;
        }
        if self.phase != Phase::Commit || !t.active() || t.result.is_some() {
            return;
        }
        if self.atomic_result(p, status, message) {
            return;
        }
        let t = &mut self.targets[p];
        match status {
            RESULT_BUSY => t.committing = true,
            RESULT_UNKNOWN => t.failed = Some("lost the transfer before commit".into()),
            s => {
                t.result = Some((
                    s,
                    files,
                    bytes,
                    deleted,
                    String::from_utf8_lossy(message).into_owned(),
                ))
            }
        }
        self.maybe_finish();
    }

    fn maybe_finish(&mut self) {
        if self.phase == Phase::Commit
            && self
                .targets
                .iter()
                .all(|t| !t.active() || t.result.is_some())
        {
            self.phase = Phase::Done;
        }
    }

    fn maybe_next_round(&mut self, now: Instant, cfg: &Config) {
        if self.targets.iter().all(|t| !t.needs_data()) {
            // Nobody needs anything any more (the last needy target failed): repair still
            // queued would serve nobody.
            self.start_commit(now, cfg);
            return;
        }
        let all_in = self
            .targets
            .iter()
            .all(|t| !t.active() || t.done || t.answered == self.round);
        if !all_in || !self.queue.is_empty() {
            return;
        }
        for t in self.targets.iter_mut().filter(|t| t.active() && !t.done) {
            if t.missing < t.fewest_missing {
                t.fewest_missing = t.missing;
                t.stalled = 0;
            } else {
                t.stalled += 1;
                if t.stalled >= MAX_STALLED_ROUNDS {
                    t.failed = Some(format!(
                        "repair made no progress in {MAX_STALLED_ROUNDS} rounds ({} symbols missing)",
                        t.missing
                    ));
                }
            }
        }
        if self.targets.iter().all(|t| !t.active() || t.done) {
            self.start_commit(now, cfg);
            return;
        }
        self.round += 1;
        let before = self.sched.backlog();
        self.sched.decide_all(now);
        let symbols = self.sched.backlog();
        if self.round > 2 && symbols > before {
            self.progress.push(format!(
                "repair round {}: {} symbols",
                self.round - 1,
                symbols - before
            ));
        }
        self.queue.push_back(Work::Poll);
        self.interval = cfg.poll_interval;
        self.waiting_since = now;
        self.deadline = None;
    }

    fn start_data(&mut self, now: Instant, cfg: &Config) {
        let n = self.manifest.entries.len();
        let mut plan = vec![0u8; n.div_ceil(8)];
        let checksum = self.manifest.options.checksum;
        let mut any = false;
        for t in self.targets.iter().filter(|t| t.active()) {
            let Some(f) = &t.flags else { continue };
            for (i, e) in self.manifest.entries.iter().enumerate() {
                if needs_data(e.kind, f[i], checksum) && e.payload_len() > 0 && !bit(&plan, i) {
                    set_bit(&mut plan, i);
                    any = true;
                }
            }
        }
        if let Some(max) = self.max_delete {
            if self.targets.iter().any(|t| t.active() && t.deletions > max) {
                self.no_delete = true;
                self.progress.push(format!(
                    "--max-delete {max} exceeded: nothing will be deleted"
                ));
            }
        }
        self.plan = plan;
        self.layout = Layout::new(&self.manifest, &self.plan);
        let opts = &self.manifest.options;
        let registered = self.targets.iter().filter(|t| t.active()).count();
        self.progress.push(format!(
            "registered {registered}/{} members after {:.3}s; sending {} bytes",
            self.targets.len(),
            now.saturating_duration_since(self.started).as_secs_f64(),
            if opts.dry_run || opts.delete_only {
                0
            } else {
                self.layout.len
            }
        ));
        if opts.dry_run || opts.delete_only || !any {
            for t in &mut self.targets {
                t.done = true;
            }
            self.start_commit(now, cfg);
            return;
        }
        self.phase = Phase::Data;
        self.round = 1;
        self.next_pace = None;
        let plan_blocks = self.code.blocks(self.plan.len() as u64);
        self.queue.push_back(Work::Blocks {
            stream: Stream::Plan,
            next: 0,
            end: plan_blocks,
        });
        // The plan is tiny and everyone needs it before the payload makes sense: send
        // proactive parity with it.
        for g in 0..self.code.groups(self.plan.len() as u64) {
            let k_g = self.code.group_range(g, plan_blocks).len() as u32;
            self.queue.push_back(Work::Proactive {
                stream: Stream::Plan,
                group: g,
                count: k_g.div_ceil(2) + 1,
            });
        }
        self.queue.push_back(Work::Blocks {
            stream: Stream::Payload,
            next: 0,
            end: self.code.blocks(self.layout.len),
        });
        if !self.waits_for_tail() {
            self.queue.push_back(Work::Poll);
        }
        self.interval = cfg.poll_interval;
        self.waiting_since = now;
        self.deadline = None;
    }

    /// Payload bytes the first pass has multicast so far, the payload's length (0 until
    /// every target registered, and for a push that sends no contents) and the entry whose
    /// contents go out now: what `--progress` draws. Repair after the pass is not counted.
    pub(crate) fn pass_bytes(&self) -> (u64, u64, Option<u32>) {
        let total = self.layout.len;
        let done = match self.phase {
            Phase::Register => return (0, 0, None),
            Phase::Commit | Phase::Done => total,
            Phase::Data => self
                .queue
                .iter()
                .find_map(|w| match w {
                    Work::Blocks {
                        stream: Stream::Payload,
                        next,
                        ..
                    } => Some((u64::from(*next) * self.code.block as u64).min(total)),
                    _ => None,
                })
                .unwrap_or(total),
        };
        let spans = &self.layout.spans;
        let at = spans.partition_point(|&(_, off, _)| off <= done);
        let entry = at
            .checked_sub(1)
            .and_then(|i| spans.get(i))
            .filter(|&&(_, off, n)| done < off + n)
            .map(|&(i, _, _)| i);
        (done, total, entry)
    }

    fn start_commit(&mut self, now: Instant, cfg: &Config) {
        let ok = self.targets.iter().filter(|t| t.active()).count();
        let after = now.saturating_duration_since(self.started).as_secs_f64();
        // A dry run changes nothing: it never says it commits.
        self.progress.push(if self.manifest.options.dry_run {
            format!("(dry run) nothing changed on {ok} member(s) after {after:.2}s")
        } else {
            format!("committing on {ok} member(s) after {after:.3}s")
        });
        self.phase = Phase::Commit;
        self.queue.clear();
        self.sched.clear();
        self.queue.push_back(Work::Commit);
        self.interval = cfg.poll_interval;
        self.waiting_since = now;
        self.deadline = None;
    }

    /// Timer: retries, silence detection, phase changes.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        cfg: &Config,
        last_seen: impl Fn(u64) -> Option<Instant>,
    ) {
        if self.phase == Phase::Done {
            return;
        }
        self.sched.decide_due(now);
        // Served after the pass, and still not done when twice the floor's time is up.
        for t in &mut self.targets {
            if t.needs_data() && t.slow_deadline.is_some_and(|d| now >= d) {
                t.failed = Some(format!(
                    "too slow: it could not keep the floor rate ({}) and was not done in \
                     twice the time that rate allows",
                    t.left_pace.as_deref().unwrap_or("below --min-rate")
                ));
            }
        }
        // Fail targets that went silent while we wait for them.
        let commit_waiting: Vec<bool> = (0..self.targets.len())
            .map(|p| self.commit_pending(p))
            .collect();
        let waiting_since = self.waiting_since;
        let phase = self.phase;
        for (p, t) in self.targets.iter_mut().enumerate() {
            if !t.active() {
                continue;
            }
            let waiting = match phase {
                Phase::Register => t.flags.is_none(),
                Phase::Data => {
                    !t.done && t.answered != self.round && self.polled_round == self.round
                }
                Phase::Commit => commit_waiting[p],
                Phase::Done => false,
            };
            if !waiting {
                // Mid-pass nobody is asked anything, but heartbeats still show who lives.
                if phase == Phase::Data && !t.done {
                    let since = t.last_heard.unwrap_or(self.started).max(self.started);
                    let hb = last_seen(t.node).unwrap_or(since).max(since);
                    if now.saturating_duration_since(hb) >= cfg.member_timeout {
                        t.failed = Some(format!(
                            "no answer for {:.1}s",
                            now.saturating_duration_since(hb).as_secs_f64()
                        ));
                    }
                }
                continue;
            }
            let heard = t.last_heard.unwrap_or(waiting_since).max(waiting_since);
            let alive = last_seen(t.node).unwrap_or(heard).max(heard);
            let timeout = if phase == Phase::Commit && t.committing {
                cfg.commit_timeout.max(cfg.member_timeout)
            } else {
                cfg.member_timeout
            };
            if now.saturating_duration_since(alive) >= timeout {
                t.failed = Some(format!(
                    "no answer for {:.1}s",
                    now.saturating_duration_since(alive).as_secs_f64()
                ));
            } else if now.saturating_duration_since(heard) >= timeout * 4 {
                t.failed = Some("alive but not answering".into());
            }
        }
        match self.phase {
            Phase::Register => {
                if self
                    .targets
                    .iter()
                    .all(|t| !t.active() || t.flags.is_some())
                {
                    self.start_data(now, cfg);
                    return;
                }
                if self.deadline.is_some_and(|d| now >= d) && self.queue.is_empty() {
                    self.queue.push_back(Work::Announce { from: 0 });
                    self.interval = (self.interval * 2).min(cfg.max_poll_interval);
                    self.deadline = Some(now + self.interval);
                }
            }
            Phase::Data => {
                self.maybe_next_round(now, cfg);
                self.tail_poll(now);
                if self.phase == Phase::Data
                    && self.deadline.is_some_and(|d| now >= d)
                    && self.queue.is_empty()
                {
                    self.queue.push_back(Work::Poll);
                    self.interval = (self.interval * 2).min(cfg.max_poll_interval);
                    self.deadline = None;
                }
            }
            Phase::Commit => {
                self.atomic_step(now, cfg);
                self.maybe_finish();
                if self.phase == Phase::Commit
                    && self.deadline.is_some_and(|d| now >= d)
                    && self.queue.is_empty()
                {
                    // Retried faster than polls: a member that missed a COMMIT or whose
                    // RESULT was lost is usually alive (the member timeout fails one that is
                    // not), and everyone else waits for it.
                    self.queue.push_back(Work::Commit);
                    self.interval = (self.interval * 2).min(COMMIT_RETRY_MAX);
                    self.deadline = None;
                }
            }
            Phase::Done => {}
        }
        if self.deadline.is_some_and(|d| now >= d) && !self.queue.is_empty() {
            // The retry is still queued behind paced work: come back later, not at once
            // again and again (a deadline left in the past would spin the driver).
            self.deadline = Some(now + self.interval);
        }
    }

    /// Ends the push now: every target without a result has failed with `reason`.
    pub(crate) fn abort(&mut self, reason: &str) {
        for t in &mut self.targets {
            if t.failed.is_none() && t.result.is_none() {
                t.failed = Some(reason.to_string());
            }
        }
        self.phase = Phase::Done;
    }

    /// The final report (once `phase == Done`).
    pub(crate) fn report(&self, now: Instant) -> PushReport {
        let entries = &self.manifest.entries;
        let checksum = self.manifest.options.checksum;
        let members = self
            .targets
            .iter()
            .map(|t| {
                let changes: Vec<(u32, change::Flags)> = t
                    .flags
                    .as_ref()
                    .map(|f| {
                        f.iter()
                            .enumerate()
                            .filter(|(_, &b)| b != 0)
                            .map(|(i, &b)| (i as u32, b))
                            .collect()
                    })
                    .unwrap_or_default();
                let planned_bytes = changes
                    .iter()
                    .filter(|(i, f)| needs_data(entries[*i as usize].kind, *f, checksum))
                    .map(|(i, _)| entries[*i as usize].payload_len())
                    .sum();
                let (ok, error, files, bytes, deleted) = match (&t.failed, &t.result) {
                    (Some(e), _) => (false, Some(e.clone()), 0, 0, 0),
                    (None, Some((s, f, b, d, msg))) => (
                        *s == RESULT_OK,
                        (*s != RESULT_OK).then(|| msg.clone()),
                        *f,
                        *b,
                        *d,
                    ),
                    (None, None) => (false, Some("did not finish".into()), 0, 0, 0),
                };
                MemberReport {
                    node: t.node,
                    name: t.name.clone(),
                    addr: t.addr,
                    ok,
                    error,
                    files,
                    bytes,
                    deleted,
                    would_delete: t.deletions,
                    planned_files: changes.len() as u32,
                    planned_bytes,
                    changes,
                    deletions: t.deletion_list.clone(),
                    left_pace: t.left_pace.clone(),
                }
            })
            .collect();
        PushReport {
            xfer: self.xfer,
            members,
            vanished: self.vanished.iter().copied().collect(),
            max_delete_hit: self.no_delete,
            elapsed: now.saturating_duration_since(self.started),
            payload_bytes: self.layout.len,
            datagrams: self.sent_datagrams,
            repair_datagrams: self.repair_datagrams,
        }
    }

    /// Targets silent to this transfer's multicast: still registering, nothing heard from
    /// them for it although more than [`SILENT_ANNOUNCES`] announces they would have answered
    /// went to the group; with when the first of those went out (see `paths.rs`: they are
    /// probed by unicast copies).
    pub(crate) fn silent_targets(&self) -> Vec<(u64, Instant)> {
        if self.phase != Phase::Register {
            return Vec::new();
        }
        self.targets
            .iter()
            .filter(|t| {
                t.active()
                    && t.flags.is_none()
                    && t.last_heard.is_none()
                    && t.announced > SILENT_ANNOUNCES
            })
            .filter_map(|t| Some((t.node, t.answerable_at?)))
            .collect()
    }

    /// A target was just put on the unicast path: announce again soon, and poll fast again
    /// (its first unicast datagrams may be spent on the challenge of a sealed cluster).
    pub(crate) fn announce_soon(&mut self, now: Instant, cfg: &Config) {
        if self.phase == Phase::Register {
            self.interval = cfg.poll_interval;
            self.deadline = Some(now);
        }
    }

    /// Notes a line for the operator (`-v`).
    pub(crate) fn note(&mut self, line: String) {
        self.progress.push(line);
    }

    /// Whether target `node` has failed in this push.
    pub(crate) fn failed_target(&self, node: u64) -> bool {
        self.target_pos(node)
            .is_some_and(|p| self.targets[p].failed.is_some())
    }

    /// Whether target `node` must answer (for receivers of a sender's own loopback).
    pub(crate) fn is_target(&self, node: u64) -> bool {
        self.target_pos(node).is_some()
    }
}

#[cfg(test)]
mod tests;
