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

mod feedback;
mod inbound;
pub mod limits;
pub mod manifest;
pub mod members;
mod meter;
mod rate;
mod records;
mod recv;
pub mod repair;
mod sched;
mod send;
pub mod storage;
pub mod version;
pub mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use limits::{MAX_INBOUND, MAX_MANIFEST, MAX_MEMBERS};

use limits::{Refusal, ReplyBudget};
use manifest::Manifest;
use members::{Change, LeaveReason, MemberInfo, Members};
use meter::Meter;
use rate::{Pacer, RateConfig, RateControl};
use records::Records;
use recv::{CommitState, Inbound};
use repair::Code;
use send::{Outbound, Phase};
use storage::{CommitOutcome, Inspection, Storage, XferKey};
use version::{Foreign, Versions};
use wire::{Header, Heartbeat, Msg, WireError, HB_JOIN, HB_RECEIVER};

/// Default floor rate (`--min-rate`), bytes per second: 10 MiB/s (about 84 Mbit/s), so a
/// member on a 100 Mbit/s link stays in the group's pace.
pub const DEFAULT_MIN_RATE: u64 = 10 << 20;

/// Engine settings. Defaults suit a LAN.
#[derive(Clone, Debug)]
pub struct Config {
    /// This process's node id (random per start).
    pub node_id: u64,
    /// Member name.
    pub name: String,
    /// Software version announced in heartbeats.
    pub version: String,
    /// Cluster id; datagrams with another id are dropped.
    pub cluster: u16,
    /// Path MTU (bytes, IP packet).
    pub mtu: usize,
    /// Whether datagrams will be sealed by the driver (reserves room for the tag).
    pub sealed: bool,
    /// Accept pushes from others.
    pub receive: bool,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// A member not heard for this long is dropped from the table.
    pub member_expiry: Duration,
    /// A push target silent this long while the push waits for it has failed.
    pub member_timeout: Duration,
    /// A target that acknowledged the commit (BUSY) may take this long to finish it (a
    /// durable commit of many files on a slow disk blocks the member's loop meanwhile).
    pub commit_timeout: Duration,
    /// A receiver abandons an inbound transfer whose sender is silent this long.
    pub transfer_timeout: Duration,
    /// First retry interval of polls (doubles while nobody answers).
    pub poll_interval: Duration,
    /// Largest retry interval.
    pub max_poll_interval: Duration,
    /// Upper bound on answering a join with an early heartbeat (random delay below it).
    pub join_jitter: Duration,
    /// Rate cap in bytes per second, on the wire (`None`: what rate control allows).
    pub rate_limit: Option<u64>,
    /// Floor in bytes per second (`--min-rate`): a target that cannot receive this fast
    /// leaves the group's pace and is served after the pass (`None`: none leaves).
    pub min_rate: Option<u64>,
    /// Source blocks per erasure-code group.
    pub group_size: u16,
    /// Seed of the engine's random numbers (join jitter, transfer ids).
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: 1,
            name: "makuo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            cluster: 0,
            mtu: 1500,
            sealed: false,
            receive: true,
            heartbeat: Duration::from_millis(1000),
            member_expiry: Duration::from_millis(5000),
            member_timeout: Duration::from_millis(5000),
            commit_timeout: Duration::from_secs(120),
            transfer_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(20),
            max_poll_interval: Duration::from_millis(500),
            join_jitter: Duration::from_millis(30),
            rate_limit: None,
            min_rate: Some(DEFAULT_MIN_RATE),
            group_size: 128,
            seed: 1,
        }
    }
}

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// The multicast group.
    Group,
    /// One member's reply address.
    Unicast(SocketAddr),
}

/// A datagram written into the caller's buffer by [`Engine::poll_transmit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dest: Dest,
    /// Bytes written at the start of the buffer.
    pub len: usize,
}

/// A push to start.
#[derive(Clone, Debug)]
pub struct PushRequest {
    /// What to push.
    pub manifest: Manifest,
    /// Node ids to push to (the driver decides: live members, remembered ones, `-t`).
    pub targets: Vec<u64>,
    /// Veto all deletions when any target would delete more than this.
    pub max_delete: Option<u64>,
}

/// Commands.
#[derive(Clone, Debug)]
pub enum Command {
    /// Start a push; its id comes back from `handle_command`.
    Push(PushRequest),
    /// Say goodbye to the cluster (before exiting).
    Leave,
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// No targets.
    NoTargets,
    /// More targets than one transfer can carry.
    TooManyTargets(usize),
    /// A target is not a known member.
    UnknownTarget(u64),
    /// The payload exceeds what one transfer can address.
    TooLarge,
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoTargets => f.write_str("no member to push to"),
            Self::TooManyTargets(n) => {
                write!(
                    f,
                    "{n} targets; one push serves at most {}",
                    wire::MAX_TARGETS
                )
            }
            Self::UnknownTarget(n) => write!(f, "unknown member {n:016x}"),
            Self::TooLarge => f.write_str("push too large for one transfer"),
        }
    }
}

impl std::error::Error for CommandError {}

/// One member's outcome of a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberReport {
    /// Node id.
    pub node: u64,
    /// Name.
    pub name: String,
    /// Reply address.
    pub addr: SocketAddr,
    /// Everything applied.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// Entries applied (from its result).
    pub files: u32,
    /// Bytes written (from its result).
    pub bytes: u64,
    /// Paths deleted.
    pub deleted: u32,
    /// Paths `--delete` would remove (from its report).
    pub would_delete: u64,
    /// Entries it reported as changed.
    pub planned_files: u32,
    /// Bytes of contents it needed.
    pub planned_bytes: u64,
    /// `(entry index, change flags)` of every changed entry.
    pub changes: Vec<(u32, manifest::change::Flags)>,
    /// Paths it would delete (dry runs list them).
    pub deletions: Vec<Vec<u8>>,
    /// It could not keep the floor rate and left the group's pace (why); it was served after
    /// the others (and failed as too slow if that took too long).
    pub left_pace: Option<String>,
}

/// The outcome of a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushReport {
    /// Transfer id.
    pub xfer: u32,
    /// Per target.
    pub members: Vec<MemberReport>,
    /// Entries whose source changed or vanished while being sent (not applied anywhere).
    pub vanished: Vec<u32>,
    /// `--max-delete` vetoed all deletions.
    pub max_delete_hit: bool,
    /// Time from start to the last result.
    pub elapsed: Duration,
    /// Payload bytes multicast (each once, plus repair).
    pub payload_bytes: u64,
    /// Data and repair datagrams of this transfer.
    pub datagrams: u64,
    /// Of which repair.
    pub repair_datagrams: u64,
}

/// Something the driver should know.
#[derive(Clone, Debug)]
pub enum Event {
    /// A member appeared.
    MemberUp(MemberInfo),
    /// A member left or expired.
    MemberDown(MemberInfo, LeaveReason),
    /// A progress line of a push.
    Progress {
        /// Transfer.
        xfer: u32,
        /// Text.
        line: String,
    },
    /// A push finished.
    PushDone(PushReport),
    /// This receiver's storage must inspect a manifest (it answered "pending").
    Inspect(XferKey),
    /// This receiver applied (or failed) a push from another member.
    Applied {
        /// Which transfer.
        key: XferKey,
        /// Sender's name, if known.
        origin: String,
        /// What happened.
        outcome: CommitOutcome,
        /// Whether it was a dry run.
        dry_run: bool,
        /// MD5 of the pushed manifest (same on every member that got this push).
        digest: [u8; 16],
    },
    /// An inbound transfer was abandoned (sender silent or aborted).
    Abandoned(XferKey, String),
    /// A peer speaks a protocol version this node does not: its datagrams are refused. At
    /// most once per peer per [`version::NOTICE_EVERY`] (log [`Foreign::describe`]).
    VersionRefused(Foreign),
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to `handle_datagram`.
    pub received: u64,
    /// Datagrams emitted.
    pub sent: u64,
    /// Of which unicast.
    pub sent_unicast: u64,
    /// Bytes emitted.
    pub sent_bytes: u64,
    /// Dropped: not decodable (by reason).
    pub dropped_malformed: u64,
    /// Dropped: unknown message kind.
    pub dropped_unknown_kind: u64,
    /// Dropped: bad version.
    pub dropped_version: u64,
    /// Dropped: another cluster.
    pub dropped_cluster: u64,
    /// Dropped: still sealed (the driver could not open it).
    pub dropped_sealed: u64,
    /// Dropped: well-formed but not acceptable in context (unknown transfer, bad sizes).
    pub dropped_context: u64,
    /// Own datagrams looped back.
    pub own: u64,
    /// Datagrams accepted and acted on.
    pub accepted: u64,
    /// Inbound transfers refused with a reason (over a cap).
    pub refused_transfers: u64,
    /// Inbound transfers not admitted for now (no slot or memory; the sender retries).
    pub deferred_transfers: u64,
    /// Idle inbound transfers evicted to make room for a new one.
    pub evicted_transfers: u64,
    /// Replies withheld: to an address that is not a member, past what it sent.
    pub replies_withheld: u64,
    /// Datagrams the kernel dropped because this node's receive buffer was full, as the
    /// driver reported them ([`Engine::handle_rx_overflow`]).
    pub rx_overflows: u64,
    /// Received: NAKs, feedback, and the others of the transfer kinds a sender receives
    /// (reports, results), for measuring feedback.
    pub feedback_in: u64,
    /// Of which NAKs.
    pub naks_in: u64,
}

impl Stats {
    /// All dropped datagrams.
    pub fn dropped(&self) -> u64 {
        self.dropped_malformed
            + self.dropped_unknown_kind
            + self.dropped_version
            + self.dropped_cluster
            + self.dropped_sealed
            + self.dropped_context
    }
}

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
    ctl: VecDeque<(Dest, Vec<u8>)>,
    events: VecDeque<Event>,
    stats: Stats,
    hdr: HeaderGen,
    rng: Rng,
    next_heartbeat: Instant,
    joined: bool,
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
    rr: u32,
    /// The latest time passed in.
    clock: Instant,
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
            info: Vec::new(),
            next_xfer,
            rr: 0,
            clock: now,
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

    /// Peers heard speaking a protocol version this node does not (refused; not members).
    pub fn foreign(&self) -> impl Iterator<Item = &Foreign> {
        self.versions.iter()
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

    /// Sets the opaque status published in heartbeats (at most 512 bytes are sent).
    pub fn set_info(&mut self, info: Vec<u8>) {
        self.info = info;
        self.info.truncate(512);
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
        self.ctl.push_back((dest, buf));
    }

    fn heartbeat(&mut self, now: Instant, join: bool) {
        // Pass along the members we heard ourselves, as many as fit.
        let room = self.max_dgram()
            - wire::HEADER_LEN
            - 20
            - self.cfg.name.len().min(255)
            - self.cfg.version.len().min(255)
            - self.info.len();
        let mut known = vec![0u8; room];
        let mut c = wire::Cursor::new(&mut known);
        let mut count = 0u16;
        for m in self.members.iter().filter(|m| m.direct) {
            let k = wire::Known {
                node: m.node,
                addr: m.addr,
                age_ms: now
                    .saturating_duration_since(m.last_seen)
                    .as_millis()
                    .min(u32::MAX as u128) as u32,
                flags: m.flags,
                name: m.name.as_bytes(),
            };
            if wire::known_len(&k) > c.room() {
                break;
            }
            c.u64(k.node);
            wire::write_addr(&mut c, &k.addr);
            c.u32(k.age_ms);
            c.u8(k.flags);
            c.bytes8(k.name);
            count += 1;
        }
        let kl = c.len();
        let mut flags = if self.cfg.receive { HB_RECEIVER } else { 0 };
        if join {
            flags |= HB_JOIN;
        }
        let name = self.cfg.name.clone();
        let version = self.cfg.version.clone();
        let info = self.info.clone();
        self.queue(
            Dest::Group,
            &Msg::Heartbeat(Heartbeat {
                flags,
                proto_min: wire::MIN_VERSION,
                proto_max: wire::VERSION,
                interval_ms: self.cfg.heartbeat.as_millis() as u32,
                name: name.as_bytes(),
                version: version.as_bytes(),
                info: &info,
                known_raw: &known[..kl],
                known_count: count,
            }),
        );
    }

    /// Schedules an early heartbeat at a random moment within the join jitter, so a newcomer
    /// learns this member soon and answers from many members do not collide.
    fn answer_soon(&mut self) {
        let j = self.cfg.join_jitter.as_micros().max(1) as u64;
        let at = self.clock + Duration::from_micros(self.rng.next() % j);
        self.next_heartbeat = self.next_heartbeat.min(at);
    }

    /// Input: the driver verified a node it had not heard from before (sealed clusters: the
    /// node answered a fresh challenge, see `seal/handshake.rs`). Its first datagrams were dropped
    /// unverified, a join among them, so this member answers as it answers a join: with a
    /// heartbeat soon.
    pub fn handle_peer_verified(&mut self, now: Instant, node: u64) {
        self.clock = self.clock.max(now);
        if !self.members.get(node).is_some_and(|m| m.direct) {
            self.answer_soon();
        }
    }

    fn apply_changes(&mut self, changes: Vec<Change>) {
        for c in changes {
            self.events.push_back(match c {
                Change::Up(m) => Event::MemberUp(m),
                Change::Down(m, r) => Event::MemberDown(m, r),
            });
        }
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

    fn dispatch(&mut self, now: Instant, from: SocketAddr, node: u64, msg: Msg<'_>) -> bool {
        match msg {
            Msg::Heartbeat(hb) => {
                self.versions.forget(node);
                let mut ch = Vec::new();
                let new = self.members.heard(
                    now,
                    self.cfg.node_id,
                    node,
                    from,
                    &hb,
                    self.cfg.member_expiry,
                    &mut ch,
                );
                self.apply_changes(ch);
                let Some(new) = new else {
                    return false;
                };
                if hb.flags & HB_JOIN != 0 && new {
                    self.answer_soon();
                }
                true
            }
            Msg::Leave => {
                let mut ch = Vec::new();
                self.members.leave(node, &mut ch);
                self.apply_changes(ch);
                true
            }
            Msg::Announce(a) => self.on_announce(now, from, node, &a),
            Msg::Block {
                xfer,
                stream,
                idx,
                data,
            } => {
                let key = XferKey { origin: node, xfer };
                let headroom = self.headroom();
                let ib = match heard_inbound(&mut self.inbound, &self.records, key, now) {
                    Ok(ib) => ib,
                    Err(known) => return known,
                };
                ib.headroom = headroom;
                let before = ib.progress();
                let ok = ib.on_block(now, &mut self.storage, stream, idx, data);
                if ib.progress() != before {
                    ib.last_progress = now;
                }
                self.after_inbound(now, key);
                ok
            }
            Msg::Parity {
                xfer,
                stream,
                group,
                index,
                data,
            } => {
                let key = XferKey { origin: node, xfer };
                let headroom = self.headroom();
                let ib = match heard_inbound(&mut self.inbound, &self.records, key, now) {
                    Ok(ib) => ib,
                    Err(known) => return known,
                };
                ib.headroom = headroom;
                let before = ib.progress();
                let ok = ib.on_parity(now, &mut self.storage, stream, group, index, data);
                if ib.progress() != before {
                    ib.last_progress = now;
                }
                self.after_inbound(now, key);
                ok
            }
            Msg::Poll {
                xfer,
                round,
                pending,
            } => {
                let key = XferKey { origin: node, xfer };
                let ib = match heard_inbound(&mut self.inbound, &self.records, key, now) {
                    Ok(ib) => ib,
                    Err(known) => {
                        self.answer_from_record(key, pending, false);
                        return known;
                    }
                };
                if manifest::bit(pending, ib.pos) {
                    self.answer_poll(now, key, round);
                }
                true
            }
            Msg::Commit {
                xfer,
                flags,
                pending,
                vanished_raw,
            } => {
                let key = XferKey { origin: node, xfer };
                let ib = match heard_inbound(&mut self.inbound, &self.records, key, now) {
                    Ok(ib) => ib,
                    Err(known) => {
                        self.answer_from_record(key, pending, true);
                        return known;
                    }
                };
                if !manifest::bit(pending, ib.pos) {
                    return true;
                }
                if matches!(ib.commit, CommitState::None) {
                    let skip: Vec<u32> = vanished_raw
                        .chunks_exact(4)
                        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
                        .collect();
                    ib.commit = CommitState::Queued {
                        no_delete: flags & wire::COMMIT_NO_DELETE != 0,
                        skip,
                    };
                }
                self.send_result(key);
                true
            }
            Msg::Abort { xfer, reason } => {
                let key = XferKey { origin: node, xfer };
                let committed = self
                    .inbound
                    .get(&key)
                    .is_some_and(|ib| matches!(ib.commit, CommitState::Done(..)));
                if committed {
                    return true;
                }
                if let Some(ib) = self.inbound.remove(&key) {
                    self.records
                        .insert(key, ib.pos, ib.sender, None, false, now);
                    self.storage.abort(key);
                    self.events.push_back(Event::Abandoned(
                        key,
                        String::from_utf8_lossy(reason).into_owned(),
                    ));
                }
                true
            }
            Msg::Report {
                xfer,
                part,
                parts,
                data,
            } => match self.outbound.get_mut(&xfer) {
                Some(ob) if ob.is_target(node) => {
                    ob.on_report(now, node, part, parts, data);
                    self.after_outbound(now, xfer);
                    true
                }
                _ => false,
            },
            Msg::Nak {
                xfer,
                round,
                flags,
                seen,
                hold_us,
                entries,
            } => {
                let (holdoff, settle) = self.repair_timing();
                match self.outbound.get_mut(&xfer) {
                    Some(ob) if ob.is_target(node) => {
                        ob.on_nak(
                            now, node, round, flags, seen, entries, holdoff, settle, &self.cfg,
                        );
                        self.on_nak_echo(now, node, seen, hold_us);
                        self.after_outbound(now, xfer);
                        true
                    }
                    _ => false,
                }
            }
            Msg::Pace(p) => self.on_pace(now, node, &p),
            Msg::Feedback(f) => self.on_feedback(now, node, &f),
            Msg::Result {
                xfer,
                status,
                files,
                bytes,
                deleted,
                message,
            } => match self.outbound.get_mut(&xfer) {
                Some(ob) if ob.is_target(node) => {
                    ob.on_result(now, node, status, files, bytes, deleted, message);
                    self.after_outbound(now, xfer);
                    true
                }
                _ => false,
            },
        }
    }

    fn on_announce(
        &mut self,
        now: Instant,
        from: SocketAddr,
        node: u64,
        a: &wire::Announce<'_>,
    ) -> bool {
        if !self.cfg.receive {
            return true;
        }
        let Some(pos) = a.targets().position(|t| t == self.cfg.node_id) else {
            return true;
        };
        let key = XferKey {
            origin: node,
            xfer: a.xfer,
        };
        if self.records.contains(&key) {
            self.answer_from_record(key, a.pending, false);
            return true;
        }
        let fresh = !self.inbound.contains_key(&key);
        if fresh {
            let code = Code {
                block: a.block as usize,
                k: a.group as u32,
                parity: a.parity,
            };
            if a.manifest_len == 0
                || code.block > wire::MAX_DATAGRAM - wire::HEADER_LEN - wire::PARITY_HDR
                || code.blocks(a.manifest_len) > wire::MAX_BLOCK_INDEX
            {
                return false;
            }
            let reserve = Inbound::reservation(&code, a.manifest_len);
            match limits::admit(&self.inbound, key, from, a.manifest_len, reserve, now) {
                Ok(victim) => {
                    if let Some(v) = victim {
                        self.abandon(now, v, "evicted: idle while slots ran out");
                        self.stats.evicted_transfers += 1;
                    }
                }
                Err(Refusal::Later) => {
                    self.stats.deferred_transfers += 1;
                    return true;
                }
                Err(Refusal::Reason(why)) => {
                    self.refuse(now, key, from, pos, why);
                    return true;
                }
            }
            self.inbound
                .insert(key, Inbound::new(key, from, pos, code, a.manifest_len, now));
            self.meter_for(node);
        }
        let ib = self.inbound.get_mut(&key).unwrap();
        ib.last_heard = now;
        ib.sender = from;
        // The first announce of a transfer travels just ahead of its manifest: answering it
        // would only report the whole manifest missing and have it resent as parity. The
        // report goes out by itself once the manifest is in; later announces are answered.
        if manifest::bit(a.pending, pos) && !fresh {
            if let Some(report) = ib.report.clone() {
                self.send_report(key, &report);
            } else {
                // Not ready: say which manifest groups are missing (or just that we live).
                self.answer_poll(now, key, 0);
            }
        }
        true
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
    pub fn handle_inspected(&mut self, _now: Instant, key: XferKey, insp: Inspection) {
        let Some(ib) = self.inbound.get_mut(&key) else {
            return;
        };
        if ib.inspection.is_some() || ib.manifest.is_none() {
            return;
        }
        let list = ib.manifest.as_ref().is_some_and(|m| m.options.dry_run);
        ib.set_inspection(insp, list);
        let report = ib.report.clone().unwrap();
        self.send_report(key, &report);
    }

    /// Input: the storage finished a commit it answered "pending" to.
    pub fn handle_committed(&mut self, now: Instant, key: XferKey, outcome: CommitOutcome) {
        let Some(ib) = self.inbound.get_mut(&key) else {
            return;
        };
        if matches!(ib.commit, CommitState::Pending) {
            ib.commit = Inbound::finished(outcome);
            self.commit_event(key);
            self.send_result(key);
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
            });
        }
    }

    fn send_report(&mut self, key: XferKey, report: &[u8]) {
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
        for (i, c) in chunks.iter().take(parts as usize).enumerate() {
            self.queue_reply(
                dest,
                &Msg::Report {
                    xfer: key.xfer,
                    part: i as u16,
                    parts,
                    data: c,
                },
            );
        }
    }

    fn send_result(&mut self, key: XferKey) {
        let Some(ib) = self.inbound.get(&key) else {
            return;
        };
        let dest = self.reply_addr(key.origin, ib.sender);
        let (status, files, bytes, deleted, msg) = match &ib.commit {
            CommitState::Pending | CommitState::None | CommitState::Queued { .. } => {
                (wire::RESULT_BUSY, 0, 0, 0, String::new())
            }
            CommitState::Done(s, o) => (*s, o.files, o.bytes, o.deleted, o.errors.join("; ")),
        };
        let mut msg = msg.into_bytes();
        msg.truncate(1000);
        self.queue_reply(
            dest,
            &Msg::Result {
                xfer: key.xfer,
                status,
                files,
                bytes,
                deleted,
                message: &msg,
            },
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
            self.queue_reply(
                dest,
                &Msg::Nak {
                    xfer: key.xfer,
                    round,
                    flags,
                    seen,
                    hold_us,
                    entries: p,
                },
            );
        }
    }

    fn after_outbound(&mut self, now: Instant, xfer: u32) {
        let members = &self.members;
        if let Some(ob) = self.outbound.get_mut(&xfer) {
            ob.on_timeout(now, &self.cfg, |n| {
                members
                    .get(n)
                    .map(|m| if m.direct { m.last_seen } else { now })
            });
        }
        self.collect_outbound(now);
    }

    fn collect_outbound(&mut self, now: Instant) {
        let mut done = Vec::new();
        for (x, ob) in self.outbound.iter_mut() {
            for line in ob.take_progress() {
                self.events.push_back(Event::Progress { xfer: *x, line });
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
                let ob = Outbound::new(
                    xfer,
                    now,
                    req.manifest,
                    targets,
                    self.code,
                    req.max_delete,
                    &self.cfg,
                );
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
            self.send_result(key);
            self.retire_if_done(now, key);
        }
    }

    /// Timer input: call when `poll_timeout` has passed (spurious calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        self.run_queued_commits(now);
        if now >= self.next_heartbeat {
            let join = !self.joined;
            self.joined = true;
            self.heartbeat(now, join);
            self.next_heartbeat = now + self.cfg.heartbeat;
        }
        let mut ch = Vec::new();
        self.members.expire(now, self.cfg.member_expiry, &mut ch);
        self.apply_changes(ch);
        self.versions.expire(now, self.cfg.member_expiry);
        let xfers: Vec<u32> = self.outbound.keys().copied().collect();
        for x in xfers {
            let members = &self.members;
            if let Some(ob) = self.outbound.get_mut(&x) {
                if ob.deadline().is_none_or(|d| now >= d) || !ob.has_work() {
                    ob.on_timeout(now, &self.cfg, |n| {
                        members
                            .get(n)
                            .map(|m| if m.direct { m.last_seen } else { now })
                    });
                }
            }
        }
        self.collect_outbound(now);
        if !self.outbound.is_empty() {
            self.update_rate(now);
        }
        self.inbound_timers(now);
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
        if let Some((dest, mut d)) = self.ctl.pop_front() {
            let h = self.hdr.next();
            d[16..24].copy_from_slice(&h.seq.to_be_bytes());
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
                self.pacer
                    .on_send(now, len + rate::WIRE_OVERHEAD, self.rate.rate());
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
        if let Some(e) = self.members.next_expiry(self.cfg.member_expiry) {
            t = t.min(e);
        }
        for ob in self.outbound.values() {
            if let Some(d) = ob.deadline() {
                t = t.min(d);
            }
            if ob.has_work() {
                if let Some(p) = self.pacer.wake_at(self.rate.rate()) {
                    t = t.min(p);
                }
            }
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
