//! Split (spark-protocol §2.6) through the whole simulator: the happy path and a coordinator
//! crashing mid-split. Each run must pass its invariants, actually split (the `leaf-split`
//! property), and in the fault scenario the crash must land while a split is in flight.
use sparksim::report::RunReport;
use sparksim::runner::{self, RunOptions};
use sparksim::scenario::Scenario;
use std::path::PathBuf;

fn run(rel: &str, seed: u64) -> RunReport {
    let path = PathBuf::from(format!("{}/../scenarios/{rel}", env!("CARGO_MANIFEST_DIR")));
    let s = Scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
    runner::run(&s, &s.file, seed, &RunOptions::default()).report
}

fn fired(r: &RunReport, name: &str) -> u64 {
    r.checker.as_ref().and_then(|c| c.sometimes.get(name).copied()).unwrap_or(0)
}

fn assert_clean(rel: &str, r: &RunReport) {
    let v: Vec<String> = r.violations.iter().map(|v| format!("{}: {}", v.invariant, v.message)).collect();
    assert!(v.is_empty(), "{rel} seed {}: {v:?}", r.seed);
    assert_eq!(r.transfers_claimed, r.transfers_sent, "{rel} seed {}: every sent child is claimed", r.seed);
}

#[test]
fn split_happy_path_children_claimed_one_exits_through_the_split_node_and_aggregate() {
    let r = run("split-aggregate.toml", 1);
    assert_clean("split-aggregate.toml", &r);
    assert_eq!(fired(&r, "leaf-split"), 2, "both splits finalized");
    assert_eq!(fired(&r, "leaf-aggregated"), 1, "the aggregation finalized");
    assert_eq!(r.transfers_claimed, 2);
    assert_eq!(r.exits_confirmed, 1, "the child exited through the split node");
}

#[test]
fn coordinator_crash_mid_split_leaves_every_operator_with_the_split() {
    for seed in 1..=4 {
        let r = run("faults/split-coordinator-crash.toml", seed);
        assert_clean("faults/split-coordinator-crash.toml", &r);
        assert!(fired(&r, "crash-during-split") > 0, "seed {seed}: the crash landed mid-split");
        assert_eq!(fired(&r, "leaf-split"), 1, "seed {seed}: the retried split finalized");
    }
}
