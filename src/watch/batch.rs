//! The changes a watch has seen and not pushed yet, and when to push them: a quiet period
//! gathers a burst into one batch, a file still open for writing waits for its close.
//!
//! Pure bookkeeping: time is an argument, nothing here reads a clock or touches a file.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Most changed paths a batch remembers one by one; beyond that the batch becomes a full
/// compare (memory stays bounded whatever a tree does).
pub const MAX_PATHS: usize = 100_000;

/// What happened to one path since the last push.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// It is a directory that appeared (created or moved in): push all of it.
    pub new_dir: bool,
    /// It was written and not closed yet (a writer may still be at it).
    pub open: bool,
    /// When it last changed.
    pub at: Option<Instant>,
}

/// Changed paths waiting for a push, with the timing rules.
#[derive(Debug)]
pub struct Batch {
    /// Quiet period: push once nothing changed for this long.
    pub delay: Duration,
    /// Push at the latest this long after the first waiting change (and push a file still
    /// open for writing once it has been quiet this long).
    pub max_wait: Duration,
    paths: BTreeMap<Vec<u8>, Change>,
    /// A full compare of every watched path was asked for (start, queue overflow, rules
    /// changed, unknown state).
    full: bool,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// What [`Batch::take`] hands to a push.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// Compare everything.
    pub full: bool,
    /// The changed paths (when not `full`), with whether each is a new directory.
    pub paths: Vec<(Vec<u8>, bool)>,
    /// When the oldest of these changes happened (for the lag).
    pub since: Option<Instant>,
}

impl Batch {
    /// An empty batch with this quiet period; the longest wait is 8 quiet periods, at
    /// least 4 s (long enough for a burst of writes from a slow writer to stay one or two
    /// pushes, short enough that a file changing all the time still goes out).
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            max_wait: (delay * 8).max(Duration::from_secs(4)),
            paths: BTreeMap::new(),
            full: false,
            first: None,
            last: None,
        }
    }

    fn touch(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// Records a change of `path`. `open`: written, not closed yet; `closed`: a writer closed
    /// it (or it arrived whole, by rename); `new_dir`: a directory appeared.
    pub fn changed(
        &mut self,
        now: Instant,
        path: Vec<u8>,
        open: bool,
        closed: bool,
        new_dir: bool,
    ) {
        self.touch(now);
        if self.full && !open {
            // A full compare sees it anyway; only files still being written are tracked.
            if let Some(c) = self.paths.get_mut(&path) {
                c.at = Some(now);
                c.open &= !closed;
            }
            return;
        }
        if self.paths.len() >= MAX_PATHS && !self.paths.contains_key(&path) {
            self.full = true;
            self.paths.retain(|_, c| c.open);
            return;
        }
        let c = self.paths.entry(path).or_default();
        c.at = Some(now);
        c.new_dir |= new_dir;
        if closed {
            c.open = false;
        } else if open {
            c.open = true;
        }
    }

    /// Asks for a full compare.
    pub fn full(&mut self, now: Instant) {
        self.touch(now);
        self.full = true;
    }

    /// Whether anything waits.
    pub fn is_empty(&self) -> bool {
        !self.full && self.paths.is_empty()
    }

    /// Paths waiting.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// When the oldest waiting change happened.
    pub fn since(&self) -> Option<Instant> {
        self.first
    }

    /// When the batch becomes due (`None`: nothing waits).
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        if self.is_empty() {
            return None;
        }
        Some((last + self.delay).min(first + self.max_wait))
    }

    /// Takes what is ready at `now` (or nothing when not due): every waiting path except a
    /// file still open for writing that changed less than `max_wait` ago, which stays for a
    /// later batch.
    pub fn take(&mut self, now: Instant) -> Option<Taken> {
        if self.due()? > now {
            return None;
        }
        let since = self.first;
        let mut out = Taken {
            full: std::mem::take(&mut self.full),
            paths: Vec::new(),
            since,
        };
        let max_wait = self.max_wait;
        let mut keep = BTreeMap::new();
        for (p, c) in std::mem::take(&mut self.paths) {
            let held = c.open
                && c.at
                    .is_some_and(|t| now.saturating_duration_since(t) < max_wait);
            if held {
                keep.insert(p, c);
            } else if !out.full {
                out.paths.push((p, c.new_dir));
            }
        }
        self.first = keep.values().filter_map(|c| c.at).min();
        self.last = keep.values().filter_map(|c| c.at).max();
        self.paths = keep;
        if out.paths.is_empty() && !out.full {
            return None;
        }
        Some(out)
    }

    /// Paths still held back because a writer has them open (a full compare leaves them out
    /// too; they go in a later batch).
    pub fn held(&self) -> impl Iterator<Item = &[u8]> {
        self.paths
            .iter()
            .filter(|(_, c)| c.open)
            .map(|(p, _)| p.as_slice())
    }

    /// Puts a batch that could not be pushed back (its paths merge with newer changes).
    pub fn put_back(&mut self, t: Taken, now: Instant) {
        if t.full {
            self.full = true;
        }
        for (p, new_dir) in t.paths {
            let c = self.paths.entry(p).or_default();
            c.new_dir |= new_dir;
            c.at.get_or_insert(now);
        }
        let since = t.since.unwrap_or(now);
        self.first = Some(self.first.map_or(since, |f| f.min(since)));
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn p(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn batch_waits_for_quiet_then_takes_everything() {
        let t0 = Instant::now();
        let mut b = Batch::new(500 * MS);
        assert_eq!(b.due(), None);
        // A burst of 1000 writes 1 ms apart is one batch.
        for i in 0..1000u32 {
            let now = t0 + i * MS;
            b.changed(now, format!("f{i}").into_bytes(), false, true, false);
            assert!(b.take(now).is_none());
        }
        let last = t0 + 999 * MS;
        assert_eq!(b.due(), Some(last + 500 * MS));
        assert!(b.take(last + 499 * MS).is_none());
        let got = b.take(last + 500 * MS).unwrap();
        assert_eq!(got.paths.len(), 1000);
        assert_eq!(got.since, Some(t0));
        assert!(b.is_empty() && b.due().is_none());
    }

    #[test]
    fn batch_goes_out_at_the_latest_after_max_wait() {
        let t0 = Instant::now();
        let mut b = Batch::new(500 * MS);
        assert_eq!(b.max_wait, Duration::from_secs(4));
        // A change every 100 ms never leaves a quiet period.
        let mut taken = None;
        for i in 0..60u32 {
            let now = t0 + i * 100 * MS;
            if let Some(t) = b.take(now) {
                taken = Some((now, t));
                break;
            }
            b.changed(now, p("log"), false, true, false);
        }
        let (at, t) = taken.expect("never pushed");
        assert_eq!(at, t0 + Duration::from_secs(4));
        assert_eq!(t.paths, vec![(p("log"), false)]);
    }

    #[test]
    fn batch_holds_a_file_still_open_for_writing() {
        let t0 = Instant::now();
        let mut b = Batch::new(500 * MS);
        b.changed(t0, p("done"), false, true, false);
        b.changed(t0, p("half"), true, false, false);
        let got = b.take(t0 + 500 * MS).unwrap();
        assert_eq!(got.paths, vec![(p("done"), false)], "the open file waits");
        assert_eq!(b.len(), 1);
        // Its close makes it ready at the next quiet period.
        b.changed(t0 + 600 * MS, p("half"), false, true, false);
        let got = b.take(t0 + 1100 * MS).unwrap();
        assert_eq!(got.paths, vec![(p("half"), false)]);
        // A writer that never closes: pushed once it has been quiet for max_wait.
        b.changed(t0 + 2000 * MS, p("held"), true, false, false);
        assert!(b.take(t0 + 5000 * MS).is_none());
        assert!(b.take(t0 + 6000 * MS).is_some());
    }

    #[test]
    fn batch_too_many_paths_become_a_full_compare() {
        let t0 = Instant::now();
        let mut b = Batch::new(100 * MS);
        for i in 0..=MAX_PATHS {
            b.changed(t0, format!("f{i}").into_bytes(), false, true, false);
        }
        assert!(b.len() < MAX_PATHS);
        b.changed(t0, p("half"), true, false, false);
        let got = b.take(t0 + 100 * MS).unwrap();
        assert!(got.full && got.paths.is_empty());
        assert_eq!(b.len(), 1, "the file still open waits");
    }

    #[test]
    fn batch_full_compare_and_put_back() {
        let t0 = Instant::now();
        let mut b = Batch::new(100 * MS);
        b.full(t0);
        b.changed(t0, p("x"), false, true, true);
        let got = b.take(t0 + 100 * MS).unwrap();
        assert!(got.full && got.paths.is_empty());
        b.changed(t0 + 200 * MS, p("y"), false, true, true);
        let got = b.take(t0 + 300 * MS).unwrap();
        assert_eq!(got.paths, vec![(p("y"), true)]);
        b.put_back(got, t0 + 400 * MS);
        b.changed(t0 + 450 * MS, p("z"), false, true, false);
        assert_eq!(
            b.since(),
            Some(t0 + 200 * MS),
            "the lag counts from the first try"
        );
        let got = b.take(t0 + 550 * MS).unwrap();
        assert_eq!(got.paths, vec![(p("y"), true), (p("z"), false)]);
    }
}
