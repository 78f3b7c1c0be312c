//! Two-phase commit mode and the sender-tweak holds (`operator/tweak_hold.rs`): a swap leg's or
//! a cooperative exit's send commits through the 2PC engine, but its sender tweak waits for the
//! same release as in gossip mode (the swap's settle; the user's finalize and 6 confirmations of
//! the exit tx). Each test fails if two_phase applies a held tweak at COMMIT.
use reference_node::consensus::{Consensus, FlowDecision, FlowRole, FlowStatus};
use reference_node::observe::Observation;
use reference_node::operator::store::TransferStatus;
use reference_node::operator::swap::SwapDecision;
use reference_node::types::{Micros, NodeId, OperatorId, TransferId, WalletId};
use sparksim::runner::{self, RunOptions, SimEngine};
use sparksim::scenario::Scenario;
use std::path::PathBuf;

fn load(rel: &str) -> Scenario {
    let path = PathBuf::from(format!("{}/../scenarios/{rel}", env!("CARGO_MANIFEST_DIR")));
    Scenario::load(path).unwrap_or_else(|e| panic!("{e}"))
}

fn operators(engine: &SimEngine) -> Vec<&reference_node::operator::Operator> {
    engine.nodes().filter_map(|(_, a)| a.as_operator()).collect()
}

/// The flows whose COMMIT holds `transfer`'s tweak, with every operator's status.
fn hold_flow_statuses(engine: &SimEngine, transfer: TransferId) -> Vec<(OperatorId, FlowRole, FlowStatus)> {
    let hold = FlowDecision::HoldSender { transfer };
    operators(engine).iter().flat_map(|o| o.db().flows.values().filter(|r| r.commit == hold).map(|r| (o.id(), r.role, r.status))).collect()
}

#[test]
fn swap_legs_commit_in_two_phase_mode_with_their_tweak_held_until_the_swap_settles() {
    let s = load("consensus/ssp-swap-two-phase.toml");
    assert_eq!(s.protocol.consensus, Consensus::TwoPhase);
    let r = runner::run(&s, &s.file, 1, &RunOptions::default()).report;
    assert!(r.violations.is_empty(), "{:?}", r.violations);

    let mut engine = runner::build(&s, 1, false).engine;
    let (mut primaries, mut decided) = (Vec::new(), Vec::new());
    let mut checked = 0;
    while let Some(rec) = engine.step() {
        for o in &rec.observations {
            match o {
                Observation::SwapStarted { primary, .. } => primaries.push(*primary),
                Observation::SwapDecided { primary, settled, .. } => decided.push((*primary, *settled)),
                _ => {}
            }
        }
        // While a swap is open on its coordinator, its primary's flow may be COMMITTED
        // everywhere, but no operator may hold the primary's tweak as applied.
        let open = |p: &TransferId| operators(&engine).iter().any(|o| o.db().swaps.get(p).is_some_and(|r| r.decision == SwapDecision::Open));
        for p in primaries.iter().filter(|p| open(p)) {
            let flows = hold_flow_statuses(&engine, *p);
            if flows.len() == 5 && flows.iter().all(|(_, _, st)| *st == FlowStatus::Committed) {
                for o in operators(&engine) {
                    let st = o.db().transfers.get(p).map(|t| t.status);
                    assert!(
                        matches!(st, Some(TransferStatus::SenderKeyTweakPending | TransferStatus::SenderInitiatedCoordinator)),
                        "{}: primary {p} is {st:?} before its swap was decided",
                        o.id()
                    );
                }
                checked += 1;
            }
        }
        if rec.time > Micros::from_secs(2_400) {
            break;
        }
    }
    assert!(checked > 0, "no primary's flow was seen committed before its swap was decided");
    assert_eq!(primaries.len(), 3, "{primaries:?}");
    let settled = decided.iter().filter(|(_, s)| *s).count();
    assert_eq!((settled, decided.len()), (2, 3), "two swaps settle, one is returned: {decided:?}");
    // Each settled primary's flow ended COMMITTED with a HoldSender commit on all five operators.
    for (p, _) in decided.iter().filter(|(_, s)| *s) {
        let flows = hold_flow_statuses(&engine, *p);
        assert_eq!(flows.len(), 5, "{p}: {flows:?}");
        assert!(flows.iter().all(|(_, _, st)| *st == FlowStatus::Committed), "{p}: {flows:?}");
    }
}

#[test]
fn coop_exit_in_two_phase_mode_is_tweaked_only_after_six_confirmations() {
    let mut s = load("coop-exit.toml");
    s.protocol.consensus = Consensus::TwoPhase;
    let r = runner::run(&s, &s.file, 1, &RunOptions::default()).report;
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.transfers_returned, 0, "the coop exit was returned (refused at Prepare?)");

    let mut engine = runner::build(&s, 1, false).engine;
    let ssp = WalletId(s.topology.wallets);
    let (mut paid, mut claimed, mut blocks) = (None, None, Vec::new());
    while let Some(rec) = engine.step() {
        if rec.description.starts_with("block ") {
            blocks.push(rec.time);
        }
        for o in &rec.observations {
            match o {
                Observation::CoopExitPaid { .. } => paid = paid.or(Some(rec.time)),
                Observation::TransferClaimed { receiver, .. } if *receiver == ssp => claimed = claimed.or(Some(rec.time)),
                _ => {}
            }
        }
        if rec.time > Micros::from_secs(3 * 3600) {
            break;
        }
    }
    let (paid, claimed) = (paid.expect("the payout confirmed"), claimed.expect("the SSP claimed the leaf"));
    let between = blocks.iter().filter(|t| **t > paid && **t <= claimed).count();
    assert!(between >= 5, "the SSP claimed {between} blocks after the payout confirmed (6 confirmations needed)");
    // The exit's send was a 2PC flow whose COMMIT held the tweak, committed on all five.
    let coord = engine.node(NodeId::Operator(OperatorId(0))).and_then(|a| a.as_operator()).expect("operator:0");
    let exits: Vec<TransferId> = operators(&engine).iter().flat_map(|o| o.db().coop_exits.keys().copied()).collect();
    let exit = *exits.first().expect("a coop exit row");
    let flows = hold_flow_statuses(&engine, exit);
    assert_eq!(flows.len(), 5, "{flows:?} (coordinator {})", coord.id());
    assert!(flows.iter().all(|(_, _, st)| *st == FlowStatus::Committed), "{flows:?}");
    for o in operators(&engine) {
        assert!(o.db().coop_exits.contains_key(&exit), "{} has no exit row: the Prepare must carry it", o.id());
    }
}

/// `gossip_ack_unapplied` (spark-protocol §8.2 #10): in gossip mode a FinalizeTransfer that
/// overtakes the receiver settle is acked unapplied and lost (I-12). In two_phase mode the
/// finalize is a flow decided without a vote: the participant keeps it IN_FLIGHT until it can
/// apply it, and every finalize ends COMMITTED everywhere.
#[test]
fn an_early_finalize_is_kept_and_reconciled_in_two_phase_mode_not_acked_and_lost() {
    // (The gossip side, I-12, is sim/tests/byzantine.rs's and the consensus campaign's.)
    let s = load("consensus/gossip-ack-unapplied-two-phase.toml");
    let r = runner::run(&s, &s.file, 1, &RunOptions::default()).report;
    assert!(r.violations.is_empty(), "two_phase mode: {:?}", r.violations);
    let mut engine = runner::build(&s, 1, false).engine;
    let (mut early, mut steps) = (false, 0u64);
    while let Some(rec) = engine.step() {
        // A participant holding a finalize it could not apply yet (such a row waits a whole
        // flow_stale for reconciliation, so a look every 50 events is enough).
        steps += 1;
        early |= steps % 50 == 0 && operators(&engine).iter().any(|o| o.db().flows.values().any(|f| f.role == FlowRole::Participant && matches!(f.commit, FlowDecision::FinalizeTransfer { .. }) && f.status == FlowStatus::InFlight));
        if rec.time > Micros::from_secs(2_400) {
            break;
        }
    }
    assert!(early, "no finalize overtook its receiver settle: the scenario no longer exercises the hazard");
    let mut finalizes = 0;
    for o in operators(&engine) {
        for f in o.db().flows.values().filter(|f| matches!(f.commit, FlowDecision::FinalizeTransfer { .. })) {
            assert_eq!(f.status, FlowStatus::Committed, "{}: {f:?}", o.id());
            finalizes += 1;
        }
    }
    assert!(finalizes >= 5 * r.transfers_claimed, "{finalizes} finalize rows for {} claims on 5 operators", r.transfers_claimed);
}
