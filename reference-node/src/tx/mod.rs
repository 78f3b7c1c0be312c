//! Spark's transaction templates, timelock rules and sighashes: the one place that knows the
//! byte layout (spark-protocol §3.2–§3.4, vectors §0–§3).
pub mod address;
pub mod aggregate;
pub mod connector;
pub mod htlc;
pub mod renew;
pub mod sighash;
pub mod split;
pub mod template;
pub mod timelock;
