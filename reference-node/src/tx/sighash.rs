//! BIP341 key-path sighashes (SIGHASH_DEFAULT, all prevouts) and key-path witnesses.
use bitcoin::secp256k1::{schnorr, Keypair};
use bitcoin::{Transaction, TxOut, Witness};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SighashError {
    #[error("input {index} out of range ({inputs} inputs)")]
    InputOutOfRange { index: usize, inputs: usize },
    #[error("expected {expected} prevouts, found {found}")]
    PrevoutCount { expected: usize, found: usize },
}

pub fn key_spend_sighash(tx: &Transaction, input: usize, prevouts: &[TxOut]) -> Result<[u8; 32], SighashError> { unimplemented!() }
pub fn key_spend_witness(sig: &schnorr::Signature) -> Witness { unimplemented!() }
/// Sign a key-path spend by a single key (BIP86 tweak of `keypair`), e.g. a wallet's L1 coin.
pub fn sign_single_key(tx: &Transaction, input: usize, prevouts: &[TxOut], keypair: &Keypair, aux_rand: &[u8; 32]) -> Result<schnorr::Signature, SighashError> { unimplemented!() }
