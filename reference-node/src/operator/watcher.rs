//! The chain watcher (spark-protocol §4.1 step 8, §4.6): deposits confirming make leaves
//! AVAILABLE; a leaf's deposit outpoint being spent means its node tx went on chain (exit).
//!
//! Reorgs: the watcher keeps the hashes of recent blocks. A block whose parent is not its tip
//! (or whose height is not above it) comes from another branch: everything the watcher learned
//! at heights from that block's height up is undone first — a deposit no longer confirmed puts
//! its AVAILABLE leaf back to CREATING, an exit no longer on chain gives the leaf its status
//! back — and then the block is applied like any other.
use super::store::{Db, LeafStatus};
use super::Operator;
use crate::chain::{BlockInfo, MAX_REORG_DEPTH};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::types::{KeyshareId, LeafId, NodeId};
use bitcoin::{BlockHash, OutPoint};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Block hashes kept: one more than the deepest reorg the chain can make, so the fork point
/// is always known.
const WATCH_DEPTH: u32 = MAX_REORG_DEPTH + 1;

/// What the watcher must remember to undo a block (durable: part of the operator's store).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainWatch {
    /// Hash of each recent block on the branch the watcher follows.
    pub hashes: BTreeMap<u32, BlockHash>,
    /// Leaf deposit outpoints seen confirmed, with their height.
    pub deposits: BTreeMap<OutPoint, u32>,
    /// Leaves whose node tx went on chain: the height and the status they had before.
    pub on_chain: BTreeMap<LeafId, (u32, LeafStatus)>,
}

impl Operator {
    pub(super) fn on_block(&mut self, ctx: &mut Ctx<'_>, block: &BlockInfo) {
        let db_now = self.store.read();
        let known = db_now.chain_watch.hashes.get(&block.height);
        if known == Some(&block.hash) || (known.is_none() && block.height <= db_now.block_height) {
            return; // already seen (the driver replays missed blocks after a restart)
        }
        let mut db = self.store.begin();
        let tip_hash = db.chain_watch.hashes.get(&db.block_height).copied();
        let extends_tip = block.height == db.block_height + 1 && tip_hash.is_none_or(|h| h == block.parent);
        if !extends_tip {
            self.disconnect_from(ctx, &mut db, block.height);
        }
        db.block_height = block.height;
        db.chain_watch.hashes.insert(block.height, block.hash);
        if let Some(old) = block.height.checked_sub(WATCH_DEPTH) {
            db.chain_watch.hashes = db.chain_watch.hashes.split_off(&(old + 1));
        }
        for tx in &block.txs {
            let txid = tx.compute_txid();
            for (vout, out) in tx.output.iter().enumerate() {
                let Some(ks) = db.address_by_script.get(&out.script_pubkey).copied() else { continue };
                let outpoint = OutPoint { txid, vout: vout as u32 };
                if let Some(addr) = db.deposit_addresses.get_mut(&ks) {
                    addr.confirmed.get_or_insert((outpoint, block.height));
                }
                // Kept even before the leaf exists here (its finalize gossip may come later).
                db.chain_watch.deposits.insert(outpoint, block.height);
            }
            for input in &tx.input {
                if let Some(leaf) = db.leaf_by_deposit.get(&input.previous_output).copied() {
                    if let Some(row) = db.leaves.get_mut(&leaf) {
                        if row.status != LeafStatus::OnChain {
                            db.chain_watch.on_chain.insert(leaf, (block.height, row.status));
                        }
                        row.status = LeafStatus::OnChain;
                    }
                }
            }
        }
        self.make_mature_leaves_available(&mut db);
        self.store.commit(db);
    }

    /// A deposit is deep enough once it has `deposit_confirmations` blocks (its own included).
    pub(super) fn deposit_mature(&self, db: &Db, keyshare: KeyshareId, outpoint: OutPoint) -> bool {
        let confirmed = db.deposit_addresses.get(&keyshare).and_then(|a| a.confirmed);
        match confirmed {
            Some((op, height)) if op == outpoint => {
                db.block_height + 1 >= height + self.cfg.params.deposit_confirmations.max(1)
            }
            _ => false,
        }
    }

    fn make_mature_leaves_available(&self, db: &mut Db) {
        let need = self.cfg.params.deposit_confirmations.max(1);
        let mature: Vec<OutPoint> = db
            .chain_watch
            .deposits
            .iter()
            .filter(|(_, h)| db.block_height + 1 >= **h + need)
            .map(|(op, _)| *op)
            .collect();
        for outpoint in mature {
            let Some(leaf) = db.leaf_by_deposit.get(&outpoint).copied() else { continue };
            if let Some(row) = db.leaves.get_mut(&leaf) {
                if row.status == LeafStatus::Creating {
                    row.status = LeafStatus::Available;
                }
            }
        }
    }

    /// Undo everything learned from blocks at `height` and above (they left the chain).
    fn disconnect_from(&self, ctx: &mut Ctx<'_>, db: &mut Db, height: u32) {
        let me = NodeId::Operator(self.cfg.id);
        let gone: Vec<OutPoint> =
            db.chain_watch.deposits.iter().filter(|(_, h)| **h >= height).map(|(op, _)| *op).collect();
        for outpoint in gone {
            db.chain_watch.deposits.remove(&outpoint);
            let Some(leaf) = db.leaf_by_deposit.get(&outpoint).copied() else { continue };
            if let Some(row) = db.leaves.get_mut(&leaf) {
                ctx.observe(Observation::DepositReorged { node: me, leaf, leaf_status: format!("{:?}", row.status) });
                // spark-protocol §4.1 step 8: only a confirmed deposit makes a leaf AVAILABLE.
                if row.status == LeafStatus::Available {
                    row.status = LeafStatus::Creating;
                }
            }
        }
        for addr in db.deposit_addresses.values_mut() {
            if addr.confirmed.is_some_and(|(_, h)| h >= height) {
                addr.confirmed = None;
            }
        }
        let exits: Vec<(LeafId, LeafStatus)> = db
            .chain_watch
            .on_chain
            .iter()
            .filter(|(_, (h, _))| *h >= height)
            .map(|(leaf, (_, before))| (*leaf, *before))
            .collect();
        for (leaf, before) in exits {
            db.chain_watch.on_chain.remove(&leaf);
            if let Some(row) = db.leaves.get_mut(&leaf) {
                if row.status == LeafStatus::OnChain {
                    row.status = before;
                }
            }
        }
        db.chain_watch.hashes.retain(|h, _| *h < height);
        db.block_height = height.saturating_sub(1);
    }
}
