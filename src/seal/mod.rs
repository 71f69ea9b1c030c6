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
//! `header(24) | XChaCha20-Poly1305(body | timestamp(8)) | tag(16)`, so sealing adds exactly
//! [`SEAL_OVERHEAD`] bytes and works in place. The header travels in clear (with
//! [`FLAG_SEALED`], the seal format [`SEAL_FORMAT`] and the key id set) and is the associated
//! data, so none of it can be altered. The timestamp is the sender's clock in unix ms: it is
//! information (status shows the largest offset), never a reason to accept or refuse.
//!
//! **Nonce**: `node id (8) | seq (8) | "MKseal02"`. The sealer numbers everything it seals
//! itself (data and handshakes share one counter; the engine's numbering is replaced), so
//! the sequence number strictly increases within a process, and the node id is drawn at
//! random per process (a collision among `n` processes ever run with one key has probability
//! about `n² / 2^65`): a nonce never repeats under a key. XChaCha20-Poly1305 was chosen
//! because its 24-byte nonce holds both ids whole; the 12-byte nonce of ChaCha20-Poly1305
//! would force truncating the node id, and random nonces would not fit in [`SEAL_OVERHEAD`].
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
//! answer; the tables are bounded and, when full, forget their oldest entry rather than
//! refuse a new one (a flood of recordings must outpace a round trip to crowd out a real
//! handshake).

mod handshake;
mod keys;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::proto::wire::{self, FLAG_SEALED, HEADER_LEN, MAGIC, SEAL_OVERHEAD};
use handshake::{Peer, Pending, HANDSHAKE_BODY};
pub use handshake::{
    ANSWER_MEMORY, CHALLENGE_RETRY, HANDSHAKE_LEN, MAX_PEERS, MAX_PENDING, PEER_IDLE, PENDING_TTL,
    REPLAY_BITS,
};
pub use keys::{keygen, load_key, write_key_file, Key, KEY_LEN};

/// Last 8 bytes of every datagram nonce (after node id and sequence number); seal format 0
/// used `MKseal01`.
pub const NONCE_SUFFIX: [u8; 8] = *b"MKseal02";

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
    /// Sealed in another format: an older makuo (format 0 relied on clocks) or a newer one.
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
/// sealed datagram (format 0 was the timestamp-window format of earlier builds).
pub const SEAL_FORMAT: u8 = 1;
/// Header flag bits holding the seal format.
pub const SEAL_FORMAT_MASK: u8 = 0x0e;
/// Length of the sealed timestamp (the sender's clock: information only).
pub const TIMESTAMP_LEN: usize = 8;
/// Length of the authentication tag.
pub const TAG_LEN: usize = 16;
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
    /// Challenges sent.
    pub challenges: u64,
    /// Responses sent.
    pub responses: u64,
    /// Senders verified.
    pub verified: u64,
    /// Challenges not answered: repeats of one already answered (replays).
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
    /// Sealing key first, then an optional second key that only opens.
    keys: Vec<(u8, XChaCha20Poly1305)>,
    node: u64,
    cluster: u16,
    /// Last sequence number sealed (data and handshakes share it, so nonces never repeat).
    seq: u64,
    peers: HashMap<u64, Peer>,
    pending: HashMap<u64, Pending>,
    /// The last challenge answered per challenger (its nonce) and when.
    answered: HashMap<u64, (u64, Instant)>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    verified: VecDeque<u64>,
    nonce_base: u64,
    nonce_count: u64,
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

fn nonce(node: u64, seq: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..8].copy_from_slice(&node.to_be_bytes());
    n[8..16].copy_from_slice(&seq.to_be_bytes());
    n[16..].copy_from_slice(&NONCE_SUFFIX);
    n.into()
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
        let keys = std::iter::once(key)
            .chain(also_open)
            .map(|k| (k.id(), k.cipher()))
            .collect();
        let mut seed = [0u8; 8];
        // Challenge nonces must differ between processes (a response names only the nonce
        // it answers), not be secret: a failing random source still gives distinct nonces
        // per node id.
        if getrandom::getrandom(&mut seed).is_err() {
            seed = node.to_le_bytes();
        }
        Self {
            keys,
            node,
            cluster,
            seq: 0,
            peers: HashMap::new(),
            pending: HashMap::new(),
            answered: HashMap::new(),
            out: VecDeque::new(),
            verified: VecDeque::new(),
            nonce_base: u64::from_le_bytes(seed),
            nonce_count: 0,
            stats: SealStats::default(),
        }
    }

    /// Id of the sealing key.
    pub fn key_id(&self) -> u8 {
        self.keys[0].0
    }

    /// The counters.
    pub fn stats(&self) -> SealStats {
        self.stats
    }

    /// Seals the unsealed datagram `buf[..len]` in place and returns the sealed length,
    /// `len + SEAL_OVERHEAD`: numbers it (the header's sequence number is replaced by this
    /// sealer's next one), sets [`FLAG_SEALED`], the seal format and the key id, encrypts the
    /// body followed by `now_unix_ms` (8 bytes, big-endian) under the nonce
    /// `node ++ seq ++ NONCE_SUFFIX` with the whole 24-byte header as associated data, and
    /// appends the 16-byte tag.
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
        self.seq += 1;
        buf[16..24].copy_from_slice(&self.seq.to_be_bytes());
        buf[4] = (buf[4] & !SEAL_FORMAT_MASK) | FLAG_SEALED | (SEAL_FORMAT << 1);
        buf[5] = self.keys[0].0;
        buf[len..len + TIMESTAMP_LEN].copy_from_slice(&now_unix_ms.to_be_bytes());
        let (hdr, rest) = buf.split_at_mut(HEADER_LEN);
        let plain = len - HEADER_LEN + TIMESTAMP_LEN;
        let tag = self.keys[0]
            .1
            .encrypt_in_place_detached(&nonce(self.node, self.seq), hdr, &mut rest[..plain])
            .expect("datagrams are far below the cipher's message limit");
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
    ///
    /// # Panics
    ///
    /// If `len > buf.len()`.
    pub fn open(
        &mut self,
        buf: &mut [u8],
        len: usize,
        from: SocketAddr,
        now: Instant,
        now_unix_ms: u64,
    ) -> Result<Opened, SealError> {
        let r = self.open_inner(&mut buf[..len], from, now, now_unix_ms);
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
        let (hdr, rest) = buf.split_at_mut(HEADER_LEN);
        let (ct, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let tag = chacha20poly1305::Tag::clone_from_slice(tag);
        let n = nonce(node, seq);
        let mut tried = false;
        let mut ok = false;
        for (id, cipher) in &self.keys {
            if *id != key_id {
                continue;
            }
            tried = true;
            // On failure the buffer is left untouched (the tag is checked before
            // decrypting), so a second key with the same id can still be tried.
            if cipher.decrypt_in_place_detached(&n, hdr, ct, &tag).is_ok() {
                ok = true;
                break;
            }
        }
        if !tried {
            return Err(SealError::UnknownKey(key_id));
        }
        if !ok {
            return Err(SealError::BadTag);
        }
        let body_len = ct.len() - TIMESTAMP_LEN;
        let sealed_ms = be64(&ct[body_len..]);
        let offset = sealed_ms as i64 - now_ms as i64;
        match kind {
            wire::kind::CHALLENGE | wire::kind::RESPONSE if body_len != HANDSHAKE_BODY => {
                Err(SealError::Malformed)
            }
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
}

#[cfg(test)]
mod tests {
    use super::handshake::SeqWindow;
    use super::*;
    use std::time::Duration;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; KEY_LEN])
    }

    use crate::proto::wire::{self, Msg, Stream};

    const NOW: u64 = 1_700_000_000_000;
    const CLUSTER: u16 = 7;
    const A: u64 = 0xaaaa;
    const B: u64 = 0xbbbb;

    fn addr(node: u64) -> SocketAddr {
        SocketAddr::new([10, 0, (node >> 8) as u8, node as u8].into(), 5000)
    }

    fn hdr(node: u64) -> wire::Header {
        wire::Header {
            version: wire::VERSION,
            kind: 0,
            flags: 0,
            key_id: 0,
            cluster: CLUSTER,
            node,
            seq: 0,
        }
    }

    /// A sealer for `node` with `k`, and the clock it runs on.
    fn sealer(k: &Key, node: u64) -> Sealer {
        Sealer::new(k, None, node, CLUSTER)
    }

    /// A block datagram from `s`'s node, sealed (unsealed form, sealed form).
    fn sealed(s: &mut Sealer, at: u64) -> (Vec<u8>, Vec<u8>) {
        let mut buf = [0u8; 256];
        let m = Msg::Block {
            xfer: 3,
            stream: Stream::Payload,
            idx: 5,
            data: b"delete nothing, please",
        };
        let n = m.encode(&hdr(s.node), &mut buf);
        let mut plain = buf[..n].to_vec();
        let m = s.seal(&mut buf, n, at);
        assert_eq!(m, n + SEAL_OVERHEAD);
        plain[16..24].copy_from_slice(&buf[16..24]);
        (plain, buf[..m].to_vec())
    }

    fn open_at(
        s: &mut Sealer,
        d: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Result<Vec<u8>, SealError> {
        let mut buf = d.to_vec();
        match s.open(&mut buf, d.len(), from, now, NOW)? {
            Opened::Datagram(n) => Ok(buf[..n].to_vec()),
            Opened::Handshake => Ok(Vec::new()),
        }
    }

    fn open(s: &mut Sealer, d: &[u8], from: SocketAddr) -> Result<Vec<u8>, SealError> {
        open_at(s, d, from, Instant::now())
    }

    /// Delivers every handshake datagram `from` has queued to `to`; returns how many.
    fn deliver(from: &mut Sealer, to: &mut Sealer, now: Instant) -> usize {
        let mut buf = [0u8; HANDSHAKE_LEN];
        let mut n = 0;
        while let Some((dest, len)) = from.poll_handshake(&mut buf) {
            assert_eq!(
                dest,
                addr(to.node),
                "handshakes go back where datagrams came from"
            );
            assert_eq!(len, HANDSHAKE_LEN);
            let _ = to.open(&mut buf, len, addr(from.node), now, NOW);
            n += 1;
        }
        n
    }

    /// `rx` meets `tx`: a datagram of `tx`'s draws a challenge, answered (with a challenge
    /// back), answered. Returns the datagram that started it.
    fn meet(tx: &mut Sealer, rx: &mut Sealer, now: Instant) -> Vec<u8> {
        let (_, first) = sealed(tx, NOW);
        let from = addr(tx.node);
        assert!(matches!(
            open_at(rx, &first, from, now),
            Err(SealError::Unverified(n)) if n == tx.node
        ));
        assert_eq!(deliver(rx, tx, now), 1, "one challenge");
        assert_eq!(
            deliver(tx, rx, now),
            1,
            "one response, with a challenge back"
        );
        assert_eq!(rx.poll_verified(), Some(tx.node));
        assert_eq!(deliver(rx, tx, now), 1, "the challenge back is answered");
        assert_eq!(tx.poll_verified(), Some(rx.node));
        first
    }

    #[test]
    fn seal_round_trip_after_a_challenge() {
        let k = key(1);
        let (mut tx, mut rx) = (sealer(&k, A), sealer(&k, B));
        let t = Instant::now();
        let first = meet(&mut tx, &mut rx, t);
        // What came before the answer is never accepted (the protocol sends it again).
        assert!(matches!(
            open_at(&mut rx, &first, addr(A), t),
            Err(SealError::Replayed { .. })
        ));
        let (plain, sd) = sealed(&mut tx, NOW);
        assert_eq!(sd[4], FLAG_SEALED | (SEAL_FORMAT << 1));
        assert_eq!(sd[5], k.id());
        assert_eq!(sd[6..16], plain[6..16], "cluster and node in clear");
        assert!(!sd.windows(6).any(|w| w == b"delete"), "body is encrypted");
        let back = open_at(&mut rx, &sd, addr(A), t).unwrap();
        assert_eq!(back, plain);
        let (h, m) = wire::decode(&back).unwrap();
        assert_eq!((h.flags, h.key_id, h.node), (0, 0, A));
        assert!(matches!(
            m,
            Msg::Block {
                data: b"delete nothing, please",
                ..
            }
        ));
        // Sequence numbers are the sealer's own, strictly increasing, handshakes included.
        let seqs: Vec<u64> = (0..3)
            .map(|_| be64(&sealed(&mut tx, NOW).1[16..24]))
            .collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        // An empty body (LEAVE) works too, and forgets the sender.
        let mut buf = [0u8; 64];
        let n = Msg::Leave.encode(&hdr(A), &mut buf);
        let m = tx.seal(&mut buf, n, NOW);
        assert_eq!(m, HEADER_LEN + SEAL_OVERHEAD);
        assert_eq!(
            rx.open(&mut buf, m, addr(A), t, NOW).unwrap(),
            Opened::Datagram(HEADER_LEN)
        );
        assert_eq!(wire::decode(&buf[..HEADER_LEN]).unwrap().1, Msg::Leave);
        assert_eq!(rx.peers(), 0);
    }

    #[test]
    fn seal_clocks_do_not_matter() {
        // A sender whose clock is two minutes ahead (or a day behind) is accepted: the
        // timestamp is information.
        let k = key(1);
        let (mut tx, mut rx) = (sealer(&k, A), sealer(&k, B));
        let t = Instant::now();
        meet(&mut tx, &mut rx, t);
        let (_, ahead) = sealed(&mut tx, NOW + 120_000);
        assert!(open_at(&mut rx, &ahead, addr(A), t).is_ok());
        assert_eq!(rx.max_clock_offset(), Some((A, 120_000)));
        let (_, behind) = sealed(&mut tx, NOW - 86_400_000);
        assert!(open_at(&mut rx, &behind, addr(A), t).is_ok());
    }

    #[test]
    fn seal_every_bit_flip_is_refused() {
        let k = key(1);
        let (mut tx, mut rx) = (sealer(&k, A), sealer(&k, B));
        let t = Instant::now();
        meet(&mut tx, &mut rx, t);
        let (_, sd) = sealed(&mut tx, NOW);
        for bit in 0..sd.len() * 8 {
            let mut d = sd.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            let e = open_at(&mut rx, &d, addr(A), t).unwrap_err();
            if bit / 8 >= HEADER_LEN {
                assert!(matches!(e, SealError::BadTag), "bit {bit}: {e}");
            }
        }
        for cut in 0..sd.len() {
            assert!(
                open_at(&mut rx, &sd[..cut], addr(A), t).is_err(),
                "cut at {cut}"
            );
        }
        assert_eq!(rx.stats().opened, 0);
        assert!(
            open_at(&mut rx, &sd, addr(A), t).is_ok(),
            "the original still opens"
        );
    }

    #[test]
    fn seal_wrong_key_other_cluster_old_format_and_unsealed_refused() {
        let mut tx = sealer(&key(1), A);
        let (plain, sd) = sealed(&mut tx, NOW);
        let mut other = sealer(&key(2), B);
        assert!(matches!(
            open(&mut other, &sd, addr(A)),
            Err(SealError::UnknownKey(id)) if id == key(1).id()
        ));
        // A different key that happens to claim the same id fails authentication.
        let mut d = sd.clone();
        d[5] = key(2).id();
        assert!(matches!(
            open(&mut other, &d, addr(A)),
            Err(SealError::BadTag)
        ));
        // An unsealed datagram (makuosan-style forgery) is refused.
        assert!(matches!(
            open(&mut other, &plain, addr(A)),
            Err(SealError::Unsealed)
        ));
        // An older makuo's format (flags 0x01) and a newer one: refused by format, so the
        // driver can say so.
        for (flags, f) in [(0x01, 0), (0x05, 2)] {
            let mut d = sd.clone();
            d[4] = flags;
            assert!(matches!(open(&mut other, &d, addr(A)), Err(SealError::Format(x)) if x == f));
        }
        let st = other.stats();
        assert_eq!(
            (st.unknown_key, st.bad_tag, st.unsealed_refused, st.format),
            (1, 1, 1, 2)
        );
        // Another cluster on the same group: refused before cryptography.
        let mut mine = Sealer::new(&key(1), None, B, 8);
        assert!(matches!(
            open(&mut mine, &sd, addr(A)),
            Err(SealError::OtherCluster(CLUSTER))
        ));
        assert!(matches!(
            open(&mut mine, b"XX", addr(A)),
            Err(SealError::Malformed)
        ));
    }

    #[test]
    fn seal_rotation_first_seals_both_open() {
        let (old, new) = (key(1), key(2));
        let mut old_tx = Sealer::new(&old, None, A, CLUSTER);
        let mut new_tx = Sealer::new(&new, Some(&old), 0xcccc, CLUSTER);
        let mut rx = Sealer::new(&old, Some(&new), B, CLUSTER);
        assert_eq!(new_tx.key_id(), new.id());
        let t = Instant::now();
        meet(&mut old_tx, &mut rx, t);
        meet(&mut new_tx, &mut rx, t);
        let (pa, a) = sealed(&mut old_tx, NOW);
        let (pb, b) = sealed(&mut new_tx, NOW);
        assert_eq!(b[5], new.id(), "the first key seals");
        assert_eq!(open_at(&mut rx, &a, addr(A), t).unwrap(), pa);
        assert_eq!(open_at(&mut rx, &b, addr(0xcccc), t).unwrap(), pb);
        // A node that only knows the new key cannot open the old one's datagrams.
        let mut only_new = Sealer::new(&new, None, 0xdddd, CLUSTER);
        assert!(matches!(
            open(&mut only_new, &a, addr(A)),
            Err(SealError::UnknownKey(_))
        ));
        assert!(matches!(
            open(&mut only_new, &b, addr(0xcccc)),
            Err(SealError::Unverified(0xcccc))
        ));
    }

    #[test]
    fn seal_rotation_with_colliding_key_ids() {
        // Find two keys with the same id; the receiver must try both.
        let a = key(0);
        let b = (1..=u32::MAX)
            .map(|i| {
                let mut b = [0u8; KEY_LEN];
                b[..4].copy_from_slice(&i.to_be_bytes());
                Key::from_bytes(b)
            })
            .find(|k| k.id() == a.id())
            .unwrap();
        let mut tx = Sealer::new(&b, Some(&a), A, CLUSTER);
        let mut rx = Sealer::new(&a, Some(&b), B, CLUSTER);
        let t = Instant::now();
        meet(&mut tx, &mut rx, t);
        let (p, d) = sealed(&mut tx, NOW);
        assert_eq!(open_at(&mut rx, &d, addr(A), t).unwrap(), p);
    }

    #[test]
    fn seal_nonce_differs_per_seq_and_node() {
        let k = key(1);
        let mut a = sealer(&k, 42);
        let mut b = sealer(&k, 43);
        let (_, x) = sealed(&mut a, NOW);
        let (_, y) = sealed(&mut a, NOW);
        let (_, z) = sealed(&mut b, NOW);
        let body = HEADER_LEN..x.len();
        assert_ne!(x[body.clone()], y[body.clone()]);
        assert_ne!(x[body.clone()], z[body.clone()]);
        assert_eq!(
            nonce(42, 1)[..16],
            [0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 1]
        );
    }

    #[test]
    #[should_panic(expected = "another node")]
    fn seal_refuses_another_nodes_datagram() {
        let mut s = sealer(&key(1), A);
        let mut buf = [0u8; 64];
        let n = Msg::Leave.encode(&hdr(B), &mut buf);
        s.seal(&mut buf, n, NOW);
    }

    #[test]
    fn seal_replay_refused_each_seq_once() {
        let k = key(1);
        let (mut tx, mut rx) = (sealer(&k, A), sealer(&k, B));
        let t = Instant::now();
        meet(&mut tx, &mut rx, t);
        let (_, d1) = sealed(&mut tx, NOW);
        let (_, d2) = sealed(&mut tx, NOW);
        let (_, d3) = sealed(&mut tx, NOW);
        // Reordering is fine, each seq once.
        assert!(open_at(&mut rx, &d3, addr(A), t).is_ok());
        assert!(open_at(&mut rx, &d1, addr(A), t).is_ok());
        for d in [&d1, &d3] {
            assert!(matches!(
                open_at(&mut rx, d, addr(A), t),
                Err(SealError::Replayed { node: A, .. })
            ));
        }
        // From another address too: the window is the sender's, wherever it comes from.
        assert!(open_at(&mut rx, &d1, addr(0x99), t).is_err());
        assert!(open_at(&mut rx, &d2, addr(0x99), t).is_ok());
        assert_eq!(rx.stats().replayed, 3);
    }

    #[test]
    fn seal_replay_window_matches_a_model() {
        let mut w = SeqWindow::above(999);
        let mut seen = std::collections::HashSet::new();
        let mut top = 999u64;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly near the top, some far behind, some big jumps ahead.
            let seq = match x % 100 {
                0 => top + 1 + (x >> 40) % 10_000,
                1..=4 => top.saturating_sub((x >> 20) % 9_000),
                _ => (top + 3).saturating_sub((x >> 20) % 300),
            };
            let fresh = seq > 999 && !seen.contains(&seq) && seq + REPLAY_BITS > top;
            assert_eq!(w.accept(seq), fresh, "step {i}: seq {seq}, top {top}");
            if fresh {
                seen.insert(seq);
                top = top.max(seq);
            }
        }
    }

    #[test]
    fn seal_a_restarted_receiver_challenges_again_and_old_traffic_stays_out() {
        let k = key(1);
        let mut tx = sealer(&k, A);
        let mut before = sealer(&k, B);
        let t = Instant::now();
        meet(&mut tx, &mut before, t);
        let (_, old) = sealed(&mut tx, NOW);
        assert!(open_at(&mut before, &old, addr(A), t).is_ok());
        // The receiver restarts (a new sealer with a new node id): the recording of `old`
        // draws a challenge, the live sender answers with its current number, so `old` (and
        // everything before the answer) stays refused; there is no window of time in which
        // a replay is accepted.
        let mut after = sealer(&k, 0xbbbc);
        let t2 = t + Duration::from_millis(10);
        assert!(matches!(
            open_at(&mut after, &old, addr(A), t2),
            Err(SealError::Unverified(A))
        ));
        assert_eq!(deliver(&mut after, &mut tx, t2), 1);
        assert_eq!(deliver(&mut tx, &mut after, t2), 1);
        assert_eq!(after.poll_verified(), Some(A));
        assert!(matches!(
            open_at(&mut after, &old, addr(A), t2),
            Err(SealError::Replayed { .. })
        ));
        let (p, new) = sealed(&mut tx, NOW);
        assert_eq!(open_at(&mut after, &new, addr(A), t2).unwrap(), p);
    }

    #[test]
    fn seal_a_dead_senders_traffic_can_never_be_replayed() {
        let k = key(1);
        let mut dead = sealer(&k, A);
        let mut rx = sealer(&k, B);
        let (_, d) = sealed(&mut dead, NOW);
        let t = Instant::now();
        // Nobody answers the challenges (the sender is gone); recorded responses to earlier
        // challenges do not fit a new one.
        let mut old_responses = Vec::new();
        {
            let mut other_rx = sealer(&k, 0xb0b0);
            assert!(open_at(&mut other_rx, &d, addr(A), t).is_err());
            deliver(&mut other_rx, &mut dead, t);
            let mut buf = [0u8; HANDSHAKE_LEN];
            while let Some((_, n)) = dead.poll_handshake(&mut buf) {
                old_responses.push(buf[..n].to_vec());
            }
        }
        assert_eq!(old_responses.len(), 1);
        for i in 0..10 {
            let ti = t + CHALLENGE_RETRY * i;
            assert!(open_at(&mut rx, &d, addr(A), ti).is_err());
            for r in &old_responses {
                assert!(matches!(
                    open_at(&mut rx, r, addr(A), ti),
                    Err(SealError::StaleHandshake(A))
                ));
            }
        }
        assert_eq!(rx.stats().opened, 0);
        assert_eq!(rx.peers(), 0);
        assert_eq!(
            rx.stats().challenges,
            10,
            "challenged at most every retry interval"
        );
    }

    #[test]
    fn seal_responses_must_come_from_the_challenged_address() {
        let k = key(1);
        let (mut tx, mut rx) = (sealer(&k, A), sealer(&k, B));
        let t = Instant::now();
        let (_, d) = sealed(&mut tx, NOW);
        assert!(open_at(&mut rx, &d, addr(A), t).is_err());
        deliver(&mut rx, &mut tx, t);
        let mut buf = [0u8; HANDSHAKE_LEN];
        let (_, n) = tx.poll_handshake(&mut buf).unwrap();
        let resp = buf[..n].to_vec();
        assert!(matches!(
            open_at(&mut rx, &resp, addr(0x77), t),
            Err(SealError::StaleHandshake(A))
        ));
        assert!(open_at(&mut rx, &resp, addr(A), t).is_ok());
        assert_eq!(rx.poll_verified(), Some(A));
        // Used up: the same response again is stale.
        assert!(matches!(
            open_at(&mut rx, &resp, addr(A), t),
            Err(SealError::StaleHandshake(A))
        ));
    }

    #[test]
    fn seal_handshakes_never_send_more_than_they_got() {
        let k = key(1);
        let (mut tx, mut rx) = (sealer(&k, A), sealer(&k, B));
        let t = Instant::now();
        // A short authentic datagram (a LEAVE, 48 bytes) draws no challenge: it would be
        // longer than what came.
        let mut buf = [0u8; 64];
        let n = Msg::Leave.encode(&hdr(A), &mut buf);
        let m = tx.seal(&mut buf, n, NOW);
        assert!(m < HANDSHAKE_LEN);
        assert!(matches!(
            rx.open(&mut buf, m, addr(A), t, NOW),
            Err(SealError::Unverified(A))
        ));
        assert_eq!(rx.stats().challenges, 0);
        // A replayed challenge is answered once, with a response exactly as long as the
        // challenge; a new challenge (a new nonce) is answered again.
        let (_, d) = sealed(&mut tx, NOW);
        assert!(open_at(&mut rx, &d, addr(A), t).is_err());
        let mut c = [0u8; HANDSHAKE_LEN];
        let (_, n) = rx.poll_handshake(&mut c).unwrap();
        for i in 0..100u32 {
            let ti = t + Duration::from_millis(i as u64);
            let mut x = c;
            let _ = tx.open(&mut x, n, addr(B), ti, NOW);
        }
        let mut out = 0;
        let mut r = [0u8; HANDSHAKE_LEN];
        while let Some((_, len)) = tx.poll_handshake(&mut r) {
            assert_eq!(len, n);
            out += 1;
        }
        assert_eq!(out, 1, "100 copies of one challenge: one answer");
        assert_eq!(tx.stats().limited, 99);
        let t2 = t + CHALLENGE_RETRY;
        let (_, d) = sealed(&mut tx, NOW);
        assert!(open_at(&mut rx, &d, addr(A), t2).is_err());
        assert_eq!(deliver(&mut rx, &mut tx, t2), 1);
        assert!(
            tx.poll_handshake(&mut r).is_some(),
            "a new challenge is answered"
        );
    }

    #[test]
    fn seal_tables_are_bounded_and_age_out() {
        let k = key(1);
        let mut rx = sealer(&k, B);
        let t = Instant::now();
        for i in 0..(MAX_PEERS + 10) as u64 {
            let mut tx = sealer(&k, 0x1_0000 + i);
            meet(&mut tx, &mut rx, t + Duration::from_micros(i));
        }
        assert_eq!(rx.peers(), MAX_PEERS);
        // Challenges to senders that never answer are bounded too.
        for i in 0..(MAX_PENDING + 10) as u64 {
            let mut tx = sealer(&k, 0x2_0000 + i);
            let (_, d) = sealed(&mut tx, NOW);
            let _ = open_at(&mut rx, &d, addr(i), t);
        }
        assert!(rx.pending.len() <= MAX_PENDING);
        rx.expire(t + PEER_IDLE + Duration::from_secs(1));
        assert_eq!(rx.peers(), 0);
        assert_eq!(rx.pending.len(), 0);
    }

    #[test]
    fn seal_a_thousand_members_meet_a_newcomer_in_three_datagrams_each() {
        // A direct-mode sender joins a cluster of 1,000: its join draws 1,000 challenges, it
        // answers each (challenging back), each answers that. Both ends are verified with
        // three 64-byte datagrams per member.
        let k = key(1);
        let t = Instant::now();
        let mut s = sealer(&k, A);
        let mut members: Vec<Sealer> = (0..1000).map(|i| sealer(&k, 0x1_0000 + i)).collect();
        let (_, join) = sealed(&mut s, NOW);
        let mut sent = [0usize; 3];
        for m in &mut members {
            assert!(open_at(m, &join, addr(A), t).is_err());
            sent[0] += deliver(m, &mut s, t);
        }
        for m in &mut members {
            let mut buf = [0u8; HANDSHAKE_LEN];
            while let Some((to, n)) = s.poll_handshake(&mut buf) {
                if to == addr(m.node) {
                    let _ = m.open(&mut buf, n, addr(A), t, NOW);
                    sent[1] += 1;
                    break;
                }
            }
            assert_eq!(m.poll_verified(), Some(A));
            sent[2] += deliver(m, &mut s, t);
        }
        assert_eq!(sent, [1000, 1000, 1000]);
        let mut verified = 0;
        while s.poll_verified().is_some() {
            verified += 1;
        }
        assert_eq!(verified, 1000);
        assert_eq!(s.peers(), 1000);
        assert_eq!(s.stats().responses, 1000);
    }

    /// The test vector of `docs/protocol.md (Sealing)`, checked independently (HChaCha20 by
    /// hand plus an IETF ChaCha20-Poly1305 library); pins the format.
    #[test]
    fn seal_known_answer() {
        let k = Key::from_bytes(std::array::from_fn(|i| i as u8));
        assert_eq!(k.id(), 0x48);
        let node = 0x0123_4567_89ab_cdef;
        let mut tx = Sealer::new(&k, None, node, 7);
        let mut buf = [0u8; 64];
        let n = Msg::Abort {
            xfer: 5,
            reason: b"hi",
        }
        .encode(&hdr(node), &mut buf);
        let mut plain = buf[..n].to_vec();
        plain[16..24].copy_from_slice(&1u64.to_be_bytes());
        let n = tx.seal(&mut buf, n, 1_700_000_000_000);
        let hex: String = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "4d4b020d034800070123456789abcdef0000000000000001\
             e5352c43b544868602cd57529a0e9930\
             86ae7823469838b4a04c2b38bbf436a2"
        );
        let mut rx = Sealer::new(&k, None, 0x42, 7);
        // Not verified yet: refused, so open it as a verified peer would.
        rx.peers.insert(
            node,
            Peer {
                window: SeqWindow::above(0),
                last: Instant::now(),
                clock_offset_ms: 0,
            },
        );
        assert_eq!(open(&mut rx, &buf[..n], addr(1)).unwrap(), plain);
    }
}
