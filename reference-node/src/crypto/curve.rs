//! Scalars mod the secp256k1 group order and point arithmetic.
use super::PublicKey;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

/// A scalar mod n, 32 bytes big-endian. Unlike `SecretKey` it may be zero (a share can be).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scalar(pub [u8; 32]);

impl std::fmt::Debug for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scalar({}..)", hex::encode(&self.0[..4]))
    }
}

impl Scalar {
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Scalar { unimplemented!() }
    pub fn from_u32(v: u32) -> Scalar { unimplemented!() }
    /// None if `bytes` >= n.
    pub fn from_bytes(bytes: [u8; 32]) -> Option<Scalar> { unimplemented!() }
    pub fn from_secret_key(sk: &super::SecretKey) -> Scalar { unimplemented!() }
    /// None for zero.
    pub fn to_secret_key(&self) -> Option<super::SecretKey> { unimplemented!() }
    pub fn is_zero(&self) -> bool { unimplemented!() }
    pub fn add(&self, o: &Scalar) -> Scalar { unimplemented!() }
    pub fn sub(&self, o: &Scalar) -> Scalar { unimplemented!() }
    pub fn mul(&self, o: &Scalar) -> Scalar { unimplemented!() }
    pub fn neg(&self) -> Scalar { unimplemented!() }
    /// None for zero.
    pub fn invert(&self) -> Option<Scalar> { unimplemented!() }
}

/// s·G; None when s is zero.
pub fn base_mul(s: &Scalar) -> Option<PublicKey> { unimplemented!() }
/// s·P; None when s is zero.
pub fn point_mul(p: &PublicKey, s: &Scalar) -> Option<PublicKey> { unimplemented!() }
/// a + b; None at infinity.
pub fn point_add(a: &PublicKey, b: &PublicKey) -> Option<PublicKey> { unimplemented!() }
/// a − b; None at infinity.
pub fn point_sub(a: &PublicKey, b: &PublicKey) -> Option<PublicKey> { unimplemented!() }
