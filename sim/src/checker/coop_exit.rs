//! Cooperative exit (spark-protocol §4.5): L-5 atomicity at quiescence and the payout's part of
//! I-1. A coop exit starts when the operators signed the user's connector refunds
//! (`CoopExitStarted`); at the end either the exit tx paying the user is confirmed and the SSP
//! holds the leaf (claimed, or exited on L1 with its connector refund) while the user does not,
//! or it is not and the user still holds the leaf (kept or exited alone), the SSP does not, and
//! no up operator has the transfer anywhere but RETURNED.
use super::hygiene::WalletView;
use super::{finding, Finding};
use bitcoin::{OutPoint, Txid};
use reference_node::chain::Chain;
use reference_node::observe::Observation;
use reference_node::operator::store::{Db, TransferStatus};
use reference_node::types::{LeafId, OperatorId, TransferId, WalletId};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Started {
    user: WalletId,
    ssp: WalletId,
    leaf: LeafId,
    value_sats: u64,
    payout_sats: u64,
    exit_txid: Txid,
}

/// The coop exits of a run, from observations.
#[derive(Default)]
pub struct CoopExitLedger {
    started: BTreeMap<TransferId, Started>,
}

impl CoopExitLedger {
    pub fn is_empty(&self) -> bool {
        self.started.is_empty()
    }

    /// Records a start; checks a payout against what the user was owed (I-1: the SSP pays the
    /// leaf's value less the quoted fee, never more than the leaf is worth).
    pub fn observe(&mut self, obs: &Observation) -> Vec<Finding> {
        match obs {
            Observation::CoopExitStarted { user, ssp, leaf, transfer, value_sats, payout_sats, exit_txid } => {
                let mut found = Vec::new();
                if payout_sats > value_sats {
                    found.push(finding("I-1", format!("coop exit {transfer}"), format!("coop exit {transfer} owes {payout_sats} sats on L1 for leaf {leaf} worth only {value_sats} sats")));
                }
                self.started.entry(*transfer).or_insert(Started { user: *user, ssp: *ssp, leaf: *leaf, value_sats: *value_sats, payout_sats: *payout_sats, exit_txid: *exit_txid });
                found
            }
            Observation::CoopExitPaid { user, leaf, exit_txid, payout_sats } => self
                .started
                .iter()
                .filter(|(_, s)| s.exit_txid == *exit_txid && s.payout_sats != *payout_sats)
                .map(|(t, s)| finding("I-1", format!("coop exit {t} payout"), format!("{user} was paid {payout_sats} sats for leaf {leaf} but was owed {} sats", s.payout_sats)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// L-5 at quiescence.
    pub fn check_atomicity(&self, chain: &Chain, wallets: &[WalletView<'_>], up: &[(OperatorId, &Db)]) -> Vec<Finding> {
        let holds = |w: WalletId, leaf: &LeafId| wallets.iter().any(|v| v.id == w && v.leaves.contains_key(leaf));
        let mut found = Vec::new();
        for (t, s) in &self.started {
            let paid = chain.confirmation_height(&s.exit_txid).is_some();
            let (user, ssp) = (holds(s.user, &s.leaf), holds(s.ssp, &s.leaf));
            let problem = if paid {
                let payout = chain.utxo(&OutPoint { txid: s.exit_txid, vout: 0 }).map(|u| u.output.value.to_sat());
                match (user, ssp) {
                    (true, _) => Some("the user was paid on L1 and still holds the leaf".to_string()),
                    (_, false) => Some("the user was paid on L1 but the SSP does not own the leaf".to_string()),
                    _ if payout.is_some_and(|p| p != s.payout_sats) => Some(format!("the payout output holds {} sats, {} were owed", payout.unwrap_or(0), s.payout_sats)),
                    _ => None,
                }
            } else {
                let not_returned: Vec<String> = up
                    .iter()
                    .filter_map(|(op, db)| db.transfers.get(t).filter(|r| r.status != TransferStatus::Returned).map(|r| format!("{op}={:?}", r.status)))
                    .collect();
                match (user, ssp) {
                    (_, true) => Some("the payout never confirmed but the SSP owns the leaf".to_string()),
                    (false, _) => Some("the payout never confirmed and the user lost the leaf".to_string()),
                    _ if !not_returned.is_empty() => Some(format!("the payout never confirmed but the transfer is not RETURNED: {}", not_returned.join(", "))),
                    _ => None,
                }
            };
            if let Some(p) = problem {
                found.push(finding("L-5", format!("coop exit {t}"), format!("coop exit {t} of {}'s leaf {} ({} sats): {p}", s.user, s.leaf, s.value_sats)));
            }
        }
        found
    }
}
