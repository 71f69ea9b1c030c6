//! Per-datagram cost of sealing: one `Sealer` seals datagrams, another (which verified the
//! first with the challenge) opens them, as a sender and a receiver do at the socket edge.
//!
//! `cargo run --release --example sealbench [ROUNDS] [N]` prints, for a full block datagram
//! (1,472 bytes sealed, as on a 1,500-byte MTU) and small control datagrams, the median over
//! ROUNDS of the wall-clock and CPU nanoseconds per seal + open (N datagrams per round).
//! Then the two ciphers alone, interleaved round by round so that a change in the machine's
//! load lands on both: format 1's XChaCha20-Poly1305 (the `chacha20poly1305` crate, as format 1
//! sealed: the cluster key, a 24-byte nonce per datagram) against format 2's AES-256-GCM
//! (`ring`, a node key set up once), one seal plus one open of 1,400-byte and 1,432-byte
//! plaintexts (a 1,400-byte datagram's body, a full block datagram's) and a 24-byte one.
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
    assert!(
        rx.open(&mut buf, n, addr(1), false, now, 0).is_err(),
        "unverified"
    );
    for _ in 0..3 {
        let mut h = [0u8; HANDSHAKE_LEN];
        while let Some((_, n)) = rx.poll_handshake(&mut h) {
            let _ = tx.open(&mut h, n, addr(2), false, now, 0);
        }
        while let Some((_, n)) = tx.poll_handshake(&mut h) {
            let _ = rx.open(&mut h, n, addr(1), false, now, 0);
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
        let r = rx.open(&mut d, s, addr(1), false, now, 0);
        assert_eq!(r.ok(), Some(Opened::Datagram(plain)));
    }
}

/// One AEAD seal + open of a datagram body in place, with the header as associated data.
type Cipher = Box<dyn FnMut(u64, &[u8; HEADER_LEN], &mut Vec<u8>)>;

/// Format 1: XChaCha20-Poly1305 under the cluster key, nonce `node | seq | "MKseal02"`.
fn xchacha(key: [u8; 32]) -> Cipher {
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::XChaCha20Poly1305;
    let c = XChaCha20Poly1305::new(&key.into());
    Box::new(move |seq, hdr, body| {
        let mut nonce = [0u8; 24];
        nonce[..8].copy_from_slice(&TX.to_be_bytes());
        nonce[8..16].copy_from_slice(&seq.to_be_bytes());
        nonce[16..].copy_from_slice(b"MKseal02");
        let tag = c
            .encrypt_in_place_detached(&nonce.into(), hdr, body)
            .unwrap();
        c.decrypt_in_place_detached(&nonce.into(), hdr, body, &tag)
            .unwrap();
    })
}

/// Format 2: AES-256-GCM under the sender's node key (derived once), nonce `0000 | seq`.
fn aes_gcm(key: [u8; 32]) -> Cipher {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
    let nonce = |seq: u64| {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&seq.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    };
    Box::new(move |seq, hdr, body| {
        let tag = k
            .seal_in_place_separate_tag(nonce(seq), Aad::from(hdr), body)
            .unwrap();
        body.extend_from_slice(tag.as_ref());
        let n = k
            .open_in_place(nonce(seq), Aad::from(hdr), body)
            .unwrap()
            .len();
        body.truncate(n);
    })
}

/// CPU nanoseconds per seal + open of `n` bodies of `len` bytes.
fn cipher_round(c: &mut Cipher, seq: &mut u64, len: usize, n: u64) -> f64 {
    let hdr = [0x4d; HEADER_LEN];
    let mut body = Vec::with_capacity(len + 16);
    let t = cpu_ns();
    for _ in 0..n {
        body.clear();
        body.resize(len, 0x5a);
        *seq += 1;
        c(*seq, &hdr, &mut body);
    }
    let ns = (cpu_ns() - t) / n as f64;
    assert_eq!(body, vec![0x5a; len], "the round trip gave the body back");
    ns
}

fn ciphers(rounds: usize, n: u64) {
    let key = [7u8; 32];
    // 1,432: a full sealed datagram's plaintext (body and timestamp) on a 1,500-byte MTU.
    for len in [1400, 1500 - wire::IP_UDP_OVERHEAD - HEADER_LEN - 16, 24] {
        let mut fmt1 = xchacha(key);
        let mut fmt2 = aes_gcm(key);
        let (mut a, mut b, mut seq) = (Vec::new(), Vec::new(), 0);
        for _ in 0..rounds {
            a.push(cipher_round(&mut fmt1, &mut seq, len, n));
            b.push(cipher_round(&mut fmt2, &mut seq, len, n));
        }
        let (a, b) = (median(a), median(b));
        println!(
            "{len:5}-byte plaintext: XChaCha20-Poly1305 (format 1) {a:6.0} ns CPU, AES-256-GCM \
             (format 2) {b:6.0} ns CPU, x{:.1} (seal + open, medians of {rounds} rounds of {n})",
            a / b
        );
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
    ciphers(rounds, n);
}
