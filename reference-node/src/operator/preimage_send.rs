//! Lightning send on the operator side (spark-protocol §4.8): `initiate_preimage_swap_v3{SEND}`
//! is a transfer of the user's leaves to the SSP whose refunds are HTLC refunds (§3.2 "HTLC
//! refund", built by `tx::htlc`), locked by a `PreimageRequest` WAITING_FOR_PREIMAGE. What
//! differs from a plain send (`send.rs` does the validation, co-signing and replication):
//! - every operator rebuilds the HTLC refunds from its own tables ([`expected_htlc_refunds`])
//!   and byte-compares them, so a wrong CSV or a wrong script is refused;
//! - the coordinator commits the transfer but withholds the sender's key tweak: it is applied
//!   only after the SSP's `provide_preimage` (hash checked, → PREIMAGE_SHARED), on the
//!   coordinator and, through the `PreimageRevealed` gossip, on every participant;
//! - the SSP returns a failed payment (`ReturnLightningPayment`), and the coordinator cancels a
//!   request still waiting at its expiry (the sender's `cancel_transfer` / the cron of §4.8 step
//!   5); both go through `apply_cancel`, which refuses once the preimage was shared.
//!
//! The rules are pure functions (tested below); the handlers wire them into the store.
use super::preimage::{check_preimage, provide, PreimageRequestRow, PreimageRow, PreimageStatus};
use super::store::{Db, TransferStatus};
use super::{Operator, WalletCall};
use crate::crypto::PublicKey;
use crate::msg::lightning::{PreimageReason, PreimageSwap};
use crate::msg::{GossipBody, InternalReply, TransferInit, TransferOutcome, TransferPackage, WalletReply};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::types::{Micros, NodeId, OperatorId, TransferId};

pub use super::preimage::expected_htlc_refunds;

/// The payment hash of `transfer` if it is a Lightning SEND preimage swap.
pub fn send_hash_of(db: &Db, transfer: TransferId) -> Option<[u8; 32]> {
    db.preimages
        .iter()
        .find(|(_, r)| r.request.as_ref().is_some_and(|q| q.transfer == transfer && q.reason == PreimageReason::Send))
        .map(|(h, _)| *h)
}

/// `initiate_preimage_swap_v3{SEND}` checks that need no store: the reason, the caller is the
/// sender, the receiver is the SSP, and the transferred value is the invoice amount plus the fee.
pub fn check_send_swap(swap: &PreimageSwap, caller: Option<&PublicKey>, sender: &PublicKey, receiver: &PublicKey, ssp: Option<&PublicKey>, value_sats: u64) -> Result<(), String> {
    if swap.reason != PreimageReason::Send {
        return Err("not a SEND preimage swap".into());
    }
    if caller != Some(sender) {
        return Err("the caller is not the sender of this preimage swap".into());
    }
    if ssp != Some(receiver) {
        return Err("a Lightning send must transfer to the service provider".into());
    }
    let due = swap.amount_sats.checked_add(swap.fee_sats).ok_or("amount + fee overflows")?;
    if value_sats != due {
        return Err(format!("the leaves carry {value_sats} sats, the invoice {} + fee {} = {due}", swap.amount_sats, swap.fee_sats));
    }
    Ok(())
}

/// The WAITING_FOR_PREIMAGE request row of a new SEND swap; refused when the hash already has a
/// request (a payment hash is paid once).
pub fn new_send_request(existing: Option<&PreimageRow>, transfer: TransferId) -> Result<PreimageRequestRow, String> {
    match existing.and_then(|r| r.request.as_ref()) {
        Some(q) if q.transfer == transfer => Err(format!("transfer {transfer} already exists")),
        Some(_) => Err("a preimage swap already exists for this payment hash".into()),
        None => Ok(PreimageRequestRow { reason: PreimageReason::Send, transfer, status: PreimageStatus::WaitingForPreimage, preimage: None }),
    }
}

/// The sender's key tweak of a SEND swap may be applied only once its preimage is shared
/// (spark-protocol §4.8 step 4: the resume task settles only preimage swaps whose preimage was
/// shared). Other transfers are not concerned.
pub fn check_settle_allowed(db: &Db, transfer: TransferId) -> Result<(), String> {
    let Some(h) = send_hash_of(db, transfer) else { return Ok(()) };
    match db.preimages.get(&h).and_then(|r| r.request.as_ref()).map(|q| q.status) {
        Some(PreimageStatus::PreimageShared) => Ok(()),
        other => Err(format!("Lightning send {transfer}: preimage not shared ({other:?}); the key tweak waits")),
    }
}

/// SEND requests this coordinator should cancel at `now`: still WAITING_FOR_PREIMAGE past the
/// transfer's expiry, transfer not settled.
pub fn expired_sends(db: &Db, me: OperatorId, now: Micros) -> Vec<TransferId> {
    db.preimages
        .values()
        .filter_map(|r| r.request.as_ref())
        .filter(|q| q.reason == PreimageReason::Send && q.status == PreimageStatus::WaitingForPreimage)
        .filter_map(|q| db.transfers.get(&q.transfer).map(|t| (q.transfer, t)))
        .filter(|(_, t)| t.coordinator == me && now > t.expiry && !t.status.is_sent() && t.status != TransferStatus::Returned)
        .map(|(id, _)| id)
        .collect()
}

impl Operator {
    /// Coordinator: `initiate_preimage_swap_v3{SEND}` from the sender. The request row is
    /// durable before the transfer machinery runs, so every check of `send.rs` (and every
    /// participant) expects HTLC refunds for it; a refused start leaves no row behind.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn initiate_preimage_send(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, from: NodeId, swap: PreimageSwap, transfer: TransferId, sender: PublicKey, receiver: PublicKey, expiry: Micros, package: TransferPackage) {
        let r = self.check_initiate_send(from, &swap, transfer, &sender, &receiver, &package);
        let row = match r {
            Ok(row) => row,
            Err(e) => {
                ctx.observe(Observation::Rejected { what: format!("{} InitiatePreimageSwap{{Send}} from {from}", self.cfg.id), reason: e.clone() });
                return Self::reply_wallet(ctx, call, Err(e));
            }
        };
        let mut db = self.store.begin();
        db.preimages.entry(swap.payment_hash).or_default().request = Some(row);
        self.store.commit(db);
        self.start_transfer(ctx, call, transfer, sender, receiver, expiry, package, Some(swap.clone()));
        self.forget_unstarted_send(swap.payment_hash, transfer);
    }

    fn check_initiate_send(&self, from: NodeId, swap: &PreimageSwap, transfer: TransferId, sender: &PublicKey, receiver: &PublicKey, package: &TransferPackage) -> Result<PreimageRequestRow, String> {
        if self.two_phase() {
            return Err("Lightning send is not served in two-phase commit mode yet".into());
        }
        let dir = &self.cfg.directory;
        let caller = match from {
            NodeId::Wallet(w) => dir.wallets.get(&w),
            _ => None,
        };
        let ssp = dir.ssp.and_then(|w| dir.wallets.get(&w));
        let db = self.store.read();
        let value = package.leaves.iter().filter_map(|l| db.leaves.get(&l.leaf)).map(|l| l.value_sats).sum();
        check_send_swap(swap, caller, sender, receiver, ssp, value)?;
        new_send_request(db.preimages.get(&swap.payment_hash), transfer)
    }

    /// The start was refused before anything was pending: drop the request row again.
    fn forget_unstarted_send(&mut self, payment_hash: [u8; 32], transfer: TransferId) {
        let db = self.store.read();
        if db.pending_sends.contains_key(&transfer) || db.transfers.contains_key(&transfer) {
            return;
        }
        let mut db = self.store.begin();
        if let Some(row) = db.preimages.get_mut(&payment_hash) {
            if row.request.as_ref().is_some_and(|q| q.transfer == transfer) {
                row.request = None;
            }
        }
        self.store.commit(db);
    }

    /// Participant: `InitiatePreimageSend`: record the request, then run the transfer's checks
    /// against it (HTLC refunds); a failed check leaves no row behind.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn initiate_preimage_send_participant(&mut self, ctx: &mut Ctx<'_>, coordinator: OperatorId, swap: PreimageSwap, init: TransferInit) -> Result<InternalReply, String> {
        let TransferInit { transfer, sender, receiver, expiry, package, signed_refunds } = init;
        let had = send_hash_of(self.store.read(), transfer) == Some(swap.payment_hash);
        if !had {
            let dir = &self.cfg.directory;
            let ssp = dir.ssp.and_then(|w| dir.wallets.get(&w));
            let db = self.store.read();
            let value = package.leaves.iter().filter_map(|l| db.leaves.get(&l.leaf)).map(|l| l.value_sats).sum();
            check_send_swap(&swap, Some(&sender), &sender, &receiver, ssp, value)?;
            let row = new_send_request(db.preimages.get(&swap.payment_hash), transfer)?;
            let mut db = self.store.begin();
            db.preimages.entry(swap.payment_hash).or_default().request = Some(row);
            self.store.commit(db);
        }
        let r = self.initiate_transfer(ctx, coordinator, transfer, sender, receiver, expiry, package, signed_refunds);
        if r.is_err() && !had {
            self.forget_unstarted_send(swap.payment_hash, transfer);
        }
        r
    }

    /// Coordinator of `transfer`: the SSP's `provide_preimage`. The hash is checked, the request
    /// moves to PREIMAGE_SHARED and the sender's tweak is applied in the same store transaction;
    /// the `PreimageRevealed` gossip does both on every participant. Idempotent for a retry.
    pub(super) fn provide_preimage(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, from: NodeId, transfer: TransferId, payment_hash: [u8; 32], preimage: [u8; 32]) {
        let r = self.try_provide(ctx, from, transfer, &payment_hash, &preimage);
        if let Err(e) = &r {
            ctx.observe(Observation::Rejected { what: format!("{} ProvidePreimage from {from}", self.cfg.id), reason: e.clone() });
        }
        Self::reply_wallet(ctx, call, r.map(|()| WalletReply::Preimage { payment_hash, preimage: Some(preimage) }));
    }

    fn try_provide(&mut self, ctx: &mut Ctx<'_>, from: NodeId, transfer: TransferId, payment_hash: &[u8; 32], preimage: &[u8; 32]) -> Result<(), String> {
        if !matches!(from, NodeId::Wallet(w) if self.cfg.directory.ssp == Some(w)) {
            return Err(format!("{from} is not the service provider"));
        }
        check_preimage(preimage, payment_hash)?;
        let db = self.store.read();
        if send_hash_of(db, transfer) != Some(*payment_hash) {
            return Err(format!("transfer {transfer} is not a Lightning send for this payment hash"));
        }
        let t = db.transfers.get(&transfer).ok_or_else(|| format!("no record of transfer {transfer} here"))?;
        if t.coordinator != self.cfg.id {
            return Err(format!("{} is not the coordinator of transfer {transfer}", self.cfg.id));
        }
        let already = db.preimages.get(payment_hash).and_then(|r| r.request.as_ref()).is_some_and(|q| q.status == PreimageStatus::PreimageShared);
        let mut db = self.store.begin();
        let row = db.preimages.get_mut(payment_hash).ok_or("no preimage request for this payment hash")?;
        provide(row, payment_hash, preimage)?;
        self.apply_settle_sender(&mut db, transfer)?;
        let others = self.others();
        let seq = (!already && !others.is_empty()).then(|| Self::gossip_create(&mut db, GossipBody::PreimageRevealed { transfer, payment_hash: *payment_hash, preimage: *preimage }, others));
        self.store.commit(db);
        if let Some(seq) = seq {
            self.gossip_push(ctx, seq);
        }
        if !already {
            ctx.observe(Observation::PreimageProvided { by: self.cfg.id, payment_hash: *payment_hash, preimage: *preimage, transfer });
        }
        Ok(())
    }

    /// Gossip `PreimageRevealed` at a participant, after `apply_revealed`: a SEND swap's
    /// sender tweak settles with it (one message, so no ordering between the two).
    pub(super) fn settle_send_after_reveal(&self, db: &mut Db, transfer: TransferId) -> Result<(), String> {
        if send_hash_of(db, transfer).is_none() {
            return Ok(());
        }
        self.apply_settle_sender(db, transfer)
    }

    /// Coordinator: the SSP's payment failed; return the transfer (refused once shared).
    pub(super) fn return_lightning_payment(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, from: NodeId, transfer: TransferId, payment_hash: [u8; 32]) {
        let r = if !matches!(from, NodeId::Wallet(w) if self.cfg.directory.ssp == Some(w)) {
            Err(format!("{from} is not the service provider"))
        } else if send_hash_of(self.store.read(), transfer) != Some(payment_hash) {
            Err(format!("transfer {transfer} is not a Lightning send for this payment hash"))
        } else if self.store.read().preimages.get(&payment_hash).and_then(|r| r.request.as_ref()).is_some_and(|q| q.status == PreimageStatus::PreimageShared) {
            Err("the preimage was shared: the swap can no longer be cancelled".into())
        } else {
            self.cancel_send(ctx, transfer);
            Ok(())
        };
        if let Err(e) = &r {
            ctx.observe(Observation::Rejected { what: format!("{} ReturnLightningPayment from {from}", self.cfg.id), reason: e.clone() });
        }
        let outcome = r.map(|()| self.query_transfer(transfer));
        Self::reply_wallet(ctx, call, outcome.map(|outcome| WalletReply::Transfer { transfer, outcome }));
    }

    /// On each block: cancel SEND swaps still waiting for their preimage past expiry (the
    /// sender's `cancel_transfer` after expiry, §4.8 step 5).
    pub(super) fn lightning_send_on_block(&mut self, ctx: &mut Ctx<'_>) {
        for t in expired_sends(self.store.read(), self.cfg.id, ctx.now) {
            ctx.observe(Observation::Rejected { what: format!("{} Lightning send {t}", self.cfg.id), reason: "expired waiting for the preimage: returned to the sender".into() });
            self.cancel_send(ctx, t);
        }
    }
}

/// `WalletReply::Transfer` outcome of a Lightning send as the sender reads it: the preimage (if
/// shared) tells it the payment went through.
pub fn send_outcome(db: &Db, transfer: TransferId) -> Option<(TransferOutcome, Option<[u8; 32]>)> {
    let h = send_hash_of(db, transfer)?;
    let q = db.preimages.get(&h)?.request.as_ref()?;
    Some(match q.status {
        PreimageStatus::PreimageShared => (TransferOutcome::Sent, q.preimage),
        PreimageStatus::Returned => (TransferOutcome::Returned, None),
        PreimageStatus::WaitingForPreimage => (TransferOutcome::InProgress, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use crate::crypto::SecretKey;
    use crate::crypto::identity::sha256;
    use crate::operator::store::TransferRow;
    use rand_core::SeedableRng;

    fn keys() -> (PublicKey, PublicKey, PublicKey) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        let mut k = || SecretKey::new(&mut rng).public_key(crate::crypto::secp());
        (k(), k(), k())
    }

    fn swap(amount: u64, fee: u64) -> PreimageSwap {
        PreimageSwap { reason: PreimageReason::Send, payment_hash: sha256(&[&[7u8; 32]]), amount_sats: amount, fee_sats: fee }
    }

    /// The sender must call, the receiver must be the SSP, and the leaves must carry exactly
    /// amount + fee.
    #[test]
    fn send_swaps_are_checked_against_caller_ssp_and_value() {
        let (user, ssp, other) = keys();
        assert!(check_send_swap(&swap(1000, 13), Some(&user), &user, &ssp, Some(&ssp), 1013).is_ok());
        assert!(check_send_swap(&swap(1000, 13), Some(&other), &user, &ssp, Some(&ssp), 1013).unwrap_err().contains("caller"));
        assert!(check_send_swap(&swap(1000, 13), Some(&user), &user, &other, Some(&ssp), 1013).unwrap_err().contains("service provider"));
        assert!(check_send_swap(&swap(1000, 13), Some(&user), &user, &ssp, Some(&ssp), 1012).unwrap_err().contains("1013"));
        let mut recv = swap(1000, 13);
        recv.reason = PreimageReason::Receive;
        assert!(check_send_swap(&recv, Some(&user), &user, &ssp, Some(&ssp), 1013).is_err());
        let (t, u) = (TransferId([1; 16]), TransferId([2; 16]));
        let row = PreimageRow { share: None, request: Some(new_send_request(None, t).unwrap()) };
        assert!(new_send_request(Some(&row), u).unwrap_err().contains("already exists for this payment hash"));
    }

    /// The sender's tweak waits for the preimage; a wrong preimage changes nothing; once shared
    /// the settle is allowed and cancelling is refused; an expired waiting send is cancelled by
    /// its coordinator only.
    #[test]
    fn the_settle_waits_for_the_preimage_and_cancel_is_refused_after() {
        let (user, ssp, _) = keys();
        let r = [7u8; 32];
        let h = sha256(&[&r]);
        let t = TransferId([3; 16]);
        let mut db = Db::default();
        db.transfers.insert(t, TransferRow { status: TransferStatus::SenderInitiatedCoordinator, sender: user, receiver: ssp, expiry: Micros::from_secs(100), coordinator: OperatorId(0), leaves: BTreeMap::new(), receiver_commit_decided: false });
        db.preimages.insert(h, PreimageRow { share: None, request: Some(new_send_request(None, t).unwrap()) });
        assert_eq!(send_hash_of(&db, t), Some(h));
        assert!(check_settle_allowed(&db, t).unwrap_err().contains("not shared"));
        assert_eq!(send_outcome(&db, t), Some((TransferOutcome::InProgress, None)));
        assert_eq!(expired_sends(&db, OperatorId(0), Micros::from_secs(99)), Vec::<TransferId>::new());
        assert_eq!(expired_sends(&db, OperatorId(0), Micros::from_secs(101)), vec![t]);
        assert!(expired_sends(&db, OperatorId(1), Micros::from_secs(101)).is_empty(), "only the coordinator cancels");
        let before = db.preimages[&h].clone();
        let row = db.preimages.get_mut(&h).unwrap();
        assert!(provide(row, &h, &[8; 32]).is_err());
        assert_eq!(db.preimages[&h], before, "a wrong preimage is refused without a change");
        provide(db.preimages.get_mut(&h).unwrap(), &h, &r).unwrap();
        assert!(check_settle_allowed(&db, t).is_ok());
        assert_eq!(send_outcome(&db, t), Some((TransferOutcome::Sent, Some(r))));
        assert!(Operator::apply_cancel(&mut db, t).unwrap_err().contains("no longer be cancelled"));
        assert_eq!(db.transfers[&t].status, TransferStatus::SenderInitiatedCoordinator);
        assert!(expired_sends(&db, OperatorId(0), Micros::from_secs(101)).is_empty(), "shared: never cancelled");
    }
}
