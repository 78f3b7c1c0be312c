//! Lightning on the operator side (spark-protocol §2.8, §4.7, §4.8): preimage shares stored for a
//! receive, the `PreimageRequest` of a preimage swap, share release gated on the operator's own
//! transfer records, the coordinator's reconstruction and hash check, `provide_preimage`, and the
//! rule that a swap whose preimage was shared can no longer be cancelled.
//!
//! The rules are pure functions over the rows below (tested on their own); the handlers at the
//! end wire them into the operator's store and sessions.

use super::send::SendSession;
use super::store::{Db, TransferRow};
use super::{Operator, Step, WalletCall};
use crate::crypto::identity::sha256;
use crate::crypto::vss::{self, VssShare};
use crate::crypto::PublicKey;
use crate::msg::lightning::{Invoice, PreimageReason, PreimageShareRequest, PreimageSwap};
use crate::msg::{GossipBody, InternalReply, InternalRequest, WalletReply, WalletRequest};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::types::{NodeId, OperatorId, TransferId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One operator's share of a receive's preimage (`store_preimage_share`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPreimageShare {
    pub share: VssShare,
    pub threshold: u16,
    pub invoice: Invoice,
    pub user_identity: PublicKey,
}

/// Spark's `PreimageRequest` statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PreimageStatus {
    WaitingForPreimage,
    PreimageShared,
    Returned,
}

/// A preimage swap's request row: which transfer it releases and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreimageRequestRow {
    pub reason: PreimageReason,
    pub transfer: TransferId,
    pub status: PreimageStatus,
    /// Known once shared (reconstructed or provided), checked against the hash.
    pub preimage: Option<[u8; 32]>,
}

/// Everything one operator holds about one payment hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreimageRow {
    pub share: Option<StoredPreimageShare>,
    pub request: Option<PreimageRequestRow>,
}

/// `store_preimage_share` checks: the share is this operator's, matches its Feldman proofs
/// (`threshold` of them, the deployment's threshold), the invoice's hash is the request's, and a
/// share already stored for the hash is not replaced by a different one.
pub fn check_store_share(me: OperatorId, threshold: u16, req: &PreimageShareRequest, existing: Option<&PreimageRow>) -> Result<StoredPreimageShare, String> {
    if req.invoice.payment_hash != req.payment_hash {
        return Err("the invoice's payment hash is not the request's".into());
    }
    if req.threshold != threshold {
        return Err(format!("threshold {} is not the deployment's {threshold}", req.threshold));
    }
    if req.share.x != me.share_x() {
        return Err(format!("share is for x={}, I am x={}", req.share.x, me.share_x()));
    }
    if req.share.proofs.len() != usize::from(threshold) {
        return Err(format!("{} proofs for threshold {threshold}", req.share.proofs.len()));
    }
    vss::validate_share(&req.share).map_err(|e| format!("preimage share: {e}"))?;
    let stored = StoredPreimageShare { share: req.share.clone(), threshold, invoice: req.invoice.clone(), user_identity: req.user_identity };
    match existing.and_then(|r| r.share.as_ref()) {
        Some(old) if *old != stored => Err("a different share is already stored for this payment hash".into()),
        _ => Ok(stored),
    }
}

/// Whether this operator may release its share for `transfer` (spark-protocol §4.7 step 4): it
/// holds a share for the hash, and its *own* records of the transfer exist and pay the invoice's
/// user exactly the invoice amount. `value_of` gives a transfer's total leaf value.
pub fn check_release(row: Option<&PreimageRow>, transfer: TransferId, record: Option<&TransferRow>, value: u64) -> Result<VssShare, String> {
    let stored = row.and_then(|r| r.share.as_ref()).ok_or("no preimage share stored for this payment hash")?;
    let record = record.ok_or_else(|| format!("no record of transfer {transfer} here yet"))?;
    if record.status == super::store::TransferStatus::Returned {
        return Err(format!("transfer {transfer} was returned"));
    }
    if record.receiver != stored.user_identity {
        return Err(format!("transfer {transfer} does not pay the invoice's user"));
    }
    if value != stored.invoice.amount_sats {
        return Err(format!("transfer {transfer} carries {value} sats, the invoice {}", stored.invoice.amount_sats));
    }
    Ok(stored.share.clone())
}

/// The coordinator's reconstruction (spark-protocol §4.7 step 5): r from at least `threshold`
/// distinct shares, each checked against its proofs, and SHA256(r) must be H.
pub fn reconstruct(shares: &[VssShare], threshold: u16, payment_hash: &[u8; 32]) -> Result<[u8; 32], String> {
    if shares.len() < usize::from(threshold) {
        return Err(format!("{} preimage shares for threshold {threshold}", shares.len()));
    }
    for s in shares {
        vss::validate_share(s).map_err(|e| format!("preimage share: {e}"))?;
    }
    let points: Vec<(u32, crate::crypto::Scalar)> = shares.iter().take(usize::from(threshold)).map(|s| (s.x, s.share)).collect();
    let r = vss::recover_secret(&points).map_err(|e| e.to_string())?;
    check_preimage(&r.0, payment_hash)?;
    Ok(r.0)
}

/// SHA256(r) = H.
pub fn check_preimage(preimage: &[u8; 32], payment_hash: &[u8; 32]) -> Result<(), String> {
    if sha256(&[preimage]) == *payment_hash {
        Ok(())
    } else {
        Err("SHA256(preimage) is not the payment hash".into())
    }
}

/// `provide_preimage` (spark-protocol §4.8 step 4): a SEND request waiting for its preimage
/// moves to PREIMAGE_SHARED once the hash matches; a second identical call is idempotent.
pub fn provide(row: &mut PreimageRow, payment_hash: &[u8; 32], preimage: &[u8; 32]) -> Result<TransferId, String> {
    check_preimage(preimage, payment_hash)?;
    let req = row.request.as_mut().ok_or("no preimage request for this payment hash")?;
    match req.status {
        PreimageStatus::WaitingForPreimage | PreimageStatus::PreimageShared => {
            req.status = PreimageStatus::PreimageShared;
            req.preimage = Some(*preimage);
            Ok(req.transfer)
        }
        PreimageStatus::Returned => Err("the preimage swap was already returned".into()),
    }
}

/// Cancel / return a preimage swap: refused once the preimage is shared (spark-protocol §4.2
/// cancel rules, §4.8 step 5), otherwise the request is RETURNED.
pub fn cancel(row: &mut PreimageRow) -> Result<(), String> {
    let Some(req) = row.request.as_mut() else { return Ok(()) };
    match req.status {
        PreimageStatus::PreimageShared => Err("the preimage was shared: the swap can no longer be cancelled".into()),
        PreimageStatus::WaitingForPreimage | PreimageStatus::Returned => {
            req.status = PreimageStatus::Returned;
            Ok(())
        }
    }
}

/// The payment hash a transfer is a preimage swap for, if any.
pub fn hash_of_transfer(db: &Db, transfer: TransferId) -> Option<[u8; 32]> {
    db.preimages.iter().find(|(_, r)| r.request.as_ref().is_some_and(|q| q.transfer == transfer)).map(|(h, _)| *h)
}

/// Lightning send (spark-protocol §3.2, §4.8 step 2): the HTLC refunds an operator expects for a
/// leaf sent to the SSP, rebuilt from its own stored node txs and refund CSV — CSV (current −
/// 100) + 70, direct + 85, paying P2TR(NUMS; {hashlock → SSP, CSV 2160 → sender}). Groundwork for
/// `initiate_preimage_swap_v3{SEND}` (preimage_send.rs).
pub fn expected_htlc_refunds(nodes: &crate::msg::NodeSet, current: &crate::msg::RefundSet, payment_hash: &[u8; 32], ssp: &PublicKey, sender: &PublicKey) -> Result<crate::msg::RefundSet, String> {
    let (seq, _) = current.sequences()?;
    let (next, direct) = crate::tx::timelock::htlc_next_sequences(seq, false).map_err(|e| e.to_string())?;
    let r = crate::tx::htlc::lightning_htlc_refund_txs(&nodes.cpfp, Some(&nodes.direct), next, direct, payment_hash, ssp, sender).map_err(|e| e.to_string())?;
    Ok(crate::msg::RefundSet { cpfp: r.cpfp, direct: r.direct.ok_or("no direct HTLC refund built")?, direct_from_cpfp: r.direct_from_cpfp })
}

/// `apply_cancel`'s Lightning rule: refused once the transfer's preimage was shared; otherwise
/// its request (if any) is RETURNED with it.
pub(super) fn cancel_swap_of(db: &mut Db, transfer: TransferId) -> Result<(), String> {
    match hash_of_transfer(db, transfer).and_then(|h| db.preimages.get_mut(&h)) {
        Some(row) => cancel(row),
        None => Ok(()),
    }
}

/// Gossip `PreimageRevealed` at a participant: check the hash, record the request as shared.
pub(super) fn apply_revealed(db: &mut Db, transfer: TransferId, payment_hash: &[u8; 32], preimage: &[u8; 32]) -> Result<(), String> {
    check_preimage(preimage, payment_hash)?;
    let row = db.preimages.entry(*payment_hash).or_default();
    let req = row.request.get_or_insert(PreimageRequestRow { reason: PreimageReason::Receive, transfer, status: PreimageStatus::WaitingForPreimage, preimage: None });
    if req.transfer != transfer {
        return Err("the payment hash belongs to another transfer".into());
    }
    req.status = PreimageStatus::PreimageShared;
    req.preimage = Some(*preimage);
    Ok(())
}

/// Total value of a transfer's leaves, from this operator's own tables.
fn transfer_value(db: &Db, record: &TransferRow) -> u64 {
    record.leaves.keys().filter_map(|l| db.leaves.get(l)).map(|l| l.value_sats).sum()
}

impl Operator {
    pub(super) fn on_lightning_request(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, from: NodeId, body: WalletRequest) {
        match body {
            WalletRequest::StorePreimageShare(req) => {
                let r = self.store_preimage_share(ctx, from, &req);
                Self::reply_wallet(ctx, call, r.map(|()| WalletReply::PreimageShareStored));
            }
            // Lightning send (preimage_send.rs).
            WalletRequest::InitiatePreimageSwap { swap, transfer, sender, receiver, expiry, package } if swap.reason == PreimageReason::Send => {
                self.initiate_preimage_send(ctx, call, from, swap, transfer, sender, receiver, expiry, package);
            }
            WalletRequest::InitiatePreimageSwap { swap, transfer, sender, receiver, expiry, package } => {
                if let Err(e) = self.check_initiate_swap(from, &swap, &sender, &receiver) {
                    ctx.observe(Observation::Rejected { what: format!("{} InitiatePreimageSwap from {from}", self.cfg.id), reason: e.clone() });
                    return Self::reply_wallet(ctx, call, Err(e));
                }
                self.start_transfer(ctx, call, transfer, sender, receiver, expiry, package, Some(swap));
            }
            WalletRequest::QueryPreimage { payment_hash } => {
                let preimage = self.store.read().preimages.get(&payment_hash).and_then(|r| r.request.as_ref()).filter(|q| q.status == PreimageStatus::PreimageShared).and_then(|q| q.preimage);
                Self::reply_wallet(ctx, call, Ok(WalletReply::Preimage { payment_hash, preimage }));
            }
            _ => {}
        }
    }

    fn store_preimage_share(&mut self, ctx: &mut Ctx<'_>, from: NodeId, req: &PreimageShareRequest) -> Result<(), String> {
        let authenticated = matches!(from, NodeId::Wallet(w) if self.cfg.directory.wallets.get(&w) == Some(&req.user_identity));
        let r = if authenticated {
            check_store_share(self.cfg.id, self.cfg.params.threshold, req, self.store.read().preimages.get(&req.payment_hash))
        } else {
            Err(format!("{from} is not authenticated as the invoice's user"))
        };
        let stored = match r {
            Ok(s) => s,
            Err(e) => {
                ctx.observe(Observation::Rejected { what: format!("{} StorePreimageShare from {from}", self.cfg.id), reason: e.clone() });
                return Err(e);
            }
        };
        let mut db = self.store.begin();
        db.preimages.entry(req.payment_hash).or_default().share = Some(stored);
        self.store.commit(db);
        ctx.observe(Observation::PreimageShareStored { operator: self.cfg.id, payment_hash: req.payment_hash });
        Ok(())
    }

    /// `initiate_preimage_swap_v3{RECEIVE}` checks before the transfer machinery runs (SEND is
    /// preimage_send.rs): the caller is the SSP and the sender, the fee is 0, and
    /// the coordinator's own stored invoice has this hash, amount and user.
    fn check_initiate_swap(&self, from: NodeId, swap: &PreimageSwap, sender: &PublicKey, receiver: &PublicKey) -> Result<(), String> {
        let dir = &self.cfg.directory;
        if swap.reason != PreimageReason::Receive {
            return Err("not a RECEIVE preimage swap".into());
        }
        match (from, dir.ssp) {
            (NodeId::Wallet(w), Some(ssp)) if w == ssp && dir.wallets.get(&w) == Some(sender) => {}
            _ => return Err(format!("{from} is not the SSP sending this swap")),
        }
        if swap.fee_sats != 0 {
            return Err(format!("fee {} for RECEIVE (must be 0)", swap.fee_sats));
        }
        let db = self.store.read();
        let row = db.preimages.get(&swap.payment_hash).ok_or("no invoice stored for this payment hash")?;
        if row.request.is_some() {
            return Err("a preimage swap already exists for this payment hash".into());
        }
        let stored = row.share.as_ref().ok_or("no preimage share stored for this payment hash")?;
        if stored.invoice.amount_sats != swap.amount_sats {
            return Err(format!("amount {} does not match the invoice's {}", swap.amount_sats, stored.invoice.amount_sats));
        }
        if stored.user_identity != *receiver {
            return Err("the receiver is not the invoice's user".into());
        }
        Ok(())
    }

    /// Participant: release this operator's share to the coordinator, only once its own records
    /// of the transfer exist and match the invoice.
    pub(super) fn release_preimage_share(&mut self, ctx: &mut Ctx<'_>, coordinator: OperatorId, transfer: TransferId, payment_hash: [u8; 32]) -> Result<InternalReply, String> {
        let db = self.store.read();
        let record = db.transfers.get(&transfer);
        let value = record.map(|r| transfer_value(db, r)).unwrap_or(0);
        let share = check_release(db.preimages.get(&payment_hash), transfer, record, value)?;
        ctx.observe(Observation::PreimageShareReleased { operator: self.cfg.id, to: coordinator, payment_hash, transfer, recorded: true });
        Ok(InternalReply::PreimageShare(share))
    }

    /// The coordinator's RECEIVE rounds after every operator holds the transfer: phase 2 asks
    /// every other operator for its share; phase 3 reconstructs r with its own, checks the hash,
    /// then commits (settle gossip, reply), records and gossips the preimage; a bad r cancels.
    pub(super) fn preimage_swap_advance(&mut self, ctx: &mut Ctx<'_>, phase: u8, s: SendSession, replies: BTreeMap<OperatorId, InternalReply>) -> Step<SendSession> {
        let Some(swap) = s.swap.clone() else { return Step::Done };
        if swap.reason == PreimageReason::Send {
            // Lightning send: every operator holds the transfer; commit it with the sender's
            // tweak withheld until provide_preimage (preimage_send.rs).
            self.send_commit(ctx, s);
            return Step::Done;
        }
        if phase == 2 {
            let req = InternalRequest::ReleasePreimageShare { transfer: s.transfer, payment_hash: swap.payment_hash };
            let requests = self.others().into_iter().map(|o| (o, req.clone())).collect();
            return Step::Next(s, requests);
        }
        let mine = self.store.read().preimages.get(&swap.payment_hash).and_then(|r| r.share.as_ref()).map(|x| x.share.clone());
        let mut shares: Vec<VssShare> = mine.into_iter().collect();
        shares.extend(replies.into_values().filter_map(|r| if let InternalReply::PreimageShare(x) = r { Some(x) } else { None }));
        let preimage = match reconstruct(&shares, self.cfg.params.threshold, &swap.payment_hash) {
            Ok(r) => r,
            Err(e) => {
                self.send_abort(ctx, s, format!("preimage reconstruction: {e}"));
                return Step::Done;
            }
        };
        let transfer = s.transfer;
        self.send_commit(ctx, s);
        if !self.store.read().transfers.contains_key(&transfer) {
            return Step::Done; // the commit failed and cancelled the transfer
        }
        let mut db = self.store.begin();
        db.preimages.entry(swap.payment_hash).or_default().request = Some(PreimageRequestRow { reason: swap.reason, transfer, status: PreimageStatus::PreimageShared, preimage: Some(preimage) });
        let seq = Self::gossip_create(&mut db, GossipBody::PreimageRevealed { transfer, payment_hash: swap.payment_hash, preimage }, self.others());
        self.store.commit(db);
        self.gossip_push(ctx, seq);
        ctx.observe(Observation::PreimageRevealed { by: self.cfg.id, payment_hash: swap.payment_hash, preimage, transfer });
        Step::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Scalar, SecretKey};
    use crate::operator::store::{TransferRow, TransferStatus};
    use crate::types::Micros;
    use rand_core::SeedableRng;
    use std::collections::BTreeMap;

    struct Fixture {
        r: [u8; 32],
        hash: [u8; 32],
        shares: Vec<VssShare>,
        user: PublicKey,
        invoice: Invoice,
    }

    fn fixture() -> Fixture {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let r = Scalar::random(&mut rng);
        let hash = sha256(&[&r.0]);
        let shares = vss::split_with_proofs(&r, 3, 5, &mut rng).unwrap();
        let user = SecretKey::new(&mut rng).public_key(crate::crypto::secp());
        Fixture { r: r.0, hash, shares, user, invoice: Invoice { payment_hash: hash, amount_sats: 32_768, expires_at: Micros::from_secs(1000) } }
    }

    fn request(f: &Fixture, op: u16) -> PreimageShareRequest {
        PreimageShareRequest { payment_hash: f.hash, share: f.shares[usize::from(op)].clone(), threshold: 3, invoice: f.invoice.clone(), user_identity: f.user }
    }

    fn transfer(receiver: PublicKey, status: TransferStatus) -> TransferRow {
        TransferRow { status, sender: receiver, receiver, expiry: Micros::from_secs(9), coordinator: OperatorId(0), leaves: BTreeMap::new(), receiver_commit_decided: false }
    }

    /// Receive happy path at the rule level: every operator accepts its share, releases it once
    /// its transfer record pays the user the invoice amount, and t shares give back r.
    #[test]
    fn shares_stored_released_and_reconstructed() {
        let f = fixture();
        let record = transfer(f.user, TransferStatus::SenderKeyTweakPending);
        let mut released = Vec::new();
        for op in 0..5u16 {
            let stored = check_store_share(OperatorId(op), 3, &request(&f, op), None).unwrap();
            let row = PreimageRow { share: Some(stored), request: None };
            assert!(check_release(Some(&row), TransferId([1; 16]), None, 32_768).unwrap_err().contains("no record"), "released before the transfer exists");
            released.push(check_release(Some(&row), TransferId([1; 16]), Some(&record), 32_768).unwrap());
        }
        assert_eq!(reconstruct(&released[2..], 3, &f.hash), Ok(f.r));
        // t − 1 shares are not enough.
        assert!(reconstruct(&released[..2], 3, &f.hash).is_err());
    }

    /// A share that does not match its proofs, a share for another operator, an invoice with a
    /// different hash, and a second different share are all refused.
    #[test]
    fn bad_preimage_shares_are_refused() {
        let f = fixture();
        let mut bad = request(&f, 1);
        bad.share.share = bad.share.share.add(&Scalar::from_u32(1));
        assert!(check_store_share(OperatorId(1), 3, &bad, None).unwrap_err().contains("does not match"));
        assert!(check_store_share(OperatorId(2), 3, &request(&f, 1), None).unwrap_err().contains("x=2"));
        let mut other = request(&f, 1);
        other.invoice.payment_hash = [7; 32];
        assert!(check_store_share(OperatorId(1), 3, &other, None).unwrap_err().contains("payment hash"));
        let stored = check_store_share(OperatorId(1), 3, &request(&f, 1), None).unwrap();
        let row = PreimageRow { share: Some(stored), request: None };
        assert!(check_store_share(OperatorId(1), 3, &request(&f, 1), Some(&row)).is_ok(), "a retried store is idempotent");
        let mut changed = request(&f, 1);
        changed.invoice.amount_sats += 1;
        assert!(check_store_share(OperatorId(1), 3, &changed, Some(&row)).unwrap_err().contains("already stored"));
    }

    /// Release needs the operator's own record of a transfer paying the invoice's user exactly
    /// the invoice amount; a returned transfer releases nothing.
    #[test]
    fn release_is_gated_on_the_operators_own_transfer_record() {
        let f = fixture();
        let row = PreimageRow { share: Some(check_store_share(OperatorId(0), 3, &request(&f, 0), None).unwrap()), request: None };
        let t = TransferId([1; 16]);
        let stranger = SecretKey::new(&mut rand_chacha::ChaCha20Rng::seed_from_u64(9)).public_key(crate::crypto::secp());
        assert!(check_release(Some(&row), t, Some(&transfer(stranger, TransferStatus::SenderKeyTweakPending)), 32_768).unwrap_err().contains("user"));
        assert!(check_release(Some(&row), t, Some(&transfer(f.user, TransferStatus::SenderKeyTweakPending)), 32_767).unwrap_err().contains("carries"));
        assert!(check_release(Some(&row), t, Some(&transfer(f.user, TransferStatus::Returned)), 32_768).unwrap_err().contains("returned"));
        assert!(check_release(None, t, Some(&transfer(f.user, TransferStatus::SenderKeyTweakPending)), 32_768).is_err());
    }

    /// A wrong share that still passes its own (forged) proofs gives a wrong r: the hash check
    /// catches it, so the coordinator cancels instead of revealing garbage.
    #[test]
    fn a_reconstruction_with_the_wrong_hash_is_refused() {
        let f = fixture();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let other = vss::split_with_proofs(&Scalar::random(&mut rng), 3, 5, &mut rng).unwrap();
        assert!(reconstruct(&other[..3], 3, &f.hash).unwrap_err().contains("not the payment hash"));
    }

    /// Send: provide_preimage checks the hash, moves WAITING → SHARED; cancellation is refused
    /// from then on, while a request still waiting is returned by a cancel.
    #[test]
    fn cancel_after_the_preimage_is_shared_is_refused() {
        let f = fixture();
        let t = TransferId([2; 16]);
        let waiting = PreimageRow { share: None, request: Some(PreimageRequestRow { reason: PreimageReason::Send, transfer: t, status: PreimageStatus::WaitingForPreimage, preimage: None }) };
        let mut row = waiting.clone();
        assert!(provide(&mut row, &f.hash, &[9; 32]).unwrap_err().contains("not the payment hash"));
        assert_eq!(row, waiting, "a wrong preimage changes nothing");
        assert_eq!(provide(&mut row, &f.hash, &f.r), Ok(t));
        assert_eq!(row.request.as_ref().map(|r| r.status), Some(PreimageStatus::PreimageShared));
        assert!(cancel(&mut row).unwrap_err().contains("can no longer be cancelled"));
        let mut row = waiting;
        cancel(&mut row).unwrap();
        assert_eq!(row.request.as_ref().map(|r| r.status), Some(PreimageStatus::Returned));
        assert!(provide(&mut row, &f.hash, &f.r).unwrap_err().contains("returned"));
    }

    /// The store-level rule the cancel gossip and the expiry task go through: a transfer whose
    /// preimage request is PREIMAGE_SHARED stays as it is; one still waiting is RETURNED with
    /// its request.
    #[test]
    fn the_transfer_cancel_refuses_a_swap_whose_preimage_was_shared() {
        let f = fixture();
        let t = TransferId([3; 16]);
        let mut db = Db::default();
        db.transfers.insert(t, transfer(f.user, TransferStatus::SenderInitiatedCoordinator));
        let req = |status| PreimageRequestRow { reason: PreimageReason::Receive, transfer: t, status, preimage: Some(f.r) };
        db.preimages.insert(f.hash, PreimageRow { share: None, request: Some(req(PreimageStatus::PreimageShared)) });
        let before = db.transfers[&t].clone();
        assert!(crate::operator::Operator::apply_cancel(&mut db, t).unwrap_err().contains("no longer be cancelled"));
        assert_eq!(db.transfers[&t], before);
        db.preimages.insert(f.hash, PreimageRow { share: None, request: Some(req(PreimageStatus::WaitingForPreimage)) });
        crate::operator::Operator::apply_cancel(&mut db, t).unwrap();
        assert_eq!(db.transfers[&t].status, TransferStatus::Returned);
        assert_eq!(db.preimages[&f.hash].request.as_ref().map(|r| r.status), Some(PreimageStatus::Returned));
    }

    /// The HTLC refunds of a send: CSV (2000 − 100) + 70 = 1970 and + 85 = 1985, every output
    /// paying the hashlock/CSV-2160 taproot script, the CPFP one with its anchor.
    #[test]
    fn send_htlc_refunds_use_the_plus_70_and_85_timelocks() {
        use crate::tx::timelock::blocks;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let key = |r: &mut rand_chacha::ChaCha20Rng| SecretKey::new(r).public_key(crate::crypto::secp());
        let (y, owner, ssp, sender) = (key(&mut rng), key(&mut rng), key(&mut rng), key(&mut rng));
        let deposit_tx = bitcoin::Transaction {
            version: bitcoin::transaction::Version(3),
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![],
            output: vec![bitcoin::TxOut { value: bitcoin::Amount::from_sat(100_000), script_pubkey: crate::tx::template::p2tr_script(&y) }],
        };
        let (txs, _) = crate::operator::deposit_templates(&deposit_tx, 0, &owner).expect("templates");
        let nodes = crate::msg::NodeSet { cpfp: txs[0].clone(), direct: txs[1].clone() };
        let current = crate::msg::RefundSet::from_vec(txs[2..5].to_vec()).expect("three refunds");
        let h = [5u8; 32];
        let htlc = expected_htlc_refunds(&nodes, &current, &h, &ssp, &sender).unwrap();
        let csv = |tx: &bitcoin::Transaction| blocks(tx.input[0].sequence).0;
        assert_eq!((csv(&htlc.cpfp), csv(&htlc.direct), csv(&htlc.direct_from_cpfp)), (1970, 1985, 1985));
        let script = crate::tx::htlc::htlc_script_pubkey(&h, &ssp, &sender);
        for tx in htlc.as_array() {
            assert_eq!(tx.output[0].script_pubkey, script);
        }
        assert_eq!(htlc.cpfp.output.len(), 2, "the CPFP variant carries the anchor");
        assert_eq!(htlc.cpfp.output[0].value, nodes.cpfp.output[0].value);
    }
}
