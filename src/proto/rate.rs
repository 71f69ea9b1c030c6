//! Sender rate control: how fast a push may send, from its receivers' feedback, in the
//! manner of TFMCC (RFC 4654) and TFRC (RFC 5348); and pacing, which spaces datagrams at
//! that rate by a timer.
//!
//! Contract (all time is passed in; nothing here reads a clock):
//! - inputs: [`RateControl::on_sent`] for every datagram the engine emits (its header sequence
//!   number and time, kept so echoes give round-trip times); [`RateControl::on_feedback`] for
//!   every FEEDBACK and [`RateControl::on_echo`] for every NAK (both echo a sequence number);
//! - [`RateControl::update`] recomputes the rate from the receivers that constrain it (the
//!   engine says which: targets still needing data and, during a pass, in the group's pace)
//!   and returns the receivers that have stayed below the floor (`--min-rate`);
//! - outputs: [`RateControl::rate`] (bytes per second), the current limiting receiver (CLR),
//!   the round-trip time and feedback interval receivers are told in PACE messages.
//!
//! The rate for one receiver is the TCP throughput equation at its loss event rate `p` and
//! the path's round-trip time without queues (what a TCP flow would get on its path), never
//! more than twice what it reported receiving (a low report without loss, overflow or queue
//! only holds the rate: the sender offered little), no more than that after its socket overflowed,
//! and less than that while a queue stands on the path ([`QUEUE_TARGET`] of delay over the
//! least RTT seen): the sender keeps queues short, which keeps the equation honest and gives
//! way to TCP flows that fill a shared queue. The send rate is the lowest over the
//! constraining receivers; that
//! receiver is the CLR. Until some receiver reports a loss event the rate doubles per
//! feedback round (slow start, bounded by twice the receive rates); afterwards it follows the
//! CLR's rate, falling at once, rising by at most a doubling per round (TFRC). A CLR
//! that stops reporting (deaf, paused) is not followed down: after `SILENT_ROUNDS` intervals
//! the next lowest receiver leads. `--bwlimit`/`-T` cap the rate.
//!
//! [`Pacer`] turns the rate into a deadline: the engine may send a datagram when it is due;
//! a short burst is allowed after a pause so the driver need not wake for every datagram.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::wire::Feedback;

/// Bytes of a full datagram on the wire (the `s` of the equation): 1472 + 42 at MTU 1500.
pub const SEGMENT: f64 = 1514.0;
/// Ethernet, IPv4 and UDP bytes around each datagram (rates count them).
pub const WIRE_OVERHEAD: usize = 42;
/// Rate a push starts at (bytes per second), before any feedback: 100 Mbit/s.
pub const INITIAL_RATE: f64 = 12.5e6;
/// Rate control never goes below this (bytes per second).
pub const LOWEST_RATE: f64 = 64.0 * 1024.0;
/// Round-trip time assumed until one is measured.
pub const DEFAULT_RTT: Duration = Duration::from_millis(1);
/// Datagrams the sender sends at least per feedback interval (see [`RateControl::interval`]).
pub const FEEDBACK_DATAGRAMS: f64 = 4.0;
/// Shortest and longest feedback interval (on a LAN the round-trip time is far shorter than
/// the shortest: reporting every round trip would cost more than it tells).
pub const MIN_INTERVAL: Duration = Duration::from_millis(5);
/// See [`MIN_INTERVAL`].
pub const MAX_INTERVAL: Duration = Duration::from_millis(100);
/// Feedback intervals without a report after which the CLR no longer leads.
pub const SILENT_ROUNDS: u32 = 4;
/// Feedback intervals after which any receiver's last report is too old to count (a
/// receiver still below the rate the sender then goes to reports again, see `meter.rs`).
pub const STALE_ROUNDS: u32 = 40;
/// How long a receiver must stay below the floor before it leaves the pace.
pub const FLOOR_GRACE: Duration = Duration::from_millis(200);
/// Queueing delay (over the path's base RTT) at which the sender holds back to drain it.
pub const QUEUE_TARGET: Duration = Duration::from_millis(2);
/// How long the least RTT seen stands for the path's base RTT.
pub const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// How long a receiver's best receive rate is remembered (the floor compares it).
pub const PEAK_WINDOW: Duration = Duration::from_secs(2);
/// Sequence numbers whose send time is remembered (for RTT from echoes).
const LOG: usize = 1 << 16;

/// TCP throughput equation (RFC 5348, section 3.1), bytes per second for segments of `s`
/// bytes, round-trip time `rtt` seconds and loss event rate `p` (infinite for `p = 0`).
pub fn tcp_rate(s: f64, rtt: f64, p: f64) -> f64 {
    if p <= 0.0 {
        return f64::INFINITY;
    }
    let rtt = rtt.max(1e-6);
    let t_rto = 4.0 * rtt;
    s / (rtt * (2.0 * p / 3.0).sqrt()
        + t_rto * (3.0 * (3.0 * p / 8.0).sqrt()) * p * (1.0 + 32.0 * p * p))
}

/// The loss event rate at which [`tcp_rate`] gives `x` (bisection; 1 when even that is
/// faster than `x`).
pub fn loss_for_rate(s: f64, rtt: f64, x: f64) -> f64 {
    let (mut lo, mut hi) = (1e-9f64, 1.0f64);
    if tcp_rate(s, rtt, hi) >= x {
        return hi;
    }
    for _ in 0..60 {
        let mid = (lo * hi).sqrt();
        if tcp_rate(s, rtt, mid) > x {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// What the sender knows about one receiver.
#[derive(Clone, Debug)]
pub(crate) struct Receiver {
    /// Loss event rate it reported.
    pub(crate) p: f64,
    /// Receive rate it reported (bytes per second; 0: not measured).
    pub(crate) recv_rate: f64,
    /// Smoothed round-trip time.
    pub(crate) srtt: Option<Duration>,
    /// The latest round-trip time sample.
    last_rtt: Option<Duration>,
    /// The least round-trip time seen lately (the path without queues), and when.
    min_rtt: Option<(Duration, Instant)>,
    /// Its last feedback.
    pub(crate) last_report: Option<Instant>,
    /// Its last report of a receive-buffer overflow.
    pub(crate) overflow_at: Option<Instant>,
    /// Since when it has been below the floor (while constraining).
    below_since: Option<Instant>,
    /// It led and went silent: it does not lead again until it reports.
    silent: bool,
    /// Its last feedback's timestamp and when it arrived, until echoed in a PACE.
    echo: Option<(u32, Instant)>,
    /// When its timestamp was last echoed.
    echoed: Option<Instant>,
    /// The most it received in any report of the last [`PEAK_WINDOW`] (what it can take
    /// when offered enough), and when.
    peak: (f64, Option<Instant>),
    /// When it last showed congestion (a loss event, an overflow, a queue): it was offered
    /// more than it took.
    congested_at: Option<Instant>,
}

impl Receiver {
    fn new() -> Self {
        Self {
            p: 0.0,
            recv_rate: 0.0,
            srtt: None,
            last_rtt: None,
            min_rtt: None,
            last_report: None,
            overflow_at: None,
            below_since: None,
            silent: false,
            echo: None,
            echoed: None,
            peak: (0.0, None),
            congested_at: None,
        }
    }

    fn rtt(&self) -> Duration {
        self.srtt.unwrap_or(DEFAULT_RTT)
    }

    /// The path's round-trip time without queues (the least seen lately).
    fn base_rtt(&self) -> Duration {
        self.min_rtt.map_or_else(|| self.rtt(), |m| m.0)
    }

    /// Queueing delay on the path to this receiver now: the latest RTT over the base one.
    fn queueing(&self) -> Duration {
        self.last_rtt
            .map_or(Duration::ZERO, |l| l.saturating_sub(self.base_rtt()))
    }

    /// Whether a queue has built up on the path (see [`QUEUE_TARGET`]).
    fn queued(&self) -> bool {
        self.queueing() > QUEUE_TARGET.max(self.base_rtt())
    }

    /// The rate this receiver allows:
    /// - the TCP equation at its loss event rate and the path's round-trip time without
    ///   queues (what a TCP flow gets on that path when it keeps no standing queue);
    /// - at most twice what it receives (room to grow, as TFRC);
    /// - no more than it receives after its socket overflowed (it drained that much);
    /// - below what it receives while a queue stands on the path (delay rises): the queue
    ///   drains, and a TCP flow filling a shared queue is given way to, not starved.
    ///
    /// While the sender is data-limited (it sent less than half what the rate allowed), what
    /// a receiver took says what was offered, not what the path takes: the bound of twice
    /// its receive rate uses the most it took lately ([`PEAK_WINDOW`]), as RFC 5348 section
    /// 4.3 does for data-limited intervals, and a queue is not this sender's to drain (a
    /// late round-trip sample on a busy host, or another flow's queue).
    pub(crate) fn allowed(&self, now: Instant, interval: Duration, limited: bool) -> f64 {
        let mut x = tcp_rate(SEGMENT, self.base_rtt().as_secs_f64(), self.p);
        if self.recv_rate > 0.0 {
            let took = if limited {
                self.recv_rate.max(self.peak.0)
            } else {
                self.recv_rate
            };
            x = x.min(2.0 * took);
            if self
                .overflow_at
                .is_some_and(|t| now.saturating_duration_since(t) < interval * 2)
            {
                x = x.min(self.recv_rate);
            }
            if self.queued() && !limited {
                let drain = if self.queueing() > QUEUE_TARGET * 4 {
                    0.75
                } else {
                    0.95
                };
                x = x.min(self.recv_rate * drain);
            }
        }
        x
    }

    fn lossy(&self, now: Instant, interval: Duration, limited: bool) -> bool {
        self.p > 0.0
            || (self.queued() && !limited)
            || self
                .overflow_at
                .is_some_and(|t| now.saturating_duration_since(t) < interval * 4)
    }
}

/// Whether a receiver constrains the rate, and whether the floor applies to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Constraint {
    /// It does not (done, failed, not a target, or out of the pace during a pass).
    None,
    /// It does, and may be dropped from the pace when below the floor.
    Paced,
    /// It does, and the floor does not apply (being served after the pass).
    Served,
}

/// Rate-control settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateConfig {
    /// Ceiling (`--bwlimit`, `-T`), bytes per second.
    pub(crate) cap: Option<f64>,
    /// Floor (`--min-rate`), bytes per second.
    pub(crate) floor: Option<f64>,
}

/// Send times of recent header sequence numbers, as µs since `epoch` (+1; 0 = unknown).
#[derive(Debug)]
struct SendLog {
    epoch: Instant,
    times: Vec<u32>,
}

impl SendLog {
    fn record(&mut self, seq: u64, now: Instant) {
        if self.times.is_empty() {
            self.times = vec![0; LOG];
        }
        let us = now.saturating_duration_since(self.epoch).as_micros() as u32;
        self.times[seq as usize % LOG] = us.wrapping_add(1).max(1);
    }

    /// When `seq` was sent, if it is recent enough to be remembered (`newest`: the newest
    /// sequence number sent).
    fn sent_at(&self, seq: u64, newest: u64) -> Option<Instant> {
        if self.times.is_empty() || seq > newest || newest - seq >= LOG as u64 {
            return None;
        }
        let v = self.times[seq as usize % LOG];
        (v != 0).then(|| self.epoch + Duration::from_micros(u64::from(v - 1)))
    }
}

/// How much of its allowance the sender used, per feedback interval.
#[derive(Debug, Default)]
struct Usage {
    /// Start of the current interval (`None`: nothing paced since the push began).
    from: Option<Instant>,
    /// Last time the allowance was accounted.
    tick: Option<Instant>,
    /// Bytes paced out, and bytes the rate allowed, in the current interval.
    sent: f64,
    allowance: f64,
    /// The last complete interval used less than half its allowance.
    limited: bool,
    /// When the last datagram was paced out.
    last: Option<Instant>,
}

impl Usage {
    /// Accounts the allowance up to `now` at `rate`, and closes the interval once it is
    /// `interval` long.
    fn tick(&mut self, now: Instant, rate: f64, interval: Duration) {
        let (Some(from), Some(tick)) = (self.from, self.tick) else {
            return;
        };
        self.allowance += rate * now.saturating_duration_since(tick).as_secs_f64();
        self.tick = Some(now);
        if now.saturating_duration_since(from) >= interval {
            self.limited = self.sent < 0.5 * self.allowance;
            self.from = Some(now);
            self.sent = 0.0;
            self.allowance = 0.0;
        }
    }

    /// Data-limited: the last whole interval used less than half its allowance, or nothing
    /// was paced out for a quarter interval (and two datagrams' time at `rate`). A
    /// receiver's report covers its own last interval: when the sender has just run out of
    /// data, the report shows the trickle while the last whole interval still looks full.
    fn limited(&self, now: Instant, interval: Duration, rate: f64) -> bool {
        let gap = (interval / 4).max(Duration::from_secs_f64(2.0 * SEGMENT / rate.max(1.0)));
        let idle = self
            .last
            .is_some_and(|l| now.saturating_duration_since(l) >= gap);
        self.limited || idle
    }
}

/// The sender's rate controller (one per engine: its pushes share its link).
#[derive(Debug)]
pub(crate) struct RateControl {
    cfg: RateConfig,
    rate: f64,
    slowstart: bool,
    receivers: BTreeMap<u64, Receiver>,
    clr: Option<u64>,
    log: SendLog,
    newest: u64,
    usage: Usage,
}

impl RateControl {
    pub(crate) fn new(cfg: RateConfig, now: Instant) -> Self {
        let mut r = Self {
            cfg,
            rate: INITIAL_RATE,
            slowstart: true,
            receivers: BTreeMap::new(),
            clr: None,
            log: SendLog {
                epoch: now,
                times: Vec::new(),
            },
            newest: 0,
            usage: Usage::default(),
        };
        r.restart();
        r
    }

    /// Starts over (a push begins while none runs): slow start from the initial rate.
    pub(crate) fn restart(&mut self) {
        self.rate = self.clamp(INITIAL_RATE);
        self.slowstart = true;
        self.receivers.clear();
        self.clr = None;
        self.usage = Usage::default();
    }

    fn clamp(&self, x: f64) -> f64 {
        let x = x.max(LOWEST_RATE);
        match self.cfg.cap {
            Some(c) => x.min(c),
            None => x,
        }
    }

    /// Current send rate, bytes per second.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// Current limiting receiver.
    pub(crate) fn clr(&self) -> Option<u64> {
        self.clr
    }

    /// What is known of receiver `node`.
    pub(crate) fn receiver(&self, node: u64) -> Option<&Receiver> {
        self.receivers.get(&node)
    }

    /// The largest smoothed RTT measured (what receivers are told to assume).
    pub(crate) fn rtt(&self) -> Duration {
        self.receivers
            .values()
            .filter_map(|r| r.srtt)
            .max()
            .unwrap_or(DEFAULT_RTT)
    }

    /// How often the CLR reports: once per its round-trip time, and at least the time
    /// [`FEEDBACK_DATAGRAMS`] datagrams take at the current rate, within bounds. Receivers
    /// report only when they heard the sender within an interval: without the second term a
    /// rate that had fallen low (a datagram every 20 ms) silenced every receiver, and with no
    /// feedback the rate never rose again (pushes of seconds took a minute).
    pub(crate) fn interval(&self) -> Duration {
        let rtt = self
            .clr
            .and_then(|n| self.receivers.get(&n))
            .and_then(|r| r.srtt)
            .unwrap_or_else(|| self.rtt());
        let spacing = Duration::from_secs_f64(FEEDBACK_DATAGRAMS * SEGMENT / self.rate.max(1.0));
        rtt.max(spacing).clamp(MIN_INTERVAL, MAX_INTERVAL)
    }

    /// The feedback timestamp to echo in the next PACE: the CLR's if it has a new one, else
    /// the one echoed longest ago. Returns (node, its timestamp, µs held here).
    pub(crate) fn take_echo(&mut self, now: Instant) -> Option<(u64, u32, u32)> {
        let pick = match self.clr {
            Some(c) if self.receivers.get(&c).is_some_and(|r| r.echo.is_some()) => Some(c),
            _ => self
                .receivers
                .iter()
                .filter(|(_, r)| r.echo.is_some())
                .min_by_key(|(_, r)| r.echoed)
                .map(|(n, _)| *n),
        }?;
        let r = self.receivers.get_mut(&pick)?;
        let (ts, at) = r.echo.take()?;
        r.echoed = Some(now);
        let hold = now
            .saturating_duration_since(at)
            .as_micros()
            .min(u128::from(u32::MAX));
        Some((pick, ts, hold as u32))
    }

    /// A datagram with header sequence number `seq` left now.
    pub(crate) fn on_sent(&mut self, now: Instant, seq: u64) {
        self.log.record(seq, now);
        self.newest = self.newest.max(seq);
    }

    /// A paced datagram of `bytes` (on the wire) left now.
    pub(crate) fn on_paced(&mut self, now: Instant, bytes: usize) {
        if self.usage.from.is_none() {
            self.usage.from = Some(now);
            self.usage.tick = Some(now);
        }
        let interval = self.interval();
        self.usage.tick(now, self.rate, interval);
        self.usage.sent += bytes as f64;
        self.usage.last = Some(now);
    }

    /// Whether the sender used less than half of what the rate allowed over the last
    /// feedback interval (it had little to send).
    #[cfg(test)]
    pub(crate) fn data_limited(&self) -> bool {
        self.usage.limited
    }

    /// Whether the sender is data-limited now (see `Usage::limited`): told receivers in
    /// PACE.
    pub(crate) fn limited_now(&self, now: Instant) -> bool {
        self.usage.limited(now, self.interval(), self.rate)
    }

    /// An echo from `node`: it had received up to `seen`, `hold_us` µs before sending.
    pub(crate) fn on_echo(&mut self, now: Instant, node: u64, seen: u64, hold_us: u32) {
        let Some(sent) = self.log.sent_at(seen, self.newest) else {
            return;
        };
        let hold = Duration::from_micros(u64::from(hold_us));
        let Some(rtt) = now.saturating_duration_since(sent).checked_sub(hold) else {
            return;
        };
        let rtt = rtt.max(Duration::from_micros(10));
        let r = self.receivers.entry(node).or_insert_with(Receiver::new);
        r.last_rtt = Some(rtt);
        if r.min_rtt
            .is_none_or(|(m, t)| rtt <= m || now.saturating_duration_since(t) > MIN_RTT_WINDOW)
        {
            r.min_rtt = Some((rtt, now));
        }
        r.srtt = Some(match r.srtt {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        });
    }

    /// Rate feedback from `node`.
    pub(crate) fn on_feedback(&mut self, now: Instant, node: u64, f: &Feedback) {
        self.on_echo(now, node, f.seen, f.hold_us);
        let r = self.receivers.entry(node).or_insert_with(Receiver::new);
        r.p = f64::from(f.loss) / f64::from(u32::MAX);
        r.recv_rate = f.recv_rate as f64;
        r.last_report = Some(now);
        r.silent = false;
        r.echo = Some((f.ts_us, now));
        let stale = r
            .peak
            .1
            .is_none_or(|t| now.saturating_duration_since(t) > PEAK_WINDOW);
        if r.recv_rate >= r.peak.0 || stale {
            r.peak = (r.recv_rate, Some(now));
        }
        if f.overflows > 0 {
            r.overflow_at = Some(now);
        }
    }

    /// Recomputes the rate from the receivers `who` says constrain it; returns those that
    /// have stayed below the floor for [`FLOOR_GRACE`] (they should leave the pace).
    pub(crate) fn update(&mut self, now: Instant, who: impl Fn(u64) -> Constraint) -> Vec<u64> {
        let interval = self.interval();
        self.usage.tick(now, self.rate, interval);
        let limited = self.usage.limited(now, interval, self.rate);
        let silent = interval * SILENT_ROUNDS + self.rtt() * 2;
        let mut target = f64::INFINITY;
        let mut clr = None;
        let mut lossy = false;
        let floor = self.cfg.floor.unwrap_or(0.0);
        let current = self.rate;
        // (node, below the floor) of every receiver that counts now.
        let mut counted: Vec<(u64, bool)> = Vec::new();
        for (&node, r) in self.receivers.iter_mut() {
            let c = who(node);
            if c == Constraint::None {
                r.below_since = None;
                continue;
            }
            let Some(last) = r.last_report else { continue };
            let quiet = now.saturating_duration_since(last);
            if quiet >= silent && self.clr == Some(node) {
                // Silent while leading: deaf or stopped. Not followed down; the member
                // timeout and the repair at the end deal with it.
                r.silent = true;
            }
            if r.silent || quiet >= interval * STALE_ROUNDS {
                r.below_since = None;
                continue;
            }
            let mut x = r.allowed(now, interval, limited);
            if r.lossy(now, interval, limited) {
                lossy = true;
                r.congested_at = Some(now);
            } else {
                // Without a sign of congestion (loss, overflow, queue) a low receive rate
                // says the sender offered little (the manifest, a pause, a slow disk, a
                // busy CPU), not that the path takes no more: it bounds growth, never
                // lowers the rate (RFC 5348 section 4.3's data-limited intervals). Taking
                // it as capacity once sent a 64 MiB push on a loaded host to 114 KB/s for
                // seconds, waiting for feedback at that rate to climb back.
                x = x.max(current);
            }
            if x < target {
                target = x;
                clr = Some(node);
            }
            // Below the floor: it never received the floor rate lately, and it was offered
            // more than it took (congestion) lately: its own pace holding the sender down,
            // or a cap below the floor, do not count.
            let congested = r
                .congested_at
                .is_some_and(|t| now.saturating_duration_since(t) <= PEAK_WINDOW);
            let below = congested && r.peak.0 > 0.0 && r.peak.0 < floor;
            counted.push((node, below && c == Constraint::Paced));
            if !below {
                r.below_since = None;
            }
        }
        // Receivers leave the pace only when they are a minority: when most are below the
        // floor (a lossy network, busy hosts), it is the group's pace, not one slow member's.
        let slow = counted.iter().filter(|(_, b)| *b).count();
        let others_fine = slow * 2 < counted.len();
        let mut below = Vec::new();
        for (node, b) in counted {
            let r = self.receivers.get_mut(&node).expect("counted");
            if !b || !others_fine {
                r.below_since = None;
                continue;
            }
            let since = *r.below_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= FLOOR_GRACE {
                below.push(node);
            }
        }
        self.clr = clr;
        if lossy {
            self.slowstart = false;
        }
        if target.is_finite() {
            // TFRC (RFC 5348 section 4.3): the equation's rate, bounded by twice what the
            // receivers take; in slow start, at most double per feedback round.
            let next = if self.slowstart {
                target.min(self.rate * 2.0)
            } else {
                target
            };
            self.rate = self.clamp(next);
        }
        below
    }
}

/// Spaces datagrams at a rate: a datagram may leave once the previous ones' time has passed,
/// with a burst of up to about a millisecond's worth (16 to 128 datagrams) after a pause.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    next: Option<Instant>,
}

impl Pacer {
    /// When the next datagram may leave (`None`: now).
    #[cfg(test)]
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// When the driver should come back to send: once a batch has come due (up to a
    /// millisecond's or 64 datagrams' worth at `rate`), so that one wake-up sends many
    /// datagrams (one system call with GSO) rather than one each (as quinn's pacer waits for
    /// a burst's worth of tokens).
    pub(crate) fn wake_at(&self, rate: f64) -> Option<Instant> {
        let seg = SEGMENT / rate.max(1.0);
        let batch = Duration::from_secs_f64((63.0 * seg).clamp(0.0, 0.001));
        self.next.map(|t| t + batch)
    }

    /// Whether a datagram may leave now.
    pub(crate) fn ready(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| now >= t)
    }

    /// A datagram of `bytes` (on the wire) left at `now`, at `rate` bytes per second.
    pub(crate) fn on_send(&mut self, now: Instant, bytes: usize, rate: f64) {
        let rate = rate.max(1.0);
        let burst = (rate * 0.001).clamp(16.0 * SEGMENT, 128.0 * SEGMENT);
        // The datagram due now plus the burst's worth of credit.
        let slack = Duration::from_secs_f64((burst - SEGMENT) / rate);
        let earliest = now.checked_sub(slack).unwrap_or(now);
        let base = self.next.unwrap_or(earliest).max(earliest);
        self.next = Some(base + Duration::from_secs_f64(bytes as f64 / rate));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fb(seen: u64, loss: f64, recv: f64, overflows: u32) -> Feedback {
        Feedback {
            xfer: 1,
            flags: 0,
            seen,
            hold_us: 0,
            loss: (loss * f64::from(u32::MAX)) as u32,
            recv_rate: recv as u64,
            overflows,
            ts_us: 0,
        }
    }

    #[test]
    fn equation_matches_tcp() {
        // 1 % loss at 1 ms: about 1.2 MSS/RTT/sqrt(p), a bit less with the timeout term.
        let x = tcp_rate(1500.0, 0.001, 0.01);
        assert!((15e6..19e6).contains(&x), "{x}");
        assert!(tcp_rate(1500.0, 0.001, 0.0).is_infinite());
        assert!(tcp_rate(1500.0, 0.001, 0.1) < tcp_rate(1500.0, 0.001, 0.01));
        assert!(tcp_rate(1500.0, 0.01, 0.01) < x);
        let p = loss_for_rate(1500.0, 0.001, x);
        assert!((p - 0.01).abs() < 1e-6, "{p}");
        assert_eq!(loss_for_rate(1500.0, 0.001, 1.0), 1.0);
    }

    #[track_caller]
    fn step(rc: &mut RateControl, t: Instant, node: u64, seq: u64, f: Feedback) -> Vec<u64> {
        rc.on_sent(t - Duration::from_micros(500), seq);
        rc.on_feedback(t, node, &f);
        rc.update(t, |_| Constraint::Paced)
    }

    #[test]
    fn slow_start_doubles_then_follows_the_limiting_receiver() {
        let t0 = Instant::now();
        let mut rc = RateControl::new(
            RateConfig {
                cap: None,
                floor: None,
            },
            t0,
        );
        assert_eq!(rc.rate(), INITIAL_RATE);
        let mut t = t0;
        let mut seq = 0;
        // Clean receivers that take everything: the rate doubles per round.
        for i in 1..=4 {
            t += Duration::from_millis(2);
            seq += 100;
            let r = rc.rate();
            step(&mut rc, t, 7, seq, fb(seq, 0.0, r, 0));
            step(&mut rc, t, 8, seq, fb(seq, 0.0, r, 0));
            assert_eq!(rc.rate(), INITIAL_RATE * f64::from(1 << i));
        }
        assert_eq!(
            rc.receiver(7).unwrap().srtt,
            Some(Duration::from_micros(500))
        );
        // Receiver 8 starts losing: it leads, and the rate falls to its equation at once.
        t += Duration::from_millis(2);
        seq += 100;
        step(&mut rc, t, 8, seq, fb(seq, 0.05, 50e6, 0));
        assert_eq!(rc.clr(), Some(8));
        let want = tcp_rate(SEGMENT, 0.0005, 0.05);
        assert!((rc.rate() - want).abs() < 1.0, "{} vs {want}", rc.rate());
        // Its loss falls: the rate rises to its equation, at most twice what it receives.
        t += Duration::from_millis(2);
        seq += 100;
        step(&mut rc, t, 8, seq, fb(seq, 0.0001, 20e6, 0));
        assert_eq!(rc.rate(), 40e6);
    }

    #[test]
    fn a_low_report_without_congestion_does_not_lower_the_rate() {
        let t0 = Instant::now();
        let mut rc = RateControl::new(
            RateConfig {
                cap: None,
                floor: None,
            },
            t0,
        );
        // The sender offered little (the manifest, a pause): its receivers took little,
        // lost nothing, and no queue stood. That is no reason to slow down.
        let mut t = t0 + Duration::from_millis(5);
        step(&mut rc, t, 3, 10, fb(10, 0.0, 50e3, 0));
        assert_eq!(rc.rate(), INITIAL_RATE, "held, not cut to twice 50 kB/s");
        // Nor does it stop growth once they take what is offered.
        t += Duration::from_millis(5);
        step(&mut rc, t, 3, 20, fb(20, 0.0, INITIAL_RATE, 0));
        assert_eq!(rc.rate(), 2.0 * INITIAL_RATE);
        // The same low report with a sign of congestion (an overflow) does lower it.
        t += Duration::from_millis(5);
        step(&mut rc, t, 3, 30, fb(30, 0.0, 50e3, 2));
        assert_eq!(rc.rate(), 50e3_f64.max(LOWEST_RATE));
    }

    /// Paces `bytes` per ms at `t - 1 ms` .. `t` (what the sender actually sent).
    fn pace(rc: &mut RateControl, t: Instant, bytes_per_ms: usize) {
        for us in (0..1000).step_by(100) {
            rc.on_paced(t - Duration::from_micros(1000 - us), bytes_per_ms / 10);
        }
    }

    #[test]
    fn a_late_rtt_sample_lowers_a_full_sender_but_not_a_data_limited_one() {
        let cfg = RateConfig {
            cap: None,
            floor: None,
        };
        let t0 = Instant::now();
        // Base round trip 100 µs, then one sample of 5 ms: a standing queue, or a busy host.
        let late = |rc: &mut RateControl, t: Instant, seq: u64, recv: f64| {
            rc.on_sent(t - Duration::from_micros(100), seq);
            rc.on_feedback(t, 3, &fb(seq, 0.0, recv, 0));
            rc.on_sent(t - Duration::from_micros(5000), seq + 1);
            rc.on_feedback(t, 3, &fb(seq + 1, 0.0, recv, 0));
            rc.update(t, |_| Constraint::Paced);
        };
        // A sender that used its allowance (12.5 MB/s = 12,500 bytes per ms) and whose
        // receiver took less: the queue is its own, and it drains it.
        let mut rc = RateControl::new(cfg, t0);
        let mut t = t0;
        for _ in 0..12 {
            t += Duration::from_millis(1);
            pace(&mut rc, t, 12_500);
        }
        assert!(!rc.data_limited());
        late(&mut rc, t, 10, 10e6);
        assert!(rc.rate() < 10e6, "{}", rc.rate());
        // A sender with little to send (the manifest, a pause between files): its receiver
        // took what little was offered. The same late sample is no reason to cut the rate
        // to what was offered: the next push of data would crawl up from there.
        let mut rc = RateControl::new(cfg, t0);
        let mut t = t0;
        for _ in 0..12 {
            t += Duration::from_millis(1);
            pace(&mut rc, t, 200);
        }
        assert!(rc.data_limited());
        late(&mut rc, t, 10, 30e3);
        assert_eq!(rc.rate(), INITIAL_RATE);
        // A sender that was full and has just run out of data: its last whole interval
        // looks full, the receiver's report already shows the trickle.
        let mut rc = RateControl::new(cfg, t0);
        let mut t = t0;
        for _ in 0..10 {
            t += Duration::from_millis(1);
            pace(&mut rc, t, 12_500);
        }
        t += Duration::from_millis(3);
        late(&mut rc, t, 10, 30e3);
        assert_eq!(rc.rate(), INITIAL_RATE);
        // A loss report while data-limited bounds the rate by twice the most the receiver
        // took lately, not by twice the trickle it took last.
        let mut rc = RateControl::new(cfg, t0);
        let mut t = t0 + Duration::from_millis(1);
        step(&mut rc, t, 3, 10, fb(10, 0.0, 12e6, 0));
        for _ in 0..12 {
            t += Duration::from_millis(1);
            pace(&mut rc, t, 200);
        }
        step(&mut rc, t, 3, 20, fb(20, 0.001, 30e3, 0));
        assert_eq!(rc.rate(), 24e6_f64.min(tcp_rate(SEGMENT, 0.0005, 0.001)));
        assert!(rc.rate() > 1e6);
    }

    #[test]
    fn overflow_holds_the_rate_to_what_the_receiver_takes_and_cap_holds() {
        let t0 = Instant::now();
        let mut rc = RateControl::new(
            RateConfig {
                cap: Some(40e6),
                floor: None,
            },
            t0,
        );
        let t = t0 + Duration::from_millis(5);
        step(&mut rc, t, 3, 10, fb(10, 0.0, 30e6, 0));
        assert_eq!(rc.rate(), 25e6);
        step(&mut rc, t, 3, 20, fb(20, 0.0, 30e6, 0));
        assert_eq!(rc.rate(), 40e6, "capped");
        step(&mut rc, t, 3, 30, fb(30, 0.0, 9e6, 5));
        assert_eq!(rc.rate(), 9e6, "an overflowing receiver gets what it took");
    }

    #[test]
    fn a_silent_clr_is_not_followed_and_a_slow_one_leaves_the_pace() {
        let t0 = Instant::now();
        let mut rc = RateControl::new(
            RateConfig {
                cap: None,
                floor: Some(10e6),
            },
            t0,
        );
        let mut t = t0;
        // Node 1 is slow and lossy (3 MB/s), nodes 2 and 3 are fine.
        let mut below = Vec::new();
        for i in 0..200 {
            t += Duration::from_millis(2);
            let seq = 1000 + i;
            below = step(&mut rc, t, 1, seq, fb(seq, 0.2, 3e6, 1));
            step(&mut rc, t, 2, seq, fb(seq, 0.0, 40e6, 0));
            step(&mut rc, t, 3, seq, fb(seq, 0.0, 40e6, 0));
            if !below.is_empty() {
                break;
            }
        }
        assert_eq!(below, vec![1]);
        assert!(t - t0 >= FLOOR_GRACE);
        // Out of the pace, node 2 leads.
        rc.update(t, |n| {
            if n == 1 {
                Constraint::None
            } else {
                Constraint::Paced
            }
        });
        assert_eq!(rc.clr(), Some(2));
        // Node 2 goes silent while leading: the rate does not follow it down.
        let r = rc.rate();
        t += Duration::from_secs(1);
        rc.update(t, |n| {
            if n == 1 {
                Constraint::None
            } else {
                Constraint::Paced
            }
        });
        assert_eq!(rc.clr(), None);
        assert_eq!(rc.rate(), r);
    }

    #[test]
    fn when_most_are_below_the_floor_nobody_leaves() {
        let t0 = Instant::now();
        let mut rc = RateControl::new(
            RateConfig {
                cap: None,
                floor: Some(10e6),
            },
            t0,
        );
        let mut t = t0;
        for i in 0..300 {
            t += Duration::from_millis(2);
            let seq = 1000 + i;
            // Two of three are slow (busy hosts): the group goes at their pace.
            assert!(step(&mut rc, t, 1, seq, fb(seq, 0.2, 3e6, 1)).is_empty());
            assert!(step(&mut rc, t, 2, seq, fb(seq, 0.2, 4e6, 1)).is_empty());
            assert!(step(&mut rc, t, 3, seq, fb(seq, 0.0, 40e6, 0)).is_empty());
        }
        assert!(rc.rate() <= 4e6);
    }

    #[test]
    fn pacer_spaces_datagrams_and_allows_a_short_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        assert!(p.ready(t0));
        let rate = 10e6; // 10 kB per ms
                         // After a pause, 16 segments go at once.
        let mut sent = 0;
        while p.ready(t0) {
            p.on_send(t0, 1514, rate);
            sent += 1;
        }
        assert_eq!(sent, 16);
        // Then one per 151.4 µs.
        let next = p.deadline().unwrap();
        assert!(next > t0);
        // The driver is woken for a batch, not for each datagram: a millisecond's worth.
        let wake = p.wake_at(rate).unwrap();
        assert!((wake - next).as_secs_f64() >= 0.00099 && (wake - next).as_secs_f64() <= 0.001);
        p.on_send(next, 1514, rate);
        let gap = p.deadline().unwrap() - next;
        assert!((gap.as_secs_f64() - 1514.0 / rate).abs() < 1e-6);
    }
}
