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
//! v3 settles as soon as the counter transfers cover the primary; v2 also waits for the user to
//! complete its adaptor signature (the SSP learns `a` from it: crypto/adaptor.rs).

use super::store::{Db, TransferStatus};
use super::{Operator, WalletCall};
use crate::crypto::PublicKey;
use crate::msg::{GossipBody, Msg, SwapReply, SwapRequest, SwapStatus, SwapTransfer, SwapVersion, WalletReply};
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
            SwapRequest::Complete { primary, signature } => self.swap_complete(ctx, call, primary, &signature),
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
    fn swap_initiate_primary(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, version: SwapVersion, adaptor_point: Option<PublicKey>, leg: &SwapTransfer) -> Result<(), String> {
        if self.wallet_identity(call.wallet) != Some(leg.sender) {
            return Err(format!("{} is not authenticated as the swap's sender", call.wallet));
        }
        if Some(leg.receiver) != self.ssp_identity() {
            return Err("a swap's primary transfer must go to the SSP".into());
        }
        if leg.expiry > ctx.now + SWAP_EXPIRY {
            return Err(format!("swap expiry more than {} s away", SWAP_EXPIRY.0 / 1_000_000));
        }
        if version == SwapVersion::V2 && adaptor_point.is_none() {
            return Err("a v2 swap needs an adaptor point".into());
        }
        let db = self.store.read();
        if db.swaps.contains_key(&leg.transfer) || db.transfers.contains_key(&leg.transfer) {
            return Err(format!("swap {} already exists", leg.transfer));
        }
        let value_sats = Self::leg_value(db, leg)?;
        let row = SwapRow { version, adaptor_point, user: leg.sender, ssp: leg.receiver, value_sats, expiry: leg.expiry, counters: BTreeMap::new(), decision: SwapDecision::Open };
        let mut db = self.store.begin();
        db.swaps.insert(leg.transfer, row);
        self.store.commit(db);
        ctx.set_timer(leg.expiry.saturating_sub(ctx.now), TimerKind::SwapTasks);
        ctx.observe(Observation::SwapStarted { primary: leg.transfer, version, value_sats });
        Ok(())
    }

    fn swap_counter(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, primary: TransferId, adaptor_point: Option<PublicKey>, leg: &SwapTransfer) -> Result<(), String> {
        let db = self.store.read();
        let row = db.swaps.get(&primary).ok_or_else(|| format!("unknown swap {primary}"))?;
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

    /// v2: the user's completed signature of its primary's CPFP refund (the one it adapted)
    /// releases the swap once the counters cover it.
    fn swap_complete(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, primary: TransferId, signature: &[u8]) -> Result<SwapReply, String> {
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
        let stored = db.transfers.get(&primary).and_then(|t| t.leaves.values().next()).and_then(|l| l.intermediate_refunds.as_ref()).ok_or("primary has no signed refunds")?;
        let witness_sig = stored.cpfp.input.first().and_then(|i| i.witness.nth(0)).ok_or("stored refund has no signature")?;
        if witness_sig != signature {
            return Err("completed signature does not match the primary's refund".into());
        }
        let counters = row.committed_counters();
        let mut db = self.store.begin();
        if let Some(r) = db.swaps.get_mut(&primary) {
            r.decision = SwapDecision::Settling;
        }
        self.swap_settle_decided(ctx, db, GossipBody::SettleSwapKeyTweak { primary, counters })?;
        Ok(self.swap_query(call, primary))
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
        let Some(row) = db.swaps.get(&primary) else { return SwapReply { primary, status: SwapStatus::Unknown, refunds: None, counter_leaves: Vec::new() } };
        let status = match row.decision {
            SwapDecision::Open | SwapDecision::Settling => SwapStatus::Open { value_sats: row.value_sats, countered_sats: row.countered_sats() },
            SwapDecision::Settled => SwapStatus::Settled,
            SwapDecision::Returned => SwapStatus::Returned,
        };
        let me = self.wallet_identity(call.wallet);
        let may_see = me == Some(row.user) || (me == Some(row.ssp) && row.decision == SwapDecision::Settled);
        let refunds = may_see.then(|| db.transfers.get(&primary).and_then(|t| t.leaves.values().next()).and_then(|l| l.intermediate_refunds.clone())).flatten();
        let counter_leaves = row.committed_counters().iter().filter_map(|t| db.transfers.get(t)).flat_map(|t| t.leaves.keys().copied()).collect();
        SwapReply { primary, status, refunds, counter_leaves }
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
