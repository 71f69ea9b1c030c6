//! What a receiver remembers about inbound transfers that ended: one small record per
//! transfer (its RESULT, or why it was refused), so late repeats of ANNOUNCE, POLL and COMMIT
//! are answered, and stragglers recognised, without holding a slot.
//!
//! Bounded: at most [`MAX_RECORDS`] records, each forgotten after its time to live (the
//! engine uses twice the transfer timeout); when full, the oldest goes first. A record holds
//! no manifest, payload or staged file, only the answer (its message cut to
//! [`MAX_RECORD_MESSAGE`] bytes).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::storage::XferKey;

/// Most finished transfers remembered at once.
pub const MAX_RECORDS: usize = 4096;
/// Longest message kept in a record.
pub const MAX_RECORD_MESSAGE: usize = 1000;

/// The RESULT a finished transfer answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u8,
    pub(crate) files: u32,
    pub(crate) bytes: u64,
    pub(crate) deleted: u32,
    pub(crate) message: Vec<u8>,
}

/// One finished transfer.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    /// Our position among its targets (which pending bit is ours).
    pub(crate) pos: usize,
    /// Where its sender's datagrams came from.
    pub(crate) sender: SocketAddr,
    /// What to answer a repeated COMMIT (or, for a refusal, any request naming us); `None`
    /// for a transfer that was abandoned (the sender gave up or went silent).
    pub(crate) answer: Option<Answer>,
    /// Whether the answer refuses the transfer (it then answers announces and polls too).
    pub(crate) refused: bool,
    at: Instant,
}

/// The records, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Records {
    map: HashMap<XferKey, Record>,
    order: VecDeque<(Instant, XferKey)>,
}

impl Records {
    /// Remembers `key` (replacing an earlier record of it).
    pub(crate) fn insert(
        &mut self,
        key: XferKey,
        pos: usize,
        sender: SocketAddr,
        answer: Option<Answer>,
        refused: bool,
        now: Instant,
    ) {
        let answer = answer.map(|mut a| {
            a.message.truncate(MAX_RECORD_MESSAGE);
            a
        });
        if self.map.len() >= MAX_RECORDS && !self.map.contains_key(&key) {
            self.evict_oldest();
        }
        self.map.insert(
            key,
            Record {
                pos,
                sender,
                answer,
                refused,
                at: now,
            },
        );
        self.order.push_back((now, key));
    }

    fn evict_oldest(&mut self) {
        while let Some((t, k)) = self.order.pop_front() {
            // Entries of a record replaced later are stale: skip them.
            if self.map.get(&k).is_some_and(|r| r.at == t) {
                self.map.remove(&k);
                return;
            }
        }
    }

    /// The record of `key`.
    pub(crate) fn get(&self, key: &XferKey) -> Option<&Record> {
        self.map.get(key)
    }

    /// Whether `key` finished recently.
    pub(crate) fn contains(&self, key: &XferKey) -> bool {
        self.map.contains_key(key)
    }

    /// Forgets records older than `ttl`.
    pub(crate) fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some(&(t, k)) = self.order.front() {
            if now.saturating_duration_since(t) < ttl {
                break;
            }
            self.order.pop_front();
            if self.map.get(&k).is_some_and(|r| r.at == t) {
                self.map.remove(&k);
            }
        }
        // Stale queue entries (of replaced records) cannot pile up beyond the live ones.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(t, k)| map.get(k).is_some_and(|r| r.at == *t));
        }
    }

    /// Records kept.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(x: u32) -> XferKey {
        XferKey { origin: 7, xfer: x }
    }

    #[test]
    fn records_are_bounded_and_age_out() {
        let t = Instant::now();
        let a: SocketAddr = "10.0.0.1:9".parse().unwrap();
        let mut r = Records::default();
        for x in 0..MAX_RECORDS as u32 + 10 {
            let ans = Answer {
                status: 0,
                files: 1,
                bytes: 2,
                deleted: 0,
                message: vec![b'x'; 10_000],
            };
            r.insert(
                key(x),
                0,
                a,
                Some(ans),
                false,
                t + Duration::from_millis(x as u64),
            );
        }
        assert_eq!(r.len(), MAX_RECORDS);
        assert!(!r.contains(&key(0)), "the oldest went first");
        assert!(r.contains(&key(MAX_RECORDS as u32 + 9)));
        let m = &r.get(&key(20)).unwrap().answer.as_ref().unwrap().message;
        assert_eq!(m.len(), MAX_RECORD_MESSAGE);
        // Replacing a record keeps one entry, with the new contents.
        r.insert(key(20), 3, a, None, true, t + Duration::from_secs(10));
        assert_eq!(r.get(&key(20)).unwrap().pos, 3);
        assert_eq!(r.len(), MAX_RECORDS);
        r.expire(t + Duration::from_secs(9), Duration::from_secs(1));
        assert_eq!(r.len(), 1, "only the replaced one is young enough");
        r.expire(t + Duration::from_secs(12), Duration::from_secs(1));
        assert_eq!(r.len(), 0);
        assert!(r.order.is_empty());
    }
}
