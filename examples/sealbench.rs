//! Per-datagram cost of sealing: one `Sealer` seals datagrams, another (which verified the
//! first with the challenge) opens them, as a sender and a receiver do at the socket edge.
//!
//! `cargo run --release --example sealbench [ROUNDS] [N]` prints, for a full block datagram
//! (1,472 bytes sealed, as on a 1,500-byte MTU) and small control datagrams, the median over
//! ROUNDS of the wall-clock and CPU nanoseconds per seal + open (N datagrams per round).
//! For instruction counts, which do not depend on the machine's load, run one size under
//! callgrind: `valgrind --tool=callgrind target/release/examples/sealbench one LEN N` and
//! divide the difference between two N by their difference.

use std::net::SocketAddr;
use std::time::Instant;

use makuo::proto::wire::{self, Header, Msg, Stream, HEADER_LEN, SEAL_OVERHEAD};
use makuo::seal::{Key, Opened, Sealer, HANDSHAKE_LEN};

const CLUSTER: u16 = 7;
const TX: u64 = 0x0123_4567_89ab_cdef;
const RX: u64 = 0x0fed_cba9_8765_4321;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A sender and a receiver that verified it.
fn pair() -> (Sealer, Sealer) {
    let key = Key::from_bytes([7; 32]);
    let mut tx = Sealer::new(&key, None, TX, CLUSTER);
    let mut rx = Sealer::new(&key, None, RX, CLUSTER);
    let now = Instant::now();
    let mut buf = vec![0u8; 2048];
    let n = datagram(&mut buf, 64);
    let n = tx.seal(&mut buf, n, 0);
    assert!(rx.open(&mut buf, n, addr(1), now, 0).is_err(), "unverified");
    for _ in 0..3 {
        let mut h = [0u8; HANDSHAKE_LEN];
        while let Some((_, n)) = rx.poll_handshake(&mut h) {
            let _ = tx.open(&mut h, n, addr(2), now, 0);
        }
        while let Some((_, n)) = tx.poll_handshake(&mut h) {
            let _ = rx.open(&mut h, n, addr(1), now, 0);
        }
    }
    assert_eq!(rx.poll_verified(), Some(TX));
    (tx, rx)
}

/// An unsealed BLOCK datagram of `len` bytes in `buf`; returns `len`.
fn datagram(buf: &mut [u8], len: usize) -> usize {
    let data = vec![0x5a; len - HEADER_LEN - wire::BLOCK_HDR];
    let h = Header {
        version: wire::VERSION,
        kind: 0,
        flags: 0,
        key_id: 0,
        cluster: CLUSTER,
        node: TX,
        seq: 0,
    };
    let m = Msg::Block {
        xfer: 1,
        stream: Stream::Payload,
        idx: 0,
        data: &data,
    };
    let n = m.encode(&h, buf);
    assert_eq!(n, len);
    n
}

/// Seals and opens `n` datagrams of `len` unsealed bytes.
fn run(tx: &mut Sealer, rx: &mut Sealer, len: usize, n: u64) {
    let mut buf = vec![0u8; 2048];
    let plain = datagram(&mut buf, len);
    let now = Instant::now();
    for _ in 0..n {
        let mut d = buf.clone();
        let s = tx.seal(&mut d, plain, 0);
        let r = rx.open(&mut d, s, addr(1), now, 0);
        assert_eq!(r.ok(), Some(Opened::Datagram(plain)));
    }
}

fn cpu_ns() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    (us(ru.ru_utime) + us(ru.ru_stime)) * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    // Sizes, unsealed: a full block datagram on a 1,500-byte MTU, a heartbeat-sized one and
    // the smallest with a body (a handshake's size).
    let full = 1500 - wire::IP_UDP_OVERHEAD - SEAL_OVERHEAD;
    if a.get(1).map(String::as_str) == Some("one") {
        let len: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(full);
        let n: u64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(10_000);
        let (mut tx, mut rx) = pair();
        run(&mut tx, &mut rx, len, n);
        return;
    }
    let rounds: usize = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(21);
    let n: u64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(5_000);
    for len in [full, 160, HEADER_LEN + 16] {
        let (mut tx, mut rx) = pair();
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (t, c) = (Instant::now(), cpu_ns());
            run(&mut tx, &mut rx, len, n);
            wall.push(t.elapsed().as_nanos() as f64 / n as f64);
            cpu.push((cpu_ns() - c) / n as f64);
        }
        println!(
            "{:5} bytes sealed: seal + open {:7.0} ns wall, {:7.0} ns CPU (medians of {rounds} \
             rounds of {n})",
            len + SEAL_OVERHEAD,
            median(wall),
            median(cpu)
        );
    }
}
