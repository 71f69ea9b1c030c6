//! One inbound transfer on a receiver: assemble the manifest, report what is needed, take
//! the needed parts of the payload into staged files, rebuild losses from parity, NAK the
//! groups it can no longer complete from what is still to come (during the pass) and answer
//! polls, naming per group how many symbols it needs and which source blocks it misses;
//! commit on request.
//!
//! Received payload blocks that are wholly needed go straight to storage. Blocks that are
//! needed in part or not at all, but sit in a group that holds needed data, are kept in
//! memory until the group is complete, since decoding needs every symbol of the group.
//! Groups without needed data are ignored. Once a group has lost a block, its later blocks
//! are also copied into a bounded cache, so decoding it rarely reads staged files back.
//!
//! The sender sends each stream's blocks in order, so group `g` is *over* once blocks of
//! group `g + 1` have arrived (with [`SLACK`] blocks of tolerance for reordering), or once the
//! end-of-pass poll came: from then on it can only complete from repair, and is NAKed. A
//! NAKed group is NAKed again only when no repair for it has arrived for a while (twice the
//! round-trip time plus the sender's repair backlog, from its PACE).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Instant;

use super::manifest::{bit, needs_data, Layout, Manifest};
use super::repair::Code;
use super::restore::{Piece, Restore};
use super::storage::{CommitOutcome, CommitRequest, Inspection, Storage, XferKey};
use super::wire::{Stream, Writer};

use super::limits::{MAX_EARLY, MAX_HELD};

/// Blocks past a group's end that must have arrived before the group is over.
pub(crate) const SLACK: u32 = 32;
/// Groups whose echoed need a receiver remembers per transfer.
const ECHOES_KEPT: usize = 4096;
/// Most bytes of wholly needed blocks cached for decoding, per transfer.
const CACHE_BYTES: usize = 16 << 20;

/// A stream kept wholly in memory (manifest, plan).
#[derive(Debug, Default)]
pub(crate) struct MemStream {
    len: u64,
    nblocks: u32,
    blocks: BTreeMap<u32, Vec<u8>>,
    parity: BTreeMap<u32, BTreeMap<u16, Vec<u8>>>,
    /// Bytes held in `blocks` and `parity` (at most twice the stream: parity is kept only
    /// up to what a group misses).
    held: u64,
    /// Symbols stored so far (progress).
    stored: u64,
}

impl MemStream {
    fn new(code: &Code, len: u64) -> Self {
        Self {
            len,
            nblocks: code.blocks(len),
            ..Default::default()
        }
    }

    fn complete(&self) -> bool {
        self.blocks.len() as u32 == self.nblocks
    }

    fn add_block(&mut self, code: &Code, idx: u32, data: &[u8]) -> bool {
        let r = code.block_range(idx, self.len);
        if idx >= self.nblocks || data.len() as u64 != r.end - r.start {
            return false;
        }
        if let std::collections::btree_map::Entry::Vacant(v) = self.blocks.entry(idx) {
            let mut b = data.to_vec();
            b.resize(code.block, 0);
            v.insert(b);
            self.held += code.block as u64;
            self.stored += 1;
            self.try_decode(code, idx / code.k);
        }
        true
    }

    fn add_parity(&mut self, code: &Code, g: u32, index: u16, data: &[u8]) -> bool {
        if g >= code.groups(self.len) || data.len() != code.block || index >= code.parity {
            return false;
        }
        let range = code.group_range(g, self.nblocks);
        let have = range
            .clone()
            .filter(|i| self.blocks.contains_key(i))
            .count();
        let par = self.parity.entry(g).or_default();
        // More parity than the group misses is never needed: it is not kept.
        if have + par.len() >= range.len() || par.contains_key(&index) {
            return true;
        }
        par.insert(index, data.to_vec());
        self.held += code.block as u64;
        self.stored += 1;
        self.try_decode(code, g);
        true
    }

    fn try_decode(&mut self, code: &Code, g: u32) {
        let range = code.group_range(g, self.nblocks);
        let have = range
            .clone()
            .filter(|i| self.blocks.contains_key(i))
            .count();
        let k_g = range.len();
        if have == k_g {
            self.drop_parity(code, g);
            return;
        }
        let Some(par) = self.parity.get(&g) else {
            return;
        };
        if have + par.len() < k_g {
            return;
        }
        let present: Vec<(usize, &[u8])> = range
            .clone()
            .filter_map(|i| {
                self.blocks
                    .get(&i)
                    .map(|b| ((i - range.start) as usize, b.as_slice()))
            })
            .collect();
        let parity: Vec<(usize, &[u8])> = par
            .iter()
            .map(|(i, b)| (*i as usize, b.as_slice()))
            .collect();
        if let Ok(restored) = code.decode(k_g, &present, &parity) {
            for (pos, b) in restored {
                if self.blocks.insert(range.start + pos as u32, b).is_none() {
                    self.held += code.block as u64;
                }
            }
        }
        self.drop_parity(code, g);
    }

    fn drop_parity(&mut self, code: &Code, g: u32) {
        if let Some(p) = self.parity.remove(&g) {
            self.held -= p.len() as u64 * code.block as u64;
        }
    }

    /// The group's NAK entry, if it is incomplete.
    fn want(&self, code: &Code, s: Stream, g: u32) -> Option<Want> {
        let range = code.group_range(g, self.nblocks);
        let have = range
            .clone()
            .filter(|i| self.blocks.contains_key(i))
            .count();
        let par = self.parity.get(&g).map_or(0, BTreeMap::len);
        let k_g = range.len();
        (have < k_g).then(|| {
            let start = range.start;
            let missing = range
                .filter(|i| !self.blocks.contains_key(i))
                .map(move |i| i - start);
            Want::new(s, g, k_g - have - par.min(k_g - have), missing)
        })
    }

    fn naks(&self, code: &Code, s: Stream, out: &mut Vec<Want>, limit: usize) {
        for g in 0..code.groups(self.len) {
            if out.len() >= limit {
                return;
            }
            if let Some(w) = self.want(code, s, g) {
                out.push(w);
            }
        }
    }

    fn assemble(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len as usize);
        for b in self.blocks.values() {
            v.extend_from_slice(b);
        }
        v.truncate(self.len as usize);
        v
    }
}

/// Bitset helpers over `Vec<u64>`.
fn bs_get(v: &[u64], i: u32) -> bool {
    v.get(i as usize / 64)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}
fn bs_set(v: &mut [u64], i: u32) {
    v[i as usize / 64] |= 1 << (i % 64);
}

/// The pieces of payload block `i` in the entries `keep` accepts, each with its span's index
/// in `layout`.
fn block_pieces<'a>(
    layout: &'a Layout,
    code: &Code,
    i: u32,
    keep: impl Fn(u32) -> bool + 'a,
) -> impl Iterator<Item = (usize, Piece)> + 'a {
    let r = code.block_range(i, layout.len);
    layout.overlapping(r.start, r.end).filter_map(move |si| {
        let (e, off, size) = layout.spans[si];
        let a = r.start.max(off);
        let z = r.end.min(off + size);
        keep(e).then_some((
            si,
            Piece {
                idx: e,
                offset: a - off,
                len: (z - a) as usize,
                at: (a - r.start) as usize,
            },
        ))
    })
}

/// Payload reception state, once the plan is known.
#[derive(Debug)]
struct Payload {
    layout: Layout,
    nblocks: u32,
    needed: Vec<u64>,
    full: Vec<u64>,
    have: Vec<u64>,
    /// Per group: blocks had, needed blocks not had yet, and blocks had without a gap from
    /// the group's start (so that the per-block checks cost O(1), not O(group size)).
    got: Vec<u32>,
    short: Vec<u32>,
    lead: Vec<u32>,
    incomplete: BTreeSet<u32>,
    /// Bytes still to be written, per span of the layout (every block is written once).
    left: Vec<u64>,
    mem: BTreeMap<u32, Vec<u8>>,
    /// Copies of wholly needed blocks of groups that lost a block (optional, bounded).
    cache: BTreeMap<u32, Vec<u8>>,
    parity: BTreeMap<u32, BTreeMap<u16, Vec<u8>>>,
    /// Symbols in `mem` and `parity`.
    held: u64,
    /// Symbols taken so far (progress).
    stored: u64,
}

impl Payload {
    /// Notes block `idx` of group `g` as had (its bit is not set yet).
    fn mark(&mut self, code: &Code, g: u32, idx: u32) {
        bs_set(&mut self.have, idx);
        let gi = g as usize;
        self.got[gi] += 1;
        if bs_get(&self.needed, idx) {
            self.short[gi] -= 1;
        }
        let range = code.group_range(g, self.nblocks);
        if idx == range.start + self.lead[gi] {
            let mut n = self.lead[gi] + 1;
            while range.start + n < range.end && bs_get(&self.have, range.start + n) {
                n += 1;
            }
            self.lead[gi] = n;
        }
    }

    /// Whether group `g` misses a block before `idx`.
    fn gap_before(&self, code: &Code, g: u32, idx: u32) -> bool {
        let start = code.group_range(g, self.nblocks).start;
        start + self.lead[g as usize] < idx
    }

    /// Whether group `g` may hold symbols in memory: it already does, or one more whole
    /// group (its blocks and parity never exceed its size) fits under `limit` bytes.
    fn may_hold(&self, code: &Code, g: u32, limit: u64) -> bool {
        let range = code.group_range(g, self.nblocks);
        if self.parity.contains_key(&g) || self.mem.range(range.clone()).next().is_some() {
            return true;
        }
        let group = range.len() as u64 * code.block as u64;
        (self.held * code.block as u64).saturating_add(group) <= limit
    }

    /// Drops the symbols group `g` holds (and its cached copies).
    fn release(&mut self, code: &Code, g: u32) {
        let range = code.group_range(g, self.nblocks);
        let cached: Vec<u32> = self.cache.range(range.clone()).map(|(k, _)| *k).collect();
        for k in cached {
            self.cache.remove(&k);
        }
        let keys: Vec<u32> = self.mem.range(range).map(|(k, _)| *k).collect();
        for k in keys {
            self.mem.remove(&k);
            self.held -= 1;
        }
        if let Some(p) = self.parity.remove(&g) {
            self.held -= p.len() as u64;
        }
    }
}

/// Where the commit stands.
#[derive(Debug, Clone)]
pub(crate) enum CommitState {
    None,
    /// Asked to commit; BUSY goes out first, then the (possibly slow) commit runs at the
    /// next timer, so the sender knows the member is working on it.
    Queued {
        no_delete: bool,
        skip: Vec<u32>,
    },
    Pending,
    /// An atomic push is asked to get ready and the storage answered "pending" (a
    /// `--before-commit` hook runs); `Engine::handle_committed` ends it.
    Preparing,
    /// An atomic push is wholly staged here and waits for the go (`send/atomic.rs`).
    Ready,
    Done(u8, CommitOutcome),
}

/// One transfer this receiver takes part in.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) key: XferKey,
    pub(crate) sender: SocketAddr,
    /// Where its first announce came from (per-address and per-host slot caps).
    pub(crate) announced_from: SocketAddr,
    /// When it last took a symbol it did not have, or changed phase (idle transfers may be
    /// evicted when slots run out).
    pub(crate) last_progress: Instant,
    /// Estimated bytes of the decoded manifest (see `manifest::decoded_memory`).
    pub(crate) manifest_memory: u64,
    /// Bytes this transfer may still add of held and early payload (set by the engine from
    /// what every inbound transfer holds).
    pub(crate) headroom: u64,
    pub(crate) pos: usize,
    pub(crate) code: Code,
    mstream: MemStream,
    pstream: Option<MemStream>,
    payload: Option<Payload>,
    pub(crate) manifest: Option<Manifest>,
    pub(crate) inspection: Option<Inspection>,
    pub(crate) inspecting: bool,
    needs: Vec<u8>,
    needs_any: bool,
    early: Vec<(u32, Vec<u8>)>,
    pub(crate) commit: CommitState,
    pub(crate) error: Option<String>,
    pub(crate) last_heard: Instant,
    /// Per stream: one past the highest source block received (blocks come in order).
    frontier: [u32; 3],
    /// The end-of-pass poll came: every incomplete group is over.
    pass_over: bool,
    /// A push to many targets, whose sender polls only once the pass's tail is repaired:
    /// the last groups are over once the stream's last block arrived (`naks.rs`).
    pub(crate) tail_naks: bool,
    /// NAKed groups: when they were NAKed, or repair for them last arrived.
    naked: BTreeMap<(Stream, u32), Instant>,
    last_nak: Option<Instant>,
    /// Groups whose NAK waits out its random backoff: when it is due (see [`NakSpread`]).
    backoff: BTreeMap<(Stream, u32), Instant>,
    /// The largest need the sender echoed per group (another member asked for that much),
    /// and when the echo came.
    echoed: BTreeMap<(Stream, u32), (u32, Instant)>,
    /// State of the generator that draws the backoffs (seeded per member and transfer).
    rng: u64,
    /// When unsolicited NAKs should be looked at again.
    nak_timer: Option<Instant>,
    /// What the last full look at the groups saw (see [`Inbound::scan_key`]): until it
    /// changes or `nak_timer` passes, no group can have become due.
    scanned: Option<naks::ScanKey>,
    pub(crate) report: Option<Vec<u8>>,
    /// MD5 of the manifest bytes: identical on every member that got the same push.
    pub(crate) digest: [u8; 16],
    /// The cohort leader this member sends its answers through (`aggregate.rs`): node id
    /// and address; `None`: straight to the sender.
    pub(crate) leader: Option<(u64, SocketAddr)>,
    /// The last request answered through the leader (kind, round), and when.
    pub(crate) relayed: Option<((u8, u32), Instant)>,
    /// Requests answered through the leader that came again (the leader is gone, slow, or
    /// lost it): from [`super::aggregate::LEADER_MISSES`] on, answers go straight to the
    /// sender.
    pub(crate) leader_misses: u8,
}

impl Inbound {
    pub(crate) fn new(
        key: XferKey,
        sender: SocketAddr,
        pos: usize,
        code: Code,
        manifest_len: u64,
        now: Instant,
    ) -> Self {
        Self {
            key,
            sender,
            announced_from: sender,
            last_progress: now,
            manifest_memory: 0,
            headroom: 0,
            pos,
            code,
            mstream: MemStream::new(&code, manifest_len),
            pstream: None,
            payload: None,
            manifest: None,
            inspection: None,
            inspecting: false,
            needs: Vec::new(),
            needs_any: false,
            early: Vec::new(),
            commit: CommitState::None,
            error: None,
            last_heard: now,
            frontier: [0; 3],
            pass_over: false,
            tail_naks: false,
            naked: BTreeMap::new(),
            last_nak: None,
            backoff: BTreeMap::new(),
            echoed: BTreeMap::new(),
            rng: (u64::from(key.xfer) << 32) ^ key.origin ^ (pos as u64).wrapping_mul(0x9e37_79b9),
            nak_timer: None,
            scanned: None,
            report: None,
            digest: [0; 16],
            leader: None,
            relayed: None,
            leader_misses: 0,
        }
    }

    /// Bytes this transfer holds: while its manifest arrives, the reservation made on the
    /// announce (twice the manifest stream: blocks and at most as much parity); then the
    /// decoded manifest's estimate, the plan stream, held payload symbols and early payload.
    pub(crate) fn memory(&self) -> u64 {
        let b = self.code.block as u64;
        if self.manifest.is_none() {
            return Self::reservation(&self.code, self.mstream.len);
        }
        self.manifest_memory
            + self.pstream.as_ref().map_or(0, |p| p.held)
            + self.payload.as_ref().map_or(0, |p| p.held * b)
            + self.early.len() as u64 * b
    }

    /// What a transfer with a manifest of `len` bytes reserves on its announce.
    pub(crate) fn reservation(code: &Code, len: u64) -> u64 {
        2 * u64::from(code.blocks(len)) * code.block as u64
    }

    /// A count that grows whenever the transfer takes something new.
    pub(crate) fn progress(&self) -> u64 {
        self.mstream.stored
            + self.pstream.as_ref().map_or(0, |p| p.stored)
            + self.payload.as_ref().map_or(0, |p| p.stored)
            + self.early.len() as u64
            + u64::from(self.manifest.is_some())
            + u64::from(self.inspection.is_some())
    }

    /// Whether the manifest is assembled (decoding it is the engine's next step).
    pub(crate) fn manifest_ready(&self) -> bool {
        self.mstream.complete()
    }

    pub(crate) fn take_manifest_bytes(&mut self) -> Vec<u8> {
        let b = self.mstream.assemble();
        self.digest = super::storage::md5_of(&b);
        self.mstream.blocks.clear();
        self.mstream.parity.clear();
        self.mstream.held = 0;
        b
    }

    /// Installs the inspection: computes what this receiver needs.
    pub(crate) fn set_inspection(&mut self, insp: Inspection, list: bool) {
        let m = self.manifest.as_ref().expect("manifest before inspection");
        let n = m.entries.len();
        let mut flags = insp.flags;
        flags.resize(n, 0);
        let opts = &m.options;
        self.needs = vec![0u8; n.div_ceil(8)];
        if !(opts.dry_run || opts.delete_only) {
            for (i, e) in m.entries.iter().enumerate() {
                if needs_data(e.kind, flags[i], opts.checksum) && e.payload_len() > 0 {
                    self.needs[i / 8] |= 1 << (i % 8);
                    self.needs_any = true;
                }
            }
        }
        if opts.delete_only {
            flags.iter_mut().for_each(|f| *f = 0);
        }
        self.report = Some(super::send::encode_report(&flags, &insp.deletions, list));
        self.inspection = Some(Inspection {
            flags,
            deletions: insp.deletions,
            refused: None,
        });
        self.inspecting = false;
        if self.needs_any {
            let plan_len = n.div_ceil(8) as u64;
            self.pstream = Some(MemStream::new(&self.code, plan_len));
        }
    }

    /// Has everything this receiver needs.
    pub(crate) fn complete(&self) -> bool {
        self.inspection.is_some()
            && (!self.needs_any
                || self
                    .payload
                    .as_ref()
                    .is_some_and(|p| p.incomplete.is_empty()))
    }

    pub(crate) fn on_block<S: Storage>(
        &mut self,
        now: Instant,
        storage: &mut S,
        s: Stream,
        idx: u32,
        data: &[u8],
    ) -> bool {
        self.repair_seen(now, s, idx / self.code.k.max(1));
        let f = &mut self.frontier[s as usize];
        *f = (*f).max(idx.saturating_add(1));
        match s {
            Stream::Manifest => self.mstream.add_block(&self.code, idx, data),
            Stream::Plan => {
                let Some(p) = self.pstream.as_mut() else {
                    return true;
                };
                let ok = p.add_block(&self.code, idx, data);
                self.maybe_plan(storage);
                ok
            }
            Stream::Payload => {
                if self.payload.is_none() {
                    let b = self.code.block as u64;
                    let next = (self.early.len() as u64 + 1) * b;
                    if self.needs_any && next <= MAX_EARLY && b <= self.headroom {
                        self.early.push((idx, data.to_vec()));
                        self.headroom -= b;
                    }
                    return true;
                }
                self.payload_block(storage, idx, data)
            }
        }
    }

    pub(crate) fn on_parity<S: Storage>(
        &mut self,
        now: Instant,
        storage: &mut S,
        s: Stream,
        g: u32,
        index: u16,
        data: &[u8],
    ) -> bool {
        self.repair_seen(now, s, g);
        match s {
            Stream::Manifest => self.mstream.add_parity(&self.code, g, index, data),
            Stream::Plan => {
                let Some(p) = self.pstream.as_mut() else {
                    return true;
                };
                let ok = p.add_parity(&self.code, g, index, data);
                self.maybe_plan(storage);
                ok
            }
            Stream::Payload => {
                let code = self.code;
                let limit = self.hold_limit();
                let Some(p) = self.payload.as_mut() else {
                    return true;
                };
                if data.len() != code.block
                    || index >= code.parity
                    || g >= p.nblocks.div_ceil(code.k)
                {
                    return false;
                }
                if !p.incomplete.contains(&g) || !p.may_hold(&code, g, limit) {
                    return true;
                }
                let range = code.group_range(g, p.nblocks);
                let have = p.got[g as usize] as usize;
                let par = p.parity.entry(g).or_default();
                // More parity than the group misses is never needed: it is not kept.
                if have + par.len() >= range.len() || par.contains_key(&index) {
                    return true;
                }
                par.insert(index, data.to_vec());
                p.held += 1;
                p.stored += 1;
                self.try_decode(storage, g);
                true
            }
        }
    }

    fn maybe_plan<S: Storage>(&mut self, storage: &mut S) {
        if self.payload.is_some() || !self.pstream.as_ref().is_some_and(MemStream::complete) {
            return;
        }
        let plan = self.pstream.as_ref().unwrap().assemble();
        let m = self.manifest.as_ref().unwrap();
        let layout = Layout::new(m, &plan);
        let code = self.code;
        let nblocks = code.blocks(layout.len);
        let words = (nblocks as usize).div_ceil(64);
        let mut needed = vec![0u64; words];
        let mut full = vec![!0u64; words];
        let mut incomplete = BTreeSet::new();
        // A block is needed if any byte of it belongs to a needed entry, and "full" if all
        // of its bytes do.
        for &(idx, off, size) in &layout.spans {
            let first = (off / code.block as u64) as u32;
            let last = ((off + size - 1) / code.block as u64) as u32;
            let want = bit(&self.needs, idx as usize);
            for b in first..=last {
                if want {
                    bs_set(&mut needed, b);
                    incomplete.insert(b / code.k);
                } else {
                    full[b as usize / 64] &= !(1 << (b % 64));
                }
            }
        }
        for (i, w) in full.iter_mut().enumerate() {
            *w &= needed[i];
        }
        let left = layout.spans.iter().map(|&(_, _, size)| size).collect();
        let groups = nblocks.div_ceil(code.k.max(1)) as usize;
        let mut short = vec![0u32; groups];
        for (w, &bits) in needed.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let b = w as u32 * 64 + bits.trailing_zeros();
                short[(b / code.k.max(1)) as usize] += 1;
                bits &= bits - 1;
            }
        }
        self.payload = Some(Payload {
            got: vec![0; groups],
            short,
            lead: vec![0; groups],
            left,
            layout,
            nblocks,
            needed,
            full,
            have: vec![0u64; words],
            incomplete,
            mem: BTreeMap::new(),
            cache: BTreeMap::new(),
            parity: BTreeMap::new(),
            held: 0,
            stored: 0,
        });
        self.pstream = None;
        for (idx, data) in std::mem::take(&mut self.early) {
            self.payload_block(storage, idx, &data);
        }
    }

    fn write_parts<S: Storage>(&mut self, storage: &mut S, idx: u32, data: &[u8]) {
        let code = self.code;
        let key = self.key;
        let (Some(p), Some(m)) = (self.payload.as_mut(), self.manifest.as_ref()) else {
            return;
        };
        let needs = &self.needs;
        for (si, pc) in block_pieces(&p.layout, &code, idx, |e| bit(needs, e as usize)) {
            let e = pc.idx;
            let part = &data[pc.at..pc.at + pc.len];
            let entry = &m.entries[e as usize];
            let r = storage
                .write(key, e, entry, pc.offset, part)
                .and_then(|()| {
                    // Blocks are written once each, so the countdown reaches 0 exactly when the
                    // file's last byte is in.
                    p.left[si] = p.left[si].saturating_sub(part.len() as u64);
                    if p.left[si] == 0 {
                        storage.complete(key, e, m)
                    } else {
                        Ok(())
                    }
                });
            match r {
                Ok(()) => {}
                Err(err) => {
                    if self.error.is_none() {
                        self.error = Some(format!("{}: {err}", super::storage::show(&entry.path)));
                    }
                }
            }
        }
    }

    fn payload_block<S: Storage>(&mut self, storage: &mut S, idx: u32, data: &[u8]) -> bool {
        let code = self.code;
        let limit = self.hold_limit();
        let p = self.payload.as_mut().unwrap();
        let r = code.block_range(idx, p.layout.len);
        if idx >= p.nblocks || data.len() as u64 != r.end - r.start {
            return false;
        }
        let g = idx / code.k;
        if bs_get(&p.have, idx) || !p.incomplete.contains(&g) {
            return true;
        }
        let full = bs_get(&p.full, idx);
        if !full && !p.may_hold(&code, g, limit) {
            // No room to hold it: as if lost; the group is repaired once others completed.
            return true;
        }
        p.mark(&code, g, idx);
        p.stored += 1;
        let needed = bs_get(&p.needed, idx);
        if !full {
            let mut b = data.to_vec();
            b.resize(code.block, 0);
            p.mem.insert(idx, b);
            p.held += 1;
        } else if ((p.held + p.cache.len() as u64 + 1) * code.block as u64) <= limit / 2
            && p.cache.len() * code.block < CACHE_BYTES
            && p.gap_before(&code, g, idx)
        {
            // The group lost a block already: keep a copy for decoding it (within half of
            // what the transfer may hold, so blocks that must be held keep their room).
            let mut b = data.to_vec();
            b.resize(code.block, 0);
            p.cache.insert(idx, b);
        }
        if needed {
            self.write_parts(storage, idx, data);
        }
        self.try_decode(storage, g);
        true
    }

    fn try_decode<S: Storage>(&mut self, storage: &mut S, g: u32) {
        let code = self.code;
        let key = self.key;
        let p = self.payload.as_mut().unwrap();
        let range = code.group_range(g, p.nblocks);
        let k_g = range.len();
        if p.short[g as usize] == 0 {
            p.incomplete.remove(&g);
            p.release(&code, g);
            self.naked.remove(&(Stream::Payload, g));
            return;
        }
        let have = p.got[g as usize] as usize;
        let npar = p.parity.get(&g).map_or(0, BTreeMap::len);
        if have + npar < k_g {
            return;
        }
        // The group's present symbols: those held in memory go with the job, the others are
        // read back from the staged files by the storage (off this thread, with a pool).
        let mut held = Vec::new();
        let mut staged = Vec::new();
        let mut writes = Vec::new();
        let mut counted = Vec::new();
        for i in range.clone() {
            let pos = (i - range.start) as usize;
            if bs_get(&p.have, i) {
                // Taken, not copied: the group releases what it holds right after.
                let mem = p.mem.remove(&i);
                p.held -= u64::from(mem.is_some());
                match mem.or_else(|| p.cache.remove(&i)) {
                    Some(b) => held.push((pos, b)),
                    None => {
                        staged.push((pos, block_pieces(&p.layout, &code, i, |_| true).collect()))
                    }
                }
            } else {
                let pieces = if bs_get(&p.needed, i) {
                    block_pieces(&p.layout, &code, i, |e| bit(&self.needs, e as usize)).collect()
                } else {
                    Vec::new()
                };
                counted.extend(pieces.iter().map(|&(si, p)| (si, p.len as u64)));
                writes.push((pos, pieces));
            }
        }
        let strip = |v: Vec<(usize, Vec<(usize, Piece)>)>| -> Vec<(usize, Vec<Piece>)> {
            v.into_iter()
                .map(|(pos, ps)| (pos, ps.into_iter().map(|(_, p)| p).collect()))
                .collect()
        };
        let parity = p.parity.remove(&g).unwrap_or_default();
        p.held -= parity.len() as u64;
        let job = Restore {
            code,
            k_g,
            held,
            staged: strip(staged),
            parity: parity.into_iter().map(|(i, b)| (i as usize, b)).collect(),
            writes: strip(writes),
        };
        let m = self.manifest.as_ref().unwrap();
        let restored = storage.restore(key, m, job);
        if let Err(e) = &restored {
            // The transfer fails on this member (at its commit); the group is finished all
            // the same, as a block whose write failed is, so it is not asked for again.
            self.error.get_or_insert_with(|| e.to_string());
        }
        let p = self.payload.as_mut().unwrap();
        for i in range.clone() {
            if !bs_get(&p.have, i) {
                p.mark(&code, g, i);
            }
        }
        // The restored pieces are written (or accepted): count them down as `write_parts`
        // does, finishing each file whose last byte is in (not after a failure).
        for (si, n) in counted.into_iter().filter(|_| restored.is_ok()) {
            p.left[si] = p.left[si].saturating_sub(n);
            if p.left[si] == 0 {
                let e = p.layout.spans[si].0;
                if let Err(err) = storage.complete(key, e, m) {
                    let path = super::storage::show(&m.entries[e as usize].path);
                    self.error.get_or_insert_with(|| format!("{path}: {err}"));
                }
            }
        }
        let p = self.payload.as_mut().unwrap();
        p.incomplete.remove(&g);
        p.release(&code, g);
        self.naked.remove(&(Stream::Payload, g));
    }

    /// Most bytes of payload this transfer may hold in memory now.
    fn hold_limit(&self) -> u64 {
        let held = self.payload.as_ref().map_or(0, |p| p.held) * self.code.block as u64;
        MAX_HELD.min(held.saturating_add(self.headroom))
    }

    fn commit_started(&self) -> bool {
        !matches!(self.commit, CommitState::None)
    }

    /// Runs the commit through storage.
    pub(crate) fn commit<S: Storage>(&mut self, storage: &mut S, no_delete: bool, skip: &[u32]) {
        let (Some(m), Some(insp)) = (self.manifest.as_ref(), self.inspection.as_ref()) else {
            self.commit = CommitState::Done(
                super::wire::RESULT_FAILED,
                failed("commit before the manifest"),
            );
            return;
        };
        if let Some(e) = &self.error {
            storage.abort(self.key);
            self.commit = CommitState::Done(super::wire::RESULT_FAILED, failed(e));
            return;
        }
        if !self.complete() {
            storage.abort(self.key);
            self.commit =
                CommitState::Done(super::wire::RESULT_FAILED, failed("incomplete at commit"));
            return;
        }
        if m.options.dry_run {
            self.commit = CommitState::Done(super::wire::RESULT_OK, CommitOutcome::default());
            return;
        }
        let req = CommitRequest {
            manifest: m,
            flags: &insp.flags,
            deletions: if no_delete { &[] } else { &insp.deletions },
            skip,
        };
        self.commit = match storage.commit(self.key, &req) {
            Some(out) => Self::finished(out),
            None => CommitState::Pending,
        };
        self.payload = None;
    }

    pub(crate) fn finished(out: CommitOutcome) -> CommitState {
        let status = if out.errors.is_empty() {
            super::wire::RESULT_OK
        } else {
            super::wire::RESULT_FAILED
        };
        CommitState::Done(status, out)
    }
}

fn failed(msg: &str) -> CommitOutcome {
    CommitOutcome {
        errors: vec![msg.to_string()],
        ..Default::default()
    }
}

mod naks;
pub(crate) use naks::{nak_parts, NakSpread, Want};

#[cfg(test)]
mod tests;
