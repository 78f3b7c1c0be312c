//! Every message between parties (spark-protocol §9.2–§9.3, reduced to the flows implemented).
//! Plain serde data, so the trace hash, the simulator and a future TCP runner see the same bytes.

use crate::crypto::signing::{NonceCommitment, SignatureShare, SigningJob};
use crate::crypto::vss::VssShare;
use crate::crypto::PublicKey;
use crate::types::{KeyshareId, LeafId, Micros, OperatorId, TransferId};
use bitcoin::{OutPoint, Sequence, Transaction, TxOut};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod lightning;
pub mod ssp;
pub use ssp::{SspReply, SspRequest, SspService};
pub mod swap;
pub use swap::{SwapReply, SwapRequest, SwapStatus, SwapTransfer, SwapVersion};

/// Correlates a reply with its request: the requester's session and the phase it was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReqId {
    pub session: u64,
    pub phase: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Chain → node: the answer to a broadcast.
    BroadcastResult { txid: [u8; 32], result: Result<(), String> },
    // Bodies are boxed: every queued event carries a `Msg`, so its size is the size of the
    // simulator's event queue entries (616 bytes unboxed).
    /// Wallet → operator.
    WalletRequest { req: ReqId, body: Box<WalletRequest> },
    /// Operator → wallet.
    WalletReply { req: ReqId, body: Box<Result<WalletReply, String>> },
    /// Operator → operator, answered with `InternalReply`.
    Internal { req: ReqId, body: Box<InternalRequest> },
    InternalReply { req: ReqId, body: Box<Result<InternalReply, String>> },
    /// Durable gossip (spark-protocol §4.0): retried until acknowledged.
    Gossip { id: GossipId, body: Box<GossipBody> },
    GossipAck { id: GossipId, applied: Result<(), String> },
    /// Operator → receiver wallet: a transfer to it is ready to claim (`subscribe_to_events`).
    TransferEvent { transfer: TransferId },
    /// Former owner → operator: co-sign a spend with the key share you held while I owned the
    /// leaf. Honest operators refuse (they forgot it); colluders answer (operator/byzantine.rs).
    Collude { req: ReqId, body: Box<ColludeRequest> },
    ColludeReply { req: ReqId, body: Box<Result<ColludeReply, String>> },
    /// Wallet → service provider (msg/ssp.rs), answered with `SspReply`.
    SspRequest { req: ReqId, body: Box<SspRequest> },
    SspReply { req: ReqId, body: Box<Result<SspReply, String>> },
}

impl Msg {
    /// A short name for traces and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::BroadcastResult { .. } => "BroadcastResult",
            Msg::WalletRequest { body, .. } => body.kind(),
            Msg::WalletReply { .. } => "WalletReply",
            Msg::Internal { body, .. } => body.kind(),
            Msg::InternalReply { .. } => "InternalReply",
            Msg::Gossip { body, .. } => body.kind(),
            Msg::GossipAck { .. } => "GossipAck",
            Msg::TransferEvent { .. } => "TransferEvent",
            Msg::Collude { .. } => "Collude",
            Msg::ColludeReply { .. } => "ColludeReply",
            Msg::SspRequest { body, .. } => body.kind(),
            Msg::SspReply { .. } => "SspReply",
        }
    }
}

/// The three refund variants of a leaf, in Spark's fixed order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundSet {
    pub cpfp: Transaction,
    pub direct: Transaction,
    pub direct_from_cpfp: Transaction,
}

impl RefundSet {
    pub fn as_array(&self) -> [&Transaction; 3] {
        [&self.cpfp, &self.direct, &self.direct_from_cpfp]
    }
    pub fn into_array(self) -> [Transaction; 3] {
        [self.cpfp, self.direct, self.direct_from_cpfp]
    }
    /// (CPFP, direct) sequences, checked: an error for a refund without an input.
    pub fn sequences(&self) -> Result<(Sequence, Sequence), String> {
        let seq = |tx: &Transaction| tx.input.first().map(|i| i.sequence).ok_or("refund has no input");
        Ok((seq(&self.cpfp)?, seq(&self.direct)?))
    }
    pub fn from_vec(mut v: Vec<Transaction>) -> Option<RefundSet> {
        if v.len() != 3 {
            return None;
        }
        let direct_from_cpfp = v.pop()?;
        let direct = v.pop()?;
        let cpfp = v.pop()?;
        Some(RefundSet { cpfp, direct, direct_from_cpfp })
    }
}

/// A leaf's node txs (CPFP and direct), signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSet {
    pub cpfp: Transaction,
    pub direct: Transaction,
}

/// A leaf's exit chain (spark-protocol §3.1, §4.6): its node layers from the root down to the
/// leaf node, each a signed CPFP + direct node tx with its CSVs; the refunds spend the last one.
/// `ancestors` are the layers above the leaf node: empty for a deposit leaf (its root is its
/// leaf node); split trees start with them, renew-node and renew-node-zero append to them.
pub fn exit_layers<'a>(ancestors: &'a [NodeSet], nodes: &'a NodeSet) -> impl Iterator<Item = &'a NodeSet> + 'a {
    ancestors.iter().chain(std::iter::once(nodes))
}

impl NodeSet {
    /// The outputs a leaf's refunds spend, in `RefundSet` order: CPFP node:0, direct node:0,
    /// CPFP node:0 (spark-protocol §3.2). An error, not a panic, for a node tx without output 0.
    pub fn refund_prevouts(&self) -> Result<[Vec<TxOut>; 3], String> {
        let out = |tx: &Transaction| tx.output.first().cloned().ok_or_else(|| format!("node tx {} has no output 0", tx.compute_txid()));
        let (cpfp, direct) = (out(&self.cpfp)?, out(&self.direct)?);
        Ok([vec![cpfp.clone()], vec![direct], vec![cpfp]])
    }

    /// The three refunds of this leaf paying `receiver` at (`seq`, `direct_seq`).
    pub fn refunds_to(&self, receiver: &PublicKey, seq: Sequence, direct_seq: Sequence) -> Result<RefundSet, String> {
        let r = crate::tx::template::try_refund_txs(&self.cpfp, Some(&self.direct), 0, receiver, seq, direct_seq).map_err(|e| e.to_string())?;
        Ok(RefundSet { cpfp: r.cpfp, direct: r.direct.ok_or("no direct refund built")?, direct_from_cpfp: r.direct_from_cpfp })
    }
}

/// A transaction the wallet wants co-signed, with its nonce commitment (operator-first pattern,
/// spark-protocol §2.4a).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserJob {
    pub tx: Transaction,
    pub user_commitment: NonceCommitment,
}

/// A transaction already signed by the user against pre-fetched operator commitments
/// (user-first pattern, spark-protocol §2.4b).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSignedJob {
    pub tx: Transaction,
    pub user_commitment: NonceCommitment,
    pub user_share: SignatureShare,
    pub operator_commitments: BTreeMap<OperatorId, NonceCommitment>,
}

/// The operators' half of an operator-first signing: enough for the wallet to add its share and
/// aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSigningResult {
    pub operator_commitments: BTreeMap<OperatorId, NonceCommitment>,
    pub operator_shares: BTreeMap<OperatorId, SignatureShare>,
    pub operator_public_shares: BTreeMap<OperatorId, PublicKey>,
}

/// One operator's slice of a sender's key tweak (spark-protocol §2.5), ECIES-encrypted to that
/// operator's identity key inside the transfer package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendLeafKeyTweak {
    pub leaf: LeafId,
    pub share: VssShare,
    pub pubkey_shares_tweak: BTreeMap<OperatorId, PublicKey>,
    /// ECIES(receiver identity, e).
    pub secret_cipher: Vec<u8>,
    /// Sender identity ECDSA over SHA256(leaf_id ‖ transfer_id ‖ secret_cipher).
    pub signature: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLeafPackage {
    pub leaf: LeafId,
    pub refunds: Vec<UserSignedJob>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferPackage {
    pub leaves: Vec<TransferLeafPackage>,
    /// Operator → ECIES(operator identity, bincode(Vec<SendLeafKeyTweak>)).
    pub key_tweak_package: BTreeMap<OperatorId, Vec<u8>>,
    /// Sender identity ECDSA over the package payload (see `transfer_package_digest`).
    pub signature: Vec<u8>,
}

/// What a receiver needs to claim one leaf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimLeafView {
    pub leaf: LeafId,
    pub value_sats: u64,
    pub verifying_key: PublicKey,
    /// Y − P_SE after the sender's tweak: must equal e·G.
    pub owner_signing_key: PublicKey,
    pub deposit_outpoint: OutPoint,
    pub nodes: NodeSet,
    pub intermediate_refunds: RefundSet,
    pub secret_cipher: Vec<u8>,
    pub signature: Vec<u8>,
    /// The node layers above `nodes`, root first (see [`exit_layers`]). Not encoded when empty,
    /// so a deposit leaf's message bytes (and the trace hash) are those of a one-layer leaf;
    /// messages are only ever bincode-encoded for hashing, never decoded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<NodeSet>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTransferView {
    pub transfer: TransferId,
    pub sender: PublicKey,
    pub leaves: Vec<ClaimLeafView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverLeafTweak {
    pub leaf: LeafId,
    pub share: VssShare,
    pub pubkey_shares_tweak: BTreeMap<OperatorId, PublicKey>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimLeafJobs {
    pub leaf: LeafId,
    /// The receiver's final leaf key k·G.
    pub new_signing_key: PublicKey,
    pub refunds: Vec<UserJob>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinalizeIntent {
    Creation { leaf: LeafId },
    Transfer { transfer: TransferId },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletRequest {
    GenerateDepositAddress { identity: PublicKey, signing_key: PublicKey },
    StartDepositTreeCreation {
        identity: PublicKey,
        keyshare: KeyshareId,
        leaf: LeafId,
        deposit_tx: Transaction,
        vout: u32,
        /// [root CPFP, root direct, refund CPFP, refund direct, refund direct-from-CPFP].
        jobs: Vec<UserJob>,
    },
    /// Final aggregated signatures, in the order of the jobs they finish.
    FinalizeNodeSignatures { intent: FinalizeIntent, leaf: LeafId, signed: Vec<Transaction> },
    GetSigningCommitments { leaf: LeafId, count: u8 },
    StartTransfer {
        transfer: TransferId,
        sender: PublicKey,
        receiver: PublicKey,
        expiry: Micros,
        package: TransferPackage,
    },
    QueryTransfer { transfer: TransferId },
    QueryPendingTransfers { receiver: PublicKey },
    ClaimTweakKeys { transfer: TransferId, receiver: PublicKey, leaves: Vec<ReceiverLeafTweak> },
    ClaimSignRefunds { transfer: TransferId, receiver: PublicKey, leaves: Vec<ClaimLeafJobs> },
    /// Renew (spark-protocol §3.5, §4.4): `renew_leaf` with one signing-job variant; jobs in
    /// `tx::renew::RenewTxs::jobs` order. Answered with `Signing`.
    RenewLeaf { identity: PublicKey, leaf: LeafId, kind: crate::tx::renew::RenewKind, jobs: Vec<UserJob> },
    /// Renew: the aggregated signatures of a `RenewLeaf`'s jobs. Answered with `Finalized`.
    FinalizeRenew { identity: PublicKey, leaf: LeafId, kind: crate::tx::renew::RenewKind, signed: Vec<Transaction> },
    /// Lightning receive (spark-protocol §4.7 step 2): `store_preimage_share`, to every operator.
    StorePreimageShare(Box<lightning::PreimageShareRequest>),
    /// Lightning (§4.7 step 4, §4.8 step 3): `initiate_preimage_swap_v3`, a transfer tied to a
    /// payment hash, to the coordinator.
    InitiatePreimageSwap {
        swap: lightning::PreimageSwap,
        transfer: TransferId,
        sender: PublicKey,
        receiver: PublicKey,
        expiry: Micros,
        package: TransferPackage,
    },
    /// Lightning: the preimage the operators hold for a payment hash, once shared.
    QueryPreimage { payment_hash: [u8; 32] },
    /// Split (operator/split.rs): reserve the children's SE keys for a split of `leaf`.
    SplitPrepare { identity: PublicKey, leaf: LeafId, children: Vec<crate::split_msg::SplitChildRequest> },
    /// Split: co-sign the split node, child node and refund txs (`tx::split` job order).
    SplitSign { identity: PublicKey, leaf: LeafId, jobs: Vec<UserJob> },
    /// Split: the aggregated signatures; the coordinator stores them and gossips the split.
    SplitFinalize { identity: PublicKey, leaf: LeafId, signed: Vec<Transaction> },
    /// Aggregate (operator/aggregate.rs): fold the children of the split `leaf` back into it.
    AggregatePrepare { identity: PublicKey, leaf: LeafId },
    /// Aggregate: co-sign the aggregate node (one job per child input and variant) and refunds.
    AggregateSign { identity: PublicKey, leaf: LeafId, jobs: Vec<UserJob> },
    /// Aggregate: the signed aggregate node pair and refunds.
    AggregateFinalize { identity: PublicKey, leaf: LeafId, signed: Vec<Transaction> },
    /// Leaf swaps (msg/swap.rs, operator/swap.rs).
    Swap(SwapRequest),
    /// Cooperative exit (`cooperative_exit_v2`, spark-protocol §4.5 step 3): a transfer to the SSP
    /// whose refunds spend the leaf's connector output of `connector_tx` (which spends the exit tx).
    CooperativeExit {
        transfer: TransferId,
        sender: PublicKey,
        receiver: PublicKey,
        expiry: Micros,
        package: TransferPackage,
        exit_txid: bitcoin::Txid,
        connector_tx: Transaction,
    },
    /// Cooperative exit (§4.5 step 4): the user releases its key tweak; the operators apply it
    /// once the exit tx has its confirmations.
    FinalizeCoopExit { transfer: TransferId },
    /// Lightning send (§4.8 step 4): the SSP paid the invoice; `provide_preimage` to the
    /// transfer's coordinator releases the sender's key tweak.
    ProvidePreimage { transfer: TransferId, payment_hash: [u8; 32], preimage: [u8; 32] },
    /// Lightning send (§4.8 step 5): the SSP's payment failed; it returns the transfer to the
    /// sender (refused once the preimage was shared).
    ReturnLightningPayment { transfer: TransferId, payment_hash: [u8; 32] },
}

impl WalletRequest {
    pub fn kind(&self) -> &'static str {
        match self {
            WalletRequest::GenerateDepositAddress { .. } => "GenerateDepositAddress",
            WalletRequest::StartDepositTreeCreation { .. } => "StartDepositTreeCreation",
            WalletRequest::FinalizeNodeSignatures { .. } => "FinalizeNodeSignatures",
            WalletRequest::GetSigningCommitments { .. } => "GetSigningCommitments",
            WalletRequest::StartTransfer { .. } => "StartTransfer",
            WalletRequest::QueryTransfer { .. } => "QueryTransfer",
            WalletRequest::QueryPendingTransfers { .. } => "QueryPendingTransfers",
            WalletRequest::ClaimTweakKeys { .. } => "ClaimTweakKeys",
            WalletRequest::ClaimSignRefunds { .. } => "ClaimSignRefunds",
            WalletRequest::RenewLeaf { .. } => "RenewLeaf",
            WalletRequest::FinalizeRenew { .. } => "FinalizeRenew",
            WalletRequest::StorePreimageShare(_) => "StorePreimageShare",
            WalletRequest::InitiatePreimageSwap { .. } => "InitiatePreimageSwap",
            WalletRequest::QueryPreimage { .. } => "QueryPreimage",
            WalletRequest::SplitPrepare { .. } => "SplitPrepare",
            WalletRequest::SplitSign { .. } => "SplitSign",
            WalletRequest::SplitFinalize { .. } => "SplitFinalize",
            WalletRequest::AggregatePrepare { .. } => "AggregatePrepare",
            WalletRequest::AggregateSign { .. } => "AggregateSign",
            WalletRequest::AggregateFinalize { .. } => "AggregateFinalize",
            WalletRequest::Swap(r) => r.kind(),
            WalletRequest::CooperativeExit { .. } => "CooperativeExit",
            WalletRequest::FinalizeCoopExit { .. } => "FinalizeCoopExit",
            WalletRequest::ProvidePreimage { .. } => "ProvidePreimage",
            WalletRequest::ReturnLightningPayment { .. } => "ReturnLightningPayment",
        }
    }
}

/// The coordinator's view of a transfer, as the sender sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferOutcome {
    /// Not settled yet; ask again.
    InProgress,
    /// Acknowledged: the sender's key tweak is committed; the leaf belongs to the receiver.
    Sent,
    /// Cancelled: the leaf is the sender's again.
    Returned,
    /// The coordinator never heard of it (and holds no pending send for it).
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalletReply {
    DepositAddress {
        keyshare: KeyshareId,
        se_public_key: PublicKey,
        verifying_key: PublicKey,
        /// Operator → ECDSA over SHA256(address script).
        address_signatures: BTreeMap<OperatorId, Vec<u8>>,
    },
    Signing { results: Vec<OperatorSigningResult> },
    Finalized,
    SigningCommitments { commitments: Vec<BTreeMap<OperatorId, NonceCommitment>> },
    Transfer { transfer: TransferId, outcome: TransferOutcome },
    PendingTransfers { transfers: Vec<PendingTransferView> },
    TweakStored,
    /// A claim retried after the operators completed it (its finalize reply was late or lost):
    /// the refunds the receiver finalized, for it to verify and adopt (operator/claim_done.rs).
    ClaimCompleted { refunds: RefundSet },
    /// Lightning: a preimage share is stored (operator/preimage.rs).
    PreimageShareStored,
    /// Lightning: the shared preimage for a payment hash, or None while it is not shared.
    Preimage { payment_hash: [u8; 32], preimage: Option<[u8; 32]> },
    /// Split (operator/split.rs): every operator reserved the children's keys.
    SplitPlanned { children: Vec<crate::split_msg::SplitChildKeys> },
    /// Aggregate: every operator computed the parent's new SE key Σ S_c.
    AggregatePlanned { se_public_key: PublicKey },
    /// Leaf swaps: a swap's state (msg/swap.rs).
    Swap(SwapReply),
    /// Cooperative exit: the connector refunds the operators signed (input 0) for the SSP.
    CoopExitSigned { transfer: TransferId, refunds: RefundSet },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InternalRequest {
    DkgStart { batch: u64, count: u16 },
    DkgRound1 { batch: u64, packages: Vec<Vec<u8>> },
    DkgRound2 { batch: u64, packages: Vec<Vec<u8>> },
    DkgDone { batch: u64, public_keys: Vec<PublicKey> },
    MarkKeyshareForDeposit {
        keyshare: KeyshareId,
        owner_identity: PublicKey,
        owner_signing_key: PublicKey,
    },
    /// FROST round 1: `count` fresh nonce commitments for the leaf's keyshare.
    FrostRound1 { keyshare: KeyshareId, count: u8 },
    /// FROST round 2: one signature share per job, each with this operator's committed nonce.
    FrostRound2 { keyshare: KeyshareId, jobs: Vec<SigningJob> },
    InitiateTransfer {
        transfer: TransferId,
        sender: PublicKey,
        receiver: PublicKey,
        expiry: Micros,
        package: TransferPackage,
        signed_refunds: BTreeMap<LeafId, RefundSet>,
    },
    /// Two-phase receiver settle, phase 1 (spark-protocol §4.2 claim step 4).
    SettleReceiverPrepare { transfer: TransferId, attempt: u64, tweak_digests: BTreeMap<LeafId, [u8; 32]> },
    /// Two-phase commit mode (§4.10): do `op`'s domain work and record a PARTICIPANT row.
    ConsensusPrepare { flow: crate::consensus::FlowId, op: Box<crate::consensus::FlowOp> },
    /// Two-phase commit mode (§4.10): a participant that never heard the decision asks for it.
    ConsensusQueryOutcome { flow: crate::consensus::FlowId },
    /// Lightning receive (§4.7 step 4): release your preimage share for this transfer, once
    /// your own records of it exist.
    ReleasePreimageShare { transfer: TransferId, payment_hash: [u8; 32] },
    /// Split (operator/split.rs): lock the parent, reserve the children's keyshares and compute
    /// the last child's share-wise.
    SplitReserve { parent: LeafId, owner_identity: PublicKey, plan: Vec<crate::split_msg::PlannedChild> },
    /// Split: FROST round 1 for each keyshare of the split (parent's, then each child's).
    SplitRound1 { parent: LeafId, counts: Vec<(KeyshareId, u8)> },
    /// Split: FROST round 2; `txs` lets each signer rebuild and byte-compare what it signs.
    SplitRound2 { parent: LeafId, txs: Vec<Transaction>, jobs: Vec<(KeyshareId, Vec<SigningJob>)> },
    /// Aggregate (operator/aggregate.rs): lock the children, compute the parent's Σ S_c.
    AggregateReserve { parent: LeafId, owner_identity: PublicKey },
    /// Aggregate: FROST round 1 per keyshare (each child's, then the parent's new one).
    AggregateRound1 { parent: LeafId, counts: Vec<(KeyshareId, u8)> },
    /// Aggregate: FROST round 2, with the txs to rebuild and compare.
    AggregateRound2 { parent: LeafId, txs: Vec<Transaction>, jobs: Vec<(KeyshareId, Vec<SigningJob>)> },
    /// Cooperative exit (`InitiateCooperativeExit`): an `InitiateTransfer` whose refunds spend
    /// `exit`'s connector. (`init` encodes like the fields it holds: the bytes, and so the
    /// trace, are those of the flat variant it replaced.)
    InitiateCoopExit { exit: crate::operator::coop_exit::CoopExitRow, init: TransferInit },
    /// Leaf swaps v2 (adaptor piece): FROST round 2 where job i is signed under adaptor point
    /// `adaptors[i]` (None: as `FrostRound2`), spark-protocol §4.3 step 3.
    FrostRound2Adaptor { keyshare: KeyshareId, jobs: Vec<SigningJob>, adaptors: Vec<Option<PublicKey>> },
    /// Lightning send (§4.8 step 3): an `InitiateTransfer` whose refunds are HTLC refunds for
    /// `swap`'s payment hash; the participant records the WAITING_FOR_PREIMAGE request with it.
    InitiatePreimageSend { swap: lightning::PreimageSwap, init: TransferInit },
}

/// The fields of `InternalRequest::InitiateTransfer`, as one value (a coop exit carries them
/// with its connector tx).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferInit {
    pub transfer: TransferId,
    pub sender: PublicKey,
    pub receiver: PublicKey,
    pub expiry: Micros,
    pub package: TransferPackage,
    pub signed_refunds: BTreeMap<LeafId, RefundSet>,
}

impl TransferInit {
    /// The plain `InitiateTransfer` request with these fields.
    pub fn into_request(self) -> InternalRequest {
        let TransferInit { transfer, sender, receiver, expiry, package, signed_refunds } = self;
        InternalRequest::InitiateTransfer { transfer, sender, receiver, expiry, package, signed_refunds }
    }
}

impl InternalRequest {
    pub fn kind(&self) -> &'static str {
        match self {
            InternalRequest::DkgStart { .. } => "DkgStart",
            InternalRequest::DkgRound1 { .. } => "DkgRound1",
            InternalRequest::DkgRound2 { .. } => "DkgRound2",
            InternalRequest::DkgDone { .. } => "DkgDone",
            InternalRequest::MarkKeyshareForDeposit { .. } => "MarkKeyshareForDeposit",
            InternalRequest::FrostRound1 { .. } => "FrostRound1",
            InternalRequest::FrostRound2 { .. } => "FrostRound2",
            InternalRequest::InitiateTransfer { .. } => "InitiateTransfer",
            InternalRequest::SettleReceiverPrepare { .. } => "SettleReceiverPrepare",
            InternalRequest::ConsensusPrepare { .. } => "ConsensusPrepare",
            InternalRequest::ConsensusQueryOutcome { .. } => "ConsensusQueryOutcome",
            InternalRequest::ReleasePreimageShare { .. } => "ReleasePreimageShare",
            InternalRequest::SplitReserve { .. } => "SplitReserve",
            InternalRequest::SplitRound1 { .. } => "SplitRound1",
            InternalRequest::SplitRound2 { .. } => "SplitRound2",
            InternalRequest::AggregateReserve { .. } => "AggregateReserve",
            InternalRequest::AggregateRound1 { .. } => "AggregateRound1",
            InternalRequest::AggregateRound2 { .. } => "AggregateRound2",
            InternalRequest::InitiateCoopExit { .. } => "InitiateCoopExit",
            InternalRequest::FrostRound2Adaptor { .. } => "FrostRound2Adaptor",
            InternalRequest::InitiatePreimageSend { .. } => "InitiatePreimageSend",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InternalReply {
    Ack,
    AddressSignature(Vec<u8>),
    Commitments { commitments: Vec<NonceCommitment>, se_public_key: PublicKey },
    Shares(Vec<SignatureShare>),
    /// Two-phase commit mode (§4.10): the coordinator's answer to `ConsensusQueryOutcome`;
    /// `None` = it holds no row for the flow (never durably started: presumed abort).
    FlowOutcome { flow: crate::consensus::FlowId, status: Option<crate::consensus::FlowStatus> },
    /// Lightning receive: this operator's preimage share.
    PreimageShare(VssShare),
    /// Split: the SE public key of each planned child, as this operator computed it.
    SplitReserved { se_public_keys: Vec<PublicKey> },
    /// Split: round-1 commitments and SE key per keyshare, in request order.
    CommitmentsBatch(Vec<(Vec<NonceCommitment>, PublicKey)>),
    /// Split: round-2 shares per keyshare, in request order.
    SharesBatch(Vec<Vec<SignatureShare>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GossipId {
    pub origin: OperatorId,
    pub seq: u64,
}

/// A leaf as replicated to every operator at tree creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafRecord {
    pub leaf: LeafId,
    pub keyshare: KeyshareId,
    pub value_sats: u64,
    pub verifying_key: PublicKey,
    pub owner_identity: PublicKey,
    pub owner_signing_key: PublicKey,
    pub deposit_outpoint: OutPoint,
    pub nodes: NodeSet,
    pub refunds: RefundSet,
    /// The node layers above `nodes`, root first (see [`exit_layers`]; not encoded when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<NodeSet>,
}

// Large by design (a whole leaf record); it travels boxed inside `Msg`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GossipBody {
    FinalizeTreeCreation { leaf: LeafRecord },
    SettleSenderKeyTweak { transfer: TransferId },
    CancelTransfer { transfer: TransferId },
    /// `attempt`: the coordinator's receiver-settle attempt this decision ends.
    SettleReceiverCommit { transfer: TransferId, attempt: u64 },
    SettleReceiverRollback { transfer: TransferId, attempt: u64 },
    FinalizeTransfer { transfer: TransferId, refunds: BTreeMap<LeafId, RefundSet> },
    /// Renew: a renew-refund's signed txs (node', direct node', three refunds).
    FinalizeRenewRefundTimelock { leaf: LeafId, signed: Vec<Transaction> },
    /// Renew: a renew-node's or renew-node-zero's signed txs (`RenewTxs::jobs` order).
    FinalizeRenewNodeTimelock { leaf: LeafId, kind: crate::tx::renew::RenewKind, signed: Vec<Transaction> },
    /// Two-phase commit mode (§4.10): the coordinator decided COMMIT for the flow.
    ConsensusCommit { flow: crate::consensus::FlowId },
    /// Two-phase commit mode (§4.10): the coordinator decided ROLLBACK (or presumed abort).
    /// `decision`: the rollback's domain effect, so an operator that never prepared the flow
    /// can keep a tombstone row (a late Prepare is then refused).
    ConsensusRollback { flow: crate::consensus::FlowId, decision: crate::consensus::FlowDecision },
    /// Lightning (§4.7 step 5): the coordinator reconstructed the preimage of a swap.
    PreimageRevealed { transfer: TransferId, payment_hash: [u8; 32], preimage: [u8; 32] },
    /// Split (operator/split.rs): the parent is SPLITTED, its children are live leaves.
    FinalizeSplit { split: crate::split_msg::SplitRecord },
    /// Aggregate (operator/aggregate.rs): the children are AGGREGATED, the parent a leaf again.
    FinalizeAggregate { aggregate: crate::split_msg::AggregateRecord },
    /// Leaf swaps: apply the primary's and every counter transfer's sender tweak in one store
    /// transaction (spark-protocol §4.3 v3, operator/swap.rs).
    SettleSwapKeyTweak { primary: TransferId, counters: Vec<TransferId> },
    /// Two-phase commit mode (§4.10): a flow its coordinator decided COMMIT without a vote (a
    /// transfer's finalize, operator/twopc_flows.rs), with its op, since no participant
    /// prepared it.
    ConsensusDecided { flow: crate::consensus::FlowId, op: Box<crate::consensus::FlowOp> },
}

impl GossipBody {
    pub fn kind(&self) -> &'static str {
        match self {
            GossipBody::FinalizeTreeCreation { .. } => "Gossip:FinalizeTreeCreation",
            GossipBody::SettleSenderKeyTweak { .. } => "Gossip:SettleSenderKeyTweak",
            GossipBody::CancelTransfer { .. } => "Gossip:CancelTransfer",
            GossipBody::SettleReceiverCommit { .. } => "Gossip:SettleReceiverCommit",
            GossipBody::SettleReceiverRollback { .. } => "Gossip:SettleReceiverRollback",
            GossipBody::FinalizeTransfer { .. } => "Gossip:FinalizeTransfer",
            GossipBody::FinalizeRenewRefundTimelock { .. } => "Gossip:FinalizeRenewRefundTimelock",
            GossipBody::FinalizeRenewNodeTimelock { .. } => "Gossip:FinalizeRenewNodeTimelock",
            GossipBody::ConsensusCommit { .. } => "Gossip:ConsensusCommit",
            GossipBody::ConsensusRollback { .. } => "Gossip:ConsensusRollback",
            GossipBody::PreimageRevealed { .. } => "Gossip:PreimageRevealed",
            GossipBody::FinalizeSplit { .. } => "Gossip:FinalizeSplit",
            GossipBody::FinalizeAggregate { .. } => "Gossip:FinalizeAggregate",
            GossipBody::SettleSwapKeyTweak { .. } => "Gossip:SettleSwapKeyTweak",
            GossipBody::ConsensusDecided { .. } => "Gossip:ConsensusDecided",
        }
    }
}

/// The digest the sender's identity key signs over a transfer package (vectors §4.7:
/// SHA256(transfer id ‖ for each operator, sorted: hex identifier ‖ ":" ‖ ciphertext ‖ ";")).
pub fn transfer_package_digest(transfer: TransferId, key_tweak_package: &BTreeMap<OperatorId, Vec<u8>>) -> [u8; 32] {
    let mut parts: Vec<Vec<u8>> = vec![transfer.0.to_vec()];
    for (op, ct) in key_tweak_package {
        let mut p = format!("{:064x}", op.share_x()).into_bytes();
        p.push(b':');
        p.extend_from_slice(ct);
        p.push(b';');
        parts.push(p);
    }
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    crate::crypto::identity::sha256(&refs)
}

/// The digest the sender signs per leaf: SHA256(leaf id ‖ transfer id ‖ secret cipher).
pub fn leaf_tweak_digest(leaf: LeafId, transfer: TransferId, secret_cipher: &[u8]) -> [u8; 32] {
    crate::crypto::identity::sha256(&[&leaf.0, &transfer.0, secret_cipher])
}

/// What a former owner asks a colluding operator (spark-protocol §5.1, the statechain theft).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColludeRequest {
    /// A nonce commitment for the old share under which `user_public_key` + P_SE = `verifying_key`.
    Commit { verifying_key: PublicKey, user_public_key: PublicKey },
    /// Sign with that old share and the committed nonce.
    Sign { job: SigningJob },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColludeReply {
    Committed { commitment: NonceCommitment, public_share: PublicKey },
    Share(SignatureShare),
}
