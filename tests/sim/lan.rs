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
//! call into it), so a step costs what happens in it, not the size of the LAN. The copies of
//! one datagram that arrive at the same moment are one entry of the arrival queue. Within a
//! step the members' engines are independent (nothing one sends arrives before a later
//! step), so when many members have something to do they run on several threads; what they
//! sent then goes onto the wire member by member, in index order, drawing from the one
//! seeded generator in the same order as one thread would: runs stay deterministic.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use makuo::proto::storage::MemStorage;
use makuo::proto::wire::Header;
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
    /// When set, every datagram handed to the engine is copied here (to break down what a
    /// member heard).
    pub heard: Option<Vec<(Instant, Arc<[u8]>)>>,
    /// Datagrams dropped while deaf.
    pub deaf_dropped: u64,
    /// Datagrams dropped by the ingress queue (visible or not).
    pub queue_dropped: u64,
    /// Overflows reported to the engine.
    pub overflows: u64,
    /// Datagrams that arrived while paused, as a socket buffer holds them (bounded).
    backlog: Vec<(SocketAddr, Arc<[u8]>, bool)>,
    link_free: Instant,
    rx_free: Instant,
    /// When the LAN next wakes this member (its timer, or its egress getting room), as
    /// queued in `Lan::wakes`; older entries there are stale.
    wake: Option<Instant>,
    /// Something happened to it in this step (it is run, then its output goes out).
    dirty: bool,
    /// What arrived for it in this step, in order.
    inbox: Vec<Arrival>,
    /// What it sent in this step, in order, not yet on the wire past its egress.
    outbox: Vec<Sent>,
    /// Scratch for `poll_transmit` (sized on first use).
    buf: Vec<u8>,
}

/// One arrival at a member, handed to its engine in its step.
enum Arrival {
    Datagram {
        from: SocketAddr,
        bytes: Arc<[u8]>,
        /// It came through the group (not a unicast copy).
        group: bool,
    },
    Overflow,
}

/// One datagram a member sent, as it leaves its egress.
struct Sent {
    bytes: Arc<[u8]>,
    dest: Dest,
    depart: Instant,
    /// For a group datagram: the members its engine had on the unicast path as it sent it.
    copies_to: Vec<SocketAddr>,
}

impl Node {
    fn tx_rate(&self, faults: &Faults) -> f64 {
        self.link.tx_rate.unwrap_or(faults.link_rate)
    }

    /// When the egress has room again (`None`: it has room now): when no more than
    /// `tx_queue` bytes are left in it.
    fn tx_room_at(&self, now: Instant, faults: &Faults) -> Option<Instant> {
        let hold = Duration::from_secs_f64(faults.tx_queue as f64 / self.tx_rate(faults));
        let at = self.link_free.checked_sub(hold)?;
        (at > now).then_some(at)
    }

    /// The member's part of a step: hands it what arrived, fires its timer if due, and
    /// drains its output into `outbox` (as far as its egress takes it).
    fn run(&mut self, now: Instant, faults: &Faults) {
        let mut inbox = std::mem::take(&mut self.inbox);
        for a in inbox.drain(..) {
            match a {
                Arrival::Datagram { from, bytes, group } => {
                    if self.paused {
                        if self.backlog.len() < 4096 {
                            self.backlog.push((from, bytes, group));
                        }
                    } else if !self.gone {
                        self.recv_datagrams += 1;
                        self.recv_kinds[usize::from(bytes.get(3).copied().unwrap_or(0) & 31)] += 1;
                        if bytes.get(3) == Some(&10)
                            && bytes.get(28..32).is_some_and(|r| r != [0; 4])
                        {
                            self.recv_poll_naks += 1;
                        }
                        if let Some(h) = &mut self.heard {
                            h.push((now, bytes.clone()));
                        }
                        self.engine
                            .handle_datagram_via(now, now, from, group, &bytes);
                    }
                }
                Arrival::Overflow => {
                    self.overflows += 1;
                    if !self.gone {
                        self.engine.handle_rx_overflow(now, 1);
                    }
                }
            }
        }
        self.inbox = inbox;
        if !self.paused && !self.gone && self.engine.poll_timeout().is_some_and(|d| d <= now) {
            self.engine.handle_timeout(now);
        }
        self.drain(now, faults);
    }

    /// Drains the engine's output into `outbox` (as far as the egress takes it) and collects
    /// its events.
    fn drain(&mut self, now: Instant, faults: &Faults) {
        if self.paused || self.gone {
            return;
        }
        if self.buf.is_empty() {
            self.buf = vec![0u8; wire::MAX_DATAGRAM];
        }
        while self.tx_room_at(now, faults).is_none() {
            let Some(t) = self.engine.poll_transmit(now, &mut self.buf) else {
                break;
            };
            let bytes: Arc<[u8]> = Arc::from(&self.buf[..t.len]);
            let rate = self.tx_rate(faults);
            self.sent_datagrams += 1;
            self.sent_wire_bytes += (t.len + WIRE_OVERHEAD) as u64;
            let depart = self.link_free.max(now)
                + Duration::from_secs_f64((t.len + WIRE_OVERHEAD) as f64 / rate);
            self.link_free = depart;
            // As the driver does: a group datagram also goes by unicast to the members the
            // engine puts on the unicast path.
            let copies_to = match t.dest {
                Dest::Group => self.engine.unicast_paths(now),
                Dest::Unicast(_) => Vec::new(),
            };
            self.outbox.push(Sent {
                bytes,
                dest: t.dest,
                depart,
                copies_to,
            });
        }
        while let Some(e) = self.engine.poll_event() {
            self.events.push((now, e));
        }
    }

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
    /// Copies of one datagram arriving at the same moment: the members they reach, and
    /// whether each came through the group (not a unicast copy).
    Datagram {
        to: Vec<(usize, bool)>,
        from: SocketAddr,
        bytes: Arc<[u8]>,
    },
    Overflow {
        to: usize,
    },
}

/// Dirty members from which a step may run them on several threads.
const PARALLEL_FROM: usize = 16;

/// Whether steps may run members on several threads (`MAKUO_SIM_THREADS=1`: never).
fn parallel_allowed() -> bool {
    static P: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *P.get_or_init(|| {
        std::env::var("MAKUO_SIM_THREADS").map_or(true, |v| v != "1")
            && rayon::current_num_threads() > 1
    })
}

/// Chooses between running a big step's members on one thread or several by which has
/// been faster per member lately (real time, measured): on a machine whose other CPUs are
/// busy, waiting for a second thread at every step costs more than it saves. Only speed
/// depends on it, never what the simulation does.
#[derive(Default)]
struct Threads {
    /// Big steps so far.
    steps: u64,
    /// Recent real time per member run, in nanoseconds: on one thread, on several.
    one: Option<f64>,
    many: Option<f64>,
}

impl Threads {
    /// Whether the next big step runs on several threads: mostly the faster way, now and
    /// then the other to see whether it still is slower.
    fn pick(&mut self) -> bool {
        self.steps += 1;
        let probe = self.steps % 64 < 4;
        match (self.one, self.many) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(one), Some(many)) => (many < one) != probe,
        }
    }

    fn record(&mut self, many: bool, per_member: f64) {
        let slot = if many { &mut self.many } else { &mut self.one };
        *slot = Some(slot.map_or(per_member, |x| 0.75 * x + 0.25 * per_member));
    }
}

/// Copies of one datagram arriving at one moment, being gathered into one queue entry.
#[derive(Default)]
struct Batch {
    at: Option<Instant>,
    /// Its place among the arrivals at `at` (its first copy's).
    seq: u64,
    to: Vec<(usize, bool)>,
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
    /// Member index by reply address (unicast delivery).
    by_addr: HashMap<SocketAddr, usize>,
    free: Vec<usize>,
    seq: u64,
    /// Gilbert-Elliott state per link (from, to): bad, and the slot it was last stepped at.
    bad: HashMap<(usize, usize), (bool, Instant)>,
    pub steps: u64,
    /// The members marked `dirty` in this step, in the order they were marked.
    touched: Vec<usize>,
    threads: Threads,
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
            by_addr: HashMap::new(),
            free: Vec::new(),
            seq: 0,
            bad: HashMap::new(),
            steps: 0,
            capture: None,
            drop_if: None,
            first_pass_losses: None,
            first_sent: std::collections::HashSet::new(),
            threads: Threads::default(),
            touched: Vec::new(),
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
            heard: None,
            deaf_dropped: 0,
            queue_dropped: 0,
            overflows: 0,
            backlog: Vec::new(),
            link_free: self.now,
            rx_free: self.now,
            wake: None,
            dirty: false,
            inbox: Vec::new(),
            outbox: Vec::new(),
            buf: Vec::new(),
        });
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
        self.seq += 1;
        self.schedule_as(at, self.seq, d);
    }

    /// Queues `d` at `at` in the place of sequence number `seq` among arrivals at `at`.
    fn schedule_as(&mut self, at: Instant, seq: u64, d: Due) {
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
        self.queue.push(Reverse((at, seq, slot)));
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

    /// Counts a lost first transmission of a payload block (see `first_pass_losses`).
    fn trace_loss(&mut self, j: usize, first: Option<u32>) {
        if let (Some(t), Some(idx)) = (&mut self.first_pass_losses, first) {
            *t.entry((j, idx / 128)).or_insert(0) += 1;
        }
    }

    /// Puts one copy of a datagram on `j`'s ingress, arriving at `at`; `first`: the payload
    /// block index if this is its first transmission. A copy that arrives at `at` joins
    /// `batch` (the copies arriving at one moment, queued as one entry) when it holds copies
    /// arriving then; otherwise `batch` is queued and a new one started.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        j: usize,
        at: Instant,
        from: SocketAddr,
        bytes: &Arc<[u8]>,
        first: Option<u32>,
        group: bool,
        batch: &mut Batch,
    ) {
        if self.nodes[j].deaf_at(at) || (group && self.nodes[j].link.group_deaf) {
            self.nodes[j].deaf_dropped += 1;
            self.trace_loss(j, first);
            return;
        }
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
            let at = n.rx_free;
            // Queued alone: a shaped ingress delays each copy by its own amount.
            self.schedule(
                at,
                Due::Datagram {
                    to: vec![(j, group)],
                    from,
                    bytes: bytes.clone(),
                },
            );
            return;
        }
        if batch.at != Some(at) {
            self.flush_batch(from, bytes, batch);
            self.seq += 1;
            *batch = Batch {
                at: Some(at),
                seq: self.seq,
                to: Vec::new(),
            };
        }
        batch.to.push((j, group));
    }

    /// Queues the copies gathered in `batch` (in the place of its first copy).
    fn flush_batch(&mut self, from: SocketAddr, bytes: &Arc<[u8]>, batch: &mut Batch) {
        if let Some(at) = batch.at.take() {
            let to = std::mem::take(&mut batch.to);
            let d = Due::Datagram {
                to,
                from,
                bytes: bytes.clone(),
            };
            self.schedule_as(at, batch.seq, d);
        }
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
        self.nodes[i].drain(self.now, &self.faults);
        self.send_out(i);
    }

    /// Puts what node `i` sent in this step on the wire, and queues when it wants to be
    /// woken next.
    fn send_out(&mut self, i: usize) {
        if self.nodes[i].paused || self.nodes[i].gone {
            self.nodes[i].wake = None;
            return;
        }
        let mut outbox = std::mem::take(&mut self.nodes[i].outbox);
        for sent in outbox.drain(..) {
            self.fan_out(i, sent);
        }
        self.nodes[i].outbox = outbox;
        let wake = self.wake_of(i);
        if wake != self.nodes[i].wake {
            self.nodes[i].wake = wake;
            if let Some(t) = wake {
                self.wakes.push(Reverse((t, i)));
            }
        }
    }

    /// Carries one datagram node `i` sent to every member it reaches.
    fn fan_out(&mut self, i: usize, sent: Sent) {
        let Sent {
            bytes,
            dest,
            depart,
            copies_to,
        } = sent;
        if let Some(c) = &mut self.capture {
            if c.len() < 20_000 {
                c.push(bytes.to_vec());
            }
        }
        let from = self.nodes[i].addr;
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
        let (lo, hi, group) = match dest {
            Dest::Group => (0, self.nodes.len(), true),
            Dest::Unicast(a) => match self.by_addr.get(&a) {
                Some(&j) => (j, j + 1, false),
                None => (0, 0, false),
            },
        };
        let copies_to: Vec<usize> = copies_to
            .iter()
            .filter_map(|a| self.by_addr.get(a).copied())
            .collect();
        let dests = (lo..hi)
            .map(|j| (j, group))
            .chain(copies_to.into_iter().map(|j| (j, false)));
        let mut batch = Batch::default();
        for (j, group) in dests {
            if j == i && group {
                continue;
            }
            if self.drop_if.as_mut().is_some_and(|f| f(i, j, &bytes)) || self.lost(i, j, depart) {
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
                self.deliver(j, at, from, &bytes, first, group, &mut batch);
            }
        }
        self.flush_batch(from, &bytes, &mut batch);
    }

    /// When node `i` next has something to do: its timer, or its egress getting room while
    /// it has output (a sender blocked on its egress waits for room, whatever its pacing
    /// says).
    fn wake_of(&self, i: usize) -> Option<Instant> {
        let n = &self.nodes[i];
        let room = n.tx_room_at(self.now, &self.faults);
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
                Due::Datagram { to, from, bytes } => {
                    for (j, group) in to {
                        let n = &mut self.nodes[j];
                        if !std::mem::replace(&mut n.dirty, true) {
                            self.touched.push(j);
                        }
                        n.inbox.push(Arrival::Datagram {
                            from,
                            bytes: bytes.clone(),
                            group,
                        });
                    }
                }
                Due::Overflow { to } => {
                    let n = &mut self.nodes[to];
                    if !std::mem::replace(&mut n.dirty, true) {
                        self.touched.push(to);
                    }
                    n.inbox.push(Arrival::Overflow);
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
                if !std::mem::replace(&mut self.nodes[i].dirty, true) {
                    self.touched.push(i);
                }
            }
        }
        let mut dirty = std::mem::take(&mut self.touched);
        dirty.sort_unstable();
        let (now, faults) = (self.now, &self.faults);
        if dirty.len() >= PARALLEL_FROM && parallel_allowed() {
            let many = self.threads.pick();
            let started = Instant::now();
            if many {
                self.nodes
                    .par_iter_mut()
                    .filter(|n| n.dirty)
                    .for_each(|n| n.run(now, faults));
            } else {
                for &i in &dirty {
                    self.nodes[i].run(now, faults);
                }
            }
            let per_member = started.elapsed().as_nanos() as f64 / dirty.len() as f64;
            self.threads.record(many, per_member);
        } else {
            for &i in &dirty {
                self.nodes[i].run(now, faults);
            }
        }
        for &i in &dirty {
            self.nodes[i].dirty = false;
            self.send_out(i);
        }
        dirty.clear();
        self.touched = dirty;
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

/// The header node `node` would put on its `seq`-th datagram (cluster 0, unsealed): for the
/// datagrams the sim and the fuzzer craft as a member would.
pub fn header(node: u64, seq: u64) -> Header {
    Header {
        version: wire::VERSION,
        kind: 0,
        flags: 0,
        key_id: 0,
        cluster: 0,
        node,
        seq,
    }
}
