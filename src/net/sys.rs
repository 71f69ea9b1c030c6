//! Thin system-call helpers of the transport: socket options, `sockaddr` conversions,
//! `ppoll`, and the error classes the send and receive paths share.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::time::Duration;

use socket2::Socket;

use super::SEND_STALL;

pub(super) fn ctx(what: impl std::fmt::Display, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

pub(super) fn setsockopt_int(
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
pub(super) fn set_buffer(sock: &Socket, force: libc::c_int, size: usize, recv: bool) {
    let val = size.min(i32::MAX as usize) as libc::c_int;
    if setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, force, val).is_err() {
        let _ = if recv {
            sock.set_recv_buffer_size(size)
        } else {
            sock.set_send_buffer_size(size)
        };
    }
}

/// The address in a `sockaddr_storage` the kernel filled (IPv4 or IPv6), if it is one.
pub(super) fn from_sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and
            // aligned enough for.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                // A member's address is its identity: the flow label is not part of it.
                0,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Errors that report an earlier event (an ICMP error, stored on the socket by `IP_RECVERR`)
/// rather than the call that returned them.
pub(super) fn is_async_error(e: &io::Error) -> bool {
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

pub(super) fn stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("send stalled for {SEND_STALL:?}: socket buffer stayed full"),
    )
}

/// `ppoll` with an optional timeout (`None`: wait indefinitely); returns ready descriptors.
pub(super) fn ppoll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
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
