//! Scenario keys of the watchtower and fees flow: the `[watchtower]` table and `[[race]]` entries
//! (a child module of `scenario`, so it validates with the same located errors).
use super::{NodePattern, Topology, Validator, Zero, R, S};
use reference_node::params::WatchtowerMode;
use reference_node::types::{Micros, NodeId, WalletId};
use serde::Deserialize;
use toml::Spanned;

/// `[watchtower]` (watchtower and fees flow, spark-protocol §3.6, §4.6, §5.2 items 1, 2, 5):
/// - `mode` = "off": the operators' watchtower. "off": none; "absolute_height": the Oct-2025
///   watchtower, which compares a refund's relative CSV with the absolute chain height and so
///   broadcasts the current owner's direct refund every block from `height >= CSV` on, relying
///   on the mempool to refuse it while non-final; "relative": broadcasts once the refund is final
///   (node confirmation height + CSV).
/// - `wallet_feerate_sat_vb` = 5: the feerate a wallet pays on its deposit tx and on the
///   packages that fee-bump its CPFP exit txs, 1..=10000 (doubled on each fee refusal, up to 2000).
///
/// `[[race]]` entries (see [`RaceSpec`]) live here too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchtowerSpec {
    pub mode: WatchtowerMode,
    pub wallet_feerate_sat_vb: u64,
    /// `[[race]]` entries, in file order.
    pub races: Vec<RaceSpec>,
}

impl Default for WatchtowerSpec {
    fn default() -> Self {
        WatchtowerSpec { mode: WatchtowerMode::Off, wallet_feerate_sat_vb: 5, races: Vec::new() }
    }
}

/// One `[[race]]` entry: at `at_s` a former owner broadcasts the node tx and the stale refund it
/// still holds for the first leaf it sent away (`Command::RaceStaleRefund`, wallet/race.rs).
/// - `wallet` (required): `wallet:N`.
/// - `at_s` (required): when, in simulated seconds, ≥ 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaceSpec {
    pub wallet: WalletId,
    pub at: Micros,
}

/// The names `mode` accepts.
pub const MODES: [(&str, WatchtowerMode); 3] =
    [("off", WatchtowerMode::Off), ("absolute_height", WatchtowerMode::AbsoluteHeight), ("relative", WatchtowerMode::Relative)];

/// The name of a mode, as the scenario file spells it.
pub fn mode_name(mode: WatchtowerMode) -> &'static str {
    MODES.iter().find(|(_, m)| *m == mode).map_or("off", |(n, _)| n)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatchtower {
    mode: S<String>,
    wallet_feerate_sat_vb: S<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRace {
    wallet: Spanned<String>,
    at_s: Spanned<f64>,
}

impl Validator<'_> {
    pub(super) fn watchtower(&self, raw: Option<&RawWatchtower>, races: &[Spanned<RawRace>], topo: &Topology) -> R<WatchtowerSpec> {
        let d = WatchtowerSpec::default();
        let mode = match raw.and_then(|w| w.mode.as_ref()) {
            None => d.mode,
            Some(m) => match MODES.iter().find(|(n, _)| *n == m.get_ref()) {
                Some((_, mode)) => *mode,
                None => {
                    let allowed: Vec<&str> = MODES.iter().map(|(n, _)| *n).collect();
                    return Err(self.err(m.span(), "watchtower.mode", format!("unknown watchtower mode `{}`: allowed: {}", m.get_ref(), allowed.join(", "))));
                }
            },
        };
        let rate = match raw {
            Some(w) => self.int(&w.wallet_feerate_sat_vb, "watchtower.wallet_feerate_sat_vb", 1..=10_000, d.wallet_feerate_sat_vb as i64)? as u64,
            None => d.wallet_feerate_sat_vb,
        };
        let races = races.iter().enumerate().map(|(i, r)| self.race(i, r.get_ref(), topo)).collect::<R<Vec<_>>>()?;
        Ok(WatchtowerSpec { mode, wallet_feerate_sat_vb: rate, races })
    }

    fn race(&self, i: usize, r: &RawRace, topo: &Topology) -> R<RaceSpec> {
        let field = format!("race[{i}].wallet");
        let wallet = match super::parse_node(r.wallet.get_ref(), topo) {
            Ok(NodePattern::Node(NodeId::Wallet(w))) => w,
            Ok(_) => return Err(self.err(r.wallet.span(), field, format!("expected one wallet (wallet:N), found `{}`", r.wallet.get_ref()))),
            Err(e) => return Err(self.err(r.wallet.span(), field, e)),
        };
        let at = self.secs(&Some(r.at_s.clone()), &format!("race[{i}].at_s"), Zero::Allowed)?.unwrap_or(Micros::ZERO);
        Ok(RaceSpec { wallet, at })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Scenario, ScenarioError};
    use super::*;

    const HEAD: &str = "name = \"x\"\ndescription = \"d\"\n";

    fn err(text: &str) -> ScenarioError {
        Scenario::parse("scenarios/x.toml", &format!("{HEAD}{text}")).expect_err(text)
    }

    #[test]
    fn watchtower_keys_parse_and_default_off() {
        let s = Scenario::parse(
            "scenarios/x.toml",
            &format!("{HEAD}[watchtower]\nmode = \"absolute_height\"\nwallet_feerate_sat_vb = 7\n\n[[race]]\nwallet = \"wallet:0\"\nat_s = 100.0\n"),
        )
        .expect("parses");
        assert_eq!(s.watchtower.mode, WatchtowerMode::AbsoluteHeight);
        assert_eq!(s.watchtower.wallet_feerate_sat_vb, 7);
        assert_eq!(s.watchtower.races, vec![RaceSpec { wallet: WalletId(0), at: Micros::from_secs(100) }]);
        let plain = Scenario::parse("scenarios/x.toml", HEAD).expect("parses");
        assert_eq!(plain.watchtower, WatchtowerSpec::default());
    }

    #[test]
    fn bad_watchtower_keys_name_file_line_and_field() {
        let e = err("[watchtower]\nmode = \"sometimes\"\n");
        assert_eq!((e.line, e.column, e.field.as_str()), (4, 8, "watchtower.mode"), "{e}");
        assert!(e.message.contains("absolute_height"), "{e}");
        let e = err("[watchtower]\nwallet_feerate_sat_vb = 0\n");
        assert_eq!((e.line, e.field.as_str()), (4, "watchtower.wallet_feerate_sat_vb"), "{e}");
        let e = err("[[race]]\nwallet = \"operator:1\"\nat_s = 1.0\n");
        assert_eq!((e.line, e.field.as_str()), (4, "race[0].wallet"), "{e}");
        let e = err("[[race]]\nwallet = \"wallet:0\"\nat_s = -2.0\n");
        assert_eq!((e.line, e.field.as_str()), (5, "race[0].at_s"), "{e}");
        let e = err("[watchtower]\nmod = \"off\"\n");
        assert_eq!(e.field, "watchtower.mod", "{e}");
    }
}
