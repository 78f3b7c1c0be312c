//! Scalars mod the secp256k1 group order and point arithmetic.
//!
//! Scalars use k256's constant-time field arithmetic; points stay `secp256k1::PublicKey` and use
//! libsecp256k1's `combine` / `mul_tweak` / `negate`, so every result is a checked curve point.
use super::{secp, PublicKey, SecretKey};
use k256::elliptic_curve::PrimeField;
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
    /// Uniform non-zero scalar by rejection sampling (a draw >= n or == 0 happens with
    /// probability ~2^-128, so the loop practically never repeats, and it stays deterministic).
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Scalar {
        loop {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            if let Some(s) = Scalar::from_bytes(bytes) {
                if !s.is_zero() {
                    return s;
                }
            }
        }
    }

    pub fn from_u32(v: u32) -> Scalar {
        let mut bytes = [0u8; 32];
        bytes[28..].copy_from_slice(&v.to_be_bytes());
        Scalar(bytes)
    }

    /// None if `bytes` >= n.
    pub fn from_bytes(bytes: [u8; 32]) -> Option<Scalar> {
        Option::<k256::Scalar>::from(k256::Scalar::from_repr(bytes.into())).map(|_| Scalar(bytes))
    }

    pub fn from_secret_key(sk: &SecretKey) -> Scalar {
        Scalar(sk.secret_bytes())
    }

    /// None for zero.
    pub fn to_secret_key(&self) -> Option<SecretKey> {
        SecretKey::from_slice(&self.0).ok()
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; 32]
    }

    pub fn add(&self, o: &Scalar) -> Scalar {
        from_k256(self.to_k256() + o.to_k256())
    }

    pub fn sub(&self, o: &Scalar) -> Scalar {
        from_k256(self.to_k256() - o.to_k256())
    }

    pub fn mul(&self, o: &Scalar) -> Scalar {
        from_k256(self.to_k256() * o.to_k256())
    }

    pub fn neg(&self) -> Scalar {
        from_k256(-self.to_k256())
    }

    /// None for zero.
    pub fn invert(&self) -> Option<Scalar> {
        Option::<k256::Scalar>::from(self.to_k256().invert()).map(from_k256)
    }

    /// The k256 view of this scalar. Every constructor of `Scalar` keeps the bytes < n except the
    /// public tuple field; out-of-range bytes written there are reduced mod n (documented invariant:
    /// callers building `Scalar(..)` by hand must pass canonical bytes).
    pub(crate) fn to_k256(self) -> k256::Scalar {
        use k256::elliptic_curve::ops::Reduce;
        <k256::Scalar as Reduce<k256::U256>>::reduce_bytes(&self.0.into())
    }
}

fn from_k256(s: k256::Scalar) -> Scalar {
    Scalar(s.to_bytes().into())
}

/// s·G; None when s is zero.
pub fn base_mul(s: &Scalar) -> Option<PublicKey> {
    let sk = s.to_secret_key()?;
    Some(PublicKey::from_secret_key(secp(), &sk))
}

/// s·P; None when s is zero.
pub fn point_mul(p: &PublicKey, s: &Scalar) -> Option<PublicKey> {
    let tweak = bitcoin::secp256k1::Scalar::from_be_bytes(s.0).ok()?;
    // mul_tweak rejects a zero tweak; for a non-zero scalar and a valid point the product is a
    // valid point (prime-order group), so the error arm only covers zero.
    p.mul_tweak(secp(), &tweak).ok()
}

/// a + b; None at infinity.
pub fn point_add(a: &PublicKey, b: &PublicKey) -> Option<PublicKey> {
    a.combine(b).ok()
}

/// a − b; None at infinity.
pub fn point_sub(a: &PublicKey, b: &PublicKey) -> Option<PublicKey> {
    a.combine(&b.negate(secp())).ok()
}

/// Σ points; None if the list is empty or the sum is the point at infinity.
pub fn point_sum<'a, I: IntoIterator<Item = &'a PublicKey>>(points: I) -> Option<PublicKey> {
    let refs: Vec<&PublicKey> = points.into_iter().collect();
    PublicKey::combine_keys(&refs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const N_MINUS_1: &str = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140";

    fn s(hex_str: &str) -> Scalar {
        let mut b = [0u8; 32];
        hex::decode_to_slice(hex_str, &mut b).unwrap();
        Scalar::from_bytes(b).unwrap()
    }

    #[test]
    fn crypto_curve_scalar_range_and_inverse() {
        let n = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
        let mut b = [0u8; 32];
        hex::decode_to_slice(n, &mut b).unwrap();
        assert!(Scalar::from_bytes(b).is_none());
        let minus_one = s(N_MINUS_1);
        assert_eq!(Scalar::from_u32(1).neg(), minus_one);
        assert_eq!(minus_one.add(&Scalar::from_u32(1)), Scalar([0; 32]));
        // (−1)⁻¹ = n−1 and 3·3⁻¹ = 1 (JS secret-sharing.test.ts modInverse cases, vectors §4.10).
        assert_eq!(minus_one.invert().unwrap(), minus_one);
        let three = Scalar::from_u32(3);
        assert_eq!(three.mul(&three.invert().unwrap()), Scalar::from_u32(1));
        assert!(Scalar([0; 32]).invert().is_none());
        assert_eq!(
            Scalar::from_u32(5).sub(&Scalar::from_u32(7)),
            Scalar::from_u32(2).neg()
        );
    }

    #[test]
    fn crypto_curve_points_match_scalars() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = Scalar::random(&mut rng);
        let b = Scalar::random(&mut rng);
        let (pa, pb) = (base_mul(&a).unwrap(), base_mul(&b).unwrap());
        assert_eq!(point_add(&pa, &pb), base_mul(&a.add(&b)));
        assert_eq!(point_sub(&pa, &pb), base_mul(&a.sub(&b)));
        assert_eq!(point_mul(&pa, &b), base_mul(&a.mul(&b)));
        assert_eq!(point_sub(&pa, &pa), None);
        assert_eq!(base_mul(&Scalar([0; 32])), None);
        assert_eq!(point_mul(&pa, &Scalar([0; 32])), None);
        assert_eq!(point_sum([&pa, &pb, &pa]), base_mul(&a.add(&b).add(&a)));
        let sk = a.to_secret_key().unwrap();
        assert_eq!(Scalar::from_secret_key(&sk), a);
    }
}
