//! A virtual multicast LAN for engine tests: N engines, a virtual clock, and links that
//! misbehave the way real ones do. `step` jumps to the earliest arrival or timer; `drive` runs
//! until a condition holds, under a bound of virtual time and steps.
//!
//! The path of one datagram from member `i` to member `j`:
//! 1. **egress** of `i`: a FIFO at `i`'s link rate. Its sender blocks (is not polled) while
//!    more than `tx_queue` bytes wait in it, as a full socket buffer or queueing discipline
//!    makes `send` wait (`net.rs` waits on `EAGAIN`/`ENOBUFS` rather than drop).
//! 2. **the wire**: loss drawn per link (`i` to `j`): independent, plus a Gilbert-Elliott
//!    two-state chain (bursts); duplication; base latency plus random jitter (which reorders).
//! 3. **deafness** of `j` (a schedule: deaf for `on` of every `period`): everything addressed to
//!    it is dropped before its socket, as an nftables drop rule does. Invisible to `j`.
//! 4. **ingress** of `j` (optional): a FIFO draining at `j`'s own rate with a finite queue in
//!    bytes: a slow link (a switch port or `tbf`, drops invisible) or a slow receiver's socket
//!    buffer (drops counted and handed to the engine as `SO_RXQ_OVFL` would report them).
//!
//! Everything is drawn from seeded generators, so runs are deterministic.
//!
//! A step touches only the members something happened to: arrivals and timers sit in
//! queues keyed by time (each member's next timer is re-read from its engine after every
//! call into it), so a step costs what happens in it, not the size of the LAN.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use makuo::proto::storage::MemStorage;
use makuo::proto::{wire, Config, Dest, Engine, Event};

/// Ethernet + IPv4 + UDP bytes per datagram on the wire (preamble and gap not counted).
pub const WIRE_OVERHEAD: usize = 42;

/// SplitMix64: small, seeded, deterministic.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Gilbert-Elliott burst loss: a two-state Markov chain per link that steps once per
/// datagram slot (the time a full datagram takes at the link rate), whether or not a datagram
/// is sent in it, so a burst is a stretch of time: it ends during a quiet period as it would
/// while traffic flows. Mean burst length is `1 / bad_to_good` slots; the fraction of time
/// spent bad is `good_to_bad / (good_to_bad + bad_to_good)`.
#[derive(Clone, Copy, Debug)]
pub struct GilbertElliott {
    /// Probability per datagram of moving from the good to the bad state.
    pub good_to_bad: f64,
    /// Probability per datagram of moving from the bad to the good state.
    pub bad_to_good: f64,
    /// Loss probability in the good state (on top of `Faults::loss`).
    pub loss_good: f64,
    /// Loss probability in the bad state.
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// Bursts entered with probability `enter` per datagram, left with `leave`, losing
    /// everything while they last.
    pub fn bursts(enter: f64, leave: f64) -> Self {
        Self {
            good_to_bad: enter,
            bad_to_good: leave,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }

    /// Long-run fraction of datagrams lost by the chain.
    pub fn mean_loss(&self) -> f64 {
        let bad = self.good_to_bad / (self.good_to_bad + self.bad_to_good);
        bad * self.loss_bad + (1.0 - bad) * self.loss_good
    }
}

/// How links misbehave (the same on every link; see [`Link`] for one member's own).
#[derive(Clone, Debug)]
pub struct Faults {
    /// Independent loss probability per datagram per receiving member.
    pub loss: f64,
    /// Burst loss per link.
    pub burst: Option<GilbertElliott>,
    /// Duplication probability.
    pub dup: f64,
    /// Base one-way latency.
    pub latency: Duration,
    /// Extra random delay up to this (reorders datagrams).
    pub jitter: Duration,
    /// Each member's egress rate, bytes per second (Ethernet/IP/UDP overhead included).
    pub link_rate: f64,
    /// Bytes a member's egress holds before its sends block.
    pub tx_queue: usize,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            loss: 0.0,
            burst: None,
            dup: 0.0,
            latency: Duration::from_micros(50),
            jitter: Duration::ZERO,
            link_rate: 125e6,
            tx_queue: 1 << 20,
        }
    }
}

impl Faults {
    pub fn lossy(loss: f64) -> Self {
        Self {
            loss,
            dup: if loss > 0.0 { 0.01 } else { 0.0 },
            jitter: if loss > 0.0 {
                Duration::from_micros(100)
            } else {
                Duration::ZERO
            },
            ..Self::default()
        }
    }
}

/// Deaf for `on` out of every `period`, starting `phase` into the first period.
#[derive(Clone, Copy, Debug)]
pub struct Deaf {
    pub on: Duration,
    pub period: Duration,
    pub phase: Duration,
}

/// One member's own link properties.
#[derive(Clone, Debug, Default)]
pub struct Link {
    /// Drops everything addressed to the member on this schedule (counted, invisible).
    pub deaf: Option<(Instant, Deaf)>,
    /// Ingress: drain rate in bytes per second (`None`: as fast as it arrives).
    pub rx_rate: Option<f64>,
    /// Ingress queue in bytes; what does not fit is dropped.
    pub rx_queue: usize,
    /// Whether ingress drops are the member's socket buffer overflowing (reported to the
    /// engine, as `SO_RXQ_OVFL`), rather than a switch or shaper dropping (invisible).
    pub rx_visible: bool,
    /// Egress rate override (bytes per second).
    pub tx_rate: Option<f64>,
    /// Drops every datagram sent to the group (a host whose firewall drops the group's
    /// traffic): only unicast, and the unicast copies a sender's driver makes for the members
    /// its engine puts on the unicast path, reach it.
    pub group_deaf: bool,
}

pub struct Node {
    pub engine: Engine<MemStorage>,
    pub addr: SocketAddr,
    pub paused: bool,
    pub gone: bool,
    pub link: Link,
    pub events: Vec<(Instant, Event)>,
    pub sent_datagrams: u64,
    pub sent_wire_bytes: u64,
    /// Datagrams handed to the engine.
    pub recv_datagrams: u64,
    /// Of those, how many of each message kind (header byte 3).
    pub recv_kinds: [u64; 32],
    /// Of the NAKs, how many answered a poll (round > 0) rather than came during the pass.
    pub recv_poll_naks: u64,
    /// Datagrams dropped while deaf.
    pub deaf_dropped: u64,
    /// Datagrams dropped by the ingress queue (visible or not).
    pub queue_dropped: u64,
    /// Overflows reported to the engine.
    pub overflows: u64,
    /// Datagrams that arrived while paused, as a socket buffer holds them (bounded).
    backlog: Vec<(SocketAddr, Rc<[u8]>, bool)>,
    link_free: Instant,
    rx_free: Instant,
    /// When the LAN next wakes this member (its timer, or its egress getting room), as
    /// queued in `Lan::wakes`; older entries there are stale.
    wake: Option<Instant>,
}

impl Node {
    fn deaf_at(&self, t: Instant) -> bool {
        let Some((start, d)) = self.link.deaf else {
            return false;
        };
        if t < start || d.period.is_zero() {
            return false;
        }
        let into = (t - start + d.phase).as_nanos() % d.period.as_nanos();
        into < d.on.as_nanos()
    }
}

enum Due {
    Datagram {
        to: usize,
        from: SocketAddr,
        bytes: Rc<[u8]>,
        /// It came through the group (not a unicast copy).
        group: bool,
    },
    Overflow {
        to: usize,
    },
}

pub struct Lan {
    pub now: Instant,
    pub nodes: Vec<Node>,
    pub faults: Faults,
    rng: Rng,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    arrivals: Vec<Option<Due>>,
    /// Members' wake-ups (see `Node::wake`), earliest first.
    wakes: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Members touched in this step (by index), to poll afterwards.
    dirty: Vec<bool>,
    /// Member index by reply address (unicast delivery).
    by_addr: HashMap<SocketAddr, usize>,
    free: Vec<usize>,
    seq: u64,
    /// Gilbert-Elliott state per link (from, to): bad, and the slot it was last stepped at.
    bad: HashMap<(usize, usize), (bool, Instant)>,
    pub steps: u64,
    /// When set, every datagram any node sends is copied here (for fuzz corpora).
    pub capture: Option<Vec<Vec<u8>>>,
    /// When set, decides per copy `(from, to, bytes)` whether the link drops it (a hook to
    /// lose chosen datagrams).
    #[allow(clippy::type_complexity)]
    pub drop_if: Option<Box<dyn FnMut(usize, usize, &[u8]) -> bool>>,
    /// When set, the first transmission of each payload block that a member did not get is
    /// counted here, per (member, group of 128): the repair the first pass makes necessary.
    pub first_pass_losses: Option<HashMap<(usize, u32), u32>>,
    first_sent: std::collections::HashSet<u32>,
    buf: Vec<u8>,
}

/// Settings tuned for tests: short heartbeats so scenarios take little virtual time.
pub fn test_config(node: u64, name: &str) -> Config {
    Config {
        node_id: node,
        name: name.into(),
        heartbeat: Duration::from_millis(200),
        member_expiry: Duration::from_millis(1500),
        member_timeout: Duration::from_millis(1500),
        transfer_timeout: Duration::from_secs(5),
        seed: node.wrapping_mul(7919),
        ..Config::default()
    }
}

impl Lan {
    pub fn new(seed: u64, faults: Faults) -> Self {
        Self {
            now: Instant::now(),
            nodes: Vec::new(),
            faults,
            rng: Rng(seed),
            queue: BinaryHeap::new(),
            arrivals: Vec::new(),
            wakes: BinaryHeap::new(),
            dirty: Vec::new(),
            by_addr: HashMap::new(),
            free: Vec::new(),
            seq: 0,
            bad: HashMap::new(),
            steps: 0,
            capture: None,
            drop_if: None,
            first_pass_losses: None,
            first_sent: std::collections::HashSet::new(),
            buf: vec![0u8; wire::MAX_DATAGRAM],
        }
    }

    /// Adds a member with its own storage; returns its index.
    pub fn add(&mut self, name: &str, storage: MemStorage) -> usize {
        self.add_with(test_config(self.nodes.len() as u64 + 0x1000, name), storage)
    }

    pub fn add_with(&mut self, mut cfg: Config, storage: MemStorage) -> usize {
        let i = self.nodes.len();
        cfg.node_id = 0x1000 + i as u64 * 0x10001;
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, (i >> 8) as u8 + 1, i as u8 + 1)),
            40000,
        );
        self.nodes.push(Node {
            engine: Engine::new(cfg, storage, self.now),
            addr,
            paused: false,
            gone: false,
            link: Link::default(),
            events: Vec::new(),
            sent_datagrams: 0,
            sent_wire_bytes: 0,
            recv_datagrams: 0,
            recv_kinds: [0; 32],
            recv_poll_naks: 0,
            deaf_dropped: 0,
            queue_dropped: 0,
            overflows: 0,
            backlog: Vec::new(),
            link_free: self.now,
            rx_free: self.now,
            wake: None,
        });
        self.dirty.push(false);
        self.by_addr.insert(addr, i);
        i
    }

    pub fn node_id(&self, i: usize) -> u64 {
        self.nodes[i].engine.config().node_id
    }

    /// Makes member `i` deaf for `on` of every `period`, from now on, starting `phase` into
    /// the first period.
    pub fn set_deaf(&mut self, i: usize, on: Duration, period: Duration, phase: Duration) {
        self.nodes[i].link.deaf = Some((self.now, Deaf { on, period, phase }));
    }

    /// Shapes member `i`'s ingress: it drains at `rate` bytes per second and holds `queue`
    /// bytes; `visible`: drops are its socket buffer overflowing (reported to its engine).
    pub fn set_ingress(&mut self, i: usize, rate: f64, queue: usize, visible: bool) {
        let l = &mut self.nodes[i].link;
        l.rx_rate = Some(rate);
        l.rx_queue = queue;
        l.rx_visible = visible;
    }

    fn schedule(&mut self, at: Instant, d: Due) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.arrivals[s] = Some(d);
                s
            }
            None => {
                self.arrivals.push(Some(d));
                self.arrivals.len() - 1
            }
        };
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, slot)));
    }

    /// Whether the datagram leaving `from` at `at` is lost on its way to `to`.
    fn lost(&mut self, from: usize, to: usize, at: Instant) -> bool {
        if let Some(ge) = self.faults.burst {
            let slot = 1500.0 / self.faults.link_rate;
            let (bad, last) = self.bad.entry((from, to)).or_insert((false, at));
            // The chain after n steps: P(bad) = pi + (x0 - pi) (1 - a - b)^n.
            let n = (at.saturating_duration_since(*last).as_secs_f64() / slot).max(1.0);
            let pi = ge.good_to_bad / (ge.good_to_bad + ge.bad_to_good);
            let x0 = if *bad { 1.0 } else { 0.0 };
            let p_bad = pi + (x0 - pi) * (1.0 - ge.good_to_bad - ge.bad_to_good).powf(n);
            *last = at.max(*last);
            *bad = self.rng.chance(p_bad);
            let p = if *bad { ge.loss_bad } else { ge.loss_good };
            if self.rng.chance(p) {
                return true;
            }
        }
        self.rng.chance(self.faults.loss)
    }

    fn tx_rate(&self, i: usize) -> f64 {
        self.nodes[i].link.tx_rate.unwrap_or(self.faults.link_rate)
    }

    /// When member `i`'s egress has room again (`None`: it has room now): when no more than
    /// `tx_queue` bytes are left in it.
    fn tx_room_at(&self, i: usize) -> Option<Instant> {
        let hold = Duration::from_secs_f64(self.faults.tx_queue as f64 / self.tx_rate(i));
        let at = self.nodes[i].link_free.checked_sub(hold)?;
        (at > self.now).then_some(at)
    }

    /// Counts a lost first transmission of a payload block (see `first_pass_losses`).
    fn trace_loss(&mut self, j: usize, first: Option<u32>) {
        if let (Some(t), Some(idx)) = (&mut self.first_pass_losses, first) {
            *t.entry((j, idx / 128)).or_insert(0) += 1;
        }
    }

    /// Puts one copy of a datagram on `j`'s ingress, arriving at `at`; `first`: the payload
    /// block index if this is its first transmission.
    fn deliver(
        &mut self,
        j: usize,
        at: Instant,
        from: SocketAddr,
        bytes: Rc<[u8]>,
        first: Option<u32>,
        group: bool,
    ) {
        if self.nodes[j].deaf_at(at) || (group && self.nodes[j].link.group_deaf) {
            self.nodes[j].deaf_dropped += 1;
            self.trace_loss(j, first);
            return;
        }
        let mut at = at;
        if let Some(rate) = self.nodes[j].link.rx_rate {
            let n = &mut self.nodes[j];
            let size = (bytes.len() + WIRE_OVERHEAD) as f64;
            let backlog = n.rx_free.saturating_duration_since(at).as_secs_f64() * rate;
            if backlog + size > n.link.rx_queue as f64 {
                n.queue_dropped += 1;
                if n.link.rx_visible {
                    self.schedule(at, Due::Overflow { to: j });
                }
                self.trace_loss(j, first);
                return;
            }
            n.rx_free = n.rx_free.max(at) + Duration::from_secs_f64(size / rate);
            at = n.rx_free;
        }
        self.schedule(
            at,
            Due::Datagram {
                to: j,
                from,
                bytes,
                group,
            },
        );
    }

    /// Drains every node's output onto the wire (as far as each one's egress takes it) and
    /// re-reads every node's timer: after anything the LAN cannot see (a test's call into an
    /// engine, a pause lifted).
    fn resync(&mut self) {
        for i in 0..self.nodes.len() {
            let n = &mut self.nodes[i];
            if !n.paused && !n.gone && !n.backlog.is_empty() {
                for (from, bytes, group) in std::mem::take(&mut n.backlog) {
                    n.recv_datagrams += 1;
                    n.recv_kinds[usize::from(bytes.get(3).copied().unwrap_or(0) & 31)] += 1;
                    n.engine
                        .handle_datagram_via(self.now, self.now, from, group, &bytes);
                }
            }
            self.flush_one(i);
        }
    }

    /// Drains node `i`'s output onto the wire (as far as its egress takes it), collects its
    /// events, and queues when it wants to be woken next.
    fn flush_one(&mut self, i: usize) {
        if self.nodes[i].paused || self.nodes[i].gone {
            self.nodes[i].wake = None;
            return;
        }
        while self.tx_room_at(i).is_none() {
            let Some(t) = self.nodes[i].engine.poll_transmit(self.now, &mut self.buf) else {
                break;
            };
            let bytes: Rc<[u8]> = Rc::from(&self.buf[..t.len]);
            if let Some(c) = &mut self.capture {
                if c.len() < 20_000 {
                    c.push(bytes.to_vec());
                }
            }
            let rate = self.tx_rate(i);
            let n = &mut self.nodes[i];
            n.sent_datagrams += 1;
            n.sent_wire_bytes += (t.len + WIRE_OVERHEAD) as u64;
            let depart = n.link_free.max(self.now)
                + Duration::from_secs_f64((t.len + WIRE_OVERHEAD) as f64 / rate);
            n.link_free = depart;
            let from = n.addr;
            let first = match (&self.first_pass_losses, wire::decode(&bytes)) {
                (
                    Some(_),
                    Ok((
                        _,
                        wire::Msg::Block {
                            stream: wire::Stream::Payload,
                            idx,
                            ..
                        },
                    )),
                ) => self.first_sent.insert(idx).then_some(idx),
                _ => None,
            };
            let (lo, hi, group) = match t.dest {
                Dest::Group => (0, self.nodes.len(), true),
                Dest::Unicast(a) => match self.by_addr.get(&a) {
                    Some(&j) => (j, j + 1, false),
                    None => (0, 0, false),
                },
            };
            // As the driver does: a group datagram also goes by unicast to the members the
            // engine puts on the unicast path.
            let copies_to: Vec<usize> = if group {
                self.nodes[i]
                    .engine
                    .unicast_paths(self.now)
                    .iter()
                    .filter_map(|a| self.by_addr.get(a).copied())
                    .collect()
            } else {
                Vec::new()
            };
            let dests = (lo..hi)
                .map(|j| (j, group))
                .chain(copies_to.into_iter().map(|j| (j, false)));
            for (j, group) in dests {
                if j == i && group {
                    continue;
                }
                if self.drop_if.as_mut().is_some_and(|f| f(i, j, &bytes)) || self.lost(i, j, depart)
                {
                    self.trace_loss(j, first);
                    continue;
                }
                let copies = if self.rng.chance(self.faults.dup) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let jit = if self.faults.jitter.is_zero() {
                        Duration::ZERO
                    } else {
                        Duration::from_nanos(self.rng.below(self.faults.jitter.as_nanos() as u64))
                    };
                    let at = depart + self.faults.latency + jit;
                    self.deliver(j, at, from, bytes.clone(), first, group);
                }
            }
        }
        while let Some(e) = self.nodes[i].engine.poll_event() {
            self.nodes[i].events.push((self.now, e));
        }
        let wake = self.wake_of(i);
        if wake != self.nodes[i].wake {
            self.nodes[i].wake = wake;
            if let Some(t) = wake {
                self.wakes.push(Reverse((t, i)));
            }
        }
    }

    /// When node `i` next has something to do: its timer, or its egress getting room while
    /// it has output (a sender blocked on its egress waits for room, whatever its pacing
    /// says).
    fn wake_of(&self, i: usize) -> Option<Instant> {
        let n = &self.nodes[i];
        let room = self.tx_room_at(i);
        let mut next = n.engine.poll_timeout().map(|t| match room {
            Some(r) if t <= self.now => r,
            _ => t,
        });
        if let Some(r) = room {
            if n.engine.wants_transmit() {
                next = Some(next.map_or(r, |x| x.min(r)));
            }
        }
        next
    }

    /// The earliest moment something happens: an arrival, or a node's wake-up.
    fn next_event(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, i))) = self.wakes.peek() {
            if self.nodes[i].wake == Some(t) {
                break;
            }
            self.wakes.pop();
        }
        let a = self.queue.peek().map(|Reverse((t, _, _))| *t);
        let w = self.wakes.peek().map(|Reverse((t, _))| *t);
        match (a, w) {
            (Some(a), Some(w)) => Some(a.min(w)),
            (a, w) => a.or(w),
        }
    }

    /// Advances to the next arrival or timer and processes everything due then.
    fn step_inner(&mut self) {
        self.steps += 1;
        let Some(t) = self.next_event() else { return };
        self.now = self.now.max(t);
        while let Some(Reverse((at, _, slot))) = self.queue.peek().copied() {
            if at > self.now {
                break;
            }
            self.queue.pop();
            let due = self.arrivals[slot].take().unwrap();
            self.free.push(slot);
            match due {
                Due::Datagram {
                    to,
                    from,
                    bytes,
                    group,
                } => {
                    self.dirty[to] = true;
                    let n = &mut self.nodes[to];
                    if n.paused {
                        if n.backlog.len() < 4096 {
                            n.backlog.push((from, bytes, group));
                        }
                    } else if !n.gone {
                        n.recv_datagrams += 1;
                        n.recv_kinds[usize::from(bytes.get(3).copied().unwrap_or(0) & 31)] += 1;
                        if bytes.get(3) == Some(&10)
                            && bytes.get(28..32).is_some_and(|r| r != [0; 4])
                        {
                            n.recv_poll_naks += 1;
                        }
                        n.engine
                            .handle_datagram_via(self.now, self.now, from, group, &bytes);
                    }
                }
                Due::Overflow { to } => {
                    self.dirty[to] = true;
                    let n = &mut self.nodes[to];
                    n.overflows += 1;
                    if !n.gone {
                        n.engine.handle_rx_overflow(self.now, 1);
                    }
                }
            }
        }
        while let Some(&Reverse((t, i))) = self.wakes.peek() {
            if t > self.now {
                break;
            }
            self.wakes.pop();
            if self.nodes[i].wake == Some(t) {
                self.nodes[i].wake = None;
                self.dirty[i] = true;
            }
        }
        for i in 0..self.nodes.len() {
            if !std::mem::take(&mut self.dirty[i]) {
                continue;
            }
            let n = &mut self.nodes[i];
            if !n.paused && !n.gone && n.engine.poll_timeout().is_some_and(|d| d <= self.now) {
                n.engine.handle_timeout(self.now);
            }
            self.flush_one(i);
        }
    }

    /// Steps until `done` holds; panics past `limit` of virtual time or a step bound.
    pub fn drive(&mut self, limit: Duration, mut done: impl FnMut(&Lan) -> bool) {
        let end = self.now + limit;
        let max_steps = self.steps + 5_000_000;
        self.resync();
        while !done(self) {
            assert!(self.now <= end, "not done after {limit:?} of virtual time");
            assert!(self.steps < max_steps, "step bound hit");
            self.step_inner();
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.resync();
        while self.now < end {
            let before = self.now;
            self.step_inner();
            if self.now == before && self.queue.is_empty() {
                break;
            }
        }
    }

    /// Hands `bytes` to node `to` now, as if they came from `from` (a forger on the wire).
    pub fn inject(&mut self, to: usize, from: SocketAddr, bytes: &[u8]) {
        self.nodes[to].engine.handle_datagram(self.now, from, bytes);
    }

    /// Drains node `i`'s output without delivering it (what a test inspects).
    pub fn take_output(&mut self, i: usize) -> Vec<(Dest, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(t) = self.nodes[i].engine.poll_transmit(self.now, &mut self.buf) {
            out.push((t.dest, self.buf[..t.len].to_vec()));
        }
        out
    }

    /// Repair the first pass made necessary, in blocks: per group, the most any member lost
    /// of it (parity can serve every member's losses at once, so no less will do).
    pub fn first_pass_repair(&self) -> u64 {
        let mut worst: HashMap<u32, u32> = HashMap::new();
        for (&(_, g), &n) in self.first_pass_losses.iter().flatten() {
            let w = worst.entry(g).or_insert(0);
            *w = (*w).max(n);
        }
        worst.values().map(|&n| u64::from(n)).sum()
    }

    /// Members (other than itself) node `i` knows.
    pub fn known(&self, i: usize) -> usize {
        self.nodes[i].engine.members().count()
    }

    /// Pushes the sender's whole tree to the given nodes; returns the transfer id.
    pub fn push(
        &mut self,
        from: usize,
        to: &[usize],
        manifest: makuo::proto::manifest::Manifest,
    ) -> u32 {
        let targets = to.iter().map(|&j| self.node_id(j)).collect();
        let req = makuo::proto::PushRequest {
            manifest,
            targets,
            max_delete: None,
            atomic: false,
        };
        self.nodes[from]
            .engine
            .handle_command(self.now, makuo::proto::Command::Push(req))
            .expect("push accepted")
    }

    /// The report of a finished push, if any.
    pub fn report(&self, from: usize, xfer: u32) -> Option<(Instant, makuo::proto::PushReport)> {
        self.nodes[from].events.iter().find_map(|(t, e)| match e {
            Event::PushDone(r) if r.xfer == xfer => Some((*t, r.clone())),
            _ => None,
        })
    }
}
