//! Nodes talking over the in-process memory transport: requests, typed
//! errors, limits, private meshes and the allow-list.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ecco::node::{
    Answer, Config, Inbox, Node, NodeError, RemoteErrorKind, Request, RequestError,
    generate_swarm_key,
};
use ecco::{CapabilityType, Identity};
use serde_json::json;

async fn node(config: Config) -> (Node, Inbox) {
    Node::spawn(&Identity::generate(), config).await.unwrap()
}

/// Serves `echo` and rejects everything else; `hold` keeps requests unanswered.
fn serve(mut inbox: Inbox) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(req) = inbox.recv().await {
            match req.request.capability.as_str() {
                "echo" => {
                    let payload = req.request.payload.clone();
                    req.respond(Answer::new(json!({ "echo": payload })));
                }
                "hold" => held.push(req),
                "drop" => drop(req),
                other => {
                    let message = format!("no handler for {other}");
                    req.reject(RemoteErrorKind::NoHandler, message);
                }
            }
        }
    })
}

fn request(capability: &str, payload: serde_json::Value) -> Request {
    Request::new(CapabilityType::new(capability).unwrap(), payload)
}

/// `provider` answers `requester`'s echo.
async fn assert_serves(provider: &Node, requester: &Node) {
    let asked = requester
        .request(provider.peer_id(), request("echo", json!("still")))
        .await;
    assert!(asked.is_ok(), "{asked:?}");
}

async fn address(node: &Node) -> libp2p::Multiaddr {
    node.listen_addrs().await.unwrap().remove(0)
}

#[tokio::test]
async fn request_and_answer_with_attachments() {
    let (a, inbox) = node(Config::memory()).await;
    serve(inbox);
    let (b, _) = node(Config::memory()).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    assert_eq!(peer, a.peer_id(), "the handshake proves who answered");
    let answer = b
        .request(peer, request("echo", json!("hi")).attach(vec![1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(answer.result, json!({"echo": "hi"}));
    assert!(b.connected_peers().await.unwrap().contains(&a.peer_id()));
}

/// JSON nulls travel as nulls, in a payload and in a result, not as empty
/// arrays (cbor4ii's encoding of serde's unit).
#[tokio::test]
async fn nulls_arrive_as_nulls() {
    let (a, inbox) = node(Config::memory()).await;
    serve(inbox);
    let (b, _) = node(Config::memory()).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    for payload in [
        json!(null),
        json!({"a": null, "b": [null, []], "c": {"d": null}}),
    ] {
        let answer = b
            .request(peer, request("echo", payload.clone()))
            .await
            .unwrap();
        assert_eq!(answer.result, json!({ "echo": payload }));
    }
}

/// A request says how long its requester waits, and the provider's inbound
/// request knows when that runs out: within the time given to
/// `request_within`, else within the node's request timeout.
#[tokio::test]
async fn a_request_tells_the_provider_how_long_it_is_waited_for() {
    let (a, mut inbox) = node(Config::memory()).await;
    let (b, _) = node(Config::memory()).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    for (within, expected) in [
        (Some(Duration::from_secs(5)), Duration::from_secs(5)),
        (None, Config::memory().limits.request_timeout),
        // Longer than the request timeout: the time asked for.
        (Some(Duration::from_secs(90)), Duration::from_secs(90)),
        // Cut: no request outlives the longest.
        (
            Some(Duration::from_secs(3600)),
            Config::memory().limits.longest_request(),
        ),
    ] {
        let b = b.clone();
        let asked = tokio::spawn(async move {
            let request = request("echo", json!(1));
            match within {
                Some(timeout) => b.request_within(peer, request, timeout).await,
                None => b.request(peer, request).await,
            }
        });
        let inbound = inbox.recv().await.unwrap();
        let told = inbound.request.timeout().expect("the requester said");
        assert!(
            told <= expected && told > expected / 2,
            "told {told:?}, expected about {expected:?}"
        );
        let left = inbound
            .deadline()
            .expect("a deadline")
            .saturating_duration_since(std::time::Instant::now());
        assert!(
            left <= told && left > Duration::ZERO,
            "{left:?} of {told:?} left"
        );
        inbound.respond(Answer::new(json!("ok")));
        asked.await.unwrap().unwrap();
    }
    assert_eq!(
        request("echo", json!(1)).timeout(),
        None,
        "an application's own request says nothing"
    );
}

/// A caller that stops waiting (its request future dropped) cancels the
/// request: the provider's inbound request closes long before the
/// request's deadline (30 s), and the provider serves on, the same
/// connection included.
#[tokio::test]
async fn a_request_its_caller_drops_is_cancelled_at_the_provider() {
    let (a, mut inbox) = node(Config::memory()).await;
    let (b, _) = node(Config::memory()).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    let asked = tokio::spawn({
        let b = b.clone();
        async move { b.request(peer, request("hold", json!(1))).await }
    });
    let mut inbound = inbox.recv().await.unwrap();
    assert!(!inbound.is_closed(), "the caller still waits");
    asked.abort();
    let told = tokio::time::timeout(Duration::from_secs(10), inbound.closed()).await;
    assert!(told.is_ok(), "the provider learns that nobody waits");
    assert!(inbound.is_closed());
    // The answer goes nowhere and harms nothing.
    inbound.respond(Answer::new(json!("late")));
    serve(inbox);
    assert_serves(&a, &b).await;
    assert_eq!(b.connected_peers().await.unwrap(), vec![a.peer_id()]);
}

/// A cancel needs a stream of its own. A provider whose connection is
/// full drops it unread; the requester sends it again once a stream is
/// free, so that the provider stops working for nobody long before the
/// request's time runs out.
#[tokio::test]
async fn a_cancel_waits_for_a_free_stream() {
    let mut small = Config::memory();
    small.limits.max_concurrent_streams = 2;
    let (a, mut inbox) = node(small).await;
    let (b, _) = node(Config::memory()).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    let ask = |n: i32| {
        let b = b.clone();
        tokio::spawn(async move {
            b.request_within(peer, request("hold", json!(n)), Duration::from_secs(60))
                .await
        })
    };
    let (dropped, waited) = (ask(1), ask(2));
    let (mut first, mut second) = (inbox.recv().await.unwrap(), inbox.recv().await.unwrap());
    if first.request.payload == json!(2) {
        std::mem::swap(&mut first, &mut second);
    }
    // The connection now carries a's limit of two streams: the cancel is
    // dropped unread, however often it is sent, until one is answered.
    dropped.abort();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!first.is_closed(), "no room for the cancel yet");
    second.respond(Answer::new(json!("done")));
    assert_eq!(waited.await.unwrap().unwrap().result, json!("done"));
    let told = tokio::time::timeout(Duration::from_secs(10), first.closed()).await;
    assert!(told.is_ok(), "the cancel arrives once a stream is free");
    serve(inbox);
    assert_serves(&a, &b).await;
}

/// `request_within` may wait longer than the node's request timeout,
/// which is only what `request` waits: a handler that takes longer than
/// that, on either side, still reaches the caller that waits for it.
#[tokio::test]
async fn a_request_may_wait_longer_than_the_request_timeout() {
    let mut config = Config::memory();
    config.limits.request_timeout = Duration::from_millis(300);
    let (a, mut inbox) = node(config.clone()).await;
    tokio::spawn(async move {
        while let Some(inbound) = inbox.recv().await {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(900)).await;
                inbound.respond(Answer::new(json!("slow")));
            });
        }
    });
    let (b, _) = node(config).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    let e = b
        .request(peer, request("slow", json!(1)))
        .await
        .unwrap_err();
    assert_eq!(e, RequestError::Timeout(Duration::from_millis(300)));
    let answer = b
        .request_within(peer, request("slow", json!(2)), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(answer.result, json!("slow"));
}

/// `Duration::MAX` as the longest request, on both sides, and as a
/// request's time means no limit that matters, not an overflow.
#[tokio::test]
async fn an_unlimited_request_time_is_no_overflow() {
    let mut config = Config::memory();
    config.limits.max_request_timeout = Duration::MAX;
    let (a, inbox) = node(config.clone()).await;
    serve(inbox);
    let (b, _) = node(config).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    let answer = b
        .request_within(peer, request("echo", json!(1)), Duration::MAX)
        .await
        .unwrap();
    assert_eq!(answer.result, json!({ "echo": 1 }));
}

/// A provider works on a request no longer than its own
/// `max_request_timeout`, however long the requester would wait: then the
/// handler is told (the inbound request closes) and the requester gets a
/// typed answer at once, not a timeout of its own much later.
#[tokio::test]
async fn a_provider_ends_a_request_when_its_time_runs_out() {
    let mut config = Config::memory();
    config.limits.request_timeout = Duration::from_millis(100);
    config.limits.max_request_timeout = Duration::from_millis(400);
    let (a, mut inbox) = node(config).await;
    let (b, _) = node(Config::memory()).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    let asked = tokio::spawn({
        let b = b.clone();
        async move {
            let started = std::time::Instant::now();
            let asked = b
                .request_within(peer, request("hold", json!(1)), Duration::from_secs(60))
                .await;
            (asked, started.elapsed())
        }
    });
    let mut inbound = inbox.recv().await.unwrap();
    let left = inbound
        .deadline()
        .expect("a deadline")
        .saturating_duration_since(std::time::Instant::now());
    assert!(
        left <= Duration::from_millis(400),
        "{left:?}: the provider's own limit"
    );
    let told = tokio::time::timeout(Duration::from_secs(20), inbound.closed()).await;
    assert!(told.is_ok(), "the handler is told that the time ran out");
    let (asked, took) = asked.await.unwrap();
    assert_eq!(
        asked.unwrap_err(),
        RequestError::HandlerFailed("no answer within 400ms".into())
    );
    assert!(
        took < Duration::from_secs(20),
        "answered at once, took {took:?}"
    );
    serve(inbox);
    assert_serves(&a, &b).await;
}

#[tokio::test]
async fn errors_say_what_happened() {
    let (a, inbox) = node(Config::memory()).await;
    serve(inbox);
    let mut config = Config::memory();
    config.limits.request_timeout = Duration::from_millis(300);
    let (b, _) = node(config).await;
    let peer = b.dial(address(&a).await).await.unwrap();

    let e = b
        .request(peer, request("llm/chat", json!(1)))
        .await
        .unwrap_err();
    assert_eq!(e, RequestError::NoHandler("no handler for llm/chat".into()));
    let e = b
        .request(peer, request("drop", json!(1)))
        .await
        .unwrap_err();
    assert!(matches!(e, RequestError::HandlerFailed(_)), "{e}");
    let e = b
        .request(peer, request("hold", json!(1)))
        .await
        .unwrap_err();
    assert_eq!(e, RequestError::Timeout(Duration::from_millis(300)));
    let stranger = Identity::generate().peer_id();
    let e = b
        .request(stranger, request("echo", json!(1)))
        .await
        .unwrap_err();
    assert!(matches!(e, RequestError::Unreachable(_)), "{e}");
    // After all that, the node still serves.
    assert!(b.request(peer, request("echo", json!(2))).await.is_ok());
}

#[tokio::test]
async fn a_node_listens_on_more_addresses_while_it_runs() {
    let (a, inbox) = node(Config::memory()).await;
    serve(inbox);
    let added = a.listen_on("/memory/0".parse().unwrap()).await.unwrap();
    assert!(a.listen_addrs().await.unwrap().contains(&added));
    let (b, _) = node(Config::memory()).await;
    assert_eq!(b.dial(added).await.unwrap(), a.peer_id());
    assert!(
        b.request(a.peer_id(), request("echo", json!(1)))
            .await
            .is_ok()
    );
    // No transport takes a bare UDP address: a clear error, and the node runs on.
    let e = a
        .listen_on("/ip4/127.0.0.1/udp/0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, NodeError::Listen { addr, .. } if addr == "/ip4/127.0.0.1/udp/0"),
        "{e}"
    );
    assert!(
        b.request(a.peer_id(), request("echo", json!(2)))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_taken_tcp_port_is_refused_not_shared() {
    let (a, inbox) = node(Config::loopback()).await;
    serve(inbox);
    let taken = address(&a).await;
    // libp2p's listeners set SO_REUSEPORT: without the check a second node
    // binds the same port and takes some of a's incoming connections.
    let mut config = Config::loopback();
    config.listen = vec![taken.clone()];
    let refused = Node::spawn(&Identity::generate(), config).await;
    match refused {
        Err(NodeError::Listen { addr, reason }) => {
            assert_eq!(addr, taken.to_string());
            assert!(reason.contains("already in use"), "{reason}");
        }
        other => panic!("expected a listen error, got {:?}", other.map(|_| ())),
    }
    let (b, _) = node(Config::loopback()).await;
    let e = b.listen_on(taken.clone()).await.unwrap_err();
    assert!(
        matches!(&e, NodeError::Listen { reason, .. } if reason.contains("already in use")),
        "{e}"
    );
    // A free fixed port is still taken up.
    let free = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let wanted: libp2p::Multiaddr = format!("/ip4/127.0.0.1/tcp/{free}").parse().unwrap();
    assert_eq!(b.listen_on(wanted.clone()).await.unwrap(), wanted);
    let peer = b.peer_id();
    let (c, _) = node(Config::loopback()).await;
    assert_eq!(c.dial(wanted).await.unwrap(), peer);
    assert_eq!(c.dial(taken).await.unwrap(), a.peer_id());
}

#[tokio::test]
async fn ipv4_and_ipv6_may_share_a_port_number() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut config = Config::loopback();
    // `::` is IPv6 only here, as libp2p binds it: no conflict with IPv4's
    // port, although a dual-stack probe would see one. Nothing but the test
    // connects to it, over loopback.
    config.listen = vec![
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap(),
        format!("/ip6/::/tcp/{port}").parse().unwrap(),
    ];
    let (a, inbox) = node(config).await;
    serve(inbox);
    let (b, _) = node(Config::loopback()).await;
    let v6: libp2p::Multiaddr = format!("/ip6/::1/tcp/{port}").parse().unwrap();
    assert_eq!(b.dial(v6).await.unwrap(), a.peer_id());
    assert_serves(&a, &b).await;
}

#[tokio::test]
async fn oversized_requests_are_refused_and_the_node_keeps_serving() {
    let mut small = Config::memory();
    small.limits.max_request_bytes = 1024;
    let (a, inbox) = node(small.clone()).await;
    serve(inbox);

    // A sender with the same limit refuses before sending.
    let (b, _) = node(small).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    let e = b
        .request(peer, request("echo", json!(1)).attach(vec![0; 4096]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RequestError::TooLarge(m) if m.contains("4")),
        "{e}"
    );

    // A sender with a larger limit gets the receiver's typed refusal.
    let mut big = Config::memory();
    big.limits.max_request_bytes = 1 << 20;
    let (c, _) = node(big).await;
    let peer = c.dial(address(&a).await).await.unwrap();
    let e = c
        .request(peer, request("echo", json!(1)).attach(vec![0; 3000]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RequestError::TooLarge(m) if m.contains("1024")),
        "{e}"
    );

    // The receiver still serves both.
    assert_serves(&a, &b).await;
    assert_serves(&a, &c).await;
}

/// 20,000 empty JSON objects: 20 kB on the wire, 640 kB once decoded.
fn unfolding() -> serde_json::Value {
    json!(vec![json!({}); 20_000])
}

#[tokio::test]
async fn requests_and_answers_that_would_unfold_in_memory_are_refused_and_the_node_keeps_serving() {
    let mut tight = Config::memory();
    tight.limits.max_request_memory = 100_000;
    tight.limits.max_response_memory = 100_000;
    let (a, inbox) = node(tight.clone()).await;
    serve(inbox);
    let (b, _) = node(tight).await;
    let peer = b.dial(address(&a).await).await.unwrap();

    // Within the wire limit, but not the receiver's memory limit: refused
    // undecoded, with a reason that says so.
    let e = b
        .request(peer, request("echo", unfolding()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RequestError::TooLarge(m) if m.contains("memory") && m.contains("100000")),
        "{e}"
    );
    // A receiver with the default limits takes it, and echoes it back; a
    // requester whose own limit that echo exceeds fails the call the same way.
    let (e_node, inbox) = node(Config::memory()).await;
    serve(inbox);
    let (c, _) = node(Config::memory()).await;
    let peer = c.dial(address(&e_node).await).await.unwrap();
    assert!(c.request(peer, request("echo", unfolding())).await.is_ok());
    let mut d_config = Config::memory();
    d_config.limits.max_response_memory = 100_000;
    let (d, _) = node(d_config).await;
    let peer = d.dial(address(&e_node).await).await.unwrap();
    let e = d
        .request(peer, request("echo", unfolding()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RequestError::TooLarge(m) if m.contains("memory")),
        "{e}"
    );

    // Both still serve.
    assert_serves(&a, &b).await;
    assert_serves(&e_node, &d).await;
}

#[tokio::test]
async fn oversized_answers_become_typed_errors() {
    let mut config = Config::memory();
    config.limits.max_response_bytes = 512;
    let (a, inbox) = node(config).await;
    serve(inbox);
    let (b, _) = node(Config::memory()).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    let e = b
        .request(peer, request("echo", json!("x".repeat(2000))))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RequestError::TooLarge(m) if m.contains("512")),
        "{e}"
    );
}

#[tokio::test]
async fn private_meshes_keep_strangers_out() {
    let key = generate_swarm_key();
    // A stranger's handshake stalls (each side waits for the other's first
    // bytes) until this timeout, so keep it short here.
    let quick = || {
        let mut c = Config::memory();
        c.limits.handshake_timeout = Duration::from_millis(500);
        c
    };
    let private = || {
        let mut c = quick();
        c.swarm_key = Some(key);
        c
    };
    let (a, inbox) = node(private()).await;
    serve(inbox);
    let addr = address(&a).await;

    let (member, _) = node(private()).await;
    let peer = member.dial(addr.clone()).await.unwrap();
    assert!(
        member
            .request(peer, request("echo", json!(1)))
            .await
            .is_ok()
    );

    let (outsider, _) = node(quick()).await;
    assert!(matches!(
        outsider.dial(addr.clone()).await,
        Err(NodeError::Dial { .. })
    ));
    let mut wrong = quick();
    wrong.swarm_key = Some(generate_swarm_key());
    let (wrong_key, _) = node(wrong).await;
    assert!(matches!(
        wrong_key.dial(addr).await,
        Err(NodeError::Dial { .. })
    ));
    assert_eq!(a.connected_peers().await.unwrap(), vec![member.peer_id()]);
}

/// A listener that accepts TCP connections and never says a word is given
/// up on after `Limits::handshake_timeout`, not after libp2p's default.
#[tokio::test]
async fn a_silent_listener_is_given_up_after_the_handshake_timeout() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let mut config = Config::loopback();
    config.limits.handshake_timeout = Duration::from_millis(500);
    let (a, _) = node(config).await;
    let started = std::time::Instant::now();
    let dialled = tokio::time::timeout(
        Duration::from_secs(30),
        a.dial(format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()),
    )
    .await
    .expect("the dial ends");
    assert!(
        matches!(dialled, Err(NodeError::Dial { .. })),
        "{dialled:?}"
    );
    // Far below libp2p's default of 10 s, far above 500 ms on a busy machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    held.abort();
}

/// A node dials from a fresh port, not from the one it listens on, with
/// and without a swarm key. From the listening port, two nodes that dial
/// each other at the same moment (as two that find each other by mDNS do)
/// would open one TCP connection from both ends, and both dials would fail.
#[tokio::test]
async fn dials_leave_from_a_fresh_port() {
    for swarm_key in [None, Some(generate_swarm_key())] {
        let private = swarm_key.is_some();
        let (a, _) = node(Config {
            swarm_key,
            ..Config::loopback()
        })
        .await;
        let listening: Vec<u16> = a
            .listen_addrs()
            .await
            .unwrap()
            .iter()
            .filter_map(|addr| {
                addr.iter().find_map(|p| match p {
                    libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
                    _ => None,
                })
            })
            .collect();
        assert!(!listening.is_empty());
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = other.local_addr().unwrap().port();
        let dialler = a.clone();
        // The dial fails (nothing answers the handshake); only its source
        // port matters here.
        let dial = tokio::spawn(async move {
            let _ = dialler
                .dial(format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap())
                .await;
        });
        let (_stream, from) = tokio::time::timeout(Duration::from_secs(20), other.accept())
            .await
            .expect("the node dials")
            .unwrap();
        assert!(
            !listening.contains(&from.port()),
            "private: {private}: dialled from {from}, a listening port of {listening:?}"
        );
        dial.abort();
        a.shutdown().await;
    }
}

#[tokio::test]
async fn quic_is_refused_in_a_private_mesh() {
    let config = Config {
        swarm_key: Some(generate_swarm_key()),
        ..Config::default()
    };
    let e = Node::spawn(&Identity::generate(), config)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, NodeError::Config(m) if m.contains("QUIC cannot be used in a private mesh")),
        "{e}"
    );
}

#[tokio::test]
async fn the_allow_list_admits_only_listed_peers() {
    let friend = Identity::generate();
    let mut config = Config::memory();
    config.allow = Some(BTreeSet::from([friend.peer_id()]));
    let (a, inbox) = node(config).await;
    serve(inbox);
    let addr = address(&a).await;

    let (f, _) = Node::spawn(&friend, Config::memory()).await.unwrap();
    let peer = f.dial(addr.clone()).await.unwrap();
    assert!(f.request(peer, request("echo", json!(1))).await.is_ok());

    let (stranger, _) = node(Config::memory()).await;
    let refused = match stranger.dial(addr).await {
        Err(_) => true,
        // The handshake may complete before the allow-list closes the connection.
        Ok(peer) => stranger
            .request(peer, request("echo", json!(1)))
            .await
            .is_err(),
    };
    assert!(refused);
}

#[tokio::test]
async fn meshes_do_not_mix() {
    let mut other = Config::memory();
    other.mesh = "hospital".into();
    let (a, inbox) = node(other).await;
    serve(inbox);
    let (b, _) = node(Config::memory()).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    let e = b
        .request(peer, request("echo", json!(1)))
        .await
        .unwrap_err();
    assert!(matches!(e, RequestError::Refused(_)), "{e}");
}

#[tokio::test]
async fn bad_configuration_is_a_clear_error() {
    let mut config = Config::memory();
    config.mesh = "Bad Mesh".into();
    let e = Node::spawn(&Identity::generate(), config)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("mesh name `Bad Mesh`"), "{e}");
}

#[tokio::test]
async fn shutdown_ends_the_node() {
    let (a, inbox) = node(Config::memory()).await;
    serve(inbox);
    let (b, _) = node(Config::memory()).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    let handle = b.clone();
    b.shutdown().await;
    assert_eq!(
        handle.request(peer, request("echo", json!(1))).await,
        Err(RequestError::NodeStopped)
    );
    assert_eq!(handle.listen_addrs().await, Err(NodeError::Stopped));
}

/// Serves every request after `delay`, each in its own task, so that many
/// are under way at once.
fn serve_late(mut inbox: Inbox, delay: Duration) {
    tokio::spawn(async move {
        while let Some(req) = inbox.recv().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                req.respond(Answer::new(json!("late")));
            });
        }
    });
}

/// Sends `n` requests to `peer` at once; the errors, counted by message.
async fn burst(from: &Node, peer: libp2p::PeerId, n: usize) -> BTreeMap<String, usize> {
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..n {
        let from = from.clone();
        calls.spawn(async move { from.request(peer, request("x", json!(1))).await });
    }
    let mut errors = BTreeMap::new();
    while let Some(called) = calls.join_next().await {
        if let Err(e) = called.unwrap() {
            *errors.entry(e.to_string()).or_default() += 1;
        }
    }
    errors
}

#[tokio::test]
async fn more_requests_than_streams_wait_for_a_free_one() {
    let mut config = Config::memory();
    config.limits.max_concurrent_streams = 8;
    let (a, inbox) = node(config.clone()).await;
    serve_late(inbox, Duration::from_millis(100));
    let (b, _) = node(config).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    // Five times the streams one connection may carry: without the wait,
    // libp2p fails all but 8 with "max sub-streams reached".
    let errors = burst(&b, peer, 40).await;
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(b.connected_peers().await.unwrap(), vec![peer]);
}

#[tokio::test]
async fn a_full_waiting_queue_fails_at_once_with_busy() {
    let mut config = Config::memory();
    config.limits.max_concurrent_streams = 2;
    config.limits.max_waiting_requests = 3;
    let (a, inbox) = node(config.clone()).await;
    serve_late(inbox, Duration::from_millis(500));
    let (b, _) = node(config).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    let errors = burst(&b, peer, 8).await;
    let busy: Vec<_> = errors.keys().collect();
    assert_eq!(
        errors.values().sum::<usize>(),
        3,
        "2 sent and 3 waiting are answered, 3 refused: {errors:#?}"
    );
    assert!(
        busy.iter()
            .all(|e| e.starts_with("busy: ") && e.contains("limits.max_waiting_requests")),
        "{errors:#?}"
    );
    assert_serves(&a, &b).await;
}

#[tokio::test]
async fn time_spent_waiting_for_a_stream_counts_against_the_timeout() {
    let mut config = Config::memory();
    config.limits.max_concurrent_streams = 1;
    config.limits.request_timeout = Duration::from_millis(1000);
    let (a, inbox) = node(config.clone()).await;
    // Each answer takes 600 ms: the second of two requests sent at once
    // waits 600 ms for the stream, then 600 ms more for its answer.
    serve_late(inbox, Duration::from_millis(600));
    let (b, _) = node(config).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    let errors = burst(&b, peer, 2).await;
    let timeout = RequestError::Timeout(Duration::from_millis(1000)).to_string();
    assert_eq!(errors, BTreeMap::from([(timeout, 1)]), "{errors:#?}");
    assert_serves(&a, &b).await;
}

#[tokio::test]
async fn zero_streams_per_connection_is_a_config_error() {
    let mut config = Config::memory();
    config.limits.max_concurrent_streams = 0;
    let refused = Node::spawn(&Identity::generate(), config).await;
    assert!(
        matches!(&refused, Err(NodeError::Config(m)) if m.contains("max_concurrent_streams")),
        "{:?}",
        refused.err()
    );
}

#[tokio::test]
async fn a_connection_full_of_the_peers_requests_fails_with_busy_naming_the_limit() {
    let mut config = Config::memory();
    config.limits.max_concurrent_streams = 2;
    let (a, mut inbox_a) = node(config.clone()).await;
    let (held_tx, mut held_rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(req) = inbox_a.recv().await {
            held.push(req);
            let _ = held_tx.send(()).await;
        }
    });
    let (b, inbox_b) = node(config).await;
    serve(inbox_b);
    let peer = b.dial(address(&a).await).await.unwrap();
    // b's two requests, held unanswered, take both of the connection's
    // streams on a's side: a cannot open one more to b.
    for _ in 0..2 {
        let b = b.clone();
        tokio::spawn(async move { b.request(peer, request("hold", json!(1))).await });
    }
    for _ in 0..2 {
        held_rx.recv().await.unwrap();
    }
    let asked = a.request(b.peer_id(), request("echo", json!(1))).await;
    match asked {
        Err(RequestError::Busy(m)) => assert!(m.contains("limits.max_concurrent_streams"), "{m}"),
        other => panic!("expected busy, got {other:?}"),
    }
}

#[tokio::test]
async fn a_peer_with_fewer_streams_is_sent_no_more_than_it_takes() {
    let mut small = Config::memory();
    small.limits.max_concurrent_streams = 2;
    let (a, inbox) = node(small).await;
    serve_late(inbox, Duration::from_millis(300));
    let (b, _) = node(Config::memory()).await;
    let peer = b.dial(address(&a).await).await.unwrap();
    // b may send 64 at once, a takes 2 and drops the other streams unread:
    // those fail, saying why, and b learns to send 2 at a time.
    let first = burst(&b, peer, 8).await;
    assert_eq!(first.values().sum::<usize>(), 6, "{first:#?}");
    assert!(
        first.keys().all(|e| e.starts_with("busy: ")
            && e.contains("no free stream")
            && e.contains("limits.max_concurrent_streams")),
        "{first:#?}"
    );
    // Without the lesson, 6 of these would fail the same way.
    let second = burst(&b, peer, 8).await;
    assert!(second.is_empty(), "{second:#?}");
}
