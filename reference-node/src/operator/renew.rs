//! Renew leaf, operator side (spark-protocol §3.5, §4.4): `renew_leaf` with one of three
//! signing-job variants. The coordinator checks the leaf is AVAILABLE and the caller's, checks
//! the variant's precondition, rebuilds every tx from its own tables and byte-compares the
//! wallet's (`CompareTransactions`), locks the leaf (I-4), co-signs with FROST (user share +
//! operators, as tree creation does), and on finalize checks the aggregated signatures, stores
//! the new exit chain and replicates it by durable gossip (`FinalizeRenewRefundTimelock` /
//! `FinalizeRenewNodeTimelock`). Every operator applies a renew by rebuilding the same templates
//! from its own row, so a tampered gossip payload is refused, never stored.
//!
//! The lock is re-entrant for the owner: a wallet retrying after a lost reply or a crash starts
//! the renew again (the templates are deterministic), so a renew never locks a leaf for good.
use super::deposit::{check_signed, FrostStep};
use super::store::{Db, LeafStatus};
use super::{Operator, SessionKind, Step, WalletCall};
use crate::crypto::signing::SigningJob;
use crate::crypto::PublicKey;
use crate::msg::{GossipBody, InternalReply, InternalRequest, UserJob, WalletReply};
use crate::node::Ctx;
use crate::tx::renew::{renew_templates, RenewKind, RenewTxs};
use crate::tx::{sighash, template};
use crate::types::{KeyshareId, LeafId, OperatorId};
use bitcoin::Transaction;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A renew the coordinator locked the leaf for and is signing (durable: a restarted coordinator
/// still knows why the leaf is RENEW_LOCKED and what it agreed to sign).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRenewRow {
    pub kind: RenewKind,
    pub owner_identity: PublicKey,
}

pub(super) struct RenewSession {
    pub call: WalletCall,
    leaf: LeafId,
    keyshare: KeyshareId,
    signers: Vec<OperatorId>,
    jobs: Vec<SigningJob>,
}

/// The expected renew of a stored leaf: its templates rebuilt from the row.
fn expected(db: &Db, leaf: LeafId, kind: RenewKind, hazard: bool) -> Result<RenewTxs, String> {
    let row = db.leaves.get(&leaf).ok_or_else(|| format!("unknown leaf {leaf}"))?;
    renew_templates(kind, &row.nodes, &row.refunds, &row.owner_signing_key, hazard).map_err(|e| e.to_string())
}

impl Operator {
    /// Coordinator: `renew_leaf`. Validates, locks, and starts FROST round 1.
    pub(super) fn start_renew(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, identity: PublicKey, leaf: LeafId, kind: RenewKind, jobs: Vec<UserJob>) {
        let mut db = self.store.begin();
        match Self::validate_renew(&db, identity, leaf, kind, jobs, self.cfg.params.hazards.renew_node_on_zero_csv) {
            Err(e) => Self::reply_wallet(ctx, call, Err(format!("{}: {e}", kind.name()))),
            Ok((keyshare, signing_jobs)) => {
                if let Some(row) = db.leaves.get_mut(&leaf) {
                    row.status = LeafStatus::RenewLocked;
                }
                db.pending_renews.insert(leaf, PendingRenewRow { kind, owner_identity: identity });
                self.store.commit(db);
                let signers = self.choose_signers(ctx);
                let req = InternalRequest::FrostRound1 { keyshare, count: signing_jobs.len() as u8 };
                let requests = signers.iter().map(|o| (*o, req.clone())).collect();
                let kind = SessionKind::Renew(RenewSession { call, leaf, keyshare, signers, jobs: signing_jobs });
                self.start_session(ctx, kind, requests);
            }
        }
    }

    /// The leaf is AVAILABLE (or locked by an earlier attempt of this owner's renew), owned by
    /// the caller, meets the variant's precondition, and every job is the template rebuilt here.
    fn validate_renew(db: &Db, identity: PublicKey, leaf: LeafId, kind: RenewKind, jobs: Vec<UserJob>, hazard: bool) -> Result<(KeyshareId, Vec<SigningJob>), String> {
        let row = db.leaves.get(&leaf).ok_or_else(|| format!("unknown leaf {leaf}"))?;
        if row.owner_identity != identity {
            return Err(format!("leaf {leaf} is not owned by the caller"));
        }
        let retry = row.status == LeafStatus::RenewLocked && db.pending_renews.get(&leaf).is_some_and(|p| p.owner_identity == identity);
        if row.status != LeafStatus::Available && !retry {
            return Err(format!("leaf {leaf} is {:?}, not AVAILABLE", row.status));
        }
        let renew = expected(db, leaf, kind, hazard)?;
        let (_, parent_out) = crate::tx::renew::parent_output(&row.nodes).map_err(|e| e.to_string())?;
        let (templates, prevouts) = (renew.jobs(), renew.prevouts(&parent_out).map_err(|e| e.to_string())?);
        if jobs.len() != templates.len() {
            return Err(format!("expected {} signing jobs, found {}", templates.len(), jobs.len()));
        }
        let mut signing = Vec::with_capacity(jobs.len());
        for (i, (job, want)) in jobs.into_iter().zip(&templates).enumerate() {
            template::compare_transactions(want, &job.tx).map_err(|e| format!("job {i}: {e}"))?;
            let message = sighash::key_spend_sighash(&job.tx, 0, &prevouts[i]).map_err(|e| e.to_string())?;
            signing.push(SigningJob { message, verifying_key: row.verifying_key, user_public_key: row.owner_signing_key, operator_commitments: BTreeMap::new(), user_commitment: job.user_commitment });
        }
        Ok((row.keyshare, signing))
    }

    pub(super) fn renew_advance(&mut self, ctx: &mut Ctx<'_>, phase: u8, mut s: RenewSession, replies: BTreeMap<OperatorId, InternalReply>) -> Step<RenewSession> {
        match self.frost_step(ctx, phase, s.keyshare, &mut s.jobs, &s.signers, replies) {
            FrostStep::Round2(requests) => return Step::Next(s, requests),
            FrostStep::Signed(results) => Self::reply_wallet(ctx, s.call, Ok(WalletReply::Signing { results })),
            FrostStep::Failed(e) => self.renew_abort(ctx, s, e),
        }
        Step::Done
    }

    /// Signing failed: unlock the leaf (nothing was signed for good) and tell the wallet.
    pub(super) fn renew_abort(&mut self, ctx: &mut Ctx<'_>, s: RenewSession, reason: String) {
        let mut db = self.store.begin();
        if db.pending_renews.remove(&s.leaf).is_some() {
            if let Some(row) = db.leaves.get_mut(&s.leaf) {
                if row.status == LeafStatus::RenewLocked {
                    row.status = LeafStatus::Available;
                }
            }
            self.store.commit(db);
        }
        Self::reply_wallet(ctx, s.call, Err(reason));
    }

    /// Coordinator: the wallet's aggregated signatures. Idempotent: a finalize retried after
    /// its reply was lost finds the renew applied and answers `Finalized` again.
    pub(super) fn finalize_renew(&mut self, ctx: &mut Ctx<'_>, identity: PublicKey, leaf: LeafId, kind: RenewKind, signed: Vec<Transaction>) -> Result<WalletReply, String> {
        let mut db = self.store.begin();
        let row = db.leaves.get(&leaf).ok_or_else(|| format!("unknown leaf {leaf}"))?;
        if row.owner_identity != identity {
            return Err(format!("leaf {leaf} is not owned by the caller"));
        }
        if row.nodes.cpfp.compute_txid() == signed_node(kind, &signed)? {
            return Ok(WalletReply::Finalized);
        }
        match db.pending_renews.get(&leaf) {
            Some(p) if p.kind == kind && row.status == LeafStatus::RenewLocked => {}
            _ => return Err(format!("no {} pending for leaf {leaf}", kind.name())),
        }
        Self::apply_renew(&mut db, leaf, kind, &signed, self.cfg.params.hazards.renew_node_on_zero_csv)?;
        db.pending_renews.remove(&leaf);
        let body = match kind {
            RenewKind::Refund => GossipBody::FinalizeRenewRefundTimelock { leaf, signed },
            RenewKind::Node | RenewKind::NodeZero => GossipBody::FinalizeRenewNodeTimelock { leaf, kind, signed },
        };
        let seq = Self::gossip_create(&mut db, body, self.others());
        self.store.commit(db);
        self.gossip_push(ctx, seq);
        Ok(WalletReply::Finalized)
    }

    /// Every operator (coordinator at finalize, the others from gossip): rebuild the renew from
    /// the stored leaf, require the signed txs to be exactly those templates with valid
    /// signatures under Y, then install the new exit chain and refunds. A renew already applied
    /// (a gossip retry) is a no-op.
    pub(super) fn apply_renew(db: &mut Db, leaf: LeafId, kind: RenewKind, signed: &[Transaction], hazard: bool) -> Result<(), String> {
        let row = db.leaves.get(&leaf).ok_or_else(|| format!("unknown leaf {leaf}"))?;
        if row.nodes.cpfp.compute_txid() == signed_node(kind, signed)? {
            return Ok(());
        }
        let renew = expected(db, leaf, kind, hazard)?;
        let (_, parent_out) = crate::tx::renew::parent_output(&row.nodes).map_err(|e| e.to_string())?;
        let (templates, prevouts) = (renew.jobs(), renew.prevouts(&parent_out).map_err(|e| e.to_string())?);
        if signed.len() != templates.len() {
            return Err(format!("{}: expected {} signed txs, found {}", kind.name(), templates.len(), signed.len()));
        }
        for (i, (want, got)) in templates.iter().zip(signed).enumerate() {
            check_signed(want, got, &prevouts[i], &row.verifying_key).map_err(|e| format!("{} tx {i}: {e}", kind.name()))?;
        }
        let done = renew.with_signed(signed).map_err(|e| e.to_string())?;
        if let (RenewKind::Node, Some(split)) = (kind, &done.new_ancestor) {
            db.split_locked.insert(split.cpfp.compute_txid(), leaf);
        }
        let row = db.leaves.get_mut(&leaf).ok_or("leaf vanished")?;
        if let Some(layer) = done.new_ancestor {
            row.ancestors.push(layer);
        }
        row.nodes = done.nodes;
        row.refunds = done.refunds;
        // Only the coordinator locked it; elsewhere the leaf stays as it was (AVAILABLE, or a
        // transfer's lock taken after this renew, which gossip may deliver late).
        if row.status == LeafStatus::RenewLocked {
            row.status = LeafStatus::Available;
        }
        Ok(())
    }
}

/// The txid of the new CPFP leaf node among a renew's signed txs (job order).
fn signed_node(kind: RenewKind, signed: &[Transaction]) -> Result<bitcoin::Txid, String> {
    let i = if kind == RenewKind::Node { 2 } else { 0 };
    signed.get(i).map(|t| t.compute_txid()).ok_or_else(|| format!("{}: too few signed txs", kind.name()))
}

#[cfg(test)]
#[path = "renew_tests.rs"]
mod tests;
