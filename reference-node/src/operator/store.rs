//! The operator's durable tables (spark-protocol §9.1, reduced to the flows implemented) behind a
//! store with explicit transactions: a handler works on a copy and `commit`s it; a crash loses
//! every write not committed, and a restart rebuilds the operator from the store alone.
use crate::crypto::signing::{KeyShare, NonceCommitment, SecretNonce};
use crate::crypto::vss::VssShare;
use crate::crypto::PublicKey;
use crate::msg::{GossipBody, GossipId, NodeSet, RefundSet};
use crate::types::{KeyshareId, LeafId, Micros, OperatorId, TransferId};
use bitcoin::{OutPoint, ScriptBuf, Transaction};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyshareStatus {
    Available,
    InUse,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyshareRow {
    pub status: KeyshareStatus,
    pub share: KeyShare,
    /// The operator whose pool this key belongs to (only it may hand it out).
    pub coordinator: OperatorId,
    /// Tweaks applied so far: operators at the same epoch must agree on every public part (I-3).
    pub epoch: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositAddressRow {
    pub owner_identity: PublicKey,
    pub owner_signing_key: PublicKey,
    pub verifying_key: PublicKey,
    pub script: ScriptBuf,
    /// Set by the chain watcher when an output paying `script` confirms.
    pub confirmed: Option<(OutPoint, u32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeafStatus {
    /// Signed, waiting for the deposit to confirm.
    Creating,
    Available,
    TransferLocked(TransferId),
    /// Its node tx is on chain: the leaf left Spark.
    OnChain,
    /// Renew (operator/renew.rs): a renew of this leaf is being signed (I-4).
    RenewLocked,
    /// Split (operator/split.rs): reserved for a split in flight; no transfer may touch it (I-4).
    SplitLocked,
    /// Split into children (spark-protocol §6.1: not value-bearing, its children carry the value).
    Splitted,
    /// Folded back into its parent by an aggregation (not value-bearing).
    Aggregated,
}

impl LeafStatus {
    /// Counts towards I-1 conservation (spark-protocol §6.1: ∉ {SPLITTED, AGGREGATED, …}).
    pub fn is_value_bearing(self) -> bool {
        !matches!(self, LeafStatus::Splitted | LeafStatus::Aggregated)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafRow {
    pub status: LeafStatus,
    pub keyshare: KeyshareId,
    pub value_sats: u64,
    pub verifying_key: PublicKey,
    pub owner_identity: PublicKey,
    pub owner_signing_key: PublicKey,
    pub deposit_outpoint: OutPoint,
    pub nodes: NodeSet,
    pub refunds: RefundSet,
    /// Node layers above `nodes`, root first (`msg::exit_layers`): the leaf's exit chain is
    /// `ancestors` then `nodes`.
    #[serde(default)]
    pub ancestors: Vec<NodeSet>,
}

impl LeafRow {
    /// Every node layer of the leaf's exit chain, root first; the refunds spend the last.
    pub fn exit_layers(&self) -> impl Iterator<Item = &NodeSet> {
        crate::msg::exit_layers(&self.ancestors, &self.nodes)
    }
}

/// Spark's transfer statuses (spark-protocol §4.2). Order matters: it is the forward order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TransferStatus {
    SenderKeyTweakPending,
    SenderInitiatedCoordinator,
    SenderKeyTweaked,
    ReceiverKeyTweaked,
    ReceiverKeyTweakLocked,
    ReceiverKeyTweakApplied,
    Completed,
    Returned,
}

impl TransferStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, TransferStatus::Completed | TransferStatus::Returned)
    }
    /// At or past the point where the leaf belongs to the receiver.
    pub fn is_sent(self) -> bool {
        self >= TransferStatus::SenderKeyTweaked && self != TransferStatus::Returned
    }
}

/// This operator's decrypted slice of the sender's key tweak for one leaf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTweak {
    pub share: VssShare,
    pub pubkey_shares_tweak: BTreeMap<OperatorId, PublicKey>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLeafRow {
    pub sender_tweak: StoredTweak,
    pub secret_cipher: Vec<u8>,
    pub signature: Vec<u8>,
    pub previous_refunds: RefundSet,
    /// Signed refunds paying the receiver's identity key (CSV − 100). Forgotten on cancel.
    pub intermediate_refunds: Option<RefundSet>,
    pub receiver_tweak: Option<StoredTweak>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRow {
    pub status: TransferStatus,
    pub sender: PublicKey,
    pub receiver: PublicKey,
    pub expiry: Micros,
    pub coordinator: OperatorId,
    pub leaves: BTreeMap<LeafId, TransferLeafRow>,
    /// Coordinator only: the receiver settle was decided COMMIT (never rolled back after this).
    pub receiver_commit_decided: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingSendStatus {
    Started,
    Finished,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSendRow {
    pub status: PendingSendStatus,
    pub started_at: Micros,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct NonceRow {
    pub keyshare: KeyshareId,
    /// Erased once used: a used nonce can never sign again.
    pub secret: Option<SecretNonce>,
    pub used_for: Option<[u8; 32]>,
    /// The share this nonce produced and the digest of the job it signed (race70: a duplicated
    /// FrostRound2 for the very same job gets the same share back instead of a refusal that
    /// can overtake the real reply and abort the session; any other job is still refused).
    #[serde(default)]
    pub answered: Option<([u8; 32], crate::crypto::signing::SignatureShare)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipRow {
    pub body: GossipBody,
    pub participants: BTreeSet<OperatorId>,
    pub receipts: BTreeSet<OperatorId>,
}

/// A tree the coordinator signed but the wallet has not finalized yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTreeRow {
    pub keyshare: KeyshareId,
    pub deposit_outpoint: OutPoint,
    pub value_sats: u64,
    /// The five unsigned templates, in job order.
    pub expected: Vec<Transaction>,
}

/// Every durable table of one operator.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Db {
    /// Bumped on every start: request ids of an earlier incarnation never match new sessions.
    pub incarnation: u64,
    pub keyshares: BTreeMap<KeyshareId, KeyshareRow>,
    /// Coordinator: keys every operator confirmed, ready to hand out.
    pub pool: BTreeSet<KeyshareId>,
    pub dkg_batches_started: u64,
    pub deposit_addresses: BTreeMap<KeyshareId, DepositAddressRow>,
    pub address_by_script: BTreeMap<ScriptBuf, KeyshareId>,
    pub pending_trees: BTreeMap<LeafId, PendingTreeRow>,
    pub leaves: BTreeMap<LeafId, LeafRow>,
    pub leaf_by_deposit: BTreeMap<OutPoint, LeafId>,
    pub transfers: BTreeMap<TransferId, TransferRow>,
    /// Transfers cancelled before this operator heard of them: a late InitiateTransfer is refused.
    pub cancelled: BTreeSet<TransferId>,
    pub pending_sends: BTreeMap<TransferId, PendingSendRow>,
    pub nonces: BTreeMap<NonceCommitment, NonceRow>,
    pub gossip_out: BTreeMap<u64, GossipRow>,
    pub next_gossip_seq: u64,
    /// Gossip applied here (deduplication of retries).
    pub gossip_applied: BTreeSet<GossipId>,
    pub block_height: u32,
    /// The chain watcher's view of recent blocks, for reorgs (`watcher.rs`).
    pub chain_watch: super::watcher::ChainWatch,
    /// Receiver two-phase settle attempts per transfer (see [`ReceiverSettleRow`]).
    #[serde(default)]
    pub receiver_settles: BTreeMap<TransferId, ReceiverSettleRow>,
    /// Renew (operator/renew.rs): coordinator-side renews signed but not finalized yet.
    #[serde(default)]
    pub pending_renews: BTreeMap<LeafId, super::PendingRenewRow>,
    /// Renew: the split nodes renew-node put into a leaf's exit chain (CPFP txid → leaf), node
    /// status SPLIT_LOCKED: part of that leaf's chain only, never transferred or split alone.
    #[serde(default)]
    pub split_locked: BTreeMap<bitcoin::Txid, LeafId>,
    /// Two-phase commit mode (spark-protocol §4.10): `FlowExecution` rows, coordinator and
    /// participant (kept after the decision: the coordinator answers reconciliation queries
    /// from them, a participant refuses a late Prepare of a rolled-back flow).
    #[serde(default)]
    pub flows: BTreeMap<crate::consensus::FlowId, crate::consensus::FlowRow>,
    /// Lightning: preimage shares and preimage requests by payment hash (operator/preimage.rs).
    #[serde(default)]
    pub preimages: BTreeMap<[u8; 32], super::preimage::PreimageRow>,
    /// Split (operator/split.rs): splits planned or done, by parent leaf.
    #[serde(default)]
    pub splits: BTreeMap<LeafId, SplitRow>,
    /// Split: child leaf → its parent (the checker's I-1 "node = Σ children" and exit chains).
    #[serde(default)]
    pub split_parent: BTreeMap<LeafId, LeafId>,
    /// Aggregate (operator/aggregate.rs): aggregations reserved and not yet finalized, by parent.
    #[serde(default)]
    pub aggregates: BTreeMap<LeafId, AggregateRow>,
    /// Split: a split node's output → the child leaf whose node tx spends it (the chain watcher
    /// marks the child ON_CHAIN when that node tx confirms, as it does a root for its deposit).
    #[serde(default)]
    pub leaf_by_split_output: BTreeMap<OutPoint, LeafId>,
    /// Leaf swaps this operator coordinates, by primary transfer (operator/swap.rs).
    #[serde(default)]
    pub swaps: BTreeMap<TransferId, super::swap::SwapRow>,
    /// Watchtower and fees flow: leaves whose node tx is on chain, watched until a refund
    /// spends it (`watchtower.rs`).
    #[serde(default)]
    pub watchtower: BTreeMap<LeafId, super::watchtower::WatchRow>,
    /// Cooperative exits: the `CooperativeExit` row of each coop-exit transfer (coop_exit.rs).
    #[serde(default)]
    pub coop_exits: BTreeMap<TransferId, super::coop_exit::CoopExitRow>,
}

/// An aggregation of a split parent's children in flight (spark-protocol §2.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateRow {
    pub owner_identity: PublicKey,
    /// The parent's new keyshare Σ S_c.
    pub keyshare: KeyshareId,
    /// This operator produced signature shares for it.
    pub signed: bool,
}

/// One split of a parent leaf (spark-protocol §2.6), from reservation to finalize.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitRow {
    pub owner_identity: PublicKey,
    pub coordinator: OperatorId,
    pub plan: Vec<crate::split_msg::PlannedChild>,
    /// This operator produced signature shares for the plan: from here on it never accepts a
    /// different plan for the parent (two signed split nodes could both be broadcast).
    pub signed: bool,
    /// The signed split node pair once finalized.
    pub split_nodes: Option<NodeSet>,
}

/// Explicit receiver-settle attempts (spark-protocol §4.2 claim, buildonspark/spark#24): a
/// rollback names the attempt it ends, so a stale rollback can never undo a newer attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverSettleRow {
    /// Coordinator: attempts started so far (the next Prepare carries this plus one).
    pub attempts_started: u64,
    /// Participant: the newest attempt this operator prepared (locked) for; 0 = none yet.
    pub locked_attempt: u64,
}

/// The durable store. `begin` hands out a working copy; only `commit` makes it durable.
///
/// Sync: a commit is durable once synced. Every completed handler ends synced (Postgres with
/// `synchronous_commit = on`: COMMIT returns after the WAL flush). Only a crash that lands in
/// the middle of a handler can lose writes: the driver calls [`Store::mark_synced`] before
/// such a handler and [`Store::lose_unsynced`] at the crash, dropping every commit since; in
/// Postgres terms, the handler's transaction never committed. Nothing is copied unless a
/// crash is due, so the common path costs nothing.
#[derive(Clone, Default)]
pub struct Store {
    committed: Db,
    commits: u64,
    /// The durable state at the last sync point and the commit count then, kept only while a
    /// crash is due.
    synced: Option<(Box<Db>, u64)>,
}

impl Store {
    pub fn begin(&self) -> Db {
        self.committed.clone()
    }
    pub fn commit(&mut self, db: Db) {
        self.committed = db;
        self.commits += 1;
    }
    pub fn read(&self) -> &Db {
        &self.committed
    }
    pub fn commits(&self) -> u64 {
        self.commits
    }
    /// Everything committed so far is durable; later commits are not until the next sync.
    pub fn mark_synced(&mut self) {
        self.synced = Some((Box::new(self.committed.clone()), self.commits));
    }
    /// A crash before the next sync: commits since [`Store::mark_synced`] are lost. Returns
    /// whether any write was lost.
    pub fn lose_unsynced(&mut self) -> bool {
        match self.synced.take() {
            Some((db, commits)) => {
                self.committed = *db;
                self.commits != commits
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_commits_are_lost_synced_ones_kept() {
        let mut s = Store::default();
        let mut db = s.begin();
        db.next_gossip_seq = 1;
        s.commit(db);
        s.mark_synced();
        let mut db = s.begin();
        db.next_gossip_seq = 2;
        s.commit(db);
        assert_eq!(s.read().next_gossip_seq, 2);
        assert!(s.lose_unsynced());
        assert_eq!(s.read().next_gossip_seq, 1);
        // Without a sync point there is nothing to lose.
        assert!(!s.lose_unsynced());
        assert_eq!(s.read().next_gossip_seq, 1);
    }
}
