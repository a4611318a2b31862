//! Dialling again a peer that mDNS found but that could not be reached.
//!
//! libp2p's mDNS reports a peer once, when it first hears of it, and then
//! says nothing until the record expires minutes later: a dial that failed
//! (a brief network fault, a peer still starting or too busy to accept)
//! would leave a LAN neighbour unconnected all that time. A peer that was
//! reached and refused the handshake (another private mesh's, most likely)
//! is not dialled again. Free of I/O: the time is passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

/// The wait before the first dial again; it doubles after each failure.
pub(super) const FIRST_WAIT: Duration = Duration::from_secs(1);
/// Failed dials after which a peer is left to mDNS (after about 15 s).
pub(super) const MAX_FAILURES: u32 = 5;
/// Most peers tried again at once; more found meanwhile are not.
const MAX_PEERS: usize = 1024;

/// A peer found by mDNS and not connected yet.
#[derive(Debug)]
struct Peer {
    addrs: Vec<Multiaddr>,
    failures: u32,
    /// When to dial again; `None` while a dial is under way.
    next: Option<Instant>,
}

/// Peers found by mDNS whose dials are followed, and dialled again.
#[derive(Debug, Default)]
pub(super) struct Redials {
    peers: HashMap<PeerId, Peer>,
    dials: HashMap<ConnectionId, PeerId>,
}

impl Redials {
    /// mDNS found `peer` at `addrs`, and this node dials it as `connection`:
    /// a fresh start for the peer.
    pub(super) fn dialling(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            return;
        }
        self.peers.insert(
            peer,
            Peer {
                addrs,
                failures: 0,
                next: None,
            },
        );
        self.dials.insert(connection, peer);
    }

    /// A dial again, due from [`Redials::due`], started as `connection`.
    pub(super) fn redialling(&mut self, connection: ConnectionId, peer: PeerId) {
        if self.peers.contains_key(&peer) {
            self.dials.insert(connection, peer);
        }
    }

    /// A connection to `peer` is up (`connection` may be any dial's or an
    /// inbound one): nothing to try again.
    pub(super) fn connected(&mut self, connection: ConnectionId, peer: PeerId) {
        self.dials.remove(&connection);
        self.forget(peer);
    }

    /// Stops following `peer` (a dial again could not start).
    pub(super) fn forget(&mut self, peer: PeerId) {
        if self.peers.remove(&peer).is_some() {
            self.dials.retain(|_, p| *p != peer);
        }
    }

    /// The dial `connection` failed; `unconnected` says whether its peer
    /// still has no connection at all. Returns the peer and how long until
    /// it is dialled again, `None` once it has failed `MAX_FAILURES` times
    /// (it is then forgotten); nothing for a dial that is not followed here.
    pub(super) fn failed(
        &mut self,
        connection: ConnectionId,
        unconnected: bool,
        now: Instant,
    ) -> Option<(PeerId, Option<Duration>)> {
        let peer_id = self.dials.remove(&connection)?;
        let peer = self.peers.get_mut(&peer_id)?;
        if !unconnected {
            self.peers.remove(&peer_id);
            return None;
        }
        peer.failures += 1;
        if peer.failures >= MAX_FAILURES {
            self.peers.remove(&peer_id);
            return Some((peer_id, None));
        }
        let wait = FIRST_WAIT * 2u32.pow(peer.failures - 1);
        peer.next = Some(now + wait);
        Some((peer_id, Some(wait)))
    }

    /// The dial `connection` reached its peer, which refused it in the
    /// handshake (`dial::refused`): dialling again would only be refused
    /// again, so the peer is left to mDNS at once. Returns the peer, if the
    /// dial was followed here.
    pub(super) fn refused(&mut self, connection: ConnectionId) -> Option<PeerId> {
        let peer = self.dials.remove(&connection)?;
        self.forget(peer);
        Some(peer)
    }

    /// The peers to dial again now, with their addresses.
    pub(super) fn due(&mut self, now: Instant) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut due = Vec::new();
        for (peer, state) in &mut self.peers {
            if state.next.is_some_and(|at| at <= now) {
                state.next = None;
                due.push((*peer, state.addrs.clone()));
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> Multiaddr {
        format!("/ip4/10.0.0.{n}/tcp/4001").parse().unwrap()
    }

    /// A peer found by mDNS at `addr(1)` and dialled as connection 1.
    fn dialled_once() -> (Redials, PeerId, Instant) {
        let mut r = Redials::default();
        let peer = PeerId::random();
        r.dialling(ConnectionId::new_unchecked(1), peer, vec![addr(1)]);
        (r, peer, Instant::now())
    }

    #[test]
    fn a_failed_dial_is_tried_again_with_doubling_waits_then_left() {
        let mut r = Redials::default();
        let peer = PeerId::random();
        let mut now = Instant::now();
        let mut dials = 1;
        let mut connection = ConnectionId::new_unchecked(dials);
        r.dialling(connection, peer, vec![addr(1)]);
        let mut waits = Vec::new();
        loop {
            match r.failed(connection, true, now) {
                Some((p, Some(wait))) => {
                    assert_eq!(p, peer);
                    assert!(r.due(now + wait - Duration::from_millis(1)).is_empty());
                    now += wait;
                    assert_eq!(r.due(now), vec![(peer, vec![addr(1)])]);
                    assert!(r.due(now).is_empty(), "once per failure");
                    waits.push(wait.as_secs());
                    dials += 1;
                    connection = ConnectionId::new_unchecked(dials);
                    r.redialling(connection, peer);
                }
                Some((p, None)) => {
                    assert_eq!(p, peer);
                    break;
                }
                None => panic!("the dial is followed"),
            }
        }
        assert_eq!(waits, [1, 2, 4, 8]);
        assert!(r.due(now + Duration::from_secs(3600)).is_empty(), "left");
        assert_eq!(r.failed(connection, true, now), None);
    }

    #[test]
    fn a_refused_dial_is_not_tried_again() {
        let (mut r, peer, now) = dialled_once();
        assert_eq!(r.refused(ConnectionId::new_unchecked(1)), Some(peer));
        assert!(r.due(now + Duration::from_secs(3600)).is_empty());
        assert!(r.peers.is_empty() && r.dials.is_empty(), "nothing kept");
        assert_eq!(r.refused(ConnectionId::new_unchecked(1)), None);
        assert_eq!(r.failed(ConnectionId::new_unchecked(1), true, now), None);
    }

    #[test]
    fn a_connection_ends_the_retries() {
        let (mut r, peer, now) = dialled_once();
        r.failed(ConnectionId::new_unchecked(1), true, now);
        // The peer dialled this node meanwhile.
        r.connected(ConnectionId::new_unchecked(7), peer);
        assert!(r.due(now + Duration::from_secs(60)).is_empty());
        assert!(r.peers.is_empty() && r.dials.is_empty(), "nothing kept");
    }

    #[test]
    fn a_forgotten_peer_is_not_dialled_again() {
        let (mut r, peer, now) = dialled_once();
        r.failed(ConnectionId::new_unchecked(1), true, now);
        assert_eq!(r.due(now + FIRST_WAIT).len(), 1);
        r.forget(peer);
        assert!(r.due(now + Duration::from_secs(60)).is_empty());
        assert!(r.peers.is_empty() && r.dials.is_empty(), "nothing kept");
    }

    #[test]
    fn a_failed_dial_of_a_connected_peer_is_not_retried() {
        let (mut r, _, now) = dialled_once();
        assert_eq!(r.failed(ConnectionId::new_unchecked(1), false, now), None);
        assert!(r.due(now + Duration::from_secs(60)).is_empty());
        assert!(r.peers.is_empty(), "forgotten");
    }

    #[test]
    fn other_dials_are_not_followed() {
        let mut r = Redials::default();
        let now = Instant::now();
        assert_eq!(r.failed(ConnectionId::new_unchecked(3), true, now), None);
        // A dial again for a peer not followed (left, or never found) is not.
        let stranger = PeerId::random();
        r.redialling(ConnectionId::new_unchecked(4), stranger);
        assert_eq!(r.failed(ConnectionId::new_unchecked(4), true, now), None);
    }

    #[test]
    fn found_again_starts_afresh() {
        let (mut r, peer, now) = dialled_once();
        for n in 1..4 {
            r.failed(ConnectionId::new_unchecked(n), true, now);
            r.redialling(ConnectionId::new_unchecked(n + 1), peer);
        }
        r.dialling(ConnectionId::new_unchecked(10), peer, vec![addr(2)]);
        let (_, wait) = r
            .failed(ConnectionId::new_unchecked(10), true, now)
            .unwrap();
        assert_eq!(wait, Some(FIRST_WAIT));
        assert_eq!(r.due(now + FIRST_WAIT), vec![(peer, vec![addr(2)])]);
    }

    #[test]
    fn at_most_max_peers_are_followed() {
        let mut r = Redials::default();
        let now = Instant::now();
        for n in 0..=MAX_PEERS {
            r.dialling(
                ConnectionId::new_unchecked(n),
                PeerId::random(),
                vec![addr(1)],
            );
        }
        let followed = (0..=MAX_PEERS)
            .filter(|n| {
                r.failed(ConnectionId::new_unchecked(*n), true, now)
                    .is_some()
            })
            .count();
        assert_eq!(followed, MAX_PEERS);
    }
}
