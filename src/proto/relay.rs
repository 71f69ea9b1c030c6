//! Relaying (`--relay`): members forward a sender's push to other members, so the sender's
//! link carries a few copies of it instead of one per member that multicast does not reach.
//!
//! Sender side ([`plan`], [`Engine::set_relay_plan`]): the driver names the members that get
//! unicast copies (every member with `--peer`, else those on the unicast path); of those that
//! offer to relay ([`HB_RELAY`] in their heartbeats, heard directly) `k` become relays, each
//! given up to `m` of the others, with `m` the least such that `m·(m + 1) ≥ n` and
//! `k = ⌈n/(m + 1)⌉` (a two-level tree: neither the sender's link nor a relay's carries more
//! than about √n copies); the rest get direct copies. The engine tells each relay its list
//! in a RELAY message, at once when the plan changes and every heartbeat while a push is in
//! flight (the assignment lapses after three heartbeats unless renewed). The push's stream ([`relayed`]: announce, blocks,
//! parity, polls, pace; one path, so its order holds) goes to the relays and the direct
//! members only; heartbeats, commits and aborts go to every member directly.
//!
//! Relay side ([`Engine::relay_for`]): a member started with `--relay` keeps, per sender, the
//! assignment it got (bounded: [`MAX_ORIGINS`] senders, [`wire::MAX_RELAY_TARGETS`] members
//! each, and only addresses of members it heard directly). The driver forwards, unchanged
//! (still sealed), each datagram of a relayed kind that came by unicast from that sender's
//! own address: never one that came through a relay, so nothing loops. With
//! [`wire::RELAY_GROUP`] (a sender that has multicast), the listed members that hear the
//! relay's own multicast get one group copy, the others unicast ones: a relay bridges a subnet
//! that does not route the sender's multicast. Replies (NAK, FEEDBACK, RESULT) go to the
//! sender directly, as always. No I/O and no clock: `now` is passed in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::paths::Path;
use super::storage::Storage;
use super::wire::{self, kind, Msg, HB_RELAY};
use super::{Dest, Engine};

/// Kinds that travel through relays: the push's stream.
pub const RELAYED: [u8; 5] = [
    kind::ANNOUNCE,
    kind::BLOCK,
    kind::PARITY,
    kind::POLL,
    kind::PACE,
];

/// Whether datagrams of `kind` go through relays.
pub fn relayed(kind: u8) -> bool {
    RELAYED.contains(&kind)
}

/// Most senders whose assignments a relay keeps at once.
pub const MAX_ORIGINS: usize = 64;
/// Longest an assignment stands at a relay, whatever the sender asked.
pub const MAX_TTL: Duration = Duration::from_secs(30);
/// Heartbeats a relay may miss before the sender plans without it.
const QUIET_HEARTBEATS: u32 = 3;
/// Heartbeats an assignment stands for (renewed every heartbeat while pushing).
const TTL_HEARTBEATS: u32 = 3;

/// One member the sender sends unicast copies to, as the plan sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// Its address.
    pub addr: SocketAddr,
    /// Its node id (0: not a member heard directly).
    pub node: u64,
    /// It offers to relay (and is heard directly).
    pub relay: bool,
}

/// Where a sender's relayed datagrams go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Relays and the members each forwards to.
    pub relays: Vec<(SocketAddr, Vec<SocketAddr>)>,
    /// Members that get the sender's own copies.
    pub direct: Vec<SocketAddr>,
}

impl Plan {
    /// Addresses the sender sends a relayed datagram to: the relays, then the direct members.
    pub fn first_hops(&self) -> Vec<SocketAddr> {
        self.relays
            .iter()
            .map(|(a, _)| *a)
            .chain(self.direct.iter().copied())
            .collect()
    }

    /// Copies of each relayed datagram on the sender's link.
    pub fn copies(&self) -> usize {
        self.relays.len() + self.direct.len()
    }
}

/// The plan for `hops` (any order; the result does not depend on it).
pub fn plan(hops: &[Hop]) -> Plan {
    let mut hops = hops.to_vec();
    hops.sort_by_key(|h| (h.node, h.addr));
    hops.dedup_by_key(|h| h.addr);
    let n = hops.len();
    // The least m with m relays of m members each covering everyone (k·(1 + m) ≥ n): then
    // neither the sender nor a relay sends more than m ≈ √n copies.
    let mut m = 1;
    while m * (m + 1) < n {
        m += 1;
    }
    let want = n.div_ceil(m + 1);
    let k = want.min(hops.iter().filter(|h| h.relay).count());
    if k == 0 || k >= n {
        return Plan {
            relays: Vec::new(),
            direct: hops.iter().map(|h| h.addr).collect(),
        };
    }
    // Fewer relays than wanted: share the rest between them and the sender's own copies.
    let per = if k == want {
        m
    } else {
        (n - k).div_ceil(k + 1)
    };
    let per = per.clamp(1, wire::MAX_RELAY_TARGETS);
    let mut relays: Vec<(SocketAddr, Vec<SocketAddr>)> = hops
        .iter()
        .filter(|h| h.relay)
        .take(k)
        .map(|h| (h.addr, Vec::new()))
        .collect();
    let mut direct = Vec::new();
    let mut next = 0;
    let chosen: Vec<SocketAddr> = relays.iter().map(|(a, _)| *a).collect();
    for h in hops.iter().filter(|h| !chosen.contains(&h.addr)) {
        if next < relays.len() * per {
            relays[next % k].1.push(h.addr);
            next += 1;
        } else {
            direct.push(h.addr);
        }
    }
    // A relay left without members is just a member the sender reaches directly.
    for (a, _) in relays.iter().filter(|(_, l)| l.is_empty()) {
        direct.push(*a);
    }
    relays.retain(|(_, l)| !l.is_empty());
    Plan { relays, direct }
}

/// One sender's assignment at a relay.
#[derive(Clone, Debug)]
struct Forward {
    /// The sender's address: only datagrams from it are forwarded.
    from: SocketAddr,
    /// Every listed member (for a node without multicast).
    all: Vec<SocketAddr>,
    /// Listed members that do not hear our multicast.
    unicast: Vec<SocketAddr>,
    /// Some listed member hears our multicast, and the sender asked for group copies.
    group: bool,
    until: Instant,
}

/// Where one relayed datagram goes from here.
#[derive(Clone, Copy, Debug)]
pub struct Forwarding<'a> {
    /// Every listed member.
    pub all: &'a [SocketAddr],
    /// Listed members that need a unicast copy when this node also sends one to its group.
    pub unicast: &'a [SocketAddr],
    /// Send one copy to the group (when this node has multicast).
    pub group: bool,
}

/// Relay counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct RelayStats {
    /// Assignments accepted (including renewals).
    pub assigned: u64,
    /// Assignments refused: this node does not relay, the sender is not a member heard
    /// directly at that address, or the table is full.
    pub refused: u64,
    /// Listed addresses left out: not a member heard directly.
    pub unknown_targets: u64,
    /// Assignments sent (as a sender).
    pub sent: u64,
}

/// Relay state of the engine: the sender's plan and, at a relay, the assignments it holds.
#[derive(Debug, Default)]
pub(crate) struct Relays {
    plan: Plan,
    told: Option<Instant>,
    forwards: HashMap<u64, Forward>,
    /// Copies of each group datagram on this node's link (pacing counts them).
    pub(crate) copies: usize,
    pub(crate) stats: RelayStats,
}

impl<S: Storage> Engine<S> {
    /// The relay plan for `to`, the addresses that get unicast copies of group datagrams:
    /// members heard directly that offer to relay ([`HB_RELAY`]) may become relays, unless
    /// they went quiet ([`QUIET_HEARTBEATS`] of their heartbeats missing) or a push of ours
    /// failed them: a relay that stops answering mid-push is replaced at the next plan (the
    /// driver re-plans every [`RELAY_PLAN_FOR`](crate::node)), so its members get the push
    /// directly or through another relay instead of waiting for it to expire.
    pub fn relay_plan(&self, to: &[SocketAddr]) -> Plan {
        let now = self.clock;
        let quiet = self.cfg.heartbeat * self.hb_scale * QUIET_HEARTBEATS;
        let failed = |n: u64| self.outbound.values().any(|ob| ob.failed_target(n));
        let by_addr: HashMap<SocketAddr, &super::members::MemberInfo> = self
            .members
            .iter()
            .filter(|m| m.direct)
            .filter(|m| now.saturating_duration_since(m.last_seen) < quiet && !failed(m.node))
            .map(|m| (m.addr, m))
            .collect();
        let hops: Vec<Hop> = to
            .iter()
            .map(|a| {
                let m = by_addr.get(a);
                Hop {
                    addr: *a,
                    node: m.map_or(0, |m| m.node),
                    relay: m.is_some_and(|m| m.flags & HB_RELAY != 0),
                }
            })
            .collect();
        plan(&hops)
    }

    /// Input: the relay plan the driver uses now (`group`: relays may use their own group).
    /// While a push is in flight each relay is told its list when the plan changes and every
    /// heartbeat; relays dropped from the plan are told to stop.
    pub fn set_relay_plan(&mut self, now: Instant, plan: Plan, group: bool) {
        self.clock = self.clock.max(now);
        let changed = plan != self.relays.plan;
        let due = self
            .relays
            .told
            .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.heartbeat);
        if self.outbound.is_empty() {
            if changed {
                self.relays.plan = plan;
                self.relays.told = None;
            }
            return;
        }
        if !changed && !due {
            return;
        }
        let ttl = (self.cfg.heartbeat * TTL_HEARTBEATS).min(MAX_TTL);
        let gone: Vec<SocketAddr> = self
            .relays
            .plan
            .relays
            .iter()
            .map(|(a, _)| *a)
            .filter(|a| !plan.relays.iter().any(|(b, _)| b == a))
            .collect();
        for a in gone {
            self.tell_relay(a, &[], 0, ttl);
        }
        let flags = if group { wire::RELAY_GROUP } else { 0 };
        for (a, list) in &plan.relays {
            self.tell_relay(*a, list, flags, ttl);
        }
        self.relays.plan = plan;
        self.relays.told = Some(now);
    }

    fn tell_relay(&mut self, to: SocketAddr, list: &[SocketAddr], flags: u8, ttl: Duration) {
        let mut raw = [0u8; wire::MAX_RELAY_TARGETS * 19];
        let (count, len) = wire::Relay::write_targets(list, &mut raw);
        self.relays.stats.sent += 1;
        self.queue(
            Dest::Unicast(to),
            &Msg::Relay(wire::Relay {
                ttl_ms: ttl.as_millis().min(u32::MAX as u128) as u32,
                flags,
                count,
                addrs_raw: &raw[..len],
            }),
        );
    }

    /// A RELAY from `node` at `from`.
    pub(super) fn on_relay(
        &mut self,
        now: Instant,
        from: SocketAddr,
        node: u64,
        r: &wire::Relay<'_>,
    ) -> bool {
        let sender_ok = self
            .members
            .get(node)
            .is_some_and(|m| m.direct && m.addr == from);
        let st = &mut self.relays;
        if !self.cfg.relay || !sender_ok {
            st.stats.refused += 1;
            return false;
        }
        st.forwards.retain(|_, f| f.until > now);
        if r.count == 0 {
            st.forwards.remove(&node);
            return true;
        }
        if st.forwards.len() >= MAX_ORIGINS && !st.forwards.contains_key(&node) {
            st.stats.refused += 1;
            return false;
        }
        let me = self.cfg.node_id;
        let expiry = self.cfg.member_expiry;
        let mut f = Forward {
            from,
            all: Vec::new(),
            unicast: Vec::new(),
            group: false,
            until: now + Duration::from_millis(r.ttl_ms as u64).min(MAX_TTL),
        };
        for a in r.targets() {
            let Some(m) = self
                .members
                .iter()
                .find(|m| m.direct && m.addr == a && m.node != node && m.node != me)
            else {
                self.relays.stats.unknown_targets += 1;
                continue;
            };
            if f.all.contains(&a) {
                continue;
            }
            f.all.push(a);
            match self.paths.path(now, m, expiry) {
                Path::Multicast if r.flags & wire::RELAY_GROUP != 0 => f.group = true,
                _ => f.unicast.push(a),
            }
        }
        self.relays.forwards.insert(node, f);
        self.relays.stats.assigned += 1;
        true
    }

    /// Where to forward a datagram of `kind` from sender `node` that came by unicast from
    /// `from` (`None`: not at all).
    pub fn relay_for(
        &self,
        now: Instant,
        node: u64,
        from: SocketAddr,
        kind: u8,
    ) -> Option<Forwarding<'_>> {
        if !relayed(kind) {
            return None;
        }
        let f = self.relays.forwards.get(&node)?;
        (f.from == from && f.until > now && !f.all.is_empty()).then_some(Forwarding {
            all: &f.all,
            unicast: &f.unicast,
            group: f.group,
        })
    }

    /// Input: copies of each group datagram this node's link carries (1 for multicast alone;
    /// plus one per member on the unicast path; with `--peer` one per member; with relays the
    /// relays and direct members). Pacing counts them against the rate cap.
    pub fn set_link_copies(&mut self, copies: usize) {
        self.relays.copies = copies;
    }

    /// The rate the pacer spaces this node's group datagrams at (bytes per second): rate
    /// control's rate, and with a cap (`--bwlimit`) no more than the cap shared among the
    /// copies the link carries of each datagram.
    pub(super) fn pace_rate(&self) -> f64 {
        let r = self.rate.rate();
        match self.cfg.rate_limit {
            Some(cap) if self.relays.copies > 1 => r.min(cap as f64 / self.relays.copies as f64),
            _ => r,
        }
    }

    /// Relay counters.
    pub fn relay_stats(&self) -> RelayStats {
        self.relays.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hops(n: usize, relays: usize) -> Vec<Hop> {
        (0..n)
            .map(|i| Hop {
                addr: SocketAddr::from(([198, 18, 0, 10 + i as u8], 5000)),
                node: 100 + i as u64,
                relay: i < relays,
            })
            .collect()
    }

    fn covered(p: &Plan) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = p
            .relays
            .iter()
            .flat_map(|(a, l)| std::iter::once(*a).chain(l.iter().copied()))
            .chain(p.direct.iter().copied())
            .collect();
        all.sort();
        all
    }

    #[test]
    fn every_member_is_reached_once_and_the_sender_sends_about_root_n_copies() {
        for n in 1..=40 {
            for r in [0, 1, 2, n] {
                let h = hops(n, r.min(n));
                let p = plan(&h);
                let mut want: Vec<SocketAddr> = h.iter().map(|h| h.addr).collect();
                want.sort();
                assert_eq!(covered(&p), want, "n={n} relays={r}");
                for (a, l) in &p.relays {
                    assert!(h.iter().any(|x| x.addr == *a && x.relay));
                    assert!(!l.is_empty() && !l.contains(a));
                }
                if r == n && n >= 4 {
                    let root = (n as f64).sqrt().ceil() as usize;
                    assert!(p.copies() <= root + 1, "n={n}: {} copies", p.copies());
                    let most = p.relays.iter().map(|(_, l)| l.len()).max().unwrap();
                    assert!(most <= root, "n={n}: a relay forwards {most}");
                }
            }
        }
        // Eight members that all relay: 2 copies leave the sender, none relays more than 3.
        let p = plan(&hops(8, 8));
        assert_eq!(p.copies(), 2);
        assert!(p.relays.iter().all(|(_, l)| l.len() <= 3));
        // Five: 2 and 2.
        let p = plan(&hops(5, 5));
        assert_eq!(p.copies(), 2);
        assert!(p.relays.iter().all(|(_, l)| l.len() <= 2));
        // Eight with one relay: it takes 4 (7 split between it and the sender's copies).
        let p = plan(&hops(8, 1));
        assert_eq!((p.relays[0].1.len(), p.copies()), (4, 4));
        // Nobody offers to relay: plain fan-out.
        assert_eq!(plan(&hops(8, 0)).direct.len(), 8);
    }

    #[test]
    fn the_plan_does_not_depend_on_the_order_it_is_given() {
        let h = hops(9, 4);
        let mut r = h.clone();
        r.reverse();
        assert_eq!(plan(&h), plan(&r));
    }

    #[test]
    fn relay_assignments_round_trip_on_the_wire() {
        let addrs = [
            SocketAddr::from(([198, 18, 0, 1], 5000)),
            "[fd00::1]:7000".parse().unwrap(),
        ];
        let mut raw = [0u8; 64];
        let (count, len) = wire::Relay::write_targets(&addrs, &mut raw);
        let m = Msg::Relay(wire::Relay {
            ttl_ms: 3000,
            flags: wire::RELAY_GROUP,
            count,
            addrs_raw: &raw[..len],
        });
        let h = wire::Header {
            version: wire::VERSION,
            kind: 0,
            flags: 0,
            key_id: 0,
            cluster: 7,
            node: 9,
            seq: 1,
        };
        let mut buf = vec![0u8; wire::MAX_DATAGRAM];
        let n = m.encode(&h, &mut buf);
        let (_, back) = wire::decode(&buf[..n]).unwrap();
        assert_eq!(back, m);
        let Msg::Relay(r) = back else { panic!() };
        assert_eq!(r.targets().collect::<Vec<_>>(), addrs);
        // A count over the cap, a truncated address, trailing bytes: refused.
        let mut bad = buf[..n].to_vec();
        bad[wire::HEADER_LEN + 5] = 65;
        assert!(wire::decode(&bad).is_err());
        assert!(wire::decode(&buf[..n - 1]).is_err());
        let mut long = buf[..n].to_vec();
        long.push(0);
        assert!(wire::decode(&long).is_err());
    }
}
