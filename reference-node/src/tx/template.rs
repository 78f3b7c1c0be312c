//! Node and refund transaction templates, all version 3 (spark-protocol §3.2).
use bitcoin::absolute::LockTime;
use bitcoin::secp256k1::PublicKey;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

/// Fee subtracted from direct variants: 191 vB × 5 sat/vB.
pub const DIRECT_FEE: Amount = Amount::from_sat(955);

/// Every Spark node, refund and HTLC tx is version 3 (spark-protocol §3.2; vectors §0).
pub const TEMPLATE_VERSION: Version = Version(3);

/// Pay-to-anchor script: OP_1 PUSH2 0x4e73 (vectors §2).
const ANCHOR_SCRIPT: [u8; 4] = [0x51, 0x02, 0x4e, 0x73];

/// P2TR key-path output script of `pk` (BIP341 tweak, empty script tree).
pub fn p2tr_script(pk: &PublicKey) -> ScriptBuf {
    let (internal, _parity) = pk.x_only_public_key();
    ScriptBuf::new_p2tr(crate::crypto::secp(), internal, None)
}

/// Zero-value pay-to-anchor output `51024e73`.
pub fn anchor_output() -> TxOut {
    TxOut {
        value: Amount::ZERO,
        script_pubkey: ScriptBuf::from_bytes(ANCHOR_SCRIPT.to_vec()),
    }
}

/// v − 955 if v > 955, else v.
pub fn maybe_apply_fee(v: Amount) -> Amount {
    // spark-protocol §3.2 MaybeApplyFee: a value at or below the fee is left whole, not zeroed.
    if v > DIRECT_FEE {
        v - DIRECT_FEE
    } else {
        v
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTxs {
    pub cpfp: Transaction,
    pub direct: Transaction,
}

/// A node tx pair spending `parent` and re-paying its script: CPFP (full value + anchor, `seq`) and
/// direct (maybe_apply_fee(value), no anchor, `direct_seq`).
pub fn node_txs(
    parent: OutPoint,
    parent_output: &TxOut,
    seq: Sequence,
    direct_seq: Sequence,
) -> NodeTxs {
    let script = &parent_output.script_pubkey;
    NodeTxs {
        cpfp: cpfp_tx(parent, seq, parent_output.value, script),
        direct: direct_tx(parent, direct_seq, parent_output.value, script),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundTxs {
    /// Spends cpfp_node:vout with `seq`; full value to P2TR(receiver) + anchor.
    pub cpfp: Transaction,
    /// Spends direct_node:vout with `direct_seq`; maybe_apply_fee(direct value), no anchor.
    pub direct: Option<Transaction>,
    /// Spends cpfp_node:vout with `direct_seq`; maybe_apply_fee(value), no anchor.
    pub direct_from_cpfp: Transaction,
}

/// A node tx handed to a template builder lacks the output the template must spend.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("node tx {txid} has {outputs} outputs, expected an output at vout {vout}")]
pub struct MissingNodeOutput {
    pub txid: bitcoin::Txid,
    pub vout: u32,
    pub outputs: usize,
}

/// The refund trio of a leaf (spark-protocol §3.2).
///
/// # Panics
/// If `vout` is not an output of `cpfp_node` or of `direct_node`: callers build these from their
/// own node records. Use [`try_refund_txs`] for node txs that come from a peer.
pub fn refund_txs(
    cpfp_node: &Transaction,
    direct_node: Option<&Transaction>,
    vout: u32,
    receiver: &PublicKey,
    seq: Sequence,
    direct_seq: Sequence,
) -> RefundTxs {
    match try_refund_txs(cpfp_node, direct_node, vout, receiver, seq, direct_seq) {
        Ok(txs) => txs,
        Err(e) => panic!("refund_txs precondition violated: {e}"),
    }
}

/// [`refund_txs`] that reports a missing `vout` instead of panicking.
pub fn try_refund_txs(
    cpfp_node: &Transaction,
    direct_node: Option<&Transaction>,
    vout: u32,
    receiver: &PublicKey,
    seq: Sequence,
    direct_seq: Sequence,
) -> Result<RefundTxs, MissingNodeOutput> {
    let script = p2tr_script(receiver);
    let (cpfp_outpoint, cpfp_value) = node_output(cpfp_node, vout)?;
    let direct = match direct_node {
        // spark-protocol §3.2: the direct refund spends the *direct* node tx and takes the fee
        // off the direct node's (already reduced) value.
        Some(node) => {
            let (outpoint, value) = node_output(node, vout)?;
            Some(direct_tx(outpoint, direct_seq, value, &script))
        }
        None => None,
    };
    Ok(RefundTxs {
        cpfp: cpfp_tx(cpfp_outpoint, seq, cpfp_value, &script),
        direct,
        direct_from_cpfp: direct_tx(cpfp_outpoint, direct_seq, cpfp_value, &script),
    })
}

/// The refunds a wallet builds for a leaf (SDK 0.8.8 `createRefundTxs`): spending output 0 of the
/// node txs, direct sequence = `seq` + 50, and **no direct refund when the CPFP node tx has CSV 0**
/// (a root or split node: its direct twin is not a leaf's exit path, spark-protocol §3.5
/// "renew node-zero"). [`try_refund_txs`] always builds the direct refund when given a direct node.
pub fn leaf_refund_txs(
    cpfp_node: &Transaction,
    direct_node: Option<&Transaction>,
    receiver: &PublicKey,
    seq: Sequence,
) -> Result<RefundTxs, MissingNodeOutput> {
    let zero_node = cpfp_node
        .input
        .first()
        .is_none_or(|input| crate::tx::timelock::blocks(input.sequence).0 == 0);
    let direct_node = direct_node.filter(|_| !zero_node);
    let direct_seq = Sequence(
        seq.0
            .wrapping_add(u32::from(crate::tx::timelock::DIRECT_TIMELOCK_OFFSET)),
    );
    try_refund_txs(cpfp_node, direct_node, 0, receiver, seq, direct_seq)
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error(
    "transaction differs from the expected template in {field}: expected {expected}, found {found}"
)]
pub struct TemplateMismatch {
    pub field: String,
    pub expected: String,
    pub found: String,
}

/// Spark's `CompareTransactions`: version, locktime, input outpoints and sequences, output values
/// and scripts must be equal (witnesses are ignored).
pub fn compare_transactions(
    expected: &Transaction,
    found: &Transaction,
) -> Result<(), TemplateMismatch> {
    same("version", &expected.version.0, &found.version.0)?;
    same(
        "lock_time",
        &expected.lock_time.to_consensus_u32(),
        &found.lock_time.to_consensus_u32(),
    )?;
    same("input count", &expected.input.len(), &found.input.len())?;
    for (i, (e, f)) in expected.input.iter().zip(&found.input).enumerate() {
        same(
            &format!("input[{i}].previous_output"),
            &e.previous_output,
            &f.previous_output,
        )?;
        same(&format!("input[{i}].sequence"), &e.sequence, &f.sequence)?;
    }
    same("output count", &expected.output.len(), &found.output.len())?;
    for (i, (e, f)) in expected.output.iter().zip(&found.output).enumerate() {
        same(&format!("output[{i}].value"), &e.value, &f.value)?;
        same(
            &format!("output[{i}].script_pubkey"),
            &e.script_pubkey.to_hex_string(),
            &f.script_pubkey.to_hex_string(),
        )?;
    }
    Ok(())
}

/// One field of [`compare_transactions`].
fn same<T: PartialEq + std::fmt::Display>(
    field: &str,
    expected: &T,
    found: &T,
) -> Result<(), TemplateMismatch> {
    if expected == found {
        return Ok(());
    }
    Err(TemplateMismatch {
        field: field.to_owned(),
        expected: expected.to_string(),
        found: found.to_string(),
    })
}

/// Outpoint and value of `node`'s output `vout`.
fn node_output(node: &Transaction, vout: u32) -> Result<(OutPoint, Amount), MissingNodeOutput> {
    let missing = || MissingNodeOutput {
        txid: node.compute_txid(),
        vout,
        outputs: node.output.len(),
    };
    let index = usize::try_from(vout).map_err(|_| missing())?;
    let output = node.output.get(index).ok_or_else(missing)?;
    Ok((
        OutPoint {
            txid: node.compute_txid(),
            vout,
        },
        output.value,
    ))
}

/// CPFP variant: full value, zero fee, plus the P2A anchor a fee-bumping child spends.
fn cpfp_tx(prev: OutPoint, seq: Sequence, value: Amount, script: &ScriptBuf) -> Transaction {
    let pay = TxOut {
        value,
        script_pubkey: script.clone(),
    };
    template_tx(prev, seq, vec![pay, anchor_output()])
}

/// Direct variant: pays its own fee (MaybeApplyFee), no anchor.
fn direct_tx(prev: OutPoint, seq: Sequence, value: Amount, script: &ScriptBuf) -> Transaction {
    let pay = TxOut {
        value: maybe_apply_fee(value),
        script_pubkey: script.clone(),
    };
    template_tx(prev, seq, vec![pay])
}

/// Version 3, locktime 0, one unsigned input (vectors §0).
fn template_tx(prev: OutPoint, seq: Sequence, output: Vec<TxOut>) -> Transaction {
    Transaction {
        version: TEMPLATE_VERSION,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: prev,
            script_sig: ScriptBuf::new(),
            sequence: seq,
            witness: Witness::new(),
        }],
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use proptest::prelude::*;

    fn pk() -> PublicKey {
        let bytes =
            hex::decode("031cd7599775b6959193029794b04dcd99d257cbec008d63e49fdf0f89a5f7c231")
                .expect("hex");
        PublicKey::from_slice(&bytes).expect("key")
    }

    fn outpoint(byte: u8, vout: u32) -> OutPoint {
        OutPoint {
            txid: bitcoin::Txid::from_byte_array([byte; 32]),
            vout,
        }
    }

    #[test]
    fn maybe_apply_fee_cases() {
        // vectors §3 MaybeApplyFee.
        for (v, want) in [(100_000, 99_045), (955, 955), (500, 500), (956, 1), (0, 0)] {
            assert_eq!(
                maybe_apply_fee(Amount::from_sat(v)),
                Amount::from_sat(want),
                "{v}"
            );
        }
    }

    #[test]
    fn anchor_is_p2a() {
        let a = anchor_output();
        assert_eq!(a.value, Amount::ZERO);
        assert_eq!(a.script_pubkey.to_hex_string(), "51024e73");
    }

    #[test]
    fn compare_names_first_differing_field() {
        let prev = TxOut {
            value: Amount::from_sat(10_000),
            script_pubkey: p2tr_script(&pk()),
        };
        let base = node_txs(outpoint(1, 0), &prev, Sequence(1000), Sequence(1050)).cpfp;
        assert_eq!(compare_transactions(&base, &base), Ok(()));
        let field = |f: &dyn Fn(&mut Transaction)| {
            let mut t = base.clone();
            f(&mut t);
            compare_transactions(&base, &t).map_err(|e| e.field)
        };
        assert_eq!(field(&|t| t.version = Version(2)), Err("version".into()));
        assert_eq!(
            field(&|t| t.lock_time = LockTime::from_consensus(1)),
            Err("lock_time".into())
        );
        assert_eq!(
            field(&|t| t.input[0].sequence = Sequence(999)),
            Err("input[0].sequence".into())
        );
        assert_eq!(
            field(&|t| t.input[0].previous_output.vout = 1),
            Err("input[0].previous_output".into())
        );
        assert_eq!(
            field(&|t| t.input.push(t.input[0].clone())),
            Err("input count".into())
        );
        assert_eq!(
            field(&|t| t.output.pop().map(|_| ()).unwrap_or(())),
            Err("output count".into())
        );
        assert_eq!(
            field(&|t| t.output[0].value = Amount::from_sat(1)),
            Err("output[0].value".into())
        );
        assert_eq!(
            field(&|t| t.output[1].script_pubkey = ScriptBuf::new()),
            Err("output[1].script_pubkey".into())
        );
        // Witnesses are not compared.
        assert_eq!(field(&|t| t.input[0].witness.push([1u8; 64])), Ok(()));
    }

    #[test]
    fn try_refund_txs_reports_missing_vout() {
        let prev = TxOut {
            value: Amount::from_sat(10_000),
            script_pubkey: p2tr_script(&pk()),
        };
        let node = node_txs(outpoint(1, 0), &prev, Sequence(0), Sequence(50)).direct;
        let err = try_refund_txs(&node, None, 1, &pk(), Sequence(2000), Sequence(2050));
        assert!(matches!(
            err,
            Err(MissingNodeOutput {
                vout: 1,
                outputs: 1,
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn node_txs_conserve_value(sat in 0u64..=Amount::MAX_MONEY.to_sat(), seq in any::<u32>(), vout in any::<u32>()) {
            let prev = TxOut { value: Amount::from_sat(sat), script_pubkey: p2tr_script(&pk()) };
            let pair = node_txs(outpoint(7, vout), &prev, Sequence(seq), Sequence(seq ^ 1));
            let total = |t: &Transaction| t.output.iter().map(|o| o.value).sum::<Amount>();
            prop_assert_eq!(total(&pair.cpfp), prev.value);
            prop_assert_eq!(&pair.cpfp.output[1], &anchor_output());
            prop_assert_eq!(pair.direct.output.len(), 1);
            prop_assert_eq!(pair.direct.output[0].value, maybe_apply_fee(prev.value));
            for t in [&pair.cpfp, &pair.direct] {
                prop_assert_eq!(t.version, Version(3));
                prop_assert_eq!(t.lock_time, LockTime::ZERO);
                prop_assert_eq!(&t.output[0].script_pubkey, &prev.script_pubkey);
                prop_assert_eq!(t.input[0].previous_output, outpoint(7, vout));
            }
            prop_assert_eq!(pair.cpfp.input[0].sequence, Sequence(seq));
            prop_assert_eq!(pair.direct.input[0].sequence, Sequence(seq ^ 1));
        }

        #[test]
        fn refund_txs_conserve_value(sat in 0u64..=Amount::MAX_MONEY.to_sat(), direct_sat in 0u64..=100_000_000u64, seq in any::<u16>()) {
            let script = p2tr_script(&pk());
            let node = node_txs(outpoint(3, 0), &TxOut { value: Amount::from_sat(sat), script_pubkey: script.clone() }, Sequence(0), Sequence(50)).cpfp;
            let direct_node = node_txs(outpoint(3, 0), &TxOut { value: Amount::from_sat(direct_sat), script_pubkey: script.clone() }, Sequence(0), Sequence(50)).direct;
            let (s, d) = (Sequence(u32::from(seq)), crate::tx::timelock::direct_of(Sequence(u32::from(seq))));
            let r = refund_txs(&node, Some(&direct_node), 0, &pk(), s, d);
            prop_assert_eq!(r.cpfp.output.iter().map(|o| o.value).sum::<Amount>(), Amount::from_sat(sat));
            prop_assert_eq!(r.direct_from_cpfp.output[0].value, maybe_apply_fee(Amount::from_sat(sat)));
            let direct = r.direct.expect("direct node given");
            prop_assert_eq!(direct.output[0].value, maybe_apply_fee(direct_node.output[0].value));
            prop_assert_eq!(direct.input[0].previous_output.txid, direct_node.compute_txid());
            prop_assert_eq!(r.direct_from_cpfp.input[0].previous_output.txid, node.compute_txid());
            prop_assert_eq!(r.cpfp.input[0].sequence, s);
            prop_assert_eq!(r.direct_from_cpfp.input[0].sequence, d);
        }
    }
}
