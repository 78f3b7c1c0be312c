//! The flows routed through the two-phase-commit engine (`twopc.rs`) in two_phase mode: the send
//! (start transfer + sender key tweak) and the claim's receiver settle (receiver key tweak). The
//! gossip-mode paths in `send.rs` / `claim.rs` branch here at one point each and are otherwise
//! untouched.
use super::claim::{ClaimSession, Stage};
use super::send::SendSession;
use super::twopc::Deferred;
use super::{Operator, SessionKind, Step};
use crate::consensus::{FlowDecision, FlowOp};
use crate::msg::{InternalRequest, Msg, TransferOutcome, WalletReply};
use crate::node::Ctx;
use crate::types::LeafId;
use std::collections::BTreeMap;

impl Operator {
    /// Send, after the intermediate refunds are signed: write the flow row and Prepare every
    /// other operator (their domain work is `InitiateTransfer`'s).
    pub(super) fn twopc_send_prepare(&mut self, ctx: &mut Ctx<'_>, s: SendSession) -> Step<SendSession> {
        let op = FlowOp::StartTransfer {
            transfer: s.transfer,
            sender: s.sender,
            receiver: s.receiver,
            expiry: s.expiry,
            package: s.package.clone(),
            signed_refunds: s.signed.clone(),
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
    /// apply its sender tweak) and COMMITTED in one transaction; the decision's gossip and the
    /// wallet's "sent" leave once that transaction is durable.
    pub(super) fn twopc_send_commit(&mut self, ctx: &mut Ctx<'_>, s: SendSession) {
        let Some(flow) = self.coordinator_flow(FlowDecision::SettleSender { transfer: s.transfer }) else {
            return Self::reply_wallet(ctx, s.call, Err("the send's flow is no longer in flight".into()));
        };
        let mut db = self.store.begin();
        if let Err(e) = self.record_coordinator_transfer(&mut db, &s, ctx.now) {
            return self.send_abort(ctx, s, e);
        }
        if let Err(e) = self.apply_settle_sender(&mut db, s.transfer) {
            return self.send_abort(ctx, s, e);
        }
        let seq = match self.flow_decide(&mut db, flow, true) {
            Ok(seq) => seq,
            Err(e) => return self.send_abort(ctx, s, e),
        };
        self.store.commit(db);
        if let Some(seq) = seq {
            self.defer(ctx, Deferred::Gossip(seq));
        }
        let reply = Ok(WalletReply::Transfer { transfer: s.transfer, outcome: TransferOutcome::Sent });
        self.defer(ctx, Deferred::Send(s.call.wallet, Msg::WalletReply { req: s.call.req, body: Box::new(reply) }));
    }

    /// Send failed: with a flow, roll the flow back (`None`: handled); before the flow existed,
    /// hand the session back to the gossip-mode cancel (nothing reached the participants).
    pub(super) fn twopc_send_abort(&mut self, ctx: &mut Ctx<'_>, s: SendSession, reason: &str) -> Option<SendSession> {
        if !self.two_phase() {
            return Some(s);
        }
        let flow = self.coordinator_flow(FlowDecision::SettleSender { transfer: s.transfer })?;
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
