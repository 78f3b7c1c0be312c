//! A bounded record of a run's events for the HTML timeline and the Perfetto trace.
//!
//! Memory stays bounded however long the run: before the first violation only the last
//! `capacity` events are kept (a ring), and after it only `AFTER_VIOLATION` more. A small run
//! therefore keeps every event; a large one keeps the events that led to its first violation.
use crate::engine::StepRecord;
use crate::report::Violation;
use reference_node::observe::Observation;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Events kept after the first violation (what happened right after it).
pub const AFTER_VIOLATION: usize = 32;
/// Default ring size: every event of the quickstart-sized runs fits.
pub const DEFAULT_CAPACITY: usize = 20_000;

/// One event, as the timeline shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub index: u64,
    pub time_s: f64,
    /// The lane: the node the event is about (`operator:0`, `wallet:1`, `chain`), or `engine`.
    pub node: String,
    /// The first word of the description: deliver, timer, crash, restart, block, command, ...
    pub kind: String,
    pub description: String,
    /// One line per observation the node reported.
    pub observations: Vec<String>,
    /// The invariants this event violated ("I-6: ..."), empty for most events.
    pub violations: Vec<String>,
}

/// The slice of a run's events a report shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub events: Vec<TimelineEvent>,
    /// Events of the run that were not kept (before the window).
    pub events_dropped: u64,
    /// Index of the first event that violated an invariant, if any.
    pub first_violation_index: Option<u64>,
}

/// Builds a [`Timeline`] step by step with bounded memory.
#[derive(Debug)]
pub struct TimelineRecorder {
    capacity: usize,
    ring: VecDeque<TimelineEvent>,
    dropped: u64,
    first_violation: Option<u64>,
    /// Events after the first violation (at most `AFTER_VIOLATION`), never evicting the ring.
    tail: Vec<TimelineEvent>,
}

impl TimelineRecorder {
    pub fn new(capacity: usize) -> Self {
        TimelineRecorder { capacity: capacity.max(1), ring: VecDeque::new(), dropped: 0, first_violation: None, tail: Vec::new() }
    }

    /// Records one step and the violations the checker found right after it.
    pub fn record(&mut self, rec: &StepRecord, violations: &[Violation]) {
        let after_violation = self.first_violation.is_some();
        if after_violation && self.tail.len() >= AFTER_VIOLATION {
            self.dropped += 1;
            return;
        }
        let violations: Vec<String> = violations.iter().map(|v| format!("{}: {}", v.invariant, v.message)).collect();
        if !violations.is_empty() && self.first_violation.is_none() {
            self.first_violation = Some(rec.index);
        }
        let kind = rec.description.split_whitespace().next().unwrap_or("event").to_owned();
        let node = match rec.node {
            Some(n) => n.to_string(),
            None if kind == "block" || kind == "submit" => "chain".to_owned(),
            None if kind == "partition" => "network".to_owned(),
            None => "engine".to_owned(),
        };
        let event = TimelineEvent {
            index: rec.index,
            time_s: rec.time.as_secs_f64(),
            node,
            kind,
            description: rec.description.clone(),
            observations: rec.observations.iter().map(observation_line).collect(),
            violations,
        };
        if after_violation {
            self.tail.push(event);
            return;
        }
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
            self.dropped += 1;
        }
        self.ring.push_back(event);
    }

    /// Marks a violation found outside any event (at the end of the run: liveness, budgets).
    pub fn note_end_violations(&mut self, violations: &[Violation]) {
        if self.first_violation.is_none() {
            if let Some(v) = violations.first() {
                self.first_violation = Some(v.event_index);
            }
        }
    }

    pub fn finish(self) -> Timeline {
        let mut events: Vec<TimelineEvent> = self.ring.into();
        events.extend(self.tail);
        Timeline { events, events_dropped: self.dropped, first_violation_index: self.first_violation }
    }
}

/// One readable line per observation, without the bulky parts (whole transactions, keys).
fn observation_line(o: &Observation) -> String {
    match o {
        Observation::NonceUsed { signer, .. } => format!("nonce used by {signer}"),
        Observation::RefundSigned { leaf, tx, .. } => {
            format!("refund signed for leaf {leaf} (sequence {})", tx.input.first().map_or(0, |i| i.sequence.0))
        }
        Observation::DepositBroadcast { wallet, leaf, .. } => format!("deposit broadcast by {wallet} (leaf {leaf})"),
        Observation::DepositConfirmed { wallet, leaf, value_sats } => format!("deposit confirmed: {wallet} leaf {leaf}, {value_sats} sats"),
        Observation::TransferSent { transfer, sender, leaf, value_sats, .. } => {
            format!("transfer {transfer} sent by {sender} (leaf {leaf}, {value_sats} sats)")
        }
        Observation::TransferReturned { transfer, sender } => format!("transfer {transfer} returned to {sender}"),
        Observation::TransferClaimed { transfer, receiver } => format!("transfer {transfer} claimed by {receiver}"),
        Observation::ExitConfirmed { wallet, leaf, value_sats } => format!("exit confirmed: {wallet} leaf {leaf}, {value_sats} sats"),
        Observation::CommandSkipped { wallet, reason } => format!("command skipped by {wallet}: {reason}"),
        Observation::Rejected { what, reason } => format!("rejected {what}: {reason}"),
        Observation::DepositReorged { node, leaf, leaf_status } => format!("{node}: deposit of leaf {leaf} reorged out (leaf was {leaf_status})"),
        Observation::ExitReorged { wallet, leaf } => format!("{wallet}: exit of leaf {leaf} reorged out"),
        Observation::Renewed { wallet, leaf, kind, layers } => format!("{wallet}: {kind} of leaf {leaf} (exit chain now {layers} node layers)"),
        Observation::CulpritNamed { by, culprit, reason } => format!("{by} named culprit {culprit}: {reason}"),
        Observation::GuardRefused { signer, rule, detail } => format!("{signer}'s signer guard refused ({rule:?}): {detail}"),
        Observation::ColludedSignature { operator, .. } => format!("{operator} co-signed with a key share it should have forgotten"),
        Observation::LeafSplit { wallet, parent, children } => format!("{wallet} split leaf {parent} into {} children", children.len()),
        Observation::LeafAggregated { wallet, parent, children } => format!("{wallet} aggregated {} children back into leaf {parent}", children.len()),
        Observation::SwapStarted { primary, version, value_sats } => format!("swap {primary} ({version:?}) started for {value_sats} sats"),
        Observation::SwapDecided { primary, counters, settled } => format!("swap {primary} {} with {} counter transfers", if *settled { "settled" } else { "returned" }, counters.len()),
        Observation::SwapAdaptorLearned { primary, wallet } => format!("{wallet} learned swap {primary}'s adaptor secret"),
        Observation::TheftAttempt { wallet, leaf, colluders, outcome } => {
            let colluders: Vec<String> = colluders.iter().map(|o| o.to_string()).collect();
            match outcome {
                Ok(_) => format!("{wallet} stole leaf {leaf} with {}", colluders.join(", ")),
                Err(e) => format!("{wallet}'s theft of leaf {leaf} blocked: {e}"),
            }
        }
        // Lightning (wallet/lightning.rs, operator/preimage.rs).
        Observation::LightningInvoiceIssued { wallet, payment_hash, amount_sats, .. } => format!("{wallet} got a hold invoice {} for {amount_sats} sats", hex::encode(&payment_hash[..4])),
        Observation::PreimageShareStored { operator, payment_hash } => format!("{operator} stored its preimage share for {}", hex::encode(&payment_hash[..4])),
        Observation::PreimageShareReleased { operator, to, payment_hash, .. } => format!("{operator} released its preimage share for {} to {to}", hex::encode(&payment_hash[..4])),
        Observation::PreimageRevealed { by, payment_hash, transfer, .. } => format!("{by} reconstructed the preimage of {} (transfer {transfer})", hex::encode(&payment_hash[..4])),
        Observation::LightningReceiveSettled { ssp, payment_hash, .. } => format!("{ssp} settled the payer's HTLC {}", hex::encode(&payment_hash[..4])),
        Observation::LightningReceiveFailed { ssp, payment_hash, reason } => format!("{ssp} failed the payer's HTLC {} back: {reason}", hex::encode(&payment_hash[..4])),
        // Watchtower and fees flow.
        Observation::WatchtowerBroadcast { operator, leaf, height, .. } => format!("{operator}'s watchtower broadcast the owner's direct refund of leaf {leaf} at height {height}"),
        Observation::StaleRaceStarted { wallet, leaf } => format!("{wallet} races its stale refund of leaf {leaf}"),
        Observation::OwnerDefends { wallet, leaf } => format!("{wallet} saw leaf {leaf}'s node tx on chain and exits to win the race"),
        Observation::CoopExitStarted { user, leaf, payout_sats, .. } => format!("coop exit of {user}'s leaf {leaf} signed ({payout_sats} sats owed on L1)"),
        Observation::CoopExitPaid { user, leaf, payout_sats, .. } => format!("coop exit payout of {payout_sats} sats confirmed for {user} (leaf {leaf})"),
        // Lightning send.
        Observation::LightningSendLocked { wallet, payment_hash, transfer, amount_sats, fee_sats } => format!("{wallet}'s Lightning send {} locked (transfer {transfer}, {amount_sats} + {fee_sats} sats)", hex::encode(&payment_hash[..4])),
        Observation::LightningSendPaid { ssp, payment_hash, .. } => format!("{ssp} paid the invoice {}", hex::encode(&payment_hash[..4])),
        Observation::LightningSendPaymentFailed { ssp, payment_hash, .. } => format!("{ssp}'s payment of {} failed", hex::encode(&payment_hash[..4])),
        Observation::PreimageProvided { by, payment_hash, transfer, .. } => format!("{by} accepted the preimage of {} (transfer {transfer})", hex::encode(&payment_hash[..4])),
        Observation::LightningSendDone { wallet, payment_hash, settled, .. } => format!("{wallet}'s Lightning send {} {}", hex::encode(&payment_hash[..4]), if *settled { "settled" } else { "returned" }),
        Observation::DeviceStaleRefused { wallet, leaf, dropped } => format!("{wallet}'s second device: stale send of leaf {leaf} refused; {}", if *dropped { "leaf dropped from the balance" } else { "re-synced" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_node::types::Micros;

    fn step(index: u64) -> StepRecord {
        StepRecord { index, time: Micros::from_secs(index), node: None, description: format!("block #{index}"), observations: vec![], digest: [0; 32] }
    }

    fn violation(index: u64) -> Violation {
        Violation { invariant: "I-6".into(), sim_time_s: index as f64, event_index: index, message: "m".into() }
    }

    #[test]
    fn keeps_the_last_events_before_the_first_violation_and_a_few_after() {
        let mut r = TimelineRecorder::new(10);
        for i in 0..100 {
            let v = if i == 50 { vec![violation(i)] } else { vec![] };
            r.record(&step(i), &v);
        }
        let t = r.finish();
        assert_eq!(t.first_violation_index, Some(50));
        assert_eq!(t.events.len(), 10 + AFTER_VIOLATION, "bounded: the ring plus the tail");
        assert_eq!(t.events[9].index, 50, "the violating event ends the ring");
        assert!(!t.events[9].violations.is_empty());
        assert_eq!(t.events[0].index, 41);
        assert_eq!(t.events.last().map(|e| e.index), Some(50 + AFTER_VIOLATION as u64));
        assert_eq!(t.events_dropped + t.events.len() as u64, 100);
        assert_eq!(t.events[0].kind, "block");
    }

    #[test]
    fn a_small_run_keeps_everything() {
        let mut r = TimelineRecorder::new(1000);
        for i in 0..20 {
            r.record(&step(i), &[]);
        }
        let t = r.finish();
        assert_eq!((t.events.len(), t.events_dropped, t.first_violation_index), (20, 0, None));
    }
}
