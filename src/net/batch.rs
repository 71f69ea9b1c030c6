//! Receive buffers: the reusable [`RecvBatch`] that [`Net::recv`](super::Net::recv) fills and
//! the [`Datagram`]s borrowed from it.

use std::net::SocketAddr;
use std::time::SystemTime;

use super::{MAX_SLOTS, SLOT_SIZE};

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
pub(super) struct Entry {
    pub(super) from: SocketAddr,
    pub(super) to_group: bool,
    pub(super) received: Option<SystemTime>,
    pub(super) off: usize,
    pub(super) len: usize,
}

/// Reusable receive buffers: `slots` slots of [`SLOT_SIZE`] bytes, filled by [`Net::recv`].
/// With GRO one slot can hold many datagrams, so [`RecvBatch::len`] may exceed the slots.
pub struct RecvBatch {
    pub(super) buf: Vec<u8>,
    pub(super) slots: usize,
    pub(super) used: usize,
    pub(super) entries: Vec<Entry>,
    pub(super) overflows: u64,
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

    pub(super) fn clear(&mut self) {
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
