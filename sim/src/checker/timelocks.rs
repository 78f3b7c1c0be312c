//! Timelock checks (spark-protocol §6.2): I-8 bounds and recomputation, and I-6 applied to each
//! newly signed refund the moment a wallet holds it (breez #314 shows up at the claim itself).
use super::{check_refund_order, short_key, RefundEntry};
use reference_node::msg::{NodeSet, RefundSet};
use reference_node::tx::timelock::{blocks, DIRECT_TIMELOCK_OFFSET, INITIAL_TIMELOCK, TIME_LOCK_INTERVAL};
use bitcoin::Transaction;
use std::collections::BTreeSet;

/// Lowest refund CSV the 2026 code signs (the refund floor, spark-protocol §6.2 I-8).
pub const REFUND_MIN: u16 = 100;

fn csv(tx: &Transaction) -> Option<u16> {
    tx.input.first().map(|i| blocks(i.sequence).0)
}

/// I-8 on one leaf's txs: refund CSV ∈ [100, 2000], node CSV ∈ {0} ∪ [100, 2000], every direct
/// variant = its CPFP twin + 50.
pub fn check_timelock_bounds(nodes: Option<&NodeSet>, refunds: &RefundSet) -> Option<String> {
    let max = INITIAL_TIMELOCK.0;
    let (Some(c), Some(d), Some(dc)) = (csv(&refunds.cpfp), csv(&refunds.direct), csv(&refunds.direct_from_cpfp)) else {
        return Some("a refund tx has no input".into());
    };
    if !(REFUND_MIN..=max).contains(&c) {
        return Some(format!("CPFP refund CSV {c} outside [{REFUND_MIN}, {max}]"));
    }
    for (name, v) in [("direct refund", d), ("direct-from-CPFP refund", dc)] {
        if u32::from(v) != u32::from(c) + u32::from(DIRECT_TIMELOCK_OFFSET) {
            return Some(format!("{name} CSV {v} != CPFP refund CSV {c} + {DIRECT_TIMELOCK_OFFSET}"));
        }
    }
    let n = nodes?;
    let (Some(nc), Some(nd)) = (csv(&n.cpfp), csv(&n.direct)) else {
        return Some("a node tx has no input".into());
    };
    if nc != 0 && !(TIME_LOCK_INTERVAL..=max).contains(&nc) {
        return Some(format!("CPFP node CSV {nc} outside {{0}} ∪ [{TIME_LOCK_INTERVAL}, {max}]"));
    }
    if u32::from(nd) != u32::from(nc) + u32::from(DIRECT_TIMELOCK_OFFSET) {
        return Some(format!("direct node CSV {nd} != CPFP node CSV {nc} + {DIRECT_TIMELOCK_OFFSET}"));
    }
    None
}

/// I-8 "every CSV the SO signs equals the value it recomputes from its DB": a transfer's
/// intermediate refunds are the previous refunds' CSV − 100 (spark-protocol §3.4).
pub fn check_decrement(previous: &RefundSet, intermediate: &RefundSet) -> Option<String> {
    let (Some(p), Some(i)) = (csv(&previous.cpfp), csv(&intermediate.cpfp)) else {
        return Some("a refund tx has no input".into());
    };
    (u32::from(i) + u32::from(TIME_LOCK_INTERVAL) != u32::from(p)).then(|| {
        format!("intermediate refund CSV {i} != previous refund CSV {p} − {TIME_LOCK_INTERVAL}")
    })
}

/// I-8's HTLC exception (spark-protocol §3.3, §4.8): a Lightning send's intermediate refunds
/// are (previous − 100) + 70 (CPFP) and (previous − 100) + 85 (both direct variants), not
/// previous − 100 with direct + 50. Only for a transfer the operator holds as a SEND swap.
pub fn check_htlc_timelocks(previous: &RefundSet, htlc: &RefundSet) -> Option<String> {
    use reference_node::tx::timelock::{DIRECT_HTLC_TIMELOCK_OFFSET, HTLC_TIMELOCK_OFFSET};
    let (Some(p), Some(c), Some(d), Some(dc)) = (csv(&previous.cpfp), csv(&htlc.cpfp), csv(&htlc.direct), csv(&htlc.direct_from_cpfp)) else {
        return Some("a refund tx has no input".into());
    };
    let Some(base) = p.checked_sub(TIME_LOCK_INTERVAL).filter(|b| *b >= REFUND_MIN) else {
        return Some(format!("HTLC refund after a previous refund CSV {p}: no room for the − {TIME_LOCK_INTERVAL} decrement"));
    };
    if u32::from(c) != u32::from(base) + u32::from(HTLC_TIMELOCK_OFFSET) {
        return Some(format!("HTLC refund CSV {c} != (previous refund CSV {p} − {TIME_LOCK_INTERVAL}) + {HTLC_TIMELOCK_OFFSET}"));
    }
    for (name, v) in [("direct HTLC refund", d), ("direct-from-CPFP HTLC refund", dc)] {
        if u32::from(v) != u32::from(base) + u32::from(DIRECT_HTLC_TIMELOCK_OFFSET) {
            return Some(format!("{name} CSV {v} != (previous refund CSV {p} − {TIME_LOCK_INTERVAL}) + {DIRECT_HTLC_TIMELOCK_OFFSET}"));
        }
    }
    None
}

/// I-6 at signing time: the refunds `new` (one owner, just obtained by a wallet and not seen
/// before) against every refund of another owner already signed on the same outpoints.
pub fn check_new_refunds(history: &BTreeSet<RefundEntry>, new: &[RefundEntry]) -> Vec<String> {
    let fresh: Vec<RefundEntry> = new.iter().filter(|e| !history.contains(e)).cloned().collect();
    if fresh.is_empty() {
        return Vec::new();
    }
    check_refund_order(history, &fresh)
        .into_iter()
        .map(|(old, m)| format!("as soon as {} signed it: {m} (old owner {})", short_key(&fresh[0].owner), short_key(&old)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash as _;
    use bitcoin::{absolute, transaction, Amount, OutPoint, Sequence, TxIn, TxOut, Txid};
    use reference_node::crypto::curve::base_mul;
    use reference_node::crypto::Scalar;

    fn tx(n: u8, csv: u16) -> Transaction {
        Transaction {
            version: transaction::Version(3),
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn { previous_output: OutPoint { txid: Txid::from_byte_array([n; 32]), vout: 0 }, sequence: Sequence(u32::from(csv)), ..Default::default() }],
            output: vec![TxOut { value: Amount::from_sat(1000), script_pubkey: Default::default() }],
        }
    }
    fn refunds(c: u16) -> RefundSet {
        RefundSet { cpfp: tx(1, c), direct: tx(2, c + 50), direct_from_cpfp: tx(1, c + 50) }
    }

    #[test]
    fn bounds_accept_protocol_values_and_reject_others() {
        let nodes = NodeSet { cpfp: tx(0, 0), direct: tx(0, 50) };
        assert_eq!(check_timelock_bounds(Some(&nodes), &refunds(2000)), None);
        assert_eq!(check_timelock_bounds(Some(&nodes), &refunds(100)), None);
        assert!(check_timelock_bounds(None, &refunds(2100)).unwrap().contains("outside"));
        assert!(check_timelock_bounds(None, &refunds(0)).unwrap().contains("outside"));
        let mut skew = refunds(1900);
        skew.direct = tx(2, 1900);
        assert!(check_timelock_bounds(None, &skew).unwrap().contains("direct refund CSV 1900"));
        let bad_node = NodeSet { cpfp: tx(0, 40), direct: tx(0, 90) };
        assert!(check_timelock_bounds(Some(&bad_node), &refunds(2000)).unwrap().contains("node CSV 40"));
    }

    /// The HTLC exception accepts exactly 1970/1985/1985 after 2000, nothing else; ordinary
    /// refunds are not accepted as HTLC ones (and vice versa, by check_timelock_bounds).
    #[test]
    fn htlc_refunds_are_previous_minus_100_plus_70_and_85() {
        let htlc = RefundSet { cpfp: tx(1, 1970), direct: tx(2, 1985), direct_from_cpfp: tx(1, 1985) };
        assert_eq!(check_htlc_timelocks(&refunds(2000), &htlc), None);
        assert!(check_timelock_bounds(None, &htlc).is_some(), "not an ordinary refund set");
        assert!(check_htlc_timelocks(&refunds(2000), &refunds(1900)).unwrap().contains("+ 70"));
        let mut skew = htlc.clone();
        skew.direct = tx(2, 2020);
        assert!(check_htlc_timelocks(&refunds(2000), &skew).unwrap().contains("direct HTLC refund CSV 2020"));
        assert!(check_htlc_timelocks(&refunds(150), &htlc).unwrap().contains("no room"));
    }

    #[test]
    fn decrement_must_be_exactly_one_interval() {
        assert_eq!(check_decrement(&refunds(2000), &refunds(1900)), None);
        assert!(check_decrement(&refunds(2000), &refunds(2000)).unwrap().contains("2000"));
    }

    #[test]
    fn new_refund_checked_at_signing_time() {
        let (a, b) = (base_mul(&Scalar::from_u32(1)).unwrap(), base_mul(&Scalar::from_u32(2)).unwrap());
        let entries = |r: &RefundSet, k| r.as_array().iter().filter_map(|t| RefundEntry::of(t, k)).collect::<Vec<_>>();
        let history: BTreeSet<RefundEntry> = entries(&refunds(2000), &a).into_iter().collect();
        // The receiver's claimed refunds decremented: quiet.
        assert!(check_new_refunds(&history, &entries(&refunds(1900), &b)).is_empty());
        // breez #314: the receiver re-signs at the sender's CSV.
        let found = check_new_refunds(&history, &entries(&refunds(2000), &b));
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("CSV 2000"), "{}", found[0]);
        // A retry of refunds already known is not re-judged.
        let mut h2 = history.clone();
        h2.extend(entries(&refunds(2000), &b));
        assert!(check_new_refunds(&h2, &entries(&refunds(2000), &b)).is_empty());
    }
}
