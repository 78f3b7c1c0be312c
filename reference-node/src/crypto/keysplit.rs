//! Key splitting and aggregation (spark-protocol §2.6): a leaf's aggregate key `Y = u·G + S·G`
//! is split into children `Y_c = u_c·G + S_c·G` with `Σ Y_c = Y`. The user picks the `u_c`
//! (the operators check only that the *public* keys sum to the parent's); the SE takes fresh DKG
//! keys for every child but the last and computes the last one share-wise, so that no operator
//! ever learns more than its own share: `S_last = S − Σ_{other} S_c` on the secret share, the
//! public key and every public share. Aggregation is the reverse: `S_parent = Σ S_c`.
use super::curve::{point_add, point_sub, point_sum};
use super::signing::KeyShare;
use super::{PublicKey, Scalar};
use crate::types::OperatorId;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KeySplitError {
    #[error("children's user public keys sum to {found}, expected the parent's {expected}")]
    UserKeysDoNotSum { expected: String, found: String },
    #[error("a split needs at least 2 children, found {0}")]
    TooFewChildren(usize),
    #[error("keyshare {index} has threshold {found}, expected {expected}")]
    ThresholdMismatch { index: usize, expected: u16, found: u16 },
    #[error("keyshare {index} covers operators {found:?}, expected {expected:?}")]
    OperatorSetMismatch { index: usize, expected: Vec<OperatorId>, found: Vec<OperatorId> },
    #[error("{what} is the point at infinity")]
    Infinity { what: String },
}

/// The operators' check on a split request: the children's user public keys sum to the parent's.
pub fn check_user_keys_sum(parent: &PublicKey, children: &[PublicKey]) -> Result<(), KeySplitError> {
    if children.len() < 2 {
        return Err(KeySplitError::TooFewChildren(children.len()));
    }
    match point_sum(children.iter()) {
        Some(sum) if sum == *parent => Ok(()),
        found => Err(KeySplitError::UserKeysDoNotSum { expected: parent.to_string(), found: found.map_or("infinity".into(), |p| p.to_string()) }),
    }
}

/// The user's side: `count` child secret keys summing to `parent` (all but the last drawn from
/// `draw`, the last `parent − Σ others`). None in the negligible case that a key comes out zero.
pub fn split_user_key(parent: &Scalar, count: usize, mut draw: impl FnMut() -> Scalar) -> Option<Vec<Scalar>> {
    if count < 2 {
        return None;
    }
    let mut keys: Vec<Scalar> = (0..count - 1).map(|_| draw()).collect();
    let last = keys.iter().fold(*parent, |acc, k| acc.sub(k));
    if last.is_zero() {
        return None;
    }
    keys.push(last);
    Some(keys)
}

/// The last child's keyshare, computed share-wise on each operator from the parent's keyshare
/// and the other children's fresh DKG keyshares: secret share, public key and every public
/// share are `parent − Σ others`. Every operator computes the same public parts (I-3).
pub fn last_child_share(parent: &KeyShare, others: &[&KeyShare]) -> Result<KeyShare, KeySplitError> {
    combine(parent, others, Sign::Minus)
}

/// Aggregation: the parent's keyshare as the share-wise sum of the children's.
pub fn sum_shares(children: &[&KeyShare]) -> Result<KeyShare, KeySplitError> {
    let Some((first, rest)) = children.split_first() else {
        return Err(KeySplitError::TooFewChildren(0));
    };
    if rest.is_empty() {
        return Err(KeySplitError::TooFewChildren(1));
    }
    combine(first, rest, Sign::Plus)
}

#[derive(Clone, Copy)]
enum Sign {
    Plus,
    Minus,
}

/// `base ± Σ others`, share-wise, after checking every keyshare has the same threshold and
/// operator set (mixing shares of different sharings would be meaningless).
fn combine(base: &KeyShare, others: &[&KeyShare], sign: Sign) -> Result<KeyShare, KeySplitError> {
    let ops: Vec<OperatorId> = base.public_shares.keys().copied().collect();
    for (i, o) in others.iter().enumerate() {
        if o.threshold != base.threshold {
            return Err(KeySplitError::ThresholdMismatch { index: i + 1, expected: base.threshold, found: o.threshold });
        }
        let found: Vec<OperatorId> = o.public_shares.keys().copied().collect();
        if found != ops {
            return Err(KeySplitError::OperatorSetMismatch { index: i + 1, expected: ops, found });
        }
    }
    let point = |a: &PublicKey, b: &PublicKey, what: &str| -> Result<PublicKey, KeySplitError> {
        match sign {
            Sign::Plus => point_add(a, b),
            Sign::Minus => point_sub(a, b),
        }
        .ok_or_else(|| KeySplitError::Infinity { what: what.to_owned() })
    };
    let mut secret_share = base.secret_share;
    let mut public_key = base.public_key;
    let mut public_shares: BTreeMap<OperatorId, PublicKey> = base.public_shares.clone();
    for o in others {
        secret_share = match sign {
            Sign::Plus => secret_share.add(&o.secret_share),
            Sign::Minus => secret_share.sub(&o.secret_share),
        };
        public_key = point(&public_key, &o.public_key, "public key")?;
        for (op, p) in public_shares.iter_mut() {
            *p = point(p, &o.public_shares[op], &format!("public share of {op}"))?;
        }
    }
    Ok(KeyShare { secret_share, public_shares, public_key, threshold: base.threshold })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::curve::base_mul;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn deal(secret: &Scalar, rng: &mut ChaCha20Rng) -> Vec<KeyShare> {
        KeyShare::deal(secret, 5, 3, rng).expect("deal")
    }

    #[test]
    fn last_child_share_makes_children_sum_to_parent_on_every_operator() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let (s, s1, s2) = (Scalar::random(&mut rng), Scalar::random(&mut rng), Scalar::random(&mut rng));
        let (parent, c1, c2) = (deal(&s, &mut rng), deal(&s1, &mut rng), deal(&s2, &mut rng));
        let mut publics = Vec::new();
        for i in 0..5 {
            let last = last_child_share(&parent[i], &[&c1[i], &c2[i]]).expect("last");
            last.check_consistent(OperatorId(i as u16)).expect("consistent share");
            // S_last·G = S·G − S1·G − S2·G.
            assert_eq!(Some(last.public_key), base_mul(&s.sub(&s1).sub(&s2)));
            publics.push((last.public_key, last.public_shares.clone()));
            // Aggregation undoes it.
            let back = sum_shares(&[&c1[i], &c2[i], &last]).expect("sum");
            assert_eq!(back, parent[i]);
        }
        assert!(publics.windows(2).all(|w| w[0] == w[1]), "every operator computes the same public parts");
    }

    #[test]
    fn user_key_split_sums_and_the_check_refuses_other_keys() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let u = Scalar::random(&mut rng);
        let keys = split_user_key(&u, 3, || Scalar::random(&mut rng)).expect("split");
        let pubs: Vec<PublicKey> = keys.iter().map(|k| base_mul(k).expect("nonzero")).collect();
        let parent = base_mul(&u).expect("nonzero");
        assert_eq!(check_user_keys_sum(&parent, &pubs), Ok(()));
        let mut bad = pubs.clone();
        bad[2] = base_mul(&Scalar::random(&mut rng)).expect("nonzero");
        assert!(matches!(check_user_keys_sum(&parent, &bad), Err(KeySplitError::UserKeysDoNotSum { .. })));
        assert_eq!(check_user_keys_sum(&parent, &pubs[..1]), Err(KeySplitError::TooFewChildren(1)));
    }

    #[test]
    fn mixing_sharings_with_different_thresholds_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let a = deal(&Scalar::random(&mut rng), &mut rng);
        let b = KeyShare::deal(&Scalar::random(&mut rng), 5, 2, &mut rng).expect("deal");
        assert!(matches!(last_child_share(&a[0], &[&b[0]]), Err(KeySplitError::ThresholdMismatch { .. })));
    }
}
