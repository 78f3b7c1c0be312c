//! Cooperative exit, user side (spark-protocol §4.5): withdraw one leaf to the wallet's L1 key
//! through the SSP.
//! 1. Fee quote from the SSP.
//! 2. `requestCoopExit` → the SSP's connector tx (it spends the unbroadcast exit tx paying us).
//! 3. Operator nonce commitments, connector refunds (two inputs, CSV decremented, paying the
//!    SSP) signed user-first, the key tweak to the SSP, and `cooperative_exit_v2` → the
//!    operators' signed refunds.
//! 4. `FinalizeCoopExit` (releases the key tweak), then `completeCoopExit` to the SSP, which
//!    broadcasts the exit tx.
//!
//! Afterwards the wallet watches the chain: the exit tx confirming pays it (the leaf is the
//! SSP's); the transfer coming back RETURNED after its expiry (the SSP never broadcast) gives the
//! leaf back, and the wallet exits it unilaterally with its previous refund.
//!
//! A stalling user (`Command::CoopExit { stall: true }`) skips step 4's finalize: it tells the
//! SSP to go ahead but never releases its key tweak, so the SSP must fall back on its connector
//! refunds (ssp_coop_exit.rs).
use super::{Command, LeafState, Op, Wallet};
use crate::crypto::identity::sign_digest;
use crate::crypto::signing::NonceCommitment;
use crate::msg::ssp::CoopExitLeaf;
use crate::msg::{transfer_package_digest, ReqId, SspReply, SspRequest, SspService, TransferLeafPackage, TransferOutcome, TransferPackage, WalletReply, WalletRequest};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::operator::coop_exit::{check_connector_tx, connector_refunds};
use crate::tx::template;
use crate::types::{LeafId, Micros, NodeId, OperatorId, TransferId};
use bitcoin::{OutPoint, Transaction, TxOut, Txid};
use rand_core::RngCore;
use std::collections::BTreeMap;

/// How long the operators wait for the exit tx before they return the transfer: long enough for
/// the exit tx to confirm and reach its 6 confirmations at 10-minute blocks.
pub const COOP_EXIT_EXPIRY: Micros = Micros::from_secs(4 * 3600);
/// Bound on re-sent requests of one stage (a coordinator that is down for a long while).
const MAX_RESENDS: u32 = 500;

pub(super) struct CoopExitOp {
    attempt: u8,
    stall: bool,
    leaf: LeafId,
    exit_id: TransferId,
    resends: u32,
    stage: Stage,
}

enum Stage {
    Quote,
    Offer { fee_sats: u64 },
    Commitments { fee_sats: u64, exit_txid: Txid, connector_tx: Transaction },
    Start { request: WalletRequest, watch: CoopWatch, prevouts: [Vec<TxOut>; 3] },
    Finalize { watch: CoopWatch, refunds: crate::msg::RefundSet },
    Complete { watch: CoopWatch },
    /// The exit is past its expiry without a payout: ask the coordinator what became of it.
    Check,
}

/// A cooperative exit waiting for its payout (or for its transfer to come back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoopWatch {
    pub transfer: TransferId,
    pub exit_txid: Txid,
    pub expiry: Micros,
    pub payout_sats: u64,
}

impl Wallet {
    pub(super) fn start_coop_exit(&mut self, ctx: &mut Ctx<'_>, stall: bool, attempt: u8) {
        let p = &self.cfg.params;
        let min = p.ssp_fees.coop_exit_min_sats;
        let leaf = self.leaves.iter().find(|(_, l)| l.state == LeafState::Available && l.value_sats >= min && l.refunds.sequences().is_ok_and(|(cur, _)| p.next_refund_sequences(cur).is_ok()));
        let Some((leaf, l)) = leaf else {
            ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: format!("coop exit: no available leaf of at least {min} sats with timelock left") });
            return self.start_next(ctx);
        };
        let (leaf, value_sats) = (*leaf, l.value_sats);
        let mut id = [0u8; 16];
        ctx.rng.fill_bytes(&mut id);
        self.begin(Op::CoopExit(Box::new(CoopExitOp { attempt, stall, leaf, exit_id: TransferId(id), resends: 0, stage: Stage::Quote })));
        if self.ssp_request(ctx, SspRequest::Quote { service: SspService::CoopExit, amount_sats: value_sats }).is_none() {
            return self.fail(ctx, None, "coop exit: the deployment has no service provider".into());
        }
        self.arm_timeout(ctx);
    }

    /// The SSP answered a request of the current operation.
    pub(super) fn coop_on_ssp_reply(&mut self, ctx: &mut Ctx<'_>, from: NodeId, req: ReqId, body: Result<SspReply, String>) {
        if self.cfg.directory.ssp.map(NodeId::Wallet) != Some(from) {
            return;
        }
        match &self.op {
            Some((s, Op::CoopExit(_))) if *s == req.session => {}
            _ => return, // stale
        }
        let Some((session, Op::CoopExit(c))) = self.op.take() else { return };
        self.coop_exit_ssp_reply(ctx, session, *c, body);
    }

    fn coop_exit_ssp_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut c: CoopExitOp, body: Result<SspReply, String>) {
        let retry = Some((Command::CoopExit { stall: c.stall }, c.attempt));
        match (&c.stage, body) {
            (Stage::Quote, Ok(SspReply::Quote { fee_sats, .. })) => {
                let Some(value) = self.leaves.get(&c.leaf).map(|l| l.value_sats) else { return self.fail(ctx, retry, "coop exit: leaf vanished".into()) };
                c.stage = Stage::Offer { fee_sats };
                let withdrawal = template::p2tr_script(&self.l1_key_public());
                let body = SspRequest::CoopExit { exit_id: c.exit_id, leaf: c.leaf, value_sats: value, fee_sats, withdrawal };
                self.coop_exit_next(ctx, session, c, |w, ctx| w.ssp_request(ctx, body).map(|_| ()));
            }
            (Stage::Offer { fee_sats }, Ok(SspReply::CoopExit { exit_id, exit_txid, connector_tx })) if exit_id == c.exit_id => {
                if let Err(e) = check_connector_tx(&exit_txid, &connector_tx, 1) {
                    return self.fail(ctx, retry, format!("coop exit: SSP's connector tx: {e}"));
                }
                c.stage = Stage::Commitments { fee_sats: *fee_sats, exit_txid, connector_tx };
                let (to, leaf) = (self.cfg.coordinator, c.leaf);
                self.coop_exit_next(ctx, session, c, |w, ctx| {
                    w.request(ctx, to, WalletRequest::GetSigningCommitments { leaf, count: 3 });
                    Some(())
                });
            }
            (Stage::Complete { watch }, Ok(SspReply::CoopExitCompleted { exit_id })) if exit_id == c.exit_id => {
                let watch = watch.clone();
                self.coop_exit_watch(c.leaf, watch);
                self.finish(ctx);
            }
            // The SSP refused to complete: the operators return the transfer at its expiry.
            (Stage::Complete { watch }, Err(e)) => {
                ctx.observe(Observation::Rejected { what: format!("{} coop exit {}", self.cfg.id, c.exit_id), reason: e });
                let watch = watch.clone();
                self.coop_exit_watch(c.leaf, watch);
                self.finish(ctx);
            }
            (Stage::Quote | Stage::Offer { .. }, Err(e)) => self.fail(ctx, retry, format!("coop exit: SSP: {e}")),
            _ => {
                self.op = Some((session, Op::CoopExit(Box::new(c))));
            }
        }
    }

    /// Move to the next stage under a fresh round, send its request, arm its timeout.
    fn coop_exit_next(&mut self, ctx: &mut Ctx<'_>, session: u64, c: CoopExitOp, send: impl FnOnce(&mut Wallet, &mut Ctx<'_>) -> Option<()>) {
        self.op = Some((session, Op::CoopExit(Box::new(c))));
        self.new_round();
        if send(self, ctx).is_none() {
            return self.fail(ctx, None, "coop exit: the deployment has no service provider".into());
        }
        self.arm_timeout(ctx);
    }

    pub(super) fn coop_exit_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut c: CoopExitOp, body: Result<WalletReply, String>) {
        let retry = Some((Command::CoopExit { stall: c.stall }, c.attempt));
        match (std::mem::replace(&mut c.stage, Stage::Check), body) {
            (Stage::Commitments { fee_sats, exit_txid, connector_tx }, Ok(WalletReply::SigningCommitments { commitments })) => {
                match self.build_coop_exit(ctx, &c, fee_sats, exit_txid, &connector_tx, commitments) {
                    Ok((request, watch, prevouts)) => {
                        if let Some(l) = self.leaves.get_mut(&c.leaf) {
                            l.state = LeafState::Sending(watch.transfer);
                        }
                        c.stage = Stage::Start { request: request.clone(), watch, prevouts };
                        let to = self.cfg.coordinator;
                        self.coop_exit_next(ctx, session, c, |w, ctx| {
                            w.request(ctx, to, request);
                            Some(())
                        });
                    }
                    Err(e) => self.fail(ctx, retry, format!("coop exit: {e}")),
                }
            }
            (Stage::Commitments { .. }, Err(e)) => self.fail(ctx, retry, format!("coop exit: {e}")),
            (Stage::Start { watch, prevouts, request }, Ok(WalletReply::CoopExitSigned { transfer, refunds })) if transfer == watch.transfer => {
                match self.check_connector_refunds(c.leaf, &request, &refunds, &prevouts) {
                    Ok(()) => {
                        if let Some(ssp) = self.cfg.directory.ssp {
                            ctx.observe(Observation::CoopExitStarted { user: self.cfg.id, ssp, leaf: c.leaf, transfer, value_sats: self.leaves.get(&c.leaf).map_or(0, |l| l.value_sats), payout_sats: watch.payout_sats, exit_txid: watch.exit_txid });
                        }
                        if c.stall {
                            self.coop_exit_complete(ctx, session, c, watch, refunds);
                        } else {
                            c.stage = Stage::Finalize { watch, refunds };
                            let to = self.cfg.coordinator;
                            self.coop_exit_next(ctx, session, c, |w, ctx| {
                                w.request(ctx, to, WalletRequest::FinalizeCoopExit { transfer });
                                Some(())
                            });
                        }
                    }
                    // Operators that sign something else than what we asked: keep the leaf out of
                    // this exit; the transfer (if any) returns at its expiry.
                    Err(e) => {
                        ctx.observe(Observation::Rejected { what: format!("{} coop exit {transfer}", self.cfg.id), reason: e });
                        self.coop_exit_watch(c.leaf, watch);
                        self.finish(ctx);
                    }
                }
            }
            (Stage::Start { watch, .. }, Err(e)) if e.contains("returned") || e.contains("expired") => self.coop_exit_returned(ctx, c.leaf, watch.transfer, retry),
            (Stage::Finalize { watch, refunds }, Ok(WalletReply::Transfer { outcome, .. })) => match outcome {
                TransferOutcome::Returned => self.coop_exit_returned(ctx, c.leaf, watch.transfer, retry),
                _ => self.coop_exit_complete(ctx, session, c, watch, refunds),
            },
            (Stage::Check, Ok(WalletReply::Transfer { transfer, outcome: TransferOutcome::Returned })) => {
                self.coop_exit_returned(ctx, c.leaf, transfer, None);
                // spark-protocol §4.5 failure analysis: the SSP never paid; exit the leaf alone
                // with its previous refund (the SSP's newer refund needs the missing connector).
                self.start_exit_of(ctx, c.leaf);
            }
            (Stage::Check, _) => self.finish(ctx),
            // Anything else (an error that is not final, a late reply): ask again at the timeout.
            (stage, _) => {
                c.stage = stage;
                self.op = Some((session, Op::CoopExit(Box::new(c))));
                self.new_round();
                self.arm_timeout(ctx);
            }
        }
    }

    /// No answer: the requests of the signing and finalize stages are idempotent at the
    /// coordinator and are sent again; the SSP's stages restart the command.
    pub(super) fn coop_exit_timeout(&mut self, ctx: &mut Ctx<'_>, session: u64, mut c: CoopExitOp) {
        let retry = Some((Command::CoopExit { stall: c.stall }, c.attempt));
        c.resends += 1;
        let to = self.cfg.coordinator;
        match &c.stage {
            Stage::Quote | Stage::Offer { .. } | Stage::Commitments { .. } => self.fail(ctx, retry, "coop exit: timed out".into()),
            Stage::Check => self.finish(ctx),
            _ if c.resends > MAX_RESENDS => {
                // Leave it to the chain watch: paid, or returned at the expiry.
                if let Stage::Start { watch, .. } | Stage::Finalize { watch, .. } | Stage::Complete { watch } = &c.stage {
                    self.coop_exit_watch(c.leaf, watch.clone());
                }
                self.finish(ctx);
            }
            Stage::Start { request, .. } => {
                let request = request.clone();
                self.coop_exit_next(ctx, session, c, |w, ctx| {
                    w.request(ctx, to, request);
                    Some(())
                });
            }
            Stage::Finalize { watch, .. } => {
                let transfer = watch.transfer;
                self.coop_exit_next(ctx, session, c, |w, ctx| {
                    w.request(ctx, to, WalletRequest::FinalizeCoopExit { transfer });
                    Some(())
                });
            }
            Stage::Complete { watch } => {
                // completeCoopExit is answered once; after that the chain tells.
                let watch = watch.clone();
                self.coop_exit_watch(c.leaf, watch);
                self.finish(ctx);
            }
        }
    }

    fn coop_exit_complete(&mut self, ctx: &mut Ctx<'_>, session: u64, mut c: CoopExitOp, watch: CoopWatch, refunds: crate::msg::RefundSet) {
        let Some(l) = self.leaves.get(&c.leaf) else { return self.finish(ctx) };
        let leaf = CoopExitLeaf { leaf: c.leaf, value_sats: l.value_sats, verifying_key: l.verifying_key, deposit_outpoint: l.deposit_outpoint, ancestors: l.ancestors.clone(), nodes: l.nodes.clone(), connector_refunds: refunds };
        let exit_id = c.exit_id;
        c.stage = Stage::Complete { watch };
        self.coop_exit_next(ctx, session, c, |w, ctx| w.ssp_request(ctx, SspRequest::CompleteCoopExit { exit_id, leaf: Box::new(leaf) }).map(|_| ()));
    }

    fn coop_exit_returned(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId, transfer: TransferId, retry: Option<(Command, u8)>) {
        self.coop.user.remove(&leaf);
        if let Some(l) = self.leaves.get_mut(&leaf) {
            if l.state == LeafState::Sending(transfer) {
                l.state = LeafState::Available;
            }
        }
        ctx.observe(Observation::TransferReturned { transfer, sender: self.cfg.id });
        match retry {
            Some(_) => self.fail(ctx, None, format!("coop exit {transfer} returned")),
            None => self.finish(ctx),
        }
    }

    fn coop_exit_watch(&mut self, leaf: LeafId, watch: CoopWatch) {
        self.coop.user.insert(leaf, (watch, Micros::ZERO));
    }

    /// Connector refunds (input 0: node output, input 1: the leaf's connector) paying the SSP at
    /// the decremented CSV, our share signed against the operators' commitments, and the key
    /// tweak to the SSP — the same package as a send (send.rs), with two-input sighashes.
    fn build_coop_exit(&self, ctx: &mut Ctx<'_>, c: &CoopExitOp, fee_sats: u64, exit_txid: Txid, connector_tx: &Transaction, commitments: Vec<BTreeMap<OperatorId, NonceCommitment>>) -> Result<(WalletRequest, CoopWatch, [Vec<TxOut>; 3]), String> {
        let p = &self.cfg.params;
        let leaf = self.leaves.get(&c.leaf).ok_or("leaf vanished")?;
        let ssp = self.cfg.directory.ssp.ok_or("no service provider")?;
        let receiver = *self.cfg.directory.wallets.get(&ssp).ok_or("unknown service provider")?;
        let (current, _) = leaf.refunds.sequences()?;
        let (seq, direct) = p.next_refund_sequences(current).map_err(|e| e.to_string())?;
        let connector = OutPoint { txid: connector_tx.compute_txid(), vout: 0 };
        let connector_out = connector_tx.output.first().ok_or("connector tx has no outputs")?.clone();
        let txs = connector_refunds(leaf.nodes.refunds_to(&receiver, seq, direct)?, connector)?.into_array();
        let prevouts = leaf.nodes.refund_prevouts()?.map(|mut v| {
            v.push(connector_out.clone());
            v
        });
        let refunds = self.sign_refunds_as_user(ctx, leaf, txs, &prevouts, commitments, None)?;
        let transfer = c.exit_id;
        let key_tweak_package = self.key_tweaks(ctx, c.leaf, transfer, &leaf.signing_secret, &receiver)?;
        let signature = sign_digest(&self.cfg.identity, &transfer_package_digest(transfer, &key_tweak_package));
        let package = TransferPackage { leaves: vec![TransferLeafPackage { leaf: c.leaf, refunds }], key_tweak_package, signature };
        let expiry = ctx.now + COOP_EXIT_EXPIRY;
        let payout_sats = leaf.value_sats.checked_sub(fee_sats).ok_or("fee above the leaf's value")?;
        let request = WalletRequest::CooperativeExit { transfer, sender: self.identity_public(), receiver, expiry, package, exit_txid, connector_tx: connector_tx.clone() };
        Ok((request, CoopWatch { transfer, exit_txid, expiry, payout_sats }, prevouts))
    }

    /// The operators' refunds are exactly the ones we signed, with valid signatures.
    fn check_connector_refunds(&self, leaf: LeafId, request: &WalletRequest, refunds: &crate::msg::RefundSet, prevouts: &[Vec<TxOut>; 3]) -> Result<(), String> {
        let WalletRequest::CooperativeExit { package, .. } = request else { return Err("not a coop exit".into()) };
        let l = self.leaves.get(&leaf).ok_or("leaf vanished")?;
        let asked = package.leaves.first().ok_or("empty package")?;
        for (i, tx) in refunds.as_array().into_iter().enumerate() {
            let expected = &asked.refunds.get(i).ok_or("missing refund")?.tx;
            crate::operator::check_signed(expected, tx, &prevouts[i], &l.verifying_key).map_err(|e| format!("connector refund {i}: {e}"))?;
        }
        Ok(())
    }

    /// Chain watch of the user's coop exits (from `on_block`): a confirmed exit tx pays us and
    /// hands the leaf to the SSP; one past its expiry without payout is asked about.
    pub(super) fn coop_exit_on_block(&mut self, ctx: &mut Ctx<'_>, block: &crate::chain::BlockInfo) {
        let me = self.cfg.id;
        let mut paid = Vec::new();
        for tx in &block.txs {
            let txid = tx.compute_txid();
            for (leaf, (w, _)) in &self.coop.user {
                if w.exit_txid == txid {
                    paid.push((*leaf, w.clone(), tx.output.first().cloned()));
                }
            }
        }
        for (leaf, w, out) in paid {
            self.coop.user.remove(&leaf);
            if let Some(out) = out {
                ctx.observe(Observation::CoopExitPaid { user: me, leaf, exit_txid: w.exit_txid, payout_sats: out.value.to_sat() });
                self.l1_coins.push((OutPoint { txid: w.exit_txid, vout: 0 }, out));
            }
            if let Some(l) = self.leaves.remove(&leaf) {
                self.sent_away.insert(leaf, l);
            }
        }
        // Past the expiry with no payout: ask the coordinator (one operation at a time, and not
        // more than once per block interval for the same exit).
        if self.op.is_some() || !self.queue.is_empty() {
            return;
        }
        let due = self.coop.user.iter().find(|(_, (w, asked))| ctx.now > w.expiry && *asked < ctx.now).map(|(l, (w, _))| (*l, w.transfer));
        let Some((leaf, transfer)) = due else { return };
        if let Some((_, asked)) = self.coop.user.get_mut(&leaf) {
            *asked = ctx.now + self.cfg.params.transfer_tasks_period;
        }
        self.begin(Op::CoopExit(Box::new(CoopExitOp { attempt: 0, stall: false, leaf, exit_id: transfer, resends: 0, stage: Stage::Check })));
        let to = self.cfg.coordinator;
        self.request(ctx, to, WalletRequest::QueryTransfer { transfer });
        self.arm_timeout(ctx);
    }
}

/// The wallet's cooperative exits in progress: the user's watches (leaf → watch and when it
/// may ask again) and, on the SSP, the exits it sells (ssp_coop_exit.rs).
#[derive(Default)]
pub struct CoopExits {
    pub(super) user: BTreeMap<LeafId, (CoopWatch, Micros)>,
    pub(super) ssp: BTreeMap<TransferId, super::ssp_coop_exit::SspExit>,
}

impl CoopExits {
    /// Work still owed: exits waiting for their payout or return, and the SSP's exits whose
    /// leaves it neither claimed nor exited yet.
    pub fn pending(&self) -> usize {
        self.user.len() + self.ssp.values().filter(|e| e.pending()).count()
    }
}
