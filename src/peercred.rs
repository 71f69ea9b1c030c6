//! Who is at the other end of a console connection: the peer's uid from `SO_PEERCRED` on a
//! unix socket, and from the kernel's socket table (sock_diag, as `ss -e` reads it) for TCP.
//!
//! For TCP the daemon asks the kernel for the one socket whose local end is the peer's address
//! and whose remote end is ours: the exact 4-tuple of the accepted connection
//! (`SOCK_DIAG_BY_FAMILY` without `NLM_F_DUMP`, which looks the socket up by that tuple instead
//! of listing every socket). The answer names the socket's owner uid. A socket no longer held
//! by any process (closed by its owner, or not accepted yet: the kernel then reports inode 0
//! and an owner that means nothing) or in a state a live client cannot be in is not an
//! answer: the caller must refuse. No socket found means the peer is not on this host (or in
//! another network namespace).
//!
//! The front end asks the same with the ends swapped: the server end of its own connection
//! ([`tcp_server_end`]; it belongs to the process that accepted it), and the listener that
//! takes connections to an address ([`tcp_listener`]: the lookup of a remote end no
//! connection has, `0.0.0.0:0`, falls through to the listener), whose owner a daemon that
//! cannot bind its console port also names.
//!
//! The request is written by hand: one fixed 72-byte message and one fixed 72-byte answer of
//! the stable kernel ABI (`linux/inet_diag.h`, unchanged since Linux 3.3), parsed with length
//! checks, over a netlink socket from `nix` (no `unsafe` here). The rust-netlink crates
//! (`netlink-packet-sock-diag`, `netlink-packet-core`, `netlink-sys`) would bring five crates,
//! a proc-macro (zerocopy-derive) and frequent breaking releases for these two structs.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag};
use nix::sys::socket::{SockProtocol, SockType};
use nix::sys::time::TimeVal;

/// The credentials of the process at the other end of a unix socket, as they were when it
/// connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixPeer {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Process id.
    pub pid: i32,
}

/// `SO_PEERCRED` of a connected unix socket.
pub fn unix_peer(s: &UnixStream) -> io::Result<UnixPeer> {
    let c = socket::getsockopt(&s.as_fd(), sockopt::PeerCredentials)?;
    Ok(UnixPeer {
        uid: c.uid(),
        gid: c.gid(),
        pid: c.pid(),
    })
}

/// What the kernel's socket table says about the client end of a TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOwner {
    /// A socket on this host, held open by a process of this uid.
    Local(u32),
    /// The client socket exists here but belongs to no process any more (closed by its
    /// owner), or is in a state a connected client cannot be in: its owner is unknown.
    Unknown,
    /// No such socket on this host (in this network namespace): the peer is remote.
    NotHere,
}

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
/// `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// `struct inet_diag_msg`.
const MSG_LEN: usize = 72;
const INET_DIAG_NOCOOKIE: u32 = !0;
const IPPROTO_TCP: u8 = 6;
/// TCP states a client socket can be in while its owner still holds it and the server has
/// not closed yet: established, or half-closed by the client (`shutdown(SHUT_WR)`).
const TCP_ESTABLISHED: u8 = 1;
const TCP_FIN_WAIT1: u8 = 4;
const TCP_FIN_WAIT2: u8 = 5;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LISTEN: u8 = 10;

/// The address as 16 bytes and its family: IPv4 (and IPv4-mapped IPv6, which the kernel
/// looks up as IPv4) in the first 4 bytes.
fn diag_addr(a: IpAddr) -> (u8, [u8; 16]) {
    let mut b = [0u8; 16];
    match a.to_canonical() {
        IpAddr::V4(v4) => {
            b[..4].copy_from_slice(&v4.octets());
            (libc::AF_INET as u8, b)
        }
        IpAddr::V6(v6) => (libc::AF_INET6 as u8, v6.octets()),
    }
}

/// The request for the socket whose local end is `client` and whose remote end is `server`.
/// `None` when the two addresses are of different families.
fn request(client: SocketAddr, server: SocketAddr, seq: u32) -> Option<[u8; NLMSG_HDR + REQ_LEN]> {
    let (fam, src) = diag_addr(client.ip());
    let (fam2, dst) = diag_addr(server.ip());
    if fam != fam2 {
        return None;
    }
    let mut m = [0u8; NLMSG_HDR + REQ_LEN];
    m[0..4].copy_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel.
    let r = &mut m[NLMSG_HDR..];
    r[0] = fam;
    r[1] = IPPROTO_TCP;
    r[2] = 0; // no extensions
    r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
                                                      // struct inet_diag_sockid: ports and addresses in network order.
    r[8..10].copy_from_slice(&client.port().to_be_bytes());
    r[10..12].copy_from_slice(&server.port().to_be_bytes());
    r[12..28].copy_from_slice(&src);
    r[28..44].copy_from_slice(&dst);
    // idiag_if 0 (any interface), cookie "none".
    r[48..52].copy_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());
    r[52..56].copy_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());
    Some(m)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The socket id of an answer (`struct inet_diag_sockid` after family, state, timer and
/// retrans): the socket's local and remote ends, IPv4-mapped addresses made plain IPv4.
fn answer_ends(body: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let fam = i32::from(body[0]);
    let sport = u16::from_be_bytes([body[4], body[5]]);
    let dport = u16::from_be_bytes([body[6], body[7]]);
    let addr = |b: &[u8]| -> Option<IpAddr> {
        let a: [u8; 16] = b.try_into().ok()?;
        match fam {
            libc::AF_INET => Some(IpAddr::from([a[0], a[1], a[2], a[3]])),
            libc::AF_INET6 => Some(IpAddr::from(a).to_canonical()),
            _ => None,
        }
    };
    Some((
        SocketAddr::new(addr(&body[8..24])?, sport),
        SocketAddr::new(addr(&body[24..40])?, dport),
    ))
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// One socket of the kernel's table, as sock_diag describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockRecord {
    /// TCP state (`TCP_ESTABLISHED` = 1, `TCP_LISTEN` = 10, ...).
    pub state: u8,
    /// Owner uid: the uid of the socket's inode (the process that made it, or for an
    /// accepted connection the one that accepted it). Meaningless while `inode` is 0.
    pub uid: u32,
    /// Inode of the socket's file; 0 when no process holds it (not accepted yet, closed).
    pub inode: u32,
    /// Local end (IPv4-mapped addresses made plain IPv4).
    pub local: SocketAddr,
    /// Remote end (unspecified for a listener).
    pub remote: SocketAddr,
}

/// What one answer says.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// An answer to another request (another sequence number).
    Other,
    /// No socket matches.
    NotFound,
    /// The socket the kernel found.
    Found(SockRecord),
}

/// Reads one answer of the kernel.
fn parse(b: &[u8], seq: u32) -> io::Result<Answer> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {what}"));
    if b.len() < NLMSG_HDR {
        return Err(bad("short answer"));
    }
    let len = u32_at(b, 0) as usize;
    let kind = u16::from_ne_bytes([b[4], b[5]]);
    if len < NLMSG_HDR || len > b.len() {
        return Err(bad("bad length"));
    }
    if u32_at(b, 8) != seq {
        return Ok(Answer::Other);
    }
    let body = &b[NLMSG_HDR..len];
    match kind {
        NLMSG_ERROR => {
            if body.len() < 4 {
                return Err(bad("short error"));
            }
            let errno = -(u32_at(body, 0) as i32);
            if errno == libc::ENOENT {
                Ok(Answer::NotFound)
            } else {
                Err(io::Error::from_raw_os_error(errno))
            }
        }
        SOCK_DIAG_BY_FAMILY => {
            if body.len() < MSG_LEN {
                return Err(bad("short socket record"));
            }
            let (local, remote) = answer_ends(body).ok_or_else(|| bad("unknown family"))?;
            Ok(Answer::Found(SockRecord {
                state: body[1],
                uid: u32_at(body, 64),
                inode: u32_at(body, 68),
                local,
                remote,
            }))
        }
        _ => Err(bad("unexpected message type")),
    }
}

/// The owner of the client end of a connection, from the record the kernel found for the
/// socket whose local end is `client` and remote end `server`.
fn client_owner(
    r: Option<SockRecord>,
    client: SocketAddr,
    server: SocketAddr,
) -> io::Result<TcpOwner> {
    let Some(r) = r else {
        return Ok(TcpOwner::NotHere);
    };
    // The answer must be about the socket asked for.
    if (r.local, r.remote) != (canonical(client), canonical(server)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "sock_diag: answer about another socket",
        ));
    }
    let live = matches!(r.state, TCP_ESTABLISHED | TCP_FIN_WAIT1 | TCP_FIN_WAIT2);
    Ok(if r.inode != 0 && live {
        TcpOwner::Local(r.uid)
    } else {
        TcpOwner::Unknown
    })
}

/// Asks the kernel for the TCP socket whose local end is `local` and remote end `remote`
/// (for a remote end that no connection has, such as `0.0.0.0:0`, the kernel answers with
/// the listener that would take a connection to `local`). `None`: no such socket here.
fn lookup(
    local: SocketAddr,
    remote: SocketAddr,
    timeout: Duration,
) -> io::Result<Option<SockRecord>> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Some(req) = request(local, remote, seq) else {
        return Ok(None);
    };
    let fd = socket::socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    let tv = TimeVal::new(
        timeout.as_secs() as i64,
        timeout.subsec_micros() as libc::suseconds_t,
    );
    socket::setsockopt(&fd, sockopt::ReceiveTimeout, &tv)?;
    socket::sendto(
        fd.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    // One answer: a socket record (72 bytes and no attributes, none being asked for) or an
    // error (which echoes our request).
    let mut buf = [0u8; 1024];
    for _ in 0..4 {
        let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        match parse(&buf[..n], seq)? {
            Answer::Other => continue,
            Answer::NotFound => return Ok(None),
            Answer::Found(r) => return Ok(Some(r)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "sock_diag: no answer to our request",
    ))
}

/// Looks up the owner of the client end of an accepted TCP connection: `peer` is the
/// client's address (`TcpStream::peer_addr`), `local` ours (`TcpStream::local_addr`).
/// Answers within `timeout` or fails.
pub fn tcp_owner(peer: SocketAddr, local: SocketAddr, timeout: Duration) -> io::Result<TcpOwner> {
    client_owner(lookup(peer, local, timeout)?, peer, local)
}

/// A listening TCP socket on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The uid of the process that made it.
    pub uid: u32,
    /// Its inode: the same socket while this stays the same.
    pub inode: u32,
    /// The address it is bound to (perhaps a wildcard address).
    pub bound: SocketAddr,
}

/// The listener that takes connections to `addr` on this host (in this network namespace),
/// if there is one: the socket whose owner a daemon that cannot bind `addr` names, and whose
/// owner the front end checks before it talks to a console.
pub fn tcp_listener(addr: SocketAddr, timeout: Duration) -> io::Result<Option<Listener>> {
    let nowhere = match addr.ip().to_canonical() {
        IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    match lookup(addr, nowhere, timeout)? {
        Some(r) if r.state == TCP_LISTEN && r.local.port() == addr.port() && r.inode != 0 => {
            Ok(Some(Listener {
                uid: r.uid,
                inode: r.inode,
                bound: r.local,
            }))
        }
        _ => Ok(None),
    }
}

/// What the kernel's socket table says about the server end of a connection this process
/// made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerEnd {
    /// Accepted by a process of this uid (the socket's owner is the process that accepted
    /// it).
    Accepted(u32),
    /// There, but not accepted by any process yet (or no longer held by one): its owner
    /// cannot be told. Ask again in a moment.
    Pending,
    /// No such socket on this host: the server is on another host.
    NotHere,
}

/// Looks up the server end of a connection this process made: `local` is our end
/// (`TcpStream::local_addr`), `peer` the server's (`TcpStream::peer_addr`).
pub fn tcp_server_end(
    local: SocketAddr,
    peer: SocketAddr,
    timeout: Duration,
) -> io::Result<ServerEnd> {
    let Some(r) = lookup(peer, local, timeout)? else {
        return Ok(ServerEnd::NotHere);
    };
    if (r.local, r.remote) != (canonical(peer), canonical(local)) {
        // The listener: the connection is not in the table of established ones yet.
        return Ok(ServerEnd::Pending);
    }
    // Established, or half-closed by either side; a request socket (state 12) reports no
    // owner at all.
    let live = matches!(
        r.state,
        TCP_ESTABLISHED | TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_CLOSE_WAIT
    );
    Ok(if r.inode != 0 && live {
        ServerEnd::Accepted(r.uid)
    } else {
        ServerEnd::Pending
    })
}

/// `uid 33 (www-data)`, or `uid 54321` when the user database does not know it: how a
/// socket's owner is named in messages.
pub fn uid_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("uid {uid} ({})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// Whether an address is loopback (127.0.0.0/8, ::1, or IPv4-mapped 127.x).
pub fn is_loopback(a: IpAddr) -> bool {
    a.to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    const T: Duration = Duration::from_secs(2);

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[test]
    fn tcp_owner_finds_our_own_client_socket_v4_and_v6() {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(l) = TcpListener::bind(addr) else {
                eprintln!("no {addr} here; skipped");
                continue;
            };
            let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (s, peer) = l.accept().unwrap();
            assert_eq!(peer, c.local_addr().unwrap());
            let local = s.local_addr().unwrap();
            assert_eq!(tcp_owner(peer, local, T).unwrap(), TcpOwner::Local(me()));
            // Half-closed by the client: still its owner's.
            c.shutdown(std::net::Shutdown::Write).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(tcp_owner(peer, local, T).unwrap(), TcpOwner::Local(me()));
            // Another port: no such socket.
            let mut other = peer;
            other.set_port(peer.port().wrapping_add(1).max(1));
            if other != local {
                assert_eq!(tcp_owner(other, local, T).unwrap(), TcpOwner::NotHere);
            }
            // Closed by its owner: never taken as anyone's (the kernel would say uid 0).
            drop(c);
            std::thread::sleep(Duration::from_millis(50));
            let after = tcp_owner(peer, local, T).unwrap();
            assert_ne!(after, TcpOwner::Local(me()), "{addr}");
            if me() != 0 {
                assert_ne!(after, TcpOwner::Local(0), "{addr}");
            }
            drop(s);
        }
    }

    #[test]
    fn tcp_owner_of_a_dual_stack_listener_sees_mapped_v4() {
        let Ok(l) = TcpListener::bind("[::]:0") else {
            return;
        };
        let port = l.local_addr().unwrap().port();
        let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (s, peer) = l.accept().unwrap();
        assert!(matches!(peer.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()));
        assert!(is_loopback(peer.ip()));
        assert_eq!(
            tcp_owner(peer, s.local_addr().unwrap(), T).unwrap(),
            TcpOwner::Local(me())
        );
    }

    #[test]
    fn the_front_end_finds_the_listener_and_the_server_end() {
        // A wildcard listener is the one that takes connections to 127.0.0.1.
        let l = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let at = SocketAddr::from(([127, 0, 0, 1], port));
        let found = tcp_listener(at, T).unwrap().unwrap();
        assert_eq!((found.uid, found.bound), (me(), l.local_addr().unwrap()));
        assert_ne!(found.inode, 0);
        // Connected but not accepted: no owner can be told (the kernel would say uid 0).
        let c = TcpStream::connect(at).unwrap();
        let (ours, theirs) = (c.local_addr().unwrap(), c.peer_addr().unwrap());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(tcp_server_end(ours, theirs, T).unwrap(), ServerEnd::Pending);
        let (s, _) = l.accept().unwrap();
        assert_eq!(
            tcp_server_end(ours, theirs, T).unwrap(),
            ServerEnd::Accepted(me())
        );
        // The listener is the same socket as before.
        assert_eq!(tcp_listener(at, T).unwrap(), Some(found));
        drop((s, c, l));
        assert_eq!(tcp_listener(at, T).unwrap(), None);
    }

    #[test]
    fn unix_peer_is_us() {
        let (a, _b) = UnixStream::pair().unwrap();
        let p = unix_peer(&a).unwrap();
        assert_eq!(p.uid, me());
        assert_eq!(p.gid, nix::unistd::getegid().as_raw());
        assert_eq!(p.pid, std::process::id() as i32);
    }

    /// Reads an answer as `tcp_owner` does; `None`: an answer to another request.
    fn parse_answer(
        b: &[u8],
        seq: u32,
        client: SocketAddr,
        server: SocketAddr,
    ) -> io::Result<Option<TcpOwner>> {
        match parse(b, seq)? {
            Answer::Other => Ok(None),
            Answer::NotFound => client_owner(None, client, server).map(Some),
            Answer::Found(r) => client_owner(Some(r), client, server).map(Some),
        }
    }

    #[test]
    fn answers_are_checked() {
        let c: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let s: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let req = request(c, s, 7).unwrap();
        let body = &req[NLMSG_HDR..];
        let record = |state: u8, uid: u32, inode: u32, seq: u32| {
            let mut b = vec![0u8; NLMSG_HDR + MSG_LEN];
            b[0..4].copy_from_slice(&((NLMSG_HDR + MSG_LEN) as u32).to_ne_bytes());
            b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
            b[8..12].copy_from_slice(&seq.to_ne_bytes());
            b[NLMSG_HDR] = libc::AF_INET as u8;
            b[NLMSG_HDR + 1] = state;
            b[NLMSG_HDR + 4..NLMSG_HDR + 40].copy_from_slice(&body[8..44]);
            b[NLMSG_HDR + 64..NLMSG_HDR + 68].copy_from_slice(&uid.to_ne_bytes());
            b[NLMSG_HDR + 68..NLMSG_HDR + 72].copy_from_slice(&inode.to_ne_bytes());
            b
        };
        let parse = |b: &[u8], seq| parse_answer(b, seq, c, s);
        assert_eq!(
            parse(&record(1, 1000, 42, 7), 7).unwrap(),
            Some(TcpOwner::Local(1000))
        );
        // An orphan or a time-wait socket: uid 0 but inode 0; a listener is no client.
        for (state, inode) in [(1, 0), (6, 0), (5, 0), (10, 9), (7, 9)] {
            assert_eq!(
                parse(&record(state, 0, inode, 7), 7).unwrap(),
                Some(TcpOwner::Unknown),
                "state {state} inode {inode}"
            );
        }
        // An IPv6 socket connected to an IPv4-mapped address answers as AF_INET6.
        let mut mapped = record(1, 1000, 42, 7);
        mapped[NLMSG_HDR] = libc::AF_INET6 as u8;
        for at in [NLMSG_HDR + 8, NLMSG_HDR + 24] {
            let v4: [u8; 4] = mapped[at..at + 4].try_into().unwrap();
            let v6 = std::net::Ipv4Addr::from(v4).to_ipv6_mapped().octets();
            mapped[at..at + 16].copy_from_slice(&v6);
        }
        assert_eq!(parse(&mapped, 7).unwrap(), Some(TcpOwner::Local(1000)));
        // Another request's answer is skipped; another socket's is an error.
        assert_eq!(parse(&record(1, 1000, 42, 8), 7).unwrap(), None);
        let mut other = record(1, 1000, 42, 7);
        other[NLMSG_HDR + 5] ^= 1;
        assert!(parse(&other, 7).is_err());
        for n in 0..NLMSG_HDR + MSG_LEN {
            let mut r = record(1, 1000, 42, 7);
            r.truncate(n);
            assert!(parse(&r, 7).is_err(), "truncated to {n}");
        }
        let mut e = vec![0u8; NLMSG_HDR + 4];
        e[0..4].copy_from_slice(&((NLMSG_HDR + 4) as u32).to_ne_bytes());
        e[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        e[8..12].copy_from_slice(&7u32.to_ne_bytes());
        e[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(parse(&e, 7).unwrap(), Some(TcpOwner::NotHere));
        e[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert!(parse(&e, 7).is_err());
        // Mixed families: no request (a v4 client cannot reach a v6-only address).
        assert!(request(c, "[2001:db8::1]:5000".parse().unwrap(), 1).is_none());
    }
}
