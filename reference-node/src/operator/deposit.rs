//! Deposit from L1 (spark-protocol §4.1): a deposit address from a pooled keyshare, tree creation
//! signing the root node txs and the first refunds, finalize, and replication to every operator.
use super::store::{Db, DepositAddressRow, KeyshareStatus, LeafRow, LeafStatus, PendingTreeRow};
use super::{Operator, SessionKind, Step, WalletCall};
use crate::crypto::identity::{sha256, sign_digest};
use crate::crypto::signing::SigningJob;
use crate::crypto::{curve, PublicKey};
use crate::msg::{FinalizeIntent, GossipBody, InternalReply, InternalRequest, LeafRecord, NodeSet, OperatorSigningResult, RefundSet, UserJob, WalletReply};
use crate::node::Ctx;
use crate::tx::{sighash, template, timelock};
use crate::types::{KeyshareId, LeafId, OperatorId};
use bitcoin::{OutPoint, Transaction, TxOut};
use std::collections::{BTreeMap, BTreeSet};

pub(super) struct AddressSession {
    pub call: WalletCall,
    keyshare: KeyshareId,
    se_public_key: PublicKey,
    verifying_key: PublicKey,
}

pub(super) struct SignSession {
    pub call: WalletCall,
    keyshare: KeyshareId,
    signers: Vec<OperatorId>,
    jobs: Vec<SigningJob>,
}

/// The five deposit txs in job order, and the prevouts each one spends.
pub fn deposit_templates(deposit_tx: &Transaction, vout: u32, owner_signing_key: &PublicKey) -> Result<(Vec<Transaction>, Vec<Vec<TxOut>>), String> {
    let out = deposit_tx.output.get(vout as usize).ok_or_else(|| format!("deposit tx has no output {vout}"))?.clone();
    let outpoint = OutPoint { txid: deposit_tx.compute_txid(), vout };
    let (seq, direct_seq) = timelock::root_node_sequences();
    let root = template::node_txs(outpoint, &out, seq, direct_seq);
    let root = NodeSet { cpfp: root.cpfp, direct: root.direct };
    let (rseq, rdirect) = timelock::initial_refund_sequences();
    let refunds = root.refunds_to(owner_signing_key, rseq, rdirect)?;
    let prevouts = deposit_prevouts(&out, &root)?;
    let [r0, r1, r2] = refunds.into_array();
    Ok((vec![root.cpfp, root.direct, r0, r1, r2], prevouts))
}

/// What each of the five deposit txs spends: the deposit output (both root txs), then the
/// root's outputs as any leaf's refunds do.
fn deposit_prevouts(deposit_out: &TxOut, root: &NodeSet) -> Result<Vec<Vec<TxOut>>, String> {
    let mut prevouts = vec![vec![deposit_out.clone()], vec![deposit_out.clone()]];
    prevouts.extend(root.refund_prevouts()?);
    Ok(prevouts)
}

/// The 64-byte key-path signature in input `index`'s witness.
pub fn witness_signature(tx: &Transaction, index: usize) -> Result<bitcoin::secp256k1::schnorr::Signature, String> {
    let w = &tx.input.get(index).ok_or("missing input")?.witness;
    if w.len() != 1 {
        return Err(format!("expected a 1-element key-path witness, found {} elements", w.len()));
    }
    let bytes = w.nth(0).ok_or("empty witness")?;
    bitcoin::secp256k1::schnorr::Signature::from_slice(bytes).map_err(|e| format!("bad signature encoding: {e}"))
}

/// Check a signed tx against its template and its key-path signature against Y.
pub fn check_signed(expected: &Transaction, signed: &Transaction, prevouts: &[TxOut], verifying_key: &PublicKey) -> Result<(), String> {
    template::compare_transactions(expected, signed).map_err(|e| e.to_string())?;
    let msg = sighash::key_spend_sighash(signed, 0, prevouts).map_err(|e| e.to_string())?;
    let sig = witness_signature(signed, 0)?;
    if !crate::crypto::signing::verify(verifying_key, &msg, &sig) {
        return Err("signature does not verify for the leaf's key".into());
    }
    Ok(())
}

/// Where one step of a single-keyshare FROST session leads (`Operator::frost_step`).
pub(super) enum FrostStep {
    /// Round 1 done: send these round-2 requests.
    Round2(Vec<(OperatorId, InternalRequest)>),
    /// Round 2 done: the operators' aggregated results for the wallet.
    Signed(Vec<OperatorSigningResult>),
    /// Either round failed (nothing signed for good).
    Failed(String),
}

impl Operator {
    pub(super) fn generate_deposit_address(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, identity: PublicKey, signing_key: PublicKey) {
        let mut db = self.store.begin();
        // The same owner asking again for the same key (a duplicated or retried request) gets the
        // address already reserved for it: a fresh keyshare each time drained the pool.
        let reserved = db.deposit_addresses.iter().find(|(_, a)| a.confirmed.is_none() && a.owner_identity == identity && a.owner_signing_key == signing_key).map(|(k, _)| *k);
        let Some(keyshare) = reserved.or_else(|| db.pool.iter().next().copied()) else {
            return Self::reply_wallet(ctx, call, Err("keyshare pool empty, retry later".into()));
        };
        db.pool.remove(&keyshare);
        if db.pool.len() < self.cfg.params.dkg_pool_min {
            ctx.set_timer(crate::types::Micros::ZERO, crate::node::TimerKind::DkgPool);
        }
        let se_public_key = db.keyshares[&keyshare].share.public_key;
        self.store.commit(db);
        let Some(verifying_key) = curve::point_add(&se_public_key, &signing_key) else {
            return Self::reply_wallet(ctx, call, Err("degenerate signing key".into()));
        };
        let req = InternalRequest::MarkKeyshareForDeposit { keyshare, owner_identity: identity, owner_signing_key: signing_key };
        let requests = self.all_operators().into_iter().map(|o| (o, req.clone())).collect();
        let kind = SessionKind::DepositAddress(AddressSession { call, keyshare, se_public_key, verifying_key });
        self.start_session(ctx, kind, requests);
    }

    /// Participant: reserve the keyshare for this owner and sign the address.
    pub(super) fn mark_keyshare_for_deposit(&mut self, keyshare: KeyshareId, owner_identity: PublicKey, owner_signing_key: PublicKey) -> Result<InternalReply, String> {
        let mut db = self.store.begin();
        let row = db.keyshares.get_mut(&keyshare).ok_or_else(|| format!("unknown keyshare {keyshare}"))?;
        let verifying_key = curve::point_add(&row.share.public_key, &owner_signing_key).ok_or("degenerate signing key")?;
        let script = template::p2tr_script(&verifying_key);
        if let Some(existing) = db.deposit_addresses.get(&keyshare) {
            if existing.owner_identity != owner_identity || existing.owner_signing_key != owner_signing_key {
                return Err(format!("keyshare {keyshare} already reserved for another owner"));
            }
        } else {
            row.status = KeyshareStatus::InUse;
            db.address_by_script.insert(script.clone(), keyshare);
            db.deposit_addresses.insert(keyshare, DepositAddressRow { owner_identity, owner_signing_key, verifying_key, script: script.clone(), confirmed: None });
        }
        self.store.commit(db);
        Ok(InternalReply::AddressSignature(sign_digest(&self.cfg.identity, &sha256(&[script.as_bytes()]))))
    }

    pub(super) fn deposit_address_advance(&mut self, ctx: &mut Ctx<'_>, s: AddressSession, replies: BTreeMap<OperatorId, InternalReply>) -> Step<AddressSession> {
        let mut address_signatures = BTreeMap::new();
        for (op, r) in replies {
            if let InternalReply::AddressSignature(sig) = r {
                address_signatures.insert(op, sig);
            }
        }
        let reply = WalletReply::DepositAddress { keyshare: s.keyshare, se_public_key: s.se_public_key, verifying_key: s.verifying_key, address_signatures };
        Self::reply_wallet(ctx, s.call, Ok(reply));
        Step::Done
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_deposit_tree_creation(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, identity: PublicKey, keyshare: KeyshareId, leaf: LeafId, deposit_tx: Transaction, vout: u32, jobs: Vec<UserJob>) {
        match self.validate_tree_creation(identity, keyshare, leaf, &deposit_tx, vout, jobs) {
            Err(e) => Self::reply_wallet(ctx, call, Err(e)),
            Ok((row, signing_jobs)) => {
                let mut db = self.store.begin();
                db.pending_trees.insert(leaf, row);
                self.store.commit(db);
                let signers = self.choose_signers(ctx);
                let req = InternalRequest::FrostRound1 { keyshare, count: signing_jobs.len() as u8 };
                let requests = signers.iter().map(|o| (*o, req.clone())).collect();
                let kind = SessionKind::DepositSign(SignSession { call, keyshare, signers, jobs: signing_jobs });
                self.start_session(ctx, kind, requests);
            }
        }
    }

    fn validate_tree_creation(&self, identity: PublicKey, keyshare: KeyshareId, leaf: LeafId, deposit_tx: &Transaction, vout: u32, jobs: Vec<UserJob>) -> Result<(PendingTreeRow, Vec<SigningJob>), String> {
        let db = self.store.read();
        let addr = db.deposit_addresses.get(&keyshare).ok_or_else(|| format!("no deposit address for keyshare {keyshare}"))?;
        if addr.owner_identity != identity {
            return Err("deposit address belongs to another identity".into());
        }
        if db.leaves.contains_key(&leaf) {
            return Err(format!("leaf {leaf} already exists"));
        }
        let out = deposit_tx.output.get(vout as usize).ok_or("deposit output missing")?;
        if out.script_pubkey != addr.script {
            return Err("deposit output does not pay the deposit address".into());
        }
        let (expected, prevouts) = deposit_templates(deposit_tx, vout, &addr.owner_signing_key)?;
        if jobs.len() != expected.len() {
            return Err(format!("expected {} signing jobs, found {}", expected.len(), jobs.len()));
        }
        let mut signing_jobs = Vec::new();
        for (i, job) in jobs.into_iter().enumerate() {
            template::compare_transactions(&expected[i], &job.tx).map_err(|e| format!("job {i}: {e}"))?;
            let message = sighash::key_spend_sighash(&job.tx, 0, &prevouts[i]).map_err(|e| e.to_string())?;
            signing_jobs.push(SigningJob {
                message,
                verifying_key: addr.verifying_key,
                user_public_key: addr.owner_signing_key,
                operator_commitments: BTreeMap::new(),
                user_commitment: job.user_commitment,
            });
        }
        let row = PendingTreeRow {
            keyshare,
            deposit_outpoint: OutPoint { txid: deposit_tx.compute_txid(), vout },
            value_sats: out.value.to_sat(),
            expected,
        };
        Ok((row, signing_jobs))
    }

    pub(super) fn deposit_sign_advance(&mut self, ctx: &mut Ctx<'_>, phase: u8, mut s: SignSession, replies: BTreeMap<OperatorId, InternalReply>) -> Step<SignSession> {
        match self.frost_step(ctx, phase, s.keyshare, &mut s.jobs, &s.signers, replies) {
            FrostStep::Round2(requests) => Step::Next(s, requests),
            FrostStep::Signed(results) => {
                Self::reply_wallet(ctx, s.call, Ok(WalletReply::Signing { results }));
                Step::Done
            }
            FrostStep::Failed(e) => {
                Self::reply_wallet(ctx, s.call, Err(e));
                Step::Done
            }
        }
    }

    /// One step of a single-keyshare FROST session (deposit tree, renew): after round 1, attach
    /// the commitments and ask `signers` for round 2; after round 2, aggregate the shares.
    pub(super) fn frost_step(&mut self, ctx: &mut Ctx<'_>, phase: u8, keyshare: KeyshareId, jobs: &mut [SigningJob], signers: &[OperatorId], replies: BTreeMap<OperatorId, InternalReply>) -> FrostStep {
        if phase == 1 {
            if let Err(e) = self.attach_commitments(ctx, keyshare, jobs, replies) {
                return FrostStep::Failed(e);
            }
            let req = InternalRequest::FrostRound2 { keyshare, jobs: jobs.to_vec() };
            return FrostStep::Round2(signers.iter().map(|o| (*o, req.clone())).collect());
        }
        match self.signing_results(ctx, keyshare, jobs, replies) {
            Ok(results) => FrostStep::Signed(results),
            Err(e) => FrostStep::Failed(e),
        }
    }

    /// Round-1 replies → each job's operator commitments (checking every signer holds the same
    /// SE key as this coordinator).
    pub(super) fn attach_commitments(&mut self, ctx: &mut Ctx<'_>, keyshare: KeyshareId, jobs: &mut [SigningJob], replies: BTreeMap<OperatorId, InternalReply>) -> Result<(), String> {
        let mine = self.store.read().keyshares.get(&keyshare).ok_or("keyshare vanished")?.share.public_key;
        for (op, r) in replies {
            let InternalReply::Commitments { commitments, se_public_key } = r else {
                return Err(format!("{op} sent no commitments"));
            };
            if se_public_key != mine {
                let reason = format!("{op} holds a different SE key for keyshare {keyshare}");
                self.name_culprit(ctx, op, reason.clone());
                return Err(reason);
            }
            if commitments.len() != jobs.len() {
                return Err(format!("{op} sent {} commitments for {} jobs", commitments.len(), jobs.len()));
            }
            for (job, c) in jobs.iter_mut().zip(commitments) {
                job.operator_commitments.insert(op, c);
            }
        }
        Ok(())
    }

    /// Round-2 replies → per job, what the wallet needs to add its share and aggregate.
    pub(super) fn signing_results(&mut self, ctx: &mut Ctx<'_>, keyshare: KeyshareId, jobs: &[SigningJob], replies: BTreeMap<OperatorId, InternalReply>) -> Result<Vec<OperatorSigningResult>, String> {
        let share = self.store.read().keyshares.get(&keyshare).ok_or("keyshare vanished")?.share.clone();
        // Identifiable abort before the wallet sees anything: check every share on its own.
        let mut culprits = BTreeSet::new();
        for (op, r) in &replies {
            let (InternalReply::Shares(shares), Some(public)) = (r, share.public_shares.get(op)) else { continue };
            if shares.iter().zip(jobs).any(|(s, j)| crate::crypto::signing::verify_operator_share(j, *op, s, public).is_err()) {
                culprits.insert(*op);
            }
        }
        if !culprits.is_empty() {
            for op in &culprits {
                self.name_culprit(ctx, *op, "signature share does not verify".into());
            }
            let named: Vec<String> = culprits.iter().map(|o| o.to_string()).collect();
            return Err(format!("invalid signature share from {}", named.join(", ")));
        }
        let mut results: Vec<OperatorSigningResult> = jobs
            .iter()
            .map(|j| OperatorSigningResult {
                operator_commitments: j.operator_commitments.clone(),
                operator_shares: BTreeMap::new(),
                operator_public_shares: j.operator_commitments.keys().filter_map(|o| share.public_shares.get(o).map(|p| (*o, *p))).collect(),
            })
            .collect();
        for (op, r) in replies {
            let InternalReply::Shares(shares) = r else { return Err(format!("{op} sent no shares")) };
            if shares.len() != jobs.len() {
                return Err(format!("{op} sent {} shares for {} jobs", shares.len(), jobs.len()));
            }
            for (res, s) in results.iter_mut().zip(shares) {
                res.operator_shares.insert(op, s);
            }
        }
        Ok(results)
    }

    pub(super) fn finalize_node_signatures(&mut self, ctx: &mut Ctx<'_>, intent: FinalizeIntent, leaf: LeafId, signed: Vec<Transaction>) -> Result<(), String> {
        match intent {
            FinalizeIntent::Creation { leaf: l } if l == leaf => self.finalize_tree_creation(ctx, leaf, signed),
            FinalizeIntent::Transfer { transfer } => self.finalize_transfer(ctx, transfer, leaf, signed),
            FinalizeIntent::Creation { .. } => Err("intent names another leaf".into()),
        }
    }

    fn finalize_tree_creation(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId, signed: Vec<Transaction>) -> Result<(), String> {
        let mut db = self.store.begin();
        if db.leaves.contains_key(&leaf) {
            return Ok(()); // a retried finalize
        }
        let pending = db.pending_trees.get(&leaf).ok_or_else(|| format!("no tree pending for leaf {leaf}"))?.clone();
        let addr = db.deposit_addresses.get(&pending.keyshare).ok_or("deposit address vanished")?.clone();
        if signed.len() != pending.expected.len() {
            return Err(format!("expected {} signed txs, found {}", pending.expected.len(), signed.len()));
        }
        let deposit_out = TxOut { value: bitcoin::Amount::from_sat(pending.value_sats), script_pubkey: addr.script.clone() };
        let root = NodeSet { cpfp: pending.expected[0].clone(), direct: pending.expected[1].clone() };
        let prevouts = deposit_prevouts(&deposit_out, &root)?;
        for (i, tx) in signed.iter().enumerate() {
            check_signed(&pending.expected[i], tx, &prevouts[i], &addr.verifying_key).map_err(|e| format!("tx {i}: {e}"))?;
        }
        let mut it = signed.into_iter();
        let (Some(n0), Some(n1), Some(r0), Some(r1), Some(r2)) = (it.next(), it.next(), it.next(), it.next(), it.next()) else {
            return Err("wrong number of signed txs".into());
        };
        let record = LeafRecord {
            leaf,
            keyshare: pending.keyshare,
            value_sats: pending.value_sats,
            verifying_key: addr.verifying_key,
            owner_identity: addr.owner_identity,
            owner_signing_key: addr.owner_signing_key,
            deposit_outpoint: pending.deposit_outpoint,
            nodes: NodeSet { cpfp: n0, direct: n1 },
            refunds: RefundSet { cpfp: r0, direct: r1, direct_from_cpfp: r2 },
            ancestors: Vec::new(),
        };
        self.apply_finalize_tree(&mut db, &record)?;
        db.pending_trees.remove(&leaf);
        let seq = Self::gossip_create(&mut db, GossipBody::FinalizeTreeCreation { leaf: record }, self.others());
        self.store.commit(db);
        self.gossip_push(ctx, seq);
        Ok(())
    }

    pub(super) fn apply_finalize_tree(&self, db: &mut Db, leaf: &LeafRecord) -> Result<(), String> {
        if db.leaves.contains_key(&leaf.leaf) {
            return Ok(());
        }
        let ks = db.keyshares.get_mut(&leaf.keyshare).ok_or_else(|| format!("unknown keyshare {}", leaf.keyshare))?;
        if curve::point_add(&ks.share.public_key, &leaf.owner_signing_key) != Some(leaf.verifying_key) {
            return Err("leaf key is not owner key + SE key".into());
        }
        ks.status = KeyshareStatus::InUse;
        let status = if self.deposit_mature(db, leaf.keyshare, leaf.deposit_outpoint) { LeafStatus::Available } else { LeafStatus::Creating };
        db.leaf_by_deposit.insert(leaf.deposit_outpoint, leaf.leaf);
        db.leaves.insert(
            leaf.leaf,
            LeafRow {
                status,
                keyshare: leaf.keyshare,
                value_sats: leaf.value_sats,
                verifying_key: leaf.verifying_key,
                owner_identity: leaf.owner_identity,
                owner_signing_key: leaf.owner_signing_key,
                deposit_outpoint: leaf.deposit_outpoint,
                nodes: leaf.nodes.clone(),
                refunds: leaf.refunds.clone(),
                ancestors: leaf.ancestors.clone(),
            },
        );
        Ok(())
    }

    /// Spark's `OperatorSelectionOptionThreshold`: a random subset of t operators.
    pub(super) fn choose_signers(&self, ctx: &mut Ctx<'_>) -> Vec<OperatorId> {
        self.choose_signers_from(ctx, self.all_operators().into_iter().collect())
    }

    pub(super) fn choose_signers_from(&self, ctx: &mut Ctx<'_>, mut pool: Vec<OperatorId>) -> Vec<OperatorId> {
        use rand_core::RngCore;
        // Identifiable abort: leave named culprits out while t others remain (n ≥ t + f).
        let trusted: Vec<OperatorId> = pool.iter().copied().filter(|o| !self.is_suspect(*o, ctx.now)).collect();
        if trusted.len() < pool.len() && trusted.len() >= usize::from(self.cfg.params.threshold) {
            pool = trusted;
        }
        // Fisher–Yates with the node's own RNG stream.
        for i in (1..pool.len()).rev() {
            let j = (ctx.rng.next_u32() as usize) % (i + 1);
            pool.swap(i, j);
        }
        pool.truncate(usize::from(self.cfg.params.threshold));
        pool.sort();
        pool
    }
}
