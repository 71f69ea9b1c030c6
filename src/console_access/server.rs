//! The accept loops and what a connection may hold: session and connection slots, the
//! unauthenticated pool, the password backoff and the log limit ([`Server`]).

use super::*;

/// A count of things in use, with a cap.
#[derive(Debug)]
pub(super) struct Slots {
    used: AtomicUsize,
    pub(super) max: usize,
}

/// One taken slot, given back on drop.
#[derive(Debug)]
pub(super) struct Slot(Arc<Slots>);

impl Slots {
    pub(super) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            used: AtomicUsize::new(0),
            max,
        })
    }

    pub(super) fn take(self: &Arc<Self>) -> Option<Slot> {
        self.take_upto(self.max)
    }

    /// A slot, if fewer than `limit` (at most the cap) are taken.
    pub(super) fn take_upto(self: &Arc<Self>, limit: usize) -> Option<Slot> {
        let limit = limit.min(self.max);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The log limit and the password backoff of a daemon's console.
#[derive(Debug)]
pub struct Throttle {
    /// Log lines per peer.
    pub log: LogLimit,
    /// Wrong passwords per peer.
    pub backoff: Backoff,
}

/// What every console connection of a daemon shares: the policy, the password, the limits,
/// the counters and the slots.
#[derive(Debug)]
pub struct Server {
    /// Who may connect.
    pub policy: Policy,
    /// `-K`.
    pub password: Option<Password>,
    /// The caps.
    pub limits: Limits,
    /// The counters.
    pub stats: Stats,
    pub(super) sessions: Arc<Slots>,
    pub(super) connections: Arc<Slots>,
    /// Peers on other hosts that have not given the password yet.
    pub(super) unauthenticated: Arc<Slots>,
    pub(super) throttle: std::sync::Mutex<Throttle>,
}

impl Server {
    /// A server with these rules and limits.
    pub fn new(policy: Policy, password: Option<Password>, limits: Limits) -> Arc<Server> {
        Arc::new(Server {
            sessions: Slots::new(limits.max_sessions),
            connections: Slots::new(limits.max_connections),
            unauthenticated: Slots::new(limits.unauthenticated),
            throttle: std::sync::Mutex::new(Throttle {
                log: LogLimit::new(limits.log_window),
                backoff: Backoff::new(
                    BACKOFF_FREE,
                    BACKOFF_FIRST,
                    BACKOFF_MAX,
                    Duration::from_secs(3600),
                ),
            }),
            policy,
            password,
            limits,
            stats: Stats::default(),
        })
    }

    pub(super) fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs `line` if it is the first of its kind from peer `key` in the log window (the
    /// others are counted), after the counts of windows that have ended.
    pub(super) fn log_limited(&self, key: &str, what: &'static str, line: impl std::fmt::Display) {
        let (full, summaries) = self.throttle().log.note(Instant::now(), key, what);
        for l in summaries {
            log(1, l);
        }
        if full {
            log(1, line);
        }
    }

    /// Logs the counts of log windows that have ended (called every few seconds).
    pub fn flush_log(&self) {
        let lines = self.throttle().log.due(Instant::now());
        for l in lines {
            log(1, l);
        }
    }

    /// Logs every count still pending (at shutdown).
    pub fn drain_log(&self) {
        let lines = self.throttle().log.drain(Instant::now());
        for l in lines {
            log(1, l);
        }
    }

    /// Before the password: a password line from a peer that must still wait is answered
    /// without being tried.
    pub(super) fn held_back(&self, who: &Who, gate: &Gate<'_>, line: &[u8]) -> Option<Verdict> {
        if gate.authed() || who.privileged {
            return None;
        }
        if !matches!(console::parse_line(line), Ok(Request::Password(_))) {
            return None;
        }
        let left = self.throttle().backoff.wait(Instant::now(), &who.key)?;
        bump(&self.stats.backoff);
        Some(Verdict::Answer {
            wait: Duration::ZERO,
            line: backoff_line(&who.key, left),
            close: true,
            note: None,
        })
    }
}

/// Logs the console's pending log counts every few seconds, for as long as the daemon runs.
pub fn start_log_flush(srv: &Arc<Server>) {
    let srv = srv.clone();
    let _ = std::thread::Builder::new()
        .name("console-log".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            srv.flush_log();
        });
}

/// Says `line` and closes: for TCP, with a FIN after the line, then reads what the client still
/// sends until it closes (at most `limit`), since closing with unread input would send a reset,
/// which can destroy the line before the client has read it.
fn say_and_close<S: Conn>(mut c: S, line: &str, limit: Duration, finish: impl Fn(&S)) {
    let _ = c.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = writeln!(c, "{line}");
    finish(&c);
    drain(&mut c, limit);
}

/// Reads and discards until EOF, an error or `limit`.
fn drain<S: Conn>(c: &mut S, limit: Duration) {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || c.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn tcp_finish(c: &TcpStream) {
    let _ = c.shutdown(std::net::Shutdown::Write);
}

/// Ends a served TCP session: FIN after everything written, then drains the client (at most
/// 2 s) so the last answer is not destroyed by a reset.
pub fn close_tcp(mut c: TcpStream) {
    tcp_finish(&c);
    drain(&mut c, Duration::from_secs(2));
}

/// How the log limit and the backoff key a peer: its uid when local, its address when
/// remote.
fn peer_key(peer: &Peer, addr: Option<IpAddr>) -> String {
    match (peer, addr) {
        (Peer::Uid(uid), _) => format!("uid {uid}"),
        (_, Some(ip)) if matches!(peer, Peer::Remote) => source_key(ip),
        _ => "unidentified peers".into(),
    }
}

/// Admits one connection and, when allowed, runs `session` on it. Runs on the connection's own
/// thread. `name` names the connection in the log, `key` its peer for the log limit and the
/// password backoff.
fn admit_and_serve<S: Conn>(
    srv: &Server,
    conn: S,
    admission: Admission,
    name: String,
    key: String,
    finish: impl Fn(&S),
    session: &(dyn Fn(S, &Who) + Send + Sync),
) {
    // Every refusal: counted, logged (within the log limit), answered with one line.
    let turn_away =
        |conn: S, count: &AtomicU64, key: &str, why: std::fmt::Arguments, line: &str| {
            bump(count);
            srv.log_limited(key, "refused", why);
            say_and_close(conn, line, Duration::from_secs(1), &finish);
        };
    let (who, slot) = match admission {
        Admission::Refused(why) => {
            turn_away(
                conn,
                &srv.stats.refused,
                &key,
                format_args!("console {name}: permission denied: {why}"),
                "error: permission denied",
            );
            return;
        }
        Admission::Local(uid) => {
            let privileged = srv.policy.privileged(uid);
            // Root and the daemon's user may also take the reserved sessions.
            let limit = if privileged {
                srv.limits.max_sessions
            } else {
                srv.limits.max_sessions - srv.limits.reserved.min(srv.limits.max_sessions)
            };
            let who = Who {
                name: format!("{name} uid {uid}"),
                key,
                privileged,
                remote: false,
                slot: std::sync::Mutex::new(None),
            };
            (who, srv.sessions.take_upto(limit))
        }
        Admission::Remote => {
            // Not in the `if let`: its guard would live through the block, and
            // `log_limited` takes the lock again.
            let wait = srv.throttle().backoff.wait(Instant::now(), &key);
            if let Some(left) = wait {
                turn_away(
                    conn,
                    &srv.stats.backoff,
                    &key,
                    format_args!("console {name} (remote): too many wrong passwords"),
                    &backoff_line(&key, left),
                );
                return;
            }
            let Some(slot) = srv.unauthenticated.take() else {
                let line = format!(
                    "error: too many connections waiting for the password ({}); try again later",
                    srv.limits.unauthenticated
                );
                turn_away(
                    conn,
                    &srv.stats.busy,
                    &key,
                    format_args!("console {name} (remote): too many waiting for the password"),
                    &line,
                );
                return;
            };
            let who = Who {
                name: format!("{name} (remote)"),
                key,
                privileged: false,
                remote: true,
                slot: std::sync::Mutex::new(None),
            };
            (who, Some(slot))
        }
    };
    let Some(slot) = slot else {
        let line = format!(
            "error: too many console sessions ({}); try again later",
            srv.limits.max_sessions
        );
        turn_away(
            conn,
            &srv.stats.busy,
            &who.key,
            format_args!("console {who}: too many sessions"),
            &line,
        );
        return;
    };
    *who.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(slot);
    bump(&srv.stats.sessions);
    log(3, format_args!("console {who}: session opened"));
    session(conn, &who);
}

/// Starts a thread for a new connection. A privileged peer (root, the daemon's user) gets one
/// at once; anyone else only if a connection slot is free, otherwise it is told so and closed
/// at once.
fn spawn_connection<S: Conn>(
    srv: &Arc<Server>,
    mut conn: S,
    peer: &Peer,
    work: impl FnOnce(S) + Send + 'static,
) {
    let privileged = matches!(peer, Peer::Uid(u) if srv.policy.privileged(*u));
    let slot = if privileged {
        None
    } else {
        match srv.connections.take() {
            Some(s) => Some(s),
            None => {
                bump(&srv.stats.busy);
                let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
                let _ = conn.write_all(b"error: too many console connections; try again later\n");
                return;
            }
        }
    };
    let r = std::thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            let _slot = slot;
            work(conn);
        });
    if r.is_err() {
        bump(&srv.stats.busy);
    }
}

/// What serves an admitted session: the connection and who is at the other end.
pub type SessionFn<S> = Arc<dyn Fn(S, &Who) + Send + Sync>;

/// Accepts TCP console connections forever.
pub fn serve_tcp(l: TcpListener, srv: Arc<Server>, session: SessionFn<TcpStream>) {
    for c in l.incoming() {
        let c = match c {
            Ok(c) => c,
            Err(_) => {
                // Out of descriptors or memory: do not spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // Answers are written a line (often a piece of a line) at a time: without
        // TCP_NODELAY, Nagle's algorithm holds a piece until the client's delayed ACK
        // (40 ms on Linux), once or twice per request.
        let _ = c.set_nodelay(true);
        // Asking the kernel is quick; the group database (maybe remote) is asked on the
        // connection's own thread.
        let peer = srv.policy.identify_tcp(&c, srv.limits.lookup);
        let (s2, session) = (srv.clone(), session.clone());
        spawn_connection(&srv, c, &peer.clone(), move |c| {
            let addr = c.peer_addr().ok();
            let name = match addr {
                Some(a) => format!("tcp {a}"),
                None => "tcp ?".into(),
            };
            let key = peer_key(&peer, addr.map(|a| a.ip()));
            let admission = s2.policy.admit(peer);
            let serve = |c: TcpStream, who: &Who| {
                let keep = c.try_clone();
                session(c, who);
                if let Ok(k) = keep {
                    close_tcp(k);
                }
            };
            admit_and_serve(&s2, c, admission, name, key, tcp_finish, &serve);
        });
    }
}

/// Accepts unix-socket console connections forever.
pub fn serve_unix(l: UnixListener, srv: Arc<Server>, session: SessionFn<UnixStream>) {
    for c in l.incoming() {
        let c = match c {
            Ok(c) => c,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let peer = srv.policy.identify_unix(&c);
        let (s2, session) = (srv.clone(), session.clone());
        spawn_connection(&srv, c, &peer.clone(), move |c| {
            let name = match peercred::unix_peer(&c) {
                Ok(p) => format!("unix pid {}", p.pid),
                Err(_) => "unix".into(),
            };
            let key = peer_key(&peer, None);
            let admission = s2.policy.admit(peer);
            let finish = |c: &UnixStream| {
                let _ = c.shutdown(std::net::Shutdown::Write);
            };
            admit_and_serve(&s2, c, admission, name, key, finish, &*session);
        });
    }
}
