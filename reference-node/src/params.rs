//! Protocol parameters: the production constants of spark-protocol §3.3/§4.0 as defaults, and
//! the knobs a scenario may turn.
use crate::crypto::PublicKey;
use crate::types::{Micros, OperatorId, WalletId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Deliberate bugs a test can switch on to prove the checker catches them. Never on by default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestFaults {
    /// Send keeps the current refund timelock instead of decrementing it by 100 (breaks I-6).
    pub skip_send_timelock_decrement: bool,
    /// The wallet broadcasts an exit's refund as soon as the node tx confirms, ignoring the
    /// refund's relative timelock: the mempool must refuse it as non-BIP68-final every time.
    pub broadcast_refund_early: bool,
}

/// Known Spark hazards (spark-protocol §8.2) a regression scenario switches back on to prove the
/// simulator finds them. Each restores the faulty behaviour of the upstream code; never on by
/// default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hazards {
    /// Oct-2025 gossip handlers: a receiver that fails to apply a message still acknowledges it,
    /// so the origin stops retrying and the operators diverge (I-12, §8.2 #10).
    pub gossip_ack_unapplied: bool,
    /// buildonspark/spark#24: a claim that fails after COMMIT was decided is rolled back anyway,
    /// and the rollback resets a row whose key tweak was already applied, so a retry tweaks that
    /// operator's share twice (I-3, §8.2 #1–#2).
    pub claim_settle_split: bool,
    /// breez/spark-sdk#314: claim refunds are built from the leaf's old refund instead of the
    /// transfer's intermediate refund, so receiving never decrements the timelock (I-6, §8.2 #8).
    pub claim_skip_timelock_decrement: bool,
    /// Renew (not a Spark bug report: a precondition left out): operators accept renew-node on a
    /// leaf node with CSV 0 and wallets use it there instead of renew-node-zero. Its split node
    /// (CSV 0) then ties the old node (CSV 0) on the same parent outpoint, so the current epoch
    /// no longer wins by timelock (I-7, spark-protocol §3.6).
    pub renew_node_on_zero_csv: bool,
    /// breez/spark-sdk#482 (with buildonspark/spark#70): a send the operators refused because a
    /// second device built it from a stale leaf cache (the leaf was renewed meanwhile) is taken
    /// as spent: the wallet drops the leaf, so the user's balance reads 0 while the operators
    /// still hold the leaf for it (I-9 at quiescence; wallet/device.rs).
    pub stale_send_drops_leaf: bool,
}

/// What a Byzantine operator does instead of following the protocol (a catalogue; see
/// `operator/byzantine.rs` for where each one acts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Behaviour {
    /// FROST round 2: answer a signature share that does not verify.
    WrongShare,
    /// Forward the signing jobs it was sent to the other signers with another message, trying to
    /// make an honest operator sign twice with one nonce.
    NonceReuse,
    /// Tell the coordinator a different SE key for a leaf than every other operator holds.
    Equivocation,
    /// Never answer a FROST round (round 1 or 2): silently withhold.
    Withhold,
    /// Re-send transfer messages it received, long after they were current.
    ReplayStale,
    /// Send other operators forged receiver key-tweak shares: one whose Feldman proof does not
    /// verify, and one that verifies but does not come from the receiver.
    ForgedTweak,
    /// Keep every old key share after a transfer and co-sign spends with a former owner.
    KeepOldShares,
}

impl Behaviour {
    pub const ALL: [(&'static str, Behaviour); 7] = [
        ("wrong_share", Behaviour::WrongShare),
        ("nonce_reuse", Behaviour::NonceReuse),
        ("equivocation", Behaviour::Equivocation),
        ("withhold", Behaviour::Withhold),
        ("replay_stale", Behaviour::ReplayStale),
        ("forged_tweak", Behaviour::ForgedTweak),
        ("keep_old_shares", Behaviour::KeepOldShares),
    ];
    pub fn as_str(self) -> &'static str {
        Behaviour::ALL.iter().find(|(_, b)| *b == self).map_or("?", |(n, _)| n)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub operators: u16,
    pub threshold: u16,
    /// How long a requester waits for replies before it gives up on a round.
    pub request_timeout: Micros,
    /// `send_gossip` task period (Spark: 5 min).
    pub gossip_retry: Micros,
    /// `monitor_pending_send_transfers` period (Spark: 1 min) and staleness (Spark: 3 min).
    pub transfer_tasks_period: Micros,
    pub pending_send_stale: Micros,
    /// `dkg` task period (Spark: 10 s), pool floor and batch size (Spark: 100 000 and 1000; a
    /// simulation needs far fewer).
    pub dkg_period: Micros,
    pub dkg_pool_min: usize,
    pub dkg_batch: u16,
    /// Operators that keep a keyshare pool (the coordinators wallets call).
    pub dkg_coordinators: Vec<OperatorId>,
    /// Refunds never go below this many blocks (2026 refund floor).
    pub refund_floor_blocks: u16,
    /// Wallet: how often to look for incoming transfers when idle (doubles up to 64x when nothing
    /// arrives, resets on activity).
    pub wallet_poll: Micros,
    /// Wallet: sender-chosen expiry of a transfer.
    pub transfer_expiry: Micros,
    pub test_faults: TestFaults,
    /// Known Spark hazards restored on purpose (spark-protocol §8.2); all off by default.
    pub hazards: Hazards,
    /// Byzantine operators and what each does (spark-protocol §5.1); empty by default.
    pub byzantine: BTreeMap<OperatorId, BTreeSet<Behaviour>>,
    /// Confirmations before the chain watcher makes a deposit's leaf AVAILABLE (spark-protocol
    /// §3.3: single-use deposits count 1 — "seen in a block" — static deposits 3).
    pub deposit_confirmations: u32,
    /// Two-phase commit mode (spark-protocol §4.10): gossip (Oct-2025, default) or two_phase.
    pub consensus: crate::consensus::Consensus,
    /// Two-phase commit mode: an undecided flow older than this is swept (coordinator: presumed
    /// abort) or reconciled (participant: asks the coordinator). Also the sweep period.
    pub flow_stale: Micros,
    /// What the service provider charges (wallet/ssp.rs).
    pub ssp_fees: SspFees,
    /// Lightning: the simulated network behind the SSP (wallet/ssp_lightning.rs).
    #[serde(default)]
    pub lightning: crate::msg::lightning::LightningParams,
    /// Watchtower and fees flow: the feerate (sat/vB) a wallet pays on L1 — its deposit tx and
    /// the packages that bump its CPFP exit txs (spark-protocol §3.2 assumes 5, the rate behind
    /// the 955-sat direct fee). Fee-bumping packages double it on a fee refusal (wallet/fee_bump.rs).
    pub l1_feerate_sat_vb: u64,
    /// Watchtower and fees flow: whether and how operators broadcast the current owner's direct
    /// refund when a leaf's node tx is on chain (operator/watchtower.rs); off by default.
    pub watchtower: WatchtowerMode,
    /// Scripted SSP misbehaviour in cooperative exits (`[ssp] coop_exit_fault`); None = honest.
    pub coop_exit_fault: Option<crate::msg::ssp::CoopExitFault>,
}

/// The SSP's fee schedule (spark-protocol §7, Spark's "Estimate fees" docs): Spark → Lightning
/// 0.25% + routing, Lightning → Spark 0.15%, exit = L1 fee + SSP fee, swaps free.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SspFees {
    pub lightning_send_bps: u64,
    /// Routing fee the SSP budgets for a Lightning payment, on top of its own fee.
    pub lightning_routing_sats: u64,
    pub lightning_receive_bps: u64,
    /// The SSP's L1 cost of one cooperative exit (its share of the exit and connector txs).
    pub coop_exit_l1_sats: u64,
    pub coop_exit_bps: u64,
    /// The smallest withdrawal the SSP accepts (§4.5: 10 000 sats).
    pub coop_exit_min_sats: u64,
    pub leaf_swap_bps: u64,
}

impl Default for SspFees {
    fn default() -> Self {
        SspFees {
            lightning_send_bps: 25,
            lightning_routing_sats: 10,
            lightning_receive_bps: 15,
            coop_exit_l1_sats: 1_500,
            coop_exit_bps: 0,
            coop_exit_min_sats: 10_000,
            leaf_swap_bps: 0,
        }
    }
}

impl SspFees {
    /// The fee for `service` on `amount_sats`, or why the SSP refuses to quote it. Basis points
    /// round up: the SSP never undercharges by rounding.
    pub fn quote(&self, service: crate::msg::SspService, amount_sats: u64) -> Result<u64, String> {
        use crate::msg::SspService::*;
        let bps = |b: u64| (u128::from(amount_sats) * u128::from(b)).div_ceil(10_000) as u64;
        match service {
            LeafSwap => Ok(bps(self.leaf_swap_bps)),
            LightningSend => Ok(bps(self.lightning_send_bps) + self.lightning_routing_sats),
            LightningReceive => Ok(bps(self.lightning_receive_bps)),
            CoopExit if amount_sats < self.coop_exit_min_sats => Err(format!("withdrawal of {amount_sats} sats is below the minimum {} sats", self.coop_exit_min_sats)),
            CoopExit => Ok(self.coop_exit_l1_sats + bps(self.coop_exit_bps)),
        }
    }
}

/// How an operator's watchtower decides that a watched direct refund is due (spark-protocol §3.6,
/// §5.2 item 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchtowerMode {
    /// No watchtower: an offline owner depends on nobody.
    #[default]
    Off,
    /// The Oct-2025 watchtower: compares the refund's *relative* CSV with the *absolute* chain
    /// height, so it broadcasts as soon as `height >= CSV` (every block from then on) and relies
    /// on the mempool refusing the tx as non-BIP68-final until it matures.
    AbsoluteHeight,
    /// A corrected watchtower: broadcasts once the refund is final in the next block
    /// (`height + 1 >= node confirmation height + CSV`), then every block until a refund confirms.
    Relative,
}

impl Params {
    pub fn new(operators: u16, threshold: u16) -> Params {
        Params {
            operators,
            threshold,
            request_timeout: Micros::from_secs(5),
            gossip_retry: Micros::from_secs(30),
            transfer_tasks_period: Micros::from_secs(60),
            pending_send_stale: Micros::from_secs(180),
            dkg_period: Micros::from_secs(10),
            dkg_pool_min: 4,
            dkg_batch: 4,
            dkg_coordinators: vec![OperatorId(0)],
            refund_floor_blocks: 100,
            wallet_poll: Micros::from_secs(5),
            transfer_expiry: Micros::from_secs(300),
            test_faults: TestFaults::default(),
            hazards: Hazards::default(),
            byzantine: BTreeMap::new(),
            deposit_confirmations: 1,
            consensus: crate::consensus::Consensus::Gossip,
            flow_stale: Micros::from_secs(60),
            ssp_fees: SspFees::default(),
            lightning: crate::msg::lightning::LightningParams { failure_ppm: 0, payer_delay: Micros::from_secs(5), seed: [0; 32] },
            l1_feerate_sat_vb: 5,
            watchtower: WatchtowerMode::Off,
            coop_exit_fault: None,
        }
    }
    pub fn operator_ids(&self) -> impl Iterator<Item = OperatorId> {
        (0..self.operators).map(OperatorId)
    }

    /// (CPFP, direct) sequences of the next owner's refunds after `current` (spark-protocol §3.4:
    /// −100, floored). The one place the send rule lives, so the wallet that builds the refunds and
    /// the operator that checks them can never disagree — including under the test fault.
    pub fn next_refund_sequences(&self, current: bitcoin::Sequence) -> Result<(bitcoin::Sequence, bitcoin::Sequence), crate::tx::timelock::TimelockError> {
        use crate::tx::timelock;
        if self.test_faults.skip_send_timelock_decrement {
            return Ok((current, timelock::direct_of(current)));
        }
        timelock::next_sequences(current, self.refund_floor_blocks)
    }
}

/// Public identity keys of every party (what a real deployment publishes in its config).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    pub operators: BTreeMap<OperatorId, PublicKey>,
    /// Every Spark user, the SSP included (it sends and receives transfers like any wallet).
    pub wallets: BTreeMap<WalletId, PublicKey>,
    /// The service provider (swaps, cooperative exit, Lightning), when the deployment has one.
    #[serde(default)]
    pub ssp: Option<WalletId>,
}

impl Directory {
    pub fn wallet_by_identity(&self, pk: &PublicKey) -> Option<WalletId> {
        self.wallets.iter().find(|(_, k)| *k == pk).map(|(w, _)| *w)
    }
}
