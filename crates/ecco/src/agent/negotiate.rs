//! The client's side of a negotiation.

use ecco_core::CapabilityType;
use serde_json::Value;

use crate::PeerId;
use crate::negotiation::{MAX_ROUNDS, Reply, Step, Terms};
use crate::node::{Node, Request, RequestError};

/// Why a negotiation step failed.
#[derive(Debug, thiserror::Error)]
pub enum NegotiationError {
    /// The step did not reach the provider, or it refused.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The provider's reply was not a negotiation reply.
    #[error("the provider's reply is not a negotiation reply: {0}")]
    Malformed(String),
    /// Another counter would exceed the round bound.
    #[error("negotiations end after {MAX_ROUNDS} rounds")]
    TooManyRounds,
}

/// A negotiation with one provider: [`ask`](Self::ask) for an offer, then
/// [`accept`](Self::accept), [`counter`](Self::counter) or
/// [`decline`](Self::decline). The provider keeps no state between steps.
#[derive(Debug)]
pub struct Negotiation {
    node: Node,
    peer: PeerId,
    kind: CapabilityType,
    payload: Value,
    round: u32,
}

impl Negotiation {
    pub(super) fn new(node: Node, peer: PeerId, kind: CapabilityType, payload: Value) -> Self {
        Self {
            node,
            peer,
            kind,
            payload,
            round: 0,
        }
    }

    /// The rounds used so far.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// Asks for an offer (round 1).
    pub async fn ask(&mut self) -> Result<Reply, NegotiationError> {
        self.round = 1;
        self.step(Step::Ask).await
    }

    /// Proposes other terms (the next round).
    pub async fn counter(&mut self, terms: Terms) -> Result<Reply, NegotiationError> {
        let round = self.round.max(1) + 1;
        if round > MAX_ROUNDS {
            return Err(NegotiationError::TooManyRounds);
        }
        self.round = round;
        self.step(Step::Counter { round, terms }).await
    }

    /// Accepts terms; the provider answers `Agreed` if it stands by them.
    pub async fn accept(&mut self, terms: Terms) -> Result<Reply, NegotiationError> {
        self.step(Step::Accept { terms }).await
    }

    /// Ends the negotiation.
    pub async fn decline(mut self) -> Result<Reply, NegotiationError> {
        self.step(Step::Decline).await
    }

    async fn step(&mut self, step: Step) -> Result<Reply, NegotiationError> {
        let mut request = Request::new(self.kind.clone(), self.payload.clone());
        request.negotiation = Some(step);
        let answer = self.node.request(self.peer, request).await?;
        serde_json::from_value(answer.result)
            .map_err(|e| NegotiationError::Malformed(e.to_string()))
    }
}
