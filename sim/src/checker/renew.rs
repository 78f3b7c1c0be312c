//! Renew checks (spark-protocol §6.2, §6.4): I-7 node-layer ordering, I-8 on every node layer
//! of a leaf's exit chain, and L-7 renewability.
//!
//! I-7 keeps, per outpoint of a leaf's exit chain, every signed tx ever seen spending it in an
//! operator's leaf row (node layers, and the CPFP refund of the last layer). The tx the current
//! chain spends it with must have a CSV strictly below every other one recorded there: a
//! renew-refund's node is 100 below the node it replaces, a renew-node's split node (0) is below
//! the old node (≥ 100), a renew-node-zero's node (0) is below the old refunds (≥ 100). The last
//! layer's refunds among themselves are I-6's business (ties between one owner's refunds are
//! allowed there), so a refund is compared only with node txs.
use reference_node::msg::NodeSet;
use reference_node::operator::store::{LeafRow, LeafStatus};
use reference_node::tx::renew::{precondition, RenewKind, RENEW_THRESHOLD};
use reference_node::tx::timelock::{blocks, DIRECT_TIMELOCK_OFFSET, INITIAL_TIMELOCK, TIME_LOCK_INTERVAL};
use bitcoin::{OutPoint, Transaction, Txid};
use std::collections::BTreeMap;

fn csv(tx: &Transaction) -> Option<u16> {
    tx.input.first().map(|i| blocks(i.sequence).0)
}

fn spent(tx: &Transaction) -> Option<OutPoint> {
    tx.input.first().map(|i| i.previous_output)
}

/// I-8 on one node layer: CPFP CSV ∈ {0} ∪ [100, 2000], direct = CPFP + 50.
pub fn check_node_bounds(layer: &NodeSet) -> Option<String> {
    let (Some(nc), Some(nd)) = (csv(&layer.cpfp), csv(&layer.direct)) else {
        return Some("a node tx has no input".into());
    };
    let max = INITIAL_TIMELOCK.0;
    if nc != 0 && !(TIME_LOCK_INTERVAL..=max).contains(&nc) {
        return Some(format!("CPFP node CSV {nc} outside {{0}} ∪ [{TIME_LOCK_INTERVAL}, {max}]"));
    }
    if u32::from(nd) != u32::from(nc) + u32::from(DIRECT_TIMELOCK_OFFSET) {
        return Some(format!("direct node CSV {nd} != CPFP node CSV {nc} + {DIRECT_TIMELOCK_OFFSET}"));
    }
    None
}

/// I-8 on every ancestor layer of a leaf (the leaf node itself is checked with its refunds).
pub fn check_ancestor_bounds(row: &LeafRow) -> Option<String> {
    row.ancestors.iter().enumerate().find_map(|(i, l)| check_node_bounds(l).map(|m| format!("exit-chain layer {i}: {m}")))
}

/// Every signed spender seen per outpoint: txid → (CSV, is a node tx).
#[derive(Default)]
pub struct NodeLayerHistory {
    spenders: BTreeMap<OutPoint, BTreeMap<Txid, (u16, bool)>>,
}

impl NodeLayerHistory {
    /// Record `row`'s chain, then check I-7 on it.
    pub fn record_and_check(&mut self, row: &LeafRow) -> Option<String> {
        let mut current: Vec<(OutPoint, Txid, u16, bool)> = Vec::new();
        for layer in row.exit_layers() {
            if let (Some(p), Some(c)) = (spent(&layer.cpfp), csv(&layer.cpfp)) {
                current.push((p, layer.cpfp.compute_txid(), c, true));
            }
        }
        if let (Some(p), Some(c)) = (spent(&row.refunds.cpfp), csv(&row.refunds.cpfp)) {
            current.push((p, row.refunds.cpfp.compute_txid(), c, false));
        }
        for (p, txid, c, node) in &current {
            self.spenders.entry(*p).or_default().insert(*txid, (*c, *node));
        }
        for (p, txid, c, node) in current {
            let Some(others) = self.spenders.get(&p) else { continue };
            for (other, (oc, onode)) in others {
                if *other == txid || !(node || *onode) {
                    continue;
                }
                if *oc <= c {
                    let what = if node { "node tx" } else { "refund" };
                    let theirs = if *onode { "node tx" } else { "refund" };
                    return Some(format!(
                        "the current {what} {} (CSV {c}) on {p} does not undercut the earlier signed {theirs} {} (CSV {oc})",
                        short(&txid),
                        short(other)
                    ));
                }
            }
        }
        None
    }
}

fn short(t: &Txid) -> String {
    t.to_string()[..8].to_string()
}

/// Whether I-7 holds a leaf with this status to the ordering rule. A SPLITTED parent or an
/// AGGREGATED child is superseded, and a SPLIT_LOCKED parent is being superseded (its split node
/// may be signed, and another operator may already hold the children): the split or aggregate
/// node undercuts their chain by design. Every other leaf is held, split children included.
pub fn held_to_node_ordering(status: LeafStatus) -> bool {
    status.is_value_bearing() && status != LeafStatus::SplitLocked
}

/// L-7 at quiescence: an AVAILABLE leaf with refund CSV ≤ 300 has a renew variant whose
/// precondition holds (so it can always be renewed while the operators are live).
pub fn check_renewable(row: &LeafRow) -> Option<String> {
    let (node, refund) = (csv(&row.nodes.cpfp)?, csv(&row.refunds.cpfp)?);
    if row.status != LeafStatus::Available || refund > RENEW_THRESHOLD {
        return None;
    }
    let ok = [RenewKind::Refund, RenewKind::Node, RenewKind::NodeZero].into_iter().any(|k| precondition(k, node, refund).is_ok());
    (!ok).then(|| format!("refund CSV {refund}, node CSV {node}: no renew variant applies"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash as _;
    use bitcoin::{absolute, transaction, Amount, ScriptBuf, Sequence, TxIn, TxOut};

    fn tx(prev: Txid, csv: u16, tag: u64) -> Transaction {
        Transaction {
            version: transaction::Version(3),
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn { previous_output: OutPoint { txid: prev, vout: 0 }, sequence: Sequence::from_height(csv), ..Default::default() }],
            output: vec![TxOut { value: Amount::from_sat(tag), script_pubkey: ScriptBuf::new() }],
        }
    }

    #[test]
    fn a_split_parent_is_superseded_but_its_child_is_held_to_i7() {
        use crate::checker::split_tree::{nodes, SplitTree};
        let tree = SplitTree::new();
        let mut history = NodeLayerHistory::default();
        // Before the split the parent's chain is fine; the child's chain (through the split
        // node, CSV 0) undercuts the parent's refund on the parent's node output.
        let mut before = tree.parent.clone();
        before.status = LeafStatus::Available;
        assert_eq!(history.record_and_check(&before), None);
        assert_eq!(history.record_and_check(&tree.child), None);
        // The parent's own refund now loses to the split node: by design, so not held.
        assert!(history.record_and_check(&tree.parent).is_some());
        assert!(!held_to_node_ordering(LeafStatus::Splitted));
        assert!(!held_to_node_ordering(LeafStatus::SplitLocked));
        assert!(!held_to_node_ordering(LeafStatus::Aggregated));
        // A child is held: a new node that does not undercut its old one is flagged.
        assert!(held_to_node_ordering(tree.child.status));
        assert!(held_to_node_ordering(LeafStatus::OnChain), "a leaf whose node tx confirmed is still judged");
        let mut stale = tree.child.clone();
        stale.nodes = nodes(tree.split_nodes.cpfp.compute_txid(), 2000, crate::checker::split_tree::VALUE - 5);
        assert!(history.record_and_check(&stale).is_some_and(|m| m.contains("does not undercut")));
    }

    #[test]
    fn node_bounds() {
        let p = Txid::from_byte_array([1; 32]);
        assert_eq!(check_node_bounds(&NodeSet { cpfp: tx(p, 0, 1), direct: tx(p, 50, 1) }), None);
        assert_eq!(check_node_bounds(&NodeSet { cpfp: tx(p, 1900, 1), direct: tx(p, 1950, 1) }), None);
        assert!(check_node_bounds(&NodeSet { cpfp: tx(p, 50, 1), direct: tx(p, 100, 1) }).is_some());
        assert!(check_node_bounds(&NodeSet { cpfp: tx(p, 2100, 1), direct: tx(p, 2150, 1) }).is_some());
        assert!(check_node_bounds(&NodeSet { cpfp: tx(p, 100, 1), direct: tx(p, 100, 1) }).is_some());
    }
}
