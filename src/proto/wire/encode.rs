//! Encoding messages into a buffer the caller owns ([`Msg::encode`]), and what every
//! message says of itself (its kind).

use super::*;

impl Msg<'_> {
    /// The kind number of this message.
    pub fn kind(&self) -> u8 {
        match self {
            Msg::Heartbeat(_) => kind::HEARTBEAT,
            Msg::Leave => kind::LEAVE,
            Msg::Announce(_) => kind::ANNOUNCE,
            Msg::Block { .. } => kind::BLOCK,
            Msg::Parity { .. } => kind::PARITY,
            Msg::Poll { .. } => kind::POLL,
            Msg::Report { .. } => kind::REPORT,
            Msg::Nak { .. } => kind::NAK,
            Msg::Commit { .. } => kind::COMMIT,
            Msg::Result { .. } => kind::RESULT,
            Msg::Abort { .. } => kind::ABORT,
            Msg::Pace(_) => kind::PACE,
            Msg::Feedback(_) => kind::FEEDBACK,
            Msg::Aggregate { .. } => kind::AGGREGATE,
            Msg::Relay(_) => kind::RELAY,
            Msg::Outcome { .. } => kind::OUTCOME,
        }
    }

    /// Writes header and body into `buf`; returns the datagram length.
    pub fn encode(&self, hdr: &Header, buf: &mut [u8]) -> usize {
        let mut c = Cursor::new(buf);
        let mut h = *hdr;
        h.kind = self.kind();
        h.write(&mut c);
        match self {
            Msg::Heartbeat(hb) => {
                c.u8(hb.flags);
                c.u8(hb.proto_min);
                c.u8(hb.proto_max);
                c.u32(hb.interval_ms);
                c.bytes8(hb.name);
                c.bytes8(hb.version);
                c.bytes16(hb.info);
                c.u16(hb.known_count);
                c.raw(hb.known_raw);
            }
            Msg::Leave => {}
            Msg::Announce(a) => {
                c.u32(a.xfer);
                c.u16(a.block);
                c.u16(a.group);
                c.u16(a.parity);
                c.u64(a.manifest_len);
                c.u16(a.total);
                c.u16(a.first);
                c.u16((a.targets_raw.len() / 8) as u16);
                c.raw(a.targets_raw);
                c.bytes8(a.pending);
            }
            Msg::Block {
                xfer,
                stream,
                idx,
                data,
            } => {
                c.u32(*xfer);
                c.u8(*stream as u8);
                c.u8((idx >> 16) as u8);
                c.u16(*idx as u16);
                c.raw(data);
            }
            Msg::Parity {
                xfer,
                stream,
                group,
                index,
                data,
            } => {
                c.u32(*xfer);
                c.u8(*stream as u8);
                c.u32(*group);
                c.u16(*index);
                c.raw(data);
            }
            Msg::Poll {
                xfer,
                round,
                pending,
            } => {
                c.u32(*xfer);
                c.u32(*round);
                c.bytes8(pending);
            }
            Msg::Report {
                xfer,
                part,
                parts,
                data,
            } => {
                c.u32(*xfer);
                c.u16(*part);
                c.u16(*parts);
                c.raw(data);
            }
            Msg::Nak {
                xfer,
                round,
                flags,
                seen,
                hold_us,
                entries,
            } => {
                c.u32(*xfer);
                c.u32(*round);
                c.u8(*flags);
                c.u64(*seen);
                c.u32(*hold_us);
                c.raw(entries);
            }
            Msg::Commit {
                xfer,
                flags,
                pending,
                vanished_raw,
            } => {
                c.u32(*xfer);
                c.u8(*flags);
                c.bytes8(pending);
                c.u16((vanished_raw.len() / 4) as u16);
                c.raw(vanished_raw);
            }
            Msg::Result {
                xfer,
                status,
                files,
                bytes,
                deleted,
                message,
            } => {
                c.u32(*xfer);
                c.u8(*status);
                c.u32(*files);
                c.u64(*bytes);
                c.u32(*deleted);
                c.bytes16(message);
            }
            Msg::Abort { xfer, reason } => {
                c.u32(*xfer);
                c.bytes16(reason);
            }
            Msg::Pace(p) => {
                c.u32(p.xfer);
                c.u64(p.rate);
                c.u32(p.rtt_us);
                c.u32(p.interval_us);
                c.u64(p.clr);
                c.u32(p.backlog_us);
                c.u32(p.uni);
                c.u8(p.flags);
                c.u64(p.echo);
                c.u32(p.echo_ts);
                c.u32(p.echo_hold_us);
            }
            Msg::Feedback(f) => {
                c.u32(f.xfer);
                c.u8(f.flags);
                c.u64(f.seen);
                c.u32(f.hold_us);
                c.u32(f.loss);
                c.u64(f.recv_rate);
                c.u32(f.overflows);
                c.u32(f.ts_us);
            }
            Msg::Aggregate {
                origin,
                xfer,
                items,
            } => {
                c.u64(*origin);
                c.u32(*xfer);
                c.raw(items);
            }
            Msg::Relay(rl) => {
                c.u32(rl.ttl_ms);
                c.u8(rl.flags);
                c.u8(rl.count);
                c.raw(rl.addrs_raw);
            }
            Msg::Outcome {
                origin,
                xfer,
                status,
            } => {
                c.u64(*origin);
                c.u32(*xfer);
                c.u8(*status);
            }
        }
        c.len()
    }
}
