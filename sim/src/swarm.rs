//! Swarm testing (Groce et al., as in FoundationDB's buggify and Antithesis): with `swarm` on,
//! each seed draws which fault kinds are on and how hard, so a campaign over many seeds covers
//! combinations of faults no one wrote by hand, and a seed with few kinds on exercises paths
//! that a everything-at-once configuration would mask.
//!
//! The kinds are a registry ([`KINDS`]): each contributes a name and a draw function that adds
//! its faults to the scenario. Each kind draws from its own stream, `swarm/<name>` (first
//! whether it is on, then its intensities and times), so adding a kind, or leaving one out with
//! `kinds = [...]`, never shifts another kind's draws. A new fault kind (the L1 ones, say)
//! plugs in with one line in [`KINDS`] and one draw function.
//!
//! The drawn mix is a [`SwarmMix`]: it goes into the run report, so a failing seed says which
//! faults it ran with; the same seed always draws the same mix and therefore the same trace.

use crate::net::Latency;
use crate::rng;
use crate::scenario::{FaultSpec, NodePattern, Scenario, SwarmSpec};
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use reference_node::types::{Micros, NodeId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// What one kind drew, for the report: parameter name → value.
pub type Params = BTreeMap<String, serde_json::Value>;

/// The state a kind's draw function works on.
pub struct Draw<'a> {
    /// This kind's own stream (`swarm/<name>`), already past the on/off draw.
    pub rng: &'a mut ChaCha20Rng,
    /// The scenario being built: add faults to `faults`, or change `network`.
    pub scenario: &'a mut Scenario,
    pub spec: &'a SwarmSpec,
    /// Where faults go: from the start of the run to shortly after the last transfer.
    pub window: (Micros, Micros),
}

impl Draw<'_> {
    /// Uniform in `[0, 1)`; one draw.
    pub fn unit(&mut self) -> f64 {
        rng::unit_from(self.rng.next_u64())
    }
    /// Uniform in `[lo, hi]`; one draw.
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + self.unit() * (hi - lo)
    }
    /// Uniform integer in `[lo, hi]`; one draw.
    pub fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + rng::scale(self.rng.next_u64(), hi.saturating_sub(lo))
    }
    /// A time in the fault window; one draw.
    pub fn time(&mut self) -> Micros {
        rng::uniform_micros(self.rng, self.window.0, self.window.1)
    }
    /// A duration between `lo` and `hi` seconds; one draw.
    pub fn secs(&mut self, lo: f64, hi: f64) -> Micros {
        Micros((self.between(lo, hi) * 1e6).round() as u64)
    }
    /// Any operator or wallet of the topology; one draw.
    pub fn node(&mut self) -> NodeId {
        let ids = self.scenario.topology.node_ids();
        ids[rng::scale(self.rng.next_u64(), ids.len() as u64 - 1) as usize]
    }
}

/// One kind in the registry.
pub struct SwarmKind {
    /// The name used in `[swarm] kinds` and in the report.
    pub name: &'static str,
    /// Adds this kind's faults for one seed; returns what it drew.
    pub draw: fn(&mut Draw<'_>) -> Params,
}

/// Every kind swarm mode can draw. Append only (a kind's stream is named after it, so order
/// does not matter for determinism, but the report lists kinds in this order).
pub const KINDS: &[SwarmKind] = &[
    SwarmKind { name: "loss", draw: draw_loss },
    SwarmKind { name: "latency_tail", draw: draw_latency_tail },
    SwarmKind { name: "duplicate", draw: draw_duplicate },
    SwarmKind { name: "reorder", draw: draw_reorder },
    SwarmKind { name: "partition", draw: draw_partition },
    SwarmKind { name: "asymmetric_partition", draw: draw_asymmetric_partition },
    SwarmKind { name: "flapping_partition", draw: draw_flapping_partition },
    SwarmKind { name: "slow_node", draw: draw_slow_node },
    SwarmKind { name: "crash", draw: draw_crash },
    SwarmKind { name: "crash_mid_handler", draw: draw_crash_mid_handler },
    SwarmKind { name: "clock", draw: draw_clock },
    SwarmKind { name: "swizzle_clog", draw: draw_swizzle_clog },
    SwarmKind { name: "reorg", draw: |d| draw_l1(d, crate::l1faults::draw_reorg) },
    SwarmKind { name: "block_delay", draw: |d| draw_l1(d, crate::l1faults::draw_block_delay) },
    SwarmKind { name: "fee_spike", draw: |d| draw_l1(d, crate::l1faults::draw_fee_spike) },
];

/// An L1 fault (`crate::l1faults`), placed before the end of the fault window.
fn draw_l1(d: &mut Draw<'_>, draw: fn(&mut ChaCha20Rng, Micros) -> FaultSpec) -> Params {
    let fault = draw(d.rng, d.window.1);
    let described = format!("{fault:?}");
    d.scenario.faults.push(fault);
    params(json!({ "fault": described }))
}

/// The names of every registered kind.
pub fn kind_names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name).collect()
}

/// One kind's outcome for a seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrawnKind {
    pub kind: String,
    pub on: bool,
    /// What was drawn (empty when off).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: Params,
}

/// The fault mix a seed drew: every registered kind, on or off.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SwarmMix {
    pub kinds: Vec<DrawnKind>,
}

impl SwarmMix {
    /// The names of the kinds that are on.
    pub fn on(&self) -> Vec<&str> {
        self.kinds.iter().filter(|k| k.on).map(|k| k.kind.as_str()).collect()
    }
}

/// The stream a kind draws from.
pub fn stream_name(kind: &str) -> String {
    format!("swarm/{kind}")
}

/// The fault window of a scenario: from 0 to 60 s after the expected end of the transfers.
fn window(s: &Scenario) -> (Micros, Micros) {
    let w = &s.workload;
    let transfers = Micros(w.transfer_interval_mean.0.saturating_mul(u64::from(w.transfers)));
    let end = w.exit_at.unwrap_or(w.transfer_start + transfers + Micros::from_secs(60));
    (Micros::ZERO, end.max(Micros::from_secs(1)))
}

/// With `scenario.swarm` set, draws this seed's mix and returns the scenario with the drawn
/// faults added (and `swarm` cleared), plus the mix; otherwise the scenario unchanged.
pub fn expand(scenario: &Scenario, seed: u64) -> (Scenario, Option<SwarmMix>) {
    let Some(spec) = scenario.swarm.clone() else {
        return (scenario.clone(), None);
    };
    let mut s = scenario.clone();
    s.swarm = None;
    let window = window(&s);
    let mut mix = SwarmMix::default();
    for kind in KINDS {
        let allowed = spec.kinds.as_ref().is_none_or(|k| k.contains(kind.name));
        let mut rng = rng::stream(seed, &stream_name(kind.name));
        let on = allowed && rng::chance(&mut rng, spec.p_on);
        let params = if on {
            (kind.draw)(&mut Draw { rng: &mut rng, scenario: &mut s, spec: &spec, window })
        } else {
            Params::new()
        };
        mix.kinds.push(DrawnKind { kind: kind.name.to_owned(), on, params });
    }
    (s, Some(mix))
}

fn params(v: serde_json::Value) -> Params {
    match v {
        serde_json::Value::Object(m) => m.into_iter().collect(),
        other => Params::from([("value".to_owned(), other)]),
    }
}

fn ms(t: Micros) -> f64 {
    t.0 as f64 / 1e3
}

fn secs(t: Micros) -> f64 {
    t.as_secs_f64()
}

fn draw_loss(d: &mut Draw<'_>) -> Params {
    let p = d.unit() * d.spec.max_loss;
    d.scenario.network.loss = d.scenario.network.loss.max(p);
    params(json!({ "loss": p }))
}

fn draw_latency_tail(d: &mut Draw<'_>) -> Params {
    let alpha = d.between(1.05, 2.5);
    let max = d.secs(1.0, 30.0);
    let min = match d.scenario.network.latency {
        Latency::Fixed(t) | Latency::Uniform { min: t, .. } | Latency::Pareto { min: t, .. } => {
            t.max(Micros::from_millis(1))
        }
    };
    d.scenario.network.latency = Latency::Pareto { min, alpha, max };
    params(json!({ "min_ms": ms(min), "alpha": alpha, "max_ms": ms(max) }))
}

fn draw_duplicate(d: &mut Draw<'_>) -> Params {
    let p = d.between(0.01, 0.2);
    d.scenario.network.duplicate = d.scenario.network.duplicate.max(p);
    params(json!({ "duplicate": p }))
}

fn draw_reorder(d: &mut Draw<'_>) -> Params {
    let p = d.between(0.01, 0.3);
    let delay = d.secs(0.01, 1.0);
    d.scenario.network.reorder = d.scenario.network.reorder.max(p);
    d.scenario.network.reorder_delay = delay;
    params(json!({ "reorder": p, "reorder_ms": ms(delay) }))
}

fn draw_partition(d: &mut Draw<'_>) -> Params {
    let (node, at, duration) = (d.node(), d.time(), d.secs(1.0, 60.0));
    d.scenario.faults.push(FaultSpec::Partition { groups: vec![vec![NodePattern::Node(node)]], at, duration });
    params(json!({ "isolate": node.to_string(), "at_s": secs(at), "duration_s": secs(duration) }))
}

fn draw_asymmetric_partition(d: &mut Draw<'_>) -> Params {
    let (node, at, duration) = (d.node(), d.time(), d.secs(1.0, 60.0));
    d.scenario.faults.push(FaultSpec::NetPartition {
        groups: vec![vec![NodePattern::Node(node)]],
        direction: crate::net::Direction::OneWay,
        at,
        duration,
        flap: None,
    });
    params(json!({ "from": node.to_string(), "at_s": secs(at), "duration_s": secs(duration) }))
}

fn draw_flapping_partition(d: &mut Draw<'_>) -> Params {
    let (node, at, duration) = (d.node(), d.time(), d.secs(10.0, 120.0));
    let (on, off) = (d.secs(0.5, 10.0), d.secs(0.5, 10.0));
    d.scenario.faults.push(FaultSpec::NetPartition {
        groups: vec![vec![NodePattern::Node(node)]],
        direction: crate::net::Direction::Both,
        at,
        duration,
        flap: Some((on, off)),
    });
    params(json!({
        "isolate": node.to_string(), "at_s": secs(at), "duration_s": secs(duration),
        "flap_on_s": secs(on), "flap_off_s": secs(off),
    }))
}

fn draw_slow_node(d: &mut Draw<'_>) -> Params {
    let (node, at, duration) = (d.node(), d.time(), d.secs(5.0, 120.0));
    let factor = d.between(2.0, d.spec.max_slow_factor.max(2.0));
    d.scenario.faults.push(FaultSpec::SlowNode { node: NodePattern::Node(node), factor, at, duration: Some(duration) });
    params(json!({ "node": node.to_string(), "factor": factor, "at_s": secs(at), "duration_s": secs(duration) }))
}

fn draw_crash(d: &mut Draw<'_>) -> Params {
    let n = d.int(1, u64::from(d.spec.max_crashes.max(1)));
    let mut crashes = Vec::new();
    for _ in 0..n {
        let (node, at, restart_after) = (d.node(), d.time(), d.secs(1.0, 60.0));
        d.scenario.faults.push(FaultSpec::Crash { node, at, restart_after: Some(restart_after) });
        crashes.push(json!({ "node": node.to_string(), "at_s": secs(at), "restart_after_s": secs(restart_after) }));
    }
    params(json!({ "crashes": crashes }))
}

fn draw_crash_mid_handler(d: &mut Draw<'_>) -> Params {
    let n = d.int(1, u64::from(d.spec.max_crashes.max(1)));
    let mut crashes = Vec::new();
    for _ in 0..n {
        let (node, at, restart_after) = (d.node(), d.time(), d.secs(1.0, 60.0));
        let lose_unsynced = d.unit() < 0.5;
        d.scenario.faults.push(FaultSpec::CrashMidHandler {
            node,
            at,
            after_outputs: None,
            lose_unsynced,
            restart_after: Some(restart_after),
        });
        crashes.push(json!({
            "node": node.to_string(), "at_s": secs(at), "restart_after_s": secs(restart_after),
            "lose_unsynced": lose_unsynced,
        }));
    }
    params(json!({ "crashes": crashes }))
}

fn draw_clock(d: &mut Draw<'_>) -> Params {
    let nodes = d.scenario.topology.node_ids().len() as u64;
    let n = d.int(1, (nodes / 2).max(1));
    let mut clocks = Vec::new();
    for _ in 0..n {
        let node = d.node();
        let skew_ms = d.between(-d.spec.max_skew_ms, d.spec.max_skew_ms);
        let max_drift = d.spec.max_drift_ppm as f64;
        let drift_ppm = d.between(-max_drift, max_drift).round() as i64;
        let skew_us = (skew_ms * 1e3).round() as i64;
        // Half the time the skew is a step in the middle of the run (Jepsen's clock bump).
        let step = d.unit() < 0.5;
        let at = d.time();
        let at = if step { at } else { Micros::ZERO };
        d.scenario.faults.push(FaultSpec::Clock { node: NodePattern::Node(node), skew_us, drift_ppm, at });
        clocks.push(json!({ "node": node.to_string(), "skew_ms": skew_ms, "drift_ppm": drift_ppm, "step_at_s": secs(at) }));
    }
    params(json!({ "clocks": clocks }))
}

/// FoundationDB's swizzle-clogging: pick a few nodes, cut them off one by one, then reconnect
/// them in a random order (so the cluster passes through many different majorities).
fn draw_swizzle_clog(d: &mut Draw<'_>) -> Params {
    let all = d.scenario.topology.node_ids();
    let n = d.int(2, (all.len() as u64).clamp(2, 4)) as usize;
    let mut picked: Vec<NodeId> = Vec::new();
    while picked.len() < n.min(all.len()) {
        let node = d.node();
        if !picked.contains(&node) {
            picked.push(node);
        }
    }
    let (start, step) = (d.time(), d.secs(0.5, 5.0));
    let clogged_at: Vec<Micros> = (0..picked.len() as u64).map(|i| Micros(start.0 + i * step.0)).collect();
    let last = *clogged_at.last().unwrap_or(&start);
    // Unclog in a shuffled order, one step apart, after the last node was clogged.
    let mut order: Vec<usize> = (0..picked.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, d.int(0, i as u64) as usize);
    }
    let mut out = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        let until = Micros(last.0 + (k as u64 + 1) * step.0);
        let at = clogged_at[i];
        d.scenario.faults.push(FaultSpec::Partition {
            groups: vec![vec![NodePattern::Node(picked[i])]],
            at,
            duration: Micros(until.0 - at.0),
        });
        out.push(json!({ "node": picked[i].to_string(), "from_s": secs(at), "until_s": secs(until) }));
    }
    params(json!({ "clogs": out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swarm_scenario(extra: &str) -> Scenario {
        let text = format!("name = \"s\"\ndescription = \"d\"\n{extra}\n[workload]\ntransfers = 5\n");
        Scenario::parse("s.toml", &text).expect("parses")
    }

    #[test]
    fn same_seed_same_mix_other_seeds_other_mixes() {
        let s = swarm_scenario("swarm = true");
        let (a, mix_a) = expand(&s, 7);
        let (b, mix_b) = expand(&s, 7);
        assert_eq!(mix_a, mix_b);
        assert_eq!(a, b);
        assert!(a.swarm.is_none());
        let mixes: std::collections::BTreeSet<Vec<String>> = (0..20)
            .map(|seed| expand(&s, seed).1.unwrap().on().iter().map(|k| k.to_string()).collect())
            .collect();
        assert!(mixes.len() > 10, "20 seeds drew only {} distinct mixes", mixes.len());
    }

    #[test]
    fn every_kind_is_drawn_on_some_seed_and_adds_something() {
        let s = swarm_scenario("swarm = true");
        for kind in KINDS {
            let seed = (0..64)
                .find(|seed| expand(&s, *seed).1.unwrap().on().contains(&kind.name))
                .unwrap_or_else(|| panic!("{} never on in 64 seeds", kind.name));
            let (drawn, mix) = expand(&s, seed);
            let mix = mix.expect("swarm on");
            let k = mix.kinds.iter().find(|k| k.kind == kind.name).unwrap();
            assert!(!k.params.is_empty(), "{} drew nothing", kind.name);
            assert!(drawn != s, "{} changed nothing", kind.name);
        }
    }

    #[test]
    fn swizzle_clogs_one_by_one_and_unclogs_in_another_order() {
        let s = swarm_scenario("[swarm]\nkinds = [\"swizzle_clog\"]\np_on = 1.0");
        let mut reordered = false;
        for seed in 0..10 {
            let (drawn, _) = expand(&s, seed);
            let spans: Vec<(Micros, Micros)> = drawn
                .faults
                .iter()
                .map(|f| match f {
                    FaultSpec::Partition { at, duration, .. } => (*at, *at + *duration),
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            assert!(spans.len() >= 2);
            let mut starts: Vec<Micros> = spans.iter().map(|s| s.0).collect();
            starts.sort();
            // Every node is clogged before the first one is released.
            let first_end = spans.iter().map(|s| s.1).min().unwrap();
            assert!(starts.iter().all(|t| *t < first_end));
            // Listed in unclog order; the clog order differs on some seed.
            reordered |= spans.windows(2).any(|w| w[0].0 > w[1].0);
        }
        assert!(reordered);
    }

    #[test]
    fn kinds_allowlist_and_off_switch() {
        let s = swarm_scenario("[swarm]\nkinds = [\"clock\"]\np_on = 1.0");
        let (drawn, mix) = expand(&s, 3);
        assert_eq!(mix.expect("swarm on").on(), vec!["clock"]);
        assert!(drawn.faults.iter().all(|f| matches!(f, FaultSpec::Clock { .. })));
        assert!(!drawn.faults.is_empty());
        // A kind's draws do not depend on which other kinds are allowed.
        let all = swarm_scenario("[swarm]\np_on = 1.0");
        let (drawn_all, _) = expand(&all, 3);
        let clocks = |s: &Scenario| -> Vec<FaultSpec> {
            s.faults.iter().filter(|f| matches!(f, FaultSpec::Clock { .. })).cloned().collect()
        };
        assert_eq!(clocks(&drawn), clocks(&drawn_all));
        let off = swarm_scenario("swarm = false");
        assert_eq!(expand(&off, 3).1, None);
    }

    #[test]
    fn swarm_keys_are_validated() {
        let err = Scenario::parse("s.toml", "name = \"s\"\ndescription = \"d\"\n[swarm]\nkinds = [\"meteor\"]\n")
            .unwrap_err();
        assert_eq!(err.field, "swarm.kinds[0]");
        assert!(err.message.contains("unknown swarm kind"), "{err}");
        let err = Scenario::parse("s.toml", "name = \"s\"\ndescription = \"d\"\n[swarm]\nmax_loss = 2\n").unwrap_err();
        assert_eq!(err.field, "swarm.max_loss");
        let err = Scenario::parse("s.toml", "name = \"s\"\ndescription = \"d\"\nswarm = 3\n").unwrap_err();
        assert_eq!((err.field.as_str(), err.line), ("swarm", 3));
    }
}
