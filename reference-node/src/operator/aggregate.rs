//! Aggregate (spark-protocol §2.6, §4.3 last line): the children of a split, all AVAILABLE and
//! owned by one identity, fold back into their parent. Same three idempotent wallet calls as a
//! split (`operator/split.rs`):
//!
//! 1. `AggregatePrepare` → `AggregateReserve` on every operator: lock the children
//!    (SPLIT_LOCKED: no transfer may touch them while the aggregation is in flight, I-4) and
//!    compute the parent's new keyshare share-wise, `S_parent = Σ S_c` (secret share, public key
//!    and every public share); the parent's user key becomes `Σ u_c·G`, so `Y` is unchanged.
//! 2. `AggregateSign`: rebuild and byte-compare the aggregate node (one input per child, each at
//!    the child's node CSV − 100, `tx::aggregate`) and the parent's fresh refunds; FROST per
//!    keyshare: each child's key signs its input of both node variants, the new parent key the
//!    refunds.
//! 3. `AggregateFinalize`: verify every input's signature, commit (children AGGREGATED, the
//!    parent AVAILABLE with its new key, node and refunds; its old keyshare row forgotten, §2.7)
//!    and gossip `FinalizeAggregate`.
use super::split::SignSession;
use super::store::{Db, KeyshareRow, KeyshareStatus, LeafStatus};
use super::grouped_signing::{check_round2, group_user_jobs, JobGroups, JobSpec};
use super::{Operator, SessionKind, Step, WalletCall};
use crate::crypto::keysplit;
use crate::crypto::{curve, PublicKey};
use crate::msg::{GossipBody, InternalReply, InternalRequest, NodeSet, RefundSet, UserJob, WalletReply};
use crate::node::Ctx;
use crate::split_msg::{aggregate_keyshare, AggregateRecord};
use crate::tx::aggregate::{self as aggregate_tx, AggregateTxs};
use crate::tx::{sighash, template};
use crate::types::{KeyshareId, LeafId, OperatorId};
use bitcoin::Transaction;
use std::collections::BTreeMap;

pub(super) struct PrepareSession {
    pub call: WalletCall,
}

/// What an aggregation is checked against, rebuilt from one operator's tables.
struct Expected {
    txs: AggregateTxs,
    /// Per job (`AggregateTxs::jobs` order): keyshare, Y and user key.
    keys: Vec<(KeyshareId, PublicKey, PublicKey)>,
}

impl Expected {
    /// The signing jobs over `jobs` (`AggregateTxs::jobs`: tx, input, prevouts), with their keys.
    fn specs<'a>(&'a self, jobs: &'a [(Transaction, usize, Vec<bitcoin::TxOut>)]) -> Vec<JobSpec<'a>> {
        jobs.iter()
            .zip(&self.keys)
            .map(|((tx, input, prevouts), (keyshare, y, user))| JobSpec { tx, input: *input, prevouts, keyshare: *keyshare, verifying_key: *y, user_public_key: *user })
            .collect()
    }
}

/// The children of `parent`'s finalized split, in plan order, with their rows.
fn children(db: &Db, parent: LeafId) -> Result<Vec<(LeafId, &super::store::LeafRow)>, String> {
    let split = db.splits.get(&parent).filter(|s| s.split_nodes.is_some()).ok_or_else(|| format!("leaf {parent} has no finalized split"))?;
    split.plan.iter().map(|c| db.leaves.get(&c.leaf).map(|r| (c.leaf, r)).ok_or_else(|| format!("child {} is missing", c.leaf))).collect()
}

impl Operator {
    /// Coordinator, step 1.
    pub(super) fn aggregate_prepare(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, identity: PublicKey, parent: LeafId) {
        // Check here first so a refusal costs no round trip; every operator checks again.
        if let Err(e) = self.check_aggregate(self.store.read(), parent, &identity) {
            return Self::reply_wallet(ctx, call, Err(e));
        }
        let req = InternalRequest::AggregateReserve { parent, owner_identity: identity };
        let requests = self.all_operators().into_iter().map(|o| (o, req.clone())).collect();
        self.start_session(ctx, SessionKind::AggregatePrepare(PrepareSession { call }), requests);
    }

    /// The parent is SPLITTED and every child is AVAILABLE (or already locked for this
    /// aggregation) and owned by `identity`: siblings with different owners never aggregate.
    fn check_aggregate(&self, db: &Db, parent: LeafId, identity: &PublicKey) -> Result<(), String> {
        let p = db.leaves.get(&parent).ok_or_else(|| format!("unknown leaf {parent}"))?;
        if p.status != LeafStatus::Splitted {
            return Err(format!("leaf {parent} is {:?}, not SPLITTED", p.status));
        }
        let reserved = db.aggregates.get(&parent).is_some_and(|a| a.owner_identity == *identity);
        for (leaf, row) in children(db, parent)? {
            if row.owner_identity != *identity {
                return Err(format!("siblings have different owners: child {leaf} belongs to another identity"));
            }
            let ok = row.status == LeafStatus::Available || (reserved && row.status == LeafStatus::SplitLocked);
            if !ok {
                return Err(format!("child {leaf} is {:?}, not AVAILABLE", row.status));
            }
        }
        Ok(())
    }

    /// Participant (and coordinator), step 1: lock the children, compute Σ S_c.
    pub(super) fn aggregate_reserve(&mut self, from: OperatorId, parent: LeafId, owner_identity: PublicKey) -> Result<InternalReply, String> {
        let mut db = self.store.begin();
        let key = self.aggregate_reserve_in(&mut db, from, parent, owner_identity)?;
        self.store.commit(db);
        Ok(InternalReply::SplitReserved { se_public_keys: vec![key] })
    }

    fn aggregate_reserve_in(&self, db: &mut Db, coordinator: OperatorId, parent: LeafId, owner_identity: PublicKey) -> Result<PublicKey, String> {
        self.check_aggregate(db, parent, &owner_identity)?;
        let p = db.leaves.get(&parent).ok_or("parent vanished")?;
        let new_id = aggregate_keyshare(p.keyshare);
        if let Some(a) = db.aggregates.get(&parent) {
            return db.keyshares.get(&a.keyshare).map(|k| k.share.public_key).ok_or_else(|| "aggregate keyshare vanished".into());
        }
        let kids = children(db, parent)?;
        let shares = kids.iter().map(|(_, r)| db.keyshares.get(&r.keyshare).map(|k| &k.share).ok_or_else(|| format!("unknown keyshare {}", r.keyshare))).collect::<Result<Vec<_>, String>>()?;
        let sum = keysplit::sum_shares(&shares).map_err(|e| e.to_string())?;
        sum.check_consistent(self.cfg.id).map_err(|e| format!("aggregate share: {e}"))?;
        let owner_key = curve::point_sum(kids.iter().map(|(_, r)| &r.owner_signing_key)).ok_or("children's user keys sum to infinity")?;
        // I-3: the parent's Y is unchanged (Σ u_c·G + Σ S_c·G = Y).
        if curve::point_add(&owner_key, &sum.public_key) != Some(p.verifying_key) {
            return Err("children's keys do not sum to the parent's Y".into());
        }
        let key = sum.public_key;
        let ids: Vec<LeafId> = kids.iter().map(|(l, _)| *l).collect();
        db.keyshares.insert(new_id, KeyshareRow { status: KeyshareStatus::InUse, share: sum, coordinator, epoch: 0 });
        for leaf in ids {
            if let Some(r) = db.leaves.get_mut(&leaf) {
                r.status = LeafStatus::SplitLocked;
            }
        }
        db.aggregates.insert(parent, super::store::AggregateRow { owner_identity, keyshare: new_id, signed: false });
        Ok(key)
    }

    pub(super) fn aggregate_prepare_advance(&mut self, ctx: &mut Ctx<'_>, s: PrepareSession, replies: BTreeMap<OperatorId, InternalReply>) -> Step<PrepareSession> {
        let mut agreed: Option<PublicKey> = None;
        for (op, r) in replies {
            let key = match r {
                InternalReply::SplitReserved { se_public_keys } if se_public_keys.len() == 1 => se_public_keys[0],
                _ => {
                    Self::reply_wallet(ctx, s.call, Err(format!("{op} sent no aggregate reservation")));
                    return Step::Done;
                }
            };
            if agreed.is_some_and(|k| k != key) {
                let reason = format!("{op} computed a different aggregate SE key");
                self.name_culprit(ctx, op, reason.clone());
                Self::reply_wallet(ctx, s.call, Err(reason));
                return Step::Done;
            }
            agreed = Some(key);
        }
        let reply = agreed.map(|se_public_key| WalletReply::AggregatePlanned { se_public_key }).ok_or_else(|| "no operator answered".to_string());
        Self::reply_wallet(ctx, s.call, reply);
        Step::Done
    }

    fn expected_aggregate(&self, db: &Db, parent: LeafId) -> Result<Expected, String> {
        let p = db.leaves.get(&parent).ok_or_else(|| format!("unknown leaf {parent}"))?;
        let a = db.aggregates.get(&parent).ok_or_else(|| format!("no aggregation reserved for leaf {parent}"))?;
        let split = db.splits.get(&parent).and_then(|s| s.split_nodes.as_ref()).ok_or("split vanished")?;
        let kids = children(db, parent)?;
        let owner_key = curve::point_sum(kids.iter().map(|(_, r)| &r.owner_signing_key)).ok_or("children's user keys sum to infinity")?;
        let nodes: Vec<&Transaction> = kids.iter().map(|(_, r)| &r.nodes.cpfp).collect();
        let txs = aggregate_tx::aggregate_txs(&split.cpfp, &nodes, &p.verifying_key, &owner_key).map_err(|e| e.to_string())?;
        let mut keys = Vec::new();
        for (_, r) in &kids {
            keys.extend([(r.keyshare, r.verifying_key, r.owner_signing_key); 2]);
        }
        keys.extend([(a.keyshare, p.verifying_key, owner_key); 3]);
        Ok(Expected { txs, keys })
    }

    /// Coordinator, step 2.
    pub(super) fn aggregate_sign(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, identity: PublicKey, parent: LeafId, jobs: Vec<UserJob>) {
        match self.aggregate_signing_jobs(identity, parent, jobs) {
            Err(e) => Self::reply_wallet(ctx, call, Err(e)),
            Ok((groups, txs)) => {
                let signers = self.choose_signers(ctx);
                let counts: Vec<(KeyshareId, u8)> = groups.iter().map(|(k, j)| (*k, j.len() as u8)).collect();
                let req = InternalRequest::AggregateRound1 { parent, counts };
                let requests = signers.iter().map(|o| (*o, req.clone())).collect();
                let session = SignSession { call, parent, signers, groups, txs, aggregate: true };
                self.start_session(ctx, SessionKind::SplitSign(Box::new(session)), requests);
            }
        }
    }

    fn aggregate_signing_jobs(&self, identity: PublicKey, parent: LeafId, jobs: Vec<UserJob>) -> Result<(JobGroups, Vec<Transaction>), String> {
        let db = self.store.read();
        let a = db.aggregates.get(&parent).ok_or_else(|| format!("no aggregation reserved for leaf {parent}"))?;
        if a.owner_identity != identity {
            return Err("the aggregation belongs to another identity".into());
        }
        let e = self.expected_aggregate(db, parent)?;
        let jobs_txs = e.txs.jobs();
        let groups = group_user_jobs(jobs, &e.specs(&jobs_txs))?;
        Ok((groups, aggregate_txs_list(&e.txs)))
    }

    /// Participant, round 1: nonces for the aggregation's keyshares.
    pub(super) fn aggregate_round1(&mut self, ctx: &mut Ctx<'_>, parent: LeafId, counts: Vec<(KeyshareId, u8)>) -> Result<InternalReply, String> {
        let e = self.expected_aggregate(self.store.read(), parent)?;
        let allowed: Vec<KeyshareId> = e.keys.iter().map(|(k, _, _)| *k).collect();
        self.frost_round1_groups(ctx, counts, &allowed, &format!("aggregation of {parent}"))
    }

    /// Participant, round 2: rebuild, compare, sign.
    pub(super) fn aggregate_round2(&mut self, ctx: &mut Ctx<'_>, parent: LeafId, txs: Vec<Transaction>, groups: JobGroups) -> Result<InternalReply, String> {
        let e = self.expected_aggregate(self.store.read(), parent)?;
        let jobs_txs = e.txs.jobs();
        check_round2("aggregate", &aggregate_txs_list(&e.txs), &txs, &e.specs(&jobs_txs), &groups)?;
        let mut db = self.store.begin();
        if let Some(a) = db.aggregates.get_mut(&parent) {
            a.signed = true;
        }
        self.store.commit(db);
        self.frost_round2_groups(ctx, groups)
    }

    /// Coordinator, step 3. `signed` = [aggregate node CPFP, aggregate node direct (every input
    /// signed), refund CPFP, refund direct, refund direct-from-CPFP].
    pub(super) fn aggregate_finalize(&mut self, ctx: &mut Ctx<'_>, identity: PublicKey, parent: LeafId, signed: Vec<Transaction>) -> Result<(), String> {
        let db = self.store.read();
        let Some(a) = db.aggregates.get(&parent) else {
            // A retried finalize after the commit: the parent is a leaf of this identity again.
            return match db.leaves.get(&parent) {
                Some(p) if p.status != LeafStatus::Splitted && p.owner_identity == identity => Ok(()),
                _ => Err(format!("no aggregation reserved for leaf {parent}")),
            };
        };
        if a.owner_identity != identity {
            return Err("the aggregation belongs to another identity".into());
        }
        let keyshare = a.keyshare;
        let e = self.expected_aggregate(db, parent)?;
        let mine = aggregate_txs_list(&e.txs);
        if signed.len() != mine.len() {
            return Err(format!("expected {} signed txs, found {}", mine.len(), signed.len()));
        }
        for (i, (x, s)) in mine.iter().zip(&signed).enumerate() {
            template::compare_transactions(x, s).map_err(|err| format!("tx {i}: {err}"))?;
        }
        // Every input's key-path signature, each under the key that job names.
        let by_tx = |tx: &Transaction| mine.iter().position(|m| m.compute_txid() == tx.compute_txid());
        for ((tx, input, prevouts), (_, y, _)) in e.txs.jobs().iter().zip(&e.keys) {
            let idx = by_tx(tx).ok_or("job tx not in the aggregation")?;
            check_input_signature(&signed[idx], *input, prevouts, y).map_err(|err| format!("tx {idx} input {input}: {err}"))?;
        }
        let owner_signing_key = e.keys.last().map(|(_, _, u)| *u).ok_or("no refund job")?;
        let mut it = signed.into_iter();
        let mut next = || it.next().ok_or_else(|| "wrong number of signed txs".to_string());
        let record = AggregateRecord {
            parent,
            owner_identity: identity,
            keyshare,
            owner_signing_key,
            nodes: NodeSet { cpfp: next()?, direct: next()? },
            refunds: RefundSet { cpfp: next()?, direct: next()?, direct_from_cpfp: next()? },
        };
        let mut db = self.store.begin();
        self.apply_aggregate(&mut db, self.cfg.id, &record)?;
        let seq = Self::gossip_create(&mut db, GossipBody::FinalizeAggregate { aggregate: record }, self.others());
        self.store.commit(db);
        self.gossip_push(ctx, seq);
        Ok(())
    }

    /// Apply a finalized aggregation (coordinator commit or gossip): idempotent.
    pub(super) fn apply_aggregate(&self, db: &mut Db, coordinator: OperatorId, record: &AggregateRecord) -> Result<(), String> {
        let Some(p) = db.leaves.get(&record.parent) else { return Err(format!("unknown leaf {}", record.parent)) };
        if p.status != LeafStatus::Splitted {
            return if p.keyshare == record.keyshare { Ok(()) } else { Err(format!("leaf {} is {:?}, not SPLITTED", record.parent, p.status)) };
        }
        self.aggregate_reserve_in(db, coordinator, record.parent, record.owner_identity)?;
        let a = db.aggregates.remove(&record.parent).ok_or("aggregation vanished")?;
        if a.keyshare != record.keyshare {
            return Err("aggregate record names another keyshare".into());
        }
        let se = db.keyshares.get(&a.keyshare).map(|k| k.share.public_key).ok_or("aggregate keyshare vanished")?;
        let kids: Vec<LeafId> = children(db, record.parent)?.into_iter().map(|(l, _)| l).collect();
        let split_nodes = db.splits.get(&record.parent).and_then(|s| s.split_nodes.clone()).ok_or("split vanished")?;
        let Some(p) = db.leaves.get_mut(&record.parent) else { return Err("parent vanished".into()) };
        if curve::point_add(&record.owner_signing_key, &se) != Some(p.verifying_key) {
            return Err("aggregate owner key + SE key is not the parent's Y".into());
        }
        let old = std::mem::replace(&mut p.keyshare, record.keyshare);
        p.owner_signing_key = record.owner_signing_key;
        // Exit chain: the parent's old layers, the split node, then the aggregate node.
        let old_node = std::mem::replace(&mut p.nodes, record.nodes.clone());
        p.ancestors.push(old_node);
        p.ancestors.push(split_nodes);
        p.refunds = record.refunds.clone();
        p.status = LeafStatus::Available;
        for leaf in kids {
            if let Some(r) = db.leaves.get_mut(&leaf) {
                r.status = LeafStatus::Aggregated;
            }
        }
        // Forgetting (spark-protocol §2.7): the parent's share from before the split is gone.
        db.keyshares.remove(&old);
        db.splits.remove(&record.parent);
        Ok(())
    }
}

/// The aggregation's distinct txs: node CPFP, node direct, refund CPFP, direct, direct-from-CPFP.
fn aggregate_txs_list(t: &AggregateTxs) -> Vec<Transaction> {
    let direct = t.refunds.direct.clone().unwrap_or_else(|| t.refunds.direct_from_cpfp.clone());
    vec![t.nodes.cpfp.clone(), t.nodes.direct.clone(), t.refunds.cpfp.clone(), direct, t.refunds.direct_from_cpfp.clone()]
}

/// The key-path signature in `input`'s witness verifies for Y over all `prevouts`.
pub fn check_input_signature(tx: &Transaction, input: usize, prevouts: &[bitcoin::TxOut], verifying_key: &PublicKey) -> Result<(), String> {
    let msg = sighash::key_spend_sighash(tx, input, prevouts).map_err(|e| e.to_string())?;
    let sig = super::deposit::witness_signature(tx, input)?;
    if !crate::crypto::signing::verify(verifying_key, &msg, &sig) {
        return Err("signature does not verify for its key".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{secp, SecretKey};
    use crate::operator::store::{LeafRow, SplitRow};
    use crate::operator::OperatorConfig;
    use crate::params::{Directory, Params};
    use crate::split_msg::PlannedChild;
    use bitcoin::OutPoint;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::sync::Arc;

    const PARENT: LeafId = LeafId([1; 16]);
    const KIDS: [LeafId; 2] = [LeafId([2; 16]), LeafId([3; 16])];

    /// An operator holding a finalized split of PARENT into KIDS, owned by `owners`.
    fn split_operator(owners: [PublicKey; 2], statuses: [LeafStatus; 2]) -> Operator {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let cfg = OperatorConfig { id: OperatorId(0), identity: SecretKey::new(&mut rng), params: Arc::new(Params::new(3, 2)), directory: Arc::new(Directory::default()) };
        let mut op = Operator::new(cfg);
        let key = SecretKey::new(&mut rng).public_key(secp());
        let dummy = Transaction { version: bitcoin::transaction::Version(3), lock_time: bitcoin::absolute::LockTime::ZERO, input: vec![], output: vec![] };
        let row = |owner: PublicKey, status: LeafStatus, i: u8| LeafRow {
            status,
            keyshare: KeyshareId([i; 16]),
            value_sats: 1_000,
            verifying_key: key,
            owner_identity: owner,
            owner_signing_key: key,
            deposit_outpoint: OutPoint::null(),
            nodes: NodeSet { cpfp: dummy.clone(), direct: dummy.clone() },
            refunds: RefundSet { cpfp: dummy.clone(), direct: dummy.clone(), direct_from_cpfp: dummy.clone() },
            ancestors: Vec::new(),
        };
        let mut db = op.store.begin();
        db.leaves.insert(PARENT, row(owners[0], LeafStatus::Splitted, 1));
        let mut plan = Vec::new();
        for (i, leaf) in KIDS.iter().enumerate() {
            db.leaves.insert(*leaf, row(owners[i], statuses[i], 2 + i as u8));
            plan.push(PlannedChild { leaf: *leaf, value_sats: 500, signing_key: key, keyshare: KeyshareId([2 + i as u8; 16]) });
        }
        let split_nodes = Some(NodeSet { cpfp: dummy.clone(), direct: dummy });
        db.splits.insert(PARENT, SplitRow { owner_identity: owners[0], coordinator: OperatorId(0), plan, signed: true, split_nodes });
        op.store.commit(db);
        op
    }

    fn ids() -> [PublicKey; 2] {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        [SecretKey::new(&mut rng).public_key(secp()), SecretKey::new(&mut rng).public_key(secp())]
    }

    #[test]
    fn aggregate_refused_when_siblings_have_different_owners() {
        let [a, b] = ids();
        let mut op = split_operator([a, b], [LeafStatus::Available; 2]);
        let err = op.aggregate_reserve(OperatorId(0), PARENT, a).expect_err("different owners");
        assert!(err.contains("siblings have different owners"), "{err}");
        assert_eq!(op.store.read().leaves[&KIDS[0]].status, LeafStatus::Available, "nothing locked");
    }

    #[test]
    fn aggregate_refused_while_a_child_is_in_a_transfer_or_for_another_identity() {
        let [a, b] = ids();
        let mut op = split_operator([a, a], [LeafStatus::Available, LeafStatus::TransferLocked(crate::types::TransferId([7; 16]))]);
        let err = op.aggregate_reserve(OperatorId(0), PARENT, a).expect_err("locked child");
        assert!(err.contains("not AVAILABLE"), "{err}");
        let mut op = split_operator([a, a], [LeafStatus::Available; 2]);
        assert!(op.aggregate_reserve(OperatorId(0), PARENT, b).expect_err("other identity").contains("different owners"));
    }
}
