//! Renew templates, preconditions and the wallet's trigger (spark-protocol §3.5, §4.4). Pure:
//! the wallet builds these txs, the operator rebuilds them from its own tables and requires
//! byte equality (`template::compare_transactions`), so neither side ever picks a CSV the other
//! did not compute.
//!
//! | variant | precondition | new txs |
//! |---|---|---|
//! | renew refund | refund CSV ≤ 300, node CSV − 100 ≥ 100 | node' (node − 100, direct + 50) on the same parent output; refunds 2000 / 2050 |
//! | renew node | node CSV ≤ 300, refund CSV ≤ 300 | split node (0 / 50) on the parent output; node (2000 / 2050) on the split node; refunds 2000 / 2050 |
//! | renew node-zero | node CSV == 0, refund CSV ≤ 300 | node (0 / 50) on the old node's output; refunds 2000 / 2050 |
//!
//! Refunds are built like a deposit's (`NodeSet::refunds_to`: CPFP, direct from the direct node,
//! direct-from-CPFP), also on a CSV-0 node, where the SDK leaves out the direct refund: a leaf
//! here always holds all three.
use crate::crypto::PublicKey;
use crate::msg::{NodeSet, RefundSet};
use crate::tx::{template, timelock};
use bitcoin::{OutPoint, Sequence, Transaction, TxOut};
use serde::{Deserialize, Serialize};

/// `RenewTimelockThreshold`: a leaf may renew only when the relevant CSV is at most this.
pub const RENEW_THRESHOLD: u16 = 300;
/// The wallet renews before a spend when the refund CSV is below this.
pub const WALLET_TRIGGER: u16 = 200;
/// Lowest non-zero node CSV a renew-refund may produce.
pub const NODE_FLOOR: u16 = 100;

/// The three `renew_leaf` signing-job variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RenewKind {
    Refund,
    Node,
    NodeZero,
}

impl RenewKind {
    pub fn name(self) -> &'static str {
        match self {
            RenewKind::Refund => "renew-refund",
            RenewKind::Node => "renew-node",
            RenewKind::NodeZero => "renew-node-zero",
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RenewError {
    #[error("{kind}: refund CSV {refund} is above the renew threshold {RENEW_THRESHOLD}")]
    RefundNotLow { kind: &'static str, refund: u16 },
    #[error("renew-refund: node CSV {node} − 100 would fall below {NODE_FLOOR}")]
    NodeExhausted { node: u16 },
    #[error("renew-node: node CSV {node} is above the renew threshold {RENEW_THRESHOLD}")]
    NodeNotLow { node: u16 },
    #[error("renew-node: node CSV 0 needs renew-node-zero (a split node at CSV 0 would tie it)")]
    NodeIsZero,
    #[error("renew-node-zero: node CSV {node} is not 0")]
    NodeNotZero { node: u16 },
    #[error("leaf txs: {0}")]
    Malformed(String),
}

/// The CSV blocks of a tx's only input.
pub fn csv(tx: &Transaction) -> Result<u16, RenewError> {
    tx.input.first().map(|i| timelock::blocks(i.sequence).0).ok_or(RenewError::Malformed("tx without an input".into()))
}

/// spark-protocol §3.5 preconditions on the leaf's current node and refund CSVs.
pub fn precondition(kind: RenewKind, node: u16, refund: u16) -> Result<(), RenewError> {
    if refund > RENEW_THRESHOLD {
        return Err(RenewError::RefundNotLow { kind: kind.name(), refund });
    }
    match kind {
        RenewKind::Refund if node < NODE_FLOOR + timelock::TIME_LOCK_INTERVAL => Err(RenewError::NodeExhausted { node }),
        RenewKind::Node if node > RENEW_THRESHOLD => Err(RenewError::NodeNotLow { node }),
        // §3.6: the split node (CSV 0) must undercut the node it replaces (CSV ≥ 100).
        RenewKind::Node if node == 0 => Err(RenewError::NodeIsZero),
        RenewKind::NodeZero if node != 0 => Err(RenewError::NodeNotZero { node }),
        _ => Ok(()),
    }
}

/// spark-protocol §4.4, checked by the wallet before every spend: refund CSV < 200 → renew
/// node-zero if the node CSV is 0, renew node if it is below 200, else renew refund.
pub fn wallet_trigger(node: u16, refund: u16) -> Option<RenewKind> {
    if refund >= WALLET_TRIGGER {
        None
    } else if node == 0 {
        Some(RenewKind::NodeZero)
    } else if node < WALLET_TRIGGER {
        Some(RenewKind::Node)
    } else {
        Some(RenewKind::Refund)
    }
}

/// What a renew produces: the new exit-chain layers (replacing the leaf node), the refunds, and
/// the txs to sign in job order with the outputs each spends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewTxs {
    pub kind: RenewKind,
    /// For renew-node: the split node; for renew-node-zero: the old leaf node (already signed,
    /// kept as is). None for renew-refund.
    pub new_ancestor: Option<NodeSet>,
    pub nodes: NodeSet,
    pub refunds: RefundSet,
}

impl RenewTxs {
    /// The unsigned txs both sides sign, in job order: new node layers (CPFP, direct), refunds.
    pub fn jobs(&self) -> Vec<Transaction> {
        let mut txs = Vec::new();
        if let (RenewKind::Node, Some(split)) = (self.kind, &self.new_ancestor) {
            txs.extend([split.cpfp.clone(), split.direct.clone()]);
        }
        txs.extend([self.nodes.cpfp.clone(), self.nodes.direct.clone()]);
        txs.extend(self.refunds.as_array().into_iter().cloned());
        txs
    }

    /// The outputs each job spends (same order as [`RenewTxs::jobs`]).
    pub fn prevouts(&self, parent_output: &TxOut) -> Result<Vec<Vec<TxOut>>, RenewError> {
        let out0 = |tx: &Transaction| tx.output.first().cloned().ok_or(RenewError::Malformed("node tx without output 0".into()));
        let node_parent = match (self.kind, &self.new_ancestor) {
            (RenewKind::Refund, _) => parent_output.clone(),
            (_, Some(above)) => out0(&above.cpfp)?,
            (_, None) => return Err(RenewError::Malformed("no layer above the new node".into())),
        };
        let mut prevouts = Vec::new();
        if self.kind == RenewKind::Node {
            prevouts.extend([vec![parent_output.clone()], vec![parent_output.clone()]]);
        }
        prevouts.extend([vec![node_parent.clone()], vec![node_parent]]);
        prevouts.extend(self.nodes.refund_prevouts().map_err(RenewError::Malformed)?);
        Ok(prevouts)
    }

    /// Put signed txs (job order) in place of the templates.
    pub fn with_signed(mut self, signed: &[Transaction]) -> Result<RenewTxs, RenewError> {
        let jobs = self.jobs();
        if signed.len() != jobs.len() {
            return Err(RenewError::Malformed(format!("{} signed txs for {} jobs", signed.len(), jobs.len())));
        }
        let mut it = signed.iter().cloned();
        let mut next = || it.next().ok_or(RenewError::Malformed("short".into()));
        if self.kind == RenewKind::Node {
            self.new_ancestor = Some(NodeSet { cpfp: next()?, direct: next()? });
        }
        self.nodes = NodeSet { cpfp: next()?, direct: next()? };
        self.refunds = RefundSet { cpfp: next()?, direct: next()?, direct_from_cpfp: next()? };
        Ok(self)
    }
}

/// The output the leaf node spends. Node txs re-pay their parent output's script and full value
/// (CPFP variant), so the leaf node's own output 0 is an exact copy of it.
pub fn parent_output(nodes: &NodeSet) -> Result<(OutPoint, TxOut), RenewError> {
    let input = nodes.cpfp.input.first().ok_or(RenewError::Malformed("node tx without an input".into()))?;
    let out = nodes.cpfp.output.first().cloned().ok_or(RenewError::Malformed("node tx without output 0".into()))?;
    Ok((input.previous_output, out))
}

/// The templates of `kind` for a leaf whose leaf node is `nodes`, refunds `refunds`, paying
/// `owner` (the leaf's signing key), after checking the precondition. Both wallet and operator
/// call this: the operator with its own stored txs.
///
/// `zero_node_hazard` (the `renew_node_on_zero_csv` hazard) lets renew-node through on a CSV-0
/// node.
pub fn renew_templates(kind: RenewKind, nodes: &NodeSet, refunds: &RefundSet, owner: &PublicKey, zero_node_hazard: bool) -> Result<RenewTxs, RenewError> {
    let node_csv = csv(&nodes.cpfp)?;
    let refund_csv = csv(&refunds.cpfp)?;
    match precondition(kind, node_csv, refund_csv) {
        Err(RenewError::NodeIsZero) if zero_node_hazard => {}
        r => r?,
    }
    let (parent, parent_out) = parent_output(nodes)?;
    let (rseq, rdirect) = timelock::initial_refund_sequences();
    let pair = |t: template::NodeTxs| NodeSet { cpfp: t.cpfp, direct: t.direct };
    let (new_ancestor, new_nodes) = match kind {
        RenewKind::Refund => {
            // 2026 rounding: a legacy non-aligned CSV is rounded down before the decrement.
            let current = timelock::round_down_sequence(nodes.cpfp.input[0].sequence);
            let (seq, direct) = timelock::next_sequences(current, NODE_FLOOR).map_err(|e| RenewError::Malformed(e.to_string()))?;
            (None, pair(template::node_txs(parent, &parent_out, seq, direct)))
        }
        RenewKind::Node => {
            let (zero, zero_direct) = timelock::root_node_sequences();
            let split = pair(template::node_txs(parent, &parent_out, zero, zero_direct));
            let split_out = split.cpfp.output[0].clone();
            let split_point = OutPoint { txid: split.cpfp.compute_txid(), vout: 0 };
            let node = pair(template::node_txs(split_point, &split_out, Sequence(u32::from(timelock::INITIAL_TIMELOCK.0)), timelock::direct_of(Sequence(u32::from(timelock::INITIAL_TIMELOCK.0)))));
            (Some(split), node)
        }
        RenewKind::NodeZero => {
            let (zero, zero_direct) = timelock::root_node_sequences();
            let old_out = nodes.cpfp.output[0].clone();
            let old_point = OutPoint { txid: nodes.cpfp.compute_txid(), vout: 0 };
            (Some(nodes.clone()), pair(template::node_txs(old_point, &old_out, zero, zero_direct)))
        }
    };
    let refunds = new_nodes.refunds_to(owner, rseq, rdirect).map_err(RenewError::Malformed)?;
    Ok(RenewTxs { kind, new_ancestor, nodes: new_nodes, refunds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditions_follow_the_table() {
        use RenewKind::*;
        assert_eq!(precondition(Refund, 2000, 300), Ok(()));
        assert_eq!(precondition(Refund, 200, 100), Ok(()));
        assert!(matches!(precondition(Refund, 2000, 400), Err(RenewError::RefundNotLow { .. })));
        assert!(matches!(precondition(Refund, 100, 100), Err(RenewError::NodeExhausted { .. })));
        assert_eq!(precondition(Node, 300, 300), Ok(()));
        assert_eq!(precondition(Node, 100, 100), Ok(()));
        assert_eq!(precondition(Node, 0, 100), Err(RenewError::NodeIsZero));
        assert!(matches!(precondition(Node, 400, 100), Err(RenewError::NodeNotLow { .. })));
        assert_eq!(precondition(NodeZero, 0, 100), Ok(()));
        assert!(matches!(precondition(NodeZero, 100, 100), Err(RenewError::NodeNotZero { .. })));
    }

    #[test]
    fn wallet_trigger_picks_the_variant_of_section_4_4() {
        assert_eq!(wallet_trigger(0, 200), None);
        assert_eq!(wallet_trigger(0, 100), Some(RenewKind::NodeZero));
        assert_eq!(wallet_trigger(100, 100), Some(RenewKind::Node));
        assert_eq!(wallet_trigger(199, 100), Some(RenewKind::Node));
        assert_eq!(wallet_trigger(200, 100), Some(RenewKind::Refund));
        assert_eq!(wallet_trigger(2000, 199), Some(RenewKind::Refund));
    }
}
