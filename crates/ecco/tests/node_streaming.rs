//! Streaming replies on the memory transport: chunks then an end, errors,
//! limits, cancellation, and handlers that serve both kinds of requester.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::WAIT;
use ecco::node::{Answer, Config, Inbox, Node, RemoteErrorKind, Request, RequestError};
use ecco::{CapabilityType, Identity};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;

/// Handles `tokens` by streaming one chunk per word of the payload,
/// `whole` with `respond`, `fail` by failing after one chunk, `drop` by
/// dropping the sink after one chunk, `big` with an oversized chunk, `wide`
/// with a chunk that unfolds in memory ([`unfolding`]), `patience` with
/// the milliseconds left until the requester's deadline (null without
/// one), `endless` until the requester goes away (then reports on
/// `cancelled`), `slow` with one chunk after as many milliseconds as its
/// payload says, and `hold` with nothing until the provider closes the
/// request (then reports how many milliseconds that took on `cancelled`).
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
                    "wide" => {
                        let mut sink = req.stream();
                        sink.send(Answer::new(unfolding())).await.unwrap();
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
                    "slow" => {
                        let ms = text.parse().unwrap();
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        let mut sink = req.stream();
                        sink.send(Answer::new(json!("late"))).await.unwrap();
                        sink.end().await;
                    }
                    "hold" => {
                        let started = std::time::Instant::now();
                        let mut req = req;
                        req.closed().await;
                        let took = started.elapsed().as_millis();
                        let _ = cancelled.send(usize::try_from(took).unwrap()).await;
                    }
                    // How long the requester said it waits, in ms, if it did.
                    "patience" => {
                        let left = req.deadline().map(|deadline| {
                            deadline
                                .saturating_duration_since(std::time::Instant::now())
                                .as_millis()
                        });
                        req.respond(Answer::new(json!(left)));
                    }
                    _ => req.reject(RemoteErrorKind::NoHandler, "unknown"),
                }
            });
        }
    });
}

/// 20,000 empty JSON objects: 20 kB on the wire, 640 kB once decoded.
fn unfolding() -> serde_json::Value {
    json!(vec![json!({}); 20_000])
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
async fn streaming_messages_that_would_unfold_in_memory_are_refused() {
    let mut server = Config::memory();
    server.limits.max_request_memory = 100_000;
    let (a, b, _) = pair(server).await;
    let wide = Request::new(CapabilityType::new("tokens").unwrap(), unfolding());
    let items = collect(b.request_stream(a.peer_id(), wide).await.unwrap()).await;
    assert!(
        matches!(&items[..], [Err(RequestError::TooLarge(m))] if m.contains("memory")),
        "{items:?}"
    );
    // A chunk that would unfold on the requester's side ends its stream the same way.
    let mut client = Config::memory();
    client.limits.max_response_memory = 100_000;
    let (c, _) = Node::spawn(&Identity::generate(), client).await.unwrap();
    c.dial(a.listen_addrs().await.unwrap().remove(0))
        .await
        .unwrap();
    let items = collect(
        c.request_stream(a.peer_id(), request("wide", ""))
            .await
            .unwrap(),
    )
    .await;
    assert!(
        matches!(&items[..], [Err(RequestError::TooLarge(m))] if m.contains("memory")),
        "{items:?}"
    );
    // Both still work.
    let items = collect(
        c.request_stream(a.peer_id(), request("tokens", "a b"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items, [Ok(json!("a")), Ok(json!("b"))]);
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

/// A streaming reply due within a time ends with `Timeout` once it has
/// run out, although every chunk came in time, and the handler, told the
/// deadline, is cancelled; a plain `request_stream` has no overall
/// deadline.
#[tokio::test]
async fn a_stream_within_a_time_ends_there_and_cancels_the_handler() {
    let (a, b, mut cancelled) = pair(Config::memory()).await;
    let within = Duration::from_millis(500);
    let left = collect(
        b.request_stream_within(a.peer_id(), request("patience", ""), within)
            .await
            .unwrap(),
    )
    .await;
    let left = left[0].as_ref().unwrap().as_u64().expect("a deadline");
    assert!(left > 0 && left <= 500, "{left} ms left of 500");
    let none = collect(
        b.request_stream(a.peer_id(), request("patience", ""))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(none[0], Ok(json!(null)), "no deadline without one");

    let started = std::time::Instant::now();
    let stream = b
        .request_stream_within(a.peer_id(), request("endless", ""), within)
        .await
        .unwrap();
    let items = tokio::time::timeout(WAIT, collect(stream))
        .await
        .expect("the stream ends at its deadline");
    assert!(started.elapsed() >= within, "{:?}", started.elapsed());
    let (last, chunks) = items.split_last().unwrap();
    assert_eq!(last, &Err(RequestError::Timeout(within)));
    assert!(!chunks.is_empty() && chunks.iter().all(Result::is_ok));
    tokio::time::timeout(WAIT, cancelled.recv())
        .await
        .expect("the handler learns that nobody reads on");
}

/// A time for the whole reply replaces the per-chunk bound on both sides:
/// a first chunk (a model's first token) may take longer than either
/// node's request timeout.
#[tokio::test]
async fn a_slow_first_chunk_arrives_within_the_streams_time() {
    let mut provider = Config::memory();
    provider.limits.request_timeout = Duration::from_secs(1);
    let (a, inbox) = Node::spawn(&Identity::generate(), provider).await.unwrap();
    let (tx, _rx) = mpsc::channel(1);
    serve(inbox, tx);
    let mut requester = Config::memory();
    requester.limits.request_timeout = Duration::from_millis(200);
    let (b, _) = Node::spawn(&Identity::generate(), requester).await.unwrap();
    b.dial(a.listen_addrs().await.unwrap().remove(0))
        .await
        .unwrap();

    let items = collect(
        b.request_stream_within(a.peer_id(), request("slow", "1500"), WAIT)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items, [Ok(json!("late"))]);

    let items = collect(
        b.request_stream(a.peer_id(), request("slow", "1500"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        items,
        [Err(RequestError::Timeout(Duration::from_millis(200)))],
        "without a time for the whole reply, each chunk is bounded"
    );
}

/// A provider ends a stream a second after the time its requester gave
/// the whole reply, even when its handler neither sends nor ends, so that
/// it does not hold the handler until a per-chunk timeout.
#[tokio::test]
async fn a_provider_ends_a_stream_when_its_time_runs_out() {
    let (a, b, mut closed) = pair(Config::memory()).await;
    let within = Duration::from_millis(300);
    let items = collect(
        b.request_stream_within(a.peer_id(), request("hold", ""), within)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items, [Err(RequestError::Timeout(within))]);
    let took = tokio::time::timeout(WAIT, closed.recv())
        .await
        .expect("the provider closes the request before its request timeout")
        .unwrap();
    assert!(
        (1_000..20_000).contains(&took),
        "closed after {took} ms: a second after the requester's 300 ms"
    );
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

/// A bare libp2p peer that speaks the mesh's stream protocol on the
/// memory transport, to play a peer that stops reading. Its swarm runs in
/// a task; the test opens and accepts streams through the control.
async fn raw_stream_peer() -> (libp2p::PeerId, libp2p::Multiaddr, libp2p_stream::Control) {
    use libp2p::multiaddr::Protocol;
    use libp2p::swarm::SwarmEvent;

    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(common::memory_transport)
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm
        .listen_on(libp2p::Multiaddr::empty().with(Protocol::Memory(0)))
        .unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let peer = *swarm.local_peer_id();
    let control = swarm.behaviour().new_control();
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    (peer, addr, control)
}

const STREAM_PROTOCOL: libp2p::StreamProtocol =
    libp2p::StreamProtocol::new("/ecco/ecco/stream/1.0.0");

#[tokio::test]
async fn a_request_to_a_peer_that_never_reads_times_out() {
    let (silent, addr, mut control) = raw_stream_peer().await;
    let mut incoming = control.accept(STREAM_PROTOCOL).unwrap();
    // Accepts streams and never reads them.
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(stream) = incoming.next().await {
            held.push(stream);
        }
    });
    let mut config = Config::memory();
    config.limits.request_timeout = Duration::from_millis(500);
    let (b, _) = Node::spawn(&Identity::generate(), config).await.unwrap();
    b.dial(addr).await.unwrap();
    // Larger than the stream's window, so that writing it must wait for a
    // reader.
    let big = request("tokens", &"w".repeat(600_000));
    let outcome = tokio::time::timeout(WAIT, b.request_stream(silent, big))
        .await
        .expect("the request must give up on its own");
    assert!(
        matches!(outcome, Err(RequestError::Timeout(_))),
        "{:?}",
        outcome.map(|_| ())
    );
    held.abort();
}

#[tokio::test]
async fn a_requester_that_stops_reading_frees_its_slot() {
    let mut server = Config::memory();
    server.limits.max_streaming_requests = 1;
    server.limits.request_timeout = Duration::from_millis(500);
    let (a, b, _) = pair(server).await;
    let (raw, raw_addr, mut control) = raw_stream_peer().await;
    a.dial(raw_addr).await.unwrap();
    let mut stream = control
        .open_stream(a.peer_id(), STREAM_PROTOCOL)
        .await
        .unwrap();
    // Asks for an endless reply, then never reads it: the provider's
    // writes stall once the stream's window is full.
    let frame = cbor4ii::serde::to_vec(Vec::new(), &request("endless", "")).unwrap();
    let len = u32::try_from(frame.len()).unwrap().to_be_bytes();
    futures::AsyncWriteExt::write_all(&mut stream, &len)
        .await
        .unwrap();
    futures::AsyncWriteExt::write_all(&mut stream, &frame)
        .await
        .unwrap();
    futures::AsyncWriteExt::flush(&mut stream).await.unwrap();
    // The provider gives the stalled requester up after its timeout, and
    // its only slot serves others again.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let items = attempt(&b, a.peer_id(), request("tokens", "free")).await;
        match &items[..] {
            [Ok(word)] => {
                assert_eq!(*word, json!("free"));
                break;
            }
            [Err(RequestError::Refused(m))] if m.contains("busy") => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the stalled requester still holds the only slot (raw peer {raw})"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("{other:?}"),
        }
    }
    drop(stream);
}

/// A requester opens no more streams to one peer at once than
/// `max_streaming_requests` (the provider's own limit, by default): the
/// rest wait, in order, instead of being refused as busy, and the wait
/// counts against their time. Beyond `max_waiting_requests` waiting, a
/// request fails at once, as busy, without reaching the provider.
#[tokio::test]
async fn streams_beyond_the_limit_wait_for_a_free_one() {
    let mut limits = Config::memory();
    limits.limits.max_streaming_requests = 2;
    limits.limits.max_waiting_requests = 2;
    let (a, inbox) = Node::spawn(&Identity::generate(), limits.clone())
        .await
        .unwrap();
    let (tx, _cancelled) = mpsc::channel(4);
    serve(inbox, tx);
    let (b, _) = Node::spawn(&Identity::generate(), limits).await.unwrap();
    b.dial(a.listen_addrs().await.unwrap().remove(0))
        .await
        .unwrap();
    let peer = a.peer_id();
    // Both slots held: the replies are endless and read no further.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut endless = b
            .request_stream(peer, request("endless", ""))
            .await
            .unwrap();
        assert!(endless.next().await.unwrap().is_ok());
        held.push(endless);
    }
    // The wait counts against the request's time.
    let within = Duration::from_millis(200);
    let late = b
        .request_stream_within(peer, request("tokens", "late"), within)
        .await;
    assert!(
        matches!(late, Err(RequestError::Timeout(t)) if t == within),
        "{:?}",
        late.map(|_| ())
    );
    let waiting: Vec<_> = (0..2)
        .map(|n| {
            let b = b.clone();
            tokio::spawn(async move {
                let text = format!("turn {n}");
                let stream = b.request_stream(peer, request("tokens", &text)).await?;
                Ok::<_, RequestError>(collect(stream).await)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "they wait rather than being refused"
    );
    let over = b.request_stream(peer, request("tokens", "over")).await;
    assert!(
        matches!(&over, Err(RequestError::Busy(m)) if m.contains("max_waiting_requests")),
        "{:?}",
        over.map(|_| ())
    );
    // Freed slots go to the waiting requests, which complete.
    drop(held);
    for (n, waited) in waiting.into_iter().enumerate() {
        let words = tokio::time::timeout(WAIT, waited).await.unwrap().unwrap();
        assert_eq!(
            words.unwrap(),
            [Ok(json!("turn")), Ok(json!(n.to_string()))]
        );
    }
}

/// Without a time for the whole reply, the first chunk is due within the
/// request timeout of the call: a wait for a free stream counts against it
/// rather than earning a fresh timeout for the chunk after it.
#[tokio::test]
async fn the_wait_for_a_free_stream_counts_against_the_first_chunk() {
    let (a, inbox) = Node::spawn(&Identity::generate(), Config::memory())
        .await
        .unwrap();
    let (tx, _cancelled) = mpsc::channel(4);
    serve(inbox, tx);
    let mut requester = Config::memory();
    requester.limits.max_streaming_requests = 1;
    let timeout = Duration::from_secs(1);
    requester.limits.request_timeout = timeout;
    let (b, _) = Node::spawn(&Identity::generate(), requester).await.unwrap();
    b.dial(a.listen_addrs().await.unwrap().remove(0))
        .await
        .unwrap();
    let peer = a.peer_id();
    let mut held = b
        .request_stream(peer, request("endless", ""))
        .await
        .unwrap();
    assert!(held.next().await.unwrap().is_ok());
    // The slot frees after 800 ms and the chunk takes 800 ms more: each
    // within the timeout, both together not.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        drop(held);
    });
    let started = std::time::Instant::now();
    let items = match b.request_stream(peer, request("slow", "800")).await {
        Ok(stream) => collect(stream).await,
        Err(e) => vec![Err(e)],
    };
    assert_eq!(items, [Err(RequestError::Timeout(timeout))]);
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_busy_provider_refuses_with_its_reason() {
    let mut server = Config::memory();
    server.limits.max_streaming_requests = 1;
    let (a, b, _) = pair(server).await;
    // Holds the only slot: the reply is endless and read no further.
    let mut first = b
        .request_stream(a.peer_id(), request("endless", ""))
        .await
        .unwrap();
    assert!(first.next().await.unwrap().is_ok());
    for _ in 0..20 {
        let items = attempt(&b, a.peer_id(), request("tokens", "x")).await;
        assert!(
            matches!(&items[..], [Err(RequestError::Refused(m))] if m.contains("busy")),
            "{items:?}"
        );
    }
    drop(first);
}

/// The items of a streaming request; a request refused before its stream
/// began is one failed item.
async fn attempt(
    from: &Node,
    to: libp2p::PeerId,
    req: Request,
) -> Vec<Result<serde_json::Value, RequestError>> {
    match from.request_stream(to, req).await {
        Ok(stream) => collect(stream).await,
        Err(e) => vec![Err(e)],
    }
}
