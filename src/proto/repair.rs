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

use reed_solomon_simd::engine::{tables, DefaultEngine, Engine, GfElement, ShardsRefMut, GF_ORDER};
use reed_solomon_simd::rate::{DefaultRateDecoder, RateDecoder};

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
        let mut dec = DefaultRateDecoder::new(
            k_g,
            self.parity as usize,
            self.block,
            Locator(DefaultEngine::new()),
            None,
        )
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

/// The library's engine, with a cheaper evaluation of the erasure locator for the decodes a
/// receiver runs: a group of 128 blocks with 64 parity symbols has about 64 erasures (the
/// parity symbols it did not get, and its lost blocks) among 192 positions, and the decoder reads
/// the locator at those 192 only. The library computes it at all 65,536 field elements with two
/// Walsh-Hadamard transforms, the same 110 µs for any group: half of a decode's time, and
/// the largest item of a receiver's CPU under 1 % loss with 8 receivers. Summing the logs
/// directly at the positions read takes 64 × 192 table look-ups (a decode: 215 → 99 µs).
struct Locator(DefaultEngine);

/// Above this many look-ups (erasures × positions) the library's transform is cheaper.
const DIRECT_LOOKUPS: usize = 1 << 16;

impl Engine for Locator {
    fn fft(&self, d: &mut ShardsRefMut, pos: usize, size: usize, trunc: usize, skew: usize) {
        self.0.fft(d, pos, size, trunc, skew)
    }

    fn ifft(&self, d: &mut ShardsRefMut, pos: usize, size: usize, trunc: usize, skew: usize) {
        self.0.ifft(d, pos, size, trunc, skew)
    }

    fn mul(&self, x: &mut [[u8; 64]], log_m: GfElement) {
        self.0.mul(x, log_m)
    }

    /// `erasures[i]` for `i < truncated_size`: the sum, modulo 65,535, of `log(i ^ j)` over the
    /// erased positions `j` (`log(0)` counting 0), which is what the library's two transforms
    /// give there (a dyadic convolution of the erasure indicator with the log table). Only
    /// for indicators (0 or 1) and few enough look-ups; the library's high-rate decoder reads
    /// no position at or past `truncated_size` (checked against it in the tests below).
    fn eval_poly(erasures: &mut [GfElement; GF_ORDER], truncated_size: usize) {
        let n = truncated_size.min(GF_ORDER);
        let erased: Vec<usize> = (0..n).filter(|&j| erasures[j] != 0).collect();
        let direct = n < GF_ORDER
            && erased.len() * n <= DIRECT_LOOKUPS
            && erased.iter().all(|&j| erasures[j] == 1);
        if !direct {
            return DefaultEngine::eval_poly(erasures, truncated_size);
        }
        let log = &tables::get_exp_log().log;
        for (i, e) in erasures.iter_mut().enumerate().take(n) {
            // `i ^ i` is 0, whose log the library's transform takes as 0 (`log_walsh[0] = 0`).
            let sum: u32 = erased
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| u32::from(log[i ^ j]))
                .sum();
            *e = (sum % 65_535) as GfElement;
        }
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

    /// A xorshift draw, for the random patterns below.
    fn draw(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn direct_locator_equals_the_librarys_transform_where_the_decoder_reads_it() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for (truncated, erased) in [(192, 64), (192, 1), (130, 70), (384, 130), (64, 63), (2, 1)] {
            let mut lib = [0 as GfElement; GF_ORDER];
            for _ in 0..erased {
                lib[draw(&mut seed) as usize % truncated] = 1;
            }
            let mut direct = lib;
            DefaultEngine::eval_poly(&mut lib, truncated);
            Locator::eval_poly(&mut direct, truncated);
            for i in 0..truncated {
                // Both are residues modulo 65,535, which has two spellings of 0.
                assert_eq!(
                    lib[i] % 65_535,
                    direct[i] % 65_535,
                    "position {i} of {truncated}"
                );
            }
        }
    }

    #[test]
    fn decodes_with_the_direct_locator_rebuild_random_losses_exactly() {
        let mut seed = 0x1234_5678_9abc_def1;
        for round in 0..120 {
            let k = [128, 128, 100, 64, 33, 10, 3, 1][round % 8];
            let code = Code {
                block: 64,
                k: 128,
                parity: 64,
            };
            let src: Vec<Vec<u8>> = (0..k)
                .map(|_| (0..64).map(|_| draw(&mut seed) as u8).collect())
                .collect();
            let par = code.encode(&src, 0..64).unwrap();
            let miss = 1 + draw(&mut seed) as usize % k.min(20);
            let mut order: Vec<usize> = (0..k).collect();
            for i in 0..k {
                order.swap(i, i + draw(&mut seed) as usize % (k - i));
            }
            let lost = &order[..miss];
            let present: Vec<(usize, &[u8])> = (0..k)
                .filter(|i| !lost.contains(i))
                .map(|i| (i, src[i].as_slice()))
                .collect();
            let first = draw(&mut seed) as usize % (64 - miss + 1);
            let parity: Vec<(usize, &[u8])> = (first..first + miss)
                .map(|i| (i, par[i].as_slice()))
                .collect();
            let got = code.decode(k, &present, &parity).unwrap();
            assert_eq!(got.len(), miss, "round {round}");
            for &l in lost {
                assert_eq!(got[&l], src[l], "round {round}, k {k}, block {l}");
            }
        }
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
