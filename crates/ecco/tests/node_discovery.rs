//! Capability announcements over gossipsub, on the memory transport.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{caps, entry, expired, learned, learned_all, link, node};
use ecco::discovery::{Announcement, Entry, Source};
use ecco::node::{Config, FetchError, Node};
use ecco::{CapabilityDocument, Identity};

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
    // Indexed once, then shared while the directory does not change.
    let (once, again) = (
        nodes[3].offers().await.unwrap(),
        nodes[3].offers().await.unwrap(),
    );
    assert!(std::sync::Arc::ptr_eq(&once, &again));

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
    // Callers that meet the change together share one index.
    let (x, y) = tokio::join!(nodes[3].offers(), nodes[3].offers());
    assert!(std::sync::Arc::ptr_eq(&x.unwrap(), &y.unwrap()));
    // Rankings follow: the index built for the first `find` is not reused.
    let found = nodes[3]
        .find("llm/* +summarize".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].capability.version().major, 2);
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
    // Rejected messages cost their sender standing; a replay is only ignored.
    let mallory_score = b.gossip_score(mallory.peer_id()).await.unwrap().unwrap();
    assert!(mallory_score < 0.0, "{mallory_score}");
    let alice_score = b.gossip_score(alice.peer_id()).await.unwrap().unwrap();
    assert!(alice_score >= 0.0, "{alice_score}");
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

/// A node that starts listening somewhere new says so at once: its
/// announcement carries its addresses, and peers must not keep only the old
/// ones until the next periodic announcement (100 s). A node listening on
/// all interfaces learns most of them only after `spawn` returns, and its
/// first announcement lists only its loopback address.
#[tokio::test]
async fn a_new_listen_address_is_announced_at_once() {
    let (a_id, b_id) = (Identity::generate(), Identity::generate());
    let a = node(&a_id).await;
    let b = node(&b_id).await;
    let mut events = b.subscribe();
    a.set_capabilities(caps(&["text/echo e@1.0.0"]))
        .await
        .unwrap();
    link(&b, &a).await;
    learned(&mut events, a_id.peer_id()).await;
    // Let the announcement that b's subscription sets off go out first (in
    // at most 450 ms): one sent later would carry the new address anyway.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let first = a.listen_addrs().await.unwrap();
    let addrs = |entries: &[Entry]| entry(entries, a_id.peer_id()).unwrap().addrs.clone();
    assert_eq!(addrs(&b.directory().await.unwrap()), first);

    let second = a.listen_on("/memory/0".parse().unwrap()).await.unwrap();
    loop {
        learned(&mut events, a_id.peer_id()).await;
        if addrs(&b.directory().await.unwrap()).contains(&second) {
            break;
        }
    }
}

/// A capability fetch right after a node starts listening somewhere new is
/// answered with the new address, not with the announcement signed a
/// moment before (which fetches otherwise reuse for a second).
#[tokio::test]
async fn a_fetch_after_a_new_listen_address_has_it() {
    let a_id = Identity::generate();
    let a = node(&a_id).await;
    let mut quiet = Config::memory();
    quiet.discovery.announcements = false;
    let (b, _) = Node::spawn(&Identity::generate(), quiet).await.unwrap();
    link(&b, &a).await;
    a.set_capabilities(caps(&["text/echo e@1.0.0"]))
        .await
        .unwrap();
    let second = a.listen_on("/memory/0".parse().unwrap()).await.unwrap();
    let fetched = b.fetch_capabilities(a_id.peer_id()).await.unwrap().unwrap();
    assert!(fetched.addrs.contains(&second), "{:?}", fetched.addrs);
}

#[tokio::test]
async fn a_peers_document_can_be_fetched() {
    let (a_id, b_id) = (Identity::generate(), Identity::generate());
    let a = node(&a_id).await;
    let mut quiet = Config::memory();
    quiet.discovery.announcements = false;
    let (b, _) = Node::spawn(&b_id, quiet).await.unwrap();
    link(&b, &a).await;
    assert_eq!(b.fetch_capabilities(a_id.peer_id()).await.unwrap(), None);

    a.set_capabilities(caps(&[
        "vision/ocr lens@1.0.0 +pdf",
        "vision/caption eye@1.0.0",
    ]))
    .await
    .unwrap();
    let fetched = b.fetch_capabilities(a_id.peer_id()).await.unwrap().unwrap();
    assert_eq!(fetched.source, Source::Fetch);
    assert_eq!(fetched.capabilities.len(), 2);
    let found = b.find("vision/ocr +pdf".parse().unwrap()).await.unwrap();
    assert_eq!(
        found[0].peer,
        a_id.peer_id(),
        "a fetched document is matchable"
    );

    // A peer nobody knows the address of cannot be fetched from.
    let stranger = Identity::generate().peer_id();
    assert!(matches!(
        b.fetch_capabilities(stranger).await,
        Err(FetchError::Unreachable { .. })
    ));
}

/// Fetches in a loop do not each cost a signature: the sequence numbers,
/// which start at the clock in ms, must not run ahead of it (a restarted
/// node would be ignored as stale until the clock caught up).
#[tokio::test]
async fn fetches_in_a_loop_do_not_each_sign_an_announcement() {
    let (a_id, b_id) = (Identity::generate(), Identity::generate());
    let a = node(&a_id).await;
    let mut quiet = Config::memory();
    quiet.discovery.announcements = false;
    let (b, _) = Node::spawn(&b_id, quiet).await.unwrap();
    a.set_capabilities(caps(&["tool/x n@1.0.0"])).await.unwrap();
    link(&b, &a).await;
    let started = std::time::Instant::now();
    let first = b
        .fetch_capabilities(a_id.peer_id())
        .await
        .unwrap()
        .unwrap()
        .seq;
    const FETCHES: u64 = 30;
    for _ in 0..FETCHES {
        b.fetch_capabilities(a_id.peer_id()).await.unwrap().unwrap();
    }
    let last = entry(&b.directory().await.unwrap(), a_id.peer_id())
        .unwrap()
        .seq;
    // At most one new signature a second.
    let signed = last - first;
    assert!(
        signed <= started.elapsed().as_secs() + 1 && signed < FETCHES,
        "{signed} announcements signed for {FETCHES} fetches in {:?}",
        started.elapsed()
    );
    // A change is never answered with the old document.
    a.set_capabilities(caps(&["tool/x n@2.0.0"])).await.unwrap();
    let fetched = b.fetch_capabilities(a_id.peer_id()).await.unwrap().unwrap();
    assert_eq!(fetched.capabilities[0].version().major, 2);
}

/// A node whose directory is full keeps what it holds, but a valid
/// announcement it has no room for is still no fault of its sender: it is
/// forwarded, and the sender keeps its standing.
#[tokio::test]
async fn a_full_directory_forwards_and_does_not_penalise() {
    let (a_id, b_id, c_id, d_id) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    // Gossip only: the DHT would connect D to B.
    let gossip = || {
        let mut config = Config::memory();
        config.discovery.dht = false;
        config
    };
    let mut small = gossip();
    small.limits.max_directory_peers = 1;
    let (c, _) = Node::spawn(&c_id, small).await.unwrap();
    let (a, _) = Node::spawn(&a_id, gossip()).await.unwrap();
    // B's announcements expire sooner than A's, so they cannot displace A.
    let mut brief = gossip();
    brief.limits.announcement_ttl = Duration::from_secs(60);
    let (b, _) = Node::spawn(&b_id, brief).await.unwrap();
    let (d, _) = Node::spawn(&d_id, gossip()).await.unwrap();

    let mut at_c = c.subscribe();
    a.set_capabilities(caps(&["tool/a kept@1.0.0"]))
        .await
        .unwrap();
    link(&c, &a).await;
    learned(&mut at_c, a_id.peer_id()).await;
    // D hears B only through C: they are never connected.
    link(&d, &c).await;
    link(&b, &c).await;
    let mut at_d = d.subscribe();
    b.set_capabilities(caps(&["tool/b relayed@1.0.0"]))
        .await
        .unwrap();
    learned(&mut at_d, b_id.peer_id()).await;
    assert!(!d.connected_peers().await.unwrap().contains(&b_id.peer_id()));

    let held = c.directory().await.unwrap();
    assert_eq!(held.len(), 1);
    assert!(entry(&held, a_id.peer_id()).is_some());
    let score = c.gossip_score(b_id.peer_id()).await.unwrap().unwrap();
    assert!(score >= 0.0, "B lost standing at C: {score}");
    // Asked for directly, the document is reported valid but not kept.
    assert!(matches!(
        c.fetch_capabilities(b_id.peer_id()).await,
        Err(FetchError::DirectoryFull { peer }) if peer == b_id.peer_id()
    ));
}

/// Capabilities whose entry takes about `n` × 400 bytes.
fn bulky(name: &str, n: usize) -> Vec<ecco::Capability> {
    (0..n)
        .map(|i| {
            format!("tool/{name} {name}{i}@1.0.0 +a_feature_of_some_length_{i} region=europe-west")
                .parse()
                .unwrap()
        })
        .collect()
}

/// Peers with large documents cannot make a node hold more than its byte
/// budget: a newcomer evicts entries closer to expiry, and subscribers hear
/// of it; one that does not fit is not kept.
#[tokio::test]
async fn a_directory_bounded_in_bytes_evicts_and_says_so() {
    let (a_id, b_id, c_id, e_id) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let (a_caps, b_caps, e_caps) = (bulky("a", 10), bulky("b", 40), bulky("e", 60));
    // Without addresses: a memory-transport address or two take a few
    // dozen bytes.
    let size = |caps: &[ecco::Capability]| Entry::footprint_of(caps, &[]);
    let (a_len, b_len) = (size(&a_caps), size(&b_caps));
    // Room for B and its addresses, not for A too.
    let budget = b_len + 256;
    assert!(a_len > 256 && a_len <= budget);
    assert!(size(&e_caps) > budget);
    let gossip = || {
        let mut config = Config::memory();
        config.discovery.dht = false;
        config
    };
    let mut small = gossip();
    small.limits.max_directory_bytes = budget;
    let (c, _) = Node::spawn(&c_id, small).await.unwrap();
    // A's announcements expire before B's: B may take A's room.
    let mut brief = gossip();
    brief.limits.announcement_ttl = Duration::from_secs(60);
    let (a, _) = Node::spawn(&a_id, brief).await.unwrap();
    let (b, _) = Node::spawn(&b_id, gossip()).await.unwrap();
    let (e, _) = Node::spawn(&e_id, gossip()).await.unwrap();

    let mut at_c = c.subscribe();
    a.set_capabilities(a_caps).await.unwrap();
    link(&c, &a).await;
    learned(&mut at_c, a_id.peer_id()).await;
    b.set_capabilities(b_caps).await.unwrap();
    link(&b, &c).await;
    expired(&mut at_c, a_id.peer_id()).await;
    learned(&mut at_c, b_id.peer_id()).await;
    let held = c.directory().await.unwrap();
    assert_eq!(held.len(), 1);
    let kept = entry(&held, b_id.peer_id()).unwrap();
    assert!(kept.footprint >= b_len && kept.footprint <= budget);

    // Larger than the whole budget: valid, never kept.
    e.set_capabilities(e_caps).await.unwrap();
    link(&e, &c).await;
    assert!(matches!(
        c.fetch_capabilities(e_id.peer_id()).await,
        Err(FetchError::DirectoryFull { peer }) if peer == e_id.peer_id()
    ));
    let held = c.directory().await.unwrap();
    assert_eq!(held.len(), 1);
    assert!(entry(&held, b_id.peer_id()).is_some());
}

#[tokio::test]
async fn a_peer_that_leaves_expires_across_the_mesh() {
    let ids: Vec<Identity> = (0..3).map(|_| Identity::generate()).collect();
    let mut nodes = Vec::new();
    for id in &ids {
        nodes.push(node(id).await);
    }
    link(&nodes[1], &nodes[0]).await;
    link(&nodes[2], &nodes[1]).await;
    let mut far = nodes[0].subscribe();
    let leaving = ids[2].peer_id();
    nodes[2]
        .set_capabilities(caps(&["tool/x temp@1.0.0"]))
        .await
        .unwrap();
    learned(&mut far, leaving).await;

    // Offering nothing any more is said, not left to the TTL.
    nodes[2].set_capabilities(Vec::new()).await.unwrap();
    expired(&mut far, leaving).await;
    nodes[2]
        .set_capabilities(caps(&["tool/x temp@1.0.1"]))
        .await
        .unwrap();
    learned(&mut far, leaving).await;

    // A clean shutdown withdraws the capabilities, two hops away too.
    nodes.pop().unwrap().shutdown().await;
    expired(&mut far, leaving).await;
    assert!(entry(&nodes[0].directory().await.unwrap(), leaving).is_none());
}

#[tokio::test]
async fn a_peer_that_crashes_expires() {
    let watcher_id = Identity::generate();
    let watcher = node(&watcher_id).await;
    let mut events = watcher.subscribe();
    // The crashing node runs on its own runtime; dropping the runtime kills
    // its task without a clean shutdown, as a crash would.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (crash_tx, crash_rx) = tokio::sync::oneshot::channel::<()>();
    let victim_id = Identity::generate();
    let victim_peer = victim_id.peer_id();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (victim, _) = Node::spawn(&victim_id, Config::memory()).await.unwrap();
            victim
                .set_capabilities(caps(&["tool/x fragile@1.0.0"]))
                .await
                .unwrap();
            let addr = victim.listen_addrs().await.unwrap().remove(0);
            ready_tx.send(addr).unwrap();
            let _ = crash_rx.await;
        });
        drop(rt);
    });
    let addr = ready_rx.await.unwrap();
    watcher.dial(addr).await.unwrap();
    learned(&mut events, victim_peer).await;
    crash_tx.send(()).unwrap();
    expired(&mut events, victim_peer).await;
    thread.join().unwrap();
}
