//! A virtual multicast LAN for engine tests: N engines, a virtual clock, per-link seeded loss
//! (independent or in bursts), delay with jitter (which reorders), duplication, a sender link
//! rate, and hooks to pause a member. `step` jumps to the earliest arrival or timer; `drive`
//! runs until a condition holds, under a bound of virtual time and steps.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use makuo::proto::storage::MemStorage;
use makuo::proto::{wire, Config, Dest, Engine, Event};

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

/// How links misbehave.
#[derive(Clone, Debug)]
pub struct Faults {
    /// Independent loss probability per datagram per receiving member.
    pub loss: f64,
    /// Burst loss (Gilbert-Elliott): probability to enter a bad state per datagram, and to leave it.
    pub burst: Option<(f64, f64)>,
    /// Duplication probability.
    pub dup: f64,
    /// Base one-way latency.
    pub latency: Duration,
    /// Extra random delay up to this (reorders datagrams).
    pub jitter: Duration,
    /// Each member's egress rate, bytes per second.
    pub link_rate: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            loss: 0.0,
            burst: None,
            dup: 0.0,
            latency: Duration::from_micros(200),
            jitter: Duration::ZERO,
            link_rate: 125e6,
        }
    }
}

impl Faults {
    pub fn lossy(loss: f64) -> Self {
        Self {
            loss,
            dup: if loss > 0.0 { 0.01 } else { 0.0 },
            jitter: if loss > 0.0 {
                Duration::from_micros(300)
            } else {
                Duration::ZERO
            },
            ..Self::default()
        }
    }
}

pub struct Node {
    pub engine: Engine<MemStorage>,
    pub addr: SocketAddr,
    pub paused: bool,
    pub gone: bool,
    pub events: Vec<(Instant, Event)>,
    pub sent_datagrams: u64,
    pub sent_wire_bytes: u64,
    /// Datagrams that arrived while paused, as a socket buffer holds them (bounded).
    backlog: Vec<(SocketAddr, Vec<u8>)>,
    link_free: Instant,
    /// In a loss burst since this time (bursts also end after 5 ms: a buffer overflow
    /// lasts while traffic is heavy, not through quiet periods).
    bad: Option<Instant>,
}

struct Arrival {
    to: usize,
    from: SocketAddr,
    bytes: Vec<u8>,
}

pub struct Lan {
    pub now: Instant,
    pub nodes: Vec<Node>,
    pub faults: Faults,
    rng: Rng,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    arrivals: Vec<Option<Arrival>>,
    free: Vec<usize>,
    seq: u64,
    pub steps: u64,
    /// When set, every datagram any node sends is copied here (for fuzz corpora).
    pub capture: Option<Vec<Vec<u8>>>,
    /// When set, decides per copy `(from, to, bytes)` whether the link drops it (a hook to
    /// lose chosen datagrams).
    #[allow(clippy::type_complexity)]
    pub drop_if: Option<Box<dyn FnMut(usize, usize, &[u8]) -> bool>>,
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
            free: Vec::new(),
            seq: 0,
            steps: 0,
            capture: None,
            drop_if: None,
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
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 1, i as u8 + 1)), 40000);
        self.nodes.push(Node {
            engine: Engine::new(cfg, storage, self.now),
            addr,
            paused: false,
            gone: false,
            events: Vec::new(),
            sent_datagrams: 0,
            sent_wire_bytes: 0,
            backlog: Vec::new(),
            link_free: self.now,
            bad: None,
        });
        i
    }

    pub fn node_id(&self, i: usize) -> u64 {
        self.nodes[i].engine.config().node_id
    }

    fn schedule(&mut self, at: Instant, a: Arrival) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.arrivals[s] = Some(a);
                s
            }
            None => {
                self.arrivals.push(Some(a));
                self.arrivals.len() - 1
            }
        };
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, slot)));
    }

    fn lost(&mut self, to: usize) -> bool {
        if let Some((enter, leave)) = self.faults.burst {
            let now = self.now;
            let n = &mut self.nodes[to];
            if let Some(since) = n.bad {
                if self.rng.chance(leave) || now - since > Duration::from_millis(5) {
                    n.bad = None;
                }
            } else if self.rng.chance(enter) {
                n.bad = Some(now);
            }
            if self.nodes[to].bad.is_some() {
                return true;
            }
        }
        self.rng.chance(self.faults.loss)
    }

    /// Drains every node's output onto the wire.
    fn flush(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused || self.nodes[i].gone {
                continue;
            }
            while let Some(t) = self.nodes[i].engine.poll_transmit(self.now, &mut self.buf) {
                let bytes = self.buf[..t.len].to_vec();
                if let Some(c) = &mut self.capture {
                    if c.len() < 20_000 {
                        c.push(bytes.clone());
                    }
                }
                let n = &mut self.nodes[i];
                n.sent_datagrams += 1;
                n.sent_wire_bytes += t.len as u64 + 42;
                let depart = n.link_free.max(self.now)
                    + Duration::from_secs_f64((t.len + 42) as f64 / self.faults.link_rate);
                n.link_free = depart;
                let from = n.addr;
                let dests: Vec<usize> = match t.dest {
                    Dest::Group => (0..self.nodes.len()).filter(|&j| j != i).collect(),
                    Dest::Unicast(a) => self
                        .nodes
                        .iter()
                        .position(|n| n.addr == a)
                        .into_iter()
                        .collect(),
                };
                for j in dests {
                    if self.drop_if.as_mut().is_some_and(|f| f(i, j, &bytes)) || self.lost(j) {
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
                            Duration::from_nanos(
                                self.rng.below(self.faults.jitter.as_nanos() as u64),
                            )
                        };
                        let at = depart + self.faults.latency + jit;
                        self.schedule(
                            at,
                            Arrival {
                                to: j,
                                from,
                                bytes: bytes.clone(),
                            },
                        );
                    }
                }
            }
            while let Some(e) = self.nodes[i].engine.poll_event() {
                self.nodes[i].events.push((self.now, e));
            }
        }
    }

    /// Advances to the next arrival or timer and processes everything due then.
    pub fn step(&mut self) {
        self.steps += 1;
        self.flush();
        let mut next = self.queue.peek().map(|Reverse((t, _, _))| *t);
        for n in &self.nodes {
            if n.paused || n.gone {
                continue;
            }
            if let Some(t) = n.engine.poll_timeout() {
                next = Some(next.map_or(t, |x: Instant| x.min(t)));
            }
        }
        let Some(t) = next else { return };
        self.now = self.now.max(t);
        while let Some(Reverse((at, _, slot))) = self.queue.peek().copied() {
            if at > self.now {
                break;
            }
            self.queue.pop();
            let a = self.arrivals[slot].take().unwrap();
            self.free.push(slot);
            let n = &mut self.nodes[a.to];
            if n.paused {
                if n.backlog.len() < 4096 {
                    n.backlog.push((a.from, a.bytes));
                }
            } else if !n.gone {
                n.engine.handle_datagram(self.now, a.from, &a.bytes);
            }
        }
        for n in &mut self.nodes {
            if !n.paused && !n.gone && !n.backlog.is_empty() {
                for (from, bytes) in std::mem::take(&mut n.backlog) {
                    n.engine.handle_datagram(self.now, from, &bytes);
                }
            }
        }
        for n in &mut self.nodes {
            if n.paused || n.gone {
                continue;
            }
            if n.engine.poll_timeout().is_some_and(|d| d <= self.now) {
                n.engine.handle_timeout(self.now);
            }
        }
        self.flush();
    }

    /// Steps until `done` holds; panics past `limit` of virtual time or a step bound.
    pub fn drive(&mut self, limit: Duration, mut done: impl FnMut(&Lan) -> bool) {
        let end = self.now + limit;
        let max_steps = self.steps + 5_000_000;
        while !done(self) {
            assert!(self.now <= end, "not done after {limit:?} of virtual time");
            assert!(self.steps < max_steps, "step bound hit");
            self.step();
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            let before = self.now;
            self.step();
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
