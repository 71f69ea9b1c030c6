//! The bodies of the two messages that carry other members' traffic: a RELAY assignment
//! (the members a relay forwards a sender's push to, see `relay.rs`) and the items of an
//! AGGREGATE (answers a cohort leader gathers for the sender, see `aggregate.rs`).

use std::net::SocketAddr;

use super::{read_addr, write_addr, Cursor, Reader, WireError};

/// Flag of [`Relay`]: also send what is forwarded to the relay's own multicast group, once,
/// for the listed members that hear it (bridging a subnet the sender's multicast does not
/// reach).
pub const RELAY_GROUP: u8 = 0x01;

/// Most members one relay assignment lists.
pub const MAX_RELAY_TARGETS: usize = 64;

/// Relay assignment: until `ttl_ms` passes, the receiving member forwards the datagrams of
/// the kinds `relay.rs` names that come to it by unicast from the sender's own address to
/// the listed members (an empty list cancels).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay<'a> {
    /// How long the assignment stands (ms; relays cap it).
    pub ttl_ms: u32,
    /// [`RELAY_GROUP`].
    pub flags: u8,
    /// Number of addresses in `addrs_raw` (at most [`MAX_RELAY_TARGETS`]).
    pub count: u8,
    /// Raw addresses (family u8, address, port u16); iterate with [`Relay::targets`].
    pub addrs_raw: &'a [u8],
}

impl<'a> Relay<'a> {
    /// The listed members' addresses (decode validated every entry).
    pub fn targets(&self) -> impl Iterator<Item = SocketAddr> + 'a {
        let mut r = Reader::new(self.addrs_raw);
        (0..self.count).map_while(move |_| read_addr(&mut r).ok())
    }

    /// Encodes `addrs` (at most [`MAX_RELAY_TARGETS`] are taken) into `buf`, returning the
    /// count and the bytes used.
    pub fn write_targets(addrs: &[SocketAddr], buf: &mut [u8]) -> (u8, usize) {
        let mut c = Cursor::new(buf);
        let mut n = 0u8;
        for a in addrs.iter().take(MAX_RELAY_TARGETS) {
            write_addr(&mut c, a);
            n += 1;
        }
        (n, c.len())
    }
}

/// Bytes an item of an AGGREGATE takes besides its body.
pub const AGG_ITEM_HDR: usize = 11;
/// Bytes of an AGGREGATE body before its items.
pub const AGG_HDR: usize = 12;
/// Most items one AGGREGATE carries.
pub const MAX_AGG_ITEMS: usize = 255;

/// Appends one item to an AGGREGATE's raw items.
pub fn push_aggregate_item(out: &mut Vec<u8>, node: u64, kind: u8, body: &[u8]) {
    out.extend_from_slice(&node.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(&(body.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(&body[..body.len().min(u16::MAX as usize)]);
}

/// Iterates over an AGGREGATE's items (node, kind, body); decode validated them.
pub fn aggregate_items(raw: &[u8]) -> impl Iterator<Item = (u64, u8, &[u8])> + '_ {
    let mut r = Reader::new(raw);
    std::iter::from_fn(move || read_agg_item(&mut r).ok())
}

pub(super) fn read_agg_item<'a>(r: &mut Reader<'a>) -> Result<(u64, u8, &'a [u8]), WireError> {
    let node = r.u64()?;
    let kind = r.u8()?;
    let body = r.bytes16()?;
    Ok((node, kind, body))
}
