//! ECDSA by identity keys over 32-byte digests (DER, low-S), as Spark signs transfer packages.
use super::{PublicKey, SecretKey};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IdentityError {
    #[error("malformed DER signature")]
    Malformed,
    #[error("signature does not verify")]
    Invalid,
}

pub fn sign_digest(secret: &SecretKey, digest: &[u8; 32]) -> Vec<u8> { unimplemented!() }
pub fn verify_digest(public: &PublicKey, digest: &[u8; 32], der: &[u8]) -> Result<(), IdentityError> { unimplemented!() }
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] { unimplemented!() }
