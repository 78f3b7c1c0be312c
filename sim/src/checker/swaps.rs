//! L-6 for leaf swaps (spark-protocol §4.3, §6.4): both legs complete or neither. The
//! coordinator's `swaps` table links a primary to its counter transfers and holds the decision.
//! - Safety, after every store change: once decided, no operator holds a leg on the other side
//!   of the decision (a leg settled while the swap was returned, or returned while settled), and
//!   no operator has the primary settled while a committed counter is returned (or vice versa).
//! - Liveness, at quiescence: every swap is decided, and every up operator's legs match it.
//! - v2 (adaptor piece), after every store change: a v2 swap is settled only on the user's
//!   completions of the operators' pre-signatures. For each committed counter the coordinator
//!   holds the pre-signature the operators produced under T, and the counter's stored CPFP
//!   refund carries its completion, from which `a` (a·G = T) is extracted: what the SSP's
//!   `swap-adaptor-learned` relies on.
use super::{finding, Finding};
use reference_node::operator::store::{Db, TransferStatus};
use reference_node::crypto::adaptor;
use reference_node::msg::SwapVersion;
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
        if let Some(db) = dbs.iter().find(|(op, _)| *op == coord).map(|(_, db)| *db) {
            found.extend(check_v2_completion(coord, db, primary, row));
        }
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

/// A v2 swap past its settle decision on coordinator `coord`: every committed counter's
/// operator pre-signature is kept and its completion (the stored CPFP refund's signature)
/// opens the adaptor point.
fn check_v2_completion(coord: OperatorId, db: &Db, primary: TransferId, row: &SwapRow) -> Vec<Finding> {
    if row.version != SwapVersion::V2 || !matches!(row.decision, SwapDecision::Settling | SwapDecision::Settled) {
        return Vec::new();
    }
    let subject = format!("swap {primary}");
    let Some(t) = row.adaptor_point else {
        return vec![finding("L-6", subject, format!("{coord} settled v2 swap {primary} without an adaptor point"))];
    };
    let mut found = Vec::new();
    for c in row.committed_counters() {
        let Some(pre) = row.counter_pre_signatures.get(&c) else {
            found.push(finding("L-6", subject.clone(), format!("{coord} settled v2 swap {primary} without the operators' pre-signature of counter {c}")));
            continue;
        };
        let refund = db.transfers.get(&c).and_then(|tr| tr.leaves.values().next()).and_then(|l| l.intermediate_refunds.as_ref()).map(|r| &r.cpfp);
        let sig = refund
            .and_then(|tx| tx.input.first())
            .filter(|i| i.witness.len() == 1)
            .and_then(|i| i.witness.nth(0))
            .and_then(|b| bitcoin::secp256k1::schnorr::Signature::from_slice(b).ok());
        let opened = sig.map(|sig| adaptor::extract(pre, &sig, &t));
        if !matches!(opened, Some(Ok(_))) {
            found.push(finding("L-6", subject.clone(), format!("{coord} settled v2 swap {primary} but counter {c}'s refund does not carry a completion of its pre-signature that opens T ({opened:?})")));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_node::crypto::{curve, Scalar};
    use std::collections::BTreeMap;

    fn row(decision: SwapDecision, pre: bool) -> SwapRow {
        let key = curve::base_mul(&Scalar::from_u32(7)).unwrap();
        let counter = TransferId([2; 16]);
        let pre_signatures = if pre { BTreeMap::from([(counter, adaptor::PreSignature { r: [1; 32], s: Scalar::from_u32(3) })]) } else { BTreeMap::new() };
        SwapRow {
            version: SwapVersion::V2,
            adaptor_point: curve::base_mul(&Scalar::from_u32(5)),
            user: key,
            ssp: key,
            value_sats: 1024,
            expiry: Micros::from_secs(120),
            counters: BTreeMap::from([(counter, (1024, true))]),
            decision,
            counter_pre_signatures: pre_signatures,
        }
    }

    /// A v2 swap settled without the operators' pre-signature, or without a completion of it in
    /// the counter's refund, is an L-6 finding; an open one is not judged yet.
    #[test]
    fn a_v2_swap_settled_without_a_completed_pre_signature_is_found() {
        let db = Db::default();
        let primary = TransferId([1; 16]);
        let missing = check_v2_completion(OperatorId(0), &db, primary, &row(SwapDecision::Settled, false));
        assert!(missing.len() == 1 && missing[0].message.contains("without the operators' pre-signature"), "{missing:?}");
        let uncompleted = check_v2_completion(OperatorId(0), &db, primary, &row(SwapDecision::Settling, true));
        assert!(uncompleted.len() == 1 && uncompleted[0].message.contains("does not carry a completion"), "{uncompleted:?}");
        assert!(check_v2_completion(OperatorId(0), &db, primary, &row(SwapDecision::Open, false)).is_empty());
        let mut v3 = row(SwapDecision::Settled, false);
        v3.version = SwapVersion::V3;
        assert!(check_v2_completion(OperatorId(0), &db, primary, &v3).is_empty());
    }
}
