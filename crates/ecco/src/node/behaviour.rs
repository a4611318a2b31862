//! The libp2p behaviours a node runs, composed into one.

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, allow_block_list, connection_limits, gossipsub, identify, identity::Keypair,
    memory_connection_limits, ping, request_response,
};

use super::codec::Codec;
use super::config::Config;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    // Limits come first so that they can deny a connection before others see it.
    pub(crate) allow: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) memory: memory_connection_limits::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) messaging: request_response::Behaviour<Codec>,
    pub(crate) gossipsub: gossipsub::Behaviour,
}

/// The protocol ids of a mesh, namespaced by its name.
pub(crate) struct Protocols {
    pub(crate) identify: String,
    pub(crate) request: StreamProtocol,
    pub(crate) announcements: gossipsub::IdentTopic,
}

impl Protocols {
    pub(crate) fn new(mesh: &str) -> Result<Self, String> {
        let request = StreamProtocol::try_from_owned(format!("/ecco/{mesh}/request/1.0.0"))
            .map_err(|e| format!("mesh name `{mesh}` does not make a protocol id: {e}"))?;
        Ok(Self {
            identify: format!("/ecco/{mesh}/1.0.0"),
            request,
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
            },
            [(
                protocols.request.clone(),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(l.request_timeout)
                .with_max_concurrent_streams(l.max_concurrent_streams),
        );
        let gossip_config = gossipsub::ConfigBuilder::default()
            // Authors sign every message, and nothing is forwarded before the
            // application has validated it.
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .max_transmit_size(crate::discovery::limits::MAX_BYTES + 4096)
            .build()
            .map_err(|e| format!("gossipsub configuration: {e}"))?;
        let mut gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_config,
        )
        .map_err(|e| format!("gossipsub: {e}"))?;
        gossipsub
            .subscribe(&protocols.announcements)
            .map_err(|e| format!("cannot subscribe to the announcement topic: {e}"))?;
        Ok(Self {
            allow: allow.into(),
            limits: connection_limits::Behaviour::new(limits),
            memory: memory_connection_limits::Behaviour::with_max_percentage(l.max_memory_fraction),
            identify: identify::Behaviour::new(
                identify::Config::new(protocols.identify.clone(), key.public())
                    .with_agent_version(format!("ecco/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::default(),
            messaging,
            gossipsub,
        })
    }
}
