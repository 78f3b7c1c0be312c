//! Lightning checks (spark-protocol §6.3 I-13, §6.4 L-6), from the observations of the receive
//! flow (wallet/lightning.rs, operator/preimage.rs, wallet/ssp_lightning.rs).
//!
//! I-13 preimage secrecy, per event: an operator releases its share only with its own record of
//! the swap's transfer; the coordinator's reconstruction used at least t shares (its own plus the
//! released ones: fewer means r leaked some other way); the SSP learns r only after the operators
//! revealed it; every revealed r hashes to H.
//! L-6 Lightning atomicity, at quiescence: the user receives the swap's leaves iff the preimage
//! was revealed to the SSP (and the SSP never fails back an HTLC whose leaves went to the user).
use super::{finding, Finding};
use reference_node::crypto::identity::sha256;
use reference_node::observe::Observation;
use reference_node::types::{Micros, OperatorId, TransferId};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub struct LightningCheck {
    /// Shares released per payment hash, by operator.
    released: BTreeMap<[u8; 32], BTreeSet<OperatorId>>,
    /// The coordinator reconstructed r and committed this transfer.
    revealed: BTreeMap<[u8; 32], TransferId>,
    /// The SSP learned r and settled the payer's HTLC.
    settled: BTreeMap<[u8; 32], TransferId>,
    /// The SSP failed the payer's HTLC back.
    failed: BTreeSet<[u8; 32]>,
}

fn short(h: &[u8; 32]) -> String {
    hex::encode(&h[..4])
}

impl LightningCheck {
    /// I-13 on one observation.
    pub fn observe(&mut self, obs: &Observation, threshold: u16) -> Vec<Finding> {
        let mut found = Vec::new();
        match obs {
            Observation::PreimageShareReleased { operator, payment_hash, transfer, recorded, .. } => {
                if !recorded {
                    found.push(finding("I-13", format!("preimage {}", short(payment_hash)), format!("{operator} released its preimage share before its own record of transfer {transfer} existed")));
                }
                self.released.entry(*payment_hash).or_default().insert(*operator);
            }
            Observation::PreimageRevealed { by, payment_hash, preimage, transfer } => {
                if sha256(&[preimage]) != *payment_hash {
                    found.push(finding("I-13", format!("preimage {}", short(payment_hash)), format!("{by} revealed a preimage whose SHA256 is not the payment hash")));
                }
                let known = self.released.get(payment_hash).map_or(0, |s| s.iter().filter(|o| *o != by).count()) + 1;
                if known < usize::from(threshold) {
                    found.push(finding("I-13", format!("preimage {}", short(payment_hash)), format!("{by} computed r from {known} shares, below the threshold {threshold}")));
                }
                self.revealed.insert(*payment_hash, *transfer);
            }
            Observation::LightningReceiveSettled { ssp, payment_hash, preimage, transfer } => {
                if sha256(&[preimage]) != *payment_hash {
                    found.push(finding("I-13", format!("preimage {}", short(payment_hash)), format!("{ssp} settled with a preimage whose SHA256 is not the payment hash")));
                }
                if self.revealed.get(payment_hash) != Some(transfer) {
                    found.push(finding("I-13", format!("preimage {}", short(payment_hash)), format!("{ssp} learned r before the operators revealed it for transfer {transfer}")));
                }
                self.settled.insert(*payment_hash, *transfer);
            }
            Observation::LightningReceiveFailed { payment_hash, .. } => {
                self.failed.insert(*payment_hash);
            }
            _ => {}
        }
        found
    }

    /// L-6 for Lightning receive at quiescence: `claimed` = transfers a receiver claimed.
    pub fn at_end(&self, claimed: &BTreeMap<TransferId, Micros>) -> Vec<Finding> {
        let mut found = Vec::new();
        for (hash, transfer) in &self.revealed {
            let subject = format!("lightning receive {}", short(hash));
            let to_ssp = self.settled.get(hash) == Some(transfer);
            let to_user = claimed.contains_key(transfer);
            if to_user != to_ssp {
                let m = if to_user { "the user received the leaves but the preimage never reached the SSP" } else { "the SSP holds the preimage but the user never received the leaves" };
                found.push(finding("L-6", subject.clone(), format!("transfer {transfer}: {m}")));
            }
            if self.failed.contains(hash) && to_user {
                found.push(finding("L-6", subject, format!("the SSP failed the payer's HTLC back although transfer {transfer} paid the user")));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(r: &[u8; 32]) -> [u8; 32] {
        sha256(&[r])
    }

    #[test]
    fn a_preimage_from_fewer_than_t_shares_or_learned_early_is_flagged() {
        let (r, t) = ([1u8; 32], TransferId([9; 16]));
        let h = hash_of(&r);
        let mut c = LightningCheck::default();
        let rel = |op: u16, recorded| Observation::PreimageShareReleased { operator: OperatorId(op), to: OperatorId(0), payment_hash: h, transfer: t, recorded };
        assert!(c.observe(&rel(1, true), 3).is_empty());
        // Own share + one released share = 2 < 3.
        let f = c.observe(&Observation::PreimageRevealed { by: OperatorId(0), payment_hash: h, preimage: r, transfer: t }, 3);
        assert!(f.iter().any(|f| f.message.contains("below the threshold")), "{:?}", f.iter().map(|f| &f.message).collect::<Vec<_>>());
        assert!(!c.observe(&rel(2, false), 3).is_empty(), "release without a record");
        // The SSP learning r for a hash nobody revealed.
        let (r2, t2) = ([2u8; 32], TransferId([8; 16]));
        let f = c.observe(&Observation::LightningReceiveSettled { ssp: reference_node::types::WalletId(4), payment_hash: hash_of(&r2), preimage: r2, transfer: t2 }, 3);
        assert!(f.iter().any(|f| f.message.contains("before the operators revealed")));
        let f = c.observe(&Observation::PreimageRevealed { by: OperatorId(0), payment_hash: hash_of(&r2), preimage: [3; 32], transfer: t2 }, 1);
        assert!(f.iter().any(|f| f.message.contains("SHA256")));
    }

    #[test]
    fn l6_user_paid_iff_ssp_got_the_preimage() {
        let (r, t) = ([1u8; 32], TransferId([9; 16]));
        let h = hash_of(&r);
        let mut c = LightningCheck::default();
        for op in 1..3 {
            c.observe(&Observation::PreimageShareReleased { operator: OperatorId(op), to: OperatorId(0), payment_hash: h, transfer: t, recorded: true }, 3);
        }
        assert!(c.observe(&Observation::PreimageRevealed { by: OperatorId(0), payment_hash: h, preimage: r, transfer: t }, 3).is_empty());
        let claimed: BTreeMap<TransferId, Micros> = [(t, Micros::ZERO)].into_iter().collect();
        // Revealed and claimed, but the SSP never learned r: violation.
        assert_eq!(c.at_end(&claimed).len(), 1);
        assert!(c.observe(&Observation::LightningReceiveSettled { ssp: reference_node::types::WalletId(4), payment_hash: h, preimage: r, transfer: t }, 3).is_empty());
        assert!(c.at_end(&claimed).is_empty());
        assert_eq!(c.at_end(&BTreeMap::new()).len(), 1, "SSP paid, user never received");
    }
}
