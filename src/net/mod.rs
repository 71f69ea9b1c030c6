//! UDP transport: the only code in makuo that touches sockets.
//!
//! A [`Net`] owns two UDP sockets of the group's family (IPv4 or IPv6):
//! - the **group socket**, bound to the group (or a configured listen address) and port with
//!   `SO_REUSEADDR` + `SO_REUSEPORT`, so several daemons on one host can share them; each one
//!   receives every group datagram. It only receives.
//! - the **unicast socket**, bound to `interface:0` (an ephemeral port of its own). Everything
//!   is sent from it, to the group and to single members, so a member's group datagrams carry
//!   its unicast reply address ([`Net::local_addr`]) as their source. Replies arrive on it.
//!
//! The interface is named or given by address ([`iface::resolve`]); IPv6 joins the group and
//! sends multicast by interface index, IPv4 by the interface's address. The multicast hop limit
//! ([`NetConfig::ttl`]) is the IPv4 TTL or the IPv6 hop limit.
//!
//! Per-datagram system calls are the cost that matters, so [`Net::send`] packs runs of
//! equal-size datagrams to one destination into UDP GSO messages (`UDP_SEGMENT`, up to 64
//! segments / 64 KiB each) and hands many messages to one `sendmmsg`. If the kernel refuses
//! GSO (`EINVAL`/`EIO`) it is switched off for good and plain `sendmmsg` takes over. A full
//! socket buffer (`EAGAIN`, or `ENOBUFS` from a full queueing discipline, which the kernel only
//! reports because `IP_RECVERR` is on) makes the sender wait rather than drop, up to
//! [`SEND_STALL`]. [`Net::recv`] waits with `ppoll` on both sockets and drains them with
//! `recvmmsg` into a reusable [`RecvBatch`]; with `UDP_GRO` on, the kernel hands over coalesced
//! buffers that are split here by the `gso_size` it reports. A [`Waker`] (an `eventfd` in the
//! same `ppoll`) lets another thread end that wait at once, so a job handed to the network
//! loop does not wait for its next timeout.
//!
//! This module must not know anything about the protocol: it moves opaque byte slices between
//! the engine and the kernel and counts what it did ([`NetStats`]). The one filtering it does
//! is a socket matter: a member's own group datagrams, looped back by `IP_MULTICAST_LOOP`, are
//! dropped (and counted) rather than handed up. Linux only (GSO/GRO, `sendmmsg`/`recvmmsg`).

mod batch;
pub mod iface;
mod recv;
mod send;
mod sys;
#[cfg(test)]
mod tests;

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

pub use batch::{Datagram, RecvBatch};
pub use iface::Interface;
use sys::{ctx, set_buffer, setsockopt_int};

/// Largest UDP payload over IPv4 (65535 - 20 - 8); also the limit of one GSO message.
pub const MAX_UDP_PAYLOAD: usize = 65_507;
/// Bytes per receive slot in a [`RecvBatch`]: room for one GRO-coalesced buffer.
pub const SLOT_SIZE: usize = 65_536;
/// How long [`Net::send`] waits for a full socket buffer to drain before giving up.
pub const SEND_STALL: Duration = Duration::from_secs(2);

/// Segments per GSO message (the kernel's `UDP_MAX_SEGMENTS` is 64 on older kernels).
const GSO_MAX_SEGMENTS: usize = 64;
/// Messages handed to one `sendmmsg`.
const SEND_MSGS: usize = 64;
/// Control bytes per received message: `UDP_GRO` and `SO_RXQ_OVFL` need 24 bytes each,
/// `SCM_TIMESTAMPNS` 32.
const RECV_CONTROL: usize = 128;
/// Most slots a [`RecvBatch`] may have (`recvmmsg` takes at most `UIO_MAXIOV`).
const MAX_SLOTS: usize = 1024;

/// Socket settings. Build with [`NetConfig::new`] and adjust the fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Multicast group (must be a multicast address, IPv4 or IPv6).
    pub group: IpAddr,
    /// UDP port of the group.
    pub port: u16,
    /// Address of the interface to send multicast on and join the group on (IPv4), and that
    /// the unicast socket binds to (both). Use a real address (not 0.0.0.0 / ::) so
    /// [`Net::local_addr`] is a usable reply address. Same family as the group.
    pub interface: IpAddr,
    /// Index of the interface (IPv6 joins and sends multicast by index; 0: the routing table
    /// picks). See [`iface::resolve`].
    pub ifindex: u32,
    /// Bind address of the group socket; `None` binds the group address itself, so the
    /// socket sees only datagrams sent to the group.
    pub listen: Option<IpAddr>,
    /// Multicast hop limit: IPv4 TTL or IPv6 hops (1: stay on the local link).
    pub ttl: u32,
    /// Receive buffer per socket in bytes (`SO_RCVBUFFORCE` when permitted, else capped by
    /// `net.core.rmem_max`). A limit, not an allocation: it lets a receiver that falls
    /// behind for a moment (a burst of file creations, a busy CPU) catch up instead of
    /// dropping, which would cost a repair round.
    pub rcvbuf: usize,
    /// Send buffer in bytes (`SO_SNDBUFFORCE` when permitted, else capped by `wmem_max`).
    pub sndbuf: usize,
    /// `IP_MULTICAST_LOOP`: deliver group datagrams to other members on this host too.
    pub loopback: bool,
    /// Port of the unicast (reply) socket; 0 picks an ephemeral one.
    pub reply_port: u16,
}

impl NetConfig {
    /// Defaults: bind the group, TTL 1, 32 MiB receive and 8 MiB send buffers, loopback on.
    pub fn new(group: IpAddr, port: u16, interface: Interface) -> Self {
        Self {
            group,
            port,
            interface: interface.addr,
            ifindex: interface.index,
            listen: None,
            ttl: 1,
            rcvbuf: 32 << 20,
            sndbuf: 8 << 20,
            loopback: true,
            reply_port: 0,
        }
    }
}

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dest {
    /// The multicast group (every member).
    Group,
    /// One member's unicast reply address (of the group's family).
    Unicast(SocketAddr),
}

/// Counters since the [`Net`] was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams the kernel accepted.
    pub sent_datagrams: u64,
    /// `sendmmsg` calls made (including ones that failed).
    pub sent_syscalls: u64,
    /// Times a send had to wait for a full socket buffer or queue (`EAGAIN`/`ENOBUFS`).
    pub send_waits: u64,
    /// Unicast datagrams the kernel refused for good (no route, ...) and that were skipped.
    pub send_dropped: u64,
    /// Datagrams handed up by [`Net::recv`] (after GRO splitting).
    pub recv_datagrams: u64,
    /// `recvmmsg` calls made.
    pub recv_syscalls: u64,
    /// Receive buffers that held more than one datagram (`UDP_GRO` coalesced them; each is
    /// handed up on its own, split by the `gso_size` the kernel reported).
    pub recv_coalesced: u64,
    /// Received datagrams dropped because they did not fit a slot (`MSG_TRUNC`/`MSG_CTRUNC`).
    pub truncated: u64,
    /// Datagrams the kernel dropped because a receive buffer was full (`SO_RXQ_OVFL`; with GRO
    /// a dropped buffer may have held several and counts once).
    pub recv_overflows: u64,
    /// Own group datagrams looped back to us and dropped.
    pub own_echo: u64,
    /// ICMP errors seen from unreachable unicast peers (via the error queue and as pending
    /// socket errors; one ICMP message may count twice).
    pub peer_errors: u64,
}

/// The group and unicast sockets of one member. See the module doc.
pub struct Net {
    group: Socket,
    uni: Socket,
    group_addr: SocketAddr,
    local: SocketAddr,
    gso: bool,
    gro: bool,
    /// Last `SO_RXQ_OVFL` counter seen per socket (unicast, group).
    overflow: [u32; 2],
    stats: NetStats,
    /// The eventfd of [`Net::waker`], once asked for.
    wake: Option<Arc<OwnedFd>>,
}

/// Ends a [`Net::recv`] that waits (now or next), from any thread: an `eventfd` that `recv`
/// polls beside the sockets. Cheap to clone; waking twice before `recv` runs wakes it once.
#[derive(Clone, Debug)]
pub struct Waker(Arc<OwnedFd>);

impl Waker {
    /// Wakes the network loop (never blocks; a full counter is already a pending wake-up).
    pub fn wake(&self) {
        let _ = rustix::io::write(&*self.0, &1u64.to_ne_bytes());
    }
}

impl Net {
    /// Opens and configures both sockets.
    pub fn new(cfg: &NetConfig) -> io::Result<Self> {
        if !cfg.group.is_multicast() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a multicast address", cfg.group),
            ));
        }
        let v6 = cfg.group.is_ipv6();
        let mixed = |what: &str, a: IpAddr| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} {a} is not of the group's family ({})", cfg.group),
            )
        };
        if cfg.interface.is_ipv6() != v6 {
            return Err(mixed("interface address", cfg.interface));
        }
        if let Some(l) = cfg.listen.filter(|l| l.is_ipv6() != v6) {
            return Err(mixed("bind address", l));
        }
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let new_sock = || {
            let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
            if v6 {
                s.set_only_v6(true)?;
            }
            Ok::<_, io::Error>(s)
        };
        // Link-local addresses (ff02::/16 groups, fe80::/10 interfaces) need the interface
        // as their scope.
        let scoped = |ip: IpAddr, port: u16| match ip {
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, port, 0, cfg.ifindex)),
            IpAddr::V4(_) => SocketAddr::new(ip, port),
        };

        let group = new_sock().map_err(|e| ctx("group socket", e))?;
        group
            .set_reuse_address(true)
            .map_err(|e| ctx("SO_REUSEADDR", e))?;
        group
            .set_reuse_port(true)
            .map_err(|e| ctx("SO_REUSEPORT", e))?;
        let bind = scoped(cfg.listen.unwrap_or(cfg.group), cfg.port);
        group
            .bind(&bind.into())
            .map_err(|e| ctx(format!("bind {bind}"), e))?;
        let joined = match (cfg.group, cfg.interface) {
            (IpAddr::V4(g), IpAddr::V4(i)) => group.join_multicast_v4(&g, &i),
            (IpAddr::V6(g), _) => group.join_multicast_v6(&g, cfg.ifindex),
            _ => unreachable!("families checked above"),
        };
        joined.map_err(|e| ctx(format!("join {} on {}", cfg.group, cfg.interface), e))?;
        // Only the groups this socket joined, even when bound to a wildcard address.
        let _ = if v6 {
            group.set_multicast_all_v6(false)
        } else {
            group.set_multicast_all_v4(false)
        };
        group.set_nonblocking(true)?;
        set_buffer(&group, libc::SO_RCVBUFFORCE, cfg.rcvbuf, true);

        let uni = new_sock().map_err(|e| ctx("unicast socket", e))?;
        if cfg.reply_port == cfg.port {
            // Unicast on the group's port (peers without multicast): the group socket holds
            // that port too, on the group address or a wildcard.
            uni.set_reuse_address(true)
                .map_err(|e| ctx("SO_REUSEADDR", e))?;
        }
        let bind = scoped(cfg.interface, cfg.reply_port);
        uni.bind(&bind.into())
            .map_err(|e| ctx(format!("bind {bind}"), e))?;
        match cfg.interface {
            IpAddr::V4(i) => {
                uni.set_multicast_if_v4(&i)
                    .map_err(|e| ctx(format!("IP_MULTICAST_IF {i}"), e))?;
                uni.set_multicast_ttl_v4(cfg.ttl)
                    .map_err(|e| ctx("IP_MULTICAST_TTL", e))?;
                uni.set_multicast_loop_v4(cfg.loopback)
                    .map_err(|e| ctx("IP_MULTICAST_LOOP", e))?;
            }
            IpAddr::V6(_) => {
                uni.set_multicast_if_v6(cfg.ifindex)
                    .map_err(|e| ctx(format!("IPV6_MULTICAST_IF {}", cfg.ifindex), e))?;
                uni.set_multicast_hops_v6(cfg.ttl)
                    .map_err(|e| ctx("IPV6_MULTICAST_HOPS", e))?;
                uni.set_multicast_loop_v6(cfg.loopback)
                    .map_err(|e| ctx("IPV6_MULTICAST_LOOP", e))?;
            }
        }
        uni.set_nonblocking(true)?;
        set_buffer(&uni, libc::SO_RCVBUFFORCE, cfg.rcvbuf, true);
        set_buffer(&uni, libc::SO_SNDBUFFORCE, cfg.sndbuf, false);
        // Without IP_RECVERR Linux silently drops a datagram that a full queueing discipline
        // refuses; with it the send returns ENOBUFS and we wait instead.
        let (level, recverr) = if v6 {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
        } else {
            (libc::IPPROTO_IP, libc::IP_RECVERR)
        };
        setsockopt_int(uni.as_raw_fd(), level, recverr, 1).map_err(|e| ctx("IP_RECVERR", e))?;
        let local = uni
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("unicast socket has no IP address"))?;

        let mut gro = true;
        for s in [&group, &uni] {
            let fd = s.as_raw_fd();
            gro &= setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
            let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1);
            // Kernel receive times: round-trip times for rate control without the time a
            // datagram waited for this process.
            let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
        }

        Ok(Self {
            group,
            uni,
            group_addr: scoped(cfg.group, cfg.port),
            local,
            gso: true,
            gro,
            overflow: [0; 2],
            stats: NetStats::default(),
            wake: None,
        })
    }

    /// A [`Waker`] for this socket pair's [`Net::recv`] (the same eventfd on every call).
    pub fn waker(&mut self) -> io::Result<Waker> {
        if self.wake.is_none() {
            use rustix::event::{eventfd, EventfdFlags};
            let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
                .map_err(|e| ctx("eventfd", e.into()))?;
            self.wake = Some(Arc::new(fd));
        }
        Ok(Waker(self.wake.clone().expect("just made")))
    }

    /// This member's unicast reply address (the source of everything it sends).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether the sockets are IPv6 ones.
    pub fn is_ipv6(&self) -> bool {
        self.local.is_ipv6()
    }

    /// Counters since creation.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Whether sends still use UDP GSO (it is switched off after the kernel refuses it).
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Whether `UDP_GRO` was enabled on both sockets.
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Effective (kernel-reported, doubled) receive buffer of the group socket and send
    /// buffer of the unicast socket, for warning about a low `rmem_max`/`wmem_max`.
    pub fn buffer_sizes(&self) -> io::Result<(usize, usize)> {
        Ok((self.group.recv_buffer_size()?, self.uni.send_buffer_size()?))
    }

    fn dest_addr(&self, d: Dest) -> SocketAddr {
        match d {
            Dest::Group => self.group_addr,
            Dest::Unicast(a) => a,
        }
    }
}
