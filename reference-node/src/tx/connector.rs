//! Cooperative-exit (connector) refunds (spark-protocol §3.7): a leaf's refund txs with a second
//! input, the leaf's connector output, so the SSP's refund can confirm only after the exit tx.
use super::template::RefundTxs;
use bitcoin::{OutPoint, ScriptBuf, Sequence, TxIn, Witness};

/// The connector input carries no relative lock: SDK 0.8.8 adds it with the default sequence.
pub const CONNECTOR_SEQUENCE: Sequence = Sequence::MAX;

/// SDK 0.8.8 `createConnectorRefundTxs`: `refunds` (already built at the decremented, rounded
/// sequence, see [`crate::tx::timelock::decremented_refund_sequence`]) with `connector` appended
/// as input 1 of every variant.
pub fn connector_refund_txs(mut refunds: RefundTxs, connector: OutPoint) -> RefundTxs {
    let input = TxIn {
        previous_output: connector,
        script_sig: ScriptBuf::new(),
        sequence: CONNECTOR_SEQUENCE,
        witness: Witness::new(),
    };
    refunds.cpfp.input.push(input.clone());
    if let Some(direct) = refunds.direct.as_mut() {
        direct.input.push(input.clone());
    }
    refunds.direct_from_cpfp.input.push(input);
    refunds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::template::{leaf_refund_txs, node_txs, p2tr_script};
    use bitcoin::hashes::Hash;
    use bitcoin::secp256k1::{PublicKey, SecretKey};
    use bitcoin::{Amount, TxOut};

    #[test]
    fn every_variant_gets_the_connector_as_input_1() {
        let pk = PublicKey::from_secret_key(
            crate::crypto::secp(),
            &SecretKey::from_slice(&[3; 32]).expect("key"),
        );
        let prev = TxOut {
            value: Amount::from_sat(50_000),
            script_pubkey: p2tr_script(&pk),
        };
        let node = node_txs(OutPoint::default(), &prev, Sequence(2000), Sequence(2050));
        let refunds =
            leaf_refund_txs(&node.cpfp, Some(&node.direct), &pk, Sequence(1900)).expect("refunds");
        let connector = OutPoint {
            txid: bitcoin::Txid::from_byte_array([9; 32]),
            vout: 4,
        };
        let with = connector_refund_txs(refunds.clone(), connector);
        let direct = with.direct.as_ref().expect("direct");
        for (tx, base) in [
            (&with.cpfp, &refunds.cpfp),
            (direct, refunds.direct.as_ref().expect("direct")),
            (&with.direct_from_cpfp, &refunds.direct_from_cpfp),
        ] {
            assert_eq!(tx.input.len(), 2);
            assert_eq!(tx.input[0], base.input[0]);
            assert_eq!(tx.input[1].previous_output, connector);
            assert_eq!(tx.input[1].sequence, CONNECTOR_SEQUENCE);
            assert_eq!(tx.output, base.output);
        }
    }
}
