//! Spark FROST: t operators plus the user as a mandatory extra participant sign one BIP340
//! signature for the BIP341-tweaked (empty script tree) key Y = P_user + P_SE (spark-protocol §2.4).
use super::curve::{base_mul, point_add, point_mul, point_sum};
use super::{secp, vss, PublicKey, Scalar, SecretKey};
use crate::types::OperatorId;
use bitcoin::secp256k1::Message;
use frost_secp256k1_tr as frost;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
    ///
    /// All-or-nothing: on any error `self` is left unchanged. The caller is expected to have run
    /// `vss::validate_share` on δ_i first; this re-checks the result against the public parts.
    pub fn apply_tweak(
        &mut self,
        me: OperatorId,
        share_tweak: &Scalar,
        pubkey_shares_tweak: &BTreeMap<OperatorId, PublicKey>,
        secret_commitment: &PublicKey,
    ) -> Result<(), SigningError> {
        if !self.public_shares.keys().eq(pubkey_shares_tweak.keys()) {
            return Err(malformed(
                "pubkey_shares_tweak",
                "operator set differs from the keyshare's",
            ));
        }
        let secret_share = self.secret_share.add(share_tweak);
        let mut public_shares = BTreeMap::new();
        for ((op, old), add) in self.public_shares.iter().zip(pubkey_shares_tweak.values()) {
            let new = point_add(old, add).ok_or_else(|| {
                malformed("pubkey_shares_tweak", format!("{op} share at infinity"))
            })?;
            public_shares.insert(*op, new);
        }
        let public_key = point_add(&self.public_key, secret_commitment)
            .ok_or_else(|| malformed("secret_commitment", "tweaked key at infinity"))?;
        let tweaked = KeyShare {
            secret_share,
            public_shares,
            public_key,
            threshold: self.threshold,
        };
        tweaked.check_consistent(me)?;
        *self = tweaked;
        Ok(())
    }

    /// s_me·G == public_shares[me], and the first `threshold` public shares interpolate to
    /// `public_key` (so a sender cannot hand out a `pubkey_shares_tweak` that disagrees with δ·G).
    pub fn check_consistent(&self, me: OperatorId) -> Result<(), SigningError> {
        let mine = self
            .public_shares
            .get(&me)
            .ok_or(SigningError::NotASigner(Signer::Operator(me)))?;
        if base_mul(&self.secret_share).as_ref() != Some(mine) {
            return Err(malformed(
                "share tweak",
                "s_i·G does not match public_shares[me]",
            ));
        }
        let t = usize::from(self.threshold);
        if t == 0 || self.public_shares.len() < t {
            return Err(malformed(
                "keyshare",
                "fewer public shares than the threshold",
            ));
        }
        let subset: Vec<(u32, PublicKey)> = self
            .public_shares
            .iter()
            .take(t)
            .map(|(op, p)| (op.share_x(), *p))
            .collect();
        if interpolate_points_at_zero(&subset).as_ref() != Some(&self.public_key) {
            return Err(malformed(
                "keyshare",
                "public shares do not interpolate to the public key",
            ));
        }
        Ok(())
    }

    /// Trusted-dealer keyshares for `n` operators with threshold `t` (tests and simulator setups
    /// that skip the DKG): Shamir/Feldman split of `secret`, operator i gets x = i+1.
    pub fn deal(
        secret: &Scalar,
        n: u16,
        t: u16,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Vec<KeyShare>, SigningError> {
        let shares = vss::split_with_proofs(secret, t, n, rng)
            .map_err(|e| malformed("dealer", e.to_string()))?;
        let public_key = base_mul(secret).ok_or_else(|| malformed("dealer", "zero secret"))?;
        let mut public_shares = BTreeMap::new();
        for (i, sh) in shares.iter().enumerate() {
            let p = base_mul(&sh.share).ok_or_else(|| malformed("dealer", "zero share"))?;
            public_shares.insert(OperatorId(i as u16), p);
        }
        Ok(shares
            .into_iter()
            .map(|sh| KeyShare {
                secret_share: sh.share,
                public_shares: public_shares.clone(),
                public_key,
                threshold: t,
            })
            .collect())
    }
}

/// Σ λ_x(xs)·P_x, the group point behind a set of public shares; None at infinity.
fn interpolate_points_at_zero(points: &[(u32, PublicKey)]) -> Option<PublicKey> {
    let xs: Vec<u32> = points.iter().map(|(x, _)| *x).collect();
    let terms = points
        .iter()
        .map(|(x, p)| point_mul(p, &vss::lagrange_at_zero(*x, &xs)))
        .collect::<Option<Vec<_>>>()?;
    point_sum(terms.iter())
}

pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> SigningError {
    SigningError::Malformed {
        what,
        detail: detail.into(),
    }
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

/// Operator i's FROST identifier: the scalar i+1 (vectors §4.4). Built from the 32-byte big-endian
/// encoding so that it also covers index 65535 (identifier 65536, beyond `TryFrom<u16>`).
pub fn operator_identifier(op: OperatorId) -> frost::Identifier {
    frost::Identifier::deserialize(&Scalar::from_u32(op.share_x()).0)
        .expect("invariant: 1..=65536 is a canonical non-zero scalar")
}

/// The user's FROST identifier, `Identifier::derive(b"user")` as in Spark's signer (vectors §4.4).
pub fn user_identifier() -> frost::Identifier {
    frost::Identifier::derive(b"user").expect("invariant: HID(\"user\") is a fixed non-zero scalar")
}

/// FROST round 1: fresh nonces for one signing job, hedged with `signing_share`.
pub fn commit<R: RngCore + CryptoRng>(
    signing_share: &Scalar,
    rng: &mut R,
) -> (SecretNonce, NonceCommitment) {
    // `SigningShare::new` (frost-core `internals`) accepts any scalar, including zero; the share
    // only hedges the rng output (nonce = H3(rng bytes ‖ share)).
    let share = frost::keys::SigningShare::new(signing_share.to_k256());
    let (nonces, commitments) = frost::round1::commit(&share, rng);
    let nonces = nonces.serialize().expect("invariant: nonces serialize");
    let commitments = commitments
        .serialize()
        .expect("invariant: commitments serialize");
    (SecretNonce(nonces), NonceCommitment(commitments))
}

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

/// Operator round 2 (spark-protocol §2.4): z_i = d_i + ρ_i·e_i + λ_i(S)·s_i·c. Checks that the job
/// names exactly `share.threshold` operators including `me`, and that Y = P_user + P_SE.
pub fn sign_as_operator(
    job: &SigningJob,
    me: OperatorId,
    share: &KeyShare,
    nonce: &SecretNonce,
) -> Result<SignatureShare, SigningError> {
    let (session, signing_share, verifying_share) = operator_inputs(job, me, share)?;
    session.sign(
        operator_identifier(me),
        signing_share,
        verifying_share,
        nonce,
    )
}

/// The checks of operator round 2 and what operator `me` hands FROST for `job`: the session, its
/// rescaled signing share and verifying share (shared with the adaptor signing, crypto/adaptor.rs).
pub(crate) fn operator_inputs(
    job: &SigningJob,
    me: OperatorId,
    share: &KeyShare,
) -> Result<(Session, k256::Scalar, k256::ProjectivePoint), SigningError> {
    let found = job.operator_commitments.len();
    if found != usize::from(share.threshold) {
        return Err(SigningError::WrongSignerCount {
            expected: usize::from(share.threshold),
            found,
        });
    }
    if !job.operator_commitments.contains_key(&me) {
        return Err(SigningError::NotASigner(Signer::Operator(me)));
    }
    // Refuse to sign for a key that is not ours plus the claimed owner's: the signature would be
    // for someone else's Y (statechain safety, spark-protocol §2.5).
    if point_add(&share.public_key, &job.user_public_key) != Some(job.verifying_key) {
        return Err(malformed("verifying_key", "Y != P_user + P_SE"));
    }
    let my_public = share
        .public_shares
        .get(&me)
        .ok_or_else(|| malformed("keyshare", "my public share is missing"))?;
    let session = Session::new(job)?;
    let signing_share = session.operator_scalar(me, share.secret_share.to_k256())?;
    let verifying_share = session.operator_point(me, my_public)?;
    Ok((session, signing_share, verifying_share))
}

/// User round 2 (spark-protocol §2.4): z_u = d_u + ρ_u·e_u + sk_user·c.
pub fn sign_as_user(
    job: &SigningJob,
    user_secret: &SecretKey,
    nonce: &SecretNonce,
) -> Result<SignatureShare, SigningError> {
    if PublicKey::from_secret_key(secp(), user_secret) != job.user_public_key {
        return Err(SigningError::NotASigner(Signer::User));
    }
    let session = Session::new(job)?;
    let signing_share = session.user_scalar(Scalar::from_secret_key(user_secret).to_k256());
    let verifying_share = session.user_point(&job.user_public_key);
    session.sign(user_identifier(), signing_share, verifying_share, nonce)
}

/// Aggregates and verifies; names the culprits of bad shares (identifiable abort).
pub fn aggregate(
    job: &SigningJob,
    operator_shares: &BTreeMap<OperatorId, SignatureShare>,
    user_share: &SignatureShare,
    operator_public_shares: &BTreeMap<OperatorId, PublicKey>,
) -> Result<bitcoin::secp256k1::schnorr::Signature, SigningError> {
    let session = Session::new(job)?;
    if operator_shares.len() != job.operator_commitments.len() {
        return Err(SigningError::WrongSignerCount {
            expected: job.operator_commitments.len(),
            found: operator_shares.len(),
        });
    }
    let mut shares = BTreeMap::new();
    let mut verifying_shares = BTreeMap::new();
    for (op, share) in operator_shares {
        if !job.operator_commitments.contains_key(op) {
            return Err(SigningError::NotASigner(Signer::Operator(*op)));
        }
        let public = operator_public_shares
            .get(op)
            .ok_or_else(|| malformed("operator_public_shares", format!("missing {op}")))?;
        let id = operator_identifier(*op);
        shares.insert(id, parse_share(share, Signer::Operator(*op))?);
        verifying_shares.insert(
            id,
            frost::keys::VerifyingShare::new(session.operator_point(*op, public)?),
        );
    }
    let user = user_identifier();
    shares.insert(user, parse_share(user_share, Signer::User)?);
    verifying_shares.insert(
        user,
        frost::keys::VerifyingShare::new(session.user_point(&job.user_public_key)),
    );

    // The verifying shares and key are already the tweaked ones (see `Session`), so no further
    // tweak here; AllCheaters detection names every bad share, not only the first.
    let pubkeys = frost::keys::PublicKeyPackage::new(
        verifying_shares,
        session.verifying_key,
        Some(session.min_signers()),
    );
    let signature = frost_core::aggregate_custom(
        &session.package,
        &shares,
        &pubkeys,
        frost_core::CheaterDetection::AllCheaters,
    )
    .map_err(|e| session.map_aggregate_error(e, job))?;
    let bytes = signature
        .serialize()
        .map_err(|e| malformed("signature", e.to_string()))?;
    let signature = bitcoin::secp256k1::schnorr::Signature::from_slice(&bytes)
        .map_err(|e| malformed("signature", e.to_string()))?;
    // frost already verified against the tweaked key; re-check with libsecp256k1 (what L1 runs).
    if !verify(&job.verifying_key, &job.message, &signature) {
        return Err(SigningError::InvalidSignature);
    }
    Ok(signature)
}

/// Checks one operator's share of a job on its own, before the user has signed (identifiable
/// abort for operator-first signing, spark-protocol §2.4a: the coordinator names a cheating
/// operator instead of handing the wallet shares that cannot aggregate).
pub fn verify_operator_share(
    job: &SigningJob,
    op: OperatorId,
    share: &SignatureShare,
    public_share: &PublicKey,
) -> Result<(), SigningError> {
    let session = Session::new(job)?;
    if !job.operator_commitments.contains_key(&op) {
        return Err(SigningError::NotASigner(Signer::Operator(op)));
    }
    let id = operator_identifier(op);
    let parsed = parse_share(share, Signer::Operator(op))?;
    // The session's verifying share and key are already the tweaked ones (see `Session`), as in
    // `aggregate`, so the share is checked as it is, on a one-share key package.
    let verifying = frost::keys::VerifyingShare::new(session.operator_point(op, public_share)?);
    frost_core::verify_signature_share(id, &verifying, &parsed, &session.package, &session.verifying_key)
        .map_err(|_| SigningError::InvalidShare { culprits: vec![Signer::Operator(op)] })
}

/// BIP340 verify against the BIP341 output key of `verifying_key` (empty script tree).
pub fn verify(
    verifying_key: &PublicKey,
    message: &[u8; 32],
    sig: &bitcoin::secp256k1::schnorr::Signature,
) -> bool {
    use bitcoin::key::TapTweak;
    let (internal, _) = verifying_key.x_only_public_key();
    let (output_key, _) = internal.tap_tweak(secp(), None);
    secp()
        .verify_schnorr(
            sig,
            &Message::from_digest(*message),
            &output_key.to_x_only_public_key(),
        )
        .is_ok()
}

/// One parsed signing job: the FROST signing package over T = S ∪ {user}, the Lagrange sets
/// behind the rescaling trick (DEPENDENCIES.md §2), and the BIP341 tweak.
///
/// Spark's signer (Lightspark's `nested-signing` fork of frost, spark-protocol §2.4) computes
/// Lagrange coefficients within each group (operators over S, user coefficient 1), and only the
/// operators add the taproot tweak t: operator i signs with λ_i(S)·(±s_i + t), the user with ±s_u
/// (± = even-Y normalisation of Y), both against Q = ±Y + t·G. Stock FROST multiplies by λ over
/// T, so each share handed to it is pre-scaled: operators λ(S)/λ(T)·(±s_i + t), the user
/// ±s_u/λ(T), and round 2 runs untweaked against Q. Every share is then byte-identical to the
/// SDK's (tests/interop.rs); an earlier version used `sign_with_tweak` for everyone, which spread
/// t over all of T: the sum was right, but each share differed from Spark's, so a Spark user share
/// did not aggregate with our operators' shares.
pub(crate) struct Session {
    pub(crate) package: frost::SigningPackage,
    operators: BTreeSet<frost::Identifier>,
    participants: BTreeSet<frost::Identifier>,
    /// Q = ±Y + t·G, the BIP341 output key.
    pub(crate) verifying_key: frost::VerifyingKey,
    /// −1 if Y has an odd y coordinate, else 1 (frost's `into_even_y`).
    parity: k256::Scalar,
    /// t = H_TapTweak(x(Y)) (empty script tree).
    tweak: k256::Scalar,
}

impl Session {
    pub(crate) fn new(job: &SigningJob) -> Result<Session, SigningError> {
        if job.operator_commitments.is_empty() {
            return Err(SigningError::WrongSignerCount {
                expected: 1,
                found: 0,
            });
        }
        let mut commitments = BTreeMap::new();
        for (op, c) in &job.operator_commitments {
            commitments.insert(operator_identifier(*op), parse_commitment(c)?);
        }
        let operators: BTreeSet<_> = commitments.keys().copied().collect();
        commitments.insert(user_identifier(), parse_commitment(&job.user_commitment)?);
        let participants: BTreeSet<_> = commitments.keys().copied().collect();
        let (parity, tweak) = taproot_parity_and_tweak(&job.verifying_key);
        let output_key =
            to_point(&job.verifying_key) * parity + k256::ProjectivePoint::GENERATOR * tweak;
        let verifying_key = frost::VerifyingKey::new(output_key);
        let package = frost::SigningPackage::new(commitments, &job.message);
        Ok(Session {
            package,
            operators,
            participants,
            verifying_key,
            parity,
            tweak,
        })
    }

    /// |T| = t + 1: every participant's share is needed, so min_signers is the whole set.
    fn min_signers(&self) -> u16 {
        u16::try_from(self.participants.len()).unwrap_or(u16::MAX)
    }

    /// λ_i(S) / λ_i(T).
    fn operator_factor(&self, op: OperatorId) -> Result<k256::Scalar, SigningError> {
        let id = operator_identifier(op);
        let in_s = lagrange(&self.operators, id)?;
        let in_t = lagrange(&self.participants, id)?;
        Ok(in_s * invert(in_t))
    }

    /// What operator `op` hands stock FROST for its secret share s: λ(S)/λ(T)·(±s + t).
    pub(crate) fn operator_scalar(
        &self,
        op: OperatorId,
        s: k256::Scalar,
    ) -> Result<k256::Scalar, SigningError> {
        Ok(self.operator_factor(op)? * (self.parity * s + self.tweak))
    }

    /// The matching verifying share: λ(S)/λ(T)·(±P + t·G).
    pub(crate) fn operator_point(
        &self,
        op: OperatorId,
        public: &PublicKey,
    ) -> Result<k256::ProjectivePoint, SigningError> {
        let tweaked =
            to_point(public) * self.parity + k256::ProjectivePoint::GENERATOR * self.tweak;
        Ok(tweaked * self.operator_factor(op)?)
    }

    /// What the user hands stock FROST for its key s_u: ±s_u / λ_u(T) (no tweak).
    pub(crate) fn user_scalar(&self, s: k256::Scalar) -> k256::Scalar {
        s * self.parity * self.user_factor()
    }

    /// The matching verifying share: ±P_u / λ_u(T).
    pub(crate) fn user_point(&self, public: &PublicKey) -> k256::ProjectivePoint {
        to_point(public) * (self.parity * self.user_factor())
    }

    /// 1 / λ_u(T).
    fn user_factor(&self) -> k256::Scalar {
        // The user is always in T and T has distinct ids, so the coefficient exists and is non-zero.
        invert(lagrange(&self.participants, user_identifier()).expect("invariant: user ∈ T"))
    }

    fn sign(
        &self,
        id: frost::Identifier,
        signing_share: k256::Scalar,
        verifying_share: k256::ProjectivePoint,
        nonce: &SecretNonce,
    ) -> Result<SignatureShare, SigningError> {
        let nonces = frost::round1::SigningNonces::deserialize(&nonce.0)
            .map_err(|e| malformed("secret nonce", e.to_string()))?;
        let key_package = frost::keys::KeyPackage::new(
            id,
            frost::keys::SigningShare::new(signing_share),
            frost::keys::VerifyingShare::new(verifying_share),
            self.verifying_key,
            self.min_signers(),
        );
        // The key package already holds the tweaked key and share: plain round 2 against Q.
        let share = frost::round2::sign(&self.package, &nonces, &key_package)
            .map_err(|e| malformed("round 2", e.to_string()))?;
        let bytes: [u8; 32] = share
            .serialize()
            .try_into()
            .map_err(|_| malformed("signature share", "not 32 bytes"))?;
        Ok(SignatureShare(bytes))
    }

    fn map_aggregate_error(&self, e: frost::Error, job: &SigningJob) -> SigningError {
        match e {
            frost_core::Error::InvalidSignatureShare { culprits } => {
                let mut named: Vec<Signer> =
                    culprits.iter().map(|id| signer_of(*id, job)).collect();
                named.sort();
                SigningError::InvalidShare { culprits: named }
            }
            frost_core::Error::InvalidSignature => SigningError::InvalidSignature,
            other => malformed("aggregate", other.to_string()),
        }
    }
}

/// Maps a FROST identifier of this job back to its signer. `aggregate_custom` only reports ids of
/// the signing package, i.e. the job's operators or the user, so "not an operator" means the user.
pub(crate) fn signer_of(id: frost::Identifier, job: &SigningJob) -> Signer {
    job.operator_commitments
        .keys()
        .find(|op| operator_identifier(**op) == id)
        .map_or(Signer::User, |op| Signer::Operator(*op))
}

/// (±1, t) for Y: −1 if Y's y coordinate is odd, and the BIP341 key-path tweak of x(Y).
fn taproot_parity_and_tweak(verifying_key: &PublicKey) -> (k256::Scalar, k256::Scalar) {
    let (x_only, parity) = verifying_key.x_only_public_key();
    let sign = match parity {
        bitcoin::secp256k1::Parity::Even => k256::Scalar::ONE,
        bitcoin::secp256k1::Parity::Odd => -k256::Scalar::ONE,
    };
    let t = bitcoin::taproot::TapTweakHash::from_key_and_tweak(x_only, None).to_scalar();
    let t = Scalar::from_bytes(t.to_be_bytes())
        .expect("invariant: a secp256k1 Scalar is below the group order");
    (sign, t.to_k256())
}

fn lagrange(
    set: &BTreeSet<frost::Identifier>,
    id: frost::Identifier,
) -> Result<k256::Scalar, SigningError> {
    frost_core::compute_lagrange_coefficient(set, None, id)
        .map_err(|e| malformed("signer set", e.to_string()))
}

/// Inverse of a Lagrange coefficient at 0 over distinct non-zero ids: never zero.
fn invert(s: k256::Scalar) -> k256::Scalar {
    Option::<k256::Scalar>::from(s.invert())
        .expect("invariant: Lagrange coefficients at 0 are non-zero")
}

/// A valid `PublicKey` is a valid non-identity k256 point.
pub(crate) fn to_point(pk: &PublicKey) -> k256::ProjectivePoint {
    k256::PublicKey::from_sec1_bytes(&pk.serialize())
        .expect("invariant: secp256k1 PublicKey is a valid SEC1 point")
        .to_projective()
}

pub(crate) fn parse_commitment(
    c: &NonceCommitment,
) -> Result<frost::round1::SigningCommitments, SigningError> {
    frost::round1::SigningCommitments::deserialize(&c.0)
        .map_err(|e| malformed("nonce commitment", e.to_string()))
}

/// A share that is not even a scalar is that signer's fault.
pub(crate) fn parse_share(
    share: &SignatureShare,
    who: Signer,
) -> Result<frost::round2::SignatureShare, SigningError> {
    frost::round2::SignatureShare::deserialize(&share.0).map_err(|_| SigningError::InvalidShare {
        culprits: vec![who],
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }

    fn op_ids(ids: &[u16]) -> Vec<OperatorId> {
        ids.iter().map(|&i| OperatorId(i)).collect()
    }

    /// Everything a signing round produced, before aggregation (so tests can tamper with it).
    pub(crate) struct Round {
        pub job: SigningJob,
        pub operator_shares: BTreeMap<OperatorId, SignatureShare>,
        pub user_share: SignatureShare,
    }

    /// Rounds 1 and 2 for `signers` (indices into `keyshares`) plus the user.
    pub(crate) fn sign_round(
        keyshares: &BTreeMap<OperatorId, KeyShare>,
        signers: &[OperatorId],
        user_sk: &SecretKey,
        message: [u8; 32],
        rng: &mut ChaCha20Rng,
    ) -> Result<Round, SigningError> {
        let any = keyshares.values().next().expect("at least one keyshare");
        let user_pk = PublicKey::from_secret_key(secp(), user_sk);
        let mut nonces = BTreeMap::new();
        let mut operator_commitments = BTreeMap::new();
        for op in signers {
            let (n, c) = commit(&keyshares[op].secret_share, rng);
            nonces.insert(*op, n);
            operator_commitments.insert(*op, c);
        }
        let (user_nonce, user_commitment) = commit(&Scalar::from_secret_key(user_sk), rng);
        let job = SigningJob {
            message,
            verifying_key: point_add(&user_pk, &any.public_key).expect("Y not at infinity"),
            user_public_key: user_pk,
            operator_commitments,
            user_commitment,
        };
        let mut operator_shares = BTreeMap::new();
        for op in signers {
            operator_shares.insert(
                *op,
                sign_as_operator(&job, *op, &keyshares[op], &nonces[op])?,
            );
        }
        let user_share = sign_as_user(&job, user_sk, &user_nonce)?;
        Ok(Round {
            job,
            operator_shares,
            user_share,
        })
    }

    pub(crate) fn finish(
        round: &Round,
        public_shares: &BTreeMap<OperatorId, PublicKey>,
    ) -> Result<bitcoin::secp256k1::schnorr::Signature, SigningError> {
        aggregate(
            &round.job,
            &round.operator_shares,
            &round.user_share,
            public_shares,
        )
    }

    pub(crate) fn dealer(n: u16, t: u16, rng: &mut ChaCha20Rng) -> BTreeMap<OperatorId, KeyShare> {
        let secret = Scalar::random(rng);
        KeyShare::deal(&secret, n, t, rng)
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(i, k)| (OperatorId(i as u16), k))
            .collect()
    }

    fn user_key(rng: &mut ChaCha20Rng) -> SecretKey {
        Scalar::random(rng).to_secret_key().unwrap()
    }

    #[test]
    fn crypto_signing_user_identifier_vector() {
        assert_eq!(
            hex::encode(user_identifier().serialize()),
            "687da64d52a16c6fc792c6fc831ec1afa797a91f77549668a6b5421f12c1ac77"
        );
        // HID sanity check from vectors §4.4 (not used by Spark).
        assert_eq!(
            hex::encode(frost::Identifier::derive(b"operator").unwrap().serialize()),
            "91ea440784b3cf1dc5e76e23241b3029852b8ff0cd960a351a2f33b77a937da4"
        );
    }

    /// vectors §4.4 TestIndexToIdentifier, for every index an `OperatorId(u16)` can hold.
    #[test]
    fn crypto_signing_operator_identifier_vector() {
        let cases: [(u16, &str); 8] = [
            (
                0,
                "0000000000000000000000000000000000000000000000000000000000000001",
            ),
            (
                1,
                "0000000000000000000000000000000000000000000000000000000000000002",
            ),
            (
                2,
                "0000000000000000000000000000000000000000000000000000000000000003",
            ),
            (
                15,
                "0000000000000000000000000000000000000000000000000000000000000010",
            ),
            (
                255,
                "0000000000000000000000000000000000000000000000000000000000000100",
            ),
            (
                256,
                "0000000000000000000000000000000000000000000000000000000000000101",
            ),
            (
                1023,
                "0000000000000000000000000000000000000000000000000000000000000400",
            ),
            (
                65535,
                "0000000000000000000000000000000000000000000000000000000000010000",
            ),
        ];
        for (index, want) in cases {
            let id = operator_identifier(OperatorId(index));
            assert_eq!(hex::encode(id.serialize()), want, "index {index}");
            if index < u16::MAX {
                assert_eq!(id, frost::Identifier::try_from(index + 1).unwrap());
            }
        }
    }

    /// t operators + the user → one BIP340 signature valid for the BIP341 output key of
    /// Y = P_user + P_SE; several seeds and signer subsets cover the even/odd-Y branches.
    #[test]
    fn crypto_signing_user_and_t_operators_verify() {
        use bitcoin::key::TapTweak;
        for seed in 0..8u64 {
            let mut r = rng(seed);
            let keyshares = dealer(5, 3, &mut r);
            let user_sk = user_key(&mut r);
            let signers = match seed % 3 {
                0 => op_ids(&[0, 1, 2]),
                1 => op_ids(&[1, 3, 4]),
                _ => op_ids(&[0, 2, 4]),
            };
            let msg = [seed as u8; 32];
            let round = sign_round(&keyshares, &signers, &user_sk, msg, &mut r).unwrap();
            let sig = finish(&round, &keyshares[&OperatorId(0)].public_shares).unwrap();
            assert!(verify(&round.job.verifying_key, &msg, &sig));
            let (internal, _) = round.job.verifying_key.x_only_public_key();
            let (output, _) = internal.tap_tweak(secp(), None);
            secp()
                .verify_schnorr(
                    &sig,
                    &Message::from_digest(msg),
                    &output.to_x_only_public_key(),
                )
                .expect("libsecp256k1 accepts the signature for the output key");
            assert!(!verify(&round.job.verifying_key, &[0xee; 32], &sig));
        }
    }

    /// The user's share is mandatory: an attacker holding t operator shares but not sk_user
    /// cannot complete a signature for Y, and the aggregate names the user share as bad.
    #[test]
    fn crypto_signing_operators_without_user_fail() {
        let mut r = rng(11);
        let keyshares = dealer(5, 3, &mut r);
        let user_sk = user_key(&mut r);
        let signers = op_ids(&[0, 1, 2]);
        let mut round = sign_round(&keyshares, &signers, &user_sk, [1; 32], &mut r).unwrap();
        // Forge a user share with a wrong key: same commitments, but sk' instead of sk_user.
        let wrong_sk = user_key(&mut r);
        let (wrong_nonce, wrong_commitment) = commit(&Scalar::from_secret_key(&wrong_sk), &mut r);
        let mut forged_job = round.job.clone();
        forged_job.user_public_key = PublicKey::from_secret_key(secp(), &wrong_sk);
        forged_job.user_commitment = wrong_commitment.clone();
        round.job.user_commitment = wrong_commitment;
        // Operators re-sign for the job carrying the attacker's commitment.
        let mut op_nonces = BTreeMap::new();
        for op in &signers {
            let (n, c) = commit(&keyshares[op].secret_share, &mut r);
            op_nonces.insert(*op, n);
            round.job.operator_commitments.insert(*op, c.clone());
            forged_job.operator_commitments.insert(*op, c);
        }
        for op in &signers {
            round.operator_shares.insert(
                *op,
                sign_as_operator(&round.job, *op, &keyshares[op], &op_nonces[op]).unwrap(),
            );
        }
        round.user_share = sign_as_user(&forged_job, &wrong_sk, &wrong_nonce).unwrap();
        assert_eq!(
            finish(&round, &keyshares[&OperatorId(0)].public_shares),
            Err(SigningError::InvalidShare {
                culprits: vec![Signer::User]
            })
        );
        // And the honest entry point refuses a key that does not match the job's P_user.
        assert_eq!(
            sign_as_user(&round.job, &wrong_sk, &wrong_nonce),
            Err(SigningError::NotASigner(Signer::User))
        );
    }

    /// A plain t-of-n FROST signature by the operators over P_SE alone is valid for P_SE but not
    /// for Y = P_user + P_SE.
    #[test]
    fn crypto_signing_plain_operator_signature_does_not_verify_for_y() {
        let mut r = rng(12);
        let keyshares = dealer(5, 3, &mut r);
        let user_sk = user_key(&mut r);
        let p_se = keyshares[&OperatorId(0)].public_key;
        let y = point_add(&p_se, &PublicKey::from_secret_key(secp(), &user_sk)).unwrap();
        let vk = frost::VerifyingKey::new(to_point(&p_se));
        let signers = op_ids(&[0, 2, 3]);
        let mut packages = BTreeMap::new();
        let mut nonces = BTreeMap::new();
        let mut commitments = BTreeMap::new();
        for op in &signers {
            let ks = &keyshares[op];
            let id = operator_identifier(*op);
            let kp = frost::keys::KeyPackage::new(
                id,
                frost::keys::SigningShare::new(ks.secret_share.to_k256()),
                frost::keys::VerifyingShare::new(to_point(&ks.public_shares[op])),
                vk,
                3,
            );
            let (n, c) = frost::round1::commit(kp.signing_share(), &mut r);
            packages.insert(id, kp);
            nonces.insert(id, n);
            commitments.insert(id, c);
        }
        let msg = [2u8; 32];
        let package = frost::SigningPackage::new(commitments, &msg);
        let shares: BTreeMap<_, _> = packages
            .iter()
            .map(|(id, kp)| {
                (
                    *id,
                    frost::round2::sign_with_tweak(&package, &nonces[id], kp, None).unwrap(),
                )
            })
            .collect();
        let vshares = keyshares[&OperatorId(0)]
            .public_shares
            .iter()
            .map(|(op, p)| {
                (
                    operator_identifier(*op),
                    frost::keys::VerifyingShare::new(to_point(p)),
                )
            })
            .collect();
        let pkp = frost::keys::PublicKeyPackage::new(vshares, vk, Some(3));
        let sig = frost::aggregate_with_tweak(&package, &shares, &pkp, None).unwrap();
        let sig =
            bitcoin::secp256k1::schnorr::Signature::from_slice(&sig.serialize().unwrap()).unwrap();
        assert!(verify(&p_se, &msg, &sig), "control: valid for P_SE alone");
        assert!(!verify(&y, &msg, &sig), "not valid for Y");
    }

    /// Fewer than t operators: every operator refuses (WrongSignerCount); and even operators that
    /// were lied to about t cannot produce a valid signature (aggregate fails, nobody to blame).
    #[test]
    fn crypto_signing_fewer_than_t_operators_rejected() {
        let mut r = rng(13);
        let keyshares = dealer(5, 3, &mut r);
        let user_sk = user_key(&mut r);
        let too_few = op_ids(&[1, 4]);
        assert_eq!(
            sign_round(&keyshares, &too_few, &user_sk, [3; 32], &mut r).err(),
            Some(SigningError::WrongSignerCount {
                expected: 3,
                found: 2
            })
        );
        let too_many = op_ids(&[0, 1, 2, 3]);
        assert_eq!(
            sign_round(&keyshares, &too_many, &user_sk, [3; 32], &mut r).err(),
            Some(SigningError::WrongSignerCount {
                expected: 3,
                found: 4
            })
        );
        let mut fooled = keyshares.clone();
        for ks in fooled.values_mut() {
            ks.threshold = 2;
        }
        let round = sign_round(&fooled, &too_few, &user_sk, [3; 32], &mut r).unwrap();
        assert_eq!(
            finish(&round, &keyshares[&OperatorId(0)].public_shares),
            Err(SigningError::InvalidSignature)
        );
    }

    /// The coordinator of an operator-first signing checks each share alone (no user share yet)
    /// and names the operator whose share is wrong.
    #[test]
    fn crypto_signing_single_share_check_names_the_bad_operator() {
        let mut r = rng(15);
        let keyshares = dealer(5, 3, &mut r);
        let user_sk = user_key(&mut r);
        let round = sign_round(&keyshares, &op_ids(&[1, 2, 4]), &user_sk, [5; 32], &mut r).unwrap();
        let public = &keyshares[&OperatorId(0)].public_shares;
        for (op, share) in &round.operator_shares {
            assert_eq!(verify_operator_share(&round.job, *op, share, &public[op]), Ok(()));
        }
        let mut bad = round.operator_shares[&OperatorId(2)];
        bad.0 = Scalar(bad.0).add(&Scalar::from_u32(1)).0;
        assert_eq!(
            verify_operator_share(&round.job, OperatorId(2), &bad, &public[&OperatorId(2)]),
            Err(SigningError::InvalidShare { culprits: vec![Signer::Operator(OperatorId(2))] })
        );
        // A good share checked against another operator's public share is not accepted either.
        let good = round.operator_shares[&OperatorId(1)];
        assert!(verify_operator_share(&round.job, OperatorId(1), &good, &public[&OperatorId(4)]).is_err());
    }

    #[test]
    fn crypto_signing_corrupted_operator_share_named() {
        let mut r = rng(14);
        let keyshares = dealer(5, 3, &mut r);
        let user_sk = user_key(&mut r);
        let mut round =
            sign_round(&keyshares, &op_ids(&[0, 2, 4]), &user_sk, [4; 32], &mut r).unwrap();
        let public = keyshares[&OperatorId(0)].public_shares.clone();
        let bump = |s: &mut SignatureShare| {
            s.0 = Scalar(s.0).add(&Scalar::from_u32(1)).0;
        };
        bump(round.operator_shares.get_mut(&OperatorId(2)).unwrap());
        assert_eq!(
            finish(&round, &public),
            Err(SigningError::InvalidShare {
                culprits: vec![Signer::Operator(OperatorId(2))]
            })
        );
        bump(&mut round.user_share);
        bump(round.operator_shares.get_mut(&OperatorId(4)).unwrap());
        assert_eq!(
            finish(&round, &public),
            Err(SigningError::InvalidShare {
                culprits: vec![
                    Signer::Operator(OperatorId(2)),
                    Signer::Operator(OperatorId(4)),
                    Signer::User
                ]
            })
        );
        // A share that is not a scalar at all (>= n) is blamed without running FROST.
        round
            .operator_shares
            .insert(OperatorId(0), SignatureShare([0xff; 32]));
        assert_eq!(
            finish(&round, &public),
            Err(SigningError::InvalidShare {
                culprits: vec![Signer::Operator(OperatorId(0))]
            })
        );
    }

    #[test]
    fn crypto_signing_job_checks() {
        let mut r = rng(15);
        let keyshares = dealer(3, 2, &mut r);
        let user_sk = user_key(&mut r);
        let round = sign_round(&keyshares, &op_ids(&[0, 1]), &user_sk, [5; 32], &mut r).unwrap();
        let (nonce, _) = commit(&keyshares[&OperatorId(2)].secret_share, &mut r);
        assert_eq!(
            sign_as_operator(
                &round.job,
                OperatorId(2),
                &keyshares[&OperatorId(2)],
                &nonce
            ),
            Err(SigningError::NotASigner(Signer::Operator(OperatorId(2))))
        );
        // A coordinator cannot make an operator sign for a foreign Y.
        let mut foreign = round.job.clone();
        foreign.verifying_key = PublicKey::from_secret_key(secp(), &user_sk);
        let (nonce0, _) = commit(&keyshares[&OperatorId(0)].secret_share, &mut r);
        assert!(matches!(
            sign_as_operator(&foreign, OperatorId(0), &keyshares[&OperatorId(0)], &nonce0),
            Err(SigningError::Malformed {
                what: "verifying_key",
                ..
            })
        ));
        // A nonce that does not belong to the job's commitment is refused by FROST.
        assert!(matches!(
            sign_as_operator(
                &round.job,
                OperatorId(0),
                &keyshares[&OperatorId(0)],
                &nonce0
            ),
            Err(SigningError::Malformed { .. })
        ));
        let mut garbage = round.job.clone();
        garbage.user_commitment = NonceCommitment(vec![1, 2, 3]);
        assert!(matches!(
            sign_as_user(&garbage, &user_sk, &nonce0),
            Err(SigningError::Malformed { .. })
        ));
        let mut extra = round.operator_shares.clone();
        extra.remove(&OperatorId(1));
        extra.insert(OperatorId(2), round.operator_shares[&OperatorId(1)]);
        assert_eq!(
            aggregate(
                &round.job,
                &extra,
                &round.user_share,
                &keyshares[&OperatorId(0)].public_shares
            ),
            Err(SigningError::NotASigner(Signer::Operator(OperatorId(2))))
        );
    }

    #[test]
    fn crypto_signing_deterministic() {
        let run = || {
            let mut r = rng(99);
            let keyshares = dealer(5, 3, &mut r);
            let user_sk = user_key(&mut r);
            let round =
                sign_round(&keyshares, &op_ids(&[0, 1, 3]), &user_sk, [6; 32], &mut r).unwrap();
            finish(&round, &keyshares[&OperatorId(0)].public_shares)
                .unwrap()
                .serialize()
        };
        assert_eq!(run(), run());
        let mut r1 = rng(1);
        let mut r2 = rng(1);
        let s = Scalar::from_u32(42);
        assert_eq!(commit(&s, &mut r1).1, commit(&s, &mut r2).1);
    }

    /// spark-protocol §2.5 end to end with a dealer key: sender picks e, δ = sk_old − e is
    /// VSS-split, every operator validates and applies its share; then e + t operators sign for the
    /// unchanged Y, while sk_old + t operators (new shares) no longer can.
    #[test]
    fn crypto_signing_statechain_transfer() {
        let mut r = rng(16);
        let mut keyshares = dealer(5, 3, &mut r);
        transfer_and_check(&mut keyshares, &mut r);
    }

    /// Shared by the dealer and DKG transfer tests.
    pub(crate) fn transfer_and_check(
        keyshares: &mut BTreeMap<OperatorId, KeyShare>,
        r: &mut ChaCha20Rng,
    ) {
        let n = keyshares.len() as u16;
        let t = keyshares[&OperatorId(0)].threshold;
        let sk_old = user_key(r);
        let y = point_add(
            &PublicKey::from_secret_key(secp(), &sk_old),
            &keyshares[&OperatorId(0)].public_key,
        )
        .unwrap();
        let signers = op_ids(&(0..t).collect::<Vec<_>>());
        let before = sign_round(keyshares, &signers, &sk_old, [7; 32], r).unwrap();
        assert!(finish(&before, &keyshares[&OperatorId(0)].public_shares).is_ok());

        let e = user_key(r);
        let delta = Scalar::from_secret_key(&sk_old).sub(&Scalar::from_secret_key(&e));
        let vss_shares = vss::split_with_proofs(&delta, t, n, r).unwrap();
        let pubkey_shares_tweak: BTreeMap<OperatorId, PublicKey> = vss_shares
            .iter()
            .enumerate()
            .map(|(i, s)| (OperatorId(i as u16), base_mul(&s.share).unwrap()))
            .collect();
        let old = keyshares.clone();
        for (op, ks) in keyshares.iter_mut() {
            let mine = &vss_shares[usize::from(op.0)];
            assert_eq!(mine.x, op.share_x());
            vss::validate_share(mine).unwrap();
            ks.apply_tweak(*op, &mine.share, &pubkey_shares_tweak, &mine.proofs[0])
                .unwrap();
        }
        let p_se_new = keyshares[&OperatorId(0)].public_key;
        assert_eq!(
            point_add(&PublicKey::from_secret_key(secp(), &e), &p_se_new),
            Some(y),
            "Y unchanged"
        );
        assert!(keyshares
            .values()
            .all(|k| k.public_shares == keyshares[&OperatorId(0)].public_shares));

        // The new owner e signs with any t operators.
        let other_signers = op_ids(&((n - t)..n).collect::<Vec<_>>());
        for s in [&signers, &other_signers] {
            let round = sign_round(keyshares, s, &e, [8; 32], r).unwrap();
            assert_eq!(round.job.verifying_key, y);
            let sig = finish(&round, &keyshares[&OperatorId(0)].public_shares).unwrap();
            assert!(verify(&y, &[8; 32], &sig));
        }
        // The old owner with the new shares: sk_old·G + P_SE' is a different key, so whatever they
        // sign together is not a signature for Y.
        let stale = sign_round(keyshares, &signers, &sk_old, [9; 32], r).unwrap();
        assert_ne!(stale.job.verifying_key, y);
        let stale_sig = finish(&stale, &keyshares[&OperatorId(0)].public_shares).unwrap();
        assert!(!verify(&y, &[9; 32], &stale_sig));
        // Claiming Y with sk_old: operators refuse (Y != sk_old·G + P_SE'); operators tricked into
        // believing the old P_SE sign, but the new shares and sk_old do not add up to Y's key.
        let mut mixed = keyshares.clone();
        for ks in mixed.values_mut() {
            ks.public_key = old[&OperatorId(0)].public_key; // lie so the Y check passes
        }
        let round = sign_round(&mixed, &signers, &sk_old, [9; 32], r).unwrap();
        assert_eq!(round.job.verifying_key, y);
        let (nonce, _) = commit(&keyshares[&OperatorId(0)].secret_share, r);
        assert!(matches!(
            sign_as_operator(
                &round.job,
                OperatorId(0),
                &keyshares[&OperatorId(0)],
                &nonce
            ),
            Err(SigningError::Malformed {
                what: "verifying_key",
                ..
            })
        ));
        assert!(finish(&round, &keyshares[&OperatorId(0)].public_shares).is_err());
    }

    #[test]
    fn crypto_signing_apply_tweak_rejects_inconsistent_input() {
        let mut r = rng(17);
        let keyshares = dealer(3, 2, &mut r);
        let me = OperatorId(1);
        let mut ks = keyshares[&me].clone();
        let delta = Scalar::random(&mut r);
        let shares = vss::split_with_proofs(&delta, 2, 3, &mut r).unwrap();
        let tweak: BTreeMap<OperatorId, PublicKey> = shares
            .iter()
            .enumerate()
            .map(|(i, s)| (OperatorId(i as u16), base_mul(&s.share).unwrap()))
            .collect();
        // Key sets differ.
        let mut short = tweak.clone();
        short.remove(&OperatorId(2));
        assert!(ks
            .apply_tweak(me, &shares[1].share, &short, &shares[1].proofs[0])
            .is_err());
        assert_eq!(ks, keyshares[&me]);
        // My share does not match my public tweak.
        assert!(ks
            .apply_tweak(me, &shares[0].share, &tweak, &shares[0].proofs[0])
            .is_err());
        assert_eq!(ks, keyshares[&me]);
        // Public tweaks that do not interpolate to δ·G.
        let wrong_commitment = base_mul(&Scalar::random(&mut r)).unwrap();
        assert!(ks
            .apply_tweak(me, &shares[1].share, &tweak, &wrong_commitment)
            .is_err());
        assert_eq!(ks, keyshares[&me]);
        ks.apply_tweak(me, &shares[1].share, &tweak, &shares[1].proofs[0])
            .unwrap();
        assert_eq!(
            ks.secret_share,
            keyshares[&me].secret_share.add(&shares[1].share)
        );
    }
}
