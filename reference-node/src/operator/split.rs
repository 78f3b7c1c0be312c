//! Split (spark-protocol §2.6, §3.1): a leaf becomes a branch with one child leaf per requested
//! value. Three wallet calls, each idempotent so a wallet may retry after any loss or crash:
//!
//! 1. `SplitPrepare`: the coordinator checks the request (owner, AVAILABLE, values sum exactly,
//!    the children's user public keys sum to the parent's), takes a fresh pool keyshare for every
//!    child but the last and asks **every** operator to `SplitReserve`: lock the parent
//!    (SPLIT_LOCKED, I-4), mark those keyshares used and compute the last child's share-wise
//!    (`S_last = S − Σ S_c`, `crypto::keysplit`). Every operator reports the children's SE keys;
//!    they must agree (I-3).
//! 2. `SplitSign`: the coordinator rebuilds the split node, child node and refund txs from its
//!    tables, byte-compares the wallet's (`CompareTransactions`), and runs FROST for each keyshare
//!    (parent's for the split node, each child's for its node and refunds). Signers rebuild and
//!    compare too, and refuse a plan other than the one they signed for.
//! 3. `SplitFinalize`: the coordinator verifies every signature, commits the split (parent
//!    SPLITTED, children AVAILABLE) and gossips `FinalizeSplit` durably, so either every operator
//!    ends with the split or — if the coordinator dies before this commit — none does (the
//!    parent stays locked: the wallet may hold a signed split node, so it can never be sent
//!    whole again; the wallet retries the same plan).
use super::store::{Db, KeyshareRow, KeyshareStatus, LeafRow, LeafStatus, SplitRow};
use super::grouped_signing::{check_round2, group_user_jobs, JobGroups, JobSpec};
use super::{Operator, SessionKind, Step, WalletCall};
use crate::crypto::keysplit;
use crate::crypto::{curve, PublicKey};
use crate::msg::{GossipBody, InternalReply, InternalRequest, LeafRecord, NodeSet, OperatorSigningResult, RefundSet, UserJob, WalletReply};
use crate::node::Ctx;
use crate::split_msg::{last_child_keyshare, PlannedChild, SplitChildKeys, SplitChildRequest, SplitRecord};
use crate::tx::split::{self as split_tx, ChildSpec, SplitTxs, JOBS_PER_CHILD};
use crate::types::{KeyshareId, LeafId, OperatorId};
use bitcoin::{Amount, Transaction, TxOut};
use std::collections::BTreeMap;

pub(super) struct PrepareSession {
    pub call: WalletCall,
    plan: Vec<PlannedChild>,
}

/// FROST over several keyshares for one split or aggregate (operator/aggregate.rs shares it).
pub(super) struct SignSession {
    pub call: WalletCall,
    pub parent: LeafId,
    pub signers: Vec<OperatorId>,
    /// Jobs per keyshare, in job order (split: the parent's, then each child's).
    pub groups: JobGroups,
    pub txs: Vec<Transaction>,
    /// An aggregation's signing (its round-2 request is `AggregateRound2`).
    pub aggregate: bool,
}

/// Everything a split's signing is checked against, rebuilt from one operator's tables.
struct Expected {
    txs: SplitTxs,
    /// Per tx in job order: the outputs it spends, its keyshare, Y and the user key.
    jobs: Vec<ExpectedJob>,
}

struct ExpectedJob {
    prevouts: Vec<TxOut>,
    keyshare: KeyshareId,
    verifying_key: PublicKey,
    user_public_key: PublicKey,
}

impl Expected {
    /// The signing jobs over `txs` (`txs.in_job_order()`, one job per tx, input 0).
    fn specs<'a>(&'a self, txs: &'a [Transaction]) -> Vec<JobSpec<'a>> {
        txs.iter()
            .zip(&self.jobs)
            .map(|(tx, e)| JobSpec { tx, input: 0, prevouts: &e.prevouts, keyshare: e.keyshare, verifying_key: e.verifying_key, user_public_key: e.user_public_key })
            .collect()
    }
}

/// The checks shared by the coordinator and every participant on a split request.
fn check_request(row: &LeafRow, owner_identity: &PublicKey, values: &[u64], signing_keys: &[PublicKey]) -> Result<(), String> {
    if row.owner_identity != *owner_identity {
        return Err("the leaf belongs to another identity".into());
    }
    let parent_value = row.nodes.cpfp.output.first().map(|o| o.value).ok_or("parent node tx has no output 0")?;
    if parent_value.to_sat() != row.value_sats {
        return Err(format!("parent node output holds {} sat, the leaf {} sat", parent_value.to_sat(), row.value_sats));
    }
    let amounts: Vec<Amount> = values.iter().map(|v| Amount::from_sat(*v)).collect();
    split_tx::check_values(parent_value, &amounts).map_err(|e| e.to_string())?;
    keysplit::check_user_keys_sum(&row.owner_signing_key, signing_keys).map_err(|e| e.to_string())
}

impl Operator {
    /// Coordinator, step 1.
    pub(super) fn split_prepare(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, identity: PublicKey, leaf: LeafId, children: Vec<SplitChildRequest>) {
        match self.plan_split(ctx, identity, leaf, &children) {
            Err(e) => Self::reply_wallet(ctx, call, Err(e)),
            Ok(plan) => {
                let req = InternalRequest::SplitReserve { parent: leaf, owner_identity: identity, plan: plan.clone() };
                let requests = self.all_operators().into_iter().map(|o| (o, req.clone())).collect();
                self.start_session(ctx, SessionKind::SplitPrepare(PrepareSession { call, plan }), requests);
            }
        }
    }

    /// The plan for a split: the stored one on a retry of the same request, else a new one with
    /// fresh pool keyshares for every child but the last.
    fn plan_split(&mut self, ctx: &mut Ctx<'_>, identity: PublicKey, leaf: LeafId, children: &[SplitChildRequest]) -> Result<Vec<PlannedChild>, String> {
        let mut db = self.store.begin();
        let row = db.leaves.get(&leaf).ok_or_else(|| format!("unknown leaf {leaf}"))?;
        let values: Vec<u64> = children.iter().map(|c| c.value_sats).collect();
        let keys: Vec<PublicKey> = children.iter().map(|c| c.signing_key).collect();
        check_request(row, &identity, &values, &keys)?;
        if let Some(existing) = db.splits.get(&leaf) {
            let same = existing.plan.len() == children.len() && existing.plan.iter().zip(children).all(|(p, c)| p.leaf == c.leaf && p.value_sats == c.value_sats && p.signing_key == c.signing_key);
            return if same { Ok(existing.plan.clone()) } else { Err(format!("a different split of leaf {leaf} is already planned")) };
        }
        if row.status != LeafStatus::Available {
            return Err(format!("leaf {leaf} is {:?}, not AVAILABLE", row.status));
        }
        let parent_keyshare = row.keyshare;
        for (i, c) in children.iter().enumerate() {
            if db.leaves.contains_key(&c.leaf) || children[..i].iter().any(|o| o.leaf == c.leaf) {
                return Err(format!("child leaf {} already exists", c.leaf));
            }
        }
        let fresh: Vec<KeyshareId> = db.pool.iter().take(children.len() - 1).copied().collect();
        if fresh.len() + 1 < children.len() {
            return Err("keyshare pool empty, retry later".into());
        }
        for k in &fresh {
            db.pool.remove(k);
        }
        if db.pool.len() < self.cfg.params.dkg_pool_min {
            ctx.set_timer(crate::types::Micros::ZERO, crate::node::TimerKind::DkgPool);
        }
        self.store.commit(db);
        let last = children.last().map(|c| last_child_keyshare(parent_keyshare, c.leaf)).ok_or("no children")?;
        Ok(children
            .iter()
            .zip(fresh.into_iter().chain(std::iter::once(last)))
            .map(|(c, keyshare)| PlannedChild { leaf: c.leaf, value_sats: c.value_sats, signing_key: c.signing_key, keyshare })
            .collect())
    }

    /// Participant (and coordinator), step 1: lock the parent and reserve the children's keys.
    pub(super) fn split_reserve(&mut self, from: OperatorId, parent: LeafId, owner_identity: PublicKey, plan: Vec<PlannedChild>) -> Result<InternalReply, String> {
        let mut db = self.store.begin();
        let keys = self.reserve_in(&mut db, from, parent, owner_identity, &plan)?;
        self.store.commit(db);
        Ok(InternalReply::SplitReserved { se_public_keys: keys })
    }

    /// Reserve `plan` for `parent` in `db` (idempotent): returns each child's SE public key.
    fn reserve_in(&self, db: &mut Db, coordinator: OperatorId, parent: LeafId, owner_identity: PublicKey, plan: &[PlannedChild]) -> Result<Vec<PublicKey>, String> {
        let row = db.leaves.get(&parent).ok_or_else(|| format!("unknown leaf {parent}"))?;
        let values: Vec<u64> = plan.iter().map(|c| c.value_sats).collect();
        let signing_keys: Vec<PublicKey> = plan.iter().map(|c| c.signing_key).collect();
        check_request(row, &owner_identity, &values, &signing_keys)?;
        let (status, parent_keyshare) = (row.status, row.keyshare);
        match db.splits.get(&parent) {
            Some(existing) if existing.plan == plan => return self.child_public_keys(db, plan),
            Some(existing) if existing.signed || existing.split_nodes.is_some() => {
                return Err(format!("leaf {parent} is already split under another plan"));
            }
            // A plan this operator never signed for may be replaced (a coordinator that lost
            // its own reservation re-plans): no signature can exist for it.
            _ => {}
        }
        if !matches!(status, LeafStatus::Available | LeafStatus::SplitLocked) {
            return Err(format!("leaf {parent} is {status:?}, not AVAILABLE"));
        }
        let last = plan.last().ok_or("empty plan")?;
        if last.keyshare != last_child_keyshare(parent_keyshare, last.leaf) {
            return Err("the last child's keyshare id is not derived from the parent's".into());
        }
        let mut others = Vec::new();
        for c in &plan[..plan.len() - 1] {
            let ks = db.keyshares.get(&c.keyshare).ok_or_else(|| format!("unknown keyshare {}", c.keyshare))?;
            if db.deposit_addresses.contains_key(&c.keyshare) || db.leaves.values().any(|l| l.keyshare == c.keyshare) {
                return Err(format!("keyshare {} is already in use", c.keyshare));
            }
            others.push(ks.share.clone());
        }
        let parent_share = &db.keyshares.get(&parent_keyshare).ok_or("parent keyshare vanished")?.share;
        let refs: Vec<&_> = others.iter().collect();
        let last_share = keysplit::last_child_share(parent_share, &refs).map_err(|e| e.to_string())?;
        last_share.check_consistent(self.cfg.id).map_err(|e| format!("last child's share: {e}"))?;
        for c in &plan[..plan.len() - 1] {
            if let Some(ks) = db.keyshares.get_mut(&c.keyshare) {
                ks.status = KeyshareStatus::InUse;
            }
            db.pool.remove(&c.keyshare);
        }
        db.keyshares.insert(last.keyshare, KeyshareRow { status: KeyshareStatus::InUse, share: last_share, coordinator, epoch: 0 });
        if let Some(r) = db.leaves.get_mut(&parent) {
            r.status = LeafStatus::SplitLocked;
        }
        db.splits.insert(parent, SplitRow { owner_identity, coordinator, plan: plan.to_vec(), signed: false, split_nodes: None });
        self.child_public_keys(db, plan)
    }

    fn child_public_keys(&self, db: &Db, plan: &[PlannedChild]) -> Result<Vec<PublicKey>, String> {
        plan.iter().map(|c| db.keyshares.get(&c.keyshare).map(|k| k.share.public_key).ok_or_else(|| format!("unknown keyshare {}", c.keyshare))).collect()
    }

    pub(super) fn split_prepare_advance(&mut self, ctx: &mut Ctx<'_>, s: PrepareSession, replies: BTreeMap<OperatorId, InternalReply>) -> Step<PrepareSession> {
        let mut agreed: Option<Vec<PublicKey>> = None;
        for (op, r) in replies {
            let InternalReply::SplitReserved { se_public_keys } = r else {
                Self::reply_wallet(ctx, s.call, Err(format!("{op} sent no split reservation")));
                return Step::Done;
            };
            match &agreed {
                Some(keys) if *keys != se_public_keys => {
                    let reason = format!("{op} computed different SE keys for the split's children");
                    self.name_culprit(ctx, op, reason.clone());
                    Self::reply_wallet(ctx, s.call, Err(reason));
                    return Step::Done;
                }
                _ => agreed = Some(se_public_keys),
            }
        }
        let result = agreed.ok_or_else(|| "no operator answered".to_string()).and_then(|keys| {
            s.plan
                .iter()
                .zip(keys)
                .map(|(c, se)| {
                    let y = curve::point_add(&c.signing_key, &se).ok_or("degenerate child key")?;
                    Ok(SplitChildKeys { leaf: c.leaf, se_public_key: se, verifying_key: y })
                })
                .collect::<Result<Vec<_>, String>>()
        });
        Self::reply_wallet(ctx, s.call, result.map(|children| WalletReply::SplitPlanned { children }));
        Step::Done
    }

    /// The split's txs and signing jobs as this operator's tables define them.
    fn expected_split(&self, db: &Db, parent: LeafId) -> Result<Expected, String> {
        let row = db.leaves.get(&parent).ok_or_else(|| format!("unknown leaf {parent}"))?;
        let split = db.splits.get(&parent).ok_or_else(|| format!("no split planned for leaf {parent}"))?;
        let mut specs = Vec::new();
        let mut child_keys = Vec::new();
        for c in &split.plan {
            let se = db.keyshares.get(&c.keyshare).ok_or_else(|| format!("unknown keyshare {}", c.keyshare))?.share.public_key;
            let y = curve::point_add(&c.signing_key, &se).ok_or("degenerate child key")?;
            specs.push(ChildSpec { value: Amount::from_sat(c.value_sats), verifying_key: y, owner_signing_key: c.signing_key });
            child_keys.push((c.keyshare, y, c.signing_key));
        }
        let txs = split_tx::split_txs(&row.nodes.cpfp, &specs).map_err(|e| e.to_string())?;
        let parent_out = row.nodes.cpfp.output.first().ok_or("parent node tx has no output 0")?.clone();
        let mut prevouts = txs.prevouts(&parent_out).into_iter();
        let mut jobs = Vec::new();
        for _ in 0..2 {
            jobs.push(ExpectedJob { prevouts: prevouts.next().ok_or("prevouts")?, keyshare: row.keyshare, verifying_key: row.verifying_key, user_public_key: row.owner_signing_key });
        }
        for (ks, y, user) in child_keys {
            for _ in 0..JOBS_PER_CHILD {
                jobs.push(ExpectedJob { prevouts: prevouts.next().ok_or("prevouts")?, keyshare: ks, verifying_key: y, user_public_key: user });
            }
        }
        Ok(Expected { txs, jobs })
    }

    /// Coordinator, step 2.
    pub(super) fn split_sign(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, identity: PublicKey, parent: LeafId, jobs: Vec<UserJob>) {
        match self.split_signing_jobs(identity, parent, jobs) {
            Err(e) => Self::reply_wallet(ctx, call, Err(e)),
            Ok((groups, txs)) => {
                let signers = self.choose_signers(ctx);
                let counts: Vec<(KeyshareId, u8)> = groups.iter().map(|(k, j)| (*k, j.len() as u8)).collect();
                let req = InternalRequest::SplitRound1 { parent, counts };
                let requests = signers.iter().map(|o| (*o, req.clone())).collect();
                self.start_session(ctx, SessionKind::SplitSign(Box::new(SignSession { call, parent, signers, groups, txs, aggregate: false })), requests);
            }
        }
    }

    fn split_signing_jobs(&self, identity: PublicKey, parent: LeafId, jobs: Vec<UserJob>) -> Result<(JobGroups, Vec<Transaction>), String> {
        let db = self.store.read();
        let split = db.splits.get(&parent).ok_or_else(|| format!("no split planned for leaf {parent}"))?;
        if split.owner_identity != identity {
            return Err("the split belongs to another identity".into());
        }
        if split.split_nodes.is_some() {
            return Err(format!("leaf {parent} is already split"));
        }
        let expected = self.expected_split(db, parent)?;
        let txs = expected.txs.in_job_order();
        let groups = group_user_jobs(jobs, &expected.specs(&txs))?;
        Ok((groups, txs))
    }

    pub(super) fn split_sign_advance(&mut self, ctx: &mut Ctx<'_>, phase: u8, mut s: SignSession, replies: BTreeMap<OperatorId, InternalReply>) -> Step<SignSession> {
        if phase == 1 {
            // Per keyshare group, the round-1 replies as the deposit flow reads them.
            for (g, (keyshare, jobs)) in s.groups.iter_mut().enumerate() {
                let mut per_group = BTreeMap::new();
                for (op, r) in &replies {
                    let InternalReply::CommitmentsBatch(v) = r else {
                        Self::reply_wallet(ctx, s.call, Err(format!("{op} sent no commitments")));
                        return Step::Done;
                    };
                    let Some((commitments, se_public_key)) = v.get(g).cloned() else {
                        Self::reply_wallet(ctx, s.call, Err(format!("{op} sent too few commitment groups")));
                        return Step::Done;
                    };
                    per_group.insert(*op, InternalReply::Commitments { commitments, se_public_key });
                }
                if let Err(e) = self.attach_commitments(ctx, *keyshare, jobs, per_group) {
                    Self::reply_wallet(ctx, s.call, Err(e));
                    return Step::Done;
                }
            }
            let req = if s.aggregate {
                InternalRequest::AggregateRound2 { parent: s.parent, txs: s.txs.clone(), jobs: s.groups.clone() }
            } else {
                InternalRequest::SplitRound2 { parent: s.parent, txs: s.txs.clone(), jobs: s.groups.clone() }
            };
            let requests = s.signers.iter().map(|o| (*o, req.clone())).collect();
            return Step::Next(s, requests);
        }
        let mut results: Vec<OperatorSigningResult> = Vec::new();
        for (g, (keyshare, jobs)) in s.groups.iter().enumerate() {
            let mut per_group = BTreeMap::new();
            for (op, r) in &replies {
                let InternalReply::SharesBatch(v) = r else {
                    Self::reply_wallet(ctx, s.call, Err(format!("{op} sent no shares")));
                    return Step::Done;
                };
                per_group.insert(*op, InternalReply::Shares(v.get(g).cloned().unwrap_or_default()));
            }
            match self.signing_results(ctx, *keyshare, jobs, per_group) {
                Ok(r) => results.extend(r),
                Err(e) => {
                    Self::reply_wallet(ctx, s.call, Err(e));
                    return Step::Done;
                }
            }
        }
        Self::reply_wallet(ctx, s.call, Ok(WalletReply::Signing { results }));
        Step::Done
    }

    /// Participant, step 2 round 1: nonces for each keyshare of a reserved split.
    pub(super) fn split_round1(&mut self, ctx: &mut Ctx<'_>, parent: LeafId, counts: Vec<(KeyshareId, u8)>) -> Result<InternalReply, String> {
        let allowed = self.split_keyshares(parent)?;
        self.frost_round1_groups(ctx, counts, &allowed, &format!("split of {parent}"))
    }

    /// The parent's keyshare and the children's, for a split not yet finalized here.
    fn split_keyshares(&self, parent: LeafId) -> Result<Vec<KeyshareId>, String> {
        let db = self.store.read();
        let split = db.splits.get(&parent).ok_or_else(|| format!("no split reserved for leaf {parent}"))?;
        let row = db.leaves.get(&parent).ok_or_else(|| format!("unknown leaf {parent}"))?;
        if row.status != LeafStatus::SplitLocked {
            return Err(format!("leaf {parent} is {:?}, not SPLIT_LOCKED", row.status));
        }
        Ok(std::iter::once(row.keyshare).chain(split.plan.iter().map(|c| c.keyshare)).collect())
    }

    /// Participant, step 2 round 2: rebuild, compare, then sign each group.
    pub(super) fn split_round2(&mut self, ctx: &mut Ctx<'_>, parent: LeafId, txs: Vec<Transaction>, groups: JobGroups) -> Result<InternalReply, String> {
        self.split_keyshares(parent)?;
        let expected = self.expected_split(self.store.read(), parent)?;
        let mine = expected.txs.in_job_order();
        check_round2("split", &mine, &txs, &expected.specs(&mine), &groups)?;
        // Durable before any share leaves: this operator never signs another plan for `parent`.
        let mut db = self.store.begin();
        if let Some(s) = db.splits.get_mut(&parent) {
            s.signed = true;
        }
        self.store.commit(db);
        self.frost_round2_groups(ctx, groups)
    }

    /// Coordinator, step 3: verify the aggregated signatures, commit the split, gossip it.
    pub(super) fn split_finalize(&mut self, ctx: &mut Ctx<'_>, identity: PublicKey, parent: LeafId, signed: Vec<Transaction>) -> Result<(), String> {
        let db = self.store.read();
        let split = db.splits.get(&parent).ok_or_else(|| format!("no split planned for leaf {parent}"))?.clone();
        if split.owner_identity != identity {
            return Err("the split belongs to another identity".into());
        }
        if split.split_nodes.is_some() {
            return Ok(()); // a retried finalize
        }
        let row = db.leaves.get(&parent).ok_or_else(|| format!("unknown leaf {parent}"))?.clone();
        let expected = self.expected_split(db, parent)?;
        let txs = expected.txs.in_job_order();
        if signed.len() != txs.len() {
            return Err(format!("expected {} signed txs, found {}", txs.len(), signed.len()));
        }
        for (i, ((tx, e), s)) in txs.iter().zip(&expected.jobs).zip(&signed).enumerate() {
            super::check_signed(tx, s, &e.prevouts, &e.verifying_key).map_err(|err| format!("tx {i}: {err}"))?;
        }
        let mut it = signed.into_iter();
        let mut next = || it.next().ok_or_else(|| "wrong number of signed txs".to_string());
        let split_nodes = NodeSet { cpfp: next()?, direct: next()? };
        let mut children = Vec::new();
        // A child's exit chain: the parent's layers, then the split node, then its own node.
        let mut ancestors: Vec<NodeSet> = row.exit_layers().cloned().collect();
        ancestors.push(split_nodes.clone());
        for (c, e) in split.plan.iter().zip(expected.jobs.iter().skip(2).step_by(JOBS_PER_CHILD)) {
            let nodes = NodeSet { cpfp: next()?, direct: next()? };
            let refunds = RefundSet { cpfp: next()?, direct: next()?, direct_from_cpfp: next()? };
            children.push(LeafRecord {
                leaf: c.leaf,
                keyshare: c.keyshare,
                value_sats: c.value_sats,
                verifying_key: e.verifying_key,
                owner_identity: row.owner_identity,
                owner_signing_key: c.signing_key,
                deposit_outpoint: row.deposit_outpoint,
                nodes,
                refunds,
                ancestors: ancestors.clone(),
            });
        }
        let record = SplitRecord { parent, owner_identity: identity, plan: split.plan.clone(), split_nodes, children };
        let mut db = self.store.begin();
        self.apply_split(&mut db, self.cfg.id, &record)?;
        let seq = Self::gossip_create(&mut db, GossipBody::FinalizeSplit { split: record }, self.others());
        self.store.commit(db);
        self.gossip_push(ctx, seq);
        Ok(())
    }

    /// Apply a finalized split (coordinator commit or `FinalizeSplit` gossip): idempotent. An
    /// operator that missed the reservation reserves now, from the record's plan.
    pub(super) fn apply_split(&self, db: &mut Db, coordinator: OperatorId, record: &SplitRecord) -> Result<(), String> {
        if db.splits.get(&record.parent).is_some_and(|s| s.split_nodes.is_some()) {
            return Ok(());
        }
        if db.leaves.get(&record.parent).is_some_and(|r| r.status == LeafStatus::OnChain) {
            return Err(format!("leaf {} is on chain", record.parent));
        }
        let keys = self.reserve_in(db, coordinator, record.parent, record.owner_identity, &record.plan)?;
        if record.children.len() != record.plan.len() {
            return Err("split record has a child count other than its plan's".into());
        }
        for ((c, p), se) in record.children.iter().zip(&record.plan).zip(&keys) {
            if c.leaf != p.leaf || c.keyshare != p.keyshare || c.owner_signing_key != p.signing_key || c.value_sats != p.value_sats {
                return Err(format!("split record child {} differs from the plan", c.leaf));
            }
            if curve::point_add(se, &c.owner_signing_key) != Some(c.verifying_key) {
                return Err(format!("child {} key is not owner key + SE key", c.leaf));
            }
        }
        let split_txid = record.split_nodes.cpfp.compute_txid();
        for (vout, c) in record.children.iter().enumerate() {
            db.leaf_by_split_output.insert(bitcoin::OutPoint { txid: split_txid, vout: vout as u32 }, c.leaf);
            db.split_parent.insert(c.leaf, record.parent);
            db.leaves.insert(
                c.leaf,
                LeafRow {
                    status: LeafStatus::Available,
                    keyshare: c.keyshare,
                    value_sats: c.value_sats,
                    verifying_key: c.verifying_key,
                    owner_identity: c.owner_identity,
                    owner_signing_key: c.owner_signing_key,
                    deposit_outpoint: c.deposit_outpoint,
                    nodes: c.nodes.clone(),
                    refunds: c.refunds.clone(),
                    ancestors: c.ancestors.clone(),
                },
            );
        }
        if let Some(r) = db.leaves.get_mut(&record.parent) {
            r.status = LeafStatus::Splitted;
        }
        if let Some(s) = db.splits.get_mut(&record.parent) {
            s.split_nodes = Some(record.split_nodes.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::signing::KeyShare;
    use crate::crypto::{secp, Scalar, SecretKey};
    use crate::operator::OperatorConfig;
    use crate::params::{Directory, Params};
    use crate::tx::template::{self, p2tr_script};
    use bitcoin::OutPoint;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::sync::Arc;

    const PARENT: LeafId = LeafId([1; 16]);
    const PARENT_KS: KeyshareId = KeyshareId([9; 16]);
    const POOL_KS: KeyshareId = KeyshareId([8; 16]);

    struct Setup {
        op: Operator,
        identity: PublicKey,
        user: Scalar,
        rng: ChaCha20Rng,
    }

    /// Operator 0 of 3 (threshold 2) holding one AVAILABLE 100 000 sat leaf with a real root
    /// node tx, and one pool keyshare.
    fn setup() -> Setup {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let cfg = OperatorConfig { id: OperatorId(0), identity: SecretKey::new(&mut rng), params: Arc::new(Params::new(3, 2)), directory: Arc::new(Directory::default()) };
        let mut op = Operator::new(cfg);
        let identity = SecretKey::new(&mut rng).public_key(secp());
        let user = Scalar::random(&mut rng);
        let se = KeyShare::deal(&Scalar::random(&mut rng), 3, 2, &mut rng).expect("deal").remove(0);
        let pool = KeyShare::deal(&Scalar::random(&mut rng), 3, 2, &mut rng).expect("deal").remove(0);
        let user_pk = curve::base_mul(&user).expect("nonzero");
        let y = curve::point_add(&user_pk, &se.public_key).expect("key");
        let deposit = TxOut { value: Amount::from_sat(100_000), script_pubkey: p2tr_script(&y) };
        let outpoint = OutPoint { txid: bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros()), vout: 0 };
        let root = template::node_txs(outpoint, &deposit, bitcoin::Sequence(0), bitcoin::Sequence(50));
        let nodes = NodeSet { cpfp: root.cpfp, direct: root.direct };
        let refunds = nodes.refunds_to(&user_pk, bitcoin::Sequence(2000), bitcoin::Sequence(2050)).expect("refunds");
        let mut db = op.store.begin();
        db.keyshares.insert(PARENT_KS, KeyshareRow { status: KeyshareStatus::InUse, share: se, coordinator: OperatorId(0), epoch: 0 });
        db.keyshares.insert(POOL_KS, KeyshareRow { status: KeyshareStatus::Available, share: pool, coordinator: OperatorId(0), epoch: 0 });
        db.pool.insert(POOL_KS);
        db.leaves.insert(
            PARENT,
            LeafRow {
                status: LeafStatus::Available,
                keyshare: PARENT_KS,
                value_sats: 100_000,
                verifying_key: y,
                owner_identity: identity,
                owner_signing_key: user_pk,
                deposit_outpoint: outpoint,
                nodes,
                refunds,
                ancestors: Vec::new(),
            },
        );
        op.store.commit(db);
        Setup { op, identity, user, rng }
    }

    fn plan(s: &mut Setup, values: [u64; 2], keys_sum: bool) -> Vec<PlannedChild> {
        let mut keys = keysplit::split_user_key(&s.user, 2, || Scalar::random(&mut s.rng)).expect("split");
        if !keys_sum {
            keys[1] = Scalar::random(&mut s.rng);
        }
        let (a, b) = (LeafId([2; 16]), LeafId([3; 16]));
        vec![
            PlannedChild { leaf: a, value_sats: values[0], signing_key: curve::base_mul(&keys[0]).expect("key"), keyshare: POOL_KS },
            PlannedChild { leaf: b, value_sats: values[1], signing_key: curve::base_mul(&keys[1]).expect("key"), keyshare: last_child_keyshare(PARENT_KS, b) },
        ]
    }

    #[test]
    fn reserve_locks_the_parent_and_computes_the_last_share() {
        let mut s = setup();
        let p = plan(&mut s, [65_536, 34_464], true);
        let reply = s.op.split_reserve(OperatorId(0), PARENT, s.identity, p.clone()).expect("reserved");
        let InternalReply::SplitReserved { se_public_keys } = reply else { panic!("{reply:?}") };
        let db = s.op.store.read();
        assert_eq!(db.leaves[&PARENT].status, LeafStatus::SplitLocked);
        let last = &db.keyshares[&p[1].keyshare].share;
        last.check_consistent(OperatorId(0)).expect("consistent");
        // S_c + S_last = S, so Σ Y_c = Y.
        let sum = curve::point_add(&se_public_keys[0], &se_public_keys[1]);
        assert_eq!(sum, Some(db.keyshares[&PARENT_KS].share.public_key));
        assert_eq!(db.keyshares[&POOL_KS].status, KeyshareStatus::InUse);
        // The same plan again is idempotent; the expected txs build from it.
        s.op.split_reserve(OperatorId(0), PARENT, s.identity, p).expect("idempotent");
        let e = s.op.expected_split(s.op.store.read(), PARENT).expect("templates");
        assert_eq!(e.jobs.len(), 2 + 2 * JOBS_PER_CHILD);
    }

    #[test]
    fn refused_when_the_childrens_keys_do_not_sum() {
        let mut s = setup();
        let p = plan(&mut s, [65_536, 34_464], false);
        let err = s.op.split_reserve(OperatorId(0), PARENT, s.identity, p).expect_err("keys do not sum");
        assert!(err.contains("user public keys sum to"), "{err}");
        assert_eq!(s.op.store.read().leaves[&PARENT].status, LeafStatus::Available, "nothing locked");
    }

    #[test]
    fn refused_when_the_values_do_not_sum() {
        let mut s = setup();
        let p = plan(&mut s, [65_536, 34_463], true);
        let err = s.op.split_reserve(OperatorId(0), PARENT, s.identity, p).expect_err("values do not sum");
        assert!(err.contains("values sum to 99999"), "{err}");
        let p = plan(&mut s, [100_000, 0], true);
        assert!(s.op.split_reserve(OperatorId(0), PARENT, s.identity, p).expect_err("zero").contains("value 0"));
    }

    #[test]
    fn a_signed_plan_is_never_replaced() {
        let mut s = setup();
        let p = plan(&mut s, [65_536, 34_464], true);
        s.op.split_reserve(OperatorId(0), PARENT, s.identity, p).expect("reserved");
        let mut db = s.op.store.begin();
        db.splits.get_mut(&PARENT).expect("row").signed = true;
        s.op.store.commit(db);
        let other = plan(&mut s, [50_000, 50_000], true);
        let err = s.op.split_reserve(OperatorId(0), PARENT, s.identity, other).expect_err("replan");
        assert!(err.contains("another plan"), "{err}");
    }

    #[test]
    fn another_identity_cannot_split_the_leaf() {
        let mut s = setup();
        let p = plan(&mut s, [65_536, 34_464], true);
        let thief = SecretKey::new(&mut s.rng).public_key(secp());
        let err = s.op.split_reserve(OperatorId(0), PARENT, thief, p).expect_err("owner");
        assert!(err.contains("another identity"), "{err}");
    }
}
