//! The wallet (user) as a pure state machine. It runs one operation at a time (deposit, send,
//! claim), queues workload commands behind it, looks for incoming transfers when idle, and
//! drives unilateral exits from block notifications.

mod aggregate;
mod claim;
mod coop_exit;
mod deposit;
mod device;
mod exit;
mod lightning;
// Lightning send (§4.8), user and SSP.
pub mod lightning_send;
// Watchtower and fees flow: CPFP packages through the P2A anchor.
mod fee_bump;
// Watchtower and fees flow: the old-owner exit race and the owner's defence.
mod race;
mod reorg;
mod renew;
mod send;
mod ssp;
mod ssp_lightning;
pub use ssp_lightning::{InvoiceState, LightningNetwork};
pub mod split;
mod swap;
mod ssp_coop_exit;
mod thief;

use crate::crypto::signing::{self, SecretNonce, SigningJob};
use crate::msg::OperatorSigningResult;
use crate::crypto::{PublicKey, Scalar, SecretKey};
use crate::msg::{Msg, NodeSet, RefundSet, ReqId, WalletReply, WalletRequest};
use crate::node::{Ctx, Input, Node, TimerKind};
use crate::observe::Observation;
use crate::params::{Directory, Params};
use crate::types::{LeafId, Micros, NodeId, OperatorId, TransferId, WalletId};
use bitcoin::secp256k1::schnorr;
use bitcoin::{OutPoint, Txid, TxOut};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// What the workload asks a wallet to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Deposit `sats` from the wallet's L1 coins into a new leaf.
    Deposit { sats: u64 },
    /// Send one available leaf to `receiver`.
    Send { receiver: WalletId },
    /// Unilaterally exit one available leaf.
    Exit,
    /// Former owner turned thief: spend a leaf it sent away, with colluding operators' old key
    /// shares (wallet/thief.rs; spark-protocol §5.1).
    Steal,
    /// Renew (wallet/renew.rs): renew one available leaf now, with this variant (None: the
    /// spark-protocol §4.4 choice, skipped when no leaf is due).
    Renew { kind: Option<crate::tx::renew::RenewKind> },
    /// Lightning receive (wallet/lightning.rs): be paid `sats` over Lightning through the SSP.
    LightningReceive { sats: u64 },
    /// SSP only (wallet/ssp_lightning.rs): run the preimage swap for a held payer HTLC.
    LightningSwap { payment_hash: [u8; 32] },
    /// Split (wallet/split.rs): split one available leaf into child leaves worth `values` (its
    /// value exactly), or into its power-of-two denominations when `values` is empty.
    Split { values: Vec<u64> },
    /// Aggregate (wallet/aggregate.rs): fold the children of a leaf this wallet split back into
    /// it, once it holds every one of them again.
    Aggregate,
    /// Leaf swaps (wallet/swap.rs): swap one leaf worth the targets' sum for SSP leaves of
    /// exactly these (power-of-two) denominations.
    Swap { target_denominations: Vec<u64>, version: crate::msg::SwapVersion },
    /// Leaf swaps, SSP side: counter-transfer these reserved leaves to `user` for `primary`.
    ServeSwap { primary: TransferId, user: WalletId, leaves: Vec<LeafId>, adaptor: Option<Box<crate::msg::ssp::SwapAdaptor>> },
    /// Leaf swaps, SSP side after a crash: follow the swap its reserved leaves were held for.
    FollowSwap { primary: TransferId, leaves: Vec<LeafId> },
    /// Watchtower and fees flow: a former owner broadcasts the node tx and the stale refund it
    /// holds for a leaf it sent away, racing the current owner (wallet/race.rs; §5.2 item 1).
    RaceStaleRefund,
    /// Withdraw one leaf to the wallet's L1 key through the SSP (wallet/coop_exit.rs);
    /// `stall`: never release the key tweak after the SSP broadcast (a stalling user).
    CoopExit { stall: bool },
    /// After a crash mid-send (wallet/send.rs): ask the coordinator what became of the transfer
    /// whose package may have reached it, instead of leaving the leaf `Sending` for good.
    ResolveSend { receiver: WalletId, leaf: LeafId, transfer: TransferId, receiver_key: PublicKey, expiry: Micros, attempt: u8 },
    /// Lightning send (wallet/lightning_send.rs): pay an invoice of `sats` through the SSP.
    LightningSend { sats: u64 },
    /// Lightning send, SSP only: pay (or finish paying) the invoice with this hash.
    LightningPay { payment_hash: [u8; 32] },
    /// Renew/send race (wallet/device.rs): the user's second device syncs its leaf cache now.
    DeviceSync,
    /// Renew/send race: the second device sends a leaf to `receiver` from its (maybe stale) cache.
    DeviceSend { receiver: WalletId },
    /// Renew/send race: renew the first available leaf now with the §4.4 variant for its node
    /// CSV, without waiting for the < 200 trigger (the operators still require ≤ 300).
    RenewNow,
}

/// Failed operations are retried this many times before the command is dropped.
const MAX_ATTEMPTS: u8 = 5;
const RETRY_DELAY: Micros = Micros::from_secs(2);
/// Bound on queued commands (TigerBeetle style).
const MAX_QUEUE: usize = 10_000;

#[derive(Clone)]
pub struct WalletConfig {
    pub id: WalletId,
    pub identity: SecretKey,
    /// The key of the wallet's own L1 coins.
    pub l1_key: SecretKey,
    pub coordinator: OperatorId,
    pub params: Arc<Params>,
    pub directory: Arc<Directory>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafState {
    /// Signed exit held, deposit broadcast, not yet confirmed.
    PendingDeposit { deposit_txid: Txid },
    Available,
    Sending(TransferId),
    Exiting(exit::ExitProgress),
    Exited,
    /// Split (wallet/split.rs): a split of this leaf is planned or in flight.
    Splitting,
    /// Split: the leaf is a branch now; its children carry its value.
    Splitted,
}

#[derive(Clone, Debug)]
pub struct WalletLeaf {
    pub signing_secret: SecretKey,
    pub value_sats: u64,
    pub verifying_key: PublicKey,
    pub deposit_outpoint: OutPoint,
    pub nodes: NodeSet,
    pub refunds: RefundSet,
    pub state: LeafState,
    /// Node layers above `nodes`, root first: the exit chain is `ancestors` then `nodes`
    /// (`msg::exit_layers`, spark-protocol §4.6).
    pub ancestors: Vec<NodeSet>,
}

impl WalletLeaf {
    /// Every node layer of the leaf's exit chain, root first; the refunds spend the last.
    pub fn exit_layers(&self) -> impl Iterator<Item = &NodeSet> {
        crate::msg::exit_layers(&self.ancestors, &self.nodes)
    }
}

enum Op {
    Deposit(Box<deposit::DepositOp>),
    Send(Box<send::SendOp>),
    Claim(Box<claim::ClaimOp>),
    Poll,
    /// Renew (wallet/renew.rs).
    Renew(Box<renew::RenewOp>),
    /// Lightning (wallet/lightning.rs, wallet/ssp_lightning.rs).
    Lightning(Box<lightning::LnOp>),
    Split(Box<split::SplitOp>),
    Aggregate(Box<aggregate::AggregateOp>),
    /// Leaf swaps (wallet/swap.rs): the user's side and the SSP's side.
    Swap(Box<swap::SwapOp>),
    Serve(Box<swap::ServeOp>),
    /// Cooperative exit (coop_exit.rs).
    CoopExit(Box<coop_exit::CoopExitOp>),
}

pub struct Wallet {
    cfg: WalletConfig,
    l1_coins: Vec<(OutPoint, TxOut)>,
    leaves: BTreeMap<LeafId, WalletLeaf>,
    queue: VecDeque<(Command, u8)>,
    op: Option<(u64, Op)>,
    /// Operators still to answer the current request (claim fans out to all of them).
    waiting: BTreeSet<OperatorId>,
    next_req: u64,
    /// Claims in progress survive a failed attempt: a retry reuses the same tweak.
    claims: BTreeMap<TransferId, claim::ClaimState>,
    claimed: BTreeSet<TransferId>,
    poll_backoff: u64,
    poll_armed: bool,
    /// A `TransferEvent` arrived while the wallet was busy: poll as soon as it is idle, not at
    /// the next (possibly backed-off) poll timer.
    event_pending: bool,
    /// A `WalletRetry` timer is pending (at most one: a retry only calls `start_next`).
    retry_armed: bool,
    /// After a failed claim attempt, the next one waits until then.
    claim_retry_at: Micros,
    height: u32,
    /// Leaves this wallet sent away, with their old signing keys (an old owner never forgets;
    /// only a thief uses them: wallet/thief.rs).
    sent_away: BTreeMap<LeafId, WalletLeaf>,
    theft: Option<thief::Theft>,
    /// Recent blocks and what was learned from them, to undo a reorg (`reorg.rs`).
    chain: reorg::ChainView,
    /// SSP: the simulated Lightning network behind it (wallet/ssp_lightning.rs).
    ln: ssp_lightning::LightningNetwork,
    /// Split (wallet/split.rs): planned splits, kept with the keys so a retry asks for the same.
    split_plans: BTreeMap<LeafId, split::SplitPlan>,
    /// Split: each leaf this wallet split → its children (for an aggregation).
    split_children: BTreeMap<LeafId, Vec<LeafId>>,
    /// Aggregate: signed aggregations not yet acknowledged (new parent key, signed txs), kept
    /// so a retry only finalizes again.
    aggregates_signed: BTreeMap<LeafId, (SecretKey, Vec<bitcoin::Transaction>)>,
    /// Watchtower and fees flow: fee-bumping children in flight and the feerate (`fee_bump.rs`).
    fees: fee_bump::FeeBumper,
    /// Watchtower and fees flow: this wallet's stale-refund race, if it runs one (`race.rs`).
    race: Option<race::Race>,
    /// Cooperative exits in progress, as user and as SSP (coop_exit.rs, ssp_coop_exit.rs).
    coop: coop_exit::CoopExits,
    /// Renew/send race (device.rs): the second device's leaf cache, once it synced.
    device: Option<device::Device>,
}

impl Wallet {
    pub fn new(cfg: WalletConfig) -> Wallet {
        Wallet {
            cfg,
            l1_coins: Vec::new(),
            leaves: BTreeMap::new(),
            queue: VecDeque::new(),
            op: None,
            waiting: BTreeSet::new(),
            next_req: 0,
            claims: BTreeMap::new(),
            claimed: BTreeSet::new(),
            poll_backoff: 1,
            poll_armed: false,
            event_pending: false,
            retry_armed: false,
            claim_retry_at: Micros::ZERO,
            height: 0,
            sent_away: BTreeMap::new(),
            theft: None,
            chain: reorg::ChainView::default(),
            ln: ssp_lightning::LightningNetwork::default(),
            split_plans: BTreeMap::new(),
            split_children: BTreeMap::new(),
            aggregates_signed: BTreeMap::new(),
            fees: fee_bump::FeeBumper::default(),
            race: None,
            coop: coop_exit::CoopExits::default(),
            device: None,
        }
    }
    pub fn id(&self) -> WalletId {
        self.cfg.id
    }
    pub fn identity_public(&self) -> PublicKey {
        self.cfg.identity.public_key(crate::crypto::secp())
    }
    /// Give the wallet an L1 coin (the simulator funds wallets at genesis).
    pub fn add_l1_coin(&mut self, outpoint: OutPoint, output: TxOut) {
        self.fee_coin_confirmed(outpoint);
        self.l1_coins.push((outpoint, output));
    }
    pub fn leaves(&self) -> &BTreeMap<LeafId, WalletLeaf> {
        &self.leaves
    }
    pub fn l1_key_public(&self) -> PublicKey {
        self.cfg.l1_key.public_key(crate::crypto::secp())
    }
    /// Work the wallet still owes (queued commands, the operation in flight but a poll, claims
    /// not finished): the checker's liveness phase waits for 0.
    pub fn pending_work(&self) -> usize {
        // A stale-refund race (race.rs) runs until the node output is spent.
        self.queue.len() + self.op.iter().filter(|(_, o)| !matches!(o, Op::Poll)).count() + self.claims.len() + usize::from(self.race.is_some()) + self.coop.pending()
    }
    /// A claim attempt failed: back off before the next one (its state is kept for the retry).
    fn claim_failed(&mut self, ctx: &mut Ctx<'_>) {
        self.claim_retry_at = ctx.now + RETRY_DELAY;
        self.finish(ctx);
        self.arm_poll(ctx);
    }

    /// Send a request for the current operation and arm its timeout.
    fn request(&mut self, ctx: &mut Ctx<'_>, to: OperatorId, body: WalletRequest) -> ReqId {
        let session = self.op.as_ref().map(|(s, _)| *s).unwrap_or_default();
        let req = ReqId { session, phase: 0 };
        self.waiting.insert(to);
        ctx.send(NodeId::Operator(to), Msg::WalletRequest { req, body: Box::new(body) });
        req
    }

    fn arm_timeout(&self, ctx: &mut Ctx<'_>) {
        if let Some((s, _)) = &self.op {
            ctx.set_timer(self.cfg.params.request_timeout, TimerKind::RequestTimeout(*s));
        }
    }

    /// Start a new request round of the current operation under a fresh id. A reply or a
    /// timeout carries the id of its round, so those of earlier rounds (a duplicated or late
    /// reply, a timeout armed before the last reply) are recognisably stale and ignored: one
    /// live timeout per operation, and no reply is ever read as the answer to a later stage.
    fn new_round(&mut self) {
        if let Some((id, _)) = &mut self.op {
            *id = self.next_req;
            self.next_req += 1;
        }
        self.waiting.clear();
    }

    fn begin(&mut self, op: Op) -> u64 {
        let id = self.next_req;
        self.next_req += 1;
        self.op = Some((id, op));
        self.waiting.clear();
        id
    }

    /// The current operation ended; start the next command, if any.
    fn finish(&mut self, ctx: &mut Ctx<'_>) {
        self.op = None;
        self.waiting.clear();
        self.start_next(ctx);
    }

    /// The current operation failed: retry its command later, or give up after MAX_ATTEMPTS.
    fn fail(&mut self, ctx: &mut Ctx<'_>, retry: Option<(Command, u8)>, reason: String) {
        match retry {
            Some((cmd, attempt)) if attempt + 1 < MAX_ATTEMPTS => {
                self.queue.push_front((cmd, attempt + 1));
                self.op = None;
                self.waiting.clear();
                // Backed off (2, 4, 8, 16 s: 30 s in all) so the tries span one gossip retry
                // period: under loss a send is refused while a participant still holds the leaf
                // TRANSFER_LOCKED by the finished previous transfer whose FinalizeTransfer
                // gossip was lost; five tries 2 s apart gave up before the re-push (race70).
                self.arm_retry(ctx, RETRY_DELAY * (1u64 << attempt.min(4)));
            }
            _ => {
                ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason });
                self.finish(ctx);
            }
        }
    }

    fn start_next(&mut self, ctx: &mut Ctx<'_>) {
        // A pending WalletRetry is a backoff: the queue waits for it. Starting early from a poll
        // or a new command burned a deposit's eight backed-off tries in 28 s (swarm seed 2: the
        // pool was empty for the 29 s an operator was partitioned, and the wallet gave up).
        if self.op.is_some() || self.retry_armed {
            return;
        }
        if let Some((cmd, attempt)) = self.queue.pop_front() {
            self.poll_backoff = 1;
            match cmd {
                Command::Deposit { sats } => self.start_deposit(ctx, sats, attempt),
                // spark-protocol §4.4: renew a leaf that is running out before every send.
                Command::Send { receiver } => match self.renew_due() {
                    Some((leaf, kind)) => self.start_renew(ctx, leaf, kind, (Command::Send { receiver }, attempt)),
                    None => self.start_send(ctx, receiver, attempt),
                },
                Command::Exit => {
                    self.start_exit(ctx);
                    self.start_next(ctx);
                }
                Command::Steal => {
                    self.start_theft(ctx);
                    self.start_next(ctx);
                }
                Command::Renew { kind } => self.start_renew_command(ctx, kind, attempt),
                Command::LightningReceive { sats } => self.start_lightning_receive(ctx, sats, attempt),
                Command::LightningSwap { payment_hash } => self.start_preimage_swap(ctx, payment_hash, attempt),
                Command::Split { values } => self.start_split(ctx, values, attempt),
                Command::Aggregate => self.start_aggregate(ctx, attempt),
                Command::Swap { target_denominations, version } => self.start_swap(ctx, target_denominations, version),
                Command::ServeSwap { primary, user, leaves, adaptor } => self.start_serve_swap(ctx, primary, user, leaves, adaptor),
                Command::FollowSwap { primary, leaves } => self.start_follow_swap(ctx, primary, leaves),
                Command::RaceStaleRefund => {
                    self.start_race(ctx);
                    self.start_next(ctx);
                }
                Command::CoopExit { stall } => self.start_coop_exit(ctx, stall, attempt),
                Command::ResolveSend { receiver, leaf, transfer, receiver_key, expiry, attempt } => self.start_resolve_send(ctx, receiver, leaf, (transfer, receiver_key, expiry), attempt),
                // Lightning send: renew a leaf that is running out first, as before every send.
                Command::LightningSend { sats } => match self.renew_due() {
                    Some((leaf, kind)) => self.start_renew(ctx, leaf, kind, (Command::LightningSend { sats }, attempt)),
                    None => self.start_lightning_send(ctx, sats, attempt),
                },
                Command::LightningPay { payment_hash } => self.start_lightning_pay(ctx, payment_hash),
                Command::DeviceSync => self.device_sync(ctx),
                Command::DeviceSend { receiver } => self.start_device_send(ctx, receiver, attempt),
                Command::RenewNow => self.start_renew_now(ctx, attempt),
            }
        } else if let Some(t) = self.next_claimable() {
            if ctx.now >= self.claim_retry_at {
                self.start_claim(ctx, t);
            } else {
                self.arm_retry(ctx, self.claim_retry_at.saturating_sub(ctx.now));
            }
        } else if std::mem::take(&mut self.event_pending) {
            self.on_poll(ctx);
        }
    }

    fn arm_retry(&mut self, ctx: &mut Ctx<'_>, after: Micros) {
        if !self.retry_armed {
            self.retry_armed = true;
            ctx.set_timer(after, TimerKind::WalletRetry);
        }
    }

    fn arm_poll(&mut self, ctx: &mut Ctx<'_>) {
        if !self.poll_armed {
            self.poll_armed = true;
            ctx.set_timer(self.cfg.params.wallet_poll * self.poll_backoff, TimerKind::PollTransfers);
        }
    }

    /// The poll timer fired (the only place that disarms it, so at most one is ever pending).
    fn on_poll_timer(&mut self, ctx: &mut Ctx<'_>) {
        self.poll_armed = false;
        self.on_poll(ctx);
    }

    fn on_poll(&mut self, ctx: &mut Ctx<'_>) {
        if self.op.is_none() && self.queue.is_empty() {
            self.begin(Op::Poll);
            let receiver = self.identity_public();
            let to = self.cfg.coordinator;
            self.request(ctx, to, WalletRequest::QueryPendingTransfers { receiver });
            self.arm_timeout(ctx);
        } else {
            // Busy, or work queued (after a restart nothing else may start it).
            self.start_next(ctx);
            self.arm_poll(ctx);
        }
    }

    fn on_reply(&mut self, ctx: &mut Ctx<'_>, from: NodeId, req: ReqId, body: Result<WalletReply, String>) {
        let NodeId::Operator(op) = from else { return };
        let Some((session, _)) = &self.op else { return };
        if *session != req.session || !self.waiting.remove(&op) {
            return; // stale
        }
        let Some((session, current)) = self.op.take() else { return };
        match current {
            Op::Poll => {
                self.op = None;
                self.on_poll_reply(ctx, body);
            }
            Op::Deposit(d) => self.deposit_reply(ctx, session, *d, body),
            Op::Send(s) => self.send_reply(ctx, session, *s, body),
            Op::Claim(c) => self.claim_reply(ctx, session, op, *c, body),
            Op::Renew(r) => self.renew_reply(ctx, session, *r, body),
            Op::Lightning(l) => self.lightning_reply(ctx, session, op, *l, body),
            Op::Split(s) => self.split_reply(ctx, session, *s, body),
            Op::Aggregate(a) => self.aggregate_reply(ctx, session, *a, body),
            Op::Swap(s) => self.swap_reply(ctx, session, *s, body),
            Op::Serve(s) => self.serve_reply(ctx, session, *s, body),
            Op::CoopExit(c) => self.coop_exit_reply(ctx, session, *c, body),
        }
    }

    fn on_timeout(&mut self, ctx: &mut Ctx<'_>, session: u64) {
        let Some((s, _)) = &self.op else { return };
        if *s != session {
            return;
        }
        let Some((_, current)) = self.op.take() else { return };
        match current {
            Op::Poll => {
                self.op = None;
                self.poll_backoff = (self.poll_backoff * 2).min(64);
                self.arm_poll(ctx);
            }
            Op::Deposit(d) => {
                // Backed off like a refused deposit: a timeout usually means an operator is
                // unreachable for a while (all-operator fan-out), not that asking again at once helps.
                let retry = Some((Command::Deposit { sats: d.sats }, d.attempt));
                self.fail_deposit(ctx, retry, "deposit timed out".into());
            }
            Op::Send(s) => self.send_timeout(ctx, session, *s),
            Op::Claim(c) => {
                ctx.observe(Observation::Rejected { what: format!("{} claim {}", self.cfg.id, c.transfer), reason: "timed out; will retry".into() });
                self.claim_failed(ctx);
            }
            Op::Renew(r) => self.renew_timeout(ctx, session, *r),
            Op::Lightning(l) => self.lightning_timeout(ctx, session, *l),
            Op::Split(s) => self.split_timeout(ctx, *s),
            Op::Aggregate(a) => self.aggregate_timeout(ctx, *a),
            Op::Swap(s) => self.swap_timeout(ctx, session, *s),
            Op::Serve(s) => self.serve_timeout(ctx, session, *s),
            Op::CoopExit(c) => self.coop_exit_timeout(ctx, session, *c),
        }
    }

    fn on_block(&mut self, ctx: &mut Ctx<'_>, block: &crate::chain::BlockInfo) {
        if !self.follow_chain(ctx, block) {
            return;
        }
        self.height = block.height;
        let txids: BTreeSet<Txid> = block.txs.iter().map(|t| t.compute_txid()).collect();
        let me = self.cfg.id;
        for (id, leaf) in self.leaves.iter_mut() {
            if let LeafState::PendingDeposit { deposit_txid } = &leaf.state {
                if txids.contains(deposit_txid) {
                    self.chain.record(block.height, reorg::Learned::Deposit { leaf: *id, txid: *deposit_txid, value_sats: leaf.value_sats });
                    leaf.state = LeafState::Available;
                    ctx.observe(Observation::DepositConfirmed { wallet: me, leaf: *id, value_sats: leaf.value_sats });
                }
            }
        }
        self.reconfirm_deposits(ctx, block.height, &txids);
        self.fee_bump_block(&block.txs);
        self.race_block(ctx, &block.txs, block.height);
        self.advance_exits(ctx, &txids);
        self.coop_exit_on_block(ctx, block);
        self.ssp_coop_exit_on_block(ctx, block);
        // New funds may unblock queued work.
        self.start_next(ctx);
    }
}

/// One tx the user co-signs operator-first (spark-protocol §2.4a): the job (its operator
/// commitments arrive with the operators' shares) and the user's nonce for it.
pub(crate) struct PendingJob {
    tx: bitcoin::Transaction,
    job: SigningJob,
    nonce: SecretNonce,
}

/// A fresh user nonce and a signing job for each tx, spending `prevouts` (same order).
pub(crate) fn prepare_jobs(secret: &SecretKey, verifying_key: PublicKey, txs: Vec<bitcoin::Transaction>, prevouts: &[Vec<TxOut>], rng: &mut rand_chacha::ChaCha20Rng) -> Result<(Vec<PendingJob>, Vec<crate::msg::UserJob>), String> {
    let user_public_key = secret.public_key(crate::crypto::secp());
    let mut jobs = Vec::new();
    let mut user_jobs = Vec::new();
    for (tx, prev) in txs.into_iter().zip(prevouts) {
        let (nonce, user_commitment) = signing::commit(&scalar_of(secret), rng);
        let message = crate::tx::sighash::key_spend_sighash(&tx, 0, prev).map_err(|e| e.to_string())?;
        let job = SigningJob { message, verifying_key, user_public_key, operator_commitments: Default::default(), user_commitment: user_commitment.clone() };
        user_jobs.push(crate::msg::UserJob { tx: tx.clone(), user_commitment });
        jobs.push(PendingJob { tx, job, nonce });
    }
    Ok((jobs, user_jobs))
}

impl Wallet {
    /// Add the user's share to each operator result, aggregate, and put the signature in the
    /// tx's witness. Reports every user nonce it spends (I-11).
    pub(crate) fn cosign_all(&self, ctx: &mut Ctx<'_>, secret: &SecretKey, jobs: Vec<PendingJob>, results: Vec<OperatorSigningResult>) -> Result<Vec<bitcoin::Transaction>, String> {
        if results.len() != jobs.len() {
            return Err(format!("{} signing results for {} jobs", results.len(), jobs.len()));
        }
        let mut signed = Vec::with_capacity(jobs.len());
        for (PendingJob { mut tx, job, nonce }, result) in jobs.into_iter().zip(results) {
            let (message, commitment) = (job.message, crate::crypto::identity::sha256(&[&job.user_commitment.0]));
            let sig = cosign(job, secret, &nonce, &result)?;
            ctx.observe(Observation::NonceUsed { signer: self.cfg.id.to_string(), commitment, message });
            tx.input[0].witness = crate::tx::sighash::key_spend_witness(&sig);
            signed.push(tx);
        }
        Ok(signed)
    }
}

/// The user's half of an operator-first signing: add the user's share and aggregate.
pub(crate) fn cosign(mut job: SigningJob, secret: &SecretKey, nonce: &SecretNonce, result: &OperatorSigningResult) -> Result<schnorr::Signature, String> {
    job.operator_commitments = result.operator_commitments.clone();
    let user_share = signing::sign_as_user(&job, secret, nonce).map_err(|e| e.to_string())?;
    signing::aggregate(&job, &result.operator_shares, &user_share, &result.operator_public_shares).map_err(|e| e.to_string())
}

/// Feldman-split a key tweak among the operators (t-of-n) with every operator's public share
/// tweak δ_i·G, as both the sender's and the receiver's tweak need (spark-protocol §2.5).
pub(crate) fn split_tweak(params: &Params, delta: &Scalar, rng: &mut rand_chacha::ChaCha20Rng) -> Result<(Vec<crate::crypto::vss::VssShare>, BTreeMap<OperatorId, PublicKey>), String> {
    let shares = crate::crypto::vss::split_with_proofs(delta, params.threshold, params.operators, rng).map_err(|e| e.to_string())?;
    let public = params
        .operator_ids()
        .zip(&shares)
        .map(|(op, s)| crate::crypto::curve::base_mul(&s.share).map(|pk| (op, pk)).ok_or("zero share"))
        .collect::<Result<_, _>>()?;
    Ok((shares, public))
}

pub(crate) fn scalar_of(sk: &SecretKey) -> Scalar {
    Scalar::from_secret_key(sk)
}

impl Node for Wallet {
    fn handle(&mut self, ctx: &mut Ctx<'_>, input: Input) {
        match input {
            Input::Start => {
                self.poll_armed = false;
                self.arm_poll(ctx);
            }
            Input::Command(cmd) => {
                if self.queue.len() < MAX_QUEUE {
                    self.queue.push_back((cmd, 0));
                } else {
                    ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: "command queue full".into() });
                }
                self.start_next(ctx);
            }
            Input::Timer(TimerKind::PollTransfers) => self.on_poll_timer(ctx),
            Input::Timer(TimerKind::WalletRetry) => {
                self.retry_armed = false;
                self.start_next(ctx);
            }
            Input::Timer(TimerKind::RequestTimeout(s)) => self.on_timeout(ctx, s),
            Input::Timer(TimerKind::TheftTimeout) => self.on_theft_timeout(ctx),
            Input::Timer(TimerKind::LightningPayerHtlc(h)) => self.on_payer_htlc(ctx, h),
            Input::Timer(_) => {}
            Input::Block(b) => self.on_block(ctx, &b),
            Input::Message { from, msg } => match msg {
                Msg::WalletReply { req, body } => self.on_reply(ctx, from, req, *body),
                Msg::TransferEvent { .. } => {
                    // Something to claim: look now rather than at the next (backed-off) poll.
                    self.poll_backoff = 1;
                    if self.op.is_none() && self.queue.is_empty() {
                        self.on_poll(ctx);
                    } else {
                        self.event_pending = true;
                    }
                }
                Msg::ColludeReply { body, .. } => self.on_collude_reply(ctx, from, *body),
                Msg::SspRequest { req, body } => self.on_ssp_request(ctx, from, req, *body),
                // Each flow that waits on the SSP checks the reply against its own op and round.
                Msg::SspReply { req, body } => match &self.op {
                    Some((_, Op::Swap(_))) => self.swap_on_ssp_reply(ctx, from, req, *body),
                    Some((_, Op::CoopExit(_))) => self.coop_on_ssp_reply(ctx, from, req, *body),
                    _ => self.lightning_ssp_reply(ctx, from, req, *body),
                },
                Msg::BroadcastResult { txid, result: Err(reason) } => {
                    self.fee_bump_refused(&txid, &reason);
                    self.race_broadcast_refused(&txid, &reason);
                    self.exit_broadcast_refused(&txid, &reason);
                    self.deposit_broadcast_refused(&txid);
                    ctx.observe(Observation::Rejected { what: format!("{} broadcast {}", self.cfg.id, hex::encode(&txid[..4])), reason });
                }
                _ => {}
            },
        }
    }

    /// A wallet's keys and leaves are its backup (seed + exit data): only the operation in
    /// flight is lost.
    fn crash(&mut self) {
        // Leaf swaps (wallet/swap.rs): the SSP follows the swaps its reserved leaves were for.
        self.requeue_swaps();
        if let Some(resolve) = self.send_to_resolve() {
            self.queue.push_front((resolve, 0));
        }
        // Lightning send: the SSP resumes payments that are not final.
        self.requeue_lightning_pays();
        self.op = None;
        self.waiting.clear();
        self.poll_armed = false;
        self.retry_armed = false;
    }
}
