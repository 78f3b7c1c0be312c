//! ECIES as Spark's signer uses it (Rust `ecies` crate / JS `eciesjs` defaults).
//!
//! Layout (ecies 0.2.x default config: uncompressed ephemeral key, HKDF over uncompressed points,
//! AES-256-GCM with a 16-byte nonce, empty AAD):
//! `ephemeral_pk (65, 0x04‖x‖y) ‖ nonce (16) ‖ tag (16) ‖ ciphertext`,
//! key = HKDF-SHA256(salt = none, ikm = ephemeral_pk(65) ‖ (r·P_receiver)(65), info = empty)[..32].
//! Checked against the ecies crate's own known-answer tests (see the tests below).
use super::curve::point_mul;
use super::{secp, PublicKey, Scalar, SecretKey};
use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EciesError {
    #[error("ciphertext too short: {0} bytes")]
    TooShort(usize),
    #[error("bad ephemeral public key")]
    BadEphemeralKey,
    #[error("authentication failed")]
    Decrypt,
}

/// AES-256-GCM with a 16-byte nonce (the ecies crate's `Aes256Gcm`, not the 12-byte default).
type Aes256Gcm16 = AesGcm<Aes256, U16>;

const PK_LEN: usize = 65;
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = PK_LEN + NONCE_LEN + TAG_LEN;

/// Encrypts to `receiver`; the ephemeral key and the nonce are drawn from `rng` (in that order).
pub fn encrypt<R: RngCore + CryptoRng>(
    receiver: &PublicKey,
    plaintext: &[u8],
    rng: &mut R,
) -> Vec<u8> {
    let ephemeral = Scalar::random(rng);
    let ephemeral_pk = PublicKey::from_secret_key(
        secp(),
        &ephemeral
            .to_secret_key()
            .expect("invariant: Scalar::random is non-zero"),
    );
    let shared =
        point_mul(receiver, &ephemeral).expect("invariant: non-zero scalar times a valid point");
    let key = derive_key(&ephemeral_pk, &shared);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);

    let mut body = plaintext.to_vec();
    let tag = Aes256Gcm16::new(&key.into())
        .encrypt_in_place_detached(&nonce.into(), &[], &mut body)
        .expect("invariant: AES-GCM encrypts any message shorter than 64 GiB");
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&ephemeral_pk.serialize_uncompressed());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&body);
    out
}

pub fn decrypt(secret: &SecretKey, ciphertext: &[u8]) -> Result<Vec<u8>, EciesError> {
    if ciphertext.len() < HEADER_LEN {
        return Err(EciesError::TooShort(ciphertext.len()));
    }
    let (ephemeral, rest) = ciphertext.split_at(PK_LEN);
    let (nonce, rest) = rest.split_at(NONCE_LEN);
    let (tag, body) = rest.split_at(TAG_LEN);
    // Only the default (uncompressed) ephemeral key format is accepted, as in ecies' default config.
    if ephemeral[0] != 0x04 {
        return Err(EciesError::BadEphemeralKey);
    }
    let ephemeral_pk = PublicKey::from_slice(ephemeral).map_err(|_| EciesError::BadEphemeralKey)?;
    let shared = point_mul(&ephemeral_pk, &Scalar::from_secret_key(secret))
        .expect("invariant: a SecretKey is non-zero and the point is valid");
    let key = derive_key(&ephemeral_pk, &shared);
    let mut out = body.to_vec();
    Aes256Gcm16::new(&key.into())
        .decrypt_in_place_detached(nonce.into(), &[], &mut out, tag.into())
        .map_err(|_| EciesError::Decrypt)?;
    Ok(out)
}

/// HKDF-SHA256(salt none, ikm = sender_pk ‖ shared_point, both uncompressed; info empty) → 32 bytes.
fn derive_key(ephemeral_pk: &PublicKey, shared: &PublicKey) -> [u8; 32] {
    let mut ikm = [0u8; 2 * PK_LEN];
    ikm[..PK_LEN].copy_from_slice(&ephemeral_pk.serialize_uncompressed());
    ikm[PK_LEN..].copy_from_slice(&shared.serialize_uncompressed());
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, &ikm)
        .expand(&[], &mut key)
        .expect("invariant: 32 bytes is a valid HKDF-SHA256 output length");
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn sk(byte_hex: &str) -> SecretKey {
        SecretKey::from_slice(&hex::decode(byte_hex).unwrap()).unwrap()
    }

    fn small_sk(i: u8) -> SecretKey {
        let mut b = [0u8; 32];
        b[31] = i;
        SecretKey::from_slice(&b).unwrap()
    }

    /// ecies/rs `test_known_shared_secret` (uncompressed HKDF input): sk 2, peer pk 3·G.
    #[test]
    fn crypto_ecies_known_shared_secret() {
        let pk2 = PublicKey::from_secret_key(secp(), &small_sk(2));
        let pk3 = PublicKey::from_secret_key(secp(), &small_sk(3));
        let shared = point_mul(&pk3, &Scalar::from_u32(2)).unwrap();
        assert_eq!(
            hex::encode(derive_key(&pk2, &shared)),
            "6f982d63e8590c9d9b5b4c1959ff80315d772edd8f60287c9361d548d5200f82"
        );
    }

    /// ecies/rs `test_known_encrypted` (default config, 16-byte nonce): a ciphertext made by the
    /// ecies crate decrypts here byte-for-byte.
    #[test]
    fn crypto_ecies_decrypts_ecies_crate_ciphertext() {
        let secret = sk("e520872701d9ec44dbac2eab85512ad14ad0c42e01de56d7b528abd8524fcb47");
        let ct = hex::decode("047be1885aeb48d4d4db0c992996725d3264784fef88c5b60782f8d0f940c213227fc3f904f846d5ec3d0fba6653754501e8ebadc421aa3892a20fef33cff0206047058a4cfb4efbeae96b2d019b4ab2edce33328748a0d008a69c8f5816b72d45bd9b5a41bb6ea0127ab23057ec6fcd").unwrap();
        assert_eq!(decrypt(&secret, &ct).unwrap(), "hello world🌍".as_bytes());
    }

    /// Cross-checked once against ecies 0.2.7 (`pure`+`std`, the version Spark pins) in a scratch
    /// crate outside the workspace (it pulls getrandom, so it is not a dev-dependency here):
    /// ecies 0.2.7 produced `theirs`, and it decrypted `ours` (this encrypt, seed 1) to the text.
    #[test]
    fn crypto_ecies_cross_checked_with_ecies_0_2_7() {
        let theirs = hex::decode("045beeca1604195dcffbe7459795f7338cd7bad624fc7dfd84a3158d2309de37147f67e7ea405267a2a46d03fe3cfd27280153b3923aa588f27545a2dbd1b2a0775af14abb3092d99cfd9badc0f4a69d6d14b72cbebacd89b0fec86a8b725d8a47c6d80020df3c2cc2304e640f03eabb7b9bc4f6cf1739").unwrap();
        let sk22 = SecretKey::from_slice(&[0x22; 32]).unwrap();
        assert_eq!(
            decrypt(&sk22, &theirs).unwrap(),
            "ecies 0.2.7→sparksim".as_bytes()
        );

        let sk11 = SecretKey::from_slice(&[0x11; 32]).unwrap();
        let pk11 = PublicKey::from_secret_key(secp(), &sk11);
        let ours = encrypt(
            &pk11,
            "sparksim→ecies 🌍".as_bytes(),
            &mut ChaCha20Rng::seed_from_u64(1),
        );
        assert_eq!(hex::encode(&ours), "049a21cfa668067afd9c29736673b2c30c6c19d51dae085981f232a28745ede2fe12b28bb5cbad81ed0005e563d34241e1e1b4087cdae3297ff7e6bd7f6adcea73000efec87c5749ec1157912e0e171f6012697a6d0640b579ac4ce75d7d11e75ec1330216b2e372b3a346c7d0287dc9634820e2e55f");
    }

    /// ecies/rs `test_aes_known_key`: AES-256-GCM, 16-byte IV, layout iv ‖ tag ‖ ciphertext.
    #[test]
    fn crypto_ecies_known_aes_vector() {
        let key = [0u8; 32];
        let iv = hex::decode("f3e1ba810d2c8900b11312b7c725565f").unwrap();
        let tag = hex::decode("ec3b71e17c11dbe31484da9450edcf6c").unwrap();
        let mut body = hex::decode("02d2ffed93b856f148b9").unwrap();
        Aes256Gcm16::new(&key.into())
            .decrypt_in_place_detached(iv.as_slice().into(), &[], &mut body, tag.as_slice().into())
            .unwrap();
        assert_eq!(body, b"helloworld");
    }

    #[test]
    fn crypto_ecies_roundtrip_tamper_and_determinism() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let receiver = Scalar::random(&mut rng).to_secret_key().unwrap();
        let receiver_pk = PublicKey::from_secret_key(secp(), &receiver);
        let msg = b"secret share tweak";
        let ct = encrypt(&receiver_pk, msg, &mut rng);
        assert_eq!(ct.len(), HEADER_LEN + msg.len());
        assert_eq!(ct[0], 0x04);
        assert_eq!(decrypt(&receiver, &ct).unwrap(), msg);
        assert_eq!(
            decrypt(&receiver, &encrypt(&receiver_pk, b"", &mut rng)).unwrap(),
            b""
        );

        // Every region is authenticated or key-bearing.
        for pos in [PK_LEN, PK_LEN + NONCE_LEN, HEADER_LEN, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[pos] ^= 1;
            assert_eq!(
                decrypt(&receiver, &bad),
                Err(EciesError::Decrypt),
                "byte {pos}"
            );
        }
        let mut bad_pk = ct.clone();
        bad_pk[10] ^= 1;
        assert_eq!(
            decrypt(&receiver, &bad_pk),
            Err(EciesError::BadEphemeralKey)
        );
        let other = Scalar::random(&mut rng).to_secret_key().unwrap();
        assert_eq!(decrypt(&other, &ct), Err(EciesError::Decrypt));
        assert_eq!(
            decrypt(&receiver, &ct[..HEADER_LEN - 1]),
            Err(EciesError::TooShort(HEADER_LEN - 1))
        );

        let a = encrypt(&receiver_pk, msg, &mut ChaCha20Rng::seed_from_u64(9));
        let b = encrypt(&receiver_pk, msg, &mut ChaCha20Rng::seed_from_u64(9));
        assert_eq!(a, b);
        assert_ne!(
            a,
            encrypt(&receiver_pk, msg, &mut ChaCha20Rng::seed_from_u64(10))
        );
    }
}
