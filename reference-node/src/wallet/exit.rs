//! Unilateral exit (spark-protocol §4.6): broadcast the leaf's exit chain root first — each node
//! layer once its parent layer has confirmed and its own CSV has passed (the chain enforces it;
//! 0 for root and split nodes) — then, once the leaf node confirmed, wait out the refund's
//! relative timelock and broadcast the refund. A layer already on chain (a sibling's exit, a
//! watchtower) is skipped: the mempool answers "already known", and the wait for the next layer
//! counts from the block it was learned in (never earlier than its real confirmation).
//!
//! Fees: every CPFP tx goes out through `broadcast_cpfp` (fee_bump.rs) as a package with a child
//! spending its P2A anchor and a wallet coin. A broadcast the mempool refuses (a fee spike above
//! the package's rate) is broadcast again at the next block, with a doubled rate, up to
//! [`MAX_EXIT_REBROADCASTS`] times.
//! A reorg that takes a node layer or the refund off the chain sends the exit back to that step
//! (`reorg.rs` calls the `revert_*` functions below); the timelocks then count from the new
//! confirmation heights.
use super::reorg::Learned;
use super::{LeafState, Wallet, WalletLeaf};
use crate::msg::NodeSet;
use crate::node::Ctx;
use crate::observe::Observation;
use crate::tx::timelock;
use crate::types::LeafId;
use bitcoin::hashes::Hash as _;
use bitcoin::{Transaction, Txid};
use std::collections::BTreeSet;

/// Bound on re-broadcasts of one exit's txs (four weeks of blocks: longer than any timelock).
pub const MAX_EXIT_REBROADCASTS: u32 = 4_032;

/// What the mempool says when a tx is already in it or on chain (`ChainReject::Duplicate`).
const ALREADY_KNOWN: &str = "already known";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitProgress {
    /// The CPFP node tx of every exit-chain layer, root first.
    layer_txids: Vec<Txid>,
    /// The height each layer confirmed at (or was learned to be on chain at).
    confirmed_at: Vec<Option<u32>>,
    /// The layer broadcast and not yet confirmed nor refused (broadcast again only if refused).
    in_flight: Option<usize>,
    refund_txid: Txid,
    refund_broadcast: bool,
    rebroadcasts: u32,
}

impl ExitProgress {
    fn new(leaf: &WalletLeaf, confirmed_at: Vec<Option<u32>>) -> ExitProgress {
        ExitProgress {
            layer_txids: leaf.exit_layers().map(|l| l.cpfp.compute_txid()).collect(),
            confirmed_at,
            in_flight: None,
            refund_txid: leaf.refunds.cpfp.compute_txid(),
            refund_broadcast: false,
            rebroadcasts: 0,
        }
    }

    /// The first layer not yet confirmed (None: the leaf node is on chain).
    fn next_layer(&self) -> Option<usize> {
        self.confirmed_at.iter().position(Option::is_none)
    }
}

fn layer_tx(ancestors: &[NodeSet], nodes: &NodeSet, layer: usize) -> Option<Transaction> {
    crate::msg::exit_layers(ancestors, nodes).nth(layer).map(|l| l.cpfp.clone())
}

/// CSV blocks of a tx's first input.
fn csv_of(tx: &Transaction) -> u32 {
    tx.input.first().map_or(0, |i| u32::from(timelock::blocks(i.sequence).0))
}

impl Wallet {
    pub(super) fn start_exit(&mut self, ctx: &mut Ctx<'_>) {
        let Some(id) = self.leaves.iter().find(|(_, l)| l.state == LeafState::Available).map(|(id, _)| *id) else {
            return ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: "exit: no available leaf".into() });
        };
        self.start_exit_of(ctx, id);
    }

    /// Unilaterally exit one given leaf (a coop exit that came back, or the SSP's fallback on
    /// its connector refund: wallet/coop_exit.rs, wallet/ssp_coop_exit.rs).
    pub(super) fn start_exit_of(&mut self, ctx: &mut Ctx<'_>, id: LeafId) {
        let Some(leaf) = self.leaves.get_mut(&id).filter(|l| l.state == LeafState::Available) else { return };
        let mut p = ExitProgress::new(leaf, vec![None; leaf.ancestors.len() + 1]);
        // The root spends the confirmed deposit: it goes out at once (CSV 0).
        p.in_flight = Some(0);
        let root = leaf.exit_layers().next().map(|l| l.cpfp.clone());
        leaf.state = LeafState::Exiting(p);
        if let Some(tx) = root {
            self.broadcast_cpfp(ctx, tx);
        }
    }

    pub(super) fn advance_exits(&mut self, ctx: &mut Ctx<'_>, confirmed: &BTreeSet<Txid>) {
        let (me, height) = (self.cfg.id, self.height);
        let early_refund = self.cfg.params.test_faults.broadcast_refund_early;
        // Broadcast after the walk: a fee-bumping child needs the wallet's coins.
        let mut out = Vec::new();
        for (id, leaf) in self.leaves.iter_mut() {
            let LeafState::Exiting(p) = &mut leaf.state else { continue };
            for (layer, txid) in p.layer_txids.iter().enumerate() {
                if confirmed.contains(txid) {
                    p.confirmed_at[layer] = Some(height);
                    if p.in_flight == Some(layer) {
                        p.in_flight = None;
                    }
                    self.chain.record(height, Learned::ExitNode { leaf: *id, layer });
                }
            }
            if confirmed.contains(&p.refund_txid) {
                let layer_heights = p.confirmed_at.clone();
                leaf.state = LeafState::Exited;
                self.chain.record(height, Learned::ExitRefund { leaf: *id, layer_heights });
                ctx.observe(Observation::ExitConfirmed { wallet: me, leaf: *id, value_sats: leaf.value_sats });
                continue;
            }
            match p.next_layer() {
                Some(layer) if p.in_flight.is_none() && p.rebroadcasts < MAX_EXIT_REBROADCASTS => {
                    let Some(tx) = layer_tx(&leaf.ancestors, &leaf.nodes, layer) else { continue };
                    // A layer enters the next block at height + 1: BIP68 counts that block.
                    let parent = if layer == 0 { None } else { p.confirmed_at[layer - 1] };
                    let mature = parent.is_none_or(|h| height + 1 - h >= csv_of(&tx));
                    if mature {
                        p.in_flight = Some(layer);
                        out.push(tx);
                    }
                }
                Some(_) => {}
                None => {
                    let Some(h) = p.confirmed_at.last().copied().flatten() else { continue };
                    let mature = height + 1 - h >= csv_of(&leaf.refunds.cpfp) || early_refund;
                    if !p.refund_broadcast && mature && p.rebroadcasts <= MAX_EXIT_REBROADCASTS {
                        p.refund_broadcast = true;
                        out.push(leaf.refunds.cpfp.clone());
                    }
                }
            }
        }
        for tx in out {
            self.broadcast_cpfp(ctx, tx);
        }
    }

    /// Watchtower and fees flow (race.rs): someone else put this leaf's CPFP node tx on chain;
    /// exit from there (`advance_exits` sees the node tx in the same block and times the refund).
    /// Its ancestors are on chain too (the node tx spends them).
    pub(super) fn exit_from_confirmed_node(&mut self, leaf: LeafId) {
        let height = self.height;
        let Some(l) = self.leaves.get_mut(&leaf) else { return };
        let mut confirmed_at = vec![Some(height); l.ancestors.len()];
        confirmed_at.push(None);
        l.state = LeafState::Exiting(ExitProgress::new(l, confirmed_at));
    }

    /// The mempool refused one of our txs: if it is an exit's, try again at the next block —
    /// unless it is a node layer already on chain, which is then skipped.
    pub(super) fn exit_broadcast_refused(&mut self, txid: &[u8; 32], reason: &str) {
        let height = self.height;
        for leaf in self.leaves.values_mut() {
            let LeafState::Exiting(p) = &mut leaf.state else { continue };
            if let Some(layer) = p.layer_txids.iter().position(|t| t.to_byte_array() == *txid) {
                if p.in_flight == Some(layer) {
                    p.in_flight = None;
                    if reason.contains(ALREADY_KNOWN) {
                        p.confirmed_at[layer].get_or_insert(height);
                    } else {
                        p.rebroadcasts += 1;
                    }
                }
            }
            if p.refund_txid.to_byte_array() == *txid && p.refund_broadcast {
                p.refund_broadcast = false;
                p.rebroadcasts += 1;
            }
        }
    }

    /// A reorg took an exit's node layer off the chain: broadcast it again and wait for it.
    pub(super) fn revert_exit_node(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId, layer: usize) {
        let Some(l) = self.leaves.get_mut(&leaf) else { return };
        let LeafState::Exiting(p) = &mut l.state else { return };
        let Some(slot) = p.confirmed_at.get_mut(layer) else { return };
        *slot = None;
        p.refund_broadcast = false;
        p.in_flight = Some(layer);
        if let Some(tx) = layer_tx(&l.ancestors, &l.nodes, layer) {
            self.broadcast_cpfp(ctx, tx);
        }
    }

    /// A reorg took the exit's refund off the chain: the exit is in progress again. Node layers
    /// stay confirmed if their block (`layer_heights`) is below the fork.
    pub(super) fn revert_exit_refund(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId, layer_heights: &[Option<u32>], fork: u32) {
        let me = self.cfg.id;
        let Some(l) = self.leaves.get_mut(&leaf) else { return };
        if l.state != LeafState::Exited {
            return;
        }
        let kept = (0..=l.ancestors.len()).map(|i| layer_heights.get(i).copied().flatten().filter(|h| *h < fork)).collect();
        l.state = LeafState::Exiting(ExitProgress::new(l, kept));
        ctx.observe(Observation::ExitReorged { wallet: me, leaf });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::BlockInfo;
    use crate::msg::{Msg, RefundSet};
    use crate::node::{Input, Node, Output};
    use crate::params::{Directory, Params};
    use crate::types::{Micros, NodeId, OperatorId, WalletId};
    use crate::wallet::{Command, WalletConfig};
    use bitcoin::{absolute, transaction, Amount, BlockHash, OutPoint, ScriptBuf, Sequence, TxIn, TxOut};
    use rand_core::SeedableRng;
    use std::sync::Arc;

    /// A one-in one-out tx spending `prev`:0 at CSV `csv` (unsigned: the wallet does not verify).
    fn tx(prev: Txid, csv: u16) -> Transaction {
        Transaction {
            version: transaction::Version(3),
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn { previous_output: OutPoint { txid: prev, vout: 0 }, sequence: Sequence::from_height(csv), ..Default::default() }],
            output: vec![TxOut { value: Amount::from_sat(10_000), script_pubkey: ScriptBuf::new() }],
        }
    }

    fn layer(prev: Txid, csv: u16) -> NodeSet {
        NodeSet { cpfp: tx(prev, csv), direct: tx(prev, csv + 50) }
    }

    /// A wallet holding one available leaf whose exit chain is root (CSV 0) → split node (CSV 0)
    /// → leaf node (CSV 100), refund CSV 200: the shape after renew-node on a renewed leaf.
    fn wallet_with_chain() -> (Wallet, Vec<Transaction>) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let identity = crate::crypto::SecretKey::new(&mut rng);
        let l1_key = crate::crypto::SecretKey::new(&mut rng);
        let directory = Arc::new(Directory::default());
        let mut w = Wallet::new(WalletConfig { id: WalletId(0), identity, l1_key, coordinator: OperatorId(0), params: Arc::new(Params::new(3, 2)), directory });
        let root = layer(Txid::from_byte_array([9; 32]), 0);
        let split = layer(root.cpfp.compute_txid(), 0);
        let node = layer(split.cpfp.compute_txid(), 100);
        let r = tx(node.cpfp.compute_txid(), 200);
        let refunds = RefundSet { cpfp: r.clone(), direct: r.clone(), direct_from_cpfp: r.clone() };
        let order = vec![root.cpfp.clone(), split.cpfp.clone(), node.cpfp.clone(), r];
        let leaf = WalletLeaf {
            signing_secret: identity,
            value_sats: 10_000,
            verifying_key: identity.public_key(crate::crypto::secp()),
            deposit_outpoint: root.cpfp.input[0].previous_output,
            nodes: node,
            refunds,
            state: LeafState::Available,
            ancestors: vec![root, split],
        };
        w.leaves.insert(LeafId([1; 16]), leaf);
        (w, order)
    }

    fn step(w: &mut Wallet, input: Input) -> Vec<Transaction> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut ctx = Ctx::new(Micros::ZERO, NodeId::Wallet(WalletId(0)), &mut rng);
        w.handle(&mut ctx, input);
        ctx.into_outputs().into_iter().filter_map(|o| if let Output::Broadcast(t) = o { Some(t) } else { None }).collect()
    }

    fn block(height: u32, txs: Vec<Transaction>) -> Input {
        let hash = |h: u32| BlockHash::from_byte_array([h as u8; 32]);
        Input::Block(Arc::new(BlockInfo { height, hash: hash(height), parent: hash(height - 1), time: Micros::ZERO, txs }))
    }

    /// spark-protocol §4.6: every layer in order, each after its parent confirmed and its own
    /// CSV passed, then the refund after the leaf node's CSV — and nothing early.
    #[test]
    fn exit_broadcasts_every_layer_in_order_waiting_each_csv() {
        let (mut w, order) = wallet_with_chain();
        assert_eq!(step(&mut w, Input::Command(Command::Exit)), vec![order[0].clone()]);
        // Root confirms at 1: the split node (CSV 0) goes out at once.
        assert_eq!(step(&mut w, block(1, vec![order[0].clone()])), vec![order[1].clone()]);
        // Split confirms at 2: the leaf node (CSV 100) waits until its block would be 2 + 99.
        assert!(step(&mut w, block(2, vec![order[1].clone()])).is_empty());
        for h in 3..101 {
            assert!(step(&mut w, block(h, vec![])).is_empty(), "broadcast early at {h}");
        }
        assert_eq!(step(&mut w, block(101, vec![])), vec![order[2].clone()]);
        assert!(step(&mut w, block(102, vec![order[2].clone()])).is_empty());
        for h in 103..301 {
            assert!(step(&mut w, block(h, vec![])).is_empty(), "refund early at {h}");
        }
        assert_eq!(step(&mut w, block(301, vec![])), vec![order[3].clone()]);
        step(&mut w, block(302, vec![order[3].clone()]));
        assert_eq!(w.leaves[&LeafId([1; 16])].state, LeafState::Exited);
    }

    /// A layer already on chain (the mempool says "already known") is skipped; a layer the
    /// mempool refused for another reason is broadcast again at the next block.
    #[test]
    fn exit_skips_a_layer_already_on_chain_and_retries_a_refused_one() {
        let (mut w, order) = wallet_with_chain();
        step(&mut w, Input::Command(Command::Exit));
        let refuse = |t: &Transaction, reason: &str| Input::Message { from: NodeId::Chain, msg: Msg::BroadcastResult { txid: t.compute_txid().to_byte_array(), result: Err(reason.into()) } };
        assert!(step(&mut w, refuse(&order[0], "transaction x already known")).is_empty());
        // Known at height 0: the split node goes out with the next block.
        assert_eq!(step(&mut w, block(1, vec![])), vec![order[1].clone()]);
        assert!(step(&mut w, refuse(&order[1], "feerate too low")).is_empty());
        assert_eq!(step(&mut w, block(2, vec![])), vec![order[1].clone()]);
    }
}
