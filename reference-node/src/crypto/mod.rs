//! Spark's cryptography on real secp256k1: scalar/point arithmetic, 1 + t-of-n FROST signing with the
//! user as a mandatory participant, Feldman VSS for key tweaks, ECIES for per-operator payloads,
//! the operators' DKG, and identity-key ECDSA.

pub mod adaptor;
pub mod adaptor_frost;
pub mod curve;
pub mod dkg;
pub mod ecies;
pub mod identity;
pub mod keysplit;
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

/// spark-protocol §2.5 end to end, with the wire pieces: the sender ECIES-encrypts e to the
/// receiver and each δ_i (with proofs) to its operator, signs the cipher with its identity key;
/// operators decrypt, validate and apply; the receiver decrypts e and signs with t operators.
#[cfg(test)]
mod tests {
    use super::curve::{base_mul, point_add};
    use super::signing::tests::{dealer, finish, rng, sign_round};
    use super::*;
    use crate::types::OperatorId;
    use std::collections::BTreeMap;

    #[test]
    fn crypto_transfer_with_ecies_and_identity_signature() {
        let mut r = rng(77);
        let (n, t) = (5u16, 3u16);
        let mut keyshares = dealer(n, t, &mut r);
        let operator_identity: Vec<SecretKey> = (0..n)
            .map(|_| Scalar::random(&mut r).to_secret_key().unwrap())
            .collect();
        let sender_identity = Scalar::random(&mut r).to_secret_key().unwrap();
        let receiver_identity = Scalar::random(&mut r).to_secret_key().unwrap();
        let sk_old = Scalar::random(&mut r).to_secret_key().unwrap();
        let y = point_add(
            &PublicKey::from_secret_key(secp(), &sk_old),
            &keyshares[&OperatorId(0)].public_key,
        )
        .unwrap();

        // Sender.
        let e = Scalar::random(&mut r);
        let delta = Scalar::from_secret_key(&sk_old).sub(&e);
        let shares = vss::split_with_proofs(&delta, t, n, &mut r).unwrap();
        let pubkey_shares_tweak: BTreeMap<OperatorId, PublicKey> = shares
            .iter()
            .enumerate()
            .map(|(i, s)| (OperatorId(i as u16), base_mul(&s.share).unwrap()))
            .collect();
        let secret_cipher = ecies::encrypt(
            &PublicKey::from_secret_key(secp(), &receiver_identity),
            &e.0,
            &mut r,
        );
        let digest = identity::sha256(&[b"leaf-1", b"transfer-1", &secret_cipher]);
        let signature = identity::sign_digest(&sender_identity, &digest);
        let packages: Vec<Vec<u8>> = shares
            .iter()
            .zip(&operator_identity)
            .map(|(s, id)| {
                ecies::encrypt(
                    &PublicKey::from_secret_key(secp(), id),
                    &serde_json::to_vec(s).unwrap(),
                    &mut r,
                )
            })
            .collect();

        // Operators.
        let sender_pk = PublicKey::from_secret_key(secp(), &sender_identity);
        identity::verify_digest(&sender_pk, &digest, &signature).unwrap();
        for (op, ks) in keyshares.iter_mut() {
            let i = usize::from(op.0);
            let plain = ecies::decrypt(&operator_identity[i], &packages[i]).unwrap();
            let share: vss::VssShare = serde_json::from_slice(&plain).unwrap();
            assert_eq!(share.x, op.share_x());
            vss::validate_share(&share).unwrap();
            ks.apply_tweak(*op, &share.share, &pubkey_shares_tweak, &share.proofs[0])
                .unwrap();
            assert!(ecies::decrypt(&operator_identity[(i + 1) % 5], &packages[i]).is_err());
        }

        // Receiver.
        let plain = ecies::decrypt(&receiver_identity, &secret_cipher).unwrap();
        let e_received = Scalar::from_bytes(plain.try_into().unwrap())
            .unwrap()
            .to_secret_key()
            .unwrap();
        let round = sign_round(
            &keyshares,
            &[OperatorId(0), OperatorId(3), OperatorId(4)],
            &e_received,
            [3; 32],
            &mut r,
        )
        .unwrap();
        assert_eq!(round.job.verifying_key, y);
        let sig = finish(&round, &keyshares[&OperatorId(0)].public_shares).unwrap();
        assert!(signing::verify(&y, &[3; 32], &sig));
    }
}
