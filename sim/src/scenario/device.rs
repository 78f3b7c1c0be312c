//! `[[device_race]]`: the renew/send race of spark-protocol §8.2 row 5 (buildonspark/spark#70,
//! breez/spark-sdk#482) with a user's second device (reference-node/src/wallet/device.rs).

use super::{Allow, NodePattern, Topology, Validator, Zero, R, S};
use reference_node::types::{Micros, NodeId, WalletId};
use serde::Deserialize;
use toml::Spanned;

/// One `[[device_race]]` entry: `wallet`'s user runs a second device with the same keys.
/// - `wallet` (required): `wallet:N`, the user.
/// - `to` (required): `wallet:M` (another wallet), who the second device sends to.
/// - `sync_s` (required): when the second device syncs its leaf cache.
/// - `renew_s` (required): when the first device renews its first available leaf (the §4.4
///   variant for its node CSV, without waiting for the < 200 trigger; the operators refuse a
///   leaf whose refund CSV is above 300).
/// - `send_s` (required): when the second device sends a leaf from its cache, built from the
///   cached (stale, if the leaf was renewed) timelock and node tx.
///
/// `sync_s` ≤ `renew_s` ≤ `send_s`. What should happen: the operators refuse the stale send
/// (they rebuild the refunds from their stored row, §3.4), the device re-syncs and the retried
/// send goes through. Under the `stale_send_drops_leaf` hazard the wallet drops the leaf instead
/// and I-9 reports a leaf the operators hold for a wallet that no longer counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRaceSpec {
    pub wallet: WalletId,
    pub to: WalletId,
    pub sync: Micros,
    pub renew: Micros,
    pub send: Micros,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeviceRace {
    wallet: Spanned<String>,
    to: Spanned<String>,
    sync_s: S<f64>,
    renew_s: S<f64>,
    send_s: S<f64>,
}

impl Validator<'_> {
    pub(super) fn device_races(&self, raw: &[Spanned<RawDeviceRace>], topo: &Topology) -> R<Vec<DeviceRaceSpec>> {
        let mut out = Vec::new();
        for (i, entry) in raw.iter().enumerate() {
            let (span, d) = (entry.span(), entry.get_ref());
            let field = |k: &str| format!("device_race[{i}].{k}");
            let wallet_of = |v: &Spanned<String>, k: &str| match self.pattern(v, &field(k), topo, Allow::SingleNode)? {
                NodePattern::Node(NodeId::Wallet(w)) => Ok(w),
                other => Err(self.err(v.span(), field(k), format!("expected one wallet (wallet:N), found {other}"))),
            };
            let (wallet, to) = (wallet_of(&d.wallet, "wallet")?, wallet_of(&d.to, "to")?);
            if wallet == to {
                return Err(self.err(d.to.span(), field("to"), "the second device must send to another wallet"));
            }
            let time = |v: &S<f64>, k: &str| self.secs(v, &field(k), Zero::Allowed)?.ok_or_else(|| self.err(span.clone(), field(k), format!("needs `{k}`")));
            let (sync, renew, send) = (time(&d.sync_s, "sync_s")?, time(&d.renew_s, "renew_s")?, time(&d.send_s, "send_s")?);
            if !(sync <= renew && renew <= send) {
                let at = d.send_s.as_ref().map_or(span.clone(), |s| s.span());
                return Err(self.err(at, field("send_s"), "expected sync_s <= renew_s <= send_s"));
            }
            out.push(DeviceRaceSpec { wallet, to, sync, renew, send });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    const HEAD: &str = "name = \"x\"\ndescription = \"d\"\n[topology]\nwallets = 2\n";

    #[test]
    fn device_races_parse_and_bad_entries_name_their_field() {
        let s = Scenario::parse("x.toml", &format!("{HEAD}[[device_race]]\nwallet = \"wallet:0\"\nto = \"wallet:1\"\nsync_s = 1.0\nrenew_s = 2.0\nsend_s = 3.0\n")).unwrap();
        let t = Micros::from_secs;
        assert_eq!(s.device_races, vec![DeviceRaceSpec { wallet: WalletId(0), to: WalletId(1), sync: t(1), renew: t(2), send: t(3) }]);
        let err = |body: &str| Scenario::parse("x.toml", &format!("{HEAD}[[device_race]]\n{body}")).unwrap_err();
        let e = err("wallet = \"wallet:0\"\nto = \"wallet:0\"\nsync_s = 1.0\nrenew_s = 2.0\nsend_s = 3.0\n");
        assert_eq!((e.line, e.field.as_str()), (7, "device_race[0].to"), "{e}");
        let e = err("wallet = \"wallet:0\"\nto = \"wallet:1\"\nsync_s = 1.0\nrenew_s = 4.0\nsend_s = 3.0\n");
        assert_eq!((e.line, e.field.as_str()), (10, "device_race[0].send_s"), "{e}");
        let e = err("wallet = \"operator:0\"\nto = \"wallet:1\"\nsync_s = 1.0\nrenew_s = 2.0\nsend_s = 3.0\n");
        assert_eq!(e.field, "device_race[0].wallet", "{e}");
        let e = err("wallet = \"wallet:0\"\nto = \"wallet:1\"\nrenew_s = 2.0\nsend_s = 3.0\n");
        assert_eq!(e.field, "device_race[0].sync_s", "{e}");
        let e = err("wallet = \"wallet:0\"\nto = \"wallet:1\"\nsync_s = 1.0\nrenew_s = 2.0\nsend_s = 3.0\nwhen = 1\n");
        assert!(e.message.contains("unknown field"), "{e}");
    }
}
