//! Membership: who is in the cluster, learned from heartbeats and passed along.
//!
//! Members are identified by a node id (random per process start, so a restart is visible as
//! a new member), not by address, so several daemons may share a host. A member heard
//! directly is refreshed by its heartbeats; members are also learned second hand from the
//! known-member lists in others' heartbeats (so a newcomer learns the whole live set from the
//! first answers). A member not heard within the expiry is dropped; a `LEAVE` drops it at once.
//! No I/O and no clock: the engine passes `now` in.
//!
//! Bounded (see `limits.rs`): at most [`MAX_MEMBERS`] members, of which at most
//! [`MAX_INDIRECT`] known only second hand and at most [`MAX_MEMBERS_PER_HOST`] heard from one
//! host. One reply address is one process: a new node heard from the address of a member
//! replaces it (a restart that got the same port; or a forger, who then holds one entry, not
//! hundreds). A member heard directly may evict one known only second hand when the table is
//! full. The addresses of members heard directly are indexed: they are the only ones replies
//! go to without an anti-amplification budget.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::limits::{MAX_INDIRECT, MAX_MEMBERS, MAX_MEMBERS_PER_HOST};
use super::wire::{Heartbeat, Known, HB_RECEIVER};

/// Members per step of the heartbeat scale: in a group of `n` members each heartbeats
/// `max(1, n / HEARTBEAT_GROUP)` times `heartbeat` apart (and is expired that many times
/// `member_expiry` after it was last heard), so that a member hears about
/// `HEARTBEAT_GROUP` heartbeats per `heartbeat` whatever the size of the group: a sender of
/// a push to 1,000 members would otherwise hear 1,000 a second.
pub const HEARTBEAT_GROUP: usize = 32;

/// The heartbeat scale for a group of `members` (this node included), given the scale
/// now (`old`): it grows at once and shrinks by at most one step per heartbeat, so that a
/// member that lost sight of many others does not expire the rest, whose heartbeats still
/// come at the larger spacing, in a cascade.
pub(crate) fn heartbeat_scale(members: usize, old: u32) -> u32 {
    let want = (members / HEARTBEAT_GROUP).max(1) as u32;
    want.max(old.saturating_sub(1)).max(1)
}

/// What is known about one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Node id (random per process start).
    pub node: u64,
    /// Member name (host name by default).
    pub name: String,
    /// Reply (unicast) address.
    pub addr: SocketAddr,
    /// Software version (empty when only known second hand).
    pub version: String,
    /// Protocol versions it speaks.
    pub proto: (u8, u8),
    /// Heartbeat flags (`HB_RECEIVER`: it accepts pushes).
    pub flags: u8,
    /// Opaque status published by the member's driver (e.g. its last applied push).
    pub info: Vec<u8>,
    /// When it was last heard (directly, or as reported by whoever passed it along).
    pub last_seen: Instant,
    /// Since when it has been heard without a break (directly, or since it was learned).
    pub since: Instant,
    /// Whether this engine heard the member itself.
    pub direct: bool,
}

impl MemberInfo {
    /// Whether the member accepts pushes.
    pub fn receives(&self) -> bool {
        self.flags & HB_RECEIVER != 0
    }
}

/// Why a member left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    /// It said goodbye.
    Left,
    /// Not heard within the expiry.
    Expired,
    /// Another node took over its reply address (it restarted), or the table was full.
    Replaced,
}

/// The membership table.
#[derive(Debug, Default)]
pub(crate) struct Members {
    /// Each member, with the time `by_seen` has it at (see there).
    table: BTreeMap<u64, (MemberInfo, Instant)>,
    /// Members heard directly, by reply address.
    direct: HashMap<SocketAddr, u64>,
    /// Members known only second hand.
    indirect: usize,
    /// Every member by when it was last heard (oldest first): expiry without a scan of the
    /// table, which a timer asks for after every datagram. A datagram refreshing a member
    /// does not move it here (a removal and an insertion per datagram): its entry may lag
    /// behind its `last_seen`, except for the first entry, which is kept exact (`fix_first`),
    /// so the first is the member heard longest ago.
    by_seen: BTreeSet<(Instant, u64)>,
    /// The first entry of `by_seen`, kept beside it: the timer asks for it after every
    /// datagram, and every datagram from a member looks whether it is that member's
    /// (a walk down the set's tree each time, missing the cache in a 1,000-member table).
    first: Option<(Instant, u64)>,
    /// Members heard directly per host (the per-host cap without a scan).
    per_host: HashMap<IpAddr, usize>,
}

/// A change to report as an event.
pub(crate) enum Change {
    Up(MemberInfo),
    Down(MemberInfo, LeaveReason),
}

impl Members {
    pub(crate) fn get(&self, node: u64) -> Option<&MemberInfo> {
        self.table.get(&node).map(|(m, _)| m)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &MemberInfo> {
        self.table.values().map(|(m, _)| m)
    }

    /// Whether `a` is the reply address of a member heard directly.
    pub(crate) fn is_direct_addr(&self, a: &SocketAddr) -> bool {
        self.direct.contains_key(a)
    }

    /// Members heard directly.
    pub(crate) fn direct_count(&self) -> usize {
        self.direct.len()
    }

    fn insert(&mut self, m: MemberInfo) -> Option<MemberInfo> {
        let old = self.remove(m.node);
        if m.direct {
            if self.direct.insert(m.addr, m.node).is_none() {
                *self.per_host.entry(m.addr.ip()).or_insert(0) += 1;
            }
        } else {
            self.indirect += 1;
        }
        self.by_seen.insert((m.last_seen, m.node));
        self.first = self.by_seen.first().copied();
        let (node, seen) = (m.node, m.last_seen);
        self.table.insert(node, (m, seen));
        old
    }

    fn remove(&mut self, node: u64) -> Option<MemberInfo> {
        let (m, at) = self.table.remove(&node)?;
        self.by_seen.remove(&(at, m.node));
        self.fix_first();
        self.unindex(&m);
        Some(m)
    }

    /// Moves the first entries of `by_seen` that lag behind their member's `last_seen` to
    /// where they belong, until the first is exact.
    fn fix_first(&mut self) {
        while let Some(&(at, node)) = self.by_seen.first() {
            let Some((m, indexed)) = self.table.get_mut(&node) else {
                break;
            };
            if m.last_seen == at {
                break;
            }
            self.by_seen.pop_first();
            self.by_seen.insert((m.last_seen, node));
            *indexed = m.last_seen;
        }
        self.first = self.by_seen.first().copied();
    }

    /// Sets a member's `last_seen` to `seen`, moving its `by_seen` entry only when it must.
    fn reseen(&mut self, node: u64, seen: Instant) {
        let Some((m, indexed)) = self.table.get_mut(&node) else {
            return;
        };
        m.last_seen = seen;
        if seen < *indexed {
            // Back in time (not in practice): the entry may not lag ahead of it.
            self.by_seen.remove(&(*indexed, node));
            self.by_seen.insert((seen, node));
            *indexed = seen;
            self.first = self.by_seen.first().copied();
        }
        if self.first == Some((*indexed, node)) {
            self.fix_first();
        }
    }

    fn unindex(&mut self, m: &MemberInfo) {
        if m.direct {
            if self.direct.get(&m.addr) == Some(&m.node) {
                self.direct.remove(&m.addr);
                if let Some(n) = self.per_host.get_mut(&m.addr.ip()) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_host.remove(&m.addr.ip());
                    }
                }
            }
        } else {
            self.indirect -= 1;
        }
    }

    /// Records a heartbeat heard directly from `node` at `from`. Returns whether the member
    /// is new (`None`: not taken, the table being full), plus the second-hand members it
    /// taught us.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn heard(
        &mut self,
        now: Instant,
        me: u64,
        node: u64,
        from: SocketAddr,
        hb: &Heartbeat<'_>,
        expiry: Duration,
        changes: &mut Vec<Change>,
    ) -> Option<bool> {
        if let Some((m, _)) = self.table.get_mut(&node) {
            if m.direct && m.addr == from {
                // Heard again where it was: refreshed in place (what a new entry would hold).
                if m.name.as_bytes() != hb.name {
                    m.name = String::from_utf8_lossy(hb.name).into_owned();
                }
                if m.version.as_bytes() != hb.version {
                    m.version = String::from_utf8_lossy(hb.version).into_owned();
                }
                m.proto = (hb.proto_min, hb.proto_max);
                m.flags = hb.flags & (HB_RECEIVER | super::wire::HB_RELAY);
                if m.info != hb.info {
                    m.info = hb.info.to_vec();
                }
                self.reseen(node, now);
                for k in hb.known() {
                    self.learn(now, me, &k, expiry, changes);
                }
                return Some(false);
            }
        }
        let old = self.table.get(&node).map(|(m, _)| m);
        let since = old.filter(|o| o.direct).map_or(now, |o| o.since);
        if old.is_none_or(|o| !o.direct) && !self.make_room(node, from, changes) {
            return None;
        }
        let info = MemberInfo {
            node,
            name: String::from_utf8_lossy(hb.name).into_owned(),
            addr: from,
            version: String::from_utf8_lossy(hb.version).into_owned(),
            proto: (hb.proto_min, hb.proto_max),
            flags: hb.flags & (HB_RECEIVER | super::wire::HB_RELAY),
            info: hb.info.to_vec(),
            last_seen: now,
            since,
            direct: true,
        };
        let new = match self.insert(info.clone()) {
            None => true,
            Some(old) => !old.direct,
        };
        if new {
            changes.push(Change::Up(info));
        }
        for k in hb.known() {
            self.learn(now, me, &k, expiry, changes);
        }
        Some(new)
    }

    /// Makes room for `node`, about to be heard directly at `from`: a member at the same
    /// address is replaced; past the per-host cap nothing is taken; a full table gives up
    /// its oldest second-hand member. Returns whether `node` may be added.
    fn make_room(&mut self, node: u64, from: SocketAddr, changes: &mut Vec<Change>) -> bool {
        if let Some(&twin) = self.direct.get(&from) {
            if twin != node {
                if let Some(m) = self.remove(twin) {
                    changes.push(Change::Down(m, LeaveReason::Replaced));
                }
            }
        }
        let on_host = self.per_host.get(&from.ip()).copied().unwrap_or(0);
        if on_host >= MAX_MEMBERS_PER_HOST {
            return false;
        }
        let present = self.table.contains_key(&node);
        if self.table.len() >= MAX_MEMBERS && !present {
            let oldest = self
                .table
                .values()
                .map(|(m, _)| m)
                .filter(|m| !m.direct)
                .min_by_key(|m| (m.last_seen, m.node))
                .map(|m| m.node);
            match oldest.and_then(|n| self.remove(n)) {
                Some(m) => changes.push(Change::Down(m, LeaveReason::Replaced)),
                None => return false,
            }
        }
        true
    }

    /// Records a member passed along by another.
    fn learn(
        &mut self,
        now: Instant,
        me: u64,
        k: &Known<'_>,
        expiry: Duration,
        changes: &mut Vec<Change>,
    ) {
        let age = Duration::from_millis(k.age_ms as u64);
        if k.node == me || age >= expiry {
            return;
        }
        let seen = now.checked_sub(age).unwrap_or(now);
        match self.table.get_mut(&k.node) {
            Some((m, _)) => {
                if !m.direct && seen > m.last_seen {
                    m.addr = k.addr;
                    self.reseen(k.node, seen);
                }
            }
            None => {
                if self.table.len() >= MAX_MEMBERS || self.indirect >= MAX_INDIRECT {
                    return;
                }
                let info = MemberInfo {
                    node: k.node,
                    name: String::from_utf8_lossy(k.name).into_owned(),
                    addr: k.addr,
                    version: String::new(),
                    proto: (0, 0),
                    flags: k.flags & HB_RECEIVER,
                    info: Vec::new(),
                    last_seen: seen,
                    since: now,
                    direct: false,
                };
                self.insert(info.clone());
                changes.push(Change::Up(info));
            }
        }
    }

    /// Refreshes a member on any other datagram from it.
    pub(crate) fn touch(&mut self, now: Instant, node: u64) {
        // Called for every datagram (a receiver's for each block of a push): one lookup,
        // and `by_seen` only looked at when this member is its first entry.
        let Some((m, indexed)) = self.table.get_mut(&node) else {
            return;
        };
        if !m.direct || m.last_seen == now {
            return;
        }
        if now < *indexed {
            self.reseen(node, now);
            return;
        }
        m.last_seen = now;
        let at = *indexed;
        if self.first == Some((at, node)) {
            self.fix_first();
        }
    }

    /// Removes a member that said goodbye.
    pub(crate) fn leave(&mut self, node: u64, changes: &mut Vec<Change>) {
        if let Some(m) = self.remove(node) {
            changes.push(Change::Down(m, LeaveReason::Left));
        }
    }

    /// Drops members not heard within `expiry`.
    pub(crate) fn expire(&mut self, now: Instant, expiry: Duration, changes: &mut Vec<Change>) {
        // The expired entries leave `by_seen` oldest first, each exact when first.
        let mut dead = Vec::new();
        self.fix_first();
        while let Some(&(seen, node)) = self.by_seen.first() {
            if now.saturating_duration_since(seen) < expiry {
                break;
            }
            self.by_seen.pop_first();
            self.first = self.by_seen.first().copied();
            dead.push(node);
            self.fix_first();
        }
        dead.sort_unstable();
        for n in dead {
            if let Some(m) = self.remove(n) {
                changes.push(Change::Down(m, LeaveReason::Expired));
            }
        }
    }

    /// When the next member would expire.
    pub(crate) fn next_expiry(&self, expiry: Duration) -> Option<Instant> {
        debug_assert_eq!(self.first, self.by_seen.first().copied());
        self.first.map(|(seen, _)| seen + expiry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_scale_grows_with_the_group_at_once_and_shrinks_slowly() {
        assert_eq!(heartbeat_scale(9, 1), 1);
        assert_eq!(heartbeat_scale(63, 1), 1);
        assert_eq!(heartbeat_scale(100, 1), 3);
        assert_eq!(heartbeat_scale(1001, 3), 31);
        // Most members vanish from view: one step down per heartbeat.
        assert_eq!(heartbeat_scale(10, 31), 30);
        assert_eq!(heartbeat_scale(10, 0), 1);
    }

    fn member(node: u64, seen: Instant) -> MemberInfo {
        MemberInfo {
            node,
            name: format!("m{node}"),
            addr: SocketAddr::from(([127, 0, 0, node as u8], 4000)),
            version: String::new(),
            proto: (1, 1),
            flags: 0,
            info: Vec::new(),
            last_seen: seen,
            since: seen,
            direct: true,
        }
    }

    #[test]
    fn expiry_follows_the_member_heard_longest_ago_though_refreshes_do_not_reindex() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let e = ms(100);
        let mut m = Members::default();
        for n in 1..=3 {
            m.insert(member(n, t0));
        }
        m.touch(t0 + ms(10), 1);
        m.touch(t0 + ms(20), 1);
        m.touch(t0 + ms(30), 3);
        assert_eq!(m.next_expiry(e), Some(t0 + e), "2 is oldest");
        m.touch(t0 + ms(40), 2);
        assert_eq!(
            m.next_expiry(e),
            Some(t0 + ms(20) + e),
            "then 1, at its last refresh"
        );
        m.touch(t0 + ms(50), 1);
        assert_eq!(m.next_expiry(e), Some(t0 + ms(30) + e), "then 3");
        let mut ch = Vec::new();
        m.expire(t0 + ms(40) + e, e, &mut ch);
        let gone: Vec<u64> = ch
            .iter()
            .map(|c| match c {
                Change::Down(i, LeaveReason::Expired) => i.node,
                _ => panic!("not an expiry"),
            })
            .collect();
        assert_eq!(gone, [2, 3]);
        assert_eq!(m.next_expiry(e), Some(t0 + ms(50) + e));
        assert_eq!(m.iter().map(|i| i.node).collect::<Vec<_>>(), [1]);
        m.leave(1, &mut ch);
        assert_eq!(m.next_expiry(e), None);
        assert!(m.by_seen.is_empty());
    }
}
