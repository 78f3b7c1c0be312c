//! Theft (spark-protocol §5.1): tells "the protocol blocked it" from "money moved".
//!
//! After every block, every tx that spends a live leaf's deposit output is compared with the
//! leaf's own node txs (the only txs its owners' exit chains put there). Anything else moved the
//! leaf's money without its owner. Who signed it is read from the colluders' own reports
//! (`Observation::ColludedSignature`):
//! - fewer than t operators co-signed: the protocol should have made that impossible, so it is a
//!   real bug, reported as `theft`;
//! - t or more co-signed: the documented trust limit (≥ t operators keep old shares and collude
//!   with a former owner) was crossed; reported as `trust-assumption-broken`, which a scenario
//!   can expect, with the theft tx on the simulated chain as the evidence.
//!
//! A former owner's attempt that could not produce a valid signature is counted, not reported.
use super::{finding, Finding};
use crate::actor::Actor;
use crate::engine::{Engine, StepRecord};
use bitcoin::{OutPoint, Txid};
use reference_node::chain::Chain;
use reference_node::observe::Observation;
use reference_node::types::{LeafId, OperatorId};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub(super) struct TheftCheck {
    /// Verifying key (compressed) → operators that co-signed under it with an old share.
    coalitions: BTreeMap<[u8; 33], BTreeSet<OperatorId>>,
    attempts_blocked: u64,
    attempts_succeeded: u64,
    blocks_seen: usize,
}

/// What the run's theft attempts came to, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TheftSummary {
    pub attempts_blocked: u64,
    pub attempts_succeeded: u64,
}

impl TheftCheck {
    pub(super) fn summary(&self) -> TheftSummary {
        TheftSummary { attempts_blocked: self.attempts_blocked, attempts_succeeded: self.attempts_succeeded }
    }

    pub(super) fn after_event(&mut self, engine: &Engine<Actor, Chain>, rec: &StepRecord, threshold: u16) -> Vec<Finding> {
        for obs in &rec.observations {
            match obs {
                Observation::ColludedSignature { operator, verifying_key } => {
                    self.coalitions.entry(verifying_key.serialize()).or_default().insert(*operator);
                }
                Observation::TheftAttempt { outcome: Ok(_), .. } => self.attempts_succeeded += 1,
                Observation::TheftAttempt { outcome: Err(_), .. } => self.attempts_blocked += 1,
                _ => {}
            }
        }
        let blocks = engine.blocks();
        if blocks.len() == self.blocks_seen {
            return Vec::new();
        }
        let new = &blocks[self.blocks_seen..];
        self.blocks_seen = blocks.len();
        // Leaves by deposit outpoint, with their legitimate spenders, from every operator.
        let mut leaves: BTreeMap<OutPoint, (LeafId, [u8; 33], BTreeSet<Txid>)> = BTreeMap::new();
        for (_, a) in engine.nodes() {
            let Some(op) = a.as_operator() else { continue };
            for (id, row) in &op.db().leaves {
                let e = leaves.entry(row.deposit_outpoint).or_insert_with(|| (*id, row.verifying_key.serialize(), BTreeSet::new()));
                // The root layer of the exit chain is what spends the deposit outpoint.
                if let Some(root) = row.exit_layers().next() {
                    e.2.insert(root.cpfp.compute_txid());
                    e.2.insert(root.direct.compute_txid());
                }
            }
        }
        let mut found = Vec::new();
        for block in new {
            for tx in &block.txs {
                let txid = tx.compute_txid();
                for input in &tx.input {
                    let Some((leaf, key, legit)) = leaves.get(&input.previous_output) else { continue };
                    if legit.contains(&txid) {
                        continue;
                    }
                    let coalition = self.coalitions.get(key).cloned().unwrap_or_default();
                    let names: Vec<String> = coalition.iter().map(|o| o.to_string()).collect();
                    let (invariant, why) = if coalition.len() >= usize::from(threshold) {
                        ("trust-assumption-broken", format!("{} colluding operators (≥ t = {threshold}) kept old key shares and co-signed with a former owner (spark-protocol §5.1)", coalition.len()))
                    } else {
                        ("theft", format!("only {} operators admit co-signing (< t = {threshold}): the protocol should have made this impossible", coalition.len()))
                    };
                    found.push(finding(
                        invariant,
                        format!("leaf {leaf}"),
                        format!("leaf {leaf}: its deposit output {} was spent on chain at height {} by tx {txid}, which is none of the leaf's node txs: {why} [{}]", input.previous_output, block.height, names.join(", ")),
                    ));
                }
            }
        }
        found
    }
}
