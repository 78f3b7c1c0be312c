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
use crate::net::{Latency, LinkConfig, NetConfig, PartitionWindow};
use reference_node::types::{Micros, NodeId, OperatorId, WalletId};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use toml::Spanned;

// ---------------------------------------------------------------------------------------------
// Public, validated types
// ---------------------------------------------------------------------------------------------

/// One scenario file. Top-level keys:
/// - `name` (required): short identifier.
/// - `description` (required): what the scenario tests and what should happen.
/// - `seed` (optional): default seed when the CLI is not given one.
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
}

/// `[topology]`: who takes part.
/// - `operators` = 5: number of operators, 1..=32.
/// - `threshold` = 3: FROST signing threshold t, 1..=operators.
/// - `wallets` = 4: number of wallets, 1..=1000.
/// - `coordinator` = 0: index of the coordinating operator, < operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    pub operators: u16,
    pub threshold: u16,
    pub wallets: u16,
    pub coordinator: OperatorId,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            operators: 5,
            threshold: 3,
            wallets: 4,
            coordinator: OperatorId(0),
        }
    }
}

impl Topology {
    /// Every operator then every wallet, in `NodeId` order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        let ops = (0..self.operators).map(|i| NodeId::Operator(OperatorId(i)));
        ops.chain((0..self.wallets).map(|i| NodeId::Wallet(WalletId(i))))
            .collect()
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
///   fixed latency.
/// - `loss` = 0.0: probability a message is lost, 0..=1.
/// - `[[network.link]]`: `from`, `to` (node names, wildcards allowed), optional `latency_ms` and
///   `loss` overriding the default for those directed links; later entries win.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSpec {
    pub latency: Latency,
    pub loss: f64,
    pub links: Vec<LinkOverride>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        let d = NetConfig::default().default;
        NetworkSpec {
            latency: d.latency,
            loss: d.loss,
            links: Vec::new(),
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
}

/// `[chain]`:
/// - `block_interval_s` = 600.0: mean of the exponential time between blocks, > 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainSpec {
    pub block_interval: Micros,
}

impl Default for ChainSpec {
    fn default() -> Self {
        ChainSpec {
            block_interval: Micros::from_secs(600),
        }
    }
}

/// A deliberate protocol bug, switched on to prove the checker catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TestFault {
    /// The sender does not decrement the refund timelock on transfer (breaks I-6).
    SkipSendTimelockDecrement,
}

impl TestFault {
    const ALL: [(&'static str, TestFault); 1] = [(
        "skip_send_timelock_decrement",
        TestFault::SkipSendTimelockDecrement,
    )];

    pub fn as_str(self) -> &'static str {
        match self {
            TestFault::SkipSendTimelockDecrement => "skip_send_timelock_decrement",
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
/// - `test_faults` = []: deliberate bugs; allowed: "skip_send_timelock_decrement".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolSpec {
    pub gossip_retry: Micros,
    pub request_timeout: Micros,
    pub transfer_expiry: Micros,
    pub dkg_pool_min: u32,
    pub dkg_batch: u32,
    pub wallet_poll: Micros,
    pub test_faults: BTreeSet<TestFault>,
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
///
/// Actions are scheduled in list order (deposits, then transfers, then exits), which is the
/// order the random draw schedules them in, so a recorded workload gives the same trace hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExplicitWorkload {
    pub deposits: Vec<DepositAt>,
    pub transfers: Vec<TransferAt>,
    pub exits: Vec<ExitAt>,
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
        }
    }
}

/// One `[[fault]]` entry, selected by `kind`.
/// - `kind = "crash"`: `node` (an operator or wallet), `at_s`, optional `restart_after_s`
///   (omitted: the node stays down).
/// - `kind = "partition"`: either `groups` (lists of node names; unlisted nodes form one more
///   group) or `isolate` (that set against everyone else), plus `at_s` and `duration_s` > 0.
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
}

impl FaultSpec {
    /// The partition window of a partition fault (`isolate` is stored as a single group).
    pub fn partition_window(&self, topology: &Topology) -> Option<PartitionWindow> {
        match self {
            FaultSpec::Crash { .. } => None,
            FaultSpec::Partition {
                groups,
                at,
                duration,
            } => Some(PartitionWindow {
                from: *at,
                until: *at + *duration,
                groups: groups
                    .iter()
                    .map(|g| g.iter().flat_map(|p| p.expand(topology)).collect())
                    .collect(),
            }),
        }
    }
}

/// `[budgets]`: latency budgets, all optional.
/// - `transfer_p99_s`: p99 of send → claimed in simulated seconds, > 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budgets {
    pub transfer_p99: Option<Micros>,
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
}

impl Invariant {
    const ALL: [Invariant; 7] = [
        Invariant::I1,
        Invariant::I2,
        Invariant::I3,
        Invariant::I6,
        Invariant::I11,
        Invariant::L1,
        Invariant::Budget,
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
        }
    }
}

impl std::fmt::Display for Invariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[expect]`: the expected outcome (default: pass).
/// - `outcome` = "pass" | "violation".
/// - `invariant`: required iff outcome is "violation"; one of I-1 I-2 I-3 I-6 I-11 L-1 budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expectation {
    #[default]
    Pass,
    Violation(Invariant),
}

/// `[run]`: how long to simulate.
/// - `max_sim_time_s` = 2_000_000.0: hard stop in simulated seconds, > 0.
/// - `settle_s` = 600.0: quiet time after faults heal before liveness is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSpec {
    pub max_sim_time: Micros,
    pub settle: Micros,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            max_sim_time: Micros::from_secs(2_000_000),
            settle: Micros::from_secs(600),
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
                    };
                    links.insert((from, to), link);
                }
            }
        }
        NetConfig { default, links }
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
            .filter_map(|f| f.partition_window(&self.topology))
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    from: Spanned<String>,
    to: Spanned<String>,
    latency_ms: S<toml::Value>,
    loss: S<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    block_interval_s: S<f64>,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudgets {
    transfer_p99_s: S<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    outcome: Spanned<String>,
    invariant: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    max_sim_time_s: S<f64>,
    settle_s: S<f64>,
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
        let topology = match &raw.topology {
            None => Topology::default(),
            Some(t) => self.topology(t)?,
        };
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
            Some(b) => Budgets {
                transfer_p99: self.secs(
                    &b.transfer_p99_s,
                    "budgets.transfer_p99_s",
                    Zero::Forbidden,
                )?,
            },
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
                }
            }
        };
        Ok(Scenario {
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
            toml::Value::Table(t) => {
                if let Some(k) = t.keys().find(|k| *k != "min" && *k != "max") {
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
            });
        }
        Ok(NetworkSpec {
            latency,
            loss,
            links,
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
        })
    }

    fn workload(&self, w: &RawWorkload, topo: &Topology) -> R<WorkloadSpec> {
        let d = WorkloadSpec::default();
        if let Some(explicit) = self.explicit_workload(w, topo)? {
            return Ok(WorkloadSpec {
                explicit: Some(explicit),
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
        })
    }

    /// The explicit workload, if `[workload]` asks for one (see [`ExplicitWorkload`]).
    fn explicit_workload(&self, w: &RawWorkload, topo: &Topology) -> R<Option<ExplicitWorkload>> {
        let flag = w.explicit.as_ref().map(|b| *b.get_ref());
        let lists = !(w.deposit.is_empty() && w.transfer.is_empty() && w.exit.is_empty());
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
        match f.kind.get_ref().as_str() {
            "crash" => {
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
                Ok(FaultSpec::Partition {
                    groups,
                    at: at_s.ok_or_else(|| missing("at_s", "partition"))?,
                    duration: self
                        .secs(&f.duration_s, &at("duration_s"), Zero::Forbidden)?
                        .ok_or_else(|| missing("duration_s", "partition"))?,
                })
            }
            other => Err(self.err(
                f.kind.span(),
                at("kind"),
                format!("unknown fault kind `{other}`: expected \"crash\" or \"partition\""),
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
                "outcome = \"violation\" needs `invariant` (one of I-1 I-2 I-3 I-6 I-11 L-1 budget)",
            )),
            ("violation", Some(inv)) => match Invariant::ALL.iter().find(|i| i.as_str() == inv.get_ref()) {
                Some(i) => Ok(Expectation::Violation(*i)),
                None => Err(self.err(
                    inv.span(),
                    "expect.invariant",
                    format!("unknown invariant `{}`: expected one of I-1 I-2 I-3 I-6 I-11 L-1 budget", inv.get_ref()),
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
    let (kind, index) = s.split_once(':').ok_or_else(unknown)?;
    let (count, wildcard) = match kind {
        "operator" => (topo.operators, NodePattern::AllOperators),
        "wallet" => (topo.wallets, NodePattern::AllWallets),
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
                coordinator: OperatorId(1)
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
                settle: Micros::from_secs(600)
            }
        );
        let net = s.net_config();
        assert_eq!(net.links.len(), 4);
        let w = NodeId::Wallet(WalletId(3));
        assert_eq!(net.link(NodeId::Operator(OperatorId(0)), w).loss, 0.5);
        assert_eq!(net.link(w, NodeId::Operator(OperatorId(0))).loss, 0.01);
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
            &format!("{HEAD}[expect]\noutcome = \"violation\"\ninvariant = \"I-9\"\n"),
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
}
