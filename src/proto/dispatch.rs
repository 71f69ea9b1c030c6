//! What the engine does with each message it accepts: the heartbeat and membership, a
//! sender's announce, data and polls, and the answers its own pushes get.

use super::*;

impl<S: Storage> Engine<S> {
    pub(super) fn dispatch(
        &mut self,
        now: Instant,
        from: SocketAddr,
        node: u64,
        msg: Msg<'_>,
    ) -> bool {
        match msg {
            Msg::Heartbeat(hb) => {
                self.versions.forget(node);
                let mut ch = Vec::new();
                let new = self.members.heard(
                    now,
                    self.cfg.node_id,
                    node,
                    from,
                    &hb,
                    self.member_expiry(),
                    &mut ch,
                );
                self.apply_changes(ch);
                let Some(new) = new else {
                    return false;
                };
                let me = self.cfg.node_id;
                let named = match hb.known().find(|k| k.node == me) {
                    Some(k) if k.flags & paths::KNOWN_GROUP != 0 => paths::Named::WithBit,
                    Some(_) => paths::Named::WithoutBit,
                    None => paths::Named::Not,
                };
                // Turns its rotating list needs to name every member (we count as many as it
                // does, roughly): not being named in fewer is no evidence.
                let direct = self.members.direct_count() as u32;
                let turns = (direct + 1).div_ceil(u32::from(hb.known_count).max(1));
                self.paths.heartbeat(now, node, self.rx_group, named, turns);
                let interval = Duration::from_millis(u64::from(hb.interval_ms));
                self.paths.count_beat(now, node, self.rx_seq, interval);
                if hb.flags & HB_JOIN != 0 && new {
                    self.answer_soon();
                }
                true
            }
            Msg::Leave => {
                let mut ch = Vec::new();
                self.members.leave(node, &mut ch);
                self.apply_changes(ch);
                true
            }
            Msg::Announce(a) => self.on_announce(now, from, node, &a),
            Msg::Block {
                xfer,
                stream,
                idx,
                data,
            } => {
                let key = XferKey { origin: node, xfer };
                let headroom = self.headroom();
                let ib = match heard_inbound(&mut self.inbound, &self.records, key, now) {
                    Ok(ib) => ib,
                    Err(known) => return known,
                };
                ib.headroom = headroom;
                let before = ib.progress();
                let ok = ib.on_block(now, &mut self.storage, stream, idx, data);
                if ib.progress() != before {
                    ib.last_progress = now;
                }
                self.after_inbound(now, key);
                ok
            }
            Msg::Parity {
                xfer,
                stream,
                group,
                index,
                data,
            } => {
                let key = XferKey { origin: node, xfer };
                let headroom = self.headroom();
                let ib = match heard_inbound(&mut self.inbound, &self.records, key, now) {
                    Ok(ib) => ib,
                    Err(known) => return known,
                };
                ib.headroom = headroom;
                let before = ib.progress();
                let ok = ib.on_parity(now, &mut self.storage, stream, group, index, data);
                if ib.progress() != before {
                    ib.last_progress = now;
                }
                self.after_inbound(now, key);
                ok
            }
            Msg::Poll {
                xfer,
                round,
                pending,
            } => {
                let key = XferKey { origin: node, xfer };
                let ib = match heard_inbound(&mut self.inbound, &self.records, key, now) {
                    Ok(ib) => ib,
                    Err(known) => {
                        self.answer_from_record(key, |p| manifest::bit(pending, p), false);
                        return known;
                    }
                };
                if manifest::bit(pending, ib.pos) {
                    self.answer_poll(now, key, round);
                }
                true
            }
            Msg::Commit {
                xfer,
                flags,
                pending,
                vanished_raw,
            } => {
                let key = XferKey { origin: node, xfer };
                if flags & wire::COMMIT_PREPARE == 0 && self.go_for_doubt(key) {
                    return true;
                }
                let ib = match heard_inbound(&mut self.inbound, &self.records, key, now) {
                    Ok(ib) => ib,
                    Err(known) => {
                        self.answer_from_record(key, |p| manifest::bit(pending, p), true);
                        return known;
                    }
                };
                if !manifest::bit(pending, ib.pos) {
                    return true;
                }
                let skip: Vec<u32> = vanished_raw
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
                    .collect();
                if flags & wire::COMMIT_PREPARE != 0 {
                    let no_delete = flags & wire::COMMIT_NO_DELETE != 0;
                    ib.prepare(&mut self.storage, no_delete, &skip);
                } else if matches!(ib.commit, CommitState::None | CommitState::Ready) {
                    if matches!(ib.commit, CommitState::Ready) {
                        // The go of an atomic push: members that restart in doubt may ask.
                        self.outcomes.note(key, true);
                    }
                    ib.commit = CommitState::Queued {
                        no_delete: flags & wire::COMMIT_NO_DELETE != 0,
                        skip,
                    };
                }
                self.send_result(key, true, flags & wire::COMMIT_PREPARE != 0);
                true
            }
            Msg::Abort { xfer, reason } => {
                let key = XferKey { origin: node, xfer };
                let committed = self
                    .inbound
                    .get(&key)
                    .is_some_and(|ib| matches!(ib.commit, CommitState::Done(..)));
                if committed {
                    return true;
                }
                if let Some(ib) = self.inbound.remove(&key) {
                    self.records
                        .insert(key, ib.pos, ib.sender, None, false, now);
                    self.storage.abort(key);
                    self.events.push_back(Event::Abandoned(
                        key,
                        String::from_utf8_lossy(reason).into_owned(),
                    ));
                }
                true
            }
            Msg::Report {
                xfer,
                part,
                parts,
                data,
            } => match self.outbound.get_mut(&xfer) {
                Some(ob) if ob.is_target(node) => {
                    if !ob.on_report(now, node, part, parts, data) {
                        self.stats.dropped_context += 1;
                    }
                    self.after_outbound(now, xfer);
                    true
                }
                _ => false,
            },
            Msg::Nak {
                xfer,
                round,
                flags,
                seen,
                hold_us,
                entries,
            } => {
                if flags & wire::NAK_ECHO != 0 {
                    return self.on_echo(now, node, xfer, entries);
                }
                let (holdoff, settle) = self.repair_timing();
                match self.outbound.get_mut(&xfer) {
                    Some(ob) if ob.is_target(node) => {
                        ob.on_nak(
                            now, node, round, flags, seen, entries, holdoff, settle, &self.cfg,
                        );
                        self.on_nak_echo(now, node, seen, hold_us);
                        if round == 0 {
                            self.echo_naks(now, xfer, node, entries);
                        }
                        self.after_outbound(now, xfer);
                        true
                    }
                    _ => false,
                }
            }
            Msg::Pace(p) => self.on_pace(now, node, &p),
            Msg::Aggregate {
                origin,
                xfer,
                items,
            } => self.on_aggregate(now, from, node, origin, xfer, items),
            Msg::Feedback(f) => self.on_feedback(now, node, &f),
            Msg::Relay(r) => self.on_relay(now, from, node, &r),
            Msg::Outcome {
                origin,
                xfer,
                status,
            } => self.on_outcome(from, node, XferKey { origin, xfer }, status),
            Msg::Result {
                xfer,
                status,
                files,
                bytes,
                deleted,
                message,
            } => match self.outbound.get_mut(&xfer) {
                Some(ob) if ob.is_target(node) => {
                    ob.on_result(now, node, status, files, bytes, deleted, message);
                    self.after_outbound(now, xfer);
                    true
                }
                _ => false,
            },
        }
    }

    pub(super) fn on_announce(
        &mut self,
        now: Instant,
        from: SocketAddr,
        node: u64,
        a: &wire::Announce<'_>,
    ) -> bool {
        if !self.cfg.receive {
            return true;
        }
        let Some(pos) = a.position(self.cfg.node_id) else {
            return true;
        };
        let key = XferKey {
            origin: node,
            xfer: a.xfer,
        };
        if self.records.contains(&key) {
            self.answer_from_record(key, |p| a.is_pending(p), false);
            return true;
        }
        let fresh = !self.inbound.contains_key(&key);
        if fresh {
            let code = Code {
                block: a.block as usize,
                k: a.group as u32,
                parity: a.parity,
            };
            if a.manifest_len == 0
                || code.block > wire::MAX_DATAGRAM - wire::HEADER_LEN - wire::PARITY_HDR
                || code.blocks(a.manifest_len) > wire::MAX_BLOCK_INDEX
            {
                return false;
            }
            let reserve = Inbound::reservation(&code, a.manifest_len);
            match limits::admit(&self.inbound, key, from, a.manifest_len, reserve, now) {
                Ok(victim) => {
                    if let Some(v) = victim {
                        self.abandon(now, v, "evicted: idle while slots ran out");
                        self.stats.evicted_transfers += 1;
                    }
                }
                Err(Refusal::Later) => {
                    self.stats.deferred_transfers += 1;
                    return true;
                }
                Err(Refusal::Reason(why)) => {
                    self.refuse(now, key, from, pos, why);
                    return true;
                }
            }
            self.inbound
                .insert(key, Inbound::new(key, from, pos, code, a.manifest_len, now));
            self.meter_for(node);
        }
        if self.inbound.get(&key).is_some_and(|ib| ib.leader.is_none()) {
            let leader = self.cohort_leader(a, pos);
            self.inbound.get_mut(&key).unwrap().leader = leader;
        }
        let ib = self.inbound.get_mut(&key).unwrap();
        ib.tail_naks = usize::from(a.total) > super::send::TAIL_WAIT_FROM;
        ib.last_heard = now;
        ib.sender = from;
        // The first announce of a transfer travels just ahead of its manifest: answering it
        // would only report the whole manifest missing and have it resent as parity. The
        // report goes out by itself once the manifest is in; later announces are answered.
        if a.is_pending(pos) && !fresh {
            if let Some(report) = ib.report.clone() {
                self.send_report(key, &report, true);
            } else {
                // Not ready: say which manifest groups are missing (or just that we live).
                self.answer_poll(now, key, 0);
            }
        }
        true
    }
}
