//! The Kademlia DHT: publishing this node's capabilities as provider
//! records, filtering what peers ask this node to store, and lookups.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use libp2p::kad::store::{MemoryStore, RecordStore};
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult, RecordKey};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::EventLoop;
use super::fetch::Fetch;
use super::gossip::now_ms;
use crate::discovery::{Entry, Source, dht};
use crate::node::fetch::FetchError;
use crate::node::{Event, NodeError};

/// A provider found by a lookup, and where its capability fetch will answer.
pub(crate) type Candidate = (PeerId, oneshot::Receiver<Result<Option<Entry>, FetchError>>);

/// What a lookup hands back once the DHT query is over.
pub(crate) type LookupReply = oneshot::Sender<Result<Looked, NodeError>>;

/// A finished DHT lookup.
#[derive(Debug)]
pub(crate) struct Looked {
    /// The providers found, each with its capability fetch.
    pub(crate) candidates: Vec<Candidate>,
    /// Whether any peer answered: a node that knows no peer yet (a LAN
    /// node before mDNS has found anyone) finishes its lookup at once,
    /// having asked nobody, which proves nothing about who else provides.
    pub(crate) reached: bool,
}

#[derive(Debug)]
struct Lookup {
    reply: LookupReply,
    candidates: Vec<Candidate>,
    seen: HashSet<PeerId>,
}

pub(super) struct State {
    mesh: String,
    /// Keys this node provides now.
    provided: HashSet<RecordKey>,
    /// Publication queries of the current round.
    publishing: HashSet<QueryId>,
    /// Keys whose publication reached at least one peer in this round.
    reached: usize,
    /// The last round reached nobody (no peers yet): publish again when the
    /// routing table gains one.
    republish_on_peer: bool,
    lookups: HashMap<QueryId, Lookup>,
    quota: dht::Quota,
    provider_ttl: Duration,
    max_providers: usize,
}

impl State {
    pub(super) fn new(config: &crate::node::Config) -> Self {
        let l = &config.limits;
        Self {
            mesh: config.mesh.clone(),
            provided: HashSet::new(),
            publishing: HashSet::new(),
            reached: 0,
            republish_on_peer: false,
            lookups: HashMap::new(),
            quota: dht::Quota::new(
                l.max_provider_keys_per_peer,
                kad::K_VALUE.get(),
                l.max_dht_records,
            ),
            provider_ttl: l.provider_ttl,
            max_providers: l.max_lookup_providers,
        }
    }
}

impl EventLoop {
    /// Publishes provider records for the current capabilities, and stops
    /// providing keys no longer offered (remote copies lapse with their TTL).
    pub(super) fn publish_providers(&mut self) {
        let capabilities = self
            .gossip
            .document
            .as_ref()
            .map(|d| d.capabilities().to_vec())
            .unwrap_or_default();
        let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else {
            return;
        };
        let d = &mut self.dht;
        let keys: HashSet<RecordKey> = dht::provider_keys(&d.mesh, &capabilities)
            .into_iter()
            .map(|k| RecordKey::new(&k))
            .collect();
        for gone in d.provided.difference(&keys) {
            kad.stop_providing(gone);
        }
        d.publishing.clear();
        d.reached = 0;
        d.republish_on_peer = false;
        for key in &keys {
            match kad.start_providing(key.clone()) {
                Ok(id) => {
                    d.publishing.insert(id);
                }
                Err(e) => tracing::warn!(error = ?e, "provider record not stored locally"),
            }
        }
        d.provided = keys;
    }

    /// Starts a lookup of `key`; `reply` gets the providers once it is over.
    pub(super) fn start_lookup(&mut self, key: Vec<u8>, reply: LookupReply) {
        let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else {
            let _ = reply.send(Err(NodeError::Config(
                "the DHT is turned off in this node's configuration".to_owned(),
            )));
            return;
        };
        let id = kad.get_providers(RecordKey::new(&key));
        self.dht.lookups.insert(
            id,
            Lookup {
                reply,
                candidates: Vec::new(),
                seen: HashSet::new(),
            },
        );
    }

    pub(super) fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest { request } => self.on_kad_inbound(request),
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            } => match result {
                QueryResult::StartProviding(result) if self.dht.publishing.remove(&id) => {
                    self.on_published(result.is_ok());
                }
                QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders {
                    key,
                    providers,
                })) => {
                    self.on_providers(id, &key, providers);
                    if step.last {
                        self.end_lookup(id, stats.num_successes() > 0);
                    }
                }
                QueryResult::GetProviders(outcome) => {
                    if let Err(e) = outcome {
                        tracing::debug!(error = %e, "DHT lookup ended early");
                    }
                    if step.last {
                        self.end_lookup(id, stats.num_successes() > 0);
                    }
                }
                QueryResult::Bootstrap(Err(e)) => tracing::debug!(error = %e, "DHT bootstrap"),
                _ => {}
            },
            kad::Event::RoutingUpdated { peer, .. } => {
                tracing::trace!(%peer, "DHT routing table updated");
                if self.dht.republish_on_peer {
                    self.publish_providers();
                }
            }
            _ => {}
        }
    }

    fn on_published(&mut self, reached: bool) {
        let d = &mut self.dht;
        d.reached += usize::from(reached);
        if !d.publishing.is_empty() {
            return;
        }
        // Kademlia reports a publication that reached nobody as a success,
        // so also check that the routing table has someone in it.
        let peers = self
            .swarm
            .behaviour_mut()
            .kad
            .as_mut()
            .map_or(0, |k| k.kbuckets().map(|b| b.num_entries()).sum::<usize>());
        let d = &mut self.dht;
        if d.reached == 0 || peers == 0 {
            d.republish_on_peer = true;
            return;
        }
        tracing::debug!(keys = d.reached, "capabilities published in the DHT");
        let _ = self.events.send(Event::PublishedToDht { keys: d.reached });
    }

    fn on_providers(&mut self, id: QueryId, key: &RecordKey, providers: HashSet<PeerId>) {
        let me = *self.swarm.local_peer_id();
        let Some(lookup) = self.dht.lookups.get_mut(&id) else {
            return;
        };
        let mut new = Vec::new();
        for peer in providers {
            if peer != me && lookup.seen.len() < self.dht.max_providers && lookup.seen.insert(peer)
            {
                new.push(peer);
            }
        }
        for peer in new {
            let (tx, rx) = oneshot::channel();
            if let Some(lookup) = self.dht.lookups.get_mut(&id) {
                lookup.candidates.push((peer, rx));
            }
            // Known already, and kept current by its announcements and its
            // TTL: a fetch would bring the same document, one round trip
            // per provider later.
            if let Some(entry) = self.gossip.directory.get(&peer) {
                let _ = tx.send(Ok(Some(entry.clone())));
                continue;
            }
            // A provider record stored here carries the provider's addresses;
            // the query's own addresses are used by the dial too.
            let addrs: Vec<Multiaddr> = self
                .swarm
                .behaviour_mut()
                .kad
                .as_mut()
                .map(|k| {
                    k.store_mut()
                        .providers(key)
                        .into_iter()
                        .filter(|r| r.provider == peer)
                        .flat_map(|r| r.addresses)
                        .collect()
                })
                .unwrap_or_default();
            self.start_fetch(
                peer,
                addrs,
                Fetch {
                    source: Source::Dht,
                    reply: Some(tx),
                    probe: false,
                },
            );
        }
        let enough = self
            .dht
            .lookups
            .get(&id)
            .is_some_and(|l| l.seen.len() >= self.dht.max_providers);
        if enough
            && let Some(mut query) = self
                .swarm
                .behaviour_mut()
                .kad
                .as_mut()
                .and_then(|k| k.query_mut(&id))
        {
            query.finish();
        }
    }

    fn end_lookup(&mut self, id: QueryId, reached: bool) {
        if let Some(lookup) = self.dht.lookups.remove(&id) {
            let _ = lookup.reply.send(Ok(Looked {
                candidates: lookup.candidates,
                reached,
            }));
        }
    }

    /// Fails every lookup, because the node stops.
    pub(super) fn dht_stop(&mut self) {
        for (_, lookup) in self.dht.lookups.drain() {
            let _ = lookup.reply.send(Err(NodeError::Stopped));
        }
    }

    /// Record filtering: values are never stored; a provider record only
    /// under a well-formed key of this mesh and within its provider's quota.
    fn on_kad_inbound(&mut self, request: kad::InboundRequest) {
        match request {
            kad::InboundRequest::AddProvider {
                record: Some(record),
            } => {
                if !dht::is_provider_key(&self.dht.mesh, record.key.as_ref()) {
                    tracing::debug!(provider = %record.provider, "provider record under a foreign key refused");
                    return;
                }
                let ttl_ms = u64::try_from(self.dht.provider_ttl.as_millis()).unwrap_or(u64::MAX);
                let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else {
                    return;
                };
                let provider = record.provider;
                if !store(
                    kad.store_mut(),
                    &mut self.dht.quota,
                    record,
                    now_ms(),
                    ttl_ms,
                ) {
                    tracing::debug!(%provider, "provider record refused: over its quota");
                }
            }
            kad::InboundRequest::PutRecord { source, .. } => {
                tracing::debug!(%source, "DHT value refused: Ecco stores provider records only");
            }
            _ => {}
        }
    }

    /// Drops the provider records that have expired from the store.
    pub(super) fn dht_prune(&mut self) {
        let expired = self.dht.quota.prune(now_ms());
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            for (provider, key) in expired {
                kad.store_mut()
                    .remove_provider(&RecordKey::new(&key), &provider);
            }
        }
    }

    /// Tells the DHT where a peer listens, if it speaks this mesh's DHT.
    /// Its loopback addresses are left out when it has others (as Ecco
    /// advertises its own): the DHT hands addresses on, and a loopback one
    /// would send a third party to its own host.
    pub(super) fn dht_add_addresses(
        &mut self,
        peer: PeerId,
        protocols: &[libp2p::StreamProtocol],
        addrs: &[Multiaddr],
    ) {
        let kad_protocol = self.protocols_kad.clone();
        let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else {
            return;
        };
        if !protocols.contains(&kad_protocol) {
            return;
        }
        for addr in routable(addrs) {
            kad.add_address(&peer, addr.clone());
        }
    }
}

/// `addrs` without the loopback ones, unless there are only loopback ones.
fn routable(addrs: &[Multiaddr]) -> impl Iterator<Item = &Multiaddr> {
    let only_loopback = addrs.iter().all(super::is_loopback);
    addrs
        .iter()
        .filter(move |a| only_loopback || !super::is_loopback(a))
}

/// Stores another peer's provider `record` if its quota allows, after
/// dropping the records that have lapsed by `now_ms`: libp2p's store
/// removes them only when someone asks for their key, so without this
/// they would hold their room until then.
fn store(
    store: &mut MemoryStore,
    quota: &mut dht::Quota,
    mut record: kad::ProviderRecord,
    now_ms: u64,
    ttl_ms: u64,
) -> bool {
    for (provider, key) in quota.prune(now_ms) {
        store.remove_provider(&RecordKey::new(&key), &provider);
    }
    let (provider, key) = (record.provider, record.key.to_vec());
    if !quota.admit(provider, &key, now_ms.saturating_add(ttl_ms)) {
        return false;
    }
    dht::trim_addresses(&mut record.addresses);
    if let Err(e) = store.add_provider(record) {
        tracing::debug!(error = ?e, "provider record not stored");
        quota.release(provider, &key);
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_reach_the_dht_only_when_there_is_nothing_else() {
        let addr = |s: &str| s.parse::<Multiaddr>().unwrap();
        let lan = addr("/ip4/10.0.0.5/tcp/4001");
        let loopback = addr("/ip4/127.0.0.1/tcp/4001");
        let loopback6 = addr("/ip6/::1/tcp/4001");
        let mixed = [loopback.clone(), lan.clone(), loopback6.clone()];
        assert_eq!(routable(&mixed).collect::<Vec<_>>(), vec![&lan]);
        let only = [loopback.clone(), loopback6.clone()];
        assert_eq!(
            routable(&only).collect::<Vec<_>>(),
            vec![&loopback, &loopback6]
        );
        let memory = [addr("/memory/7")];
        assert_eq!(routable(&memory).count(), 1, "not loopback: kept");
        assert_eq!(routable(&[]).count(), 0);
    }
    use crate::Identity;

    fn record(key: &[u8], provider: PeerId) -> kad::ProviderRecord {
        kad::ProviderRecord::new(RecordKey::new(&key), provider, Vec::new())
    }

    #[test]
    fn expired_records_leave_the_store() {
        let me = Identity::generate().peer_id();
        let (a, b) = (
            Identity::generate().peer_id(),
            Identity::generate().peer_id(),
        );
        let mut kv = MemoryStore::new(me);
        let mut quota = dht::Quota::new(4, 4, 4);
        assert!(store(&mut kv, &mut quota, record(b"k1", a), 0, 100));
        assert!(store(&mut kv, &mut quota, record(b"k2", a), 50, 100));
        assert_eq!(kv.providers(&RecordKey::new(&b"k1")).len(), 1);
        // At 100, a's k1 has lapsed: storing anything drops it.
        assert!(store(&mut kv, &mut quota, record(b"k3", b), 100, 100));
        assert!(kv.providers(&RecordKey::new(&b"k1")).is_empty());
        assert_eq!(kv.providers(&RecordKey::new(&b"k2")).len(), 1);
        assert_eq!(quota.len(), 2);
    }

    #[test]
    fn a_record_the_store_refuses_is_not_counted() {
        let me = Identity::generate().peer_id();
        let a = Identity::generate().peer_id();
        let config = kad::store::MemoryStoreConfig {
            max_provided_keys: 1,
            ..Default::default()
        };
        let mut kv = MemoryStore::with_config(me, config);
        let mut quota = dht::Quota::new(4, 4, 4);
        assert!(store(&mut kv, &mut quota, record(b"k1", a), 0, 100));
        assert!(!store(&mut kv, &mut quota, record(b"k2", a), 0, 100));
        assert_eq!(quota.held_by(&a), 1);
    }

    #[test]
    fn the_addresses_of_a_stored_record_are_trimmed() {
        let me = Identity::generate().peer_id();
        let a = Identity::generate().peer_id();
        let mut kv = MemoryStore::new(me);
        let mut quota = dht::Quota::new(4, 4, 4);
        let addrs = (1..50)
            .map(|i| format!("/ip4/10.0.0.1/tcp/{i}").parse().unwrap())
            .collect();
        let r = kad::ProviderRecord::new(RecordKey::new(&b"k"), a, addrs);
        assert!(store(&mut kv, &mut quota, r, 0, 100));
        let held = kv.providers(&RecordKey::new(&b"k"));
        assert_eq!(held[0].addresses.len(), dht::MAX_RECORD_ADDRESSES);
    }
}
