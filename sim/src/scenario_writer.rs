//! Writes a [`Scenario`] back as scenario TOML: the inverse of `Scenario::parse`.
//!
//! `sparksim shrink` uses it to turn a recorded run (explicit workload, realised faults) into a
//! file to commit. Every key is written, defaults included, so the file says everything the run
//! used. The round-trip tests below parse every file under `scenarios/`, write it, parse it
//! again and demand an equal `Scenario` *and* that every key of the original file appears in
//! the written one: a key added to the parser but forgotten here fails them.
use crate::l1faults::L1Fault;
use crate::net::{Direction, Latency};
use crate::scenario::{
    Budgets, Expectation, FaultSpec, Hazard, LatencyOp, LinkOverride, NetworkSpec, NodePattern, Scenario, Stat, SwarmSpec, TheftSpec,
    WorkloadSpec,
};
use reference_node::chain::ReorgTxs;
use reference_node::types::{Micros, NodeId};
use std::fmt::Write as _;

/// The scenario as TOML text, preceded by `header` as `#` comment lines.
pub fn to_toml(s: &Scenario, header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "#{}{line}", if line.is_empty() { "" } else { " " });
    }
    if !header.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "name = {}", string(&s.name));
    let _ = writeln!(out, "description = {}", string(&s.description));
    if let Some(seed) = s.seed {
        let _ = writeln!(out, "seed = {seed}");
    }

    let t = &s.topology;
    let _ = write!(
        out,
        "\n[topology]\noperators = {}\nthreshold = {}\nwallets = {}\ncoordinator = {}\n",
        t.operators, t.threshold, t.wallets, t.coordinator.0
    );

    network(&mut out, &s.network);

    let c = &s.chain;
    let _ = write!(
        out,
        "\n[chain]\nblock_interval_s = {}\ndeposit_confirmations = {}\nmin_feerate_sat_vb = {}\n",
        secs(c.block_interval),
        c.deposit_confirmations,
        c.min_feerate_sat_vb
    );

    let p = &s.protocol;
    let test_faults: Vec<String> = p.test_faults.iter().map(|f| string(f.as_str())).collect();
    let hazards: Vec<String> = p.hazards.iter().map(|h| string(hazard_name(*h))).collect();
    let _ = write!(
        out,
        "\n[protocol]\ngossip_retry_s = {}\nrequest_timeout_s = {}\ntransfer_expiry_s = {}\ndkg_pool_min = {}\ndkg_batch = {}\nwallet_poll_s = {}\ntest_faults = [{}]\nhazards = [{}]\n",
        secs(p.gossip_retry),
        secs(p.request_timeout),
        secs(p.transfer_expiry),
        p.dkg_pool_min,
        p.dkg_batch,
        secs(p.wallet_poll),
        test_faults.join(", "),
        hazards.join(", ")
    );
    // Two-phase commit mode: written only when not the default, so gossip scenarios keep their text.
    if p.consensus != reference_node::consensus::Consensus::Gossip {
        let name = crate::scenario::CONSENSUS_MODES.iter().find(|(_, c)| *c == p.consensus).map_or("?", |(n, _)| n);
        let _ = writeln!(out, "consensus = {}", string(name));
        let _ = writeln!(out, "flow_stale_s = {}", secs(p.flow_stale));
    }

    workload(&mut out, &s.workload);
    // `[[workload.lightning]]` (scenario/lightning.rs).
    for l in &s.workload.lightning {
        let direction = match l.direction {
            crate::scenario::LightningDirection::Receive => "receive",
            crate::scenario::LightningDirection::Send => "send",
        };
        let _ = write!(out, "\n[[workload.lightning]]\nwallet = {}\nat_s = {}\ndirection = {}\nsats = {}\n", node(NodeId::Wallet(l.wallet)), secs(l.at), string(direction), l.sats);
    }

    for f in &s.faults {
        out.push_str("\n[[fault]]\n");
        fault(&mut out, f);
    }

    for b in &s.byzantine {
        let behaviours: Vec<String> = b.behaviours.iter().map(|x| string(x.as_str())).collect();
        let _ = write!(
            out,
            "\n[[byzantine]]\noperator = {}\nbehaviours = [{}]\n",
            node(NodeId::Operator(b.operator)),
            behaviours.join(", ")
        );
    }
    for TheftSpec { wallet, at } in &s.thefts {
        let _ = write!(out, "\n[[theft]]\nwallet = {}\nat_s = {}\n", node(NodeId::Wallet(*wallet)), secs(*at));
    }
    for crate::scenario::SplitSpec { wallet, at, values } in &s.splits {
        let values: Vec<String> = values.iter().map(u64::to_string).collect();
        let _ = write!(out, "\n[[split]]\nwallet = {}\nat_s = {}\nvalues = [{}]\n", node(NodeId::Wallet(*wallet)), secs(*at), values.join(", "));
    }
    for crate::scenario::AggregateSpec { wallet, at } in &s.aggregates {
        let _ = write!(out, "\n[[aggregate]]\nwallet = {}\nat_s = {}\n", node(NodeId::Wallet(*wallet)), secs(*at));
    }
    // Renew/send race (scenario/device.rs).
    for d in &s.device_races {
        let _ = write!(out, "\n[[device_race]]\nwallet = {}\nto = {}\nsync_s = {}\nrenew_s = {}\nsend_s = {}\n", node(NodeId::Wallet(d.wallet)), node(NodeId::Wallet(d.to)), secs(d.sync), secs(d.renew), secs(d.send));
    }
    // Watchtower and fees flow: `[watchtower]` only when it differs from the default.
    let wt = &s.watchtower;
    let dwt = crate::scenario::WatchtowerSpec::default();
    if wt.mode != dwt.mode || wt.wallet_feerate_sat_vb != dwt.wallet_feerate_sat_vb {
        let _ = write!(out, "\n[watchtower]\nmode = {}\nwallet_feerate_sat_vb = {}\n", string(crate::scenario::watchtower_mode_name(wt.mode)), wt.wallet_feerate_sat_vb);
    }
    for crate::scenario::RaceSpec { wallet, at } in &wt.races {
        let _ = write!(out, "\n[[race]]\nwallet = {}\nat_s = {}\n", node(NodeId::Wallet(*wallet)), secs(*at));
    }

    if let Some(sw) = &s.swarm {
        swarm(&mut out, sw);
    }
    if let Some(ssp) = &s.ssp {
        let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        let _ = write!(out, "\n[ssp]\ndeposits = [{}]\nl1_coins = [{}]\n", list(&ssp.deposits), list(&ssp.l1_coins));
        let _ = write!(out, "lightning_failure_rate = {}\nlightning_payer_delay_s = {}\n", float(f64::from(ssp.lightning_failure_ppm) / 1e6), secs(ssp.lightning_payer_delay));
        // Leaf swaps (scenario/ssp.rs).
        let version = if ssp.swap_version == reference_node::msg::SwapVersion::V2 { 2 } else { 3 };
        let _ = writeln!(out, "swap_version = {version}");
        if let Some((name, _)) = crate::scenario::ssp_coop_exit_fault_name(ssp.coop_exit_fault) {
            let _ = writeln!(out, "coop_exit_fault = \"{name}\"");
        }
        // Array tables last: keys after `[[ssp.swap]]` would belong to the swap.
        for sw in &ssp.swaps {
            let _ = write!(out, "\n[[ssp.swap]]\nwallet = {}\nat_s = {}\namounts = [{}]\n", node(NodeId::Wallet(sw.wallet)), secs(sw.at), list(&sw.amounts));
        }
    }
    for c in &s.coop_exits {
        let _ = write!(out, "\n[[workload.coop_exit]]\nwallet = {}\nat_s = {}\n", node(NodeId::Wallet(c.wallet)), secs(c.at));
        if c.stall {
            out.push_str("stall = true\n");
        }
    }

    budgets(&mut out, &s.budgets);

    match s.expect {
        Expectation::Pass => out.push_str("\n[expect]\noutcome = \"pass\"\n"),
        Expectation::Violation(i) => {
            let _ = write!(out, "\n[expect]\noutcome = \"violation\"\ninvariant = {}\n", string(i.as_str()));
        }
    }
    if !s.expect_sometimes.is_empty() {
        let names: Vec<String> = s.expect_sometimes.iter().map(|n| string(n)).collect();
        let _ = writeln!(out, "sometimes = [{}]", names.join(", "));
    }

    let _ = write!(out, "\n[run]\nmax_sim_time_s = {}\nsettle_s = {}\nmax_events = {}\n", secs(s.run.max_sim_time), secs(s.run.settle), s.run.max_events);
    out
}

/// `[network]` and its `[[network.link]]` overrides.
fn network(out: &mut String, n: &NetworkSpec) {
    let _ = write!(
        out,
        "\n[network]\nlatency_ms = {}\nloss = {}\nduplicate = {}\nreorder = {}\nreorder_ms = {}\n",
        latency(&n.latency),
        float(n.loss),
        float(n.duplicate),
        float(n.reorder),
        ms(n.reorder_delay)
    );
    for LinkOverride { from, to, latency: l, loss, duplicate, reorder } in &n.links {
        let _ = write!(out, "\n[[network.link]]\nfrom = {}\nto = {}\n", pattern(from), pattern(to));
        if let Some(l) = l {
            let _ = writeln!(out, "latency_ms = {}", latency(l));
        }
        for (key, p) in [("loss", loss), ("duplicate", duplicate), ("reorder", reorder)] {
            if let Some(p) = p {
                let _ = writeln!(out, "{key} = {}", float(*p));
            }
        }
    }
}

/// `[workload]`: the random keys, or the explicit lists.
fn workload(out: &mut String, w: &WorkloadSpec) {
    out.push_str("\n[workload]\n");
    match &w.explicit {
        None => {
            let sats: Vec<String> = w.deposit_sats.iter().map(u64::to_string).collect();
            let _ = write!(
                out,
                "deposits_per_wallet = {}\ndeposit_sats = [{}]\ntransfers = {}\ntransfer_start_s = {}\ntransfer_interval_s = {}\nexits = {}\n",
                w.deposits_per_wallet,
                sats.join(", "),
                w.transfers,
                secs(w.transfer_start),
                secs(w.transfer_interval_mean),
                w.exits
            );
            if let Some(at) = w.exit_at {
                let _ = writeln!(out, "exit_at_s = {}", secs(at));
            }
        }
        Some(e) => {
            out.push_str("explicit = true\n");
            for d in &e.deposits {
                let _ = write!(
                    out,
                    "\n[[workload.deposit]]\nwallet = {}\nat_s = {}\nsats = {}\n",
                    node(NodeId::Wallet(d.wallet)),
                    secs(d.at),
                    d.sats
                );
            }
            for t in &e.transfers {
                let _ = write!(
                    out,
                    "\n[[workload.transfer]]\nat_s = {}\nfrom = {}\nto = {}\n",
                    secs(t.at),
                    node(NodeId::Wallet(t.from)),
                    node(NodeId::Wallet(t.to))
                );
            }
            for x in &e.exits {
                let _ = write!(out, "\n[[workload.exit]]\nat_s = {}\nwallet = {}\n", secs(x.at), node(NodeId::Wallet(x.wallet)));
            }
            // Long-lived leaf (scenario/relay.rs).
            for r in &e.relays {
                let wallets: Vec<String> = r.wallets.iter().map(|w| node(NodeId::Wallet(*w))).collect();
                let _ = write!(
                    out,
                    "\n[[workload.relay]]\nwallets = [{}]\nstart_s = {}\nevery_s = {}\ntransfers = {}\n",
                    wallets.join(", "),
                    secs(r.start),
                    secs(r.every),
                    r.transfers
                );
            }
        }
    }
}

/// The body of one `[[fault]]` entry. No catch-all arm: a new fault kind must be written here
/// (or the crate does not compile), else `sparksim shrink` would silently drop it.
fn fault(out: &mut String, f: &FaultSpec) {
    match f {
        FaultSpec::Crash { node: id, at, restart_after } => {
            let _ = write!(out, "kind = \"crash\"\nnode = {}\nat_s = {}\n", node(*id), secs(*at));
            if let Some(r) = restart_after {
                let _ = writeln!(out, "restart_after_s = {}", secs(*r));
            }
        }
        FaultSpec::Partition { groups: g, at, duration } => {
            let _ = write!(out, "kind = \"partition\"\ngroups = [{}]\nat_s = {}\nduration_s = {}\n", groups(g), secs(*at), secs(*duration));
        }
        FaultSpec::CrashMidHandler { node: id, at, after_outputs, lose_unsynced, restart_after } => {
            let _ = write!(
                out,
                "kind = \"crash\"\nmid_handler = true\nnode = {}\nat_s = {}\nlose_unsynced = {lose_unsynced}\n",
                node(*id),
                secs(*at)
            );
            if let Some(n) = after_outputs {
                let _ = writeln!(out, "after_outputs = {n}");
            }
            if let Some(r) = restart_after {
                let _ = writeln!(out, "restart_after_s = {}", secs(*r));
            }
        }
        FaultSpec::NetPartition { groups: g, direction, at, duration, flap } => {
            match direction {
                // A symmetric partition is only a `NetPartition` when it flaps; without flap keys
                // it reads back as the plain `Partition`, which cuts the same single window.
                Direction::Both => {
                    let _ = write!(out, "kind = \"partition\"\ngroups = [{}]\n", groups(g));
                }
                // Group 0 is `from`, the optional group 1 is `to` (omitted: everyone else).
                Direction::OneWay => {
                    out.push_str("kind = \"asymmetric_partition\"\n");
                    if let Some(from) = g.first() {
                        let _ = writeln!(out, "from = {}", list(from));
                    }
                    if let Some(to) = g.get(1) {
                        let _ = writeln!(out, "to = {}", list(to));
                    }
                }
            }
            let _ = write!(out, "at_s = {}\nduration_s = {}\n", secs(*at), secs(*duration));
            if let Some((on, off)) = flap {
                let _ = write!(out, "flap_on_s = {}\nflap_off_s = {}\n", secs(*on), secs(*off));
            }
        }
        FaultSpec::SlowNode { node: n, factor, at, duration } => {
            let _ = write!(out, "kind = \"slow_node\"\nnode = {}\nfactor = {}\nat_s = {}\n", pattern(n), float(*factor), secs(*at));
            if let Some(d) = duration {
                let _ = writeln!(out, "duration_s = {}", secs(*d));
            }
        }
        FaultSpec::Clock { node: n, skew_us, drift_ppm, at } => {
            let _ = write!(
                out,
                "kind = \"clock\"\nnode = {}\nskew_ms = {}\ndrift_ppm = {drift_ppm}\nat_s = {}\n",
                pattern(n),
                float(*skew_us as f64 / 1e3),
                secs(*at)
            );
        }
        FaultSpec::L1(l1) => match l1 {
            L1Fault::Reorg { at, depth, txs } => {
                let txs = match txs {
                    ReorgTxs::Return => "return",
                    ReorgTxs::Drop => "drop",
                };
                let _ = write!(out, "kind = \"reorg\"\nat_s = {}\ndepth = {depth}\ntxs = \"{txs}\"\n", secs(*at));
            }
            L1Fault::BlockDelay { at, duration } => {
                let _ = write!(out, "kind = \"block_delay\"\nat_s = {}\nduration_s = {}\n", secs(*at), secs(*duration));
            }
            L1Fault::FeeSpike { at, duration, min_feerate_sat_vb } => {
                let _ = write!(
                    out,
                    "kind = \"fee_spike\"\nat_s = {}\nduration_s = {}\nmin_feerate_sat_vb = {min_feerate_sat_vb}\n",
                    secs(*at),
                    secs(*duration)
                );
            }
        },
    }
}

/// `[swarm]`, every key written (`kinds` only when restricted: omitted means every kind).
fn swarm(out: &mut String, sw: &SwarmSpec) {
    let SwarmSpec { kinds, p_on, max_loss, max_crashes, max_skew_ms, max_drift_ppm, max_slow_factor } = sw;
    out.push_str("\n[swarm]\n");
    if let Some(kinds) = kinds {
        let names: Vec<String> = kinds.iter().map(|k| string(k)).collect();
        let _ = writeln!(out, "kinds = [{}]", names.join(", "));
    }
    let _ = write!(
        out,
        "p_on = {}\nmax_loss = {}\nmax_crashes = {max_crashes}\nmax_skew_ms = {}\nmax_drift_ppm = {max_drift_ppm}\nmax_slow_factor = {}\n",
        float(*p_on),
        float(*max_loss),
        float(*max_skew_ms),
        float(*max_slow_factor)
    );
}

/// `[budgets]`, only the budgets that are set (an absent budget is no budget).
fn budgets(out: &mut String, b: &Budgets) {
    let mut lines = String::new();
    if let Some(t) = b.transfer_p99 {
        let _ = writeln!(lines, "transfer_p99_s = {}", secs(t));
    }
    for op in LatencyOp::ALL {
        for stat in Stat::ALL {
            if let Some(t) = b.op(op, stat) {
                let _ = writeln!(lines, "{}_{}_s = {}", op.as_str(), stat.as_str(), secs(t));
            }
        }
    }
    if let Some(t) = b.liveness {
        let _ = writeln!(lines, "liveness_s = {}", secs(t));
    }
    if !lines.is_empty() {
        let _ = write!(out, "\n[budgets]\n{lines}");
    }
}

fn hazard_name(h: Hazard) -> &'static str {
    Hazard::ALL.iter().find(|(_, x)| *x == h).map_or("?", |(n, _)| n)
}

/// `[[a, b], [c]]` without the outer brackets.
fn groups(g: &[Vec<NodePattern>]) -> String {
    g.iter().map(|x| list(x)).collect::<Vec<_>>().join(", ")
}

/// `["operator:0", "wallet:*"]`.
fn list(names: &[NodePattern]) -> String {
    format!("[{}]", names.iter().map(pattern).collect::<Vec<_>>().join(", "))
}

/// A TOML basic string, escaped.
fn string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn node(id: NodeId) -> String {
    string(&id.to_string())
}

fn pattern(p: &NodePattern) -> String {
    string(&p.to_string())
}

/// Always with a decimal point or exponent (`{:?}`), so TOML reads a float; exact round trip.
fn float(x: f64) -> String {
    format!("{x:?}")
}

fn secs(m: Micros) -> String {
    float(m.0 as f64 / 1e6)
}

fn ms(m: Micros) -> String {
    float(m.0 as f64 / 1e3)
}

fn latency(l: &Latency) -> String {
    match l {
        Latency::Fixed(m) => ms(*m),
        Latency::Uniform { min, max } => format!("{{ min = {}, max = {} }}", ms(*min), ms(*max)),
        Latency::Pareto { min, alpha, max } => {
            format!("{{ dist = \"pareto\", min = {}, alpha = {}, max = {} }}", ms(*min), float(*alpha), ms(*max))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Invariant;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    /// Every scenario file under `scenarios/`, except the deliberately malformed `bad/` ones.
    fn scenario_files() -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            entries.sort();
            for p in entries {
                if p.is_dir() && p.file_name().is_some_and(|n| n != "bad") {
                    walk(&p, out);
                } else if p.extension().is_some_and(|e| e == "toml") {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios"), &mut out);
        out
    }

    /// Dotted key paths of a TOML document, array indices dropped (`fault.kind`).
    fn key_paths(v: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    // An inline `{ min, max }` latency is one value, not a table of keys.
                    if !k.ends_with("latency_ms") {
                        key_paths(v, &path, out);
                    }
                    out.insert(path);
                }
            }
            toml::Value::Array(a) => a.iter().filter(|x| x.is_table()).for_each(|x| key_paths(x, prefix, out)),
            _ => {}
        }
    }

    #[test]
    fn every_library_scenario_round_trips_and_keeps_every_key() {
        let files = scenario_files();
        assert!(files.len() >= 4, "found only {files:?}");
        for path in files {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(&path).expect("read scenario");
            let parsed = Scenario::parse(&name, &text).unwrap_or_else(|e| panic!("{e}"));
            let written = to_toml(&parsed, "written by the round-trip test");
            let reparsed = Scenario::parse(&name, &written).unwrap_or_else(|e| panic!("{name}: written file does not parse: {e}\n{written}"));
            assert_eq!(parsed, reparsed, "{name}: round trip changed the scenario\n{written}");

            let (mut before, mut after) = (BTreeSet::new(), BTreeSet::new());
            key_paths(&text.parse::<toml::Value>().expect("toml"), "", &mut before);
            key_paths(&written.parse::<toml::Value>().expect("toml"), "", &mut after);
            // `isolate = [..]` is stored as a single group and written as `groups`.
            if before.remove("fault.isolate") {
                before.insert("fault.groups".into());
            }
            let missing: Vec<&String> = before.difference(&after).collect();
            assert!(missing.is_empty(), "{name}: the writer forgot keys {missing:?}");
        }
    }

    #[test]
    fn explicit_workload_round_trips() {
        let text = "name = \"e\"\ndescription = \"d\"\n[workload]\n[[workload.deposit]]\nwallet = \"wallet:1\"\nat_s = 0.5\nsats = 1000\n\
                    [[workload.transfer]]\nat_s = 1800.000001\nfrom = \"wallet:1\"\nto = \"wallet:0\"\n[[workload.exit]]\nat_s = 2000\nwallet = \"wallet:0\"\n";
        let s = Scenario::parse("e.toml", text).expect("parses");
        let e = s.workload.explicit.as_ref().expect("explicit");
        assert_eq!((e.deposits.len(), e.transfers.len(), e.exits.len()), (1, 1, 1));
        assert_eq!(e.transfers[0].at, Micros(1_800_000_001));
        let again = Scenario::parse("e.toml", &to_toml(&s, "")).expect("reparses");
        assert_eq!(s, again);
    }

    #[test]
    fn explicit_workload_errors_name_the_field() {
        let head = "name = \"e\"\ndescription = \"d\"\n[workload]\ntransfers = 3\n[[workload.transfer]]\nat_s = 1\nfrom = \"wallet:0\"\nto = \"wallet:1\"\n";
        let e = Scenario::parse("e.toml", head).expect_err("mixes random and explicit");
        assert_eq!((e.line, e.field.as_str()), (4, "workload.transfers"), "{e}");
        let same = "name = \"e\"\ndescription = \"d\"\n[[workload.transfer]]\nat_s = 1\nfrom = \"wallet:0\"\nto = \"wallet:0\"\n";
        let e = Scenario::parse("e.toml", same).expect_err("self transfer");
        assert_eq!((e.line, e.field.as_str()), (6, "workload.transfer[0].to"), "{e}");
        let op = "name = \"e\"\ndescription = \"d\"\n[[workload.exit]]\nat_s = 1\nwallet = \"operator:0\"\n";
        let e = Scenario::parse("e.toml", op).expect_err("not a wallet");
        assert_eq!((e.line, e.column, e.field.as_str()), (5, 10, "workload.exit[0].wallet"), "{e}");
    }

    /// A scenario built in code with `edit` applied, written, parsed back and compared.
    fn round_trip(what: &str, edit: impl FnOnce(&mut Scenario)) -> String {
        let mut s = Scenario::parse("t.toml", "name = \"t\"\ndescription = \"d\"\n").expect("minimal");
        edit(&mut s);
        let written = to_toml(&s, "");
        let again = Scenario::parse("t.toml", &written).unwrap_or_else(|e| panic!("{what}: written file does not parse: {e}\n{written}"));
        assert_eq!(s, again, "{what}: round trip changed the scenario\n{written}");
        written
    }

    fn op(i: u16) -> NodeId {
        NodeId::Operator(reference_node::types::OperatorId(i))
    }

    fn wallet(i: u16) -> NodeId {
        NodeId::Wallet(reference_node::types::WalletId(i))
    }

    /// Every fault kind with every key it takes (and without its optional ones), built in code
    /// so keys no library file uses are covered too. Each must come back equal and write the
    /// keys listed beside it.
    #[test]
    fn every_fault_kind_and_key_round_trips() {
        use crate::l1faults::L1Fault;
        use reference_node::chain::ReorgTxs;
        let n = |id| NodePattern::Node(id);
        let t = Micros::from_millis;
        let table: Vec<(FaultSpec, &[&str])> = vec![
            (FaultSpec::Crash { node: op(1), at: t(1_500), restart_after: Some(t(2_250)) }, &["node", "at_s", "restart_after_s"]),
            (FaultSpec::Crash { node: wallet(0), at: t(0), restart_after: None }, &["node", "at_s"]),
            (
                FaultSpec::CrashMidHandler { node: op(2), at: t(10), after_outputs: Some(3), lose_unsynced: true, restart_after: Some(t(7_000)) },
                &["mid_handler", "after_outputs", "lose_unsynced", "restart_after_s"],
            ),
            (FaultSpec::CrashMidHandler { node: wallet(1), at: t(10), after_outputs: None, lose_unsynced: false, restart_after: None }, &["mid_handler"]),
            (
                FaultSpec::Partition { groups: vec![vec![n(op(0)), n(op(1))], vec![NodePattern::AllWallets]], at: t(5), duration: t(20_000) },
                &["groups", "at_s", "duration_s"],
            ),
            (
                FaultSpec::NetPartition { groups: vec![vec![n(op(0))]], direction: Direction::Both, at: t(100), duration: t(60_000), flap: Some((t(2_500), t(1_000))) },
                &["groups", "flap_on_s", "flap_off_s"],
            ),
            (
                FaultSpec::NetPartition { groups: vec![vec![n(op(0))], vec![n(op(1)), n(wallet(1))]], direction: Direction::OneWay, at: t(1), duration: t(9_000), flap: None },
                &["from", "to", "duration_s"],
            ),
            (
                FaultSpec::NetPartition { groups: vec![vec![NodePattern::AllOperators]], direction: Direction::OneWay, at: t(1), duration: t(9_000), flap: Some((t(1_000), t(3_000))) },
                &["from", "flap_on_s", "flap_off_s"],
            ),
            (FaultSpec::SlowNode { node: n(op(3)), factor: 7.25, at: t(30), duration: Some(t(45_000)) }, &["node", "factor", "at_s", "duration_s"]),
            (FaultSpec::SlowNode { node: NodePattern::AllWallets, factor: 1.0, at: Micros::ZERO, duration: None }, &["factor"]),
            (FaultSpec::Clock { node: n(op(0)), skew_us: -1_234_567, drift_ppm: 250, at: Micros::ZERO }, &["skew_ms", "drift_ppm"]),
            (FaultSpec::Clock { node: NodePattern::AllOperators, skew_us: 30_000_000, drift_ppm: -900_000, at: t(600_000) }, &["skew_ms", "drift_ppm", "at_s"]),
            (FaultSpec::L1(L1Fault::Reorg { at: t(1_800_000), depth: 3, txs: ReorgTxs::Drop }), &["depth", "txs"]),
            (FaultSpec::L1(L1Fault::Reorg { at: t(1), depth: 1, txs: ReorgTxs::Return }), &["depth", "txs"]),
            (FaultSpec::L1(L1Fault::BlockDelay { at: t(60_000), duration: t(3_600_000) }), &["at_s", "duration_s"]),
            (FaultSpec::L1(L1Fault::FeeSpike { at: t(60_000), duration: t(600_000), min_feerate_sat_vb: 250 }), &["min_feerate_sat_vb"]),
        ];
        for (f, keys) in &table {
            let written = round_trip(&format!("{f:?}"), |s| s.faults = vec![f.clone()]);
            let v: toml::Value = written.parse().expect("toml");
            let entry = &v["fault"][0];
            for k in *keys {
                assert!(entry.get(*k).is_some(), "{f:?}: key `{k}` not written\n{written}");
            }
        }
        // All of them at once, in order.
        round_trip("every fault", |s| s.faults = table.iter().map(|(f, _)| f.clone()).collect());
        // A symmetric partition that does not flap has no form of its own: it reads back as the
        // plain partition, which cuts the same window.
        let steady = FaultSpec::NetPartition { groups: vec![vec![n(op(1))]], direction: Direction::Both, at: t(3), duration: t(4_000), flap: None };
        let mut s = Scenario::parse("t.toml", "name = \"t\"\ndescription = \"d\"\n").expect("minimal");
        s.faults = vec![steady.clone()];
        let back = Scenario::parse("t.toml", &to_toml(&s, "")).expect("parses");
        assert!(matches!(back.faults[..], [FaultSpec::Partition { .. }]), "{:?}", back.faults);
        assert_eq!(back.faults[0].partition_windows(&s.topology), steady.partition_windows(&s.topology));
    }

    /// Every other section with every optional key set to a non-default value.
    #[test]
    fn every_section_and_key_round_trips() {
        use crate::scenario::{ByzantineSpec, ExplicitWorkload, SwarmSpec, TestFault, TheftSpec};
        use reference_node::params::Behaviour;
        use reference_node::types::{OperatorId, WalletId};
        let t = Micros::from_millis;
        let written = round_trip("network", |s| {
            s.seed = Some(42);
            let n = &mut s.network;
            n.latency = Latency::Pareto { min: t(20), alpha: 1.25, max: t(30_000) };
            (n.loss, n.duplicate, n.reorder, n.reorder_delay) = (0.05, 0.125, 0.3, Micros(150_500));
            n.links = vec![
                LinkOverride { from: NodePattern::AllWallets, to: NodePattern::Node(op(0)), latency: Some(Latency::Uniform { min: t(200), max: t(800) }), loss: Some(0.02), duplicate: Some(0.5), reorder: Some(0.25) },
                LinkOverride { from: NodePattern::Node(op(1)), to: NodePattern::AllOperators, latency: Some(Latency::Pareto { min: t(5), alpha: 2.0, max: t(9_000) }), loss: None, duplicate: None, reorder: None },
                LinkOverride { from: NodePattern::Node(wallet(0)), to: NodePattern::Node(wallet(1)), latency: Some(Latency::Fixed(t(7))), loss: None, duplicate: Some(0.1), reorder: None },
            ];
            (s.chain.deposit_confirmations, s.chain.min_feerate_sat_vb) = (3, 12);
            s.protocol.test_faults = [TestFault::SkipSendTimelockDecrement, TestFault::BroadcastRefundEarly].into();
            s.protocol.hazards = Hazard::ALL.iter().map(|(_, h)| *h).collect();
            s.protocol.consensus = reference_node::consensus::Consensus::TwoPhase; // two-phase commit mode
            s.protocol.flow_stale = Micros(45_250_000);
            s.byzantine = vec![
                ByzantineSpec { operator: OperatorId(1), behaviours: Behaviour::ALL.iter().map(|(_, b)| *b).collect() },
                ByzantineSpec { operator: OperatorId(4), behaviours: [Behaviour::Withhold].into() },
            ];
            s.thefts = vec![TheftSpec { wallet: WalletId(1), at: t(2_400_500) }];
            (s.topology.ssp, s.ssp) = (true, Some(crate::scenario::SspSpec { deposits: vec![4_096, 1], l1_coins: vec![], lightning_failure_ppm: 125_000, lightning_payer_delay: t(2_500), swap_version: reference_node::msg::SwapVersion::V2, swaps: vec![crate::scenario::SwapAt { wallet: WalletId(0), at: t(7_000_000), amounts: vec![2_048, 2_048] }], coop_exit_fault: Some(reference_node::msg::ssp::CoopExitFault::NeverBroadcast) }));
            s.coop_exits = vec![crate::scenario::CoopExitAt { wallet: WalletId(0), at: t(700_250), stall: true }, crate::scenario::CoopExitAt { wallet: WalletId(1), at: t(800_000), stall: false }];
            s.workload.lightning = vec![crate::scenario::LightningAt { wallet: WalletId(1), at: t(40_500), direction: crate::scenario::LightningDirection::Receive, sats: 4_096 }, crate::scenario::LightningAt { wallet: WalletId(0), at: t(41_000), direction: crate::scenario::LightningDirection::Send, sats: 2_000 }];
            s.splits = vec![crate::scenario::SplitSpec { wallet: WalletId(2), at: t(1_900_250), values: vec![40_000, 25_536] }];
            s.aggregates = vec![crate::scenario::AggregateSpec { wallet: WalletId(2), at: t(1_950_500) }];
            s.device_races = vec![crate::scenario::DeviceRaceSpec { wallet: WalletId(0), to: WalletId(1), sync: t(1_000_250), renew: t(1_000_500), send: t(1_001_000) }];
            s.watchtower = crate::scenario::WatchtowerSpec { mode: reference_node::params::WatchtowerMode::Relative, wallet_feerate_sat_vb: 9, races: vec![crate::scenario::RaceSpec { wallet: WalletId(2), at: t(1_500_250) }] };
            s.swarm = Some(SwarmSpec { kinds: Some(["clock".to_owned(), "loss".to_owned()].into()), p_on: 0.75, max_loss: 0.2, max_crashes: 5, max_skew_ms: 1_500.5, max_drift_ppm: 5_000, max_slow_factor: 3.5 });
            s.budgets.transfer_p99 = Some(t(10_000));
            for (i, op) in LatencyOp::ALL.into_iter().enumerate() {
                for (j, stat) in Stat::ALL.into_iter().enumerate() {
                    s.budgets.ops[op as usize][stat as usize] = Some(t(1_000 * (1 + 3 * i as u64 + j as u64)));
                }
            }
            s.budgets.liveness = Some(t(3_600_000));
            s.workload.exit_at = Some(t(5_000_000));
            s.run.settle = Micros::ZERO;
        });
        let v: toml::Value = written.parse().expect("toml");
        let mut keys = BTreeSet::new();
        key_paths(&v, "", &mut keys);
        let want = [
            "seed", "network.duplicate", "network.reorder", "network.reorder_ms", "network.link.duplicate", "network.link.reorder", "network.link.loss",
            "chain.deposit_confirmations", "chain.min_feerate_sat_vb", "protocol.hazards", "protocol.test_faults", "byzantine.operator", "byzantine.behaviours",
            "theft.wallet", "theft.at_s", "split.wallet", "split.at_s", "split.values", "aggregate.wallet", "aggregate.at_s", "device_race.wallet", "device_race.to", "device_race.sync_s", "device_race.renew_s", "device_race.send_s", "swarm.kinds", "swarm.p_on", "swarm.max_loss", "swarm.max_crashes", "swarm.max_skew_ms", "swarm.max_drift_ppm",
            "swarm.max_slow_factor", "watchtower.mode", "watchtower.wallet_feerate_sat_vb", "race.wallet", "race.at_s", "ssp.deposits", "ssp.l1_coins", "ssp.coop_exit_fault", "workload.coop_exit.wallet", "workload.coop_exit.at_s", "workload.coop_exit.stall", "ssp.swap_version", "ssp.swap.wallet", "ssp.swap.at_s", "ssp.swap.amounts", "ssp.lightning_failure_rate", "ssp.lightning_payer_delay_s", "workload.lightning.wallet",
            "workload.lightning.at_s", "workload.lightning.direction", "workload.lightning.sats", "budgets.transfer_p99_s", "budgets.liveness_s", "workload.exit_at_s", "run.settle_s",
        ];
        let missing: Vec<&&str> = want.iter().filter(|k| !keys.contains(**k)).collect();
        assert!(missing.is_empty(), "not written: {missing:?}\n{written}");
        for op in LatencyOp::ALL {
            for stat in Stat::ALL {
                assert!(keys.contains(&format!("budgets.{}_{}_s", op.as_str(), stat.as_str())), "{op:?} {stat:?}\n{written}");
            }
        }
        // `swarm = true` (every kind) and the random workload's defaults; an explicit workload.
        round_trip("swarm defaults", |s| s.swarm = Some(SwarmSpec::default()));
        round_trip("explicit", |s| {
            s.workload.explicit = Some(ExplicitWorkload::default());
        });
        // Every name `[expect] invariant` accepts.
        for inv in Invariant::every() {
            round_trip(inv.as_str(), |s| s.expect = Expectation::Violation(inv));
        }
    }

    /// The library's scenario texts, read once.
    fn library() -> &'static [(String, String)] {
        static LIB: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
        LIB.get_or_init(|| {
            scenario_files().into_iter().map(|p| (p.display().to_string(), std::fs::read_to_string(&p).expect("read"))).collect()
        })
    }

    /// Byte-level edits: replace, delete, insert, or duplicate a line.
    fn mutate(base: &str, edits: &[(usize, u8, u8)]) -> String {
        let mut bytes = base.as_bytes().to_vec();
        for &(pos, op, b) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = pos % bytes.len();
            match op % 4 {
                0 => bytes[i] = b,
                1 => {
                    bytes.remove(i);
                }
                2 => bytes.insert(i, b),
                _ => {
                    let start = bytes[..i].iter().rposition(|c| *c == b'\n').map_or(0, |k| k + 1);
                    let end = bytes[i..].iter().position(|c| *c == b'\n').map_or(bytes.len(), |k| i + k);
                    let line = bytes[start..end].to_vec();
                    bytes.splice(end..end, std::iter::once(b'\n').chain(line));
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Fuzzing the parser with every library file, randomly mutated: it never panics, an
        /// error always names the file, a line, a column and a field, and whatever still
        /// parses writes back to an equal scenario.
        #[test]
        fn mutated_library_files_never_panic_and_always_explain(
            which in 0usize..64,
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>(), proptest::prelude::any::<u8>()), 1..6),
        ) {
            let lib = library();
            let (name, text) = &lib[which % lib.len()];
            let mutated = mutate(text, &edits);
            match Scenario::parse(name, &mutated) {
                Err(e) => {
                    proptest::prop_assert!(e.line >= 1 && e.column >= 1, "{e}");
                    proptest::prop_assert!(!e.field.is_empty(), "{e}");
                    proptest::prop_assert_eq!(&e.file, name);
                    proptest::prop_assert!(!e.message.is_empty());
                }
                Ok(s) => {
                    let again = Scenario::parse(name, &to_toml(&s, "")).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                    proptest::prop_assert_eq!(s, again);
                }
            }
        }
    }
}
