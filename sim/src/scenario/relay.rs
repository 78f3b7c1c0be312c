//! `[[workload.relay]]`: one leaf passed round a ring of wallets at a fixed pace, so a single
//! leaf is transferred hundreds of times (renew, spark-protocol §4.4: `scenarios/long-lived-leaf.toml`).
//! A random workload spreads its transfers over every wallet and every leaf; a relay targets one.

use super::{Allow, NodePattern, Topology, TransferAt, Validator, Zero, R, S};
use reference_node::types::{Micros, NodeId, WalletId};
use serde::Deserialize;
use toml::Spanned;

/// One `[[workload.relay]]` entry (part of the explicit workload): `transfers` sends, the k-th at
/// `start_s + k × every_s` from `wallets[k mod n]` to `wallets[(k + 1) mod n]`.
/// - `wallets` (required): two or more different wallets (`wallet:N`). A wallet sends its first
///   available leaf, so a relay targets one leaf when its wallets hold nothing else: give the
///   leaf to `wallets[0]` before `start_s` (a deposit, or a transfer of a split child).
/// - `start_s` (required): when the first send is given, in simulated seconds.
/// - `every_s` (required, > 0): the gap between two sends; leave the receiver time to claim
///   (a claim is a few round trips), else the next send finds no leaf and is skipped.
/// - `transfers` (required, 1 ..= 100 000): how many sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayAt {
    pub wallets: Vec<WalletId>,
    pub start: Micros,
    pub every: Micros,
    pub transfers: u32,
}

impl RelayAt {
    /// The relay as single transfers, in time order.
    pub fn transfers(&self) -> Vec<TransferAt> {
        let n = self.wallets.len();
        (0..self.transfers as usize)
            .map(|k| TransferAt { at: self.start + self.every * k as u64, from: self.wallets[k % n], to: self.wallets[(k + 1) % n] })
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelay {
    wallets: Spanned<Vec<Spanned<String>>>,
    start_s: S<f64>,
    every_s: S<f64>,
    transfers: S<i64>,
}

/// Upper bound on `transfers`: a relay is for long-lived leaves, not for a load test.
const MAX_RELAY_TRANSFERS: i64 = 100_000;

impl Validator<'_> {
    pub(super) fn relays(&self, raw: &[Spanned<RawRelay>], topo: &Topology) -> R<Vec<RelayAt>> {
        let mut out = Vec::new();
        for (i, entry) in raw.iter().enumerate() {
            let (span, r) = (entry.span(), entry.get_ref());
            let field = |k: &str| format!("workload.relay[{i}].{k}");
            let mut wallets: Vec<WalletId> = Vec::new();
            for (j, w) in r.wallets.get_ref().iter().enumerate() {
                let f = format!("workload.relay[{i}].wallets[{j}]");
                let id = match self.pattern(w, &f, topo, Allow::SingleNode)? {
                    NodePattern::Node(NodeId::Wallet(id)) => id,
                    other => return Err(self.err(w.span(), f, format!("expected a wallet (wallet:N), found {other}"))),
                };
                if wallets.contains(&id) {
                    return Err(self.err(w.span(), f, format!("{} is already in the relay", w.get_ref())));
                }
                wallets.push(id);
            }
            if wallets.len() < 2 {
                return Err(self.err(r.wallets.span(), field("wallets"), format!("expected at least 2 different wallets, found {}", wallets.len())));
            }
            let start = self.secs(&r.start_s, &field("start_s"), Zero::Allowed)?.ok_or_else(|| self.err(span.clone(), field("start_s"), "needs `start_s`"))?;
            let every = self.secs(&r.every_s, &field("every_s"), Zero::Forbidden)?.ok_or_else(|| self.err(span.clone(), field("every_s"), "needs `every_s`"))?;
            if r.transfers.is_none() {
                return Err(self.err(span.clone(), field("transfers"), "needs `transfers`"));
            }
            let transfers = self.int(&r.transfers, &field("transfers"), 1..=MAX_RELAY_TRANSFERS, 1)? as u32;
            out.push(RelayAt { wallets, start, every, transfers });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    const HEAD: &str = "name = \"x\"\ndescription = \"d\"\n[topology]\nwallets = 3\n";

    #[test]
    fn a_relay_parses_and_alternates_its_wallets() {
        let s = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[[workload.relay]]\nwallets = [\"wallet:1\", \"wallet:2\"]\nstart_s = 10.0\nevery_s = 5.0\ntransfers = 3\n")).unwrap();
        let e = s.workload.explicit.expect("a relay makes the workload explicit");
        let r = &e.relays[0];
        assert_eq!(r, &RelayAt { wallets: vec![WalletId(1), WalletId(2)], start: Micros::from_secs(10), every: Micros::from_secs(5), transfers: 3 });
        let t = r.transfers();
        let hops: Vec<(u64, u16, u16)> = t.iter().map(|t| (t.at.0 / 1_000_000, t.from.0, t.to.0)).collect();
        assert_eq!(hops, vec![(10, 1, 2), (15, 2, 1), (20, 1, 2)]);
    }

    #[test]
    fn bad_relays_name_their_field() {
        let err = |body: &str| Scenario::parse("scenarios/x.toml", &format!("{HEAD}[[workload.relay]]\n{body}")).unwrap_err();
        let e = err("wallets = [\"wallet:1\"]\nstart_s = 1.0\nevery_s = 1.0\ntransfers = 2\n");
        assert_eq!((e.field.as_str(), e.line, e.column), ("workload.relay[0].wallets", 6, 11), "{e}");
        let e = err("wallets = [\"wallet:1\", \"wallet:1\"]\nstart_s = 1.0\nevery_s = 1.0\ntransfers = 2\n");
        assert_eq!(e.field, "workload.relay[0].wallets[1]", "{e}");
        let e = err("wallets = [\"wallet:1\", \"operator:0\"]\nstart_s = 1.0\nevery_s = 1.0\ntransfers = 2\n");
        assert_eq!(e.field, "workload.relay[0].wallets[1]", "{e}");
        let e = err("wallets = [\"wallet:1\", \"wallet:9\"]\nstart_s = 1.0\nevery_s = 1.0\ntransfers = 2\n");
        assert_eq!(e.field, "workload.relay[0].wallets[1]", "{e}");
        let e = err("wallets = [\"wallet:1\", \"wallet:2\"]\nstart_s = 1.0\nevery_s = 0.0\ntransfers = 2\n");
        assert_eq!((e.field.as_str(), e.line), ("workload.relay[0].every_s", 8), "{e}");
        let e = err("wallets = [\"wallet:1\", \"wallet:2\"]\nstart_s = 1.0\nevery_s = 1.0\ntransfers = 0\n");
        assert_eq!((e.field.as_str(), e.line), ("workload.relay[0].transfers", 9), "{e}");
        let e = err("wallets = [\"wallet:1\", \"wallet:2\"]\nevery_s = 1.0\ntransfers = 2\n");
        assert_eq!(e.field, "workload.relay[0].start_s", "{e}");
        let e = err("wallets = [\"wallet:1\", \"wallet:2\"]\nstart_s = 1.0\nevery_s = 1.0\n");
        assert_eq!(e.field, "workload.relay[0].transfers", "{e}");
        let e = Scenario::parse("scenarios/x.toml", &format!("{HEAD}[workload]\ntransfers = 4\n[[workload.relay]]\nwallets = [\"wallet:1\", \"wallet:2\"]\nstart_s = 1.0\nevery_s = 1.0\ntransfers = 2\n")).unwrap_err();
        assert_eq!(e.field, "workload.transfers", "a relay is explicit: the random keys are refused ({e})");
    }
}
