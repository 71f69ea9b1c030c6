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
//! [`FLAG_SEALED`] and the key id set) and is the associated data, so none of it can be
//! altered. The timestamp is the sender's clock in unix ms.
//!
//! **Nonce**: `node id (8) | seq (8) | "MKseal01"`. It never repeats for a key because the node
//! id is drawn at random per process (a collision among `n` processes ever run with one key
//! has probability about `n² / 2^65`) and the sequence number strictly increases within a
//! process; [`Sealer::seal`] panics rather than seal a non-increasing one. This relies on the
//! node id being fresh random for every process, never persisted or derived from the host.
//! XChaCha20-Poly1305 was chosen because its 24-byte nonce holds both ids whole; the 12-byte
//! nonce of ChaCha20-Poly1305 would force truncating the node id, and random nonces would not
//! fit in [`SEAL_OVERHEAD`].
//!
//! # Replay protection
//!
//! After authentication a datagram is accepted only if (1) its timestamp is within
//! ±`window` (default 60 s, [`Sealer::set_window`]) of our clock, and (2) its (node, seq) has
//! not been accepted before: each sender has a window of its highest sequence number and a
//! bitmap of the [`REPLAY_BITS`] below it (older numbers are refused). A sender's window is
//! kept until our clock passes the newest timestamp accepted from it by more than `window`:
//! from then on every datagram of it that we accepted is refused as stale anyway, so a
//! short-lived sender that has exited is still covered. At most [`DEFAULT_MAX_NODES`] windows
//! are kept ([`Sealer::set_max_nodes`]); when full, expired ones are dropped, and if none has
//! expired a datagram from a new sender is refused rather than forgetting a live window.
//!
//! **Receiver restart**: the windows live in memory only. Instead of persisting them (a state
//! file is lost on a crash between write and exit, and is one more file to protect), a sealer
//! refuses timestamps older than its start time minus a small skew (default 2 s,
//! [`Sealer::set_start_time`], [`Sealer::set_start_skew`]); if the start time is not set, the
//! first `open` sets it. Limits, also in the protocol document:
//! - a datagram sealed within the skew before a restart, and already accepted by the previous
//!   run, can be replayed once to the new run;
//! - a sender whose clock is more than the skew behind ours is refused for that long after our
//!   start, and one more than `window` off is refused always: the cluster needs synchronised
//!   clocks (NTP);
//! - if our clock steps backwards by more than `window`, forgotten datagrams can become fresh
//!   again.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};

use crate::proto::wire::{FLAG_SEALED, HEADER_LEN, MAGIC, SEAL_OVERHEAD};

/// Length of a cluster key in bytes.
pub const KEY_LEN: usize = 32;

/// Last 8 bytes of the nonce that derives a key's id (never a datagram nonce, whose last 8
/// bytes are [`NONCE_SUFFIX`]).
const KEY_ID_SUFFIX: [u8; 8] = *b"MKkeyid1";
/// Last 8 bytes of every datagram nonce (after node id and sequence number).
pub const NONCE_SUFFIX: [u8; 8] = *b"MKseal01";

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
    /// The sealed timestamp is outside the accepted window (or from before our start).
    Stale {
        /// Sealed timestamp, unix ms.
        sealed_ms: u64,
        /// Our clock, unix ms.
        now_ms: u64,
    },
    /// This (node, sequence number) was already accepted, or is too far below the newest one.
    Replayed {
        /// Sender's node id.
        node: u64,
        /// Sequence number.
        seq: u64,
    },
    /// Too many senders heard within the window to track another one.
    TooManyNodes,
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
            Self::Stale { sealed_ms, now_ms } => write!(
                f,
                "stale datagram: sealed at {sealed_ms} ms, now {now_ms} ms (unix time)"
            ),
            Self::Replayed { node, seq } => {
                write!(f, "replayed datagram (node {node:016x}, seq {seq})")
            }
            Self::TooManyNodes => f.write_str("too many senders to track; datagram refused"),
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

/// A 32-byte cluster key. Its `Debug` shows only the key id.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(id {:#04x})", self.id())
    }
}

impl Key {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh random key from the operating system.
    pub fn generate() -> Result<Self, SealError> {
        let mut k = [0u8; KEY_LEN];
        getrandom::getrandom(&mut k).map_err(|e| SealError::Io {
            path: PathBuf::from("<getrandom>"),
            err: io::Error::other(e.to_string()),
        })?;
        Ok(Self(k))
    }

    /// Parses the key file format: 64 hex digits, optionally followed by one newline.
    pub fn from_hex(text: &str) -> Result<Self, SealError> {
        parse_hex(text.as_bytes(), Path::new(""))
    }

    /// The key as 64 lowercase hex digits (no newline).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key id carried in sealed headers: the first byte of a tag computed with the key
    /// under a nonce no datagram uses (`[0; 16] ++ "MKkeyid1"`) over the associated data
    /// `"makuo key id"`. It is a public, one-way function of the key: it reveals nothing
    /// usable about the key, and two keys share an id with probability 1/256 (receivers then
    /// simply try both).
    pub fn id(&self) -> u8 {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let mut nonce = [0u8; 24];
        nonce[16..].copy_from_slice(&KEY_ID_SUFFIX);
        let tag = cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), b"makuo key id", &mut [])
            .expect("empty message always seals");
        tag[0]
    }
}

fn parse_hex(text: &[u8], path: &Path) -> Result<Key, SealError> {
    let bad = |reason| SealError::KeyFileMalformed {
        path: path.to_path_buf(),
        reason,
    };
    let digits = text.strip_suffix(b"\n").unwrap_or(text);
    if digits.len() != 2 * KEY_LEN {
        return Err(bad(
            "expected exactly 64 hex digits and a newline (make one with `makuo keygen`)",
        ));
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut k = [0u8; KEY_LEN];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => k[i] = (h << 4) | l,
            _ => return Err(bad("contains a character that is not a hex digit")),
        }
    }
    Ok(Key(k))
}

/// Loads a key file, refusing one that group or others may read or write (`mode & 0o077`),
/// one that is not a regular file, and malformed contents. Permissions are checked on the
/// opened file itself, so the file cannot be swapped between the check and the read.
pub fn load_key(path: impl AsRef<Path>) -> Result<Key, SealError> {
    use crate::secret_file::{self, SecretFileError};
    let path = path.as_ref();
    let io_err = |err| SealError::Io {
        path: path.to_path_buf(),
        err,
    };
    let f = secret_file::open(path, "key file").map_err(|e| match e {
        SecretFileError::Mode { path, mode, .. } => SealError::KeyFileMode { path, mode },
        SecretFileError::NotRegular { path, .. } => SealError::KeyFileType(path),
        SecretFileError::Io { path, err, .. } => SealError::Io { path, err },
        other => io_err(io::Error::other(other.to_string())),
    })?;
    // A key file is 65 bytes; read a little more so an oversized file is reported as such.
    let mut text = Vec::with_capacity(80);
    f.take(2 * KEY_LEN as u64 + 8)
        .read_to_end(&mut text)
        .map_err(io_err)?;
    parse_hex(&text, path)
}

/// Writes `key` to a new file at `path` with mode 0600, using `O_EXCL`: an existing file (or
/// symlink) is never overwritten. A partly written file is removed.
pub fn write_key_file(path: impl AsRef<Path>, key: &Key) -> Result<(), SealError> {
    let path = path.as_ref();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| {
            if err.kind() == io::ErrorKind::AlreadyExists {
                SealError::KeyFileExists(path.to_path_buf())
            } else {
                SealError::Io {
                    path: path.to_path_buf(),
                    err,
                }
            }
        })?;
    let text = format!("{}\n", key.to_hex());
    if let Err(err) = f.write_all(text.as_bytes()).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(SealError::Io {
            path: path.to_path_buf(),
            err,
        });
    }
    Ok(())
}

/// `makuo keygen`: makes a new random key and prints it to stdout (`dest` is `-`) or writes it
/// to a new file (see [`write_key_file`]). Returns the key.
pub fn keygen(dest: &str) -> Result<Key, SealError> {
    let key = Key::generate()?;
    if dest == "-" {
        let mut out = io::stdout().lock();
        writeln!(out, "{}", key.to_hex())
            .and_then(|()| out.flush())
            .map_err(|err| SealError::Io {
                path: PathBuf::from("<stdout>"),
                err,
            })?;
    } else {
        write_key_file(dest, &key)?;
    }
    Ok(key)
}

/// Default accepted distance between a sealed timestamp and our clock, in ms.
pub const DEFAULT_WINDOW_MS: u64 = 60_000;
/// Length of the sealed timestamp.
pub const TIMESTAMP_LEN: usize = 8;
/// Length of the authentication tag.
pub const TAG_LEN: usize = 16;
const _: () = assert!(TIMESTAMP_LEN + TAG_LEN == SEAL_OVERHEAD);
/// Sequence numbers remembered below a node's highest one.
pub const REPLAY_BITS: u64 = 4096;
/// Default number of senders whose replay windows are tracked at once.
pub const DEFAULT_MAX_NODES: usize = 4096;
/// Default tolerance (ms) for timestamps sealed before our start, for clock skew between
/// nodes (see [`Sealer::set_start_time`]).
pub const DEFAULT_START_SKEW_MS: u64 = 2_000;

const WORDS: usize = (REPLAY_BITS / 64) as usize;

/// One sender's replay window: its highest accepted sequence number and a bitmap of the
/// [`REPLAY_BITS`] numbers at and below it (bit `i` is `top - i`).
struct SeqWindow {
    top: u64,
    bits: [u64; WORDS],
    /// Highest sealed timestamp accepted from this node: once our clock passes it by more
    /// than the window, every datagram of this node we accepted is stale, and the window may
    /// be forgotten.
    max_ts: u64,
}

impl SeqWindow {
    fn new(seq: u64, ts: u64) -> Self {
        let mut bits = [0; WORDS];
        bits[0] = 1;
        Self {
            top: seq,
            bits,
            max_ts: ts,
        }
    }

    /// Marks `seq` as seen; false if it was already seen or lies below the window.
    fn accept(&mut self, seq: u64) -> bool {
        if seq > self.top {
            self.shift(seq - self.top);
            self.top = seq;
            self.bits[0] |= 1;
            return true;
        }
        let d = self.top - seq;
        if d >= REPLAY_BITS {
            return false;
        }
        let (w, b) = ((d / 64) as usize, d % 64);
        if self.bits[w] & (1 << b) != 0 {
            return false;
        }
        self.bits[w] |= 1 << b;
        true
    }

    /// Moves every bit `k` places further from the top (bits past the end fall off).
    fn shift(&mut self, k: u64) {
        if k >= REPLAY_BITS {
            self.bits = [0; WORDS];
            return;
        }
        let (ws, bs) = ((k / 64) as usize, (k % 64) as u32);
        for w in (0..WORDS).rev() {
            let mut v = 0;
            if w >= ws {
                v = self.bits[w - ws] << bs;
                if bs > 0 && w > ws {
                    v |= self.bits[w - ws - 1] >> (64 - bs);
                }
            }
            self.bits[w] = v;
        }
    }
}

/// Counters of what a [`Sealer`] did, for status output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SealStats {
    /// Datagrams opened and handed on.
    pub opened: u64,
    /// Datagrams sealed.
    pub sealed: u64,
    /// Refused: authentication failed.
    pub bad_tag: u64,
    /// Refused: not sealed although we have a key.
    pub unsealed_refused: u64,
    /// Refused: sealed with a key id we do not hold.
    pub unknown_key: u64,
    /// Refused: (node, seq) already seen or below the replay window.
    pub replayed: u64,
    /// Refused: sealed timestamp outside the window, or from before our start.
    pub stale: u64,
    /// Refused: not a makuo datagram or too short to be sealed.
    pub malformed: u64,
    /// Refused: another cluster id than ours (before any cryptography).
    pub other_cluster: u64,
    /// Refused: a new sender while the replay table was full of live senders.
    pub too_many_nodes: u64,
}

/// Seals outgoing and opens incoming datagrams with the cluster key(s).
pub struct Sealer {
    /// Sealing key first, then an optional second key that only opens.
    keys: Vec<(u8, XChaCha20Poly1305)>,
    cluster: Option<u16>,
    window_ms: u64,
    /// Replay windows per sender node id.
    nodes: std::collections::HashMap<u64, SeqWindow>,
    max_nodes: usize,
    /// Our start (unix ms): timestamps sealed before `start - start_skew` are refused, as the
    /// replay windows of a previous run are gone. Unset: the first `open` sets it.
    start_ms: Option<u64>,
    start_skew_ms: u64,
    /// Last sequence number sealed per node id: a repeat would reuse a nonce.
    last_sealed: std::collections::HashMap<u64, u64>,
    stats: SealStats,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| k.0).collect::<Vec<_>>(),
            )
            .field("cluster", &self.cluster)
            .field("window_ms", &self.window_ms)
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

impl Sealer {
    /// A sealer that seals with `key` and opens with `key` or `also_open` (key rotation: the
    /// first `-k` seals, both open). With `cluster`, datagrams whose header carries another
    /// cluster id are refused before any cryptography (they belong to another cluster sharing
    /// the group and would otherwise be counted as forgeries).
    pub fn new(key: &Key, also_open: Option<&Key>, cluster: Option<u16>) -> Self {
        let keys = std::iter::once(key)
            .chain(also_open)
            .map(|k| (k.id(), XChaCha20Poly1305::new((&k.0).into())))
            .collect();
        Self {
            keys,
            cluster,
            window_ms: DEFAULT_WINDOW_MS,
            nodes: Default::default(),
            max_nodes: DEFAULT_MAX_NODES,
            start_ms: None,
            start_skew_ms: DEFAULT_START_SKEW_MS,
            last_sealed: Default::default(),
            stats: SealStats::default(),
        }
    }

    /// Sets how far (ms, either way) a sealed timestamp may be from our clock.
    pub fn set_window(&mut self, window_ms: u64) {
        self.window_ms = window_ms;
    }

    /// Sets our start time (unix ms), normally the process start. Datagrams sealed more than
    /// the start skew before it are refused as stale: they may have been accepted by a
    /// previous run of this process, whose replay windows are lost. If never called, the
    /// first [`Sealer::open`] sets it to its `now_unix_ms`.
    pub fn set_start_time(&mut self, start_unix_ms: u64) {
        self.start_ms = Some(start_unix_ms);
    }

    /// Sets how long (ms) before our start a timestamp may be and still be accepted (clock
    /// skew between nodes). Default [`DEFAULT_START_SKEW_MS`].
    pub fn set_start_skew(&mut self, skew_ms: u64) {
        self.start_skew_ms = skew_ms;
    }

    /// Sets how many senders' replay windows are kept (about 530 bytes each). When full,
    /// windows whose senders' datagrams are all stale are dropped; if none is, a datagram
    /// from a new sender is refused ([`SealError::TooManyNodes`]) rather than forgetting a
    /// window that still guards against replays.
    pub fn set_max_nodes(&mut self, max_nodes: usize) {
        self.max_nodes = max_nodes.max(1);
    }

    /// Number of senders whose replay windows are currently kept.
    pub fn tracked_nodes(&self) -> usize {
        self.nodes.len()
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
    /// `len + SEAL_OVERHEAD`: sets [`FLAG_SEALED`] and the key id in the header, encrypts the
    /// body followed by `now_unix_ms` (8 bytes, big-endian) under the nonce
    /// `node ++ seq ++ NONCE_SUFFIX` with the whole 24-byte header as associated data, and
    /// appends the 16-byte tag.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than `len + SEAL_OVERHEAD` or `len < HEADER_LEN` (callers size
    /// buffers for sealing), or if the header's sequence number is not greater than the last
    /// one this sealer sealed for the same node id: that would reuse a nonce, which with this
    /// cipher leaks plaintext and lets anyone forge datagrams, so it is treated as the
    /// programming error it is rather than sent.
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
        let node = u64::from_be_bytes(buf[8..16].try_into().unwrap());
        let seq = u64::from_be_bytes(buf[16..24].try_into().unwrap());
        if let Some(last) = self.last_sealed.insert(node, seq) {
            assert!(
                seq > last,
                "seal: sequence number {seq} of node {node:016x} not above {last}: nonce reuse"
            );
        }
        buf[4] |= FLAG_SEALED;
        buf[5] = self.keys[0].0;
        buf[len..len + TIMESTAMP_LEN].copy_from_slice(&now_unix_ms.to_be_bytes());
        let (hdr, rest) = buf.split_at_mut(HEADER_LEN);
        let plain = len - HEADER_LEN + TIMESTAMP_LEN;
        let tag = self.keys[0]
            .1
            .encrypt_in_place_detached(&nonce(node, seq), hdr, &mut rest[..plain])
            .expect("datagrams are far below the cipher's message limit");
        rest[plain..plain + TAG_LEN].copy_from_slice(&tag);
        self.stats.sealed += 1;
        len + SEAL_OVERHEAD
    }

    /// Opens the sealed datagram `buf[..len]` in place: checks the flag, cluster and key id,
    /// verifies the tag and decrypts, checks the sealed timestamp and the replay window, then
    /// rewrites the buffer to the unsealed form `[header | body]` ([`FLAG_SEALED`] and key id
    /// cleared) and returns its length. On error the datagram must be dropped unparsed; the
    /// replay state changes only for datagrams that are accepted.
    ///
    /// # Panics
    ///
    /// If `len > buf.len()`.
    pub fn open(
        &mut self,
        buf: &mut [u8],
        len: usize,
        now_unix_ms: u64,
    ) -> Result<usize, SealError> {
        let r = self.open_inner(&mut buf[..len], now_unix_ms);
        let s = &mut self.stats;
        match &r {
            Ok(_) => s.opened += 1,
            Err(SealError::Malformed) => s.malformed += 1,
            Err(SealError::Unsealed) => s.unsealed_refused += 1,
            Err(SealError::OtherCluster(_)) => s.other_cluster += 1,
            Err(SealError::UnknownKey(_)) => s.unknown_key += 1,
            Err(SealError::BadTag) => s.bad_tag += 1,
            Err(SealError::Stale { .. }) => s.stale += 1,
            Err(SealError::Replayed { .. }) => s.replayed += 1,
            Err(SealError::TooManyNodes) => s.too_many_nodes += 1,
            Err(_) => {}
        }
        r
    }

    fn open_inner(&mut self, buf: &mut [u8], now: u64) -> Result<usize, SealError> {
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
        if self.cluster.is_some_and(|c| c != cluster) {
            return Err(SealError::OtherCluster(cluster));
        }
        let key_id = buf[5];
        let node = u64::from_be_bytes(buf[8..16].try_into().unwrap());
        let seq = u64::from_be_bytes(buf[16..24].try_into().unwrap());
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
        let sealed_ms = u64::from_be_bytes(ct[body_len..].try_into().unwrap());
        self.check_fresh(node, seq, sealed_ms, now)?;
        hdr[4] &= !FLAG_SEALED;
        hdr[5] = 0;
        Ok(HEADER_LEN + body_len)
    }

    /// Timestamp and replay checks of an authenticated datagram; records it if accepted.
    fn check_fresh(
        &mut self,
        node: u64,
        seq: u64,
        sealed_ms: u64,
        now: u64,
    ) -> Result<(), SealError> {
        let start = *self.start_ms.get_or_insert(now);
        if sealed_ms.abs_diff(now) > self.window_ms
            || sealed_ms < start.saturating_sub(self.start_skew_ms)
        {
            return Err(SealError::Stale {
                sealed_ms,
                now_ms: now,
            });
        }
        if let Some(w) = self.nodes.get_mut(&node) {
            if !w.accept(seq) {
                return Err(SealError::Replayed { node, seq });
            }
            w.max_ts = w.max_ts.max(sealed_ms);
            return Ok(());
        }
        if self.nodes.len() >= self.max_nodes {
            let window = self.window_ms;
            self.nodes
                .retain(|_, w| now <= w.max_ts.saturating_add(window));
            if self.nodes.len() >= self.max_nodes {
                return Err(SealError::TooManyNodes);
            }
        }
        self.nodes.insert(node, SeqWindow::new(seq, sealed_ms));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; KEY_LEN])
    }

    use crate::proto::wire::{self, Msg, Stream};

    const NOW: u64 = 1_700_000_000_000;

    fn hdr(node: u64, seq: u64) -> wire::Header {
        wire::Header {
            version: wire::VERSION,
            kind: 0,
            flags: 0,
            key_id: 0,
            cluster: 7,
            node,
            seq,
        }
    }

    /// An unsealed block datagram in a buffer with room for sealing.
    fn dgram(node: u64, seq: u64, data: &[u8]) -> ([u8; 256], usize) {
        let mut buf = [0u8; 256];
        let m = Msg::Block {
            xfer: 3,
            stream: Stream::Payload,
            idx: 5,
            data,
        };
        let n = m.encode(&hdr(node, seq), &mut buf);
        (buf, n)
    }

    fn sealed(s: &mut Sealer, node: u64, seq: u64, at: u64) -> (Vec<u8>, Vec<u8>) {
        let (mut buf, n) = dgram(node, seq, b"delete nothing, please");
        let plain = buf[..n].to_vec();
        let m = s.seal(&mut buf, n, at);
        assert_eq!(m, n + SEAL_OVERHEAD);
        (plain, buf[..m].to_vec())
    }

    fn open(s: &mut Sealer, d: &[u8], now: u64) -> Result<Vec<u8>, SealError> {
        let mut buf = d.to_vec();
        let n = s.open(&mut buf, d.len(), now)?;
        Ok(buf[..n].to_vec())
    }

    #[test]
    fn seal_round_trip() {
        let k = key(1);
        let mut tx = Sealer::new(&k, None, Some(7));
        let mut rx = Sealer::new(&k, None, Some(7));
        let (plain, sd) = sealed(&mut tx, 42, 1, NOW);
        assert_eq!(sd[4] & FLAG_SEALED, FLAG_SEALED);
        assert_eq!(sd[5], k.id());
        assert_eq!(
            sd[6..HEADER_LEN],
            plain[6..HEADER_LEN],
            "cluster/node/seq in clear"
        );
        assert!(!sd.windows(6).any(|w| w == b"delete"), "body is encrypted");
        let back = open(&mut rx, &sd, NOW + 5).unwrap();
        assert_eq!(back, plain);
        let (h, m) = wire::decode(&back).unwrap();
        assert_eq!((h.flags, h.key_id, h.node, h.seq), (0, 0, 42, 1));
        assert!(matches!(
            m,
            Msg::Block {
                data: b"delete nothing, please",
                ..
            }
        ));
        assert_eq!(tx.stats().sealed, 1);
        assert_eq!(rx.stats().opened, 1);

        // An empty body (LEAVE) works too.
        let mut buf = [0u8; 64];
        let n = Msg::Leave.encode(&hdr(42, 2), &mut buf);
        let m = tx.seal(&mut buf, n, NOW);
        assert_eq!(m, HEADER_LEN + SEAL_OVERHEAD);
        assert_eq!(rx.open(&mut buf, m, NOW).unwrap(), HEADER_LEN);
        assert_eq!(wire::decode(&buf[..HEADER_LEN]).unwrap().1, Msg::Leave);
    }

    #[test]
    fn seal_every_bit_flip_is_refused() {
        for cluster in [None, Some(7)] {
            let k = key(1);
            let mut tx = Sealer::new(&k, None, cluster);
            let mut rx = Sealer::new(&k, None, cluster);
            let (_, sd) = sealed(&mut tx, 42, 1, NOW);
            for bit in 0..sd.len() * 8 {
                let mut d = sd.clone();
                d[bit / 8] ^= 1 << (bit % 8);
                let e = open(&mut rx, &d, NOW).unwrap_err();
                if bit / 8 >= HEADER_LEN {
                    assert!(matches!(e, SealError::BadTag), "bit {bit}: {e}");
                }
            }
            // Truncated anywhere: refused too.
            for cut in 0..sd.len() {
                assert!(open(&mut rx, &sd[..cut], NOW).is_err(), "cut at {cut}");
            }
            assert_eq!(rx.stats().opened, 0);
            assert!(open(&mut rx, &sd, NOW).is_ok(), "the original still opens");
        }
    }

    #[test]
    fn seal_wrong_key_and_unsealed_refused() {
        let mut tx = Sealer::new(&key(1), None, None);
        let (plain, sd) = sealed(&mut tx, 42, 1, NOW);
        let mut other = Sealer::new(&key(2), None, None);
        assert!(matches!(
            open(&mut other, &sd, NOW),
            Err(SealError::UnknownKey(id)) if id == key(1).id()
        ));
        // A different key that happens to claim the same id fails authentication.
        let mut d = sd.clone();
        d[5] = key(2).id();
        assert!(matches!(open(&mut other, &d, NOW), Err(SealError::BadTag)));
        // An unsealed datagram (makuosan-style forgery) is refused.
        assert!(matches!(
            open(&mut other, &plain, NOW),
            Err(SealError::Unsealed)
        ));
        let st = other.stats();
        assert_eq!((st.unknown_key, st.bad_tag, st.unsealed_refused), (1, 1, 1));
        // Another cluster on the same group: refused before cryptography.
        let mut mine = Sealer::new(&key(1), None, Some(8));
        assert!(matches!(
            open(&mut mine, &sd, NOW),
            Err(SealError::OtherCluster(7))
        ));
        assert!(matches!(
            open(&mut mine, b"XX", NOW),
            Err(SealError::Malformed)
        ));
    }

    #[test]
    fn seal_rotation_first_seals_both_open() {
        let (old, new) = (key(1), key(2));
        let mut old_tx = Sealer::new(&old, None, None);
        let mut new_tx = Sealer::new(&new, Some(&old), None);
        let mut rx = Sealer::new(&old, Some(&new), None);
        assert_eq!(new_tx.key_id(), new.id());
        let (pa, a) = sealed(&mut old_tx, 1, 1, NOW);
        let (pb, b) = sealed(&mut new_tx, 2, 1, NOW);
        assert_eq!(b[5], new.id(), "the first key seals");
        assert_eq!(open(&mut rx, &a, NOW).unwrap(), pa);
        assert_eq!(open(&mut rx, &b, NOW).unwrap(), pb);
        // A node that only knows the new key cannot open the old one's datagrams.
        let mut only_new = Sealer::new(&new, None, None);
        assert!(open(&mut only_new, &a, NOW).is_err());
        assert!(open(&mut only_new, &b, NOW).is_ok());
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
        let mut tx = Sealer::new(&b, None, None);
        let mut rx = Sealer::new(&a, Some(&b), None);
        let (p, d) = sealed(&mut tx, 9, 1, NOW);
        assert_eq!(open(&mut rx, &d, NOW).unwrap(), p);
    }

    #[test]
    fn seal_nonce_differs_per_seq_and_node() {
        let mut s = Sealer::new(&key(1), None, None);
        let (_, a) = sealed(&mut s, 42, 1, NOW);
        let (_, b) = sealed(&mut s, 42, 2, NOW);
        let (_, c) = sealed(&mut s, 43, 1, NOW);
        // Same body and timestamp: only the nonce (node, seq) differs, so must the ciphertext
        // and the tag.
        let body = HEADER_LEN..a.len();
        assert_ne!(a[body.clone()], b[body.clone()]);
        assert_ne!(a[body.clone()], c[body.clone()]);
        assert_ne!(b[body.clone()], c[body]);
        assert_eq!(
            nonce(42, 1)[..16],
            [0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 1]
        );
    }

    #[test]
    #[should_panic(expected = "nonce reuse")]
    fn seal_refuses_to_reuse_a_nonce() {
        let mut s = Sealer::new(&key(1), None, None);
        sealed(&mut s, 42, 5, NOW);
        sealed(&mut s, 42, 5, NOW + 1);
    }

    #[test]
    fn seal_timestamp_window() {
        let k = key(1);
        let mut tx = Sealer::new(&k, None, None);
        let mut rx = Sealer::new(&k, None, None);
        let (_, early) = sealed(&mut tx, 1, 1, NOW - DEFAULT_WINDOW_MS - 1);
        let (_, late) = sealed(&mut tx, 1, 2, NOW + DEFAULT_WINDOW_MS + 1);
        let (_, edge) = sealed(&mut tx, 1, 3, NOW + DEFAULT_WINDOW_MS);
        assert!(matches!(
            open(&mut rx, &early, NOW),
            Err(SealError::Stale { .. })
        ));
        assert!(matches!(
            open(&mut rx, &late, NOW),
            Err(SealError::Stale { .. })
        ));
        assert!(open(&mut rx, &edge, NOW).is_ok());
        assert_eq!(rx.stats().stale, 2);
        rx.set_window(1000);
        let (_, d) = sealed(&mut tx, 1, 4, NOW - 1001);
        assert!(matches!(
            open(&mut rx, &d, NOW),
            Err(SealError::Stale { .. })
        ));
    }

    #[test]
    fn seal_replay_refused() {
        let k = key(1);
        let mut tx = Sealer::new(&k, None, None);
        let mut rx = Sealer::new(&k, None, None);
        let (_, d) = sealed(&mut tx, 42, 10, NOW);
        assert!(open(&mut rx, &d, NOW).is_ok());
        assert!(matches!(
            open(&mut rx, &d, NOW + 1),
            Err(SealError::Replayed { node: 42, seq: 10 })
        ));
        // Reordering is fine, each seq once.
        let (_, d8) = sealed(&mut Sealer::new(&k, None, None), 42, 8, NOW);
        let (_, d12) = sealed(&mut tx, 42, 12, NOW);
        assert!(open(&mut rx, &d12, NOW).is_ok());
        assert!(open(&mut rx, &d8, NOW).is_ok());
        assert!(open(&mut rx, &d8, NOW).is_err());
        assert!(open(&mut rx, &d12, NOW).is_err());
        assert_eq!(rx.stats().replayed, 3);
        // Same seq from another node is a different datagram.
        let (_, other) = sealed(&mut tx, 43, 10, NOW);
        assert!(open(&mut rx, &other, NOW).is_ok());
    }

    #[test]
    fn seal_replay_window_matches_a_model() {
        let mut w = SeqWindow::new(1000, 0);
        let mut seen = std::collections::HashSet::from([1000u64]);
        let mut top = 1000u64;
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
            let fresh = !seen.contains(&seq) && seq + REPLAY_BITS > top;
            assert_eq!(w.accept(seq), fresh, "step {i}: seq {seq}, top {top}");
            if fresh {
                seen.insert(seq);
                top = top.max(seq);
            }
        }
    }

    #[test]
    fn seal_replay_after_window_is_stale() {
        let k = key(1);
        let mut tx = Sealer::new(&k, None, None);
        let mut rx = Sealer::new(&k, None, None);
        let (_, d) = sealed(&mut tx, 42, 1, NOW);
        assert!(open(&mut rx, &d, NOW).is_ok());
        // The sender exits; its window is kept while its datagrams are fresh...
        assert!(matches!(
            open(&mut rx, &d, NOW + DEFAULT_WINDOW_MS),
            Err(SealError::Replayed { .. })
        ));
        // ...and after that a replay is too old, remembered or not.
        assert!(matches!(
            open(&mut rx, &d, NOW + DEFAULT_WINDOW_MS + 1),
            Err(SealError::Stale { .. })
        ));
        assert_eq!(rx.stats().stale, 1);
    }

    #[test]
    fn seal_node_table_is_bounded() {
        let k = key(1);
        let mut tx = Sealer::new(&k, None, None);
        let mut rx = Sealer::new(&k, None, None);
        rx.set_max_nodes(2);
        let (_, a) = sealed(&mut tx, 1, 1, NOW);
        let (_, b) = sealed(&mut tx, 2, 1, NOW + 10);
        let (_, c) = sealed(&mut tx, 3, 1, NOW + 20);
        assert!(open(&mut rx, &a, NOW).is_ok());
        assert!(open(&mut rx, &b, NOW + 10).is_ok());
        // Both windows still guard fresh datagrams: refuse the newcomer, forget nothing.
        assert!(matches!(
            open(&mut rx, &c, NOW + 20),
            Err(SealError::TooManyNodes)
        ));
        assert!(matches!(
            open(&mut rx, &a, NOW + 20),
            Err(SealError::Replayed { .. })
        ));
        assert_eq!(rx.stats().too_many_nodes, 1);
        // Once node 1's datagrams are all stale its window goes, and the newcomer fits.
        let t = NOW + DEFAULT_WINDOW_MS + 5;
        let (_, c2) = sealed(&mut tx, 3, 2, t);
        assert!(open(&mut rx, &c2, t).is_ok());
        assert_eq!(rx.tracked_nodes(), 2);
        assert!(matches!(open(&mut rx, &a, t), Err(SealError::Stale { .. })));
        assert!(matches!(
            open(&mut rx, &b, t),
            Err(SealError::Replayed { .. })
        ));
    }

    #[test]
    fn seal_replay_to_a_restarted_receiver() {
        let k = key(1);
        let mut tx = Sealer::new(&k, None, None);
        let mut before = Sealer::new(&k, None, None);
        let (_, old) = sealed(&mut tx, 42, 1, NOW - 10_000);
        let (_, recent) = sealed(&mut tx, 42, 2, NOW - 1_000);
        assert!(open(&mut before, &old, NOW - 10_000).is_ok());
        assert!(open(&mut before, &recent, NOW - 1_000).is_ok());

        // The receiver restarts at NOW: its windows are gone, but anything sealed more than
        // the start skew before its start is refused.
        let mut after = Sealer::new(&k, None, None);
        after.set_start_time(NOW);
        assert!(matches!(
            open(&mut after, &old, NOW + 1),
            Err(SealError::Stale { .. })
        ));
        // Documented limit: a datagram sealed within the skew before the restart can be
        // replayed once more to the new instance...
        assert!(open(&mut after, &recent, NOW + 1).is_ok());
        // ...but only once.
        assert!(open(&mut after, &recent, NOW + 2).is_err());
        let (_, new) = sealed(&mut tx, 42, 3, NOW + 5);
        assert!(open(&mut after, &new, NOW + 5).is_ok());

        // Without set_start_time, the first open stands for the start.
        let mut fresh = Sealer::new(&k, None, None);
        assert!(matches!(
            open(&mut fresh, &old, NOW),
            Err(SealError::Stale { .. })
        ));
        fresh.set_start_skew(0);
        assert!(matches!(
            open(&mut fresh, &recent, NOW),
            Err(SealError::Stale { .. })
        ));
    }

    #[test]
    fn seal_key_hex_round_trip() {
        let k = Key::generate().unwrap();
        assert_eq!(Key::from_hex(&k.to_hex()).unwrap(), k);
        assert_eq!(Key::from_hex(&format!("{}\n", k.to_hex())).unwrap(), k);
        assert_eq!(
            Key::from_hex(&k.to_hex().to_uppercase()).unwrap(),
            k,
            "upper case hex is fine"
        );
        for bad in [
            "",
            "abc\n",
            &"0".repeat(63),
            &"0".repeat(65),
            &format!("{}\n\n", "0".repeat(64)),
            &format!("{} \n", "0".repeat(64)),
            &format!("{}g", "0".repeat(63)),
        ] {
            assert!(
                matches!(Key::from_hex(bad), Err(SealError::KeyFileMalformed { .. })),
                "{bad:?}"
            );
        }
        assert!(!format!("{k:?}").contains(&k.to_hex()[..8]));
    }

    #[test]
    fn seal_key_ids_differ_and_are_stable() {
        assert_eq!(key(1).id(), key(1).id());
        let ids: std::collections::HashSet<u8> = (0..32).map(|b| key(b).id()).collect();
        assert!(ids.len() > 20, "ids spread over the byte: {ids:?}");
    }

    #[test]
    fn seal_load_key_checks_mode_and_contents() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        let k = key(7);
        write_key_file(&p, &k).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(load_key(&p).unwrap(), k);

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_key(&p).unwrap_err();
        assert!(matches!(e, SealError::KeyFileMode { mode, .. } if mode & 0o777 == 0o644));
        let msg = e.to_string();
        assert!(msg.contains("0644") && msg.contains("chmod 600"), "{msg}");
        for mode in [0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(matches!(load_key(&p), Err(SealError::KeyFileMode { .. })));
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(load_key(&p).unwrap(), k);

        let q = dir.path().join("bad");
        std::fs::write(&q, "not a key\n").unwrap();
        std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_key(&q).unwrap_err();
        assert!(matches!(e, SealError::KeyFileMalformed { .. }));
        assert!(e.to_string().contains("64 hex digits"));
        std::fs::write(&q, "0".repeat(10_000)).unwrap();
        assert!(matches!(
            load_key(&q),
            Err(SealError::KeyFileMalformed { .. })
        ));

        assert!(matches!(
            load_key(dir.path()),
            Err(SealError::KeyFileType(_)) | Err(SealError::KeyFileMode { .. })
        ));
        assert!(matches!(
            load_key(dir.path().join("missing")),
            Err(SealError::Io { .. })
        ));
    }

    #[test]
    fn seal_keygen_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        let k = keygen(p.to_str().unwrap()).unwrap();
        assert_eq!(load_key(&p).unwrap(), k);
        let e = keygen(p.to_str().unwrap()).unwrap_err();
        assert!(matches!(e, SealError::KeyFileExists(_)));
        assert!(e.to_string().contains("already exists"));
        assert_eq!(load_key(&p).unwrap(), k, "the first key is intact");

        // Not through a symlink either, even a dangling one.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        assert!(matches!(
            write_key_file(&link, &key(1)),
            Err(SealError::KeyFileExists(_))
        ));
        assert!(!dir.path().join("nowhere").exists());
    }

    /// The test vector of `docs/protocol.md (Sealing)`, checked independently (HChaCha20 by
    /// hand plus an IETF ChaCha20-Poly1305 library); pins the format.
    #[test]
    fn seal_known_answer() {
        let k = Key::from_bytes(std::array::from_fn(|i| i as u8));
        assert_eq!(k.id(), 0x48);
        let mut tx = Sealer::new(&k, None, None);
        let mut buf = [0u8; 64];
        let h = wire::Header {
            cluster: 7,
            ..hdr(0x0123_4567_89ab_cdef, 1)
        };
        let n = Msg::Abort {
            xfer: 5,
            reason: b"hi",
        }
        .encode(&h, &mut buf);
        let plain = buf[..n].to_vec();
        let n = tx.seal(&mut buf, n, 1_700_000_000_000);
        let hex: String = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "4d4b010d014800070123456789abcdef0000000000000001\
             fa04dc6da7aa76498ec42624\
             3c74ff850b6d3a3dd5836faef0ee2e24dee0ed22"
        );
        let mut rx = Sealer::new(&k, None, None);
        assert_eq!(open(&mut rx, &buf[..n], 1_700_000_000_000).unwrap(), plain);
    }
}
