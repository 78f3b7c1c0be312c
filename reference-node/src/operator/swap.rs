//! Leaf swaps with the SSP (spark-protocol §4.3), coordinator and participant side.
//!
//! The user's leg (`initiate_swap_primary_transfer`) runs as an ordinary send — package checked,
//! refunds co-signed, replicated to every operator — except that its sender tweak is *held*: the
//! primary stays `SENDER_KEY_TWEAK_PENDING` everywhere. The SSP's counter transfers
//! (`COUNTER_SWAP`, linked to the primary) are held the same way. The coordinator decides once,
//! durably, in its `swaps` table: settle (gossip `SettleSwapKeyTweak`, every operator applies the
//! primary's and all counters' sender tweaks in one store transaction) or return (the swap
//! expired: both legs cancelled). So either both legs complete or neither (L-6).
//!
//! v3 settles as soon as the counter transfers cover the primary. v2 (spark-protocol §4.3): the
//! operators co-sign each counter's CPFP refund under the user's adaptor point T = a·G
//! (crypto/adaptor_frost.rs), so what they hold is a pre-signature, replicated as the witness
//! `[pre-signature, T]` (two elements: no valid key-path spend, and self-describing for the
//! participants' check). The swap settles only when the user hands the coordinator the
//! completions (with `a`) of every counter's pre-signature; the coordinator stores them in place
//! of the pre-signatures, and the SSP, once settled, extracts `a` from the pair.

use super::store::{Db, TransferStatus};
use super::{Operator, WalletCall};
use crate::crypto::adaptor::{self, PreSignature};
use crate::crypto::PublicKey;
use crate::msg::{GossipBody, InternalRequest, Msg, SwapReply, SwapRequest, SwapStatus, SwapTransfer, SwapVersion, WalletReply};
use crate::node::{Ctx, TimerKind};
use crate::observe::Observation;
use crate::types::{Micros, NodeId, TransferId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `start_leaf_swap_v2`'s expiry: a swap not settled by then is returned.
pub const SWAP_EXPIRY: Micros = Micros::from_secs(120);

/// The coordinator's decision on a swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwapDecision {
    Open,
    /// Settle gossip written: the legs' tweaks are being applied everywhere.
    Settling,
    Settled,
    /// Expired: both legs cancelled.
    Returned,
}

/// One swap, on its coordinator (durable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapRow {
    pub version: SwapVersion,
    pub adaptor_point: Option<PublicKey>,
    pub user: PublicKey,
    pub ssp: PublicKey,
    pub value_sats: u64,
    pub expiry: Micros,
    /// Counter transfer → (value, committed here).
    pub counters: BTreeMap<TransferId, (u64, bool)>,
    pub decision: SwapDecision,
    /// v2: each counter's CPFP refund pre-signature as the operators produced it under T, kept
    /// when the user's completion replaces it in the refund (so the SSP can extract `a`).
    pub counter_pre_signatures: BTreeMap<TransferId, PreSignature>,
}

impl SwapRow {
    pub fn countered_sats(&self) -> u64 {
        self.counters.values().filter(|(_, c)| *c).map(|(v, _)| v).sum()
    }
    pub fn committed_counters(&self) -> Vec<TransferId> {
        self.counters.iter().filter(|(_, (_, c))| *c).map(|(t, _)| *t).collect()
    }
}

/// What committing a send means for a swap (`send_commit`'s hook).
pub(super) enum SwapCommit {
    /// Not a swap leg: settle its own sender tweak as usual.
    NotSwap,
    /// A swap leg whose tweak waits for the swap's decision.
    Hold,
    /// This counter completed a v3 swap: settle every leg.
    Settle(Box<GossipBody>),
}

impl Operator {
    pub(super) fn on_swap_request(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, req: SwapRequest) {
        let r = match req {
            SwapRequest::InitiatePrimary { version, adaptor_point, leg } => match self.swap_initiate_primary(ctx, call, version, adaptor_point, &leg) {
                Ok(()) => return self.start_transfer(ctx, call, leg.transfer, leg.sender, leg.receiver, leg.expiry, leg.package, None),
                Err(e) => Err(e),
            },
            SwapRequest::Counter { primary, adaptor_point, leg } => match self.swap_counter(ctx, call, primary, adaptor_point, &leg) {
                Ok(()) => return self.start_transfer(ctx, call, leg.transfer, leg.sender, leg.receiver, leg.expiry, leg.package, None),
                Err(e) => Err(e),
            },
            SwapRequest::Complete { primary, signatures } => self.swap_complete(ctx, call, primary, &signatures),
            SwapRequest::Query { primary } => Ok(self.swap_query(call, primary)),
        };
        if let Err(e) = &r {
            ctx.observe(Observation::Rejected { what: format!("{} swap request from {}", self.cfg.id, call.wallet), reason: e.clone() });
        }
        Self::reply_wallet(ctx, call, r.map(WalletReply::Swap));
    }

    fn wallet_identity(&self, from: NodeId) -> Option<PublicKey> {
        let NodeId::Wallet(w) = from else { return None };
        self.cfg.directory.wallets.get(&w).copied()
    }

    fn ssp_identity(&self) -> Option<PublicKey> {
        self.cfg.directory.ssp.and_then(|w| self.cfg.directory.wallets.get(&w).copied())
    }

    fn leg_value(db: &Db, leg: &SwapTransfer) -> Result<u64, String> {
        leg.package.leaves.iter().map(|l| db.leaves.get(&l.leaf).map(|r| r.value_sats).ok_or_else(|| format!("unknown leaf {}", l.leaf))).sum()
    }

    /// Record the swap (durable before the send starts, so its commit is held).
    fn swap_initiate_primary(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, version: SwapVersion, adaptor_point: Option<Vec<u8>>, leg: &SwapTransfer) -> Result<(), String> {
        if self.wallet_identity(call.wallet) != Some(leg.sender) {
            return Err(format!("{} is not authenticated as the swap's sender", call.wallet));
        }
        if Some(leg.receiver) != self.ssp_identity() {
            return Err("a swap's primary transfer must go to the SSP".into());
        }
        if leg.expiry > ctx.now + SWAP_EXPIRY {
            return Err(format!("swap expiry more than {} s away", SWAP_EXPIRY.0 / 1_000_000));
        }
        let adaptor_point = parse_adaptor_point(version, adaptor_point.as_deref())?;
        let db = self.store.read();
        if db.swaps.contains_key(&leg.transfer) || db.transfers.contains_key(&leg.transfer) {
            return Err(format!("swap {} already exists", leg.transfer));
        }
        let value_sats = Self::leg_value(db, leg)?;
        let row = SwapRow { version, adaptor_point, user: leg.sender, ssp: leg.receiver, value_sats, expiry: leg.expiry, counters: BTreeMap::new(), decision: SwapDecision::Open, counter_pre_signatures: BTreeMap::new() };
        let mut db = self.store.begin();
        db.swaps.insert(leg.transfer, row);
        self.store.commit(db);
        ctx.set_timer(leg.expiry.saturating_sub(ctx.now), TimerKind::SwapTasks);
        ctx.observe(Observation::SwapStarted { primary: leg.transfer, version, value_sats });
        Ok(())
    }

    fn swap_counter(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, primary: TransferId, adaptor_point: Option<Vec<u8>>, leg: &SwapTransfer) -> Result<(), String> {
        let db = self.store.read();
        let row = db.swaps.get(&primary).ok_or_else(|| format!("unknown swap {primary}"))?;
        let adaptor_point = parse_adaptor_point(row.version, adaptor_point.as_deref())?;
        if self.wallet_identity(call.wallet) != Some(leg.sender) || leg.sender != row.ssp {
            return Err("only the swap's SSP may counter it".into());
        }
        if leg.receiver != row.user {
            return Err("a counter transfer must pay the swap's user".into());
        }
        if row.decision != SwapDecision::Open || ctx.now >= row.expiry {
            return Err(format!("swap {primary} is closed"));
        }
        if db.transfers.get(&primary).map(|t| t.status) != Some(TransferStatus::SenderInitiatedCoordinator) {
            return Err(format!("primary {primary} is not committed"));
        }
        if row.version == SwapVersion::V2 && adaptor_point != row.adaptor_point {
            return Err("wrong adaptor point".into());
        }
        if row.counters.contains_key(&leg.transfer) {
            return Err(format!("counter {} already exists", leg.transfer));
        }
        let value = Self::leg_value(db, leg)?;
        if row.countered_sats() + value > row.value_sats {
            return Err(format!("counter of {value} sats exceeds the primary ({} of {} countered)", row.countered_sats(), row.value_sats));
        }
        let mut db = self.store.begin();
        if let Some(r) = db.swaps.get_mut(&primary) {
            r.counters.insert(leg.transfer, (value, false));
        }
        self.store.commit(db);
        Ok(())
    }

    /// `send_commit`'s hook: hold a swap leg's sender tweak; settle when a v3 swap is covered.
    pub(super) fn swap_on_commit(db: &mut Db, transfer: TransferId) -> Result<SwapCommit, String> {
        if let Some(row) = db.swaps.get(&transfer) {
            return if row.decision == SwapDecision::Open { Ok(SwapCommit::Hold) } else { Err(format!("swap {transfer} is closed")) };
        }
        let Some((primary, row)) = db.swaps.iter_mut().find(|(_, r)| r.counters.contains_key(&transfer)) else { return Ok(SwapCommit::NotSwap) };
        if row.decision != SwapDecision::Open {
            return Err(format!("swap {primary} is closed"));
        }
        if let Some(c) = row.counters.get_mut(&transfer) {
            c.1 = true;
        }
        if row.version == SwapVersion::V3 && row.countered_sats() == row.value_sats {
            row.decision = SwapDecision::Settling;
            return Ok(SwapCommit::Settle(Box::new(GossipBody::SettleSwapKeyTweak { primary: *primary, counters: row.committed_counters() })));
        }
        Ok(SwapCommit::Hold)
    }

    /// v2: the user's completions of every committed counter's CPFP refund pre-signature release
    /// the swap once the counters cover it. Each must be a valid BIP340 signature of that refund
    /// and the completion of the operators' pre-signature (so `a` can be extracted from it); the
    /// coordinator keeps it in place of the pre-signature, in the settle's store transaction.
    fn swap_complete(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, primary: TransferId, signatures: &[(TransferId, Vec<u8>)]) -> Result<SwapReply, String> {
        let db = self.store.read();
        let row = db.swaps.get(&primary).ok_or_else(|| format!("unknown swap {primary}"))?;
        if self.wallet_identity(call.wallet) != Some(row.user) {
            return Err("only the swap's user may complete it".into());
        }
        match row.decision {
            SwapDecision::Open => {}
            SwapDecision::Settling | SwapDecision::Settled => return Ok(self.swap_query(call, primary)),
            SwapDecision::Returned => return Err(format!("swap {primary} was returned")),
        }
        if row.version != SwapVersion::V2 {
            return Err("only a v2 swap is completed by its user".into());
        }
        if row.countered_sats() != row.value_sats {
            return Err(format!("counter transfers cover {} of {} sats", row.countered_sats(), row.value_sats));
        }
        let t = row.adaptor_point.ok_or("v2 swap without an adaptor point")?;
        let counters = row.committed_counters();
        let mut completed = Vec::new();
        for c in &counters {
            let (tx, prevout, vk) = Self::counter_refund(db, *c)?;
            let pre = presignature_of(&tx, &t).map_err(|e| format!("counter {c}: {e}"))?;
            let sig = signatures.iter().find(|(x, _)| x == c).map(|(_, s)| s).ok_or_else(|| format!("no completed signature for counter {c}"))?;
            let sig = bitcoin::secp256k1::schnorr::Signature::from_slice(sig).map_err(|e| format!("counter {c}: {e}"))?;
            let mut signed = tx.clone();
            signed.input[0].witness = crate::tx::sighash::key_spend_witness(&sig);
            super::check_signed(&tx, &signed, std::slice::from_ref(&prevout), &vk).map_err(|e| format!("counter {c} completed refund: {e}"))?;
            adaptor::extract(&pre, &sig, &t).map_err(|e| format!("counter {c}: not the completion of the operators' pre-signature: {e}"))?;
            completed.push((*c, signed, pre));
        }
        let mut db = self.store.begin();
        for (c, signed, pre) in completed {
            if let Some(l) = db.transfers.get_mut(&c).and_then(|t| t.leaves.values_mut().next()).and_then(|l| l.intermediate_refunds.as_mut()) {
                l.cpfp = signed;
            }
            if let Some(r) = db.swaps.get_mut(&primary) {
                r.counter_pre_signatures.insert(c, pre);
            }
        }
        if let Some(r) = db.swaps.get_mut(&primary) {
            r.decision = SwapDecision::Settling;
        }
        self.swap_settle_decided(ctx, db, GossipBody::SettleSwapKeyTweak { primary, counters })?;
        Ok(self.swap_query(call, primary))
    }

    /// A counter's stored CPFP refund (its witness as stored), the output it spends and the
    /// leaf's verifying key Y.
    fn counter_refund(db: &Db, counter: TransferId) -> Result<(bitcoin::Transaction, bitcoin::TxOut, PublicKey), String> {
        let t = db.transfers.get(&counter).ok_or_else(|| format!("unknown counter {counter}"))?;
        let (leaf, l) = t.leaves.iter().next().ok_or("counter without a leaf")?;
        let refunds = l.intermediate_refunds.as_ref().ok_or("counter has no signed refunds")?;
        let row = db.leaves.get(leaf).ok_or_else(|| format!("unknown leaf {leaf}"))?;
        let [cpfp, _, _] = row.nodes.refund_prevouts()?;
        let prevout = cpfp.into_iter().next().ok_or("no prevout")?;
        Ok((refunds.cpfp.clone(), prevout, row.verifying_key))
    }

    /// Job `i` of a send is signed under `adaptor` when it is a CPFP refund (every leaf's jobs
    /// are CPFP, direct, direct-from-CPFP): as Spark, only the CPFP refund carries the adaptor.
    pub(super) fn swap_job_adaptor(adaptor: Option<PublicKey>, i: usize) -> Option<PublicKey> {
        adaptor.filter(|_| i.is_multiple_of(3))
    }

    /// A send's round-2 request, under the swap's adaptor point when it has one.
    pub(super) fn swap_adapt_round2(adaptor: Option<PublicKey>, req: InternalRequest) -> InternalRequest {
        match (adaptor, req) {
            (Some(_), InternalRequest::FrostRound2 { keyshare, jobs }) => {
                let adaptors = (0..jobs.len()).map(|i| Self::swap_job_adaptor(adaptor, i)).collect();
                InternalRequest::FrostRound2Adaptor { keyshare, jobs, adaptors }
            }
            (_, req) => req,
        }
    }

    /// The adaptor point a v2 swap's counter transfer is co-signed under (coordinator only:
    /// the swap row lives there), or None for any other transfer.
    pub(super) fn v2_counter_adaptor(db: &Db, transfer: TransferId) -> Option<PublicKey> {
        db.swaps.values().find(|r| r.version == SwapVersion::V2 && r.counters.contains_key(&transfer)).and_then(|r| r.adaptor_point)
    }

    /// Write the settle decision's gossip with `db` (or apply it at once when alone) and commit.
    fn swap_settle_decided(&mut self, ctx: &mut Ctx<'_>, mut db: Db, body: GossipBody) -> Result<(), String> {
        let others = self.others();
        if others.is_empty() {
            self.apply_swap_gossip(&mut db, &body)?;
            Self::swap_mark_settled(&mut db, &body);
            self.store.commit(db);
            return Ok(());
        }
        let seq = Self::gossip_create(&mut db, body, others);
        self.store.commit(db);
        self.gossip_push(ctx, seq);
        Ok(())
    }

    /// Apply a settle gossip body, whichever kind (the coordinator alone applies at once).
    pub(super) fn apply_swap_gossip(&self, db: &mut Db, body: &GossipBody) -> Result<(), String> {
        match body {
            GossipBody::SettleSenderKeyTweak { transfer } => self.apply_settle_sender(db, *transfer),
            GossipBody::SettleSwapKeyTweak { primary, counters } => self.apply_settle_swap(db, *primary, counters),
            _ => Ok(()),
        }
    }

    /// Both legs' sender tweaks, in the caller's one store transaction.
    pub(super) fn apply_settle_swap(&self, db: &mut Db, primary: TransferId, counters: &[TransferId]) -> Result<(), String> {
        for t in std::iter::once(&primary).chain(counters) {
            self.apply_settle_sender(db, *t)?;
        }
        Ok(())
    }

    fn swap_mark_settled(db: &mut Db, body: &GossipBody) {
        if let GossipBody::SettleSwapKeyTweak { primary, .. } = body {
            if let Some(r) = db.swaps.get_mut(primary) {
                r.decision = SwapDecision::Settled;
            }
        }
    }

    /// Every participant applied the settle: apply our own, tell both receivers.
    pub(super) fn swap_settle_delivered(&mut self, ctx: &mut Ctx<'_>, primary: TransferId, counters: Vec<TransferId>) {
        let mut db = self.store.begin();
        let body = GossipBody::SettleSwapKeyTweak { primary, counters: counters.clone() };
        if let Err(e) = self.apply_settle_swap(&mut db, primary, &counters) {
            return ctx.observe(Observation::Rejected { what: format!("{} settling swap {primary}", self.cfg.id), reason: e });
        }
        Self::swap_mark_settled(&mut db, &body);
        let receivers: Vec<(TransferId, PublicKey)> = std::iter::once(&primary).chain(&counters).filter_map(|t| db.transfers.get(t).map(|r| (*t, r.receiver))).collect();
        self.store.commit(db);
        ctx.observe(Observation::SwapDecided { primary, counters, settled: true });
        for (transfer, r) in receivers {
            if let Some(w) = self.cfg.directory.wallet_by_identity(&r) {
                ctx.send(NodeId::Wallet(w), Msg::TransferEvent { transfer });
            }
        }
    }

    pub(super) fn swap_query(&self, call: WalletCall, primary: TransferId) -> SwapReply {
        let db = self.store.read();
        let Some(row) = db.swaps.get(&primary) else { return SwapReply { primary, status: SwapStatus::Unknown, refunds: None, counter_leaves: Vec::new(), counter_adaptors: Vec::new() } };
        let status = match row.decision {
            SwapDecision::Open | SwapDecision::Settling => SwapStatus::Open { value_sats: row.value_sats, countered_sats: row.countered_sats() },
            SwapDecision::Settled => SwapStatus::Settled,
            SwapDecision::Returned => SwapStatus::Returned,
        };
        let me = self.wallet_identity(call.wallet);
        let may_see = me == Some(row.user) || (me == Some(row.ssp) && row.decision == SwapDecision::Settled);
        let refunds = may_see.then(|| db.transfers.get(&primary).and_then(|t| t.leaves.values().next()).and_then(|l| l.intermediate_refunds.clone())).flatten();
        let counter_leaves = row.committed_counters().iter().filter_map(|t| db.transfers.get(t)).flat_map(|t| t.leaves.keys().copied()).collect();
        // v2: the user sees the counters' pre-signatures to complete them; the SSP, once settled,
        // the completions next to the pre-signatures, to extract `a`.
        let may_see_adaptors = me == Some(row.user) || may_see;
        let counter_adaptors = match row.adaptor_point.filter(|_| may_see_adaptors) {
            Some(point) => row
                .committed_counters()
                .into_iter()
                .filter_map(|c| {
                    let (refund, prevout, _) = Self::counter_refund(db, c).ok()?;
                    let pre_signature = row.counter_pre_signatures.get(&c).copied().or_else(|| presignature_of(&refund, &point).ok())?;
                    Some((c, crate::msg::ssp::SwapAdaptor { point, pre_signature, refund, prevout }))
                })
                .collect(),
            None => Vec::new(),
        };
        SwapReply { primary, status, refunds, counter_leaves, counter_adaptors }
    }

    /// `SwapTasks` timer (and restart): return every open swap past its expiry — both legs
    /// cancelled everywhere by durable gossip, in the same transaction as the decision.
    pub(super) fn swap_tasks(&mut self, ctx: &mut Ctx<'_>) {
        let expired: Vec<TransferId> = self.store.read().swaps.iter().filter(|(_, r)| r.decision == SwapDecision::Open && r.expiry <= ctx.now).map(|(t, _)| *t).collect();
        for primary in expired {
            let mut db = self.store.begin();
            let Some(row) = db.swaps.get_mut(&primary) else { continue };
            row.decision = SwapDecision::Returned;
            let legs: Vec<TransferId> = std::iter::once(primary).chain(row.counters.keys().copied()).collect();
            let mut seqs = Vec::new();
            for t in &legs {
                if let Some(p) = db.pending_sends.get_mut(t) {
                    p.status = super::store::PendingSendStatus::Finished;
                }
                if Self::apply_cancel(&mut db, *t).is_ok() && !self.others().is_empty() {
                    seqs.push(Self::gossip_create(&mut db, GossipBody::CancelTransfer { transfer: *t }, self.others()));
                }
            }
            self.store.commit(db);
            for seq in seqs {
                self.gossip_push(ctx, seq);
            }
            ctx.observe(Observation::SwapDecided { primary, counters: legs[1..].to_vec(), settled: false });
        }
    }

    /// After a restart: one expiry timer per open swap (settle gossip still in flight is
    /// re-pushed by the gossip task).
    pub(super) fn arm_swap_timers(&mut self, ctx: &mut Ctx<'_>) {
        let open: Vec<Micros> = self.store.read().swaps.values().filter(|r| r.decision == SwapDecision::Open).map(|r| r.expiry).collect();
        for expiry in open {
            ctx.set_timer(expiry.saturating_sub(ctx.now), TimerKind::SwapTasks);
        }
    }
}

/// A swap's adaptor point as the request carried it: required and well-formed for v2
/// (`adaptor::parse_point`), ignored for v3.
fn parse_adaptor_point(version: SwapVersion, bytes: Option<&[u8]>) -> Result<Option<PublicKey>, String> {
    match (version, bytes) {
        (SwapVersion::V3, _) => Ok(None),
        (SwapVersion::V2, None) => Err("a v2 swap needs an adaptor point".into()),
        (SwapVersion::V2, Some(b)) => adaptor::parse_point(b).map(Some).map_err(|e| e.to_string()),
    }
}

/// The witness of a refund signed under adaptor point T: `[pre-signature (64), T (33)]`.
pub fn presigned_witness(pre: &PreSignature, t: &PublicKey) -> bitcoin::Witness {
    bitcoin::Witness::from_slice(&[pre.to_bytes().to_vec(), t.serialize().to_vec()])
}

/// The pre-signature in a refund's `[pre-signature, T]` witness, for T = `t`.
pub fn presignature_of(tx: &bitcoin::Transaction, t: &PublicKey) -> Result<PreSignature, String> {
    let w = &tx.input.first().ok_or("no input")?.witness;
    if w.len() != 2 || w.nth(1) != Some(&t.serialize()[..]) {
        return Err("the refund does not carry a pre-signature under the swap's adaptor point".into());
    }
    let b: [u8; 64] = w.nth(0).and_then(|b| b.try_into().ok()).ok_or("pre-signature is not 64 bytes")?;
    let s = crate::crypto::Scalar::from_bytes(b[32..].try_into().map_err(|_| "short")?).ok_or("pre-signature s out of range")?;
    Ok(PreSignature { r: b[..32].try_into().map_err(|_| "short")?, s })
}

/// A participant's check of a replicated refund: a valid signature, or (a v2 swap counter's
/// CPFP refund) a pre-signature that verifies under the T its witness names. The participant
/// does not hold the swap row, so it trusts the coordinator's T; the user checks T is its own
/// before completing, and the coordinator settles only on valid completions.
pub(super) fn check_signed_or_presigned(expected: &bitcoin::Transaction, signed: &bitcoin::Transaction, prevouts: &[bitcoin::TxOut], verifying_key: &PublicKey) -> Result<(), String> {
    let w = &signed.input.first().ok_or("no input")?.witness;
    if w.len() != 2 {
        return super::check_signed(expected, signed, prevouts, verifying_key);
    }
    crate::tx::template::compare_transactions(expected, signed).map_err(|e| e.to_string())?;
    let t = adaptor::parse_point(w.nth(1).unwrap_or_default()).map_err(|e| e.to_string())?;
    let pre = presignature_of(signed, &t)?;
    let msg = crate::tx::sighash::key_spend_sighash(signed, 0, prevouts).map_err(|e| e.to_string())?;
    let (q, _) = crate::crypto::adaptor_frost::output_key(verifying_key);
    adaptor::verify(&pre, &msg, &q, &t).map_err(|e| format!("pre-signature: {e}"))
}

#[cfg(test)]
#[path = "swap_tests.rs"]
mod tests;
