//! Renew, operator side, per variant: the happy path (the wallet's jobs are accepted and the
//! signed txs installed as the new exit chain), refusal when the variant's precondition fails,
//! and refusal when one field of one tx differs from the template the operator rebuilds.
//! Signatures are real BIP340 key-path signatures under Y (a single key stands in for the
//! FROST aggregate, whose rounds the deposit tests cover).
use super::*;
use crate::crypto::{secp, SecretKey};
use crate::msg::{NodeSet, RefundSet};
use crate::operator::store::{Db, LeafRow, LeafStatus};
use crate::tx::renew::renew_templates;
use crate::tx::sighash;
use crate::tx::template::{node_txs, p2tr_script};
use crate::types::{KeyshareId, LeafId};
use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::Keypair;
use bitcoin::{Amount, OutPoint, Sequence, TxOut, Txid};
use rand_core::SeedableRng;

const LEAF: LeafId = LeafId([7; 16]);

struct Fixture {
    db: Db,
    y: SecretKey,
    owner: SecretKey,
    identity: PublicKey,
    rng: rand_chacha::ChaCha20Rng,
}

/// One AVAILABLE leaf whose leaf node has CSV `node` and whose refunds have CSV `refund`.
fn fixture(node: u16, refund: u16) -> Fixture {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(u64::from(node) << 16 | u64::from(refund));
    let (y, owner, id) = (SecretKey::new(&mut rng), SecretKey::new(&mut rng), SecretKey::new(&mut rng));
    let (yp, op, identity) = (y.public_key(secp()), owner.public_key(secp()), id.public_key(secp()));
    let deposit = OutPoint { txid: Txid::from_byte_array([3; 32]), vout: 0 };
    let out = TxOut { value: Amount::from_sat(100_000), script_pubkey: p2tr_script(&yp) };
    let n = node_txs(deposit, &out, Sequence(u32::from(node)), Sequence(u32::from(node) + 50));
    let nodes = NodeSet { cpfp: n.cpfp, direct: n.direct };
    let refunds: RefundSet = nodes.refunds_to(&op, Sequence(u32::from(refund)), Sequence(u32::from(refund) + 50)).unwrap();
    let mut db = Db::default();
    db.leaves.insert(
        LEAF,
        LeafRow {
            status: LeafStatus::Available,
            keyshare: KeyshareId([1; 16]),
            value_sats: 100_000,
            verifying_key: yp,
            owner_identity: identity,
            owner_signing_key: op,
            deposit_outpoint: deposit,
            nodes,
            refunds,
            ancestors: Vec::new(),
        },
    );
    Fixture { db, y, owner, identity, rng }
}

impl Fixture {
    /// The wallet's side: the templates and a user nonce commitment per job.
    fn jobs(&mut self, kind: RenewKind) -> (RenewTxs, Vec<UserJob>) {
        let row = &self.db.leaves[&LEAF];
        let owner = self.owner.public_key(secp());
        let t = renew_templates(kind, &row.nodes, &row.refunds, &owner, false).unwrap();
        let scalar = crate::crypto::Scalar::from_secret_key(&self.owner);
        let jobs = t.jobs().into_iter().map(|tx| UserJob { tx, user_commitment: crate::crypto::signing::commit(&scalar, &mut self.rng).1 }).collect();
        (t, jobs)
    }

    /// Every job signed under Y (key path, BIP341-tweaked like the P2TR outputs).
    fn sign(&self, t: &RenewTxs) -> Vec<Transaction> {
        let row = &self.db.leaves[&LEAF];
        let (_, parent) = crate::tx::renew::parent_output(&row.nodes).unwrap();
        let prevouts = t.prevouts(&parent).unwrap();
        let keypair = Keypair::from_secret_key(secp(), &self.y);
        t.jobs()
            .into_iter()
            .zip(prevouts)
            .map(|(mut tx, prev)| {
                let sig = sighash::sign_single_key(&tx, 0, &prev, &keypair, &[0; 32]).unwrap();
                tx.input[0].witness = sighash::key_spend_witness(&sig);
                tx
            })
            .collect()
    }

    fn validate(&self, kind: RenewKind, jobs: Vec<UserJob>) -> Result<usize, String> {
        Operator::validate_renew(&self.db, self.identity, LEAF, kind, jobs, false).map(|(_, j)| j.len())
    }
}

fn csv_of(tx: &Transaction) -> u16 {
    crate::tx::renew::csv(tx).unwrap()
}

/// Accepted, signed, installed: returns the leaf row after the renew.
fn happy(kind: RenewKind, node: u16, refund: u16) -> LeafRow {
    let mut f = fixture(node, refund);
    let before = f.db.leaves[&LEAF].clone();
    let (t, jobs) = f.jobs(kind);
    assert_eq!(f.validate(kind, jobs), Ok(t.jobs().len()));
    let signed = f.sign(&t);
    Operator::apply_renew(&mut f.db, LEAF, kind, &signed, false).unwrap();
    // A retried gossip of the same renew is a no-op.
    Operator::apply_renew(&mut f.db, LEAF, kind, &signed, false).unwrap();
    let row = f.db.leaves[&LEAF].clone();
    assert_eq!(csv_of(&row.refunds.cpfp), 2000);
    assert_eq!(csv_of(&row.refunds.direct), 2050);
    assert_eq!(csv_of(&row.refunds.direct_from_cpfp), 2050);
    assert_eq!(row.refunds.cpfp.output[0].script_pubkey, p2tr_script(&before.owner_signing_key));
    assert_eq!(row.nodes.cpfp.output[0].value, Amount::from_sat(100_000));
    row
}

#[test]
fn renew_refund_happy_path_undercuts_the_old_node_by_100() {
    let before = fixture(1000, 200).db.leaves[&LEAF].clone();
    let row = happy(RenewKind::Refund, 1000, 200);
    assert!(row.ancestors.is_empty());
    assert_eq!((csv_of(&row.nodes.cpfp), csv_of(&row.nodes.direct)), (900, 950));
    // Same parent output as the node it replaces.
    assert_eq!(row.nodes.cpfp.input[0].previous_output, before.nodes.cpfp.input[0].previous_output);
}

#[test]
fn renew_node_happy_path_adds_a_split_node_at_csv_0() {
    let before = fixture(200, 100).db.leaves[&LEAF].clone();
    let mut f = fixture(200, 100);
    let (t, jobs) = f.jobs(RenewKind::Node);
    assert_eq!(f.validate(RenewKind::Node, jobs), Ok(7));
    let signed = f.sign(&t);
    Operator::apply_renew(&mut f.db, LEAF, RenewKind::Node, &signed, false).unwrap();
    let row = &f.db.leaves[&LEAF];
    assert_eq!(row.ancestors.len(), 1, "the exit chain grows by one layer (split node)");
    let split = &row.ancestors[0];
    assert_eq!((csv_of(&split.cpfp), csv_of(&split.direct)), (0, 50));
    assert_eq!(split.cpfp.input[0].previous_output, before.nodes.cpfp.input[0].previous_output);
    assert_eq!((csv_of(&row.nodes.cpfp), csv_of(&row.nodes.direct)), (2000, 2050));
    assert_eq!(row.nodes.cpfp.input[0].previous_output.txid, split.cpfp.compute_txid());
    assert_eq!(f.db.split_locked.get(&split.cpfp.compute_txid()), Some(&LEAF), "split node is SPLIT_LOCKED");
    let _ = happy(RenewKind::Node, 300, 300);
}

#[test]
fn renew_node_zero_happy_path_spends_the_old_node() {
    let before = fixture(0, 100).db.leaves[&LEAF].clone();
    let row = happy(RenewKind::NodeZero, 0, 100);
    assert_eq!(row.ancestors, vec![before.nodes.clone()]);
    assert_eq!((csv_of(&row.nodes.cpfp), csv_of(&row.nodes.direct)), (0, 50));
    assert_eq!(row.nodes.cpfp.input[0].previous_output, OutPoint { txid: before.nodes.cpfp.compute_txid(), vout: 0 });
}

#[test]
fn each_variant_is_refused_when_its_precondition_fails() {
    // (variant, node CSV, refund CSV, expected reason): one failing condition each.
    let cases = [
        (RenewKind::Refund, 1000, 400, "above the renew threshold"),
        (RenewKind::Refund, 100, 100, "would fall below"),
        (RenewKind::Node, 400, 100, "node CSV 400 is above"),
        (RenewKind::Node, 200, 400, "refund CSV 400"),
        (RenewKind::Node, 0, 100, "needs renew-node-zero"),
        (RenewKind::NodeZero, 100, 100, "is not 0"),
        (RenewKind::NodeZero, 0, 400, "refund CSV 400"),
    ];
    for (kind, node, refund, reason) in cases {
        let f = fixture(node, refund);
        // The wallet cannot build them either; an operator refuses whatever it is sent.
        let row = &f.db.leaves[&LEAF];
        assert!(renew_templates(kind, &row.nodes, &row.refunds, &f.owner.public_key(secp()), false).is_err());
        let err = f.validate(kind, Vec::new()).unwrap_err();
        assert!(err.contains(reason), "{kind:?} node {node} refund {refund}: {err}");
    }
}

#[test]
fn each_variant_is_refused_when_one_field_differs_from_the_rebuilt_tx() {
    type Tamper = fn(&mut Transaction);
    let tampers: [(&str, Tamper); 4] = [
        ("sequence", |t| t.input[0].sequence = Sequence(t.input[0].sequence.0 + 1)),
        ("value", |t| t.output[0].value -= Amount::from_sat(1)),
        ("previous_output", |t| t.input[0].previous_output.vout += 1),
        ("lock_time", |t| t.lock_time = bitcoin::absolute::LockTime::from_consensus(1)),
    ];
    for (kind, node, refund) in [(RenewKind::Refund, 1000, 200), (RenewKind::Node, 200, 100), (RenewKind::NodeZero, 0, 100)] {
        for (field, tamper) in tampers {
            let mut f = fixture(node, refund);
            let (t, mut jobs) = f.jobs(kind);
            let last = jobs.len() - 1;
            for i in [0, last] {
                let mut bad = jobs.clone();
                tamper(&mut bad[i].tx);
                let err = f.validate(kind, bad).unwrap_err();
                assert!(err.contains(&format!("job {i}")) && err.contains(field), "{kind:?} {field} job {i}: {err}");
            }
            // A tampered signed tx in the finalize or the gossip is refused and nothing changes.
            let mut signed = f.sign(&t);
            tamper(&mut signed[0]);
            let before = f.db.leaves[&LEAF].clone();
            assert!(Operator::apply_renew(&mut f.db, LEAF, kind, &signed, false).is_err(), "{kind:?} {field}");
            assert_eq!(f.db.leaves[&LEAF], before);
            jobs.pop();
            assert!(f.validate(kind, jobs).unwrap_err().contains("signing jobs"));
        }
    }
}

#[test]
fn renew_is_refused_for_another_owner_or_a_locked_leaf() {
    let mut f = fixture(0, 100);
    let (_, jobs) = f.jobs(RenewKind::NodeZero);
    let stranger = SecretKey::new(&mut f.rng).public_key(secp());
    assert!(Operator::validate_renew(&f.db, stranger, LEAF, RenewKind::NodeZero, jobs.clone(), false).unwrap_err().contains("not owned"));
    f.db.leaves.get_mut(&LEAF).unwrap().status = LeafStatus::TransferLocked(crate::types::TransferId([1; 16]));
    assert!(f.validate(RenewKind::NodeZero, jobs.clone()).unwrap_err().contains("not AVAILABLE"));
    // Locked by this owner's own earlier renew attempt: re-entrant.
    f.db.leaves.get_mut(&LEAF).unwrap().status = LeafStatus::RenewLocked;
    f.db.pending_renews.insert(LEAF, PendingRenewRow { kind: RenewKind::NodeZero, owner_identity: f.identity });
    assert_eq!(f.validate(RenewKind::NodeZero, jobs), Ok(5));
}

#[test]
fn a_signature_under_another_key_is_refused() {
    let mut f = fixture(0, 100);
    let (t, _) = f.jobs(RenewKind::NodeZero);
    f.y = SecretKey::new(&mut f.rng);
    let signed = f.sign(&t);
    assert!(Operator::apply_renew(&mut f.db, LEAF, RenewKind::NodeZero, &signed, false).unwrap_err().contains("does not verify"));
}

/// Renew/send race (race70, spark-protocol §3.4, I-4): a send validated before a renew of the
/// same leaf (a second device) must not be recorded at commit, neither while the renew holds
/// the leaf RENEW_LOCKED nor after it replaced the node tx the send's refunds spend. Fails if the
/// coordinator records the transfer without re-checking the leaf at commit.
#[test]
fn a_send_committing_after_a_renew_of_its_leaf_is_refused() {
    let mut f = fixture(0, 200);
    let transfer = crate::types::TransferId([9; 16]);
    let receiver = SecretKey::new(&mut f.rng).public_key(secp());
    let row = f.db.leaves[&LEAF].clone();
    let refunds = row.nodes.refunds_to(&receiver, Sequence(100), Sequence(150)).unwrap();
    let signed = std::collections::BTreeMap::from([(LEAF, refunds)]);
    assert_eq!(Operator::leaves_still_as_validated(&f.db, transfer, &signed), Ok(()));
    // The renew started meanwhile: the leaf is RENEW_LOCKED.
    f.db.leaves.get_mut(&LEAF).unwrap().status = LeafStatus::RenewLocked;
    assert!(Operator::leaves_still_as_validated(&f.db, transfer, &signed).unwrap_err().contains("RenewLocked"));
    // The renew finished meanwhile: AVAILABLE again, on a new node tx.
    f.db.leaves.get_mut(&LEAF).unwrap().status = LeafStatus::Available;
    let (t, _) = f.jobs(RenewKind::NodeZero);
    let done = f.sign(&t);
    Operator::apply_renew(&mut f.db, LEAF, RenewKind::NodeZero, &done, false).unwrap();
    assert!(Operator::leaves_still_as_validated(&f.db, transfer, &signed).unwrap_err().contains("renewed during the send"));
}
