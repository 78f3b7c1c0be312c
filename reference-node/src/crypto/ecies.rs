//! ECIES as Spark's signer uses it (Rust `ecies` crate / JS `eciesjs` defaults).
use super::{PublicKey, SecretKey};
use rand_core::{CryptoRng, RngCore};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EciesError {
    #[error("ciphertext too short: {0} bytes")]
    TooShort(usize),
    #[error("bad ephemeral public key")]
    BadEphemeralKey,
    #[error("authentication failed")]
    Decrypt,
}

pub fn encrypt<R: RngCore + CryptoRng>(receiver: &PublicKey, plaintext: &[u8], rng: &mut R) -> Vec<u8> { unimplemented!() }
pub fn decrypt(secret: &SecretKey, ciphertext: &[u8]) -> Result<Vec<u8>, EciesError> { unimplemented!() }
