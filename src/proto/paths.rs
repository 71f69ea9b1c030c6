//! Per-member path: whether this node's multicast reaches a member, or the member must get
//! unicast copies of everything the engine sends to the group.
//!
//! Every member marks, in the known-member list of its heartbeats, the members whose
//! datagrams it heard *through the group* within the member expiry ([`KNOWN_GROUP`], a bit of
//! [`wire::Known::flags`](super::wire::Known) that older nodes mask away). A member that has
//! listed us with that bit within the expiry, or in one of its last three heartbeats (three full
//! turns of its list when the list needs several heartbeats to name everyone), hears our
//! multicast: its path is [`Path::Multicast`]. A member heard directly that names us without
//! the bit, or whose last three heartbeats (turns) did not name us, and not within the expiry
//! either, gets [`Path::Unicast`] (counting heartbeats rather than time keeps a member whose
//! heartbeats are late during a busy push on multicast): the driver
//! then sends it a unicast copy of every group datagram, so it takes part in pushes with the
//! same engine, repair and pacing, while the others stay on multicast. When the member hears
//! the group again it says so and moves back. The known list rotates from one heartbeat to the
//! next, so in a cluster too big for one list every member is still named within a few
//! heartbeats. No I/O and no clock: `now` is passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::members::MemberInfo;
use super::storage::Storage;
use super::Engine;

/// Shortest wait, after the first announce a target would answer, before it is probed by
/// unicast copies (times four its round-trip time when one was measured, if longer).
const PROBE_WAIT: Duration = Duration::from_millis(100);

/// Known-entry flag: the heartbeat's sender heard this member through the multicast group
/// within its member expiry.
pub const KNOWN_GROUP: u8 = 0x80;

/// How group datagrams reach one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// By multicast.
    Multicast,
    /// By unicast copies, for this reason.
    Unicast(Why),
}

/// Why a member is on the unicast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// It does not say that it hears our multicast.
    NoMulticastFromUs,
    /// This node runs without multicast (`--peer`): everything is unicast.
    Peers,
    /// It did not answer a push's announces through the group (probed by unicast copies
    /// until its heartbeats say it hears our multicast).
    NoAnswerToMulticast,
}

impl Path {
    /// `multicast` or `unicast`.
    pub fn word(&self) -> &'static str {
        match self {
            Path::Multicast => "multicast",
            Path::Unicast(_) => "unicast",
        }
    }

    /// Why, in a few words without spaces (empty for multicast).
    pub fn why(&self) -> &'static str {
        match self {
            Path::Multicast => "",
            Path::Unicast(Why::NoMulticastFromUs) => "does-not-hear-our-multicast",
            Path::Unicast(Why::Peers) => "peer-list-no-multicast",
            Path::Unicast(Why::NoAnswerToMulticast) => "no-answer-to-our-multicast",
        }
    }
}

/// What one member told us and we heard of it.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// When one of its datagrams last came to us through the group.
    group_from: Option<Instant>,
    /// When it last listed us with [`KNOWN_GROUP`].
    hears_us: Option<Instant>,
    /// Its heartbeats since then that did not.
    misses: u32,
    /// Misses that put it on the unicast path: [`MISSES`] full turns of its rotating list.
    need: u32,
    /// Heartbeat loss: the sequence number of its last heartbeat (duplicates and replays are
    /// not counted), the window being counted (start, heartbeats in it), and the share lost
    /// in the last complete window.
    beat_seq: u64,
    window: Option<(Instant, u32)>,
    loss: Option<f64>,
    /// Since when it gets unicast copies because it did not answer a push's announces
    /// through the group ([`Paths::probe`]); cleared when it names us with [`KNOWN_GROUP`].
    probed: Option<Instant>,
}

/// Heartbeat intervals a loss window spans.
const LOSS_WINDOW: u32 = 10;

/// Heartbeats in a row that must leave us out before a member goes to the unicast path (times
/// the turns its list needs to name everyone).
const MISSES: u32 = 3;

/// What a member's heartbeat says of us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Named {
    /// Named with [`KNOWN_GROUP`]: it hears our multicast.
    WithBit,
    /// Named without it: it heard us, not through the group.
    WithoutBit,
    /// Not named (its list may not have room for everyone).
    Not,
}

/// Path state of every member (bounded by the member table: entries of members that left are
/// dropped by [`Paths::forget`] as they leave).
#[derive(Debug, Default)]
pub(crate) struct Paths {
    seen: HashMap<u64, Seen>,
    /// Heartbeats sent, to rotate the known list.
    pub(crate) rotation: usize,
}

impl Paths {
    /// A heartbeat from `node` (heard directly; `to_group`: through the group), and what its
    /// known list says of us. `turns`: heartbeats its rotating list needs to name every member
    /// (1 when it fits one datagram): not being named counts as a miss, and [`MISSES`] full
    /// turns of misses put it on the unicast path, so a big cluster whose lists do not fit one
    /// datagram does not put members there falsely.
    pub(crate) fn heartbeat(
        &mut self,
        now: Instant,
        node: u64,
        to_group: bool,
        named: Named,
        turns: u32,
    ) {
        let s = self.seen.entry(node).or_default();
        s.need = MISSES.saturating_mul(turns.max(1));
        if to_group {
            s.group_from = Some(now);
        }
        match named {
            Named::WithBit => {
                s.hears_us = Some(now);
                s.misses = 0;
                s.probed = None;
            }
            // Named without the bit: it heard us (a unicast copy) but not through the group
            // lately; as good as a miss.
            Named::WithoutBit | Named::Not => s.misses = s.misses.saturating_add(1),
        }
    }

    /// Counts a heartbeat of `node` (header sequence number `seq`, announced interval
    /// `interval`) for its loss: every [`LOSS_WINDOW`] intervals the share of the heartbeats
    /// due that did not come is kept. A heartbeat heard twice (group and unicast copy) counts
    /// once; early heartbeats (answers to a join) may make up for lost ones.
    pub(crate) fn count_beat(&mut self, now: Instant, node: u64, seq: u64, interval: Duration) {
        let Some(s) = self.seen.get_mut(&node) else {
            return;
        };
        if seq <= s.beat_seq || interval.is_zero() {
            return;
        }
        s.beat_seq = seq;
        let (start, count) = s.window.get_or_insert((now, 0));
        let span = now.saturating_duration_since(*start);
        if span >= interval * LOSS_WINDOW {
            let due = (span.as_secs_f64() / interval.as_secs_f64())
                .round()
                .max(1.0);
            s.loss = Some((1.0 - f64::from(*count) / due).clamp(0.0, 1.0));
            s.window = Some((now, 1));
        } else {
            *count += 1;
        }
    }

    /// A datagram of `node` came through the group (a copy of one already handled).
    pub(crate) fn group_copy(&mut self, now: Instant, node: u64) {
        if let Some(s) = self.seen.get_mut(&node) {
            s.group_from = Some(now);
        }
    }

    /// Share of `node`'s heartbeats lost in the last complete window.
    pub(crate) fn heartbeat_loss(&self, node: u64) -> Option<f64> {
        self.seen.get(&node).and_then(|s| s.loss)
    }

    /// Whether `node`'s datagrams came through the group within `expiry` (the bit we set for
    /// it in our heartbeats).
    pub(crate) fn hear_group(&self, now: Instant, node: u64, expiry: Duration) -> bool {
        self.seen
            .get(&node)
            .and_then(|s| s.group_from)
            .is_some_and(|t| now.saturating_duration_since(t) < expiry)
    }

    /// `node` did not answer a push's announces through the group: it gets unicast copies
    /// (whether heard directly or known second hand) until a heartbeat of its names us with
    /// [`KNOWN_GROUP`], which a member that hears our multicast does within one heartbeat
    /// (so a member probed falsely, its answers lost, moves back at once). Returns whether
    /// it was not probed before.
    pub(crate) fn probe(&mut self, now: Instant, node: u64) -> bool {
        let s = self.seen.entry(node).or_default();
        let new = s.probed.is_none();
        s.probed.get_or_insert(now);
        new
    }

    /// The path to `m`, given the member expiry.
    pub(crate) fn path(&self, now: Instant, m: &MemberInfo, expiry: Duration) -> Path {
        if self.seen.get(&m.node).is_some_and(|s| s.probed.is_some()) {
            return Path::Unicast(Why::NoAnswerToMulticast);
        }
        if !m.direct {
            // Known only second hand: nothing to judge by; it is reached as the others are.
            return Path::Multicast;
        }
        let s = self.seen.get(&m.node).copied().unwrap_or_default();
        let recent = s
            .hears_us
            .is_some_and(|t| now.saturating_duration_since(t) < expiry);
        if recent || s.misses < s.need.max(MISSES) {
            return Path::Multicast;
        }
        Path::Unicast(Why::NoMulticastFromUs)
    }

    /// Forgets a member that left the table.
    pub(crate) fn forget(&mut self, node: u64) {
        self.seen.remove(&node);
    }

    /// Forgets members no longer in the table.
    #[cfg(test)]
    pub(crate) fn retain(&mut self, mut live: impl FnMut(u64) -> bool) {
        self.seen.retain(|n, _| live(*n));
    }
}

impl<S: Storage> Engine<S> {
    /// Per-transfer probing: a target of one of our pushes that has not answered
    /// [`SILENT_ANNOUNCES`](super::send::SILENT_ANNOUNCES) announces sent through the group
    /// (nor anything else of that push), though it is a member on the multicast path, is put
    /// on the unicast path ([`Paths::probe`]): the driver then sends it unicast copies of
    /// everything, the announces included. A member that does not hear the group (a fresh
    /// front end has not seen three of its heartbeats yet, or knows it only second hand)
    /// thus takes part in the push after a few hundred milliseconds, not after the member
    /// timeout.
    pub(super) fn probe_silent(&mut self, now: Instant) {
        let expiry = self.member_expiry();
        for ob in self.outbound.values_mut() {
            for (node, since) in ob.silent_targets() {
                let wait = self
                    .rate
                    .receiver(node)
                    .and_then(|r| r.srtt)
                    .map_or(PROBE_WAIT, |rtt| PROBE_WAIT.max(rtt * 4));
                if now.saturating_duration_since(since) < wait {
                    continue;
                }
                let Some(m) = self.members.get(node) else {
                    continue;
                };
                if self.paths.path(now, m, expiry) != Path::Multicast {
                    continue;
                }
                let name = m.name.clone();
                if self.paths.probe(now, node) {
                    ob.announce_soon(now, &self.cfg);
                    ob.note(format!(
                        "{name}: no answer to {} announces through the group: unicast copies",
                        super::send::SILENT_ANNOUNCES
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn member(node: u64, since: Instant) -> MemberInfo {
        MemberInfo {
            node,
            name: "m".into(),
            addr: SocketAddr::from(([198, 18, 0, 1], 5000)),
            version: String::new(),
            proto: (2, 2),
            flags: 0,
            info: Vec::new(),
            last_seen: since,
            since,
            direct: true,
        }
    }

    const HB: Duration = Duration::from_millis(200);
    const EXPIRY: Duration = Duration::from_millis(1500);

    #[test]
    fn a_member_that_never_says_it_hears_us_goes_unicast_after_three_heartbeats() {
        let t0 = Instant::now();
        let m = member(7, t0);
        let mut p = Paths::default();
        for k in 1..=2 {
            p.heartbeat(t0 + HB * k, 7, true, Named::Not, 1);
            assert_eq!(p.path(t0 + HB * k, &m, EXPIRY), Path::Multicast, "grace");
        }
        let later = t0 + HB * 3;
        p.heartbeat(later, 7, true, Named::Not, 1);
        assert_eq!(
            p.path(later, &m, EXPIRY),
            Path::Unicast(Why::NoMulticastFromUs)
        );
        // It hears the group again: back to multicast at once.
        p.heartbeat(later, 7, true, Named::WithBit, 1);
        assert_eq!(p.path(later, &m, EXPIRY), Path::Multicast);
        // Late heartbeats alone do not move it: three that leave us out, past the expiry.
        let late = later + EXPIRY * 2;
        assert_eq!(p.path(late, &m, EXPIRY), Path::Multicast);
        for _ in 0..3 {
            p.heartbeat(late, 7, true, Named::Not, 1);
        }
        assert_eq!(
            p.path(late, &m, EXPIRY),
            Path::Unicast(Why::NoMulticastFromUs)
        );
    }

    #[test]
    fn group_hearing_is_what_we_report_and_members_that_left_are_forgotten() {
        let t0 = Instant::now();
        let mut p = Paths::default();
        p.heartbeat(t0, 1, false, Named::Not, 1);
        assert!(!p.hear_group(t0, 1, EXPIRY), "unicast only");
        p.heartbeat(t0, 1, true, Named::Not, 1);
        assert!(p.hear_group(t0, 1, EXPIRY));
        assert!(!p.hear_group(t0 + EXPIRY, 1, EXPIRY));
        p.heartbeat(t0, 2, true, Named::Not, 1);
        p.retain(|n| n == 2);
        assert!(!p.hear_group(t0, 1, EXPIRY) && p.hear_group(t0, 2, EXPIRY));
    }

    #[test]
    fn heartbeat_loss_is_the_share_missing_in_a_window_and_duplicates_count_once() {
        let t0 = Instant::now();
        let mut p = Paths::default();
        let mut seq = 0;
        p.heartbeat(t0, 5, true, Named::WithBit, 1);
        // 20 intervals: every heartbeat twice (group and unicast), every fourth lost.
        for k in 0..=20u32 {
            seq += 3;
            if k % 4 == 3 {
                continue;
            }
            let at = t0 + HB * k;
            p.count_beat(at, 5, seq, HB);
            p.count_beat(at, 5, seq, HB);
        }
        let loss = p.heartbeat_loss(5).unwrap();
        assert!((0.2..=0.31).contains(&loss), "{loss}");
        assert_eq!(p.heartbeat_loss(6), None);
        // None lost: 0.
        let mut q = Paths::default();
        q.heartbeat(t0, 5, true, Named::WithBit, 1);
        for k in 0..=10u32 {
            q.count_beat(t0 + HB * k, 5, u64::from(k) + 1, HB);
        }
        assert_eq!(q.heartbeat_loss(5), Some(0.0));
    }

    #[test]
    fn second_hand_members_stay_multicast() {
        let t0 = Instant::now();
        let mut m = member(9, t0);
        m.direct = false;
        let p = Paths::default();
        assert_eq!(p.path(t0 + EXPIRY * 10, &m, EXPIRY), Path::Multicast);
    }

    #[test]
    fn big_lists_get_full_turns_before_a_member_goes_unicast() {
        let t0 = Instant::now();
        let m = member(7, t0);
        // A list that needs 5 heartbeats to name everyone: 14 misses are no evidence yet.
        let mut q = Paths::default();
        q.heartbeat(t0, 7, true, Named::WithBit, 5);
        let late = t0 + EXPIRY * 2;
        for _ in 0..14 {
            q.heartbeat(late, 7, true, Named::Not, 5);
        }
        assert_eq!(q.path(late, &m, EXPIRY), Path::Multicast);
        q.heartbeat(late, 7, true, Named::Not, 5);
        assert_eq!(
            q.path(late, &m, EXPIRY),
            Path::Unicast(Why::NoMulticastFromUs)
        );
    }

    #[test]
    fn a_probed_member_is_unicast_even_second_hand_until_it_names_us_with_the_bit() {
        let t0 = Instant::now();
        let mut m = member(4, t0);
        m.direct = false;
        let mut p = Paths::default();
        assert!(p.probe(t0, 4));
        assert!(!p.probe(t0, 4), "probed once");
        let uni = Path::Unicast(Why::NoAnswerToMulticast);
        assert_eq!(p.path(t0, &m, EXPIRY), uni);
        m.direct = true;
        // Heard recently through the group, or named without the bit: still probed.
        p.heartbeat(t0 + HB, 4, true, Named::WithoutBit, 1);
        assert_eq!(p.path(t0 + HB, &m, EXPIRY), uni);
        // It says it hears our multicast: back at once.
        p.heartbeat(t0 + HB * 2, 4, true, Named::WithBit, 1);
        assert_eq!(p.path(t0 + HB * 2, &m, EXPIRY), Path::Multicast);
        assert_eq!(uni.why(), "no-answer-to-our-multicast");
    }
}
