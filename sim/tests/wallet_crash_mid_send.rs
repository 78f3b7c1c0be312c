//! A wallet that crashes after handing a send's package to the coordinator must learn what became
//! of it when it comes back: the leaf is either gone (sent) or available again (returned), never
//! `Sending` for good. Before the wallet resolved its interrupted send, the leaf stayed `Sending`
//! and the sender could neither spend nor exit it.
use reference_node::types::{Micros, NodeId, WalletId};
use reference_node::wallet::LeafState;
use sparksim::checker::Checker;
use sparksim::runner;
use sparksim::scenario::Scenario;

const SCENARIO: &str = r#"
name = "wallet-crash-mid-send"
description = "wallet:0 crashes once its send's package is on its way to the coordinator"
[topology]
operators = 5
threshold = 3
wallets = 3
[workload]
deposits_per_wallet = 1
deposit_sats = [100000]
transfers = 6
transfer_start_s = 1800.0
transfer_interval_s = 1.0
exits = 0
"#;

fn sending_leaves(engine: &sparksim::runner::SimEngine, w: WalletId) -> usize {
    let wallet = engine.node(NodeId::Wallet(w)).and_then(|a| a.as_wallet()).expect("wallet");
    wallet.leaves().values().filter(|l| matches!(l.state, LeafState::Sending(_))).count()
}

#[test]
fn a_wallet_crashing_with_a_send_at_the_coordinator_resolves_it_after_restart() {
    // The quickstart's shape without its exit (an exit waits out a 2000-block CSV: slow to reach
    // quiescence and beside the point here).
    let s = Scenario::parse("wallet-crash-mid-send (inline)", SCENARIO).unwrap_or_else(|e| panic!("{e}"));
    let mut engine = runner::build(&s, 1, false).engine;
    let mut checker = Checker::new(s.topology.operators, s.topology.threshold, None);
    let sender = WalletId(0);
    let mut crashed_at = None;
    let mut violations = Vec::new();
    let mut last = 0;
    while let Some(rec) = engine.step() {
        last = rec.index;
        violations.extend(checker.after_event(&engine, &rec));
        if crashed_at.is_none() && sending_leaves(&engine, sender) > 0 {
            // The package is on its way to the coordinator: crash now, come back 5 s later.
            let now = engine.now();
            engine.schedule_crash(now, NodeId::Wallet(sender));
            engine.schedule_restart(now + Micros::from_secs(5), NodeId::Wallet(sender));
            crashed_at = Some(now);
        }
        // Stop once the system is quiet again well after the restart (as the runner's liveness
        // phase does), or at the scenario's simulated-time cap.
        let settled = crashed_at.is_some_and(|t| engine.now() > t + Micros::from_secs(600)) && sparksim::checker::is_quiet(&engine);
        if settled || engine.now() >= s.run.max_sim_time {
            break;
        }
    }
    let crashed_at = crashed_at.expect("wallet:0 never started a send");
    assert!(engine.now() > crashed_at + Micros::from_secs(600), "the run ended too early to judge");
    // The checker's I-9 names a stuck sender (a leaf another owner holds, still `Sending` here).
    violations.extend(checker.at_end(&engine, last));
    let v: Vec<String> = violations.iter().map(|v| format!("{}: {}", v.invariant, v.message)).collect();
    assert!(v.is_empty(), "{v:?}");
    assert_eq!(sending_leaves(&engine, sender), 0, "a leaf of wallet:0 is still Sending long after its restart");
}
