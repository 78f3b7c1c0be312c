//! Every kind of simulated process behind one type, so the engine holds them in one map and the
//! checker can look inside.
use reference_node::node::{Ctx, Input, Node};
use reference_node::operator::Operator;
use reference_node::wallet::Wallet;

pub enum Actor {
    Operator(Box<Operator>),
    Wallet(Box<Wallet>),
}

impl Actor {
    pub fn as_operator(&self) -> Option<&Operator> {
        match self {
            Actor::Operator(o) => Some(o),
            Actor::Wallet(_) => None,
        }
    }
    pub fn as_wallet(&self) -> Option<&Wallet> {
        match self {
            Actor::Wallet(w) => Some(w),
            Actor::Operator(_) => None,
        }
    }
}

impl Node for Actor {
    fn handle(&mut self, ctx: &mut Ctx<'_>, input: Input) {
        match self {
            Actor::Operator(o) => o.handle(ctx, input),
            Actor::Wallet(w) => w.handle(ctx, input),
        }
    }
    fn crash(&mut self) {
        match self {
            Actor::Operator(o) => o.crash(),
            Actor::Wallet(w) => w.crash(),
        }
    }
    fn mark_synced(&mut self) {
        match self {
            Actor::Operator(o) => o.mark_synced(),
            Actor::Wallet(w) => w.mark_synced(),
        }
    }
    fn crash_losing_unsynced(&mut self) {
        match self {
            Actor::Operator(o) => o.crash_losing_unsynced(),
            Actor::Wallet(w) => w.crash_losing_unsynced(),
        }
    }
}
