//! `sometimes` properties: named states a fault mix is meant to reach. Each run counts how often
//! each one fired; a campaign fails a property that never fired on any seed, so a fault mix that
//! never reaches the interesting states cannot pass silently. (`always` are the I-* invariants,
//! `eventually` the L-* checks of the liveness phase.)
use std::collections::BTreeMap;

/// Every registered sometimes-property: (name, what it means).
pub const SOMETIMES: &[(&str, &str)] = &[
    ("deposit-confirmed", "a wallet saw its deposit confirm on L1"),
    ("transfer-claimed", "a receiver claimed a transfer"),
    ("transfer-returned", "a send failed and its leaf went back to the sender"),
    ("transfer-cancelled-after-expiry", "an operator moved a transfer to RETURNED after its expiry"),
    ("claim-retried", "a claim attempt failed and the wallet retried it"),
    ("settle-rolled-back", "a receiver two-phase settle was rolled back to SENDER_KEY_TWEAKED"),
    ("gossip-retry", "a gossip retry pass ran with a row still undelivered"),
    ("crash-during-send", "an operator crashed while a transfer was before SENDER_KEY_TWEAKED somewhere"),
    ("crash-during-two-phase-settle", "an operator crashed while a receiver settle was between phase 1 and phase 2"),
    ("restart-with-transfer-in-flight", "an operator restarted while a transfer was not terminal somewhere"),
    ("identifiable-abort", "a signing round aborted naming the culprits of invalid signature shares"),
    ("dkg-round-abandoned", "a DKG round was rejected or abandoned by an operator"),
    ("exit-confirmed", "a unilateral exit confirmed its refund on L1"),
    ("command-skipped", "a workload command could not be carried out"),
    ("deposit-reorged", "an L1 reorg took a confirmed deposit off the chain"),
    ("exit-reorged", "an L1 reorg took a confirmed exit transaction off the chain"),
    // Lightning (checker/lightning.rs).
    ("lightning-receive-settled", "the SSP learned a receive's preimage from the operators and settled the payer's HTLC"),
    ("lightning-receive-failed", "the SSP failed a payer's HTLC back (the preimage swap was returned or never ran)"),
    // Renew (wallet/renew.rs): a wallet finalized a renew of each variant.
    ("renew-refund", "a wallet finalized a renew-refund (node tx − 100, refunds back to 2000)"),
    ("renew-node", "a wallet finalized a renew-node (split node at CSV 0, new node at 2000)"),
    ("renew-node-zero", "a wallet finalized a renew-node-zero (new CSV-0 node on the old node's output)"),
    // Lightning send (checker/lightning_send.rs).
    ("lightning-send-settled", "a Lightning send settled: the SSP paid, gave the operators the preimage and the sender learned it"),
    ("lightning-send-returned", "a Lightning send failed and its leaves went back to the sender"),
];

/// Per-run counts of every sometimes-property (registered ones start at 0, so a report shows
/// which never fired).
#[derive(Clone, Debug)]
pub struct Coverage {
    counts: BTreeMap<&'static str, u64>,
}

impl Default for Coverage {
    fn default() -> Self {
        Coverage { counts: SOMETIMES.iter().map(|(n, _)| (*n, 0)).collect() }
    }
}

impl Coverage {
    /// Counts one firing of `name` (a name outside [`SOMETIMES`] is added: other checkers may
    /// register their own).
    pub fn hit(&mut self, name: &'static str) {
        *self.counts.entry(name).or_insert(0) += 1;
    }
    pub fn count(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }
    pub fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts
    }
    /// The registered properties that never fired in this run.
    pub fn never_fired(&self) -> Vec<&'static str> {
        self.counts.iter().filter(|(_, c)| **c == 0).map(|(n, _)| *n).collect()
    }
}

/// Across a campaign: the sometimes-properties that never fired in any of `runs` (each run's
/// `checker.sometimes` map). A campaign fails on any of them, so a fault mix that never reaches
/// the interesting states cannot pass silently.
pub fn never_fired_across<'a>(runs: impl IntoIterator<Item = &'a BTreeMap<String, u64>>) -> Vec<String> {
    let mut total: BTreeMap<String, u64> = SOMETIMES.iter().map(|(n, _)| (n.to_string(), 0)).collect();
    for run in runs {
        for (name, count) in run {
            *total.entry(name.clone()).or_insert(0) += count;
        }
    }
    total.into_iter().filter(|(_, c)| *c == 0).map(|(n, _)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn campaign_fails_what_no_seed_reached() {
        let a: BTreeMap<String, u64> = [("claim-retried".to_string(), 1)].into();
        let b: BTreeMap<String, u64> = [("gossip-retry".to_string(), 2), ("claim-retried".to_string(), 0)].into();
        let never = never_fired_across([&a, &b]);
        assert!(!never.contains(&"claim-retried".to_string()) && !never.contains(&"gossip-retry".to_string()));
        assert!(never.contains(&"crash-during-two-phase-settle".to_string()));
        assert_eq!(never.len(), SOMETIMES.len() - 2);
    }

    #[test]
    fn registered_start_at_zero_and_count() {
        let mut c = Coverage::default();
        assert_eq!(c.never_fired().len(), SOMETIMES.len());
        c.hit("claim-retried");
        c.hit("claim-retried");
        c.hit("theft-attempted");
        assert_eq!(c.count("claim-retried"), 2);
        assert_eq!(c.count("theft-attempted"), 1);
        assert!(!c.never_fired().contains(&"claim-retried"));
        assert!(c.never_fired().contains(&"gossip-retry"));
    }
}
