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
use std::collections::BTreeMap;

pub(super) struct SendOp {
    attempt: u8,
    receiver: WalletId,
    leaf: LeafId,
    stage: Stage,
}

enum Stage {
    Commitments,
    Start { transfer: TransferId, expiry: Micros, receiver_key: PublicKey },
    Query { transfer: TransferId, expiry: Micros, receiver_key: PublicKey },
}

impl Wallet {
    pub(super) fn start_send(&mut self, ctx: &mut Ctx<'_>, receiver: WalletId, attempt: u8) {
        let p = &self.cfg.params;
        let leaf = self.leaves.iter().find(|(_, l)| {
            l.state == LeafState::Available && l.refunds.sequences().is_ok_and(|(cur, _)| p.next_refund_sequences(cur).is_ok())
        });
        let Some((leaf, _)) = leaf else {
            ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: "send: no available leaf with timelock left".into() });
            return self.start_next(ctx);
        };
        let leaf = *leaf;
        self.begin(Op::Send(Box::new(SendOp { attempt, receiver, leaf, stage: Stage::Commitments })));
        let to = self.cfg.coordinator;
        self.request(ctx, to, WalletRequest::GetSigningCommitments { leaf, count: 3 });
        self.arm_timeout(ctx);
    }

    pub(super) fn send_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: SendOp, body: Result<WalletReply, String>) {
        let retry = Some((Command::Send { receiver: s.receiver }, s.attempt));
        match (&s.stage, body) {
            (Stage::Commitments, Ok(WalletReply::SigningCommitments { commitments })) => match self.build_transfer(ctx, &s, commitments) {
                Ok((transfer, expiry, receiver_key, request)) => {
                    if let Some(l) = self.leaves.get_mut(&s.leaf) {
                        l.state = LeafState::Sending(transfer);
                    }
                    s.stage = Stage::Start { transfer, expiry, receiver_key };
                    self.op = Some((session, Op::Send(Box::new(s))));
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
                    TransferOutcome::Returned => self.send_returned(ctx, s.leaf, transfer, retry),
                    // Past expiry, "unknown" is final: the coordinator refuses an expired package,
                    // and one it had accepted would read InProgress (its PendingSend is durable).
                    TransferOutcome::Unknown if ctx.now > expiry => self.send_returned(ctx, s.leaf, transfer, retry),
                    TransferOutcome::InProgress | TransferOutcome::Unknown => {
                        // Ask again after a while (handled like a timeout of this stage).
                        self.op = Some((session, Op::Send(Box::new(s))));
                        self.waiting.clear();
                        self.arm_timeout(ctx);
                    }
                }
            }
            // An error reply means the coordinator cancelled the transfer durably.
            (Stage::Start { transfer, .. }, Err(e)) => {
                let transfer = *transfer;
                ctx.observe(Observation::Rejected { what: format!("{} send {transfer}", self.cfg.id), reason: e });
                self.send_returned(ctx, s.leaf, transfer, retry);
            }
            (_, _) => {
                self.op = Some((session, Op::Send(Box::new(s))));
                self.waiting.clear();
                self.arm_timeout(ctx);
            }
        }
    }

    /// No answer: a send that may have reached the coordinator is never assumed lost — ask.
    pub(super) fn send_timeout(&mut self, ctx: &mut Ctx<'_>, session: u64, mut s: SendOp) {
        let retry = Some((Command::Send { receiver: s.receiver }, s.attempt));
        match s.stage {
            Stage::Commitments => self.fail(ctx, retry, "send: commitments timed out".into()),
            Stage::Start { transfer, expiry, receiver_key } | Stage::Query { transfer, expiry, receiver_key } => {
                s.stage = Stage::Query { transfer, expiry, receiver_key };
                self.op = Some((session, Op::Send(Box::new(s))));
                self.waiting.clear();
                let to = self.cfg.coordinator;
                self.request(ctx, to, WalletRequest::QueryTransfer { transfer });
                self.arm_timeout(ctx);
            }
        }
    }

    fn send_done(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId, transfer: TransferId, receiver: PublicKey) {
        if let Some(l) = self.leaves.remove(&leaf) {
            ctx.observe(Observation::TransferSent { transfer, sender: self.cfg.id, receiver, leaf, value_sats: l.value_sats });
            self.sent_away.insert(leaf, l);
        }
        self.finish(ctx);
    }

    fn send_returned(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId, transfer: TransferId, retry: Option<(Command, u8)>) {
        if let Some(l) = self.leaves.get_mut(&leaf) {
            l.state = LeafState::Available;
        }
        ctx.observe(Observation::TransferReturned { transfer, sender: self.cfg.id });
        self.fail(ctx, retry, format!("send {transfer} returned"));
    }

    /// Build the intermediate refunds, sign our shares against the pre-fetched commitments, and
    /// split the key tweak δ = sk_old − e among the operators.
    fn build_transfer(&self, ctx: &mut Ctx<'_>, s: &SendOp, commitments: Vec<BTreeMap<OperatorId, NonceCommitment>>) -> Result<(TransferId, Micros, PublicKey, WalletRequest), String> {
        let p = &self.cfg.params;
        let leaf = self.leaves.get(&s.leaf).ok_or("leaf vanished")?;
        let receiver_key = *self.cfg.directory.wallets.get(&s.receiver).ok_or("unknown receiver")?;
        let (current, _) = leaf.refunds.sequences()?;
        let (seq, direct) = p.next_refund_sequences(current).map_err(|e| e.to_string())?;
        let txs = leaf.nodes.refunds_to(&receiver_key, seq, direct)?.into_array();
        let prevouts = leaf.nodes.refund_prevouts()?;
        if commitments.len() != 3 {
            return Err(format!("{} commitment sets for 3 refunds", commitments.len()));
        }
        let user_key = leaf.signing_secret.public_key(crate::crypto::secp());
        let mut refunds = Vec::new();
        for ((tx, prev), ops) in txs.into_iter().zip(prevouts).zip(commitments) {
            let (nonce, user_commitment) = signing::commit(&scalar_of(&leaf.signing_secret), ctx.rng);
            let message = sighash::key_spend_sighash(&tx, 0, &prev).map_err(|e| e.to_string())?;
            let job = SigningJob { message, verifying_key: leaf.verifying_key, user_public_key: user_key, operator_commitments: ops.clone(), user_commitment: user_commitment.clone() };
            let user_share = signing::sign_as_user(&job, &leaf.signing_secret, &nonce).map_err(|e| e.to_string())?;
            ctx.observe(Observation::NonceUsed { signer: self.cfg.id.to_string(), commitment: sha256(&[&user_commitment.0]), message });
            refunds.push(UserSignedJob { tx, user_commitment, user_share, operator_commitments: ops });
        }
        let mut id = [0u8; 16];
        ctx.rng.fill_bytes(&mut id);
        let transfer = TransferId(id);
        let key_tweak_package = self.key_tweaks(ctx, s.leaf, transfer, &leaf.signing_secret, &receiver_key)?;
        let signature = sign_digest(&self.cfg.identity, &transfer_package_digest(transfer, &key_tweak_package));
        let package = TransferPackage { leaves: vec![TransferLeafPackage { leaf: s.leaf, refunds }], key_tweak_package, signature };
        let expiry = ctx.now + p.transfer_expiry;
        let request = WalletRequest::StartTransfer { transfer, sender: self.identity_public(), receiver: receiver_key, expiry, package };
        Ok((transfer, expiry, receiver_key, request))
    }

    /// Per operator: ECIES(operator identity, its Feldman share of δ, the public share tweaks,
    /// ECIES(receiver, e), and our signature binding them to the leaf and transfer).
    fn key_tweaks(&self, ctx: &mut Ctx<'_>, leaf: LeafId, transfer: TransferId, old: &crate::crypto::SecretKey, receiver: &PublicKey) -> Result<BTreeMap<OperatorId, Vec<u8>>, String> {
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
