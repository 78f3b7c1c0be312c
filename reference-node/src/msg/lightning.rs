//! Lightning messages (spark-protocol §2.8, §4.7, §4.8): the invoice the SSP issues, the preimage
//! share a receiving wallet stores with each operator, and the preimage swap that ties a Spark
//! transfer to a payment hash.

use crate::crypto::vss::VssShare;
use crate::crypto::PublicKey;
use crate::types::Micros;
use serde::{Deserialize, Serialize};

/// The simulated Lightning network behind the SSP (wallet/ssp_lightning.rs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LightningParams {
    /// Chance, in parts per million, that a payment fails (scenario `ssp.lightning_failure_rate`):
    /// for a receive, the payer's HTLC never reaches the SSP.
    pub failure_ppm: u32,
    /// How long after an invoice is issued the payer's HTLC reaches the SSP.
    pub payer_delay: Micros,
    /// Seed of the network's draws (the run's "ssp/lightning" stream), so every failure is a
    /// function of (seed, payment hash): independent of event order and of other draws.
    pub seed: [u8; 32],
}

/// A (simulated) BOLT11 invoice: what the operators check a stored preimage share against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// H = SHA256(r).
    pub payment_hash: [u8; 32],
    pub amount_sats: u64,
    /// Absolute simulated time after which the invoice can no longer be paid.
    pub expires_at: Micros,
}

/// Why a preimage swap exists (`initiate_preimage_swap_v3{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PreimageReason {
    /// The user pays an invoice through the SSP: user leaves → SSP, released by `provide_preimage`.
    Send,
    /// The user is paid over Lightning: SSP leaves → user, released by the operators' shares.
    Receive,
}

/// The Lightning side of a `PREIMAGE_SWAP` transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreimageSwap {
    pub reason: PreimageReason,
    pub payment_hash: [u8; 32],
    /// The invoice amount (RECEIVE: must equal the stored invoice; the transfer must carry it).
    pub amount_sats: u64,
    /// RECEIVE: must be 0. SEND: the SSP's quoted fee, included in the transferred value.
    pub fee_sats: u64,
}

/// `store_preimage_share`: one operator's Feldman share of the preimage r (spark-protocol §4.7
/// step 2), with the invoice it belongs to and the user the paid leaves must go to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreimageShareRequest {
    pub payment_hash: [u8; 32],
    pub share: VssShare,
    pub threshold: u16,
    pub invoice: Invoice,
    pub user_identity: PublicKey,
}
