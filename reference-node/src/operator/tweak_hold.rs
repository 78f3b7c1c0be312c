//! One place decides whether a committed send's sender key tweak may be applied at commit. Both
//! commit paths ask it: the gossip-mode `send_commit` (send.rs) and the two-phase
//! `twopc_send_commit` (twopc_flows.rs), so the holds are the same in both consensus modes:
//! - a swap leg's tweak waits for its swap's decision (swap.rs: settle applies every leg at once,
//!   return cancels every leg), so one leg can never move while the other is returned (L-6);
//! - a cooperative exit's tweak waits for the user's finalize and [`COOP_EXIT_CONFIRMATIONS`] of
//!   its exit tx (coop_exit.rs), so the SSP can never claim a leaf whose payout a reorg can
//!   still take away;
//! - a Lightning send's tweak waits for `provide_preimage` (preimage_send.rs), so the SSP gets the
//!   leaves only once it has paid.
//!
//! A held transfer is recorded everywhere (SENDER_KEY_TWEAK_PENDING on the participants) and its
//! hold is later released by its own single-decider durable gossip (`SettleSwapKeyTweak`,
//! `SettleSenderKeyTweak`) or cancelled (`CancelTransfer`), in both modes.
use super::coop_exit::{CoopExitRow, COOP_EXIT_CONFIRMATIONS};
use super::store::Db;
use super::swap::SwapCommit;
use super::Operator;
use crate::msg::GossipBody;
use crate::types::TransferId;

/// What committing a send does with its sender tweak.
pub(super) enum SenderTweak {
    /// Not held: apply the transfer's own sender tweak (`SettleSenderKeyTweak`).
    Apply,
    /// Held by a swap or a cooperative exit: recorded, not tweaked.
    Hold,
    /// This commit completes a v3 swap: settle every leg at once (`SettleSwapKeyTweak`).
    SettleSwap(Box<GossipBody>),
}

impl SenderTweak {
    /// The settle gossip the commit writes (`None`: held).
    pub(super) fn settle_body(self, transfer: TransferId) -> Option<GossipBody> {
        match self {
            SenderTweak::Apply => Some(GossipBody::SettleSenderKeyTweak { transfer }),
            SenderTweak::Hold => None,
            SenderTweak::SettleSwap(b) => Some(*b),
        }
    }
}

impl Operator {
    /// Will `transfer`'s tweak be held at commit? Known before the send fans out (the swap and
    /// coop-exit rows are written before the send starts); the two-phase mode writes it into
    /// the flow's op so every participant's COMMIT means the same thing.
    pub(super) fn sender_tweak_held(db: &Db, transfer: TransferId) -> bool {
        db.coop_exits.contains_key(&transfer) || super::preimage_send::send_hash_of(db, transfer).is_some() || db.swaps.contains_key(&transfer) || db.swaps.values().any(|r| r.counters.contains_key(&transfer))
    }

    /// At commit, in the commit's store transaction: apply, hold, or settle a whole swap. A swap
    /// already decided refuses the commit (the caller aborts the send).
    pub(super) fn sender_tweak_on_commit(db: &mut Db, transfer: TransferId) -> Result<SenderTweak, String> {
        if db.coop_exits.contains_key(&transfer) || super::preimage_send::send_hash_of(db, transfer).is_some() {
            return Ok(SenderTweak::Hold);
        }
        Ok(match Self::swap_on_commit(db, transfer)? {
            SwapCommit::NotSwap => SenderTweak::Apply,
            SwapCommit::Hold => SenderTweak::Hold,
            SwapCommit::Settle(b) => SenderTweak::SettleSwap(b),
        })
    }
}

/// A held coop exit's tweak may be released: the user finalized and the exit tx is
/// [`COOP_EXIT_CONFIRMATIONS`] deep on the branch this operator follows (tip `height`).
pub(super) fn coop_exit_releasable(row: &CoopExitRow, height: u32) -> bool {
    row.finalized && row.confirmed.is_some_and(|(h, _)| height + 1 >= h + COOP_EXIT_CONFIRMATIONS)
}
