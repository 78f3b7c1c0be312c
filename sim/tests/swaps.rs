//! Leaf swaps with the SSP (spark-protocol §4.3), end to end in process: v3 and v2 settle both
//! legs, an SSP without liquidity refuses and the user's leg is returned at expiry, and an SSP
//! that never counters leaves every user leg returned; L-6 holds in each. v2: the operators
//! co-sign the counters' refunds under the user's adaptor point and the swap settles on the
//! user's completions, from which the SSP extracts `a` (also under crashes and loss).
use sparksim::report::RunReport;
use sparksim::runner::{self, RunOptions};
use sparksim::scenario::Scenario;

fn path(rel: &str) -> String {
    format!("{}/../scenarios/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn run_scenario(s: &Scenario, seed: u64) -> RunReport {
    runner::run(s, &s.file, seed, &RunOptions::default()).report
}

fn load(rel: &str) -> Scenario {
    Scenario::load(path(rel)).unwrap_or_else(|e| panic!("{e}"))
}

fn no_violations(rel: &str, r: &RunReport) {
    let v: Vec<String> = r.violations.iter().map(|v| format!("{}: {}", v.invariant, v.message)).collect();
    assert!(v.is_empty(), "{rel}: {v:?}");
}

fn count(r: &RunReport, name: &str) -> u64 {
    r.checker.as_ref().and_then(|c| c.sometimes.get(name).copied()).unwrap_or(0)
}

#[test]
fn v3_swaps_settle_both_legs_and_one_without_liquidity_is_returned() {
    let r = run_scenario(&load("ssp-swap.toml"), 1);
    no_violations("ssp-swap.toml", &r);
    assert_eq!((count(&r, "swap-started"), count(&r, "swap-settled"), count(&r, "swap-returned")), (3, 2, 1));
    // 2 primaries + 4 + 5 counter transfers, each claimed by its receiver.
    assert_eq!((r.transfers_sent, r.transfers_claimed), (11, 11));
}

#[test]
fn v2_swaps_settle_on_the_completed_adaptor_signature_and_the_ssp_learns_a() {
    let r = run_scenario(&load("ssp-swap-v2.toml"), 1);
    no_violations("ssp-swap-v2.toml", &r);
    assert_eq!((count(&r, "swap-settled"), count(&r, "swap-adaptor-learned"), count(&r, "swap-returned")), (2, 2, 1));
    assert_eq!((r.transfers_sent, r.transfers_claimed), (11, 11));
}

#[test]
fn an_ssp_that_never_counters_leaves_every_user_leg_returned_at_expiry() {
    let text = std::fs::read_to_string(path("ssp-swap.toml")).unwrap();
    let text = text.replace("[expect]", "[[fault]]\nkind = \"crash\"\nnode = \"ssp\"\nat_s = 1800.0\n\n[expect]");
    let s = Scenario::parse("scenarios/ssp-swap.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let r = run_scenario(&s, 1);
    no_violations("ssp-swap.toml + SSP down", &r);
    assert_eq!((count(&r, "swap-started"), count(&r, "swap-settled"), count(&r, "swap-returned")), (3, 0, 3));
    assert_eq!(r.transfers_sent, 0);
}

#[test]
fn swaps_under_ssp_and_coordinator_crashes_and_loss_are_all_or_nothing() {
    for seed in [1, 3, 5] {
        let r = run_scenario(&load("faults/ssp-swap-faults.toml"), seed);
        no_violations("faults/ssp-swap-faults.toml", &r);
        assert!(count(&r, "swap-started") >= 1, "seed {seed}: no swap started");
        assert_eq!(count(&r, "swap-started"), count(&r, "swap-settled") + count(&r, "swap-returned"), "seed {seed}: a swap was never decided");
    }
}

/// v2 under the faults scenario (SSP crash between the legs, coordinator crash, 5% loss): every
/// swap is decided, both legs or neither, and every settled one released by completions of the
/// operators' pre-signatures (checker/swaps.rs); an SSP that learned `a` did so from one.
#[test]
fn v2_swaps_under_crashes_and_loss_are_all_or_nothing() {
    let text = std::fs::read_to_string(path("faults/ssp-swap-faults.toml")).unwrap();
    let text = text.replace("swap_version = 3", "swap_version = 2");
    let s = Scenario::parse("scenarios/faults/ssp-swap-faults.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    for seed in [1, 3] {
        let r = run_scenario(&s, seed);
        no_violations("faults/ssp-swap-faults.toml as v2", &r);
        assert!(count(&r, "swap-started") >= 1, "seed {seed}: no swap started");
        assert_eq!(count(&r, "swap-started"), count(&r, "swap-settled") + count(&r, "swap-returned"), "seed {seed}: a swap was never decided");
        assert!(count(&r, "swap-adaptor-learned") <= count(&r, "swap-settled"), "seed {seed}: a was learned from an unsettled swap");
    }
}
