//! Split templates (spark-protocol §2.6, §3.1, §3.2): a leaf becomes a *branch*. The split node
//! tx spends the parent leaf's CPFP node output 0 with CSV 0 (direct variant 50) and pays one
//! P2TR output per child (+ the P2A anchor on the CPFP variant); each child gets a leaf node tx
//! spending its split output (CSV = `InitialTimeLock`, direct +50, as renew-node's new node tx
//! under its split node, §3.5) and the three refunds at the initial refund timelock.
//!
//! Why the old owner's refund loses: it spends the same parent node output at CSV ≥ 100, the
//! split node at CSV 0 (I-7). Exit chain of a child: parent layers → split node → child node →
//! refund (I-9); each layer's CPFP tx spends the CPFP tx above it.
use super::template::{self, anchor_output, p2tr_script, NodeTxs, RefundTxs, DIRECT_FEE, TEMPLATE_VERSION};
use super::timelock;
use bitcoin::absolute::LockTime;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

/// Bound on children per split (a split fans out one FROST job set per child).
pub const MAX_SPLIT_CHILDREN: usize = 64;

/// Txs per child in job order: node CPFP, node direct, refund CPFP, refund direct,
/// refund direct-from-CPFP.
pub const JOBS_PER_CHILD: usize = 5;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SplitTxError {
    #[error("a split needs 2..={MAX_SPLIT_CHILDREN} children, found {0}")]
    ChildCount(usize),
    #[error("child {index} has value 0")]
    ZeroValue { index: usize },
    #[error("children's values sum to {found} sat, expected the parent's {expected} sat")]
    ValuesDoNotSum { expected: u64, found: u64 },
    #[error("the parent node tx has no output 0")]
    NoParentOutput,
    #[error(transparent)]
    Missing(#[from] template::MissingNodeOutput),
}

/// One child of a split: its value, its aggregate key `Y_c` and its owner's signing key `u_c·G`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildSpec {
    pub value: Amount,
    pub verifying_key: PublicKey,
    pub owner_signing_key: PublicKey,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildTxs {
    pub nodes: NodeTxs,
    pub refunds: RefundTxs,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitTxs {
    pub split: NodeTxs,
    pub children: Vec<ChildTxs>,
}

impl SplitTxs {
    /// Every tx in job order: split CPFP, split direct, then per child [`JOBS_PER_CHILD`] txs.
    pub fn in_job_order(&self) -> Vec<Transaction> {
        let mut v = vec![self.split.cpfp.clone(), self.split.direct.clone()];
        for c in &self.children {
            let direct = c.refunds.direct.clone().unwrap_or_else(|| c.refunds.direct_from_cpfp.clone());
            v.extend([c.nodes.cpfp.clone(), c.nodes.direct.clone(), c.refunds.cpfp.clone(), direct, c.refunds.direct_from_cpfp.clone()]);
        }
        v
    }

    /// The prevouts each tx of [`SplitTxs::in_job_order`] spends (for its sighash).
    pub fn prevouts(&self, parent_output: &TxOut) -> Vec<Vec<TxOut>> {
        let mut v = vec![vec![parent_output.clone()], vec![parent_output.clone()]];
        for (i, c) in self.children.iter().enumerate() {
            let split_out = self.split.cpfp.output[i].clone();
            let node_out = c.nodes.cpfp.output[0].clone();
            let direct_out = c.nodes.direct.output[0].clone();
            v.extend([vec![split_out.clone()], vec![split_out], vec![node_out.clone()], vec![direct_out], vec![node_out]]);
        }
        v
    }
}

/// The split's value rule (spark-protocol §6.1 I-1: a node's value is the sum of its children's):
/// 2..=64 children, none zero, summing exactly (no overflow) to the parent's value.
pub fn check_values(parent: Amount, values: &[Amount]) -> Result<(), SplitTxError> {
    if values.len() < 2 || values.len() > MAX_SPLIT_CHILDREN {
        return Err(SplitTxError::ChildCount(values.len()));
    }
    if let Some(index) = values.iter().position(|v| *v == Amount::ZERO) {
        return Err(SplitTxError::ZeroValue { index });
    }
    // Checked: a sum that overflows cannot equal the parent's value either.
    let found = values.iter().try_fold(0u64, |acc, v| acc.checked_add(v.to_sat()));
    match found {
        Some(sum) if sum == parent.to_sat() => Ok(()),
        other => Err(SplitTxError::ValuesDoNotSum { expected: parent.to_sat(), found: other.unwrap_or(u64::MAX) }),
    }
}

/// Every tx of a split of the leaf whose CPFP node tx is `parent_node` into `children`.
pub fn split_txs(parent_node: &Transaction, children: &[ChildSpec]) -> Result<SplitTxs, SplitTxError> {
    let parent_out = parent_node.output.first().ok_or(SplitTxError::NoParentOutput)?;
    check_values(parent_out.value, &children.iter().map(|c| c.value).collect::<Vec<_>>())?;
    let parent = OutPoint { txid: parent_node.compute_txid(), vout: 0 };
    let split = split_node_txs(parent, children);
    let split_txid = split.cpfp.compute_txid();
    let node_seq = Sequence(u32::from(timelock::INITIAL_TIMELOCK.0));
    let (refund_seq, _) = timelock::initial_refund_sequences();
    let mut out = Vec::with_capacity(children.len());
    for (i, child) in children.iter().enumerate() {
        let vout = i as u32;
        let nodes = template::node_txs(OutPoint { txid: split_txid, vout }, &split.cpfp.output[i], node_seq, timelock::direct_of(node_seq));
        let refunds = template::leaf_refund_txs(&nodes.cpfp, Some(&nodes.direct), &child.owner_signing_key, refund_seq)?;
        out.push(ChildTxs { nodes, refunds });
    }
    Ok(SplitTxs { split, children: out })
}

/// The split node pair: CPFP (CSV 0, full values + anchor) and direct (CSV 50, no anchor). The
/// direct variant pays `DIRECT_FEE` once, out of its largest output (the first of equals) when
/// that output exceeds the fee — MaybeApplyFee applied to the one output that can bear it, so
/// the tx loses exactly the fee and no child output is ever zeroed.
fn split_node_txs(parent: OutPoint, children: &[ChildSpec]) -> NodeTxs {
    let (seq, direct_seq) = timelock::root_node_sequences();
    let outputs: Vec<TxOut> = children.iter().map(|c| TxOut { value: c.value, script_pubkey: p2tr_script(&c.verifying_key) }).collect();
    let mut cpfp_outputs = outputs.clone();
    cpfp_outputs.push(anchor_output());
    let mut direct_outputs = outputs;
    let largest = direct_outputs.iter().enumerate().fold(None::<(usize, Amount)>, |best, (i, o)| match best {
        Some((_, v)) if v >= o.value => best,
        _ => Some((i, o.value)),
    });
    if let Some((i, v)) = largest {
        if v > DIRECT_FEE {
            direct_outputs[i].value = v - DIRECT_FEE;
        }
    }
    NodeTxs { cpfp: tx(parent, seq, cpfp_outputs), direct: tx(parent, direct_seq, direct_outputs) }
}

fn tx(prev: OutPoint, seq: Sequence, output: Vec<TxOut>) -> Transaction {
    Transaction {
        version: TEMPLATE_VERSION,
        lock_time: LockTime::ZERO,
        input: vec![TxIn { previous_output: prev, script_sig: ScriptBuf::new(), sequence: seq, witness: Witness::new() }],
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::curve::base_mul;
    use crate::crypto::Scalar;
    use proptest::prelude::*;

    fn key(i: u32) -> PublicKey {
        base_mul(&Scalar::from_u32(i + 1)).expect("nonzero")
    }

    fn parent(value: u64) -> Transaction {
        let prev = TxOut { value: Amount::from_sat(value), script_pubkey: p2tr_script(&key(100)) };
        template::node_txs(OutPoint { txid: bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros()), vout: 0 }, &prev, Sequence(0), Sequence(50)).cpfp
    }

    fn specs(values: &[u64]) -> Vec<ChildSpec> {
        values.iter().enumerate().map(|(i, v)| ChildSpec { value: Amount::from_sat(*v), verifying_key: key(i as u32), owner_signing_key: key(50 + i as u32) }).collect()
    }

    #[test]
    fn split_shape_matches_the_templates() {
        let p = parent(100_000);
        let s = split_txs(&p, &specs(&[65_536, 32_768, 1_696])).expect("split");
        // Split node: v3, CSV 0 / 50, one output per child (+ anchor on CPFP), spends parent:0.
        assert_eq!(s.split.cpfp.version, TEMPLATE_VERSION);
        assert_eq!(s.split.cpfp.input[0].previous_output, OutPoint { txid: p.compute_txid(), vout: 0 });
        assert_eq!(s.split.cpfp.input[0].sequence, Sequence(0));
        assert_eq!(s.split.direct.input[0].sequence, Sequence(50));
        assert_eq!(s.split.cpfp.output.len(), 4);
        assert_eq!(s.split.cpfp.output[3], anchor_output());
        assert_eq!(s.split.direct.output.len(), 3);
        let total = |t: &Transaction| t.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
        assert_eq!(total(&s.split.cpfp), 100_000);
        assert_eq!(total(&s.split.direct), 100_000 - 955, "direct loses exactly the fee");
        assert_eq!(s.split.direct.output[0].value, Amount::from_sat(65_536 - 955), "taken from the largest output");
        for (i, c) in s.children.iter().enumerate() {
            assert_eq!(c.nodes.cpfp.input[0].previous_output, OutPoint { txid: s.split.cpfp.compute_txid(), vout: i as u32 });
            assert_eq!(c.nodes.cpfp.input[0].sequence, Sequence(2000));
            assert_eq!(c.nodes.direct.input[0].sequence, Sequence(2050));
            assert_eq!(c.nodes.cpfp.output[0], s.split.cpfp.output[i]);
            assert_eq!(c.refunds.cpfp.input[0].sequence, Sequence(2000));
            assert_eq!(c.refunds.cpfp.output[0].script_pubkey, p2tr_script(&key(50 + i as u32)));
            assert!(c.refunds.direct.is_some());
        }
        assert_eq!(s.in_job_order().len(), 2 + 3 * JOBS_PER_CHILD);
        assert_eq!(s.prevouts(&p.output[0]).len(), 2 + 3 * JOBS_PER_CHILD);
    }

    #[test]
    fn values_must_sum_exactly_and_be_positive() {
        let p = parent(1_000);
        assert_eq!(split_txs(&p, &specs(&[500, 499])), Err(SplitTxError::ValuesDoNotSum { expected: 1_000, found: 999 }));
        assert_eq!(split_txs(&p, &specs(&[1_000, 0])), Err(SplitTxError::ZeroValue { index: 1 }));
        assert_eq!(split_txs(&p, &specs(&[1_000])), Err(SplitTxError::ChildCount(1)));
        assert!(matches!(check_values(Amount::from_sat(1_000), &[Amount::from_sat(u64::MAX), Amount::from_sat(1_001)]), Err(SplitTxError::ValuesDoNotSum { .. })));
    }

    proptest! {
        #[test]
        fn split_conserves_value(values in proptest::collection::vec(1u64..=50_000_000, 2..8)) {
            let total: u64 = values.iter().sum();
            let p = parent(total);
            let s = split_txs(&p, &specs(&values)).expect("split");
            let sum = |t: &Transaction| t.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
            prop_assert_eq!(sum(&s.split.cpfp), total);
            let max = *values.iter().max().expect("non-empty");
            prop_assert_eq!(sum(&s.split.direct), if max > 955 { total - 955 } else { total });
            for (c, v) in s.children.iter().zip(&values) {
                prop_assert_eq!(c.nodes.cpfp.output[0].value.to_sat(), *v);
                prop_assert_eq!(sum(&c.refunds.cpfp), *v);
            }
        }
    }
}
