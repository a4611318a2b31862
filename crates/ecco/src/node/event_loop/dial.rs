//! Dials that callers asked for: errors that say the likely cause, and
//! dials that wait until the peer identifies as a member of this mesh.

use std::time::Instant;

use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionError, ConnectionId, DialError};
use libp2p::{Multiaddr, PeerId, TransportError};
use tokio::sync::oneshot;

use super::EventLoop;
use crate::node::swarm::is_quic;
use crate::node::{NodeError, mesh_of};

pub(super) type DialReply = oneshot::Sender<Result<PeerId, NodeError>>;

/// A dial whose connection is not established yet.
pub(super) struct Pending {
    addr: Multiaddr,
    /// Whether the caller waits for the peer to identify as a member.
    member: bool,
    reply: DialReply,
}

/// A dial that connected, waiting for the peer to identify.
pub(super) struct Identifying {
    addr: Multiaddr,
    peer: PeerId,
    since: Instant,
    reply: DialReply,
}

/// How libp2p's errors read when a connection failed in its handshake, or
/// ran out of `Limits::handshake_timeout`: `UpgradeError`'s, pnet's
/// `PnetError::HandshakeError`'s and `TransportTimeoutError::Timeout`'s
/// texts. Their types are generic over the transport stack, and `Either`'s
/// `source` skips what it wraps, so they cannot be downcast.
const HANDSHAKE_FAILED: [&str; 4] = [
    "Handshake failed",
    "Handshake error",
    "Multistream select failed",
    TIMED_OUT,
];
/// The one of [`HANDSHAKE_FAILED`] that says the handshake ran out of time.
const TIMED_OUT: &str = "Timeout has been reached";

impl EventLoop {
    pub(super) fn dial(&mut self, addr: Multiaddr, member: bool, reply: DialReply) {
        let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dials.insert(
                    id,
                    Pending {
                        addr,
                        member,
                        reply,
                    },
                );
            }
            Err(e) => {
                let reason = self.explain(&e);
                let _ = reply.send(Err(NodeError::Dial {
                    addr: addr.to_string(),
                    reason,
                }));
            }
        }
    }

    /// A connection is established: a plain dial is done, a member's
    /// waits for identify.
    pub(super) fn dial_connected(&mut self, connection: ConnectionId, peer: PeerId) {
        let Some(dial) = self.dials.remove(&connection) else {
            return;
        };
        if !dial.member {
            let _ = dial.reply.send(Ok(peer));
            return;
        }
        self.identifying.insert(
            connection,
            Identifying {
                addr: dial.addr,
                peer,
                since: Instant::now(),
                reply: dial.reply,
            },
        );
    }

    pub(super) fn dial_failed(&mut self, connection: ConnectionId, error: &DialError) {
        if let Some(dial) = self.dials.remove(&connection) {
            let reason = self.explain(error);
            let _ = dial.reply.send(Err(NodeError::Dial {
                addr: dial.addr.to_string(),
                reason,
            }));
        }
    }

    /// The peer identified as a member of this mesh on `connection`.
    pub(super) fn member_identified(&mut self, connection: ConnectionId) {
        if let Some(dial) = self.identifying.remove(&connection) {
            let _ = dial.reply.send(Ok(dial.peer));
        }
    }

    /// `peer` identified with another mesh's protocol `version`: every
    /// dial waiting for it fails, as all its connections are closed.
    /// Whether a dial was answered so.
    pub(super) fn other_mesh(&mut self, peer: PeerId, version: &str) -> bool {
        let mut failed: Vec<(Multiaddr, DialReply)> = self
            .identifying
            .extract_if(|_, d| d.peer == peer)
            .map(|(_, d)| (d.addr, d.reply))
            .collect();
        // Disconnecting the peer also aborts the dials to it still pending
        // (the node's own bootstrap dial may have connected first): they
        // get the same answer rather than "aborted".
        failed.extend(
            self.dials
                .extract_if(|_, d| d.member && dialled_peer(&d.addr) == Some(peer))
                .map(|(_, d)| (d.addr, d.reply)),
        );
        let told = !failed.is_empty();
        for (addr, reply) in failed {
            let _ = reply.send(Err(NodeError::OtherMesh {
                addr: addr.to_string(),
                ours: self.mesh.clone(),
                theirs: mesh_of(version).map(str::to_owned),
                version: version.to_owned(),
            }));
        }
        told
    }

    /// Identify failed on `connection` (a peer that does not speak it is
    /// no Ecco node).
    pub(super) fn identify_failed(
        &mut self,
        connection: ConnectionId,
        error: &dyn std::fmt::Display,
    ) {
        self.identify_wait_failed(
            connection,
            format!("the peer did not identify itself: {error}"),
        );
    }

    /// `connection` closed, perhaps before the peer identified.
    pub(super) fn dial_closed(
        &mut self,
        connection: ConnectionId,
        cause: Option<&ConnectionError>,
    ) {
        let reason = match cause {
            Some(e) => format!("the connection closed before the peer identified itself: {e}"),
            None => "the connection closed before the peer identified itself".to_owned(),
        };
        self.identify_wait_failed(connection, reason);
    }

    /// Fails the dials whose peer has not identified within the handshake timeout.
    pub(super) fn dials_expire(&mut self) {
        let timeout = self.handshake_timeout;
        for (_, dial) in self
            .identifying
            .extract_if(|_, d| d.since.elapsed() >= timeout)
        {
            let _ = dial.reply.send(Err(NodeError::Dial {
                addr: dial.addr.to_string(),
                reason: format!("the peer did not identify itself within {timeout:?}"),
            }));
        }
    }

    fn identify_wait_failed(&mut self, connection: ConnectionId, reason: String) {
        if let Some(dial) = self.identifying.remove(&connection) {
            let _ = dial.reply.send(Err(NodeError::Dial {
                addr: dial.addr.to_string(),
                reason,
            }));
        }
    }

    /// Why a dial failed, with the likely cause when its handshake failed
    /// or timed out: pnet garbles the stream under a wrong key, so libp2p
    /// cannot tell a key mismatch from a broken peer.
    fn explain(&self, error: &DialError) -> String {
        let Some(cause) = handshake_failure(error) else {
            return error.to_string();
        };
        // libp2p nests a transport's errors in each other's texts; the
        // innermost says what went wrong, the rest only where.
        tracing::debug!(%error, "dial failed in the handshake");
        let hint = if self.private {
            "a private mesh: does that peer use the same swarm key?"
        } else {
            "if that peer runs a private mesh, this node needs its swarm key"
        };
        if cause.eq_ignore_ascii_case("handshake failed") {
            format!("the handshake failed ({hint})")
        } else {
            format!("the handshake failed: {cause} ({hint})")
        }
    }
}

/// When a dial reached a peer and then failed or timed out in the handshake
/// (not on QUIC, which private meshes do not use): the innermost cause, as
/// libp2p words it.
fn handshake_failure(error: &DialError) -> Option<String> {
    let DialError::Transport(errors) = error else {
        return None;
    };
    errors
        .iter()
        .find_map(|(addr, e)| handshake_text(addr, e))
        .map(|text| innermost(&text).to_owned())
}

/// Whether dialling the peer of a failed dial again is pointless: it was
/// reached and then failed the handshake in time (as a peer of another
/// private mesh does: the stream is garbled both ways), or it answered as
/// another peer. Only a change on the peer's side would change that, and
/// mDNS reports the peer again when its record changes.
pub(super) fn refused(error: &DialError) -> bool {
    match error {
        DialError::WrongPeerId { .. } => true,
        DialError::Transport(errors) => errors
            .iter()
            .filter_map(|(addr, e)| handshake_text(addr, e))
            .any(|text| !text.contains(TIMED_OUT)),
        _ => false,
    }
}

/// The text of an address's error if it is a handshake failure or
/// timeout (not on QUIC, which private meshes do not use).
fn handshake_text(addr: &Multiaddr, error: &TransportError<std::io::Error>) -> Option<String> {
    match error {
        TransportError::Other(e) if !is_quic(addr) => {
            let text = e.to_string();
            HANDSHAKE_FAILED
                .iter()
                .any(|f| text.contains(f))
                .then_some(text)
        }
        _ => None,
    }
}

/// The last of the `:`-separated causes in a nested error text, such as
/// "Maximum frame length exceeded" in "Multiple dial errors occurred:\n -
/// Handshake failed: Handshake failed: Maximum frame length exceeded" (a
/// list item's dash dropped; a part too short to say anything, as from an
/// IPv6 address, skipped).
fn innermost(text: &str) -> &str {
    text.rsplit(':')
        .map(|cause| cause.trim().trim_start_matches('-').trim_start())
        .find(|cause| cause.len() > 2)
        .unwrap_or(text.trim())
}

/// The peer an address names with a trailing `/p2p/<id>`, if any.
fn dialled_peer(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(texts: &[(&str, Option<&str>)]) -> DialError {
        DialError::Transport(
            texts
                .iter()
                .map(|(addr, text)| {
                    let addr: Multiaddr = addr.parse().unwrap();
                    let error = match text {
                        Some(text) => TransportError::Other(std::io::Error::other(*text)),
                        None => TransportError::MultiaddrNotSupported(addr.clone()),
                    };
                    (addr, error)
                })
                .collect(),
        )
    }

    #[test]
    fn only_a_handshake_that_failed_in_time_is_a_refusal() {
        let tcp = "/ip4/10.0.0.1/tcp/4001";
        let quic = "/ip4/10.0.0.1/udp/4001/quic-v1";
        let garbled = "Handshake failed: Handshake failed: Maximum frame length exceeded";
        let refusals = [
            failed(&[(tcp, Some(garbled))]),
            failed(&[(tcp, Some("Multistream select failed"))]),
            // One address reached the peer; another did not answer.
            failed(&[
                (
                    "/ip4/10.0.0.2/tcp/4001",
                    Some("Connection refused (os error 111)"),
                ),
                (tcp, Some(garbled)),
            ]),
            DialError::WrongPeerId {
                obtained: PeerId::random(),
                address: tcp.parse().unwrap(),
            },
        ];
        for error in &refusals {
            assert!(refused(error), "{error}");
        }
        let failures = [
            failed(&[(tcp, Some("Connection refused (os error 111)"))]),
            failed(&[(tcp, Some("Timeout has been reached"))]),
            failed(&[(tcp, None)]),
            // QUIC's errors say nothing about a swarm key.
            failed(&[(quic, Some("Handshake failed: bad certificate"))]),
            DialError::NoAddresses,
            DialError::Aborted,
        ];
        for error in &failures {
            assert!(!refused(error), "{error}");
        }
    }

    #[test]
    fn the_innermost_cause_is_the_last() {
        let nested = "Multiple dial errors occurred:\n - Handshake failed: Multiple dial \
                      errors occurred:\n - Handshake failed: Handshake failed: Maximum frame \
                      length exceeded";
        assert_eq!(innermost(nested), "Maximum frame length exceeded");
        assert_eq!(
            innermost("Timeout has been reached"),
            "Timeout has been reached"
        );
        assert_eq!(innermost("Handshake failed: "), "Handshake failed");
        assert_eq!(
            innermost("Multiple dial errors occurred:\n - Handshake failed"),
            "Handshake failed"
        );
        assert_eq!(innermost("no route to ::1"), "no route to");
    }
}
