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
    /// The full checker's tables (optional: absent in reports written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checker: Option<CheckerReport>,
    /// Byzantine operators' effects (only in runs that have any; absent otherwise, so other
    /// reports are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adversary: Option<AdversaryReport>,
    /// Swarm mode only: the fault mix this seed drew (absent otherwise, so older reports
    /// still read and the schema stays v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<crate::swarm::SwarmMix>,
    /// How many `[[fault]]` entries of each kind the scenario injected (`crash`, `partition`, ...).
    #[serde(default)]
    pub fault_mix: BTreeMap<String, u32>,
    /// The scenario's `[expect] sometimes`: properties a campaign over it must see fire at least
    /// once (the counts are in `checker.sometimes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_sometimes: Vec<String>,
}

// --- checker: invariant table, sometimes coverage, per-operation latency -------------------------

/// What the checker checked, how often, what fired, and how long operations took.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckerReport {
    /// Every invariant and liveness property of spark-protocol §6, in spec order.
    pub invariants: Vec<InvariantRow>,
    /// Sometimes-property → how often it fired in this run (registered ones appear with 0).
    pub sometimes: std::collections::BTreeMap<String, u64>,
    /// deposit, send, claim, exit → latency in simulated seconds.
    pub latency: std::collections::BTreeMap<String, OpLatency>,
    /// The liveness phase: when it started and ended, and whether the system went quiet.
    pub liveness: LivenessPhase,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvariantRow {
    /// "I-1" … "I-14", "L-1" … "L-8".
    pub id: String,
    pub name: String,
    /// "always" (a safety invariant, I-*) or "eventually" (a liveness property, L-*).
    pub kind: String,
    /// "checked" (after every event), "at-quiescence" (end of the liveness phase) or
    /// "not-applicable-yet" (the flows it needs are not implemented).
    pub status: String,
    /// Evaluations run.
    pub checks: u64,
    /// Distinct violations reported.
    pub violations: u64,
    /// How it is checked, or what is missing.
    pub note: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpLatency {
    pub samples: u64,
    pub p50_s: Option<f64>,
    pub p99_s: Option<f64>,
    pub max_s: Option<f64>,
    pub budget_p50_s: Option<f64>,
    pub budget_p99_s: Option<f64>,
    pub budget_max_s: Option<f64>,
    pub histogram: Vec<HistogramBucket>,
}

/// Samples ≤ `le_s` and above the previous bucket's bound; `le_s` None is the open last bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramBucket {
    pub le_s: Option<f64>,
    pub count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LivenessPhase {
    /// Workload ended and the last fault healed, plus `run.settle_s`.
    pub start_s: f64,
    /// The latest the phase may run (`budgets.liveness_s`, else `run.max_sim_time_s`).
    pub deadline_s: f64,
    pub end_s: f64,
    /// Every pending operation reached a terminal state.
    pub quiet: bool,
}

/// What Byzantine operators tried and how it ended (issue 4).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AdversaryReport {
    /// Operator → times a coordinator named it a culprit (FROST identifiable abort).
    pub culprits_named: std::collections::BTreeMap<String, u64>,
    /// Nonce reuse attempts an honest signer's guard refused.
    pub nonce_reuse_refused: u64,
    /// A former owner's theft attempts the protocol blocked / that produced a valid spend.
    pub theft_attempts_blocked: u64,
    pub theft_attempts_succeeded: u64,
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
            checker: Some(CheckerReport {
                invariants: vec![InvariantRow {
                    id: "I-6".into(),
                    name: "strict refund ordering".into(),
                    kind: "always".into(),
                    status: "checked".into(),
                    checks: 120,
                    violations: 1,
                    note: "every signed refund against the leaf's history".into(),
                }],
                sometimes: BTreeMap::from([("transfer-claimed".to_owned(), 6), ("transfer-returned".to_owned(), 0)]),
                latency: BTreeMap::from([(
                    "claim".to_owned(),
                    OpLatency {
                        samples: 6,
                        p50_s: Some(0.21),
                        p99_s: Some(0.5),
                        max_s: Some(0.51),
                        budget_p50_s: None,
                        budget_p99_s: Some(10.0),
                        budget_max_s: None,
                        histogram: vec![HistogramBucket { le_s: Some(0.5), count: 5 }, HistogramBucket { le_s: None, count: 1 }],
                    },
                )]),
                liveness: LivenessPhase { start_s: 2000.0, deadline_s: 2_000_000.0, end_s: 2400.5, quiet: true },
            }),
            adversary: Some(AdversaryReport {
                culprits_named: BTreeMap::from([("operator:3".to_owned(), 2)]),
                nonce_reuse_refused: 1,
                theft_attempts_blocked: 1,
                theft_attempts_succeeded: 0,
            }),
            swarm: Some(crate::swarm::SwarmMix::default()),
            expected_sometimes: vec!["transfer-claimed".into()],
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
