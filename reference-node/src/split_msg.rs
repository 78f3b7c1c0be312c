//! Message payloads of the split flow (spark-protocol §2.6; `operator/split.rs`,
//! `wallet/split.rs`), kept apart from `msg.rs` so the flow's wire types live in one place.
use crate::crypto::PublicKey;
use crate::msg::{LeafRecord, NodeSet};
use crate::types::{KeyshareId, LeafId};
use serde::{Deserialize, Serialize};

/// What the wallet asks for one child of a split: its id, value and user signing key `u_c·G`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitChildRequest {
    pub leaf: LeafId,
    pub value_sats: u64,
    pub signing_key: PublicKey,
}

/// One child as the coordinator planned it: the request plus the SE keyshare behind it (a fresh
/// DKG key from the coordinator's pool, or for the last child the share-wise remainder).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedChild {
    pub leaf: LeafId,
    pub value_sats: u64,
    pub signing_key: PublicKey,
    pub keyshare: KeyshareId,
}

/// What the wallet learns per child once every operator reserved the split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitChildKeys {
    pub leaf: LeafId,
    pub se_public_key: PublicKey,
    pub verifying_key: PublicKey,
}

/// A finalized split as replicated to every operator: the signed split node pair and each
/// child's leaf record (its node txs spend the split node's CPFP outputs in plan order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitRecord {
    pub parent: LeafId,
    pub owner_identity: PublicKey,
    pub plan: Vec<PlannedChild>,
    pub split_nodes: NodeSet,
    pub children: Vec<LeafRecord>,
}

/// The last child's keyshare id: derived from the parent's keyshare and the child's leaf id, so
/// every operator names the share it computes locally the same way.
pub fn last_child_keyshare(parent: KeyshareId, child: LeafId) -> KeyshareId {
    let h = crate::crypto::identity::sha256(&[b"spark-split-last", &parent.0, &child.0]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    KeyshareId(id)
}

/// A finalized aggregation as replicated to every operator: the parent's new node pair (spending
/// every child's split output), its refunds, and its new key split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateRecord {
    pub parent: LeafId,
    pub owner_identity: PublicKey,
    pub keyshare: KeyshareId,
    pub owner_signing_key: PublicKey,
    pub nodes: NodeSet,
    pub refunds: crate::msg::RefundSet,
}

/// The parent's keyshare id after an aggregation: derived from its keyshare before, so every
/// operator names the Σ S_c it computes the same way, and each aggregation gets a new id.
pub fn aggregate_keyshare(parent_before: KeyshareId) -> KeyshareId {
    let h = crate::crypto::identity::sha256(&[b"spark-aggregate", &parent_before.0]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    KeyshareId(id)
}
