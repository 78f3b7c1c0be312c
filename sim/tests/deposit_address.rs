//! A late duplicate of `GenerateDepositAddress` (the network's `duplicate` fault delivers a copy
//! after the first session ended) must get the address already reserved for that owner key, not
//! a second keyshare from the pool: before the fix every such copy reserved another keyshare, so
//! duplication slowly drained the pool (L-8).
use rand_core::SeedableRng;
use reference_node::msg::{Msg, ReqId, WalletRequest};
use reference_node::node::{Ctx, Input, Node, Output};
use reference_node::types::{Micros, NodeId, OperatorId};
use sparksim::actor::Actor;
use sparksim::runner;
use sparksim::scenario::Scenario;
use std::path::PathBuf;

#[test]
fn a_late_duplicate_address_request_takes_no_second_keyshare() {
    let path = PathBuf::from(format!("{}/../scenarios/quickstart.toml", env!("CARGO_MANIFEST_DIR")));
    let s = Scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
    let mut engine = runner::build(&s, 1, false).engine;
    while engine.peek_time().is_some_and(|t| t < Micros::from_secs(100)) {
        engine.step();
    }
    let coordinator = NodeId::Operator(OperatorId(0));
    let Some(Actor::Operator(op)) = engine.node_mut(coordinator) else { panic!("no coordinator") };
    let (identity, signing_key) = op.db().deposit_addresses.values().map(|a| (a.owner_identity, a.owner_signing_key)).next().expect("an address was reserved by now");
    let wallet = engine.nodes().find_map(|(id, a)| a.as_wallet().filter(|w| w.identity_public() == identity).map(|_| id)).expect("the identity is a wallet's");
    let Some(Actor::Operator(op)) = engine.node_mut(coordinator) else { panic!("no coordinator") };
    let (pool, addresses) = (op.db().pool.len(), op.db().deposit_addresses.len());
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let mut ctx = Ctx::new(Micros::from_secs(100), coordinator, &mut rng);
    let copy = Msg::WalletRequest { req: ReqId { session: 999, phase: 0 }, body: Box::new(WalletRequest::GenerateDepositAddress { identity, signing_key }) };
    op.handle(&mut ctx, Input::Message { from: wallet, msg: copy });
    let out = ctx.into_outputs();
    assert!(out.iter().any(|o| matches!(o, Output::Send { .. })), "the copy is answered (it re-collects the address signatures)");
    assert_eq!(op.db().pool.len(), pool, "the copy took another keyshare from the pool");
    assert_eq!(op.db().deposit_addresses.len(), addresses);
}
