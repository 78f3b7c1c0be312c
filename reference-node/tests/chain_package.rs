//! Package relay and v3/TRUC rules of the L1 model (chain/package.rs): the way Spark's zero-fee
//! CPFP txs get through a fee floor (spark-protocol §3.2, §4.6 step 2, §5.2 item 5).
use bitcoin::absolute::LockTime;
use bitcoin::secp256k1::{Keypair, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use reference_node::chain::{is_fee_refusal, package_fee_needed, Chain, ChainReject};
use reference_node::tx::sighash::{key_spend_witness, sign_single_key};
use reference_node::tx::template::{anchor_output, node_txs, p2tr_script};
use reference_node::types::Micros;

fn keypair(seed: u8) -> Keypair {
    let sk = SecretKey::from_slice(&[seed; 32]).expect("valid scalar");
    Keypair::from_secret_key(reference_node::crypto::secp(), &sk)
}

fn input(previous_output: OutPoint) -> TxIn {
    TxIn { previous_output, script_sig: ScriptBuf::new(), sequence: Sequence(0), witness: Witness::new() }
}

fn pay(kp: &Keypair, sat: u64) -> TxOut {
    TxOut { value: Amount::from_sat(sat), script_pubkey: p2tr_script(&kp.public_key()) }
}

/// A chain with a signed zero-fee CPFP node tx (not submitted) spending a funded leaf output, and
/// a fee coin of `fee_coin_sats` for `payer`.
struct Setup {
    chain: Chain,
    node: Transaction,
    payer: Keypair,
    fee_coin: (OutPoint, TxOut),
}

fn setup(fee_coin_sats: u64) -> Setup {
    let mut chain = Chain::new();
    let owner = keypair(8);
    let payer = keypair(10);
    let leaf_out = pay(&owner, 65_536);
    let leaf = chain.fund(leaf_out.script_pubkey.clone(), leaf_out.value);
    let fee_out = pay(&payer, fee_coin_sats);
    let fee_coin = chain.fund(fee_out.script_pubkey.clone(), fee_out.value);
    let mut node = node_txs(leaf, &leaf_out, Sequence(0), Sequence(50)).cpfp;
    let sig = sign_single_key(&node, 0, std::slice::from_ref(&leaf_out), &owner, &[1; 32]).expect("sign");
    node.input[0].witness = key_spend_witness(&sig);
    Setup { chain, node, payer, fee_coin: (fee_coin, fee_out) }
}

/// The fee-bumping child: the node's anchor (empty witness) plus the fee coin, paying `fee`.
fn child(s: &Setup, fee: u64, version: i32, extra_outputs: usize) -> Transaction {
    let anchor = OutPoint { txid: s.node.compute_txid(), vout: 1 };
    let (coin, coin_out) = &s.fee_coin;
    let mut outputs = vec![pay(&s.payer, coin_out.value.to_sat() - fee - 330 * extra_outputs as u64)];
    outputs.extend((0..extra_outputs).map(|_| pay(&s.payer, 330)));
    let mut tx = Transaction { version: Version(version), lock_time: LockTime::ZERO, input: vec![input(anchor), input(*coin)], output: outputs };
    let prevouts = [anchor_output(), coin_out.clone()];
    let sig = sign_single_key(&tx, 1, &prevouts, &s.payer, &[2; 32]).expect("sign");
    tx.input[1].witness = key_spend_witness(&sig);
    tx
}

#[test]
fn package_clears_the_fee_floor_that_refuses_the_parent_alone() {
    let mut s = setup(100_000);
    s.chain.set_min_feerate(20);
    let refused = s.chain.submit(s.node.clone());
    assert!(matches!(refused, Err(ChainReject::FeeTooLow { .. })), "{refused:?}");
    assert!(is_fee_refusal(&refused.unwrap_err().to_string()));
    let probe = child(&s, 0, 3, 0);
    let fee = package_fee_needed(s.node.vsize() as u64, Amount::ZERO, probe.vsize() as u64, 20);
    let bump = child(&s, fee.to_sat(), 3, 0);
    let ids = s.chain.submit_package(vec![s.node.clone(), bump.clone()]).expect("package clears the floor");
    assert_eq!(ids, vec![s.node.compute_txid(), bump.compute_txid()]);
    let block = s.chain.mine_block(Micros::ZERO);
    assert_eq!(block.txs.len(), 2);
    assert_eq!(s.chain.confirmed_fees_total(), fee);
    assert_eq!(s.chain.funded_total(), s.chain.confirmed_utxo_total() + s.chain.confirmed_fees_total());
}

#[test]
fn package_below_the_floor_is_refused_and_leaves_no_trace() {
    let mut s = setup(100_000);
    s.chain.set_min_feerate(20);
    let probe = child(&s, 0, 3, 0);
    let fee = package_fee_needed(s.node.vsize() as u64, Amount::ZERO, probe.vsize() as u64, 20);
    let short = child(&s, fee.to_sat() - 1, 3, 0);
    let e = s.chain.submit_package(vec![s.node.clone(), short]).expect_err("one sat short");
    assert!(matches!(e, ChainReject::FeeTooLow { min_sat_per_vb: 20, .. }), "{e}");
    assert!(!s.chain.in_mempool(&s.node.compute_txid()), "a refused package leaves its parent out too");
    // The same parent with enough fee still goes in afterwards (nothing half-admitted).
    let ok = child(&s, fee.to_sat(), 3, 0);
    s.chain.submit_package(vec![s.node.clone(), ok]).expect("now it clears");
}

#[test]
fn truc_limits_are_enforced() {
    // A child above 1000 vB.
    let mut s = setup(1_000_000);
    let fat = child(&s, 50_000, 3, 30);
    assert!(fat.vsize() > 1_000, "{} vB", fat.vsize());
    let e = s.chain.submit_package(vec![s.node.clone(), fat]).expect_err("fat child");
    assert!(matches!(&e, ChainReject::Truc(m) if m.contains("1000 vB")), "{e}");
    // A non-v3 child.
    let e = s.chain.submit_package(vec![s.node.clone(), child(&s, 5_000, 2, 0)]).expect_err("v2 child");
    assert!(matches!(e, ChainReject::Truc(_)), "{e}");
    // One unconfirmed child per parent: a second child of the same parent is refused.
    s.chain.submit_package(vec![s.node.clone(), child(&s, 5_000, 3, 0)]).expect("package");
    let other = keypair(12);
    let other_out = pay(&other, 9_000);
    let other_coin = s.chain.fund(other_out.script_pubkey.clone(), other_out.value);
    let mut sibling = Transaction {
        version: Version(3),
        lock_time: LockTime::ZERO,
        input: vec![input(OutPoint { txid: s.node.compute_txid(), vout: 0 }), input(other_coin)],
        output: vec![pay(&other, 70_000)],
    };
    // Unsigned input 0 would fail scripts later; TRUC refuses first.
    let prevouts = [s.node.output[0].clone(), other_out];
    let sig = sign_single_key(&sibling, 1, &prevouts, &other, &[3; 32]).expect("sign");
    sibling.input[1].witness = key_spend_witness(&sig);
    let e = s.chain.submit(sibling).expect_err("second child");
    assert!(matches!(&e, ChainReject::Truc(m) if m.contains("already has an unconfirmed child")), "{e}");
}

#[test]
fn package_shape_rules() {
    let mut s = setup(100_000);
    let e = s.chain.submit_package(vec![s.node.clone()]).expect_err("one tx");
    assert!(matches!(e, ChainReject::Package(_)), "{e}");
    // A child that does not spend the anchor.
    let (coin, coin_out) = s.fee_coin.clone();
    let mut stray = Transaction { version: Version(3), lock_time: LockTime::ZERO, input: vec![input(coin)], output: vec![pay(&s.payer, 90_000)] };
    let sig = sign_single_key(&stray, 0, std::slice::from_ref(&coin_out), &s.payer, &[4; 32]).expect("sign");
    stray.input[0].witness = key_spend_witness(&sig);
    let e = s.chain.submit_package(vec![s.node.clone(), stray]).expect_err("no anchor spend");
    assert!(matches!(e, ChainReject::Package(_)), "{e}");
    // An anchor spent with a witness is non-standard.
    let mut noisy = child(&s, 1_000, 3, 0);
    noisy.input[0].witness.push([1u8]);
    let e = s.chain.submit_package(vec![s.node.clone(), noisy]).expect_err("anchor witness");
    assert!(matches!(&e, ChainReject::Truc(m) if m.contains("P2A")), "{e}");
}
