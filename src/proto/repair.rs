//! Repair by erasure-coded parity (Reed-Solomon, via `reed-solomon-simd`).
//!
//! Every stream is cut into blocks of one size and the blocks into groups of `k` (the last
//! group may be shorter). For each group the sender can make `parity` symbols (indices
//! `0..parity`); any `k_g` of the group's `k_g + parity` symbols rebuild the whole group. So
//! when receivers report how many symbols of a group they miss, the sender multicasts the
//! *maximum* of those counts in fresh parity symbols, and each receiver rebuilds its own
//! losses from them: one parity datagram repairs different losses at different receivers.
//! The short last block of a stream is zero-padded to the block size for coding.

use std::collections::BTreeMap;

/// Makes the coding library's tables now: they are built on first use and cost 10-35 ms of
/// CPU, which a push would otherwise wait for at its first parity symbol. A direct-mode
/// front end calls it on a thread of its own while it discovers members, a daemon at start.
pub fn warm_up() {
    let _ = reed_solomon_simd::ReedSolomonEncoder::new(2, 1, 64);
    let _ = reed_solomon_simd::ReedSolomonDecoder::new(2, 1, 64);
}

/// The coding parameters of one transfer (sent in its announcement).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    /// Block (symbol) size in bytes; even.
    pub block: usize,
    /// Source blocks per group.
    pub k: u32,
    /// Parity symbols per group.
    pub parity: u16,
}

/// Why a group could not be coded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeError(pub String);

impl Code {
    /// Number of blocks of a stream of `len` bytes.
    pub fn blocks(&self, len: u64) -> u32 {
        len.div_ceil(self.block as u64) as u32
    }

    /// Number of groups of a stream of `len` bytes.
    pub fn groups(&self, len: u64) -> u32 {
        self.blocks(len).div_ceil(self.k)
    }

    /// Block index range of group `g` in a stream of `nblocks` blocks.
    pub fn group_range(&self, g: u32, nblocks: u32) -> std::ops::Range<u32> {
        let start = g.saturating_mul(self.k).min(nblocks);
        start..start.saturating_add(self.k).min(nblocks)
    }

    /// Byte range of block `i` in a stream of `len` bytes.
    pub fn block_range(&self, i: u32, len: u64) -> std::ops::Range<u64> {
        let s = (i as u64 * self.block as u64).min(len);
        s..(s + self.block as u64).min(len)
    }

    /// Makes parity symbols `indices` of a group from its source blocks (each exactly
    /// `block` bytes, zero-padded).
    pub fn encode(
        &self,
        sources: &[Vec<u8>],
        indices: std::ops::Range<u16>,
    ) -> Result<Vec<Vec<u8>>, CodeError> {
        let k = sources.len();
        let total = self.parity as usize;
        if k == 0 {
            return Err(CodeError("empty group".into()));
        }
        let mut enc = reed_solomon_simd::ReedSolomonEncoder::new(k, total, self.block)
            .map_err(|e| CodeError(e.to_string()))?;
        for s in sources {
            enc.add_original_shard(s)
                .map_err(|e| CodeError(e.to_string()))?;
        }
        let res = enc.encode().map_err(|e| CodeError(e.to_string()))?;
        Ok(indices
            .filter_map(|i| res.recovery(i as usize).map(<[u8]>::to_vec))
            .collect())
    }

    /// Rebuilds the missing source blocks of a group of `k_g` blocks from the present ones
    /// (`(position in group, bytes)`) and parity symbols (`(index, bytes)`). Returns the
    /// restored blocks by position.
    pub fn decode(
        &self,
        k_g: usize,
        present: &[(usize, &[u8])],
        parity: &[(usize, &[u8])],
    ) -> Result<BTreeMap<usize, Vec<u8>>, CodeError> {
        if present.len() + parity.len() < k_g {
            return Err(CodeError("not enough symbols".into()));
        }
        let mut dec =
            reed_solomon_simd::ReedSolomonDecoder::new(k_g, self.parity as usize, self.block)
                .map_err(|e| CodeError(e.to_string()))?;
        for (i, b) in present {
            dec.add_original_shard(*i, b)
                .map_err(|e| CodeError(e.to_string()))?;
        }
        for (i, b) in parity {
            dec.add_recovery_shard(*i, b)
                .map_err(|e| CodeError(e.to_string()))?;
        }
        let res = dec.decode().map_err(|e| CodeError(e.to_string()))?;
        Ok(res
            .restored_original_iter()
            .map(|(i, b)| (i, b.to_vec()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_rebuilds_different_losses_at_different_receivers() {
        let code = Code {
            block: 64,
            k: 8,
            parity: 8,
        };
        let src: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i.wrapping_mul(37); 64]).collect();
        let par = code.encode(&src, 0..2).unwrap();
        // Receiver A lost blocks 1 and 5, receiver B lost 2 and 7: the same two parity
        // symbols repair both.
        for lost in [[1usize, 5], [2, 7]] {
            let present: Vec<(usize, &[u8])> = (0..8)
                .filter(|i| !lost.contains(i))
                .map(|i| (i, src[i].as_slice()))
                .collect();
            let parity: Vec<(usize, &[u8])> = par
                .iter()
                .enumerate()
                .map(|(i, p)| (i, p.as_slice()))
                .collect();
            let got = code.decode(8, &present, &parity).unwrap();
            for l in lost {
                assert_eq!(got[&l], src[l]);
            }
        }
    }

    #[test]
    fn later_parity_indices_are_fresh() {
        let code = Code {
            block: 16,
            k: 4,
            parity: 4,
        };
        let src: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i + 1; 16]).collect();
        let all = code.encode(&src, 0..4).unwrap();
        let late = code.encode(&src, 2..4).unwrap();
        assert_eq!(&all[2..], &late[..]);
        // Lose all three sources; parity 1..4 rebuild them.
        let parity: Vec<(usize, &[u8])> = (1..4).map(|i| (i, all[i].as_slice())).collect();
        let got = code.decode(3, &[], &parity).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[&0], src[0]);
    }

    #[test]
    fn group_geometry() {
        let code = Code {
            block: 10,
            k: 4,
            parity: 4,
        };
        assert_eq!(code.blocks(95), 10);
        assert_eq!(code.groups(95), 3);
        assert_eq!(code.group_range(2, 10), 8..10);
        assert_eq!(code.block_range(9, 95), 90..95);
    }
}
