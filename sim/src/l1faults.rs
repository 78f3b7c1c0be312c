//! The L1 part of the fault model: reorgs of depth k, delayed blocks and fee spikes, as
//! scenario faults (`[[fault]] kind = "reorg" | "block_delay" | "fee_spike"`) and as random
//! draws for swarm mode. Each fault becomes [`ChainFault`] events on the engine; the chain model
//! (`reference_node::chain`) and the nodes' chain watchers do the rest.
//!
//! The fourth L1 hazard of the issue, a mempool that rejects non-final transactions, is not a
//! fault but a standing rule of the chain (`ChainReject::NonFinal`, BIP68).
use crate::engine::{ChainFault, Engine, L1};
use crate::scenario::FaultSpec;
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use reference_node::chain::{ReorgTxs, MAX_REORG_DEPTH};
use reference_node::node::Node;
use reference_node::types::Micros;

/// The `kind` names of the L1 faults in a scenario file.
pub const KINDS: [&str; 3] = ["reorg", "block_delay", "fee_spike"];

/// Stream name for random L1 fault draws (swarm mode), apart from every other stream.
pub const RNG_STREAM: &str = "faults/l1";

/// One L1 fault of a scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L1Fault {
    /// At `at`, the last `depth` blocks are replaced by `depth + 1` empty ones; their txs go
    /// back to the mempool (`txs = "return"`) or are dropped (`"drop"`).
    Reorg {
        at: Micros,
        depth: u32,
        txs: ReorgTxs,
    },
    /// No block is mined in `[at, at + duration)`; a block falling due waits for the end.
    BlockDelay { at: Micros, duration: Micros },
    /// The mempool's minimum feerate is at least `min_feerate_sat_vb` in `[at, at + duration)`,
    /// then back to the `[chain]` floor (overlapping spikes: the highest active one wins).
    FeeSpike {
        at: Micros,
        duration: Micros,
        min_feerate_sat_vb: u64,
    },
}

impl L1Fault {
    /// When the fault's last effect is applied (the run's horizon waits for it).
    pub fn end(&self) -> Micros {
        match self {
            L1Fault::Reorg { at, .. } => *at,
            L1Fault::BlockDelay { at, duration } | L1Fault::FeeSpike { at, duration, .. } => {
                *at + *duration
            }
        }
    }

    /// Put the fault's event on the engine.
    pub fn schedule<N: Node, C: L1>(&self, engine: &mut Engine<N, C>) {
        let (at, fault) = match *self {
            L1Fault::Reorg { at, depth, txs } => (at, ChainFault::Reorg { depth, txs }),
            L1Fault::BlockDelay { at, duration } => (at, ChainFault::StallUntil(at + duration)),
            L1Fault::FeeSpike {
                at,
                duration,
                min_feerate_sat_vb,
            } => (
                at,
                ChainFault::FeeSpike {
                    sat_per_vb: min_feerate_sat_vb,
                    until: at + duration,
                },
            ),
        };
        engine.schedule_chain_fault(at, fault);
    }
}

/// A uniform draw in `lo..=hi`.
fn between(rng: &mut ChaCha20Rng, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo + 1)
}

/// A start time in the first 80 % of `horizon` (so the run still sees the fault heal).
fn start(rng: &mut ChaCha20Rng, horizon: Micros) -> Micros {
    Micros(between(rng, 0, horizon.0 / 5 * 4))
}

/// Swarm mode: a random reorg of depth 1..=6 (deeper ones are rare on mainnet; the scenario
/// language allows up to [`MAX_REORG_DEPTH`]), txs returning three times out of four.
pub fn draw_reorg(rng: &mut ChaCha20Rng, horizon: Micros) -> FaultSpec {
    let at = start(rng, horizon);
    let depth = between(rng, 1, 6.min(u64::from(MAX_REORG_DEPTH))) as u32;
    let txs = if rng.next_u64().is_multiple_of(4) {
        ReorgTxs::Drop
    } else {
        ReorgTxs::Return
    };
    FaultSpec::L1(L1Fault::Reorg { at, depth, txs })
}

/// Swarm mode: blocks stall for 10 min to 2 h.
pub fn draw_block_delay(rng: &mut ChaCha20Rng, horizon: Micros) -> FaultSpec {
    let at = start(rng, horizon);
    let duration = Micros::from_secs(between(rng, 600, 7_200));
    FaultSpec::L1(L1Fault::BlockDelay { at, duration })
}

/// Swarm mode: a fee floor of 2..=200 sat/vB for 10 min to 6 h.
pub fn draw_fee_spike(rng: &mut ChaCha20Rng, horizon: Micros) -> FaultSpec {
    let at = start(rng, horizon);
    let duration = Micros::from_secs(between(rng, 600, 21_600));
    let min_feerate_sat_vb = between(rng, 2, 200);
    FaultSpec::L1(L1Fault::FeeSpike {
        at,
        duration,
        min_feerate_sat_vb,
    })
}

#[cfg(test)]
mod tests;
