//! What a receiver measures of one sender's traffic for rate control: its loss event rate
//! (TFRC's loss intervals, RFC 5348 section 5), its receive rate, its receive-buffer
//! overflows, and the echo that gives the sender a round-trip time. It also decides when a
//! FEEDBACK is due (the receiver's half of TFMCC's feedback rules).
//!
//! Contract: [`Meter::on_datagram`] for every datagram from the sender (its header sequence
//! number), [`Meter::on_pace`] for its PACE messages, [`Meter::on_overflow`] when the socket
//! dropped datagrams (whose, the kernel does not say); [`Meter::due`] and [`Meter::take`]
//! for the feedback. Time is passed in.
//!
//! Losses are the gaps in the sender's sequence numbers, declared once [`REORDER`] later ones
//! have arrived (so reordering is not loss). Losses within one round-trip time of the first
//! of them are one loss event, and a gap discovered at once (a stretch of deafness, a pause)
//! is one event whatever its length: an outage is not congestion, and what it cost is repaired
//! by NAKs, not by slowing the group. The sender's unicast datagrams take sequence numbers
//! the group never sees; PACE says how many it sent, and as many isolated one-datagram gaps
//! are forgiven. Losses are counted into events at each PACE (or after [`SETTLE`]), so the
//! forgiveness can apply.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::wire::{Feedback, Pace, FB_CLR};

/// Later datagrams that must arrive before a missing one counts as lost.
pub const REORDER: u64 = 48;
/// Sequence numbers tracked behind the newest (a larger jump counts its excess as one loss).
const WINDOW: u64 = 4096;
/// Loss intervals kept (RFC 5348: 8).
const INTERVALS: usize = 8;
/// Weights of the loss intervals, newest first.
const WEIGHTS: [f64; INTERVALS] = [1.0, 1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2];
/// Losses wait at most this long for a PACE before counting.
pub const SETTLE: Duration = Duration::from_millis(10);
/// Most pending losses held for forgiveness.
const MAX_PENDING: usize = 1024;
/// Feedback intervals after which a receiver the sender does not follow reports again.
pub const REPEAT_ROUNDS: u32 = 16;
/// Feedback intervals over which a report's random wait is spread (see [`Meter::due`]).
pub const TIMER_ROUNDS: u32 = 3;
/// Groups smaller than this report without a random wait, and every receiver sends a
/// keepalive every [`REPEAT_ROUNDS`] intervals (their reports are few anyway).
pub const SMALL_GROUP: usize = 32;

/// A loss waiting to be counted: the first lost sequence number, how many in a row, when
/// it was found.
#[derive(Clone, Copy, Debug)]
struct Gap {
    seq: u64,
    len: u64,
    at: Instant,
}

/// One sender's traffic as this receiver sees it.
#[derive(Debug)]
pub(crate) struct Meter {
    /// Highest sequence number received, and when.
    hi: Option<(u64, Instant)>,
    /// Sequence numbers below this are settled (received or counted lost).
    settled: u64,
    /// Received sequence numbers in `settled..settled + WINDOW` (bit `seq % WINDOW`).
    got: Vec<u64>,
    pending: VecDeque<Gap>,
    /// Start of the current loss event (sequence number, time).
    event: Option<(u64, Instant)>,
    /// First sequence number seen (the first interval starts there).
    first: u64,
    /// Closed loss intervals, newest first.
    intervals: VecDeque<u64>,
    p: f64,
    /// Unicast datagrams the sender announced, and credit left to forgive.
    uni: Option<u32>,
    credit: u64,
    /// Bytes received since `rate_from`.
    bytes: u64,
    rate_from: Option<Instant>,
    last_rx: Option<Instant>,
    overflows: u32,
    last_feedback: Option<Instant>,
    /// This receiver's own rate (`own_rate`) when it last reported.
    reported: Option<f64>,
    /// Last PACE: rate, rtt, interval, clr.
    pace: Option<Pace>,
    /// Origin of this receiver's feedback timestamps.
    epoch: Option<Instant>,
    /// This receiver's own round-trip time to the sender (from echoed timestamps), and the
    /// least sample (the path without queues).
    own_rtt: Option<Duration>,
    own_min_rtt: Option<Duration>,
    /// The least round-trip time the sender advertised (its PACE says the largest it knows).
    least_advertised: Option<Duration>,
    /// A report this receiver will send then, unless the sender's rate falls to its own
    /// first (see [`Meter::due`]).
    timer: Option<Instant>,
    /// State of the generator that draws the report timers.
    rng: u64,
    /// The group size last given to [`Meter::due`].
    group: usize,
}

impl Meter {
    pub(crate) fn new() -> Self {
        Self {
            hi: None,
            settled: 0,
            got: vec![0; (WINDOW / 64) as usize],
            pending: VecDeque::new(),
            event: None,
            first: 0,
            intervals: VecDeque::new(),
            p: 0.0,
            uni: None,
            credit: 0,
            bytes: 0,
            rate_from: None,
            last_rx: None,
            overflows: 0,
            last_feedback: None,
            reported: None,
            pace: None,
            epoch: None,
            own_rtt: None,
            own_min_rtt: None,
            least_advertised: None,
            timer: None,
            rng: 0,
            group: 1,
        }
    }

    /// A uniform draw in (0, 1] (seeded by the caller's node id on first use).
    fn uniform(&mut self, seed: u64) -> f64 {
        if self.rng == 0 {
            self.rng = seed ^ 0x5851_f42d_4c95_7f2d;
        }
        uniform(&mut self.rng)
    }

    fn clock_us(&mut self, now: Instant) -> u32 {
        let e = *self.epoch.get_or_insert(now);
        now.saturating_duration_since(e).as_micros() as u32
    }

    fn bit(&self, seq: u64) -> bool {
        let i = seq % WINDOW;
        self.got[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, seq: u64, on: bool) {
        let i = seq % WINDOW;
        let w = &mut self.got[(i / 64) as usize];
        if on {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }

    /// The latest PACE of the sender.
    pub(crate) fn pace(&self) -> Option<&Pace> {
        self.pace.as_ref()
    }

    /// This receiver's round-trip time to the sender: its own measurement, else what the
    /// sender advertises, else a default.
    pub(crate) fn rtt(&self) -> Duration {
        self.own_rtt
            .unwrap_or_else(|| {
                self.pace.map_or(super::rate::DEFAULT_RTT, |p| {
                    Duration::from_micros(u64::from(p.rtt_us))
                })
            })
            .max(Duration::from_micros(50))
    }

    /// Feedback interval the sender asks for.
    pub(crate) fn interval(&self) -> Duration {
        self.pace.map_or(super::rate::MIN_INTERVAL * 2, |p| {
            Duration::from_micros(u64::from(p.interval_us))
                .clamp(super::rate::MIN_INTERVAL, super::rate::MAX_INTERVAL)
        })
    }

    /// Loss event rate.
    #[cfg(test)]
    pub(crate) fn loss_rate(&self) -> f64 {
        self.p
    }

    /// A datagram of `len` bytes with header sequence number `seq` arrived.
    pub(crate) fn on_datagram(&mut self, now: Instant, seq: u64, len: usize) {
        // Receive rate: measured from the first datagram after a silence, so a stretch of
        // deafness is not averaged in.
        let gap = self
            .last_rx
            .is_none_or(|t| now.saturating_duration_since(t) > self.interval());
        if gap {
            self.rate_from = Some(now);
            self.bytes = 0;
        }
        self.last_rx = Some(now);
        self.bytes += len as u64 + 42;
        let Some((hi, _)) = self.hi else {
            self.hi = Some((seq, now));
            self.settled = seq;
            self.first = seq;
            self.set(seq, true);
            return;
        };
        if seq < self.settled {
            return; // late or duplicate: already settled
        }
        if seq > hi {
            // Too far ahead for the window: what falls out of it is one gap.
            if seq - self.settled >= WINDOW {
                let to = seq - WINDOW + 1;
                while self.settled < to.min(hi + 1) {
                    self.settle_one(now);
                }
                if self.settled < to {
                    self.push_gap(Gap {
                        seq: self.settled,
                        len: to - self.settled,
                        at: now,
                    });
                    for s in self.settled..to.min(self.settled + WINDOW) {
                        self.set(s, false);
                    }
                    self.settled = to;
                }
            }
            for s in (hi + 1).max(self.settled)..seq {
                self.set(s, false);
            }
            self.hi = Some((seq, now));
        }
        self.set(seq, true);
        let hi = self.hi.map_or(seq, |h| h.0);
        while self.settled + REORDER <= hi {
            self.settle_one(now);
        }
        if self
            .pending
            .front()
            .is_some_and(|g| now.saturating_duration_since(g.at) >= SETTLE)
        {
            self.count_pending(now);
        }
    }

    fn settle_one(&mut self, now: Instant) {
        let s = self.settled;
        if !self.bit(s) {
            match self.pending.back_mut() {
                Some(g) if g.seq + g.len == s && g.at == now => g.len += 1,
                _ => self.push_gap(Gap {
                    seq: s,
                    len: 1,
                    at: now,
                }),
            }
        }
        self.set(s, false);
        self.settled += 1;
    }

    fn push_gap(&mut self, g: Gap) {
        if self.pending.len() >= MAX_PENDING {
            self.count_pending(g.at);
        }
        self.pending.push_back(g);
    }

    /// Counts pending gaps into loss events, forgiving isolated one-datagram gaps up to the
    /// unicast credit.
    fn count_pending(&mut self, now: Instant) {
        let rtt = self.rtt();
        while let Some(g) = self.pending.pop_front() {
            if g.len == 1 && self.credit > 0 {
                self.credit -= 1;
                continue;
            }
            match self.event {
                Some((_, t)) if g.at.saturating_duration_since(t) <= rtt => {}
                Some((start, _)) => {
                    self.intervals
                        .push_front(g.seq.saturating_sub(start).max(1));
                    self.intervals.truncate(INTERVALS);
                    self.event = Some((g.seq, g.at));
                }
                None => {
                    // RFC 5348 section 6.3.1: the first interval is the one that gives the
                    // rate received so far, not the few datagrams since the start.
                    let x = self.recv_rate(now) as f64;
                    let first = if x > 0.0 {
                        let p =
                            super::rate::loss_for_rate(super::rate::SEGMENT, rtt.as_secs_f64(), x);
                        (1.0 / p).min(1e12) as u64
                    } else {
                        g.seq.saturating_sub(self.first)
                    };
                    self.intervals.push_front(first.max(1));
                    self.event = Some((g.seq, g.at));
                }
            }
        }
        self.recompute();
    }

    /// RFC 5348 section 5.4: the weighted mean of the loss intervals, with the open one
    /// counted only when that makes the mean larger.
    /// RFC 5348 section 5.4: the weighted mean of the loss intervals, with the open one
    /// counted only when that makes the mean larger; section 5.5: when the open interval is
    /// more than twice that mean, older intervals weigh less (the loss rate falls faster after
    /// a long loss-free stretch).
    fn recompute(&mut self) {
        if self.intervals.is_empty() {
            self.p = 0.0;
            return;
        }
        let open = match (self.event, self.hi) {
            (Some((start, _)), Some((hi, _))) => hi.saturating_sub(start) as f64,
            _ => 0.0,
        };
        let mut sum = 0.0;
        let mut w = 0.0;
        for (&x, wt) in self.intervals.iter().zip(WEIGHTS) {
            sum += x as f64 * wt;
            w += wt;
        }
        let closed = sum / w;
        let df = if open > 2.0 * closed {
            (2.0 * closed / open).max(0.5)
        } else {
            1.0
        };
        let mut sum = open * WEIGHTS[0];
        let mut w = WEIGHTS[0];
        for (&x, wt) in self
            .intervals
            .iter()
            .take(INTERVALS - 1)
            .zip(WEIGHTS.iter().skip(1))
        {
            sum += x as f64 * wt * df;
            w += wt * df;
        }
        let with_open = sum / w;
        self.p = 1.0 / closed.max(with_open).max(1.0);
    }

    /// The pass is over: the losses of the pass are history. After it the sender paces the
    /// repair to the members still missing data, some of which it may have outrun on
    /// purpose (they left the pace); their loss rate starts afresh.
    pub(crate) fn reset_losses(&mut self) {
        self.reported = None;
        self.pending.clear();
        self.intervals.clear();
        self.event = None;
        if let Some((hi, _)) = self.hi {
            // What is not settled yet belongs to the pass too.
            for s in self.settled..=hi {
                self.set(s, false);
            }
            self.settled = hi + 1;
            self.first = hi;
        }
        self.p = 0.0;
    }

    /// A PACE from the sender (`me`: this node, to recognise an echo of its timestamp).
    pub(crate) fn on_pace(&mut self, now: Instant, p: &Pace, me: u64) {
        if p.echo == me && p.echo != 0 {
            let sample = self
                .clock_us(now)
                .wrapping_sub(p.echo_ts)
                .saturating_sub(p.echo_hold_us);
            if sample < 10_000_000 {
                let rtt = Duration::from_micros(u64::from(sample.max(10)));
                self.own_min_rtt = Some(self.own_min_rtt.map_or(rtt, |m| m.min(rtt)));
                self.own_rtt = Some(match self.own_rtt {
                    None => rtt,
                    Some(s) => (s * 7 + rtt) / 8,
                });
            }
        }
        if let Some(u) = self.uni {
            self.credit += u64::from(p.uni.wrapping_sub(u)).min(4096);
        }
        self.uni = Some(p.uni);
        let adv = Duration::from_micros(u64::from(p.rtt_us));
        if p.rtt_us > 0 && self.least_advertised.is_none_or(|l| adv < l) {
            self.least_advertised = Some(adv);
        }
        self.pace = Some(*p);
        self.count_pending(now);
    }

    /// The socket dropped `n` datagrams (from this sender or another: counted for each).
    pub(crate) fn on_overflow(&mut self, n: u64) {
        self.overflows = self
            .overflows
            .saturating_add(n.min(u64::from(u32::MAX)) as u32);
    }

    /// Whether this receiver heard the sender within `d`.
    pub(crate) fn heard_within(&self, now: Instant, d: Duration) -> bool {
        self.last_rx
            .is_some_and(|t| now.saturating_duration_since(t) <= d)
    }

    /// The receive rate, when measured over at least half an interval.
    fn recv_rate(&self, now: Instant) -> u64 {
        match self.rate_from {
            Some(t) if now.saturating_duration_since(t) >= self.interval() / 2 => {
                (self.bytes as f64 / now.saturating_duration_since(t).as_secs_f64()) as u64
            }
            _ => 0,
        }
    }

    /// Whether a FEEDBACK is due now (`me`: this node's id, `group`: how many members may
    /// report at once). The receiver's half of TFMCC's feedback rules (RFC 4654 section 4):
    /// - the current limiting receiver (CLR) reports every interval, and a receiver whose
    ///   socket overflowed at once;
    /// - another receiver reports only when the rate it allows ([`Self::own_rate`]) is below
    ///   what the sender sends (its PACE), or before the sender has a CLR; and only when that
    ///   is news (it never reported, or allows less than it last said) or
    ///   [`REPEAT_ROUNDS`] intervals passed since its last report (the sender let it go
    ///   stale, or did not follow it). Receivers that allow more than the sender sends,
    ///   nearly all of a large group, say nothing;
    /// - such a report waits a random time first, `T × max(0, 1 + ln(x) / ln(N))` with `x`
    ///   uniform in (0, 1], `N` the group and `T` [`TIMER_ROUNDS`] intervals (exponentially
    ///   biased towards the end, as TFMCC's and NORM's feedback timers), and is dropped when
    ///   meanwhile a PACE shows the sender at or below this receiver's rate: the first report
    ///   lowers the rate at once, which silences the others that would have said the same.
    pub(crate) fn due(&mut self, now: Instant, me: u64, group: usize) -> bool {
        self.group = group;
        let Some(pace) = self.pace else {
            return false;
        };
        let interval = self.interval();
        if !self.heard_within(now, interval) {
            self.timer = None;
            return false;
        }
        let since = self
            .last_feedback
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        if self.overflows > 0 && since >= interval / 4 {
            return true;
        }
        if since < interval {
            return false;
        }
        if pace.clr == me {
            return true;
        }
        if pace.flags & super::wire::PACE_DATA_LIMITED != 0 {
            // The sender sends less than its rate allows (a pause, the end of the pass,
            // repair only): its rate limits nothing now, and while it is data-limited it
            // takes its rate from what receivers took, not from their reports. A report that
            // this receiver is below that rate would change nothing (at the end of a pass
            // to 1,000 members, hundreds reported so). The CLR and overflows still report.
            self.timer = None;
            return false;
        }
        let mine = self.own_rate(now, group);
        if group < SMALL_GROUP {
            // A small group: every member reports while the sender has no CLR, news at
            // once, and a keepalive every `REPEAT_ROUNDS` (their reports are few anyway).
            let news = self.reported.is_none_or(|r| mine < 0.9 * r);
            return pace.clr == 0
                || (news && mine < 0.9 * pace.rate as f64)
                || since >= interval * REPEAT_ROUNDS;
        }
        let below = if pace.clr == 0 {
            self.reported.is_none()
        } else {
            mine < 0.9 * pace.rate as f64
        };
        if !below {
            self.timer = None;
            return false;
        }
        if let Some(t) = self.timer {
            return now >= t;
        }
        let news = self.reported.is_none_or(|r| mine < 0.9 * r);
        if !news && since < interval * REPEAT_ROUNDS {
            return false;
        }
        let wait = if group < SMALL_GROUP {
            Duration::ZERO
        } else {
            let x = self.uniform(me);
            let f = (1.0 + x.ln() / (group as f64).ln()).clamp(0.0, 1.0);
            (interval * TIMER_ROUNDS).mul_f64(f)
        };
        self.timer = Some(now + wait);
        wait.is_zero()
    }

    /// The rate the sender would compute for this receiver: the equation at its loss event
    /// rate and the path's round-trip time without queues, at most twice what it receives;
    /// infinite without loss in a large group (a low receive rate without loss says the
    /// sender offered little, and a data-limited sender would hear from every member). That time is this receiver's own least sample once the sender echoed one of
    /// its reports, else the least the sender advertised (the largest it knows, which a
    /// queue inflates: taken as it stands, most members of a large group believed
    /// themselves below the sender's rate and reported in vain).
    fn own_rate(&self, now: Instant, group: usize) -> f64 {
        let base = if group < SMALL_GROUP {
            self.own_min_rtt.unwrap_or_else(|| self.rtt())
        } else if self.p <= 0.0 {
            return f64::INFINITY;
        } else {
            self.own_min_rtt
                .or(self.least_advertised)
                .unwrap_or_else(|| self.rtt())
        };
        let mine = super::rate::tcp_rate(super::rate::SEGMENT, base.as_secs_f64(), self.p);
        let recv = self.recv_rate(now) as f64;
        if recv > 0.0 {
            mine.min(2.0 * recv)
        } else {
            mine
        }
    }

    /// The FEEDBACK to send now for transfer `xfer`; resets the per-interval counters.
    pub(crate) fn take(&mut self, now: Instant, xfer: u32, me: u64) -> Feedback {
        self.recompute();
        let (seen, at) = self.hi.unwrap_or((0, now));
        let f = Feedback {
            xfer,
            flags: if self.pace.is_some_and(|p| p.clr == me) {
                FB_CLR
            } else {
                0
            },
            seen,
            hold_us: now
                .saturating_duration_since(at)
                .as_micros()
                .min(u128::from(u32::MAX)) as u32,
            loss: (self.p.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u32,
            recv_rate: self.recv_rate(now),
            overflows: self.overflows,
            ts_us: self.clock_us(now),
        };
        self.reported = Some(self.own_rate(now, self.group));
        self.timer = None;
        self.overflows = 0;
        self.last_feedback = Some(now);
        if self.recv_rate(now) > 0 {
            self.rate_from = Some(now);
            self.bytes = 0;
        }
        f
    }

    /// When the highest sequence number received arrived (what a NAK or FEEDBACK echoes).
    pub(crate) fn echo_at(&self) -> Option<Instant> {
        self.hi.map(|(_, at)| at)
    }

    /// The echo for a NAK: the highest sequence number received and µs since.
    pub(crate) fn echo(&self, now: Instant) -> (u64, u32) {
        match self.hi {
            Some((s, at)) => (
                s,
                now.saturating_duration_since(at)
                    .as_micros()
                    .min(u128::from(u32::MAX)) as u32,
            ),
            None => (0, 0),
        }
    }
}

/// A uniform draw in (0, 1] from SplitMix64 state `rng` (the receivers' random waits).
pub(super) fn uniform(rng: &mut u64) -> f64 {
    *rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *rng;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(uni: u32) -> Pace {
        Pace {
            xfer: 1,
            rate: 100e6 as u64,
            rtt_us: 500,
            interval_us: 5000,
            clr: 0,
            backlog_us: 0,
            uni,
            flags: 0,
            echo: 0,
            echo_ts: 0,
            echo_hold_us: 0,
        }
    }

    /// Feeds sequence numbers `from..to` at 10 µs each, skipping `lost`.
    fn feed(m: &mut Meter, t: &mut Instant, from: u64, to: u64, lost: impl Fn(u64) -> bool) {
        for s in from..to {
            *t += Duration::from_micros(10);
            if !lost(s) {
                m.on_datagram(*t, s, 1472);
            }
        }
    }

    #[test]
    fn one_percent_random_loss_gives_about_one_percent() {
        let mut m = Meter::new();
        let mut t = Instant::now();
        m.on_pace(t, &pace(0), 42);
        // Every 100th datagram lost, each far more than an RTT apart: one event each.
        feed(&mut m, &mut t, 1, 20_001, |s| s % 100 == 50);
        m.on_pace(t, &pace(0), 42);
        assert!((m.loss_rate() - 0.01).abs() < 0.001, "{}", m.loss_rate());
    }

    #[test]
    fn reordering_is_not_loss_and_a_burst_within_an_rtt_is_one_event() {
        let mut m = Meter::new();
        let mut t = Instant::now();
        m.on_pace(t, &pace(0), 42);
        for s in 1..5000u64 {
            t += Duration::from_micros(10);
            // Swap neighbours: every datagram arrives, out of order.
            let s = if s % 2 == 0 { s - 1 } else { s + 1 };
            m.on_datagram(t, s, 1472);
        }
        m.on_pace(t, &pace(0), 42);
        assert_eq!(m.loss_rate(), 0.0);
        // 20 lost in a row, twice, 2000 apart: two events.
        feed(&mut m, &mut t, 5000, 9000, |s| {
            (6000..6020).contains(&s) || (8000..8020).contains(&s)
        });
        m.on_pace(t, &pace(0), 42);
        assert!(
            m.loss_rate() > 0.0 && m.loss_rate() < 1.0 / 900.0,
            "{}",
            m.loss_rate()
        );
    }

    #[test]
    fn an_outage_is_one_event_and_unicasts_are_forgiven() {
        let mut m = Meter::new();
        let mut t = Instant::now();
        m.on_pace(t, &pace(0), 42);
        feed(&mut m, &mut t, 1, 10_000, |_| false);
        // Deaf for 300 ms: 30,000 sequence numbers never arrive.
        t += Duration::from_millis(300);
        feed(&mut m, &mut t, 40_000, 50_000, |_| false);
        m.on_pace(t, &pace(0), 42);
        let p = m.loss_rate();
        assert!(p > 0.0 && p < 1e-4, "{p}");
        // The sender sent 5 unicasts (5 isolated gaps), announced in the PACE messages
        // that follow: not losses.
        let before = m.loss_rate();
        // (PACE comes every millisecond or so, well within SETTLE.)
        for i in 0..5u32 {
            let from = 50_000 + u64::from(i) * 500;
            feed(&mut m, &mut t, from, from + 500, |s| s % 500 == 7);
            m.on_pace(t, &pace(i + 1), 42);
        }
        assert!(m.loss_rate() <= before, "{} > {before}", m.loss_rate());
        // Real losses are still losses.
        for i in 0..5u64 {
            let from = 52_500 + i * 500;
            feed(&mut m, &mut t, from, from + 500, |s| s % 500 == 7);
            m.on_pace(t, &pace(5), 42);
        }
        assert!(m.loss_rate() > before, "{} <= {before}", m.loss_rate());
    }

    #[test]
    fn the_end_of_the_pass_clears_the_loss_history() {
        let mut m = Meter::new();
        let mut t = Instant::now();
        m.on_pace(t, &pace(0), 42);
        feed(&mut m, &mut t, 1, 20_001, |s| s % 10 == 5);
        m.on_pace(t, &pace(0), 42);
        assert!(m.loss_rate() > 0.01, "{}", m.loss_rate());
        m.reset_losses();
        feed(&mut m, &mut t, 20_001, 30_000, |_| false);
        m.on_pace(t, &pace(0), 42);
        assert_eq!(m.loss_rate(), 0.0);
    }

    #[test]
    fn hostile_jumps_do_bounded_work() {
        let mut m = Meter::new();
        let t = Instant::now();
        m.on_datagram(t, 1, 100);
        m.on_datagram(t, u64::MAX - 5, 100);
        m.on_datagram(t, 3, 100);
        m.on_pace(t, &pace(0), 42);
        assert!(m.loss_rate() <= 1.0);
    }

    #[test]
    fn feedback_rules() {
        let me = 42;
        let mut m = Meter::new();
        let mut t = Instant::now();
        assert!(!m.due(t, me, 1), "no PACE yet");
        let mut p = pace(0);
        p.clr = me;
        m.on_pace(t, &p, 42);
        feed(&mut m, &mut t, 1, 500, |_| false);
        assert!(m.due(t, me, 1), "first report");
        let f = m.take(t, 1, me);
        assert_eq!((f.flags, f.seen, f.overflows), (FB_CLR, 499, 0));
        assert!(f.recv_rate > 100_000_000, "{}", f.recv_rate);
        assert!(!m.due(t, me, 1));
        feed(&mut m, &mut t, 500, 1100, |_| false);
        assert!(m.due(t, me, 1), "the CLR reports every interval");
        m.take(t, 1, me);
        // Not the CLR and not lower: nothing to say.
        p.clr = 7;
        m.on_pace(t, &p, 42);
        feed(&mut m, &mut t, 1100, 1700, |_| false);
        assert!(!m.due(t, me, 1));
        m.on_overflow(3);
        t += Duration::from_millis(1);
        assert!(m.due(t, me, 1), "an overflow is reported at once");
        assert_eq!(m.take(t, 1, me).overflows, 3);
    }

    #[test]
    fn in_a_large_group_reports_wait_and_a_lower_rate_silences_them() {
        let me = 42;
        let mut p = pace(0);
        p.clr = 7;
        // 5 % loss: this receiver allows far less than the 100 MB/s the sender sends.
        let lossy = |p: &Pace| {
            let mut m = Meter::new();
            let mut t = Instant::now();
            m.on_pace(t, p, me);
            feed(&mut m, &mut t, 1, 20_001, |s| s % 20 == 10);
            m.on_pace(t, p, me);
            (m, t)
        };
        let (mut m, mut t) = lossy(&p);
        assert!(m.own_rate(t, 1000) < 0.9 * p.rate as f64);
        // In a group of 1,000 it waits a random time of at most 3 intervals (15 ms).
        let start = t;
        let mut seq = 20_001;
        while !m.due(t, me, 1000) {
            feed(&mut m, &mut t, seq, seq + 10, |_| false);
            seq += 10;
            assert!(t - start <= Duration::from_millis(16), "no report");
        }
        m.take(t, 1, me);
        // Another one hears, while it waits, that the sender went down to its rate (a
        // member like it reported first): it says nothing.
        let (mut m, mut t) = lossy(&p);
        let mut silenced = false;
        for _ in 0..2000 {
            if m.due(t, me, 1000) {
                assert!(!silenced, "reported after the sender went down to its rate");
                break;
            }
            if !silenced && m.timer.is_some() {
                let mut low = p;
                low.rate = (m.own_rate(t, 1000) * 0.95) as u64;
                m.on_pace(t, &low, me);
                silenced = true;
            }
            feed(&mut m, &mut t, seq, seq + 10, |_| false);
            seq += 10;
        }
        assert!(silenced);
        // A receiver without loss allows more than any rate: it never reports.
        let mut m = Meter::new();
        let mut t = Instant::now();
        m.on_pace(t, &p, me);
        feed(&mut m, &mut t, 1, 50_001, |_| false);
        m.on_pace(t, &p, me);
        assert!(!m.due(t, me, 1000));
    }
}
