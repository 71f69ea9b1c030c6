//! The cluster-wide all-or-none commit (`--atomic`), both sides. The sender's COMMIT first
//! carries PREPARE: each target answers READY once its whole push is staged (every file in
//! its destination directory under a temp name, nothing failed), or FAILED. Once every
//! target was ready, one more PREPARE round must be answered READY by every target (a
//! member that died while the others got ready is found now, not after the go); only then
//! does the sender send COMMIT without PREPARE, which they apply as usual.
//! If any target failed (before or at PREPARE) or went silent, nobody gets the go: every
//! target is failed with [`NOT_COMMITTED`] (the one that failed with its own reason) and
//! sent ABORT, which drops its staging (and the directories staging made).
//!
//! The receiver's storage decides READY (`Storage::prepare`): the daemon's runs
//! `--before-commit` there (so a veto anywhere means no commit anywhere) and writes a
//! journal in its state dir, from which a member that crashed after READY rolls back, or
//! one that crashed in the commit finishes it, on restart (`apply/journal.rs`).
//!
//! Not done yet: pre-checks of the renames beyond staging (a directory in the way is found
//! only at the commit).

use std::time::Instant;

use super::super::recv::{CommitState, Inbound};
use super::super::wire::{COMMIT_NO_DELETE, COMMIT_PREPARE, RESULT_FAILED, RESULT_READY};
use super::super::Config;
use super::{Outbound, Phase, Work};
use crate::proto::storage::{CommitOutcome, CommitRequest, Storage};

/// What the members of an atomic push that did not fail are told.
pub const NOT_COMMITTED: &str = "not committed on any member";

/// The sender's state of an atomic push.
#[derive(Debug, Default)]
pub(crate) struct Atomic {
    /// Every target was ready and the go (COMMIT without PREPARE) was given.
    pub(crate) go: bool,
    /// Targets that answered READY (by position), in the current round.
    ready: Vec<bool>,
    /// Every target was ready once: the confirming round runs (each must answer READY
    /// again, so one that died while waiting for the others is found before the go).
    confirming: bool,
}

impl Outbound {
    /// Makes this push atomic.
    pub(crate) fn set_atomic(&mut self, on: bool) {
        self.atomic = on.then(|| Atomic {
            go: false,
            ready: vec![false; self.targets.len()],
            confirming: false,
        });
    }

    /// The COMMIT flags now.
    pub(super) fn commit_flags(&self) -> u8 {
        let mut f = if self.no_delete { COMMIT_NO_DELETE } else { 0 };
        if self.atomic.as_ref().is_some_and(|a| !a.go) {
            f |= COMMIT_PREPARE;
        }
        f
    }

    /// Whether target `p` is still to answer the current COMMIT.
    pub(super) fn commit_pending(&self, p: usize) -> bool {
        let t = &self.targets[p];
        match &self.atomic {
            Some(a) if !a.go => t.result.is_none() && !a.ready[p],
            _ => t.result.is_none(),
        }
    }

    /// The COMMIT's pending bitmap: targets still to answer it.
    pub(super) fn commit_bitmap(&self) -> Vec<u8> {
        let mut map = vec![0u8; self.targets.len().div_ceil(8)];
        for (i, t) in self.targets.iter().enumerate() {
            if t.active() && self.commit_pending(i) {
                crate::proto::manifest::set_bit(&mut map, i);
            }
        }
        map
    }

    /// A RESULT during the commit of an atomic push before the go: READY is noted, FAILED
    /// fails the target (and so the push). Returns whether it was handled here.
    pub(super) fn atomic_result(&mut self, p: usize, status: u8, message: &[u8]) -> bool {
        let Some(a) = &mut self.atomic else {
            return false;
        };
        if a.go {
            // A READY that answered a repeated PREPARE, arriving after the go: not the
            // commit's result.
            return status == RESULT_READY;
        }
        match status {
            RESULT_READY => {
                a.ready[p] = true;
                self.targets[p].committing = false;
            }
            RESULT_FAILED => {
                self.targets[p].failed = Some(String::from_utf8_lossy(message).into_owned());
            }
            _ => return false,
        }
        true
    }

    /// Of an atomic push: whether the go was given (`None`: not atomic).
    pub(crate) fn atomic_outcome(&self) -> Option<bool> {
        self.atomic.as_ref().map(|a| a.go)
    }

    /// Timer in the commit phase of an atomic push before the go: a failed target ends the
    /// push for everyone; all ready gives the go.
    pub(super) fn atomic_step(&mut self, now: Instant, cfg: &Config) {
        let Some(a) = &mut self.atomic else { return };
        if a.go {
            return;
        }
        if let Some(bad) = self.targets.iter().find(|t| t.failed.is_some()) {
            let why = format!(
                "{NOT_COMMITTED} ({} failed: {})",
                bad.name,
                bad.failed.as_deref().unwrap_or("")
            );
            for t in &mut self.targets {
                if t.failed.is_none() {
                    t.failed = Some(why.clone());
                }
            }
            self.progress.push(why);
            self.queue.clear();
            self.phase = Phase::Done;
            return;
        }
        if a.ready.iter().all(|&r| r) && !a.confirming {
            // A member may have answered READY long ago (the others were slower, a
            // `--before-commit` hook ran) and died since: one more PREPARE round, answered
            // READY by every target, comes before the go. A crash within that round trip
            // leaves the member in doubt; on restart it asks (`outcome.rs`) and finishes.
            a.confirming = true;
            a.ready.fill(false);
            self.progress.push(format!(
                "every member ready after {:.2}s: confirming",
                now.saturating_duration_since(self.started).as_secs_f64()
            ));
            self.queue.clear();
            self.queue.push_back(Work::Commit);
            self.interval = cfg.poll_interval;
            self.waiting_since = now;
            self.deadline = None;
            return;
        }
        if a.ready.iter().all(|&r| r) {
            a.go = true;
            self.progress.push(format!(
                "every member ready after {:.2}s: committing",
                now.saturating_duration_since(self.started).as_secs_f64()
            ));
            self.queue.clear();
            self.queue.push_back(Work::Commit);
            self.interval = cfg.poll_interval;
            self.waiting_since = now;
            self.deadline = None;
        }
    }
}

impl Inbound {
    /// COMMIT with PREPARE: ready when the push is wholly staged, nothing failed, and the
    /// storage agrees (it runs `--before-commit` and writes its journal; it may answer
    /// later, see [`Inbound::prepared`]).
    pub(crate) fn prepare<S: Storage>(&mut self, storage: &mut S, no_delete: bool, skip: &[u32]) {
        if !matches!(self.commit, CommitState::None) {
            return;
        }
        let fail = |msg: String| {
            CommitState::Done(
                RESULT_FAILED,
                CommitOutcome {
                    errors: vec![msg],
                    ..Default::default()
                },
            )
        };
        self.commit = match (&self.manifest, &self.inspection) {
            (Some(_), None) | (None, _) => fail("prepare before the manifest".into()),
            _ if self.error.is_some() => fail(self.error.clone().unwrap_or_default()),
            _ if !self.complete() => fail("incomplete at prepare".into()),
            (Some(m), Some(_)) if m.options.dry_run => CommitState::Ready,
            (Some(m), Some(insp)) => {
                let req = CommitRequest {
                    manifest: m,
                    flags: &insp.flags,
                    deletions: if no_delete { &[] } else { &insp.deletions },
                    skip,
                };
                match storage.prepare(self.key, &req) {
                    Some(Ok(())) => CommitState::Ready,
                    Some(Err(e)) => fail(e),
                    None => CommitState::Preparing,
                }
            }
        };
        if matches!(self.commit, CommitState::Done(..)) {
            // Not committed here: what was staged goes now.
            storage.abort(self.key);
        }
    }

    /// The storage's later answer to PREPARE (it answered "pending"): no errors means
    /// ready, otherwise the member fails (and its staging goes).
    pub(crate) fn prepared<S: Storage>(&mut self, storage: &mut S, out: CommitOutcome) {
        if !matches!(self.commit, CommitState::Preparing) {
            return;
        }
        if out.errors.is_empty() {
            self.commit = CommitState::Ready;
        } else {
            self.commit = CommitState::Done(RESULT_FAILED, out);
            storage.abort(self.key);
        }
    }
}
