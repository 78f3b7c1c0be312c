//! The Spark operator (SO) as a pure state machine: durable tables in [`store`], volatile
//! coordinator sessions here, one module per flow. Every handler step that changes state does so
//! in one store transaction (`begin` … `commit`), so a crash between events loses only sessions.

mod aggregate;
mod byzantine;
mod claim;
mod claim_done;
pub mod coop_exit;
mod deposit;
pub use renew::PendingRenewRow;
pub use deposit::{check_signed, deposit_templates, witness_signature};
mod dkg;
mod gossip;
// Split and aggregate: FROST over several keyshares in one flow (cleanup of the two copies).
mod grouped_signing;
mod renew;
pub mod preimage;
// Lightning send (§4.8): HTLC refunds, provide_preimage, return and expiry.
pub mod preimage_send;
#[cfg(test)]
mod preimage_send_tests;
mod send;
mod signer;
mod split;
pub mod store;
mod twopc;
mod twopc_flows;
// Two-phase commit mode: one decision on holding a committed send's sender tweak, both modes.
mod tweak_hold;
pub mod swap;
mod watcher;
// Watchtower and fees flow: direct refunds of the current owner when a node tx is on chain.
pub mod watchtower;

use crate::crypto::SecretKey;
use crate::msg::{InternalReply, InternalRequest, Msg, ReqId, WalletReply, WalletRequest};
use crate::node::{Ctx, Input, Node, TimerKind};
use crate::observe::Observation;
use crate::params::{Directory, Params};
use crate::types::{Micros, NodeId, OperatorId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use store::Store;

/// How long a coordinator leaves a named culprit out of its signer sets.
const SUSPECT_FOR: Micros = Micros::from_secs(600);

/// What an operator is configured with (its identity key survives restarts: it is config).
#[derive(Clone)]
pub struct OperatorConfig {
    pub id: OperatorId,
    pub identity: SecretKey,
    pub params: Arc<Params>,
    pub directory: Arc<Directory>,
}

pub struct Operator {
    cfg: OperatorConfig,
    store: Store,
    vol: Volatile,
    /// Set only for an operator the scenario made Byzantine (operator/byzantine.rs).
    byz: Option<Box<byzantine::Byzantine>>,
}

/// Everything a crash loses.
#[derive(Default)]
struct Volatile {
    next_session: u64,
    sessions: BTreeMap<u64, Session>,
    dkg: BTreeMap<u64, dkg::BatchState>,
    dkg_collect: Option<dkg::Collect>,
    gossip_timer_armed: bool,
    tasks_timer_armed: bool,
    /// Operators this coordinator caught cheating or withholding in a signing round (FROST
    /// identifiable abort), until when: left out of signer sets while enough others remain. It
    /// expires so an honest operator that was only down is trusted again.
    suspects: BTreeMap<OperatorId, Micros>,
    /// Two-phase commit mode (twopc.rs): flow ids handed out this incarnation, flows a live
    /// session will still decide, outputs waiting for their commit to be durable, timers.
    twopc: twopc::Volatile,
    /// Participant side of a retransmitted round (`resend_round`): the reply already sent for each
    /// recent (coordinator, request), so a resent request gets the same answer instead of being
    /// served twice (a second FROST round 2 on the same nonces is refused by the nonce guard).
    replies_sent: ReplyCache,
}

/// The last [`REPLY_CACHE`] internal replies this operator sent, by (peer, request).
#[derive(Default)]
struct ReplyCache {
    replies: BTreeMap<(OperatorId, ReqId), Result<InternalReply, String>>,
    order: std::collections::VecDeque<(OperatorId, ReqId)>,
}

/// Enough for every round in flight at once many times over; memory stays bounded.
const REPLY_CACHE: usize = 4096;

impl ReplyCache {
    fn get(&self, peer: OperatorId, req: ReqId) -> Option<&Result<InternalReply, String>> {
        self.replies.get(&(peer, req))
    }
    fn insert(&mut self, peer: OperatorId, req: ReqId, reply: Result<InternalReply, String>) {
        if self.replies.insert((peer, req), reply).is_none() {
            self.order.push_back((peer, req));
        }
        while self.order.len() > REPLY_CACHE {
            if let Some(old) = self.order.pop_front() {
                self.replies.remove(&old);
            }
        }
    }
}

/// A coordinator-side operation waiting for a round of replies from other operators.
struct Session {
    phase: u8,
    waiting: BTreeSet<OperatorId>,
    replies: BTreeMap<OperatorId, InternalReply>,
    kind: SessionKind,
    /// This round's requests, kept to resend once to the operators that stayed silent, and
    /// whether that was done (`resend_round`).
    round: Vec<(OperatorId, InternalRequest)>,
    resent: bool,
}

impl Session {
    /// A FROST round to a chosen signer set: a signer that does not answer is withholding.
    fn is_signing_round(&self) -> bool {
        match &self.kind {
            SessionKind::Commitments(_) | SessionKind::DepositSign(_) => true,
            SessionKind::Send(_) => self.phase == 1,
            SessionKind::Claim(c) => c.in_signing_round(),
            SessionKind::DepositAddress(_) => false,
            SessionKind::Renew(_) => true,
            SessionKind::SplitPrepare(_) => false,
            SessionKind::SplitSign(_) => true,
            SessionKind::AggregatePrepare(_) => false,
        }
    }
}

enum SessionKind {
    DepositAddress(deposit::AddressSession),
    DepositSign(deposit::SignSession),
    Commitments(send::CommitmentsSession),
    Send(Box<send::SendSession>),
    Claim(Box<claim::ClaimSession>),
    /// Renew: FROST rounds of a `renew_leaf` (operator/renew.rs).
    Renew(renew::RenewSession),
    /// Split (operator/split.rs): reserve the children's keys on every operator.
    SplitPrepare(split::PrepareSession),
    /// Split: FROST rounds over the split's keyshares.
    SplitSign(Box<split::SignSession>),
    /// Aggregate (operator/aggregate.rs): compute Σ S_c on every operator. Its signing rounds
    /// run as a `SplitSign` session.
    AggregatePrepare(aggregate::PrepareSession),
}

/// What a session step decided: finished (it replied or failed itself), or the next round.
enum Step<K> {
    Done,
    Next(K, Vec<(OperatorId, InternalRequest)>),
}

impl<K> Step<K> {
    fn map<L>(self, f: impl FnOnce(K) -> L) -> Step<L> {
        match self {
            Step::Done => Step::Done,
            Step::Next(k, r) => Step::Next(f(k), r),
        }
    }
}

/// Where to send the answer of a wallet request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WalletCall {
    wallet: NodeId,
    req: ReqId,
}

impl Operator {
    pub fn new(cfg: OperatorConfig) -> Operator {
        let byz = byzantine::Byzantine::new(cfg.params.byzantine.get(&cfg.id).cloned().unwrap_or_default());
        Operator { cfg, store: Store::default(), vol: Volatile::default(), byz }
    }
    pub fn id(&self) -> OperatorId {
        self.cfg.id
    }
    pub fn params(&self) -> &Params {
        &self.cfg.params
    }
    /// The committed tables (what the checker inspects).
    pub fn db(&self) -> &store::Db {
        self.store.read()
    }
    pub fn store_commits(&self) -> u64 {
        self.store.commits()
    }
    fn all_operators(&self) -> BTreeSet<OperatorId> {
        self.cfg.params.operator_ids().collect()
    }
    fn others(&self) -> BTreeSet<OperatorId> {
        self.cfg.params.operator_ids().filter(|o| *o != self.cfg.id).collect()
    }

    fn new_session(&mut self, kind: SessionKind) -> u64 {
        let counter = self.vol.next_session;
        self.vol.next_session += 1;
        let id = (self.store.read().incarnation << 32) | counter;
        self.vol.sessions.insert(id, Session { phase: 0, waiting: BTreeSet::new(), replies: BTreeMap::new(), kind, round: Vec::new(), resent: false });
        id
    }

    /// Send one round of requests for `session` and arm its timeout.
    fn fan_out(&mut self, ctx: &mut Ctx<'_>, session: u64, requests: Vec<(OperatorId, InternalRequest)>) {
        let Some(s) = self.vol.sessions.get_mut(&session) else { return };
        s.phase = s.phase.wrapping_add(1);
        s.replies.clear();
        s.waiting = requests.iter().map(|(o, _)| *o).collect();
        s.resent = false;
        let req = ReqId { session, phase: s.phase };
        for (op, body) in &requests {
            ctx.send(NodeId::Operator(*op), Msg::Internal { req, body: Box::new(body.clone()) });
        }
        s.round = requests;
        ctx.set_timer(self.cfg.params.request_timeout, TimerKind::RequestTimeout((session << 8) | u64::from(req.phase)));
    }

    /// The round's first timeout: a request or its reply may have been lost (the simulated network
    /// drops messages; a real deployment loses them to broken connections). Resend the same
    /// requests, same request id, to the operators still silent and wait one more timeout before
    /// failing the session. Participants answer a resent request from their reply cache, so
    /// nothing is served twice. Without this, one lost message in ~30 failed the whole transfer
    /// (2% loss: 38 of 100 sends got through on seed 1).
    fn resend_round(&mut self, ctx: &mut Ctx<'_>, session: u64, tag: u64) {
        let Some(s) = self.vol.sessions.get_mut(&session) else { return };
        s.resent = true;
        let req = ReqId { session, phase: s.phase };
        for (op, body) in s.round.iter().filter(|(o, _)| s.waiting.contains(o)) {
            ctx.send(NodeId::Operator(*op), Msg::Internal { req, body: Box::new(body.clone()) });
        }
        ctx.set_timer(self.cfg.params.request_timeout, TimerKind::RequestTimeout(tag));
    }

    fn reply_wallet(ctx: &mut Ctx<'_>, call: WalletCall, body: Result<WalletReply, String>) {
        ctx.send(call.wallet, Msg::WalletReply { req: call.req, body: Box::new(body) });
    }

    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        let mut db = self.store.begin();
        db.incarnation += 1;
        self.store.commit(db);
        self.vol = Volatile::default();
        if self.cfg.params.dkg_coordinators.contains(&self.cfg.id) {
            ctx.set_timer(Micros::ZERO, TimerKind::DkgPool);
        }
        self.arm_gossip_timer(ctx);
        self.arm_tasks_timer(ctx);
        self.arm_consensus_tick(ctx);
        self.arm_swap_timers(ctx);
    }

    fn on_internal_reply(&mut self, ctx: &mut Ctx<'_>, from: NodeId, req: ReqId, body: Result<InternalReply, String>) {
        let NodeId::Operator(op) = from else { return };
        if let Ok(InternalReply::FlowOutcome { flow, status }) = &body {
            return self.on_flow_outcome(ctx, op, *flow, *status); // two-phase commit mode
        }
        let Some(s) = self.vol.sessions.get_mut(&req.session) else { return };
        if s.phase != req.phase || !s.waiting.contains(&op) {
            return; // stale or duplicate reply
        }
        match body {
            Err(e) => self.fail_session(ctx, req.session, format!("{op} refused: {e}")),
            Ok(r) => {
                s.waiting.remove(&op);
                s.replies.insert(op, r);
                if s.waiting.is_empty() {
                    self.advance(ctx, req.session);
                }
            }
        }
    }

    /// A round completed: move the session to its next step.
    fn advance(&mut self, ctx: &mut Ctx<'_>, id: u64) {
        let Some(s) = self.vol.sessions.remove(&id) else { return };
        let Session { phase, replies, kind, .. } = s;
        let step = match kind {
            SessionKind::DepositAddress(x) => self.deposit_address_advance(ctx, x, replies).map(SessionKind::DepositAddress),
            SessionKind::DepositSign(x) => self.deposit_sign_advance(ctx, phase, x, replies).map(SessionKind::DepositSign),
            SessionKind::Commitments(x) => self.commitments_advance(ctx, x, replies).map(SessionKind::Commitments),
            SessionKind::Send(x) => self.send_advance(ctx, phase, *x, replies).map(|x| SessionKind::Send(Box::new(x))),
            SessionKind::Claim(x) => self.claim_advance(ctx, id, *x, replies).map(|x| SessionKind::Claim(Box::new(x))),
            SessionKind::Renew(x) => self.renew_advance(ctx, phase, x, replies).map(SessionKind::Renew),
            SessionKind::SplitPrepare(x) => self.split_prepare_advance(ctx, x, replies).map(SessionKind::SplitPrepare),
            SessionKind::SplitSign(x) => self.split_sign_advance(ctx, phase, *x, replies).map(|x| SessionKind::SplitSign(Box::new(x))),
            SessionKind::AggregatePrepare(x) => self.aggregate_prepare_advance(ctx, x, replies).map(SessionKind::AggregatePrepare),
        };
        if let Step::Next(kind, requests) = step {
            self.vol.sessions.insert(id, Session { phase, waiting: BTreeSet::new(), replies: BTreeMap::new(), kind, round: Vec::new(), resent: false });
            // An empty round means "wait" (for gossip receipts): only the timeout is armed.
            self.fan_out(ctx, id, requests);
        }
    }

    /// Start a session with its first round.
    fn start_session(&mut self, ctx: &mut Ctx<'_>, kind: SessionKind, requests: Vec<(OperatorId, InternalRequest)>) -> u64 {
        let id = self.new_session(kind);
        self.fan_out(ctx, id, requests);
        id
    }

    fn fail_session(&mut self, ctx: &mut Ctx<'_>, id: u64, reason: String) {
        let Some(s) = self.vol.sessions.remove(&id) else { return };
        ctx.observe(Observation::Rejected { what: format!("{} session", self.cfg.id), reason: reason.clone() });
        match s.kind {
            SessionKind::DepositAddress(x) => Self::reply_wallet(ctx, x.call, Err(reason)),
            SessionKind::DepositSign(x) => Self::reply_wallet(ctx, x.call, Err(reason)),
            SessionKind::Commitments(x) => Self::reply_wallet(ctx, x.call, Err(reason)),
            SessionKind::Send(x) => self.send_abort(ctx, *x, reason),
            SessionKind::Claim(x) => self.claim_abort(ctx, *x, reason),
            SessionKind::Renew(x) => self.renew_abort(ctx, x, reason),
            SessionKind::SplitPrepare(x) => Self::reply_wallet(ctx, x.call, Err(reason)),
            SessionKind::SplitSign(x) => Self::reply_wallet(ctx, x.call, Err(reason)),
            SessionKind::AggregatePrepare(x) => Self::reply_wallet(ctx, x.call, Err(reason)),
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: TimerKind) {
        match timer {
            TimerKind::RequestTimeout(tag) => {
                let (session, phase) = (tag >> 8, (tag & 0xff) as u8);
                let Some(s) = self.vol.sessions.get(&session) else { return };
                // A silent signer in a FROST round is treated as withholding (identifiable abort:
                // named, left out of the next signer set) rather than asked again.
                if s.phase == phase && !s.resent && !s.is_signing_round() {
                    self.resend_round(ctx, session, tag);
                } else if s.phase == phase {
                    if s.is_signing_round() {
                        let missing: Vec<OperatorId> = s.waiting.iter().copied().collect();
                        for op in missing {
                            self.name_culprit(ctx, op, "withheld its signing round".into());
                        }
                    }
                    let Some(s) = self.vol.sessions.get(&session) else { return };
                    let missing: Vec<String> = s.waiting.iter().map(|o| o.to_string()).collect();
                    self.fail_session(ctx, session, format!("timed out waiting for {}", missing.join(", ")));
                }
            }
            TimerKind::GossipRetry => {
                self.vol.gossip_timer_armed = false;
                self.gossip_retry(ctx);
            }
            TimerKind::TransferTasks => {
                self.vol.tasks_timer_armed = false;
                self.transfer_tasks(ctx);
            }
            TimerKind::DkgPool => self.dkg_pool_tick(ctx),
            TimerKind::ConsensusTick => self.consensus_tick(ctx),
            TimerKind::ConsensusFlush => self.consensus_flush(ctx),
            TimerKind::SwapTasks => self.swap_tasks(ctx),
            TimerKind::PollTransfers | TimerKind::WalletRetry | TimerKind::TheftTimeout | TimerKind::LightningPayerHtlc(_) => {}
        }
    }

    fn on_wallet_request(&mut self, ctx: &mut Ctx<'_>, from: NodeId, req: ReqId, body: WalletRequest) {
        let call = WalletCall { wallet: from, req };
        if self.serving(call) {
            // A duplicate (retrying transport) of a request a live session is serving: that
            // session answers it; a second session would race the first (two signing rounds on
            // the same nonces, a failed copy cancelling what the other commits).
            return;
        }
        if let Err(e) = self.authenticate(from, &body) {
            ctx.observe(Observation::Rejected { what: format!("{} {} from {from}", self.cfg.id, body.kind()), reason: e.clone() });
            return Self::reply_wallet(ctx, call, Err(e));
        }
        match body {
            WalletRequest::GenerateDepositAddress { identity, signing_key } => {
                self.generate_deposit_address(ctx, call, identity, signing_key)
            }
            WalletRequest::StartDepositTreeCreation { identity, keyshare, leaf, deposit_tx, vout, jobs } => {
                self.start_deposit_tree_creation(ctx, call, identity, keyshare, leaf, deposit_tx, vout, jobs)
            }
            WalletRequest::FinalizeNodeSignatures { intent, leaf, signed } => {
                let r = self.finalize_node_signatures(ctx, intent, leaf, signed);
                Self::reply_wallet(ctx, call, r.map(|()| WalletReply::Finalized));
            }
            WalletRequest::GetSigningCommitments { leaf, count } => self.get_signing_commitments(ctx, call, leaf, count),
            WalletRequest::StartTransfer { transfer, sender, receiver, expiry, package } => {
                self.start_transfer(ctx, call, transfer, sender, receiver, expiry, package, None)
            }
            WalletRequest::QueryTransfer { transfer } => {
                let outcome = self.query_transfer(transfer);
                Self::reply_wallet(ctx, call, Ok(WalletReply::Transfer { transfer, outcome }));
            }
            WalletRequest::QueryPendingTransfers { receiver } => {
                let transfers = self.query_pending_transfers(&receiver);
                Self::reply_wallet(ctx, call, Ok(WalletReply::PendingTransfers { transfers }));
            }
            WalletRequest::ClaimTweakKeys { transfer, receiver, leaves } => {
                let r = self.claim_tweak_keys(transfer, &receiver, leaves);
                Self::reply_wallet(ctx, call, r.map(|()| WalletReply::TweakStored));
            }
            WalletRequest::ClaimSignRefunds { transfer, receiver, leaves } => {
                self.claim_sign_refunds(ctx, call, transfer, receiver, leaves)
            }
            // Renew (operator/renew.rs).
            WalletRequest::RenewLeaf { identity, leaf, kind, jobs } => self.start_renew(ctx, call, identity, leaf, kind, jobs),
            WalletRequest::FinalizeRenew { identity, leaf, kind, signed } => {
                let r = self.finalize_renew(ctx, identity, leaf, kind, signed);
                Self::reply_wallet(ctx, call, r);
            }
            // Lightning (operator/preimage.rs).
            body @ (WalletRequest::StorePreimageShare(_) | WalletRequest::InitiatePreimageSwap { .. } | WalletRequest::QueryPreimage { .. }) => self.on_lightning_request(ctx, call, from, body),
            WalletRequest::SplitPrepare { identity, leaf, children } => self.split_prepare(ctx, call, identity, leaf, children),
            WalletRequest::SplitSign { identity, leaf, jobs } => self.split_sign(ctx, call, identity, leaf, jobs),
            WalletRequest::SplitFinalize { identity, leaf, signed } => {
                let r = self.split_finalize(ctx, identity, leaf, signed);
                Self::reply_wallet(ctx, call, r.map(|()| WalletReply::Finalized));
            }
            WalletRequest::AggregatePrepare { identity, leaf } => self.aggregate_prepare(ctx, call, identity, leaf),
            WalletRequest::AggregateSign { identity, leaf, jobs } => self.aggregate_sign(ctx, call, identity, leaf, jobs),
            WalletRequest::AggregateFinalize { identity, leaf, signed } => {
                let r = self.aggregate_finalize(ctx, identity, leaf, signed);
                Self::reply_wallet(ctx, call, r.map(|()| WalletReply::Finalized));
            }
            // Leaf swaps (operator/swap.rs).
            WalletRequest::Swap(r) => self.on_swap_request(ctx, call, r),
            // Cooperative exit (coop_exit.rs).
            WalletRequest::CooperativeExit { transfer, sender, receiver, expiry, package, exit_txid, connector_tx } => {
                self.cooperative_exit(ctx, call, transfer, sender, receiver, expiry, package, exit_txid, connector_tx)
            }
            WalletRequest::FinalizeCoopExit { transfer } => self.finalize_coop_exit(ctx, call, transfer),
            // Lightning send (preimage_send.rs).
            WalletRequest::ProvidePreimage { transfer, payment_hash, preimage } => self.provide_preimage(ctx, call, from, transfer, payment_hash, preimage),
            WalletRequest::ReturnLightningPayment { transfer, payment_hash } => self.return_lightning_payment(ctx, call, from, transfer, payment_hash),
        }
    }

    fn on_internal(&mut self, ctx: &mut Ctx<'_>, from: NodeId, req: ReqId, body: InternalRequest) {
        let NodeId::Operator(peer) = from else { return };
        if !self.cfg.directory.operators.contains_key(&peer) {
            return ctx.observe(Observation::Rejected { what: format!("{} {} from {from}", self.cfg.id, body.kind()), reason: "not an operator of this deployment".into() });
        }
        // Every request of a coordinator's session round has its own id; a reconciliation query
        // (two-phase commit) reuses one id and must be answered afresh each time.
        let cacheable = !matches!(body, InternalRequest::ConsensusQueryOutcome { .. });
        if let Some(reply) = self.vol.replies_sent.get(peer, req).filter(|_| cacheable) {
            // A resent request (resend_round) or a network duplicate: the same answer again.
            return ctx.send(from, Msg::InternalReply { req, body: Box::new(reply.clone()) });
        }
        let kind = body.kind();
        let signing = byzantine::signing_request(self, &body);
        let reply = match body {
            InternalRequest::DkgStart { batch, count } => return self.dkg_start(ctx, peer, batch, count),
            InternalRequest::DkgRound1 { batch, packages } => return self.dkg_round1(ctx, peer, batch, packages),
            InternalRequest::DkgRound2 { batch, packages } => return self.dkg_round2(ctx, peer, batch, packages),
            InternalRequest::DkgDone { batch, public_keys } => return self.dkg_done(ctx, peer, batch, public_keys),
            InternalRequest::MarkKeyshareForDeposit { keyshare, owner_identity, owner_signing_key } => {
                self.mark_keyshare_for_deposit(keyshare, owner_identity, owner_signing_key)
            }
            InternalRequest::FrostRound1 { keyshare, count } => self.frost_round1(ctx, keyshare, count),
            InternalRequest::FrostRound2 { keyshare, jobs } => self.frost_round2(ctx, keyshare, jobs),
            // Leaf swaps v2: round 2 under the swap's adaptor point (signer.rs).
            InternalRequest::FrostRound2Adaptor { keyshare, jobs, adaptors } => self.frost_round2_adaptor(ctx, keyshare, jobs, &adaptors),
            InternalRequest::InitiateTransfer { transfer, sender, receiver, expiry, package, signed_refunds } => {
                self.initiate_transfer(ctx, peer, transfer, sender, receiver, expiry, package, signed_refunds)
            }
            InternalRequest::SettleReceiverPrepare { transfer, attempt, tweak_digests } => {
                self.settle_receiver_prepare(transfer, attempt, &tweak_digests)
            }
            InternalRequest::ConsensusPrepare { flow, op } => return self.consensus_prepare(ctx, peer, req, flow, *op),
            InternalRequest::ConsensusQueryOutcome { flow } => self.consensus_query(peer, flow),
            InternalRequest::ReleasePreimageShare { transfer, payment_hash } => self.release_preimage_share(ctx, peer, transfer, payment_hash),
            InternalRequest::SplitReserve { parent, owner_identity, plan } => self.split_reserve(peer, parent, owner_identity, plan),
            InternalRequest::SplitRound1 { parent, counts } => self.split_round1(ctx, parent, counts),
            InternalRequest::SplitRound2 { parent, txs, jobs } => self.split_round2(ctx, parent, txs, jobs),
            InternalRequest::AggregateReserve { parent, owner_identity } => self.aggregate_reserve(peer, parent, owner_identity),
            InternalRequest::AggregateRound1 { parent, counts } => self.aggregate_round1(ctx, parent, counts),
            InternalRequest::AggregateRound2 { parent, txs, jobs } => self.aggregate_round2(ctx, parent, txs, jobs),
            // Cooperative exit (coop_exit.rs).
            InternalRequest::InitiateCoopExit { exit, init } => self.initiate_coop_exit(ctx, peer, exit, init),
            // Lightning send (preimage_send.rs).
            InternalRequest::InitiatePreimageSend { swap, init } => self.initiate_preimage_send_participant(ctx, peer, swap, init),
        };
        if let Err(e) = &reply {
            ctx.observe(Observation::Rejected { what: format!("{} internal request from {peer}", self.cfg.id), reason: e.clone() });
        }
        let Some(reply) = self.byzantine_reply(kind, reply) else { return };
        if cacheable {
            self.vol.replies_sent.insert(peer, req, reply.clone());
        }
        ctx.send(from, Msg::InternalReply { req, body: Box::new(reply) });
        self.byzantine_after_internal(ctx, signing);
    }

    /// spark-protocol §4.0 auth: a request that names a user identity must come from that user
    /// (the simulated network's `from` is the authenticated session). Requests naming none
    /// (queries by id) need no identity.
    fn authenticate(&self, from: NodeId, body: &WalletRequest) -> Result<(), String> {
        let claimed = match body {
            WalletRequest::GenerateDepositAddress { identity, .. } | WalletRequest::StartDepositTreeCreation { identity, .. } => identity,
            WalletRequest::StartTransfer { sender, .. } | WalletRequest::CooperativeExit { sender, .. } => sender,
            WalletRequest::ClaimTweakKeys { receiver, .. } | WalletRequest::ClaimSignRefunds { receiver, .. } => receiver,
            WalletRequest::RenewLeaf { identity, .. } | WalletRequest::FinalizeRenew { identity, .. } => identity,
            WalletRequest::SplitPrepare { identity, .. } | WalletRequest::SplitSign { identity, .. } | WalletRequest::SplitFinalize { identity, .. } => identity,
            WalletRequest::AggregatePrepare { identity, .. } | WalletRequest::AggregateSign { identity, .. } | WalletRequest::AggregateFinalize { identity, .. } => identity,
            _ => return Ok(()),
        };
        match from {
            NodeId::Wallet(w) if self.cfg.directory.wallets.get(&w) == Some(claimed) => Ok(()),
            _ => Err(format!("{from} is not authenticated as the identity the request names")),
        }
    }

    /// A live coordinator session is already serving this exact wallet request.
    fn serving(&self, call: WalletCall) -> bool {
        self.vol.sessions.values().any(|s| {
            let c = match &s.kind {
                SessionKind::DepositAddress(x) => x.call,
                SessionKind::DepositSign(x) => x.call,
                SessionKind::Commitments(x) => x.call,
                SessionKind::Send(x) => x.call,
                SessionKind::Claim(x) => x.call,
                SessionKind::Renew(x) => x.call,
                SessionKind::SplitPrepare(x) => x.call,
                SessionKind::SplitSign(x) => x.call,
                SessionKind::AggregatePrepare(x) => x.call,
            };
            c == call
        })
    }

    /// Identifiable abort: remember the culprit so the next signer sets leave it out.
    fn name_culprit(&mut self, ctx: &mut Ctx<'_>, culprit: OperatorId, reason: String) {
        if culprit == self.cfg.id {
            return;
        }
        let until = ctx.now + SUSPECT_FOR;
        if self.vol.suspects.insert(culprit, until).is_none_or(|old| old <= ctx.now) {
            ctx.observe(Observation::CulpritNamed { by: self.cfg.id, culprit, reason });
        }
    }

    /// A named culprit not yet forgiven.
    fn is_suspect(&self, op: OperatorId, now: Micros) -> bool {
        self.vol.suspects.get(&op).is_some_and(|until| *until > now)
    }
}

impl Node for Operator {
    fn handle(&mut self, ctx: &mut Ctx<'_>, input: Input) {
        match input {
            Input::Start => self.on_start(ctx),
            Input::Timer(t) => self.on_timer(ctx, t),
            Input::Block(b) => {
                self.on_block(ctx, &b);
                self.coop_exit_on_block(ctx, &b);
                self.lightning_send_on_block(ctx); // Lightning send: expiry (preimage_send.rs)
            }
            Input::Command(_) => {}
            Input::Message { from, msg } => {
                if self.byz.is_some() {
                    self.byzantine_on_message(ctx, &msg);
                }
                match msg {
                Msg::WalletRequest { req, body } => self.on_wallet_request(ctx, from, req, *body),
                Msg::Internal { req, body } => self.on_internal(ctx, from, req, *body),
                Msg::InternalReply { req, body } => self.on_internal_reply(ctx, from, req, *body),
                Msg::Gossip { id, body } => self.on_gossip(ctx, from, id, *body),
                Msg::GossipAck { id, applied } => self.on_gossip_ack(ctx, from, id, applied),
                Msg::Collude { req, body } => self.on_collude(ctx, from, req, *body),
                Msg::WalletReply { .. } | Msg::BroadcastResult { .. } | Msg::TransferEvent { .. } | Msg::ColludeReply { .. } | Msg::SspRequest { .. } | Msg::SspReply { .. } => {}
                }
            }
        }
        if self.byz.is_some() {
            self.byzantine_after_event();
        }
    }

    fn crash(&mut self) {
        self.vol = Volatile::default();
    }

    fn mark_synced(&mut self) {
        self.store.mark_synced();
    }

    fn crash_losing_unsynced(&mut self) {
        self.store.lose_unsynced();
        self.crash();
    }
}
