//! Facts nodes report to the checker and the trace (never seen by other nodes).
use crate::crypto::PublicKey;
use crate::types::{LeafId, OperatorId, TransferId, WalletId};
use bitcoin::Transaction;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Observation {
    /// A signer used a nonce (identified by its commitment digest) to sign `message` (I-11).
    NonceUsed { signer: String, commitment: [u8; 32], message: [u8; 32] },
    /// A wallet obtained a fully signed refund-type tx for a leaf; `owner` is the identity it
    /// pays (I-6 keeps every one of them: an old owner never forgets its refunds).
    RefundSigned { leaf: LeafId, owner: PublicKey, tx: Transaction },
    /// A wallet broadcast a deposit tx; `holds_signed_exit` must be true (I-14).
    DepositBroadcast { wallet: WalletId, leaf: LeafId, holds_signed_exit: bool },
    DepositConfirmed { wallet: WalletId, leaf: LeafId, value_sats: u64 },
    /// The coordinator acknowledged the transfer to its sender (L-1 starts here).
    TransferSent { transfer: TransferId, sender: WalletId, receiver: PublicKey, leaf: LeafId, value_sats: u64 },
    /// A send failed and the leaf went back to the sender.
    TransferReturned { transfer: TransferId, sender: WalletId },
    TransferClaimed { transfer: TransferId, receiver: WalletId },
    /// A wallet's unilateral exit had its refund confirmed on L1.
    ExitConfirmed { wallet: WalletId, leaf: LeafId, value_sats: u64 },
    /// A workload command that could not be carried out (e.g. no available leaf).
    CommandSkipped { wallet: WalletId, reason: String },
    /// L1 reorg: a deposit `node` had counted as confirmed left the chain. `leaf_status` is the
    /// leaf's state then: an operator puts an AVAILABLE leaf back to CREATING; a state past it
    /// means the leaf moved off-chain on a deposit that may never come back (spark-protocol §8.2).
    DepositReorged { node: crate::types::NodeId, leaf: LeafId, leaf_status: String },
    /// L1 reorg: the exit refund a wallet saw confirmed left the chain; the exit resumes.
    ExitReorged { wallet: WalletId, leaf: LeafId },
    /// Something a node rejected (a message, a tx): evidence for reports, not a violation.
    Rejected { what: String, reason: String },
    // --- Byzantine operators and their detection (operator/byzantine.rs) ---
    /// A coordinator's identifiable abort: `culprit` sent a bad share, lied about a key, or
    /// withheld a signing round; it is left out of the next signer sets.
    CulpritNamed { by: OperatorId, culprit: OperatorId, reason: String },
    /// An honest operator's enforcing signer guard refused to sign (spark-protocol §6.2/§6.3).
    GuardRefused { signer: OperatorId, rule: GuardRule, detail: String },
    /// A colluding operator co-signed, with a key share it should have forgotten, a spend under
    /// `verifying_key` for a former owner (spark-protocol §5.1).
    ColludedSignature { operator: OperatorId, verifying_key: PublicKey },
    /// A former owner tried to spend a leaf it sent away with colluding operators' old shares:
    /// `Ok(txid)` it broadcast a valid spend, `Err` the protocol blocked it.
    TheftAttempt { wallet: WalletId, leaf: LeafId, colluders: Vec<OperatorId>, outcome: Result<[u8; 32], String> },
    /// Renew (wallet/renew.rs): a wallet finalized a renew of `leaf`; its exit chain now has
    /// `layers` node layers.
    Renewed { wallet: WalletId, leaf: LeafId, kind: String, layers: u32 },
    /// Lightning (wallet/lightning.rs, operator/preimage.rs, wallet/ssp_lightning.rs):
    /// the SSP issued a hold invoice to `wallet` for `payment_hash`.
    LightningInvoiceIssued { wallet: WalletId, payment_hash: [u8; 32], amount_sats: u64, threshold: u16 },
    /// An operator stored its preimage share for `payment_hash`.
    PreimageShareStored { operator: OperatorId, payment_hash: [u8; 32] },
    /// An operator released its preimage share (to the coordinator `to`) for `transfer`;
    /// `recorded`: its own record of the transfer existed when it did.
    PreimageShareReleased { operator: OperatorId, to: OperatorId, payment_hash: [u8; 32], transfer: TransferId, recorded: bool },
    /// The coordinator reconstructed a preimage and committed the swap transfer.
    PreimageRevealed { by: OperatorId, payment_hash: [u8; 32], preimage: [u8; 32], transfer: TransferId },
    /// The SSP learned the preimage and settled the payer's held HTLC (receive done).
    LightningReceiveSettled { ssp: WalletId, payment_hash: [u8; 32], preimage: [u8; 32], transfer: TransferId },
    /// The SSP failed the payer's held HTLC back (receive abandoned, its leaves returned).
    LightningReceiveFailed { ssp: WalletId, payment_hash: [u8; 32], reason: String },
    /// Split (wallet/split.rs): the operators finalized a split of `parent` into `children`
    /// (leaf, value) for this wallet.
    LeafSplit { wallet: WalletId, parent: LeafId, children: Vec<(LeafId, u64)> },
    /// Aggregate (wallet/aggregate.rs): the operators folded `children` back into `parent`.
    LeafAggregated { wallet: WalletId, parent: LeafId, children: Vec<LeafId> },
    /// Leaf swaps (operator/swap.rs): the coordinator recorded a swap's primary transfer.
    SwapStarted { primary: TransferId, version: crate::msg::SwapVersion, value_sats: u64 },
    /// Leaf swaps: the coordinator's decision, durable: both legs settled or both returned.
    SwapDecided { primary: TransferId, counters: Vec<TransferId>, settled: bool },
    /// Leaf swaps v2: the SSP extracted the adaptor secret from the user's completed signature.
    SwapAdaptorLearned { primary: TransferId, wallet: WalletId },
    // --- Watchtower and fees flow (operator/watchtower.rs, wallet/race.rs) ---
    /// An operator's watchtower broadcast the current owner's direct refund `txid` of a leaf
    /// whose node tx is on chain (first broadcast per operator and leaf; it repeats every block).
    WatchtowerBroadcast { operator: OperatorId, leaf: LeafId, txid: [u8; 32], height: u32 },
    /// A former owner started racing its stale refund of `leaf` (spark-protocol §5.2 item 1).
    StaleRaceStarted { wallet: WalletId, leaf: LeafId },
    /// The current owner saw its leaf's node tx on chain (someone else's exit) and started its
    /// own exit to win the timelock race.
    OwnerDefends { wallet: WalletId, leaf: LeafId },
    // --- Cooperative exit (wallet/coop_exit.rs) ---
    /// The operators signed `user`'s connector refunds for `ssp`: the coop exit is under way and
    /// the user is owed `payout_sats` on L1 by the exit tx `exit_txid` (L-5 starts here).
    CoopExitStarted { user: WalletId, ssp: WalletId, leaf: LeafId, transfer: TransferId, value_sats: u64, payout_sats: u64, exit_txid: bitcoin::Txid },
    /// The user saw its payout confirmed on L1.
    CoopExitPaid { user: WalletId, leaf: LeafId, exit_txid: bitcoin::Txid, payout_sats: u64 },
    // --- Lightning send (wallet/lightning_send.rs, operator/preimage_send.rs) ---
    /// The coordinator locked `wallet`'s transfer to the SSP for `payment_hash` (WAITING_FOR_PREIMAGE).
    LightningSendLocked { wallet: WalletId, payment_hash: [u8; 32], transfer: TransferId, amount_sats: u64, fee_sats: u64 },
    /// The SSP paid the invoice on the (simulated) Lightning network and learned its preimage.
    LightningSendPaid { ssp: WalletId, payment_hash: [u8; 32], preimage: [u8; 32], transfer: TransferId },
    /// The SSP's payment of the invoice failed: nobody was paid.
    LightningSendPaymentFailed { ssp: WalletId, payment_hash: [u8; 32], transfer: TransferId },
    /// An operator accepted `provide_preimage`: the request is PREIMAGE_SHARED, the sender's tweak settles.
    PreimageProvided { by: OperatorId, payment_hash: [u8; 32], preimage: [u8; 32], transfer: TransferId },
    /// The sender learned the outcome of its Lightning send: `settled` (the preimage, its
    /// leaves went to the SSP) or returned (its leaves are its own again).
    LightningSendDone { wallet: WalletId, payment_hash: [u8; 32], transfer: TransferId, settled: bool },
    /// Renew/send race (wallet/device.rs): the operators refused a send the user's second device
    /// built from its stale leaf cache; the device re-synced (`dropped`: the hazard instead
    /// dropped the leaf from the wallet's balance).
    DeviceStaleRefused { wallet: WalletId, leaf: LeafId, dropped: bool },
}

/// Which rule of the enforcing signer guard refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuardRule {
    /// A nonce that already signed was asked to sign again (I-11).
    NonceReuse,
    /// A refund whose timelock is not strictly below the one it replaces (I-6).
    RefundTimelock,
}
