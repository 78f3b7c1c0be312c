//! Relative timelocks in nSequence. SDK 0.8.8 conventions: no bit 30 on new sequences, no rounding.
use crate::types::Blocks;
use bitcoin::Sequence;

pub const INITIAL_TIMELOCK: Blocks = Blocks(2000);
pub const TIME_LOCK_INTERVAL: u16 = 100;
pub const DIRECT_TIMELOCK_OFFSET: u16 = 50;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TimelockError {
    #[error("sequence {0:#010x} has bit 31 set: relative timelock disabled")]
    Disabled(u32),
    #[error("sequence {0:#010x} has bit 22 set: time-based, not block-based")]
    TimeBased(u32),
    #[error("timelock {current} cannot be decremented by {interval} (floor {floor})")]
    Exhausted { current: u16, interval: u16, floor: u16 },
}

/// The low 16 bits: the only part validators look at.
pub fn blocks(seq: Sequence) -> Blocks { unimplemented!() }
pub fn validate_sequence(seq: Sequence) -> Result<(), TimelockError> { unimplemented!() }
/// (CPFP, direct) sequences of a fresh leaf's refunds: (2000, 2050).
pub fn initial_refund_sequences() -> (Sequence, Sequence) { unimplemented!() }
/// (CPFP, direct) sequences of a root node tx: (0, 50).
pub fn root_node_sequences() -> (Sequence, Sequence) { unimplemented!() }
/// (CPFP, direct) of the next owner's refunds: low16 − 100 and low16 − 100 + 50, upper 16 bits
/// copied; error if the result would fall below `floor` blocks.
pub fn next_sequences(current: Sequence, floor: u16) -> Result<(Sequence, Sequence), TimelockError> { unimplemented!() }
/// The direct twin of a CPFP sequence: +50 in the low 16 bits.
pub fn direct_of(cpfp: Sequence) -> Sequence { unimplemented!() }
