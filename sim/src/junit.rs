//! JUnit XML, so CI systems (GitHub Actions reporters, GitLab, Jenkins) show every
//! (scenario, seed) as a test case. A run whose outcome is not what its scenario expects is a
//! `<failure>` whose message and body carry the command that replays it.
use crate::report::RunReport;
use std::fmt::Write as _;

/// One `<testsuite>` per scenario, one `<testcase>` per seed, in the order given.
pub fn junit_xml(runs: &[RunReport]) -> String {
    let mut suites: Vec<(&str, Vec<&RunReport>)> = Vec::new();
    for r in runs {
        match suites.iter_mut().find(|(name, _)| *name == r.scenario) {
            Some((_, v)) => v.push(r),
            None => suites.push((&r.scenario, vec![r])),
        }
    }
    let failures = runs.iter().filter(|r| !r.matched_expectation).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<testsuites name=\"sparksim\" tests=\"{}\" failures=\"{failures}\">", runs.len());
    for (name, cases) in suites {
        let f = cases.iter().filter(|r| !r.matched_expectation).count();
        let time: f64 = cases.iter().map(|r| r.wall_time_s).sum();
        let _ = writeln!(out, "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" time=\"{time:.3}\">", esc(name), cases.len());
        for r in cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"seed {}\" file=\"{}\" time=\"{:.3}\">",
                esc(&r.scenario),
                r.seed,
                esc(&r.scenario_path),
                r.wall_time_s
            );
            if r.matched_expectation {
                out.push_str("</testcase>\n");
                continue;
            }
            let first = r.violations.first().map_or_else(|| format!("expected {}, got {:?}", r.expected, r.outcome), |v| format!("{}: {}", v.invariant, v.message));
            let _ = writeln!(out, "\n      <failure message=\"{} (replay: {})\" type=\"{}\">", esc(&first), esc(&r.replay_command), esc(&r.expected));
            let _ = writeln!(out, "replay: {}", esc(&r.replay_command));
            let _ = writeln!(out, "expected {}, outcome {:?}, trace hash {}", esc(&r.expected), r.outcome, r.trace_hash);
            for v in &r.violations {
                let _ = writeln!(out, "{} at t={:.3}s (event {}): {}", esc(&v.invariant), v.sim_time_s, v.event_index, esc(&v.message));
            }
            out.push_str("      </failure>\n");
            let _ = writeln!(out, "      <system-out>replay: {}</system-out>", esc(&r.replay_command));
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// XML text/attribute escape; control characters XML 1.0 forbids are dropped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Outcome, Violation};

    fn report(scenario: &str, seed: u64, matched: bool) -> RunReport {
        let mut r: RunReport = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "scenario": scenario, "scenario_path": format!("scenarios/{scenario}.toml"), "seed": seed,
            "outcome": "pass", "expected": "pass", "matched_expectation": matched, "violations": [], "trace_hash": "00",
            "events": 1, "operators": 5, "threshold": 3, "wallets": 4, "deposits_confirmed": 0, "transfers_sent": 0,
            "transfers_claimed": 0, "transfers_returned": 0, "exits_confirmed": 0, "invariant_checks": 0,
            "transfer_latency": { "samples": 0, "p50_s": null, "p99_s": null, "max_s": null, "budget_p99_s": null },
            "messages": { "sent": 0, "delivered": 0, "dropped": 0 }, "blocks": 0, "txs_verified_inputs": 0,
            "sim_time_s": 1.0, "wall_time_s": 0.25, "replay_command": format!("sparksim run scenarios/{scenario}.toml --seed {seed}")
        }))
        .expect("report");
        if !matched {
            r.outcome = Outcome::Fail;
            r.violations.push(Violation { invariant: "I-1".into(), sim_time_s: 2.0, event_index: 9, message: "value <created> & lost".into() });
        }
        r
    }

    #[test]
    fn one_case_per_seed_and_failures_carry_the_replay_command() {
        let xml = junit_xml(&[report("a", 1, true), report("a", 2, false), report("b", 1, true)]);
        assert!(xml.contains("<testsuites name=\"sparksim\" tests=\"3\" failures=\"1\">"), "{xml}");
        assert_eq!(xml.matches("<testsuite ").count(), 2);
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert!(xml.contains("replay: sparksim run scenarios/a.toml --seed 2"), "{xml}");
        assert!(xml.contains("value &lt;created&gt; &amp; lost"), "{xml}");
        assert_eq!(xml.matches("<failure").count(), 1);
    }
}
