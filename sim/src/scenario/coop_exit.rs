//! `[[workload.coop_exit]]`: cooperative exits (spark-protocol §4.5) a user asks the SSP for, and
//! `[ssp] coop_exit_fault`, the SSP's scripted misbehaviour (parsed in scenario/ssp.rs).

use super::{Allow, NodePattern, Topology, Validator, Zero, R, S};
use reference_node::types::{Micros, NodeId, WalletId};
use serde::Deserialize;
use toml::Spanned;

/// One `[[workload.coop_exit]]` entry: at `at_s` the wallet withdraws one available leaf of at
/// least the SSP's minimum (10 000 sats) to its own L1 key through the SSP. Needs an `[ssp]`.
/// - `wallet` (required): `wallet:N`, a user (not the SSP itself).
/// - `at_s` (required): when, in simulated seconds.
/// - `stall` = false: the user stalls after the SSP broadcast: it never releases its key tweak,
///   so the SSP has to exit the leaf on L1 with its connector refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopExitAt {
    pub wallet: WalletId,
    pub at: Micros,
    pub stall: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCoopExit {
    wallet: Spanned<String>,
    at_s: S<f64>,
    stall: S<bool>,
}

impl Validator<'_> {
    pub(super) fn coop_exits(&self, raw: &[Spanned<RawCoopExit>], topo: &Topology) -> R<Vec<CoopExitAt>> {
        let mut out = Vec::new();
        for (i, entry) in raw.iter().enumerate() {
            let (span, c) = (entry.span(), entry.get_ref());
            let field = |k: &str| format!("workload.coop_exit[{i}].{k}");
            let wallet = match self.pattern(&c.wallet, &field("wallet"), topo, Allow::SingleNode)? {
                NodePattern::Node(NodeId::Wallet(w)) if topo.ssp_wallet() != Some(w) => w,
                other => return Err(self.err(c.wallet.span(), field("wallet"), format!("expected a user wallet (wallet:N, not the SSP), found {other}"))),
            };
            if !topo.ssp {
                return Err(self.err(span, field("wallet"), "a cooperative exit needs a service provider, and this scenario has no [ssp] table"));
            }
            let at = self.secs(&c.at_s, &field("at_s"), Zero::Allowed)?.ok_or_else(|| self.err(span.clone(), field("at_s"), "needs `at_s`"))?;
            out.push(CoopExitAt { wallet, at, stall: c.stall.as_ref().is_some_and(|b| *b.get_ref()) });
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
    fn coop_exits_parse_with_their_stall_flag_and_the_ssp_fault() {
        let s = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[[workload.coop_exit]]\nwallet = \"wallet:1\"\nat_s = 700.0\nstall = true\n[ssp]\ncoop_exit_fault = \"never_broadcast\"\n")).unwrap();
        assert_eq!(s.coop_exits, vec![CoopExitAt { wallet: WalletId(1), at: Micros::from_secs(700), stall: true }]);
        assert_eq!(s.ssp.unwrap().coop_exit_fault, Some(reference_node::msg::ssp::CoopExitFault::NeverBroadcast));
    }

    #[test]
    fn bad_coop_exits_name_their_field() {
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[[workload.coop_exit]]\nwallet = \"wallet:0\"\nat_s = 5.0\n")).unwrap_err();
        assert_eq!(e.field, "workload.coop_exit[0].wallet", "{e}");
        assert!(e.message.contains("no [ssp]"), "{e}");
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[[workload.coop_exit]]\nwallet = \"ssp\"\nat_s = 5.0\n[ssp]\n")).unwrap_err();
        assert!(e.message.contains("not the SSP"), "{e}");
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[[workload.coop_exit]]\nwallet = \"wallet:0\"\n[ssp]\n")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("workload.coop_exit[0].at_s", 5), "{e}");
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[ssp]\ncoop_exit_fault = \"steal\"\n")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("ssp.coop_exit_fault", 6), "{e}");
    }
}
