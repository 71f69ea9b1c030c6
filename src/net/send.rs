//! The send path: [`Net::send`] plans runs of equal-size datagrams into GSO messages, hands
//! them to `sendmmsg`, and waits out full buffers; ICMP errors are drained from the error queue.

use std::io;
use std::mem;
use std::os::fd::AsRawFd;
use std::ptr;
use std::time::{Duration, Instant};

use socket2::SockAddr;

use super::sys::{ctx, is_async_error, ppoll, stalled};
use super::{Dest, Net, GSO_MAX_SEGMENTS, MAX_UDP_PAYLOAD, SEND_MSGS, SEND_STALL};

/// One message of a send plan: `count` datagrams from `start`, as GSO segments of `seg`
/// bytes when `count > 1`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Msg {
    pub(super) start: usize,
    pub(super) count: usize,
    pub(super) seg: usize,
}

impl Net {
    /// Sends every datagram of `batch` in order and returns how many the kernel accepted.
    ///
    /// Waits (up to [`SEND_STALL`] without progress) when the socket buffer is full rather
    /// than dropping. A unicast datagram the kernel refuses for good (no route, ...) is
    /// skipped and counted in [`NetStats::send_dropped`]; the same for a group datagram is an
    /// error, as is a destination of the other address family (checked before anything is
    /// sent).
    pub fn send(&mut self, batch: &[(Dest, &[u8])]) -> io::Result<usize> {
        let v6 = self.is_ipv6();
        if let Some((Dest::Unicast(a), _)) = batch
            .iter()
            .find(|(d, _)| matches!(d, Dest::Unicast(a) if a.is_ipv6() != v6))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{a}: an {} destination on an {} socket",
                    if v6 { "IPv4" } else { "IPv6" },
                    if v6 { "IPv6" } else { "IPv4" }
                ),
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
    pub(super) fn plan(&self, batch: &[(Dest, &[u8])], plan: &mut Vec<Msg>) {
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
        let addrs: Vec<SockAddr> = plan
            .iter()
            .map(|m| SockAddr::from(self.dest_addr(batch[m.start].0)))
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
            // The kernel only reads msg_name on send.
            h.msg_name = addrs[k].as_ptr() as *mut libc::c_void;
            h.msg_namelen = addrs[k].len();
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
    pub(super) fn drain_errors(&mut self) {
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
}
