//! Test fixture: one split as the operators' tables hold it after the finalize, with plain
//! (unsigned) txs of the real shapes and timelocks (spark-protocol §2.6, tx/split.rs). The
//! parent is SPLITTED; its node output is spent by the split node (CSV 0), whose output 0 funds
//! the child's node tx; the child is AVAILABLE with the parent's node and the split node as
//! ancestors. Used by the I-7 and stale-refund race tests, which must still judge the child.
use bitcoin::hashes::Hash as _;
use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid};
use reference_node::crypto::{secp, SecretKey};
use reference_node::msg::{NodeSet, RefundSet};
use reference_node::operator::store::{Db, LeafRow, LeafStatus, SplitRow};
use reference_node::types::{KeyshareId, LeafId};

pub const PARENT: LeafId = LeafId([1; 16]);
pub const CHILD: LeafId = LeafId([2; 16]);
pub const VALUE: u64 = 100_000;

/// A v3 tx spending output 0 of each of `prev` at `csv`, paying `values` (distinct values give
/// distinct txids).
pub fn tx(prev: &[Txid], csv: u16, values: &[u64]) -> Transaction {
    Transaction {
        version: transaction::Version(3),
        lock_time: absolute::LockTime::ZERO,
        input: prev.iter().map(|t| TxIn { previous_output: OutPoint { txid: *t, vout: 0 }, sequence: Sequence::from_height(csv), ..Default::default() }).collect(),
        output: values.iter().map(|v| TxOut { value: Amount::from_sat(*v), script_pubkey: ScriptBuf::new() }).collect(),
    }
}

/// Node pair spending `prev` at `csv` (direct at + 50).
pub fn nodes(prev: Txid, csv: u16, value: u64) -> NodeSet {
    NodeSet { cpfp: tx(&[prev], csv, &[value]), direct: tx(&[prev], csv + 50, &[value - 1]) }
}

/// Refund triple on `node` at `csv`; `tag` tells one owner's refunds from another's.
pub fn refunds(node: &NodeSet, csv: u16, value: u64, tag: u64) -> RefundSet {
    let (c, d) = (node.cpfp.compute_txid(), node.direct.compute_txid());
    RefundSet { cpfp: tx(&[c], csv, &[value - tag]), direct: tx(&[d], csv + 50, &[value - 10 - tag]), direct_from_cpfp: tx(&[c], csv + 50, &[value - 20 - tag]) }
}

fn row(status: LeafStatus, value_sats: u64, ancestors: Vec<NodeSet>, nodes: NodeSet, refunds: RefundSet) -> LeafRow {
    let key = SecretKey::from_slice(&[3; 32]).expect("scalar").public_key(secp());
    let deposit_outpoint = OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 };
    LeafRow { status, keyshare: KeyshareId([4; 16]), value_sats, verifying_key: key, owner_identity: key, owner_signing_key: key, deposit_outpoint, nodes, refunds, ancestors }
}

pub struct SplitTree {
    pub parent: LeafRow,
    pub split_nodes: NodeSet,
    pub child: LeafRow,
}

impl SplitTree {
    pub fn new() -> Self {
        let root = nodes(Txid::from_byte_array([9; 32]), 0, VALUE);
        let parent = row(LeafStatus::Splitted, VALUE, Vec::new(), root.clone(), refunds(&root, 2000, VALUE, 1));
        let split_nodes = nodes(root.cpfp.compute_txid(), 0, VALUE);
        let child_nodes = nodes(split_nodes.cpfp.compute_txid(), 2000, VALUE);
        let child_refunds = refunds(&child_nodes, 2000, VALUE, 1);
        let child = row(LeafStatus::Available, VALUE, vec![root, split_nodes.clone()], child_nodes, child_refunds);
        SplitTree { parent, split_nodes, child }
    }

    /// One operator's tables after the split's finalize.
    pub fn db(&self) -> Db {
        let mut db = Db::default();
        db.leaves.insert(PARENT, self.parent.clone());
        db.leaves.insert(CHILD, self.child.clone());
        let owner_identity = self.parent.owner_identity;
        db.splits.insert(PARENT, SplitRow { owner_identity, coordinator: reference_node::types::OperatorId(0), plan: Vec::new(), signed: true, split_nodes: Some(self.split_nodes.clone()) });
        db
    }
}
