//! Wallet ↔ service provider (SSP) messages. In Spark these are the SSP's own API (GraphQL:
//! `requestLeavesSwap`, `requestCoopExit`, `requestLightningSend`, …), not operator RPCs: the SSP
//! is a Spark user with liquidity that sells services (spark-protocol §1, §4.3, §4.5, §4.7, §4.8).
//! Each flow adds its request/reply variants here.

use crate::crypto::PublicKey;
use crate::msg::{NodeSet, RefundSet};
use crate::types::{LeafId, TransferId};
use bitcoin::{OutPoint, ScriptBuf, Transaction, Txid};
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
    /// Cooperative exit (§4.5 step 2, GraphQL `requestCoopExit`): withdraw `leaf` to
    /// `withdrawal` on L1 for the quoted `fee_sats`. `exit_id` is the user's transfer id.
    CoopExit { exit_id: TransferId, leaf: LeafId, value_sats: u64, fee_sats: u64, withdrawal: ScriptBuf },
    /// Cooperative exit (§4.5 step 4, `completeCoopExit`): the operators signed the connector
    /// refunds paying the SSP; the SSP checks them and broadcasts the exit tx.
    CompleteCoopExit { exit_id: TransferId, leaf: Box<CoopExitLeaf> },
    /// Lightning send (§4.8 step 1): an invoice of `amount_sats` to pay (the simulated payee's)
    /// with the SSP's fee for paying it.
    LightningSendQuote { amount_sats: u64 },
    /// Lightning send (§4.8 step 3, `requestLightningSend`): `transfer` (locked to the hash at
    /// `coordinator`) pays for the invoice with this hash: pay it.
    LightningSend { transfer: TransferId, payment_hash: [u8; 32], coordinator: crate::types::OperatorId },
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

/// What the SSP needs to exit a leaf it bought alone: the leaf's signed node txs and the
/// connector refunds (input 0 signed by the leaf key, input 1 the SSP's connector).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoopExitLeaf {
    pub leaf: LeafId,
    pub value_sats: u64,
    pub verifying_key: PublicKey,
    pub deposit_outpoint: OutPoint,
    /// Node layers above the leaf node (renew and split grow them), root first.
    pub ancestors: Vec<NodeSet>,
    pub nodes: NodeSet,
    pub connector_refunds: RefundSet,
}

/// A scripted SSP misbehaviour in the cooperative exit (scenario `[ssp] coop_exit_fault`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoopExitFault {
    /// The SSP takes the signed connector refunds but never broadcasts the exit tx (§4.5
    /// failure analysis: the user must get its leaf back and can exit it alone).
    NeverBroadcast,
}

impl SspRequest {
    pub fn kind(&self) -> &'static str {
        match self {
            SspRequest::Quote { .. } => "SspQuote",
            SspRequest::LightningInvoice { .. } => "SspLightningInvoice",
            SspRequest::Swap(_) => "SspSwap",
            SspRequest::CoopExit { .. } => "SspCoopExit",
            SspRequest::CompleteCoopExit { .. } => "SspCompleteCoopExit",
            SspRequest::LightningSendQuote { .. } => "SspLightningSendQuote",
            SspRequest::LightningSend { .. } => "SspLightningSend",
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
    /// Cooperative exit: the (unbroadcast) exit tx's id and the connector tx spending it, whose
    /// output 0 is the leaf's connector (the last output is not a connector, §3.7).
    CoopExit { exit_id: TransferId, exit_txid: Txid, connector_tx: Transaction },
    /// The SSP accepted the connector refunds (and broadcast the exit tx, unless it misbehaves).
    CoopExitCompleted { exit_id: TransferId },
    /// Lightning send: the invoice to pay and the fee the transfer must add to its amount.
    LightningSendInvoice { invoice: super::lightning::Invoice, fee_sats: u64 },
    /// Lightning send: the SSP will pay the invoice for this transfer.
    LightningSendAccepted { payment_hash: [u8; 32] },
}
