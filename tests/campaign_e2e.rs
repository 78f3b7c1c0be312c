//! End-to-end tests of `sparksim campaign`, `merge`, `shrink` and the report formats, run
//! through the real binary on small scenarios written to temporary directories (each run
//! takes well under a second even in a debug build). The HTML test opens the pages in a
//! real headless chromium; where none is installed it says loudly that it was skipped.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::BIN;

/// Three operators, two wallets, one deposit each, two transfers, 60 s blocks: a whole run in
/// a fraction of a second.
const SMALL: &str = r#"
name = "small"
description = "A tiny healthy run for campaign tests."
[topology]
operators = 3
threshold = 2
wallets = 2
[chain]
block_interval_s = 60.0
[workload]
deposits_per_wallet = 1
deposit_sats = [100000]
transfers = 2
transfer_start_s = 400.0
transfer_interval_s = 1.0
exits = 0
[run]
settle_s = 300.0
"#;

/// The I-6 bug, buried in faults and wallets that play no part in it, and expecting a pass:
/// every run fails, and the shrinker has plenty to remove.
const NOISY_I6: &str = r#"
name = "noisy-i6"
description = "The I-6 bug plus irrelevant faults and wallets."
[topology]
operators = 3
threshold = 2
wallets = 4
[chain]
block_interval_s = 60.0
[protocol]
test_faults = ["skip_send_timelock_decrement"]
[workload]
deposits_per_wallet = 1
deposit_sats = [100000]
transfers = 5
transfer_start_s = 400.0
transfer_interval_s = 1.0
exits = 0
[[fault]]
kind = "crash"
node = "wallet:3"
at_s = 100.0
restart_after_s = 50.0
[[fault]]
kind = "partition"
isolate = ["operator:2"]
at_s = 200.0
duration_s = 30.0
[run]
settle_s = 60.0
"#;


fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

fn sparksim(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("spawn sparksim")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("killed by a signal")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn results(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .expect("results.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn hashes(lines: &[Value]) -> Vec<(u64, String)> {
    let mut v: Vec<(u64, String)> = lines.iter().map(|l| (l["seed"].as_u64().expect("seed"), l["trace_hash"].as_str().expect("hash").to_owned())).collect();
    v.sort();
    v
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn campaign_resumes_after_a_kill_and_shards_merge_to_the_same_runs() {
    let dir = common::temp_dir("campaign", "resume");
    let scenario = write(&dir, "small.toml", SMALL);
    let full = dir.join("full");
    let out = sparksim(&["campaign", &scenario, "--seeds", "1..4", "--jobs", "2", "--out", s(&full)]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("4 (4 now, 0 already done)"), "{}", text(&out));
    let first = results(&full);
    assert_eq!(first.len(), 4);
    for name in ["campaign.json", "junit.xml", "campaign.html"] {
        assert!(full.join(name).exists(), "{name} written");
    }

    // Same arguments again: nothing is redone.
    let again = sparksim(&["campaign", &scenario, "--seeds", "1..4", "--jobs", "2", "--out", s(&full)]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    assert!(text(&again).contains("4 (0 now, 4 already done)"), "{}", text(&again));

    // Killed mid-write: the last line is cut in half. The restart drops the partial line and
    // runs exactly that one run again.
    let path = full.join("results.jsonl");
    let content = std::fs::read_to_string(&path).expect("read");
    let cut = content.trim_end().rfind('\n').expect("several lines") + 1 + 30;
    std::fs::write(&path, &content[..cut]).expect("truncate");
    let resumed = sparksim(&["campaign", &scenario, "--seeds", "1..4", "--jobs", "2", "--out", s(&full)]);
    assert_eq!(code(&resumed), 0, "{}", text(&resumed));
    assert!(text(&resumed).contains("4 (1 now, 3 already done)"), "{}", text(&resumed));
    assert_eq!(hashes(&results(&full)), hashes(&first), "the re-run gives the same trace hash");

    // Two shards, then merge: the same runs, sorted.
    let (a, b, merged) = (dir.join("shard0"), dir.join("shard1"), dir.join("merged"));
    for (shard, out_dir) in [("0/2", &a), ("1/2", &b)] {
        let o = sparksim(&["campaign", &scenario, "--seeds", "1..4", "--shard", shard, "--out", s(out_dir)]);
        assert_eq!(code(&o), 0, "{}", text(&o));
        assert_eq!(results(out_dir).len(), 2, "each shard runs half the seeds");
    }
    let m = sparksim(&["merge", s(&a), s(&b), "--out", s(&merged)]);
    assert_eq!(code(&m), 0, "{}", text(&m));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(merged.join("campaign.json")).expect("campaign.json")).expect("json");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(hashes(runs), hashes(&first), "sharded + merged = one campaign");
    let seeds: Vec<u64> = runs.iter().filter_map(|r| r["seed"].as_u64()).collect();
    assert_eq!(seeds, vec![1, 2, 3, 4], "sorted by seed");
    assert_eq!(report["schema_version"], 1);
}

#[test]
fn known_failing_seeds_run_first() {
    let dir = common::temp_dir("campaign", "known");
    let scenario = write(&dir, "small.toml", SMALL);
    let known = write(&dir, "known.toml", &format!("[[seed]]\nscenario = \"{scenario}\"\nseed = 9\nnote = \"test\"\n"));
    let out_dir = dir.join("out");
    let out = sparksim(&["campaign", &scenario, "--seeds", "1..2", "--jobs", "1", "--known-failing", &known, "--out", s(&out_dir)]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let seeds: Vec<u64> = results(&out_dir).iter().filter_map(|l| l["seed"].as_u64()).collect();
    assert_eq!(seeds, vec![9, 1, 2], "the known failing seed runs first, then the range");
    let bad = write(&dir, "bad.toml", "[[seed]]\nscenario = \"x\"\nsed = 1\n");
    let out = sparksim(&["campaign", &scenario, "--seeds", "1..1", "--known-failing", &bad, "--out", s(&out_dir)]);
    assert_eq!(code(&out), 2, "a malformed known-failing file is bad input: {}", text(&out));
    assert!(text(&out).contains("bad.toml"), "{}", text(&out));
}

#[test]
fn a_failing_campaign_exits_1_and_every_format_carries_the_replay_command() {
    let dir = common::temp_dir("campaign", "fail");
    let scenario = write(&dir, "noisy.toml", NOISY_I6);
    let out_dir = dir.join("out");
    let out = sparksim(&["campaign", &scenario, "--seeds", "1..2", "--jobs", "2", "--out", s(&out_dir), "--failure-pages", "1"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let replay = format!("sparksim run {scenario} --seed 1");
    assert!(text(&out).contains(&replay), "stdout names the replay command: {}", text(&out));
    let junit = std::fs::read_to_string(out_dir.join("junit.xml")).expect("junit");
    assert_eq!(junit.matches("<testcase ").count(), 2);
    assert!(junit.contains(&format!("replay: {replay}")), "{junit}");
    let campaign = std::fs::read_to_string(out_dir.join("campaign.json")).expect("campaign.json");
    assert!(campaign.contains(&replay));
    assert!(std::fs::read_to_string(out_dir.join("campaign.html")).expect("html").contains(&replay));
    let pages = out_dir.join("failures");
    let html = std::fs::read_to_string(pages.join("noisy-i6-seed1.html")).expect("failure page");
    assert!(html.contains(&replay));
    let trace: Value = serde_json::from_str(&std::fs::read_to_string(pages.join("noisy-i6-seed1.perfetto.json")).expect("perfetto")).expect("json");
    assert_eq!(trace["otherData"]["replay_command"], replay.as_str());
    let lanes: Vec<&str> = trace["traceEvents"].as_array().expect("events").iter().filter(|e| e["name"] == "thread_name").filter_map(|e| e["args"]["name"].as_str()).collect();
    assert!(lanes.contains(&"operator:0") && lanes.contains(&"wallet:1") && lanes.contains(&"chain"), "{lanes:?}");
}

#[test]
fn run_writes_html_junit_and_perfetto_on_request() {
    let dir = common::temp_dir("campaign", "formats");
    let scenario = write(&dir, "small.toml", SMALL);
    let out = sparksim(&["run", &scenario, "--seed", "3", "--html", "--junit", "--perfetto", "--out", s(&dir)]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let junit = std::fs::read_to_string(dir.join("small-seed3.junit.xml")).expect("junit");
    assert!(junit.contains("<testcase classname=\"small\" name=\"seed 3\""), "{junit}");
    assert!(!junit.contains("<failure"));
    let trace: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("small-seed3.perfetto.json")).expect("perfetto")).expect("json");
    assert!(trace["traceEvents"].as_array().is_some_and(|e| e.len() > 100));
    assert!(std::fs::read_to_string(dir.join("small-seed3.html")).expect("html").contains("\"kind\":\"run\""));
}

#[test]
fn shrink_writes_a_smaller_scenario_that_still_fails_the_same_way() {
    let dir = common::temp_dir("campaign", "shrink");
    let scenario = write(&dir, "noisy.toml", NOISY_I6);
    let run = sparksim(&["run", &scenario, "--seed", "2", "--out", s(&dir)]);
    assert_eq!(code(&run), 1, "the scenario expects a pass and gets I-6: {}", text(&run));
    let minimal = dir.join("minimal.toml");
    let out = sparksim(&["shrink", s(&dir.join("noisy-i6-seed2.json")), "--out", s(&minimal)]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("faults      2 -> 0"), "{printed}");
    assert!(printed.contains("wallets     4 -> 2"), "{printed}");
    assert!(printed.contains(&format!("replay      sparksim run {}", minimal.display())), "{printed}");
    let shrunk = std::fs::read_to_string(&minimal).expect("written");
    assert!(shrunk.contains("explicit = true") && shrunk.contains("[[workload.transfer]]"), "{shrunk}");
    assert!(shrunk.starts_with("# regression: shrunk by `sparksim shrink`"), "{shrunk}");
    // The minimal scenario reproduces the violation on its own (its seed is in the file).
    let replay = sparksim(&["run", s(&minimal), "--json", "--out", s(&dir)]);
    let report: Value = serde_json::from_str(&String::from_utf8_lossy(&replay.stdout)).expect("report");
    assert_eq!(report["violations"][0]["invariant"], "I-6", "{report}");
    assert!(report["events"].as_u64() < Some(400), "{}", report["events"]);
}

/// `chromium --headless --dump-dom`, or `None` when no chromium is installed.
fn rendered_dom(page: &Path) -> Option<String> {
    let browser = ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))?;
    let profile = page.with_extension("profile");
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=10000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("spawn chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn html_reports_render_in_headless_chromium_and_show_the_violation() {
    let dir = common::temp_dir("campaign", "chromium");
    let regression = format!("{}/../scenarios/regressions/skip-timelock-decrement.toml", env!("CARGO_MANIFEST_DIR"));
    let run = sparksim(&["run", &regression, "--html", "--out", s(&dir)]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    let scenario = write(&dir, "noisy.toml", NOISY_I6);
    let camp = dir.join("campaign");
    let c = sparksim(&["campaign", &scenario, "--seeds", "1..1", "--out", s(&camp), "--failure-pages", "0"]);
    assert_eq!(code(&c), 1, "{}", text(&c));

    let pages = [dir.join("skip-timelock-decrement-seed1.html"), camp.join("campaign.html")];
    for page in &pages {
        let Some(dom) = rendered_dom(page) else {
            eprintln!("\n**********\nSKIPPED: no chromium installed, so {} was NOT checked in a browser.\nInstall it (apt-get install -y chromium) to run this test; .ci/run does.\n**********\n", page.display());
            return;
        };
        assert!(dom.contains("data-rendered=\"ok\""), "the page's script did not finish without errors:\n{}", &dom[..dom.len().min(3000)]);
        assert!(dom.contains("<pre id=\"script-errors\"></pre>"), "script errors were collected");
        assert!(dom.contains("id=\"first-violation\""), "the violation box is shown");
        assert!(dom.contains("I-6"), "the violated invariant is named");
        assert!(dom.contains("replay-command"), "the replay command is shown");
    }
    let dom = rendered_dom(&pages[0]).unwrap_or_default();
    assert!(dom.contains("First violation: I-6"), "{}", &dom[..dom.len().min(3000)]);
    assert!(dom.contains("id=\"timeline\""), "the per-node timeline is drawn");
    assert!(dom.contains("id=\"violation-marker\""), "the violation is marked on the timeline");
}

/// Every library scenario says, in its header comment, what it tests and what should happen.
/// (Running them all is `.ci/run`'s release campaign over `scenarios/`: in a debug build the
/// library would take minutes.)
#[test]
fn every_library_scenario_is_documented_and_there_are_at_least_ten() {
    let root = format!("{}/../scenarios", env!("CARGO_MANIFEST_DIR"));
    let top: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("scenarios/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    assert!(top.len() >= 10, "{} top-level scenarios", top.len());
    for p in top {
        let t = std::fs::read_to_string(&p).expect("read");
        assert!(t.starts_with('#') && t.contains("Tests:") && t.contains("Should happen:"), "{} lacks its header comment", p.display());
    }
}
