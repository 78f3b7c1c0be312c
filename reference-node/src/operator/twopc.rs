//! The 2026 coordinator-driven two-phase-commit engine (spark-protocol §4.10), beside the
//! Oct-2025 gossip semantics and selected per deployment (`Params::consensus`).
//!
//! 1. The coordinator writes a `FlowExecution` row (IN_FLIGHT, rollback decision pre-filled).
//! 2. `ConsensusPrepare` to every participant: each does the op's domain work and writes its
//!    PARTICIPANT row in one store transaction, and acknowledges only once that transaction is
//!    durable (the ack leaves in a later handler, see below).
//! 3. The coordinator records COMMITTED in the same transaction as its own domain work.
//! 4. The decision travels by durable gossip (`ConsensusCommit` / `ConsensusRollback`). A
//!    participant that never hears it asks the coordinator (`ConsensusQueryOutcome`); a
//!    coordinator row still IN_FLIGHT with no live session is swept to ROLLED_BACK (presumed
//!    abort: nothing can commit it any more, its session died with the process).
//!
//! Crash semantics with the store (`store.rs`): a `lose_unsynced` crash drops the writes of the
//! handler it lands in while a prefix of that handler's outputs still leaves. So whatever
//! *promises* a durable write (a Prepare ack, a COMMIT's gossip, the wallet's "sent") is not sent
//! in the handler that commits it but queued in [`Volatile::flush`] and sent by a zero-delay
//! `ConsensusFlush` timer: timers of a crashed handler never fire, so those outputs leave only if
//! the commit survived. Outputs that promise nothing (a Prepare, a rollback) leave at once: a
//! lost IN_FLIGHT row answers `None` to a query (presumed abort), a lost rollback is swept again.
use super::store::{Db, PendingSendStatus, TransferStatus};
use super::Operator;
use crate::consensus::{Consensus, FlowDecision, FlowId, FlowOp, FlowRole, FlowRow, FlowStatus};
use crate::msg::{GossipBody, InternalReply, InternalRequest, Msg, ReqId};
use crate::node::{Ctx, TimerKind};
use crate::observe::Observation;
use crate::types::{Micros, NodeId, OperatorId, TransferId};
use std::collections::BTreeSet;

/// The request id of a reconciliation query: its reply is matched by flow, not by session.
const QUERY_REQ: ReqId = ReqId { session: u64::MAX, phase: 0 };

/// What the two-phase engine keeps in memory (lost on a crash, like every session).
#[derive(Default)]
pub(super) struct Volatile {
    next_flow: u64,
    /// Coordinator flows a live session will still decide (the sweep leaves them alone).
    pub(super) live: BTreeSet<FlowId>,
    /// Outputs that promise a write committed in an earlier handler of this incarnation.
    flush: Vec<Deferred>,
    flush_armed: bool,
    tick_armed: bool,
}

pub(super) enum Deferred {
    Send(NodeId, Msg),
    Gossip(u64),
}

impl Operator {
    pub(super) fn two_phase(&self) -> bool {
        self.cfg.params.consensus == Consensus::TwoPhase
    }

    /// Coordinator: a fresh flow's IN_FLIGHT row, into the caller's transaction.
    pub(super) fn flow_start(&mut self, db: &mut Db, now: Micros, op: &FlowOp) -> FlowId {
        let flow = FlowId { coordinator: self.cfg.id, seq: (db.incarnation << 32) | self.vol.twopc.next_flow };
        self.vol.twopc.next_flow += 1;
        let (commit, rollback) = op.decisions();
        let row = FlowRow { role: FlowRole::Coordinator, status: FlowStatus::InFlight, participants: self.others(), transfer: op.transfer(), commit, rollback, started_at: now, op: None };
        db.flows.insert(flow, row);
        self.vol.twopc.live.insert(flow);
        flow
    }

    /// Coordinator: the IN_FLIGHT flow whose commit is `commit`, if any.
    pub(super) fn coordinator_flow(&self, commit: FlowDecision) -> Option<FlowId> {
        self.store
            .read()
            .flows
            .iter()
            .find(|(_, r)| r.role == FlowRole::Coordinator && r.status == FlowStatus::InFlight && r.commit == commit)
            .map(|(f, _)| *f)
    }

    /// Coordinator: the IN_FLIGHT flow of the send `transfer` (its tweak held or not), if any.
    pub(super) fn coordinator_send_flow(&self, transfer: TransferId) -> Option<FlowId> {
        self.store
            .read()
            .flows
            .iter()
            .find(|(_, r)| r.role == FlowRole::Coordinator && r.status == FlowStatus::InFlight && r.commit.send_commit_of() == Some(transfer))
            .map(|(f, _)| *f)
    }

    /// A send whose end belongs to the engine (it has a coordinator flow row).
    pub(super) fn flow_owns_send(&self, transfer: TransferId) -> bool {
        self.store.read().flows.values().any(|r| r.role == FlowRole::Coordinator && r.commit.send_commit_of() == Some(transfer))
    }

    /// Coordinator: decide `flow` in the caller's transaction (its own domain work is the
    /// caller's, in the same transaction) and write the decision's gossip row.
    pub(super) fn flow_decide(&mut self, db: &mut Db, flow: FlowId, commit: bool) -> Result<Option<u64>, String> {
        let row = db.flows.get_mut(&flow).ok_or_else(|| format!("no row for {flow}"))?;
        if row.role != FlowRole::Coordinator || row.status != FlowStatus::InFlight {
            return Err(format!("{flow} is {:?} here: cannot decide it", row.status));
        }
        row.status = if commit { FlowStatus::Committed } else { FlowStatus::RolledBack };
        let participants = row.participants.clone();
        let body = if commit { GossipBody::ConsensusCommit { flow } } else { GossipBody::ConsensusRollback { flow, decision: row.rollback } };
        self.vol.twopc.live.remove(&flow);
        Ok((!participants.is_empty()).then(|| Self::gossip_create(db, body, participants)))
    }

    /// Coordinator: roll `flow` back (own domain rollback + decision) and push it at once.
    pub(super) fn flow_rollback(&mut self, ctx: &mut Ctx<'_>, flow: FlowId) {
        let mut db = self.store.begin();
        let Some(rollback) = db.flows.get(&flow).filter(|r| r.role == FlowRole::Coordinator && r.status == FlowStatus::InFlight).map(|r| r.rollback) else {
            self.vol.twopc.live.remove(&flow);
            return;
        };
        // The coordinator's own rollback: nothing of the op was applied here before COMMIT,
        // except the receiver settle's lock, which the rollback undoes.
        if let Err(e) = self.apply_decision(&mut db, rollback, None) {
            ctx.observe(Observation::Rejected { what: format!("{} rolling back {flow}", self.cfg.id), reason: e });
        }
        if let FlowDecision::CancelTransfer { transfer } = rollback {
            if let Some(p) = db.pending_sends.get_mut(&transfer) {
                p.status = PendingSendStatus::Finished;
            }
        }
        match self.flow_decide(&mut db, flow, false) {
            Ok(seq) => {
                self.store.commit(db);
                if let Some(seq) = seq {
                    self.gossip_push(ctx, seq);
                }
            }
            Err(e) => ctx.observe(Observation::Rejected { what: format!("{} rolling back {flow}", self.cfg.id), reason: e }),
        }
    }

    /// A decision's domain effect on this operator.
    /// `op`: the flow's op when the row keeps one (a flow decided without a vote).
    pub(super) fn apply_decision(&self, db: &mut Db, d: FlowDecision, op: Option<&FlowOp>) -> Result<(), String> {
        match d {
            FlowDecision::SettleSender { transfer } => self.apply_settle_sender(db, transfer),
            FlowDecision::CancelTransfer { transfer } => Self::apply_cancel(db, transfer),
            FlowDecision::ReceiverCommit { transfer, attempt } => self.apply_receiver_commit(db, transfer, attempt),
            // Attempts are honoured; the spark#24 hazard has no path here (one decision per flow).
            FlowDecision::ReceiverRollback { transfer, attempt } => Self::apply_receiver_rollback(db, transfer, attempt, false),
            // Held (tweak_hold.rs): the Prepare recorded the transfer; its tweak waits.
            FlowDecision::HoldSender { transfer } => db.transfers.contains_key(&transfer).then_some(()).ok_or_else(|| format!("unknown transfer {transfer}")),
            FlowDecision::FinalizeTransfer { transfer } => match op {
                Some(FlowOp::FinalizeTransfer { transfer: t, refunds }) if *t == transfer => Self::apply_finalize_transfer(db, transfer, refunds),
                _ => Err(format!("finalize of transfer {transfer} without its refunds")),
            },
            FlowDecision::Forget { .. } => Ok(()),
        }
    }

    /// Queue an output until the current handler's commit is durable (see the module doc).
    pub(super) fn defer(&mut self, ctx: &mut Ctx<'_>, d: Deferred) {
        self.vol.twopc.flush.push(d);
        if !self.vol.twopc.flush_armed {
            self.vol.twopc.flush_armed = true;
            ctx.set_timer(Micros::ZERO, TimerKind::ConsensusFlush);
        }
    }

    pub(super) fn consensus_flush(&mut self, ctx: &mut Ctx<'_>) {
        self.vol.twopc.flush_armed = false;
        for d in std::mem::take(&mut self.vol.twopc.flush) {
            match d {
                Deferred::Send(to, msg) => ctx.send(to, msg),
                Deferred::Gossip(seq) => self.gossip_push(ctx, seq),
            }
        }
    }

    /// Arm the sweep/reconciliation tick while any flow here is undecided.
    pub(super) fn arm_consensus_tick(&mut self, ctx: &mut Ctx<'_>) {
        if !self.two_phase() || self.vol.twopc.tick_armed {
            return;
        }
        if self.store.read().flows.values().any(|r| r.status == FlowStatus::InFlight) {
            self.vol.twopc.tick_armed = true;
            ctx.set_timer(self.cfg.params.flow_stale, TimerKind::ConsensusTick);
        }
    }

    /// The self-sweep (coordinator rows: presumed abort) and reconciliation (participant rows:
    /// ask the coordinator), for undecided flows older than `flow_stale`.
    pub(super) fn consensus_tick(&mut self, ctx: &mut Ctx<'_>) {
        self.vol.twopc.tick_armed = false;
        let stale = self.cfg.params.flow_stale;
        let undecided: Vec<(FlowId, FlowRole)> = self
            .store
            .read()
            .flows
            .iter()
            .filter(|(_, r)| r.status == FlowStatus::InFlight && r.started_at + stale <= ctx.now)
            .map(|(f, r)| (*f, r.role))
            .collect();
        for (flow, role) in undecided {
            match role {
                FlowRole::Coordinator if !self.vol.twopc.live.contains(&flow) => {
                    ctx.observe(Observation::Rejected { what: format!("{} sweep", self.cfg.id), reason: format!("{flow} still IN_FLIGHT with no live session: presumed abort") });
                    self.flow_rollback(ctx, flow);
                }
                FlowRole::Coordinator => {}
                FlowRole::Participant => {
                    let body = InternalRequest::ConsensusQueryOutcome { flow };
                    ctx.send(NodeId::Operator(flow.coordinator), Msg::Internal { req: QUERY_REQ, body: Box::new(body) });
                }
            }
        }
        self.arm_consensus_tick(ctx);
    }

    /// Participant: Prepare. Refusals change nothing; an ack leaves after the commit is durable.
    pub(super) fn consensus_prepare(&mut self, ctx: &mut Ctx<'_>, peer: OperatorId, req: ReqId, flow: FlowId, op: FlowOp) {
        let reply = self.prepare_flow(ctx.now, peer, flow, &op);
        let msg = |body: Result<InternalReply, String>| Msg::InternalReply { req, body: Box::new(body) };
        match reply {
            Ok(()) => {
                self.defer(ctx, Deferred::Send(NodeId::Operator(peer), msg(Ok(InternalReply::Ack))));
                self.arm_consensus_tick(ctx);
            }
            Err(e) => {
                ctx.observe(Observation::Rejected { what: format!("{} ConsensusPrepare from {peer}", self.cfg.id), reason: e.clone() });
                ctx.send(NodeId::Operator(peer), msg(Err(e)));
            }
        }
    }

    fn prepare_flow(&mut self, now: Micros, peer: OperatorId, flow: FlowId, op: &FlowOp) -> Result<(), String> {
        if !self.two_phase() {
            return Err("this operator does not run the two-phase commit engine".into());
        }
        if flow.coordinator != peer || peer == self.cfg.id {
            return Err(format!("{flow} is not {peer}'s to prepare"));
        }
        if let Some(row) = self.store.read().flows.get(&flow) {
            return match row.status {
                FlowStatus::RolledBack => Err(format!("{flow} was rolled back")),
                _ if row.role != FlowRole::Participant => Err(format!("{flow} is not a flow this operator participates in")),
                _ => Ok(()), // a duplicate Prepare: already durable here
            };
        }
        let mut db = self.store.begin();
        match op {
            FlowOp::StartTransfer { init, held: _, coop_exit } => {
                let crate::msg::TransferInit { transfer, sender, receiver, expiry, package, signed_refunds } = init;
                // A cooperative exit: its exit row first, so the refunds are checked as connector
                // refunds (coop_exit.rs); a refused Prepare leaves neither behind.
                if let Some(exit) = coop_exit {
                    super::coop_exit::check_connector_tx(&exit.exit_txid, &exit.connector_tx, package.leaves.len())?;
                    let fresh = super::coop_exit::CoopExitRow { finalized: false, confirmed: None, ever_confirmed: false, closed_on_chain: false, ..(**exit).clone() };
                    db.coop_exits.entry(*transfer).or_insert(fresh);
                }
                self.initiate_transfer_in(&mut db, now, peer, *transfer, *sender, *receiver, *expiry, package, signed_refunds)?;
            }
            FlowOp::FinalizeTransfer { .. } => return Err(format!("{flow}: a finalize is decided without a vote, never prepared")),
            FlowOp::ReceiverSettle { transfer, attempt, tweak_digests } => {
                let coordinator = db.transfers.get(transfer).map(|t| t.coordinator);
                if coordinator != Some(peer) {
                    return Err(format!("{peer} is not the coordinator of transfer {transfer}"));
                }
                Self::settle_receiver_prepare_in(&mut db, *transfer, *attempt, tweak_digests)?;
            }
        }
        let (commit, rollback) = op.decisions();
        let participants = self.cfg.params.operator_ids().filter(|o| *o != peer).collect();
        db.flows.insert(flow, FlowRow { role: FlowRole::Participant, status: FlowStatus::InFlight, participants, transfer: op.transfer(), commit, rollback, started_at: now, op: None });
        self.store.commit(db);
        Ok(())
    }

    /// Coordinator: a participant asks how `flow` ended.
    pub(super) fn consensus_query(&self, peer: OperatorId, flow: FlowId) -> Result<InternalReply, String> {
        if flow.coordinator != self.cfg.id {
            return Err(format!("{flow} is not coordinated here"));
        }
        let status = match self.store.read().flows.get(&flow) {
            Some(r) if r.role == FlowRole::Coordinator && r.participants.contains(&peer) => Some(r.status),
            Some(_) => return Err(format!("{peer} does not take part in {flow}")),
            None => None,
        };
        Ok(InternalReply::FlowOutcome { flow, status })
    }

    /// Participant: the coordinator's answer to a reconciliation query. Only the flow's own
    /// coordinator is believed; anything else is rejected without a state change.
    pub(super) fn on_flow_outcome(&mut self, ctx: &mut Ctx<'_>, from: OperatorId, flow: FlowId, status: Option<FlowStatus>) {
        let reject = |ctx: &mut Ctx<'_>, reason: String| ctx.observe(Observation::Rejected { what: format!("FlowOutcome from {from}"), reason });
        if !self.two_phase() || from != flow.coordinator {
            return reject(ctx, format!("{from} is not the coordinator of {flow}"));
        }
        let Some(row) = self.store.read().flows.get(&flow).filter(|r| r.role == FlowRole::Participant) else {
            return reject(ctx, format!("{flow} is not prepared here"));
        };
        if row.status != FlowStatus::InFlight {
            return; // already decided here (the gossip got in first)
        }
        let decision = match status {
            Some(FlowStatus::InFlight) => return, // still deciding: ask again next tick
            Some(FlowStatus::Committed) => None,
            // No row: the coordinator lost the flow before it was durable; it can never commit.
            Some(FlowStatus::RolledBack) | None => Some(row.rollback),
        };
        let mut db = self.store.begin();
        match self.apply_flow_decision(&mut db, from, flow, decision) {
            Ok(()) => self.store.commit(db),
            Err(e) => reject(ctx, e),
        }
    }

    /// Participant: apply the decision of `flow` from `origin` (`None` = COMMIT, `Some(d)` =
    /// ROLLBACK with domain effect `d`). Idempotent; a decision that contradicts the one already
    /// applied, or one not from the flow's coordinator, is refused and changes nothing.
    pub(super) fn apply_flow_decision(&self, db: &mut Db, origin: OperatorId, flow: FlowId, rollback: Option<FlowDecision>) -> Result<(), String> {
        if !self.two_phase() {
            return Err("this operator does not run the two-phase commit engine".into());
        }
        if origin != flow.coordinator {
            return Err(format!("a decision for {flow} from {origin}, not its coordinator"));
        }
        let want = if rollback.is_some() { FlowStatus::RolledBack } else { FlowStatus::Committed };
        let Some(row) = db.flows.get(&flow) else {
            let Some(decision) = rollback else { return Err(format!("COMMIT for {flow}, never prepared here")) };
            // Rolled back before its Prepare got here: a tombstone refuses a late Prepare.
            let participants = self.cfg.params.operator_ids().filter(|o| *o != origin).collect();
            let transfer = decision.transfer();
            db.flows.insert(flow, FlowRow { role: FlowRole::Participant, status: FlowStatus::RolledBack, participants, transfer, commit: decision, rollback: decision, started_at: Micros::ZERO, op: None });
            return Ok(());
        };
        if row.role != FlowRole::Participant {
            return Err(format!("{flow} is coordinated here"));
        }
        if row.status == want {
            return Ok(());
        }
        if row.status != FlowStatus::InFlight {
            return Err(format!("{flow} is already {:?} here: refusing {want:?}", row.status));
        }
        let effect = if rollback.is_some() { row.rollback } else { row.commit };
        if rollback.is_some_and(|d| d != effect) {
            return Err(format!("rollback of {flow} names another effect than the one prepared"));
        }
        let op = row.op.clone();
        self.apply_decision(db, effect, op.as_deref())?;
        if let Some(r) = db.flows.get_mut(&flow) {
            r.status = want;
        }
        Ok(())
    }

    /// Participant: a flow its coordinator decided without a vote (`ConsensusDecided`: a
    /// transfer's finalize). The row is written IN_FLIGHT with the op; the effect is applied at
    /// once when it can be, else the row stays IN_FLIGHT and reconciliation applies it later
    /// (a finalize that overtook the receiver settle's COMMIT). Either way the decision is
    /// durable here before the gossip is acknowledged, so an ack never loses it.
    pub(super) fn apply_decided_flow(&self, db: &mut Db, now: Micros, origin: OperatorId, flow: FlowId, op: &FlowOp) -> Result<(), String> {
        if !self.two_phase() {
            return Err("this operator does not run the two-phase commit engine".into());
        }
        if origin != flow.coordinator {
            return Err(format!("a decision for {flow} from {origin}, not its coordinator"));
        }
        let FlowOp::FinalizeTransfer { transfer, refunds } = op else { return Err(format!("{flow}: only a finalize is decided without a vote")) };
        let t = db.transfers.get(transfer).ok_or_else(|| format!("unknown transfer {transfer}"))?;
        if t.coordinator != origin {
            return Err(format!("{origin} is not the coordinator of transfer {transfer}"));
        }
        if refunds.keys().any(|l| !t.leaves.contains_key(l)) || refunds.len() != t.leaves.len() {
            return Err(format!("finalize of transfer {transfer} does not cover exactly its leaves"));
        }
        let ready = matches!(t.status, TransferStatus::ReceiverKeyTweakApplied | TransferStatus::Completed);
        match db.flows.get(&flow) {
            Some(r) if r.role != FlowRole::Participant => return Err(format!("{flow} is coordinated here")),
            Some(r) if r.status == FlowStatus::Committed => return Ok(()),
            Some(r) if r.status == FlowStatus::RolledBack => return Err(format!("{flow} is RolledBack here: refusing Committed")),
            Some(_) => {}
            None => {
                let (commit, rollback) = op.decisions();
                let participants = self.cfg.params.operator_ids().filter(|o| *o != origin).collect();
                let row = FlowRow { role: FlowRole::Participant, status: FlowStatus::InFlight, participants, transfer: *transfer, commit, rollback, started_at: now, op: Some(Box::new(op.clone())) };
                db.flows.insert(flow, row);
            }
        }
        if ready {
            Self::apply_finalize_transfer(db, *transfer, refunds)?;
            if let Some(r) = db.flows.get_mut(&flow) {
                r.status = FlowStatus::Committed;
            }
        }
        Ok(())
    }

    /// Coordinator: a participant acknowledged a COMMIT (`all`: every one has).
    pub(super) fn twopc_commit_progress(&mut self, ctx: &mut Ctx<'_>, flow: FlowId, all: bool) {
        let Some(commit) = self.store.read().flows.get(&flow).map(|r| r.commit) else { return };
        match commit {
            FlowDecision::ReceiverCommit { transfer, .. } => self.resume_claim(ctx, transfer),
            FlowDecision::SettleSender { transfer } if all => {
                // The event stream: the transfer is claimable everywhere now.
                let receiver = self.store.read().transfers.get(&transfer).map(|t| t.receiver);
                if let Some(w) = receiver.and_then(|r| self.cfg.directory.wallet_by_identity(&r)) {
                    ctx.send(NodeId::Wallet(w), Msg::TransferEvent { transfer });
                }
            }
            _ => {}
        }
    }

    /// `settled_operators`: a pending COMMIT gossip of a receiver settle for `transfer`.
    pub(super) fn is_receiver_commit_gossip(&self, body: &GossipBody, transfer: TransferId) -> bool {
        let GossipBody::ConsensusCommit { flow } = body else { return false };
        matches!(self.store.read().flows.get(flow).map(|r| r.commit), Some(FlowDecision::ReceiverCommit { transfer: t, .. }) if t == transfer)
    }
}
