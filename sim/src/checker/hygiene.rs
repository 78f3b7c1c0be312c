//! Checks judged once the system is quiet (end of the liveness phase): I-9 exit completeness,
//! I-10 no old-key holders, I-12 gossip convergence; and I-14 deposit safety at broadcast time.
use super::{finding, Finding};
use bitcoin::secp256k1::{schnorr, Message, XOnlyPublicKey};
use bitcoin::{Transaction, TxOut};
use reference_node::operator::store::{Db, LeafStatus};
use reference_node::tx::sighash::key_spend_sighash;
use reference_node::tx::template::p2tr_script;
use reference_node::types::{KeyshareId, LeafId, OperatorId, WalletId};
use reference_node::wallet::{LeafState, WalletLeaf};
use std::collections::{BTreeMap, BTreeSet};

/// What the quiescence checks read of one wallet.
pub struct WalletView<'a> {
    pub id: WalletId,
    pub identity: [u8; 33],
    pub leaves: &'a BTreeMap<LeafId, WalletLeaf>,
    pub pending_work: usize,
}

/// A leaf live on Spark on a majority of the up operators (Available or TransferLocked), with
/// the row the most of them hold.
fn live_leaves<'a>(dbs: &[(OperatorId, &'a Db)]) -> BTreeMap<LeafId, &'a reference_node::operator::store::LeafRow> {
    let mut all: BTreeSet<LeafId> = BTreeSet::new();
    for (_, db) in dbs {
        all.extend(db.leaves.keys());
    }
    all.into_iter()
        .filter_map(|leaf| {
            let rows: Vec<_> = dbs.iter().filter_map(|(_, db)| db.leaves.get(&leaf)).collect();
            let live = rows.iter().filter(|r| matches!(r.status, LeafStatus::Available | LeafStatus::TransferLocked(_))).count();
            if live * 2 <= dbs.len() {
                return None;
            }
            let best = rows.iter().max_by_key(|r| rows.iter().filter(|o| *o == *r).count())?;
            Some((leaf, *best))
        })
        .collect()
}

/// Verifies the key-path signature of `tx` input 0 spending `prevout` (a P2TR output).
pub fn verify_key_spend(tx: &Transaction, prevout: &TxOut) -> Result<(), String> {
    let spk = prevout.script_pubkey.as_bytes();
    if spk.len() != 34 || spk[0] != 0x51 || spk[1] != 0x20 {
        return Err("prevout is not P2TR".into());
    }
    let key = XOnlyPublicKey::from_slice(&spk[2..]).map_err(|e| e.to_string())?;
    let witness = tx.input.first().map(|i| &i.witness).ok_or("no input")?;
    let sig_bytes = witness.nth(0).ok_or("no witness: unsigned")?;
    let sig = schnorr::Signature::from_slice(sig_bytes.get(..64).ok_or("short signature")?).map_err(|e| e.to_string())?;
    let sighash = key_spend_sighash(tx, 0, std::slice::from_ref(prevout)).map_err(|e| e.to_string())?;
    reference_node::crypto::secp()
        .verify_schnorr(&sig, &Message::from_digest(sighash), &key)
        .map_err(|_| "signature does not verify".to_string())
}

/// I-9: for every live leaf with no transfer in flight, the owner's wallet holds the same node
/// and CPFP refund tx as the operators, the refund pays the owner, and both signatures verify
/// (node against the deposit output P2TR(Y), refund against the node output).
pub fn check_exit_completeness(dbs: &[(OperatorId, &Db)], wallets: &[WalletView<'_>]) -> Vec<Finding> {
    let mut found = Vec::new();
    for (leaf, row) in live_leaves(dbs) {
        let owner = row.owner_identity.serialize();
        let subject = format!("leaf {leaf}");
        if row.status != LeafStatus::Available {
            continue;
        }
        let Some(w) = wallets.iter().find(|w| w.identity == owner) else { continue };
        let Some(wl) = w.leaves.get(&leaf) else {
            found.push(finding("I-9", subject, format!("leaf {leaf} is owned by {} on the operators but the wallet does not hold it", w.id)));
            continue;
        };
        if !matches!(wl.state, LeafState::Available) {
            found.push(finding("I-9", subject, format!("leaf {leaf}: {} holds it as {:?}, operators say Available", w.id, wl.state)));
            continue;
        }
        let chain_txids = |layers: &mut dyn Iterator<Item = &reference_node::msg::NodeSet>| layers.map(|l| l.cpfp.compute_txid()).collect::<Vec<_>>();
        let problem = if chain_txids(&mut wl.exit_layers()) != chain_txids(&mut row.exit_layers()) {
            Some("its exit chain (node layers) differs from the operators'".to_string())
        } else if wl.refunds.cpfp.compute_txid() != row.refunds.cpfp.compute_txid() {
            Some("its CPFP refund differs from the operators'".to_string())
        } else if wl.refunds.cpfp.output.first().map(|o| &o.script_pubkey) != Some(&p2tr_script(&row.owner_signing_key)) {
            Some("its CPFP refund does not pay the owner's leaf key".to_string())
        } else if wl.signing_secret.public_key(reference_node::crypto::secp()) != row.owner_signing_key {
            Some("the wallet does not hold the secret of the leaf key its refund pays".to_string())
        } else {
            verify_exit_chain(wl, row).err()
        };
        if let Some(p) = problem {
            found.push(finding("I-9", subject, format!("leaf {leaf} owned by {}: no valid exit chain: {p}", w.id)));
        }
    }
    found
}

/// I-9, the sender's side: a wallet that still holds a leaf as `Sending` once the operators (the
/// majority row, whatever its status: the new owner may have exited it since) name another owner
/// never learnt that its send went through, e.g. after a crash mid-send. It can neither spend nor
/// exit the leaf, and its balance is wrong.
pub fn check_stuck_senders(dbs: &[(OperatorId, &Db)], wallets: &[WalletView<'_>]) -> Vec<Finding> {
    let mut found = Vec::new();
    for w in wallets {
        for (leaf, l) in w.leaves.iter() {
            let LeafState::Sending(t) = l.state else { continue };
            let rows: Vec<_> = dbs.iter().filter_map(|(_, db)| db.leaves.get(leaf)).collect();
            let Some(best) = rows.iter().max_by_key(|r| rows.iter().filter(|o| *o == *r).count()) else { continue };
            if best.owner_identity.serialize() != w.identity {
                found.push(finding("I-9", format!("leaf {leaf}"), format!("leaf {leaf} belongs to another owner but {} still holds it as Sending({t})", w.id)));
            }
        }
    }
    found
}

/// Every signature along the wallet's exit chain: the root layer against the deposit output,
/// each further layer (every input: a split child's node spends its split output, an aggregate
/// node one output per child) against the layer above it, the CPFP refund against the leaf
/// node's output (checker/split.rs).
fn verify_exit_chain(wl: &WalletLeaf, row: &reference_node::operator::store::LeafRow) -> Result<(), String> {
    if wl.nodes.cpfp.output.first().map(|o| &o.script_pubkey) != Some(&p2tr_script(&row.verifying_key)) {
        return Err("the leaf node tx does not pay the leaf's key Y".into());
    }
    let layers: Vec<&reference_node::msg::NodeSet> = wl.exit_layers().collect();
    super::split::verify_exit_layers(&layers, &wl.refunds.cpfp)
}

/// I-10 at quiescence: every up operator holds the live leaf's keyshare at the same (latest)
/// epoch; operators still at an older epoch hold a share the former owner could combine with.
pub fn check_old_shares(dbs: &[(OperatorId, &Db)], threshold: u16) -> Vec<Finding> {
    let mut found = Vec::new();
    let keyshares: BTreeSet<KeyshareId> = live_leaves(dbs).values().map(|r| r.keyshare).collect();
    for ks in keyshares {
        let epochs: Vec<(OperatorId, u32)> = dbs.iter().filter_map(|(op, db)| db.keyshares.get(&ks).map(|k| (*op, k.epoch))).collect();
        let Some(latest) = epochs.iter().map(|(_, e)| *e).max() else { continue };
        let mut per_epoch: BTreeMap<u32, Vec<OperatorId>> = BTreeMap::new();
        for (op, e) in epochs.iter().filter(|(_, e)| *e < latest) {
            per_epoch.entry(*e).or_default().push(*op);
        }
        for (e, ops) in per_epoch {
            let who: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
            let danger = if ops.len() >= usize::from(threshold) { ": with the former owner they reach the threshold and can sign" } else { "" };
            found.push(finding(
                "I-10",
                format!("keyshare {ks} epoch {e}"),
                format!("keyshare {ks}: {} operator(s) still hold epoch {e} < {latest} at quiescence ({}){danger}", ops.len(), who.join(", ")),
            ));
        }
    }
    found
}

/// I-12 at quiescence: no gossip row still undelivered to an up operator, and every transfer has
/// one status on all up operators that know it (delivered ≠ applied must not hide a
/// divergence). Rows waiting only for operators that are still down are not I-12 (the fault never
/// healed) but pending work: L-2. One finding per origin operator and kind.
///
/// `refusals` holds the last reason a receiver gave for not applying a row, by (origin, seq).
pub fn check_gossip_converged(dbs: &[(OperatorId, &Db)], down: &BTreeSet<OperatorId>, refusals: &BTreeMap<(OperatorId, u64), String>) -> Vec<Finding> {
    let mut found = Vec::new();
    for (op, db) in dbs {
        // (invariant) → (row count, first seq and kind, the operators missing)
        let mut stuck: BTreeMap<&'static str, (usize, u64, &'static str, BTreeSet<OperatorId>)> = BTreeMap::new();
        for (seq, row) in &db.gossip_out {
            let missing: BTreeSet<OperatorId> = row.participants.difference(&row.receipts).copied().collect();
            let inv = if missing.iter().all(|m| down.contains(m)) { "L-2" } else { "I-12" };
            let e = stuck.entry(inv).or_insert((0, *seq, row.body.kind(), BTreeSet::new()));
            e.0 += 1;
            e.3.extend(missing);
        }
        for (inv, (rows, first, kind, missing)) in stuck {
            let who: Vec<String> = missing.iter().map(|o| o.to_string()).collect();
            let why = if inv == "L-2" { " (all of them still down)".to_string() } else { String::new() };
            let refusal = refusals.get(&(*op, first)).map(|r| format!("; last refusal: {r}")).unwrap_or_default();
            found.push(finding(
                inv,
                format!("gossip {op}"),
                format!(
                    "{op} has {rows} gossip row(s) never delivered to {}{why} at the end of the liveness phase (first #{first} {kind}{refusal})",
                    who.join(", ")
                ),
            ));
        }
    }
    let mut statuses: BTreeMap<_, Vec<(OperatorId, _)>> = BTreeMap::new();
    for (op, db) in dbs {
        for (t, row) in &db.transfers {
            statuses.entry(*t).or_default().push((*op, row.status));
        }
    }
    for (t, s) in statuses {
        if s.iter().any(|(_, x)| *x != s[0].1) {
            let all: Vec<String> = s.iter().map(|(o, x)| format!("{o}={x:?}")).collect();
            found.push(finding("I-12", format!("transfer {t} diverged"), format!("transfer {t} diverged at quiescence: {}", all.join(", "))));
        }
    }
    found
}

/// I-14 at broadcast: the wallet says it holds the signed exit, and a fully signed refund paying
/// it was observed for that leaf before the deposit went out.
pub fn check_deposit_broadcast(wallet: WalletId, leaf: &LeafId, holds_signed_exit: bool, signed_refunds_seen: usize) -> Option<Finding> {
    if holds_signed_exit && signed_refunds_seen > 0 {
        return None;
    }
    Some(finding(
        "I-14",
        format!("deposit {leaf}"),
        format!("{wallet} broadcast the deposit of leaf {leaf} before holding a signed exit (holds_signed_exit={holds_signed_exit}, signed refunds seen: {signed_refunds_seen})"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposit_broadcast_without_signed_refund_is_i14() {
        let l = LeafId([1; 16]);
        assert!(check_deposit_broadcast(WalletId(0), &l, true, 3).is_none());
        assert_eq!(check_deposit_broadcast(WalletId(0), &l, true, 0).unwrap().invariant, "I-14");
        assert_eq!(check_deposit_broadcast(WalletId(0), &l, false, 3).unwrap().invariant, "I-14");
    }
}
