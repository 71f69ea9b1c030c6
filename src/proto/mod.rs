//! The protocol engine: a sans-IO state machine. No sockets, no clock, no files.
//!
//! [`Engine`] is driven by four kinds of method:
//! - **input**: [`Engine::handle_datagram`] (bytes from the network, unsealed),
//!   [`Engine::handle_rx_overflow`] (the socket dropped datagrams: `SO_RXQ_OVFL`),
//!   [`Engine::handle_timeout`] (the deadline from `poll_timeout` passed), and the answers to
//!   storage work that finished elsewhere: [`Engine::handle_inspected`],
//!   [`Engine::handle_committed`]; and, with sealing, [`Engine::handle_peer_verified`] (the
//!   driver verified a new sender);
//! - **commands**: [`Engine::handle_command`] (start a push, leave the cluster);
//! - **output**, to drain after every input in this order: [`Engine::poll_transmit`] until it
//!   returns `None`, then [`Engine::poll_event`] until `None`, then [`Engine::poll_timeout`]
//!   for the next wake-up;
//! - **getters**: [`Engine::members`], [`Engine::stats`], [`Engine::storage`],
//!   [`Engine::inbound_memory`], [`Engine::remembered`].
//!
//! What any sender can make the engine hold or send is bounded by the caps in [`limits`].
//!
//! Time is always an argument and must never go backwards; nothing here reads a clock, so a
//! simulated cluster runs deterministically from a seed. Each call does bounded work.
//! File contents pass through the [`storage::Storage`] trait. Pushes are paced by a timer
//! (`poll_transmit` returns `None` until the next datagram is due, and `poll_timeout` says
//! when): the rate comes from receivers' feedback (`rate.rs`), capped by
//! [`Config::rate_limit`].

mod aggregate;
mod api;
mod dispatch;
mod feedback;
mod inbound;
pub mod limits;
pub mod manifest;
pub mod members;
mod membership;
mod meter;
pub mod outcome;
pub mod paths;
mod rate;
mod records;
mod recv;
pub mod relay;
pub mod repair;
pub mod restore;
mod sched;
mod send;
pub mod storage;
pub mod version;
pub mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use api::{
    Command, CommandError, Config, Dest, Event, MemberReport, PushReport, PushRequest, Stats,
    Transmit, DEFAULT_MIN_RATE,
};
pub use limits::{MAX_INBOUND, MAX_MANIFEST, MAX_MEMBERS};
pub use send::NOT_COMMITTED;

use limits::{Refusal, ReplyBudget};
use manifest::Manifest;
use members::{Change, LeaveReason, MemberInfo, Members};
use membership::{JOIN_REPEATS, JOIN_RETRY};
use meter::Meter;
use rate::{Pacer, RateConfig, RateControl};
use records::Records;
use recv::{CommitState, Inbound};
use repair::Code;
use send::{Outbound, Phase};
use storage::{CommitOutcome, Inspection, Storage, XferKey};
use version::{Foreign, Versions};
use wire::{Header, Heartbeat, Msg, WireError, HB_JOIN, HB_RECEIVER};

/// Writes headers with increasing sequence numbers.
#[derive(Debug)]
pub(crate) struct HeaderGen {
    node: u64,
    cluster: u16,
    seq: u64,
    pub(crate) scratch: Vec<u8>,
}

impl HeaderGen {
    pub(crate) fn next(&mut self) -> Header {
        self.seq += 1;
        Header {
            version: wire::VERSION,
            kind: 0,
            flags: 0,
            key_id: 0,
            cluster: self.cluster,
            node: self.node,
            seq: self.seq,
        }
    }
}

/// The inbound transfer a datagram belongs to, marked as heard now; `Err(known)` when there
/// is none (`known`: it finished recently, so the datagram is a harmless straggler rather
/// than one to count as dropped).
fn heard_inbound<'a>(
    inbound: &'a mut BTreeMap<XferKey, Inbound>,
    records: &Records,
    key: XferKey,
    now: Instant,
) -> Result<&'a mut Inbound, bool> {
    match inbound.get_mut(&key) {
        Some(ib) => {
            ib.last_heard = now;
            Ok(ib)
        }
        None => Err(records.contains(&key)),
    }
}

/// A small deterministic PRNG (xorshift64*).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The protocol engine of one process. See the module doc for the calling contract.
pub struct Engine<S: Storage> {
    cfg: Config,
    storage: S,
    members: Members,
    versions: Versions,
    outbound: BTreeMap<u32, Outbound>,
    inbound: BTreeMap<XferKey, Inbound>,
    records: Records,
    replies: ReplyBudget,
    /// Control datagrams to send at once: destination, datagram, and for a NAK or FEEDBACK
    /// when the sequence number it echoes arrived (its hold is stamped as it leaves).
    ctl: VecDeque<(Dest, Vec<u8>, Option<Instant>)>,
    events: VecDeque<Event>,
    stats: Stats,
    hdr: HeaderGen,
    /// Sequence numbers the driver took for itself ([`Engine::skip_seq_to`]).
    seq_skipped: u64,
    rng: Rng,
    next_heartbeat: Instant,
    joined: bool,
    /// Joins still to repeat while this node has heard no member ([`JOIN_REPEATS`]).
    joins_left: u32,
    /// Members that came or went (or became heard directly) so far: what the driver's cached
    /// relay plan was made from is stale when this moved.
    member_changes: u64,
    info: Vec<u8>,
    next_xfer: u32,
    code: Code,
    /// Send rate control (pushes from this node) and the pacing timer.
    rate: RateControl,
    pacer: Pacer,
    /// What this node measures of each sender it receives from.
    meters: BTreeMap<u64, Meter>,
    /// When the kernel received the datagram being handled.
    rx_time: Instant,
    /// Whether the datagram being handled came through the group (see `paths.rs`).
    rx_group: bool,
    /// Header sequence number of the datagram being handled (heartbeat loss, `paths.rs`).
    rx_seq: u64,
    paths: paths::Paths,
    /// Relaying: this node's plan as a sender, its assignments as a relay (`relay.rs`).
    relays: relay::Relays,
    rr: u32,
    /// The latest time passed in.
    clock: Instant,
    /// Answers this node gathers as a cohort leader (`aggregate.rs`).
    gathering: aggregate::Gathering,
    /// How many times `heartbeat` apart this node's heartbeats go, and how many times
    /// `member_expiry` a member may stay silent (see [`members::heartbeat_scale`]).
    hb_scale: u32,
    /// Outcomes of atomic pushes this node sent or got the go for, and the pushes it holds
    /// in doubt after a restart (`outcome.rs`).
    outcomes: outcome::Outcomes,
    doubts: outcome::Doubts,
}

impl<S: Storage> Engine<S> {
    /// A new engine; it announces itself on the first `poll_transmit`.
    pub fn new(cfg: Config, storage: S, now: Instant) -> Self {
        let block = wire::block_size(cfg.mtu, cfg.sealed);
        let k = u32::from(cfg.group_size.clamp(1, 1024));
        let mut rng = Rng(cfg.seed ^ cfg.node_id ^ 0x9e37_79b9_7f4a_7c15 | 1);
        let next_xfer = (rng.next() as u32) | 1;
        Self {
            code: Code {
                block,
                k,
                parity: (k as u16 / 2).max(1),
            },
            rate: RateControl::new(
                RateConfig {
                    cap: cfg.rate_limit.map(|r| r as f64),
                    floor: cfg.min_rate.map(|r| r as f64),
                },
                now,
            ),
            pacer: Pacer::default(),
            meters: BTreeMap::new(),
            rx_time: now,
            rx_group: true,
            rx_seq: 0,
            paths: paths::Paths::default(),
            seq_skipped: 0,
            relays: relay::Relays::default(),
            hdr: HeaderGen {
                node: cfg.node_id,
                cluster: cfg.cluster,
                seq: 0,
                scratch: Vec::new(),
            },
            cfg,
            storage,
            members: Members::default(),
            versions: Versions::default(),
            outbound: BTreeMap::new(),
            inbound: BTreeMap::new(),
            records: Records::default(),
            replies: ReplyBudget::default(),
            ctl: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            rng,
            next_heartbeat: now,
            joined: false,
            joins_left: JOIN_REPEATS,
            member_changes: 0,
            info: Vec::new(),
            next_xfer,
            rr: 0,
            clock: now,
            hb_scale: 1,
            gathering: Default::default(),
            outcomes: Default::default(),
            doubts: Default::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Known members (not including this node).
    pub fn members(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.iter()
    }

    /// How many times a member came, went or was first heard directly so far (each a
    /// `MemberUp` or `MemberDown` event): anything derived from the member table, such as a
    /// relay plan, is stale once this moved.
    pub fn member_changes(&self) -> u64 {
        self.member_changes
    }

    /// Peers heard speaking a protocol version this node does not (refused; not members).
    pub fn foreign(&self) -> impl Iterator<Item = &Foreign> {
        self.versions.iter()
    }

    /// Input: header sequence numbers up to `last` were taken outside the engine (the driver's
    /// sealer numbers its handshakes from the same counter, so nonces never repeat): the
    /// engine's next datagram is numbered after them. Receivers see those numbers as gaps in
    /// this node's sequence, so PACE counts them with the unicast datagrams they forgive.
    /// The engine's numbers must reach receivers unchanged: they echo them, and the round-trip
    /// times of rate control are read from that echo.
    pub fn skip_seq_to(&mut self, last: u64) {
        if last > self.hdr.seq {
            self.seq_skipped += last - self.hdr.seq;
            self.hdr.seq = last;
        }
    }

    /// Of push `xfer` (one this node sends): payload bytes its first pass has multicast, the
    /// payload's length (both 0 until every target registered) and the manifest entry whose
    /// contents go out now. `None` once it ended.
    pub fn push_bytes(&self, xfer: u32) -> Option<(u64, u64, Option<u32>)> {
        self.outbound.get(&xfer).map(|o| o.pass_bytes())
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage, mutably.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Changes how long a silent member stays in the table and how long a push waits for a
    /// silent target (a daemon's SIGHUP reload). Takes effect at the next deadline computed.
    pub fn set_member_times(&mut self, expiry: Duration, timeout: Duration) {
        self.cfg.member_expiry = expiry;
        self.cfg.member_timeout = timeout;
    }

    /// Sets the opaque status published in heartbeats (at most 512 bytes are sent); a
    /// change goes out in a heartbeat soon (others see a new last push at once).
    pub fn set_info(&mut self, mut info: Vec<u8>) {
        info.truncate(512);
        if info != self.info && self.joined {
            self.answer_soon();
        }
        self.info = info;
    }

    /// Number of pushes in flight from this node, and inbound transfers in progress.
    pub fn transfers(&self) -> (usize, usize) {
        (self.outbound.len(), self.inbound.len())
    }

    /// Bytes the inbound transfers hold (by the accounting of [`limits`]: decoded manifests,
    /// manifest streams, held and early payload).
    pub fn inbound_memory(&self) -> u64 {
        limits::inbound_memory(&self.inbound, None)
    }

    /// Finished inbound transfers remembered (to answer late repeats), and addresses whose
    /// reply budget is tracked.
    pub fn remembered(&self) -> (usize, usize) {
        (self.records.len(), self.replies.len())
    }

    /// Block size used for streams.
    pub fn block_size(&self) -> usize {
        self.code.block
    }

    fn max_dgram(&self) -> usize {
        let seal = if self.cfg.sealed {
            wire::SEAL_OVERHEAD
        } else {
            0
        };
        self.cfg
            .mtu
            .clamp(576, wire::MAX_DATAGRAM + wire::IP_UDP_OVERHEAD)
            - wire::IP_UDP_OVERHEAD
            - seal
    }

    /// Encodes a control message (its sequence number is set when it is sent).
    fn encode_ctl(&self, m: &Msg<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; wire::MAX_DATAGRAM];
        let h = Header {
            version: wire::VERSION,
            kind: 0,
            flags: 0,
            key_id: 0,
            cluster: self.cfg.cluster,
            node: self.cfg.node_id,
            seq: 0,
        };
        let n = m.encode(&h, &mut buf);
        buf.truncate(n);
        buf
    }

    fn queue(&mut self, dest: Dest, m: &Msg<'_>) {
        let buf = self.encode_ctl(m);
        self.ctl.push_back((dest, buf, None));
    }

    /// Input: one datagram, as [`Engine::handle_datagram_at`], saying whether it came through
    /// the multicast group (`to_group`) or was sent to us alone: per-member paths
    /// ([`Engine::path`]) are learned from it. The other inputs take every datagram as one
    /// that came through the group.
    pub fn handle_datagram_via(
        &mut self,
        now: Instant,
        received: Instant,
        from: SocketAddr,
        to_group: bool,
        bytes: &[u8],
    ) {
        self.rx_group = to_group;
        self.handle_datagram_at(now, received, from, bytes);
        self.rx_group = true;
    }

    /// Input: one datagram (already unsealed by the driver) from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.handle_datagram_at(now, now, from, bytes);
    }

    /// Input: one datagram, which the kernel received at `received` (at most `now`; from
    /// `SO_TIMESTAMPNS`): round-trip times for rate control then leave out the time it
    /// waited for this process.
    pub fn handle_datagram_at(
        &mut self,
        now: Instant,
        received: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        self.clock = self.clock.max(now);
        let received = received.min(now);
        self.rx_time = received;
        self.stats.received += 1;
        if !self.members.is_direct_addr(&from) {
            self.replies
                .received(from, bytes.len() + wire::IP_UDP_OVERHEAD, now);
        }
        let (h, msg) = match wire::decode(bytes) {
            Ok(x) => x,
            Err(WireError::UnknownKind(_)) => {
                self.stats.dropped_unknown_kind += 1;
                return;
            }
            Err(WireError::BadVersion(_)) => {
                // Never parsed further (the layout may differ); the peer is named, not misread.
                self.stats.dropped_version += 1;
                if let Some(f) = self.versions.refused(now, from, bytes) {
                    if f.node != self.cfg.node_id {
                        self.events.push_back(Event::VersionRefused(f.clone()));
                    }
                }
                return;
            }
            Err(_) => {
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        if h.flags & wire::FLAG_SEALED != 0 {
            self.stats.dropped_sealed += 1;
            return;
        }
        if h.cluster != self.cfg.cluster {
            self.stats.dropped_cluster += 1;
            return;
        }
        if h.node == self.cfg.node_id {
            self.stats.own += 1;
            return;
        }
        self.members.touch(now, h.node);
        self.rx_seq = h.seq;
        self.meter_datagram(received, h.node, h.seq, bytes.len());
        if matches!(
            msg,
            Msg::Nak { .. } | Msg::Feedback(_) | Msg::Report { .. } | Msg::Result { .. }
        ) {
            self.stats.feedback_in += 1;
        }
        if matches!(msg, Msg::Nak { .. }) {
            self.stats.naks_in += 1;
        }
        if self.dispatch(now, from, h.node, msg) {
            self.stats.accepted += 1;
        } else {
            self.stats.dropped_context += 1;
        }
    }

    fn after_inbound(&mut self, now: Instant, key: XferKey) {
        self.inbound_feedback(now, key);
        let Some(ib) = self.inbound.get_mut(&key) else {
            return;
        };
        if ib.manifest.is_none() && ib.manifest_ready() {
            let bytes = ib.take_manifest_bytes();
            let block = ib.code.block as u64;
            match self.decode_manifest(key, &bytes, block) {
                Ok((m, memory)) => {
                    let ib = self.inbound.get_mut(&key).unwrap();
                    ib.digest = m.tree_digest(&bytes);
                    ib.manifest = Some(m);
                    ib.manifest_memory = memory;
                    ib.inspecting = true;
                    ib.last_progress = now;
                    let m = ib.manifest.as_ref().unwrap();
                    match self.storage.inspect(key, m) {
                        Some(insp) => self.handle_inspected(now, key, insp),
                        None => self.events.push_back(Event::Inspect(key)),
                    }
                }
                // Not a datagram count: the block that completed the manifest was already
                // counted as accepted. The sender is told why, and the event says it too.
                Err(why) => self.refuse_inbound(now, key, why),
            }
        }
    }

    /// Input: the storage finished an inspection it answered "pending" to.
    pub fn handle_inspected(&mut self, now: Instant, key: XferKey, mut insp: Inspection) {
        let Some(ib) = self.inbound.get_mut(&key) else {
            return;
        };
        if ib.inspection.is_some() || ib.manifest.is_none() {
            return;
        }
        if let Some(why) = insp.refused.take() {
            self.refuse_inbound(now, key, why);
            return;
        }
        // Deletions are listed for a dry run, and for a real `--delete` so the sender can
        // name them (`-v`, `-i`: rsync's `deleting` lines); the count always travels.
        let list = ib
            .manifest
            .as_ref()
            .is_some_and(|m| m.options.dry_run || m.options.delete);
        ib.set_inspection(insp, list);
        let report = ib.report.clone().unwrap();
        self.send_report(key, &report, false);
    }

    /// Input: the storage finished a commit it answered "pending" to.
    pub fn handle_committed(&mut self, now: Instant, key: XferKey, outcome: CommitOutcome) {
        let Some(ib) = self.inbound.get_mut(&key) else {
            return;
        };
        if matches!(ib.commit, CommitState::Preparing) {
            // `--atomic`: the storage's answer to PREPARE (`send/atomic.rs`).
            ib.prepared(&mut self.storage, outcome);
            if matches!(ib.commit, CommitState::Done(..)) {
                self.commit_event(key);
            }
            self.send_result(key, false, true);
            self.retire_if_done(now, key);
            return;
        }
        if matches!(ib.commit, CommitState::Pending) {
            ib.commit = Inbound::finished(outcome);
            self.commit_event(key);
            self.send_result(key, false, false);
            self.retire_if_done(now, key);
        }
    }

    fn commit_event(&mut self, key: XferKey) {
        let Some(ib) = self.inbound.get(&key) else {
            return;
        };
        if let CommitState::Done(_, out) = &ib.commit {
            let origin = self
                .members
                .get(key.origin)
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let dry_run = ib.manifest.as_ref().is_some_and(|m| m.options.dry_run);
            self.events.push_back(Event::Applied {
                key,
                origin,
                outcome: out.clone(),
                dry_run,
                digest: ib.digest,
                started_ms: ib.manifest.as_ref().and_then(|m| m.started_ms),
            });
        }
    }

    /// Sends inbound transfer `key`'s report; `asked`: it answers an announce (rather than
    /// goes out by itself once the manifest is inspected).
    fn send_report(&mut self, key: XferKey, report: &[u8], asked: bool) {
        let Some(ib) = self.inbound.get(&key) else {
            return;
        };
        let dest = self.reply_addr(key.origin, ib.sender);
        let room = self.max_dgram() - wire::HEADER_LEN - 8;
        let chunks: Vec<&[u8]> = if report.is_empty() {
            vec![&[][..]]
        } else {
            report.chunks(room).collect()
        };
        let parts = chunks.len().min(u16::MAX as usize) as u16;
        let now = self.clock;
        for (i, c) in chunks.iter().take(parts as usize).enumerate() {
            self.answer(
                now,
                key,
                dest,
                &Msg::Report {
                    xfer: key.xfer,
                    part: i as u16,
                    parts,
                    data: c,
                },
                (wire::kind::ANNOUNCE, 0),
                asked && i == 0,
                None,
            );
        }
    }

    /// Sends the RESULT of inbound transfer `key`; `asked`: it answers a COMMIT (with
    /// PREPARE: `prepare`), rather than reports a commit that just finished.
    fn send_result(&mut self, key: XferKey, asked: bool, prepare: bool) {
        let Some(ib) = self.inbound.get(&key) else {
            return;
        };
        let dest = self.reply_addr(key.origin, ib.sender);
        let (status, files, bytes, deleted, msg) = match &ib.commit {
            CommitState::Pending
            | CommitState::Preparing
            | CommitState::None
            | CommitState::Queued { .. } => (wire::RESULT_BUSY, 0, 0, 0, String::new()),
            CommitState::Ready => (wire::RESULT_READY, 0, 0, 0, String::new()),
            CommitState::Done(s, o) => (*s, o.files, o.bytes, o.deleted, o.errors.join("; ")),
        };
        let mut msg = msg.into_bytes();
        msg.truncate(1000);
        let now = self.clock;
        self.answer(
            now,
            key,
            dest,
            &Msg::Result {
                xfer: key.xfer,
                status,
                files,
                bytes,
                deleted,
                message: &msg,
            },
            (wire::kind::COMMIT, u32::from(prepare)),
            asked,
            None,
        );
    }

    fn answer_poll(&mut self, now: Instant, key: XferKey, round: u32) {
        let room = self.max_dgram() - wire::HEADER_LEN - 21;
        if round == 1 {
            if let Some(m) = self.meters.get_mut(&key.origin) {
                m.reset_losses();
            }
        }
        let (seen, hold_us) = self.meters.get(&key.origin).map_or((0, 0), |m| m.echo(now));
        let echo_at = self.meters.get(&key.origin).and_then(Meter::echo_at);
        let Some(sender) = self.inbound.get(&key).map(|ib| ib.sender) else {
            return;
        };
        let dest = self.reply_addr(key.origin, sender);
        let Some(ib) = self.inbound.get_mut(&key) else {
            return;
        };
        // At most 16 parts are sent, and an entry takes at least 4 bytes: listing more
        // entries than that would change nothing but the time and memory spent.
        const MAX_PARTS: usize = 16;
        let entries = ib.naks(now, round, MAX_PARTS * room / 4);
        let done = ib.complete() && entries.is_empty();
        let parts = recv::nak_parts(&entries, room);
        let n = parts.len().min(MAX_PARTS);
        for (i, p) in parts.iter().take(n).enumerate() {
            let mut flags = 0;
            if i + 1 == n {
                flags |= wire::NAK_FINAL;
            }
            if done {
                flags |= wire::NAK_DONE;
            }
            let m = Msg::Nak {
                xfer: key.xfer,
                round,
                flags,
                seen,
                hold_us,
                entries: p,
            };
            if round > 0 {
                self.answer(
                    now,
                    key,
                    dest,
                    &m,
                    (wire::kind::POLL, round),
                    i == 0,
                    echo_at,
                );
            } else {
                self.queue_reply_echo(dest, &m, echo_at);
            }
        }
    }

    fn after_outbound(&mut self, now: Instant, xfer: u32) {
        let members = &self.members;
        let slack = self.heartbeat_slack();
        if let Some(ob) = self.outbound.get_mut(&xfer) {
            ob.on_timeout(now, &self.cfg, |n| {
                members
                    .get(n)
                    .map(|m| if m.direct { m.last_seen + slack } else { now })
            });
        }
        self.collect_outbound(now);
    }

    fn collect_outbound(&mut self, now: Instant) {
        let mut done = Vec::new();
        let me = self.cfg.node_id;
        for (x, ob) in self.outbound.iter_mut() {
            for line in ob.take_progress() {
                self.events.push_back(Event::Progress { xfer: *x, line });
            }
            // An atomic push's outcome, for members that restart in doubt (`outcome.rs`).
            match ob.atomic_outcome() {
                Some(c) if c || ob.phase == Phase::Done => self.outcomes.note(
                    XferKey {
                        origin: me,
                        xfer: *x,
                    },
                    c,
                ),
                _ => {}
            }
            if ob.phase == Phase::Done {
                done.push(*x);
            }
        }
        for x in done {
            let ob = self.outbound.remove(&x).unwrap();
            let report = ob.report(now);
            // A target given up on may still be alive (stopped, then resumed): tell it, so it
            // drops what it staged now rather than after the transfer timeout.
            for m in report.members.iter().filter(|m| !m.ok) {
                let reason = format!(
                    "the sender gave up on this member: {}",
                    m.error.as_deref().unwrap_or("failed")
                );
                self.queue(
                    Dest::Unicast(m.addr),
                    &Msg::Abort {
                        xfer: x,
                        reason: reason.as_bytes(),
                    },
                );
            }
            self.events.push_back(Event::PushDone(report));
        }
    }

    /// Current send rate in bytes per second while pushing (`None`: no push in flight).
    pub fn rate(&self) -> Option<f64> {
        (!self.outbound.is_empty()).then(|| self.rate.rate())
    }

    /// Command input.
    pub fn handle_command(&mut self, now: Instant, cmd: Command) -> Result<u32, CommandError> {
        self.clock = self.clock.max(now);
        match cmd {
            Command::Leave => {
                self.queue(Dest::Group, &Msg::Leave);
                Ok(0)
            }
            Command::Push(req) => {
                if req.targets.is_empty() {
                    return Err(CommandError::NoTargets);
                }
                if req.targets.len() > wire::MAX_TARGETS {
                    return Err(CommandError::TooManyTargets(req.targets.len()));
                }
                let payload = req.manifest.payload_bytes();
                if self.code.blocks(payload) > wire::MAX_BLOCK_INDEX
                    || self.code.blocks(req.manifest.encode().len() as u64) > wire::MAX_BLOCK_INDEX
                {
                    return Err(CommandError::TooLarge);
                }
                let mut targets = Vec::new();
                for t in &req.targets {
                    let m = self
                        .members
                        .get(*t)
                        .ok_or(CommandError::UnknownTarget(*t))?;
                    if !targets.iter().any(|(n, _, _)| n == t) {
                        targets.push((*t, m.name.clone(), m.addr));
                    }
                }
                let xfer = self.next_xfer;
                self.next_xfer = self.next_xfer.wrapping_add(1).max(1);
                if self.outbound.is_empty() {
                    self.rate.restart();
                }
                let mut ob = Outbound::new(
                    xfer,
                    now,
                    req.manifest,
                    targets,
                    self.code,
                    req.max_delete,
                    &self.cfg,
                );
                ob.set_atomic(req.atomic);
                self.outbound.insert(xfer, ob);
                Ok(xfer)
            }
        }
    }

    /// Runs commits that were asked for (after their BUSY answer went out).
    fn run_queued_commits(&mut self, now: Instant) {
        let queued: Vec<XferKey> = self
            .inbound
            .iter()
            .filter(|(_, ib)| matches!(ib.commit, CommitState::Queued { .. }))
            .map(|(k, _)| *k)
            .collect();
        for key in queued {
            let ib = self.inbound.get_mut(&key).unwrap();
            let CommitState::Queued { no_delete, skip } =
                std::mem::replace(&mut ib.commit, CommitState::None)
            else {
                continue;
            };
            ib.commit(&mut self.storage, no_delete, &skip);
            self.commit_event(key);
            self.send_result(key, false, false);
            self.retire_if_done(now, key);
        }
    }

    /// Timer input: call when `poll_timeout` has passed (spurious calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        self.run_queued_commits(now);
        if now >= self.next_heartbeat {
            let direct = self.members.direct_count();
            // Alone so far: the join may have gone out before anyone listened (members
            // started together), or this node does not hear the group, so nobody's answer
            // reaches it. Joins are repeated, soon and then backing off, so the others
            // learn it within a fraction of a heartbeat rather than at its next one.
            let repeat = self.joined && direct == 0 && self.joins_left > 0;
            let join = !self.joined || repeat;
            self.joined = true;
            self.hb_scale = members::heartbeat_scale(direct + 1, self.hb_scale);
            self.heartbeat(now, join);
            if repeat {
                self.joins_left -= 1;
            }
            let mut next = self.cfg.heartbeat * self.hb_scale;
            // Spread over 0.8-1.2 of the interval, as RTCP does: members that started
            // together (a power-on, a fleet restart) would otherwise heartbeat in step, a
            // burst of the whole group at once, every interval.
            let spread = next.as_micros() as u64 * 2 / 5;
            if spread > 0 {
                next = next - next / 5 + Duration::from_micros(self.rng.next() % spread);
            }
            if direct == 0 && self.joins_left > 0 {
                // 100 ms after the join, then 200, 400, 800 ms apart (never beyond the
                // heartbeat interval).
                next = next.min(JOIN_RETRY * (1 << (JOIN_REPEATS - self.joins_left)));
            }
            self.next_heartbeat = now + next;
        }
        let mut ch = Vec::new();
        self.members.expire(now, self.member_expiry(), &mut ch);
        self.apply_changes(ch);
        self.versions.expire(now, self.member_expiry());
        let xfers: Vec<u32> = self.outbound.keys().copied().collect();
        let slack = self.heartbeat_slack();
        for x in xfers {
            let members = &self.members;
            if let Some(ob) = self.outbound.get_mut(&x) {
                if ob.deadline().is_none_or(|d| now >= d) || !ob.has_work() {
                    ob.on_timeout(now, &self.cfg, |n| {
                        members
                            .get(n)
                            .map(|m| if m.direct { m.last_seen + slack } else { now })
                    });
                }
            }
        }
        self.probe_silent(now);
        self.collect_outbound(now);
        if !self.outbound.is_empty() {
            self.update_rate(now);
        }
        self.inbound_timers(now);
        self.gathering_timers(now);
        self.doubt_timers(now);
        // Receivers: abandon transfers whose sender went silent; forget old records.
        let stale: Vec<XferKey> = self
            .inbound
            .iter()
            .filter(|(_, ib)| {
                now.saturating_duration_since(ib.last_heard) >= self.cfg.transfer_timeout
            })
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.abandon(now, k, "sender went silent");
        }
        self.records.expire(now, self.cfg.transfer_timeout * 2);
        self.replies.expire(now);
        self.prune_meters();
    }

    /// Output: the next datagram to send, written into `buf` (at least `MAX_DATAGRAM` bytes).
    /// Control datagrams (heartbeats, answers) go at once; a push's datagrams are paced, so
    /// `None` may mean "not yet": see `poll_timeout`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.clock = self.clock.max(now);
        if !self.joined {
            self.handle_timeout(now);
        }
        if let Some((dest, mut d, echo_at)) = self.ctl.pop_front() {
            let h = self.hdr.next();
            d[16..24].copy_from_slice(&h.seq.to_be_bytes());
            if let Some(at) = echo_at {
                // The hold ends now, not when the reply was queued: time spent here behind
                // the rest of a batch (file writes, a busy CPU) is not the path's delay.
                let hold = now.saturating_duration_since(at).as_micros();
                wire::set_echo_hold(&mut d, hold.min(u128::from(u32::MAX)) as u32);
            }
            buf[..d.len()].copy_from_slice(&d);
            self.stats.sent += 1;
            self.stats.sent_bytes += d.len() as u64;
            if matches!(dest, Dest::Unicast(_)) {
                self.stats.sent_unicast += 1;
            }
            self.rate.on_sent(now, h.seq);
            return Some(Transmit { dest, len: d.len() });
        }
        if self.outbound.is_empty() || !self.pacer.ready(now) {
            return None;
        }
        let keys: Vec<u32> = self.outbound.keys().copied().collect();
        for i in 0..keys.len() {
            let x = keys[(self.rr as usize + i) % keys.len()];
            let mut pace = self.pace_info();
            if self.outbound[&x].pace_due(now) {
                pace.echo = self.rate.take_echo(now);
            }
            let ob = self.outbound.get_mut(&x).unwrap();
            if let Some((dest, len)) = ob.poll(now, &mut self.storage, &mut self.hdr, buf, &pace) {
                self.rr = self.rr.wrapping_add(1);
                self.stats.sent += 1;
                self.stats.sent_bytes += len as u64;
                let pace = self.pace_rate();
                self.pacer.on_send(now, len + rate::WIRE_OVERHEAD, pace);
                self.rate.on_paced(now, len + rate::WIRE_OVERHEAD);
                self.rate.on_sent(now, self.hdr.seq);
                return Some(Transmit { dest, len });
            }
        }
        None
    }

    /// Output: the next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Output: when to call `handle_timeout` next (`None`: only on input). While a push has
    /// datagrams waiting, this includes when the pacing lets the next one go.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_heartbeat;
        if let Some(e) = self.members.next_expiry(self.member_expiry()) {
            t = t.min(e);
        }
        for ob in self.outbound.values() {
            if let Some(d) = ob.deadline() {
                t = t.min(d);
            }
            if ob.has_work() {
                // A pacer that has sent nothing yet lets the first datagram go at once (a
                // driver that waited for the transfer's own deadline instead started every
                // push one poll interval, 20 ms, late).
                let p = self.pacer.wake_at(self.pace_rate()).unwrap_or(self.clock);
                t = t.min(p);
            }
        }
        if let Some(g) = self.gathering_timeout() {
            t = t.min(g);
        }
        if let Some(d) = self.doubt_timeout() {
            t = t.min(d);
        }
        for ib in self.inbound.values() {
            t = t.min(ib.last_heard + self.cfg.transfer_timeout);
            if matches!(ib.commit, CommitState::Queued { .. }) {
                t = t.min(ib.last_heard);
            }
            if let Some(n) = ib.nak_timer() {
                t = t.min(n);
            }
        }
        Some(t)
    }

    /// Abandons every transfer (shutting down): inbound ones are dropped from storage,
    /// outbound ones are aborted on the wire so receivers clean up at once.
    pub fn abort_all(&mut self, now: Instant, reason: &str) {
        for key in std::mem::take(&mut self.inbound).into_keys() {
            self.storage.abort(key);
        }
        for (xfer, mut ob) in std::mem::take(&mut self.outbound) {
            if let Some(c) = ob.atomic_outcome() {
                let origin = self.cfg.node_id;
                self.outcomes.note(XferKey { origin, xfer }, c);
            }
            self.queue(
                Dest::Group,
                &Msg::Abort {
                    xfer,
                    reason: reason.as_bytes(),
                },
            );
            ob.abort(reason);
            self.events.push_back(Event::PushDone(ob.report(now)));
        }
    }

    /// Whether output is waiting that pacing holds back (the driver should come back at
    /// `poll_timeout`).
    pub fn wants_transmit(&self) -> bool {
        !self.ctl.is_empty() || self.outbound.values().any(Outbound::has_work)
    }
}
