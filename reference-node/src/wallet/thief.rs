//! A former owner turned thief (spark-protocol §5.1, the statechain trust limit): it asks every
//! operator to co-sign, under the leaf's verifying key Y, a tx spending the leaf's deposit output
//! to itself, using the key shares the operators held while it owned the leaf. Honest operators
//! forgot those shares and refuse; operators that kept them (`keep_old_shares`) answer. With t
//! colluders the signature is valid and the theft lands on chain; with fewer it cannot verify.
//! Every attempt is reported (`Observation::TheftAttempt`) so the checker can tell "blocked"
//! from "money moved".
use super::{scalar_of, Wallet, WalletLeaf};
use crate::crypto::signing::{self, NonceCommitment, SecretNonce, SigningJob};
use crate::crypto::PublicKey;
use crate::msg::{ColludeReply, ColludeRequest, Msg, ReqId};
use crate::node::{Ctx, TimerKind};
use crate::observe::Observation;
use crate::tx::{sighash, template};
use crate::types::{LeafId, NodeId, OperatorId};
use bitcoin::{Amount, Transaction, TxIn, TxOut};
use std::collections::{BTreeMap, BTreeSet};

/// Fee the theft tx pays (it spends the deposit output directly, no CPFP needed).
const THEFT_FEE_SATS: u64 = 1_000;
/// Session ids of theft requests live far from the wallet's operation ids.
const THEFT_SESSION: u64 = u64::MAX - 1;

pub(super) struct Theft {
    leaf: LeafId,
    old: WalletLeaf,
    stage: Stage,
    waiting: BTreeSet<OperatorId>,
    committed: BTreeMap<OperatorId, (NonceCommitment, PublicKey)>,
}

enum Stage {
    Commit,
    Sign(Box<SignStage>),
}

struct SignStage {
    tx: Transaction,
    job: SigningJob,
    nonce: SecretNonce,
    shares: BTreeMap<OperatorId, signing::SignatureShare>,
}

impl Wallet {
    /// `Command::Steal`: go after the first leaf this wallet sent away.
    pub(super) fn start_theft(&mut self, ctx: &mut Ctx<'_>) {
        if self.theft.is_some() {
            return;
        }
        let Some((leaf, old)) = self.sent_away.iter().next().map(|(l, w)| (*l, w.clone())) else {
            return ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: "steal: this wallet never sent a leaf away".into() });
        };
        let user_public_key = old.signing_secret.public_key(crate::crypto::secp());
        let body = ColludeRequest::Commit { verifying_key: old.verifying_key, user_public_key };
        let waiting: BTreeSet<OperatorId> = self.cfg.params.operator_ids().collect();
        for op in &waiting {
            ctx.send(NodeId::Operator(*op), Msg::Collude { req: ReqId { session: THEFT_SESSION, phase: 0 }, body: Box::new(body.clone()) });
        }
        self.theft = Some(Theft { leaf, old, stage: Stage::Commit, waiting, committed: BTreeMap::new() });
        ctx.set_timer(self.cfg.params.request_timeout, TimerKind::TheftTimeout);
    }

    pub(super) fn on_collude_reply(&mut self, ctx: &mut Ctx<'_>, from: NodeId, body: Result<ColludeReply, String>) {
        let NodeId::Operator(op) = from else { return };
        let Some(t) = self.theft.as_mut() else { return };
        if !t.waiting.remove(&op) {
            return;
        }
        match (&mut t.stage, body) {
            (Stage::Commit, Ok(ColludeReply::Committed { commitment, public_share })) => {
                t.committed.insert(op, (commitment, public_share));
            }
            (Stage::Sign(sign), Ok(ColludeReply::Share(s))) => {
                sign.shares.insert(op, s);
            }
            _ => {}
        }
        if t.waiting.is_empty() {
            self.theft_next(ctx);
        }
    }

    pub(super) fn on_theft_timeout(&mut self, ctx: &mut Ctx<'_>) {
        if self.theft.is_some() {
            self.theft_next(ctx);
        }
    }

    fn theft_next(&mut self, ctx: &mut Ctx<'_>) {
        let Some(mut t) = self.theft.take() else { return };
        t.waiting.clear();
        match t.stage {
            Stage::Commit => match self.theft_sign_request(ctx, &t) {
                Ok((tx, job, nonce)) => {
                    t.waiting = job.operator_commitments.keys().copied().collect();
                    for op in &t.waiting {
                        let body = ColludeRequest::Sign { job: job.clone() };
                        ctx.send(NodeId::Operator(*op), Msg::Collude { req: ReqId { session: THEFT_SESSION, phase: 1 }, body: Box::new(body) });
                    }
                    t.stage = Stage::Sign(Box::new(SignStage { tx, job, nonce, shares: BTreeMap::new() }));
                    self.theft = Some(t);
                    ctx.set_timer(self.cfg.params.request_timeout, TimerKind::TheftTimeout);
                }
                Err(e) => self.theft_done(ctx, &t, Err(e)),
            },
            Stage::Sign(ref sign) => {
                let SignStage { tx, job, nonce, shares } = &**sign;
                let public: BTreeMap<OperatorId, PublicKey> = t.committed.iter().map(|(o, (_, p))| (*o, *p)).collect();
                let outcome = signing::sign_as_user(job, &t.old.signing_secret, nonce)
                    .and_then(|user_share| signing::aggregate(job, shares, &user_share, &public))
                    .map_err(|e| format!("the colluders' old shares do not make a valid signature: {e}"))
                    .map(|sig| {
                        let mut tx = tx.clone();
                        tx.input[0].witness = sighash::key_spend_witness(&sig);
                        tx
                    });
                match outcome {
                    Ok(tx) => {
                        let txid = tx.compute_txid();
                        ctx.broadcast(tx);
                        self.theft_done(ctx, &t, Ok(bitcoin::hashes::Hash::to_byte_array(txid)));
                    }
                    Err(e) => self.theft_done(ctx, &t, Err(e)),
                }
            }
        }
    }

    /// The spend of the deposit output to this wallet's L1 key, and the job t colluders (or all
    /// that answered, if fewer) must sign.
    fn theft_sign_request(&self, ctx: &mut Ctx<'_>, t: &Theft) -> Result<(Transaction, SigningJob, SecretNonce), String> {
        if t.committed.is_empty() {
            return Err("no operator would co-sign: every one forgot the old share".into());
        }
        let signers: BTreeMap<OperatorId, NonceCommitment> = t.committed.iter().take(usize::from(self.cfg.params.threshold)).map(|(o, (c, _))| (*o, c.clone())).collect();
        let value = Amount::from_sat(t.old.value_sats);
        let tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn { previous_output: t.old.deposit_outpoint, ..Default::default() }],
            output: vec![TxOut { value: value.checked_sub(Amount::from_sat(THEFT_FEE_SATS)).ok_or("leaf too small to steal")?, script_pubkey: template::p2tr_script(&self.l1_key_public()) }],
        };
        let prevout = TxOut { value, script_pubkey: template::p2tr_script(&t.old.verifying_key) };
        let message = sighash::key_spend_sighash(&tx, 0, &[prevout]).map_err(|e| e.to_string())?;
        let (nonce, user_commitment) = signing::commit(&scalar_of(&t.old.signing_secret), ctx.rng);
        let job = SigningJob {
            message,
            verifying_key: t.old.verifying_key,
            user_public_key: t.old.signing_secret.public_key(crate::crypto::secp()),
            operator_commitments: signers,
            user_commitment,
        };
        Ok((tx, job, nonce))
    }

    fn theft_done(&mut self, ctx: &mut Ctx<'_>, t: &Theft, outcome: Result<[u8; 32], String>) {
        let colluders = t.committed.keys().copied().collect();
        ctx.observe(Observation::TheftAttempt { wallet: self.cfg.id, leaf: t.leaf, colluders, outcome });
        self.sent_away.remove(&t.leaf);
    }
}
