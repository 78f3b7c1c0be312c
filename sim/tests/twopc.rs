//! Two-phase commit mode (spark-protocol §4.10, `operator/twopc.rs`): the commit path, the
//! rollback path, presumed abort after a coordinator crash, reconciliation of a participant that
//! missed the COMMIT, and forged or malformed consensus messages rejected without a state
//! change. Each drives the real engine over `scenarios/two-phase.toml` (or its fault variants)
//! and looks at the operators' `FlowExecution` rows.
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use reference_node::consensus::{FlowDecision, FlowId, FlowRole, FlowRow, FlowStatus};
use reference_node::msg::{GossipBody, GossipId, InternalReply, Msg, ReqId};
use reference_node::node::{Ctx, Input, Node, Output};
use reference_node::observe::Observation;
use reference_node::types::{Micros, NodeId, OperatorId};
use sparksim::runner::{self, RunOptions, SimEngine};
use sparksim::scenario::Scenario;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn load(rel: &str) -> Scenario {
    let path = PathBuf::from(format!("{}/../scenarios/{rel}", env!("CARGO_MANIFEST_DIR")));
    Scenario::load(path).unwrap_or_else(|e| panic!("{e}"))
}

/// `load` without the unilateral exit: its timelocks make up most of a debug run (days of
/// simulated blocks), and the exit never touches the consensus engine.
fn load_without_exits(rel: &str) -> Scenario {
    let mut s = load(rel);
    s.workload.exits = 0;
    s
}

const OP: fn(u16) -> NodeId = |i| NodeId::Operator(OperatorId(i));

/// Every operator's row for every flow: flow → operator → row.
fn flows(engine: &SimEngine) -> BTreeMap<FlowId, BTreeMap<OperatorId, FlowRow>> {
    let mut out: BTreeMap<FlowId, BTreeMap<OperatorId, FlowRow>> = BTreeMap::new();
    for (_, a) in engine.nodes() {
        let Some(op) = a.as_operator() else { continue };
        for (f, r) in &op.db().flows {
            out.entry(*f).or_default().insert(op.id(), r.clone());
        }
    }
    out
}

fn statuses(rows: &BTreeMap<OperatorId, FlowRow>) -> Vec<FlowStatus> {
    rows.values().map(|r| r.status).collect()
}

/// Step until `pred` holds (or panic after `limit` simulated seconds).
fn step_until(engine: &mut SimEngine, limit: u64, mut pred: impl FnMut(&SimEngine) -> bool) {
    while !pred(engine) {
        let rec = engine.step().expect("the run ended before the condition held");
        assert!(rec.time < Micros::from_secs(limit), "condition not reached by {limit} s");
    }
}

fn op_flow(engine: &SimEngine, op: u16, pred: impl Fn(&FlowRow) -> bool) -> Option<FlowId> {
    let o = engine.node(OP(op))?.as_operator()?;
    o.db().flows.iter().find(|(_, r)| pred(r)).map(|(f, _)| *f)
}

#[test]
fn commit_path_every_send_and_settle_commits_on_every_operator() {
    let s = load_without_exits("two-phase.toml");
    let r = runner::run(&s, &s.file, 1, &RunOptions::default()).report;
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(r.transfers_sent >= 10 && r.transfers_claimed == r.transfers_sent, "sent {} claimed {}", r.transfers_sent, r.transfers_claimed);
    let mut engine = runner::build(&s, 1, false).engine;
    engine.run_until(Micros::from_secs(2_400));
    let all = flows(&engine);
    let coordinated: Vec<_> = all.iter().filter(|(_, rows)| rows.values().any(|r| r.role == FlowRole::Coordinator)).collect();
    // One flow per send and at least one per claim.
    assert!(coordinated.len() as u64 >= 2 * r.transfers_sent, "{} flows for {} transfers", coordinated.len(), r.transfers_sent);
    let sends = coordinated.iter().filter(|(_, rows)| rows.values().any(|r| matches!(r.commit, FlowDecision::SettleSender { .. }))).count();
    let settles = coordinated.iter().filter(|(_, rows)| rows.values().any(|r| matches!(r.commit, FlowDecision::ReceiverCommit { .. }))).count();
    assert!(sends > 0 && settles > 0, "sends {sends} settles {settles}");
    for (flow, rows) in coordinated {
        assert_eq!(rows.len(), 5, "{flow}: a row on the coordinator and each of 4 participants");
        assert!(statuses(rows).iter().all(|s| *s == FlowStatus::Committed), "{flow}: {:?}", statuses(rows));
    }
}

#[test]
fn rollback_path_a_participant_cut_off_during_prepare_rolls_back_everywhere() {
    let s = load_without_exits("consensus/participant-partition-two-phase.toml");
    let mut rolled_back = 0;
    for seed in 1..=3 {
        let r = runner::run(&s, &s.file, seed, &RunOptions::default()).report;
        assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
        let mut engine = runner::build(&s, seed, false).engine;
        engine.run_until(Micros::from_secs(3_000));
        for (flow, rows) in flows(&engine) {
            let st = statuses(&rows);
            assert!(st.iter().all(|x| *x == st[0]) && st[0] != FlowStatus::InFlight, "seed {seed} {flow}: {st:?}");
            if st[0] == FlowStatus::RolledBack && rows.values().any(|r| r.role == FlowRole::Coordinator) {
                assert_eq!(rows.len(), 5, "seed {seed} {flow}: the isolated participant keeps a row too");
                rolled_back += 1;
            }
        }
    }
    assert!(rolled_back > 0, "no flow was rolled back: the partition did not hit a Prepare");
}

#[test]
fn presumed_abort_after_the_coordinator_crashes_between_prepare_and_commit() {
    let mut s = load_without_exits("two-phase.toml");
    // `protocol.flow_stale_s`: a 20 s presumed-abort age instead of the default 60 s.
    s.protocol.flow_stale = Micros::from_secs(20);
    let mut engine = runner::build(&s, 1, false).engine;
    // The first flow operator:0 coordinates, once some participant has prepared it.
    let mut target = None;
    step_until(&mut engine, 2_400, |e| {
        let Some(f) = op_flow(e, 0, |r| r.role == FlowRole::Coordinator && r.status == FlowStatus::InFlight) else { return false };
        let prepared = (1..5).any(|p| e.node(OP(p)).and_then(|a| a.as_operator()).is_some_and(|o| o.db().flows.contains_key(&f)));
        target = Some(f);
        prepared
    });
    let flow = target.expect("a flow in flight");
    let now = engine.now();
    engine.schedule_crash(now, OP(0));
    engine.schedule_restart(now + Micros::from_secs(10), OP(0));
    let mut swept = None;
    while let Some(rec) = engine.step() {
        if rec.observations.iter().any(|o| matches!(o, Observation::Rejected { reason, .. } if reason.contains(&flow.to_string()) && reason.contains("presumed abort"))) {
            swept = swept.or(Some(rec.time));
        }
        if rec.time > now + Micros::from_secs(300) {
            break;
        }
    }
    let swept = swept.unwrap_or_else(|| panic!("{flow} was not swept by the restarted coordinator"));
    // Restart after 10 s, then one flow_stale (20 s): well before the default 60 s would allow.
    assert!(swept < now + Micros::from_secs(45), "{flow} swept {} s after the crash: flow_stale_s not applied", (swept.0 - now.0) / 1_000_000);
    let rows = &flows(&engine)[&flow];
    assert_eq!(rows.len(), 5, "{flow}: {rows:?}");
    assert!(statuses(rows).iter().all(|s| *s == FlowStatus::RolledBack), "{flow}: {:?}", statuses(rows));
}

#[test]
fn a_participant_that_missed_the_commit_reconciles_with_the_coordinator() {
    let mut s = load("two-phase.toml");
    // Gossip is never retried within the test: only reconciliation can deliver the decision.
    s.protocol.gossip_retry = Micros::from_secs(1_000_000);
    let mut engine = runner::build(&s, 1, false).engine;
    let mut target = None;
    step_until(&mut engine, 2_400, |e| {
        let Some(f) = op_flow(e, 0, |r| r.role == FlowRole::Coordinator && r.status == FlowStatus::Committed) else { return false };
        let waiting = e.node(OP(4)).and_then(|a| a.as_operator()).is_some_and(|o| o.db().flows.get(&f).is_some_and(|r| r.status == FlowStatus::InFlight));
        target = Some(f);
        waiting
    });
    let flow = target.expect("a committed flow");
    let now = engine.now();
    // operator:4 is down when the COMMIT gossip arrives and comes back 5 s later.
    engine.schedule_crash(now, OP(4));
    engine.schedule_restart(now + Micros::from_secs(5), OP(4));
    engine.run_until(now + Micros::from_secs(300));
    let rows = &flows(&engine)[&flow];
    assert_eq!(rows[&OperatorId(4)].status, FlowStatus::Committed, "operator:4 did not reconcile {flow}");
    // The coordinator's gossip row still lacks operator:4's receipt: the query did it.
    let coord = engine.node(OP(0)).and_then(|a| a.as_operator()).expect("operator:0");
    let undelivered = coord.db().gossip_out.values().any(|g| g.body == GossipBody::ConsensusCommit { flow } && !g.receipts.contains(&OperatorId(4)));
    assert!(undelivered, "the COMMIT gossip reached operator:4 after all; the test did not exercise reconciliation");
}

/// Hand one message straight to an operator; its outputs are returned, not delivered.
fn deliver(engine: &mut SimEngine, to: u16, from: NodeId, msg: Msg) -> Vec<Output> {
    let now = engine.now();
    let actor = engine.node_mut(OP(to)).expect("operator");
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut ctx = Ctx::new(now, OP(to), &mut rng);
    actor.handle(&mut ctx, Input::Message { from, msg });
    ctx.into_outputs()
}

#[test]
fn forged_and_malformed_consensus_messages_are_rejected_without_a_state_change() {
    let s = load("two-phase.toml");
    let mut engine = runner::build(&s, 1, false).engine;
    // A flow of operator:0 that operator:1 has prepared but not yet seen decided.
    step_until(&mut engine, 2_400, |e| op_flow(e, 1, |r| r.role == FlowRole::Participant && r.status == FlowStatus::InFlight).is_some());
    let flow = op_flow(&engine, 1, |r| r.role == FlowRole::Participant && r.status == FlowStatus::InFlight).expect("prepared flow");
    assert_eq!(flow.coordinator, OperatorId(0));
    let snapshot = |e: &SimEngine| {
        let o = e.node(OP(1)).and_then(|a| a.as_operator()).expect("operator:1");
        (o.store_commits(), o.db().flows.clone(), o.db().transfers.clone(), o.db().keyshares.clone())
    };
    let before = snapshot(&engine);
    let row = before.1[&flow].clone();
    let other = match row.rollback {
        FlowDecision::CancelTransfer { transfer } => FlowDecision::SettleSender { transfer },
        FlowDecision::ReceiverRollback { transfer, attempt } => FlowDecision::ReceiverCommit { transfer, attempt },
        d => d,
    };
    let gossip = |origin: u16, seq: u64, body: GossipBody| Msg::Gossip { id: GossipId { origin: OperatorId(origin), seq }, body: Box::new(body) };
    let cases: Vec<(&str, NodeId, Msg)> = vec![
        ("COMMIT from an operator that is not the coordinator", OP(2), gossip(2, 900, GossipBody::ConsensusCommit { flow })),
        ("ROLLBACK from an operator that is not the coordinator", OP(2), gossip(2, 901, GossipBody::ConsensusRollback { flow, decision: row.rollback })),
        ("ROLLBACK naming another effect than the one prepared", OP(0), gossip(0, 902, GossipBody::ConsensusRollback { flow, decision: other })),
        ("COMMIT of a flow never prepared here", OP(0), gossip(0, 903, GossipBody::ConsensusCommit { flow: FlowId { coordinator: OperatorId(0), seq: u64::MAX } })),
        ("a forged presumed-abort answer to a query", OP(2), Msg::InternalReply { req: ReqId { session: u64::MAX, phase: 0 }, body: Box::new(Ok(InternalReply::FlowOutcome { flow, status: None })) }),
        ("a forged COMMITTED answer to a query", OP(3), Msg::InternalReply { req: ReqId { session: u64::MAX, phase: 0 }, body: Box::new(Ok(InternalReply::FlowOutcome { flow, status: Some(FlowStatus::Committed) })) }),
        ("gossip whose id names another origin than its sender", OP(2), gossip(0, 904, GossipBody::ConsensusCommit { flow })),
    ];
    for (what, from, msg) in cases {
        let out = deliver(&mut engine, 1, from, msg);
        assert!(snapshot(&engine) == before, "{what}: operator:1's state changed");
        // A gossip the operator could not apply is never acknowledged as applied.
        for o in &out {
            if let Output::Send { msg: Msg::GossipAck { applied, .. }, .. } = o {
                assert!(applied.is_err(), "{what}: acknowledged as applied");
            }
        }
    }
    // The genuine decision still goes through afterwards.
    engine.run_until(Micros::from_secs(2_400));
    let rows = &flows(&engine)[&flow];
    assert!(statuses(rows).iter().all(|s| *s == FlowStatus::Committed), "{flow}: {:?}", statuses(rows));
}

/// `scenarios/consensus/` holds every scenario in both modes, documented, and parsing to the mode
/// its name says (so one campaign over the directory compares them).
#[test]
fn consensus_library_holds_each_scenario_in_both_modes() {
    use reference_node::consensus::Consensus;
    let dir = PathBuf::from(format!("{}/../scenarios/consensus", env!("CARGO_MANIFEST_DIR")));
    let mut modes: BTreeMap<String, Vec<Consensus>> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("scenarios/consensus") {
        let p = entry.expect("entry").path();
        let name = p.file_stem().and_then(|n| n.to_str()).expect("name").to_owned();
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(text.starts_with('#') && text.contains("Tests:") && text.contains("Should happen:"), "{name}: header comment");
        let s = Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
        let (base, mode) = match name.strip_suffix("-two-phase") {
            Some(b) => (b.to_owned(), Consensus::TwoPhase),
            None => (name.strip_suffix("-gossip").unwrap_or_else(|| panic!("{name}: -gossip or -two-phase")).to_owned(), Consensus::Gossip),
        };
        assert_eq!(s.protocol.consensus, mode, "{name}");
        modes.entry(base).or_default().push(mode);
    }
    assert!(modes.len() >= 5, "{modes:?}");
    for (base, m) in modes {
        assert_eq!(m.len(), 2, "{base}: both modes");
    }
}

/// buildonspark/spark#24 (`claim_settle_split`): the gossip mode's I-3 cannot happen in
/// two_phase mode, on the same seed and workload.
#[test]
fn claim_settle_split_is_found_in_gossip_mode_and_impossible_in_two_phase_mode() {
    // Four transfers and a 60 s liveness phase are enough for the hazard (debug-mode CI time).
    let smaller = |rel: &str| {
        let mut s = load(rel);
        s.workload.transfers = 4;
        s.budgets.liveness = Some(Micros::from_secs(60));
        s
    };
    let gossip = smaller("consensus/claim-settle-split-gossip.toml");
    let two_phase = smaller("consensus/claim-settle-split-two-phase.toml");
    let r = runner::run(&gossip, &gossip.file, 1, &RunOptions::default()).report;
    assert!(r.violations.iter().any(|v| v.invariant == "I-3"), "gossip mode: {:?}", r.violations);
    let r = runner::run(&two_phase, &two_phase.file, 1, &RunOptions::default()).report;
    assert!(r.violations.is_empty(), "two_phase mode: {:?}", r.violations);
    assert!(r.transfers_sent >= 3 && r.transfers_claimed == r.transfers_sent, "sent {} claimed {}", r.transfers_sent, r.transfers_claimed);
}
