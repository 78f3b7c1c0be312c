//! Lightning receive, the user's side (spark-protocol §4.7 steps 1–2): make a preimage r, ask the
//! SSP for a hold invoice with H = SHA256(r), Feldman-split r t-of-n and store one share with
//! each operator. The user then needs to do nothing more: when the payer pays, the SSP's preimage
//! swap sends it leaves, which it claims like any transfer (§4.2). The operation state of the
//! SSP's side lives in `ssp_lightning.rs`; both run as [`LnOp`]s.

use super::ssp_lightning::PreimageSwapOp;
use super::{Command, Op, Wallet};
use crate::crypto::identity::sha256;
use crate::crypto::vss::{self, VssShare};
use crate::crypto::Scalar;
use crate::msg::lightning::{Invoice, PreimageShareRequest};
use crate::msg::{ReqId, SspReply, SspRequest, WalletReply, WalletRequest};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::params::Params;
use crate::types::{NodeId, OperatorId};

/// A Lightning operation in flight (one at a time, like every wallet operation).
pub(super) enum LnOp {
    /// The user's receive.
    Receive(ReceiveOp),
    /// The SSP's preimage swap for a held HTLC (ssp_lightning.rs).
    Swap(PreimageSwapOp),
    /// Lightning send, the user's side (lightning_send.rs).
    Send(super::lightning_send::SendLnOp),
    /// Lightning send, the SSP paying an invoice (lightning_send.rs).
    Pay(super::lightning_send::PayOp),
}

pub(super) struct ReceiveOp {
    attempt: u8,
    sats: u64,
    preimage: [u8; 32],
    payment_hash: [u8; 32],
    /// Set once the SSP issued the invoice: the shares are being stored.
    invoice: Option<Invoice>,
}

/// A fresh preimage (a scalar, so that it can be Feldman-split) and its payment hash.
pub fn new_preimage(rng: &mut rand_chacha::ChaCha20Rng) -> ([u8; 32], [u8; 32]) {
    let r = Scalar::random(rng);
    (r.0, sha256(&[&r.0]))
}

/// One `store_preimage_share` per operator: r split t-of-n with Feldman proofs.
pub fn preimage_share_requests(p: &Params, preimage: &[u8; 32], invoice: &Invoice, user: crate::crypto::PublicKey, rng: &mut rand_chacha::ChaCha20Rng) -> Result<Vec<(OperatorId, PreimageShareRequest)>, String> {
    let r = Scalar::from_bytes(*preimage).ok_or("the preimage is not a scalar")?;
    let shares: Vec<VssShare> = vss::split_with_proofs(&r, p.threshold, p.operators, rng).map_err(|e| e.to_string())?;
    Ok(p.operator_ids()
        .zip(shares)
        .map(|(op, share)| (op, PreimageShareRequest { payment_hash: invoice.payment_hash, share, threshold: p.threshold, invoice: invoice.clone(), user_identity: user }))
        .collect())
}

impl Wallet {
    pub(super) fn start_lightning_receive(&mut self, ctx: &mut Ctx<'_>, sats: u64, attempt: u8) {
        if self.cfg.directory.ssp.is_none() || self.is_ssp() {
            ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: "lightning receive: no service provider".into() });
            return self.start_next(ctx);
        }
        let (preimage, payment_hash) = new_preimage(ctx.rng);
        self.begin(Op::Lightning(Box::new(LnOp::Receive(ReceiveOp { attempt, sats, preimage, payment_hash, invoice: None }))));
        self.ssp_request(ctx, SspRequest::LightningInvoice { payment_hash, amount_sats: sats });
        self.arm_timeout(ctx);
    }

    /// The SSP answered (only the receive waits for it).
    pub(super) fn lightning_ssp_reply(&mut self, ctx: &mut Ctx<'_>, from: NodeId, req: ReqId, body: Result<SspReply, String>) {
        if matches!(&self.op, Some((_, Op::Lightning(l))) if matches!(**l, LnOp::Send(_))) {
            return self.lightning_send_on_ssp_reply(ctx, from, req, body); // Lightning send
        }
        if !matches!(from, NodeId::Wallet(w) if Some(w) == self.cfg.directory.ssp) {
            return;
        }
        match &self.op {
            Some((s, Op::Lightning(l))) if *s == req.session && matches!(**l, LnOp::Receive(ReceiveOp { invoice: None, .. })) => {}
            _ => return, // stale
        }
        let Some((session, Op::Lightning(l))) = self.op.take() else { return };
        let LnOp::Receive(mut r) = *l else { return };
        let retry = Some((Command::LightningReceive { sats: r.sats }, r.attempt));
        let invoice = match body {
            Ok(SspReply::Invoice(i)) if i.payment_hash == r.payment_hash && i.amount_sats == r.sats => i,
            Ok(other) => return self.fail(ctx, retry, format!("lightning receive: unexpected SSP reply {other:?}")),
            Err(e) => return self.fail(ctx, retry, format!("lightning receive: {e}")),
        };
        let user = self.identity_public();
        let requests = match preimage_share_requests(&self.cfg.params, &r.preimage, &invoice, user, ctx.rng) {
            Ok(v) => v,
            Err(e) => return self.fail(ctx, retry, format!("lightning receive: {e}")),
        };
        ctx.observe(Observation::LightningInvoiceIssued { wallet: self.cfg.id, payment_hash: invoice.payment_hash, amount_sats: invoice.amount_sats, threshold: self.cfg.params.threshold });
        r.invoice = Some(invoice);
        self.op = Some((session, Op::Lightning(Box::new(LnOp::Receive(r)))));
        self.new_round();
        for (op, req) in requests {
            self.request(ctx, op, WalletRequest::StorePreimageShare(Box::new(req)));
        }
        self.arm_timeout(ctx);
    }

    /// An operator answered a request of a Lightning operation.
    pub(super) fn lightning_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, from: OperatorId, l: LnOp, body: Result<WalletReply, String>) {
        match l {
            LnOp::Receive(r) => {
                let retry = Some((Command::LightningReceive { sats: r.sats }, r.attempt));
                match body {
                    Ok(WalletReply::PreimageShareStored) if self.waiting.is_empty() => self.finish(ctx),
                    Ok(WalletReply::PreimageShareStored) => self.op = Some((session, Op::Lightning(Box::new(LnOp::Receive(r))))),
                    Ok(other) => self.fail(ctx, retry, format!("lightning receive: {from} answered {other:?}")),
                    Err(e) => self.fail(ctx, retry, format!("lightning receive: {from} refused the preimage share: {e}")),
                }
            }
            LnOp::Swap(s) => self.preimage_swap_reply(ctx, session, s, body),
            LnOp::Send(s) => self.lightning_send_reply(ctx, session, s, body),
            LnOp::Pay(p) => self.lightning_pay_reply(ctx, p, body),
        }
    }

    pub(super) fn lightning_timeout(&mut self, ctx: &mut Ctx<'_>, session: u64, l: LnOp) {
        match l {
            LnOp::Receive(r) => {
                let retry = Some((Command::LightningReceive { sats: r.sats }, r.attempt));
                self.fail(ctx, retry, "lightning receive timed out".into());
            }
            LnOp::Swap(s) => self.preimage_swap_timeout(ctx, session, s),
            LnOp::Send(s) => self.lightning_send_timeout(ctx, session, s),
            LnOp::Pay(p) => self.lightning_pay_timeout(ctx, p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    /// The shares a user stores reconstruct its preimage from any t of them, every operator's
    /// share passes its checks, and fewer than t give nothing that hashes to H.
    #[test]
    fn the_stored_shares_reconstruct_the_preimage() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let p = Params::new(5, 3);
        let (r, h) = new_preimage(&mut rng);
        let user = crate::crypto::SecretKey::new(&mut rng).public_key(crate::crypto::secp());
        let invoice = Invoice { payment_hash: h, amount_sats: 1024, expires_at: crate::types::Micros::from_secs(60) };
        let reqs = preimage_share_requests(&p, &r, &invoice, user, &mut rng).unwrap();
        assert_eq!(reqs.len(), 5);
        for (op, req) in &reqs {
            crate::operator::preimage::check_store_share(*op, 3, req, None).unwrap();
        }
        let shares: Vec<VssShare> = reqs.iter().map(|(_, q)| q.share.clone()).collect();
        assert_eq!(crate::operator::preimage::reconstruct(&shares[1..4], 3, &h), Ok(r));
        let two: Vec<(u32, Scalar)> = shares[..2].iter().map(|s| (s.x, s.share)).collect();
        assert_ne!(sha256(&[&vss::recover_secret(&two).unwrap().0]), h, "t − 1 shares must not give r");
    }
}
