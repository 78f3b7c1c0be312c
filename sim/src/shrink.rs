//! Shrinking a failing run to a minimal scenario that still fails the same way.
//!
//! 1. **Record**: the run's realised workload (what the random draw produced for that seed)
//!    becomes an explicit `[[workload.deposit]]`/`[[workload.transfer]]`/`[[workload.exit]]`
//!    list, so the scenario reproduces the run without the draw (same trace hash: tested).
//! 2. **Delta-debug** (ddmin, Zeller & Hildebrandt 2002) over the scenario as a TOML tree: drop
//!    `[[fault]]` entries, then transfers, exits and deposits, then whole wallets (renumbering
//!    the rest), then halve fault windows (`duration_s`, `restart_after_s`). Every candidate is
//!    a full deterministic run with the same seed; it is kept when it still violates the same
//!    invariant. Candidates that do not validate are simply rejected.
//!
//! Working on the TOML tree rather than on the typed `Scenario` keeps this generic: an array of
//! tables added to the language later (a new fault kind, `[[byzantine]]`) is shrunk the same
//! way without touching this file, as long as the writer writes it.
use crate::report::RunReport;
use crate::runner::{self, RunOptions};
use crate::scenario::Scenario;
use crate::scenario_writer;
use toml::{Table, Value};

/// What a shrink is after: the same invariant, on the same seed.
#[derive(Clone, Debug)]
pub struct Target {
    pub seed: u64,
    /// E.g. "I-6": a candidate "still fails" when its run reports a violation of this.
    pub invariant: String,
}

/// How big a scenario's run is, for the before/after line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Size {
    pub events: u64,
    pub faults: usize,
    pub transfers: usize,
    pub deposits: usize,
    pub exits: usize,
    pub wallets: u16,
}

impl Size {
    fn of(s: &Scenario, report: &RunReport) -> Size {
        let w = s.workload.explicit.clone().unwrap_or_default();
        Size { events: report.events, faults: s.faults.len(), transfers: w.transfers.len(), deposits: w.deposits.len(), exits: w.exits.len(), wallets: s.topology.wallets }
    }
}

#[derive(Debug)]
pub struct Shrunk {
    /// The minimal scenario (explicit workload, `seed` set).
    pub scenario: Scenario,
    pub before: Size,
    pub after: Size,
    /// Candidate runs made (each a full run).
    pub runs: usize,
    /// The minimal scenario's run.
    pub report: RunReport,
}

#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    #[error("the run does not violate {invariant} (seed {seed}): nothing to shrink")]
    DoesNotFail { invariant: String, seed: u64 },
    #[error("the recorded scenario does not parse back: {0} (a key the scenario writer does not know?)")]
    Writer(String),
}

/// The scenario with its realised workload written out and its seed fixed. A swarm scenario
/// is recorded as the seed's expansion (the drawn faults and network settings written out,
/// `swarm` off), so the file replays that run without the draw and delta-debugging can drop
/// a drawn fault (with swarm still on, every candidate would draw them all again).
pub fn record(s: &Scenario, seed: u64) -> Scenario {
    let (mut out, _mix) = crate::swarm::expand(s, seed);
    out.workload.explicit = Some(runner::plan_workload(s, seed));
    out.seed = Some(seed);
    out
}

/// Records `s` for `target.seed` and delta-debugs it; at most `max_runs` candidate runs.
pub fn shrink(s: &Scenario, target: &Target, max_runs: usize) -> Result<Shrunk, ShrinkError> {
    let recorded = record(s, target.seed);
    let file = s.file.clone();
    let mut sh = Shrinker { file: file.clone(), target: target.clone(), runs: 0, max_runs };
    let first = sh.run(&recorded);
    if !sh.fails(&first) {
        return Err(ShrinkError::DoesNotFail { invariant: target.invariant.clone(), seed: target.seed });
    }
    let before = Size::of(&recorded, &first);
    let mut tree: Table = scenario_writer::to_toml(&recorded, "")
        .parse::<Table>()
        .map_err(|e| ShrinkError::Writer(e.to_string()))?;
    sh.parse(&tree).ok_or_else(|| ShrinkError::Writer(format!("{file}: written scenario is invalid")))?;

    for path in [&["fault"][..], &["workload", "transfer"], &["workload", "exit"], &["workload", "deposit"]] {
        tree = sh.ddmin_array(tree, path);
    }
    tree = sh.drop_wallets(tree);
    // Dropping wallets can make more entries droppable (fewer actors, fewer interactions).
    for path in [&["fault"][..], &["workload", "transfer"], &["workload", "deposit"]] {
        tree = sh.ddmin_array(tree, path);
    }
    tree = sh.shorten_windows(tree);

    let scenario = sh.parse(&tree).unwrap_or(recorded);
    let report = sh.run(&scenario);
    Ok(Shrunk { after: Size::of(&scenario, &report), scenario, before, runs: sh.runs, report })
}

struct Shrinker {
    file: String,
    target: Target,
    runs: usize,
    max_runs: usize,
}

impl Shrinker {
    fn run(&mut self, s: &Scenario) -> RunReport {
        self.runs += 1;
        runner::run(s, &self.file, self.target.seed, &RunOptions::default()).report
    }

    fn fails(&self, r: &RunReport) -> bool {
        r.violations.iter().any(|v| v.invariant == self.target.invariant)
    }

    fn parse(&self, tree: &Table) -> Option<Scenario> {
        Scenario::parse(&self.file, &toml::to_string(tree).ok()?).ok()
    }

    /// Whether the candidate is valid and still fails (false once the run budget is spent).
    fn still_fails(&mut self, tree: &Table) -> bool {
        if self.runs >= self.max_runs {
            return false;
        }
        match self.parse(tree) {
            Some(s) => {
                let r = self.run(&s);
                self.fails(&r)
            }
            None => false,
        }
    }

    /// ddmin over the array of tables at `path`: the smallest subset (1-minimal) that still fails.
    fn ddmin_array(&mut self, tree: Table, path: &[&str]) -> Table {
        let Some(items) = array_at(&tree, path).cloned() else { return tree };
        let with = |items: &[Value]| {
            let mut t = tree.clone();
            set_array(&mut t, path, items.to_vec());
            t
        };
        if items.is_empty() {
            return tree;
        }
        // Everything might go at once (e.g. faults that play no part in the failure).
        if self.still_fails(&with(&[])) {
            return with(&[]);
        }
        let mut current = items;
        let mut n = 2usize;
        while current.len() >= 2 {
            let chunk = current.len().div_ceil(n);
            let subsets: Vec<Vec<Value>> = current.chunks(chunk).map(<[Value]>::to_vec).collect();
            let mut reduced = false;
            for (i, subset) in subsets.iter().enumerate() {
                if self.still_fails(&with(subset)) {
                    current = subset.clone();
                    n = 2;
                    reduced = true;
                    break;
                }
                let complement: Vec<Value> = subsets.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, s)| s.clone()).collect();
                if subsets.len() > 2 && self.still_fails(&with(&complement)) {
                    current = complement;
                    n = (n - 1).max(2);
                    reduced = true;
                    break;
                }
            }
            if !reduced {
                if n >= current.len() {
                    break;
                }
                n = (n * 2).min(current.len());
            }
        }
        with(&current)
    }

    /// Tries to remove each wallet, highest first.
    fn drop_wallets(&mut self, mut tree: Table) -> Table {
        let count = tree.get("topology").and_then(|t| t.get("wallets")).and_then(Value::as_integer).unwrap_or(0);
        for w in (0..count).rev() {
            let mut candidate = tree.clone();
            remove_wallet(&mut candidate, w);
            if self.still_fails(&candidate) {
                tree = candidate;
            }
        }
        tree
    }

    /// Halves every fault window (`*duration_s`, `*_after_s`) while the failure persists.
    fn shorten_windows(&mut self, mut tree: Table) -> Table {
        let n = array_at(&tree, &["fault"]).map_or(0, Vec::len);
        for i in 0..n {
            let keys: Vec<String> = array_at(&tree, &["fault"])
                .and_then(|a| a.get(i))
                .and_then(Value::as_table)
                .map(|t| t.keys().filter(|k| k.ends_with("duration_s") || k.ends_with("_after_s")).cloned().collect())
                .unwrap_or_default();
            for key in keys {
                for _ in 0..8 {
                    let mut candidate = tree.clone();
                    let Some(v) = fault_value(&mut candidate, i, &key) else { break };
                    let Some(x) = v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) else { break };
                    if x < 0.002 {
                        break;
                    }
                    *v = Value::Float((x / 2.0 * 1e3).round() / 1e3);
                    if !self.still_fails(&candidate) {
                        break;
                    }
                    tree = candidate;
                }
            }
        }
        tree
    }
}

fn array_at<'a>(tree: &'a Table, path: &[&str]) -> Option<&'a Vec<Value>> {
    let (last, parents) = path.split_last()?;
    let mut t = tree;
    for p in parents {
        t = t.get(*p)?.as_table()?;
    }
    t.get(*last)?.as_array()
}

fn set_array(tree: &mut Table, path: &[&str], items: Vec<Value>) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut t = tree;
    for p in parents {
        let Some(next) = t.get_mut(*p).and_then(Value::as_table_mut) else { return };
        t = next;
    }
    t.insert((*last).to_owned(), Value::Array(items));
}

fn fault_value<'a>(tree: &'a mut Table, i: usize, key: &str) -> Option<&'a mut Value> {
    tree.get_mut("fault")?.as_array_mut()?.get_mut(i)?.as_table_mut()?.get_mut(key)
}

/// Removes wallet `w` everywhere in the tree: entries that name it in one of their own fields
/// go, names in lists go, higher wallets are renumbered down, `topology.wallets` shrinks.
fn remove_wallet(tree: &mut Table, w: i64) {
    let gone = format!("wallet:{w}");
    if let Some(n) = tree.get_mut("topology").and_then(Value::as_table_mut).and_then(|t| t.get_mut("wallets")) {
        if let Some(x) = n.as_integer() {
            *n = Value::Integer(x - 1);
        }
    }
    for (_, v) in tree.iter_mut() {
        scrub(v, &gone, w);
    }
}

fn names_wallet(t: &Table, gone: &str) -> bool {
    t.values().any(|v| v.as_str() == Some(gone))
}

fn scrub(v: &mut Value, gone: &str, w: i64) {
    match v {
        Value::String(s) => {
            if let Some(n) = s.strip_prefix("wallet:").and_then(|n| n.parse::<i64>().ok()) {
                if n > w {
                    *s = format!("wallet:{}", n - 1);
                }
            }
        }
        Value::Array(items) => {
            items.retain(|x| match x {
                Value::String(s) => s != gone,
                Value::Table(t) => !names_wallet(t, gone),
                _ => true,
            });
            for x in items.iter_mut() {
                scrub(x, gone, w);
            }
            items.retain(|x| !matches!(x, Value::Array(a) if a.is_empty()));
        }
        Value::Table(t) => t.iter_mut().for_each(|(_, x)| scrub(x, gone, w)),
        _ => {}
    }
}

/// The header comment of a shrunk scenario file.
pub fn header(original: &str, target: &Target, shrunk: &Shrunk, out_path: &str) -> String {
    let (b, a) = (shrunk.before, shrunk.after);
    format!(
        "regression: shrunk by `sparksim shrink` from {original} seed {seed}.\n\
         \n\
         Tests: the smallest run found that still violates {inv}. The workload is explicit\n\
         (recorded from the seed's random draw, then delta-debugged), so it replays without it.\n\
         Before: {be} events, {bf} faults, {bt} transfers, {bw} wallets; after: {ae} events, {af} faults, {at} transfers, {aw} wallets.\n\
         Should happen: what [expect] says (copied from the original scenario). If it expects a pass,\n\
         this file fails (exit 1) until the bug is fixed, then guards against its return.\n\
         Replay: sparksim run {out_path}",
        seed = target.seed,
        inv = target.invariant,
        be = b.events,
        bf = b.faults,
        bt = b.transfers,
        bw = b.wallets,
        ae = a.events,
        af = a.faults,
        at = a.transfers,
        aw = a.wallets,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Table {
        text.parse().expect("toml")
    }

    #[test]
    fn removing_a_wallet_renumbers_and_drops_what_names_it() {
        let mut t = tree(
            "[topology]\nwallets = 3\n[workload]\n[[workload.transfer]]\nfrom = \"wallet:0\"\nto = \"wallet:2\"\n\
             [[workload.transfer]]\nfrom = \"wallet:1\"\nto = \"wallet:0\"\n\
             [[fault]]\nkind = \"partition\"\ngroups = [[\"wallet:1\"], [\"operator:0\", \"wallet:2\"]]\n",
        );
        remove_wallet(&mut t, 1);
        assert_eq!(t["topology"]["wallets"].as_integer(), Some(2));
        let transfers = array_at(&t, &["workload", "transfer"]).expect("transfers");
        assert_eq!(transfers.len(), 1, "the transfer from wallet:1 is gone");
        assert_eq!(transfers[0]["to"].as_str(), Some("wallet:1"), "wallet:2 became wallet:1");
        let groups = t["fault"][0]["groups"].as_array().expect("groups");
        assert_eq!(groups.len(), 1, "the group that only held wallet:1 is gone");
        assert_eq!(groups[0].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_recorded_workload_replays_the_same_run() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/regressions/skip-timelock-decrement.toml");
        let s = Scenario::load(path).expect("loads");
        let recorded = record(&s, 3);
        assert!(recorded.workload.explicit.as_ref().is_some_and(|w| !w.transfers.is_empty()));
        let a = runner::run(&s, path, 3, &RunOptions::default()).report;
        let b = runner::run(&recorded, path, 3, &RunOptions::default()).report;
        assert_eq!(a.trace_hash, b.trace_hash, "explicit workload schedules exactly what the draw did");
        // And through the writer: the file a shrink writes replays the same run too.
        let text = scenario_writer::to_toml(&recorded, "");
        let reparsed = Scenario::parse(path, &text).expect("parses");
        assert_eq!(runner::run(&reparsed, path, 3, &RunOptions::default()).report.trace_hash, a.trace_hash);
    }

    #[test]
    fn a_recorded_swarm_run_has_swarm_off_and_the_drawn_faults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/faults/swarm.toml");
        let s = Scenario::load(path).expect("loads");
        assert!(s.swarm.is_some());
        // A seed whose draw adds faults and changes the network (not just the file's own).
        let seed = (0..64)
            .find(|seed| {
                let (x, _) = crate::swarm::expand(&s, *seed);
                x.faults.len() > s.faults.len() && x.network != s.network
            })
            .expect("some seed draws faults and network settings");
        let (expanded, mix) = crate::swarm::expand(&s, seed);
        assert!(mix.is_some_and(|m| !m.on().is_empty()));
        let recorded = record(&s, seed);
        assert_eq!(recorded.swarm, None, "the recorded file must not draw again");
        assert_eq!(recorded.faults, expanded.faults);
        assert_eq!(recorded.network, expanded.network);
        // Written and read back, it is still the expansion, and replays without swarm.
        // (An explicit workload leaves the random workload keys unused: they are not written.)
        let mut reparsed = Scenario::parse(path, &scenario_writer::to_toml(&recorded, "")).expect("parses");
        assert_eq!(reparsed.workload.explicit, recorded.workload.explicit);
        reparsed.workload = recorded.workload.clone();
        assert_eq!(reparsed, recorded);
        assert_eq!(crate::swarm::expand(&reparsed, seed).0, reparsed, "nothing left to draw");
        // The same run: the swarm run of the seed and the recorded file give one trace hash.
        let a = runner::run(&s, path, seed, &RunOptions::default()).report;
        let b = runner::run(&reparsed, path, seed, &RunOptions::default()).report;
        assert_eq!(a.trace_hash, b.trace_hash);
        assert!(a.swarm.is_some() && b.swarm.is_none());
    }
}
