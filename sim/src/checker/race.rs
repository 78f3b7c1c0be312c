//! L-4, second half (spark-protocol §6.4): "no previous owner can claim that leaf first if the
//! owner (or watchtower) broadcasts within each CSV window" — the old-owner exit race of §5.2
//! item 1, watched on chain.
//!
//! After every block, every confirmed tx spending output 0 of one of a leaf's node txs (the
//! output its refunds spend) is compared with the current owner's refunds in the operators' rows
//! (any operator's: during a transfer the sender's and the receiver's both count as current).
//! A refund that is none of them paid a previous owner. Then:
//! - if somebody defended the leaf before that block — an operator's watchtower broadcast the
//!   owner's direct refund (`WatchtowerBroadcast`), the owner saw the node tx and exited
//!   (`OwnerDefends`), or the owner was already exiting — the ordering argument of §3.6 failed:
//!   reported as `L-4`;
//! - if nobody did (watchtower off, owner offline), the old owner won the way §5.2 item 2 says it
//!   can: reported as `watchtower-dependence`, a distinct finding a scenario can expect, never as
//!   theft (no signature was forged; the leaf's deposit output was spent by its own node tx).
//!
//! A race the current owner's side won is counted as the sometimes-property
//! `stale-race-defended`.
use super::{finding, Finding};
use crate::actor::Actor;
use crate::engine::{Engine, StepRecord};
use bitcoin::{OutPoint, Txid};
use reference_node::chain::Chain;
use reference_node::observe::Observation;
use reference_node::types::LeafId;
use reference_node::wallet::LeafState;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub(super) struct RaceCheck {
    /// Leaf → who defended it, in the order the defences were seen.
    defended: BTreeMap<LeafId, Vec<String>>,
    /// Leaves a former owner raced (`StaleRaceStarted`).
    raced: BTreeSet<LeafId>,
    blocks_seen: usize,
    /// Outcome counts, for tests and reports.
    pub(super) stale_won: u64,
    pub(super) defended_won: u64,
}

impl RaceCheck {
    /// Returns the findings, the sometimes-properties hit and how many node-output spends it judged.
    pub(super) fn after_event(&mut self, engine: &Engine<Actor, Chain>, rec: &StepRecord) -> (Vec<Finding>, Vec<&'static str>, u64) {
        for obs in &rec.observations {
            match obs {
                Observation::WatchtowerBroadcast { operator, leaf, height, .. } => {
                    self.defended.entry(*leaf).or_default().push(format!("{operator}'s watchtower (height {height})"));
                }
                Observation::OwnerDefends { wallet, leaf } => self.defended.entry(*leaf).or_default().push(format!("{wallet} (the owner)")),
                Observation::StaleRaceStarted { leaf, .. } => {
                    self.raced.insert(*leaf);
                }
                _ => {}
            }
        }
        let blocks = engine.blocks();
        if blocks.len() == self.blocks_seen {
            return (Vec::new(), Vec::new(), 0);
        }
        let new = &blocks[self.blocks_seen..];
        self.blocks_seen = blocks.len();
        // Node output 0 → (leaf, the current owner's refund txids on any operator).
        let mut watched: BTreeMap<OutPoint, (LeafId, BTreeSet<Txid>, u64)> = BTreeMap::new();
        for (_, a) in engine.nodes() {
            let Some(op) = a.as_operator() else { continue };
            // Split and aggregated leaves are superseded: their node output is spent by the split /
            // aggregate node, not raced.
            for (leaf, row) in op.db().leaves.iter().filter(|(l, r)| r.status.is_value_bearing() && !super::renew::superseded_by_split(op.db(), l, r)) {
                for node in [&row.nodes.cpfp, &row.nodes.direct] {
                    let value = node.output.first().map_or(0, |o| o.value.to_sat());
                    let e = watched.entry(OutPoint { txid: node.compute_txid(), vout: 0 }).or_insert_with(|| (*leaf, BTreeSet::new(), value));
                    e.1.extend(row.refunds.as_array().iter().map(|t| t.compute_txid()));
                }
            }
        }
        let exiting: BTreeSet<LeafId> = engine
            .nodes()
            .filter_map(|(_, a)| a.as_wallet())
            .flat_map(|w| w.leaves().iter().filter(|(_, l)| matches!(l.state, LeafState::Exiting(_) | LeafState::Exited)).map(|(id, _)| *id))
            .collect();
        let (mut found, mut hits, mut judged) = (Vec::new(), Vec::new(), 0);
        for block in new {
            for tx in &block.txs {
                // A connector refund (two inputs: node output + the exit tx's connector) is the
                // SSP's cooperative-exit refund, spendable only because the exit tx paying the
                // user confirmed: L-5 judges it (checker/coop_exit.rs), not the stale-refund race.
                if tx.input.len() > 1 {
                    continue;
                }
                let txid = tx.compute_txid();
                for input in &tx.input {
                    let Some((leaf, current, node_value)) = watched.get(&input.previous_output) else { continue };
                    judged += 1;
                    if let Some(m) = check_direct_fee(tx, *node_value) {
                        found.push(finding("I-1", format!("fee {txid}"), format!("leaf {leaf}: refund {txid} on chain: {m}")));
                    }
                    if current.contains(&txid) {
                        if self.raced.contains(leaf) {
                            self.defended_won += 1;
                            hits.push("stale-race-defended");
                        }
                        continue;
                    }
                    self.stale_won += 1;
                    let mut defenders = self.defended.get(leaf).cloned().unwrap_or_default();
                    if exiting.contains(leaf) {
                        defenders.push("the owner's own exit".into());
                    }
                    let what = format!(
                        "leaf {leaf}: a previous owner's refund {txid} spent the node output {} at height {}",
                        input.previous_output, block.height
                    );
                    found.push(if defenders.is_empty() {
                        finding("watchtower-dependence", format!("leaf {leaf}"), format!("{what}: nobody broadcast the current owner's refund inside the window (owner offline, no watchtower; spark-protocol §5.2 item 2)"))
                    } else {
                        finding("L-4", format!("stale refund {leaf}"), format!("{what} although {} broadcast for the current owner (spark-protocol §3.6)", defenders.join(", ")))
                    });
                }
            }
        }
        (found, hits, judged)
    }
}

/// spark-protocol §3.2: a refund without a P2A anchor is a direct variant and pays exactly
/// `MaybeApplyFee` (955 sat when the value is above 955, else nothing); a CPFP variant pays zero.
pub fn check_direct_fee(tx: &bitcoin::Transaction, input_value: u64) -> Option<String> {
    let out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    let fee = input_value.checked_sub(out)?;
    let anchored = tx.output.iter().any(|o| reference_node::chain::is_p2a(&o.script_pubkey));
    let want = if anchored { 0 } else { input_value - reference_node::tx::template::maybe_apply_fee(bitcoin::Amount::from_sat(input_value)).to_sat() };
    (fee != want).then(|| format!("pays {fee} sat in fees from a {input_value} sat input, expected {want} sat ({})", if anchored { "CPFP variant" } else { "direct variant, MaybeApplyFee" }))
}

#[cfg(test)]
mod tests {
    use super::check_direct_fee;
    use bitcoin::{Amount, ScriptBuf, Transaction, TxOut};
    use reference_node::tx::template::anchor_output;

    fn tx(outputs: Vec<TxOut>) -> Transaction {
        Transaction { version: bitcoin::transaction::Version(3), lock_time: bitcoin::absolute::LockTime::ZERO, input: vec![], output: outputs }
    }
    fn pay(sat: u64) -> TxOut {
        TxOut { value: Amount::from_sat(sat), script_pubkey: ScriptBuf::new() }
    }

    #[test]
    fn direct_refunds_pay_955_and_cpfp_refunds_nothing() {
        assert_eq!(check_direct_fee(&tx(vec![pay(99_045)]), 100_000), None);
        assert_eq!(check_direct_fee(&tx(vec![pay(900)]), 900), None, "at or below 955 nothing is taken");
        assert!(check_direct_fee(&tx(vec![pay(99_000)]), 100_000).is_some(), "1000 sat is not the rule");
        assert_eq!(check_direct_fee(&tx(vec![pay(100_000), anchor_output()]), 100_000), None);
        assert!(check_direct_fee(&tx(vec![pay(99_045), anchor_output()]), 100_000).is_some());
    }
}
