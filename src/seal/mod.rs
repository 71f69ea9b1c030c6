//! Sealing: authenticated encryption of datagrams at the socket edge, with a cluster key.
//!
//! The engine emits and accepts unsealed datagrams `[header | body]`; this module turns them
//! into sealed ones on the way out and back on the way in, so nothing forged, altered or
//! replayed ever reaches the wire decoder. Without a key nothing is sealed (callers simply do
//! not create a [`Sealer`]). The byte layout is documented in `docs/protocol.md (Sealing)`.
//!
//! # Keys
//!
//! A key file holds a 32-byte cluster key as 64 hex digits and a newline. [`load_key`] refuses a
//! file that group or others may read or write, and anything but 64 hex digits (a missing final
//! newline is tolerated). [`keygen`] makes a new key: to stdout (`-`) or into a new file created
//! with mode 0600 and `O_EXCL`, so an existing key is never overwritten. Each key has a one-byte
//! [`Key::id`], derived from the key itself, which travels in the header so a receiver holding
//! two keys (rotation) knows which one to try.
//!
//! # Sealed datagrams
//!
//! `header(24) | AES-256-GCM(body | timestamp(8)) | tag(16)`, so sealing adds exactly
//! [`SEAL_OVERHEAD`] bytes and works in place. The header travels in clear (with
//! [`FLAG_SEALED`], the seal format [`SEAL_FORMAT`] and the key id set) and is the associated
//! data, so none of it can be altered. The timestamp is the sender's clock in unix ms: it is
//! information (status shows the largest offset), never a reason to accept or refuse. The
//! cipher sits behind the small interface of `aead.rs`, which says why it was chosen.
//!
//! **Key and nonce**: each node seals under its own key, derived from the cluster key and its
//! node id with HKDF-SHA256; the 96-bit nonce is its sequence number. The sealer keeps the
//! engine's sequence number when it is above the last one it sealed and numbers the rest
//! itself (handshakes, which the driver then tells the engine to skip: [`Sealer::last_seq`]),
//! so the sequence number strictly increases within a process, and the node id
//! is drawn at random per process (a collision among `n` processes ever run with one key has
//! probability about `n² / 2^65`): a nonce never repeats under a key. Receivers derive a
//! sender's key once and keep it with the sender's verified state.
//!
//! # Replay protection without clocks
//!
//! A receiver accepts a sender's datagrams only after the sender answered a fresh challenge:
//! on an authentic datagram from a node it has not verified, it refuses the datagram and
//! unicasts a CHALLENGE carrying a fresh nonce to where the datagram came from (at most every
//! [`CHALLENGE_RETRY`] per node). The sender answers with a RESPONSE echoing the nonce,
//! sealed like everything it sends, so its sequence number is the sender's current one. From
//! then on the receiver accepts that sender's sequence numbers above the response's, each
//! once (a sliding window of [`REPLAY_BITS`]). A recording of a dead process can never answer
//! a fresh nonce, and a live sender's answer puts everything recorded before it below the
//! floor. A receiver that restarts has no windows and challenges everyone again: nothing is
//! ever accepted on the strength of a clock, so skewed clocks do not matter and there is no
//! replay hole after a restart. Forgetting a sender is always safe (it is challenged again),
//! so the tables are bounded ([`MAX_PEERS`], [`MAX_PENDING`]) and age out.
//!
//! A node that receives a challenge from a node it has not verified challenges it back in
//! the same RESPONSE; both ends are then verified after three datagrams, and each tells its
//! engine ([`Sealer::poll_verified`]) so that it answers the newcomer with a heartbeat as it
//! would a join (the join itself was refused unverified). Handshakes never send more bytes to
//! an address than it sent: a challenge goes out only in reply to a sealed datagram at least
//! [`HANDSHAKE_LEN`] long, a response only to a challenge, both exactly that long; and a
//! response must come from the address the challenge went to. A challenge already answered is
//! not answered again (for [`ANSWER_MEMORY`]), so a recorded one replayed in a flood draws one
//! answer. Challenge nonces are stateless (a PRF of node, address and a 50 ms time slot
//! under a secret drawn at start, checked by computing it again), so replayed handshakes
//! evict nothing and hold nothing back; challenges are budgeted per IP address and in all;
//! handshakes arriving through the group are never answered (a forged source would else
//! draw an answer from every member). See `docs/protocol.md (Sealing)`.

mod aead;
mod handshake;
mod keys;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use crate::proto::wire::{self, FLAG_SEALED, HEADER_LEN, MAGIC, SEAL_OVERHEAD};
pub use aead::TAG_LEN;
use aead::{ClusterKey, NodeKey};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use handshake::{Bucket, Peer, HANDSHAKE_BODY};
pub use handshake::{
    ANSWER_MEMORY, CHALLENGE_ADDR_BURST, CHALLENGE_ADDR_RATE, CHALLENGE_BURST, CHALLENGE_RATE,
    CHALLENGE_RETRY, HANDSHAKE_LEN, MAX_PEERS, MAX_PENDING, PEER_IDLE, PENDING_TTL, REPLAY_BITS,
};
pub use keys::{keygen, load_key, write_key_file, Key, KEY_LEN};

/// Why a key could not be loaded or made, or why a datagram was refused.
#[derive(Debug)]
pub enum SealError {
    /// Reading or writing a key file failed.
    Io {
        /// The key file.
        path: PathBuf,
        /// What the system said.
        err: io::Error,
    },
    /// The key file may be read or written by group or others.
    KeyFileMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a regular file.
    KeyFileType(PathBuf),
    /// The key file does not hold 64 hex digits and a newline.
    KeyFileMalformed {
        /// The key file (empty for a key given as text).
        path: PathBuf,
        /// What is wrong (never the key itself).
        reason: &'static str,
    },
    /// `keygen` refuses to overwrite an existing file.
    KeyFileExists(PathBuf),
    /// Not a makuo datagram, or too short to be a sealed one.
    Malformed,
    /// The datagram is not sealed but we have a key.
    Unsealed,
    /// The datagram belongs to another cluster sharing the group.
    OtherCluster(u16),
    /// Sealed with a key we do not hold (its key id).
    UnknownKey(u8),
    /// Authentication failed: forged, corrupted, or sealed with another key of the same id.
    BadTag,
    /// Sealed in another format: an older makuo (format 0 relied on clocks, format 1 sealed
    /// with XChaCha20-Poly1305) or a newer one.
    Format(u8),
    /// This (node, sequence number) was already accepted, is too far below the newest one,
    /// or was sealed before the node answered our challenge.
    Replayed {
        /// Sender's node id.
        node: u64,
        /// Sequence number.
        seq: u64,
    },
    /// Authentic, but its sender (this node id) has not answered a challenge yet (one was
    /// sent when allowed).
    Unverified(u64),
    /// A response from this node to no challenge of ours.
    StaleHandshake(u64),
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, err } => write!(f, "key file {}: {err}", path.display()),
            Self::KeyFileMode { path, mode } => {
                f.write_str(&crate::secret_file::too_open("key file", path, *mode))
            }
            Self::KeyFileType(path) => {
                write!(f, "key file {} is not a regular file", path.display())
            }
            Self::KeyFileMalformed { path, reason } if path.as_os_str().is_empty() => {
                write!(f, "key: {reason}")
            }
            Self::KeyFileMalformed { path, reason } => {
                write!(f, "key file {}: {reason}", path.display())
            }
            Self::KeyFileExists(path) => write!(
                f,
                "key file {} already exists; not overwriting it (remove it first, or \
                 choose another path)",
                path.display()
            ),
            Self::Malformed => f.write_str("not a sealed makuo datagram"),
            Self::Unsealed => f.write_str("unsealed datagram refused (this node has a key)"),
            Self::OtherCluster(c) => write!(f, "datagram of another cluster ({c})"),
            Self::UnknownKey(id) => write!(f, "sealed with an unknown key (id {id:#04x})"),
            Self::BadTag => f.write_str("authentication failed"),
            Self::Format(v) => write!(
                f,
                "sealed in format {v}, this makuo speaks format {SEAL_FORMAT}{}",
                if *v < SEAL_FORMAT {
                    " (an older makuo: upgrade it)"
                } else {
                    " (a newer makuo: upgrade this one)"
                }
            ),
            Self::Replayed { node, seq } => {
                write!(f, "replayed datagram (node {node:016x}, seq {seq})")
            }
            Self::Unverified(node) => {
                write!(f, "node {node:016x} has not answered a challenge yet")
            }
            Self::StaleHandshake(node) => {
                write!(f, "response from node {node:016x} to no challenge of ours")
            }
        }
    }
}

impl std::error::Error for SealError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { err, .. } => Some(err),
            _ => None,
        }
    }
}

/// Seal format this build writes and accepts, carried in header flag bits 1–3 of every
/// sealed datagram: format 2 seals with AES-256-GCM under a key per node (`aead.rs`). Format 0
/// was the timestamp-window format of earlier builds, format 1 sealed every datagram with
/// XChaCha20-Poly1305 under the cluster key.
pub const SEAL_FORMAT: u8 = 2;
/// Header flag bits holding the seal format.
pub const SEAL_FORMAT_MASK: u8 = 0x0e;
/// Length of the sealed timestamp (the sender's clock: information only).
pub const TIMESTAMP_LEN: usize = 8;
const _: () = assert!(TIMESTAMP_LEN + TAG_LEN == SEAL_OVERHEAD);

/// Counters of what a [`Sealer`] did, for status output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SealStats {
    /// Datagrams opened and handed on.
    pub opened: u64,
    /// Datagrams sealed (handshakes included).
    pub sealed: u64,
    /// Refused: authentication failed.
    pub bad_tag: u64,
    /// Refused: not sealed although we have a key.
    pub unsealed_refused: u64,
    /// Refused: sealed with a key id we do not hold.
    pub unknown_key: u64,
    /// Refused: (node, seq) already seen, below the replay window, or from before the
    /// sender answered our challenge.
    pub replayed: u64,
    /// Refused: not a makuo datagram or too short to be sealed.
    pub malformed: u64,
    /// Refused: another cluster id than ours (before any cryptography).
    pub other_cluster: u64,
    /// Refused: another seal format (an older or newer makuo).
    pub format: u64,
    /// Refused: authentic, from a sender that has not answered a challenge yet.
    pub unverified: u64,
    /// Refused: a response to no challenge of ours (late, replayed, or to another node).
    pub stale_handshake: u64,
    /// Datagrams whose sequence number had to be replaced (not above the last one sealed:
    /// the driver did not let the engine skip the handshakes' numbers). Should stay 0.
    pub renumbered: u64,
    /// Challenges sent.
    pub challenges: u64,
    /// Responses sent.
    pub responses: u64,
    /// Senders verified.
    pub verified: u64,
    /// Handshakes not sent: repeats of a challenge already answered (replays), challenges
    /// that came through the group, challenges over the budget of their address or of the
    /// whole.
    pub limited: u64,
}

/// What [`Sealer::open`] made of an authentic datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// Unsealed in place: the first `len` bytes are `[header | body]` for the engine.
    Datagram(usize),
    /// A handshake message, handled here (answers wait in [`Sealer::poll_handshake`]).
    Handshake,
}

/// Seals outgoing and opens incoming datagrams with the cluster key(s), numbers what it
/// seals, and verifies senders with a challenge before accepting their datagrams (see the
/// module doc).
pub struct Sealer {
    /// Sealing key first, then an optional second key that only opens, with their ids.
    keys: Vec<(u8, ClusterKey)>,
    /// This node's datagram key (derived from the first key).
    own: NodeKey,
    node: u64,
    cluster: u16,
    /// Last sequence number sealed (data and handshakes share it, so nonces never repeat).
    seq: u64,
    peers: HashMap<u64, Peer>,
    /// When each node was last challenged (the retry timer).
    challenged: HashMap<u64, Instant>,
    /// The last challenge nonce used (answered) per node, and when.
    used: HashMap<u64, (u64, Instant)>,
    /// Challenge budgets per IP address and of the whole.
    addr_budget: HashMap<IpAddr, Bucket>,
    budget: Option<Bucket>,
    /// Secret of the challenge nonces, drawn at start.
    nonce_key: XChaCha20Poly1305,
    /// Start of time slot 0 (the first time a slot was needed).
    epoch: Option<Instant>,
    /// The last challenge answered per challenger (its nonce) and when.
    answered: HashMap<u64, (u64, Instant)>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    verified: VecDeque<u64>,
    stats: SealStats,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| k.0).collect::<Vec<_>>(),
            )
            .field("node", &format_args!("{:016x}", self.node))
            .field("cluster", &self.cluster)
            .field("peers", &self.peers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

impl Sealer {
    /// A sealer for node `node` of cluster `cluster` that seals with `key` and opens with
    /// `key` or `also_open` (key rotation: the first `-k` seals, both open). Datagrams whose
    /// header carries another cluster id are refused before any cryptography (they belong to
    /// another cluster sharing the group and would otherwise be counted as forgeries).
    pub fn new(key: &Key, also_open: Option<&Key>, node: u64, cluster: u16) -> Self {
        let keys: Vec<(u8, ClusterKey)> = std::iter::once(key)
            .chain(also_open)
            .map(|k| (k.id(), ClusterKey::new(k)))
            .collect();
        let own = keys[0].1.node_key(node);
        let mut seed = [0u8; KEY_LEN];
        // Challenge nonces must differ between processes (a response names only the nonce
        // it answers) and not be predictable: a failing random source still gives distinct
        // nonces per node id (the node id is drawn at random too).
        if getrandom::getrandom(&mut seed).is_err() {
            seed[..8].copy_from_slice(&node.to_le_bytes());
        }
        let nonce_key = XChaCha20Poly1305::new(&seed.into());
        Self {
            keys,
            own,
            node,
            cluster,
            seq: 0,
            peers: HashMap::new(),
            challenged: HashMap::new(),
            used: HashMap::new(),
            addr_budget: HashMap::new(),
            budget: None,
            nonce_key,
            epoch: None,
            answered: HashMap::new(),
            out: VecDeque::new(),
            verified: VecDeque::new(),
            stats: SealStats::default(),
        }
    }

    /// Id of the sealing key.
    pub fn key_id(&self) -> u8 {
        self.keys[0].0
    }

    /// The last sequence number sealed. A driver that also seals the engine's datagrams makes
    /// the engine number after it (handshakes take numbers too), so the numbers receivers see
    /// and echo are the engine's own.
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// The counters.
    pub fn stats(&self) -> SealStats {
        self.stats
    }

    /// Seals the unsealed datagram `buf[..len]` in place and returns the sealed length,
    /// `len + SEAL_OVERHEAD`: numbers it (the header's sequence number stays when it is above
    /// every one sealed before, else it is replaced by the next one: receivers echo that
    /// number to the engine for its round-trip times, so the engine's numbering should
    /// survive; [`SealStats::renumbered`] counts replacements), sets [`FLAG_SEALED`], the seal format and the key id, encrypts the
    /// body followed by `now_unix_ms` (8 bytes, big-endian) with this node's key under the
    /// nonce of `seq`, with the whole 24-byte header as associated data, and appends the
    /// 16-byte tag.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than `len + SEAL_OVERHEAD`, `len < HEADER_LEN` (callers size
    /// buffers for sealing), or the header names another node than this sealer's (its
    /// sequence numbers, and so its nonces, are this sealer's alone).
    pub fn seal(&mut self, buf: &mut [u8], len: usize, now_unix_ms: u64) -> usize {
        assert!(
            len >= HEADER_LEN,
            "seal: {len} bytes is shorter than a header"
        );
        assert!(
            buf.len() >= len + SEAL_OVERHEAD,
            "seal: buffer of {} bytes cannot hold {len} + {SEAL_OVERHEAD}",
            buf.len()
        );
        assert_eq!(
            be64(&buf[8..16]),
            self.node,
            "seal: a datagram of another node than this sealer's"
        );
        let asked = be64(&buf[16..24]);
        if asked > self.seq {
            self.seq = asked;
        } else {
            if asked != 0 {
                self.stats.renumbered += 1;
            }
            self.seq += 1;
            buf[16..24].copy_from_slice(&self.seq.to_be_bytes());
        }
        buf[4] = (buf[4] & !SEAL_FORMAT_MASK) | FLAG_SEALED | (SEAL_FORMAT << 1);
        buf[5] = self.keys[0].0;
        buf[len..len + TIMESTAMP_LEN].copy_from_slice(&now_unix_ms.to_be_bytes());
        let (hdr, rest) = buf.split_at_mut(HEADER_LEN);
        let plain = len - HEADER_LEN + TIMESTAMP_LEN;
        let tag = self.own.seal(self.seq, hdr, &mut rest[..plain]);
        rest[plain..plain + TAG_LEN].copy_from_slice(&tag);
        self.stats.sealed += 1;
        len + SEAL_OVERHEAD
    }

    /// Opens the sealed datagram `buf[..len]` that came from `from`: checks the flag,
    /// cluster, format and key id, verifies the tag and decrypts. A handshake message is
    /// handled here ([`Opened::Handshake`]). Anything else is accepted only from a sender
    /// that answered a fresh challenge, each sequence number once and only above the one of
    /// its answer: then the buffer is rewritten to the unsealed form `[header | body]`
    /// ([`FLAG_SEALED`], format and key id cleared) and its length returned. An authentic
    /// datagram from a sender not verified yet is refused ([`SealError::Unverified`]) and the
    /// sender challenged. `now` ages the tables; `now_unix_ms` is only information (it is
    /// sealed into handshake answers and compared with the sender's clock for status).
    /// `to_group`: it arrived on the group socket. Handshakes are only ever unicast, so one
    /// that comes through the group is a replay meant to make every member answer at once
    /// (reflection): it is dropped and counted, never answered.
    ///
    /// # Panics
    ///
    /// If `len > buf.len()`.
    pub fn open(
        &mut self,
        buf: &mut [u8],
        len: usize,
        from: SocketAddr,
        to_group: bool,
        now: Instant,
        now_unix_ms: u64,
    ) -> Result<Opened, SealError> {
        let r = self.open_inner(&mut buf[..len], from, to_group, now, now_unix_ms);
        let s = &mut self.stats;
        match &r {
            Ok(Opened::Datagram(_)) => s.opened += 1,
            Ok(Opened::Handshake) => {}
            Err(SealError::Malformed) => s.malformed += 1,
            Err(SealError::Unsealed) => s.unsealed_refused += 1,
            Err(SealError::OtherCluster(_)) => s.other_cluster += 1,
            Err(SealError::UnknownKey(_)) => s.unknown_key += 1,
            Err(SealError::BadTag) => s.bad_tag += 1,
            Err(SealError::Format(_)) => s.format += 1,
            Err(SealError::Replayed { .. }) => s.replayed += 1,
            Err(SealError::Unverified(_)) => s.unverified += 1,
            Err(SealError::StaleHandshake(_)) => s.stale_handshake += 1,
            Err(_) => {}
        }
        r
    }

    fn open_inner(
        &mut self,
        buf: &mut [u8],
        from: SocketAddr,
        to_group: bool,
        now: Instant,
        now_ms: u64,
    ) -> Result<Opened, SealError> {
        // Only the magic is checked here; version and kind are the decoder's business, after
        // authentication.
        if buf.len() < HEADER_LEN || buf[..2] != MAGIC {
            return Err(SealError::Malformed);
        }
        if buf[4] & FLAG_SEALED == 0 {
            return Err(SealError::Unsealed);
        }
        if buf.len() < HEADER_LEN + SEAL_OVERHEAD {
            return Err(SealError::Malformed);
        }
        let cluster = u16::from_be_bytes([buf[6], buf[7]]);
        if cluster != self.cluster {
            return Err(SealError::OtherCluster(cluster));
        }
        let format = (buf[4] & SEAL_FORMAT_MASK) >> 1;
        if format != SEAL_FORMAT {
            return Err(SealError::Format(format));
        }
        let sealed_len = buf.len();
        let kind = buf[3];
        let key_id = buf[5];
        let node = be64(&buf[8..16]);
        let seq = be64(&buf[16..24]);
        let (hdr, ct) = buf.split_at_mut(HEADER_LEN);
        let key = self.open_with_keys(key_id, node, seq, hdr, ct)?;
        let ct = &ct[..ct.len() - TAG_LEN];
        let body_len = ct.len() - TIMESTAMP_LEN;
        let sealed_ms = be64(&ct[body_len..]);
        let offset = sealed_ms as i64 - now_ms as i64;
        match kind {
            wire::kind::CHALLENGE | wire::kind::RESPONSE if body_len != HANDSHAKE_BODY => {
                Err(SealError::Malformed)
            }
            wire::kind::CHALLENGE if to_group => {
                self.stats.limited += 1;
                Ok(Opened::Handshake)
            }
            wire::kind::RESPONSE if to_group => Err(SealError::StaleHandshake(node)),
            wire::kind::CHALLENGE => {
                self.on_challenge(node, be64(&ct[..8]), from, now, now_ms);
                Ok(Opened::Handshake)
            }
            wire::kind::RESPONSE => {
                let (echo, counter) = (be64(&ct[..8]), be64(&ct[8..16]));
                self.on_response(node, seq, echo, counter, from, now, now_ms)?;
                Ok(Opened::Handshake)
            }
            _ => {
                let Some(p) = self.peers.get_mut(&node) else {
                    if sealed_len >= HANDSHAKE_LEN {
                        self.challenge(node, from, now, now_ms);
                    }
                    return Err(SealError::Unverified(node));
                };
                if !p.window.accept(seq) {
                    return Err(SealError::Replayed { node, seq });
                }
                p.last = now;
                p.clock_offset_ms = offset;
                if key.is_some() {
                    p.key = key;
                }
                if kind == wire::kind::LEAVE {
                    // Gone: forgetting it is safe (a replay would be challenged).
                    self.peers.remove(&node);
                }
                hdr[4] &= !(FLAG_SEALED | SEAL_FORMAT_MASK);
                hdr[5] = 0;
                Ok(Opened::Datagram(HEADER_LEN + body_len))
            }
        }
    }

    /// Verifies and decrypts `ct` (ciphertext | tag, in place) sealed by `node` as `seq`, with
    /// each key whose id is `key_id`: the sender's key kept from earlier first, else derived
    /// now. Returns the derived key that opened it (`(key index, key)`, to keep with the
    /// sender's verified state), or `None` when the kept one did.
    fn open_with_keys(
        &self,
        key_id: u8,
        node: u64,
        seq: u64,
        hdr: &[u8],
        ct: &mut [u8],
    ) -> Result<Option<(usize, NodeKey)>, SealError> {
        let matching = || {
            self.keys
                .iter()
                .enumerate()
                .filter(move |(_, (id, _))| *id == key_id)
                .map(|(i, _)| i)
        };
        let count = matching().count();
        if count == 0 {
            return Err(SealError::UnknownKey(key_id));
        }
        // A failed attempt may leave the buffer garbled: keep the original when a second key
        // (two keys sharing an id, 1 in 256 during a rotation) may have to try it too.
        let original = (count > 1).then(|| ct.to_vec());
        let kept = self.peers.get(&node).and_then(|p| p.key.as_ref());
        for (n, i) in matching().enumerate() {
            if let (true, Some(o)) = (n > 0, &original) {
                ct.copy_from_slice(o);
            }
            match kept {
                Some((k, key)) if *k == i => {
                    if key.open(seq, hdr, ct).is_ok() {
                        return Ok(None);
                    }
                }
                _ => {
                    let key = self.keys[i].1.node_key(node);
                    if key.open(seq, hdr, ct).is_ok() {
                        return Ok(Some((i, key)));
                    }
                }
            }
        }
        Err(SealError::BadTag)
    }
}

#[cfg(test)]
mod tests;
