//! A parity decode handed to the storage ([`Storage::restore`]): which source blocks of a
//! group are present (held in memory, or to be read back from staged files), the parity
//! symbols, and where the rebuilt blocks go. Handing it over whole lets the daemon run the
//! read-back, the decode and the writes on its write pool, after the writes accepted before
//! it, so the network thread never waits for them (issue 11); [`restore_inline`] does it on
//! the caller's thread, for storages without a pool. No I/O of its own.

use std::io;

use super::manifest::Manifest;
use super::repair::Code;
use super::storage::{show, Storage, XferKey};

/// A part of a payload block inside one entry: `len` bytes at `offset` of entry `idx`'s
/// payload (for a sparse file, an offset in its data extents), at `at` in the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Manifest entry index.
    pub idx: u32,
    /// Offset in the entry's payload.
    pub offset: u64,
    /// Bytes.
    pub len: usize,
    /// Offset in the block.
    pub at: usize,
}

/// One group's decode: any `k_g` of its present blocks and parity symbols rebuild the rest.
#[derive(Debug)]
pub struct Restore {
    /// The transfer's coding parameters.
    pub code: Code,
    /// Source blocks in the group.
    pub k_g: usize,
    /// Present source blocks held in memory: (position in the group, block bytes).
    pub held: Vec<(usize, Vec<u8>)>,
    /// Present source blocks to read back from staged files: (position, its pieces).
    pub staged: Vec<(usize, Vec<Piece>)>,
    /// Parity symbols: (index, bytes).
    pub parity: Vec<(usize, Vec<u8>)>,
    /// Missing source blocks and the pieces of each the transfer needs written (a block no
    /// entry needs has none: it is rebuilt only because the code rebuilds whole groups).
    pub writes: Vec<(usize, Vec<Piece>)>,
}

impl Restore {
    /// Bytes of block data the job holds (for a queue's budget).
    pub fn held_bytes(&self) -> usize {
        (self.held.len() + self.parity.len() + self.staged.len() + self.writes.len())
            * self.code.block
    }

    /// Every entry the job reads or writes.
    pub fn entries(&self) -> impl Iterator<Item = u32> + '_ {
        self.staged
            .iter()
            .chain(&self.writes)
            .flat_map(|(_, ps)| ps.iter().map(|p| p.idx))
    }

    /// Reads the staged blocks back with `read`, decodes, and returns the bytes of every
    /// piece to write, in order.
    pub fn decode(
        self,
        mut read: impl FnMut(&Piece, &mut [u8]) -> io::Result<()>,
    ) -> io::Result<Vec<(Piece, Vec<u8>)>> {
        let block = self.code.block;
        let mut present = self.held;
        for (pos, pieces) in self.staged {
            let mut b = vec![0u8; block];
            for p in &pieces {
                let dst = b
                    .get_mut(p.at..p.at + p.len)
                    .ok_or_else(|| io::Error::other("piece beyond its block"))?;
                read(p, dst)?;
            }
            present.push((pos, b));
        }
        let pres: Vec<(usize, &[u8])> = present.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        let par: Vec<(usize, &[u8])> = self
            .parity
            .iter()
            .map(|(i, b)| (*i, b.as_slice()))
            .collect();
        let restored = self
            .code
            .decode(self.k_g, &pres, &par)
            .map_err(|e| io::Error::other(format!("parity decode failed: {}", e.0)))?;
        let mut out = Vec::new();
        for (pos, pieces) in self.writes {
            let b = restored
                .get(&pos)
                .ok_or_else(|| io::Error::other("parity decode left a block out"))?;
            for p in pieces {
                let src = b
                    .get(p.at..p.at + p.len)
                    .ok_or_else(|| io::Error::other("piece beyond its block"))?;
                out.push((p, src.to_vec()));
            }
        }
        Ok(out)
    }
}

/// [`Storage::restore`] on the caller's thread: reads back with `read_staged`, decodes and
/// writes with `write`. An error names the file it concerns (`path: reason`).
pub fn restore_inline<S: Storage + ?Sized>(
    s: &mut S,
    key: XferKey,
    m: &Manifest,
    job: Restore,
) -> io::Result<()> {
    let named = |idx: u32, e: io::Error| {
        let path = m.entries.get(idx as usize).map_or(&[][..], |e| &e.path[..]);
        io::Error::new(e.kind(), format!("{}: {e}", show(path)))
    };
    let writes = job.decode(|p, buf| {
        let e = m
            .entries
            .get(p.idx as usize)
            .ok_or_else(|| io::Error::other("no such entry"))?;
        s.read_staged(key, p.idx, e, p.offset, buf)
            .map_err(|err| named(p.idx, err))
    })?;
    // Every piece is tried, as blocks received whole are: one file's failure fails only it
    // (the transfer fails at the commit either way), the first error is returned.
    let mut first = None;
    for (p, data) in writes {
        let r = match m.entries.get(p.idx as usize) {
            Some(e) => s
                .write(key, p.idx, e, p.offset, &data)
                .map_err(|err| named(p.idx, err)),
            None => Err(io::Error::other("no such entry")),
        };
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}
