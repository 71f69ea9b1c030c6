//! The codec of a receiver's report (what it needs of a push): per-entry change flags,
//! the deletions it would make, and the paths it lists.

use crate::proto::manifest::change;
use crate::proto::wire;

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
        deletions.len().min(100_000)
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
