//! sparksim: the deterministic simulator, the scenario language and (elsewhere) the checker
//! for Spark. See ARCHITECTURE.md.

pub mod clock;
pub mod engine;
pub mod l1faults;
pub mod net;
pub mod rng;
pub mod scenario;
pub mod trace;
pub mod actor;
pub mod checker;
pub mod report;
pub mod runner;
pub mod swarm;
pub mod timeline;
pub mod scenario_writer;
pub mod campaign;
pub mod html;
pub mod junit;
pub mod perfetto;
pub mod shrink;
