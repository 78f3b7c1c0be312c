//! The operators' watchtower (spark-protocol §3.6, §4.6, §5.2 items 1–2): once a leaf's node tx
//! is on chain — the current owner's exit, or anyone else's, e.g. a former owner racing the
//! stale refund it still holds — every operator broadcasts the current owner's *direct* refund,
//! which it holds fully signed in the leaf row. That refund's CSV (current + 50) is below every
//! previous owner's (≥ current + 100), so an offline owner still wins the race as long as the
//! watchtower broadcasts inside the window.
//!
//! Which refund: the one spending the node tx that actually confirmed — direct-from-CPFP after
//! the CPFP node tx, direct refund after the direct node tx. A node tx the leaf row does not
//! know (a stale node epoch, once renew exists) has no current refund spending it: reported
//! once, nothing to broadcast.
//!
//! When ([`WatchtowerMode`]): the Oct-2025 watchtower compares the refund's relative CSV with the
//! absolute height and so broadcasts every block from `height >= CSV` on, relying on the mempool
//! to refuse the tx as non-BIP68-final until it matures (the chain model does); the corrected
//! one waits until the refund is final in the next block. Both stop once any refund spends the
//! node output. The direct refund prepays 955 sat (§3.2): under a fee spike above its feerate the
//! mempool refuses it too — the §5.2 item 5 limit, modelled, not worked around.
//!
//! Not modelled: a watchtower reacting to a stale tx seen only in the mempool (operators see
//! blocks), or broadcasting the direct *node* tx (the root node tx is shared by all epochs).
use super::store::Db;
use super::Operator;
use crate::chain::BlockInfo;
use crate::node::Ctx;
use crate::observe::Observation;
use crate::params::WatchtowerMode;
use crate::tx::timelock;
use crate::types::LeafId;
use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, Transaction, Txid};
use serde::{Deserialize, Serialize};

/// A leaf whose node tx is on chain (durable: part of the operator's store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRow {
    pub node_txid: Txid,
    pub node_height: u32,
    /// The refund that spent the node output, once one confirmed: watching is over.
    pub settled_by: Option<Txid>,
    /// The first broadcast (or the unknown node tx) was reported.
    pub announced: bool,
}

impl Operator {
    /// Called by the chain watcher for every new block, inside its store transaction.
    pub(super) fn watchtower(&self, ctx: &mut Ctx<'_>, db: &mut Db, block: &BlockInfo) {
        if self.cfg.params.watchtower == WatchtowerMode::Off {
            return;
        }
        // Rows whose node tx a reorg took away are forgotten (the watcher undid `on_chain`).
        db.watchtower.retain(|leaf, _| db.chain_watch.on_chain.contains_key(leaf));
        for tx in &block.txs {
            let txid = tx.compute_txid();
            for input in &tx.input {
                if let Some(leaf) = db.leaf_by_deposit.get(&input.previous_output).copied() {
                    db.watchtower.entry(leaf).or_insert(WatchRow { node_txid: txid, node_height: block.height, settled_by: None, announced: false });
                }
                for row in db.watchtower.values_mut() {
                    if input.previous_output == (OutPoint { txid: row.node_txid, vout: 0 }) {
                        row.settled_by.get_or_insert(txid);
                    }
                }
            }
        }
        let height = db.block_height;
        let mode = self.cfg.params.watchtower;
        let due: Vec<(LeafId, Option<Transaction>)> = db
            .watchtower
            .iter()
            .filter(|(_, w)| w.settled_by.is_none())
            .filter_map(|(leaf, w)| {
                let row = db.leaves.get(leaf)?;
                let refund = if w.node_txid == row.nodes.cpfp.compute_txid() {
                    &row.refunds.direct_from_cpfp
                } else if w.node_txid == row.nodes.direct.compute_txid() {
                    &row.refunds.direct
                } else {
                    return (!w.announced).then_some((*leaf, None));
                };
                let csv = u32::from(timelock::blocks(refund.input.first()?.sequence).0);
                let is_due = match mode {
                    WatchtowerMode::Off => false,
                    // Oct 2025: relative CSV against absolute height (§5.2 item 2).
                    WatchtowerMode::AbsoluteHeight => height >= csv,
                    WatchtowerMode::Relative => height + 1 >= w.node_height + csv,
                };
                is_due.then(|| (*leaf, Some(refund.clone())))
            })
            .collect();
        for (leaf, refund) in due {
            let Some(w) = db.watchtower.get_mut(&leaf) else { continue };
            let first = !std::mem::replace(&mut w.announced, true);
            match refund {
                Some(tx) => {
                    if first {
                        let txid = tx.compute_txid().to_byte_array();
                        ctx.observe(Observation::WatchtowerBroadcast { operator: self.cfg.id, leaf, txid, height });
                    }
                    ctx.broadcast(tx);
                }
                None => ctx.observe(Observation::Rejected {
                    what: format!("{} watchtower leaf {leaf}", self.cfg.id),
                    reason: format!("node tx {} on chain is not the leaf's current node tx: no current refund spends it", w.node_txid),
                }),
            }
        }
    }
}
