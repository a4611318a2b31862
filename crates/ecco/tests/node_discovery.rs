//! Capability announcements over gossipsub, on the memory transport.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ecco::discovery::{Announcement, Entry};
use ecco::node::{Config, Event, Node};
use ecco::{CapabilityDocument, Identity, PeerId};
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(20);

async fn node(identity: &Identity) -> Node {
    Node::spawn(identity, Config::memory()).await.unwrap().0
}

async fn link(from: &Node, to: &Node) {
    let addr = to.listen_addrs().await.unwrap().remove(0);
    from.dial(addr).await.unwrap();
}

/// Waits, at most `WAIT`, until the capabilities of every peer in `peers` are learned, in any order.
async fn learned_all(events: &mut broadcast::Receiver<Event>, peers: &[PeerId]) {
    let mut missing: Vec<PeerId> = peers.to_vec();
    tokio::time::timeout(WAIT, async {
        while !missing.is_empty() {
            match events.recv().await {
                Ok(Event::CapabilitiesLearned(p)) => missing.retain(|m| *m != p),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not learned within {WAIT:?}: {peers:?}"));
}

async fn learned(events: &mut broadcast::Receiver<Event>, peer: PeerId) {
    learned_all(events, &[peer]).await;
}

fn caps(text: &[&str]) -> Vec<ecco::Capability> {
    text.iter().map(|t| t.parse().unwrap()).collect()
}

fn entry(entries: &[Entry], peer: PeerId) -> Option<&Entry> {
    entries.iter().find(|e| e.peer == peer)
}

#[tokio::test]
async fn an_announcement_reaches_every_node_of_a_chain() {
    let ids: Vec<Identity> = (0..4).map(|_| Identity::generate()).collect();
    let mut nodes = Vec::new();
    for id in &ids {
        nodes.push(node(id).await);
    }
    for pair in nodes.windows(2) {
        link(&pair[1], &pair[0]).await;
    }
    let mut watchers: Vec<_> = nodes[1..].iter().map(Node::subscribe).collect();
    nodes[0]
        .set_capabilities(caps(&["llm/chat atlas@1.0.0 +summarize price=0.002"]))
        .await
        .unwrap();
    for w in &mut watchers {
        learned(w, ids[0].peer_id()).await;
    }
    let found = nodes[3]
        .find("llm/* +summarize price<=0.01".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].peer, ids[0].peer_id());
    assert_eq!(found[0].capability.name(), "atlas");

    // A change is announced at once and reaches the far end.
    nodes[0]
        .set_capabilities(caps(&["llm/chat atlas@2.0.0 +summarize price=0.002"]))
        .await
        .unwrap();
    learned(&mut watchers[2], ids[0].peer_id()).await;
    let dir = nodes[3].directory().await.unwrap();
    assert_eq!(
        entry(&dir, ids[0].peer_id()).unwrap().capabilities[0]
            .version()
            .major,
        2
    );
}

#[tokio::test]
async fn forged_and_replayed_announcements_are_rejected() {
    let alice = Identity::generate();
    let bob = Identity::generate();
    let mallory = Identity::generate();
    let (a, b, m) = (node(&alice).await, node(&bob).await, node(&mallory).await);
    link(&b, &a).await;
    link(&m, &b).await;
    let mut watch = b.subscribe();
    a.set_capabilities(caps(&["llm/chat genuine@1.0.0"]))
        .await
        .unwrap();
    learned(&mut watch, alice.peer_id()).await;
    // Mallory's own announcements reach Bob, so what she sends next does too.
    m.set_capabilities(caps(&["tool/x honest@1.0.0"]))
        .await
        .unwrap();
    learned(&mut watch, mallory.peer_id()).await;
    let genuine = entry(&b.directory().await.unwrap(), alice.peer_id())
        .unwrap()
        .clone();

    let fake = |seq, signer: &Identity| {
        Announcement {
            peer: alice.peer_id(),
            mesh: "ecco".into(),
            seq,
            issued_at_ms: genuine.last_seen_ms,
            ttl_secs: 300,
            addrs: Vec::new(),
            document: CapabilityDocument::new(caps(&["llm/chat evil@6.6.6"])).unwrap(),
        }
        .sign(signer)
        .to_bytes()
    };
    // Mallory signs in Alice's name; then she relays a copy genuinely signed by Alice.
    m.publish_raw_announcement(fake(genuine.seq + 10, &mallory))
        .await
        .unwrap();
    m.publish_raw_announcement(fake(genuine.seq + 11, &alice))
        .await
        .unwrap();
    // Alice's own node replays an older announcement of hers.
    a.publish_raw_announcement(fake(genuine.seq - 1, &alice))
        .await
        .unwrap();
    // Then Mallory and Alice announce for real; once Bob has learned both,
    // the messages sent before have been handled.
    m.set_capabilities(caps(&["tool/x honest@1.1.0"]))
        .await
        .unwrap();
    a.set_capabilities(caps(&["llm/chat genuine@1.1.0"]))
        .await
        .unwrap();
    learned_all(&mut watch, &[mallory.peer_id(), alice.peer_id()]).await;

    let dir = b.directory().await.unwrap();
    let now = entry(&dir, alice.peer_id()).unwrap();
    assert_eq!(now.capabilities[0].name(), "genuine");
    assert_eq!(now.capabilities[0].version().to_string(), "1.1.0");
    assert!(
        dir.iter()
            .all(|e| e.capabilities.iter().all(|c| c.name() != "evil"))
    );
}

#[tokio::test]
async fn meshes_do_not_hear_each_other() {
    let (x, y) = (Identity::generate(), Identity::generate());
    let mut other = Config::memory();
    other.mesh = "hospital".into();
    let (a, _) = Node::spawn(&x, other).await.unwrap();
    let b = node(&y).await;
    link(&b, &a).await;
    let mut watch = b.subscribe();
    a.set_capabilities(caps(&["llm/chat secret@1.0.0"]))
        .await
        .unwrap();
    let heard =
        tokio::time::timeout(Duration::from_secs(2), learned(&mut watch, x.peer_id())).await;
    assert!(
        heard.is_err(),
        "a node of another mesh must not learn its capabilities"
    );
    assert!(b.directory().await.unwrap().is_empty());
}
