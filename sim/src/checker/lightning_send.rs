//! Lightning send checks (spark-protocol §4.8, §6.3 I-13, §6.4 L-6), from the observations of
//! wallet/lightning_send.rs and operator/preimage_send.rs.
//!
//! I-13 where it applies to a send, per event: an operator accepts only a preimage whose SHA256
//! is the payment hash, and only one the SSP obtained by paying (the payee reveals r only when
//! paid); the sender learns the payment settled only after the operators accepted r.
//! L-6 at quiescence: the user's leaves go to the SSP iff the SSP paid the invoice; otherwise
//! they come back to the user.
use super::{finding, Finding};
use reference_node::crypto::identity::sha256;
use reference_node::observe::Observation;
use reference_node::types::{Micros, TransferId, WalletId};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub struct LightningSendCheck {
    /// Locked sends: transfer → (user, payment hash).
    locked: BTreeMap<TransferId, (WalletId, [u8; 32])>,
    /// The SSP paid the invoice (and learned r).
    paid: BTreeSet<[u8; 32]>,
    /// An operator accepted r for the transfer.
    provided: BTreeSet<[u8; 32]>,
    /// The user saw its leaves come back.
    returned: BTreeSet<TransferId>,
}

fn short(h: &[u8; 32]) -> String {
    hex::encode(&h[..4])
}

impl LightningSendCheck {
    /// I-13 (send) on one observation; `Some(property)` names the `sometimes` it reached.
    pub fn observe(&mut self, obs: &Observation) -> (Vec<Finding>, Option<&'static str>) {
        let mut found = Vec::new();
        let mut hit = None;
        match obs {
            Observation::LightningSendLocked { wallet, payment_hash, transfer, .. } => {
                self.locked.insert(*transfer, (*wallet, *payment_hash));
            }
            Observation::LightningSendPaid { payment_hash, .. } => {
                self.paid.insert(*payment_hash);
            }
            Observation::PreimageProvided { by, payment_hash, preimage, transfer } => {
                let subject = format!("lightning send {}", short(payment_hash));
                if sha256(&[preimage]) != *payment_hash {
                    found.push(finding("I-13", subject.clone(), format!("{by} accepted a preimage whose SHA256 is not the payment hash (transfer {transfer})")));
                }
                if !self.paid.contains(payment_hash) {
                    found.push(finding("I-13", subject, format!("{by} accepted the preimage of transfer {transfer} before the SSP paid the invoice")));
                }
                self.provided.insert(*payment_hash);
            }
            Observation::LightningSendDone { wallet, payment_hash, transfer, settled } => {
                if *settled {
                    hit = Some("lightning-send-settled");
                    if !self.provided.contains(payment_hash) {
                        found.push(finding("I-13", format!("lightning send {}", short(payment_hash)), format!("{wallet} learned the preimage of transfer {transfer} before any operator accepted it")));
                    }
                } else {
                    hit = Some("lightning-send-returned");
                    self.returned.insert(*transfer);
                }
            }
            _ => {}
        }
        (found, hit)
    }

    /// L-6 for Lightning send at quiescence: `claimed` = transfers a receiver claimed.
    pub fn at_end(&self, claimed: &BTreeMap<TransferId, Micros>) -> Vec<Finding> {
        let mut found = Vec::new();
        for (transfer, (user, hash)) in &self.locked {
            let subject = format!("lightning send {}", short(hash));
            let paid = self.paid.contains(hash);
            let to_ssp = claimed.contains_key(transfer);
            let back = self.returned.contains(transfer);
            let m = match (paid, to_ssp, back) {
                (true, false, _) => Some(format!("the SSP paid the invoice but never received {user}'s leaves (transfer {transfer})")),
                (false, true, _) => Some(format!("the SSP took {user}'s leaves (transfer {transfer}) without paying the invoice")),
                (false, false, false) => Some(format!("the payment did not happen but {user}'s leaves (transfer {transfer}) never came back")),
                (true, true, true) => Some(format!("{user} got its leaves back although the SSP was paid with them (transfer {transfer})")),
                _ => None,
            };
            found.extend(m.map(|m| finding("L-6", subject, m)));
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_node::types::OperatorId;

    fn setup() -> (LightningSendCheck, [u8; 32], [u8; 32], TransferId) {
        let r = [4u8; 32];
        let h = sha256(&[&r]);
        let t = TransferId([1; 16]);
        let mut c = LightningSendCheck::default();
        c.observe(&Observation::LightningSendLocked { wallet: WalletId(0), payment_hash: h, transfer: t, amount_sats: 10, fee_sats: 1 });
        (c, r, h, t)
    }

    /// Paid ⇒ the SSP claims; not paid ⇒ the leaves come back; each other combination is L-6.
    #[test]
    fn l6_leaves_go_to_the_ssp_iff_it_paid() {
        let (mut c, r, h, t) = setup();
        let claimed: BTreeMap<TransferId, Micros> = [(t, Micros::ZERO)].into_iter().collect();
        assert!(c.at_end(&BTreeMap::new())[0].message.contains("never came back"));
        assert!(c.at_end(&claimed)[0].message.contains("without paying"));
        c.observe(&Observation::LightningSendPaid { ssp: WalletId(9), payment_hash: h, preimage: r, transfer: t });
        assert!(c.at_end(&BTreeMap::new())[0].message.contains("never received"));
        assert!(c.at_end(&claimed).is_empty());
        let (mut c, _, h, t) = setup();
        let (_, hit) = c.observe(&Observation::LightningSendDone { wallet: WalletId(0), payment_hash: h, transfer: t, settled: false });
        assert_eq!(hit, Some("lightning-send-returned"));
        assert!(c.at_end(&BTreeMap::new()).is_empty());
    }

    /// A wrong preimage, one accepted before the SSP paid, and a sender told "settled" before
    /// any operator accepted r are I-13 findings.
    #[test]
    fn i13_preimage_accepted_only_after_payment_and_matching_the_hash() {
        let (mut c, r, h, t) = setup();
        let (f, _) = c.observe(&Observation::LightningSendDone { wallet: WalletId(0), payment_hash: h, transfer: t, settled: true });
        assert!(f[0].message.contains("before any operator"));
        let (f, _) = c.observe(&Observation::PreimageProvided { by: OperatorId(0), payment_hash: h, preimage: r, transfer: t });
        assert!(f[0].message.contains("before the SSP paid"));
        c.observe(&Observation::LightningSendPaid { ssp: WalletId(9), payment_hash: h, preimage: r, transfer: t });
        assert!(c.observe(&Observation::PreimageProvided { by: OperatorId(0), payment_hash: h, preimage: r, transfer: t }).0.is_empty());
        let (f, _) = c.observe(&Observation::PreimageProvided { by: OperatorId(0), payment_hash: h, preimage: [5; 32], transfer: t });
        assert!(f[0].message.contains("SHA256"));
    }
}
