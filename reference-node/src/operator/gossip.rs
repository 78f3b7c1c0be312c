//! Durable gossip (spark-protocol §4.0): a decision is written as a row in the same transaction
//! as the work that produced it, pushed to every participant, and retried until each one has
//! acknowledged that it *applied* it. Unlike the Oct-2025 code, a receiver that fails to apply a
//! message does not count as delivered (I-12): it acks with the error and the origin retries.
use super::store::{Db, GossipRow};
use super::Operator;
use crate::msg::{GossipBody, GossipId, Msg};
use crate::node::{Ctx, TimerKind};
use crate::observe::Observation;
use crate::types::{NodeId, OperatorId};
use std::collections::BTreeSet;

impl Operator {
    /// Write a gossip row into `db` (durable with the caller's commit). Push it with
    /// [`Operator::gossip_push`] after committing.
    pub(super) fn gossip_create(db: &mut Db, body: GossipBody, participants: BTreeSet<OperatorId>) -> u64 {
        let seq = db.next_gossip_seq;
        db.next_gossip_seq += 1;
        db.gossip_out.insert(seq, GossipRow { body, participants, receipts: BTreeSet::new() });
        seq
    }

    pub(super) fn gossip_push(&mut self, ctx: &mut Ctx<'_>, seq: u64) {
        let Some(row) = self.store.read().gossip_out.get(&seq) else { return };
        let id = GossipId { origin: self.cfg.id, seq };
        for op in row.participants.difference(&row.receipts) {
            ctx.send(NodeId::Operator(*op), Msg::Gossip { id, body: Box::new(row.body.clone()) });
        }
        self.arm_gossip_timer(ctx);
    }

    pub(super) fn arm_gossip_timer(&mut self, ctx: &mut Ctx<'_>) {
        if !self.vol.gossip_timer_armed && !self.store.read().gossip_out.is_empty() {
            self.vol.gossip_timer_armed = true;
            ctx.set_timer(self.cfg.params.gossip_retry, TimerKind::GossipRetry);
        }
    }

    /// The `send_gossip` task: push every undelivered row again.
    pub(super) fn gossip_retry(&mut self, ctx: &mut Ctx<'_>) {
        let seqs: Vec<u64> = self.store.read().gossip_out.keys().copied().collect();
        for seq in seqs {
            self.gossip_push(ctx, seq);
        }
    }

    pub(super) fn on_gossip(&mut self, ctx: &mut Ctx<'_>, from: NodeId, id: GossipId, body: GossipBody) {
        if NodeId::Operator(id.origin) != from || !self.cfg.directory.operators.contains_key(&id.origin) {
            ctx.observe(Observation::Rejected { what: format!("gossip from {from}"), reason: "origin mismatch".into() });
            return;
        }
        let applied = if self.store.read().gossip_applied.contains(&id) {
            Ok(())
        } else {
            let mut db = self.store.begin();
            let r = self.apply_gossip(&mut db, ctx.now, id.origin, &body);
            if r.is_ok() {
                db.gossip_applied.insert(id);
                self.store.commit(db);
            }
            r
        };
        if let Err(e) = &applied {
            ctx.observe(Observation::Rejected { what: format!("{} applying {}", self.cfg.id, body.kind()), reason: e.clone() });
        }
        // Hazard (spark-protocol §8.2 #10): the Oct-2025 handlers only log the error and ack.
        // Two-phase commit mode: a decision whose effect had to wait keeps its row IN_FLIGHT.
        self.arm_consensus_tick(ctx);
        let applied = if self.cfg.params.hazards.gossip_ack_unapplied { Ok(()) } else { applied };
        ctx.send(from, Msg::GossipAck { id, applied });
        if self.byz.is_some() {
            self.byzantine_after_gossip(ctx, &body);
        }
    }

    fn apply_gossip(&self, db: &mut Db, now: crate::types::Micros, origin: OperatorId, body: &GossipBody) -> Result<(), String> {
        match body {
            GossipBody::FinalizeTreeCreation { leaf } => self.apply_finalize_tree(db, leaf),
            GossipBody::SettleSenderKeyTweak { transfer } => self.apply_settle_sender(db, *transfer),
            GossipBody::CancelTransfer { transfer } => Self::apply_cancel(db, *transfer),
            GossipBody::SettleReceiverCommit { transfer, attempt } => self.apply_receiver_commit(db, *transfer, *attempt),
            GossipBody::SettleReceiverRollback { transfer, attempt } => Self::apply_receiver_rollback(db, *transfer, *attempt, self.cfg.params.hazards.claim_settle_split),
            GossipBody::FinalizeTransfer { transfer, refunds } => Self::apply_finalize_transfer(db, *transfer, refunds),
            // Renew (operator/renew.rs).
            GossipBody::FinalizeRenewRefundTimelock { leaf, signed } => Self::apply_renew(db, *leaf, crate::tx::renew::RenewKind::Refund, signed, self.cfg.params.hazards.renew_node_on_zero_csv),
            GossipBody::FinalizeRenewNodeTimelock { leaf, kind, signed } => Self::apply_renew(db, *leaf, *kind, signed, self.cfg.params.hazards.renew_node_on_zero_csv),
            // Two-phase commit mode (twopc.rs): the origin must be the flow's coordinator.
            GossipBody::ConsensusCommit { flow } => self.apply_flow_decision(db, origin, *flow, None),
            GossipBody::ConsensusRollback { flow, decision } => self.apply_flow_decision(db, origin, *flow, Some(*decision)),
            // Lightning send: a SEND swap's sender tweak settles with its preimage (preimage_send.rs).
            GossipBody::PreimageRevealed { transfer, payment_hash, preimage } => super::preimage::apply_revealed(db, *transfer, payment_hash, preimage).and_then(|()| self.settle_send_after_reveal(db, *transfer)),
            GossipBody::FinalizeSplit { split } => self.apply_split(db, self.cfg.id, split),
            GossipBody::FinalizeAggregate { aggregate } => self.apply_aggregate(db, self.cfg.id, aggregate),
            GossipBody::SettleSwapKeyTweak { primary, counters } => self.apply_settle_swap(db, *primary, counters),
            // Two-phase commit mode: a finalize decided without a vote (twopc.rs).
            GossipBody::ConsensusDecided { flow, op } => self.apply_decided_flow(db, now, origin, *flow, op),
        }
    }

    pub(super) fn on_gossip_ack(&mut self, ctx: &mut Ctx<'_>, from: NodeId, id: GossipId, applied: Result<(), String>) {
        let NodeId::Operator(op) = from else { return };
        if id.origin != self.cfg.id {
            return;
        }
        if let Err(e) = applied {
            // Not a receipt: the row stays and is retried (I-12).
            ctx.observe(Observation::Rejected { what: format!("{op} could not apply gossip {}", id.seq), reason: e });
            return;
        }
        let mut db = self.store.begin();
        let Some(row) = db.gossip_out.get_mut(&id.seq) else { return };
        // Only a participant's ack is a receipt (a stray or forged ack changes nothing).
        if !row.participants.contains(&op) || !row.receipts.insert(op) {
            return;
        }
        let complete = row.receipts == row.participants;
        let body = row.body.clone();
        if complete {
            db.gossip_out.remove(&id.seq);
        }
        self.store.commit(db);
        if complete {
            self.gossip_delivered(ctx, body);
        } else {
            self.gossip_progress(ctx, &body);
        }
    }

    /// Every participant applied `body`: the origin's own follow-up.
    fn gossip_delivered(&mut self, ctx: &mut Ctx<'_>, body: GossipBody) {
        match body {
            GossipBody::SettleSenderKeyTweak { transfer } => {
                // spark-protocol §4.2 send step 6: the coordinator applies its own tweak last.
                let mut db = self.store.begin();
                match self.apply_settle_sender(&mut db, transfer) {
                    Ok(()) => {
                        let receiver = db.transfers.get(&transfer).map(|t| t.receiver);
                        self.store.commit(db);
                        // The event stream: tell the receiver (best effort; it also polls).
                        if let Some(w) = receiver.and_then(|r| self.cfg.directory.wallet_by_identity(&r)) {
                            ctx.send(NodeId::Wallet(w), Msg::TransferEvent { transfer });
                        }
                    }
                    Err(e) => ctx.observe(Observation::Rejected { what: format!("{} settling own sender tweak", self.cfg.id), reason: e }),
                }
            }
            GossipBody::SettleReceiverCommit { transfer, .. } => self.resume_claim(ctx, transfer),
            GossipBody::ConsensusCommit { flow } => self.twopc_commit_progress(ctx, flow, true),
            GossipBody::SettleSwapKeyTweak { primary, counters } => self.swap_settle_delivered(ctx, primary, counters),
            _ => {}
        }
    }

    fn gossip_progress(&mut self, ctx: &mut Ctx<'_>, body: &GossipBody) {
        if let GossipBody::SettleReceiverCommit { transfer, .. } = body {
            self.resume_claim(ctx, *transfer);
        }
        if let GossipBody::ConsensusCommit { flow } = body {
            self.twopc_commit_progress(ctx, *flow, false);
        }
    }

    /// Operators that have acknowledged every pending receiver-commit gossip for `transfer`
    /// (plus this one): the ones whose keyshare is already the receiver's.
    pub(super) fn settled_operators(&self, transfer: crate::types::TransferId) -> BTreeSet<OperatorId> {
        let mut settled = self.all_operators();
        for row in self.store.read().gossip_out.values() {
            if matches!(row.body, GossipBody::SettleReceiverCommit { transfer: t, .. } if t == transfer) || self.is_receiver_commit_gossip(&row.body, transfer) {
                for op in row.participants.difference(&row.receipts) {
                    settled.remove(op);
                }
            }
        }
        settled
    }
}
