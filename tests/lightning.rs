//! Lightning (spark-protocol §4.7): one run per Lightning scenario through the library runner,
//! each judged by its expectation and by evidence that its branch really ran: the happy path
//! settles both invoices, a failed payment moves nothing, and a coordinator crash between share
//! release and reconstruction returns the swap with the preimage never reaching the SSP.
//! (Bad shares and cancel-after-shared are refused at the rule level: operator/preimage.rs.)

use serde_json::Value;
use sparksim::runner::{self, RunOptions};
use sparksim::scenario::Scenario;
use sparksim::trace::EventDigest;

/// Runs `scenarios/<name>.toml` with its own seed; asserts it matched its expectation; returns
/// the report as JSON (the checker's tables) and the per-event log.
fn run(name: &str) -> (Value, Vec<EventDigest>) {
    let p = format!("{}/../scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let s = Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
    let r = runner::run(&s, &p, s.seed.unwrap_or(1), &RunOptions { keep_digest_log: true, timeline_capacity: None });
    assert!(r.report.matched_expectation, "{name}: expected {}, got {:?} {:?}", r.report.expected, r.report.outcome, r.report.violations);
    (serde_json::to_value(&r.report).expect("report json"), r.digest_log.expect("digest log kept"))
}

fn sometimes(report: &Value, name: &str) -> u64 {
    report["checker"]["sometimes"][name].as_u64().unwrap_or_else(|| panic!("no sometimes {name}"))
}

/// (checks, violations) of one row of the §6 table.
fn invariant(report: &Value, id: &str) -> (u64, u64) {
    let row = report["checker"]["invariants"].as_array().expect("rows").iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no row {id}"));
    (row["checks"].as_u64().expect("checks"), row["violations"].as_u64().expect("violations"))
}

fn count(log: &[EventDigest], needle: &str) -> usize {
    log.iter().filter(|e| e.description.contains(needle)).count()
}

#[test]
fn receive_settles_both_invoices_and_the_users_claim() {
    let (report, log) = run("lightning");
    assert_eq!(sometimes(&report, "lightning-receive-settled"), 2);
    assert_eq!(sometimes(&report, "lightning-receive-failed"), 0);
    let (checks, violations) = invariant(&report, "I-13");
    assert!(checks > 0 && violations == 0, "I-13 {checks} checks, {violations} violations");
    // L-6 was judged and held. The Lightning receive's L-6 check runs at quiescence whenever
    // I-13 was judged (asserted above), so it is among these checks; other flows (leaf swaps)
    // may judge L-6 too, so the count is a floor, not an exact figure.
    let (l6_checks, l6_violations) = invariant(&report, "L-6");
    assert!(l6_checks >= 1 && l6_violations == 0, "L-6 {l6_checks} checks, {l6_violations} violations");
    // Every share went out only after the transfer existed: 4 participants × 2 swaps.
    assert_eq!(count(&log, "ReleasePreimageShare"), 8, "release requests delivered");
    assert_eq!(count(&log, "StorePreimageShare"), 10, "5 operators × 2 receives");
    // Both swaps and the plain transfers were claimed.
    assert_eq!(report["transfers_sent"], report["transfers_claimed"]);
}

#[test]
fn failed_payments_move_no_leaves() {
    let (report, log) = run("lightning-payment-fails");
    assert_eq!(sometimes(&report, "lightning-receive-settled"), 0);
    assert_eq!(count(&log, "StorePreimageShare"), 10, "the invoices were issued and the shares stored");
    assert_eq!(count(&log, "InitiatePreimageSwap"), 0, "no swap without the payer's HTLC");
    assert_eq!(count(&log, "ReleasePreimageShare"), 0, "no share released");
    assert_eq!(report["transfers_sent"], report["transfers_claimed"], "the plain transfers beside it complete");
}

#[test]
fn a_coordinator_crash_before_reconstruction_returns_the_swap() {
    let (report, log) = run("lightning-coordinator-crash");
    assert_eq!(count(&log, "crash operator:0"), 1, "the crash happened");
    // Released before the crash (4 participants) and again for the later swap (4 more).
    assert_eq!(count(&log, "ReleasePreimageShare"), 8);
    // The first swap released shares but never reconstructed: the SSP failed the HTLC back.
    assert!(sometimes(&report, "lightning-receive-failed") >= 1);
    assert!(sometimes(&report, "crash-during-send") >= 1, "the crash hit a swap in flight");
    // The later receive still settles, and atomicity held for both.
    assert_eq!(sometimes(&report, "lightning-receive-settled"), 1);
    assert_eq!(invariant(&report, "L-6").1, 0);
    assert_eq!(invariant(&report, "I-13").1, 0);
}
