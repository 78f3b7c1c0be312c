//! Facts nodes report to the checker (never seen by other nodes).
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Observation {
    /// Placeholder (being written).
    Note(String),
}
