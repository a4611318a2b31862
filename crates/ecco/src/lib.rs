//! The Ecco SDK: agents that discover each other, negotiate what they can do,
//! and combine the answers of several agents.
//!
//! This crate gathers Ecco's parts behind one name:
//!
//! - the domain, free of I/O ([`ecco_core`]): [capabilities](capability),
//!   [queries](query), the [matcher], [selection] and [aggregation] strategies;
//! - [identities](identity) ([`ecco_identity`]): Ed25519 key pairs whose
//!   libp2p `PeerId` is the agent's id.
//!
//! The networking layer (a libp2p mesh with mDNS, a Kademlia DHT and
//! gossipsub) and the agent API are built on these next.
//!
//! ```
//! use ecco::{Identity, Matcher, Offer, Query, agent_id};
//!
//! let me = Identity::generate();
//! let offer = Offer::new(agent_id(&me.peer_id()), "tool/translate deepl@1.0.0 +french".parse()?);
//! let query: Query = "tool/* +french".parse()?;
//! let ranked = Matcher::default().rank(&query, [&offer]);
//! assert_eq!(ranked[0].offer.agent.as_str(), me.peer_id().to_base58());
//! # Ok::<(), Box<dyn std::error::Error>>(())
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
