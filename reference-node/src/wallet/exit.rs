//! Unilateral exit (spark-protocol §4.6): broadcast the leaf's node tx, wait for it to confirm,
//! wait out the refund's relative timelock (the chain enforces it), broadcast the refund.
use super::{LeafState, Wallet};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::tx::timelock;
use bitcoin::Txid;
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitProgress {
    node_txid: Txid,
    refund_txid: Txid,
    node_confirmed_at: Option<u32>,
    refund_broadcast: bool,
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
        });
        ctx.broadcast(leaf.nodes.cpfp.clone());
    }

    pub(super) fn advance_exits(&mut self, ctx: &mut Ctx<'_>, confirmed: &BTreeSet<Txid>) {
        let (me, height) = (self.cfg.id, self.height);
        for (id, leaf) in self.leaves.iter_mut() {
            let LeafState::Exiting(p) = &mut leaf.state else { continue };
            if confirmed.contains(&p.node_txid) {
                p.node_confirmed_at = Some(height);
            }
            if confirmed.contains(&p.refund_txid) {
                leaf.state = LeafState::Exited;
                ctx.observe(Observation::ExitConfirmed { wallet: me, leaf: *id, value_sats: leaf.value_sats });
                continue;
            }
            let csv = u32::from(timelock::blocks(leaf.refunds.cpfp.input[0].sequence).0);
            if let Some(h) = p.node_confirmed_at {
                // The refund enters the next block at height + 1: BIP68 counts that block.
                if !p.refund_broadcast && height + 1 - h >= csv {
                    p.refund_broadcast = true;
                    ctx.broadcast(leaf.refunds.cpfp.clone());
                }
            }
        }
    }
}
