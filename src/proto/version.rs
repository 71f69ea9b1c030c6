//! Peers that speak another protocol version: recognised, refused, remembered and reported.
//!
//! Every datagram carries the protocol version in its third byte. A node parses nothing of a
//! datagram in a version it does not speak, with two exceptions that every version keeps
//! (see `docs/protocol.md`, *Versions*): the 24-byte header layout, and the first fields of a
//! HEARTBEAT body (flags, proto_min, proto_max, interval, name, software version). From those
//! a refused peer is named: [`Foreign`] records who it is and which versions it speaks, so
//! `members` can show a rolling upgrade, and the engine emits a notice at most once per
//! [`NOTICE_EVERY`] per peer, so a cluster of mixed versions logs a few lines, not a flood.
//! The table is bounded ([`MAX_FOREIGN`]) and forgets peers not heard for the member expiry.
//! No I/O and no clock: `now` is passed in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::wire;

/// Least time between two notices about the same peer.
pub const NOTICE_EVERY: Duration = Duration::from_secs(600);
/// Most peers of other versions remembered at once.
pub const MAX_FOREIGN: usize = 256;

/// A peer heard speaking a protocol version this node does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Foreign {
    /// Its reply address (the datagram's source).
    pub addr: SocketAddr,
    /// Its node id, from the header.
    pub node: u64,
    /// The version of its datagrams.
    pub wire_version: u8,
    /// The versions it speaks, from its heartbeat (`None` until one was heard unsealed).
    pub proto: Option<(u8, u8)>,
    /// Its name, from its heartbeat (empty until then).
    pub name: String,
    /// Its software version, from its heartbeat (empty until then).
    pub software: String,
    /// Its heartbeat says it accepts pushes.
    pub receives: bool,
    /// When it was last heard.
    pub last_seen: Instant,
    last_notice: Option<Instant>,
}

impl Foreign {
    /// Why a push cannot reach it, for its row in a push's outcome.
    pub fn reason(&self) -> String {
        format!(
            "refused: it speaks protocol version {}, this node {}",
            self.proto.map_or(self.wire_version, |p| p.1),
            wire::VERSION
        )
    }

    /// The peer as one line for a log: name (if known), address, node id and versions.
    pub fn describe(&self) -> String {
        let ours = (wire::MIN_VERSION, wire::VERSION);
        let who = if self.name.is_empty() {
            format!("{} (node {:016x})", self.addr, self.node)
        } else {
            format!("{} {} (node {:016x})", self.name, self.addr, self.node)
        };
        let theirs = match self.proto {
            Some((lo, hi)) if lo != hi => format!("protocol versions {lo}..={hi}"),
            Some((_, hi)) => format!("protocol version {hi}"),
            None => format!("protocol version {}", self.wire_version),
        };
        let sw = if self.software.is_empty() {
            String::new()
        } else {
            format!(", makuo {}", self.software)
        };
        let mine = if ours.0 == ours.1 {
            format!("version {}", ours.1)
        } else {
            format!("versions {}..={}", ours.0, ours.1)
        };
        format!(
            "refusing {who}: it speaks {theirs}{sw}; this node speaks protocol {mine} \
             (makuo {}); upgrade every member to the same release",
            env!("CARGO_PKG_VERSION")
        )
    }
}

/// The table of peers of other versions.
#[derive(Debug, Default)]
pub(crate) struct Versions {
    table: BTreeMap<u64, Foreign>,
}

impl Versions {
    /// A datagram whose version this node does not speak (`bytes` starts with the magic and
    /// holds at least the version byte). Returns the peer when a notice is due.
    pub(crate) fn refused(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Option<&Foreign> {
        let h = wire::peek_foreign(bytes)?;
        if !self.table.contains_key(&h.node) && self.table.len() >= MAX_FOREIGN {
            // Full: forget the peer heard least recently.
            let oldest = self.table.values().min_by_key(|f| f.last_seen)?.node;
            self.table.remove(&oldest);
        }
        let f = self.table.entry(h.node).or_insert_with(|| Foreign {
            addr: from,
            node: h.node,
            wire_version: h.version,
            proto: None,
            name: String::new(),
            software: String::new(),
            receives: false,
            last_seen: now,
            last_notice: None,
        });
        f.addr = from;
        f.wire_version = h.version;
        f.last_seen = now;
        let mut learned = false;
        if let Some(hello) = h.hello {
            learned = f.proto.is_none();
            f.proto = Some(hello.proto);
            f.name = String::from_utf8_lossy(hello.name).into_owned();
            f.software = String::from_utf8_lossy(hello.software).into_owned();
            f.receives = hello.flags & wire::HB_RECEIVER != 0;
        }
        // A notice at first sight, again once the heartbeat names the peer, then at most once
        // per NOTICE_EVERY.
        let due = match f.last_notice {
            None => true,
            Some(t) => learned || now.saturating_duration_since(t) >= NOTICE_EVERY,
        };
        if !due {
            return None;
        }
        f.last_notice = Some(now);
        Some(f)
    }

    /// Forgets peers not heard for `expiry`.
    pub(crate) fn expire(&mut self, now: Instant, expiry: Duration) {
        self.table
            .retain(|_, f| now.saturating_duration_since(f.last_seen) < expiry);
    }

    /// A member of this version was heard with this node id: it is not foreign (any more).
    pub(crate) fn forget(&mut self, node: u64) {
        self.table.remove(&node);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Foreign> {
        self.table.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::{Header, Heartbeat, Msg, HEADER_LEN, MAGIC};

    fn hb(version: u8, node: u64, name: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; wire::MAX_DATAGRAM];
        let h = Header {
            version: wire::VERSION,
            kind: 0,
            flags: 0,
            key_id: 0,
            cluster: 7,
            node,
            seq: 1,
        };
        let n = Msg::Heartbeat(Heartbeat {
            flags: wire::HB_RECEIVER,
            proto_min: version,
            proto_max: version,
            interval_ms: 1000,
            name,
            version: b"0.0.9",
            info: b"",
            known_raw: b"",
            known_count: 0,
        })
        .encode(&h, &mut buf);
        buf.truncate(n);
        buf[2] = version;
        buf
    }

    #[test]
    fn a_peer_of_another_version_is_named_once_then_rate_limited() {
        let t0 = Instant::now();
        let from: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let mut v = Versions::default();
        let d = hb(1, 0xabc, b"old-web");
        let f = v.refused(t0, from, &d).expect("first sight is noticed");
        assert_eq!(f.name, "old-web");
        assert_eq!(f.proto, Some((1, 1)));
        assert!(f.receives);
        let line = f.describe();
        assert!(line.contains("old-web 10.0.0.5:4000"), "{line}");
        assert!(line.contains("protocol version 1"), "{line}");
        assert!(
            line.contains(&format!("protocol version {}", wire::VERSION)),
            "{line}"
        );
        for i in 1..100 {
            assert!(v.refused(t0 + Duration::from_millis(i), from, &d).is_none());
        }
        assert!(v.refused(t0 + NOTICE_EVERY, from, &d).is_some());
        assert_eq!(v.iter().count(), 1);
        v.expire(
            t0 + NOTICE_EVERY + Duration::from_secs(5),
            Duration::from_secs(5),
        );
        assert_eq!(v.iter().count(), 0);
    }

    #[test]
    fn other_kinds_and_sealed_heartbeats_name_only_the_address() {
        let t0 = Instant::now();
        let from: SocketAddr = "10.0.0.6:4000".parse().unwrap();
        let mut v = Versions::default();
        // A future version's datagram of an unknown kind: header only.
        let mut d = vec![0u8; HEADER_LEN + 3];
        d[..2].copy_from_slice(&MAGIC);
        d[2] = 9;
        d[3] = 77;
        d[8..16].copy_from_slice(&5u64.to_be_bytes());
        let f = v.refused(t0, from, &d).unwrap();
        assert_eq!((f.node, f.wire_version, f.proto), (5, 9, None));
        assert!(f.describe().contains("protocol version 9"));
        // A sealed heartbeat's body is ciphertext: it is not read.
        let mut s = hb(3, 6, b"sealed");
        s[4] |= wire::FLAG_SEALED;
        let f = v.refused(t0, from, &s).unwrap();
        assert_eq!(f.proto, None);
        assert!(f.name.is_empty());
        // Too short to hold a header: nothing is recorded.
        assert!(v.refused(t0, from, &d[..10]).is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let from: SocketAddr = "10.0.0.7:4000".parse().unwrap();
        let mut v = Versions::default();
        for n in 0..(MAX_FOREIGN as u64 + 50) {
            v.refused(t0 + Duration::from_millis(n), from, &hb(1, n + 1, b"x"));
        }
        assert_eq!(v.iter().count(), MAX_FOREIGN);
        // The newest are kept.
        assert!(v.iter().any(|f| f.node == MAX_FOREIGN as u64 + 50));
    }
}
