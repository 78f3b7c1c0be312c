//! The L1 model under L1 faults: reorgs (undo, re-admission, BIP68 re-evaluated on the new
//! branch), hash-linked blocks, and the mempool fee floor a fee spike raises.
use bitcoin::absolute::LockTime;
use bitcoin::secp256k1::{Keypair, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use reference_node::chain::{Chain, ChainReject, ReorgError, ReorgTxs};
use reference_node::tx::sighash::{key_spend_witness, sign_single_key};
use reference_node::tx::template::{node_txs, p2tr_script, refund_txs};
use reference_node::types::Micros;

fn keypair(seed: u8) -> Keypair {
    let sk = SecretKey::from_slice(&[seed; 32]).expect("valid scalar");
    Keypair::from_secret_key(reference_node::crypto::secp(), &sk)
}

fn script_of(kp: &Keypair) -> ScriptBuf {
    p2tr_script(&kp.public_key())
}

fn pay(kp: &Keypair, sat: u64) -> TxOut {
    TxOut {
        value: Amount::from_sat(sat),
        script_pubkey: script_of(kp),
    }
}

/// A signed one-input v3 spend of a coin `owner` holds.
fn signed_spend(
    owner: &Keypair,
    coin: OutPoint,
    coin_out: &TxOut,
    outputs: Vec<TxOut>,
) -> Transaction {
    let mut tx = Transaction {
        version: Version(3),
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: coin,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: outputs,
    };
    sign(&mut tx, coin_out, owner);
    tx
}

fn sign(tx: &mut Transaction, prevout: &TxOut, owner: &Keypair) {
    let sig = sign_single_key(tx, 0, std::slice::from_ref(prevout), owner, &[7; 32]).expect("sign");
    tx.input[0].witness = key_spend_witness(&sig);
}

fn assert_audit(chain: &Chain) {
    assert_eq!(
        chain.funded_total(),
        chain.confirmed_utxo_total() + chain.confirmed_fees_total()
    );
}

/// alice → bob at height 1, bob → carol at height 2.
fn two_spends() -> (Chain, OutPoint, Transaction, Transaction) {
    let mut chain = Chain::new();
    let (alice, bob, carol) = (keypair(1), keypair(2), keypair(3));
    let coin = chain.fund(script_of(&alice), Amount::from_sat(100_000));
    let coin_out = chain.utxo(&coin).expect("funded").output.clone();
    let tx1 = signed_spend(&alice, coin, &coin_out, vec![pay(&bob, 99_000)]);
    chain.submit(tx1.clone()).expect("tx1");
    chain.mine_block(Micros::from_secs(1));
    let out1 = OutPoint {
        txid: tx1.compute_txid(),
        vout: 0,
    };
    let tx2 = signed_spend(&bob, out1, &tx1.output[0], vec![pay(&carol, 98_000)]);
    chain.submit(tx2.clone()).expect("tx2");
    chain.mine_block(Micros::from_secs(2));
    (chain, coin, tx1, tx2)
}

#[test]
fn blocks_are_hash_linked_and_a_reorg_forks_at_the_right_height() {
    let (mut chain, _, _, _) = two_spends();
    let (h1, h2) = (
        chain.block_hash(1).expect("h1"),
        chain.block_hash(2).expect("h2"),
    );
    assert_eq!(chain.tip_hash(), h2);
    let out = chain
        .reorg(1, ReorgTxs::Return, Micros::from_secs(3))
        .expect("reorg");
    assert_eq!(out.fork_height, 1);
    assert_eq!(out.disconnected, vec![h2]);
    assert_eq!(
        out.blocks.len(),
        2,
        "the replacement branch is one block longer"
    );
    assert_eq!(out.blocks[0].parent, h1);
    assert_eq!(out.blocks[0].height, 2);
    assert_ne!(out.blocks[0].hash, h2);
    assert_eq!(out.blocks[1].parent, out.blocks[0].hash);
    assert_eq!(chain.height(), 3);
    assert_eq!(chain.tip_hash(), out.blocks[1].hash);
    assert_eq!(chain.stats().reorgs, 1);
}

#[test]
fn reorg_returns_txs_to_the_mempool_and_restores_utxos() {
    let (mut chain, coin, tx1, tx2) = two_spends();
    let (t1, t2) = (tx1.compute_txid(), tx2.compute_txid());
    let out = chain
        .reorg(2, ReorgTxs::Return, Micros::from_secs(3))
        .expect("reorg");
    assert_eq!(out.reorged_out, vec![t1, t2]);
    assert_eq!(out.readmitted, vec![t1, t2]);
    assert!(out.dropped.is_empty());
    assert_eq!(chain.confirmation_height(&t1), None);
    assert!(chain.in_mempool(&t1) && chain.in_mempool(&t2));
    // alice's coin is confirmed-unspent again (a mempool tx spends it); carol's output is only
    // in the mempool.
    assert_eq!(chain.utxo(&coin).and_then(|u| u.height), Some(0));
    assert_eq!(
        chain
            .utxo(&OutPoint { txid: t2, vout: 0 })
            .map(|u| u.height),
        Some(None)
    );
    assert_audit(&chain);
    assert!(out.blocks.iter().all(|b| b.txs.is_empty()));
    let block = chain.mine_block(Micros::from_secs(4));
    assert_eq!(block.height, 4);
    assert_eq!(block.txs, vec![tx1, tx2]);
    assert_eq!(chain.confirmation_height(&t2), Some(4));
    assert_eq!(chain.utxo(&coin), None);
    assert_audit(&chain);
}

#[test]
fn reorg_with_drop_forgets_txs_until_rebroadcast() {
    let (mut chain, coin, tx1, tx2) = two_spends();
    let out = chain
        .reorg(2, ReorgTxs::Drop, Micros::from_secs(3))
        .expect("reorg");
    assert_eq!(out.dropped.len(), 2);
    assert!(out.readmitted.is_empty());
    assert!(!chain.in_mempool(&tx1.compute_txid()));
    assert_eq!(chain.utxo(&coin).and_then(|u| u.height), Some(0));
    assert_eq!(
        chain.utxo(&OutPoint {
            txid: tx1.compute_txid(),
            vout: 0
        }),
        None
    );
    assert_eq!(chain.stats().txs_dropped_on_reorg, 2);
    assert_audit(&chain);
    // Gone from the chain's memory too: the sender can broadcast the same txs again.
    chain.submit(tx1).expect("rebroadcast tx1");
    chain.submit(tx2).expect("rebroadcast tx2");
    assert_eq!(chain.mine_block(Micros::from_secs(4)).txs.len(), 2);
    assert_audit(&chain);
}

#[test]
fn bip68_is_reevaluated_against_the_new_branch() {
    let mut chain = Chain::new();
    let (owner, receiver) = (keypair(4), keypair(5));
    let coin = chain.fund(script_of(&owner), Amount::from_sat(10_000));
    let coin_out = chain.utxo(&coin).expect("funded").output.clone();
    // A node-like parent (CSV 0) at height 1 and a refund-like child with CSV 3.
    let mut parent = node_txs(coin, &coin_out, Sequence(0), Sequence(50)).cpfp;
    sign(&mut parent, &coin_out, &owner);
    let parent_txid = chain.submit(parent.clone()).expect("parent");
    chain.mine_block(Micros::from_secs(1));
    let mut child = refund_txs(
        &parent,
        None,
        0,
        &receiver.public_key(),
        Sequence(3),
        Sequence(53),
    )
    .cpfp;
    sign(&mut child, &parent.output[0], &owner);
    chain.mine_block(Micros::from_secs(2));
    chain.mine_block(Micros::from_secs(3));
    // Next block is height 4: the parent has 3 confirmations there.
    let child_txid = chain.submit(child.clone()).expect("mature child");
    // A reorg of the parent's block: the parent returns unconfirmed, so the child is non-final.
    let out = chain
        .reorg(3, ReorgTxs::Return, Micros::from_secs(4))
        .expect("reorg");
    assert_eq!(out.readmitted, vec![parent_txid]);
    assert_eq!(out.dropped, vec![child_txid]);
    assert!(!chain.in_mempool(&child_txid));
    // The parent re-confirms at height 5; the child counts from there again.
    chain.mine_block(Micros::from_secs(5));
    assert_eq!(chain.confirmation_height(&parent_txid), Some(5));
    assert_eq!(
        chain.submit(child.clone()),
        Err(ChainReject::NonFinal {
            index: 0,
            needed: 3,
            have: 1
        })
    );
    chain.mine_block(Micros::from_secs(6));
    chain.mine_block(Micros::from_secs(7));
    chain.submit(child).expect("mature again on the new branch");
    assert_audit(&chain);
}

#[test]
fn reorg_depth_is_bounded() {
    let (mut chain, _, _, _) = two_spends();
    assert_eq!(
        chain.reorg(0, ReorgTxs::Return, Micros::ZERO).err(),
        Some(ReorgError::ZeroDepth)
    );
    assert_eq!(
        chain.reorg(3, ReorgTxs::Return, Micros::ZERO).err(),
        Some(ReorgError::DeeperThanChain {
            depth: 3,
            height: 2
        })
    );
    assert_eq!(chain.height(), 2);
    assert_eq!(chain.stats().reorgs, 0);
}

#[test]
fn fee_floor_rejects_cheap_txs_and_lifts_after_the_spike() {
    let mut chain = Chain::new();
    let (owner, bob) = (keypair(6), keypair(7));
    let leaf = chain.fund(script_of(&owner), Amount::from_sat(65_536));
    let leaf_out = chain.utxo(&leaf).expect("funded").output.clone();
    let coin = chain.fund(script_of(&bob), Amount::from_sat(100_000));
    let coin_out = chain.utxo(&coin).expect("funded").output.clone();
    let mut node = node_txs(leaf, &leaf_out, Sequence(0), Sequence(50)).cpfp;
    sign(&mut node, &leaf_out, &owner);
    chain.set_min_feerate(10);
    // spark-protocol §3.2: a CPFP node tx pays zero fee, so a spike keeps it out.
    let reject = chain
        .submit(node.clone())
        .expect_err("zero fee under a spike");
    assert!(
        matches!(reject, ChainReject::FeeTooLow { fee, min_sat_per_vb: 10, .. } if fee == Amount::ZERO),
        "{reject}"
    );
    // 1 000 sat on ~111 vB is below 10 sat/vB; 5 000 sat is above it.
    let cheap = signed_spend(&bob, coin, &coin_out, vec![pay(&bob, 99_000)]);
    assert!(matches!(
        chain.submit(cheap),
        Err(ChainReject::FeeTooLow { .. })
    ));
    let rich = signed_spend(&bob, coin, &coin_out, vec![pay(&bob, 95_000)]);
    chain.submit(rich).expect("pays the floor");
    chain.set_min_feerate(0);
    chain.submit(node).expect("the spike is over");
    assert_eq!(chain.min_feerate(), 0);
}
