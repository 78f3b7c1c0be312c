//! `[ssp]`: the service provider (spark-protocol §1). Its presence adds one more wallet node, the
//! SSP (`wallet:N` where N = `topology.wallets`, also named `ssp` in node fields), which deposits
//! its liquidity at the start and then serves swaps, cooperative exits and Lightning.

use super::{Validator, Zero, R, S};
use reference_node::msg::ssp::CoopExitFault;
use reference_node::msg::SwapVersion;
use reference_node::types::{Micros, WalletId};
use serde::Deserialize;
use toml::Spanned;

/// `[ssp]`: the service provider's liquidity.
/// - `deposits` = [131072, 65536, 32768, 16384, 8192, 4096]: the leaves (sats each, > 0) the SSP
///   deposits in the first 10 simulated seconds: what it hands out in swaps and pays with.
/// - `l1_coins` = [1000000, 1000000, 1000000, 1000000]: its L1 coins (sats each, > 0) beyond
///   those deposits, which fund cooperative-exit payouts.
/// - `lightning_failure_rate` = 0.0: the chance (0..=1) that a Lightning payment through the
///   simulated network fails (a receive's payer never pays; 1.0 = every payment fails). Drawn
///   per payment hash from the run's "ssp/lightning" stream.
/// - `lightning_payer_delay_s` = 5.0 (> 0): how long after the invoice the payer's HTLC arrives.
/// - `swap_version` = 3: how leaf swaps are made atomic (spark-protocol §4.3): 2 = adaptor
///   signatures (the user's completed signature releases both legs), 3 = the operators settle
///   both legs together as soon as the SSP's counter transfers are in.
/// - `[[ssp.swap]]`: `wallet` ("wallet:N", a user, not the SSP), `at_s` ≥ 0, `amounts` (1 to 64
///   powers of two): at `at_s` the wallet swaps one leaf worth exactly the amounts' sum for SSP
///   leaves of those denominations (`Command::Swap`).
/// - `coop_exit_fault` (optional): a scripted misbehaviour in cooperative exits; allowed:
///   "never_broadcast" (the SSP takes the signed connector refunds and never broadcasts the exit
///   tx; scenario/coop_exit.rs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SspSpec {
    pub deposits: Vec<u64>,
    pub l1_coins: Vec<u64>,
    /// `lightning_failure_rate` in parts per million.
    pub lightning_failure_ppm: u32,
    pub lightning_payer_delay: reference_node::types::Micros,
    pub swap_version: SwapVersion,
    pub swaps: Vec<SwapAt>,
    pub coop_exit_fault: Option<CoopExitFault>,
}

/// One `[[ssp.swap]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapAt {
    pub wallet: WalletId,
    pub at: Micros,
    pub amounts: Vec<u64>,
}

/// `coop_exit_fault` names, as written in scenario files.
pub const COOP_EXIT_FAULTS: &[(&str, CoopExitFault)] = &[("never_broadcast", CoopExitFault::NeverBroadcast)];

impl Default for SspSpec {
    fn default() -> Self {
        SspSpec { deposits: vec![131_072, 65_536, 32_768, 16_384, 8_192, 4_096], l1_coins: vec![1_000_000; 4], lightning_failure_ppm: 0, lightning_payer_delay: reference_node::types::Micros::from_secs(5), swap_version: SwapVersion::V3, swaps: Vec::new(), coop_exit_fault: None }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSsp {
    deposits: S<Vec<Spanned<i64>>>,
    l1_coins: S<Vec<Spanned<i64>>>,
    lightning_failure_rate: S<f64>,
    lightning_payer_delay_s: S<f64>,
    swap_version: S<i64>,
    #[serde(default)]
    swap: Vec<Spanned<RawSwap>>,
    coop_exit_fault: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSwap {
    wallet: Spanned<String>,
    at_s: S<f64>,
    amounts: Spanned<Vec<Spanned<i64>>>,
}

/// The scenario name of an SSP fault (the writer's inverse of parsing).
pub fn coop_exit_fault_name(f: Option<CoopExitFault>) -> Option<(&'static str, CoopExitFault)> {
    COOP_EXIT_FAULTS.iter().copied().find(|(_, x)| Some(*x) == f)
}

/// Bitcoin's supply cap: no single amount can be larger.
const MAX_SATS: i64 = 2_100_000_000_000_000;

impl Validator<'_> {
    /// `users`: how many user wallets the topology has (the SSP is not one of them).
    pub(super) fn ssp(&self, raw: &RawSsp, users: u16) -> R<SspSpec> {
        let d = SspSpec::default();
        let swap_version = match raw.swap_version.as_ref() {
            None => d.swap_version,
            Some(v) => match *v.get_ref() {
                2 => SwapVersion::V2,
                3 => SwapVersion::V3,
                x => return Err(self.err(v.span(), "ssp.swap_version", format!("expected 2 (adaptor) or 3 (operator-enforced), found {x}"))),
            },
        };
        let mut swaps = Vec::new();
        for (i, s) in raw.swap.iter().enumerate() {
            let (span, s) = (s.span(), s.get_ref());
            let field = |k: &str| format!("ssp.swap[{i}].{k}");
            let wallet = s
                .wallet
                .get_ref()
                .strip_prefix("wallet:")
                .and_then(|n| n.parse::<u16>().ok())
                .filter(|n| *n < users)
                .map(WalletId)
                .ok_or_else(|| self.err(s.wallet.span(), field("wallet"), format!("expected a user wallet wallet:0..wallet:{}, found {:?}", users.saturating_sub(1), s.wallet.get_ref())))?;
            let at = self.secs(&s.at_s, &field("at_s"), Zero::Allowed)?.ok_or_else(|| self.err(span.clone(), field("at_s"), "needs `at_s`"))?;
            let list = s.amounts.get_ref();
            if list.is_empty() || list.len() > 64 {
                return Err(self.err(s.amounts.span(), field("amounts"), format!("expected 1 to 64 amounts, found {}", list.len())));
            }
            let mut amounts = Vec::new();
            for (j, a) in list.iter().enumerate() {
                match u64::try_from(*a.get_ref()) {
                    Ok(x) if x.is_power_of_two() && x <= MAX_SATS as u64 => amounts.push(x),
                    _ => return Err(self.err(a.span(), format!("ssp.swap[{i}].amounts[{j}]"), format!("expected a power of two in sats, found {}", a.get_ref()))),
                }
            }
            swaps.push(SwapAt { wallet, at, amounts });
        }
        Ok(SspSpec {
            deposits: self.sats_list(&raw.deposits, "ssp.deposits", d.deposits)?,
            l1_coins: self.sats_list(&raw.l1_coins, "ssp.l1_coins", d.l1_coins)?,
            lightning_failure_ppm: self.failure_ppm(&raw.lightning_failure_rate, "ssp.lightning_failure_rate", d.lightning_failure_ppm)?,
            lightning_payer_delay: self.secs(&raw.lightning_payer_delay_s, "ssp.lightning_payer_delay_s", super::Zero::Forbidden)?.unwrap_or(d.lightning_payer_delay),
            swap_version,
            swaps,
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
    fn swap_keys_parse_and_bad_ones_name_their_field() {
        let s = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[ssp]\nswap_version = 2\n[[ssp.swap]]\nwallet = \"wallet:1\"\nat_s = 5.0\namounts = [4, 2, 2]\n")).unwrap();
        let ssp = s.ssp.unwrap();
        assert_eq!(ssp.swap_version, reference_node::msg::SwapVersion::V2);
        assert_eq!(ssp.swaps, vec![super::SwapAt { wallet: WalletId(1), at: reference_node::types::Micros::from_secs(5), amounts: vec![4, 2, 2] }]);
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[ssp]\nswap_version = 4\n")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("ssp.swap_version", 6), "{e}");
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[ssp]\n[[ssp.swap]]\nwallet = \"wallet:0\"\nat_s = 1.0\namounts = [4, 3]\n")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("ssp.swap[0].amounts[1]", 9), "{e}");
        // The SSP (wallet:2 here) cannot swap with itself.
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[ssp]\n[[ssp.swap]]\nwallet = \"wallet:2\"\nat_s = 1.0\namounts = [4]\n")).unwrap_err();
        assert_eq!(e.field, "ssp.swap[0].wallet", "{e}");
    }

    #[test]
    fn bad_ssp_keys_name_their_field() {
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[ssp]\nl1_coins = [5, 0]\n")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("ssp.l1_coins[1]", 6), "{e}");
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[[fault]]\nkind = \"crash\"\nnode = \"ssp\"\nat_s = 5.0\n")).unwrap_err();
        assert!(e.message.contains("no [ssp]"), "{e}");
    }
}
