//! A Chrome trace-event JSON (the format Perfetto's UI and `chrome://tracing` open), one lane
//! (thread) per node: every kept event as an instant, each crash→restart as a span on its
//! node's lane, each partition as a span on the `network` lane, violations as global instants.
//! Timestamps are simulated microseconds.
use crate::report::RunReport;
use crate::timeline::Timeline;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The trace for one run.
pub fn trace_json(report: &RunReport, timeline: &Timeline) -> Value {
    let mut lanes: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &timeline.events {
        let next = lanes.len() as u64 + 1;
        lanes.entry(e.node.as_str()).or_insert(next);
    }
    let mut events: Vec<Value> = vec![json!({
        "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
        "args": { "name": format!("{} seed {}", report.scenario, report.seed) }
    })];
    for (name, tid) in &lanes {
        events.push(json!({ "name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": { "name": name } }));
        events.push(json!({ "name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid, "args": { "sort_index": tid } }));
    }
    let us = |t: f64| (t * 1e6).round();
    let mut down_since: BTreeMap<&str, f64> = BTreeMap::new();
    let mut partition_since: BTreeMap<String, f64> = BTreeMap::new();
    for e in &timeline.events {
        let tid = lanes[e.node.as_str()];
        events.push(json!({
            "name": e.description, "cat": e.kind, "ph": "i", "s": "t", "pid": 1, "tid": tid, "ts": us(e.time_s),
            "args": { "index": e.index, "observations": e.observations, "violations": e.violations }
        }));
        let ignored = e.description.contains("(ignored");
        match e.kind.as_str() {
            "crash" if !ignored => {
                down_since.insert(e.node.as_str(), e.time_s);
            }
            "restart" if !ignored => {
                if let Some(t0) = down_since.remove(e.node.as_str()) {
                    events.push(span("down", "crash", tid, us(t0), us(e.time_s) - us(t0)));
                }
            }
            "partition" => {
                let id = e.description.split(' ').nth(1).unwrap_or("#?").to_owned();
                if e.description.contains(" start:") {
                    partition_since.insert(id, e.time_s);
                } else if let Some(t0) = partition_since.remove(&id) {
                    events.push(span(&format!("partition {id}"), "partition", tid, us(t0), us(e.time_s) - us(t0)));
                }
            }
            _ => {}
        }
        for v in &e.violations {
            events.push(json!({ "name": format!("VIOLATION {v}"), "cat": "violation", "ph": "i", "s": "g", "pid": 1, "tid": tid, "ts": us(e.time_s) }));
        }
    }
    // Nodes still down at the end: the span runs to the last kept event.
    let end = timeline.events.last().map_or(0.0, |e| us(e.time_s));
    for (node, t0) in down_since {
        events.push(span("down (until the end)", "crash", lanes[node], us(t0), end - us(t0)));
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": { "scenario": report.scenario, "seed": report.seed, "trace_hash": report.trace_hash, "replay_command": report.replay_command }
    })
}

fn span(name: &str, cat: &str, tid: u64, ts: f64, dur: f64) -> Value {
    json!({ "name": name, "cat": cat, "ph": "X", "pid": 1, "tid": tid, "ts": ts, "dur": dur.max(1.0) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::TimelineEvent;

    fn ev(index: u64, t: f64, node: &str, description: &str) -> TimelineEvent {
        TimelineEvent {
            index,
            time_s: t,
            node: node.into(),
            kind: description.split(' ').next().unwrap_or("").into(),
            description: description.into(),
            observations: vec![],
            violations: if description.starts_with("deliver") { vec!["I-6: bad".into()] } else { vec![] },
        }
    }

    #[test]
    fn one_lane_per_node_and_crash_spans() {
        let timeline = Timeline {
            events: vec![
                ev(0, 1.0, "operator:1", "crash operator:1"),
                ev(1, 2.0, "network", "partition #0 start: [operator:0]"),
                ev(2, 3.0, "wallet:0", "deliver operator:0 -> wallet:0 Ping"),
                ev(3, 4.0, "network", "partition #0 end: [operator:0]"),
                ev(4, 5.0, "operator:1", "restart operator:1"),
            ],
            events_dropped: 0,
            first_violation_index: Some(2),
        };
        let report = crate::report::tests::example();
        let t = trace_json(&report, &timeline);
        let events = t["traceEvents"].as_array().expect("array");
        let lanes: Vec<&str> = events.iter().filter(|e| e["name"] == "thread_name").filter_map(|e| e["args"]["name"].as_str()).collect();
        assert_eq!(lanes, vec!["network", "operator:1", "wallet:0"]);
        let down = events.iter().find(|e| e["name"] == "down").expect("crash span");
        assert_eq!((down["ts"].as_f64(), down["dur"].as_f64()), (Some(1e6), Some(4e6)));
        assert!(events.iter().any(|e| e["name"] == "partition #0" && e["dur"].as_f64() == Some(2e6)));
        assert!(events.iter().any(|e| e["cat"] == "violation"));
        assert_eq!(t["otherData"]["replay_command"], report.replay_command);
    }
}
