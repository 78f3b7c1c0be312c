//! The run report: what a run did and found, as JSON with a versioned schema.
use serde::{Deserialize, Serialize};

/// Bump when a field changes meaning or disappears (adding a field is compatible).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
}

/// One broken property: which, when, and what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// "I-1", "I-2", "I-3", "I-6", "I-11", "L-1", "budget", or "panic".
    pub invariant: String,
    pub sim_time_s: f64,
    pub event_index: u64,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_s: Option<f64>,
    pub p99_s: Option<f64>,
    pub max_s: Option<f64>,
    pub budget_p99_s: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageCounts {
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub scenario: String,
    /// The scenario file the run came from ("<embedded quickstart>" for the demo).
    pub scenario_path: String,
    pub seed: u64,
    /// `pass` when no violation was found.
    pub outcome: Outcome,
    /// What the scenario expected: "pass" or "violation:I-6".
    pub expected: String,
    /// True when the outcome is what the scenario expected (the CLI's exit code 0).
    pub matched_expectation: bool,
    pub violations: Vec<Violation>,
    pub trace_hash: String,
    pub events: u64,
    pub operators: u16,
    pub threshold: u16,
    pub wallets: u16,
    pub deposits_confirmed: u64,
    pub transfers_sent: u64,
    pub transfers_claimed: u64,
    pub transfers_returned: u64,
    pub exits_confirmed: u64,
    /// Invariant evaluations run (each invariant, after each event it applies to).
    pub invariant_checks: u64,
    pub transfer_latency: LatencySummary,
    pub messages: MessageCounts,
    pub blocks: u32,
    pub txs_verified_inputs: u64,
    pub sim_time_s: f64,
    pub wall_time_s: f64,
    /// The command that replays this exact run.
    pub replay_command: String,
    /// Swarm mode only: the fault mix this seed drew (absent otherwise, so older reports
    /// still read and the schema stays v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<crate::swarm::SwarmMix>,
}
