//! The chain watcher (spark-protocol §4.1 step 8, §4.6): deposits confirming make leaves
//! AVAILABLE; a leaf's deposit outpoint being spent means its node tx went on chain (exit).
use super::store::LeafStatus;
use super::Operator;
use crate::chain::BlockInfo;
use crate::node::Ctx;
use bitcoin::OutPoint;

impl Operator {
    pub(super) fn on_block(&mut self, _ctx: &mut Ctx<'_>, block: &BlockInfo) {
        if block.height <= self.store.read().block_height {
            return; // already seen (the driver replays missed blocks after a restart)
        }
        let mut db = self.store.begin();
        db.block_height = block.height;
        for tx in &block.txs {
            let txid = tx.compute_txid();
            for (vout, out) in tx.output.iter().enumerate() {
                let Some(ks) = db.address_by_script.get(&out.script_pubkey).copied() else { continue };
                let outpoint = OutPoint { txid, vout: vout as u32 };
                if let Some(addr) = db.deposit_addresses.get_mut(&ks) {
                    addr.confirmed.get_or_insert((outpoint, block.height));
                }
                if let Some(leaf) = db.leaf_by_deposit.get(&outpoint).copied() {
                    if let Some(row) = db.leaves.get_mut(&leaf) {
                        if row.status == LeafStatus::Creating {
                            row.status = LeafStatus::Available;
                        }
                    }
                }
            }
            for input in &tx.input {
                if let Some(leaf) = db.leaf_by_deposit.get(&input.previous_output).copied() {
                    if let Some(row) = db.leaves.get_mut(&leaf) {
                        row.status = LeafStatus::OnChain;
                    }
                }
            }
        }
        self.store.commit(db);
    }
}
