//! Relative timelocks in nSequence. SDK 0.8.8 conventions: no bit 30 on new sequences, no rounding.
use crate::types::Blocks;
use bitcoin::Sequence;

pub const INITIAL_TIMELOCK: Blocks = Blocks(2000);
pub const TIME_LOCK_INTERVAL: u16 = 100;
pub const DIRECT_TIMELOCK_OFFSET: u16 = 50;

/// BIP68 bit 31: when set, the input carries no relative lock at all.
const DISABLE_FLAG: u32 = 1 << 31;
/// BIP68 bit 22: when set, the low 16 bits count 512-second units instead of blocks.
const TYPE_FLAG: u32 = 1 << 22;
/// The low 16 bits hold the lock value (spark-protocol §3.2: validators look only at these).
const VALUE_MASK: u32 = 0xffff;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TimelockError {
    #[error("sequence {0:#010x} has bit 31 set: relative timelock disabled")]
    Disabled(u32),
    #[error("sequence {0:#010x} has bit 22 set: time-based, not block-based")]
    TimeBased(u32),
    #[error("timelock {current} cannot be decremented by {interval} (floor {floor})")]
    Exhausted {
        current: u16,
        interval: u16,
        floor: u16,
    },
}

/// The low 16 bits: the only part validators look at.
pub fn blocks(seq: Sequence) -> Blocks {
    Blocks(low16(seq.0))
}

/// Spark accepts a user sequence only if it is an enabled, block-based relative lock
/// (spark-protocol §3.2; vectors §3 "Validity"). Other upper bits (e.g. the historic bit 30) pass.
pub fn validate_sequence(seq: Sequence) -> Result<(), TimelockError> {
    if seq.0 & DISABLE_FLAG != 0 {
        return Err(TimelockError::Disabled(seq.0));
    }
    if seq.0 & TYPE_FLAG != 0 {
        return Err(TimelockError::TimeBased(seq.0));
    }
    Ok(())
}

/// (CPFP, direct) sequences of a fresh leaf's refunds: (2000, 2050).
pub fn initial_refund_sequences() -> (Sequence, Sequence) {
    // SDK 0.8.8 / Feb-2026 JS: no bit 30 on freshly built sequences (vectors §0).
    let cpfp = Sequence(u32::from(INITIAL_TIMELOCK.0));
    (cpfp, direct_of(cpfp))
}

/// (CPFP, direct) sequences of a root node tx: (0, 50).
pub fn root_node_sequences() -> (Sequence, Sequence) {
    // spark-protocol §3.3: root / split node CSV 0, direct variant 50.
    let cpfp = Sequence(0);
    (cpfp, direct_of(cpfp))
}

/// (CPFP, direct) of the next owner's refunds: low16 − 100 and low16 − 100 + 50, upper 16 bits
/// copied; error if the result would fall below `floor` blocks.
pub fn next_sequences(
    current: Sequence,
    floor: u16,
) -> Result<(Sequence, Sequence), TimelockError> {
    // spark-protocol §3.4: each ownership change costs exactly 100 blocks. The upper 16 bits are
    // copied unchanged (vectors §3 NextSequence), even bits 31/22: validity is checked elsewhere.
    let current_blocks = low16(current.0);
    let exhausted = TimelockError::Exhausted {
        current: current_blocks,
        interval: TIME_LOCK_INTERVAL,
        floor,
    };
    let next_blocks = current_blocks
        .checked_sub(TIME_LOCK_INTERVAL)
        .ok_or(exhausted.clone())?;
    if next_blocks < floor {
        return Err(exhausted);
    }
    let cpfp = with_low16(current, next_blocks);
    Ok((cpfp, direct_of(cpfp)))
}

/// The direct twin of a CPFP sequence: +50 in the low 16 bits.
///
/// Saturates at 0xffff instead of wrapping: a direct tx must never mature before its CPFP twin
/// (spark-protocol §3.6). Real sequences never get near the limit (max 2050).
pub fn direct_of(cpfp: Sequence) -> Sequence {
    let direct_blocks = low16(cpfp.0).saturating_add(DIRECT_TIMELOCK_OFFSET);
    with_low16(cpfp, direct_blocks)
}

/// BIP68-meaningless bit 30, the only upper bit the SDK carries from one sequence to the next.
const BIT_30: u32 = 1 << 30;

/// Offsets of a Lightning HTLC refund's sequences from the decremented timelock (SDK 0.8.8
/// `HTLC_TIMELOCK_OFFSET` / `DIRECT_HTLC_TIMELOCK_OFFSET`; spark-protocol §3.3).
pub const HTLC_TIMELOCK_OFFSET: u16 = 70;
pub const DIRECT_HTLC_TIMELOCK_OFFSET: u16 = 85;

/// The wallet's (SDK 0.8.8 `getNextTransactionSequence`) next sequences: low16 − 100 and
/// low16 − 100 + 50, keeping **only bit 30** of the upper bits (the Go operator's
/// [`next_sequences`] copies all 16; SDKs only ever send 0 or bit 30 there). A refund may not reach
/// 0 (`node = false`), a node tx may (`node = true`).
pub fn wallet_next_sequences(
    current: Sequence,
    node: bool,
) -> Result<(Sequence, Sequence), TimelockError> {
    wallet_offset_sequences(current, node, 0, DIRECT_TIMELOCK_OFFSET)
}

/// SDK 0.8.8 `getNextHTLCTransactionSequence`: the decremented timelock + 70 (CPFP) and + 85
/// (direct), bit 30 kept, same exhaustion rule as [`wallet_next_sequences`].
pub fn htlc_next_sequences(
    current: Sequence,
    node: bool,
) -> Result<(Sequence, Sequence), TimelockError> {
    wallet_offset_sequences(
        current,
        node,
        HTLC_TIMELOCK_OFFSET,
        DIRECT_HTLC_TIMELOCK_OFFSET,
    )
}

fn wallet_offset_sequences(
    current: Sequence,
    node: bool,
    offset: u16,
    direct_offset: u16,
) -> Result<(Sequence, Sequence), TimelockError> {
    let current_blocks = low16(current.0);
    // A node tx may go down to CSV 0, a refund must stay above it.
    let floor = u16::from(!node);
    let next = current_blocks
        .checked_sub(TIME_LOCK_INTERVAL)
        .filter(|next| *next >= floor)
        .ok_or(TimelockError::Exhausted {
            current: current_blocks,
            interval: TIME_LOCK_INTERVAL,
            floor,
        })?;
    let bit30 = current.0 & BIT_30;
    // next ≤ 0xffff − 100, so adding at most 85 cannot carry out of the low 16 bits.
    Ok((
        Sequence(bit30 | u32::from(next + offset)),
        Sequence(bit30 | u32::from(next + direct_offset)),
    ))
}

/// SDK 0.8.8 `enforceTimelocks`: the low 16 bits rounded down to a multiple of 100, bit 30 kept,
/// every other upper bit dropped (spark-protocol §3.3 "rounding (2026)").
pub fn round_down_sequence(seq: Sequence) -> Sequence {
    let blocks = low16(seq.0);
    Sequence((seq.0 & BIT_30) | u32::from(blocks - blocks % TIME_LOCK_INTERVAL))
}

/// The refund sequence of a send (SDK 0.8.8 `createDecrementedTimelockRefundTxs`): decremented
/// by [`wallet_next_sequences`], then rounded down to a multiple of 100.
pub fn decremented_refund_sequence(current: Sequence) -> Result<Sequence, TimelockError> {
    Ok(round_down_sequence(
        wallet_next_sequences(current, false)?.0,
    ))
}

/// The block count in the low 16 bits.
fn low16(seq: u32) -> u16 {
    // Masked to 16 bits, so the cast is lossless.
    (seq & VALUE_MASK) as u16
}

/// `seq` with its low 16 bits replaced by `blocks`, upper 16 bits untouched.
fn with_low16(seq: Sequence, blocks: u16) -> Sequence {
    Sequence((seq.0 & !VALUE_MASK) | u32::from(blocks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn initial_and_root_sequences_carry_no_bit_30() {
        assert_eq!(initial_refund_sequences(), (Sequence(2000), Sequence(2050)));
        assert_eq!(root_node_sequences(), (Sequence(0), Sequence(50)));
    }

    #[test]
    fn blocks_reads_only_the_low_16_bits() {
        assert_eq!(blocks(Sequence(0x4000_07d0)), Blocks(2000));
        assert_eq!(blocks(Sequence(0xffff_ffff)), Blocks(0xffff));
        assert_eq!(blocks(Sequence(0x0000_076c)), Blocks(1900));
    }

    #[test]
    fn validity_rejects_bit_31_and_bit_22_only() {
        assert_eq!(
            validate_sequence(Sequence(0x8000_03e8)),
            Err(TimelockError::Disabled(0x8000_03e8))
        );
        assert_eq!(
            validate_sequence(Sequence(0x0040_03e8)),
            Err(TimelockError::TimeBased(0x0040_03e8))
        );
        assert_eq!(validate_sequence(Sequence(1000)), Ok(()));
        assert_eq!(validate_sequence(Sequence(0x4000_03e8)), Ok(()));
    }

    #[test]
    fn floor_rejects_results_below_it() {
        assert!(next_sequences(Sequence(200), 100).is_ok());
        assert_eq!(
            next_sequences(Sequence(199), 100),
            Err(TimelockError::Exhausted {
                current: 199,
                interval: 100,
                floor: 100
            })
        );
    }

    #[test]
    fn direct_of_saturates() {
        assert_eq!(direct_of(Sequence(0x4000_ffff)), Sequence(0x4000_ffff));
        assert_eq!(direct_of(Sequence(0x4000_0000)), Sequence(0x4000_0032));
    }

    #[test]
    fn wallet_rules_keep_only_bit_30_and_round_down() {
        // vectors §3: the Go rule copies 0xaaaa; the SDK keeps bit 30 only (here 0).
        assert_eq!(
            wallet_next_sequences(Sequence(0xaaaa_0500), false),
            Ok((Sequence(0x049c), Sequence(0x04ce)))
        );
        assert_eq!(
            wallet_next_sequences(Sequence(0x4000_03e8), false),
            Ok((Sequence(0x4000_0384), Sequence(0x4000_03b6)))
        );
        // A node tx may reach CSV 0, a refund may not.
        assert_eq!(
            wallet_next_sequences(Sequence(100), true),
            Ok((Sequence(0), Sequence(50)))
        );
        assert!(wallet_next_sequences(Sequence(100), false).is_err());
        assert!(wallet_next_sequences(Sequence(99), true).is_err());
        // HTLC: (t − 100) + 70 and + 85.
        assert_eq!(
            htlc_next_sequences(Sequence(2000), false),
            Ok((Sequence(1970), Sequence(1985)))
        );
        // vectors (breez enforce_timelock): 1950 → 1900, 1900 → 1900, 1899 → 1800.
        for (from, to) in [
            (1950, 1900),
            (1900, 1900),
            (1899, 1800),
            (0x4000_0226, 0x4000_0226 - 50),
        ] {
            assert_eq!(round_down_sequence(Sequence(from)), Sequence(to));
        }
        // SDK transaction-construction.test.ts: 550 → 400 (decrement, then round).
        assert_eq!(
            decremented_refund_sequence(Sequence(550)),
            Ok(Sequence(400))
        );
    }

    proptest! {
        #[test]
        fn next_sequences_arithmetic(seq in any::<u32>(), floor in any::<u16>()) {
            let low = (seq & 0xffff) as u16;
            match next_sequences(Sequence(seq), floor) {
                Ok((cpfp, direct)) => {
                    prop_assert_eq!(blocks(cpfp).0, low - 100);
                    prop_assert!(blocks(cpfp).0 >= floor);
                    prop_assert_eq!(cpfp.0 & 0xffff_0000, seq & 0xffff_0000);
                    prop_assert_eq!(direct.0 & 0xffff_0000, seq & 0xffff_0000);
                    prop_assert_eq!(blocks(direct).0, blocks(cpfp).0 + 50);
                }
                Err(TimelockError::Exhausted { current, interval, floor: f }) => {
                    prop_assert_eq!((current, interval, f), (low, 100, floor));
                    prop_assert!(low < 100 || low - 100 < floor);
                }
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
    }
}
