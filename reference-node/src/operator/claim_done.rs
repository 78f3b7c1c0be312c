//! A claim retried after it completed. The receiver's finalize reply can be late or lost (or the
//! wallet restarts mid-claim): the wallet then starts the claim again, but the transfer is already
//! Completed and can be neither settled nor signed again. Instead of refusing forever, the
//! coordinator answers with the refunds the receiver itself finalized; the wallet verifies their
//! signatures against the leaf key before adopting them (wallet/claim.rs), so nothing is trusted.
use super::store::TransferStatus;
use super::Operator;
use crate::crypto::PublicKey;
use crate::msg::{ClaimLeafJobs, WalletReply};
use crate::tx::template;
use crate::types::TransferId;

impl Operator {
    /// `Some` when `transfer` is Completed for this receiver: the stored refunds of the leaf if
    /// they are the ones this claim asks for (same new leaf key, same refund txs), else why not.
    /// `None` when the transfer is not Completed: the normal claim path decides.
    pub(super) fn completed_claim(&self, transfer: TransferId, receiver: &PublicKey, leaves: &[ClaimLeafJobs]) -> Option<Result<WalletReply, String>> {
        let db = self.store.read();
        let t = db.transfers.get(&transfer)?;
        if t.status != TransferStatus::Completed {
            return None;
        }
        Some((|| {
            if t.receiver != *receiver {
                return Err("not the transfer's receiver".to_string());
            }
            let [lj] = leaves else { return Err("one leaf per claim is supported".into()) };
            if !t.leaves.contains_key(&lj.leaf) {
                return Err("leaf not in transfer".into());
            }
            let row = db.leaves.get(&lj.leaf).ok_or("unknown leaf")?;
            // The leaf may have moved on since (sent again): then this is not the claim's result.
            if row.owner_identity != *receiver || row.owner_signing_key != lj.new_signing_key {
                return Err(format!("transfer {transfer} is Completed and the leaf has another key now"));
            }
            let stored = row.refunds.as_array();
            if lj.refunds.len() != stored.len() {
                return Err(format!("expected {} refunds, found {}", stored.len(), lj.refunds.len()));
            }
            for (i, (uj, tx)) in lj.refunds.iter().zip(stored).enumerate() {
                template::compare_transactions(&uj.tx, tx).map_err(|e| format!("transfer {transfer} is Completed with other refunds: refund {i}: {e}"))?;
            }
            Ok(WalletReply::ClaimCompleted { refunds: row.refunds.clone() })
        })())
    }
}
