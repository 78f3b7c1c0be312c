//! Feldman verifiable secret sharing in Spark's format (vectors §4.8).
//!
//! Spark's `SplitSecretWithProofs`: f(x) = a0 + a1·x + … + a_{t−1}·x^{t−1} mod n with a0 = secret,
//! share_i = f(i) for i = 1..=n, proofs[k] = a_k·G (compressed). `ValidateShare` checks
//! share_i·G == Σ_k proofs[k]·i^k (spark-protocol §2.5).
use super::curve::{base_mul, point_mul, point_sum};
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

pub fn split_with_proofs<R: RngCore + CryptoRng>(
    secret: &Scalar,
    threshold: u16,
    n: u16,
    rng: &mut R,
) -> Result<Vec<VssShare>, VssError> {
    check_threshold(threshold, n)?;
    // Coefficients a1..a_{t−1} are drawn non-zero so that every proof is a valid point
    // (a zero coefficient would have no compressed encoding).
    let mut coefficients = Vec::with_capacity(threshold as usize);
    coefficients.push(*secret);
    for _ in 1..threshold {
        coefficients.push(Scalar::random(rng));
    }
    split_with_coefficients(&coefficients, n)
}

fn check_threshold(threshold: u16, n: u16) -> Result<(), VssError> {
    if threshold == 0 || threshold > n {
        return Err(VssError::BadThreshold { threshold, n });
    }
    Ok(())
}

/// Deterministic core of [`split_with_proofs`]: shares and proofs for the polynomial with the
/// given coefficients (a0 first). Fails if a coefficient is zero (its proof would be the point at
/// infinity, which Spark's compressed-point format cannot carry).
pub(crate) fn split_with_coefficients(
    coefficients: &[Scalar],
    n: u16,
) -> Result<Vec<VssShare>, VssError> {
    let threshold = u16::try_from(coefficients.len())
        .map_err(|_| VssError::Malformed("too many coefficients".into()))?;
    check_threshold(threshold, n)?;
    let proofs = coefficients
        .iter()
        .map(|a| {
            base_mul(a).ok_or_else(|| VssError::Malformed("zero polynomial coefficient".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((1..=u32::from(n))
        .map(|x| VssShare {
            x,
            share: eval_poly(coefficients, &Scalar::from_u32(x)),
            proofs: proofs.clone(),
        })
        .collect())
}

/// Horner evaluation of f at x.
fn eval_poly(coefficients: &[Scalar], x: &Scalar) -> Scalar {
    coefficients
        .iter()
        .rev()
        .fold(Scalar([0; 32]), |acc, a| acc.mul(x).add(a))
}

pub fn validate_share(share: &VssShare) -> Result<(), VssError> {
    if share.x == 0 {
        return Err(VssError::Malformed(
            "share x-coordinate 0 would reveal the secret".into(),
        ));
    }
    if share.proofs.is_empty() {
        return Err(VssError::Malformed("no Feldman proofs".into()));
    }
    let expected = committed_point_at(&share.proofs, share.x);
    let actual = base_mul(&share.share);
    if expected.is_some() && expected == actual {
        Ok(())
    } else {
        Err(VssError::InvalidShare { x: share.x })
    }
}

/// Σ proofs[k]·x^k, i.e. f(x)·G; None if that is the point at infinity.
fn committed_point_at(proofs: &[PublicKey], x: u32) -> Option<PublicKey> {
    let x = Scalar::from_u32(x);
    let mut power = Scalar::from_u32(1);
    let mut terms = Vec::with_capacity(proofs.len());
    for proof in proofs {
        // x ≠ 0 and n is prime, so x^k ≠ 0 and point_mul cannot fail.
        terms.push(point_mul(proof, &power)?);
        power = power.mul(&x);
    }
    point_sum(terms.iter())
}

pub fn recover_secret(shares: &[(u32, Scalar)]) -> Result<Scalar, VssError> {
    if shares.is_empty() {
        return Err(VssError::Malformed("no shares".into()));
    }
    let xs: Vec<u32> = shares.iter().map(|(x, _)| *x).collect();
    check_distinct_nonzero(&xs)?;
    Ok(shares.iter().fold(Scalar([0; 32]), |acc, (x, y)| {
        acc.add(&lagrange_at_zero(*x, &xs).mul(y))
    }))
}

fn check_distinct_nonzero(xs: &[u32]) -> Result<(), VssError> {
    let mut sorted = xs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != xs.len() || sorted.first() == Some(&0) {
        return Err(VssError::Malformed(
            "x-coordinates must be distinct and non-zero".into(),
        ));
    }
    Ok(())
}

/// Lagrange coefficient at 0 of `x` within `xs`: Π_{j≠x} x_j / (x_j − x).
/// `xs` must be distinct (a duplicate makes the denominator zero; the inverse of zero is mapped to
/// zero here, and `recover_secret` rejects duplicates before calling this).
pub fn lagrange_at_zero(x: u32, xs: &[u32]) -> Scalar {
    let xi = Scalar::from_u32(x);
    let (num, den) = xs.iter().filter(|&&xj| xj != x).fold(
        (Scalar::from_u32(1), Scalar::from_u32(1)),
        |(num, den), &xj| {
            let xj = Scalar::from_u32(xj);
            (num.mul(&xj), den.mul(&xj.sub(&xi)))
        },
    );
    num.mul(&den.invert().unwrap_or(Scalar([0; 32])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn s(hex_str: &str) -> Scalar {
        let mut b = [0u8; 32];
        hex::decode_to_slice(hex_str, &mut b).unwrap();
        Scalar::from_bytes(b).unwrap()
    }

    /// spark-vectors §4.8 (upstream formulas, fixed polynomial).
    #[test]
    fn crypto_vss_spark_vector() {
        let coefficients = [
            s("7c4d3670ce7f1ab216a0cfca942b10578a919b0f8f33d4c01f05e43b3a81707c"),
            s("1111111111111111111111111111111111111111111111111111111111111111"),
            s("2222222222222222222222222222222222222222222222222222222222222222"),
        ];
        let shares = split_with_coefficients(&coefficients, 5).unwrap();
        let proofs: Vec<String> = shares[0]
            .proofs
            .iter()
            .map(|p| hex::encode(p.serialize()))
            .collect();
        assert_eq!(
            proofs,
            [
                "03923252cded4580cc1842850f6100031f3d5d2d518fd41c298c879e6e27854faf",
                "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa",
                "02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27",
            ]
        );
        let expected = [
            "af8069a401b24de549d402fdc75e438abdc4ce42c26707f35239176e6db4a3af",
            "26f7e11b7929c55cc14b7a753ed5bb037a8d68d38a95df2f09de305914f5d9e5",
            "e2b39cd734e581187d073630fa9176bf3649248f46519aeac599ec14d0b195a0",
            "e2b39cd734e581187d073630fa9176c07b9a47a89708faaf05c78d88007b545e",
            "26f7e11b7929c55cc14b7a753ed5bb074a80d21f7cbbfe7bca6714b2a453161f",
        ];
        for (share, want) in shares.iter().zip(expected) {
            assert_eq!(hex::encode(share.share.0), want, "x={}", share.x);
            assert_eq!(validate_share(share), Ok(()));
        }
        let picked: Vec<(u32, Scalar)> = [1usize, 3, 4]
            .iter()
            .map(|&i| (shares[i].x, shares[i].share))
            .collect();
        assert_eq!(recover_secret(&picked), Ok(coefficients[0]));
    }

    /// spark-vectors §4.5: real DKG shares (3-of-5); every 3-subset interpolates to the same secret.
    #[test]
    fn crypto_vss_real_dkg_shares_interpolate() {
        let shares = [
            "977c9e434099e84397d2b04ac300023436b8737c2c6fb52b34fb69098ea88e4c",
            "0e0297a545417f07d6ddeb13fd6db4dc3810393568c90ece7df5cf3adbc9f7b2",
            "f637c482332681044da22f08e1513c034604a8b9d1b79ca7a752dbfd07a62e01",
            "501c24da0a48ee38fc1f7c296eaa97ad30892b5559617e03719b73a9a19a6d76",
            "1bafb8accaa8c6a5e255d275a579c7d76cfb7ad55e57f3595c74535a4a133893",
        ];
        let all: Vec<(u32, Scalar)> = shares
            .iter()
            .enumerate()
            .map(|(i, h)| (i as u32 + 1, s(h)))
            .collect();
        let want = s("92a5d85c252fbcb790807ead3208240dcc9f9dc0be1a4f464cbeec4f7fd56f4d");
        for a in 0..5 {
            for b in a + 1..5 {
                for c in b + 1..5 {
                    assert_eq!(recover_secret(&[all[a], all[b], all[c]]), Ok(want));
                }
            }
        }
        assert_eq!(
            hex::encode(base_mul(&want).unwrap().serialize()),
            "03846df6e2a4a04f4c8f02cfba604ae5b22472547340486582d16770f390359c2c"
        );
    }

    #[test]
    fn crypto_vss_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let secret = Scalar::random(&mut rng);
        assert_eq!(
            split_with_proofs(&secret, 0, 3, &mut rng),
            Err(VssError::BadThreshold { threshold: 0, n: 3 })
        );
        assert_eq!(
            split_with_proofs(&secret, 4, 3, &mut rng),
            Err(VssError::BadThreshold { threshold: 4, n: 3 })
        );
        let shares = split_with_proofs(&secret, 2, 3, &mut rng).unwrap();
        assert!(recover_secret(&[]).is_err());
        assert!(recover_secret(&[(1, shares[0].share), (1, shares[0].share)]).is_err());
        let mut no_proofs = shares[0].clone();
        no_proofs.proofs.clear();
        assert!(matches!(
            validate_share(&no_proofs),
            Err(VssError::Malformed(_))
        ));
        let mut wrong_x = shares[0].clone();
        wrong_x.x = 2;
        assert_eq!(
            validate_share(&wrong_x),
            Err(VssError::InvalidShare { x: 2 })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Any t of the n shares recover the secret, and every share validates.
        #[test]
        fn crypto_vss_prop_any_t_shares_recover(seed in any::<u64>(), n in 1u16..7, t_off in 0u16..7, pick in any::<u64>()) {
            let t = 1 + t_off % n;
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let secret = Scalar::random(&mut rng);
            let shares = split_with_proofs(&secret, t, n, &mut rng).unwrap();
            prop_assert_eq!(shares.len(), n as usize);
            for sh in &shares {
                prop_assert_eq!(validate_share(sh), Ok(()));
                prop_assert_eq!(sh.proofs[0], base_mul(&secret).unwrap());
            }
            // A pseudo-random t-subset: rotate the share list by `pick`.
            let start = (pick % u64::from(n)) as usize;
            let subset: Vec<(u32, Scalar)> = (0..t as usize)
                .map(|k| { let sh = &shares[(start + k) % n as usize]; (sh.x, sh.share) })
                .collect();
            prop_assert_eq!(recover_secret(&subset), Ok(secret));
        }

        /// Changing a share (by any non-zero delta) makes it fail validation.
        #[test]
        fn crypto_vss_prop_tampered_share_fails(seed in any::<u64>(), which in 0usize..5, delta in 1u32..) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let secret = Scalar::random(&mut rng);
            let mut shares = split_with_proofs(&secret, 3, 5, &mut rng).unwrap();
            let sh = &mut shares[which];
            sh.share = sh.share.add(&Scalar::from_u32(delta));
            prop_assert_eq!(validate_share(sh), Err(VssError::InvalidShare { x: sh.x }));
        }
    }
}
