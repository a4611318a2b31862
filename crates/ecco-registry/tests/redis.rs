//! Shared state against a real Redis: nonces, rate limits and live events
//! shared by several registry instances.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use ecco_identity::Identity;
use ecco_registry::Config;
use ecco_registry::shared::Shared;
use ecco_registry::wire::{Event, EventKind};

/// Two instances of one registry (a fresh id, so that runs never meet).
async fn two_instances() -> Option<(Shared, Shared)> {
    let url = redis_url();
    let id = unique("registry");
    match Shared::redis(&url, &id).await {
        Ok(first) => Some((
            first,
            Shared::redis(&url, &id).await.expect("second connection"),
        )),
        Err(e) => {
            skip("redis", &url, &e);
            None
        }
    }
}

fn unique(label: &str) -> String {
    format!("test:{label}:{}", Identity::generate().peer_id())
}

#[tokio::test]
async fn a_nonce_claimed_on_one_instance_is_spent_on_all() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    let key = unique("nonce");
    assert!(a.claim(&key, Duration::from_secs(5)).await.unwrap());
    assert!(!b.claim(&key, Duration::from_secs(5)).await.unwrap());
    assert!(!a.claim(&key, Duration::from_secs(5)).await.unwrap());
}

/// Two registries on one Redis (one agent registered with both, one
/// period's health sweep) must not spend each other's nonces, rate windows
/// or claims.
#[tokio::test]
async fn registries_sharing_a_redis_keep_their_claims_apart() {
    let Some((a, _)) = two_instances().await else {
        return;
    };
    let other = Shared::redis(&redis_url(), &unique("another-registry"))
        .await
        .unwrap();
    let key = unique("sweep");
    assert!(a.claim(&key, Duration::from_secs(5)).await.unwrap());
    assert!(
        other.claim(&key, Duration::from_secs(5)).await.unwrap(),
        "a claim on one registry is not a claim on another"
    );
    let window = Duration::from_secs(5);
    assert!(a.hit(&key, 1, window).await.unwrap());
    assert!(!a.hit(&key, 1, window).await.unwrap());
    assert!(
        other.hit(&key, 1, window).await.unwrap(),
        "one registry's rate window does not count at another"
    );
}

#[tokio::test]
async fn rate_limits_count_across_instances_and_reset_with_the_window() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    let key = unique("rate");
    let window = Duration::from_millis(400);
    assert!(a.hit(&key, 2, window).await.unwrap());
    assert!(b.hit(&key, 2, window).await.unwrap());
    assert!(!a.hit(&key, 2, window).await.unwrap());
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    assert!(b.hit(&key, 2, window).await.unwrap());
}

#[tokio::test]
async fn an_event_published_on_one_instance_reaches_subscribers_of_another() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    let other = Shared::redis(&redis_url(), &unique("another-registry"))
        .await
        .unwrap();
    let mut on_other = other.subscribe();
    // Make sure the other registry's subscription is live, so that hearing
    // nothing below means something.
    let own = Event {
        kind: EventKind::Heartbeat,
        agent: unique("other-agent"),
        at_ms: 1,
        health: None,
        reputation: None,
    };
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            other.publish(&own).await.unwrap();
            if let Ok(Ok(got)) =
                tokio::time::timeout(Duration::from_millis(100), on_other.recv()).await
                && got == own
            {
                return;
            }
        }
    })
    .await
    .expect("the other registry hears its own events");
    let mut on_b = b.subscribe();
    let agent = unique("agent");
    let event = Event {
        kind: EventKind::Registered,
        agent: agent.clone(),
        at_ms: 1,
        health: None,
        reputation: None,
    };
    // The subscription may take a moment to be in place: publish until seen.
    let received = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            a.publish(&event).await.unwrap();
            if let Ok(Ok(got)) = tokio::time::timeout(Duration::from_millis(100), on_b.recv()).await
                && got.agent == agent
            {
                return got;
            }
        }
    })
    .await
    .expect("event relayed through redis");
    assert_eq!(received, event);
    // Another registry on the same Redis hears nothing of it (its own
    // events may still be arriving).
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(got) = on_other.try_recv() {
        assert_ne!(got.agent, agent, "an event crossed registries");
    }
}

#[tokio::test]
async fn a_request_replayed_against_another_instance_is_refused() {
    let url = redis_url();
    if let Err(e) = Shared::redis(&url, "probe").await {
        return skip("redis", &url, &e);
    }
    // Two instances of one registry: one database, one Redis.
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        database_url: format!("sqlite:{}", dir.path().join("shared.db").display()),
        redis_url: Some(url),
        ..Config::ephemeral()
    };
    let (_, first) = registry(config.clone()).await;
    let reg = registry_id(&first).await;
    let (_, second) = registry(config).await;
    assert_eq!(registry_id(&second).await, reg, "one registry, one id");
    let a = Identity::generate();
    let body = serde_json::to_vec(&registration("alpha", &["llm/chat"])).unwrap();
    let path = format!("/v1/agents/{}", a.peer_id());
    let request = signed(&reg, &a, "PUT", &path, &body);
    let mut replay = axum::http::Request::builder().method("PUT").uri(&path);
    for (name, value) in request.headers() {
        replay = replay.header(name, value);
    }
    let replay = replay.body(axum::body::Body::from(body)).unwrap();
    assert!(send(&first, request).await.0.is_success());
    let (status, error) = send(&second, replay).await;
    assert_eq!(status, 401, "{error}");
    assert_eq!(error["error"]["code"], "replayed_nonce");
}

#[tokio::test]
async fn catalog_generations_and_snapshots_are_shared_per_registry_only() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    let other = Shared::redis(&redis_url(), &unique("another-registry"))
        .await
        .unwrap();
    let before = b.generation().await.unwrap();
    let bumped = a.bump_generation().await.unwrap();
    assert_eq!(bumped, before + 1);
    assert_eq!(b.generation().await.unwrap(), bumped, "b sees a's change");
    assert_eq!(
        other.generation().await.unwrap(),
        0,
        "another registry does not"
    );

    a.store_snapshot(bumped, b"[1,2,3]", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        b.snapshot(bumped).await.unwrap().as_deref(),
        Some(&b"[1,2,3]"[..])
    );
    assert_eq!(b.snapshot(bumped + 1).await.unwrap(), None);
    assert_eq!(other.snapshot(bumped).await.unwrap(), None);
}

/// Two instances on one database and one Redis: a registration through the
/// first shows in the second's searches at once, though the second trusts
/// its cached catalog for an hour without an event.
#[tokio::test]
async fn a_registration_on_one_instance_reaches_the_others_cached_searches() {
    let url = redis_url();
    if let Err(e) = Shared::redis(&url, "probe").await {
        return skip("redis", &url, &e);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        database_url: format!("sqlite:{}", dir.path().join("shared.db").display()),
        redis_url: Some(url),
        catalog_check: Duration::from_secs(3600),
        ..Config::ephemeral()
    };
    let (_, first) = registry(config.clone()).await;
    let (_, second) = registry(config).await;
    let (status, page) = send(&second, get("/v1/agents?q=llm/chat")).await;
    assert_eq!(status, 200);
    assert_eq!(
        page["total"], 0,
        "the second instance cached an empty catalog"
    );

    let agent = Identity::generate();
    register(&first, &agent, "alpha", &["llm/chat +summarize"]).await;
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (_, page) = send(&second, get("/v1/agents?q=llm/chat")).await;
            if page["total"] == 1 {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the registration reached the second instance's cache");
    assert_eq!(seen["items"][0]["peer_id"], agent.peer_id().to_base58());

    let (_, overview) = send(&second, get("/v1/analytics/overview")).await;
    assert_eq!(overview["agents"]["online"], 1);
}
