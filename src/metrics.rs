//! `--metrics ADDR:PORT`: the daemon's counters in the Prometheus text format over HTTP.
//!
//! Read-only by construction: the server answers `GET /metrics` (and `HEAD`) with the last
//! text the network loop published, and everything else with an error; it reads at most one
//! request head of [`MAX_REQUEST`] bytes per connection, serves at most [`MAX_CONNS`]
//! connections at a time with short timeouts, and runs nothing. The names (all `makuo_…`) are
//! listed in docs/metrics.md. [`render`] turns a [`Snapshot`] into the exposition text; the
//! daemon fills the snapshot. No sockets but the listener; no protocol knowledge.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest request head read, in bytes.
pub const MAX_REQUEST: usize = 8192;
/// Most connections served at once; more are closed at once.
pub const MAX_CONNS: usize = 8;
/// Read and write timeout per connection.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses `--metrics`: `ADDR:PORT`, or a bare `PORT` meaning 127.0.0.1 (loopback unless said
/// otherwise).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(p) = s.parse::<u16>() {
        if p == 0 {
            return Err("port 0 is not a port".into());
        }
        return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
    }
    let a: SocketAddr = s
        .parse()
        .map_err(|_| format!("'{s}' is not IP:PORT (e.g. 127.0.0.1:9325) or a port"))?;
    if a.port() == 0 {
        return Err("port 0 is not a port".into());
    }
    Ok(a)
}

/// One member as the metrics show it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberMetric {
    /// Name (from its heartbeats).
    pub name: String,
    /// Address.
    pub address: String,
    /// `live`, `indirect` or `missing`.
    pub state: &'static str,
    /// Unix time of the last push it applied, if it said.
    pub last_push: Option<u64>,
    /// Whether its last push's digest equals this daemon's.
    pub in_sync: Option<bool>,
}

/// Everything the metrics show, filled by the daemon.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Unix time now (for ages).
    pub now: u64,
    /// Unix time the daemon started.
    pub started: u64,
    /// Current log level.
    pub log_level: u8,
    /// Pushes this daemon sent (finished).
    pub pushes_sent: u64,
    /// Of those, the ones that did not reach every target whole.
    pub pushes_failed: u64,
    /// Pushes from others applied here without error (dry runs aside).
    pub pushes_applied: u64,
    /// Pushes from others applied here with errors.
    pub pushes_apply_failed: u64,
    /// Pushes waiting for a send slot (`-f`).
    pub pushes_queued: u64,
    /// Entries written by applied pushes.
    pub applied_files: u64,
    /// File bytes written by applied pushes.
    pub applied_bytes: u64,
    /// Paths deleted by applied pushes.
    pub deleted_paths: u64,
    /// Bytes this daemon put on the wire (datagrams).
    pub sent_bytes: u64,
    /// Payload bytes multicast beyond what the neediest member needed (repair).
    pub repair_bytes: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams refused, by reason.
    pub refused: Vec<(&'static str, u64)>,
    /// Transfers being sent.
    pub transfers_out: u64,
    /// Transfers being received.
    pub transfers_in: u64,
    /// Resident memory in bytes (0 when unknown).
    pub memory: u64,
    /// Members.
    pub members: Vec<MemberMetric>,
}

/// A label value: backslash, double quote and newline escaped (the exposition format's rule).
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.head(name, kind, help);
        let _ = writeln!(self.0, "{name} {v}");
    }
}

/// The Prometheus text exposition (format 0.0.4) of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut o = Out(String::new());
    o.head(
        "makuo_build_info",
        "gauge",
        "Version of this daemon (always 1).",
    );
    let _ = writeln!(
        o.0,
        "makuo_build_info{{version=\"{}\"}} 1",
        label(crate::cli::VERSION)
    );
    o.one(
        "makuo_start_time_seconds",
        "gauge",
        "Unix time the daemon started.",
        s.started,
    );
    o.one(
        "makuo_log_level",
        "gauge",
        "Current log level (0-9).",
        s.log_level as u64,
    );
    o.one(
        "makuo_pushes_sent_total",
        "counter",
        "Pushes this daemon sent (finished).",
        s.pushes_sent,
    );
    o.one(
        "makuo_pushes_failed_total",
        "counter",
        "Pushes this daemon sent that did not reach every target whole.",
        s.pushes_failed,
    );
    o.one(
        "makuo_pushes_applied_total",
        "counter",
        "Pushes from other members applied here without error (dry runs not counted).",
        s.pushes_applied,
    );
    o.one(
        "makuo_pushes_apply_failed_total",
        "counter",
        "Pushes from other members applied here with errors.",
        s.pushes_apply_failed,
    );
    o.one(
        "makuo_pushes_queued",
        "gauge",
        "Pushes waiting for a send slot (-f).",
        s.pushes_queued,
    );
    o.one(
        "makuo_applied_files_total",
        "counter",
        "Entries written by applied pushes.",
        s.applied_files,
    );
    o.one(
        "makuo_applied_bytes_total",
        "counter",
        "File bytes written by applied pushes.",
        s.applied_bytes,
    );
    o.one(
        "makuo_deleted_paths_total",
        "counter",
        "Paths deleted by applied pushes.",
        s.deleted_paths,
    );
    o.one(
        "makuo_sent_bytes_total",
        "counter",
        "Bytes of datagrams this daemon sent.",
        s.sent_bytes,
    );
    o.one(
        "makuo_repair_bytes_total",
        "counter",
        "Payload bytes of sent pushes beyond what the neediest member needed (repair).",
        s.repair_bytes,
    );
    o.one(
        "makuo_datagrams_received_total",
        "counter",
        "Datagrams received.",
        s.datagrams_received,
    );
    o.one(
        "makuo_datagrams_sent_total",
        "counter",
        "Datagrams sent.",
        s.datagrams_sent,
    );
    o.head(
        "makuo_datagrams_refused_total",
        "counter",
        "Datagrams refused, by reason (bad_tag, replay, stale, malformed, ...).",
    );
    for (reason, n) in &s.refused {
        let _ = writeln!(
            o.0,
            "makuo_datagrams_refused_total{{reason=\"{}\"}} {n}",
            label(reason)
        );
    }
    o.head(
        "makuo_transfers",
        "gauge",
        "Transfers in progress, by direction.",
    );
    let _ = writeln!(
        o.0,
        "makuo_transfers{{direction=\"inbound\"}} {}",
        s.transfers_in
    );
    let _ = writeln!(
        o.0,
        "makuo_transfers{{direction=\"outbound\"}} {}",
        s.transfers_out
    );
    o.one(
        "makuo_resident_memory_bytes",
        "gauge",
        "Resident memory of the daemon process.",
        s.memory,
    );
    o.head(
        "makuo_members",
        "gauge",
        "Members by state (live, indirect, missing).",
    );
    for state in ["live", "indirect", "missing"] {
        let n = s.members.iter().filter(|m| m.state == state).count();
        let _ = writeln!(o.0, "makuo_members{{state=\"{state}\"}} {n}");
    }
    o.head(
        "makuo_member_last_push_timestamp_seconds",
        "gauge",
        "Unix time each member applied its last push.",
    );
    for m in &s.members {
        if let Some(t) = m.last_push {
            let _ = writeln!(
                o.0,
                "makuo_member_last_push_timestamp_seconds{{member=\"{}\",address=\"{}\"}} {t}",
                label(&m.name),
                label(&m.address)
            );
        }
    }
    o.head(
        "makuo_member_digest_age_seconds",
        "gauge",
        "Age of each member's tree: seconds since it applied its last push.",
    );
    for m in &s.members {
        if let Some(t) = m.last_push {
            let _ = writeln!(
                o.0,
                "makuo_member_digest_age_seconds{{member=\"{}\",address=\"{}\"}} {}",
                label(&m.name),
                label(&m.address),
                s.now.saturating_sub(t)
            );
        }
    }
    o.head(
        "makuo_member_in_sync",
        "gauge",
        "1 when a member's last push digest equals this daemon's, else 0.",
    );
    for m in &s.members {
        if let Some(b) = m.in_sync {
            let _ = writeln!(
                o.0,
                "makuo_member_in_sync{{member=\"{}\",address=\"{}\"}} {}",
                label(&m.name),
                label(&m.address),
                u8::from(b)
            );
        }
    }
    o.0
}

/// Where the network loop puts the current text for the server to hand out.
#[derive(Clone, Debug, Default)]
pub struct Published(Arc<Mutex<String>>);

impl Published {
    /// Replaces the text.
    pub fn set(&self, text: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }

    fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Binds `addr` (do it before giving up root: a low port needs it).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Serves `listener` on a thread of its own until the process ends.
pub fn serve(listener: TcpListener, text: Published) {
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNS {
                busy.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let (busy, text) = (busy.clone(), text.clone());
            std::thread::spawn(move || {
                let _ = answer(conn, &text);
                busy.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    Metrics { head_only: bool },
    NotFound,
    BadMethod,
    Bad,
}

fn parse_request(head: &[u8]) -> Ask {
    let Ok(text) = std::str::from_utf8(head) else {
        return Ask::Bad;
    };
    let line = text.lines().next().unwrap_or("");
    let mut w = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (w.next(), w.next(), w.next()) else {
        return Ask::Bad;
    };
    if w.next().is_some() || !version.starts_with("HTTP/1.") {
        return Ask::Bad;
    }
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => Ask::Metrics { head_only: false },
        ("HEAD", "/metrics") => Ask::Metrics { head_only: true },
        ("GET" | "HEAD", _) => Ask::NotFound,
        _ => Ask::BadMethod,
    }
}

fn answer(mut conn: TcpStream, text: &Published) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return reply(
                &mut conn,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"",
                false,
            );
        }
    }
    match parse_request(&head) {
        Ask::Metrics { head_only } => {
            let body = text.get();
            reply(
                &mut conn,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
                head_only,
            )
        }
        Ask::NotFound => reply(
            &mut conn,
            "404 Not Found",
            "text/plain",
            b"try /metrics\n",
            false,
        ),
        Ask::BadMethod => reply(
            &mut conn,
            "405 Method Not Allowed",
            "text/plain",
            b"",
            false,
        ),
        Ask::Bad => reply(&mut conn, "400 Bad Request", "text/plain", b"", false),
    }
}

fn reply(
    conn: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    conn.write_all(&out)?;
    conn.flush()
}

/// Resident memory of this process from `/proc/self/statm`, through a descriptor opened before
/// any chroot (re-read at offset 0 each time).
#[derive(Debug)]
pub struct Memory {
    statm: Option<std::fs::File>,
}

impl Memory {
    /// Opens `/proc/self/statm` (call before any chroot).
    pub fn open() -> Memory {
        Memory {
            statm: std::fs::File::open("/proc/self/statm").ok(),
        }
    }

    /// Resident bytes, 0 when unknown.
    pub fn resident(&self) -> u64 {
        use std::os::unix::fs::FileExt;
        let Some(f) = &self.statm else { return 0 };
        let mut buf = [0u8; 256];
        let Ok(n) = f.read_at(&mut buf, 0) else {
            return 0;
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        let pages: u64 = text
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pages * rustix::param::page_size() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_loopback() {
        assert_eq!(
            parse_addr("9325").unwrap(),
            "127.0.0.1:9325".parse().unwrap()
        );
        assert_eq!(
            parse_addr("0.0.0.0:9325").unwrap(),
            "0.0.0.0:9325".parse().unwrap()
        );
        assert_eq!(
            parse_addr("[::1]:9325").unwrap(),
            "[::1]:9325".parse().unwrap()
        );
        for bad in ["", "0", "host:1", "127.0.0.1", "127.0.0.1:0", "70000"] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ask::Metrics { head_only: false }
        );
        assert_eq!(
            parse_request(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Ask::Metrics { head_only: false }
        );
        assert_eq!(
            parse_request(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Ask::Metrics { head_only: true }
        );
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n\r\n"), Ask::NotFound);
        assert_eq!(
            parse_request(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Ask::BadMethod
        );
        assert_eq!(parse_request(b"send -r /\r\n\r\n"), Ask::Bad);
        assert_eq!(parse_request(b"\xff\xfe"), Ask::Bad);
    }

    #[test]
    fn rendering_follows_the_exposition_format() {
        let s = Snapshot {
            now: 1000,
            pushes_applied: 3,
            refused: vec![("bad_tag", 2), ("replay", 1)],
            members: vec![
                MemberMetric {
                    name: "web\"1\n".into(),
                    address: "10.0.0.1".into(),
                    state: "live",
                    last_push: Some(900),
                    in_sync: Some(true),
                },
                MemberMetric {
                    name: "web2".into(),
                    address: "10.0.0.2".into(),
                    state: "missing",
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let t = render(&s);
        assert!(t.contains("makuo_pushes_applied_total 3\n"), "{t}");
        assert!(
            t.contains("makuo_datagrams_refused_total{reason=\"bad_tag\"} 2\n"),
            "{t}"
        );
        assert!(t.contains("makuo_members{state=\"live\"} 1\n"), "{t}");
        assert!(t.contains("makuo_members{state=\"missing\"} 1\n"), "{t}");
        assert!(
            t.contains("makuo_member_digest_age_seconds{member=\"web\\\"1\\n\",address=\"10.0.0.1\"} 100\n"),
            "{t}"
        );
        for line in t.lines() {
            if line.starts_with('#') {
                let w: Vec<&str> = line.splitn(4, ' ').collect();
                assert!(w[1] == "HELP" || w[1] == "TYPE", "{line}");
                assert!(w[2].starts_with("makuo_"), "{line}");
            } else {
                assert!(line.starts_with("makuo_"), "{line}");
                let v = line.rsplit(' ').next().unwrap();
                assert!(v.parse::<f64>().is_ok(), "{line}");
            }
            let name = line
                .split(['{', ' '])
                .nth(if line.starts_with('#') { 2 } else { 0 })
                .unwrap();
            if name.ends_with("_total") {
                assert!(t.contains(&format!("# TYPE {name} counter")), "{name}");
            }
        }
    }

    #[test]
    fn the_server_hands_out_the_published_text_and_nothing_else() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let p = Published::default();
        p.set("makuo_x 1\n".into());
        serve(l, p.clone());
        let try_get = |req: &[u8]| -> io::Result<String> {
            let mut c = TcpStream::connect(addr)?;
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            c.write_all(req)?;
            let mut s = String::new();
            c.read_to_string(&mut s)?;
            Ok(s)
        };
        let get = |req: &[u8]| try_get(req).unwrap();
        let r = get(b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nmakuo_x 1\n"),
            "{r}"
        );
        assert!(get(b"GET /etc/passwd HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(b"DELETE /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        // An endless head is cut off: answered 431, or reset while the client still writes.
        let big = vec![b'a'; MAX_REQUEST * 2];
        match try_get(&big) {
            Ok(r) => assert!(r.starts_with("HTTP/1.1 431"), "{r}"),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ),
                "{e}"
            ),
        }
        assert!(get(b"GET /metrics HTTP/1.1\r\n\r\n").contains("makuo_x 1"));
        assert!(Memory::open().resident() > 0);
    }
}
