//! The security issue's loopback tests, with the real binary and keyed daemons.
//!
//! Each test starts its own daemons on 127.0.0.1 (`-i 127.0.0.1`, a random group in
//! 239.255.0.0/16, a random port, private base and state directories, keys made with
//! `makuo keygen FILE`) and talks to them as an operator would: `makuo sync --direct`, and
//! the console (`status`). Raw datagrams (captures, floods, replays) go through std sockets
//! on the loopback interface with TTL 1.
//!
//! - a keyed push reaches every member;
//! - a sender without the key, or with a wrong one, changes nothing on any member and exits
//!   non-zero with a clear message (it cannot open the members' heartbeats, so it finds
//!   none: exit 10, "no member answered");
//! - key rotation works as `docs/protocol-sealing.md` describes (nodes one step apart talk,
//!   two steps apart do not);
//! - a key file others may read is refused, `keygen` never overwrites;
//! - a flood of 25 000 garbage and bit-flipped sealed datagrams to the group and to a
//!   member's reply port leaves every daemon alive, answering `status` with `ok` and
//!   counting what it dropped; a push still works afterwards;
//! - datagrams captured during a keyed push and replayed after the sender exited revert
//!   nothing and are counted as replayed;
//! - a daemon without a key says loudly that it is UNAUTHENTICATED;
//! - a node of the previous seal format (1) and a daemon of the current one (2) refuse each
//!   other, each saying in its log that they cannot talk and who must upgrade; the old node is
//!   no member.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// `makuo sync --direct -r --discover 700 -b SRC` with exactly these keys, of everything in
/// `src`.
fn push(c: &Cluster, src: &Path, keys: &[&Path], extra: &[&str]) -> Run {
    let mut args = vec!["-r", "--discover", "700"];
    args.extend_from_slice(extra);
    args.push(".");
    c.direct_keys(src, keys, "sync", &args)
}

/// A small source tree: a docroot with a few files of different sizes.
fn source(c: &Cluster, name: &str, version: &str) -> PathBuf {
    let src = c.path(name);
    write(
        &src,
        "site/index.html",
        format!("<h1>{version}</h1>\n").as_bytes(),
    );
    write(&src, "site/app.php", version.repeat(3000).as_bytes());
    write(&src, "site/img/logo.bin", vec![7u8; 70_000]);
    src
}

/// Records every datagram sent to the group (joined on 127.0.0.1) until stopped.
struct Capture {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    fn start(c: &Cluster) -> Self {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_reuse_address(true).unwrap();
        s.set_reuse_port(true).unwrap();
        let group: Ipv4Addr = c.group.parse().unwrap();
        s.bind(&SocketAddrV4::new(group, c.port).into()).unwrap();
        s.join_multicast_v4(&group, &LO).unwrap();
        s.set_recv_buffer_size(8 << 20).unwrap();
        let s: UdpSocket = s.into();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (st, g) = (stop.clone(), got.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !st.load(Ordering::Relaxed) {
                if let Ok(n) = s.recv(&mut buf) {
                    g.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        });
        Self {
            stop,
            got,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

/// Node id (bytes 8..16) of a datagram.
fn node_of(d: &[u8]) -> u64 {
    u64::from_be_bytes(d[8..16].try_into().unwrap())
}

// ---------------------------------------------------------------------------------------------

#[test]
fn keyed_push_reaches_every_member() {
    let mut c = Cluster::unkeyed();
    let key = c.keygen("cluster.key");
    c.add_with_keys("web1", &[&key], &[]);
    c.add_with_keys("web2", &[&key], &[]);
    let src = source(&c, "src", "v1");
    let out = push(&c, &src, &[&key], &[]);
    assert_eq!(out.code, 0, "{}", out);
    for d in &c.daemons {
        assert_eq!(
            fingerprint(&d.base),
            fingerprint(&src),
            "{} differs",
            d.name
        );
        let s = d.status();
        assert_eq!(s.line("authenticated"), "authenticated yes");
        assert!(s.get("opened") > 0, "{:?}", s.lines);
    }
}

#[test]
fn sender_without_the_key_or_with_a_wrong_key_changes_nothing() {
    let mut c = Cluster::unkeyed();
    let key = c.keygen("cluster.key");
    let wrong = c.keygen("wrong.key");
    c.add_with_keys("web1", &[&key], &[]);
    c.add_with_keys("web2", &[&key], &[]);
    // The members hold a docroot; the intruder wants to replace a page, add one and (with
    // --delete) remove the rest.
    for d in &c.daemons {
        write(&d.base, "site/index.html", b"<h1>the real site</h1>\n");
        write(&d.base, "site/keep.php", b"<?php keep(); ?>\n");
    }
    let before: Vec<_> = c.daemons.iter().map(|d| fingerprint(&d.base)).collect();
    let evil = c.path("evil");
    write(&evil, "site/index.html", b"<h1>defaced</h1>\n");
    write(
        &evil,
        "site/backdoor.php",
        b"<?php system($_GET['c']); ?>\n",
    );

    for (what, keys) in [("no key", vec![]), ("a wrong key", vec![wrong.as_path()])] {
        let out = push(&c, &evil, &keys, &["--delete"]);
        assert_eq!(out.code, 10, "{what}: {}", out);
        let err = &out.stderr;
        assert!(err.contains("no member answered"), "{what}: {}", out);
        for (d, b) in c.daemons.iter().zip(&before) {
            assert_eq!(&fingerprint(&d.base), b, "{what}: {} changed", d.name);
        }
    }
    // The members heard the intruder and refused everything it sent.
    for d in &c.daemons {
        let s = d.status();
        assert!(s.get("unsealed") > 0, "{}: {:?}", d.name, s.lines);
        assert!(s.get("unknown-key") + s.get("bad-tag") > 0, "{:?}", s.lines);
        assert_eq!(s.line("last-push"), "last-push -", "{}", d.name);
    }
    // And the genuine key still works.
    let out = push(&c, &evil, &[&key], &[]);
    assert_eq!(out.code, 0, "{}", out);
}

#[test]
fn key_rotation_follows_the_documented_steps() {
    // docs/protocol-sealing.md: 1 `-k OLD`, 2 `-k OLD -k NEW`, 3 `-k NEW -k OLD`, 4 `-k NEW`;
    // nodes at most one step apart understand each other.
    let mut c = Cluster::unkeyed();
    let old = c.keygen("old.key");
    let new = c.keygen("new.key");
    let src = source(&c, "src", "rotated");
    // Members at step 2.
    c.add_with_keys("web1", &[&old, &new], &[]);
    c.add_with_keys("web2", &[&old, &new], &[]);
    for (step, keys) in [(1, vec![old.as_path()]), (3, vec![&new, &old])] {
        let out = push(&c, &src, &keys, &["-c"]);
        assert_eq!(out.code, (0), "sender at step {step}: {}", out);
    }
    for d in &c.daemons {
        assert_eq!(fingerprint(&d.base), fingerprint(&src), "{}", d.name);
    }
    drop(std::mem::take(&mut c.daemons));

    // Members at step 3.
    c.add_with_keys("web3", &[&new, &old], &[]);
    c.add_with_keys("web4", &[&new, &old], &[]);
    for (step, keys) in [(2, vec![old.as_path(), &new]), (4, vec![&new])] {
        let out = push(&c, &src, &keys, &["-c"]);
        assert_eq!(out.code, (0), "sender at step {step}: {}", out);
    }
    for d in &c.daemons {
        assert_eq!(fingerprint(&d.base), fingerprint(&src), "{}", d.name);
    }
    // Two steps apart: a sender still at step 1 cannot open the members' heartbeats (sealed
    // with NEW), so it finds nobody and changes nothing.
    write(&src, "site/index.html", b"<h1>stale sender</h1>\n");
    let out = push(&c, &src, &[&old], &[]);
    assert_eq!(out.code, 10, "sender at step 1: {out}");
    for d in &c.daemons {
        assert_ne!(
            std::fs::read(d.base.join("site/index.html")).unwrap(),
            b"<h1>stale sender</h1>\n"
        );
    }
}

#[test]
fn key_files_others_can_read_are_refused() {
    let mut c = Cluster::unkeyed();
    let key = c.keygen("cluster.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut d = c.daemon_with_keys("web1", &[&key], &[]);
    d.spawn();
    let status = d.wait_exit(Duration::from_secs(10)).expect("web1 exits");
    assert!(!status.success());
    let err = d.log_text();
    assert!(
        err.contains("accessible by group or others") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains(" up: "), "it started anyway: {err}");

    let src = source(&c, "src", "v1");
    let out = push(&c, &src, &[&key], &[]);
    assert_eq!(out.code, 1, "{}", out);
    assert!(out.stderr.contains("chmod 600"), "{}", out);

    // A malformed key is refused as clearly.
    let bad = c.path("bad.key");
    std::fs::write(&bad, "not a key\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = push(&c, &src, &[&bad], &[]);
    assert_eq!(out.code, 1, "{}", out);
    assert!(out.stderr.contains("64 hex digits"), "{}", out);

    // Restricted again, it works.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
    c.add_with_keys("web2", &[&key], &[]);
}

#[test]
fn keygen_never_overwrites() {
    let c = Cluster::unkeyed();
    let key = c.keygen("cluster.key");
    let first = std::fs::read(&key).unwrap();
    assert_eq!(first.len(), 65);
    assert!(first[..64].iter().all(u8::is_ascii_hexdigit) && first[64] == b'\n');
    let out = makuo(&["keygen", key.to_str().unwrap()]);
    assert!(out.code != 0);
    assert!(out.stderr.contains("already exists"), "{}", out);
    assert_eq!(
        std::fs::read(&key).unwrap(),
        first,
        "the key was overwritten"
    );
    // Not through a symlink either.
    let link = c.path("link.key");
    std::os::unix::fs::symlink(c.path("elsewhere"), &link).unwrap();
    let out = makuo(&["keygen", link.to_str().unwrap()]);
    assert!(out.code != 0, "{}", out);
    assert!(!c.path("elsewhere").exists());
    // `-` prints a fresh key.
    let out = makuo(&["keygen", "-"]);
    assert!(out.code == 0);
    assert_eq!(out.stdout.len(), 65);
    assert_ne!(out.stdout.as_bytes(), first);
}

#[test]
fn unkeyed_daemon_warns_loudly() {
    let mut c = Cluster::unkeyed();
    let i = c.add_with_keys("web1", &[], &[]);
    let d = &c.daemons[i];
    assert!(d.log_text().contains("UNAUTHENTICATED"), "{}", d.log_text());
    let s = d.status();
    assert!(s.line("authenticated").contains("NO"), "{:?}", s.lines);
}

/// Seal format 1, as makuo sealed before format 2 (kept here for these tests only, as in
/// `src/seal/tests.rs`, whose known-answer test pins it to format 1's documented vector):
/// XChaCha20-Poly1305 under the cluster key itself, nonce `node | seq | "MKseal02"`, format 1 in
/// flag bits 1-3; and what a format-1 node checked on receipt, in its order, in its words.
mod format1 {
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
    use makuo::proto::wire::{FLAG_SEALED, HEADER_LEN, SEAL_OVERHEAD};
    use makuo::seal::Key;

    const TAG: usize = 16;
    const TS: usize = 8;
    const FORMAT: u8 = 1;

    fn cipher(key: &Key) -> XChaCha20Poly1305 {
        let hex = key.to_hex();
        let raw: [u8; 32] =
            std::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap());
        XChaCha20Poly1305::new(&raw.into())
    }

    fn nonce(d: &[u8]) -> XNonce {
        let mut n = [0u8; 24];
        n[..16].copy_from_slice(&d[8..24]);
        n[16..].copy_from_slice(b"MKseal02");
        n.into()
    }

    /// `unsealed` (a datagram as the engine encodes it), sealed by a format-1 node as its
    /// datagram number `seq`.
    pub fn seal(key: &Key, unsealed: &[u8], seq: u64, now_ms: u64) -> Vec<u8> {
        let mut d = unsealed.to_vec();
        d[4] |= FLAG_SEALED | (FORMAT << 1);
        d[5] = key.id();
        d[16..24].copy_from_slice(&seq.to_be_bytes());
        d.extend_from_slice(&now_ms.to_be_bytes());
        let n = nonce(&d);
        let (hdr, rest) = d.split_at_mut(HEADER_LEN);
        let tag = cipher(key)
            .encrypt_in_place_detached(&n, hdr, rest)
            .unwrap();
        d.extend_from_slice(&tag);
        assert_eq!(d.len(), unsealed.len() + SEAL_OVERHEAD);
        d
    }

    /// What a format-1 node made of sealed datagram `d` up to the tag: its body length, or the
    /// refusal it logged (`SealError`'s words in format 1).
    pub fn open(key: &Key, cluster: u16, d: &[u8]) -> Result<usize, String> {
        if d.len() < HEADER_LEN + SEAL_OVERHEAD || &d[..2] != b"MK" || d[4] & FLAG_SEALED == 0 {
            return Err("malformed or unsealed".into());
        }
        if u16::from_be_bytes([d[6], d[7]]) != cluster {
            return Err("another cluster".into());
        }
        let format = (d[4] >> 1) & 7;
        if format != FORMAT {
            return Err(format!(
                "sealed in format {format}, this makuo speaks format 1{}",
                if format < FORMAT {
                    " (an older makuo: upgrade it)"
                } else {
                    " (a newer makuo: upgrade this one)"
                }
            ));
        }
        if d[5] != key.id() {
            return Err(format!("sealed with an unknown key (id {:#04x})", d[5]));
        }
        let mut d = d.to_vec();
        let n = nonce(&d);
        let (hdr, rest) = d.split_at_mut(HEADER_LEN);
        let (ct, tag) = rest.split_at_mut(rest.len() - TAG);
        let tag = Tag::clone_from_slice(tag);
        cipher(key)
            .decrypt_in_place_detached(&n, hdr, ct, &tag)
            .map_err(|_| "authentication failed".to_string())?;
        Ok(ct.len() - TS)
    }
}

/// An unsealed HEARTBEAT of a receiving member named `name`, as any makuo's engine encodes it.
fn heartbeat(cluster: u16, node: u64, name: &[u8]) -> Vec<u8> {
    use makuo::proto::wire::{self, Header, Heartbeat, Msg};
    let hdr = Header {
        version: wire::VERSION,
        kind: 0,
        flags: 0,
        key_id: 0,
        cluster,
        node,
        seq: 0,
    };
    let m = Msg::Heartbeat(Heartbeat {
        flags: wire::HB_RECEIVER | wire::HB_JOIN,
        proto_min: wire::VERSION,
        proto_max: wire::VERSION,
        interval_ms: 1000,
        name,
        version: b"0.1.0",
        info: b"",
        known_raw: b"",
        known_count: 0,
    });
    let mut buf = vec![0u8; 2048];
    let n = m.encode(&hdr, &mut buf);
    buf.truncate(n);
    buf
}

/// Issue 13's must-show: a node of the old seal format (1) and one of the new (2) refuse each
/// other, each with a log line naming both formats and who must upgrade, never silently.
/// The old node is played by this test (format 1's sealer and checks, above), the new one is a
/// real daemon.
#[test]
fn old_and_new_seal_formats_refuse_each_other_with_a_clear_log_line() {
    let mut c = Cluster::unkeyed();
    let key = c.keygen("cluster.key");
    let cap = Capture::start(&c);
    c.add_with_keys("web1", &[&key], &[]);
    let k = makuo::seal::load_key(&key).unwrap();
    let cluster = makuo::node::cluster_id(c.group.parse().unwrap(), c.port);
    let old_node = rand_u64() | 1;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let plain = heartbeat(cluster, old_node, b"old1");
    let mut seq = 0;
    let mut old_hb = || {
        seq += 1;
        format1::seal(&k, &plain, seq, now_ms())
    };
    // The old node's heartbeats are ones a format-1 node accepts.
    assert_eq!(
        format1::open(&k, cluster, &old_hb()),
        Ok(plain.len() - makuo::proto::wire::HEADER_LEN)
    );

    // Old to new: the daemon refuses them before any cryptography and says so, once a minute
    // per address however many arrive; the old node is no member.
    let tx = raw_sender();
    let from = tx.local_addr().unwrap();
    let want = format!(
        "refused datagrams from {from}: sealed in format 1, this makuo speaks format 2 (an \
         older makuo: upgrade it); they cannot talk to each other"
    );
    let d = &c.daemons[0];
    wait_for("the format notice", Duration::from_secs(10), || {
        let _ = tx.send_to(&old_hb(), c.group_addr());
        std::thread::sleep(Duration::from_millis(100));
        d.log_text().contains(&want).then_some(())
    });
    for _ in 0..20 {
        let _ = tx.send_to(&old_hb(), c.group_addr());
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = d.log_text();
    assert_eq!(log.matches(&want).count(), 1, "{log}");
    assert!(!log.contains("old1"), "{log}");
    let s = d.status();
    assert!(s.get("format") >= 21, "{:?}", s.lines);
    assert_eq!(
        (s.get("bad-tag"), s.get("unverified"), s.get("opened")),
        (0, 0, 0),
        "refused by format, before authentication: {:?}",
        s.lines
    );
    assert_eq!(d.live_members(), ["web1"]);
    let (lines, _) = d.cmd("members");
    assert!(
        !lines.iter().any(|l| l.contains("old1")),
        "members: {lines:?}"
    );

    // New to old: everything the daemon put on the group is sealed in format 2, which the old
    // node refuses by format with its own line, and which it could not open anyway (with the
    // format bits forged to 1, authentication fails: never accepted silently).
    let ours: Vec<Vec<u8>> = cap
        .finish()
        .into_iter()
        .filter(|d| node_of(d) != old_node)
        .collect();
    assert!(!ours.is_empty(), "the daemon sent nothing to the group");
    for dg in &ours {
        assert_eq!(
            format1::open(&k, cluster, dg),
            Err(
                "sealed in format 2, this makuo speaks format 1 (a newer makuo: upgrade this one)"
                    .into()
            )
        );
        let mut forged = dg.clone();
        forged[4] = (forged[4] & !0x0e) | (1 << 1);
        assert_eq!(
            format1::open(&k, cluster, &forged),
            Err("authentication failed".into())
        );
    }

    // And the daemon as the older node: a datagram of a newer seal format (3) is refused
    // with the other advice.
    let tx3 = raw_sender();
    let mut newer = old_hb();
    newer[4] = (newer[4] & !0x0e) | (3 << 1);
    let want3 = format!(
        "refused datagrams from {}: sealed in format 3, this makuo speaks format 2 (a newer \
         makuo: upgrade this one); they cannot talk to each other",
        tx3.local_addr().unwrap()
    );
    wait_for("the newer-format notice", Duration::from_secs(10), || {
        let _ = tx3.send_to(&newer, c.group_addr());
        std::thread::sleep(Duration::from_millis(100));
        d.log_text().contains(&want3).then_some(())
    });
}

/// 20 000 datagrams to the group and 5 000 to one member's reply port: random bytes, random
/// bytes behind a plausible sealed header, and bit-flipped, truncated, extended or verbatim
/// copies of real sealed datagrams captured during a push.
#[test]
fn flood_of_garbage_and_bit_flipped_datagrams_leaves_every_daemon_alive() {
    let mut c = Cluster::unkeyed();
    let key = c.keygen("cluster.key");
    for name in ["web1", "web2", "web3"] {
        c.add_with_keys(name, &[&key], &[]);
    }
    let src = source(&c, "src", "v1");
    let cap = Capture::start(&c);
    let out = push(&c, &src, &[&key], &[]);
    let captured = cap.finish();
    assert_eq!(out.code, 0, "{}", out);
    assert!(captured.len() > 20, "captured only {}", captured.len());
    let before: Vec<Status> = c.daemons.iter().map(Daemon::status).collect();

    let victim = c.daemons[0].reply_addr();
    assert!(victim.ip().is_loopback(), "{victim}");
    let tx = raw_sender();
    let mut x = rand_u64() | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let template = &captured[0];
    let total = 25_000;
    for i in 0..total {
        let mut d = match next() % 6 {
            0 => (0..next() % 1500)
                .map(|_| next() as u8)
                .collect::<Vec<u8>>(),
            1 => {
                // A plausible sealed header (magic, version, sealed flag, key id, cluster).
                let mut d = template[..24].to_vec();
                d.extend((0..next() % 1400).map(|_| next() as u8));
                d[8..24].copy_from_slice(&next().to_be_bytes().repeat(2));
                d
            }
            _ => captured[(next() % captured.len() as u64) as usize].clone(),
        };
        match next() % 5 {
            0 if !d.is_empty() => {
                let p = (next() % d.len() as u64) as usize;
                d[p] ^= 1 << (next() % 8);
            }
            1 if !d.is_empty() => {
                for _ in 0..1 + next() % 8 {
                    let p = (next() % d.len() as u64) as usize;
                    d[p] ^= 1 << (next() % 8);
                }
            }
            2 => d.truncate((next() % (d.len() as u64 + 1)) as usize),
            3 => d.extend((0..next() % 64).map(|_| next() as u8)),
            _ => {} // verbatim: a replay
        }
        let to = if i % 5 == 4 { victim } else { c.group_addr() };
        let _ = tx.send_to(&d, to);
        if i % 200 == 199 {
            // Paced a little so the daemons see most of it rather than socket overflows.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    std::thread::sleep(Duration::from_millis(500));

    for (d, b) in c.daemons.iter_mut().zip(&before) {
        assert!(d.alive(), "{} died: {}", d.name, d.log_text());
        let s = d.status();
        let dropped = s.get("dropped") - b.get("dropped");
        let auth = s.get("auth") - b.get("auth");
        eprintln!(
            "{}: dropped {dropped} (auth {auth}), {}",
            d.name,
            s.line("seal opened")
        );
        assert!(
            dropped >= 5_000,
            "{}: dropped only {dropped}: {:?}",
            d.name,
            s.lines
        );
        assert!(auth >= 5_000, "{}: {:?}", d.name, s.lines);
        assert!(s.get("bad-tag") > b.get("bad-tag"), "{:?}", s.lines);
        assert!(s.get("replayed") > b.get("replayed"), "{:?}", s.lines);
    }
    // The reply port got its share.
    let s = c.daemons[0].status();
    let others = c.daemons[1].status();
    assert!(
        s.get("auth") > others.get("auth"),
        "the flood to the reply port was not counted: {:?} vs {:?}",
        s.lines,
        others.lines
    );
    // Still a working cluster.
    let src2 = source(&c, "src2", "v2");
    let out = push(&c, &src2, &[&key], &[]);
    assert_eq!(out.code, 0, "{}", out);
    for d in &c.daemons {
        assert_eq!(fingerprint(&d.base), fingerprint(&src2), "{}", d.name);
    }
}

#[test]
fn replayed_push_does_not_revert_a_changed_file() {
    let mut c = Cluster::unkeyed();
    let key = c.keygen("cluster.key");
    c.add_with_keys("web1", &[&key], &[]);
    c.add_with_keys("web2", &[&key], &[]);
    // Push v1 while recording every datagram sent to the group.
    let v1 = source(&c, "v1", "v1");
    let cap = Capture::start(&c);
    let out = push(&c, &v1, &[&key], &[]);
    std::thread::sleep(Duration::from_millis(200));
    let captured = cap.finish();
    assert_eq!(out.code, 0, "{}", out);
    // The sender's datagrams: those of the node id no daemon has.
    let daemon_ids: Vec<u64> = c
        .daemons
        .iter()
        .map(|d| {
            u64::from_str_radix(d.status().line("node").trim_start_matches("node "), 16).unwrap()
        })
        .collect();
    let from_sender = captured
        .iter()
        .filter(|d| d.len() >= 24 && !daemon_ids.contains(&node_of(d)))
        .count();
    assert!(
        from_sender > 5,
        "captured {} datagrams, {from_sender} from the sender",
        captured.len()
    );

    // Since then: web1 got v2 by a push, web2's page was edited by hand.
    let v2 = source(&c, "v2", "v2");
    let out = push(&c, &v2, &[&key], &["-t", "web1"]);
    assert_eq!(out.code, 0, "{}", out);
    let edited = b"<h1>hotfix made by hand on web2</h1>\n";
    write(&c.daemons[1].base, "site/index.html", edited);
    let want = [
        fingerprint(&c.daemons[0].base),
        fingerprint(&c.daemons[1].base),
    ];
    assert_eq!(want[0], fingerprint(&v2));
    let before: Vec<Status> = c.daemons.iter().map(Daemon::status).collect();

    // Both senders have exited. Replay the v1 push, twice, in order.
    let tx = raw_sender();
    for round in 0..2 {
        for (i, d) in captured.iter().enumerate() {
            tx.send_to(d, c.group_addr()).unwrap();
            if i % 100 == 99 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        std::thread::sleep(Duration::from_millis(if round == 0 { 300 } else { 1000 }));
    }

    for (i, d) in c.daemons.iter().enumerate() {
        assert_eq!(
            fingerprint(&d.base),
            want[i],
            "{} was reverted by a replay",
            d.name
        );
        let s = d.status();
        // The sender is gone (it said goodbye, and was forgotten): its recorded datagrams
        // draw challenges nobody answers, so they are refused as unverified, or as replays
        // while it was still known.
        let replayed = s.get("replayed") - before[i].get("replayed") + s.get("unverified")
            - before[i].get("unverified");
        eprintln!(
            "{}: {} ({} from the sender, twice)",
            d.name,
            s.line("seal opened"),
            from_sender
        );
        assert!(
            replayed as usize >= from_sender,
            "{}: only {replayed} replays refused: {:?}",
            d.name,
            s.lines
        );
        // Nothing was applied since.
        assert_eq!(s.line("last-push"), before[i].line("last-push"));
    }
}

/// Issue 12's review: a member's name comes from its heartbeats, and a space in it faked
/// columns: `web1 10.0.0.9 live` read as a member named `web1` in `members`, and pushed the
/// result table's columns aside. In every column-separated output a name is one word (spaces
/// written `\#040`, as rsync escapes); JSON keeps the name exact.
#[test]
fn a_name_with_spaces_cannot_fake_columns() {
    let mut c = Cluster::new();
    let evil = "evil 10.9.9.9 live 1.0";
    let e = c.add(evil, &[]);
    c.add("web2", &[]);
    let shown = "evil\\#04010.9.9.9\\#040live\\#0401.0";

    // `members` through web2's console: one line for the evil member, its name one word.
    let (r, line) = wait_for(
        "web2 to list the evil member",
        Duration::from_secs(10),
        || {
            let r = via(&c.daemons[1].console_addr(), "members", "");
            assert_eq!(r.code, 0, "{r}");
            let line = r
                .lines()
                .into_iter()
                .find(|l| l.starts_with("evil"))?
                .to_string();
            Some((r, line))
        },
    );
    let w: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(w[0], shown, "{line}");
    assert_eq!(w[1], "127.0.0.1", "{line}");
    assert_eq!(w[2], "live", "{line}");
    assert!(!r.stdout.contains("10.9.9.9 live"), "{r}");
    // Its own `members` line ("self") too.
    let r = via(&c.daemons[e].console_addr(), "members", "");
    assert!(
        r.lines().iter().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() > 3 && w[..3] == [shown, "127.0.0.1", "self"]
        }),
        "{r}"
    );

    // A push's table: two rows of five columns, the name one word; JSON keeps it exact.
    let src = c.path("src");
    write(&src, "a.txt", b"a\n");
    let r = c.direct_from(&src, "sync", &["-r", "--discover", "700", "."]);
    assert_eq!(r.code, 0, "{r}");
    let rows = r.table(2);
    let row = rows
        .iter()
        .find(|row| row.name.starts_with("evil"))
        .unwrap();
    assert_eq!(row.name, shown, "{r}");
    assert_eq!(row.address, "127.0.0.1", "{r}");
    assert_eq!(row.result, "ok", "{r}");
    let r = c.direct_from(&src, "sync", &["-r", "--discover", "700", "--json", "."]);
    assert_eq!(r.code, 0, "{r}");
    let names: Vec<String> = r.json()["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.iter().any(|n| n == evil), "{names:?}");
}
