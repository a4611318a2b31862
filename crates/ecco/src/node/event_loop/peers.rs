//! Peers coming and going: identify, mDNS, and what a new or lost
//! connection sets off.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionError, ConnectionId, DialError};
use libp2p::{Multiaddr, PeerId, identify, mdns};

use super::EventLoop;
use super::fetch::Fetch;
use crate::discovery::Source;
use crate::node::{Event, mismatch};

/// How long a peer of another mesh may wait for this node's identify
/// before it is disconnected anyway.
pub(super) const REFUSE_GRACE: Duration = Duration::from_secs(1);

/// How long a connection to a peer of another mesh stays open after this
/// node's identify went out on it. "Sent" means written, not read: hanging
/// up at once could close the connection under the identify the peer has
/// not read yet, and the peer would not learn why (seen in about one run in
/// six of `a_member_dial_racing_the_bootstrap_dial_names_both_meshes`).
/// Checked on the event loop's tick, so a connection closes 250–500 ms
/// after.
pub(super) const REFUSE_LINGER: Duration = Duration::from_millis(250);

/// Most peers remembered as belonging to another mesh, or as found by mDNS.
const MAX_REMEMBERED: usize = 1024;

/// A bounded set that forgets its oldest members.
#[derive(Debug, Default)]
pub(super) struct Recent {
    set: HashSet<PeerId>,
    order: VecDeque<PeerId>,
}

impl Recent {
    pub(super) fn insert(&mut self, peer: PeerId) {
        if self.set.insert(peer) {
            self.order.push_back(peer);
            if self.order.len() > MAX_REMEMBERED
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    pub(super) fn contains(&self, peer: &PeerId) -> bool {
        self.set.contains(peer)
    }
}

/// Whether a connection closed because something went wrong, rather than
/// because it sat idle past its keep-alive or this node closed it: only
/// then is the peer probed, else idle peers would be probed (and dialled
/// again) every idle timeout.
pub(super) fn closed_on_error(cause: Option<&ConnectionError>) -> bool {
    matches!(cause, Some(ConnectionError::IO(_)))
}

impl EventLoop {
    /// Closes the connection of a peer of another mesh once the peer has had
    /// time to read this node's identify on it (`REFUSE_LINGER`): hanging up
    /// before that would leave it guessing why (a dialler waiting in
    /// `Node::dial_member` could not name the two meshes). Each connection
    /// is closed on its own identify, not the peer's others, which may not
    /// have had theirs yet.
    fn refuse(&mut self, connection: libp2p::swarm::ConnectionId) {
        let wait = if self.identify_sent.contains(&connection) {
            REFUSE_LINGER
        } else {
            REFUSE_GRACE
        };
        self.refusing
            .insert(connection, tokio::time::Instant::now() + wait);
    }

    /// Closes the connections of peers of another mesh whose time is up.
    pub(super) fn refuse_late(&mut self) {
        let now = tokio::time::Instant::now();
        let late: Vec<libp2p::swarm::ConnectionId> = self
            .refusing
            .extract_if(|_, deadline| *deadline <= now)
            .map(|(connection, _)| connection)
            .collect();
        for connection in late {
            self.swarm.close_connection(connection);
        }
    }

    pub(super) fn on_identify(&mut self, event: identify::Event) {
        let (connection_id, peer_id, info) = match event {
            identify::Event::Received {
                connection_id,
                peer_id,
                info,
            } => (connection_id, peer_id, info),
            identify::Event::Error {
                connection_id,
                error,
                ..
            } => {
                self.identify_failed(connection_id, &error);
                return;
            }
            identify::Event::Sent { connection_id, .. } => {
                self.identify_sent.insert(connection_id);
                if let Some(deadline) = self.refusing.get_mut(&connection_id) {
                    *deadline = (*deadline).min(tokio::time::Instant::now() + REFUSE_LINGER);
                }
                return;
            }
            _ => return,
        };
        tracing::debug!(%peer_id, agent = %info.agent_version, "identified");
        if info.protocol_version != self.identify_version {
            // Another mesh (or not Ecco): free the connection slot, and do not
            // let mDNS bring it back. Warned once per peer, not on every
            // connection it makes; not at all for what mDNS found, as
            // meshes sharing a LAN find each other there by design, nor
            // when a caller's dial gets the reason as its error.
            let why = mismatch(&self.mesh, &info.protocol_version);
            let told = self.other_mesh(peer_id, &info.protocol_version);
            if told || self.foreign.contains(&peer_id) || self.mdns_found.contains(&peer_id) {
                tracing::debug!("refused peer {peer_id}: it {why}");
            } else {
                tracing::warn!("refused peer {peer_id}: it {why}");
            }
            self.foreign.insert(peer_id);
            self.refuse(connection_id);
            return;
        }
        self.member_identified(connection_id);
        self.dht_add_addresses(peer_id, &info.protocols, &info.listen_addrs);
        let by_mdns = self.mdns_found.contains(&peer_id);
        let wanted = self.announcements_on || by_mdns;
        if wanted
            && self.gossip.directory.get(&peer_id).is_none()
            && info.protocols.contains(&self.fetch_protocol)
        {
            // Learn a new neighbour's capabilities at once, rather than at its
            // next announcement.
            let source = if by_mdns { Source::Mdns } else { Source::Fetch };
            self.start_fetch(
                peer_id,
                Vec::new(),
                Fetch {
                    source,
                    reply: None,
                    probe: false,
                },
            );
        }
    }

    /// mDNS found peers on the LAN: a hint, which the handshake verifies.
    pub(super) fn on_mdns(&mut self, event: mdns::Event) {
        let mdns::Event::Discovered(found) = event else {
            return;
        };
        let mut peers: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for (peer, addr) in found {
            if peer == *self.swarm.local_peer_id() || self.foreign.contains(&peer) {
                continue;
            }
            match peers.iter_mut().find(|(p, _)| *p == peer) {
                Some((_, addrs)) => addrs.push(addr),
                None => peers.push((peer, vec![addr])),
            }
        }
        for (peer, addrs) in peers {
            tracing::debug!(%peer, ?addrs, "found by mDNS");
            self.mdns_found.insert(peer);
            let _ = self.events.send(Event::PeerDiscovered(peer));
            if self.swarm.is_connected(&peer) {
                continue;
            }
            for addr in &addrs {
                self.swarm.add_peer_address(peer, addr.clone());
            }
            if let Some(connection) = self.dial_found(peer, addrs.clone()) {
                self.redials.dialling(connection, peer, addrs);
            }
        }
    }

    /// Dials a peer that mDNS found; the dial's connection id if it started.
    fn dial_found(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) -> Option<ConnectionId> {
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .addresses(addrs)
            .build();
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => Some(connection),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot dial a peer found by mDNS");
                None
            }
        }
    }

    /// A dial failed: if it was to a peer that mDNS found and that is still
    /// not connected, it is dialled again later (`redial`), unless the peer
    /// refused the handshake.
    pub(super) fn mdns_dial_failed(
        &mut self,
        connection: ConnectionId,
        unconnected: bool,
        error: &DialError,
    ) {
        if super::dial::refused(error) {
            if let Some(peer) = self.redials.refused(connection) {
                tracing::debug!(%peer, %error, "a peer found by mDNS refused the handshake (another private mesh?); left to mDNS");
            }
            return;
        }
        let now = std::time::Instant::now();
        match self.redials.failed(connection, unconnected, now) {
            Some((peer, Some(wait))) => {
                tracing::debug!(%peer, ?wait, "a peer found by mDNS is unreachable; dialling again");
            }
            Some((peer, None)) => {
                tracing::debug!(%peer, "a peer found by mDNS stays unreachable; left to mDNS");
            }
            None => {}
        }
    }

    /// Dials again the peers found by mDNS whose wait is over.
    pub(super) fn mdns_redial(&mut self) {
        for (peer, addrs) in self.redials.due(std::time::Instant::now()) {
            match self.dial_found(peer, addrs) {
                Some(connection) => self.redials.redialling(connection, peer),
                // Connected or being dialled meanwhile, or not dialable.
                None => self.redials.forget(peer),
            }
        }
    }

    /// The last connection to `peer` closed. If it closed on an error and
    /// the directory holds the peer, probe it: one that cannot be reached
    /// has left, and expires now rather than at the end of its TTL.
    pub(super) fn on_peer_lost(&mut self, peer: PeerId, failed: bool) {
        let _ = self.events.send(Event::PeerDisconnected(peer));
        if !failed {
            return;
        }
        let Some(source) = self.gossip.directory.get(&peer).map(|e| e.source) else {
            return;
        };
        self.start_fetch(
            peer,
            Vec::new(),
            Fetch {
                source,
                reply: None,
                probe: true,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_connection_counts_as_a_failure() {
        assert!(!closed_on_error(None), "closed by this node");
        assert!(
            !closed_on_error(Some(&ConnectionError::KeepAliveTimeout)),
            "idle"
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(closed_on_error(Some(&ConnectionError::IO(reset))));
    }
}
