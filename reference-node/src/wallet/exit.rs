//! Unilateral exit (spark-protocol §4.6): broadcast the leaf's node tx, wait for it to confirm,
//! wait out the refund's relative timelock (the chain enforces it), broadcast the refund.
//!
//! L1 faults: a broadcast the mempool refuses (a fee spike: the CPFP variants pay zero fee) is
//! broadcast again at the next block, up to [`MAX_EXIT_REBROADCASTS`] times — the wallet waits
//! the spike out rather than fee-bumping through the P2A anchor (package relay is not modelled).
//! A reorg that takes the node tx or the refund off the chain sends the exit back to that step
//! (`reorg.rs` calls the `revert_*` functions below); the refund's timelock then counts from the
//! node tx's new confirmation height.
use super::reorg::Learned;
use super::{LeafState, Wallet};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::tx::timelock;
use crate::types::LeafId;
use bitcoin::hashes::Hash as _;
use bitcoin::Txid;
use std::collections::BTreeSet;

/// Bound on re-broadcasts of one exit's txs (four weeks of blocks: longer than any timelock).
pub const MAX_EXIT_REBROADCASTS: u32 = 4_032;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitProgress {
    node_txid: Txid,
    refund_txid: Txid,
    node_confirmed_at: Option<u32>,
    refund_broadcast: bool,
    /// The node tx must be broadcast again (refused, or reorged out).
    node_rebroadcast: bool,
    rebroadcasts: u32,
}

impl Wallet {
    pub(super) fn start_exit(&mut self, ctx: &mut Ctx<'_>) {
        let Some((_, leaf)) = self.leaves.iter_mut().find(|(_, l)| l.state == LeafState::Available) else {
            return ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: "exit: no available leaf".into() });
        };
        leaf.state = LeafState::Exiting(ExitProgress {
            node_txid: leaf.nodes.cpfp.compute_txid(),
            refund_txid: leaf.refunds.cpfp.compute_txid(),
            node_confirmed_at: None,
            refund_broadcast: false,
            node_rebroadcast: false,
            rebroadcasts: 0,
        });
        ctx.broadcast(leaf.nodes.cpfp.clone());
    }

    /// Unilaterally exit one given leaf (a coop exit that came back, or the SSP's fallback on
    /// its connector refund: wallet/coop_exit.rs, wallet/ssp_coop_exit.rs).
    pub(super) fn start_exit_of(&mut self, ctx: &mut Ctx<'_>, id: LeafId) {
        let Some(leaf) = self.leaves.get_mut(&id).filter(|l| l.state == LeafState::Available) else { return };
        leaf.state = LeafState::Exiting(ExitProgress {
            node_txid: leaf.nodes.cpfp.compute_txid(),
            refund_txid: leaf.refunds.cpfp.compute_txid(),
            node_confirmed_at: None,
            refund_broadcast: false,
            node_rebroadcast: false,
            rebroadcasts: 0,
        });
        ctx.broadcast(leaf.nodes.cpfp.clone());
    }

    pub(super) fn advance_exits(&mut self, ctx: &mut Ctx<'_>, confirmed: &BTreeSet<Txid>) {
        let (me, height) = (self.cfg.id, self.height);
        for (id, leaf) in self.leaves.iter_mut() {
            let LeafState::Exiting(p) = &mut leaf.state else { continue };
            if confirmed.contains(&p.node_txid) {
                p.node_confirmed_at = Some(height);
                p.node_rebroadcast = false;
                self.chain.record(height, Learned::ExitNode { leaf: *id });
            }
            if confirmed.contains(&p.refund_txid) {
                let node_height = p.node_confirmed_at.unwrap_or(height);
                leaf.state = LeafState::Exited;
                self.chain.record(height, Learned::ExitRefund { leaf: *id, node_height });
                ctx.observe(Observation::ExitConfirmed { wallet: me, leaf: *id, value_sats: leaf.value_sats });
                continue;
            }
            if p.node_rebroadcast && p.node_confirmed_at.is_none() && p.rebroadcasts < MAX_EXIT_REBROADCASTS {
                p.node_rebroadcast = false;
                p.rebroadcasts += 1;
                ctx.broadcast(leaf.nodes.cpfp.clone());
            }
            let csv = u32::from(timelock::blocks(leaf.refunds.cpfp.input[0].sequence).0);
            if let Some(h) = p.node_confirmed_at {
                // The refund enters the next block at height + 1: BIP68 counts that block.
                let mature = height + 1 - h >= csv || self.cfg.params.test_faults.broadcast_refund_early;
                if !p.refund_broadcast && mature && p.rebroadcasts <= MAX_EXIT_REBROADCASTS {
                    p.refund_broadcast = true;
                    ctx.broadcast(leaf.refunds.cpfp.clone());
                }
            }
        }
    }

    /// The mempool refused one of our txs: if it is an exit's, try again at the next block.
    pub(super) fn exit_broadcast_refused(&mut self, txid: &[u8; 32]) {
        for leaf in self.leaves.values_mut() {
            let LeafState::Exiting(p) = &mut leaf.state else { continue };
            if p.node_txid.to_byte_array() == *txid && p.node_confirmed_at.is_none() {
                p.node_rebroadcast = true;
            }
            if p.refund_txid.to_byte_array() == *txid && p.refund_broadcast {
                p.refund_broadcast = false;
                p.rebroadcasts += 1;
            }
        }
    }

    /// A reorg took the exit's node tx off the chain: broadcast it again and wait for it.
    pub(super) fn revert_exit_node(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId) {
        let Some(l) = self.leaves.get_mut(&leaf) else { return };
        let LeafState::Exiting(p) = &mut l.state else { return };
        p.node_confirmed_at = None;
        p.refund_broadcast = false;
        ctx.broadcast(l.nodes.cpfp.clone());
    }

    /// A reorg took the exit's refund off the chain: the exit is in progress again. The node tx
    /// stays confirmed if its block (`node_height`) is below the fork.
    pub(super) fn revert_exit_refund(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId, node_height: u32, fork: u32) {
        let me = self.cfg.id;
        let Some(l) = self.leaves.get_mut(&leaf) else { return };
        if l.state != LeafState::Exited {
            return;
        }
        l.state = LeafState::Exiting(ExitProgress {
            node_txid: l.nodes.cpfp.compute_txid(),
            refund_txid: l.refunds.cpfp.compute_txid(),
            node_confirmed_at: (node_height < fork).then_some(node_height),
            refund_broadcast: false,
            node_rebroadcast: false,
            rebroadcasts: 0,
        });
        ctx.observe(Observation::ExitReorged { wallet: me, leaf });
    }
}
