//! The `sparksim` command line: run a scenario, replay a report, check determinism, or run the
//! demo. All logic lives in the library; this file parses arguments, prints, writes reports and
//! picks the exit code (0 = as expected, 1 = not as expected, 2 = bad input).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sparksim::report::{Outcome, RunReport};
use sparksim::runner::{self, RunOptions, RunResult};
use sparksim::scenario::{LoadError, Scenario};
use sparksim::timeline::{self, Timeline};
use sparksim::trace::first_divergence;
use sparksim::{campaign, html, junit, perfetto, scenario_writer, shrink};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The demo scenario, built into the binary so `sparksim demo` works from any directory.
const QUICKSTART_TOML: &str = include_str!("../../scenarios/quickstart.toml");
/// The `scenario_path` recorded for runs of the embedded quickstart; `replay` recognises it.
const EMBEDDED_QUICKSTART: &str = "<embedded quickstart>";
/// Seed used when neither the command line nor the scenario gives one.
const DEFAULT_SEED: u64 = 1;
const DEFAULT_OUT_DIR: &str = "reports";

const EXIT_CODES: &str = "\
Exit codes:
  0  the outcome is what the scenario expects (or: replay/determinism check agrees)
  1  the outcome is not what the scenario expects (or: trace hashes differ)
  2  bad input: unreadable or malformed scenario or report, bad arguments";

const EXAMPLES: &str = "\
Examples:
  sparksim demo
  sparksim run scenarios/crash-restart.toml --seed 7
  sparksim run scenarios/quickstart.toml --json | jq .transfer_latency
  sparksim replay reports/crash-restart-seed7.json
  sparksim check-determinism scenarios/partition-coordinator.toml --seed 3";

#[derive(Parser)]
#[command(
    name = "sparksim",
    version,
    about = "Deterministic simulator and invariant checker for Spark (a Bitcoin L2)",
    long_about = "Deterministic simulator and invariant checker for Spark (a Bitcoin L2).\n\n\
        A scenario file (TOML) describes operators, wallets, network, workload, faults, latency \
        budgets and the expected outcome. A run simulates it in virtual time, checks the \
        protocol's invariants after every event, and writes a JSON report. The same scenario \
        and seed always give the same run and the same trace hash.",
    after_help = concat!(
        "Examples:\n  sparksim demo\n  sparksim run scenarios/crash-restart.toml --seed 7\n",
        "  sparksim replay reports/crash-restart-seed7.json\n\n",
        "Exit codes: 0 as expected, 1 not as expected, 2 bad input. `sparksim help COMMAND` for more."
    ),
    after_long_help = format!("{EXAMPLES}\n\n{EXIT_CODES}"),
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario with one seed, print a summary and write the JSON report.
    ///
    /// The seed is --seed, else the scenario's `seed`, else 1. The report is written to
    /// OUT/<name>-seed<N>.json. Exit 0 when the outcome matches the scenario's [expect]
    /// (a regression scenario that expects a violation exits 0 when the checker finds it).
    #[command(after_help = format!(
        "Examples:\n  sparksim run scenarios/quickstart.toml\n  \
         sparksim run scenarios/crash-restart.toml --seed 42 --out /tmp/reports\n  \
         sparksim run scenarios/quickstart.toml --json\n\n{EXIT_CODES}"
    ))]
    Run {
        /// Scenario file (TOML); see docs/scenarios.md.
        scenario: PathBuf,
        /// Seed for every random choice of the run.
        #[arg(long)]
        seed: Option<u64>,
        /// Print only the report, as one JSON object, on stdout.
        #[arg(long)]
        json: bool,
        /// Directory the report is written to (created if missing).
        #[arg(long, default_value = DEFAULT_OUT_DIR)]
        out: PathBuf,
        /// Also write a self-contained HTML page (timeline, first violation, latency, coverage).
        #[arg(long)]
        html: bool,
        /// Also write JUnit XML (one test case: this scenario and seed).
        #[arg(long)]
        junit: bool,
        /// Also write a Chrome/Perfetto trace (open in ui.perfetto.dev), one lane per node.
        #[arg(long)]
        perfetto: bool,
    },
    /// Run every (scenario, seed) of a seed range on K cores; resumable; shardable.
    ///
    /// SCENARIO_OR_DIR is one scenario file or a directory searched recursively (bad/ skipped).
    /// Each finished run appends one JSON line to OUT/results.jsonl; killed and restarted with
    /// the same arguments, the campaign skips what is already there. Seeds listed in
    /// known-failing-seeds.toml run first. At the end OUT holds campaign.json,
    /// junit.xml, campaign.html, and failures/ with a JSON, HTML and Perfetto trace per failing
    /// run. Exit 0 when every run matched its scenario's expectation, else 1.
    #[command(after_help = format!(
        "Examples:\n  sparksim campaign scenarios/ --seeds 1..200 --jobs 2 --out campaign-out\n  \
         sparksim campaign scenarios/quickstart.toml --seeds 1..1000 --shard $JOB_COMPLETION_INDEX/8 --out shard-$JOB_COMPLETION_INDEX\n\n{EXIT_CODES}"
    ))]
    Campaign {
        /// A scenario file or a directory of them.
        target: PathBuf,
        /// Seed range, both ends included: A..B (or a single seed).
        #[arg(long)]
        seeds: String,
        /// Worker threads (independent runs in parallel; each run stays single-threaded).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// This machine's share: I/N keeps the seeds with seed % N == I.
        #[arg(long)]
        shard: Option<String>,
        /// Output directory (results.jsonl and the reports).
        #[arg(long)]
        out: PathBuf,
        /// Known failing seeds to run first (default: known-failing-seeds.toml if present).
        #[arg(long)]
        known_failing: Option<PathBuf>,
        /// Do not run the known failing seeds (e.g. in CI, which checks the library's own seeds).
        #[arg(long, conflicts_with = "known_failing")]
        no_known_failing: bool,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
        /// At most this many failing runs get a re-run with an HTML page and a Perfetto trace.
        #[arg(long, default_value_t = 10)]
        failure_pages: usize,
    },
    /// Combine campaign directories (shards) into one report: sorted, de-duplicated.
    #[command(after_help = format!(
        "Example:\n  sparksim merge shard-0 shard-1 shard-2 --out nightly\n\n{EXIT_CODES}"
    ))]
    Merge {
        /// Campaign output directories (or results.jsonl files).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where the merged results.jsonl, campaign.json, junit.xml and campaign.html go.
        #[arg(long)]
        out: PathBuf,
    },
    /// Shrink a failing run to a minimal scenario that still violates the same invariant.
    ///
    /// Takes a run report (reports/x-seed7.json), a campaign result line, or a campaign's
    /// results.jsonl (its first failing run, or the one --seed picks). Records the run's
    /// workload explicitly, delta-debugs faults, transfers, wallets and fault windows, and writes
    /// the minimal scenario (default: scenarios/regressions/<name>-seed<N>.toml).
    #[command(after_help = format!(
        "Example:\n  sparksim shrink reports/crash-restart-seed7.json\n  \
         sparksim shrink nightly/results.jsonl --seed 4242\n\n{EXIT_CODES}"
    ))]
    Shrink {
        /// A report, a result line, or a results.jsonl.
        report: PathBuf,
        /// With a results.jsonl: the failing run with this seed.
        #[arg(long)]
        seed: Option<u64>,
        /// The invariant to preserve (default: the run's first violation).
        #[arg(long)]
        invariant: Option<String>,
        /// Where to write the minimal scenario.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Give up reducing after this many candidate runs.
        #[arg(long, default_value_t = 400)]
        max_runs: usize,
    },
    /// Re-run the scenario and seed recorded in a report and confirm the trace hash is the same.
    ///
    /// Exit 0 when the hashes match; 1 (printing both) when they differ, which means the code,
    /// the scenario file or the simulator's determinism changed since the report was written.
    #[command(after_help = format!(
        "Example:\n  sparksim replay reports/quickstart-seed1.json\n\n{EXIT_CODES}"
    ))]
    Replay {
        /// A report written by `sparksim run` or `sparksim demo`.
        report: PathBuf,
    },
    /// Run a scenario twice in one process and compare the traces event by event.
    ///
    /// Exit 0 (printing the hash) when the two runs are identical; 1 when they differ, printing
    /// the first event at which they diverge.
    #[command(after_help = format!(
        "Example:\n  sparksim check-determinism scenarios/quickstart.toml --seed 3\n\n{EXIT_CODES}"
    ))]
    CheckDeterminism {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Seed (default: the scenario's `seed`, else 1).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run the built-in quickstart scenario and explain what happened.
    ///
    /// 5 operators (3-of-5), 4 wallets, deposits, a dozen transfers and one unilateral exit.
    /// The scenario is built into the binary (a copy of scenarios/quickstart.toml), so this
    /// works from any directory; the report goes to reports/.
    #[command(after_help = format!("Example:\n  cargo run --release -- demo\n\n{EXIT_CODES}"))]
    Demo {
        /// Seed (default: the scenario's `seed`, else 1).
        #[arg(long)]
        seed: Option<u64>,
        /// Directory the report is written to (created if missing).
        #[arg(long, default_value = DEFAULT_OUT_DIR)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs a subcommand. `Err` is always bad input (exit 2); findings are exit codes.
fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run {
            scenario,
            seed,
            json,
            out,
            html,
            junit,
            perfetto,
        } => cmd_run(&scenario, seed, json, &out, Extras { html, junit, perfetto }),
        Command::Campaign { target, seeds, jobs, shard, out, known_failing, no_known_failing, no_progress, failure_pages } => {
            let known = if no_known_failing { KnownFailingSource::None } else { KnownFailingSource::from(known_failing) };
            cmd_campaign(&target, &seeds, jobs, shard.as_deref(), &out, known, !no_progress, failure_pages)
        }
        Command::Merge { dirs, out } => cmd_merge(&dirs, &out),
        Command::Shrink { report, seed, invariant, out, max_runs } => cmd_shrink(&report, seed, invariant, out, max_runs),
        Command::Replay { report } => cmd_replay(&report),
        Command::CheckDeterminism { scenario, seed } => cmd_check_determinism(&scenario, seed),
        Command::Demo { seed, out } => cmd_demo(seed, &out),
    }
}

// ---------------------------------------------------------------------------------------------
// Subcommands
// ---------------------------------------------------------------------------------------------

fn cmd_run(path: &Path, seed: Option<u64>, json: bool, out: &Path, extras: Extras) -> Result<ExitCode> {
    let scenario = load_scenario(path)?;
    let seed = seed.or(scenario.seed).unwrap_or(DEFAULT_SEED);
    let opts = RunOptions {
        timeline_capacity: (extras.html || extras.perfetto).then_some(timeline::DEFAULT_CAPACITY),
        ..RunOptions::default()
    };
    let result = runner::run(&scenario, &path.display().to_string(), seed, &opts);
    let report_path = write_report(&result.report, out)?;
    let written = write_extras(&result, out, extras)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&result.report)?);
        eprintln!("report: {}", report_path.display());
        for p in &written {
            eprintln!("report: {}", p.display());
        }
    } else {
        print_summary(&scenario, &result.report);
        print_report_location(&report_path, "sparksim");
        for p in &written {
            row("", p.display());
        }
    }
    Ok(expectation_exit_code(&result.report))
}

fn cmd_demo(seed: Option<u64>, out: &Path) -> Result<ExitCode> {
    let scenario = embedded_quickstart()?;
    let seed = seed.or(scenario.seed).unwrap_or(DEFAULT_SEED);
    println!("sparksim demo: {}\n", scenario.description);
    let result = run_once(&scenario, EMBEDDED_QUICKSTART, seed, false);
    let report_path = write_report(&result.report, out)?;
    print_summary(&scenario, &result.report);
    print_report_location(&report_path, "cargo run --release --");
    Ok(expectation_exit_code(&result.report))
}

fn cmd_replay(report_path: &Path) -> Result<ExitCode> {
    let recorded = read_report(report_path)?;
    let scenario = if recorded.scenario_path == EMBEDDED_QUICKSTART {
        embedded_quickstart()?
    } else {
        load_scenario(Path::new(&recorded.scenario_path))
            .context("the report's scenario_path is resolved from the current directory")?
    };
    let replayed = run_once(&scenario, &recorded.scenario_path, recorded.seed, false).report;
    println!(
        "scenario    {} (seed {})",
        recorded.scenario_path, recorded.seed
    );
    if replayed.trace_hash == recorded.trace_hash {
        println!("trace hash  {}  matches", replayed.trace_hash);
        println!("outcome     {}", outcome_line(&replayed));
        return Ok(ExitCode::SUCCESS);
    }
    println!("trace hash MISMATCH:");
    println!("  recorded  {}", recorded.trace_hash);
    println!("  replayed  {}", replayed.trace_hash);
    println!("the code, the scenario file or determinism changed since the report was written;");
    println!(
        "run `sparksim check-determinism {} --seed {}` to tell which",
        recorded.scenario_path, recorded.seed
    );
    Ok(ExitCode::from(1))
}

fn cmd_check_determinism(path: &Path, seed: Option<u64>) -> Result<ExitCode> {
    let scenario = load_scenario(path)?;
    let seed = seed.or(scenario.seed).unwrap_or(DEFAULT_SEED);
    let name = path.display().to_string();
    let a = run_once(&scenario, &name, seed, true);
    let b = run_once(&scenario, &name, seed, true);
    println!("scenario    {name} (seed {seed})");
    if a.report.trace_hash == b.report.trace_hash {
        println!(
            "trace hash  {}  identical over 2 runs ({} events)",
            a.report.trace_hash, a.report.events
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("NOT deterministic: the two runs differ");
    println!("  run 1  {}", a.report.trace_hash);
    println!("  run 2  {}", b.report.trace_hash);
    let logs = a.digest_log.as_deref().zip(b.digest_log.as_deref());
    match logs.and_then(|(x, y)| first_divergence(x, y)) {
        Some(d) => println!("{d}"),
        None => println!("(the per-event digest logs do not show where: only the hashes differ)"),
    }
    Ok(ExitCode::from(1))
}

/// Which extra report formats `run` writes next to the JSON.
#[derive(Clone, Copy, Default)]
struct Extras {
    html: bool,
    junit: bool,
    perfetto: bool,
}

/// Writes `OUT/<name>-seed<N>.html`, `.junit.xml`, `.perfetto.json` as asked.
fn write_extras(result: &RunResult, out: &Path, extras: Extras) -> Result<Vec<PathBuf>> {
    let stem = report_file_name(&result.report);
    let stem = stem.trim_end_matches(".json");
    let empty = Timeline::default();
    let timeline = result.timeline.as_ref().unwrap_or(&empty);
    let mut files: Vec<(String, String)> = Vec::new();
    if extras.html {
        files.push((format!("{stem}.html"), html::run_page(&result.report, Some(timeline))));
    }
    if extras.junit {
        files.push((format!("{stem}.junit.xml"), junit::junit_xml(std::slice::from_ref(&result.report))));
    }
    if extras.perfetto {
        files.push((format!("{stem}.perfetto.json"), perfetto::trace_json(&result.report, timeline).to_string()));
    }
    let mut paths = Vec::new();
    for (name, text) in files {
        let p = out.join(name);
        std::fs::write(&p, text).with_context(|| format!("{}: cannot write report", p.display()))?;
        paths.push(p);
    }
    Ok(paths)
}

/// Where a campaign's known failing seeds come from.
enum KnownFailingSource {
    /// `known-failing-seeds.toml` if it exists.
    Default,
    File(PathBuf),
    None,
}

impl From<Option<PathBuf>> for KnownFailingSource {
    fn from(p: Option<PathBuf>) -> Self {
        p.map_or(KnownFailingSource::Default, KnownFailingSource::File)
    }
}

#[allow(clippy::too_many_arguments)]
fn cmd_campaign(
    target: &Path,
    seeds: &str,
    jobs: usize,
    shard: Option<&str>,
    out: &Path,
    known_failing: KnownFailingSource,
    progress: bool,
    failure_pages: usize,
) -> Result<ExitCode> {
    let seeds = campaign::parse_seeds(seeds)?;
    let shard = shard.map(campaign::parse_shard).transpose()?.unwrap_or(campaign::Shard::ALL);
    let known_failing = match known_failing {
        KnownFailingSource::File(p) => campaign::KnownFailing::load(&p)?,
        KnownFailingSource::Default if Path::new(campaign::KNOWN_FAILING_DEFAULT).exists() => {
            campaign::KnownFailing::load(Path::new(campaign::KNOWN_FAILING_DEFAULT))?
        }
        KnownFailingSource::Default | KnownFailingSource::None => campaign::KnownFailing::default(),
    };
    let cfg = campaign::CampaignConfig { target: target.to_path_buf(), seeds, jobs: jobs.max(1), shard, out: out.to_path_buf(), known_failing, progress, build: None };
    // Wall time for the throughput line only; no run reads it.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let outcome = campaign::run(&cfg)?;
    let wall = started.elapsed().as_secs_f64();
    let r = &outcome.report;
    println!("campaign {} (seeds {}..{}, shard {}/{}, {} jobs)", target.display(), cfg.seeds.start(), cfg.seeds.end(), shard.index, shard.count, cfg.jobs);
    row("runs", format!("{} ({} now, {} already done)", r.runs_total, outcome.ran_now, outcome.skipped_as_done));
    if outcome.ran_now > 0 && wall > 0.0 {
        row("speed", format!("{:.2} runs/s on {} jobs ({:.0} seed-runs per core-hour)", outcome.ran_now as f64 / wall, cfg.jobs, outcome.ran_now as f64 / wall * 3600.0 / cfg.jobs as f64));
    }
    if outcome.unreadable_lines > 0 {
        row("warning", format!("{} unreadable lines in results.jsonl were skipped", outcome.unreadable_lines));
    }
    finish_campaign_report(r, out, failure_pages, !outcome.harness_errors.is_empty())
}

fn cmd_merge(dirs: &[PathBuf], out: &Path) -> Result<ExitCode> {
    let (report, unreadable) = campaign::merge(dirs)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create directory", out.display()))?;
    let mut lines = String::new();
    for d in dirs {
        let path = if d.is_dir() { d.join(campaign::RESULTS_FILE) } else { d.clone() };
        for l in campaign::read_results(&path, false)?.0 {
            lines.push_str(&serde_json::to_string(&l)?);
            lines.push('\n');
        }
    }
    let merged = out.join(campaign::RESULTS_FILE);
    std::fs::write(&merged, lines).with_context(|| format!("{}: cannot write", merged.display()))?;
    println!("merged {} directories", dirs.len());
    row("runs", report.runs_total);
    if unreadable > 0 {
        row("warning", format!("{unreadable} unreadable lines skipped"));
    }
    finish_campaign_report(&report, out, 0, false)
}

/// Prints the verdict and the failures (each with its replay command), writes the reports, and
/// re-runs up to `failure_pages` failures with a timeline for their HTML and Perfetto files.
fn finish_campaign_report(r: &campaign::CampaignReport, out: &Path, failure_pages: usize, harness_errors: bool) -> Result<ExitCode> {
    row("scenarios", r.scenarios);
    row("as expected", r.runs_matched);
    row("NOT as exp.", r.runs_not_matched);
    for f in r.failures().take(20) {
        let why = f.violations.first().map_or_else(|| format!("expected {}", f.expected), |v| format!("{}: {}", v.invariant, v.message));
        println!("    - {} seed {}: {why}\n      replay: {}", f.scenario, f.seed, f.replay_command);
    }
    if r.runs_not_matched > 20 {
        println!("    ... and {} more (campaign.json)", r.runs_not_matched - 20);
    }
    for (scenario, missing) in &r.sometimes_never_fired {
        println!("    - {scenario}: [expect] sometimes never fired on any seed: {}", missing.join(", "));
    }
    for p in campaign::write_reports(r, out)? {
        row("report", p.display());
    }
    let pages = out.join("failures");
    for f in r.failures().take(failure_pages) {
        let Ok(scenario) = Scenario::load(&f.scenario_path) else { continue };
        let opts = RunOptions { timeline_capacity: Some(timeline::DEFAULT_CAPACITY), ..RunOptions::default() };
        let result = runner::run(&scenario, &f.scenario_path, f.seed, &opts);
        std::fs::create_dir_all(&pages).with_context(|| format!("{}: cannot create", pages.display()))?;
        write_report(&result.report, &pages)?;
        for p in write_extras(&result, &pages, Extras { html: true, junit: false, perfetto: true })? {
            row("failure", p.display());
        }
    }
    Ok(if r.passed() && !harness_errors { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn cmd_shrink(input: &Path, seed: Option<u64>, invariant: Option<String>, out: Option<PathBuf>, max_runs: usize) -> Result<ExitCode> {
    let report = pick_failing_run(input, seed)?;
    let invariant = match invariant.or_else(|| report.violations.first().map(|v| v.invariant.clone())) {
        Some(i) => i,
        None => anyhow::bail!("{}: seed {} has no violation: nothing to shrink", input.display(), report.seed),
    };
    let scenario = if report.scenario_path == EMBEDDED_QUICKSTART { embedded_quickstart()? } else { load_scenario(Path::new(&report.scenario_path))? };
    let target = shrink::Target { seed: report.seed, invariant: invariant.clone() };
    println!("shrinking {} seed {} (keeping {invariant}) ...", report.scenario_path, report.seed);
    let shrunk = shrink::shrink(&scenario, &target, max_runs)?;
    let name = report_file_name(&report);
    let out = out.unwrap_or_else(|| Path::new("scenarios/regressions").join(name.replace(".json", ".toml")));
    let mut minimal = shrunk.scenario.clone();
    minimal.name = format!("{}-seed{}-shrunk", scenario.name, report.seed);
    minimal.description = format!("Shrunk from {} seed {}: still violates {invariant}.", report.scenario_path, report.seed);
    let out_s = out.display().to_string();
    let text = scenario_writer::to_toml(&minimal, &shrink::header(&report.scenario_path, &target, &shrunk, &out_s));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    std::fs::write(&out, text).with_context(|| format!("{}: cannot write", out.display()))?;
    let (b, a) = (shrunk.before, shrunk.after);
    let pct = |x: u64, y: u64| if x == 0 { 0.0 } else { 100.0 * (x as f64 - y as f64) / x as f64 };
    row("events", format!("{} -> {} ({:.0}% smaller)", b.events, a.events, pct(b.events, a.events)));
    row("faults", format!("{} -> {}", b.faults, a.faults));
    row("transfers", format!("{} -> {}", b.transfers, a.transfers));
    row("deposits", format!("{} -> {}", b.deposits, a.deposits));
    row("wallets", format!("{} -> {}", b.wallets, a.wallets));
    row("runs", format!("{} candidate runs", shrunk.runs));
    row("written", out.display());
    row("replay", format!("sparksim run {}", out.display()));
    Ok(ExitCode::SUCCESS)
}

/// A run report from a report file, a single result line, or a results.jsonl (the failing run
/// with `seed`, else the first failing one).
fn pick_failing_run(input: &Path, seed: Option<u64>) -> Result<RunReport> {
    let text = std::fs::read_to_string(input).with_context(|| format!("{}: cannot read", input.display()))?;
    if let Ok(r) = serde_json::from_str::<RunReport>(&text) {
        return Ok(r);
    }
    let (lines, _) = campaign::read_results(input, false)?;
    if lines.is_empty() {
        anyhow::bail!("{}: neither a run report nor a results.jsonl with complete lines", input.display());
    }
    lines
        .into_iter()
        .map(|l| l.report)
        .filter(|r| !r.violations.is_empty())
        .find(|r| seed.is_none_or(|s| r.seed == s))
        .with_context(|| format!("{}: no run with a violation{}", input.display(), seed.map_or(String::new(), |s| format!(" for seed {s}"))))
}

// ---------------------------------------------------------------------------------------------
// Loading, running, writing
// ---------------------------------------------------------------------------------------------

/// Loads a scenario; both I/O and validation errors already name the file.
fn load_scenario(path: &Path) -> Result<Scenario> {
    // Flattened to one line: `LoadError::Io` already shows its source, and `{:#}` would repeat it.
    Scenario::load(path).map_err(|e| match e {
        LoadError::Io { .. } => anyhow::anyhow!("{e}"),
        LoadError::Invalid(inner) => anyhow::anyhow!("invalid scenario: {inner}"),
    })
}

fn embedded_quickstart() -> Result<Scenario> {
    Scenario::parse(EMBEDDED_QUICKSTART, QUICKSTART_TOML)
        .map_err(|e| anyhow::anyhow!("the built-in quickstart scenario is invalid: {e}"))
}

fn run_once(scenario: &Scenario, scenario_path: &str, seed: u64, keep_log: bool) -> RunResult {
    let opts = RunOptions {
        keep_digest_log: keep_log,
        ..RunOptions::default()
    };
    runner::run(scenario, scenario_path, seed, &opts)
}

fn read_report(path: &Path) -> Result<RunReport> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read report", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a sparksim run report", path.display()))
}

/// Writes `OUT/<scenario>-seed<N>.json` and returns its path.
fn write_report(report: &RunReport, out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create report directory", out.display()))?;
    let path = out.join(report_file_name(report));
    let json = serde_json::to_string_pretty(report)? + "\n";
    std::fs::write(&path, json)
        .with_context(|| format!("{}: cannot write report", path.display()))?;
    Ok(path)
}

/// `<name>-seed<N>.json`, with anything but `[A-Za-z0-9_-]` in the name replaced by `_`.
fn report_file_name(report: &RunReport) -> String {
    let name: String = report
        .scenario
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}-seed{}.json", report.seed)
}

fn expectation_exit_code(report: &RunReport) -> ExitCode {
    if report.matched_expectation {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Human output
// ---------------------------------------------------------------------------------------------

fn print_summary(scenario: &Scenario, r: &RunReport) {
    let deposits_planned = match &scenario.workload.explicit {
        Some(e) => e.deposits.len() as u64,
        None => u64::from(scenario.workload.deposits_per_wallet) * u64::from(r.wallets),
    } + scenario.ssp.as_ref().map_or(0, |s| s.deposits.len() as u64);
    println!("{} (seed {})", r.scenario, r.seed);
    row(
        "operators",
        format!(
            "{} (threshold {}-of-{})",
            r.operators, r.threshold, r.operators
        ),
    );
    match &scenario.ssp {
        Some(_) => row("wallets", format!("{} + the SSP", r.wallets)),
        None => row("wallets", r.wallets),
    }
    row(
        "deposits",
        format!("{} of {deposits_planned} confirmed", r.deposits_confirmed),
    );
    row(
        "transfers",
        format!(
            "{} sent, {} claimed, {} returned",
            r.transfers_sent, r.transfers_claimed, r.transfers_returned
        ),
    );
    row("exits", format!("{} confirmed", r.exits_confirmed));
    row(
        "invariants",
        format!("{} checks over {} events", r.invariant_checks, r.events),
    );
    row("violations", violations_line(r));
    for v in &r.violations {
        println!(
            "    - {} at t={:.3}s (event {}): {}",
            v.invariant, v.sim_time_s, v.event_index, v.message
        );
    }
    if let Some(line) = sometimes_line(r) {
        row("sometimes", line);
    }
    row("latency", latency_line(r));
    row("time", time_line(r));
    row("trace hash", &r.trace_hash);
    row("outcome", outcome_line(r));
}

fn row(label: &str, value: impl std::fmt::Display) {
    println!("  {label:<12}{value}");
}

fn violations_line(r: &RunReport) -> String {
    if r.violations.is_empty() {
        return "none".to_owned();
    }
    let mut kinds: Vec<&str> = r.violations.iter().map(|v| v.invariant.as_str()).collect();
    kinds.dedup();
    format!("{} ({})", r.violations.len(), kinds.join(", "))
}

/// The scenario's `[expect] sometimes` properties and how often each fired on this seed. One run
/// cannot fail on a sometimes-property (a campaign judges them over all its seeds), but the reader
/// should see at once that this seed did not reach one.
fn sometimes_line(r: &RunReport) -> Option<String> {
    if r.expected_sometimes.is_empty() {
        return None;
    }
    let fired = |p: &str| r.checker.as_ref().and_then(|c| c.sometimes.get(p).copied()).unwrap_or(0);
    let parts: Vec<String> = r.expected_sometimes.iter().map(|p| format!("{p} x{}", fired(p))).collect();
    let missing = r.expected_sometimes.iter().filter(|p| fired(p) == 0).count();
    let note = if missing == 0 {
        String::new()
    } else {
        format!(" ({missing} not reached on this seed: a campaign over more seeds judges them)")
    };
    Some(format!("{}{note}", parts.join(", ")))
}

fn latency_line(r: &RunReport) -> String {
    let l = &r.transfer_latency;
    let secs = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{s:.3}s"));
    let budget = l
        .budget_p99_s
        .map_or(String::new(), |b| format!(", budget p99 {b}s"));
    format!(
        "transfer p50 {} p99 {} max {} ({} samples, simulated{budget})",
        secs(l.p50_s),
        secs(l.p99_s),
        secs(l.max_s),
        l.samples
    )
}

fn time_line(r: &RunReport) -> String {
    let speed = if r.wall_time_s > 0.0 {
        format!("{:.0}x", r.sim_time_s / r.wall_time_s)
    } else {
        "-".to_owned()
    };
    format!(
        "{} simulated in {:.2}s wall ({speed} real time)",
        human_duration(r.sim_time_s),
        r.wall_time_s
    )
}

fn outcome_line(r: &RunReport) -> String {
    let outcome = match r.outcome {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
    };
    let verdict = if r.matched_expectation {
        "as expected"
    } else {
        "NOT as expected"
    };
    format!("{outcome} (expected {}: {verdict})", r.expected)
}

/// `1d 02h 03m 04s`, dropping leading zero units; seconds keep one decimal below a minute.
fn human_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return format!("{secs}s");
    }
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let total = secs.round() as u64;
    let (d, h, m, s) = (
        total / 86_400,
        total / 3_600 % 24,
        total / 60 % 60,
        total % 60,
    );
    match (d, h) {
        (0, 0) => format!("{m}m {s:02}s"),
        (0, _) => format!("{h}h {m:02}m {s:02}s"),
        _ => format!("{d}d {h:02}h {m:02}m {s:02}s"),
    }
}

fn print_report_location(report_path: &Path, invoke: &str) {
    row("report", report_path.display());
    row(
        "replay",
        format!("{invoke} replay {}", report_path.display()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparksim::report::{LatencySummary, MessageCounts, Violation, SCHEMA_VERSION};

    fn report() -> RunReport {
        RunReport {
            schema_version: SCHEMA_VERSION,
            scenario: "quick start/1".to_owned(),
            scenario_path: EMBEDDED_QUICKSTART.to_owned(),
            seed: 7,
            outcome: Outcome::Fail,
            expected: "violation:I-6".to_owned(),
            matched_expectation: true,
            violations: vec![Violation {
                invariant: "I-6".to_owned(),
                sim_time_s: 1801.25,
                event_index: 4242,
                message: "refund CSV 2000 not below previous owner's 2000".to_owned(),
        }],
            trace_hash: "ab".repeat(32),
            events: 10_000,
            operators: 5,
            threshold: 3,
            wallets: 4,
            deposits_confirmed: 8,
            transfers_sent: 12,
            transfers_claimed: 11,
            transfers_returned: 1,
            exits_confirmed: 1,
            invariant_checks: 60_000,
            transfer_latency: LatencySummary {
                samples: 11,
                p50_s: Some(0.21),
                p99_s: Some(0.5),
                max_s: Some(0.51),
                budget_p99_s: Some(10.0),
            },
            messages: MessageCounts::default(),
            blocks: 2100,
            txs_verified_inputs: 30,
            sim_time_s: 1_262_000.0,
            wall_time_s: 1.5,
            replay_command: String::new(),
            expected_sometimes: Vec::new(),
            checker: None,
            adversary: None,
            swarm: None,
            fault_mix: Default::default(),
        }
    }

    #[test]
    fn report_file_name_is_safe_and_names_the_seed() {
        assert_eq!(report_file_name(&report()), "quick_start_1-seed7.json");
    }

    #[test]
    fn human_duration_drops_leading_zero_units() {
        assert_eq!(human_duration(12.34), "12.3s");
        assert_eq!(human_duration(61.0), "1m 01s");
        assert_eq!(human_duration(3_725.0), "1h 02m 05s");
        assert_eq!(human_duration(1_262_000.0), "14d 14h 33m 20s");
    }

    #[test]
    fn summary_lines() {
        let r = report();
        assert_eq!(violations_line(&r), "1 (I-6)");
        assert_eq!(
            outcome_line(&r),
            "fail (expected violation:I-6: as expected)"
        );
        assert!(time_line(&r).contains("841333x"), "{}", time_line(&r));
        assert!(
            latency_line(&r).contains("p99 0.500s"),
            "{}",
            latency_line(&r)
        );
        let scenario = Scenario::parse("q.toml", QUICKSTART_TOML).expect("quickstart parses");
        print_summary(&scenario, &r);
    }
}
