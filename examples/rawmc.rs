//! raw-mcast: the wire-limit yardstick of `bench/run` (sender and receiver, Linux).
//!
//! The workload's file contents, concatenated in the layout's order, go out as plain UDP
//! multicast datagrams of 1472 bytes (a 1500-byte IP packet), 44 of them per `send()` with UDP
//! GSO; no application header, no reliability. Each receiver knows the layout (paths and sizes)
//! out of band, writes the stream into temporary files and renames each into place when it is
//! complete. A lost datagram shifts or truncates the stream: the result is then wrong, which
//! the runner reports instead of hiding.
//!
//! The sender loads every byte into memory and opens its socket *before* the clock starts: it
//! writes READY, blocks until the runner opens GO (a FIFO) and writes to it, and only then
//! sends, so the timed window holds nothing but the transfer. Built by `bench/run` with
//! `cargo build --release --example rawmc`.
//!
//! ```text
//! rawmc send GROUP PORT IFADDR SRCROOT LAYOUT READY GO
//! rawmc recv GROUP PORT IFADDR READY DESTROOT LAYOUT TIMEOUT_S
//! ```
//!
//! LAYOUT is `{"files": [[relpath, size], ...], "bytes": N}` (written by `bench/helper.py
//! layout`). Each prints one JSON line on stdout; `recv` exits 1 when it did not get
//! everything.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};

/// UDP payload per datagram: a 1500-byte IPv4 packet.
const DGRAM: usize = 1472;
/// Datagrams per GSO send (44 x 1472 = 64,768 B, under the 65,507 B UDP limit).
const GSO: usize = 44;
/// End-of-stream marker: only lossy receivers still listen when it comes.
const END: &[u8] = b"END";

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("send") if args.len() == 8 => send(&args[1..]),
        Some("recv") if args.len() == 8 => recv(&args[1..]),
        _ => Err(format!(
            "usage: rawmc send GROUP PORT IFADDR SRCROOT LAYOUT READY GO\n       \
             rawmc recv GROUP PORT IFADDR READY DESTROOT LAYOUT TIMEOUT_S\n(build {})",
            env!("MAKUO_GIT_COMMIT")
        )),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rawmc: {e}");
            ExitCode::from(2)
        }
    }
}

/// The files to move, in order, and their total size.
struct Layout {
    files: Vec<(String, u64)>,
    bytes: u64,
}

fn layout(path: &str) -> Res<Layout> {
    let text = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let mut files = Vec::new();
    for f in v["files"].as_array().ok_or("layout: no files list")? {
        let rel = f[0].as_str().ok_or("layout: bad path")?;
        let size = f[1].as_u64().ok_or("layout: bad size")?;
        if Path::new(rel).is_absolute() || rel.split('/').any(|c| c == "..") {
            return Err(format!("layout: path {rel:?} leaves the root"));
        }
        files.push((rel.to_string(), size));
    }
    let bytes = files.iter().map(|f| f.1).sum();
    Ok(Layout { files, bytes })
}

fn arg<T: std::str::FromStr>(s: &str, what: &str) -> Res<T> {
    s.parse().map_err(|_| format!("bad {what} {s:?}"))
}

/// An integer socket option that socket2 does not cover (GSO, GRO, buffer sizes past the
/// sysctl limits).
fn setsockopt_int(
    sock: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the fd is open for the borrow of `sock`; the option value is a c_int that lives
    // across the call, and its exact size is passed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets a socket buffer size, past `wmem_max`/`rmem_max` when root may.
fn buffer(sock: &Socket, force: libc::c_int, plain: libc::c_int, size: usize) {
    if setsockopt_int(sock, libc::SOL_SOCKET, force, size as libc::c_int).is_err() {
        let _ = setsockopt_int(sock, libc::SOL_SOCKET, plain, size as libc::c_int);
    }
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn send(a: &[String]) -> Res<bool> {
    let group: Ipv4Addr = arg(&a[0], "group")?;
    let port: u16 = arg(&a[1], "port")?;
    let ifaddr: Ipv4Addr = arg(&a[2], "interface address")?;
    let (root, lay, ready, go) = (Path::new(&a[3]), layout(&a[4])?, &a[5], &a[6]);

    // Everything before the go signal is untimed: load the bytes, open the socket.
    let t_load = Instant::now();
    let mut data = Vec::with_capacity(lay.bytes as usize);
    for (rel, size) in &lay.files {
        let p = root.join(rel);
        let before = data.len();
        File::open(&p)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|e| format!("{}: {e}", p.display()))?;
        if (data.len() - before) as u64 != *size {
            return Err(format!("{}: size differs from the layout", p.display()));
        }
    }
    let load_s = t_load.elapsed().as_secs_f64();
    let sock =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| e.to_string())?;
    sock.set_multicast_if_v4(&ifaddr)
        .map_err(|e| format!("IP_MULTICAST_IF {ifaddr}: {e}"))?;
    sock.set_multicast_ttl_v4(1).map_err(|e| e.to_string())?;
    sock.set_multicast_loop_v4(false)
        .map_err(|e| e.to_string())?;
    buffer(&sock, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, 4 << 20);
    sock.connect(&SocketAddr::V4(SocketAddrV4::new(group, port)).into())
        .map_err(|e| format!("connect {group}:{port}: {e}"))?;
    setsockopt_int(
        &sock,
        libc::SOL_UDP,
        libc::UDP_SEGMENT,
        DGRAM as libc::c_int,
    )
    .map_err(|e| format!("UDP_SEGMENT: {e}"))?;
    let sock: UdpSocket = sock.into();

    File::create(ready).map_err(|e| format!("{ready}: {e}"))?;
    // Blocks until the runner opens the FIFO; then one byte (or EOF) is the go.
    let mut b = [0u8; 1];
    let _ = File::open(go)
        .and_then(|mut f| f.read(&mut b))
        .map_err(|e| format!("{go}: {e}"))?;

    let t0 = Instant::now();
    let e0 = epoch();
    let mut waits = 0u64;
    for chunk in data.chunks(DGRAM * GSO) {
        loop {
            match sock.send(chunk) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // No buffer space: the qdisc is full; wait a little and send the same batch.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    waits += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(format!("send: {e}")),
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let e1 = epoch();
    // END markers only matter when datagrams were lost (receivers stop on the byte count).
    let sock = Socket::from(sock);
    let _ = setsockopt_int(&sock, libc::SOL_UDP, libc::UDP_SEGMENT, 0);
    for _ in 0..20 {
        let _ = sock.send(END);
        std::thread::sleep(Duration::from_millis(10));
    }
    let mbit = if secs > 0.0 {
        data.len() as f64 * 8.0 / secs / 1e6
    } else {
        0.0
    };
    println!(
        "{{\"bytes\": {}, \"t0\": {e0:.6}, \"t1\": {e1:.6}, \"send_seconds\": {secs:.6}, \
         \"payload_mbit_s\": {mbit:.1}, \"load_seconds\": {load_s:.3}, \"enobufs_waits\": {waits}}}",
        data.len()
    );
    Ok(true)
}

/// Writes the byte stream into the layout's files, each under a temporary name, renamed into
/// place when complete.
struct Writer<'a> {
    root: &'a Path,
    files: &'a [(String, u64)],
    idx: usize,
    left: u64,
    out: Option<(File, PathBuf, PathBuf)>,
    made: HashSet<PathBuf>,
    complete: usize,
}

impl Writer<'_> {
    fn open_next(&mut self) -> io::Result<()> {
        let (rel, size) = &self.files[self.idx];
        let dst = self.root.join(rel);
        let dir = dst.parent().unwrap_or(self.root).to_path_buf();
        if !self.made.contains(&dir) {
            fs::create_dir_all(&dir)?;
            self.made.insert(dir.clone());
        }
        let name = dst
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".rawmc.{name}"));
        self.out = Some((File::create(&tmp)?, tmp, dst));
        self.left = *size;
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if let Some((f, tmp, dst)) = self.out.take() {
            drop(f);
            fs::rename(tmp, dst)?;
        }
        self.idx += 1;
        self.complete += 1;
        Ok(())
    }

    /// Empty files need no bytes: complete them as soon as they are next.
    fn skip_empty(&mut self) -> io::Result<()> {
        while self.idx < self.files.len() && self.files[self.idx].1 == 0 {
            self.open_next()?;
            self.finish()?;
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.idx >= self.files.len()
    }

    /// Takes one received chunk; returns the bytes that did not fit the layout.
    fn take(&mut self, mut b: &[u8]) -> io::Result<usize> {
        while !b.is_empty() && !self.done() {
            if self.out.is_none() {
                self.open_next()?;
            }
            let n = (self.left.min(b.len() as u64)) as usize;
            if let Some((f, _, _)) = self.out.as_mut() {
                f.write_all(&b[..n])?;
            }
            b = &b[n..];
            self.left -= n as u64;
            if self.left == 0 {
                self.finish()?;
                self.skip_empty()?;
            }
        }
        Ok(b.len())
    }
}

fn recv(a: &[String]) -> Res<bool> {
    let group: Ipv4Addr = arg(&a[0], "group")?;
    let port: u16 = arg(&a[1], "port")?;
    let ifaddr: Ipv4Addr = arg(&a[2], "interface address")?;
    let (ready, root, lay) = (&a[3], Path::new(&a[4]), layout(&a[5])?);
    let timeout: f64 = arg(&a[6], "timeout")?;

    let sock =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| e.to_string())?;
    sock.set_reuse_address(true).map_err(|e| e.to_string())?;
    buffer(&sock, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, 64 << 20);
    // GRO hands over up to 64 KiB of same-size datagrams per read; the stream has no
    // boundaries, so the coalesced bytes are taken as they come.
    let _ = setsockopt_int(&sock, libc::SOL_UDP, libc::UDP_GRO, 1);
    sock.bind(&SocketAddr::V4(SocketAddrV4::new(group, port)).into())
        .map_err(|e| format!("bind {group}:{port}: {e}"))?;
    sock.join_multicast_v4(&group, &ifaddr)
        .map_err(|e| format!("join {group} on {ifaddr}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs_f64(timeout)))
        .map_err(|e| e.to_string())?;
    let sock: UdpSocket = sock.into();
    File::create(ready).map_err(|e| format!("{ready}: {e}"))?;

    let mut w = Writer {
        root,
        files: &lay.files,
        idx: 0,
        left: 0,
        out: None,
        made: HashSet::new(),
        complete: 0,
    };
    let io_err = |e: io::Error| format!("write under {}: {e}", root.display());
    w.skip_empty().map_err(io_err)?;
    let mut buf = vec![0u8; 1 << 17];
    let mut got = 0u64;
    let mut status = "complete".to_string();
    while !w.done() {
        let k = match sock.recv(&mut buf) {
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                status = format!("incomplete (no datagram for {timeout} s)");
                break;
            }
            Err(e) => return Err(format!("recv: {e}")),
        };
        if &buf[..k] == END {
            status = "incomplete (END before all bytes)".into();
            break;
        }
        got += k as u64;
        if w.take(&buf[..k]).map_err(io_err)? > 0 {
            status = "incomplete (surplus bytes)".into();
            break;
        }
    }
    // A torn file stays under its temporary name: the verification sees it.
    drop(w.out.take());
    println!(
        "{{\"bytes\": {got}, \"expect\": {}, \"files\": {}, \"of\": {}, \"status\": \"{status}\"}}",
        lay.bytes,
        w.complete,
        lay.files.len()
    );
    Ok(status == "complete")
}
