//! The participant side of FROST signing, behind an enforcing guard (LDK style): a nonce signs at
//! most once, and only for a job whose key is this operator's keyshare plus the job's user key;
//! and a coordinator never co-signs a refund whose timelock is not strictly below the refund it
//! replaces. A refusal is reported (`Observation::GuardRefused`): for a nonce asked twice it is
//! a peer's attack blocked; for a timelock it means the protocol logic above let an unsafe
//! refund through, which the checker reports as I-6.
use super::Operator;
use crate::crypto::identity::sha256;
use crate::crypto::signing::{self, SigningJob};
use crate::msg::InternalReply;
use crate::node::Ctx;
use crate::observe::{GuardRule, Observation};
use crate::types::LeafId;
use bitcoin::Transaction;
use crate::operator::store::NonceRow;
use crate::types::KeyshareId;

/// Bound on nonces handed out per request (TigerBeetle style: every queue has a bound).
const MAX_NONCES_PER_REQUEST: u8 = 64;

impl Operator {
    /// Guard: every refund to co-sign for `leaf` has a timelock strictly below the leaf's current
    /// refund, the one it replaces (spark-protocol §3.4, I-6). Both a send (−100) and a claim
    /// (the intermediate timelock) pass; a refund at or above the current one never does.
    pub(super) fn guard_refund_timelock<'a>(&self, ctx: &mut Ctx<'_>, leaf: LeafId, txs: impl IntoIterator<Item = &'a Transaction>) -> Result<(), String> {
        use crate::tx::timelock::blocks;
        let row = self.store.read().leaves.get(&leaf).ok_or_else(|| format!("unknown leaf {leaf}"))?;
        let (current, _) = row.refunds.sequences()?;
        for tx in txs {
            let csv = blocks(tx.input.first().ok_or("refund has no input")?.sequence);
            if csv >= blocks(current) {
                let detail = format!("leaf {leaf}: refund timelock {csv} is not below the current {}", blocks(current));
                ctx.observe(Observation::GuardRefused { signer: self.cfg.id, rule: GuardRule::RefundTimelock, detail: detail.clone() });
                return Err(format!("signer guard: {detail}"));
            }
        }
        Ok(())
    }

    pub(super) fn frost_round1(&mut self, ctx: &mut Ctx<'_>, keyshare: KeyshareId, count: u8) -> Result<InternalReply, String> {
        if count == 0 || count > MAX_NONCES_PER_REQUEST {
            return Err(format!("nonce count {count} outside 1..={MAX_NONCES_PER_REQUEST}"));
        }
        let mut db = self.store.begin();
        let row = db.keyshares.get(&keyshare).ok_or_else(|| format!("unknown keyshare {keyshare}"))?;
        let share = row.share.clone();
        let mut commitments = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let (secret, commitment) = signing::commit(&share.secret_share, ctx.rng);
            db.nonces.insert(commitment.clone(), NonceRow { keyshare, secret: Some(secret), used_for: None, answered: None });
            commitments.push(commitment);
        }
        self.store.commit(db);
        Ok(InternalReply::Commitments { commitments, se_public_key: share.public_key })
    }

    pub(super) fn frost_round2(&mut self, ctx: &mut Ctx<'_>, keyshare: KeyshareId, jobs: Vec<SigningJob>) -> Result<InternalReply, String> {
        self.frost_round2_adaptor(ctx, keyshare, jobs, &[])
    }

    /// Round 2 with job i signed under `adaptors[i]` when given (leaf swaps v2: the counter's
    /// CPFP refund, crypto/adaptor_frost.rs); the same guards either way.
    pub(super) fn frost_round2_adaptor(&mut self, ctx: &mut Ctx<'_>, keyshare: KeyshareId, jobs: Vec<SigningJob>, adaptors: &[Option<crate::crypto::PublicKey>]) -> Result<InternalReply, String> {
        if !adaptors.is_empty() && adaptors.len() != jobs.len() {
            return Err(format!("{} adaptor points for {} jobs", adaptors.len(), jobs.len()));
        }
        let me = self.cfg.id;
        let mut db = self.store.begin();
        let share = db.keyshares.get(&keyshare).ok_or_else(|| format!("unknown keyshare {keyshare}"))?.share.clone();
        let mut shares = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            // Guard: the job must be for Y = P_user + (this keyshare's P_SE).
            let expected_y = crate::crypto::curve::point_add(&job.user_public_key, &share.public_key);
            if expected_y != Some(job.verifying_key) {
                return Err("job verifying key is not user key + this keyshare".into());
            }
            let commitment = job.operator_commitments.get(&me).ok_or("job has no commitment of mine")?;
            let row = db.nonces.get_mut(commitment).ok_or("unknown nonce commitment")?;
            if row.keyshare != keyshare {
                return Err("nonce belongs to another keyshare".into());
            }
            // The adaptor point is part of what was asked: the same job under another point is
            // another signature, refused like any second use of the nonce.
            let adaptor = adaptors.get(i).copied().flatten().map(|t| t.serialize().to_vec()).unwrap_or_default();
            let job_digest = sha256(&[&bincode::serialize(job).map_err(|e| e.to_string())?, &adaptor]);
            // A duplicate of a request already answered (the network delivered it twice): the
            // same share again. It reveals nothing new: the nonce never signs anything else.
            if let Some((digest, cached)) = &row.answered {
                if *digest == job_digest {
                    shares.push(*cached);
                    continue;
                }
            }
            // Guard: a nonce signs once (I-11). It is erased, so even a bug cannot reuse it.
            let Some(secret) = row.secret.take() else {
                let detail = format!("nonce for keyshare {keyshare} already signed; asked again for message {}", hex::encode(&job.message[..4]));
                ctx.observe(Observation::GuardRefused { signer: me, rule: GuardRule::NonceReuse, detail });
                return Err("nonce already used".into());
            };
            row.used_for = Some(job.message);
            let s = match adaptors.get(i).copied().flatten() {
                Some(t) => crate::crypto::adaptor_frost::sign_as_operator(job, me, &share, &secret, &t),
                None => signing::sign_as_operator(job, me, &share, &secret),
            }
            .map_err(|e| e.to_string())?;
            row.answered = Some((job_digest, s));
            ctx.observe(Observation::NonceUsed {
                signer: me.to_string(),
                commitment: sha256(&[&commitment.0]),
                message: job.message,
            });
            shares.push(s);
        }
        self.store.commit(db);
        Ok(InternalReply::Shares(shares))
    }
}
