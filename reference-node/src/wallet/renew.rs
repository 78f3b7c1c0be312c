//! Renew leaf, wallet side (spark-protocol §3.5, §4.4). Before every send the wallet looks at
//! its available leaves: one whose refund CSV is below 200 is renewed first, with the variant
//! §4.4 picks (node CSV 0 → node-zero, node CSV < 200 → node, else refund), then the send goes
//! ahead. The renew is two requests to the coordinator: `RenewLeaf` (the templates and the
//! user's nonce commitments; the operators' FROST shares come back) and `FinalizeRenew` (the
//! aggregated signatures). A lost finalize reply is retried as a finalize (the coordinator
//! answers it idempotently), so the wallet never ends up with a chain the operators replaced.
use super::{prepare_jobs, Command, LeafState, Op, PendingJob, Wallet};
use crate::msg::{WalletReply, WalletRequest};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::tx::renew::{self, RenewKind, RenewTxs};
use crate::types::LeafId;
use bitcoin::Transaction;

pub(super) struct RenewOp {
    leaf: LeafId,
    kind: RenewKind,
    /// The command that asked for the renew (a send renews first; an explicit renew), with its
    /// attempt count: retried as a whole if the renew fails.
    origin: (Command, u8),
    templates: RenewTxs,
    stage: Stage,
}

enum Stage {
    Sign(Vec<PendingJob>),
    Finalize(Vec<Transaction>),
}

impl Wallet {
    /// The variant to renew `leaf` with now, if its refund CSV calls for one (§4.4). Under the
    /// `renew_node_on_zero_csv` hazard a CSV-0 node gets renew-node instead of node-zero.
    fn renew_kind_due(&self, leaf: &super::WalletLeaf) -> Option<RenewKind> {
        let node = renew::csv(&leaf.nodes.cpfp).ok()?;
        let refund = renew::csv(&leaf.refunds.cpfp).ok()?;
        match renew::wallet_trigger(node, refund)? {
            RenewKind::NodeZero if self.cfg.params.hazards.renew_node_on_zero_csv => Some(RenewKind::Node),
            k => Some(k),
        }
    }

    /// Before a send: the first available leaf that must be renewed, and how.
    pub(super) fn renew_due(&self) -> Option<(LeafId, RenewKind)> {
        self.leaves.iter().filter(|(_, l)| l.state == LeafState::Available).find_map(|(id, l)| self.renew_kind_due(l).map(|k| (*id, k)))
    }

    /// Renew `leaf` with `kind`; `origin` is the command to carry on with (or retry) afterwards.
    pub(super) fn start_renew(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId, kind: RenewKind, origin: (Command, u8)) {
        let built = self.leaves.get(&leaf).ok_or_else(|| "leaf vanished".to_string()).and_then(|l| {
            let owner = l.signing_secret.public_key(crate::crypto::secp());
            let templates = renew::renew_templates(kind, &l.nodes, &l.refunds, &owner, self.cfg.params.hazards.renew_node_on_zero_csv).map_err(|e| e.to_string())?;
            let (_, parent_out) = renew::parent_output(&l.nodes).map_err(|e| e.to_string())?;
            let prevouts = templates.prevouts(&parent_out).map_err(|e| e.to_string())?;
            let (jobs, user_jobs) = prepare_jobs(&l.signing_secret, l.verifying_key, templates.jobs(), &prevouts, ctx.rng)?;
            Ok((templates, jobs, user_jobs))
        });
        let (templates, jobs, user_jobs) = match built {
            Ok(b) => b,
            Err(e) => {
                ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: format!("{}: {e}", kind.name()) });
                return self.finish(ctx);
            }
        };
        self.begin(Op::Renew(Box::new(RenewOp { leaf, kind, origin, templates, stage: Stage::Sign(jobs) })));
        let (to, identity) = (self.cfg.coordinator, self.identity_public());
        self.request(ctx, to, WalletRequest::RenewLeaf { identity, leaf, kind, jobs: user_jobs });
        self.arm_timeout(ctx);
    }

    /// `Command::Renew`: renew the first available leaf with `kind` (None: the §4.4 choice).
    pub(super) fn start_renew_command(&mut self, ctx: &mut Ctx<'_>, kind: Option<RenewKind>, attempt: u8) {
        let choice = self.leaves.iter().filter(|(_, l)| l.state == LeafState::Available).find_map(|(id, l)| kind.or_else(|| self.renew_kind_due(l)).map(|k| (*id, k)));
        match choice {
            Some((leaf, k)) => self.start_renew(ctx, leaf, k, (Command::Renew { kind }, attempt)),
            None => {
                ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: "renew: no available leaf due for renewal".into() });
                self.start_next(ctx);
            }
        }
    }

    pub(super) fn renew_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut r: RenewOp, body: Result<WalletReply, String>) {
        let stage = std::mem::replace(&mut r.stage, Stage::Finalize(Vec::new()));
        match (stage, body) {
            (Stage::Sign(jobs), Ok(WalletReply::Signing { results })) => {
                let Some(secret) = self.leaves.get(&r.leaf).map(|l| l.signing_secret) else { return self.renew_failed(ctx, r, "leaf vanished".into()) };
                match self.cosign_all(ctx, &secret, jobs, results) {
                    Ok(signed) => {
                        r.stage = Stage::Finalize(signed);
                        self.op = Some((session, Op::Renew(Box::new(r))));
                        self.renew_send_finalize(ctx);
                    }
                    Err(e) => self.renew_failed(ctx, r, e),
                }
            }
            (Stage::Finalize(signed), Ok(WalletReply::Finalized)) => self.renew_done(ctx, r, signed),
            (_, Err(e)) => self.renew_failed(ctx, r, e),
            (_, Ok(_)) => self.renew_failed(ctx, r, "unexpected reply".into()),
        }
    }

    fn renew_send_finalize(&mut self, ctx: &mut Ctx<'_>) {
        let Some((_, Op::Renew(r))) = &self.op else { return };
        let Stage::Finalize(signed) = &r.stage else { return };
        let body = WalletRequest::FinalizeRenew { identity: self.identity_public(), leaf: r.leaf, kind: r.kind, signed: signed.clone() };
        self.new_round();
        let to = self.cfg.coordinator;
        self.request(ctx, to, body);
        self.arm_timeout(ctx);
    }

    /// No answer: a finalize is sent again (the signed txs are kept); an unanswered signing
    /// request fails the attempt (the coordinator re-enters its own lock on the retry).
    pub(super) fn renew_timeout(&mut self, ctx: &mut Ctx<'_>, session: u64, r: RenewOp) {
        match &r.stage {
            Stage::Finalize(_) if r.origin.1 + 1 < super::MAX_ATTEMPTS => {
                let mut r = r;
                r.origin.1 += 1;
                self.op = Some((session, Op::Renew(Box::new(r))));
                self.renew_send_finalize(ctx);
            }
            _ => self.renew_failed(ctx, r, "timed out".into()),
        }
    }

    fn renew_failed(&mut self, ctx: &mut Ctx<'_>, r: RenewOp, reason: String) {
        ctx.observe(Observation::Rejected { what: format!("{} {} of leaf {}", self.cfg.id, r.kind.name(), r.leaf), reason: reason.clone() });
        self.fail(ctx, Some(r.origin), format!("{}: {reason}", r.kind.name()));
    }

    /// The operators stored the renew: adopt the new exit chain and refunds, then carry on
    /// with the send that asked for it.
    fn renew_done(&mut self, ctx: &mut Ctx<'_>, r: RenewOp, signed: Vec<Transaction>) {
        let done = match r.templates.clone().with_signed(&signed) {
            Ok(d) => d,
            Err(e) => return self.renew_failed(ctx, r, e.to_string()),
        };
        let me = self.identity_public();
        for tx in done.refunds.as_array() {
            ctx.observe(Observation::RefundSigned { leaf: r.leaf, owner: me, tx: tx.clone() });
        }
        if let Some(l) = self.leaves.get_mut(&r.leaf) {
            if let Some(layer) = done.new_ancestor {
                l.ancestors.push(layer);
            }
            l.nodes = done.nodes;
            l.refunds = done.refunds;
            let layers = l.ancestors.len() as u32 + 1;
            ctx.observe(Observation::Renewed { wallet: self.cfg.id, leaf: r.leaf, kind: r.kind.name().into(), layers });
        }
        if let (Command::Send { .. }, attempt) = &r.origin {
            self.queue.push_front((r.origin.0.clone(), *attempt));
        }
        self.finish(ctx);
    }
}
