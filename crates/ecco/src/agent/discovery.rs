//! The discovery cascade: the local directory first, then a DHT lookup and
//! a registry search alongside whatever the mesh announces meanwhile, until
//! enough agents are known or the wait is over.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ecco_core::Query;
use libp2p::Multiaddr;
use tokio::sync::broadcast::error::RecvError;

use super::{Agent, Ranked, lock};
use crate::PeerId;
use crate::node::{Event, NodeError};

/// What a discovery waits for: see [`Agent::discover_until`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Discovery {
    /// Peers with a match that end the wait.
    pub(crate) want: usize,
    /// Peers that end it once the lookup is over.
    pub(crate) enough: usize,
    /// Whether the wait lasts until the lookup is over.
    pub(crate) finish_lookup: bool,
    /// Whether a lookup of the same query that finished lately
    /// ([`super::lookups::REUSE`]) stands for a new one.
    pub(crate) reuse_lookup: bool,
    /// The longest wait.
    pub(crate) wait: Duration,
}

impl Discovery {
    /// Until `want` peers are known: [`Agent::discover`].
    fn first(want: usize, wait: Duration) -> Self {
        Self {
            want,
            enough: want,
            finish_lookup: false,
            reuse_lookup: true,
            wait,
        }
    }

    /// Until the lookup is over and has found someone, or, with mDNS on,
    /// the whole wait: [`Agent::discover_all`].
    fn every(mdns: bool, wait: Duration) -> Self {
        Self {
            want: usize::MAX,
            // A LAN peer answers mDNS when it answers: nothing tells that
            // all of them have, so no count ends the wait.
            enough: if mdns { usize::MAX } else { 1 },
            finish_lookup: true,
            reuse_lookup: true,
            wait,
        }
    }

    /// Whether `found` peers end the wait, the lookup standing as `lookup`
    /// says.
    fn done(&self, found: usize, lookup: Lookup) -> bool {
        let over = lookup == Lookup::Over;
        // With nothing to look up, what is known is what there is to wait
        // for: `want` ends the wait even for `finish_lookup`.
        (found >= self.want && (over || lookup == Lookup::Impossible || !self.finish_lookup))
            || (over && found >= self.enough.max(1))
    }
}

/// Where the DHT lookup and the registry search stand, as
/// [`Discovery::done`] weighs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// Neither can be asked (no DHT, or the pattern `*`, and no
    /// registry): only announcements and mDNS bring peers.
    Impossible,
    /// Under way, or over without having reached anyone (a node that knows
    /// no peer yet, as a LAN node before mDNS has found any): either way it
    /// has not told who else provides.
    Pending,
    /// Over, having asked the mesh, or the registry, for every provider.
    Over,
}

/// How many distinct peers `ranked` holds offers of.
fn peers(ranked: &[Ranked]) -> usize {
    ranked.iter().map(|r| r.peer).collect::<HashSet<_>>().len()
}

impl Agent {
    /// The discovery cascade: the local directory first; while it holds
    /// matches from fewer than `want` peers, a DHT lookup and whatever the
    /// mesh announces meanwhile, for at most `wait` (never a fixed sleep:
    /// it returns as soon as there are enough). With a registry, its search
    /// runs alongside the DHT lookup: its hits are hints (peer and
    /// addresses), made matchable by fetching each peer's signed capability
    /// document from the peer itself.
    pub async fn discover(
        &self,
        query: &Query,
        want: usize,
        wait: Duration,
    ) -> Result<Vec<Ranked>, NodeError> {
        self.discover_until(query, Discovery::first(want, wait))
            .await
    }

    /// Every agent that matches `query` as far as the mesh can tell, best
    /// first, within at most `wait`: a listing, such as `ecco discover`
    /// prints.
    ///
    /// Unlike [`discover`](Self::discover), which ends as soon as enough
    /// agents are known, this waits for the DHT lookup and the registry
    /// search to be over (they ask the mesh for every provider), then ends
    /// once at least one agent matches. It waits the whole `wait` while
    /// more may come and nothing could tell that all have: with mDNS on
    /// (LAN peers answer when they answer), with no lookup to make (neither
    /// the DHT nor a registry, or the pattern `*`), or while nothing
    /// matches.
    pub async fn discover_all(
        &self,
        query: &Query,
        wait: Duration,
    ) -> Result<Vec<Ranked>, NodeError> {
        let discovery = Discovery::every(self.inner.mdns, wait);
        self.discover_until(query, discovery).await
    }

    /// [`discover`](Self::discover), as `discovery` says: with
    /// `finish_lookup`, not done before the DHT lookup and the registry
    /// search are over (or `wait` has passed) even with `want` peers known,
    /// as `all` asks. Once that lookup is over, `enough` peers end the wait
    /// even if fewer than `want`: the lookup asked the mesh for every
    /// provider, so waiting longer would mostly wait for peers that do not
    /// exist.
    pub(crate) async fn discover_until(
        &self,
        query: &Query,
        discovery: Discovery,
    ) -> Result<Vec<Ranked>, NodeError> {
        let Discovery {
            want,
            enough,
            finish_lookup,
            reuse_lookup,
            wait,
        } = discovery;
        let mut events = self.inner.node.subscribe();
        let ranked = self.ranked(query).await?;
        if discovery.done(peers(&ranked), Lookup::Pending) || wait.is_zero() {
            return Ok(ranked);
        }
        let deadline = tokio::time::Instant::now() + wait;
        let node = self.inner.node.clone();
        let can_look_up = self.inner.dht && crate::discovery::dht::lookup_key("", query).is_some();
        let dht_lookup = async move {
            if !can_look_up {
                return false;
            }
            match node.fetch_providers(query).await {
                Ok(reached) => reached,
                Err(e) => {
                    tracing::debug!(error = %e, "DHT lookup failed");
                    false
                }
            }
        };
        // For `all`, as many registry hits as one page holds.
        let hits = if finish_lookup { usize::MAX } else { want };
        let lookup = async {
            let (dht, registry) = futures::join!(dht_lookup, self.search_registry(query, hits));
            dht || registry
        };
        tokio::pin!(lookup);
        let mut state = if can_look_up || self.inner.registry.is_some() {
            Lookup::Pending
        } else {
            Lookup::Impossible
        };
        // A lookup of the same query that finished lately stands for this
        // one (what it found is in the directory), unless too few agents
        // are known: then a new one may find those that came since.
        let key = query.to_string();
        let found = peers(&ranked);
        if state == Lookup::Pending
            && reuse_lookup
            && found >= enough.max(1)
            && lock(&self.inner.lookups).is_recent(&key, Instant::now())
        {
            state = Lookup::Over;
        }
        if discovery.done(found, state) {
            return Ok(ranked);
        }
        let mut lookup_running = state == Lookup::Pending;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                asked = &mut lookup, if lookup_running => {
                    lookup_running = false;
                    // One that asked nobody leaves the state pending: only
                    // announcements and mDNS can bring peers now.
                    if asked {
                        state = Lookup::Over;
                        lock(&self.inner.lookups).finished(key.clone(), Instant::now());
                    }
                }
                event = events.recv() => match event {
                    Ok(Event::CapabilitiesLearned(_))
                    | Err(RecvError::Lagged(_)) => {}
                    Ok(_) => continue,
                    Err(RecvError::Closed) => break,
                },
            }
            let ranked = self.ranked(query).await?;
            if discovery.done(peers(&ranked), state) {
                return Ok(ranked);
            }
        }
        self.ranked(query).await
    }

    /// The registry's matches for `query`, learned from the peers
    /// themselves; says whether the registry answered.
    async fn search_registry(&self, query: &Query, want: usize) -> bool {
        let Some(link) = &self.inner.registry else {
            return false;
        };
        let per_page = u32::try_from(want.clamp(1, 100)).unwrap_or(100);
        let hits = match link.client.search(&query.to_string(), 1, per_page).await {
            Ok(page) => page.items,
            Err(e) => {
                tracing::debug!(error = %e, "registry search failed");
                return false;
            }
        };
        let me = self.peer_id();
        let fetches = hits.into_iter().filter_map(|hit| {
            let peer = hit.peer_id.parse::<PeerId>().ok().filter(|p| *p != me)?;
            let node = self.inner.node.clone();
            Some(async move {
                for addr in hit
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<Multiaddr>().ok())
                {
                    let _ = node.add_address(peer, addr).await;
                }
                if let Err(e) = node.fetch_capabilities(peer).await {
                    tracing::debug!(%peer, error = %e, "registry hit unreachable");
                }
            })
        });
        futures::future::join_all(fetches).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Lookup::{Impossible, Over, Pending};
    use super::*;

    const WAIT: Duration = Duration::from_secs(3);

    #[test]
    fn discover_ends_with_the_peers_it_wants() {
        let d = Discovery::first(2, WAIT);
        for lookup in [Pending, Over, Impossible] {
            assert!(d.done(2, lookup), "{lookup:?}");
            // Fewer are not enough, lookup or not: the caller asked for two.
            assert!(!d.done(1, lookup), "{lookup:?}");
        }
    }

    #[test]
    fn a_listing_ends_once_the_lookup_has_asked_the_mesh_and_found_someone() {
        let d = Discovery::every(false, WAIT);
        assert!(!d.done(5, Pending), "the lookup may find more");
        assert!(d.done(1, Over));
        assert!(d.done(5, Over));
        assert!(!d.done(0, Over), "nothing yet: keep waiting");
        // Nothing to ask: only announcements bring more.
        assert!(!d.done(5, Impossible));
    }

    #[test]
    fn a_listing_with_mdns_waits_the_whole_time() {
        let d = Discovery::every(true, WAIT);
        for found in [0, 1, 1000] {
            for lookup in [Pending, Over, Impossible] {
                assert!(!d.done(found, lookup), "{found} {lookup:?}");
            }
        }
    }

    /// What `all` asks (see `Ask::send`): the lookup first, then whoever
    /// is known.
    #[test]
    fn all_waits_for_a_lookup_that_asked_the_mesh() {
        let all = Discovery {
            want: 1,
            enough: 1,
            finish_lookup: true,
            reuse_lookup: true,
            wait: WAIT,
        };
        // A lookup that reached nobody (a LAN node before mDNS has found
        // its neighbours) does not make the first neighbour learned all.
        assert!(!all.done(1, Pending));
        assert!(all.done(1, Over));
        assert!(!all.done(0, Over));
        // With nothing to look up, the agents known are all there is.
        assert!(all.done(1, Impossible));
    }
}
