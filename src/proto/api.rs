//! The engine's public types: its settings, the commands it takes, the datagrams and events
//! it puts out, the reports of pushes and its counters.

use super::*;

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
    /// durable commit of many files on a slow disk takes a while; the daemon runs it off its
    /// network loop).
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
    /// `--relay`: offer to forward other members' pushes (see `relay.rs`) and, as a sender,
    /// use the members that offer it.
    pub relay: bool,
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
            relay: false,
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
    /// All or none: commit only when every target has staged everything (`--atomic`).
    pub atomic: bool,
}

/// Commands.
#[derive(Clone, Debug)]
// One command per push or leave, moved once: boxing the push would only add an allocation.
#[allow(clippy::large_enum_variant)]
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
        /// When the push started (Unix ms, the sender's stamp), if it carried one: its
        /// place in the cluster's order of pushes.
        started_ms: Option<u64>,
    },
    /// An inbound transfer was abandoned (sender silent or aborted).
    Abandoned(XferKey, String),
    /// An atomic push held in doubt after a restart (`outcome.rs`) was finished
    /// (`committed`) or rolled back, and why.
    Resolved {
        /// The push.
        key: XferKey,
        /// Finished (the go was given) or rolled back.
        committed: bool,
        /// Who said so, or that nobody answered in time.
        why: String,
    },
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
