//! Schnorr adaptor signatures over BIP340, as Spark's leaf swaps use them (spark-protocol §4.3, the
//! SDK's `adaptor-signature.ts`). A pre-signature `(r, s')` on message `m` under key `P` with
//! adaptor point `T = a·G` becomes the valid BIP340 signature `(r, s' ± a)` once `a` is known,
//! and anyone holding both learns `a = ±(s − s')`. That is the swap's exchange: the user hands
//! the SSP a pre-signature, and completing it (to finish the user's leg) reveals `a` to the SSP.
//!
//! The sign ambiguity is BIP340's even-y rule: when the signers folded `T` into their nonce
//! (`R = R' + T`) and `R` came out odd, they negated their nonces, so the completion subtracts.
//! [`from_signature`] (the SDK's `generateAdaptorFromSignature`) always subtracts `a`; a
//! verifier accepts either parity, as the SDK's `validateOutboundAdaptorSignature` does.

use super::curve::{base_mul, point_add, point_mul, point_sub, Scalar};
use super::{secp, PublicKey};
use bitcoin::hashes::{sha256t_hash_newtype, Hash, HashEngine};
use bitcoin::key::{Parity, XOnlyPublicKey};
use bitcoin::secp256k1::{schnorr, Message};
use k256::elliptic_curve::ops::Reduce;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

sha256t_hash_newtype! {
    struct ChallengeTag = hash_str("BIP0340/challenge");
    /// BIP340's challenge hash: tagged SHA256 of `r ‖ x(P) ‖ m`.
    #[hash_newtype(forward)]
    struct ChallengeHash(_);
}

/// A pre-signature: the nonce's x coordinate `r` (of the *completed* signature) and `s'`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreSignature {
    pub r: [u8; 32],
    pub s: Scalar,
}

impl PreSignature {
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.r);
        out[32..].copy_from_slice(&self.s.0);
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdaptorError {
    #[error("r is not the x coordinate of a curve point")]
    BadNonce,
    #[error("s is not below the group order")]
    BadScalar,
    #[error("the pre-signature does not verify against the adaptor point")]
    InvalidPreSignature,
    #[error("completing with this secret gives no valid signature")]
    WrongSecret,
    #[error("the signature and pre-signature have different nonces")]
    NonceMismatch,
    #[error("the extracted secret does not open the adaptor point")]
    NotExtractable,
    #[error("malformed adaptor point: {0}")]
    MalformedPoint(String),
}

/// Parse an adaptor point as it travels (Spark's `adaptor_public_key`: 33-byte SEC1 compressed),
/// refusing anything that is not a curve point, and the generator itself (a = 1 is no secret).
pub fn parse_point(bytes: &[u8]) -> Result<PublicKey, AdaptorError> {
    if bytes.len() != 33 {
        return Err(AdaptorError::MalformedPoint(format!("expected 33 bytes (compressed), found {}", bytes.len())));
    }
    let t = PublicKey::from_slice(bytes).map_err(|e| AdaptorError::MalformedPoint(e.to_string()))?;
    if Some(t) == base_mul(&Scalar::from_u32(1)) {
        return Err(AdaptorError::MalformedPoint("the generator (a = 1 is public)".into()));
    }
    Ok(t)
}

/// e = H_BIP340(r ‖ x(P) ‖ m) mod n.
fn challenge(r: &[u8; 32], key: &XOnlyPublicKey, msg: &[u8; 32]) -> Scalar {
    let mut eng = ChallengeHash::engine();
    eng.input(r);
    eng.input(&key.serialize());
    eng.input(msg);
    let h = ChallengeHash::from_engine(eng).to_byte_array();
    let e = <k256::Scalar as Reduce<k256::U256>>::reduce_bytes(&h.into());
    Scalar(e.to_bytes().into())
}

/// A fresh adaptor secret `a` and its point `T = a·G`.
pub fn new_secret<R: RngCore + CryptoRng>(rng: &mut R) -> (Scalar, PublicKey) {
    let a = Scalar::random(rng);
    (a, base_mul(&a).expect("a non-zero scalar has a point"))
}

/// Blind a valid BIP340 signature into a pre-signature for `T = a·G`: `(r, s − a)`. Whoever
/// holds it can check it against `T` but cannot use it until `a` is revealed.
pub fn from_signature(sig: &schnorr::Signature, a: &Scalar) -> Result<PreSignature, AdaptorError> {
    let bytes = sig.serialize();
    let r: [u8; 32] = bytes[..32].try_into().expect("64-byte signature");
    let s = Scalar::from_bytes(bytes[32..].try_into().expect("64-byte signature")).ok_or(AdaptorError::BadScalar)?;
    Ok(PreSignature { r, s: s.sub(a) })
}

/// Check that `pre` completes to a valid signature of `msg` under `key` with the discrete log of
/// `t`: with e the challenge and R = lift_x(r), `s'·G + e·(−P) ± T == R`.
pub fn verify(pre: &PreSignature, msg: &[u8; 32], key: &XOnlyPublicKey, t: &PublicKey) -> Result<(), AdaptorError> {
    let r_x = XOnlyPublicKey::from_slice(&pre.r).map_err(|_| AdaptorError::BadNonce)?;
    let big_r = PublicKey::from_x_only_public_key(r_x, Parity::Even);
    let p = PublicKey::from_x_only_public_key(*key, Parity::Even);
    let e = challenge(&pre.r, key, msg);
    // R' = s'·G − e·P (either term may be the identity only with negligible probability; a
    // zero s' or e is rejected as invalid rather than special-cased).
    let s_g = base_mul(&pre.s).ok_or(AdaptorError::InvalidPreSignature)?;
    let e_p = point_mul(&p, &e).ok_or(AdaptorError::InvalidPreSignature)?;
    let r_pre = point_sub(&s_g, &e_p).ok_or(AdaptorError::InvalidPreSignature)?;
    let plus = point_add(&r_pre, t);
    let minus = point_sub(&r_pre, t);
    if plus == Some(big_r) || minus == Some(big_r) {
        Ok(())
    } else {
        Err(AdaptorError::InvalidPreSignature)
    }
}

/// Complete `pre` with the adaptor secret: `s' + a` or `s' − a`, whichever verifies as BIP340.
pub fn complete(pre: &PreSignature, a: &Scalar, msg: &[u8; 32], key: &XOnlyPublicKey) -> Result<schnorr::Signature, AdaptorError> {
    let m = Message::from_digest(*msg);
    for s in [pre.s.add(a), pre.s.sub(a)] {
        let sig = PreSignature { r: pre.r, s }.to_bytes();
        if let Ok(sig) = schnorr::Signature::from_slice(&sig) {
            if secp().verify_schnorr(&sig, &m, key).is_ok() {
                return Ok(sig);
            }
        }
    }
    Err(AdaptorError::WrongSecret)
}

/// Learn `a` from a pre-signature and its completion: `±(s − s')`, the sign fixed by `T`.
pub fn extract(pre: &PreSignature, sig: &schnorr::Signature, t: &PublicKey) -> Result<Scalar, AdaptorError> {
    let bytes = sig.serialize();
    if bytes[..32] != pre.r {
        return Err(AdaptorError::NonceMismatch);
    }
    let s = Scalar::from_bytes(bytes[32..].try_into().expect("64-byte signature")).ok_or(AdaptorError::BadScalar)?;
    let d = s.sub(&pre.s);
    [d, d.neg()].into_iter().find(|a| base_mul(a).as_ref() == Some(t)).ok_or(AdaptorError::NotExtractable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::signing::tests::{dealer, finish, rng, sign_round};
    use crate::types::OperatorId;
    use bitcoin::key::TapTweak;
    use bitcoin::secp256k1::Keypair;

    /// A plain BIP340 signature (libsecp256k1) of `msg`: the shape every aggregated FROST
    /// signature has once it is on a refund.
    fn signed(seed: u64, msg: &[u8; 32]) -> (schnorr::Signature, XOnlyPublicKey) {
        let mut r = rng(seed);
        let kp = Keypair::from_secret_key(secp(), &Scalar::random(&mut r).to_secret_key().unwrap());
        let sig = secp().sign_schnorr_no_aux_rand(&Message::from_digest(*msg), &kp);
        (sig, kp.x_only_public_key().0)
    }

    #[test]
    fn adaptor_round_trip_verifies_completes_and_extracts() {
        let msg = [7u8; 32];
        for seed in 0..16 {
            let (sig, key) = signed(seed, &msg);
            let (a, t) = new_secret(&mut rng(seed + 100));
            let pre = from_signature(&sig, &a).unwrap();
            // The pre-signature is not itself a valid signature.
            let raw = schnorr::Signature::from_slice(&pre.to_bytes()).unwrap();
            assert!(secp().verify_schnorr(&raw, &Message::from_digest(msg), &key).is_err());
            verify(&pre, &msg, &key, &t).unwrap();
            let done = complete(&pre, &a, &msg, &key).unwrap();
            assert_eq!(done, sig);
            assert_eq!(extract(&pre, &done, &t).unwrap(), a);
        }
    }

    #[test]
    fn a_wrong_secret_or_point_is_refused() {
        let msg = [9u8; 32];
        let (sig, key) = signed(3, &msg);
        let (a, t) = new_secret(&mut rng(4));
        let (b, u) = new_secret(&mut rng(5));
        let pre = from_signature(&sig, &a).unwrap();
        assert_eq!(verify(&pre, &msg, &key, &u), Err(AdaptorError::InvalidPreSignature));
        assert_eq!(complete(&pre, &b, &msg, &key), Err(AdaptorError::WrongSecret));
        // Another message or key does not verify either.
        assert!(verify(&pre, &[8u8; 32], &key, &t).is_err());
        let (_, other_key) = signed(6, &msg);
        assert!(verify(&pre, &msg, &other_key, &t).is_err());
        // Extraction against the wrong point finds nothing.
        assert_eq!(extract(&pre, &sig, &u), Err(AdaptorError::NotExtractable));
    }

    #[test]
    fn a_malformed_adaptor_point_is_refused() {
        let (_, t) = new_secret(&mut rng(8));
        assert_eq!(parse_point(&t.serialize()), Ok(t));
        assert!(parse_point(&t.serialize_uncompressed()).is_err(), "65 bytes");
        assert!(parse_point(&t.serialize()[..32]).is_err(), "short");
        let mut not_on_curve = t.serialize();
        not_on_curve[0] = 0x05;
        assert!(parse_point(&not_on_curve).is_err(), "bad prefix");
        // x = 5 is not the x of any secp256k1 point (5³ + 7 = 132 is not a square mod p).
        let mut x5 = [0u8; 33];
        x5[0] = 0x02;
        x5[32] = 5;
        assert!(parse_point(&x5).is_err(), "x off the curve");
        let g = base_mul(&Scalar::from_u32(1)).unwrap();
        assert!(matches!(parse_point(&g.serialize()), Err(AdaptorError::MalformedPoint(m)) if m.contains("generator")));
    }

    /// With the FROST signature of Spark's 1 + t-of-n signing (a taproot key-path signature of
    /// Y = P_user + P_SE) the same conversion holds: the refund signature the wallet adapts.
    #[test]
    fn adaptor_on_a_spark_frost_signature() {
        let mut r = rng(41);
        let keyshares = dealer(5, 3, &mut r);
        let user = Scalar::random(&mut r).to_secret_key().unwrap();
        let msg = [5u8; 32];
        let signers = [OperatorId(0), OperatorId(2), OperatorId(4)];
        let round = sign_round(&keyshares, &signers, &user, msg, &mut r).unwrap();
        let public = keyshares[&OperatorId(0)].public_shares.clone();
        let sig = finish(&round, &public).unwrap();
        let y = round.job.verifying_key.x_only_public_key().0;
        let (q, _) = y.tap_tweak(secp(), None);
        let key = q.to_x_only_public_key();
        let (a, t) = new_secret(&mut r);
        let pre = from_signature(&sig, &a).unwrap();
        verify(&pre, &msg, &key, &t).unwrap();
        assert_eq!(complete(&pre, &a, &msg, &key).unwrap(), sig);
        assert_eq!(extract(&pre, &sig, &t).unwrap(), a);
    }
}
