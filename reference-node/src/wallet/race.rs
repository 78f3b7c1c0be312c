//! The old-owner exit race (spark-protocol §5.2 item 1, §3.6), both sides.
//!
//! Attacker: a former owner still holds, legitimately, the leaf's node tx and the refunds signed
//! for it while it owned the leaf (`sent_away`, the same memory `thief.rs` uses, but no colluding
//! operator is needed). `Command::RaceStaleRefund` broadcasts the node tx (CPFP package), waits
//! for its stale refund's timelock and broadcasts that refund. No signature is forged: the only
//! thing between it and the money is the current owner's lower timelock — if somebody broadcasts
//! it in time.
//!
//! Defender: a wallet that sees the node tx of a leaf it holds confirmed by someone else starts
//! its own exit from there (its CPFP refund matures at least 100 blocks before any previous
//! owner's). A wallet that is down sees nothing: then only the operators' watchtower
//! (operator/watchtower.rs) stands between the old owner and the leaf.
use super::{LeafState, Wallet, WalletLeaf};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::tx::timelock;
use crate::types::LeafId;
use bitcoin::{OutPoint, Transaction, Txid};
use std::collections::BTreeSet;

/// Bound on re-broadcasts of the stale refund (the race is over long before).
const MAX_RACE_BROADCASTS: u32 = 4_032;

pub(super) struct Race {
    old: WalletLeaf,
    node_txid: Txid,
    node_height: Option<u32>,
    /// The stale refund is in the mempool (or on its way): wait for its result.
    refund_out: bool,
    broadcasts: u32,
}

impl Wallet {
    /// `Command::RaceStaleRefund`: race the first leaf this wallet sent away.
    pub(super) fn start_race(&mut self, ctx: &mut Ctx<'_>) {
        if self.race.is_some() {
            return;
        }
        let Some((leaf, old)) = self.sent_away.iter().next().map(|(l, w)| (*l, w.clone())) else {
            return ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: "race: this wallet never sent a leaf away".into() });
        };
        self.sent_away.remove(&leaf);
        ctx.observe(Observation::StaleRaceStarted { wallet: self.cfg.id, leaf });
        let node = old.nodes.cpfp.clone();
        self.race = Some(Race { node_txid: node.compute_txid(), old, node_height: None, refund_out: false, broadcasts: 0 });
        self.broadcast_cpfp(ctx, node);
    }

    /// A block: follow the race, and defend our own leaves against someone else's exit.
    pub(super) fn race_block(&mut self, ctx: &mut Ctx<'_>, txs: &[Transaction], height: u32) {
        self.defend_leaves(ctx, txs);
        if let Some(tx) = self.race_step(txs, height) {
            self.broadcast_cpfp(ctx, tx);
        }
    }

    /// Advance the race by one block; returns what to broadcast.
    fn race_step(&mut self, txs: &[Transaction], height: u32) -> Option<Transaction> {
        let r = self.race.as_mut()?;
        let node_out = OutPoint { txid: r.node_txid, vout: 0 };
        for tx in txs {
            if tx.compute_txid() == r.node_txid {
                r.node_height = Some(height);
            }
            if tx.input.iter().any(|i| i.previous_output == node_out) {
                // Won (our stale refund) or lost (a lower-CSV refund got there first): over
                // either way; the checker reads the outcome from the chain.
                self.race = None;
                return None;
            }
        }
        if r.broadcasts >= MAX_RACE_BROADCASTS {
            return None;
        }
        let Some(node_height) = r.node_height else {
            // Not confirmed yet (refused, or our package still pending): offer it again.
            r.broadcasts += 1;
            return Some(r.old.nodes.cpfp.clone());
        };
        let csv = r.old.refunds.cpfp.input.first().map_or(0, |i| u32::from(timelock::blocks(i.sequence).0));
        if !r.refund_out && height + 1 >= node_height + csv {
            r.refund_out = true;
            r.broadcasts += 1;
            return Some(r.old.refunds.cpfp.clone());
        }
        None
    }

    /// The mempool refused a tx: if it was the stale refund, try again at the next block; if the
    /// node tx's input is already spent (the leaf exited before the race), the race is over.
    pub(super) fn race_broadcast_refused(&mut self, txid: &[u8; 32], reason: &str) {
        use bitcoin::hashes::Hash as _;
        let Some(r) = self.race.as_mut() else { return };
        if r.old.refunds.cpfp.compute_txid().to_byte_array() == *txid {
            r.refund_out = false;
        }
        let deposit = r.old.deposit_outpoint.to_string();
        if r.node_height.is_none() && r.node_txid.to_byte_array() == *txid && reason.contains(&deposit) {
            self.race = None;
        }
    }

    /// Leaves we hold whose CPFP node tx someone else put on chain: exit now, from the confirmed
    /// node tx, so our lower-CSV refund goes in first.
    fn defend_leaves(&mut self, ctx: &mut Ctx<'_>, txs: &[Transaction]) {
        let confirmed: BTreeSet<Txid> = txs.iter().map(|t| t.compute_txid()).collect();
        let hit: Vec<LeafId> = self
            .leaves
            .iter()
            .filter(|(_, l)| l.state == LeafState::Available)
            .filter(|(_, l)| confirmed.contains(&l.nodes.cpfp.compute_txid()))
            .map(|(id, _)| *id)
            .collect();
        for leaf in hit {
            ctx.observe(Observation::OwnerDefends { wallet: self.cfg.id, leaf });
            self.exit_from_confirmed_node(leaf);
        }
    }
}
