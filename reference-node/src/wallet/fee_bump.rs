//! Fee bumping of the wallet's zero-fee CPFP txs (spark-protocol §3.2, §4.6 step 2, §5.2 item 5):
//! each node or refund tx that carries a P2A anchor goes to L1 as a package `[tx, child]`, the
//! child spending the anchor (empty witness) and one confirmed L1 coin of the wallet (a real
//! BIP340 key-path signature), returning the change to the wallet.
//!
//! Feerate: the package pays `rate` sat/vB over both txs. It starts at `Params::l1_feerate_sat_vb`
//! and doubles each time the mempool refuses a package for its fee (a spike), up to
//! [`MAX_RATE_SAT_VB`], so an exit gets through a spike within a few blocks instead of waiting it
//! out; each confirmed package halves it back toward the base. The wallet has no fee estimator:
//! the refusal is its signal, as a `submitpackage` caller's is.
//!
//! Coins: a coin is used only once it is confirmed (a TRUC child may have no unconfirmed
//! ancestor but its parent). It leaves `l1_coins` while its package is in flight, comes back if
//! the package is refused, and its change joins `l1_coins` when the child confirms. A reorg that
//! takes a confirmed child away is not followed (the change is already counted as the wallet's).
use super::Wallet;
use crate::chain::{is_fee_refusal, is_p2a, package_fee_needed};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::tx::{sighash, template};
use bitcoin::hashes::Hash as _;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use rand_core::RngCore;
use std::collections::{BTreeMap, BTreeSet};

/// The highest feerate a wallet offers (a spike above it is waited out).
pub const MAX_RATE_SAT_VB: u64 = 2_000;
/// Smallest change output (P2TR dust limit): a coin that would leave less does not pay.
const DUST_SATS: u64 = 330;
/// Bound on packages in flight per wallet.
const MAX_IN_FLIGHT: usize = 1_024;

#[derive(Clone, Debug)]
struct InFlight {
    child: Txid,
    coin: (OutPoint, TxOut),
    change: Option<TxOut>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct FeeBumper {
    /// sat/vB the next package pays (0: not set yet, the base applies).
    rate: u64,
    /// L1 coins of this wallet known to be confirmed.
    confirmed: BTreeSet<OutPoint>,
    /// Packages in flight, by parent txid.
    in_flight: BTreeMap<Txid, InFlight>,
    /// Packages submitted and children confirmed (for tests and reports).
    pub packages: u64,
    pub children_confirmed: u64,
}

impl Wallet {
    /// The feerate the next package pays.
    fn bump_rate(&self) -> u64 {
        self.fees.rate.max(self.cfg.params.l1_feerate_sat_vb)
    }

    /// Mark a coin as confirmed (genesis coins, and outputs seen in a block).
    pub(super) fn fee_coin_confirmed(&mut self, outpoint: OutPoint) {
        self.fees.confirmed.insert(outpoint);
    }

    /// Broadcast `tx`: as a package with a fee-bumping child when it carries a P2A anchor and a
    /// confirmed coin can pay, else alone (a tx without an anchor pays its own fee; a wallet
    /// without a coin can only hope for a zero floor).
    pub(super) fn broadcast_cpfp(&mut self, ctx: &mut Ctx<'_>, tx: Transaction) {
        let parent_txid = tx.compute_txid();
        let Some(anchor) = tx.output.iter().position(|o| is_p2a(&o.script_pubkey)) else {
            return ctx.broadcast(tx);
        };
        if self.fees.in_flight.contains_key(&parent_txid) || self.fees.in_flight.len() >= MAX_IN_FLIGHT {
            // Our own package for it is still out: a second child would be its sibling.
            return;
        }
        match self.fee_child(ctx, &tx, anchor as u32) {
            Ok((child, flight)) => {
                self.l1_coins.retain(|(o, _)| *o != flight.coin.0);
                self.fees.in_flight.insert(parent_txid, flight);
                self.fees.packages += 1;
                ctx.broadcast_package(vec![tx, child]);
            }
            Err(reason) => {
                ctx.observe(Observation::Rejected { what: format!("{} fee bump {}", self.cfg.id, &parent_txid.to_string()[..8]), reason });
                ctx.broadcast(tx);
            }
        }
    }

    /// The child spending `parent`'s anchor and the largest confirmed coin, paying the package's
    /// fee at the current rate.
    fn fee_child(&self, ctx: &mut Ctx<'_>, parent: &Transaction, anchor_vout: u32) -> Result<(Transaction, InFlight), String> {
        let rate = self.bump_rate();
        let coin = self
            .l1_coins
            .iter()
            .filter(|(o, _)| self.fees.confirmed.contains(o))
            .max_by_key(|(o, c)| (c.value, *o))
            .cloned()
            .ok_or("no confirmed L1 coin to pay a CPFP child")?;
        let script = template::p2tr_script(&self.l1_key_public());
        let anchor = OutPoint { txid: parent.compute_txid(), vout: anchor_vout };
        let parent_fee = Amount::ZERO; // Spark's CPFP variants pay none (§3.2).
        let mut child = Transaction {
            version: Version(3),
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![
                TxIn { previous_output: anchor, script_sig: Default::default(), sequence: Sequence::MAX, witness: Witness::new() },
                TxIn { previous_output: coin.0, script_sig: Default::default(), sequence: Sequence::MAX, witness: Witness::new() },
            ],
            output: vec![TxOut { value: coin.1.value, script_pubkey: script }],
        };
        // Size with a placeholder signature of the final length (64 bytes, default sighash).
        child.input[1].witness = Witness::from_slice(&[[0u8; 64]]);
        let fee = package_fee_needed(parent.vsize() as u64, parent_fee, child.vsize() as u64, rate);
        let change = coin.1.value.checked_sub(fee).ok_or_else(|| format!("coin of {} too small for a {} fee at {rate} sat/vB", coin.1.value, fee))?;
        if change.to_sat() < DUST_SATS {
            return Err(format!("coin of {} leaves dust after a {} fee at {rate} sat/vB", coin.1.value, fee));
        }
        child.output[0].value = change;
        let change = Some(child.output[0].clone());
        let keypair = bitcoin::secp256k1::Keypair::from_secret_key(crate::crypto::secp(), &self.cfg.l1_key);
        let mut aux = [0u8; 32];
        ctx.rng.fill_bytes(&mut aux);
        let prevouts = [template::anchor_output(), coin.1.clone()];
        let sig = sighash::sign_single_key(&child, 1, &prevouts, &keypair, &aux).map_err(|e| e.to_string())?;
        child.input[1].witness = sighash::key_spend_witness(&sig);
        let flight = InFlight { child: child.compute_txid(), coin, change };
        Ok((child, flight))
    }

    /// The mempool refused one of our txs: a package's coin comes back; a fee refusal raises
    /// the rate for the next try.
    pub(super) fn fee_bump_refused(&mut self, txid: &[u8; 32], reason: &str) {
        let txid = Txid::from_byte_array(*txid);
        let Some(flight) = self.fees.in_flight.remove(&txid) else { return };
        // A coin the chain says is gone (a reorg dropped the tx that made it) is forgotten,
        // else it would be picked, and refused, again and again.
        if reason.contains(&flight.coin.0.to_string()) {
            self.fees.confirmed.remove(&flight.coin.0);
        } else {
            self.l1_coins.push(flight.coin);
        }
        if is_fee_refusal(reason) {
            self.fees.rate = (self.bump_rate() * 2).min(MAX_RATE_SAT_VB);
        }
    }

    /// A block: coins paying us are confirmed; a confirmed child hands back its change; a parent
    /// confirmed without our child (someone else bumped it) frees our coin.
    pub(super) fn fee_bump_block(&mut self, txs: &[Transaction]) {
        // The L1 script costs a base-point multiplication and a taproot tweak: built only for a
        // block with transactions (most simulated blocks during a long exit wait are empty).
        let script = if txs.is_empty() { ScriptBuf::new() } else { template::p2tr_script(&self.l1_key_public()) };
        let mut confirmed = BTreeSet::new();
        for tx in txs {
            let txid = tx.compute_txid();
            confirmed.insert(txid);
            for (vout, out) in tx.output.iter().enumerate() {
                if out.script_pubkey == script {
                    self.fees.confirmed.insert(OutPoint { txid, vout: vout as u32 });
                }
            }
        }
        let done: Vec<Txid> = self.fees.in_flight.iter().filter(|(p, f)| confirmed.contains(*p) || confirmed.contains(&f.child)).map(|(p, _)| *p).collect();
        for parent in done {
            let Some(flight) = self.fees.in_flight.remove(&parent) else { continue };
            if confirmed.contains(&flight.child) {
                self.fees.children_confirmed += 1;
                self.fees.confirmed.remove(&flight.coin.0);
                if let Some(change) = flight.change {
                    self.l1_coins.push((OutPoint { txid: flight.child, vout: 0 }, change));
                }
                let base = self.cfg.params.l1_feerate_sat_vb;
                self.fees.rate = (self.bump_rate() / 2).max(base);
            } else {
                self.l1_coins.push(flight.coin);
            }
        }
    }

    /// Packages this wallet submitted and children of them confirmed.
    pub fn fee_bump_counts(&self) -> (u64, u64) {
        (self.fees.packages, self.fees.children_confirmed)
    }
}
