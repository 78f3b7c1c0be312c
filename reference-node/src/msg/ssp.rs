//! Wallet ↔ service provider (SSP) messages. In Spark these are the SSP's own API (GraphQL:
//! `requestLeavesSwap`, `requestCoopExit`, `requestLightningSend`, …), not operator RPCs: the SSP
//! is a Spark user with liquidity that sells services (spark-protocol §1, §4.3, §4.5, §4.7, §4.8).
//! Each flow adds its request/reply variants here.

use serde::{Deserialize, Serialize};

/// A service the SSP sells, for fee quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SspService {
    /// Re-denominate leaves (§4.3): free in Spark's published fee schedule.
    LeafSwap,
    /// Withdraw to L1 (§4.5): the SSP's L1 fee share plus its fee.
    CoopExit,
    /// Pay a Lightning invoice (§4.8): 0.25% + routing.
    LightningSend,
    /// Receive over Lightning (§4.7): 0.15%.
    LightningReceive,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SspRequest {
    /// What would `service` for `amount_sats` cost (the SDK's fee estimate calls)?
    Quote { service: SspService, amount_sats: u64 },
    /// Lightning receive (§4.7 step 1, `requestLightningReceive`): an invoice for this hash.
    LightningInvoice { payment_hash: [u8; 32], amount_sats: u64 },
    /// Leaf swaps (wallet/swap.rs, `requestLeavesSwap`): counter my primary transfer with leaves
    /// of these denominations.
    Swap(Box<SwapOffer>),
}

/// A user's swap request to the SSP (spark-protocol §4.3 v2 step 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapOffer {
    pub primary: crate::types::TransferId,
    pub version: super::SwapVersion,
    /// Sum = the primary's value; each a power of two the SSP holds.
    pub target_sats: Vec<u64>,
    /// v2: T = a·G, the pre-signature of the primary's CPFP refund, that refund and its prevout.
    pub adaptor: Option<SwapAdaptor>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapAdaptor {
    pub point: crate::crypto::PublicKey,
    pub pre_signature: crate::crypto::adaptor::PreSignature,
    pub refund: bitcoin::Transaction,
    pub prevout: bitcoin::TxOut,
}

impl SspRequest {
    pub fn kind(&self) -> &'static str {
        match self {
            SspRequest::Quote { .. } => "SspQuote",
            SspRequest::LightningInvoice { .. } => "SspLightningInvoice",
            SspRequest::Swap(_) => "SspSwap",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SspReply {
    Quote { service: SspService, amount_sats: u64, fee_sats: u64 },
    /// Lightning receive: the hold invoice the SSP issued.
    Invoice(super::lightning::Invoice),
    /// Leaf swaps: the SSP accepted and will counter-transfer.
    SwapAccepted { primary: crate::types::TransferId },
}
