//! `[[workload.lightning]]`: Lightning payments through the SSP (spark-protocol §4.7, §4.8).

use super::{Allow, NodePattern, Topology, Validator, R, S};
use reference_node::types::{Micros, NodeId, WalletId};
use serde::Deserialize;
use toml::Spanned;

/// Which way a Lightning payment goes, seen from the wallet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LightningDirection {
    /// The wallet is paid over Lightning (§4.7): the SSP's leaves come to it by preimage swap.
    Receive,
    /// The wallet pays an invoice of `sats` through the SSP (§4.8): HTLC refunds, the SSP pays
    /// and provides the preimage, or the leaves come back.
    Send,
}

/// One `[[workload.lightning]]` entry.
/// - `wallet` = "wallet:N" (not the SSP): the Spark user.
/// - `at_s` ≥ 0: when the wallet starts.
/// - `direction` = "receive": the wallet asks the SSP for a hold invoice and stores Feldman
///   shares of its preimage with every operator; the simulated payer then pays (unless
///   `ssp.lightning_failure_rate` says the payment fails) and the SSP swaps a leaf of exactly
///   `sats` to the wallet.
///   `direction` = "send" (Lightning send §4.8): the SSP quotes an invoice of `sats` and its fee
///   (0.25% + 10 sats); the wallet sends a leaf worth exactly `sats` + fee (splitting a bigger
///   leaf first) with HTLC refunds to the SSP; the SSP pays (or fails, per
///   `ssp.lightning_failure_rate`) and provides the preimage, or returns the leaves.
/// - `sats` > 0: the invoice amount; for "receive" the SSP needs a liquidity leaf of exactly
///   this value (`ssp.deposits`), since Spark moves whole leaves.
///
/// Needs an `[ssp]` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LightningAt {
    pub wallet: WalletId,
    pub at: Micros,
    pub direction: LightningDirection,
    pub sats: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLightning {
    wallet: Spanned<String>,
    at_s: Spanned<f64>,
    direction: Spanned<String>,
    sats: Spanned<i64>,
}

impl Validator<'_> {
    pub(super) fn lightning_list(&self, raw: &[Spanned<RawLightning>], topo: &Topology) -> R<Vec<LightningAt>> {
        let mut out = Vec::new();
        for (i, entry) in raw.iter().enumerate() {
            let l = entry.get_ref();
            let field = format!("workload.lightning[{i}].wallet");
            let wallet = match self.pattern(&l.wallet, &field, topo, Allow::SingleNode)? {
                NodePattern::Node(NodeId::Wallet(w)) if Some(w) != topo.ssp_wallet() => w,
                NodePattern::Node(NodeId::Wallet(_)) => return Err(self.err(l.wallet.span(), field, "the SSP cannot pay itself over Lightning: name a user wallet")),
                other => return Err(self.err(l.wallet.span(), field, format!("expected a wallet (wallet:N), found {other}"))),
            };
            if !topo.ssp {
                return Err(self.err(l.wallet.span(), field, "Lightning needs a service provider: add an [ssp] table"));
            }
            let at = self.secs(&Some(l.at_s.clone()), &format!("workload.lightning[{i}].at_s"), super::Zero::Allowed)?.unwrap_or(Micros::ZERO);
            let direction = match l.direction.get_ref().as_str() {
                "receive" => LightningDirection::Receive,
                "send" => LightningDirection::Send,
                other => return Err(self.err(l.direction.span(), format!("workload.lightning[{i}].direction"), format!("expected \"receive\" or \"send\", found \"{other}\""))),
            };
            let sats = match u64::try_from(*l.sats.get_ref()) {
                Ok(v) if v > 0 => v,
                _ => return Err(self.err(l.sats.span(), format!("workload.lightning[{i}].sats"), format!("expected an amount > 0 sats, found {}", l.sats.get_ref()))),
            };
            out.push(LightningAt { wallet, at, direction, sats });
        }
        Ok(out)
    }

    /// `ssp.lightning_failure_rate` in parts per million.
    pub(super) fn failure_ppm(&self, v: &S<f64>, field: &str, default: u32) -> R<u32> {
        Ok(self.probability(v, field)?.map_or(default, |p| (p * 1e6).round() as u32))
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::Scenario;
    use reference_node::types::{Micros, WalletId};

    const HEAD: &str = "name = \"x\"\ndescription = \"d\"\n[topology]\nwallets = 2\n[ssp]\ndeposits = [1024]\n";

    #[test]
    fn lightning_entries_parse() {
        let s = Scenario::parse("scenarios/x.toml", &format!("{HEAD}lightning_failure_rate = 0.25\n[[workload.lightning]]\nwallet = \"wallet:1\"\nat_s = 40\ndirection = \"receive\"\nsats = 1024\n")).unwrap();
        let l = &s.workload.lightning;
        assert_eq!((l.len(), l[0].wallet, l[0].at, l[0].sats), (1, WalletId(1), Micros::from_secs(40), 1024));
        assert_eq!(s.ssp.map(|x| x.lightning_failure_ppm), Some(250_000));
        let s = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[[workload.lightning]]\nwallet = \"wallet:0\"\nat_s = 5\ndirection = \"send\"\nsats = 2048\n")).unwrap();
        assert_eq!(s.workload.lightning[0].direction, super::LightningDirection::Send);
    }

    #[test]
    fn bad_lightning_keys_name_their_field() {
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[[workload.lightning]]\nwallet = \"ssp\"\nat_s = 1\ndirection = \"receive\"\nsats = 5\n")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("workload.lightning[0].wallet", 8), "{e}");
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[[workload.lightning]]\nwallet = \"wallet:0\"\nat_s = 1\ndirection = \"sideways\"\nsats = 5\n")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("workload.lightning[0].direction", 10), "{e}");
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[[workload.lightning]]\nwallet = \"wallet:0\"\nat_s = 1\ndirection = \"receive\"\nsats = 0\n")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line, e.column), ("workload.lightning[0].sats", 11, 8), "{e}");
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}lightning_failure_rate = 1.5\n")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("ssp.lightning_failure_rate", 7), "{e}");
        let e = Scenario::parse("scenarios/x.toml", "name = \"x\"\ndescription = \"d\"\n[[workload.lightning]]\nwallet = \"wallet:0\"\nat_s = 1\ndirection = \"receive\"\nsats = 5\n").unwrap_err();
        assert!(e.message.contains("[ssp]"), "{e}");
    }
}
