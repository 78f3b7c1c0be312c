//! The node contract: how a driver (the simulator, or later the testnet harness) feeds a protocol
//! state machine and collects what it wants done. No I/O, clock or OS randomness crosses it:
//! time and randomness are handed in, effects come back out as [`Output`]s (quinn-proto style).

use crate::chain::BlockInfo;
use crate::msg::Msg;
use crate::types::{Micros, NodeId};
use bitcoin::Transaction;
use rand_chacha::ChaCha20Rng;

/// Timers a node can arm. A node re-arms periodic work itself; a timer armed before a crash
/// never fires after it (the driver drops them), so `Input::Start` must re-arm what is needed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum TimerKind {
    /// A request waiting for replies has timed out (the id is the node's own request id).
    RequestTimeout(u64),
    /// Operator background task: retry undelivered durable gossip (spark-protocol §4.0).
    GossipRetry,
    /// Operator background task: resolve stale sends and cancel expired transfers.
    TransferTasks,
    /// Operator background task: keep the DKG keyshare pool topped up.
    DkgPool,
    /// Wallet: look for incoming transfers to claim.
    PollTransfers,
    /// Wallet: retry whatever operation is pending.
    WalletRetry,
    /// Wallet acting as a thief (wallet/thief.rs): stop waiting for colluders.
    TheftTimeout,
    /// Two-phase commit mode (§4.10): presumed-abort sweep and participant reconciliation.
    ConsensusTick,
    /// Two-phase commit mode (§4.10): send what waited for the previous handler's commit to be
    /// durable (a Prepare ack, a COMMIT's gossip and the wallet's answer).
    ConsensusFlush,
    /// SSP (wallet/ssp_lightning.rs): the simulated payer's HTLC for this payment hash arrives.
    LightningPayerHtlc([u8; 32]),
    /// Operator: return leaf swaps past their expiry (operator/swap.rs).
    SwapTasks,
}

/// What a driver hands to a node.
#[derive(Debug)]
pub enum Input {
    /// First start, or restart after a crash: rebuild volatile state from the durable store and
    /// re-arm timers.
    Start,
    Message { from: NodeId, msg: Msg },
    Timer(TimerKind),
    /// A block the node's chain watcher sees (delivered in height order; after a restart the
    /// driver delivers the blocks missed since the node's durable block cursor).
    Block(std::sync::Arc<BlockInfo>),
    /// A workload instruction (wallets only): the user asks the wallet to do something.
    Command(crate::wallet::Command),
}

/// What a node asks its driver to do.
#[derive(Debug)]
pub enum Output {
    Send { to: NodeId, msg: Msg },
    SetTimer { after: Micros, timer: TimerKind },
    /// Submit a transaction to L1 (the driver answers with `Msg::BroadcastResult` from `Chain`).
    Broadcast(Transaction),
    /// A fact for the checker and the trace (not a message; the network never sees it).
    Observe(crate::observe::Observation),
    /// Watchtower and fees flow: `submitpackage [parent, child]` (chain/package.rs). The driver
    /// answers with one `Msg::BroadcastResult` per tx, each carrying the package's result.
    BroadcastPackage(Vec<Transaction>),
}

/// The per-call context: `now` and the node's own RNG stream come in, outputs go out.
pub struct Ctx<'a> {
    pub now: Micros,
    pub rng: &'a mut ChaCha20Rng,
    pub me: NodeId,
    out: Vec<Output>,
}

impl<'a> Ctx<'a> {
    pub fn new(now: Micros, me: NodeId, rng: &'a mut ChaCha20Rng) -> Self {
        Ctx { now, rng, me, out: Vec::new() }
    }
    pub fn send(&mut self, to: NodeId, msg: Msg) {
        self.out.push(Output::Send { to, msg });
    }
    pub fn set_timer(&mut self, after: Micros, timer: TimerKind) {
        self.out.push(Output::SetTimer { after, timer });
    }
    pub fn broadcast(&mut self, tx: Transaction) {
        self.out.push(Output::Broadcast(tx));
    }
    /// Submit `[parent, child]` as one package (CPFP through the parent's P2A anchor).
    pub fn broadcast_package(&mut self, txs: Vec<Transaction>) {
        self.out.push(Output::BroadcastPackage(txs));
    }
    pub fn observe(&mut self, o: crate::observe::Observation) {
        self.out.push(Output::Observe(o));
    }
    pub fn into_outputs(self) -> Vec<Output> {
        self.out
    }
}

/// A protocol participant. `handle` must be deterministic in (state, ctx.now, ctx.rng, input).
pub trait Node {
    fn handle(&mut self, ctx: &mut Ctx<'_>, input: Input);
    /// The process dies: everything not committed to the durable store is lost.
    fn crash(&mut self);
    /// Durability model for crash faults (the simulator's `lose_unsynced` crash): a node's store
    /// is synced at the end of every handler that completes, as a Postgres-backed operator with
    /// `synchronous_commit = on` is once its request's transaction commits. The driver calls
    /// this just before a handler in which a crash is due; [`Node::crash_losing_unsynced`]
    /// then rolls the store back to this point. Default: nothing to mark (no store).
    fn mark_synced(&mut self) {}
    /// The process dies before the writes since [`Node::mark_synced`] became durable: they are
    /// lost along with volatile state (the crash landed before the handler's transaction
    /// commit returned). Default: a plain [`Node::crash`].
    fn crash_losing_unsynced(&mut self) {
        self.crash()
    }
}
