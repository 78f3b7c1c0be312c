//! Receiver two-phase settle under a cut-off coordinator: a rollback the coordinator decided
//! for a settle attempt that a later attempt superseded must be acknowledged as stale, never
//! refused forever (I-12) nor applied to the newer attempt (buildonspark/spark#24). Each case
//! reported I-12 before settle attempts were explicit.
use sparksim::report::RunReport;
use sparksim::runner::{self, RunOptions};
use sparksim::scenario::Scenario;
use std::path::PathBuf;

fn run(rel: &str, seed: u64) -> RunReport {
    let path = PathBuf::from(format!("{}/../scenarios/{rel}", env!("CARGO_MANIFEST_DIR")));
    let s = Scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
    runner::run(&s, &s.file, seed, &RunOptions::default()).report
}

fn assert_settled(rel: &str, seed: u64) {
    let r = run(rel, seed);
    let v: Vec<String> = r.violations.iter().map(|v| format!("{}: {}", v.invariant, v.message)).collect();
    assert!(v.is_empty(), "{rel} seed {seed}: {v:?}");
    assert_eq!(r.transfers_claimed, r.transfers_sent, "{rel} seed {seed}: every acknowledged transfer is claimed");
}

#[test]
fn stale_rollback_after_a_committed_retry_is_acknowledged() {
    assert_settled("regressions/stuck-rollback-gossip.toml", 2);
}

#[test]
fn partitioned_coordinator_seeds_that_left_a_stuck_rollback_converge() {
    for seed in [2, 4] {
        assert_settled("partition-coordinator.toml", seed);
    }
}

#[test]
fn crashed_coordinator_seed_that_left_a_stuck_rollback_converges() {
    assert_settled("crash-restart.toml", 2);
}
