//! The local capability directory: which peer offers what, where, since when,
//! and how it was learned. The matcher ranks what it holds.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
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
    /// Approximately how many bytes of memory the entry takes
    /// ([`Entry::footprint_of`]): what the directory's byte budget counts.
    pub footprint: usize,
}

impl Entry {
    /// Approximately how many bytes of memory an entry of these
    /// capabilities and addresses takes in a [`Directory`], its map slot and
    /// shared pointer included ([`Capability::footprint`] for each capability).
    pub fn footprint_of(capabilities: &[Capability], addrs: &[Multiaddr]) -> usize {
        // The map's key and pointer, the Arc's counts, the entry itself.
        const SLOT: usize = size_of::<PeerId>() + size_of::<Arc<Entry>>() + 16;
        SLOT + size_of::<Entry>()
            + capabilities.iter().map(Capability::footprint).sum::<usize>()
            // A multiaddr is a shared vector of bytes.
            + addrs
                .iter()
                .map(|a| size_of::<Multiaddr>() + 16 + size_of::<Vec<u8>>() + a.len())
                .sum::<usize>()
    }
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

/// What is remembered of a peer's announcements once its entry is gone.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The newest sequence number seen.
    seq: u64,
    /// When the last of its announcements seen expires, in ms.
    until_ms: u64,
    /// The newest one must not be applied again: it withdrew, or the peer
    /// was removed since.
    closed: bool,
}

/// The directory. Bounded twice: at most `max_peers` entries, and at most
/// `max_bytes` of memory for them (estimated: [`Entry::footprint_of`]), so
/// that peers with large documents cannot make it hold gigabytes. An announcement that does
/// not fit replaces the entries closest to expiry, but only those that it
/// would outlive; otherwise it is not kept.
#[derive(Debug)]
pub struct Directory {
    // Shared, so that a snapshot costs a reference count per peer.
    entries: BTreeMap<PeerId, Arc<Entry>>,
    max_peers: usize,
    max_bytes: usize,
    /// The sum of the entries' footprints.
    bytes: usize,
    /// Peers whose entries the last [`apply`](Self::apply) evicted.
    evicted: Vec<PeerId>,
    /// Newest sequence number seen per peer, kept after an entry goes so that
    /// a replay of an older announcement cannot bring it back.
    seen: BTreeMap<PeerId, Seen>,
    /// `seen`'s peers, oldest first.
    seen_order: VecDeque<PeerId>,
    /// The latest time `apply` or `expire` was given, in ms.
    clock_ms: u64,
    /// Counts changes to the set of offers, so that an index built from an
    /// older snapshot is never cached.
    generation: u64,
    /// The offers of this generation, indexed, once someone has built them.
    offers: Option<Arc<Offers>>,
}

impl Directory {
    /// An empty directory for at most `max_peers` peers taking at most
    /// `max_bytes` of memory.
    pub fn new(max_peers: usize, max_bytes: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            max_peers: max_peers.max(1),
            max_bytes,
            bytes: 0,
            evicted: Vec::new(),
            seen: BTreeMap::new(),
            seen_order: VecDeque::new(),
            clock_ms: 0,
            generation: 0,
            offers: None,
        }
    }

    /// Applies a verified announcement. To make room it may evict other
    /// peers' entries: [`evicted`](Self::evicted) says whose.
    ///
    /// [`AnnouncementError::DirectoryFull`] means that it is valid but does
    /// not fit; the peer's older entry, if any, is gone too, since it is out
    /// of date.
    pub fn apply(
        &mut self,
        a: Announcement,
        source: Source,
        now_ms: u64,
    ) -> Result<Update, AnnouncementError> {
        self.evicted.clear();
        self.clock_ms = self.clock_ms.max(now_ms);
        if let Some(known) = self.known_seq(&a.peer) {
            // The newest announcement seen, not held (there was no room, or
            // it was evicted since), may come again, from a fetch: it is
            // still the newest, unless it withdrew or the peer was removed.
            let again = a.seq == known
                && !self.entries.contains_key(&a.peer)
                && !self.seen.get(&a.peer).is_some_and(|s| s.closed);
            if a.seq <= known && !again {
                return Err(AnnouncementError::Stale { seq: a.seq, known });
            }
        }
        let expires_at_ms = a.expires_at_ms();
        let withdrawal = a.document.capabilities().is_empty();
        self.remember_seq(a.peer, a.seq, expires_at_ms, withdrawal);
        let capabilities = a.document.into_capabilities();
        let footprint = Entry::footprint_of(&capabilities, &a.addrs);
        if capabilities.is_empty() {
            self.remove(&a.peer);
            return Ok(Update::Withdrawn);
        }
        let update = match self.entries.get(&a.peer) {
            None => Update::Added,
            Some(e) if e.capabilities == capabilities && e.addrs == a.addrs => Update::Refreshed,
            Some(_) => Update::Changed,
        };
        if let Err(full) = self.make_room(a.peer, footprint, expires_at_ms) {
            self.take(&a.peer);
            return Err(full);
        }
        if update != Update::Refreshed {
            self.changed();
        }
        let entry = Arc::new(Entry {
            peer: a.peer,
            capabilities,
            addrs: a.addrs,
            seq: a.seq,
            last_seen_ms: now_ms,
            expires_at_ms,
            source,
            footprint,
        });
        self.bytes += footprint;
        if let Some(old) = self.entries.insert(a.peer, entry) {
            self.bytes -= old.footprint;
        }
        Ok(update)
    }

    /// Makes room for `peer`'s entry of `footprint` bytes, replacing its
    /// current one, by evicting the other entries that expire soonest, but
    /// only those that expire before `expires_at_ms`. Evicts nothing unless
    /// that makes enough room.
    fn make_room(
        &mut self,
        peer: PeerId,
        footprint: usize,
        expires_at_ms: u64,
    ) -> Result<(), AnnouncementError> {
        let current = self.entries.get(&peer).map(|e| e.footprint);
        let mut peers = self.entries.len() + usize::from(current.is_none());
        let mut bytes = self.bytes - current.unwrap_or(0) + footprint;
        let fits = |peers: usize, bytes: usize| peers <= self.max_peers && bytes <= self.max_bytes;
        if fits(peers, bytes) {
            return Ok(());
        }
        if footprint > self.max_bytes {
            return Err(AnnouncementError::DirectoryFull);
        }
        // Heapified in O(n), popped only as far as needed: a newcomer to a
        // full directory usually evicts one entry.
        let mut soonest: BinaryHeap<Reverse<(u64, PeerId, usize)>> = self
            .entries
            .values()
            .filter(|e| e.peer != peer && e.expires_at_ms < expires_at_ms)
            .map(|e| Reverse((e.expires_at_ms, e.peer, e.footprint)))
            .collect();
        let mut victims = Vec::new();
        while !fits(peers, bytes) {
            // Not the sender's fault: the announcement is valid, this node
            // only has no room for it.
            let Reverse((_, victim, len)) =
                soonest.pop().ok_or(AnnouncementError::DirectoryFull)?;
            victims.push(victim);
            peers -= 1;
            bytes -= len;
        }
        for victim in &victims {
            self.take(victim);
        }
        self.evicted = victims;
        Ok(())
    }

    /// The peers whose entries the last [`apply`](Self::apply) evicted to
    /// make room, soonest to expire first.
    pub fn evicted(&self) -> &[PeerId] {
        &self.evicted
    }

    /// The newest sequence number known of `peer`: its entry's, or the one
    /// remembered after the entry went.
    fn known_seq(&self, peer: &PeerId) -> Option<u64> {
        let remembered = self.seen.get(peer).map(|s| s.seq);
        remembered.max(self.entries.get(peer).map(|e| e.seq))
    }

    fn remember_seq(&mut self, peer: PeerId, seq: u64, until_ms: u64, closed: bool) {
        match self.seen.get_mut(&peer) {
            Some(seen) => {
                if seq > seen.seq {
                    (seen.seq, seen.closed) = (seq, closed);
                } else if seq == seen.seq {
                    seen.closed |= closed;
                }
                seen.until_ms = seen.until_ms.max(until_ms);
            }
            None => {
                self.seen.insert(
                    peer,
                    Seen {
                        seq,
                        until_ms,
                        closed,
                    },
                );
                self.seen_order.push_back(peer);
                self.trim_seen();
            }
        }
    }

    /// Keeps the memory of sequence numbers bounded, at four times the
    /// directory's peers. Forgets first what protects nothing any more
    /// (every announcement seen of that peer has expired, so a replay would
    /// be refused as expired anyway), then the oldest; peers in the
    /// directory stay protected by their entry's sequence number, which goes
    /// back into this memory when the entry goes.
    fn trim_seen(&mut self) {
        let cap = self.max_peers.saturating_mul(4);
        if self.seen_order.len() <= cap {
            return;
        }
        let now = self.clock_ms;
        self.seen.retain(|_, s| s.until_ms > now);
        if self.seen.len() < self.seen_order.len() {
            self.seen_order.retain(|p| self.seen.contains_key(p));
        }
        if self.seen_order.len() > cap {
            // Down to seven eighths, so that the O(n) pass above runs once
            // every cap/8 newcomers, not for each.
            while self.seen_order.len() > cap - cap / 8 {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }

    /// Removes entries whose time to live has passed; returns their peers.
    pub fn expire(&mut self, now_ms: u64) -> Vec<PeerId> {
        self.clock_ms = self.clock_ms.max(now_ms);
        let gone: Vec<PeerId> = self
            .entries
            .values()
            .filter(|e| e.expires_at_ms <= now_ms)
            .map(|e| e.peer)
            .collect();
        for peer in &gone {
            self.take(peer);
        }
        gone
    }

    /// Forgets a peer (it left).
    pub fn remove(&mut self, peer: &PeerId) -> Option<Entry> {
        let removed = self.take(peer)?;
        if let Some(seen) = self.seen.get_mut(peer) {
            seen.closed = true;
        }
        Some(Arc::unwrap_or_clone(removed))
    }

    fn take(&mut self, peer: &PeerId) -> Option<Arc<Entry>> {
        let removed = self.entries.remove(peer)?;
        self.bytes -= removed.footprint;
        self.changed();
        // Its sequence number may have been forgotten while the entry held it.
        self.remember_seq(removed.peer, removed.seq, removed.expires_at_ms, false);
        Some(removed)
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

    /// The estimated memory its entries take, in bytes: what the byte
    /// budget bounds.
    pub fn bytes(&self) -> usize {
        self.bytes
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
        let mut d = Directory::new(10, usize::MAX);
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

    /// A flood of newcomers cannot make the directory forget a peer's
    /// sequence number while a replay of its older announcement would still
    /// be valid.
    #[test]
    fn a_flood_of_newcomers_does_not_open_the_door_to_replays() {
        let p = Identity::generate().peer_id();
        let flood = |d: &mut Directory, issued_at_ms: u64, peers: usize| {
            for _ in 0..peers {
                let mut a = announcement(Identity::generate().peer_id(), 1, &["x n@1.0.0"], 10);
                a.issued_at_ms = issued_at_ms;
                // Kept or not, each is remembered.
                let _ = d.apply(a, Source::Gossip, issued_at_ms);
            }
        };
        // Room for one peer: sequence numbers of four are remembered.
        let mut d = Directory::new(1, usize::MAX);
        let old = announcement(p, 3, &["x old@1.0.0"], 300);
        d.apply(announcement(p, 5, &["x n@1.0.0"], 300), Source::Gossip, NOW)
            .unwrap();
        flood(&mut d, NOW, 5);
        // P's entry still holds its sequence number.
        assert_eq!(
            d.apply(old.clone(), Source::Gossip, NOW),
            Err(AnnouncementError::Stale { seq: 3, known: 5 })
        );

        // P withdraws; more newcomers than can be remembered come while its
        // older announcements are valid, but their own expire in between:
        // what is forgotten first is what protects nothing any more.
        assert_eq!(
            d.apply(announcement(p, 6, &[], 300), Source::Gossip, NOW),
            Ok(Update::Withdrawn)
        );
        for at in [20_000, 40_000, 60_000] {
            flood(&mut d, NOW + at, 3);
        }
        assert!(d.get(&p).is_none());
        assert_eq!(
            d.apply(old, Source::Gossip, NOW + 60_000),
            Err(AnnouncementError::Stale { seq: 3, known: 6 })
        );
    }

    #[test]
    fn an_empty_announcement_withdraws() {
        let peer = Identity::generate().peer_id();
        let mut d = Directory::new(10, usize::MAX);
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
        let mut d = Directory::new(10, usize::MAX);
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
        let mut d = Directory::new(2, usize::MAX);
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

    /// The entries' sizes add up to what the directory counts.
    fn assert_counted(d: &Directory) {
        assert_eq!(d.bytes(), d.entries().map(|e| e.footprint).sum::<usize>());
    }

    #[test]
    fn is_bounded_in_bytes() {
        let [a, b, c, d, e, f] = [(); 6].map(|()| Identity::generate().peer_id());
        let small = |peer, ttl| announcement(peer, 1, &["x n@1.0.0"], ttl);
        let size = |a: &Announcement| Entry::footprint_of(a.document.capabilities(), &a.addrs);
        let len = size(&small(a, 30));
        // A document of between 1.5 and 2 small ones.
        let large = |peer, seq, ttl| {
            let caps: Vec<String> = (0..64).map(|i| format!("x n{i}@1.0.0")).collect();
            (1..=64)
                .map(|k| {
                    let caps: Vec<&str> = caps[..k].iter().map(String::as_str).collect();
                    announcement(peer, seq, &caps, ttl)
                })
                .find(|a| size(a) * 2 > len * 3)
                .unwrap()
        };
        let large_len = size(&large(d, 1, 120));
        assert!(large_len <= 2 * len, "{large_len} vs {len}");
        let mut dir = Directory::new(10, 3 * len);
        for (peer, ttl) in [(a, 30), (b, 60), (c, 90)] {
            assert_eq!(
                dir.apply(small(peer, ttl), Source::Gossip, NOW),
                Ok(Update::Added)
            );
            assert!(dir.evicted().is_empty());
        }
        assert_eq!(dir.bytes(), 3 * len);
        assert_counted(&dir);

        // A newcomer takes the room of as many entries as it needs, those
        // closest to expiry first.
        assert_eq!(
            dir.apply(large(d, 1, 120), Source::Gossip, NOW),
            Ok(Update::Added)
        );
        assert_eq!(dir.evicted(), &[a, b]);
        assert_eq!(dir.len(), 2);
        assert_eq!(dir.bytes(), len + large_len);
        assert_counted(&dir);

        // Evicting every entry it outlives (c) would not make room: refused,
        // and nothing is evicted for nothing.
        assert_eq!(
            dir.apply(large(e, 1, 100), Source::Gossip, NOW),
            Err(AnnouncementError::DirectoryFull)
        );
        assert!(dir.evicted().is_empty());
        assert!(dir.get(&c).is_some() && dir.get(&e).is_none());
        assert_counted(&dir);

        // Nor is one larger than the whole budget ever kept.
        let mut tiny = Directory::new(10, len - 1);
        assert_eq!(
            tiny.apply(small(f, 30), Source::Gossip, NOW),
            Err(AnnouncementError::DirectoryFull)
        );
        assert!(tiny.is_empty());
        assert_eq!(tiny.bytes(), 0);

        // A known peer's update that does not fit drops its out-of-date
        // entry rather than keep it.
        assert_eq!(
            dir.apply(large(c, 2, 60), Source::Gossip, NOW),
            Err(AnnouncementError::DirectoryFull)
        );
        assert!(dir.get(&c).is_none());
        assert_eq!(dir.bytes(), large_len);
        assert_counted(&dir);
        // An update that fits replaces the entry's size, not adds to it.
        assert_eq!(
            dir.apply(small(d, 130), Source::Gossip, NOW),
            Err(AnnouncementError::Stale { seq: 1, known: 1 })
        );
        let mut smaller = small(d, 130);
        smaller.seq = 2;
        assert_eq!(dir.apply(smaller, Source::Gossip, NOW), Ok(Update::Changed));
        assert_eq!(dir.bytes(), len);
        assert_counted(&dir);
        // Removal gives the room back.
        dir.remove(&d);
        assert_eq!(dir.bytes(), 0);
    }

    #[test]
    fn the_newest_announcement_may_come_again_unless_it_was_closed() {
        let [a, b] = [(); 2].map(|()| Identity::generate().peer_id());
        let mut d = Directory::new(1, usize::MAX);
        d.apply(announcement(a, 1, &["x n@1.0.0"], 60), Source::Gossip, NOW)
            .unwrap();
        let from_b = announcement(b, 7, &["x m@1.0.0"], 30);
        assert_eq!(
            d.apply(from_b.clone(), Source::Gossip, NOW),
            Err(AnnouncementError::DirectoryFull)
        );
        // Room again: the same announcement, fetched, is kept now.
        d.remove(&a);
        assert_eq!(
            d.apply(from_b.clone(), Source::Fetch, NOW),
            Ok(Update::Added)
        );
        // Held: a second copy is a duplicate.
        assert!(matches!(
            d.apply(from_b.clone(), Source::Fetch, NOW),
            Err(AnnouncementError::Stale { .. })
        ));
        // Removed (it left): not brought back by the same announcement.
        d.remove(&b);
        assert!(matches!(
            d.apply(from_b, Source::Fetch, NOW),
            Err(AnnouncementError::Stale { .. })
        ));
        // Nor is a withdrawal undone.
        d.apply(announcement(a, 2, &["x n@1.0.0"], 60), Source::Gossip, NOW)
            .unwrap();
        d.apply(announcement(a, 3, &[], 60), Source::Gossip, NOW)
            .unwrap();
        assert!(
            d.apply(announcement(a, 3, &["x n@1.0.0"], 60), Source::Gossip, NOW)
                .is_err()
        );
    }

    #[test]
    fn ranks_what_it_knows() {
        let a = Identity::generate().peer_id();
        let b = Identity::generate().peer_id();
        let mut d = Directory::new(10, usize::MAX);
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
        let mut d = Directory::new(10, usize::MAX);
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

    /// Replays over generated runs: while the directory remembers every
    /// peer (fewer peers than it remembers sequence numbers for), a peer's
    /// announcement is taken exactly when its `seq` is newer than every one
    /// taken before, or equal to the newest when that one is not held and
    /// neither withdrew nor was removed since; evictions, expiry, removals
    /// and a full directory change nothing to that. The bounds hold
    /// throughout.
    mod properties {
        use proptest::prelude::*;

        use super::*;

        const PEERS: usize = 5;
        const MAX_PEERS: usize = 3;

        #[derive(Debug, Clone)]
        enum Op {
            /// Peer, seq, which document (0: a withdrawal), TTL in seconds.
            Apply(usize, u64, usize, u32),
            /// Milliseconds that pass, then expiry.
            Expire(u64),
            Remove(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (0..PEERS, 0..6u64, 0..3usize, 1..100u32)
                    .prop_map(|(p, seq, doc, ttl)| Op::Apply(p, seq, doc, ttl)),
                2 => (0..60_000u64).prop_map(Op::Expire),
                1 => (0..PEERS).prop_map(Op::Remove),
            ]
        }

        const DOCUMENTS: [&[&str]; 3] =
            [&[], &["llm/chat a@1.0.0"], &["llm/chat a@1.1.0 +summarize"]];

        /// What a peer's accepted announcements leave behind.
        #[derive(Debug, Clone, Default)]
        struct Peer {
            newest: Option<u64>,
            /// The newest withdrew, or the peer was removed since.
            closed: bool,
        }

        proptest! {
            #[test]
            fn replays_are_refused_and_the_bounds_hold(ops in prop::collection::vec(op(), 1..120)) {
                let ids: Vec<PeerId> = (0..PEERS).map(|_| Identity::generate().peer_id()).collect();
                let mut d = Directory::new(MAX_PEERS, usize::MAX);
                let mut peers = vec![Peer::default(); PEERS];
                let mut now = NOW;
                for op in ops {
                    match op {
                        Op::Apply(p, seq, doc, ttl) => {
                            now += 1;
                            let mut a = announcement(ids[p], seq, DOCUMENTS[doc], ttl);
                            a.issued_at_ms = now;
                            let held = d.get(&ids[p]).is_some();
                            let peer = &mut peers[p];
                            let taken = match peer.newest {
                                None => true,
                                Some(newest) => seq > newest || (seq == newest && !held && !peer.closed),
                            };
                            let result = d.apply(a, Source::Gossip, now);
                            let stale = matches!(result, Err(AnnouncementError::Stale { .. }));
                            prop_assert_eq!(!stale, taken, "seq {} after {:?}: {:?}", seq, peer, result);
                            if taken {
                                let withdrawal = doc == 0;
                                if peer.newest != Some(seq) {
                                    peer.closed = false;
                                }
                                peer.newest = Some(seq);
                                peer.closed |= withdrawal;
                                match result {
                                    Ok(Update::Withdrawn) => prop_assert!(withdrawal),
                                    Ok(update) => {
                                        prop_assert!(!withdrawal);
                                        prop_assert_eq!(update == Update::Added, !held);
                                        prop_assert_eq!(d.get(&ids[p]).map(|e| e.seq), Some(seq));
                                    }
                                    Err(e) => {
                                        prop_assert_eq!(e, AnnouncementError::DirectoryFull);
                                        prop_assert!(d.get(&ids[p]).is_none());
                                    }
                                }
                            }
                        }
                        Op::Expire(dt) => {
                            now += dt;
                            for gone in d.expire(now) {
                                prop_assert!(d.get(&gone).is_none());
                            }
                        }
                        Op::Remove(p) => {
                            if d.remove(&ids[p]).is_some() {
                                peers[p].closed = true;
                            }
                        }
                    }
                    prop_assert!(d.len() <= MAX_PEERS);
                    prop_assert_eq!(d.bytes(), d.entries().map(|e| e.footprint).sum::<usize>());
                }
            }
        }
    }
}
