//! Cooperative exit, SSP side (spark-protocol §3.7, §4.5). On `requestCoopExit` the SSP builds,
//! from its own L1 coin, the exit tx (output 0 pays the user's withdrawal, output 1 funds the
//! connectors, output 2 its change) and the connector tx spending exit:1 (output 0 the leaf's
//! connector; the last output is not a connector). It broadcasts neither yet. On
//! `completeCoopExit` it checks the connector refunds the operators signed for it, signs their
//! connector input, and broadcasts the exit and connector txs.
//!
//! Then it waits: the operators settle the user's key tweak once the exit tx has 6 confirmations
//! and the SSP claims the leaf like any transfer. If that has not happened well after the 6th
//! confirmation (the user stalled and never released its key tweak), the SSP exits the leaf on
//! L1 with its connector refund, whose CSV is 100 below the user's refund.
//!
//! `CoopExitFault::NeverBroadcast` scripts the SSP that never pays: it keeps the signed refunds
//! and, once the user's node tx confirms, tries its connector refund — which the L1 refuses,
//! because the connector only exists if the exit tx (paying the user) does.
use super::{LeafState, Wallet, WalletLeaf};
use crate::chain::BlockInfo;
use crate::msg::ssp::{CoopExitFault, CoopExitLeaf};
use crate::msg::{RefundSet, SspReply, SspService};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::operator::coop_exit::COOP_EXIT_CONFIRMATIONS;
use crate::tx::{sighash, template};
use crate::types::{LeafId, NodeId, TransferId, WalletId};
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use rand_core::RngCore;

/// Value of each connector output and of the connector tx's last output (P2TR dust limit).
pub const CONNECTOR_SATS: u64 = 330;
/// Blocks past the 6th confirmation the SSP waits for its claim before it exits on L1.
pub const CLAIM_GRACE_BLOCKS: u32 = 12;
/// Bound on the exits one SSP keeps open.
const MAX_OPEN_EXITS: usize = 10_000;

#[derive(Clone, Debug)]
pub struct SspExit {
    user: WalletId,
    leaf: LeafId,
    exit_tx: Transaction,
    connector_tx: Transaction,
    stage: SspExitStage,
}

#[derive(Clone, Debug)]
enum SspExitStage {
    /// The txs are built, the user has not completed.
    Offered,
    /// Exit and connector txs broadcast; `confirmed` = height of the exit tx's block.
    Broadcast { leaf: Box<CoopExitLeaf>, confirmed: Option<u32>, fallback: bool },
    /// Misbehaving: holds the refunds, never broadcasts.
    Withheld { leaf: Box<CoopExitLeaf>, tried: bool },
}

impl SspExit {
    /// The SSP still owes work: a broadcast exit whose leaf it has not claimed or exited yet.
    pub(super) fn pending(&self) -> bool {
        matches!(self.stage, SspExitStage::Broadcast { fallback: false, .. })
    }
}

impl Wallet {
    /// `requestCoopExit`: build (not broadcast) the exit and connector txs for one leaf.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ssp_coop_exit_offer(&mut self, ctx: &mut Ctx<'_>, from: NodeId, exit_id: TransferId, leaf: LeafId, value_sats: u64, fee_sats: u64, withdrawal: ScriptBuf) -> Result<SspReply, String> {
        let NodeId::Wallet(user) = from else { return Err("not a wallet".into()) };
        if let Some(e) = self.coop.ssp.get(&exit_id) {
            return match e.stage {
                SspExitStage::Offered if e.user == user && e.leaf == leaf => Ok(SspReply::CoopExit { exit_id, exit_txid: e.exit_tx.compute_txid(), connector_tx: e.connector_tx.clone() }),
                _ => Err(format!("coop exit {exit_id} already exists")),
            };
        }
        if self.coop.ssp.len() >= MAX_OPEN_EXITS {
            return Err("too many open coop exits".into());
        }
        let quoted = self.cfg.params.ssp_fees.quote(SspService::CoopExit, value_sats)?;
        if fee_sats != quoted {
            return Err(format!("fee {fee_sats} sats does not match the quote {quoted} sats"));
        }
        let payout = value_sats - fee_sats;
        if payout < CONNECTOR_SATS {
            return Err(format!("payout {payout} sats is below dust"));
        }
        let (exit_tx, connector_tx) = self.build_exit_txs(ctx, payout, withdrawal)?;
        let exit_txid = exit_tx.compute_txid();
        self.coop.ssp.insert(exit_id, SspExit { user, leaf, exit_tx, connector_tx: connector_tx.clone(), stage: SspExitStage::Offered });
        Ok(SspReply::CoopExit { exit_id, exit_txid, connector_tx })
    }

    /// Exit tx from one L1 coin (reserved from now on) and the connector tx spending exit:1.
    /// Both pay the SSP's feerate (`l1_feerate_sat_vb`, as deposits do) on their signed size:
    /// neither has a §3.2 template (those are the leaf's txs; §3.7 only fixes the connector
    /// layout), so they are plain v2 txs that enter the mempool on their own fee. The connector
    /// tx's fee is carried by exit:1, the exit tx's by the SSP's change.
    fn build_exit_txs(&mut self, ctx: &mut Ctx<'_>, payout: u64, withdrawal: ScriptBuf) -> Result<(Transaction, Transaction), String> {
        let rate = self.cfg.params.l1_feerate_sat_vb;
        let (outpoint, mine) = match self.l1_coins.first() {
            Some((o, c)) => (*o, c.script_pubkey.clone()),
            None => return Err("no L1 coin for the payout".into()),
        };
        let connector = TxOut { value: Amount::from_sat(CONNECTOR_SATS), script_pubkey: mine.clone() };
        let connector_fee = key_spend_fee(rate, &spend(vec![outpoint], vec![connector.clone(), connector.clone()]));
        let funding = 2 * CONNECTOR_SATS + connector_fee;
        // Sized with a change output (a coin that leaves no change overpays by one output).
        let outs = |change: u64| {
            let mut v = vec![TxOut { value: Amount::from_sat(payout), script_pubkey: withdrawal.clone() }, TxOut { value: Amount::from_sat(funding), script_pubkey: mine.clone() }];
            if change > 0 {
                v.push(TxOut { value: Amount::from_sat(change), script_pubkey: mine.clone() });
            }
            v
        };
        let exit_fee = key_spend_fee(rate, &spend(vec![outpoint], outs(1)));
        let need = payout + funding + exit_fee;
        let idx = self.l1_coins.iter().position(|(_, o)| o.value.to_sat() >= need).ok_or_else(|| format!("no L1 coin of {need} sats for the payout"))?;
        let (outpoint, coin) = self.l1_coins.remove(idx);
        let change = coin.value.to_sat() - need;
        let mut exit_tx = spend(vec![outpoint], outs(change));
        self.sign_l1_input(ctx, &mut exit_tx, 0, &[coin])?;
        let exit_txid = exit_tx.compute_txid();
        if change > 0 {
            self.l1_coins.push((OutPoint { txid: exit_txid, vout: 2 }, exit_tx.output[2].clone()));
        }
        let funding_out = exit_tx.output[1].clone();
        let mut connector_tx = spend(vec![OutPoint { txid: exit_txid, vout: 1 }], vec![connector.clone(), connector]);
        self.sign_l1_input(ctx, &mut connector_tx, 0, &[funding_out])?;
        Ok((exit_tx, connector_tx))
    }

    /// Key-path signature of input `input` by the SSP's L1 key.
    fn sign_l1_input(&self, ctx: &mut Ctx<'_>, tx: &mut Transaction, input: usize, prevouts: &[TxOut]) -> Result<(), String> {
        let keypair = bitcoin::secp256k1::Keypair::from_secret_key(crate::crypto::secp(), &self.cfg.l1_key);
        let mut aux = [0u8; 32];
        ctx.rng.fill_bytes(&mut aux);
        let sig = sighash::sign_single_key(tx, input, prevouts, &keypair, &aux).map_err(|e| e.to_string())?;
        tx.input[input].witness = sighash::key_spend_witness(&sig);
        Ok(())
    }

    /// `completeCoopExit`: the connector refunds must pay the SSP, spend the leaf's node output
    /// and our connector, and carry the leaf key's signature; then (honest SSP) broadcast.
    pub(super) fn ssp_coop_exit_complete(&mut self, ctx: &mut Ctx<'_>, from: NodeId, exit_id: TransferId, mut leaf: CoopExitLeaf) -> Result<SspReply, String> {
        let NodeId::Wallet(user) = from else { return Err("not a wallet".into()) };
        let e = self.coop.ssp.get(&exit_id).ok_or_else(|| format!("unknown coop exit {exit_id}"))?;
        if e.user != user || e.leaf != leaf.leaf {
            return Err(format!("coop exit {exit_id} belongs to another user or leaf"));
        }
        if !matches!(e.stage, SspExitStage::Offered) {
            return Ok(SspReply::CoopExitCompleted { exit_id });
        }
        let connector = OutPoint { txid: e.connector_tx.compute_txid(), vout: 0 };
        let connector_out = e.connector_tx.output[0].clone();
        let (exit_tx, connector_tx) = (e.exit_tx.clone(), e.connector_tx.clone());
        let me = template::p2tr_script(&self.identity_public());
        let prevouts = leaf.nodes.refund_prevouts()?.map(|mut v| {
            v.push(connector_out.clone());
            v
        });
        let mut signed = Vec::new();
        for (i, tx) in leaf.connector_refunds.clone().into_array().into_iter().enumerate() {
            if tx.input.len() != 2 || tx.input[1].previous_output != connector {
                return Err(format!("refund {i} does not spend our connector {connector}"));
            }
            if tx.output.first().map(|o| &o.script_pubkey) != Some(&me) {
                return Err(format!("refund {i} does not pay the SSP"));
            }
            let msg = sighash::key_spend_sighash(&tx, 0, &prevouts[i]).map_err(|e| e.to_string())?;
            let sig = crate::operator::witness_signature(&tx, 0)?;
            if !crate::crypto::signing::verify(&leaf.verifying_key, &msg, &sig) {
                return Err(format!("refund {i}: the leaf key's signature does not verify"));
            }
            let mut tx = tx;
            self.sign_l1_input(ctx, &mut tx, 1, &prevouts[i])?;
            signed.push(tx);
        }
        leaf.connector_refunds = RefundSet::from_vec(signed).ok_or("expected 3 refunds")?;
        let withhold = self.cfg.params.coop_exit_fault == Some(CoopExitFault::NeverBroadcast);
        let stage = if withhold {
            SspExitStage::Withheld { leaf: Box::new(leaf), tried: false }
        } else {
            ctx.broadcast(exit_tx);
            ctx.broadcast(connector_tx);
            SspExitStage::Broadcast { leaf: Box::new(leaf), confirmed: None, fallback: false }
        };
        if let Some(e) = self.coop.ssp.get_mut(&exit_id) {
            e.stage = stage;
        }
        Ok(SspReply::CoopExitCompleted { exit_id })
    }

    /// The SSP's chain watch: exit tx confirmations (and their loss in a reorg, with a
    /// rebroadcast), the fallback exit when the claim never comes, and the misbehaving SSP's
    /// attempt at a refund without the connector.
    pub(super) fn ssp_coop_exit_on_block(&mut self, ctx: &mut Ctx<'_>, block: &BlockInfo) {
        if self.coop.ssp.is_empty() {
            return;
        }
        let txids: std::collections::BTreeSet<Txid> = block.txs.iter().map(|t| t.compute_txid()).collect();
        let mut fallback = Vec::new();
        for e in self.coop.ssp.values_mut() {
            let exit_txid = e.exit_tx.compute_txid();
            match &mut e.stage {
                SspExitStage::Offered => {}
                SspExitStage::Broadcast { leaf, confirmed, fallback: started } => {
                    if txids.contains(&exit_txid) {
                        *confirmed = Some(block.height);
                    } else if confirmed.is_some_and(|h| h >= block.height) {
                        // A reorg replaced the exit tx's block: broadcast again.
                        *confirmed = None;
                        ctx.broadcast(e.exit_tx.clone());
                        ctx.broadcast(e.connector_tx.clone());
                    }
                    let claimed = self.leaves.contains_key(&e.leaf);
                    let late = confirmed.is_some_and(|h| block.height + 1 >= h + COOP_EXIT_CONFIRMATIONS + CLAIM_GRACE_BLOCKS);
                    if !*started && (claimed || late) {
                        *started = true;
                        if !claimed {
                            fallback.push((**leaf).clone());
                        }
                    }
                }
                SspExitStage::Withheld { leaf, tried } => {
                    if !*tried && txids.contains(&leaf.nodes.cpfp.compute_txid()) {
                        *tried = true;
                        ctx.observe(Observation::Rejected { what: format!("{} coop exit", self.cfg.id), reason: format!("SSP tries its connector refund for leaf {} without having paid", leaf.leaf) });
                        ctx.broadcast(leaf.connector_refunds.cpfp.clone());
                    }
                }
            }
        }
        for leaf in fallback {
            self.ssp_exit_with_connector_refund(ctx, leaf);
        }
    }

    /// The user never released its key tweak: exit the leaf on L1 with the connector refund.
    fn ssp_exit_with_connector_refund(&mut self, ctx: &mut Ctx<'_>, leaf: CoopExitLeaf) {
        let id = leaf.leaf;
        ctx.observe(Observation::Rejected { what: format!("{} coop exit", self.cfg.id), reason: format!("no claim for leaf {id} after the exit tx confirmed: exiting with the connector refund") });
        // No RefundSigned here: I-6 orders refunds by the operators' owner, which stays the user
        // (its key tweak was never applied); the SSP's connector refund is safe to use only
        // because the exit tx that pays the user is confirmed (L-5 checks that side).
        // The SSP holds no key share of the leaf: its unilateral exit needs only signed txs.
        let signing_secret = self.cfg.l1_key;
        self.leaves.insert(
            id,
            WalletLeaf {
                signing_secret,
                value_sats: leaf.value_sats,
                verifying_key: leaf.verifying_key,
                deposit_outpoint: leaf.deposit_outpoint,
                ancestors: leaf.ancestors,
                nodes: leaf.nodes,
                refunds: leaf.connector_refunds,
                state: LeafState::Available,
            },
        );
        self.start_exit_of(ctx, id);
    }
}

/// The fee at `rate` sat/vB for `tx` once every input carries a key-path signature.
fn key_spend_fee(rate: u64, tx: &Transaction) -> u64 {
    let mut signed = tx.clone();
    for input in &mut signed.input {
        input.witness = Witness::from_slice(&[[0u8; 64]]);
    }
    rate.saturating_mul(signed.vsize() as u64)
}

fn spend(inputs: Vec<OutPoint>, output: Vec<TxOut>) -> Transaction {
    Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: inputs.into_iter().map(|previous_output| TxIn { previous_output, script_sig: ScriptBuf::new(), sequence: Sequence::MAX, witness: Witness::new() }).collect(),
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Chain, ChainReject};
    use crate::params::{Directory, Params};
    use crate::types::OperatorId;
    use crate::wallet::WalletConfig;
    use rand_core::SeedableRng;
    use std::sync::Arc;

    /// An SSP holding one funded L1 coin of `coin` sats, paying `rate` sat/vB.
    fn ssp(chain: &mut Chain, rate: u64, coin: u64) -> Wallet {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let (identity, l1_key) = (crate::crypto::SecretKey::new(&mut rng), crate::crypto::SecretKey::new(&mut rng));
        let mut params = Params::new(3, 2);
        params.l1_feerate_sat_vb = rate;
        let mut w = Wallet::new(WalletConfig { id: WalletId(9), identity, l1_key, coordinator: OperatorId(0), params: Arc::new(params), directory: Arc::new(Directory::default()) });
        let script = template::p2tr_script(&w.l1_key_public());
        let outpoint = chain.fund(script.clone(), Amount::from_sat(coin));
        w.add_l1_coin(outpoint, TxOut { value: Amount::from_sat(coin), script_pubkey: script });
        w
    }

    fn build(w: &mut Wallet, payout: u64) -> Result<(Transaction, Transaction), String> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let mut ctx = Ctx::new(crate::types::Micros::ZERO, NodeId::Wallet(w.id()), &mut rng);
        w.build_exit_txs(&mut ctx, payout, ScriptBuf::new_op_return([1u8; 4]))
    }

    #[test]
    fn exit_and_connector_txs_pay_the_ssp_feerate_and_enter_a_mempool_at_that_floor() {
        let mut chain = Chain::new();
        let mut w = ssp(&mut chain, 5, 1_000_000);
        let (exit_tx, connector_tx) = build(&mut w, 98_500).expect("built");
        // The connector tx's fee is what exit:1 carries above its two connectors.
        let connector_fee = exit_tx.output[1].value.to_sat() - 2 * CONNECTOR_SATS;
        assert!(connector_fee >= 5 * connector_tx.vsize() as u64, "connector fee {connector_fee} for {} vB", connector_tx.vsize());
        let exit_fee = 1_000_000 - exit_tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
        assert!(exit_fee >= 5 * exit_tx.vsize() as u64, "exit fee {exit_fee} for {} vB", exit_tx.vsize());
        assert_eq!(exit_tx.output[0].value.to_sat(), 98_500, "the user's payout is not touched by fees");
        chain.set_min_feerate(5);
        chain.submit(exit_tx).expect("the exit tx clears the floor");
        chain.submit(connector_tx).expect("the connector tx clears the floor");
    }

    #[test]
    fn a_zero_rate_builds_zero_fee_txs_that_a_fee_floor_refuses() {
        let mut chain = Chain::new();
        let mut w = ssp(&mut chain, 0, 1_000_000);
        let (exit_tx, _) = build(&mut w, 98_500).expect("built");
        chain.set_min_feerate(1);
        assert!(matches!(chain.submit(exit_tx), Err(ChainReject::FeeTooLow { .. })));
    }

    #[test]
    fn a_coin_that_cannot_cover_the_fees_is_not_used() {
        let mut chain = Chain::new();
        let mut w = ssp(&mut chain, 5, 98_500 + 2 * CONNECTOR_SATS);
        assert!(build(&mut w, 98_500).is_err_and(|e| e.contains("no L1 coin")));
    }
}
