//! Leaf swap messages (spark-protocol §4.3): the user's primary transfer to the SSP, the SSP's
//! counter transfers back, and the swap's state as the coordinator keeps it. Wrapped in one
//! `WalletRequest::Swap` / `WalletReply::Swap` variant each.

use super::{RefundSet, TransferPackage};
use crate::crypto::PublicKey;
use crate::types::{Micros, TransferId};
use serde::{Deserialize, Serialize};

/// How a swap is made atomic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SwapVersion {
    /// v2: the user's leg settles when the user completes its adaptor signature (revealing `a`
    /// to the SSP), after the SSP's counter transfers are in.
    V2,
    /// v3: the operators settle both legs' sender tweaks in one store transaction as soon as
    /// the counter transfers cover the primary (`initiate_swap_primary_transfer`).
    V3,
}

/// A transfer's fields as `StartTransfer` carries them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapTransfer {
    pub transfer: TransferId,
    pub sender: PublicKey,
    pub receiver: PublicKey,
    pub expiry: Micros,
    pub package: TransferPackage,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwapRequest {
    /// The user's leg to the SSP: stored and co-signed, its sender tweak held (not applied).
    /// v2: `adaptor_point` is T = a·G as it travels (33-byte compressed, Spark's
    /// `adaptor_public_key`); the operator parses it and refuses a malformed one.
    InitiatePrimary { version: SwapVersion, adaptor_point: Option<Vec<u8>>, leg: SwapTransfer },
    /// The SSP's leg back to the user, linked to `primary` (`COUNTER_SWAP`). v2: the operators
    /// co-sign its CPFP refund under `adaptor_point` (crypto/adaptor_frost.rs).
    Counter { primary: TransferId, adaptor_point: Option<Vec<u8>>, leg: SwapTransfer },
    /// v2: the user's completions (with `a`) of each counter's CPFP refund pre-signature.
    Complete { primary: TransferId, signatures: Vec<(TransferId, Vec<u8>)> },
    /// The swap's state; the primary's signed refunds for its sender (or, once settled, receiver).
    Query { primary: TransferId },
}

impl SwapRequest {
    pub fn kind(&self) -> &'static str {
        match self {
            SwapRequest::InitiatePrimary { .. } => "InitiateSwapPrimaryTransfer",
            SwapRequest::Counter { .. } => "CounterSwap",
            SwapRequest::Complete { .. } => "CompleteSwap",
            SwapRequest::Query { .. } => "QuerySwap",
        }
    }
}

/// Where a swap stands on its coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwapStatus {
    /// Open: counter transfers worth `countered_sats` of `value_sats` are in.
    Open { value_sats: u64, countered_sats: u64 },
    /// Both legs settled (sender tweaks applied together).
    Settled,
    /// Expired or refused: both legs returned.
    Returned,
    /// The coordinator never heard of it.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapReply {
    pub primary: TransferId,
    pub status: SwapStatus,
    /// The primary's signed intermediate refunds (CPFP, direct, direct-from-CPFP).
    pub refunds: Option<RefundSet>,
    /// The leaves of the counter transfers committed so far (an SSP recovering after a crash
    /// learns from them which of its reserved leaves it countered).
    pub counter_leaves: Vec<crate::types::LeafId>,
    /// v2: each committed counter's CPFP refund as the operators signed it under T (its
    /// pre-signature, and the refund with its witness), for the user to complete or, once
    /// settled, for the SSP to extract `a` from the completion.
    pub counter_adaptors: Vec<(TransferId, super::ssp::SwapAdaptor)>,
}
