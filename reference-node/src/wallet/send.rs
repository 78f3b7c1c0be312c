//! Wallet side of a send (spark-protocol §4.2, user-first signing §2.4b, key tweak §2.5).
use super::{scalar_of, Command, LeafState, Op, Wallet};
use crate::crypto::identity::{sha256, sign_digest};
use crate::crypto::signing::{self, NonceCommitment, SigningJob};
use crate::crypto::{ecies, PublicKey, Scalar};
use crate::msg::{leaf_tweak_digest, transfer_package_digest, SendLeafKeyTweak, TransferLeafPackage, TransferOutcome, TransferPackage, UserSignedJob, WalletReply, WalletRequest};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::tx::sighash;
use crate::types::{LeafId, Micros, OperatorId, TransferId, WalletId};
use rand_core::RngCore;
use bitcoin::{Transaction, TxOut};
use std::collections::BTreeMap;

pub(super) struct SendOp {
    attempt: u8,
    receiver: WalletId,
    leaf: LeafId,
    stage: Stage,
    /// The coordinator answered the start with an error: if it then knows nothing of the
    /// transfer, it refused the package and no copy of it is pending.
    refused: bool,
    /// Renew/send race (device.rs): the user's second device sends, from its own leaf cache.
    device: bool,
}

impl SendOp {
    /// The command a failed attempt retries.
    fn command(&self) -> Command {
        if self.device {
            Command::DeviceSend { receiver: self.receiver }
        } else {
            Command::Send { receiver: self.receiver }
        }
    }
}

enum Stage {
    Commitments,
    Start { transfer: TransferId, expiry: Micros, receiver_key: PublicKey },
    Query { transfer: TransferId, expiry: Micros, receiver_key: PublicKey },
}

impl Wallet {
    pub(super) fn start_send(&mut self, ctx: &mut Ctx<'_>, receiver: WalletId, attempt: u8) {
        self.start_send_as(ctx, receiver, attempt, false);
    }

    /// A send by this device, or (`device`) by the user's second device from its cache.
    pub(super) fn start_send_as(&mut self, ctx: &mut Ctx<'_>, receiver: WalletId, attempt: u8, device: bool) {
        let p = &self.cfg.params;
        let view = if device { self.device_leaves() } else { &self.leaves };
        let leaf = view.iter().find(|(id, l)| {
            l.state == LeafState::Available && l.refunds.sequences().is_ok_and(|(cur, _)| p.next_refund_sequences(cur).is_ok()) && self.leaves.get(id).is_some_and(|l| l.state == LeafState::Available)
        });
        let Some((leaf, _)) = leaf else {
            ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: "send: no available leaf with timelock left".into() });
            return self.start_next(ctx);
        };
        let leaf = *leaf;
        self.begin(Op::Send(Box::new(SendOp { attempt, receiver, leaf, stage: Stage::Commitments, refused: false, device })));
        let to = self.cfg.coordinator;
        self.request(ctx, to, WalletRequest::GetSigningCommitments { leaf, count: 3 });
        self.arm_timeout(ctx);
    }

    pub(super) fn send_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: SendOp, body: Result<WalletReply, String>) {
        let retry = Some((s.command(), s.attempt));
        match (&s.stage, body) {
            (Stage::Commitments, Ok(WalletReply::SigningCommitments { commitments })) => match self.build_transfer(ctx, &s, commitments) {
                Ok((transfer, expiry, receiver_key, request)) => {
                    if let Some(l) = self.leaves.get_mut(&s.leaf) {
                        l.state = LeafState::Sending(transfer);
                    }
                    s.stage = Stage::Start { transfer, expiry, receiver_key };
                    self.op = Some((session, Op::Send(Box::new(s))));
                    self.new_round();
                    let to = self.cfg.coordinator;
                    self.request(ctx, to, request);
                    self.arm_timeout(ctx);
                }
                Err(e) => self.fail(ctx, retry, format!("send: {e}")),
            },
            (Stage::Commitments, Err(e)) => self.fail(ctx, retry, format!("send: {e}")),
            (Stage::Start { transfer, receiver_key, expiry } | Stage::Query { transfer, receiver_key, expiry }, Ok(WalletReply::Transfer { outcome, .. })) => {
                let (transfer, receiver_key, expiry) = (*transfer, *receiver_key, *expiry);
                match outcome {
                    TransferOutcome::Sent => self.send_done(ctx, s.leaf, transfer, receiver_key),
                    TransferOutcome::Returned => self.send_returned(ctx, &s, transfer, retry),
                    // Past expiry, "unknown" is final: the coordinator refuses an expired package,
                    // and one it had accepted would read InProgress (its PendingSend is durable).
                    TransferOutcome::Unknown if ctx.now > expiry || s.refused => self.send_returned(ctx, &s, transfer, retry),
                    TransferOutcome::InProgress | TransferOutcome::Unknown => {
                        // Ask again after a while (handled like a timeout of this stage).
                        self.op = Some((session, Op::Send(Box::new(s))));
                        self.new_round();
                        self.arm_timeout(ctx);
                    }
                }
            }
            // An error reply is not the transfer's outcome: it may answer a duplicate of a start
            // that is going ahead ("already exists"). Ask for the durable outcome.
            (Stage::Start { transfer, .. }, Err(e)) => {
                let transfer = *transfer;
                ctx.observe(Observation::Rejected { what: format!("{} send {transfer}", self.cfg.id), reason: e });
                s.refused = true;
                self.send_timeout(ctx, session, s);
            }
            (_, _) => {
                self.op = Some((session, Op::Send(Box::new(s))));
                self.new_round();
                self.arm_timeout(ctx);
            }
        }
    }

    /// The send in flight when the wallet crashed, if its package may have reached the coordinator:
    /// the leaf is `Sending` and only the coordinator knows whether it left. (The leaf and its
    /// pending transfer are in the wallet's backup; the SDK re-syncs them at start-up.)
    pub(super) fn send_to_resolve(&self) -> Option<Command> {
        // The second device (device.rs) re-syncs from the operators instead.
        let Some((_, Op::Send(s))) = self.op.as_ref().filter(|(_, op)| !matches!(op, Op::Send(s) if s.device)) else { return None };
        match s.stage {
            Stage::Commitments => None,
            Stage::Start { transfer, expiry, receiver_key } | Stage::Query { transfer, expiry, receiver_key } => {
                Some(Command::ResolveSend { receiver: s.receiver, leaf: s.leaf, transfer, receiver_key, expiry, attempt: s.attempt })
            }
        }
    }

    /// Resume a send that a crash interrupted: query its outcome, as after a timeout. A returned
    /// transfer is retried like any returned send.
    pub(super) fn start_resolve_send(&mut self, ctx: &mut Ctx<'_>, receiver: WalletId, leaf: LeafId, (transfer, receiver_key, expiry): (TransferId, PublicKey, Micros), attempt: u8) {
        self.begin(Op::Send(Box::new(SendOp { attempt, receiver, leaf, stage: Stage::Query { transfer, expiry, receiver_key }, refused: false, device: false })));
        let to = self.cfg.coordinator;
        self.request(ctx, to, WalletRequest::QueryTransfer { transfer });
        self.arm_timeout(ctx);
    }

    /// No answer: a send that may have reached the coordinator is never assumed lost — ask.
    pub(super) fn send_timeout(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: SendOp) {
        let retry = Some((s.command(), s.attempt));
        match s.stage {
            Stage::Commitments => self.fail(ctx, retry, "send: commitments timed out".into()),
            Stage::Start { transfer, expiry, receiver_key } | Stage::Query { transfer, expiry, receiver_key } => {
                s.stage = Stage::Query { transfer, expiry, receiver_key };
                self.op = Some((session, Op::Send(Box::new(s))));
                self.new_round();
                let to = self.cfg.coordinator;
                self.request(ctx, to, WalletRequest::QueryTransfer { transfer });
                self.arm_timeout(ctx);
            }
        }
    }

    fn send_done(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId, transfer: TransferId, receiver: PublicKey) {
        self.device_forget(leaf);
        if let Some(l) = self.leaves.remove(&leaf) {
            ctx.observe(Observation::TransferSent { transfer, sender: self.cfg.id, receiver, leaf, value_sats: l.value_sats });
            self.sent_away.insert(leaf, l);
        }
        self.finish(ctx);
    }

    fn send_returned(&mut self, ctx: &mut Ctx<'_>, s: &SendOp, transfer: TransferId, retry: Option<(Command, u8)>) {
        if s.device {
            // The second device's send was refused (or returned): it re-syncs before any retry.
            return self.device_send_refused(ctx, s.leaf, transfer, retry);
        }
        if let Some(l) = self.leaves.get_mut(&s.leaf) {
            l.state = LeafState::Available;
        }
        ctx.observe(Observation::TransferReturned { transfer, sender: self.cfg.id });
        self.fail(ctx, retry, format!("send {transfer} returned"));
    }

    /// Build the intermediate refunds, sign our shares against the pre-fetched commitments, and
    /// split the key tweak δ = sk_old − e among the operators.
    fn build_transfer(&self, ctx: &mut Ctx<'_>, s: &SendOp, commitments: Vec<BTreeMap<OperatorId, NonceCommitment>>) -> Result<(TransferId, Micros, PublicKey, WalletRequest), String> {
        let receiver_key = *self.cfg.directory.wallets.get(&s.receiver).ok_or("unknown receiver")?;
        if s.device {
            // Built from the second device's cache: a stale timelock if the leaf changed since.
            let leaf = self.device_leaves().get(&s.leaf).ok_or("leaf not in the device's cache")?;
            let (transfer, package) = self.transfer_package_of(ctx, s.leaf, leaf, &receiver_key, commitments, None)?;
            let expiry = ctx.now + self.cfg.params.transfer_expiry;
            return Ok((transfer, expiry, receiver_key, WalletRequest::StartTransfer { transfer, sender: self.identity_public(), receiver: receiver_key, expiry, package }));
        }
        self.build_transfer_to(ctx, s.leaf, receiver_key, commitments)
    }

    /// The `StartTransfer` of one leaf to `receiver_key` (also the transfer inside a Lightning
    /// preimage swap, wallet/ssp_lightning.rs).
    pub(super) fn build_transfer_to(&self, ctx: &mut Ctx<'_>, leaf_id: LeafId, receiver_key: PublicKey, commitments: Vec<BTreeMap<OperatorId, NonceCommitment>>) -> Result<(TransferId, Micros, PublicKey, WalletRequest), String> {
        let (transfer, package) = self.transfer_package(ctx, leaf_id, &receiver_key, commitments)?;
        let expiry = ctx.now + self.cfg.params.transfer_expiry;
        let request = WalletRequest::StartTransfer { transfer, sender: self.identity_public(), receiver: receiver_key, expiry, package };
        Ok((transfer, expiry, receiver_key, request))
    }

    /// A fresh transfer id and its package for one leaf to `receiver_key`: the three refunds
    /// (decremented timelock) user-signed against the operators' `commitments`, and the key
    /// tweak. Shared by sends, Lightning preimage swaps and swap legs (wallet/swap.rs).
    pub(super) fn transfer_package(&self, ctx: &mut Ctx<'_>, leaf_id: LeafId, receiver_key: &PublicKey, commitments: Vec<BTreeMap<OperatorId, NonceCommitment>>) -> Result<(TransferId, TransferPackage), String> {
        self.transfer_package_under(ctx, leaf_id, receiver_key, commitments, None)
    }

    /// `transfer_package` with the CPFP refund's user share signed under `adaptor` when given
    /// (leaf swaps v2: the SSP's counter leg, wallet/swap.rs).
    pub(super) fn transfer_package_under(&self, ctx: &mut Ctx<'_>, leaf_id: LeafId, receiver_key: &PublicKey, commitments: Vec<BTreeMap<OperatorId, NonceCommitment>>, adaptor: Option<PublicKey>) -> Result<(TransferId, TransferPackage), String> {
        let leaf = self.leaves.get(&leaf_id).ok_or("leaf vanished")?;
        self.transfer_package_of(ctx, leaf_id, leaf, receiver_key, commitments, adaptor)
    }

    /// `transfer_package` from a given view of the leaf (this device's, or the second device's
    /// cache: wallet/device.rs).
    fn transfer_package_of(&self, ctx: &mut Ctx<'_>, leaf_id: LeafId, leaf: &super::WalletLeaf, receiver_key: &PublicKey, commitments: Vec<BTreeMap<OperatorId, NonceCommitment>>, adaptor: Option<PublicKey>) -> Result<(TransferId, TransferPackage), String> {
        let p = &self.cfg.params;
        let (current, _) = leaf.refunds.sequences()?;
        let (seq, direct) = p.next_refund_sequences(current).map_err(|e| e.to_string())?;
        let txs = leaf.nodes.refunds_to(receiver_key, seq, direct)?.into_array();
        self.transfer_package_with(ctx, (leaf_id, leaf), receiver_key, commitments, txs, adaptor)
    }

    /// [`Self::transfer_package_of`] with the three refunds given (Lightning send's HTLC
    /// refunds, wallet/lightning_send.rs).
    pub(super) fn transfer_package_with(&self, ctx: &mut Ctx<'_>, (leaf_id, leaf): (LeafId, &super::WalletLeaf), receiver_key: &PublicKey, commitments: Vec<BTreeMap<OperatorId, NonceCommitment>>, txs: [bitcoin::Transaction; 3], adaptor: Option<PublicKey>) -> Result<(TransferId, TransferPackage), String> {
        let prevouts = leaf.nodes.refund_prevouts()?;
        let refunds = self.sign_refunds_as_user(ctx, leaf, txs, &prevouts, commitments, adaptor)?;
        let mut id = [0u8; 16];
        ctx.rng.fill_bytes(&mut id);
        let transfer = TransferId(id);
        let key_tweak_package = self.key_tweaks(ctx, leaf_id, transfer, &leaf.signing_secret, receiver_key)?;
        let signature = sign_digest(&self.cfg.identity, &transfer_package_digest(transfer, &key_tweak_package));
        Ok((transfer, TransferPackage { leaves: vec![TransferLeafPackage { leaf: leaf_id, refunds }], key_tweak_package, signature }))
    }

    /// Our FROST share (input 0, the leaf key) of each of a leaf's 3 refunds against the
    /// operators' round-1 commitments: a send's refunds, or a coop exit's connector refunds
    /// (whose `prevouts` include the connector). With `adaptor`, the CPFP refund's share is
    /// signed under that point (leaf swaps v2).
    pub(super) fn sign_refunds_as_user(&self, ctx: &mut Ctx<'_>, leaf: &super::WalletLeaf, txs: [Transaction; 3], prevouts: &[Vec<TxOut>; 3], commitments: Vec<BTreeMap<OperatorId, NonceCommitment>>, adaptor: Option<PublicKey>) -> Result<Vec<UserSignedJob>, String> {
        if commitments.len() != 3 {
            return Err(format!("{} commitment sets for 3 refunds", commitments.len()));
        }
        let user_key = leaf.signing_secret.public_key(crate::crypto::secp());
        let mut refunds = Vec::new();
        for (i, ((tx, prev), ops)) in txs.into_iter().zip(prevouts).zip(commitments).enumerate() {
            let (nonce, user_commitment) = signing::commit(&scalar_of(&leaf.signing_secret), ctx.rng);
            let message = sighash::key_spend_sighash(&tx, 0, prev).map_err(|e| e.to_string())?;
            let job = SigningJob { message, verifying_key: leaf.verifying_key, user_public_key: user_key, operator_commitments: ops.clone(), user_commitment: user_commitment.clone() };
            let user_share = match adaptor.filter(|_| i == 0) {
                Some(t) => crate::crypto::adaptor_frost::sign_as_user(&job, &leaf.signing_secret, &nonce, &t),
                None => signing::sign_as_user(&job, &leaf.signing_secret, &nonce),
            }
            .map_err(|e| e.to_string())?;
            ctx.observe(Observation::NonceUsed { signer: self.cfg.id.to_string(), commitment: sha256(&[&user_commitment.0]), message });
            refunds.push(UserSignedJob { tx, user_commitment, user_share, operator_commitments: ops });
        }
        Ok(refunds)
    }

    /// Per operator: ECIES(operator identity, its Feldman share of δ, the public share tweaks,
    /// ECIES(receiver, e), and our signature binding them to the leaf and transfer).
    pub(super) fn key_tweaks(&self, ctx: &mut Ctx<'_>, leaf: LeafId, transfer: TransferId, old: &crate::crypto::SecretKey, receiver: &PublicKey) -> Result<BTreeMap<OperatorId, Vec<u8>>, String> {
        let p = &self.cfg.params;
        let e = Scalar::random(ctx.rng);
        let delta = scalar_of(old).sub(&e);
        let (shares, pubkey_shares_tweak) = super::split_tweak(p, &delta, ctx.rng)?;
        let secret_cipher = ecies::encrypt(receiver, &e.0, ctx.rng);
        let signature = sign_digest(&self.cfg.identity, &leaf_tweak_digest(leaf, transfer, &secret_cipher));
        let mut package = BTreeMap::new();
        for (op, share) in p.operator_ids().zip(shares) {
            let tweak = SendLeafKeyTweak { leaf, share, pubkey_shares_tweak: pubkey_shares_tweak.clone(), secret_cipher: secret_cipher.clone(), signature: signature.clone() };
            let plain = bincode::serialize(&vec![tweak]).map_err(|e| e.to_string())?;
            let op_key = self.cfg.directory.operators.get(&op).ok_or("unknown operator")?;
            package.insert(op, ecies::encrypt(op_key, &plain, ctx.rng));
        }
        Ok(package)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Msg, ReqId, TransferOutcome};
    use crate::node::{Input, Node, Output, TimerKind};
    use crate::params::{Directory, Params};
    use crate::types::NodeId;
    use crate::wallet::{WalletConfig, Wallet};
    use rand_core::SeedableRng;
    use std::sync::Arc;

    fn wallet() -> Wallet {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let identity = crate::crypto::SecretKey::new(&mut rng);
        let l1_key = crate::crypto::SecretKey::new(&mut rng);
        let directory = Arc::new(Directory::default());
        Wallet::new(WalletConfig { id: WalletId(0), identity, l1_key, coordinator: OperatorId(0), params: Arc::new(Params::new(3, 2)), directory })
    }

    /// Feed one input at `now`; return what the wallet asked for.
    fn step(w: &mut Wallet, now: Micros, input: Input) -> Vec<Output> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(now.0);
        let mut ctx = Ctx::new(now, NodeId::Wallet(WalletId(0)), &mut rng);
        w.handle(&mut ctx, input);
        ctx.into_outputs()
    }

    fn timeouts(out: &[Output]) -> Vec<u64> {
        out.iter().filter_map(|o| if let Output::SetTimer { timer: TimerKind::RequestTimeout(id), .. } = o { Some(*id) } else { None }).collect()
    }

    fn queries(out: &[Output]) -> Vec<ReqId> {
        out.iter().filter_map(|o| if let Output::Send { msg: Msg::WalletRequest { req, .. }, .. } = o { Some(*req) } else { None }).collect()
    }

    /// A backed-off retry waits for its WalletRetry timer: neither the poll timer nor a new
    /// command starts the queue early (`faults/swarm.toml` seeds 2, 11, 15, 25, 29: each poll
    /// started the retried deposit, so its eight backed-off tries were spent in 28 s while an
    /// operator was partitioned, and the wallet gave up: reported as L-8).
    #[test]
    fn a_backed_off_retry_waits_for_its_timer() {
        let mut w = wallet();
        w.queue.push_back((crate::wallet::Command::Deposit { sats: 50_000 }, 3));
        w.retry_armed = true;
        let out = step(&mut w, Micros::from_secs(5), Input::Timer(TimerKind::PollTransfers));
        assert!(queries(&out).is_empty(), "the poll started the backed-off retry: {out:?}");
        let out = step(&mut w, Micros::from_secs(6), Input::Command(crate::wallet::Command::Deposit { sats: 10_000 }));
        assert!(queries(&out).is_empty(), "a new command started the backed-off retry: {out:?}");
        let out = step(&mut w, Micros::from_secs(16), Input::Timer(TimerKind::WalletRetry));
        assert_eq!(queries(&out).len(), 1, "the retry timer starts the queued deposit");
    }

    /// The timer storm the fault model found (`faults/loss.toml --seed 2`): every InProgress
    /// reply re-armed the send's timeout while the earlier one was still pending, each firing
    /// queried and armed again, so timers doubled without bound. Now a reply or a re-arm starts a
    /// new round, and a timeout or reply of an earlier round is ignored.
    #[test]
    fn a_send_in_progress_keeps_one_live_timeout() {
        let mut w = wallet();
        let receiver_key = w.identity_public();
        let (transfer, expiry) = (TransferId([1; 16]), Micros::from_secs(1000));
        let stage = Stage::Start { transfer, expiry, receiver_key };
        w.op = Some((0, Op::Send(Box::new(SendOp { attempt: 0, receiver: WalletId(1), leaf: LeafId([2; 16]), stage, refused: false, device: false }))));
        w.next_req = 1;
        // The start timed out: the wallet asks, under a new round, with one timeout.
        let out = step(&mut w, Micros::from_secs(5), Input::Timer(TimerKind::RequestTimeout(0)));
        let (q, t1) = (queries(&out), timeouts(&out));
        assert_eq!((q.len(), t1.len()), (1, 1));
        assert_eq!(q[0].session, t1[0]);
        // "In progress": ask again later: a new round, one new timeout.
        let reply = Msg::WalletReply { req: q[0], body: Box::new(Ok(WalletReply::Transfer { transfer, outcome: TransferOutcome::InProgress })) };
        let out = step(&mut w, Micros::from_secs(6), Input::Message { from: NodeId::Operator(OperatorId(0)), msg: reply.clone() });
        let t2 = timeouts(&out);
        assert_eq!(t2.len(), 1);
        assert_ne!(t2[0], t1[0]);
        // The first timeout fires while the second is pending: stale, nothing happens.
        let out = step(&mut w, Micros::from_secs(10), Input::Timer(TimerKind::RequestTimeout(t1[0])));
        assert!(out.is_empty(), "a stale timeout acted: {out:?}");
        // A duplicate of the reply is stale too.
        let out = step(&mut w, Micros::from_secs(10), Input::Message { from: NodeId::Operator(OperatorId(0)), msg: reply });
        assert!(out.is_empty(), "a duplicated reply acted: {out:?}");
        // The live timeout asks once more, with exactly one timeout.
        let out = step(&mut w, Micros::from_secs(11), Input::Timer(TimerKind::RequestTimeout(t2[0])));
        assert_eq!((queries(&out).len(), timeouts(&out).len()), (1, 1));
    }
}
