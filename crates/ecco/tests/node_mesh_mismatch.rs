//! Dials that meet another mesh, or another swarm key, say so.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use ecco::Identity;
use ecco::node::{Config, Node, NodeError, SwarmKey, generate_swarm_key};
use libp2p::Multiaddr;

const SAME_KEY: &str = "(a private mesh: does that peer use the same swarm key?)";
const NEEDS_KEY: &str = "(if that peer runs a private mesh, this node needs its swarm key)";

/// A node whose handshakes give up after 500 ms: a peer with another swarm
/// key often stalls the handshake (each side waits for bytes the other
/// will not send) until then.
async fn node(base: Config, mesh: &str, key: Option<SwarmKey>) -> Node {
    let mut config = base;
    config.mesh = mesh.to_owned();
    config.swarm_key = key;
    config.limits.handshake_timeout = Duration::from_millis(500);
    Node::spawn(&Identity::generate(), config).await.unwrap().0
}

async fn address(node: &Node) -> Multiaddr {
    node.listen_addrs().await.unwrap().remove(0)
}

/// Dials `to` from `from` a few times at once (a garbled handshake may
/// fail at once or stall until the timeout, by chance) and returns each
/// failure's reason.
async fn failures(from: &Node, to: &Multiaddr) -> Vec<String> {
    let dials = (0..3).map(|_| from.dial(to.clone()));
    futures::future::join_all(dials)
        .await
        .into_iter()
        .map(|dialled| match dialled {
            Err(NodeError::Dial { reason, .. }) => reason,
            other => panic!("expected a failed dial, got {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_peer_of_another_mesh_is_refused_naming_both_meshes() {
    let a = node(Config::memory(), "a", None).await;
    let b = node(Config::memory(), "b", None).await;
    let addr = address(&b).await;
    let refused = a.dial_member(addr.clone()).await.unwrap_err();
    match &refused {
        NodeError::OtherMesh {
            addr: dialled,
            ours,
            theirs,
            version,
        } => {
            assert_eq!(*dialled, addr.to_string());
            assert_eq!(ours, "a");
            assert_eq!(theirs.as_deref(), Some("b"));
            assert_eq!(version, "/ecco/b/1.0.0");
        }
        other => panic!("expected another mesh, got {other:?}"),
    }
    assert_eq!(
        refused.to_string(),
        format!("{addr} is on mesh `b`, this node on mesh `a`")
    );
    // A plain dial connects; the peer is dropped once it identifies.
    assert_eq!(a.dial(addr).await.unwrap(), b.peer_id());
    tokio::time::timeout(common::WAIT, async {
        while !a.connected_peers().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the peer of another mesh is disconnected");
}

#[tokio::test]
async fn a_member_of_this_mesh_is_dialled_once_identified() {
    let a = node(Config::memory(), "a", None).await;
    let b = node(Config::memory(), "a", None).await;
    assert_eq!(a.dial_member(address(&b).await).await.unwrap(), b.peer_id());
    assert_eq!(a.connected_peers().await.unwrap(), vec![b.peer_id()]);
}

#[tokio::test]
async fn a_peer_that_does_not_identify_is_no_member() {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;

    let mut bare = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(common::memory_transport)
        .unwrap()
        .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build();
    bare.listen_on("/memory/0".parse().unwrap()).unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = bare.select_next_some().await {
            break address;
        }
    };
    let driven = tokio::spawn(async move {
        loop {
            bare.select_next_some().await;
        }
    });
    let a = node(Config::memory(), "ecco", None).await;
    match a.dial_member(addr).await {
        Err(NodeError::Dial { reason, .. }) => {
            assert!(
                reason.starts_with("the peer did not identify itself"),
                "{reason}"
            );
        }
        other => panic!("expected a failed dial, got {other:?}"),
    }
    driven.abort();
}

/// A failed handshake is told in one line, by its innermost cause, not by
/// libp2p's nested texts of every layer.
fn assert_concise(reason: &str) {
    assert!(reason.starts_with("the handshake failed"), "{reason}");
    assert!(
        !reason.contains('\n') && !reason.contains("Multiple dial errors"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_wrong_swarm_key_is_named_as_the_likely_cause() {
    for base in [Config::loopback(), Config::memory()] {
        let server = node(base.clone(), "ecco", Some(generate_swarm_key())).await;
        let client = node(base, "ecco", Some(generate_swarm_key())).await;
        for reason in failures(&client, &address(&server).await).await {
            assert!(reason.ends_with(SAME_KEY), "{reason}");
            assert_concise(&reason);
        }
    }
}

#[tokio::test]
async fn a_missing_swarm_key_is_named_as_the_likely_cause() {
    for base in [Config::loopback(), Config::memory()] {
        let key = generate_swarm_key();
        let private = node(base.clone(), "ecco", Some(key)).await;
        let public = node(base, "ecco", None).await;
        // The node without the key dials the private one, and the other way.
        for reason in failures(&public, &address(&private).await).await {
            assert!(reason.ends_with(NEEDS_KEY), "{reason}");
            assert_concise(&reason);
        }
        for reason in failures(&private, &address(&public).await).await {
            assert!(reason.ends_with(SAME_KEY), "{reason}");
            assert_concise(&reason);
        }
    }
}

#[tokio::test]
async fn nobody_listening_is_no_swarm_key_matter() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    for key in [None, Some(generate_swarm_key())] {
        let client = node(Config::loopback(), "ecco", key).await;
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        match client.dial(addr).await {
            Err(NodeError::Dial { reason, .. }) => {
                assert!(!reason.contains("swarm key"), "{reason}");
            }
            other => panic!("expected a failed dial, got {other:?}"),
        }
    }
}

/// The node's own bootstrap dial may meet the peer first, and closing that
/// peer's connections aborts a member dial still pending: that dial gets the
/// same answer, not "aborted".
#[tokio::test]
async fn a_member_dial_racing_the_bootstrap_dial_names_both_meshes() {
    let b = node(Config::loopback(), "b", None).await;
    let addr = address(&b)
        .await
        .with(libp2p::multiaddr::Protocol::P2p(b.peer_id()));
    for _ in 0..20 {
        let mut config = Config::loopback();
        config.bootstrap = vec![addr.clone()];
        let a = node(config, "a", None).await;
        let refused = a.dial_member(addr.clone()).await.unwrap_err();
        assert!(
            matches!(&refused, NodeError::OtherMesh { theirs: Some(theirs), .. } if theirs == "b"),
            "{refused}"
        );
    }
}
