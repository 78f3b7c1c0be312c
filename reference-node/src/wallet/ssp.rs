//! The service provider (SSP, spark-protocol §1): a Spark user with its own leaves and L1 coins
//! that sells swaps, cooperative exits and Lightning. It is a [`Wallet`] — it deposits, sends,
//! claims and exits exactly like one — plus the service side here, which answers
//! [`SspRequest`]s. A wallet is the SSP when the directory names it (`Directory::ssp`); every
//! other wallet refuses service requests. The client side (`ssp_request`) is how a wallet's
//! flows reach the SSP.

use super::Wallet;
use crate::msg::{Msg, ReqId, SspReply, SspRequest};
use crate::node::Ctx;
use crate::observe::Observation;
use crate::types::NodeId;

impl Wallet {
    /// Whether this wallet is the deployment's service provider.
    pub fn is_ssp(&self) -> bool {
        self.cfg.directory.ssp == Some(self.cfg.id)
    }

    /// Service side: answer a request from another wallet. Pure: a quote reads the fee schedule
    /// only; flows that move leaves keep their state in this wallet like any operation.
    pub(super) fn on_ssp_request(&mut self, ctx: &mut Ctx<'_>, from: NodeId, req: ReqId, body: SspRequest) {
        let NodeId::Wallet(from_wallet) = from else { return };
        let reply = if !self.is_ssp() {
            Err(format!("{} is not a service provider", self.cfg.id))
        } else {
            match body {
                SspRequest::Quote { service, amount_sats } => self.cfg.params.ssp_fees.quote(service, amount_sats).map(|fee_sats| SspReply::Quote { service, amount_sats, fee_sats }),
                SspRequest::LightningInvoice { payment_hash, amount_sats } => self.ssp_lightning_request(ctx, from_wallet, payment_hash, amount_sats),
                // Leaf swaps (wallet/swap.rs).
                SspRequest::Swap(offer) => self.ssp_accept_swap(ctx, from, *offer),
                // Cooperative exit (ssp_coop_exit.rs).
                SspRequest::CoopExit { exit_id, leaf, value_sats, fee_sats, withdrawal } => self.ssp_coop_exit_offer(ctx, from, exit_id, leaf, value_sats, fee_sats, withdrawal),
                SspRequest::CompleteCoopExit { exit_id, leaf } => self.ssp_coop_exit_complete(ctx, from, exit_id, *leaf),
                // Lightning send (lightning_send.rs).
                SspRequest::LightningSendQuote { amount_sats } => self.ssp_lightning_send_quote(ctx, from_wallet, amount_sats),
                SspRequest::LightningSend { transfer, payment_hash, coordinator } => self.ssp_lightning_send(ctx, from_wallet, transfer, payment_hash, coordinator),
            }
        };
        if let Err(reason) = &reply {
            ctx.observe(Observation::Rejected { what: format!("{} ssp request from {from}", self.cfg.id), reason: reason.clone() });
        }
        ctx.send(from, Msg::SspReply { req, body: Box::new(reply) });
    }

    /// Client side: send `body` to the SSP under the current operation's round id, or `None`
    /// when the deployment has no SSP (the flow must then fail its command, not wait).
    pub(super) fn ssp_request(&mut self, ctx: &mut Ctx<'_>, body: SspRequest) -> Option<ReqId> {
        let ssp = self.cfg.directory.ssp?;
        let session = self.op.as_ref().map(|(s, _)| *s).unwrap_or_default();
        let req = ReqId { session, phase: 0 };
        ctx.send(NodeId::Wallet(ssp), Msg::SspRequest { req, body: Box::new(body) });
        Some(req)
    }
}

#[cfg(test)]
mod tests {
    use crate::msg::{Msg, SspReply, SspRequest, SspService};
    use crate::node::{Ctx, Input, Node, Output};
    use crate::params::{Directory, Params};
    use crate::types::{NodeId, OperatorId, WalletId};
    use crate::wallet::{Wallet, WalletConfig};
    use rand_core::SeedableRng;
    use std::sync::Arc;

    fn wallet(id: u16, ssp: Option<u16>) -> Wallet {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(u64::from(id));
        let identity = crate::crypto::SecretKey::new(&mut rng);
        let l1_key = crate::crypto::SecretKey::new(&mut rng);
        let directory = Arc::new(Directory { ssp: ssp.map(WalletId), ..Directory::default() });
        Wallet::new(WalletConfig { id: WalletId(id), identity, l1_key, coordinator: OperatorId(0), params: Arc::new(Params::new(3, 2)), directory })
    }

    fn step(w: &mut Wallet, input: Input) -> Vec<Output> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut ctx = Ctx::new(crate::types::Micros::ZERO, NodeId::Wallet(w.id()), &mut rng);
        w.handle(&mut ctx, input);
        ctx.into_outputs()
    }

    fn reply(out: &[Output]) -> Result<SspReply, String> {
        out.iter().find_map(|o| if let Output::Send { msg: Msg::SspReply { body, .. }, .. } = o { Some((**body).clone()) } else { None }).expect("an SspReply")
    }

    /// A client's quote request reaches the SSP and is answered from the fee schedule; a wallet
    /// that is not the SSP, and a withdrawal below the minimum, are refused with a reason.
    #[test]
    fn quotes_come_from_the_ssp_only() {
        let (mut client, mut ssp, mut other) = (wallet(0, Some(1)), wallet(1, Some(1)), wallet(2, Some(1)));
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let mut ctx = Ctx::new(crate::types::Micros::ZERO, NodeId::Wallet(WalletId(0)), &mut rng);
        client.ssp_request(&mut ctx, SspRequest::Quote { service: SspService::LightningSend, amount_sats: 100_000 }).expect("an SSP is configured");
        let Some(Output::Send { to, msg }) = ctx.into_outputs().pop() else { panic!("no request sent") };
        assert_eq!(to, NodeId::Wallet(WalletId(1)));
        let out = step(&mut ssp, Input::Message { from: NodeId::Wallet(WalletId(0)), msg: msg.clone() });
        // 0.25% of 100 000 = 250, plus 10 sats of routing budget.
        assert_eq!(reply(&out), Ok(SspReply::Quote { service: SspService::LightningSend, amount_sats: 100_000, fee_sats: 260 }));
        let out = step(&mut other, Input::Message { from: NodeId::Wallet(WalletId(0)), msg });
        assert!(reply(&out).unwrap_err().contains("not a service provider"));
        let small = Msg::SspRequest { req: crate::msg::ReqId { session: 0, phase: 0 }, body: Box::new(SspRequest::Quote { service: SspService::CoopExit, amount_sats: 9_999 }) };
        let out = step(&mut ssp, Input::Message { from: NodeId::Wallet(WalletId(0)), msg: small });
        assert!(reply(&out).unwrap_err().contains("below the minimum"));
        // No SSP in the deployment: the client is told at once, nothing is sent.
        let mut lone = wallet(3, None);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let mut ctx = Ctx::new(crate::types::Micros::ZERO, NodeId::Wallet(WalletId(3)), &mut rng);
        assert!(lone.ssp_request(&mut ctx, SspRequest::Quote { service: SspService::LeafSwap, amount_sats: 1 }).is_none());
        assert!(ctx.into_outputs().is_empty());
    }
}
