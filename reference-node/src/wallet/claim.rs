//! Wallet side of a claim (spark-protocol §4.2): verify what the sender left, pick the final leaf
//! key k, split δ2 = e − k to every operator, co-sign refunds to k·G at the intermediate
//! timelock (no further decrement, §3.4), finalize.
use super::{prepare_jobs, scalar_of, LeafState, Op, PendingJob, Wallet, WalletLeaf};
use crate::crypto::identity::verify_digest;
use crate::crypto::{curve, ecies, Scalar, SecretKey};
use crate::msg::{leaf_tweak_digest, ClaimLeafJobs, FinalizeIntent, PendingTransferView, ReceiverLeafTweak, RefundSet, WalletReply, WalletRequest};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::tx::template;
use crate::types::{OperatorId, TransferId};
use bitcoin::Transaction;

/// Survives failed attempts, so a retry sends the operators the same tweak.
pub(super) struct ClaimState {
    view: PendingTransferView,
    new_secret: SecretKey,
    tweaks: Vec<ReceiverLeafTweak>,
}

pub(super) struct ClaimOp {
    pub transfer: TransferId,
    stage: Stage,
}

enum Stage {
    Tweaks,
    Sign { jobs: Vec<PendingJob> },
    Finalize { signed: Vec<Transaction> },
}

impl Wallet {
    pub(super) fn on_poll_reply(&mut self, ctx: &mut Ctx<'_>, body: Result<WalletReply, String>) {
        let mut fresh = false;
        if let Ok(WalletReply::PendingTransfers { transfers }) = body {
            for view in transfers {
                if !self.claimed.contains(&view.transfer) && !self.claims.contains_key(&view.transfer) {
                    match self.prepare_claim(ctx, view) {
                        Ok((t, state)) => {
                            self.claims.insert(t, state);
                            fresh = true;
                        }
                        Err(e) => ctx.observe(Observation::Rejected { what: format!("{} incoming transfer", self.cfg.id), reason: e }),
                    }
                }
            }
        }
        self.poll_backoff = if fresh || !self.claims.is_empty() { 1 } else { (self.poll_backoff * 2).min(64) };
        self.start_next(ctx);
        self.arm_poll(ctx);
    }

    pub(super) fn next_claimable(&self) -> Option<TransferId> {
        self.claims.keys().next().copied()
    }

    /// Check the sender's signature and that e opens the leaf (e·G = Y − P_SE), then split δ2.
    fn prepare_claim(&self, ctx: &mut Ctx<'_>, view: PendingTransferView) -> Result<(TransferId, ClaimState), String> {
        let [leaf] = view.leaves.as_slice() else { return Err("one leaf per transfer is supported".into()) };
        verify_digest(&view.sender, &leaf_tweak_digest(leaf.leaf, view.transfer, &leaf.secret_cipher), &leaf.signature).map_err(|e| format!("sender signature: {e}"))?;
        let e_bytes = ecies::decrypt(&self.cfg.identity, &leaf.secret_cipher).map_err(|e| e.to_string())?;
        let e = Scalar::from_bytes(e_bytes.try_into().map_err(|_| "e is not 32 bytes")?).ok_or("e out of range")?;
        if curve::base_mul(&e) != Some(leaf.owner_signing_key) {
            return Err("e does not open the leaf (e·G ≠ Y − P_SE)".into());
        }
        let me = self.identity_public();
        let pays = |s: &bitcoin::ScriptBuf| *s == template::p2tr_script(&me) || self.is_my_htlc(&view.sender, s); // Lightning send: an HTLC to me
        if !leaf.intermediate_refunds.cpfp.output.first().is_some_and(|o| pays(&o.script_pubkey)) {
            return Err("intermediate refund does not pay me".into());
        }
        let new_secret = SecretKey::new(ctx.rng);
        let delta = e.sub(&scalar_of(&new_secret));
        let p = &self.cfg.params;
        let (shares, pubkey_shares_tweak) = super::split_tweak(p, &delta, ctx.rng)?;
        let tweaks = shares
            .into_iter()
            .map(|share| ReceiverLeafTweak { leaf: leaf.leaf, share, pubkey_shares_tweak: pubkey_shares_tweak.clone() })
            .collect();
        Ok((view.transfer, ClaimState { view, new_secret, tweaks }))
    }

    pub(super) fn start_claim(&mut self, ctx: &mut Ctx<'_>, transfer: TransferId) {
        let Some(state) = self.claims.get(&transfer) else { return };
        let receiver = self.identity_public();
        let requests: Vec<(OperatorId, WalletRequest)> = self
            .cfg
            .params
            .operator_ids()
            .zip(state.tweaks.iter())
            .map(|(op, t)| (op, WalletRequest::ClaimTweakKeys { transfer, receiver, leaves: vec![t.clone()] }))
            .collect();
        self.begin(Op::Claim(Box::new(ClaimOp { transfer, stage: Stage::Tweaks })));
        for (op, r) in requests {
            self.request(ctx, op, r);
        }
        self.arm_timeout(ctx);
    }

    pub(super) fn claim_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, _from: OperatorId, mut c: ClaimOp, body: Result<WalletReply, String>) {
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                ctx.observe(Observation::Rejected { what: format!("{} claim {}", self.cfg.id, c.transfer), reason: format!("{e}; will retry") });
                return self.claim_failed(ctx);
            }
        };
        let stage = std::mem::replace(&mut c.stage, Stage::Tweaks);
        let next = match (stage, body) {
            (Stage::Tweaks, WalletReply::TweakStored) if !self.waiting.is_empty() => {
                self.op = Some((session, Op::Claim(Box::new(c))));
                return;
            }
            (Stage::Tweaks, WalletReply::TweakStored) => self.claim_jobs(ctx, c.transfer),
            (Stage::Sign { jobs }, WalletReply::Signing { results }) => self.claim_cosign(ctx, c.transfer, jobs, results),
            (Stage::Finalize { signed }, WalletReply::Finalized) => {
                self.claim_complete(ctx, c.transfer, signed);
                return self.finish(ctx);
            }
            // The operators completed this claim already (our finalize reply was lost): adopt the
            // refunds we finalized then, once their signatures verify for our new key's refunds.
            (Stage::Sign { jobs }, WalletReply::ClaimCompleted { refunds }) => match self.claim_adopt(c.transfer, &jobs, refunds) {
                Ok(signed) => {
                    self.claim_complete(ctx, c.transfer, signed);
                    return self.finish(ctx);
                }
                Err(e) => Err(e),
            },
            _ => Err("unexpected reply".into()),
        };
        match next {
            Ok((stage, request)) => {
                c.stage = stage;
                self.op = Some((session, Op::Claim(Box::new(c))));
                self.new_round();
                let to = self.cfg.coordinator;
                self.request(ctx, to, request);
                self.arm_timeout(ctx);
            }
            Err(e) => {
                ctx.observe(Observation::Rejected { what: format!("{} claim {}", self.cfg.id, c.transfer), reason: e });
                self.claim_failed(ctx);
            }
        }
    }

    /// Refunds to k·G with the intermediate refunds' timelocks.
    fn claim_jobs(&self, ctx: &mut Ctx<'_>, transfer: TransferId) -> Result<(Stage, WalletRequest), String> {
        let state = self.claims.get(&transfer).ok_or("claim state vanished")?;
        let leaf = &state.view.leaves[0];
        let new_key = state.new_secret.public_key(crate::crypto::secp());
        let (seq, direct) = leaf.intermediate_refunds.sequences()?;
        let (mut seq, mut direct) = crate::tx::htlc::claim_sequences(seq, direct); // Lightning send's HTLC refunds
        if self.cfg.params.hazards.claim_skip_timelock_decrement {
            // breez#314: build from the leaf's old refund, which is one interval above.
            let up = |s: bitcoin::Sequence| bitcoin::Sequence(s.0 + u32::from(crate::tx::timelock::TIME_LOCK_INTERVAL));
            (seq, direct) = (up(seq), up(direct));
        }
        let refunds = leaf.nodes.refunds_to(&new_key, seq, direct)?;
        let (jobs, user_jobs) = prepare_jobs(&state.new_secret, leaf.verifying_key, refunds.into_array().to_vec(), &leaf.nodes.refund_prevouts()?, ctx.rng)?;
        let request = WalletRequest::ClaimSignRefunds {
            transfer,
            receiver: self.identity_public(),
            leaves: vec![ClaimLeafJobs { leaf: leaf.leaf, new_signing_key: new_key, refunds: user_jobs }],
        };
        Ok((Stage::Sign { jobs }, request))
    }

    fn claim_cosign(&self, ctx: &mut Ctx<'_>, transfer: TransferId, jobs: Vec<PendingJob>, results: Vec<crate::msg::OperatorSigningResult>) -> Result<(Stage, WalletRequest), String> {
        let state = self.claims.get(&transfer).ok_or("claim state vanished")?;
        let signed = self.cosign_all(ctx, &state.new_secret, jobs, results)?;
        let leaf = state.view.leaves[0].leaf;
        let request = WalletRequest::FinalizeNodeSignatures { intent: FinalizeIntent::Transfer { transfer }, leaf, signed: signed.clone() };
        Ok((Stage::Finalize { signed }, request))
    }

    /// The stored refunds must be exactly the txs we asked to sign (paying our new key, with the
    /// intermediate timelocks) and carry valid signatures of the leaf's aggregate key.
    fn claim_adopt(&self, transfer: TransferId, jobs: &[PendingJob], refunds: RefundSet) -> Result<Vec<Transaction>, String> {
        let state = self.claims.get(&transfer).ok_or("claim state vanished")?;
        let leaf = &state.view.leaves[0];
        let prevouts = leaf.nodes.refund_prevouts()?;
        let stored = refunds.into_array();
        if stored.len() != jobs.len() || prevouts.len() != jobs.len() {
            return Err(format!("{} stored refunds for {} jobs", stored.len(), jobs.len()));
        }
        for (i, (job, tx)) in jobs.iter().zip(&stored).enumerate() {
            crate::operator::check_signed(&job.tx, tx, &prevouts[i], &leaf.verifying_key).map_err(|e| format!("completed claim: refund {i}: {e}"))?;
        }
        Ok(stored.to_vec())
    }

    fn claim_complete(&mut self, ctx: &mut Ctx<'_>, transfer: TransferId, signed: Vec<Transaction>) {
        let Some(state) = self.claims.remove(&transfer) else { return };
        let Some(refunds) = RefundSet::from_vec(signed) else { return };
        let v = &state.view.leaves[0];
        let me = self.identity_public();
        for tx in v.intermediate_refunds.as_array().into_iter().chain(refunds.as_array()) {
            ctx.observe(Observation::RefundSigned { leaf: v.leaf, owner: me, tx: tx.clone() });
        }
        self.leaves.insert(
            v.leaf,
            WalletLeaf {
                signing_secret: state.new_secret,
                value_sats: v.value_sats,
                verifying_key: v.verifying_key,
                deposit_outpoint: v.deposit_outpoint,
                nodes: v.nodes.clone(),
                refunds,
                state: LeafState::Available,
                ancestors: v.ancestors.clone(),
            },
        );
        self.claimed.insert(transfer);
        ctx.observe(Observation::TransferClaimed { transfer, receiver: self.cfg.id });
    }
}
