//! Membership: who is in the cluster, learned from heartbeats and passed along.
//!
//! Members are identified by a node id (random per process start, so a restart is visible as
//! a new member), not by address, so several daemons may share a host. A member heard
//! directly is refreshed by its heartbeats; members are also learned second hand from the
//! known-member lists in others' heartbeats (so a newcomer learns the whole live set from the
//! first answers). A member not heard within the expiry is dropped; a `LEAVE` drops it at once.
//! No I/O and no clock: the engine passes `now` in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::wire::{Heartbeat, Known, HB_RECEIVER};

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
}

/// The membership table.
#[derive(Debug, Default)]
pub(crate) struct Members {
    table: BTreeMap<u64, MemberInfo>,
}

/// A change to report as an event.
pub(crate) enum Change {
    Up(MemberInfo),
    Down(MemberInfo, LeaveReason),
}

impl Members {
    pub(crate) fn get(&self, node: u64) -> Option<&MemberInfo> {
        self.table.get(&node)
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &MemberInfo> {
        self.table.values()
    }

    /// Records a heartbeat heard directly from `node` at `from`. Returns whether the member
    /// is new, plus the second-hand members it taught us.
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
    ) -> bool {
        let info = MemberInfo {
            node,
            name: String::from_utf8_lossy(hb.name).into_owned(),
            addr: from,
            version: String::from_utf8_lossy(hb.version).into_owned(),
            proto: (hb.proto_min, hb.proto_max),
            flags: hb.flags & HB_RECEIVER,
            info: hb.info.to_vec(),
            last_seen: now,
            direct: true,
        };
        let new = match self.table.insert(node, info.clone()) {
            None => true,
            Some(old) => !old.direct,
        };
        if new {
            changes.push(Change::Up(info));
        }
        for k in hb.known() {
            self.learn(now, me, &k, expiry, changes);
        }
        new
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
        if k.node == me
            || age >= expiry
            || (self.table.len() >= super::MAX_MEMBERS && !self.table.contains_key(&k.node))
        {
            return;
        }
        let seen = now.checked_sub(age).unwrap_or(now);
        match self.table.get_mut(&k.node) {
            Some(m) => {
                if !m.direct && seen > m.last_seen {
                    m.last_seen = seen;
                    m.addr = k.addr;
                }
            }
            None => {
                let info = MemberInfo {
                    node: k.node,
                    name: String::from_utf8_lossy(k.name).into_owned(),
                    addr: k.addr,
                    version: String::new(),
                    proto: (0, 0),
                    flags: k.flags & HB_RECEIVER,
                    info: Vec::new(),
                    last_seen: seen,
                    direct: false,
                };
                self.table.insert(k.node, info.clone());
                changes.push(Change::Up(info));
            }
        }
    }

    /// Refreshes a member on any other datagram from it.
    pub(crate) fn touch(&mut self, now: Instant, node: u64) {
        if let Some(m) = self.table.get_mut(&node) {
            if m.direct {
                m.last_seen = now;
            }
        }
    }

    /// Removes a member that said goodbye.
    pub(crate) fn leave(&mut self, node: u64, changes: &mut Vec<Change>) {
        if let Some(m) = self.table.remove(&node) {
            changes.push(Change::Down(m, LeaveReason::Left));
        }
    }

    /// Drops members not heard within `expiry`.
    pub(crate) fn expire(&mut self, now: Instant, expiry: Duration, changes: &mut Vec<Change>) {
        let dead: Vec<u64> = self
            .table
            .values()
            .filter(|m| now.saturating_duration_since(m.last_seen) >= expiry)
            .map(|m| m.node)
            .collect();
        for n in dead {
            if let Some(m) = self.table.remove(&n) {
                changes.push(Change::Down(m, LeaveReason::Expired));
            }
        }
    }

    /// When the next member would expire.
    pub(crate) fn next_expiry(&self, expiry: Duration) -> Option<Instant> {
        self.table.values().map(|m| m.last_seen + expiry).min()
    }
}
