//! `[ssp]`: the service provider (spark-protocol §1). Its presence adds one more wallet node, the
//! SSP (`wallet:N` where N = `topology.wallets`, also named `ssp` in node fields), which deposits
//! its liquidity at the start and then serves swaps, cooperative exits and Lightning.

use super::{Validator, R, S};
use reference_node::msg::ssp::CoopExitFault;
use serde::Deserialize;
use toml::Spanned;

/// `[ssp]`: the service provider's liquidity.
/// - `deposits` = [131072, 65536, 32768, 16384, 8192, 4096]: the leaves (sats each, > 0) the SSP
///   deposits in the first 10 simulated seconds: what it hands out in swaps and pays with.
/// - `l1_coins` = [1000000, 1000000, 1000000, 1000000]: its L1 coins (sats each, > 0) beyond
///   those deposits, which fund cooperative-exit payouts.
/// - `coop_exit_fault` (optional): a scripted misbehaviour in cooperative exits; allowed:
///   "never_broadcast" (the SSP takes the signed connector refunds and never broadcasts the exit
///   tx; scenario/coop_exit.rs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SspSpec {
    pub deposits: Vec<u64>,
    pub l1_coins: Vec<u64>,
    pub coop_exit_fault: Option<CoopExitFault>,
}

/// `coop_exit_fault` names, as written in scenario files.
pub const COOP_EXIT_FAULTS: &[(&str, CoopExitFault)] = &[("never_broadcast", CoopExitFault::NeverBroadcast)];

impl Default for SspSpec {
    fn default() -> Self {
        SspSpec { deposits: vec![131_072, 65_536, 32_768, 16_384, 8_192, 4_096], l1_coins: vec![1_000_000; 4], coop_exit_fault: None }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSsp {
    deposits: S<Vec<Spanned<i64>>>,
    l1_coins: S<Vec<Spanned<i64>>>,
    coop_exit_fault: S<String>,
}

/// The scenario name of an SSP fault (the writer's inverse of parsing).
pub fn coop_exit_fault_name(f: Option<CoopExitFault>) -> Option<(&'static str, CoopExitFault)> {
    COOP_EXIT_FAULTS.iter().copied().find(|(_, x)| Some(*x) == f)
}

/// Bitcoin's supply cap: no single amount can be larger.
const MAX_SATS: i64 = 2_100_000_000_000_000;

impl Validator<'_> {
    pub(super) fn ssp(&self, raw: &RawSsp) -> R<SspSpec> {
        let d = SspSpec::default();
        Ok(SspSpec {
            deposits: self.sats_list(&raw.deposits, "ssp.deposits", d.deposits)?,
            l1_coins: self.sats_list(&raw.l1_coins, "ssp.l1_coins", d.l1_coins)?,
            coop_exit_fault: match &raw.coop_exit_fault {
                None => None,
                Some(name) => match COOP_EXIT_FAULTS.iter().find(|(n, _)| n == name.get_ref()) {
                    Some((_, f)) => Some(*f),
                    None => {
                        let allowed: Vec<&str> = COOP_EXIT_FAULTS.iter().map(|(n, _)| *n).collect();
                        return Err(self.err(name.span(), "ssp.coop_exit_fault", format!("unknown fault `{}`: allowed: {}", name.get_ref(), allowed.join(", "))));
                    }
                },
            },
        })
    }

    /// A list of amounts, each in 1..=21M BTC; empty is allowed (an SSP may start with nothing).
    fn sats_list(&self, v: &S<Vec<Spanned<i64>>>, field: &str, default: Vec<u64>) -> R<Vec<u64>> {
        let Some(list) = v else { return Ok(default) };
        list.get_ref()
            .iter()
            .enumerate()
            .map(|(i, a)| match *a.get_ref() {
                x @ 1..=MAX_SATS => Ok(x as u64),
                x => Err(self.err(a.span(), format!("{field}[{i}]"), format!("expected an amount in 1..={MAX_SATS} sats, found {x}"))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::Scenario;
    use reference_node::types::{NodeId, WalletId};

    const HEAD: &str = "name = \"x\"\ndescription = \"d\"\n[topology]\nwallets = 2\n";

    #[test]
    fn an_ssp_table_adds_one_wallet_named_ssp() {
        let s = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[ssp]\ndeposits = [1024]\n[[fault]]\nkind = \"crash\"\nnode = \"ssp\"\nat_s = 5.0\n")).unwrap();
        assert!(s.topology.ssp);
        assert_eq!(s.topology.ssp_wallet(), Some(WalletId(2)));
        assert_eq!(s.ssp.as_ref().map(|x| x.deposits.clone()), Some(vec![1024]));
        assert_eq!(s.topology.node_ids().last(), Some(&NodeId::Wallet(WalletId(2))));
        let plain = Scenario::parse("scenarios/x.toml", HEAD).unwrap();
        assert!(!plain.topology.ssp && plain.ssp.is_none());
    }

    #[test]
    fn bad_ssp_keys_name_their_field() {
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[ssp]\nl1_coins = [5, 0]\n")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("ssp.l1_coins[1]", 6), "{e}");
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[[fault]]\nkind = \"crash\"\nnode = \"ssp\"\nat_s = 5.0\n")).unwrap_err();
        assert!(e.message.contains("no [ssp]"), "{e}");
    }
}
