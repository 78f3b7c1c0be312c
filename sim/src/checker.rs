//! The invariant checker (spark-protocol §6): the safety invariants that apply to the flows
//! implemented after every event (I-1 … I-14, see [`table`]), the liveness properties (L-*) at the
//! end of the liveness phase, sometimes-properties ([`properties`]) and per-operation latency
//! budgets ([`latency`]).
//!
//! Cost model: the engine calls [`Checker::after_event`] after every event, so the checker only
//! looks again at what changed. An operator's tables are re-read only when its `store_commits()`
//! moved; within them only leaves whose fingerprint (row + keyshare + in-flight transfers touching
//! the leaf) changed are re-checked; the elliptic-curve checks on a keyshare are cached by
//! (operator, keyshare, epoch, digest of the share).
//!
//! The checks themselves are pure functions over plain data (bottom of the file), so they can be
//! unit-tested without building an engine.
use crate::actor::Actor;
use crate::engine::{Engine, StepRecord};
use crate::report::{LatencySummary, Violation};
use crate::trace::{digest_of, Hash32};
use bitcoin::{Amount, OutPoint, Transaction, Txid};
use reference_node::chain::Chain;
use reference_node::crypto::curve::{base_mul, point_add, point_mul, point_sum};
use reference_node::crypto::signing::KeyShare;
use reference_node::crypto::vss::lagrange_at_zero;
use reference_node::crypto::PublicKey;
use reference_node::msg::{NodeSet, RefundSet};
use reference_node::observe::Observation;
use reference_node::operator::store::{Db, KeyshareRow, LeafRow, LeafStatus, TransferRow, TransferStatus};
use reference_node::tx::template::maybe_apply_fee;
use reference_node::tx::timelock::{blocks, TIME_LOCK_INTERVAL};
use reference_node::types::{KeyshareId, LeafId, Micros, OperatorId, TransferId};
use std::collections::{BTreeMap, BTreeSet};

// --- checker families (one file each) ---
/// Two-phase commit mode: flow safety and L-2 over `FlowExecution` rows.
pub mod consensus;
pub mod hygiene;
pub mod latency;
pub mod lightning;
// Lightning send (§4.8): I-13 where it applies, L-6 for sends.
pub mod lightning_send;
pub mod lifecycle;
pub mod liveness;
pub mod properties;
pub mod split;
pub mod renew;
pub mod table;
pub mod timelocks;
use crate::report::CheckerReport;
use crate::scenario::{Budgets, LatencyOp};
use hygiene::WalletView;
use reference_node::types::NodeId;
// Byzantine operators and restored hazards (issue 4): their own files, hooked below.
mod hazards;
mod swaps;
// Watchtower and fees flow: the old-owner exit race (L-4, second half).
mod race;
mod theft;
// Cooperative exit (issue 6): L-5 and the payout's I-1.
mod coop_exit;
// Cleanup (issue 6 review): a finalized split's tables, for the I-7 and race tests.
#[cfg(test)]
mod split_tree;
pub use hazards::DetectionSummary;
pub use theft::TheftSummary;

/// A broken invariant before it is stamped with the event: (invariant, dedupe subject, message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub invariant: &'static str,
    /// What the violation is about (leaf, transfer, operator...): one report per (invariant, subject).
    pub subject: String,
    pub message: String,
}

fn finding(invariant: &'static str, subject: String, message: String) -> Finding {
    Finding { invariant, subject, message }
}

/// One signed refund-type tx, reduced to what I-6 compares.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefundEntry {
    /// The node outpoint it spends (`input[0].previous_output`): txs on one outpoint conflict.
    pub outpoint: OutPoint,
    /// Compressed identity key of the party it pays.
    pub owner: [u8; 33],
    /// Relative timelock in blocks (low 16 bits of nSequence).
    pub csv: u16,
    pub txid: Txid,
}

impl RefundEntry {
    /// None for a tx without inputs (cannot conflict with anything, so nothing to order).
    pub fn of(tx: &Transaction, owner: &PublicKey) -> Option<RefundEntry> {
        let input = tx.input.first()?;
        Some(RefundEntry {
            outpoint: input.previous_output,
            owner: owner.serialize(),
            csv: blocks(input.sequence).0,
            txid: tx.compute_txid(),
        })
    }
}

fn entries_of(set: &RefundSet, owner: &PublicKey) -> Vec<RefundEntry> {
    set.as_array().iter().filter_map(|tx| RefundEntry::of(tx, owner)).collect()
}

/// Short hex of a public key (skip the parity byte: it carries no identity).
fn short_key(k: &[u8; 33]) -> String {
    hex::encode(&k[1..5])
}

fn short_pk(k: &PublicKey) -> String {
    short_key(&k.serialize())
}

/// One operator's view of a keyshare's public parts: (public key, digest of public_shares).
pub type PublicView = ([u8; 33], Hash32);

/// The invariant checker of one run.
pub struct Checker {
    operators: u16,
    threshold: u16,
    budget_p99_s: Option<f64>,
    checks: u64,
    /// (invariant, subject) already reported: each distinct violation once.
    reported: BTreeSet<(String, String)>,
    // --- from observations ---
    nonces: NonceLog,
    history: BTreeMap<LeafId, BTreeSet<RefundEntry>>,
    sent_at: BTreeMap<TransferId, Micros>,
    claimed_at: BTreeMap<TransferId, Micros>,
    returned: BTreeSet<TransferId>,
    /// DepositConfirmed per leaf (a repeated observation counts once).
    deposits: BTreeMap<LeafId, u64>,
    exits: BTreeMap<LeafId, u64>,
    // --- incremental state over operator tables ---
    last_commits: BTreeMap<OperatorId, u64>,
    fingerprints: BTreeMap<OperatorId, BTreeMap<LeafId, Hash32>>,
    /// Per operator: leaf → non-terminal transfers touching it.
    inflight: BTreeMap<OperatorId, BTreeMap<LeafId, Vec<TransferId>>>,
    /// Leaves to re-check on the next pass although no row changed (a new RefundSigned).
    dirty: BTreeSet<LeafId>,
    /// (operator, keyshare, epoch) → digest of the share last checked and its result.
    key_cache: BTreeMap<(OperatorId, KeyshareId, u32), (Hash32, Option<String>)>,
    /// (keyshare, epoch) → operator → public parts (public_key, digest of public_shares).
    key_public: BTreeMap<(KeyshareId, u32), BTreeMap<OperatorId, PublicView>>,
    /// First value seen for each leaf (value is immutable, I-1).
    leaf_value: BTreeMap<LeafId, (OperatorId, u64)>,
    /// Leaves whose deposit is confirmed on a majority: value and deposit outpoint.
    settled: BTreeMap<LeafId, (u64, OutPoint)>,
    last_height: Option<u32>,
    // --- the full checker ---
    /// Evaluations per invariant (the report's table).
    counts: BTreeMap<&'static str, u64>,
    /// Distinct violations per invariant.
    fired: BTreeMap<String, u64>,
    statuses: lifecycle::StatusLog,
    coverage: properties::Coverage,
    latencies: latency::Latencies,
    budgets: Budgets,
    /// Simulated time of the event being checked.
    now: Micros,
    /// The operators' transfer task period (L-3 grace after an expiry).
    task_period: Micros,
    /// Deposits given up because the keyshare pool was empty: (wallet, when) (L-8).
    pool_skips: Vec<(String, Micros)>,
    /// Set by the runner: the liveness phase report.
    liveness: crate::report::LivenessPhase,
    /// Leaves newly settled on a majority whose L1 backing is still to check (I-1 per event).
    to_back: BTreeSet<LeafId>,
    /// Keyshare rows per operator when last looked at (new DKG output → I-3 on it).
    keyshares_seen: BTreeMap<OperatorId, usize>,
    keyshares_checked: BTreeSet<(OperatorId, KeyshareId)>,
    /// (origin, gossip seq) → the last reason a receiver refused to apply it (I-12 evidence).
    gossip_refusals: BTreeMap<(OperatorId, u64), String>,
    theft: theft::TheftCheck,
    hazards: hazards::HazardChecks,
    /// Lightning: I-13 and L-6 (checker/lightning.rs).
    lightning: lightning::LightningCheck,
    /// Lightning send: I-13 and L-6 (checker/lightning_send.rs).
    lightning_send: lightning_send::LightningSendCheck,
    /// Renew: every signed spender of each exit-chain outpoint seen so far (I-7).
    node_layers: renew::NodeLayerHistory,
    race: race::RaceCheck,
    coop_exits: coop_exit::CoopExitLedger,
}

impl Checker {
    pub fn new(operators: u16, threshold: u16, budget_transfer_p99_s: Option<f64>) -> Checker {
        Checker {
            operators,
            threshold,
            budget_p99_s: budget_transfer_p99_s,
            checks: 0,
            reported: BTreeSet::new(),
            nonces: NonceLog::default(),
            history: BTreeMap::new(),
            sent_at: BTreeMap::new(),
            claimed_at: BTreeMap::new(),
            returned: BTreeSet::new(),
            deposits: BTreeMap::new(),
            exits: BTreeMap::new(),
            last_commits: BTreeMap::new(),
            fingerprints: BTreeMap::new(),
            inflight: BTreeMap::new(),
            dirty: BTreeSet::new(),
            key_cache: BTreeMap::new(),
            key_public: BTreeMap::new(),
            leaf_value: BTreeMap::new(),
            settled: BTreeMap::new(),
            last_height: None,
            counts: BTreeMap::new(),
            fired: BTreeMap::new(),
            statuses: lifecycle::StatusLog::default(),
            coverage: properties::Coverage::default(),
            latencies: latency::Latencies::default(),
            budgets: Budgets::default(),
            now: Micros::ZERO,
            task_period: Micros::from_secs(60),
            pool_skips: Vec::new(),
            liveness: crate::report::LivenessPhase::default(),
            to_back: BTreeSet::new(),
            keyshares_seen: BTreeMap::new(),
            keyshares_checked: BTreeSet::new(),
            gossip_refusals: BTreeMap::new(),
            theft: theft::TheftCheck::default(),
            hazards: hazards::HazardChecks::default(),
            lightning: lightning::LightningCheck::default(),
            lightning_send: lightning_send::LightningSendCheck::default(),
            node_layers: renew::NodeLayerHistory::default(),
            race: race::RaceCheck::default(),
            coop_exits: coop_exit::CoopExitLedger::default(),
        }
    }

    /// The scenario's `[budgets]` (per-operation budgets; `transfer_p99` stays with `new`).
    pub fn with_budgets(mut self, budgets: Budgets) -> Checker {
        self.budgets = budgets;
        self
    }

    /// The operators' transfer task period (L-3 allows one after an expiry).
    pub fn with_task_period(mut self, period: Micros) -> Checker {
        self.task_period = period;
        self
    }

    /// Counts one evaluation of `inv`.
    fn tick(&mut self, inv: &'static str) {
        self.checks += 1;
        *self.counts.entry(inv).or_insert(0) += 1;
    }

    /// Sometimes-property counts of this run.
    pub fn coverage(&self) -> &properties::Coverage {
        &self.coverage
    }

    /// Counts a sometimes-property (for checkers in other files).
    pub fn sometimes(&mut self, name: &'static str) {
        self.coverage.hit(name);
    }

    /// The runner records the liveness phase here for the report.
    pub fn set_liveness(&mut self, phase: crate::report::LivenessPhase) {
        self.liveness = phase;
    }

    /// The checker's section of the report.
    pub fn report(&self) -> CheckerReport {
        let mut latency = BTreeMap::new();
        for op in LatencyOp::ALL {
            let mut s = self.latencies.summary(op, &self.budgets);
            if op == LatencyOp::Claim && s.budget_p99_s.is_none() {
                s.budget_p99_s = self.budget_p99_s;
            }
            latency.insert(op.as_str().to_string(), s);
        }
        CheckerReport {
            invariants: table::rows(&self.counts, &self.fired),
            sometimes: self.coverage.counts().iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            latency,
            liveness: self.liveness.clone(),
        }
    }

    /// Invariant evaluations run so far.
    pub fn checks_run(&self) -> u64 {
        self.checks
    }
    pub fn transfers_sent(&self) -> u64 {
        self.sent_at.len() as u64
    }
    pub fn transfers_claimed(&self) -> u64 {
        self.claimed_at.len() as u64
    }
    pub fn transfers_returned(&self) -> u64 {
        self.returned.len() as u64
    }
    pub fn deposits_confirmed(&self) -> u64 {
        self.deposits.len() as u64
    }
    pub fn exits_confirmed(&self) -> u64 {
        self.exits.len() as u64
    }
    pub fn threshold(&self) -> u16 {
        self.threshold
    }
    /// Byzantine detections and theft attempts (issue 4), for the report.
    pub fn adversary(&self) -> (DetectionSummary, TheftSummary) {
        (self.hazards.summary(), self.theft.summary())
    }

    /// Claim time − send time of every transfer seen both sent and claimed, in seconds.
    pub fn latency_samples(&self) -> Vec<f64> {
        self.latencies.samples(LatencyOp::Claim).to_vec()
    }

    pub fn transfer_latency(&self) -> LatencySummary {
        summarize(self.latency_samples(), self.budget_p99_s)
    }

    /// Called after every engine event.
    pub fn after_event(&mut self, engine: &Engine<Actor, Chain>, rec: &StepRecord) -> Vec<Violation> {
        self.now = rec.time;
        let mut found = self.check_new_refunds(&rec.observations);
        for obs in &rec.observations {
            self.observe(obs, rec.time, &mut found);
        }
        let ops: Vec<_> = engine.nodes().filter_map(|(_, a)| a.as_operator()).collect();
        {
            let dbs: Vec<(OperatorId, &Db)> = ops.iter().map(|o| (o.id(), o.db())).collect();
            self.on_event(rec, &dbs);
        }
        let changed: Vec<OperatorId> = ops
            .iter()
            .filter(|o| self.last_commits.get(&o.id()) != Some(&o.store_commits()))
            .map(|o| o.id())
            .collect();
        for o in &ops {
            self.last_commits.insert(o.id(), o.store_commits());
        }
        if !changed.is_empty() || !self.dirty.is_empty() {
            let dbs: Vec<(OperatorId, &Db)> = ops.iter().map(|o| (o.id(), o.db())).collect();
            found.extend(self.check_dbs(&dbs, &changed));
            // Two-phase commit mode: no flow decided both ways (only rows that changed can split).
            if changed.iter().any(|o| dbs.iter().any(|(d, db)| d == o && !db.flows.is_empty())) {
                found.extend(consensus::check_flow_safety(&dbs));
            }
            // Leaf swaps: L-6 safety once a swap is decided (checker/swaps.rs).
            found.extend(swaps::check_safety(&dbs));
        }
        found.extend(self.audit_chain(engine.chain()));
        found.extend(self.check_backing(engine.chain()));
        found.extend(self.theft.after_event(engine, rec, self.threshold));
        found.extend(self.hazards.after_event(engine, rec));
        let (raced, hits, judged) = self.race.after_event(engine, rec);
        found.extend(raced);
        for _ in 0..judged {
            self.tick("L-4");
        }
        for h in hits {
            self.coverage.hit(h);
        }
        self.stamp(found, rec.index, rec.time)
    }

    /// End of the liveness phase: L-1, end-of-run conservation, the latency budgets, and the
    /// properties judged at quiescence (I-9, I-10, I-12, L-2, L-3, L-4, L-8).
    pub fn at_end(&mut self, engine: &Engine<Actor, Chain>, now_index: u64) -> Vec<Violation> {
        let ops: Vec<_> = engine.nodes().filter_map(|(_, a)| a.as_operator()).collect();
        let dbs: Vec<(OperatorId, &Db)> = ops.iter().map(|o| (o.id(), o.db())).collect();
        let mut found = self.check_dbs(&dbs, &[]);
        found.extend(self.end_findings(&dbs));
        let up: Vec<(OperatorId, &Db)> = dbs.iter().filter(|(o, _)| engine.is_up(NodeId::Operator(*o))).copied().collect();
        let down: BTreeSet<OperatorId> = dbs.iter().filter(|(o, _)| !engine.is_up(NodeId::Operator(*o))).map(|(o, _)| *o).collect();
        let wallets = wallet_views(engine);
        found.extend(self.quiescence_findings(&up, &wallets, &down, engine.now()));
        found.extend(self.hazards.at_end(&dbs));
        if !self.coop_exits.is_empty() {
            self.tick("L-5");
            found.extend(self.coop_exits.check_atomicity(engine.chain(), &wallets, &up));
        }
        self.stamp(found, now_index, engine.now())
    }

    /// The properties judged once the liveness phase is over, over plain data (for tests).
    pub fn quiescence_findings(&mut self, up: &[(OperatorId, &Db)], wallets: &[WalletView<'_>], down: &BTreeSet<OperatorId>, now: Micros) -> Vec<Finding> {
        for inv in ["I-9", "I-10", "I-12", "L-2", "L-3", "L-4", "L-7", "L-8"] {
            self.tick(inv);
        }
        let mut found = hygiene::check_exit_completeness(up, wallets);
        found.extend(hygiene::check_stuck_senders(up, wallets));
        for (op, db) in up {
            for (leaf, row) in &db.leaves {
                if let Some(m) = renew::check_renewable(row) {
                    found.push(finding("L-7", format!("leaf {leaf} renew {op}"), format!("leaf {leaf} on {op}: {m}")));
                }
            }
        }
        found.extend(hygiene::check_old_shares(up, self.threshold));
        found.extend(hygiene::check_gossip_converged(up, down, &self.gossip_refusals));
        let down_names: Vec<String> = down.iter().map(|o| o.to_string()).collect();
        found.extend(liveness::check_healed(up, wallets, &down_names));
        found.extend(consensus::check_flows_settled(up, down));
        found.extend(liveness::check_expired(up, now, self.task_period));
        found.extend(liveness::check_exits(wallets));
        found.extend(liveness::check_pool(&self.pool_skips));
        found.extend(split::check_split_agreement(up));
        // Leaf swaps (checker/swaps.rs): every swap decided, both legs on its side.
        self.tick("L-6");
        found.extend(swaps::check_atomicity(up, now, self.task_period));
        found
    }

    /// The end-of-run checks over plain tables (no engine), for tests and `at_end`.
    pub fn end_findings(&mut self, dbs: &[(OperatorId, &Db)]) -> Vec<Finding> {
        self.tick("L-1");
        self.tick("I-1");
        self.tick("budget");
        let mut found = check_claimed(&self.sent_at, &self.claimed_at, dbs);
        if self.counts.contains_key("I-13") {
            self.tick("L-6");
            found.extend(self.lightning.at_end(&self.claimed_at));
            found.extend(self.lightning_send.at_end(&self.claimed_at));
        }
        found.extend(check_conservation(&self.deposits, &self.settled));
        found.extend(self.latencies.budget_findings(&self.budgets));
        let lat = self.transfer_latency();
        if let (Some(p99), Some(budget)) = (lat.p99_s, self.budget_p99_s) {
            if p99 > budget {
                found.push(finding(
                    "budget",
                    "transfer p99".into(),
                    format!(
                        "transfer latency p99 {p99:.3}s exceeds budget {budget:.3}s ({} samples, max {:.3}s)",
                        lat.samples,
                        lat.max_s.unwrap_or(0.0)
                    ),
                ));
            }
        }
        found
    }

    /// Turns findings into violations, each (invariant, subject) once.
    fn stamp(&mut self, found: Vec<Finding>, index: u64, time: Micros) -> Vec<Violation> {
        let fresh: Vec<Finding> =
            found.into_iter().filter(|f| self.reported.insert((f.invariant.to_string(), f.subject.clone()))).collect();
        for f in &fresh {
            *self.fired.entry(f.invariant.to_string()).or_insert(0) += 1;
        }
        fresh
            .into_iter()
            .map(|f| Violation {
                invariant: f.invariant.to_string(),
                sim_time_s: time.as_secs_f64(),
                event_index: index,
                message: f.message,
            })
            .collect()
    }

    /// Records one observation (refund history, nonce uses, transfer and deposit times).
    pub fn observe(&mut self, obs: &Observation, time: Micros, found: &mut Vec<Finding>) {
        match obs {
            Observation::NonceUsed { signer, commitment, message } => {
                self.tick("I-11");
                found.extend(self.nonces.record(signer, commitment, message));
            }
            Observation::RefundSigned { leaf, owner, tx } => {
                if let Some(e) = RefundEntry::of(tx, owner) {
                    if self.history.entry(*leaf).or_default().insert(e) {
                        self.dirty.insert(*leaf);
                    }
                }
            }
            Observation::TransferSent { transfer, sender, .. } => {
                if !self.sent_at.contains_key(transfer) {
                    self.latencies.finish(*sender, LatencyOp::Send, time, true);
                }
                self.sent_at.entry(*transfer).or_insert(time);
            }
            Observation::TransferClaimed { transfer, .. } => {
                if !self.claimed_at.contains_key(transfer) {
                    self.coverage.hit("transfer-claimed");
                    if let Some(sent) = self.sent_at.get(transfer) {
                        self.latencies.sample(LatencyOp::Claim, time.saturating_sub(*sent));
                    }
                }
                self.claimed_at.entry(*transfer).or_insert(time);
            }
            Observation::TransferReturned { transfer, .. } => {
                // Not the end of the send command: the wallet retries it (a new transfer) or
                // gives up with CommandSkipped, which ends its latency measurement.
                if self.returned.insert(*transfer) {
                    self.coverage.hit("transfer-returned");
                }
            }
            Observation::DepositConfirmed { wallet, leaf, value_sats } => {
                if !self.deposits.contains_key(leaf) {
                    self.coverage.hit("deposit-confirmed");
                    self.latencies.finish(*wallet, LatencyOp::Deposit, time, true);
                }
                self.deposits.entry(*leaf).or_insert(*value_sats);
            }
            Observation::ExitConfirmed { wallet, leaf, value_sats } => {
                self.tick("I-1");
                if let Some((op, v)) = self.leaf_value.get(leaf).filter(|(_, v)| v != value_sats) {
                    found.push(finding(
                        "I-1",
                        format!("exit {leaf}"),
                        format!("{wallet} exited leaf {leaf} for {value_sats} sat but {op} holds it at {v} sat"),
                    ));
                }
                if !self.exits.contains_key(leaf) {
                    self.coverage.hit("exit-confirmed");
                    self.latencies.finish(*wallet, LatencyOp::Exit, time, true);
                }
                self.exits.entry(*leaf).or_insert(*value_sats);
            }
            Observation::DepositBroadcast { wallet, leaf, holds_signed_exit } => {
                self.tick("I-14");
                let signed = self.history.get(leaf).map_or(0, |h| h.len());
                found.extend(hygiene::check_deposit_broadcast(*wallet, leaf, *holds_signed_exit, signed));
            }
            // Leaf swaps (checker/swaps.rs judges them from the tables).
            Observation::SwapStarted { .. } => self.coverage.hit("swap-started"),
            Observation::SwapDecided { settled: true, .. } => self.coverage.hit("swap-settled"),
            Observation::SwapDecided { settled: false, .. } => self.coverage.hit("swap-returned"),
            Observation::SwapAdaptorLearned { .. } => self.coverage.hit("swap-adaptor-learned"),
            Observation::CommandSkipped { wallet, reason } => {
                self.coverage.hit("command-skipped");
                // Which command gave up: the wallet names it first in every reason.
                let op = if reason.starts_with("send") {
                    Some(LatencyOp::Send)
                } else if reason.starts_with("exit") {
                    Some(LatencyOp::Exit)
                } else if reason.contains("deposit") || reason.contains("pool") {
                    Some(LatencyOp::Deposit)
                } else {
                    None
                };
                if let Some(op) = op {
                    self.latencies.finish(*wallet, op, time, false);
                }
                // Only a deposit that gave up counts (a split refused for an empty pool says "split: …").
                if reason.starts_with("deposit") && reason.contains("pool empty") {
                    self.pool_skips.push((wallet.to_string(), time));
                }
            }
            Observation::Rejected { what, reason } => {
                if what.contains(" claim ") && reason.contains("retry") {
                    self.coverage.hit("claim-retried");
                }
                // SigningError::InvalidShare names its culprits (FROST identifiable abort).
                if reason.contains("invalid signature share from") {
                    self.coverage.hit("identifiable-abort");
                }
                if what.contains("DKG") {
                    self.coverage.hit("dkg-round-abandoned");
                }
            }
            Observation::CulpritNamed { .. } => self.coverage.hit("identifiable-abort"),
            // Renew: which variants a run went through (`sometimes` coverage).
            Observation::Renewed { kind, .. } => self.coverage.hit(match kind.as_str() {
                "renew-refund" => "renew-refund",
                "renew-node" => "renew-node",
                _ => "renew-node-zero",
            }),
            Observation::CoopExitStarted { .. } | Observation::CoopExitPaid { .. } => {
                self.tick("I-1");
                found.extend(self.coop_exits.observe(obs));
            }
            // Judged in checker/hazards.rs and checker/theft.rs.
            Observation::GuardRefused { .. } | Observation::ColludedSignature { .. } | Observation::TheftAttempt { .. } => {}
            // Judged in checker/race.rs (watchtower and fees flow).
            Observation::WatchtowerBroadcast { .. } | Observation::StaleRaceStarted { .. } | Observation::OwnerDefends { .. } => {}
            // Renew/send race (wallet/device.rs): the stale send really reached the operators.
            Observation::DeviceStaleRefused { .. } => self.coverage.hit("stale-send-refused"),
            // L1 reorgs: a confirmation the wallet reported is undone (and reported again if
            // the tx comes back), so conservation counts only what is on the chain.
            Observation::DepositReorged { node: reference_node::types::NodeId::Wallet(_), leaf, .. } => {
                self.deposits.remove(leaf);
            }
            Observation::ExitReorged { leaf, .. } => {
                self.exits.remove(leaf);
                self.coverage.hit("exit-reorged");
            }
            // An operator's view of a reorged deposit: the leaf's status is judged from its store.
            Observation::DepositReorged { .. } => self.coverage.hit("deposit-reorged"),
            // Lightning (checker/lightning.rs): I-13 on every such observation.
            o @ (Observation::LightningInvoiceIssued { .. }
            | Observation::PreimageShareStored { .. }
            | Observation::PreimageShareReleased { .. }
            | Observation::PreimageRevealed { .. }
            | Observation::LightningReceiveSettled { .. }
            | Observation::LightningReceiveFailed { .. }) => {
                self.tick("I-13");
                match o {
                    Observation::LightningReceiveSettled { .. } => self.coverage.hit("lightning-receive-settled"),
                    Observation::LightningReceiveFailed { .. } => self.coverage.hit("lightning-receive-failed"),
                    _ => {}
                }
                found.extend(self.lightning.observe(o, self.threshold));
            }
            // Lightning send (checker/lightning_send.rs).
            o @ (Observation::LightningSendLocked { .. }
            | Observation::LightningSendPaid { .. }
            | Observation::LightningSendPaymentFailed { .. }
            | Observation::PreimageProvided { .. }
            | Observation::LightningSendDone { .. }) => {
                self.tick("I-13");
                let (f, hit) = self.lightning_send.observe(o);
                if let Some(name) = hit {
                    self.coverage.hit(name);
                }
                found.extend(f);
            }
            // Split (checker/split.rs): I-1 on the children the wallet now holds.
            Observation::LeafSplit { parent, children, .. } => {
                self.coverage.hit("leaf-split");
                self.tick("I-1");
                let parent_value = self.leaf_value.get(parent).map(|(_, v)| *v);
                found.extend(split::check_reported_split(parent, parent_value, children));
            }
            Observation::LeafAggregated { .. } => self.coverage.hit("leaf-aggregated"),
        }
    }

    /// I-6 at signing time: the refunds each wallet obtained in this event, grouped by (leaf,
    /// owner), against the leaf's history before it (breez #314 fires at the claim itself).
    fn check_new_refunds(&mut self, observations: &[Observation]) -> Vec<Finding> {
        let mut groups: BTreeMap<(LeafId, [u8; 33]), Vec<RefundEntry>> = BTreeMap::new();
        for obs in observations {
            if let Observation::RefundSigned { leaf, owner, tx } = obs {
                if let Some(e) = RefundEntry::of(tx, owner) {
                    groups.entry((*leaf, e.owner)).or_default().push(e);
                }
            }
        }
        let mut found = Vec::new();
        for ((leaf, _), entries) in groups {
            self.tick("I-6");
            self.tick("I-8");
            for e in &entries {
                if !(timelocks::REFUND_MIN..=reference_node::tx::timelock::INITIAL_TIMELOCK.0 + 50).contains(&e.csv) {
                    found.push(finding(
                        "I-8",
                        format!("leaf {leaf} signed {}", e.txid),
                        format!("leaf {leaf}: a wallet obtained a signed refund {} with CSV {} outside [100, 2050]", e.txid, e.csv),
                    ));
                }
            }
            let Some(history) = self.history.get(&leaf) else { continue };
            for m in timelocks::check_new_refunds(history, &entries) {
                found.push(finding("I-6", format!("leaf {leaf} signed {}", short_key(&entries[0].owner)), format!("leaf {leaf}: {m}")));
            }
        }
        found
    }

    /// Per-event bookkeeping that reads the event itself: operation start times (latency) and
    /// the sometimes-properties tied to crashes, restarts and gossip retries.
    fn on_event(&mut self, rec: &StepRecord, dbs: &[(OperatorId, &Db)]) {
        let d = rec.description.as_str();
        if let Some(NodeId::Operator(origin)) = rec.node {
            for obs in &rec.observations {
                // The origin reports "<receiver> could not apply gossip <seq>" with the reason.
                let Observation::Rejected { what, reason } = obs else { continue };
                let Some(seq) = what.split(" could not apply gossip ").nth(1).and_then(|s| s.parse::<u64>().ok()) else { continue };
                self.gossip_refusals.insert((origin, seq), format!("{}: {reason}", what.split(' ').next().unwrap_or("?")));
            }
        }
        if d.starts_with("command ") && !d.contains("(dropped") {
            if let Some(NodeId::Wallet(w)) = rec.node {
                let op = if d.contains(" Deposit") {
                    Some(LatencyOp::Deposit)
                } else if d.contains(" Send") {
                    Some(LatencyOp::Send)
                } else if d.contains(" Exit") {
                    Some(LatencyOp::Exit)
                } else {
                    None
                };
                if let Some(op) = op {
                    self.latencies.start(w, op, rec.time);
                }
            }
        }
        let any = |f: &dyn Fn(TransferStatus) -> bool| dbs.iter().any(|(_, db)| db.transfers.values().any(|t| f(t.status)));
        if d.starts_with("crash operator:") && !d.contains("(ignored") {
            if any(&|s| !s.is_terminal() && !s.is_sent()) {
                self.coverage.hit("crash-during-send");
            }
            if any(&|s| matches!(s, TransferStatus::ReceiverKeyTweakLocked | TransferStatus::ReceiverKeyTweakApplied)) {
                self.coverage.hit("crash-during-two-phase-settle");
            }
            // Split (checker/split.rs): a split reserved somewhere and not finalized everywhere.
            if dbs.iter().any(|(_, db)| db.splits.values().any(|sp| sp.split_nodes.is_none())) {
                self.coverage.hit("crash-during-split");
            }
        }
        if d.starts_with("restart operator:") && !d.contains("(ignored") && any(&|s| !s.is_terminal()) {
            self.coverage.hit("restart-with-transfer-in-flight");
        }
        if d.starts_with("timer operator:") && d.contains("GossipRetry") && !d.contains("(discarded") {
            if let Some(NodeId::Operator(op)) = rec.node {
                if dbs.iter().any(|(o, db)| *o == op && !db.gossip_out.is_empty()) {
                    self.coverage.hit("gossip-retry");
                }
            }
        }
    }

    /// I-1 per event: a leaf that just became live on a majority is backed by a confirmed L1
    /// deposit output of exactly its value (so Σ live leaves never exceeds Σ confirmed deposits
    /// at any event, not only at the end).
    fn check_backing(&mut self, chain: &Chain) -> Vec<Finding> {
        let mut found = Vec::new();
        for leaf in std::mem::take(&mut self.to_back) {
            let Some((value, outpoint)) = self.settled.get(&leaf).copied() else { continue };
            self.tick("I-1");
            let problem = match chain.utxo(&outpoint) {
                Some(u) if u.height.is_none() => Some("is only in the mempool".to_string()),
                Some(u) if u.output.value.to_sat() != value => Some(format!("holds {} sat", u.output.value.to_sat())),
                Some(_) => None,
                // Already spent (an exit): it confirmed if its tx did.
                None if chain.confirmation_height(&outpoint.txid).is_some() => None,
                None => Some("does not exist on L1".to_string()),
            };
            if let Some(p) = problem {
                found.push(finding(
                    "I-1",
                    format!("leaf {leaf} backing"),
                    format!("leaf {leaf} ({value} sat) is live on a majority but its deposit {outpoint} {p}"),
                ));
            }
        }
        found
    }

    /// I-1 chain audit, only when a block changed the confirmed set (the sum walks every UTXO).
    fn audit_chain(&mut self, chain: &Chain) -> Vec<Finding> {
        if self.last_height == Some(chain.height()) {
            return Vec::new();
        }
        self.last_height = Some(chain.height());
        self.tick("I-1");
        let funded = chain.funded_total();
        let utxos = chain.confirmed_utxo_total();
        let fees = chain.confirmed_fees_total();
        if utxos.checked_add(fees) == Some(funded) {
            return Vec::new();
        }
        vec![finding(
            "I-1",
            format!("chain audit at height {}", chain.height()),
            format!(
                "L1 value audit at height {}: funded {} sat != confirmed UTXOs {} sat + fees {} sat",
                chain.height(),
                funded.to_sat(),
                utxos.to_sat(),
                fees.to_sat()
            ),
        )]
    }

    /// Re-reads the tables of the `changed` operators and re-checks every leaf whose
    /// fingerprint moved (plus the dirty ones). `dbs` holds every operator's tables.
    pub fn check_dbs(&mut self, dbs: &[(OperatorId, &Db)], changed: &[OperatorId]) -> Vec<Finding> {
        let mut found = Vec::new();
        let mut leaves = std::mem::take(&mut self.dirty);
        for (op, db) in dbs.iter().filter(|(op, _)| changed.contains(op)) {
            let mut moved = false;
            for leaf in self.refresh_operator(*op, db) {
                found.extend(self.check_op_leaf(*op, db, &leaf));
                leaves.insert(leaf);
                moved = true;
            }
            found.extend(self.check_new_keyshares(*op, db));
            if moved && !db.splits.is_empty() {
                self.tick("I-1");
                found.extend(split::check_splits(*op, db));
            }
            // Every transfer status change moves the fingerprint of a leaf it touches.
            if moved {
                found.extend(self.check_lifecycle(*op, db, dbs));
            }
        }
        for leaf in leaves {
            found.extend(self.check_leaf(dbs, &leaf));
        }
        found
    }

    /// I-4 and I-5 on one operator whose tables changed, plus the sometimes-properties its
    /// status moves reveal.
    fn check_lifecycle(&mut self, op: OperatorId, db: &Db, dbs: &[(OperatorId, &Db)]) -> Vec<Finding> {
        self.tick("I-4");
        self.tick("I-5");
        let idx = self.inflight.get(&op).cloned().unwrap_or_default();
        let mut found = lifecycle::check_lock_exclusivity(op, db, &idx);
        let (moves, bad) = self.statuses.record(op, db);
        found.extend(bad);
        for m in moves {
            if m.to == TransferStatus::Returned && db.transfers.get(&m.transfer).is_some_and(|t| t.expiry > Micros::ZERO && self.now > t.expiry) {
                self.coverage.hit("transfer-cancelled-after-expiry");
            }
            if m.from.is_some_and(|f| lifecycle::is_rollback(f, m.to)) {
                self.coverage.hit("settle-rolled-back");
            }
            let statuses: Vec<(OperatorId, TransferStatus)> =
                dbs.iter().filter_map(|(o, d)| d.transfers.get(&m.transfer).map(|t| (*o, t.status))).collect();
            found.extend(lifecycle::check_cross_status(&m.transfer, &statuses));
        }
        found
    }

    /// Updates one operator's in-flight index and fingerprints; returns the leaves that changed.
    fn refresh_operator(&mut self, op: OperatorId, db: &Db) -> Vec<LeafId> {
        let idx = inflight_index(db);
        let fps: BTreeMap<LeafId, Hash32> = db
            .leaves
            .iter()
            .map(|(leaf, row)| (*leaf, leaf_fingerprint(db, row, idx.get(leaf))))
            .collect();
        let old = self.fingerprints.insert(op, fps.clone()).unwrap_or_default();
        self.inflight.insert(op, idx);
        let mut moved: Vec<LeafId> =
            fps.iter().filter(|(l, fp)| old.get(l) != Some(fp)).map(|(l, _)| *l).collect();
        // A leaf that disappeared from this operator changes the cross-operator view too.
        moved.extend(old.keys().filter(|l| !fps.contains_key(l)));
        moved
    }

    /// Per-operator checks of one leaf row: I-1 values and I-3 keys.
    fn check_op_leaf(&mut self, op: OperatorId, db: &Db, leaf: &LeafId) -> Vec<Finding> {
        let Some(row) = db.leaves.get(leaf) else { return Vec::new() };
        let mut found = Vec::new();
        self.tick("I-1");
        self.tick("I-3");
        self.tick("I-8");
        if let Some(m) = timelocks::check_timelock_bounds(Some(&row.nodes), &row.refunds).or_else(|| renew::check_ancestor_bounds(row)) {
            found.push(finding("I-8", format!("leaf {leaf} bounds {op}"), format!("leaf {leaf} on {op}: {m}")));
        }
        self.tick("I-7");
        if let Some(m) = renew::held_to_node_ordering(row.status).then(|| self.node_layers.record_and_check(row)).flatten() {
            found.push(finding("I-7", format!("leaf {leaf} node layers {op}"), format!("leaf {leaf} on {op}: {m}")));
        }
        let first = *self.leaf_value.entry(*leaf).or_insert((op, row.value_sats));
        if first.1 != row.value_sats {
            found.push(finding(
                "I-1",
                format!("leaf {leaf} value {op}"),
                format!(
                    "leaf {leaf}: {op} has value {} sat but {} had {} sat (value must be immutable and equal)",
                    row.value_sats, first.0, first.1
                ),
            ));
        }
        if let Some(m) = check_tx_values(row.value_sats, Some(&row.nodes), &row.refunds) {
            found.push(finding("I-1", format!("leaf {leaf} txs {op}"), format!("leaf {leaf} on {op}: {m}")));
        }
        for (tid, t) in self.inflight_rows(op, db, leaf) {
            let Some(ir) = t.leaves.get(leaf).and_then(|l| l.intermediate_refunds.as_ref()) else { continue };
            if let Some(m) = check_tx_values(row.value_sats, None, ir) {
                found.push(finding(
                    "I-1",
                    format!("leaf {leaf} transfer {tid} txs {op}"),
                    format!("leaf {leaf} transfer {tid} intermediate refunds on {op}: {m}"),
                ));
            }
            let prev = &t.leaves[leaf].previous_refunds;
            // Lightning send: HTLC refunds are (previous − 100) + 70 / + 85 (§3.3), only for a
            // transfer this operator holds as a SEND preimage swap.
            let htlc = reference_node::operator::preimage_send::send_hash_of(db, tid).is_some();
            let m = if htlc { timelocks::check_htlc_timelocks(prev, ir) } else { timelocks::check_timelock_bounds(None, ir).or_else(|| timelocks::check_decrement(prev, ir)) };
            if let Some(m) = m {
                found.push(finding(
                    "I-8",
                    format!("leaf {leaf} transfer {tid} csv {op}"),
                    format!("leaf {leaf} transfer {tid} intermediate refunds on {op}: {m}"),
                ));
            }
        }
        found.extend(self.check_op_key(op, db, leaf, row));
        found
    }

    fn inflight_rows<'a>(&self, op: OperatorId, db: &'a Db, leaf: &LeafId) -> Vec<(TransferId, &'a TransferRow)> {
        let ids = self.inflight.get(&op).and_then(|m| m.get(leaf)).cloned().unwrap_or_default();
        ids.into_iter().filter_map(|t| db.transfers.get(&t).map(|r| (t, r))).collect()
    }

    /// I-3 on one operator: Y = owner key + P_SE, and the (cached) keyshare self-consistency.
    fn check_op_key(&mut self, op: OperatorId, db: &Db, leaf: &LeafId, row: &LeafRow) -> Vec<Finding> {
        let mut found = Vec::new();
        let Some(ks) = db.keyshares.get(&row.keyshare) else {
            return vec![finding(
                "I-3",
                format!("leaf {leaf} keyshare {op}"),
                format!("leaf {leaf} on {op}: keyshare {} is missing", row.keyshare),
            )];
        };
        if let Some(m) = check_leaf_key(&row.owner_signing_key, &ks.share.public_key, &row.verifying_key) {
            found.push(finding("I-3", format!("leaf {leaf} Y {op}"), format!("leaf {leaf} on {op}: {m}")));
        }
        found.extend(self.check_keyshare(op, row.keyshare, ks, &format!(" (leaf {leaf})")));
        found
    }

    /// I-3 on one operator's keyshare row (cached by digest), and agreement of its public parts
    /// with the other operators at the same epoch.
    fn check_keyshare(&mut self, op: OperatorId, id: KeyshareId, ks: &KeyshareRow, context: &str) -> Vec<Finding> {
        let mut found = Vec::new();
        let digest = digest_of(&ks.share);
        let key = (op, id, ks.epoch);
        let cached = self.key_cache.get(&key).filter(|(d, _)| *d == digest).map(|(_, r)| r.clone());
        let result = match cached {
            Some(r) => r,
            None => {
                self.tick("I-3");
                let r = check_key_consistency(op, &ks.share);
                self.key_cache.insert(key, (digest, r.clone()));
                r
            }
        };
        if let Some(m) = result {
            found.push(finding(
                "I-3",
                format!("keyshare {id} epoch {} {op}", ks.epoch),
                format!("keyshare {id}{context} epoch {} on {op}: {m}", ks.epoch),
            ));
        }
        let public = (ks.share.public_key.serialize(), digest_of(&ks.share.public_shares));
        let views = self.key_public.entry((id, ks.epoch)).or_default();
        views.insert(op, public);
        if let Some(m) = check_public_agreement(views) {
            found.push(finding(
                "I-3",
                format!("keyshare {id} epoch {} agreement", ks.epoch),
                format!("keyshare {id}{context} epoch {}: {m}", ks.epoch),
            ));
        }
        found
    }

    /// I-3 on keyshares a DKG just produced (before any leaf uses them): each new (operator,
    /// keyshare) is checked once; later changes come with a leaf and are checked there.
    fn check_new_keyshares(&mut self, op: OperatorId, db: &Db) -> Vec<Finding> {
        if self.keyshares_seen.get(&op) == Some(&db.keyshares.len()) {
            return Vec::new();
        }
        self.keyshares_seen.insert(op, db.keyshares.len());
        let fresh: Vec<KeyshareId> = db.keyshares.keys().filter(|id| self.keyshares_checked.insert((op, **id))).copied().collect();
        let mut found = Vec::new();
        for id in fresh {
            found.extend(self.check_keyshare(op, id, &db.keyshares[&id], " (fresh from DKG)"));
        }
        found
    }

    /// Cross-operator checks of one leaf: I-2, I-6 and the I-1 deposit bookkeeping.
    fn check_leaf(&mut self, dbs: &[(OperatorId, &Db)], leaf: &LeafId) -> Vec<Finding> {
        let rows: Vec<(OperatorId, &LeafRow)> =
            dbs.iter().filter_map(|(op, db)| db.leaves.get(leaf).map(|r| (*op, r))).collect();
        let inflight: BTreeSet<TransferId> = dbs
            .iter()
            .filter_map(|(op, _)| self.inflight.get(op).and_then(|m| m.get(leaf)))
            .flatten()
            .copied()
            .collect();
        let mut found = Vec::new();
        self.tick("I-2");
        self.tick("I-6");
        found.extend(self.check_owner(dbs, leaf, &rows, &inflight));
        self.record_history(dbs, leaf, &rows);
        found.extend(self.check_ordering(dbs, leaf, &rows, &inflight));
        let split_child = dbs.iter().any(|(_, db)| db.split_parent.contains_key(leaf));
        found.extend(self.track_settled(leaf, &rows, split_child));
        found
    }

    /// I-2: agreement on the owner when nothing is in flight; sender or receiver while in flight.
    fn check_owner(
        &self,
        dbs: &[(OperatorId, &Db)],
        leaf: &LeafId,
        rows: &[(OperatorId, &LeafRow)],
        inflight: &BTreeSet<TransferId>,
    ) -> Option<Finding> {
        let owners: Vec<(OperatorId, [u8; 33])> =
            rows.iter().map(|(op, r)| (*op, r.owner_identity.serialize())).collect();
        let parties: Vec<(TransferId, [u8; 33], [u8; 33])> = inflight
            .iter()
            .filter_map(|t| {
                let row = dbs.iter().find_map(|(_, db)| db.transfers.get(t))?;
                Some((*t, row.sender.serialize(), row.receiver.serialize()))
            })
            .collect();
        let m = check_unique_owner(&owners, &parties)?;
        Some(finding("I-2", format!("leaf {leaf}"), format!("leaf {leaf}: {m}")))
    }

    /// Adds every refund the operators hold now to the leaf's history (old owners never forget).
    fn record_history(&mut self, dbs: &[(OperatorId, &Db)], leaf: &LeafId, rows: &[(OperatorId, &LeafRow)]) {
        let mut new = Vec::new();
        for (_, r) in rows {
            new.extend(entries_of(&r.refunds, &r.owner_identity));
        }
        for (op, db) in dbs {
            for (_, t) in self.inflight_rows(*op, db, leaf) {
                // Before SENDER_KEY_TWEAKED the transfer can still be cancelled and the receiver
                // never gets these; from then on the receiver may hold them forever.
                if !t.status.is_sent() {
                    continue;
                }
                if let Some(ir) = t.leaves.get(leaf).and_then(|l| l.intermediate_refunds.as_ref()) {
                    new.extend(entries_of(ir, &t.receiver));
                }
            }
        }
        self.history.entry(*leaf).or_default().extend(new);
    }

    /// I-6 on one leaf against its current refunds (see [`current_refunds`]).
    fn check_ordering(
        &self,
        dbs: &[(OperatorId, &Db)],
        leaf: &LeafId,
        rows: &[(OperatorId, &LeafRow)],
        inflight: &BTreeSet<TransferId>,
    ) -> Vec<Finding> {
        let Some(current) = current_refunds(dbs, leaf, rows, inflight, self.operators) else {
            return Vec::new();
        };
        let Some(history) = self.history.get(leaf) else { return Vec::new() };
        // Lightning send: while a SEND swap's HTLC refunds are the current ones, the sender's
        // refunds need mature only 30 blocks later (the HTLC's (current − 100) + 70, §3.3).
        let htlc = inflight.iter().any(|t| {
            dbs.iter().any(|(_, db)| {
                reference_node::operator::preimage_send::send_hash_of(db, *t).is_some() && db.transfers.get(t).is_some_and(|r| r.status.is_sent() && !r.status.is_terminal())
            })
        });
        let gap = if htlc { TIME_LOCK_INTERVAL - reference_node::tx::timelock::HTLC_TIMELOCK_OFFSET } else { TIME_LOCK_INTERVAL };
        check_refund_order_gap(history, &current, gap)
            .into_iter()
            .map(|(old_owner, m)| {
                finding("I-6", format!("leaf {leaf} old owner {}", short_key(&old_owner)), format!("leaf {leaf}: {m}"))
            })
            .collect()
    }

    /// Keeps the set of leaves whose deposit a majority has seen confirmed; a deposit outpoint
    /// must back at most one such leaf (each deposit counted once, I-1).
    fn track_settled(&mut self, leaf: &LeafId, rows: &[(OperatorId, &LeafRow)], split_child: bool) -> Option<Finding> {
        // A split child is backed by its parent's deposit, which the parent (SPLITTED, still
        // settled) already counts; the children sum to it (checker/split.rs).
        if split_child {
            return None;
        }
        let confirmed = rows.iter().filter(|(_, r)| r.status != LeafStatus::Creating).count();
        if !is_majority(confirmed, self.operators) {
            self.settled.remove(leaf);
            return None;
        }
        let (_, row) = rows.iter().find(|(_, r)| r.status != LeafStatus::Creating)?;
        if self.settled.insert(*leaf, (row.value_sats, row.deposit_outpoint)).is_none() {
            self.to_back.insert(*leaf);
        }
        let other = self
            .settled
            .iter()
            .find(|(l, (_, o))| *l != leaf && *o == row.deposit_outpoint)
            .map(|(l, _)| *l)?;
        Some(finding(
            "I-1",
            format!("deposit {}", row.deposit_outpoint),
            format!(
                "deposit {} is counted twice: it backs both leaf {other} and leaf {leaf}",
                row.deposit_outpoint
            ),
        ))
    }
}

/// What the quiescence checks read of every wallet.
pub fn wallet_views(engine: &Engine<Actor, Chain>) -> Vec<WalletView<'_>> {
    engine
        .nodes()
        .filter_map(|(_, a)| a.as_wallet())
        .map(|w| WalletView { id: w.id(), identity: w.identity_public().serialize(), leaves: w.leaves(), pending_work: w.pending_work() })
        .collect()
}

/// True when every pending operation is terminal (the liveness phase may end early). Runs after
/// every event of the liveness phase, so it reads no key material (a wallet's identity costs an
/// EC multiplication).
pub fn is_quiet(engine: &Engine<Actor, Chain>) -> bool {
    let wallets_idle = engine.nodes().filter_map(|(_, a)| a.as_wallet()).all(|w| {
        w.pending_work() == 0 && !w.leaves().values().any(|l| matches!(l.state, reference_node::wallet::LeafState::Exiting(_)))
    });
    wallets_idle
        && engine
            .nodes()
            .filter_map(|(_, a)| a.as_operator())
            .filter(|o| engine.is_up(NodeId::Operator(o.id())))
            .all(|o| liveness::operator_quiet(o.db()))
}

/// Strictly more than half of all `n` operators.
fn is_majority(count: usize, n: u16) -> bool {
    count * 2 > usize::from(n)
}

/// Leaf → non-terminal transfers touching it, on one operator.
fn inflight_index(db: &Db) -> BTreeMap<LeafId, Vec<TransferId>> {
    let mut idx: BTreeMap<LeafId, Vec<TransferId>> = BTreeMap::new();
    for (tid, t) in db.transfers.iter().filter(|(_, t)| !t.status.is_terminal()) {
        for leaf in t.leaves.keys() {
            idx.entry(*leaf).or_default().push(*tid);
        }
    }
    idx
}

/// Everything the leaf checks read on one operator: the row, its keyshare, and the in-flight
/// transfers touching it (status, parties, this leaf's intermediate refunds).
fn leaf_fingerprint(db: &Db, row: &LeafRow, inflight: Option<&Vec<TransferId>>) -> Hash32 {
    let ks = db.keyshares.get(&row.keyshare).map(|k| (k.epoch, digest_of(&k.share)));
    let transfers: Vec<_> = inflight
        .into_iter()
        .flatten()
        .filter_map(|tid| {
            let t = db.transfers.get(tid)?;
            let leaf_part = t.leaves.values().map(|l| &l.intermediate_refunds).collect::<Vec<_>>();
            Some((tid, t.status, t.sender, t.receiver, leaf_part))
        })
        .collect();
    digest_of(&(row, ks, transfers))
}

/// The leaf's current refunds and their owner, or None while ownership is in transition (a
/// transfer in flight but not yet SENDER_KEY_TWEAKED on a majority: both parties' refunds
/// legitimately coexist) or unknown (Creating, no majority row).
///
/// A transfer ≥ SENDER_KEY_TWEAKED (not terminal) on a majority → its intermediate refunds paying
/// the receiver; otherwise the majority's `LeafRow.refunds` paying `owner_identity`.
pub fn current_refunds(
    dbs: &[(OperatorId, &Db)],
    leaf: &LeafId,
    rows: &[(OperatorId, &LeafRow)],
    inflight: &BTreeSet<TransferId>,
    n: u16,
) -> Option<Vec<RefundEntry>> {
    for tid in inflight {
        let statuses: Vec<(&TransferRow, TransferStatus)> =
            dbs.iter().filter_map(|(_, db)| db.transfers.get(tid)).map(|t| (t, t.status)).collect();
        let count = |f: &dyn Fn(TransferStatus) -> bool| statuses.iter().filter(|(_, s)| f(*s)).count();
        if is_majority(count(&|s| s.is_terminal()), n) {
            continue; // resolved: the leaf rows say who owns it
        }
        if !is_majority(count(&|s| s.is_sent()), n) {
            return None;
        }
        let (row, ir) = statuses.iter().find_map(|(t, s)| {
            let ir = t.leaves.get(leaf)?.intermediate_refunds.as_ref()?;
            (s.is_sent() && !s.is_terminal()).then_some((*t, ir))
        })?;
        return Some(entries_of(ir, &row.receiver));
    }
    let (row, count) = majority_row(rows)?;
    if !is_majority(count, n) || row.status == LeafStatus::Creating {
        return None;
    }
    Some(entries_of(&row.refunds, &row.owner_identity))
}

/// The most common (owner, refunds) among the operators' rows, with how many hold it.
fn majority_row<'a>(rows: &[(OperatorId, &'a LeafRow)]) -> Option<(&'a LeafRow, usize)> {
    let same = |a: &LeafRow, b: &LeafRow| a.owner_identity == b.owner_identity && a.refunds == b.refunds;
    rows.iter()
        .map(|(_, r)| (*r, rows.iter().filter(|(_, o)| same(r, o)).count()))
        .max_by_key(|(_, c)| *c)
}

// ------------------------------------------------------------------------------------------------
// Pure checks.
// ------------------------------------------------------------------------------------------------

fn out0(tx: &Transaction) -> Option<u64> {
    tx.output.first().map(|o| o.value.to_sat())
}

/// I-1 on one leaf's txs (spark-protocol §3.2): CPFP node and CPFP refund carry the full value;
/// the direct node and direct-from-CPFP refund lose MaybeApplyFee once; the direct refund spends
/// the (already reduced) direct node output and loses it again.
pub fn check_tx_values(value: u64, nodes: Option<&NodeSet>, refunds: &RefundSet) -> Option<String> {
    let fee1 = maybe_apply_fee(Amount::from_sat(value)).to_sat();
    let fee2 = maybe_apply_fee(Amount::from_sat(fee1)).to_sat();
    let mut expect: Vec<(&str, &Transaction, u64)> = vec![
        ("CPFP refund", &refunds.cpfp, value),
        ("direct refund", &refunds.direct, fee2),
        ("direct-from-CPFP refund", &refunds.direct_from_cpfp, fee1),
    ];
    if let Some(n) = nodes {
        expect.push(("CPFP node tx", &n.cpfp, value));
        expect.push(("direct node tx", &n.direct, fee1));
    }
    expect.into_iter().find_map(|(name, tx, want)| {
        let got = out0(tx);
        (got != Some(want)).then(|| {
            format!("{name} output 0 is {got:?} sat, expected {want} sat for leaf value {value} sat")
        })
    })
}

/// I-3: Y == owner signing key + P_SE.
pub fn check_leaf_key(owner_signing_key: &PublicKey, public_key: &PublicKey, verifying_key: &PublicKey) -> Option<String> {
    let sum = point_add(owner_signing_key, public_key);
    (sum.as_ref() != Some(verifying_key)).then(|| {
        format!(
            "owner signing key {} + keyshare public key {} = {} != verifying key {}",
            short_pk(owner_signing_key),
            short_pk(public_key),
            sum.map(|s| short_pk(&s)).unwrap_or_else(|| "infinity".into()),
            short_pk(verifying_key)
        )
    })
}

/// I-3 on one operator's share: s_me·G == public_shares[me], and the Lagrange combination of the
/// first t public shares (x = share_x) is the public key.
pub fn check_key_consistency(me: OperatorId, share: &KeyShare) -> Option<String> {
    let Some(mine) = share.public_shares.get(&me) else {
        return Some(format!("public_shares has no entry for {me}"));
    };
    let sg = base_mul(&share.secret_share);
    if sg.as_ref() != Some(mine) {
        return Some(format!(
            "secret share·G = {} != public_shares[{me}] = {}",
            sg.map(|p| short_pk(&p)).unwrap_or_else(|| "infinity".into()),
            short_pk(mine)
        ));
    }
    let t = usize::from(share.threshold);
    if t == 0 || share.public_shares.len() < t {
        return Some(format!("{} public shares for threshold {t}", share.public_shares.len()));
    }
    let first: Vec<(u32, &PublicKey)> = share.public_shares.iter().take(t).map(|(o, p)| (o.share_x(), p)).collect();
    let xs: Vec<u32> = first.iter().map(|(x, _)| *x).collect();
    let terms: Option<Vec<PublicKey>> = first.iter().map(|(x, p)| point_mul(p, &lagrange_at_zero(*x, &xs))).collect();
    let combined = terms.and_then(|t| point_sum(t.iter()));
    (combined.as_ref() != Some(&share.public_key)).then(|| {
        format!(
            "Lagrange combination of the first {t} public shares = {} != public key {}",
            combined.map(|p| short_pk(&p)).unwrap_or_else(|| "infinity".into()),
            short_pk(&share.public_key)
        )
    })
}

/// I-3 across operators at one (keyshare, epoch): every view of the public parts is identical.
pub fn check_public_agreement(views: &BTreeMap<OperatorId, PublicView>) -> Option<String> {
    let (first_op, first) = views.iter().next()?;
    let (op, other) = views.iter().find(|(_, v)| *v != first)?;
    let what = if other.0 != first.0 { "public key" } else { "public shares" };
    Some(format!(
        "{first_op} and {op} disagree on the {what}: public key {} (shares {}) vs {} (shares {})",
        short_key(&first.0),
        hex::encode(&first.1[..4]),
        short_key(&other.0),
        hex::encode(&other.1[..4])
    ))
}

/// I-2: `owners` are (operator, owner identity) of one leaf; `inflight` the non-terminal
/// transfers touching it as (id, sender, receiver).
pub fn check_unique_owner(owners: &[(OperatorId, [u8; 33])], inflight: &[(TransferId, [u8; 33], [u8; 33])]) -> Option<String> {
    if inflight.is_empty() {
        let (op0, o0) = owners.first()?;
        let (op, o) = owners.iter().find(|(_, o)| o != o0)?;
        return Some(format!(
            "no transfer in flight but {op0} says owner {} and {op} says owner {}",
            short_key(o0),
            short_key(o)
        ));
    }
    let allowed = |o: &[u8; 33]| inflight.iter().any(|(_, s, r)| s == o || r == o);
    let (op, o) = owners.iter().find(|(_, o)| !allowed(o))?;
    let (t, s, r) = &inflight[0];
    Some(format!(
        "{op} says owner {} while transfer {t} is in flight (sender {}, receiver {})",
        short_key(o),
        short_key(s),
        short_key(r)
    ))
}

/// I-6: for each outpoint the current owner's refunds spend, every other owner's tx on that
/// outpoint must mature at least 100 blocks after the current owner's earliest one and strictly
/// after its latest (direct variants, +50). Returns (offending old owner, message) per old owner.
pub fn check_refund_order(history: &BTreeSet<RefundEntry>, current: &[RefundEntry]) -> Vec<([u8; 33], String)> {
    check_refund_order_gap(history, current, TIME_LOCK_INTERVAL)
}

/// [`check_refund_order`] with the required gap given: 100 blocks, or 30 while the current
/// refunds are a Lightning send's HTLC refunds ((current − 100) + 70).
pub fn check_refund_order_gap(history: &BTreeSet<RefundEntry>, current: &[RefundEntry], gap: u16) -> Vec<([u8; 33], String)> {
    let Some(owner) = current.first().map(|c| c.owner) else { return Vec::new() };
    let mut span: BTreeMap<OutPoint, (u16, u16)> = BTreeMap::new();
    for c in current {
        let e = span.entry(c.outpoint).or_insert((c.csv, c.csv));
        *e = (e.0.min(c.csv), e.1.max(c.csv));
    }
    let mut out: BTreeMap<[u8; 33], String> = BTreeMap::new();
    for h in history.iter().filter(|h| h.owner != owner) {
        let Some((lo, hi)) = span.get(&h.outpoint) else { continue };
        let ok = u32::from(h.csv) >= u32::from(*lo) + u32::from(gap) && h.csv > *hi;
        if !ok && !out.contains_key(&h.owner) {
            let m = format!(
                "on outpoint {}:{} previous owner {} holds a refund with CSV {} but current owner {} has CSV {}..{} (need >= {} and > {})",
                &h.outpoint.txid.to_string()[..8],
                h.outpoint.vout,
                short_key(&h.owner),
                h.csv,
                short_key(&owner),
                lo,
                hi,
                u32::from(*lo) + u32::from(gap),
                hi
            );
            out.insert(h.owner, m);
        }
    }
    out.into_iter().collect()
}

/// I-11: the first message each (signer, commitment) signed.
#[derive(Default)]
pub struct NonceLog {
    first: BTreeMap<(String, [u8; 32]), [u8; 32]>,
}

impl NonceLog {
    /// A violation if this nonce already signed a different message (same message = a retry).
    pub fn record(&mut self, signer: &str, commitment: &[u8; 32], message: &[u8; 32]) -> Option<Finding> {
        let first = *self.first.entry((signer.to_string(), *commitment)).or_insert(*message);
        (first != *message).then(|| {
            finding(
                "I-11",
                format!("nonce {signer} {}", hex::encode(&commitment[..4])),
                format!(
                    "{signer} used nonce {} for message {} and again for message {}",
                    hex::encode(&commitment[..4]),
                    hex::encode(&first[..4]),
                    hex::encode(&message[..4])
                ),
            )
        })
    }
}

/// I-11 over a list of (signer, commitment, message) uses.
pub fn check_nonces(uses: &[(String, [u8; 32], [u8; 32])]) -> Vec<Finding> {
    let mut log = NonceLog::default();
    uses.iter().filter_map(|(s, c, m)| log.record(s, c, m)).collect()
}

/// L-1: every sent transfer was claimed and is COMPLETED on every operator.
pub fn check_claimed(
    sent: &BTreeMap<TransferId, Micros>,
    claimed: &BTreeMap<TransferId, Micros>,
    dbs: &[(OperatorId, &Db)],
) -> Vec<Finding> {
    sent.keys()
        .filter_map(|t| {
            let statuses: Vec<(OperatorId, Option<TransferStatus>)> =
                dbs.iter().map(|(op, db)| (*op, db.transfers.get(t).map(|r| r.status))).collect();
            let all_done = statuses.iter().all(|(_, s)| *s == Some(TransferStatus::Completed));
            if claimed.contains_key(t) && all_done {
                return None;
            }
            let seen: Vec<String> = statuses
                .iter()
                .map(|(op, s)| format!("{op}={}", s.map(|s| format!("{s:?}")).unwrap_or_else(|| "absent".into())))
                .collect();
            Some(finding(
                "L-1",
                format!("transfer {t}"),
                format!(
                    "transfer {t} was sent but {} at the end; statuses: {}",
                    if claimed.contains_key(t) { "is not COMPLETED everywhere" } else { "never claimed" },
                    seen.join(", ")
                ),
            ))
        })
        .collect()
}

/// I-1 at quiescence: Σ confirmed deposits == Σ value of leaves a majority saw confirmed.
/// (Checked at the end only: wallets and operators see a deposit's block at different events.)
pub fn check_conservation(deposits: &BTreeMap<LeafId, u64>, settled: &BTreeMap<LeafId, (u64, OutPoint)>) -> Vec<Finding> {
    let dep: u64 = deposits.values().sum();
    let leaves: u64 = settled.values().map(|(v, _)| *v).sum();
    if dep == leaves {
        return Vec::new();
    }
    let mut diff: Vec<String> = Vec::new();
    for (l, v) in deposits {
        match settled.get(l) {
            Some((s, _)) if s == v => {}
            Some((s, _)) => diff.push(format!("leaf {l}: deposit {v} sat, leaf value {s} sat")),
            None => diff.push(format!("leaf {l}: deposit {v} sat confirmed but leaf not confirmed on a majority")),
        }
    }
    for (l, (s, _)) in settled.iter().filter(|(l, _)| !deposits.contains_key(*l)) {
        diff.push(format!("leaf {l}: value {s} sat with no confirmed deposit"));
    }
    vec![finding(
        "I-1",
        "conservation".into(),
        format!("Σ confirmed deposits {dep} sat != Σ confirmed leaf values {leaves} sat; {}", diff.join("; ")),
    )]
}

/// Nearest-rank percentile of sorted samples: the ⌈p/100·N⌉-th smallest.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn summarize(mut samples: Vec<f64>, budget_p99_s: Option<f64>) -> LatencySummary {
    samples.sort_by(|a, b| a.total_cmp(b));
    LatencySummary {
        samples: samples.len() as u64,
        p50_s: percentile(&samples, 50.0),
        p99_s: percentile(&samples, 99.0),
        max_s: samples.last().copied(),
        budget_p99_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash as _;
    use bitcoin::{absolute, transaction, Sequence, TxIn, TxOut};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use reference_node::crypto::Scalar;

    fn key(k: u32) -> PublicKey {
        base_mul(&Scalar::from_u32(k)).unwrap()
    }

    fn outpoint(n: u8) -> OutPoint {
        OutPoint { txid: Txid::from_byte_array([n; 32]), vout: 0 }
    }

    /// A one-input tx spending `prev` with `csv`, paying `value` (distinct txids per csv/value).
    fn tx(prev: OutPoint, csv: u16, value: u64) -> Transaction {
        Transaction {
            version: transaction::Version(3),
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn { previous_output: prev, sequence: Sequence(u32::from(csv)), ..Default::default() }],
            output: vec![TxOut { value: Amount::from_sat(value), script_pubkey: Default::default() }],
        }
    }

    /// The refund trio of one owner: CPFP + direct-from-CPFP on the CPFP node, direct on the
    /// direct node (the shape the protocol signs).
    fn trio(owner: u32, csv: u16) -> Vec<RefundEntry> {
        let o = key(owner);
        vec![
            RefundEntry::of(&tx(outpoint(1), csv, 10_000), &o).unwrap(),
            RefundEntry::of(&tx(outpoint(1), csv + 50, 9_045), &o).unwrap(),
            RefundEntry::of(&tx(outpoint(2), csv + 50, 8_090), &o).unwrap(),
        ]
    }

    fn history(sets: &[Vec<RefundEntry>]) -> BTreeSet<RefundEntry> {
        sets.iter().flatten().cloned().collect()
    }

    #[test]
    fn refund_order_correct_decrement_passes() {
        // A (2000) → B (1900) → C (1800): every old owner's tx matures ≥ 100 blocks later.
        let (a, b, c) = (trio(1, 2000), trio(2, 1900), trio(3, 1800));
        let h = history(&[a, b.clone(), c.clone()]);
        assert!(check_refund_order(&h, &c).is_empty());
        assert!(check_refund_order(&history(&[trio(1, 2000), b.clone()]), &b).is_empty());
    }

    #[test]
    fn refund_order_equal_csv_for_two_owners_fails() {
        // The "skip the −100 decrement" bug: the receiver's refunds carry the sender's CSV.
        let (a, b) = (trio(1, 2000), trio(2, 2000));
        let found = check_refund_order(&history(&[a, b.clone()]), &b);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, key(1).serialize());
        assert!(found[0].1.contains("CSV 2000"), "{}", found[0].1);
        assert!(found[0].1.contains(&short_pk(&key(1))) && found[0].1.contains(&short_pk(&key(2))));
    }

    #[test]
    fn refund_order_direct_variant_must_stay_behind_old_cpfp() {
        // A decrement of only 40: old CPFP (2000) ≥ 1960 + 100 fails, and 2000 ≤ max(2010).
        let found = check_refund_order(&history(&[trio(1, 2000), trio(2, 1960)]), &trio(2, 1960));
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn refund_order_same_owner_ties_and_other_outpoints_ignored() {
        // Intermediate vs claimed refund of the same owner may tie; txs on other outpoints
        // (pre-renew node) are I-7's business.
        let mut b2 = trio(2, 1900);
        b2[0] = RefundEntry::of(&tx(outpoint(1), 1900, 10_001), &key(2)).unwrap();
        let old_node = RefundEntry::of(&tx(outpoint(9), 100, 10_000), &key(1)).unwrap();
        let mut h = history(&[trio(2, 1900), b2.clone()]);
        h.insert(old_node);
        assert!(check_refund_order(&h, &b2).is_empty());
        assert!(check_refund_order(&h, &[]).is_empty());
    }

    #[test]
    fn nonce_reuse_with_two_messages_fails_same_message_passes() {
        let c = [7u8; 32];
        let same = vec![("operator:0".to_string(), c, [1u8; 32]), ("operator:0".to_string(), c, [1u8; 32])];
        assert!(check_nonces(&same).is_empty());
        let mut reuse = same.clone();
        reuse.push(("operator:0".to_string(), c, [2u8; 32]));
        reuse.push(("operator:0".to_string(), c, [3u8; 32]));
        let found = check_nonces(&reuse);
        // Two bad uses of one nonce: two findings, one subject (stamped once).
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].invariant, "I-11");
        assert_eq!(found[0].subject, found[1].subject);
        // Another signer may use an equal commitment digest for its own message.
        let other = vec![("operator:0".to_string(), c, [1u8; 32]), ("operator:1".to_string(), c, [2u8; 32])];
        assert!(check_nonces(&other).is_empty());
    }

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(5.0));
        assert_eq!(percentile(&v, 99.0), Some(10.0));
        assert_eq!(percentile(&v, 10.0), Some(1.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
        let s = summarize(vec![3.0, 1.0, 2.0], Some(2.5));
        assert_eq!((s.samples, s.p50_s, s.p99_s, s.max_s), (3, Some(2.0), Some(3.0), Some(3.0)));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 99.0), Some(99.0));
    }

    fn dealt(n: u16, t: u16) -> Vec<KeyShare> {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let secret = Scalar::random(&mut rng);
        KeyShare::deal(&secret, n, t, &mut rng).unwrap()
    }

    #[test]
    fn key_consistency_accepts_dealt_shares() {
        for (i, ks) in dealt(5, 3).iter().enumerate() {
            assert_eq!(check_key_consistency(OperatorId(i as u16), ks), None);
        }
    }

    #[test]
    fn key_consistency_catches_wrong_public_share() {
        let mut shares = dealt(5, 3);
        // Operator 1's own entry is wrong: s_1·G check fails on operator 1.
        shares[1].public_shares.insert(OperatorId(1), key(42));
        let m = check_key_consistency(OperatorId(1), &shares[1]).unwrap();
        assert!(m.contains("public_shares[operator:1]"), "{m}");
        // Operator 0's copy of operator 2's share is wrong: interpolation fails on operator 0.
        shares[0].public_shares.insert(OperatorId(2), key(42));
        let m = check_key_consistency(OperatorId(0), &shares[0]).unwrap();
        assert!(m.contains("Lagrange"), "{m}");
        // A wrong share beyond the first t is caught by cross-operator agreement instead.
        let good = dealt(5, 3);
        let mut bad = good[4].clone();
        bad.public_shares.insert(OperatorId(3), key(42));
        assert_eq!(check_key_consistency(OperatorId(4), &bad), None);
        let view = |k: &KeyShare| (k.public_key.serialize(), digest_of(&k.public_shares));
        let views: BTreeMap<OperatorId, _> = [(OperatorId(0), view(&good[0])), (OperatorId(4), view(&bad))].into();
        let m = check_public_agreement(&views).unwrap();
        assert!(m.contains("public shares") && m.contains("operator:4"), "{m}");
        let same: BTreeMap<OperatorId, _> = [(OperatorId(0), view(&good[0])), (OperatorId(1), view(&good[1]))].into();
        assert_eq!(check_public_agreement(&same), None);
    }

    #[test]
    fn leaf_key_is_owner_key_plus_operator_key() {
        let (p_user, p_se) = (key(5), key(6));
        assert_eq!(check_leaf_key(&p_user, &p_se, &key(11)), None);
        assert!(check_leaf_key(&p_user, &p_se, &key(12)).is_some());
    }

    #[test]
    fn unique_owner_rules() {
        let (a, b, c) = (key(1).serialize(), key(2).serialize(), key(3).serialize());
        let (o0, o1) = (OperatorId(0), OperatorId(1));
        assert_eq!(check_unique_owner(&[(o0, a), (o1, a)], &[]), None);
        assert!(check_unique_owner(&[(o0, a), (o1, b)], &[]).is_some());
        let t = [(TransferId([1; 16]), a, b)];
        assert_eq!(check_unique_owner(&[(o0, a), (o1, b)], &t), None);
        let m = check_unique_owner(&[(o0, a), (o1, c)], &t).unwrap();
        assert!(m.contains("operator:1") && m.contains(&short_key(&c)), "{m}");
    }

    #[test]
    fn tx_values_follow_the_fee_rule() {
        let p = outpoint(1);
        let good = RefundSet { cpfp: tx(p, 2000, 10_000), direct: tx(p, 2050, 8_090), direct_from_cpfp: tx(p, 2050, 9_045) };
        let nodes = NodeSet { cpfp: tx(p, 0, 10_000), direct: tx(p, 50, 9_045) };
        assert_eq!(check_tx_values(10_000, Some(&nodes), &good), None);
        let mut bad = good.clone();
        bad.direct_from_cpfp = tx(p, 2050, 10_000);
        let m = check_tx_values(10_000, Some(&nodes), &bad).unwrap();
        assert!(m.contains("direct-from-CPFP") && m.contains("9045"), "{m}");
        // At or below the fee nothing is taken.
        let small = RefundSet { cpfp: tx(p, 2000, 900), direct: tx(p, 2050, 900), direct_from_cpfp: tx(p, 2050, 900) };
        assert_eq!(check_tx_values(900, None, &small), None);
    }

    #[test]
    fn unclaimed_transfer_is_an_l1_violation() {
        let t = TransferId([9; 16]);
        let sent: BTreeMap<_, _> = [(t, Micros(1))].into();
        let db = Db::default();
        let found = check_claimed(&sent, &BTreeMap::new(), &[(OperatorId(0), &db)]);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("never claimed") && found[0].message.contains("operator:0=absent"));
    }

    #[test]
    fn conservation_at_end() {
        let l = LeafId([1; 16]);
        let deps: BTreeMap<_, _> = [(l, 5_000)].into();
        let ok: BTreeMap<_, _> = [(l, (5_000, outpoint(1)))].into();
        assert!(check_conservation(&deps, &ok).is_empty());
        let bad: BTreeMap<_, _> = [(l, (6_000, outpoint(1)))].into();
        assert_eq!(check_conservation(&deps, &bad).len(), 1);
    }

    #[test]
    fn budget_and_dedupe() {
        let mut c = Checker::new(3, 2, Some(1.0));
        let mut found = Vec::new();
        let t = TransferId([3; 16]);
        let w = reference_node::types::WalletId(0);
        c.observe(&Observation::TransferSent { transfer: t, sender: w, receiver: key(1), leaf: LeafId([0; 16]), value_sats: 1 }, Micros::from_secs(1), &mut found);
        c.observe(&Observation::TransferClaimed { transfer: t, receiver: w }, Micros::from_secs(4), &mut found);
        assert_eq!(c.transfer_latency().p99_s, Some(3.0));
        let end = c.end_findings(&[]);
        assert!(end.iter().any(|f| f.invariant == "budget"));
        let v1 = c.stamp(end.clone(), 10, Micros::from_secs(5));
        let v2 = c.stamp(end, 11, Micros::from_secs(6));
        assert_eq!(v1.len(), 1);
        assert!(v2.is_empty(), "reported twice: {v2:?}");
        assert_eq!((v1[0].event_index, v1[0].sim_time_s), (10, 5.0));
    }

    // --- the incremental path over hand-built operator tables ---

    use reference_node::crypto::vss::VssShare;
    use reference_node::operator::store::{KeyshareRow, KeyshareStatus, StoredTweak, TransferLeafRow};

    const LEAF: LeafId = LeafId([5; 16]);
    const KS: KeyshareId = KeyshareId([6; 16]);
    const T: TransferId = TransferId([7; 16]);

    fn refunds_on(nodes: &NodeSet, owner: u32, csv: u16) -> RefundSet {
        let (c, d) = (OutPoint { txid: nodes.cpfp.compute_txid(), vout: 0 }, OutPoint { txid: nodes.direct.compute_txid(), vout: 0 });
        let mut r = RefundSet { cpfp: tx(c, csv, 10_000), direct: tx(d, csv + 50, 8_090), direct_from_cpfp: tx(c, csv + 50, 9_045) };
        // The owner only changes the txid here (a real tx would pay its key).
        r.cpfp.lock_time = absolute::LockTime::from_consensus(owner);
        r
    }

    /// Three operators (t = 2) holding one available 10 000-sat leaf owned by key(1).
    fn tables() -> Vec<Db> {
        let shares = dealt(3, 2);
        let nodes = NodeSet { cpfp: tx(outpoint(1), 0, 10_000), direct: tx(outpoint(1), 50, 9_045) };
        let row = LeafRow {
            status: LeafStatus::Available,
            keyshare: KS,
            value_sats: 10_000,
            verifying_key: point_add(&key(21), &shares[0].public_key).unwrap(),
            owner_identity: key(1),
            owner_signing_key: key(21),
            deposit_outpoint: outpoint(1),
            refunds: refunds_on(&nodes, 1, 2000),
            nodes,
            ancestors: Vec::new(),
        };
        shares
            .into_iter()
            .map(|share| {
                let mut db = Db::default();
                db.keyshares.insert(KS, KeyshareRow { status: KeyshareStatus::InUse, share, coordinator: OperatorId(0), epoch: 0 });
                db.leaves.insert(LEAF, row.clone());
                db
            })
            .collect()
    }

    /// Puts transfer key(1) → key(2) at `status` with intermediate refunds at `csv`.
    fn with_transfer(db: &mut Db, status: TransferStatus, csv: u16) {
        let ir = refunds_on(&db.leaves[&LEAF].nodes, 2, csv);
        let tweak = StoredTweak { share: VssShare { x: 1, share: Scalar::from_u32(1), proofs: vec![] }, pubkey_shares_tweak: BTreeMap::new() };
        let leaf = TransferLeafRow {
            sender_tweak: tweak,
            secret_cipher: vec![],
            signature: vec![],
            previous_refunds: db.leaves[&LEAF].refunds.clone(),
            intermediate_refunds: Some(ir),
            receiver_tweak: None,
        };
        db.transfers.insert(T, TransferRow {
            status,
            sender: key(1),
            receiver: key(2),
            expiry: Micros::ZERO,
            coordinator: OperatorId(0),
            leaves: [(LEAF, leaf)].into(),
            receiver_commit_decided: false,
        });
        // The operators lock the leaf with the transfer row (I-4).
        db.leaves.get_mut(&LEAF).unwrap().status = if status.is_terminal() { LeafStatus::Available } else { LeafStatus::TransferLocked(T) };
    }

    fn run(c: &mut Checker, dbs: &[Db], changed: &[u16]) -> Vec<Finding> {
        let views: Vec<(OperatorId, &Db)> = dbs.iter().enumerate().map(|(i, d)| (OperatorId(i as u16), d)).collect();
        let changed: Vec<OperatorId> = changed.iter().map(|i| OperatorId(*i)).collect();
        c.check_dbs(&views, &changed)
    }

    #[test]
    fn consistent_tables_pass_and_unchanged_tables_are_not_rechecked() {
        let mut c = Checker::new(3, 2, None);
        let dbs = tables();
        assert_eq!(run(&mut c, &dbs, &[0, 1, 2]), vec![]);
        let checks = c.checks_run();
        assert!(checks > 0);
        assert_eq!(run(&mut c, &dbs, &[0, 1, 2]), vec![], "fingerprints unchanged");
        assert_eq!(c.checks_run(), checks, "nothing changed, nothing re-checked");
    }

    #[test]
    fn transfer_without_decrement_is_an_i6_violation() {
        for (csv, bad) in [(1900, false), (2000, true)] {
            let mut c = Checker::new(3, 2, None);
            let mut dbs = tables();
            assert_eq!(run(&mut c, &dbs, &[0, 1, 2]), vec![]);
            // One operator tweaked: ownership in transition, nothing to compare yet.
            with_transfer(&mut dbs[0], TransferStatus::SenderKeyTweaked, csv);
            with_transfer(&mut dbs[1], TransferStatus::SenderInitiatedCoordinator, csv);
            // I-8 sees the missing decrement on each operator's own tables right away.
            let (i8, rest): (Vec<_>, Vec<_>) = run(&mut c, &dbs, &[0, 1]).into_iter().partition(|f| f.invariant == "I-8");
            assert_eq!(rest, vec![]);
            assert_eq!(!i8.is_empty(), bad, "csv {csv}: {i8:?}");
            // A majority tweaked: the receiver's intermediate refunds are current.
            with_transfer(&mut dbs[1], TransferStatus::SenderKeyTweaked, csv);
            let found: Vec<_> = run(&mut c, &dbs, &[1]).into_iter().filter(|f| f.invariant != "I-8").collect();
            assert_eq!(found.iter().any(|f| f.invariant == "I-6"), bad, "csv {csv}: {found:?}");
            if bad {
                assert!(found[0].message.contains("CSV 2000"), "{}", found[0].message);
            }
        }
    }

    #[test]
    fn owner_divergence_and_key_mismatch_are_found_incrementally() {
        let mut c = Checker::new(3, 2, None);
        let mut dbs = tables();
        assert_eq!(run(&mut c, &dbs, &[0, 1, 2]), vec![]);
        dbs[2].leaves.get_mut(&LEAF).unwrap().owner_identity = key(3);
        let found = run(&mut c, &dbs, &[2]);
        assert!(found.iter().any(|f| f.invariant == "I-2" && f.message.contains("operator:2")), "{found:?}");
        // Operator 1's copy of operator 0's public share drifts at the same epoch.
        let ks = &mut dbs[1].keyshares.get_mut(&KS).unwrap().share;
        ks.public_shares.insert(OperatorId(0), key(99));
        let found = run(&mut c, &dbs, &[1]);
        assert!(found.iter().any(|f| f.invariant == "I-3" && f.message.contains("Lagrange")), "{found:?}");
        assert!(found.iter().any(|f| f.invariant == "I-3" && f.message.contains("disagree")), "{found:?}");
    }

    #[test]
    fn leaf_value_change_is_an_i1_violation() {
        let mut c = Checker::new(3, 2, None);
        let mut dbs = tables();
        assert_eq!(run(&mut c, &dbs, &[0, 1, 2]), vec![]);
        dbs[0].leaves.get_mut(&LEAF).unwrap().value_sats = 20_000;
        let found = run(&mut c, &dbs, &[0]);
        assert!(found.iter().any(|f| f.invariant == "I-1" && f.message.contains("20000")), "{found:?}");
    }

    // --- the full checker: each invariant fires on a violating state and stays quiet otherwise ---

    fn views(dbs: &[Db]) -> Vec<(OperatorId, &Db)> {
        dbs.iter().enumerate().map(|(i, d)| (OperatorId(i as u16), d)).collect()
    }

    #[test]
    fn lock_without_transfer_is_i4_and_a_locked_transfer_is_quiet() {
        let mut c = Checker::new(3, 2, None);
        let mut dbs = tables();
        assert_eq!(run(&mut c, &dbs, &[0, 1, 2]), vec![]);
        with_transfer(&mut dbs[0], TransferStatus::SenderKeyTweakPending, 1900);
        assert_eq!(run(&mut c, &dbs, &[0]), vec![], "locked by its in-flight transfer");
        // Operator 1 locks the leaf for a transfer it has no row for.
        dbs[1].leaves.get_mut(&LEAF).unwrap().status = LeafStatus::TransferLocked(TransferId([8; 16]));
        let found = run(&mut c, &dbs, &[1]);
        assert!(found.iter().any(|f| f.invariant == "I-4" && f.message.contains("operator:1")), "{found:?}");
        // Operator 2 has the transfer in flight but left the leaf Available.
        with_transfer(&mut dbs[2], TransferStatus::SenderKeyTweakPending, 1900);
        dbs[2].leaves.get_mut(&LEAF).unwrap().status = LeafStatus::Available;
        let found = run(&mut c, &dbs, &[2]);
        assert!(found.iter().any(|f| f.invariant == "I-4" && f.message.contains("in flight")), "{found:?}");
    }

    #[test]
    fn status_going_backwards_or_split_across_operators_is_i5() {
        let mut c = Checker::new(3, 2, None);
        let mut dbs = tables();
        for (i, db) in dbs.iter_mut().enumerate() {
            with_transfer(db, if i == 2 { TransferStatus::SenderKeyTweakPending } else { TransferStatus::SenderKeyTweaked }, 1900);
        }
        assert_eq!(run(&mut c, &dbs, &[0, 1, 2]), vec![]);
        // Operator 0 goes back toward the sender.
        dbs[0].transfers.get_mut(&T).unwrap().status = TransferStatus::SenderInitiatedCoordinator;
        let found = run(&mut c, &dbs, &[0]);
        assert!(found.iter().any(|f| f.invariant == "I-5" && f.message.contains("SenderKeyTweaked -> SenderInitiatedCoordinator")), "{found:?}");
        // Operator 2 returns it while operator 1 already tweaked: legal locally, split across.
        with_transfer(&mut dbs[2], TransferStatus::Returned, 1900);
        let found = run(&mut c, &dbs, &[2]);
        assert!(found.iter().any(|f| f.invariant == "I-5" && f.message.contains("RETURNED on operator:2")), "{found:?}");
    }

    #[test]
    fn stale_epoch_at_quiescence_is_i10() {
        let mut c = Checker::new(3, 2, None);
        let mut dbs = tables();
        let down = BTreeSet::new();
        assert!(c.quiescence_findings(&views(&dbs), &[], &down, Micros::ZERO).iter().all(|f| f.invariant != "I-10"));
        dbs[0].keyshares.get_mut(&KS).unwrap().epoch = 1;
        dbs[1].keyshares.get_mut(&KS).unwrap().epoch = 1;
        let found = c.quiescence_findings(&views(&dbs), &[], &down, Micros::ZERO);
        let f = found.iter().find(|f| f.invariant == "I-10").expect("I-10");
        assert!(f.message.contains("1 operator(s) still hold epoch 0 < 1") && f.message.contains("operator:2"), "{}", f.message);
    }

    #[test]
    fn undelivered_gossip_is_i12_to_an_up_operator_and_l2_to_a_down_one() {
        let mut c = Checker::new(3, 2, None);
        let mut dbs = tables();
        let body = reference_node::msg::GossipBody::CancelTransfer { transfer: T };
        dbs[0].gossip_out.insert(4, reference_node::operator::store::GossipRow { body, participants: [OperatorId(1), OperatorId(2)].into(), receipts: [OperatorId(1)].into() });
        let found = c.quiescence_findings(&views(&dbs), &[], &BTreeSet::new(), Micros::ZERO);
        assert!(found.iter().any(|f| f.invariant == "I-12" && f.message.contains("operator:2")), "{found:?}");
        let found = c.quiescence_findings(&views(&dbs), &[], &[OperatorId(2)].into(), Micros::ZERO);
        assert!(found.iter().all(|f| f.invariant != "I-12"), "{found:?}");
        assert!(found.iter().any(|f| f.invariant == "L-2" && f.message.contains("still down")), "{found:?}");
        // Delivered everywhere but applied differently: a status divergence is I-12 too.
        dbs[0].gossip_out.clear();
        with_transfer(&mut dbs[0], TransferStatus::Completed, 1900);
        with_transfer(&mut dbs[1], TransferStatus::Completed, 1900);
        with_transfer(&mut dbs[2], TransferStatus::ReceiverKeyTweakApplied, 1900);
        let found = c.quiescence_findings(&views(&dbs), &[], &BTreeSet::new(), Micros::ZERO);
        assert!(found.iter().any(|f| f.invariant == "I-12" && f.message.contains("diverged")), "{found:?}");
        assert!(found.iter().any(|f| f.invariant == "L-2" && f.message.contains("not terminal")), "{found:?}");
        with_transfer(&mut dbs[2], TransferStatus::Completed, 1900);
        let found = c.quiescence_findings(&views(&dbs), &[], &BTreeSet::new(), Micros::ZERO);
        assert_eq!(found, vec![], "converged");
    }

    #[test]
    fn expired_transfer_not_returned_is_l3() {
        let mut c = Checker::new(3, 2, None).with_task_period(Micros::from_secs(60));
        let mut dbs = tables();
        with_transfer(&mut dbs[0], TransferStatus::SenderInitiatedCoordinator, 1900);
        dbs[0].transfers.get_mut(&T).unwrap().expiry = Micros::from_secs(100);
        let l3 = |c: &mut Checker, dbs: &[Db], now| c.quiescence_findings(&views(dbs), &[], &BTreeSet::new(), Micros::from_secs(now)).into_iter().filter(|f| f.invariant == "L-3").count();
        assert_eq!(l3(&mut c, &dbs, 150), 0, "within one task period of the expiry");
        assert_eq!(l3(&mut c, &dbs, 200), 1);
        dbs[0].transfers.get_mut(&T).unwrap().status = TransferStatus::SenderKeyTweaked;
        assert_eq!(l3(&mut c, &dbs, 200), 0, "no expiry applies after SENDER_KEY_TWEAKED");
    }

    #[test]
    fn wallet_missing_its_leaf_is_i9() {
        let mut c = Checker::new(3, 2, None);
        let dbs = tables();
        let empty = BTreeMap::new();
        let owner = WalletView { id: reference_node::types::WalletId(1), identity: key(1).serialize(), leaves: &empty, pending_work: 0 };
        let found = c.quiescence_findings(&views(&dbs), &[owner], &BTreeSet::new(), Micros::ZERO);
        assert!(found.iter().any(|f| f.invariant == "I-9" && f.message.contains("does not hold it")), "{found:?}");
        let stranger = WalletView { id: reference_node::types::WalletId(2), identity: key(2).serialize(), leaves: &empty, pending_work: 0 };
        let found = c.quiescence_findings(&views(&dbs), &[stranger], &BTreeSet::new(), Micros::ZERO);
        assert!(found.iter().all(|f| f.invariant != "I-9"), "{found:?}");
    }

    #[test]
    fn key_spend_verification_needs_a_real_signature() {
        use bitcoin::secp256k1::Keypair;
        let secp = reference_node::crypto::secp();
        let sk = reference_node::crypto::SecretKey::from_slice(&[7; 32]).unwrap();
        let pk = sk.public_key(secp);
        let prevout = TxOut { value: Amount::from_sat(10_000), script_pubkey: reference_node::tx::template::p2tr_script(&pk) };
        let mut t = tx(outpoint(1), 2000, 10_000);
        assert!(hygiene::verify_key_spend(&t, &prevout).unwrap_err().contains("unsigned"));
        let sig = reference_node::tx::sighash::sign_single_key(&t, 0, std::slice::from_ref(&prevout), &Keypair::from_secret_key(secp, &sk), &[0; 32]).unwrap();
        t.input[0].witness = reference_node::tx::sighash::key_spend_witness(&sig);
        assert_eq!(hygiene::verify_key_spend(&t, &prevout), Ok(()));
        t.output[0].value = Amount::from_sat(9_999);
        assert!(hygiene::verify_key_spend(&t, &prevout).unwrap_err().contains("does not verify"));
    }

    #[test]
    fn leaf_live_without_a_confirmed_deposit_is_i1_per_event() {
        let mut chain = Chain::new();
        let mut c = Checker::new(3, 2, None);
        let dbs = tables();
        assert_eq!(run(&mut c, &dbs, &[0, 1, 2]), vec![]);
        let found = c.check_backing(&chain);
        assert!(found.iter().any(|f| f.invariant == "I-1" && f.message.contains("does not exist on L1")), "{found:?}");
        // Backed by a confirmed output of exactly its value: quiet.
        let mut c = Checker::new(3, 2, None);
        let mut dbs = tables();
        let good = chain.fund(bitcoin::ScriptBuf::new(), Amount::from_sat(10_000));
        let short = chain.fund(bitcoin::ScriptBuf::new(), Amount::from_sat(9_000));
        for db in dbs.iter_mut() {
            db.leaves.get_mut(&LEAF).unwrap().deposit_outpoint = good;
        }
        assert_eq!(run(&mut c, &dbs, &[0, 1, 2]), vec![]);
        assert_eq!(c.check_backing(&chain), vec![]);
        let mut c = Checker::new(3, 2, None);
        for db in dbs.iter_mut() {
            db.leaves.get_mut(&LEAF).unwrap().deposit_outpoint = short;
        }
        assert_eq!(run(&mut c, &dbs, &[0, 1, 2]), vec![]);
        assert!(c.check_backing(&chain).iter().any(|f| f.message.contains("holds 9000 sat")));
    }

    /// L-8 counts deposits that gave up on an empty pool, not a split refused for one (a split
    /// takes n − 1 keys from the same pool; its skip reason says "split: …").
    #[test]
    fn only_a_deposit_that_gave_up_on_an_empty_pool_is_l8() {
        let mut c = Checker::new(3, 2, None);
        let mut found = Vec::new();
        let w = reference_node::types::WalletId(0);
        c.observe(&Observation::CommandSkipped { wallet: w, reason: "split: keyshare pool empty, retry later".into() }, Micros::from_secs(1), &mut found);
        assert!(c.pool_skips.is_empty(), "{:?}", c.pool_skips);
        c.observe(&Observation::CommandSkipped { wallet: w, reason: "deposit: keyshare pool empty, retry later".into() }, Micros::from_secs(2), &mut found);
        assert_eq!(c.pool_skips.len(), 1);
    }

    #[test]
    fn sometimes_and_latency_follow_observations() {
        let mut c = Checker::new(3, 2, None);
        let mut found = Vec::new();
        let w = reference_node::types::WalletId(0);
        c.observe(&Observation::Rejected { what: "wallet:0 claim 01020304".into(), reason: "timed out; will retry".into() }, Micros::from_secs(1), &mut found);
        c.observe(&Observation::CommandSkipped { wallet: w, reason: "send: no available leaf with timelock left".into() }, Micros::from_secs(2), &mut found);
        assert_eq!(c.coverage().count("claim-retried"), 1);
        assert_eq!(c.coverage().count("command-skipped"), 1);
        assert_eq!(c.coverage().count("gossip-retry"), 0);
        c.latencies.start(w, LatencyOp::Exit, Micros::from_secs(10));
        c.observe(&Observation::ExitConfirmed { wallet: w, leaf: LEAF, value_sats: 1 }, Micros::from_secs(70), &mut found);
        assert_eq!(c.latencies.samples(LatencyOp::Exit), &[60.0]);
        assert_eq!(found, vec![]);
        let r = c.report();
        assert_eq!(r.latency["exit"].samples, 1);
        assert_eq!(r.sometimes["claim-retried"], 1);
    }

    #[test]
    fn keyshare_fresh_from_dkg_is_checked_before_any_leaf_uses_it() {
        let mut c = Checker::new(3, 2, None);
        let mut dbs = tables();
        assert_eq!(run(&mut c, &dbs, &[0, 1, 2]), vec![]);
        let fresh = KeyshareId([9; 16]);
        for (i, share) in dealt(3, 2).into_iter().enumerate() {
            dbs[i].keyshares.insert(fresh, KeyshareRow { status: KeyshareStatus::Available, share, coordinator: OperatorId(0), epoch: 0 });
        }
        assert_eq!(run(&mut c, &dbs, &[0, 1, 2]), vec![], "a consistent DKG output");
        let other = KeyshareId([10; 16]);
        let mut bad = dealt(3, 2);
        bad[1].public_shares.insert(OperatorId(0), key(77));
        for (i, share) in bad.into_iter().enumerate() {
            dbs[i].keyshares.insert(other, KeyshareRow { status: KeyshareStatus::Available, share, coordinator: OperatorId(0), epoch: 0 });
        }
        let found = run(&mut c, &dbs, &[0, 1, 2]);
        assert!(found.iter().any(|f| f.invariant == "I-3" && f.message.contains("fresh from DKG") && f.message.contains("operator:1")), "{found:?}");
    }

    #[test]
    fn identifiable_abort_needs_named_culprits() {
        let mut c = Checker::new(3, 2, None);
        let mut found = Vec::new();
        c.observe(&Observation::Rejected { what: "operator:0 session".into(), reason: "timed out".into() }, Micros::ZERO, &mut found);
        assert_eq!(c.coverage().count("identifiable-abort"), 0);
        c.observe(&Observation::Rejected { what: "operator:0 send".into(), reason: "invalid signature share from [Operator(OperatorId(2))]".into() }, Micros::ZERO, &mut found);
        assert_eq!(c.coverage().count("identifiable-abort"), 1);
    }

    // --- Long-lived leaf (renew-node, issue 6): I-7 skips a split parent, never its child ---

    /// Every table's LEAF as a split child (its parent PARENT split and finalized), or, with
    /// `split_itself`, as a leaf whose own split is finalized.
    fn with_split(dbs: &mut [Db], split_itself: bool) {
        const PARENT: LeafId = LeafId([9; 16]);
        for db in dbs {
            let split_nodes = Some(db.leaves[&LEAF].nodes.clone());
            let row = reference_node::operator::store::SplitRow { owner_identity: key(1), coordinator: OperatorId(0), plan: Vec::new(), signed: true, split_nodes };
            db.splits.insert(if split_itself { LEAF } else { PARENT }, row);
            if split_itself {
                // A finalized split leaves its parent SPLITTED (operator/split.rs).
                db.leaves.get_mut(&LEAF).unwrap().status = reference_node::operator::store::LeafStatus::Splitted;
            }
        }
    }

    /// LEAF's node tx replaced by one at the same CSV on the same outpoint (different txid): a tie
    /// with the earlier signed node, which I-7 forbids on a live leaf.
    fn tie_node(dbs: &mut [Db]) {
        for db in dbs {
            let row = db.leaves.get_mut(&LEAF).unwrap();
            row.nodes.cpfp.lock_time = absolute::LockTime::from_consensus(1);
            row.refunds = refunds_on(&row.nodes, 1, 2000);
        }
    }

    #[test]
    fn i7_checks_a_split_child_and_skips_only_the_split_parent() {
        for split_itself in [false, true] {
            let mut c = Checker::new(3, 2, None);
            let mut dbs = tables();
            with_split(&mut dbs, split_itself);
            // (The parent's own row is left out: only I-7 is under test here.)
            assert!(run(&mut c, &dbs, &[0, 1, 2]).iter().all(|f| f.invariant != "I-7"));
            tie_node(&mut dbs);
            let i7: Vec<_> = run(&mut c, &dbs, &[0, 1, 2]).into_iter().filter(|f| f.invariant == "I-7").collect();
            assert_eq!(i7.is_empty(), split_itself, "split_itself {split_itself}: {i7:?}");
            if !split_itself {
                assert!(i7[0].message.contains("does not undercut"), "{}", i7[0].message);
            }
        }
    }
}
