//! The deterministic event engine: virtual time, a priority queue of events ordered by
//! (time, sequence number), crash/restart, block production and the trace hash.
//!
//! The engine owns the protocol nodes (pure state machines, see `reference_node::node`), the
//! network model and the L1. It pops one event at a time, feeds it to the node it concerns,
//! turns the node's outputs into new events, and folds everything into the trace hash. Nothing
//! in here reads a clock or the OS's entropy, and every collection iterates in a fixed order.
//!
//! Process faults (see `faults` in the scenario language):
//! - a crash between events (`schedule_crash`): volatile state is lost, the durable store is
//!   kept; timers armed before it never fire.
//! - a crash in the middle of a handler (`schedule_mid_handler_crash`): the crash is armed at
//!   a time and lands in the next handler the node runs (any input, `Start` of a recovery
//!   included: arming it while the node is down crashes the recovery). The handler runs, but
//!   only a prefix of its outputs (given, or drawn from the "faults/crash-point" stream) leaves
//!   the process; the rest dies with it. The durability model is `Node::mark_synced`'s: a
//!   handler's store writes are synced when it completes, so a plain mid-handler crash keeps
//!   them (the commit returned, the process died while sending), and a `lose_unsynced` one
//!   loses them (the crash came before the commit was durable, after some outputs were already
//!   out: Spark's operators make their gRPC calls inside an open database transaction). Both
//!   are what a Postgres-backed operator with default settings can live through.
//!
//! Clocks: each node may have a [`Clock`] (skew, drift). Its handlers see `Ctx::now` on that
//! clock, and timers it arms run on it (converted to global time here), so expiry, background
//! tasks and timeouts all follow the node's own clock.

use crate::clock::Clock;
use crate::net::{
    DropReason, NetConfig, Network, PartitionWindow, Route, SlowWindow, CHAIN_LATENCY,
};
use crate::rng;
use crate::trace::{Digester, EventDigest, EventTag, Hash32, Trace};
use bitcoin::hashes::Hash as _;
use bitcoin::{Transaction, Txid};
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use reference_node::chain::{BlockInfo, Chain, ChainReject, ReorgError, ReorgOutcome, ReorgTxs};
use reference_node::msg::Msg;
use reference_node::node::{Ctx, Input, Node, Output, TimerKind};
use reference_node::observe::Observation;
use reference_node::types::{Micros, NodeId, WalletId};
use reference_node::wallet::Command;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

/// What the engine needs from the L1 model: the narrow waist between the engine and
/// `reference_node::chain::Chain`, so engine tests can run on a fake chain.
pub trait L1 {
    /// Mempool acceptance.
    fn submit(&mut self, tx: Transaction) -> Result<Txid, ChainReject>;
    /// Mines every mempool transaction into the next block.
    fn mine_block(&mut self, time: Micros) -> BlockInfo;
    /// The height of the tip.
    fn height(&self) -> u32;
    /// L1 fault: replace the last `depth` blocks (see `chain::reorg`). A chain model without
    /// reorgs refuses.
    fn reorg(&mut self, depth: u32, _txs: ReorgTxs, _time: Micros) -> Result<ReorgOutcome, ReorgError> {
        Err(ReorgError::DeeperThanUndo { depth })
    }
    /// L1 fault: the mempool's minimum feerate (sat/vB); a chain model without fees ignores it.
    fn set_min_feerate(&mut self, _sat_per_vb: u64) {}
    /// The mempool's minimum feerate (sat/vB).
    fn min_feerate(&self) -> u64 {
        0
    }
    /// Package relay (watchtower and fees flow); a chain model without packages refuses.
    fn submit_package(&mut self, _txs: Vec<Transaction>) -> Result<Vec<Txid>, ChainReject> {
        Err(ChainReject::Package("this chain model does not relay packages".into()))
    }
}

impl L1 for Chain {
    fn submit(&mut self, tx: Transaction) -> Result<Txid, ChainReject> {
        Chain::submit(self, tx)
    }
    fn mine_block(&mut self, time: Micros) -> BlockInfo {
        Chain::mine_block(self, time)
    }
    fn height(&self) -> u32 {
        Chain::height(self)
    }
    fn reorg(&mut self, depth: u32, txs: ReorgTxs, time: Micros) -> Result<ReorgOutcome, ReorgError> {
        Chain::reorg(self, depth, txs, time)
    }
    fn set_min_feerate(&mut self, sat_per_vb: u64) {
        Chain::set_min_feerate(self, sat_per_vb)
    }
    fn min_feerate(&self) -> u64 {
        Chain::min_feerate(self)
    }
    fn submit_package(&mut self, txs: Vec<Transaction>) -> Result<Vec<Txid>, ChainReject> {
        Chain::submit_package(self, txs)
    }
}

/// An L1 fault the engine applies at its scheduled time (built from a scenario by `l1faults`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainFault {
    /// Replace the last `depth` blocks by `depth + 1` empty ones; nodes see the new branch.
    Reorg { depth: u32, txs: ReorgTxs },
    /// The mempool's minimum feerate is at least `sat_per_vb` until `until`. Overlapping spikes
    /// compose: the floor is the highest active one, or the chain's own floor when none is.
    FeeSpike { sat_per_vb: u64, until: Micros },
    /// A spike's window closed: recompute the floor (scheduled by `FeeSpike` itself).
    FeeSpikeEnd,
    /// No block is mined before `until`: a block that falls due waits for it.
    StallUntil(Micros),
}

/// How a run is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub net: NetConfig,
    /// Mean of the exponential interval between blocks; `None` disables block production.
    pub block_interval: Option<Micros>,
    /// Keep the per-event digest log (for `check-determinism`); costs memory per event.
    pub keep_digest_log: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            net: NetConfig::default(),
            block_interval: Some(Micros::from_secs(600)),
            keep_digest_log: false,
        }
    }
}

/// Running totals over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub events: u64,
    /// Every `Output::Send`, whatever its fate.
    pub messages_sent: u64,
    pub messages_delivered: u64,
    pub dropped_loss: u64,
    pub dropped_partition: u64,
    /// Arrived at a node that was down.
    pub dropped_down: u64,
    /// Addressed to a node that is not part of the run.
    pub dropped_unroutable: u64,
    pub timers_fired: u64,
    /// Timers that were due on a down node or armed in an earlier incarnation.
    pub timers_discarded: u64,
    pub blocks_mined: u64,
    /// `Input::Block` deliveries (catch-up deliveries included).
    pub blocks_delivered: u64,
    pub txs_submitted: u64,
    pub txs_rejected: u64,
    pub commands_delivered: u64,
    /// Commands for a wallet that was down or absent.
    pub commands_dropped: u64,
    /// Messages the network delivered twice (each copy also counts in `messages_delivered`).
    pub messages_duplicated: u64,
    /// Crashes that landed inside a handler.
    pub crashes_mid_handler: u64,
    /// Outputs of a crashed handler that never left the process.
    pub outputs_lost: u64,
}

impl Counters {
    /// Every message that did not arrive, for any reason.
    pub fn messages_dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_partition + self.dropped_down + self.dropped_unroutable
    }
}

/// The result of one [`Engine::step`].
#[derive(Clone, Debug)]
pub struct StepRecord {
    /// 0-based index of the event in the run.
    pub index: u64,
    pub time: Micros,
    /// The node the event was about, if any.
    pub node: Option<NodeId>,
    /// E.g. `deliver operator:0 -> wallet:1 Ping`.
    pub description: String,
    /// What the node's handlers reported while processing this event, in order.
    pub observations: Vec<Observation>,
    /// This event's digest (see `trace`).
    pub digest: Hash32,
}

#[derive(Debug)]
enum Event {
    Start(NodeId),
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: Msg,
    },
    Timer {
        node: NodeId,
        timer: TimerKind,
        incarnation: u64,
    },
    Crash(NodeId),
    Restart(NodeId),
    Block,
    /// Tell `node` about every block up to the `upto`-th one mined in this run.
    BlockNotify {
        node: NodeId,
        upto: usize,
    },
    ChainSubmit {
        from: NodeId,
        tx: Transaction,
    },
    /// Watchtower and fees flow: `submitpackage` from `from`.
    ChainSubmitPackage {
        from: NodeId,
        txs: Vec<Transaction>,
    },
    Command {
        wallet: WalletId,
        cmd: Command,
    },
    PartitionStart(usize),
    PartitionEnd(usize),
    /// Arms a crash that lands inside `node`'s next handler.
    ArmCrash {
        node: NodeId,
        crash: MidHandlerCrash,
    },
    Chain(ChainFault),
}

/// A crash that lands inside a handler (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MidHandlerCrash {
    /// How many of the handler's outputs leave before the crash; `None`: drawn uniformly in
    /// `0..=outputs` from the "faults/crash-point" stream.
    pub after_outputs: Option<u32>,
    /// The handler's store writes are lost too (the crash came before they were synced).
    pub lose_unsynced: bool,
    /// Restart this long after the crash lands; `None`: stays down.
    pub restart_after: Option<Micros>,
}

/// Stream name for the crash points of mid-handler crashes.
pub const CRASH_POINT_STREAM: &str = "faults/crash-point";

struct Queued {
    time: Micros,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.time, self.seq).cmp(&(other.time, other.seq))
    }
}

struct Slot<N> {
    node: N,
    /// The process's entropy: persists across crash and restart.
    rng: ChaCha20Rng,
    up: bool,
    /// Bumped on every crash; a timer fires only in the incarnation that armed it.
    incarnation: u64,
    /// How many of the run's blocks this node has been given (`Input::Block`).
    blocks_delivered: usize,
}

/// What the handlers invoked for one event produced.
#[derive(Default)]
struct Effects {
    outputs: Digester,
    observations: Vec<Observation>,
    /// Said about the event in its description (e.g. a crash that landed in a handler).
    notes: Vec<String>,
}

/// The simulation: nodes of type `N`, an L1 of type `C`, the network and the event queue.
pub struct Engine<N: Node, C: L1> {
    seed: u64,
    now: Micros,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    nodes: BTreeMap<NodeId, Slot<N>>,
    net: Network,
    chain: C,
    chain_rng: ChaCha20Rng,
    block_interval: Option<Micros>,
    blocks: Vec<Arc<BlockInfo>>,
    /// Block production waits until then (an L1 `block_delay` fault).
    stall_until: Micros,
    /// Active fee spikes (until, sat/vB) and the chain's floor before the first one.
    fee_spikes: Vec<(Micros, u64)>,
    fee_base: Option<u64>,
    trace: Trace,
    counters: Counters,
    /// Nodes whose clock is not global time.
    clocks: BTreeMap<NodeId, Clock>,
    /// Crashes armed to land in the node's next handler.
    armed: BTreeMap<NodeId, MidHandlerCrash>,
    crash_rng: ChaCha20Rng,
}

impl<N: Node, C: L1> Engine<N, C> {
    /// A new run. With block production on, the first block is due after one exponential
    /// interval drawn from the "chain" stream.
    pub fn new(seed: u64, config: EngineConfig, chain: C) -> Self {
        let mut e = Engine {
            seed,
            now: Micros::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: BTreeMap::new(),
            net: Network::with_seed(config.net, rng::stream(seed, rng::NETWORK), seed),
            chain,
            chain_rng: rng::stream(seed, rng::CHAIN),
            block_interval: config.block_interval,
            blocks: Vec::new(),
            stall_until: Micros::ZERO,
            fee_spikes: Vec::new(),
            fee_base: None,
            trace: Trace::new(config.keep_digest_log),
            counters: Counters::default(),
            clocks: BTreeMap::new(),
            armed: BTreeMap::new(),
            crash_rng: rng::stream(seed, CRASH_POINT_STREAM),
        };
        e.schedule_next_block();
        e
    }

    /// Registers a node (up, with its own RNG stream `node/<id>`) and schedules its
    /// `Input::Start` now (t=0 before the run begins).
    pub fn add_node(&mut self, id: NodeId, node: N) {
        debug_assert!(id != NodeId::Chain, "the chain endpoint is not a node");
        debug_assert!(!self.nodes.contains_key(&id), "node {id} added twice");
        let slot = Slot {
            node,
            rng: rng::node_stream(self.seed, id),
            up: true,
            incarnation: 0,
            blocks_delivered: 0,
        };
        self.nodes.insert(id, slot);
        self.push(self.now, Event::Start(id));
    }

    /// A workload instruction for `wallet` at time `at`.
    pub fn schedule_command(&mut self, at: Micros, wallet: WalletId, cmd: Command) {
        self.push(at, Event::Command { wallet, cmd });
    }

    /// `node` crashes at `at` (no-op if it is already down then).
    pub fn schedule_crash(&mut self, at: Micros, node: NodeId) {
        self.push(at, Event::Crash(node));
    }

    /// `node` restarts at `at` (no-op if it is up then).
    pub fn schedule_restart(&mut self, at: Micros, node: NodeId) {
        self.push(at, Event::Restart(node));
    }

    /// Arms, at `at`, a crash that lands inside `node`'s next handler (see the module comment).
    /// A later arming replaces an earlier one that has not landed yet.
    pub fn schedule_mid_handler_crash(&mut self, at: Micros, node: NodeId, crash: MidHandlerCrash) {
        self.push(at, Event::ArmCrash { node, crash });
    }

    /// Gives `node` its own clock (from the start of the run; set before stepping).
    pub fn set_clock(&mut self, node: NodeId, clock: Clock) {
        if clock.is_identity() {
            self.clocks.remove(&node);
        } else {
            self.clocks.insert(node, clock);
        }
    }

    /// `node`'s clock (the identity unless set).
    pub fn clock(&self, node: NodeId) -> Clock {
        self.clocks.get(&node).copied().unwrap_or_default()
    }

    /// Makes a node slow for a while (see [`SlowWindow`]).
    pub fn add_slow(&mut self, window: SlowWindow) {
        self.net.add_slow(window);
    }

    /// Adds a partition window; its start and end appear in the trace as marker events.
    pub fn add_partition(&mut self, window: PartitionWindow) {
        let (from, until) = (window.from, window.until);
        let index = self.net.add_partition(window);
        self.push(from, Event::PartitionStart(index));
        self.push(until, Event::PartitionEnd(index));
    }

    /// An L1 fault at `at` (see [`ChainFault`]).
    pub fn schedule_chain_fault(&mut self, at: Micros, fault: ChainFault) {
        self.push(at, Event::Chain(fault));
    }

    /// Pops and processes the next event; `None` when the queue is empty.
    pub fn step(&mut self) -> Option<StepRecord> {
        let Reverse(q) = self.queue.pop()?;
        debug_assert!(
            q.time >= self.now,
            "time went backwards: {} < {}",
            q.time,
            self.now
        );
        self.now = q.time;
        let index = self.counters.events;
        self.counters.events += 1;
        let mut fx = Effects::default();
        let mut payload = Digester::new();
        let (tag, nodes, mut description) = self.process(q.event, &mut payload, &mut fx);
        for note in &fx.notes {
            description.push_str(" [");
            description.push_str(note);
            description.push(']');
        }
        let outputs = fx.outputs.finish();
        let digest = self.trace.record(
            index,
            self.now,
            tag,
            &nodes,
            &payload.finish(),
            &outputs,
            &description,
        );
        Some(StepRecord {
            index,
            time: self.now,
            node: subject(tag, &nodes),
            description,
            observations: fx.observations,
            digest,
        })
    }

    /// Processes every event due at or before `until`, then advances the clock to `until`.
    /// Returns how many events were processed.
    pub fn run_until(&mut self, until: Micros) -> u64 {
        self.run_until_with(until, |_, _| {})
    }

    /// Like [`Engine::run_until`], calling `after_each` after every event (the checker's hook).
    pub fn run_until_with(
        &mut self,
        until: Micros,
        mut after_each: impl FnMut(&Self, &StepRecord),
    ) -> u64 {
        let mut n = 0;
        while self.peek_time().is_some_and(|t| t <= until) {
            let Some(rec) = self.step() else { break };
            after_each(self, &rec);
            n += 1;
        }
        self.now = self.now.max(until);
        n
    }

    /// The time of the next queued event.
    pub fn peek_time(&self) -> Option<Micros> {
        self.queue.peek().map(|Reverse(q)| q.time)
    }

    pub fn now(&self) -> Micros {
        self.now
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The hash over every event processed so far.
    pub fn trace_hash(&self) -> Hash32 {
        self.trace.hash()
    }

    /// The per-event digest log, if [`EngineConfig::keep_digest_log`] was set.
    pub fn digest_log(&self) -> Option<&[EventDigest]> {
        self.trace.log()
    }

    /// Every node, in `NodeId` order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &N)> {
        self.nodes.iter().map(|(id, s)| (*id, &s.node))
    }

    pub fn node(&self, id: NodeId) -> Option<&N> {
        self.nodes.get(&id).map(|s| &s.node)
    }

    /// Mutable access for test harnesses and Byzantine wrappers set up between steps.
    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut N> {
        self.nodes.get_mut(&id).map(|s| &mut s.node)
    }

    pub fn chain(&self) -> &C {
        &self.chain
    }

    pub fn chain_mut(&mut self) -> &mut C {
        &mut self.chain
    }

    /// Every block mined in this run, in order.
    pub fn blocks(&self) -> &[Arc<BlockInfo>] {
        &self.blocks
    }

    /// Whether `id` is a node of this run and currently up.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|s| s.up)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    fn push(&mut self, time: Micros, event: Event) {
        let seq = self.seq;
        self.seq += 1;
        self.queue.push(Reverse(Queued { time, seq, event }));
    }

    fn schedule_next_block(&mut self) {
        if let Some(mean) = self.block_interval {
            // At least 1 µs so that two blocks never share an instant.
            let gap = rng::exponential_micros(&mut self.chain_rng, mean).max(Micros(1));
            self.push(self.now + gap, Event::Block);
        }
    }

    /// Runs one event; returns its trace tag, the nodes involved and a description.
    fn process(
        &mut self,
        event: Event,
        payload: &mut Digester,
        fx: &mut Effects,
    ) -> (EventTag, Vec<NodeId>, String) {
        match event {
            Event::Start(id) => {
                self.invoke(id, Input::Start, fx);
                self.catch_up(id, self.blocks.len(), fx);
                (EventTag::Start, vec![id], format!("start {id}"))
            }
            Event::Deliver { from, to, msg } => {
                payload.value(&msg);
                let desc = format!("deliver {from} -> {to} {}", msg.kind());
                if self.is_up(to) {
                    self.counters.messages_delivered += 1;
                    self.invoke(to, Input::Message { from, msg }, fx);
                    (EventTag::Deliver, vec![from, to], desc)
                } else {
                    self.counters.dropped_down += 1;
                    (
                        EventTag::Deliver,
                        vec![from, to],
                        format!("{desc} (dropped: {to} down)"),
                    )
                }
            }
            Event::Timer {
                node,
                timer,
                incarnation,
            } => {
                payload.value(&timer);
                payload.bytes(&incarnation.to_le_bytes());
                let desc = format!("timer {node} {timer:?}");
                let live = self
                    .nodes
                    .get(&node)
                    .is_some_and(|s| s.up && s.incarnation == incarnation);
                if live {
                    self.counters.timers_fired += 1;
                    self.invoke(node, Input::Timer(timer), fx);
                    (EventTag::Timer, vec![node], desc)
                } else {
                    self.counters.timers_discarded += 1;
                    (EventTag::Timer, vec![node], format!("{desc} (discarded)"))
                }
            }
            Event::ArmCrash { node, crash } => {
                payload.value(&crash);
                let desc = if self.nodes.contains_key(&node) {
                    self.armed.insert(node, crash);
                    format!("crash {node} armed for its next handler")
                } else {
                    format!("crash {node} armed (ignored: no such node)")
                };
                (EventTag::Crash, vec![node], desc)
            }
            Event::Crash(id) => {
                let desc = match self.nodes.get_mut(&id) {
                    Some(slot) if slot.up => {
                        slot.node.crash();
                        slot.up = false;
                        slot.incarnation += 1;
                        format!("crash {id}")
                    }
                    Some(_) => format!("crash {id} (ignored: already down)"),
                    None => format!("crash {id} (ignored: no such node)"),
                };
                (EventTag::Crash, vec![id], desc)
            }
            Event::Restart(id) => {
                let desc = match self.nodes.get_mut(&id) {
                    Some(slot) if !slot.up => {
                        slot.up = true;
                        self.invoke(id, Input::Start, fx);
                        self.catch_up(id, self.blocks.len(), fx);
                        format!("restart {id}")
                    }
                    Some(_) => format!("restart {id} (ignored: already up)"),
                    None => format!("restart {id} (ignored: no such node)"),
                };
                (EventTag::Restart, vec![id], desc)
            }
            Event::Block => self.mine(payload),
            Event::Chain(fault) => self.chain_fault(fault, payload),
            Event::BlockNotify { node, upto } => {
                payload.bytes(&(upto as u64).to_le_bytes());
                let desc = if self.is_up(node) {
                    self.catch_up(node, upto, fx);
                    format!("blocks -> {node} up to #{upto}")
                } else {
                    format!("blocks -> {node} up to #{upto} (skipped: {node} down)")
                };
                (EventTag::BlockNotify, vec![NodeId::Chain, node], desc)
            }
            Event::ChainSubmit { from, tx } => {
                payload.bytes(&bitcoin::consensus::encode::serialize(&tx));
                let txid = tx.compute_txid();
                self.counters.txs_submitted += 1;
                let result = self.chain.submit(tx).map(|_| ()).map_err(|e| e.to_string());
                payload.value(&result);
                if result.is_err() {
                    self.counters.txs_rejected += 1;
                }
                let desc = match &result {
                    Ok(()) => format!("submit {from} tx {txid}: accepted"),
                    Err(e) => format!("submit {from} tx {txid}: rejected: {e}"),
                };
                let msg = Msg::BroadcastResult {
                    txid: txid.to_byte_array(),
                    result,
                };
                self.push(
                    self.now + CHAIN_LATENCY,
                    Event::Deliver {
                        from: NodeId::Chain,
                        to: from,
                        msg,
                    },
                );
                (EventTag::ChainSubmit, vec![from, NodeId::Chain], desc)
            }
            Event::ChainSubmitPackage { from, txs } => {
                payload.bytes(b"package");
                for tx in &txs {
                    payload.bytes(&bitcoin::consensus::encode::serialize(tx));
                }
                let txids: Vec<Txid> = txs.iter().map(|t| t.compute_txid()).collect();
                self.counters.txs_submitted += txids.len() as u64;
                let result = self.chain.submit_package(txs).map(|_| ()).map_err(|e| e.to_string());
                payload.value(&result);
                if result.is_err() {
                    self.counters.txs_rejected += txids.len() as u64;
                }
                let names: Vec<String> = txids.iter().map(|t| t.to_string()).collect();
                let desc = match &result {
                    Ok(()) => format!("submit {from} package [{}]: accepted", names.join(", ")),
                    Err(e) => format!("submit {from} package [{}]: rejected: {e}", names.join(", ")),
                };
                for txid in txids {
                    let msg = Msg::BroadcastResult { txid: txid.to_byte_array(), result: result.clone() };
                    self.push(self.now + CHAIN_LATENCY, Event::Deliver { from: NodeId::Chain, to: from, msg });
                }
                (EventTag::ChainSubmit, vec![from, NodeId::Chain], desc)
            }
            Event::Command { wallet, cmd } => {
                payload.value(&cmd);
                let id = NodeId::Wallet(wallet);
                let desc = format!("command {id} {cmd:?}");
                if self.is_up(id) {
                    self.counters.commands_delivered += 1;
                    self.invoke(id, Input::Command(cmd), fx);
                    (EventTag::Command, vec![id], desc)
                } else {
                    self.counters.commands_dropped += 1;
                    (
                        EventTag::Command,
                        vec![id],
                        format!("{desc} (dropped: {id} down or absent)"),
                    )
                }
            }
            Event::PartitionStart(i) | Event::PartitionEnd(i) => {
                payload.bytes(&(i as u64).to_le_bytes());
                let start = matches!(event, Event::PartitionStart(_));
                let groups = self
                    .net
                    .partitions()
                    .get(i)
                    .map(describe_groups)
                    .unwrap_or_default();
                let (tag, word) = if start {
                    (EventTag::PartitionStart, "start")
                } else {
                    (EventTag::PartitionEnd, "end")
                };
                (tag, vec![], format!("partition #{i} {word}: {groups}"))
            }
        }
    }

    /// Mines one block, notifies every node after the chain latency, schedules the next one.
    fn mine(&mut self, payload: &mut Digester) -> (EventTag, Vec<NodeId>, String) {
        if self.now < self.stall_until {
            // Delayed, not skipped: the block comes when the stall ends (no new interval draw).
            payload.bytes(b"stalled");
            self.push(self.stall_until, Event::Block);
            return (EventTag::Block, vec![NodeId::Chain], format!("block delayed until {}", self.stall_until));
        }
        let info = Arc::new(self.chain.mine_block(self.now));
        payload.bytes(&info.height.to_le_bytes());
        payload.bytes(&info.time.0.to_le_bytes());
        for tx in &info.txs {
            payload.bytes(&tx.compute_txid().to_byte_array());
        }
        let desc = format!("block {} ({} txs)", info.height, info.txs.len());
        self.blocks.push(info);
        self.counters.blocks_mined += 1;
        let upto = self.blocks.len();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for node in ids {
            self.push(self.now + CHAIN_LATENCY, Event::BlockNotify { node, upto });
        }
        self.schedule_next_block();
        (EventTag::Block, vec![NodeId::Chain], desc)
    }

    /// Applies an L1 fault. A reorg's replacement blocks join the run's block log, so every node
    /// (and a node restarting later) sees the old tip, then the new branch, in order.
    fn chain_fault(&mut self, fault: ChainFault, payload: &mut Digester) -> (EventTag, Vec<NodeId>, String) {
        payload.bytes(b"l1 fault");
        let desc = match fault {
            ChainFault::FeeSpike { sat_per_vb, until } => {
                payload.bytes(&sat_per_vb.to_le_bytes());
                payload.bytes(&until.0.to_le_bytes());
                let base = *self.fee_base.get_or_insert(self.chain.min_feerate());
                self.fee_spikes.push((until, sat_per_vb));
                self.push(until, Event::Chain(ChainFault::FeeSpikeEnd));
                let floor = self.fee_spikes.iter().map(|(_, r)| *r).fold(base, u64::max);
                self.chain.set_min_feerate(floor);
                format!("fee spike: floor {floor} sat/vB until {until}")
            }
            ChainFault::FeeSpikeEnd => {
                let now = self.now;
                self.fee_spikes.retain(|(until, _)| *until > now);
                let base = self.fee_base.unwrap_or(0);
                let floor = self.fee_spikes.iter().map(|(_, r)| *r).fold(base, u64::max);
                payload.bytes(&floor.to_le_bytes());
                self.chain.set_min_feerate(floor);
                format!("fee spike over: floor {floor} sat/vB")
            }
            ChainFault::StallUntil(until) => {
                payload.bytes(&until.0.to_le_bytes());
                self.stall_until = self.stall_until.max(until);
                format!("blocks stalled until {until}")
            }
            ChainFault::Reorg { depth, txs } => {
                payload.bytes(&depth.to_le_bytes());
                payload.value(&txs);
                match self.chain.reorg(depth, txs, self.now) {
                    Ok(out) => {
                        for b in &out.blocks {
                            payload.bytes(&b.height.to_le_bytes());
                            payload.bytes(&b.hash.to_byte_array());
                        }
                        let desc = format!(
                            "reorg depth {depth} ({txs:?}) from height {}: {} txs out, {} back in the mempool, {} dropped",
                            out.fork_height,
                            out.reorged_out.len(),
                            out.readmitted.len(),
                            out.dropped.len()
                        );
                        self.counters.blocks_mined += out.blocks.len() as u64;
                        self.blocks.extend(out.blocks.into_iter().map(Arc::new));
                        let upto = self.blocks.len();
                        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
                        for node in ids {
                            self.push(self.now + CHAIN_LATENCY, Event::BlockNotify { node, upto });
                        }
                        desc
                    }
                    Err(e) => format!("reorg depth {depth} skipped: {e}"),
                }
            }
        };
        (EventTag::Block, vec![NodeId::Chain], desc)
    }

    /// Gives `id` every block it has not seen, up to the `upto`-th, in order.
    fn catch_up(&mut self, id: NodeId, upto: usize, fx: &mut Effects) {
        loop {
            let Some(slot) = self.nodes.get_mut(&id) else {
                return;
            };
            if slot.blocks_delivered >= upto || !slot.up {
                return;
            }
            let Some(block) = self.blocks.get(slot.blocks_delivered).cloned() else {
                return;
            };
            slot.blocks_delivered += 1;
            self.counters.blocks_delivered += 1;
            self.invoke(id, Input::Block(block), fx);
        }
    }

    /// Calls the node's handler and turns its outputs into events; if a crash is armed for
    /// the node, only a prefix of them gets out and the node goes down.
    fn invoke(&mut self, id: NodeId, input: Input, fx: &mut Effects) {
        let local_now = self.clock(id).local(self.now);
        let armed = self.armed.remove(&id);
        let Some(slot) = self.nodes.get_mut(&id) else {
            return;
        };
        if armed.is_some_and(|c| c.lose_unsynced) {
            slot.node.mark_synced();
        }
        let mut ctx = Ctx::new(local_now, id, &mut slot.rng);
        slot.node.handle(&mut ctx, input);
        let outputs = ctx.into_outputs();
        let Some(crash) = armed else {
            for out in outputs {
                self.apply(id, out, fx);
            }
            return;
        };
        let total = outputs.len();
        let keep = match crash.after_outputs {
            Some(k) => (k as usize).min(total),
            None => rng::scale(self.crash_rng.next_u64(), total as u64) as usize,
        };
        for out in outputs.into_iter().take(keep) {
            self.apply(id, out, fx);
        }
        fx.outputs.bytes(&[5]);
        fx.outputs.bytes(&(keep as u64).to_le_bytes());
        fx.outputs.bytes(&[u8::from(crash.lose_unsynced)]);
        self.counters.crashes_mid_handler += 1;
        self.counters.outputs_lost += (total - keep) as u64;
        if let Some(slot) = self.nodes.get_mut(&id) {
            if crash.lose_unsynced {
                slot.node.crash_losing_unsynced();
            } else {
                slot.node.crash();
            }
            slot.up = false;
            slot.incarnation += 1;
        }
        if let Some(after) = crash.restart_after {
            self.push(self.now + after, Event::Restart(id));
        }
        fx.notes.push(format!(
            "crash {id} mid-handler after {keep} of {total} outputs{}",
            if crash.lose_unsynced { ", unsynced writes lost" } else { "" }
        ));
    }

    fn apply(&mut self, me: NodeId, out: Output, fx: &mut Effects) {
        let d = &mut fx.outputs;
        match out {
            Output::Send { to, msg } => {
                d.bytes(&[1]);
                d.value(&to);
                d.value(&msg);
                self.counters.messages_sent += 1;
                if to == NodeId::Chain || !self.nodes.contains_key(&to) {
                    self.counters.dropped_unroutable += 1;
                    d.bytes(&[0xff]);
                    return;
                }
                let route = self.net.route(self.now, me, to);
                d.value(&route);
                match route {
                    Route::Deliver(delay) => {
                        self.push(self.now + delay, Event::Deliver { from: me, to, msg })
                    }
                    Route::DeliverTwice(first, second) => {
                        self.counters.messages_duplicated += 1;
                        let copy = msg.clone();
                        self.push(self.now + first, Event::Deliver { from: me, to, msg });
                        self.push(self.now + second, Event::Deliver { from: me, to, msg: copy });
                    }
                    Route::Dropped(DropReason::Loss) => self.counters.dropped_loss += 1,
                    Route::Dropped(DropReason::Partition) => self.counters.dropped_partition += 1,
                }
            }
            Output::SetTimer { after, timer } => {
                d.bytes(&[2]);
                d.bytes(&after.0.to_le_bytes());
                d.value(&timer);
                let incarnation = self.nodes.get(&me).map_or(0, |s| s.incarnation);
                // `after` is on the node's own clock.
                let global_after = self.clock(me).global_delay(after);
                self.push(
                    self.now + global_after,
                    Event::Timer {
                        node: me,
                        timer,
                        incarnation,
                    },
                );
            }
            Output::Broadcast(tx) => {
                d.bytes(&[3]);
                d.bytes(&bitcoin::consensus::encode::serialize(&tx));
                self.push(
                    self.now + CHAIN_LATENCY,
                    Event::ChainSubmit { from: me, tx },
                );
            }
            Output::Observe(obs) => {
                d.bytes(&[4]);
                d.value(&obs);
                fx.observations.push(obs);
            }
            Output::BroadcastPackage(txs) => {
                d.bytes(&[5]);
                for tx in &txs {
                    d.bytes(&bitcoin::consensus::encode::serialize(tx));
                }
                self.push(self.now + CHAIN_LATENCY, Event::ChainSubmitPackage { from: me, txs });
            }
        }
    }
}

/// The node whose handler an event concerns: the receiver of a delivery or block notification,
/// the submitter of a transaction, otherwise the event's only node.
fn subject(tag: EventTag, nodes: &[NodeId]) -> Option<NodeId> {
    let i = match tag {
        EventTag::Deliver | EventTag::BlockNotify => 1,
        _ => 0,
    };
    nodes.get(i).copied().filter(|n| *n != NodeId::Chain)
}

fn describe_groups(w: &PartitionWindow) -> String {
    let mut parts: Vec<String> = w
        .groups
        .iter()
        .map(|g| {
            format!(
                "[{}]",
                g.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
        .collect();
    if w.direction == crate::net::Direction::OneWay {
        // Group 0's messages to group 1 (or the rest) are lost.
        let to = parts.get(1).cloned().unwrap_or_else(|| "[rest]".to_owned());
        return format!("{} -/-> {to}", parts.first().cloned().unwrap_or_default());
    }
    parts.push("rest".to_owned());
    parts.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Latency, LinkConfig};
    use crate::trace::first_divergence;
    use bitcoin::absolute::LockTime;
    use bitcoin::transaction::Version;
    use reference_node::types::OperatorId;
    use std::collections::BTreeSet;

    const A: NodeId = NodeId::Operator(OperatorId(0));
    const B: NodeId = NodeId::Operator(OperatorId(1));
    const W: NodeId = NodeId::Wallet(WalletId(0));

    /// How a [`TestNode`] behaves.
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        /// Ping-pong with the peer until `limit`, plus a periodic timer.
        PingPong { limit: u64 },
        /// Sends one ping per entry of a `HashMap`, in its (per-instance random) order.
        HashMapOrder,
        /// Broadcasts a transaction on every command.
        Broadcaster,
        /// On every command: one durable write, then five sends to the peer.
        Burst,
    }

    struct TestNode {
        mode: Mode,
        peer: NodeId,
        initiator: bool,
        starts: u32,
        crashes: u32,
        received: Vec<u64>,
        timers: u32,
        blocks: Vec<u32>,
        results: Vec<Result<(), String>>,
        /// `ctx.now` as seen by each handler call.
        nows: Vec<Micros>,
        /// A durable counter (the test's "store") and its value at the last sync mark.
        durable: u32,
        synced: Option<u32>,
    }

    impl TestNode {
        fn new(mode: Mode, peer: NodeId, initiator: bool) -> Self {
            TestNode {
                mode,
                peer,
                initiator,
                starts: 0,
                crashes: 0,
                received: vec![],
                timers: 0,
                blocks: vec![],
                results: vec![],
                nows: vec![],
                durable: 0,
                synced: None,
            }
        }
    }

    fn dummy_tx(n: u32) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::from_consensus(n),
            input: vec![],
            output: vec![],
        }
    }

    impl Node for TestNode {
        #[allow(clippy::disallowed_types)]
        fn handle(&mut self, ctx: &mut Ctx<'_>, input: Input) {
            self.nows.push(ctx.now);
            match input {
                Input::Start => {
                    self.starts += 1;
                    match self.mode {
                        Mode::PingPong { .. } => {
                            if self.initiator {
                                ctx.send(self.peer, Msg::TransferEvent { transfer: reference_node::types::TransferId([0; 16]) });
                            }
                            ctx.set_timer(Micros::from_millis(100), TimerKind::GossipRetry);
                        }
                        Mode::HashMapOrder if self.initiator => {
                            // Deliberately nondeterministic: RandomState differs per instance.
                            let m: std::collections::HashMap<u64, ()> =
                                (0..32).map(|k| (k, ())).collect();
                            for k in m.keys() {
                                ctx.send(self.peer, Msg::TransferEvent { transfer: reference_node::types::TransferId([*k as u8; 16]) });
                            }
                        }
                        _ => {}
                    }
                }
                Input::Message {
                    from,
                    msg: Msg::TransferEvent { transfer: reference_node::types::TransferId(nb) },
                } => {
                    let n = u64::from(nb[0]);
                    self.received.push(n);
                    if let Mode::PingPong { limit } = self.mode {
                        if n < limit {
                            ctx.send(from, Msg::TransferEvent { transfer: reference_node::types::TransferId([(n + 1) as u8; 16]) });
                        }
                    }
                }
                Input::Message {
                    msg: Msg::BroadcastResult { result, .. },
                    ..
                } => self.results.push(result),
                Input::Timer(_) => {
                    self.timers += 1;
                    ctx.observe(Observation::CommandSkipped { wallet: reference_node::types::WalletId(0), reason: format!("tick {}", self.timers) });
                    ctx.set_timer(Micros::from_millis(100), TimerKind::GossipRetry);
                }
                Input::Block(b) => self.blocks.push(b.height),
                Input::Message { .. } => {}
                Input::Command(_) => {
                    if self.mode == Mode::Broadcaster {
                        ctx.broadcast(dummy_tx(self.results.len() as u32));
                    }
                    if self.mode == Mode::Burst {
                        self.durable += 1;
                        for k in 0..5u8 {
                            ctx.send(self.peer, Msg::TransferEvent { transfer: reference_node::types::TransferId([k; 16]) });
                        }
                    }
                }
            }
        }
        fn crash(&mut self) {
            self.crashes += 1;
        }
        fn mark_synced(&mut self) {
            self.synced = Some(self.durable);
        }
        fn crash_losing_unsynced(&mut self) {
            if let Some(d) = self.synced.take() {
                self.durable = d;
            }
            self.crash();
        }
    }

    /// An L1 that accepts everything except transactions with lock time 99.
    #[derive(Default)]
    struct FakeChain {
        height: u32,
        mempool: Vec<Transaction>,
    }

    impl L1 for FakeChain {
        fn submit(&mut self, tx: Transaction) -> Result<Txid, ChainReject> {
            if tx.lock_time == LockTime::from_consensus(99) {
                return Err(ChainReject::Malformed("lock time 99".into()));
            }
            let txid = tx.compute_txid();
            self.mempool.push(tx);
            Ok(txid)
        }
        fn mine_block(&mut self, time: Micros) -> BlockInfo {
            self.height += 1;
            BlockInfo {
                height: self.height,
                hash: bitcoin::BlockHash::from_byte_array([self.height as u8; 32]),
                parent: bitcoin::BlockHash::from_byte_array([self.height as u8 - 1; 32]),
                time,
                txs: std::mem::take(&mut self.mempool),
            }
        }
        fn height(&self) -> u32 {
            self.height
        }
    }

    fn config(blocks: Option<Micros>) -> EngineConfig {
        EngineConfig {
            net: NetConfig::default(),
            block_interval: blocks,
            keep_digest_log: true,
        }
    }

    fn ping_pong(seed: u64, cfg: EngineConfig) -> Engine<TestNode, FakeChain> {
        let mut e = Engine::new(seed, cfg, FakeChain::default());
        e.add_node(A, TestNode::new(Mode::PingPong { limit: 50 }, B, true));
        e.add_node(B, TestNode::new(Mode::PingPong { limit: 50 }, A, false));
        e
    }

    #[test]
    fn same_seed_same_trace_different_seed_different_trace() {
        let run = |seed| {
            let mut e = ping_pong(seed, config(None));
            e.run_until(Micros::from_secs(10));
            assert_eq!(e.node(B).unwrap().received.len(), 26);
            (e.trace_hash(), e.counters().clone())
        };
        let (h1, c1) = run(1);
        let (h2, c2) = run(1);
        assert_eq!(h1, h2);
        assert_eq!(c1, c2);
        assert_eq!(c1.messages_sent, 51);
        assert_eq!(c1.messages_delivered, 51);
        assert_ne!(h1, run(2).0);
    }

    #[test]
    fn first_divergence_catches_hashmap_iteration() {
        let run = || {
            let mut e = Engine::new(5, config(None), FakeChain::default());
            e.add_node(A, TestNode::new(Mode::HashMapOrder, B, true));
            e.add_node(B, TestNode::new(Mode::HashMapOrder, A, false));
            e.run_until(Micros::from_secs(1));
            e.digest_log().unwrap().to_vec()
        };
        let (a, b) = (run(), run());
        let d = first_divergence(&a, &b).expect("HashMap order must make runs diverge");
        // The very first event (A's start, whose outputs are in HashMap order) differs.
        assert_eq!(d.index, 0);
        assert_eq!(d.left_description, "start operator:0");
    }

    #[test]
    fn crash_drops_timers_and_messages_and_restart_delivers_start() {
        let mut e = ping_pong(3, config(None));
        e.schedule_crash(Micros::from_millis(150), B);
        e.schedule_restart(Micros::from_millis(1_000), B);
        e.run_until(Micros::from_millis(999));
        let b = e.node(B).unwrap();
        assert_eq!((b.starts, b.crashes), (1, 1));
        assert!(!e.is_up(B));
        // One tick at 100 ms; the one due at 200 ms was armed before the crash.
        assert_eq!(b.timers, 1);
        assert!(e.counters().timers_discarded >= 1);
        // A's ping in flight at the crash was dropped, which ended the ping-pong.
        assert_eq!(e.counters().dropped_down, 1);
        let received = b.received.len();
        e.run_until(Micros::from_millis(1_250));
        let b = e.node(B).unwrap();
        assert!(e.is_up(B));
        assert_eq!(b.starts, 2);
        assert_eq!(b.received.len(), received);
        // Re-armed by Start at 1000 ms: ticks at 1100 and 1200.
        assert_eq!(b.timers, 3);
    }

    #[test]
    fn partition_drops_only_inside_window_and_across_groups() {
        let mut e = Engine::new(4, config(None), FakeChain::default());
        e.add_node(
            A,
            TestNode::new(Mode::PingPong { limit: 1_000_000 }, B, true),
        );
        e.add_node(
            B,
            TestNode::new(Mode::PingPong { limit: 1_000_000 }, A, false),
        );
        e.add_node(
            W,
            TestNode::new(Mode::PingPong { limit: 1_000_000 }, B, true),
        );
        e.add_partition(PartitionWindow {
            from: Micros::from_millis(500),
            until: Micros::from_secs(2),
            groups: vec![BTreeSet::from([A])],
            direction: crate::net::Direction::Both,
        });
        let mut cut_sends = Vec::new();
        e.run_until_with(Micros::from_secs(3), |_, rec| {
            if rec.description.starts_with("deliver") && rec.description.contains("operator:0") {
                cut_sends.push(rec.time);
            }
        });
        // W <-> B (both in rest) keep going; A <-> B stopped at the first send inside the window.
        assert_eq!(e.counters().dropped_partition, 1);
        assert!(cut_sends.iter().all(|t| *t < Micros::from_millis(600)));
        assert!(e.node(W).unwrap().received.iter().any(|n| *n > 40));
    }

    #[test]
    fn loss_one_drops_everything() {
        let mut cfg = config(None);
        cfg.net.default = LinkConfig::new(Latency::Fixed(Micros(10)), 1.0);
        let mut e = ping_pong(6, cfg);
        e.run_until(Micros::from_secs(1));
        assert_eq!(e.counters().messages_sent, 1);
        assert_eq!(e.counters().dropped_loss, 1);
        assert!(e.node(B).unwrap().received.is_empty());
    }

    #[test]
    fn blocks_at_exponential_intervals_in_order_with_catch_up() {
        let mean = Micros::from_secs(600);
        // Quiet nodes (no timers) keep the 60 000 s run cheap.
        let quiet = |seed| {
            let mut e = Engine::new(seed, config(Some(mean)), FakeChain::default());
            e.add_node(A, TestNode::new(Mode::Broadcaster, B, false));
            e.add_node(B, TestNode::new(Mode::Broadcaster, A, false));
            e.schedule_crash(Micros::from_secs(3_000), B);
            e.schedule_restart(Micros::from_secs(30_000), B);
            e
        };
        let mut e = quiet(7);
        let mut block_times = Vec::new();
        let mut up_b = Vec::new();
        e.run_until_with(Micros::from_secs(60_000), |eng, rec| {
            if rec.description.starts_with("block ") {
                block_times.push(rec.time);
                up_b.push((rec.time, eng.is_up(B)));
            }
        });
        let n = block_times.len() as u64;
        assert_eq!(n, e.counters().blocks_mined);
        // 100 blocks expected; the exponential mean is checked loosely.
        assert!((60..150).contains(&n), "{n} blocks");
        let gaps: BTreeSet<u64> = block_times.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(gaps.len() > 10, "intervals vary");
        let all: Vec<u32> = (1..=n as u32).collect();
        assert_eq!(e.node(A).unwrap().blocks, all);
        // B missed blocks while down and got them, in order, after its restart.
        assert_eq!(e.node(B).unwrap().blocks, all);
        assert!(up_b.iter().any(|(_, up)| !up));
        // Same seed, same block schedule.
        let mut again = quiet(7);
        again.run_until(Micros::from_secs(60_000));
        assert_eq!(again.trace_hash(), e.trace_hash());
    }

    #[test]
    fn broadcast_reaches_chain_and_result_comes_back() {
        let mut e = Engine::new(8, config(Some(Micros::from_secs(60))), FakeChain::default());
        e.add_node(W, TestNode::new(Mode::Broadcaster, A, false));
        e.schedule_command(Micros::from_secs(1), WalletId(0), Command::Exit);
        e.schedule_command(Micros::from_secs(2), WalletId(9), Command::Exit);
        let mut subjects = Vec::new();
        e.run_until_with(Micros::from_secs(1), |_, rec| {
            subjects.push((rec.description.clone(), rec.node))
        });
        e.run_until_with(Micros::from_secs(1) + Micros::from_millis(2), |_, rec| {
            subjects.push((rec.description.clone(), rec.node))
        });
        assert!(
            subjects
                .iter()
                .any(|(d, n)| d.starts_with("submit wallet:0") && *n == Some(W)),
            "{subjects:?}"
        );
        assert!(subjects
            .iter()
            .any(|(d, n)| d == "deliver chain -> wallet:0 BroadcastResult" && *n == Some(W)));
        e.run_until(Micros::from_secs(1_000));
        assert_eq!(e.node(W).unwrap().results, vec![Ok(())]);
        assert_eq!(e.counters().txs_submitted, 1);
        assert_eq!(e.counters().commands_dropped, 1);
        assert_eq!(e.blocks().iter().map(|b| b.txs.len()).sum::<usize>(), 1);
    }

    #[test]
    fn step_records_describe_events_and_observations() {
        let mut e = ping_pong(9, config(None));
        let first = e.step().unwrap();
        assert_eq!(
            (first.index, first.description.as_str(), first.node),
            (0, "start operator:0", Some(A))
        );
        let mut saw_tick = false;
        while let Some(rec) = e.step() {
            if rec.time > Micros::from_millis(150) {
                break;
            }
            saw_tick |= rec
                .observations
                .iter()
                .any(|o| matches!(o, Observation::CommandSkipped { reason, .. } if reason == "tick 1"));
        }
        assert!(saw_tick);
    }

    fn burst_pair(seed: u64) -> Engine<TestNode, FakeChain> {
        let mut cfg = config(None);
        cfg.net.default.latency = Latency::Fixed(Micros(1_000));
        let mut e = Engine::new(seed, cfg, FakeChain::default());
        e.add_node(W, TestNode::new(Mode::Burst, A, false));
        e.add_node(A, TestNode::new(Mode::Burst, W, false));
        e
    }

    #[test]
    fn mid_handler_crash_drops_the_suffix_of_outputs_and_keeps_synced_writes() {
        let mut e = burst_pair(11);
        let crash = MidHandlerCrash {
            after_outputs: Some(2),
            lose_unsynced: false,
            restart_after: Some(Micros::from_secs(1)),
        };
        e.schedule_mid_handler_crash(Micros::from_millis(5), W, crash);
        e.schedule_command(Micros::from_millis(10), WalletId(0), Command::Exit);
        let mut descs = Vec::new();
        e.run_until_with(Micros::from_millis(500), |_, r| descs.push(r.description.clone()));
        assert!(!e.is_up(W));
        assert_eq!(e.node(A).unwrap().received.len(), 2, "only the first two sends got out");
        assert_eq!(e.counters().outputs_lost, 3);
        assert_eq!(e.counters().crashes_mid_handler, 1);
        // The crash landed in the command's handler, not at arming time.
        assert!(descs.iter().any(|d| d.starts_with("command wallet:0") && d.contains("mid-handler after 2 of 5")));
        // A plain mid-handler crash keeps the handler's write (it committed before dying).
        assert_eq!(e.node(W).unwrap().durable, 1);
        e.run_until(Micros::from_secs(2));
        assert!(e.is_up(W));
        assert_eq!(e.node(W).unwrap().starts, 2);
    }

    #[test]
    fn lose_unsynced_crash_loses_the_handlers_writes() {
        let mut e = burst_pair(12);
        e.schedule_command(Micros::from_millis(1), WalletId(0), Command::Exit);
        let crash = MidHandlerCrash { after_outputs: Some(0), lose_unsynced: true, restart_after: None };
        e.schedule_mid_handler_crash(Micros::from_millis(5), W, crash);
        e.schedule_command(Micros::from_millis(10), WalletId(0), Command::Exit);
        e.run_until(Micros::from_millis(500));
        let w = e.node(W).unwrap();
        // The first command's write was synced when its handler completed; the second's is lost.
        assert_eq!(w.durable, 1);
        assert_eq!(e.node(A).unwrap().received.len(), 5);
        assert_eq!(e.counters().outputs_lost, 5);
    }

    #[test]
    fn crash_point_is_drawn_when_not_given_and_is_deterministic() {
        let run = |seed| {
            let mut e = burst_pair(seed);
            let crash = MidHandlerCrash { after_outputs: None, lose_unsynced: false, restart_after: None };
            e.schedule_mid_handler_crash(Micros::ZERO + Micros(1), W, crash);
            e.schedule_command(Micros::from_millis(10), WalletId(0), Command::Exit);
            e.run_until(Micros::from_millis(100));
            (e.node(A).unwrap().received.len(), e.trace_hash())
        };
        let points: BTreeSet<usize> = (0..30).map(|seed| run(seed).0).collect();
        assert!(points.len() >= 4, "crash points {points:?}");
        assert!(points.iter().all(|p| *p <= 5));
        assert_eq!(run(3), run(3));
    }

    #[test]
    fn a_crash_armed_while_down_lands_in_the_recovery() {
        let mut e = ping_pong(13, config(None));
        e.schedule_crash(Micros::from_millis(50), B);
        let crash = MidHandlerCrash {
            after_outputs: Some(0),
            lose_unsynced: false,
            restart_after: Some(Micros::from_secs(1)),
        };
        e.schedule_mid_handler_crash(Micros::from_millis(60), B, crash);
        e.schedule_restart(Micros::from_millis(100), B);
        e.run_until(Micros::from_millis(500));
        let b = e.node(B).unwrap();
        // Restarted at 100 ms, crashed inside that Start (its timer never got armed).
        assert_eq!((b.starts, b.crashes), (2, 2));
        assert!(!e.is_up(B));
        e.run_until(Micros::from_millis(1_250));
        let b = e.node(B).unwrap();
        assert_eq!(b.starts, 3);
        assert!(e.is_up(B));
        assert_eq!(b.timers, 1, "re-armed by the third start: one tick by 1.25 s");
    }

    #[test]
    fn clock_skew_and_drift_shift_now_and_timer_firing() {
        let mut e = ping_pong(14, config(None));
        // B's clock: 5 s ahead and 25% fast. Its 100 ms ticks take 80 ms of global time.
        e.set_clock(B, Clock { skew_us: 5_000_000, drift_ppm: 250_000, ..Clock::default() });
        let mut ticks = Vec::new();
        e.run_until_with(Micros::from_millis(400), |_, r| {
            if r.description.starts_with("timer operator:1") {
                ticks.push(r.time.0);
            }
        });
        assert_eq!(ticks, vec![80_000, 160_000, 240_000, 320_000, 400_000]);
        let b = e.node(B).unwrap();
        assert_eq!(b.nows[0], Micros::from_secs(5));
        // Whatever handler ran at global t saw 5 s + 1.25 t.
        let a = e.node(A).unwrap();
        assert!(a.nows.iter().all(|t| *t < Micros::from_secs(1)), "A keeps global time");
        assert_eq!(e.clock(B).local(Micros(80_000)), Micros(5_100_000));
    }

    #[test]
    fn duplication_delivers_a_message_twice() {
        let mut cfg = config(None);
        cfg.net.default.duplicate = 1.0;
        let mut e = Engine::new(15, cfg, FakeChain::default());
        e.add_node(W, TestNode::new(Mode::Burst, A, false));
        e.add_node(A, TestNode::new(Mode::Burst, W, false));
        e.schedule_command(Micros::from_millis(1), WalletId(0), Command::Exit);
        e.run_until(Micros::from_secs(1));
        let mut got = e.node(A).unwrap().received.clone();
        assert_eq!(got.len(), 10);
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 5);
        assert_eq!(e.counters().messages_duplicated, 5);
    }
}
