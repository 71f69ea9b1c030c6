//! Small helpers: random ports and groups, bounded waits, root checks, users and groups, a port squatter, a directory watcher, HTTP metrics.

use super::*;

pub fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// Ports handed out by [`free_tcp_port`] and [`free_udp_port`]: a range below the kernel's
/// ephemeral ports (32768-60999), so that no client's outgoing connection takes one between the
/// moment it is handed out and the moment a daemon binds it, and each port at most once per
/// test process, so that two daemons of tests running side by side never share one. (Asking the
/// kernel for port 0 gave both faults: after a port is released, the kernel may hand it out
/// again, to a second test or as a connection's source port; a daemon that lost its console
/// port that way exited at start, and the probe of `wait_up` met another test's daemon.)
const PORTS: std::ops::Range<u32> = 20_000..32_000;

/// A port that is free for TCP and UDP on 127.0.0.1 now and that this process has not handed
/// out before. Test processes start at different places in the range (by pid), and a port
/// another process holds is skipped.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = PORTS.end - PORTS.start;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = (PORTS.start + NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("0.0.0.0", port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no free port in {PORTS:?}");
}

/// A TCP port on 127.0.0.1 that is free now and was never handed out before in this process.
pub fn free_tcp_port() -> u16 {
    free_port()
}

/// A UDP port that is free now and was never handed out before in this process.
pub fn free_udp_port() -> u16 {
    free_port()
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
