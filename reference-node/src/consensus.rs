//! The data of the 2026 two-phase-commit consensus engine (spark-protocol §4.10): flow ids, the
//! operation a flow carries, its decisions and the durable `FlowExecution` row. The engine
//! itself is `operator/twopc.rs`; these types live apart because messages (`msg.rs`) and the
//! store (`operator/store.rs`) both carry them.
use crate::msg::{RefundSet, TransferInit};
use crate::operator::coop_exit::CoopExitRow;
use crate::types::{LeafId, Micros, OperatorId, TransferId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How operators settle cross-operator decisions (scenario `protocol.consensus`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Consensus {
    /// Oct-2025: durable gossip rows, the coordinator applies its own part after every receipt.
    #[default]
    Gossip,
    /// 2026: coordinator-driven prepare / commit / rollback with reconciliation and presumed
    /// abort (`operator/twopc.rs`).
    TwoPhase,
}

/// A flow execution, named by its coordinator. `seq` carries the coordinator's incarnation in
/// its high 32 bits, so a coordinator that lost unsynced writes in a crash never reuses the id
/// of a flow whose Prepare may already be out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FlowId {
    pub coordinator: OperatorId,
    pub seq: u64,
}

impl std::fmt::Display for FlowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "flow {}/{}.{}", self.coordinator, self.seq >> 32, self.seq & 0xffff_ffff)
    }
}

/// What a participant does on Prepare (its domain work, in the same store transaction as its
/// PARTICIPANT row).
// Carried boxed (`InternalRequest::ConsensusPrepare`), so the send variant's size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowOp {
    /// Send (`start_transfer_v2`): record the transfer with its pending sender tweak and lock
    /// the leaves (the domain work of `InitiateTransfer`).
    StartTransfer {
        /// `InitiateTransfer`'s fields (bincode writes them inline: the bytes are those of the
        /// flat variant it replaced).
        init: TransferInit,
        /// The coordinator holds this send's sender tweak past COMMIT (a swap leg or a
        /// cooperative exit, `operator/tweak_hold.rs`): COMMIT then records it, and the tweak
        /// waits for the hold's own decision.
        held: bool,
        /// A cooperative exit: its exit row (connector tx), recorded with the Prepare.
        coop_exit: Option<Box<CoopExitRow>>,
    },
    /// Claim: lock the receiver's stored tweak for settle `attempt` (its digests must match).
    ReceiverSettle { transfer: TransferId, attempt: u64, tweak_digests: BTreeMap<LeafId, [u8; 32]> },
    /// Claim's end (`FinalizeTransfer`): store the receiver's signed refunds, transfer
    /// COMPLETED. Decided by the coordinator without a vote (its preconditions, the receiver
    /// settle's COMMIT and the refunds' signatures, are already decided), delivered with its op
    /// by `ConsensusDecided`; a participant that cannot apply it yet keeps its row IN_FLIGHT and
    /// reconciles.
    FinalizeTransfer { transfer: TransferId, refunds: BTreeMap<LeafId, RefundSet> },
}

impl FlowOp {
    pub fn transfer(&self) -> TransferId {
        match self {
            FlowOp::StartTransfer { init, .. } => init.transfer,
            FlowOp::ReceiverSettle { transfer, .. } | FlowOp::FinalizeTransfer { transfer, .. } => *transfer,
        }
    }
    /// The decisions of this op: (commit, rollback). The rollback is pre-filled when the flow
    /// starts, so a sweep can roll back without the coordinator's (volatile) session.
    pub fn decisions(&self) -> (FlowDecision, FlowDecision) {
        match self {
            FlowOp::StartTransfer { init, held: false, .. } => (FlowDecision::SettleSender { transfer: init.transfer }, FlowDecision::CancelTransfer { transfer: init.transfer }),
            FlowOp::StartTransfer { init, held: true, .. } => (FlowDecision::HoldSender { transfer: init.transfer }, FlowDecision::CancelTransfer { transfer: init.transfer }),
            FlowOp::ReceiverSettle { transfer, attempt, .. } => (
                FlowDecision::ReceiverCommit { transfer: *transfer, attempt: *attempt },
                FlowDecision::ReceiverRollback { transfer: *transfer, attempt: *attempt },
            ),
            FlowOp::FinalizeTransfer { transfer, .. } => (FlowDecision::FinalizeTransfer { transfer: *transfer }, FlowDecision::Forget { transfer: *transfer }),
        }
    }
}

/// The domain effect of a decision on one operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowDecision {
    /// Apply the sender's key tweak (→ SENDER_KEY_TWEAKED).
    SettleSender { transfer: TransferId },
    /// Cancel the transfer (→ RETURNED, leaves AVAILABLE).
    CancelTransfer { transfer: TransferId },
    /// Apply the receiver's key tweak (→ RECEIVER_KEY_TWEAK_APPLIED).
    ReceiverCommit { transfer: TransferId, attempt: u64 },
    /// Unlock the receiver's tweak (→ SENDER_KEY_TWEAKED).
    ReceiverRollback { transfer: TransferId, attempt: u64 },
    /// A held send committed: the transfer stays recorded (SENDER_KEY_TWEAK_PENDING) and its
    /// tweak waits for the hold's decision (swap settle, coop-exit confirmations).
    HoldSender { transfer: TransferId },
    /// Store the receiver's refunds kept with the flow's op (→ COMPLETED).
    FinalizeTransfer { transfer: TransferId },
    /// Nothing to undo (the rollback of a flow decided without a vote: only a coordinator that
    /// lost its row answers so, and then nothing was applied anywhere).
    Forget { transfer: TransferId },
}

impl FlowDecision {
    pub fn transfer(&self) -> TransferId {
        match self {
            FlowDecision::SettleSender { transfer }
            | FlowDecision::CancelTransfer { transfer }
            | FlowDecision::ReceiverCommit { transfer, .. }
            | FlowDecision::ReceiverRollback { transfer, .. }
            | FlowDecision::HoldSender { transfer }
            | FlowDecision::FinalizeTransfer { transfer }
            | FlowDecision::Forget { transfer } => *transfer,
        }
    }

    /// The transfer of a send's COMMIT (held or not).
    pub fn send_commit_of(&self) -> Option<TransferId> {
        match self {
            FlowDecision::SettleSender { transfer } | FlowDecision::HoldSender { transfer } => Some(*transfer),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FlowStatus {
    /// Coordinator: started, not decided. Participant: prepared, waiting for the decision.
    InFlight,
    Committed,
    RolledBack,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowRole {
    Coordinator,
    Participant,
}

/// One operator's durable `FlowExecution` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRow {
    pub role: FlowRole,
    pub status: FlowStatus,
    /// Every operator but the coordinator.
    pub participants: BTreeSet<OperatorId>,
    pub transfer: TransferId,
    pub commit: FlowDecision,
    pub rollback: FlowDecision,
    /// When this operator wrote the row (the sweep and reconciliation measure staleness from it).
    pub started_at: Micros,
    /// The op of a flow decided without a vote (its effect needs the op's data).
    #[serde(default)]
    pub op: Option<Box<FlowOp>>,
}
