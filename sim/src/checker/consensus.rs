//! Two-phase commit mode (spark-protocol §4.10, §6.4 L-2): the engine's `FlowExecution` rows.
//! - **safety** (after every event that committed a store transaction): no flow is COMMITTED on
//!   one operator and ROLLED_BACK on another. Reported as L-2: the atomicity L-2 promises at the
//!   end is already lost the moment the two decisions coexist.
//! - **L-2 at quiescence**: every flow is decided, and decided the same way, on its coordinator
//!   and on every participant that is up ("committed on all or rolled back on all").
use super::{finding, Finding};
use reference_node::consensus::{FlowId, FlowRole, FlowStatus};
use reference_node::msg::GossipBody;
use reference_node::operator::store::Db;
use reference_node::types::{OperatorId, TransferId};
use std::collections::{BTreeMap, BTreeSet};

/// Every operator's status for every flow it holds a row for.
fn views(dbs: &[(OperatorId, &Db)]) -> BTreeMap<FlowId, Vec<(OperatorId, FlowStatus)>> {
    let mut v: BTreeMap<FlowId, Vec<(OperatorId, FlowStatus)>> = BTreeMap::new();
    for (op, db) in dbs {
        for (f, r) in &db.flows {
            v.entry(*f).or_default().push((*op, r.status));
        }
    }
    v
}

fn list(v: &[(OperatorId, FlowStatus)]) -> String {
    v.iter().map(|(o, s)| format!("{o}={s:?}")).collect::<Vec<_>>().join(", ")
}

/// Safety: one decision per flow across operators.
pub fn check_flow_safety(dbs: &[(OperatorId, &Db)]) -> Vec<Finding> {
    let mut found = Vec::new();
    for (flow, v) in views(dbs) {
        let committed = v.iter().any(|(_, s)| *s == FlowStatus::Committed);
        let rolled_back = v.iter().any(|(_, s)| *s == FlowStatus::RolledBack);
        if committed && rolled_back {
            found.push(finding("L-2", format!("{flow} split"), format!("{flow} is COMMITTED on one operator and ROLLED_BACK on another: {}", list(&v))));
        }
    }
    found
}

/// L-2 at the end of the liveness phase, over the operators that are up.
pub fn check_flows_settled(up: &[(OperatorId, &Db)], down: &BTreeSet<OperatorId>) -> Vec<Finding> {
    let note = if down.is_empty() { String::new() } else { format!(" (still down: {})", down.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(", ")) };
    let mut found = Vec::new();
    let dbs: BTreeMap<OperatorId, &Db> = up.iter().copied().collect();
    for (flow, v) in views(up) {
        let undecided = v.iter().any(|(_, s)| *s == FlowStatus::InFlight);
        let coordinator = dbs.get(&flow.coordinator).and_then(|db| db.flows.get(&flow)).filter(|r| r.role == FlowRole::Coordinator);
        // Participants that should hold a decided row: every up participant of a flow whose
        // coordinator is up and holds it.
        let missing: Vec<String> = coordinator
            .map(|r| r.participants.iter().filter(|p| dbs.get(p).is_some_and(|db| !db.flows.contains_key(&flow))).map(|p| p.to_string()).collect())
            .unwrap_or_default();
        let distinct: BTreeSet<FlowStatus> = v.iter().map(|(_, s)| *s).collect();
        if undecided || distinct.len() > 1 || !missing.is_empty() {
            let m = if missing.is_empty() { String::new() } else { format!("; no row on {}", missing.join(", ")) };
            found.push(finding(
                "L-2",
                format!("{flow} unsettled"),
                format!("{flow} is not committed on all or rolled back on all after the liveness phase: {}{m}{note}", list(&v)),
            ));
        }
    }
    found
}

/// Transfers whose flow still has its decision travelling or undecided (I-12 must not call
/// their operators' disagreement final).
pub fn transfers_in_flight(dbs: &[(OperatorId, &Db)]) -> BTreeSet<TransferId> {
    let mut out = BTreeSet::new();
    for (_, db) in dbs {
        for g in db.gossip_out.values() {
            if let GossipBody::ConsensusCommit { flow } | GossipBody::ConsensusRollback { flow, .. } | GossipBody::ConsensusDecided { flow, .. } = &g.body {
                if let Some(r) = db.flows.get(flow) {
                    out.insert(r.transfer);
                }
            }
        }
        out.extend(db.flows.values().filter(|r| r.status == FlowStatus::InFlight).map(|r| r.transfer));
    }
    out
}

/// Nothing of the engine is left to do on this operator.
pub fn flows_quiet(db: &Db) -> bool {
    db.flows.values().all(|r| r.status != FlowStatus::InFlight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_node::consensus::{FlowDecision, FlowRow};
    use reference_node::types::Micros;

    const T: TransferId = TransferId([7; 16]);

    fn row(role: FlowRole, status: FlowStatus, participants: &[u16]) -> FlowRow {
        FlowRow {
            role,
            status,
            participants: participants.iter().map(|p| OperatorId(*p)).collect(),
            transfer: T,
            commit: FlowDecision::SettleSender { transfer: T },
            rollback: FlowDecision::CancelTransfer { transfer: T },
            started_at: Micros::ZERO,
            op: None,
        }
    }

    #[test]
    fn a_split_decision_is_reported_at_once_and_at_the_end() {
        let flow = FlowId { coordinator: OperatorId(0), seq: 1 };
        let mut a = Db::default();
        a.flows.insert(flow, row(FlowRole::Coordinator, FlowStatus::Committed, &[1]));
        let mut b = Db::default();
        b.flows.insert(flow, row(FlowRole::Participant, FlowStatus::RolledBack, &[0]));
        let dbs = [(OperatorId(0), &a), (OperatorId(1), &b)];
        let f = check_flow_safety(&dbs);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].invariant, "L-2");
        assert_eq!(check_flows_settled(&dbs, &BTreeSet::new()).len(), 1);
        // Agreement passes both.
        b.flows.insert(flow, row(FlowRole::Participant, FlowStatus::Committed, &[0]));
        let dbs = [(OperatorId(0), &a), (OperatorId(1), &b)];
        assert!(check_flow_safety(&dbs).is_empty());
        assert!(check_flows_settled(&dbs, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn an_undecided_or_missing_participant_fails_l2_but_not_safety() {
        let flow = FlowId { coordinator: OperatorId(0), seq: 1 };
        let mut a = Db::default();
        a.flows.insert(flow, row(FlowRole::Coordinator, FlowStatus::RolledBack, &[1, 2]));
        let mut b = Db::default();
        b.flows.insert(flow, row(FlowRole::Participant, FlowStatus::InFlight, &[0, 2]));
        let c = Db::default();
        let dbs = [(OperatorId(0), &a), (OperatorId(1), &b), (OperatorId(2), &c)];
        assert!(check_flow_safety(&dbs).is_empty());
        let f = check_flows_settled(&dbs, &BTreeSet::new());
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("no row on operator:2"), "{}", f[0].message);
        assert!(!flows_quiet(&b) && flows_quiet(&a));
        assert_eq!(transfers_in_flight(&dbs), BTreeSet::from([T]));
    }
}
