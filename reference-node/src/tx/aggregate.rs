//! Aggregate templates (spark-protocol §2.6, §4.3 last line): siblings owned by one user fold
//! back into their parent. The parent gets a new leaf node tx spending **every** child's split
//! output, each input at that child's node CSV − 100 (direct +50), paying the whole value to
//! P2TR(Y_parent) (Σ Y_c = Y_parent), and fresh refunds at the initial timelock.
//!
//! Why a node tx and not only fresh refunds on the parent's old node output: the split node
//! (CSV 0) spends that output and is signed forever, with every child's node tx and refunds
//! behind it; a refund there (CSV ≥ 100) would always lose to it, so a later owner of the
//! aggregated leaf could be beaten by the old child refunds. The aggregate node instead
//! undercuts each child's node tx on its own split output by 100 blocks, as renew-refund's
//! node tx' undercuts the old node tx (spark-protocol §3.5, §3.6, I-7).
use super::template::{self, anchor_output, maybe_apply_fee, p2tr_script, NodeTxs, RefundTxs, TEMPLATE_VERSION};
use super::timelock;
use bitcoin::absolute::LockTime;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AggregateTxError {
    #[error("the split node has {outputs} outputs, fewer than its {children} children")]
    MissingSplitOutput { outputs: usize, children: usize },
    #[error("child {index}'s node tx has no input")]
    NoChildInput { index: usize },
    #[error("child {index}'s node timelock: {source}")]
    Timelock { index: usize, source: timelock::TimelockError },
    #[error(transparent)]
    Missing(#[from] template::MissingNodeOutput),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateTxs {
    pub nodes: NodeTxs,
    pub refunds: RefundTxs,
    /// The split outputs the aggregate node txs spend, in input order (for every input's
    /// sighash, BIP341 commits to all of them).
    pub prevouts: Vec<TxOut>,
}

impl AggregateTxs {
    /// Jobs in signing order: per child c, (CPFP node input c, direct node input c); then the
    /// refunds (CPFP, direct, direct-from-CPFP) under the parent's key. Each entry: the tx, the
    /// input it signs and the outputs that input's sighash commits to.
    pub fn jobs(&self) -> Vec<(Transaction, usize, Vec<TxOut>)> {
        let mut v = Vec::new();
        for i in 0..self.prevouts.len() {
            v.push((self.nodes.cpfp.clone(), i, self.prevouts.clone()));
            v.push((self.nodes.direct.clone(), i, self.prevouts.clone()));
        }
        let cpfp_out = self.nodes.cpfp.output[0].clone();
        let direct_out = self.nodes.direct.output[0].clone();
        let direct = self.refunds.direct.clone().unwrap_or_else(|| self.refunds.direct_from_cpfp.clone());
        v.push((self.refunds.cpfp.clone(), 0, vec![cpfp_out.clone()]));
        v.push((direct, 0, vec![direct_out]));
        v.push((self.refunds.direct_from_cpfp.clone(), 0, vec![cpfp_out]));
        v
    }
}

/// The aggregate of the children of `split_node` (CPFP split tx; child c spends output c) whose
/// current CPFP node txs are `child_nodes`, paying `parent_key` (Y) with refunds to `owner_key`.
pub fn aggregate_txs(split_node: &Transaction, child_nodes: &[&Transaction], parent_key: &PublicKey, owner_key: &PublicKey) -> Result<AggregateTxs, AggregateTxError> {
    if split_node.output.len() < child_nodes.len() {
        return Err(AggregateTxError::MissingSplitOutput { outputs: split_node.output.len(), children: child_nodes.len() });
    }
    let txid = split_node.compute_txid();
    let mut cpfp_inputs = Vec::new();
    let mut direct_inputs = Vec::new();
    let mut prevouts = Vec::new();
    for (index, node) in child_nodes.iter().enumerate() {
        let current = node.input.first().ok_or(AggregateTxError::NoChildInput { index })?.sequence;
        // A node tx may reach CSV 0 (spark-protocol §3.5 "renew node-zero"); floor 0.
        let (seq, direct_seq) = timelock::next_sequences(current, 0).map_err(|source| AggregateTxError::Timelock { index, source })?;
        let prev = OutPoint { txid, vout: index as u32 };
        cpfp_inputs.push(input(prev, seq));
        direct_inputs.push(input(prev, direct_seq));
        prevouts.push(split_node.output[index].clone());
    }
    let total: Amount = prevouts.iter().map(|o| o.value).sum();
    let script = p2tr_script(parent_key);
    let pay = TxOut { value: total, script_pubkey: script.clone() };
    let cpfp = tx(cpfp_inputs, vec![pay, anchor_output()]);
    let direct = tx(direct_inputs, vec![TxOut { value: maybe_apply_fee(total), script_pubkey: script }]);
    let (refund_seq, _) = timelock::initial_refund_sequences();
    let refunds = template::leaf_refund_txs(&cpfp, Some(&direct), owner_key, refund_seq)?;
    Ok(AggregateTxs { nodes: NodeTxs { cpfp, direct }, refunds, prevouts })
}

fn input(prev: OutPoint, seq: Sequence) -> TxIn {
    TxIn { previous_output: prev, script_sig: ScriptBuf::new(), sequence: seq, witness: Witness::new() }
}

fn tx(input: Vec<TxIn>, output: Vec<TxOut>) -> Transaction {
    Transaction { version: TEMPLATE_VERSION, lock_time: LockTime::ZERO, input, output }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::curve::base_mul;
    use crate::crypto::Scalar;
    use crate::tx::split::{split_txs, ChildSpec};

    fn key(i: u32) -> PublicKey {
        base_mul(&Scalar::from_u32(i + 1)).expect("nonzero")
    }

    #[test]
    fn aggregate_node_undercuts_every_child_node_and_pays_the_parent() {
        let prev = TxOut { value: Amount::from_sat(100_000), script_pubkey: p2tr_script(&key(99)) };
        let parent = template::node_txs(OutPoint::null(), &prev, Sequence(0), Sequence(50)).cpfp;
        let specs: Vec<ChildSpec> = [60_000u64, 40_000].iter().enumerate().map(|(i, v)| ChildSpec { value: Amount::from_sat(*v), verifying_key: key(i as u32), owner_signing_key: key(10 + i as u32) }).collect();
        let s = split_txs(&parent, &specs).expect("split");
        let nodes: Vec<&Transaction> = s.children.iter().map(|c| &c.nodes.cpfp).collect();
        let a = aggregate_txs(&s.split.cpfp, &nodes, &key(99), &key(50)).expect("aggregate");
        assert_eq!(a.nodes.cpfp.input.len(), 2);
        for (i, input) in a.nodes.cpfp.input.iter().enumerate() {
            assert_eq!(input.previous_output, OutPoint { txid: s.split.cpfp.compute_txid(), vout: i as u32 });
            assert_eq!(input.sequence, Sequence(1900), "100 below the child's node tx (2000)");
            assert_eq!(a.nodes.direct.input[i].sequence, Sequence(1950), "direct still below the child's CPFP node");
        }
        assert_eq!(a.nodes.cpfp.output[0].value, Amount::from_sat(100_000));
        assert_eq!(a.nodes.cpfp.output[0].script_pubkey, p2tr_script(&key(99)));
        assert_eq!(a.nodes.cpfp.output[1], anchor_output());
        assert_eq!(a.nodes.direct.output[0].value, Amount::from_sat(100_000 - 955));
        assert_eq!(a.refunds.cpfp.input[0].sequence, Sequence(2000));
        assert_eq!(a.refunds.cpfp.output[0].script_pubkey, p2tr_script(&key(50)));
        assert_eq!(a.jobs().len(), 2 * 2 + 3);
    }
}
