//! Agents with a registry: registration and heartbeats, the registry step of
//! the discovery cascade, receipts and feedback, and a registry that is down.

#![allow(clippy::unwrap_used)]

use std::num::NonZeroUsize;
use std::time::Duration;

use ecco::agent::{Agent, Call};
use ecco::node::{Answer, Config};
use ecco::registry::Client;
use ecco::{Identity, Query, Selection};
use ecco_registry::Config as RegistryConfig;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// A node that learns nothing on its own: no bootstrap, no DHT, no
/// announcements, no mDNS. Only the registry can introduce peers.
fn isolated() -> Config {
    let mut config = Config::memory();
    config.discovery.dht = false;
    config.discovery.announcements = false;
    config
}

async fn provider(registry: &str, heartbeat: Duration) -> Agent {
    Agent::builder()
        .config(isolated())
        .registry(registry)
        .name("capitals")
        .registry_heartbeat(heartbeat)
        .capability("geo/capital atlas@1.0.0".parse().unwrap())
        .handler("geo/capital", |_call: Call| async {
            Ok(Answer::new(json!("Paris")))
        })
        .spawn()
        .await
        .unwrap()
}

/// A registry, a client that reads it, and a provider registered with it.
async fn registered(heartbeat: Duration) -> (ecco_registry::Running, Client, Agent) {
    let registry = ecco_registry::serve(RegistryConfig::ephemeral())
        .await
        .unwrap();
    let reader = Client::new(&registry.url(), Identity::generate()).unwrap();
    let provider = registered_provider(&registry, &reader, heartbeat).await;
    (registry, reader, provider)
}

/// A provider, once `reader` sees it registered.
async fn registered_provider(
    registry: &ecco_registry::Running,
    reader: &Client,
    heartbeat: Duration,
) -> Agent {
    let provider = provider(&registry.url(), heartbeat).await;
    let id = provider.peer_id();
    eventually("the registration", || async {
        reader.agent(&id).await.is_ok()
    })
    .await;
    provider
}

/// A client that knows no peer: only the registry can introduce them.
async fn registry_client(registry: &ecco_registry::Running) -> Agent {
    Agent::builder()
        .config(isolated())
        .registry(registry.url())
        .spawn()
        .await
        .unwrap()
}

/// Polls `check` until it holds or `WAIT` passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_agent_registers_heartbeats_and_is_found_and_rated_through_the_registry() {
    let (registry, reader, provider) = registered(Duration::from_millis(100)).await;
    let id = provider.peer_id();
    let first = reader.agent(&id).await.unwrap();
    assert_eq!(first.name, "capitals");
    eventually("a heartbeat", || async {
        reader
            .agent(&id)
            .await
            .is_ok_and(|d| d.last_seen_ms > first.last_seen_ms)
    })
    .await;

    // The client knows no peer: only the registry can introduce the provider.
    let client = registry_client(&registry).await;
    let answered = client
        .query("geo/capital".parse::<Query>().unwrap())
        .select(Selection::TopN(NonZeroUsize::MIN))
        .discovery_wait(WAIT)
        .send(json!({"country": "France"}))
        .await
        .unwrap();
    assert_eq!(answered.asked, [id]);
    assert_eq!(answered.receipts.len(), 1);
    let receipt = &answered.receipts[0];
    assert_eq!(receipt.agent, id.to_base58());
    assert_eq!(receipt.client, client.peer_id().to_base58());

    client.feedback(receipt, true, 12, Some(5)).await.unwrap();
    let rated = reader.agent(&id).await.unwrap();
    assert!(rated.reputation.score > 50.0, "{:?}", rated.reputation);
    assert_eq!(rated.reputation.breakdown.feedback, 1);

    // Shutting down deregisters.
    provider.shutdown().await;
    assert!(reader.agent(&id).await.is_err());
    client.shutdown().await;
    registry.shutdown().await;
}

#[tokio::test]
async fn new_capabilities_are_registered_again() {
    let (registry, reader, provider) = registered(Duration::from_secs(30)).await;
    let id = provider.peer_id();
    provider
        .add_capability("geo/river seine@1.0.0".parse().unwrap())
        .await
        .unwrap();
    eventually("the new capability", || async {
        reader
            .agent(&id)
            .await
            .is_ok_and(|d| d.capabilities.capabilities().len() == 2)
    })
    .await;
    provider.shutdown().await;
    registry.shutdown().await;
}

#[tokio::test]
async fn a_new_listen_address_reaches_the_registry_with_the_next_heartbeat() {
    let (registry, reader, provider) = registered(Duration::from_millis(100)).await;
    let id = provider.peer_id();
    let before = reader.agent(&id).await.unwrap().addresses;
    assert_eq!(before.len(), 1, "{before:?}");
    let added = provider
        .node()
        .listen_on("/memory/0".parse().unwrap())
        .await
        .unwrap();
    assert!(!before.contains(&added.to_string()));
    eventually("the new address", || async {
        reader
            .agent(&id)
            .await
            .is_ok_and(|d| d.addresses.contains(&added.to_string()) && d.addresses.len() == 2)
    })
    .await;
    provider.shutdown().await;
    registry.shutdown().await;
}

#[tokio::test]
async fn a_registry_that_is_down_never_breaks_the_mesh() {
    // Nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let provider = provider(&dead, Duration::from_millis(50)).await;
    let mut config = Config::memory();
    config.bootstrap = provider.addresses().await.unwrap();
    let client = Agent::builder()
        .config(config)
        .registry(dead)
        .spawn()
        .await
        .unwrap();
    let answered = client
        .query("geo/capital".parse::<Query>().unwrap())
        .select(Selection::TopN(NonZeroUsize::MIN))
        .discovery_wait(WAIT)
        .send(json!({}))
        .await
        .unwrap();
    assert_eq!(answered.consensus.answer, Some(json!("Paris")));
    let refused = client.feedback(&answered.receipts[0], true, 1, None).await;
    assert!(refused.is_err());
    // Shutdown does not hang on the missing registry.
    tokio::time::timeout(Duration::from_secs(10), provider.shutdown())
        .await
        .unwrap();
    client.shutdown().await;
}

#[tokio::test]
async fn an_invalid_registry_url_is_refused_at_spawn() {
    let e = Agent::builder()
        .config(Config::memory())
        .registry("ftp://nope")
        .spawn()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("invalid registry URL"), "{e}");
}

#[tokio::test]
async fn a_bad_registry_root_certificate_stops_the_builder_with_a_clear_error() {
    let spawned = Agent::builder()
        .config(Config::loopback())
        .registry("https://127.0.0.1:1")
        .registry_root_certificates("not a certificate")
        .spawn()
        .await;
    match spawned {
        Err(ecco::agent::AgentError::Registry(
            ecco::registry::ClientError::InvalidCertificate(why),
        )) => assert!(why.contains("PEM"), "{why}"),
        Err(other) => panic!("expected InvalidCertificate, got {other}"),
        Ok(_) => panic!("an agent spawned with an unusable root certificate"),
    }
}

/// Registry searches answered so far (`GET /v1/agents`).
fn searches(registry: &ecco_registry::Running) -> u64 {
    registry
        .app()
        .metrics()
        .render()
        .lines()
        .filter(|l| l.contains("http_requests_total{"))
        .filter(|l| l.contains("method=\"GET\"") && l.contains("route=\"/v1/agents\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A query that asks every agent (`select(all)`) waits for the lookups (the
/// registry search, the DHT walk); the same query again soon after reuses
/// them instead: what they found is in the directory.
#[tokio::test]
async fn a_repeated_query_reuses_its_recent_lookup() {
    let (registry, _reader, provider) = registered(Duration::from_secs(60)).await;
    let client = registry_client(&registry).await;
    for _ in 0..3 {
        let answered = client
            .query("geo/capital".parse::<Query>().unwrap())
            .select(Selection::All)
            .discovery_wait(WAIT)
            .send(json!({"country": "France"}))
            .await
            .unwrap();
        assert_eq!(answered.asked, [provider.peer_id()]);
    }
    assert_eq!(searches(&registry), 1, "searched again");
    // Another query is another lookup.
    client
        .query("geo/*".parse::<Query>().unwrap())
        .select(Selection::All)
        .discovery_wait(WAIT)
        .send(json!({"country": "France"}))
        .await
        .unwrap();
    assert_eq!(searches(&registry), 2);
    client.shutdown().await;
    provider.shutdown().await;
    registry.shutdown().await;
}

/// A query with `fresh_lookup` looks up again although the same query did
/// lately and enough agents are known, and finds those that came since; a
/// query without it reuses the recent lookup and does not.
#[tokio::test]
async fn a_fresh_lookup_finds_agents_that_came_since() {
    let (registry, reader, first) = registered(Duration::from_secs(60)).await;
    let client = registry_client(&registry).await;
    let ask = |fresh: bool| {
        let ask = client
            .query("geo/capital".parse::<Query>().unwrap())
            .select(Selection::All)
            .discovery_wait(WAIT);
        let ask = if fresh { ask.fresh_lookup() } else { ask };
        ask.send(json!({"country": "France"}))
    };
    assert_eq!(ask(false).await.unwrap().asked, [first.peer_id()]);
    let second = registered_provider(&registry, &reader, Duration::from_secs(60)).await;
    assert_eq!(ask(false).await.unwrap().asked, [first.peer_id()]);
    assert_eq!(searches(&registry), 1);
    let mut asked = ask(true).await.unwrap().asked;
    asked.sort();
    let mut both = vec![first.peer_id(), second.peer_id()];
    both.sort();
    assert_eq!(asked, both);
    assert_eq!(searches(&registry), 2);
    // Not only for `all`: a top-n query that knows enough agents waits for
    // the lookup too.
    client
        .query("geo/capital".parse::<Query>().unwrap())
        .select(Selection::TopN(NonZeroUsize::MIN))
        .discovery_wait(WAIT)
        .fresh_lookup()
        .send(json!({"country": "France"}))
        .await
        .unwrap();
    assert_eq!(searches(&registry), 3);
    for agent in [client, first, second] {
        agent.shutdown().await;
    }
    registry.shutdown().await;
}

/// A recent lookup does not stand for a new one while too few agents are
/// known: a query that needs more looks again and finds those that came
/// since.
#[tokio::test]
async fn a_query_short_of_agents_looks_up_again() {
    let (registry, reader, first) = registered(Duration::from_secs(60)).await;
    let client = registry_client(&registry).await;
    let ask = |min_agents: usize| {
        client
            .query("geo/capital".parse::<Query>().unwrap())
            .select(Selection::All)
            .min_agents(min_agents)
            .discovery_wait(Duration::from_secs(3))
            .send(json!({"country": "France"}))
    };
    assert_eq!(ask(1).await.unwrap().asked, [first.peer_id()]);
    let second = registered_provider(&registry, &reader, Duration::from_secs(60)).await;
    let answered = ask(2).await.unwrap();
    assert_eq!(answered.asked.len(), 2, "{:?}", answered.asked);
    assert_eq!(searches(&registry), 2);
    for agent in [client, first, second] {
        agent.shutdown().await;
    }
    registry.shutdown().await;
}
