//! The local capability directory: which peer offers what, where, since when,
//! and how it was learned. The matcher ranks what it holds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ecco_core::{Capability, Matcher, Query};
use libp2p::{Multiaddr, PeerId};

use super::announcement::{Announcement, AnnouncementError};
use super::offers::{Found, Offers};

/// How an entry was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A gossipsub announcement.
    Gossip,
    /// A capability fetch after a DHT lookup.
    Dht,
    /// A capability fetch after mDNS found the peer.
    Mdns,
    /// A direct capability fetch.
    Fetch,
    /// The registry.
    Registry,
}

/// What the directory knows of one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The peer.
    pub peer: PeerId,
    /// Its capabilities.
    pub capabilities: Vec<Capability>,
    /// Where it can be reached.
    pub addrs: Vec<Multiaddr>,
    /// The sequence number of the announcement this came from.
    pub seq: u64,
    /// When it was last heard of, in ms since the Unix epoch.
    pub last_seen_ms: u64,
    /// When it expires unless renewed.
    pub expires_at_ms: u64,
    /// How it was learned.
    pub source: Source,
}

/// What an accepted announcement changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// A peer not known before.
    Added,
    /// A known peer with changed capabilities or addresses.
    Changed,
    /// A known peer, same content, renewed.
    Refreshed,
    /// The peer announced that it offers nothing (it is leaving, or stopped
    /// offering): its entry, if any, is gone.
    Withdrawn,
}

/// What ranking needs from the directory, taken without copying its content:
/// an owner that must not stall (the node's task) hands this out, and the
/// caller does the O(n) work.
#[derive(Debug, Clone)]
pub enum Snapshot {
    /// The offers, indexed since the last change.
    Indexed(Arc<Offers>),
    /// The entries, changed since the last index: index them
    /// ([`Offers::new`]) and hand the result back with [`Directory::cache`]
    /// so that later rankings reuse it.
    Changed {
        /// Identifies this state of the directory for [`Directory::cache`].
        generation: u64,
        /// Every entry, shared.
        entries: Vec<Arc<Entry>>,
    },
}

/// The directory. Bounded: at most `max_peers` entries; when full, a new
/// peer replaces the entry closest to expiry only if it would outlive it.
#[derive(Debug)]
pub struct Directory {
    // Shared, so that a snapshot costs a reference count per peer.
    entries: BTreeMap<PeerId, Arc<Entry>>,
    max_peers: usize,
    /// Newest sequence number seen per peer, kept after an entry goes so that
    /// a replay of an older announcement cannot bring it back.
    seen: BTreeMap<PeerId, u64>,
    seen_order: VecDeque<PeerId>,
    /// Counts changes to the set of offers, so that an index built from an
    /// older snapshot is never cached.
    generation: u64,
    /// The offers of this generation, indexed, once someone has built them.
    offers: Option<Arc<Offers>>,
}

impl Directory {
    /// An empty directory for at most `max_peers` peers.
    pub fn new(max_peers: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            max_peers: max_peers.max(1),
            seen: BTreeMap::new(),
            seen_order: VecDeque::new(),
            generation: 0,
            offers: None,
        }
    }

    /// Applies a verified announcement.
    pub fn apply(
        &mut self,
        a: Announcement,
        source: Source,
        now_ms: u64,
    ) -> Result<Update, AnnouncementError> {
        if let Some(&known) = self.seen.get(&a.peer)
            && a.seq <= known
        {
            return Err(AnnouncementError::Stale { seq: a.seq, known });
        }
        self.remember_seq(a.peer, a.seq);
        let expires_at_ms = a.expires_at_ms();
        let capabilities = a.document.into_capabilities();
        if capabilities.is_empty() {
            self.remove(&a.peer);
            return Ok(Update::Withdrawn);
        }
        let update = match self.entries.get(&a.peer) {
            None => Update::Added,
            Some(e) if e.capabilities == capabilities && e.addrs == a.addrs => Update::Refreshed,
            Some(_) => Update::Changed,
        };
        if update == Update::Added && self.entries.len() >= self.max_peers {
            let soonest = self
                .entries
                .values()
                .min_by_key(|e| e.expires_at_ms)
                .map(|e| (e.peer, e.expires_at_ms));
            match soonest {
                Some((victim, at)) if at < expires_at_ms => {
                    self.entries.remove(&victim);
                }
                // Not the sender's fault: the announcement is valid, this
                // node only has no room for it.
                _ => return Err(AnnouncementError::DirectoryFull),
            }
        }
        if update != Update::Refreshed {
            self.changed();
        }
        self.entries.insert(
            a.peer,
            Arc::new(Entry {
                peer: a.peer,
                capabilities,
                addrs: a.addrs,
                seq: a.seq,
                last_seen_ms: now_ms,
                expires_at_ms,
                source,
            }),
        );
        Ok(update)
    }

    fn remember_seq(&mut self, peer: PeerId, seq: u64) {
        if self.seen.insert(peer, seq).is_none() {
            self.seen_order.push_back(peer);
            // Keep the memory of sequence numbers bounded too.
            while self.seen_order.len() > self.max_peers.saturating_mul(4) {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }

    /// Removes entries whose time to live has passed; returns their peers.
    pub fn expire(&mut self, now_ms: u64) -> Vec<PeerId> {
        let gone: Vec<PeerId> = self
            .entries
            .values()
            .filter(|e| e.expires_at_ms <= now_ms)
            .map(|e| e.peer)
            .collect();
        for peer in &gone {
            self.entries.remove(peer);
        }
        if !gone.is_empty() {
            self.changed();
        }
        gone
    }

    /// Forgets a peer (it left).
    pub fn remove(&mut self, peer: &PeerId) -> Option<Entry> {
        let removed = self.entries.remove(peer)?;
        self.changed();
        Some(Arc::unwrap_or_clone(removed))
    }

    /// The set of offers changed: the index is out of date.
    fn changed(&mut self) {
        self.generation += 1;
        self.offers = None;
    }

    /// One peer's entry.
    pub fn get(&self, peer: &PeerId) -> Option<&Entry> {
        self.entries.get(peer).map(|e| &**e)
    }

    /// Every entry, by peer id.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().map(|e| &**e)
    }

    /// Every entry, by peer id, shared rather than copied.
    pub fn shared_entries(&self) -> Vec<Arc<Entry>> {
        self.entries.values().cloned().collect()
    }

    /// Number of peers known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no peer is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The indexed offers if they are up to date, else what to build them
    /// from. O(1) when indexed, a reference count per peer otherwise.
    pub fn snapshot(&self) -> Snapshot {
        match &self.offers {
            Some(offers) => Snapshot::Indexed(Arc::clone(offers)),
            None => Snapshot::Changed {
                generation: self.generation,
                entries: self.shared_entries(),
            },
        }
    }

    /// Keeps `offers`, built from the snapshot of `generation`, for later
    /// rankings; refused (`false`) if the directory has changed since.
    pub fn cache(&mut self, generation: u64, offers: Arc<Offers>) -> bool {
        let current = generation == self.generation;
        if current {
            self.offers = Some(offers);
        }
        current
    }

    /// The indexed offers, built here if out of date.
    pub fn offers(&mut self) -> Arc<Offers> {
        let entries = &self.entries;
        Arc::clone(
            self.offers
                .get_or_insert_with(|| Arc::new(Offers::new(entries.values().map(|e| &**e)))),
        )
    }

    /// Ranks the known offers for a query, best first.
    pub fn rank(&mut self, matcher: &Matcher, query: &Query) -> Vec<Found> {
        self.offers().rank(matcher, query)
    }
}

#[cfg(test)]
mod tests {
    use ecco_core::CapabilityDocument;

    use super::*;
    use crate::Identity;

    const NOW: u64 = 1_800_000_000_000;

    fn announcement(peer: PeerId, seq: u64, caps: &[&str], ttl_secs: u32) -> Announcement {
        Announcement {
            peer,
            mesh: "ecco".into(),
            seq,
            issued_at_ms: NOW,
            ttl_secs,
            addrs: Vec::new(),
            document: CapabilityDocument::new(caps.iter().map(|c| c.parse().unwrap()).collect())
                .unwrap(),
        }
    }

    #[test]
    fn learns_updates_and_rejects_replays() {
        let peer = Identity::generate().peer_id();
        let mut d = Directory::new(10);
        let one = announcement(peer, 1, &["llm/chat a@1.0.0 +summarize"], 60);
        assert_eq!(d.apply(one.clone(), Source::Gossip, NOW), Ok(Update::Added));
        assert_eq!(
            d.apply(one.clone(), Source::Gossip, NOW),
            Err(AnnouncementError::Stale { seq: 1, known: 1 })
        );
        let mut two = one.clone();
        two.seq = 2;
        assert_eq!(d.apply(two, Source::Gossip, NOW + 1), Ok(Update::Refreshed));
        let three = announcement(peer, 3, &["llm/chat a@1.1.0 +summarize"], 60);
        assert_eq!(d.apply(three, Source::Fetch, NOW + 2), Ok(Update::Changed));
        let e = d.get(&peer).unwrap();
        assert_eq!(
            (e.seq, e.source, e.last_seen_ms),
            (3, Source::Fetch, NOW + 2)
        );

        // Gone, and an old announcement replayed cannot bring it back.
        d.remove(&peer);
        assert!(matches!(
            d.apply(one, Source::Gossip, NOW + 3),
            Err(AnnouncementError::Stale { .. })
        ));
    }

    #[test]
    fn an_empty_announcement_withdraws() {
        let peer = Identity::generate().peer_id();
        let mut d = Directory::new(10);
        d.apply(
            announcement(peer, 1, &["x n@1.0.0"], 60),
            Source::Gossip,
            NOW,
        )
        .unwrap();
        let empty = announcement(peer, 2, &[], 60);
        assert_eq!(
            d.apply(empty.clone(), Source::Gossip, NOW),
            Ok(Update::Withdrawn)
        );
        assert!(d.get(&peer).is_none());
        assert!(d.offers().is_empty());
        // The withdrawal is not undone by a replay of what came before it.
        assert!(
            d.apply(
                announcement(peer, 1, &["x n@1.0.0"], 60),
                Source::Gossip,
                NOW
            )
            .is_err()
        );
    }

    #[test]
    fn entries_expire() {
        let a = Identity::generate().peer_id();
        let b = Identity::generate().peer_id();
        let mut d = Directory::new(10);
        d.apply(announcement(a, 1, &["x n@1.0.0"], 10), Source::Gossip, NOW)
            .unwrap();
        d.apply(announcement(b, 1, &["x n@1.0.0"], 60), Source::Gossip, NOW)
            .unwrap();
        assert!(d.expire(NOW + 9_999).is_empty());
        assert_eq!(d.expire(NOW + 10_000), vec![a]);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn is_bounded() {
        let mut d = Directory::new(2);
        let peers: Vec<PeerId> = (0..3).map(|_| Identity::generate().peer_id()).collect();
        d.apply(
            announcement(peers[0], 1, &["x n@1.0.0"], 30),
            Source::Gossip,
            NOW,
        )
        .unwrap();
        d.apply(
            announcement(peers[1], 1, &["x n@1.0.0"], 60),
            Source::Gossip,
            NOW,
        )
        .unwrap();
        // A newcomer that outlives the soonest-expiring entry replaces it.
        d.apply(
            announcement(peers[2], 1, &["x n@1.0.0"], 90),
            Source::Gossip,
            NOW,
        )
        .unwrap();
        assert_eq!(d.len(), 2);
        assert!(d.get(&peers[0]).is_none());
        // One that would not outlive anything is refused, as no fault of
        // its sender's.
        let late = Identity::generate().peer_id();
        let refused = d.apply(
            announcement(late, 1, &["x n@1.0.0"], 10),
            Source::Gossip,
            NOW,
        );
        assert_eq!(refused, Err(AnnouncementError::DirectoryFull));
        assert!(!AnnouncementError::DirectoryFull.is_misbehaviour());
    }

    #[test]
    fn ranks_what_it_knows() {
        let a = Identity::generate().peer_id();
        let b = Identity::generate().peer_id();
        let mut d = Directory::new(10);
        d.apply(
            announcement(a, 1, &["llm/chat a@1.0.0 +summarize price=0.002"], 60),
            Source::Gossip,
            NOW,
        )
        .unwrap();
        d.apply(
            announcement(b, 1, &["llm/chat b@1.0.0 +summarize price=0.02"], 60),
            Source::Gossip,
            NOW,
        )
        .unwrap();
        let q: Query = "llm/* +summarize price<=0.01".parse().unwrap();
        let ranked = d.rank(&Matcher::default(), &q);
        assert_eq!(ranked.len(), 1);
        assert_eq!(ranked[0].peer, a);
        d.remove(&a);
        assert!(
            d.rank(&Matcher::default(), &q).is_empty(),
            "the index follows removals"
        );
    }

    #[test]
    fn an_index_is_shared_until_a_change_and_a_stale_one_is_never_kept() {
        let (a, b) = (
            Identity::generate().peer_id(),
            Identity::generate().peer_id(),
        );
        let build = |entries: &[Arc<Entry>]| Arc::new(Offers::new(entries.iter().map(|e| &**e)));
        let mut d = Directory::new(10);
        d.apply(announcement(a, 1, &["x n@1.0.0"], 60), Source::Gossip, NOW)
            .unwrap();
        let Snapshot::Changed {
            generation,
            entries,
        } = d.snapshot()
        else {
            panic!("nothing is indexed yet")
        };
        assert_eq!(entries.len(), 1);
        let early = build(&entries);
        // The directory changes while the caller indexes: its index is refused.
        d.apply(announcement(b, 1, &["x m@1.0.0"], 60), Source::Gossip, NOW)
            .unwrap();
        assert!(!d.cache(generation, early));
        let Snapshot::Changed {
            generation,
            entries,
        } = d.snapshot()
        else {
            panic!("an index of an older directory was served")
        };
        assert_eq!(entries.len(), 2);
        let current = build(&entries);
        assert!(d.cache(generation, Arc::clone(&current)));

        // Shared, not rebuilt, while the offers stay the same; a renewal
        // keeps them the same.
        assert_eq!(
            d.apply(announcement(a, 2, &["x n@1.0.0"], 60), Source::Gossip, NOW),
            Ok(Update::Refreshed)
        );
        let Snapshot::Indexed(shared) = d.snapshot() else {
            panic!("a renewal dropped the index")
        };
        assert!(Arc::ptr_eq(&shared, &current));
        assert_eq!(d.rank(&Matcher::default(), &"x".parse().unwrap()).len(), 2);

        // A removal and an expiry each make it out of date.
        d.remove(&b);
        assert!(matches!(d.snapshot(), Snapshot::Changed { .. }));
        assert_eq!(d.offers().len(), 1);
        assert!(matches!(d.snapshot(), Snapshot::Indexed(_)));
        assert_eq!(d.expire(NOW + 60_000), vec![a]);
        assert!(matches!(d.snapshot(), Snapshot::Changed { .. }));
    }
}
