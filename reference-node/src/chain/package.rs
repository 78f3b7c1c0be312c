//! Package relay and v3/TRUC topology (BIP431, Bitcoin Core 28+ `submitpackage`), the way Spark's
//! CPFP txs reach L1 (spark-protocol §3.2, §4.6 step 2): a zero-fee v3 parent carrying a 0-sat
//! P2A anchor (`OP_1 PUSH2 0x4e73`) goes in together with a child that spends the anchor (empty
//! witness) and pays for both.
//!
//! Rules modelled:
//! - a package is exactly `[parent, child]`, both version 3, the child spending the parent's
//!   anchor when it has one; the parent is checked without the fee floor, then the package
//!   feerate `(fee_parent + fee_child) / (vsize_parent + vsize_child)` must clear it
//!   ([`ChainReject::FeeTooLow`] names the package totals);
//! - TRUC limits, for packages and single txs alike: a v3 tx is at most 10 000 vB; a v3 tx with
//!   an unconfirmed parent has exactly one, that parent is v3, has no unconfirmed parent itself
//!   and no other unconfirmed child (no sibling eviction), and the child is at most 1 000 vB; a
//!   non-v3 tx never spends an unconfirmed v3 output;
//! - a P2A anchor is spent with an empty scriptSig and an empty witness (Core's standardness; the
//!   consensus library accepts anything for this unknown witness program).
//!
//! Not modelled: ephemeral-dust enforcement for a parent submitted alone. With the floor at 0 (the
//! default chain) a zero-fee parent still enters alone, as before, so every single-tx broadcast
//! that worked keeps working; Core ≥ 28 would insist on the package. Under any floor > 0 the
//! lone parent is refused (`FeeTooLow`) and only the package gets it in. No RBF, no package of
//! more than one parent.
use super::{Chain, ChainReject, MempoolEntry, Utxo};
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, Txid};
use std::collections::BTreeSet;

/// The TRUC version (BIP431).
pub const TRUC_VERSION: i32 = 3;
/// Largest v3 transaction, in vB.
pub const TRUC_MAX_VSIZE: u64 = 10_000;
/// Largest v3 child of an unconfirmed v3 parent, in vB.
pub const TRUC_CHILD_MAX_VSIZE: u64 = 1_000;
/// Pay-to-anchor script (BIP-less standard since Core 28): OP_1 PUSH2 0x4e73.
const P2A_SCRIPT: [u8; 4] = [0x51, 0x02, 0x4e, 0x73];

/// True for a pay-to-anchor output script.
pub fn is_p2a(script: &ScriptBuf) -> bool {
    script.as_bytes() == P2A_SCRIPT
}

/// True when a broadcast's error text (as a node receives it in `Msg::BroadcastResult`) says the
/// fee was too low: the one refusal a higher fee can cure.
pub fn is_fee_refusal(reason: &str) -> bool {
    reason.starts_with("feerate too low")
}

impl Chain {
    /// `submitpackage [parent, child]`: both enter the mempool or neither does.
    pub fn submit_package(&mut self, txs: Vec<Transaction>) -> Result<Vec<Txid>, ChainReject> {
        let result = self.admit_package(txs);
        match &result {
            Ok(ids) => self.stats.txs_accepted += ids.len() as u64,
            Err(_) => self.stats.txs_rejected += 1,
        }
        result
    }

    fn admit_package(&mut self, txs: Vec<Transaction>) -> Result<Vec<Txid>, ChainReject> {
        let [parent, child]: [Transaction; 2] = txs.try_into().map_err(|v: Vec<Transaction>| {
            ChainReject::Package(format!("a package is [parent, child], got {} txs", v.len()))
        })?;
        if parent.version.0 != TRUC_VERSION || child.version.0 != TRUC_VERSION {
            return Err(ChainReject::Truc(format!(
                "package members must be v3, got parent v{} and child v{}",
                parent.version.0, child.version.0
            )));
        }
        let parent_txid = parent.compute_txid();
        if !child.input.iter().any(|i| i.previous_output.txid == parent_txid) {
            return Err(ChainReject::Package(format!(
                "the child does not spend the parent {parent_txid}"
            )));
        }
        if let Some(anchor) = parent.output.iter().position(|o| is_p2a(&o.script_pubkey)) {
            let anchor = OutPoint {
                txid: parent_txid,
                vout: super::vout_u32(anchor),
            };
            if !child.input.iter().any(|i| i.previous_output == anchor) {
                return Err(ChainReject::Package(format!(
                    "the child must spend the parent's anchor {anchor}"
                )));
            }
        }
        let floor = self.min_feerate_sat_vb;
        let (ptxid, pfee) = self.check(&parent, 0)?;
        let pvsize = parent.vsize() as u64;
        self.accept(ptxid, parent, pfee);
        let (ctxid, cfee) = match self.check(&child, 0) {
            Ok(ok) => ok,
            Err(e) => {
                self.unaccept_last();
                return Err(e);
            }
        };
        let fee = pfee + cfee;
        let vsize = pvsize + child.vsize() as u64;
        if fee.to_sat() < floor.saturating_mul(vsize) {
            self.unaccept_last();
            return Err(ChainReject::FeeTooLow {
                fee,
                vsize,
                min_sat_per_vb: floor,
            });
        }
        self.accept(ctxid, child, cfee);
        Ok(vec![ptxid, ctxid])
    }

    /// Take the last accepted tx back out of the mempool (a package whose child failed).
    fn unaccept_last(&mut self) {
        let Some(entry) = self.mempool.pop() else { return };
        for input in &entry.tx.input {
            self.mempool_spends.remove(&input.previous_output);
        }
        for vout in 0..entry.tx.output.len() {
            self.mempool_outputs.remove(&OutPoint {
                txid: entry.txid,
                vout: super::vout_u32(vout),
            });
        }
    }

    fn mempool_entry(&self, txid: &Txid) -> Option<&MempoolEntry> {
        self.mempool.iter().find(|e| e.txid == *txid)
    }

    /// BIP431 topology limits and P2A spending policy, for any tx entering the mempool.
    pub(super) fn check_truc(&self, tx: &Transaction, prevouts: &[Utxo]) -> Result<(), ChainReject> {
        for (index, (input, prevout)) in tx.input.iter().zip(prevouts).enumerate() {
            if is_p2a(&prevout.output.script_pubkey)
                && (!input.witness.is_empty() || !input.script_sig.is_empty())
            {
                return Err(ChainReject::Truc(format!(
                    "input {index} spends a P2A anchor with a non-empty witness or scriptSig"
                )));
            }
        }
        let parents: BTreeSet<Txid> = tx
            .input
            .iter()
            .zip(prevouts)
            .filter(|(_, p)| p.height.is_none())
            .map(|(i, _)| i.previous_output.txid)
            .collect();
        let vsize = tx.vsize() as u64;
        if tx.version.0 != TRUC_VERSION {
            for p in &parents {
                if self.mempool_entry(p).is_some_and(|e| e.tx.version.0 == TRUC_VERSION) {
                    return Err(ChainReject::Truc(format!(
                        "a v{} tx spends the unconfirmed v3 tx {p}",
                        tx.version.0
                    )));
                }
            }
            return Ok(());
        }
        if vsize > TRUC_MAX_VSIZE {
            return Err(ChainReject::Truc(format!(
                "v3 tx of {vsize} vB exceeds {TRUC_MAX_VSIZE} vB"
            )));
        }
        let Some(parent) = parents.iter().next() else {
            return Ok(());
        };
        if parents.len() > 1 {
            return Err(ChainReject::Truc(format!(
                "v3 tx has {} unconfirmed parents, at most 1",
                parents.len()
            )));
        }
        let Some(entry) = self.mempool_entry(parent) else {
            return Ok(());
        };
        if entry.tx.version.0 != TRUC_VERSION {
            return Err(ChainReject::Truc(format!(
                "v3 tx spends the unconfirmed v{} tx {parent}",
                entry.tx.version.0
            )));
        }
        if entry
            .tx
            .input
            .iter()
            .any(|i| self.mempool_outputs.contains_key(&i.previous_output))
        {
            return Err(ChainReject::Truc(format!(
                "its unconfirmed parent {parent} has an unconfirmed parent: a v3 cluster is at most 2 txs"
            )));
        }
        let first = OutPoint { txid: *parent, vout: 0 };
        let last = OutPoint { txid: *parent, vout: u32::MAX };
        let siblings = self.mempool_spends.range(first..=last).next().is_some();
        if siblings {
            return Err(ChainReject::Truc(format!(
                "its unconfirmed parent {parent} already has an unconfirmed child"
            )));
        }
        if vsize > TRUC_CHILD_MAX_VSIZE {
            return Err(ChainReject::Truc(format!(
                "v3 child of {vsize} vB exceeds {TRUC_CHILD_MAX_VSIZE} vB"
            )));
        }
        Ok(())
    }
}

/// The fee a child must pay for `[parent, child]` to reach `sat_per_vb`, given the parent's own fee.
pub fn package_fee_needed(parent_vsize: u64, parent_fee: Amount, child_vsize: u64, sat_per_vb: u64) -> Amount {
    let total = sat_per_vb.saturating_mul(parent_vsize + child_vsize);
    Amount::from_sat(total.saturating_sub(parent_fee.to_sat()))
}
