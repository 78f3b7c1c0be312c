//! Every message between parties (spark-protocol §9.2–§9.3, reduced to the flows implemented).
//! Plain serde data, so the trace hash, the simulator and a future TCP runner see the same bytes.

use crate::crypto::signing::{NonceCommitment, SignatureShare, SigningJob};
use crate::crypto::vss::VssShare;
use crate::crypto::PublicKey;
use crate::types::{KeyshareId, LeafId, Micros, OperatorId, TransferId};
use bitcoin::{OutPoint, Sequence, Transaction, TxOut};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod ssp;
pub use ssp::{SspReply, SspRequest, SspService};

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
            WalletRequest::CooperativeExit { .. } => "CooperativeExit",
            WalletRequest::FinalizeCoopExit { .. } => "FinalizeCoopExit",
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
    /// Cooperative exit (`InitiateCooperativeExit`): an `InitiateTransfer` whose refunds spend
    /// `exit`'s connector.
    InitiateCoopExit {
        exit: crate::operator::coop_exit::CoopExitRow,
        transfer: TransferId,
        sender: PublicKey,
        receiver: PublicKey,
        expiry: Micros,
        package: TransferPackage,
        signed_refunds: BTreeMap<LeafId, RefundSet>,
    },
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
            InternalRequest::InitiateCoopExit { .. } => "InitiateCoopExit",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InternalReply {
    Ack,
    AddressSignature(Vec<u8>),
    Commitments { commitments: Vec<NonceCommitment>, se_public_key: PublicKey },
    Shares(Vec<SignatureShare>),
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
