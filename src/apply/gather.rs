//! Receiving data: small files gathered in memory until complete (one write each), bigger
//! ones written straight to their staged file, with early writeback for durable daemons.
//! Offsets from the engine are offsets in an entry's payload; for a sparse file they are
//! mapped onto its data extents, and only those are written: the holes stay holes.

use std::io;
use std::os::unix::fs::FileExt;

use super::checked_split;
use super::stage::WRITEBACK_EVERY;
use super::sys::start_writeback;
use super::writer::write_pieces;
use super::FsStorage;
use crate::proto::manifest::Entry;
use crate::proto::storage::XferKey;

/// Files up to this size are gathered in memory until complete...
pub(super) const GATHER_FILE: u64 = 64 * 1024;
/// ...as long as all gathered files together stay under this.
pub(super) const GATHER_BUDGET: usize = 8 << 20;

impl FsStorage {
    /// Puts received bytes where they wait for the commit: the gathered copy of a small
    /// file, or its temp file.
    pub(super) fn stage(
        &mut self,
        key: XferKey,
        idx: u32,
        entry: &Entry,
        offset: u64,
        data: &[u8],
    ) -> io::Result<()> {
        let k = (key, idx);
        let pieces = entry.file_ranges(offset, data.len() as u64);
        if let Some(buf) = self.pending.get_mut(&k) {
            copy_pieces(buf, &pieces, data);
            return Ok(());
        }
        if entry.size <= GATHER_FILE
            && !self.staged.contains_key(&k)
            && self.pending_bytes + entry.size as usize <= GATHER_BUDGET
        {
            // The parent is resolved (and made) now, so a refusal shows on the first write
            // as for a file written straight to disk.
            let (dir, _) = checked_split(&entry.path, entry.kind).inspect_err(|_| {
                self.refused += 1;
            })?;
            self.open_parent(dir, true)?;
            self.note_made(key);
            let mut buf = vec![0; entry.size as usize];
            copy_pieces(&mut buf, &pieces, data);
            self.pending.insert(k, buf);
            self.pending_bytes += entry.size as usize;
            return Ok(());
        }
        // With a write pool the staged file is created (or reopened) here, so a refusal or
        // a failure to create shows at once, and only the write itself is queued.
        let pooled = match self.writer.as_ref().map(|w| w.has_target(k)) {
            Some(true) => true,
            Some(false) if self.writer.as_mut().is_some_and(|w| w.room_for_target()) => {
                let f = self.staged_file(key, idx, entry, true)?.try_clone()?;
                let w = self.writer.as_mut().expect("checked");
                w.add_target(k, f, &entry.path);
                true
            }
            _ => false,
        };
        let mut writeback = false;
        if self.opts.durable {
            if let Some(s) = self.staged.get_mut(&k) {
                s.unsynced += data.len() as u64;
                if s.unsynced >= WRITEBACK_EVERY {
                    s.unsynced = 0;
                    writeback = true;
                }
            }
        }
        if let Some(w) = self.writer.as_mut().filter(|_| pooled) {
            return w.submit(k, pieces, data, writeback);
        }
        let f = self.staged_file(key, idx, entry, true)?;
        write_pieces(f, &pieces, data)?;
        if writeback {
            // Asynchronous: starts writing dirty pages, waits for nothing.
            start_writeback(f);
        }
        Ok(())
    }

    /// Writes a gathered file out to its temp file (one write), leaving it open and staged.
    pub(super) fn flush_pending(&mut self, key: XferKey, idx: u32, e: &Entry) -> io::Result<()> {
        let k = (key, idx);
        let Some(buf) = self.pending.remove(&k) else {
            return Ok(());
        };
        self.pending_bytes -= buf.len();
        let file = self.staged_file(key, idx, e, true)?;
        match e.extents() {
            None => file.write_all_at(&buf, 0),
            Some(x) => {
                // Only the data: the holes between stay unallocated.
                for &(at, len) in x.spans() {
                    file.write_all_at(&buf[at as usize..(at + len) as usize], at)?;
                }
                file.set_len(e.size)
            }
        }
    }
}

/// Copies `data` into `buf` at the file ranges `pieces` (which add up to its length and lie
/// within `buf`: the entry's size bounds both).
fn copy_pieces(buf: &mut [u8], pieces: &[(u64, u64)], data: &[u8]) {
    let mut from = 0;
    for &(at, len) in pieces {
        let (at, len) = (at as usize, len as usize);
        buf[at..at + len].copy_from_slice(&data[from..from + len]);
        from += len;
    }
}
