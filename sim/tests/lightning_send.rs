//! Lightning send (spark-protocol §4.8) end to end through the library: the happy path (HTLC
//! refunds, the SSP pays, provides the preimage and claims below the HTLC refund), every
//! payment failing (the leaves come back), and the SSP crashing between paying and providing
//! the preimage on a lossy network. Each checks L-6 and I-13 were evaluated, not only passed.
use reference_node::observe::Observation;
use reference_node::tx::timelock::blocks;
use reference_node::types::{Micros, TransferId, WalletId};
use sparksim::report::RunReport;
use sparksim::runner::{self, RunOptions};
use sparksim::scenario::Scenario;
use std::path::PathBuf;

fn load(rel: &str) -> Scenario {
    let p = PathBuf::from(format!("{}/../scenarios/{rel}", env!("CARGO_MANIFEST_DIR")));
    Scenario::load(p).unwrap_or_else(|e| panic!("{e}"))
}

fn run(s: &Scenario) -> RunReport {
    runner::run(s, &s.file, 1, &RunOptions::default()).report
}

fn summary(r: &RunReport) -> String {
    let v: Vec<String> = r.violations.iter().map(|v| format!("{}: {}", v.invariant, v.message)).collect();
    format!("sent {} claimed {} returned {}; violations: {v:?}", r.transfers_sent, r.transfers_claimed, r.transfers_returned)
}

fn checks(r: &RunReport, id: &str) -> u64 {
    r.checker.as_ref().and_then(|c| c.invariants.iter().find(|i| i.id == id)).map_or(0, |i| i.checks)
}

fn sometimes(r: &RunReport, name: &str) -> u64 {
    r.checker.as_ref().and_then(|c| c.sometimes.get(name).copied()).unwrap_or(0)
}

/// Every observation of the run (the engine alone, no checker).
fn observations(s: &Scenario) -> Vec<Observation> {
    let mut engine = runner::build(s, 1, false).engine;
    let mut out = Vec::new();
    while let Some(rec) = engine.step() {
        out.extend(rec.observations.iter().cloned());
        if rec.time > Micros::from_secs(2400) {
            break;
        }
    }
    out
}

fn locked(obs: &[Observation]) -> Vec<(WalletId, TransferId, u64, u64)> {
    obs.iter().filter_map(|o| if let Observation::LightningSendLocked { wallet, transfer, amount_sats, fee_sats, .. } = o { Some((*wallet, *transfer, *amount_sats, *fee_sats)) } else { None }).collect()
}

#[test]
fn happy_path_the_ssp_pays_provides_and_claims_below_the_htlc_refund() {
    let s = load("lightning-send.toml");
    let r = run(&s);
    assert!(r.violations.is_empty(), "{}", summary(&r));
    assert_eq!((r.transfers_sent, r.transfers_claimed, r.transfers_returned), (2, 2, 0), "{}", summary(&r));
    assert_eq!(sometimes(&r, "lightning-send-settled"), 2);
    assert!(checks(&r, "L-6") > 0 && checks(&r, "I-13") > 0, "L-6 and I-13 must be evaluated");
    let obs = observations(&s);
    let l = locked(&obs);
    // 0.25% + 10 sats: 40 000 → 110, 20 000 → 60; the leaf carries amount + fee exactly.
    assert_eq!(l.iter().map(|x| (x.0, x.2, x.3)).collect::<Vec<_>>(), vec![(WalletId(0), 40_000, 110), (WalletId(2), 20_000, 60)]);
    let ssp = WalletId(s.topology.wallets);
    for (_, t, amount, fee) in &l {
        assert!(obs.iter().any(|o| matches!(o, Observation::TransferSent { transfer, value_sats, .. } if transfer == t && *value_sats == amount + fee)));
        assert!(obs.iter().any(|o| matches!(o, Observation::TransferClaimed { transfer, receiver, .. } if transfer == t && *receiver == ssp)), "the SSP claimed {t}");
    }
    // What the SSP holds for each leaf: the HTLC refunds (1970 / 1985) and its own claimed
    // refunds at the ordinary decrement (1900 / 1950), which mature first.
    let mut csvs: Vec<u16> = obs.iter().filter_map(|o| if let Observation::RefundSigned { tx, .. } = o { Some(blocks(tx.input[0].sequence).0) } else { None }).collect();
    csvs.sort_unstable();
    csvs.dedup();
    for c in [1900, 1950, 1970, 1985] {
        assert!(csvs.contains(&c), "no refund with CSV {c} obtained: {csvs:?}");
    }
    // A paid invoice's preimage reached the operators after the payment, the sender after that.
    let pos = |f: &dyn Fn(&Observation) -> bool| obs.iter().position(f).expect("observed");
    let paid = pos(&|o| matches!(o, Observation::LightningSendPaid { .. }));
    let provided = pos(&|o| matches!(o, Observation::PreimageProvided { .. }));
    let done = pos(&|o| matches!(o, Observation::LightningSendDone { settled: true, .. }));
    assert!(paid < provided && provided < done);
}

#[test]
fn failed_payments_return_the_leaves_to_their_senders() {
    let s = load("lightning-send-fails.toml");
    let r = run(&s);
    assert!(r.violations.is_empty(), "{}", summary(&r));
    assert_eq!((r.transfers_sent, r.transfers_claimed, r.transfers_returned), (0, 0, 2), "{}", summary(&r));
    assert_eq!(sometimes(&r, "lightning-send-returned"), 2);
    assert_eq!(sometimes(&r, "lightning-send-settled"), 0);
    assert!(checks(&r, "L-6") > 0);
    let obs = observations(&s);
    assert_eq!(locked(&obs).len(), 2, "both transfers were locked before the payments failed");
    assert_eq!(obs.iter().filter(|o| matches!(o, Observation::LightningSendPaymentFailed { .. })).count(), 2);
    assert!(!obs.iter().any(|o| matches!(o, Observation::PreimageProvided { .. } | Observation::LightningSendPaid { .. })));
}

#[test]
fn ssp_crash_between_paying_and_providing_still_settles() {
    let s = load("faults/lightning-send-ssp-crash.toml");
    let r = run(&s);
    assert!(r.violations.is_empty(), "{}", summary(&r));
    assert_eq!((r.transfers_sent, r.transfers_claimed), (2, 2), "{}", summary(&r));
    assert_eq!(sometimes(&r, "lightning-send-settled"), 2);
}

/// The SSP is down past the transfer's expiry: the coordinator returns the locked transfer at
/// the first block after it, and the restarted SSP never pays.
#[test]
fn a_send_the_ssp_never_pays_is_returned_after_its_expiry() {
    let s = load("faults/lightning-send-ssp-down.toml");
    let r = run(&s);
    assert!(r.violations.is_empty(), "{}", summary(&r));
    assert_eq!((r.transfers_sent, r.transfers_claimed, r.transfers_returned), (0, 0, 1), "{}", summary(&r));
    assert_eq!(sometimes(&r, "lightning-send-returned"), 1);
    let mut engine = runner::build(&s, 1, false).engine;
    let (mut locked_at, mut returned_at) = (None, None);
    while let Some(rec) = engine.step() {
        for o in &rec.observations {
            match o {
                Observation::LightningSendLocked { .. } => locked_at = Some(rec.time),
                Observation::LightningSendDone { settled: false, .. } => returned_at = Some(rec.time),
                Observation::LightningSendPaid { .. } => panic!("the SSP paid a returned send"),
                _ => {}
            }
        }
        if returned_at.is_some() {
            break;
        }
    }
    let (l, b) = (locked_at.expect("locked"), returned_at.expect("returned"));
    assert!(b > l + reference_node::wallet::lightning_send::LIGHTNING_SEND_EXPIRY, "returned at {b:?}, locked at {l:?}: not before the expiry");
}
