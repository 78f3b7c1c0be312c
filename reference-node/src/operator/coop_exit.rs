//! Cooperative exit, operator side (spark-protocol §3.7, §4.5): `cooperative_exit_v2` is a
//! transfer to the SSP whose refunds carry a second input, the leaf's connector output of the
//! SSP's connector tx (which spends the exit tx paying the user). The send machinery of
//! `send.rs` validates, co-signs and replicates it; this module adds what differs:
//! - the expected refunds are connector refunds (two inputs, CSV decremented) and the sighash
//!   commits to both prevouts;
//! - the coordinator refuses a coop exit without its connector tx (2026, breez#587);
//! - the sender's key tweak waits: it is applied only once the user released it
//!   (`FinalizeCoopExit`) and the chain watcher saw the exit tx with
//!   [`COOP_EXIT_CONFIRMATIONS`] confirmations — so the SSP can claim only then;
//! - a coop exit whose exit tx never confirmed is cancelled at its expiry (the SSP never
//!   broadcast: the leaf is the user's again); one whose exit tx confirmed is never cancelled,
//!   and if the SSP exits its leaves on L1 (the user stalled) the transfer ends COMPLETED.
use super::store::{Db, LeafRow, LeafStatus, TransferStatus};
use super::{Operator, WalletCall};
use crate::chain::BlockInfo;
use crate::crypto::PublicKey;
use crate::msg::{GossipBody, InternalReply, RefundSet, TransferInit, TransferOutcome, TransferPackage, WalletReply};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::tx::connector::connector_refund_txs;
use crate::tx::template::RefundTxs;
use crate::types::{Micros, NodeId, OperatorId, TransferId};
use bitcoin::{BlockHash, OutPoint, Transaction, TxOut, Txid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// spark-protocol §3.3 `CoopExitConfirmationThreshold`: the exit tx must be this deep before
/// the key tweak (and so the SSP's claim).
pub const COOP_EXIT_CONFIRMATIONS: u32 = 6;

/// The `CooperativeExit` row of a coop-exit transfer (durable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoopExitRow {
    pub exit_txid: Txid,
    /// Input 0 spends the exit tx; output i is the connector of the transfer's i-th leaf; the
    /// last output is not a connector (§3.7).
    pub connector_tx: Transaction,
    /// Coordinator: the user released its key tweak.
    pub finalized: bool,
    /// The block that confirmed the exit tx on the branch this watcher follows.
    pub confirmed: Option<(u32, BlockHash)>,
    /// The exit tx was seen confirmed at least once: the user may be paid, so the transfer is
    /// never cancelled from then on (a reorg can take the tx away only for a while).
    pub ever_confirmed: bool,
    /// The transfer was closed COMPLETED without any key tweak: the user never released it and
    /// the SSP exited the leaf on L1 with its connector refund.
    #[serde(default)]
    pub closed_on_chain: bool,
}

/// The connector tx spends the exit tx and has one connector per leaf plus a last output.
pub fn check_connector_tx(exit_txid: &Txid, connector_tx: &Transaction, leaves: usize) -> Result<(), String> {
    match connector_tx.input.as_slice() {
        [i] if i.previous_output.txid == *exit_txid => {}
        _ => return Err(format!("connector tx must spend exactly the exit tx {exit_txid}")),
    }
    if connector_tx.output.len() != leaves + 1 {
        return Err(format!("connector tx has {} outputs for {leaves} leaves (expected one connector per leaf and a last output)", connector_tx.output.len()));
    }
    Ok(())
}

/// The `index`-th leaf's connector outpoint and the output it spends.
fn connector_of(row: &CoopExitRow, index: usize) -> Result<(OutPoint, TxOut), String> {
    if index + 1 >= row.connector_tx.output.len() {
        return Err(format!("no connector output for leaf {index}"));
    }
    let out = row.connector_tx.output[index].clone();
    Ok((OutPoint { txid: row.connector_tx.compute_txid(), vout: index as u32 }, out))
}

/// A leaf's expected refunds to `receiver` with the connector `connector` as input 1 (spark-protocol
/// §3.2 "Coop-exit (connector) refund"), built with the SDK's template.
pub fn connector_refunds(refunds: RefundSet, connector: OutPoint) -> Result<RefundSet, String> {
    let with = connector_refund_txs(RefundTxs { cpfp: refunds.cpfp, direct: Some(refunds.direct), direct_from_cpfp: refunds.direct_from_cpfp }, connector);
    Ok(RefundSet { cpfp: with.cpfp, direct: with.direct.ok_or("no direct refund")?, direct_from_cpfp: with.direct_from_cpfp })
}

impl Operator {
    /// The refunds the `index`-th leaf of `transfer` must carry and, per refund, the outputs its
    /// inputs spend: the ordinary send refunds, or for a coop exit the connector refunds.
    pub(super) fn send_expectations(&self, db: &Db, transfer: TransferId, index: usize, leaf: &LeafRow, receiver: &PublicKey) -> Result<(RefundSet, [Vec<TxOut>; 3]), String> {
        let prevouts = leaf.nodes.refund_prevouts()?;
        // Lightning send: HTLC refunds for the request's hash (preimage_send.rs).
        if let Some(hash) = super::preimage_send::send_hash_of(db, transfer) {
            let sender = db.transfers.get(&transfer).map(|t| t.sender).unwrap_or(leaf.owner_identity);
            return Ok((super::preimage_send::expected_htlc_refunds(&leaf.nodes, &leaf.refunds, &hash, receiver, &sender)?, prevouts));
        }
        let refunds = self.expected_send_refunds(leaf, receiver)?;
        let Some(row) = db.coop_exits.get(&transfer) else { return Ok((refunds, prevouts)) };
        let (outpoint, out) = connector_of(row, index)?;
        let prevouts = prevouts.map(|mut p| {
            p.push(out.clone());
            p
        });
        Ok((connector_refunds(refunds, outpoint)?, prevouts))
    }

    /// Coordinator: `cooperative_exit_v2`. A retry of a coop exit already recorded is answered
    /// from the durable transfer (its signed refunds, or "returned").
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cooperative_exit(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, transfer: TransferId, sender: PublicKey, receiver: PublicKey, expiry: Micros, package: TransferPackage, exit_txid: Txid, connector_tx: Transaction) {
        if let Err(e) = check_connector_tx(&exit_txid, &connector_tx, package.leaves.len()) {
            return Self::reply_wallet(ctx, call, Err(e));
        }
        let ssp_key = self.cfg.directory.ssp.and_then(|w| self.cfg.directory.wallets.get(&w));
        if ssp_key != Some(&receiver) {
            return Self::reply_wallet(ctx, call, Err("a cooperative exit must transfer to the service provider".into()));
        }
        let db = self.store.read();
        if db.coop_exits.contains_key(&transfer) {
            let reply = match db.transfers.get(&transfer) {
                Some(t) if t.status == TransferStatus::Returned => Err(format!("coop exit {transfer} was returned")),
                Some(t) => match t.leaves.values().next().and_then(|l| l.intermediate_refunds.clone()) {
                    Some(refunds) if t.leaves.len() == 1 => Ok(WalletReply::CoopExitSigned { transfer, refunds }),
                    _ => Err(format!("coop exit {transfer} has no signed refunds")),
                },
                // The wallet reads "returned" as final: say it only when it is.
                None if db.cancelled.contains(&transfer) || db.pending_sends.get(&transfer).is_some_and(|p| p.status == super::store::PendingSendStatus::Finished) => Err(format!("coop exit {transfer} was returned")),
                None if db.pending_sends.contains_key(&transfer) => Err(format!("coop exit {transfer} in progress; ask again")),
                // An earlier copy failed validation before anything was signed: start over.
                None => {
                    let mut db = self.store.begin();
                    db.coop_exits.remove(&transfer);
                    self.store.commit(db);
                    return self.cooperative_exit(ctx, call, transfer, sender, receiver, expiry, package, exit_txid, connector_tx);
                }
            };
            return Self::reply_wallet(ctx, call, reply);
        }
        let mut db = self.store.begin();
        db.coop_exits.insert(transfer, CoopExitRow { exit_txid, connector_tx, finalized: false, confirmed: None, ever_confirmed: false, closed_on_chain: false });
        self.store.commit(db);
        self.start_transfer(ctx, call, transfer, sender, receiver, expiry, package, None);
    }

    /// Participant: `InitiateCooperativeExit`: record the exit row, then run the transfer's
    /// checks against it (a failed check leaves no row behind).
    pub(super) fn initiate_coop_exit(&mut self, ctx: &mut Ctx<'_>, coordinator: OperatorId, exit: CoopExitRow, init: TransferInit) -> Result<InternalReply, String> {
        let TransferInit { transfer, sender, receiver, expiry, package, signed_refunds } = init;
        check_connector_tx(&exit.exit_txid, &exit.connector_tx, package.leaves.len())?;
        let had = self.store.read().coop_exits.contains_key(&transfer);
        if !had {
            let mut db = self.store.begin();
            db.coop_exits.insert(transfer, CoopExitRow { finalized: false, confirmed: None, ever_confirmed: false, closed_on_chain: false, ..exit });
            self.store.commit(db);
        }
        let r = self.initiate_transfer(ctx, coordinator, transfer, sender, receiver, expiry, package, signed_refunds);
        if r.is_err() && !had && !self.store.read().transfers.contains_key(&transfer) {
            let mut db = self.store.begin();
            db.coop_exits.remove(&transfer);
            self.store.commit(db);
        }
        r
    }

    /// Coordinator: the sender releases its key tweak (spark-protocol §4.5 step 4).
    pub(super) fn finalize_coop_exit(&mut self, ctx: &mut Ctx<'_>, call: WalletCall, transfer: TransferId) {
        let mut db = self.store.begin();
        let sender = db.transfers.get(&transfer).map(|t| (t.sender, t.status));
        let reply = match (db.coop_exits.get_mut(&transfer), sender) {
            (None, _) | (_, None) => Err(format!("unknown coop exit {transfer}")),
            (Some(_), Some((sender, _))) if !matches!(call.wallet, NodeId::Wallet(w) if self.cfg.directory.wallets.get(&w) == Some(&sender)) => {
                Err(format!("{} is not the sender of coop exit {transfer}", call.wallet))
            }
            (Some(_), Some((_, TransferStatus::Returned))) => Ok(TransferOutcome::Returned),
            (Some(row), Some(_)) => {
                row.finalized = true;
                Ok(TransferOutcome::Sent)
            }
        };
        self.store.commit(db);
        Self::reply_wallet(ctx, call, reply.map(|outcome| WalletReply::Transfer { transfer, outcome }));
        self.coop_exit_tasks(ctx);
    }

    /// The chain watcher's part (after `on_block`): note the exit tx's confirmation (and its loss
    /// in a reorg), then run the coop-exit tasks.
    pub(super) fn coop_exit_on_block(&mut self, ctx: &mut Ctx<'_>, block: &BlockInfo) {
        if self.store.read().coop_exits.is_empty() {
            return;
        }
        let txids: BTreeSet<Txid> = block.txs.iter().map(|t| t.compute_txid()).collect();
        let mut db = self.store.begin();
        let (hashes, height) = (&db.chain_watch.hashes, db.block_height);
        for (t, row) in db.coop_exits.iter_mut() {
            if let Some((h, hash)) = row.confirmed {
                if h > height || hashes.get(&h).is_some_and(|x| *x != hash) {
                    row.confirmed = None;
                    ctx.observe(Observation::Rejected { what: format!("{} coop exit {t}", self.cfg.id), reason: format!("exit tx {} reorged out at height {h}", row.exit_txid) });
                }
            }
            if txids.contains(&row.exit_txid) {
                row.confirmed = Some((block.height, block.hash));
                row.ever_confirmed = true;
            }
        }
        self.store.commit(db);
        self.coop_exit_tasks(ctx);
    }

    /// Settle what is deep enough and finalized, cancel what expired unpaid, and close what the
    /// SSP exited on L1.
    fn coop_exit_tasks(&mut self, ctx: &mut Ctx<'_>) {
        let me = self.cfg.id;
        let db = self.store.read();
        let height = db.block_height;
        let (mut settle, mut cancel, mut close) = (Vec::new(), Vec::new(), Vec::new());
        for (t, row) in &db.coop_exits {
            let Some(tr) = db.transfers.get(t) else { continue };
            if tr.status.is_terminal() {
                continue;
            }
            // The hold's release rule lives with the hold itself (tweak_hold.rs).
            if tr.coordinator == me && super::tweak_hold::coop_exit_releasable(row, height) && !tr.status.is_sent() {
                settle.push(*t);
            } else if tr.coordinator == me && !row.ever_confirmed && ctx.now > tr.expiry && !tr.status.is_sent() {
                cancel.push(*t);
            }
            let on_chain = tr.leaves.keys().all(|l| db.leaves.get(l).is_some_and(|r| r.status == LeafStatus::OnChain));
            if row.ever_confirmed && on_chain && !tr.status.is_sent() {
                close.push(*t);
            }
        }
        for t in cancel {
            ctx.observe(Observation::Rejected { what: format!("{me} coop exit {t}"), reason: "expired before its exit tx confirmed: returned to the user".into() });
            self.cancel_send(ctx, t);
        }
        for t in settle {
            let mut db = self.store.begin();
            if let Err(e) = self.apply_settle_sender(&mut db, t) {
                ctx.observe(Observation::Rejected { what: format!("{me} coop exit {t}"), reason: e });
                continue;
            }
            let others = self.others();
            let seq = (!others.is_empty()).then(|| Self::gossip_create(&mut db, GossipBody::SettleSenderKeyTweak { transfer: t }, others));
            self.store.commit(db);
            if let Some(seq) = seq {
                self.gossip_push(ctx, seq);
            }
        }
        if !close.is_empty() {
            // Each operator sees the same chain: the leaves left Spark to the SSP (its connector
            // refunds), so the transfer is done everywhere without a message.
            let mut db = self.store.begin();
            for t in close {
                if let Some(tr) = db.transfers.get_mut(&t) {
                    tr.status = TransferStatus::Completed;
                }
                if let Some(row) = db.coop_exits.get_mut(&t) {
                    row.closed_on_chain = true;
                }
            }
            self.store.commit(db);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{Amount, ScriptBuf, Sequence, TxIn, Witness};

    fn connector(spends: Txid, outputs: usize) -> Transaction {
        Transaction {
            version: bitcoin::transaction::Version(3),
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn { previous_output: OutPoint { txid: spends, vout: 1 }, script_sig: ScriptBuf::new(), sequence: Sequence::MAX, witness: Witness::new() }],
            output: vec![TxOut { value: Amount::from_sat(330), script_pubkey: ScriptBuf::new() }; outputs],
        }
    }

    /// breez#587: no connector tx, or one that does not spend the exit tx, or one without a
    /// connector per leaf plus a last output, is refused.
    #[test]
    fn connector_tx_must_spend_the_exit_tx_with_one_connector_per_leaf() {
        let exit = Txid::from_byte_array([7; 32]);
        assert!(check_connector_tx(&exit, &connector(exit, 2), 1).is_ok());
        assert!(check_connector_tx(&exit, &connector(Txid::from_byte_array([8; 32]), 2), 1).unwrap_err().contains("spend exactly"));
        assert!(check_connector_tx(&exit, &connector(exit, 1), 1).unwrap_err().contains("one connector per leaf"));
        let row = CoopExitRow { exit_txid: exit, connector_tx: connector(exit, 3), finalized: false, confirmed: None, ever_confirmed: false, closed_on_chain: false };
        assert_eq!(connector_of(&row, 1).unwrap().0.vout, 1);
        assert!(connector_of(&row, 2).is_err(), "the last output is not a connector");
    }
}
