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
use reference_node::operator::store::Db;
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
        let dbs: Vec<&Db> = engine.nodes().filter_map(|(_, a)| a.as_operator()).map(|op| op.db()).collect();
        let view = RaceView::from_dbs(&dbs);
        let exiting: BTreeSet<LeafId> = engine
            .nodes()
            .filter_map(|(_, a)| a.as_wallet())
            .flat_map(|w| w.leaves().iter().filter(|(_, l)| matches!(l.state, LeafState::Exiting(_) | LeafState::Exited)).map(|(id, _)| *id))
            .collect();
        let (mut found, mut hits, mut judged) = (Vec::new(), Vec::new(), 0);
        for block in new {
            for tx in &block.txs {
                let txid = tx.compute_txid();
                for (spent, Watched { leaf, current, node_value }) in view.refund_spends(tx, &txid) {
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
                        spent, block.height
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

/// One node output 0 the race watches (the output a leaf's refunds spend).
#[derive(Debug)]
pub(super) struct Watched {
    /// The leaf whose node tx it is.
    pub(super) leaf: LeafId,
    /// The current owner's refunds on any operator (during a transfer the sender's and the
    /// receiver's both count as current).
    pub(super) current: BTreeSet<Txid>,
    pub(super) node_value: u64,
}

/// What the race needs from the operators' tables to judge a confirmed tx.
#[derive(Debug, Default)]
pub(super) struct RaceView {
    /// The node outputs of every leaf row on every operator. A SPLITTED parent and an
    /// AGGREGATED child are watched too, but their own refunds no longer count as current: the
    /// split or aggregate node superseded them, so one of them confirming paid a previous owner.
    pub(super) watched: BTreeMap<OutPoint, Watched>,
    /// Every node tx of a known exit chain (layers of every row, finalized split nodes): a node
    /// tx spending a node output is a layer (a split node under its parent, a renewed leaf's new
    /// node while gossip still carries the old one), never a refund.
    node_txs: BTreeSet<Txid>,
    /// The connector txs of every coop exit any operator recorded (operator/coop_exit.rs).
    connectors: BTreeSet<Txid>,
}

impl RaceView {
    pub(super) fn from_dbs(dbs: &[&Db]) -> Self {
        let mut v = RaceView::default();
        for db in dbs {
            for (leaf, row) in &db.leaves {
                for layer in row.exit_layers() {
                    v.node_txs.extend([layer.cpfp.compute_txid(), layer.direct.compute_txid()]);
                }
                for node in [&row.nodes.cpfp, &row.nodes.direct] {
                    let node_value = node.output.first().map_or(0, |o| o.value.to_sat());
                    let e = v.watched.entry(OutPoint { txid: node.compute_txid(), vout: 0 }).or_insert_with(|| Watched { leaf: *leaf, current: BTreeSet::new(), node_value });
                    if row.status.is_value_bearing() {
                        e.current.extend(row.refunds.as_array().iter().map(|t| t.compute_txid()));
                    }
                }
            }
            for split in db.splits.values().filter_map(|s| s.split_nodes.as_ref()) {
                v.node_txs.extend([split.cpfp.compute_txid(), split.direct.compute_txid()]);
            }
            v.connectors.extend(db.coop_exits.values().map(|c| c.connector_tx.compute_txid()));
        }
        v
    }

    /// The refund spends in `tx` the race must judge: each input spending a watched node output,
    /// with that output. None for a node tx (a layer, see `node_txs`) and none for a coop exit's
    /// connector refund (spark-protocol §3.7: one input spends a connector; it can confirm only
    /// because the exit tx paying the user did, so L-5 judges it, checker/coop_exit.rs). Every
    /// other tx is judged, multi-input ones included.
    pub(super) fn refund_spends<'a>(&'a self, tx: &'a bitcoin::Transaction, txid: &Txid) -> impl Iterator<Item = (OutPoint, &'a Watched)> + 'a {
        let skip = self.node_txs.contains(txid) || tx.input.iter().any(|i| self.connectors.contains(&i.previous_output.txid));
        tx.input.iter().filter(move |_| !skip).filter_map(|i| self.watched.get(&i.previous_output).map(|w| (i.previous_output, w)))
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
    use bitcoin::hashes::Hash as _;
    use bitcoin::{Amount, ScriptBuf, Transaction, TxOut};
    use reference_node::tx::template::anchor_output;

    fn tx(outputs: Vec<TxOut>) -> Transaction {
        Transaction { version: bitcoin::transaction::Version(3), lock_time: bitcoin::absolute::LockTime::ZERO, input: vec![], output: outputs }
    }
    fn pay(sat: u64) -> TxOut {
        TxOut { value: Amount::from_sat(sat), script_pubkey: ScriptBuf::new() }
    }

    /// (spent leaf, is current) for each refund spend `tx` makes, as the race judges it.
    fn judge(view: &super::RaceView, tx: &Transaction) -> Vec<(reference_node::types::LeafId, bool)> {
        let txid = tx.compute_txid();
        view.refund_spends(tx, &txid).map(|(_, w)| (w.leaf, w.current.contains(&txid))).collect()
    }

    #[test]
    fn a_split_childs_stale_refund_is_judged_and_the_split_node_is_not() {
        use crate::checker::split_tree::{refunds, tx as spend, SplitTree, CHILD, PARENT, VALUE};
        let tree = SplitTree::new();
        let db = tree.db();
        let view = super::RaceView::from_dbs(&[&db]);
        // The child's current refund, and a previous owner's refund of the child.
        assert_eq!(judge(&view, &tree.child.refunds.cpfp), vec![(CHILD, true)]);
        let stale = refunds(&tree.child.nodes, 2000, VALUE, 7);
        assert_eq!(judge(&view, &stale.cpfp), vec![(CHILD, false)], "a split child's stale refund must be flagged");
        // The split node spends the parent's node output: a layer, not a refund.
        assert!(judge(&view, &tree.split_nodes.cpfp).is_empty());
        // The parent's own refund lost to the split node: confirming it paid a previous owner.
        assert_eq!(judge(&view, &tree.parent.refunds.cpfp), vec![(PARENT, false)]);
        // A multi-input tx is judged like any other unless an input spends a coop exit's connector.
        let other = bitcoin::Txid::from_byte_array([5; 32]);
        let two_inputs = spend(&[tree.child.nodes.cpfp.compute_txid(), other], 2000, &[VALUE]);
        assert_eq!(judge(&view, &two_inputs), vec![(CHILD, false)]);
        let mut db = db;
        let connector_tx = spend(&[bitcoin::Txid::from_byte_array([6; 32])], 0, &[330, 330]);
        let connector_refund = spend(&[tree.child.nodes.cpfp.compute_txid(), connector_tx.compute_txid()], 1900, &[VALUE]);
        db.coop_exits.insert(
            reference_node::types::TransferId([8; 16]),
            reference_node::operator::coop_exit::CoopExitRow { exit_txid: other, connector_tx, finalized: false, confirmed: None, ever_confirmed: false, closed_on_chain: false },
        );
        let view = super::RaceView::from_dbs(&[&db]);
        assert!(judge(&view, &connector_refund).is_empty(), "L-5 judges connector refunds");
        assert_eq!(judge(&view, &two_inputs), vec![(CHILD, false)], "only a connector input exempts a tx");
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
