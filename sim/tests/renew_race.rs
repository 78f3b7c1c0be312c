//! Renew/send race (spark-protocol §3.4, §8.2 row 5: buildonspark/spark#70, breez/spark-sdk#482)
//! and renew/split under message loss, through the whole simulator.
use sparksim::report::RunReport;
use sparksim::runner::{self, RunOptions};
use sparksim::scenario::Scenario;
use std::path::PathBuf;

fn load(rel: &str) -> Scenario {
    let path = PathBuf::from(format!("{}/../scenarios/{rel}", env!("CARGO_MANIFEST_DIR")));
    Scenario::load(path).unwrap_or_else(|e| panic!("{e}"))
}

fn run(s: &Scenario, seed: u64) -> RunReport {
    runner::run(s, &s.file, seed, &RunOptions::default()).report
}

fn fired(r: &RunReport, name: &str) -> u64 {
    r.checker.as_ref().and_then(|c| c.sometimes.get(name).copied()).unwrap_or(0)
}

fn assert_clean(r: &RunReport) {
    let v: Vec<String> = r.violations.iter().map(|v| format!("{}: {}", v.invariant, v.message)).collect();
    assert!(v.is_empty(), "{} seed {}: {v:?}", r.scenario, r.seed);
    assert_eq!(r.transfers_claimed, r.transfers_sent, "{} seed {}: every sent transfer is claimed", r.scenario, r.seed);
}

/// The second device's stale send reaches the operators, is refused, and the re-synced retry
/// goes through: 18 ping-pong transfers plus the device's send, all claimed, nothing violated.
/// Fails if the operators accept the stale refunds (I-6/I-8/I-9) or the device never re-syncs
/// (its send is skipped: 18 sent).
#[test]
fn a_stale_device_send_is_refused_and_the_resynced_retry_goes_through() {
    let s = load("faults/renew-send-race.toml");
    {
        let (r, seed) = (run(&s, 1), 1);
        assert_clean(&r);
        assert!(fired(&r, "renew-node-zero") >= 1, "seed {seed}: the first device renewed");
        assert!(fired(&r, "stale-send-refused") >= 1, "seed {seed}: the stale send reached the operators and was refused");
        assert_eq!(r.transfers_sent, 19, "seed {seed}: the device's retried send went out");
    }
}

/// The hazard: the refused stale send drops the leaf from the wallet, and I-9 finds the
/// balance-0 wallet whose leaf the operators still hold.
#[test]
fn hazard_stale_send_drops_leaf_is_found_as_i9() {
    let s = load("regressions/renew-send-race.toml");
    let r = run(&s, 1);
    assert!(r.matched_expectation, "{:?}", r.violations);
    let v = r.violations.iter().find(|v| v.invariant == "I-9").expect("I-9");
    assert!(v.message.contains("does not hold it"), "{}", v.message);
    assert_eq!(fired(&r, "stale-send-refused"), 1);
}

/// Split under 3% loss and 5% duplicates: both splits finalize everywhere, children claimed.
#[test]
fn split_under_loss_finalizes_both_splits() {
    let s = load("faults/split-under-loss.toml");
    let r = run(&s, 1);
    assert_clean(&r);
    assert_eq!(fired(&r, "leaf-split"), 2, "both splits finalized");
    assert_eq!(r.transfers_sent, 4);
}

/// Renew under 3% loss and 5% duplicates: the deposit root renews (node-zero) and the split child
/// renews (renew-refund), chains stay consistent and every sent transfer is claimed. The library scenario
/// ends with exits through the renewed chains; they wait ~2000 blocks, so this test leaves them out.
#[test]
fn renew_under_loss_renews_the_root_and_the_split_child() {
    let mut s = load("faults/renew-under-loss.toml");
    s.workload.explicit.as_mut().expect("explicit workload").exits.clear();
    let r = run(&s, 1);
    assert_clean(&r);
    assert!(fired(&r, "renew-node-zero") >= 1, "the deposit root renewed");
    assert!(fired(&r, "renew-refund") >= 1, "the split child renewed");
}
