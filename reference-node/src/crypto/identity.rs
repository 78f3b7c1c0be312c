//! ECDSA by identity keys over 32-byte digests (DER, low-S), as Spark signs transfer packages.
use super::{secp, PublicKey, SecretKey};
use bitcoin::secp256k1::{ecdsa::Signature, Message};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IdentityError {
    #[error("malformed DER signature")]
    Malformed,
    #[error("signature does not verify")]
    Invalid,
}

/// RFC 6979 deterministic ECDSA (no randomness needed), DER-encoded. libsecp256k1 always emits
/// low-S; `normalize_s` makes that explicit.
pub fn sign_digest(secret: &SecretKey, digest: &[u8; 32]) -> Vec<u8> {
    let mut sig = secp().sign_ecdsa(&Message::from_digest(*digest), secret);
    sig.normalize_s();
    sig.serialize_der().to_vec()
}

/// Strict DER parse; high-S signatures are rejected by libsecp256k1's verify (BIP146 rule),
/// matching Spark's low-S policy.
pub fn verify_digest(
    public: &PublicKey,
    digest: &[u8; 32],
    der: &[u8],
) -> Result<(), IdentityError> {
    let sig = Signature::from_der(der).map_err(|_| IdentityError::Malformed)?;
    secp()
        .verify_ecdsa(&Message::from_digest(*digest), &sig, public)
        .map_err(|_| IdentityError::Invalid)
}

pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).unwrap();
        b
    }

    /// spark-vectors §4.6 (static-deposit claim statement): the upstream DER signature verifies
    /// for amount 90000 and not for amount 1000.
    #[test]
    fn crypto_identity_static_deposit_vector() {
        let sk = SecretKey::from_slice(&hex32(
            "3418d19f934d800fed3e364568e2d3a34d6574d7fa9459caea7c790e294651a9",
        ))
        .unwrap();
        let pk = PublicKey::from_secret_key(secp(), &sk);
        assert_eq!(
            hex::encode(pk.serialize()),
            "0212b427c2f94a04c5c5f7aca46496955edeedbb6dea7fe4d7ff50854998d08e7f"
        );
        let der = hex::decode("304402202afee9d9a9330e9aeb8d17904d2ed1306b9ecfc9c7554e30f44d2783872e818602204ee7f5225088f95f6fd10333ac21d48041e3ba7aaaa5894b0b4b1b55bcac5765").unwrap();
        let good = hex32("87087f4cfa343d73510f96be4c91384a768d068d3008eed31d3865e5e4343385");
        let bad = hex32("7622652b941985440aa812dd74501e2b5842dea1890db5909fe3789a2bffe024");
        assert_eq!(verify_digest(&pk, &good, &der), Ok(()));
        assert_eq!(verify_digest(&pk, &bad, &der), Err(IdentityError::Invalid));
        assert_eq!(
            verify_digest(&pk, &good, &der[..10]),
            Err(IdentityError::Malformed)
        );
    }

    #[test]
    fn crypto_identity_sign_verify_roundtrip() {
        let sk = SecretKey::from_slice(&[7u8; 32]).unwrap();
        let pk = PublicKey::from_secret_key(secp(), &sk);
        let d = sha256(&[b"leaf", b"transfer"]);
        assert_eq!(d, sha256(&[b"leaftransfer"]));
        let der = sign_digest(&sk, &d);
        assert_eq!(der, sign_digest(&sk, &d), "RFC 6979 is deterministic");
        assert_eq!(verify_digest(&pk, &d, &der), Ok(()));
        assert_eq!(
            verify_digest(&pk, &sha256(&[b"x"]), &der),
            Err(IdentityError::Invalid)
        );
    }

    /// spark-vectors §4.7: sha256 of the concatenation, including the empty list.
    #[test]
    fn crypto_identity_sha256_concat_vectors() {
        assert_eq!(
            hex::encode(sha256(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(sha256(&[b"package1", b"package2", b"package3"])),
            "48d8d70b79712c52dfa87860293ee867b61c9127e17c270a2da867975b82d527"
        );
    }
}
