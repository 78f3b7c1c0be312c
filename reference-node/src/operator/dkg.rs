//! The keyshare pool (spark-protocol §2.3): a coordinator keeps a pool of DKG keys ahead of need,
//! generated in batches by all operators over the network; a key enters the pool only when every
//! operator reported the same public key for it.
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
}

/// The coordinator's tally of one batch.
pub(super) struct Collect {
    batch: u64,
    started_at: Micros,
    reports: BTreeMap<OperatorId, Vec<PublicKey>>,
}

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
            if c.started_at + self.cfg.params.request_timeout * 12 > ctx.now {
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
        let Some(state) = self.batch(batch) else { return };
        if state.secret1.is_some() || state.done {
            return;
        }
        match dkg::part1(me, n, t, usize::from(count), ctx.rng) {
            Err(e) => ctx.observe(Observation::Rejected { what: format!("{me} DKG part1"), reason: e.to_string() }),
            Ok((secret, packages)) => {
                let state = self.vol.dkg.entry(batch).or_default();
                state.coordinator = Some(from);
                state.secret1 = Some(secret);
                for op in self.others() {
                    Self::internal(ctx, op, InternalRequest::DkgRound1 { batch, packages: packages.clone() });
                }
                self.dkg_try_round2(ctx, batch);
            }
        }
    }

    pub(super) fn dkg_round1(&mut self, ctx: &mut Ctx<'_>, from: OperatorId, batch: u64, packages: Vec<Vec<u8>>) {
        let Some(state) = self.batch(batch) else { return };
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
                for (op, packages) in outgoing {
                    Self::internal(ctx, op, InternalRequest::DkgRound2 { batch, packages });
                }
                self.dkg_try_round3(ctx, batch);
            }
        }
    }

    pub(super) fn dkg_round2(&mut self, ctx: &mut Ctx<'_>, from: OperatorId, batch: u64, packages: Vec<Vec<u8>>) {
        let Some(state) = self.batch(batch) else { return };
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
                let public_keys = shares.iter().map(|s| s.public_key).collect();
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
