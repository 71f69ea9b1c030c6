//! The receive path: [`Net::recv`] waits on both sockets with `ppoll`, drains them with
//! `recvmmsg`, splits GRO buffers, reads kernel receive times and overflow counters, and drops
//! our own looped-back group datagrams.

use std::io;
use std::mem;
use std::os::fd::AsRawFd;
use std::ptr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::batch::{Entry, RecvBatch};
use super::sys::{ctx, from_sockaddr, is_async_error, ppoll};
use super::{Net, RECV_CONTROL, SLOT_SIZE};

impl Net {
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
            libc::pollfd {
                // A negative descriptor is ignored by ppoll.
                fd: self.wake.as_ref().map_or(-1, |w| w.as_raw_fd()),
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
        if fds[2].revents & libc::POLLIN != 0 {
            if let Some(w) = &self.wake {
                // Reading resets the counter: one read consumes every wake-up so far.
                let _ = rustix::io::read(&**w, &mut [0u8; 8]);
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
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { mem::zeroed() }; slots];
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
            h.msg_name = (&mut names[k] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
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
            let Some(from) = from_sockaddr(&names[k]) else {
                self.stats.truncated += pieces;
                continue;
            };
            if group && from.ip() == self.local.ip() && from.port() == self.local.port() {
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
            self.stats.recv_coalesced += u64::from(pieces > 1);
        }
        out.used += n;
        Ok(())
    }
}
