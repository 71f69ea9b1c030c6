//! Decoding message bodies: untrusted bytes in, a typed [`Msg`] borrowing from them out,
//! every length and count checked against what remains (see the module doc of `wire`).

use super::*;

/// Parses a message body of kind `kind`.
pub fn decode_body<'a>(k: u8, r: &mut Reader<'a>) -> Result<Msg<'a>, WireError> {
    let m = match k {
        kind::HEARTBEAT => {
            let flags = r.u8()?;
            let proto_min = r.u8()?;
            let proto_max = r.u8()?;
            let interval_ms = r.u32()?;
            let name = r.bytes8()?;
            let version = r.bytes8()?;
            let info = r.bytes16()?;
            let known_count = r.u16()?;
            let start = r.rest();
            let mut kr = Reader::new(start);
            for _ in 0..known_count {
                read_known(&mut kr)?;
            }
            kr.finish()?;
            Msg::Heartbeat(Heartbeat {
                flags,
                proto_min,
                proto_max,
                interval_ms,
                name,
                version,
                info,
                known_raw: start,
                known_count,
            })
        }
        kind::LEAVE => Msg::Leave,
        kind::ANNOUNCE => {
            let xfer = r.u32()?;
            let block = r.u16()?;
            let group = r.u16()?;
            let parity = r.u16()?;
            // Parity is bounded like the group: a receiver's erasure decoder takes memory in
            // proportion to the parity count times the block size (65535 symbols of 9000
            // bytes would be half a gigabyte per decode). Senders announce parity = group / 2.
            // Tiny blocks are refused: they multiply per-group bookkeeping for nothing.
            if block < MIN_BLOCK
                || block % 2 != 0
                || group == 0
                || group > 1024
                || parity == 0
                || parity > 1024
            {
                return Err(WireError::BadValue("announce parameters"));
            }
            let manifest_len = r.u64()?;
            let total = r.u16()?;
            let first = r.u16()?;
            let n = r.u16()? as usize;
            if total as usize > MAX_TARGETS {
                return Err(WireError::TooLarge("targets"));
            }
            if n == 0 || first as usize + n > total as usize {
                return Err(WireError::BadValue("announce part"));
            }
            let targets_raw = r.raw(n * 8)?;
            let pending = r.bytes8()?;
            Msg::Announce(Announce {
                xfer,
                block,
                group,
                parity,
                manifest_len,
                total,
                first,
                targets_raw,
                pending,
            })
        }
        kind::BLOCK => {
            let xfer = r.u32()?;
            let stream = Stream::from_u8(r.u8()?)?;
            let hi = r.u8()? as u32;
            let lo = r.u16()? as u32;
            let idx = (hi << 16) | lo;
            let data = r.rest();
            if data.is_empty() {
                return Err(WireError::Truncated);
            }
            Msg::Block {
                xfer,
                stream,
                idx,
                data,
            }
        }
        kind::PARITY => {
            let xfer = r.u32()?;
            let stream = Stream::from_u8(r.u8()?)?;
            let group = r.u32()?;
            let index = r.u16()?;
            let data = r.rest();
            if data.is_empty() || data.len() % 2 != 0 {
                return Err(WireError::BadValue("parity size"));
            }
            Msg::Parity {
                xfer,
                stream,
                group,
                index,
                data,
            }
        }
        kind::POLL => Msg::Poll {
            xfer: r.u32()?,
            round: r.u32()?,
            pending: r.bytes8()?,
        },
        kind::REPORT => {
            let xfer = r.u32()?;
            let part = r.u16()?;
            let parts = r.u16()?;
            if parts == 0 || part >= parts {
                return Err(WireError::BadValue("report part"));
            }
            Msg::Report {
                xfer,
                part,
                parts,
                data: r.rest(),
            }
        }
        kind::NAK => {
            let xfer = r.u32()?;
            let round = r.u32()?;
            let flags = r.u8()?;
            let seen = r.u64()?;
            let hold_us = r.u32()?;
            let entries = r.rest();
            let mut er = Reader::new(entries);
            while er.remaining() > 0 {
                read_nak(&mut er)?;
            }
            Msg::Nak {
                xfer,
                round,
                flags,
                seen,
                hold_us,
                entries,
            }
        }
        kind::COMMIT => {
            let xfer = r.u32()?;
            let flags = r.u8()?;
            let pending = r.bytes8()?;
            let n = r.u16()? as usize;
            let vanished_raw = r.raw(n * 4)?;
            Msg::Commit {
                xfer,
                flags,
                pending,
                vanished_raw,
            }
        }
        kind::RESULT => {
            let xfer = r.u32()?;
            let status = r.u8()?;
            if status > RESULT_READY {
                return Err(WireError::BadValue("result status"));
            }
            Msg::Result {
                xfer,
                status,
                files: r.u32()?,
                bytes: r.u64()?,
                deleted: r.u32()?,
                message: r.bytes16()?,
            }
        }
        kind::ABORT => Msg::Abort {
            xfer: r.u32()?,
            reason: r.bytes16()?,
        },
        kind::PACE => Msg::Pace(Pace {
            xfer: r.u32()?,
            rate: r.u64()?,
            rtt_us: r.u32()?,
            interval_us: r.u32()?,
            clr: r.u64()?,
            backlog_us: r.u32()?,
            uni: r.u32()?,
            flags: r.u8()?,
            echo: r.u64()?,
            echo_ts: r.u32()?,
            echo_hold_us: r.u32()?,
        }),
        kind::AGGREGATE => {
            let origin = r.u64()?;
            let xfer = r.u32()?;
            let items = r.rest();
            let mut ir = Reader::new(items);
            let mut n = 0;
            while ir.remaining() > 0 {
                let (_, k, _) = read_agg_item(&mut ir)?;
                if !matches!(k, kind::REPORT | kind::NAK | kind::RESULT) {
                    return Err(WireError::UnknownKind(k));
                }
                n += 1;
                if n > MAX_AGG_ITEMS {
                    return Err(WireError::TooLarge("aggregate items"));
                }
            }
            Msg::Aggregate {
                origin,
                xfer,
                items,
            }
        }
        kind::FEEDBACK => Msg::Feedback(Feedback {
            xfer: r.u32()?,
            flags: r.u8()?,
            seen: r.u64()?,
            hold_us: r.u32()?,
            loss: r.u32()?,
            recv_rate: r.u64()?,
            overflows: r.u32()?,
            ts_us: r.u32()?,
        }),
        kind::RELAY => {
            let ttl_ms = r.u32()?;
            let flags = r.u8()?;
            let count = r.u8()?;
            if count as usize > MAX_RELAY_TARGETS {
                return Err(WireError::TooLarge("relay targets"));
            }
            let addrs_raw = r.rest();
            let mut ar = Reader::new(addrs_raw);
            for _ in 0..count {
                read_addr(&mut ar)?;
            }
            ar.finish()?;
            Msg::Relay(Relay {
                ttl_ms,
                flags,
                count,
                addrs_raw,
            })
        }
        kind::OUTCOME => {
            let (origin, xfer, status) = (r.u64()?, r.u32()?, r.u8()?);
            if status > OUTCOME_ABORTED {
                return Err(WireError::BadValue("outcome status"));
            }
            Msg::Outcome {
                origin,
                xfer,
                status,
            }
        }
        other => return Err(WireError::UnknownKind(other)),
    };
    r.finish()?;
    Ok(m)
}
