//! Campaigns: every (scenario, seed) of a seed range, run on K worker threads, one JSON line per
//! finished run appended to `OUT/results.jsonl`, resumable after a kill.
//!
//! Each run is independent and deterministic, so running them on several OS threads changes
//! nothing about any one run: threads exist only here, between runs, never inside one.
//! Results are appended as they finish (so their order varies); every report built from them
//! sorts by (scenario, seed).
//!
//! Resume: on start the results file is read and every (scenario path, scenario digest, seed,
//! build) already there is skipped. A last line cut short by a kill is cut off the file before
//! anything is appended, so a restarted campaign neither redoes nor loses a finished run.
//!
//! Sharding: `--shard I/N` keeps the seeds with `seed % N == I`, so N machines (a GitHub
//! Actions matrix, a Kubernetes Indexed Job) split one campaign with no coordination; `merge`
//! combines their output directories.
use crate::report::{RunReport, SCHEMA_VERSION};
use crate::runner::{self, RunOptions};
use crate::scenario::{LoadError, Scenario};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};

/// The results file inside a campaign's output directory.
pub const RESULTS_FILE: &str = "results.jsonl";
/// The known-failing-seeds file a campaign reads by default, if it exists.
pub const KNOWN_FAILING_DEFAULT: &str = "known-failing-seeds.toml";

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Scenario(#[from] LoadError),
    #[error("--seeds: expected A..B (inclusive, A <= B), found `{0}`")]
    Seeds(String),
    #[error("--shard: expected I/N with 0 <= I < N, found `{0}`")]
    Shard(String),
    #[error("{path}: not a known-failing-seeds file: {message}")]
    KnownFailing { path: String, message: String },
    #[error("{0}: no scenario files found")]
    NoScenarios(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CampaignError + '_ {
    move |source| CampaignError::Io { path: path.display().to_string(), source }
}

/// `A..B` (both ends included; `A..=B` is accepted too) or a single seed `A`.
pub fn parse_seeds(s: &str) -> Result<std::ops::RangeInclusive<u64>, CampaignError> {
    let bad = || CampaignError::Seeds(s.to_owned());
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (a, b.strip_prefix('=').unwrap_or(b)),
        None => (s, s),
    };
    let (a, b): (u64, u64) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a > b {
        return Err(bad());
    }
    Ok(a..=b)
}

/// `I/N` with `I < N`.
pub fn parse_shard(s: &str) -> Result<Shard, CampaignError> {
    let bad = || CampaignError::Shard(s.to_owned());
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (index, count): (u64, u64) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

/// This machine's share of a campaign: the seeds with `seed % count == index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };
    pub fn owns(&self, seed: u64) -> bool {
        seed % self.count == self.index
    }
}

/// The build a result belongs to: the crate version and a digest of the running executable
/// (so a rebuilt binary never reuses an older binary's results), plus `SPARKSIM_BUILD` (e.g. a
/// git commit) when it was set at compile time.
pub fn build_id() -> String {
    let mut id = env!("CARGO_PKG_VERSION").to_owned();
    if let Some(b) = option_env!("SPARKSIM_BUILD").filter(|b| !b.is_empty()) {
        id.push('+');
        id.push_str(b);
    }
    if let Some(bytes) = std::env::current_exe().ok().and_then(|p| std::fs::read(p).ok()) {
        id.push_str("-exe.");
        id.push_str(&hex::encode(&Sha256::digest(&bytes)[..6]));
    }
    id
}

/// One line of `results.jsonl`: the run's full report plus what identifies it for resuming.
/// A line is also a valid run report (extra keys are ignored), so `shrink` and `replay` take it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultLine {
    pub build: String,
    /// SHA-256 (first 8 bytes, hex) of the scenario file's text: an edited file is re-run.
    pub scenario_digest: String,
    #[serde(flatten)]
    pub report: RunReport,
}

impl ResultLine {
    fn key(&self) -> RunKey {
        RunKey { scenario_path: self.report.scenario_path.clone(), scenario_digest: self.scenario_digest.clone(), seed: self.report.seed, build: self.build.clone() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RunKey {
    scenario_path: String,
    scenario_digest: String,
    seed: u64,
    build: String,
}

/// The known-failing-seeds file: `[[seed]]` entries with `scenario` (a path) and `seed`, plus an
/// optional `note`. They run before the rest of a campaign, so a nightly run reports on the
/// bugs it already knows about first.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownFailing {
    #[serde(default)]
    pub seed: Vec<KnownSeed>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownSeed {
    pub scenario: String,
    pub seed: u64,
    #[serde(default)]
    pub note: String,
}

impl KnownFailing {
    pub fn load(path: &Path) -> Result<KnownFailing, CampaignError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        toml::from_str(&text).map_err(|e| CampaignError::KnownFailing { path: path.display().to_string(), message: e.to_string() })
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct CampaignConfig {
    /// A scenario file, or a directory searched recursively (skipping `bad/`).
    pub target: PathBuf,
    pub seeds: std::ops::RangeInclusive<u64>,
    pub jobs: usize,
    pub shard: Shard,
    pub out: PathBuf,
    pub known_failing: KnownFailing,
    /// Draw an `indicatif` progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// The build results are keyed by; `None`: [`build_id`].
    pub build: Option<String>,
}

/// Scenario files under `target` (or `target` itself), sorted.
pub fn scenario_files(target: &Path) -> Result<Vec<PathBuf>, CampaignError> {
    if target.is_file() {
        return Ok(vec![target.to_path_buf()]);
    }
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CampaignError> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).map_err(io(dir))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if p.is_dir() && name != "bad" {
                walk(&p, out)?;
            } else if p.is_file() && name.ends_with(".toml") && name != "known-failing-seeds.toml" {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(target, &mut out)?;
    if out.is_empty() {
        return Err(CampaignError::NoScenarios(target.display().to_string()));
    }
    Ok(out)
}

/// What a campaign (or a merge) found: the versioned summary plus every run, sorted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CampaignReport {
    pub schema_version: u32,
    pub builds: Vec<String>,
    pub scenarios: usize,
    pub runs_total: usize,
    pub runs_matched: usize,
    pub runs_not_matched: usize,
    pub per_scenario: BTreeMap<String, Tally>,
    /// Scenario path → its `[expect] sometimes` properties that fired on none of its runs: each
    /// fails the campaign (the fault mix never reached the state the scenario exists for).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sometimes_never_fired: BTreeMap<String, Vec<String>>,
    /// Every run, sorted by (scenario path, seed).
    pub runs: Vec<RunReport>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub runs: usize,
    pub matched: usize,
}

impl CampaignReport {
    /// Sorts and deduplicates (first line of a key wins) and tallies.
    pub fn from_lines(lines: Vec<ResultLine>) -> CampaignReport {
        let mut by_key: BTreeMap<(String, u64, String, String), ResultLine> = BTreeMap::new();
        let mut builds = BTreeSet::new();
        for l in lines {
            builds.insert(l.build.clone());
            let k = l.key();
            by_key.entry((k.scenario_path, k.seed, k.build, k.scenario_digest)).or_insert(l);
        }
        let runs: Vec<RunReport> = by_key.into_values().map(|l| l.report).collect();
        let mut per_scenario: BTreeMap<String, Tally> = BTreeMap::new();
        for r in &runs {
            let t = per_scenario.entry(r.scenario_path.clone()).or_default();
            t.runs += 1;
            t.matched += usize::from(r.matched_expectation);
        }
        let matched = runs.iter().filter(|r| r.matched_expectation).count();
        let sometimes_never_fired = never_fired_per_scenario(&runs);
        CampaignReport {
            schema_version: SCHEMA_VERSION,
            builds: builds.into_iter().collect(),
            scenarios: per_scenario.len(),
            runs_total: runs.len(),
            runs_matched: matched,
            runs_not_matched: runs.len() - matched,
            per_scenario,
            sometimes_never_fired,
            runs,
        }
    }

    /// Every run matched its expectation and every declared sometimes-property fired somewhere.
    pub fn passed(&self) -> bool {
        self.runs_not_matched == 0 && self.sometimes_never_fired.is_empty()
    }

    pub fn failures(&self) -> impl Iterator<Item = &RunReport> {
        self.runs.iter().filter(|r| !r.matched_expectation)
    }
}

/// Per scenario, the declared `[expect] sometimes` properties that fired in none of its runs.
fn never_fired_per_scenario(runs: &[RunReport]) -> BTreeMap<String, Vec<String>> {
    let mut declared: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut fired: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in runs {
        declared.entry(&r.scenario_path).or_default().extend(r.expected_sometimes.iter().map(String::as_str));
        if let Some(c) = &r.checker {
            fired.entry(&r.scenario_path).or_default().extend(c.sometimes.iter().filter(|(_, n)| **n > 0).map(|(k, _)| k.as_str()));
        }
    }
    declared
        .into_iter()
        .filter_map(|(path, want)| {
            let seen = fired.get(path);
            let missing: Vec<String> = want.into_iter().filter(|w| !seen.is_some_and(|s| s.contains(w))).map(str::to_owned).collect();
            (!missing.is_empty()).then(|| (path.to_owned(), missing))
        })
        .collect()
}

/// Reads a results file, ignoring (and, with `repair`, cutting off) a truncated last line.
/// Returns the lines and how many unreadable complete lines were skipped.
pub fn read_results(path: &Path, repair: bool) -> Result<(Vec<ResultLine>, usize), CampaignError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io(path)(e)),
    };
    let mut reader = std::io::BufReader::new(file);
    let (mut lines, mut bad, mut good_len, mut buf) = (Vec::new(), 0, 0u64, String::new());
    loop {
        buf.clear();
        let n = reader.read_line(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        if !buf.ends_with('\n') {
            // Killed mid-write: this run is not finished; it will run again.
            break;
        }
        good_len += n as u64;
        match serde_json::from_str::<ResultLine>(buf.trim_end()) {
            Ok(l) => lines.push(l),
            Err(_) if buf.trim().is_empty() => {}
            Err(_) => bad += 1,
        }
    }
    if repair {
        let f = std::fs::OpenOptions::new().write(true).open(path).map_err(io(path))?;
        if f.metadata().map_err(io(path))?.len() > good_len {
            f.set_len(good_len).map_err(io(path))?;
        }
    }
    Ok((lines, bad))
}

/// One (scenario, seed) to run.
struct Job {
    scenario: usize,
    seed: u64,
}

/// A loaded scenario of the campaign.
struct Loaded {
    path: String,
    digest: String,
    scenario: Scenario,
}

/// What `run` did.
#[derive(Debug)]
pub struct CampaignOutcome {
    /// The report over this campaign's runs (finished earlier and now).
    pub report: CampaignReport,
    pub skipped_as_done: usize,
    pub ran_now: usize,
    pub unreadable_lines: usize,
    /// Runs that crashed the harness itself (not a node panic): not written, retried next time.
    pub harness_errors: Vec<String>,
}

/// Runs a campaign; see the module documentation.
pub fn run(cfg: &CampaignConfig) -> Result<CampaignOutcome, CampaignError> {
    let files = scenario_files(&cfg.target)?;
    let mut loaded = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(io(f))?;
        let path = f.display().to_string();
        let scenario = Scenario::parse(&path, &text).map_err(LoadError::from)?;
        loaded.push(Loaded { digest: digest(&text), path, scenario });
    }
    let build = cfg.build.clone().unwrap_or_else(build_id);

    // Known failing seeds first (those of this campaign's scenarios, in this shard), then the range.
    let same_file = |a: &str, b: &str| a == b || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y);
    let mut jobs: Vec<Job> = Vec::new();
    let mut queued: BTreeSet<(usize, u64)> = BTreeSet::new();
    for k in &cfg.known_failing.seed {
        if let Some(i) = loaded.iter().position(|l| same_file(&l.path, &k.scenario)) {
            if cfg.shard.owns(k.seed) && queued.insert((i, k.seed)) {
                jobs.push(Job { scenario: i, seed: k.seed });
            }
        }
    }
    for seed in cfg.seeds.clone().filter(|s| cfg.shard.owns(*s)) {
        for i in 0..loaded.len() {
            if queued.insert((i, seed)) {
                jobs.push(Job { scenario: i, seed });
            }
        }
    }

    std::fs::create_dir_all(&cfg.out).map_err(io(&cfg.out))?;
    let results_path = cfg.out.join(RESULTS_FILE);
    let (previous, unreadable) = read_results(&results_path, true)?;
    let done: BTreeMap<RunKey, ResultLine> = previous.into_iter().map(|l| (l.key(), l)).collect();
    let key_of = |j: &Job| RunKey { scenario_path: loaded[j.scenario].path.clone(), scenario_digest: loaded[j.scenario].digest.clone(), seed: j.seed, build: build.clone() };
    let mut mine: Vec<ResultLine> = Vec::new();
    let mut todo: VecDeque<Job> = VecDeque::new();
    for j in jobs {
        match done.get(&key_of(&j)) {
            Some(l) => mine.push(l.clone()),
            None => todo.push_back(j),
        }
    }
    let skipped_as_done = mine.len();
    let ran_now = todo.len();

    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&results_path).map_err(io(&results_path))?;
    file.seek(std::io::SeekFrom::End(0)).map_err(io(&results_path))?;
    let bar = progress_bar(cfg.progress, ran_now as u64);
    let mut failures = mine.iter().filter(|l| !l.report.matched_expectation).count();
    bar.set_message(format!("{failures} failures"));
    let queue = Mutex::new(todo);
    let mut harness_errors = Vec::new();
    let (tx, rx) = mpsc::channel::<Result<ResultLine, String>>();
    let loaded = &loaded;
    let write_result = std::thread::scope(|scope| -> Result<(), CampaignError> {
        for _ in 0..cfg.jobs.max(1) {
            let (tx, queue, build) = (tx.clone(), &queue, build.clone());
            scope.spawn(move || loop {
                let job = match queue.lock() {
                    Ok(mut q) => q.pop_front(),
                    Err(_) => None,
                };
                let Some(job) = job else { break };
                let l = &loaded[job.scenario];
                let result = std::panic::catch_unwind(|| runner::run(&l.scenario, &l.path, job.seed, &RunOptions::default()).report)
                    .map(|report| ResultLine { build: build.clone(), scenario_digest: l.digest.clone(), report })
                    .map_err(|_| format!("{} seed {}: the harness panicked", l.path, job.seed));
                if tx.send(result).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for result in rx {
            match result {
                Ok(line) => {
                    let mut text = serde_json::to_string(&line).unwrap_or_default();
                    text.push('\n');
                    // One write per line, flushed at once: a kill loses at most the line being written.
                    file.write_all(text.as_bytes()).and_then(|()| file.flush()).map_err(io(&results_path))?;
                    if !line.report.matched_expectation {
                        failures += 1;
                        bar.println(format!("NOT as expected: {} (replay: {})", line.report.scenario, line.report.replay_command));
                        bar.set_message(format!("{failures} failures"));
                    }
                    mine.push(line);
                }
                Err(e) => {
                    bar.println(format!("harness error: {e}"));
                    harness_errors.push(e);
                }
            }
            bar.inc(1);
        }
        Ok(())
    });
    bar.finish_and_clear();
    write_result?;
    Ok(CampaignOutcome { report: CampaignReport::from_lines(mine), skipped_as_done, ran_now, unreadable_lines: unreadable, harness_errors })
}

fn progress_bar(show: bool, len: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} runs  {per_sec}  {msg}  ETA {eta}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Combines the results of several campaign directories (shards) into one report.
pub fn merge(dirs: &[PathBuf]) -> Result<(CampaignReport, usize), CampaignError> {
    let mut all = Vec::new();
    let mut unreadable = 0;
    for d in dirs {
        let path = if d.is_dir() { d.join(RESULTS_FILE) } else { d.clone() };
        if !path.exists() {
            return Err(io(&path)(std::io::Error::new(std::io::ErrorKind::NotFound, "no results.jsonl here")));
        }
        let (lines, bad) = read_results(&path, false)?;
        all.extend(lines);
        unreadable += bad;
    }
    Ok((CampaignReport::from_lines(all), unreadable))
}

/// Writes `campaign.json`, `junit.xml` and `campaign.html` into `out`; returns their paths.
pub fn write_reports(report: &CampaignReport, out: &Path) -> Result<Vec<PathBuf>, CampaignError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let files = [
        ("campaign.json", serde_json::to_string_pretty(report).unwrap_or_default() + "\n"),
        ("junit.xml", crate::junit::junit_xml(&report.runs)),
        ("campaign.html", crate::html::campaign_page(report)),
    ];
    let mut paths = Vec::new();
    for (name, text) in files {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(io(&p))?;
        paths.push(p);
    }
    Ok(paths)
}

fn digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_and_shards_parse() {
        assert_eq!(parse_seeds("1..1000").ok(), Some(1..=1000));
        assert_eq!(parse_seeds("5..=6").ok(), Some(5..=6));
        assert_eq!(parse_seeds("7").ok(), Some(7..=7));
        assert!(parse_seeds("9..3").is_err());
        assert!(parse_seeds("a..b").is_err());
        assert_eq!(parse_shard("2/4").ok(), Some(Shard { index: 2, count: 4 }));
        assert!(parse_shard("4/4").is_err());
        assert!(parse_shard("1/0").is_err());
    }

    #[test]
    fn shards_split_the_seeds_exactly() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        for seed in 0..100u64 {
            assert_eq!(shards.iter().filter(|s| s.owns(seed)).count(), 1);
        }
    }

    #[test]
    fn a_truncated_last_line_is_ignored_and_cut_off() {
        let dir = std::env::temp_dir().join(format!("sparksim-campaign-trunc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(RESULTS_FILE);
        let line = ResultLine { build: "b".into(), scenario_digest: "d".into(), report: crate::report::tests::example() };
        let full = serde_json::to_string(&line).expect("json");
        std::fs::write(&path, format!("{full}\nnot json\n{}", &full[..40])).expect("write");
        let (lines, bad) = read_results(&path, true).expect("reads");
        assert_eq!((lines.len(), bad), (1, 1));
        let left = std::fs::read_to_string(&path).expect("read");
        assert!(left.ends_with("not json\n"), "the partial line is cut off: {left:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_result_line_is_also_a_run_report() {
        let line = ResultLine { build: "b".into(), scenario_digest: "d".into(), report: crate::report::tests::example() };
        let text = serde_json::to_string(&line).expect("json");
        let r: RunReport = serde_json::from_str(&text).expect("a run report");
        assert_eq!(r, line.report);
    }

    #[test]
    fn a_declared_sometimes_that_never_fired_fails_the_campaign() {
        let mut a = crate::report::tests::example();
        a.expected_sometimes = vec!["transfer-claimed".into(), "crash-during-two-phase-settle".into()];
        let mut b = a.clone();
        b.seed = 2;
        if let Some(c) = b.checker.as_mut() {
            c.sometimes.insert("crash-during-two-phase-settle".into(), 0);
        }
        let lines = |runs: Vec<RunReport>| runs.into_iter().map(|report| ResultLine { report, build: "b".into(), scenario_digest: "d".into() }).collect::<Vec<_>>();
        let r = CampaignReport::from_lines(lines(vec![a.clone(), b.clone()]));
        assert_eq!(r.sometimes_never_fired.get(&a.scenario_path), Some(&vec!["crash-during-two-phase-settle".to_owned()]));
        assert!(!r.passed(), "every run matched, but a declared state was never reached");
        // One seed reaching it is enough.
        if let Some(c) = b.checker.as_mut() {
            c.sometimes.insert("crash-during-two-phase-settle".into(), 1);
        }
        let r = CampaignReport::from_lines(lines(vec![a, b]));
        assert!(r.sometimes_never_fired.is_empty() && r.passed());
    }

    #[test]
    fn the_campaign_report_sorts_and_deduplicates() {
        let mk = |path: &str, seed: u64| {
            let mut r = crate::report::tests::example();
            r.scenario_path = path.into();
            r.seed = seed;
            ResultLine { build: "b".into(), scenario_digest: "d".into(), report: r }
        };
        let c = CampaignReport::from_lines(vec![mk("b.toml", 2), mk("a.toml", 9), mk("b.toml", 1), mk("a.toml", 9)]);
        let order: Vec<(&str, u64)> = c.runs.iter().map(|r| (r.scenario_path.as_str(), r.seed)).collect();
        assert_eq!(order, vec![("a.toml", 9), ("b.toml", 1), ("b.toml", 2)]);
        assert_eq!((c.scenarios, c.runs_total), (2, 3));
    }
}
