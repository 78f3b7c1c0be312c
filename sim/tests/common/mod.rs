//! Helpers shared by the scenario-driven integration tests in `sim/tests/`.
#![allow(dead_code)] // each test binary uses a subset
use sparksim::report::RunReport;
use sparksim::runner::{self, RunOptions};
use sparksim::scenario::Scenario;
use std::path::PathBuf;

/// Run the library scenario `scenarios/<rel>` with `seed`.
pub fn run(rel: &str, seed: u64) -> RunReport {
    let path = PathBuf::from(format!("{}/../scenarios/{rel}", env!("CARGO_MANIFEST_DIR")));
    let s = Scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
    runner::run(&s, &s.file, seed, &RunOptions::default()).report
}

/// How often the sometimes-property `name` fired in the run.
pub fn fired(r: &RunReport, name: &str) -> u64 {
    r.checker.as_ref().and_then(|c| c.sometimes.get(name).copied()).unwrap_or(0)
}

/// No violation, and every acknowledged send was claimed.
pub fn assert_clean(rel: &str, r: &RunReport) {
    let v: Vec<String> = r.violations.iter().map(|v| format!("{}: {}", v.invariant, v.message)).collect();
    assert!(v.is_empty(), "{rel} seed {}: {v:?}", r.seed);
    assert_eq!(r.transfers_claimed, r.transfers_sent, "{rel} seed {}: every send is claimed", r.seed);
}
