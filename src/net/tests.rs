//! Loopback only: every socket binds 127.0.0.1 or a 239.255/16 group, multicast goes out
//! through 127.0.0.1 (`IP_MULTICAST_IF`), and the TTL is 0 so nothing could leave the
//! host even if a route pointed elsewhere.
use super::*;
use std::net::Ipv4Addr;
use std::time::{Instant, SystemTime};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A group in 239.255.0.0/16 and a port no other test uses.
fn config() -> NetConfig {
    let probe = std::net::UdpSocket::bind((LO, 0)).unwrap();
    let port = probe.local_addr().unwrap().port();
    let mut r = [0u8; 2];
    getrandom::getrandom(&mut r).unwrap();
    let lo = Interface {
        addr: LO.into(),
        index: 0,
    };
    let mut cfg = NetConfig::new(Ipv4Addr::new(239, 255, r[0], r[1].max(1)).into(), port, lo);
    cfg.ttl = 0;
    cfg
}

/// Receives until `want` datagrams arrived or two seconds passed.
#[track_caller]
fn recv_n(net: &mut Net, want: usize) -> Vec<(SocketAddr, bool, Vec<u8>)> {
    let mut batch = RecvBatch::new(16);
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(2);
    while got.len() < want && Instant::now() < end {
        net.recv(Some(Duration::from_millis(50)), &mut batch)
            .unwrap();
        got.extend(batch.iter().map(|d| (d.from, d.to_group, d.data.to_vec())));
    }
    got
}

/// Asserts nothing more arrives within 100 ms.
#[track_caller]
fn recv_none(net: &mut Net) {
    let mut batch = RecvBatch::new(4);
    let n = net
        .recv(Some(Duration::from_millis(100)), &mut batch)
        .unwrap();
    assert_eq!(n, 0, "unexpected: {:?}", batch.get(0));
}

fn numbered(i: usize, len: usize) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; len];
    v[..4].copy_from_slice(&(i as u32).to_be_bytes());
    v
}

#[test]
fn a_full_receive_buffer_is_reported_with_the_next_batch() {
    let cfg = config();
    let mut small = cfg.clone();
    small.rcvbuf = 4096; // the kernel rounds it up to its minimum, a few datagrams
    let mut rx = Net::new(&small).unwrap();
    let mut tx = Net::new(&cfg).unwrap();
    let data = vec![3u8; 1400];
    let batch: Vec<(Dest, &[u8])> = vec![(Dest::Group, &data[..]); 200];
    assert_eq!(tx.send(&batch).unwrap(), 200);
    std::thread::sleep(Duration::from_millis(50));
    let mut b = RecvBatch::new(64);
    let (mut got, mut reported) = (0, 0);
    while rx.recv(Some(Duration::from_millis(100)), &mut b).unwrap() > 0 {
        got += b.len() as u64;
        reported += b.overflows();
    }
    assert!(got > 0 && got < 200, "{got} datagrams arrived");
    // The kernel's drop counter rides on datagrams queued after the drops
    // (SO_RXQ_OVFL): the next one tells them, once. It counts dropped buffers: with GSO
    // on the sender and GRO here, one buffer may have held many datagrams.
    assert_eq!(tx.send(&[(Dest::Group, &data[..])]).unwrap(), 1);
    assert_eq!(
        rx.recv(Some(Duration::from_millis(500)), &mut b).unwrap(),
        1
    );
    reported += b.overflows();
    assert!(
        reported > 0 && reported <= 200 - got,
        "{reported} drops reported"
    );
    assert_eq!(rx.stats().recv_overflows, reported);
    assert_eq!(tx.send(&[(Dest::Group, &data[..])]).unwrap(), 1);
    rx.recv(Some(Duration::from_millis(500)), &mut b).unwrap();
    assert_eq!(b.overflows(), 0);
}

#[test]
fn datagrams_carry_the_kernel_receive_time() {
    let cfg = config();
    let mut rx = Net::new(&cfg).unwrap();
    let mut tx = Net::new(&cfg).unwrap();
    let before = SystemTime::now();
    assert_eq!(tx.send(&[(Dest::Group, b"t")]).unwrap(), 1);
    std::thread::sleep(Duration::from_millis(30));
    let mut b = RecvBatch::new(4);
    assert_eq!(
        rx.recv(Some(Duration::from_millis(500)), &mut b).unwrap(),
        1
    );
    let after = SystemTime::now();
    let at = b.get(0).unwrap().received.expect("SO_TIMESTAMPNS");
    // Received before we read it, 30 ms earlier, not when recv returned.
    assert!(at >= before - Duration::from_millis(5) && at <= after);
    assert!(after.duration_since(at).unwrap() >= Duration::from_millis(25));
}

#[test]
fn members_on_one_host_share_group_and_port() {
    let cfg = config();
    let mut a = Net::new(&cfg).unwrap();
    let mut b = Net::new(&cfg).unwrap();
    let mut c = Net::new(&cfg).unwrap();
    assert_ne!(a.local_addr(), b.local_addr());
    assert_eq!(c.send(&[(Dest::Group, b"hello")]).unwrap(), 1);
    for m in [&mut a, &mut b] {
        let got = recv_n(m, 1);
        assert_eq!(got, vec![(c.local_addr(), true, b"hello".to_vec())]);
        recv_none(m);
    }
    // The sender's own group socket hears its echo; it is dropped, not handed up.
    recv_none(&mut c);
    assert_eq!(c.stats().own_echo, 1);
}

#[test]
fn unicast_reply_reaches_the_senders_port() {
    let cfg = config();
    let mut sender = Net::new(&cfg).unwrap();
    let mut member = Net::new(&cfg).unwrap();
    sender.send(&[(Dest::Group, b"who is there")]).unwrap();
    let got = recv_n(&mut member, 1);
    let (from, to_group, _) = &got[0];
    assert!(*to_group);
    assert_eq!(*from, sender.local_addr());
    member.send(&[(Dest::Unicast(*from), b"me")]).unwrap();
    let got = recv_n(&mut sender, 1);
    assert_eq!(got, vec![(member.local_addr(), false, b"me".to_vec())]);
    // A unicast datagram does not reach other members.
    recv_none(&mut member);
}

#[test]
fn batch_of_500_arrives_complete_and_in_order() {
    let cfg = config();
    let mut tx = Net::new(&cfg).unwrap();
    let mut rx = Net::new(&cfg).unwrap();
    let data: Vec<Vec<u8>> = (0..500).map(|i| numbered(i, 1444)).collect();
    let batch: Vec<(Dest, &[u8])> = data.iter().map(|d| (Dest::Group, &d[..])).collect();
    assert_eq!(tx.send(&batch).unwrap(), 500);
    let got = recv_n(&mut rx, 500);
    assert_eq!(got.len(), 500);
    for (i, (from, to_group, d)) in got.iter().enumerate() {
        assert_eq!((*from, *to_group), (tx.local_addr(), true));
        assert_eq!(d, &data[i], "datagram {i}");
    }
    recv_none(&mut rx);
    let (ts, rs) = (tx.stats(), rx.stats());
    eprintln!(
        "gso={} gro={} sender {ts:?}\nreceiver {rs:?}",
        tx.gso(),
        rx.gro()
    );
    assert_eq!(ts.sent_datagrams, 500);
    if tx.gso() {
        assert!(ts.sent_syscalls < 500 / 10, "{ts:?}");
    }
    if rx.gro() {
        assert!(rs.recv_syscalls < 500, "{rs:?}");
    }
}

#[test]
fn mixed_sizes_and_destinations_in_one_batch() {
    let cfg = config();
    let mut tx = Net::new(&cfg).unwrap();
    let mut a = Net::new(&cfg).unwrap();
    let mut b = Net::new(&cfg).unwrap();
    let (ua, ub) = (Dest::Unicast(a.local_addr()), Dest::Unicast(b.local_addr()));
    let plan: Vec<(Dest, Vec<u8>)> = vec![
        (Dest::Group, numbered(0, 100)),
        (Dest::Group, numbered(1, 100)),
        (ua, numbered(2, 50)),
        (Dest::Group, numbered(3, 1400)),
        (Dest::Group, numbered(4, 1400)),
        (Dest::Group, numbered(5, 1400)),
        (Dest::Group, numbered(6, 1000)), // shorter last GSO segment
        (Dest::Group, numbered(7, 1400)), // larger than the previous: a new message
        (Dest::Group, Vec::new()),        // empty datagram
        (ub, numbered(9, 8972)),
        (ub, numbered(10, 8972)),
        (ua, numbered(11, 4)),
        (Dest::Group, numbered(12, 60000)),
    ];
    let batch: Vec<(Dest, &[u8])> = plan.iter().map(|(d, v)| (*d, &v[..])).collect();
    assert_eq!(tx.send(&batch).unwrap(), plan.len());
    for (me, dest) in [(&mut a, ua), (&mut b, ub)] {
        let want: Vec<(SocketAddr, bool, Vec<u8>)> = plan
            .iter()
            .filter(|(d, _)| *d == Dest::Group || *d == dest)
            .map(|(d, v)| (tx.local_addr(), *d == Dest::Group, v.clone()))
            .collect();
        let mut got = recv_n(me, want.len());
        recv_none(me);
        // Order holds per socket; the two sockets interleave arbitrarily.
        let (mut g, mut u): (Vec<_>, Vec<_>) = got.drain(..).partition(|x| x.1);
        g.append(&mut u);
        let (mut wg, mut wu): (Vec<_>, Vec<_>) = want.into_iter().partition(|x| x.1);
        wg.append(&mut wu);
        assert_eq!(g, wg);
    }
}

#[test]
fn a_waker_ends_the_wait_from_another_thread() {
    let mut net = Net::new(&config()).unwrap();
    let mut batch = RecvBatch::new(1);
    let w = net.waker().unwrap();
    // Woken before the wait: the next recv returns at once, and only that one.
    w.wake();
    w.wake();
    let t = Instant::now();
    assert_eq!(
        net.recv(Some(Duration::from_secs(5)), &mut batch).unwrap(),
        0
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let t = Instant::now();
    net.recv(Some(Duration::from_millis(100)), &mut batch)
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(95),
        "{:?}",
        t.elapsed()
    );
    // Woken during the wait, by another thread (a clone).
    let w2 = net.waker().unwrap();
    let th = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        w2.wake();
    });
    let t = Instant::now();
    net.recv(Some(Duration::from_secs(5)), &mut batch).unwrap();
    let took = t.elapsed();
    th.join().unwrap();
    assert!(
        took >= Duration::from_millis(95) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn recv_times_out_in_bounded_time() {
    let mut net = Net::new(&config()).unwrap();
    let mut batch = RecvBatch::new(1);
    let t = Instant::now();
    assert_eq!(
        net.recv(Some(Duration::from_millis(100)), &mut batch)
            .unwrap(),
        0
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(95) && took < Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!(net.recv(Some(Duration::ZERO), &mut batch).unwrap(), 0);
}

#[test]
fn gso_messages_respect_segment_and_size_limits() {
    let net = Net::new(&config()).unwrap();
    let (small, jumbo) = (vec![0u8; 1472], vec![0u8; 9000]);
    let mut batch: Vec<(Dest, &[u8])> = vec![(Dest::Group, &small[..]); 100];
    batch.extend(vec![(Dest::Group, &jumbo[..]); 10]);
    let mut plan = Vec::new();
    net.plan(&batch, &mut plan);
    let counts: Vec<usize> = plan.iter().map(|m| m.count).collect();
    // 44 x 1472 = 64768 is the most that fits 65507 bytes; 7 x 9000 likewise.
    assert_eq!(counts, [44, 44, 12, 7, 3]);
    let tiny = [0u8; 10];
    let batch = vec![(Dest::Group, &tiny[..]); 200];
    net.plan(&batch, &mut plan);
    let counts: Vec<usize> = plan.iter().map(|m| m.count).collect();
    assert_eq!(counts, [64, 64, 64, 8]);
}

#[test]
fn ipv6_destination_is_refused_before_sending() {
    let cfg = config();
    let mut tx = Net::new(&cfg).unwrap();
    let mut rx = Net::new(&cfg).unwrap();
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    let err = tx
        .send(&[(Dest::Group, b"x"), (Dest::Unicast(v6), b"y")])
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(tx.stats().sent_datagrams, 0);
    recv_none(&mut rx);
}

#[test]
fn unreachable_peer_does_not_break_later_sends_or_receives() {
    let cfg = config();
    let mut tx = Net::new(&cfg).unwrap();
    let mut rx = Net::new(&cfg).unwrap();
    // Nobody listens there: the ICMP port-unreachable comes back to tx's socket.
    let dead = {
        let s = std::net::UdpSocket::bind((LO, 0)).unwrap();
        s.local_addr().unwrap()
    };
    assert_eq!(tx.send(&[(Dest::Unicast(dead), b"anyone?")]).unwrap(), 1);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(tx.send(&[(Dest::Group, b"still here")]).unwrap(), 1);
    assert_eq!(recv_n(&mut rx, 1)[0].2, b"still here");
    recv_none(&mut tx);
    rx.send(&[(Dest::Unicast(tx.local_addr()), b"reply")])
        .unwrap();
    assert_eq!(recv_n(&mut tx, 1)[0].2, b"reply");
    assert!(tx.stats().peer_errors >= 1, "{:?}", tx.stats());
}

#[test]
fn refuses_a_non_multicast_group() {
    let mut cfg = config();
    cfg.group = LO.into();
    assert!(Net::new(&cfg).is_err());
}

/// Throughput over loopback, with and without the batching; prints numbers, asserts
/// nothing about speed. `cargo test --lib net::tests::bench -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_loopback_100k() {
    bench("GSO + sendmmsg, GRO + recvmmsg", true, true, 1024);
    bench("sendmmsg, recvmmsg (no GSO/GRO)", false, false, 1024);
    bench("one datagram per call", false, false, 1);
}

fn bench(name: &str, gso: bool, gro: bool, per_call: usize) {
    const N: usize = 100_000;
    const LEN: usize = 1444;
    let cfg = config();
    let mut tx = Net::new(&cfg).unwrap();
    let mut rx = Net::new(&cfg).unwrap();
    tx.gso = gso;
    if !gro {
        setsockopt_int(rx.group.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 0).unwrap();
        rx.gro = false;
    }
    let slots = if per_call == 1 { 1 } else { 64 };
    let receiver = std::thread::spawn(move || {
        let mut batch = RecvBatch::new(slots);
        let (mut got, mut first, mut last) = (0, None, Instant::now());
        loop {
            let n = rx
                .recv(Some(Duration::from_millis(300)), &mut batch)
                .unwrap();
            if n == 0 && first.is_some() {
                break;
            }
            if n > 0 {
                first.get_or_insert_with(Instant::now);
                last = Instant::now();
            }
            got += n;
        }
        (got, last - first.unwrap(), rx.stats())
    });
    std::thread::sleep(Duration::from_millis(50));
    let data = vec![7u8; LEN];
    let batch: Vec<(Dest, &[u8])> = vec![(Dest::Group, &data[..]); 1024];
    let t = Instant::now();
    let mut sent = 0;
    while sent < N {
        sent += tx.send(&batch[..(N - sent).min(per_call)]).unwrap();
    }
    let st = t.elapsed();
    let (got, rt, rs) = receiver.join().unwrap();
    let ts = tx.stats();
    eprintln!(
        "{name}: send {N} x {LEN} B in {st:.2?} = {:.0}/s, {} syscalls; \
         recv {got} in {rt:.2?} = {:.0}/s, {} syscalls, {} kernel drops",
        N as f64 / st.as_secs_f64(),
        ts.sent_syscalls,
        got as f64 / rt.as_secs_f64().max(1e-9),
        rs.recv_syscalls,
        rs.recv_overflows
    );
}

#[test]
fn mixed_families_are_refused_at_start() {
    let mut cfg = config();
    cfg.interface = "::1".parse().unwrap();
    assert!(Net::new(&cfg).is_err());
    let mut cfg = config();
    cfg.listen = Some("::".parse().unwrap());
    assert!(Net::new(&cfg).is_err());
}
