//! Spark FROST under an adaptor point (spark-protocol §2.4 `new_with_adaptor`, used by leaf swaps
//! v2, §4.3 step 3): the operators and the user sign as usual, but the adaptor point `T = a·G` is
//! folded into the group nonce. With the group commitment R₀ = Σ (D_j + ρ_j·E_j):
//!
//! ```text
//! R = R₀ + T                          (the nonce the finished signature will carry)
//! c = H_BIP340(x(R) ‖ x(Q) ‖ m)       (the challenge over R, not R₀)
//! z_j = ±(d_j + ρ_j·e_j) + λ_j·x_j·c  (− when R has an odd y, BIP340's even-nonce rule)
//! z = Σ z_j                           → pre-signature (x(R), z)
//! ```
//!
//! `z·G = ±R₀ + c·Q`, so `(x(R), z)` is not a BIP340 signature: it is one only once completed
//! with `a` (`z + a` for an even R, `z − a` for an odd one, [`adaptor::complete`]), and whoever
//! holds the pre-signature and the completed signature learns `a` ([`adaptor::extract`]).
//!
//! The shares are rescaled exactly as in `signing.rs` (Lagrange within each group, taproot tweak
//! on the operators only), and ρ_j are the stock binding factors of the signing package, so with
//! `T` left out everything here equals `signing::sign_as_*` / `signing::aggregate` bit for bit
//! (tested below). Stock frost has no hook to add `T` to R, so round 2 and the aggregation are
//! written out here on k256, with frost-core's `internals` for the binding factors.

use super::adaptor::PreSignature;
use super::curve::Scalar;
use super::signing::{
    malformed, operator_identifier, operator_inputs, to_point, user_identifier,
    KeyShare, SecretNonce, Session, SignatureShare, Signer, SigningError, SigningJob,
};
use super::{secp, PublicKey, SecretKey};
use crate::types::OperatorId;
use frost_core::Ciphersuite;
use frost_secp256k1_tr as frost;
use frost_secp256k1_tr::keys::EvenY;
use k256::elliptic_curve::point::AffineCoordinates;
use k256::elliptic_curve::PrimeField;
use std::collections::BTreeMap;

/// One job's adaptor session: the stock session plus everything `T` changes.
struct Adapted {
    session: Session,
    binding: frost_core::BindingFactorList<frost::Secp256K1Sha256TR>,
    /// R = R₀ + T.
    nonce: k256::ProjectivePoint,
    /// R has an odd y: every signer negates its nonces.
    negate_nonces: bool,
    /// −1 if Q has an odd y (the signers' shares are negated, as frost's `into_even_y`), else 1.
    key_sign: k256::Scalar,
    challenge: k256::Scalar,
}

impl Adapted {
    /// `adaptor` None is the stock signing, written out (tests compare it with `signing.rs`).
    fn new(session: Session, adaptor: Option<&PublicKey>) -> Result<Adapted, SigningError> {
        let q = session.verifying_key;
        let key_sign = if q.has_even_y() { k256::Scalar::ONE } else { -k256::Scalar::ONE };
        // The binding factors hash the (even-y) verifying key, as stock round 2 does after
        // `pre_sign`; T is not bound in them: it is fixed by the job before any nonce is used.
        let q_even = q.into_even_y(None);
        let binding = frost_core::compute_binding_factor_list(&session.package, &q_even, &[])
            .map_err(|e| malformed("binding factors", e.to_string()))?;
        let r0 = frost_core::compute_group_commitment(&session.package, &binding)
            .map_err(|e| malformed("group commitment", e.to_string()))?
            .to_element();
        let nonce = r0 + adaptor.map_or(k256::ProjectivePoint::IDENTITY, to_point);
        if nonce == k256::ProjectivePoint::IDENTITY {
            return Err(malformed("adaptor point", "R₀ + T is the point at infinity"));
        }
        let challenge = frost::Secp256K1Sha256TR::challenge(&nonce, &q_even, session.package.message())
            .map_err(|e| malformed("challenge", e.to_string()))?
            .to_scalar();
        let negate_nonces = bool::from(nonce.to_affine().y_is_odd());
        Ok(Adapted { session, binding, nonce, negate_nonces, key_sign, challenge })
    }

    fn binding_factor(&self, id: frost::Identifier) -> Result<k256::Scalar, SigningError> {
        let b = self.binding.get(&id).ok_or_else(|| malformed("binding factors", "signer not in the package"))?;
        let bytes: [u8; 32] = b.serialize().try_into().map_err(|_| malformed("binding factor", "not 32 bytes"))?;
        Option::from(k256::Scalar::from_repr(bytes.into())).ok_or_else(|| malformed("binding factor", "not a scalar"))
    }

    fn lambda(&self, id: frost::Identifier) -> Result<k256::Scalar, SigningError> {
        frost_core::derive_interpolating_value(&id, &self.session.package).map_err(|e| malformed("signer set", e.to_string()))
    }

    /// z_j = ±(d_j + ρ_j·e_j) + λ_j·(±x_j)·c.
    fn sign(&self, id: frost::Identifier, signing_share: k256::Scalar, nonce: &SecretNonce) -> Result<SignatureShare, SigningError> {
        let nonces = frost::round1::SigningNonces::deserialize(&nonce.0).map_err(|e| malformed("secret nonce", e.to_string()))?;
        let mine = self.session.package.signing_commitment(&id).ok_or_else(|| malformed("round 2", "the package has no commitment of mine"))?;
        if *nonces.commitments() != mine {
            return Err(malformed("round 2", "the nonce does not belong to my commitment in the package"));
        }
        let rho = self.binding_factor(id)?;
        let k = nonces.hiding().to_scalar() + nonces.binding().to_scalar() * rho;
        let k = if self.negate_nonces { -k } else { k };
        let z = k + self.lambda(id)? * self.key_sign * signing_share * self.challenge;
        Ok(SignatureShare(z.to_bytes().into()))
    }

    /// z_j·G == ±(D_j + ρ_j·E_j) + λ_j·(±X_j)·c.
    fn share_verifies(&self, id: frost::Identifier, z: &k256::Scalar, verifying_share: k256::ProjectivePoint) -> Result<bool, SigningError> {
        let c = self.session.package.signing_commitment(&id).ok_or_else(|| malformed("aggregate", "no commitment for a share"))?;
        let rho = self.binding_factor(id)?;
        let r_j = c.hiding().value() + c.binding().value() * rho;
        let r_j = if self.negate_nonces { -r_j } else { r_j };
        let want = r_j + verifying_share * (self.lambda(id)? * self.key_sign * self.challenge);
        Ok(k256::ProjectivePoint::GENERATOR * z == want)
    }
}

/// A share that is not even a scalar (≥ n) is that signer's fault.
fn scalar_share(share: &SignatureShare, who: Signer) -> Result<k256::Scalar, SigningError> {
    Option::from(k256::Scalar::from_repr(share.0.into())).ok_or(SigningError::InvalidShare { culprits: vec![who] })
}

/// Operator round 2 under adaptor point `adaptor` (same checks as `signing::sign_as_operator`).
pub fn sign_as_operator(job: &SigningJob, me: OperatorId, share: &KeyShare, nonce: &SecretNonce, adaptor: &PublicKey) -> Result<SignatureShare, SigningError> {
    let (session, signing_share, _) = operator_inputs(job, me, share)?;
    Adapted::new(session, Some(adaptor))?.sign(operator_identifier(me), signing_share, nonce)
}

/// User round 2 under adaptor point `adaptor` (same checks as `signing::sign_as_user`).
pub fn sign_as_user(job: &SigningJob, user_secret: &SecretKey, nonce: &SecretNonce, adaptor: &PublicKey) -> Result<SignatureShare, SigningError> {
    if PublicKey::from_secret_key(secp(), user_secret) != job.user_public_key {
        return Err(SigningError::NotASigner(Signer::User));
    }
    let session = Session::new(job)?;
    let signing_share = session.user_scalar(Scalar::from_secret_key(user_secret).to_k256());
    Adapted::new(session, Some(adaptor))?.sign(user_identifier(), signing_share, nonce)
}

/// Aggregates the shares of a job signed under `adaptor` into its pre-signature, checked with
/// [`super::adaptor::verify`]; every bad share is named (identifiable abort, as `aggregate`).
pub fn aggregate(
    job: &SigningJob,
    operator_shares: &BTreeMap<OperatorId, SignatureShare>,
    user_share: &SignatureShare,
    operator_public_shares: &BTreeMap<OperatorId, PublicKey>,
    adaptor: &PublicKey,
) -> Result<PreSignature, SigningError> {
    let a = Adapted::new(Session::new(job)?, Some(adaptor))?;
    if operator_shares.len() != job.operator_commitments.len() {
        return Err(SigningError::WrongSignerCount { expected: job.operator_commitments.len(), found: operator_shares.len() });
    }
    let mut z = k256::Scalar::ZERO;
    let mut culprits = Vec::new();
    for (op, share) in operator_shares {
        if !job.operator_commitments.contains_key(op) {
            return Err(SigningError::NotASigner(Signer::Operator(*op)));
        }
        let public = operator_public_shares.get(op).ok_or_else(|| malformed("operator_public_shares", format!("missing {op}")))?;
        let parsed = scalar_share(share, Signer::Operator(*op))?;
        if !a.share_verifies(operator_identifier(*op), &parsed, a.session.operator_point(*op, public)?)? {
            culprits.push(Signer::Operator(*op));
        }
        z += parsed;
    }
    let parsed = scalar_share(user_share, Signer::User)?;
    if !a.share_verifies(user_identifier(), &parsed, a.session.user_point(&job.user_public_key))? {
        culprits.push(Signer::User);
    }
    if !culprits.is_empty() {
        culprits.sort();
        return Err(SigningError::InvalidShare { culprits });
    }
    z += parsed;
    let r: [u8; 32] = a.nonce.to_affine().x().into();
    let pre = PreSignature { r, s: Scalar(z.to_bytes().into()) };
    let (q, _) = output_key(&job.verifying_key);
    super::adaptor::verify(&pre, &job.message, &q, adaptor).map_err(|_| SigningError::InvalidSignature)?;
    Ok(pre)
}

/// Checks one operator's share of a job signed under `adaptor` on its own (the coordinator's
/// identifiable abort before the user has signed, as `signing::verify_operator_share`).
pub fn verify_operator_share(job: &SigningJob, op: OperatorId, share: &SignatureShare, public_share: &PublicKey, adaptor: &PublicKey) -> Result<(), SigningError> {
    if !job.operator_commitments.contains_key(&op) {
        return Err(SigningError::NotASigner(Signer::Operator(op)));
    }
    let a = Adapted::new(Session::new(job)?, Some(adaptor))?;
    let parsed = scalar_share(share, Signer::Operator(op))?;
    if a.share_verifies(operator_identifier(op), &parsed, a.session.operator_point(op, public_share)?)? {
        Ok(())
    } else {
        Err(SigningError::InvalidShare { culprits: vec![Signer::Operator(op)] })
    }
}

/// The BIP341 output key (x-only) of Y, the key a completed pre-signature verifies under.
pub fn output_key(verifying_key: &PublicKey) -> (bitcoin::XOnlyPublicKey, bitcoin::key::Parity) {
    use bitcoin::key::TapTweak;
    let (internal, _) = verifying_key.x_only_public_key();
    let (q, parity) = internal.tap_tweak(secp(), None);
    (q.to_x_only_public_key(), parity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::adaptor::{self, AdaptorError};
    use crate::crypto::signing::tests::{dealer, rng, sign_round};
    use crate::crypto::signing::{self, commit};
    use bitcoin::secp256k1::{schnorr, Message};
    use rand_chacha::ChaCha20Rng;

    struct AdaptedRound {
        job: SigningJob,
        operator_shares: BTreeMap<OperatorId, SignatureShare>,
        user_share: SignatureShare,
        public: BTreeMap<OperatorId, PublicKey>,
    }

    /// Rounds 1 and 2 of t operators + the user under `t_point` (None: the stock signing).
    fn adapted_round(seed: u64, signers: &[u16], msg: [u8; 32], t_point: Option<&PublicKey>) -> AdaptedRound {
        let mut r = rng(seed);
        let keyshares = dealer(5, 3, &mut r);
        let user = Scalar::random(&mut r).to_secret_key().unwrap();
        let signers: Vec<OperatorId> = signers.iter().map(|i| OperatorId(*i)).collect();
        // Stock round 1 + job, from the signing tests; then round 2 again, adapted.
        let round = sign_round(&keyshares, &signers, &user, msg, &mut rng(seed + 1000)).unwrap();
        let mut nonces = BTreeMap::new();
        let mut job = round.job.clone();
        let mut r1 = rng(seed + 2000);
        for op in &signers {
            let (n, c) = commit(&keyshares[op].secret_share, &mut r1);
            nonces.insert(*op, n);
            job.operator_commitments.insert(*op, c);
        }
        let (user_nonce, user_commitment) = commit(&Scalar::from_secret_key(&user), &mut r1);
        job.user_commitment = user_commitment;
        let operator_shares = signers
            .iter()
            .map(|op| {
                let s = match t_point {
                    Some(t) => sign_as_operator(&job, *op, &keyshares[op], &nonces[op], t),
                    None => signing::sign_as_operator(&job, *op, &keyshares[op], &nonces[op]),
                };
                (*op, s.unwrap())
            })
            .collect();
        let user_share = match t_point {
            Some(t) => sign_as_user(&job, &user, &user_nonce, t),
            None => signing::sign_as_user(&job, &user, &user_nonce),
        }
        .unwrap();
        AdaptedRound { job, operator_shares, user_share, public: keyshares[&OperatorId(0)].public_shares.clone() }
    }

    fn secret(seed: u64) -> (Scalar, PublicKey) {
        adaptor::new_secret(&mut rng(seed) as &mut ChaCha20Rng)
    }

    /// The FROST pre-signature under T is no BIP340 signature; completed with a it is, for the
    /// taproot output key of Y; and a is extracted from the pair. Seeds cover odd and even R and Q.
    #[test]
    fn adaptor_frost_pre_signature_verifies_only_once_completed() {
        let (mut odd_r, mut even_r) = (0, 0);
        for seed in 0..12u64 {
            let (a, t) = secret(seed + 500);
            let msg = [seed as u8 + 1; 32];
            let round = adapted_round(seed, &[0, 2, 4], msg, Some(&t));
            let pre = aggregate(&round.job, &round.operator_shares, &round.user_share, &round.public, &t).unwrap();
            let (q, _) = output_key(&round.job.verifying_key);
            let raw = schnorr::Signature::from_slice(&pre.to_bytes()).unwrap();
            assert!(secp().verify_schnorr(&raw, &Message::from_digest(msg), &q).is_err(), "seed {seed}: a pre-signature verified");
            assert!(!signing::verify(&round.job.verifying_key, &msg, &raw));
            adaptor::verify(&pre, &msg, &q, &t).unwrap();
            let sig = adaptor::complete(&pre, &a, &msg, &q).unwrap();
            assert!(signing::verify(&round.job.verifying_key, &msg, &sig), "seed {seed}: completed signature does not verify");
            assert_eq!(adaptor::extract(&pre, &sig, &t).unwrap(), a);
            if sig.serialize()[32..] == pre.s.add(&a).0 {
                even_r += 1;
            } else {
                odd_r += 1;
            }
        }
        assert!(odd_r > 0 && even_r > 0, "both nonce parities exercised ({odd_r} odd, {even_r} even)");
    }

    /// A wrong secret completes nothing; another point does not open the pre-signature.
    #[test]
    fn adaptor_frost_wrong_secret_refused() {
        let (_, t) = secret(1);
        let (b, u) = secret(2);
        let msg = [3u8; 32];
        let round = adapted_round(7, &[1, 2, 3], msg, Some(&t));
        let pre = aggregate(&round.job, &round.operator_shares, &round.user_share, &round.public, &t).unwrap();
        let (q, _) = output_key(&round.job.verifying_key);
        assert_eq!(adaptor::complete(&pre, &b, &msg, &q), Err(AdaptorError::WrongSecret));
        assert_eq!(adaptor::verify(&pre, &msg, &q, &u), Err(AdaptorError::InvalidPreSignature));
        // Aggregating the same shares as if signed under another point fails (no valid shares).
        assert!(matches!(aggregate(&round.job, &round.operator_shares, &round.user_share, &round.public, &u), Err(SigningError::InvalidShare { .. })));
    }

    /// Shares signed without T do not aggregate under T (and vice versa): the point is bound into
    /// every share through the challenge. A bumped share names its signer.
    #[test]
    fn adaptor_frost_shares_are_bound_to_the_point() {
        let (_, t) = secret(3);
        let msg = [4u8; 32];
        let plain = adapted_round(9, &[0, 1, 2], msg, None);
        assert!(matches!(aggregate(&plain.job, &plain.operator_shares, &plain.user_share, &plain.public, &t), Err(SigningError::InvalidShare { .. })));
        let adapted = adapted_round(9, &[0, 1, 2], msg, Some(&t));
        assert!(signing::aggregate(&adapted.job, &adapted.operator_shares, &adapted.user_share, &adapted.public).is_err());
        let mut bad = adapted.operator_shares.clone();
        let s = bad.get_mut(&OperatorId(1)).unwrap();
        s.0 = Scalar(s.0).add(&Scalar::from_u32(1)).0;
        assert_eq!(
            aggregate(&adapted.job, &bad, &adapted.user_share, &adapted.public, &t),
            Err(SigningError::InvalidShare { culprits: vec![Signer::Operator(OperatorId(1))] })
        );
        for (op, share) in &adapted.operator_shares {
            verify_operator_share(&adapted.job, *op, share, &adapted.public[op], &t).unwrap();
        }
        assert!(verify_operator_share(&adapted.job, OperatorId(1), &bad[&OperatorId(1)], &adapted.public[&OperatorId(1)], &t).is_err());
    }

    /// Without T the hand-written round 2 is the stock one bit for bit (so with T the only
    /// difference is R + T and the challenge over it), for operators and the user.
    #[test]
    fn adaptor_frost_without_a_point_equals_the_stock_shares() {
        for seed in 0..6u64 {
            let round = adapted_round(seed, &[0, 3, 4], [9; 32], None);
            let mut r1 = rng(seed + 2000);
            let mut r = rng(seed);
            let keyshares = dealer(5, 3, &mut r);
            let user = Scalar::random(&mut r).to_secret_key().unwrap();
            for op in [0u16, 3, 4] {
                let op = OperatorId(op);
                let (nonce, _) = commit(&keyshares[&op].secret_share, &mut r1);
                let (session, share, _) = operator_inputs(&round.job, op, &keyshares[&op]).unwrap();
                let ours = Adapted::new(session, None).unwrap().sign(operator_identifier(op), share, &nonce).unwrap();
                assert_eq!(ours, round.operator_shares[&op], "seed {seed} {op}");
            }
            let (user_nonce, _) = commit(&Scalar::from_secret_key(&user), &mut r1);
            let session = Session::new(&round.job).unwrap();
            let share = session.user_scalar(Scalar::from_secret_key(&user).to_k256());
            let ours = Adapted::new(session, None).unwrap().sign(user_identifier(), share, &user_nonce).unwrap();
            assert_eq!(ours, round.user_share, "seed {seed} user");
        }
    }

    #[test]
    fn adaptor_frost_operator_keeps_the_statechain_checks() {
        let (_, t) = secret(4);
        let mut r = rng(11);
        let keyshares = dealer(5, 3, &mut r);
        let user = Scalar::random(&mut r).to_secret_key().unwrap();
        let round = sign_round(&keyshares, &[OperatorId(0), OperatorId(1), OperatorId(2)], &user, [5; 32], &mut r).unwrap();
        let mut foreign = round.job.clone();
        foreign.verifying_key = PublicKey::from_secret_key(secp(), &user);
        let (nonce, _) = commit(&keyshares[&OperatorId(0)].secret_share, &mut r);
        assert!(matches!(sign_as_operator(&foreign, OperatorId(0), &keyshares[&OperatorId(0)], &nonce, &t), Err(SigningError::Malformed { what: "verifying_key", .. })));
        // A nonce that is not the one committed in the job is refused.
        assert!(matches!(sign_as_operator(&round.job, OperatorId(0), &keyshares[&OperatorId(0)], &nonce, &t), Err(SigningError::Malformed { .. })));
        let other = Scalar::random(&mut r).to_secret_key().unwrap();
        assert_eq!(sign_as_user(&round.job, &other, &nonce, &t), Err(SigningError::NotASigner(Signer::User)));
    }
}
