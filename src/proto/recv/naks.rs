//! NAKs of one inbound transfer: which groups are over and incomplete during the pass, the
//! randomized timers that let one member's NAK (or the sender's echo of it) stand for the
//! others', and the answer to a poll; the NAK entries and their encoding.

use std::time::{Duration, Instant};

use super::*;

/// How long a member waits before NAKing a group during the pass (NAK suppression, as
/// NORM's and TFMCC's randomized feedback timers): `T × (b + max(0, 1 + ln(x) / ln(N))) / B`,
/// `x` uniform in (0, 1], `N` the group size, `T` the time the sender's repair takes to come
/// back, `B` = [`NAK_BANDS`] and `b = B − min(need, B)`: a member that needs more symbols
/// draws in an earlier band (its NAK would change more), so the first NAK tends to ask for
/// as much as anyone needs, and its echo cancels the timers of every member that needs no
/// more; within a band, exponentially biased, only about one member of `N` draws early.
/// (Scaling the logarithm by `need` instead made one member in six that needs 3 symbols
/// draw no wait at all: ten NAKs per group at once in a 200-member push; dividing the
/// window by `need` let the needs' windows overlap: four per group.) With `N` ≤ 2 there is
/// nothing to suppress: no wait.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NakSpread {
    /// `T`.
    pub(crate) window: Duration,
    /// The group size (members that may NAK), at least 1.
    pub(crate) members: usize,
}

impl NakSpread {
    /// No backoff (a small group).
    #[cfg(test)]
    pub(crate) const NONE: Self = Self {
        window: Duration::ZERO,
        members: 1,
    };

    pub(super) fn draw(&self, x: f64, need: u32) -> Duration {
        if self.members <= 2 || self.window.is_zero() {
            return Duration::ZERO;
        }
        let n = (self.members as f64).ln();
        if self.members < crate::proto::meter::SMALL_GROUP {
            // Few members: little to suppress, and their NAKs should not wait long.
            let f = (1.0 + f64::from(need) * x.ln() / n).max(0.0);
            return self.window.mul_f64(f.min(1.0));
        }
        let f = (1.0 + x.ln() / n).clamp(0.0, 1.0);
        let band = NAK_BANDS - need.clamp(1, NAK_BANDS);
        self.window
            .mul_f64((f64::from(band) + f) / f64::from(NAK_BANDS))
    }
}

/// Bands of the NAK timer window: a member needing `n` symbols draws in band
/// `NAK_BANDS − min(n, NAK_BANDS)` (see [`NakSpread`]).
const NAK_BANDS: u32 = 8;

/// A NAK entry this receiver will send (see [`crate::proto::wire::NakEntry`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Want {
    pub(crate) stream: Stream,
    pub(crate) group: u32,
    pub(crate) need: u32,
    pub(crate) map: Vec<u8>,
}

impl Want {
    pub(super) fn new(
        stream: Stream,
        group: u32,
        need: usize,
        missing: impl Iterator<Item = u32>,
    ) -> Self {
        let mut map = Vec::new();
        for i in missing {
            let byte = i as usize / 8;
            if map.len() <= byte {
                map.resize(byte + 1, 0u8);
            }
            map[byte] |= 1 << (i % 8);
        }
        Self {
            stream,
            group,
            need: need.max(1) as u32,
            map,
        }
    }

    /// An entry of the sender's echo: `need` symbols of group `group`, no map.
    pub(crate) fn echo(stream: Stream, group: u32, need: u32) -> Self {
        Self {
            stream,
            group,
            need,
            map: Vec::new(),
        }
    }

    fn entry(&self) -> crate::proto::wire::NakEntry<'_> {
        crate::proto::wire::NakEntry {
            stream: self.stream,
            group: self.group,
            need: self.need,
            missing: &self.map,
        }
    }
}

/// See [`Inbound::scan_key`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScanKey {
    frontier: [u32; 3],
    plan: bool,
    incomplete: Option<usize>,
    held: u64,
    headroom: u64,
    over: bool,
    /// The spacing of NAKs and the wait before a group is NAKed again: the timer set with
    /// them holds while they do not shrink.
    gap: Duration,
    renak: Duration,
}

impl ScanKey {
    /// Whether a look with `self` saw everything a look with `now` would.
    fn covers(&self, now: &ScanKey) -> bool {
        let same = |k: &ScanKey| (k.frontier, k.plan, k.incomplete, k.held, k.headroom, k.over);
        same(self) == same(now) && now.gap >= self.gap && now.renak >= self.renak
    }
}

impl Inbound {
    /// The NAK entry of payload group `g`, if it is incomplete.
    fn payload_want(&self, g: u32) -> Option<Want> {
        let p = self.payload.as_ref()?;
        if !p.incomplete.contains(&g) {
            return None;
        }
        let range = self.code.group_range(g, p.nblocks);
        let have = range.clone().filter(|&i| bs_get(&p.have, i)).count();
        let par = p.parity.get(&g).map_or(0, BTreeMap::len);
        let start = range.start;
        let need = range.len().saturating_sub(have + par);
        let missing = range.filter(|&i| !bs_get(&p.have, i)).map(|i| i - start);
        Some(Want::new(Stream::Payload, g, need, missing))
    }

    /// Repair (or a late block) for group `g` of `s` arrived: a NAK for it waits longer.
    pub(super) fn repair_seen(&mut self, now: Instant, s: Stream, g: u32) {
        if let Some(t) = self.naked.get_mut(&(s, g)) {
            *t = now;
        }
        // Repair for a group whose NAK waits out its backoff: another member asked first
        // (suppression). What it leaves missing is asked for once it stops coming.
        if self.backoff.remove(&(s, g)).is_some() {
            self.naked.insert((s, g), now);
            // Its re-NAK may be due before the time the last look set.
            self.scanned = None;
        }
    }

    /// The sender echoed that some member needs `need` symbols of group `g` of `s`: if this
    /// member needs no more, the repair on its way serves it too, and its NAK is cancelled
    /// (asked for again only if that repair does not come, after the re-NAK wait).
    pub(crate) fn on_echo(&mut self, now: Instant, s: Stream, g: u32, need: u32) {
        if s == Stream::Manifest || self.pass_over {
            return;
        }
        // The latest echo stands: within a repair cycle the sender echoes only needs above
        // what it echoed before, and a new cycle's echo replaces the last one's.
        self.echoed.insert((s, g), (need, now));
        if self.echoed.len() > ECHOES_KEPT {
            self.echoed.pop_first();
        }
        if self.backoff.contains_key(&(s, g)) && self.want((s, g)).is_none_or(|w| w.need <= need) {
            self.backoff.remove(&(s, g));
            self.naked.insert((s, g), now);
            self.scanned = None;
        }
    }

    /// A uniform draw in (0, 1].
    pub(super) fn uniform(&mut self) -> f64 {
        crate::proto::meter::uniform(&mut self.rng)
    }

    /// Builds the answer to a poll of `round`: every incomplete group, at most `limit` of
    /// them (the first ones: no more fit the answer, and a hostile announce can claim
    /// millions of groups).
    pub(crate) fn naks(&mut self, now: Instant, round: u32, limit: usize) -> Vec<Want> {
        if round > 0 && self.payload.is_some() {
            self.pass_over = true;
        }
        let mut out = Vec::new();
        if !self.mstream.complete() && self.manifest.is_none() {
            self.mstream
                .naks(&self.code, Stream::Manifest, &mut out, limit);
        }
        if let Some(p) = &self.pstream {
            p.naks(&self.code, Stream::Plan, &mut out, limit);
        }
        if let Some(p) = &self.payload {
            for &g in p.incomplete.iter().take(limit.saturating_sub(out.len())) {
                out.extend(self.payload_want(g));
            }
        }
        for w in &out {
            if w.stream != Stream::Manifest {
                self.naked.insert((w.stream, w.group), now);
            }
        }
        out
    }

    /// The NAK entries due now during the pass: groups that are over and incomplete, and
    /// not NAKed within `renak` (nor repaired since); none if the last NAK left less than
    /// `gap` ago. At most `limit`.
    pub(crate) fn due_naks(
        &mut self,
        now: Instant,
        gap: Duration,
        renak: Duration,
        spread: NakSpread,
        limit: usize,
    ) -> Vec<Want> {
        // Called on every datagram that arrives: the look at every incomplete group is
        // skipped while nothing that could make one due has changed (a group becomes due when
        // the frontier passes it, when memory frees up for it to be held, or at a time the
        // last look set the timer to).
        let key = self.scan_key(gap, renak);
        if self.scanned.is_some_and(|k| k.covers(&key)) && self.nak_timer.is_none_or(|t| now < t) {
            return Vec::new();
        }
        self.scanned = Some(key);
        self.nak_timer = None;
        if self.pass_over || self.commit_started() {
            return Vec::new();
        }
        let hold = self.hold_limit();
        let k = self.code.k.max(1);
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        let mut consider =
            |key: (Stream, u32), due: &mut Vec<(Stream, u32)>| match self.naked.get(&key) {
                Some(t) if now < *t + renak => {
                    next = Some(next.map_or(*t + renak, |n: Instant| n.min(*t + renak)));
                }
                _ => due.push(key),
            };
        // The plan is over once the payload has started (or its later groups came).
        if let Some(ps) = &self.pstream {
            let over = if self.frontier[Stream::Payload as usize] > 0 {
                u32::MAX
            } else {
                self.frontier[Stream::Plan as usize].saturating_sub(SLACK) / k
            };
            for g in 0..self.code.groups(ps.len).min(over) {
                if ps.want(&self.code, Stream::Plan, g).is_some() {
                    consider((Stream::Plan, g), &mut due);
                }
            }
        }
        if let Some(p) = &self.payload {
            let front = self.frontier[Stream::Payload as usize];
            let over = if self.tail_naks && front >= self.code.blocks(p.layout.len) {
                // The stream's last block came: the pass is sent, and the sender waits for
                // the tail's NAKs before it polls.
                u32::MAX
            } else {
                front.saturating_sub(SLACK) / k
            };
            let code = self.code;
            for &g in p.incomplete.range(..over) {
                // A group that has no room to be held now is repaired after the pass, once
                // earlier groups completed (memory slides along the payload).
                if p.may_hold(&code, g, hold) {
                    consider((Stream::Payload, g), &mut due);
                }
            }
        }
        // Each due group first waits out a random backoff (suppression: repair arriving
        // meanwhile, asked for by another member, cancels it); groups whose backoff is over
        // are NAKed.
        let mut ripe = Vec::new();
        for key in due {
            let at = match self.backoff.get(&key) {
                Some(&at) => at,
                None => {
                    let need = self.want(key).map_or(1, |w| w.need.max(1));
                    if self
                        .echoed
                        .get(&key)
                        .is_some_and(|&(e, at)| e >= need && now < at + renak)
                    {
                        // Someone asked for as much just now: wait for that repair. Once
                        // the echo is older than the re-NAK wait, the repair it announced
                        // came and left this member short (it lost some of it), or never
                        // came: this member asks for itself (an echo remembered for good
                        // silenced such a member until the end-of-pass poll).
                        self.naked.insert(key, now);
                        let at = now + renak;
                        next = Some(next.map_or(at, |n: Instant| n.min(at)));
                        continue;
                    }
                    let d = spread.draw(self.uniform(), need);
                    self.backoff.insert(key, now + d);
                    now + d
                }
            };
            if at <= now {
                ripe.push(key);
            } else {
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        }
        let due = ripe;
        if due.is_empty() {
            self.nak_timer = next;
            return Vec::new();
        }
        if let Some(last) = self.last_nak {
            if now < last + gap {
                self.nak_timer = Some(last + gap);
                return Vec::new();
            }
        }
        let mut out = Vec::new();
        for (s, g) in due.into_iter().take(limit) {
            self.backoff.remove(&(s, g));
            if let Some(w) = self.want((s, g)) {
                self.naked.insert((s, g), now);
                out.push(w);
            }
        }
        self.last_nak = Some(now);
        self.nak_timer = Some(now + gap.min(renak));
        out
    }

    /// What decides which groups [`Inbound::due_naks`] looks at, besides time: the frontiers,
    /// the incomplete groups, the memory held and allowed, the phase, and the NAK spacing.
    fn scan_key(&self, gap: Duration, renak: Duration) -> ScanKey {
        let p = self.payload.as_ref();
        ScanKey {
            gap,
            renak,
            frontier: self.frontier,
            plan: self.pstream.is_some(),
            incomplete: p.map(|p| p.incomplete.len()),
            held: p.map_or(0, |p| p.held),
            headroom: self.headroom,
            over: self.pass_over || self.commit_started(),
        }
    }

    /// The NAK entry of group `key` (plan or payload) now, if it is incomplete.
    fn want(&self, key: (Stream, u32)) -> Option<Want> {
        let (s, g) = key;
        match s {
            Stream::Payload => self.payload_want(g),
            _ => self
                .pstream
                .as_ref()
                .and_then(|ps| ps.want(&self.code, s, g)),
        }
    }

    /// When [`Inbound::due_naks`] should be called again, if anything may become due.
    pub(crate) fn nak_timer(&self) -> Option<Instant> {
        self.nak_timer
    }
}

/// Encodes NAK entries into parts that each fit `room` bytes.
pub(crate) fn nak_parts(entries: &[Want], room: usize) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut w = Writer::new();
    let mut len = 0;
    for want in entries {
        let e = want.entry();
        let need = e.encoded_len();
        if len + need > room && len > 0 {
            parts.push(std::mem::take(&mut w).into_vec());
            len = 0;
        }
        e.write(&mut w);
        len += need;
    }
    parts.push(w.into_vec());
    parts
}
