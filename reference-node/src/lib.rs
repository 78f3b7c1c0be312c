//! The Spark protocol as pure state machines: operators, wallet, L1 model, transactions and
//! cryptography. No I/O, no clock and no OS randomness: see [`node`] for the contract.

pub mod chain;
/// Two-phase commit mode (spark-protocol §4.10): flow types.
pub mod consensus;
pub mod crypto;
pub mod msg;
pub mod node;
pub mod observe;
pub mod operator;
pub mod params;
pub mod split_msg;
pub mod tx;
pub mod types;
pub mod wallet;
