//! The operators' DKG (FROST Pedersen DKG, frost `keys::dkg`), batched: one run produces `count`
//! independent keyshares. Packages travel as opaque bytes through the simulated network.
//!
//! spark-protocol §2.3. frost-secp256k1-tr's `post_dkg` applies an unspendable TapTweak to the
//! group key (DEPENDENCIES.md §2): the resulting shares, public shares and group key are still
//! mutually consistent, and the group key is what we use as P_SE.
use super::signing::{operator_identifier, KeyShare};
use super::{PublicKey, Scalar};
use crate::types::OperatorId;
use frost_secp256k1_tr as frost;
use frost_secp256k1_tr::keys::dkg as fdkg;
use rand_core::{CryptoRng, RngCore};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DkgError {
    #[error("DKG {phase} failed: {detail}")]
    Failed { phase: &'static str, detail: String },
}

/// Round-1 secret state of one participant for a batch (volatile: a crash abandons the batch).
pub struct Round1Secret(pub Vec<frost_secp256k1_tr::keys::dkg::round1::SecretPackage>);
pub struct Round2Secret(pub Vec<frost_secp256k1_tr::keys::dkg::round2::SecretPackage>);

fn failed(phase: &'static str, detail: impl ToString) -> DkgError {
    DkgError::Failed {
        phase,
        detail: detail.to_string(),
    }
}

/// Returns my secret state and my round-1 package for each of the `count` keys (same to everyone).
pub fn part1<R: RngCore + CryptoRng>(
    me: OperatorId,
    n: u16,
    t: u16,
    count: usize,
    rng: &mut R,
) -> Result<(Round1Secret, Vec<Vec<u8>>), DkgError> {
    if me.0 >= n {
        return Err(failed(
            "part1",
            format!("{me} is not among the {n} operators"),
        ));
    }
    let id = operator_identifier(me);
    let mut secrets = Vec::with_capacity(count);
    let mut packages = Vec::with_capacity(count);
    for _ in 0..count {
        let (secret, package) = fdkg::part1(id, n, t, &mut *rng).map_err(|e| failed("part1", e))?;
        packages.push(package.serialize().map_err(|e| failed("part1", e))?);
        secrets.push(secret);
    }
    Ok((Round1Secret(secrets), packages))
}

/// `round1_from_others`: every other operator's round-1 packages, one per key.
/// Returns my round-2 state and, per recipient, its round-2 packages (one per key).
#[allow(clippy::type_complexity)] // the signature is the fixed module API
pub fn part2(
    secret: Round1Secret,
    round1_from_others: &BTreeMap<OperatorId, Vec<Vec<u8>>>,
) -> Result<(Round2Secret, BTreeMap<OperatorId, Vec<Vec<u8>>>), DkgError> {
    let count = secret.0.len();
    let round1 = parse_batch(
        "part2",
        round1_from_others,
        count,
        fdkg::round1::Package::deserialize,
    )?;
    let ids = identifiers(round1_from_others.keys());
    let mut secrets = Vec::with_capacity(count);
    let mut outgoing: BTreeMap<OperatorId, Vec<Vec<u8>>> = round1_from_others
        .keys()
        .map(|op| (*op, Vec::with_capacity(count)))
        .collect();
    for (secret, packages) in secret.0.into_iter().zip(&round1) {
        let (secret2, to_send) = fdkg::part2(secret, packages).map_err(|e| failed("part2", e))?;
        for (id, package) in to_send {
            let op = ids
                .get(&id)
                .ok_or_else(|| failed("part2", "round-2 package for an unknown identifier"))?;
            let bytes = package.serialize().map_err(|e| failed("part2", e))?;
            outgoing
                .get_mut(op)
                .expect("invariant: ids come from round1_from_others")
                .push(bytes);
        }
        secrets.push(secret2);
    }
    Ok((Round2Secret(secrets), outgoing))
}

/// `round2_to_me`: from every other operator, the packages addressed to me, one per key.
pub fn part3(
    me: OperatorId,
    secret: &Round2Secret,
    round1_from_others: &BTreeMap<OperatorId, Vec<Vec<u8>>>,
    round2_to_me: &BTreeMap<OperatorId, Vec<Vec<u8>>>,
) -> Result<Vec<KeyShare>, DkgError> {
    let count = secret.0.len();
    if !round1_from_others.keys().eq(round2_to_me.keys()) {
        return Err(failed("part3", "round-1 and round-2 senders differ"));
    }
    let round1 = parse_batch(
        "part3",
        round1_from_others,
        count,
        fdkg::round1::Package::deserialize,
    )?;
    let round2 = parse_batch(
        "part3",
        round2_to_me,
        count,
        fdkg::round2::Package::deserialize,
    )?;
    let mut ids = identifiers(round1_from_others.keys());
    ids.insert(operator_identifier(me), me);
    secret
        .0
        .iter()
        .zip(round1.iter().zip(&round2))
        .map(|(secret, (r1, r2))| {
            let (key_package, public) =
                fdkg::part3(secret, r1, r2).map_err(|e| failed("part3", e))?;
            if *key_package.identifier() != operator_identifier(me) {
                return Err(failed(
                    "part3",
                    format!("round-2 state does not belong to {me}"),
                ));
            }
            to_keyshare(&key_package, &public, &ids)
        })
        .collect()
}

/// Identifier → OperatorId for the given operators.
fn identifiers<'a>(
    ops: impl Iterator<Item = &'a OperatorId>,
) -> BTreeMap<frost::Identifier, OperatorId> {
    ops.map(|op| (operator_identifier(*op), *op)).collect()
}

/// Transposes {sender → [package per key]} into [ {sender id → package} per key ], rejecting a
/// sender that did not send exactly `count` well-formed packages.
fn parse_batch<P, E: ToString>(
    phase: &'static str,
    from: &BTreeMap<OperatorId, Vec<Vec<u8>>>,
    count: usize,
    parse: impl Fn(&[u8]) -> Result<P, E>,
) -> Result<Vec<BTreeMap<frost::Identifier, P>>, DkgError> {
    let mut per_key: Vec<BTreeMap<frost::Identifier, P>> =
        (0..count).map(|_| BTreeMap::new()).collect();
    for (op, packages) in from {
        if packages.len() != count {
            return Err(failed(
                phase,
                format!("{op} sent {} packages, expected {count}", packages.len()),
            ));
        }
        for (k, bytes) in packages.iter().enumerate() {
            let package = parse(bytes)
                .map_err(|e| failed(phase, format!("{op} package {k}: {}", e.to_string())))?;
            per_key[k].insert(operator_identifier(*op), package);
        }
    }
    Ok(per_key)
}

fn to_keyshare(
    key_package: &frost::keys::KeyPackage,
    public: &frost::keys::PublicKeyPackage,
    ids: &BTreeMap<frost::Identifier, OperatorId>,
) -> Result<KeyShare, DkgError> {
    let mut secret_bytes = [0u8; 32];
    secret_bytes.copy_from_slice(&key_package.signing_share().serialize());
    let secret_share = Scalar::from_bytes(secret_bytes)
        .ok_or_else(|| failed("part3", "secret share out of range"))?;
    let mut public_shares = BTreeMap::new();
    for (id, share) in public.verifying_shares() {
        let op = ids
            .get(id)
            .ok_or_else(|| failed("part3", "public share for an unknown identifier"))?;
        public_shares.insert(
            *op,
            to_public_key(&share.serialize().map_err(|e| failed("part3", e))?)?,
        );
    }
    let public_key = to_public_key(
        &public
            .verifying_key()
            .serialize()
            .map_err(|e| failed("part3", e))?,
    )?;
    Ok(KeyShare {
        secret_share,
        public_shares,
        public_key,
        threshold: *key_package.min_signers(),
    })
}

fn to_public_key(bytes: &[u8]) -> Result<PublicKey, DkgError> {
    PublicKey::from_slice(bytes).map_err(|e| failed("part3", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::curve::{base_mul, point_mul, point_sum};
    use crate::crypto::signing::tests::{finish, rng, sign_round, transfer_and_check};
    use crate::crypto::{vss, Scalar};

    /// Runs a full batched DKG in memory; returns keyshares[key][operator].
    fn run_dkg(n: u16, t: u16, count: usize, seed: u64) -> Vec<BTreeMap<OperatorId, KeyShare>> {
        let ops: Vec<OperatorId> = (0..n).map(OperatorId).collect();
        let mut rngs: BTreeMap<OperatorId, _> = ops
            .iter()
            .map(|op| (*op, rng(seed * 1000 + u64::from(op.0))))
            .collect();
        let mut r1_secret = BTreeMap::new();
        let mut r1_public = BTreeMap::new();
        for op in &ops {
            let (s, p) = part1(*op, n, t, count, rngs.get_mut(op).unwrap()).unwrap();
            assert_eq!(p.len(), count);
            r1_secret.insert(*op, s);
            r1_public.insert(*op, p);
        }
        let others = |me: OperatorId,
                      all: &BTreeMap<OperatorId, Vec<Vec<u8>>>|
         -> BTreeMap<OperatorId, Vec<Vec<u8>>> {
            all.iter()
                .filter(|(op, _)| **op != me)
                .map(|(op, p)| (*op, p.clone()))
                .collect()
        };
        let mut r2_secret = BTreeMap::new();
        let mut r2_to: BTreeMap<OperatorId, BTreeMap<OperatorId, Vec<Vec<u8>>>> = BTreeMap::new();
        for op in &ops {
            let (s, out) = part2(r1_secret.remove(op).unwrap(), &others(*op, &r1_public)).unwrap();
            r2_secret.insert(*op, s);
            for (to, pkgs) in out {
                r2_to.entry(to).or_default().insert(*op, pkgs);
            }
        }
        let mut per_key: Vec<BTreeMap<OperatorId, KeyShare>> =
            (0..count).map(|_| BTreeMap::new()).collect();
        for op in &ops {
            let shares = part3(*op, &r2_secret[op], &others(*op, &r1_public), &r2_to[op]).unwrap();
            assert_eq!(shares.len(), count);
            for (k, share) in shares.into_iter().enumerate() {
                per_key[k].insert(*op, share);
            }
        }
        per_key
    }

    /// For every key: s_i·G == public_shares[i], identical public parts everywhere, and every
    /// t-subset of public shares (and secret shares) interpolates to the public key.
    fn check_consistent(keys: &[BTreeMap<OperatorId, KeyShare>], n: u16, t: u16) {
        let mut seen = Vec::new();
        for shares in keys {
            let first = &shares[&OperatorId(0)];
            assert_eq!(shares.len(), usize::from(n));
            assert_eq!(first.public_shares.len(), usize::from(n));
            assert!(
                !seen.contains(&first.public_key),
                "keys in a batch are independent"
            );
            seen.push(first.public_key);
            for (op, ks) in shares {
                assert_eq!(ks.threshold, t);
                assert_eq!(ks.public_shares, first.public_shares);
                assert_eq!(ks.public_key, first.public_key);
                assert_eq!(
                    base_mul(&ks.secret_share).as_ref(),
                    Some(&first.public_shares[op])
                );
                ks.check_consistent(*op).unwrap();
            }
            for subset in subsets(n, t) {
                let xs: Vec<u32> = subset.iter().map(|op| op.share_x()).collect();
                let terms: Vec<_> = subset
                    .iter()
                    .map(|op| {
                        point_mul(
                            &first.public_shares[op],
                            &vss::lagrange_at_zero(op.share_x(), &xs),
                        )
                        .unwrap()
                    })
                    .collect();
                assert_eq!(point_sum(terms.iter()), Some(first.public_key));
                let secret: Vec<(u32, Scalar)> = subset
                    .iter()
                    .map(|op| (op.share_x(), shares[op].secret_share))
                    .collect();
                assert_eq!(
                    base_mul(&vss::recover_secret(&secret).unwrap()),
                    Some(first.public_key)
                );
            }
        }
    }

    fn subsets(n: u16, t: u16) -> Vec<Vec<OperatorId>> {
        (0u32..(1 << n))
            .filter(|m| m.count_ones() == u32::from(t))
            .map(|m| {
                (0..n)
                    .filter(|i| m & (1 << i) != 0)
                    .map(OperatorId)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn crypto_dkg_consistent_3_of_5() {
        check_consistent(&run_dkg(5, 3, 3, 1), 5, 3);
    }

    #[test]
    fn crypto_dkg_consistent_2_of_3() {
        check_consistent(&run_dkg(3, 2, 2, 2), 3, 2);
    }

    #[test]
    fn crypto_dkg_deterministic() {
        let a = run_dkg(3, 2, 1, 7);
        let b = run_dkg(3, 2, 1, 7);
        assert_eq!(a, b);
        assert_ne!(
            a[0][&OperatorId(0)].public_key,
            run_dkg(3, 2, 1, 8)[0][&OperatorId(0)].public_key
        );
    }

    /// DKG keys work for Spark signing and for the statechain transfer (spark-protocol §2.5).
    #[test]
    fn crypto_dkg_keys_sign_and_transfer() {
        let mut keys = run_dkg(5, 3, 1, 3).remove(0);
        let mut r = rng(30);
        let user_sk = Scalar::random(&mut r).to_secret_key().unwrap();
        let signers = [OperatorId(1), OperatorId(2), OperatorId(4)];
        let round = sign_round(&keys, &signers, &user_sk, [0x42; 32], &mut r).unwrap();
        let sig = finish(&round, &keys[&OperatorId(0)].public_shares).unwrap();
        assert!(crate::crypto::signing::verify(
            &round.job.verifying_key,
            &[0x42; 32],
            &sig
        ));
        transfer_and_check(&mut keys, &mut r);
    }

    #[test]
    fn crypto_dkg_rejects_bad_input() {
        let mut r = rng(40);
        assert!(part1(OperatorId(3), 3, 2, 1, &mut r).is_err());
        assert!(part1(OperatorId(0), 3, 4, 1, &mut r).is_err());
        let (s0, _) = part1(OperatorId(0), 3, 2, 2, &mut r).unwrap();
        let (_, p1) = part1(OperatorId(1), 3, 2, 2, &mut r).unwrap();
        let (_, p2) = part1(OperatorId(2), 3, 2, 1, &mut r).unwrap();
        let from: BTreeMap<_, _> = [(OperatorId(1), p1.clone()), (OperatorId(2), p2)].into();
        assert!(matches!(
            part2(s0, &from),
            Err(DkgError::Failed { phase: "part2", .. })
        ));
        let (s0, _) = part1(OperatorId(0), 3, 2, 1, &mut r).unwrap();
        let garbage: BTreeMap<_, _> = [
            (OperatorId(1), vec![p1[0].clone()]),
            (OperatorId(2), vec![vec![1, 2, 3]]),
        ]
        .into();
        assert!(matches!(
            part2(s0, &garbage),
            Err(DkgError::Failed { phase: "part2", .. })
        ));
    }
}
