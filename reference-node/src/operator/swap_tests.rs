//! Leaf swaps v2, operator side: a malformed adaptor point is refused before anything is
//! stored, and a participant accepts a replicated counter refund carrying a pre-signature only
//! when it verifies under the T its witness names (and a plain refund only when signed).
use super::*;
use crate::crypto::adaptor;
use crate::crypto::{secp, SecretKey};
use crate::msg::{NodeSet, ReqId, TransferPackage, WalletRequest};
use crate::node::{Input, Node, Output};
use crate::operator::OperatorConfig;
use crate::params::{Directory, Params};
use crate::tx::template::{node_txs, p2tr_script};
use crate::types::{OperatorId, WalletId};
use bitcoin::hashes::Hash as _;
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::secp256k1::Message;
use bitcoin::{Amount, OutPoint, Sequence, TxOut, Txid};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::sync::Arc;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Operator 0 of 3, wallet 0 the user and wallet 1 the SSP; the user's v2 primary with
/// `adaptor_point` as raw bytes: the reply, and whether a swap row was stored.
fn initiate(adaptor_point: Option<Vec<u8>>) -> (Result<crate::msg::WalletReply, String>, bool) {
    let mut r = rng(5);
    let (user, ssp) = (SecretKey::new(&mut r).public_key(secp()), SecretKey::new(&mut r).public_key(secp()));
    let directory = Directory { wallets: [(WalletId(0), user), (WalletId(1), ssp)].into(), ssp: Some(WalletId(1)), ..Directory::default() };
    let cfg = OperatorConfig { id: OperatorId(0), identity: SecretKey::new(&mut r), params: Arc::new(Params::new(3, 2)), directory: Arc::new(directory) };
    let mut op = Operator::new(cfg);
    let leg = SwapTransfer { transfer: TransferId([4; 16]), sender: user, receiver: ssp, expiry: Micros::from_secs(60), package: TransferPackage { leaves: Vec::new(), key_tweak_package: BTreeMap::new(), signature: Vec::new() } };
    let body = WalletRequest::Swap(SwapRequest::InitiatePrimary { version: SwapVersion::V2, adaptor_point, leg });
    let mut rr = rng(6);
    let mut ctx = Ctx::new(Micros::ZERO, NodeId::Operator(OperatorId(0)), &mut rr);
    op.handle(&mut ctx, Input::Message { from: NodeId::Wallet(WalletId(0)), msg: Msg::WalletRequest { req: ReqId { session: 1, phase: 0 }, body: Box::new(body) } });
    let reply = ctx.into_outputs().into_iter().find_map(|o| if let Output::Send { msg: Msg::WalletReply { body, .. }, .. } = o { Some(*body) } else { None }).expect("a reply");
    (reply, !op.db().swaps.is_empty())
}

#[test]
fn a_v2_swap_with_a_malformed_adaptor_point_is_refused() {
    let (_, t) = adaptor::new_secret(&mut rng(1));
    let mut off_curve = t.serialize().to_vec();
    off_curve[0] = 0x07;
    let g = crate::crypto::curve::base_mul(&crate::crypto::Scalar::from_u32(1)).unwrap().serialize().to_vec();
    for (bad, why) in [(None, "needs an adaptor point"), (Some(t.serialize()[..20].to_vec()), "expected 33 bytes"), (Some(off_curve), "malformed adaptor point"), (Some(g), "generator")] {
        let (reply, stored) = initiate(bad);
        assert!(reply.as_ref().is_err_and(|e| e.contains(why)), "{why}: {reply:?}");
        assert!(!stored, "{why}: a swap row was stored");
    }
    // The well-formed point gets past the adaptor check (and fails later, on the empty package).
    let (reply, _) = initiate(Some(t.serialize().to_vec()));
    assert!(reply.is_err_and(|e| !e.contains("adaptor")));
}

/// A refund of a leaf whose key Y is a single key y (standing in for the FROST aggregate, whose
/// adaptor rounds crypto/adaptor_frost.rs covers), signed under T as the coordinator replicates it.
#[test]
fn a_participant_accepts_a_counter_pre_signature_only_under_its_point() {
    let mut r = rng(9);
    let y = SecretKey::new(&mut r);
    let yp = y.public_key(secp());
    let out = TxOut { value: Amount::from_sat(65_536), script_pubkey: p2tr_script(&yp) };
    let n = node_txs(OutPoint { txid: Txid::from_byte_array([3; 32]), vout: 0 }, &out, Sequence(0), Sequence(50));
    let nodes = NodeSet { cpfp: n.cpfp, direct: n.direct };
    let receiver = SecretKey::new(&mut r).public_key(secp());
    let refund = nodes.refunds_to(&receiver, Sequence(1900), Sequence(1950)).unwrap().cpfp;
    let prevout = nodes.refund_prevouts().unwrap()[0].clone();
    let msg = crate::tx::sighash::key_spend_sighash(&refund, 0, &prevout).unwrap();
    let tweaked = Keypair::from_secret_key(secp(), &y).tap_tweak(secp(), None).to_keypair();
    let sig = secp().sign_schnorr_no_aux_rand(&Message::from_digest(msg), &tweaked);
    let (a, t) = adaptor::new_secret(&mut r);
    let pre = adaptor::from_signature(&sig, &a).unwrap();
    let with = |w: bitcoin::Witness| {
        let mut tx = refund.clone();
        tx.input[0].witness = w;
        check_signed_or_presigned(&refund, &tx, &prevout, &yp)
    };
    with(presigned_witness(&pre, &t)).expect("a pre-signature under its T");
    with(crate::tx::sighash::key_spend_witness(&sig)).expect("the completed signature");
    let (_, u) = adaptor::new_secret(&mut r);
    assert!(with(presigned_witness(&pre, &u)).is_err(), "another T");
    let bumped = adaptor::PreSignature { r: pre.r, s: pre.s.add(&crate::crypto::Scalar::from_u32(1)) };
    assert!(with(presigned_witness(&bumped, &t)).is_err(), "a tampered pre-signature");
    // The raw pre-signature as a plain witness is no signature.
    let raw = bitcoin::secp256k1::schnorr::Signature::from_slice(&pre.to_bytes()).unwrap();
    assert!(with(crate::tx::sighash::key_spend_witness(&raw)).is_err(), "pre-signature passed as a signature");
    // And the pre-signature is found again from the witness, for the user and the SSP.
    let mut tx = refund.clone();
    tx.input[0].witness = presigned_witness(&pre, &t);
    assert_eq!(presignature_of(&tx, &t), Ok(pre));
    assert!(presignature_of(&tx, &u).is_err());
}
