//! The L1 model: script verification through libbitcoinconsensus, BIP68, mempool rules and the
//! value audit.
use bitcoin::absolute::LockTime;
use bitcoin::secp256k1::{Keypair, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use proptest::prelude::*;
use reference_node::chain::{Chain, ChainReject};
use reference_node::tx::sighash::{key_spend_witness, sign_single_key};
use reference_node::tx::template::{anchor_output, node_txs, p2tr_script, refund_txs};
use reference_node::types::Micros;

fn keypair(seed: u8) -> Keypair {
    let sk = SecretKey::from_slice(&[seed; 32]).expect("valid scalar");
    Keypair::from_secret_key(reference_node::crypto::secp(), &sk)
}

fn script_of(kp: &Keypair) -> ScriptBuf {
    p2tr_script(&kp.public_key())
}

fn input(previous_output: OutPoint, sequence: Sequence) -> TxIn {
    TxIn {
        previous_output,
        script_sig: ScriptBuf::new(),
        sequence,
        witness: Witness::new(),
    }
}

/// An unsigned tx spending `inputs` into `outputs`.
fn spend(version: i32, inputs: Vec<TxIn>, outputs: Vec<TxOut>) -> Transaction {
    Transaction {
        version: Version(version),
        lock_time: LockTime::ZERO,
        input: inputs,
        output: outputs,
    }
}

/// Key-path sign every input whose prevout is in `signers`; the others keep their witness.
fn sign(tx: &mut Transaction, prevouts: &[TxOut], signers: &[Option<&Keypair>]) {
    let unsigned = tx.clone();
    for (i, kp) in signers.iter().enumerate() {
        if let Some(kp) = kp {
            let sig = sign_single_key(&unsigned, i, prevouts, kp, &[i as u8; 32]).expect("sign");
            tx.input[i].witness = key_spend_witness(&sig);
        }
    }
}

fn pay(kp: &Keypair, sat: u64) -> TxOut {
    TxOut {
        value: Amount::from_sat(sat),
        script_pubkey: script_of(kp),
    }
}

/// A signed one-input spend of a coin `owner` holds.
fn signed_spend(
    owner: &Keypair,
    coin: OutPoint,
    coin_out: &TxOut,
    seq: Sequence,
    outputs: Vec<TxOut>,
) -> Transaction {
    let mut tx = spend(3, vec![input(coin, seq)], outputs);
    sign(&mut tx, std::slice::from_ref(coin_out), &[Some(owner)]);
    tx
}

fn assert_audit(chain: &Chain) {
    assert_eq!(
        chain.funded_total(),
        chain.confirmed_utxo_total() + chain.confirmed_fees_total()
    );
}

#[test]
fn key_path_spend_is_accepted_and_confirmed() {
    let mut chain = Chain::new();
    let alice = keypair(1);
    let bob = keypair(2);
    let coin = chain.fund(script_of(&alice), Amount::from_sat(100_000));
    let coin_out = chain.utxo(&coin).expect("funded").output.clone();
    assert_eq!(chain.utxo(&coin).and_then(|u| u.height), Some(0));

    let tx = signed_spend(
        &alice,
        coin,
        &coin_out,
        Sequence::MAX,
        vec![pay(&bob, 99_000)],
    );
    let txid = chain.submit(tx.clone()).expect("valid spend");
    assert!(chain.in_mempool(&txid));
    assert_eq!(
        chain.utxo(&OutPoint { txid, vout: 0 }).map(|u| u.height),
        Some(None)
    );
    assert_eq!(chain.stats().inputs_verified, 1);

    let block = chain.mine_block(Micros::from_secs(600));
    assert_eq!((block.height, block.time), (1, Micros::from_secs(600)));
    assert_eq!(block.txs, vec![tx]);
    assert!(!chain.in_mempool(&txid));
    assert_eq!(chain.confirmation_height(&txid), Some(1));
    assert_eq!(chain.utxo(&coin), None);
    assert_eq!(
        chain
            .utxo(&OutPoint { txid, vout: 0 })
            .and_then(|u| u.height),
        Some(1)
    );
    assert_eq!(chain.confirmed_fees_total(), Amount::from_sat(1_000));
    assert_eq!(chain.stats().blocks, 1);
    assert_eq!(chain.stats().txs_accepted, 1);
    assert_audit(&chain);
}

#[test]
fn flipped_signature_bit_is_a_consensus_reject() {
    let mut chain = Chain::new();
    let alice = keypair(1);
    let coin = chain.fund(script_of(&alice), Amount::from_sat(50_000));
    let coin_out = chain.utxo(&coin).expect("funded").output.clone();
    let good = signed_spend(
        &alice,
        coin,
        &coin_out,
        Sequence::MAX,
        vec![pay(&alice, 50_000)],
    );
    for byte in [0usize, 31, 63] {
        let mut bad = good.clone();
        let mut sig = bad.input[0].witness.nth(0).expect("sig").to_vec();
        sig[byte] ^= 0x01;
        bad.input[0].witness = Witness::from_slice(&[sig]);
        let reject = chain.submit(bad).expect_err("corrupted signature");
        assert!(
            matches!(reject, ChainReject::Consensus { index: 0, .. }),
            "{reject}"
        );
    }
    // A wrong key's valid signature fails too.
    let mallory = signed_spend(
        &keypair(9),
        coin,
        &coin_out,
        Sequence::MAX,
        vec![pay(&alice, 50_000)],
    );
    assert!(matches!(
        chain.submit(mallory),
        Err(ChainReject::Consensus { index: 0, .. })
    ));
    assert_eq!(chain.stats().txs_rejected, 4);
    assert_eq!(chain.stats().inputs_verified, 4);
    chain.submit(good).expect("the original is still valid");
    assert_eq!(chain.stats().inputs_verified, 5);
}

#[test]
fn csv_child_waits_for_enough_confirmations() {
    let mut chain = Chain::new();
    let owner = keypair(3);
    let receiver = keypair(4);
    let coin = chain.fund(script_of(&owner), Amount::from_sat(10_000));
    let coin_out = chain.utxo(&coin).expect("funded").output.clone();
    // A node-like parent (CSV 0) paying the owner again, confirmed at height 1.
    let pair = node_txs(coin, &coin_out, Sequence(0), Sequence(50));
    let mut parent = pair.cpfp;
    sign(
        &mut parent,
        std::slice::from_ref(&coin_out),
        &[Some(&owner)],
    );
    let parent_txid = chain.submit(parent.clone()).expect("CSV 0 parent");
    chain.mine_block(Micros::from_secs(1));
    chain.mine_block(Micros::from_secs(2));
    chain.mine_block(Micros::from_secs(3));
    assert_eq!(chain.confirmation_height(&parent_txid), Some(1));

    // A refund-like child with CSV 10; at height 4 the parent has 3 confirmations.
    let refunds = refund_txs(
        &parent,
        None,
        0,
        &receiver.public_key(),
        Sequence(10),
        Sequence(60),
    );
    let mut child = refunds.cpfp;
    sign(
        &mut child,
        std::slice::from_ref(&parent.output[0]),
        &[Some(&owner)],
    );
    assert_eq!(
        chain.submit(child.clone()),
        Err(ChainReject::NonFinal {
            index: 0,
            needed: 10,
            have: 3
        })
    );
    // Still one short once the next block would be height 10 (9 confirmations).
    for t in 4..10 {
        chain.mine_block(Micros::from_secs(t));
    }
    assert_eq!(chain.height(), 9);
    assert_eq!(
        chain.submit(child.clone()),
        Err(ChainReject::NonFinal {
            index: 0,
            needed: 10,
            have: 9
        })
    );
    chain.mine_block(Micros::from_secs(10));
    let child_txid = chain.submit(child).expect("mature refund");
    let block = chain.mine_block(Micros::from_secs(11));
    assert_eq!(block.height, 11);
    assert_eq!(chain.confirmation_height(&child_txid), Some(11));
    // The direct-from-CPFP twin (CSV 60) now conflicts with a confirmed spend: missing input.
    let mut twin = refunds.direct_from_cpfp;
    sign(
        &mut twin,
        std::slice::from_ref(&parent.output[0]),
        &[Some(&owner)],
    );
    assert!(matches!(
        chain.submit(twin),
        Err(ChainReject::MissingInput { index: 0, .. })
    ));
    assert_audit(&chain);
}

#[test]
fn unconfirmed_parent_allows_only_csv_zero() {
    let mut chain = Chain::new();
    let owner = keypair(5);
    let coin = chain.fund(script_of(&owner), Amount::from_sat(20_000));
    let coin_out = chain.utxo(&coin).expect("funded").output.clone();
    let parent = signed_spend(
        &owner,
        coin,
        &coin_out,
        Sequence(0),
        vec![pay(&owner, 20_000)],
    );
    let parent_txid = chain.submit(parent.clone()).expect("parent");
    let parent_out = OutPoint {
        txid: parent_txid,
        vout: 0,
    };
    let csv1 = signed_spend(
        &owner,
        parent_out,
        &parent.output[0],
        Sequence(1),
        vec![pay(&owner, 19_000)],
    );
    assert_eq!(
        chain.submit(csv1),
        Err(ChainReject::NonFinal {
            index: 0,
            needed: 1,
            have: 0
        })
    );
    let csv0 = signed_spend(
        &owner,
        parent_out,
        &parent.output[0],
        Sequence(0),
        vec![pay(&owner, 19_000)],
    );
    let child_txid = chain.submit(csv0).expect("CSV 0 child of a mempool parent");
    let block = chain.mine_block(Micros::ZERO);
    assert_eq!(
        block
            .txs
            .iter()
            .map(Transaction::compute_txid)
            .collect::<Vec<_>>(),
        vec![parent_txid, child_txid]
    );
    assert_audit(&chain);
}

#[test]
fn bip68_ignores_disabled_locks_and_version_1_and_rejects_time_locks() {
    let mut chain = Chain::new();
    let owner = keypair(6);
    let coin = chain.fund(script_of(&owner), Amount::from_sat(20_000));
    chain.mine_block(Micros::ZERO);
    let coin_out = chain.utxo(&coin).expect("funded").output.clone();
    // Bit 22: a time-based lock is not modelled.
    let timed = signed_spend(
        &owner,
        coin,
        &coin_out,
        Sequence(0x0040_0001),
        vec![pay(&owner, 20_000)],
    );
    assert_eq!(
        chain.submit(timed),
        Err(ChainReject::Malformed(
            "time-based relative locks are not modelled".into()
        ))
    );
    // Version 1: no BIP68, so a huge low16 is fine.
    let mut v1 = spend(
        1,
        vec![input(coin, Sequence(0x0000_ffff))],
        vec![pay(&owner, 20_000)],
    );
    sign(&mut v1, std::slice::from_ref(&coin_out), &[Some(&owner)]);
    chain.submit(v1).expect("version 1 ignores BIP68");

    let coin2 = chain.fund(script_of(&owner), Amount::from_sat(1_000));
    let coin2_out = chain.utxo(&coin2).expect("funded").output.clone();
    // Bit 31 set: the lock is disabled.
    let disabled = signed_spend(
        &owner,
        coin2,
        &coin2_out,
        Sequence(0x8000_ffff),
        vec![pay(&owner, 1_000)],
    );
    chain.submit(disabled).expect("disabled relative lock");
    // Bit 30 (historic Spark) is ignored: 0x40000003 needs 3 confirmations; a genesis coin has 2.
    let coin3 = chain.fund(script_of(&owner), Amount::from_sat(1_000));
    let coin3_out = chain.utxo(&coin3).expect("funded").output.clone();
    let bit30 = signed_spend(
        &owner,
        coin3,
        &coin3_out,
        Sequence(0x4000_0003),
        vec![pay(&owner, 1_000)],
    );
    assert_eq!(
        chain.submit(bit30),
        Err(ChainReject::NonFinal {
            index: 0,
            needed: 3,
            have: 2
        })
    );
}

#[test]
fn double_spend_missing_input_value_out_and_duplicate() {
    let mut chain = Chain::new();
    let owner = keypair(7);
    let coin = chain.fund(script_of(&owner), Amount::from_sat(30_000));
    let coin_out = chain.utxo(&coin).expect("funded").output.clone();

    let too_much = signed_spend(
        &owner,
        coin,
        &coin_out,
        Sequence::MAX,
        vec![pay(&owner, 30_001)],
    );
    assert_eq!(
        chain.submit(too_much),
        Err(ChainReject::ValueOut {
            inputs: Amount::from_sat(30_000),
            outputs: Amount::from_sat(30_001)
        })
    );

    let first = signed_spend(
        &owner,
        coin,
        &coin_out,
        Sequence::MAX,
        vec![pay(&owner, 29_000)],
    );
    let first_txid = chain.submit(first.clone()).expect("first spend");
    assert_eq!(
        chain.submit(first.clone()),
        Err(ChainReject::Duplicate(first_txid))
    );
    let second = signed_spend(
        &owner,
        coin,
        &coin_out,
        Sequence::MAX,
        vec![pay(&owner, 28_000)],
    );
    assert_eq!(
        chain.submit(second.clone()),
        Err(ChainReject::DoubleSpend {
            index: 0,
            conflict: first_txid
        })
    );

    // A mempool output spent in the mempool is also a double spend for a third tx.
    let out = OutPoint {
        txid: first_txid,
        vout: 0,
    };
    let child = signed_spend(
        &owner,
        out,
        &first.output[0],
        Sequence(0),
        vec![pay(&owner, 29_000)],
    );
    let child_txid = chain.submit(child).expect("child");
    let rival = signed_spend(
        &owner,
        out,
        &first.output[0],
        Sequence(0),
        vec![pay(&owner, 1)],
    );
    assert_eq!(
        chain.submit(rival),
        Err(ChainReject::DoubleSpend {
            index: 0,
            conflict: child_txid
        })
    );

    let nowhere = OutPoint {
        txid: Txid::from_raw_hash(bitcoin::hashes::Hash::from_byte_array([0xab; 32])),
        vout: 3,
    };
    let missing = signed_spend(
        &owner,
        nowhere,
        &coin_out,
        Sequence::MAX,
        vec![pay(&owner, 1)],
    );
    assert_eq!(
        chain.submit(missing),
        Err(ChainReject::MissingInput {
            index: 0,
            outpoint: nowhere
        })
    );

    chain.mine_block(Micros::ZERO);
    // After confirmation: the loser now spends a spent coin, the winner is a duplicate.
    assert_eq!(
        chain.submit(second),
        Err(ChainReject::MissingInput {
            index: 0,
            outpoint: coin
        })
    );
    assert_eq!(chain.submit(first), Err(ChainReject::Duplicate(first_txid)));
    assert_eq!(chain.stats().txs_rejected, 7);
    assert_audit(&chain);
}

/// spark-protocol §3.2: CPFP node txs pay zero fee and carry a P2A anchor a child can spend.
#[test]
fn zero_fee_v3_cpfp_parent_and_anchor_child() {
    let mut chain = Chain::new();
    let owner = keypair(8);
    let payer = keypair(10);
    let leaf = chain.fund(script_of(&owner), Amount::from_sat(65_536));
    let leaf_out = chain.utxo(&leaf).expect("funded").output.clone();
    let fee_coin = chain.fund(script_of(&payer), Amount::from_sat(5_000));
    let fee_out = chain.utxo(&fee_coin).expect("funded").output.clone();

    let mut node = node_txs(leaf, &leaf_out, Sequence(0), Sequence(50)).cpfp;
    sign(&mut node, std::slice::from_ref(&leaf_out), &[Some(&owner)]);
    let node_txid = chain.submit(node.clone()).expect("zero-fee v3 parent");
    assert_eq!(node.output[1], anchor_output());

    // The fee-bumping child: the anchor (empty witness) plus a fee coin.
    let anchor = OutPoint {
        txid: node_txid,
        vout: 1,
    };
    let mut child = spend(
        3,
        vec![input(anchor, Sequence(0)), input(fee_coin, Sequence(0))],
        vec![pay(&payer, 4_000)],
    );
    let prevouts = [anchor_output(), fee_out];
    sign(&mut child, &prevouts, &[None, Some(&payer)]);
    let child_txid = chain.submit(child).expect("anchor spend");
    assert_eq!(chain.stats().inputs_verified, 3);

    let block = chain.mine_block(Micros::ZERO);
    assert_eq!(block.txs.len(), 2);
    assert_eq!(chain.confirmation_height(&node_txid), Some(1));
    assert_eq!(chain.confirmation_height(&child_txid), Some(1));
    assert_eq!(chain.confirmed_fees_total(), Amount::from_sat(1_000));
    assert_eq!(chain.utxo(&anchor), None);
    assert_audit(&chain);
}

#[test]
fn malformed_shapes() {
    let mut chain = Chain::new();
    let owner = keypair(11);
    let coin = chain.fund(script_of(&owner), Amount::from_sat(1_000));
    assert!(matches!(
        chain.submit(spend(3, vec![], vec![pay(&owner, 1)])),
        Err(ChainReject::Malformed(_))
    ));
    assert!(matches!(
        chain.submit(spend(3, vec![input(coin, Sequence::MAX)], vec![])),
        Err(ChainReject::Malformed(_))
    ));
    let twice = spend(
        3,
        vec![input(coin, Sequence::MAX), input(coin, Sequence::MAX)],
        vec![pay(&owner, 1)],
    );
    assert!(matches!(
        chain.submit(twice),
        Err(ChainReject::Malformed(_))
    ));
    // Each funding gets its own txid even for identical scripts and values.
    let again = chain.fund(script_of(&owner), Amount::from_sat(1_000));
    assert_ne!(again, coin);
}

/// One step of a random spend sequence.
#[derive(Clone, Debug)]
enum Step {
    Fund {
        key: u8,
        sat: u64,
    },
    /// Spend the `pick`-th known coin, paying `fee` and splitting the rest in `parts`.
    Spend {
        pick: usize,
        fee: u64,
        parts: u8,
        corrupt: bool,
    },
    Mine,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..3, 1u64..1_000_000).prop_map(|(key, sat)| Step::Fund { key, sat }),
        (
            any::<usize>(),
            0u64..2_000,
            1u8..4,
            proptest::bool::weighted(0.1)
        )
            .prop_map(|(pick, fee, parts, corrupt)| Step::Spend {
                pick,
                fee,
                parts,
                corrupt
            }),
        Just(Step::Mine),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// funded = confirmed UTXOs + confirmed fees after every step; every input is verified.
    #[test]
    fn value_audit_holds_over_random_spends(steps in proptest::collection::vec(step(), 1..40)) {
        let keys: Vec<Keypair> = (1..=3).map(keypair).collect();
        let mut chain = Chain::new();
        // Coins we have not spent yet, with their owner index (confirmed or mempool).
        let mut coins: Vec<(OutPoint, TxOut, usize)> = Vec::new();
        let mut inputs_submitted = 0u64;
        for step in steps {
            match step {
                Step::Fund { key, sat } => {
                    let out = chain.fund(script_of(&keys[usize::from(key)]), Amount::from_sat(sat));
                    let txout = chain.utxo(&out).expect("funded").output.clone();
                    coins.push((out, txout, usize::from(key)));
                }
                Step::Spend { pick, fee, parts, corrupt } => {
                    if coins.is_empty() { continue; }
                    let (coin, coin_out, owner) = coins.remove(pick % coins.len());
                    let value = coin_out.value.to_sat();
                    let spendable = value.saturating_sub(fee);
                    let share = spendable / u64::from(parts);
                    let outputs: Vec<TxOut> = (0..parts).map(|p| pay(&keys[usize::from(p) % 3], share)).collect();
                    let mut tx = signed_spend(&keys[owner], coin, &coin_out, Sequence(0), outputs);
                    if corrupt {
                        let mut sig = tx.input[0].witness.nth(0).expect("sig").to_vec();
                        sig[5] ^= 0x80;
                        tx.input[0].witness = Witness::from_slice(&[sig]);
                    }
                    inputs_submitted += 1;
                    match chain.submit(tx.clone()) {
                        Ok(txid) => {
                            prop_assert!(!corrupt);
                            for (vout, out) in tx.output.iter().enumerate() {
                                coins.push((OutPoint { txid, vout: vout as u32 }, out.clone(), vout % 3));
                            }
                        }
                        Err(ChainReject::Consensus { .. }) => {
                            prop_assert!(corrupt);
                            coins.push((coin, coin_out, owner));
                        }
                        // BIP431: a v3 chain deeper than parent + child is refused before
                        // any script runs (chain/package.rs).
                        Err(ChainReject::Truc(_)) => {
                            inputs_submitted -= 1;
                            coins.push((coin, coin_out, owner));
                        }
                        Err(other) => prop_assert!(false, "unexpected reject {other}"),
                    }
                }
                Step::Mine => {
                    chain.mine_block(Micros::ZERO);
                }
            }
            prop_assert_eq!(chain.funded_total(), chain.confirmed_utxo_total() + chain.confirmed_fees_total());
        }
        prop_assert_eq!(chain.stats().inputs_verified, inputs_submitted);
        chain.mine_block(Micros::ZERO);
        let live: Amount = coins.iter().map(|(_, out, _)| out.value).sum();
        prop_assert_eq!(chain.confirmed_utxo_total(), live);
        prop_assert_eq!(chain.funded_total(), live + chain.confirmed_fees_total());
    }
}
