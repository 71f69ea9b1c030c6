//! Fixtures shared by every integration test: running the real `makuo` binary with a time
//! limit, clusters of daemons on loopback (or in network namespaces), console sessions,
//! generated trees and their fingerprints.
//!
//! Every cluster lives in its own temporary directory: each daemon has its own base, state
//! dir, console port and name, and the cluster gets a random group in 239.255.0.0/16 and a
//! random port, so tests can run in parallel. On loopback every daemon is started with
//! `-i 127.0.0.1`; the namespace fixture ([`Net`]) builds hosts on a private bridge with
//! addresses in 198.18.0.0/15. Clusters are keyed by default (a fresh key made by
//! `makuo keygen`), as operators run makuo; [`Cluster::unkeyed`] is for what is measured
//! without a key. Daemons are resumed, SIGTERMed and reaped (and namespaces deleted) by Drop
//! guards, so nothing outlives a failing test; on failure the daemons' logs are printed.
//! Every wait is bounded.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const EXE: &str = env!("CARGO_BIN_EXE_makuo");

/// Longest any single front-end command may take before the test gives up.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Daemon flags that make a silent member fail fast.
pub const FAST: [&str; 4] = ["--heartbeat", "200", "--member-timeout", "1500"];

/// [`FAST`] followed by `extra`, as owned flags.
pub fn fast_and(extra: &[&str]) -> Vec<String> {
    FAST.iter().chain(extra).map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

pub fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A random group in 239.255.0.0/16 (administratively scoped).
pub fn random_group() -> String {
    let r = rand_u64();
    format!("239.255.{}.{}", (r >> 8) as u8, (r as u8).clamp(1, 254))
}

/// Polls `f` until it gives a value; panics naming `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
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
pub fn wait_child(c: &mut Child, limit: Duration) -> Option<ExitStatus> {
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

pub fn signal(pid: u32, sig: libc::c_int) {
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Whether a root-only test can run. Without root it prints why it is skipped and returns
/// false, except under CI (`CI=true`), where a skipped root test would be a silent green: it
/// fails instead.
pub fn root_or_skip(test: &str, needs: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{test} needs root ({needs}) and CI=true: run the tests as root"
    );
    eprintln!("SKIPPED {test}: needs root ({needs})");
    false
}

/// Whether `l` is a line the daemon logged: an RFC 3339 time in UTC, then `makuo[PID]: `.
pub fn is_log_line(l: &str) -> bool {
    let b = l.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    b.len() > 25
        && digits(0..4)
        && b[4] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && l[24..].starts_with(" makuo[")
        && l[24..].contains("]: ")
}

/// uid and gid of `nobody` / `nogroup`.
pub const NOBODY: u32 = 65534;

/// Makes `cmd` run as `uid`:`gid` with no supplementary groups (the test must be root; std
/// drops root's supplementary groups when it sets the uid).
pub fn as_user(cmd: &mut Command, uid: u32, gid: u32) -> &mut Command {
    use std::os::unix::process::CommandExt;
    cmd.uid(uid).gid(gid)
}

/// One raw TCP console session from a process of `uid`:`gid` (bash's `/dev/tcp`): connects to
/// `host`:`port`, writes `input`, and prints everything the daemon answers until it closes the
/// connection. Bounded by [`RUN_LIMIT`].
pub fn tcp_session_as(uid: u32, gid: u32, host: &str, port: u16, input: &str) -> Run {
    let mut cmd = Command::new("bash");
    cmd.args([
        "-c",
        r#"exec 3<>"/dev/tcp/$HOST/$PORT" || exit 9; printf '%s' "$INPUT" >&3; cat <&3"#,
    ])
    .env("HOST", host)
    .env("PORT", port.to_string())
    .env("INPUT", input);
    run(as_user(&mut cmd, uid, gid), RUN_LIMIT)
}

/// A group made for one test (`groupadd`), with these members (`gpasswd -a`), deleted on drop.
pub struct TempGroup {
    pub name: String,
}

impl TempGroup {
    pub fn new(members: &[&str]) -> TempGroup {
        let name = format!("mkt{:08x}", rand_u64() as u32);
        sh(&["groupadd", &name]);
        let g = TempGroup { name };
        for m in members {
            sh(&["gpasswd", "-a", m, &g.name]);
        }
        g
    }

    /// Its gid, from the group database.
    pub fn gid(&self) -> u32 {
        let r = run(
            Command::new("getent").args(["group", &self.name]),
            Duration::from_secs(10),
        );
        r.stdout
            .split(':')
            .nth(2)
            .and_then(|g| g.trim().parse().ok())
            .unwrap_or_else(|| panic!("no gid for {}: {r}", self.name))
    }
}

impl Drop for TempGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel")
            .arg(&self.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `f` on a new thread whose effective (and so filesystem) uid and gid are `uid`:`gid`,
/// the rest of the process staying root: sockets the thread makes (and connections it
/// accepts) belong to `uid`, and `SO_PEERCRED` on a unix socket it listens on names `uid`.
/// The switch is the raw system call, which changes only the calling thread (libc's
/// `setuid` would change every thread). Root only.
pub fn thread_as<T: Send + 'static>(
    uid: u32,
    gid: u32,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        let keep = libc::uid_t::MAX; // -1: leave that id as it is
                                     // SAFETY: plain system calls on integers; they change this thread's credentials
                                     // only, and the thread ends with `f`.
        let (g, u) = unsafe {
            (
                libc::syscall(libc::SYS_setresgid, keep, gid, keep),
                libc::syscall(libc::SYS_setresuid, keep, uid, keep),
            )
        };
        assert_eq!((g, u), (0, 0), "cannot switch this thread to {uid}:{gid}");
        f()
    })
}

/// Another user's program holding a console address before the daemon does (issue 12's
/// review, F2): it listens as `uid` (on a thread of this process, [`thread_as`]), answers
/// like a daemon (`ok` to every line, a forged all-ok result to a push) and records every line
/// it receives. Stops on drop. Root only.
pub struct Squatter {
    /// `127.0.0.1:PORT` or the socket path.
    pub addr: String,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the squatter answers to a push: one member, everything ok, nothing pushed.
const FORGED: &str = "result {\"members\":[{\"name\":\"web1\",\"address\":\"10.0.0.5\",\
                      \"result\":\"ok\",\"files\":12,\"bytes\":4096,\"error\":null,\
                      \"deleted\":0}],\"files\":12,\"bytes\":4096,\"seconds\":0.2,\"exit\":0,\
                      \"max_delete_hit\":false,\"dry_run\":false}";

impl Squatter {
    /// Listens on 127.0.0.1:`port` as `uid`.
    pub fn tcp(uid: u32, port: u16) -> Squatter {
        Squatter::start(format!("127.0.0.1:{port}"), uid, move || {
            let l = TcpListener::bind(("127.0.0.1", port)).expect("squatter: bind");
            l.set_nonblocking(true).unwrap();
            Box::new(move || match l.accept() {
                Ok((s, _)) => Some(Box::new(s) as Box<dyn SquatConn>),
                Err(_) => None,
            })
        })
    }

    /// Listens on the unix socket `path` as `uid` (its directory must let `uid` create it).
    pub fn unix(uid: u32, path: &Path) -> Squatter {
        let p = path.to_path_buf();
        Squatter::start(path.display().to_string(), uid, move || {
            let l = std::os::unix::net::UnixListener::bind(&p).expect("squatter: bind");
            l.set_nonblocking(true).unwrap();
            Box::new(move || match l.accept() {
                Ok((s, _)) => Some(Box::new(s) as Box<dyn SquatConn>),
                Err(_) => None,
            })
        })
    }

    fn start(
        addr: String,
        uid: u32,
        listen: impl FnOnce() -> Box<dyn FnMut() -> Option<Box<dyn SquatConn>>> + Send + 'static,
    ) -> Squatter {
        use std::sync::atomic::Ordering;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (l2, s2) = (lines.clone(), stop.clone());
        let thread = thread_as(uid, uid, move || {
            let mut accept = listen();
            ready_tx.send(()).unwrap();
            while !s2.load(Ordering::Relaxed) {
                match accept() {
                    // Served here, so the connection belongs to `uid` too.
                    Some(c) => serve_squatted(c, &l2, &s2),
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the squatter did not start");
        Squatter {
            addr,
            lines,
            stop,
            thread: Some(thread),
        }
    }

    /// Every line received so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// A connection the squatter serves.
pub trait SquatConn: Read + Write + Send {
    fn timeout(&self, d: Duration);
}

impl SquatConn for TcpStream {
    fn timeout(&self, d: Duration) {
        let _ = self.set_nonblocking(false);
        let _ = self.set_read_timeout(Some(d));
    }
}

impl SquatConn for std::os::unix::net::UnixStream {
    fn timeout(&self, d: Duration) {
        let _ = self.set_nonblocking(false);
        let _ = self.set_read_timeout(Some(d));
    }
}

fn serve_squatted(
    mut c: Box<dyn SquatConn>,
    lines: &std::sync::Mutex<Vec<String>>,
    stop: &std::sync::atomic::AtomicBool,
) {
    c.timeout(Duration::from_millis(200));
    let mut buf = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 4096];
    while Instant::now() < end && !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match c.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            let first = line.split_whitespace().next().unwrap_or("").to_string();
            lines.lock().unwrap().push(line);
            let answer = match first.as_str() {
                "send" | "sync" | "dsync" | "md5" => format!("{FORGED}\nok\n"),
                _ => "ok\n".to_string(),
            };
            if c.write_all(answer.as_bytes()).is_err() || first == "quit" {
                return;
            }
        }
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Watches directory `dir` with inotify, on a thread of `uid` ([`thread_as`]), and records
/// what happens to `name` in it (`create`, `attrib`, `swapped`). With `swap_to`, the moment
/// `name` appears it is replaced by a symlink to `swap_to`, as a local user who may write in
/// `dir` would race a daemon that binds a socket there (issue 12's review, F3). Root only.
pub struct DirWatch {
    dir: PathBuf,
    events: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The file [`DirWatch::stop`] makes to wake its thread.
const WAKE: &str = ".dirwatch-wake";

impl DirWatch {
    pub fn new(uid: u32, dir: &Path, name: &str, swap_to: Option<&Path>) -> DirWatch {
        use rustix::fs::inotify;
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (d, n, e) = (dir.to_path_buf(), name.to_string(), events.clone());
        let swap = swap_to.map(Path::to_path_buf);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = thread_as(uid, uid, move || {
            let spare = d.join(".dirwatch-swap");
            if let Some(t) = &swap {
                let _ = fs::remove_file(&spare);
                std::os::unix::fs::symlink(t, &spare).expect("dirwatch: symlink");
            }
            let ino = inotify::init(inotify::CreateFlags::CLOEXEC).expect("inotify");
            inotify::add_watch(
                &ino,
                &d,
                inotify::WatchFlags::CREATE | inotify::WatchFlags::ATTRIB,
            )
            .expect("inotify watch");
            ready_tx.send(()).unwrap();
            let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
            let mut r = inotify::Reader::new(&ino, &mut buf);
            let deadline = Instant::now() + RUN_LIMIT;
            while Instant::now() < deadline {
                let Ok(ev) = r.next() else { break };
                let Some(file) = ev.file_name() else { continue };
                let file = file.to_string_lossy().into_owned();
                if file == WAKE {
                    break;
                }
                if file != n {
                    continue;
                }
                if ev.events().contains(inotify::ReadFlags::CREATE) {
                    if swap.is_some() && fs::rename(&spare, d.join(&n)).is_ok() {
                        e.lock().unwrap().push("swapped".into());
                    }
                    e.lock().unwrap().push("create".into());
                } else if ev.events().contains(inotify::ReadFlags::ATTRIB) {
                    e.lock().unwrap().push("attrib".into());
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the watcher did not start");
        DirWatch {
            dir: dir.to_path_buf(),
            events,
            thread: Some(thread),
        }
    }

    /// Stops watching; returns what was seen, in order.
    pub fn stop(mut self) -> Vec<String> {
        self.finish();
        self.events.lock().unwrap().clone()
    }

    fn finish(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = fs::write(self.dir.join(WAKE), b"");
            let _ = t.join();
            let _ = fs::remove_file(self.dir.join(WAKE));
            let _ = fs::remove_file(self.dir.join(".dirwatch-swap"));
        }
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One HTTP GET of `path` from `addr` (HTTP/1.0-style: the answer ends when the server
/// closes); the whole answer, head and body. Bounded by [`RUN_LIMIT`].
pub fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(RUN_LIMIT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The value of an unlabelled sample `name` in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------------------------

/// What a finished command printed.
#[derive(Debug)]
pub struct Run {
    /// Exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// One row of the per-member table (`MEMBER ADDRESS FILES BYTES DELETED RESULT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub address: String,
    pub files: u64,
    pub bytes: u64,
    pub deleted: u64,
    pub result: String,
}

impl Run {
    /// Non-empty stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The per-member table at the end of stdout: `(name, address, files, bytes, result)` rows,
    /// after checking the header. `n` is the number of member rows expected.
    pub fn table(&self, n: usize) -> Vec<Row> {
        let lines = self.lines();
        assert!(lines.len() > n, "no table of {n} rows in:\n{self}");
        let start = lines.len() - n - 1;
        let header: Vec<&str> = lines[start].split_whitespace().collect();
        assert_eq!(
            header,
            ["MEMBER", "ADDRESS", "FILES", "BYTES", "DELETED", "RESULT"],
            "table header not where expected in:\n{self}"
        );
        lines[start + 1..]
            .iter()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                assert!(w.len() >= 6, "short table row {l:?} in:\n{self}");
                Row {
                    name: w[0].to_string(),
                    address: w[1].to_string(),
                    files: w[2].parse().expect("FILES is a number"),
                    bytes: w[3].parse().expect("BYTES is a number"),
                    deleted: w[4].parse().expect("DELETED is a number"),
                    result: w[5..].join(" "),
                }
            })
            .collect()
    }

    /// The stdout lines before the table of `n` rows.
    pub fn before_table(&self, n: usize) -> Vec<&str> {
        let lines = self.lines();
        lines[..lines.len() - n - 1].to_vec()
    }

    /// The RESULT column of `member`'s table row (`ok`, `failed: ...`).
    pub fn result_of(&self, member: &str) -> String {
        row_result(&self.stdout, member)
    }

    /// stdout parsed as exactly one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {} after {:.2}s\n--- stdout\n{}--- stderr\n{}---",
            self.code,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

/// The RESULT column of `member`'s row in a per-member table (`NAME ADDRESS FILES BYTES
/// DELETED RESULT`) anywhere in `out`.
pub fn row_result(out: &str, member: &str) -> String {
    let r = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(member))
        .unwrap_or_else(|| panic!("no row for {member} in:\n{out}"));
    r.split_whitespace().skip(5).collect::<Vec<_>>().join(" ")
}

/// `makuo ARGS...` on a terminal (a pty from `script(1)`): stdout and stderr both arrive in
/// the returned stdout, as the terminal showed them. `None` when `script` is missing.
pub fn makuo_on_a_terminal(args: &[String], limit: Duration) -> Option<Run> {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let mut line = quote(EXE);
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    Command::new("script").arg("--version").output().ok()?;
    let mut c = Command::new("script");
    c.args(["-qfec", &line, "/dev/null"]);
    Some(run(&mut c, limit))
}

/// Runs a command to completion, killing it (and failing) after `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Run {
    run_input(cmd, None, limit)
}

/// As [`run`], with `input` on the command's standard input (`None`: /dev/null).
pub fn run_input(cmd: &mut Command, input: Option<&[u8]>, limit: Duration) -> Run {
    let started = Instant::now();
    let mut c = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(data) = input {
        let mut stdin = c.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
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
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: to.join().unwrap(),
        stderr: te.join().unwrap(),
        elapsed: started.elapsed(),
    };
    assert!(status.is_some(), "{cmd:?} ran longer than {limit:?}:\n{r}");
    r
}

/// Runs `makuo ARGS` with [`RUN_LIMIT`].
pub fn makuo<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    run(Command::new(EXE).args(args), RUN_LIMIT)
}

/// A `makuo` process left running (a foreground `makuo watch`): its output goes to a log
/// file; SIGTERMed, then killed, and reaped on drop.
pub struct Background {
    pub child: Child,
    pub log: PathBuf,
}

impl Background {
    /// Starts `makuo ARGS` with stdout and stderr on `log`.
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S], log: PathBuf) -> Background {
        let f = fs::File::create(&log).unwrap();
        let child = Command::new(EXE)
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        Background { child, log }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait (at most `limit`); the exit status.
    /// Waits (bounded) for the process to exit by itself; `None` if it is still running.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, limit)
    }

    pub fn stop(&mut self, limit: Duration) -> Option<ExitStatus> {
        signal(self.child.id(), libc::SIGTERM);
        let s = wait_child(&mut self.child, limit);
        if s.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        s
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop(Duration::from_secs(5));
        }
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log_text());
        }
    }
}

/// `makuo CMD --console ADDR ARGS` (ARGS split at whitespace): through a daemon.
pub fn via(console: &str, cmd: &str, args: &str) -> Run {
    let mut a = vec![cmd, "--console", console];
    a.extend(args.split_whitespace());
    makuo(&a)
}

/// Runs `cmd` and fails unless it succeeds.
pub fn sh(cmd: &[&str]) {
    let r = run(
        Command::new(cmd[0]).args(&cmd[1..]),
        Duration::from_secs(20),
    );
    assert_eq!(r.code, 0, "{cmd:?} failed: {}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// Trees: generate, fingerprint, compare
// ---------------------------------------------------------------------------------------------

/// Writes `data` to `base/rel`, making parent directories.
pub fn write(base: &Path, rel: &str, data: impl AsRef<[u8]>) {
    let p = base.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// Sets a path's mtime (seconds and nanoseconds) without following a symlink.
pub fn set_mtime(p: &Path, secs: i64, nsec: i64) {
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

/// Writes a file with this mode and mtime, making parent directories.
pub fn write_file(p: &Path, data: &[u8], mode: u32, mtime: (i64, i64)) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    set_mtime(p, mtime.0, mtime.1);
}

/// Deterministic filler bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
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
pub fn write_big(p: &Path, len: usize) {
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
/// dangling, to a dir), odd names, and optionally one big file `big.bin`.
pub fn docroot(dir: &Path, files: usize, big: Option<usize>) {
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

/// A small site: PHP and text files at several depths, logs, a cache dir, an empty dir, a
/// symlink and one file (`big.bin`, 300,000 bytes) big enough to span many datagrams.
pub fn small_site(src: &Path) {
    write(src, "index.php", "<?php echo 'hello';\n");
    write(src, "a.txt", "hello\n");
    write(src, "lib/util.php", "<?php function f() {}\n");
    write(src, "lib/notes.txt", "notes\n");
    write(src, "lib/access.log", "GET /\n");
    write(src, "sub/deep/d.php", "<?php // deep\n");
    write(src, "sub/deep/e.txt", "e\n");
    write(src, "sub/deep/error.log", "oops\n");
    write(src, "cache/page1.html", "<html>1</html>\n");
    write(src, "cache/page2.html", "<html>2</html>\n");
    for i in 0..20 {
        write(
            src,
            &format!("many/f{i:02}.txt"),
            format!("file {i}\n").repeat(i + 1),
        );
    }
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(src, "big.bin", big);
    fs::create_dir(src.join("emptydir")).unwrap();
    std::os::unix::fs::symlink("lib", src.join("current")).unwrap();
}

/// Everything that must match between the source and a member, per path: kind, permission
/// bits, mtime (not for directories: adding an entry changes a directory's mtime on any
/// copy), a content hash and size for files, the target for symlinks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
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

/// A fingerprint of a tree: relative `/`-separated path (lossy for names that are not
/// UTF-8) to [`Node`].
pub type Tree = BTreeMap<String, Node>;

/// A file that went away between the walk and the read (a member's staged file renamed into
/// place while a test polls its tree) hashes to 0: that tree differs and the poll goes on,
/// where a panic would end the test.
pub fn hash_file(p: &Path) -> u64 {
    let Ok(mut f) = fs::File::open(p) else {
        return 0;
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let Ok(n) = f.read(&mut buf) else {
            return 0;
        };
        if n == 0 {
            break;
        }
        buf[..n].hash(&mut h);
    }
    h.finish()
}

/// Every path under `base` (not `base` itself).
pub fn fingerprint(base: &Path) -> Tree {
    fn walk(base: &Path, rel: &Path, out: &mut Tree) {
        // A directory that vanishes while walking (staging dropped) lists as empty.
        let Ok(dir) = fs::read_dir(base.join(rel)) else {
            return;
        };
        let mut names: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
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
                    target: fs::read_link(&p).unwrap_or_default(),
                    mtime,
                }
            } else {
                Node::Other
            };
            out.insert(r.to_string_lossy().into_owned(), node);
        }
    }
    let mut out = Tree::new();
    walk(base, Path::new(""), &mut out);
    out
}

/// Differences between two fingerprints, one line each (empty when identical).
pub fn diff(want: &Tree, got: &Tree) -> Vec<String> {
    let mut d = Vec::new();
    for (p, w) in want {
        match got.get(p) {
            None => d.push(format!("missing {p}")),
            Some(g) if g != w => d.push(format!("{p}: want {w:?}, got {g:?}")),
            _ => {}
        }
    }
    for p in got.keys().filter(|p| !want.contains_key(*p)) {
        d.push(format!("extra {p}"));
    }
    d
}

/// Paths that differ between two fingerprints (added, removed or changed).
pub fn changed(before: &Tree, after: &Tree) -> BTreeSet<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

/// Fails naming up to 20 differences unless `got` matches `want`.
pub fn assert_same(want: &Tree, got: &Tree, who: &str) {
    let d = diff(want, got);
    assert!(
        d.is_empty(),
        "{who} differs from the source in {} place(s):\n  {}",
        d.len(),
        d.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

/// Fails unless the tree under `member` matches the one under `src`.
pub fn assert_identical(src: &Path, member: &Path, who: &str) {
    assert_same(&fingerprint(src), &fingerprint(member), who);
}

/// Every path under `base` (relative), without reading contents.
pub fn paths(base: &Path) -> Vec<PathBuf> {
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
pub fn temp_files(base: &Path) -> Vec<PathBuf> {
    paths(base)
        .into_iter()
        .filter(|p| is_temp_name(&p.file_name().unwrap().to_string_lossy()))
        .collect()
}

/// `.NAME.makuo-XXXXXX`: hidden, a non-empty NAME, six alphanumerics.
pub fn is_temp_name(n: &str) -> bool {
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
pub fn assert_nothing_of_makuo(base: &Path, who: &str) {
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
pub struct Console {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Console {
    pub fn connect(port: u16) -> Console {
        Console::connect_to("127.0.0.1", port)
    }

    /// A session with the console on `host` (an IPv4 or IPv6 address) and `port`.
    pub fn connect_to(host: &str, port: u16) -> Console {
        let s = TcpStream::connect((host, port))
            .unwrap_or_else(|e| panic!("console {host} port {port}: {e}"));
        s.set_read_timeout(Some(RUN_LIMIT)).unwrap();
        Console {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// Everything until the daemon closes the connection.
    pub fn rest(&mut self) -> String {
        let mut s = String::new();
        let _ = self.r.read_to_string(&mut s);
        s
    }

    pub fn send(&mut self, text: &str) {
        self.w.write_all(text.as_bytes()).unwrap();
    }

    /// One line, without its newline; `None` at EOF.
    pub fn line(&mut self) -> Option<String> {
        let mut s = String::new();
        match self.r.read_line(&mut s) {
            Ok(0) => None,
            Ok(_) => Some(s.trim_end_matches(['\r', '\n']).to_string()),
            Err(e) => panic!("console read: {e}"),
        }
    }

    /// Reads the lines of one command: those before the final line, and the final line
    /// (`ok` or `error: ...`).
    pub fn reply(&mut self) -> (Vec<String>, String) {
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

    pub fn cmd(&mut self, line: &str) -> (Vec<String>, String) {
        self.send(&format!("{line}\n"));
        self.reply()
    }
}

/// The counters of a `status` answer.
#[derive(Debug)]
pub struct Status {
    pub lines: Vec<String>,
    /// Numbers by the word before them: `dropped`, `auth`, `opened`, `bad-tag`, `unsealed`,
    /// `unknown-key`, `replayed`, `stale`, `received`, ...
    pub n: BTreeMap<String, u64>,
}

impl Status {
    pub fn parse(lines: Vec<String>) -> Self {
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

    pub fn get(&self, k: &str) -> u64 {
        *self
            .n
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in status {:?}", self.lines))
    }

    pub fn line(&self, start: &str) -> &str {
        self.lines
            .iter()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start} line in {:?}", self.lines))
    }
}

// ---------------------------------------------------------------------------------------------
// Daemons and clusters
// ---------------------------------------------------------------------------------------------

/// One daemon process, restartable with the same base, state dir, name, console port and
/// flags.
pub struct Daemon {
    pub name: String,
    pub base: PathBuf,
    pub state: PathBuf,
    pub console: u16,
    pub log: PathBuf,
    /// Runs the daemon inside a namespace: `ip netns exec NS`.
    pub netns: Option<String>,
    /// Everything after `makuo daemon`.
    pub args: Vec<String>,
    pub child: Option<Child>,
    /// A sending member added to a cluster of receivers (not one of [`Cluster::receivers`]).
    pub sender: bool,
    /// A command the daemon runs under (e.g. `faketime -f +120s`); empty: none.
    pub wrap: Vec<String>,
    /// Started as `PROGRAM ARGS` instead of `makuo daemon ARGS` (e.g. a `makuosan` symlink).
    pub program: Option<PathBuf>,
    /// Extra environment variables of the daemon process.
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// `makuo WHAT...`, inside the daemon's namespace if it has one.
    pub fn command(&self, what: &[&str]) -> Command {
        let mut argv: Vec<&str> = Vec::new();
        if let Some(ns) = &self.netns {
            argv.extend(["ip", "netns", "exec", ns]);
        }
        argv.extend(self.wrap.iter().map(String::as_str));
        argv.push(EXE);
        argv.extend_from_slice(what);
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        c
    }

    /// Starts the process (stdout and stderr appended to the log) without waiting for it.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut c = match &self.program {
            Some(p) => Command::new(p),
            None => self.command(&["daemon"]),
        };
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(c.spawn().expect("cannot start makuo daemon"));
    }

    /// Starts the daemon and waits until its console answers.
    pub fn start(&mut self) {
        self.spawn();
        self.wait_up();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon not running").id()
    }

    pub fn signal(&self, sig: libc::c_int) {
        signal(self.pid(), sig);
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let c = self.child.as_mut().expect("daemon not running");
        let s = wait_child(c, limit);
        if s.is_some() {
            self.child = None;
        }
        s
    }

    /// Everything the daemon wrote to stdout and stderr so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value after `flag` in the daemon's arguments.
    fn arg_after(&self, flag: &str) -> Option<&str> {
        let i = self.args.iter().position(|a| a == flag)?;
        self.args.get(i + 1).map(String::as_str)
    }

    /// The address the TCP console listens on (`--console-addr` or `-l`, default 127.0.0.1).
    pub fn console_host(&self) -> String {
        self.arg_after("--console-addr")
            .or_else(|| self.arg_after("-l"))
            .unwrap_or("127.0.0.1")
            .to_string()
    }

    /// The console password (first line of the `-K` file), if the daemon has one.
    pub fn password(&self) -> Option<String> {
        let f = self.arg_after("-K")?;
        let text = fs::read_to_string(f).unwrap_or_default();
        Some(text.lines().next().unwrap_or("").to_string())
    }

    /// Waits until the console answers (`alive`), failing if the daemon exits.
    pub fn wait_up(&mut self) {
        let port = self.console;
        let host = self.console_host();
        let password = self.password();
        let netns = self.netns.is_some();
        let addr = self.console_addr();
        let mut probe = self.command(&["status", "--console", &addr]);
        if let Some(k) = self.arg_after("-K") {
            probe.args(["-K", k]);
        }
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
                    let r = run(&mut probe, Duration::from_secs(10));
                    (r.code == 0).then_some(())
                } else {
                    let s = TcpStream::connect((host.as_str(), port)).ok()?;
                    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                    let mut c = Console {
                        r: BufReader::new(s.try_clone().ok()?),
                        w: s,
                    };
                    if let Some(p) = &password {
                        (c.cmd(&format!("password \"{p}\"")).1 == "ok").then_some(())?;
                    }
                    (c.cmd("alive").1 == "ok").then_some(())
                }
            },
        );
    }

    /// SIGCONT and SIGTERM, then waits (bounded) for the exit; SIGKILL if it did not come.
    pub fn stop(&mut self) -> Option<ExitStatus> {
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
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new TCP console session (loopback daemons only), past the password if there is one.
    pub fn console(&self) -> Console {
        assert!(self.netns.is_none());
        let mut c = Console::connect_to(&self.console_host(), self.console);
        if let Some(p) = self.password() {
            let (lines, last) = c.cmd(&format!("password \"{p}\""));
            assert_eq!(last, "ok", "{}: password refused: {lines:?}", self.name);
        }
        c
    }

    /// `HOST:PORT` of the TCP console (`[HOST]:PORT` for IPv6).
    pub fn console_addr(&self) -> String {
        let h = self.console_host();
        if h.contains(':') {
            format!("[{h}]:{}", self.console)
        } else {
            format!("{h}:{}", self.console)
        }
    }

    /// One command in a session of its own: the lines before the final one, and that one.
    pub fn cmd(&self, line: &str) -> (Vec<String>, String) {
        let mut c = self.console();
        let r = c.cmd(line);
        c.send("quit\n");
        r
    }

    /// `status` on the console, which must end with `ok`.
    pub fn status(&self) -> Status {
        let (lines, last) = self.cmd("status");
        assert_eq!(
            last, "ok",
            "{}: status answered {last:?}: {lines:?}",
            self.name
        );
        Status::parse(lines)
    }

    /// The member's unicast reply address, from its start-up log line.
    pub fn reply_addr(&self) -> std::net::SocketAddr {
        let log = self.log_text();
        let at = log
            .find(", reply ")
            .expect("start-up line names the reply address");
        let rest = &log[at + 8..];
        rest[..rest.find(',').unwrap()].parse().unwrap()
    }

    /// Runs `makuo sync --console THIS -r .` (plus `extra`).
    pub fn sync(&self, extra: &[&str]) -> Run {
        let addr = self.console_addr();
        let mut args = vec!["sync", "--console", &addr, "-r"];
        args.extend_from_slice(extra);
        args.push(".");
        run(&mut self.command(&args), RUN_LIMIT)
    }

    /// `makuo members --console THIS` (inside the daemon's namespace if it has one).
    pub fn members(&self, extra: &[&str]) -> Run {
        let addr = self.console_addr();
        let mut args = vec!["members", "--console", &addr];
        args.extend_from_slice(extra);
        run(&mut self.command(&args), RUN_LIMIT)
    }

    /// Names of the members this daemon lists as live, in order, from `members`.
    pub fn live_members(&self) -> Vec<String> {
        let (lines, last) = self.cmd("members");
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

/// Daemons sharing a random group and port, each in its own dirs under one temp dir, and a
/// source tree `src` for direct-mode pushes.
pub struct Cluster {
    // Field order matters: daemons are stopped before the temp dir is removed.
    pub daemons: Vec<Daemon>,
    pub group: String,
    pub port: u16,
    /// The cluster key every daemon and push uses (`None`: unkeyed).
    pub key: Option<PathBuf>,
    /// Source tree of direct-mode pushes ([`Cluster::direct`]); starts empty.
    pub src: PathBuf,
    pub tmp: tempfile::TempDir,
}

impl Cluster {
    /// An empty keyed cluster: a fresh key from `makuo keygen`, no daemon yet.
    pub fn new() -> Cluster {
        let mut c = Cluster::unkeyed();
        c.key = Some(c.keygen("cluster.key"));
        c
    }

    /// An empty cluster without a key: its daemons and direct pushes get `--insecure`.
    pub fn unkeyed() -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix("makuo-itest-")
            .tempdir()
            .unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        Cluster {
            daemons: Vec::new(),
            group: random_group(),
            port: free_udp_port(),
            key: None,
            src,
            tmp,
        }
    }

    /// A keyed cluster of `n` receiving daemons `m1..mN` (`--no-fsync`, empty bases), with
    /// [`small_site`] in `src`. Returns once every daemon's console answers.
    pub fn start(n: usize) -> Cluster {
        let mut c = Cluster::new();
        small_site(&c.src);
        for i in 1..=n {
            c.add(&format!("m{i}"), &["--no-fsync"]);
        }
        c
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// A new key file made by `makuo keygen FILE`.
    pub fn keygen(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        let r = makuo(&[std::ffi::OsStr::new("keygen"), p.as_os_str()]);
        assert_eq!(r.code, 0, "keygen: {r}");
        p
    }

    /// `-k FILE` for the cluster key (`--insecure` when unkeyed).
    pub fn key_args(&self) -> Vec<String> {
        keys_args(self.key.as_deref().into_iter())
    }

    /// A daemon named `name` on loopback with the cluster key and `extra` flags, its base
    /// `NAME/base` (created), not started.
    pub fn daemon_on_loopback(&self, name: &str, extra: &[&str]) -> Daemon {
        let keys: Vec<&Path> = self.key.as_deref().into_iter().collect();
        self.daemon_with_keys(name, &keys, extra)
    }

    /// As [`Cluster::daemon_on_loopback`], with these keys instead of the cluster's.
    pub fn daemon_with_keys(&self, name: &str, keys: &[&Path], extra: &[&str]) -> Daemon {
        let base = self.path(&format!("{name}/base"));
        fs::create_dir_all(&base).unwrap();
        let mut args = keys_args(keys.iter().copied());
        args.extend(extra.iter().map(|s| s.to_string()));
        self.daemon_at(name, base, free_tcp_port(), None, "127.0.0.1", args)
    }

    /// A daemon with every placement spelled out, not started: base, console port, namespace,
    /// interface, and every flag beyond the cluster's own (keys included).
    pub fn daemon_at(
        &self,
        name: &str,
        base: PathBuf,
        console: u16,
        netns: Option<String>,
        iface: &str,
        more: Vec<String>,
    ) -> Daemon {
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
        args.extend(more);
        Daemon {
            name: name.to_string(),
            base,
            state,
            console,
            log: self.path(&format!("{name}.log")),
            netns,
            args,
            child: None,
            sender: false,
            wrap: Vec::new(),
            program: None,
            env: Vec::new(),
        }
    }

    /// A daemon configured by a file alone: `NAME.conf` holds its base (`NAME/base`, created),
    /// state dir, name, console port, the cluster's group, port, interface and key, `-n`, log
    /// level 2, [`FAST`] timings, and then `more` (TOML lines); its arguments are `--config
    /// FILE` and `args`. Not started.
    pub fn daemon_from_config(&self, name: &str, more: &str, args: &[&str]) -> Daemon {
        let base = self.path(&format!("{name}/base"));
        fs::create_dir_all(&base).unwrap();
        let state = self.path(&format!("{name}/state"));
        let console = free_tcp_port();
        let key = match &self.key {
            Some(k) => format!("key = [{:?}]", k.to_string_lossy()),
            None => "insecure = true".into(),
        };
        let text = format!(
            "base = {:?}\nstate_dir = {:?}\nname = {name:?}\nconsole_port = {console}\n\
             group = {:?}\nport = {}\ninterface = \"127.0.0.1\"\n{key}\nforeground = true\n\
             loglevel = 2\nheartbeat = 200\nmember_timeout = 1500\n{more}\n",
            base.to_string_lossy(),
            state.to_string_lossy(),
            self.group,
            self.port,
        );
        let conf = self.path(&format!("{name}.conf"));
        fs::write(&conf, text).unwrap();
        let mut a = vec!["--config".to_string(), conf.to_string_lossy().into_owned()];
        a.extend(args.iter().map(|s| s.to_string()));
        Daemon {
            name: name.to_string(),
            base,
            state,
            console,
            log: self.path(&format!("{name}.log")),
            netns: None,
            args: a,
            child: None,
            sender: false,
            wrap: Vec::new(),
            program: None,
            env: Vec::new(),
        }
    }

    /// Starts `d`, waits for its console and adds it to the cluster; returns its index.
    pub fn push_daemon(&mut self, mut d: Daemon) -> usize {
        d.start();
        self.daemons.push(d);
        self.daemons.len() - 1
    }

    /// Starts one keyed daemon (`--no-fsync` and `more`) in each namespace of `hosts`
    /// (`(i, namespace)`, host `i` using interface `iface(i)`, console port 5000 inside its
    /// namespace): host 0 is the sending daemon `s0` (base: the source) when `sender`, every
    /// other host `r{i}` with an empty base `r{i}/base`.
    pub fn daemons_in(
        &mut self,
        hosts: &[(usize, String)],
        iface: impl Fn(usize) -> String,
        sender: bool,
        more: &[String],
    ) {
        for (i, ns) in hosts {
            let s0 = *i == 0 && sender;
            let name = if s0 {
                "s0".to_string()
            } else {
                format!("r{i}")
            };
            let base = if s0 {
                self.src.clone()
            } else {
                let b = self.path(&format!("{name}/base"));
                fs::create_dir_all(&b).unwrap();
                b
            };
            let mut args = self.key_args();
            args.push("--no-fsync".into());
            args.extend(more.iter().cloned());
            let mut d = self.daemon_at(&name, base, 5000, Some(ns.clone()), &iface(*i), args);
            d.sender = s0;
            self.push_daemon(d);
        }
    }

    /// Starts a keyed daemon named `name` on loopback with `extra` flags and waits for its
    /// console; returns its index.
    pub fn add(&mut self, name: &str, extra: &[&str]) -> usize {
        let d = self.daemon_on_loopback(name, extra);
        self.push_daemon(d)
    }

    /// Starts a daemon named `name` on loopback with these keys (not the cluster's) and
    /// `extra` flags, and waits for its console; returns its index.
    pub fn add_with_keys(&mut self, name: &str, keys: &[&Path], extra: &[&str]) -> usize {
        let d = self.daemon_with_keys(name, keys, extra);
        self.push_daemon(d)
    }

    /// Adds a sending daemon on `base` (not one of [`Cluster::receivers`]); returns its index.
    pub fn add_sender(&mut self, name: &str, base: &Path, extra: &[&str]) -> usize {
        let mut args = self.key_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = self.daemon_at(
            name,
            base.to_path_buf(),
            free_tcp_port(),
            None,
            "127.0.0.1",
            args,
        );
        d.sender = true;
        self.push_daemon(d)
    }

    pub fn daemon(&self, name: &str) -> &Daemon {
        self.daemons
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no daemon {name}"))
    }

    /// Base directory of member `name`.
    pub fn base(&self, name: &str) -> &Path {
        &self.daemon(name).base
    }

    /// The receiving members (not a sending daemon added with [`Cluster::add_sender`]).
    pub fn receivers(&self) -> Vec<&Daemon> {
        self.daemons.iter().filter(|d| !d.sender).collect()
    }

    pub fn receiver_names(&self) -> BTreeSet<String> {
        self.receivers().iter().map(|d| d.name.clone()).collect()
    }

    /// Waits until daemon `i` lists every daemon of the cluster as live.
    pub fn wait_converged(&self, i: usize) {
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

    /// `-m GROUP -p PORT --interface 127.0.0.1` (the long form: in `sync` and `watch`, `-i`
    /// is rsync's `--itemize-changes`).
    pub fn net(&self) -> Vec<String> {
        vec![
            "-m".into(),
            self.group.clone(),
            "-p".into(),
            self.port.to_string(),
            "--interface".into(),
            "127.0.0.1".into(),
        ]
    }

    /// The group as a socket address.
    pub fn group_addr(&self) -> std::net::SocketAddr {
        format!("{}:{}", self.group, self.port).parse().unwrap()
    }

    /// `makuo CMD --direct -b SRC -m GROUP -p PORT --interface IFACE [-k KEY] ARGS...` inside
    /// namespace `ns`.
    pub fn direct_in(&self, ns: &str, iface: &str, cmd: &str, args: &[&str]) -> Run {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, EXE, cmd, "--direct", "-b"])
            .arg(&self.src)
            .args(["-m", &self.group, "-p", &self.port.to_string()])
            .args(["--interface", iface])
            .args(self.key_args())
            .args(args);
        run(&mut c, Duration::from_secs(120))
    }

    /// `makuo CMD --direct -b SRC -m GROUP -p PORT --interface 127.0.0.1 [-k KEY] ARGS...`.
    pub fn direct(&self, cmd: &str, args: &[&str]) -> Run {
        self.direct_from(&self.src, cmd, args)
    }

    /// As [`Cluster::direct`], from another source tree.
    pub fn direct_from(&self, src: &Path, cmd: &str, args: &[&str]) -> Run {
        let keys: Vec<&Path> = self.key.as_deref().into_iter().collect();
        self.direct_keys(src, &keys, cmd, args)
    }

    /// As [`Cluster::direct_from`], with these keys instead of the cluster's.
    pub fn direct_keys(&self, src: &Path, keys: &[&Path], cmd: &str, args: &[&str]) -> Run {
        let mut a: Vec<String> = vec![cmd.into(), "--direct".into(), "-b".into()];
        a.push(src.to_string_lossy().into_owned());
        a.extend(self.net());
        a.extend(keys_args(keys.iter().copied()));
        a.extend(args.iter().map(|s| s.to_string()));
        makuo(&a)
    }

    /// `makuo sync --direct ... ARGS` (ARGS split at whitespace, never through a shell).
    pub fn sync(&self, args: &str) -> Run {
        self.direct("sync", &args.split_whitespace().collect::<Vec<_>>())
    }

    /// `makuo check --direct ... ARGS`.
    pub fn check(&self, args: &str) -> Run {
        self.direct("check", &args.split_whitespace().collect::<Vec<_>>())
    }

    /// A first full sync, checked: every receiver ends identical to SRC.
    pub fn initial_sync(&self) {
        let r = self.sync("-r .");
        assert_eq!(r.code, 0, "initial sync failed:\n{r}");
        self.assert_all_identical();
    }

    pub fn assert_all_identical(&self) {
        let want = fingerprint(&self.src);
        for d in self.receivers() {
            assert_same(&want, &fingerprint(&d.base), &d.name);
        }
    }

    /// Fingerprints of every receiver, by name.
    pub fn snapshots(&self) -> BTreeMap<String, Tree> {
        self.receivers()
            .iter()
            .map(|d| (d.name.clone(), fingerprint(&d.base)))
            .collect()
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

/// Makes directory `dir` unwritable even for root (`chattr +i`; a plain `chmod 555` when not
/// root, which binds everyone else), and undoes it on drop so the temp dir can be removed.
pub struct Unwritable(std::path::PathBuf);

impl Unwritable {
    pub fn new(dir: &std::path::Path) -> Unwritable {
        if is_root() {
            sh(&["chattr", "+i", dir.to_str().unwrap()]);
        } else {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
        }
        Unwritable(dir.to_path_buf())
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if is_root() {
            let _ = std::process::Command::new("chattr")
                .args(["-i", self.0.to_str().unwrap()])
                .status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
        }
    }
}

/// `-k FILE` for each key; `--insecure` when there is none (makuo refuses to run a daemon or
/// a direct push without a key unless told so).
pub fn keys_args<'a>(keys: impl Iterator<Item = &'a Path>) -> Vec<String> {
    let args: Vec<String> = keys
        .flat_map(|k| ["-k".to_string(), k.to_string_lossy().into_owned()])
        .collect();
    if args.is_empty() {
        vec!["--insecure".to_string()]
    } else {
        args
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            d.stop();
        }
        if std::thread::panicking() {
            for d in &self.daemons {
                let log = d.log_text();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("---- log of daemon {} (last 40 lines) ----", d.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Network namespaces (root only)
// ---------------------------------------------------------------------------------------------

/// Namespaces, a bridge and veth pairs, all named after this process and a counter (at most
/// 15 characters), deleted on drop even when the test fails.
pub struct Net {
    pub tag: String,
    pub bridge: String,
    pub namespaces: Vec<String>,
    pub veths: Vec<String>,
}

impl Net {
    /// Checks that `ip` and `nft` are installed, then makes the bridge.
    pub fn new() -> Net {
        for tool in ["ip", "nft"] {
            let ok = Command::new(tool)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
            assert!(ok, "{tool} is missing: install iproute2 and nftables");
        }
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
        for i in 0..10 {
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

    /// The namespace name of host `i`.
    pub fn ns(&self, i: usize) -> String {
        format!("{}h{i}", self.tag)
    }

    /// The interface name of host `i` inside its namespace.
    pub fn inside(&self, i: usize) -> String {
        format!("{}p{i}", self.tag)
    }

    /// Adds host `i` (namespace with lo up and one veth on the bridge, address `addr`/24).
    pub fn host(&mut self, i: usize, addr: &str) -> String {
        let inside = self.inside(i);
        self.host_with(i, &inside, &[&format!("{addr}/24")])
    }

    /// Adds host `i` whose veth is called `ifname` inside its namespace (`eth0` is safe there:
    /// the namespace has no other), with `addrs` (`198.18.x.y/24`, `fd..::n/64`; IPv6 ones
    /// `nodad`, so they are usable at once instead of tentative for a second or two).
    pub fn host_with(&mut self, i: usize, ifname: &str, addrs: &[&str]) -> String {
        let ns = self.ns(i);
        let outside = format!("{}v{i}", self.tag);
        let inside = self.inside(i);
        assert!(outside.len() <= 15 && inside.len() <= 15 && ifname.len() <= 15);
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
        if ifname != inside {
            x(&["ip", "link", "set", &inside, "name", ifname]);
        }
        for a in addrs {
            if a.contains(':') {
                x(&["ip", "-6", "addr", "add", a, "dev", ifname, "nodad"]);
            } else {
                x(&["ip", "addr", "add", a, "dev", ifname]);
            }
        }
        x(&["ip", "link", "set", ifname, "up"]);
        ns
    }

    /// Drops the datagrams of IPv4 group `group` arriving in `ns` (counted), as a switch that
    /// stopped forwarding the group to that port would; [`Net::undrop_group`] lifts it.
    pub fn drop_group(&self, ns: &str, group: &str) {
        self.nft(ns, &["add", "table", "inet", "nogrp"]);
        self.nft(
            ns,
            &[
                "add",
                "chain",
                "inet",
                "nogrp",
                "in",
                "{ type filter hook input priority -10; }",
            ],
        );
        self.nft(
            ns,
            &[
                "add", "rule", "inet", "nogrp", "in", "ip", "daddr", group, "counter", "drop",
            ],
        );
    }

    /// Lifts [`Net::drop_group`].
    pub fn undrop_group(&self, ns: &str) {
        self.nft(ns, &["flush", "chain", "inet", "nogrp", "in"]);
    }

    /// Drops every multicast datagram arriving in `ns` (IPv4 and IPv6, counted), as a network
    /// without multicast would.
    pub fn drop_multicast(&self, ns: &str) {
        self.nft(ns, &["add", "table", "inet", "nomc"]);
        self.nft(
            ns,
            &[
                "add",
                "chain",
                "inet",
                "nomc",
                "in",
                "{ type filter hook input priority -10; }",
            ],
        );
        for rule in [
            &["ip", "daddr", "224.0.0.0/4", "counter", "drop"][..],
            &[
                "ip6", "daddr", "ff00::/8", "meta", "l4proto", "udp", "counter", "drop",
            ][..],
        ] {
            let mut v = vec!["add", "rule", "inet", "nomc", "in"];
            v.extend_from_slice(rule);
            self.nft(ns, &v);
        }
    }

    /// Counts, from now on, the bytes `ns` sends to each IPv4 address of `to` (nftables table
    /// `inet perdst`, made afresh: counting starts at zero). Read with [`Net::bytes_to`].
    pub fn count_bytes_to(&self, ns: &str, to: &[String]) {
        let _ = Command::new("ip")
            .args([
                "netns", "exec", ns, "nft", "delete", "table", "inet", "perdst",
            ])
            .stderr(Stdio::null())
            .status();
        self.nft(ns, &["add", "table", "inet", "perdst"]);
        self.nft(
            ns,
            &[
                "add",
                "chain",
                "inet",
                "perdst",
                "out",
                "{ type filter hook output priority 0; }",
            ],
        );
        for a in to {
            self.nft(
                ns,
                &[
                    "add", "rule", "inet", "perdst", "out", "ip", "daddr", a, "counter",
                ],
            );
        }
    }

    /// Bytes `ns` sent to each address given to [`Net::count_bytes_to`], in that order.
    pub fn bytes_to(&self, ns: &str) -> Vec<u64> {
        let l = run(
            Command::new("ip").args([
                "netns", "exec", ns, "nft", "list", "table", "inet", "perdst",
            ]),
            Duration::from_secs(10),
        );
        l.stdout
            .lines()
            .filter(|l| l.contains("counter"))
            .map(|l| {
                l.split_whitespace()
                    .skip_while(|w| *w != "bytes")
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Runs `nft ARGS` inside `ns`, failing unless it succeeds.
    pub fn nft(&self, ns: &str, args: &[&str]) {
        let mut v = vec!["ip", "netns", "exec", ns, "nft"];
        v.extend_from_slice(args);
        sh(&v);
    }

    /// Drops `pct` % of the UDP datagrams to `port` arriving in `ns` (counted).
    pub fn loss(&self, ns: &str, port: u16, pct: u32) {
        self.nft(ns, &["add", "table", "inet", "t"]);
        self.nft(
            ns,
            &[
                "add",
                "chain",
                "inet",
                "t",
                "in",
                "{ type filter hook input priority 0; }",
            ],
        );
        self.nft(
            ns,
            &[
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
            ],
        );
    }

    /// Bytes host `i` has put on its link so far (what its veth's bridge end received).
    pub fn sent_bytes(&self, i: usize) -> u64 {
        let p = format!("/sys/class/net/{}v{i}/statistics/rx_bytes", self.tag);
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Packets counted by the first `counter` of table `inet TABLE` in `ns`.
    pub fn counted(&self, ns: &str, table: &str) -> u64 {
        first_counter(ns, &["list", "table", "inet", table])
    }

    /// Packets counted by the rules of `ns`'s ruleset (the first `counter`).
    pub fn dropped(&self, ns: &str) -> u64 {
        first_counter(ns, &["list", "ruleset"])
    }
}

/// A UDP socket on 127.0.0.1 that can send to the cluster's group (multicast interface set to
/// loopback), as a forger on the wire would.
pub fn raw_sender() -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let lo = std::net::Ipv4Addr::LOCALHOST;
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.bind(&std::net::SocketAddrV4::new(lo, 0).into()).unwrap();
    s.set_multicast_if_v4(&lo).unwrap();
    s.set_multicast_ttl_v4(1).unwrap();
    s.set_multicast_loop_v4(true).unwrap();
    s.into()
}

/// The packets of the first `counter` in what `nft ARGS` prints inside namespace `ns` (0 when
/// there is none).
fn first_counter(ns: &str, args: &[&str]) -> u64 {
    let l = run(
        Command::new("ip")
            .args(["netns", "exec", ns, "nft"])
            .args(args),
        Duration::from_secs(10),
    );
    l.stdout
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Resident set size of process `pid` and its peak (`VmRSS`, `VmHWM`), in bytes.
pub fn rss(pid: u32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Runs `ip ARGS`, ignoring failure and output.
pub fn quiet_ip(args: &[&str]) {
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

pub fn base36(mut n: u32) -> String {
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
