//! Wallet side of an aggregation (spark-protocol §2.6): fold the children of a leaf this wallet
//! split back into it, when it owns every one of them again. The parent's new leaf key is the
//! sum of the children's (`Σ u_c`), so `Y` is unchanged; the operators compute `Σ S_c`. The
//! wallet co-signs the aggregate node (each child's key its own input) and the fresh refunds.
use super::{Command, LeafState, Op, PendingJob, Wallet};
use crate::crypto::signing::{self, SigningJob};
use crate::crypto::{curve, PublicKey, Scalar, SecretKey};
use crate::msg::{NodeSet, OperatorSigningResult, RefundSet, UserJob, WalletReply, WalletRequest};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::tx::aggregate::{self as aggregate_tx, AggregateTxs};
use crate::types::LeafId;
use bitcoin::Transaction;

pub(super) struct AggregateOp {
    attempt: u8,
    parent: LeafId,
    stage: Stage,
}

enum Stage {
    Prepare,
    Sign { txs: Box<AggregateTxs>, secret: SecretKey, jobs: Vec<(usize, PendingJob, SecretKey)> },
    Finalize { secret: SecretKey, signed: Vec<Transaction> },
}

impl Wallet {
    /// A leaf this wallet split whose children are all back and available here.
    fn aggregatable(&self) -> Option<LeafId> {
        self.split_children.iter().find(|(p, kids)| {
            self.leaves.get(p).is_some_and(|l| l.state == LeafState::Splitted) && kids.iter().all(|k| self.leaves.get(k).is_some_and(|l| l.state == LeafState::Available))
        }).map(|(p, _)| *p)
    }

    pub(super) fn start_aggregate(&mut self, ctx: &mut Ctx<'_>, attempt: u8) {
        let Some(parent) = self.aggregates_signed.keys().next().copied().or_else(|| self.aggregatable()) else {
            ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: "aggregate: no split leaf whose children are all here".into() });
            return self.start_next(ctx);
        };
        let identity = self.identity_public();
        // Signed already (finalize reply lost, or a crash): only finalize again (idempotent).
        if let Some((secret, signed)) = self.aggregates_signed.get(&parent).cloned() {
            let request = WalletRequest::AggregateFinalize { identity, leaf: parent, signed: signed.clone() };
            self.begin(Op::Aggregate(Box::new(AggregateOp { attempt, parent, stage: Stage::Finalize { secret, signed } })));
            let to = self.cfg.coordinator;
            self.request(ctx, to, request);
            return self.arm_timeout(ctx);
        }
        self.begin(Op::Aggregate(Box::new(AggregateOp { attempt, parent, stage: Stage::Prepare })));
        let to = self.cfg.coordinator;
        self.request(ctx, to, WalletRequest::AggregatePrepare { identity, leaf: parent });
        self.arm_timeout(ctx);
    }

    pub(super) fn aggregate_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut a: AggregateOp, body: Result<WalletReply, String>) {
        let retry = Some((Command::Aggregate, a.attempt));
        let body = match body {
            Ok(b) => b,
            Err(e) => return self.fail(ctx, retry, format!("aggregate: {e}")),
        };
        let stage = std::mem::replace(&mut a.stage, Stage::Prepare);
        let next = match (stage, body) {
            (Stage::Prepare, WalletReply::AggregatePlanned { se_public_key }) => self.aggregate_build(ctx, a.parent, se_public_key),
            (Stage::Sign { txs, secret, jobs }, WalletReply::Signing { results }) => self.aggregate_cosign(ctx, a.parent, txs, secret, jobs, results),
            (Stage::Finalize { secret, signed }, WalletReply::Finalized) => {
                self.aggregate_complete(ctx, a.parent, secret, signed);
                return self.finish(ctx);
            }
            _ => Err("unexpected reply".to_string()),
        };
        match next {
            Ok((stage, request)) => {
                a.stage = stage;
                self.op = Some((session, Op::Aggregate(Box::new(a))));
                self.new_round();
                let to = self.cfg.coordinator;
                self.request(ctx, to, request);
                self.arm_timeout(ctx);
            }
            Err(e) => self.fail(ctx, retry, format!("aggregate: {e}")),
        }
    }

    pub(super) fn aggregate_timeout(&mut self, ctx: &mut Ctx<'_>, a: AggregateOp) {
        self.fail(ctx, Some((Command::Aggregate, a.attempt)), "aggregate timed out".into());
    }

    fn aggregate_build(&mut self, ctx: &mut Ctx<'_>, parent: LeafId, se: PublicKey) -> Result<(Stage, WalletRequest), String> {
        let p = self.leaves.get(&parent).ok_or("parent leaf vanished")?;
        let kids = self.split_children.get(&parent).ok_or("split children vanished")?;
        let leaves: Vec<_> = kids.iter().map(|k| self.leaves.get(k).ok_or("child vanished")).collect::<Result<_, _>>()?;
        let sum = leaves.iter().fold(Scalar::from_u32(0), |acc, l| acc.add(&Scalar::from_secret_key(&l.signing_secret)));
        let secret = sum.to_secret_key().ok_or("children's keys sum to zero")?;
        let owner_key = secret.public_key(crate::crypto::secp());
        if curve::point_add(&owner_key, &se) != Some(p.verifying_key) {
            return Err("Σ child keys + the SE's Σ S_c is not the parent's Y".into());
        }
        let split = leaves.first().and_then(|l| l.ancestors.last()).ok_or("the children have no split layer")?;
        let nodes: Vec<&Transaction> = leaves.iter().map(|l| &l.nodes.cpfp).collect();
        let txs = aggregate_tx::aggregate_txs(&split.cpfp, &nodes, &p.verifying_key, &owner_key).map_err(|e| e.to_string())?;
        let mut jobs = Vec::new();
        let mut user_jobs = Vec::new();
        for (i, (tx, input, prevouts)) in txs.jobs().into_iter().enumerate() {
            // Node jobs come in (CPFP, direct) pairs per child, then the three refunds.
            let (signer, y) = match leaves.get(i / 2).filter(|_| i < 2 * leaves.len()) {
                Some(l) => (l.signing_secret, l.verifying_key),
                None => (secret, p.verifying_key),
            };
            let (nonce, user_commitment) = signing::commit(&Scalar::from_secret_key(&signer), ctx.rng);
            let message = crate::tx::sighash::key_spend_sighash(&tx, input, &prevouts).map_err(|e| e.to_string())?;
            let job = SigningJob { message, verifying_key: y, user_public_key: signer.public_key(crate::crypto::secp()), operator_commitments: Default::default(), user_commitment: user_commitment.clone() };
            user_jobs.push(UserJob { tx: tx.clone(), user_commitment });
            jobs.push((input, PendingJob { tx, job, nonce }, signer));
        }
        let request = WalletRequest::AggregateSign { identity: self.identity_public(), leaf: parent, jobs: user_jobs };
        Ok((Stage::Sign { txs: Box::new(txs), secret, jobs }, request))
    }

    #[allow(clippy::too_many_arguments)]
    fn aggregate_cosign(&mut self, ctx: &mut Ctx<'_>, parent: LeafId, txs: Box<AggregateTxs>, secret: SecretKey, jobs: Vec<(usize, PendingJob, SecretKey)>, results: Vec<OperatorSigningResult>) -> Result<(Stage, WalletRequest), String> {
        if results.len() != jobs.len() {
            return Err(format!("{} signing results for {} jobs", results.len(), jobs.len()));
        }
        let mut node = txs.nodes.cpfp.clone();
        let mut direct = txs.nodes.direct.clone();
        let mut refunds = Vec::new();
        let children = (jobs.len() - 3) / 2;
        for (i, ((input, PendingJob { mut tx, job, nonce }, signer), result)) in jobs.into_iter().zip(results).enumerate() {
            let (message, commitment) = (job.message, crate::crypto::identity::sha256(&[&job.user_commitment.0]));
            let sig = super::cosign(job, &signer, &nonce, &result)?;
            ctx.observe(Observation::NonceUsed { signer: self.cfg.id.to_string(), commitment, message });
            let witness = crate::tx::sighash::key_spend_witness(&sig);
            if i < 2 * children {
                let t = if i % 2 == 0 { &mut node } else { &mut direct };
                t.input[input].witness = witness;
            } else {
                tx.input[0].witness = witness;
                refunds.push(tx);
            }
        }
        let mut signed = vec![node, direct];
        signed.extend(refunds);
        self.aggregates_signed.insert(parent, (secret, signed.clone()));
        let request = WalletRequest::AggregateFinalize { identity: self.identity_public(), leaf: parent, signed: signed.clone() };
        Ok((Stage::Finalize { secret, signed }, request))
    }

    fn aggregate_complete(&mut self, ctx: &mut Ctx<'_>, parent: LeafId, secret: SecretKey, signed: Vec<Transaction>) {
        self.aggregates_signed.remove(&parent);
        let Ok([n0, n1, r0, r1, r2]): Result<[Transaction; 5], _> = signed.try_into() else { return };
        let kids = self.split_children.remove(&parent).unwrap_or_default();
        let split = kids.first().and_then(|k| self.leaves.get(k)).and_then(|l| l.ancestors.last().cloned());
        for k in &kids {
            self.leaves.remove(k);
        }
        let refunds = RefundSet { cpfp: r0, direct: r1, direct_from_cpfp: r2 };
        let me = self.identity_public();
        for tx in refunds.as_array() {
            ctx.observe(Observation::RefundSigned { leaf: parent, owner: me, tx: tx.clone() });
        }
        if let Some(p) = self.leaves.get_mut(&parent) {
            p.signing_secret = secret;
            // Exit chain: the parent's old layers, the split node, then the aggregate node.
            let old = std::mem::replace(&mut p.nodes, NodeSet { cpfp: n0, direct: n1 });
            p.ancestors.push(old);
            p.ancestors.extend(split);
            p.refunds = refunds;
            p.state = LeafState::Available;
        }
        ctx.observe(Observation::LeafAggregated { wallet: self.cfg.id, parent, children: kids });
    }
}
