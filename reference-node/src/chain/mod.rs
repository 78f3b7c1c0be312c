//! The L1 model: UTXO set, mempool, blocks. Enforces BIP68 relative timelocks and verifies every
//! input of every accepted transaction with libbitcoinconsensus 0.106 (taproot-aware).
//!
//! Fees: the mempool has a minimum feerate (0 by default, so a zero-fee v3 CPFP parent of
//! spark-protocol §3.2 enters on its own); a fee spike raises it and admission rejects anything
//! below it with [`ChainReject::FeeTooLow`]. The floor applies at admission only: what is already
//! in the mempool is mined. Package relay (CPFP through the P2A anchor, `submit_package`) and the
//! v3/TRUC topology rules live in `package.rs`.
//!
//! Blocks are hash-linked and the last [`MAX_REORG_DEPTH`] keep undo data, so a reorg can
//! disconnect them (see `reorg.rs`).
use crate::types::Micros;
use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash as _;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, BlockHash, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
};
use std::collections::{BTreeMap, VecDeque};

mod package;
pub use package::{
    is_fee_refusal, is_p2a, package_fee_needed, TRUC_CHILD_MAX_VSIZE, TRUC_MAX_VSIZE,
};
mod reorg;
pub use reorg::{ReorgError, ReorgOutcome, ReorgTxs, MAX_REORG_DEPTH};

#[derive(Clone, Debug)]
pub struct BlockInfo {
    pub height: u32,
    /// This block's id; a node's chain watcher compares `parent` with its own tip to see a reorg.
    pub hash: BlockHash,
    /// The hash of the block at `height - 1` on this block's branch.
    pub parent: BlockHash,
    pub time: Micros,
    /// Confirmed in this block, in order (parents before children).
    pub txs: Vec<Transaction>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Utxo {
    pub output: TxOut,
    /// Confirmation height, None while only in the mempool.
    pub height: Option<u32>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ChainReject {
    #[error("input {index} spends unknown or spent outpoint {outpoint}")]
    MissingInput { index: usize, outpoint: OutPoint },
    #[error("input {index} conflicts with mempool tx {conflict}")]
    DoubleSpend { index: usize, conflict: Txid },
    #[error(
        "input {index} is non-BIP68-final: needs {needed} confirmations of its prevout, has {have}"
    )]
    NonFinal {
        index: usize,
        needed: u16,
        have: u32,
    },
    #[error("input {index} fails script verification: {detail}")]
    Consensus { index: usize, detail: String },
    #[error("outputs ({outputs}) exceed inputs ({inputs})")]
    ValueOut { inputs: Amount, outputs: Amount },
    #[error("feerate too low: fee {fee} for {vsize} vB is below the mempool minimum of {min_sat_per_vb} sat/vB")]
    FeeTooLow {
        fee: Amount,
        vsize: u64,
        min_sat_per_vb: u64,
    },
    #[error("transaction {0} already known")]
    Duplicate(Txid),
    #[error("malformed: {0}")]
    Malformed(String),
    /// Watchtower and fees flow: a v3/TRUC topology or P2A spending rule (`package.rs`).
    #[error("TRUC policy: {0}")]
    Truc(String),
    /// Watchtower and fees flow: a package that is not `[parent, child]` with the child
    /// spending the parent's anchor.
    #[error("package refused: {0}")]
    Package(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainStats {
    pub blocks: u32,
    pub txs_accepted: u64,
    pub txs_rejected: u64,
    /// Inputs run through libbitcoinconsensus (every input of every accepted tx, at least).
    pub inputs_verified: u64,
    pub reorgs: u32,
    /// Confirmed txs whose block a reorg disconnected.
    pub txs_reorged_out: u64,
    /// Of those and of the mempool at the reorg, txs not re-admitted (dropped by the fault, or
    /// no longer valid on the new branch, e.g. non-BIP68-final).
    pub txs_dropped_on_reorg: u64,
}

/// Script flags of a post-taproot block (DEPENDENCIES.md §3).
const VERIFY_FLAGS: u32 =
    bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT | bitcoinconsensus::VERIFY_TAPROOT;
/// BIP68: bit 31 disables the relative lock of an input.
const SEQUENCE_DISABLE_FLAG: u32 = 1 << 31;
/// BIP68: bit 22 makes the lock time-based (512 s units).
const SEQUENCE_TYPE_FLAG: u32 = 1 << 22;
/// BIP68 applies only to transactions of version 2 and above.
const BIP68_MIN_VERSION: i32 = 2;

/// What it takes to disconnect one block: its txs in block order, each with the outputs it spent.
#[derive(Clone, Debug)]
struct BlockUndo {
    entries: Vec<(MempoolEntry, Vec<(OutPoint, Utxo)>)>,
}

/// A transaction waiting for the next block.
#[derive(Clone, Debug)]
struct MempoolEntry {
    txid: Txid,
    tx: Transaction,
    fee: Amount,
}

pub struct Chain {
    /// Height of the tip; genesis coins are confirmed at 0.
    height: u32,
    /// Confirmed unspent outputs. Deterministic iteration order.
    utxos: BTreeMap<OutPoint, Utxo>,
    /// Outputs created by mempool txs (height None). Kept when a later mempool tx spends one, so a
    /// third spender is reported as a double spend, like a confirmed output would be.
    mempool_outputs: BTreeMap<OutPoint, Utxo>,
    /// Outpoints spent by a mempool tx: the first seen spender wins.
    mempool_spends: BTreeMap<OutPoint, Txid>,
    /// Arrival order; mining keeps it, so parents precede children.
    mempool: Vec<MempoolEntry>,
    /// Confirmation height of every confirmed tx, genesis funding included.
    confirmed: BTreeMap<Txid, u32>,
    /// Synthetic funding txs created so far (makes each funding txid unique).
    fundings: u64,
    funded_total: Amount,
    confirmed_fees_total: Amount,
    stats: ChainStats,
    /// Block hash by height (index 0: the genesis hash).
    hashes: Vec<BlockHash>,
    /// Undo data of the last blocks, oldest first, at most [`MAX_REORG_DEPTH`].
    undo: VecDeque<BlockUndo>,
    /// Mempool admission floor in sat/vB (a fee spike raises it).
    min_feerate_sat_vb: u64,
}

impl Chain {
    pub fn new() -> Chain {
        Chain {
            height: 0,
            utxos: BTreeMap::new(),
            mempool_outputs: BTreeMap::new(),
            mempool_spends: BTreeMap::new(),
            mempool: Vec::new(),
            confirmed: BTreeMap::new(),
            fundings: 0,
            funded_total: Amount::ZERO,
            confirmed_fees_total: Amount::ZERO,
            stats: ChainStats::default(),
            hashes: vec![BlockHash::all_zeros()],
            undo: VecDeque::new(),
            min_feerate_sat_vb: 0,
        }
    }

    /// A genesis coin (confirmed at height 0) paying `script_pubkey`: how wallets get L1 funds.
    pub fn fund(&mut self, script_pubkey: ScriptBuf, value: Amount) -> OutPoint {
        let tx = funding_tx(self.fundings, script_pubkey, value);
        self.fundings += 1;
        let txid = tx.compute_txid();
        let outpoint = OutPoint { txid, vout: 0 };
        // Not verified: it stands for coins that exist before the simulation starts.
        self.confirmed.insert(txid, 0);
        self.utxos.insert(
            outpoint,
            Utxo {
                output: tx.output[0].clone(),
                height: Some(0),
            },
        );
        self.funded_total += value;
        outpoint
    }

    /// Mempool acceptance (all checks above, as of the next block's height).
    pub fn submit(&mut self, tx: Transaction) -> Result<Txid, ChainReject> {
        match self.check(&tx, self.min_feerate_sat_vb) {
            Ok((txid, fee)) => {
                self.accept(txid, tx, fee);
                self.stats.txs_accepted += 1;
                Ok(txid)
            }
            Err(reject) => {
                self.stats.txs_rejected += 1;
                Err(reject)
            }
        }
    }

    /// Mine every mempool tx into block height+1.
    pub fn mine_block(&mut self, time: Micros) -> BlockInfo {
        let entries = std::mem::take(&mut self.mempool);
        self.connect_block(time, entries, self.stats.reorgs)
    }

    /// Connect a block holding `entries` (parents before children) on top of the tip. `branch`
    /// goes into the hash so a replacement block at a height never repeats the old one's hash.
    fn connect_block(
        &mut self,
        time: Micros,
        entries: Vec<MempoolEntry>,
        branch: u32,
    ) -> BlockInfo {
        self.height += 1;
        let height = self.height;
        self.mempool_outputs.clear();
        self.mempool_spends.clear();
        let mut txs = Vec::with_capacity(entries.len());
        let mut undo = BlockUndo {
            entries: Vec::with_capacity(entries.len()),
        };
        for entry in entries {
            // Arrival order puts parents first, so a child's in-block prevout is already here.
            let mut spent = Vec::with_capacity(entry.tx.input.len());
            for input in &entry.tx.input {
                let utxo = self.utxos.remove(&input.previous_output);
                debug_assert!(
                    utxo.is_some(),
                    "mempool tx {} spends a missing outpoint",
                    entry.txid
                );
                if let Some(utxo) = utxo {
                    spent.push((input.previous_output, utxo));
                }
            }
            for (vout, output) in entry.tx.output.iter().enumerate() {
                let outpoint = OutPoint {
                    txid: entry.txid,
                    vout: vout_u32(vout),
                };
                self.utxos.insert(
                    outpoint,
                    Utxo {
                        output: output.clone(),
                        height: Some(height),
                    },
                );
            }
            self.confirmed.insert(entry.txid, height);
            self.confirmed_fees_total += entry.fee;
            txs.push(entry.tx.clone());
            undo.entries.push((entry, spent));
        }
        self.stats.blocks += 1;
        let parent = self.tip_hash();
        let hash = block_hash(parent, height, time, branch, &undo);
        self.hashes.push(hash);
        self.undo.push_back(undo);
        if self.undo.len() > MAX_REORG_DEPTH as usize {
            self.undo.pop_front();
        }
        debug_assert_eq!(self.hashes.len(), height as usize + 1);
        debug_assert_eq!(
            self.funded_total,
            self.confirmed_utxo_total() + self.confirmed_fees_total
        );
        BlockInfo {
            height,
            hash,
            parent,
            time,
            txs,
        }
    }

    /// The hash of the tip (all zeros before the first block).
    pub fn tip_hash(&self) -> BlockHash {
        self.hashes
            .last()
            .copied()
            .unwrap_or_else(BlockHash::all_zeros)
    }

    /// The hash of the block at `height` on the current branch.
    pub fn block_hash(&self, height: u32) -> Option<BlockHash> {
        self.hashes.get(height as usize).copied()
    }

    /// Set the mempool admission floor (sat/vB); 0 admits zero-fee transactions.
    pub fn set_min_feerate(&mut self, sat_per_vb: u64) {
        self.min_feerate_sat_vb = sat_per_vb;
    }

    pub fn min_feerate(&self) -> u64 {
        self.min_feerate_sat_vb
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// An output unspent on chain: confirmed, or created by a mempool tx (height None). An output
    /// a mempool tx spends is still returned: until the spender confirms it stays unspent.
    pub fn utxo(&self, outpoint: &OutPoint) -> Option<&Utxo> {
        self.utxos
            .get(outpoint)
            .or_else(|| self.mempool_outputs.get(outpoint))
    }

    pub fn confirmation_height(&self, txid: &Txid) -> Option<u32> {
        self.confirmed.get(txid).copied()
    }

    pub fn in_mempool(&self, txid: &Txid) -> bool {
        self.mempool.iter().any(|e| e.txid == *txid)
    }

    pub fn stats(&self) -> &ChainStats {
        &self.stats
    }

    /// Value audit: Σ funded = Σ confirmed UTXO values + Σ fees of confirmed txs (+ mempool effects).
    pub fn funded_total(&self) -> Amount {
        self.funded_total
    }

    pub fn confirmed_utxo_total(&self) -> Amount {
        self.utxos.values().map(|u| u.output.value).sum()
    }

    pub fn confirmed_fees_total(&self) -> Amount {
        self.confirmed_fees_total
    }

    /// Every acceptance rule, in order, with `min_sat_per_vb` as the fee floor; returns the txid
    /// and fee of an acceptable tx.
    fn check(
        &mut self,
        tx: &Transaction,
        min_sat_per_vb: u64,
    ) -> Result<(Txid, Amount), ChainReject> {
        let txid = tx.compute_txid();
        if self.confirmed.contains_key(&txid) || self.in_mempool(&txid) {
            return Err(ChainReject::Duplicate(txid));
        }
        check_shape(tx)?;
        let prevouts = self.prevouts(tx)?;
        self.check_conflicts(tx)?;
        let fee = check_value(tx, &prevouts)?;
        self.check_bip68(tx, &prevouts)?;
        self.check_truc(tx, &prevouts)?;
        check_feerate(tx, fee, min_sat_per_vb)?;
        self.verify_scripts(tx, &prevouts)?;
        Ok((txid, fee))
    }

    /// The output each input spends, confirmed or in the mempool.
    fn prevouts(&self, tx: &Transaction) -> Result<Vec<Utxo>, ChainReject> {
        tx.input
            .iter()
            .enumerate()
            .map(|(index, input)| {
                let outpoint = input.previous_output;
                self.utxo(&outpoint)
                    .cloned()
                    .ok_or(ChainReject::MissingInput { index, outpoint })
            })
            .collect()
    }

    /// First seen wins: no replacement (RBF) is modelled.
    fn check_conflicts(&self, tx: &Transaction) -> Result<(), ChainReject> {
        for (index, input) in tx.input.iter().enumerate() {
            if let Some(conflict) = self.mempool_spends.get(&input.previous_output) {
                return Err(ChainReject::DoubleSpend {
                    index,
                    conflict: *conflict,
                });
            }
        }
        // Two inputs of one tx spending the same outpoint is a consensus error.
        let mut seen = std::collections::BTreeSet::new();
        for input in &tx.input {
            if !seen.insert(input.previous_output) {
                return Err(ChainReject::Malformed(format!(
                    "outpoint {} spent twice",
                    input.previous_output
                )));
            }
        }
        Ok(())
    }

    /// BIP68 as of the next block: spark-protocol §3.3–§3.6 relies on it for exit ordering, and no
    /// script interpreter checks it (DEPENDENCIES.md §3), so the chain must.
    fn check_bip68(&self, tx: &Transaction, prevouts: &[Utxo]) -> Result<(), ChainReject> {
        if tx.version.0 < BIP68_MIN_VERSION {
            return Ok(());
        }
        let next_height = self.height + 1;
        for (index, (input, prevout)) in tx.input.iter().zip(prevouts).enumerate() {
            let seq = input.sequence.0;
            if seq & SEQUENCE_DISABLE_FLAG != 0 {
                continue;
            }
            if seq & SEQUENCE_TYPE_FLAG != 0 {
                return Err(ChainReject::Malformed(
                    "time-based relative locks are not modelled".into(),
                ));
            }
            let needed = crate::tx::timelock::blocks(input.sequence).0;
            // A prevout only in the mempool would confirm in the same block: 0 confirmations.
            let have = prevout.height.map_or(0, |h| next_height - h);
            if have < u32::from(needed) {
                return Err(ChainReject::NonFinal {
                    index,
                    needed,
                    have,
                });
            }
        }
        Ok(())
    }

    /// libbitcoinconsensus 0.106 on every input, with all spent outputs (taproot needs them).
    fn verify_scripts(&mut self, tx: &Transaction, prevouts: &[Utxo]) -> Result<(), ChainReject> {
        let tx_bytes = bitcoin::consensus::serialize(tx);
        let spent = spent_outputs(prevouts)?;
        for (index, prevout) in prevouts.iter().enumerate() {
            self.stats.inputs_verified += 1;
            let script = prevout.output.script_pubkey.as_bytes();
            let amount = prevout.output.value.to_sat();
            bitcoinconsensus::verify_with_flags(
                script,
                amount,
                &tx_bytes,
                Some(&spent),
                index,
                VERIFY_FLAGS,
            )
            .map_err(|e| ChainReject::Consensus {
                index,
                detail: format!("{e:?}: {e}"),
            })?;
        }
        Ok(())
    }

    /// Enter an already checked tx into the mempool.
    fn accept(&mut self, txid: Txid, tx: Transaction, fee: Amount) {
        for input in &tx.input {
            self.mempool_spends.insert(input.previous_output, txid);
        }
        for (vout, output) in tx.output.iter().enumerate() {
            let outpoint = OutPoint {
                txid,
                vout: vout_u32(vout),
            };
            self.mempool_outputs.insert(
                outpoint,
                Utxo {
                    output: output.clone(),
                    height: None,
                },
            );
        }
        self.mempool.push(MempoolEntry { txid, tx, fee });
    }
}

impl Default for Chain {
    fn default() -> Self {
        Chain::new()
    }
}

/// Structural rules that need no chain state.
fn check_shape(tx: &Transaction) -> Result<(), ChainReject> {
    if tx.input.is_empty() {
        return Err(ChainReject::Malformed("no inputs".into()));
    }
    if tx.output.is_empty() {
        return Err(ChainReject::Malformed("no outputs".into()));
    }
    if u32::try_from(tx.output.len()).is_err() {
        return Err(ChainReject::Malformed("too many outputs".into()));
    }
    Ok(())
}

/// Outputs must not exceed inputs (no other fee rule is modelled); returns the fee.
fn check_value(tx: &Transaction, prevouts: &[Utxo]) -> Result<Amount, ChainReject> {
    let inputs = checked_sum(prevouts.iter().map(|u| u.output.value))
        .ok_or_else(|| ChainReject::Malformed("input values overflow".into()))?;
    let outputs = checked_sum(tx.output.iter().map(|o| o.value))
        .filter(|total| *total <= Amount::MAX_MONEY)
        .ok_or_else(|| ChainReject::Malformed("output values exceed the money supply".into()))?;
    inputs
        .checked_sub(outputs)
        .ok_or(ChainReject::ValueOut { inputs, outputs })
}

/// The mempool floor: fee ≥ floor × vsize (a floor of 0 admits zero-fee CPFP parents).
fn check_feerate(tx: &Transaction, fee: Amount, min_sat_per_vb: u64) -> Result<(), ChainReject> {
    if min_sat_per_vb == 0 {
        return Ok(());
    }
    let vsize = tx.vsize() as u64;
    if fee.to_sat() < min_sat_per_vb.saturating_mul(vsize) {
        return Err(ChainReject::FeeTooLow {
            fee,
            vsize,
            min_sat_per_vb,
        });
    }
    Ok(())
}

/// A block's id: double SHA-256 over its parent, height, time, branch and txids. Not a real
/// header hash (there is no proof of work), but unique per branch, which is all a watcher needs.
fn block_hash(
    parent: BlockHash,
    height: u32,
    time: Micros,
    branch: u32,
    undo: &BlockUndo,
) -> BlockHash {
    let mut bytes = Vec::with_capacity(48 + 32 * undo.entries.len());
    bytes.extend_from_slice(parent.as_byte_array());
    bytes.extend_from_slice(&height.to_le_bytes());
    bytes.extend_from_slice(&time.0.to_le_bytes());
    bytes.extend_from_slice(&branch.to_le_bytes());
    for (entry, _) in &undo.entries {
        bytes.extend_from_slice(entry.txid.as_byte_array());
    }
    BlockHash::from_raw_hash(bitcoin::hashes::sha256d::Hash::hash(&bytes))
}

fn checked_sum(values: impl Iterator<Item = Amount>) -> Option<Amount> {
    values
        .into_iter()
        .try_fold(Amount::ZERO, Amount::checked_add)
}

/// The spent-outputs array libbitcoinconsensus wants. The pointers borrow from `prevouts`, which
/// outlives every use in [`Chain::verify_scripts`].
fn spent_outputs(prevouts: &[Utxo]) -> Result<Vec<bitcoinconsensus::Utxo>, ChainReject> {
    prevouts
        .iter()
        .map(|u| {
            let script = u.output.script_pubkey.as_bytes();
            let script_pubkey_len = u32::try_from(script.len())
                .map_err(|_| ChainReject::Malformed("prevout script too long".into()))?;
            let value = i64::try_from(u.output.value.to_sat())
                .map_err(|_| ChainReject::Malformed("prevout value too large".into()))?;
            Ok(bitcoinconsensus::Utxo {
                script_pubkey: script.as_ptr(),
                script_pubkey_len,
                value,
            })
        })
        .collect()
}

/// A synthetic, unverified funding tx. Its null-outpoint input's sequence and the locktime carry
/// the funding counter, so every funding txid is unique.
fn funding_tx(counter: u64, script_pubkey: ScriptBuf, value: Amount) -> Transaction {
    let low = (counter & 0xffff_ffff) as u32;
    let high = (counter >> 32) as u32;
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_consensus(high),
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::new(),
            sequence: Sequence(low),
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value,
            script_pubkey,
        }],
    }
}

/// Output index as a vout; `check_shape` bounds the output count.
fn vout_u32(vout: usize) -> u32 {
    u32::try_from(vout).unwrap_or(u32::MAX)
}
