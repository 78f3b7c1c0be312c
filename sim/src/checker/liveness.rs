//! The liveness properties of spark-protocol §6.4, judged at the end of the liveness phase (the
//! workload ended, every fault healed, the budget of simulated time ran out or the system is
//! quiet): "eventually" properties in the sense of the issue.
use super::hygiene::WalletView;
use super::{finding, Finding};
use reference_node::operator::store::{Db, PendingSendStatus, TransferStatus};
use reference_node::types::{Micros, OperatorId, TransferId};
use reference_node::wallet::LeafState;
use std::collections::BTreeMap;

/// True when nothing is left to do: every transfer terminal on every up operator, no pending
/// send unfinished, no gossip undelivered, every wallet idle and no exit in progress.
pub fn is_quiet(dbs: &[(OperatorId, &Db)], wallets: &[WalletView<'_>]) -> bool {
    dbs.iter().all(|(_, db)| operator_quiet(db))
        && wallets.iter().all(|w| w.pending_work == 0 && !w.leaves.values().any(|l| matches!(l.state, LeafState::Exiting(_))))
}

/// One operator has nothing left to finish.
pub fn operator_quiet(db: &Db) -> bool {
    db.gossip_out.is_empty()
        && db.transfers.values().all(|t| t.status.is_terminal())
        && db.pending_sends.values().all(|p| p.status == PendingSendStatus::Finished)
        && super::consensus::flows_quiet(db)
}

/// L-2: after healing, every transfer is COMPLETED or RETURNED with one status on every up
/// operator, every pending send is FINISHED, and every wallet finished its work.
pub fn check_healed(dbs: &[(OperatorId, &Db)], wallets: &[WalletView<'_>], down: &[String]) -> Vec<Finding> {
    let note = if down.is_empty() { String::new() } else { format!(" (still down: {})", down.join(", ")) };
    let mut found = Vec::new();
    let mut statuses: BTreeMap<TransferId, Vec<(OperatorId, TransferStatus)>> = BTreeMap::new();
    for (op, db) in dbs {
        for (t, row) in &db.transfers {
            statuses.entry(*t).or_default().push((*op, row.status));
        }
        for (t, p) in db.pending_sends.iter().filter(|(_, p)| p.status != PendingSendStatus::Finished) {
            found.push(finding(
                "L-2",
                format!("pending send {t} {op}"),
                format!("pending send {t} on {op} (started {:.1}s) is not FINISHED after the liveness phase{note}", p.started_at.as_secs_f64()),
            ));
        }
    }
    for (t, s) in statuses {
        let terminal = s.iter().all(|(_, x)| x.is_terminal());
        if !terminal {
            let all: Vec<String> = s.iter().map(|(o, x)| format!("{o}={x:?}")).collect();
            found.push(finding("L-2", format!("transfer {t}"), format!("transfer {t} is not terminal after the liveness phase: {}{note}", all.join(", "))));
        }
    }
    for w in wallets.iter().filter(|w| w.pending_work > 0) {
        found.push(finding("L-2", format!("{} work", w.id), format!("{} still has {} operation(s) pending after the liveness phase{note}", w.id, w.pending_work)));
    }
    found
}

/// L-3: a transfer with an expiry that is still before SENDER_KEY_TWEAKED one task period after
/// it expired must be RETURNED.
pub fn check_expired(dbs: &[(OperatorId, &Db)], now: Micros, task_period: Micros) -> Vec<Finding> {
    let mut found = Vec::new();
    for (op, db) in dbs {
        for (t, row) in &db.transfers {
            let stuck = !row.status.is_terminal() && !row.status.is_sent();
            if stuck && row.expiry > Micros::ZERO && now > row.expiry + task_period {
                found.push(finding(
                    "L-3",
                    format!("transfer {t}"),
                    format!(
                        "transfer {t} on {op} is {:?} at {:.1}s, past its expiry {:.1}s + one task period, and not RETURNED",
                        row.status,
                        now.as_secs_f64(),
                        row.expiry.as_secs_f64()
                    ),
                ));
            }
        }
    }
    found
}

/// L-4: every unilateral exit a wallet started had its refund confirmed.
pub fn check_exits(wallets: &[WalletView<'_>]) -> Vec<Finding> {
    let mut found = Vec::new();
    for w in wallets {
        for (leaf, l) in w.leaves.iter().filter(|(_, l)| matches!(l.state, LeafState::Exiting(_))) {
            found.push(finding("L-4", format!("exit {leaf}"), format!("{}'s unilateral exit of leaf {leaf} did not confirm its refund within the liveness phase ({:?})", w.id, l.state)));
        }
    }
    found
}

/// L-8: a deposit command dropped because the keyshare pool ran dry.
pub fn check_pool(skipped_for_pool: &[(String, Micros)]) -> Vec<Finding> {
    skipped_for_pool
        .iter()
        .map(|(who, at)| {
            finding("L-8", format!("pool {who} {}", at.0), format!("{who} gave up a deposit at {:.1}s: the keyshare pool ran dry", at.as_secs_f64()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_node::operator::store::PendingSendRow;

    #[test]
    fn pending_send_blocks_quiet_and_is_l2() {
        let mut db = Db::default();
        assert!(is_quiet(&[(OperatorId(0), &db)], &[]));
        assert!(check_healed(&[(OperatorId(0), &db)], &[], &[]).is_empty());
        db.pending_sends.insert(TransferId([2; 16]), PendingSendRow { status: PendingSendStatus::Started, started_at: Micros::from_secs(3) });
        assert!(!is_quiet(&[(OperatorId(0), &db)], &[]));
        let f = check_healed(&[(OperatorId(0), &db)], &[], &["operator:4".into()]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].invariant, "L-2");
        assert!(f[0].message.contains("still down: operator:4"), "{}", f[0].message);
    }

    #[test]
    fn pool_exhaustion_is_l8() {
        assert!(check_pool(&[]).is_empty());
        assert_eq!(check_pool(&[("wallet:1".into(), Micros::from_secs(1))])[0].invariant, "L-8");
    }
}
