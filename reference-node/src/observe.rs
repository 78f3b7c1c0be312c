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
    // --- Cooperative exit (wallet/coop_exit.rs) ---
    /// The operators signed `user`'s connector refunds for `ssp`: the coop exit is under way and
    /// the user is owed `payout_sats` on L1 by the exit tx `exit_txid` (L-5 starts here).
    CoopExitStarted { user: WalletId, ssp: WalletId, leaf: LeafId, transfer: TransferId, value_sats: u64, payout_sats: u64, exit_txid: bitcoin::Txid },
    /// The user saw its payout confirmed on L1.
    CoopExitPaid { user: WalletId, leaf: LeafId, exit_txid: bitcoin::Txid, payout_sats: u64 },
}

/// Which rule of the enforcing signer guard refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuardRule {
    /// A nonce that already signed was asked to sign again (I-11).
    NonceReuse,
    /// A refund whose timelock is not strictly below the one it replaces (I-6).
    RefundTimelock,
}
