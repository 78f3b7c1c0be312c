//! Per-operation latency in simulated time (deposit, send, claim, exit): samples, p50/p99/max,
//! a histogram, and the `[budgets]` judgement (an overrun is `budget:<op>.<stat>`).
use super::{finding, percentile, Finding};
use crate::report::{HistogramBucket, OpLatency};
use crate::scenario::{budget_name, Budgets, LatencyOp, Stat};
use reference_node::types::{Micros, WalletId};
use std::collections::{BTreeMap, VecDeque};

/// Upper bounds (seconds) of the histogram buckets; the last bucket is open (+∞). Spans a
/// sub-second claim to a 2000-block unilateral exit.
pub const BUCKETS_S: [f64; 16] =
    [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 3600.0, 21_600.0, 86_400.0, 604_800.0, 2_592_000.0];

/// Start times of operations not finished yet, and the samples of finished ones.
#[derive(Default)]
pub struct Latencies {
    /// (wallet, op) → start times, oldest first: a wallet runs its commands in order.
    started: BTreeMap<(WalletId, LatencyOp), VecDeque<Micros>>,
    samples: BTreeMap<LatencyOp, Vec<f64>>,
}

impl Latencies {
    pub fn start(&mut self, wallet: WalletId, op: LatencyOp, at: Micros) {
        self.started.entry((wallet, op)).or_default().push_back(at);
    }
    /// The oldest pending `op` of `wallet` finished at `at` (a sample when `ok`, dropped when
    /// it failed or was skipped).
    pub fn finish(&mut self, wallet: WalletId, op: LatencyOp, at: Micros, ok: bool) {
        let Some(start) = self.started.get_mut(&(wallet, op)).and_then(VecDeque::pop_front) else { return };
        if ok {
            self.sample(op, at.saturating_sub(start));
        }
    }
    pub fn sample(&mut self, op: LatencyOp, d: Micros) {
        self.samples.entry(op).or_default().push(d.as_secs_f64());
    }
    pub fn samples(&self, op: LatencyOp) -> &[f64] {
        self.samples.get(&op).map(Vec::as_slice).unwrap_or_default()
    }

    /// Summary and histogram of one operation, with its budgets.
    pub fn summary(&self, op: LatencyOp, budgets: &Budgets) -> OpLatency {
        let mut v = self.samples(op).to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let mut counts = [0u64; BUCKETS_S.len() + 1];
        for x in &v {
            let i = BUCKETS_S.iter().position(|b| x <= b).unwrap_or(BUCKETS_S.len());
            counts[i] += 1;
        }
        let histogram = counts
            .iter()
            .enumerate()
            .map(|(i, c)| HistogramBucket { le_s: BUCKETS_S.get(i).copied(), count: *c })
            .collect();
        let b = |s| budgets.op(op, s).map(|m: Micros| m.as_secs_f64());
        OpLatency {
            samples: v.len() as u64,
            p50_s: percentile(&v, 50.0),
            p99_s: percentile(&v, 99.0),
            max_s: v.last().copied(),
            budget_p50_s: b(Stat::P50),
            budget_p99_s: b(Stat::P99),
            budget_max_s: b(Stat::Max),
            histogram,
        }
    }

    /// `budget:<op>.<stat>` for every budget the samples exceed.
    pub fn budget_findings(&self, budgets: &Budgets) -> Vec<Finding> {
        let mut found = Vec::new();
        for op in LatencyOp::ALL {
            let s = self.summary(op, budgets);
            for stat in Stat::ALL {
                let (got, limit) = match stat {
                    Stat::P50 => (s.p50_s, s.budget_p50_s),
                    Stat::P99 => (s.p99_s, s.budget_p99_s),
                    Stat::Max => (s.max_s, s.budget_max_s),
                };
                if let (Some(got), Some(limit)) = (got, limit) {
                    if got > limit {
                        let name = budget_name(op, stat);
                        found.push(finding(
                            name,
                            name.to_string(),
                            format!("{} latency {} {got:.3}s exceeds budget {limit:.3}s ({} samples)", op.as_str(), stat.as_str(), s.samples),
                        ));
                    }
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_matching_histogram_and_budget_overrun() {
        let mut l = Latencies::default();
        let w = WalletId(1);
        l.start(w, LatencyOp::Deposit, Micros::from_secs(1));
        l.start(w, LatencyOp::Deposit, Micros::from_secs(2));
        l.finish(w, LatencyOp::Deposit, Micros::from_secs(4), true); // 3 s
        l.finish(w, LatencyOp::Deposit, Micros::from_secs(40), false); // failed: no sample
        l.finish(w, LatencyOp::Deposit, Micros::from_secs(50), true); // nothing pending: ignored
        assert_eq!(l.samples(LatencyOp::Deposit), &[3.0]);
        let mut budgets = Budgets::default();
        let s = l.summary(LatencyOp::Deposit, &budgets);
        assert_eq!((s.samples, s.max_s), (1, Some(3.0)));
        assert_eq!(s.histogram.iter().map(|b| b.count).sum::<u64>(), 1);
        assert_eq!(s.histogram.iter().find(|b| b.count == 1).unwrap().le_s, Some(5.0));
        assert!(l.budget_findings(&budgets).is_empty(), "no budget, no finding");
        budgets.ops[LatencyOp::Deposit as usize][Stat::Max as usize] = Some(Micros::from_secs(10));
        assert!(l.budget_findings(&budgets).is_empty(), "within budget");
        budgets.ops[LatencyOp::Deposit as usize][Stat::P99 as usize] = Some(Micros::from_secs(2));
        let f = l.budget_findings(&budgets);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].invariant, "budget:deposit.p99");
    }
}
