//! Bad input (issue 4): malformed, unauthenticated and forged messages, and random bytes that
//! happen to decode, fed straight to a live operator (mid-run: leaves, transfers and keyshares
//! in its tables). It must never panic and must leave its durable store byte-for-byte unchanged.
//!
//! The operator comes from a real run of `scenarios/quickstart.toml` (seed 1) stopped just after
//! the transfers start, so every message can name real leaves, transfers and keyshares.
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use reference_node::crypto::{vss, PublicKey, Scalar};
use reference_node::msg::{GossipBody, GossipId, InternalRequest, Msg, ReceiverLeafTweak, ReqId, TransferPackage, WalletRequest};
use reference_node::node::{Ctx, Input, Node};
use reference_node::operator::store::Db;
use reference_node::types::{KeyshareId, LeafId, Micros, NodeId, OperatorId, TransferId, WalletId};
use sparksim::actor::Actor;
use sparksim::runner::{self, SimEngine};
use sparksim::scenario::Scenario;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The message encoding, with a bound on what a length prefix may make it allocate.
fn decode(bytes: &[u8]) -> Option<Msg> {
    use bincode::Options;
    bincode::options().with_fixint_encoding().allow_trailing_bytes().with_limit(1 << 16).deserialize(bytes).ok()
}

fn digest(db: &Db) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bincode::serialize(db).expect("the store serializes")).to_vec()
}

/// A run stopped once transfers are under way.
fn live_engine() -> SimEngine {
    let path = format!("{}/../scenarios/quickstart.toml", env!("CARGO_MANIFEST_DIR"));
    let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut engine = runner::build(&s, 1, false).engine;
    while engine.peek_time().is_some_and(|t| t < Micros::from_secs(1_806)) {
        engine.step();
    }
    engine
}

/// Real ids from the target's tables, so garbage reaches past "unknown id" checks.
struct Ids {
    leaves: Vec<LeafId>,
    transfers: Vec<(TransferId, PublicKey)>,
    keyshares: Vec<KeyshareId>,
    wallets: Vec<(WalletId, PublicKey)>,
}

fn ids(engine: &SimEngine, target: NodeId) -> Ids {
    let db = engine.node(target).and_then(Actor::as_operator).expect("operator").db();
    let wallets = engine.nodes().filter_map(|(id, a)| a.as_wallet().map(|w| (id, w))).filter_map(|(id, w)| if let NodeId::Wallet(i) = id { Some((i, w.identity_public())) } else { None }).collect();
    Ids {
        leaves: db.leaves.keys().copied().collect(),
        transfers: db.transfers.iter().map(|(t, r)| (*t, r.receiver)).collect(),
        keyshares: db.keyshares.keys().copied().collect(),
        wallets,
    }
}

fn pick<T: Clone>(v: &[T], i: u64, fallback: T) -> T {
    if v.is_empty() {
        fallback
    } else {
        v[(i % v.len() as u64) as usize].clone()
    }
}

fn random_key(bytes: &[u8]) -> PublicKey {
    let mut seed = [7u8; 32];
    for (s, b) in seed.iter_mut().zip(bytes) {
        *s ^= *b;
    }
    let sk = reference_node::crypto::SecretKey::new(&mut ChaCha20Rng::from_seed(seed));
    sk.public_key(reference_node::crypto::secp())
}

fn id16(bytes: &[u8], salt: u8) -> [u8; 16] {
    let mut out = [salt; 16];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o ^= *b;
    }
    out
}

/// One piece of garbage: (sender, message). `class` selects what kind.
fn garbage(class: u8, a: u64, bytes: &[u8], ids: &Ids, target: OperatorId) -> Option<(NodeId, Msg)> {
    let req = ReqId { session: a, phase: (a >> 56) as u8 };
    let peer = OperatorId(((u64::from(target.0) + 1 + a % 4) % 5) as u16);
    let (wallet, wallet_key) = pick(&ids.wallets, a, (WalletId(0), random_key(bytes)));
    let stranger = random_key(bytes);
    let (transfer, receiver) = pick(&ids.transfers, a, (TransferId(id16(bytes, 1)), stranger));
    let leaf = pick(&ids.leaves, a, LeafId(id16(bytes, 2)));
    let keyshare = pick(&ids.keyshares, a, KeyshareId(id16(bytes, 3)));
    let wreq = |body| Msg::WalletRequest { req, body: Box::new(body) };
    let ireq = |body| Msg::Internal { req, body: Box::new(body) };
    Some(match class % 9 {
        // A receiver tweak from the real receiver whose share does not match its Feldman proofs.
        0 => {
            let mut rng = ChaCha20Rng::seed_from_u64(a);
            let shares = vss::split_with_proofs(&Scalar::random(&mut rng), 3, 5, &mut rng).ok()?;
            let mut share = shares.get(usize::from(target.0))?.clone();
            share.share = share.share.add(&Scalar::from_u32(1 + (a % 1000) as u32));
            let tweak = ReceiverLeafTweak { leaf, share, pubkey_shares_tweak: BTreeMap::new() };
            let w = ids.wallets.iter().find(|(_, k)| *k == receiver).map_or(wallet, |(w, _)| *w);
            (NodeId::Wallet(w), wreq(WalletRequest::ClaimTweakKeys { transfer, receiver, leaves: vec![tweak] }))
        }
        // Requests naming an identity the sender does not hold (unauthenticated).
        1 => (NodeId::Wallet(wallet), wreq(WalletRequest::GenerateDepositAddress { identity: stranger, signing_key: stranger })),
        2 => {
            let package = TransferPackage { leaves: vec![], key_tweak_package: BTreeMap::new(), signature: bytes.to_vec() };
            let sender = if a.is_multiple_of(2) { stranger } else { wallet_key };
            (NodeId::Wallet(wallet), wreq(WalletRequest::StartTransfer { transfer: TransferId(id16(bytes, 4)), sender, receiver, expiry: Micros(a), package }))
        }
        3 => (NodeId::Wallet(wallet), wreq(WalletRequest::ClaimSignRefunds { transfer, receiver: stranger, leaves: vec![] })),
        // Malformed internal requests from a real peer.
        4 => {
            let body = match a % 4 {
                0 => InternalRequest::FrostRound1 { keyshare: KeyshareId(id16(bytes, 5)), count: (a % 200) as u8 },
                1 => InternalRequest::FrostRound2 { keyshare, jobs: vec![] },
                2 => InternalRequest::SettleReceiverPrepare { transfer, attempt: a, tweak_digests: BTreeMap::from([(leaf, [a as u8; 32])]) },
                _ => InternalRequest::InitiateTransfer {
                    transfer: TransferId(id16(bytes, 6)),
                    sender: stranger,
                    receiver,
                    expiry: Micros(u64::MAX),
                    package: TransferPackage { leaves: vec![], key_tweak_package: BTreeMap::from([(target, bytes.to_vec())]), signature: vec![] },
                    signed_refunds: BTreeMap::new(),
                },
            };
            (NodeId::Operator(peer), ireq(body))
        }
        // Internal requests on real ids from someone who is not an operator of this deployment.
        5 => {
            let from = if a.is_multiple_of(2) { NodeId::Operator(OperatorId(99)) } else { NodeId::Wallet(wallet) };
            (from, ireq(InternalRequest::FrostRound1 { keyshare, count: 3 }))
        }
        // Gossip whose origin is not its sender, or from a stranger, on real transfers.
        6 => {
            let body = match a % 3 {
                0 => GossipBody::SettleSenderKeyTweak { transfer },
                1 => GossipBody::SettleReceiverCommit { transfer, attempt: 1 },
                _ => GossipBody::CancelTransfer { transfer },
            };
            let (from, origin) = if a.is_multiple_of(2) { (NodeId::Operator(peer), OperatorId((peer.0 + 1) % 5)) } else { (NodeId::Operator(OperatorId(99)), OperatorId(99)) };
            (from, Msg::Gossip { id: GossipId { origin, seq: a }, body: Box::new(body) })
        }
        // Forged gossip acks: from a stranger for any row, from a peer for rows that do not exist.
        7 => {
            let (from, seq) = if a.is_multiple_of(2) { (OperatorId(99), a % 64) } else { (peer, 1_000_000 + a % 64) };
            (NodeId::Operator(from), Msg::GossipAck { id: GossipId { origin: target, seq }, applied: Ok(()) })
        }
        // Random bytes that happen to decode as a message, from the chain endpoint.
        _ => (NodeId::Chain, decode(bytes)?),
    })
}

fn feed(engine: &mut SimEngine, target: NodeId, from: NodeId, msg: Msg) -> Result<(), TestCaseError> {
    let Some(Actor::Operator(op)) = engine.node_mut(target) else { return Err(TestCaseError::fail("no operator")) };
    let before = digest(op.db());
    let kind = msg.kind();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let handled = catch_unwind(AssertUnwindSafe(|| {
        let mut ctx = Ctx::new(Micros::from_secs(1_806), target, &mut rng);
        op.handle(&mut ctx, Input::Message { from, msg });
    }));
    prop_assert!(handled.is_ok(), "{kind} from {from} panicked the operator");
    prop_assert_eq!(before, digest(op.db()), "{} from {} changed the durable store", kind, from);
    Ok(())
}

#[test]
fn garbage_never_panics_an_operator_nor_changes_its_store() {
    let engine = RefCell::new(live_engine());
    for target in [OperatorId(0), OperatorId(2)] {
        let ids = ids(&engine.borrow(), NodeId::Operator(target));
        assert!(!ids.leaves.is_empty() && !ids.keyshares.is_empty(), "the run has not created leaves yet");
        let mut runner = TestRunner::new(Config { cases: 256, failure_persistence: None, ..Config::default() });
        let strategy = (any::<u8>(), any::<u64>(), vec(any::<u8>(), 0..256));
        runner
            .run(&strategy, |(class, a, bytes)| {
                let Some((from, msg)) = garbage(class, a, &bytes, &ids, target) else { return Ok(()) };
                feed(&mut engine.borrow_mut(), NodeId::Operator(target), from, msg)
            })
            .unwrap_or_else(|e| panic!("{target}: {e}"));
    }
}

/// Bytes flipped in a real message's encoding: whatever still decodes is fed from a stranger.
#[test]
fn mutated_encodings_never_panic_an_operator_nor_change_its_store() {
    let engine = RefCell::new(live_engine());
    let target = NodeId::Operator(OperatorId(1));
    let ids = ids(&engine.borrow(), target);
    let (transfer, receiver) = ids.transfers.first().copied().unwrap_or((TransferId([1; 16]), ids.wallets[0].1));
    let seeds: Vec<Vec<u8>> = [
        Msg::WalletRequest { req: ReqId { session: 1, phase: 0 }, body: Box::new(WalletRequest::ClaimTweakKeys { transfer, receiver, leaves: vec![] }) },
        Msg::Internal { req: ReqId { session: 1, phase: 1 }, body: Box::new(InternalRequest::FrostRound1 { keyshare: ids.keyshares[0], count: 3 }) },
        Msg::Gossip { id: GossipId { origin: OperatorId(0), seq: 1 }, body: Box::new(GossipBody::SettleReceiverCommit { transfer, attempt: 1 }) },
        Msg::Collude { req: ReqId { session: 1, phase: 0 }, body: Box::new(reference_node::msg::ColludeRequest::Commit { verifying_key: receiver, user_public_key: receiver }) },
        Msg::Internal { req: ReqId { session: 1, phase: 1 }, body: Box::new(InternalRequest::DkgRound1 { batch: 7, packages: vec![vec![1, 2, 3]] }) },
    ]
    .iter()
    .map(|m| bincode::serialize(m).expect("encodes"))
    .collect();
    let mut runner = TestRunner::new(Config { cases: 256, failure_persistence: None, ..Config::default() });
    let strategy = (0..seeds.len(), vec((any::<usize>(), any::<u8>()), 1..6));
    runner
        .run(&strategy, |(i, flips)| {
            let mut bytes = seeds[i].clone();
            for (at, x) in flips {
                let n = bytes.len();
                bytes[at % n] ^= x;
            }
            let Some(msg) = decode(&bytes) else { return Ok(()) };
            feed(&mut engine.borrow_mut(), target, NodeId::Wallet(WalletId(999)), msg)
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
