//! The codec of a receiver's report (what it needs of a push): per-entry change flags,
//! the deletions it would make, and the paths it lists.

use crate::proto::manifest::change;
use crate::proto::wire;

/// Most bytes of deletion paths a report lists (with 4 bytes each for its length); the
/// count of deletions is always whole.
pub(crate) const MAX_LISTED_DELETION_BYTES: usize = 8 << 20;
/// Most deletions a report lists.
pub(crate) const MAX_LISTED_DELETIONS: usize = 100_000;
/// Smallest part of a report a member sends but the last (a datagram at the smallest MTU
/// holds more).
pub(crate) const MIN_REPORT_PART: usize = 256;
/// Most bytes of incomplete reports an outbound transfer holds for all its targets.
pub(crate) const MAX_REPORTS_HELD: usize = 128 << 20;

/// Most bytes a report about a manifest of `entries` entries can take: the flags (a run
/// and a flag byte per entry, and as much again for flags beyond the low byte), the listed
/// deletions and the counts.
pub(crate) fn max_report_len(entries: usize) -> usize {
    64 + 6 * entries + MAX_LISTED_DELETION_BYTES
}

/// Report blob: `varint n`, then `(varint zero-run, u8 flags)` pairs covering entries
/// (trailing zeros implicit, terminated by a zero-run that reaches `n`), `varint deletions`,
/// `varint listed`, `listed × bytes_v path`; then, only when some entry's flags go beyond
/// the low byte (attribute changes, which only `-X`/`-A` pushes ask about), `varint count`
/// and `count × (varint entry index delta, u8 high byte)`.
pub(crate) fn encode_report(flags: &[change::Flags], deletions: &[Vec<u8>], list: bool) -> Vec<u8> {
    let mut w = wire::Writer::new();
    w.varint(flags.len() as u64);
    let mut run = 0u64;
    for &f in flags {
        let f = (f & 0xff) as u8;
        if f == 0 {
            run += 1;
        } else {
            w.varint(run);
            w.u8(f);
            run = 0;
        }
    }
    w.varint(run);
    w.varint(deletions.len() as u64);
    let listed = if list {
        let mut bytes = 0;
        deletions
            .iter()
            .take(MAX_LISTED_DELETIONS)
            .take_while(|d| {
                bytes += d.len() + 4;
                bytes <= MAX_LISTED_DELETION_BYTES
            })
            .count()
    } else {
        0
    };
    w.varint(listed as u64);
    for d in &deletions[..listed] {
        w.bytes_v(d);
    }
    let high: Vec<(usize, u8)> = flags
        .iter()
        .enumerate()
        .filter_map(|(i, &f)| ((f >> 8) != 0).then_some((i, (f >> 8) as u8)))
        .collect();
    if !high.is_empty() {
        w.varint(high.len() as u64);
        let mut next = 0;
        for (i, h) in high {
            w.varint((i - next) as u64);
            w.u8(h);
            next = i + 1;
        }
    }
    w.into_vec()
}

pub(crate) type Report = (Vec<change::Flags>, u64, Vec<Vec<u8>>);

pub(crate) fn decode_report(blob: &[u8], entries: usize) -> Result<Report, wire::WireError> {
    use wire::WireError::BadValue;
    let mut r = wire::Reader::new(blob);
    let n = r.varint()? as usize;
    if n != entries {
        return Err(BadValue("report entry count"));
    }
    let mut flags: Vec<change::Flags> = vec![0; n];
    let mut pos = 0usize;
    loop {
        let run = r.varint()? as usize;
        pos = pos.checked_add(run).ok_or(BadValue("report run"))?;
        if pos > n {
            return Err(BadValue("report run"));
        }
        if pos == n {
            break;
        }
        let f = r.u8()?;
        if f == 0 {
            return Err(BadValue("report flag"));
        }
        flags[pos] = f.into();
        pos += 1;
    }
    let deletions = r.varint()?;
    let listed = r.count(1)?;
    let mut list = Vec::with_capacity(listed);
    for _ in 0..listed {
        let p = r.bytes_v(crate::proto::manifest::MAX_PATH)?;
        crate::proto::manifest::check_rel_path(p).map_err(|_| BadValue("deletion path"))?;
        list.push(p.to_vec());
    }
    if r.remaining() > 0 {
        let mut next = 0u64;
        for _ in 0..r.count(2)? {
            let i = next
                .checked_add(r.varint()?)
                .filter(|&i| i < n as u64)
                .ok_or(BadValue("report high flags"))?;
            let h = r.u8()?;
            if h == 0 {
                return Err(BadValue("report high flags"));
            }
            flags[i as usize] |= change::Flags::from(h) << 8;
            next = i + 1;
        }
    }
    r.finish()?;
    Ok((flags, deletions, list))
}
