//! Outcomes of `--atomic` pushes, for a member that restarted with one in doubt: it was
//! journaled ready there, and the crash came before the go reached its journal (within the
//! last round trip), so the member cannot tell whether the others committed.
//!
//! - **Who knows** ([`Outcomes`]): the sender of an atomic push notes it *committed* once it
//!   gives the go and *not committed* when the push ends without one; every member that gets
//!   the go notes it *committed*. Bounded: at most [`MAX_OUTCOMES`] pushes, the oldest
//!   forgotten first.
//! - **Who asks** ([`Doubts`]): the driver hands the engine the pushes its journal holds in
//!   doubt ([`Engine::resolve_in_doubt`]); the engine asks the group (OUTCOME, status ASK)
//!   every [`ASK_INTERVAL`] until an answer comes or the patience runs out. Whoever noted the
//!   push answers the asker (unicast, under the reply budget). An answer, or the go itself
//!   (COMMIT without PREPARE from the push's sender), makes the storage finish the push
//!   ([`Storage::resolve`]); *not committed* or no answer in time rolls it back.
//!
//! An answer only ever concerns a push this member holds in doubt (its own journal): a
//! forged or stray one for anything else is dropped, so it cannot make a member commit what
//! it never staged. Answers come only from members holding the cluster key (when keyed).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::storage::{Storage, XferKey};
use super::wire::{self, Msg};
use super::{Dest, Engine, Event};

/// Most atomic-push outcomes remembered.
pub const MAX_OUTCOMES: usize = 4096;
/// Most pushes held in doubt at once (a member holds one journal per atomic push in flight).
pub const MAX_DOUBTS: usize = 256;
/// How often a member in doubt asks again.
pub const ASK_INTERVAL: Duration = Duration::from_millis(500);

/// The outcomes this node knows (bounded, oldest forgotten first).
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    map: HashMap<XferKey, bool>,
    order: VecDeque<XferKey>,
}

impl Outcomes {
    /// Notes push `key` committed (`true`) or not. A committed push stays committed.
    pub(crate) fn note(&mut self, key: XferKey, committed: bool) {
        if let Some(c) = self.map.get_mut(&key) {
            *c |= committed;
            return;
        }
        if self.map.len() >= MAX_OUTCOMES {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.map.insert(key, committed);
        self.order.push_back(key);
    }

    pub(crate) fn get(&self, key: &XferKey) -> Option<bool> {
        self.map.get(key).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// Pushes this member holds in doubt, each with the time it gives up asking.
#[derive(Debug, Default)]
pub(crate) struct Doubts {
    until: BTreeMap<XferKey, Instant>,
    next_ask: Option<Instant>,
}

impl<S: Storage> Engine<S> {
    /// Input: the storage holds these atomic pushes in doubt (journaled ready, no go
    /// recorded, see the module doc). The engine asks the cluster how each ended, for at most
    /// `patience`, and has the storage finish or roll back each ([`Storage::resolve`]); one
    /// [`Event::Resolved`] per push says which and why. At most [`MAX_DOUBTS`] are taken (the
    /// rest are rolled back at once).
    pub fn resolve_in_doubt(&mut self, now: Instant, keys: &[XferKey], patience: Duration) {
        self.clock = self.clock.max(now);
        for &k in keys {
            if self.doubts.until.len() >= MAX_DOUBTS {
                self.settle(k, false, "too many pushes in doubt");
                continue;
            }
            self.doubts.until.insert(k, now + patience);
        }
        if !self.doubts.until.is_empty() {
            self.doubts.next_ask = Some(now);
        }
    }

    /// Pushes held in doubt now.
    pub fn in_doubt(&self) -> impl Iterator<Item = &XferKey> {
        self.doubts.until.keys()
    }

    /// Atomic-push outcomes remembered (to answer members in doubt).
    pub fn outcomes_known(&self) -> usize {
        self.outcomes.len()
    }

    /// The storage finishes (`commit`) or rolls back push `key`, no longer in doubt.
    fn settle(&mut self, key: XferKey, commit: bool, why: &str) {
        self.doubts.until.remove(&key);
        let applied = self.storage.resolve(key, commit);
        if let Some((outcome, digest, started_ms)) = applied {
            self.outcomes.note(key, true);
            let origin = self
                .members
                .get(key.origin)
                .map(|m| m.name.clone())
                .unwrap_or_default();
            self.events.push_back(Event::Applied {
                key,
                origin,
                outcome,
                dry_run: false,
                digest,
                started_ms,
            });
        }
        self.events.push_back(Event::Resolved {
            key,
            committed: commit,
            why: why.to_string(),
        });
    }

    /// Timer: asks again about the pushes in doubt; gives up on those past their patience.
    pub(super) fn doubt_timers(&mut self, now: Instant) {
        if self.doubts.next_ask.is_none_or(|t| now < t) {
            return;
        }
        let keys: Vec<(XferKey, Instant)> =
            self.doubts.until.iter().map(|(k, t)| (*k, *t)).collect();
        for (k, until) in keys {
            if now >= until {
                self.settle(
                    k,
                    false,
                    "nobody answered whether it was committed (presumed not)",
                );
                continue;
            }
            self.queue(
                Dest::Group,
                &Msg::Outcome {
                    origin: k.origin,
                    xfer: k.xfer,
                    status: wire::OUTCOME_ASK,
                },
            );
        }
        self.doubts.next_ask = (!self.doubts.until.is_empty()).then_some(now + ASK_INTERVAL);
    }

    /// When [`Self::doubt_timers`] wants to run next.
    pub(super) fn doubt_timeout(&self) -> Option<Instant> {
        self.doubts.next_ask
    }

    /// An OUTCOME from `node` (at `from`): a question is answered if this node knows the
    /// push's outcome; an answer resolves a push held in doubt here (and nothing else).
    pub(super) fn on_outcome(
        &mut self,
        from: SocketAddr,
        node: u64,
        key: XferKey,
        status: u8,
    ) -> bool {
        if status == wire::OUTCOME_ASK {
            let Some(c) = self.outcomes.get(&key) else {
                // Not known here: someone else may answer.
                return true;
            };
            let dest = self.reply_addr(node, from);
            let status = if c {
                wire::OUTCOME_COMMITTED
            } else {
                wire::OUTCOME_ABORTED
            };
            self.queue_reply(
                dest,
                &Msg::Outcome {
                    origin: key.origin,
                    xfer: key.xfer,
                    status,
                },
            );
            return true;
        }
        if !self.doubts.until.contains_key(&key) {
            return false;
        }
        let who = self
            .members
            .get(node)
            .map_or_else(|| format!("{node:016x}"), |m| m.name.clone());
        if status == wire::OUTCOME_COMMITTED {
            self.settle(key, true, &format!("{who} says it was committed"));
        } else {
            self.settle(key, false, &format!("{who} says it was not committed"));
        }
        true
    }

    /// The go (COMMIT without PREPARE) from its sender for a push held in doubt here: the
    /// answer itself. Returns whether `key` was in doubt.
    pub(super) fn go_for_doubt(&mut self, key: XferKey) -> bool {
        if !self.doubts.until.contains_key(&key) {
            return false;
        }
        self.settle(key, true, "the go arrived from its sender");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_bounded_and_a_commit_sticks() {
        let mut o = Outcomes::default();
        let k = |x| XferKey { origin: 3, xfer: x };
        o.note(k(0), false);
        o.note(k(0), true);
        o.note(k(0), false);
        assert_eq!(o.get(&k(0)), Some(true));
        for x in 1..=MAX_OUTCOMES as u32 {
            o.note(k(x), x % 2 == 0);
        }
        assert_eq!(o.len(), MAX_OUTCOMES);
        assert_eq!(o.get(&k(0)), None, "the oldest went first");
        assert_eq!(o.get(&k(2)), Some(true));
        assert_eq!(o.get(&k(3)), Some(false));
    }
}
