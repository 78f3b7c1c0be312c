//! BIP341 key-path sighashes (SIGHASH_DEFAULT, all prevouts) and key-path witnesses.
use bitcoin::hashes::Hash;
use bitcoin::key::TapTweak;
use bitcoin::secp256k1::{schnorr, Keypair, Message};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{taproot, Transaction, TxOut, Witness};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SighashError {
    #[error("input {index} out of range ({inputs} inputs)")]
    InputOutOfRange { index: usize, inputs: usize },
    #[error("expected {expected} prevouts, found {found}")]
    PrevoutCount { expected: usize, found: usize },
}

/// The BIP341 key-path sighash of `tx`'s input `input` with SIGHASH_DEFAULT, committing to every
/// prevout (Spark's `SigHashFromTx`, vectors §1.6). `prevouts[i]` is the output input `i` spends.
pub fn key_spend_sighash(
    tx: &Transaction,
    input: usize,
    prevouts: &[TxOut],
) -> Result<[u8; 32], SighashError> {
    if input >= tx.input.len() {
        return Err(SighashError::InputOutOfRange {
            index: input,
            inputs: tx.input.len(),
        });
    }
    if prevouts.len() != tx.input.len() {
        return Err(SighashError::PrevoutCount {
            expected: tx.input.len(),
            found: prevouts.len(),
        });
    }
    // Both preconditions of rust-bitcoin's taproot sighash are checked above, so its error can only
    // be one of them; report it as such rather than panic.
    let sighash = SighashCache::new(tx)
        .taproot_key_spend_signature_hash(input, &Prevouts::All(prevouts), TapSighashType::Default)
        .map_err(|_| SighashError::InputOutOfRange {
            index: input,
            inputs: tx.input.len(),
        })?;
    Ok(sighash.to_byte_array())
}

/// The one-element witness of a key-path spend: the bare 64-byte signature (SIGHASH_DEFAULT).
pub fn key_spend_witness(sig: &schnorr::Signature) -> Witness {
    Witness::p2tr_key_spend(&taproot::Signature {
        signature: *sig,
        sighash_type: TapSighashType::Default,
    })
}

/// Sign a key-path spend by a single key (BIP86 tweak of `keypair`), e.g. a wallet's L1 coin.
pub fn sign_single_key(
    tx: &Transaction,
    input: usize,
    prevouts: &[TxOut],
    keypair: &Keypair,
    aux_rand: &[u8; 32],
) -> Result<schnorr::Signature, SighashError> {
    let secp = crate::crypto::secp();
    let sighash = key_spend_sighash(tx, input, prevouts)?;
    // The output key is the BIP341 tweak of the internal key with an empty script tree, which is
    // what `template::p2tr_script` pays to.
    let tweaked = keypair.tap_tweak(secp, None).to_keypair();
    Ok(secp.sign_schnorr_with_aux_rand(&Message::from_digest(sighash), &tweaked, aux_rand))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::template::{node_txs, p2tr_script};
    use bitcoin::secp256k1::SecretKey;
    use bitcoin::{Amount, OutPoint, Sequence};
    use proptest::prelude::*;

    fn keypair(byte: u8) -> Keypair {
        let sk = SecretKey::from_slice(&[byte; 32]).expect("valid scalar");
        Keypair::from_secret_key(crate::crypto::secp(), &sk)
    }

    fn spend(value: u64) -> (Transaction, Vec<TxOut>) {
        let kp = keypair(7);
        let prev = TxOut {
            value: Amount::from_sat(value),
            script_pubkey: p2tr_script(&kp.public_key()),
        };
        let tx = node_txs(OutPoint::default(), &prev, Sequence(0), Sequence(50)).cpfp;
        (tx, vec![prev])
    }

    #[test]
    fn rejects_bad_indices_and_prevout_counts() {
        let (tx, prevouts) = spend(1000);
        assert_eq!(
            key_spend_sighash(&tx, 1, &prevouts),
            Err(SighashError::InputOutOfRange {
                index: 1,
                inputs: 1
            })
        );
        assert_eq!(
            key_spend_sighash(&tx, 0, &[]),
            Err(SighashError::PrevoutCount {
                expected: 1,
                found: 0
            })
        );
    }

    #[test]
    fn signature_verifies_against_the_tweaked_output_key() {
        let kp = keypair(7);
        let (tx, prevouts) = spend(5000);
        let sig = sign_single_key(&tx, 0, &prevouts, &kp, &[9; 32]).expect("sign");
        let secp = crate::crypto::secp();
        let (output_key, _) = kp.x_only_public_key().0.tap_tweak(secp, None);
        let msg = Message::from_digest(key_spend_sighash(&tx, 0, &prevouts).expect("sighash"));
        assert!(secp
            .verify_schnorr(&sig, &msg, &output_key.to_x_only_public_key())
            .is_ok());
        let witness = key_spend_witness(&sig);
        assert_eq!(witness.len(), 1);
        assert_eq!(witness.nth(0).map(<[u8]>::len), Some(64));
    }

    proptest! {
        /// The sighash commits to every field a signer cares about.
        #[test]
        fn sighash_changes_with_any_field(value in 1u64..1_000_000_000, field in 0usize..6, delta in 1u32..1000) {
            let (tx, prevouts) = spend(value);
            let base = key_spend_sighash(&tx, 0, &prevouts).expect("sighash");
            let (mut tx2, mut prev2) = (tx.clone(), prevouts.clone());
            match field {
                0 => tx2.version.0 += delta as i32,
                1 => tx2.lock_time = bitcoin::absolute::LockTime::from_consensus(delta),
                2 => tx2.input[0].sequence.0 ^= delta,
                3 => tx2.input[0].previous_output.vout ^= delta,
                4 => tx2.output[0].value += Amount::from_sat(u64::from(delta)),
                _ => prev2[0].value += Amount::from_sat(u64::from(delta)),
            }
            prop_assert_ne!(key_spend_sighash(&tx2, 0, &prev2).expect("sighash"), base);
        }
    }
}
