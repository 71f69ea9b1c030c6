//! Limits on what any sender, key holders included, can make a receiver hold or send: the caps
//! (named constants, listed in `docs/protocol.md`, *Limits*), slot admission for inbound
//! transfers (per sending node, per source address, per host, in total), and the
//! anti-amplification budget of replies to addresses that are not registered members.
//!
//! Nothing here reads a clock or touches a socket; the engine passes `now` in.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::recv::{CommitState, Inbound};
use super::storage::XferKey;

/// Most inbound transfers a receiver keeps at once (a transfer gives its slot back as soon
/// as its commit is done).
pub const MAX_INBOUND: usize = 64;
/// Most inbound transfers from one sending node at once.
pub const MAX_INBOUND_PER_NODE: usize = 8;
/// Most inbound transfers announced from one source address (IP and port) at once.
pub const MAX_INBOUND_PER_ADDR: usize = 8;
/// Most inbound transfers announced from one host (IP) at once.
pub const MAX_INBOUND_PER_HOST: usize = 32;
/// An uncommitted transfer that made no progress (no new block or parity symbol, no change of
/// phase) for this long may be evicted when a new transfer finds every slot taken.
pub const IDLE_EVICT: Duration = Duration::from_secs(2);

/// Largest encoded manifest a receiver accepts (checked on the announce, before anything is
/// held).
pub const MAX_MANIFEST: u64 = 64 << 20;
/// Largest decoded manifest a receiver accepts: the estimate of
/// [`super::manifest::decoded_memory`] (paths, link texts and [`super::manifest::ENTRY_MEMORY`]
/// per entry), computed from the encoded bytes before anything is decoded. The shared-prefix
/// path encoding lets a few bytes on the wire stand for a 4 KiB path, so the encoded size
/// alone bounds nothing.
pub const MAX_MANIFEST_MEMORY: u64 = 128 << 20;
/// Most payload bytes one transfer holds in memory (blocks needed only in part, and parity
/// symbols, of groups not yet complete). Groups beyond it are not held: their blocks are
/// dropped and resent in a later repair round, so memory slides along the payload.
pub const MAX_HELD: u64 = 32 << 20;
/// Most payload bytes one transfer holds before its plan is known.
pub const MAX_EARLY: u64 = 16 << 20;
/// Most bytes all inbound transfers together hold: manifest streams while they arrive
/// (reserved in full on the announce: twice the manifest length, blocks and parity), decoded
/// manifests, held payload and early payload. A transfer that would exceed it is not admitted
/// (or, once its manifest is decoded, refused); held and early payload beyond it are dropped
/// and repaired later.
pub const MAX_INBOUND_MEMORY: u64 = 256 << 20;

/// Most filter rules one manifest carries: the simple list, the filter table's rules and
/// the rules of every per-directory list together (checked when decoding, and by the
/// front end, console sessions and config files when they build a filter).
pub const MAX_FILTER_RULES: usize = 2048;
/// Most bytes of filter patterns one manifest carries (all rules together).
pub const MAX_FILTER_BYTES: usize = 128 << 10;
/// What one compiled filter rule may hold besides [`RULE_MEMORY_PER_BYTE`] per pattern
/// byte: its regex, one search thread's caches and its lazy DFA caches. A rule that would
/// take more is refused ("pattern too complex"); receivers count this bound per rule
/// against the inbound memory cap when they size a manifest, before compiling anything.
pub const RULE_MEMORY: u64 = 16 << 10;
/// See [`RULE_MEMORY`].
pub const RULE_MEMORY_PER_BYTE: u64 = 128;
/// Most memory one transfer's compiled filter can take (what the caps above allow).
pub const MAX_FILTER_MEMORY: u64 =
    MAX_FILTER_RULES as u64 * RULE_MEMORY + MAX_FILTER_BYTES as u64 * RULE_MEMORY_PER_BYTE;

/// Most members the table holds (at least 1,000-member clusters, with room for direct-mode
/// senders coming and going).
pub const MAX_MEMBERS: usize = 4096;
// A push's targets are members: the table must hold the most one push may have.
const _: () = assert!(MAX_MEMBERS >= super::wire::MAX_TARGETS);
/// Most members heard directly from one host (IP) at once.
pub const MAX_MEMBERS_PER_HOST: usize = 64;
/// Most members known only second hand (passed along in others' heartbeats).
pub const MAX_INDIRECT: usize = 1024;

/// Reply bytes an address that is not a registered member may receive per byte it sent.
pub const AMPLIFICATION: u64 = 1;
/// Most addresses whose reply budget is tracked at once.
pub const MAX_BUDGETS: usize = 1024;
/// An address budget unused for this long is forgotten.
pub const BUDGET_IDLE: Duration = Duration::from_secs(30);

/// Why a transfer is not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not now (no slot, or not enough memory): say nothing, the sender announces again.
    Later,
    /// Never: answer with this reason (the sender fails this member with it).
    Reason(String),
}

/// Bytes every inbound transfer holds, except `except`.
pub(crate) fn inbound_memory(inbound: &BTreeMap<XferKey, Inbound>, except: Option<XferKey>) -> u64 {
    inbound
        .iter()
        .filter(|(k, _)| Some(**k) != except)
        .map(|(_, ib)| ib.memory())
        .sum()
}

/// Which inbound transfers a cap counts.
type Scope<'a> = dyn Fn(&XferKey, &Inbound) -> bool + 'a;

/// Decides whether a new transfer `key`, announced from `from` with a manifest of
/// `manifest_len` bytes in blocks of `block`, gets a slot. When every slot (or every slot of
/// its node, address or host) is taken, the least recently progressing idle transfer there
/// is named for eviction: `Ok(Some(victim))`.
pub(crate) fn admit(
    inbound: &BTreeMap<XferKey, Inbound>,
    key: XferKey,
    from: SocketAddr,
    manifest_len: u64,
    reserve: u64,
    now: Instant,
) -> Result<Option<XferKey>, Refusal> {
    if manifest_len > MAX_MANIFEST {
        return Err(Refusal::Reason(format!(
            "manifest too large for this member ({manifest_len} > {MAX_MANIFEST} bytes)"
        )));
    }
    let same_node = |k: &XferKey, _: &Inbound| k.origin == key.origin;
    let same_addr = |_: &XferKey, ib: &Inbound| ib.announced_from == from;
    let same_host = |_: &XferKey, ib: &Inbound| ib.announced_from.ip() == from.ip();
    let any = |_: &XferKey, _: &Inbound| true;
    let scopes: [(&Scope<'_>, usize); 4] = [
        (&same_node, MAX_INBOUND_PER_NODE),
        (&same_addr, MAX_INBOUND_PER_ADDR),
        (&same_host, MAX_INBOUND_PER_HOST),
        (&any, MAX_INBOUND),
    ];
    let mut victim: Option<XferKey> = None;
    for (scope, cap) in scopes {
        let n = inbound.iter().filter(|(k, ib)| scope(k, ib)).count();
        if n < cap {
            continue;
        }
        // Full: the transfer already chosen for eviction may be in this scope too.
        if let Some(v) = victim {
            if inbound.get(&v).is_some_and(|ib| scope(&v, ib)) {
                continue;
            }
            return Err(Refusal::Later);
        }
        // Make room by evicting the scope's most idle transfer, if one is idle enough.
        victim = inbound
            .iter()
            .filter(|(k, ib)| scope(k, ib) && evictable(ib, now))
            .min_by_key(|(k, ib)| (ib.last_progress, **k))
            .map(|(k, _)| *k);
        if victim.is_none() {
            return Err(Refusal::Later);
        }
    }
    let held = inbound_memory(inbound, victim);
    if held.saturating_add(reserve) > MAX_INBOUND_MEMORY {
        return Err(Refusal::Later);
    }
    Ok(victim)
}

/// Whether a transfer may be evicted to make room: not committing or committed, and no
/// progress for [`IDLE_EVICT`].
fn evictable(ib: &Inbound, now: Instant) -> bool {
    matches!(ib.commit, CommitState::None)
        && now.saturating_duration_since(ib.last_progress) >= IDLE_EVICT
}

/// What one address not registered as a member sent, and what we replied.
#[derive(Clone, Copy, Debug)]
struct Credit {
    received: u64,
    sent: u64,
    last: Instant,
}

/// Anti-amplification: an address that is not a registered member never gets more reply
/// bytes than [`AMPLIFICATION`] times what it sent (QUIC's rule, at 1×). Bounded: at most
/// [`MAX_BUDGETS`] addresses are tracked; one idle for [`BUDGET_IDLE`] is forgotten, and when
/// the table is full of busy ones a new address earns no budget (it gets no replies until
/// room frees up). Forgetting only ever forgets credit, so the bound holds across it.
#[derive(Debug, Default)]
pub(crate) struct ReplyBudget {
    table: HashMap<SocketAddr, Credit>,
    last_sweep: Option<Instant>,
}

impl ReplyBudget {
    /// `from` sent us `len` bytes.
    pub(crate) fn received(&mut self, from: SocketAddr, len: usize, now: Instant) {
        if !self.table.contains_key(&from) && self.table.len() >= MAX_BUDGETS {
            self.sweep(now);
            if self.table.len() >= MAX_BUDGETS {
                return;
            }
        }
        let c = self.table.entry(from).or_insert(Credit {
            received: 0,
            sent: 0,
            last: now,
        });
        c.received = c.received.saturating_add(len as u64);
        c.last = now;
    }

    /// Whether `len` reply bytes may go to `to` now; if so they are spent.
    pub(crate) fn spend(&mut self, to: SocketAddr, len: usize, now: Instant) -> bool {
        match self.table.get_mut(&to) {
            Some(c) if c.sent + len as u64 <= c.received.saturating_mul(AMPLIFICATION) => {
                c.sent += len as u64;
                c.last = now;
                true
            }
            _ => false,
        }
    }

    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_millis(100))
        {
            return;
        }
        self.last_sweep = Some(now);
        self.table
            .retain(|_, c| now.saturating_duration_since(c.last) < BUDGET_IDLE);
    }

    /// Forgets idle addresses (called from the engine's timer).
    pub(crate) fn expire(&mut self, now: Instant) {
        self.table
            .retain(|_, c| now.saturating_duration_since(c.last) < BUDGET_IDLE);
    }

    /// Addresses tracked.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn replies_never_exceed_what_an_address_sent() {
        let t = Instant::now();
        let mut b = ReplyBudget::default();
        let a = addr("10.0.0.1:5000");
        assert!(!b.spend(a, 1, t), "nothing received, nothing sent back");
        b.received(a, 360, t);
        assert!(b.spend(a, 300, t));
        assert!(!b.spend(a, 61, t));
        assert!(b.spend(a, 60, t));
        assert!(!b.spend(a, 1, t));
        // Another address's credit is its own.
        assert!(!b.spend(addr("10.0.0.1:5001"), 1, t));
    }

    #[test]
    fn the_budget_table_is_bounded_and_ages_out() {
        let t = Instant::now();
        let mut b = ReplyBudget::default();
        for i in 0..MAX_BUDGETS + 100 {
            let a = SocketAddr::new([10, 1, (i >> 8) as u8, i as u8].into(), 9);
            b.received(a, 100, t);
        }
        assert_eq!(b.len(), MAX_BUDGETS);
        // Untracked: no credit, so no reply.
        let late = SocketAddr::new([10, 1, 255, 255].into(), 9);
        assert!(!b.spend(late, 1, t));
        // Once the others are idle long enough, a newcomer is tracked again.
        let later = t + BUDGET_IDLE + Duration::from_secs(1);
        b.received(late, 100, later);
        assert!(b.spend(late, 100, later));
        assert_eq!(b.len(), 1);
    }
}
