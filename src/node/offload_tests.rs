//! A slow commit runs on the worker thread: the member's loop keeps answering heartbeats and
//! receiving another transfer meanwhile, and the sender's RESULT waits for the commit.
//! And with a key, datagrams that arrive coalesced (the sender's GSO, our `UDP_GRO`) are split
//! and each is opened on its own. Loopback only (127.0.0.1, a 239.255/16 group, TTL 0).

use super::*;
use crate::proto::manifest::PushOptions;
use crate::proto::{Command, PushReport, PushRequest};
use crate::seal::Key;

/// A node on loopback: `group:port`, receiving or not, with its own base.
fn node(group: IpAddr, port: u16, name: &str, receive: bool, base: &std::path::Path) -> Node {
    keyed_node(group, port, name, receive, base, Vec::new())
}

fn keyed_node(
    group: IpAddr,
    port: u16,
    name: &str,
    receive: bool,
    base: &std::path::Path,
    keys: Vec<Key>,
) -> Node {
    Node::new(NodeConfig {
        group,
        port,
        interface: Some("127.0.0.1".into()),
        ttl: 0,
        listen: None,
        peers: Vec::new(),
        reply_port: 0,
        rcvbuf: 0,
        sndbuf: 0,
        engine: proto::Config {
            node_id: random_node_id(),
            name: name.into(),
            receive,
            heartbeat: Duration::from_millis(100),
            member_expiry: Duration::from_secs(3),
            seed: random_node_id(),
            ..proto::Config::default()
        },
        keys,
        base: base.to_path_buf(),
        apply: ApplyOptions {
            node_name: name.into(),
            durable: false,
            ..Default::default()
        },
    })
    .unwrap()
}

fn push(from: &mut Node, base: &std::path::Path, to: u64) {
    let paths = [".".to_string()];
    let sel = Select {
        paths: &paths,
        recursive: true,
        files_from: false,
        rules: &[],
    };
    let s = build_manifest(base, &sel, PushOptions::default()).unwrap();
    from.engine
        .handle_command(
            Instant::now(),
            Command::Push(PushRequest {
                manifest: s.manifest,
                targets: vec![to],
                max_delete: None,
                atomic: false,
            }),
        )
        .unwrap();
}

fn done(events: Vec<Event>) -> Option<PushReport> {
    events.into_iter().find_map(|e| match e {
        Event::PushDone(r) => Some(r),
        _ => None,
    })
}

/// A fresh loopback group and port.
fn group_port() -> (IpAddr, u16) {
    let mut r = [0u8; 2];
    getrandom::getrandom(&mut r).unwrap();
    let group: IpAddr = std::net::Ipv4Addr::new(239, 255, r[0], r[1].max(1)).into();
    let port = std::net::UdpSocket::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    (group, port)
}

#[test]
fn a_slow_commit_does_not_stop_heartbeats_or_another_transfer() {
    let (group, port) = group_port();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let one: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    let two: Vec<u8> = (0..100_000u32).map(|i| (i * 13) as u8).collect();
    std::fs::write(dirs[1].path().join("one.bin"), &one).unwrap();
    std::fs::write(dirs[2].path().join("two.bin"), &two).unwrap();
    let mut a = node(group, port, "a", true, dirs[0].path());
    let delay = Duration::from_millis(1500);
    a.engine.storage_mut().set_commit_delay(delay);
    let mut b = node(group, port, "b", false, dirs[1].path());
    let mut c = node(group, port, "c", false, dirs[2].path());
    let end = Instant::now() + Duration::from_secs(20);
    let tick = Duration::from_millis(5);
    let is_a = |m: &proto::members::MemberInfo| m.name == "a";
    // Both senders see the receiver.
    while !(b.engine.members().any(is_a) && c.engine.members().any(is_a)) {
        assert!(Instant::now() < end, "members never met");
        a.turn(tick).unwrap();
        b.turn(tick).unwrap();
        c.turn(tick).unwrap();
    }
    let a_id = b.engine.members().find(|m| is_a(m)).unwrap().node;
    push(&mut b, dirs[1].path(), a_id);
    let (mut b_done, mut c_done) = (None, None);
    let mut handed = None;
    let mut most_in_flight = 0;
    let mut slowest_turn = Duration::ZERO;
    let mut oldest_heartbeat = Duration::ZERO;
    while b_done.is_none() || c_done.is_none() {
        assert!(Instant::now() < end, "pushes never finished");
        let t = Instant::now();
        a.turn(tick).unwrap();
        let took = t.elapsed();
        let in_flight = a.engine.storage().commits_in_flight();
        most_in_flight = most_in_flight.max(in_flight);
        if handed.is_none() && in_flight > 0 {
            // The first commit is on the worker: now another sender pushes.
            handed = Some(Instant::now());
            push(&mut c, dirs[2].path(), a_id);
        }
        if in_flight > 0 {
            slowest_turn = slowest_turn.max(took);
            // How stale the receiver's heartbeats are at the sender while it commits.
            if let Some(m) = b.engine.members().find(|m| m.node == a_id) {
                oldest_heartbeat = oldest_heartbeat.max(m.last_seen.elapsed());
            }
        }
        if let Some(r) = done(b.turn(tick).unwrap()) {
            b_done = Some((Instant::now(), r));
        }
        if let Some(r) = done(c.turn(tick).unwrap()) {
            c_done = Some((Instant::now(), r));
        }
    }
    let handed = handed.expect("the commit went to the worker");
    let (b_at, b_rep) = b_done.unwrap();
    let (_, c_rep) = c_done.unwrap();
    assert!(b_rep.members.iter().all(|m| m.ok), "{:?}", b_rep.members);
    assert!(c_rep.members.iter().all(|m| m.ok), "{:?}", c_rep.members);
    // The RESULT left only once the (slow) commit had finished.
    assert!(
        b_at.duration_since(handed) >= delay,
        "result after {:?}",
        b_at.duration_since(handed)
    );
    // The loop never waited for the commit...
    assert!(
        slowest_turn < Duration::from_millis(500),
        "a turn took {slowest_turn:?}"
    );
    // ...kept sending heartbeats (every 100 ms)...
    assert!(
        oldest_heartbeat < Duration::from_millis(800),
        "heartbeats stalled for {oldest_heartbeat:?}"
    );
    // ...and received the second push whole meanwhile: its commit queued behind the first.
    assert_eq!(most_in_flight, 2);
    assert_eq!(std::fs::read(dirs[0].path().join("one.bin")).unwrap(), one);
    assert_eq!(std::fs::read(dirs[0].path().join("two.bin")).unwrap(), two);
}

#[test]
fn gro_coalesced_datagrams_are_each_opened_and_counted() {
    let (group, port) = group_port();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let data: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i * 31 + i / 977) as u8)
        .collect();
    std::fs::write(dirs[1].path().join("big.bin"), &data).unwrap();
    let key = Key::generate().unwrap();
    let mut a = keyed_node(group, port, "a", true, dirs[0].path(), vec![key.clone()]);
    let mut b = keyed_node(group, port, "b", false, dirs[1].path(), vec![key]);
    let end = Instant::now() + Duration::from_secs(30);
    let tick = Duration::from_millis(5);
    while !b.engine.members().any(|m| m.name == "a") {
        assert!(Instant::now() < end, "members never met");
        a.turn(tick).unwrap();
        b.turn(tick).unwrap();
    }
    let a_id = b.engine.members().find(|m| m.name == "a").unwrap().node;
    push(&mut b, dirs[1].path(), a_id);
    let report = loop {
        assert!(Instant::now() < end, "the push never finished");
        a.turn(tick).unwrap();
        if let Some(r) = done(b.turn(tick).unwrap()) {
            break r;
        }
    };
    assert!(report.members.iter().all(|m| m.ok), "{:?}", report.members);
    assert_eq!(std::fs::read(dirs[0].path().join("big.bin")).unwrap(), data);
    let net = a.net_stats();
    let seal = a.seal_stats().unwrap();
    // The kernel handed over buffers holding several datagrams...
    assert!(net.recv_coalesced > 0, "no coalesced buffer: {net:?}");
    // ...each was opened on its own: none failed its tag, and every one opened reached the
    // engine; what was received and not opened is the sealer's own (handshakes) or refused
    // and counted.
    assert_eq!(seal.bad_tag + seal.malformed, 0, "{seal:?}");
    assert_eq!(seal.opened, a.engine.stats().received, "{seal:?}");
    let unaccounted = net.recv_datagrams - seal.opened - a.seal_refused;
    assert!(
        unaccounted <= 16,
        "{unaccounted} datagrams neither opened nor refused: {net:?} {seal:?}"
    );
}
