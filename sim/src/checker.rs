//! The invariant checker (spark-protocol §6): I-1, I-2, I-3, I-6, I-11 after every event, L-1 and
//! the latency budget at the end of a run.
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
use reference_node::operator::store::{Db, LeafRow, LeafStatus, TransferRow, TransferStatus};
use reference_node::tx::template::maybe_apply_fee;
use reference_node::tx::timelock::{blocks, TIME_LOCK_INTERVAL};
use reference_node::types::{KeyshareId, LeafId, Micros, OperatorId, TransferId};
use std::collections::{BTreeMap, BTreeSet};

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

    /// Claim time − send time of every transfer seen both sent and claimed, in seconds.
    pub fn latency_samples(&self) -> Vec<f64> {
        self.sent_at
            .iter()
            .filter_map(|(t, sent)| {
                self.claimed_at.get(t).map(|c| c.saturating_sub(*sent).as_secs_f64())
            })
            .collect()
    }

    pub fn transfer_latency(&self) -> LatencySummary {
        summarize(self.latency_samples(), self.budget_p99_s)
    }

    /// Called after every engine event.
    pub fn after_event(&mut self, engine: &Engine<Actor, Chain>, rec: &StepRecord) -> Vec<Violation> {
        let mut found = Vec::new();
        for obs in &rec.observations {
            self.observe(obs, rec.time, &mut found);
        }
        let ops: Vec<_> = engine.nodes().filter_map(|(_, a)| a.as_operator()).collect();
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
        }
        found.extend(self.audit_chain(engine.chain()));
        self.stamp(found, rec.index, rec.time)
    }

    /// L-1, end-of-run conservation and the latency budget.
    pub fn at_end(&mut self, engine: &Engine<Actor, Chain>, now_index: u64) -> Vec<Violation> {
        let ops: Vec<_> = engine.nodes().filter_map(|(_, a)| a.as_operator()).collect();
        let dbs: Vec<(OperatorId, &Db)> = ops.iter().map(|o| (o.id(), o.db())).collect();
        let mut found = self.check_dbs(&dbs, &[]);
        found.extend(self.end_findings(&dbs));
        self.stamp(found, now_index, engine.now())
    }

    /// The end-of-run checks over plain tables (no engine), for tests and `at_end`.
    pub fn end_findings(&mut self, dbs: &[(OperatorId, &Db)]) -> Vec<Finding> {
        self.checks += 3;
        let mut found = check_claimed(&self.sent_at, &self.claimed_at, dbs);
        found.extend(check_conservation(&self.deposits, &self.settled));
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
        found
            .into_iter()
            .filter(|f| self.reported.insert((f.invariant.to_string(), f.subject.clone())))
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
                self.checks += 1;
                found.extend(self.nonces.record(signer, commitment, message));
            }
            Observation::RefundSigned { leaf, owner, tx } => {
                if let Some(e) = RefundEntry::of(tx, owner) {
                    if self.history.entry(*leaf).or_default().insert(e) {
                        self.dirty.insert(*leaf);
                    }
                }
            }
            Observation::TransferSent { transfer, .. } => {
                self.sent_at.entry(*transfer).or_insert(time);
            }
            Observation::TransferClaimed { transfer, .. } => {
                self.claimed_at.entry(*transfer).or_insert(time);
            }
            Observation::TransferReturned { transfer, .. } => {
                self.returned.insert(*transfer);
            }
            Observation::DepositConfirmed { leaf, value_sats, .. } => {
                self.deposits.entry(*leaf).or_insert(*value_sats);
            }
            Observation::ExitConfirmed { leaf, value_sats, .. } => {
                self.exits.entry(*leaf).or_insert(*value_sats);
            }
            // L1 reorgs: a confirmation the wallet reported is undone (and reported again if
            // the tx comes back), so conservation counts only what is on the chain.
            Observation::DepositReorged { node: reference_node::types::NodeId::Wallet(_), leaf, .. } => {
                self.deposits.remove(leaf);
            }
            Observation::ExitReorged { leaf, .. } => {
                self.exits.remove(leaf);
            }
            _ => {}
        }
    }

    /// I-1 chain audit, only when a block changed the confirmed set (the sum walks every UTXO).
    fn audit_chain(&mut self, chain: &Chain) -> Vec<Finding> {
        if self.last_height == Some(chain.height()) {
            return Vec::new();
        }
        self.last_height = Some(chain.height());
        self.checks += 1;
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
            for leaf in self.refresh_operator(*op, db) {
                found.extend(self.check_op_leaf(*op, db, &leaf));
                leaves.insert(leaf);
            }
        }
        for leaf in leaves {
            found.extend(self.check_leaf(dbs, &leaf));
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
        self.checks += 2;
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
        let digest = digest_of(&ks.share);
        let key = (op, row.keyshare, ks.epoch);
        let cached = self.key_cache.get(&key).filter(|(d, _)| *d == digest).map(|(_, r)| r.clone());
        let result = match cached {
            Some(r) => r,
            None => {
                self.checks += 1;
                let r = check_key_consistency(op, &ks.share);
                self.key_cache.insert(key, (digest, r.clone()));
                r
            }
        };
        if let Some(m) = result {
            found.push(finding(
                "I-3",
                format!("keyshare {} epoch {} {op}", row.keyshare, ks.epoch),
                format!("keyshare {} (leaf {leaf}) epoch {} on {op}: {m}", row.keyshare, ks.epoch),
            ));
        }
        let public = (ks.share.public_key.serialize(), digest_of(&ks.share.public_shares));
        let views = self.key_public.entry((row.keyshare, ks.epoch)).or_default();
        views.insert(op, public);
        if let Some(m) = check_public_agreement(views) {
            found.push(finding(
                "I-3",
                format!("keyshare {} epoch {} agreement", row.keyshare, ks.epoch),
                format!("keyshare {} (leaf {leaf}) epoch {}: {m}", row.keyshare, ks.epoch),
            ));
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
        self.checks += 2;
        found.extend(self.check_owner(dbs, leaf, &rows, &inflight));
        self.record_history(dbs, leaf, &rows);
        found.extend(self.check_ordering(dbs, leaf, &rows, &inflight));
        found.extend(self.track_settled(leaf, &rows));
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
        check_refund_order(history, &current)
            .into_iter()
            .map(|(old_owner, m)| {
                finding("I-6", format!("leaf {leaf} old owner {}", short_key(&old_owner)), format!("leaf {leaf}: {m}"))
            })
            .collect()
    }

    /// Keeps the set of leaves whose deposit a majority has seen confirmed; a deposit outpoint
    /// must back at most one such leaf (each deposit counted once, I-1).
    fn track_settled(&mut self, leaf: &LeafId, rows: &[(OperatorId, &LeafRow)]) -> Option<Finding> {
        let confirmed = rows.iter().filter(|(_, r)| r.status != LeafStatus::Creating).count();
        if !is_majority(confirmed, self.operators) {
            self.settled.remove(leaf);
            return None;
        }
        let (_, row) = rows.iter().find(|(_, r)| r.status != LeafStatus::Creating)?;
        self.settled.insert(*leaf, (row.value_sats, row.deposit_outpoint));
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
    let Some(owner) = current.first().map(|c| c.owner) else { return Vec::new() };
    let mut span: BTreeMap<OutPoint, (u16, u16)> = BTreeMap::new();
    for c in current {
        let e = span.entry(c.outpoint).or_insert((c.csv, c.csv));
        *e = (e.0.min(c.csv), e.1.max(c.csv));
    }
    let mut out: BTreeMap<[u8; 33], String> = BTreeMap::new();
    for h in history.iter().filter(|h| h.owner != owner) {
        let Some((lo, hi)) = span.get(&h.outpoint) else { continue };
        let ok = u32::from(h.csv) >= u32::from(*lo) + u32::from(TIME_LOCK_INTERVAL) && h.csv > *hi;
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
                u32::from(*lo) + u32::from(TIME_LOCK_INTERVAL),
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
            assert_eq!(run(&mut c, &dbs, &[0, 1]), vec![]);
            // A majority tweaked: the receiver's intermediate refunds are current.
            with_transfer(&mut dbs[1], TransferStatus::SenderKeyTweaked, csv);
            let found = run(&mut c, &dbs, &[1]);
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
}
