//! Transfer send (spark-protocol §4.2, `start_transfer_v2`, user-first signing §2.4b): validate the
//! package, co-sign the intermediate refunds, replicate to every operator, commit, and settle the
//! sender's key tweak everywhere by durable gossip. Also expiry/cancel of sends that never committed.
use super::deposit::check_signed;
use super::store::{Db, LeafStatus, PendingSendRow, PendingSendStatus, StoredTweak, TransferLeafRow, TransferRow, TransferStatus};
use super::{Operator, SessionKind, Step, WalletCall};
use crate::crypto::identity::verify_digest;
use crate::crypto::signing::{self, NonceCommitment, SigningJob};
use crate::crypto::{curve, ecies, vss, PublicKey};
use crate::msg::{leaf_tweak_digest, transfer_package_digest, GossipBody, InternalReply, InternalRequest, RefundSet, SendLeafKeyTweak, TransferOutcome, TransferPackage, WalletReply};
use crate::node::{Ctx, TimerKind};
use crate::tx::{sighash, template};
use crate::types::{LeafId, Micros, OperatorId, TransferId};
use bitcoin::Transaction;
use std::collections::{BTreeMap, BTreeSet};

/// Bound on leaves per transfer (Spark's default limit).
const MAX_LEAVES_PER_TRANSFER: usize = 1000;

pub(super) struct CommitmentsSession {
    pub call: WalletCall,
    count: u8,
    leaf: LeafId,
}

/// One refund to co-sign: which leaf, which of the three variants, the job and the user's share.
#[derive(Clone)]
struct RefundJob {
    leaf: LeafId,
    tx: Transaction,
    job: SigningJob,
    user_share: signing::SignatureShare,
}

pub(super) struct SendSession {
    pub call: WalletCall,
    pub(super) transfer: TransferId,
    pub(super) sender: PublicKey,
    pub(super) receiver: PublicKey,
    pub(super) expiry: Micros,
    pub(super) package: TransferPackage,
    pub(super) slice: Vec<SendLeafKeyTweak>,
    jobs: Vec<RefundJob>,
    signers: BTreeSet<OperatorId>,
    pub(super) signed: BTreeMap<LeafId, RefundSet>,
    /// Lightning: the preimage swap this transfer belongs to (operator/preimage.rs).
    pub(super) swap: Option<crate::msg::lightning::PreimageSwap>,
}

impl SendSession {
    /// What the participants record for this send (`InitiateTransfer`, a coop exit's or a
    /// Lightning send's initiate, the two-phase Prepare).
    pub(super) fn transfer_init(&self) -> crate::msg::TransferInit {
        crate::msg::TransferInit { transfer: self.transfer, sender: self.sender, receiver: self.receiver, expiry: self.expiry, package: self.package.clone(), signed_refunds: self.signed.clone() }
    }
}

/// The validated content of a transfer package, as one operator sees it.
struct ValidSend {
    slice: Vec<SendLeafKeyTweak>,
    jobs: Vec<RefundJob>,
}

impl Operator {
    pub(super) fn get_signing_commitments(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, leaf: LeafId, count: u8) {
        let Some(row) = self.store.read().leaves.get(&leaf) else {
            return Self::reply_wallet(ctx, call, Err(format!("unknown leaf {leaf}")));
        };
        if row.status != LeafStatus::Available {
            return Self::reply_wallet(ctx, call, Err(format!("leaf {leaf} is {:?}", row.status)));
        }
        let keyshare = row.keyshare;
        let signers = self.choose_signers(ctx);
        let requests = signers.iter().map(|o| (*o, InternalRequest::FrostRound1 { keyshare, count })).collect();
        self.start_session(ctx, SessionKind::Commitments(CommitmentsSession { call, count, leaf }), requests);
    }

    pub(super) fn commitments_advance(&mut self, ctx: &mut Ctx<'_>, s: CommitmentsSession, replies: BTreeMap<OperatorId, InternalReply>) -> Step<CommitmentsSession> {
        let mut commitments: Vec<BTreeMap<OperatorId, NonceCommitment>> = vec![BTreeMap::new(); usize::from(s.count)];
        let mut keys = BTreeSet::new();
        let mut liars = Vec::new();
        for (op, r) in replies {
            let InternalReply::Commitments { commitments: cs, se_public_key } = r else { continue };
            keys.insert(se_public_key);
            liars.push((op, se_public_key));
            for (slot, c) in commitments.iter_mut().zip(cs) {
                slot.insert(op, c);
            }
        }
        let reply = if keys.len() == 1 {
            Ok(WalletReply::SigningCommitments { commitments })
        } else {
            // Name whoever disagrees with this coordinator's own copy of the key.
            let mine = self.store.read().leaves.get(&s.leaf).and_then(|l| self.store.read().keyshares.get(&l.keyshare)).map(|k| k.share.public_key);
            for (op, key) in liars {
                if Some(key) != mine {
                    self.name_culprit(ctx, op, "claims a different SE key for the leaf".into());
                }
            }
            Err("signers disagree on the leaf's SE key; retry later".into())
        };
        Self::reply_wallet(ctx, s.call, reply);
        Step::Done
    }

    /// Decrypt and check this operator's slice, the package and every leaf's refunds
    /// (spark-protocol §4.2 coordinator steps 1 and 3; participants run the same checks).
    /// `db`: the store as the caller's transaction sees it (a two-phase Prepare of a coop exit
    /// records the exit row in the same transaction before validating against it).
    #[allow(clippy::too_many_arguments)]
    fn validate_send(&self, db: &Db, now: Micros, transfer: TransferId, sender: &PublicKey, receiver: &PublicKey, expiry: Micros, package: &TransferPackage) -> Result<ValidSend, String> {
        let me = self.cfg.id;
        if expiry <= now {
            return Err("transfer already expired".into());
        }
        if db.transfers.contains_key(&transfer) || db.cancelled.contains(&transfer) {
            return Err(format!("transfer {transfer} already exists"));
        }
        if package.leaves.is_empty() || package.leaves.len() > MAX_LEAVES_PER_TRANSFER {
            return Err(format!("{} leaves (allowed 1..={MAX_LEAVES_PER_TRANSFER})", package.leaves.len()));
        }
        verify_digest(sender, &transfer_package_digest(transfer, &package.key_tweak_package), &package.signature)
            .map_err(|e| format!("package signature: {e}"))?;
        let ct = package.key_tweak_package.get(&me).ok_or("no key tweak for me in the package")?;
        let plain = ecies::decrypt(&self.cfg.identity, ct).map_err(|e| format!("key tweak: {e}"))?;
        let slice: Vec<SendLeafKeyTweak> = bincode::deserialize(&plain).map_err(|e| format!("key tweak encoding: {e}"))?;
        let leaves: BTreeSet<LeafId> = package.leaves.iter().map(|l| l.leaf).collect();
        if leaves.len() != package.leaves.len() || slice.iter().map(|t| t.leaf).collect::<BTreeSet<_>>() != leaves {
            return Err("key tweaks do not cover exactly the package's leaves".into());
        }
        let all: BTreeSet<OperatorId> = self.all_operators();
        let mut jobs = Vec::new();
        for (index, (tweak, lp)) in slice.iter().zip(package.leaves.iter()).enumerate() {
            if tweak.leaf != lp.leaf {
                return Err("key tweaks out of order".into());
            }
            self.validate_tweak_share(&tweak.share, &tweak.pubkey_shares_tweak, &all)?;
            verify_digest(sender, &leaf_tweak_digest(tweak.leaf, transfer, &tweak.secret_cipher), &tweak.signature)
                .map_err(|e| format!("leaf {} signature: {e}", tweak.leaf))?;
            let leaf = db.leaves.get(&lp.leaf).ok_or_else(|| format!("unknown leaf {}", lp.leaf))?;
            if leaf.status != LeafStatus::Available {
                return Err(format!("leaf {} is {:?}", lp.leaf, leaf.status));
            }
            if leaf.owner_identity != *sender {
                return Err(format!("leaf {} is not the sender's", lp.leaf));
            }
            // Ordinary or connector refunds (coop_exit.rs).
            let (expected, prevouts) = self.send_expectations(db, transfer, index, leaf, receiver)?;
            if lp.refunds.len() != 3 {
                return Err(format!("leaf {}: expected 3 refunds, found {}", lp.leaf, lp.refunds.len()));
            }
            for (i, uj) in lp.refunds.iter().enumerate() {
                template::compare_transactions(expected.as_array()[i], &uj.tx).map_err(|e| format!("leaf {} refund {i}: {e}", lp.leaf))?;
                let message = sighash::key_spend_sighash(&uj.tx, 0, &prevouts[i]).map_err(|e| e.to_string())?;
                jobs.push(RefundJob {
                    leaf: lp.leaf,
                    tx: uj.tx.clone(),
                    job: SigningJob {
                        message,
                        verifying_key: leaf.verifying_key,
                        user_public_key: leaf.owner_signing_key,
                        operator_commitments: uj.operator_commitments.clone(),
                        user_commitment: uj.user_commitment.clone(),
                    },
                    user_share: uj.user_share,
                });
            }
        }
        Ok(ValidSend { slice, jobs })
    }

    /// A Feldman share for this operator that matches its proofs, with a public tweak for every
    /// operator consistent with the proofs (spark-protocol §2.5, `ValidateShare`).
    pub(super) fn validate_tweak_share(&self, share: &vss::VssShare, pubkey_shares_tweak: &BTreeMap<OperatorId, PublicKey>, all: &BTreeSet<OperatorId>) -> Result<(), String> {
        if share.x != self.cfg.id.share_x() {
            return Err(format!("share is for x={}, I am x={}", share.x, self.cfg.id.share_x()));
        }
        if share.proofs.len() != usize::from(self.cfg.params.threshold) {
            return Err(format!("{} proofs for threshold {}", share.proofs.len(), self.cfg.params.threshold));
        }
        vss::validate_share(share).map_err(|e| e.to_string())?;
        if pubkey_shares_tweak.keys().copied().collect::<BTreeSet<_>>() != *all {
            return Err("public share tweaks do not cover every operator".into());
        }
        for (op, p) in pubkey_shares_tweak {
            let claimed = vss::VssShare { x: op.share_x(), share: crate::crypto::Scalar([0; 32]), proofs: share.proofs.clone() };
            if Some(*p) != feldman_eval(&claimed) {
                return Err(format!("public share tweak of {op} does not match the proofs"));
            }
        }
        Ok(())
    }

    /// The refunds the SO expects for the next owner, rebuilt from its own tables (never from the
    /// client's CSV: spark-protocol §3.4, I-8).
    pub(super) fn expected_send_refunds(&self, leaf: &super::store::LeafRow, receiver: &PublicKey) -> Result<RefundSet, String> {
        let (current, _) = leaf.refunds.sequences()?;
        let (seq, direct) = self.cfg.params.next_refund_sequences(current).map_err(|e| e.to_string())?;
        leaf.nodes.refunds_to(receiver, seq, direct)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_transfer(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, transfer: TransferId, sender: PublicKey, receiver: PublicKey, expiry: Micros, package: TransferPackage, swap: Option<crate::msg::lightning::PreimageSwap>) {
        // A pending send (a live or crashed session of an earlier copy of this request) means a
        // duplicate: it must not start a second session whose failure would cancel the first.
        if self.store.read().pending_sends.contains_key(&transfer) {
            return Self::reply_wallet(ctx, call, Err(format!("transfer {transfer} already exists")));
        }
        let valid = match self.validate_send(self.store.read(), ctx.now, transfer, &sender, &receiver, expiry, &package) {
            Ok(v) => v,
            Err(e) => return Self::reply_wallet(ctx, call, Err(e)),
        };
        for j in &valid.jobs {
            if let Err(e) = self.guard_refund_timelock(ctx, j.leaf, [&j.tx]) {
                return Self::reply_wallet(ctx, call, Err(e));
            }
        }
        let signer_sets: BTreeSet<BTreeSet<OperatorId>> = valid.jobs.iter().map(|j| j.job.operator_commitments.keys().copied().collect()).collect();
        let Some(signers) = signer_sets.into_iter().next().filter(|s| s.len() == usize::from(self.cfg.params.threshold)) else {
            return Self::reply_wallet(ctx, call, Err("refunds must name one set of t signers".into()));
        };
        // spark-protocol §4.2 coordinator step 2: the pending send is durable before any fan-out,
        // so a crash from here on is resolved by the transfer tasks.
        let mut db = self.store.begin();
        db.pending_sends.insert(transfer, PendingSendRow { status: PendingSendStatus::Started, started_at: ctx.now });
        self.store.commit(db);
        self.arm_tasks_timer(ctx);
        let keyshare = |leaf: &LeafId| self.store.read().leaves[leaf].keyshare;
        // Leaf swaps v2: a counter's CPFP refund is co-signed under the swap's adaptor point.
        let adaptor = Self::v2_counter_adaptor(self.store.read(), transfer);
        let requests = signers
            .iter()
            .flat_map(|op| {
                // One FrostRound2 per (operator, leaf keyshare).
                let mut by_keyshare: BTreeMap<crate::types::KeyshareId, Vec<SigningJob>> = BTreeMap::new();
                for j in &valid.jobs {
                    by_keyshare.entry(keyshare(&j.leaf)).or_default().push(j.job.clone());
                }
                by_keyshare.into_iter().map(move |(k, jobs)| (*op, InternalRequest::FrostRound2 { keyshare: k, jobs }))
            })
            .map(|(op, req)| (op, Self::swap_adapt_round2(adaptor, req)))
            .collect::<Vec<_>>();
        if requests.len() != signers.len() {
            // Multi-leaf transfers with distinct keyshares need one round per keyshare: not yet.
            let mut db = self.store.begin();
            db.pending_sends.insert(transfer, PendingSendRow { status: PendingSendStatus::Finished, started_at: ctx.now });
            self.store.commit(db);
            return Self::reply_wallet(ctx, call, Err("one leaf per transfer is supported".into()));
        }
        let s = SendSession { call, transfer, sender, receiver, expiry, package, slice: valid.slice, jobs: valid.jobs, signers, signed: BTreeMap::new(), swap };
        self.start_session(ctx, SessionKind::Send(Box::new(s)), requests);
    }

    pub(super) fn send_advance(&mut self, ctx: &mut Ctx<'_>, phase: u8, mut s: SendSession, replies: BTreeMap<OperatorId, InternalReply>) -> Step<SendSession> {
        if phase == 1 {
            if let Err(e) = self.aggregate_refunds(ctx, &mut s, replies) {
                self.send_abort(ctx, s, e);
                return Step::Done;
            }
            if self.two_phase() {
                return self.twopc_send_prepare(ctx, s); // two-phase commit mode (twopc_flows.rs)
            }
            let others = self.others();
            if others.is_empty() {
                self.send_commit(ctx, s);
                return Step::Done;
            }
            let init = s.transfer_init();
            let req = match self.store.read().coop_exits.get(&s.transfer) {
                // Cooperative exit: the participants need the connector tx (coop_exit.rs).
                Some(exit) => InternalRequest::InitiateCoopExit { exit: exit.clone(), init },
                // Lightning send: the participants record the preimage request (preimage_send.rs).
                None => match s.swap.as_ref().filter(|w| w.reason == crate::msg::lightning::PreimageReason::Send) {
                    Some(swap) => InternalRequest::InitiatePreimageSend { swap: swap.clone(), init },
                    None => init.into_request(),
                },
            };
            let requests = others.into_iter().map(|o| (o, req.clone())).collect();
            Step::Next(s, requests)
        } else if s.swap.is_some() {
            // Lightning receive: every operator holds the transfer; collect the preimage shares
            // before anything commits (operator/preimage.rs).
            self.preimage_swap_advance(ctx, phase, s, replies)
        } else if self.two_phase() {
            self.twopc_send_commit(ctx, s); // two-phase commit mode (twopc_flows.rs)
            Step::Done
        } else {
            self.send_commit(ctx, s);
            Step::Done
        }
    }

    /// FROST round 2 shares + the user's shares → signed intermediate refunds (identifiable abort
    /// names a cheating signer).
    fn aggregate_refunds(&mut self, ctx: &mut Ctx<'_>, s: &mut SendSession, replies: BTreeMap<OperatorId, InternalReply>) -> Result<(), String> {
        let mut culprits = Vec::new();
        let r = self.aggregate_refunds_named(s, replies, &mut culprits);
        for op in culprits {
            self.name_culprit(ctx, op, "signature share does not verify".into());
        }
        r
    }

    fn aggregate_refunds_named(&self, s: &mut SendSession, replies: BTreeMap<OperatorId, InternalReply>, culprits: &mut Vec<OperatorId>) -> Result<(), String> {
        let db = self.store.read();
        let mut shares_by_op = BTreeMap::new();
        for (op, r) in replies {
            let InternalReply::Shares(v) = r else { return Err(format!("{op} sent no shares")) };
            if v.len() != s.jobs.len() {
                return Err(format!("{op} sent {} shares for {} jobs", v.len(), s.jobs.len()));
            }
            shares_by_op.insert(op, v);
        }
        let mut signed: BTreeMap<LeafId, Vec<Transaction>> = BTreeMap::new();
        let adaptor = Self::v2_counter_adaptor(db, s.transfer);
        for (i, j) in s.jobs.iter().enumerate() {
            let leaf = db.leaves.get(&j.leaf).ok_or("leaf vanished")?;
            let public = &db.keyshares.get(&leaf.keyshare).ok_or("keyshare vanished")?.share.public_shares;
            let op_shares = shares_by_op.iter().map(|(op, v)| (*op, v[i])).collect();
            let op_public = s.signers.iter().filter_map(|o| public.get(o).map(|p| (*o, *p))).collect();
            let name = |e: signing::SigningError, culprits: &mut Vec<OperatorId>| {
                if let signing::SigningError::InvalidShare { culprits: named } = &e {
                    culprits.extend(named.iter().filter_map(|c| if let signing::Signer::Operator(o) = c { Some(*o) } else { None }));
                }
                format!("refund signing: {e}")
            };
            let mut tx = j.tx.clone();
            // Leaf swaps v2 (swap.rs): the counter's CPFP refund aggregates to a pre-signature.
            tx.input[0].witness = match Self::swap_job_adaptor(adaptor, i) {
                Some(t) => {
                    let pre = crate::crypto::adaptor_frost::aggregate(&j.job, &op_shares, &j.user_share, &op_public, &t).map_err(|e| name(e, culprits))?;
                    super::swap::presigned_witness(&pre, &t)
                }
                None => sighash::key_spend_witness(&signing::aggregate(&j.job, &op_shares, &j.user_share, &op_public).map_err(|e| name(e, culprits))?),
            };
            signed.entry(j.leaf).or_default().push(tx);
        }
        for (leaf, txs) in signed {
            s.signed.insert(leaf, RefundSet::from_vec(txs).ok_or("expected 3 refunds per leaf")?);
        }
        Ok(())
    }

    /// Every operator holds the transfer: commit it here, gossip the settle, acknowledge the send.
    pub(super) fn send_commit(&mut self, ctx: &mut Ctx<'_>, s: SendSession) {
        let mut db = self.store.begin();
        if let Err(e) = self.record_coordinator_transfer(&mut db, &s, ctx.now) {
            return self.send_abort(ctx, s, e);
        }
        let others = self.others();
        // Swap legs, cooperative exits and Lightning sends hold their tweak (tweak_hold.rs, shared
        // with two_phase).
        let settle = match Self::sender_tweak_on_commit(&mut db, s.transfer) {
            Ok(x) => x.settle_body(s.transfer),
            Err(e) => return self.send_abort(ctx, s, e),
        };
        let seq = settle.clone().filter(|_| !others.is_empty()).map(|body| Self::gossip_create(&mut db, body, others));
        if let (None, Some(body)) = (seq, &settle) {
            if let Err(e) = self.apply_swap_gossip(&mut db, body) {
                return self.send_abort(ctx, s, e);
            }
        }
        self.store.commit(db);
        if let Some(seq) = seq {
            self.gossip_push(ctx, seq);
        }
        let reply = self.send_committed_reply(&s);
        Self::reply_wallet(ctx, s.call, Ok(reply));
    }

    /// The wallet's answer to a committed send (both commit paths): "sent", or for a cooperative
    /// exit its signed connector refunds.
    pub(super) fn send_committed_reply(&self, s: &SendSession) -> WalletReply {
        match s.signed.values().next() {
            Some(refunds) if self.store.read().coop_exits.contains_key(&s.transfer) => WalletReply::CoopExitSigned { transfer: s.transfer, refunds: refunds.clone() },
            _ => WalletReply::Transfer { transfer: s.transfer, outcome: TransferOutcome::Sent },
        }
    }

    /// Every operator holds the transfer: record it on the coordinator (status
    /// SENDER_INITIATED_COORDINATOR), lock its leaves, finish the pending send. Both the gossip
    /// commit here and the two-phase commit (twopc_flows.rs) start with this.
    pub(super) fn record_coordinator_transfer(&self, db: &mut Db, s: &SendSession, now: Micros) -> Result<(), String> {
        Self::leaves_still_as_validated(db, s.transfer, &s.signed)?;
        let row = Self::transfer_row(db, &s.slice, s.sender, s.receiver, s.expiry, self.cfg.id, &s.signed, TransferStatus::SenderInitiatedCoordinator)?;
        for leaf in row.leaves.keys() {
            if let Some(l) = db.leaves.get_mut(leaf) {
                l.status = LeafStatus::TransferLocked(s.transfer);
            }
        }
        db.transfers.insert(s.transfer, row);
        db.pending_sends.insert(s.transfer, PendingSendRow { status: PendingSendStatus::Finished, started_at: now });
        Ok(())
    }

    /// Renew/send race (race70; spark-protocol §3.4, I-4): the send was validated against the
    /// leaf when it started, but its leaf is locked only here, at commit. A renew of the same
    /// leaf by the same owner (a second device) may have locked it (RENEW_LOCKED) or replaced
    /// its node tx in between: then the signed refunds spend a node tx that is no longer the
    /// leaf's, and recording the transfer would hand the receiver a dead exit chain.
    pub(super) fn leaves_still_as_validated(db: &Db, transfer: TransferId, signed: &BTreeMap<LeafId, RefundSet>) -> Result<(), String> {
        for (leaf, refunds) in signed {
            let l = db.leaves.get(leaf).ok_or("leaf vanished")?;
            if !matches!(l.status, LeafStatus::Available) && l.status != LeafStatus::TransferLocked(transfer) {
                return Err(format!("leaf {leaf} is {:?}: another operation took it during the send", l.status));
            }
            let nodes = [l.nodes.cpfp.compute_txid(), l.nodes.direct.compute_txid()];
            if !refunds.cpfp.input.iter().any(|i| nodes.contains(&i.previous_output.txid)) {
                return Err(format!("leaf {leaf} was renewed during the send: its refunds spend a replaced node tx"));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn transfer_row(db: &Db, slice: &[SendLeafKeyTweak], sender: PublicKey, receiver: PublicKey, expiry: Micros, coordinator: OperatorId, signed: &BTreeMap<LeafId, RefundSet>, status: TransferStatus) -> Result<TransferRow, String> {
        let mut leaves = BTreeMap::new();
        for t in slice {
            let leaf = db.leaves.get(&t.leaf).ok_or("leaf vanished")?;
            leaves.insert(
                t.leaf,
                TransferLeafRow {
                    sender_tweak: StoredTweak { share: t.share.clone(), pubkey_shares_tweak: t.pubkey_shares_tweak.clone() },
                    secret_cipher: t.secret_cipher.clone(),
                    signature: t.signature.clone(),
                    previous_refunds: leaf.refunds.clone(),
                    intermediate_refunds: Some(signed.get(&t.leaf).ok_or("missing signed refunds")?.clone()),
                    receiver_tweak: None,
                },
            );
        }
        Ok(TransferRow { status, sender, receiver, expiry, coordinator, leaves, receiver_commit_decided: false })
    }

    /// The send failed before it committed: cancel it everywhere (durably) and tell the wallet.
    pub(super) fn send_abort(&mut self, ctx: &mut Ctx<'_>, s: SendSession, reason: String) {
        let Some(s) = self.twopc_send_abort(ctx, s, &reason) else { return }; // two-phase commit mode
        self.cancel_send(ctx, s.transfer);
        Self::reply_wallet(ctx, s.call, Err(reason));
    }

    pub(super) fn cancel_send(&mut self, ctx: &mut Ctx<'_>, transfer: TransferId) {
        let mut db = self.store.begin();
        if let Some(p) = db.pending_sends.get_mut(&transfer) {
            p.status = PendingSendStatus::Finished;
        }
        if Self::apply_cancel(&mut db, transfer).is_err() {
            self.store.commit(db);
            return;
        }
        let seq = Self::gossip_create(&mut db, GossipBody::CancelTransfer { transfer }, self.others());
        self.store.commit(db);
        self.gossip_push(ctx, seq);
    }

    /// Participant: re-validate, record the transfer with its pending tweak, lock the leaves.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn initiate_transfer(&mut self, ctx: &mut Ctx<'_>, coordinator: OperatorId, transfer: TransferId, sender: PublicKey, receiver: PublicKey, expiry: Micros, package: TransferPackage, signed_refunds: BTreeMap<LeafId, RefundSet>) -> Result<InternalReply, String> {
        if let Some(t) = self.store.read().transfers.get(&transfer) {
            return if t.status == TransferStatus::Returned { Err("transfer was cancelled".into()) } else { Ok(InternalReply::Ack) };
        }
        let mut db = self.store.begin();
        self.initiate_transfer_in(&mut db, ctx.now, coordinator, transfer, sender, receiver, expiry, &package, &signed_refunds)?;
        self.store.commit(db);
        Ok(InternalReply::Ack)
    }

    /// The domain work of `InitiateTransfer` inside the caller's store transaction (the
    /// two-phase commit mode writes its PARTICIPANT row in the same one).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn initiate_transfer_in(&self, db: &mut Db, now: Micros, coordinator: OperatorId, transfer: TransferId, sender: PublicKey, receiver: PublicKey, expiry: Micros, package: &TransferPackage, signed_refunds: &BTreeMap<LeafId, RefundSet>) -> Result<(), String> {
        let valid = self.validate_send(db, now, transfer, &sender, &receiver, expiry, package)?;
        for (index, lp) in package.leaves.iter().enumerate() {
            let leaf = &db.leaves[&lp.leaf];
            let signed = signed_refunds.get(&lp.leaf).ok_or("missing signed refunds")?;
            let (_, prevouts) = self.send_expectations(db, transfer, index, leaf, &receiver)?;
            for (i, tx) in signed.as_array().into_iter().enumerate() {
                // A v2 swap counter's CPFP refund carries the operators' pre-signature (swap.rs).
                let check = if i == 0 { super::swap::check_signed_or_presigned } else { check_signed };
                check(&lp.refunds[i].tx, tx, &prevouts[i], &leaf.verifying_key).map_err(|e| format!("signed refund {i}: {e}"))?;
            }
        }
        let row = Self::transfer_row(db, &valid.slice, sender, receiver, expiry, coordinator, signed_refunds, TransferStatus::SenderKeyTweakPending)?;
        for leaf in row.leaves.keys() {
            if let Some(l) = db.leaves.get_mut(leaf) {
                l.status = LeafStatus::TransferLocked(transfer);
            }
        }
        db.transfers.insert(transfer, row);
        Ok(())
    }

    /// Apply this operator's slice of the sender's tweak (spark-protocol §2.5): the SE key moves to
    /// "sender-ephemeral", the old share is overwritten (forgotten).
    pub(super) fn apply_settle_sender(&self, db: &mut Db, transfer: TransferId) -> Result<(), String> {
        let me = self.cfg.id;
        let t = db.transfers.get(&transfer).ok_or_else(|| format!("unknown transfer {transfer}"))?;
        match t.status {
            TransferStatus::SenderKeyTweakPending | TransferStatus::SenderInitiatedCoordinator => {}
            TransferStatus::Returned => return Err(format!("transfer {transfer} was cancelled")),
            _ => return Ok(()),
        }
        super::preimage_send::check_settle_allowed(db, transfer)?; // Lightning send: not before the preimage
        let tweaks: Vec<(LeafId, StoredTweak)> = t.leaves.iter().map(|(l, r)| (*l, r.sender_tweak.clone())).collect();
        for (leaf, tweak) in tweaks {
            Self::apply_key_tweak(db, me, leaf, &tweak)?;
        }
        if let Some(t) = db.transfers.get_mut(&transfer) {
            t.status = TransferStatus::SenderKeyTweaked;
        }
        Ok(())
    }

    /// s_i += δ_i on the leaf's keyshare, and owner signing key := Y − P_SE'.
    pub(super) fn apply_key_tweak(db: &mut Db, me: OperatorId, leaf: LeafId, tweak: &StoredTweak) -> Result<(), String> {
        let row = db.leaves.get_mut(&leaf).ok_or_else(|| format!("unknown leaf {leaf}"))?;
        let ks = db.keyshares.get_mut(&row.keyshare).ok_or("keyshare vanished")?;
        let commitment = tweak.share.proofs.first().ok_or("tweak has no proofs")?;
        ks.share.apply_tweak(me, &tweak.share.share, &tweak.pubkey_shares_tweak, commitment).map_err(|e| e.to_string())?;
        ks.epoch += 1;
        row.owner_signing_key = curve::point_sub(&row.verifying_key, &ks.share.public_key).ok_or("owner key at infinity")?;
        Ok(())
    }

    pub(super) fn apply_cancel(db: &mut Db, transfer: TransferId) -> Result<(), String> {
        // Lightning: a swap whose preimage was shared is never cancelled (spark-protocol §4.2).
        super::preimage::cancel_swap_of(db, transfer)?;
        let Some(t) = db.transfers.get_mut(&transfer) else {
            db.cancelled.insert(transfer);
            return Ok(());
        };
        match t.status {
            TransferStatus::SenderKeyTweakPending | TransferStatus::SenderInitiatedCoordinator => {}
            TransferStatus::Returned => return Ok(()),
            s => return Err(format!("cannot cancel transfer {transfer} in {s:?}")),
        }
        t.status = TransferStatus::Returned;
        let leaves: Vec<LeafId> = t.leaves.keys().copied().collect();
        for r in t.leaves.values_mut() {
            // An honest operator forgets the signed refunds to the receiver it will never honour.
            r.intermediate_refunds = None;
        }
        for leaf in leaves {
            if let Some(l) = db.leaves.get_mut(&leaf) {
                if l.status == LeafStatus::TransferLocked(transfer) {
                    l.status = LeafStatus::Available;
                }
            }
        }
        Ok(())
    }

    pub(super) fn query_transfer(&self, transfer: TransferId) -> TransferOutcome {
        let db = self.store.read();
        match db.transfers.get(&transfer).map(|t| t.status) {
            Some(TransferStatus::Returned) => TransferOutcome::Returned,
            Some(_) => TransferOutcome::Sent,
            None if db.cancelled.contains(&transfer) => TransferOutcome::Returned,
            None => match db.pending_sends.get(&transfer).map(|p| p.status) {
                Some(PendingSendStatus::Started) => TransferOutcome::InProgress,
                Some(PendingSendStatus::Finished) => TransferOutcome::Returned,
                None => TransferOutcome::Unknown,
            },
        }
    }

    pub(super) fn arm_tasks_timer(&mut self, ctx: &mut Ctx<'_>) {
        let any = self.store.read().pending_sends.values().any(|p| p.status == PendingSendStatus::Started);
        if any && !self.vol.tasks_timer_armed {
            self.vol.tasks_timer_armed = true;
            ctx.set_timer(self.cfg.params.transfer_tasks_period, TimerKind::TransferTasks);
        }
    }

    /// `monitor_pending_send_transfers`: a send still STARTED long after it began, with no live
    /// session (the coordinator crashed mid-send), never committed: cancel it everywhere.
    pub(super) fn transfer_tasks(&mut self, ctx: &mut Ctx<'_>) {
        let live: BTreeSet<TransferId> = self
            .vol
            .sessions
            .values()
            .filter_map(|s| if let SessionKind::Send(x) = &s.kind { Some(x.transfer) } else { None })
            .collect();
        let stale: Vec<TransferId> = self
            .store
            .read()
            .pending_sends
            .iter()
            .filter(|(t, p)| p.status == PendingSendStatus::Started && p.started_at + self.cfg.params.pending_send_stale <= ctx.now && !live.contains(t))
            // Two-phase commit mode: a send with a flow row is the engine's to end (sweep).
            .filter(|(t, _)| !self.flow_owns_send(**t))
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            self.cancel_send(ctx, t);
        }
        self.arm_tasks_timer(ctx);
    }
}

/// Σ proofs[k]·x^k: the public share a Feldman commitment implies for x.
pub(super) fn feldman_eval(share: &vss::VssShare) -> Option<PublicKey> {
    let x = crate::crypto::Scalar::from_u32(share.x);
    let mut power = crate::crypto::Scalar::from_u32(1);
    let mut acc: Option<PublicKey> = None;
    for p in &share.proofs {
        let term = curve::point_mul(p, &power)?;
        acc = Some(match acc {
            None => term,
            Some(a) => curve::point_add(&a, &term)?,
        });
        power = power.mul(&x);
    }
    acc
}
