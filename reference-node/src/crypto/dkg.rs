//! The operators' DKG (FROST Pedersen DKG, frost `keys::dkg`), batched: one run produces `count`
//! independent keyshares. Packages travel as opaque bytes through the simulated network.
use super::signing::KeyShare;
use crate::types::OperatorId;
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

/// Returns my secret state and my round-1 package for each of the `count` keys (same to everyone).
pub fn part1<R: RngCore + CryptoRng>(me: OperatorId, n: u16, t: u16, count: usize, rng: &mut R) -> Result<(Round1Secret, Vec<Vec<u8>>), DkgError> { unimplemented!() }
/// `round1_from_others`: every other operator's round-1 packages, one per key.
/// Returns my round-2 state and, per recipient, its round-2 packages (one per key).
pub fn part2(secret: Round1Secret, round1_from_others: &BTreeMap<OperatorId, Vec<Vec<u8>>>) -> Result<(Round2Secret, BTreeMap<OperatorId, Vec<Vec<u8>>>), DkgError> { unimplemented!() }
/// `round2_to_me`: from every other operator, the packages addressed to me, one per key.
pub fn part3(me: OperatorId, secret: &Round2Secret, round1_from_others: &BTreeMap<OperatorId, Vec<Vec<u8>>>, round2_to_me: &BTreeMap<OperatorId, Vec<Vec<u8>>>) -> Result<Vec<KeyShare>, DkgError> { unimplemented!() }
