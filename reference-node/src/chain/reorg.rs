//! Reorgs: disconnect the last `depth` blocks, put their transactions back through mempool
//! admission (or drop them), and connect a longer replacement branch of empty blocks.
//!
//! Re-admission runs every rule again against the new tip, as Bitcoin Core does on a reorg
//! (`MaybeUpdateMempoolForReorg`): a child whose BIP68 relative lock counted confirmations of a
//! now disconnected parent becomes non-final and leaves the mempool. Re-admitted transactions
//! bypass the fee floor (Core re-adds disconnected txs with `bypass_limits`).
use super::{BlockInfo, Chain, MempoolEntry};
use crate::types::Micros;
use bitcoin::{BlockHash, OutPoint, Txid};

/// Deepest reorg the chain keeps undo data for.
pub const MAX_REORG_DEPTH: u32 = 100;

/// What happens to the transactions of the disconnected blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReorgTxs {
    /// Back into the mempool (if still valid): they confirm again at the next block.
    Return,
    /// Gone, as if the new branch held conflicting spends: their senders must broadcast again.
    Drop,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReorgError {
    #[error("reorg depth must be at least 1")]
    ZeroDepth,
    #[error("reorg depth {depth} exceeds the chain height {height} (genesis never reorgs)")]
    DeeperThanChain { depth: u32, height: u32 },
    #[error("reorg depth {depth} exceeds the {MAX_REORG_DEPTH} blocks of undo data kept")]
    DeeperThanUndo { depth: u32 },
}

#[derive(Clone, Debug)]
pub struct ReorgOutcome {
    /// The height of the last block both branches share.
    pub fork_height: u32,
    /// Hashes of the disconnected blocks, lowest first.
    pub disconnected: Vec<BlockHash>,
    /// Confirmed txs of the disconnected blocks, in chain order.
    pub reorged_out: Vec<Txid>,
    /// Txs back in the mempool (disconnected ones first, then the old mempool).
    pub readmitted: Vec<Txid>,
    /// Txs the fault dropped or that the new branch no longer admits.
    pub dropped: Vec<Txid>,
    /// The replacement branch, lowest first: `depth + 1` empty blocks, so it is the longer one.
    pub blocks: Vec<BlockInfo>,
}

impl Chain {
    /// Replace the last `depth` blocks by `depth + 1` empty ones, all stamped `time`.
    pub fn reorg(
        &mut self,
        depth: u32,
        txs: ReorgTxs,
        time: Micros,
    ) -> Result<ReorgOutcome, ReorgError> {
        if depth == 0 {
            return Err(ReorgError::ZeroDepth);
        }
        if depth > self.height {
            return Err(ReorgError::DeeperThanChain {
                depth,
                height: self.height,
            });
        }
        if depth as usize > self.undo.len() {
            return Err(ReorgError::DeeperThanUndo { depth });
        }
        let old_mempool = std::mem::take(&mut self.mempool);
        self.mempool_outputs.clear();
        self.mempool_spends.clear();
        let mut disconnected = Vec::with_capacity(depth as usize);
        let mut blocks_entries: Vec<Vec<MempoolEntry>> = Vec::with_capacity(depth as usize);
        for _ in 0..depth {
            disconnected.push(self.tip_hash());
            blocks_entries.push(self.disconnect_tip());
        }
        disconnected.reverse();
        blocks_entries.reverse();
        let disconnected_entries: Vec<MempoolEntry> =
            blocks_entries.into_iter().flatten().collect();
        let reorged_out: Vec<Txid> = disconnected_entries.iter().map(|e| e.txid).collect();
        self.stats.reorgs += 1;
        self.stats.txs_reorged_out += reorged_out.len() as u64;
        let mut dropped = Vec::new();
        let candidates = match txs {
            ReorgTxs::Return => disconnected_entries
                .into_iter()
                .chain(old_mempool)
                .collect::<Vec<_>>(),
            ReorgTxs::Drop => {
                dropped.extend(reorged_out.iter().copied());
                old_mempool
            }
        };
        let mut readmitted = Vec::new();
        for entry in candidates {
            match self.check(&entry.tx, 0) {
                Ok((txid, fee)) => {
                    self.accept(txid, entry.tx, fee);
                    readmitted.push(txid);
                }
                Err(_) => dropped.push(entry.txid),
            }
        }
        self.stats.txs_dropped_on_reorg += dropped.len() as u64;
        let fork_height = self.height;
        // The competing branch held none of them: they confirm again (if at all) at the next
        // regular block, so a watcher sees each one disappear before it comes back.
        let kept = std::mem::take(&mut self.mempool);
        let mut blocks = Vec::with_capacity(depth as usize + 1);
        for _ in 0..=depth {
            blocks.push(self.connect_block(time, Vec::new(), self.stats.reorgs));
        }
        for entry in kept {
            let txid = entry.txid;
            let tx = entry.tx;
            // Still valid: the empty blocks only added confirmations to their prevouts.
            self.accept(txid, tx, entry.fee);
        }
        Ok(ReorgOutcome {
            fork_height,
            disconnected,
            reorged_out,
            readmitted,
            dropped,
            blocks,
        })
    }

    /// Undo the tip block; returns its entries in block order.
    fn disconnect_tip(&mut self) -> Vec<MempoolEntry> {
        let Some(undo) = self.undo.pop_back() else {
            return Vec::new();
        };
        let mut entries = Vec::with_capacity(undo.entries.len());
        // Children after parents in a block: undo from the last tx back.
        for (entry, spent) in undo.entries.into_iter().rev() {
            for vout in 0..entry.tx.output.len() {
                let outpoint = OutPoint {
                    txid: entry.txid,
                    vout: super::vout_u32(vout),
                };
                let removed = self.utxos.remove(&outpoint);
                debug_assert!(
                    removed.is_some(),
                    "output {outpoint} of a tip block is spent"
                );
            }
            for (outpoint, utxo) in spent {
                self.utxos.insert(outpoint, utxo);
            }
            self.confirmed.remove(&entry.txid);
            self.confirmed_fees_total -= entry.fee;
            entries.push(entry);
        }
        entries.reverse();
        self.hashes.pop();
        self.height -= 1;
        debug_assert_eq!(
            self.funded_total,
            self.confirmed_utxo_total() + self.confirmed_fees_total
        );
        entries
    }
}
