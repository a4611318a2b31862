//! The agent API and its query pipeline, on the memory transport.

#![allow(clippy::unwrap_used)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecco::agent::{Agent, Call, HandlerError};
use ecco::aggregation::{FailureKind, Verdict};
use ecco::node::{Answer, Config, Event};
use ecco::{Aggregation, PeerId, Query, Selection};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// A discovery wait long enough that sitting it out cannot pass for ending
/// early, the test's margin being half of it.
const LONG_WAIT: Duration = Duration::from_secs(60);

/// Checks that what began at `started` did not sit out [`LONG_WAIT`]: the
/// lookup takes milliseconds.
fn ended_before_the_long_wait(started: Instant) {
    let took = started.elapsed();
    assert!(took < LONG_WAIT / 2, "took {took:?}");
}

/// An agent offering `capability` whose handler answers `answer` after
/// `delay`, or fails when `answer` is null.
async fn agent(
    bootstrap: Option<&Agent>,
    capability: &str,
    answer: serde_json::Value,
    delay: Duration,
) -> Agent {
    let mut config = Config::memory();
    if let Some(b) = bootstrap {
        config.bootstrap = b.addresses().await.unwrap();
    }
    let kind = capability.split(' ').next().unwrap().to_owned();
    Agent::builder()
        .config(config)
        .capability(capability.parse().unwrap())
        .handler(kind, move |_call: Call| {
            let answer = answer.clone();
            async move {
                tokio::time::sleep(delay).await;
                if answer.is_null() {
                    Err(HandlerError::failed("this one always fails"))
                } else {
                    Ok(Answer::new(answer))
                }
            }
        })
        .spawn()
        .await
        .unwrap()
}

async fn client(hub: &Agent) -> Agent {
    let mut config = Config::memory();
    config.bootstrap = hub.addresses().await.unwrap();
    Agent::builder()
        .config(config)
        .seed(7)
        .spawn()
        .await
        .unwrap()
}

fn q(text: &str) -> Query {
    text.parse().unwrap()
}

/// Waits until `client` knows `n` offers for `query`.
async fn knows(client: &Agent, query: &str, n: usize) {
    let found = client.discover(&q(query), n, WAIT).await.unwrap();
    assert!(found.len() >= n, "only {} of {n} known", found.len());
}

#[tokio::test]
async fn majority_vote_over_several_agents_with_a_failure() {
    let hub = agent(None, "geo/capital a@1.0.0", json!("Paris"), Duration::ZERO).await;
    let mut others = Vec::new();
    for (name, answer) in [
        ("b", json!("Paris")),
        ("c", json!("Paris")),
        ("d", json!("Lyon")),
        ("e", json!(null)),
    ] {
        others.push(
            agent(
                Some(&hub),
                &format!("geo/capital {name}@1.0.0"),
                answer,
                Duration::ZERO,
            )
            .await,
        );
    }
    let client = client(&hub).await;
    knows(&client, "geo/capital", 5).await;
    let answered = client
        .query(q("geo/capital"))
        .select(Selection::All)
        .aggregate(Aggregation::MajorityVote)
        .send(json!({"country": "France"}))
        .await
        .unwrap();
    let c = &answered.consensus;
    assert_eq!(c.verdict, Verdict::Decided);
    assert_eq!(c.answer, Some(json!("Paris")));
    assert_eq!(answered.rankings.len(), 5);
    // Every agent answered before the deadline, or a majority decided early
    // and the calls still in flight were cancelled.
    assert!(c.agreement >= 3);
    assert_eq!(c.agents.len(), 5, "every agent asked is reported");
    let cancelled: Vec<_> = c
        .failures
        .iter()
        .filter(|f| f.failure.kind == FailureKind::Cancelled)
        .map(|f| &f.agent)
        .collect();
    assert!(
        c.failures.iter().all(|f| matches!(
            f.failure.kind,
            FailureKind::HandlerFailed | FailureKind::Cancelled
        )),
        "{:?}",
        c.failures
    );
    assert!(
        c.agents
            .iter()
            .all(|a| a.latency_ms.is_some() || cancelled.contains(&&a.agent))
    );
}

#[tokio::test]
async fn failed_agents_are_replaced_until_enough_succeed() {
    // The two best matches fail; the third and fourth answer.
    let hub = agent(None, "calc/add a@1.0.0 +exact", json!(null), Duration::ZERO).await;
    let _b = agent(
        Some(&hub),
        "calc/add b@1.0.0 +exact",
        json!(null),
        Duration::ZERO,
    )
    .await;
    let c = agent(Some(&hub), "calc/add c@1.0.0", json!(4), Duration::ZERO).await;
    let d = agent(Some(&hub), "calc/add d@1.0.0", json!(4), Duration::ZERO).await;
    let client = client(&hub).await;
    knows(&client, "calc/add", 4).await;
    let answered = client
        .query(q("calc/add ~exact"))
        .select(Selection::from_str("top-n:2").unwrap())
        .min_agents(2)
        .send(json!([2, 2]))
        .await
        .unwrap();
    assert_eq!(answered.asked.len(), 4, "two failed, two replaced them");
    let answering: Vec<PeerId> = answered.asked[2..].to_vec();
    assert!(answering.contains(&c.peer_id()) && answering.contains(&d.peer_id()));
    assert_eq!(answered.consensus.answer, Some(json!(4)));
    assert_eq!(answered.consensus.agreement, 2);
}

#[tokio::test]
async fn first_response_does_not_wait_for_the_slow() {
    let hub = agent(None, "llm/chat fast@1.0.0", json!("quick"), Duration::ZERO).await;
    let slow = agent(
        Some(&hub),
        "llm/chat slow@1.0.0",
        json!("late"),
        Duration::from_secs(10),
    )
    .await;
    let client = client(&hub).await;
    knows(&client, "llm/chat", 2).await;
    let started = Instant::now();
    let answered = client
        .query(q("llm/chat"))
        .select(Selection::All)
        .aggregate(Aggregation::FirstResponse)
        .send(json!("hi"))
        .await
        .unwrap();
    assert_eq!(answered.consensus.answer, Some(json!("quick")));
    // The slow agent's call is reported as cancelled, not dropped, and not
    // held against it.
    let c = &answered.consensus;
    assert_eq!(c.agents.len(), 2);
    assert!(
        c.failures
            .iter()
            .any(|f| f.agent == ecco::agent_id(&slow.peer_id())
                && f.failure.kind == FailureKind::Cancelled),
        "{:?}",
        c.failures
    );
    assert!(client.performance(&slow.peer_id()).is_none());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}, not after the slow agent's 10 s",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_overall_deadline_holds() {
    let hub = agent(
        None,
        "slow/op a@1.0.0",
        json!("late"),
        Duration::from_secs(10),
    )
    .await;
    let client = client(&hub).await;
    knows(&client, "slow/op", 1).await;
    let answered = client
        .query(q("slow/op"))
        .timeout(Duration::from_millis(500))
        .send(json!(null))
        .await
        .unwrap();
    assert_eq!(answered.consensus.verdict, Verdict::AllFailed);
    assert_eq!(
        answered.consensus.failures[0].failure.kind,
        FailureKind::Timeout
    );
}

#[tokio::test]
async fn round_robin_rotates_across_calls() {
    let hub = agent(None, "rr/x a@1.0.0", json!("a"), Duration::ZERO).await;
    let _b = agent(Some(&hub), "rr/x b@1.0.0", json!("b"), Duration::ZERO).await;
    let _c = agent(Some(&hub), "rr/x c@1.0.0", json!("c"), Duration::ZERO).await;
    let client = client(&hub).await;
    knows(&client, "rr/x", 3).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let answered = client
            .query(q("rr/x"))
            .select(Selection::from_str("round-robin:1").unwrap())
            .send(json!(null))
            .await
            .unwrap();
        seen.insert(answered.asked[0]);
    }
    assert_eq!(seen.len(), 3, "each agent asked once in three calls");
}

#[tokio::test]
async fn performance_memory_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hub = agent(None, "mem/x a@1.0.0", json!(1), Duration::ZERO).await;
    let mut config = Config::memory();
    config.bootstrap = hub.addresses().await.unwrap();
    let first = Agent::builder()
        .config(config.clone())
        .data_dir(dir.path())
        .spawn()
        .await
        .unwrap();
    knows(&first, "mem/x", 1).await;
    first.query(q("mem/x")).send(json!(null)).await.unwrap();
    assert_eq!(first.performance(&hub.peer_id()).unwrap().successes, 1);
    first.shutdown().await;
    let second = Agent::builder()
        .config(config)
        .data_dir(dir.path())
        .spawn()
        .await
        .unwrap();
    let remembered = second.performance(&hub.peer_id()).unwrap();
    assert_eq!(remembered.successes, 1);
    assert!(remembered.latency_ms.is_some());
}

#[tokio::test]
async fn capabilities_change_while_running() {
    let hub = agent(None, "cap/a a@1.0.0", json!(1), Duration::ZERO).await;
    let client = client(&hub).await;
    knows(&client, "cap/a", 1).await;
    hub.add_capability("cap/b b@1.0.0".parse().unwrap())
        .await
        .unwrap();
    knows(&client, "cap/b", 1).await;
    // Asking for a type without a handler fails with a typed error.
    let answered = client.query(q("cap/b")).send(json!(null)).await.unwrap();
    assert_eq!(
        answered.consensus.failures[0].failure.kind,
        FailureKind::NoHandler
    );

    assert!(hub.remove_capability("cap/a", "a").await.unwrap());
    let gone = tokio::time::timeout(WAIT, async {
        loop {
            if client.ranked(&q("cap/a")).await.unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the removal reaches the client");
    assert_eq!(hub.capabilities().len(), 1);
}

#[tokio::test]
async fn too_few_candidates_is_a_clear_error() {
    let hub = agent(None, "few/x a@1.0.0", json!(1), Duration::ZERO).await;
    let client = client(&hub).await;
    knows(&client, "few/x", 1).await;
    let err = client
        .query(q("few/x"))
        .select(Selection::All)
        .min_agents(3)
        .discovery_wait(Duration::from_millis(200))
        .send(json!(null))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at least 3"), "{err}");
}

#[tokio::test]
async fn a_peer_with_several_matching_offers_is_one_agent() {
    let hub = Agent::builder()
        .config(Config::memory())
        .capability("vote/x a@1.0.0".parse().unwrap())
        .capability("vote/x b@1.0.0".parse().unwrap())
        .handler("vote/x", |_call: Call| async {
            Ok(Answer::new(json!("yes")))
        })
        .spawn()
        .await
        .unwrap();
    let _other = agent(Some(&hub), "vote/x c@1.0.0", json!("no"), Duration::ZERO).await;
    let client = client(&hub).await;
    knows(&client, "vote/x", 2).await;
    let answered = client
        .query(q("vote/x"))
        .select(Selection::All)
        .send(json!(null))
        .await
        .unwrap();
    // Two offers, one agent: asked once, and its answer counted once, so
    // the vote is a tie and not "yes" by two to one.
    assert_eq!(answered.rankings.len(), 2, "{:?}", answered.rankings);
    assert_eq!(answered.asked.len(), 2);
    assert_eq!(
        answered
            .asked
            .iter()
            .filter(|p| **p == hub.peer_id())
            .count(),
        1
    );
    assert_eq!(answered.consensus.agents.len(), 2);
    assert_eq!(answered.consensus.agreement, 1);
}

#[tokio::test]
async fn all_asks_agents_found_beyond_those_already_known() {
    let hub = agent(None, "far/x a@1.0.0", json!("a"), Duration::ZERO).await;
    // Announces nothing: only the DHT can tell of it.
    let mut config = Config::memory();
    config.discovery.announcements = false;
    config.bootstrap = hub.addresses().await.unwrap();
    let hidden = Agent::builder()
        .config(config)
        .capability("far/x b@1.0.0".parse().unwrap())
        .handler("far/x", |_call: Call| async { Ok(Answer::new(json!("b"))) })
        .spawn()
        .await
        .unwrap();
    // The hub's DHT store knows the hidden agent.
    let published = tokio::time::timeout(WAIT, async {
        loop {
            let found = hub.node().lookup(&q("far/x")).await.unwrap();
            if found.iter().any(|f| f.peer == hidden.peer_id()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(published.is_ok(), "the hidden agent publishes to the hub");
    // The client learns no more than the hub's own offer by itself (no
    // announcements, no fetch on connect), as after an earlier lookup.
    let mut config = Config::memory();
    config.discovery.announcements = false;
    config.bootstrap = hub.addresses().await.unwrap();
    let client = Agent::builder().config(config).spawn().await.unwrap();
    client
        .node()
        .fetch_capabilities(hub.peer_id())
        .await
        .unwrap();
    let known = client.ranked(&q("far/x")).await.unwrap();
    assert_eq!(known.len(), 1);
    assert_eq!(known[0].peer, hub.peer_id());

    let answered = client
        .query(q("far/x"))
        .select(Selection::All)
        .send(json!(null))
        .await
        .unwrap();
    assert!(
        answered.asked.contains(&hidden.peer_id()),
        "asked only {:?}",
        answered.asked
    );
    assert_eq!(answered.asked.len(), 2);
}

/// With fewer agents than top-n wants, a query does not sit out the whole
/// discovery wait: once the DHT lookup has asked the mesh, the agents it
/// found are enough. Without the DHT, only announcements could bring more,
/// so the wait is kept.
#[tokio::test]
async fn a_lone_agent_is_asked_once_the_lookup_is_over() {
    let only = agent(None, "solo/x a@1.0.0", json!("a"), Duration::ZERO).await;
    let client = client(&only).await;
    knows(&client, "solo/x", 1).await;
    let three = Selection::TopN(3.try_into().unwrap());
    let started = Instant::now();
    let answered = client
        .query(q("solo/x"))
        .select(three)
        .discovery_wait(LONG_WAIT)
        .timeout(Duration::from_secs(120))
        .send(json!(null))
        .await
        .unwrap();
    ended_before_the_long_wait(started);
    assert_eq!(answered.asked, vec![only.peer_id()]);

    let mut config = Config::memory();
    config.discovery.dht = false;
    config.bootstrap = only.addresses().await.unwrap();
    let no_dht = Agent::builder().config(config).spawn().await.unwrap();
    knows(&no_dht, "solo/x", 1).await;
    let started = Instant::now();
    let answered = no_dht
        .query(q("solo/x"))
        .select(three)
        .discovery_wait(Duration::from_millis(800))
        .send(json!(null))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert_eq!(answered.asked, vec![only.peer_id()]);
}

/// A listing ends once the DHT lookup has asked the mesh and found its
/// agents, not after the whole wait; with nothing found it keeps looking.
#[tokio::test]
async fn discover_all_lists_every_agent_once_the_lookup_is_over() {
    let hub = agent(None, "list/x a@1.0.0", json!("a"), Duration::ZERO).await;
    let mut others = Vec::new();
    for name in ["b", "c", "d"] {
        let capability = format!("list/x {name}@1.0.0");
        others.push(agent(Some(&hub), &capability, json!(name), Duration::ZERO).await);
    }
    let mut expected: Vec<PeerId> = others.iter().map(Agent::peer_id).collect();
    expected.push(hub.peer_id());
    expected.sort();
    // Each of them is in the DHT, where the lookup finds it.
    for other in &others {
        let published = tokio::time::timeout(WAIT, async {
            while !hub
                .node()
                .lookup(&q("list/x"))
                .await
                .unwrap()
                .iter()
                .any(|f| f.peer == other.peer_id())
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(published.is_ok(), "{} publishes", other.peer_id());
    }
    // Known through the DHT only, as a client that just joined.
    let mut config = Config::memory();
    config.discovery.announcements = false;
    config.bootstrap = hub.addresses().await.unwrap();
    let client = Agent::builder().config(config).spawn().await.unwrap();

    let started = Instant::now();
    let found = client.discover_all(&q("list/x"), LONG_WAIT).await.unwrap();
    ended_before_the_long_wait(started);
    let mut peers: Vec<PeerId> = found.iter().map(|r| r.peer).collect();
    peers.sort();
    assert_eq!(peers, expected);

    let started = Instant::now();
    let none = client
        .discover_all(&q("list/nobody"), Duration::from_millis(800))
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(800));
}

/// A node that knows no peer yet (a LAN node before mDNS has found its
/// neighbours) ends its DHT lookup at once, having asked nobody: that must
/// not make the first agent it learns of all the agents there are.
#[tokio::test]
async fn a_lookup_that_asked_nobody_does_not_end_the_wait_for_all() {
    let client = Agent::builder()
        .config(Config::memory())
        .spawn()
        .await
        .unwrap();
    let mut events = client.node().subscribe();
    let asking = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .query(q("lan/x"))
                .select(Selection::All)
                .discovery_wait(Duration::from_secs(5))
                .timeout(WAIT)
                .send(json!(null))
                .await
        }
    });
    // Order, not timing: the lookup (of an empty routing table) is over
    // long before anyone joins.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = agent(Some(&client), "lan/x a@1.0.0", json!("a"), Duration::ZERO).await;
    let learned = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Event::CapabilitiesLearned(peer)) = events.recv().await
                && peer == a.peer_id()
            {
                break;
            }
        }
    })
    .await;
    assert!(learned.is_ok(), "the client learns of a");
    let b = agent(Some(&client), "lan/x b@1.0.0", json!("b"), Duration::ZERO).await;

    let answered = asking.await.unwrap().unwrap();
    let mut asked = answered.asked.clone();
    asked.sort();
    let mut expected = vec![a.peer_id(), b.peer_id()];
    expected.sort();
    assert_eq!(asked, expected, "asked only the first agent learned");
}

mod negotiation {
    use super::*;
    use ecco::agent::Proposal;
    use ecco::negotiation::{MAX_ROUNDS, Reply, Step, Terms};

    fn price(p: f64) -> Terms {
        Terms {
            price: Some(p),
            ..Terms::default()
        }
    }

    /// A provider that asks 0.010, agrees to counters of at least 0.008,
    /// meets lower ones (down to 0.005) at 0.009 as its last offer, and
    /// declines anything below.
    async fn haggler() -> Agent {
        Agent::builder()
            .config(Config::memory())
            .capability(
                "llm/chat h@1.0.0 price=0.01 latency_ms=200"
                    .parse()
                    .unwrap(),
            )
            .handler("llm/chat", |_c: Call| async {
                Ok(Answer::new(json!("done")))
            })
            .negotiator("llm/chat", |p: Proposal| async move {
                let asked = p
                    .capability
                    .as_ref()
                    .map(Terms::declared)
                    .unwrap_or_default();
                match p.step {
                    Step::Ask => Reply::Offer {
                        terms: asked,
                        last: false,
                    },
                    Step::Counter { terms, .. } => match terms.price {
                        Some(x) if x >= 0.008 => Reply::Agreed { terms },
                        Some(x) if x >= 0.005 => Reply::Offer {
                            terms: Terms {
                                price: Some(0.009),
                                ..asked
                            },
                            last: true,
                        },
                        _ => Reply::Declined {
                            reason: "too low".into(),
                        },
                    },
                    Step::Accept { terms } => Reply::Agreed { terms },
                    Step::Decline => Reply::Declined {
                        reason: "ok, bye".into(),
                    },
                }
            })
            .spawn()
            .await
            .unwrap()
    }

    async fn pair() -> (Agent, Agent) {
        let provider = haggler().await;
        let client = client(&provider).await;
        knows(&client, "llm/chat", 1).await;
        (provider, client)
    }

    #[tokio::test]
    async fn accept_the_offer() {
        let (provider, client) = pair().await;
        let mut n = client.negotiate(
            provider.peer_id(),
            "llm/chat".parse().unwrap(),
            json!("summarize this"),
        );
        let Reply::Offer { terms, last: false } = n.ask().await.unwrap() else {
            panic!("an offer first")
        };
        assert_eq!(terms.price, Some(0.01));
        assert_eq!(terms.latency_ms, Some(200.0));
        assert_eq!(
            n.accept(terms.clone()).await.unwrap(),
            Reply::Agreed { terms }
        );
    }

    #[tokio::test]
    async fn counter_then_agree() {
        let (provider, client) = pair().await;
        let mut n = client.negotiate(provider.peer_id(), "llm/chat".parse().unwrap(), json!(null));
        n.ask().await.unwrap();
        // Too low: the provider meets it at its last offer.
        let reply = n.counter(price(0.006)).await.unwrap();
        let Reply::Offer { terms, last: true } = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(terms.price, Some(0.009));
        // Meeting in the middle is agreed.
        assert_eq!(
            n.counter(price(0.0085)).await.unwrap(),
            Reply::Agreed {
                terms: price(0.0085)
            }
        );
        assert_eq!(n.round(), 3);
    }

    #[tokio::test]
    async fn decline_and_be_declined() {
        let (provider, client) = pair().await;
        let mut n = client.negotiate(provider.peer_id(), "llm/chat".parse().unwrap(), json!(null));
        n.ask().await.unwrap();
        assert!(matches!(
            n.counter(price(0.001)).await.unwrap(),
            Reply::Declined { .. }
        ));
        let n = client.negotiate(provider.peer_id(), "llm/chat".parse().unwrap(), json!(null));
        assert!(
            matches!(n.decline().await.unwrap(), Reply::Declined { reason } if reason == "ok, bye")
        );
    }

    #[tokio::test]
    async fn rounds_are_bounded() {
        let (provider, client) = pair().await;
        let mut n = client.negotiate(provider.peer_id(), "llm/chat".parse().unwrap(), json!(null));
        n.ask().await.unwrap();
        for _ in 2..=MAX_ROUNDS {
            n.counter(price(0.006)).await.unwrap();
        }
        assert!(matches!(
            n.counter(price(0.006)).await,
            Err(ecco::agent::NegotiationError::TooManyRounds)
        ));
    }

    #[tokio::test]
    async fn without_a_negotiator_the_declared_terms_hold() {
        let provider = agent(
            None,
            "geo/capital a@1.0.0 price=0.002",
            json!("Paris"),
            Duration::ZERO,
        )
        .await;
        let client = client(&provider).await;
        knows(&client, "geo/capital", 1).await;
        let mut n = client.negotiate(
            provider.peer_id(),
            "geo/capital".parse().unwrap(),
            json!(null),
        );
        let Reply::Offer { terms, .. } = n.ask().await.unwrap() else {
            panic!()
        };
        assert_eq!(terms.price, Some(0.002));
        let reply = n.counter(price(0.001)).await.unwrap();
        assert_eq!(
            reply,
            Reply::Offer {
                terms: terms.clone(),
                last: true
            }
        );
        assert_eq!(
            n.accept(terms.clone()).await.unwrap(),
            Reply::Agreed { terms }
        );
    }
}

/// A provider of `test/hang`, whose calls run until cancelled. The first
/// receiver hears of each call starting, the second of each call dropped.
async fn hanging_provider() -> (
    Agent,
    tokio::sync::mpsc::Receiver<()>,
    tokio::sync::mpsc::Receiver<()>,
) {
    let (dropped_tx, dropped) = tokio::sync::mpsc::channel(1);
    let (started_tx, started) = tokio::sync::mpsc::channel(1);
    let provider = Agent::builder()
        .config(Config::memory())
        .capability("test/hang h@1.0.0".parse().unwrap())
        .handler("test/hang", move |_call: Call| {
            let (guard, started_tx) = (SendOnDrop(dropped_tx.clone()), started_tx.clone());
            async move {
                let _guard = guard;
                let _ = started_tx.send(()).await;
                // Stands for a handler process that runs long.
                std::future::pending::<Result<Answer, HandlerError>>().await
            }
        })
        .spawn()
        .await
        .unwrap();
    (provider, started, dropped)
}

/// Calls `test/hang` on `peer` from `client`, in the background.
fn call_hang(client: &Agent, peer: PeerId, payload: u32) {
    let node = client.node().clone();
    tokio::spawn(async move {
        let request = ecco::node::Request::new("test/hang".parse().unwrap(), json!(payload));
        node.request(peer, request).await
    });
}

#[tokio::test]
async fn shutdown_cancels_the_handler_calls_still_running() {
    let (provider, mut started, mut dropped) = hanging_provider().await;
    let client = client(&provider).await;
    call_hang(&client, provider.peer_id(), 1);
    tokio::time::timeout(WAIT, started.recv()).await.unwrap();
    assert!(dropped.try_recv().is_err(), "the call runs");
    provider.shutdown().await;
    // Detached calls would have run on with the runtime: a CLI agent
    // exiting would leave its handler processes behind.
    assert!(
        dropped.try_recv().is_ok(),
        "the call is cancelled by the time shutdown returns"
    );
}

/// A requester that goes away (its process ends, its connection closes)
/// cancels the call it made: the handler does not work on for nobody until
/// its own timeout.
#[tokio::test]
async fn a_call_is_cancelled_when_its_requester_goes_away() {
    let (provider, mut started, mut dropped) = hanging_provider().await;
    let bystander = client(&provider).await;
    let requester = client(&provider).await;
    let peer = provider.peer_id();
    call_hang(&requester, peer, 1);
    tokio::time::timeout(WAIT, started.recv()).await.unwrap();
    assert!(dropped.try_recv().is_err(), "the call runs");
    requester.shutdown().await;
    let cancelled = tokio::time::timeout(WAIT, dropped.recv()).await;
    assert!(
        cancelled.is_ok(),
        "the call is cancelled once the requester is gone"
    );
    // The provider serves on, other peers included.
    call_hang(&bystander, peer, 2);
    tokio::time::timeout(WAIT, started.recv()).await.unwrap();
}

/// A requester that stops waiting (its query's deadline passed) but stays
/// connected cancels its call too: the request said how long it would
/// wait. Without that, the call would run on until the provider's own
/// request timeout (30 s, beyond `WAIT`).
#[tokio::test]
async fn a_call_is_cancelled_when_its_requester_stops_waiting() {
    let (provider, mut started, mut dropped) = hanging_provider().await;
    let client = client(&provider).await;
    knows(&client, "test/hang", 1).await;
    let asked = client
        .query(q("test/hang"))
        .timeout(Duration::from_millis(500))
        .send(json!(1))
        .await
        .unwrap();
    assert_eq!(
        asked.consensus.failures[0].failure.kind,
        FailureKind::Timeout
    );
    tokio::time::timeout(WAIT, started.recv()).await.unwrap();
    let cancelled = tokio::time::timeout(WAIT, dropped.recv()).await;
    assert!(
        cancelled.is_ok(),
        "the call is cancelled once its requester stopped waiting"
    );
    assert_eq!(
        client.node().connected_peers().await.unwrap(),
        vec![provider.peer_id()]
    );
}

/// A caller that stops waiting before the deadline (it dropped its
/// request: a query decided without this agent, a task aborted) cancels
/// the call, which would otherwise run until the request's deadline (30 s,
/// beyond `WAIT`); the provider's slot is free again.
#[tokio::test]
async fn a_call_is_cancelled_when_its_caller_drops_the_request() {
    let (provider, mut started, mut dropped) = hanging_provider().await;
    let client = client(&provider).await;
    let (node, peer) = (client.node().clone(), provider.peer_id());
    let asked = tokio::spawn(async move {
        let request = ecco::node::Request::new("test/hang".parse().unwrap(), json!(1));
        node.request(peer, request).await
    });
    tokio::time::timeout(WAIT, started.recv()).await.unwrap();
    assert!(dropped.try_recv().is_err(), "the call runs");
    asked.abort();
    let cancelled = tokio::time::timeout(WAIT, dropped.recv()).await;
    assert!(cancelled.is_ok(), "the call is cancelled once nobody waits");
    call_hang(&client, peer, 2);
    tokio::time::timeout(WAIT, started.recv()).await.unwrap();
}

/// A query decided without an agent (the first answer wins) cancels that
/// agent's call at the agent too, not only at the client.
#[tokio::test]
async fn a_query_decided_without_an_agent_cancels_its_call_there() {
    let (hanging, mut started, mut dropped) = hanging_provider().await;
    // Answers after a moment, so that the other call has started by then.
    let _fast = agent(
        Some(&hanging),
        "test/hang f@1.0.0",
        json!("quick"),
        Duration::from_millis(300),
    )
    .await;
    let client = client(&hanging).await;
    knows(&client, "test/hang", 2).await;
    let answered = client
        .query(q("test/hang"))
        .select(Selection::All)
        .aggregate(Aggregation::FirstResponse)
        .send(json!(1))
        .await
        .unwrap();
    assert_eq!(answered.consensus.answer, Some(json!("quick")));
    tokio::time::timeout(WAIT, started.recv()).await.unwrap();
    let cancelled = tokio::time::timeout(WAIT, dropped.recv()).await;
    assert!(
        cancelled.is_ok(),
        "the hanging agent's call is cancelled, not left to its 30 s deadline"
    );
}

/// A request that waited for a free slot past its requester's deadline,
/// or whose caller dropped it meanwhile, is not started at all: a handler
/// process would only be killed at once.
#[tokio::test]
async fn a_request_that_waited_past_its_deadline_or_was_cancelled_is_not_started() {
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (release2, started2) = (release.clone(), started.clone());
    let provider = Agent::builder()
        .config(Config::memory())
        .concurrency(1)
        .capability("test/slot s@1.0.0".parse().unwrap())
        .handler("test/slot", move |call: Call| {
            let (release, started) = (release2.clone(), started2.clone());
            async move {
                started.lock().unwrap().push(call.request.payload.clone());
                if call.request.payload == json!("block") {
                    release.notified().await;
                }
                Ok::<_, HandlerError>(Answer::new(json!("done")))
            }
        })
        .spawn()
        .await
        .unwrap();
    let client = client(&provider).await;
    let (node, peer) = (client.node().clone(), provider.peer_id());
    let ask = |payload: &str, within: Duration| {
        let (node, payload) = (node.clone(), json!(payload));
        async move {
            let request = ecco::node::Request::new("test/slot".parse().unwrap(), payload);
            node.request_within(peer, request, within).await
        }
    };
    let blocking = tokio::spawn(ask("block", WAIT));
    while started.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    let late = ask("late", Duration::from_millis(300)).await;
    assert!(
        matches!(late, Err(ecco::node::RequestError::Timeout(_))),
        "{late:?}"
    );
    // Several, since a call whose requester is gone may also be dropped
    // before its first poll, by chance.
    let dropped: Vec<_> = (0..5).map(|_| tokio::spawn(ask("dropped", WAIT))).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    dropped.iter().for_each(tokio::task::JoinHandle::abort);
    // The provider counts the deadline from the request's arrival, a
    // little after the requester does; the cancel leaves on the
    // requester's next tick (250 ms), then takes a round trip.
    tokio::time::sleep(Duration::from_secs(1)).await;
    release.notify_one();
    blocking.await.unwrap().unwrap();
    // The slot is free again, and the next request is served.
    ask("next", WAIT).await.unwrap();
    assert_eq!(
        *started.lock().unwrap(),
        vec![json!("block"), json!("next")]
    );
}

/// Sends on its channel when dropped: a handler future that was cancelled.
struct SendOnDrop(tokio::sync::mpsc::Sender<()>);

impl Drop for SendOnDrop {
    fn drop(&mut self) {
        let _ = self.0.try_send(());
    }
}

/// A provider of `test/fail` whose handler fails naming a secret, or
/// refuses when the payload is "refuse"; with private errors or not.
async fn failing_provider(private: bool) -> Agent {
    Agent::builder()
        .config(Config::memory())
        .private_errors(private)
        .capability("test/fail f@1.0.0".parse().unwrap())
        .handler("test/fail", |call: Call| async move {
            if call.request.payload == json!("refuse") {
                Err::<Answer, _>(HandlerError::refused("not for you"))
            } else if call.request.payload == json!("late") {
                Err(HandlerError::failed("did not finish within 1s").public())
            } else {
                Err(HandlerError::failed("cannot open /srv/secret/db.sqlite"))
            }
        })
        .spawn()
        .await
        .unwrap()
}

/// What `client` gets for `payload` from `provider`'s `test/fail`.
async fn fail_error(client: &Agent, provider: &Agent, payload: &str) -> ecco::node::RequestError {
    let request = ecco::node::Request::new("test/fail".parse().unwrap(), json!(payload));
    client
        .node()
        .request(provider.peer_id(), request)
        .await
        .unwrap_err()
}

#[tokio::test]
async fn private_errors_keep_a_failure_s_message_from_the_requester() {
    use ecco::node::RequestError;
    let open = failing_provider(false).await;
    let asker = client(&open).await;
    let e = fail_error(&asker, &open, "x").await;
    assert_eq!(
        e,
        RequestError::HandlerFailed("cannot open /srv/secret/db.sqlite".into())
    );

    let private = failing_provider(true).await;
    let asker = client(&private).await;
    let RequestError::HandlerFailed(message) = fail_error(&asker, &private, "x").await else {
        panic!("a handler failure");
    };
    assert!(!message.contains("secret"), "{message}");
    let reference = message
        .strip_prefix("the handler failed (reference ")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no reference in: {message}"));
    assert_eq!(reference.len(), 8, "{message}");
    assert!(
        reference.chars().all(|c| c.is_ascii_hexdigit()),
        "{message}"
    );
    // A refusal is the handler's answer, and a public failure gives
    // nothing away: neither is hidden.
    assert_eq!(
        fail_error(&asker, &private, "refuse").await,
        RequestError::Refused("not for you".into())
    );
    assert_eq!(
        fail_error(&asker, &private, "late").await,
        RequestError::HandlerFailed("did not finish within 1s".into())
    );
}
