//! The flows routed through the two-phase-commit engine (`twopc.rs`) in two_phase mode: the send
//! (start transfer + sender key tweak) and the claim's receiver settle (receiver key tweak). The
//! gossip-mode paths in `send.rs` / `claim.rs` branch here at one point each and are otherwise
//! untouched.
use super::claim::{ClaimSession, Stage};
use super::send::SendSession;
use super::tweak_hold::SenderTweak;
use super::twopc::Deferred;
use super::{Operator, SessionKind, Step};
use crate::consensus::{FlowDecision, FlowOp};
use super::store::Db;
use crate::msg::{GossipBody, InternalRequest, Msg, RefundSet};
use crate::node::Ctx;
use crate::types::{LeafId, TransferId};
use std::collections::BTreeMap;

impl Operator {
    /// Send, after the intermediate refunds are signed: write the flow row and Prepare every
    /// other operator (their domain work is `InitiateTransfer`'s).
    pub(super) fn twopc_send_prepare(&mut self, ctx: &mut Ctx<'_>, s: SendSession) -> Step<SendSession> {
        let op = FlowOp::StartTransfer {
            init: s.transfer_init(),
            held: Self::sender_tweak_held(self.store.read(), s.transfer),
            coop_exit: self.store.read().coop_exits.get(&s.transfer).cloned().map(Box::new),
        };
        let mut db = self.store.begin();
        let flow = self.flow_start(&mut db, ctx.now, &op);
        self.store.commit(db);
        self.arm_consensus_tick(ctx);
        let others = self.others();
        if others.is_empty() {
            self.twopc_send_commit(ctx, s);
            return Step::Done;
        }
        let req = InternalRequest::ConsensusPrepare { flow, op: Box::new(op) };
        Step::Next(s, others.into_iter().map(|o| (o, req.clone())).collect())
    }

    /// Send, every participant prepared: the coordinator's own domain work (record the transfer,
    /// and apply its sender tweak unless a swap or a coop exit holds it: tweak_hold.rs, the same
    /// rule as the gossip mode's) and COMMITTED in one transaction; the decision's gossip, a
    /// swap's settle gossip and the wallet's reply leave once that transaction is durable.
    pub(super) fn twopc_send_commit(&mut self, ctx: &mut Ctx<'_>, s: SendSession) {
        let Some(flow) = self.coordinator_send_flow(s.transfer) else {
            return Self::reply_wallet(ctx, s.call, Err("the send's flow is no longer in flight".into()));
        };
        let mut db = self.store.begin();
        if let Err(e) = self.record_coordinator_transfer(&mut db, &s, ctx.now) {
            return self.send_abort(ctx, s, e);
        }
        let tweak = match Self::sender_tweak_on_commit(&mut db, s.transfer) {
            Ok(t) => t,
            Err(e) => return self.send_abort(ctx, s, e),
        };
        // The participants apply the COMMIT they prepared: it must be the one decided here.
        let expected = match tweak {
            SenderTweak::Apply => FlowDecision::SettleSender { transfer: s.transfer },
            SenderTweak::Hold | SenderTweak::SettleSwap(_) => FlowDecision::HoldSender { transfer: s.transfer },
        };
        if db.flows.get(&flow).map(|r| r.commit) != Some(expected) {
            return self.send_abort(ctx, s, format!("{flow} was prepared with another commit than {expected:?}"));
        }
        let mut pushes = Vec::new();
        match tweak {
            SenderTweak::Apply => {
                if let Err(e) = self.apply_settle_sender(&mut db, s.transfer) {
                    return self.send_abort(ctx, s, e);
                }
            }
            SenderTweak::Hold => {}
            // A v3 swap covered by this counter: settle every leg by the swap's own gossip.
            SenderTweak::SettleSwap(body) => {
                let others = self.others();
                if others.is_empty() {
                    if let Err(e) = self.apply_swap_gossip(&mut db, &body) {
                        return self.send_abort(ctx, s, e);
                    }
                } else {
                    pushes.push(Self::gossip_create(&mut db, *body, others));
                }
            }
        }
        let seq = match self.flow_decide(&mut db, flow, true) {
            Ok(seq) => seq,
            Err(e) => return self.send_abort(ctx, s, e),
        };
        self.store.commit(db);
        for seq in seq.into_iter().chain(pushes) {
            self.defer(ctx, Deferred::Gossip(seq));
        }
        let reply = Ok(self.send_committed_reply(&s));
        self.defer(ctx, Deferred::Send(s.call.wallet, Msg::WalletReply { req: s.call.req, body: Box::new(reply) }));
    }

    /// Send failed: with a flow, roll the flow back (`None`: handled); before the flow existed,
    /// hand the session back to the gossip-mode cancel (nothing reached the participants).
    pub(super) fn twopc_send_abort(&mut self, ctx: &mut Ctx<'_>, s: SendSession, reason: &str) -> Option<SendSession> {
        if !self.two_phase() {
            return Some(s);
        }
        let flow = self.coordinator_send_flow(s.transfer)?;
        self.flow_rollback(ctx, flow);
        Self::reply_wallet(ctx, s.call, Err(reason.to_string()));
        None
    }

    /// Claim: lock the receiver's tweak here and write the flow row in one transaction, then
    /// Prepare every other operator.
    pub(super) fn twopc_claim_prepare(&mut self, ctx: &mut Ctx<'_>, s: ClaimSession, tweak_digests: BTreeMap<LeafId, [u8; 32]>) {
        let op = FlowOp::ReceiverSettle { transfer: s.transfer, attempt: s.attempt, tweak_digests };
        let mut db = self.store.begin();
        if let FlowOp::ReceiverSettle { transfer, attempt, tweak_digests } = &op {
            if let Err(e) = Self::settle_receiver_prepare_in(&mut db, *transfer, *attempt, tweak_digests) {
                return Self::reply_wallet(ctx, s.call, Err(e));
            }
        }
        let flow = self.flow_start(&mut db, ctx.now, &op);
        self.store.commit(db);
        self.arm_consensus_tick(ctx);
        let others = self.others();
        let req = InternalRequest::ConsensusPrepare { flow, op: Box::new(op) };
        let requests: Vec<_> = others.iter().map(|o| (*o, req.clone())).collect();
        let id = self.start_session(ctx, SessionKind::Claim(Box::new(s)), requests);
        if others.is_empty() {
            self.advance(ctx, id);
        }
    }

    /// Claim, every participant prepared: apply the receiver's tweak here with COMMITTED in one
    /// transaction, then sign once t operators hold the receiver's key.
    pub(super) fn twopc_claim_commit(&mut self, ctx: &mut Ctx<'_>, mut s: ClaimSession) -> Step<ClaimSession> {
        let Some(flow) = self.coordinator_flow(FlowDecision::ReceiverCommit { transfer: s.transfer, attempt: s.attempt }) else {
            self.claim_abort(ctx, s, "the settle's flow is no longer in flight".into());
            return Step::Done;
        };
        let mut db = self.store.begin();
        if let Err(e) = self.apply_receiver_commit(&mut db, s.transfer, s.attempt) {
            self.claim_abort(ctx, s, e);
            return Step::Done;
        }
        if let Some(t) = db.transfers.get_mut(&s.transfer) {
            t.receiver_commit_decided = true;
        }
        let seq = match self.flow_decide(&mut db, flow, true) {
            Ok(seq) => seq,
            Err(e) => {
                self.claim_abort(ctx, s, e);
                return Step::Done;
            }
        };
        self.store.commit(db);
        if let Some(seq) = seq {
            self.defer(ctx, Deferred::Gossip(seq));
        }
        s.stage = Stage::WaitSettled;
        self.claim_try_sign(ctx, s)
    }

    /// Claim's end: the coordinator's finalize (applied to `db` by the caller) is a flow decided
    /// without a vote: its COMMITTED row keeps the op, the decision's gossip carries it, all in
    /// the caller's transaction; the gossip leaves once that transaction is durable. Each
    /// participant keeps the decision durably even when it cannot apply it yet (twopc.rs
    /// `apply_decided_flow`), so an early finalize is never acknowledged and lost (the
    /// `gossip_ack_unapplied` hazard of plain gossip).
    pub(super) fn twopc_finalize_transfer(&mut self, ctx: &mut Ctx<'_>, mut db: Db, transfer: TransferId, refunds: BTreeMap<LeafId, RefundSet>) -> Result<(), String> {
        let op = FlowOp::FinalizeTransfer { transfer, refunds };
        let flow = self.flow_start(&mut db, ctx.now, &op);
        if let Some(r) = db.flows.get_mut(&flow) {
            r.op = Some(Box::new(op.clone()));
        }
        let seq = self.flow_decide(&mut db, flow, true)?;
        if let Some(seq) = seq {
            // ConsensusCommit carries no op: deliver the decision with it instead.
            if let Some(g) = db.gossip_out.get_mut(&seq) {
                g.body = GossipBody::ConsensusDecided { flow, op: Box::new(op) };
            }
        }
        self.store.commit(db);
        if let Some(seq) = seq {
            self.defer(ctx, Deferred::Gossip(seq));
        }
        Ok(())
    }

    /// Claim failed: before COMMIT roll the flow back; after it, never (the failed signing is
    /// retried by the wallet on the committed state).
    pub(super) fn twopc_claim_abort(&mut self, ctx: &mut Ctx<'_>, s: ClaimSession, reason: String) {
        if s.stage == Stage::Prepare {
            if let Some(flow) = self.coordinator_flow(FlowDecision::ReceiverCommit { transfer: s.transfer, attempt: s.attempt }) {
                self.flow_rollback(ctx, flow);
            }
        }
        Self::reply_wallet(ctx, s.call, Err(reason));
    }
}
