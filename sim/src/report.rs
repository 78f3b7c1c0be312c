//! The run report: what a run did and found, as JSON with a versioned schema.
//!
//! The schema is documented field by field in `docs/report-schema.md` and guarded by an `insta`
//! snapshot (`sim/src/snapshots/`): a change to the JSON shows up as a snapshot diff to review.
//! Adding a field is compatible (readers ignore unknown fields; new fields carry
//! `#[serde(default)]` so older reports still load); renaming or removing one bumps
//! [`SCHEMA_VERSION`].
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// How many `[[fault]]` entries of each kind the scenario injected (`crash`, `partition`, ...).
    #[serde(default)]
    pub fault_mix: BTreeMap<String, u32>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A report with every field set: the snapshot is the schema's reference example.
    pub(crate) fn example() -> RunReport {
        RunReport {
            schema_version: SCHEMA_VERSION,
            scenario: "skip-timelock-decrement".into(),
            scenario_path: "scenarios/regressions/skip-timelock-decrement.toml".into(),
            seed: 1,
            outcome: Outcome::Fail,
            expected: "violation:I-6".into(),
            matched_expectation: true,
            violations: vec![Violation {
                invariant: "I-6".into(),
                sim_time_s: 1801.25,
                event_index: 4242,
                message: "refund CSV 2000 not below previous owner's 2000".into(),
            }],
            trace_hash: "ab".repeat(32),
            events: 10_000,
            operators: 5,
            threshold: 3,
            wallets: 4,
            deposits_confirmed: 8,
            transfers_sent: 6,
            transfers_claimed: 6,
            transfers_returned: 0,
            exits_confirmed: 0,
            invariant_checks: 60_000,
            transfer_latency: LatencySummary { samples: 6, p50_s: Some(0.21), p99_s: Some(0.5), max_s: Some(0.51), budget_p99_s: Some(10.0) },
            messages: MessageCounts { sent: 900, delivered: 890, dropped: 10 },
            blocks: 12,
            txs_verified_inputs: 8,
            sim_time_s: 2400.5,
            wall_time_s: 0.5,
            replay_command: "sparksim run scenarios/regressions/skip-timelock-decrement.toml --seed 1".into(),
            fault_mix: BTreeMap::from([("crash".to_owned(), 1)]),
        }
    }

    #[test]
    fn report_schema_snapshot() {
        insta::assert_json_snapshot!("run_report_v1", example());
    }

    #[test]
    fn a_report_without_the_newer_optional_fields_still_loads() {
        let mut v = serde_json::to_value(example()).expect("serialises");
        v.as_object_mut().expect("object").remove("fault_mix");
        let r: RunReport = serde_json::from_value(v).expect("loads");
        assert!(r.fault_mix.is_empty());
    }
}
