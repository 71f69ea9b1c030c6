//! The engine's half of repair during the pass and of rate control: what receivers send
//! their senders while a push runs, and what a sender does with it.
//!
//! Receiver side: every datagram from a sender it receives from goes through that sender's
//! [`Meter`]; after each datagram (and at its timer) an inbound transfer sends the NAK
//! entries that are due (groups it can no longer complete from what is still to come) and,
//! when due, a FEEDBACK. Sender side: PACE goes out with the data (`send.rs`); FEEDBACK and
//! the echo in every NAK feed [`super::rate::RateControl`], whose rate paces the engine's
//! output; targets that cannot keep the floor leave the group's pace. No I/O, no clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::meter::Meter;
use super::rate::Constraint;
use super::recv::{nak_parts, NakSpread, Want};
use super::storage::{Storage, XferKey};
use super::wire::{self, Feedback, Msg, Pace};
use super::{Dest, Engine};

/// Most NAK entries sent at once during a pass.
const MAX_ENTRIES: usize = 512;
/// Groups whose echoed need a sender remembers per push (beyond, the oldest are forgotten).
const MAX_ECHOED: usize = 4096;
/// How long after its last datagram an overflow is blamed on a sender.
const OVERFLOW_BLAME: Duration = Duration::from_millis(50);

impl<S: Storage> Engine<S> {
    /// Counts a datagram from `node` for the meter of that sender, if it is one.
    pub(super) fn meter_datagram(&mut self, now: Instant, node: u64, seq: u64, len: usize) {
        if let Some(m) = self.meters.get_mut(&node) {
            m.on_datagram(now, seq, len);
        }
    }

    /// A meter for a sender this node now receives from.
    pub(super) fn meter_for(&mut self, node: u64) {
        self.meters.entry(node).or_insert_with(Meter::new);
    }

    /// Forgets meters of senders this node no longer receives from.
    pub(super) fn prune_meters(&mut self) {
        let inbound = &self.inbound;
        self.meters
            .retain(|node, _| inbound.keys().any(|k| k.origin == *node));
    }

    /// Input: the kernel dropped `count` datagrams addressed to this node because its receive
    /// buffer was full (`SO_RXQ_OVFL`). Whose they were is unknown: every sender heard
    /// recently is told, at once.
    pub fn handle_rx_overflow(&mut self, now: Instant, count: u64) {
        self.stats.rx_overflows += count;
        let mut hit = Vec::new();
        for (node, m) in self.meters.iter_mut() {
            if m.heard_within(now, OVERFLOW_BLAME) {
                m.on_overflow(count);
                hit.push(*node);
            }
        }
        let keys: Vec<XferKey> = self
            .inbound
            .keys()
            .filter(|k| hit.contains(&k.origin))
            .copied()
            .collect();
        for k in keys {
            self.inbound_feedback(now, k);
        }
    }

    /// A PACE from `node`.
    pub(super) fn on_pace(&mut self, now: Instant, node: u64, p: &Pace) -> bool {
        let key = XferKey {
            origin: node,
            xfer: p.xfer,
        };
        let Some(ib) = self.inbound.get_mut(&key) else {
            return self.records.contains(&key);
        };
        ib.last_heard = now;
        let me = self.cfg.node_id;
        if let Some(m) = self.meters.get_mut(&node) {
            m.on_pace(now, p, me);
        }
        self.inbound_feedback(now, key);
        true
    }

    /// A FEEDBACK from `node`, for one of this node's pushes.
    pub(super) fn on_feedback(&mut self, now: Instant, node: u64, f: &Feedback) -> bool {
        match self.outbound.get(&f.xfer) {
            Some(ob) if ob.is_target(node) => {}
            _ => return false,
        }
        // The round trip ends when the kernel received the feedback, not when this loop
        // got to it.
        self.rate.on_feedback(self.rx_time, node, f);
        self.update_rate(now);
        true
    }

    /// The echo in a NAK from `node` (a round-trip time sample).
    pub(super) fn on_nak_echo(&mut self, _now: Instant, node: u64, seen: u64, hold_us: u32) {
        self.rate.on_echo(self.rx_time, node, seen, hold_us);
    }

    /// Sender: tells the group the needs a NAK during the pass named, where they exceed what
    /// was echoed for the group before (the worst report so far) or that echo is older than
    /// the receivers' re-NAK wait (a new cycle: the members that lost some of the repair
    /// ask again, and its echo suppresses them as the first one did), so that receivers
    /// that need no more than that cancel their NAK timers (see `NakSpread`). Only for
    /// pushes to more than two targets, and only NAKs of targets in the pace (the others'
    /// are ignored).
    pub(super) fn echo_naks(&mut self, now: Instant, xfer: u32, node: u64, entries: &[u8]) {
        let room = self.max_dgram() - wire::HEADER_LEN - 21;
        // The least re-NAK wait of a receiver (`inbound_feedback`): an echo older than
        // that has lost its hold on the receivers.
        let rearm = self.rate.rtt() * 2 + Duration::from_millis(2);
        let Some(ob) = self.outbound.get_mut(&xfer) else {
            return;
        };
        if ob.targets().len() <= 2 || !ob.in_pass() {
            return;
        }
        if !ob.targets().iter().any(|t| t.node == node && t.in_pace()) {
            return;
        }
        let mut out = Vec::new();
        for e in wire::naks(entries).filter(|e| e.stream != wire::Stream::Manifest) {
            let seen = ob.echoed.entry((e.stream, e.group)).or_insert((0, now));
            if e.need > seen.0 || now >= seen.1 + rearm {
                *seen = (e.need, now);
                out.push(Want::echo(e.stream, e.group, e.need));
            }
        }
        if ob.echoed.len() > MAX_ECHOED {
            // Old groups are long repaired: forget the first ones.
            let cut = ob.echoed.len() - MAX_ECHOED;
            let keys: Vec<_> = ob.echoed.keys().take(cut).copied().collect();
            for k in keys {
                ob.echoed.remove(&k);
            }
        }
        if out.is_empty() {
            return;
        }
        for part in nak_parts(&out, room) {
            self.queue(
                Dest::Group,
                &Msg::Nak {
                    xfer,
                    round: 0,
                    flags: wire::NAK_ECHO,
                    seen: 0,
                    hold_us: 0,
                    entries: &part,
                },
            );
        }
    }

    /// Receiver: the sender's echo of the worst needs of groups of transfer `xfer` (see
    /// [`Self::echo_naks`]).
    pub(super) fn on_echo(&mut self, now: Instant, node: u64, xfer: u32, entries: &[u8]) -> bool {
        let key = XferKey { origin: node, xfer };
        let Some(ib) = self.inbound.get_mut(&key) else {
            return self.records.contains(&key);
        };
        ib.last_heard = now;
        for e in wire::naks(entries) {
            ib.on_echo(now, e.stream, e.group, e.need);
        }
        true
    }

    /// How long the sender waits for the other receivers' NAKs of a group before deciding
    /// its repair, and after how long from its first pass every receiver's NAK of a group is
    /// in (receivers NAK at most once per feedback interval).
    pub(super) fn repair_timing(&self) -> (Duration, Duration) {
        let interval = self.rate.interval();
        let rtt = self.rate.rtt();
        (interval / 2 + rtt, interval * 2 + rtt * 2)
    }

    /// Recomputes the send rate from the targets that constrain it; targets below the floor
    /// leave the pace.
    pub(super) fn update_rate(&mut self, now: Instant) {
        let mut who: BTreeMap<u64, Constraint> = BTreeMap::new();
        for ob in self.outbound.values() {
            let pass = ob.in_pass();
            for t in ob.targets().iter().filter(|t| t.needs_data()) {
                let c = match (pass, t.in_pace()) {
                    (true, true) => Constraint::Paced,
                    (true, false) => Constraint::None,
                    (false, _) => Constraint::Served,
                };
                let e = who.entry(t.node).or_insert(c);
                if c != Constraint::None && *e == Constraint::None {
                    *e = c;
                }
            }
        }
        let below = self
            .rate
            .update(now, |n| who.get(&n).copied().unwrap_or(Constraint::None));
        if below.is_empty() {
            return;
        }
        let floor = self.cfg.min_rate.unwrap_or(0);
        for node in below {
            let got = self.rate.receiver(node).map_or(0.0, |r| r.recv_rate);
            let why = format!(
                "it receives {}/s, below --min-rate {}/s",
                human(got as u64),
                human(floor)
            );
            for ob in self.outbound.values_mut() {
                ob.leave_pace(node, why.clone());
            }
        }
        self.update_rate(now);
    }

    /// Sends what inbound transfer `key` owes its sender now: NAKs of groups it can no longer
    /// complete from what is still to come, and rate feedback when due.
    pub(super) fn inbound_feedback(&mut self, now: Instant, key: XferKey) {
        let me = self.cfg.node_id;
        let room = self.max_dgram() - wire::HEADER_LEN - 21;
        let Some(sender) = self.inbound.get(&key).map(|ib| ib.sender) else {
            return;
        };
        let dest = self.reply_addr(key.origin, sender);
        let group = self.group_size();
        let Some(m) = self.meters.get_mut(&key.origin) else {
            return;
        };
        let Some(ib) = self.inbound.get_mut(&key) else {
            return;
        };
        let (seen, hold_us) = m.echo(now);
        let echo_at = m.echo_at();
        // NAKs of several groups share a datagram: at most one per feedback interval.
        let gap = m.interval();
        let backlog = m.pace().map_or(Duration::ZERO, |p| {
            Duration::from_micros(u64::from(p.backlog_us))
        });
        let renak = m.rtt() * 2 + backlog.min(Duration::from_secs(1)) + Duration::from_millis(2);
        // The repair a NAK asks for comes back after the sender's holdoff (half an
        // interval + the RTT), its queue and the round trip: members wait up to six times
        // that at random, so that one NAK's repair cancels the others' (see `NakSpread`).
        let spread = NakSpread {
            window: (gap / 2 + m.rtt() * 2) * 6 + backlog.min(Duration::from_secs(1)),
            members: group,
        };
        let wants = ib.due_naks(now, gap, renak, spread, MAX_ENTRIES);
        // A member that has everything it needs has no rate to ask for (after the pass,
        // that is nearly all of a large group).
        let fb = (!ib.complete() && m.due(now, me, group)).then(|| m.take(now, key.xfer, me));
        if !wants.is_empty() {
            for part in nak_parts(&wants, room) {
                self.queue_reply_echo(
                    dest,
                    &Msg::Nak {
                        xfer: key.xfer,
                        round: 0,
                        flags: 0,
                        seen,
                        hold_us,
                        entries: &part,
                    },
                    echo_at,
                );
            }
        }
        if let Some(f) = fb {
            self.queue_reply_echo(dest, &Msg::Feedback(f), echo_at);
        }
    }

    /// Members of the cluster as this node knows them (itself included): how many may
    /// answer the same thing at once, for the randomized feedback timers.
    pub(super) fn group_size(&self) -> usize {
        self.members.direct_count() + 1
    }

    /// Inbound transfers whose NAK timer has passed.
    pub(super) fn inbound_timers(&mut self, now: Instant) {
        let due: Vec<XferKey> = self
            .inbound
            .iter()
            .filter(|(_, ib)| ib.nak_timer().is_some_and(|t| t <= now))
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            self.inbound_feedback(now, k);
        }
    }

    /// What the rate control tells receivers in PACE messages.
    pub(super) fn pace_info(&self) -> super::send::PaceInfo {
        super::send::PaceInfo {
            rate: self.rate.rate(),
            rtt: self.rate.rtt(),
            interval: self.rate.interval(),
            clr: self.rate.clr().unwrap_or(0),
            // Receivers forgive as many one-datagram gaps: our unicast datagrams and the
            // numbers the driver's handshakes took.
            uni: (self.stats.sent_unicast + self.seq_skipped) as u32,
            echo: None,
            data_limited: self.rate.limited_now(self.clock),
        }
    }
}

/// Bytes per second in rsync's units (KiB, MiB, GiB), one decimal.
fn human(b: u64) -> String {
    let b = b as f64;
    if b >= f64::from(1 << 30) {
        format!("{:.1}G", b / f64::from(1 << 30))
    } else if b >= f64::from(1 << 20) {
        format!("{:.1}M", b / f64::from(1 << 20))
    } else {
        format!("{:.1}K", b / 1024.0)
    }
}
