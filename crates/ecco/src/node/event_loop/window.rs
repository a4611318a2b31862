//! How many requests go to one peer at once, and which wait for a slot.
//!
//! libp2p's request-response fails a request outright ("max sub-streams
//! reached") when its connection already carries
//! `Limits::max_concurrent_streams` streams, so a caller that sends more at
//! once than that would see some fail for no fault of the peer. The window
//! keeps at most that many in flight per peer and queues the rest, first in
//! first out, up to a bound over all peers. Free of I/O: the event loop
//! sends what it is handed.

use std::collections::{HashMap, VecDeque};

use libp2p::PeerId;

/// Requests in flight per peer, and those waiting for one to finish.
#[derive(Debug)]
pub(super) struct Window<T> {
    per_peer: usize,
    max_waiting: usize,
    waiting: usize,
    peers: HashMap<PeerId, Slots<T>>,
}

#[derive(Debug)]
struct Slots<T> {
    in_flight: usize,
    waiting: VecDeque<T>,
}

/// What to do with a request offered to the window.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admit<T> {
    /// A slot is free: send it now.
    Send(T),
    /// Queued until a request to the same peer finishes.
    Wait,
    /// The queue is full: refuse it.
    Full(T),
}

impl<T> Window<T> {
    /// At most `per_peer` in flight to one peer (at least one) and
    /// `max_waiting` queued over all peers.
    pub(super) fn new(per_peer: usize, max_waiting: usize) -> Self {
        Self {
            per_peer: per_peer.max(1),
            max_waiting,
            waiting: 0,
            peers: HashMap::new(),
        }
    }

    /// Offers a request to `peer`.
    pub(super) fn admit(&mut self, peer: PeerId, item: T) -> Admit<T> {
        let slots = self.peers.entry(peer).or_insert_with(|| Slots {
            in_flight: 0,
            waiting: VecDeque::new(),
        });
        if slots.in_flight < self.per_peer {
            slots.in_flight += 1;
            Admit::Send(item)
        } else if self.waiting < self.max_waiting {
            slots.waiting.push_back(item);
            self.waiting += 1;
            Admit::Wait
        } else {
            Admit::Full(item)
        }
    }

    /// A request to `peer` finished (answered or failed): its slot goes to
    /// the oldest waiting request whose caller still `wants` it, returned
    /// for sending. Those nobody wants any more are dropped on the way.
    pub(super) fn finished(&mut self, peer: &PeerId, wants: impl Fn(&T) -> bool) -> Option<T> {
        let slots = self.peers.get_mut(peer)?;
        let mut next = None;
        while let Some(item) = slots.waiting.pop_front() {
            self.waiting -= 1;
            if wants(&item) {
                next = Some(item);
                break;
            }
        }
        if next.is_none() {
            slots.in_flight = slots.in_flight.saturating_sub(1);
            if slots.in_flight == 0 {
                self.peers.remove(peer);
            }
        }
        next
    }

    /// Drops the waiting requests that nobody `wants` any more, so that
    /// callers that gave up do not hold queue room.
    pub(super) fn retain(&mut self, wants: impl Fn(&T) -> bool) {
        for slots in self.peers.values_mut() {
            let before = slots.waiting.len();
            slots.waiting.retain(&wants);
            self.waiting -= before - slots.waiting.len();
        }
    }

    /// Empties the queue (the node stops), returning what waited.
    pub(super) fn drain(&mut self) -> Vec<T> {
        self.waiting = 0;
        self.peers
            .drain()
            .flat_map(|(_, slots)| slots.waiting)
            .collect()
    }

    /// Most requests that may wait, over all peers.
    pub(super) fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    /// Requests waiting for a slot, over all peers.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn always(_: &u32) -> bool {
        true
    }

    #[test]
    fn sends_up_to_the_limit_then_queues_in_order() {
        let peer = PeerId::random();
        let mut w = Window::new(2, 10);
        assert_eq!(w.admit(peer, 1), Admit::Send(1));
        assert_eq!(w.admit(peer, 2), Admit::Send(2));
        assert_eq!(w.admit(peer, 3), Admit::Wait);
        assert_eq!(w.admit(peer, 4), Admit::Wait);
        assert_eq!(w.finished(&peer, always), Some(3));
        assert_eq!(w.finished(&peer, always), Some(4));
        assert_eq!(w.finished(&peer, always), None);
        assert_eq!(w.finished(&peer, always), None);
        assert!(w.peers.is_empty(), "an idle peer leaves nothing behind");
    }

    #[test]
    fn peers_do_not_share_slots() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut w = Window::new(1, 10);
        assert_eq!(w.admit(a, 1), Admit::Send(1));
        assert_eq!(w.admit(a, 2), Admit::Wait);
        assert_eq!(w.admit(b, 3), Admit::Send(3), "b has its own slot");
        assert_eq!(w.finished(&b, always), None, "nothing waits for b");
        assert_eq!(w.finished(&a, always), Some(2));
    }

    #[test]
    fn the_queue_is_bounded_over_all_peers() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut w = Window::new(1, 2);
        assert_eq!(w.admit(a, 1), Admit::Send(1));
        assert_eq!(w.admit(b, 2), Admit::Send(2));
        assert_eq!(w.admit(a, 3), Admit::Wait);
        assert_eq!(w.admit(b, 4), Admit::Wait);
        assert_eq!(w.admit(a, 5), Admit::Full(5));
        assert_eq!(w.finished(&a, always), Some(3));
        assert_eq!(w.admit(a, 6), Admit::Wait, "room again once one left");
    }

    #[test]
    fn requests_nobody_wants_are_skipped_and_pruned() {
        let peer = PeerId::random();
        let mut w = Window::new(1, 10);
        assert_eq!(w.admit(peer, 1), Admit::Send(1));
        for i in 2..=6 {
            assert_eq!(w.admit(peer, i), Admit::Wait);
        }
        w.retain(|i| *i != 2);
        assert_eq!(w.waiting(), 4);
        assert_eq!(w.finished(&peer, |i| *i != 3), Some(4), "3 was given up");
        assert_eq!(w.waiting(), 2);
        assert_eq!(w.finished(&peer, |_| false), None, "nobody wants 5 or 6");
        assert_eq!(w.waiting(), 0);
        assert!(w.peers.is_empty());
    }

    #[test]
    fn a_zero_limit_still_lets_one_through() {
        let peer = PeerId::random();
        let mut w = Window::new(0, 0);
        assert_eq!(w.admit(peer, 1), Admit::Send(1));
        assert_eq!(w.admit(peer, 2), Admit::Full(2));
    }

    #[test]
    fn drain_returns_what_waited() {
        let peer = PeerId::random();
        let mut w = Window::new(1, 10);
        assert_eq!(w.admit(peer, 1), Admit::Send(1));
        assert_eq!(w.admit(peer, 2), Admit::Wait);
        assert_eq!(w.drain(), vec![2]);
        assert_eq!(w.waiting(), 0);
        assert_eq!(
            w.admit(peer, 3),
            Admit::Send(3),
            "a stopped window starts over"
        );
    }
}
