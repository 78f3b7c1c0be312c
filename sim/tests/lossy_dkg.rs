//! Early message loss between operators: the first DKG batch must still fill the keyshare pool
//! (the coordinator re-sends an open batch, participants answer duplicates idempotently, a stuck
//! batch is replaced by a fresh one) and early deposits must wait for it. Before these fixes,
//! 2% uniform loss confirmed 0 of 8 deposits on this seed.
use sparksim::runner::{self, RunOptions};
use sparksim::scenario::Scenario;
use std::path::PathBuf;

/// Seeds 1..=3 with 2% loss on every link: at least 15 of their 24 deposits confirm (18 today;
/// before the DKG fixes 0–1). Not all: seed 1 still runs the pool dry (L-8) — the batch retry
/// does not yet survive every loss pattern, which the note on issue 4 records as open.
#[test]
fn deposits_confirm_under_two_percent_loss_from_the_start() {
    let path = PathBuf::from(format!("{}/../scenarios/quickstart.toml", env!("CARGO_MANIFEST_DIR")));
    let mut s = Scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
    s.network.loss = 0.02;
    let mut confirmed = Vec::new();
    for seed in 1..=3 {
        let r = runner::run(&s, &s.file, seed, &RunOptions::default()).report;
        confirmed.push(r.deposits_confirmed);
    }
    let total: u64 = confirmed.iter().sum();
    assert!(total >= 15, "deposits confirmed per seed under 2% loss: {confirmed:?}");
}
