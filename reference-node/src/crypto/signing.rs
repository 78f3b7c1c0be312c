//! Spark FROST: t operators plus the user as a mandatory extra participant sign one BIP340
//! signature for the BIP341-tweaked (empty script tree) key Y = P_user + P_SE (spark-protocol §2.4).
use super::{PublicKey, Scalar, SecretKey};
use crate::types::OperatorId;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An operator's share of one leaf's SE key (the `signing_keyshare` row).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyShare {
    pub secret_share: Scalar,
    /// Every operator's public share s_j·G.
    pub public_shares: BTreeMap<OperatorId, PublicKey>,
    /// P_SE.
    pub public_key: PublicKey,
    pub threshold: u16,
}

impl KeyShare {
    /// Apply a Feldman-shared tweak δ (spark-protocol §2.5): s_i += δ_i, public_shares[j] += δ_j·G,
    /// public_key += δ·G where `secret_commitment` = δ·G = proofs[0].
    pub fn apply_tweak(
        &mut self,
        me: OperatorId,
        share_tweak: &Scalar,
        pubkey_shares_tweak: &BTreeMap<OperatorId, PublicKey>,
        secret_commitment: &PublicKey,
    ) -> Result<(), SigningError> { let _ = me; unimplemented!() }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NonceCommitment(pub Vec<u8>);
#[derive(Clone, Serialize, Deserialize)]
pub struct SecretNonce(pub Vec<u8>);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureShare(pub [u8; 32]);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Signer {
    Operator(OperatorId),
    User,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SigningError {
    #[error("expected {expected} operator commitments, found {found}")]
    WrongSignerCount { expected: usize, found: usize },
    #[error("{0:?} is not among the signers of this job")]
    NotASigner(Signer),
    #[error("invalid signature share from {culprits:?}")]
    InvalidShare { culprits: Vec<Signer> },
    #[error("aggregate signature does not verify")]
    InvalidSignature,
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
}

pub fn operator_identifier(op: OperatorId) -> frost_secp256k1_tr::Identifier { unimplemented!() }
pub fn user_identifier() -> frost_secp256k1_tr::Identifier { unimplemented!() }

/// FROST round 1: fresh nonces for one signing job, hedged with `signing_share`.
pub fn commit<R: RngCore + CryptoRng>(signing_share: &Scalar, rng: &mut R) -> (SecretNonce, NonceCommitment) { unimplemented!() }

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningJob {
    /// BIP341 key-path sighash.
    pub message: [u8; 32],
    /// Y = P_user + P_SE (untweaked).
    pub verifying_key: PublicKey,
    pub user_public_key: PublicKey,
    pub operator_commitments: BTreeMap<OperatorId, NonceCommitment>,
    pub user_commitment: NonceCommitment,
}

pub fn sign_as_operator(job: &SigningJob, me: OperatorId, share: &KeyShare, nonce: &SecretNonce) -> Result<SignatureShare, SigningError> { unimplemented!() }
pub fn sign_as_user(job: &SigningJob, user_secret: &SecretKey, nonce: &SecretNonce) -> Result<SignatureShare, SigningError> { unimplemented!() }
/// Aggregates and verifies; names the culprits of bad shares (identifiable abort).
pub fn aggregate(
    job: &SigningJob,
    operator_shares: &BTreeMap<OperatorId, SignatureShare>,
    user_share: &SignatureShare,
    operator_public_shares: &BTreeMap<OperatorId, PublicKey>,
) -> Result<bitcoin::secp256k1::schnorr::Signature, SigningError> { unimplemented!() }
/// BIP340 verify against the BIP341 output key of `verifying_key` (empty script tree).
pub fn verify(verifying_key: &PublicKey, message: &[u8; 32], sig: &bitcoin::secp256k1::schnorr::Signature) -> bool { unimplemented!() }
