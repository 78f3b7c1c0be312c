//! Byzantine operators (spark-protocol §5.1): a layer the operator consults at a few well-defined
//! points, so the honest code paths stay the protocol. An operator is Byzantine only if the
//! scenario lists it (`Params::byzantine`); for everyone else every hook below is a no-op.
//!
//! Where each behaviour acts:
//! - `wrong_share`, `equivocation`, `withhold`: on this operator's answer to a FROST round
//!   ([`Operator::byzantine_reply`]); the coordinator's identifiable abort names it.
//! - `nonce_reuse`: after answering FROST round 2, it forwards the jobs with another message to
//!   the other signers ([`Operator::byzantine_after_internal`]); their nonce guard refuses.
//! - `replay_stale`: every message in, it re-sends transfer messages it received long ago
//!   ([`Operator::byzantine_on_message`]); honest operators must not change state for them.
//! - `forged_tweak`: when a sender's key tweak settles, it sends every other operator a
//!   receiver tweak whose Feldman proof fails, and one that verifies but is not the receiver's
//!   ([`Operator::byzantine_after_gossip`]).
//! - `keep_old_shares`: after every event it copies key shares it is about to lose
//!   ([`Operator::byzantine_after_event`]) and answers a former owner's `Collude` requests.
use super::Operator;
use crate::crypto::signing::{self, KeyShare, NonceCommitment, SecretNonce, SigningJob};
use crate::crypto::{curve, vss, PublicKey, Scalar};
use crate::msg::{ColludeReply, ColludeRequest, GossipBody, InternalReply, InternalRequest, Msg, ReceiverLeafTweak, ReqId, WalletRequest};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::params::Behaviour;
use crate::types::{KeyshareId, Micros, NodeId, OperatorId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A replayed message is at least this old (stale: its transfer has moved on).
const REPLAY_AFTER: Micros = Micros::from_secs(120);
/// Bound on recorded messages waiting to be replayed (TigerBeetle style).
const MAX_RECORDED: usize = 64;
/// Bound on kept old shares and collusion nonces.
const MAX_KEPT: usize = 4096;

/// The Byzantine state of one operator. Not in the durable store on purpose: what a corrupted
/// operator keeps is outside the protocol, and survives its crashes.
pub(super) struct Byzantine {
    behaviours: BTreeSet<Behaviour>,
    /// keep_old_shares: every (keyshare, epoch) share this operator ever held.
    kept: BTreeMap<(KeyshareId, u32), KeyShare>,
    kept_at_commit: u64,
    /// replay_stale: (received at, message), oldest first.
    recorded: VecDeque<(Micros, Msg)>,
    /// keep_old_shares: nonces committed for a former owner, with the old share they sign with.
    collude_nonces: BTreeMap<NonceCommitment, (KeyShare, SecretNonce)>,
}

impl Byzantine {
    pub(super) fn new(behaviours: BTreeSet<Behaviour>) -> Option<Box<Byzantine>> {
        (!behaviours.is_empty()).then(|| {
            Box::new(Byzantine { behaviours, kept: BTreeMap::new(), kept_at_commit: u64::MAX, recorded: VecDeque::new(), collude_nonces: BTreeMap::new() })
        })
    }
    fn does(&self, b: Behaviour) -> bool {
        self.behaviours.contains(&b)
    }
}

fn does(op: &Operator, b: Behaviour) -> bool {
    op.byz.as_ref().is_some_and(|z| z.does(b))
}

/// A share one off: a valid scalar that does not verify.
fn bump(s: &signing::SignatureShare) -> signing::SignatureShare {
    signing::SignatureShare(Scalar(s.0).add(&Scalar::from_u32(1)).0)
}

impl Operator {
    /// This operator's answer to an internal request, as a Byzantine operator would give it.
    /// `None`: withhold (never answer).
    pub(super) fn byzantine_reply(&self, kind: &str, reply: Result<InternalReply, String>) -> Option<Result<InternalReply, String>> {
        let frost_round = kind == "FrostRound1" || kind == "FrostRound2";
        if frost_round && does(self, Behaviour::Withhold) {
            return None;
        }
        Some(match reply {
            Ok(InternalReply::Shares(v)) if does(self, Behaviour::WrongShare) => Ok(InternalReply::Shares(v.iter().map(bump).collect())),
            Ok(InternalReply::Commitments { commitments, se_public_key }) if does(self, Behaviour::Equivocation) => {
                // Claim another SE key for the leaf than the one every other operator holds.
                let g = crate::crypto::curve::base_mul(&Scalar::from_u32(1));
                let lie = g.and_then(|g| curve::point_add(&se_public_key, &g)).unwrap_or(se_public_key);
                Ok(InternalReply::Commitments { commitments, se_public_key: lie })
            }
            other => other,
        })
    }

    /// nonce_reuse: the jobs this operator was asked to sign go to the other signers again with
    /// another message and the same nonce commitments. An honest signer's guard refuses.
    pub(super) fn byzantine_after_internal(&self, ctx: &mut Ctx<'_>, request: Option<(KeyshareId, Vec<SigningJob>)>) {
        let Some((keyshare, mut jobs)) = request else { return };
        if !does(self, Behaviour::NonceReuse) {
            return;
        }
        let others: BTreeSet<OperatorId> = jobs.iter().flat_map(|j| j.operator_commitments.keys().copied()).filter(|o| *o != self.cfg.id).collect();
        for j in &mut jobs {
            j.message[0] ^= 0xff;
        }
        let req = ReqId { session: u64::MAX, phase: 0 };
        for op in others {
            let body = InternalRequest::FrostRound2 { keyshare, jobs: jobs.clone() };
            ctx.send(NodeId::Operator(op), Msg::Internal { req, body: Box::new(body) });
        }
    }

    /// replay_stale: remember transfer messages, and send the stale ones to every other operator.
    pub(super) fn byzantine_on_message(&mut self, ctx: &mut Ctx<'_>, msg: &Msg) {
        let others = self.others();
        let Some(z) = self.byz.as_mut().filter(|z| z.does(Behaviour::ReplayStale)) else { return };
        let worth = match msg {
            Msg::Internal { body, .. } => matches!(**body, InternalRequest::InitiateTransfer { .. } | InternalRequest::FrostRound2 { .. } | InternalRequest::SettleReceiverPrepare { .. }),
            Msg::Gossip { .. } => true,
            _ => false,
        };
        if worth && z.recorded.len() < MAX_RECORDED {
            z.recorded.push_back((ctx.now, msg.clone()));
        }
        while z.recorded.front().is_some_and(|(at, _)| *at + REPLAY_AFTER <= ctx.now) {
            let Some((_, stale)) = z.recorded.pop_front() else { break };
            for op in &others {
                ctx.send(NodeId::Operator(*op), stale.clone());
            }
        }
    }

    /// forged_tweak: once a sender's tweak settled here, try to plant a receiver tweak on every
    /// other operator: one whose Feldman proof fails, one that verifies but comes from us.
    pub(super) fn byzantine_after_gossip(&mut self, ctx: &mut Ctx<'_>, body: &GossipBody) {
        let GossipBody::SettleSenderKeyTweak { transfer } = body else { return };
        if !does(self, Behaviour::ForgedTweak) {
            return;
        }
        let Some(t) = self.store.read().transfers.get(transfer) else { return };
        let (receiver, leaves): (PublicKey, Vec<_>) = (t.receiver, t.leaves.keys().copied().collect());
        let p = self.cfg.params.clone();
        let delta = Scalar::random(ctx.rng);
        let Ok(shares) = vss::split_with_proofs(&delta, p.threshold, p.operators, ctx.rng) else { return };
        let Some(public) = p.operator_ids().zip(&shares).map(|(op, s)| curve::base_mul(&s.share).map(|pk| (op, pk))).collect::<Option<BTreeMap<_, _>>>() else { return };
        for (op, share) in p.operator_ids().zip(shares) {
            if op == self.cfg.id {
                continue;
            }
            let mut broken = share.clone();
            broken.share = broken.share.add(&Scalar::from_u32(1));
            for s in [broken, share] {
                let tweaks = leaves.iter().map(|leaf| ReceiverLeafTweak { leaf: *leaf, share: s.clone(), pubkey_shares_tweak: public.clone() }).collect();
                let req = WalletRequest::ClaimTweakKeys { transfer: *transfer, receiver, leaves: tweaks };
                ctx.send(NodeId::Operator(op), Msg::WalletRequest { req: ReqId { session: u64::MAX, phase: 0 }, body: Box::new(req) });
            }
        }
    }

    /// keep_old_shares: copy every key share before a tweak can overwrite it.
    pub(super) fn byzantine_after_event(&mut self) {
        let commits = self.store.commits();
        let db = self.store.read();
        let Some(z) = self.byz.as_mut().filter(|z| z.does(Behaviour::KeepOldShares) && z.kept_at_commit != commits) else { return };
        z.kept_at_commit = commits;
        for (id, row) in &db.keyshares {
            if z.kept.len() < MAX_KEPT {
                z.kept.entry((*id, row.epoch)).or_insert_with(|| row.share.clone());
            }
        }
    }

    /// A former owner's request. Honest operators refuse: they forgot the old share (§2.7).
    pub(super) fn on_collude(&mut self, ctx: &mut Ctx<'_>, from: NodeId, req: ReqId, body: ColludeRequest) {
        let reply = if does(self, Behaviour::KeepOldShares) {
            self.collude(ctx, body)
        } else {
            ctx.observe(Observation::Rejected { what: format!("{} collusion request from {from}", self.cfg.id), reason: "honest operators keep no old key shares".into() });
            Err("refused: this operator forgot the old key share".into())
        };
        ctx.send(from, Msg::ColludeReply { req, body: Box::new(reply) });
    }

    fn collude(&mut self, ctx: &mut Ctx<'_>, body: ColludeRequest) -> Result<ColludeReply, String> {
        let me = self.cfg.id;
        let z = self.byz.as_mut().ok_or("not Byzantine")?;
        match body {
            ColludeRequest::Commit { verifying_key, user_public_key } => {
                let share = z
                    .kept
                    .values()
                    .find(|k| curve::point_add(&k.public_key, &user_public_key) == Some(verifying_key))
                    .cloned()
                    .ok_or("no kept share for that key")?;
                let public_share = *share.public_shares.get(&me).ok_or("no public share of mine")?;
                let (nonce, commitment) = signing::commit(&share.secret_share, ctx.rng);
                if z.collude_nonces.len() < MAX_KEPT {
                    z.collude_nonces.insert(commitment.clone(), (share, nonce));
                }
                Ok(ColludeReply::Committed { commitment, public_share })
            }
            ColludeRequest::Sign { job } => {
                let c = job.operator_commitments.get(&me).ok_or("job has no commitment of mine")?;
                let (mut share, nonce) = z.collude_nonces.remove(c).ok_or("unknown nonce")?;
                // A colluder ignores the signer-count rule: the maths decides whether fewer than
                // t old shares can sign (they cannot: Lagrange over too few points misses the key).
                share.threshold = u16::try_from(job.operator_commitments.len()).unwrap_or(u16::MAX);
                let s = signing::sign_as_operator(&job, me, &share, &nonce).map_err(|e| e.to_string())?;
                ctx.observe(Observation::ColludedSignature { operator: me, verifying_key: job.verifying_key });
                Ok(ColludeReply::Share(s))
            }
        }
    }
}

/// The request's FROST round-2 jobs, when nonce_reuse wants to replay them.
pub(super) fn signing_request(op: &Operator, body: &InternalRequest) -> Option<(KeyshareId, Vec<SigningJob>)> {
    match body {
        InternalRequest::FrostRound2 { keyshare, jobs } if does(op, Behaviour::NonceReuse) => Some((*keyshare, jobs.clone())),
        _ => None,
    }
}
