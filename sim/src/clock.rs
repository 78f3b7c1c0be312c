//! Per-node clocks: a constant skew and a drift, so that expiry, background tasks and timeouts
//! run on each node's own idea of time, as on real hosts whose NTP is off or whose oscillator
//! runs fast or slow.
//!
//! Global (simulated) time is the engine's; a node sees `local(t) = t + skew + t · drift_ppm /
//! 10^6`, clamped at zero, where the skew applies from `skew_from` on: a skew from a later time
//! is a clock step (an NTP step, Jepsen's clock "bump"), forwards or backwards. A timer a node arms for `after` of its own time fires when its
//! clock has advanced by `after`, i.e. after `after · 10^6 / (10^6 + drift_ppm)` of global
//! time. Integer arithmetic throughout (i128), so a replay on any platform gives the same µs.
//! With skew 0 and drift 0 the clock is the identity, and a run without clock faults is the run
//! it was before clocks existed.

use reference_node::types::Micros;

/// Smallest drift accepted: a clock at -10^6 ppm would stand still.
pub const MIN_DRIFT_PPM: i64 = -900_000;
/// Largest drift accepted (a clock running 10× fast).
pub const MAX_DRIFT_PPM: i64 = 9_000_000;

/// One node's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Clock {
    /// Constant offset from global time, µs (negative: the node is behind).
    pub skew_us: i64,
    /// Rate error in parts per million (positive: the node's clock runs fast).
    pub drift_ppm: i64,
    /// Global time from which the skew applies (zero: from the start).
    pub skew_from: Micros,
}

impl Clock {
    pub fn is_identity(&self) -> bool {
        self.skew_us == 0 && self.drift_ppm == 0
    }

    /// What the node's clock reads at global time `global`.
    pub fn local(&self, global: Micros) -> Micros {
        let g = i128::from(global.0);
        let skew = if global >= self.skew_from { i128::from(self.skew_us) } else { 0 };
        let t = g + skew + g * i128::from(self.drift_ppm) / 1_000_000;
        Micros(t.clamp(0, i128::from(u64::MAX)) as u64)
    }

    /// The global duration after which `after` of this clock's time has passed (rounded up,
    /// so a timer never fires early by the node's own clock).
    pub fn global_delay(&self, after: Micros) -> Micros {
        if self.drift_ppm == 0 {
            return after;
        }
        let rate = 1_000_000 + i128::from(self.drift_ppm.clamp(MIN_DRIFT_PPM, MAX_DRIFT_PPM));
        let a = i128::from(after.0) * 1_000_000;
        let d = (a + rate - 1) / rate;
        Micros(d.clamp(0, i128::from(u64::MAX)) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_clock_is_global_time() {
        let c = Clock::default();
        assert!(c.is_identity());
        for t in [0, 1, 999, 123_456_789] {
            assert_eq!(c.local(Micros(t)), Micros(t));
            assert_eq!(c.global_delay(Micros(t)), Micros(t));
        }
    }

    #[test]
    fn skew_shifts_and_drift_scales() {
        let ahead = Clock { skew_us: 5_000_000, ..Clock::default() };
        assert_eq!(ahead.local(Micros::from_secs(10)), Micros::from_secs(15));
        let behind = Clock { skew_us: -5_000_000, ..Clock::default() };
        assert_eq!(behind.local(Micros::from_secs(2)), Micros::ZERO);
        assert_eq!(behind.local(Micros::from_secs(10)), Micros::from_secs(5));
        // 10% fast: 100 s of global time read as 110 s; a 11 s timer fires after 10 s.
        let fast = Clock { drift_ppm: 100_000, ..Clock::default() };
        assert_eq!(fast.local(Micros::from_secs(100)), Micros::from_secs(110));
        assert_eq!(fast.global_delay(Micros::from_secs(11)), Micros::from_secs(10));
        let slow = Clock { drift_ppm: -500_000, ..Clock::default() };
        assert_eq!(slow.global_delay(Micros::from_secs(1)), Micros::from_secs(2));
    }

    #[test]
    fn a_late_skew_is_a_clock_step() {
        let back = Clock { skew_us: -60_000_000, drift_ppm: 0, skew_from: Micros::from_secs(100) };
        assert_eq!(back.local(Micros::from_secs(99)), Micros::from_secs(99));
        // At 100 s the clock jumps back a minute: time runs backwards for the node.
        assert_eq!(back.local(Micros::from_secs(100)), Micros::from_secs(40));
    }

    #[test]
    fn a_timer_never_fires_early_by_the_nodes_clock() {
        for ppm in [-333_333, -1, 1, 7, 333_333, 1_000_000] {
            let c = Clock { drift_ppm: ppm, ..Clock::default() };
            for after in [1u64, 3, 1_000, 999_999] {
                let start = Micros(1_000_000);
                let fire = start + c.global_delay(Micros(after));
                assert!(c.local(fire).0 - c.local(start).0 + 1 >= after, "ppm {ppm} after {after}");
            }
        }
    }
}
