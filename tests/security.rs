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
//! - a daemon without a key says loudly that it is UNAUTHENTICATED.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_makuo");
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// A free TCP port on 127.0.0.1 (for a console).
fn free_tcp_port() -> u16 {
    TcpListener::bind((LO, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// A cluster of daemons on loopback.

struct Daemon {
    name: String,
    child: Child,
    base: PathBuf,
    console: u16,
    log: PathBuf,
}

impl Daemon {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The member's unicast reply address, from its start-up log line.
    fn reply_addr(&self) -> SocketAddr {
        let log = self.stderr();
        let at = log
            .find(", reply ")
            .expect("start-up line names the reply address");
        let rest = &log[at + 8..];
        rest[..rest.find(',').unwrap()].parse().unwrap()
    }

    /// Sends `cmd` to the console; returns the lines before the final one, and that one.
    fn console(&self, cmd: &str) -> (Vec<String>, String) {
        let s = TcpStream::connect((LO, self.console)).expect("console answers");
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut w = s.try_clone().unwrap();
        writeln!(w, "{cmd}").unwrap();
        let mut r = BufReader::new(s);
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            assert!(r.read_line(&mut l).unwrap() > 0, "console closed");
            let l = l.trim_end().to_string();
            if l == "ok" || l.starts_with("error:") {
                let _ = writeln!(w, "quit");
                return (lines, l);
            }
            lines.push(l);
        }
    }

    /// `status` on the console, which must end with `ok`.
    fn status(&self) -> Status {
        let (lines, last) = self.console("status");
        assert_eq!(
            last, "ok",
            "{}: status answered {last:?}: {lines:?}",
            self.name
        );
        Status::parse(lines)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The counters of a `status` answer.
#[derive(Debug)]
struct Status {
    lines: Vec<String>,
    /// Numbers by name: `dropped`, `auth`, `opened`, `bad-tag`, `unsealed`, `unknown-key`,
    /// `replayed`, `stale`, `received`.
    n: BTreeMap<String, u64>,
}

impl Status {
    fn parse(lines: Vec<String>) -> Self {
        let mut n = BTreeMap::new();
        for l in &lines {
            let words: Vec<&str> = l
                .split([' ', '(', ')', ','])
                .filter(|w| !w.is_empty())
                .collect();
            for pair in words.windows(2) {
                if let Ok(v) = pair[1].parse::<u64>() {
                    n.entry(pair[0].to_string()).or_insert(v);
                }
            }
        }
        Self { lines, n }
    }

    fn get(&self, k: &str) -> u64 {
        *self
            .n
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in status {:?}", self.lines))
    }

    fn line(&self, start: &str) -> &str {
        self.lines
            .iter()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start} line in {:?}", self.lines))
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    group: Ipv4Addr,
    port: u16,
    daemons: Vec<Daemon>,
}

impl Cluster {
    fn new() -> Self {
        let r = rand_u64();
        Self {
            dir: tempfile::tempdir().unwrap(),
            group: Ipv4Addr::new(239, 255, (r >> 8) as u8, (r as u8).max(1)),
            port: 20_000 + (r >> 16) as u16 % 30_000,
            daemons: Vec::new(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A new key file made by `makuo keygen FILE`.
    fn keygen(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        let out = makuo(&["keygen", p.to_str().unwrap()]);
        assert!(out.status.success(), "keygen: {}", text(&out.stderr));
        p
    }

    fn spawn(&self, name: &str, keys: &[&Path], extra: &[&str]) -> Daemon {
        let base = self.path(&format!("{name}-base"));
        std::fs::create_dir_all(&base).unwrap();
        let console = free_tcp_port();
        let log = self.path(&format!("{name}.log"));
        let mut cmd = Command::new(EXE);
        cmd.args(["daemon", "-n", "-i", "127.0.0.1", "-m"])
            .arg(self.group.to_string())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-b")
            .arg(&base)
            .arg("--state-dir")
            .arg(self.path(&format!("{name}-state")))
            .args(["--name", name, "-P", &console.to_string(), "--no-fsync"])
            .args(extra);
        for k in keys {
            cmd.arg("-k").arg(k);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            name: name.into(),
            child,
            base,
            console,
            log,
        }
    }

    /// Starts a daemon and waits until its console answers.
    fn start(&mut self, name: &str, keys: &[&Path]) -> &Daemon {
        let mut d = self.spawn(name, keys, &[]);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(d.alive(), "{name} exited: {}", d.stderr());
            if TcpStream::connect((LO, d.console)).is_ok() && d.stderr().contains(" up: ") {
                break;
            }
            assert!(Instant::now() < end, "{name} did not start: {}", d.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        self.daemons.push(d);
        self.daemons.last().unwrap()
    }

    /// `makuo sync --direct -r` of everything in `src`, with these keys.
    fn sync(&self, src: &Path, keys: &[&Path], extra: &[&str]) -> Output {
        let mut args: Vec<String> = [
            "sync",
            "--direct",
            "-r",
            "-i",
            "127.0.0.1",
            "-m",
            &self.group.to_string(),
            "-p",
            &self.port.to_string(),
            "--discover",
            "700",
            "-b",
            src.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for k in keys {
            args.push("-k".into());
            args.push(k.to_str().unwrap().into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(".".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        makuo(&args)
    }

    fn group_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.group, self.port))
    }
}

fn makuo(args: &[&str]) -> Output {
    Command::new(EXE)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}stderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// Every path under `dir` with its contents (`None` for directories) and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Option<Vec<u8>>, u32)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if m.is_dir() {
                todo.push(p);
                out.insert(rel, (None, m.permissions().mode()));
            } else if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.insert(rel, (Some(t.into_os_string().into_encoded_bytes()), 0));
            } else {
                out.insert(
                    rel,
                    (Some(std::fs::read(&p).unwrap()), m.permissions().mode()),
                );
            }
        }
    }
    out
}

fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// A small source tree: a docroot with a few files of different sizes.
fn source(c: &Cluster, name: &str, version: &str) -> PathBuf {
    let src = c.path(name);
    write(
        &src.join("site/index.html"),
        format!("<h1>{version}</h1>\n").as_bytes(),
    );
    write(&src.join("site/app.php"), version.repeat(3000).as_bytes());
    write(&src.join("site/img/logo.bin"), &vec![7u8; 70_000]);
    src
}

/// Sends raw datagrams on the loopback interface.
fn raw_sender() -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.bind(&SocketAddrV4::new(LO, 0).into()).unwrap();
    s.set_multicast_if_v4(&LO).unwrap();
    s.set_multicast_ttl_v4(1).unwrap();
    s.set_multicast_loop_v4(true).unwrap();
    s.into()
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
        s.bind(&SocketAddrV4::new(c.group, c.port).into()).unwrap();
        s.join_multicast_v4(&c.group, &LO).unwrap();
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
    let mut c = Cluster::new();
    let key = c.keygen("cluster.key");
    c.start("web1", &[&key]);
    c.start("web2", &[&key]);
    let src = source(&c, "src", "v1");
    let out = c.sync(&src, &[&key], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    for d in &c.daemons {
        assert_eq!(snapshot(&d.base), snapshot(&src), "{} differs", d.name);
        let s = d.status();
        assert_eq!(s.line("authenticated"), "authenticated yes");
        assert!(s.get("opened") > 0, "{:?}", s.lines);
    }
}

#[test]
fn sender_without_the_key_or_with_a_wrong_key_changes_nothing() {
    let mut c = Cluster::new();
    let key = c.keygen("cluster.key");
    let wrong = c.keygen("wrong.key");
    c.start("web1", &[&key]);
    c.start("web2", &[&key]);
    // The members hold a docroot; the intruder wants to replace a page, add one and (with
    // --delete) remove the rest.
    for d in &c.daemons {
        write(&d.base.join("site/index.html"), b"<h1>the real site</h1>\n");
        write(&d.base.join("site/keep.php"), b"<?php keep(); ?>\n");
    }
    let before: Vec<_> = c.daemons.iter().map(|d| snapshot(&d.base)).collect();
    let evil = c.path("evil");
    write(&evil.join("site/index.html"), b"<h1>defaced</h1>\n");
    write(
        &evil.join("site/backdoor.php"),
        b"<?php system($_GET['c']); ?>\n",
    );

    for (what, keys) in [("no key", vec![]), ("a wrong key", vec![wrong.as_path()])] {
        let out = c.sync(&evil, &keys, &["--delete"]);
        assert_eq!(out.status.code(), Some(10), "{what}: {}", show(&out));
        let err = text(&out.stderr);
        assert!(err.contains("no member answered"), "{what}: {}", show(&out));
        for (d, b) in c.daemons.iter().zip(&before) {
            assert_eq!(&snapshot(&d.base), b, "{what}: {} changed", d.name);
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
    let out = c.sync(&evil, &[&key], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn key_rotation_follows_the_documented_steps() {
    // docs/protocol-sealing.md: 1 `-k OLD`, 2 `-k OLD -k NEW`, 3 `-k NEW -k OLD`, 4 `-k NEW`;
    // nodes at most one step apart understand each other.
    let mut c = Cluster::new();
    let old = c.keygen("old.key");
    let new = c.keygen("new.key");
    let src = source(&c, "src", "rotated");
    // Members at step 2.
    c.start("web1", &[&old, &new]);
    c.start("web2", &[&old, &new]);
    for (step, keys) in [(1, vec![old.as_path()]), (3, vec![&new, &old])] {
        let out = c.sync(&src, &keys, &["-c"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "sender at step {step}: {}",
            show(&out)
        );
    }
    for d in &c.daemons {
        assert_eq!(snapshot(&d.base), snapshot(&src), "{}", d.name);
    }
    drop(std::mem::take(&mut c.daemons));

    // Members at step 3.
    c.start("web3", &[&new, &old]);
    c.start("web4", &[&new, &old]);
    for (step, keys) in [(2, vec![old.as_path(), &new]), (4, vec![&new])] {
        let out = c.sync(&src, &keys, &["-c"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "sender at step {step}: {}",
            show(&out)
        );
    }
    for d in &c.daemons {
        assert_eq!(snapshot(&d.base), snapshot(&src), "{}", d.name);
    }
    // Two steps apart: a sender still at step 1 cannot open the members' heartbeats (sealed
    // with NEW), so it finds nobody and changes nothing.
    write(&src.join("site/index.html"), b"<h1>stale sender</h1>\n");
    let out = c.sync(&src, &[&old], &[]);
    assert_eq!(
        out.status.code(),
        Some(10),
        "sender at step 1: {}",
        show(&out)
    );
    for d in &c.daemons {
        assert_ne!(
            std::fs::read(d.base.join("site/index.html")).unwrap(),
            b"<h1>stale sender</h1>\n"
        );
    }
}

#[test]
fn key_files_others_can_read_are_refused() {
    let mut c = Cluster::new();
    let key = c.keygen("cluster.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut d = c.spawn("web1", &[&key], &[]);
    let status = d.child.wait().unwrap();
    assert!(!status.success());
    let err = d.stderr();
    assert!(
        err.contains("accessible by group or others") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains(" up: "), "it started anyway: {err}");

    let src = source(&c, "src", "v1");
    let out = c.sync(&src, &[&key], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stderr).contains("chmod 600"), "{}", show(&out));

    // A malformed key is refused as clearly.
    let bad = c.path("bad.key");
    std::fs::write(&bad, "not a key\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = c.sync(&src, &[&bad], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("64 hex digits"),
        "{}",
        show(&out)
    );

    // Restricted again, it works.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
    c.start("web2", &[&key]);
}

#[test]
fn keygen_never_overwrites() {
    let c = Cluster::new();
    let key = c.keygen("cluster.key");
    let first = std::fs::read(&key).unwrap();
    assert_eq!(first.len(), 65);
    assert!(first[..64].iter().all(u8::is_ascii_hexdigit) && first[64] == b'\n');
    let out = makuo(&["keygen", key.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        show(&out)
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        first,
        "the key was overwritten"
    );
    // Not through a symlink either.
    let link = c.path("link.key");
    std::os::unix::fs::symlink(c.path("elsewhere"), &link).unwrap();
    let out = makuo(&["keygen", link.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(!c.path("elsewhere").exists());
    // `-` prints a fresh key.
    let out = makuo(&["keygen", "-"]);
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 65);
    assert_ne!(out.stdout, first);
}

#[test]
fn unkeyed_daemon_warns_loudly() {
    let mut c = Cluster::new();
    let d = c.start("web1", &[]);
    assert!(d.stderr().contains("UNAUTHENTICATED"), "{}", d.stderr());
    let s = d.status();
    assert!(s.line("authenticated").contains("NO"), "{:?}", s.lines);
}

/// 20 000 datagrams to the group and 5 000 to one member's reply port: random bytes, random
/// bytes behind a plausible sealed header, and bit-flipped, truncated, extended or verbatim
/// copies of real sealed datagrams captured during a push.
#[test]
fn flood_of_garbage_and_bit_flipped_datagrams_leaves_every_daemon_alive() {
    let mut c = Cluster::new();
    let key = c.keygen("cluster.key");
    for name in ["web1", "web2", "web3"] {
        c.start(name, &[&key]);
    }
    let src = source(&c, "src", "v1");
    let cap = Capture::start(&c);
    let out = c.sync(&src, &[&key], &[]);
    let captured = cap.finish();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
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
        assert!(d.alive(), "{} died: {}", d.name, d.stderr());
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
    let out = c.sync(&src2, &[&key], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    for d in &c.daemons {
        assert_eq!(snapshot(&d.base), snapshot(&src2), "{}", d.name);
    }
}

#[test]
fn replayed_push_does_not_revert_a_changed_file() {
    let mut c = Cluster::new();
    let key = c.keygen("cluster.key");
    c.start("web1", &[&key]);
    c.start("web2", &[&key]);
    // Push v1 while recording every datagram sent to the group.
    let v1 = source(&c, "v1", "v1");
    let cap = Capture::start(&c);
    let out = c.sync(&v1, &[&key], &[]);
    std::thread::sleep(Duration::from_millis(200));
    let captured = cap.finish();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
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
    let out = c.sync(&v2, &[&key], &["-t", "web1"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let edited = b"<h1>hotfix made by hand on web2</h1>\n";
    write(&c.daemons[1].base.join("site/index.html"), edited);
    let want = [snapshot(&c.daemons[0].base), snapshot(&c.daemons[1].base)];
    assert_eq!(want[0], snapshot(&v2));
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
            snapshot(&d.base),
            want[i],
            "{} was reverted by a replay",
            d.name
        );
        let s = d.status();
        let replayed = s.get("replayed") - before[i].get("replayed");
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
