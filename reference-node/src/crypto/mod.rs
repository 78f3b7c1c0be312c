//! Spark's cryptography on real secp256k1: scalar/point arithmetic, 1 + t-of-n FROST signing with the
//! user as a mandatory participant, Feldman VSS for key tweaks, ECIES for per-operator payloads,
//! the operators' DKG, and identity-key ECDSA.

pub mod curve;
pub mod dkg;
pub mod ecies;
pub mod identity;
pub mod signing;
pub mod vss;

pub use bitcoin::secp256k1::{PublicKey, SecretKey};
pub use curve::Scalar;

/// One shared verification/signing context. Not randomised (no `rand-std`): determinism first.
pub fn secp() -> &'static bitcoin::secp256k1::Secp256k1<bitcoin::secp256k1::All> {
    static SECP: std::sync::OnceLock<bitcoin::secp256k1::Secp256k1<bitcoin::secp256k1::All>> =
        std::sync::OnceLock::new();
    SECP.get_or_init(bitcoin::secp256k1::Secp256k1::new)
}
