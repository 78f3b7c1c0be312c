//! The keyshare pool (spark-protocol §2.3): a coordinator keeps a pool of DKG keys ahead of need,
//! generated in batches by all operators over the network; a key enters the pool only when every
//! operator reported the same public key for it.
//!
//! Lost messages: while a batch is open the coordinator re-sends its DkgStart to every operator
//! on each `dkg` tick; a participant answers a duplicate start idempotently by re-sending what it
//! already sent for that batch (its round-1 broadcast, its round-2 packages, its DkgDone), so one
//! lost package delays a batch by a tick instead of stalling the pool. A batch still incomplete
//! after [`BATCH_ATTEMPT_TICKS`] ticks is abandoned and a fresh one (new batch id) starts at once.
use super::store::{KeyshareRow, KeyshareStatus};
use super::Operator;
use crate::crypto::dkg::{self, Round1Secret, Round2Secret};
use crate::crypto::identity::sha256;
use crate::crypto::PublicKey;
use crate::msg::{InternalRequest, Msg, ReqId};
use crate::node::{Ctx, TimerKind};
use crate::observe::Observation;
use crate::types::{KeyshareId, Micros, NodeId, OperatorId};
use std::collections::BTreeMap;

/// One participant's progress through one batch (volatile: a crash abandons the batch).
#[derive(Default)]
pub(super) struct BatchState {
    coordinator: Option<OperatorId>,
    secret1: Option<Round1Secret>,
    round1: BTreeMap<OperatorId, Vec<Vec<u8>>>,
    secret2: Option<Round2Secret>,
    round2: BTreeMap<OperatorId, Vec<Vec<u8>>>,
    done: bool,
    /// What this operator sent for the batch, kept to answer a duplicate DkgStart.
    sent_round1: Option<Vec<Vec<u8>>>,
    sent_round2: BTreeMap<OperatorId, Vec<Vec<u8>>>,
    sent_done: Option<Vec<PublicKey>>,
}

/// The coordinator's tally of one batch.
pub(super) struct Collect {
    batch: u64,
    started_at: Micros,
    reports: BTreeMap<OperatorId, Vec<PublicKey>>,
}

/// `dkg` ticks a batch may stay open (re-sending its DkgStart each tick) before it is abandoned.
const BATCH_ATTEMPT_TICKS: u64 = 3;

/// Bound on batches a participant tracks at once.
const MAX_OPEN_BATCHES: usize = 16;

fn keyshare_id(batch: u64, index: usize) -> KeyshareId {
    let d = sha256(&[b"keyshare", &batch.to_le_bytes(), &(index as u64).to_le_bytes()]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    KeyshareId(id)
}

impl Operator {
    fn internal(ctx: &mut Ctx<'_>, to: OperatorId, body: InternalRequest) {
        ctx.send(NodeId::Operator(to), Msg::Internal { req: ReqId { session: 0, phase: 0 }, body: Box::new(body) });
    }

    /// The `dkg` task: top the pool up, one batch at a time.
    pub(super) fn dkg_pool_tick(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(c) = &self.vol.dkg_collect {
            if c.started_at + self.cfg.params.dkg_period * BATCH_ATTEMPT_TICKS > ctx.now {
                // Still open: something was lost. Every operator re-sends its part (idempotent).
                let (batch, count) = (c.batch, self.cfg.params.dkg_batch);
                for op in self.all_operators() {
                    Self::internal(ctx, op, InternalRequest::DkgStart { batch, count });
                }
                ctx.set_timer(self.cfg.params.dkg_period, TimerKind::DkgPool);
                return;
            }
            ctx.observe(Observation::Rejected { what: format!("{} DKG batch {}", self.cfg.id, c.batch), reason: "abandoned: not every operator reported".into() });
            self.vol.dkg_collect = None;
        }
        if self.store.read().pool.len() >= self.cfg.params.dkg_pool_min {
            return; // re-armed when a key is taken
        }
        let mut db = self.store.begin();
        let batch = (u64::from(self.cfg.id.0) << 48) | db.dkg_batches_started;
        db.dkg_batches_started += 1;
        self.store.commit(db);
        self.vol.dkg_collect = Some(Collect { batch, started_at: ctx.now, reports: BTreeMap::new() });
        let count = self.cfg.params.dkg_batch;
        for op in self.all_operators() {
            Self::internal(ctx, op, InternalRequest::DkgStart { batch, count });
        }
        ctx.set_timer(self.cfg.params.dkg_period, TimerKind::DkgPool);
    }

    fn batch(&mut self, batch: u64) -> Option<&mut BatchState> {
        if !self.vol.dkg.contains_key(&batch) {
            self.vol.dkg.retain(|_, s| !s.done);
            if self.vol.dkg.len() >= MAX_OPEN_BATCHES {
                return None;
            }
        }
        Some(self.vol.dkg.entry(batch).or_default())
    }

    pub(super) fn dkg_start(&mut self, ctx: &mut Ctx<'_>, from: OperatorId, batch: u64, count: u16) {
        let (me, n, t) = (self.cfg.id, self.cfg.params.operators, self.cfg.params.threshold);
        if u64::from(from.0) != batch >> 48 {
            return;
        }
        // The coordinator moved on: its older batches will never complete here.
        self.vol.dkg.retain(|b, s| b >> 48 != batch >> 48 || *b >= batch || s.done);
        let Some(state) = self.batch(batch) else { return };
        if state.sent_round1.is_some() {
            return self.dkg_resend(ctx, from, batch);
        }
        if state.secret1.is_some() || state.done {
            return;
        }
        match dkg::part1(me, n, t, usize::from(count), ctx.rng) {
            Err(e) => ctx.observe(Observation::Rejected { what: format!("{me} DKG part1"), reason: e.to_string() }),
            Ok((secret, packages)) => {
                let state = self.vol.dkg.entry(batch).or_default();
                state.coordinator = Some(from);
                state.secret1 = Some(secret);
                state.sent_round1 = Some(packages.clone());
                for op in self.others() {
                    Self::internal(ctx, op, InternalRequest::DkgRound1 { batch, packages: packages.clone() });
                }
                self.dkg_try_round2(ctx, batch);
            }
        }
    }

    /// A duplicate DkgStart: re-send this operator's part of the batch so far (a peer or the
    /// coordinator may have lost it). Re-sent packages are the same bytes, so receivers that
    /// already have them change nothing.
    fn dkg_resend(&mut self, ctx: &mut Ctx<'_>, from: OperatorId, batch: u64) {
        let others = self.others();
        let Some(state) = self.vol.dkg.get(&batch) else { return };
        if state.coordinator != Some(from) {
            return;
        }
        let mut out = Vec::new();
        if let Some(packages) = &state.sent_round1 {
            out.extend(others.iter().map(|op| (*op, InternalRequest::DkgRound1 { batch, packages: packages.clone() })));
        }
        out.extend(state.sent_round2.iter().map(|(op, packages)| (*op, InternalRequest::DkgRound2 { batch, packages: packages.clone() })));
        if let Some(public_keys) = &state.sent_done {
            out.push((from, InternalRequest::DkgDone { batch, public_keys: public_keys.clone() }));
        }
        for (op, body) in out {
            Self::internal(ctx, op, body);
        }
    }

    pub(super) fn dkg_round1(&mut self, ctx: &mut Ctx<'_>, from: OperatorId, batch: u64, packages: Vec<Vec<u8>>) {
        let Some(state) = self.batch(batch) else { return };
        if state.done || state.secret2.is_some() {
            return; // a re-sent package this operator already used
        }
        state.round1.insert(from, packages);
        self.dkg_try_round2(ctx, batch);
    }

    fn dkg_try_round2(&mut self, ctx: &mut Ctx<'_>, batch: u64) {
        let others = usize::from(self.cfg.params.operators) - 1;
        let Some(state) = self.vol.dkg.get_mut(&batch) else { return };
        if state.secret1.is_none() || state.round1.len() < others {
            return;
        }
        let Some(secret1) = state.secret1.take() else { return };
        match dkg::part2(secret1, &state.round1) {
            Err(e) => ctx.observe(Observation::Rejected { what: format!("{} DKG part2", self.cfg.id), reason: e.to_string() }),
            Ok((secret2, outgoing)) => {
                state.secret2 = Some(secret2);
                state.sent_round2 = outgoing.clone();
                for (op, packages) in outgoing {
                    Self::internal(ctx, op, InternalRequest::DkgRound2 { batch, packages });
                }
                self.dkg_try_round3(ctx, batch);
            }
        }
    }

    pub(super) fn dkg_round2(&mut self, ctx: &mut Ctx<'_>, from: OperatorId, batch: u64, packages: Vec<Vec<u8>>) {
        let Some(state) = self.batch(batch) else { return };
        if state.done {
            return; // a re-sent package this operator already used
        }
        state.round2.insert(from, packages);
        self.dkg_try_round3(ctx, batch);
    }

    fn dkg_try_round3(&mut self, ctx: &mut Ctx<'_>, batch: u64) {
        let me = self.cfg.id;
        let others = usize::from(self.cfg.params.operators) - 1;
        let Some(state) = self.vol.dkg.get_mut(&batch) else { return };
        if state.done || state.round2.len() < others {
            return;
        }
        let (Some(secret2), Some(coordinator)) = (state.secret2.take(), state.coordinator) else { return };
        state.done = true;
        let result = dkg::part3(me, &secret2, &state.round1, &state.round2);
        state.round1.clear();
        state.round2.clear();
        match result {
            Err(e) => ctx.observe(Observation::Rejected { what: format!("{me} DKG part3"), reason: e.to_string() }),
            Ok(shares) => {
                let public_keys: Vec<PublicKey> = shares.iter().map(|s| s.public_key).collect();
                state.sent_done = Some(public_keys.clone());
                let mut db = self.store.begin();
                for (i, share) in shares.into_iter().enumerate() {
                    db.keyshares.insert(keyshare_id(batch, i), KeyshareRow { status: KeyshareStatus::Available, share, coordinator, epoch: 0 });
                }
                self.store.commit(db);
                Self::internal(ctx, coordinator, InternalRequest::DkgDone { batch, public_keys });
            }
        }
    }

    /// Coordinator: a participant finished; when all did and agree, the keys join the pool.
    pub(super) fn dkg_done(&mut self, ctx: &mut Ctx<'_>, from: OperatorId, batch: u64, public_keys: Vec<PublicKey>) {
        let n = usize::from(self.cfg.params.operators);
        let Some(c) = self.vol.dkg_collect.as_mut().filter(|c| c.batch == batch) else { return };
        c.reports.insert(from, public_keys);
        if c.reports.len() < n {
            return;
        }
        let Some(c) = self.vol.dkg_collect.take() else { return };
        let mut reports = c.reports.values();
        let first = reports.next().cloned().unwrap_or_default();
        if reports.any(|r| *r != first) {
            ctx.observe(Observation::Rejected { what: format!("{} DKG batch {batch}", self.cfg.id), reason: "operators disagree on the public keys".into() });
            return;
        }
        let mut db = self.store.begin();
        for (i, public_key) in first.iter().enumerate() {
            let id = keyshare_id(batch, i);
            if db.keyshares.get(&id).is_some_and(|k| k.share.public_key == *public_key) {
                db.pool.insert(id);
            }
        }
        self.store.commit(db);
        ctx.set_timer(Micros::ZERO, TimerKind::DkgPool);
    }
}
