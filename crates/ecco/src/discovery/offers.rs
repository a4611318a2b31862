//! The directory's offers indexed for ranking: built once per change of the
//! directory, shared by every query until the next one.

use ecco_core::matcher::Index;
use ecco_core::{Capability, Matcher, Offer, Query};
use libp2p::PeerId;

use super::Entry;
use crate::agent_id;

/// A capability a peer offers, as a ranking found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Who offers it.
    pub peer: PeerId,
    /// What is offered.
    pub capability: Capability,
    /// The match score in `[0, 1]`.
    pub score: f64,
}

/// Every capability of the directory at one moment, indexed for ranking
/// ([`Matcher::rank_in`]). Immutable, so that the node's task hands it out
/// behind an `Arc` without copying anything and callers rank in their own
/// tasks, with the node's matcher or their own.
#[derive(Debug, Default)]
pub struct Offers {
    index: Index,
    /// The peer of each of the index's offers, by position.
    peers: Vec<PeerId>,
}

impl Offers {
    /// Indexes the capabilities of `entries`, in their order.
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Self {
        let mut peers = Vec::new();
        let mut offers = Vec::new();
        for entry in entries {
            let agent = agent_id(&entry.peer);
            for capability in &entry.capabilities {
                peers.push(entry.peer);
                offers.push(Offer::new(agent.clone(), capability.clone()));
            }
        }
        Self {
            index: Index::new(offers),
            peers,
        }
    }

    /// Every offer `query` admits, best first, with its peer.
    pub fn rank(&self, matcher: &Matcher, query: &Query) -> Vec<Found> {
        matcher
            .rank_in(&self.index, query)
            .into_iter()
            .filter_map(|m| {
                // Every match is one of the index's own offers.
                let peer = *self.peers.get(self.index.position_of(m.offer)?)?;
                Some(Found {
                    peer,
                    capability: m.offer.capability.clone(),
                    score: m.score,
                })
            })
            .collect()
    }

    /// The index, for rankings other than [`rank`](Self::rank)'s (the best
    /// `k` only, or explanations).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The peer of the offer at `position` in the index.
    pub fn peer_at(&self, position: usize) -> Option<PeerId> {
        self.peers.get(position).copied()
    }

    /// Number of offers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether there are no offers.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;
    use crate::discovery::Source;

    fn entry(peer: PeerId, caps: &[&str]) -> Entry {
        Entry {
            peer,
            capabilities: caps.iter().map(|c| c.parse().unwrap()).collect(),
            addrs: Vec::new(),
            seq: 1,
            last_seen_ms: 0,
            expires_at_ms: 0,
            source: Source::Gossip,
            footprint: 0,
        }
    }

    #[test]
    fn ranks_each_offer_with_its_own_peer() {
        let (a, b) = (
            Identity::generate().peer_id(),
            Identity::generate().peer_id(),
        );
        let entries = [
            entry(a, &["llm/chat a1@1.0.0 price=0.02", "tool/x a2@1.0.0"]),
            entry(b, &["llm/chat b1@1.0.0 price=0.01"]),
        ];
        let offers = Offers::new(&entries);
        assert_eq!(offers.len(), 3);
        let found = offers.rank(
            &Matcher::default(),
            &"llm/chat price<=0.05".parse().unwrap(),
        );
        let got: Vec<(PeerId, &str)> = found
            .iter()
            .map(|f| (f.peer, f.capability.name()))
            .collect();
        assert_eq!(got.len(), 2);
        assert!(
            got.contains(&(a, "a1")) && got.contains(&(b, "b1")),
            "{got:?}"
        );
        // The same ranking as the plain matcher over the same offers.
        let plain = Matcher::default().rank(
            &"llm/chat price<=0.05".parse().unwrap(),
            offers.index().offers(),
        );
        let scores: Vec<f64> = plain.iter().map(|m| m.score).collect();
        assert_eq!(scores, found.iter().map(|f| f.score).collect::<Vec<_>>());
        assert_eq!(offers.peer_at(2), Some(b));
        assert_eq!(offers.peer_at(3), None);
    }
}
