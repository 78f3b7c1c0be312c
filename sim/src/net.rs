//! The network model: per-link latency (uniform, fixed or heavy-tailed), loss, duplication and
//! reordering, partition windows (symmetric or one-way, possibly flapping) and slow nodes.
//!
//! Decisions are made at send time. Every routed send between two protocol nodes consumes
//! exactly two draws from the "network" stream, loss first, then latency, whatever the
//! outcome: the stream's position then depends only on how many messages were sent, not on
//! which were lost or partitioned, so adding or removing a partition perturbs as little as
//! possible. Duplication and reordering draw from their own streams ("network/duplicate",
//! "network/reorder"), and only on links where they are switched on, so a run that does not
//! use them draws exactly what it drew before they existed (same trace hash). Links to and
//! from [`NodeId::Chain`] are the node's own bitcoind: fixed latency, never lost, never
//! partitioned, no draws. A node's message to itself is never lost either (it still takes its
//! two draws).

use crate::rng;
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use reference_node::types::{Micros, NodeId};
use std::collections::{BTreeMap, BTreeSet};

/// Latency to and from the chain endpoint (the node's local bitcoind).
pub const CHAIN_LATENCY: Micros = Micros::from_millis(1);

/// A one-way latency distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    /// Always exactly this long.
    Fixed(Micros),
    /// Uniform in `[min, max]` (inclusive).
    Uniform { min: Micros, max: Micros },
    /// Heavy tail: Pareto with scale `min` and shape `alpha` (smaller is heavier; at
    /// `alpha` ≤ 2 the variance is infinite), capped at `max`. Most messages arrive close to
    /// `min`, a few take orders of magnitude longer: the tail that makes timeouts fire.
    Pareto { min: Micros, alpha: f64, max: Micros },
}

impl Latency {
    /// One latency from one draw (every distribution takes exactly one draw).
    pub fn sample(self, draw: u64) -> Micros {
        match self {
            Latency::Fixed(t) => t,
            Latency::Uniform { min, max } => {
                let (lo, hi) = if min <= max { (min, max) } else { (max, min) };
                Micros(lo.0 + rng::scale(draw, hi.0 - lo.0))
            }
            Latency::Pareto { min, alpha, max } => {
                // Inverse CDF: min / (1-u)^(1/alpha); 1-u is in (0, 1].
                let u = rng::unit_from(draw);
                let x = min.0 as f64 / (1.0 - u).powf(1.0 / alpha.max(1e-3));
                Micros((x.round() as u64).clamp(min.0, max.0.max(min.0)))
            }
        }
    }
}

/// The behaviour of one directed link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    pub latency: Latency,
    /// Probability in [0, 1] that a message is lost.
    pub loss: f64,
    /// Probability in [0, 1] that a delivered message is delivered a second time (with its
    /// own latency), as a retrying transport or a middlebox can do.
    pub duplicate: f64,
    /// Probability in [0, 1] that a message is held back by an extra delay, uniform in
    /// `[0, NetConfig::reorder_delay]`, so that later messages on the link overtake it.
    pub reorder: f64,
}

impl LinkConfig {
    /// A link with this latency and loss, no duplication and no reordering.
    pub fn new(latency: Latency, loss: f64) -> Self {
        LinkConfig {
            latency,
            loss,
            duplicate: 0.0,
            reorder: 0.0,
        }
    }
}

/// The whole network: a default link plus per-(from, to) overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    pub default: LinkConfig,
    /// Directed overrides keyed by (from, to).
    pub links: BTreeMap<(NodeId, NodeId), LinkConfig>,
    /// Largest extra delay of a reordered message.
    pub reorder_delay: Micros,
}

impl Default for NetConfig {
    /// 2–40 ms uniform latency, no loss, no overrides (the scenario language's defaults).
    fn default() -> Self {
        NetConfig {
            default: LinkConfig::new(
                Latency::Uniform {
                    min: Micros::from_millis(2),
                    max: Micros::from_millis(40),
                },
                0.0,
            ),
            links: BTreeMap::new(),
            reorder_delay: Micros::from_millis(200),
        }
    }
}

impl NetConfig {
    /// The configuration of the directed link `from -> to`.
    pub fn link(&self, from: NodeId, to: NodeId) -> LinkConfig {
        self.links.get(&(from, to)).copied().unwrap_or(self.default)
    }
}

/// Which messages a partition window cuts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// Nodes in different groups cannot talk at all.
    #[default]
    Both,
    /// Asymmetric: messages from group 0 to group 1 are lost; group 1 still reaches group 0
    /// (group 0 hears group 1, group 1 does not hear group 0). With a single group, group 1 is
    /// the implicit rest. Other pairs are untouched.
    OneWay,
}

/// A partition active during `[from, until)`: nodes in different groups cannot talk. A node in
/// no group belongs to an implicit "rest" group (so `groups = [[a]]` isolates `a`). A flapping
/// partition is several windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionWindow {
    pub from: Micros,
    pub until: Micros,
    pub groups: Vec<BTreeSet<NodeId>>,
    pub direction: Direction,
}

/// A partition that flaps: within `[from, until)` it is on for `on`, off for `off`, on again,
/// and so on (starting on), as a flaky switch or a route that keeps converging does. Each on
/// phase is its own window, so the trace shows every toggle.
pub fn flapping(
    from: Micros,
    until: Micros,
    on: Micros,
    off: Micros,
    groups: Vec<BTreeSet<NodeId>>,
    direction: Direction,
) -> Vec<PartitionWindow> {
    let mut out = Vec::new();
    let mut t = from;
    while t < until && on > Micros::ZERO {
        out.push(PartitionWindow {
            from: t,
            until: (t + on).min(until),
            groups: groups.clone(),
            direction,
        });
        t = t + on + off;
    }
    out
}

/// A slow node during `[from, until)`: every message to or from `node` takes `factor` times
/// its drawn latency (an overloaded host, a congested NIC, a GC pause that outlasts the event).
#[derive(Clone, Debug, PartialEq)]
pub struct SlowWindow {
    pub node: NodeId,
    pub factor: f64,
    pub from: Micros,
    pub until: Micros,
}

impl SlowWindow {
    fn applies(&self, now: Micros, a: NodeId, b: NodeId) -> bool {
        self.from <= now && now < self.until && (self.node == a || self.node == b)
    }
}

impl PartitionWindow {
    /// Index of the group holding `id`; `groups.len()` stands for the implicit rest group.
    fn group_of(&self, id: NodeId) -> usize {
        self.groups
            .iter()
            .position(|g| g.contains(&id))
            .unwrap_or(self.groups.len())
    }

    /// Whether this window, at time `now`, cuts the directed link `a -> b`.
    pub fn separates(&self, now: Micros, a: NodeId, b: NodeId) -> bool {
        if !(self.from <= now && now < self.until) {
            return false;
        }
        let (ga, gb) = (self.group_of(a), self.group_of(b));
        match self.direction {
            Direction::Both => ga != gb,
            Direction::OneWay => ga == 0 && gb == 1,
        }
    }
}

/// Why a message did not arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum DropReason {
    /// The loss draw came up.
    Loss,
    /// An active partition separated sender and receiver.
    Partition,
}

/// The fate of one send, decided at send time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Route {
    /// Arrives after this one-way delay.
    Deliver(Micros),
    Dropped(DropReason),
    /// Duplicated: arrives twice, after each delay. (Last, so the encodings of the variants
    /// above, which the trace hashes, did not change when it was added.)
    DeliverTwice(Micros, Micros),
}

/// Stream name for duplication draws.
pub const DUPLICATE_STREAM: &str = "network/duplicate";
/// Stream name for reordering draws.
pub const REORDER_STREAM: &str = "network/reorder";

/// The network: configuration, partition windows, slow nodes and the RNG streams.
pub struct Network {
    config: NetConfig,
    partitions: Vec<PartitionWindow>,
    slow: Vec<SlowWindow>,
    rng: ChaCha20Rng,
    dup_rng: ChaCha20Rng,
    reorder_rng: ChaCha20Rng,
}

impl Network {
    /// `rng` is the run's "network" stream; the duplication and reordering streams are split
    /// from `seed`.
    pub fn new(config: NetConfig, rng: ChaCha20Rng) -> Self {
        Self::with_seed(config, rng, 0)
    }

    /// Like [`Network::new`], with the duplication and reordering streams of run `seed`.
    pub fn with_seed(config: NetConfig, rng: ChaCha20Rng, seed: u64) -> Self {
        Network {
            config,
            partitions: Vec::new(),
            slow: Vec::new(),
            rng,
            dup_rng: rng::stream(seed, DUPLICATE_STREAM),
            reorder_rng: rng::stream(seed, REORDER_STREAM),
        }
    }

    /// Adds a slow-node window.
    pub fn add_slow(&mut self, window: SlowWindow) {
        self.slow.push(window);
    }

    pub fn slow_windows(&self) -> &[SlowWindow] {
        &self.slow
    }

    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Adds a partition window; returns its index.
    pub fn add_partition(&mut self, window: PartitionWindow) -> usize {
        self.partitions.push(window);
        self.partitions.len() - 1
    }

    pub fn partitions(&self) -> &[PartitionWindow] {
        &self.partitions
    }

    /// Decides the fate of a message sent at `now` from `from` to `to`.
    pub fn route(&mut self, now: Micros, from: NodeId, to: NodeId) -> Route {
        if from == NodeId::Chain || to == NodeId::Chain {
            return Route::Deliver(CHAIN_LATENCY);
        }
        // Both draws always happen, in this order (see the module comment).
        let loss_draw = self.rng.next_u64();
        let latency_draw = self.rng.next_u64();
        let link = self.config.link(from, to);
        // Extra draws only on links that use the feature, always two of each, whatever the
        // outcome (same reasoning as above, per stream).
        let dup = (link.duplicate > 0.0).then(|| {
            let (c, l) = (self.dup_rng.next_u64(), self.dup_rng.next_u64());
            (rng::chance_from(c, link.duplicate), l)
        });
        let reorder = |rng: &mut ChaCha20Rng| {
            let (c, d) = (rng.next_u64(), rng.next_u64());
            if rng::chance_from(c, link.reorder) {
                Micros(rng::scale(d, self.config.reorder_delay.0))
            } else {
                Micros::ZERO
            }
        };
        let extra = if link.reorder > 0.0 {
            reorder(&mut self.reorder_rng)
        } else {
            Micros::ZERO
        };
        if self.partitions.iter().any(|w| w.separates(now, from, to)) {
            return Route::Dropped(DropReason::Partition);
        }
        // A node's message to itself (a coordinator is also a participant of its own rounds) is
        // a local call: never lost. Its draws were taken all the same (module comment).
        if from != to && rng::chance_from(loss_draw, link.loss) {
            return Route::Dropped(DropReason::Loss);
        }
        let slow = self
            .slow
            .iter()
            .filter(|w| w.applies(now, from, to))
            .map(|w| w.factor)
            .fold(1.0_f64, f64::max);
        let stretch = |t: Micros| {
            if slow > 1.0 {
                Micros((t.0 as f64 * slow).round() as u64)
            } else {
                t
            }
        };
        let first = stretch(link.latency.sample(latency_draw)) + extra;
        match dup {
            Some((true, l)) => Route::DeliverTwice(first, stretch(link.latency.sample(l))),
            _ => Route::Deliver(first),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_node::types::{OperatorId, WalletId};

    const A: NodeId = NodeId::Operator(OperatorId(0));
    const B: NodeId = NodeId::Operator(OperatorId(1));
    const W: NodeId = NodeId::Wallet(WalletId(0));

    fn net(config: NetConfig) -> Network {
        Network::new(config, rng::stream(1, rng::NETWORK))
    }

    #[test]
    fn uniform_latency_in_range_and_overrides_apply() {
        let mut cfg = NetConfig::default();
        cfg.links.insert(
            (A, B),
            LinkConfig::new(Latency::Fixed(Micros(7)), 0.0),
        );
        let mut n = net(cfg);
        for _ in 0..1000 {
            match n.route(Micros::ZERO, B, A) {
                Route::Deliver(t) => assert!((2_000..=40_000).contains(&t.0)),
                r => panic!("unexpected {r:?}"),
            }
            assert_eq!(n.route(Micros::ZERO, A, B), Route::Deliver(Micros(7)));
        }
    }

    #[test]
    fn full_loss_never_drops_a_message_to_self_but_keeps_its_draws() {
        let mut cfg = NetConfig::default();
        cfg.default.loss = 1.0;
        // A lossless A -> W link shows where the stream stands through its latency draw.
        cfg.links.insert((A, W), LinkConfig::new(cfg.default.latency, 0.0));
        let (mut a, mut b) = (net(cfg.clone()), net(cfg));
        assert!(matches!(a.route(Micros::ZERO, A, A), Route::Deliver(_)));
        // The self-send took its two draws: the next message sees the same stream position as
        // after any other send.
        b.route(Micros::ZERO, W, A);
        let (ra, rb) = (a.route(Micros::ZERO, A, W), b.route(Micros::ZERO, A, W));
        assert!(matches!(ra, Route::Deliver(_)));
        assert_eq!(ra, rb);
    }

    #[test]
    fn full_loss_drops_everything_but_chain_links() {
        let mut cfg = NetConfig::default();
        cfg.default.loss = 1.0;
        let mut n = net(cfg);
        for _ in 0..100 {
            assert_eq!(
                n.route(Micros::ZERO, A, W),
                Route::Dropped(DropReason::Loss)
            );
        }
        assert_eq!(
            n.route(Micros::ZERO, A, NodeId::Chain),
            Route::Deliver(CHAIN_LATENCY)
        );
        assert_eq!(
            n.route(Micros::ZERO, NodeId::Chain, W),
            Route::Deliver(CHAIN_LATENCY)
        );
    }

    #[test]
    fn partition_only_inside_window_and_across_groups() {
        let mut n = net(NetConfig::default());
        n.add_partition(PartitionWindow {
            from: Micros(100),
            until: Micros(200),
            groups: vec![[A].into_iter().collect()],
            direction: Direction::Both,
        });
        let part = Route::Dropped(DropReason::Partition);
        assert_ne!(n.route(Micros(99), A, B), part);
        assert_eq!(n.route(Micros(100), A, B), part);
        assert_eq!(n.route(Micros(150), W, A), part);
        // B and W are both in the implicit rest group.
        assert_ne!(n.route(Micros(150), B, W), part);
        assert_ne!(n.route(Micros(200), A, B), part);
        assert_eq!(
            n.route(Micros(150), A, NodeId::Chain),
            Route::Deliver(CHAIN_LATENCY)
        );
    }

    #[test]
    fn draw_count_is_independent_of_outcome() {
        // A partitioned run and a clean run stay in step on the stream.
        let mut clean = net(NetConfig::default());
        let mut cut = net(NetConfig::default());
        cut.add_partition(PartitionWindow {
            from: Micros(0),
            until: Micros(10),
            groups: vec![[A].into_iter().collect()],
            direction: Direction::Both,
        });
        clean.route(Micros(0), A, B);
        cut.route(Micros(0), A, B);
        assert_eq!(clean.route(Micros(20), A, B), cut.route(Micros(20), A, B));
    }

    fn one_way(from: Micros, until: Micros, senders: &[NodeId]) -> PartitionWindow {
        PartitionWindow {
            from,
            until,
            groups: vec![senders.iter().copied().collect()],
            direction: Direction::OneWay,
        }
    }

    #[test]
    fn asymmetric_partition_drops_only_one_direction() {
        let mut n = net(NetConfig::default());
        // A's messages to the rest are lost; the rest still reaches A.
        n.add_partition(one_way(Micros(0), Micros(100), &[A]));
        let part = Route::Dropped(DropReason::Partition);
        for _ in 0..50 {
            assert_eq!(n.route(Micros(10), A, B), part);
            assert_eq!(n.route(Micros(10), A, W), part);
            assert!(matches!(n.route(Micros(10), B, A), Route::Deliver(_)));
            assert!(matches!(n.route(Micros(10), W, B), Route::Deliver(_)));
        }
        // Two explicit groups: only group 0 -> group 1 is cut.
        let mut n = net(NetConfig::default());
        n.add_partition(PartitionWindow {
            groups: vec![BTreeSet::from([A]), BTreeSet::from([B])],
            ..one_way(Micros(0), Micros(100), &[])
        });
        assert_eq!(n.route(Micros(1), A, B), part);
        assert!(matches!(n.route(Micros(1), A, W), Route::Deliver(_)));
        assert!(matches!(n.route(Micros(1), B, A), Route::Deliver(_)));
        assert!(matches!(n.route(Micros(100), A, B), Route::Deliver(_)));
    }

    #[test]
    fn duplication_delivers_twice_and_draws_only_when_enabled() {
        let mut cfg = NetConfig::default();
        cfg.default.duplicate = 1.0;
        let mut n = net(cfg);
        for _ in 0..20 {
            match n.route(Micros::ZERO, A, B) {
                Route::DeliverTwice(a, b) => {
                    assert!((2_000..=40_000).contains(&a.0) && (2_000..=40_000).contains(&b.0))
                }
                r => panic!("unexpected {r:?}"),
            }
        }
        // With duplication on a different link only, A -> B sees exactly the draws of a run
        // without any duplication (the "network" stream is untouched).
        let mut cfg = NetConfig::default();
        cfg.links.insert((B, W), LinkConfig { duplicate: 0.5, ..cfg.default });
        let (mut with, mut without) = (net(cfg), net(NetConfig::default()));
        for _ in 0..20 {
            assert_eq!(with.route(Micros::ZERO, A, B), without.route(Micros::ZERO, A, B));
            with.route(Micros::ZERO, B, W);
            without.route(Micros::ZERO, B, W);
        }
    }

    #[test]
    fn reordering_lets_later_messages_overtake() {
        let cfg = NetConfig {
            default: LinkConfig {
                reorder: 0.5,
                ..LinkConfig::new(Latency::Fixed(Micros(1_000)), 0.0)
            },
            ..NetConfig::default()
        };
        let mut n = net(cfg);
        let delays: Vec<u64> = (0..200)
            .map(|_| match n.route(Micros::ZERO, A, B) {
                Route::Deliver(t) => t.0,
                r => panic!("unexpected {r:?}"),
            })
            .collect();
        let held = delays.iter().filter(|d| **d > 1_000).count();
        assert!((60..140).contains(&held), "{held} of 200 held back");
        assert!(delays.iter().all(|d| *d <= 1_000 + 200_000));
        // Sent one after the other at the same instant: a held message arrives after a later one.
        assert!(delays.windows(2).any(|w| w[0] > w[1]));
    }

    #[test]
    fn heavy_tail_produces_large_delays() {
        let lat = Latency::Pareto {
            min: Micros::from_millis(2),
            alpha: 1.1,
            max: Micros::from_secs(30),
        };
        let mut r = rng::stream(3, "t");
        let xs: Vec<u64> = (0..10_000).map(|_| lat.sample(r.next_u64()).0).collect();
        let median = {
            let mut v = xs.clone();
            v.sort_unstable();
            v[v.len() / 2]
        };
        // Median near min * 2^(1/alpha) ≈ 3.8 ms; some messages take over a second.
        assert!((3_000..5_000).contains(&median), "median {median}");
        assert!(xs.iter().filter(|x| **x > 1_000_000).count() >= 5);
        assert!(xs.iter().all(|x| (2_000..=30_000_000).contains(x)));
        // A uniform distribution over the same body never does.
        let uni = Latency::Uniform { min: Micros::from_millis(2), max: Micros::from_millis(40) };
        assert!((0..10_000).all(|_| uni.sample(r.next_u64()).0 <= 40_000));
    }

    #[test]
    fn flapping_toggles_between_cut_and_connected() {
        let windows = flapping(
            Micros(1_000),
            Micros(5_500),
            Micros(1_000),
            Micros(500),
            vec![BTreeSet::from([A])],
            Direction::Both,
        );
        let spans: Vec<(u64, u64)> = windows.iter().map(|w| (w.from.0, w.until.0)).collect();
        assert_eq!(spans, vec![(1_000, 2_000), (2_500, 3_500), (4_000, 5_000)]);
        let mut n = net(NetConfig::default());
        for w in windows {
            n.add_partition(w);
        }
        let cut = |n: &mut Network, t| n.route(Micros(t), A, B) == Route::Dropped(DropReason::Partition);
        let pattern: Vec<bool> = [500, 1_500, 2_200, 3_000, 3_700, 4_500, 5_200, 6_000]
            .into_iter()
            .map(|t| cut(&mut n, t))
            .collect();
        assert_eq!(pattern, vec![false, true, false, true, false, true, false, false]);
    }

    #[test]
    fn slow_node_stretches_its_links_inside_the_window() {
        let mut cfg = NetConfig::default();
        cfg.default.latency = Latency::Fixed(Micros(1_000));
        let mut n = net(cfg);
        n.add_slow(SlowWindow { node: B, factor: 10.0, from: Micros(100), until: Micros(200) });
        assert_eq!(n.route(Micros(150), A, B), Route::Deliver(Micros(10_000)));
        assert_eq!(n.route(Micros(150), B, W), Route::Deliver(Micros(10_000)));
        assert_eq!(n.route(Micros(150), A, W), Route::Deliver(Micros(1_000)));
        assert_eq!(n.route(Micros(200), A, B), Route::Deliver(Micros(1_000)));
    }
}
