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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{secp, SecretKey};
    use crate::msg::{NodeSet, RefundSet};
    use crate::node::{Input, Node, Output};
    use crate::operator::store::{LeafRow, LeafStatus};
    use crate::operator::OperatorConfig;
    use crate::params::{Directory, Params};
    use crate::tx::template::{node_txs, p2tr_script, refund_txs};
    use crate::types::{KeyshareId, Micros, NodeId, OperatorId};
    use bitcoin::{Amount, BlockHash, Sequence, TxIn, TxOut};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::sync::Arc;

    /// An operator holding one AVAILABLE leaf (refund CSV 100, direct 150), the deposit tx, and
    /// the leaf's node and refund txs.
    fn setup(mode: WatchtowerMode) -> (Operator, Transaction, LeafRow) {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut params = Params::new(1, 1);
        params.watchtower = mode;
        let cfg = OperatorConfig { id: OperatorId(0), identity: SecretKey::new(&mut rng), params: Arc::new(params), directory: Arc::new(Directory::default()) };
        let mut op = Operator::new(cfg);
        let key = SecretKey::new(&mut rng).public_key(secp());
        let out = TxOut { value: Amount::from_sat(50_000), script_pubkey: p2tr_script(&key) };
        let deposit = Transaction { version: bitcoin::transaction::Version::TWO, lock_time: bitcoin::absolute::LockTime::ZERO, input: vec![TxIn::default()], output: vec![out.clone()] };
        let outpoint = OutPoint { txid: deposit.compute_txid(), vout: 0 };
        let nodes = node_txs(outpoint, &out, Sequence(0), Sequence(50));
        let r = refund_txs(&nodes.cpfp, Some(&nodes.direct), 0, &key, Sequence(100), Sequence(150));
        let row = LeafRow {
            status: LeafStatus::Available,
            keyshare: KeyshareId([1; 16]),
            value_sats: 50_000,
            verifying_key: key,
            owner_identity: key,
            owner_signing_key: key,
            deposit_outpoint: outpoint,
            ancestors: Vec::new(),
            nodes: NodeSet { cpfp: nodes.cpfp, direct: nodes.direct },
            refunds: RefundSet { cpfp: r.cpfp, direct: r.direct.expect("direct"), direct_from_cpfp: r.direct_from_cpfp },
        };
        let leaf = LeafId([2; 16]);
        let mut db = op.store.begin();
        db.leaf_by_deposit.insert(outpoint, leaf);
        db.leaves.insert(leaf, row.clone());
        op.store.commit(db);
        (op, deposit, row)
    }

    fn hash(n: u32) -> BlockHash {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_le_bytes());
        BlockHash::from_byte_array(b)
    }

    /// Feed block `height` holding `txs`; returns the txids broadcast and the observations.
    fn block(op: &mut Operator, height: u32, txs: Vec<Transaction>) -> (Vec<Txid>, Vec<Observation>) {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut ctx = Ctx::new(Micros::ZERO, NodeId::Operator(OperatorId(0)), &mut rng);
        let parent = if height == 1 { BlockHash::all_zeros() } else { hash(height - 1) };
        op.handle(&mut ctx, Input::Block(Arc::new(BlockInfo { height, hash: hash(height), parent, time: Micros::ZERO, txs })));
        let (mut sent, mut obs) = (Vec::new(), Vec::new());
        for o in ctx.into_outputs() {
            match o {
                Output::Broadcast(tx) => sent.push(tx.compute_txid()),
                Output::Observe(x) => obs.push(x),
                _ => {}
            }
        }
        (sent, obs)
    }

    /// The first height at which the watchtower broadcast, the node tx confirming at height 2.
    fn first_broadcast(mode: WatchtowerMode) -> Option<(u32, Txid)> {
        let (mut op, deposit, row) = setup(mode);
        block(&mut op, 1, vec![deposit]);
        block(&mut op, 2, vec![row.nodes.cpfp.clone()]);
        (3..=200).find_map(|h| block(&mut op, h, vec![]).0.first().map(|t| (h, *t)))
    }

    #[test]
    fn oct_2025_mode_broadcasts_from_absolute_height_csv_the_corrected_one_at_maturity() {
        let (_, _, row) = setup(WatchtowerMode::Off);
        let want = row.refunds.direct_from_cpfp.compute_txid();
        // Direct-from-CPFP CSV 150: height >= 150 (not final until 2 + 150 = 152).
        assert_eq!(first_broadcast(WatchtowerMode::AbsoluteHeight), Some((150, want)));
        // Final in the next block: height + 1 >= 2 + 150.
        assert_eq!(first_broadcast(WatchtowerMode::Relative), Some((151, want)));
        assert_eq!(first_broadcast(WatchtowerMode::Off), None);
    }

    #[test]
    fn broadcasts_every_block_until_a_refund_spends_the_node_output_and_reports_once() {
        let (mut op, deposit, row) = setup(WatchtowerMode::Relative);
        block(&mut op, 1, vec![deposit]);
        block(&mut op, 2, vec![row.nodes.cpfp.clone()]);
        for h in 3..151 {
            block(&mut op, h, vec![]);
        }
        let (sent, obs) = block(&mut op, 151, vec![]);
        assert_eq!(sent.len(), 1);
        assert!(matches!(obs[..], [Observation::WatchtowerBroadcast { height: 151, .. }]), "{obs:?}");
        let (sent, obs) = block(&mut op, 152, vec![]);
        assert_eq!((sent.len(), obs.len()), (1, 0), "again, reported once");
        // The owner's own CPFP refund confirms: watching is over.
        block(&mut op, 153, vec![row.refunds.cpfp.clone()]);
        assert!(block(&mut op, 154, vec![]).0.is_empty());
    }

    #[test]
    fn after_the_direct_node_tx_it_broadcasts_the_direct_refund() {
        let (mut op, deposit, row) = setup(WatchtowerMode::AbsoluteHeight);
        block(&mut op, 1, vec![deposit]);
        block(&mut op, 2, vec![row.nodes.direct.clone()]);
        let sent = (3..=200).find_map(|h| block(&mut op, h, vec![]).0.first().copied());
        assert_eq!(sent, Some(row.refunds.direct.compute_txid()));
    }
}
