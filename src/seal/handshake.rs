//! The challenge at first contact: a receiver accepts a sender's sealed datagrams only after
//! the sender answered a fresh challenge, and then only its sequence numbers above that
//! answer, each once. Owns the replay window, the tables of verified senders, outstanding
//! challenges and answered challenges (all bounded, all safe to forget), and the sealed
//! CHALLENGE and RESPONSE messages. See the module doc of `seal` and `docs/protocol.md`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::aead::NodeKey;
use super::{SealError, Sealer};
use crate::proto::wire::{self, HEADER_LEN, MAGIC, SEAL_OVERHEAD};

/// Body of a CHALLENGE or RESPONSE: two 8-byte fields.
pub(super) const HANDSHAKE_BODY: usize = 16;
/// Length of a sealed CHALLENGE or RESPONSE. A challenge is only sent in reply to a sealed
/// datagram at least this long, and a response only to a challenge, so neither ever sends
/// more bytes to an address than came from it.
pub const HANDSHAKE_LEN: usize = HEADER_LEN + HANDSHAKE_BODY + SEAL_OVERHEAD;
/// Sequence numbers remembered below a sender's highest one.
pub const REPLAY_BITS: u64 = 4096;
/// Most verified senders kept; past it the one heard least recently is forgotten (it is
/// challenged again when next heard, which is always safe).
pub const MAX_PEERS: usize = 4096;
/// A verified sender not heard for this long is forgotten.
pub const PEER_IDLE: Duration = Duration::from_secs(60);
/// Most outstanding challenges (one entry per challenged node).
pub const MAX_PENDING: usize = 4096;
/// An unanswered challenge is forgotten after this long.
pub const PENDING_TTL: Duration = Duration::from_secs(5);
/// A node is challenged again (with a fresh nonce) at most this often.
pub const CHALLENGE_RETRY: Duration = Duration::from_millis(50);
/// A challenge (challenger and nonce) already answered is not answered again for this long:
/// a recorded challenge replayed in a flood draws one answer. A new challenge is always
/// answered (a rate per challenger would let a replayer crowd out its real challenges).
pub const ANSWER_MEMORY: Duration = Duration::from_secs(10);

/// Words of the ring: one more than the window needs, so the word being filled never shares
/// a slot with the oldest word still in the window.
const WORDS: usize = (REPLAY_BITS / 64) as usize + 1;

/// One sender's replay window: its highest accepted sequence number and a ring of bits, bit
/// `seq % 64` of word `(seq / 64) % WORDS` standing for `seq`, of which the [`REPLAY_BITS`]
/// numbers at and below the top count. Moving the top clears only the bits it passes (one
/// bit, now and then a word, for the usual next number), not the whole bitmap.
#[derive(Clone)]
pub(super) struct SeqWindow {
    pub(super) top: u64,
    pub(super) bits: [u64; WORDS],
}

fn slot(seq: u64) -> (usize, u64) {
    (((seq / 64) % WORDS as u64) as usize, 1 << (seq % 64))
}

impl SeqWindow {
    /// A window that accepts every number above `floor` once, and nothing at or below it.
    pub(super) fn above(floor: u64) -> Self {
        Self {
            top: floor,
            bits: [!0; WORDS],
        }
    }

    /// Marks `seq` as seen; false if it was already seen or lies below the window.
    pub(super) fn accept(&mut self, seq: u64) -> bool {
        if seq > self.top {
            self.advance(seq);
            let (w, b) = slot(seq);
            self.bits[w] |= b;
            return true;
        }
        if self.top - seq >= REPLAY_BITS {
            return false;
        }
        let (w, b) = slot(seq);
        if self.bits[w] & b != 0 {
            return false;
        }
        self.bits[w] |= b;
        true
    }

    /// Moves the top to `seq` (above it), clearing the bits of the numbers in between (none
    /// of which was accepted: they were above the top).
    fn advance(&mut self, seq: u64) {
        let (tw, sw) = (self.top / 64, seq / 64);
        let (tb, sb) = (self.top % 64, seq % 64);
        // Bits at and below `b` in a word.
        let upto = |b: u64| if b == 63 { !0 } else { (1u64 << (b + 1)) - 1 };
        if tw == sw {
            self.bits[slot(self.top).0] &= !(upto(sb) & !upto(tb));
        } else if sw - tw >= WORDS as u64 {
            self.bits = [0; WORDS];
        } else {
            self.bits[slot(self.top).0] &= upto(tb);
            for w in tw + 1..=sw {
                self.bits[(w % WORDS as u64) as usize] = 0;
            }
        }
        self.top = seq;
    }
}

/// A sender that answered a fresh challenge.
pub(super) struct Peer {
    pub(super) window: SeqWindow,
    pub(super) last: Instant,
    /// Its sealed clock minus ours at the last datagram (ms): information only.
    pub(super) clock_offset_ms: i64,
    /// Its datagram key once derived (with the index of the cluster key it came from), so it
    /// is derived once per sender, not per datagram.
    pub(super) key: Option<(usize, NodeKey)>,
}

/// Challenges sent to one node that it has not answered yet: the two most recent, each
/// with the address it went to.
pub(super) struct Pending {
    pub(super) nonces: [(u64, Option<SocketAddr>); 2],
    pub(super) last: Instant,
}

impl Sealer {
    /// Number of senders verified and remembered now.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    /// The largest difference (ms, either way) between a verified sender's sealed clock and
    /// ours, with that sender: information only (acceptance never depends on clocks).
    pub fn max_clock_offset(&self) -> Option<(u64, i64)> {
        self.peers
            .iter()
            .map(|(n, p)| (*n, p.clock_offset_ms))
            .max_by_key(|(n, o)| (o.unsigned_abs(), *n))
    }

    /// The next handshake datagram to send (already sealed): written into `buf` (at least
    /// [`HANDSHAKE_LEN`] bytes), with its destination and length.
    pub fn poll_handshake(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        let (to, d) = self.out.pop_front()?;
        buf[..d.len()].copy_from_slice(&d);
        Some((to, d.len()))
    }

    /// The next sender verified since the last call (the engine answers it soon, as a join).
    pub fn poll_verified(&mut self) -> Option<u64> {
        self.verified.pop_front()
    }

    /// A fresh nonce: distinct within this process, and (from a random base) between
    /// processes; never 0 ("no challenge").
    fn fresh_nonce(&mut self) -> u64 {
        self.nonce_count += 1;
        let mut z = self
            .nonce_base
            .wrapping_add(self.nonce_count.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)).max(1)
    }

    /// Seals a handshake message of `kind` with body `a | b` and queues it for `to`.
    fn send_handshake(&mut self, kind: u8, a: u64, b: u64, to: SocketAddr, now_ms: u64) {
        let mut d = vec![0u8; HANDSHAKE_LEN];
        d[..2].copy_from_slice(&MAGIC);
        d[2] = wire::VERSION;
        d[3] = kind;
        d[6..8].copy_from_slice(&self.cluster.to_be_bytes());
        d[8..16].copy_from_slice(&self.node.to_be_bytes());
        d[24..32].copy_from_slice(&a.to_be_bytes());
        d[32..40].copy_from_slice(&b.to_be_bytes());
        let n = self.seal(&mut d, HEADER_LEN + HANDSHAKE_BODY, now_ms);
        debug_assert_eq!(n, HANDSHAKE_LEN);
        self.out.push_back((to, d));
    }

    /// A challenge nonce for `node` at `to`: the outstanding one to that address if any (with
    /// `reuse`), else a new one (replacing the older of two).
    fn pending_nonce(&mut self, node: u64, to: SocketAddr, now: Instant, reuse: bool) -> u64 {
        if let Some(p) = self.pending.get(&node) {
            if reuse {
                if let Some((n, _)) = p.nonces.iter().find(|(_, a)| *a == Some(to)) {
                    return *n;
                }
            }
        } else if self.pending.len() >= MAX_PENDING {
            self.pending
                .retain(|_, p| now.saturating_duration_since(p.last) < PENDING_TTL);
            if self.pending.len() >= MAX_PENDING {
                // Full of young challenges (a flood of recordings of many old nodes): the
                // oldest goes, so a flood must outpace a round trip to crowd out a real one.
                let oldest = self
                    .pending
                    .iter()
                    .min_by_key(|(n, p)| (p.last, **n))
                    .map(|(n, _)| *n);
                if let Some(n) = oldest {
                    self.pending.remove(&n);
                }
            }
        }
        let n = self.fresh_nonce();
        let p = self.pending.entry(node).or_insert(Pending {
            nonces: [(0, None); 2],
            last: now,
        });
        p.nonces[1] = p.nonces[0];
        p.nonces[0] = (n, Some(to));
        p.last = now;
        n
    }

    /// An authentic datagram from `node`, which we have not verified: challenge it (at
    /// most every [`CHALLENGE_RETRY`]).
    pub(super) fn challenge(&mut self, node: u64, from: SocketAddr, now: Instant, now_ms: u64) {
        if self
            .pending
            .get(&node)
            .is_some_and(|p| now.saturating_duration_since(p.last) < CHALLENGE_RETRY)
        {
            return;
        }
        let n = self.pending_nonce(node, from, now, false);
        self.stats.challenges += 1;
        // The second field is padding: a response is never longer than its challenge.
        self.send_handshake(wire::kind::CHALLENGE, n, 0, from, now_ms);
    }

    /// `challenger` asks us to prove we are live: echo its nonce (our sequence number is in
    /// the header), and challenge it back if we have not verified it.
    pub(super) fn on_challenge(
        &mut self,
        challenger: u64,
        nonce: u64,
        from: SocketAddr,
        now: Instant,
        now_ms: u64,
    ) {
        if self
            .answered
            .get(&challenger)
            .is_some_and(|(n, t)| *n == nonce && now.saturating_duration_since(*t) < ANSWER_MEMORY)
        {
            self.stats.limited += 1;
            return;
        }
        if self.answered.len() >= MAX_PENDING && !self.answered.contains_key(&challenger) {
            self.answered
                .retain(|_, (_, t)| now.saturating_duration_since(*t) < ANSWER_MEMORY);
            if self.answered.len() >= MAX_PENDING {
                // Forgetting one only risks answering its replay once more.
                let oldest = self
                    .answered
                    .iter()
                    .min_by_key(|(c, (_, t))| (*t, **c))
                    .map(|(c, _)| *c);
                if let Some(c) = oldest {
                    self.answered.remove(&c);
                }
            }
        }
        self.answered.insert(challenger, (nonce, now));
        let counter = if self.peers.contains_key(&challenger) {
            0
        } else {
            self.pending_nonce(challenger, from, now, true)
        };
        self.stats.responses += 1;
        self.send_handshake(wire::kind::RESPONSE, nonce, counter, from, now_ms);
    }

    /// `responder` echoes `echo` in a response numbered `seq`: if that is a challenge we
    /// sent it at `from`, it is verified, and accepted from then on above `seq`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_response(
        &mut self,
        responder: u64,
        seq: u64,
        echo: u64,
        counter: u64,
        from: SocketAddr,
        now: Instant,
        now_ms: u64,
    ) -> Result<(), SealError> {
        let asked = self.pending.get(&responder).is_some_and(|p| {
            p.nonces
                .iter()
                .any(|(n, a)| *n == echo && *n != 0 && *a == Some(from))
        });
        if !asked {
            return Err(SealError::StaleHandshake(responder));
        }
        self.pending.remove(&responder);
        if !self.peers.contains_key(&responder) {
            self.make_room(now);
            self.peers.insert(
                responder,
                Peer {
                    window: SeqWindow::above(seq),
                    last: now,
                    clock_offset_ms: 0,
                    key: None,
                },
            );
            self.stats.verified += 1;
            self.verified.push_back(responder);
        }
        if counter != 0 {
            // It challenged us back in the same datagram.
            self.stats.responses += 1;
            self.send_handshake(wire::kind::RESPONSE, counter, 0, from, now_ms);
        }
        Ok(())
    }

    /// Keeps the verified table within [`MAX_PEERS`]: idle senders go, then the one heard
    /// least recently. Forgetting a sender opens nothing: it is challenged again.
    fn make_room(&mut self, now: Instant) {
        if self.peers.len() < MAX_PEERS {
            return;
        }
        self.peers
            .retain(|_, p| now.saturating_duration_since(p.last) < PEER_IDLE);
        if self.peers.len() >= MAX_PEERS {
            if let Some(n) = self
                .peers
                .iter()
                .min_by_key(|(n, p)| (p.last, **n))
                .map(|(n, _)| *n)
            {
                self.peers.remove(&n);
            }
        }
    }

    /// Forgets idle senders and old challenges (call now and then, e.g. every second).
    pub fn expire(&mut self, now: Instant) {
        self.peers
            .retain(|_, p| now.saturating_duration_since(p.last) < PEER_IDLE);
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.last) < PENDING_TTL);
        self.answered
            .retain(|_, (_, t)| now.saturating_duration_since(*t) < ANSWER_MEMORY);
    }
}
