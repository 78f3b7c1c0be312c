//! Newtypes for the protocol's units and identifiers (STYLE.md: no raw u64 sats, no raw u32 ids).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Simulated (or, in the testnet harness, monotonic) time in microseconds since the run began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Micros(pub u64);

impl Micros {
    pub const ZERO: Micros = Micros(0);
    pub const fn from_millis(ms: u64) -> Micros {
        Micros(ms * 1_000)
    }
    pub const fn from_secs(s: u64) -> Micros {
        Micros(s * 1_000_000)
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    pub fn saturating_sub(self, other: Micros) -> Micros {
        Micros(self.0.saturating_sub(other.0))
    }
}

impl std::ops::Add for Micros {
    type Output = Micros;
    fn add(self, rhs: Micros) -> Micros {
        Micros(self.0.saturating_add(rhs.0))
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}s", self.as_secs_f64())
    }
}

/// 0-based operator index. Its FROST identifier and Shamir x-coordinate is `index + 1`
/// (spark-protocol §1, vectors §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OperatorId(pub u16);

impl OperatorId {
    /// The Shamir x-coordinate / FROST identifier scalar of this operator.
    pub fn share_x(self) -> u32 {
        u32::from(self.0) + 1
    }
}

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "operator:{}", self.0)
    }
}

/// 0-based wallet index within a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WalletId(pub u16);

impl fmt::Display for WalletId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wallet:{}", self.0)
    }
}

/// Every addressable party in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeId {
    Operator(OperatorId),
    Wallet(WalletId),
    /// The L1 (bitcoind) endpoint: broadcasts go to it, block notifications come from it.
    Chain,
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeId::Operator(o) => o.fmt(f),
            NodeId::Wallet(w) => w.fmt(f),
            NodeId::Chain => f.write_str("chain"),
        }
    }
}

/// A leaf (tree node owned by one user). Spark uses UUIDs; we derive 16 bytes from the run's RNG.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeafId(pub [u8; 16]);

/// A transfer (Spark: UUIDv7 chosen by the sender).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TransferId(pub [u8; 16]);

/// A keyshare produced by the operators' DKG (signing_keyshare row id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyshareId(pub [u8; 16]);

macro_rules! short_hex_display {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", hex::encode(&self.0[..4]))
            }
        }
    };
}
short_hex_display!(LeafId);
short_hex_display!(TransferId);
short_hex_display!(KeyshareId);

/// A relative timelock in blocks (the low 16 bits of a BIP68 nSequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Blocks(pub u16);

impl fmt::Display for Blocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} blocks", self.0)
    }
}

impl std::ops::Mul<u64> for Micros {
    type Output = Micros;
    fn mul(self, rhs: u64) -> Micros {
        Micros(self.0.saturating_mul(rhs))
    }
}
