//! Leaf swaps / re-denomination with the SSP (spark-protocol §4.3), both sides.
//!
//! User (`Command::Swap`): pick a leaf worth exactly the target denominations' sum, send it to
//! the SSP as a held primary transfer (2-minute expiry), ask the SSP to counter it, then follow
//! the swap on the coordinator until it is settled (the counter leaves arrive as ordinary
//! incoming transfers and are claimed) or returned (the leaf is ours again). v2 adapts the
//! primary's CPFP refund signature with a secret `a` for the SSP; the operators co-sign each
//! counter's CPFP refund under T = a·G (a pre-signature); once the counters are in, the user
//! checks each pre-signature against its own T and releases the swap with their completions.
//!
//! SSP (`SspRequest::Swap`): check liquidity (one available leaf per target) and, for v2, the
//! pre-signature against `T`; reserve the leaves and counter-transfer them one by one; then
//! follow the swap: settled → the leaves are gone (v2: extract `a` from the operators'
//! pre-signature of a counter's refund and the user's completion, and with it complete the
//! user's pre-signature of the primary's refund), returned → the leaves are available again.
use super::{Command, LeafState, Op, Wallet};
use crate::crypto::adaptor::{self, PreSignature};
use crate::crypto::signing::NonceCommitment;
use crate::crypto::{PublicKey, Scalar};
use crate::msg::ssp::{SwapAdaptor, SwapOffer};
use crate::msg::{SspReply, SspRequest, SwapReply, SwapRequest, SwapStatus, SwapTransfer, SwapVersion, TransferOutcome, WalletReply, WalletRequest};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::operator::swap::SWAP_EXPIRY;
use crate::tx::sighash;
use crate::types::{LeafId, NodeId, OperatorId, TransferId, WalletId};
use bitcoin::secp256k1::schnorr;
use bitcoin::XOnlyPublicKey;
use std::collections::BTreeMap;

/// The user's side of one swap.
pub(super) struct SwapOp {
    targets: Vec<u64>,
    version: SwapVersion,
    leaf: LeafId,
    /// v2: the adaptor secret `a`.
    secret: Option<Scalar>,
    stage: Stage,
}

enum Stage {
    Commitments,
    Initiate { primary: TransferId },
    /// v2: fetching the primary's signed refunds to adapt one.
    Refunds { primary: TransferId },
    /// Waiting for the SSP to accept.
    Offer { primary: TransferId },
    /// Following the swap on the coordinator; v2 keeps the pre-signature to complete.
    Follow { primary: TransferId, pre: Option<(PreSignature, [u8; 32], XOnlyPublicKey)>, completed: bool },
}

/// The SSP's side of one swap.
pub(super) struct ServeOp {
    primary: TransferId,
    user: WalletId,
    adaptor: Option<Box<SwapAdaptor>>,
    /// The reserved leaves, with the counter transfer once started.
    legs: Vec<(LeafId, Option<TransferId>)>,
    next: usize,
    stage: ServeStage,
}

enum ServeStage {
    Commitments,
    Counter,
    Follow,
}

impl Wallet {
    // ---------------------------------------------------------------- user side

    pub(super) fn start_swap(&mut self, ctx: &mut Ctx<'_>, targets: Vec<u64>, version: SwapVersion) {
        let total: u64 = targets.iter().sum();
        let p = &self.cfg.params;
        let leaf = self.leaves.iter().find(|(_, l)| l.state == LeafState::Available && l.value_sats == total && l.refunds.sequences().is_ok_and(|(cur, _)| p.next_refund_sequences(cur).is_ok()));
        let reason = if self.cfg.directory.ssp.is_none() {
            Some("swap: no SSP in this deployment".to_string())
        } else if self.is_ssp() {
            Some("swap: the SSP does not swap with itself".to_string())
        } else if targets.is_empty() {
            Some("swap: no target denominations".to_string())
        } else if leaf.is_none() {
            Some(format!("swap: no available leaf of {total} sats"))
        } else {
            None
        };
        if let Some(reason) = reason {
            ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason });
            return self.start_next(ctx);
        }
        let leaf = *leaf.map(|(l, _)| l).expect("checked above");
        let secret = (version == SwapVersion::V2).then(|| adaptor::new_secret(ctx.rng).0);
        self.begin(Op::Swap(Box::new(SwapOp { targets, version, leaf, secret, stage: Stage::Commitments })));
        let to = self.cfg.coordinator;
        self.request(ctx, to, WalletRequest::GetSigningCommitments { leaf, count: 3 });
        self.arm_timeout(ctx);
    }

    /// A reply from the coordinator to the user's swap.
    pub(super) fn swap_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: SwapOp, body: Result<WalletReply, String>) {
        let to = self.cfg.coordinator;
        match (&s.stage, body) {
            (Stage::Commitments, Ok(WalletReply::SigningCommitments { commitments })) => {
                let Some(ssp_key) = self.ssp_identity() else { return self.swap_skip(ctx, s.leaf, None, "swap: no SSP".into()) };
                let adaptor_point = s.secret.as_ref().and_then(crate::crypto::curve::base_mul).map(|t| t.serialize().to_vec());
                match self.build_leg(ctx, s.leaf, &ssp_key, commitments, None) {
                    Ok(leg) => {
                        let primary = leg.transfer;
                        if let Some(l) = self.leaves.get_mut(&s.leaf) {
                            l.state = LeafState::Sending(primary);
                        }
                        s.stage = Stage::Initiate { primary };
                        let version = s.version;
                        self.swap_next(ctx, session, s, to, WalletRequest::Swap(SwapRequest::InitiatePrimary { version, adaptor_point, leg }));
                    }
                    Err(e) => self.swap_skip(ctx, s.leaf, None, format!("swap: {e}")),
                }
            }
            (Stage::Commitments, Err(e)) => self.swap_skip(ctx, s.leaf, None, format!("swap: {e}")),
            (Stage::Initiate { primary }, Ok(WalletReply::Transfer { outcome: TransferOutcome::Sent, .. })) => {
                let primary = *primary;
                if s.version == SwapVersion::V2 {
                    s.stage = Stage::Refunds { primary };
                    self.swap_next(ctx, session, s, to, WalletRequest::Swap(SwapRequest::Query { primary }));
                } else {
                    self.swap_offer(ctx, session, s, primary, None);
                }
            }
            // Refused or unsure: follow the swap; an unknown or returned one gives the leaf back.
            (Stage::Initiate { primary }, _) => {
                let primary = *primary;
                s.stage = Stage::Follow { primary, pre: None, completed: false };
                self.swap_next(ctx, session, s, to, WalletRequest::Swap(SwapRequest::Query { primary }));
            }
            (Stage::Refunds { primary }, Ok(WalletReply::Swap(SwapReply { refunds: Some(refunds), .. }))) => {
                let primary = *primary;
                match self.adapt_refund(&s, &refunds.cpfp) {
                    Ok((offer, pre)) => {
                        s.stage = Stage::Follow { primary, pre: Some(pre), completed: false };
                        self.swap_offer(ctx, session, s, primary, Some(offer));
                    }
                    Err(e) => {
                        ctx.observe(Observation::Rejected { what: format!("{} swap {primary}", self.cfg.id), reason: e });
                        s.stage = Stage::Follow { primary, pre: None, completed: false };
                        self.swap_wait(ctx, session, s);
                    }
                }
            }
            (Stage::Follow { primary, pre, completed }, Ok(WalletReply::Swap(reply))) => {
                let (primary, completed) = (*primary, *completed);
                match reply.status {
                    SwapStatus::Settled => self.swap_settled(ctx, s.leaf, primary),
                    // Unknown: the coordinator refused the primary before recording it.
                    SwapStatus::Returned | SwapStatus::Unknown => self.swap_skip(ctx, s.leaf, Some(primary), format!("swap {primary} returned")),
                    SwapStatus::Open { value_sats, countered_sats } if value_sats == countered_sats && !completed && pre.is_some() => {
                        // v2: the counters are in: complete the operators' pre-signatures of
                        // their CPFP refunds with a (each checked against our own T first).
                        let pre = *pre;
                        match self.complete_counters(&s, &reply) {
                            Ok(signatures) => {
                                s.stage = Stage::Follow { primary, pre, completed: true };
                                self.swap_next(ctx, session, s, to, WalletRequest::Swap(SwapRequest::Complete { primary, signatures }));
                            }
                            Err(e) => {
                                ctx.observe(Observation::Rejected { what: format!("{} swap {primary}", self.cfg.id), reason: e });
                                self.swap_wait(ctx, session, s);
                            }
                        }
                    }
                    _ => self.swap_wait(ctx, session, s),
                }
            }
            _ => self.swap_wait(ctx, session, s),
        }
    }

    fn ssp_identity(&self) -> Option<PublicKey> {
        self.cfg.directory.ssp.and_then(|w| self.cfg.directory.wallets.get(&w).copied())
    }

    /// Every committed counter's CPFP refund pre-signature, checked against our T (the SDK's
    /// `validateOutboundAdaptorSignature`) and completed with `a`.
    fn complete_counters(&self, s: &SwapOp, reply: &SwapReply) -> Result<Vec<(TransferId, Vec<u8>)>, String> {
        let a = s.secret.ok_or("no adaptor secret")?;
        let t = crate::crypto::curve::base_mul(&a).ok_or("a = 0")?;
        if reply.counter_adaptors.is_empty() {
            return Err("no counter pre-signatures yet".into());
        }
        let me = self.identity_public();
        let mut out = Vec::new();
        for (c, ad) in &reply.counter_adaptors {
            if ad.point != t {
                return Err(format!("counter {c} was signed under another adaptor point"));
            }
            if ad.refund.output.first().map(|o| &o.script_pubkey) != Some(&crate::tx::template::p2tr_script(&me)) {
                return Err(format!("counter {c}'s refund does not pay me"));
            }
            let (msg, key) = refund_message(&ad.refund, &ad.prevout)?;
            adaptor::verify(&ad.pre_signature, &msg, &key, &t).map_err(|e| format!("counter {c}: {e}"))?;
            let sig = adaptor::complete(&ad.pre_signature, &a, &msg, &key).map_err(|e| format!("counter {c}: {e}"))?;
            out.push((*c, sig.serialize().to_vec()));
        }
        Ok(out)
    }

    /// Adapt the primary's CPFP refund signature with `a` (spark-protocol §4.3 v2 step 2).
    #[allow(clippy::type_complexity)]
    fn adapt_refund(&self, s: &SwapOp, refund: &bitcoin::Transaction) -> Result<(SwapAdaptor, (PreSignature, [u8; 32], XOnlyPublicKey)), String> {
        let a = s.secret.ok_or("no adaptor secret")?;
        let leaf = self.leaves.get(&s.leaf).ok_or("leaf vanished")?;
        let prevout = leaf.nodes.refund_prevouts()?[0][0].clone();
        let (msg, key) = refund_message(refund, &prevout)?;
        let sig = refund.input.first().and_then(|i| i.witness.nth(0)).ok_or("refund has no signature")?;
        let sig = schnorr::Signature::from_slice(sig).map_err(|e| e.to_string())?;
        let pre = adaptor::from_signature(&sig, &a).map_err(|e| e.to_string())?;
        let point = crate::crypto::curve::base_mul(&a).ok_or("a = 0")?;
        let mut unsigned = refund.clone();
        unsigned.input[0].witness = bitcoin::Witness::new();
        Ok((SwapAdaptor { point, pre_signature: pre, refund: unsigned, prevout }, (pre, msg, key)))
    }

    fn swap_offer(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: SwapOp, primary: TransferId, adaptor: Option<SwapAdaptor>) {
        let offer = SwapOffer { primary, version: s.version, target_sats: s.targets.clone(), adaptor };
        if !matches!(s.stage, Stage::Follow { .. }) {
            s.stage = Stage::Offer { primary };
        }
        self.op = Some((session, Op::Swap(Box::new(s))));
        self.new_round();
        self.ssp_request(ctx, SspRequest::Swap(Box::new(offer)));
        self.arm_timeout(ctx);
    }

    /// A reply from the SSP, matched to the swap op by its round.
    pub(super) fn swap_on_ssp_reply(&mut self, ctx: &mut Ctx<'_>, from: NodeId, req: crate::msg::ReqId, body: Result<SspReply, String>) {
        if Some(from) != self.cfg.directory.ssp.map(NodeId::Wallet) || self.op.as_ref().map(|(s, _)| *s) != Some(req.session) {
            return; // stale
        }
        let Some((session, Op::Swap(s))) = self.op.take() else { return };
        self.swap_ssp_reply(ctx, session, *s, body);
    }

    /// The SSP's answer: accepted or not, the swap's fate is the coordinator's to decide.
    pub(super) fn swap_ssp_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: SwapOp, body: Result<SspReply, String>) {
        if let Err(e) = body {
            ctx.observe(Observation::Rejected { what: format!("{} swap offer", self.cfg.id), reason: e });
        }
        if let Stage::Offer { primary } = s.stage {
            s.stage = Stage::Follow { primary, pre: None, completed: false };
        }
        self.swap_wait(ctx, session, s);
    }

    /// Ask the coordinator again after a request timeout.
    fn swap_wait(&mut self, ctx: &mut Ctx<'_>, session: u64, s: SwapOp) {
        self.op = Some((session, Op::Swap(Box::new(s))));
        self.new_round();
        self.arm_timeout(ctx);
    }

    /// A request timeout of the user's swap: before the primary exists, give up; after, follow.
    pub(super) fn swap_timeout(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: SwapOp) {
        let to = self.cfg.coordinator;
        let primary = match &s.stage {
            Stage::Commitments => return self.swap_skip(ctx, s.leaf, None, "swap: commitments timed out".into()),
            Stage::Initiate { primary } | Stage::Refunds { primary } | Stage::Offer { primary } | Stage::Follow { primary, .. } => *primary,
        };
        if !matches!(s.stage, Stage::Follow { .. } | Stage::Refunds { .. }) {
            s.stage = Stage::Follow { primary, pre: None, completed: false };
        }
        self.swap_next(ctx, session, s, to, WalletRequest::Swap(SwapRequest::Query { primary }));
    }

    fn swap_next(&mut self, ctx: &mut Ctx<'_>, session: u64, s: SwapOp, to: OperatorId, request: WalletRequest) {
        self.op = Some((session, Op::Swap(Box::new(s))));
        self.new_round();
        self.request(ctx, to, request);
        self.arm_timeout(ctx);
    }

    fn swap_settled(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId, primary: TransferId) {
        if let Some(l) = self.leaves.remove(&leaf) {
            let receiver = self.ssp_identity().unwrap_or_else(|| self.identity_public());
            ctx.observe(Observation::TransferSent { transfer: primary, sender: self.cfg.id, receiver, leaf, value_sats: l.value_sats });
            self.sent_away.insert(leaf, l);
        }
        self.finish(ctx);
    }

    fn swap_skip(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId, primary: Option<TransferId>, reason: String) {
        if let Some(l) = self.leaves.get_mut(&leaf) {
            l.state = LeafState::Available;
        }
        if let Some(transfer) = primary {
            ctx.observe(Observation::TransferReturned { transfer, sender: self.cfg.id });
        }
        ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason });
        self.finish(ctx);
    }

    /// One leg's package: refunds to `receiver` signed against `commitments`, the key tweak.
    fn build_leg(&self, ctx: &mut Ctx<'_>, leaf_id: LeafId, receiver: &PublicKey, commitments: Vec<BTreeMap<OperatorId, NonceCommitment>>, adaptor: Option<PublicKey>) -> Result<SwapTransfer, String> {
        let (transfer, package) = self.transfer_package_under(ctx, leaf_id, receiver, commitments, adaptor)?;
        Ok(SwapTransfer { transfer, sender: self.identity_public(), receiver: *receiver, expiry: ctx.now + SWAP_EXPIRY, package })
    }

    // ---------------------------------------------------------------- SSP side

    /// `requestLeavesSwap`: check liquidity and the adaptor, reserve leaves, queue the counters.
    pub(super) fn ssp_accept_swap(&mut self, ctx: &mut Ctx<'_>, from: NodeId, offer: SwapOffer) -> Result<SspReply, String> {
        let NodeId::Wallet(user) = from else { return Err("not a wallet".into()) };
        if offer.target_sats.is_empty() || offer.target_sats.len() > 64 {
            return Err(format!("{} target leaves (allowed 1..=64)", offer.target_sats.len()));
        }
        if let Some(t) = offer.target_sats.iter().find(|t| !t.is_power_of_two()) {
            return Err(format!("target {t} sats is not a power of two"));
        }
        let mut picked: Vec<LeafId> = Vec::new();
        for t in &offer.target_sats {
            let leaf = self.leaves.iter().find(|(id, l)| l.state == LeafState::Available && l.value_sats == *t && !picked.contains(id));
            match leaf {
                Some((id, _)) => picked.push(*id),
                None => return Err(format!("no liquidity: no available leaf of {t} sats")),
            }
        }
        match (offer.version, &offer.adaptor) {
            (SwapVersion::V2, None) => return Err("a v2 swap needs an adaptor".into()),
            (SwapVersion::V2, Some(a)) => {
                let me = self.identity_public();
                if a.refund.output.first().map(|o| &o.script_pubkey) != Some(&crate::tx::template::p2tr_script(&me)) {
                    return Err("the adapted refund does not pay me".into());
                }
                let (msg, key) = refund_message(&a.refund, &a.prevout)?;
                adaptor::verify(&a.pre_signature, &msg, &key, &a.point).map_err(|e| format!("adaptor: {e}"))?;
            }
            (SwapVersion::V3, _) => {}
        }
        for id in &picked {
            if let Some(l) = self.leaves.get_mut(id) {
                l.state = LeafState::Sending(offer.primary);
            }
        }
        let cmd = Command::ServeSwap { primary: offer.primary, user, leaves: picked, adaptor: offer.adaptor.clone().map(Box::new) };
        self.queue.push_back((cmd, 0));
        self.start_next(ctx);
        Ok(SspReply::SwapAccepted { primary: offer.primary })
    }

    /// After a crash (the SSP only): every swap its reserved leaves were held for is followed
    /// to its decision, so they end up sent or available again, never stuck.
    pub(super) fn requeue_swaps(&mut self) {
        if !self.is_ssp() {
            return;
        }
        let mut by_primary: BTreeMap<TransferId, Vec<LeafId>> = BTreeMap::new();
        for (id, l) in &self.leaves {
            if let LeafState::Sending(t) = l.state {
                by_primary.entry(t).or_default().push(*id);
            }
        }
        let queued: Vec<TransferId> = self.queue.iter().filter_map(|(c, _)| if let Command::ServeSwap { primary, .. } | Command::FollowSwap { primary, .. } = c { Some(*primary) } else { None }).collect();
        for (primary, leaves) in by_primary.into_iter().rev() {
            if !queued.contains(&primary) {
                self.queue.push_front((Command::FollowSwap { primary, leaves }, 0));
            }
        }
    }

    pub(super) fn start_follow_swap(&mut self, ctx: &mut Ctx<'_>, primary: TransferId, leaves: Vec<LeafId>) {
        let legs = leaves.into_iter().map(|l| (l, None)).collect();
        let user = self.cfg.id;
        self.begin(Op::Serve(Box::new(ServeOp { primary, user, adaptor: None, legs, next: usize::MAX, stage: ServeStage::Follow })));
        self.serve_step(ctx);
    }

    pub(super) fn start_serve_swap(&mut self, ctx: &mut Ctx<'_>, primary: TransferId, user: WalletId, leaves: Vec<LeafId>, adaptor: Option<Box<SwapAdaptor>>) {
        let legs = leaves.into_iter().map(|l| (l, None)).collect();
        self.begin(Op::Serve(Box::new(ServeOp { primary, user, adaptor, legs, next: 0, stage: ServeStage::Commitments })));
        self.serve_step(ctx);
    }

    /// Next counter leg, or follow the swap once every leg is started.
    fn serve_step(&mut self, ctx: &mut Ctx<'_>) {
        let Some((_, Op::Serve(s))) = &mut self.op else { return };
        let to = self.cfg.coordinator;
        let request = if let Some((leaf, _)) = s.legs.get(s.next).filter(|_| s.next != usize::MAX) {
            s.stage = ServeStage::Commitments;
            WalletRequest::GetSigningCommitments { leaf: *leaf, count: 3 }
        } else {
            s.stage = ServeStage::Follow;
            WalletRequest::Swap(SwapRequest::Query { primary: s.primary })
        };
        self.new_round();
        self.request(ctx, to, request);
        self.arm_timeout(ctx);
    }

    pub(super) fn serve_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: ServeOp, body: Result<WalletReply, String>) {
        let to = self.cfg.coordinator;
        match (&s.stage, body) {
            (ServeStage::Commitments, Ok(WalletReply::SigningCommitments { commitments })) => {
                let (leaf, _) = s.legs[s.next];
                let Some(user_key) = self.cfg.directory.wallets.get(&s.user).copied() else { return self.serve_done(ctx, s, None) };
                // v2: our share of the counter's CPFP refund is signed under the user's T too.
                let t = s.adaptor.as_ref().map(|a| a.point);
                match self.build_leg(ctx, leaf, &user_key, commitments, t) {
                    Ok(leg) => {
                        s.legs[s.next].1 = Some(leg.transfer);
                        s.stage = ServeStage::Counter;
                        let request = WalletRequest::Swap(SwapRequest::Counter { primary: s.primary, adaptor_point: t.map(|t| t.serialize().to_vec()), leg });
                        self.op = Some((session, Op::Serve(Box::new(s))));
                        self.new_round();
                        self.request(ctx, to, request);
                        self.arm_timeout(ctx);
                    }
                    Err(e) => {
                        ctx.observe(Observation::Rejected { what: format!("{} counter swap", self.cfg.id), reason: e });
                        self.serve_follow(ctx, session, s);
                    }
                }
            }
            (ServeStage::Counter, Ok(WalletReply::Transfer { outcome: TransferOutcome::Sent, .. })) => {
                s.next += 1;
                self.op = Some((session, Op::Serve(Box::new(s))));
                self.serve_step(ctx);
            }
            (ServeStage::Follow, Ok(WalletReply::Swap(reply))) => match reply.status {
                SwapStatus::Settled => {
                    if let Some(a) = &s.adaptor {
                        self.learn_adaptor(ctx, s.primary, a, &reply.counter_adaptors);
                    }
                    self.serve_done(ctx, s, Some(&reply.counter_leaves))
                }
                SwapStatus::Returned | SwapStatus::Unknown => self.serve_done(ctx, s, None),
                SwapStatus::Open { .. } => self.serve_wait(ctx, session, s),
            },
            // A refused leg or commitments: stop countering and follow (the swap will expire).
            (ServeStage::Commitments | ServeStage::Counter, Err(e)) => {
                ctx.observe(Observation::Rejected { what: format!("{} counter swap {}", self.cfg.id, s.primary), reason: e });
                self.serve_follow(ctx, session, s);
            }
            _ => self.serve_wait(ctx, session, s),
        }
    }

    pub(super) fn serve_timeout(&mut self, ctx: &mut Ctx<'_>, session: u64, s: ServeOp) {
        self.serve_follow(ctx, session, s);
    }

    fn serve_follow(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: ServeOp) {
        s.next = s.legs.len();
        self.op = Some((session, Op::Serve(Box::new(s))));
        self.serve_step(ctx);
    }

    fn serve_wait(&mut self, ctx: &mut Ctx<'_>, session: u64, s: ServeOp) {
        self.op = Some((session, Op::Serve(Box::new(s))));
        self.new_round();
        self.arm_timeout(ctx);
    }

    /// v2, settled: a counter's refund now carries the user's completion of the operators'
    /// pre-signature, so a = ±(s − s'); with it the user's pre-signature of the primary's CPFP
    /// refund (its offer) completes to a valid signature: that is what the SSP bought.
    fn learn_adaptor(&mut self, ctx: &mut Ctx<'_>, primary: TransferId, offer: &SwapAdaptor, counters: &[(TransferId, SwapAdaptor)]) {
        let learned = (|| {
            let (c, ad) = counters.first().ok_or("no counter pre-signature to learn from")?;
            if ad.point != offer.point {
                return Err(format!("counter {c} is under another adaptor point"));
            }
            let sig = ad.refund.input.first().and_then(|i| i.witness.nth(0)).and_then(|sig| schnorr::Signature::from_slice(sig).ok()).ok_or_else(|| format!("counter {c}'s refund is not completed"))?;
            let a = adaptor::extract(&ad.pre_signature, &sig, &ad.point).map_err(|e| e.to_string())?;
            let (msg, key) = refund_message(&offer.refund, &offer.prevout)?;
            adaptor::complete(&offer.pre_signature, &a, &msg, &key).map_err(|e| format!("primary refund: {e}"))
        })();
        match learned {
            Ok(_) => ctx.observe(Observation::SwapAdaptorLearned { primary, wallet: self.cfg.id }),
            Err(e) => ctx.observe(Observation::Rejected { what: format!("{} swap {primary} adaptor", self.cfg.id), reason: e }),
        }
    }

    /// Settled (with the committed counters' leaves): those belong to the user, the rest of the
    /// reservation is ours again. Returned: all ours again.
    fn serve_done(&mut self, ctx: &mut Ctx<'_>, s: ServeOp, countered: Option<&[LeafId]>) {
        let receiver = self.cfg.directory.wallets.get(&s.user).copied();
        for (leaf, transfer) in s.legs {
            let sent = countered.is_some_and(|c| c.contains(&leaf));
            match (sent, transfer, receiver) {
                (true, Some(transfer), Some(receiver)) => {
                    if let Some(l) = self.leaves.remove(&leaf) {
                        ctx.observe(Observation::TransferSent { transfer, sender: self.cfg.id, receiver, leaf, value_sats: l.value_sats });
                        self.sent_away.insert(leaf, l);
                    }
                }
                // Recovered after a crash: countered, but the counter's id was lost with the op.
                (true, _, _) => {
                    if let Some(l) = self.leaves.remove(&leaf) {
                        self.sent_away.insert(leaf, l);
                    }
                }
                _ => {
                    if let Some(l) = self.leaves.get_mut(&leaf) {
                        l.state = LeafState::Available;
                    }
                    if let Some(transfer) = transfer {
                        ctx.observe(Observation::TransferReturned { transfer, sender: self.cfg.id });
                    }
                }
            }
        }
        self.finish(ctx);
    }
}

/// A refund's BIP341 sighash and the x-only taproot output key its prevout pays.
fn refund_message(refund: &bitcoin::Transaction, prevout: &bitcoin::TxOut) -> Result<([u8; 32], XOnlyPublicKey), String> {
    let msg = sighash::key_spend_sighash(refund, 0, std::slice::from_ref(prevout)).map_err(|e| e.to_string())?;
    let script = prevout.script_pubkey.as_bytes();
    if !prevout.script_pubkey.is_p2tr() {
        return Err("refund prevout is not P2TR".into());
    }
    let key = XOnlyPublicKey::from_slice(&script[2..34]).map_err(|e| e.to_string())?;
    Ok((msg, key))
}

#[cfg(test)]
mod tests {
    use crate::msg::ssp::SwapOffer;
    use crate::msg::{Msg, SspRequest, SwapVersion};
    use crate::node::{Ctx, Input, Node, Output};
    use crate::params::{Directory, Params};
    use crate::types::{NodeId, OperatorId, TransferId, WalletId};
    use crate::wallet::{Wallet, WalletConfig};
    use rand_core::SeedableRng;
    use std::sync::Arc;

    fn ssp() -> Wallet {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let identity = crate::crypto::SecretKey::new(&mut rng);
        let l1_key = crate::crypto::SecretKey::new(&mut rng);
        let directory = Arc::new(Directory { ssp: Some(WalletId(1)), ..Directory::default() });
        Wallet::new(WalletConfig { id: WalletId(1), identity, l1_key, coordinator: OperatorId(0), params: Arc::new(Params::new(3, 2)), directory })
    }

    fn offer(w: &mut Wallet, offer: SwapOffer) -> Result<crate::msg::SspReply, String> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let mut ctx = Ctx::new(crate::types::Micros::ZERO, NodeId::Wallet(WalletId(1)), &mut rng);
        let msg = Msg::SspRequest { req: crate::msg::ReqId { session: 0, phase: 0 }, body: Box::new(SspRequest::Swap(Box::new(offer))) };
        w.handle(&mut ctx, Input::Message { from: NodeId::Wallet(WalletId(0)), msg });
        ctx.into_outputs().into_iter().find_map(|o| if let Output::Send { msg: Msg::SspReply { body, .. }, .. } = o { Some(*body) } else { None }).expect("an SspReply")
    }

    /// An SSP without the leaves asked for refuses (the user's primary then expires), as it
    /// does a target that is not a power of two or a v2 offer without an adaptor; nothing is
    /// reserved or queued.
    #[test]
    fn an_ssp_without_liquidity_refuses() {
        let mut w = ssp();
        let base = SwapOffer { primary: TransferId([3; 16]), version: SwapVersion::V3, target_sats: vec![1024, 1024], adaptor: None };
        assert!(offer(&mut w, base.clone()).unwrap_err().contains("no liquidity"));
        assert!(offer(&mut w, SwapOffer { target_sats: vec![1000], ..base.clone() }).unwrap_err().contains("power of two"));
        assert!(offer(&mut w, SwapOffer { target_sats: vec![], ..base.clone() }).unwrap_err().contains("target leaves"));
        assert!(w.queue.is_empty() && w.op.is_none());
    }
}
