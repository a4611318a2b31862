//! Builds the libp2p `Swarm`: transports, private-mesh key, behaviours.

use std::time::Duration;

use either::Either;
use libp2p::core::transport::{MemoryTransport, Transport as _, upgrade::Version};
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PnetConfig;
use libp2p::{Multiaddr, Swarm, SwarmBuilder, noise, tcp, yamux};
use socket2::{Domain, Socket, Type};

use super::NodeError;
use super::behaviour::{Behaviour, Protocols};
use super::config::{Config, Transport};
use super::fresh_ports::FreshPorts;
use crate::Identity;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections are kept this long, so that request bursts reuse them.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn build(
    identity: &Identity,
    config: &Config,
    protocols: &Protocols,
) -> Result<Swarm<Behaviour>, NodeError> {
    let behaviour = |key: &libp2p::identity::Keypair| {
        Behaviour::new(key, config, protocols).map_err(BoxError::from)
    };
    let swarm_config =
        |c: libp2p::swarm::Config| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT);
    // Bounds dialling and every inbound and outbound upgrade (pnet, Noise,
    // Yamux), given to the builder: its own default, 10 s, would wrap it.
    let handshake_timeout = config.limits.handshake_timeout;
    let build_error = |e: &dyn std::fmt::Display| NodeError::Transport(e.to_string());
    let builder = SwarmBuilder::with_existing_identity(identity.keypair().clone()).with_tokio();

    // Each arm has its own builder types, so the common tail cannot be shared.
    let swarm = match (config.transport, config.swarm_key) {
        (Transport::Memory, psk) => builder
            .with_other_transport(|key| {
                let base = MemoryTransport::default();
                let base = match psk {
                    Some(psk) => {
                        Either::Left(base.and_then(move |s, _| PnetConfig::new(psk).handshake(s)))
                    }
                    None => Either::Right(base),
                };
                Ok::<_, BoxError>(
                    base.upgrade(Version::V1Lazy)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default()),
                )
            })
            .map_err(|e| build_error(&e))?
            .with_behaviour(behaviour)
            .map_err(|e| build_error(&e))?
            .with_swarm_config(swarm_config)
            .with_connection_timeout(handshake_timeout)
            .build(),
        (Transport::Network, Some(psk)) => builder
            .with_other_transport(|key| {
                Ok::<_, BoxError>(
                    tcp_transport()
                        .and_then(move |s, _| PnetConfig::new(psk).handshake(s))
                        .upgrade(Version::V1Lazy)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default()),
                )
            })
            .map_err(|e| build_error(&e))?
            .with_dns()
            .map_err(|e| build_error(&e))?
            .with_behaviour(behaviour)
            .map_err(|e| build_error(&e))?
            .with_swarm_config(swarm_config)
            .with_connection_timeout(handshake_timeout)
            .build(),
        (Transport::Network, None) => builder
            .with_quic()
            .with_other_transport(|key| {
                Ok::<_, BoxError>(
                    tcp_transport()
                        .upgrade(Version::V1Lazy)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default()),
                )
            })
            .map_err(|e| build_error(&e))?
            .with_dns()
            .map_err(|e| build_error(&e))?
            .with_behaviour(behaviour)
            .map_err(|e| build_error(&e))?
            .with_swarm_config(swarm_config)
            .with_connection_timeout(handshake_timeout)
            .build(),
    };
    Ok(swarm)
}

/// TCP with Nagle's algorithm off (requests are small and latency counts),
/// dialling from fresh ports ([`FreshPorts`]).
fn tcp_transport() -> FreshPorts<tcp::tokio::Transport> {
    FreshPorts(tcp::tokio::Transport::new(
        tcp::Config::default().nodelay(true),
    ))
}

/// Fails if another socket already listens on `addr`'s TCP port.
///
/// libp2p's TCP transport sets `SO_REUSEPORT` on its listeners (so that
/// dials could leave from the listening port; Ecco's do not, see
/// `FreshPorts`), and Linux lets every process
/// of the same user that does so bind the same port and then splits the
/// incoming connections between them: a second agent started on a taken
/// port would silently get some of the first one's peers. A plain bind,
/// without that option, fails on a port anyone listens on. Port 0 and
/// non-TCP addresses pass.
pub(crate) fn check_port_free(addr: &Multiaddr) -> Result<(), NodeError> {
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    let port = match parts.next() {
        Some(Protocol::Tcp(port)) if port != 0 => port,
        _ => return Ok(()),
    };
    let reason = |e: std::io::Error| NodeError::Listen {
        addr: addr.to_string(),
        reason: if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("TCP port {port} is already in use (another agent or program listens on it)")
        } else {
            e.to_string()
        },
    };
    let at = std::net::SocketAddr::new(ip, port);
    // Bound as libp2p binds it (IPv6 only for an IPv6 address, so that an
    // IPv4 listener on the same port is no conflict), minus SO_REUSEPORT;
    // dropped at once, as libp2p binds the port right after.
    let socket = Socket::new(
        Domain::for_address(at),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(reason)?;
    if at.is_ipv6() {
        socket.set_only_v6(true).map_err(reason)?;
    }
    socket.set_reuse_address(true).map_err(reason)?;
    socket.bind(&at.into()).map_err(reason)
}

/// Rejects configurations that cannot work, with a message saying why.
pub(crate) fn check(config: &Config) -> Result<(), NodeError> {
    let mesh = &config.mesh;
    if mesh.is_empty()
        || mesh.len() > 64
        || !mesh
            .chars()
            .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
    {
        return Err(NodeError::Config(format!(
            "mesh name `{mesh}` must be 1 to 64 of a-z, 0-9, '-', '_', '.'"
        )));
    }
    if config.limits.max_concurrent_streams == 0 {
        return Err(NodeError::Config(
            "limits.max_concurrent_streams must be at least 1, or no request could be sent or served"
                .to_owned(),
        ));
    }
    if config.discovery.mdns && config.transport == Transport::Memory {
        return Err(NodeError::Config(
            "mDNS needs the network transport; turn it off for the memory transport".to_owned(),
        ));
    }
    if config.swarm_key.is_some()
        && let Some(addr) = config
            .listen
            .iter()
            .chain(&config.bootstrap)
            .find(|a| is_quic(a))
    {
        return Err(NodeError::Config(format!(
            "{addr}: QUIC cannot be used in a private mesh, because the pre-shared key (pnet) does not cover QUIC; use TCP"
        )));
    }
    Ok(())
}

pub(crate) fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
}
