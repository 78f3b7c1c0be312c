//! Split (spark-protocol §2.6) through the whole simulator: the happy path and a coordinator
//! crashing mid-split. Each run must pass its invariants, actually split (the `leaf-split`
//! property), and in the fault scenario the crash must land while a split is in flight.
mod common;
use common::{assert_clean, fired, run};

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
