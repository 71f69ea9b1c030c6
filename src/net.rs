//! UDP transport: the only code in makuo that touches sockets.
//!
//! A [`Net`] owns two IPv4 UDP sockets:
//! - the **group socket**, bound to the group (or a configured listen address) and port with
//!   `SO_REUSEADDR` + `SO_REUSEPORT`, so several daemons on one host can share them; each one
//!   receives every group datagram. It only receives.
//! - the **unicast socket**, bound to `interface:0` (an ephemeral port of its own). Everything
//!   is sent from it, to the group and to single members, so a member's group datagrams carry
//!   its unicast reply address ([`Net::local_addr`]) as their source. Replies arrive on it.
//!
//! Per-datagram system calls are the cost that matters, so [`Net::send`] packs runs of
//! equal-size datagrams to one destination into UDP GSO messages (`UDP_SEGMENT`, up to 64
//! segments / 64 KiB each) and hands many messages to one `sendmmsg`. If the kernel refuses
//! GSO (`EINVAL`/`EIO`) it is switched off for good and plain `sendmmsg` takes over. A full
//! socket buffer (`EAGAIN`, or `ENOBUFS` from a full queueing discipline, which the kernel only
//! reports because `IP_RECVERR` is on) makes the sender wait rather than drop, up to
//! [`SEND_STALL`]. [`Net::recv`] waits with `ppoll` on both sockets and drains them with
//! `recvmmsg` into a reusable [`RecvBatch`]; with `UDP_GRO` on, the kernel hands over coalesced
//! buffers that are split here by the `gso_size` it reports.
//!
//! This module must not know anything about the protocol: it moves opaque byte slices between
//! the engine and the kernel and counts what it did ([`NetStats`]). The one filtering it does
//! is a socket matter: a member's own group datagrams, looped back by `IP_MULTICAST_LOOP`, are
//! dropped (and counted) rather than handed up. Linux only (GSO/GRO, `sendmmsg`/`recvmmsg`).

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};

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
    /// Multicast group (must be a multicast address).
    pub group: Ipv4Addr,
    /// UDP port of the group.
    pub port: u16,
    /// Address of the interface to send multicast on and join the group on; the unicast
    /// socket binds to it. Use a real address (not 0.0.0.0) so [`Net::local_addr`] is a
    /// usable reply address.
    pub interface: Ipv4Addr,
    /// Bind address of the group socket; `None` binds the group address itself, so the
    /// socket sees only datagrams sent to the group.
    pub listen: Option<Ipv4Addr>,
    /// Multicast TTL (1: stay on the local link).
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
    pub fn new(group: Ipv4Addr, port: u16, interface: Ipv4Addr) -> Self {
        Self {
            group,
            port,
            interface,
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
    /// One member's unicast reply address (IPv4 only).
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

/// One received datagram, borrowed from a [`RecvBatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Sender (its unicast reply address).
    pub from: SocketAddr,
    /// Arrived on the group socket (sent to the group) rather than to us alone.
    pub to_group: bool,
    /// When the kernel received it (`SO_TIMESTAMPNS`, the wall clock), if it said.
    pub received: Option<SystemTime>,
    /// The payload.
    pub data: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    from: SocketAddr,
    to_group: bool,
    received: Option<SystemTime>,
    off: usize,
    len: usize,
}

/// Reusable receive buffers: `slots` slots of [`SLOT_SIZE`] bytes, filled by [`Net::recv`].
/// With GRO one slot can hold many datagrams, so [`RecvBatch::len`] may exceed the slots.
pub struct RecvBatch {
    buf: Vec<u8>,
    slots: usize,
    used: usize,
    entries: Vec<Entry>,
    overflows: u64,
}

impl RecvBatch {
    /// A batch of `slots` slots (clamped to 1..=1024); memory is `slots * 64 KiB`.
    pub fn new(slots: usize) -> Self {
        let slots = slots.clamp(1, MAX_SLOTS);
        Self {
            buf: vec![0; slots * SLOT_SIZE],
            slots,
            used: 0,
            entries: Vec::with_capacity(slots),
            overflows: 0,
        }
    }

    /// Buffers the kernel dropped for a full receive buffer since the previous batch, as the
    /// `SO_RXQ_OVFL` counters on this batch's datagrams tell (the engine's
    /// `handle_rx_overflow` input). With GRO one buffer may have held many datagrams, so this
    /// says that the receiver fell behind more than how much.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// Datagrams held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no datagram is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `i`th datagram, in arrival order per socket.
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        self.entries.get(i).map(|e| Datagram {
            from: e.from,
            to_group: e.to_group,
            received: e.received,
            data: &self.buf[e.off..e.off + e.len],
        })
    }

    /// All datagrams held.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }

    fn clear(&mut self) {
        self.used = 0;
        self.entries.clear();
        self.overflows = 0;
    }
}

impl Default for RecvBatch {
    /// 64 slots (4 MiB).
    fn default() -> Self {
        Self::new(64)
    }
}

/// The group and unicast sockets of one member. See the module doc.
pub struct Net {
    group: Socket,
    uni: Socket,
    group_addr: SocketAddrV4,
    local: SocketAddrV4,
    gso: bool,
    gro: bool,
    /// Last `SO_RXQ_OVFL` counter seen per socket (unicast, group).
    overflow: [u32; 2],
    stats: NetStats,
}

fn ctx(what: impl std::fmt::Display, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `val` outlives the call and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&val as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets a buffer size, first with the `*FORCE` option (root may exceed the sysctl cap), then
/// the ordinary one; failure of both is not fatal (the default buffer stays).
fn set_buffer(sock: &Socket, force: libc::c_int, size: usize, recv: bool) {
    let val = size.min(i32::MAX as usize) as libc::c_int;
    if setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, force, val).is_err() {
        let _ = if recv {
            sock.set_recv_buffer_size(size)
        } else {
            sock.set_send_buffer_size(size)
        };
    }
}

fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

fn from_sockaddr_in(s: &libc::sockaddr_in) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(s.sin_addr.s_addr.to_ne_bytes()),
        u16::from_be(s.sin_port),
    ))
}

/// Errors that report an earlier event (an ICMP error, stored on the socket by `IP_RECVERR`)
/// rather than the call that returned them.
fn is_async_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::EPROTO
                | libc::EMSGSIZE
        )
    )
}

/// One message of a send plan: `count` datagrams from `start`, as GSO segments of `seg`
/// bytes when `count > 1`.
#[derive(Clone, Copy, Debug)]
struct Msg {
    start: usize,
    count: usize,
    seg: usize,
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
        let new_sock = || Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP));

        let group = new_sock().map_err(|e| ctx("group socket", e))?;
        group
            .set_reuse_address(true)
            .map_err(|e| ctx("SO_REUSEADDR", e))?;
        group
            .set_reuse_port(true)
            .map_err(|e| ctx("SO_REUSEPORT", e))?;
        let bind = SocketAddrV4::new(cfg.listen.unwrap_or(cfg.group), cfg.port);
        group
            .bind(&bind.into())
            .map_err(|e| ctx(format!("bind {bind}"), e))?;
        group
            .join_multicast_v4(&cfg.group, &cfg.interface)
            .map_err(|e| ctx(format!("join {} on {}", cfg.group, cfg.interface), e))?;
        // Only the groups this socket joined, even when bound to a wildcard address.
        let _ = group.set_multicast_all_v4(false);
        group.set_nonblocking(true)?;
        set_buffer(&group, libc::SO_RCVBUFFORCE, cfg.rcvbuf, true);

        let uni = new_sock().map_err(|e| ctx("unicast socket", e))?;
        let bind = SocketAddrV4::new(cfg.interface, cfg.reply_port);
        uni.bind(&bind.into())
            .map_err(|e| ctx(format!("bind {bind}"), e))?;
        uni.set_multicast_if_v4(&cfg.interface)
            .map_err(|e| ctx(format!("IP_MULTICAST_IF {}", cfg.interface), e))?;
        uni.set_multicast_ttl_v4(cfg.ttl)
            .map_err(|e| ctx("IP_MULTICAST_TTL", e))?;
        uni.set_multicast_loop_v4(cfg.loopback)
            .map_err(|e| ctx("IP_MULTICAST_LOOP", e))?;
        uni.set_nonblocking(true)?;
        set_buffer(&uni, libc::SO_RCVBUFFORCE, cfg.rcvbuf, true);
        set_buffer(&uni, libc::SO_SNDBUFFORCE, cfg.sndbuf, false);
        // Without IP_RECVERR Linux silently drops a datagram that a full queueing discipline
        // refuses; with it the send returns ENOBUFS and we wait instead.
        setsockopt_int(uni.as_raw_fd(), libc::IPPROTO_IP, libc::IP_RECVERR, 1)
            .map_err(|e| ctx("IP_RECVERR", e))?;
        let local = match uni.local_addr()?.as_socket() {
            Some(SocketAddr::V4(a)) => a,
            _ => return Err(io::Error::other("unicast socket has no IPv4 address")),
        };

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
            group_addr: SocketAddrV4::new(cfg.group, cfg.port),
            local,
            gso: true,
            gro,
            overflow: [0; 2],
            stats: NetStats::default(),
        })
    }

    /// This member's unicast reply address (the source of everything it sends).
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::V4(self.local)
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

    fn dest_addr(&self, d: Dest) -> SocketAddrV4 {
        match d {
            Dest::Group => self.group_addr,
            Dest::Unicast(SocketAddr::V4(a)) => a,
            Dest::Unicast(SocketAddr::V6(_)) => unreachable!("checked in send"),
        }
    }

    /// Sends every datagram of `batch` in order and returns how many the kernel accepted.
    ///
    /// Waits (up to [`SEND_STALL`] without progress) when the socket buffer is full rather
    /// than dropping. A unicast datagram the kernel refuses for good (no route, ...) is
    /// skipped and counted in [`NetStats::send_dropped`]; the same for a group datagram is an
    /// error, as is an IPv6 destination (checked before anything is sent).
    pub fn send(&mut self, batch: &[(Dest, &[u8])]) -> io::Result<usize> {
        if batch
            .iter()
            .any(|(d, _)| matches!(d, Dest::Unicast(SocketAddr::V6(_))))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "IPv6 destination on an IPv4 socket",
            ));
        }
        let mut done = 0;
        let mut sent = 0;
        let mut plan = Vec::with_capacity(SEND_MSGS);
        let mut deadline = Instant::now() + SEND_STALL;
        // Set after an error that may have been an earlier event's; a repeat is taken as
        // this message's own.
        let mut retried = false;
        while done < batch.len() {
            self.plan(&batch[done..], &mut plan);
            match self.sendmmsg(&batch[done..], &plan) {
                Ok(n) => {
                    let k: usize = plan[..n].iter().map(|m| m.count).sum();
                    done += k;
                    sent += k;
                    self.stats.sent_datagrams += k as u64;
                    deadline = Instant::now() + SEND_STALL;
                    retried = false;
                }
                Err(e) => {
                    let first = plan[0];
                    let dest = batch[done + first.start].0;
                    match e.raw_os_error() {
                        Some(libc::EINTR) => {}
                        Some(libc::EAGAIN) => {
                            self.stats.send_waits += 1;
                            self.wait_writable(deadline)?;
                        }
                        Some(libc::ENOBUFS) => {
                            self.stats.send_waits += 1;
                            if Instant::now() >= deadline {
                                return Err(stalled());
                            }
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Some(libc::EINVAL | libc::EIO) if first.count > 1 => {
                            // The kernel or the route refuses UDP_SEGMENT: stop trying.
                            self.gso = false;
                        }
                        _ if is_async_error(&e) && !retried => {
                            self.stats.peer_errors += 1;
                            retried = true;
                        }
                        _ => match dest {
                            Dest::Unicast(_) if e.kind() != io::ErrorKind::InvalidInput => {
                                done += first.count;
                                self.stats.send_dropped += first.count as u64;
                                retried = false;
                            }
                            _ => {
                                return Err(ctx(format!("send to {}", self.dest_addr(dest)), e));
                            }
                        },
                    }
                }
            }
        }
        Ok(sent)
    }

    /// Splits the head of `batch` into at most [`SEND_MSGS`] messages.
    fn plan(&self, batch: &[(Dest, &[u8])], plan: &mut Vec<Msg>) {
        plan.clear();
        let mut i = 0;
        while i < batch.len() && plan.len() < SEND_MSGS {
            let (dest, first) = batch[i];
            let seg = first.len();
            let mut count = 1;
            let mut total = seg;
            if self.gso && seg > 0 {
                while i + count < batch.len() && count < GSO_MAX_SEGMENTS {
                    let (d, b) = batch[i + count];
                    if d != dest
                        || b.is_empty()
                        || b.len() > seg
                        || total + b.len() > MAX_UDP_PAYLOAD
                    {
                        break;
                    }
                    count += 1;
                    total += b.len();
                    if b.len() < seg {
                        break; // only the last segment of a GSO message may be shorter
                    }
                }
            }
            plan.push(Msg {
                start: i,
                count,
                seg,
            });
            i += count;
        }
    }

    /// One `sendmmsg` of `plan`; returns the messages accepted (at least one) or the error
    /// of the first.
    fn sendmmsg(&mut self, batch: &[(Dest, &[u8])], plan: &[Msg]) -> io::Result<usize> {
        let dgrams: usize = plan.iter().map(|m| m.count).sum();
        let mut addrs: Vec<libc::sockaddr_in> = plan
            .iter()
            .map(|m| sockaddr_in(self.dest_addr(batch[m.start].0)))
            .collect();
        let mut iovs: Vec<libc::iovec> = batch[..dgrams]
            .iter()
            .map(|(_, b)| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        // u64 keeps the control buffers aligned for cmsghdr.
        let mut control = vec![[0u64; 4]; plan.len()];
        // SAFETY: all-zero is a valid mmsghdr.
        let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { mem::zeroed() }; plan.len()];
        for (k, m) in plan.iter().enumerate() {
            let h = &mut hdrs[k].msg_hdr;
            h.msg_name = (&mut addrs[k] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: start + count <= dgrams == iovs.len().
            h.msg_iov = unsafe { iovs.as_mut_ptr().add(m.start) };
            h.msg_iovlen = m.count as _;
            if m.count > 1 {
                // SAFETY: the control buffer has room for CMSG_SPACE(2) (24) bytes, is
                // aligned, and msg_control/msg_controllen describe it before CMSG_FIRSTHDR.
                unsafe {
                    let space = libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as usize;
                    h.msg_control = control[k].as_mut_ptr().cast();
                    h.msg_controllen = space as _;
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                    ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), m.seg as u16);
                }
            }
        }
        self.stats.sent_syscalls += 1;
        // SAFETY: hdrs and everything they point to (addrs, iovs, control, batch) live
        // until the call returns; the kernel only reads them except for msg_len.
        let r = unsafe {
            libc::sendmmsg(
                self.uni.as_raw_fd(),
                hdrs.as_mut_ptr(),
                hdrs.len() as u32,
                0,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    /// Waits until the unicast socket is writable or `deadline` passes.
    fn wait_writable(&mut self, deadline: Instant) -> io::Result<()> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(stalled());
            }
            let mut fds = [libc::pollfd {
                fd: self.uni.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            }];
            match ppoll(&mut fds, Some(deadline - now)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if fds[0].revents & libc::POLLERR != 0 {
                self.drain_errors();
            }
            if fds[0].revents & libc::POLLOUT != 0 {
                return Ok(());
            }
        }
    }

    /// Empties the unicast socket's error queue (ICMP errors queued by `IP_RECVERR`).
    fn drain_errors(&mut self) {
        let fd = self.uni.as_raw_fd();
        let mut data = [0u8; 64];
        let mut control = [0u64; 64];
        for _ in 0..256 {
            let mut iov = libc::iovec {
                iov_base: data.as_mut_ptr().cast(),
                iov_len: data.len(),
            };
            // SAFETY: all-zero is a valid msghdr; the buffers outlive the call.
            let mut h: libc::msghdr = unsafe { mem::zeroed() };
            h.msg_iov = &mut iov;
            h.msg_iovlen = 1;
            h.msg_control = control.as_mut_ptr().cast();
            h.msg_controllen = mem::size_of_val(&control) as _;
            // SAFETY: h describes valid buffers.
            let r = unsafe { libc::recvmsg(fd, &mut h, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
            if r < 0 {
                break;
            }
            self.stats.peer_errors += 1;
        }
        // Clear a pending asynchronous error too, so the next call does not return it.
        if let Ok(Some(_)) = self.uni.take_error() {
            self.stats.peer_errors += 1;
        }
    }

    /// Waits up to `timeout` (`None`: indefinitely) for datagrams on either socket, then
    /// drains what is queued (one `recvmmsg` per socket, at most `out`'s slots in all) into
    /// `out`, replacing its contents. Returns the datagrams now in `out`; 0 on timeout, and
    /// possibly 0 when only dropped datagrams (own echo, truncated) arrived.
    pub fn recv(&mut self, timeout: Option<Duration>, out: &mut RecvBatch) -> io::Result<usize> {
        out.clear();
        let mut fds = [
            libc::pollfd {
                fd: self.uni.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.group.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match ppoll(&mut fds, left) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if fds[0].revents & libc::POLLERR != 0 {
            self.drain_errors();
        }
        let uni_ready = fds[0].revents & libc::POLLIN != 0;
        let group_ready = fds[1].revents & libc::POLLIN != 0;
        if uni_ready {
            // Leave half the slots for the group socket when both have data.
            let share = if group_ready {
                out.slots.div_ceil(2)
            } else {
                out.slots
            };
            self.drain(false, share, out)?;
        }
        if group_ready {
            let share = out.slots - out.used;
            self.drain(true, share, out)?;
        }
        Ok(out.len())
    }

    /// One `recvmmsg` into up to `slots` free slots of `out`.
    fn drain(&mut self, group: bool, slots: usize, out: &mut RecvBatch) -> io::Result<()> {
        let slots = slots.min(out.slots - out.used);
        if slots == 0 {
            return Ok(());
        }
        let fd = if group {
            self.group.as_raw_fd()
        } else {
            self.uni.as_raw_fd()
        };
        let base = out.used;
        // SAFETY: all-zero is a valid sockaddr_in.
        let mut names: Vec<libc::sockaddr_in> = vec![unsafe { mem::zeroed() }; slots];
        let mut control = vec![[0u64; RECV_CONTROL / 8]; slots];
        let buf = out.buf.as_mut_ptr();
        let mut iovs: Vec<libc::iovec> = (0..slots)
            .map(|k| libc::iovec {
                // SAFETY: slot base + k < out.slots, so the slot lies inside out.buf.
                iov_base: unsafe { buf.add((base + k) * SLOT_SIZE) }.cast(),
                iov_len: SLOT_SIZE,
            })
            .collect();
        // SAFETY: all-zero is a valid mmsghdr.
        let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { mem::zeroed() }; slots];
        for k in 0..slots {
            let h = &mut hdrs[k].msg_hdr;
            h.msg_name = (&mut names[k] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut iovs[k];
            h.msg_iovlen = 1;
            h.msg_control = control[k].as_mut_ptr().cast();
            h.msg_controllen = RECV_CONTROL as _;
        }
        let mut retried = false;
        let n = loop {
            self.stats.recv_syscalls += 1;
            // SAFETY: hdrs and the names, iovecs, control and slot buffers they point to
            // live until the call returns; no other reference to out.buf is alive.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    slots as u32,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                )
            };
            if r >= 0 {
                break r as usize;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => return Ok(()),
                _ if is_async_error(&e) && !retried => {
                    self.stats.peer_errors += 1;
                    retried = true;
                }
                _ => {
                    return Err(ctx(
                        if group {
                            "receive on group socket"
                        } else {
                            "receive"
                        },
                        e,
                    ))
                }
            }
        };
        let which = group as usize;
        for (k, hdr) in hdrs.iter().enumerate().take(n) {
            let h = &hdr.msg_hdr;
            let len = hdr.msg_len as usize;
            let mut gso = 0usize;
            let mut received = None;
            // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG_* walk stays
            // inside it.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    let data = libc::CMSG_DATA(c);
                    match ((*c).cmsg_level, (*c).cmsg_type) {
                        (libc::SOL_UDP, libc::UDP_GRO) => {
                            gso = ptr::read_unaligned(data.cast::<libc::c_int>()).max(0) as usize;
                        }
                        (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                            let ts = ptr::read_unaligned(data.cast::<libc::timespec>());
                            received = (ts.tv_sec >= 0).then(|| {
                                UNIX_EPOCH
                                    + Duration::new(
                                        ts.tv_sec as u64,
                                        ts.tv_nsec.clamp(0, 999_999_999) as u32,
                                    )
                            });
                        }
                        (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                            let v = ptr::read_unaligned(data.cast::<u32>());
                            let last = &mut self.overflow[which];
                            let new = u64::from(v.wrapping_sub(*last));
                            self.stats.recv_overflows += new;
                            out.overflows += new;
                            *last = v;
                        }
                        _ => {}
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
            }
            let seg = if gso == 0 { len.max(1) } else { gso };
            let pieces = len.div_ceil(seg).max(1) as u64;
            if h.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
                self.stats.truncated += pieces;
                continue;
            }
            let from = from_sockaddr_in(&names[k]);
            if group && from == SocketAddr::V4(self.local) {
                self.stats.own_echo += pieces;
                continue;
            }
            let off = (base + k) * SLOT_SIZE;
            if len == 0 {
                out.entries.push(Entry {
                    from,
                    to_group: group,
                    received,
                    off,
                    len: 0,
                });
            } else {
                for at in (0..len).step_by(seg) {
                    let l = seg.min(len - at);
                    out.entries.push(Entry {
                        from,
                        to_group: group,
                        received,
                        off: off + at,
                        len: l,
                    });
                }
            }
            self.stats.recv_datagrams += pieces;
        }
        out.used += n;
        Ok(())
    }
}

fn stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("send stalled for {SEND_STALL:?}: socket buffer stayed full"),
    )
}

/// `ppoll` with an optional timeout (`None`: wait indefinitely); returns ready descriptors.
fn ppoll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as _,
    });
    let tsp = ts
        .as_ref()
        .map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: fds is a valid array of its length; tsp is null or points to ts.
    let r = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            tsp,
            ptr::null(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

#[cfg(test)]
mod tests {
    //! Loopback only: every socket binds 127.0.0.1 or a 239.255/16 group, multicast goes out
    //! through 127.0.0.1 (`IP_MULTICAST_IF`), and the TTL is 0 so nothing could leave the
    //! host even if a route pointed elsewhere.
    use super::*;

    const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

    /// A group in 239.255.0.0/16 and a port no other test uses.
    fn config() -> NetConfig {
        let probe = std::net::UdpSocket::bind((LO, 0)).unwrap();
        let port = probe.local_addr().unwrap().port();
        let mut r = [0u8; 2];
        getrandom::getrandom(&mut r).unwrap();
        let mut cfg = NetConfig::new(Ipv4Addr::new(239, 255, r[0], r[1].max(1)), port, LO);
        cfg.ttl = 0;
        cfg
    }

    /// Receives until `want` datagrams arrived or two seconds passed.
    #[track_caller]
    fn recv_n(net: &mut Net, want: usize) -> Vec<(SocketAddr, bool, Vec<u8>)> {
        let mut batch = RecvBatch::new(16);
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(2);
        while got.len() < want && Instant::now() < end {
            net.recv(Some(Duration::from_millis(50)), &mut batch)
                .unwrap();
            got.extend(batch.iter().map(|d| (d.from, d.to_group, d.data.to_vec())));
        }
        got
    }

    /// Asserts nothing more arrives within 100 ms.
    #[track_caller]
    fn recv_none(net: &mut Net) {
        let mut batch = RecvBatch::new(4);
        let n = net
            .recv(Some(Duration::from_millis(100)), &mut batch)
            .unwrap();
        assert_eq!(n, 0, "unexpected: {:?}", batch.get(0));
    }

    fn numbered(i: usize, len: usize) -> Vec<u8> {
        let mut v = vec![(i % 251) as u8; len];
        v[..4].copy_from_slice(&(i as u32).to_be_bytes());
        v
    }

    #[test]
    fn a_full_receive_buffer_is_reported_with_the_next_batch() {
        let cfg = config();
        let mut small = cfg.clone();
        small.rcvbuf = 4096; // the kernel rounds it up to its minimum, a few datagrams
        let mut rx = Net::new(&small).unwrap();
        let mut tx = Net::new(&cfg).unwrap();
        let data = vec![3u8; 1400];
        let batch: Vec<(Dest, &[u8])> = vec![(Dest::Group, &data[..]); 200];
        assert_eq!(tx.send(&batch).unwrap(), 200);
        std::thread::sleep(Duration::from_millis(50));
        let mut b = RecvBatch::new(64);
        let (mut got, mut reported) = (0, 0);
        while rx.recv(Some(Duration::from_millis(100)), &mut b).unwrap() > 0 {
            got += b.len() as u64;
            reported += b.overflows();
        }
        assert!(got > 0 && got < 200, "{got} datagrams arrived");
        // The kernel's drop counter rides on datagrams queued after the drops
        // (SO_RXQ_OVFL): the next one tells them, once. It counts dropped buffers: with GSO
        // on the sender and GRO here, one buffer may have held many datagrams.
        assert_eq!(tx.send(&[(Dest::Group, &data[..])]).unwrap(), 1);
        assert_eq!(
            rx.recv(Some(Duration::from_millis(500)), &mut b).unwrap(),
            1
        );
        reported += b.overflows();
        assert!(
            reported > 0 && reported <= 200 - got,
            "{reported} drops reported"
        );
        assert_eq!(rx.stats().recv_overflows, reported);
        assert_eq!(tx.send(&[(Dest::Group, &data[..])]).unwrap(), 1);
        rx.recv(Some(Duration::from_millis(500)), &mut b).unwrap();
        assert_eq!(b.overflows(), 0);
    }

    #[test]
    fn datagrams_carry_the_kernel_receive_time() {
        let cfg = config();
        let mut rx = Net::new(&cfg).unwrap();
        let mut tx = Net::new(&cfg).unwrap();
        let before = SystemTime::now();
        assert_eq!(tx.send(&[(Dest::Group, b"t")]).unwrap(), 1);
        std::thread::sleep(Duration::from_millis(30));
        let mut b = RecvBatch::new(4);
        assert_eq!(
            rx.recv(Some(Duration::from_millis(500)), &mut b).unwrap(),
            1
        );
        let after = SystemTime::now();
        let at = b.get(0).unwrap().received.expect("SO_TIMESTAMPNS");
        // Received before we read it, 30 ms earlier, not when recv returned.
        assert!(at >= before - Duration::from_millis(5) && at <= after);
        assert!(after.duration_since(at).unwrap() >= Duration::from_millis(25));
    }

    #[test]
    fn members_on_one_host_share_group_and_port() {
        let cfg = config();
        let mut a = Net::new(&cfg).unwrap();
        let mut b = Net::new(&cfg).unwrap();
        let mut c = Net::new(&cfg).unwrap();
        assert_ne!(a.local_addr(), b.local_addr());
        assert_eq!(c.send(&[(Dest::Group, b"hello")]).unwrap(), 1);
        for m in [&mut a, &mut b] {
            let got = recv_n(m, 1);
            assert_eq!(got, vec![(c.local_addr(), true, b"hello".to_vec())]);
            recv_none(m);
        }
        // The sender's own group socket hears its echo; it is dropped, not handed up.
        recv_none(&mut c);
        assert_eq!(c.stats().own_echo, 1);
    }

    #[test]
    fn unicast_reply_reaches_the_senders_port() {
        let cfg = config();
        let mut sender = Net::new(&cfg).unwrap();
        let mut member = Net::new(&cfg).unwrap();
        sender.send(&[(Dest::Group, b"who is there")]).unwrap();
        let got = recv_n(&mut member, 1);
        let (from, to_group, _) = &got[0];
        assert!(*to_group);
        assert_eq!(*from, sender.local_addr());
        member.send(&[(Dest::Unicast(*from), b"me")]).unwrap();
        let got = recv_n(&mut sender, 1);
        assert_eq!(got, vec![(member.local_addr(), false, b"me".to_vec())]);
        // A unicast datagram does not reach other members.
        recv_none(&mut member);
    }

    #[test]
    fn batch_of_500_arrives_complete_and_in_order() {
        let cfg = config();
        let mut tx = Net::new(&cfg).unwrap();
        let mut rx = Net::new(&cfg).unwrap();
        let data: Vec<Vec<u8>> = (0..500).map(|i| numbered(i, 1444)).collect();
        let batch: Vec<(Dest, &[u8])> = data.iter().map(|d| (Dest::Group, &d[..])).collect();
        assert_eq!(tx.send(&batch).unwrap(), 500);
        let got = recv_n(&mut rx, 500);
        assert_eq!(got.len(), 500);
        for (i, (from, to_group, d)) in got.iter().enumerate() {
            assert_eq!((*from, *to_group), (tx.local_addr(), true));
            assert_eq!(d, &data[i], "datagram {i}");
        }
        recv_none(&mut rx);
        let (ts, rs) = (tx.stats(), rx.stats());
        eprintln!(
            "gso={} gro={} sender {ts:?}\nreceiver {rs:?}",
            tx.gso(),
            rx.gro()
        );
        assert_eq!(ts.sent_datagrams, 500);
        if tx.gso() {
            assert!(ts.sent_syscalls < 500 / 10, "{ts:?}");
        }
        if rx.gro() {
            assert!(rs.recv_syscalls < 500, "{rs:?}");
        }
    }

    #[test]
    fn mixed_sizes_and_destinations_in_one_batch() {
        let cfg = config();
        let mut tx = Net::new(&cfg).unwrap();
        let mut a = Net::new(&cfg).unwrap();
        let mut b = Net::new(&cfg).unwrap();
        let (ua, ub) = (Dest::Unicast(a.local_addr()), Dest::Unicast(b.local_addr()));
        let plan: Vec<(Dest, Vec<u8>)> = vec![
            (Dest::Group, numbered(0, 100)),
            (Dest::Group, numbered(1, 100)),
            (ua, numbered(2, 50)),
            (Dest::Group, numbered(3, 1400)),
            (Dest::Group, numbered(4, 1400)),
            (Dest::Group, numbered(5, 1400)),
            (Dest::Group, numbered(6, 1000)), // shorter last GSO segment
            (Dest::Group, numbered(7, 1400)), // larger than the previous: a new message
            (Dest::Group, Vec::new()),        // empty datagram
            (ub, numbered(9, 8972)),
            (ub, numbered(10, 8972)),
            (ua, numbered(11, 4)),
            (Dest::Group, numbered(12, 60000)),
        ];
        let batch: Vec<(Dest, &[u8])> = plan.iter().map(|(d, v)| (*d, &v[..])).collect();
        assert_eq!(tx.send(&batch).unwrap(), plan.len());
        for (me, dest) in [(&mut a, ua), (&mut b, ub)] {
            let want: Vec<(SocketAddr, bool, Vec<u8>)> = plan
                .iter()
                .filter(|(d, _)| *d == Dest::Group || *d == dest)
                .map(|(d, v)| (tx.local_addr(), *d == Dest::Group, v.clone()))
                .collect();
            let mut got = recv_n(me, want.len());
            recv_none(me);
            // Order holds per socket; the two sockets interleave arbitrarily.
            let (mut g, mut u): (Vec<_>, Vec<_>) = got.drain(..).partition(|x| x.1);
            g.append(&mut u);
            let (mut wg, mut wu): (Vec<_>, Vec<_>) = want.into_iter().partition(|x| x.1);
            wg.append(&mut wu);
            assert_eq!(g, wg);
        }
    }

    #[test]
    fn recv_times_out_in_bounded_time() {
        let mut net = Net::new(&config()).unwrap();
        let mut batch = RecvBatch::new(1);
        let t = Instant::now();
        assert_eq!(
            net.recv(Some(Duration::from_millis(100)), &mut batch)
                .unwrap(),
            0
        );
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(95) && took < Duration::from_secs(1),
            "{took:?}"
        );
        assert_eq!(net.recv(Some(Duration::ZERO), &mut batch).unwrap(), 0);
    }

    #[test]
    fn gso_messages_respect_segment_and_size_limits() {
        let net = Net::new(&config()).unwrap();
        let (small, jumbo) = (vec![0u8; 1472], vec![0u8; 9000]);
        let mut batch: Vec<(Dest, &[u8])> = vec![(Dest::Group, &small[..]); 100];
        batch.extend(vec![(Dest::Group, &jumbo[..]); 10]);
        let mut plan = Vec::new();
        net.plan(&batch, &mut plan);
        let counts: Vec<usize> = plan.iter().map(|m| m.count).collect();
        // 44 x 1472 = 64768 is the most that fits 65507 bytes; 7 x 9000 likewise.
        assert_eq!(counts, [44, 44, 12, 7, 3]);
        let tiny = [0u8; 10];
        let batch = vec![(Dest::Group, &tiny[..]); 200];
        net.plan(&batch, &mut plan);
        let counts: Vec<usize> = plan.iter().map(|m| m.count).collect();
        assert_eq!(counts, [64, 64, 64, 8]);
    }

    #[test]
    fn ipv6_destination_is_refused_before_sending() {
        let cfg = config();
        let mut tx = Net::new(&cfg).unwrap();
        let mut rx = Net::new(&cfg).unwrap();
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let err = tx
            .send(&[(Dest::Group, b"x"), (Dest::Unicast(v6), b"y")])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(tx.stats().sent_datagrams, 0);
        recv_none(&mut rx);
    }

    #[test]
    fn unreachable_peer_does_not_break_later_sends_or_receives() {
        let cfg = config();
        let mut tx = Net::new(&cfg).unwrap();
        let mut rx = Net::new(&cfg).unwrap();
        // Nobody listens there: the ICMP port-unreachable comes back to tx's socket.
        let dead = {
            let s = std::net::UdpSocket::bind((LO, 0)).unwrap();
            s.local_addr().unwrap()
        };
        assert_eq!(tx.send(&[(Dest::Unicast(dead), b"anyone?")]).unwrap(), 1);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(tx.send(&[(Dest::Group, b"still here")]).unwrap(), 1);
        assert_eq!(recv_n(&mut rx, 1)[0].2, b"still here");
        recv_none(&mut tx);
        rx.send(&[(Dest::Unicast(tx.local_addr()), b"reply")])
            .unwrap();
        assert_eq!(recv_n(&mut tx, 1)[0].2, b"reply");
        assert!(tx.stats().peer_errors >= 1, "{:?}", tx.stats());
    }

    #[test]
    fn refuses_a_non_multicast_group() {
        let mut cfg = config();
        cfg.group = LO;
        assert!(Net::new(&cfg).is_err());
    }

    /// Throughput over loopback, with and without the batching; prints numbers, asserts
    /// nothing about speed. `cargo test --lib net::tests::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench_loopback_100k() {
        bench("GSO + sendmmsg, GRO + recvmmsg", true, true, 1024);
        bench("sendmmsg, recvmmsg (no GSO/GRO)", false, false, 1024);
        bench("one datagram per call", false, false, 1);
    }

    fn bench(name: &str, gso: bool, gro: bool, per_call: usize) {
        const N: usize = 100_000;
        const LEN: usize = 1444;
        let cfg = config();
        let mut tx = Net::new(&cfg).unwrap();
        let mut rx = Net::new(&cfg).unwrap();
        tx.gso = gso;
        if !gro {
            setsockopt_int(rx.group.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 0).unwrap();
            rx.gro = false;
        }
        let slots = if per_call == 1 { 1 } else { 64 };
        let receiver = std::thread::spawn(move || {
            let mut batch = RecvBatch::new(slots);
            let (mut got, mut first, mut last) = (0, None, Instant::now());
            loop {
                let n = rx
                    .recv(Some(Duration::from_millis(300)), &mut batch)
                    .unwrap();
                if n == 0 && first.is_some() {
                    break;
                }
                if n > 0 {
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                }
                got += n;
            }
            (got, last - first.unwrap(), rx.stats())
        });
        std::thread::sleep(Duration::from_millis(50));
        let data = vec![7u8; LEN];
        let batch: Vec<(Dest, &[u8])> = vec![(Dest::Group, &data[..]); 1024];
        let t = Instant::now();
        let mut sent = 0;
        while sent < N {
            sent += tx.send(&batch[..(N - sent).min(per_call)]).unwrap();
        }
        let st = t.elapsed();
        let (got, rt, rs) = receiver.join().unwrap();
        let ts = tx.stats();
        eprintln!(
            "{name}: send {N} x {LEN} B in {st:.2?} = {:.0}/s, {} syscalls; \
             recv {got} in {rt:.2?} = {:.0}/s, {} syscalls, {} kernel drops",
            N as f64 / st.as_secs_f64(),
            ts.sent_syscalls,
            got as f64 / rt.as_secs_f64().max(1e-9),
            rs.recv_syscalls,
            rs.recv_overflows
        );
    }
}
