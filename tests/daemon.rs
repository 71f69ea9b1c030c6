//! Integration tests of the daemon: the real `makuo` binary, several daemons per test.
//!
//! Every test builds its own cluster under a temporary directory: each daemon has its own base,
//! state dir, console port and name, and the cluster gets a random group in 239.255.0.0/16 and
//! a random port, so tests can run in parallel. On loopback every daemon is started with
//! `-i 127.0.0.1`; the root-only test builds network namespaces on a private bridge with
//! addresses in 198.18.0.0/15. Daemons are SIGTERMed and reaped (and namespaces deleted) by
//! Drop guards, so nothing outlives a failing test; on failure the daemons' logs are printed.
//! Every wait is bounded.

use std::collections::BTreeMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_makuo");

/// Longest any single front-end command may take before the test gives up.
const RUN_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port that was free a moment ago.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A random group in 239.255.0.0/16 (administratively scoped).
fn random_group() -> String {
    let r = rand_u64();
    format!("239.255.{}.{}", (r >> 8) as u8, (r as u8).clamp(1, 254))
}

/// Polls `f` until it gives a value; panics naming `what` after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a child for at most `limit`; `None` if it is still running.
fn wait_child(c: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// What a finished command printed.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs a command to completion, killing it (and failing) after `limit`.
fn run(cmd: &mut Command, limit: Duration) -> Run {
    let mut c = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut out = c.stdout.take().unwrap();
    let mut err = c.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_child(&mut c, limit);
    if status.is_none() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let r = Run {
        code: status.and_then(|s| s.code()),
        stdout: to.join().unwrap(),
        stderr: te.join().unwrap(),
    };
    assert!(status.is_some(), "{cmd:?} ran longer than {limit:?}: {r:?}");
    r
}

/// Runs `cmd` and fails unless it succeeds.
fn sh(cmd: &[&str]) {
    let r = run(
        Command::new(cmd[0]).args(&cmd[1..]),
        Duration::from_secs(20),
    );
    assert_eq!(r.code, Some(0), "{cmd:?} failed: {}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// Trees: generate, fingerprint, compare
// ---------------------------------------------------------------------------------------------

/// Sets a path's mtime (seconds and nanoseconds) without following a symlink.
fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: nsec as _,
        },
    ];
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

fn write_file(p: &Path, data: &[u8], mode: u32, mtime: (i64, i64)) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    set_mtime(p, mtime.0, mtime.1);
}

/// Deterministic filler bytes.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Writes a large file quickly (a pattern that changes every 4 KiB, so no block repeats).
fn write_big(p: &Path, len: usize) {
    let mut f = std::io::BufWriter::new(fs::File::create(p).unwrap());
    let mut block = bytes(0x5eed, 4096);
    let mut left = len;
    let mut n = 0u64;
    while left > 0 {
        block[..8].copy_from_slice(&n.to_le_bytes());
        let k = left.min(block.len());
        f.write_all(&block[..k]).unwrap();
        left -= k;
        n += 1;
    }
    f.flush().unwrap();
}

/// A docroot-like tree: `files` regular files of varied size, mode and mtime (with
/// nanoseconds) in nested dirs, empty dirs, a private dir, symlinks (relative, absolute,
/// dangling, to a dir), odd names, and optionally one big file.
fn make_tree(dir: &Path, files: usize, big: Option<usize>) {
    let base_time = 1_600_000_000i64;
    for i in 0..files {
        let size = match i % 10 {
            0 => 0,
            1..=6 => (i * 397) % 4096,
            7..=8 => 4096 + (i * 7919) % 20000,
            _ => 30000 + (i * 104729) % 150_000,
        };
        let mode = match i % 5 {
            0 => 0o755,
            1 => 0o600,
            2 => 0o640,
            _ => 0o644,
        };
        let p = dir.join(format!("site/d{}/s{}/f{i}.txt", i % 7, i % 3));
        let mtime = (
            base_time + i as i64 * 17,
            (i as i64 * 7_919_117) % 1_000_000_000,
        );
        write_file(&p, &bytes(i as u64 + 1, size), mode, mtime);
    }
    write_file(
        &dir.join("with space & quote\".txt"),
        b"odd name\n",
        0o644,
        (base_time, 0),
    );
    write_file(
        &dir.join("ünïcødé.txt"),
        b"unicode\n",
        0o644,
        (base_time, 1),
    );
    write_file(&dir.join("README"), b"readme\n", 0o444, (base_time, 2));
    fs::create_dir_all(dir.join("empty")).unwrap();
    fs::create_dir_all(dir.join("deep/er/empty")).unwrap();
    fs::create_dir_all(dir.join("private")).unwrap();
    write_file(
        &dir.join("private/secret"),
        b"s3cret\n",
        0o600,
        (base_time, 3),
    );
    fs::set_permissions(dir.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(dir.join("deep/er"), fs::Permissions::from_mode(0o750)).unwrap();
    let links: [(&str, &str); 4] = [
        ("current", "site/d1"),
        ("dangling", "nowhere/at/all"),
        ("site/up", "../README"),
        ("abs", "/nonexistent/makuo/abs"),
    ];
    for (i, (l, t)) in links.iter().enumerate() {
        std::os::unix::fs::symlink(t, dir.join(l)).unwrap();
        set_mtime(&dir.join(l), base_time + 100 + i as i64, 500);
    }
    if let Some(len) = big {
        let p = dir.join("big.bin");
        write_big(&p, len);
        set_mtime(&p, base_time + 1000, 42);
    }
}

/// Everything that must match between the source and a member, per path: kind, permission
/// bits, mtime (not for directories: makuo does not push directory times), a content hash
/// and size for files, the target for symlinks.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        mtime: (i64, i64),
        size: u64,
        hash: u64,
    },
    Symlink {
        target: PathBuf,
        mtime: (i64, i64),
    },
    Other,
}

fn hash_file(p: &Path) -> u64 {
    let mut f = fs::File::open(p).unwrap();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        buf[..n].hash(&mut h);
    }
    h.finish()
}

fn fingerprint(base: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(base: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        let mut names: Vec<_> = fs::read_dir(base.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let p = base.join(&r);
            let Ok(md) = fs::symlink_metadata(&p) else {
                continue; // vanished while walking (a staged file being renamed)
            };
            let ft = md.file_type();
            let mtime = (md.mtime(), md.mtime_nsec());
            let node = if ft.is_dir() {
                walk(base, &r, out);
                Node::Dir {
                    mode: md.mode() & 0o7777,
                }
            } else if ft.is_file() {
                Node::File {
                    mode: md.mode() & 0o7777,
                    mtime,
                    size: md.len(),
                    hash: hash_file(&p),
                }
            } else if ft.is_symlink() {
                Node::Symlink {
                    target: fs::read_link(&p).unwrap(),
                    mtime,
                }
            } else {
                Node::Other
            };
            out.insert(r, node);
        }
    }
    let mut out = BTreeMap::new();
    walk(base, Path::new(""), &mut out);
    out
}

/// Differences between two fingerprints, one line each (empty when identical).
fn diff(want: &BTreeMap<PathBuf, Node>, got: &BTreeMap<PathBuf, Node>) -> Vec<String> {
    let mut d = Vec::new();
    for (p, w) in want {
        match got.get(p) {
            None => d.push(format!("missing {}", p.display())),
            Some(g) if g != w => d.push(format!("{}: want {w:?}, got {g:?}", p.display())),
            _ => {}
        }
    }
    for p in got.keys().filter(|p| !want.contains_key(*p)) {
        d.push(format!("extra {}", p.display()));
    }
    d
}

fn assert_identical(src: &Path, member: &Path, who: &str) {
    let d = diff(&fingerprint(src), &fingerprint(member));
    assert!(
        d.is_empty(),
        "{who} differs from the source in {} place(s):\n  {}",
        d.len(),
        d.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

/// Every path under `base` (relative), without reading contents.
fn paths(base: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(base.join(rel)) else {
            return;
        };
        for e in rd.flatten() {
            let r = rel.join(e.file_name());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &r, out);
            }
            out.push(r);
        }
    }
    let mut out = Vec::new();
    walk(base, Path::new(""), &mut out);
    out.sort();
    out
}

/// makuo's staged files (`.NAME.makuo-XXXXXX`) anywhere under `base`.
fn temp_files(base: &Path) -> Vec<PathBuf> {
    paths(base)
        .into_iter()
        .filter(|p| is_temp_name(&p.file_name().unwrap().to_string_lossy()))
        .collect()
}

/// `.NAME.makuo-XXXXXX`: hidden, a non-empty NAME, six alphanumerics.
fn is_temp_name(n: &str) -> bool {
    let Some(stem) = n.strip_prefix('.') else {
        return false;
    };
    match stem.rsplit_once(".makuo-") {
        Some((name, suffix)) => {
            !name.is_empty()
                && suffix.len() == 6
                && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// Fails if anything of makuo's is in `base`: staged files or state/log files.
fn assert_nothing_of_makuo(base: &Path, who: &str) {
    let bad: Vec<PathBuf> = paths(base)
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.contains(".makuo-") || ["members", "last-push", "makuo.log"].contains(&n.as_ref())
        })
        .collect();
    assert!(bad.is_empty(), "{who}'s base holds makuo files: {bad:?}");
}

// ---------------------------------------------------------------------------------------------
// Console client
// ---------------------------------------------------------------------------------------------

/// A plain TCP console session.
struct Console {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Console {
    fn connect(port: u16) -> Console {
        let s = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("console 127.0.0.1:{port}: {e}"));
        s.set_read_timeout(Some(RUN_LIMIT)).unwrap();
        Console {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn send(&mut self, text: &str) {
        self.w.write_all(text.as_bytes()).unwrap();
    }

    /// One line, without its newline; `None` at EOF.
    fn line(&mut self) -> Option<String> {
        let mut s = String::new();
        match self.r.read_line(&mut s) {
            Ok(0) => None,
            Ok(_) => Some(s.trim_end_matches(['\r', '\n']).to_string()),
            Err(e) => panic!("console read: {e}"),
        }
    }

    /// Reads the lines of one command: those before the final line, and the final line
    /// (`ok` or `error: ...`).
    fn reply(&mut self) -> (Vec<String>, String) {
        let mut lines = Vec::new();
        loop {
            let l = self
                .line()
                .unwrap_or_else(|| panic!("console closed mid-reply after {lines:?}"));
            if l == "ok" || l.starts_with("error:") {
                return (lines, l);
            }
            lines.push(l);
        }
    }

    fn cmd(&mut self, line: &str) -> (Vec<String>, String) {
        self.send(&format!("{line}\n"));
        self.reply()
    }
}

// ---------------------------------------------------------------------------------------------
// Daemons and clusters
// ---------------------------------------------------------------------------------------------

/// One daemon process, restartable with the same base, state dir, name and console port.
struct Daemon {
    name: String,
    base: PathBuf,
    state: PathBuf,
    console: u16,
    log: PathBuf,
    /// Runs the daemon inside a namespace: `ip netns exec NS`.
    netns: Option<String>,
    args: Vec<String>,
    child: Option<Child>,
}

impl Daemon {
    fn command(&self, what: &[&str]) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, EXE]);
                c
            }
            None => Command::new(EXE),
        };
        c.args(what);
        c
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut c = self.command(&["daemon"]);
        c.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(c.spawn().expect("cannot start makuo daemon"));
        self.wait_up();
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon not running").id()
    }

    /// Waits until the console answers (`alive`), failing if the daemon exits.
    fn wait_up(&mut self) {
        let port = self.console;
        let netns = self.netns.is_some();
        let probe = self.command(&["status", "--console", &format!("127.0.0.1:{port}")]);
        let mut probe = Some(probe);
        let name = self.name.clone();
        let log = self.log.clone();
        let child = self.child.as_mut().unwrap();
        wait_for(
            &format!("daemon {name} to answer on its console"),
            Duration::from_secs(10),
            || {
                if let Ok(Some(s)) = child.try_wait() {
                    panic!(
                        "daemon {name} exited ({s}) at start:\n{}",
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                if netns {
                    let r = run(probe.as_mut().unwrap(), Duration::from_secs(10));
                    (r.code == Some(0)).then_some(())
                } else {
                    let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
                    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                    let mut c = Console {
                        r: BufReader::new(s.try_clone().ok()?),
                        w: s,
                    };
                    (c.cmd("alive").1 == "ok").then_some(())
                }
            },
        );
        drop(probe.take());
    }

    /// SIGTERM, then waits (bounded) for the exit; SIGKILL if it did not come.
    fn stop(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        signal(c.id(), libc::SIGCONT);
        signal(c.id(), libc::SIGTERM);
        let s = wait_child(&mut c, Duration::from_secs(5));
        if s.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        s
    }

    /// SIGKILL and reap.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn console(&self) -> Console {
        assert!(self.netns.is_none());
        Console::connect(self.console)
    }

    fn console_addr(&self) -> String {
        format!("127.0.0.1:{}", self.console)
    }

    /// Runs `makuo sync --console THIS -r .` (plus `extra`).
    fn sync(&self, extra: &[&str]) -> Run {
        let addr = self.console_addr();
        let mut args = vec!["sync", "--console", &addr, "-r"];
        args.extend_from_slice(extra);
        args.push(".");
        run(&mut self.command(&args), RUN_LIMIT)
    }

    /// Names of the members this daemon lists as live, in order, from `members`.
    fn live_members(&self) -> Vec<String> {
        let (lines, last) = self.console().cmd("members");
        assert_eq!(last, "ok", "members: {lines:?}");
        lines
            .iter()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() >= 3 && (w[2] == "live" || w[2] == "self")).then(|| w[0].to_string())
            })
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Daemons sharing a random group and port, each in its own dirs under one temp dir.
struct Cluster {
    // Field order matters: daemons are stopped before the temp dir is removed.
    daemons: Vec<Daemon>,
    group: String,
    port: u16,
    tmp: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            daemons: Vec::new(),
            group: random_group(),
            port: free_udp_port(),
            tmp: tempfile::Builder::new()
                .prefix("makuo-itest-")
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Starts a daemon named `name` on loopback with `extra` flags and waits for its console.
    fn add(&mut self, name: &str, extra: &[&str]) -> usize {
        let base = self.path(&format!("{name}/base"));
        fs::create_dir_all(&base).unwrap();
        let console = free_tcp_port();
        self.add_with(name, base, console, None, "127.0.0.1", extra)
    }

    fn add_with(
        &mut self,
        name: &str,
        base: PathBuf,
        console: u16,
        netns: Option<String>,
        iface: &str,
        extra: &[&str],
    ) -> usize {
        let state = self.path(&format!("{name}/state"));
        let mut args: Vec<String> = [
            "-n",
            "-i",
            iface,
            "-m",
            &self.group,
            "-p",
            &self.port.to_string(),
            "--name",
            name,
            "-P",
            &console.to_string(),
            "-d",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("-b".into());
        args.push(base.to_string_lossy().into_owned());
        args.push("--state-dir".into());
        args.push(state.to_string_lossy().into_owned());
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = Daemon {
            name: name.to_string(),
            base,
            state,
            console,
            log: self.path(&format!("{name}.log")),
            netns,
            args,
            child: None,
        };
        d.start();
        self.daemons.push(d);
        self.daemons.len() - 1
    }

    /// Waits until daemon `i` lists every other daemon of the cluster as live.
    fn wait_converged(&self, i: usize) {
        let mut want: Vec<String> = self.daemons.iter().map(|d| d.name.clone()).collect();
        want.sort();
        wait_for(
            &format!("{} to see all of {want:?}", self.daemons[i].name),
            Duration::from_secs(10),
            || {
                let mut got = self.daemons[i].live_members();
                got.sort();
                (got == want).then_some(())
            },
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            d.stop();
        }
        if std::thread::panicking() {
            for d in &self.daemons {
                let log = fs::read_to_string(&d.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("---- log of daemon {} (last 40 lines) ----", d.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// The table row of `member` in a push's output (`NAME ADDRESS FILES BYTES RESULT`).
fn row<'a>(out: &'a str, member: &str) -> Option<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(member))
}

fn row_result(out: &str, member: &str) -> String {
    let r = row(out, member).unwrap_or_else(|| panic!("no row for {member} in:\n{out}"));
    r.split_whitespace().skip(4).collect::<Vec<_>>().join(" ")
}

/// Daemon flags that make a silent member fail fast.
const FAST: [&str; 4] = ["--heartbeat", "200", "--member-timeout", "1500"];

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Must show: "An integration test on loopback: 3 receiving daemons and 1 sending daemon (each
/// its own base, console port, node id; group in 239.255.0.0/16; `-i 127.0.0.1`); `makuo sync
/// --console 127.0.0.1:PORT -r .` at the sender makes every receiver's base identical to the
/// sender's (contents, modes, mtimes, symlinks, empty dirs); `members` over the TCP console
/// lists all four; `md5 -r` reports no difference (`ok`), then exactly the changed file and
/// member after one receiver file is changed."
///
/// Also: nothing of makuo's (staged files, state) is left in any base, and `quit` right
/// behind a check answers only after it. Directory mtimes are not compared: makuo does not
/// push them (see `apply.rs`).
#[test]
fn loopback_sync_via_console_makes_receivers_identical_and_md5_finds_one_change() {
    let mut c = Cluster::new();
    // Receivers keep the default durability (fsync before rename): the real write path.
    let s = c.add("sender", &["--heartbeat", "200"]);
    for r in ["recv1", "recv2", "recv3"] {
        c.add(r, &["--heartbeat", "200"]);
    }
    let src = c.daemons[s].base.clone();
    make_tree(&src, 300, Some(3 << 20));

    // Four daemons, four node ids.
    let mut nodes: Vec<String> = c
        .daemons
        .iter()
        .map(|d| {
            let (lines, last) = d.console().cmd("status");
            assert_eq!(last, "ok");
            lines.into_iter().find(|l| l.starts_with("node ")).unwrap()
        })
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 4, "node ids are not distinct: {nodes:?}");

    // members over the TCP console lists all four (the sender as self).
    c.wait_converged(s);
    let (lines, last) = c.daemons[s].console().cmd("members");
    assert_eq!(last, "ok");
    for n in ["sender", "recv1", "recv2", "recv3"] {
        assert!(
            lines.iter().any(|l| l.split_whitespace().next() == Some(n)),
            "members does not list {n}: {lines:?}"
        );
    }
    assert!(lines.iter().any(|l| l.starts_with("sender 127.0.0.1 self")));

    let r = c.daemons[s].sync(&[]);
    assert_eq!(r.code, Some(0), "sync failed: {r:?}");
    for n in ["recv1", "recv2", "recv3"] {
        assert_eq!(row_result(&r.stdout, n), "ok", "{r:?}");
    }
    for d in &c.daemons[1..] {
        assert_identical(&src, &d.base, &d.name);
    }
    for d in &c.daemons {
        assert_nothing_of_makuo(&d.base, &d.name);
    }

    // md5 -r: everything matches.
    let mut con = c.daemons[s].console();
    let (lines, last) = con.cmd("md5 -r");
    assert_eq!(last, "ok", "md5 after the push: {lines:?}");

    // Change one file on one receiver (same size, so only the checksum can see it).
    let victim = c.daemons[2].base.join("site/d6/s1/f13.txt");
    let mut data = fs::read(&victim).unwrap();
    assert!(!data.is_empty());
    data[0] ^= 0xff;
    fs::write(&victim, &data).unwrap();
    let (lines, last) = con.cmd("md5 -r");
    assert_eq!(last, "error: 1 differ", "md5 after the change: {lines:?}");
    let diffs: Vec<&String> = lines
        .iter()
        .filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() == 2 && w[1].starts_with("recv")
        })
        .collect();
    assert_eq!(diffs, ["site/d6/s1/f13.txt recv2"], "{lines:?}");
    assert_eq!(row_result(&lines.join("\n"), "recv2"), "differ");
    assert_eq!(row_result(&lines.join("\n"), "recv1"), "ok");
    // quit right behind a check: the check answers in full first, then quit, then EOF.
    con.send("md5 -r\nquit\n");
    let (lines, last) = con.reply();
    assert_eq!(last, "error: 1 differ", "{lines:?}");
    assert_eq!(con.line().as_deref(), Some("ok"));
    assert_eq!(con.line(), None);
    for d in &c.daemons {
        assert_nothing_of_makuo(&d.base, &d.name);
    }
}

/// The console words: help, alive, echo, errors that do not end the session, the session
/// exclude list, status, and quit closing only after the earlier (pipelined) commands answer.
#[test]
fn console_words_each_end_with_one_final_line() {
    let mut c = Cluster::new();
    let d = c.add("solo", &[]);
    let mut con = c.daemons[d].console();

    let (lines, last) = con.cmd("help");
    assert_eq!(last, "ok");
    for w in [
        "send", "sync", "md5", "members", "status", "exclude", "quit",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(w)),
            "help lacks {w}: {lines:?}"
        );
    }
    assert_eq!(con.cmd("alive"), (vec!["alive".to_string()], "ok".into()));
    assert_eq!(
        con.cmd("echo hello   \"big world\""),
        (vec!["hello big world".to_string()], "ok".into())
    );

    // Bad commands get one error line and the session goes on.
    for bad in [
        "frobnicate",
        "send --bogus",
        "loglevel 12",
        "echo \"unterminated",
    ] {
        let (lines, last) = con.cmd(bad);
        assert!(lines.is_empty(), "{bad}: {lines:?}");
        assert!(last.starts_with("error: "), "{bad}: {last}");
    }
    assert_eq!(con.cmd("alive").1, "ok");

    // The session exclude list.
    assert_eq!(con.cmd("exclude list"), (vec![], "ok".into()));
    assert_eq!(con.cmd("exclude add *.tmp").1, "ok");
    assert_eq!(con.cmd("exclude add \"cache dir/\"").1, "ok");
    assert_eq!(con.cmd("include add keep.tmp").1, "ok");
    assert_eq!(
        con.cmd("exclude list").0,
        ["exclude *.tmp", "exclude cache dir/", "include keep.tmp"]
    );
    assert_eq!(con.cmd("exclude del *.tmp").1, "ok");
    assert!(con.cmd("exclude del *.tmp").1.starts_with("error: "));
    assert_eq!(
        con.cmd("exclude list").0,
        ["exclude cache dir/", "include keep.tmp"]
    );
    assert_eq!(con.cmd("exclude clear").1, "ok");
    assert_eq!(con.cmd("exclude list"), (vec![], "ok".into()));
    assert!(con.cmd("exclude frob").1.starts_with("error: "));
    // The list belongs to the session: a second session starts empty.
    assert_eq!(con.cmd("exclude add x").1, "ok");
    assert_eq!(
        c.daemons[d].console().cmd("exclude list").0,
        Vec::<String>::new()
    );

    // status ends with ok and says who it is.
    let (lines, last) = con.cmd("status");
    assert_eq!(last, "ok");
    assert!(lines.contains(&"name solo".to_string()), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("members ")), "{lines:?}");
    assert_eq!(con.cmd("loglevel 3").1, "ok");
    // md5 with nobody else in the cluster: an error line, and the session goes on.
    assert!(con.cmd("md5 -r").1.starts_with("error: "));
    assert_eq!(con.cmd("alive").1, "ok");

    // quit, pipelined behind other commands: every earlier command answers in full, then the
    // daemon says ok and closes.
    con.send("echo one\nstatus\nmembers\necho two\nquit\n");
    assert_eq!(con.reply(), (vec!["one".to_string()], "ok".into()));
    let (lines, last) = con.reply();
    assert_eq!(last, "ok");
    assert!(lines.contains(&"name solo".to_string()));
    let (lines, last) = con.reply();
    assert_eq!(last, "ok");
    assert!(lines[0].starts_with("solo 127.0.0.1 self"), "{lines:?}");
    assert_eq!(con.reply(), (vec!["two".to_string()], "ok".into()));
    assert_eq!(con.line().as_deref(), Some("ok"), "quit's own ok");
    assert_eq!(con.line(), None, "the console stays open after quit");

    // The daemon still serves new sessions.
    assert_eq!(c.daemons[d].console().cmd("alive").1, "ok");
}

/// The unix-socket console exists only with -U, is mode 0600, answers, and is removed when the
/// daemon stops; SIGTERM makes the daemon exit 0 quickly.
#[test]
fn unix_socket_only_with_u_mode_0600_and_sigterm_exits_0_quickly() {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::net::UnixStream;

    let mut c = Cluster::new();
    let plain = c.add("plain", &[]);
    let sock = c.path("console.sock");
    let sock_arg = sock.to_string_lossy().into_owned();
    let with = c.add("withsock", &["-U", &sock_arg]);

    // Without -U, no socket anywhere in the daemon's dirs.
    for d in [&c.daemons[plain].base, &c.daemons[plain].state] {
        let socks: Vec<_> = fs::read_dir(d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_socket())
            .collect();
        assert!(socks.is_empty(), "{socks:?}");
    }
    let md = fs::symlink_metadata(&sock).expect("-U creates the socket");
    assert!(md.file_type().is_socket());
    assert_eq!(md.mode() & 0o7777, 0o600, "socket mode");
    let s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    (&s).write_all(b"alive\nquit\n").unwrap();
    let mut all = String::new();
    r.read_to_string(&mut all).unwrap();
    assert_eq!(all, "alive\nok\nok\n");
    // The front end speaks to it too.
    let st = run(
        Command::new(EXE).args(["status", "--console", &sock_arg]),
        RUN_LIMIT,
    );
    assert_eq!(st.code, Some(0), "{st:?}");
    assert!(st.stdout.contains("name withsock"), "{st:?}");

    // An idle console session does not hold the daemon up, and sees EOF when it exits.
    let mut idle = c.daemons[plain].console();
    assert_eq!(idle.cmd("alive").1, "ok");
    for i in [plain, with] {
        let t = Instant::now();
        let status = c.daemons[i]
            .stop()
            .expect("daemon did not exit within 5 s of SIGTERM");
        assert_eq!(status.code(), Some(0), "{}: {status}", c.daemons[i].name);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "SIGTERM took {:?}",
            t.elapsed()
        );
    }
    assert!(!sock.exists(), "the socket outlived the daemon");
    assert_eq!(idle.line(), None);
}

/// A daemon that restarts removes leftover staged files (`.NAME.makuo-XXXXXX`) anywhere in its
/// base, and only those.
#[test]
fn restarted_daemon_sweeps_leftover_temp_files() {
    let mut c = Cluster::new();
    let d = c.add("sweeper", &[]);
    assert_eq!(c.daemons[d].stop().and_then(|s| s.code()), Some(0));
    let base = c.daemons[d].base.clone();
    let t = (1_600_000_000, 0);
    for p in [
        ".a.makuo-Abc123",
        "d/e/.b.makuo-zzzzzz",
        "d/.c d.makuo-000000",
    ] {
        write_file(&base.join(p), b"torn", 0o600, t);
    }
    let keep = [
        "a.makuo-Abc123", // not hidden
        ".a.makuo-notes", // not a random suffix
        "d/.keep",        // not makuo's
        "d/e/plain.txt",  // a normal file
        ".makuo-Abc123x", // no base name
    ];
    for p in keep {
        write_file(&base.join(p), b"mine", 0o644, t);
    }
    c.daemons[d].start();
    assert_eq!(temp_files(&base), Vec::<PathBuf>::new());
    for p in keep {
        assert!(base.join(p).exists(), "the sweep removed {p}");
    }
}

/// Must show: "A receiver killed with SIGKILL mid-transfer and restarted leaves no temp file
/// after restart, the push that lost it exits non-zero naming it, and the next push repairs
/// it." (Exit 23, the member's row says failed.)
#[test]
fn receiver_sigkilled_mid_transfer_is_named_failed_and_repaired_by_the_next_push() {
    let mut c = Cluster::new();
    // -T 200 Mbit/s: the 96 MiB file takes about 4 s, time enough to catch it in flight.
    let mut sender_flags = FAST.to_vec();
    sender_flags.extend(["--no-fsync", "-T", "200"]);
    let s = c.add("sender", &sender_flags);
    for r in ["recv1", "recv2", "recv3"] {
        c.add(r, &["--no-fsync", "--heartbeat", "200"]);
    }
    let src = c.daemons[s].base.clone();
    make_tree(&src, 50, Some(96 << 20));
    c.wait_converged(s);

    let sender = std::thread::spawn({
        let d = &c.daemons[s];
        let mut cmd = d.command(&["sync", "--console", &d.console_addr(), "-r", "."]);
        move || run(&mut cmd, RUN_LIMIT)
    });
    let victim = 1;
    let vbase = c.daemons[victim].base.clone();
    let staged = wait_for(
        "a staged .big.bin.makuo-XXXXXX on recv1",
        Duration::from_secs(20),
        || {
            temp_files(&vbase)
                .into_iter()
                .find(|p| p.to_string_lossy().starts_with(".big.bin.makuo-"))
        },
    );
    c.daemons[victim].kill9();
    assert!(
        vbase.join(&staged).exists(),
        "the staged file should outlive SIGKILL (else this test proves nothing)"
    );
    c.daemons[victim].start();
    assert_eq!(
        temp_files(&vbase),
        Vec::<PathBuf>::new(),
        "staged files left after the restart"
    );

    let r = sender.join().unwrap();
    assert_eq!(r.code, Some(23), "the push that lost recv1: {r:?}");
    assert!(
        row_result(&r.stdout, "recv1").starts_with("failed"),
        "{r:?}"
    );
    assert!(r.stderr.contains("recv1"), "{r:?}");
    for n in ["recv2", "recv3"] {
        assert_eq!(row_result(&r.stdout, n), "ok", "{r:?}");
    }
    for d in &c.daemons[2..] {
        assert_identical(&src, &d.base, &d.name);
    }
    assert_eq!(temp_files(&vbase), Vec::<PathBuf>::new());

    // Wait until the sender knows recv1 once (its old incarnation expired), then push again.
    wait_for(
        "the sender to list recv1 exactly once",
        Duration::from_secs(15),
        || {
            let live = c.daemons[s].live_members();
            (live.iter().filter(|n| *n == "recv1").count() == 1 && live.len() == 4).then_some(())
        },
    );
    let r = c.daemons[s].sync(&[]);
    assert_eq!(r.code, Some(0), "the repairing push: {r:?}");
    for d in &c.daemons[1..] {
        assert_identical(&src, &d.base, &d.name);
        assert_nothing_of_makuo(&d.base, &d.name);
    }
}

/// A receiver restarted just before a push is targeted once: its dead incarnation (same name
/// and address, old node id), still in the sender's member table, does not fail the push.
#[test]
fn receiver_restarted_just_before_a_push_is_not_failed_by_its_dead_incarnation() {
    let mut c = Cluster::new();
    let mut sender_flags = FAST.to_vec();
    sender_flags.push("--no-fsync");
    let s = c.add("sender", &sender_flags);
    for r in ["recv1", "recv2"] {
        c.add(r, &["--no-fsync", "--heartbeat", "200"]);
    }
    let src = c.daemons[s].base.clone();
    make_tree(&src, 30, None);
    c.wait_converged(s);
    c.daemons[1].kill9();
    c.daemons[1].start();
    wait_for(
        "the sender to know both incarnations of recv1",
        Duration::from_secs(4),
        || {
            let live = c.daemons[s].live_members();
            (live.iter().filter(|n| *n == "recv1").count() == 2).then_some(())
        },
    );
    let r = c.daemons[s].sync(&[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let rows = r.stdout.lines().filter(|l| l.starts_with("recv1 ")).count();
    assert_eq!(rows, 1, "{r:?}");
    assert_eq!(row_result(&r.stdout, "recv1"), "ok", "{r:?}");
    for d in &c.daemons[1..] {
        assert_identical(&src, &d.base, &d.name);
    }
}

/// Must show: "A receiver that was stopped (SIGSTOP) before a push is named as failed by that
/// push." (Exit 23 while the others get everything.) Also: still named failed once it has
/// expired from the member table (remembered in the state dir), and repaired by a push after
/// SIGCONT.
#[test]
fn receiver_stopped_before_a_push_is_named_failed() {
    let started = Instant::now();
    let mut c = Cluster::new();
    let mut sender_flags = FAST.to_vec();
    sender_flags.push("--no-fsync");
    let s = c.add("sender", &sender_flags);
    for r in ["recv1", "recv2", "recv3"] {
        c.add(r, &["--no-fsync", "--heartbeat", "200"]);
    }
    let src = c.daemons[s].base.clone();
    make_tree(&src, 100, None);
    c.wait_converged(s);

    // Stopped while still in the sender's member table: targeted, silent, failed.
    let stopped = 2;
    signal(c.daemons[stopped].pid(), libc::SIGSTOP);
    let r = c.daemons[s].sync(&[]);
    assert_eq!(r.code, Some(23), "{r:?}");
    assert!(
        row_result(&r.stdout, "recv2").starts_with("failed"),
        "{r:?}"
    );
    assert!(r.stderr.contains("failed: recv2"), "{r:?}");
    for n in ["recv1", "recv3"] {
        assert_eq!(row_result(&r.stdout, n), "ok", "{r:?}");
    }
    for i in [1, 3] {
        assert_identical(&src, &c.daemons[i].base, &c.daemons[i].name);
    }

    // Stopped long enough to drop out of the member table: remembered, so still named failed.
    wait_for(
        "recv2 to expire from the sender's members",
        Duration::from_secs(10),
        || (!c.daemons[s].live_members().contains(&"recv2".to_string())).then_some(()),
    );
    let r = c.daemons[s].sync(&[]);
    assert_eq!(r.code, Some(23), "{r:?}");
    assert!(
        row_result(&r.stdout, "recv2").starts_with("failed"),
        "{r:?}"
    );

    // Resumed (with the first push's datagrams still queued): the next push repairs it.
    signal(c.daemons[stopped].pid(), libc::SIGCONT);
    c.wait_converged(s);
    let r = c.daemons[s].sync(&[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    // Known and left alone here: once resumed, recv2 works through the first push's queued
    // datagrams and stages files for that push, which the sender gave up on without telling
    // it; they stay until the receiver's transfer timeout (30 s) abandons it. So staged
    // files are ignored in this one comparison.
    let mut got = fingerprint(&c.daemons[stopped].base);
    got.retain(|p, _| !is_temp_name(&p.file_name().unwrap().to_string_lossy()));
    let d = diff(&fingerprint(&src), &got);
    assert!(d.is_empty(), "recv2 after the repair: {d:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Network namespaces (root only)
// ---------------------------------------------------------------------------------------------

/// Namespaces, a bridge and veth pairs, all named after this process and a counter (at most
/// 15 characters), deleted on drop even when the test fails.
struct Net {
    tag: String,
    bridge: String,
    namespaces: Vec<String>,
    veths: Vec<String>,
}

impl Net {
    fn new() -> Net {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // "mk" + pid in base 36 (at most 5 chars for pids up to 2^26) + counter.
        let tag = format!("mk{}{n}", base36(std::process::id()));
        let bridge = format!("{tag}br");
        assert!(bridge.len() <= 15);
        let net = Net {
            tag,
            bridge,
            namespaces: Vec::new(),
            veths: Vec::new(),
        };
        // Leftovers of a SIGKILLed earlier run that had this pid (no Drop ran) are ours.
        for i in 0..4 {
            quiet_ip(&["netns", "del", &format!("{}h{i}", net.tag)]);
            quiet_ip(&["link", "del", &format!("{}v{i}", net.tag)]);
        }
        quiet_ip(&["link", "del", &net.bridge]);
        sh(&["ip", "link", "add", &net.bridge, "type", "bridge"]);
        // Forward multicast to every port whether or not IGMP was heard.
        let _ = run(
            Command::new("ip").args([
                "link",
                "set",
                &net.bridge,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ]),
            Duration::from_secs(10),
        );
        sh(&["ip", "link", "set", &net.bridge, "up"]);
        net
    }

    /// Adds host `i` (namespace with lo up and one veth on the bridge, address `addr`/24).
    fn host(&mut self, i: usize, addr: &str) -> String {
        let ns = format!("{}h{i}", self.tag);
        let outside = format!("{}v{i}", self.tag);
        let inside = format!("{}p{i}", self.tag);
        assert!(outside.len() <= 15 && inside.len() <= 15);
        sh(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        sh(&[
            "ip", "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        self.veths.push(outside.clone());
        sh(&["ip", "link", "set", &outside, "master", &self.bridge]);
        sh(&["ip", "link", "set", &outside, "up"]);
        sh(&["ip", "link", "set", &inside, "netns", &ns]);
        let x = |args: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", &ns];
            v.extend_from_slice(args);
            sh(&v);
        };
        x(&["ip", "link", "set", "lo", "up"]);
        x(&["ip", "addr", "add", &format!("{addr}/24"), "dev", &inside]);
        x(&["ip", "link", "set", &inside, "up"]);
        ns
    }

    /// Drops `pct` % of the UDP datagrams to `port` arriving in `ns`.
    fn loss(&self, ns: &str, port: u16, pct: u32) {
        let nft = |args: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", ns, "nft"];
            v.extend_from_slice(args);
            sh(&v);
        };
        nft(&["add", "table", "inet", "t"]);
        nft(&[
            "add",
            "chain",
            "inet",
            "t",
            "in",
            "{ type filter hook input priority 0; }",
        ]);
        nft(&[
            "add",
            "rule",
            "inet",
            "t",
            "in",
            "udp",
            "dport",
            &port.to_string(),
            "numgen",
            "random",
            "mod",
            "100",
            "<",
            &pct.to_string(),
            "counter",
            "drop",
        ]);
    }
}

/// Runs `ip ARGS`, ignoring failure and output.
fn quiet_ip(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            quiet_ip(&["netns", "del", ns]);
        }
        for v in &self.veths {
            quiet_ip(&["link", "del", v]);
        }
        quiet_ip(&["link", "del", &self.bridge]);
    }
}

fn base36(mut n: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap()
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Must show: "A test as root in network namespaces (4 hosts on a bridge, 198.18.0.0/15, 5 %
/// loss on every receiver via nftables): trees identical after one push. It tears everything
/// down even on failure, uses unique names, and is skipped with a clear message when not
/// root." The push is a direct-mode `makuo sync` from the sender's namespace.
#[test]
fn netns_four_hosts_with_5_percent_loss_identical_after_one_push() {
    if !is_root() {
        eprintln!(
            "SKIPPED netns_four_hosts_with_5_percent_loss_identical_after_one_push: \
             needs root (network namespaces, nftables)"
        );
        return;
    }
    for tool in ["ip", "nft"] {
        let ok = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(ok, "{tool} is missing: install iproute2 and nftables");
    }
    // Daemons are declared after the net so they are stopped before it is torn down.
    let mut net = Net::new();
    let mut c = Cluster::new();
    let subnet = 18 + (rand_u64() % 2) as u8; // 198.18.x.0/24 or 198.19.x.0/24
    let third = (std::process::id() % 250) as u8 + 1;
    let addr = |i: usize| format!("198.{subnet}.{third}.{}", 10 + i);
    let sender_ns = net.host(0, &addr(0));
    let mut receivers = Vec::new();
    for i in 1..=3 {
        let ns = net.host(i, &addr(i));
        net.loss(&ns, c.port, 5);
        let base = c.path(&format!("h{i}/base"));
        fs::create_dir_all(&base).unwrap();
        let a = addr(i);
        let d = c.add_with(
            &format!("h{i}"),
            base,
            5000,
            Some(ns),
            &a,
            &["--no-fsync", "--heartbeat", "200"],
        );
        receivers.push(d);
    }
    let src = c.path("src");
    fs::create_dir_all(&src).unwrap();
    make_tree(&src, 400, Some(8 << 20));

    // The receivers hear each other across the bridge (through the loss).
    let first = &c.daemons[receivers[0]];
    wait_for(
        "h1 to see h2 and h3 over the bridge",
        Duration::from_secs(15),
        || {
            let r = run(
                &mut first.command(&["members", "--console", "127.0.0.1:5000"]),
                Duration::from_secs(10),
            );
            (r.stdout.contains("h2 ") && r.stdout.contains("h3 ")).then_some(())
        },
    );

    let t = Instant::now();
    let src_arg = src.to_string_lossy().into_owned();
    let port = c.port.to_string();
    let a0 = addr(0);
    let r = run(
        Command::new("ip").args([
            "netns",
            "exec",
            &sender_ns,
            EXE,
            "sync",
            "--direct",
            "-b",
            &src_arg,
            "-m",
            &c.group,
            "-p",
            &port,
            "-i",
            &a0,
            "--discover",
            "1500",
            "-r",
            ".",
        ]),
        Duration::from_secs(120),
    );
    eprintln!("netns push took {:.2}s", t.elapsed().as_secs_f64());
    assert_eq!(r.code, Some(0), "{r:?}");
    for i in 1..=3 {
        assert_eq!(row_result(&r.stdout, &format!("h{i}")), "ok", "{r:?}");
    }
    for &i in &receivers {
        assert_identical(&src, &c.daemons[i].base, &c.daemons[i].name);
        assert_nothing_of_makuo(&c.daemons[i].base, &c.daemons[i].name);
    }
    // Loss really happened: each receiver's nft rule dropped something.
    for i in 1..=3 {
        let ns = format!("{}h{i}", net.tag);
        let l = run(
            Command::new("ip").args(["netns", "exec", &ns, "nft", "list", "ruleset"]),
            Duration::from_secs(10),
        );
        let dropped: u64 = l
            .stdout
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(dropped > 0, "no datagram was dropped in {ns}: {l:?}");
    }
    drop(c);
    drop(net);
}
