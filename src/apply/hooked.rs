//! Commits around the daemon's hooks (`hook.rs` runs them): with `--before-commit` a
//! transfer's commit is held (its request kept) until the hook allows it, or dropped with its
//! staging when the hook vetoes; with `--after-push` a committed transfer's outcome is held
//! until the hook ended, and a failed hook is added to its errors. Meanwhile the engine
//! answers the sender BUSY (the commit is "pending"), so the network loop never waits on a
//! hook. Under `--atomic` the `--before-commit` hook runs at PREPARE instead (before the
//! member answers READY), so a veto anywhere means no commit anywhere. This file only keeps
//! the held state and the queue of hooks to start.

use std::collections::HashMap;

use super::FsStorage;
use crate::hook::{HookJob, HookKind, HookResult};
use crate::proto::manifest::change::{self, Flags};
use crate::proto::manifest::Manifest;
use crate::proto::storage::{CommitOutcome, CommitRequest, XferKey};

/// A commit waiting for its `--before-commit` hook: its request, owned.
#[derive(Debug)]
pub(super) struct HeldCommit {
    manifest: Manifest,
    flags: Vec<Flags>,
    deletions: Vec<Vec<u8>>,
    skip: Vec<u32>,
    /// Held at `--atomic` PREPARE (allowed: the push gets ready) rather than at the commit.
    prepare: bool,
}

/// What the hooks hold.
#[derive(Debug, Default)]
pub(super) struct HookState {
    held: HashMap<XferKey, HeldCommit>,
    after: HashMap<XferKey, CommitOutcome>,
    jobs: Vec<HookJob>,
    /// Release pushes and rollbacks in flight: their link's name (for `MAKUO_RELEASE`).
    release: HashMap<XferKey, String>,
}

impl FsStorage {
    /// The commit as the engine asks for it: held for `--before-commit`, else applied now
    /// (and its outcome held for `--after-push`).
    pub(super) fn commit_hooked(
        &mut self,
        key: XferKey,
        req: &CommitRequest<'_>,
    ) -> Option<CommitOutcome> {
        // A `--before-commit` hook does not run for a transfer whose queued write failed.
        if !self.is_prepared(key)
            && self
                .opts
                .hooks
                .as_ref()
                .is_some_and(|h| h.before_commit.is_some())
        {
            if let Some(msg) = self.settle_writes(key) {
                return Some(self.fail_written(key, msg));
            }
        }
        if let Some(r) = req.manifest.release() {
            self.hooks.release.insert(key, r.name.clone());
        }
        // An atomic push ran its `--before-commit` at PREPARE.
        if !self.is_prepared(key) && self.hold_for_before_commit(key, req, false) {
            return None;
        }
        let out = self.commit_or_offload(key, req)?;
        self.after_commit(key, out)
    }

    /// `--atomic` PREPARE as the engine asks for it: `--before-commit` runs now (a veto
    /// anywhere means no commit anywhere), then the push gets ready (`journal.rs`).
    pub(super) fn prepare_hooked(
        &mut self,
        key: XferKey,
        req: &CommitRequest<'_>,
    ) -> Option<Result<(), String>> {
        // Every queued write lands first; one that failed fails the push here as a failed
        // synchronous write would (the engine then drops the staging).
        if let Some(msg) = self.settle_writes(key) {
            return Some(Err(msg));
        }
        // Atomic pushes over the same paths are serialized here: while one is between
        // PREPARE and its end, another touching any of its paths is refused (not committed
        // anywhere); the sender may push again.
        if let Err(other) = self.journals.claim(key, planned_changes(req)) {
            return Some(Err(format!(
                "another atomic push over the same paths ({:016x}/{:x}) is being committed \
                 here; not committed, push again",
                other.origin, other.xfer
            )));
        }
        if let Some(r) = req.manifest.release() {
            self.hooks.release.insert(key, r.name.clone());
        }
        if self.hold_for_before_commit(key, req, true) {
            return None;
        }
        Some(self.get_ready(key, req))
    }

    /// Holds the request for the `--before-commit` hook, if there is one.
    fn hold_for_before_commit(
        &mut self,
        key: XferKey,
        req: &CommitRequest<'_>,
        prepare: bool,
    ) -> bool {
        let hooks = self.opts.hooks.clone();
        if hooks.as_ref().is_none_or(|h| h.before_commit.is_none()) {
            return false;
        }
        let changes = planned_changes(req);
        self.hooks.held.insert(
            key,
            HeldCommit {
                manifest: req.manifest.clone(),
                flags: req.flags.to_vec(),
                deletions: req.deletions.to_vec(),
                skip: req.skip.to_vec(),
                prepare,
            },
        );
        self.hooks.jobs.push(HookJob {
            key,
            kind: HookKind::BeforeCommit,
            changes,
            release: self.release_env(key),
        });
        true
    }

    pub(super) fn after_commit(
        &mut self,
        key: XferKey,
        out: CommitOutcome,
    ) -> Option<CommitOutcome> {
        let after = self
            .opts
            .hooks
            .as_ref()
            .is_some_and(|h| h.after_push.is_some());
        let release = self.release_env(key);
        self.hooks.release.remove(&key);
        // The hook runs after a commit that applied; a failed commit is reported as it is.
        if !after || !out.errors.is_empty() {
            return Some(out);
        }
        let mut changes = out.written.clone();
        changes.extend(out.removed.iter().cloned());
        self.hooks.jobs.push(HookJob {
            key,
            kind: HookKind::AfterPush,
            changes,
            release,
        });
        self.hooks.after.insert(key, out);
        None
    }

    /// Hooks to start (the driver starts them and reports with [`FsStorage::hook_done`]).
    pub fn take_hook_jobs(&mut self) -> Vec<HookJob> {
        std::mem::take(&mut self.hooks.jobs)
    }

    /// A hook ended: returns the transfer's outcome when its commit is now finished (for
    /// `Engine::handle_committed`). After `--before-commit` allowed it, the commit runs here
    /// (and may queue the `--after-push` hook).
    pub fn hook_done(
        &mut self,
        key: XferKey,
        kind: HookKind,
        r: HookResult,
    ) -> Option<CommitOutcome> {
        match kind {
            HookKind::BeforeCommit => {
                let h = self.hooks.held.remove(&key)?;
                if let Err(e) = r {
                    self.drop_staged(key);
                    self.unmake_dirs(key);
                    return Some(CommitOutcome {
                        errors: vec![format!(
                            "vetoed by --before-commit ({e}); nothing committed"
                        )],
                        ..Default::default()
                    });
                }
                let req = CommitRequest {
                    manifest: &h.manifest,
                    flags: &h.flags,
                    deletions: &h.deletions,
                    skip: &h.skip,
                };
                if h.prepare {
                    // Ready (an outcome without errors) or not.
                    let errors = self.get_ready(key, &req).err().into_iter().collect();
                    return Some(CommitOutcome {
                        errors,
                        ..Default::default()
                    });
                }
                let out = self.commit_or_offload(key, &req)?;
                self.after_commit(key, out)
            }
            HookKind::AfterPush => {
                let mut out = self.hooks.after.remove(&key)?;
                if let Err(e) = r {
                    out.errors.push(e);
                }
                Some(out)
            }
        }
    }

    /// The transfer is dropped: nothing held for it is committed.
    pub(super) fn forget_hooks(&mut self, key: XferKey) {
        self.hooks.held.remove(&key);
        self.hooks.after.remove(&key);
        self.hooks.release.remove(&key);
        self.hooks.jobs.retain(|j| j.key != key);
    }
}

impl FsStorage {
    /// `MAKUO_RELEASE` for a hook of transfer `key`: the release directory its link NAME
    /// points at now (`releases/<push-id>`; before the switch, the one it still points at
    /// for a rollback, and this push's own for a release push).
    fn release_env(&self, key: XferKey) -> Option<String> {
        let name = self.hooks.release.get(&key)?;
        Some(self.release_dir_for(key, name))
    }
}

/// The paths a commit would change: entries with changes (not protected, not vanished) and
/// the deletions.
fn planned_changes(req: &CommitRequest<'_>) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = req
        .manifest
        .entries
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let f = req.flags.get(*i).copied().unwrap_or(0);
            f != 0 && f & change::PROTECTED == 0 && !req.skip.contains(&(*i as u32))
        })
        .map(|(_, e)| e.path.clone())
        .collect();
    out.extend(req.deletions.iter().cloned());
    out
}
