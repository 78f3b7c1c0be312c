//! Lightning HTLC refunds (Lightning send, spark-protocol §3.2/§4.8): the leaf's refund pays a
//! taproot output with a NUMS internal key and two script leaves, a hashlock to the receiver (SSP)
//! and a 2160-block CSV back to the sender.
use super::template::{anchor_output, maybe_apply_fee, MissingNodeOutput, RefundTxs};
use bitcoin::absolute::LockTime;
use bitcoin::opcodes::all::{OP_CHECKSIG, OP_CSV, OP_DROP, OP_EQUALVERIFY, OP_SHA256};
use bitcoin::secp256k1::{PublicKey, XOnlyPublicKey};
use bitcoin::taproot::TaprootBuilder;
use bitcoin::{OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

/// CSV of the sender's refund leaf (`LightningHTLCSequence`, spark-protocol §3.3).
pub const LIGHTNING_HTLC_SEQUENCE: i64 = 2160;

/// The BIP341 "NUMS" internal key Spark uses for HTLC outputs: no key-path spend exists.
const NUMS_X: [u8; 32] = [
    0x50, 0x92, 0x9b, 0x74, 0xc1, 0xa0, 0x49, 0x54, 0xb7, 0x8b, 0x4b, 0x60, 0x35, 0xe9, 0x7a, 0x5e,
    0x07, 0x8a, 0x5a, 0x0f, 0x28, 0xec, 0x96, 0xd5, 0x47, 0xbf, 0xee, 0x9a, 0xce, 0x80, 0x3a, 0xc0,
];

/// `OP_SHA256 <hash> OP_EQUALVERIFY <x(receiver)> OP_CHECKSIG`.
pub fn hashlock_script(hash: &[u8; 32], receiver: &PublicKey) -> ScriptBuf {
    ScriptBuf::builder()
        .push_opcode(OP_SHA256)
        .push_slice(hash)
        .push_opcode(OP_EQUALVERIFY)
        .push_x_only_key(&receiver.x_only_public_key().0)
        .push_opcode(OP_CHECKSIG)
        .into_script()
}

/// `<2160> OP_CSV OP_DROP <x(sender)> OP_CHECKSIG` (minimal number push, as Go and the SDK).
pub fn sequence_lock_script(sender: &PublicKey) -> ScriptBuf {
    ScriptBuf::builder()
        .push_int(LIGHTNING_HTLC_SEQUENCE)
        .push_opcode(OP_CSV)
        .push_opcode(OP_DROP)
        .push_x_only_key(&sender.x_only_public_key().0)
        .push_opcode(OP_CHECKSIG)
        .into_script()
}

/// The HTLC output script: P2TR(NUMS; {hashlock, sequence lock}), both leaves at depth 1.
pub fn htlc_script_pubkey(hash: &[u8; 32], receiver: &PublicKey, sender: &PublicKey) -> ScriptBuf {
    let secp = crate::crypto::secp();
    let nums = XOnlyPublicKey::from_slice(&NUMS_X).expect("invariant: NUMS is a valid x-only key");
    let spend = TaprootBuilder::new()
        .add_leaf(1, hashlock_script(hash, receiver))
        .and_then(|b| b.add_leaf(1, sequence_lock_script(sender)))
        .expect("invariant: two leaves at depth 1 form a complete tree")
        .finalize(secp, nums)
        .expect("invariant: the tree is complete");
    ScriptBuf::new_p2tr_tweaked(spend.output_key())
}

/// SDK 0.8.8 `createLightningHTLCTransaction`: spends `node`:0 with `seq`; pays the node output's
/// value (minus the direct fee if `apply_fee`) to the HTLC script, plus the anchor when no fee is
/// applied (the CPFP variant).
pub fn lightning_htlc_tx(
    node: &Transaction,
    seq: Sequence,
    hash: &[u8; 32],
    receiver: &PublicKey,
    sender: &PublicKey,
    apply_fee: bool,
) -> Result<Transaction, MissingNodeOutput> {
    let txid = node.compute_txid();
    let value = node
        .output
        .first()
        .map(|o| o.value)
        .ok_or(MissingNodeOutput {
            txid,
            vout: 0,
            outputs: 0,
        })?;
    let mut output = vec![TxOut {
        value: if apply_fee {
            maybe_apply_fee(value)
        } else {
            value
        },
        script_pubkey: htlc_script_pubkey(hash, receiver, sender),
    }];
    if !apply_fee {
        output.push(anchor_output());
    }
    Ok(Transaction {
        version: super::template::TEMPLATE_VERSION,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid, vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: seq,
            witness: Witness::new(),
        }],
        output,
    })
}

/// SDK 0.8.8 `createRefundTxsForLightning`: CPFP (anchor, no fee) and direct-from-CPFP spend the
/// CPFP node; the direct variant spends the direct node; both direct variants use `direct_seq`.
pub fn lightning_htlc_refund_txs(
    cpfp_node: &Transaction,
    direct_node: Option<&Transaction>,
    seq: Sequence,
    direct_seq: Sequence,
    hash: &[u8; 32],
    receiver: &PublicKey,
    sender: &PublicKey,
) -> Result<RefundTxs, MissingNodeOutput> {
    let direct = direct_node
        .map(|node| lightning_htlc_tx(node, direct_seq, hash, receiver, sender, true))
        .transpose()?;
    Ok(RefundTxs {
        cpfp: lightning_htlc_tx(cpfp_node, seq, hash, receiver, sender, false)?,
        direct,
        direct_from_cpfp: lightning_htlc_tx(cpfp_node, direct_seq, hash, receiver, sender, true)?,
    })
}

/// The claim of a Lightning send's leaves (spark-protocol §4.8 step 4): the SSP's new refunds
/// take the ordinary decrement of the sender's refund (current − 100, direct + 50), so they
/// mature 30 blocks before the HTLC refund ((current − 100) + 70) they replace. An intermediate
/// pair whose direct CSV is 15 above its CPFP one (85 − 70) is an HTLC pair (ordinary pairs
/// differ by 50, and the operators byte-compared every HTLC refund); any other pair is kept.
pub fn claim_sequences(seq: Sequence, direct: Sequence) -> (Sequence, Sequence) {
    use super::timelock::{DIRECT_HTLC_TIMELOCK_OFFSET, DIRECT_TIMELOCK_OFFSET, HTLC_TIMELOCK_OFFSET};
    let low = |s: Sequence| (s.0 & 0xFFFF) as u16;
    let upper = seq.0 & !0xFFFF;
    if low(direct).checked_sub(low(seq)) != Some(DIRECT_HTLC_TIMELOCK_OFFSET - HTLC_TIMELOCK_OFFSET) || low(seq) < HTLC_TIMELOCK_OFFSET {
        return (seq, direct);
    }
    let base = low(seq) - HTLC_TIMELOCK_OFFSET;
    (Sequence(upper | u32::from(base)), Sequence(upper | u32::from(base + DIRECT_TIMELOCK_OFFSET)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::SecretKey;
    use bitcoin::Amount;

    fn pk(byte: u8) -> PublicKey {
        PublicKey::from_secret_key(
            crate::crypto::secp(),
            &SecretKey::from_slice(&[byte; 32]).expect("key"),
        )
    }

    /// HTLC intermediate refunds (1970/1985 from a 2000 refund) are claimed at 1900/1950;
    /// ordinary ones (1900/1950) keep their timelocks.
    #[test]
    fn claims_of_htlc_refunds_take_the_ordinary_decrement() {
        assert_eq!(claim_sequences(Sequence(1970), Sequence(1985)), (Sequence(1900), Sequence(1950)));
        assert_eq!(claim_sequences(Sequence(1900), Sequence(1950)), (Sequence(1900), Sequence(1950)));
        let bit30 = 1 << 30;
        assert_eq!(claim_sequences(Sequence(bit30 | 170), Sequence(bit30 | 185)), (Sequence(bit30 | 100), Sequence(bit30 | 150)));
    }

    #[test]
    fn sequence_lock_pushes_2160_minimally() {
        let s = sequence_lock_script(&pk(1));
        // PUSH2 0x7008 (2160 little-endian), CSV, DROP, PUSH32 key, CHECKSIG.
        assert_eq!(&s.as_bytes()[..5], &[0x02, 0x70, 0x08, 0xb2, 0x75]);
        assert_eq!(s.len(), 5 + 33 + 1);
    }

    #[test]
    fn cpfp_keeps_value_and_anchor_direct_pays_fee() {
        let node = Transaction {
            version: super::super::template::TEMPLATE_VERSION,
            lock_time: LockTime::ZERO,
            input: vec![],
            output: vec![TxOut {
                value: Amount::from_sat(10_000),
                script_pubkey: ScriptBuf::new(),
            }],
        };
        let r = lightning_htlc_refund_txs(
            &node,
            None,
            Sequence(1870),
            Sequence(1885),
            &[7; 32],
            &pk(1),
            &pk(2),
        )
        .expect("htlc");
        assert_eq!(r.cpfp.output.len(), 2);
        assert_eq!(r.cpfp.output[0].value, Amount::from_sat(10_000));
        assert_eq!(r.direct_from_cpfp.output.len(), 1);
        assert_eq!(r.direct_from_cpfp.output[0].value, Amount::from_sat(9_045));
        assert!(r.direct.is_none());
        assert!(r.cpfp.output[0].script_pubkey.is_p2tr());
        // The hash and both keys are committed to.
        assert_ne!(
            htlc_script_pubkey(&[7; 32], &pk(1), &pk(2)),
            htlc_script_pubkey(&[8; 32], &pk(1), &pk(2))
        );
        assert_ne!(
            htlc_script_pubkey(&[7; 32], &pk(1), &pk(2)),
            htlc_script_pubkey(&[7; 32], &pk(2), &pk(1))
        );
    }
}
