//! Renew/send race (spark-protocol §3.4, §8.2 row 5: buildonspark/spark#70, breez/spark-sdk#482):
//! the user runs a second device with the same keys. It caches the leaves it last synced
//! (`Command::DeviceSync`); meanwhile the first device renews a leaf (`Command::RenewNow`), which
//! replaces the leaf's node tx and resets its refund timelock. A send from the second device
//! (`Command::DeviceSend`) then decrements the *cached* timelock and spends the *cached* node
//! tx. The operators rebuild the refunds from their stored row (§3.4) and refuse the package;
//! the device must then re-sync its cache and retry, never count the leaf as spent.
//!
//! Modelling note: both devices live in this one wallet actor and run one operation at a time;
//! the race is the stale cache against the renewed leaf, not two requests in flight at once.
//! A re-sync copies this device's view, which matches the operators' rows (I-9 checks that).
use super::{Command, LeafState, Wallet, WalletLeaf};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::tx::renew;
use crate::types::LeafId;
use std::collections::BTreeMap;

/// The second device's leaf cache, as of its last sync.
pub(super) struct Device {
    leaves: BTreeMap<LeafId, WalletLeaf>,
}

impl Device {
    fn synced(leaves: &BTreeMap<LeafId, WalletLeaf>) -> Device {
        Device { leaves: leaves.iter().filter(|(_, l)| l.state == LeafState::Available).map(|(id, l)| (*id, l.clone())).collect() }
    }
}

impl Wallet {
    /// `Command::DeviceSync`: the second device takes a copy of the available leaves.
    pub(super) fn device_sync(&mut self, ctx: &mut Ctx<'_>) {
        self.device = Some(Device::synced(&self.leaves));
        self.start_next(ctx);
    }

    /// The second device's leaves (empty before its first sync).
    pub(super) fn device_leaves(&self) -> &BTreeMap<LeafId, WalletLeaf> {
        static EMPTY: BTreeMap<LeafId, WalletLeaf> = BTreeMap::new();
        self.device.as_ref().map_or(&EMPTY, |d| &d.leaves)
    }

    /// A leaf left the user (sent): neither device holds it any more.
    pub(super) fn device_forget(&mut self, leaf: LeafId) {
        if let Some(d) = self.device.as_mut() {
            d.leaves.remove(&leaf);
        }
    }

    /// `Command::DeviceSend`: the second device sends a leaf from its cache.
    pub(super) fn start_device_send(&mut self, ctx: &mut Ctx<'_>, receiver: crate::types::WalletId, attempt: u8) {
        self.start_send_as(ctx, receiver, attempt, true);
    }

    /// The operators refused (or returned) the second device's send. Correct wallet: the leaf
    /// is still the user's; the device re-syncs and the send is retried from fresh data. Under
    /// the `stale_send_drops_leaf` hazard the leaf is dropped as if spent (breez#482: balance 0).
    pub(super) fn device_send_refused(&mut self, ctx: &mut Ctx<'_>, leaf: LeafId, transfer: crate::types::TransferId, retry: Option<(Command, u8)>) {
        let dropped = self.cfg.params.hazards.stale_send_drops_leaf;
        ctx.observe(Observation::TransferReturned { transfer, sender: self.cfg.id });
        ctx.observe(Observation::DeviceStaleRefused { wallet: self.cfg.id, leaf, dropped });
        if dropped {
            self.leaves.remove(&leaf);
            self.device_forget(leaf);
            ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: format!("device send {transfer}: refused, leaf {leaf} taken as spent") });
            return self.finish(ctx);
        }
        if let Some(l) = self.leaves.get_mut(&leaf) {
            l.state = LeafState::Available;
        }
        self.device = Some(Device::synced(&self.leaves));
        self.fail(ctx, retry, format!("device send {transfer} refused; re-synced"));
    }

    /// `Command::RenewNow`: renew the first available leaf with the §4.4 variant for its node
    /// CSV, before the wallet's own < 200 trigger (the operators' ≤ 300 precondition applies).
    pub(super) fn start_renew_now(&mut self, ctx: &mut Ctx<'_>, attempt: u8) {
        let choice = self.leaves.iter().filter(|(_, l)| l.state == LeafState::Available).find_map(|(id, l)| {
            let node = renew::csv(&l.nodes.cpfp).ok()?;
            renew::wallet_trigger(node, 0).map(|k| (*id, k))
        });
        match choice {
            Some((leaf, kind)) => self.start_renew(ctx, leaf, kind, (Command::RenewNow, attempt)),
            None => {
                ctx.observe(Observation::CommandSkipped { wallet: self.cfg.id, reason: "renew now: no available leaf".into() });
                self.start_next(ctx);
            }
        }
    }
}
