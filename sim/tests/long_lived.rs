//! Long-lived leaf (renew, spark-protocol §4.4; issue 6) through the whole simulator: a split
//! child — node tx CSV 2000, unlike a deposit root's 0 — passed back and forth between two
//! wallets by `[[workload.relay]]`, renewed, and exited unilaterally through its renewed chain.
//!
//! `renew-split-child.toml` (cargo test size): 22 transfers, one renew-refund, the exit.
//! `long-lived-leaf.toml` (391 transfers, 19 renew-refunds then a renew-node, the exit) takes
//! minutes even in release: `cargo test --release -p sparksim --test long_lived -- --ignored`.
mod common;
use common::{assert_clean, fired, run};

#[test]
fn a_split_child_renews_its_refund_and_exits_through_the_renewed_chain() {
    let r = run("renew-split-child.toml", 1);
    assert_clean("renew-split-child.toml", &r);
    assert_eq!(fired(&r, "leaf-split"), 1);
    assert_eq!(r.transfers_claimed, 22, "the child's first transfer and 21 relay sends, none skipped");
    // Refund 2000 → 100 in 19 sends, so the 20th renews first; node CSV 2000 ≥ 200 → refund.
    assert_eq!(fired(&r, "renew-refund"), 1);
    assert_eq!(fired(&r, "renew-node") + fired(&r, "renew-node-zero"), 0, "a split child's node CSV is not 0 nor below 200");
    assert_eq!(r.exits_confirmed, 1, "the holder exits through root, split node, renewed node, refund");
}

#[test]
#[ignore = "391 FROST-signed transfers and a 20-day exit: minutes even in release (library campaign)"]
fn a_long_lived_split_child_goes_through_renew_node_and_still_exits() {
    let r = run("long-lived-leaf.toml", 1);
    assert_clean("long-lived-leaf.toml", &r);
    assert_eq!(r.transfers_claimed, 391);
    // Node CSV 2000 → 100 in 19 renew-refunds (one every 19 sends), then renew-node at send 381.
    assert_eq!(fired(&r, "renew-refund"), 19);
    assert_eq!(fired(&r, "renew-node"), 1);
    assert_eq!(fired(&r, "renew-node-zero"), 0);
    assert_eq!(r.exits_confirmed, 1);
}
