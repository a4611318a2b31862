//! A plain libp2p application running the protocols an Ecco node runs, with
//! the measured raw `request_response` as its messaging: what libp2p itself
//! costs per round trip for that set of protocols, before any of Ecco's own
//! work (its task and channels, codec, event loop, `node::lazy`). Ecco's
//! configuration where it matters per connection (limits, signed gossipsub
//! with validation and peer scoring, Kademlia in server mode, identify
//! without listen addresses); mDNS and the allow-list are off, as in the
//! bench's Ecco nodes.

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::kad::store::MemoryStore;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    StreamProtocol, Swarm, connection_limits, gossipsub, identify, kad, memory_connection_limits,
    ping,
};

use super::bare::{self, Echoes, RawBehaviour, RawEvent};

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    limits: connection_limits::Behaviour,
    memory: memory_connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    messaging: RawBehaviour,
    fetch: RawBehaviour,
    streams: libp2p_stream::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    gossipsub: gossipsub::Behaviour,
}

impl Echoes for Behaviour {
    fn messaging(&mut self) -> &mut RawBehaviour {
        &mut self.messaging
    }

    fn message(event: BehaviourEvent) -> Option<RawEvent> {
        match event {
            BehaviourEvent::Messaging(event) => Some(event),
            _ => None,
        }
    }
}

/// A swarm on the baseline's transport running [`Behaviour`].
pub(crate) fn swarm() -> Swarm<Behaviour> {
    bare::swarm(behaviour)
}

fn behaviour(key: &Keypair) -> Behaviour {
    let l = ecco::node::Config::loopback().limits;
    let peer = key.public().to_peer_id();
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(l.max_connections))
        .with_max_established_per_peer(Some(l.max_connections_per_peer))
        .with_max_pending_incoming(Some(l.max_pending_incoming));
    let streams = libp2p_stream::Behaviour::new();
    // A protocol accepted, as an Ecco node accepts its streaming protocol;
    // the task ends when the swarm, and with it the sender, is dropped.
    let mut incoming = streams
        .new_control()
        .accept(StreamProtocol::new("/bench/stream/1"))
        .expect("a protocol accepted once");
    tokio::spawn(async move { while incoming.next().await.is_some() {} });
    let mut kad = kad::Behaviour::with_config(
        peer,
        MemoryStore::new(peer),
        kad::Config::new(StreamProtocol::new("/bench/kad/1.0.0")),
    );
    kad.set_mode(Some(kad::Mode::Server));
    Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        memory: memory_connection_limits::Behaviour::with_max_percentage(l.max_memory_fraction),
        identify: identify::Behaviour::new(
            identify::Config::new("/bench/1.0.0".to_owned(), key.public())
                .with_hide_listen_addrs(true),
        ),
        ping: ping::Behaviour::default(),
        messaging: bare::raw_request_response("/bench/raw/1"),
        fetch: bare::raw_request_response("/bench/fetch/1"),
        streams,
        kad,
        gossipsub: gossip(key),
    }
}

/// Signed, validated by the application, scored, and subscribed to a topic.
fn gossip(key: &Keypair) -> gossipsub::Behaviour {
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .build()
        .expect("gossipsub configuration");
    let mut gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
            .expect("gossipsub");
    let topic = gossipsub::IdentTopic::new("/bench/capabilities/1");
    let mut params = gossipsub::PeerScoreParams::default();
    params
        .topics
        .insert(topic.hash(), gossipsub::TopicScoreParams::default());
    gossipsub
        .with_peer_score(params, gossipsub::PeerScoreThresholds::default())
        .expect("peer scoring");
    gossipsub.subscribe(&topic).expect("subscribe");
    gossipsub
}
