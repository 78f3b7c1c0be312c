//! Lightning send, operator side, through a real `Operator`: the refunds it expects for a SEND
//! swap are the HTLC refunds (a wrong CSV or a wrong script is refused by the byte comparison
//! `validate_send` runs), `provide_preimage` refuses a wrong preimage and a caller that is not
//! the SSP without changing anything, settles the sender's tweak with the right one, and a
//! return after the preimage was shared is refused while a waiting one is returned.
use super::preimage::{PreimageRequestRow, PreimageRow, PreimageStatus};
use super::store::{KeyshareRow, KeyshareStatus, LeafRow, LeafStatus, TransferRow, TransferStatus};
use super::*;
use crate::crypto::identity::sha256;
use crate::crypto::signing::KeyShare;
use crate::crypto::{curve, secp, PublicKey, Scalar, SecretKey};
use crate::msg::lightning::PreimageReason;
use crate::msg::{Msg, NodeSet, ReqId, WalletReply, WalletRequest};
use crate::node::{Input, Node, Output};
use crate::params::{Directory, Params};
use crate::tx::template::{self, p2tr_script};
use crate::types::{KeyshareId, LeafId, TransferId, WalletId};
use bitcoin::{Amount, OutPoint, TxOut};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::BTreeMap;

const LEAF: LeafId = LeafId([1; 16]);
const KS: KeyshareId = KeyshareId([9; 16]);
const USER: WalletId = WalletId(0);
const SSP: WalletId = WalletId(1);

struct Setup {
    op: Operator,
    user: PublicKey,
    ssp: PublicKey,
    preimage: [u8; 32],
    hash: [u8; 32],
}

/// Operator 0 of 3 (threshold 2) holding the user's AVAILABLE leaf (refund CSV 2000) and a
/// SEND request WAITING_FOR_PREIMAGE for `transfer` (recorded, coordinator 0, no tweak yet).
fn setup(transfer: TransferId) -> Setup {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let (user, ssp) = (SecretKey::new(&mut rng).public_key(secp()), SecretKey::new(&mut rng).public_key(secp()));
    let directory = Directory { operators: BTreeMap::new(), wallets: [(USER, user), (SSP, ssp)].into_iter().collect(), ssp: Some(SSP) };
    let cfg = OperatorConfig { id: OperatorId(0), identity: SecretKey::new(&mut rng), params: Arc::new(Params::new(3, 2)), directory: Arc::new(directory) };
    let mut op = Operator::new(cfg);
    let owner = Scalar::random(&mut rng);
    let se = KeyShare::deal(&Scalar::random(&mut rng), 3, 2, &mut rng).expect("deal").remove(0);
    let owner_pk = curve::base_mul(&owner).expect("nonzero");
    let y = curve::point_add(&owner_pk, &se.public_key).expect("key");
    let deposit = TxOut { value: Amount::from_sat(100_000), script_pubkey: p2tr_script(&y) };
    let outpoint = OutPoint { txid: bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros()), vout: 0 };
    let root = template::node_txs(outpoint, &deposit, bitcoin::Sequence(0), bitcoin::Sequence(50));
    let nodes = NodeSet { cpfp: root.cpfp, direct: root.direct };
    let refunds = nodes.refunds_to(&owner_pk, bitcoin::Sequence(2000), bitcoin::Sequence(2050)).expect("refunds");
    let preimage = [5u8; 32];
    let hash = sha256(&[&preimage]);
    let mut db = op.store.begin();
    db.keyshares.insert(KS, KeyshareRow { status: KeyshareStatus::InUse, share: se, coordinator: OperatorId(0), epoch: 0 });
    db.leaves.insert(LEAF, LeafRow { status: LeafStatus::Available, keyshare: KS, value_sats: 100_000, verifying_key: y, owner_identity: user, owner_signing_key: owner_pk, deposit_outpoint: outpoint, nodes, refunds, ancestors: Vec::new() });
    db.preimages.insert(hash, PreimageRow { share: None, request: Some(PreimageRequestRow { reason: PreimageReason::Send, transfer, status: PreimageStatus::WaitingForPreimage, preimage: None }) });
    db.transfers.insert(transfer, TransferRow { status: TransferStatus::SenderInitiatedCoordinator, sender: user, receiver: ssp, expiry: Micros::from_secs(3600), coordinator: OperatorId(0), leaves: BTreeMap::new(), receiver_commit_decided: false });
    op.store.commit(db);
    Setup { op, user, ssp, preimage, hash }
}

/// One wallet request to the operator; its reply.
fn call(op: &mut Operator, from: WalletId, body: WalletRequest) -> Result<WalletReply, String> {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut ctx = Ctx::new(Micros::from_secs(10), NodeId::Operator(OperatorId(0)), &mut rng);
    op.handle(&mut ctx, Input::Message { from: NodeId::Wallet(from), msg: Msg::WalletRequest { req: ReqId { session: 1, phase: 0 }, body: Box::new(body) } });
    ctx.into_outputs()
        .into_iter()
        .find_map(|o| if let Output::Send { msg: Msg::WalletReply { body, .. }, .. } = o { Some(*body) } else { None })
        .expect("a reply")
}

/// The operator expects HTLC refunds for a SEND swap: the right ones byte-compare equal; the
/// ordinary decrement (wrong CSV), an HTLC with the leaves' keys swapped or another hash (wrong
/// script) are refused by the comparison `validate_send` runs.
#[test]
fn bad_htlc_refunds_are_refused() {
    let t = TransferId([3; 16]);
    let s = setup(t);
    let db = s.op.store.read();
    let leaf = &db.leaves[&LEAF];
    let (expected, _) = s.op.send_expectations(db, t, 0, leaf, &s.ssp).unwrap();
    let compare = |candidate: &crate::msg::RefundSet| -> Result<(), String> {
        for (e, c) in expected.as_array().into_iter().zip(candidate.as_array()) {
            template::compare_transactions(e, c).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    let right = super::preimage::expected_htlc_refunds(&leaf.nodes, &leaf.refunds, &s.hash, &s.ssp, &s.user).unwrap();
    assert_eq!(compare(&right), Ok(()));
    let csv = |tx: &bitcoin::Transaction| crate::tx::timelock::blocks(tx.input[0].sequence).0;
    assert_eq!((csv(&expected.cpfp), csv(&expected.direct)), (1970, 1985));
    // Wrong CSV: the ordinary refunds to the SSP (2000 − 100, + 50).
    let ordinary = leaf.nodes.refunds_to(&s.ssp, bitcoin::Sequence(1900), bitcoin::Sequence(1950)).unwrap();
    assert!(compare(&ordinary).is_err(), "ordinary refunds accepted for a Lightning send");
    // Wrong CSV inside a right script: the HTLC one interval lower.
    let mut low = right.clone();
    low.cpfp.input[0].sequence = bitcoin::Sequence(1870);
    assert!(compare(&low).is_err(), "an HTLC refund with CSV 1870 accepted");
    // Wrong scripts: the 2160 leaf and the hashlock's keys swapped; another payment hash.
    let swapped = super::preimage::expected_htlc_refunds(&leaf.nodes, &leaf.refunds, &s.hash, &s.user, &s.ssp).unwrap();
    assert!(compare(&swapped).is_err(), "an HTLC paying the sender by hashlock accepted");
    let other = super::preimage::expected_htlc_refunds(&leaf.nodes, &leaf.refunds, &[9; 32], &s.ssp, &s.user).unwrap();
    assert!(compare(&other).is_err(), "an HTLC for another payment hash accepted");
    // A transfer that is not a SEND swap expects the ordinary refunds.
    let (plain, _) = s.op.send_expectations(db, TransferId([4; 16]), 0, leaf, &s.ssp).unwrap();
    assert_eq!(plain, ordinary);
}

/// provide_preimage: a wrong preimage and a caller that is not the SSP are refused with nothing
/// changed; the right one shares the preimage and settles the sender's tweak; a retry is
/// idempotent; a return after that is refused and changes nothing.
#[test]
fn provide_preimage_checks_the_hash_and_cancel_after_it_is_refused() {
    let t = TransferId([3; 16]);
    let mut s = setup(t);
    let before = s.op.store.read().clone();
    let e = call(&mut s.op, SSP, WalletRequest::ProvidePreimage { transfer: t, payment_hash: s.hash, preimage: [6; 32] }).unwrap_err();
    assert!(e.contains("not the payment hash"), "{e}");
    let e = call(&mut s.op, USER, WalletRequest::ProvidePreimage { transfer: t, payment_hash: s.hash, preimage: s.preimage }).unwrap_err();
    assert!(e.contains("not the service provider"), "{e}");
    assert_eq!(s.op.store.read().preimages, before.preimages, "a refused provide changes nothing");
    assert_eq!(s.op.store.read().transfers, before.transfers);
    // The sender's tweak waits for the preimage.
    let mut db = s.op.store.begin();
    assert!(s.op.apply_settle_sender(&mut db, t).unwrap_err().contains("not shared"));
    drop(db);
    assert_eq!(call(&mut s.op, SSP, WalletRequest::ProvidePreimage { transfer: t, payment_hash: s.hash, preimage: s.preimage }), Ok(WalletReply::Preimage { payment_hash: s.hash, preimage: Some(s.preimage) }));
    assert_eq!(s.op.store.read().transfers[&t].status, TransferStatus::SenderKeyTweaked);
    assert_eq!(call(&mut s.op, SSP, WalletRequest::ProvidePreimage { transfer: t, payment_hash: s.hash, preimage: s.preimage }), Ok(WalletReply::Preimage { payment_hash: s.hash, preimage: Some(s.preimage) }), "a retry is idempotent");
    let after = s.op.store.read().clone();
    let e = call(&mut s.op, SSP, WalletRequest::ReturnLightningPayment { transfer: t, payment_hash: s.hash }).unwrap_err();
    assert!(e.contains("can no longer be cancelled"), "{e}");
    assert_eq!(s.op.store.read().transfers, after.transfers);
    assert_eq!(s.op.store.read().preimages, after.preimages);
}

/// A payment that failed: only the SSP may return it; the transfer and its request are
/// RETURNED, and a preimage provided afterwards is refused.
#[test]
fn a_failed_payment_is_returned_by_the_ssp_only() {
    let t = TransferId([3; 16]);
    let mut s = setup(t);
    let e = call(&mut s.op, USER, WalletRequest::ReturnLightningPayment { transfer: t, payment_hash: s.hash }).unwrap_err();
    assert!(e.contains("not the service provider"), "{e}");
    assert_eq!(s.op.store.read().transfers[&t].status, TransferStatus::SenderInitiatedCoordinator);
    let r = call(&mut s.op, SSP, WalletRequest::ReturnLightningPayment { transfer: t, payment_hash: s.hash });
    assert_eq!(r, Ok(WalletReply::Transfer { transfer: t, outcome: crate::msg::TransferOutcome::Returned }));
    assert_eq!(s.op.store.read().transfers[&t].status, TransferStatus::Returned);
    assert!(call(&mut s.op, SSP, WalletRequest::ProvidePreimage { transfer: t, payment_hash: s.hash, preimage: s.preimage }).unwrap_err().contains("returned"));
}
