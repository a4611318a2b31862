//! Helpers shared by the multi-node tests.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use ecco::discovery::Entry;
use ecco::node::{Config, Event, Node};
use ecco::{Identity, PeerId};
use tokio::sync::broadcast;

pub const WAIT: Duration = Duration::from_secs(20);

/// The memory transport with Noise and Yamux, for bare libp2p peers that
/// play misbehaving or minimal nodes.
pub fn memory_transport(
    key: &libp2p::identity::Keypair,
) -> libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)> {
    use libp2p::Transport as _;
    libp2p::core::transport::MemoryTransport::default()
        .upgrade(libp2p::core::upgrade::Version::V1)
        .authenticate(libp2p::noise::Config::new(key).unwrap())
        .multiplex(libp2p::yamux::Config::default())
        .boxed()
}

pub async fn node(identity: &Identity) -> Node {
    Node::spawn(identity, Config::memory()).await.unwrap().0
}

pub async fn link(from: &Node, to: &Node) {
    let addr = to.listen_addrs().await.unwrap().remove(0);
    from.dial(addr).await.unwrap();
}

/// Waits until the capabilities of every peer in `peers` are learned, in any order.
pub async fn learned_all(events: &mut broadcast::Receiver<Event>, peers: &[PeerId]) {
    let mut missing: Vec<PeerId> = peers.to_vec();
    while !missing.is_empty() {
        wait_for(events, |e| match e {
            Event::CapabilitiesLearned(p) => {
                missing.retain(|m| m != p);
                Some(())
            }
            _ => None,
        })
        .await;
    }
}

pub async fn learned(events: &mut broadcast::Receiver<Event>, peer: PeerId) {
    learned_all(events, &[peer]).await;
}

pub fn caps(text: &[&str]) -> Vec<ecco::Capability> {
    text.iter().map(|t| t.parse().unwrap()).collect()
}

pub fn entry(entries: &[Entry], peer: PeerId) -> Option<&Entry> {
    entries.iter().find(|e| e.peer == peer)
}

/// Waits, at most `WAIT`, for an event that `want` accepts, and returns it.
pub async fn wait_for<T>(
    events: &mut broadcast::Receiver<Event>,
    mut want: impl FnMut(&Event) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(t) = want(&e) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the awaited event did not come within {WAIT:?}"))
}

/// Waits, at most `WAIT`, until `peer`'s capabilities expire.
pub async fn expired(events: &mut broadcast::Receiver<Event>, peer: PeerId) {
    wait_for(events, |e| {
        (*e == Event::CapabilitiesExpired(peer)).then_some(())
    })
    .await;
}
