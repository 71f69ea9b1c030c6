//! The driver: joins the sans-IO engine to real sockets, keys, the clock and the file system.
//!
//! One [`Node`] owns an `Engine<FsStorage>`, the UDP sockets ([`crate::net`]) and, with a
//! cluster key, a [`Sealer`]. [`Node::turn`] does one bounded round of work: wait for input
//! until the engine's next deadline (or a cap), open and feed datagrams, fire timers, then
//! drain the engine's output in batches (sealed, sent with GSO/sendmmsg) and return its
//! events. Both the daemon and the front end's direct mode run this loop.
//!
//! With a key, the sealer verifies each sender with a challenge before its datagrams reach
//! the engine (see `seal/handshake.rs`): its handshake datagrams go out first at every flush, and each
//! sender it verifies is reported to the engine ([`Engine::handle_peer_verified`]). Refusals
//! that an operator must hear about (a node sealing in another format: an older or newer
//! makuo) become [`Node::take_notices`] lines, at most one a minute per address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::apply::{ApplyOptions, FsStorage};
use crate::net::{self, Net, NetConfig, RecvBatch};
use crate::proto::{self, wire, Engine, Event};
use crate::seal::{Key, Opened, SealError, SealStats, Sealer};

mod select;
pub use select::{
    build_manifest, foreign_line, member_line, resolve_targets, selection_of, Select, Selection,
};

/// The host name: a daemon's default member name, and the start of a direct-mode front
/// end's.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "makuo".into())
}

/// Everything needed to start a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Multicast group (IPv4 or IPv6).
    pub group: IpAddr,
    /// UDP port.
    pub port: u16,
    /// Multicast interface: a name or an address (`None`: the routing table picks).
    pub interface: Option<String>,
    /// Multicast hop limit (IPv4 TTL / IPv6 hops).
    pub ttl: u32,
    /// Address the group socket binds (default: the group).
    pub listen: Option<IpAddr>,
    /// Members reached by unicast (`--peer`): when not empty, what the engine sends to the
    /// group goes as unicast copies to these and to every member the engine knows instead.
    pub peers: Vec<SocketAddr>,
    /// Port of the reply socket (0: ephemeral).
    pub reply_port: u16,
    /// Socket buffer sizes (0: default).
    pub rcvbuf: usize,
    /// Socket buffer sizes (0: default).
    pub sndbuf: usize,
    /// Engine settings (node id, name, timers, rate...).
    pub engine: proto::Config,
    /// Cluster keys: the first seals, all open. Empty: unauthenticated.
    pub keys: Vec<Key>,
    /// Base directory.
    pub base: PathBuf,
    /// File application options.
    pub apply: ApplyOptions,
}

/// A random 64-bit node id (fresh per process, so a restart is visible and nonces stay
/// unique per key).
pub fn random_node_id() -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).expect("the OS random source works");
    u64::from_le_bytes(b) | 1
}

/// The wall clock in Unix milliseconds (for sealed timestamps only).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Cluster id derived from group and port, so two clusters sharing a wire drop each
/// other's datagrams early.
pub fn cluster_id(group: IpAddr, port: u16) -> u16 {
    let o = match group {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut h: u32 = 2166136261;
    for b in o.iter().chain(port.to_be_bytes().iter()) {
        h = (h ^ *b as u32).wrapping_mul(16777619);
    }
    (h ^ (h >> 16)) as u16
}

/// One member process's engine, sockets and keys.
pub struct Node {
    /// The protocol engine (public so drivers can issue commands and read state).
    pub engine: Engine<FsStorage>,
    net: Net,
    sealer: Option<Sealer>,
    batch: RecvBatch,
    bufs: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    /// Datagrams refused by the sealing layer (bad tag, replay, unsealed...).
    pub seal_refused: u64,
    notices: Vec<String>,
    noticed: HashMap<SocketAddr, Instant>,
    /// Per source, datagrams this node's key could not open (or, unkeyed, sealed ones): a
    /// key mismatch, named when no member answers ([`Node::unopened_note`]).
    unopened: HashMap<IpAddr, u64>,
    last_expire: Instant,
    /// Whether inbound transfers were in progress at the end of the last turn.
    receiving: bool,
    /// The daemon's hooks, run off this loop (`hook.rs`).
    hooks: Option<crate::hook::Hooks>,
    /// `--peer` addresses (own address removed).
    peers: Vec<SocketAddr>,
    /// `--peer` was given: nothing goes to the multicast group; see [`fan_out`].
    unicast_only: bool,
    /// With `--peer` and a key: addresses that recently sent us an authenticated datagram or
    /// handshake (a new front end, before it is a member), so our answers reach them.
    recent: HashMap<SocketAddr, Instant>,
    /// `--relay`: the plan last computed for these unicast destinations, and when.
    relay_plan: Option<(Instant, u64, Vec<SocketAddr>, proto::relay::Plan)>,
    /// Datagrams forwarded as a relay (copies sent).
    pub relayed: u64,
}

/// Most addresses whose last notice time is kept.
const MAX_NOTICED: usize = 256;
/// One notice per address at most this often.
const NOTICE_EVERY: Duration = Duration::from_secs(60);

const BATCH: usize = 128;

impl Node {
    /// Opens the sockets and starts the engine.
    pub fn new(mut cfg: NodeConfig) -> Result<Self> {
        let iface =
            net::iface::resolve(cfg.interface.as_deref(), cfg.group).context("-i/--interface")?;
        let mut nc = NetConfig::new(cfg.group, cfg.port, iface);
        nc.listen = cfg.listen;
        nc.ttl = cfg.ttl;
        nc.reply_port = cfg.reply_port;
        if cfg.rcvbuf > 0 {
            nc.rcvbuf = cfg.rcvbuf;
        }
        if cfg.sndbuf > 0 {
            nc.sndbuf = cfg.sndbuf;
        }
        let mut net = Net::new(&nc).with_context(|| {
            format!(
                "cannot open multicast sockets for {}:{} on {}",
                cfg.group, cfg.port, iface.addr
            )
        })?;
        if cfg.group.is_ipv6() {
            // The engine sizes datagrams for IPv4 headers; IPv6 ones are 20 bytes longer.
            cfg.engine.mtu = cfg.engine.mtu.saturating_sub(20);
        }
        let own = net.local_addr();
        if let Some(p) = cfg.peers.iter().find(|p| p.is_ipv6() != own.is_ipv6()) {
            anyhow::bail!(
                "--peer {p}: not of the group's address family ({})",
                cfg.group
            );
        }
        let mut peers = cfg.peers.clone();
        peers.retain(|p| !(p.port() == own.port() && net::iface::is_local(p.ip())));
        peers.sort();
        peers.dedup();
        let unicast_only = !cfg.peers.is_empty();
        let mut storage = FsStorage::new(cfg.base.clone(), cfg.apply.clone())
            .with_context(|| format!("cannot use base directory {}", cfg.base.display()))?;
        if cfg.engine.receive {
            // Commits run on a worker thread; it wakes this loop when one ended (issue 13).
            let wake = net.waker().context("wake-up eventfd")?;
            storage.offload_commits(std::sync::Arc::new(move || wake.wake()));
            // Payload writes run on a writer thread too, so receipt never waits for the disk
            // (issue 11).
            storage.pool_writes();
        }
        cfg.engine.sealed = !cfg.keys.is_empty();
        if cfg.engine.cluster == 0 {
            cfg.engine.cluster = cluster_id(cfg.group, cfg.port);
        }
        let sealer = cfg
            .keys
            .first()
            .map(|k| Sealer::new(k, cfg.keys.get(1), cfg.engine.node_id, cfg.engine.cluster));
        let engine = Engine::new(cfg.engine, storage, Instant::now());
        Ok(Self {
            engine,
            net,
            sealer,
            batch: RecvBatch::default(),
            bufs: (0..BATCH)
                .map(|_| vec![0u8; wire::MAX_DATAGRAM + wire::SEAL_OVERHEAD])
                .collect(),
            scratch: vec![0u8; net::SLOT_SIZE],
            seal_refused: 0,
            notices: Vec::new(),
            noticed: HashMap::new(),
            unopened: HashMap::new(),
            last_expire: Instant::now(),
            receiving: false,
            hooks: None,
            peers,
            unicast_only,
            recent: HashMap::new(),
            relay_plan: None,
            relayed: 0,
        })
    }

    /// Lines an operator should see (the daemon logs them at the default level), drained.
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    /// Notes a refusal worth telling the operator about, at most once a minute per address:
    /// another seal format, or a datagram this node's key cannot open (counted per source).
    fn notice(&mut self, from: SocketAddr, e: &SealError, now: Instant) {
        let msg = match e {
            SealError::Format(_) => {
                format!("refused datagrams from {from}: {e}; they cannot talk to each other")
            }
            SealError::BadTag
            | SealError::UnknownKey(_)
            | SealError::OtherCluster(_)
            | SealError::Unsealed => {
                let n = self.count_unopened(from);
                format!(
                    "{n} datagram(s) from {from} could not be opened ({e}): key mismatch? \
                     Every member needs the same -k key (or all --insecure)"
                )
            }
            _ => return,
        };
        self.notice_line(from, msg, now);
    }

    /// Counts a datagram from `from` that could not be opened; returns its count so far.
    fn count_unopened(&mut self, from: SocketAddr) -> u64 {
        count_in(&mut self.unopened, from)
    }

    /// Sources whose datagrams could not be opened with this node's key (or arrived sealed
    /// at this unkeyed node), most first.
    pub fn unopened(&self) -> Vec<(IpAddr, u64)> {
        let mut v: Vec<_> = self.unopened.iter().map(|(a, n)| (*a, *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// `N datagrams from HOST could not be opened: key mismatch?` when some arrived, to add
    /// to a `no member answered`.
    pub fn unopened_note(&self) -> Option<String> {
        let v = self.unopened();
        let (ip, n) = v.first()?;
        let more = match v.len() - 1 {
            0 => String::new(),
            m => format!(" and from {m} more host(s)"),
        };
        let why = if self.sealer.is_some() {
            "could not be opened with this key"
        } else {
            "arrived sealed and this node has no key"
        };
        Some(format!(
            "{n} datagram(s) from {ip}{more} {why}: key mismatch?"
        ))
    }

    fn notice_line(&mut self, from: SocketAddr, msg: String, now: Instant) {
        notice_in(&mut self.noticed, &mut self.notices, from, msg, now);
    }

    /// A handle other threads use to end [`Node::turn`]'s wait for input at once (the daemon's
    /// console threads, after handing the loop a job).
    pub fn waker(&mut self) -> Result<net::Waker> {
        self.net.waker().context("wake-up eventfd")
    }

    /// The node's reply address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.net.local_addr()
    }

    /// Socket counters.
    pub fn net_stats(&self) -> net::NetStats {
        self.net.stats()
    }

    /// Sealing counters (`None` without a key).
    pub fn seal_stats(&self) -> Option<SealStats> {
        self.sealer.as_ref().map(Sealer::stats)
    }

    /// Whether a listed peer (`--peer`) on another host has not been heard directly yet: no
    /// member heard by this node has its address.
    pub fn peers_unheard(&self) -> bool {
        self.peers.iter().any(|p| {
            !net::iface::is_local(p.ip())
                && !self
                    .engine
                    .members()
                    .any(|m| m.direct && m.addr.ip() == p.ip())
        })
    }

    /// Senders the sealer has verified and remembers (0 without a key).
    pub fn seal_peers(&self) -> usize {
        self.sealer.as_ref().map_or(0, Sealer::peers)
    }

    /// The verified sender whose sealed clock is furthest from ours, and by how much (ms):
    /// information only.
    pub fn clock_offset(&self) -> Option<(u64, i64)> {
        self.sealer.as_ref().and_then(Sealer::max_clock_offset)
    }

    /// One bounded round: wait for input up to the engine's deadline (at most `cap`), feed
    /// it, fire timers, send what is due. Returns the engine's events.
    pub fn turn(&mut self, cap: Duration) -> Result<Vec<Event>> {
        // Writes queued by the last batch go to the writer before this loop may sleep.
        self.engine.storage_mut().flush_writes();
        let now = Instant::now();
        // A push's datagrams are paced: poll_timeout says when the next one may go.
        let wait = self
            .engine
            .poll_timeout()
            .map_or(cap, |t| t.saturating_duration_since(now).min(cap));
        let n = self
            .net
            .recv(Some(wait), &mut self.batch)
            .context("receive")?;
        let now = Instant::now();
        let wall = unix_ms();
        let sys = SystemTime::now();
        let relay = self.engine.config().relay;
        let mut forward: Vec<(Vec<net::Dest>, Vec<u8>)> = Vec::new();
        for i in 0..n {
            let Some(d) = self.batch.get(i) else { continue };
            let from = d.from;
            let relay_this = relay && !d.to_group;
            // When the kernel had it (clamped: a wall clock that stepped is not believed).
            let age = d
                .received
                .and_then(|t| sys.duration_since(t).ok())
                .unwrap_or_default()
                .min(Duration::from_secs(1));
            let received = now.checked_sub(age).unwrap_or(now);
            match &mut self.sealer {
                // A datagram of another protocol version goes to the engine as it is: it
                // names the peer from the version-independent header (sealing may differ
                // between versions too, so opening it could only fail, and silently).
                Some(_) if !speaks(d.data) => self
                    .engine
                    .handle_datagram_via(now, received, from, d.to_group, d.data),
                None => {
                    // Sealed, and this node has no key: say so (the engine drops it).
                    if d.data.len() > 4
                        && d.data[..2] == wire::MAGIC
                        && d.data[4] & wire::FLAG_SEALED != 0
                    {
                        let n = count_in(&mut self.unopened, from);
                        notice_in(
                            &mut self.noticed,
                            &mut self.notices,
                            from,
                            format!(
                                "{n} sealed datagram(s) from {from}, and this node has no key \
                                 (--insecure): key mismatch?"
                            ),
                            now,
                        );
                    }
                    self.engine
                        .handle_datagram_via(now, received, from, d.to_group, d.data);
                    if relay_this {
                        relay_copy(
                            &self.engine,
                            now,
                            from,
                            d.data,
                            self.unicast_only,
                            &mut forward,
                        );
                    }
                }
                Some(s) => {
                    let len = d.data.len();
                    self.scratch[..len].copy_from_slice(d.data);
                    match s.open(&mut self.scratch, len, from, d.to_group, now, wall) {
                        Ok(Opened::Datagram(l)) => {
                            if self.unicast_only {
                                remember(&mut self.recent, from, now);
                            }
                            self.engine.handle_datagram_via(
                                now,
                                received,
                                from,
                                d.to_group,
                                &self.scratch[..l],
                            );
                            if relay_this {
                                // Forwarded as it came: still sealed by its sender.
                                relay_copy(
                                    &self.engine,
                                    now,
                                    from,
                                    d.data,
                                    self.unicast_only,
                                    &mut forward,
                                );
                            }
                        }
                        Ok(Opened::Handshake) => {
                            if self.unicast_only {
                                remember(&mut self.recent, from, now);
                            }
                        }
                        Err(SealError::Replayed { node, .. }) if d.to_group => {
                            // A group copy of a datagram whose unicast copy came first: it
                            // still shows the sender's multicast reaches us (paths.rs).
                            self.seal_refused += 1;
                            self.engine.handle_group_copy(now, node);
                        }
                        Err(e) => {
                            self.seal_refused += 1;
                            self.notice(from, &e, now);
                        }
                    }
                }
            }
        }
        if !forward.is_empty() {
            self.relayed += forward.iter().map(|(to, _)| to.len() as u64).sum::<u64>();
            let batch = by_destination(&forward);
            self.net.send(&batch).context("send (relay)")?;
        }
        if let Some(s) = &mut self.sealer {
            while let Some(node) = s.poll_verified() {
                self.engine.handle_peer_verified(now, node);
            }
            if now.saturating_duration_since(self.last_expire) >= Duration::from_secs(1) {
                self.last_expire = now;
                s.expire(now);
            }
        }
        if self.batch.overflows() > 0 {
            // The socket dropped datagrams (SO_RXQ_OVFL): the senders must slow down.
            self.engine.handle_rx_overflow(now, self.batch.overflows());
        }
        // Commits the worker finished: their RESULT goes out with this flush.
        for (key, out) in self.engine.storage_mut().take_commits() {
            self.engine.handle_committed(now, key, out);
        }
        // Answers go out before timers run: a queued commit (which may block for a while)
        // runs only after its BUSY answer has left.
        self.flush(Instant::now())?;
        let now = Instant::now();
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        self.flush(now)?;
        self.drive_hooks(now);
        let mut events = Vec::new();
        while let Some(e) = self.engine.poll_event() {
            events.push(e);
        }
        let receiving = self.engine.transfers().1 > 0;
        if self.receiving && !receiving {
            give_memory_back();
        }
        self.receiving = receiving;
        Ok(events)
    }

    /// Sets the daemon's hooks (`None`: none).
    pub fn set_hooks(&mut self, cfg: Option<crate::hook::HookConfig>) {
        self.engine
            .storage_mut()
            .set_hooks(cfg.clone().map(std::sync::Arc::new));
        self.hooks = cfg.map(crate::hook::Hooks::new);
    }

    /// Hands finished hooks' outcomes to the engine and starts the hooks commits asked for.
    fn drive_hooks(&mut self, now: Instant) {
        let Some(h) = &mut self.hooks else { return };
        for (key, kind, r) in h.poll() {
            if let Some(out) = self.engine.storage_mut().hook_done(key, kind, r) {
                self.engine.handle_committed(now, key, out);
            }
        }
        for job in self.engine.storage_mut().take_hook_jobs() {
            let origin = self
                .engine
                .members()
                .find(|m| m.node == job.key.origin)
                .map(|m| m.name.clone())
                .unwrap_or_default();
            h.start(job, &origin);
        }
    }

    /// Sends what the engine has ready (bounded: a few batches, so input is not starved).
    pub fn flush(&mut self, now: Instant) -> Result<()> {
        if let Some(s) = &mut self.sealer {
            // Handshakes first: they are already sealed, and a sender waits on them.
            let mut hs = Vec::new();
            while let Some((to, len)) = s.poll_handshake(&mut self.scratch) {
                hs.push((net::Dest::Unicast(to), self.scratch[..len].to_vec()));
            }
            for chunk in hs.chunks(BATCH) {
                let batch: Vec<(net::Dest, &[u8])> =
                    chunk.iter().map(|(d, b)| (*d, b.as_slice())).collect();
                self.net.send(&batch).context("send")?;
            }
        }
        if let Some(s) = &self.sealer {
            // Handshakes take sequence numbers from the sealer's counter: the engine numbers
            // after them, so the sealer keeps the engine's numbers, which receivers echo for
            // round-trip times. (When the sealer renumbered the engine's datagrams, every echo
            // pointed at a later datagram than the one received: at a low rate no sample at
            // all, the rate held down by a stale one; seconds-long stalls.)
            self.engine.skip_seq_to(s.last_seq());
        }
        // Where group datagrams go besides (or, with --peer, instead of) the group, and with
        // --relay through which relays; pacing counts the copies the link carries.
        // The push's stream goes only to members (a listed peer that is no member, such as
        // the front end's own address when no daemon runs beside it, gets heartbeats only).
        let (targets, members) = if self.unicast_only {
            self.fan_out_set()
        } else {
            let t = self.engine.unicast_paths(now);
            (t.clone(), t)
        };
        let plan = self.relay_plan(now, &members);
        let mcast = usize::from(!self.unicast_only);
        let mut stream_to = plan.as_ref().map_or(members, |p| p.first_hops());
        stream_to.sort();
        self.engine
            .set_link_copies((mcast + stream_to.len()).max(1));
        if let Some(p) = plan {
            self.engine.set_relay_plan(now, p, !self.unicast_only);
        }
        // The sealed timestamp is information only: one clock read per batch, not per datagram.
        let wall = unix_ms();
        for _ in 0..32 {
            let mut dests = Vec::with_capacity(BATCH);
            let mut lens = Vec::with_capacity(BATCH);
            while dests.len() < BATCH {
                let i = dests.len();
                let Some(t) = self.engine.poll_transmit(now, &mut self.bufs[i]) else {
                    break;
                };
                let len = match &mut self.sealer {
                    Some(s) => s.seal(&mut self.bufs[i], t.len, wall),
                    None => t.len,
                };
                dests.push(match t.dest {
                    proto::Dest::Group => net::Dest::Group,
                    proto::Dest::Unicast(a) => net::Dest::Unicast(a),
                });
                lens.push(len);
            }
            if dests.is_empty() {
                return Ok(());
            }
            let mut batch: Vec<(net::Dest, &[u8])> = dests
                .iter()
                .zip(lens.iter())
                .zip(self.bufs.iter())
                .map(|((d, l), b)| (*d, &b[..*l]))
                .collect();
            // Members that do not hear our multicast (paths.rs), or every member with --peer,
            // get unicast copies; with relays the push's stream goes to the first hops only.
            if self.unicast_only || !targets.is_empty() {
                batch = fan_out(&batch, &targets, &stream_to, !self.unicast_only);
            }
            self.net.send(&batch).context("send")?;
        }
        Ok(())
    }

    /// Where a group datagram goes without multicast (`--peer`): the listed peers and every
    /// member the engine knows (heard directly or reported by others), never ourselves; and
    /// of those, the members' addresses (where the push's stream goes).
    fn fan_out_set(&self) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        let own = self.net.local_addr();
        let usable =
            |a: &SocketAddr| *a != own && a.is_ipv6() == own.is_ipv6() && !a.ip().is_unspecified();
        let mut members: Vec<SocketAddr> = self
            .engine
            .members()
            .map(|m| m.addr)
            .filter(usable)
            .collect();
        members.sort();
        members.dedup();
        let mut to: Vec<SocketAddr> = self
            .peers
            .iter()
            .copied()
            .chain(members.iter().copied())
            .chain(
                self.recent
                    .iter()
                    .filter(|(_, t)| t.elapsed() < RECENT_FOR)
                    .map(|(a, _)| *a),
            )
            .filter(usable)
            .collect();
        to.sort();
        to.dedup();
        (to, members)
    }

    /// With `--relay`, the relay plan for `targets` (kept for a while: computing it looks at
    /// every member); `None` without `--relay` or targets.
    fn relay_plan(&mut self, now: Instant, targets: &[SocketAddr]) -> Option<proto::relay::Plan> {
        if !self.engine.config().relay || targets.is_empty() {
            self.relay_plan = None;
            return None;
        }
        // Kept while the targets and the member table are the same: a plan made before the
        // relays were heard (a fresh front end plans at its first flush, during discovery)
        // sent every member a direct copy for the first 200 ms of its push.
        let changes = self.engine.member_changes();
        let fresh = self.relay_plan.as_ref().is_some_and(|(t, c, to, _)| {
            now.saturating_duration_since(*t) < RELAY_PLAN_FOR && *c == changes && to == targets
        });
        if !fresh {
            let p = self.engine.relay_plan(targets);
            self.relay_plan = Some((now, changes, targets.to_vec(), p));
        }
        self.relay_plan.as_ref().map(|(_, _, _, p)| p.clone())
    }

    /// Records in `state` the members that applied the push `report` describes, with how long
    /// each has been heard: a member that applied a push is real (a forged heartbeat never
    /// applies one), so it is remembered at once. The daemon and the direct front end both
    /// call this after a push.
    pub fn remember_applied(&self, state: &mut crate::state::StateDir, report: &proto::PushReport) {
        for m in report.members.iter().filter(|m| m.ok) {
            let seen_for = self
                .engine
                .members()
                .find(|i| i.node == m.node)
                .map_or(Duration::ZERO, |i| {
                    i.last_seen.saturating_duration_since(i.since)
                });
            state.seen(&m.name, &m.addr.ip().to_string(), seen_for);
        }
    }

    /// How group datagrams reach member `m`: everything is unicast with `--peer`, else as the
    /// engine learned it.
    pub fn path(&self, m: &proto::members::MemberInfo) -> proto::paths::Path {
        if self.unicast_only {
            proto::paths::Path::Unicast(proto::paths::Why::Peers)
        } else {
            self.engine.path(Instant::now(), m)
        }
    }

    /// A `members` line: [`member_line`], the path to the member (`path=multicast`, or
    /// `path=unicast`), how its datagrams come to us (`from=multicast|unicast`), for the
    /// unicast path why (`why=...`), and when measured the round-trip time of the last push
    /// to it (`rtt=1.25ms`) and the share of its heartbeats lost on the way here
    /// (`loss=0.0%`); with `--relay`, the relay the current plan serves it through
    /// (`via=NAME`, or the relay's address when it is not a member heard directly).
    pub fn member_line(&self, m: &proto::members::MemberInfo) -> String {
        let p = self.path(m);
        let from = if !self.unicast_only && self.engine.hears_group(Instant::now(), m.node) {
            "multicast"
        } else {
            "unicast"
        };
        let mut l = format!("{} path={} from={from}", member_line(m), p.word());
        if !p.why().is_empty() {
            l.push_str(" why=");
            l.push_str(p.why());
        }
        let (rtt, loss) = self.engine.link_stats(m.node);
        if let Some(rtt) = rtt {
            l.push_str(&format!(" rtt={:.2}ms", rtt.as_secs_f64() * 1e3));
        }
        if let Some(loss) = loss {
            l.push_str(&format!(" loss={:.1}%", loss * 100.0));
        }
        if let Some(relay) = self.relayed_via(m.addr) {
            l.push_str(" via=");
            l.push_str(&relay);
        }
        l
    }

    /// The relay through which the current relay plan sends to `addr` (one word).
    fn relayed_via(&self, addr: std::net::SocketAddr) -> Option<String> {
        let (_, _, _, plan) = self.relay_plan.as_ref()?;
        let (relay, _) = plan.relays.iter().find(|(_, l)| l.contains(&addr))?;
        Some(
            match self.engine.members().find(|m| m.direct && m.addr == *relay) {
                Some(m) => crate::escape::word_str(&m.name).into_owned(),
                None => relay.to_string(),
            },
        )
    }

    /// Says goodbye to the cluster and flushes it out.
    pub fn leave(&mut self) {
        let now = Instant::now();
        let _ = self.engine.handle_command(now, proto::Command::Leave);
        let _ = self.flush(now);
    }
}

/// Most addresses [`Node`] remembers as recent senders (`--peer` with a key).
const MAX_RECENT: usize = 256;
/// How long a recent sender keeps getting our group datagrams without being a member.
const RECENT_FOR: Duration = Duration::from_secs(10);

/// Notes that `from` sent an authenticated datagram at `now` (bounded: stale entries go
/// first; when all are fresh a new address is not taken).
fn remember(recent: &mut HashMap<SocketAddr, Instant>, from: SocketAddr, now: Instant) {
    if recent.len() >= MAX_RECENT && !recent.contains_key(&from) {
        recent.retain(|_, t| now.saturating_duration_since(*t) < RECENT_FOR);
        if recent.len() >= MAX_RECENT {
            return;
        }
    }
    recent.insert(from, now);
}

/// How long a relay plan is reused while the destinations stay the same.
const RELAY_PLAN_FOR: Duration = Duration::from_millis(200);

/// As a relay: queues `data` (from `from`, by unicast) for forwarding when the engine holds
/// an assignment of its sender for it.
fn relay_copy(
    engine: &Engine<FsStorage>,
    now: Instant,
    from: SocketAddr,
    data: &[u8],
    unicast_only: bool,
    out: &mut Vec<(Vec<net::Dest>, Vec<u8>)>,
) {
    if data.len() < wire::HEADER_LEN {
        return;
    }
    let node = u64::from_be_bytes(data[8..16].try_into().unwrap());
    let Some(f) = engine.relay_for(now, node, from, data[3]) else {
        return;
    };
    let to: Vec<net::Dest> = if unicast_only || !f.group {
        f.all.iter().map(|a| net::Dest::Unicast(*a)).collect()
    } else {
        std::iter::once(net::Dest::Group)
            .chain(f.unicast.iter().map(|a| net::Dest::Unicast(*a)))
            .collect()
    };
    out.push((to, data.to_vec()));
}

/// Forwarded datagrams ordered destination by destination (each in the order received), so
/// runs stay GSO-batchable.
fn by_destination(fwd: &[(Vec<net::Dest>, Vec<u8>)]) -> Vec<(net::Dest, &[u8])> {
    let mut dests: Vec<net::Dest> = Vec::new();
    for (to, _) in fwd {
        for d in to {
            if !dests.contains(d) {
                dests.push(*d);
            }
        }
    }
    let mut out = Vec::new();
    for d in dests {
        out.extend(
            fwd.iter()
                .filter(|(to, _)| to.contains(&d))
                .map(|(_, b)| (d, b.as_slice())),
        );
    }
    out
}

/// `batch` with every run of group datagrams followed (`keep_group`) or replaced by unicast
/// copies to each of `to`, destination by destination (so runs stay GSO-batchable and each
/// member gets them in order). Datagrams of the push's stream ([`proto::relay::relayed`]) go
/// only to those of `to` in `stream` (sorted: the relays and direct members of a relay plan,
/// else the members; a listed peer that is no member gets heartbeats, not a copy of every
/// push).
fn fan_out<'a>(
    batch: &[(net::Dest, &'a [u8])],
    to: &[SocketAddr],
    stream: &[SocketAddr],
    keep_group: bool,
) -> Vec<(net::Dest, &'a [u8])> {
    let mut out = Vec::with_capacity(batch.len() * to.len().max(1));
    let mut i = 0;
    while i < batch.len() {
        if batch[i].0 != net::Dest::Group {
            out.push(batch[i]);
            i += 1;
            continue;
        }
        let run = batch[i..]
            .iter()
            .take_while(|(d, _)| *d == net::Dest::Group)
            .count();
        if keep_group {
            out.extend_from_slice(&batch[i..i + run]);
        }
        for a in to {
            let first = stream.binary_search(a).is_ok();
            out.extend(
                batch[i..i + run]
                    .iter()
                    .filter(|(_, b)| first || !relayed_kind(b))
                    .map(|(_, b)| (net::Dest::Unicast(*a), *b)),
            );
        }
        i += run;
    }
    out
}

/// Whether a datagram (sealed or not: the kind is in clear) belongs to the push's stream that
/// relays forward.
fn relayed_kind(b: &[u8]) -> bool {
    b.len() > 3 && proto::relay::relayed(b[3])
}

/// Returns the heap's free memory to the system. A transfer's memory (its manifest, held
/// blocks, the file system side's bookkeeping) is freed when it ends, but glibc keeps freed
/// memory in its arenas: measured, a daemon that received a push of 60,000 files stayed at
/// 53 MB RSS afterwards (6 MB before). Called when the last inbound transfer ends.
fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and has no preconditions; it only releases
    // free memory at the top of the heap and free pages inside it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Notes `msg` about `from` unless one went out for it within [`NOTICE_EVERY`].
fn notice_in(
    noticed: &mut HashMap<SocketAddr, Instant>,
    notices: &mut Vec<String>,
    from: SocketAddr,
    msg: String,
    now: Instant,
) {
    if noticed
        .get(&from)
        .is_some_and(|t| now.saturating_duration_since(*t) < NOTICE_EVERY)
    {
        return;
    }
    if noticed.len() >= MAX_NOTICED {
        noticed.retain(|_, t| now.saturating_duration_since(*t) < NOTICE_EVERY);
        if noticed.len() >= MAX_NOTICED {
            return;
        }
    }
    noticed.insert(from, now);
    notices.push(msg);
}

/// Counts a datagram from `from` that could not be opened (at most [`MAX_NOTICED`] sources);
/// returns its count so far.
fn count_in(unopened: &mut HashMap<IpAddr, u64>, from: SocketAddr) -> u64 {
    let ip = from.ip();
    if !unopened.contains_key(&ip) && unopened.len() >= MAX_NOTICED {
        return 0;
    }
    let n = unopened.entry(ip).or_insert(0);
    *n += 1;
    *n
}

/// Whether a makuo datagram is in a protocol version this build speaks (anything too short
/// to say is left to the sealing layer and the decoder to refuse).
fn speaks(d: &[u8]) -> bool {
    d.len() < 3 || (wire::MIN_VERSION..=wire::VERSION).contains(&d[2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::members::MemberInfo;
    use crate::proto::wire::HB_RECEIVER;

    fn member(node: u64, name: &str, addr: &str, age_ms: u64, now: Instant) -> MemberInfo {
        MemberInfo {
            node,
            name: name.into(),
            addr: addr.parse().unwrap(),
            version: String::new(),
            proto: (0, 0),
            flags: HB_RECEIVER,
            info: Vec::new(),
            last_seen: now - Duration::from_millis(age_ms),
            since: now - Duration::from_secs(60),
            direct: true,
        }
    }

    #[test]
    fn members_lines_show_protocol_versions() {
        let now = Instant::now() + Duration::from_secs(10);
        let mut m = member(1, "web1", "10.0.0.1:4000", 0, now);
        m.version = "0.1.0".into();
        m.proto = (3, 3);
        assert_eq!(
            member_line(&m),
            "web1 10.0.0.1 live 0.1.0 proto=3 last-push=-"
        );
        m.direct = false;
        m.proto = (0, 0);
        m.version.clear();
        assert_eq!(
            member_line(&m),
            "web1 10.0.0.1 live-indirect - proto=- last-push=-"
        );
    }

    /// A foreign (other protocol version) receiver named `name` at 10.0.0.9.
    fn old_member(now: Instant, name: &[u8]) -> proto::version::Foreign {
        let mut buf = vec![0u8; 256];
        let h = wire::Header {
            version: wire::VERSION,
            kind: 0,
            flags: 0,
            key_id: 0,
            cluster: 0,
            node: 9,
            seq: 1,
        };
        let n = wire::Msg::Heartbeat(wire::Heartbeat {
            flags: HB_RECEIVER,
            proto_min: 1,
            proto_max: 1,
            interval_ms: 1000,
            name,
            version: b"0.0.9",
            info: b"",
            known_raw: b"",
            known_count: 0,
        })
        .encode(&h, &mut buf);
        buf[2] = 1;
        let mut e = Engine::new(
            proto::Config::default(),
            proto::storage::MemStorage::new(),
            now,
        );
        e.handle_datagram(now, "10.0.0.9:4000".parse().unwrap(), &buf[..n]);
        let f = e.foreign().next().expect("recorded").clone();
        f
    }

    #[test]
    fn a_receiver_of_another_version_is_listed_and_reported_not_skipped() {
        let now = Instant::now() + Duration::from_secs(10);
        let f = old_member(now, b"web9");
        assert_eq!(
            foreign_line(&f, now + Duration::from_secs(3)),
            "web9 10.0.0.9 incompatible 0.0.9 proto=1 last-heard=3s-ago"
        );
        let evil = old_member(now, b"x\nweb1 1.2.3.4 live");
        assert!(!foreign_line(&evil, now).chars().any(char::is_control));
        let ms = [member(2, "web2", "10.0.0.2:4000", 100, now)];
        let (live, absent, unknown) = resolve_targets(ms.iter(), [&f].into_iter(), &[], &[]);
        assert_eq!(live, vec![2]);
        assert!(unknown.is_empty());
        assert_eq!(absent.len(), 1);
        assert_eq!(absent[0].name, "web9");
        assert!(
            absent[0].reason.contains("protocol version 1"),
            "{}",
            absent[0].reason
        );
        // Named with -t, it is reported rather than unknown.
        let (live, absent, unknown) =
            resolve_targets(ms.iter(), [&f].into_iter(), &[], &["web9".to_string()]);
        assert!(live.is_empty() && unknown.is_empty());
        assert_eq!(absent.len(), 1);
    }

    #[test]
    fn a_restarted_member_is_targeted_once_not_its_dead_incarnation() {
        let now = Instant::now() + Duration::from_secs(10);
        let ms = [
            member(1, "web1", "10.0.0.1:4000", 3000, now), // dead incarnation
            member(2, "web2", "10.0.0.2:4000", 100, now),
            member(3, "web1", "10.0.0.1:4001", 100, now), // restarted
            member(4, "web1", "10.0.0.9:4000", 3000, now), // same name elsewhere: kept
        ];
        let (live, absent, unknown) = resolve_targets(ms.iter(), std::iter::empty(), &[], &[]);
        assert_eq!(live, vec![2, 3, 4]);
        assert!(absent.is_empty() && unknown.is_empty());
        let (live, _, unknown) =
            resolve_targets(ms.iter(), std::iter::empty(), &[], &["web1".to_string()]);
        assert_eq!(live, vec![3, 4]);
        assert!(unknown.is_empty());
    }

    #[test]
    fn a_member_line_is_one_line_whatever_the_heartbeat_held() {
        let now = Instant::now() + Duration::from_secs(10);
        let mut m = member(1, "evil\nweb9 10.0.0.9 live", "10.0.0.1:4000", 0, now);
        m.version = "1.0\r\x1b[2K".into();
        m.info = b"id origin\n1 \xff".to_vec();
        let l = member_line(&m);
        assert!(!l.chars().any(char::is_control), "{l:?}");
        assert_eq!(
            l,
            "evil\\#012web9\\#04010.0.0.9\\#040live 10.0.0.1 live 1.0\\#015\\#033[2K proto=- \
             last-push=id,origin\\#0121,\\#377"
        );
    }

    #[test]
    fn the_engine_numbers_after_the_sequence_numbers_its_driver_took() {
        // The sealer's handshakes take numbers from the counter the engine's datagrams are
        // sealed under; the engine numbers after them, so the sealer keeps its numbers.
        let now = Instant::now() + Duration::from_secs(10);
        let mut e = Engine::new(
            proto::Config::default(),
            proto::storage::MemStorage::new(),
            now,
        );
        let mut buf = vec![0u8; 9000];
        let seq = |b: &[u8]| u64::from_be_bytes(b[16..24].try_into().unwrap());
        let t = e.poll_transmit(now, &mut buf).expect("a join heartbeat");
        let first = seq(&buf[..t.len]);
        e.skip_seq_to(first + 5);
        e.skip_seq_to(first + 2); // never backwards
        e.handle_timeout(now + Duration::from_secs(5));
        let t = e
            .poll_transmit(now + Duration::from_secs(5), &mut buf)
            .expect("a heartbeat");
        assert_eq!(seq(&buf[..t.len]), first + 6);
    }
}

#[cfg(test)]
mod offload_tests;
