//! The libp2p behaviours a node runs, composed into one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, allow_block_list, connection_limits, gossipsub, identify, identity::Keypair,
    kad, mdns, memory_connection_limits, ping, request_response,
};

use super::codec::Codec;
use super::config::Config;
use super::fetch;
use super::lazy::Lazy;

/// How much later than the node's own timers libp2p's request timeout fires:
/// room for a provider's "time ran out" answer to be written.
const BACKSTOP_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    // Limits come first so that they can deny a connection before others see it.
    pub(crate) allow: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) memory: memory_connection_limits::Behaviour,
    // Everything but messaging is polled only when it has work (see `lazy`):
    // a request wakes the node and its connections many times, and polling
    // all of these each time cost more CPU per round trip than the rest.
    pub(crate) identify: Lazy<identify::Behaviour>,
    pub(crate) ping: Lazy<ping::Behaviour>,
    pub(crate) messaging: request_response::Behaviour<Codec>,
    pub(crate) fetch: Lazy<request_response::Behaviour<fetch::Codec>>,
    pub(crate) streams: Lazy<libp2p_stream::Behaviour>,
    pub(crate) kad: Toggle<Lazy<kad::Behaviour<MemoryStore>>>,
    pub(crate) gossipsub: Toggle<Lazy<gossipsub::Behaviour>>,
    pub(crate) mdns: Toggle<Lazy<mdns::tokio::Behaviour>>,
}

/// The protocol ids of a mesh, namespaced by its name.
pub(crate) struct Protocols {
    pub(crate) identify: String,
    pub(crate) request: StreamProtocol,
    pub(crate) stream: StreamProtocol,
    pub(crate) fetch: StreamProtocol,
    pub(crate) kad: StreamProtocol,
    pub(crate) announcements: gossipsub::IdentTopic,
}

impl Protocols {
    pub(crate) fn new(mesh: &str) -> Result<Self, String> {
        let id = |name: &str| {
            StreamProtocol::try_from_owned(format!("/ecco/{mesh}/{name}/1.0.0"))
                .map_err(|e| format!("mesh name `{mesh}` does not make a protocol id: {e}"))
        };
        Ok(Self {
            identify: format!("/ecco/{mesh}/1.0.0"),
            request: id("request")?,
            stream: id("stream")?,
            fetch: id("capabilities/fetch")?,
            kad: id("kad")?,
            announcements: gossipsub::IdentTopic::new(format!("/ecco/{mesh}/capabilities/1")),
        })
    }
}

impl Behaviour {
    pub(crate) fn new(
        key: &Keypair,
        config: &Config,
        protocols: &Protocols,
    ) -> Result<Self, String> {
        let l = &config.limits;
        let allow = config.allow.as_ref().map(|peers| {
            let mut b = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
            for peer in peers {
                b.allow_peer(*peer);
            }
            b
        });
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(l.max_connections))
            .with_max_established_per_peer(Some(l.max_connections_per_peer))
            .with_max_pending_incoming(Some(l.max_pending_incoming));
        let messaging = request_response::Behaviour::with_codec(
            Codec {
                max_request: l.max_request_bytes,
                max_response: l.max_response_bytes,
                max_request_memory: l.max_request_memory,
                max_response_memory: l.max_response_memory,
            },
            [(
                protocols.request.clone(),
                request_response::ProtocolSupport::Full,
            )],
            // The node times each request itself, to the caller's own
            // timeout (`Node::request_within`) on the requester and to the
            // requester's on the provider, and answers when it runs out.
            // libp2p's timeout only backs that up: it must fire later, or a
            // provider's stream would be dropped unanswered.
            request_response::Config::default()
                .with_request_timeout(l.longest_request().saturating_add(BACKSTOP_MARGIN))
                .with_max_concurrent_streams(l.max_concurrent_streams),
        );
        let fetch = request_response::Behaviour::with_codec(
            fetch::Codec,
            [(
                protocols.fetch.clone(),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(l.request_timeout)
                .with_max_concurrent_streams(l.max_concurrent_streams),
        );
        let discovery = config.discovery;
        let gossipsub = if discovery.announcements {
            Some(gossip(key, protocols)?)
        } else {
            None
        };
        let kad = discovery.dht.then(|| dht(key, config, protocols));
        let mdns = if discovery.mdns {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), key.public().to_peer_id())
                    .map_err(|e| format!("mDNS: {e}"))?,
            )
        } else {
            None
        };
        Ok(Self {
            allow: allow.into(),
            limits: connection_limits::Behaviour::new(limits),
            memory: memory_connection_limits::Behaviour::with_max_percentage(l.max_memory_fraction),
            identify: Lazy::new(identify::Behaviour::new(
                identify::Config::new(protocols.identify.clone(), key.public())
                    .with_agent_version(format!("ecco/{}", env!("CARGO_PKG_VERSION")))
                    // Only the external addresses, which leave loopback out
                    // when there are others (`event_loop::advertise`): by
                    // default identify sends every listen address.
                    .with_hide_listen_addrs(true),
            )),
            ping: Lazy::new(ping::Behaviour::default()),
            messaging,
            fetch: Lazy::new(fetch),
            streams: Lazy::new(libp2p_stream::Behaviour::new()),
            kad: kad.map(Lazy::handlers_only).into(),
            gossipsub: gossipsub.map(Lazy::new).into(),
            mdns: mdns.map(Lazy::new).into(),
        })
    }
}

/// Gossipsub for announcements: strict signing, application validation, and
/// peer scoring so that a peer whose messages are rejected loses standing.
fn gossip(key: &Keypair, protocols: &Protocols) -> Result<gossipsub::Behaviour, String> {
    let config = gossipsub::ConfigBuilder::default()
        // Authors sign every message, and nothing is forwarded before the
        // application has validated it.
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(crate::discovery::limits::MAX_BYTES + 4096)
        .build()
        .map_err(|e| format!("gossipsub configuration: {e}"))?;
    let mut gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
            .map_err(|e| format!("gossipsub: {e}"))?;
    gossipsub
        .with_peer_score(
            score_params(protocols),
            gossipsub::PeerScoreThresholds::default(),
        )
        .map_err(|e| format!("gossipsub peer scoring: {e}"))?;
    gossipsub
        .subscribe(&protocols.announcements)
        .map_err(|e| format!("cannot subscribe to the announcement topic: {e}"))?;
    Ok(gossipsub)
}

/// Announcements are rare (one per peer every few minutes), so the delivery
/// counters that suit busy topics would punish every peer, and time in the
/// mesh would outweigh everything; only first deliveries earn a little (at
/// most +5) and invalid messages cost (-10 times their count squared). Three
/// rejected messages put a peer under the graylist threshold (-80); the
/// penalty halves in about a minute.
fn score_params(protocols: &Protocols) -> gossipsub::PeerScoreParams {
    let topic = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_cap: 10.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.99,
        ..gossipsub::TopicScoreParams::default()
    };
    let mut params = gossipsub::PeerScoreParams::default();
    params.topics.insert(protocols.announcements.hash(), topic);
    // Many nodes on one host are normal in tests and demos, not a Sybil attack.
    params.ip_colocation_factor_whitelist.extend([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]);
    params
}

/// Kademlia in server mode (every Ecco node serves the DHT, even behind a
/// loopback or memory address), with records filtered by the event loop.
fn dht(key: &Keypair, config: &Config, protocols: &Protocols) -> kad::Behaviour<MemoryStore> {
    let l = &config.limits;
    let peer = key.public().to_peer_id();
    // The event loop's quota admits at most `max_dht_records` records of
    // others, at most K_VALUE per key; the store adds room for this node's
    // own, so that neither side can crowd out the other. (libp2p's
    // `max_provided_keys` counts every key in the store, not only the
    // node's own.)
    let store = MemoryStore::with_config(
        peer,
        MemoryStoreConfig {
            max_records: 0,
            max_value_bytes: 0,
            max_providers_per_key: kad::K_VALUE.get() + 1,
            max_provided_keys: l
                .max_dht_records
                .saturating_add(crate::discovery::dht::MAX_PUBLISHED_KEYS),
        },
    );
    let mut kad_config = kad::Config::new(protocols.kad.clone());
    kad_config
        .set_query_timeout(l.lookup_timeout)
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_provider_record_ttl(Some(l.provider_ttl))
        .set_provider_publication_interval(Some(l.provider_republish))
        // Ecco stores no values, only provider records.
        .set_record_ttl(None)
        .set_replication_interval(None)
        .set_publication_interval(None);
    let mut kad = kad::Behaviour::with_config(peer, store, kad_config);
    kad.set_mode(Some(kad::Mode::Server));
    kad
}
