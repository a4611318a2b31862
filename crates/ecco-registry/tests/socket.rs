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

/// Serves `body` as the answer to every request, one connection at a time.
async fn fake_registry(body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            // The client's requests here are GETs: one read takes the head.
            let mut head = vec![0; 16 * 1024];
            let _ = socket.read(&mut head).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
            let _ = socket.write_all(&body).await;
        }
    });
    url
}

#[tokio::test]
async fn an_answer_that_would_unfold_in_memory_is_refused_undecoded() {
    // A real agent's detail, as a registry serves it.
    let running = ecco_registry::serve(Config::ephemeral()).await.unwrap();
    let agent = Identity::generate();
    let detail = Client::new(&running.url(), agent.clone())
        .unwrap()
        .register(&registration("alpha", &["llm/chat"]))
        .await
        .unwrap();
    let mut json = serde_json::to_value(&detail).unwrap();
    let reader = Identity::generate();

    // As it is, it decodes: the fake registry serves it well.
    let url = fake_registry(serde_json::to_vec(&json).unwrap()).await;
    let fetched = Client::new(&url, reader.clone())
        .unwrap()
        .agent(&agent.peer_id())
        .await;
    assert_eq!(fetched.unwrap(), detail);

    // 500,000 one-entry objects in a capability's metadata: 3.5 MB of body,
    // within the size limit, over 300 MB once decoded.
    json["capabilities"]["capabilities"][0]["metadata"]["m"] =
        serde_json::Value::Array(vec![serde_json::json!({"": 0}); 500_000]);
    let body = serde_json::to_vec(&json).unwrap();
    assert!(
        body.len() < ecco_registry::client::MAX_RESPONSE_BYTES,
        "{}",
        body.len()
    );
    let url = fake_registry(body).await;
    let fetched = Client::new(&url, reader.clone())
        .unwrap()
        .agent(&agent.peer_id())
        .await;
    assert!(
        matches!(&fetched, Err(ClientError::Decode(m)) if m.contains("bytes of memory once decoded")),
        "{fetched:?}"
    );

    // Over the size limit: a decode error too, not worth retrying.
    let long = vec![b' '; ecco_registry::client::MAX_RESPONSE_BYTES + 1];
    let url = fake_registry(long).await;
    let fetched = Client::new(&url, reader)
        .unwrap()
        .agent(&agent.peer_id())
        .await;
    match fetched {
        Err(e @ ClientError::Decode(_)) => {
            assert!(e.to_string().contains("longer than"), "{e}");
            assert!(!e.is_transient());
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}
