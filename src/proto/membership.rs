//! The engine's side of membership: its heartbeats (joins included) and the list of members
//! each carries, how long a silent member is kept, the early heartbeat that answers a
//! newcomer, member changes turned into events, and what it reports of each member's path
//! and link. The member table itself is `members.rs`; per-member paths are `paths.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;

/// Joins a node repeats while it has heard no member: its first may have gone out before
/// anyone listened, and a member deaf to the group hears nobody's answer, so without them the
/// others would learn it only at its next heartbeat (a second later, two with a key: the
/// first heartbeat a member hears from a stranger is refused until the challenge is answered).
/// Bounded: a lone member sends four more heartbeats than usual, in its first 1.5 s.
pub(super) const JOIN_REPEATS: u32 = 4;

/// First gap before a join is repeated; it doubles with each repeat.
pub(super) const JOIN_RETRY: Duration = Duration::from_millis(100);

/// Share of the join window per member heard (see `Engine::answer_soon`).
pub(super) const JOIN_SLOT: Duration = Duration::from_micros(100);

/// Shortest join window.
pub(super) const JOIN_MIN: Duration = Duration::from_millis(2);

impl<S: Storage> Engine<S> {
    pub(super) fn heartbeat(&mut self, now: Instant, join: bool) {
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
        // Rotate where the list starts, so every member is named within a few heartbeats
        // even when not all fit (paths.rs relies on it).
        let direct: Vec<&members::MemberInfo> = self.members.iter().filter(|m| m.direct).collect();
        let start = match direct.len() {
            0 => 0,
            n => self.paths.rotation % n,
        };
        self.paths.rotation = self.paths.rotation.wrapping_add(1);
        // Twice the expiry: a sender whose heartbeats come late during a busy push is still
        // named as heard through the group.
        let expiry = self.member_expiry() * 2;
        for m in direct[start..].iter().chain(direct[..start].iter()) {
            let group = if self.paths.hear_group(now, m.node, expiry) {
                paths::KNOWN_GROUP
            } else {
                0
            };
            let k = wire::Known {
                node: m.node,
                addr: m.addr,
                age_ms: now
                    .saturating_duration_since(m.last_seen)
                    .as_millis()
                    .min(u32::MAX as u128) as u32,
                flags: (m.flags & HB_RECEIVER) | group,
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
        if self.cfg.relay {
            flags |= wire::HB_RELAY;
        }
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
                interval_ms: (self.cfg.heartbeat * self.hb_scale).as_millis() as u32,
                name: name.as_bytes(),
                version: version.as_bytes(),
                info: &info,
                known_raw: &known[..kl],
                known_count: count,
            }),
        );
    }

    /// How long a member may stay silent before it is dropped: `member_expiry`, times the
    /// heartbeat scale of a large group.
    pub(super) fn member_expiry(&self) -> Duration {
        self.cfg.member_expiry * self.hb_scale
    }

    /// What a push adds to `member_timeout` for a target's last heartbeat in a large group,
    /// whose heartbeats come `hb_scale` times further apart (replies still count at once).
    pub(super) fn heartbeat_slack(&self) -> Duration {
        self.cfg.member_timeout * (self.hb_scale - 1)
    }

    /// Schedules an early heartbeat at a random moment within the join jitter, so a newcomer
    /// learns this member soon and answers from many members do not collide. The window is
    /// [`JOIN_SLOT`] per member heard, at least [`JOIN_MIN`] and at most the configured
    /// jitter: a newcomer to a few members (a direct-mode front end) hears them all within
    /// a couple of milliseconds, and a thousand still spread their answers over the jitter.
    pub(super) fn answer_soon(&mut self) {
        let members = self.members.direct_count() as u64 + 1;
        let j = (JOIN_SLOT.as_micros() as u64 * members)
            .max(JOIN_MIN.as_micros() as u64)
            .min(self.cfg.join_jitter.as_micros() as u64)
            .max(1);
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

    pub(super) fn apply_changes(&mut self, changes: Vec<Change>) {
        self.member_changes += changes.len() as u64;
        for c in changes {
            self.events.push_back(match c {
                Change::Up(m) => Event::MemberUp(m),
                Change::Down(m, r) => {
                    self.paths.forget(m.node);
                    Event::MemberDown(m, r)
                }
            });
        }
    }

    /// Input: an authenticated datagram of `node` came through the group but was not handed
    /// over, being a copy of one already received by unicast (the sealing layer refused it as
    /// a repeat): `node`'s multicast reaches us all the same (`paths.rs`).
    pub fn handle_group_copy(&mut self, now: Instant, node: u64) {
        self.clock = self.clock.max(now);
        if self.members.get(node).is_some_and(|m| m.direct) {
            self.paths.group_copy(now, node);
        }
    }

    /// How group datagrams reach member `m` (see `paths.rs`).
    pub fn path(&self, now: Instant, m: &members::MemberInfo) -> paths::Path {
        self.paths.path(now, m, self.member_expiry())
    }

    /// Whether member `node`'s datagrams came to us through the group within the expiry.
    pub fn hears_group(&self, now: Instant, node: u64) -> bool {
        self.paths.hear_group(now, node, self.member_expiry())
    }

    /// What this node measured of member `node`: the smoothed round-trip time of the last
    /// push it sent there (`None`: none measured), and the share of its heartbeats lost on
    /// the way here over the last window of ten (`None`: no window complete yet).
    pub fn link_stats(&self, node: u64) -> (Option<Duration>, Option<f64>) {
        (
            self.rate.receiver(node).and_then(|r| r.srtt),
            self.paths.heartbeat_loss(node),
        )
    }

    /// Reply addresses of the members that get unicast copies of every group datagram.
    pub fn unicast_paths(&self, now: Instant) -> Vec<SocketAddr> {
        self.members
            .iter()
            .filter(|m| matches!(self.path(now, m), paths::Path::Unicast(_)))
            .map(|m| m.addr)
            .collect()
    }
}
