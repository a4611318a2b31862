//! The Ecco SDK: agents that discover each other, negotiate what they can do,
//! and combine the answers of several agents.
//!
//! - [`agent`]: an [`Agent`](agent::Agent) offers capabilities, answers
//!   requests with handlers, and asks others through a query pipeline
//!   (discover, match, select, fan out with failover, aggregate);
//! - [`node`]: the libp2p mesh underneath (mDNS, a Kademlia DHT, signed
//!   gossipsub announcements, request/response and streaming replies,
//!   private meshes);
//! - [`negotiation`]: offers, counters and agreements before work is sent;
//! - the domain, free of I/O ([`ecco_core`]): [capabilities](capability),
//!   [queries](query), the [matcher], [selection] and [aggregation] strategies;
//! - [identities](identity) ([`ecco_identity`]): Ed25519 key pairs whose
//!   libp2p `PeerId` is the agent's id.
//!
//! Two agents, one answering and one asking, in one process:
//!
//! ```
//! use ecco::agent::{Agent, Call, HandlerError};
//! use ecco::node::{Answer, Config};
//! use ecco::{Aggregation, Selection};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let translator = Agent::builder()
//!     .config(Config::memory()) // in-process; Config::default() joins the LAN
//!     .capability("text/translate babel@1.0.0 +french price=0.001".parse()?)
//!     .handler("text/translate", |call: Call| async move {
//!         let text = call.request.payload.as_str().unwrap_or_default();
//!         Ok::<_, HandlerError>(Answer::new(format!("[fr] {text}").into()))
//!     })
//!     .spawn()
//!     .await?;
//!
//! let mut config = Config::memory();
//! config.bootstrap = translator.addresses().await?;
//! let me = Agent::builder().config(config).spawn().await?;
//! let answered = me
//!     .query("text/* +french price<=0.01".parse()?)
//!     .select(Selection::All)
//!     .aggregate(Aggregation::MajorityVote)
//!     .send("hello".into())
//!     .await?;
//! assert_eq!(answered.consensus.answer, Some("[fr] hello".into()));
//! # Ok(())
//! # }
//! ```

pub use ecco_core::{
    AgentId, Aggregation, Aggregator, Capability, CapabilityDocument, CapabilityType, Consensus,
    ConstraintValue, Invalid, Match, Matcher, Offer, ParseError, Performance, Query, Response,
    Scalar, Selection, Selector, ValidationError, aggregation, capability, limits, matcher,
    performance, query, selection,
};
pub mod agent;
pub mod discovery;
pub mod negotiation;
pub mod node;
pub mod registry;

mod bounded;
mod cbor;

pub use ecco_identity as identity;
pub use ecco_identity::{Identity, PeerId};
pub use libp2p::Multiaddr;

/// The [`AgentId`] of a peer: the base58 text of its `PeerId`.
pub fn agent_id(peer: &PeerId) -> AgentId {
    // Base58 PeerIds are 40 to 60 ASCII letters and digits: always a valid id.
    AgentId::new(peer.to_base58()).expect("a base58 PeerId is a valid agent id")
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_are_peer_ids_in_base58() {
        for _ in 0..32 {
            let peer = Identity::generate().peer_id();
            assert_eq!(agent_id(&peer).as_str(), peer.to_base58());
        }
    }
}
