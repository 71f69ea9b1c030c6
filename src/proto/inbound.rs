//! The receiver's side of the engine around the limits (see `limits.rs`): decoding an
//! inbound transfer's manifest within its caps, refusing a transfer with a reason, giving a
//! slot back (into a record) as soon as a transfer is done or abandoned, answering late
//! repeats from records, and where replies go (a member's known address, or the source under
//! the anti-amplification budget). Engine methods, kept apart from the dispatch in `mod.rs`.

use std::net::SocketAddr;
use std::time::Instant;

use super::limits::{
    self, MAX_FILTER_BYTES, MAX_FILTER_RULES, MAX_INBOUND_MEMORY, MAX_MANIFEST_MEMORY,
};
use super::manifest::{self, Manifest};
use super::records::Answer;
use super::recv::CommitState;
use super::storage::{Storage, XferKey};
use super::wire::{self, Msg};
use super::{Dest, Engine, Event};

impl<S: Storage> Engine<S> {
    /// Queues a reply to a datagram (REPORT, NAK, RESULT) for `to`. Anti-amplification: an
    /// address that is not a registered member's gets no more reply bytes than it sent.
    pub(super) fn queue_reply(&mut self, to: SocketAddr, m: &Msg<'_>) {
        self.queue_reply_echo(to, m, None);
    }

    /// [`Self::queue_reply`] of a NAK or FEEDBACK echoing a sequence number that arrived at
    /// `echo_at` (its hold is stamped when it leaves).
    pub(super) fn queue_reply_echo(
        &mut self,
        to: SocketAddr,
        m: &Msg<'_>,
        echo_at: Option<Instant>,
    ) {
        let buf = self.encode_ctl(m);
        let wire = buf.len() + wire::IP_UDP_OVERHEAD;
        if !self.members.is_direct_addr(&to) && !self.replies.spend(to, wire, self.clock) {
            self.stats.replies_withheld += 1;
            return;
        }
        self.ctl.push_back((Dest::Unicast(to), buf, echo_at));
    }

    /// Where replies about a transfer from `node` go: the member's known address when it is
    /// a registered member (heard directly), else the address its datagrams came from
    /// (then under the anti-amplification budget).
    pub(super) fn reply_addr(&self, node: u64, from: SocketAddr) -> SocketAddr {
        match self.members.get(node) {
            Some(m) if m.direct => m.addr,
            _ => from,
        }
    }

    /// Decodes an inbound transfer's assembled manifest within the limits: its decoded size
    /// is estimated from the encoded bytes first, so an oversized one is refused before
    /// anything is built. Returns the manifest and that estimate, or why it is refused.
    pub(super) fn decode_manifest(
        &self,
        key: XferKey,
        bytes: &[u8],
        block: u64,
    ) -> Result<(Manifest, u64), String> {
        let malformed = |e| match e {
            wire::WireError::TooLarge(what) if what.starts_with("filter") => format!(
                "filter rules over this member's limits ({what}: at most {MAX_FILTER_RULES} \
                 rules, {MAX_FILTER_BYTES} bytes of patterns)"
            ),
            _ => "malformed manifest".to_string(),
        };
        let memory = manifest::decoded_memory(bytes).map_err(malformed)?;
        if memory > MAX_MANIFEST_MEMORY {
            return Err(format!(
                "manifest too large for this member ({memory} > {MAX_MANIFEST_MEMORY} bytes)"
            ));
        }
        let others = limits::inbound_memory(&self.inbound, Some(key));
        if others + memory > MAX_INBOUND_MEMORY {
            return Err(format!(
                "member busy: its inbound transfers would hold {} bytes (limit \
                 {MAX_INBOUND_MEMORY}); retry later",
                others + memory
            ));
        }
        let mut m = Manifest::decode(bytes).map_err(malformed)?;
        // A release push lands in `releases/<push-id>/` (`manifest/release.rs`).
        m.into_release(key).map_err(malformed)?;
        // The payload must be addressable (block indices are 24 bits), as the sender checks
        // too; a larger one would overflow the layout and block counts.
        if m.payload_bytes().div_ceil(block) > u64::from(wire::MAX_BLOCK_INDEX) {
            return Err("payload too large for one transfer".into());
        }
        Ok((m, memory))
    }

    /// Refuses a transfer: records the refusal (so repeats are answered alike) and tells the
    /// sender why. (No event: one forged announce each would make a log flood; a refusal of
    /// a transfer that had a slot is reported by [`Self::refuse_inbound`].)
    pub(super) fn refuse(
        &mut self,
        now: Instant,
        key: XferKey,
        from: SocketAddr,
        pos: usize,
        why: String,
    ) {
        self.stats.refused_transfers += 1;
        let answer = Answer {
            status: wire::RESULT_FAILED,
            files: 0,
            bytes: 0,
            deleted: 0,
            message: why.clone().into_bytes(),
        };
        self.records.insert(key, pos, from, Some(answer), true, now);
        self.send_recorded(key);
    }

    /// Refuses an inbound transfer in progress: gives its slot and memory back at once.
    pub(super) fn refuse_inbound(&mut self, now: Instant, key: XferKey, why: String) {
        if let Some(ib) = self.inbound.remove(&key) {
            self.storage.abort(key);
            self.refuse(now, key, ib.sender, ib.pos, why.clone());
            self.events
                .push_back(Event::Abandoned(key, format!("refused: {why}")));
        }
    }

    /// Drops an inbound transfer that will not finish (sender silent or gone, or evicted),
    /// keeping a record so its stragglers are recognised.
    pub(super) fn abandon(&mut self, now: Instant, key: XferKey, why: &str) {
        if let Some(ib) = self.inbound.remove(&key) {
            // Even after a commit: blocks that arrived after it (a plan completed late) may
            // have staged files, which nothing else would ever remove.
            self.storage.abort(key);
            self.records
                .insert(key, ib.pos, ib.sender, None, false, now);
            if !matches!(ib.commit, CommitState::Done(..)) {
                self.events.push_back(Event::Abandoned(key, why.into()));
            }
        }
    }

    /// Once a transfer's commit is done, it gives its slot back at once: what late repeats
    /// of its COMMIT need (the RESULT) goes into a small record.
    pub(super) fn retire_if_done(&mut self, now: Instant, key: XferKey) {
        let done = self
            .inbound
            .get(&key)
            .is_some_and(|ib| matches!(ib.commit, CommitState::Done(..)));
        if !done {
            return;
        }
        let ib = self.inbound.remove(&key).unwrap();
        self.storage.abort(key);
        if let CommitState::Done(status, out) = ib.commit {
            let answer = Answer {
                status,
                files: out.files,
                bytes: out.bytes,
                deleted: out.deleted,
                message: out.errors.join("; ").into_bytes(),
            };
            self.records
                .insert(key, ib.pos, ib.sender, Some(answer), false, now);
        }
    }

    /// Answers a request about a transfer that ended, from its record: a refusal answers
    /// whatever names us as pending; a finished transfer answers a repeated COMMIT.
    pub(super) fn answer_from_record(
        &mut self,
        key: XferKey,
        pending: impl Fn(usize) -> bool,
        commit: bool,
    ) {
        let Some(r) = self.records.get(&key) else {
            return;
        };
        if r.answer.is_some() && (r.refused || commit) && pending(r.pos) {
            self.send_recorded(key);
        }
    }

    pub(super) fn send_recorded(&mut self, key: XferKey) {
        let Some(r) = self.records.get(&key) else {
            return;
        };
        let Some(a) = r.answer.clone() else {
            return;
        };
        let dest = self.reply_addr(key.origin, r.sender);
        self.queue_reply(
            dest,
            &Msg::Result {
                xfer: key.xfer,
                status: a.status,
                files: a.files,
                bytes: a.bytes,
                deleted: a.deleted,
                message: &a.message,
            },
        );
    }

    /// Memory the inbound transfers may still take (see [`limits::MAX_INBOUND_MEMORY`]).
    pub(super) fn headroom(&self) -> u64 {
        MAX_INBOUND_MEMORY.saturating_sub(limits::inbound_memory(&self.inbound, None))
    }
}
