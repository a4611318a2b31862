//! Capability fetch: serving this node's signed announcement, asking peers
//! for theirs, and probing a peer whose connection failed.

use std::collections::HashMap;

use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::DialError;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use tokio::sync::oneshot;

use super::EventLoop;
use super::gossip::now_ms;
use crate::discovery::{AnnouncementError, Entry, SignedAnnouncement, Source};
use crate::node::fetch::FetchError;

/// Where a fetch's outcome goes.
pub(super) type FetchReply = oneshot::Sender<Result<Option<Entry>, FetchError>>;

/// Why a fetch was started.
#[derive(Debug)]
pub(super) struct Fetch {
    pub(super) source: Source,
    /// `None` for fetches the node starts on its own.
    pub(super) reply: Option<FetchReply>,
    /// A probe of a peer whose connection failed: if it cannot be reached,
    /// it has left and its entry goes.
    pub(super) probe: bool,
}

/// Fetches in flight, and those waiting for a connection to their peer.
#[derive(Debug, Default)]
pub(super) struct Fetches {
    sent: HashMap<OutboundRequestId, (PeerId, Fetch)>,
    waiting: HashMap<PeerId, Vec<Fetch>>,
}

/// Why a fetch that was sent failed. Only a peer that cannot be reached
/// counts as gone to a probe: a slow one, or one whose answer is too large
/// or malformed, is still there.
fn failure(peer: PeerId, error: &request_response::OutboundFailure) -> FetchError {
    use request_response::OutboundFailure;
    match error {
        OutboundFailure::Timeout => FetchError::Timeout { peer },
        OutboundFailure::Io(e) => FetchError::Invalid {
            peer,
            reason: e.to_string(),
        },
        OutboundFailure::DialFailure
        | OutboundFailure::ConnectionClosed
        | OutboundFailure::UnsupportedProtocols => FetchError::Unreachable {
            peer,
            reason: error.to_string(),
        },
    }
}

impl EventLoop {
    /// Asks `peer` for its capabilities, dialling it first when needed with
    /// `addrs` and whatever addresses the behaviours know.
    pub(super) fn start_fetch(
        &mut self,
        peer: PeerId,
        addrs: Vec<libp2p::Multiaddr>,
        fetch: Fetch,
    ) {
        if self.swarm.is_connected(&peer) {
            self.send_fetch(peer, fetch);
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .addresses(addrs)
            .extend_addresses_through_behaviour()
            .build();
        match self.swarm.dial(opts) {
            // Dialling, or already dialling: sent once connected.
            Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {
                self.fetches.waiting.entry(peer).or_default().push(fetch);
            }
            Err(e) => self.fetch_failed(
                peer,
                fetch,
                FetchError::Unreachable {
                    peer,
                    reason: e.to_string(),
                },
            ),
        }
    }

    fn send_fetch(&mut self, peer: PeerId, fetch: Fetch) {
        let id = self.swarm.behaviour_mut().fetch.send_request(&peer, ());
        self.fetches.sent.insert(id, (peer, fetch));
    }

    /// A connection to `peer` is up: send what waited for it.
    pub(super) fn fetch_connected(&mut self, peer: PeerId) {
        for fetch in self.fetches.waiting.remove(&peer).unwrap_or_default() {
            self.send_fetch(peer, fetch);
        }
    }

    /// Dialling `peer` failed: fail what waited for it.
    pub(super) fn fetch_unreachable(&mut self, peer: PeerId, reason: &str) {
        for fetch in self.fetches.waiting.remove(&peer).unwrap_or_default() {
            let error = FetchError::Unreachable {
                peer,
                reason: reason.to_owned(),
            };
            self.fetch_failed(peer, fetch, error);
        }
    }

    /// Fails every fetch, because the node stops.
    pub(super) fn fetch_stop(&mut self) {
        let sent = self.fetches.sent.drain().map(|(_, (_, f))| f);
        let waiting = self.fetches.waiting.drain().flat_map(|(_, f)| f);
        for fetch in sent.chain(waiting).collect::<Vec<_>>() {
            if let Some(reply) = fetch.reply {
                let _ = reply.send(Err(FetchError::NodeStopped));
            }
        }
    }

    fn fetch_failed(&mut self, peer: PeerId, fetch: Fetch, error: FetchError) {
        tracing::debug!(%peer, %error, "capability fetch failed");
        if fetch.probe
            && matches!(error, FetchError::Unreachable { .. })
            && self.gossip.directory.remove(&peer).is_some()
        {
            tracing::debug!(%peer, "peer left");
            let _ = self
                .events
                .send(crate::node::Event::CapabilitiesExpired(peer));
        }
        if let Some(reply) = fetch.reply {
            let _ = reply.send(Err(error));
        }
    }

    pub(super) fn on_fetch(&mut self, event: request_response::Event<(), Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { channel, .. } => {
                    let bytes = self.fetch_answer().unwrap_or_default();
                    // Fails only if the connection closed meanwhile.
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .fetch
                        .send_response(channel, bytes);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((peer, fetch)) = self.fetches.sent.remove(&request_id) {
                        self.fetched(peer, fetch, &response);
                    } else {
                        tracing::debug!(%peer, "unexpected capability fetch answer");
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((peer, fetch)) = self.fetches.sent.remove(&request_id) {
                    self.fetch_failed(peer, fetch, failure(peer, &error));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "capability fetch not served");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Checks a fetched announcement as a gossiped one, then learns it.
    fn fetched(&mut self, peer: PeerId, fetch: Fetch, bytes: &[u8]) {
        let now = now_ms();
        let outcome = if bytes.is_empty() {
            // It offers nothing (any more).
            if self.gossip.directory.remove(&peer).is_some() {
                let _ = self
                    .events
                    .send(crate::node::Event::CapabilitiesExpired(peer));
            }
            Ok(None)
        } else {
            match SignedAnnouncement::verify(bytes, &self.gossip.mesh, now) {
                Ok(a) if a.peer != peer => Err(FetchError::Invalid {
                    peer,
                    reason: format!("it is signed by {}, not by the peer asked", a.peer),
                }),
                Ok(a) => match self.learn(a, fetch.source, now) {
                    Ok(_) => Ok(self.gossip.directory.get(&peer).cloned()),
                    // We already hold this announcement or a newer one.
                    Err(AnnouncementError::Stale { .. }) => {
                        Ok(self.gossip.directory.get(&peer).cloned())
                    }
                    Err(AnnouncementError::DirectoryFull) => {
                        Err(FetchError::DirectoryFull { peer })
                    }
                    Err(e) => Err(FetchError::Invalid {
                        peer,
                        reason: e.to_string(),
                    }),
                },
                Err(e) => Err(FetchError::Invalid {
                    peer,
                    reason: e.to_string(),
                }),
            }
        };
        match outcome {
            Ok(entry) => {
                if let Some(reply) = fetch.reply {
                    let _ = reply.send(Ok(entry));
                }
            }
            Err(e) => self.fetch_failed(peer, fetch, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use request_response::OutboundFailure;

    use super::*;

    #[test]
    fn only_an_unreachable_peer_counts_as_gone() {
        let peer = crate::Identity::generate().peer_id();
        let gone = |e: OutboundFailure| matches!(failure(peer, &e), FetchError::Unreachable { .. });
        assert!(gone(OutboundFailure::DialFailure));
        assert!(gone(OutboundFailure::ConnectionClosed));
        assert!(gone(OutboundFailure::UnsupportedProtocols));
        assert_eq!(
            failure(peer, &OutboundFailure::Timeout),
            FetchError::Timeout { peer }
        );
        let oversized = std::io::Error::new(std::io::ErrorKind::InvalidData, "answer too large");
        assert!(matches!(
            failure(peer, &OutboundFailure::Io(oversized)),
            FetchError::Invalid { reason, .. } if reason.contains("too large")
        ));
    }
}
