//! Node and refund transaction templates, all version 3 (spark-protocol §3.2).
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxOut};

/// Fee subtracted from direct variants: 191 vB × 5 sat/vB.
pub const DIRECT_FEE: Amount = Amount::from_sat(955);

/// P2TR key-path output script of `pk` (BIP341 tweak, empty script tree).
pub fn p2tr_script(pk: &PublicKey) -> ScriptBuf { unimplemented!() }
/// Zero-value pay-to-anchor output `51024e73`.
pub fn anchor_output() -> TxOut { unimplemented!() }
/// v − 955 if v > 955, else v.
pub fn maybe_apply_fee(v: Amount) -> Amount { unimplemented!() }

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTxs {
    pub cpfp: Transaction,
    pub direct: Transaction,
}

/// A node tx pair spending `parent` and re-paying its script: CPFP (full value + anchor, `seq`) and
/// direct (maybe_apply_fee(value), no anchor, `direct_seq`).
pub fn node_txs(parent: OutPoint, parent_output: &TxOut, seq: Sequence, direct_seq: Sequence) -> NodeTxs { unimplemented!() }

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundTxs {
    /// Spends cpfp_node:vout with `seq`; full value to P2TR(receiver) + anchor.
    pub cpfp: Transaction,
    /// Spends direct_node:vout with `direct_seq`; maybe_apply_fee(direct value), no anchor.
    pub direct: Option<Transaction>,
    /// Spends cpfp_node:vout with `direct_seq`; maybe_apply_fee(value), no anchor.
    pub direct_from_cpfp: Transaction,
}

pub fn refund_txs(cpfp_node: &Transaction, direct_node: Option<&Transaction>, vout: u32, receiver: &PublicKey, seq: Sequence, direct_seq: Sequence) -> RefundTxs { unimplemented!() }

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("transaction differs from the expected template in {field}: expected {expected}, found {found}")]
pub struct TemplateMismatch {
    pub field: String,
    pub expected: String,
    pub found: String,
}

/// Spark's `CompareTransactions`: version, locktime, input outpoints and sequences, output values
/// and scripts must be equal (witnesses are ignored).
pub fn compare_transactions(expected: &Transaction, found: &Transaction) -> Result<(), TemplateMismatch> { unimplemented!() }
