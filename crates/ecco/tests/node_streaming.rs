//! Streaming replies on the memory transport: chunks then an end, errors,
//! limits, cancellation, and handlers that serve both kinds of requester.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ecco::node::{Answer, Config, Inbox, Node, RemoteErrorKind, Request, RequestError};
use ecco::{CapabilityType, Identity};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;

/// Handles `tokens` by streaming one chunk per word of the payload,
/// `whole` with `respond`, `fail` by failing after one chunk, `drop` by
/// dropping the sink after one chunk, `big` with an oversized chunk, and
/// `endless` until the requester goes away (then reports on `cancelled`).
fn serve(mut inbox: Inbox, cancelled: mpsc::Sender<usize>) {
    tokio::spawn(async move {
        while let Some(req) = inbox.recv().await {
            let cancelled = cancelled.clone();
            tokio::spawn(async move {
                let text = req.request.payload.as_str().unwrap_or_default().to_owned();
                match req.request.capability.as_str() {
                    "whole" => req.respond(Answer::new(json!(text))),
                    "tokens" => {
                        let mut sink = req.stream();
                        for word in text.split(' ') {
                            sink.send(Answer::new(json!(word))).await.unwrap();
                        }
                        sink.end().await;
                    }
                    "fail" => {
                        let mut sink = req.stream();
                        sink.send(Answer::new(json!("partial"))).await.unwrap();
                        sink.fail(RemoteErrorKind::HandlerFailed, "model crashed")
                            .await;
                    }
                    "drop" => {
                        let mut sink = req.stream();
                        sink.send(Answer::new(json!("partial"))).await.unwrap();
                    }
                    "big" => {
                        let mut sink = req.stream();
                        sink.send(Answer::new(json!("x".repeat(10_000))))
                            .await
                            .unwrap();
                        sink.end().await;
                    }
                    "endless" => {
                        let mut sink = req.stream();
                        let mut sent = 0;
                        while sink.send(Answer::new(json!(sent))).await.is_ok() {
                            sent += 1;
                        }
                        let _ = cancelled.send(sent).await;
                    }
                    _ => req.reject(RemoteErrorKind::NoHandler, "unknown"),
                }
            });
        }
    });
}

fn request(capability: &str, payload: &str) -> Request {
    Request::new(CapabilityType::new(capability).unwrap(), json!(payload))
}

async fn pair(server: Config) -> (Node, Node, mpsc::Receiver<usize>) {
    let (a, inbox) = Node::spawn(&Identity::generate(), server).await.unwrap();
    let (tx, rx) = mpsc::channel(1);
    serve(inbox, tx);
    let (b, _) = Node::spawn(&Identity::generate(), Config::memory())
        .await
        .unwrap();
    b.dial(a.listen_addrs().await.unwrap().remove(0))
        .await
        .unwrap();
    (a, b, rx)
}

async fn collect(stream: ecco::node::ReplyStream) -> Vec<Result<serde_json::Value, RequestError>> {
    stream.map(|item| item.map(|a| a.result)).collect().await
}

#[tokio::test]
async fn chunks_arrive_in_order_then_the_stream_ends() {
    let (a, b, _) = pair(Config::memory()).await;
    let stream = b
        .request_stream(a.peer_id(), request("tokens", "the quick brown fox"))
        .await
        .unwrap();
    let items = collect(stream).await;
    let words: Vec<_> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        words,
        [json!("the"), json!("quick"), json!("brown"), json!("fox")]
    );
}

#[tokio::test]
async fn one_handler_serves_both_kinds_of_requester() {
    let (a, b, _) = pair(Config::memory()).await;
    // A plain request to a streaming handler gets the chunks as an array.
    let answer = b
        .request(a.peer_id(), request("tokens", "a b"))
        .await
        .unwrap();
    assert_eq!(answer.result, json!(["a", "b"]));
    // A streaming request to a handler that responds once gets one chunk.
    let stream = b
        .request_stream(a.peer_id(), request("whole", "all at once"))
        .await
        .unwrap();
    let items: Vec<_> = collect(stream)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(items, [json!("all at once")]);
}

#[tokio::test]
async fn failures_end_the_stream_with_a_typed_error() {
    let mut server = Config::memory();
    server.limits.max_response_bytes = 1_000;
    let (a, b, _) = pair(server).await;
    let items = collect(
        b.request_stream(a.peer_id(), request("fail", ""))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items[0], Ok(json!("partial")));
    assert!(matches!(&items[1], Err(RequestError::HandlerFailed(m)) if m.contains("crashed")));
    assert_eq!(items.len(), 2);

    let items = collect(
        b.request_stream(a.peer_id(), request("drop", ""))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items.len(), 2);
    assert!(matches!(items[1], Err(RequestError::HandlerFailed(_))));

    let items = collect(
        b.request_stream(a.peer_id(), request("big", ""))
            .await
            .unwrap(),
    )
    .await;
    assert!(
        matches!(items[..], [Err(RequestError::TooLarge(_))]),
        "{items:?}"
    );

    let items = collect(
        b.request_stream(a.peer_id(), request("nope", ""))
            .await
            .unwrap(),
    )
    .await;
    assert!(
        matches!(items[..], [Err(RequestError::NoHandler(_))]),
        "{items:?}"
    );

    // The node still serves after all that.
    let items = collect(
        b.request_stream(a.peer_id(), request("tokens", "ok"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items, [Ok(json!("ok"))]);
}

#[tokio::test]
async fn oversized_streaming_requests_are_refused() {
    let mut server = Config::memory();
    server.limits.max_request_bytes = 1_000;
    let (a, b, _) = pair(server).await;
    let big = request("tokens", &"w ".repeat(1_000));
    let items = collect(b.request_stream(a.peer_id(), big).await.unwrap()).await;
    assert!(
        matches!(items[..], [Err(RequestError::TooLarge(_))]),
        "{items:?}"
    );
    // The sender refuses what exceeds its own limit before sending.
    let mut small = Config::memory();
    small.limits.max_request_bytes = 100;
    let (c, _) = Node::spawn(&Identity::generate(), small).await.unwrap();
    let refused = c
        .request_stream(a.peer_id(), request("tokens", &"w ".repeat(100)))
        .await;
    assert!(matches!(refused, Err(RequestError::TooLarge(_))));
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_handler() {
    let (a, b, mut cancelled) = pair(Config::memory()).await;
    let mut stream = b
        .request_stream(a.peer_id(), request("endless", ""))
        .await
        .unwrap();
    for expected in 0..3 {
        assert_eq!(
            stream.next().await.unwrap().unwrap().result,
            json!(expected)
        );
    }
    drop(stream);
    let sent = tokio::time::timeout(Duration::from_secs(20), cancelled.recv())
        .await
        .expect("the handler learns that the requester is gone")
        .unwrap();
    // It stopped: its sends failed once the requester was gone.
    assert!(sent >= 3, "{sent}");
}

#[tokio::test]
async fn a_silent_stream_times_out() {
    let (a, inbox) = Node::spawn(&Identity::generate(), Config::memory())
        .await
        .unwrap();
    // Takes requests and never answers.
    let held = tokio::spawn(async move {
        let mut inbox = inbox;
        let mut held = Vec::new();
        while let Some(req) = inbox.recv().await {
            held.push(req);
        }
    });
    let mut config = Config::memory();
    config.limits.request_timeout = Duration::from_millis(300);
    let (b, _) = Node::spawn(&Identity::generate(), config).await.unwrap();
    b.dial(a.listen_addrs().await.unwrap().remove(0))
        .await
        .unwrap();
    let items = collect(
        b.request_stream(a.peer_id(), request("x", ""))
            .await
            .unwrap(),
    )
    .await;
    assert!(
        matches!(items[..], [Err(RequestError::Timeout(_))]),
        "{items:?}"
    );
    held.abort();
}
