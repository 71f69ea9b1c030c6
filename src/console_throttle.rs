//! What refused and failing console peers may cost: log lines rate-limited per peer with
//! counts ([`LogLimit`]), and a backoff per peer after wrong passwords ([`Backoff`]).
//!
//! A peer is named by a key: `uid 65534` for a local user, the address for a peer on another
//! host (an IPv6 address by its /64, which one host usually holds whole). Both tables are
//! bounded ([`MAX_KEYS`]): past the cap, new keys share one entry (`other peers`), so a flood
//! from many addresses costs no more memory or log lines than one peer.
//!
//! Pure state: time is passed in; the caller logs the lines returned and sleeps or refuses as
//! told. Used by [`crate::console_access`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most peers tracked by each table.
pub const MAX_KEYS: usize = 1024;

/// The key that stands for every peer past [`MAX_KEYS`].
const OTHERS: &str = "other peers";

/// How a peer is named in the tables and the log: its uid when local, its address (an IPv6
/// address by its /64) when remote.
pub fn source_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

#[derive(Debug)]
struct Window {
    start: Instant,
    /// Events not logged since `start`.
    more: u64,
    /// What they are ("refused", "wrong passwords").
    what: &'static str,
}

/// Log lines per peer and kind of event: the first in each window is logged in full, the
/// rest are counted and summed up in one line when the window ends ("… and 41 more refused
/// from uid 65534 in the last 60 s").
#[derive(Debug)]
pub struct LogLimit {
    window: Duration,
    open: HashMap<(String, &'static str), Window>,
}

impl LogLimit {
    /// A limiter with windows of `window`.
    pub fn new(window: Duration) -> LogLimit {
        LogLimit {
            window,
            open: HashMap::new(),
        }
    }

    /// Notes one event `what` of peer `key` at `now`. Returns whether to log it in full, and
    /// the summaries of windows that have ended (to log first).
    pub fn note(&mut self, now: Instant, key: &str, what: &'static str) -> (bool, Vec<String>) {
        let lines = self.due(now);
        let mut k = (key.to_string(), what);
        if !self.open.contains_key(&k) && self.open.len() >= MAX_KEYS {
            k.0 = OTHERS.to_string();
        }
        let log = match self.open.get_mut(&k) {
            Some(w) => {
                w.more += 1;
                false
            }
            None => {
                self.open.insert(
                    k,
                    Window {
                        start: now,
                        more: 0,
                        what,
                    },
                );
                true
            }
        };
        (log, lines)
    }

    /// The summaries of windows that have ended at `now` (and forgets them).
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let window = self.window;
        let mut lines = Vec::new();
        self.open.retain(|(key, _), w| {
            let ended = now.saturating_duration_since(w.start) >= window;
            if ended && w.more > 0 {
                lines.push(summary(key, w, now));
            }
            !ended
        });
        lines.sort();
        lines
    }

    /// Every summary still pending, windows ended or not (at shutdown).
    pub fn drain(&mut self, now: Instant) -> Vec<String> {
        let mut lines: Vec<String> = self
            .open
            .drain()
            .filter(|(_, w)| w.more > 0)
            .map(|((key, _), w)| summary(&key, &w, now))
            .collect();
        lines.sort();
        lines
    }
}

fn summary(key: &str, w: &Window, now: Instant) -> String {
    let secs = now.saturating_duration_since(w.start).as_secs().max(1);
    format!(
        "console: … and {} more {} from {key} in the last {secs} s",
        w.more, w.what
    )
}

/// Wrong passwords per peer, and how long a peer must wait before it may try again.
#[derive(Debug)]
pub struct Backoff {
    free: u32,
    first: Duration,
    max: Duration,
    forget: Duration,
    peers: HashMap<String, (u32, Instant)>,
}

impl Backoff {
    /// `free` wrong passwords cost nothing more than their answer's delay; the next one makes
    /// the peer wait `first`, each further one twice as long, at most `max`. A peer is
    /// forgotten `forget` after its last wrong password.
    pub fn new(free: u32, first: Duration, max: Duration, forget: Duration) -> Backoff {
        Backoff {
            free,
            first,
            max,
            forget,
            peers: HashMap::new(),
        }
    }

    fn slot(&self, key: &str) -> String {
        if self.peers.contains_key(key) || self.peers.len() < MAX_KEYS {
            key.to_string()
        } else {
            OTHERS.to_string()
        }
    }

    /// How long peer `key` must still wait at `now` before it may try a password.
    pub fn wait(&self, now: Instant, key: &str) -> Option<Duration> {
        let (n, last) = self.peers.get(&self.slot(key))?;
        if *n < self.free {
            return None;
        }
        let doubling = (*n - self.free).min(16);
        let hold = self.first.saturating_mul(1 << doubling).min(self.max);
        let until = *last + hold;
        (until > now).then(|| until - now)
    }

    /// Notes a wrong password of peer `key` at `now`.
    pub fn failed(&mut self, now: Instant, key: &str) {
        let forget = self.forget;
        self.peers
            .retain(|_, (_, last)| now.saturating_duration_since(*last) < forget);
        let k = self.slot(key);
        let e = self.peers.entry(k).or_insert((0, now));
        e.0 = e.0.saturating_add(1);
        e.1 = now;
    }

    /// Forgets peer `key`'s wrong passwords (it has just given the right one).
    pub fn succeeded(&mut self, key: &str) {
        self.peers.remove(key);
    }

    /// Peers remembered now.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is remembered.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_line_of_a_window_is_logged_and_the_rest_are_counted() {
        let t0 = Instant::now();
        let mut l = LogLimit::new(60 * S);
        assert_eq!(l.note(t0, "uid 65534", "refused"), (true, vec![]));
        for i in 1..=41 {
            assert_eq!(
                l.note(t0 + i * S / 2, "uid 65534", "refused"),
                (false, vec![])
            );
        }
        // Another peer, or another kind of event, has its own window.
        assert!(l.note(t0 + 30 * S, "uid 1000", "refused").0);
        assert!(l.note(t0 + 30 * S, "uid 65534", "wrong passwords").0);
        assert_eq!(l.due(t0 + 59 * S), Vec::<String>::new());
        assert_eq!(
            l.due(t0 + 61 * S),
            ["console: … and 41 more refused from uid 65534 in the last 61 s"]
        );
        // The next event starts a new window, logged in full; a window with nothing more
        // ends without a line.
        let (log, lines) = l.note(t0 + 95 * S, "uid 65534", "refused");
        assert!(log);
        assert!(lines.is_empty(), "{lines:?}");
        l.note(t0 + 96 * S, "uid 65534", "refused");
        assert_eq!(
            l.drain(t0 + 100 * S),
            ["console: … and 1 more refused from uid 65534 in the last 5 s"]
        );
    }

    #[test]
    fn many_peers_share_one_entry_past_the_cap() {
        let t0 = Instant::now();
        let mut l = LogLimit::new(60 * S);
        let mut logged = 0;
        for i in 0..MAX_KEYS + 500 {
            logged += l
                .note(t0, &format!("10.0.{}.{}", i / 256, i % 256), "refused")
                .0 as usize;
        }
        assert_eq!(
            logged,
            MAX_KEYS + 1,
            "the cap, plus one line for all the others"
        );
        assert_eq!(l.open.len(), MAX_KEYS + 1);
        let lines = l.drain(t0 + S);
        assert_eq!(
            lines,
            ["console: … and 499 more refused from other peers in the last 1 s"]
        );
    }

    #[test]
    fn backoff_doubles_after_the_free_tries_and_is_forgotten() {
        let t0 = Instant::now();
        let mut b = Backoff::new(3, 10 * S, 600 * S, 3600 * S);
        let k = "198.18.0.9";
        for i in 0..3 {
            assert_eq!(b.wait(t0, k), None, "try {i}");
            b.failed(t0, k);
        }
        assert_eq!(b.wait(t0, k), Some(10 * S));
        assert_eq!(b.wait(t0 + 4 * S, k), Some(6 * S));
        assert_eq!(b.wait(t0 + 10 * S, k), None);
        b.failed(t0 + 10 * S, k);
        assert_eq!(b.wait(t0 + 10 * S, k), Some(20 * S));
        for _ in 0..20 {
            b.failed(t0 + 10 * S, k);
        }
        assert_eq!(b.wait(t0 + 10 * S, k), Some(600 * S), "capped");
        assert_eq!(b.wait(t0 + 10 * S, "198.18.0.10"), None, "per peer");
        b.succeeded(k);
        assert_eq!(b.wait(t0 + 10 * S, k), None);
        // Forgotten an hour after the last failure.
        b.failed(t0, "a");
        b.failed(t0 + 3601 * S, "b");
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn ipv6_peers_are_keyed_by_their_64() {
        assert_eq!(source_key("198.18.0.9".parse().unwrap()), "198.18.0.9");
        assert_eq!(
            source_key("::ffff:198.18.0.9".parse().unwrap()),
            "198.18.0.9"
        );
        assert_eq!(
            source_key("fd00:1:2:3:4:5:6:7".parse().unwrap()),
            "fd00:1:2:3::/64"
        );
    }
}
