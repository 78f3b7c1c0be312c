//! Runs one (scenario, seed): builds the cluster, schedules workload and faults, steps the engine
//! with the checker after every event, and produces the report. A panic inside a node is caught
//! and becomes a "panic" violation: a finding with its seed, never a crash of the harness.
use crate::actor::Actor;
use crate::checker::{self, Checker};
use crate::clock::Clock;
use crate::engine::{Engine, MidHandlerCrash, StepRecord, L1};
use crate::net::SlowWindow;
use crate::report::{LivenessPhase, MessageCounts, Outcome, RunReport, Violation, SCHEMA_VERSION};
use crate::rng;
use crate::scenario::{DepositAt, ExitAt, ExplicitWorkload, Expectation, FaultSpec, Scenario, TestFault, TransferAt, WorkloadSpec};
use crate::timeline::{Timeline, TimelineRecorder};
use crate::trace::EventDigest;
use bitcoin::{Amount, TxOut};
use rand_core::RngCore;
use reference_node::chain::Chain;
use reference_node::node::Node;
use reference_node::crypto::SecretKey;
use reference_node::operator::{Operator, OperatorConfig};
use reference_node::params::{Directory, Hazards, Params, TestFaults};
use reference_node::tx::template;
use reference_node::types::{Micros, NodeId, OperatorId, WalletId};
use reference_node::wallet::{Command, Wallet, WalletConfig};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Keep a per-event digest log (for `check-determinism`).
    pub keep_digest_log: bool,
    /// Keep a bounded timeline of events (for the HTML and Perfetto reports): the ring size.
    pub timeline_capacity: Option<usize>,
}

pub struct RunResult {
    pub report: RunReport,
    pub digest_log: Option<Vec<EventDigest>>,
    /// Present when [`RunOptions::timeline_capacity`] was set.
    pub timeline: Option<Timeline>,
}

pub type SimEngine = Engine<Actor, Chain>;

/// L1 coins a wallet starts with, on top of what its deposits need (change stays on L1).
const L1_MARGIN_SATS: u64 = 1_000_000;

/// The protocol parameters a scenario asks for.
pub fn params_of(s: &Scenario) -> Params {
    let mut p = Params::new(s.topology.operators, s.topology.threshold);
    p.request_timeout = s.protocol.request_timeout;
    p.gossip_retry = s.protocol.gossip_retry;
    p.transfer_expiry = s.protocol.transfer_expiry;
    p.dkg_pool_min = s.protocol.dkg_pool_min as usize;
    p.dkg_batch = s.protocol.dkg_batch.min(u32::from(u16::MAX)) as u16;
    p.wallet_poll = s.protocol.wallet_poll;
    p.dkg_coordinators = vec![s.topology.coordinator];
    adversary_params(s, &mut p);
    p.deposit_confirmations = s.chain.deposit_confirmations;
    p.consensus = s.protocol.consensus; // two-phase commit mode
    p.flow_stale = s.protocol.flow_stale;
    // Watchtower and fees flow.
    p.watchtower = s.watchtower.mode;
    p.l1_feerate_sat_vb = s.watchtower.wallet_feerate_sat_vb;
    p.coop_exit_fault = s.ssp.as_ref().and_then(|x| x.coop_exit_fault);
    p.test_faults = TestFaults {
        skip_send_timelock_decrement: s.protocol.test_faults.contains(&TestFault::SkipSendTimelockDecrement),
        broadcast_refund_early: s.protocol.test_faults.contains(&TestFault::BroadcastRefundEarly),
    };
    p
}

/// Byzantine operators and restored hazards (scenario `[[byzantine]]`, `protocol.hazards`).
fn adversary_params(s: &Scenario, p: &mut Params) {
    use crate::scenario::Hazard;
    let on = |h| s.protocol.hazards.contains(&h);
    p.hazards = Hazards {
        gossip_ack_unapplied: on(Hazard::GossipAckUnapplied),
        claim_settle_split: on(Hazard::ClaimSettleSplit),
        claim_skip_timelock_decrement: on(Hazard::ClaimSkipTimelockDecrement),
        renew_node_on_zero_csv: on(Hazard::RenewNodeOnZeroCsv),
        stale_send_drops_leaf: on(Hazard::StaleSendDropsLeaf),
    };
    p.byzantine = s.byzantine.iter().map(|b| (b.operator, b.behaviours.clone())).collect();
}

/// A built run: the engine with everything scheduled, and when the last command is due.
pub struct Built {
    pub engine: SimEngine,
    pub last_command: Micros,
}

/// Build the cluster: keys from the "setup" stream, wallets funded at genesis.
pub fn build(s: &Scenario, seed: u64, keep_digest_log: bool) -> Built {
    let params = Arc::new(lightning_params(s, seed, params_of(s)));
    let mut setup = rng::stream(seed, "setup");
    let secp = reference_node::crypto::secp();
    let op_keys: Vec<SecretKey> = (0..s.topology.operators).map(|_| SecretKey::new(&mut setup)).collect();
    let wallet_keys: Vec<(SecretKey, SecretKey)> = (0..s.topology.wallets).map(|_| (SecretKey::new(&mut setup), SecretKey::new(&mut setup))).collect();
    // The SSP's keys come from their own stream, so adding an SSP leaves every other key as it was.
    let ssp_id = WalletId(s.topology.wallets);
    let ssp_keys = s.ssp.as_ref().map(|_| {
        let mut r = rng::stream(seed, "setup/ssp");
        (SecretKey::new(&mut r), SecretKey::new(&mut r))
    });
    let directory = Arc::new(Directory {
        operators: op_keys.iter().enumerate().map(|(i, k)| (OperatorId(i as u16), k.public_key(secp))).collect(),
        wallets: wallet_keys.iter().enumerate().map(|(i, (k, _))| (WalletId(i as u16), k.public_key(secp))).chain(ssp_keys.as_ref().map(|(k, _)| (ssp_id, k.public_key(secp)))).collect(),
        ssp: s.ssp.as_ref().map(|_| ssp_id),
    });
    let mut config = s.engine_config();
    config.keep_digest_log = keep_digest_log;
    let mut chain = Chain::new();
    chain.set_min_feerate(s.chain.min_feerate_sat_vb);
    let mut engine = Engine::new(seed, config, chain);
    let plan = plan_workload(s, seed);
    for (i, identity) in op_keys.into_iter().enumerate() {
        let id = OperatorId(i as u16);
        let cfg = OperatorConfig { id, identity, params: params.clone(), directory: directory.clone() };
        engine.add_node(NodeId::Operator(id), Actor::Operator(Box::new(Operator::new(cfg))));
    }
    for (i, (identity, l1_key)) in wallet_keys.into_iter().enumerate() {
        let id = WalletId(i as u16);
        let cfg = WalletConfig { id, identity, l1_key, coordinator: s.topology.coordinator, params: params.clone(), directory: directory.clone() };
        let mut wallet = Wallet::new(cfg);
        let script = template::p2tr_script(&wallet.l1_key_public());
        // One coin per deposit, so deposits never wait for an unconfirmed change output.
        for sats in plan.deposits.iter().filter(|d| d.wallet == id).map(|d| d.sats) {
            let value = Amount::from_sat(sats + L1_MARGIN_SATS / 10);
            let outpoint = engine.chain_mut().fund(script.clone(), value);
            wallet.add_l1_coin(outpoint, TxOut { value, script_pubkey: script.clone() });
        }
        engine.add_node(NodeId::Wallet(id), Actor::Wallet(Box::new(wallet)));
    }
    if let (Some(spec), Some((identity, l1_key))) = (&s.ssp, ssp_keys) {
        add_ssp(&mut engine, spec, seed, WalletConfig { id: ssp_id, identity, l1_key, coordinator: s.topology.coordinator, params: params.clone(), directory: directory.clone() });
    }
    let mut last_command = schedule_workload(&plan, &mut engine);
    // Lightning (scenario/lightning.rs): after the rest, so other commands keep their order.
    for l in &s.workload.lightning {
        match l.direction {
            crate::scenario::LightningDirection::Receive => engine.schedule_command(l.at, l.wallet, Command::LightningReceive { sats: l.sats }),
            crate::scenario::LightningDirection::Send => engine.schedule_command(l.at, l.wallet, Command::LightningSend { sats: l.sats }),
        }
        last_command = last_command.max(l.at);
    }
    for t in &s.thefts {
        engine.schedule_command(t.at, t.wallet, Command::Steal);
        last_command = last_command.max(t.at);
    }
    // Split (wallet/split.rs): after the workload and thefts, so adding splits shifts nothing.
    for sp in &s.splits {
        engine.schedule_command(sp.at, sp.wallet, Command::Split { values: sp.values.clone() });
        last_command = last_command.max(sp.at);
    }
    for ag in &s.aggregates {
        engine.schedule_command(ag.at, ag.wallet, Command::Aggregate);
        last_command = last_command.max(ag.at);
    }
    // Leaf swaps (scenario/ssp.rs `[[ssp.swap]]`).
    for sw in s.ssp.iter().flat_map(|x| x.swaps.iter().map(move |sw| (x.swap_version, sw))) {
        engine.schedule_command(sw.1.at, sw.1.wallet, Command::Swap { target_denominations: sw.1.amounts.clone(), version: sw.0 });
        last_command = last_command.max(sw.1.at);
    }
    // Renew/send race (wallet/device.rs): schedules nothing without `[[device_race]]`.
    for d in &s.device_races {
        engine.schedule_command(d.sync, d.wallet, Command::DeviceSync);
        engine.schedule_command(d.renew, d.wallet, Command::RenewNow);
        engine.schedule_command(d.send, d.wallet, Command::DeviceSend { receiver: d.to });
        last_command = last_command.max(d.send);
    }
    // Watchtower and fees flow: former owners racing their stale refunds.
    for r in &s.watchtower.races {
        engine.schedule_command(r.at, r.wallet, Command::RaceStaleRefund);
        last_command = last_command.max(r.at);
    }
    for c in &s.coop_exits {
        engine.schedule_command(c.at, c.wallet, Command::CoopExit { stall: c.stall });
        last_command = last_command.max(c.at);
    }
    for f in &s.faults {
        match f {
            FaultSpec::Crash { node, at, restart_after } => {
                engine.schedule_crash(*at, *node);
                if let Some(after) = restart_after {
                    engine.schedule_restart(*at + *after, *node);
                }
            }
            FaultSpec::Partition { .. } => {
                for w in f.partition_windows(&s.topology) {
                    engine.add_partition(w);
                }
            }
            // --- network, process and clock faults ---
            FaultSpec::NetPartition { .. } => {
                for w in f.partition_windows(&s.topology) {
                    engine.add_partition(w);
                }
            }
            FaultSpec::CrashMidHandler { node, at, after_outputs, lose_unsynced, restart_after } => {
                let crash = MidHandlerCrash { after_outputs: *after_outputs, lose_unsynced: *lose_unsynced, restart_after: *restart_after };
                engine.schedule_mid_handler_crash(*at, *node, crash);
            }
            FaultSpec::SlowNode { node, factor, at, duration } => {
                for id in node.expand(&s.topology) {
                    let until = duration.map_or(Micros(u64::MAX), |d| *at + d);
                    engine.add_slow(SlowWindow { node: id, factor: *factor, from: *at, until });
                }
            }
            FaultSpec::Clock { node, skew_us, drift_ppm, at } => {
                for id in node.expand(&s.topology) {
                    engine.set_clock(id, Clock { skew_us: *skew_us, drift_ppm: *drift_ppm, skew_from: *at });
                }
            }
            FaultSpec::L1(l1) => l1.schedule(&mut engine),
        }
    }
    Built { engine, last_command }
}

/// The simulated Lightning network behind the SSP: its failure rate and payer delay from
/// `[ssp]`, its seed from the run's own "ssp/lightning" stream (no other stream moves).
fn lightning_params(s: &Scenario, seed: u64, mut p: Params) -> Params {
    if let Some(spec) = &s.ssp {
        let mut seed_bytes = [0u8; 32];
        rng::stream(seed, "ssp/lightning").fill_bytes(&mut seed_bytes);
        p.lightning = reference_node::msg::lightning::LightningParams { failure_ppm: spec.lightning_failure_ppm, payer_delay: spec.lightning_payer_delay, seed: seed_bytes };
    }
    p
}

/// The service provider: a wallet funded with one L1 coin per liquidity deposit plus its
/// `l1_coins`, depositing its liquidity in the first 10 s (times from the "workload/ssp" stream, so
/// the workload's own draws do not move).
fn add_ssp(engine: &mut SimEngine, spec: &crate::scenario::SspSpec, seed: u64, cfg: WalletConfig) {
    let id = cfg.id;
    let mut wallet = Wallet::new(cfg);
    let script = template::p2tr_script(&wallet.l1_key_public());
    // Ascending, so the wallet's first-fit coin choice is a best fit: each liquidity deposit
    // takes its own coin and the large L1 coins stay whole for payouts.
    let mut coins: Vec<u64> = spec.deposits.iter().map(|sats| sats + L1_MARGIN_SATS / 10).chain(spec.l1_coins.iter().copied()).collect();
    coins.sort_unstable();
    for sats in coins {
        let value = Amount::from_sat(sats);
        let outpoint = engine.chain_mut().fund(script.clone(), value);
        wallet.add_l1_coin(outpoint, TxOut { value, script_pubkey: script.clone() });
    }
    engine.add_node(NodeId::Wallet(id), Actor::Wallet(Box::new(wallet)));
    let mut rng = rng::stream(seed, "workload/ssp");
    for sats in &spec.deposits {
        let at = rng::uniform_micros(&mut rng, Micros::ZERO, Micros::from_secs(10));
        engine.schedule_command(at, id, Command::Deposit { sats: *sats });
    }
}

/// The workload a run executes: the scenario's explicit lists, or the random draw from the
/// "workload" stream (deposits at the start, transfers as a Poisson process from
/// `transfer_start`, exits after the last transfer). `sparksim shrink` records this as an
/// explicit workload, which then schedules exactly the same commands in the same order.
pub fn plan_workload(s: &Scenario, seed: u64) -> ExplicitWorkload {
    if let Some(explicit) = &s.workload.explicit {
        // A relay's sends become single transfers after the listed ones, so a recorded plan
        // (`sparksim shrink`) lists each send and can drop it on its own.
        let mut plan = explicit.clone();
        for relay in std::mem::take(&mut plan.relays) {
            plan.transfers.extend(relay.transfers());
        }
        return plan;
    }
    let mut rng = rng::stream(seed, rng::WORKLOAD);
    let wallets = u64::from(s.topology.wallets);
    let w = &s.workload;
    let mut plan = ExplicitWorkload::default();
    for wallet in 0..s.topology.wallets {
        for k in 0..w.deposits_per_wallet as usize {
            let at = rng::uniform_micros(&mut rng, Micros::ZERO, Micros::from_secs(10));
            let sats = w.deposit_sats[k % w.deposit_sats.len()];
            plan.deposits.push(DepositAt { wallet: WalletId(wallet), at, sats });
        }
    }
    let mut t = w.transfer_start;
    let mut last = Micros::ZERO;
    for _ in 0..w.transfers {
        t = t + rng::exponential_micros(&mut rng, w.transfer_interval_mean);
        if wallets < 2 {
            break;
        }
        let sender = rng.next_u64() % wallets;
        let receiver = (sender + 1 + rng.next_u64() % (wallets - 1)) % wallets;
        plan.transfers.push(TransferAt { at: t, from: WalletId(sender as u16), to: WalletId(receiver as u16) });
        last = t;
    }
    let exit_at = w.exit_at.unwrap_or(last.max(w.transfer_start) + WorkloadSpec::EXIT_AFTER_LAST_TRANSFER);
    let mut order: Vec<u16> = (0..s.topology.wallets).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    for wallet in order.into_iter().take(w.exits as usize) {
        plan.exits.push(ExitAt { at: exit_at, wallet: WalletId(wallet) });
    }
    plan
}

/// Schedules the planned workload; returns when the last transfer or exit is due.
fn schedule_workload(plan: &ExplicitWorkload, engine: &mut SimEngine) -> Micros {
    let mut last = Micros::ZERO;
    for d in &plan.deposits {
        engine.schedule_command(d.at, d.wallet, Command::Deposit { sats: d.sats });
    }
    for t in &plan.transfers {
        engine.schedule_command(t.at, t.from, Command::Send { receiver: t.to });
        last = last.max(t.at);
    }
    for e in &plan.exits {
        engine.schedule_command(e.at, e.wallet, Command::Exit);
        last = last.max(e.at);
    }
    last
}

/// The moment after which only liveness (settling, exits) is awaited: the last scheduled
/// command or fault, plus the scenario's settle time.
fn horizon(s: &Scenario, last_command: Micros) -> Micros {
    let faults_end = s.faults.iter().map(FaultSpec::ends_at);
    faults_end.fold(last_command, Micros::max) + s.run.settle
}

/// The liveness phase: it starts at the horizon and ends as soon as every pending operation is
/// terminal ([`checker::is_quiet`]), or at `budgets.liveness_s` after its start (else
/// `run.max_sim_time_s`); whatever is still pending then is an L-* finding.
fn liveness_deadline(s: &Scenario, horizon: Micros) -> Micros {
    s.budgets.liveness.map_or(s.run.max_sim_time, |b| (horizon + b).min(s.run.max_sim_time))
}

/// A run that reached `run.max_events`: a message or timer storm, named by the node with the
/// most events and how much simulated time the events covered.
fn event_budget_finding(rec: &StepRecord, max_events: u64, per_node: &BTreeMap<NodeId, u64>) -> Violation {
    let top = per_node.iter().max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)));
    let who = top.map_or(String::new(), |(id, n)| format!("; busiest node {id} with {n} events"));
    Violation {
        invariant: "event-budget".into(),
        sim_time_s: rec.time.as_secs_f64(),
        event_index: rec.index,
        message: format!("the run reached run.max_events = {max_events} by {:.1} s simulated{who}: a message or timer storm (last event: {})", rec.time.as_secs_f64(), rec.description),
    }
}

/// One engine step, with a panic inside a node turned into an error carrying its message (a
/// finding for the report), never an unwinding harness.
pub fn step_or_finding<N: Node, C: L1>(engine: &mut Engine<N, C>) -> Result<Option<StepRecord>, String> {
    catch_unwind(AssertUnwindSafe(|| engine.step())).map_err(|payload| {
        payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "panic with a non-string payload".into())
    })
}

pub fn run(scenario: &Scenario, scenario_path: &str, seed: u64, opts: &RunOptions) -> RunResult {
    // Wall time is measured for the report only; nothing in the simulated path reads it.
    #[allow(clippy::disallowed_methods)]
    let wall_start = std::time::Instant::now();
    // Swarm mode: this seed's drawn faults join the file's own (a no-op without `swarm`).
    let (expanded, swarm_mix) = crate::swarm::expand(scenario, seed);
    let scenario = &expanded;
    let Built { mut engine, last_command } = build(scenario, seed, opts.keep_digest_log);
    let mut checker = Checker::new(scenario.topology.operators, scenario.topology.threshold, scenario.budgets.transfer_p99.map(|m| m.as_secs_f64()))
        .with_budgets(scenario.budgets)
        .with_task_period(params_of(scenario).transfer_tasks_period);
    let mut violations: Vec<Violation> = Vec::new();
    let horizon = horizon(scenario, last_command);
    let deadline = liveness_deadline(scenario, horizon);
    let mut quiet = false;
    let mut last_index = 0;
    let mut panicked = false;
    let mut recorder = opts.timeline_capacity.map(TimelineRecorder::new);
    // Events per node, to name the source of a storm if the run hits `run.max_events`.
    let mut busiest: BTreeMap<NodeId, u64> = BTreeMap::new();
    loop {
        let rec = match step_or_finding(&mut engine) {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            Err(msg) => {
                violations.push(Violation { invariant: "panic".into(), sim_time_s: engine.now().as_secs_f64(), event_index: last_index + 1, message: format!("a node panicked: {msg}") });
                panicked = true;
                break;
            }
        };
        last_index = rec.index;
        if let Some(node) = rec.node {
            *busiest.entry(node).or_insert(0) += 1;
        }
        let found = checker.after_event(&engine, &rec);
        if let Some(t) = recorder.as_mut() {
            t.record(&rec, &found);
        }
        violations.extend(found);
        let now = engine.now();
        if now >= horizon {
            quiet = checker::is_quiet(&engine);
        }
        if now >= scenario.run.max_sim_time || (now >= horizon && (quiet || now >= deadline)) {
            break;
        }
        if rec.index + 1 >= scenario.run.max_events {
            violations.push(event_budget_finding(&rec, scenario.run.max_events, &busiest));
            break;
        }
    }
    if !panicked {
        quiet = checker::is_quiet(&engine);
    }
    checker.set_liveness(LivenessPhase { start_s: horizon.as_secs_f64(), deadline_s: deadline.as_secs_f64(), end_s: engine.now().as_secs_f64(), quiet });
    if !panicked {
        violations.extend(checker.at_end(&engine, last_index));
    }
    if let Some(t) = recorder.as_mut() {
        t.note_end_violations(&violations);
    }
    let mut report = make_report(scenario, scenario_path, seed, &engine, &checker, violations, wall_start.elapsed().as_secs_f64());
    report.swarm = swarm_mix;
    let digest_log = engine.digest_log().map(|l| l.to_vec());
    RunResult { report, digest_log, timeline: recorder.map(TimelineRecorder::finish) }
}

/// Faults by kind. The kind is the variant's name, so a fault kind added later is counted
/// without touching this function.
pub fn fault_mix(s: &Scenario) -> std::collections::BTreeMap<String, u32> {
    let mut mix = std::collections::BTreeMap::new();
    for f in &s.faults {
        let debug = format!("{f:?}");
        let name: String = debug.chars().take_while(|c| c.is_alphanumeric()).collect();
        *mix.entry(name.to_lowercase()).or_insert(0) += 1;
    }
    mix
}

/// The adversary section of the report: only for runs with Byzantine operators, thefts or hazards.
fn adversary_report(s: &Scenario, checker: &Checker) -> Option<crate::report::AdversaryReport> {
    if s.byzantine.is_empty() && s.thefts.is_empty() && s.protocol.hazards.is_empty() {
        return None;
    }
    let (d, t) = checker.adversary();
    Some(crate::report::AdversaryReport {
        culprits_named: d.culprits_named.iter().map(|(o, n)| (o.to_string(), *n)).collect(),
        nonce_reuse_refused: d.nonce_reuse_refused,
        theft_attempts_blocked: t.attempts_blocked,
        theft_attempts_succeeded: t.attempts_succeeded,
    })
}

fn make_report(s: &Scenario, path: &str, seed: u64, engine: &SimEngine, checker: &Checker, violations: Vec<Violation>, wall_time_s: f64) -> RunReport {
    let outcome = if violations.is_empty() { Outcome::Pass } else { Outcome::Fail };
    let (expected, matched) = match s.expect {
        Expectation::Pass => ("pass".to_string(), violations.is_empty()),
        Expectation::Violation(inv) => (format!("violation:{}", inv.as_str()), violations.iter().any(|v| v.invariant == inv.as_str())),
    };
    let c = engine.counters();
    RunReport {
        schema_version: SCHEMA_VERSION,
        scenario: s.name.clone(),
        scenario_path: path.to_string(),
        seed,
        outcome,
        expected,
        matched_expectation: matched,
        violations,
        trace_hash: hex::encode(engine.trace_hash()),
        events: c.events,
        operators: s.topology.operators,
        threshold: s.topology.threshold,
        wallets: s.topology.wallets,
        deposits_confirmed: checker.deposits_confirmed(),
        transfers_sent: checker.transfers_sent(),
        transfers_claimed: checker.transfers_claimed(),
        transfers_returned: checker.transfers_returned(),
        exits_confirmed: checker.exits_confirmed(),
        invariant_checks: checker.checks_run(),
        transfer_latency: checker.transfer_latency(),
        messages: MessageCounts { sent: c.messages_sent, delivered: c.messages_delivered, dropped: c.messages_dropped() },
        blocks: engine.chain().height(),
        txs_verified_inputs: engine.chain().stats().inputs_verified,
        sim_time_s: engine.now().as_secs_f64(),
        wall_time_s,
        replay_command: format!("sparksim run {path} --seed {seed}"),
        expected_sometimes: s.expect_sometimes.iter().cloned().collect(),
        checker: Some(checker.report()),
        adversary: adversary_report(s, checker),
        swarm: None,
        fault_mix: fault_mix(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use reference_node::node::{Ctx, Input};

    /// A node with a bug: it panics when it starts.
    struct Panicky;
    impl Node for Panicky {
        fn handle(&mut self, _ctx: &mut Ctx<'_>, input: Input) {
            if matches!(input, Input::Start) {
                panic!("deliberate bug in a node");
            }
        }
        fn crash(&mut self) {}
    }

    #[test]
    fn a_node_panic_is_a_finding_not_a_harness_crash() {
        let config = EngineConfig { block_interval: None, ..EngineConfig::default() };
        let mut engine: Engine<Panicky, Chain> = Engine::new(1, config, Chain::new());
        engine.add_node(NodeId::Operator(OperatorId(0)), Panicky);
        let outcome = step_or_finding(&mut engine);
        assert_eq!(outcome.err().as_deref(), Some("deliberate bug in a node"));
    }

    #[test]
    fn liveness_deadline_is_the_budget_after_the_horizon_capped_by_max_sim_time() {
        let parse = |extra: &str| Scenario::parse("t.toml", &format!("name = \"t\"\ndescription = \"d\"\n{extra}")).expect("parses");
        let h = Micros::from_secs(1000);
        assert_eq!(liveness_deadline(&parse(""), h), Micros::from_secs(2_000_000), "no budget: max_sim_time");
        assert_eq!(liveness_deadline(&parse("[budgets]\nliveness_s = 300\n"), h), Micros::from_secs(1300));
        assert_eq!(liveness_deadline(&parse("[budgets]\nliveness_s = 300\n[run]\nmax_sim_time_s = 1100\n"), h), Micros::from_secs(1100));
    }

    #[test]
    fn a_run_past_max_events_is_an_event_budget_finding_not_a_hang() {
        let text = "name = \"t\"\ndescription = \"d\"\n[run]\nmax_events = 2000\n[expect]\noutcome = \"violation\"\ninvariant = \"event-budget\"\n";
        let s = Scenario::parse("t.toml", text).expect("parses");
        let r = run(&s, "t.toml", 1, &RunOptions { keep_digest_log: false, timeline_capacity: None });
        assert_eq!(r.report.events, 2000, "stops at the budget");
        let v = r.report.violations.iter().find(|v| v.invariant == "event-budget").expect("event-budget finding");
        assert!(v.message.contains("busiest node"), "{}", v.message);
        assert!(r.report.matched_expectation);
    }

    #[test]
    fn horizon_follows_the_last_command_and_faults() {
        let s = Scenario::parse("t.toml", "name = \"t\"\ndescription = \"d\"\n[run]\nsettle_s = 10.0\n[[fault]]\nkind = \"crash\"\nnode = \"operator:1\"\nat_s = 50.0\nrestart_after_s = 20.0\n").expect("parses");
        assert_eq!(horizon(&s, Micros::from_secs(30)), Micros::from_secs(80));
        assert_eq!(horizon(&s, Micros::from_secs(100)), Micros::from_secs(110));
    }
}
