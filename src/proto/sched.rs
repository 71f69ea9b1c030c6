//! Repair scheduling on the sender: which symbols to send for the groups receivers NAK, and
//! when, so that every receiver gets what it lacks and no more goes out than needed.
//!
//! Contract: [`Sched::request`] records one receiver's NAK entry for a group (how many
//! symbols it needs, which source blocks it misses, and `seen`, the highest header sequence
//! number it had received when it wrote the NAK); requests for a group wait [`Sched`]'s
//! holdoff so the other receivers' NAKs for it arrive too ([`Sched::decide_due`], or
//! [`Sched::decide_all`] when a poll round is complete). Decided symbols go into a queue the
//! transfer sends before any new data ([`Sched::pop`]); [`Sched::sent`] records each one
//! with its sequence number. Time is passed in.
//!
//! Deciding a group: for each request, symbols queued or sent after its `seen` that it can
//! use (any fresh parity symbol; a source block it misses) are already on their way; what
//! remains is its *residual* need. Then, until every residual is met: a source block that
//! every receiver still in need misses (as good as parity for them, and nothing to decode);
//! else a fresh parity symbol (it repairs different losses at different receivers) while the
//! group has any; else the source block most of them miss. So a group is never resent whole
//! round after round: once parity is used up, only the named blocks go out.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::wire::{NakEntry, Stream, MAX_MAP};

/// A repair symbol of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sym {
    /// Parity symbol `i`.
    Parity(u16),
    /// Source block `i` of the group.
    Source(u32),
}

/// How long a sent symbol is remembered for deduplication.
const LOG_AGE: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Request {
    need: u32,
    map: Vec<u8>,
    seen: u64,
    /// Every receiver that will NAK the group has had its chance (the group's first pass is
    /// long over, or this answers a poll): blocks named by all may be chosen over parity.
    settled: bool,
}

impl Request {
    fn lacks(&self, i: u32) -> bool {
        self.map.is_empty()
            || self
                .map
                .get(i as usize / 8)
                .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    fn useful(&self, s: Sym) -> bool {
        match s {
            Sym::Parity(_) => true,
            Sym::Source(i) => self.lacks(i),
        }
    }
}

#[derive(Debug, Default)]
struct Group {
    k_g: u32,
    next_parity: u16,
    /// Sent symbols: (sequence number, symbol, when).
    log: VecDeque<(u64, Sym, Instant)>,
    /// Decided, not yet sent.
    queued: Vec<Sym>,
    requests: BTreeMap<u64, Request>,
    due: Option<Instant>,
}

/// The repair scheduler of one transfer.
#[derive(Debug)]
pub(crate) struct Sched {
    parity: u16,
    groups: BTreeMap<(Stream, u32), Group>,
    queue: VecDeque<(Stream, u32, Sym)>,
    /// Symbols decided in total (for reports).
    pub(crate) decided: u64,
}

impl Sched {
    /// A scheduler for groups with `parity` parity symbols each.
    pub(crate) fn new(parity: u16) -> Self {
        Self {
            parity,
            groups: BTreeMap::new(),
            queue: VecDeque::new(),
            decided: 0,
        }
    }

    /// Records `node`'s NAK entry for a group of `k_g` blocks; it is decided at `due` (or
    /// earlier, with the others). A newer request from the same node replaces its older one.
    /// `settled`: no other receiver's NAK for the group is still to come (see [`Sched`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn request(
        &mut self,
        node: u64,
        seen: u64,
        e: &NakEntry<'_>,
        k_g: u32,
        due: Instant,
        settled: bool,
    ) {
        if k_g == 0 || e.need == 0 {
            return;
        }
        let g = self.groups.entry((e.stream, e.group)).or_default();
        g.k_g = k_g;
        let mut map =
            e.missing[..e.missing.len().min(MAX_MAP).min(k_g.div_ceil(8) as usize)].to_vec();
        while map.last() == Some(&0) {
            map.pop();
        }
        g.requests.insert(
            node,
            Request {
                need: e.need.min(k_g),
                map,
                seen,
                settled,
            },
        );
        g.due = Some(g.due.map_or(due, |d| d.min(due)));
    }

    /// Queues `count` fresh parity symbols of a group (proactive repair), as far as it has
    /// any.
    pub(crate) fn queue_parity(&mut self, s: Stream, group: u32, k_g: u32, count: u32) {
        let parity = self.parity;
        let g = self.groups.entry((s, group)).or_default();
        g.k_g = k_g;
        for _ in 0..count {
            if g.next_parity >= parity {
                break;
            }
            let sym = Sym::Parity(g.next_parity);
            g.next_parity += 1;
            g.queued.push(sym);
            self.queue.push_back((s, group, sym));
            self.decided += 1;
        }
    }

    /// The earliest pending decision.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.groups.values().filter_map(|g| g.due).min()
    }

    /// Decides the groups whose holdoff has passed.
    pub(crate) fn decide_due(&mut self, now: Instant) {
        let due: Vec<(Stream, u32)> = self
            .groups
            .iter()
            .filter(|(_, g)| g.due.is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            self.decide(k, now);
        }
    }

    /// Decides every group with requests now.
    pub(crate) fn decide_all(&mut self, now: Instant) {
        let due: Vec<(Stream, u32)> = self
            .groups
            .iter()
            .filter(|(_, g)| g.due.is_some())
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            self.decide(k, now);
        }
    }

    fn decide(&mut self, key: (Stream, u32), now: Instant) {
        let parity = self.parity;
        let Some(g) = self.groups.get_mut(&key) else {
            return;
        };
        g.due = None;
        while g
            .log
            .front()
            .is_some_and(|(_, _, t)| now.saturating_duration_since(*t) > LOG_AGE)
        {
            g.log.pop_front();
        }
        let requests = std::mem::take(&mut g.requests);
        let k_g = g.k_g;
        // Residual need of each request, and the blocks already on their way to it.
        let mut needy: Vec<(u32, &Request, Vec<bool>)> = Vec::new();
        for r in requests.values() {
            let mut flight = vec![false; k_g as usize];
            let mut useful = 0u32;
            let on_way = g.queued.iter().copied().chain(
                g.log
                    .iter()
                    .filter(|(s, _, _)| *s > r.seen)
                    .map(|(_, y, _)| *y),
            );
            for y in on_way {
                if r.useful(y) {
                    useful += 1;
                    if let Sym::Source(i) = y {
                        if let Some(f) = flight.get_mut(i as usize) {
                            *f = true;
                        }
                    }
                }
            }
            let residual = r.need.saturating_sub(useful);
            if residual > 0 {
                needy.push((residual, r, flight));
            }
        }
        if needy.is_empty() {
            return;
        }
        // For each block, how many needy receivers miss it and do not have it on its way.
        let wants = |r: &Request, flight: &[bool], b: u32| r.lacks(b) && !flight[b as usize];
        let mut count = vec![0u32; k_g as usize];
        for (_, r, flight) in &needy {
            for b in 0..k_g {
                if wants(r, flight, b) {
                    count[b as usize] += 1;
                }
            }
        }
        // While other receivers may still NAK the group, parity serves them too; a block
        // only these miss would not.
        let settled = needy.iter().all(|(_, r, _)| r.settled);
        let mut left = needy.len() as u32;
        let mut picks = 0;
        while left > 0 && picks < 2 * k_g {
            picks += 1;
            let common = (0..k_g)
                .find(|&b| count[b as usize] == left)
                .filter(|_| settled || g.next_parity >= parity);
            let sym = match common {
                Some(b) => Sym::Source(b),
                None if g.next_parity < parity => {
                    g.next_parity += 1;
                    Sym::Parity(g.next_parity - 1)
                }
                None => match (0..k_g)
                    .filter(|&b| count[b as usize] > 0)
                    .max_by_key(|&b| (count[b as usize], std::cmp::Reverse(b)))
                {
                    Some(b) => Sym::Source(b),
                    None => break,
                },
            };
            g.queued.push(sym);
            self.queue.push_back((key.0, key.1, sym));
            self.decided += 1;
            for (residual, r, flight) in needy.iter_mut() {
                if *residual == 0 || !r.useful(sym) {
                    continue;
                }
                if let Sym::Source(b) = sym {
                    if flight[b as usize] {
                        continue;
                    }
                    flight[b as usize] = true;
                    count[b as usize] -= 1;
                }
                *residual -= 1;
                if *residual == 0 {
                    left -= 1;
                    for b in 0..k_g {
                        if wants(r, flight, b) {
                            count[b as usize] -= 1;
                        }
                    }
                }
            }
        }
    }

    /// The next symbol to send.
    pub(crate) fn pop(&mut self) -> Option<(Stream, u32, Sym)> {
        self.queue.pop_front()
    }

    /// A popped symbol could not be sent (nothing to send for it).
    pub(crate) fn dropped(&mut self, s: Stream, group: u32, sym: Sym) {
        if let Some(g) = self.groups.get_mut(&(s, group)) {
            if let Some(i) = g.queued.iter().position(|&q| q == sym) {
                g.queued.remove(i);
            }
        }
    }

    /// A popped symbol left with header sequence number `seq`.
    pub(crate) fn sent(&mut self, s: Stream, group: u32, sym: Sym, seq: u64, now: Instant) {
        if let Some(g) = self.groups.get_mut(&(s, group)) {
            if let Some(i) = g.queued.iter().position(|&q| q == sym) {
                g.queued.remove(i);
            }
            g.log.push_back((seq, sym, now));
            let cap = 4 * g.k_g.max(64) as usize;
            while g.log.len() > cap {
                g.log.pop_front();
            }
        }
    }

    /// Symbols queued and not yet sent.
    pub(crate) fn backlog(&self) -> usize {
        self.queue.len()
    }

    /// Drops everything queued and pending (the transfer moves on).
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        for g in self.groups.values_mut() {
            g.queued.clear();
            g.requests.clear();
            g.due = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(group: u32, need: u32, missing: &[u8]) -> NakEntry<'_> {
        NakEntry {
            stream: Stream::Payload,
            group,
            need,
            missing,
        }
    }

    fn drain(s: &mut Sched, seq: &mut u64, now: Instant) -> Vec<Sym> {
        let mut out = Vec::new();
        while let Some((st, g, y)) = s.pop() {
            *seq += 1;
            s.sent(st, g, y, *seq, now);
            out.push(y);
        }
        out
    }

    #[test]
    fn different_losses_at_different_receivers_get_shared_parity() {
        let t = Instant::now();
        let mut s = Sched::new(4);
        // A misses blocks 0 and 3, B misses 5, C misses 1 and 6.
        s.request(1, 10, &entry(0, 2, &[0b0000_1001]), 8, t, true);
        s.request(2, 10, &entry(0, 1, &[0b0010_0000]), 8, t, true);
        s.request(3, 10, &entry(0, 2, &[0b0100_0010]), 8, t, true);
        assert_eq!(s.next_due(), Some(t));
        s.decide_due(t);
        let mut seq = 10;
        assert_eq!(
            drain(&mut s, &mut seq, t),
            vec![Sym::Parity(0), Sym::Parity(1)]
        );
    }

    #[test]
    fn one_receiver_gets_its_named_blocks_not_parity() {
        let t = Instant::now();
        let mut s = Sched::new(4);
        s.request(
            1,
            10,
            &entry(2, 3, &[0b1000_0000, 0b0000_0011]),
            16,
            t,
            true,
        );
        s.decide_all(t);
        let mut seq = 10;
        assert_eq!(
            drain(&mut s, &mut seq, t),
            vec![Sym::Source(7), Sym::Source(8), Sym::Source(9)]
        );
    }

    #[test]
    fn what_is_already_on_its_way_is_not_sent_again() {
        let t = Instant::now();
        let mut s = Sched::new(4);
        let mut seq = 100;
        s.request(1, 100, &entry(0, 2, &[0b11]), 8, t, true);
        s.request(2, 100, &entry(0, 1, &[0b100]), 8, t, true);
        s.decide_all(t);
        // One parity symbol for both, then a block only receiver 1 still lacks.
        assert_eq!(
            drain(&mut s, &mut seq, t),
            vec![Sym::Parity(0), Sym::Source(0)]
        );
        // A NAK written before those left (seen 100) asks again: nothing more goes out.
        s.request(1, 100, &entry(0, 2, &[0b11]), 8, t, true);
        s.decide_all(t);
        assert!(drain(&mut s, &mut seq, t).is_empty());
        // Written after them (seen 102), still needing one: only receiver 1 needs it, and its
        // blocks are named: that source block.
        s.request(1, 102, &entry(0, 1, &[0b10]), 8, t, true);
        s.decide_all(t);
        assert_eq!(drain(&mut s, &mut seq, t), vec![Sym::Source(1)]);
    }

    #[test]
    fn during_the_pass_parity_goes_first_so_later_nakers_share_it() {
        let t = Instant::now();
        let mut s = Sched::new(4);
        let mut seq = 0;
        // Only receiver 1 has NAKed so far, and others may follow: parity, not its blocks.
        s.request(1, 0, &entry(0, 1, &[0b1]), 8, t, false);
        s.decide_all(t);
        assert_eq!(drain(&mut s, &mut seq, t), vec![Sym::Parity(0)]);
        // Receiver 2 wrote its NAK before that parity left: it is already served.
        s.request(2, 0, &entry(0, 1, &[0b10]), 8, t, false);
        s.decide_all(t);
        assert!(drain(&mut s, &mut seq, t).is_empty());
    }

    #[test]
    fn used_up_parity_falls_back_to_the_named_blocks_only() {
        let t = Instant::now();
        let mut s = Sched::new(2);
        let mut seq = 0;
        // Two receivers lost most of an 8-block group, differently.
        s.request(1, 0, &entry(0, 6, &[0b0011_1111]), 8, t, true);
        s.request(2, 0, &entry(0, 5, &[0b1111_1000]), 8, t, true);
        s.decide_all(t);
        let out = drain(&mut s, &mut seq, t);
        // Blocks 3, 4, 5 are missed by both (as good as parity), then parity 0, 1, then the
        // blocks each one still lacks: 6 symbols for a need of max(6, 5), never the group.
        assert_eq!(out.len(), 6, "{out:?}");
        assert!(out.contains(&Sym::Parity(0)) && out.contains(&Sym::Parity(1)));
        for b in [3, 4, 5] {
            assert!(out.contains(&Sym::Source(b)), "{out:?}");
        }
        // Each receiver gets at least its need of useful symbols.
        let r1 = out.iter().filter(|y| match y {
            Sym::Parity(_) => true,
            Sym::Source(b) => *b < 6,
        });
        assert!(r1.count() >= 6);
        let r2 = out.iter().filter(|y| match y {
            Sym::Parity(_) => true,
            Sym::Source(b) => *b >= 3,
        });
        assert!(r2.count() >= 5);
        // A hostile need beyond the group is capped.
        s.request(3, seq, &entry(0, 1_000_000, &[]), 8, t, true);
        s.decide_all(t);
        assert!(drain(&mut s, &mut seq, t).len() <= 8);
    }
}
