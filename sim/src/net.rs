//! The network model: per-link latency and loss, and partition windows.
//!
//! Decisions are made at send time. Every routed send between two protocol nodes consumes
//! exactly two draws from the "network" stream, loss first, then latency, whatever the
//! outcome: the stream's position then depends only on how many messages were sent, not on
//! which were lost or partitioned, so adding or removing a partition perturbs as little as
//! possible. Links to and from [`NodeId::Chain`] are the node's own bitcoind: fixed latency,
//! never lost, never partitioned, no draws.

use crate::rng;
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use reference_node::types::{Micros, NodeId};
use std::collections::{BTreeMap, BTreeSet};

/// Latency to and from the chain endpoint (the node's local bitcoind).
pub const CHAIN_LATENCY: Micros = Micros::from_millis(1);

/// A one-way latency distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latency {
    /// Always exactly this long.
    Fixed(Micros),
    /// Uniform in `[min, max]` (inclusive).
    Uniform { min: Micros, max: Micros },
}

impl Latency {
    fn sample(self, draw: u64) -> Micros {
        match self {
            Latency::Fixed(t) => t,
            Latency::Uniform { min, max } => {
                let (lo, hi) = if min <= max { (min, max) } else { (max, min) };
                Micros(lo.0 + rng::scale(draw, hi.0 - lo.0))
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
}

/// The whole network: a default link plus per-(from, to) overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    pub default: LinkConfig,
    /// Directed overrides keyed by (from, to).
    pub links: BTreeMap<(NodeId, NodeId), LinkConfig>,
}

impl Default for NetConfig {
    /// 2–40 ms uniform latency, no loss, no overrides (the scenario language's defaults).
    fn default() -> Self {
        NetConfig {
            default: LinkConfig {
                latency: Latency::Uniform {
                    min: Micros::from_millis(2),
                    max: Micros::from_millis(40),
                },
                loss: 0.0,
            },
            links: BTreeMap::new(),
        }
    }
}

impl NetConfig {
    /// The configuration of the directed link `from -> to`.
    pub fn link(&self, from: NodeId, to: NodeId) -> LinkConfig {
        self.links.get(&(from, to)).copied().unwrap_or(self.default)
    }
}

/// A partition active during `[from, until)`: nodes in different groups cannot talk. A node in
/// no group belongs to an implicit "rest" group (so `groups = [[a]]` isolates `a`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionWindow {
    pub from: Micros,
    pub until: Micros,
    pub groups: Vec<BTreeSet<NodeId>>,
}

impl PartitionWindow {
    /// Index of the group holding `id`; `groups.len()` stands for the implicit rest group.
    fn group_of(&self, id: NodeId) -> usize {
        self.groups
            .iter()
            .position(|g| g.contains(&id))
            .unwrap_or(self.groups.len())
    }

    /// Whether this window, at time `now`, cuts the link between `a` and `b`.
    pub fn separates(&self, now: Micros, a: NodeId, b: NodeId) -> bool {
        self.from <= now && now < self.until && self.group_of(a) != self.group_of(b)
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
}

/// The network: configuration, partition windows and the "network" RNG stream.
pub struct Network {
    config: NetConfig,
    partitions: Vec<PartitionWindow>,
    rng: ChaCha20Rng,
}

impl Network {
    pub fn new(config: NetConfig, rng: ChaCha20Rng) -> Self {
        Network {
            config,
            partitions: Vec::new(),
            rng,
        }
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
        if self.partitions.iter().any(|w| w.separates(now, from, to)) {
            return Route::Dropped(DropReason::Partition);
        }
        let link = self.config.link(from, to);
        if rng::chance_from(loss_draw, link.loss) {
            return Route::Dropped(DropReason::Loss);
        }
        Route::Deliver(link.latency.sample(latency_draw))
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
            LinkConfig {
                latency: Latency::Fixed(Micros(7)),
                loss: 0.0,
            },
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
        });
        clean.route(Micros(0), A, B);
        cut.route(Micros(0), A, B);
        assert_eq!(clean.route(Micros(20), A, B), cut.route(Micros(20), A, B));
    }
}
