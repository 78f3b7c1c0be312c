//! Each L1 fault kind: parsed from a scenario, drawn at random, and run end to end through the
//! real runner on its `scenarios/l1/` file with its outcome asserted event by event.
use super::*;
use crate::runner::{self, RunOptions, SimEngine};
use crate::scenario::Scenario;
use rand_core::SeedableRng;
use reference_node::observe::Observation;
use reference_node::operator::store::LeafStatus;
use reference_node::types::{NodeId, OperatorId};

fn load(path: &str) -> Scenario {
    Scenario::load(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).expect("scenario loads")
}

/// One processed event: (time, description, observations).
type Event = (Micros, String, Vec<Observation>);

/// Steps a built run of `s` up to `until`, keeping every event.
fn run_to(s: &Scenario, until: Micros) -> (SimEngine, Vec<Event>) {
    let mut engine = runner::build(s, s.seed.unwrap_or(1), false).engine;
    let mut out = Vec::new();
    while engine.peek_time().is_some_and(|t| t <= until) {
        let Some(rec) = engine.step() else { break };
        out.push((rec.time, rec.description, rec.observations));
    }
    (engine, out)
}

/// The whole run through the runner (checker on): it must match its `[expect]`.
fn assert_passes(s: &Scenario, path: &str) -> crate::report::RunReport {
    let r = runner::run(s, path, s.seed.unwrap_or(1), &RunOptions::default()).report;
    assert!(
        r.matched_expectation && r.violations.is_empty(),
        "{path}: {:?}",
        r.violations
    );
    r
}

fn observed(events: &[Event]) -> impl Iterator<Item = (Micros, &Observation)> {
    events
        .iter()
        .flat_map(|(t, _, obs)| obs.iter().map(move |o| (*t, o)))
}

#[test]
fn reorg_of_the_deposit_blocks_unconfirms_and_reconfirms_the_deposits() {
    let path = "scenarios/l1/reorg-deposit.toml";
    let s = load(path);
    let r = assert_passes(&s, path);
    assert_eq!(
        (r.deposits_confirmed, r.transfers_sent, r.transfers_claimed),
        (2, 4, 4)
    );
    let reorg_at = Micros::from_secs(300);
    // Just after the reorg: every operator has both leaves back in CREATING.
    let (engine, events) = run_to(&s, reorg_at + Micros::from_millis(10));
    assert!(
        events
            .iter()
            .any(|(_, d, _)| d.starts_with("reorg depth 2 (Drop) from height 0: 2 txs out")),
        "the reorg took both deposits"
    );
    for (_, actor) in engine.nodes() {
        if let Some(op) = actor.as_operator() {
            let statuses: Vec<LeafStatus> = op.db().leaves.values().map(|l| l.status).collect();
            assert_eq!(statuses, vec![LeafStatus::Creating; 2], "{}", op.id());
        }
    }
    let reorged: Vec<NodeId> = observed(&events)
        .filter_map(|(_, o)| match o {
            Observation::DepositReorged {
                node, leaf_status, ..
            } if leaf_status == "Available" => Some(*node),
            _ => None,
        })
        .collect();
    // Three operators and two wallets, each for the leaves it knows.
    assert_eq!(
        reorged
            .iter()
            .filter(|n| matches!(n, NodeId::Operator(_)))
            .count(),
        6
    );
    assert_eq!(
        reorged
            .iter()
            .filter(|n| matches!(n, NodeId::Wallet(_)))
            .count(),
        2
    );
    // The wallets broadcast their deposits again and they confirm a second time.
    let (_, events) = run_to(&s, Micros::from_secs(900));
    let confirmed: Vec<Micros> = observed(&events)
        .filter(|(_, o)| matches!(o, Observation::DepositConfirmed { .. }))
        .map(|(t, _)| t)
        .collect();
    assert_eq!(confirmed.len(), 4);
    assert_eq!(confirmed.iter().filter(|t| **t > reorg_at).count(), 2);
}

#[test]
fn a_deposit_waits_for_deposit_confirmations_blocks() {
    let mut s = load("scenarios/l1/reorg-deposit.toml");
    s.faults.clear();
    s.chain.deposit_confirmations = 3;
    let op0 = NodeId::Operator(OperatorId(0));
    let statuses = |engine: &SimEngine| -> Vec<LeafStatus> {
        engine
            .node(op0)
            .and_then(|a| a.as_operator())
            .map(|o| o.db().leaves.values().map(|l| l.status).collect())
            .unwrap_or_default()
    };
    // Blocks (seed 1, 60 s mean): #1 at 64 s holds the deposits, #2 at 242 s, #3 at 325 s.
    let (engine, _) = run_to(&s, Micros::from_secs(300));
    assert_eq!(engine.chain().height(), 2);
    assert_eq!(
        statuses(&engine),
        vec![LeafStatus::Creating; 2],
        "two confirmations are not enough"
    );
    let (engine, _) = run_to(&s, Micros::from_secs(330));
    assert_eq!(engine.chain().height(), 3);
    assert_eq!(statuses(&engine), vec![LeafStatus::Available; 2]);
}

#[test]
fn reorg_of_an_exit_restarts_the_refund_timelock_and_the_exit_completes() {
    let path = "scenarios/l1/reorg-exit.toml";
    let s = load(path);
    let r = assert_passes(&s, path);
    assert_eq!(r.exits_confirmed, 1);
    let (engine, events) = run_to(&s, Micros::from_secs(121_000));
    let wallet = engine
        .nodes()
        .filter_map(|(_, a)| a.as_wallet())
        .find(|w| {
            w.leaves()
                .values()
                .any(|l| l.state == reference_node::wallet::LeafState::Exited)
        })
        .expect("an exited wallet");
    let leaf = wallet
        .leaves()
        .values()
        .find(|l| l.state == reference_node::wallet::LeafState::Exited)
        .expect("exited leaf");
    let chain = engine.chain();
    let node_h = chain
        .confirmation_height(&leaf.nodes.cpfp.compute_txid())
        .expect("node tx on chain");
    let refund_h = chain
        .confirmation_height(&leaf.refunds.cpfp.compute_txid())
        .expect("refund on chain");
    // First confirmed at height 8; the depth-5 reorg at height 12 made a 6-block branch 8..13.
    assert!(
        node_h >= 14,
        "node tx re-confirmed on the new branch, at {node_h}"
    );
    let csv =
        u32::from(reference_node::tx::timelock::blocks(leaf.refunds.cpfp.input[0].sequence).0);
    assert!(
        refund_h - node_h >= csv,
        "BIP68 counts from the new confirmation: {refund_h} - {node_h} < {csv}"
    );
    let exit_events: Vec<&str> = observed(&events)
        .filter_map(|(_, o)| match o {
            Observation::ExitConfirmed { .. } => Some("confirmed"),
            Observation::ExitReorged { .. } => Some("reorged"),
            _ => None,
        })
        .collect();
    assert_eq!(exit_events, vec!["confirmed", "reorged", "confirmed"]);
}

#[test]
fn block_delay_holds_every_block_until_the_stall_ends() {
    let path = "scenarios/l1/block-delay.toml";
    let s = load(path);
    let r = assert_passes(&s, path);
    assert_eq!((r.deposits_confirmed, r.transfers_claimed), (2, 4));
    let (start, end) = (Micros::from_secs(30), Micros::from_secs(1830));
    let (_, events) = run_to(&s, Micros::from_secs(2000));
    let blocks: Vec<(Micros, &str)> = events
        .iter()
        .filter(|(_, d, _)| d.starts_with("block "))
        .map(|(t, d, _)| (*t, d.as_str()))
        .collect();
    let mined = blocks.iter().filter(|(_, d)| !d.contains("delayed"));
    assert!(
        mined.clone().all(|(t, _)| *t < start || *t >= end),
        "a block inside the stall: {blocks:?}"
    );
    assert!(
        blocks
            .iter()
            .any(|(_, d)| d.starts_with("block delayed until")),
        "a block fell due during the stall"
    );
    assert_eq!(
        blocks
            .iter()
            .find(|(t, d)| *t >= end && !d.contains("delayed"))
            .map(|(t, d)| (*t, *d)),
        Some((end, "block 1 (2 txs)"))
    );
    let confirmed: Vec<Micros> = observed(&events)
        .filter(|(_, o)| matches!(o, Observation::DepositConfirmed { .. }))
        .map(|(t, _)| t)
        .collect();
    assert_eq!(confirmed.len(), 2);
    assert!(confirmed.iter().all(|t| *t >= end));
}

/// Watchtower and fees flow: the exit's zero-fee node tx goes out as a CPFP package; the first
/// (5 sat/vB) is refused by the 10 sat/vB spike, the bumped one (10 sat/vB) gets in during it.
#[test]
fn fee_spike_refuses_the_first_package_and_the_bumped_one_gets_in() {
    let path = "scenarios/l1/fee-spike.toml";
    let s = load(path);
    let r = assert_passes(&s, path);
    assert_eq!(r.exits_confirmed, 1);
    let (spike_start, spike_end) = (Micros::from_secs(500), Micros::from_secs(2300));
    let (_, events) = run_to(&s, Micros::from_secs(3000));
    let refused: Vec<Micros> = observed(&events)
        .filter(|(_, o)| matches!(o, Observation::Rejected { reason, .. } if reason.starts_with("feerate too low")))
        .map(|(t, _)| t)
        .collect();
    assert!(!refused.is_empty(), "the unbumped package is refused: {refused:?}");
    assert!(refused.iter().all(|t| *t > spike_start && *t < spike_end));
    // The exit's node tx (the wallet's first package after 600 s) gets in during the spike.
    let accepted: Vec<Micros> = events
        .iter()
        .filter(|(t, d, _)| *t > Micros::from_secs(600) && d.starts_with("submit wallet:") && d.contains(" package ") && d.ends_with("accepted"))
        .map(|(t, _, _)| *t)
        .collect();
    assert!(accepted.first().is_some_and(|t| *t > refused[0] && *t < spike_end), "{accepted:?}");
}

#[test]
fn mempool_refuses_a_non_final_refund_until_its_timelock_is_met() {
    let path = "scenarios/l1/non-final.toml";
    let s = load(path);
    let r = assert_passes(&s, path);
    assert_eq!(r.exits_confirmed, 1);
    let (engine, events) = run_to(&s, Micros::from_secs(130_000));
    let refusals: Vec<&str> = observed(&events)
        .filter_map(|(_, o)| match o {
            Observation::Rejected { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    // One refusal per block of the timelock, each with the typed non-final reason.
    assert!(refusals.len() >= 1_990, "{} refusals", refusals.len());
    assert!(
        refusals
            .iter()
            .all(|r| r.contains("non-BIP68-final: needs 2000 confirmations")),
        "{:?}",
        refusals.iter().find(|r| !r.contains("non-BIP68-final"))
    );
    let leaf = engine
        .nodes()
        .filter_map(|(_, a)| a.as_wallet())
        .flat_map(|w| w.leaves().values())
        .find(|l| l.state == reference_node::wallet::LeafState::Exited)
        .expect("exited leaf");
    let node_h = engine
        .chain()
        .confirmation_height(&leaf.nodes.cpfp.compute_txid())
        .expect("node tx");
    let refund_h = engine
        .chain()
        .confirmation_height(&leaf.refunds.cpfp.compute_txid())
        .expect("refund");
    assert_eq!(
        refund_h - node_h,
        2_000,
        "accepted at the first height BIP68 allows"
    );
}

#[test]
fn overlapping_fee_spikes_compose_and_the_floor_returns_to_the_chain_floor() {
    let mut s = load("scenarios/l1/block-delay.toml");
    s.chain.min_feerate_sat_vb = 1;
    let secs = Micros::from_secs;
    s.faults = vec![
        FaultSpec::L1(L1Fault::FeeSpike {
            at: secs(100),
            duration: secs(400),
            min_feerate_sat_vb: 9,
        }),
        FaultSpec::L1(L1Fault::FeeSpike {
            at: secs(200),
            duration: secs(100),
            min_feerate_sat_vb: 87,
        }),
    ];
    let floors: Vec<(u64, u64)> = {
        let mut engine = runner::build(&s, 1, false).engine;
        let mut out = vec![];
        for t in [50, 150, 250, 350, 550] {
            engine.run_until(secs(t));
            out.push((t, engine.chain().min_feerate()));
        }
        out
    };
    assert_eq!(
        floors,
        vec![(50, 1), (150, 9), (250, 87), (350, 9), (550, 1)]
    );
}

// --- scenario keys --------------------------------------------------------------------------

const HEAD: &str = "name = \"x\"\ndescription = \"d\"\n";

fn parse(body: &str) -> Result<Scenario, crate::scenario::ScenarioError> {
    Scenario::parse("scenarios/x.toml", &format!("{HEAD}{body}"))
}

#[test]
fn l1_fault_kinds_and_chain_keys_parse() {
    let s = parse(
        "[chain]\ndeposit_confirmations = 3\nmin_feerate_sat_vb = 2\n\
         [[fault]]\nkind = \"reorg\"\nat_s = 10\ndepth = 4\n\
         [[fault]]\nkind = \"reorg\"\nat_s = 11\ndepth = 1\ntxs = \"drop\"\n\
         [[fault]]\nkind = \"block_delay\"\nat_s = 12\nduration_s = 60\n\
         [[fault]]\nkind = \"fee_spike\"\nat_s = 13\nduration_s = 30\nmin_feerate_sat_vb = 50\n",
    )
    .expect("parses");
    assert_eq!(
        (s.chain.deposit_confirmations, s.chain.min_feerate_sat_vb),
        (3, 2)
    );
    let secs = Micros::from_secs;
    assert_eq!(
        s.faults,
        vec![
            FaultSpec::L1(L1Fault::Reorg {
                at: secs(10),
                depth: 4,
                txs: ReorgTxs::Return
            }),
            FaultSpec::L1(L1Fault::Reorg {
                at: secs(11),
                depth: 1,
                txs: ReorgTxs::Drop
            }),
            FaultSpec::L1(L1Fault::BlockDelay {
                at: secs(12),
                duration: secs(60)
            }),
            FaultSpec::L1(L1Fault::FeeSpike {
                at: secs(13),
                duration: secs(30),
                min_feerate_sat_vb: 50
            }),
        ]
    );
    assert_eq!(
        s.faults[3],
        FaultSpec::L1(L1Fault::FeeSpike {
            at: secs(13),
            duration: secs(30),
            min_feerate_sat_vb: 50
        })
    );
    let FaultSpec::L1(spike) = &s.faults[3] else {
        unreachable!()
    };
    assert_eq!(spike.end(), secs(43));
}

#[test]
fn bad_l1_keys_are_located() {
    let cases: [(&str, usize, usize, &str, &str); 9] = [
        (
            "[[fault]]\nkind = \"reorg\"\nat_s = 1\n",
            3,
            1,
            "fault[0].depth",
            "needs `depth`",
        ),
        (
            "[[fault]]\nkind = \"reorg\"\nat_s = 1\ndepth = 0\n",
            6,
            9,
            "fault[0].depth",
            "1..=100",
        ),
        (
            "[[fault]]\nkind = \"reorg\"\nat_s = 1\ndepth = 1\ntxs = \"keep\"\n",
            7,
            7,
            "fault[0].txs",
            "\"return\" or \"drop\"",
        ),
        (
            "[[fault]]\nkind = \"reorg\"\nat_s = 1\ndepth = 1\nnode = \"wallet:0\"\n",
            7,
            8,
            "fault[0].node",
            "does not apply to a reorg fault",
        ),
        (
            "[[fault]]\nkind = \"block_delay\"\nat_s = 1\n",
            3,
            1,
            "fault[0].duration_s",
            "needs `duration_s`",
        ),
        (
            "[[fault]]\nkind = \"fee_spike\"\nat_s = 1\nduration_s = 5\n",
            3,
            1,
            "fault[0].min_feerate_sat_vb",
            "needs `min_feerate_sat_vb`",
        ),
        (
            "[[fault]]\nkind = \"crash\"\nnode = \"wallet:0\"\nat_s = 1\ndepth = 2\n",
            7,
            9,
            "fault[0].depth",
            "does not apply to a crash fault",
        ),
        (
            "[chain]\ndeposit_confirmations = 0\n",
            4,
            25,
            "chain.deposit_confirmations",
            "1..=100",
        ),
        (
            "[chain]\nmin_feerate_sat_vb = -1\n",
            4,
            22,
            "chain.min_feerate_sat_vb",
            "0..=100000",
        ),
    ];
    for (body, line, column, field, fragment) in cases {
        let e = parse(body).expect_err(body);
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (line, column, field),
            "{e}"
        );
        assert!(e.message.contains(fragment), "{e}");
        assert!(
            e.to_string().starts_with(&format!(
                "scenarios/x.toml:{line}:{column}: field `{field}`"
            )),
            "{e}"
        );
    }
}

// --- swarm draws ----------------------------------------------------------------------------

#[test]
fn draws_are_deterministic_and_in_range() {
    let horizon = Micros::from_secs(10_000);
    let draw_all = |seed| {
        let mut rng = crate::rng::stream(seed, RNG_STREAM);
        (0..50)
            .flat_map(|_| {
                [
                    draw_reorg(&mut rng, horizon),
                    draw_block_delay(&mut rng, horizon),
                    draw_fee_spike(&mut rng, horizon),
                ]
            })
            .collect::<Vec<_>>()
    };
    let a = draw_all(7);
    assert_eq!(a, draw_all(7));
    assert_ne!(a, draw_all(8));
    let mut drops = 0;
    for f in &a {
        let FaultSpec::L1(f) = f else {
            panic!("not an L1 fault: {f:?}")
        };
        match *f {
            L1Fault::Reorg { at, depth, txs } => {
                assert!(at < horizon && (1..=6).contains(&depth));
                drops += usize::from(txs == ReorgTxs::Drop);
            }
            L1Fault::BlockDelay { at, duration } => assert!(
                at < horizon
                    && duration >= Micros::from_secs(600)
                    && duration <= Micros::from_secs(7_200)
            ),
            L1Fault::FeeSpike {
                at,
                duration,
                min_feerate_sat_vb,
            } => {
                assert!(
                    at < horizon
                        && duration <= Micros::from_secs(21_600)
                        && (2..=200).contains(&min_feerate_sat_vb)
                )
            }
        }
    }
    assert!(
        (1..50).contains(&drops),
        "both reorg modes are drawn: {drops} drops"
    );
    // A draw is a scenario fault like any other: the runner schedules it.
    let mut s = load("scenarios/l1/block-delay.toml");
    s.faults = vec![draw_fee_spike(
        &mut ChaCha20Rng::seed_from_u64(1),
        Micros::from_secs(1_000),
    )];
    let (_, events) = run_to(&s, Micros::from_secs(1_000));
    assert!(events
        .iter()
        .any(|(_, d, _)| d.starts_with("fee spike: floor")));
}

/// A small swarm over the L1 faults alone: random reorgs, stalls and spikes on a run with
/// deposits, transfers and an exit. Slow in debug builds: `cargo test --release -- --ignored`.
#[test]
#[ignore]
fn random_l1_faults_keep_every_invariant() {
    let base = load("scenarios/l1/fee-spike.toml");
    let mut failures = Vec::new();
    for seed in 1..=40u64 {
        let mut s = base.clone();
        s.faults.clear();
        let mut rng = crate::rng::stream(seed, RNG_STREAM);
        let horizon = Micros::from_secs(3_000);
        for _ in 0..2 {
            s.faults.push(draw_reorg(&mut rng, horizon));
            s.faults.push(draw_block_delay(&mut rng, horizon));
            s.faults.push(draw_fee_spike(&mut rng, horizon));
        }
        let r = runner::run(&s, "swarm", seed, &RunOptions::default()).report;
        // Exits may be skipped (no AVAILABLE leaf left when the command comes): not a finding.
        if !r.violations.is_empty() || r.deposits_confirmed != 2 {
            failures.push(format!(
                "seed {seed}: deposits {} exits {} {:?} {:?}",
                r.deposits_confirmed, r.exits_confirmed, r.violations, s.faults
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
