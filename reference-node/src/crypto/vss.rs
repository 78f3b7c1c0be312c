//! Feldman verifiable secret sharing in Spark's format (vectors §4.8).
use super::{PublicKey, Scalar};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VssShare {
    /// Shamir x-coordinate (operator index + 1).
    pub x: u32,
    pub share: Scalar,
    /// proofs[k] = a_k·G; proofs[0] = secret·G. `threshold` entries.
    pub proofs: Vec<PublicKey>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VssError {
    #[error("threshold {threshold} must be in 1..={n}")]
    BadThreshold { threshold: u16, n: u16 },
    #[error("share for x={x} does not match its Feldman proofs")]
    InvalidShare { x: u32 },
    #[error("{0}")]
    Malformed(String),
}

pub fn split_with_proofs<R: RngCore + CryptoRng>(secret: &Scalar, threshold: u16, n: u16, rng: &mut R) -> Result<Vec<VssShare>, VssError> { unimplemented!() }
pub fn validate_share(share: &VssShare) -> Result<(), VssError> { unimplemented!() }
pub fn recover_secret(shares: &[(u32, Scalar)]) -> Result<Scalar, VssError> { unimplemented!() }
/// Lagrange coefficient at 0 of `x` within `xs`.
pub fn lagrange_at_zero(x: u32, xs: &[u32]) -> Scalar { unimplemented!() }
