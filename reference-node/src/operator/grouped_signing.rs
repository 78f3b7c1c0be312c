//! FROST signing over several keyshares in one flow (split and aggregate, spark-protocol §2.6):
//! the jobs travel grouped by keyshare, in order, and each group is signed with its own
//! keyshare. What split.rs and aggregate.rs share lives here: the coordinator's grouping of the
//! user's jobs, the participant's checks before any nonce signs (rebuilt txs byte-equal, every
//! job the expected one under its key), and rounds 1 and 2 run group by group.
use super::Operator;
use crate::crypto::signing::SigningJob;
use crate::crypto::PublicKey;
use crate::msg::{InternalReply, UserJob};
use crate::node::Ctx;
use crate::tx::{sighash, template};
use crate::types::KeyshareId;
use bitcoin::{Transaction, TxOut};
use std::collections::BTreeMap;

/// Jobs grouped by keyshare, in signing order.
pub(super) type JobGroups = Vec<(KeyshareId, Vec<SigningJob>)>;

/// One signing job as this operator's tables define it: input `input` of `tx`, spending
/// `prevouts`, under Y = user key + the keyshare's SE key.
pub(super) struct JobSpec<'a> {
    pub tx: &'a Transaction,
    pub input: usize,
    pub prevouts: &'a [TxOut],
    pub keyshare: KeyshareId,
    pub verifying_key: PublicKey,
    pub user_public_key: PublicKey,
}

/// Coordinator: the user's jobs must be the expected txs, in order; their sighashes become
/// signing jobs, grouped by keyshare.
pub(super) fn group_user_jobs(jobs: Vec<UserJob>, expected: &[JobSpec<'_>]) -> Result<JobGroups, String> {
    if jobs.len() != expected.len() {
        return Err(format!("expected {} signing jobs, found {}", expected.len(), jobs.len()));
    }
    let mut groups: JobGroups = Vec::new();
    for (i, (job, e)) in jobs.into_iter().zip(expected).enumerate() {
        template::compare_transactions(e.tx, &job.tx).map_err(|err| format!("job {i}: {err}"))?;
        let message = sighash::key_spend_sighash(&job.tx, e.input, e.prevouts).map_err(|err| err.to_string())?;
        let sj = SigningJob { message, verifying_key: e.verifying_key, user_public_key: e.user_public_key, operator_commitments: BTreeMap::new(), user_commitment: job.user_commitment };
        match groups.last_mut() {
            Some((k, v)) if *k == e.keyshare => v.push(sj),
            _ => groups.push((e.keyshare, vec![sj])),
        }
    }
    Ok(groups)
}

/// Participant, before round 2 signs: the coordinator's txs equal the ones rebuilt here (`mine`)
/// byte for byte, and the grouped jobs are exactly the expected ones under their keys.
pub(super) fn check_round2(what: &str, mine: &[Transaction], txs: &[Transaction], expected: &[JobSpec<'_>], groups: &JobGroups) -> Result<(), String> {
    if txs.len() != mine.len() {
        return Err(format!("expected {} {what} txs, found {}", mine.len(), txs.len()));
    }
    for (i, (x, f)) in mine.iter().zip(txs).enumerate() {
        template::compare_transactions(x, f).map_err(|err| format!("tx {i}: {err}"))?;
    }
    let mut i = 0;
    for (keyshare, jobs) in groups {
        for job in jobs {
            let Some(e) = expected.get(i) else { return Err(format!("more jobs than the {what} has")) };
            let message = sighash::key_spend_sighash(e.tx, e.input, e.prevouts).map_err(|err| err.to_string())?;
            if e.keyshare != *keyshare || job.message != message || job.verifying_key != e.verifying_key || job.user_public_key != e.user_public_key {
                return Err(format!("job {i} is not the {what}'s job {i} under its key"));
            }
            i += 1;
        }
    }
    if i != expected.len() {
        return Err(format!("{i} jobs for {} {what} jobs", expected.len()));
    }
    Ok(())
}

impl Operator {
    /// Participant, round 1: nonce commitments for each keyshare, every one of them `allowed`.
    pub(super) fn frost_round1_groups(&mut self, ctx: &mut Ctx<'_>, counts: Vec<(KeyshareId, u8)>, allowed: &[KeyshareId], what: &str) -> Result<InternalReply, String> {
        let mut out = Vec::with_capacity(counts.len());
        for (keyshare, count) in counts {
            if !allowed.contains(&keyshare) {
                return Err(format!("keyshare {keyshare} is not part of the {what}"));
            }
            match self.frost_round1(ctx, keyshare, count)? {
                InternalReply::Commitments { commitments, se_public_key } => out.push((commitments, se_public_key)),
                _ => return Err("round 1 produced no commitments".into()),
            }
        }
        Ok(InternalReply::CommitmentsBatch(out))
    }

    /// Participant, round 2 (after `check_round2` and the caller's durable "signed" mark): one
    /// batch of signature shares per group, each with its own keyshare.
    pub(super) fn frost_round2_groups(&mut self, ctx: &mut Ctx<'_>, groups: JobGroups) -> Result<InternalReply, String> {
        let mut out = Vec::with_capacity(groups.len());
        for (keyshare, jobs) in groups {
            match self.frost_round2(ctx, keyshare, jobs)? {
                InternalReply::Shares(v) => out.push(v),
                _ => return Err("round 2 produced no shares".into()),
            }
        }
        Ok(InternalReply::SharesBatch(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{secp, signing, Scalar, SecretKey};
    use crate::tx::template::p2tr_script;
    use bitcoin::hashes::Hash as _;
    use bitcoin::{absolute, transaction, Amount, OutPoint, TxIn, Txid};
    use rand_core::SeedableRng;

    fn key(b: u8) -> PublicKey {
        SecretKey::from_slice(&[b; 32]).expect("scalar").public_key(secp())
    }

    fn tx(value: u64) -> Transaction {
        let input = vec![TxIn { previous_output: OutPoint { txid: Txid::from_byte_array([1; 32]), vout: 0 }, ..Default::default() }];
        Transaction { version: transaction::Version(3), lock_time: absolute::LockTime::ZERO, input, output: vec![TxOut { value: Amount::from_sat(value), script_pubkey: p2tr_script(&key(9)) }] }
    }

    /// Three txs: two under keyshare A, one under keyshare B.
    fn fixture() -> (Vec<Transaction>, Vec<TxOut>, Vec<UserJob>) {
        let txs = vec![tx(900), tx(800), tx(700)];
        let prevouts = vec![TxOut { value: Amount::from_sat(1_000), script_pubkey: p2tr_script(&key(8)) }];
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let user = Scalar::random(&mut rng);
        let jobs = txs.iter().map(|t| UserJob { tx: t.clone(), user_commitment: signing::commit(&user, &mut rng).1 }).collect();
        (txs, prevouts, jobs)
    }

    fn specs<'a>(txs: &'a [Transaction], prevouts: &'a [TxOut]) -> Vec<JobSpec<'a>> {
        let ks = [KeyshareId([1; 16]), KeyshareId([1; 16]), KeyshareId([2; 16])];
        txs.iter().zip(ks).enumerate().map(|(i, (tx, keyshare))| JobSpec { tx, input: 0, prevouts, keyshare, verifying_key: key(i as u8 + 1), user_public_key: key(7) }).collect()
    }

    #[test]
    fn user_jobs_are_grouped_by_keyshare_and_pass_the_participants_check() {
        let (txs, prevouts, jobs) = fixture();
        let specs = specs(&txs, &prevouts);
        let groups = group_user_jobs(jobs, &specs).expect("grouped");
        assert_eq!(groups.iter().map(|(k, v)| (k.0[0], v.len())).collect::<Vec<_>>(), vec![(1, 2), (2, 1)]);
        assert_eq!(check_round2("split", &txs, &txs, &specs, &groups), Ok(()));
    }

    #[test]
    fn a_different_tx_or_job_is_refused() {
        let (txs, prevouts, mut jobs) = fixture();
        let specs = specs(&txs, &prevouts);
        let groups = group_user_jobs(jobs.clone(), &specs).expect("grouped");
        // Coordinator: the user's tx 1 is not the expected one.
        jobs[1].tx = tx(801);
        assert!(group_user_jobs(jobs, &specs).is_err_and(|e| e.starts_with("job 1")));
        // Participant: a tx that is not the one rebuilt here.
        let mut sent = txs.clone();
        sent[0] = tx(901);
        assert!(check_round2("split", &txs, &sent, &specs, &groups).is_err_and(|e| e.starts_with("tx 0")));
        // Participant: B's job moved under keyshare A.
        let mut moved = groups.clone();
        let job = moved.pop().expect("B").1.remove(0);
        moved[0].1.push(job);
        assert!(check_round2("split", &txs, &txs, &specs, &moved).is_err_and(|e| e.contains("is not the split's job 2")));
        // Participant: a job missing, or one too many.
        let short: JobGroups = groups[..1].to_vec();
        assert!(check_round2("aggregate", &txs, &txs, &specs, &short).is_err_and(|e| e == "2 jobs for 3 aggregate jobs"));
        let mut long = groups.clone();
        let extra = long[1].1[0].clone();
        long[1].1.push(extra);
        assert!(check_round2("split", &txs, &txs, &specs, &long).is_err_and(|e| e == "more jobs than the split has"));
    }
}
