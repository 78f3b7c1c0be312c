//! The wallet (user) state machine.
use serde::{Deserialize, Serialize};

/// What the workload asks a wallet to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Deposit `sats` from the wallet's L1 coins into a new leaf.
    Deposit { sats: u64 },
    /// Send one available leaf to `receiver`.
    Send { receiver: crate::types::WalletId },
    /// Unilaterally exit one available leaf.
    Exit,
}

/// The wallet state machine (being written).
pub struct Wallet {
    _private: (),
}

impl crate::node::Node for Wallet {
    fn handle(&mut self, _ctx: &mut crate::node::Ctx<'_>, _input: crate::node::Input) {}
    fn crash(&mut self) {}
}
