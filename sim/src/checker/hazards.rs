//! Checks for what Byzantine operators and the restored Spark hazards (spark-protocol §8.2) can
//! break that the core invariants do not see:
//! - **signer guard** (I-6): an honest operator's enforcing guard refused a refund whose
//!   timelock is not below the current one. The protocol logic above the signer let an unsafe
//!   refund through: a finding, even though nothing was signed. A refused nonce reuse is a
//!   peer's attack blocked, only counted.
//! - **key epoch** (I-3): an operator's keyshare has been tweaked exactly as often as its own
//!   transfer rows say (2 per completed transfer, 1 once the sender's tweak settled, 1 more once
//!   the receiver's commit applied). A share tweaked twice for one claim (buildonspark/spark#24)
//!   breaks it the moment it happens, before any signature fails.
//! - **I-12** (end of run): operators that disagree on a transfer's status while no gossip row
//!   anywhere still refers to it: nothing will ever reconcile them (the Oct-2025 "ack even when
//!   applying fails" gossip).
use super::{finding, Finding};
use crate::actor::Actor;
use crate::engine::{Engine, StepRecord};
use reference_node::chain::Chain;
use reference_node::msg::GossipBody;
use reference_node::observe::{GuardRule, Observation};
use reference_node::operator::store::{Db, TransferStatus};
use reference_node::types::{OperatorId, TransferId};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub(super) struct HazardChecks {
    last_commits: BTreeMap<OperatorId, u64>,
    nonce_reuse_refused: u64,
    culprits: BTreeMap<OperatorId, u64>,
}

/// Byzantine behaviour the honest operators caught, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetectionSummary {
    /// Nonce reuse attempts an honest signer's guard refused.
    pub nonce_reuse_refused: u64,
    /// Operator → times a coordinator named it (identifiable abort).
    pub culprits_named: BTreeMap<OperatorId, u64>,
}

impl HazardChecks {
    pub(super) fn summary(&self) -> DetectionSummary {
        DetectionSummary { nonce_reuse_refused: self.nonce_reuse_refused, culprits_named: self.culprits.clone() }
    }

    pub(super) fn after_event(&mut self, engine: &Engine<Actor, Chain>, rec: &StepRecord) -> Vec<Finding> {
        let mut found = Vec::new();
        for obs in &rec.observations {
            match obs {
                Observation::GuardRefused { signer, rule: GuardRule::RefundTimelock, detail } => found.push(finding(
                    "I-6",
                    format!("guard {detail}"),
                    format!("{signer}'s signer guard refused to co-sign: {detail} (the protocol logic let an unsafe refund reach the signer)"),
                )),
                Observation::GuardRefused { rule: GuardRule::NonceReuse, .. } => self.nonce_reuse_refused += 1,
                Observation::CulpritNamed { culprit, .. } => *self.culprits.entry(*culprit).or_default() += 1,
                _ => {}
            }
        }
        for (_, a) in engine.nodes() {
            let Some(op) = a.as_operator() else { continue };
            if self.last_commits.insert(op.id(), op.store_commits()) != Some(op.store_commits()) {
                found.extend(check_key_epochs(op.id(), op.db()));
            }
        }
        found
    }

    pub(super) fn at_end(&self, dbs: &[(OperatorId, &Db)]) -> Vec<Finding> {
        check_transfer_convergence(dbs)
    }
}

/// I-3: each leaf's keyshare epoch equals the tweaks this operator's transfer rows account for.
pub fn check_key_epochs(op: OperatorId, db: &Db) -> Vec<Finding> {
    let mut expected: BTreeMap<reference_node::types::LeafId, u32> = BTreeMap::new();
    for (id, t) in &db.transfers {
        let tweaks = match t.status {
            // A coop exit the SSP ended on L1 with its connector refund: no tweak ever applied.
            _ if db.coop_exits.get(id).is_some_and(|c| c.closed_on_chain) => 0,
            TransferStatus::Completed | TransferStatus::ReceiverKeyTweakApplied => 2,
            TransferStatus::SenderKeyTweaked | TransferStatus::ReceiverKeyTweaked | TransferStatus::ReceiverKeyTweakLocked => 1,
            TransferStatus::SenderKeyTweakPending | TransferStatus::SenderInitiatedCoordinator | TransferStatus::Returned => 0,
        };
        for leaf in t.leaves.keys() {
            *expected.entry(*leaf).or_default() += tweaks;
        }
    }
    let mut found = Vec::new();
    for (leaf, row) in &db.leaves {
        let Some(ks) = db.keyshares.get(&row.keyshare) else { continue };
        let want = expected.get(leaf).copied().unwrap_or(0);
        if ks.epoch != want {
            found.push(finding(
                "I-3",
                format!("leaf {leaf} epoch {op}"),
                format!("leaf {leaf} on {op}: keyshare tweaked {} times but its transfers account for {want} (a tweak applied twice or lost: operators' shares no longer agree)", ks.epoch),
            ));
        }
    }
    found
}

fn gossip_transfer(body: &GossipBody) -> Option<TransferId> {
    match body {
        GossipBody::FinalizeTreeCreation { .. } | GossipBody::FinalizeSplit { .. } | GossipBody::FinalizeAggregate { .. } => None,
        // Renew: about a leaf, not a transfer.
        GossipBody::FinalizeRenewRefundTimelock { .. } | GossipBody::FinalizeRenewNodeTimelock { .. } => None,
        GossipBody::SettleSenderKeyTweak { transfer }
        | GossipBody::CancelTransfer { transfer }
        | GossipBody::SettleReceiverCommit { transfer, .. }
        | GossipBody::SettleReceiverRollback { transfer, .. }
        | GossipBody::FinalizeTransfer { transfer, .. }
        | GossipBody::PreimageRevealed { transfer, .. } => Some(*transfer),
        GossipBody::SettleSwapKeyTweak { primary, .. } => Some(*primary),
        // Two-phase commit mode: the flow's transfer (see `consensus::transfers_in_flight`).
        GossipBody::ConsensusCommit { .. } | GossipBody::ConsensusRollback { .. } => None,
        GossipBody::ConsensusDecided { op, .. } => Some(op.transfer()),
    }
}

/// Leaf swaps: a settle in flight also covers its counter transfers.
fn gossip_swap_counters(body: &GossipBody) -> Vec<TransferId> {
    match body {
        GossipBody::SettleSwapKeyTweak { counters, .. } => counters.clone(),
        _ => Vec::new(),
    }
}

/// I-12: operators holding a transfer disagree on its status and no gossip is left to fix it.
pub fn check_transfer_convergence(dbs: &[(OperatorId, &Db)]) -> Vec<Finding> {
    let mut pending: BTreeSet<TransferId> = dbs.iter().flat_map(|(_, db)| db.gossip_out.values().flat_map(|g| gossip_transfer(&g.body).into_iter().chain(gossip_swap_counters(&g.body)))).collect();
    pending.extend(super::consensus::transfers_in_flight(dbs));
    let mut views: BTreeMap<TransferId, Vec<(OperatorId, TransferStatus)>> = BTreeMap::new();
    for (op, db) in dbs {
        for (t, row) in &db.transfers {
            views.entry(*t).or_default().push((*op, row.status));
        }
    }
    let mut found = Vec::new();
    for (t, v) in views {
        // The coordinator's SENDER_INITIATED_COORDINATOR is the participants' pending state.
        let norm = |s: TransferStatus| if s == TransferStatus::SenderInitiatedCoordinator { TransferStatus::SenderKeyTweakPending } else { s };
        let distinct: BTreeSet<TransferStatus> = v.iter().map(|(_, s)| norm(*s)).collect();
        if distinct.len() > 1 && !pending.contains(&t) {
            let list: Vec<String> = v.iter().map(|(o, s)| format!("{o} {s:?}")).collect();
            found.push(finding(
                "I-12",
                format!("transfer {t}"),
                format!("transfer {t}: operators disagree ({}) and no gossip is pending to reconcile them (a receiver acknowledged what it failed to apply?)", list.join(", ")),
            ));
        }
    }
    found
}
