//! The Kademlia DHT on the memory transport: capabilities found through the
//! DHT alone, and a node's store that peers cannot stuff.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{WAIT, caps, wait_for};
use ecco::discovery::{Entry, Source, dht};
use ecco::node::{Config, Event, Node};
use ecco::{Identity, PeerId};
use futures::StreamExt;
use libp2p::kad::{self, GetProvidersOk, QueryResult, RecordKey, store::MemoryStore};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, StreamProtocol, Swarm, SwarmBuilder};

/// Only the DHT: no gossip announcements, no fetch on connect, no mDNS.
fn dht_only() -> Config {
    let mut config = Config::memory();
    config.discovery.announcements = false;
    config
}

/// What `node`'s directory holds of `peer`.
async fn entry_of(node: &Node, peer: PeerId) -> Option<Entry> {
    node.directory()
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.peer == peer)
}

async fn full_addr(node: &Node) -> Multiaddr {
    let addr = node.listen_addrs().await.unwrap().remove(0);
    addr.with(Protocol::P2p(node.peer_id()))
}

#[tokio::test]
async fn a_capability_is_found_through_the_dht_alone_across_a_chain() {
    // n0 - n1 - ... - n9: each node knows only the one before it.
    let mut chain: Vec<Node> = Vec::new();
    for _ in 0..10 {
        let mut config = dht_only();
        if let Some(prev) = chain.last() {
            config.bootstrap = vec![full_addr(prev).await];
        }
        let (node, _) = Node::spawn(&Identity::generate(), config).await.unwrap();
        chain.push(node);
    }
    let provider = chain[9].clone();
    let mut published = provider.subscribe();
    provider
        .set_capabilities(caps(&[
            "translate/text babel@1.0.0 +legal price=0.01",
            "ocr/image lens@2.0.0",
        ]))
        .await
        .unwrap();
    wait_for(&mut published, |e| {
        matches!(e, Event::PublishedToDht { .. }).then_some(())
    })
    .await;

    // The seeker knows only the far end of the chain.
    let mut config = dht_only();
    config.bootstrap = vec![full_addr(&chain[0]).await];
    let (seeker, _) = Node::spawn(&Identity::generate(), config).await.unwrap();
    let query = "translate/text +legal price<=0.05".parse().unwrap();
    assert!(
        seeker.find(query).await.unwrap().is_empty(),
        "nothing is known before the lookup"
    );

    let query = "translate/text +legal price<=0.05".parse().unwrap();
    let found = seeker.lookup(&query).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].peer, provider.peer_id());
    assert_eq!(found[0].capability.name(), "babel");
    let entry = entry_of(&seeker, provider.peer_id()).await.unwrap();
    assert_eq!(entry.source, Source::Dht);
    assert_eq!(
        entry.capabilities.len(),
        2,
        "the whole document was fetched"
    );

    // A wildcard query finds it through the prefix key.
    let below = seeker.lookup(&"ocr/*".parse().unwrap()).await.unwrap();
    assert_eq!(below.len(), 1);
    assert_eq!(below[0].capability.name(), "lens");

    // What nobody provides is not found, and `*` cannot be looked up.
    assert!(
        seeker
            .lookup(&"audio/tts".parse().unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(seeker.lookup(&"*".parse().unwrap()).await.is_err());
}

/// A bare Kademlia peer speaking the mesh's DHT protocol, to play a peer
/// that tries to stuff a node's store.
async fn raw_kad_peer() -> Swarm<kad::Behaviour<MemoryStore>> {
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(common::memory_transport)
        .unwrap()
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            let config = kad::Config::new(StreamProtocol::new("/ecco/ecco/kad/1.0.0"));
            kad::Behaviour::with_config(peer, MemoryStore::new(peer), config)
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build();
    swarm.behaviour_mut().set_mode(Some(kad::Mode::Server));
    swarm
        .listen_on(Multiaddr::empty().with(Protocol::Memory(0)))
        .unwrap();
    // Provider records carry their provider's external addresses.
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            swarm.add_external_address(address);
            return swarm;
        }
    }
}

/// Drives `swarm` until a query of the wanted kind ends; returns its result.
async fn finish<T>(
    swarm: &mut Swarm<kad::Behaviour<MemoryStore>>,
    mut done: impl FnMut(QueryResult, bool) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                result, step, ..
            }) = swarm.select_next_some().await
                && let Some(t) = done(result, step.last)
            {
                return t;
            }
        }
    })
    .await
    .expect("the DHT query did not end in time")
}

/// Asks the node, through `asker`, who provides `key`.
async fn providers(asker: &mut Swarm<kad::Behaviour<MemoryStore>>, key: &[u8]) -> Vec<PeerId> {
    asker.behaviour_mut().get_providers(RecordKey::new(&key));
    let mut found = Vec::new();
    finish(asker, |result, last| {
        if let QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders { providers, .. })) =
            result
        {
            found.extend(providers);
        }
        last.then_some(())
    })
    .await;
    found
}

#[tokio::test]
async fn peers_cannot_stuff_a_nodes_store() {
    let mut config = dht_only();
    config.limits.max_provider_keys_per_peer = 3;
    let (node, _) = Node::spawn(&Identity::generate(), config).await.unwrap();
    let node_addr = node.listen_addrs().await.unwrap().remove(0);

    let mut stuffer = raw_kad_peer().await;
    let mut asker = raw_kad_peer().await;
    for s in [&mut stuffer, &mut asker] {
        s.behaviour_mut()
            .add_address(&node.peer_id(), node_addr.clone());
    }
    let kind = |i: usize| ecco::CapabilityType::new(format!("spam/k{i}")).unwrap();
    let mut keys: Vec<Vec<u8>> = (0..6).map(|i| dht::type_key("ecco", &kind(i))).collect();
    keys.push(b"/ecco/ecco/provides/NOT A TYPE".to_vec());
    keys.push(dht::type_key("other-mesh", &kind(0)));
    for key in &keys {
        stuffer
            .behaviour_mut()
            .start_providing(RecordKey::new(key))
            .unwrap();
        finish(&mut stuffer, |result, last| {
            matches!(result, QueryResult::StartProviding(_))
                .then_some(())
                .filter(|()| last)
        })
        .await;
    }
    // Values are never stored either.
    let value_key = RecordKey::new(&b"/ecco/ecco/provides/x");
    stuffer
        .behaviour_mut()
        .put_record(
            kad::Record::new(value_key.clone(), vec![1; 64]),
            kad::Quorum::One,
        )
        .unwrap();
    finish(&mut stuffer, |result, last| {
        matches!(result, QueryResult::PutRecord(_))
            .then_some(())
            .filter(|()| last)
    })
    .await;
    asker.behaviour_mut().get_record(value_key);
    let found_value = finish(&mut asker, |result, last| match result {
        QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(_))) => Some(true),
        QueryResult::GetRecord(_) if last => Some(false),
        _ => None,
    })
    .await;
    assert!(!found_value, "the node must not store values");

    let stuffer_id = *stuffer.local_peer_id();
    // Gone, so that only the node can tell the asker about its records.
    drop(stuffer);
    let mut held = 0;
    for (i, key) in keys.iter().enumerate() {
        let found = providers(&mut asker, key).await;
        if found.contains(&stuffer_id) {
            assert!(
                i < 6,
                "a record under a foreign or malformed key was stored"
            );
            held += 1;
        }
    }
    assert_eq!(held, 3, "one peer holds at most its quota of keys");
}

/// Publishes `keys` from `swarm`, one query after another.
async fn provide_all(swarm: &mut Swarm<kad::Behaviour<MemoryStore>>, keys: &[Vec<u8>]) {
    for key in keys {
        swarm
            .behaviour_mut()
            .start_providing(RecordKey::new(key))
            .unwrap();
        finish(swarm, |result, last| {
            matches!(result, QueryResult::StartProviding(_))
                .then_some(())
                .filter(|()| last)
        })
        .await;
    }
}

/// Drives `swarm` a little longer: a publication's last step is reported
/// when its messages are handed to the connection, not yet sent.
async fn settle(swarm: &mut Swarm<kad::Behaviour<MemoryStore>>) {
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            swarm.select_next_some().await;
        }
    })
    .await;
}

/// Asks `node`'s store, through `asker`, until `provider` is among the
/// providers of `key`, or `WAIT` has passed; whether it was.
async fn eventually_provides(
    asker: &mut Swarm<kad::Behaviour<MemoryStore>>,
    key: &[u8],
    provider: PeerId,
) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if providers(asker, key).await.contains(&provider) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test]
async fn others_records_do_not_crowd_out_a_nodes_own() {
    let (node, _) = Node::spawn(&Identity::generate(), dht_only())
        .await
        .unwrap();
    let node_addr = node.listen_addrs().await.unwrap().remove(0);
    let mut stuffer = raw_kad_peer().await;
    stuffer
        .behaviour_mut()
        .add_address(&node.peer_id(), node_addr.clone());
    // One peer fills its whole share of the node's store.
    let keys: Vec<Vec<u8>> = (0..dht::MAX_PUBLISHED_KEYS)
        .map(|i| {
            dht::type_key(
                "ecco",
                &ecco::CapabilityType::new(format!("spam/k{i}")).unwrap(),
            )
        })
        .collect();
    provide_all(&mut stuffer, &keys).await;
    settle(&mut stuffer).await;
    let stuffer_id = *stuffer.local_peer_id();
    drop(stuffer);

    node.set_capabilities(caps(&["translate/text babel@1.0.0"]))
        .await
        .unwrap();
    let mut asker = raw_kad_peer().await;
    asker
        .behaviour_mut()
        .add_address(&node.peer_id(), node_addr);
    assert!(
        eventually_provides(&mut asker, &keys[keys.len() - 1], stuffer_id).await,
        "the stuffer's records fill its share of the store"
    );
    let own = dht::type_key(
        "ecco",
        &ecco::CapabilityType::new("translate/text").unwrap(),
    );
    assert!(
        eventually_provides(&mut asker, &own, node.peer_id()).await,
        "the node's own record must be stored despite the stuffer"
    );
}

#[tokio::test]
async fn a_nodes_own_records_do_not_crowd_out_others() {
    let (node, _) = Node::spawn(&Identity::generate(), dht_only())
        .await
        .unwrap();
    let node_addr = node.listen_addrs().await.unwrap().remove(0);
    // As many keys as a node publishes at most.
    let many: Vec<ecco::Capability> = (0..60)
        .map(|i| {
            ecco::Capability::builder(format!("t{i}/x"), "n", "1.0.0")
                .features((0..10).map(|f| format!("f{f}")))
                .build()
                .unwrap()
        })
        .collect();
    assert_eq!(
        dht::provider_keys("ecco", &many).len(),
        dht::MAX_PUBLISHED_KEYS
    );
    node.set_capabilities(many).await.unwrap();

    let mut other = raw_kad_peer().await;
    other
        .behaviour_mut()
        .add_address(&node.peer_id(), node_addr.clone());
    let key = dht::type_key("ecco", &ecco::CapabilityType::new("ocr/image").unwrap());
    provide_all(&mut other, std::slice::from_ref(&key)).await;
    settle(&mut other).await;
    let other_id = *other.local_peer_id();
    // Gone, so that only the node can tell the asker about its record.
    drop(other);
    let mut asker = raw_kad_peer().await;
    asker
        .behaviour_mut()
        .add_address(&node.peer_id(), node_addr);
    assert!(
        eventually_provides(&mut asker, &key, other_id).await,
        "another peer's record must be stored beside the node's own"
    );
}

/// A lookup does not fetch again a provider its directory holds (kept
/// current by announcements): that would cost a round trip per provider
/// on every lookup for the same document.
#[tokio::test]
async fn a_lookup_does_not_fetch_again_a_provider_it_knows() {
    // Without announcements, so that only fetches change the directory.
    let (provider, _) = Node::spawn(&Identity::generate(), dht_only())
        .await
        .unwrap();
    let mut published = provider.subscribe();
    provider
        .set_capabilities(caps(&["translate/text babel@1.0.0 +legal"]))
        .await
        .unwrap();
    let mut config = dht_only();
    config.bootstrap = vec![full_addr(&provider).await];
    let (seeker, _) = Node::spawn(&Identity::generate(), config).await.unwrap();
    wait_for(&mut published, |e| {
        matches!(e, Event::PublishedToDht { .. }).then_some(())
    })
    .await;
    let before = seeker
        .fetch_capabilities(provider.peer_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.source, Source::Fetch);
    // Past the second within which a provider answers fetches with the
    // announcement it last signed: a fetch now would bring a newer one.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let found = seeker
        .lookup(&"translate/text +legal".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let after = entry_of(&seeker, provider.peer_id()).await.unwrap();
    assert_eq!(
        (after.seq, after.source, after.last_seen_ms),
        (before.seq, before.source, before.last_seen_ms),
        "fetched again"
    );
}
