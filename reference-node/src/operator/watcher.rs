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
                // Split (operator/split.rs): a child's node tx spends its split node output.
                let leaf = db.leaf_by_deposit.get(&input.previous_output).or_else(|| db.leaf_by_split_output.get(&input.previous_output));
                if let Some(leaf) = leaf.copied() {
                    if let Some(row) = db.leaves.get_mut(&leaf) {
                        // A SPLITTED parent (or an AGGREGATED child) holds no value of its own
                        // (spark-protocol §6.1): its node tx confirming is a layer of the exit
                        // chain of the leaves that replaced it (§4.6), so it keeps its status and
                        // stays out of conservation and the live-leaf checks.
                        if !row.status.is_value_bearing() {
                            continue;
                        }
                        if row.status != LeafStatus::OnChain {
                            db.chain_watch.on_chain.insert(leaf, (block.height, row.status));
                        }
                        row.status = LeafStatus::OnChain;
                    }
                }
            }
        }
        // Watchtower and fees flow: broadcast current owners' direct refunds (watchtower.rs).
        self.watchtower(ctx, &mut db, block);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::BlockInfo;
    use crate::crypto::{secp, SecretKey};
    use crate::msg::{NodeSet, RefundSet};
    use crate::node::{Input, Node};
    use crate::operator::store::{DepositAddressRow, LeafRow};
    use crate::operator::OperatorConfig;
    use crate::params::{Directory, Params};
    use crate::tx::template::p2tr_script;
    use crate::types::{Micros, OperatorId};
    use bitcoin::hashes::Hash as _;
    use bitcoin::{Amount, Transaction, TxIn, TxOut};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::sync::Arc;

    fn tx(inputs: Vec<OutPoint>, outputs: Vec<TxOut>) -> Transaction {
        Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: inputs.into_iter().map(|previous_output| TxIn { previous_output, ..TxIn::default() }).collect(),
            output: outputs,
        }
    }

    fn hash(n: u8) -> BlockHash {
        BlockHash::from_byte_array([n; 32])
    }

    fn block(height: u32, hash: BlockHash, parent: BlockHash, txs: Vec<Transaction>) -> Input {
        Input::Block(Arc::new(BlockInfo { height, hash, parent, time: Micros::ZERO, txs }))
    }

    /// An operator holding one CREATING leaf whose deposit is output 0 of the returned tx.
    fn operator_with_leaf(deposit_confirmations: u32) -> (Operator, Transaction, LeafId) {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut params = Params::new(1, 1);
        params.deposit_confirmations = deposit_confirmations;
        let cfg = OperatorConfig { id: OperatorId(0), identity: SecretKey::new(&mut rng), params: Arc::new(params), directory: Arc::new(Directory::default()) };
        let mut op = Operator::new(cfg);
        let key = SecretKey::new(&mut rng).public_key(secp());
        let script = p2tr_script(&key);
        let deposit = tx(vec![OutPoint::null()], vec![TxOut { value: Amount::from_sat(50_000), script_pubkey: script.clone() }]);
        let outpoint = OutPoint { txid: deposit.compute_txid(), vout: 0 };
        let (keyshare, leaf) = (KeyshareId([1; 16]), LeafId([2; 16]));
        let dummy = tx(vec![outpoint], vec![]);
        let mut db = op.store.begin();
        db.deposit_addresses.insert(keyshare, DepositAddressRow { owner_identity: key, owner_signing_key: key, verifying_key: key, script: script.clone(), confirmed: None });
        db.address_by_script.insert(script, keyshare);
        db.leaf_by_deposit.insert(outpoint, leaf);
        db.leaves.insert(
            leaf,
            LeafRow {
                status: LeafStatus::Creating,
                keyshare,
                value_sats: 50_000,
                verifying_key: key,
                owner_identity: key,
                owner_signing_key: key,
                deposit_outpoint: outpoint,
                nodes: NodeSet { cpfp: dummy.clone(), direct: dummy.clone() },
                refunds: RefundSet { cpfp: dummy.clone(), direct: dummy.clone(), direct_from_cpfp: dummy },
                ancestors: Vec::new(),
            },
        );
        op.store.commit(db);
        (op, deposit, leaf)
    }

    fn feed(op: &mut Operator, input: Input) -> Vec<Observation> {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut ctx = Ctx::new(Micros::ZERO, NodeId::Operator(OperatorId(0)), &mut rng);
        op.handle(&mut ctx, input);
        ctx.into_outputs()
            .into_iter()
            .filter_map(|o| match o {
                crate::node::Output::Observe(obs) => Some(obs),
                _ => None,
            })
            .collect()
    }

    fn status(op: &Operator, leaf: LeafId) -> LeafStatus {
        op.db().leaves[&leaf].status
    }

    #[test]
    fn reorged_out_deposit_makes_the_leaf_creating_again_until_it_returns() {
        let (mut op, deposit, leaf) = operator_with_leaf(1);
        let genesis = BlockHash::all_zeros();
        feed(&mut op, block(1, hash(1), genesis, vec![deposit.clone()]));
        assert_eq!(status(&op, leaf), LeafStatus::Available);
        feed(&mut op, block(2, hash(2), hash(1), vec![]));
        // The same block again (a replay after a restart) changes nothing.
        let commits = op.store_commits();
        feed(&mut op, block(2, hash(2), hash(1), vec![]));
        assert_eq!(op.store_commits(), commits);
        // Another branch from genesis: block 1' without the deposit.
        let obs = feed(&mut op, block(1, hash(11), genesis, vec![]));
        assert_eq!(status(&op, leaf), LeafStatus::Creating);
        assert_eq!(obs, vec![Observation::DepositReorged { node: NodeId::Operator(OperatorId(0)), leaf, leaf_status: "Available".into() }]);
        assert!(op.db().deposit_addresses.values().all(|a| a.confirmed.is_none()));
        assert_eq!((op.db().block_height, op.db().chain_watch.hashes.get(&1)), (1, Some(&hash(11))));
        // The deposit comes back in block 2' of the new branch.
        feed(&mut op, block(2, hash(12), hash(11), vec![deposit]));
        assert_eq!(status(&op, leaf), LeafStatus::Available);
        assert_eq!(op.db().chain_watch.deposits.values().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn reorged_out_exit_gives_the_leaf_its_status_back() {
        let (mut op, deposit, leaf) = operator_with_leaf(1);
        let outpoint = OutPoint { txid: deposit.compute_txid(), vout: 0 };
        feed(&mut op, block(1, hash(1), BlockHash::all_zeros(), vec![deposit]));
        let node_tx = tx(vec![outpoint], vec![]);
        feed(&mut op, block(2, hash(2), hash(1), vec![node_tx]));
        assert_eq!(status(&op, leaf), LeafStatus::OnChain);
        feed(&mut op, block(2, hash(22), hash(1), vec![]));
        assert_eq!(status(&op, leaf), LeafStatus::Available);
        assert!(op.db().chain_watch.on_chain.is_empty());
    }

    #[test]
    fn a_split_or_aggregated_leaf_keeps_its_status_when_its_node_tx_confirms() {
        for kept in [LeafStatus::Splitted, LeafStatus::Aggregated] {
            let (mut op, deposit, leaf) = operator_with_leaf(1);
            let outpoint = OutPoint { txid: deposit.compute_txid(), vout: 0 };
            feed(&mut op, block(1, hash(1), BlockHash::all_zeros(), vec![deposit]));
            let mut db = op.store.begin();
            db.leaves.get_mut(&leaf).expect("leaf").status = kept;
            op.store.commit(db);
            feed(&mut op, block(2, hash(2), hash(1), vec![tx(vec![outpoint], vec![])]));
            assert_eq!(status(&op, leaf), kept, "a child's exit through the parent's node tx");
            assert!(op.db().chain_watch.on_chain.is_empty(), "nothing to undo in a reorg");
        }
    }

    #[test]
    fn a_leaf_waits_for_deposit_confirmations() {
        let (mut op, deposit, leaf) = operator_with_leaf(3);
        feed(&mut op, block(1, hash(1), BlockHash::all_zeros(), vec![deposit]));
        feed(&mut op, block(2, hash(2), hash(1), vec![]));
        assert_eq!(status(&op, leaf), LeafStatus::Creating);
        feed(&mut op, block(3, hash(3), hash(2), vec![]));
        assert_eq!(status(&op, leaf), LeafStatus::Available);
    }
}
