//! Temporary stand-in (the real checker is being written): counts observations only.
use crate::actor::Actor;
use crate::engine::{Engine, StepRecord};
use crate::report::{LatencySummary, Violation};
use reference_node::chain::Chain;
use reference_node::observe::Observation;

#[derive(Default, Clone, Debug)]
pub struct Stats {
    pub deposits_confirmed: u64,
    pub transfers_sent: u64,
    pub transfers_claimed: u64,
    pub transfers_returned: u64,
    pub exits_confirmed: u64,
}

pub struct Checker {
    stats: Stats,
}

impl Checker {
    pub fn new(_operators: u16, _threshold: u16, _budget: Option<f64>) -> Checker {
        Checker { stats: Stats::default() }
    }
    pub fn after_event(&mut self, _engine: &Engine<Actor, Chain>, rec: &StepRecord) -> Vec<Violation> {
        for o in &rec.observations {
            match o {
                Observation::DepositConfirmed { .. } => self.stats.deposits_confirmed += 1,
                Observation::TransferSent { .. } => self.stats.transfers_sent += 1,
                Observation::TransferClaimed { .. } => self.stats.transfers_claimed += 1,
                Observation::TransferReturned { .. } => self.stats.transfers_returned += 1,
                Observation::ExitConfirmed { .. } => self.stats.exits_confirmed += 1,
                Observation::Rejected { what, reason } => eprintln!("{:>10.3} {what}: {reason}", rec.time.as_secs_f64()),
                Observation::CommandSkipped { wallet, reason } => eprintln!("{:>10.3} {wallet} skipped: {reason}", rec.time.as_secs_f64()),
                _ => {}
            }
        }
        Vec::new()
    }
    pub fn at_end(&mut self, _engine: &Engine<Actor, Chain>, _index: u64) -> Vec<Violation> {
        Vec::new()
    }
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }
    pub fn checks_run(&self) -> u64 {
        0
    }
    pub fn transfer_latency(&self) -> LatencySummary {
        LatencySummary::default()
    }
}
