//! Runs one (scenario, seed): builds the cluster, schedules workload and faults, steps the engine
//! with the checker after every event, and produces the report.
use crate::report::RunReport;
use crate::scenario::Scenario;
use crate::trace::EventDigest;

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Keep a per-event digest log (for `check-determinism`).
    pub keep_digest_log: bool,
}

pub struct RunResult {
    pub report: RunReport,
    pub digest_log: Option<Vec<EventDigest>>,
}

/// Run `scenario` with `seed`. `scenario_path` is recorded in the report and the replay command.
/// Never panics on a node panic: that becomes a "panic" violation (a finding).
pub fn run(scenario: &Scenario, scenario_path: &str, seed: u64, opts: &RunOptions) -> RunResult {
    let _ = (scenario, scenario_path, seed, opts);
    unimplemented!("runner being written")
}
