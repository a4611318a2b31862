//! A few tests over a real socket: the client, live events, shutdown.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::registration;
use ecco_identity::Identity;
use ecco_registry::wire::{Feedback, Health};
use ecco_registry::{Client, ClientError, Config, Receipt};
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;

#[tokio::test]
async fn the_client_registers_heartbeats_searches_and_reports_feedback() {
    let running = ecco_registry::serve(Config::ephemeral()).await.unwrap();
    let (agent_id, client_id) = (Identity::generate(), Identity::generate());
    let agent = Client::new(&running.url(), agent_id.clone()).unwrap();
    let client = Client::new(&running.url(), client_id.clone()).unwrap();

    let detail = agent
        .register(&registration("alpha", &["llm/chat +summarize"]))
        .await
        .unwrap();
    assert_eq!(detail.health, Health::Online);
    agent.heartbeat(None).await.unwrap();

    let hits = client.search("llm/* +summarize", 1, 10).await.unwrap();
    assert_eq!(hits.total, 1);
    assert_eq!(hits.items[0].peer_id, agent_id.peer_id().to_base58());

    let receipt = Receipt::issue(
        &agent_id,
        &client_id.peer_id(),
        "llm/chat",
        ecco_registry::state::now_ms(),
    );
    client
        .feedback(&Feedback {
            receipt: receipt.clone(),
            success: true,
            latency_ms: 80,
            rating: Some(5),
        })
        .await
        .unwrap();
    let again = client
        .feedback(&Feedback {
            receipt,
            success: true,
            latency_ms: 80,
            rating: Some(5),
        })
        .await;
    assert!(
        matches!(&again, Err(ClientError::Api { status: 409, .. })),
        "{again:?}"
    );
    assert!(!again.unwrap_err().is_transient());
    assert!(
        client
            .agent(&agent_id.peer_id())
            .await
            .unwrap()
            .reputation
            .score
            > 50.0
    );

    agent.deregister().await.unwrap();
    let gone = client.agent(&agent_id.peer_id()).await;
    assert!(
        matches!(gone, Err(ClientError::Api { status: 404, .. })),
        "{gone:?}"
    );

    let url = running.url();
    running.shutdown().await;
    let down = Client::new(&url, client_id).unwrap().health().await;
    assert!(
        down.as_ref().is_err_and(ClientError::is_transient),
        "{down:?}"
    );
}

#[tokio::test]
async fn live_events_stream_over_sse() {
    let running = ecco_registry::serve(Config::ephemeral()).await.unwrap();
    let http = HttpClient::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    let response = http
        .get(format!("{}/v1/events", running.url()).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();

    let id = Identity::generate();
    let agent = Client::new(&running.url(), id.clone()).unwrap();
    agent
        .register(&registration("alpha", &["llm/chat"]))
        .await
        .unwrap();
    agent.heartbeat(None).await.unwrap();

    let mut text = String::new();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
            if text.contains("event: heartbeat") {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "events so far: {text}");
    assert!(text.contains("event: registered"), "{text}");
    assert!(text.contains(&id.peer_id().to_base58()), "{text}");
    running.shutdown().await;
}

/// Signed writes cover the registry's id, which the client reads once from
/// `/health`. When another registry (a new database) takes over the URL, the
/// client's first write is refused, and the client learns the new id and
/// tries once more, so that an agent keeps registering without a restart.
#[tokio::test]
async fn the_client_follows_a_new_registry_behind_its_url() {
    let first = ecco_registry::serve(Config::ephemeral()).await.unwrap();
    let addr = first.local_addr();
    let first_id = first.app().registry_id().to_owned();
    let agent = Client::new(&first.url(), Identity::generate()).unwrap();
    agent
        .register(&registration("alpha", &["llm/chat"]))
        .await
        .unwrap();
    first.shutdown().await;

    let second = ecco_registry::serve(Config {
        listen: addr,
        ..Config::ephemeral()
    })
    .await
    .unwrap();
    assert_ne!(second.app().registry_id(), first_id);
    // The new registry never saw this agent: a signed heartbeat reaches its
    // handler (404), not the signature check (401).
    let beat = agent.heartbeat(None).await;
    assert!(
        matches!(&beat, Err(ClientError::Api { status: 404, .. })),
        "{beat:?}"
    );
    agent
        .register(&registration("alpha", &["llm/chat"]))
        .await
        .unwrap();
    assert_eq!(second.app().store().agents().await.unwrap().len(), 1);
    second.shutdown().await;
}
