//! Lightning at the service provider (spark-protocol §4.7): the simulated Lightning network
//! behind the SSP (hold invoices, the payer's HTLC, payments that can fail), and the SSP's side
//! of a receive — on the payer's HTLC, a preimage swap (`initiate_preimage_swap_v3{RECEIVE}`)
//! of one of its leaves to the user; the operators reconstruct r and the SSP settles the HTLC
//! with it, or fails the HTLC back when the swap is returned.
//!
//! Determinism: the network draws nothing from the node's stream. Whether a payment fails is a
//! function of the run's "ssp/lightning" seed and the payment hash (`LightningParams`).

use super::lightning::LnOp;
use super::{Command, LeafState, Op, Wallet};
use crate::crypto::identity::sha256;
use crate::msg::lightning::{Invoice, LightningParams, PreimageReason, PreimageSwap};
use crate::msg::{SspReply, TransferOutcome, WalletReply, WalletRequest};
use crate::node::{Ctx, TimerKind};
use crate::observe::Observation;
use crate::types::{LeafId, Micros, TransferId, WalletId};
use std::collections::BTreeMap;

/// Hold invoices live 30 days (the SDK's default Lightning invoice expiry).
pub const INVOICE_EXPIRY: Micros = Micros::from_secs(30 * 24 * 3600);

/// Where an invoice the SSP issued stands on the (simulated) Lightning side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvoiceState {
    /// Issued; no HTLC yet.
    Open,
    /// The payer's HTLC is held at the SSP until the preimage is known.
    Held,
    /// Settled with the preimage: the payer paid, the SSP was paid.
    Settled { preimage: [u8; 32] },
    /// The HTLC was failed back (the swap was returned): nobody paid.
    Failed,
}

/// The simulated Lightning network as the SSP sees it.
#[derive(Clone, Debug, Default)]
pub struct LightningNetwork {
    pub invoices: BTreeMap<[u8; 32], (Invoice, WalletId, InvoiceState)>,
    /// Lightning send: invoices the SSP pays for its users (lightning_send.rs).
    pub outgoing: BTreeMap<[u8; 32], super::lightning_send::Outgoing>,
}

/// Whether the payment for `payment_hash` fails: one SHA-256 draw from (seed, hash).
pub fn payment_fails(p: &LightningParams, payment_hash: &[u8; 32]) -> bool {
    let d = sha256(&[&p.seed, b"pay", payment_hash]);
    let draw = u32::from_le_bytes([d[0], d[1], d[2], d[3]]) % 1_000_000;
    draw < p.failure_ppm
}

impl LightningNetwork {
    /// A hold invoice for `payment_hash` (the user's H: the SSP never learns r from it).
    pub fn issue(&mut self, now: Micros, user: WalletId, payment_hash: [u8; 32], amount_sats: u64) -> Result<Invoice, String> {
        if let Some((inv, u, _)) = self.invoices.get(&payment_hash) {
            // A retried request: the same invoice, never a second one for another user.
            return if *u == user && inv.amount_sats == amount_sats { Ok(inv.clone()) } else { Err("payment hash already used".into()) };
        }
        let invoice = Invoice { payment_hash, amount_sats, expires_at: now + INVOICE_EXPIRY };
        self.invoices.insert(payment_hash, (invoice.clone(), user, InvoiceState::Open));
        Ok(invoice)
    }

    /// The payer's HTLC arrives: held (only an open, unexpired invoice).
    pub fn hold(&mut self, now: Micros, payment_hash: &[u8; 32]) -> Result<(), String> {
        let (inv, _, st) = self.invoices.get_mut(payment_hash).ok_or("unknown invoice")?;
        if *st != InvoiceState::Open || now > inv.expires_at {
            return Err(format!("invoice is {st:?}"));
        }
        *st = InvoiceState::Held;
        Ok(())
    }

    /// Settle the held HTLC: only with a preimage that hashes to the invoice's hash.
    pub fn settle(&mut self, payment_hash: &[u8; 32], preimage: &[u8; 32]) -> Result<(), String> {
        let (_, _, st) = self.invoices.get_mut(payment_hash).ok_or("unknown invoice")?;
        if sha256(&[preimage]) != *payment_hash {
            return Err("the preimage does not match the invoice".into());
        }
        match st {
            InvoiceState::Held | InvoiceState::Settled { .. } => {
                *st = InvoiceState::Settled { preimage: *preimage };
                Ok(())
            }
            other => Err(format!("cannot settle an invoice that is {other:?}")),
        }
    }

    /// Fail the held HTLC back to the payer.
    pub fn fail(&mut self, payment_hash: &[u8; 32]) {
        if let Some((_, _, st)) = self.invoices.get_mut(payment_hash) {
            if *st == InvoiceState::Held {
                *st = InvoiceState::Failed;
            }
        }
    }
}

/// The SSP's preimage swap for one held HTLC.
pub(super) struct PreimageSwapOp {
    attempt: u8,
    payment_hash: [u8; 32],
    leaf: LeafId,
    stage: Stage,
}

enum Stage {
    Commitments,
    Start { transfer: TransferId },
    QueryTransfer { transfer: TransferId },
    QueryPreimage { transfer: TransferId },
}

impl Wallet {
    /// Service side of `requestLightningReceive`: a hold invoice, and the simulated payer.
    pub(super) fn ssp_lightning_request(&mut self, ctx: &mut Ctx<'_>, from: WalletId, payment_hash: [u8; 32], amount_sats: u64) -> Result<SspReply, String> {
        // Spark moves whole leaves: the SSP must hold one worth exactly the invoice amount.
        if !self.leaves.values().any(|l| l.state == LeafState::Available && l.value_sats == amount_sats) {
            return Err(format!("no liquidity leaf of exactly {amount_sats} sats"));
        }
        let fresh = !self.ln.invoices.contains_key(&payment_hash);
        let invoice = self.ln.issue(ctx.now, from, payment_hash, amount_sats)?;
        if fresh && !payment_fails(&self.cfg.params.lightning, &payment_hash) {
            ctx.set_timer(self.cfg.params.lightning.payer_delay, TimerKind::LightningPayerHtlc(payment_hash));
        }
        Ok(SspReply::Invoice(invoice))
    }

    /// The payer's HTLC reached the SSP: hold it and run the preimage swap.
    pub(super) fn on_payer_htlc(&mut self, ctx: &mut Ctx<'_>, payment_hash: [u8; 32]) {
        if let Err(e) = self.ln.hold(ctx.now, &payment_hash) {
            return ctx.observe(Observation::Rejected { what: format!("{} payer HTLC", self.cfg.id), reason: e });
        }
        self.queue.push_back((Command::LightningSwap { payment_hash }, 0));
        self.start_next(ctx);
    }

    pub(super) fn start_preimage_swap(&mut self, ctx: &mut Ctx<'_>, payment_hash: [u8; 32], attempt: u8) {
        let Some((invoice, _, InvoiceState::Held)) = self.ln.invoices.get(&payment_hash) else { return self.start_next(ctx) };
        let amount = invoice.amount_sats;
        let leaf = self.leaves.iter().find(|(_, l)| l.state == LeafState::Available && l.value_sats == amount && l.refunds.sequences().is_ok_and(|(c, _)| self.cfg.params.next_refund_sequences(c).is_ok()));
        let Some((leaf, _)) = leaf else {
            self.lightning_receive_failed(ctx, payment_hash, format!("no available leaf of {amount} sats"));
            return self.start_next(ctx);
        };
        let leaf = *leaf;
        self.begin(Op::Lightning(Box::new(LnOp::Swap(PreimageSwapOp { attempt, payment_hash, leaf, stage: Stage::Commitments }))));
        let to = self.cfg.coordinator;
        self.request(ctx, to, WalletRequest::GetSigningCommitments { leaf, count: 3 });
        self.arm_timeout(ctx);
    }

    fn lightning_receive_failed(&mut self, ctx: &mut Ctx<'_>, payment_hash: [u8; 32], reason: String) {
        self.ln.fail(&payment_hash);
        ctx.observe(Observation::LightningReceiveFailed { ssp: self.cfg.id, payment_hash, reason });
    }

    fn preimage_swap_continue(&mut self, ctx: &mut Ctx<'_>, session: u64, s: PreimageSwapOp, request: WalletRequest) {
        self.op = Some((session, Op::Lightning(Box::new(LnOp::Swap(s)))));
        self.new_round();
        let to = self.cfg.coordinator;
        self.request(ctx, to, request);
        self.arm_timeout(ctx);
    }

    pub(super) fn preimage_swap_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: PreimageSwapOp, body: Result<WalletReply, String>) {
        let hash = s.payment_hash;
        match (&s.stage, body) {
            (Stage::Commitments, Ok(WalletReply::SigningCommitments { commitments })) => {
                let Some((invoice, user, _)) = self.ln.invoices.get(&hash).cloned() else { return self.finish(ctx) };
                let Some(user_key) = self.cfg.directory.wallets.get(&user).copied() else { return self.finish(ctx) };
                match self.build_transfer_to(ctx, s.leaf, user_key, commitments) {
                    Ok((transfer, _, _, WalletRequest::StartTransfer { transfer: t, sender, receiver, expiry, package })) => {
                        if let Some(l) = self.leaves.get_mut(&s.leaf) {
                            l.state = LeafState::Sending(transfer);
                        }
                        let swap = PreimageSwap { reason: PreimageReason::Receive, payment_hash: hash, amount_sats: invoice.amount_sats, fee_sats: 0 };
                        s.stage = Stage::Start { transfer };
                        self.preimage_swap_continue(ctx, session, s, WalletRequest::InitiatePreimageSwap { swap, transfer: t, sender, receiver, expiry, package });
                    }
                    Ok(_) => self.finish(ctx),
                    Err(e) => self.preimage_swap_retry(ctx, s, e),
                }
            }
            (Stage::Commitments, Err(e)) => self.preimage_swap_retry(ctx, s, e),
            // Every answer about the transfer leads to its durable outcome.
            (Stage::Start { transfer } | Stage::QueryTransfer { transfer }, Ok(WalletReply::Transfer { outcome, .. })) => {
                let transfer = *transfer;
                match outcome {
                    TransferOutcome::Sent => {
                        s.stage = Stage::QueryPreimage { transfer };
                        self.preimage_swap_continue(ctx, session, s, WalletRequest::QueryPreimage { payment_hash: hash });
                    }
                    TransferOutcome::Returned | TransferOutcome::Unknown => self.preimage_swap_returned(ctx, s, transfer),
                    TransferOutcome::InProgress => {
                        self.op = Some((session, Op::Lightning(Box::new(LnOp::Swap(s)))));
                        self.new_round();
                        self.arm_timeout(ctx);
                    }
                }
            }
            (Stage::Start { transfer }, Err(e)) => {
                ctx.observe(Observation::Rejected { what: format!("{} preimage swap {transfer}", self.cfg.id), reason: e });
                self.preimage_swap_timeout(ctx, session, s);
            }
            (Stage::QueryPreimage { transfer }, Ok(WalletReply::Preimage { preimage: Some(r), .. })) => {
                let transfer = *transfer;
                match self.ln.settle(&hash, &r) {
                    Ok(()) => {
                        ctx.observe(Observation::LightningReceiveSettled { ssp: self.cfg.id, payment_hash: hash, preimage: r, transfer });
                        if let Some(l) = self.leaves.remove(&s.leaf) {
                            let receiver = self.ln.invoices.get(&hash).and_then(|(_, u, _)| self.cfg.directory.wallets.get(u).copied());
                            if let Some(receiver) = receiver {
                                ctx.observe(Observation::TransferSent { transfer, sender: self.cfg.id, receiver, leaf: s.leaf, value_sats: l.value_sats });
                            }
                            self.sent_away.insert(s.leaf, l);
                        }
                        self.finish(ctx);
                    }
                    Err(e) => {
                        ctx.observe(Observation::Rejected { what: format!("{} settling HTLC", self.cfg.id), reason: e });
                        self.finish(ctx);
                    }
                }
            }
            _ => {
                // Not yet shared, or an unexpected answer: ask again after the timeout.
                self.op = Some((session, Op::Lightning(Box::new(LnOp::Swap(s)))));
                self.new_round();
                self.arm_timeout(ctx);
            }
        }
    }

    pub(super) fn preimage_swap_timeout(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: PreimageSwapOp) {
        match s.stage {
            Stage::Commitments => self.preimage_swap_retry(ctx, s, "commitments timed out".into()),
            Stage::Start { transfer } | Stage::QueryTransfer { transfer } => {
                s.stage = Stage::QueryTransfer { transfer };
                self.preimage_swap_continue(ctx, session, s, WalletRequest::QueryTransfer { transfer });
            }
            Stage::QueryPreimage { .. } => {
                let hash = s.payment_hash;
                self.preimage_swap_continue(ctx, session, s, WalletRequest::QueryPreimage { payment_hash: hash });
            }
        }
    }

    /// Before any transfer exists: try again later, or give the payer its money back.
    fn preimage_swap_retry(&mut self, ctx: &mut Ctx<'_>, s: PreimageSwapOp, reason: String) {
        if s.attempt + 1 < super::MAX_ATTEMPTS {
            self.fail(ctx, Some((Command::LightningSwap { payment_hash: s.payment_hash }, s.attempt)), format!("preimage swap: {reason}"));
        } else {
            self.lightning_receive_failed(ctx, s.payment_hash, reason.clone());
            self.fail(ctx, None, format!("preimage swap: {reason}"));
        }
    }

    /// The swap was returned: the SSP keeps its leaf, the payer's HTLC is failed back.
    fn preimage_swap_returned(&mut self, ctx: &mut Ctx<'_>, s: PreimageSwapOp, transfer: TransferId) {
        if let Some(l) = self.leaves.get_mut(&s.leaf) {
            l.state = LeafState::Available;
        }
        ctx.observe(Observation::TransferReturned { transfer, sender: self.cfg.id });
        self.lightning_receive_failed(ctx, s.payment_hash, format!("preimage swap {transfer} returned"));
        self.finish(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The network holds only open invoices, settles only with the right preimage, and fails a
    /// held HTLC back; whether a payment fails depends on the seed and hash alone.
    #[test]
    fn hold_invoices_settle_only_with_the_preimage() {
        let r = [3u8; 32];
        let h = sha256(&[&r]);
        let mut ln = LightningNetwork::default();
        let inv = ln.issue(Micros::ZERO, WalletId(0), h, 1024).unwrap();
        assert_eq!(ln.issue(Micros::ZERO, WalletId(0), h, 1024), Ok(inv.clone()), "a retried request gets the same invoice");
        assert!(ln.issue(Micros::ZERO, WalletId(1), h, 1024).is_err());
        assert!(ln.settle(&h, &r).is_err(), "nothing held yet");
        assert!(ln.hold(inv.expires_at + Micros::from_secs(1), &h).is_err(), "expired");
        ln.hold(Micros::ZERO, &h).unwrap();
        assert!(ln.settle(&h, &[4; 32]).unwrap_err().contains("does not match"));
        ln.settle(&h, &r).unwrap();
        assert_eq!(ln.invoices[&h].2, InvoiceState::Settled { preimage: r });
        let h2 = sha256(&[&[5u8; 32]]);
        ln.issue(Micros::ZERO, WalletId(0), h2, 1).unwrap();
        ln.hold(Micros::ZERO, &h2).unwrap();
        ln.fail(&h2);
        assert_eq!(ln.invoices[&h2].2, InvoiceState::Failed);

        let mut p = LightningParams { failure_ppm: 0, payer_delay: Micros::ZERO, seed: [1; 32] };
        assert!(!payment_fails(&p, &h));
        p.failure_ppm = 1_000_000;
        assert!(payment_fails(&p, &h));
        p.failure_ppm = 500_000;
        let fails = (0u8..200).filter(|i| payment_fails(&p, &sha256(&[&[*i]]))).count();
        assert!((60..140).contains(&fails), "{fails} of 200 at 50%");
    }
}
