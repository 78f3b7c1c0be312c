//! The scenario language: a TOML file describing one simulated run, parsed and validated into
//! typed structs. Every error names the file, line, column and field:
//!
//! ```text
//! scenarios/x.toml:12:3: field `topology.threshold`: threshold 6 exceeds operators 5
//! ```
//!
//! Parsing is two-layered: serde reads the file into private `Raw*` structs that keep the
//! source span of every value needing a semantic check (`toml::Spanned`) and reject unknown keys
//! (`deny_unknown_fields`); validation then turns them into the public types below, converting
//! seconds to [`Micros`] and node names to [`NodeId`]s. Durations are seconds (floats or
//! integers), amounts are sats. Omitted optional keys take the defaults documented per field.
//! Array-of-table entries are named 0-based in field paths: `fault[0].node` is the first
//! `[[fault]]`.

use crate::engine::EngineConfig;
use crate::net::{Direction, Latency, LinkConfig, NetConfig, PartitionWindow};
use reference_node::types::{Micros, NodeId, OperatorId, WalletId};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use toml::Spanned;

mod coop_exit;
// Renew/send race (§8.2 row 5): `[[device_race]]`.
mod device;
pub use device::DeviceRaceSpec;
mod ssp;
pub use ssp::{SspSpec, SwapAt};
mod lightning;
pub use lightning::{LightningAt, LightningDirection};
pub use coop_exit::CoopExitAt;
// Long-lived leaf (renew-node, issue 6): `[[workload.relay]]`.
mod relay;
pub use relay::RelayAt;
pub use ssp::coop_exit_fault_name as ssp_coop_exit_fault_name;

// ---------------------------------------------------------------------------------------------
// Public, validated types
// ---------------------------------------------------------------------------------------------

/// One scenario file. Top-level keys:
/// - `name` (required): short identifier.
/// - `description` (required): what the scenario tests and what should happen.
/// - `seed` (optional): default seed when the CLI is not given one.
/// - `swarm` (optional): `true`, or a `[swarm]` table (see [`SwarmSpec`]): each seed draws which
///   fault kinds are on and how hard.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The file name errors and reports refer to.
    pub file: String,
    pub name: String,
    pub description: String,
    pub seed: Option<u64>,
    pub topology: Topology,
    pub network: NetworkSpec,
    pub chain: ChainSpec,
    pub protocol: ProtocolSpec,
    pub workload: WorkloadSpec,
    /// `[[fault]]` entries, in file order.
    pub faults: Vec<FaultSpec>,
    pub budgets: Budgets,
    pub expect: Expectation,
    pub run: RunSpec,
    /// `[[byzantine]]` entries: which operators misbehave and how.
    pub byzantine: Vec<ByzantineSpec>,
    /// `[[theft]]` entries: former owners who try to spend a leaf they sent away.
    pub thefts: Vec<TheftSpec>,
    /// `[[split]]` entries: wallets asked to split a leaf (see [`SplitSpec`]).
    pub splits: Vec<SplitSpec>,
    /// `[[aggregate]]` entries: wallets asked to fold a split leaf's children back (see
    /// [`AggregateSpec`]).
    pub aggregates: Vec<AggregateSpec>,
    /// Swarm testing: `None` unless `swarm = true` or a `[swarm]` table is given.
    pub swarm: Option<SwarmSpec>,
    /// `[expect] sometimes`: sometimes-properties (`checker::properties::SOMETIMES`) this
    /// scenario's fault mix is meant to reach. A campaign fails when one of them fired on none of
    /// the scenario's seeds, so a mix that never reaches the interesting states cannot pass.
    pub expect_sometimes: BTreeSet<String>,
    /// `[ssp]`: the service provider, when the scenario has one (scenario/ssp.rs).
    pub ssp: Option<SspSpec>,
    /// Watchtower and fees flow: `[watchtower]` and `[[race]]` (see [`WatchtowerSpec`]).
    pub watchtower: WatchtowerSpec,
    /// `[[workload.coop_exit]]`: cooperative exits through the SSP (scenario/coop_exit.rs).
    pub coop_exits: Vec<CoopExitAt>,
    /// `[[device_race]]`: renew/send races with a user's second device (scenario/device.rs).
    pub device_races: Vec<DeviceRaceSpec>,
}

// Watchtower and fees flow: `[watchtower]` and `[[race]]`.
#[path = "scenario_watchtower.rs"]
mod watchtower;
pub use watchtower::{mode_name as watchtower_mode_name, RaceSpec, WatchtowerSpec};

/// `[topology]`: who takes part.
/// - `operators` = 5: number of operators, 1..=32.
/// - `threshold` = 3: FROST signing threshold t, 1..=operators.
/// - `wallets` = 4: number of wallets, 1..=1000.
/// - `coordinator` = 0: index of the coordinating operator, < operators.
///
/// `ssp` is not a key here: it is true when the scenario has an `[ssp]` table, which adds the
/// service provider as one more wallet, `wallet:N` with N = `wallets` (named `ssp` in node fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    pub operators: u16,
    pub threshold: u16,
    pub wallets: u16,
    pub coordinator: OperatorId,
    pub ssp: bool,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            operators: 5,
            threshold: 3,
            wallets: 4,
            coordinator: OperatorId(0),
            ssp: false,
        }
    }
}

impl Topology {
    /// Every operator then every wallet (the SSP last), in `NodeId` order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        let ops = (0..self.operators).map(|i| NodeId::Operator(OperatorId(i)));
        ops.chain((0..self.wallets).map(|i| NodeId::Wallet(WalletId(i))))
            .chain(self.ssp_wallet().map(NodeId::Wallet))
            .collect()
    }
    /// The service provider's wallet id: the one after the workload's wallets.
    pub fn ssp_wallet(&self) -> Option<WalletId> {
        self.ssp.then_some(WalletId(self.wallets))
    }
}

/// A node name in a scenario: `operator:N`, `wallet:N`, `chain`, `operator:*` or `wallet:*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodePattern {
    Node(NodeId),
    AllOperators,
    AllWallets,
}

impl NodePattern {
    /// The nodes this pattern names in `topology`.
    pub fn expand(&self, topology: &Topology) -> Vec<NodeId> {
        match self {
            NodePattern::Node(id) => vec![*id],
            NodePattern::AllOperators => (0..topology.operators)
                .map(|i| NodeId::Operator(OperatorId(i)))
                .collect(),
            NodePattern::AllWallets => (0..topology.wallets)
                .map(|i| NodeId::Wallet(WalletId(i)))
                .collect(),
        }
    }
}

impl std::fmt::Display for NodePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodePattern::Node(id) => id.fmt(f),
            NodePattern::AllOperators => f.write_str("operator:*"),
            NodePattern::AllWallets => f.write_str("wallet:*"),
        }
    }
}

/// `[network]`: the default link, plus overrides.
/// - `latency_ms` = { min = 2.0, max = 40.0 }: uniform one-way latency, or a single number for a
///   fixed latency, or a heavy tail `{ dist = "pareto", min = 2.0, alpha = 1.5, max = 10000.0 }`
///   (Pareto with scale `min` and shape `alpha` > 0, capped at `max`; `dist = "uniform"` is the
///   `{ min, max }` form).
/// - `loss` = 0.0: probability a message is lost, 0..=1.
/// - `duplicate` = 0.0: probability a delivered message is delivered twice, 0..=1.
/// - `reorder` = 0.0: probability a message is held back by an extra delay (uniform up to
///   `reorder_ms`) so later ones overtake it, 0..=1.
/// - `reorder_ms` = 200.0: the largest extra delay of a held-back message.
/// - `[[network.link]]`: `from`, `to` (node names, wildcards allowed), optional `latency_ms`,
///   `loss`, `duplicate` and `reorder` overriding the default for those directed links; later
///   entries win.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSpec {
    pub latency: Latency,
    pub loss: f64,
    pub links: Vec<LinkOverride>,
    pub duplicate: f64,
    pub reorder: f64,
    pub reorder_delay: Micros,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        let n = NetConfig::default();
        let d = n.default;
        NetworkSpec {
            latency: d.latency,
            loss: d.loss,
            links: Vec::new(),
            duplicate: d.duplicate,
            reorder: d.reorder,
            reorder_delay: n.reorder_delay,
        }
    }
}

/// One `[[network.link]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkOverride {
    pub from: NodePattern,
    pub to: NodePattern,
    pub latency: Option<Latency>,
    pub loss: Option<f64>,
    pub duplicate: Option<f64>,
    pub reorder: Option<f64>,
}

/// `[chain]`:
/// - `block_interval_s` = 600.0: mean of the exponential time between blocks, > 0.
/// - `deposit_confirmations` = 1: blocks (the deposit's own included) before operators make a
///   deposited leaf AVAILABLE, 1..=100 (Spark: 1 for single-use deposits, 3 for static ones).
/// - `min_feerate_sat_vb` = 0: the mempool's standing minimum feerate in sat/vB, 0..=100000
///   (0 admits Spark's zero-fee CPFP txs; a `fee_spike` fault raises it for a while).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainSpec {
    pub block_interval: Micros,
    pub deposit_confirmations: u32,
    pub min_feerate_sat_vb: u64,
}

impl Default for ChainSpec {
    fn default() -> Self {
        ChainSpec {
            block_interval: Micros::from_secs(600),
            deposit_confirmations: 1,
            min_feerate_sat_vb: 0,
        }
    }
}

/// A deliberate protocol bug, switched on to prove the checker catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TestFault {
    /// The sender does not decrement the refund timelock on transfer (breaks I-6).
    SkipSendTimelockDecrement,
    /// The wallet broadcasts exit refunds before their timelock (the L1 must refuse them).
    BroadcastRefundEarly,
}

impl TestFault {
    const ALL: [(&'static str, TestFault); 2] = [
        (
            "skip_send_timelock_decrement",
            TestFault::SkipSendTimelockDecrement,
        ),
        ("broadcast_refund_early", TestFault::BroadcastRefundEarly),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TestFault::SkipSendTimelockDecrement => "skip_send_timelock_decrement",
            TestFault::BroadcastRefundEarly => "broadcast_refund_early",
        }
    }
}

/// `[protocol]`: protocol parameters.
/// - `gossip_retry_s` = 30.0: operator gossip retry period, > 0.
/// - `request_timeout_s` = 5.0: RPC timeout, > 0.
/// - `transfer_expiry_s` = 300.0: a pending transfer expires after this, > 0.
/// - `dkg_pool_min` = 4: refill the keyshare pool below this many.
/// - `dkg_batch` = 4: keyshares generated per DKG round, ≥ 1.
/// - `wallet_poll_s` = 5.0: wallets poll for incoming transfers this often, > 0.
/// - `test_faults` = []: deliberate bugs; allowed: "skip_send_timelock_decrement"
///   and "broadcast_refund_early" (the wallet broadcasts exit refunds before their timelock).
/// - `hazards` = []: known Spark hazards (spark-protocol §8.2) restored on purpose; allowed:
///   "gossip_ack_unapplied", "claim_settle_split", "claim_skip_timelock_decrement",
///   "renew_node_on_zero_csv" (see [`Hazard`]).
/// - `consensus` = "gossip": how operators settle decisions (two-phase commit mode,
///   spark-protocol §4.10): "gossip" (Oct-2025 durable gossip, the coordinator applies its own
///   part after every receipt) or "two_phase" (the 2026 coordinator-driven prepare / commit /
///   rollback engine with reconciliation and presumed abort, `operator/twopc.rs`).
/// - `flow_stale_s` = 60.0: two_phase only (an error with `consensus = "gossip"`), > 0: the age
///   at which a coordinator's IN_FLIGHT flow with no live session is presumed aborted (rolled
///   back) and a participant's IN_FLIGHT flow asks its coordinator how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolSpec {
    pub gossip_retry: Micros,
    pub request_timeout: Micros,
    pub transfer_expiry: Micros,
    pub dkg_pool_min: u32,
    pub dkg_batch: u32,
    pub wallet_poll: Micros,
    pub test_faults: BTreeSet<TestFault>,
    /// Known Spark hazards switched back on (see [`Hazard`]).
    pub hazards: BTreeSet<Hazard>,
    /// Two-phase commit mode: gossip (default) or two_phase.
    pub consensus: reference_node::consensus::Consensus,
    /// Two-phase commit mode: presumed-abort / reconciliation age (`flow_stale_s`).
    pub flow_stale: Micros,
}

impl Default for ProtocolSpec {
    fn default() -> Self {
        ProtocolSpec {
            gossip_retry: Micros::from_secs(30),
            request_timeout: Micros::from_secs(5),
            transfer_expiry: Micros::from_secs(300),
            dkg_pool_min: 4,
            dkg_batch: 4,
            wallet_poll: Micros::from_secs(5),
            test_faults: BTreeSet::new(),
            hazards: BTreeSet::new(),
            consensus: reference_node::consensus::Consensus::Gossip,
            flow_stale: FLOW_STALE_DEFAULT,
        }
    }
}

/// `[workload]`: what the wallets are asked to do.
/// - `deposits_per_wallet` = 2: deposits each wallet makes at the start.
/// - `deposit_sats` = [65536, 131072]: deposit amounts (cycled), each > 0, at least one.
/// - `transfers` = 20: total transfers between random wallets.
/// - `transfer_start_s` = 900.0: when the first transfer may start.
/// - `transfer_interval_s` = 2.0: mean of the exponential gap between transfers, > 0.
/// - `exits` = 1: unilateral exits.
/// - `exit_at_s` (optional): when exits start; omitted = 60 s after the last transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadSpec {
    pub deposits_per_wallet: u32,
    pub deposit_sats: Vec<u64>,
    pub transfers: u32,
    pub transfer_start: Micros,
    pub transfer_interval_mean: Micros,
    pub exits: u32,
    /// `None`: 60 s after the last transfer (known only once the workload is drawn).
    pub exit_at: Option<Micros>,
    /// An explicit workload (`[[workload.deposit]]`, `[[workload.transfer]]`,
    /// `[[workload.exit]]`): when set, the random keys above are unused and nothing is drawn.
    pub explicit: Option<ExplicitWorkload>,
    /// `[[workload.lightning]]` (scenario/lightning.rs): Lightning payments, with either a
    /// random or an explicit workload.
    pub lightning: Vec<LightningAt>,
}

/// An explicit workload, listed action by action, so a recorded or shrunk run replays without
/// the random draw. Written by `sparksim shrink`; set by `explicit = true` in `[workload]` or
/// by any of the lists below (then the random keys `deposits_per_wallet`, `deposit_sats`,
/// `transfers`, `transfer_start_s`, `transfer_interval_s`, `exits`, `exit_at_s` are refused).
/// - `[[workload.deposit]]`: `wallet` ("wallet:N"), `at_s`, `sats` > 0. The wallet is funded on
///   L1 at genesis with one coin per deposit it makes.
/// - `[[workload.transfer]]`: `at_s`, `from`, `to` (two different wallets): `from` sends one
///   leaf to `to`.
/// - `[[workload.exit]]`: `at_s`, `wallet`: the wallet exits unilaterally to L1.
/// - `[[workload.relay]]`: `wallets`, `start_s`, `every_s`, `transfers`: one leaf passed round
///   the wallets in turn (see [`RelayAt`]); its sends are scheduled after the listed transfers.
///
/// Actions are scheduled in list order (deposits, then transfers, then exits), which is the
/// order the random draw schedules them in, so a recorded workload gives the same trace hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExplicitWorkload {
    pub deposits: Vec<DepositAt>,
    pub transfers: Vec<TransferAt>,
    pub exits: Vec<ExitAt>,
    /// `[[workload.relay]]` (scenario/relay.rs): expanded into `transfers` by the runner's plan.
    pub relays: Vec<RelayAt>,
}

/// One `[[workload.deposit]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepositAt {
    pub wallet: WalletId,
    pub at: Micros,
    pub sats: u64,
}

/// One `[[workload.transfer]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferAt {
    pub at: Micros,
    pub from: WalletId,
    pub to: WalletId,
}

/// One `[[workload.exit]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitAt {
    pub at: Micros,
    pub wallet: WalletId,
}

impl WorkloadSpec {
    /// Gap between the last transfer and the exits when `exit_at_s` is omitted.
    pub const EXIT_AFTER_LAST_TRANSFER: Micros = Micros::from_secs(60);
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            deposits_per_wallet: 2,
            deposit_sats: vec![65_536, 131_072],
            transfers: 20,
            transfer_start: Micros::from_secs(900),
            transfer_interval_mean: Micros::from_secs(2),
            exits: 1,
            exit_at: None,
            explicit: None,
            lightning: Vec::new(),
        }
    }
}

/// One `[[fault]]` entry, selected by `kind`.
/// - `kind = "crash"`: `node` (an operator or wallet), `at_s`, optional `restart_after_s`
///   (omitted: the node stays down). With `mid_handler = true` the crash is armed at `at_s`
///   and lands inside the node's next handler, whatever input it is (a restart's recovery
///   included: arm it while the node is down to crash the recovery): only the first
///   `after_outputs` of the handler's outputs leave (omitted: drawn per seed), and with
///   `lose_unsynced = true` the handler's store writes are lost too (the crash came before
///   they were synced). `restart_after_s` then counts from when the crash lands.
/// - `kind = "partition"`: either `groups` (lists of node names; unlisted nodes form one more
///   group) or `isolate` (that set against everyone else), plus `at_s` and `duration_s` > 0.
///   Optional `flap_on_s` and `flap_off_s` (both or neither, > 0): the partition flaps, on for
///   `flap_on_s`, off for `flap_off_s`, starting on, until `duration_s` is over.
/// - `kind = "asymmetric_partition"`: messages from the nodes in `from` to the nodes in `to`
///   (omitted: everyone else) are lost while the other direction still works ("`to` hears
///   nobody in `from`, `from` hears `to`"); `at_s`, `duration_s`, optional `flap_on_s` /
///   `flap_off_s`.
/// - `kind = "slow_node"`: every message to or from `node` (wildcards allowed) takes `factor`
///   (≥ 1) times its latency, from `at_s` (default 0) for `duration_s` (omitted: to the end).
/// - `kind = "clock"`: `node` (wildcards allowed) runs its own clock: `skew_ms` (signed, default
///   0) ahead of global time and drifting by `drift_ppm` (signed, default 0, within
///   -900000..=9000000). Expiry, background tasks and timeouts use that clock. With `at_s` the
///   skew applies only from then: the clock steps (jumps) by `skew_ms` at `at_s`.
/// - L1 faults (`crate::l1faults`):
///   - `kind = "reorg"`: `at_s`, `depth` (1..=100 blocks, at most the height at `at_s`, else the
///     reorg is skipped and the trace says so), optional `txs` = "return" (default: the
///     disconnected txs go back to the mempool and confirm again at the next block) or "drop"
///     (they vanish; their senders must broadcast again). The new branch is `depth + 1` blocks.
///   - `kind = "block_delay"`: `at_s`, `duration_s` > 0: no block is mined in that window.
///   - `kind = "fee_spike"`: `at_s`, `duration_s` > 0, `min_feerate_sat_vb` (1..=100000): the
///     mempool refuses txs paying less for that window, then the `[chain]` floor returns.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultSpec {
    Crash {
        node: NodeId,
        at: Micros,
        restart_after: Option<Micros>,
    },
    Partition {
        groups: Vec<Vec<NodePattern>>,
        at: Micros,
        duration: Micros,
    },
    // --- network, process and clock faults (sim/src/engine.rs, net.rs, clock.rs) ---
    /// `kind = "crash"` with `mid_handler = true`.
    CrashMidHandler {
        node: NodeId,
        at: Micros,
        after_outputs: Option<u32>,
        lose_unsynced: bool,
        restart_after: Option<Micros>,
    },
    /// `kind = "asymmetric_partition"`, or any partition with flap keys.
    NetPartition {
        groups: Vec<Vec<NodePattern>>,
        direction: Direction,
        at: Micros,
        duration: Micros,
        /// (on, off) phase lengths of a flapping partition.
        flap: Option<(Micros, Micros)>,
    },
    SlowNode {
        node: NodePattern,
        factor: f64,
        at: Micros,
        duration: Option<Micros>,
    },
    Clock {
        node: NodePattern,
        skew_us: i64,
        drift_ppm: i64,
        /// When the skew applies: 0 from the start, later a clock step.
        at: Micros,
    },
    /// A reorg, block delay or fee spike.
    L1(crate::l1faults::L1Fault),
}

impl FaultSpec {
    /// The partition windows of a partition fault (`isolate` is stored as a single group; a
    /// flapping partition gives one window per on phase); none for other kinds.
    pub fn partition_windows(&self, topology: &Topology) -> Vec<PartitionWindow> {
        let expand = |groups: &Vec<Vec<NodePattern>>| -> Vec<BTreeSet<NodeId>> {
            groups
                .iter()
                .map(|g| g.iter().flat_map(|p| p.expand(topology)).collect())
                .collect()
        };
        match self {
            FaultSpec::Partition {
                groups,
                at,
                duration,
            } => vec![PartitionWindow {
                from: *at,
                until: *at + *duration,
                groups: expand(groups),
                direction: Direction::Both,
            }],
            FaultSpec::NetPartition {
                groups,
                direction,
                at,
                duration,
                flap,
            } => {
                let (on, off) = flap.unwrap_or((*duration, Micros::ZERO));
                crate::net::flapping(*at, *at + *duration, on, off, expand(groups), *direction)
            }
            _ => Vec::new(),
        }
    }

    /// When the fault is over (for the run's horizon): its last scheduled effect.
    pub fn ends_at(&self) -> Micros {
        match self {
            FaultSpec::Crash { at, restart_after, .. }
            | FaultSpec::CrashMidHandler { at, restart_after, .. } => {
                *at + restart_after.unwrap_or(Micros::ZERO)
            }
            FaultSpec::Partition { at, duration, .. }
            | FaultSpec::NetPartition { at, duration, .. } => *at + *duration,
            FaultSpec::SlowNode { at, duration, .. } => *at + duration.unwrap_or(Micros::ZERO),
            FaultSpec::Clock { at, .. } => *at,
            FaultSpec::L1(l1) => l1.end(),
        }
    }
}

/// `swarm = true`, or a `[swarm]` table: swarm testing. Each seed draws, from its own stream,
/// which fault kinds are on and how hard (see `sim/src/swarm.rs`); the drawn faults are added
/// to the file's own, and the drawn mix is written into the run report. Table keys, all
/// optional:
/// - `kinds` = every kind: the kinds that may be drawn (see `swarm::KINDS` for the names).
/// - `p_on` = 0.5: probability each allowed kind is on for a seed, 0..=1.
/// - `max_loss` = 0.1: the largest loss probability drawn, 0..=1.
/// - `max_crashes` = 3: the most crashes drawn per seed, 0..=100.
/// - `max_skew_ms` = 30000.0: the largest clock skew drawn (either sign), ≥ 0.
/// - `max_drift_ppm` = 100000: the largest clock drift drawn (either sign), 0..=900000.
/// - `max_slow_factor` = 20.0: the largest slow-node factor drawn, ≥ 1.
#[derive(Clone, Debug, PartialEq)]
pub struct SwarmSpec {
    pub kinds: Option<BTreeSet<String>>,
    pub p_on: f64,
    pub max_loss: f64,
    pub max_crashes: u32,
    pub max_skew_ms: f64,
    pub max_drift_ppm: i64,
    pub max_slow_factor: f64,
}

impl Default for SwarmSpec {
    fn default() -> Self {
        SwarmSpec {
            kinds: None,
            p_on: 0.5,
            max_loss: 0.1,
            max_crashes: 3,
            max_skew_ms: 30_000.0,
            max_drift_ppm: 100_000,
            max_slow_factor: 20.0,
        }
    }
}

/// `[budgets]`: latency budgets, all optional.
/// - `transfer_p99_s`: p99 of send → claimed in simulated seconds, > 0 (a `budget` violation).
/// - `{deposit,send,claim,exit}_{p50,p99,max}_s`: per-operation budgets, durations in simulated
///   seconds (positive); an overrun is a violation named `budget:<op>.<stat>` (`budget:claim.p99`).
///   deposit = command → deposit confirmed, send = command → transfer acknowledged,
///   claim = acknowledged → claimed, exit = command → refund confirmed on L1.
/// - `liveness_s`: the liveness phase: once the workload ended and the last fault healed (plus
///   `run.settle_s`), every pending operation must be terminal within this many simulated
///   seconds, or the run ends and the pending ones are reported (L-2/L-3/L-4). Default: no cap
///   but `run.max_sim_time_s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budgets {
    pub transfer_p99: Option<Micros>,
    // --- checker: per-operation budgets and the liveness phase ---
    /// Indexed by [`LatencyOp`] then [`Stat`].
    pub ops: [[Option<Micros>; 3]; 4],
    pub liveness: Option<Micros>,
}

impl Budgets {
    pub fn op(&self, op: LatencyOp, stat: Stat) -> Option<Micros> {
        self.ops[op as usize][stat as usize]
    }
}

/// An operation whose latency the checker measures (simulated time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LatencyOp {
    Deposit = 0,
    Send = 1,
    Claim = 2,
    Exit = 3,
}

impl LatencyOp {
    pub const ALL: [LatencyOp; 4] = [LatencyOp::Deposit, LatencyOp::Send, LatencyOp::Claim, LatencyOp::Exit];
    pub fn as_str(self) -> &'static str {
        ["deposit", "send", "claim", "exit"][self as usize]
    }
}

/// A latency statistic a budget bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stat {
    P50 = 0,
    P99 = 1,
    Max = 2,
}

impl Stat {
    pub const ALL: [Stat; 3] = [Stat::P50, Stat::P99, Stat::Max];
    pub fn as_str(self) -> &'static str {
        ["p50", "p99", "max"][self as usize]
    }
}

/// Names of the per-operation budget violations, indexed by [`LatencyOp`] then [`Stat`].
const BUDGET_NAMES: [[&str; 3]; 4] = [
    ["budget:deposit.p50", "budget:deposit.p99", "budget:deposit.max"],
    ["budget:send.p50", "budget:send.p99", "budget:send.max"],
    ["budget:claim.p50", "budget:claim.p99", "budget:claim.max"],
    ["budget:exit.p50", "budget:exit.p99", "budget:exit.max"],
];

/// `budget:<op>.<stat>`: the violation an overrun of that budget reports.
pub fn budget_name(op: LatencyOp, stat: Stat) -> &'static str {
    BUDGET_NAMES[op as usize][stat as usize]
}

/// An invariant (spark-protocol §6) or check a scenario may expect to be violated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invariant {
    I1,
    I2,
    I3,
    I6,
    I11,
    L1,
    Budget,
    // --- checker: the rest of spark-protocol §6 for the flows implemented ---
    I4,
    I5,
    I8,
    I9,
    I10,
    I12,
    I14,
    L2,
    L3,
    L4,
    L8,
    /// Renew: node-layer ordering and renewability.
    I7,
    L7,
    OpBudget(LatencyOp, Stat),
    // --- Byzantine operators and hazards (sim/src/checker/{theft,hazards}.rs) ---
    /// A leaf spent on chain without its owner by fewer than t colluders: a real bug.
    Theft,
    /// A leaf spent on chain by a former owner with ≥ t colluding operators: the documented
    /// trust limit (spark-protocol §5.1) was crossed, not a protocol bug.
    TrustAssumptionBroken,
    /// The run reached `run.max_events`: a message or timer storm.
    EventBudget,
    /// Watchtower and fees flow: a former owner's stale refund confirmed while nobody (owner
    /// offline, watchtower off) broadcast the current owner's refund: the documented watchtower
    /// dependence of spark-protocol §5.2 item 2, not a protocol bug.
    WatchtowerDependence,
}

impl Invariant {
    const ALL: [Invariant; 10] = [
        Invariant::I1,
        Invariant::I2,
        Invariant::I3,
        Invariant::I6,
        Invariant::I11,
        Invariant::L1,
        Invariant::Budget,
        Invariant::Theft,
        Invariant::TrustAssumptionBroken,
        Invariant::EventBudget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Invariant::I1 => "I-1",
            Invariant::I2 => "I-2",
            Invariant::I3 => "I-3",
            Invariant::I6 => "I-6",
            Invariant::I11 => "I-11",
            Invariant::L1 => "L-1",
            Invariant::Budget => "budget",
            // --- checker ---
            Invariant::I4 => "I-4",
            Invariant::I5 => "I-5",
            Invariant::I8 => "I-8",
            Invariant::I9 => "I-9",
            Invariant::I10 => "I-10",
            Invariant::I12 => "I-12",
            Invariant::I14 => "I-14",
            Invariant::L2 => "L-2",
            Invariant::L3 => "L-3",
            Invariant::L4 => "L-4",
            Invariant::L8 => "L-8",
            Invariant::I7 => "I-7",
            Invariant::L7 => "L-7",
            Invariant::OpBudget(op, stat) => budget_name(op, stat),
            Invariant::Theft => "theft",
            Invariant::TrustAssumptionBroken => "trust-assumption-broken",
            Invariant::EventBudget => "event-budget",
            Invariant::WatchtowerDependence => "watchtower-dependence",
        }
    }

    /// Every name `[expect] invariant` accepts.
    pub fn every() -> Vec<Invariant> {
        let checker = [
            Invariant::I4,
            Invariant::I5,
            Invariant::I8,
            Invariant::I9,
            Invariant::I10,
            Invariant::I12,
            Invariant::I14,
            Invariant::L2,
            Invariant::L3,
            Invariant::L4,
            Invariant::L8,
            Invariant::I7,
            Invariant::L7,
            Invariant::WatchtowerDependence,
        ];
        let budgets = LatencyOp::ALL.into_iter().flat_map(|op| Stat::ALL.map(|s| Invariant::OpBudget(op, s)));
        Invariant::ALL.into_iter().chain(checker).chain(budgets).collect()
    }

    fn names() -> String {
        Invariant::every().iter().map(|i| i.as_str()).collect::<Vec<_>>().join(" ")
    }
}

impl std::fmt::Display for Invariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[expect]`: the expected outcome (default: pass).
/// - `outcome` = "pass" | "violation".
/// - `invariant`: required iff outcome is "violation"; one of I-1 I-2 I-3 I-4 I-5 I-6 I-8 I-9
///   I-10 I-11 I-12 I-14 L-1 L-2 L-3 L-4 L-8 I-7 L-7 budget budget:<op>.<stat> theft
///   trust-assumption-broken event-budget (see [`Invariant::every`]).
///   I-10 I-11 I-12 I-14 L-1 L-2 L-3 L-4 L-8 budget budget:<op>.<stat> theft
///   trust-assumption-broken event-budget watchtower-dependence (see [`Invariant::every`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expectation {
    #[default]
    Pass,
    Violation(Invariant),
}

/// `[run]`: how long to simulate.
/// - `max_sim_time_s` = 2_000_000.0: hard stop in simulated seconds, > 0.
/// - `settle_s` = 600.0: quiet time after faults heal before liveness is judged.
/// - `max_events` = 2_000_000: hard stop in events, 1..=10^10. A run that reaches it is an
///   `event-budget` finding (a message or timer storm: the simulated system does work that no
///   workload asked for); without it such a run would hang a campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSpec {
    pub max_sim_time: Micros,
    pub settle: Micros,
    pub max_events: u64,
}

impl RunSpec {
    /// Default `max_events`: 10× the quickstart's 205k events, under a minute of wall time in release.
    pub const DEFAULT_MAX_EVENTS: u64 = 2_000_000;
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            max_sim_time: Micros::from_secs(2_000_000),
            settle: Micros::from_secs(600),
            max_events: RunSpec::DEFAULT_MAX_EVENTS,
        }
    }
}

/// A scenario that does not parse or does not make sense, located in its file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: field `{field}`: {message}")]
pub struct ScenarioError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Dotted path, e.g. `topology.threshold` or `fault[1].node`.
    pub field: String,
    pub message: String,
}

/// Why [`Scenario::load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read scenario: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ScenarioError),
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Scenario, LoadError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: name.clone(),
            source,
        })?;
        Ok(Scenario::parse(&name, &text)?)
    }

    /// Parses and validates scenario text; `file_name` is only used in errors.
    pub fn parse(file_name: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let v = Validator {
            file: file_name,
            text,
        };
        let raw: RawScenario = toml::from_str(text).map_err(|e| v.locate_toml_error(&e))?;
        v.scenario(raw)
    }

    /// The network model for the engine, wildcards expanded.
    pub fn net_config(&self) -> NetConfig {
        let default = LinkConfig {
            latency: self.network.latency,
            loss: self.network.loss,
            duplicate: self.network.duplicate,
            reorder: self.network.reorder,
        };
        let mut links = BTreeMap::new();
        for o in &self.network.links {
            for from in o.from.expand(&self.topology) {
                for to in o.to.expand(&self.topology) {
                    if from == to {
                        continue;
                    }
                    let cur = links.get(&(from, to)).copied().unwrap_or(default);
                    let link = LinkConfig {
                        latency: o.latency.unwrap_or(cur.latency),
                        loss: o.loss.unwrap_or(cur.loss),
                        duplicate: o.duplicate.unwrap_or(cur.duplicate),
                        reorder: o.reorder.unwrap_or(cur.reorder),
                    };
                    links.insert((from, to), link);
                }
            }
        }
        NetConfig {
            default,
            links,
            reorder_delay: self.network.reorder_delay,
        }
    }

    /// The engine configuration this scenario asks for.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            net: self.net_config(),
            block_interval: Some(self.chain.block_interval),
            keep_digest_log: false,
        }
    }

    /// The partition windows of all partition faults, in file order.
    pub fn partition_windows(&self) -> Vec<PartitionWindow> {
        self.faults
            .iter()
            .flat_map(|f| f.partition_windows(&self.topology))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Raw (serde) layer
// ---------------------------------------------------------------------------------------------

type S<T> = Option<Spanned<T>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    description: Spanned<String>,
    seed: S<i64>,
    topology: Option<RawTopology>,
    network: Option<RawNetwork>,
    chain: Option<RawChain>,
    protocol: Option<RawProtocol>,
    workload: Option<RawWorkload>,
    #[serde(default)]
    fault: Vec<Spanned<RawFault>>,
    budgets: Option<RawBudgets>,
    expect: Option<Spanned<RawExpect>>,
    run: Option<RawRun>,
    #[serde(default)]
    byzantine: Vec<Spanned<RawByzantine>>,
    #[serde(default)]
    theft: Vec<Spanned<RawTheft>>,
    #[serde(default)]
    split: Vec<Spanned<RawSplit>>,
    #[serde(default)]
    aggregate: Vec<Spanned<RawAggregate>>,
    /// Watchtower and fees flow (`scenario_watchtower.rs`).
    watchtower: Option<watchtower::RawWatchtower>,
    #[serde(default)]
    race: Vec<Spanned<watchtower::RawRace>>,
    /// `true` or a table: read as a plain value so both forms are accepted.
    swarm: S<toml::Value>,
    ssp: Option<ssp::RawSsp>,
    /// Renew/send race (scenario/device.rs).
    #[serde(default)]
    device_race: Vec<Spanned<device::RawDeviceRace>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    operators: S<i64>,
    threshold: S<i64>,
    wallets: S<i64>,
    coordinator: S<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    /// A number or `{ min, max }`: read as a plain value so we can say what was wrong.
    latency_ms: S<toml::Value>,
    loss: S<f64>,
    #[serde(default)]
    link: Vec<Spanned<RawLink>>,
    duplicate: S<f64>,
    reorder: S<f64>,
    reorder_ms: S<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    from: Spanned<String>,
    to: Spanned<String>,
    latency_ms: S<toml::Value>,
    loss: S<f64>,
    duplicate: S<f64>,
    reorder: S<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    block_interval_s: S<f64>,
    deposit_confirmations: S<i64>,
    min_feerate_sat_vb: S<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtocol {
    gossip_retry_s: S<f64>,
    request_timeout_s: S<f64>,
    transfer_expiry_s: S<f64>,
    dkg_pool_min: S<i64>,
    dkg_batch: S<i64>,
    wallet_poll_s: S<f64>,
    test_faults: Option<Vec<Spanned<String>>>,
    hazards: Option<Vec<Spanned<String>>>,
    consensus: S<String>,
    flow_stale_s: S<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    deposits_per_wallet: S<i64>,
    deposit_sats: S<Vec<Spanned<i64>>>,
    transfers: S<i64>,
    transfer_start_s: S<f64>,
    transfer_interval_s: S<f64>,
    exits: S<i64>,
    exit_at_s: S<f64>,
    explicit: S<bool>,
    #[serde(default)]
    deposit: Vec<Spanned<RawDeposit>>,
    #[serde(default)]
    transfer: Vec<Spanned<RawTransfer>>,
    #[serde(default)]
    exit: Vec<Spanned<RawExit>>,
    /// Long-lived leaf (scenario/relay.rs): one leaf passed round a ring of wallets.
    #[serde(default)]
    relay: Vec<Spanned<relay::RawRelay>>,
    #[serde(default)]
    lightning: Vec<Spanned<lightning::RawLightning>>,
    /// Cooperative exits (scenario/coop_exit.rs): beside either kind of workload.
    #[serde(default)]
    coop_exit: Vec<Spanned<coop_exit::RawCoopExit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeposit {
    wallet: Spanned<String>,
    at_s: S<f64>,
    sats: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransfer {
    at_s: S<f64>,
    from: Spanned<String>,
    to: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExit {
    at_s: S<f64>,
    wallet: Spanned<String>,
}

/// Flat rather than a serde-tagged enum: internally tagged enums buffer their content, which
/// loses the spans, and a flat struct lets us say exactly which key a kind lacks or forbids.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: Spanned<String>,
    node: S<String>,
    at_s: S<f64>,
    restart_after_s: S<f64>,
    groups: S<Vec<Vec<Spanned<String>>>>,
    isolate: S<Vec<Spanned<String>>>,
    duration_s: S<f64>,
    // network, process and clock fault keys
    mid_handler: S<bool>,
    after_outputs: S<i64>,
    lose_unsynced: S<bool>,
    flap_on_s: S<f64>,
    flap_off_s: S<f64>,
    from: S<Vec<Spanned<String>>>,
    to: S<Vec<Spanned<String>>>,
    factor: S<f64>,
    skew_ms: S<f64>,
    drift_ppm: S<i64>,
    // --- L1 faults (reorg, fee_spike) ---
    depth: S<i64>,
    txs: S<String>,
    min_feerate_sat_vb: S<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudgets {
    transfer_p99_s: S<f64>,
    // --- checker ---
    deposit_p50_s: S<f64>,
    deposit_p99_s: S<f64>,
    deposit_max_s: S<f64>,
    send_p50_s: S<f64>,
    send_p99_s: S<f64>,
    send_max_s: S<f64>,
    claim_p50_s: S<f64>,
    claim_p99_s: S<f64>,
    claim_max_s: S<f64>,
    exit_p50_s: S<f64>,
    exit_p99_s: S<f64>,
    exit_max_s: S<f64>,
    liveness_s: S<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    outcome: Spanned<String>,
    invariant: S<String>,
    sometimes: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    max_sim_time_s: S<f64>,
    settle_s: S<f64>,
    max_events: S<i64>,
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Longest duration accepted anywhere (~31 years): keeps every conversion to µs exact-ish and
/// far from u64 overflow.
const MAX_SECONDS: f64 = 1e9;

/// Whether a duration may be zero.
#[derive(Clone, Copy, PartialEq)]
enum Zero {
    Allowed,
    Forbidden,
}

struct Validator<'a> {
    file: &'a str,
    text: &'a str,
}

type R<T> = Result<T, ScenarioError>;

impl Validator<'_> {
    fn err(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ScenarioError {
        let (line, column) = line_column(self.text, span.start);
        ScenarioError {
            file: self.file.to_owned(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Turns a serde/TOML error into a located one, naming the field as well as we can.
    fn locate_toml_error(&self, e: &toml::de::Error) -> ScenarioError {
        let span = e.span().unwrap_or(0..0);
        let start = floor_char_boundary(self.text, span.start);
        let mut message = e.message().trim().replace('\n', "; ");
        if message.is_empty() {
            // toml gives no message for some lexer errors (e.g. a control character in a comment).
            message = "invalid TOML here (a control character or malformed syntax)".to_owned();
        }
        let named = quoted_after(&message, "unknown field `")
            .or_else(|| quoted_after(&message, "missing field `"));
        let table = table_path_at(self.text, start);
        let field = match named {
            Some(key) => join_path(&table, &key),
            None => match key_path_at(self.text, start) {
                Some(key) => join_path(&table, &key),
                None if table.is_empty() => "(document)".to_owned(),
                None => table,
            },
        };
        self.err(start..start, field, message)
    }

    fn scenario(&self, raw: RawScenario) -> R<Scenario> {
        let name = self.non_empty(&raw.name, "name")?;
        let description = self.non_empty(&raw.description, "description")?;
        let seed = match &raw.seed {
            None => None,
            Some(s) => Some(u64::try_from(*s.get_ref()).map_err(|_| {
                self.err(
                    s.span(),
                    "seed",
                    format!("expected a non-negative integer, found {}", s.get_ref()),
                )
            })?),
        };
        let mut topology = match &raw.topology {
            None => Topology::default(),
            Some(t) => self.topology(t)?,
        };
        let ssp = raw.ssp.as_ref().map(|x| self.ssp(x, topology.wallets)).transpose()?;
        topology.ssp = ssp.is_some();
        let network = match &raw.network {
            None => NetworkSpec::default(),
            Some(n) => self.network(n, &topology)?,
        };
        let chain = match &raw.chain {
            None => ChainSpec::default(),
            Some(c) => ChainSpec {
                block_interval: self
                    .secs(
                        &c.block_interval_s,
                        "chain.block_interval_s",
                        Zero::Forbidden,
                    )?
                    .unwrap_or(ChainSpec::default().block_interval),
                deposit_confirmations: self.int(
                    &c.deposit_confirmations,
                    "chain.deposit_confirmations",
                    1..=i64::from(reference_node::chain::MAX_REORG_DEPTH),
                    1,
                )? as u32,
                min_feerate_sat_vb: self.int(
                    &c.min_feerate_sat_vb,
                    "chain.min_feerate_sat_vb",
                    0..=MAX_FEERATE_SAT_VB,
                    0,
                )? as u64,
            },
        };
        let protocol = match &raw.protocol {
            None => ProtocolSpec::default(),
            Some(p) => self.protocol(p)?,
        };
        let workload = match &raw.workload {
            None => WorkloadSpec::default(),
            Some(w) => self.workload(w, &topology)?,
        };
        let faults = raw
            .fault
            .iter()
            .enumerate()
            .map(|(i, f)| self.fault(i, f, &topology))
            .collect::<R<Vec<_>>>()?;
        let budgets = match &raw.budgets {
            None => Budgets::default(),
            Some(b) => self.budgets(b)?,
        };
        let expect = match &raw.expect {
            None => Expectation::Pass,
            Some(e) => self.expect(e)?,
        };
        let run = match &raw.run {
            None => RunSpec::default(),
            Some(r) => {
                let d = RunSpec::default();
                RunSpec {
                    max_sim_time: self
                        .secs(&r.max_sim_time_s, "run.max_sim_time_s", Zero::Forbidden)?
                        .unwrap_or(d.max_sim_time),
                    settle: self
                        .secs(&r.settle_s, "run.settle_s", Zero::Allowed)?
                        .unwrap_or(d.settle),
                    max_events: self.int(&r.max_events, "run.max_events", 1..=10_000_000_000, d.max_events as i64)? as u64,
                }
            }
        };
        let byzantine = self.byzantine(&raw.byzantine, &topology)?;
        let thefts = raw
            .theft
            .iter()
            .enumerate()
            .map(|(i, t)| self.theft(i, t, &topology))
            .collect::<R<Vec<_>>>()?;
        let splits = raw.split.iter().enumerate().map(|(i, t)| self.split(i, t, &topology)).collect::<R<Vec<_>>>()?;
        let aggregates = raw.aggregate.iter().enumerate().map(|(i, t)| self.aggregate(i, t, &topology)).collect::<R<Vec<_>>>()?;
        let watchtower = self.watchtower(raw.watchtower.as_ref(), &raw.race, &topology)?;
        let device_races = self.device_races(&raw.device_race, &topology)?;
        let coop_exits = match &raw.workload {
            None => Vec::new(),
            Some(w) => self.coop_exits(&w.coop_exit, &topology)?,
        };
        Ok(Scenario {
            device_races,
            watchtower,
            byzantine,
            thefts,
            splits,
            aggregates,
            file: self.file.to_owned(),
            name,
            description,
            seed,
            topology,
            network,
            chain,
            protocol,
            workload,
            faults,
            budgets,
            expect,
            run,
            swarm: match &raw.swarm {
                None => None,
                Some(v) => self.swarm(v)?,
            },
            expect_sometimes: match &raw.expect {
                None => BTreeSet::new(),
                Some(e) => self.expect_sometimes(e.get_ref().sometimes.as_deref().unwrap_or_default())?,
            },
            ssp,
            coop_exits,
        })
    }

    fn non_empty(&self, s: &Spanned<String>, field: &str) -> R<String> {
        if s.get_ref().trim().is_empty() {
            return Err(self.err(s.span(), field, "must not be empty"));
        }
        Ok(s.get_ref().clone())
    }

    /// An integer in `range`, or `default` when omitted.
    fn int(
        &self,
        v: &S<i64>,
        field: &str,
        range: std::ops::RangeInclusive<i64>,
        default: i64,
    ) -> R<i64> {
        match v {
            None => Ok(default),
            Some(s) if range.contains(s.get_ref()) => Ok(*s.get_ref()),
            Some(s) => Err(self.err(
                s.span(),
                field,
                format!(
                    "expected an integer in {}..={}, found {}",
                    range.start(),
                    range.end(),
                    s.get_ref()
                ),
            )),
        }
    }

    /// A duration in seconds, converted to µs.
    fn secs(&self, v: &S<f64>, field: &str, zero: Zero) -> R<Option<Micros>> {
        let Some(s) = v else { return Ok(None) };
        let x = *s.get_ref();
        let ok =
            x.is_finite() && x <= MAX_SECONDS && (x > 0.0 || (x == 0.0 && zero == Zero::Allowed));
        if !ok {
            let want = if zero == Zero::Allowed {
                "a duration ≥ 0"
            } else {
                "a duration > 0"
            };
            return Err(self.err(
                s.span(),
                field,
                format!("expected {want} seconds (at most {MAX_SECONDS}), found {x}"),
            ));
        }
        Ok(Some(Micros((x * 1e6).round() as u64)))
    }

    fn probability(&self, v: &S<f64>, field: &str) -> R<Option<f64>> {
        let Some(s) = v else { return Ok(None) };
        let p = *s.get_ref();
        if !(0.0..=1.0).contains(&p) {
            return Err(self.err(
                s.span(),
                field,
                format!("expected a probability in 0..=1, found {p}"),
            ));
        }
        Ok(Some(p))
    }

    fn topology(&self, t: &RawTopology) -> R<Topology> {
        let d = Topology::default();
        let operators = self.int(
            &t.operators,
            "topology.operators",
            1..=32,
            d.operators.into(),
        )?;
        let wallets = self.int(&t.wallets, "topology.wallets", 1..=1000, d.wallets.into())?;
        let threshold = match &t.threshold {
            None if i64::from(d.threshold) > operators => {
                // The default threshold only makes sense with enough operators.
                let span = t.operators.as_ref().map_or(0..0, |s| s.span());
                return Err(self.err(
                    span,
                    "topology.threshold",
                    format!(
                        "default threshold {} exceeds operators {operators}: set threshold",
                        d.threshold
                    ),
                ));
            }
            None => d.threshold.into(),
            Some(s) if *s.get_ref() > operators => {
                return Err(self.err(
                    s.span(),
                    "topology.threshold",
                    format!("threshold {} exceeds operators {operators}", s.get_ref()),
                ));
            }
            Some(_) => self.int(&t.threshold, "topology.threshold", 1..=operators, 0)?,
        };
        let coordinator = match &t.coordinator {
            Some(s) if (0..operators).contains(s.get_ref()) => *s.get_ref(),
            Some(s) => {
                return Err(self.err(
                    s.span(),
                    "topology.coordinator",
                    format!(
                        "coordinator {} is not an operator: expected 0..{operators}",
                        s.get_ref()
                    ),
                ));
            }
            None => 0,
        };
        // All four are range-checked above, so the narrowing casts are exact.
        Ok(Topology {
            operators: operators as u16,
            threshold: threshold as u16,
            wallets: wallets as u16,
            coordinator: OperatorId(coordinator as u16),
            ssp: false,
        })
    }

    fn latency(&self, v: &Spanned<toml::Value>, field: &str) -> R<Latency> {
        let ms = |x: &toml::Value| match x {
            toml::Value::Float(f) => Some(*f),
            toml::Value::Integer(i) => Some(*i as f64),
            _ => None,
        };
        let bad = |msg: String| self.err(v.span(), field, msg);
        let to_micros = |x: f64, what: &str| {
            if x.is_finite() && (0.0..=MAX_SECONDS * 1e3).contains(&x) {
                Ok(Micros((x * 1e3).round() as u64))
            } else {
                Err(bad(format!("{what}latency must be ≥ 0 ms, found {x}")))
            }
        };
        match v.get_ref() {
            toml::Value::Table(t) if t.get("dist").is_some_and(|d| d.as_str() == Some("pareto")) => {
                if let Some(k) = t.keys().find(|k| !["dist", "min", "max", "alpha"].contains(&k.as_str())) {
                    return Err(bad(format!(
                        "unknown key `{k}` in a pareto latency: expected `min`, `alpha` and `max`"
                    )));
                }
                let get = |k: &str| {
                    t.get(k)
                        .and_then(ms)
                        .ok_or_else(|| bad(format!("a pareto latency needs a number `{k}`")))
                };
                let (min, max) = (to_micros(get("min")?, "min ")?, to_micros(get("max")?, "max ")?);
                let alpha = get("alpha")?;
                if !(alpha.is_finite() && alpha > 0.0 && alpha <= 100.0) {
                    return Err(bad(format!("pareto alpha must be in (0, 100], found {alpha}")));
                }
                if min.0 == 0 || min > max {
                    return Err(bad(format!("pareto needs 0 < min ≤ max, found min {min} max {max}")));
                }
                Ok(Latency::Pareto { min, alpha, max })
            }
            toml::Value::Table(t) => {
                match t.get("dist") {
                    None => {}
                    Some(d) if d.as_str() == Some("uniform") => {}
                    Some(d) => {
                        return Err(bad(format!(
                            "unknown latency dist {d}: expected \"uniform\" or \"pareto\""
                        )))
                    }
                }
                if let Some(k) = t.keys().find(|k| *k != "min" && *k != "max" && *k != "dist") {
                    return Err(bad(format!(
                        "unknown key `{k}` in latency: expected `min` and `max`"
                    )));
                }
                let get = |k: &str| {
                    t.get(k)
                        .and_then(ms)
                        .ok_or_else(|| bad(format!("latency table needs a number `{k}` (ms)")))
                };
                let (min, max) = (
                    to_micros(get("min")?, "min ")?,
                    to_micros(get("max")?, "max ")?,
                );
                if min > max {
                    return Err(bad(format!("latency min {min} exceeds max {max}")));
                }
                Ok(Latency::Uniform { min, max })
            }
            other => match ms(other) {
                Some(x) => Ok(Latency::Fixed(to_micros(x, "")?)),
                None => Err(bad(format!(
                    "expected a number of ms or {{ min = .., max = .. }}, found {}",
                    other.type_str()
                ))),
            },
        }
    }

    fn network(&self, n: &RawNetwork, topo: &Topology) -> R<NetworkSpec> {
        let d = NetworkSpec::default();
        let latency = match &n.latency_ms {
            None => d.latency,
            Some(v) => self.latency(v, "network.latency_ms")?,
        };
        let loss = self.probability(&n.loss, "network.loss")?.unwrap_or(d.loss);
        let duplicate = self.probability(&n.duplicate, "network.duplicate")?.unwrap_or(d.duplicate);
        let reorder = self.probability(&n.reorder, "network.reorder")?.unwrap_or(d.reorder);
        let reorder_delay = match &n.reorder_ms {
            None => d.reorder_delay,
            Some(v) => {
                let x = *v.get_ref();
                if !(x.is_finite() && x > 0.0 && x <= MAX_SECONDS * 1e3) {
                    return Err(self.err(v.span(), "network.reorder_ms", format!("expected a delay > 0 ms, found {x}")));
                }
                Micros((x * 1e3).round() as u64)
            }
        };
        let mut links = Vec::new();
        for (i, l) in n.link.iter().enumerate() {
            let l = l.get_ref();
            let at = |k: &str| format!("network.link[{i}].{k}");
            let from = self.pattern(&l.from, &at("from"), topo, Allow::Wildcards)?;
            let to = self.pattern(&l.to, &at("to"), topo, Allow::Wildcards)?;
            let latency = l
                .latency_ms
                .as_ref()
                .map(|v| self.latency(v, &at("latency_ms")))
                .transpose()?;
            let loss = self.probability(&l.loss, &at("loss"))?;
            links.push(LinkOverride {
                from,
                to,
                latency,
                loss,
                duplicate: self.probability(&l.duplicate, &at("duplicate"))?,
                reorder: self.probability(&l.reorder, &at("reorder"))?,
            });
        }
        Ok(NetworkSpec {
            latency,
            loss,
            links,
            duplicate,
            reorder,
            reorder_delay,
        })
    }

    fn pattern(
        &self,
        s: &Spanned<String>,
        field: &str,
        topo: &Topology,
        allow: Allow,
    ) -> R<NodePattern> {
        let p = parse_node(s.get_ref(), topo).map_err(|m| self.err(s.span(), field, m))?;
        let wildcard = matches!(p, NodePattern::AllOperators | NodePattern::AllWallets);
        match allow {
            _ if p == NodePattern::Node(NodeId::Chain) => Err(self.err(
                s.span(),
                field,
                "`chain` cannot be used here: links to the chain are local (never delayed, lost or cut)",
            )),
            Allow::SingleNode if wildcard => {
                Err(self.err(s.span(), field, format!("expected a single node, found wildcard `{p}`")))
            }
            _ => Ok(p),
        }
    }

    fn protocol(&self, p: &RawProtocol) -> R<ProtocolSpec> {
        let d = ProtocolSpec::default();
        let mut test_faults = BTreeSet::new();
        for (i, f) in p.test_faults.iter().flatten().enumerate() {
            let Some((_, tf)) = TestFault::ALL.iter().find(|(n, _)| *n == f.get_ref()) else {
                let allowed: Vec<&str> = TestFault::ALL.iter().map(|(n, _)| *n).collect();
                return Err(self.err(
                    f.span(),
                    format!("protocol.test_faults[{i}]"),
                    format!(
                        "unknown test fault `{}`: allowed: {}",
                        f.get_ref(),
                        allowed.join(", ")
                    ),
                ));
            };
            test_faults.insert(*tf);
        }
        Ok(ProtocolSpec {
            gossip_retry: self
                .secs(
                    &p.gossip_retry_s,
                    "protocol.gossip_retry_s",
                    Zero::Forbidden,
                )?
                .unwrap_or(d.gossip_retry),
            request_timeout: self
                .secs(
                    &p.request_timeout_s,
                    "protocol.request_timeout_s",
                    Zero::Forbidden,
                )?
                .unwrap_or(d.request_timeout),
            transfer_expiry: self
                .secs(
                    &p.transfer_expiry_s,
                    "protocol.transfer_expiry_s",
                    Zero::Forbidden,
                )?
                .unwrap_or(d.transfer_expiry),
            dkg_pool_min: self.int(
                &p.dkg_pool_min,
                "protocol.dkg_pool_min",
                0..=10_000,
                d.dkg_pool_min.into(),
            )? as u32,
            dkg_batch: self.int(
                &p.dkg_batch,
                "protocol.dkg_batch",
                1..=10_000,
                d.dkg_batch.into(),
            )? as u32,
            wallet_poll: self
                .secs(&p.wallet_poll_s, "protocol.wallet_poll_s", Zero::Forbidden)?
                .unwrap_or(d.wallet_poll),
            test_faults,
            hazards: self.hazards(p.hazards.as_deref().unwrap_or_default())?,
            consensus: self.consensus(&p.consensus)?,
            flow_stale: self.flow_stale(p)?,
        })
    }

    fn workload(&self, w: &RawWorkload, topo: &Topology) -> R<WorkloadSpec> {
        let d = WorkloadSpec::default();
        let lightning = self.lightning_list(&w.lightning, topo)?;
        if let Some(explicit) = self.explicit_workload(w, topo)? {
            return Ok(WorkloadSpec {
                explicit: Some(explicit),
                lightning,
                ..d
            });
        }
        let deposit_sats = match &w.deposit_sats {
            None => d.deposit_sats,
            Some(list) if list.get_ref().is_empty() => {
                return Err(self.err(
                    list.span(),
                    "workload.deposit_sats",
                    "expected at least one amount",
                ));
            }
            Some(list) => list
                .get_ref()
                .iter()
                .enumerate()
                .map(|(i, a)| match u64::try_from(*a.get_ref()) {
                    Ok(v) if v > 0 => Ok(v),
                    _ => Err(self.err(
                        a.span(),
                        format!("workload.deposit_sats[{i}]"),
                        format!("expected an amount > 0 sats, found {}", a.get_ref()),
                    )),
                })
                .collect::<R<Vec<_>>>()?,
        };
        const MAX_COUNT: i64 = 1_000_000;
        Ok(WorkloadSpec {
            deposits_per_wallet: self.int(
                &w.deposits_per_wallet,
                "workload.deposits_per_wallet",
                0..=MAX_COUNT,
                d.deposits_per_wallet.into(),
            )? as u32,
            deposit_sats,
            transfers: self.int(
                &w.transfers,
                "workload.transfers",
                0..=MAX_COUNT,
                d.transfers.into(),
            )? as u32,
            transfer_start: self
                .secs(
                    &w.transfer_start_s,
                    "workload.transfer_start_s",
                    Zero::Allowed,
                )?
                .unwrap_or(d.transfer_start),
            transfer_interval_mean: self
                .secs(
                    &w.transfer_interval_s,
                    "workload.transfer_interval_s",
                    Zero::Forbidden,
                )?
                .unwrap_or(d.transfer_interval_mean),
            exits: self.int(&w.exits, "workload.exits", 0..=MAX_COUNT, d.exits.into())? as u32,
            exit_at: self.secs(&w.exit_at_s, "workload.exit_at_s", Zero::Allowed)?,
            explicit: None,
            lightning,
        })
    }

    /// The explicit workload, if `[workload]` asks for one (see [`ExplicitWorkload`]).
    fn explicit_workload(&self, w: &RawWorkload, topo: &Topology) -> R<Option<ExplicitWorkload>> {
        let flag = w.explicit.as_ref().map(|b| *b.get_ref());
        let lists = !(w.deposit.is_empty() && w.transfer.is_empty() && w.exit.is_empty() && w.relay.is_empty());
        if flag == Some(false) && lists {
            let span = w.explicit.as_ref().map_or(0..0, |b| b.span());
            return Err(self.err(span, "workload.explicit", "explicit = false, but deposit/transfer/exit lists are given"));
        }
        if !(flag == Some(true) || lists) {
            return Ok(None);
        }
        let random_keys = [
            ("deposits_per_wallet", w.deposits_per_wallet.as_ref().map(|s| s.span())),
            ("deposit_sats", w.deposit_sats.as_ref().map(|s| s.span())),
            ("transfers", w.transfers.as_ref().map(|s| s.span())),
            ("transfer_start_s", w.transfer_start_s.as_ref().map(|s| s.span())),
            ("transfer_interval_s", w.transfer_interval_s.as_ref().map(|s| s.span())),
            ("exits", w.exits.as_ref().map(|s| s.span())),
            ("exit_at_s", w.exit_at_s.as_ref().map(|s| s.span())),
        ];
        if let Some((k, Some(span))) = random_keys.into_iter().find(|(_, s)| s.is_some()) {
            return Err(self.err(
                span,
                format!("workload.{k}"),
                "an explicit workload (deposit/transfer/exit lists) cannot also set the random key",
            ));
        }
        let wallet = |s: &Spanned<String>, field: &str| match self.pattern(s, field, topo, Allow::SingleNode)? {
            NodePattern::Node(NodeId::Wallet(id)) => Ok(id),
            other => Err(self.err(s.span(), field, format!("expected a wallet (wallet:N), found {other}"))),
        };
        let time = |v: &S<f64>, field: &str, span: &Range<usize>| {
            self.secs(v, field, Zero::Allowed)?
                .ok_or_else(|| self.err(span.clone(), field, "needs `at_s`"))
        };
        let mut out = ExplicitWorkload::default();
        for (i, d) in w.deposit.iter().enumerate() {
            let (span, d) = (d.span(), d.get_ref());
            let at = |k: &str| format!("workload.deposit[{i}].{k}");
            let sats = match u64::try_from(*d.sats.get_ref()) {
                Ok(v) if v > 0 => v,
                _ => return Err(self.err(d.sats.span(), at("sats"), format!("expected an amount > 0 sats, found {}", d.sats.get_ref()))),
            };
            out.deposits.push(DepositAt { wallet: wallet(&d.wallet, &at("wallet"))?, at: time(&d.at_s, &at("at_s"), &span)?, sats });
        }
        for (i, t) in w.transfer.iter().enumerate() {
            let (span, t) = (t.span(), t.get_ref());
            let at = |k: &str| format!("workload.transfer[{i}].{k}");
            let (from, to) = (wallet(&t.from, &at("from"))?, wallet(&t.to, &at("to"))?);
            if from == to {
                return Err(self.err(t.to.span(), at("to"), format!("a wallet cannot send to itself ({})", t.to.get_ref())));
            }
            out.transfers.push(TransferAt { at: time(&t.at_s, &at("at_s"), &span)?, from, to });
        }
        for (i, e) in w.exit.iter().enumerate() {
            let (span, e) = (e.span(), e.get_ref());
            let at = |k: &str| format!("workload.exit[{i}].{k}");
            out.exits.push(ExitAt { at: time(&e.at_s, &at("at_s"), &span)?, wallet: wallet(&e.wallet, &at("wallet"))? });
        }
        out.relays = self.relays(&w.relay, topo)?;
        Ok(Some(out))
    }

    fn fault(&self, i: usize, f: &Spanned<RawFault>, topo: &Topology) -> R<FaultSpec> {
        let span = f.span();
        let f = f.get_ref();
        let at = |k: &str| format!("fault[{i}].{k}");
        let missing = |k: &str, kind: &str| {
            self.err(span.clone(), at(k), format!("a {kind} fault needs `{k}`"))
        };
        let forbid = |k: &str, present: Option<Range<usize>>, kind: &str| match present {
            Some(s) => Err(self.err(s, at(k), format!("`{k}` does not apply to a {kind} fault"))),
            None => Ok(()),
        };
        let at_s = self.secs(&f.at_s, &at("at_s"), Zero::Allowed)?;
        if let Some(spec) = self.l1_fault(i, f, span.clone(), at_s)? {
            return Ok(spec);
        }
        match f.kind.get_ref().as_str() {
            "crash" if f.mid_handler.as_ref().is_some_and(|m| *m.get_ref()) => {
                self.net_fault(i, f, span, topo)
            }
            "asymmetric_partition" | "slow_node" | "clock" => self.net_fault(i, f, span, topo),
            "crash" => {
                self.only_net_keys(i, f, "crash", &["mid_handler"])?;
                forbid("groups", f.groups.as_ref().map(|s| s.span()), "crash")?;
                forbid("isolate", f.isolate.as_ref().map(|s| s.span()), "crash")?;
                forbid(
                    "duration_s",
                    f.duration_s.as_ref().map(|s| s.span()),
                    "crash",
                )?;
                let node = f.node.as_ref().ok_or_else(|| missing("node", "crash"))?;
                let NodePattern::Node(node) =
                    self.pattern(node, &at("node"), topo, Allow::SingleNode)?
                else {
                    return Err(self.err(span, at("node"), "expected a single node"));
                };
                Ok(FaultSpec::Crash {
                    node,
                    at: at_s.ok_or_else(|| missing("at_s", "crash"))?,
                    restart_after: self.secs(
                        &f.restart_after_s,
                        &at("restart_after_s"),
                        Zero::Allowed,
                    )?,
                })
            }
            "partition" => {
                self.only_net_keys(i, f, "partition", &["flap_on_s", "flap_off_s"])?;
                forbid("node", f.node.as_ref().map(|s| s.span()), "partition")?;
                forbid(
                    "restart_after_s",
                    f.restart_after_s.as_ref().map(|s| s.span()),
                    "partition",
                )?;
                let groups = match (&f.groups, &f.isolate) {
                    (Some(_), Some(iso)) => {
                        return Err(self.err(
                            iso.span(),
                            at("isolate"),
                            "give either `groups` or `isolate`, not both",
                        ));
                    }
                    (None, None) => return Err(missing("groups` or `isolate", "partition")),
                    (Some(g), None) => {
                        if g.get_ref().is_empty() {
                            return Err(self.err(
                                g.span(),
                                at("groups"),
                                "expected at least one group",
                            ));
                        }
                        let mut out = Vec::new();
                        for (j, group) in g.get_ref().iter().enumerate() {
                            if group.is_empty() {
                                return Err(self.err(
                                    g.span(),
                                    format!("fault[{i}].groups[{j}]"),
                                    "empty group",
                                ));
                            }
                            out.push(self.group(
                                group,
                                &format!("fault[{i}].groups[{j}]"),
                                topo,
                            )?);
                        }
                        out
                    }
                    (None, Some(iso)) => {
                        if iso.get_ref().is_empty() {
                            return Err(self.err(
                                iso.span(),
                                at("isolate"),
                                "expected at least one node",
                            ));
                        }
                        vec![self.group(iso.get_ref(), &at("isolate"), topo)?]
                    }
                };
                self.disjoint(&groups, topo)
                    .map_err(|m| self.err(span.clone(), at("groups"), m))?;
                let partition = FaultSpec::Partition {
                    groups,
                    at: at_s.ok_or_else(|| missing("at_s", "partition"))?,
                    duration: self
                        .secs(&f.duration_s, &at("duration_s"), Zero::Forbidden)?
                        .ok_or_else(|| missing("duration_s", "partition"))?,
                };
                self.with_flap(i, f, span.clone(), partition)
            }
            other => Err(self.err(
                f.kind.span(),
                at("kind"),
                format!("unknown fault kind `{other}`: expected one of {}", FAULT_KINDS.join(", ")),
            )),
        }
    }

    fn group(
        &self,
        names: &[Spanned<String>],
        field: &str,
        topo: &Topology,
    ) -> R<Vec<NodePattern>> {
        names
            .iter()
            .enumerate()
            .map(|(k, n)| self.pattern(n, &format!("{field}[{k}]"), topo, Allow::Wildcards))
            .collect()
    }

    /// A node may sit in at most one group of a partition.
    fn disjoint(&self, groups: &[Vec<NodePattern>], topo: &Topology) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for g in groups {
            for id in g.iter().flat_map(|p| p.expand(topo)) {
                if !seen.insert(id) {
                    return Err(format!("{id} appears in more than one group"));
                }
            }
        }
        Ok(())
    }

    /// `[budgets]` (checker): every key a duration > 0.
    fn budgets(&self, b: &RawBudgets) -> R<Budgets> {
        let raw = [
            [&b.deposit_p50_s, &b.deposit_p99_s, &b.deposit_max_s],
            [&b.send_p50_s, &b.send_p99_s, &b.send_max_s],
            [&b.claim_p50_s, &b.claim_p99_s, &b.claim_max_s],
            [&b.exit_p50_s, &b.exit_p99_s, &b.exit_max_s],
        ];
        let mut ops = [[None; 3]; 4];
        for op in LatencyOp::ALL {
            for stat in Stat::ALL {
                let field = format!("budgets.{}_{}_s", op.as_str(), stat.as_str());
                ops[op as usize][stat as usize] = self.secs(raw[op as usize][stat as usize], &field, Zero::Forbidden)?;
            }
        }
        Ok(Budgets {
            transfer_p99: self.secs(&b.transfer_p99_s, "budgets.transfer_p99_s", Zero::Forbidden)?,
            ops,
            liveness: self.secs(&b.liveness_s, "budgets.liveness_s", Zero::Forbidden)?,
        })
    }

    /// `[expect] sometimes`: each a registered sometimes-property name.
    fn expect_sometimes(&self, raw: &[Spanned<String>]) -> R<BTreeSet<String>> {
        use crate::checker::properties::SOMETIMES;
        let mut out = BTreeSet::new();
        for (i, name) in raw.iter().enumerate() {
            if !SOMETIMES.iter().any(|(n, _)| n == name.get_ref()) {
                let known: Vec<&str> = SOMETIMES.iter().map(|(n, _)| *n).collect();
                return Err(self.err(name.span(), format!("expect.sometimes[{i}]"), format!("unknown sometimes-property `{}`: expected one of {}", name.get_ref(), known.join(", "))));
            }
            out.insert(name.get_ref().clone());
        }
        Ok(out)
    }

    fn expect(&self, e: &Spanned<RawExpect>) -> R<Expectation> {
        let raw = e.get_ref();
        match (raw.outcome.get_ref().as_str(), &raw.invariant) {
            ("pass", None) => Ok(Expectation::Pass),
            ("pass", Some(inv)) => {
                Err(self.err(inv.span(), "expect.invariant", "an invariant is only given with outcome = \"violation\""))
            }
            ("violation", None) => Err(self.err(
                e.span(),
                "expect.invariant",
                format!("outcome = \"violation\" needs `invariant` (one of {})", Invariant::names()),
            )),
            ("violation", Some(inv)) => match Invariant::every().into_iter().find(|i| i.as_str() == inv.get_ref()) {
                Some(i) => Ok(Expectation::Violation(i)),
                None => Err(self.err(
                    inv.span(),
                    "expect.invariant",
                    format!("unknown invariant `{}`: expected one of {}", inv.get_ref(), Invariant::names()),
                )),
            },
            (other, _) => Err(self.err(
                raw.outcome.span(),
                "expect.outcome",
                format!("expected \"pass\" or \"violation\", found \"{other}\""),
            )),
        }
    }
}

/// Every `[[fault]]` kind, for error messages.
const FAULT_KINDS: [&str; 8] = ["crash", "partition", "asymmetric_partition", "slow_node", "clock", "reorg", "block_delay", "fee_spike"];

/// The `[[fault]]` keys of the network, process and clock faults.
const NET_FAULT_KEYS: [&str; 10] = [
    "mid_handler",
    "after_outputs",
    "lose_unsynced",
    "flap_on_s",
    "flap_off_s",
    "from",
    "to",
    "factor",
    "skew_ms",
    "drift_ppm",
];

/// Every key present in a `[[fault]]` entry (except `kind`), with its span.
fn fault_keys(f: &RawFault) -> Vec<(&'static str, Range<usize>)> {
    fn sp<T>(k: &'static str, v: &S<T>) -> Option<(&'static str, Range<usize>)> {
        v.as_ref().map(|x| (k, x.span()))
    }
    [
        sp("node", &f.node),
        sp("at_s", &f.at_s),
        sp("restart_after_s", &f.restart_after_s),
        sp("groups", &f.groups),
        sp("isolate", &f.isolate),
        sp("duration_s", &f.duration_s),
        sp("mid_handler", &f.mid_handler),
        sp("after_outputs", &f.after_outputs),
        sp("lose_unsynced", &f.lose_unsynced),
        sp("flap_on_s", &f.flap_on_s),
        sp("flap_off_s", &f.flap_off_s),
        sp("from", &f.from),
        sp("to", &f.to),
        sp("factor", &f.factor),
        sp("skew_ms", &f.skew_ms),
        sp("drift_ppm", &f.drift_ppm),
        sp("depth", &f.depth),
        sp("txs", &f.txs),
        sp("min_feerate_sat_vb", &f.min_feerate_sat_vb),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Validation of the network, process and clock fault kinds and of `swarm`.
impl Validator<'_> {
    /// Rejects any network/process/clock key not in `allowed` (for the kinds that predate them).
    fn only_net_keys(&self, i: usize, f: &RawFault, kind: &str, allowed: &[&str]) -> R<()> {
        self.only_keys(i, f, kind, allowed, &NET_FAULT_KEYS)
    }

    /// Rejects any key among `checked` that is present but not in `allowed`.
    fn only_keys(&self, i: usize, f: &RawFault, kind: &str, allowed: &[&str], checked: &[&str]) -> R<()> {
        for (k, span) in fault_keys(f) {
            if checked.contains(&k) && !allowed.contains(&k) {
                let what = if kind == "crash" && ["after_outputs", "lose_unsynced"].contains(&k) {
                    "a crash without `mid_handler = true`".to_owned()
                } else {
                    format!("a {kind} fault")
                };
                return Err(self.err(span, format!("fault[{i}].{k}"), format!("`{k}` does not apply to {what}")));
            }
        }
        Ok(())
    }

    /// The (on, off) phases of a flapping partition, if `flap_on_s` / `flap_off_s` are given.
    fn flap(&self, i: usize, f: &RawFault, span: Range<usize>) -> R<Option<(Micros, Micros)>> {
        let on = self.secs(&f.flap_on_s, &format!("fault[{i}].flap_on_s"), Zero::Forbidden)?;
        let off = self.secs(&f.flap_off_s, &format!("fault[{i}].flap_off_s"), Zero::Forbidden)?;
        match (on, off) {
            (None, None) => Ok(None),
            (Some(on), Some(off)) => Ok(Some((on, off))),
            (Some(_), None) => Err(self.err(span, format!("fault[{i}].flap_off_s"), "`flap_on_s` needs `flap_off_s`")),
            (None, Some(_)) => Err(self.err(span, format!("fault[{i}].flap_on_s"), "`flap_off_s` needs `flap_on_s`")),
        }
    }

    /// A symmetric partition becomes a flapping one when flap keys are given.
    fn with_flap(&self, i: usize, f: &RawFault, span: Range<usize>, partition: FaultSpec) -> R<FaultSpec> {
        match (self.flap(i, f, span)?, partition) {
            (Some(flap), FaultSpec::Partition { groups, at, duration }) => Ok(FaultSpec::NetPartition {
                groups,
                direction: Direction::Both,
                at,
                duration,
                flap: Some(flap),
            }),
            (_, p) => Ok(p),
        }
    }

    fn net_fault(&self, i: usize, f: &RawFault, span: Range<usize>, topo: &Topology) -> R<FaultSpec> {
        let kind = f.kind.get_ref().as_str();
        let at = |k: &str| format!("fault[{i}].{k}");
        let missing = |k: &str| self.err(span.clone(), at(k), format!("a {kind} fault needs `{k}`"));
        let all: Vec<&str> = fault_keys(f).into_iter().map(|(k, _)| k).collect();
        let at_s = self.secs(&f.at_s, &at("at_s"), Zero::Allowed)?;
        let duration = self.secs(&f.duration_s, &at("duration_s"), Zero::Forbidden)?;
        let node_pattern = |allow: Allow| -> R<NodePattern> {
            let node = f.node.as_ref().ok_or_else(|| missing("node"))?;
            self.pattern(node, &at("node"), topo, allow)
        };
        match kind {
            "crash" => {
                let allowed = ["node", "at_s", "restart_after_s", "mid_handler", "after_outputs", "lose_unsynced"];
                self.only_keys(i, f, kind, &allowed, &all)?;
                let NodePattern::Node(node) = node_pattern(Allow::SingleNode)? else {
                    return Err(self.err(span, at("node"), "expected a single node"));
                };
                Ok(FaultSpec::CrashMidHandler {
                    node,
                    at: at_s.ok_or_else(|| missing("at_s"))?,
                    after_outputs: f
                        .after_outputs
                        .as_ref()
                        .map(|_| self.int(&f.after_outputs, &at("after_outputs"), 0..=1_000_000, 0))
                        .transpose()?
                        .map(|n| n as u32),
                    lose_unsynced: f.lose_unsynced.as_ref().is_some_and(|b| *b.get_ref()),
                    restart_after: self.secs(&f.restart_after_s, &at("restart_after_s"), Zero::Allowed)?,
                })
            }
            "asymmetric_partition" => {
                let allowed = ["from", "to", "at_s", "duration_s", "flap_on_s", "flap_off_s"];
                self.only_keys(i, f, kind, &allowed, &all)?;
                let from = f.from.as_ref().ok_or_else(|| missing("from"))?;
                if from.get_ref().is_empty() {
                    return Err(self.err(from.span(), at("from"), "expected at least one node"));
                }
                let mut groups = vec![self.group(from.get_ref(), &at("from"), topo)?];
                if let Some(to) = &f.to {
                    if to.get_ref().is_empty() {
                        return Err(self.err(to.span(), at("to"), "expected at least one node"));
                    }
                    groups.push(self.group(to.get_ref(), &at("to"), topo)?);
                }
                self.disjoint(&groups, topo).map_err(|m| self.err(span.clone(), at("to"), m))?;
                Ok(FaultSpec::NetPartition {
                    groups,
                    direction: Direction::OneWay,
                    at: at_s.ok_or_else(|| missing("at_s"))?,
                    duration: duration.ok_or_else(|| missing("duration_s"))?,
                    flap: self.flap(i, f, span.clone())?,
                })
            }
            "slow_node" => {
                self.only_keys(i, f, kind, &["node", "factor", "at_s", "duration_s"], &all)?;
                let node = node_pattern(Allow::Wildcards)?;
                let fs = f.factor.as_ref().ok_or_else(|| missing("factor"))?;
                let factor = *fs.get_ref();
                if !(factor.is_finite() && (1.0..=1e6).contains(&factor)) {
                    return Err(self.err(fs.span(), at("factor"), format!("expected a factor in 1..=1000000, found {factor}")));
                }
                Ok(FaultSpec::SlowNode { node, factor, at: at_s.unwrap_or(Micros::ZERO), duration })
            }
            "clock" => {
                self.only_keys(i, f, kind, &["node", "skew_ms", "drift_ppm", "at_s"], &all)?;
                let node = node_pattern(Allow::Wildcards)?;
                let skew_us = match &f.skew_ms {
                    None => 0,
                    Some(v) => {
                        let x = *v.get_ref();
                        if !(x.is_finite() && x.abs() <= MAX_SECONDS * 1e3) {
                            return Err(self.err(v.span(), at("skew_ms"), format!("expected a skew within ±{} ms, found {x}", MAX_SECONDS * 1e3)));
                        }
                        (x * 1e3).round() as i64
                    }
                };
                let range = crate::clock::MIN_DRIFT_PPM..=crate::clock::MAX_DRIFT_PPM;
                let drift_ppm = self.int(&f.drift_ppm, &at("drift_ppm"), range, 0)?;
                if f.skew_ms.is_none() && f.drift_ppm.is_none() {
                    return Err(missing("skew_ms` or `drift_ppm"));
                }
                Ok(FaultSpec::Clock { node, skew_us, drift_ppm, at: at_s.unwrap_or(Micros::ZERO) })
            }
            other => Err(self.err(f.kind.span(), at("kind"), format!("unknown fault kind `{other}`"))),
        }
    }

    /// `swarm = true | false` or a `[swarm]` table (see [`SwarmSpec`]).
    fn swarm(&self, v: &Spanned<toml::Value>) -> R<Option<SwarmSpec>> {
        let bad = |field: &str, msg: String| self.err(v.span(), field, msg);
        let t = match v.get_ref() {
            toml::Value::Boolean(true) => return Ok(Some(SwarmSpec::default())),
            toml::Value::Boolean(false) => return Ok(None),
            toml::Value::Table(t) => t,
            other => return Err(bad("swarm", format!("expected `true`, `false` or a table, found {}", other.type_str()))),
        };
        let mut spec = SwarmSpec::default();
        let num = |k: &str| -> R<Option<f64>> {
            match t.get(k) {
                None => Ok(None),
                Some(toml::Value::Float(x)) => Ok(Some(*x)),
                Some(toml::Value::Integer(x)) => Ok(Some(*x as f64)),
                Some(o) => Err(bad(&format!("swarm.{k}"), format!("expected a number, found {}", o.type_str()))),
            }
        };
        let in_range = |k: &str, lo: f64, hi: f64| -> R<Option<f64>> {
            match num(k)? {
                Some(x) if !(x.is_finite() && (lo..=hi).contains(&x)) => {
                    Err(bad(&format!("swarm.{k}"), format!("expected a value in {lo}..={hi}, found {x}")))
                }
                x => Ok(x),
            }
        };
        for (k, val) in t {
            match k.as_str() {
                "kinds" => {
                    let names = val.as_array().ok_or_else(|| bad("swarm.kinds", "expected a list of kind names".into()))?;
                    let mut set = BTreeSet::new();
                    for (j, n) in names.iter().enumerate() {
                        let known = crate::swarm::kind_names();
                        match n.as_str() {
                            Some(n) if known.contains(&n) => {
                                set.insert(n.to_owned());
                            }
                            _ => {
                                return Err(bad(
                                    &format!("swarm.kinds[{j}]"),
                                    format!("unknown swarm kind {n}: expected one of {}", known.join(", ")),
                                ))
                            }
                        }
                    }
                    spec.kinds = Some(set);
                }
                "p_on" => spec.p_on = in_range(k, 0.0, 1.0)?.unwrap_or(spec.p_on),
                "max_loss" => spec.max_loss = in_range(k, 0.0, 1.0)?.unwrap_or(spec.max_loss),
                "max_crashes" => spec.max_crashes = in_range(k, 0.0, 100.0)?.map_or(spec.max_crashes, |x| x as u32),
                "max_skew_ms" => spec.max_skew_ms = in_range(k, 0.0, MAX_SECONDS * 1e3)?.unwrap_or(spec.max_skew_ms),
                "max_drift_ppm" => spec.max_drift_ppm = in_range(k, 0.0, 900_000.0)?.map_or(spec.max_drift_ppm, |x| x as i64),
                "max_slow_factor" => spec.max_slow_factor = in_range(k, 1.0, 1e6)?.unwrap_or(spec.max_slow_factor),
                other => {
                    return Err(bad(
                        &format!("swarm.{other}"),
                        format!("unknown key `{other}` in swarm: expected kinds, p_on, max_loss, max_crashes, max_skew_ms, max_drift_ppm, max_slow_factor"),
                    ))
                }
            }
        }
        Ok(Some(spec))
    }
}

// ---------------------------------------------------------------------------------------------
// L1 faults (reorg, block_delay, fee_spike): see `crate::l1faults`.
// ---------------------------------------------------------------------------------------------

/// Highest feerate floor a scenario may ask for (sat/vB).
const MAX_FEERATE_SAT_VB: i64 = 100_000;

impl Validator<'_> {
    /// An L1 fault, or `None` when `kind` is another kind (then its L1 keys must be absent).
    fn l1_fault(&self, i: usize, f: &RawFault, span: Range<usize>, at_s: Option<Micros>) -> R<Option<FaultSpec>> {
        use crate::l1faults::{L1Fault, KINDS};
        use reference_node::chain::{ReorgTxs, MAX_REORG_DEPTH};
        let kind = f.kind.get_ref().as_str();
        let at = |k: &str| format!("fault[{i}].{k}");
        let forbid = |k: &str, present: Option<Range<usize>>| match present {
            Some(s) => Err(self.err(s, at(k), format!("`{k}` does not apply to a {kind} fault"))),
            None => Ok(()),
        };
        let missing = |k: &str| self.err(span.clone(), at(k), format!("a {kind} fault needs `{k}`"));
        if !KINDS.contains(&kind) {
            forbid("depth", f.depth.as_ref().map(|s| s.span()))?;
            forbid("txs", f.txs.as_ref().map(|s| s.span()))?;
            forbid("min_feerate_sat_vb", f.min_feerate_sat_vb.as_ref().map(|s| s.span()))?;
            return Ok(None);
        }
        // None of the network, process and clock keys apply to an L1 fault.
        self.only_net_keys(i, f, kind, &[])?;
        forbid("node", f.node.as_ref().map(|s| s.span()))?;
        forbid("restart_after_s", f.restart_after_s.as_ref().map(|s| s.span()))?;
        forbid("groups", f.groups.as_ref().map(|s| s.span()))?;
        forbid("isolate", f.isolate.as_ref().map(|s| s.span()))?;
        let at_time = at_s.ok_or_else(|| missing("at_s"))?;
        let duration = || -> R<Micros> {
            self.secs(&f.duration_s, &at("duration_s"), Zero::Forbidden)?.ok_or_else(|| missing("duration_s"))
        };
        let fault = match kind {
            "reorg" => {
                forbid("duration_s", f.duration_s.as_ref().map(|s| s.span()))?;
                forbid("min_feerate_sat_vb", f.min_feerate_sat_vb.as_ref().map(|s| s.span()))?;
                if f.depth.is_none() {
                    return Err(missing("depth"));
                }
                let depth = self.int(&f.depth, &at("depth"), 1..=i64::from(MAX_REORG_DEPTH), 1)? as u32;
                let txs = match &f.txs {
                    None => ReorgTxs::Return,
                    Some(t) => match t.get_ref().as_str() {
                        "return" => ReorgTxs::Return,
                        "drop" => ReorgTxs::Drop,
                        other => {
                            return Err(self.err(t.span(), at("txs"), format!("expected \"return\" or \"drop\", found \"{other}\"")))
                        }
                    },
                };
                L1Fault::Reorg { at: at_time, depth, txs }
            }
            "block_delay" => {
                forbid("depth", f.depth.as_ref().map(|s| s.span()))?;
                forbid("txs", f.txs.as_ref().map(|s| s.span()))?;
                forbid("min_feerate_sat_vb", f.min_feerate_sat_vb.as_ref().map(|s| s.span()))?;
                L1Fault::BlockDelay { at: at_time, duration: duration()? }
            }
            _ => {
                forbid("depth", f.depth.as_ref().map(|s| s.span()))?;
                forbid("txs", f.txs.as_ref().map(|s| s.span()))?;
                if f.min_feerate_sat_vb.is_none() {
                    return Err(missing("min_feerate_sat_vb"));
                }
                let floor = self.int(&f.min_feerate_sat_vb, &at("min_feerate_sat_vb"), 1..=MAX_FEERATE_SAT_VB, 1)? as u64;
                L1Fault::FeeSpike { at: at_time, duration: duration()?, min_feerate_sat_vb: floor }
            }
        };
        Ok(Some(FaultSpec::L1(fault)))
    }
}

#[derive(Clone, Copy)]
enum Allow {
    Wildcards,
    SingleNode,
}

/// Parses a node name against the topology.
fn parse_node(s: &str, topo: &Topology) -> Result<NodePattern, String> {
    let unknown = || {
        format!("unknown node `{s}`: expected operator:N, wallet:N, chain, operator:* or wallet:*")
    };
    if s == "chain" {
        return Ok(NodePattern::Node(NodeId::Chain));
    }
    if s == "ssp" {
        return match topo.ssp_wallet() {
            Some(w) => Ok(NodePattern::Node(NodeId::Wallet(w))),
            None => Err("`ssp` names the service provider, and this scenario has no [ssp] table".into()),
        };
    }
    let (kind, index) = s.split_once(':').ok_or_else(unknown)?;
    let (count, wildcard) = match kind {
        "operator" => (topo.operators, NodePattern::AllOperators),
        // `wallet:N` with N = `wallets` is the SSP (reports name it so); `wallet:*` is the
        // workload's wallets only.
        "wallet" => (topo.wallets + u16::from(topo.ssp), NodePattern::AllWallets),
        _ => return Err(unknown()),
    };
    if index == "*" {
        return Ok(wildcard);
    }
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unknown());
    }
    match index.parse::<u16>() {
        Ok(i) if i < count => Ok(NodePattern::Node(match kind {
            "operator" => NodeId::Operator(OperatorId(i)),
            _ => NodeId::Wallet(WalletId(i)),
        })),
        _ => Err(format!(
            "{s} does not exist: topology has {count} {kind}s ({kind}:0..{kind}:{})",
            count.saturating_sub(1)
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Byzantine operators, thefts and hazards (spark-protocol §5.1, §8.2)
// ---------------------------------------------------------------------------------------------

/// A known Spark hazard (spark-protocol §8.2), switched back on in `protocol.hazards` to prove the
/// simulator finds it (`scenarios/regressions/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hazard {
    /// Gossip receivers acknowledge a message they failed to apply (I-12).
    GossipAckUnapplied,
    /// buildonspark/spark#24: a failed claim is rolled back after COMMIT was decided (I-3).
    ClaimSettleSplit,
    /// breez/spark-sdk#314: claim refunds keep the old refund's timelock (I-6).
    ClaimSkipTimelockDecrement,
    /// Renew: renew-node accepted on a CSV-0 leaf node, whose split node then ties the old
    /// node at CSV 0 on the same outpoint (I-7).
    RenewNodeOnZeroCsv,
    /// breez/spark-sdk#482 (buildonspark/spark#70): a wallet takes the refused stale send of its
    /// second device as spent and drops the leaf (I-9: balance 0 while the operators hold it).
    StaleSendDropsLeaf,
}

impl Hazard {
    pub const ALL: [(&'static str, Hazard); 5] = [
        ("gossip_ack_unapplied", Hazard::GossipAckUnapplied),
        ("claim_settle_split", Hazard::ClaimSettleSplit),
        ("claim_skip_timelock_decrement", Hazard::ClaimSkipTimelockDecrement),
        ("renew_node_on_zero_csv", Hazard::RenewNodeOnZeroCsv),
        ("stale_send_drops_leaf", Hazard::StaleSendDropsLeaf),
    ];
}

/// One `[[byzantine]]` entry: an operator that does not follow the protocol.
/// - `operator` (required): `operator:N`, each operator at most once.
/// - `behaviours` (required, non-empty): any of "wrong_share", "nonce_reuse", "equivocation",
///   "withhold", "replay_stale", "forged_tweak", "keep_old_shares"
///   (`reference_node::params::Behaviour`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByzantineSpec {
    pub operator: OperatorId,
    pub behaviours: BTreeSet<reference_node::params::Behaviour>,
}

/// One `[[theft]]` entry: at `at_s` the wallet tries to spend the first leaf it sent away, asking
/// every operator to co-sign with old key shares (only `keep_old_shares` operators answer).
/// - `wallet` (required): `wallet:N`.
/// - `at_s` (required): when, in simulated seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TheftSpec {
    pub wallet: WalletId,
    pub at: Micros,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawByzantine {
    operator: Spanned<String>,
    behaviours: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTheft {
    wallet: Spanned<String>,
    at_s: Spanned<f64>,
}

/// `protocol.flow_stale_s` when not given (Spark's 60 s presumed-abort age).
pub const FLOW_STALE_DEFAULT: Micros = Micros::from_secs(60);

/// `protocol.consensus` values (two-phase commit mode).
pub const CONSENSUS_MODES: [(&str, reference_node::consensus::Consensus); 2] =
    [("gossip", reference_node::consensus::Consensus::Gossip), ("two_phase", reference_node::consensus::Consensus::TwoPhase)];

impl Validator<'_> {
    /// Two-phase commit mode: `protocol.consensus`.
    fn consensus(&self, raw: &S<String>) -> R<reference_node::consensus::Consensus> {
        let Some(v) = raw else { return Ok(reference_node::consensus::Consensus::Gossip) };
        CONSENSUS_MODES.iter().find(|(n, _)| *n == v.get_ref()).map(|(_, c)| *c).ok_or_else(|| {
            let allowed: Vec<&str> = CONSENSUS_MODES.iter().map(|(n, _)| *n).collect();
            self.err(v.span(), "protocol.consensus", format!("unknown consensus mode `{}`: allowed: {}", v.get_ref(), allowed.join(", ")))
        })
    }

    /// Two-phase commit mode: `protocol.flow_stale_s`, > 0 and only with `consensus = "two_phase"`.
    fn flow_stale(&self, p: &RawProtocol) -> R<Micros> {
        let Some(v) = self.secs(&p.flow_stale_s, "protocol.flow_stale_s", Zero::Forbidden)? else { return Ok(FLOW_STALE_DEFAULT) };
        if self.consensus(&p.consensus)? != reference_node::consensus::Consensus::TwoPhase {
            let span = p.flow_stale_s.as_ref().map(|x| x.span()).unwrap_or_default();
            return Err(self.err(span, "protocol.flow_stale_s", "applies only with consensus = \"two_phase\" (the gossip mode has no flows)".to_owned()));
        }
        Ok(v)
    }

    fn hazards(&self, raw: &[Spanned<String>]) -> R<BTreeSet<Hazard>> {
        let mut out = BTreeSet::new();
        for (i, h) in raw.iter().enumerate() {
            let Some((_, hz)) = Hazard::ALL.iter().find(|(n, _)| *n == h.get_ref()) else {
                let allowed: Vec<&str> = Hazard::ALL.iter().map(|(n, _)| *n).collect();
                return Err(self.err(h.span(), format!("protocol.hazards[{i}]"), format!("unknown hazard `{}`: allowed: {}", h.get_ref(), allowed.join(", "))));
            };
            out.insert(*hz);
        }
        Ok(out)
    }

    fn byzantine(&self, raw: &[Spanned<RawByzantine>], topo: &Topology) -> R<Vec<ByzantineSpec>> {
        use reference_node::params::Behaviour;
        let mut out: Vec<ByzantineSpec> = Vec::new();
        for (i, entry) in raw.iter().enumerate() {
            let b = entry.get_ref();
            let field = format!("byzantine[{i}].operator");
            let operator = match parse_node(b.operator.get_ref(), topo) {
                Ok(NodePattern::Node(NodeId::Operator(o))) => o,
                Ok(_) => return Err(self.err(b.operator.span(), field, format!("expected one operator (operator:N), found `{}`", b.operator.get_ref()))),
                Err(e) => return Err(self.err(b.operator.span(), field, e)),
            };
            if out.iter().any(|x| x.operator == operator) {
                return Err(self.err(b.operator.span(), field, format!("{operator} is listed twice; put all its behaviours in one entry")));
            }
            if b.behaviours.get_ref().is_empty() {
                return Err(self.err(b.behaviours.span(), format!("byzantine[{i}].behaviours"), "list at least one behaviour"));
            }
            let mut behaviours = BTreeSet::new();
            for (j, name) in b.behaviours.get_ref().iter().enumerate() {
                let Some((_, beh)) = Behaviour::ALL.iter().find(|(n, _)| *n == name.get_ref()) else {
                    let allowed: Vec<&str> = Behaviour::ALL.iter().map(|(n, _)| *n).collect();
                    return Err(self.err(name.span(), format!("byzantine[{i}].behaviours[{j}]"), format!("unknown behaviour `{}`: allowed: {}", name.get_ref(), allowed.join(", "))));
                };
                behaviours.insert(*beh);
            }
            out.push(ByzantineSpec { operator, behaviours });
        }
        Ok(out)
    }

    fn theft(&self, i: usize, t: &Spanned<RawTheft>, topo: &Topology) -> R<TheftSpec> {
        let t = t.get_ref();
        let field = format!("theft[{i}].wallet");
        let wallet = match parse_node(t.wallet.get_ref(), topo) {
            Ok(NodePattern::Node(NodeId::Wallet(w))) => w,
            Ok(_) => return Err(self.err(t.wallet.span(), field, format!("expected one wallet (wallet:N), found `{}`", t.wallet.get_ref()))),
            Err(e) => return Err(self.err(t.wallet.span(), field, e)),
        };
        let at = self.secs(&Some(t.at_s.clone()), &format!("theft[{i}].at_s"), Zero::Allowed)?.unwrap_or(Micros::ZERO);
        Ok(TheftSpec { wallet, at })
    }
}

// --- Split (reference-node/src/operator/split.rs, wallet/split.rs; spark-protocol §2.6) ---

/// One `[[split]]` entry: at `at_s` the wallet splits one of its available leaves.
/// - `wallet` (required): `wallet:N`.
/// - `at_s` (required): when, in simulated seconds.
/// - `values` (optional): the children's values in sats, each > 0, 2 to 64 of them; the wallet
///   splits a leaf worth exactly their sum. Omitted or empty: the first leaf with at least two
///   power-of-two denominations is split into them (the SDK's 2^0 … 2^27 leaf set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitSpec {
    pub wallet: WalletId,
    pub at: Micros,
    pub values: Vec<u64>,
}

/// One `[[aggregate]]` entry: at `at_s` the wallet folds the children of a leaf it split back
/// into it (the operators refuse unless it owns every child again).
/// - `wallet` (required): `wallet:N`.
/// - `at_s` (required): when, in simulated seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AggregateSpec {
    pub wallet: WalletId,
    pub at: Micros,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAggregate {
    wallet: Spanned<String>,
    at_s: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSplit {
    wallet: Spanned<String>,
    at_s: Spanned<f64>,
    values: S<Vec<Spanned<i64>>>,
}

impl Validator<'_> {
    fn split(&self, i: usize, t: &Spanned<RawSplit>, topo: &Topology) -> R<SplitSpec> {
        let t = t.get_ref();
        let field = format!("split[{i}].wallet");
        let wallet = match parse_node(t.wallet.get_ref(), topo) {
            Ok(NodePattern::Node(NodeId::Wallet(w))) => w,
            Ok(_) => return Err(self.err(t.wallet.span(), field, format!("expected one wallet (wallet:N), found `{}`", t.wallet.get_ref()))),
            Err(e) => return Err(self.err(t.wallet.span(), field, e)),
        };
        let at = self.secs(&Some(t.at_s.clone()), &format!("split[{i}].at_s"), Zero::Allowed)?.unwrap_or(Micros::ZERO);
        let mut values = Vec::new();
        if let Some(list) = &t.values {
            let max = reference_node::tx::split::MAX_SPLIT_CHILDREN;
            if list.get_ref().len() == 1 || list.get_ref().len() > max {
                return Err(self.err(list.span(), format!("split[{i}].values"), format!("expected 2 to {max} child values (or none), found {}", list.get_ref().len())));
            }
            for (j, v) in list.get_ref().iter().enumerate() {
                match u64::try_from(*v.get_ref()) {
                    Ok(sats) if sats > 0 => values.push(sats),
                    _ => return Err(self.err(v.span(), format!("split[{i}].values[{j}]"), format!("expected an amount > 0 sats, found {}", v.get_ref()))),
                }
            }
        }
        Ok(SplitSpec { wallet, at, values })
    }

    fn aggregate(&self, i: usize, t: &Spanned<RawAggregate>, topo: &Topology) -> R<AggregateSpec> {
        let t = t.get_ref();
        let field = format!("aggregate[{i}].wallet");
        let wallet = match parse_node(t.wallet.get_ref(), topo) {
            Ok(NodePattern::Node(NodeId::Wallet(w))) => w,
            Ok(_) => return Err(self.err(t.wallet.span(), field, format!("expected one wallet (wallet:N), found `{}`", t.wallet.get_ref()))),
            Err(e) => return Err(self.err(t.wallet.span(), field, e)),
        };
        let at = self.secs(&Some(t.at_s.clone()), &format!("aggregate[{i}].at_s"), Zero::Allowed)?.unwrap_or(Micros::ZERO);
        Ok(AggregateSpec { wallet, at })
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;

    const HEAD: &str = "name = \"x\"\ndescription = \"d\"\n";

    #[test]
    fn split_keys_parse_and_bad_values_name_their_field() {
        let s = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[[split]]\nwallet = \"wallet:1\"\nat_s = 5.0\nvalues = [3, 4]\n")).expect("parses");
        assert_eq!(s.splits, vec![SplitSpec { wallet: WalletId(1), at: Micros::from_secs(5), values: vec![3, 4] }]);
        let err = |t: &str| Scenario::parse("scenarios/x.toml", &format!("{HEAD}{t}")).expect_err(t);
        let e = err("[[split]]\nwallet = \"wallet:0\"\nat_s = 1.0\nvalues = [5, 0]\n");
        assert_eq!(e.field, "split[0].values[1]", "{e}");
        let e = err("[[split]]\nwallet = \"wallet:0\"\nat_s = 1.0\nvalues = [5]\n");
        assert_eq!(e.field, "split[0].values", "{e}");
        let e = err("[[split]]\nwallet = \"operator:0\"\nat_s = 1.0\n");
        assert_eq!(e.field, "split[0].wallet", "{e}");
        let e = err("[[aggregate]]\nwallet = \"wallet:0\"\nat_s = -1.0\n");
        assert_eq!(e.field, "aggregate[0].at_s", "{e}");
    }
}

#[cfg(test)]
mod adversary_tests {
    use super::*;
    use reference_node::params::Behaviour;

    const HEAD: &str = "name = \"x\"\ndescription = \"d\"\n";

    fn err(text: &str) -> ScenarioError {
        Scenario::parse("scenarios/x.toml", &format!("{HEAD}{text}")).expect_err(text)
    }

    #[test]
    fn byzantine_theft_and_hazard_keys_parse() {
        let text = format!(
            "{HEAD}[protocol]\nhazards = [\"claim_settle_split\", \"gossip_ack_unapplied\"]\n\
             [[byzantine]]\noperator = \"operator:3\"\nbehaviours = [\"wrong_share\", \"keep_old_shares\"]\n\
             [[theft]]\nwallet = \"wallet:1\"\nat_s = 2100.0\n"
        );
        let s = Scenario::parse("x.toml", &text).expect("parses");
        assert_eq!(s.protocol.hazards, BTreeSet::from([Hazard::ClaimSettleSplit, Hazard::GossipAckUnapplied]));
        assert_eq!(s.byzantine, vec![ByzantineSpec { operator: OperatorId(3), behaviours: BTreeSet::from([Behaviour::WrongShare, Behaviour::KeepOldShares]) }]);
        assert_eq!(s.thefts, vec![TheftSpec { wallet: WalletId(1), at: Micros::from_secs(2100) }]);
        let plain = Scenario::parse("x.toml", HEAD).expect("parses");
        assert!(plain.byzantine.is_empty() && plain.thefts.is_empty() && plain.protocol.hazards.is_empty());
    }


    /// Two-phase commit mode: `protocol.consensus` parses, defaults to gossip, and a bad value
    /// names its line and field.
    #[test]
    fn consensus_mode_parses_and_bad_values_are_located() {
        use reference_node::consensus::Consensus;
        let s = Scenario::parse("x.toml", &format!("{HEAD}[protocol]\nconsensus = \"two_phase\"\n")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.protocol.consensus, Consensus::TwoPhase);
        let plain = Scenario::parse("x.toml", HEAD).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain.protocol.consensus, Consensus::Gossip);
        let e = err("[protocol]\nconsensus = \"paxos\"\n");
        assert_eq!((e.line, e.field.as_str()), (4, "protocol.consensus"), "{e}");
        assert!(e.message.contains("two_phase"), "{e}");
    }

    /// Two-phase commit mode: `protocol.flow_stale_s` defaults to 60 s, must be > 0, and is
    /// refused in gossip mode, each error naming its line, column and field.
    #[test]
    fn flow_stale_parses_and_bad_values_are_located() {
        let s = Scenario::parse("x.toml", &format!("{HEAD}[protocol]\nconsensus = \"two_phase\"\nflow_stale_s = 12.5\n")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.protocol.flow_stale, Micros::from_millis(12_500));
        let plain = Scenario::parse("x.toml", &format!("{HEAD}[protocol]\nconsensus = \"two_phase\"\n")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain.protocol.flow_stale, Micros::from_secs(60));
        let e = err("[protocol]\nconsensus = \"two_phase\"\nflow_stale_s = 0.0\n");
        assert_eq!((e.line, e.column, e.field.as_str()), (5, 16, "protocol.flow_stale_s"), "{e}");
        let e = err("[protocol]\nflow_stale_s = 30.0\n");
        assert_eq!((e.line, e.column, e.field.as_str()), (4, 16, "protocol.flow_stale_s"), "{e}");
        assert!(e.message.contains("two_phase"), "{e}");
    }
    #[test]
    fn bad_adversary_keys_are_located() {
        let e = err("[[byzantine]]\noperator = \"operator:3\"\nbehaviours = [\"wrong_share\", \"lie\"]\n");
        assert_eq!((e.line, e.column, e.field.as_str()), (5, 30, "byzantine[0].behaviours[1]"), "{e}");
        assert!(e.message.contains("unknown behaviour `lie`") && e.message.contains("keep_old_shares"), "{e}");
        let e = err("[[byzantine]]\noperator = \"wallet:0\"\nbehaviours = [\"withhold\"]\n");
        assert_eq!((e.line, e.field.as_str()), (4, "byzantine[0].operator"), "{e}");
        let e = err("[[byzantine]]\noperator = \"operator:9\"\nbehaviours = [\"withhold\"]\n");
        assert!(e.message.contains("does not exist"), "{e}");
        let e = err("[[byzantine]]\noperator = \"operator:1\"\nbehaviours = []\n");
        assert_eq!(e.field, "byzantine[0].behaviours", "{e}");
        let e = err("[[byzantine]]\noperator = \"operator:1\"\nbehaviours = [\"withhold\"]\n[[byzantine]]\noperator = \"operator:1\"\nbehaviours = [\"wrong_share\"]\n");
        assert!(e.field == "byzantine[1].operator" && e.message.contains("listed twice"), "{e}");
        let e = err("[protocol]\nhazards = [\"renew_send_race\"]\n");
        assert_eq!((e.line, e.field.as_str()), (4, "protocol.hazards[0]"), "{e}");
        assert!(e.message.contains("claim_settle_split"), "{e}");
        let e = err("[[theft]]\nwallet = \"operator:0\"\nat_s = 1.0\n");
        assert_eq!(e.field, "theft[0].wallet", "{e}");
        let e = err("[[theft]]\nwallet = \"wallet:0\"\nat_s = -1.0\n");
        assert_eq!(e.field, "theft[0].at_s", "{e}");
        let e = err("[[byzantine]]\noperator = \"operator:1\"\nbehaviors = [\"withhold\"]\n");
        assert!(e.message.contains("unknown field"), "{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Locating serde errors in the text
// ---------------------------------------------------------------------------------------------

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The text between `prefix` and the next backquote in `message`.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    Some(rest[..rest.find('`')?].to_owned())
}

fn join_path(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    }
}

/// The dotted path of the table in force at `offset`: the last `[header]` at or before that line,
/// with `[[array]]` headers numbered by occurrence (`fault[2]`).
fn table_path_at(text: &str, offset: usize) -> String {
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let mut current = String::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in text[..line_end].lines() {
        let t = line.trim();
        if let Some(inner) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = inner.trim().to_owned();
            let n = counts.entry(name.clone()).or_insert(0);
            current = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(inner) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            current = inner.trim().to_owned();
        }
    }
    current
}

/// The key (dotted through inline tables) whose value contains `offset`, found by scanning the
/// line up to `offset`; falls back to the nearest earlier `key =` line (multi-line arrays).
fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    if let Some(k) = keys_before(&text[line_start..offset]) {
        return Some(k);
    }
    for line in text[..line_start].lines().rev() {
        let t = line.trim();
        if t.starts_with('[') && !t.starts_with("[\"") && t.contains(']') && !t.contains('=') {
            return None;
        }
        if let Some(k) = keys_before(line) {
            return Some(k);
        }
    }
    None
}

/// Scans `prefix` (the start of a line), tracking `key =` pairs and inline-table nesting, and
/// returns the path of keys still open at its end.
fn keys_before(prefix: &str) -> Option<String> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut ident = String::new();
    let mut last_ident: Option<String> = None;
    let mut in_str: Option<char> = None;
    for c in prefix.chars() {
        if let Some(q) = in_str {
            if c == q {
                in_str = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => in_str = Some(c),
            '#' => break,
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                stack.retain(|(d, _)| *d <= depth);
            }
            '=' => {
                if let Some(k) = last_ident.take() {
                    stack.retain(|(d, _)| *d < depth);
                    stack.push((depth, k));
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' => {
                ident.push(c);
                continue;
            }
            _ => {}
        }
        if !ident.is_empty() {
            last_ident = Some(std::mem::take(&mut ident));
        }
        if c == ',' {
            last_ident = None;
        }
    }
    if !ident.is_empty() && stack.is_empty() {
        // The offset sits on a bare key with no `=` yet (e.g. a syntax error after it).
        return Some(ident);
    }
    (!stack.is_empty()).then(|| {
        stack
            .into_iter()
            .map(|(_, k)| k)
            .collect::<Vec<_>>()
            .join(".")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FULL: &str = r#"
name = "quickstart"
description = "Five operators, four wallets: deposits, transfers, one crash; everything settles."
seed = 42

[topology]
operators = 5
threshold = 3
wallets = 4
coordinator = 1

[network]
latency_ms = { min = 2.0, max = 40.0 }
loss = 0.01

[[network.link]]
from = "operator:0"
to = "wallet:*"
latency_ms = 100
loss = 0.5

[chain]
block_interval_s = 600.0

[protocol]
gossip_retry_s = 30.0
request_timeout_s = 5
transfer_expiry_s = 300.0
dkg_pool_min = 4
dkg_batch = 8
wallet_poll_s = 5.0
test_faults = ["skip_send_timelock_decrement"]

[workload]
deposits_per_wallet = 2
deposit_sats = [65536, 131072]
transfers = 20
transfer_start_s = 900.0
transfer_interval_s = 2.0
exits = 1
exit_at_s = 5000.0

[[fault]]
kind = "crash"
node = "operator:2"
at_s = 30.0
restart_after_s = 20.0

[[fault]]
kind = "partition"
groups = [["operator:0"], ["operator:1", "wallet:*"]]
at_s = 100.0
duration_s = 50.0

[[fault]]
kind = "partition"
isolate = ["operator:4"]
at_s = 200
duration_s = 10

[budgets]
transfer_p99_s = 10.0

[expect]
outcome = "violation"
invariant = "I-6"

[run]
max_sim_time_s = 2_000_000.0
settle_s = 600.0
"#;

    #[test]
    fn full_example_parses_with_the_right_values() {
        let s = Scenario::parse("scenarios/quickstart.toml", FULL).unwrap();
        assert_eq!(s.name, "quickstart");
        assert_eq!(s.seed, Some(42));
        assert_eq!(
            s.topology,
            Topology {
                operators: 5,
                threshold: 3,
                wallets: 4,
                coordinator: OperatorId(1),
                ssp: false,
            }
        );
        assert_eq!(
            s.network.latency,
            Latency::Uniform {
                min: Micros::from_millis(2),
                max: Micros::from_millis(40)
            }
        );
        assert_eq!(s.network.loss, 0.01);
        assert_eq!(
            s.network.links,
            vec![LinkOverride {
                from: NodePattern::Node(NodeId::Operator(OperatorId(0))),
                to: NodePattern::AllWallets,
                latency: Some(Latency::Fixed(Micros::from_millis(100))),
                loss: Some(0.5),
                duplicate: None,
                reorder: None,
            }]
        );
        assert_eq!(s.chain.block_interval, Micros::from_secs(600));
        assert_eq!(s.protocol.request_timeout, Micros::from_secs(5));
        assert_eq!(s.protocol.dkg_batch, 8);
        assert!(s
            .protocol
            .test_faults
            .contains(&TestFault::SkipSendTimelockDecrement));
        assert_eq!(s.workload.deposit_sats, vec![65_536, 131_072]);
        assert_eq!(s.workload.transfer_interval_mean, Micros::from_secs(2));
        assert_eq!(s.workload.exit_at, Some(Micros::from_secs(5000)));
        assert_eq!(
            s.faults[0],
            FaultSpec::Crash {
                node: NodeId::Operator(OperatorId(2)),
                at: Micros::from_secs(30),
                restart_after: Some(Micros::from_secs(20)),
            }
        );
        let windows = s.partition_windows();
        assert_eq!(windows.len(), 2);
        assert_eq!(
            (windows[0].from, windows[0].until),
            (Micros::from_secs(100), Micros::from_secs(150))
        );
        assert_eq!(windows[0].groups[1].len(), 5, "operator:1 plus 4 wallets");
        assert_eq!(
            windows[1].groups,
            vec![BTreeSet::from([NodeId::Operator(OperatorId(4))])]
        );
        assert_eq!(s.budgets.transfer_p99, Some(Micros::from_secs(10)));
        assert_eq!(s.expect, Expectation::Violation(Invariant::I6));
        assert_eq!(
            s.run,
            RunSpec {
                max_sim_time: Micros::from_secs(2_000_000),
                settle: Micros::from_secs(600),
                max_events: RunSpec::DEFAULT_MAX_EVENTS,
            }
        );
        let net = s.net_config();
        assert_eq!(net.links.len(), 4);
        let w = NodeId::Wallet(WalletId(3));
        assert_eq!(net.link(NodeId::Operator(OperatorId(0)), w).loss, 0.5);
        assert_eq!(net.link(w, NodeId::Operator(OperatorId(0))).loss, 0.01);
    }

    #[test]
    fn expect_sometimes_names_registered_properties() {
        let ok = "name = \"s\"\ndescription = \"d\"\n[expect]\noutcome = \"pass\"\nsometimes = [\"transfer-claimed\"]\n";
        let s = Scenario::parse("s.toml", ok).unwrap();
        assert!(s.expect_sometimes.contains("transfer-claimed"));
        let bad = "name = \"s\"\ndescription = \"d\"\n[expect]\noutcome = \"pass\"\nsometimes = [\"transfer-claimed\", \"never-heard-of-it\"]\n";
        let e = Scenario::parse("s.toml", bad).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (5, "expect.sometimes[1]"), "{e}");
        assert!(e.message.contains("never-heard-of-it"), "{e}");
    }

    #[test]
    fn minimal_scenario_takes_defaults() {
        let s = Scenario::parse("m.toml", "name = \"m\"\ndescription = \"defaults\"\n").unwrap();
        assert_eq!(s.topology, Topology::default());
        assert_eq!(s.network, NetworkSpec::default());
        assert_eq!(s.protocol, ProtocolSpec::default());
        assert_eq!(s.workload, WorkloadSpec::default());
        assert_eq!(s.expect, Expectation::Pass);
        assert_eq!(s.run, RunSpec::default());
        assert!(s.faults.is_empty());
        assert_eq!(s.topology.node_ids().len(), 9);
    }

    /// (text, line, column, field, a fragment of the message)
    fn assert_error(text: &str, line: usize, column: usize, field: &str, fragment: &str) {
        let e = Scenario::parse("scenarios/x.toml", text).expect_err(text);
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (line, column, field),
            "{e}"
        );
        assert!(e.message.contains(fragment), "{e}");
        assert_eq!(e.file, "scenarios/x.toml");
    }

    const HEAD: &str = "name = \"x\"\ndescription = \"d\"\n";

    #[test]
    fn error_display_names_file_line_column_field() {
        let text = format!("{HEAD}[topology]\noperators = 5\nthreshold = 6\n");
        let e = Scenario::parse("scenarios/x.toml", &text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "scenarios/x.toml:5:13: field `topology.threshold`: threshold 6 exceeds operators 5"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        assert_error(
            &format!("{HEAD}[topology]\noperators = 5\nthreshhold = 3\n"),
            5,
            1,
            "topology.threshhold",
            "unknown field",
        );
        assert_error(
            &format!("{HEAD}colour = 1\n"),
            3,
            1,
            "colour",
            "unknown field",
        );
        assert_error(
            &format!("{HEAD}[[fault]]\nkind = \"crash\"\nnode = \"wallet:0\"\nat_s = 1\n[[fault]]\nkind = \"crash\"\nwhen = 1\n"),
            9,
            1,
            "fault[1].when",
            "unknown field",
        );
    }

    #[test]
    fn wrong_type_is_located() {
        assert_error(
            &format!("{HEAD}[topology]\nwallets = \"four\"\n"),
            4,
            11,
            "topology.wallets",
            "invalid type",
        );
        assert_error(
            &format!("{HEAD}[network]\nlatency_ms = {{ min = \"a\", max = 3 }}\n"),
            4,
            14,
            "network.latency_ms",
            "min",
        );
        assert_error(
            &format!("{HEAD}[workload]\ndeposit_sats = [1, \"two\"]\n"),
            4,
            20,
            "workload.deposit_sats",
            "invalid type",
        );
    }

    #[test]
    fn missing_required_field() {
        assert_error(
            "description = \"d\"\n",
            1,
            1,
            "name",
            "missing field `name`",
        );
    }

    const NET_FAULTS: &str = r#"
name = "n"
description = "d"

[network]
latency_ms = { dist = "pareto", min = 2.0, alpha = 1.5, max = 5000 }
duplicate = 0.1
reorder = 0.2
reorder_ms = 50

[[network.link]]
from = "wallet:*"
to = "operator:0"
duplicate = 0.5

[[fault]]
kind = "crash"
node = "operator:1"
at_s = 10
mid_handler = true
after_outputs = 2
lose_unsynced = true
restart_after_s = 3

[[fault]]
kind = "asymmetric_partition"
from = ["operator:0"]
to = ["operator:1", "operator:2"]
at_s = 5
duration_s = 10
flap_on_s = 1
flap_off_s = 2

[[fault]]
kind = "partition"
isolate = ["operator:3"]
at_s = 0
duration_s = 4
flap_on_s = 1
flap_off_s = 1

[[fault]]
kind = "slow_node"
node = "wallet:*"
factor = 5

[[fault]]
kind = "clock"
node = "operator:2"
skew_ms = -1500.5
drift_ppm = 200
"#;

    #[test]
    fn network_process_and_clock_faults_parse() {
        let s = Scenario::parse("n.toml", NET_FAULTS).unwrap_or_else(|e| panic!("{e}"));
        let (op, w) = (|i| NodeId::Operator(OperatorId(i)), |i| NodeId::Wallet(WalletId(i)));
        assert_eq!(
            s.network.latency,
            Latency::Pareto { min: Micros::from_millis(2), alpha: 1.5, max: Micros::from_secs(5) }
        );
        assert_eq!((s.network.duplicate, s.network.reorder), (0.1, 0.2));
        assert_eq!(s.network.reorder_delay, Micros::from_millis(50));
        let net = s.net_config();
        assert_eq!(net.link(w(0), op(0)).duplicate, 0.5);
        assert_eq!(net.link(w(0), op(1)).duplicate, 0.1);
        assert_eq!(net.link(w(0), op(1)).reorder, 0.2);
        assert_eq!(
            s.faults[0],
            FaultSpec::CrashMidHandler {
                node: op(1),
                at: Micros::from_secs(10),
                after_outputs: Some(2),
                lose_unsynced: true,
                restart_after: Some(Micros::from_secs(3)),
            }
        );
        let windows = s.faults[1].partition_windows(&s.topology);
        // 10 s of 1 s on / 2 s off: on at 5, 8, 11, 14.
        assert_eq!(windows.iter().map(|w| w.from.0 / 1_000_000).collect::<Vec<_>>(), vec![5, 8, 11, 14]);
        assert!(windows.iter().all(|w| w.direction == Direction::OneWay && w.groups.len() == 2));
        assert_eq!(s.faults[2].partition_windows(&s.topology).len(), 2);
        assert_eq!(
            s.faults[3],
            FaultSpec::SlowNode { node: NodePattern::AllWallets, factor: 5.0, at: Micros::ZERO, duration: None }
        );
        assert_eq!(
            s.faults[4],
            FaultSpec::Clock { node: NodePattern::Node(op(2)), skew_us: -1_500_500, drift_ppm: 200, at: Micros::ZERO }
        );
        assert_eq!(s.faults[1].ends_at(), Micros::from_secs(15));
        assert_eq!(s.swarm, None);
        let swarm = Scenario::parse("s.toml", &format!("{HEAD}[swarm]
max_crashes = 1
kinds = [\"crash\"]
")).unwrap();
        let spec = swarm.swarm.expect("swarm");
        assert_eq!(spec.max_crashes, 1);
        assert_eq!(spec.kinds, Some(BTreeSet::from(["crash".to_owned()])));
    }

    #[test]
    fn network_process_and_clock_fault_errors_are_located() {
        let fault = |body: &str| format!("{HEAD}[[fault]]\n{body}");
        assert_error(&fault("kind = \"crash\"\nnode = \"operator:1\"\nat_s = 1\nlose_unsynced = true\n"), 7, 17, "fault[0].lose_unsynced", "without `mid_handler = true`");
        assert_error(&fault("kind = \"partition\"\nisolate = [\"operator:1\"]\nat_s = 1\nduration_s = 2\nflap_on_s = 1\n"), 3, 1, "fault[0].flap_off_s", "needs `flap_off_s`");
        assert_error(&fault("kind = \"asymmetric_partition\"\nat_s = 1\nduration_s = 2\n"), 3, 1, "fault[0].from", "needs `from`");
        assert_error(&fault("kind = \"asymmetric_partition\"\nfrom = [\"operator:1\"]\nto = [\"operator:1\"]\nat_s = 1\nduration_s = 2\n"), 3, 1, "fault[0].to", "more than one group");
        assert_error(&fault("kind = \"slow_node\"\nnode = \"operator:1\"\nfactor = 0.5\n"), 6, 10, "fault[0].factor", "1..=1000000");
        assert_error(&fault("kind = \"clock\"\nnode = \"operator:1\"\ndrift_ppm = -1000000\n"), 6, 13, "fault[0].drift_ppm", "-900000");
        assert_error(&fault("kind = \"clock\"\nnode = \"operator:1\"\nfactor = 3\n"), 6, 10, "fault[0].factor", "does not apply to a clock fault");
        assert_error(&fault("kind = \"meteor\"\n"), 4, 8, "fault[0].kind", "asymmetric_partition");
        assert_error(
            &format!("{HEAD}[network]\nlatency_ms = {{ dist = \"pareto\", min = 2, max = 10 }}\n"),
            4,
            14,
            "network.latency_ms",
            "needs a number `alpha`",
        );
        assert_error(&format!("{HEAD}[network]\nduplicate = 2.0\n"), 4, 13, "network.duplicate", "probability");
    }

    #[test]
    fn semantic_errors_are_located() {
        assert_error(
            &format!("{HEAD}[topology]\noperators = 2\n"),
            4,
            13,
            "topology.threshold",
            "default threshold 3",
        );
        assert_error(
            &format!("{HEAD}[topology]\ncoordinator = 5\n"),
            4,
            15,
            "topology.coordinator",
            "not an operator",
        );
        assert_error(
            &format!("{HEAD}[topology]\noperators = 40\n"),
            4,
            13,
            "topology.operators",
            "1..=32",
        );
        assert_error(
            &format!("{HEAD}[[fault]]\nkind = \"crash\"\nnode = \"operator:7\"\nat_s = 1.0\n"),
            5,
            8,
            "fault[0].node",
            "operator:7 does not exist",
        );
        assert_error(
            &format!("{HEAD}[[fault]]\nkind = \"crash\"\nnode = \"validator:1\"\nat_s = 1.0\n"),
            5,
            8,
            "fault[0].node",
            "unknown node",
        );
        assert_error(
            &format!("{HEAD}[[fault]]\nkind = \"partition\"\nisolate = [\"wallet:0\"]\nat_s = 1.0\nduration_s = -5\n"),
            7,
            14,
            "fault[0].duration_s",
            "> 0",
        );
        assert_error(
            &format!("{HEAD}[[fault]]\nkind = \"partition\"\ngroups = [[\"wallet:0\"], [\"wallet:9\"]]\nat_s = 1\nduration_s = 5\n"),
            5,
            26,
            "fault[0].groups[1][0]",
            "wallet:9 does not exist",
        );
        assert_error(
            &format!("{HEAD}[expect]\noutcome = \"violation\"\n"),
            3,
            1,
            "expect.invariant",
            "needs `invariant`",
        );
        assert_error(
            &format!("{HEAD}[expect]\noutcome = \"violation\"\ninvariant = \"I-99\"\n"),
            5,
            13,
            "expect.invariant",
            "unknown invariant",
        );
        assert_error(
            &format!("{HEAD}[network]\nloss = 1.5\n"),
            4,
            8,
            "network.loss",
            "probability",
        );
        assert_error(
            &format!("{HEAD}[protocol]\ntest_faults = [\"oops\"]\n"),
            4,
            16,
            "protocol.test_faults[0]",
            "unknown test fault",
        );
        assert_error(
            &format!("{HEAD}[[network.link]]\nfrom = \"chain\"\nto = \"operator:0\"\n"),
            4,
            8,
            "network.link[0].from",
            "`chain` cannot be used here",
        );
        assert_error(
            &format!("{HEAD}[[fault]]\nkind = \"crash\"\nat_s = 1\n"),
            3,
            1,
            "fault[0].node",
            "needs `node`",
        );
        assert_error(
            &format!("{HEAD}[run]\nsettle_s = nan\n"),
            4,
            12,
            "run.settle_s",
            "duration",
        );
    }

    #[test]
    fn syntax_error_is_located() {
        let e =
            Scenario::parse("x.toml", &format!("{HEAD}[topology]\noperators = \n")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (4, "topology.operators"), "{e}");
    }

    fn mutate(base: &str, edits: &[(usize, u8, u8)]) -> String {
        let mut bytes = base.as_bytes().to_vec();
        for &(pos, op, b) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = pos % bytes.len();
            match op % 3 {
                0 => bytes[i] = b,
                1 => {
                    bytes.remove(i);
                }
                _ => bytes.insert(i, b),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_random_text(text in "\\PC{0,200}") {
            let _ = Scenario::parse("fuzz.toml", &text);
        }

        #[test]
        fn parse_never_panics_on_mutated_scenarios(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)
        ) {
            let text = mutate(FULL, &edits);
            if let Err(e) = Scenario::parse("fuzz.toml", &text) {
                prop_assert!(e.line >= 1 && e.column >= 1);
                prop_assert!(!e.field.is_empty());
            }
        }

        #[test]
        fn parse_never_panics_on_mutated_values(
            line in 0usize..80, value in prop_oneof![
                Just("-1".to_owned()), Just("1e400".to_owned()), Just("nan".to_owned()), Just("\"\"".to_owned()),
                Just("[]".to_owned()), Just("{}".to_owned()), Just("99999999999999999".to_owned()),
                Just("\"operator:99999999\"".to_owned()), Just("\"wallet:*\"".to_owned()), Just("-inf".to_owned()),
            ]
        ) {
            let mut lines: Vec<String> = FULL.lines().map(str::to_owned).collect();
            let i = line % lines.len();
            if let Some((k, _)) = lines[i].split_once(" = ") {
                lines[i] = format!("{k} = {value}");
            }
            let _ = Scenario::parse("fuzz.toml", &lines.join("\n"));
        }
    }

    // --- checker keys ---

    #[test]
    fn per_operation_budgets_liveness_and_budget_expectations_parse() {
        let text = format!("{HEAD}[budgets]\ntransfer_p99_s = 10.0\nclaim_p99_s = 2.5\nexit_max_s = 1e6\nliveness_s = 1200\n[expect]\noutcome = \"violation\"\ninvariant = \"budget:claim.p99\"\n");
        let s = Scenario::parse("scenarios/x.toml", &text).expect("parses");
        assert_eq!(s.budgets.transfer_p99, Some(Micros::from_secs(10)));
        assert_eq!(s.budgets.op(LatencyOp::Claim, Stat::P99), Some(Micros(2_500_000)));
        assert_eq!(s.budgets.op(LatencyOp::Exit, Stat::Max), Some(Micros::from_secs(1_000_000)));
        assert_eq!(s.budgets.op(LatencyOp::Deposit, Stat::P50), None);
        assert_eq!(s.budgets.liveness, Some(Micros::from_secs(1200)));
        assert_eq!(s.expect, Expectation::Violation(Invariant::OpBudget(LatencyOp::Claim, Stat::P99)));
        for name in ["I-4", "I-5", "I-8", "I-9", "I-10", "I-12", "I-14", "L-2", "L-3", "L-4", "L-8", "budget:deposit.max"] {
            let text = format!("{HEAD}[expect]\noutcome = \"violation\"\ninvariant = \"{name}\"\n");
            let s = Scenario::parse("scenarios/x.toml", &text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(matches!(s.expect, Expectation::Violation(i) if i.as_str() == name));
        }
    }

    #[test]
    fn bad_checker_keys_are_located() {
        assert_error(&format!("{HEAD}[budgets]\nsend_p50_s = 0\n"), 4, 14, "budgets.send_p50_s", "a duration > 0");
        assert_error(&format!("{HEAD}[budgets]\nliveness_s = -1.0\n"), 4, 14, "budgets.liveness_s", "a duration > 0");
        assert_error(
            &format!("{HEAD}[expect]\noutcome = \"violation\"\ninvariant = \"budget:claim.p95\"\n"),
            5,
            13,
            "expect.invariant",
            "budget:claim.p99",
        );
    }
}
