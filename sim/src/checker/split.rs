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


/// I-9 along a whole exit chain, split and aggregate layers included: every input of every
/// layer's CPFP tx verifies against the outputs of the layer above it (the root against the
/// deposit output, which its CPFP output 0 re-pays: same script, same value), and the refund
/// against the leaf node's output. An aggregate node has one input per child split output.
pub fn verify_exit_layers(layers: &[&reference_node::msg::NodeSet], refund: &bitcoin::Transaction) -> Result<(), String> {
    use bitcoin::{Transaction, TxOut};
    let first = layers.first().ok_or("no node layer")?;
    let deposit_out = first.cpfp.output.first().cloned().ok_or("root node tx has no output")?;
    let mut above: Option<&Transaction> = None;
    let prevouts_of = |tx: &Transaction, above: Option<&Transaction>| -> Result<Vec<TxOut>, String> {
        match above {
            None => Ok(vec![deposit_out.clone(); tx.input.len()]),
            Some(p) => tx
                .input
                .iter()
                .map(|i| {
                    if i.previous_output.txid != p.compute_txid() {
                        return Err(format!("input spends {}, not the layer above", i.previous_output));
                    }
                    p.output.get(i.previous_output.vout as usize).cloned().ok_or_else(|| format!("the layer above has no output {}", i.previous_output.vout))
                })
                .collect(),
        }
    };
    for (n, layer) in layers.iter().enumerate() {
        let prevouts = prevouts_of(&layer.cpfp, above)?;
        for j in 0..layer.cpfp.input.len() {
            verify_input(&layer.cpfp, j, &prevouts).map_err(|e| format!("node tx of layer {n} input {j}: {e}"))?;
        }
        above = Some(&layer.cpfp);
    }
    let prevouts = prevouts_of(refund, above)?;
    verify_input(refund, 0, &prevouts).map_err(|e| format!("CPFP refund: {e}"))
}

/// The key-path signature of `tx` input `index` against its P2TR prevout (all `prevouts`
/// committed to, as BIP341 requires).
fn verify_input(tx: &bitcoin::Transaction, index: usize, prevouts: &[bitcoin::TxOut]) -> Result<(), String> {
    use bitcoin::secp256k1::{schnorr, Message, XOnlyPublicKey};
    let spk = prevouts.get(index).ok_or("missing prevout")?.script_pubkey.as_bytes();
    if spk.len() != 34 || spk[0] != 0x51 || spk[1] != 0x20 {
        return Err("prevout is not P2TR".into());
    }
    let key = XOnlyPublicKey::from_slice(&spk[2..]).map_err(|e| e.to_string())?;
    let sig_bytes = tx.input.get(index).and_then(|i| i.witness.nth(0)).ok_or("no witness: unsigned")?;
    let sig = schnorr::Signature::from_slice(sig_bytes.get(..64).ok_or("short signature")?).map_err(|e| e.to_string())?;
    let sighash = reference_node::tx::sighash::key_spend_sighash(tx, index, prevouts).map_err(|e| e.to_string())?;
    reference_node::crypto::secp().verify_schnorr(&sig, &Message::from_digest(sighash), &key).map_err(|_| "signature does not verify".to_string())
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
