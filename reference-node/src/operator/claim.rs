//! Transfer claim (spark-protocol §4.2): the receiver's tweak is stored on every operator, then a
//! two-phase settle (prepare → COMMIT/ROLLBACK) moves ownership on all of them, then the
//! receiver's refunds are co-signed and finalized. Once COMMIT is decided it is never rolled back
//! (the hazard of buildonspark/spark#24).
use super::deposit::check_signed;
use super::store::{Db, LeafStatus, StoredTweak, TransferStatus};
use super::{Operator, SessionKind, Step, WalletCall};
use crate::crypto::identity::sha256;
use crate::crypto::signing::SigningJob;
use crate::crypto::{curve, PublicKey};
use crate::msg::{ClaimLeafJobs, ClaimLeafView, GossipBody, InternalReply, InternalRequest, PendingTransferView, ReceiverLeafTweak, RefundSet, WalletReply};
use crate::node::Ctx;
use crate::tx::{sighash, template, timelock};
use crate::types::{KeyshareId, LeafId, OperatorId, TransferId};
use bitcoin::Transaction;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Prepare,
    WaitSettled,
    Round1,
    Round2,
}

pub(super) struct ClaimSession {
    pub call: WalletCall,
    pub(super) transfer: TransferId,
    pub(super) stage: Stage,
    keyshare: KeyshareId,
    jobs: Vec<SigningJob>,
    signers: Vec<OperatorId>,
    /// The receiver-settle attempt this session prepared (0 when the commit was already decided).
    pub(super) attempt: u64,
}

impl ClaimSession {
    pub(super) fn in_signing_round(&self) -> bool {
        matches!(self.stage, Stage::Round1 | Stage::Round2)
    }
}

/// What every operator's copy of the receiver's tweak has in common: the Feldman proofs and the
/// public share tweaks (each operator's secret share differs by design).
pub(super) fn tweak_digest(t: &StoredTweak) -> [u8; 32] {
    let public = (&t.share.proofs, &t.pubkey_shares_tweak);
    sha256(&[&bincode::serialize(&public).unwrap_or_default()])
}

impl Operator {
    pub(super) fn query_pending_transfers(&self, receiver: &PublicKey) -> Vec<PendingTransferView> {
        let db = self.store.read();
        db.transfers
            .iter()
            .filter(|(_, t)| t.receiver == *receiver && t.status.is_sent() && t.status != TransferStatus::Completed)
            .filter_map(|(id, t)| {
                let leaves = t
                    .leaves
                    .iter()
                    .map(|(leaf, r)| {
                        let row = db.leaves.get(leaf)?;
                        Some(ClaimLeafView {
                            leaf: *leaf,
                            value_sats: row.value_sats,
                            verifying_key: row.verifying_key,
                            owner_signing_key: row.owner_signing_key,
                            deposit_outpoint: row.deposit_outpoint,
                            nodes: row.nodes.clone(),
                            intermediate_refunds: r.intermediate_refunds.clone()?,
                            secret_cipher: r.secret_cipher.clone(),
                            signature: r.signature.clone(),
                            ancestors: row.ancestors.clone(),
                        })
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some(PendingTransferView { transfer: *id, sender: t.sender, leaves })
            })
            .collect()
    }

    /// Every operator: store the receiver's tweak for the transfer's leaves (idempotent for the
    /// same tweak; replaceable until the settle is prepared).
    pub(super) fn claim_tweak_keys(&mut self, transfer: TransferId, receiver: &PublicKey, leaves: Vec<ReceiverLeafTweak>) -> Result<(), String> {
        let all: BTreeSet<OperatorId> = self.all_operators();
        for l in &leaves {
            self.validate_tweak_share(&l.share, &l.pubkey_shares_tweak, &all)?;
        }
        let mut db = self.store.begin();
        let t = db.transfers.get_mut(&transfer).ok_or_else(|| format!("unknown transfer {transfer}"))?;
        if t.receiver != *receiver {
            return Err("not the transfer's receiver".into());
        }
        if leaves.iter().map(|l| l.leaf).collect::<BTreeSet<_>>() != t.leaves.keys().copied().collect() {
            return Err("tweaks do not cover exactly the transfer's leaves".into());
        }
        let replaceable = matches!(t.status, TransferStatus::SenderKeyTweaked | TransferStatus::ReceiverKeyTweaked);
        for l in leaves {
            let tweak = StoredTweak { share: l.share, pubkey_shares_tweak: l.pubkey_shares_tweak };
            let row = t.leaves.get_mut(&l.leaf).ok_or("leaf vanished")?;
            if replaceable {
                row.receiver_tweak = Some(tweak);
            } else if row.receiver_tweak.as_ref() != Some(&tweak) {
                return Err(format!("transfer {transfer} is {:?}: a different tweak is already settling", t.status));
            }
        }
        if replaceable {
            t.status = TransferStatus::ReceiverKeyTweaked;
        }
        self.store.commit(db);
        Ok(())
    }

    pub(super) fn claim_sign_refunds(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, transfer: TransferId, receiver: PublicKey, leaves: Vec<ClaimLeafJobs>) {
        if let Some(r) = self.completed_claim(transfer, &receiver, &leaves) {
            return Self::reply_wallet(ctx, call, r); // a retry of a finished claim (claim_done.rs)
        }
        let (keyshare, jobs, decided) = match self.validate_claim(transfer, &receiver, &leaves) {
            Ok(v) => v,
            Err(e) => return Self::reply_wallet(ctx, call, Err(e)),
        };
        for l in &leaves {
            if let Err(e) = self.guard_refund_timelock(ctx, l.leaf, l.refunds.iter().map(|j| &j.tx)) {
                return Self::reply_wallet(ctx, call, Err(e));
            }
        }
        let mut s = ClaimSession { call, transfer, stage: Stage::Prepare, keyshare, jobs, signers: Vec::new(), attempt: 0 };
        if decided {
            s.stage = Stage::WaitSettled;
            let id = self.start_session(ctx, SessionKind::Claim(Box::new(s)), Vec::new());
            self.advance(ctx, id);
        } else {
            s.attempt = self.next_settle_attempt(transfer);
            let db = self.store.read();
            let digests = db.transfers[&transfer].leaves.iter().filter_map(|(l, r)| r.receiver_tweak.as_ref().map(|t| (*l, tweak_digest(t)))).collect();
            if self.two_phase() {
                return self.twopc_claim_prepare(ctx, s, digests); // two-phase commit mode
            }
            let req = InternalRequest::SettleReceiverPrepare { transfer, attempt: s.attempt, tweak_digests: digests };
            let requests = self.all_operators().into_iter().map(|o| (o, req.clone())).collect();
            self.start_session(ctx, SessionKind::Claim(Box::new(s)), requests);
        }
    }

    /// Coordinator: number a new receiver-settle attempt durably (before its Prepare leaves), so
    /// a restarted coordinator never reuses an attempt whose rollback may still be in flight.
    fn next_settle_attempt(&mut self, transfer: TransferId) -> u64 {
        let mut db = self.store.begin();
        let row = db.receiver_settles.entry(transfer).or_default();
        row.attempts_started += 1;
        let attempt = row.attempts_started;
        self.store.commit(db);
        attempt
    }

    fn validate_claim(&self, transfer: TransferId, receiver: &PublicKey, leaves: &[ClaimLeafJobs]) -> Result<(KeyshareId, Vec<SigningJob>, bool), String> {
        let db = self.store.read();
        let t = db.transfers.get(&transfer).ok_or_else(|| format!("unknown transfer {transfer}"))?;
        if t.receiver != *receiver {
            return Err("not the transfer's receiver".into());
        }
        if t.status < TransferStatus::ReceiverKeyTweaked || t.status.is_terminal() {
            return Err(format!("transfer {transfer} is {:?}", t.status));
        }
        let [lj] = leaves else { return Err("one leaf per claim is supported".into()) };
        let tl = t.leaves.get(&lj.leaf).ok_or("leaf not in transfer")?;
        let leaf = db.leaves.get(&lj.leaf).ok_or("unknown leaf")?;
        let ks = &db.keyshares.get(&leaf.keyshare).ok_or("keyshare vanished")?.share;
        // The receiver's new key must complete Y with the SE key after its tweak.
        let se_after = if t.receiver_commit_decided {
            ks.public_key
        } else {
            let rt = tl.receiver_tweak.as_ref().ok_or("no receiver tweak stored")?;
            curve::point_add(&ks.public_key, rt.share.proofs.first().ok_or("no proofs")?).ok_or("SE key at infinity")?
        };
        if curve::point_add(&lj.new_signing_key, &se_after) != Some(leaf.verifying_key) {
            return Err("new signing key does not match the settled SE key".into());
        }
        let expected = Self::expected_claim_refunds(leaf, self.claim_refund_basis(leaf, tl.intermediate_refunds.as_ref().ok_or("no intermediate refunds")?), &lj.new_signing_key)?;
        if lj.refunds.len() != 3 {
            return Err(format!("expected 3 refunds, found {}", lj.refunds.len()));
        }
        let prevouts = leaf.nodes.refund_prevouts()?;
        let mut jobs = Vec::new();
        for (i, uj) in lj.refunds.iter().enumerate() {
            template::compare_transactions(expected.as_array()[i], &uj.tx).map_err(|e| format!("refund {i}: {e}"))?;
            jobs.push(SigningJob {
                message: sighash::key_spend_sighash(&uj.tx, 0, &prevouts[i]).map_err(|e| e.to_string())?,
                verifying_key: leaf.verifying_key,
                user_public_key: lj.new_signing_key,
                operator_commitments: BTreeMap::new(),
                user_commitment: uj.user_commitment.clone(),
            });
        }
        Ok((leaf.keyshare, jobs, t.receiver_commit_decided))
    }

    /// The refunds whose timelocks a claim keeps: the transfer's intermediate refunds, or, under
    /// the breez#314 hazard, the leaf's old refund (so receiving never decrements).
    fn claim_refund_basis<'a>(&self, leaf: &'a super::store::LeafRow, intermediate: &'a RefundSet) -> &'a RefundSet {
        if self.cfg.params.hazards.claim_skip_timelock_decrement {
            &leaf.refunds
        } else {
            intermediate
        }
    }

    /// spark-protocol §3.4: the claim keeps the intermediate refunds' timelocks and pays the
    /// receiver's new leaf key.
    pub(super) fn expected_claim_refunds(leaf: &super::store::LeafRow, intermediate: &RefundSet, new_key: &PublicKey) -> Result<RefundSet, String> {
        let (seq, direct) = intermediate.sequences()?;
        let (seq, direct) = crate::tx::htlc::claim_sequences(seq, direct); // Lightning send's HTLC refunds
        timelock::validate_sequence(seq).map_err(|e| e.to_string())?;
        leaf.nodes.refunds_to(new_key, seq, direct)
    }

    pub(super) fn claim_advance(&mut self, ctx: &mut Ctx<'_>, _id: u64, mut s: ClaimSession, replies: BTreeMap<OperatorId, InternalReply>) -> Step<ClaimSession> {
        match s.stage {
            Stage::Prepare if self.two_phase() => self.twopc_claim_commit(ctx, s),
            Stage::Prepare => {
                // Every operator prepared: decide COMMIT durably, apply our own, gossip the rest.
                let mut db = self.store.begin();
                if let Err(e) = self.apply_receiver_commit(&mut db, s.transfer, s.attempt) {
                    self.claim_abort(ctx, s, e);
                    return Step::Done;
                }
                if let Some(t) = db.transfers.get_mut(&s.transfer) {
                    t.receiver_commit_decided = true;
                }
                let others = self.others();
                let seq = (!others.is_empty()).then(|| Self::gossip_create(&mut db, GossipBody::SettleReceiverCommit { transfer: s.transfer, attempt: s.attempt }, others));
                self.store.commit(db);
                if let Some(seq) = seq {
                    self.gossip_push(ctx, seq);
                }
                s.stage = Stage::WaitSettled;
                self.claim_try_sign(ctx, s)
            }
            Stage::WaitSettled => self.claim_try_sign(ctx, s),
            Stage::Round1 => match self.attach_commitments(ctx, s.keyshare, &mut s.jobs, replies) {
                Err(e) => {
                    self.claim_abort(ctx, s, e);
                    Step::Done
                }
                Ok(()) => {
                    s.stage = Stage::Round2;
                    let req = InternalRequest::FrostRound2 { keyshare: s.keyshare, jobs: s.jobs.clone() };
                    let requests = s.signers.iter().map(|o| (*o, req.clone())).collect();
                    Step::Next(s, requests)
                }
            },
            Stage::Round2 => {
                let results = self.signing_results(ctx, s.keyshare, &s.jobs, replies);
                Self::reply_wallet(ctx, s.call, results.map(|results| WalletReply::Signing { results }));
                Step::Done
            }
        }
    }

    /// Sign once at least t operators hold the receiver's key (spark-protocol §4.2 claim step 4).
    pub(super) fn claim_try_sign(&mut self, ctx: &mut Ctx<'_>, mut s: ClaimSession) -> Step<ClaimSession> {
        let settled: Vec<OperatorId> = self.settled_operators(s.transfer).into_iter().collect();
        if settled.len() < usize::from(self.cfg.params.threshold) {
            return Step::Next(s, Vec::new()); // wait for receipts (timeout armed)
        }
        s.signers = self.choose_signers_from(ctx, settled);
        s.stage = Stage::Round1;
        let req = InternalRequest::FrostRound1 { keyshare: s.keyshare, count: s.jobs.len() as u8 };
        let requests = s.signers.iter().map(|o| (*o, req.clone())).collect();
        Step::Next(s, requests)
    }

    /// New receiver-commit receipts arrived: a claim waiting for them may proceed.
    pub(super) fn resume_claim(&mut self, ctx: &mut Ctx<'_>, transfer: TransferId) {
        let waiting: Vec<u64> = self
            .vol
            .sessions
            .iter()
            .filter(|(_, s)| matches!(&s.kind, SessionKind::Claim(c) if c.transfer == transfer && c.stage == Stage::WaitSettled))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.advance(ctx, id);
        }
    }

    pub(super) fn claim_abort(&mut self, ctx: &mut Ctx<'_>, s: ClaimSession, reason: String) {
        if self.two_phase() {
            return self.twopc_claim_abort(ctx, s, reason); // two-phase commit mode
        }
        // Hazard buildonspark/spark#24: roll back whatever stage failed, decided or not.
        let split = self.cfg.params.hazards.claim_settle_split;
        if s.stage == Stage::Prepare || split {
            // Not decided: roll back everywhere (durably), so the receiver can try again.
            let mut db = self.store.begin();
            let decided = db.transfers.get(&s.transfer).is_some_and(|t| t.receiver_commit_decided);
            if (!decided || split) && Self::apply_receiver_rollback(&mut db, s.transfer, s.attempt, split).is_ok() {
                let seq = Self::gossip_create(&mut db, GossipBody::SettleReceiverRollback { transfer: s.transfer, attempt: s.attempt }, self.others());
                self.store.commit(db);
                self.gossip_push(ctx, seq);
            }
        }
        Self::reply_wallet(ctx, s.call, Err(reason));
    }

    /// Participant: lock the receiver's tweak for settle `attempt` and remember the attempt, so a
    /// rollback of an older attempt arriving later is recognised as stale.
    pub(super) fn settle_receiver_prepare(&mut self, transfer: TransferId, attempt: u64, digests: &BTreeMap<LeafId, [u8; 32]>) -> Result<InternalReply, String> {
        let mut db = self.store.begin();
        Self::settle_receiver_prepare_in(&mut db, transfer, attempt, digests)?;
        self.store.commit(db);
        Ok(InternalReply::Ack)
    }

    /// The domain work of the receiver-settle prepare inside the caller's store transaction (the
    /// two-phase commit mode writes its PARTICIPANT row in the same one).
    pub(super) fn settle_receiver_prepare_in(db: &mut Db, transfer: TransferId, attempt: u64, digests: &BTreeMap<LeafId, [u8; 32]>) -> Result<(), String> {
        let t = db.transfers.get_mut(&transfer).ok_or_else(|| format!("unknown transfer {transfer}"))?;
        let mine: BTreeMap<LeafId, [u8; 32]> = t.leaves.iter().filter_map(|(l, r)| r.receiver_tweak.as_ref().map(|tw| (*l, tweak_digest(tw)))).collect();
        if mine != *digests {
            return Err("stored receiver tweak differs from the coordinator's".into());
        }
        match t.status {
            TransferStatus::ReceiverKeyTweaked => t.status = TransferStatus::ReceiverKeyTweakLocked,
            TransferStatus::ReceiverKeyTweakLocked | TransferStatus::ReceiverKeyTweakApplied | TransferStatus::Completed => {}
            s => return Err(format!("cannot prepare a receiver settle in {s:?}")),
        }
        let row = db.receiver_settles.entry(transfer).or_default();
        row.locked_attempt = row.locked_attempt.max(attempt);
        Ok(())
    }

    /// `attempt` is informational here: a commit is decided only after every operator prepared
    /// that attempt with the same tweak digests, and a locked tweak cannot be replaced.
    pub(super) fn apply_receiver_commit(&self, db: &mut Db, transfer: TransferId, attempt: u64) -> Result<(), String> {
        let t = db.transfers.get(&transfer).ok_or_else(|| format!("unknown transfer {transfer}"))?;
        match t.status {
            TransferStatus::ReceiverKeyTweakLocked | TransferStatus::ReceiverKeyTweaked => {}
            TransferStatus::ReceiverKeyTweakApplied | TransferStatus::Completed => return Ok(()),
            s => return Err(format!("cannot commit a receiver settle in {s:?}")),
        }
        let receiver = t.receiver;
        let tweaks: Vec<(LeafId, StoredTweak)> = t
            .leaves
            .iter()
            .map(|(l, r)| r.receiver_tweak.clone().map(|tw| (*l, tw)).ok_or_else(|| format!("no receiver tweak for leaf {l}")))
            .collect::<Result<_, _>>()?;
        for (leaf, tweak) in tweaks {
            Self::apply_key_tweak(db, self.cfg.id, leaf, &tweak)?;
            if let Some(row) = db.leaves.get_mut(&leaf) {
                row.owner_identity = receiver;
            }
        }
        if let Some(t) = db.transfers.get_mut(&transfer) {
            t.status = TransferStatus::ReceiverKeyTweakApplied;
        }
        let row = db.receiver_settles.entry(transfer).or_default();
        row.locked_attempt = row.locked_attempt.max(attempt);
        Ok(())
    }

    /// Roll back receiver-settle `attempt`. A participant rolls back only the attempt it is locked
    /// for, or an older one it never prepared a newer attempt after. Two rollbacks are provably
    /// stale and are no-ops that succeed (so the origin's gossip row is delivered, not retried
    /// forever): one for an attempt older than the one this operator prepared (the coordinator
    /// started that newer attempt after deciding this rollback), and one arriving after this
    /// operator applied a commit (the coordinator decides a commit only after every operator
    /// prepared its attempt, and never rolls back after deciding commit, so the rollback is for an
    /// earlier attempt). Acking these as applied is not the "ack what you failed to apply"
    /// hazard (spark-protocol §8.2 #10): the operator's state already is what the coordinator's
    /// final decision requires; applying the rollback would be the bug (spark#24's split).
    ///
    /// `split_hazard` (buildonspark/spark#24): attempts are ignored and the row of an already
    /// applied commit is reset too, but its key tweak stays applied, so a retried claim tweaks
    /// this share a second time.
    pub(super) fn apply_receiver_rollback(db: &mut Db, transfer: TransferId, attempt: u64, split_hazard: bool) -> Result<(), String> {
        let locked_attempt = db.receiver_settles.get(&transfer).map_or(0, |r| r.locked_attempt);
        let t = db.transfers.get_mut(&transfer).ok_or_else(|| format!("unknown transfer {transfer}"))?;
        if !split_hazard {
            match t.status {
                TransferStatus::ReceiverKeyTweakApplied | TransferStatus::Completed => return Ok(()),
                _ if attempt < locked_attempt => return Ok(()),
                _ => {}
            }
        }
        match t.status {
            TransferStatus::ReceiverKeyTweakApplied if split_hazard => {
                t.status = TransferStatus::SenderKeyTweaked;
                t.receiver_commit_decided = false;
                for r in t.leaves.values_mut() {
                    r.receiver_tweak = None;
                }
                Ok(())
            }
            TransferStatus::ReceiverKeyTweaked | TransferStatus::ReceiverKeyTweakLocked => {
                t.status = TransferStatus::SenderKeyTweaked;
                for r in t.leaves.values_mut() {
                    r.receiver_tweak = None;
                }
                Ok(())
            }
            TransferStatus::SenderKeyTweaked => Ok(()),
            s => Err(format!("key tweak is already applied ({s:?}); refusing to roll back")),
        }
    }

    /// Coordinator: the receiver's aggregated refunds arrive; store them and finish the transfer.
    pub(super) fn finalize_transfer(&mut self, ctx: &mut Ctx<'_>, transfer: TransferId, leaf: LeafId, signed: Vec<Transaction>) -> Result<(), String> {
        let mut db = self.store.begin();
        let t = db.transfers.get(&transfer).ok_or_else(|| format!("unknown transfer {transfer}"))?;
        if t.status == TransferStatus::Completed {
            return Ok(());
        }
        if t.status != TransferStatus::ReceiverKeyTweakApplied {
            return Err(format!("transfer {transfer} is {:?}", t.status));
        }
        let tl = t.leaves.get(&leaf).ok_or("leaf not in transfer")?;
        let row = db.leaves.get(&leaf).ok_or("unknown leaf")?;
        let expected = Self::expected_claim_refunds(row, self.claim_refund_basis(row, tl.intermediate_refunds.as_ref().ok_or("no intermediate refunds")?), &row.owner_signing_key)?;
        let refunds = RefundSet::from_vec(signed).ok_or("expected 3 signed refunds")?;
        let prevouts = row.nodes.refund_prevouts()?;
        for (i, tx) in refunds.as_array().into_iter().enumerate() {
            check_signed(expected.as_array()[i], tx, &prevouts[i], &row.verifying_key).map_err(|e| format!("refund {i}: {e}"))?;
        }
        let all = BTreeMap::from([(leaf, refunds)]);
        Self::apply_finalize_transfer(&mut db, transfer, &all)?;
        if self.two_phase() {
            return self.twopc_finalize_transfer(ctx, db, transfer, all); // two-phase commit mode
        }
        let seq = Self::gossip_create(&mut db, GossipBody::FinalizeTransfer { transfer, refunds: all }, self.others());
        self.store.commit(db);
        self.gossip_push(ctx, seq);
        Ok(())
    }

    pub(super) fn apply_finalize_transfer(db: &mut Db, transfer: TransferId, refunds: &BTreeMap<LeafId, RefundSet>) -> Result<(), String> {
        let t = db.transfers.get_mut(&transfer).ok_or_else(|| format!("unknown transfer {transfer}"))?;
        match t.status {
            TransferStatus::Completed => return Ok(()),
            TransferStatus::ReceiverKeyTweakApplied => {}
            s => return Err(format!("cannot finalize transfer {transfer} in {s:?}")),
        }
        t.status = TransferStatus::Completed;
        for (leaf, r) in refunds {
            let row = db.leaves.get_mut(leaf).ok_or_else(|| format!("unknown leaf {leaf}"))?;
            row.refunds = r.clone();
            if row.status == LeafStatus::TransferLocked(transfer) {
                row.status = LeafStatus::Available;
            }
        }
        Ok(())
    }
}
