//! What goes out for a push, datagram by datagram: the choice between PACE, repair and new
//! work during the pass, and the encoding of blocks, repair symbols and PACE messages.

use super::*;

impl Outbound {
    /// Fills `dst` (exactly one block, zero-padded) with block `i` of stream `s`.
    pub(super) fn read_block<S: Storage>(
        &mut self,
        storage: &mut S,
        s: Stream,
        i: u32,
        dst: &mut [u8],
    ) {
        let r = self.code.block_range(i, self.stream_len(s));
        dst.fill(0);
        let n = (r.end - r.start) as usize;
        match s {
            Stream::Manifest => {
                dst[..n].copy_from_slice(&self.mbytes[r.start as usize..r.end as usize])
            }
            Stream::Plan => dst[..n].copy_from_slice(&self.plan[r.start as usize..r.end as usize]),
            Stream::Payload => {
                for si in self.layout.overlapping(r.start, r.end) {
                    let (idx, off, size) = self.layout.spans[si];
                    let a = r.start.max(off);
                    let b = r.end.min(off + size);
                    let d = &mut dst[(a - r.start) as usize..(b - r.start) as usize];
                    let e = &self.manifest.entries[idx as usize];
                    let mut got = 0;
                    while got < d.len() {
                        match storage.read(e, a - off + got as u64, &mut d[got..]) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => got += k,
                        }
                    }
                    if got < d.len() && self.vanished.insert(idx) {
                        self.progress.push(format!(
                            "warning: {} changed or vanished during the push",
                            show(&e.path)
                        ));
                    }
                }
            }
        }
    }

    /// Produces the next datagram of this transfer, if any is due: a PACE when one is due
    /// during the pass, else the next repair symbol, else the next item of work.
    pub(crate) fn poll<S: Storage>(
        &mut self,
        now: Instant,
        storage: &mut S,
        hdr: &mut HeaderGen,
        buf: &mut [u8],
        pace: &PaceInfo,
    ) -> Option<(Dest, usize)> {
        self.sched.decide_due(now);
        if self.pace_due(now) {
            return Some(self.emit_pace(now, hdr, buf, pace));
        }
        while let Some((s, g, sym)) = self.sched.pop() {
            if let Some(out) = self.emit_repair(storage, hdr, buf, s, g, sym) {
                self.sched.sent(s, g, sym, hdr.seq, now);
                self.sent_datagrams += 1;
                self.repair_datagrams += 1;
                return Some(out);
            }
            self.sched.dropped(s, g, sym);
        }
        loop {
            let w = self.queue.front_mut()?;
            match w {
                Work::Announce { from } => {
                    let from = *from;
                    // One part lists as many targets as a block's room takes (8 bytes each and
                    // a pending bit), so an announce is never larger than a data datagram.
                    // Parts in which every target registered are not repeated.
                    let per = ((self.code.block - 24) * 8 / 65).max(1);
                    let n = self.targets.len();
                    let pending = self.pending_bitmap(|t| t.flags.is_none());
                    let Some(start) = (from..n)
                        .step_by(per)
                        .find(|&p| (p..(p + per).min(n)).any(|i| bit(&pending, i)))
                    else {
                        self.queue.pop_front();
                        continue;
                    };
                    let end = (start + per).min(n);
                    match self.queue.front_mut() {
                        Some(Work::Announce { from }) if end < n => *from = end,
                        _ => {
                            self.queue.pop_front();
                        }
                    }
                    let mut targets_raw = Vec::with_capacity((end - start) * 8);
                    let mut part = vec![0u8; (end - start).div_ceil(8)];
                    for (i, t) in self.targets[start..end].iter_mut().enumerate() {
                        targets_raw.extend_from_slice(&t.node.to_be_bytes());
                        if bit(&pending, start + i) {
                            set_bit(&mut part, i);
                            t.announced += 1;
                            if t.announced == 2 {
                                t.answerable_at = Some(now);
                            }
                        }
                    }
                    let m = Msg::Announce(Announce {
                        xfer: self.xfer,
                        block: self.code.block as u16,
                        group: self.code.k as u16,
                        parity: self.code.parity,
                        manifest_len: self.mbytes.len() as u64,
                        total: self.targets.len() as u16,
                        first: start as u16,
                        targets_raw: &targets_raw,
                        pending: &part,
                    });
                    return Some((Dest::Group, m.encode(&hdr.next(), buf)));
                }
                Work::Blocks { stream, next, end } => {
                    if *next >= *end {
                        self.queue.pop_front();
                        continue;
                    }
                    let (s, i) = (*stream, *next);
                    *next += 1;
                    if (i + 1) % self.code.k == 0 || *next == *end {
                        if self.passed.len() >= 256 {
                            self.passed.pop_front();
                        }
                        self.passed.push_back(((s, i / self.code.k), now));
                    }
                    if s == Stream::Payload && *next == *end && self.waits_for_tail() {
                        self.tail = Some((now, Self::tail_window(pace)));
                        self.deadline = Some(now + Self::tail_window(pace));
                    }
                    self.sent_datagrams += 1;
                    return Some(self.emit_block(storage, hdr, buf, s, i));
                }
                Work::Proactive {
                    stream,
                    group,
                    count,
                } => {
                    let (s, g, n) = (*stream, *group, *count);
                    self.queue.pop_front();
                    let k_g = self.group_len(s, g);
                    self.sched.queue_parity(s, g, k_g, n);
                    return self.poll(now, storage, hdr, buf, pace);
                }
                Work::Poll => {
                    self.queue.pop_front();
                    // A target that answered this round already is not asked again: its
                    // answer came (a repeat would only make it answer past its cohort leader).
                    let round = self.round;
                    let pending = self.pending_bitmap(|t| !t.done && t.answered != round);
                    if self.polled_round != self.round {
                        // Targets are waited for from the first poll of a round on, not
                        // while the pass before it is still being sent.
                        self.polled_round = self.round;
                        self.waiting_since = now;
                        if self.round == 1 {
                            self.pass_over(now);
                        }
                    }
                    let m = Msg::Poll {
                        xfer: self.xfer,
                        round: self.round,
                        pending: &pending,
                    };
                    self.deadline = Some(now + self.interval);
                    return Some((Dest::Group, m.encode(&hdr.next(), buf)));
                }
                Work::Commit => {
                    self.queue.pop_front();
                    let pending = self.commit_bitmap();
                    let vanished: Vec<u8> = self
                        .vanished
                        .iter()
                        .take(2048)
                        .flat_map(|v| v.to_be_bytes())
                        .collect();
                    let m = Msg::Commit {
                        xfer: self.xfer,
                        flags: self.commit_flags(),
                        pending: &pending,
                        vanished_raw: &vanished,
                    };
                    self.deadline = Some(now + self.interval);
                    return Some((Dest::Group, m.encode(&hdr.next(), buf)));
                }
            }
        }
    }

    /// The pass is over: members that left the pace are served now, and must be done within
    /// twice what the floor rate allows for the whole payload (plus a second), or they are
    /// too slow.
    pub(super) fn pass_over(&mut self, now: Instant) {
        let Some(floor) = self.floor else { return };
        let secs = 2.0 * self.layout.len as f64 / floor.max(1) as f64 + 1.0;
        let deadline = now + Duration::from_secs_f64(secs.min(1e6));
        for t in self.targets.iter_mut().filter(|t| t.left_pace.is_some()) {
            t.slow_deadline.get_or_insert(deadline);
        }
    }

    /// Whether the pass's end waits for the tail's repair before the first poll: a push to
    /// many targets. Its receivers NAK the groups of the pass's tail during the pass, as
    /// they do every other group (once the stream's last block arrived, see
    /// `Inbound::due_naks`), with their randomized timers, so that one NAK (and its echo)
    /// stands for many; polled at once, every member that lost something in the last
    /// groups (most of them, at 1,000 members) would answer needy and again once repaired:
    /// a second round of answers from nearly every target.
    pub(super) fn waits_for_tail(&self) -> bool {
        self.targets.len() > TAIL_WAIT_FROM
    }

    /// How long after the pass's last block the tail's NAKs have come: the receivers' NAK
    /// window (six times the sender's holdoff plus a round trip, as `feedback.rs` draws
    /// it), the holdoff, and a round trip.
    pub(super) fn tail_window(pace: &PaceInfo) -> Duration {
        (pace.interval / 2 + pace.rtt * 2) * 7 + pace.rtt * 2
    }

    /// Timer, after a pass that waits for its tail: the first poll goes out once the tail
    /// window has passed and no repair is queued or held off (at most `TAIL_WAIT_MAX`
    /// windows after the pass: NAKs that keep coming are the poll's to gather).
    pub(super) fn tail_poll(&mut self, now: Instant) {
        let Some((end, window)) = self.tail else {
            return;
        };
        if self.phase != Phase::Data
            || self.polled_round != 0
            || !self.queue.is_empty()
            || self.deadline.is_some_and(|d| now < d)
        {
            return;
        }
        let cap = end + window * TAIL_WAIT_MAX;
        if now < cap && (self.sched.backlog() > 0 || self.sched.next_due().is_some()) {
            let next = self
                .sched
                .next_due()
                .unwrap_or(now + Duration::from_millis(1));
            self.deadline = Some(next.min(cap).max(now + Duration::from_micros(100)));
            return;
        }
        self.queue.push_back(Work::Poll);
        self.deadline = None;
    }

    /// Whether the next datagram should be a PACE.
    pub(crate) fn pace_due(&self, now: Instant) -> bool {
        self.phase == Phase::Data && self.has_work() && self.next_pace.is_none_or(|t| now >= t)
    }

    /// How often PACE goes out during the pass.
    pub(super) fn pace_every(pace: &PaceInfo) -> Duration {
        (pace.interval / 2).max(Duration::from_millis(1))
    }

    pub(super) fn emit_pace(
        &mut self,
        now: Instant,
        hdr: &mut HeaderGen,
        buf: &mut [u8],
        pace: &PaceInfo,
    ) -> (Dest, usize) {
        self.next_pace = Some(now + Self::pace_every(pace));
        let backlog =
            self.sched.backlog() as f64 * crate::proto::rate::SEGMENT / pace.rate.max(1.0);
        let us = |d: Duration| d.as_micros().min(u128::from(u32::MAX)) as u32;
        let m = Msg::Pace(Pace {
            xfer: self.xfer,
            rate: pace.rate as u64,
            rtt_us: us(pace.rtt),
            interval_us: us(pace.interval),
            clr: pace.clr,
            backlog_us: us(Duration::from_secs_f64(backlog.min(1e6))),
            uni: pace.uni,
            flags: if pace.data_limited {
                wire::PACE_DATA_LIMITED
            } else {
                0
            },
            echo: pace.echo.map_or(0, |e| e.0),
            echo_ts: pace.echo.map_or(0, |e| e.1),
            echo_hold_us: pace.echo.map_or(0, |e| e.2),
        });
        (Dest::Group, m.encode(&hdr.next(), buf))
    }

    /// Blocks in group `g` of stream `s`.
    pub(super) fn group_len(&self, s: Stream, g: u32) -> u32 {
        let nblocks = self.code.blocks(self.stream_len(s));
        self.code.group_range(g, nblocks).len() as u32
    }

    /// Writes one repair symbol; `None` if the group has no such symbol.
    pub(super) fn emit_repair<S: Storage>(
        &mut self,
        storage: &mut S,
        hdr: &mut HeaderGen,
        buf: &mut [u8],
        s: Stream,
        g: u32,
        sym: Sym,
    ) -> Option<(Dest, usize)> {
        match sym {
            Sym::Source(b) => {
                let nblocks = self.code.blocks(self.stream_len(s));
                let range = self.code.group_range(g, nblocks);
                let i = range.start.checked_add(b)?;
                if !range.contains(&i) {
                    return None;
                }
                Some(self.emit_block(storage, hdr, buf, s, i))
            }
            Sym::Parity(idx) => {
                let data = self.parity_symbol(storage, s, g, idx)?;
                let m = Msg::Parity {
                    xfer: self.xfer,
                    stream: s,
                    group: g,
                    index: idx,
                    data: &data,
                };
                Some((Dest::Group, m.encode(&hdr.next(), buf)))
            }
        }
    }

    /// Writes source block `i` of stream `s` as a BLOCK datagram into `buf`.
    pub(super) fn emit_block<S: Storage>(
        &mut self,
        storage: &mut S,
        hdr: &mut HeaderGen,
        buf: &mut [u8],
        s: Stream,
        i: u32,
    ) -> (Dest, usize) {
        let r = self.code.block_range(i, self.stream_len(s));
        let n = (r.end - r.start) as usize;
        let mut tmp = std::mem::take(&mut hdr.scratch);
        tmp.resize(self.code.block, 0);
        self.read_block(storage, s, i, &mut tmp);
        let m = Msg::Block {
            xfer: self.xfer,
            stream: s,
            idx: i,
            data: &tmp[..n],
        };
        let len = m.encode(&hdr.next(), buf);
        hdr.scratch = tmp;
        (Dest::Group, len)
    }

    pub(super) fn parity_symbol<S: Storage>(
        &mut self,
        storage: &mut S,
        s: Stream,
        g: u32,
        idx: u16,
    ) -> Option<Vec<u8>> {
        let nblocks = self.code.blocks(self.stream_len(s));
        let range = self.code.group_range(g, nblocks);
        if range.is_empty() {
            return None;
        }
        let pos = self.cache.iter().position(|(k, _)| *k == (s, g));
        let all = match pos {
            Some(p) => {
                let e = self.cache.remove(p)?;
                self.cache.push_back(e);
                &self.cache.back()?.1
            }
            None => {
                let mut sources = Vec::with_capacity(range.len());
                for i in range {
                    let mut b = vec![0u8; self.code.block];
                    self.read_block(storage, s, i, &mut b);
                    sources.push(b);
                }
                let all = self.code.encode(&sources, 0..self.code.parity).ok()?;
                if self.cache.len() >= PARITY_CACHE {
                    self.cache.pop_front();
                }
                self.cache.push_back(((s, g), all));
                &self.cache.back()?.1
            }
        };
        all.get(idx as usize).cloned()
    }
}
