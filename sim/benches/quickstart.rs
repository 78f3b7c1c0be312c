//! Speed of the simulator on the quickstart scenario, against the crypto floor: the same
//! secp256k1/FROST/VSS/ECIES operations one transfer needs, timed alone in this process.
//! Prints figures; asserts nothing (performance is measured, not tested).
// A benchmark measures wall time by definition; it is not the simulated path.
#![allow(clippy::disallowed_methods)]

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use reference_node::crypto::signing::{self, KeyShare, SigningJob};
use reference_node::crypto::{curve, ecies, vss, Scalar, SecretKey};
use reference_node::types::OperatorId;
use sparksim::runner::{run, RunOptions};
use sparksim::scenario::Scenario;
use std::collections::BTreeMap;
use std::time::Instant;

const QUICKSTART: &str = include_str!("../../scenarios/quickstart.toml");

/// FROST-sign `jobs` messages with t operators + the user, as a send or a claim does.
fn frost_jobs(shares: &[KeyShare], user: &SecretKey, jobs: usize, rng: &mut ChaCha20Rng) {
    let t = usize::from(shares[0].threshold);
    let signers: Vec<OperatorId> = (0..t as u16).map(OperatorId).collect();
    let user_pk = user.public_key(reference_node::crypto::secp());
    let y = curve::point_add(&user_pk, &shares[0].public_key).expect("Y");
    for j in 0..jobs {
        let mut nonces = BTreeMap::new();
        let mut commitments = BTreeMap::new();
        for op in &signers {
            let (n, c) = signing::commit(&shares[usize::from(op.0)].secret_share, rng);
            nonces.insert(*op, n);
            commitments.insert(*op, c);
        }
        let (un, uc) = signing::commit(&Scalar::from_secret_key(user), rng);
        let job = SigningJob { message: [j as u8 + 1; 32], verifying_key: y, user_public_key: user_pk, operator_commitments: commitments, user_commitment: uc };
        let op_shares = signers.iter().map(|op| (*op, signing::sign_as_operator(&job, *op, &shares[usize::from(op.0)], &nonces[op]).expect("share"))).collect();
        let user_share = signing::sign_as_user(&job, user, &un).expect("user share");
        let public = signers.iter().map(|op| (*op, shares[0].public_shares[op])).collect();
        signing::aggregate(&job, &op_shares, &user_share, &public).expect("aggregate");
    }
}

/// One transfer's cryptography: send (3 refunds co-signed, δ split and checked, n+1 ECIES) and
/// claim (δ2 split and checked, 3 refunds co-signed).
fn transfer_crypto(n: u16, t: u16, rng: &mut ChaCha20Rng) {
    let shares = KeyShare::deal(&Scalar::random(rng), n, t, rng).expect("deal");
    let user = SecretKey::new(rng);
    let receiver = SecretKey::new(rng).public_key(reference_node::crypto::secp());
    for _leg in 0..2 {
        frost_jobs(&shares, &user, 3, rng);
        let split = vss::split_with_proofs(&Scalar::random(rng), t, n, rng).expect("split");
        for s in &split {
            vss::validate_share(s).expect("valid");
        }
    }
    let e = Scalar::random(rng);
    for _ in 0..=n {
        let ct = ecies::encrypt(&receiver, &e.0, rng);
        let _ = ecies::decrypt(&user, &ct);
    }
}

fn main() {
    let scenario = Scenario::parse("scenarios/quickstart.toml", QUICKSTART).expect("embedded quickstart parses");
    let (n, t) = (scenario.topology.operators, scenario.topology.threshold);
    let runs = 3;
    let mut wall = 0.0;
    let (mut events, mut claimed, mut sim) = (0u64, 0u64, 0.0);
    for seed in 1..=runs {
        let r = run(&scenario, "scenarios/quickstart.toml", seed, &RunOptions::default()).report;
        wall += r.wall_time_s;
        events += r.events;
        claimed += r.transfers_claimed;
        sim += r.sim_time_s;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let floor_reps = 10;
    let start = Instant::now();
    for _ in 0..floor_reps {
        transfer_crypto(n, t, &mut rng);
    }
    let floor_s = start.elapsed().as_secs_f64() / f64::from(floor_reps);
    let wall_per_transfer = wall / claimed.max(1) as f64;
    println!("quickstart ({runs} seeds, n={n}, t={t})");
    println!("  events per wall second          {:>12.0}", events as f64 / wall);
    println!("  completed transfers per wall s  {:>12.1}", claimed as f64 / wall);
    println!("  simulated s per wall s          {:>12.0}", sim / wall);
    println!("  crypto floor per transfer       {:>12.2} ms", floor_s * 1e3);
    println!("  wall per completed transfer     {:>12.2} ms (includes deposits, DKG, exit and 12 simulated days of blocks)", wall_per_transfer * 1e3);
    println!("  ratio wall/transfer : floor     {:>12.2}x", wall_per_transfer / floor_s);
    flow_figures(wall / runs as f64, wall_per_transfer, floor_s);
}

/// One library scenario over `seeds` seeds: (wall seconds per run, completed transfers per run).
fn library_run(file: &str, seeds: u64) -> (f64, f64) {
    let path = format!("{}/../scenarios/{file}", env!("CARGO_MANIFEST_DIR"));
    let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let (mut wall, mut claimed) = (0.0, 0u64);
    for seed in 1..=seeds {
        let r = run(&scenario, &path, seed, &RunOptions::default()).report;
        assert!(r.matched_expectation, "{file} seed {seed}: {:?} {:?}", r.outcome, r.violations);
        wall += r.wall_time_s;
        claimed += r.transfers_claimed;
    }
    (wall / seeds as f64, claimed as f64 / seeds as f64)
}

/// Figures for flows of issue 6 that were only quoted before: the cooperative exit's wall time
/// (one coop exit per run, with its 6-confirmation wait and the SSP's claim) and a long-lived
/// leaf's wall time per transfer (every 19th send renews first, the exit chain grows a layer per
/// renew), each against the quickstart run and its per-transfer wall time.
fn flow_figures(quickstart_wall_per_run: f64, quickstart_wall_per_transfer: f64, floor_s: f64) {
    let seeds = 3;
    let (coop, _) = library_run("coop-exit.toml", seeds);
    println!("coop-exit.toml ({seeds} seeds, one coop exit each)");
    println!("  wall per run                    {:>12.2} ms", coop * 1e3);
    println!("  ratio to a quickstart run       {:>12.2}x", coop / quickstart_wall_per_run);
    let (long, claimed) = library_run("long-lived-leaf.toml", 1);
    let per_transfer = long / claimed.max(1.0);
    println!("long-lived-leaf.toml (seed 1, {claimed:.0} transfers, renews and a grown exit chain)");
    println!("  wall per run                    {:>12.2} s", long);
    println!("  wall per completed transfer     {:>12.2} ms", per_transfer * 1e3);
    println!("  ratio to quickstart's transfer  {:>12.2}x", per_transfer / quickstart_wall_per_transfer);
    println!("  ratio to the crypto floor       {:>12.2}x", per_transfer / floor_s);
}
