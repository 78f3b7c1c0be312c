//! Early message loss between operators: the first DKG batch must still fill the keyshare pool
//! (the coordinator re-sends an open batch, participants answer duplicates idempotently, a stuck
//! batch is replaced by a fresh one) and early deposits must wait for it. Before these fixes,
//! 2% uniform loss confirmed 0 of 8 deposits on this seed.
use sparksim::runner::{self, RunOptions};
use sparksim::scenario::Scenario;
use std::path::PathBuf;

#[test]
fn deposits_confirm_under_two_percent_loss_from_the_start() {
    let path = PathBuf::from(format!("{}/../scenarios/quickstart.toml", env!("CARGO_MANIFEST_DIR")));
    let mut s = Scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
    s.network.loss = 0.02;
    let r = runner::run(&s, &s.file, 2, &RunOptions::default()).report;
    assert_eq!(r.deposits_confirmed, 8, "violations: {:?}", r.violations.iter().map(|v| &v.message).collect::<Vec<_>>());
}
