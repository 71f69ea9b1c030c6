//! The cluster-wide order of overlapping pushes, as one member keeps it: a bounded table of
//! the paths recent pushes wrote or deleted here, each with the id of the newest push that
//! did. A push's id is `(start, origin)`: the Unix milliseconds its sender stamped into the
//! manifest when it started, then the sender's node id (ties). A commit skips every write
//! and delete of a path that a newer push already wrote or deleted here (or under a
//! directory a newer push deleted), so two pushes over the same paths end the same on every
//! member whichever order their commits arrive in: the newer one's contents win.
//!
//! Bounded: at most [`MAX_RECENT`] paths, each forgotten [`WINDOW_MS`] after the push that
//! wrote it started (by this member's clock), the oldest first when full. In memory only: a
//! restart forgets it (pushes overlapping a restart are not ordered). Pushes from senders
//! that stamp no start time (older builds) are neither ordered nor recorded.

use std::collections::{HashMap, VecDeque};

/// A push's place in the cluster-wide order: (start Unix ms, origin node id).
pub type PushId = (u64, u64);

/// Most paths remembered.
pub const MAX_RECENT: usize = 1 << 18;
/// How long a path's last writer is remembered after that push started (ms).
pub const WINDOW_MS: u64 = 10 * 60 * 1000;

/// Paths recently written or deleted here, with the newest push that did.
#[derive(Debug, Default)]
pub struct Recent {
    map: HashMap<Vec<u8>, (PushId, bool)>,
    order: VecDeque<(PushId, Vec<u8>)>,
}

impl Recent {
    /// Whether a push newer than `id` wrote or deleted `path` here, or deleted a directory
    /// above it.
    pub fn superseded(&self, path: &[u8], id: PushId) -> bool {
        if self.map.get(path).is_some_and(|(w, _)| *w > id) {
            return true;
        }
        let mut end = path.len();
        while let Some(i) = path[..end].iter().rposition(|&b| b == b'/') {
            if self
                .map
                .get(&path[..i])
                .is_some_and(|(w, deleted)| *deleted && *w > id)
            {
                return true;
            }
            end = i;
        }
        false
    }

    /// Notes that push `id` wrote (or deleted) `path`; an older id never replaces a newer.
    pub fn note(&mut self, path: &[u8], id: PushId, deleted: bool) {
        if let Some(w) = self.map.get_mut(path) {
            if w.0 <= id {
                *w = (id, deleted);
                self.order.push_back((id, path.to_vec()));
            }
        } else {
            while self.map.len() >= MAX_RECENT {
                if !self.evict_oldest() {
                    break;
                }
            }
            self.map.insert(path.to_vec(), (id, deleted));
            self.order.push_back((id, path.to_vec()));
        }
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((id, p)) = self.order.pop_front() {
            if self.map.get(&p).is_some_and(|(w, _)| *w == id) {
                self.map.remove(&p);
                return true;
            }
        }
        false
    }

    /// Forgets paths whose last writer started more than [`WINDOW_MS`] before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        while let Some((id, _)) = self.order.front() {
            if id.0.saturating_add(WINDOW_MS) > now_ms && self.order.len() <= 2 * MAX_RECENT {
                break;
            }
            let (id, p) = self.order.pop_front().expect("front exists");
            if self.map.get(&p).is_some_and(|(w, _)| *w == id) {
                self.map.remove(&p);
            }
        }
    }

    /// Paths remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newer_push_wins_and_the_table_is_bounded() {
        let mut r = Recent::default();
        let (old, new) = ((100, 9), (101, 1));
        r.note(b"a/b", new, false);
        assert!(r.superseded(b"a/b", old));
        assert!(!r.superseded(b"a/b", new));
        assert!(!r.superseded(b"a/b", (102, 0)));
        assert!(!r.superseded(b"a/b/c", old), "a written file hides nothing");
        r.note(b"d", new, true);
        assert!(r.superseded(b"d/e/f", old), "under a newer delete");
        r.note(b"a/b", old, false);
        assert!(
            r.superseded(b"a/b", old),
            "an older writer does not replace a newer"
        );
        // Ties on the start time: the origin decides.
        assert!(r.superseded(b"a/b", (101, 0)));
        r.expire(101 + WINDOW_MS);
        assert!(r.is_empty(), "forgotten after the window");
        for i in 0..MAX_RECENT + 5 {
            r.note(format!("f{i}").as_bytes(), (200 + i as u64, 0), false);
        }
        assert_eq!(r.len(), MAX_RECENT);
        assert!(!r.superseded(b"f0", (0, 0)), "the oldest went first");
    }
}
