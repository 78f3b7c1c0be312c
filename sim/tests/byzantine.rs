//! Byzantine operators (one scenario per behaviour, each asserting its outcome) and the known
//! Spark hazards (each found within a bounded number of seeds with its option on, and absent
//! with it off). Runs the library, not the binary, so it can look at the report's details.
use reference_node::observe::Observation;
use reference_node::types::Micros;
use sparksim::report::{AdversaryReport, RunReport};
use sparksim::runner::{self, RunOptions};
use sparksim::scenario::{Expectation, Scenario};
use std::path::PathBuf;

fn path(rel: &str) -> PathBuf {
    PathBuf::from(format!("{}/../scenarios/{rel}", env!("CARGO_MANIFEST_DIR")))
}

fn load(rel: &str) -> Scenario {
    Scenario::load(path(rel)).unwrap_or_else(|e| panic!("{e}"))
}

fn run(s: &Scenario, seed: u64) -> RunReport {
    runner::run(s, &s.file, seed, &RunOptions::default()).report
}

fn adversary(r: &RunReport) -> &AdversaryReport {
    r.adversary.as_ref().expect("a Byzantine scenario reports its adversary section")
}

fn summary(r: &RunReport) -> String {
    let v: Vec<String> = r.violations.iter().map(|v| format!("{}: {}", v.invariant, v.message)).collect();
    format!("sent {} claimed {} returned {}; violations: {v:?}", r.transfers_sent, r.transfers_claimed, r.transfers_returned)
}

/// The protocol tolerated the behaviour: no violation, every deposit confirmed, every transfer
/// that was acknowledged was claimed, and enough of them went through to mean something.
fn assert_tolerated(r: &RunReport) {
    assert!(r.violations.is_empty(), "{}", summary(r));
    assert_eq!(r.deposits_confirmed, 8, "{}", summary(r));
    assert!(r.transfers_sent >= 5, "{}", summary(r));
    assert_eq!(r.transfers_claimed, r.transfers_sent, "{}", summary(r));
}

fn culprits(r: &RunReport) -> Vec<String> {
    adversary(r).culprits_named.keys().cloned().collect()
}

#[test]
fn byzantine_library_parses_and_every_file_says_what_it_tests() {
    let dir = path("byzantine");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("scenarios/byzantine") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&p).expect("read");
            assert!(text.starts_with('#'), "{}: start with a comment", p.display());
            let s = Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert!(!s.byzantine.is_empty(), "{}: no [[byzantine]] entry", p.display());
            n += 1;
        }
    }
    assert!(n >= 8, "one scenario per behaviour, found {n}");
}

#[test]
fn wrong_shares_are_named_and_signed_around() {
    let r = run(&load("byzantine/wrong-share.toml"), 1);
    assert_tolerated(&r);
    assert_eq!(culprits(&r), ["operator:3", "operator:4"]);
}

#[test]
fn equivocating_operators_are_named_and_signed_around() {
    let r = run(&load("byzantine/equivocation.toml"), 1);
    assert_tolerated(&r);
    assert_eq!(culprits(&r), ["operator:3", "operator:4"]);
}

#[test]
fn withholding_operators_are_named_and_signed_around() {
    let r = run(&load("byzantine/withhold.toml"), 1);
    assert_tolerated(&r);
    assert_eq!(culprits(&r), ["operator:3", "operator:4"]);
}

#[test]
fn nonce_reuse_is_refused_by_the_honest_guard() {
    let r = run(&load("byzantine/nonce-reuse.toml"), 1);
    assert_tolerated(&r);
    assert!(adversary(&r).nonce_reuse_refused > 0, "{:?}", r.adversary);
}

#[test]
fn stale_replays_change_nothing() {
    let r = run(&load("byzantine/replay-stale.toml"), 1);
    assert_tolerated(&r);
}

/// The forged tweaks reach the honest operators and are rejected: an operator is not the
/// receiver, so authentication (spark-protocol §4.0) refuses both before the Feldman check
/// would (that check is exercised with the receiver's own identity in `garbage.rs`).
#[test]
fn forged_tweaks_are_rejected_and_claims_complete() {
    let s = load("byzantine/forged-tweak.toml");
    let r = run(&s, 1);
    assert_tolerated(&r);
    let mut engine = runner::build(&s, 1, false).engine;
    let mut unauthenticated = 0;
    while let Some(rec) = engine.step() {
        for o in &rec.observations {
            if let Observation::Rejected { reason, .. } = o {
                unauthenticated += usize::from(reason.contains("not authenticated"));
            }
        }
        if rec.time > Micros::from_secs(2_400) {
            break;
        }
    }
    assert!(unauthenticated > 0, "no forged tweak was rejected");
}

#[test]
fn fewer_than_t_colluders_cannot_steal() {
    let r = run(&load("byzantine/stale-shares-below-threshold.toml"), 1);
    assert!(r.violations.is_empty(), "{}", summary(&r));
    let a = adversary(&r);
    assert!(a.theft_attempts_blocked > 0, "{a:?}");
    assert_eq!(a.theft_attempts_succeeded, 0);
}

#[test]
fn t_colluders_steal_and_it_is_reported_as_the_trust_limit() {
    let r = run(&load("byzantine/stale-shares-at-threshold.toml"), 1);
    assert!(r.matched_expectation, "{}", summary(&r));
    assert!(r.violations.iter().all(|v| v.invariant != "theft"), "{}", summary(&r));
    assert!(r.violations.iter().any(|v| v.invariant == "trust-assumption-broken" && v.message.contains("spent on chain")));
    assert!(adversary(&r).theft_attempts_succeeded > 0);
}

// --- known hazards (spark-protocol §8.2) ------------------------------------------------------

/// Seeds 1..=`bound` with the hazard on: the first that finds the expected invariant. Then the
/// same seeds with the hazard off: that invariant is never reported.
fn hazard_found_within(rel: &str, bound: u64) -> u64 {
    let s = load(rel);
    let Expectation::Violation(inv) = s.expect else { panic!("{rel} must expect a violation") };
    let found = (1..=bound)
        .find(|seed| run(&s, *seed).matched_expectation)
        .unwrap_or_else(|| panic!("{rel}: {inv} not found in seeds 1..={bound}"));
    let mut off = s.clone();
    off.protocol.hazards.clear();
    off.protocol.test_faults.clear();
    off.expect = Expectation::Pass;
    for seed in 1..=found {
        let r = run(&off, seed);
        assert!(r.violations.iter().all(|v| v.invariant != inv.as_str()), "{rel} seed {seed} with the hazard off: {}", summary(&r));
    }
    found
}

#[test]
fn hazard_claim_skip_timelock_decrement_is_found_at_once() {
    assert_eq!(hazard_found_within("regressions/claim-skip-timelock-decrement.toml", 1), 1);
}

#[test]
fn hazard_skip_send_timelock_decrement_is_found_at_once() {
    assert_eq!(hazard_found_within("regressions/skip-timelock-decrement.toml", 1), 1);
}

#[test]
fn hazard_gossip_ack_unapplied_is_found_within_two_seeds() {
    hazard_found_within("regressions/gossip-ack-unapplied.toml", 2);
}

#[test]
fn hazard_claim_settle_split_is_found_within_two_seeds() {
    hazard_found_within("regressions/claim-settle-split.toml", 2);
}
