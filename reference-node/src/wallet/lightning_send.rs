//! Lightning send (spark-protocol §4.8), both sides.
//!
//! The user: ask the SSP for the invoice to pay and its fee; pick a leaf worth exactly amount +
//! fee (splitting a bigger one first, renewing first when due); build its refunds as HTLC
//! refunds to the SSP (`tx::htlc`: CSV (current − 100) + 70, direct + 85, output P2TR(NUMS;
//! {hashlock → SSP, 2160 CSV → user})); `initiate_preimage_swap_v3{SEND}`; tell the SSP
//! (`requestLightningSend`); then wait for the outcome: the preimage (paid, the leaf is the
//! SSP's) or the transfer returned (its leaf is its own again).
//!
//! The SSP: its simulated Lightning network pays the invoice once the transfer is locked; on
//! success it gives the operators the preimage (`provide_preimage`) and claims the leaves like
//! any transfer, on failure it returns the transfer. Its outgoing payments outlive a crash (a
//! wallet's durable state), so a restart resumes a payment paid but not yet provided.
//!
//! Determinism: the payee's preimage and whether a payment fails are functions of the run's
//! "ssp/lightning" seed, the user and a counter; no draw from the node's stream.
use super::lightning::LnOp;
use super::ssp_lightning::payment_fails;
use super::{Command, LeafState, Op, Wallet};
use crate::crypto::identity::sha256;
use crate::crypto::PublicKey;
use crate::msg::lightning::{Invoice, PreimageReason, PreimageSwap};
use crate::msg::{ReqId, SspReply, SspRequest, SspService, TransferOutcome, WalletReply, WalletRequest};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::types::{LeafId, Micros, NodeId, OperatorId, TransferId, WalletId};
use std::collections::BTreeMap;

/// How long a Lightning send's transfer stays locked waiting for the preimage before its
/// coordinator returns it. Spark uses 16 days (§4.8 step 3); the simulation shortens it so a
/// run whose SSP never answers still ends, keeping it far above a payment's few seconds.
pub const LIGHTNING_SEND_EXPIRY: Micros = Micros::from_secs(3600);

/// Give up re-sending `provide_preimage` / `return` after this many unanswered tries.
const MAX_PAY_TRIES: u8 = 40;

/// Where one outgoing payment stands at the SSP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutgoingState {
    /// Invoice quoted to the user; no transfer yet.
    Quoted,
    /// The user's transfer is named; the SSP will pay once it is locked.
    Accepted,
    /// Paid on Lightning: the preimage is known and must reach the operators.
    Paid,
    /// The payment failed: the transfer must be returned.
    Failed,
    /// The operators accepted the preimage: the leaves are the SSP's to claim.
    Provided,
    /// The transfer was returned (payment failed, or it never locked): nothing moved.
    Returned,
}

/// One invoice the SSP pays for a user.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub invoice: Invoice,
    pub fee_sats: u64,
    /// The payee's preimage (the simulated payee reveals it when paid).
    preimage: [u8; 32],
    pub user: WalletId,
    pub transfer: Option<(TransferId, OperatorId)>,
    pub state: OutgoingState,
}

/// The user's Lightning send in flight.
pub(super) struct SendLnOp {
    attempt: u8,
    sats: u64,
    stage: UserStage,
}

enum UserStage {
    Quote,
    Commitments { invoice: Invoice, fee_sats: u64, leaf: LeafId },
    Start { invoice: Invoice, fee_sats: u64, leaf: LeafId, transfer: TransferId, expiry: Micros },
    /// Locked (or its start's answer was lost); `ask_transfer` alternates the polls between the
    /// preimage and the transfer; `locked`: the coordinator said so; `told_ssp`: the SSP accepted.
    /// `refused`/`expiry`: when "unknown" is final (as for a plain send: the coordinator refused
    /// the start, or the transfer expired without being locked).
    Wait { hash: [u8; 32], amount_sats: u64, fee_sats: u64, leaf: LeafId, transfer: TransferId, ask_transfer: bool, locked: bool, told_ssp: bool, refused: bool, expiry: Micros },
}

/// The SSP's payment operation.
pub(super) struct PayOp {
    hash: [u8; 32],
    tries: u8,
}

/// The payee's preimage for the `n`-th invoice of `user`: a function of the network's seed.
pub fn payee_preimage(seed: &[u8; 32], user: WalletId, n: u64) -> [u8; 32] {
    sha256(&[seed, b"payee", &user.0.to_le_bytes(), &n.to_le_bytes()])
}

impl Wallet {
    // ----------------------------------------------------------------------------------------
    // User side.
    // ----------------------------------------------------------------------------------------

    pub(super) fn start_lightning_send(&mut self, ctx: &mut Ctx<'_>, sats: u64, attempt: u8) {
        if self.cfg.directory.ssp.is_none() || self.is_ssp() {
            ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: "lightning send: no service provider".into() });
            return self.start_next(ctx);
        }
        self.begin(Op::Lightning(Box::new(LnOp::Send(SendLnOp { attempt, sats, stage: UserStage::Quote }))));
        self.ssp_request(ctx, SspRequest::LightningSendQuote { amount_sats: sats });
        self.arm_timeout(ctx);
    }

    /// An available leaf worth exactly `value` with timelock left for an HTLC refund.
    fn send_leaf_of(&self, value: u64) -> Option<LeafId> {
        self.leaves
            .iter()
            .find(|(_, l)| l.state == LeafState::Available && l.value_sats == value && l.refunds.sequences().is_ok_and(|(c, _)| crate::tx::timelock::htlc_next_sequences(c, false).is_ok() && self.cfg.params.next_refund_sequences(c).is_ok()))
            .map(|(id, _)| *id)
    }

    pub(super) fn lightning_send_ssp_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: SendLnOp, body: Result<SspReply, String>) {
        let retry = Some((Command::LightningSend { sats: s.sats }, s.attempt));
        match (&mut s.stage, body) {
            (UserStage::Quote, Ok(SspReply::LightningSendInvoice { invoice, fee_sats })) if invoice.amount_sats == s.sats => {
                let due = s.sats + fee_sats;
                let Some(leaf) = self.send_leaf_of(due) else {
                    // Spark moves whole leaves: split a bigger one into amount + fee and the rest.
                    let bigger = self.leaves.values().filter(|l| l.state == LeafState::Available && l.value_sats > due).map(|l| l.value_sats).min();
                    return match bigger {
                        Some(v) if s.attempt + 1 < super::MAX_ATTEMPTS => {
                            self.queue.push_front((Command::LightningSend { sats: s.sats }, s.attempt + 1));
                            self.queue.push_front((Command::Split { values: vec![due, v - due] }, 0));
                            self.finish(ctx);
                        }
                        _ => self.fail(ctx, None, format!("lightning send: no available leaf worth {due} sats")),
                    };
                };
                s.stage = UserStage::Commitments { invoice, fee_sats, leaf };
                self.op = Some((session, Op::Lightning(Box::new(LnOp::Send(s)))));
                self.new_round();
                let to = self.cfg.coordinator;
                self.request(ctx, to, WalletRequest::GetSigningCommitments { leaf, count: 3 });
                self.arm_timeout(ctx);
            }
            (UserStage::Quote, other) => self.fail(ctx, retry, format!("lightning send: quote: {other:?}")),
            (UserStage::Wait { told_ssp, .. }, Ok(SspReply::LightningSendAccepted { .. })) => {
                *told_ssp = true;
                self.lightning_send_keep(ctx, session, s);
            }
            (UserStage::Wait { .. }, other) => {
                // The SSP refused or is confused: the transfer returns at its expiry.
                ctx.observe(Observation::Rejected { what: format!("{} lightning send", self.cfg.id), reason: format!("SSP: {other:?}") });
                self.lightning_send_keep(ctx, session, s);
            }
            _ => self.lightning_send_keep(ctx, session, s),
        }
    }

    /// Stay in the current stage; the next timeout asks again.
    fn lightning_send_keep(&mut self, ctx: &mut Ctx<'_>, session: u64, s: SendLnOp) {
        self.op = Some((session, Op::Lightning(Box::new(LnOp::Send(s)))));
        self.new_round();
        self.arm_timeout(ctx);
    }

    fn release_reserved(&mut self, leaf: LeafId) {
        if let Some(l) = self.leaves.get_mut(&leaf) {
            if matches!(l.state, LeafState::Sending(_)) {
                l.state = LeafState::Available;
            }
        }
    }

    pub(super) fn lightning_send_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: SendLnOp, body: Result<WalletReply, String>) {
        let retry = Some((Command::LightningSend { sats: s.sats }, s.attempt));
        match (&mut s.stage, body) {
            (UserStage::Commitments { invoice, fee_sats, leaf }, Ok(WalletReply::SigningCommitments { commitments })) => {
                let (invoice, fee_sats, leaf) = (invoice.clone(), *fee_sats, *leaf);
                match self.build_lightning_send(ctx, leaf, &invoice, fee_sats, commitments) {
                    Ok((transfer, expiry, request)) => {
                        if let Some(l) = self.leaves.get_mut(&leaf) {
                            l.state = LeafState::Sending(transfer);
                        }
                        s.stage = UserStage::Start { invoice, fee_sats, leaf, transfer, expiry };
                        self.op = Some((session, Op::Lightning(Box::new(LnOp::Send(s)))));
                        self.new_round();
                        let to = self.cfg.coordinator;
                        self.request(ctx, to, request);
                        self.arm_timeout(ctx);
                    }
                    Err(e) => {
                        self.release_reserved(leaf);
                        self.fail(ctx, retry, format!("lightning send: {e}"));
                    }
                }
            }
            (UserStage::Commitments { leaf, .. }, Err(e)) => {
                let leaf = *leaf;
                self.release_reserved(leaf);
                self.fail(ctx, retry, format!("lightning send: {e}"));
            }
            (UserStage::Start { invoice, fee_sats, leaf, transfer, expiry }, Ok(WalletReply::Transfer { outcome: TransferOutcome::Sent, .. })) => {
                let (hash, leaf, transfer) = (invoice.payment_hash, *leaf, *transfer);
                ctx.observe(Observation::LightningSendLocked { wallet: self.cfg.id, payment_hash: hash, transfer, amount_sats: invoice.amount_sats, fee_sats: *fee_sats });
                s.stage = UserStage::Wait { hash, amount_sats: invoice.amount_sats, fee_sats: *fee_sats, leaf, transfer, ask_transfer: false, locked: true, told_ssp: false, refused: false, expiry: *expiry };
                self.op = Some((session, Op::Lightning(Box::new(LnOp::Send(s)))));
                self.new_round();
                let coordinator = self.cfg.coordinator;
                self.ssp_request(ctx, SspRequest::LightningSend { transfer, payment_hash: hash, coordinator });
                self.arm_timeout(ctx);
            }
            (UserStage::Start { invoice, fee_sats, leaf, transfer, expiry }, other) => {
                // Refused, or an answer that is not "locked": follow the transfer's durable outcome.
                if let Err(e) = &other {
                    ctx.observe(Observation::Rejected { what: format!("{} lightning send {transfer}", self.cfg.id), reason: e.clone() });
                }
                let refused = other.is_err();
                s.stage = UserStage::Wait { hash: invoice.payment_hash, amount_sats: invoice.amount_sats, fee_sats: *fee_sats, leaf: *leaf, transfer: *transfer, ask_transfer: true, locked: false, told_ssp: false, refused, expiry: *expiry };
                if refused {
                    // Ask the coordinator whether anything is pending at all.
                    return self.lightning_send_poll(ctx, session, s);
                }
                self.lightning_send_keep(ctx, session, s);
            }
            (UserStage::Wait { hash, leaf, transfer, .. }, Ok(WalletReply::Preimage { preimage: Some(r), payment_hash })) if payment_hash == *hash && sha256(&[&r]) == *hash => {
                let (hash, leaf, transfer) = (*hash, *leaf, *transfer);
                if let Some(l) = self.leaves.remove(&leaf) {
                    let ssp_key = self.cfg.directory.ssp.and_then(|w| self.cfg.directory.wallets.get(&w)).copied();
                    if let Some(receiver) = ssp_key {
                        ctx.observe(Observation::TransferSent { transfer, sender: self.cfg.id, receiver, leaf, value_sats: l.value_sats });
                    }
                    self.sent_away.insert(leaf, l);
                }
                ctx.observe(Observation::LightningSendDone { wallet: self.cfg.id, payment_hash: hash, transfer, settled: true });
                self.finish(ctx);
            }
            (UserStage::Wait { hash, amount_sats, fee_sats, leaf, transfer, locked, told_ssp, refused, expiry, .. }, Ok(WalletReply::Transfer { outcome, .. })) => {
                let (hash, leaf, transfer, told) = (*hash, *leaf, *transfer, *told_ssp);
                // "Unknown" is final only when nothing can lock the transfer any more.
                let unknown_final = !*locked && (*refused || ctx.now > *expiry);
                match outcome {
                    // Locked but the SSP has not accepted yet (a lost start answer, a lost request
                    // to the SSP): tell it (again; it is idempotent there).
                    TransferOutcome::Sent if !told => {
                        if !*locked {
                            *locked = true;
                            ctx.observe(Observation::LightningSendLocked { wallet: self.cfg.id, payment_hash: hash, transfer, amount_sats: *amount_sats, fee_sats: *fee_sats });
                        }
                        self.op = Some((session, Op::Lightning(Box::new(LnOp::Send(s)))));
                        self.new_round();
                        let coordinator = self.cfg.coordinator;
                        self.ssp_request(ctx, SspRequest::LightningSend { transfer, payment_hash: hash, coordinator });
                        self.arm_timeout(ctx);
                    }
                    TransferOutcome::Returned | TransferOutcome::Unknown if outcome == TransferOutcome::Returned || unknown_final => {
                        self.release_reserved(leaf);
                        ctx.observe(Observation::TransferReturned { transfer, sender: self.cfg.id });
                        ctx.observe(Observation::LightningSendDone { wallet: self.cfg.id, payment_hash: hash, transfer, settled: false });
                        self.fail(ctx, None, format!("lightning send {transfer} returned"));
                    }
                    _ => self.lightning_send_keep(ctx, session, s),
                }
            }
            _ => self.lightning_send_keep(ctx, session, s),
        }
    }

    /// One poll of a locked send: alternately the preimage and the transfer's outcome.
    fn lightning_send_poll(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: SendLnOp) {
        let UserStage::Wait { hash, transfer, ask_transfer, .. } = &mut s.stage else { return self.lightning_send_keep(ctx, session, s) };
        let request = if *ask_transfer { WalletRequest::QueryTransfer { transfer: *transfer } } else { WalletRequest::QueryPreimage { payment_hash: *hash } };
        *ask_transfer = !*ask_transfer;
        self.op = Some((session, Op::Lightning(Box::new(LnOp::Send(s)))));
        self.new_round();
        let to = self.cfg.coordinator;
        self.request(ctx, to, request);
        self.arm_timeout(ctx);
    }

    pub(super) fn lightning_send_timeout(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: SendLnOp) {
        let retry = Some((Command::LightningSend { sats: s.sats }, s.attempt));
        match &s.stage {
            UserStage::Quote => self.fail(ctx, retry, "lightning send: quote timed out".into()),
            UserStage::Commitments { leaf, .. } => {
                let leaf = *leaf;
                self.release_reserved(leaf);
                self.fail(ctx, retry, "lightning send: commitments timed out".into());
            }
            UserStage::Start { invoice, fee_sats, leaf, transfer, expiry } => {
                s.stage = UserStage::Wait { hash: invoice.payment_hash, amount_sats: invoice.amount_sats, fee_sats: *fee_sats, leaf: *leaf, transfer: *transfer, ask_transfer: true, locked: false, told_ssp: false, refused: false, expiry: *expiry };
                self.lightning_send_poll(ctx, session, s);
            }
            UserStage::Wait { .. } => self.lightning_send_poll(ctx, session, s),
        }
    }

    /// The HTLC refunds of `leaf` to the SSP, user-signed, and the `InitiatePreimageSwap{SEND}`.
    fn build_lightning_send(&self, ctx: &mut Ctx<'_>, leaf_id: LeafId, invoice: &Invoice, fee_sats: u64, commitments: Vec<BTreeMap<OperatorId, crate::crypto::signing::NonceCommitment>>) -> Result<(TransferId, Micros, WalletRequest), String> {
        let ssp_key: PublicKey = *self.cfg.directory.ssp.and_then(|w| self.cfg.directory.wallets.get(&w)).ok_or("no service provider")?;
        let sender = self.identity_public();
        let leaf = self.leaves.get(&leaf_id).ok_or("leaf vanished")?;
        let htlc = crate::operator::preimage::expected_htlc_refunds(&leaf.nodes, &leaf.refunds, &invoice.payment_hash, &ssp_key, &sender)?;
        let (transfer, package) = self.transfer_package_with(ctx, (leaf_id, leaf), &ssp_key, commitments, htlc.into_array(), None)?;
        let swap = PreimageSwap { reason: PreimageReason::Send, payment_hash: invoice.payment_hash, amount_sats: invoice.amount_sats, fee_sats };
        let expiry = ctx.now + LIGHTNING_SEND_EXPIRY;
        Ok((transfer, expiry, WalletRequest::InitiatePreimageSwap { swap, transfer, sender, receiver: ssp_key, expiry, package }))
    }

    // ----------------------------------------------------------------------------------------
    // SSP side.
    // ----------------------------------------------------------------------------------------

    /// `LightningSendQuote`: the simulated payee's invoice and the SSP's fee for paying it.
    pub(super) fn ssp_lightning_send_quote(&mut self, ctx: &mut Ctx<'_>, from: WalletId, amount_sats: u64) -> Result<SspReply, String> {
        if amount_sats == 0 {
            return Err("an invoice of 0 sats".into());
        }
        let fee_sats = self.cfg.params.ssp_fees.quote(SspService::LightningSend, amount_sats)?;
        let n = self.ln.outgoing.len() as u64;
        let preimage = payee_preimage(&self.cfg.params.lightning.seed, from, n);
        let payment_hash = sha256(&[&preimage]);
        let invoice = Invoice { payment_hash, amount_sats, expires_at: ctx.now + super::ssp_lightning::INVOICE_EXPIRY };
        self.ln.outgoing.insert(payment_hash, Outgoing { invoice: invoice.clone(), fee_sats, preimage, user: from, transfer: None, state: OutgoingState::Quoted });
        Ok(SspReply::LightningSendInvoice { invoice, fee_sats })
    }

    /// `requestLightningSend`: the user's transfer for a quoted invoice; pay it once locked.
    pub(super) fn ssp_lightning_send(&mut self, ctx: &mut Ctx<'_>, from: WalletId, transfer: TransferId, payment_hash: [u8; 32], coordinator: OperatorId) -> Result<SspReply, String> {
        let o = self.ln.outgoing.get_mut(&payment_hash).ok_or("no invoice quoted for this payment hash")?;
        if o.user != from {
            return Err("the invoice was quoted to another wallet".into());
        }
        match (o.state, o.transfer) {
            (OutgoingState::Quoted, _) => {
                o.transfer = Some((transfer, coordinator));
                o.state = OutgoingState::Accepted;
                self.queue.push_back((Command::LightningPay { payment_hash }, 0));
                self.start_next(ctx);
            }
            (_, Some((t, _))) if t == transfer => {} // a retried request
            _ => return Err("the invoice is already being paid by another transfer".into()),
        }
        Ok(SspReply::LightningSendAccepted { payment_hash })
    }

    /// Whether `script` is the HTLC output of a payment this SSP pays for `sender` (its claim
    /// accepts such intermediate refunds as paying it).
    pub(super) fn is_my_htlc(&self, sender: &PublicKey, script: &bitcoin::ScriptBuf) -> bool {
        let me = self.identity_public();
        self.ln.outgoing.keys().any(|h| crate::tx::htlc::htlc_script_pubkey(h, &me, sender) == *script)
    }

    pub(super) fn start_lightning_pay(&mut self, ctx: &mut Ctx<'_>, payment_hash: [u8; 32]) {
        let Some(o) = self.ln.outgoing.get(&payment_hash) else { return self.start_next(ctx) };
        let Some((transfer, coordinator)) = o.transfer else { return self.start_next(ctx) };
        let request = match o.state {
            OutgoingState::Accepted => WalletRequest::QueryTransfer { transfer },
            OutgoingState::Paid => WalletRequest::ProvidePreimage { transfer, payment_hash, preimage: o.preimage },
            OutgoingState::Failed => WalletRequest::ReturnLightningPayment { transfer, payment_hash },
            OutgoingState::Quoted | OutgoingState::Provided | OutgoingState::Returned => return self.start_next(ctx),
        };
        self.begin(Op::Lightning(Box::new(LnOp::Pay(PayOp { hash: payment_hash, tries: 0 }))));
        self.request(ctx, coordinator, request);
        self.arm_timeout(ctx);
    }

    /// Re-send the current stage's request (after a timeout or a not-final answer).
    fn lightning_pay_again(&mut self, ctx: &mut Ctx<'_>, mut p: PayOp) {
        p.tries += 1;
        let hash = p.hash;
        if p.tries >= MAX_PAY_TRIES {
            ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: format!("lightning pay {}: no answer after {} tries", hex::encode(&hash[..4]), p.tries) });
            return self.finish(ctx);
        }
        let Some(o) = self.ln.outgoing.get(&hash) else { return self.finish(ctx) };
        let Some((transfer, coordinator)) = o.transfer else { return self.finish(ctx) };
        let request = match o.state {
            OutgoingState::Accepted => WalletRequest::QueryTransfer { transfer },
            OutgoingState::Paid => WalletRequest::ProvidePreimage { transfer, payment_hash: hash, preimage: o.preimage },
            OutgoingState::Failed => WalletRequest::ReturnLightningPayment { transfer, payment_hash: hash },
            _ => return self.finish(ctx),
        };
        self.op = Some((0, Op::Lightning(Box::new(LnOp::Pay(p)))));
        self.new_round();
        self.request(ctx, coordinator, request);
        self.arm_timeout(ctx);
    }

    pub(super) fn lightning_pay_reply(&mut self, ctx: &mut Ctx<'_>, p: PayOp, body: Result<WalletReply, String>) {
        let me = self.cfg.id;
        let hash = p.hash;
        let Some(o) = self.ln.outgoing.get_mut(&hash) else { return self.finish(ctx) };
        let Some((transfer, _)) = o.transfer else { return self.finish(ctx) };
        match (o.state, body) {
            (OutgoingState::Accepted, Ok(WalletReply::Transfer { outcome: TransferOutcome::Sent, .. })) => {
                // Locked at the coordinator: pay now (the network decides from seed and hash).
                if payment_fails(&self.cfg.params.lightning, &hash) {
                    o.state = OutgoingState::Failed;
                    ctx.observe(Observation::LightningSendPaymentFailed { ssp: me, payment_hash: hash, transfer });
                } else {
                    o.state = OutgoingState::Paid;
                    ctx.observe(Observation::LightningSendPaid { ssp: me, payment_hash: hash, preimage: o.preimage, transfer });
                }
                self.lightning_pay_again(ctx, PayOp { hash, tries: 0 });
            }
            (OutgoingState::Accepted, Ok(WalletReply::Transfer { outcome: TransferOutcome::Returned | TransferOutcome::Unknown, .. })) => {
                // Never locked (refused or cancelled): nothing to pay.
                o.state = OutgoingState::Returned;
                self.finish(ctx);
            }
            (OutgoingState::Paid, Ok(WalletReply::Preimage { preimage: Some(_), .. })) => {
                o.state = OutgoingState::Provided;
                // The leaves are ours once every operator applied the tweak: look now.
                self.event_pending = true;
                self.finish(ctx);
            }
            (OutgoingState::Failed, Ok(WalletReply::Transfer { outcome: TransferOutcome::Returned, .. })) => {
                o.state = OutgoingState::Returned;
                self.finish(ctx);
            }
            (_, Err(e)) => {
                ctx.observe(Observation::Rejected { what: format!("{me} lightning pay {}", hex::encode(&hash[..4])), reason: e });
                self.lightning_pay_wait(ctx, p);
            }
            _ => self.lightning_pay_wait(ctx, p),
        }
    }

    /// Not final yet: keep the op and ask again at the timeout.
    fn lightning_pay_wait(&mut self, ctx: &mut Ctx<'_>, p: PayOp) {
        self.op = Some((0, Op::Lightning(Box::new(LnOp::Pay(p)))));
        self.new_round();
        self.arm_timeout(ctx);
    }

    pub(super) fn lightning_pay_timeout(&mut self, ctx: &mut Ctx<'_>, p: PayOp) {
        self.lightning_pay_again(ctx, p);
    }

    /// After a crash: resume every payment that is not final (the op in flight was lost).
    pub(super) fn requeue_lightning_pays(&mut self) {
        let open: Vec<[u8; 32]> = self.ln.outgoing.iter().filter(|(_, o)| matches!(o.state, OutgoingState::Accepted | OutgoingState::Paid | OutgoingState::Failed)).map(|(h, _)| *h).collect();
        for h in open {
            if !self.queue.iter().any(|(c, _)| *c == Command::LightningPay { payment_hash: h }) {
                self.queue.push_back((Command::LightningPay { payment_hash: h }, 0));
            }
        }
    }

    /// The SSP's reply to a Lightning send's request, checked against the op and round.
    pub(super) fn lightning_send_on_ssp_reply(&mut self, ctx: &mut Ctx<'_>, from: NodeId, req: ReqId, body: Result<SspReply, String>) {
        if !matches!(from, NodeId::Wallet(w) if Some(w) == self.cfg.directory.ssp) {
            return;
        }
        match &self.op {
            Some((s, Op::Lightning(l))) if *s == req.session && matches!(**l, LnOp::Send(_)) => {}
            _ => return, // stale
        }
        let Some((session, Op::Lightning(l))) = self.op.take() else { return };
        let LnOp::Send(s) = *l else { return };
        self.lightning_send_ssp_reply(ctx, session, s, body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payee's preimage depends on seed, user and counter only; its hash is the invoice's.
    #[test]
    fn payee_preimages_are_a_function_of_seed_user_and_counter() {
        let a = payee_preimage(&[1; 32], WalletId(0), 0);
        assert_eq!(a, payee_preimage(&[1; 32], WalletId(0), 0));
        assert_ne!(a, payee_preimage(&[1; 32], WalletId(1), 0));
        assert_ne!(a, payee_preimage(&[1; 32], WalletId(0), 1));
        assert_ne!(a, payee_preimage(&[2; 32], WalletId(0), 0));
    }
}
