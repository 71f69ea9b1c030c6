//! The datagram codec: every byte that crosses the network is parsed here, once.
//!
//! A datagram is a fixed 24-byte [`Header`] followed by a message body. [`decode`] turns
//! untrusted bytes into a typed [`Msg`] that borrows from the input, or a [`WireError`]; it
//! never panics and never allocates. [`Msg::encode`] writes into a buffer the caller owns.
//! Every length and count is checked against what remains of the datagram. Layout and
//! constants are documented in `docs/protocol.md`; keep the two in step.
//!
//! When the cluster has a key, the body (and a sealed timestamp) is encrypted and followed by
//! an authentication tag; [`SEAL_OVERHEAD`] bytes of every datagram are reserved for that, and
//! the sealing itself lives outside the engine (see `seal/`), on the socket side.
//!
//! Here: the header, the message types and constants. `wire/decode.rs` parses bodies,
//! `wire/encode.rs` writes them, `wire/codec.rs` holds the checked reader and writer, and
//! `wire/forward.rs` the RELAY and AGGREGATE bodies.

mod codec;
mod decode;
mod encode;
mod forward;
pub use decode::decode_body;
use forward::read_agg_item;

pub use forward::{
    aggregate_items, push_aggregate_item, Relay, AGG_HDR, AGG_ITEM_HDR, MAX_AGG_ITEMS,
    MAX_RELAY_TARGETS, RELAY_GROUP,
};

use std::fmt;
use std::net::SocketAddr;

/// First two bytes of every makuo datagram.
pub const MAGIC: [u8; 2] = *b"MK";
/// Protocol version this build speaks (and the highest it accepts). Version 2: NAKs name the
/// missing symbols, receivers report during the pass, rate control (PACE, feedback).
/// Version 3: ANNOUNCE lists the targets in parts (a push serves up to [`MAX_TARGETS`]).
/// Version 4: feedback that scales: the sender's NAK echo ([`NAK_ECHO`]), randomized NAK
/// timers, heartbeats and expiry that scale with the group (a member of version 3 would
/// expire members of a large group and misread an echo).
/// Version 5: deploy safety and path probing: OUTCOME (kind 20) for atomic pushes held in
/// doubt, manifest sections 5 (release switch) and 6 (the push's start stamp, sent with every
/// push), and the heartbeat's "hears our multicast" answer that ends per-push probing (a
/// member of version 4 would refuse every push of version 5 for its unknown manifest section,
/// and would stay probed).
pub const VERSION: u8 = 5;
/// Lowest protocol version this build accepts.
pub const MIN_VERSION: u8 = 5;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 24;
/// Bytes reserved per datagram for sealing (sealed timestamp + AEAD tag) when keyed.
pub const SEAL_OVERHEAD: usize = 24;
/// IPv4 + UDP header bytes subtracted from the MTU to get the datagram size.
pub const IP_UDP_OVERHEAD: usize = 28;
/// Largest datagram makuo emits or accepts (jumbo frames included).
pub const MAX_DATAGRAM: usize = 9000;
/// Body bytes of a block message before its data.
pub const BLOCK_HDR: usize = 8;
/// Body bytes of a parity message before its data.
pub const PARITY_HDR: usize = 11;

/// Header flag: the body is sealed (encrypted + authenticated).
pub const FLAG_SEALED: u8 = 0x01;

/// Block payload size for a path MTU, with or without sealing. Always even (the erasure
/// code needs even shard sizes) and fits a parity message.
pub fn block_size(mtu: usize, sealed: bool) -> usize {
    let dgram = mtu.clamp(576, MAX_DATAGRAM + IP_UDP_OVERHEAD) - IP_UDP_OVERHEAD;
    let seal = if sealed { SEAL_OVERHEAD } else { 0 };
    (dgram - HEADER_LEN - seal - PARITY_HDR) & !1
}

/// Why a datagram (or a piece of one) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the structure it claims to hold.
    Truncated,
    /// Not a makuo datagram (magic).
    BadMagic,
    /// A protocol version this build does not speak.
    BadVersion(u8),
    /// A message kind this build does not know (ignored, counted).
    UnknownKind(u8),
    /// A field holds a value outside its range.
    BadValue(&'static str),
    /// A count or length larger than allowed.
    TooLarge(&'static str),
    /// Bytes left over after the message.
    Trailing,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated"),
            Self::BadMagic => f.write_str("bad magic"),
            Self::BadVersion(v) => write!(f, "unsupported protocol version {v}"),
            Self::UnknownKind(k) => write!(f, "unknown message kind {k}"),
            Self::BadValue(what) => write!(f, "bad value in {what}"),
            Self::TooLarge(what) => write!(f, "{what} too large"),
            Self::Trailing => f.write_str("trailing bytes"),
        }
    }
}

impl std::error::Error for WireError {}

use codec::read_addr;
pub use codec::{known_len, varint_len, write_addr, Cursor, Reader, Writer};

/// The fixed header at the start of every datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Protocol version the datagram is written in.
    pub version: u8,
    /// Message kind (see [`kind`]).
    pub kind: u8,
    /// Header flags ([`FLAG_SEALED`]).
    pub flags: u8,
    /// Key id that sealed the datagram (0 when unsealed).
    pub key_id: u8,
    /// Cluster id: datagrams of another cluster sharing the group are dropped.
    pub cluster: u16,
    /// Sender's node id.
    pub node: u64,
    /// Sender's datagram sequence number (monotonic per node).
    pub seq: u64,
}

impl Header {
    /// Writes the header.
    pub fn write(&self, c: &mut Cursor<'_>) {
        c.raw(&MAGIC);
        c.u8(self.version);
        c.u8(self.kind);
        c.u8(self.flags);
        c.u8(self.key_id);
        c.u16(self.cluster);
        c.u64(self.node);
        c.u64(self.seq);
    }

    /// Parses and checks the header (magic, version).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        if r.raw(2)? != MAGIC {
            return Err(WireError::BadMagic);
        }
        let version = r.u8()?;
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(WireError::BadVersion(version));
        }
        Ok(Self {
            version,
            kind: r.u8()?,
            flags: r.u8()?,
            key_id: r.u8()?,
            cluster: r.u16()?,
            node: r.u64()?,
            seq: r.u64()?,
        })
    }
}

/// Message kind numbers.
pub mod kind {
    /// Membership announcement / heartbeat.
    pub const HEARTBEAT: u8 = 1;
    /// Graceful leave.
    pub const LEAVE: u8 = 2;
    /// A transfer's announcement and registration poll.
    pub const ANNOUNCE: u8 = 3;
    /// A block of a transfer stream (the stream is in the body).
    pub const BLOCK: u8 = 4;
    /// An erasure-code parity block.
    pub const PARITY: u8 = 7;
    /// Repair poll: receivers report missing symbols.
    pub const POLL: u8 = 8;
    /// Receiver's registration report (change flags, deletions).
    pub const REPORT: u8 = 9;
    /// Receiver's report of groups it cannot complete from what is still to come (during a
    /// pass) or its answer to a poll: per group, how many symbols it needs and which source
    /// blocks it misses.
    pub const NAK: u8 = 10;
    /// Commit request.
    pub const COMMIT: u8 = 11;
    /// Receiver's per-transfer result.
    pub const RESULT: u8 = 12;
    /// Sender abandons a transfer.
    pub const ABORT: u8 = 13;
    /// Sealing layer only (`seal/handshake.rs`): a receiver asks an unverified sender to prove it is
    /// live. Never reaches the engine (the decoder does not know it).
    pub const CHALLENGE: u8 = 14;
    /// Sealing layer only (`seal/handshake.rs`): the answer to a CHALLENGE.
    pub const RESPONSE: u8 = 15;
    /// Sender's pacing state during a pass: rate, current limiting receiver, timers.
    pub const PACE: u8 = 16;
    /// Receiver's rate feedback: loss event rate, receive rate, overflows, RTT echo.
    pub const FEEDBACK: u8 = 17;
    /// Answers of several receivers gathered by one of them (see [`super::Msg::Aggregate`]).
    pub const AGGREGATE: u8 = 18;
    /// Sender to a relay member (`--relay`): forward my group datagrams to these members.
    pub const RELAY: u8 = 19;
    /// An atomic push's outcome: a member that restarted with it in doubt asks, the sender
    /// or a member that got the go answers (`outcome.rs`).
    pub const OUTCOME: u8 = 20;
}

/// OUTCOME status: a question (was this push given the go?).
pub const OUTCOME_ASK: u8 = 0;
/// OUTCOME status: the push was given the go (committed).
pub const OUTCOME_COMMITTED: u8 = 1;
/// OUTCOME status: the push was not committed on any member.
pub const OUTCOME_ABORTED: u8 = 2;

/// Transfer streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// The encoded manifest.
    Manifest = 0,
    /// The plan: a bitmap of entries whose contents are in the payload.
    Plan = 1,
    /// The concatenated file contents.
    Payload = 2,
}

impl Stream {
    fn from_u8(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            0 => Self::Manifest,
            1 => Self::Plan,
            2 => Self::Payload,
            _ => return Err(WireError::BadValue("stream")),
        })
    }
    /// All streams, in order.
    pub const ALL: [Stream; 3] = [Stream::Manifest, Stream::Plan, Stream::Payload];
}

/// Heartbeat flag: the sender just started and asks members to announce themselves soon.
pub const HB_JOIN: u8 = 0x01;
/// Heartbeat flag: the member accepts pushes.
pub const HB_RECEIVER: u8 = 0x02;
/// Heartbeat flag: the member forwards a sender's datagrams to others when asked (`--relay`,
/// see `relay.rs`); older nodes ignore it.
pub const HB_RELAY: u8 = 0x04;

/// A member known to the heartbeat's sender, passed along so newcomers learn the whole set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Known<'a> {
    /// Node id.
    pub node: u64,
    /// Its reply address.
    pub addr: SocketAddr,
    /// Milliseconds since the sender last heard it directly.
    pub age_ms: u32,
    /// Its flags (from its heartbeats).
    pub flags: u8,
    /// Its name.
    pub name: &'a [u8],
}

/// Heartbeat body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat<'a> {
    /// [`HB_JOIN`], [`HB_RECEIVER`].
    pub flags: u8,
    /// Lowest protocol version the member speaks.
    pub proto_min: u8,
    /// Highest protocol version the member speaks.
    pub proto_max: u8,
    /// Heartbeat interval in ms (others derive expiry from it).
    pub interval_ms: u32,
    /// Member name (host name by default).
    pub name: &'a [u8],
    /// Software version string.
    pub version: &'a [u8],
    /// Opaque status from the driver (e.g. last push applied).
    pub info: &'a [u8],
    /// Raw encoding of the known-members list; iterate with [`Heartbeat::known`].
    pub known_raw: &'a [u8],
    /// Number of entries in `known_raw`.
    pub known_count: u16,
}

impl<'a> Heartbeat<'a> {
    /// Iterates over the known members (stops at the first malformed entry, which decode
    /// already rejected).
    pub fn known(&self) -> impl Iterator<Item = Known<'a>> + 'a {
        let mut r = Reader::new(self.known_raw);
        let n = self.known_count;
        (0..n).map_while(move |_| read_known(&mut r).ok())
    }
}

fn read_known<'a>(r: &mut Reader<'a>) -> Result<Known<'a>, WireError> {
    let node = r.u64()?;
    let addr = read_addr(r)?;
    let age_ms = r.u32()?;
    let flags = r.u8()?;
    let name = r.bytes8()?;
    Ok(Known {
        node,
        addr,
        age_ms,
        flags,
        name,
    })
}

/// Announce body: opens a transfer and polls for registrations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce<'a> {
    /// Transfer id (unique per sender node).
    pub xfer: u32,
    /// Block size of every stream.
    pub block: u16,
    /// Source blocks per erasure-code group.
    pub group: u16,
    /// Parity symbols that exist per group (indices `0..parity`).
    pub parity: u16,
    /// Length of the manifest stream.
    pub manifest_len: u64,
    /// Targets the transfer has in all (this announce is one part of the list).
    pub total: u16,
    /// Index of the first target listed here in the transfer's whole target list.
    pub first: u16,
    /// Raw node ids of the targets of this part (8 bytes each); see [`Announce::targets`].
    pub targets_raw: &'a [u8],
    /// Bitmap over the targets of this part (bit i: target `first + i`): which have not
    /// registered yet.
    pub pending: &'a [u8],
}

impl Announce<'_> {
    /// Node ids of the targets listed in this part.
    pub fn targets(&self) -> impl Iterator<Item = u64> + '_ {
        self.targets_raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
    }
    /// Number of targets listed in this part.
    pub fn target_count(&self) -> usize {
        self.targets_raw.len() / 8
    }
    /// Where `node` is in the transfer's whole target list, if this part lists it.
    pub fn position(&self, node: u64) -> Option<usize> {
        self.targets()
            .position(|t| t == node)
            .map(|i| self.first as usize + i)
    }
    /// Whether target `pos` (an index in the whole list) is marked pending in this part.
    pub fn is_pending(&self, pos: usize) -> bool {
        pos.checked_sub(self.first as usize).is_some_and(|i| {
            self.pending
                .get(i / 8)
                .is_some_and(|b| b & (1 << (i % 8)) != 0)
        })
    }
}

/// Most targets one transfer may have. An announce lists them in parts (as many as one
/// datagram holds); POLL and COMMIT carry a bitmap over all of them (at most 255 bytes), and
/// a receiver remembers only its own index.
pub const MAX_TARGETS: usize = 2040;

/// NAK flag: last part of this answer.
pub const NAK_FINAL: u8 = 0x01;
/// NAK flag: the receiver has everything it needs.
pub const NAK_DONE: u8 = 0x02;
/// NAK flag: the receiver does not know this transfer (restarted, or never registered).
pub const NAK_UNKNOWN: u8 = 0x04;
/// NAK flag: sent by the sender to the group, not by a receiver: the echo of the largest
/// needs it was told of during the pass (receivers that need no more stay quiet).
pub const NAK_ECHO: u8 = 0x08;

/// Commit flag: do not delete anything (`--max-delete` was exceeded).
pub const COMMIT_NO_DELETE: u8 = 0x01;
/// Commit flag: an atomic push's first phase: stage everything and answer READY, do not
/// apply yet (`send/atomic.rs`).
pub const COMMIT_PREPARE: u8 = 0x02;

/// Result status: applied.
pub const RESULT_OK: u8 = 0;
/// Result status: failed (message says why).
pub const RESULT_FAILED: u8 = 1;
/// Result status: still working on the commit.
pub const RESULT_BUSY: u8 = 2;
/// Result status: transfer unknown to the receiver.
pub const RESULT_UNKNOWN: u8 = 3;
/// Result status: staged whole, ready to commit (answer to COMMIT with PREPARE).
pub const RESULT_READY: u8 = 4;

/// Most bytes of a NAK entry's missing-block map (one bit per source block of a group of at
/// most 1024 blocks).
pub const MAX_MAP: usize = 128;

/// One NAK entry: group `group` of `stream` needs `need` more symbols, any fresh parity
/// symbol or any source block whose bit is set in `missing` (bit `i`, LSB first: block
/// `i` of the group). Entries of several receivers merge by the maximum `need` and the OR of
/// their maps. An empty map stands for "every block".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NakEntry<'a> {
    /// Stream.
    pub stream: Stream,
    /// Group number.
    pub group: u32,
    /// Symbols still needed.
    pub need: u32,
    /// Bitmap of source blocks missing (trailing zero bytes trimmed).
    pub missing: &'a [u8],
}

impl NakEntry<'_> {
    /// Whether source block `i` of the group is missing (always, for an empty map).
    pub fn lacks(&self, i: u32) -> bool {
        self.missing.is_empty()
            || self
                .missing
                .get(i as usize / 8)
                .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        1 + varint_len(self.group as u64) + varint_len(self.need as u64) + 1 + self.missing.len()
    }

    /// Appends the entry to a NAK body.
    pub fn write(&self, w: &mut Writer) {
        w.u8(self.stream as u8);
        w.varint(self.group as u64);
        w.varint(self.need as u64);
        let m = &self.missing[..self.missing.len().min(MAX_MAP)];
        w.u8(m.len() as u8);
        w.raw(m);
    }
}

/// Sender's pacing state, multicast during a pass (see `docs/protocol.md`, *Rate control*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Transfer.
    pub xfer: u32,
    /// Current send rate, bytes per second.
    pub rate: u64,
    /// Round-trip time receivers should assume (the largest the sender measured), µs.
    pub rtt_us: u32,
    /// How often the current limiting receiver reports, µs.
    pub interval_us: u32,
    /// Node id of the current limiting receiver (0: none yet).
    pub clr: u64,
    /// Time to send the repair already queued at the current rate, µs.
    pub backlog_us: u32,
    /// Unicast datagrams the sender has sent so far (mod 2^32): they take header sequence
    /// numbers that group members never see, which are not losses.
    pub uni: u32,
    /// [`PACE_DATA_LIMITED`].
    pub flags: u8,
    /// Receiver whose feedback timestamp is echoed (0: none), so it learns its own
    /// round-trip time.
    pub echo: u64,
    /// That feedback's `ts_us`.
    pub echo_ts: u32,
    /// µs between the sender receiving that feedback and sending this PACE.
    pub echo_hold_us: u32,
}

/// Receiver's rate feedback (see `docs/protocol.md`, *Rate control*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feedback {
    /// Transfer.
    pub xfer: u32,
    /// [`FB_CLR`].
    pub flags: u8,
    /// Highest header sequence number received from the sender.
    pub seen: u64,
    /// µs between receiving `seen` and sending this feedback.
    pub hold_us: u32,
    /// Loss event rate, as a fraction of `u32::MAX` (0: no loss event yet).
    pub loss: u32,
    /// Receive rate over the last feedback interval, bytes per second (0: not measured).
    pub recv_rate: u64,
    /// Datagrams the receiver's socket dropped (buffer full) since its previous feedback.
    pub overflows: u32,
    /// The receiver's clock, µs (any origin, wrapping): echoed in a later PACE.
    pub ts_us: u32,
}

/// Feedback flag: sent as the current limiting receiver.
pub const FB_CLR: u8 = 0x01;

/// PACE flag: the sender is data-limited (it sent less than its rate allows: a pause, the
/// end of the pass): what receivers received says what was offered, not what their paths
/// take, so a receiver's own rate is not capped by its receive rate (as the sender does
/// not cut its rate on such receive rates, RFC 5348 section 8.2).
pub const PACE_DATA_LIMITED: u8 = 0x01;

/// A decoded message body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    /// Membership.
    Heartbeat(Heartbeat<'a>),
    /// Graceful leave.
    Leave,
    /// Transfer announcement / registration poll.
    Announce(Announce<'a>),
    /// One source block of a stream.
    Block {
        /// Transfer.
        xfer: u32,
        /// Stream.
        stream: Stream,
        /// Block index in the stream.
        idx: u32,
        /// Block contents (the last block of a stream may be short).
        data: &'a [u8],
    },
    /// One parity symbol of a group.
    Parity {
        /// Transfer.
        xfer: u32,
        /// Stream.
        stream: Stream,
        /// Group number.
        group: u32,
        /// Parity symbol index within the group.
        index: u16,
        /// Symbol (always a full block).
        data: &'a [u8],
    },
    /// Repair poll.
    Poll {
        /// Transfer.
        xfer: u32,
        /// Round number (answers name it).
        round: u32,
        /// Bitmap over targets: who must answer.
        pending: &'a [u8],
    },
    /// Registration report part.
    Report {
        /// Transfer.
        xfer: u32,
        /// Part number.
        part: u16,
        /// Number of parts.
        parts: u16,
        /// Bytes of this part.
        data: &'a [u8],
    },
    /// Missing-symbol report.
    Nak {
        /// Transfer.
        xfer: u32,
        /// Poll round it answers (0: sent unasked during a pass).
        round: u32,
        /// [`NAK_FINAL`], [`NAK_DONE`], [`NAK_UNKNOWN`].
        flags: u8,
        /// Highest header sequence number received from the sender when this was written:
        /// repair the sender sent after it is already on its way.
        seen: u64,
        /// µs between receiving `seen` and sending this NAK (for the sender's RTT).
        hold_us: u32,
        /// Raw entries; see [`NakEntry`] and [`naks`].
        entries: &'a [u8],
    },
    /// Commit request.
    Commit {
        /// Transfer.
        xfer: u32,
        /// [`COMMIT_NO_DELETE`].
        flags: u8,
        /// Bitmap over targets: who must answer.
        pending: &'a [u8],
        /// Raw u32 entry indices whose source vanished (do not apply them).
        vanished_raw: &'a [u8],
    },
    /// Per-receiver result.
    Result {
        /// Transfer.
        xfer: u32,
        /// `RESULT_*`.
        status: u8,
        /// Entries applied.
        files: u32,
        /// Bytes written.
        bytes: u64,
        /// Paths deleted.
        deleted: u32,
        /// Failure reason (UTF-8, may be empty).
        message: &'a [u8],
    },
    /// The sender abandoned the transfer.
    Abort {
        /// Transfer.
        xfer: u32,
        /// Reason.
        reason: &'a [u8],
    },
    /// Sender's pacing state.
    Pace(Pace),
    /// An atomic push's outcome, asked ([`OUTCOME_ASK`]) or told.
    Outcome {
        /// The push's sender.
        origin: u64,
        /// The push.
        xfer: u32,
        /// [`OUTCOME_ASK`], [`OUTCOME_COMMITTED`] or [`OUTCOME_ABORTED`].
        status: u8,
    },
    /// Receiver's rate feedback.
    Feedback(Feedback),
    /// Answers (REPORT, NAK answering a poll, RESULT) of receivers of push `xfer` from
    /// `origin`, gathered by one of its targets (the cohort's leader) and sent to the
    /// sender as one datagram; a member sends its own answer to its leader the same way,
    /// as a single item. Items: node u64, kind u8, body length u16, body; see
    /// [`aggregate_items`].
    Aggregate {
        /// The push's sender.
        origin: u64,
        /// Transfer.
        xfer: u32,
        /// Raw items.
        items: &'a [u8],
    },
    /// Relay assignment (see `relay.rs`).
    Relay(Relay<'a>),
}

/// Iterates over NAK entries; a malformed tail ends the iteration (decode already validated
/// the whole list).
pub fn naks(raw: &[u8]) -> impl Iterator<Item = NakEntry<'_>> + '_ {
    let mut r = Reader::new(raw);
    std::iter::from_fn(move || {
        if r.remaining() == 0 {
            return None;
        }
        read_nak(&mut r).ok()
    })
}

fn read_nak<'a>(r: &mut Reader<'a>) -> Result<NakEntry<'a>, WireError> {
    let stream = Stream::from_u8(r.u8()?)?;
    let group = u32::try_from(r.varint()?).map_err(|_| WireError::BadValue("group"))?;
    let need = u32::try_from(r.varint()?).map_err(|_| WireError::BadValue("need"))?;
    let n = r.u8()? as usize;
    if n > MAX_MAP {
        return Err(WireError::TooLarge("missing map"));
    }
    let missing = r.raw(n)?;
    Ok(NakEntry {
        stream,
        group,
        need,
        missing,
    })
}

/// What every protocol version keeps in place, read from a datagram of a version this build
/// does not speak: the header's version and node id and, for an unsealed HEARTBEAT, the
/// first fields of its body. Nothing else of such a datagram is ever parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForeignHeader<'a> {
    /// The datagram's protocol version.
    pub version: u8,
    /// The sender's node id.
    pub node: u64,
    /// From an unsealed heartbeat: who it is and what it speaks.
    pub hello: Option<ForeignHello<'a>>,
}

/// The fixed leading fields of a HEARTBEAT body, the same in every protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForeignHello<'a> {
    /// Heartbeat flags ([`HB_RECEIVER`]: it would accept pushes).
    pub flags: u8,
    /// Lowest and highest protocol version the peer speaks.
    pub proto: (u8, u8),
    /// Its name.
    pub name: &'a [u8],
    /// Its software version string.
    pub software: &'a [u8],
}

/// Where a NAK's or FEEDBACK's echo hold (µs between receiving the sequence number it
/// echoes and sending) sits in an encoded datagram, or `None` for other kinds.
fn hold_offset(kind: u8) -> Option<usize> {
    match kind {
        // xfer u32, round u32, flags u8, seen u64
        kind::NAK => Some(HEADER_LEN + 17),
        // xfer u32, flags u8, seen u64
        kind::FEEDBACK => Some(HEADER_LEN + 13),
        _ => None,
    }
}

/// Rewrites the echo hold of an encoded NAK or FEEDBACK (`buf`: the whole datagram) as it
/// leaves, so that the time it waited in this node's queue is not counted as path delay in
/// the sender's round-trip time. Returns whether `buf` was such a datagram.
pub fn set_echo_hold(buf: &mut [u8], hold_us: u32) -> bool {
    let Some(off) = buf.get(3).copied().and_then(hold_offset) else {
        return false;
    };
    match buf.get_mut(off..off + 4) {
        Some(b) => {
            b.copy_from_slice(&hold_us.to_be_bytes());
            true
        }
        None => false,
    }
}

/// Reads the version-independent parts of a datagram (see [`ForeignHeader`]); `None` when
/// it is not a makuo datagram or too short to hold a header.
pub fn peek_foreign(buf: &[u8]) -> Option<ForeignHeader<'_>> {
    if buf.len() < HEADER_LEN || buf[..2] != MAGIC {
        return None;
    }
    let node = u64::from_be_bytes(buf[8..16].try_into().unwrap());
    let hello = (buf[3] == kind::HEARTBEAT && buf[4] & FLAG_SEALED == 0)
        .then(|| {
            let mut r = Reader::new(&buf[HEADER_LEN..]);
            let flags = r.u8().ok()?;
            let proto = (r.u8().ok()?, r.u8().ok()?);
            let _interval = r.u32().ok()?;
            let name = r.bytes8().ok()?;
            let software = r.bytes8().ok()?;
            Some(ForeignHello {
                flags,
                proto,
                name,
                software,
            })
        })
        .flatten();
    Some(ForeignHeader {
        version: buf[2],
        node,
        hello,
    })
}

/// Parses one whole datagram (unsealed form).
pub fn decode(buf: &[u8]) -> Result<(Header, Msg<'_>), WireError> {
    let mut r = Reader::new(buf);
    let h = Header::read(&mut r)?;
    let m = decode_body(h.kind, &mut r)?;
    Ok((h, m))
}

/// Smallest block size an announce may use (MTU 576 with sealing gives 488).
pub const MIN_BLOCK: u16 = 256;

/// Largest block index a block message can carry (24 bits).
pub const MAX_BLOCK_INDEX: u32 = (1 << 24) - 1;

#[cfg(test)]
mod tests;
