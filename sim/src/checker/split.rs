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

#[cfg(test)]
mod chain_tests {
    use super::verify_exit_layers;
    use bitcoin::secp256k1::{Keypair, SecretKey};
    use bitcoin::{Amount, OutPoint, Sequence, Transaction, TxOut};
    use reference_node::msg::NodeSet;
    use reference_node::tx::aggregate::aggregate_txs;
    use reference_node::tx::sighash::{key_spend_witness, sign_single_key};
    use reference_node::tx::split::{split_txs, ChildSpec};
    use reference_node::tx::template::{node_txs, p2tr_script};

    fn keypair(byte: u8) -> Keypair {
        Keypair::from_secret_key(reference_node::crypto::secp(), &SecretKey::from_slice(&[byte; 32]).expect("scalar"))
    }

    fn sign(tx: &mut Transaction, input: usize, prevouts: &[TxOut], key: &Keypair) {
        let sig = sign_single_key(tx, input, prevouts, key, &[7; 32]).expect("sighash");
        tx.input[input].witness = key_spend_witness(&sig);
    }

    /// root (Y) → split node (Y1, Y2) → aggregate node (both split outputs) → refund, every input
    /// signed by a single key standing in for its aggregate key.
    fn chain() -> (Vec<NodeSet>, Transaction) {
        let (y, y1, y2, owner) = (keypair(1), keypair(2), keypair(3), keypair(4));
        let pk = |k: &Keypair| k.public_key();
        let deposit = TxOut { value: Amount::from_sat(100_000), script_pubkey: p2tr_script(&pk(&y)) };
        let mut root = node_txs(OutPoint::null(), &deposit, Sequence(0), Sequence(50));
        sign(&mut root.cpfp, 0, std::slice::from_ref(&deposit), &y);
        let specs = [(60_000, &y1), (40_000, &y2)].map(|(v, k)| ChildSpec { value: Amount::from_sat(v), verifying_key: pk(k), owner_signing_key: pk(&owner) });
        let mut s = split_txs(&root.cpfp, &specs).expect("split");
        sign(&mut s.split.cpfp, 0, &[root.cpfp.output[0].clone()], &y);
        let nodes: Vec<&Transaction> = s.children.iter().map(|c| &c.nodes.cpfp).collect();
        let mut a = aggregate_txs(&s.split.cpfp, &nodes, &pk(&y), &pk(&owner)).expect("aggregate");
        let prevouts = a.prevouts.clone();
        sign(&mut a.nodes.cpfp, 0, &prevouts, &y1);
        sign(&mut a.nodes.cpfp, 1, &prevouts, &y2);
        sign(&mut a.refunds.cpfp, 0, &[a.nodes.cpfp.output[0].clone()], &y);
        let layers = vec![
            NodeSet { cpfp: root.cpfp, direct: root.direct },
            NodeSet { cpfp: s.split.cpfp, direct: s.split.direct },
            NodeSet { cpfp: a.nodes.cpfp, direct: a.nodes.direct },
        ];
        (layers, a.refunds.cpfp)
    }

    #[test]
    fn a_chain_through_split_and_aggregate_nodes_verifies() {
        let (layers, refund) = chain();
        let refs: Vec<&NodeSet> = layers.iter().collect();
        assert_eq!(verify_exit_layers(&refs, &refund), Ok(()));
    }

    #[test]
    fn a_bad_signature_on_any_input_of_any_layer_is_found() {
        let (layers, refund) = chain();
        // The aggregate node's second input signed by the first child's key.
        let mut bad = layers.clone();
        let other = bad[2].cpfp.input[0].witness.clone();
        bad[2].cpfp.input[1].witness = other;
        let refs: Vec<&NodeSet> = bad.iter().collect();
        let err = verify_exit_layers(&refs, &refund).expect_err("bad input 1");
        assert!(err.contains("layer 2 input 1"), "{err}");
        // A split layer that is not what the next layer spends.
        let refs: Vec<&NodeSet> = [&layers[0], &layers[2]].into();
        assert!(verify_exit_layers(&refs, &refund).expect_err("gap").contains("not the layer above"));
    }
}
