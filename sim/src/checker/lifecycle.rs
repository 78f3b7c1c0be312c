//! Transfer life cycle on each operator: I-4 (leaf lock exclusivity) and I-5 (transfer status
//! monotonicity per operator, no RETURNED-vs-sent split across operators).
use super::{finding, Finding};
use reference_node::operator::store::{Db, LeafStatus, TransferStatus};
use reference_node::types::{LeafId, OperatorId, TransferId};
use std::collections::BTreeMap;

/// I-4 on one operator: a leaf is referenced by at most one non-terminal transfer, and it is
/// `TransferLocked(t)` exactly when `t` is that transfer (spark-protocol §6.1).
///
/// `inflight` is the operator's leaf → non-terminal transfers index.
pub fn check_lock_exclusivity(op: OperatorId, db: &Db, inflight: &BTreeMap<LeafId, Vec<TransferId>>) -> Vec<Finding> {
    let mut found = Vec::new();
    for (leaf, ts) in inflight {
        if ts.len() > 1 {
            let list: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
            found.push(finding(
                "I-4",
                format!("leaf {leaf} {op} multi"),
                format!("leaf {leaf} on {op} is referenced by {} non-terminal transfers: {}", ts.len(), list.join(", ")),
            ));
        }
    }
    for (leaf, row) in &db.leaves {
        let pending = inflight.get(leaf).map(Vec::as_slice).unwrap_or_default();
        let m = match row.status {
            LeafStatus::TransferLocked(t) if !pending.contains(&t) => Some(format!(
                "leaf {leaf} on {op} is TRANSFER_LOCKED by transfer {t}, which is {}",
                db.transfers.get(&t).map(|r| format!("{:?}", r.status)).unwrap_or_else(|| "absent".into())
            )),
            LeafStatus::TransferLocked(_) => None,
            other if !pending.is_empty() => Some(format!(
                "leaf {leaf} on {op} is {other:?} while transfer {} is in flight on it",
                pending[0]
            )),
            _ => None,
        };
        if let Some(m) = m {
            found.push(finding("I-4", format!("leaf {leaf} {op} lock"), m));
        }
    }
    found
}

/// The edges of spark-protocol §4.2 a transfer may take on one operator: forward only, RETURNED
/// only before SENDER_KEY_TWEAKED, nothing out of a terminal status.
pub fn allowed_edge(from: TransferStatus, to: TransferStatus) -> bool {
    use TransferStatus::*;
    if from == to {
        return true;
    }
    if from.is_terminal() {
        return false;
    }
    match to {
        Returned => !from.is_sent(),
        // A receiver settle rolled back before its commit: back to SENDER_KEY_TWEAKED, never past.
        SenderKeyTweaked if is_rollback(from, to) => true,
        _ => to > from,
    }
}

/// A receiver settle undone before phase 2 (spark-protocol §4.2 rollback).
pub fn is_rollback(from: TransferStatus, to: TransferStatus) -> bool {
    use TransferStatus::*;
    matches!(from, ReceiverKeyTweaked | ReceiverKeyTweakLocked) && to == SenderKeyTweaked
}

/// I-5: the last status seen per (operator, transfer), to judge each move.
#[derive(Default)]
pub struct StatusLog {
    last: BTreeMap<(OperatorId, TransferId), TransferStatus>,
}

/// A status change seen on one operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub op: OperatorId,
    pub transfer: TransferId,
    pub from: Option<TransferStatus>,
    pub to: TransferStatus,
}

impl StatusLog {
    /// Records `db`'s transfer statuses; returns the moves since the last call for this operator
    /// and an I-5 finding per illegal move (a transfer row that vanished is one too).
    pub fn record(&mut self, op: OperatorId, db: &Db) -> (Vec<Move>, Vec<Finding>) {
        let mut moves = Vec::new();
        let mut found = Vec::new();
        for (t, row) in &db.transfers {
            let prev = self.last.insert((op, *t), row.status);
            if prev == Some(row.status) {
                continue;
            }
            moves.push(Move { op, transfer: *t, from: prev, to: row.status });
            if let Some(from) = prev.filter(|f| !allowed_edge(*f, row.status)) {
                found.push(finding(
                    "I-5",
                    format!("transfer {t} {op} {from:?}->{:?}", row.status),
                    format!("transfer {t} on {op} moved {from:?} -> {:?}, not an edge of spark-protocol §4.2", row.status),
                ));
            }
        }
        let gone: Vec<TransferId> = self
            .last
            .range((op, TransferId([0; 16]))..=(op, TransferId([0xff; 16])))
            .filter(|((_, t), _)| !db.transfers.contains_key(t))
            .map(|((_, t), _)| *t)
            .collect();
        for t in gone {
            let was = self.last.remove(&(op, t));
            found.push(finding(
                "I-5",
                format!("transfer {t} {op} vanished"),
                format!("transfer {t} on {op} was {was:?} and its row disappeared"),
            ));
        }
        (moves, found)
    }
}

/// I-5 across operators: no transfer RETURNED on one and ≥ SENDER_KEY_TWEAKED on another.
pub fn check_cross_status(transfer: &TransferId, statuses: &[(OperatorId, TransferStatus)]) -> Option<Finding> {
    let returned = statuses.iter().find(|(_, s)| *s == TransferStatus::Returned)?;
    let sent = statuses.iter().find(|(_, s)| s.is_sent())?;
    Some(finding(
        "I-5",
        format!("transfer {transfer} split"),
        format!(
            "transfer {transfer} is RETURNED on {} but {:?} on {}: the leaf belongs to both sender and receiver",
            returned.0, sent.1, sent.0
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransferStatus::*;

    #[test]
    fn edges_forward_only_and_return_only_before_tweak() {
        assert!(allowed_edge(SenderKeyTweakPending, SenderInitiatedCoordinator));
        assert!(allowed_edge(SenderInitiatedCoordinator, Returned));
        assert!(allowed_edge(SenderKeyTweaked, Completed));
        assert!(!allowed_edge(SenderKeyTweaked, Returned));
        assert!(allowed_edge(ReceiverKeyTweakLocked, SenderKeyTweaked), "rollback");
        assert!(!allowed_edge(ReceiverKeyTweakApplied, SenderKeyTweaked), "no rollback after phase 2");
        assert!(!allowed_edge(ReceiverKeyTweakLocked, SenderInitiatedCoordinator));
        assert!(!allowed_edge(Completed, ReceiverKeyTweakApplied));
        assert!(!allowed_edge(Returned, SenderKeyTweakPending));
    }

    #[test]
    fn cross_status_split_fires_only_on_returned_vs_sent() {
        let t = TransferId([1; 16]);
        let (a, b) = (OperatorId(0), OperatorId(1));
        assert!(check_cross_status(&t, &[(a, Returned), (b, SenderInitiatedCoordinator)]).is_none());
        assert!(check_cross_status(&t, &[(a, Completed), (b, SenderKeyTweaked)]).is_none());
        let f = check_cross_status(&t, &[(a, Returned), (b, SenderKeyTweaked)]).unwrap();
        assert_eq!(f.invariant, "I-5");
        assert!(f.message.contains("operator:1"), "{}", f.message);
    }
}
