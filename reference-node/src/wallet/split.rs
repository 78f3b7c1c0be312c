//! Wallet side of a split (spark-protocol §2.6): pick child keys summing to the leaf's key, learn
//! the SE's child keys, build the split node, child node and refund txs, co-sign them (the
//! parent's key signs the split node, each child's key its own node and refunds), finalize.
//!
//! The plan (child ids, keys, values) is kept with the wallet's keys, so a retry after a lost
//! reply or a crash asks for exactly the same split: the operators lock the parent once a split
//! is planned and accept no other plan for it (two signed split nodes must never exist).
use super::{prepare_jobs, Command, LeafState, Op, PendingJob, Wallet, WalletLeaf};
use crate::crypto::keysplit;
use crate::crypto::{curve, PublicKey, Scalar, SecretKey};
use crate::msg::{NodeSet, OperatorSigningResult, RefundSet, UserJob, WalletReply, WalletRequest};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::split_msg::{SplitChildKeys, SplitChildRequest};
use crate::tx::split::{self as split_tx, ChildSpec, JOBS_PER_CHILD};
use crate::types::LeafId;
use bitcoin::{Amount, Transaction};
use rand_core::RngCore;

/// A split the wallet asked for, kept until it is finalized (it survives a crash).
#[derive(Clone, Debug)]
pub struct SplitPlan {
    pub children: Vec<PlannedChild>,
    /// The signed txs once the wallet aggregated them: a retry (finalize reply lost, crash)
    /// only finalizes again, which the operators accept idempotently.
    pub signed: Option<(Vec<SplitChildKeys>, Vec<Transaction>)>,
}

#[derive(Clone, Debug)]
pub struct PlannedChild {
    pub leaf: LeafId,
    pub secret: SecretKey,
    pub value_sats: u64,
}

pub(super) struct SplitOp {
    attempt: u8,
    values: Vec<u64>,
    parent: LeafId,
    stage: Stage,
}

enum Stage {
    Prepare,
    Sign { keys: Vec<SplitChildKeys>, jobs: Vec<(SecretKey, Vec<PendingJob>)> },
    Finalize { keys: Vec<SplitChildKeys>, signed: Vec<Transaction> },
}

/// The power-of-two denominations of `value` (largest first): the SDK's leaf set 2^0 … 2^k.
pub fn denominations(value: u64) -> Vec<u64> {
    (0..64).rev().map(|b| 1u64 << b).filter(|d| value & d != 0).collect()
}

impl Wallet {
    pub(super) fn start_split(&mut self, ctx: &mut Ctx<'_>, values: Vec<u64>, attempt: u8) {
        // A split planned earlier and not finished is resumed first (same plan).
        let resumed = self.split_plans.keys().find(|l| self.leaves.get(l).is_some_and(|x| matches!(x.state, LeafState::Splitting | LeafState::Available))).copied();
        let parent = resumed.or_else(|| {
            self.leaves
                .iter()
                .find(|(_, l)| l.state == LeafState::Available && if values.is_empty() { denominations(l.value_sats).len() >= 2 } else { values.iter().sum::<u64>() == l.value_sats })
                .map(|(id, _)| *id)
        });
        let Some(parent) = parent else {
            ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: format!("split: no available leaf worth {}", if values.is_empty() { "splitting".into() } else { format!("{} sat", values.iter().sum::<u64>()) }) });
            return self.start_next(ctx);
        };
        if !self.split_plans.contains_key(&parent) {
            let Some(leaf) = self.leaves.get(&parent) else { return self.start_next(ctx) };
            let parts = if values.is_empty() { denominations(leaf.value_sats) } else { values.clone() };
            let Some(secrets) = keysplit::split_user_key(&Scalar::from_secret_key(&leaf.signing_secret), parts.len(), || Scalar::random(ctx.rng)) else {
                ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: "split: degenerate child key".into() });
                return self.start_next(ctx);
            };
            let mut children = Vec::with_capacity(parts.len());
            for (value_sats, s) in parts.into_iter().zip(secrets) {
                let Some(secret) = s.to_secret_key() else { return self.start_next(ctx) };
                let mut id = [0u8; 16];
                ctx.rng.fill_bytes(&mut id);
                children.push(PlannedChild { leaf: LeafId(id), secret, value_sats });
            }
            self.split_plans.insert(parent, SplitPlan { children, signed: None });
        }
        let Some(plan) = self.split_plans.get(&parent) else { return self.start_next(ctx) };
        let identity = self.identity_public();
        if let Some((keys, signed)) = plan.signed.clone() {
            let request = WalletRequest::SplitFinalize { identity, leaf: parent, signed: signed.clone() };
            self.begin(Op::Split(Box::new(SplitOp { attempt, values, parent, stage: Stage::Finalize { keys, signed } })));
            let to = self.cfg.coordinator;
            self.request(ctx, to, request);
            return self.arm_timeout(ctx);
        }
        let children = plan.children.iter().map(|c| SplitChildRequest { leaf: c.leaf, value_sats: c.value_sats, signing_key: c.secret.public_key(crate::crypto::secp()) }).collect();
        self.begin(Op::Split(Box::new(SplitOp { attempt, values, parent, stage: Stage::Prepare })));
        let to = self.cfg.coordinator;
        self.request(ctx, to, WalletRequest::SplitPrepare { identity, leaf: parent, children });
        self.arm_timeout(ctx);
    }

    pub(super) fn split_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: SplitOp, body: Result<WalletReply, String>) {
        let retry = Some((Command::Split { values: s.values.clone() }, s.attempt));
        let body = match body {
            Ok(b) => b,
            Err(e) => return self.fail(ctx, retry, format!("split: {e}")),
        };
        let stage = std::mem::replace(&mut s.stage, Stage::Prepare);
        let next = match (stage, body) {
            (Stage::Prepare, WalletReply::SplitPlanned { children }) => self.split_build(ctx, s.parent, children),
            (Stage::Sign { keys, jobs }, WalletReply::Signing { results }) => self.split_cosign(ctx, s.parent, keys, jobs, results),
            (Stage::Finalize { keys, signed }, WalletReply::Finalized) => {
                self.split_complete(ctx, s.parent, &keys, signed);
                return self.finish(ctx);
            }
            _ => Err("unexpected reply".to_string()),
        };
        match next {
            Ok((stage, request)) => {
                s.stage = stage;
                self.op = Some((session, Op::Split(Box::new(s))));
                self.new_round();
                let to = self.cfg.coordinator;
                self.request(ctx, to, request);
                self.arm_timeout(ctx);
            }
            Err(e) => self.fail(ctx, retry, format!("split: {e}")),
        }
    }

    pub(super) fn split_timeout(&mut self, ctx: &mut Ctx<'_>, s: SplitOp) {
        let retry = Some((Command::Split { values: s.values }, s.attempt));
        self.fail(ctx, retry, "split timed out".into());
    }

    /// Check the SE's child keys (Y_c = u_c·G + S_c·G), build every split tx, prepare the jobs.
    fn split_build(&mut self, ctx: &mut Ctx<'_>, parent: LeafId, keys: Vec<SplitChildKeys>) -> Result<(Stage, WalletRequest), String> {
        // Every operator reserved the split (the parent is SPLIT_LOCKED everywhere): the leaf
        // is no longer the wallet's to send. Before this, a refused or lost prepare leaves it
        // AVAILABLE here (the retry resumes the same plan).
        if let Some(l) = self.leaves.get_mut(&parent) {
            l.state = LeafState::Splitting;
        }
        let leaf = self.leaves.get(&parent).ok_or("parent leaf vanished")?;
        let plan = self.split_plans.get(&parent).ok_or("split plan vanished")?;
        if keys.len() != plan.children.len() {
            return Err(format!("{} child keys for {} children", keys.len(), plan.children.len()));
        }
        let mut specs = Vec::new();
        for (c, k) in plan.children.iter().zip(&keys) {
            let user = c.secret.public_key(crate::crypto::secp());
            if k.leaf != c.leaf || curve::point_add(&user, &k.se_public_key) != Some(k.verifying_key) {
                return Err(format!("child {}: key is not my key + the SE key", c.leaf));
            }
            specs.push(ChildSpec { value: Amount::from_sat(c.value_sats), verifying_key: k.verifying_key, owner_signing_key: user });
        }
        let txs = split_tx::split_txs(&leaf.nodes.cpfp, &specs).map_err(|e| e.to_string())?;
        let parent_out = leaf.nodes.cpfp.output.first().ok_or("parent node tx has no output 0")?.clone();
        let all = txs.in_job_order();
        let prevouts = txs.prevouts(&parent_out);
        let mut jobs = Vec::new();
        let mut user_jobs: Vec<UserJob> = Vec::new();
        let (j, u) = prepare_jobs(&leaf.signing_secret, leaf.verifying_key, all[..2].to_vec(), &prevouts[..2], ctx.rng)?;
        jobs.push((leaf.signing_secret, j));
        user_jobs.extend(u);
        for (i, (c, k)) in plan.children.iter().zip(&keys).enumerate() {
            let range = 2 + i * JOBS_PER_CHILD..2 + (i + 1) * JOBS_PER_CHILD;
            let (j, u) = prepare_jobs(&c.secret, k.verifying_key, all[range.clone()].to_vec(), &prevouts[range], ctx.rng)?;
            jobs.push((c.secret, j));
            user_jobs.extend(u);
        }
        let request = WalletRequest::SplitSign { identity: self.identity_public(), leaf: parent, jobs: user_jobs };
        Ok((Stage::Sign { keys, jobs }, request))
    }

    #[allow(clippy::too_many_arguments)]
    fn split_cosign(&mut self, ctx: &mut Ctx<'_>, parent: LeafId, keys: Vec<SplitChildKeys>, jobs: Vec<(SecretKey, Vec<PendingJob>)>, results: Vec<OperatorSigningResult>) -> Result<(Stage, WalletRequest), String> {
        let total: usize = jobs.iter().map(|(_, j)| j.len()).sum();
        if results.len() != total {
            return Err(format!("{} signing results for {total} jobs", results.len()));
        }
        let mut results = results.into_iter();
        let mut signed = Vec::with_capacity(total);
        for (secret, group) in jobs {
            let r: Vec<OperatorSigningResult> = results.by_ref().take(group.len()).collect();
            signed.extend(self.cosign_all(ctx, &secret, group, r)?);
        }
        if let Some(plan) = self.split_plans.get_mut(&parent) {
            plan.signed = Some((keys.clone(), signed.clone()));
        }
        let request = WalletRequest::SplitFinalize { identity: self.identity_public(), leaf: parent, signed: signed.clone() };
        Ok((Stage::Finalize { keys, signed }, request))
    }

    /// The operators stored the split: the parent is a branch now, the children are leaves.
    fn split_complete(&mut self, ctx: &mut Ctx<'_>, parent: LeafId, keys: &[SplitChildKeys], signed: Vec<Transaction>) {
        let Some(plan) = self.split_plans.remove(&parent) else { return };
        let Some(p) = self.leaves.get_mut(&parent) else { return };
        p.state = LeafState::Splitted;
        let deposit_outpoint = p.deposit_outpoint;
        let mut ancestors: Vec<NodeSet> = p.exit_layers().cloned().collect();
        debug_assert_eq!(signed.len(), 2 + keys.len() * JOBS_PER_CHILD);
        let mut it = signed.into_iter();
        let (Some(split_cpfp), Some(split_direct)) = (it.next(), it.next()) else { return };
        ancestors.push(NodeSet { cpfp: split_cpfp, direct: split_direct });
        let me = self.identity_public();
        for (c, k) in plan.children.iter().zip(keys) {
            let (Some(n0), Some(n1), Some(r0), Some(r1), Some(r2)) = (it.next(), it.next(), it.next(), it.next(), it.next()) else { return };
            let refunds = RefundSet { cpfp: r0, direct: r1, direct_from_cpfp: r2 };
            for tx in refunds.as_array() {
                ctx.observe(Observation::RefundSigned { leaf: c.leaf, owner: me, tx: tx.clone() });
            }
            self.leaves.insert(
                c.leaf,
                WalletLeaf {
                    signing_secret: c.secret,
                    value_sats: c.value_sats,
                    verifying_key: k.verifying_key,
                    deposit_outpoint,
                    nodes: NodeSet { cpfp: n0, direct: n1 },
                    refunds,
                    state: LeafState::Available,
                    ancestors: ancestors.clone(),
                },
            );
        }
        self.split_children.insert(parent, plan.children.iter().map(|c| c.leaf).collect());
        ctx.observe(Observation::LeafSplit { wallet: self.cfg.id, parent, children: plan.children.iter().map(|c| (c.leaf, c.value_sats)).collect() });
    }
}

/// The user public key of a planned child (for tests and the checker).
pub fn child_public(c: &PlannedChild) -> PublicKey {
    c.secret.public_key(crate::crypto::secp())
}

#[cfg(test)]
mod tests {
    use super::denominations;

    #[test]
    fn denominations_are_the_binary_digits() {
        assert_eq!(denominations(100_000), vec![65_536, 32_768, 1_024, 512, 128, 32]);
        assert_eq!(denominations(100_000).iter().sum::<u64>(), 100_000);
        assert_eq!(denominations(4096), vec![4096]);
        assert!(denominations(0).is_empty());
    }
}
