//! The challenge at first contact: a receiver accepts a sender's sealed datagrams only after
//! the sender answered a fresh challenge, and then only its sequence numbers above that
//! answer, each once. Owns the replay window, the tables of verified senders, recent
//! challenges, used and answered challenges (all bounded, all safe to forget), the challenge
//! budgets, the stateless challenge nonces and the sealed CHALLENGE and RESPONSE messages.
//! See the module doc of `seal` and `docs/protocol.md`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use chacha20poly1305::aead::AeadInPlace;

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
/// Most entries in each table of the handshake kept per node or address: challenge times,
/// used challenges, answered challenges, challenge budgets.
pub const MAX_PENDING: usize = 4096;
/// A challenge can be answered for this long (its nonce is valid from the time slot it was
/// made in up to this much later).
pub const PENDING_TTL: Duration = Duration::from_secs(5);
/// A node is challenged again (with a fresh nonce) at most this often; also the length of
/// a nonce's time slot.
pub const CHALLENGE_RETRY: Duration = Duration::from_millis(50);
/// Challenges sent to one IP address: at most this many at once ...
pub const CHALLENGE_ADDR_BURST: f64 = 8.0;
/// ... and this many per second after that (every member of a group answers a datagram
/// sent to the group, so a forged source address would else draw `members ×` the traffic).
pub const CHALLENGE_ADDR_RATE: f64 = 4.0;
/// Challenges sent in all: at most this many at once ...
pub const CHALLENGE_BURST: f64 = 1024.0;
/// ... and this many per second after that.
pub const CHALLENGE_RATE: f64 = 512.0;
/// A challenge (challenger and nonce) already answered is not answered again for this long:
/// a recorded challenge replayed in a flood draws one answer. A new challenge is always
/// answered (a rate per challenger would let a replayer crowd out its real challenges).
pub const ANSWER_MEMORY: Duration = Duration::from_secs(10);

/// A used challenge is remembered as long as it could still be valid.
const USED_MEMORY: Duration = Duration::from_millis(5100);

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

/// A token bucket: `tokens` at `at`, refilled at a rate up to a burst.
#[derive(Clone, Copy)]
pub(super) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant, burst: f64, rate: f64) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.at = self.at.max(now);
    }
}

/// Slot bits in a challenge nonce (the rest is the MAC).
const SLOT_BITS: u32 = 16;
const MAC_MASK: u64 = (1 << (64 - SLOT_BITS)) - 1;

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

    /// The time slot of `now` (slots of [`CHALLENGE_RETRY`] since this sealer's first one).
    fn slot(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        (now.saturating_duration_since(epoch).as_millis() / CHALLENGE_RETRY.as_millis()) as u64
    }

    /// 8 bytes of keystream of the per-process nonce key for the 24-byte `input`: a
    /// pseudo-random function of `input` (XChaCha20; the tag is not used).
    fn prf(&self, input: [u8; 24]) -> u64 {
        let mut out = [0u8; 8];
        let _tag = self
            .nonce_key
            .encrypt_in_place_detached(&input.into(), b"makuo challenge", &mut out)
            .expect("8 bytes are far below the cipher's message limit");
        u64::from_be_bytes(out)
    }

    /// The challenge nonce for `node` at `to` in time slot `slot`: the slot's low 16 bits,
    /// then 48 bits of a PRF of (node, address, slot) under a secret drawn at start. It is
    /// checked by computing it again, so nothing is stored per challenge and nothing a
    /// replayer sends can evict it; a restart draws a new secret, so no nonce of an earlier
    /// process is ever valid. Never 0.
    fn nonce_for(&self, node: u64, to: SocketAddr, slot: u64) -> u64 {
        // The address (up to 16 + 2 bytes) first, then node, slot and that.
        let mut a = [0u8; 24];
        match to.ip() {
            IpAddr::V4(ip) => {
                a[..4].copy_from_slice(&ip.octets());
                a[18] = 4;
            }
            IpAddr::V6(ip) => {
                a[..16].copy_from_slice(&ip.octets());
                a[18] = 6;
            }
        }
        a[16..18].copy_from_slice(&to.port().to_be_bytes());
        a[23] = b'A';
        let h = self.prf(a).to_be_bytes();
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&node.to_be_bytes());
        b[8..16].copy_from_slice(&slot.to_be_bytes());
        b[16..23].copy_from_slice(&h[..7]);
        b[23] = b'N';
        ((slot & ((1 << SLOT_BITS) - 1)) << (64 - SLOT_BITS)) | (self.prf(b) & MAC_MASK) | 1
    }

    /// Whether `echo` is a nonce this sealer made for `node` at `from` no longer than
    /// [`PENDING_TTL`] ago.
    fn nonce_valid(&mut self, node: u64, from: SocketAddr, echo: u64, now: Instant) -> bool {
        let cur = self.slot(now);
        let low = echo >> (64 - SLOT_BITS);
        let age = (cur.wrapping_sub(low)) & ((1 << SLOT_BITS) - 1);
        let ttl = (PENDING_TTL.as_millis() / CHALLENGE_RETRY.as_millis()) as u64;
        age <= ttl && age <= cur && self.nonce_for(node, from, cur - age) == echo
    }

    /// Takes one challenge from the budgets of `ip` and of the whole; false (nothing taken)
    /// when either is spent. Loopback addresses have only the global budget.
    fn spend_challenge(&mut self, ip: IpAddr, now: Instant) -> bool {
        let all = self
            .budget
            .get_or_insert(Bucket::full(CHALLENGE_BURST, now));
        all.refill(now, CHALLENGE_BURST, CHALLENGE_RATE);
        if all.tokens < 1.0 {
            return false;
        }
        if ip.is_loopback() {
            // The kernel drops loopback sources arriving from a network, so nobody forges
            // them from outside this host; and a cluster on one host shares the address.
            all.tokens -= 1.0;
            return true;
        }
        if !self.addr_budget.contains_key(&ip) && self.addr_budget.len() >= MAX_PENDING {
            // Full buckets are the same as none.
            self.addr_budget.retain(|_, b| {
                b.refill(now, CHALLENGE_ADDR_BURST, CHALLENGE_ADDR_RATE);
                b.tokens < CHALLENGE_ADDR_BURST
            });
            if self.addr_budget.len() >= MAX_PENDING {
                return false;
            }
        }
        let b = self
            .addr_budget
            .entry(ip)
            .or_insert(Bucket::full(CHALLENGE_ADDR_BURST, now));
        b.refill(now, CHALLENGE_ADDR_BURST, CHALLENGE_ADDR_RATE);
        if b.tokens < 1.0 {
            return false;
        }
        b.tokens -= 1.0;
        if let Some(all) = &mut self.budget {
            all.tokens -= 1.0;
        }
        true
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

    /// An authentic datagram from `node`, which we have not verified: challenge it (at
    /// most every [`CHALLENGE_RETRY`], and within the budgets of its IP address and of the
    /// whole).
    pub(super) fn challenge(&mut self, node: u64, from: SocketAddr, now: Instant, now_ms: u64) {
        if self
            .challenged
            .get(&node)
            .is_some_and(|t| now.saturating_duration_since(*t) < CHALLENGE_RETRY)
        {
            return;
        }
        if !self.spend_challenge(from.ip(), now) {
            self.stats.limited += 1;
            return;
        }
        if self.challenged.len() >= MAX_PENDING && !self.challenged.contains_key(&node) {
            // Only a rate limit: forgetting an entry allows one more challenge, budgeted.
            self.challenged
                .retain(|_, t| now.saturating_duration_since(*t) < CHALLENGE_RETRY);
            if self.challenged.len() >= MAX_PENDING {
                self.challenged.clear();
            }
        }
        self.challenged.insert(node, now);
        let slot = self.slot(now);
        let n = self.nonce_for(node, from, slot);
        self.stats.challenges += 1;
        // The second field is padding: a response is never longer than its challenge.
        self.send_handshake(wire::kind::CHALLENGE, n, 0, from, now_ms);
    }

    /// `challenger` asks us to prove we are live: echo its nonce (our sequence number is in
    /// the header), and challenge it back if we have not verified it. The challenge back
    /// changes no state of ours (its nonce is computed, not stored), so replayed challenges
    /// neither evict a real one nor hold back our own challenges.
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
            let slot = self.slot(now);
            self.nonce_for(challenger, from, slot)
        };
        self.stats.responses += 1;
        self.send_handshake(wire::kind::RESPONSE, nonce, counter, from, now_ms);
    }

    /// `responder` echoes `echo` in a response numbered `seq`: if that is a nonce we made
    /// for it at `from` in the last [`PENDING_TTL`], and not used yet, it is verified, and
    /// accepted from then on above `seq`.
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
        let used = self.used.get(&responder).is_some_and(|(n, _)| *n == echo);
        if used || echo == 0 || !self.nonce_valid(responder, from, echo, now) {
            return Err(SealError::StaleHandshake(responder));
        }
        // Used up: a replay of this response within the nonce's life is stale (it could
        // else verify a node forgotten meanwhile, above an old floor).
        if self.used.len() >= MAX_PENDING && !self.used.contains_key(&responder) {
            self.used
                .retain(|_, (_, t)| now.saturating_duration_since(*t) <= USED_MEMORY);
            if self.used.len() >= MAX_PENDING {
                // Only key holders make valid responses; a flood of them can do more anyway.
                let oldest = self
                    .used
                    .iter()
                    .min_by_key(|(n, (_, t))| (*t, **n))
                    .map(|(n, _)| *n);
                if let Some(n) = oldest {
                    self.used.remove(&n);
                }
            }
        }
        self.used.insert(responder, (echo, now));
        self.challenged.remove(&responder);
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
        self.challenged
            .retain(|_, t| now.saturating_duration_since(*t) < CHALLENGE_RETRY);
        self.used
            .retain(|_, (_, t)| now.saturating_duration_since(*t) <= USED_MEMORY);
        for b in self.addr_budget.values_mut() {
            b.refill(now, CHALLENGE_ADDR_BURST, CHALLENGE_ADDR_RATE);
        }
        self.addr_budget
            .retain(|_, b| b.tokens < CHALLENGE_ADDR_BURST);
        self.answered
            .retain(|_, (_, t)| now.saturating_duration_since(*t) < ANSWER_MEMORY);
    }
}
