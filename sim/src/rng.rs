//! Named RNG streams split from the run seed.
//!
//! Every consumer of randomness (the workload generator, the network model, the fault
//! generator, the chain's block timer, each node) draws from its own ChaCha20 stream, seeded
//! with SHA-256(seed as little-endian bytes ‖ name). Streams are independent: removing one
//! consumer (a fault, a wallet) never shifts the draws of another, which is what lets the
//! shrinker drop a fault without reshuffling the workload (ARCHITECTURE.md, `engine`).

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use reference_node::types::{Micros, NodeId};
use sha2::{Digest, Sha256};

/// Stream name for the workload generator.
pub const WORKLOAD: &str = "workload";
/// Stream name for the network model (loss and latency draws).
pub const NETWORK: &str = "network";
/// Stream name for generated faults.
pub const FAULTS: &str = "faults";
/// Stream name for the chain (block intervals).
pub const CHAIN: &str = "chain";

/// The stream called `name` of the run with seed `seed`.
pub fn stream(seed: u64, name: &str) -> ChaCha20Rng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(name.as_bytes());
    ChaCha20Rng::from_seed(h.finalize().into())
}

/// The name of a node's own stream: `node/<NodeId Display>`, e.g. `node/operator:0`.
pub fn node_stream_name(id: NodeId) -> String {
    format!("node/{id}")
}

/// A node's own stream (its process entropy; it survives crash and restart).
pub fn node_stream(seed: u64, id: NodeId) -> ChaCha20Rng {
    stream(seed, &node_stream_name(id))
}

/// Maps one 64-bit draw onto `0..=span` by widening multiplication. The bias is at most
/// `span / 2^64`, which for any simulated span (< 2^40 µs) is far below anything observable;
/// in exchange every call consumes exactly one draw, so the stream's position never depends on
/// the values drawn (a rejection loop would).
pub fn scale(draw: u64, span: u64) -> u64 {
    match span.checked_add(1) {
        None => draw,
        Some(n) => ((u128::from(draw) * u128::from(n)) >> 64) as u64,
    }
}

/// Maps one 64-bit draw onto [0, 1) with 53 bits of precision.
pub fn unit_from(draw: u64) -> f64 {
    (draw >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform time in `[min, max]` (inclusive); one draw.
pub fn uniform_micros(rng: &mut ChaCha20Rng, min: Micros, max: Micros) -> Micros {
    debug_assert!(min <= max, "uniform_micros: min {min} > max {max}");
    let draw = rng.next_u64();
    let (lo, hi) = if min <= max {
        (min.0, max.0)
    } else {
        (max.0, min.0)
    };
    Micros(lo + scale(draw, hi - lo))
}

/// An exponentially distributed time with the given mean, rounded to whole microseconds; one
/// draw. `f64::ln` is deterministic on one platform, which is all replay needs.
pub fn exponential_micros(rng: &mut ChaCha20Rng, mean: Micros) -> Micros {
    exponential_from(rng.next_u64(), mean)
}

/// [`exponential_micros`] from an already-taken draw.
pub fn exponential_from(draw: u64, mean: Micros) -> Micros {
    // 1 - u is in (0, 1], so ln never sees 0; -ln(1-u) ≤ 36.8 for 53-bit u, so no overflow
    // for any mean below 2^58 µs.
    let u = unit_from(draw);
    let x = -(1.0 - u).ln() * mean.0 as f64;
    Micros(x.round() as u64)
}

/// True with probability `p` (clamped to [0, 1]); one draw.
pub fn chance(rng: &mut ChaCha20Rng, p: f64) -> bool {
    chance_from(rng.next_u64(), p)
}

/// [`chance`] from an already-taken draw.
pub fn chance_from(draw: u64, p: f64) -> bool {
    if p >= 1.0 {
        return true;
    }
    unit_from(draw) < p
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_node::types::OperatorId;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let a = stream(7, NETWORK).next_u64();
        assert_eq!(a, stream(7, NETWORK).next_u64());
        assert_ne!(a, stream(8, NETWORK).next_u64());
        assert_ne!(a, stream(7, WORKLOAD).next_u64());
        assert_eq!(
            node_stream_name(NodeId::Operator(OperatorId(0))),
            "node/operator:0"
        );
    }

    #[test]
    fn uniform_stays_in_range_and_covers_ends() {
        let mut rng = stream(1, "t");
        let (mut saw_lo, mut saw_hi) = (false, false);
        for _ in 0..10_000 {
            let x = uniform_micros(&mut rng, Micros(5), Micros(8));
            assert!((5..=8).contains(&x.0));
            saw_lo |= x.0 == 5;
            saw_hi |= x.0 == 8;
        }
        assert!(saw_lo && saw_hi);
        assert_eq!(scale(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(uniform_micros(&mut rng, Micros(3), Micros(3)), Micros(3));
    }

    #[test]
    fn exponential_mean_is_close() {
        let mut rng = stream(2, CHAIN);
        let n = 20_000u64;
        let total: u64 = (0..n)
            .map(|_| exponential_micros(&mut rng, Micros(1_000_000)).0)
            .sum();
        let mean = total / n;
        assert!((950_000..1_050_000).contains(&mean), "mean {mean}");
    }

    #[test]
    fn chance_extremes() {
        let mut rng = stream(3, FAULTS);
        assert!((0..1000).all(|_| !chance(&mut rng, 0.0)));
        assert!((0..1000).all(|_| chance(&mut rng, 1.0)));
    }
}
