//! Split and aggregate (spark-protocol §2.6, §6.1): I-1 "a node's value equals the sum of its
//! children's values" and the key sum behind it (`Σ Y_c = Y_parent`, I-3), on every operator's
//! tables and on what a wallet reports when its split completes.
use super::{finding, Finding};
use reference_node::crypto::curve::point_sum;
use reference_node::operator::store::Db;
use reference_node::types::{LeafId, OperatorId};

/// I-1 and I-3 on one operator's finalized splits: the children's values sum to the parent's,
/// the split node's CPFP outputs carry exactly those values, and the children's aggregate keys
/// sum to the parent's (each ownership change moves only the split between user and SE keys).
pub fn check_splits(op: OperatorId, db: &Db) -> Vec<Finding> {
    let mut found = Vec::new();
    for (parent, split) in db.splits.iter().filter(|(_, s)| s.split_nodes.is_some()) {
        let Some(p) = db.leaves.get(parent) else {
            found.push(finding("I-1", format!("split {parent} {op}"), format!("{op} holds a split of leaf {parent} but not the leaf")));
            continue;
        };
        let children: Vec<_> = split.plan.iter().filter_map(|c| db.leaves.get(&c.leaf)).collect();
        if children.len() != split.plan.len() {
            found.push(finding("I-1", format!("split {parent} {op}"), format!("leaf {parent} on {op}: {} of {} split children exist", children.len(), split.plan.len())));
            continue;
        }
        let sum: u64 = children.iter().map(|c| c.value_sats).sum();
        if sum != p.value_sats {
            found.push(finding("I-1", format!("split {parent} {op}"), format!("leaf {parent} on {op}: children's values sum to {sum} sat, the node holds {} sat", p.value_sats)));
        }
        if let Some(nodes) = &split.split_nodes {
            let outs: u64 = nodes.cpfp.output.iter().map(|o| o.value.to_sat()).sum();
            if outs != p.value_sats {
                found.push(finding("I-1", format!("split {parent} node {op}"), format!("leaf {parent} on {op}: split node pays {outs} sat of the node's {} sat", p.value_sats)));
            }
        }
        if point_sum(children.iter().map(|c| &c.verifying_key)) != Some(p.verifying_key) {
            found.push(finding("I-3", format!("split {parent} keys {op}"), format!("leaf {parent} on {op}: the children's keys Y_c do not sum to the parent's Y")));
        }
    }
    found
}

/// I-12 at quiescence for splits: every up operator holds a finalized split, or none does
/// ("either every operator has the split or none", a coordinator lost mid-split included).
pub fn check_split_agreement(up: &[(OperatorId, &Db)]) -> Vec<Finding> {
    let mut parents: std::collections::BTreeSet<LeafId> = std::collections::BTreeSet::new();
    for (_, db) in up {
        parents.extend(db.splits.iter().filter(|(_, s)| s.split_nodes.is_some()).map(|(l, _)| *l));
    }
    let mut found = Vec::new();
    for parent in parents {
        let missing: Vec<String> = up
            .iter()
            .filter(|(_, db)| db.splits.get(&parent).is_none_or(|s| s.split_nodes.is_none()))
            .map(|(op, _)| op.to_string())
            .collect();
        if !missing.is_empty() {
            found.push(finding("I-12", format!("split {parent}"), format!("leaf {parent} is split on some operators but not on {} at quiescence", missing.join(", "))));
        }
    }
    found
}

/// I-1 on a wallet's completed split: the children it now holds are worth the parent exactly.
pub fn check_reported_split(parent: &LeafId, parent_value: Option<u64>, children: &[(LeafId, u64)]) -> Option<Finding> {
    let sum: u64 = children.iter().map(|(_, v)| *v).sum();
    let value = parent_value?;
    (sum != value).then(|| finding("I-1", format!("split {parent} reported"), format!("leaf {parent} ({value} sat) was split into children worth {sum} sat")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_split_must_sum() {
        let p = LeafId([1; 16]);
        assert!(check_reported_split(&p, Some(10), &[(LeafId([2; 16]), 4), (LeafId([3; 16]), 6)]).is_none());
        assert!(check_reported_split(&p, Some(10), &[(LeafId([2; 16]), 4), (LeafId([3; 16]), 5)]).is_some());
    }
}
