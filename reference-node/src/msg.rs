//! Every message between parties. Plain serde data (raw tx bytes, serialized keys), so that the
//! trace hash, the simulator and a future TCP runner all see the same bytes.
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Chain → node: the answer to a broadcast.
    BroadcastResult { txid: [u8; 32], result: Result<(), String> },
    /// Placeholder for the protocol messages (being written).
    Ping(u64),
}

impl Msg {
    /// A short name for traces and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::BroadcastResult { .. } => "BroadcastResult",
            Msg::Ping(_) => "Ping",
        }
    }
}
