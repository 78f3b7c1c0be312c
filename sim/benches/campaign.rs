//! Campaign throughput on the quickstart scenario: seed-runs per core-hour with `--jobs 1`,
//! and the speedup from `--jobs 1` to `--jobs 2` (independent runs on two OS threads).
//! Prints figures; asserts nothing. `just bench-campaign`; `SPARKSIM_BENCH_SEEDS=N` sets how
//! many seeds each configuration runs (default 8).
// A benchmark measures wall time by definition; it is not the simulated path.
#![allow(clippy::disallowed_methods)]

use sparksim::campaign::{self, CampaignConfig, KnownFailing, Shard};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let seeds: u64 = std::env::var("SPARKSIM_BENCH_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let scenario = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/quickstart.toml"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("campaign benchmark: quickstart, seeds 1..{seeds}, {cores} cores visible");
    let mut rate = Vec::new();
    for jobs in [1usize, 2] {
        let out = std::env::temp_dir().join(format!("sparksim-bench-campaign-{}-{jobs}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let cfg = CampaignConfig { target: scenario.clone(), seeds: 1..=seeds, jobs, shard: Shard::ALL, out: out.clone(), known_failing: KnownFailing::default(), progress: false, build: None };
        let start = Instant::now();
        let outcome = campaign::run(&cfg).expect("campaign runs");
        let wall = start.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&out);
        let runs_per_s = outcome.ran_now as f64 / wall;
        println!(
            "  --jobs {jobs}: {} runs in {wall:.2} s wall = {runs_per_s:.3} runs/s = {:.0} seed-runs per core-hour ({} not as expected)",
            outcome.ran_now,
            runs_per_s * 3600.0 / jobs as f64,
            outcome.report.runs_not_matched
        );
        rate.push(runs_per_s);
    }
    println!("  speedup --jobs 1 -> --jobs 2: {:.2}x", rate[1] / rate[0]);
}
