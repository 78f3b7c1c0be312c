//! L-6 for leaf swaps (spark-protocol §4.3, §6.4): both legs complete or neither. The
//! coordinator's `swaps` table links a primary to its counter transfers and holds the decision.
//! - Safety, after every store change: once decided, no operator holds a leg on the other side
//!   of the decision (a leg settled while the swap was returned, or returned while settled), and
//!   no operator has the primary settled while a committed counter is returned (or vice versa).
//! - Liveness, at quiescence: every swap is decided, and every up operator's legs match it.
use super::{finding, Finding};
use reference_node::operator::store::{Db, TransferStatus};
use reference_node::operator::swap::{SwapDecision, SwapRow};
use reference_node::types::{Micros, OperatorId, TransferId};

fn swaps<'a>(dbs: &'a [(OperatorId, &'a Db)]) -> impl Iterator<Item = (OperatorId, TransferId, &'a SwapRow)> {
    dbs.iter().flat_map(|(op, db)| db.swaps.iter().map(move |(t, r)| (*op, *t, r)))
}

fn status(db: &Db, t: &TransferId) -> Option<TransferStatus> {
    db.transfers.get(t).map(|r| r.status)
}

/// The legs that share the swap's fate: the primary and every counter committed on the
/// coordinator (a counter refused before commit never held anything).
fn legs(primary: TransferId, row: &SwapRow) -> Vec<TransferId> {
    std::iter::once(primary).chain(row.committed_counters()).collect()
}

pub fn check_safety(dbs: &[(OperatorId, &Db)]) -> Vec<Finding> {
    let mut found = Vec::new();
    for (coord, primary, row) in swaps(dbs) {
        let legs = legs(primary, row);
        for (op, db) in dbs {
            let sent: Vec<&TransferId> = legs.iter().filter(|t| status(db, t).is_some_and(|s| s.is_sent())).collect();
            let returned: Vec<&TransferId> = legs.iter().filter(|t| status(db, t) == Some(TransferStatus::Returned)).collect();
            let subject = format!("swap {primary}");
            if !sent.is_empty() && !returned.is_empty() {
                found.push(finding("L-6", subject.clone(), format!("{op} holds leg {} settled and leg {} returned", sent[0], returned[0])));
            }
            match row.decision {
                SwapDecision::Returned if !sent.is_empty() => {
                    found.push(finding("L-6", subject, format!("{coord} returned the swap but {op} settled leg {}", sent[0])));
                }
                SwapDecision::Settling | SwapDecision::Settled if !returned.is_empty() => {
                    found.push(finding("L-6", subject, format!("{coord} settled the swap but {op} returned leg {}", returned[0])));
                }
                _ => {}
            }
        }
    }
    found
}

/// At quiescence (`up` operators only): decided, and every leg on the decided side.
pub fn check_atomicity(up: &[(OperatorId, &Db)], now: Micros, grace: Micros) -> Vec<Finding> {
    let mut found = Vec::new();
    for (coord, primary, row) in swaps(up) {
        let subject = format!("swap {primary}");
        match row.decision {
            SwapDecision::Open if now > row.expiry + grace => {
                found.push(finding("L-6", subject, format!("{coord} never decided the swap (expired {} s ago)", (now.0 - row.expiry.0) / 1_000_000)));
            }
            SwapDecision::Open | SwapDecision::Settling => {}
            SwapDecision::Settled => {
                for (op, db) in up {
                    for t in legs(primary, row) {
                        if !status(db, &t).is_some_and(|s| s.is_sent()) {
                            found.push(finding("L-6", subject.clone(), format!("settled, but leg {t} on {op} is {:?}", status(db, &t))));
                        }
                    }
                }
            }
            SwapDecision::Returned => {
                for (op, db) in up {
                    for t in std::iter::once(primary).chain(row.counters.keys().copied()) {
                        if let Some(s) = status(db, &t).filter(|s| *s != TransferStatus::Returned) {
                            found.push(finding("L-6", subject.clone(), format!("returned, but leg {t} on {op} is {s:?}")));
                        }
                    }
                }
            }
        }
    }
    found
}
