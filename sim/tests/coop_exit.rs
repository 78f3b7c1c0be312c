//! Cooperative exit (spark-protocol §3.7, §4.5): the happy path and both failure branches, each
//! ending with no one losing money (L-5), and the scenario under faults. Runs the library, so it
//! can follow the observations and look at the wallets at the end.
use reference_node::observe::Observation;
use reference_node::types::{Micros, WalletId};
use sparksim::report::RunReport;
use sparksim::runner::{self, RunOptions};
use sparksim::scenario::Scenario;
use std::path::PathBuf;

fn load(rel: &str) -> Scenario {
    let p = PathBuf::from(format!("{}/../scenarios/{rel}", env!("CARGO_MANIFEST_DIR")));
    Scenario::load(p).unwrap_or_else(|e| panic!("{e}"))
}

fn run(s: &Scenario, seed: u64) -> RunReport {
    runner::run(s, &s.file, seed, &RunOptions::default()).report
}

fn summary(r: &RunReport) -> String {
    let v: Vec<String> = r.violations.iter().map(|v| format!("{}: {}", v.invariant, v.message)).collect();
    format!("sent {} claimed {} returned {} exits {}; violations: {v:?}", r.transfers_sent, r.transfers_claimed, r.transfers_returned, r.exits_confirmed)
}

fn l5_checks(r: &RunReport) -> u64 {
    r.checker.as_ref().and_then(|c| c.invariants.iter().find(|i| i.id == "L-5")).map_or(0, |i| i.checks)
}

/// Every observation of the run up to `until`, with its time (the engine alone, no checker), and
/// the times blocks were mined.
fn observations(s: &Scenario, seed: u64, until: Micros) -> (Vec<(Micros, Observation)>, Vec<Micros>) {
    let mut engine = runner::build(s, seed, false).engine;
    let (mut out, mut blocks) = (Vec::new(), Vec::new());
    while let Some(rec) = engine.step() {
        if rec.description.starts_with("block ") {
            blocks.push(rec.time);
        }
        out.extend(rec.observations.iter().cloned().map(|o| (rec.time, o)));
        if rec.time > until {
            break;
        }
    }
    (out, blocks)
}

fn started(obs: &[(Micros, Observation)]) -> Vec<(WalletId, u64, u64)> {
    obs.iter().filter_map(|(_, o)| if let Observation::CoopExitStarted { user, value_sats, payout_sats, .. } = o { Some((*user, *value_sats, *payout_sats)) } else { None }).collect()
}

#[test]
fn happy_path_pays_the_user_and_the_ssp_claims_after_six_confirmations() {
    let s = load("coop-exit.toml");
    let r = run(&s, 1);
    assert!(r.violations.is_empty(), "{}", summary(&r));
    assert_eq!(l5_checks(&r), 1, "L-5 is evaluated once the run has a coop exit");
    let (obs, blocks) = observations(&s, 1, Micros::from_secs(3 * 3600));
    let st = started(&obs);
    assert_eq!(st.len(), 1, "{st:?}");
    let (user, value, payout) = st[0];
    assert_eq!(payout, value - 1_500, "the published fee is 1 500 sats");
    let paid: Vec<_> = obs.iter().filter_map(|(t, o)| if let Observation::CoopExitPaid { user: u, payout_sats, .. } = o { Some((*t, *u, *payout_sats)) } else { None }).collect();
    assert_eq!(paid.len(), 1, "{paid:?}");
    assert_eq!((paid[0].1, paid[0].2), (user, payout));
    // The SSP claims only after the 6th confirmation: 5 more blocks after the payout's block.
    let ssp = WalletId(s.topology.wallets);
    let claimed = obs.iter().find_map(|(t, o)| matches!(o, Observation::TransferClaimed { receiver, .. } if *receiver == ssp).then_some(*t)).expect("the SSP claimed the leaf");
    let between = blocks.iter().filter(|t| **t > paid[0].0 && **t <= claimed).count();
    assert!(between >= 5, "claimed {between} blocks after the payout confirmed");
}

/// The SSP never broadcasts: no payout, the operators return the transfer at its expiry, the user
/// exits the leaf alone with its previous refund, and the SSP's connector refund is refused by L1
/// for its missing connector (input 1), not for anything else.
#[test]
fn ssp_that_never_broadcasts_leaves_the_user_its_leaf() {
    let s = load("coop-exit-ssp-never-broadcasts.toml");
    let r = run(&s, 1);
    assert!(r.violations.is_empty(), "{}", summary(&r));
    assert_eq!(l5_checks(&r), 1);
    assert_eq!((r.transfers_returned, r.exits_confirmed), (1, 1), "{}", summary(&r));
    let (obs, _) = observations(&s, 1, Micros::from_secs(14 * 86_400));
    let st = started(&obs);
    assert_eq!(st.len(), 1, "{st:?}");
    let user = st[0].0;
    let leaf = obs.iter().find_map(|(_, o)| if let Observation::CoopExitStarted { leaf, .. } = o { Some(*leaf) } else { None }).expect("a coop exit");
    assert!(!obs.iter().any(|(_, o)| matches!(o, Observation::CoopExitPaid { .. })), "the SSP never paid");
    assert!(obs.iter().any(|(_, o)| matches!(o, Observation::TransferReturned { sender, .. } if *sender == user)));
    assert!(obs.iter().any(|(_, o)| matches!(o, Observation::ExitConfirmed { wallet, leaf: l, .. } if *wallet == user && *l == leaf)), "the user exited its leaf");
    let refused: Vec<&String> = obs.iter().filter_map(|(_, o)| if let Observation::Rejected { what, reason } = o { (what.contains("broadcast") && what.starts_with(&format!("wallet:{}", s.topology.wallets))).then_some(reason) } else { None }).collect();
    assert!(refused.iter().any(|r| r.contains("input 1 spends unknown")), "the SSP's connector refund was not refused for its connector: {refused:?}");
}

/// The user stalls after the SSP broadcast (never releases its key tweak): the user is paid, the
/// operators never tweak, and the SSP exits the leaf on L1 with its connector refund.
#[test]
fn user_that_stalls_is_paid_and_the_ssp_exits_with_its_connector_refund() {
    let s = load("coop-exit-user-stalls.toml");
    let r = run(&s, 1);
    assert!(r.violations.is_empty(), "{}", summary(&r));
    assert_eq!(l5_checks(&r), 1);
    let (obs, _) = observations(&s, 1, Micros::from_secs(13 * 86_400));
    let leaf = obs.iter().find_map(|(_, o)| if let Observation::CoopExitStarted { leaf, .. } = o { Some(*leaf) } else { None }).expect("a coop exit");
    let ssp = WalletId(s.topology.wallets);
    assert!(obs.iter().any(|(_, o)| matches!(o, Observation::CoopExitPaid { leaf: l, .. } if *l == leaf)), "the user was paid");
    assert!(!obs.iter().any(|(_, o)| matches!(o, Observation::TransferClaimed { receiver, .. } if *receiver == ssp)), "no tweak, so no claim");
    assert!(obs.iter().any(|(_, o)| matches!(o, Observation::ExitConfirmed { wallet, leaf: l, .. } if *wallet == ssp && *l == leaf)), "the SSP exited the leaf with its connector refund");
}

/// Under loss, a coordinator crash mid-exit and a reorg of the exit tx before its 6th
/// confirmation: the reorg is seen (operators forget the confirmation), the SSP rebroadcasts, and
/// the exit still completes with the SSP's claim; L-5 holds.
#[test]
fn coop_exit_survives_loss_a_coordinator_crash_and_a_reorg_of_the_exit_tx() {
    let s = load("coop-exit-under-faults.toml");
    let r = run(&s, 1);
    assert!(r.violations.is_empty(), "{}", summary(&r));
    assert_eq!(l5_checks(&r), 1);
    let (obs, _) = observations(&s, 1, Micros::from_secs(3 * 3600));
    assert!(obs.iter().any(|(_, o)| matches!(o, Observation::Rejected { what, reason } if what.contains("coop exit") && reason.contains("reorged out"))), "the reorg did not take the exit tx's block");
    assert!(obs.iter().any(|(_, o)| matches!(o, Observation::CoopExitPaid { .. })));
    let ssp = WalletId(s.topology.wallets);
    assert!(obs.iter().any(|(_, o)| matches!(o, Observation::TransferClaimed { receiver, .. } if *receiver == ssp)), "the SSP claimed");
}
