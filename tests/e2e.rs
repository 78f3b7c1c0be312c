//! End-to-end tests: run the real `sparksim` binary on the real scenario library and judge it by
//! its exit code, its `--json` report and its stderr. Reports go to a fresh temporary directory
//! so tests never write into `reports/`.

use serde_json::Value;
use sparksim::scenario::Scenario;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{scenario, BIN};


fn sparksim(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("spawn sparksim")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("sparksim was killed by a signal")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `sparksim run SCENARIO --seed N --json --out DIR`: exit code, and the report (stdout must be
/// exactly one JSON object).
fn run_json(rel: &str, seed: u64, out_dir: &Path) -> (i32, Value) {
    let seed = seed.to_string();
    let out = sparksim(&[
        "run",
        &scenario(rel),
        "--seed",
        &seed,
        "--json",
        "--out",
        out_dir.to_str().expect("utf-8 temp dir"),
    ]);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "stdout of `run --json` is not one JSON object ({e})\nstdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (code(&out), report)
}

fn invariants(report: &Value) -> Vec<String> {
    report["violations"]
        .as_array()
        .expect("violations is an array")
        .iter()
        .map(|v| v["invariant"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn assert_passes(rel: &str, seed: u64) -> Value {
    let (exit, report) = run_json(rel, seed, &common::temp_dir("e2e", "pass"));
    assert_eq!(report["outcome"], "pass", "{rel}: {report:#}");
    assert_eq!(report["violations"], Value::Array(vec![]), "{rel}");
    assert_eq!(report["matched_expectation"], true, "{rel}");
    assert_eq!(exit, 0, "{rel}");
    report
}

// --- the CLI surface (does not need the runner) -----------------------------------------------

#[test]
fn help_mentions_every_subcommand_and_the_exit_codes() {
    let out = sparksim(&["--help"]);
    assert_eq!(code(&out), 0);
    let help = stdout(&out);
    for word in [
        "run",
        "replay",
        "check-determinism",
        "demo",
        "Exit codes",
        "Examples",
    ] {
        assert!(help.contains(word), "--help lacks {word:?}:\n{help}");
    }
}

#[test]
fn malformed_scenarios_exit_2_naming_file_line_and_field() {
    let cases = [
        (
            "bad/unknown-key.toml",
            "unknown-key.toml:9:",
            "topology.threshhold",
        ),
        (
            "bad/threshold-exceeds-operators.toml",
            "threshold-exceeds-operators.toml:9:",
            "topology.threshold",
        ),
        (
            "bad/crash-unknown-node.toml",
            "crash-unknown-node.toml:12:",
            "fault[0].node",
        ),
    ];
    for (rel, location, field) in cases {
        let path = scenario(rel);
        let tmp = common::temp_dir("e2e", "bad");
        let run = ["run", &path, "--out", tmp.to_str().expect("utf-8")];
        for args in [&run[..], &["check-determinism", &path][..]] {
            let out = sparksim(args);
            let err = stderr(&out);
            assert_eq!(code(&out), 2, "{args:?}: {err}");
            assert!(
                err.contains(location),
                "{rel}: stderr lacks {location:?}: {err}"
            );
            assert!(err.contains(field), "{rel}: stderr lacks {field:?}: {err}");
            assert!(!err.contains("panicked"), "{rel}: {err}");
            assert!(stdout(&out).is_empty(), "{rel}: nothing on stdout");
        }
    }
}

#[test]
fn missing_scenario_file_exits_2_with_a_clear_message() {
    let out = sparksim(&["run", "no/such/scenario.toml"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("no/such/scenario.toml"), "{err}");
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn unreadable_report_exits_2() {
    let dir = common::temp_dir("e2e", "badreport");
    let path = dir.join("not-a-report.json");
    std::fs::write(&path, "{\"hello\": 1}").expect("write");
    let out = sparksim(&["replay", path.to_str().expect("utf-8")]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("not a sparksim run report"));
}

/// Every library scenario parses, starts with a comment saying what it tests, and every file
/// in `bad/` is rejected.
#[test]
fn scenario_library_parses_and_bad_files_do_not() {
    for dir in ["", "regressions/"] {
        let files = toml_files(&scenario(dir));
        assert!(!files.is_empty(), "no scenarios in {dir:?}");
        for path in files {
            let text = std::fs::read_to_string(&path).expect("read");
            assert!(
                text.starts_with('#'),
                "{}: start with a comment",
                path.display()
            );
            if let Err(e) = Scenario::load(&path) {
                panic!("{e}");
            }
        }
    }
    let bad = toml_files(&scenario("bad/"));
    assert!(bad.len() >= 2);
    for path in bad {
        assert!(Scenario::load(&path).is_err(), "{} parsed", path.display());
    }
}

fn toml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read scenarios dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

// --- runs (need the runner) -------------------------------------------------------------------

#[test]
fn quickstart_passes() {
    let report = assert_passes("quickstart.toml", 1);
    assert_eq!(report["seed"], 1);
    assert_eq!(report["operators"], 5);
    assert_eq!(report["threshold"], 3);
    assert_eq!(report["wallets"], 4);
    assert_eq!(report["deposits_confirmed"], 8);
    // A scheduled send is skipped when its wallet holds no available leaf at that moment, so
    // fewer than 12 may be sent; every one sent must be claimed.
    let sent = report["transfers_sent"].as_u64().unwrap_or(0);
    assert!(sent >= 10, "only {sent} transfers sent");
    assert_eq!(report["transfers_claimed"].as_u64(), Some(sent));
    assert_eq!(report["exits_confirmed"], 1);
    assert!(report["invariant_checks"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn same_seed_same_trace_hash_across_processes_other_seed_other_hash() {
    let dir = common::temp_dir("e2e", "det");
    let (_, a) = run_json("quickstart.toml", 3, &dir);
    let (_, b) = run_json("quickstart.toml", 3, &dir);
    let (_, c) = run_json("quickstart.toml", 4, &dir);
    let hash = |r: &Value| r["trace_hash"].as_str().expect("trace_hash").to_owned();
    assert!(!hash(&a).is_empty());
    assert_eq!(hash(&a), hash(&b), "same seed, two processes");
    assert_ne!(hash(&a), hash(&c), "another seed");
}

#[test]
fn crash_restart_passes() {
    assert_passes("crash-restart.toml", 1);
}

#[test]
fn partition_coordinator_passes() {
    let report = assert_passes("partition-coordinator.toml", 1);
    let sent = report["transfers_sent"].as_u64().expect("transfers_sent");
    let settled = report["transfers_claimed"].as_u64().unwrap_or(0)
        + report["transfers_returned"].as_u64().unwrap_or(0);
    assert_eq!(settled, sent, "every transfer completed or returned");
}

#[test]
fn skip_timelock_decrement_is_caught_as_i6() {
    let dir = common::temp_dir("e2e", "i6");
    let (exit, report) = run_json("regressions/skip-timelock-decrement.toml", 5, &dir);
    assert_eq!(report["outcome"], "fail", "{report:#}");
    assert!(invariants(&report).iter().any(|i| i == "I-6"), "{report:#}");
    assert_eq!(report["matched_expectation"], true);
    assert_eq!(exit, 0, "the expected violation was found");
    assert_eq!(report["seed"], 5, "the seed is recorded");
    let replay = report["replay_command"].as_str().expect("replay_command");
    assert!(
        replay.contains('5'),
        "replay command names the seed: {replay}"
    );
    let written = dir.join("skip-timelock-decrement-seed5.json");
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(&written).expect("report written"))
            .expect("report is JSON");
    assert_eq!(on_disk, report, "the file holds the same report as stdout");
}

#[test]
fn check_determinism_on_quickstart_exits_0() {
    let out = sparksim(&["check-determinism", &scenario("quickstart.toml")]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("identical"), "{}", stdout(&out));
}

#[test]
fn replay_of_a_written_report_exits_0() {
    let dir = common::temp_dir("e2e", "replay");
    let (exit, _) = run_json("quickstart.toml", 2, &dir);
    assert_eq!(exit, 0);
    let report = dir.join("quickstart-seed2.json");
    let out = sparksim(&["replay", report.to_str().expect("utf-8")]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("matches"), "{}", stdout(&out));
}

#[test]
fn replay_of_a_tampered_report_exits_1_and_prints_both_hashes() {
    let dir = common::temp_dir("e2e", "tamper");
    let (_, mut report) = run_json("quickstart.toml", 1, &dir);
    report["trace_hash"] = Value::from("00".repeat(32));
    let path = dir.join("tampered.json");
    std::fs::write(&path, report.to_string()).expect("write");
    let out = sparksim(&["replay", path.to_str().expect("utf-8")]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(&"00".repeat(32)));
}

#[test]
fn demo_summarises_and_writes_a_replayable_report() {
    let dir = common::temp_dir("e2e", "demo");
    let out = sparksim(&["demo", "--out", dir.to_str().expect("utf-8")]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    for word in [
        "operators",
        "transfers",
        "violations",
        "p99",
        "trace hash",
        "replay",
    ] {
        assert!(text.contains(word), "demo output lacks {word:?}:\n{text}");
    }
    let report = dir.join("quickstart-seed1.json");
    let replay = sparksim(&["replay", report.to_str().expect("utf-8")]);
    assert_eq!(code(&replay), 0, "{}{}", stdout(&replay), stderr(&replay));
}

// --- checker: the liveness phase and the checker's report section ---------------------------

#[test]
fn liveness_phase_ends_quiet_once_a_partition_heals() {
    let report = assert_passes("partition-coordinator.toml", 1);
    let c = &report["checker"];
    assert_eq!(c["liveness"]["quiet"], true, "{c:#}");
    let (end, deadline) = (c["liveness"]["end_s"].as_f64().unwrap(), c["liveness"]["deadline_s"].as_f64().unwrap());
    assert!(end < deadline, "ended at quiescence ({end}), before the deadline ({deadline})");
    let rows = c["invariants"].as_array().expect("invariant table");
    assert_eq!(rows.len(), 22, "I-1..I-14 and L-1..L-8");
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("{id} in the table"));
    assert!(row("I-5")["checks"].as_u64().unwrap() > 0);
    // L-6 applies since leaf swaps (checker/swaps.rs) and Lightning receive (checker/lightning.rs); judged at quiescence.
    assert_eq!(row("L-6")["status"], "at-quiescence");
    assert!(c["sometimes"]["transfer-returned"].as_u64().is_some(), "registered sometimes-properties are listed");
    assert_eq!(c["sometimes"]["deposit-confirmed"], report["deposits_confirmed"]);
    assert_eq!(c["latency"]["claim"]["samples"], report["transfers_claimed"]);
    assert!(c["latency"]["claim"]["histogram"].as_array().is_some_and(|h| !h.is_empty()));
}

#[test]
fn operator_down_forever_is_reported_by_the_liveness_phase() {
    let (exit, report) = run_json("liveness-operator-down.toml", 1, &common::temp_dir("e2e", "live"));
    let found = invariants(&report);
    assert!(found.iter().all(|i| i.starts_with("L-")), "safety holds: {found:?}");
    assert!(found.iter().any(|i| i == "L-2"), "{report:#}");
    assert_eq!(report["matched_expectation"], true);
    assert_eq!(exit, 0);
    let live = &report["checker"]["liveness"];
    assert_eq!(live["quiet"], false);
    assert!(live["end_s"].as_f64().unwrap() >= live["deadline_s"].as_f64().unwrap(), "{live:#}");
}

#[test]
fn stuck_rollback_gossip_stays_fixed() {
    // Was I-12 (a SettleReceiverRollback for a superseded settle attempt refused forever); with
    // explicit settle attempts the stale rollback is acknowledged and the run passes.
    let (exit, report) = run_json("regressions/stuck-rollback-gossip.toml", 2, &common::temp_dir("e2e", "i12"));
    let v = report["violations"].as_array().expect("violations");
    assert!(v.iter().all(|v| v["invariant"] != "I-12"), "{report:#}");
    assert_eq!(report["matched_expectation"], true);
    assert_eq!(exit, 0);
}

// --- L1 faults (scenarios/l1/: one scenario per fault kind) -----------------------------------

#[test]
fn l1_fault_scenarios_pass_with_their_outcomes() {
    // (file, deposits confirmed, transfers claimed, exits confirmed)
    let expected: [(&str, u64, u64, u64); 6] = [
        ("l1/block-delay.toml", 2, 4, 0),
        ("l1/fee-spike-cpfp.toml", 2, 2, 1),
        ("l1/fee-spike.toml", 2, 2, 1),
        ("l1/non-final.toml", 2, 0, 1),
        ("l1/reorg-deposit.toml", 2, 4, 0),
        ("l1/reorg-exit.toml", 2, 0, 1),
    ];
    let files: Vec<String> = toml_files(&scenario("l1/"))
        .iter()
        .map(|p| format!("l1/{}", p.file_name().and_then(|n| n.to_str()).unwrap_or("?")))
        .collect();
    assert_eq!(files, expected.map(|e| e.0.to_owned()).to_vec(), "every l1 scenario is checked here");
    for (rel, deposits, claimed, exits) in expected {
        let text = std::fs::read_to_string(scenario(rel)).expect("read");
        assert!(text.starts_with('#'), "{rel}: start with a comment");
        let report = assert_passes(rel, 1);
        assert_eq!(report["deposits_confirmed"], deposits, "{rel}");
        assert_eq!(report["transfers_claimed"], claimed, "{rel}");
        assert_eq!(report["exits_confirmed"], exits, "{rel}");
    }
}

#[test]
fn check_determinism_on_an_l1_reorg_exits_0() {
    let out = sparksim(&["check-determinism", &scenario("l1/reorg-deposit.toml"), "--seed", "3"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
}
