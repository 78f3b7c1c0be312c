//! Wallet side of a deposit (spark-protocol §4.1): get an address, build the deposit tx and the
//! exit txs, co-sign them, finalize, and only then broadcast the deposit (I-14).
use super::{prepare_jobs, Command, LeafState, Op, PendingJob, Wallet, WalletLeaf};
use crate::crypto::identity::{sha256, verify_digest};
use crate::crypto::{curve, PublicKey, SecretKey};
use crate::msg::{FinalizeIntent, NodeSet, RefundSet, WalletReply, WalletRequest};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::operator::deposit_templates;
use crate::tx::{sighash, template};
use crate::types::{KeyshareId, LeafId};
use bitcoin::{Amount, OutPoint, Transaction, TxIn, TxOut, Witness};
use rand_core::RngCore;

/// Deposit attempts before the wallet gives up (see `fail_deposit`).
const DEPOSIT_MAX_ATTEMPTS: u8 = 8;

pub(super) struct DepositOp {
    pub sats: u64,
    pub attempt: u8,
    stage: Stage,
    signing_secret: SecretKey,
    leaf: LeafId,
}

enum Stage {
    Address,
    Sign { deposit_tx: Transaction, verifying_key: PublicKey, jobs: Vec<PendingJob> },
    Finalize { deposit_tx: Transaction, verifying_key: PublicKey, signed: Vec<Transaction> },
}

impl Wallet {
    pub(super) fn start_deposit(&mut self, ctx: &mut Ctx<'_>, sats: u64, attempt: u8) {
        let signing_secret = SecretKey::new(ctx.rng);
        let mut leaf = [0u8; 16];
        ctx.rng.fill_bytes(&mut leaf);
        let identity = self.identity_public();
        let signing_key = signing_secret.public_key(crate::crypto::secp());
        self.begin(Op::Deposit(Box::new(DepositOp { sats, attempt, stage: Stage::Address, signing_secret, leaf: LeafId(leaf) })));
        let to = self.cfg.coordinator;
        self.request(ctx, to, WalletRequest::GenerateDepositAddress { identity, signing_key });
        self.arm_timeout(ctx);
    }

    /// A deposit attempt failed: retry with exponential backoff (2 s, 4 s, … 128 s, about four
    /// minutes in all) rather than the generic 5 quick tries, so a deposit made while the
    /// operators' keyshare pool is still filling (DKG slowed by lost messages) waits for it
    /// instead of giving up.
    pub(super) fn fail_deposit(&mut self, ctx: &mut Ctx<'_>, retry: Option<(Command, u8)>, reason: String) {
        match retry {
            Some((cmd, attempt)) if attempt + 1 < DEPOSIT_MAX_ATTEMPTS => {
                self.queue.push_front((cmd, attempt + 1));
                self.op = None;
                self.waiting.clear();
                // Through `arm_retry`: at most one WalletRetry timer is ever pending.
                self.arm_retry(ctx, super::RETRY_DELAY * (1u64 << attempt));
            }
            _ => self.fail(ctx, None, reason),
        }
    }

    pub(super) fn deposit_reply(&mut self, ctx: &mut Ctx<'_>, session: u64, mut d: DepositOp, body: Result<WalletReply, String>) {
        let retry = Some((Command::Deposit { sats: d.sats }, d.attempt));
        let body = match body {
            Ok(b) => b,
            Err(e) => return self.fail_deposit(ctx, retry, format!("deposit: {e}")),
        };
        let stage = std::mem::replace(&mut d.stage, Stage::Address);
        let next = match (stage, body) {
            (Stage::Address, WalletReply::DepositAddress { keyshare, se_public_key, verifying_key, address_signatures }) => {
                self.deposit_build(ctx, &d, keyshare, se_public_key, verifying_key, &address_signatures)
            }
            (Stage::Sign { deposit_tx, verifying_key, jobs }, WalletReply::Signing { results }) => {
                self.deposit_cosign(ctx, &d, deposit_tx, verifying_key, jobs, results)
            }
            (Stage::Finalize { deposit_tx, verifying_key, signed }, WalletReply::Finalized) => {
                self.deposit_complete(ctx, &d, deposit_tx, verifying_key, signed);
                return self.finish(ctx);
            }
            _ => Err("unexpected reply".to_string()),
        };
        match next {
            Ok((stage, request)) => {
                d.stage = stage;
                self.op = Some((session, Op::Deposit(Box::new(d))));
                self.new_round();
                let to = self.cfg.coordinator;
                self.request(ctx, to, request);
                self.arm_timeout(ctx);
            }
            Err(e) => self.fail_deposit(ctx, retry, format!("deposit: {e}")),
        }
    }

    /// Check the address (Y = P_user + P_SE, every operator signed it), build the deposit tx and
    /// the five exit templates, and ask for the operators' signature shares.
    fn deposit_build(&mut self, ctx: &mut Ctx<'_>, d: &DepositOp, keyshare: KeyshareId, se_public_key: PublicKey, verifying_key: PublicKey, sigs: &std::collections::BTreeMap<crate::types::OperatorId, Vec<u8>>) -> Result<(Stage, WalletRequest), String> {
        let user_key = d.signing_secret.public_key(crate::crypto::secp());
        if curve::point_add(&user_key, &se_public_key) != Some(verifying_key) {
            return Err("address key is not my key + the SE key".into());
        }
        let script = template::p2tr_script(&verifying_key);
        let digest = sha256(&[script.as_bytes()]);
        for (op, pk) in &self.cfg.directory.operators {
            let sig = sigs.get(op).ok_or_else(|| format!("{op} did not sign the address"))?;
            verify_digest(pk, &digest, sig).map_err(|e| format!("{op} address signature: {e}"))?;
        }
        let deposit_tx = self.build_deposit_tx(ctx, d.sats, script)?;
        let (templates, prevouts) = deposit_templates(&deposit_tx, 0, &user_key)?;
        let (jobs, user_jobs) = prepare_jobs(&d.signing_secret, verifying_key, templates, &prevouts, ctx.rng)?;
        let request = WalletRequest::StartDepositTreeCreation {
            identity: self.identity_public(),
            keyshare,
            leaf: d.leaf,
            deposit_tx: deposit_tx.clone(),
            vout: 0,
            jobs: user_jobs,
        };
        Ok((Stage::Sign { deposit_tx, verifying_key, jobs }, request))
    }

    /// Spend one L1 coin: output 0 pays the deposit address, output 1 returns the change. The tx
    /// pays `l1_feerate_sat_vb` on its size (watchtower and fees flow: it used to pay zero). Its
    /// txid is fixed once the exit txs are signed against it, so a refused deposit can only be
    /// broadcast again, never re-feed (a spike above its rate is waited out).
    fn build_deposit_tx(&mut self, ctx: &mut Ctx<'_>, sats: u64, script: bitcoin::ScriptBuf) -> Result<Transaction, String> {
        // Size: one key-path input, the deposit output and a change output of the same script.
        let mut sizing = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn { witness: Witness::from_slice(&[[0u8; 64]]), ..Default::default() }],
            output: vec![TxOut { value: Amount::ZERO, script_pubkey: script.clone() }; 2],
        };
        sizing.input[0].sequence = bitcoin::Sequence::MAX;
        let fee = self.cfg.params.l1_feerate_sat_vb.saturating_mul(sizing.vsize() as u64);
        let idx = self.l1_coins.iter().position(|(_, o)| o.value.to_sat() >= sats + fee).ok_or("no L1 coin large enough")?;
        let (outpoint, coin) = self.l1_coins[idx].clone();
        let mut output = vec![TxOut { value: Amount::from_sat(sats), script_pubkey: script }];
        let change = coin.value.to_sat() - sats - fee;
        if change > 0 {
            output.push(TxOut { value: Amount::from_sat(change), script_pubkey: coin.script_pubkey.clone() });
        }
        let mut tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn { previous_output: outpoint, script_sig: Default::default(), sequence: bitcoin::Sequence::MAX, witness: Witness::new() }],
            output,
        };
        let keypair = bitcoin::secp256k1::Keypair::from_secret_key(crate::crypto::secp(), &self.cfg.l1_key);
        let mut aux = [0u8; 32];
        ctx.rng.fill_bytes(&mut aux);
        let sig = sighash::sign_single_key(&tx, 0, std::slice::from_ref(&coin), &keypair, &aux).map_err(|e| e.to_string())?;
        tx.input[0].witness = sighash::key_spend_witness(&sig);
        Ok(tx)
    }

    fn deposit_cosign(&mut self, ctx: &mut Ctx<'_>, d: &DepositOp, deposit_tx: Transaction, verifying_key: PublicKey, jobs: Vec<PendingJob>, results: Vec<crate::msg::OperatorSigningResult>) -> Result<(Stage, WalletRequest), String> {
        let signed = self.cosign_all(ctx, &d.signing_secret, jobs, results)?;
        let request = WalletRequest::FinalizeNodeSignatures { intent: FinalizeIntent::Creation { leaf: d.leaf }, leaf: d.leaf, signed: signed.clone() };
        Ok((Stage::Finalize { deposit_tx, verifying_key, signed }, request))
    }

    /// The operators stored the tree: keep the leaf and its signed exit, then broadcast.
    fn deposit_complete(&mut self, ctx: &mut Ctx<'_>, d: &DepositOp, deposit_tx: Transaction, verifying_key: PublicKey, signed: Vec<Transaction>) {
        let txid = deposit_tx.compute_txid();
        let [n0, n1, r0, r1, r2]: [Transaction; 5] = match signed.try_into() {
            Ok(a) => a,
            Err(_) => return,
        };
        let refunds = RefundSet { cpfp: r0, direct: r1, direct_from_cpfp: r2 };
        let me = self.identity_public();
        for tx in refunds.as_array() {
            ctx.observe(Observation::RefundSigned { leaf: d.leaf, owner: me, tx: tx.clone() });
        }
        self.leaves.insert(
            d.leaf,
            WalletLeaf {
                signing_secret: d.signing_secret,
                value_sats: d.sats,
                verifying_key,
                deposit_outpoint: OutPoint { txid, vout: 0 },
                nodes: NodeSet { cpfp: n0, direct: n1 },
                refunds,
                state: LeafState::PendingDeposit { deposit_txid: txid },
                ancestors: Vec::new(),
            },
        );
        // Spend the L1 coin; keep the change.
        let spent = deposit_tx.input[0].previous_output;
        self.l1_coins.retain(|(o, _)| *o != spent);
        if let Some(change) = deposit_tx.output.get(1) {
            self.l1_coins.push((OutPoint { txid, vout: 1 }, change.clone()));
        }
        ctx.observe(Observation::DepositBroadcast { wallet: self.cfg.id, leaf: d.leaf, holds_signed_exit: true });
        self.chain.remember_deposit(&deposit_tx);
        ctx.broadcast(deposit_tx);
    }
}
