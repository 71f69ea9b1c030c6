//! Mutations.

use super::*;

pub(crate) fn pick<'a, T>(rng: &mut Rng, v: &'a [T]) -> &'a T {
    &v[rng.below(v.len() as u64) as usize]
}

pub(crate) fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next() as u8).collect()
}

/// Random bytes of a random length below `max`.
pub(crate) fn noise(rng: &mut Rng, max: u64) -> Vec<u8> {
    let n = rng.below(max) as usize;
    random_bytes(rng, n)
}

/// Applies `n` random mutations to `d`; `other` supplies material for splicing.
pub(crate) fn mutate(rng: &mut Rng, d: &mut Vec<u8>, other: &[u8], n: u64) {
    for _ in 0..n {
        let len = d.len();
        let p = rng.below(len as u64 + 1) as usize;
        match rng.below(11) {
            0 | 1 => {
                if len > 0 {
                    let p = p.min(len - 1);
                    d[p] ^= 1 << rng.below(8);
                }
            }
            2 => {
                if len > 0 {
                    d[p.min(len - 1)] = rng.next() as u8;
                }
            }
            3 => d.truncate(p),
            4 => {
                let extra = noise(rng, 80);
                d.extend_from_slice(&extra);
            }
            5 => {
                // A length or count field forced to an extreme (1, 2, 4 or 8 bytes wide).
                let w = *pick(rng, &[1usize, 2, 4, 8]);
                if len >= w {
                    let p = p.min(len - w);
                    let v = *pick(rng, &[0x00u8, 0xff, 0x7f, 0x80, 0x01]);
                    d[p..p + w].fill(v);
                    if rng.chance(0.5) {
                        d[p + w - 1] = v ^ 0x80;
                    }
                }
            }
            6 => {
                // Splice: our head, another datagram's tail.
                if !other.is_empty() {
                    let q = rng.below(other.len() as u64) as usize;
                    d.truncate(p);
                    d.extend_from_slice(&other[q..]);
                }
            }
            7 => {
                // Delete a chunk.
                let n = rng.below(32) as usize;
                let end = (p + n).min(len);
                d.drain(p..end);
            }
            8 => {
                // Duplicate a chunk in place.
                let n = rng.below(32) as usize;
                let end = (p + n).min(len);
                let chunk = d[p..end].to_vec();
                let at = rng.below(d.len() as u64 + 1) as usize;
                d.splice(at..at, chunk);
            }
            9 => {
                // Header fields: version, kind, flags, key id.
                if len >= 6 {
                    let f = 2 + rng.below(4) as usize;
                    d[f] = match rng.below(3) {
                        0 => rng.below(16) as u8,
                        1 => 0xff,
                        _ => rng.next() as u8,
                    };
                }
            }
            _ => {
                // A varint-looking run: continuation bits everywhere.
                let n = 1 + rng.below(12) as usize;
                let end = (p + n).min(len);
                for b in &mut d[p..end] {
                    *b |= 0x80;
                }
            }
        }
    }
}
