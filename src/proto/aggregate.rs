//! Answers that scale: in a push to many targets, each target sends its answers (REPORT,
//! NAKs answering a poll, RESULT) to its cohort's leader, one of the targets, which gathers
//! them for [`AGG_HOLD`] and sends them to the sender in one AGGREGATE datagram. So a
//! sender hears about one datagram per cohort per request instead of one per target. A
//! member whose request comes again after it answered through its leader (the leader is
//! gone, slow, or one of the two hops lost it) answers that repeat straight to the sender;
//! after [`LEADER_MISSES`] such repeats, everything it answers. No I/O, no clock.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::storage::{Storage, XferKey};
use super::wire::{self, Msg};
use super::Engine;

/// Targets per cohort: the `j`-th target listed in an announce part is led by the part's
/// `⌊j / COHORT⌋ × COHORT`-th.
pub const COHORT: usize = 32;
/// Pushes to more targets than this gather answers through cohort leaders.
pub const AGG_MIN_TARGETS: usize = 64;
/// How long a leader gathers answers before it sends them on.
pub const AGG_HOLD: Duration = Duration::from_millis(3);
/// A request answered through the leader that comes again within this is not answered
/// (it crossed the answer); later, the member answers the sender directly.
const REPEAT_GRACE: Duration = Duration::from_millis(12);
/// Repeated requests after which a member stops answering through its leader (one lost
/// answer on either hop is not reason enough: at 1 % loss a few of every cohort lose one).
pub const LEADER_MISSES: u8 = 2;
/// Transfers a leader gathers for at once (beyond, answers are dropped and the members
/// answer the sender's repeat directly).
const MAX_GATHERING: usize = 64;

/// What a leader gathered for one transfer.
#[derive(Debug)]
pub(crate) struct Gathered {
    /// Where the sender's replies go.
    dest: SocketAddr,
    items: Vec<u8>,
    count: usize,
    /// When to send them on.
    due: Instant,
}

/// Per transfer, the answers a leader holds.
pub(crate) type Gathering = BTreeMap<XferKey, Gathered>;

impl<S: Storage> Engine<S> {
    /// The leader of this member in a push with the targets of announce `a` (`pos`: this
    /// member's position), if the push gathers answers and the leader is a member heard
    /// directly. Cohorts are counted from the start of the announce part that lists the
    /// member, so that its leader is always listed in the same part.
    pub(super) fn cohort_leader(
        &self,
        a: &wire::Announce<'_>,
        pos: usize,
    ) -> Option<(u64, SocketAddr)> {
        if a.target_count() == 0 || usize::from(a.total) <= AGG_MIN_TARGETS {
            return None;
        }
        let first = usize::from(a.first);
        let node = a.targets().nth(pos.checked_sub(first)? / COHORT * COHORT)?;
        if node == self.cfg.node_id {
            return Some((node, a_dummy_addr()));
        }
        let m = self.members.get(node).filter(|m| m.direct)?;
        Some((node, m.addr))
    }

    /// Sends an answer about inbound transfer `key` (a REPORT, a NAK answering a poll, a
    /// RESULT) to `dest` (the sender), or through the cohort's leader. `asked`: it answers a
    /// request of kind `req` and round `round` (a repeat of a request answered through the
    /// leader goes straight to the sender; after [`LEADER_MISSES`] repeats, every answer
    /// does). `echo_at`: as
    /// for [`Self::queue_reply_echo`], when it goes straight to the sender.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn answer(
        &mut self,
        now: Instant,
        key: XferKey,
        dest: SocketAddr,
        m: &Msg<'_>,
        req: (u8, u32),
        asked: bool,
        echo_at: Option<Instant>,
    ) {
        let me = self.cfg.node_id;
        let via = match self.inbound.get_mut(&key) {
            Some(ib) if ib.leader_misses < LEADER_MISSES => match (ib.leader, ib.relayed) {
                (Some(_), Some((r, at))) if asked && r == req => {
                    if now.saturating_duration_since(at) < REPEAT_GRACE {
                        // The answer is on its way through the leader: the request
                        // crossed it.
                        return;
                    }
                    // This repeat is answered straight to the sender.
                    ib.leader_misses += 1;
                    ib.relayed = None;
                    None
                }
                (Some(l), _) => {
                    ib.relayed = Some((req, now));
                    Some(l)
                }
                _ => None,
            },
            _ => None,
        };
        let Some((leader, addr)) = via else {
            self.queue_reply_echo(dest, m, echo_at);
            return;
        };
        let buf = self.encode_ctl(m);
        let mut item = Vec::with_capacity(buf.len());
        wire::push_aggregate_item(&mut item, me, buf[3], &buf[wire::HEADER_LEN..]);
        if leader == me {
            self.gather(now, key, dest, &item);
        } else {
            self.queue_reply(
                addr,
                &Msg::Aggregate {
                    origin: key.origin,
                    xfer: key.xfer,
                    items: &item,
                },
            );
        }
    }

    /// Adds items to what this leader holds for `key`, sending on first what would not fit.
    fn gather(&mut self, now: Instant, key: XferKey, dest: SocketAddr, items: &[u8]) {
        let room = self.max_dgram() - wire::HEADER_LEN - wire::AGG_HDR;
        if items.len() > room {
            return;
        }
        let n = wire::aggregate_items(items).count();
        let full = self.gathering.get(&key).is_some_and(|g| {
            g.items.len() + items.len() > room || g.count + n > wire::MAX_AGG_ITEMS
        });
        if full {
            self.send_gathered(key);
        }
        if !self.gathering.contains_key(&key) && self.gathering.len() >= MAX_GATHERING {
            self.stats.dropped_context += 1;
            return;
        }
        let g = self.gathering.entry(key).or_insert_with(|| Gathered {
            dest,
            items: Vec::new(),
            count: 0,
            due: now + AGG_HOLD,
        });
        // A member's RESULT makes its BUSY held here moot (it answered a COMMIT with BUSY
        // and finished the commit within the hold): only the outcome goes on.
        let results: Vec<u64> = wire::aggregate_items(items)
            .filter(|&(_, kind, _)| kind == wire::kind::RESULT)
            .map(|(who, _, _)| who)
            .collect();
        if !results.is_empty() {
            let busy = |who: u64, kind: u8, body: &[u8]| {
                kind == wire::kind::RESULT
                    && body.get(4) == Some(&wire::RESULT_BUSY)
                    && results.contains(&who)
            };
            if wire::aggregate_items(&g.items).any(|(w, k, b)| busy(w, k, b)) {
                let mut kept = Vec::with_capacity(g.items.len());
                let mut count = 0;
                for (w, k, b) in wire::aggregate_items(&g.items) {
                    if !busy(w, k, b) {
                        wire::push_aggregate_item(&mut kept, w, k, b);
                        count += 1;
                    }
                }
                g.items = kept;
                g.count = count;
            }
        }
        g.items.extend_from_slice(items);
        g.count += n;
    }

    fn send_gathered(&mut self, key: XferKey) {
        if let Some(g) = self.gathering.remove(&key) {
            self.queue_reply(
                g.dest,
                &Msg::Aggregate {
                    origin: key.origin,
                    xfer: key.xfer,
                    items: &g.items,
                },
            );
        }
    }

    /// Sends on what was gathered long enough.
    pub(super) fn gathering_timers(&mut self, now: Instant) {
        let due: Vec<XferKey> = self
            .gathering
            .iter()
            .filter(|(_, g)| g.due <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            self.send_gathered(k);
        }
    }

    /// When gathered answers are due to be sent on.
    pub(super) fn gathering_timeout(&self) -> Option<Instant> {
        self.gathering.values().map(|g| g.due).min()
    }

    /// An AGGREGATE from `node`: as the sender, the answers of the targets it carries; as a
    /// leader, a member's answer to pass on.
    pub(super) fn on_aggregate(
        &mut self,
        now: Instant,
        from: SocketAddr,
        node: u64,
        origin: u64,
        xfer: u32,
        items: &[u8],
    ) -> bool {
        if origin == self.cfg.node_id {
            match self.outbound.get(&xfer) {
                Some(ob) if ob.is_target(node) => {}
                _ => return false,
            }
            for (who, kind, body) in wire::aggregate_items(items) {
                let mut r = wire::Reader::new(body);
                let Ok(msg) = wire::decode_body(kind, &mut r) else {
                    self.stats.dropped_malformed += 1;
                    continue;
                };
                if !self.outbound.get(&xfer).is_some_and(|ob| ob.is_target(who)) {
                    self.stats.dropped_context += 1;
                    continue;
                }
                match msg {
                    Msg::Report { xfer: x, .. } | Msg::Result { xfer: x, .. } if x == xfer => {
                        self.dispatch(now, from, who, msg);
                    }
                    Msg::Nak {
                        xfer: x,
                        round,
                        flags,
                        seen,
                        entries,
                        ..
                    } if x == xfer && round > 0 && flags & wire::NAK_ECHO == 0 => {
                        // No RTT sample: the leader held it.
                        let (holdoff, settle) = self.repair_timing();
                        if let Some(ob) = self.outbound.get_mut(&xfer) {
                            ob.on_nak(
                                now, who, round, flags, seen, entries, holdoff, settle, &self.cfg,
                            );
                        }
                        self.after_outbound(now, xfer);
                    }
                    _ => self.stats.dropped_context += 1,
                }
            }
            return true;
        }
        // A leader: only a member's own answer, about a push this node receives too.
        let key = XferKey { origin, xfer };
        let sender = match (self.inbound.get(&key), self.records.get(&key)) {
            (Some(ib), _) => ib.sender,
            (None, Some(r)) => r.sender,
            _ => return false,
        };
        if wire::aggregate_items(items).any(|(who, _, _)| who != node) {
            return false;
        }
        let _ = from;
        let dest = self.reply_addr(origin, sender);
        self.gather(now, key, dest, items);
        true
    }
}

/// Placeholder address for a leader that is this node itself (never sent to).
fn a_dummy_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
