//! The wallet's chain view: recent block hashes and a journal of what it learned from each
//! block, so a reorg can be undone. A block whose parent is not the wallet's tip comes from
//! another branch: every journal entry at or above its height is reverted (newest first) — a
//! deposit goes back to pending and is broadcast again, an exit step is redone (`exit.rs`) — and
//! then the block is applied like any other.
use super::{LeafState, Wallet};
use crate::chain::{BlockInfo, MAX_REORG_DEPTH};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::types::{LeafId, NodeId};
use bitcoin::{BlockHash, Transaction, Txid};
use std::collections::BTreeMap;

/// Something the wallet learned from a block, with what it takes to undo it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Learned {
    /// The leaf's deposit tx confirmed (the wallet reported DepositConfirmed).
    Deposit { leaf: LeafId, txid: Txid, value_sats: u64 },
    /// An exiting leaf's node tx of exit-chain layer `layer` (0 = root) confirmed.
    ExitNode { leaf: LeafId, layer: usize },
    /// An exiting leaf's refund confirmed (the wallet reported ExitConfirmed); its node layers
    /// had confirmed at `layer_heights` (root first).
    ExitRefund { leaf: LeafId, layer_heights: Vec<Option<u32>> },
}

#[derive(Clone, Debug, Default)]
pub(super) struct ChainView {
    hashes: BTreeMap<u32, BlockHash>,
    /// (height, what), in the order learned.
    journal: Vec<(u32, Learned)>,
    /// Every deposit tx this wallet broadcast, to broadcast again if a reorg drops it.
    deposit_txs: BTreeMap<Txid, Transaction>,
    /// Reorged-out deposits of leaves that already left PendingDeposit (sent, exiting): their
    /// DepositConfirmed is reported again when the tx is back in a block.
    reconfirm: BTreeMap<Txid, (LeafId, u64)>,
    /// Deposit txs the mempool refused (a fee spike): broadcast again at the next block.
    refused_deposits: std::collections::BTreeSet<Txid>,
}

impl ChainView {
    pub(super) fn record(&mut self, height: u32, learned: Learned) {
        self.journal.push((height, learned));
    }

    pub(super) fn remember_deposit(&mut self, tx: &Transaction) {
        self.deposit_txs.insert(tx.compute_txid(), tx.clone());
    }
}

impl Wallet {
    /// Whether `block` is new to the wallet; a block from another branch first reverts what the
    /// wallet learned from the blocks it replaces.
    pub(super) fn follow_chain(&mut self, ctx: &mut Ctx<'_>, block: &BlockInfo) -> bool {
        let known = self.chain.hashes.get(&block.height);
        if known == Some(&block.hash) || (known.is_none() && block.height <= self.height) {
            return false; // already seen (the driver replays missed blocks after a restart)
        }
        let extends_tip = block.height == self.height + 1
            && self.chain.hashes.get(&self.height).is_none_or(|h| *h == block.parent);
        if !extends_tip {
            self.revert_from(ctx, block.height);
        }
        self.chain.hashes.insert(block.height, block.hash);
        if let Some(old) = block.height.checked_sub(MAX_REORG_DEPTH + 1) {
            self.chain.hashes = self.chain.hashes.split_off(&(old + 1));
            self.chain.journal.retain(|(h, _)| *h > old);
        }
        true
    }

    /// The mempool refused a tx: a deposit of ours is broadcast again at the next block (an
    /// exit's txs are handled in `exit.rs`).
    pub(super) fn deposit_broadcast_refused(&mut self, txid: &[u8; 32]) {
        use bitcoin::hashes::Hash as _;
        let txid = Txid::from_byte_array(*txid);
        let pending = self.leaves.values().any(|l| l.state == LeafState::PendingDeposit { deposit_txid: txid });
        if pending && self.chain.deposit_txs.contains_key(&txid) {
            self.chain.refused_deposits.insert(txid);
        }
    }

    /// Report again the deposits a reorg took away from leaves no longer pending, and broadcast
    /// again the deposits the mempool refused.
    pub(super) fn reconfirm_deposits(&mut self, ctx: &mut Ctx<'_>, height: u32, txids: &std::collections::BTreeSet<Txid>) {
        for txid in std::mem::take(&mut self.chain.refused_deposits) {
            let pending = self.leaves.values().any(|l| l.state == LeafState::PendingDeposit { deposit_txid: txid });
            if let (true, Some(tx)) = (pending, self.chain.deposit_txs.get(&txid)) {
                ctx.broadcast(tx.clone());
            }
        }
        let back: Vec<Txid> = self.chain.reconfirm.keys().filter(|t| txids.contains(*t)).copied().collect();
        for txid in back {
            let Some((leaf, value_sats)) = self.chain.reconfirm.remove(&txid) else { continue };
            ctx.observe(Observation::DepositConfirmed { wallet: self.cfg.id, leaf, value_sats });
            self.chain.record(height, Learned::Deposit { leaf, txid, value_sats });
        }
    }

    fn revert_from(&mut self, ctx: &mut Ctx<'_>, height: u32) {
        let split = self.chain.journal.iter().position(|(h, _)| *h >= height).unwrap_or(self.chain.journal.len());
        let undone = self.chain.journal.split_off(split);
        for (_, learned) in undone.into_iter().rev() {
            match learned {
                Learned::Deposit { leaf, txid, value_sats } => self.revert_deposit(ctx, leaf, txid, value_sats),
                Learned::ExitNode { leaf, layer } => self.revert_exit_node(ctx, leaf, layer),
                Learned::ExitRefund { leaf, layer_heights } => self.revert_exit_refund(ctx, leaf, &layer_heights, height),
            }
        }
        self.chain.hashes.retain(|h, _| *h < height);
        self.height = height.saturating_sub(1);
    }

    fn revert_deposit(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId, txid: Txid, value_sats: u64) {
        let me = self.cfg.id;
        let status = match self.leaves.get_mut(&leaf) {
            Some(l) if l.state == LeafState::Available => {
                l.state = LeafState::PendingDeposit { deposit_txid: txid };
                "Available".to_string()
            }
            Some(l) => {
                self.chain.reconfirm.insert(txid, (leaf, value_sats));
                format!("{:?}", l.state)
            }
            None => {
                self.chain.reconfirm.insert(txid, (leaf, value_sats));
                "sent".to_string()
            }
        };
        ctx.observe(Observation::DepositReorged { node: NodeId::Wallet(me), leaf, leaf_status: status });
        // The deposit may have been dropped from the mempool: broadcast it again (a duplicate is
        // refused harmlessly).
        if let Some(tx) = self.chain.deposit_txs.get(&txid) {
            ctx.broadcast(tx.clone());
        }
    }
}
