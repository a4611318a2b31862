//! How many requests go to one peer at once, and which wait for a slot.
//!
//! libp2p's request-response fails a request outright ("max sub-streams
//! reached") when its connection already carries
//! `Limits::max_concurrent_streams` streams, so a caller that sends more at
//! once than that would see some fail for no fault of the peer. The window
//! keeps at most that many in flight per peer and queues the rest, first in
//! first out, up to a bound over all peers. Cancels take slots too, ahead
//! of the queue (`admit_first`), and wait apart from it: they are bounded by
//! the requests in flight, and must not fill the requests' room, or callers
//! would be told that requests wait when none does. Free of I/O: the event
//! loop sends what it is handed.
//!
//! The peer's side of the connection has the same limit, and its handler
//! drops a stream over it unread: its limit may be lower than ours, and its
//! own requests to us take streams too. When that happens the window learns
//! how many the peer took and sends it no more than that until it
//! disconnects, so that later requests wait instead of failing the same
//! way. The learned cap never grows back while connected: probing for room
//! would cost the caller whose request probes a failure.

use std::collections::{HashMap, VecDeque};

use libp2p::PeerId;

/// Requests in flight per peer, and those waiting for one to finish.
#[derive(Debug)]
pub(super) struct Window<T> {
    per_peer: usize,
    max_waiting: usize,
    /// Items admitted by [`Window::admit`] waiting, over all peers; those
    /// admitted first are not counted.
    waiting: usize,
    peers: HashMap<PeerId, Slots<T>>,
}

#[derive(Debug)]
struct Slots<T> {
    in_flight: usize,
    /// Most in flight to this peer: `per_peer`, or less once learned.
    cap: usize,
    /// Items admitted first, waiting: the latest goes first.
    firsts: Vec<T>,
    waiting: VecDeque<T>,
}

/// How a request in flight ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Answered, or failed for a reason that says nothing about the
    /// peer's room for streams.
    Done,
    /// The peer dropped its stream unread while the connection stayed up:
    /// it had no room for one more.
    Dropped,
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
        self.offer(peer, item, false)
    }

    /// Offers `peer` an item that goes before every waiting one, is never
    /// refused and takes no room from the others: a cancel, which frees the
    /// peer's work and so streams for the rest. Its caller bounds how many
    /// there are.
    pub(super) fn admit_first(&mut self, peer: PeerId, item: T) -> Admit<T> {
        self.offer(peer, item, true)
    }

    fn offer(&mut self, peer: PeerId, item: T, first: bool) -> Admit<T> {
        let per_peer = self.per_peer;
        let slots = self.peers.entry(peer).or_insert_with(|| Slots {
            in_flight: 0,
            cap: per_peer,
            firsts: Vec::new(),
            waiting: VecDeque::new(),
        });
        if slots.in_flight < slots.cap {
            slots.in_flight += 1;
            Admit::Send(item)
        } else if first {
            slots.firsts.push(item);
            Admit::Wait
        } else if self.waiting < self.max_waiting {
            slots.waiting.push_back(item);
            self.waiting += 1;
            Admit::Wait
        } else {
            Admit::Full(item)
        }
    }

    /// A request to `peer` finished: its slot goes to the oldest waiting
    /// request whose caller still `wants` it, returned for sending. Those
    /// nobody wants any more are dropped on the way. After a
    /// [`Outcome::Dropped`] the peer's cap becomes what it still has in
    /// flight (at least one), and nothing is sent until it has room.
    pub(super) fn finished(
        &mut self,
        peer: &PeerId,
        outcome: Outcome,
        wants: impl Fn(&T) -> bool,
    ) -> Option<T> {
        let slots = self.peers.get_mut(peer)?;
        slots.in_flight = slots.in_flight.saturating_sub(1);
        if outcome == Outcome::Dropped {
            slots.cap = slots.cap.min(slots.in_flight).max(1);
        }
        let mut next = None;
        while slots.in_flight < slots.cap {
            let item = if let Some(item) = slots.firsts.pop() {
                item
            } else if let Some(item) = slots.waiting.pop_front() {
                self.waiting -= 1;
                item
            } else {
                break;
            };
            if wants(&item) {
                slots.in_flight += 1;
                next = Some(item);
                break;
            }
        }
        if slots.is_idle() && slots.cap == self.per_peer {
            self.peers.remove(peer);
        }
        next
    }

    /// `peer` has no connection left: a new one starts with the full cap.
    pub(super) fn disconnected(&mut self, peer: &PeerId) {
        if let Some(slots) = self.peers.get_mut(peer) {
            slots.cap = self.per_peer;
            if slots.is_idle() {
                self.peers.remove(peer);
            }
        }
    }

    /// Most requests in flight to `peer` at once, as learned.
    #[cfg(test)]
    fn cap(&self, peer: &PeerId) -> usize {
        self.peers
            .get(peer)
            .map_or(self.per_peer, |slots| slots.cap)
    }

    /// Drops the waiting requests that nobody `wants` any more, so that
    /// callers that gave up do not hold queue room.
    pub(super) fn retain(&mut self, wants: impl Fn(&T) -> bool) {
        for slots in self.peers.values_mut() {
            slots.firsts.retain(&wants);
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
            .flat_map(|(_, slots)| slots.firsts.into_iter().chain(slots.waiting))
            .collect()
    }

    /// Most requests that may wait, over all peers.
    pub(super) fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    /// Items admitted by [`Window::admit`] waiting for a slot, over all
    /// peers.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting
    }

    /// Items admitted first waiting for a slot, over all peers.
    #[cfg(test)]
    fn firsts_waiting(&self) -> usize {
        self.peers.values().map(|slots| slots.firsts.len()).sum()
    }
}

impl<T> Slots<T> {
    fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.firsts.is_empty() && self.waiting.is_empty()
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
        assert_eq!(w.finished(&peer, Outcome::Done, always), Some(3));
        assert_eq!(w.finished(&peer, Outcome::Done, always), Some(4));
        assert_eq!(w.finished(&peer, Outcome::Done, always), None);
        assert_eq!(w.finished(&peer, Outcome::Done, always), None);
        assert!(w.peers.is_empty(), "an idle peer leaves nothing behind");
    }

    #[test]
    fn an_item_admitted_first_goes_before_the_waiting_and_is_never_refused() {
        let peer = PeerId::random();
        let mut w = Window::new(1, 1);
        assert_eq!(
            w.admit_first(peer, 1),
            Admit::Send(1),
            "a free slot is taken"
        );
        assert_eq!(w.admit(peer, 2), Admit::Wait);
        assert_eq!(w.admit(peer, 3), Admit::Full(3));
        assert_eq!(w.admit_first(peer, 4), Admit::Wait, "not refused");
        assert_eq!(w.admit_first(peer, 5), Admit::Wait);
        assert_eq!((w.waiting(), w.firsts_waiting()), (1, 2));
        assert_eq!(w.finished(&peer, Outcome::Done, always), Some(5));
        assert_eq!(w.finished(&peer, Outcome::Done, always), Some(4));
        assert_eq!(w.finished(&peer, Outcome::Done, always), Some(2));
        assert_eq!(w.finished(&peer, Outcome::Done, always), None);
        assert!(w.peers.is_empty());
    }

    #[test]
    fn items_admitted_first_take_no_room_from_the_others() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut w = Window::new(1, 1);
        assert_eq!(w.admit(a, 1), Admit::Send(1));
        assert_eq!(w.admit(b, 2), Admit::Send(2));
        assert_eq!(w.admit_first(a, 3), Admit::Wait);
        assert_eq!(w.admit_first(b, 4), Admit::Wait);
        assert_eq!(
            w.admit(a, 5),
            Admit::Wait,
            "two cancels wait, yet the one request may too"
        );
        assert_eq!(w.admit(b, 6), Admit::Full(6), "the requests' room is full");
        w.retain(|i| *i != 4);
        assert_eq!((w.waiting(), w.firsts_waiting()), (1, 1));
        assert_eq!(w.finished(&b, Outcome::Done, always), None);
        assert_eq!(w.finished(&a, Outcome::Done, always), Some(3));
        assert_eq!(w.finished(&a, Outcome::Done, always), Some(5));
        assert_eq!((w.waiting(), w.firsts_waiting()), (0, 0));
    }

    #[test]
    fn peers_do_not_share_slots() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut w = Window::new(1, 10);
        assert_eq!(w.admit(a, 1), Admit::Send(1));
        assert_eq!(w.admit(a, 2), Admit::Wait);
        assert_eq!(w.admit(b, 3), Admit::Send(3), "b has its own slot");
        assert_eq!(
            w.finished(&b, Outcome::Done, always),
            None,
            "nothing waits for b"
        );
        assert_eq!(w.finished(&a, Outcome::Done, always), Some(2));
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
        assert_eq!(w.finished(&a, Outcome::Done, always), Some(3));
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
        assert_eq!(
            w.finished(&peer, Outcome::Done, |i| *i != 3),
            Some(4),
            "3 was given up"
        );
        assert_eq!(w.waiting(), 2);
        assert_eq!(
            w.finished(&peer, Outcome::Done, |_| false),
            None,
            "nobody wants 5 or 6"
        );
        assert_eq!(w.waiting(), 0);
        assert!(w.peers.is_empty());
    }

    #[test]
    fn a_dropped_stream_caps_the_peer_at_what_it_took() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let mut w = Window::new(4, 10);
        for i in 1..=4 {
            assert_eq!(w.admit(peer, i), Admit::Send(i));
        }
        assert_eq!(w.admit(peer, 5), Admit::Wait);
        // The peer took two and dropped the other two.
        assert_eq!(w.finished(&peer, Outcome::Dropped, always), None);
        assert_eq!(w.finished(&peer, Outcome::Dropped, always), None);
        assert_eq!(w.cap(&peer), 2);
        assert_eq!(w.admit(peer, 6), Admit::Wait, "two in flight already");
        assert_eq!(w.finished(&peer, Outcome::Done, always), Some(5));
        assert_eq!(w.finished(&peer, Outcome::Done, always), Some(6));
        assert_eq!(w.cap(&peer), 2, "answers do not raise the cap");
        assert_eq!(w.cap(&other), 4, "other peers keep the full cap");
        assert_eq!(w.finished(&peer, Outcome::Done, always), None);
        assert_eq!(w.finished(&peer, Outcome::Done, always), None);
        assert_eq!(w.cap(&peer), 2, "an idle peer keeps what was learned");
        w.disconnected(&peer);
        assert_eq!(w.cap(&peer), 4, "a new connection starts afresh");
        assert!(w.peers.is_empty(), "a gone idle peer leaves nothing behind");
    }

    #[test]
    fn a_peer_that_takes_nothing_still_gets_one_at_a_time() {
        let peer = PeerId::random();
        let mut w = Window::new(3, 10);
        assert_eq!(w.admit(peer, 1), Admit::Send(1));
        assert_eq!(w.finished(&peer, Outcome::Dropped, always), None);
        assert_eq!(w.cap(&peer), 1, "never zero, or nothing would be sent");
        assert_eq!(w.admit(peer, 2), Admit::Send(2));
        assert_eq!(w.admit(peer, 3), Admit::Wait);
    }

    #[test]
    fn a_disconnect_keeps_what_is_in_flight_and_waiting() {
        let peer = PeerId::random();
        let mut w = Window::new(2, 10);
        assert_eq!(w.admit(peer, 1), Admit::Send(1));
        assert_eq!(w.admit(peer, 2), Admit::Send(2));
        assert_eq!(w.finished(&peer, Outcome::Dropped, always), None);
        assert_eq!(w.admit(peer, 3), Admit::Wait);
        w.disconnected(&peer);
        assert_eq!(w.waiting(), 1, "the waiting request is still owed a send");
        assert_eq!(w.finished(&peer, Outcome::Done, always), Some(3));
        assert_eq!(w.admit(peer, 4), Admit::Send(4), "the full cap is back");
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

    /// A generated run checked against a model of the window's promises:
    /// a peer never has more in flight than its cap (the limit, lowered to
    /// what it still had in flight after a dropped stream, restored when it
    /// disconnects); an item waits only when its peer is at its cap and is
    /// refused only when the queue of requests is full, a cancel never, and
    /// waiting cancels take none of its room; a slot that frees goes to the
    /// latest waiting cancel, else to the oldest waiting request, skipping
    /// those nobody wants; nothing is sent twice and nothing is lost but
    /// what nobody wants.
    mod properties {
        use std::collections::{HashSet, VecDeque};

        use proptest::prelude::*;

        use super::*;

        const PEERS: usize = 3;
        const PER_PEER: usize = 2;
        const MAX_WAITING: usize = 3;

        #[derive(Debug, Clone)]
        enum Op {
            Admit(usize),
            AdmitFirst(usize),
            Finished(usize, bool),
            Disconnected(usize),
            Retain,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0..PEERS).prop_map(Op::Admit),
                1 => (0..PEERS).prop_map(Op::AdmitFirst),
                4 => (0..PEERS, any::<bool>()).prop_map(|(p, dropped)| Op::Finished(p, dropped)),
                1 => (0..PEERS).prop_map(Op::Disconnected),
                1 => Just(Op::Retain),
            ]
        }

        /// Callers have given up on every fifth item.
        fn wanted(item: &u32) -> bool {
            !item.is_multiple_of(5)
        }

        #[derive(Debug, Clone)]
        struct Peer {
            in_flight: usize,
            cap: usize,
            /// Waiting cancels, the latest last; waiting requests, oldest first.
            firsts: Vec<u32>,
            rest: VecDeque<u32>,
        }

        proptest! {
            #[test]
            fn the_window_keeps_its_promises(ops in prop::collection::vec(op(), 1..100)) {
                let ids: Vec<PeerId> = (0..PEERS).map(|_| PeerId::random()).collect();
                let mut window = Window::new(PER_PEER, MAX_WAITING);
                let fresh = Peer { in_flight: 0, cap: PER_PEER, firsts: Vec::new(), rest: VecDeque::new() };
                let mut peers = vec![fresh; PEERS];
                let mut next = 0u32;
                let mut sent = HashSet::new();
                let mut refused = HashSet::new();
                for op in ops {
                    let waiting: usize = peers.iter().map(|p| p.rest.len()).sum();
                    let firsts: usize = peers.iter().map(|p| p.firsts.len()).sum();
                    prop_assert_eq!(window.waiting(), waiting);
                    prop_assert_eq!(window.firsts_waiting(), firsts);
                    match op {
                        Op::Admit(p) | Op::AdmitFirst(p) => {
                            next += 1;
                            let first = matches!(op, Op::AdmitFirst(_));
                            let peer = &mut peers[p];
                            let expected = if peer.in_flight < peer.cap {
                                peer.in_flight += 1;
                                sent.insert(next);
                                Admit::Send(next)
                            } else if first {
                                peer.firsts.push(next);
                                Admit::Wait
                            } else if waiting < MAX_WAITING {
                                peer.rest.push_back(next);
                                Admit::Wait
                            } else {
                                refused.insert(next);
                                Admit::Full(next)
                            };
                            let admitted = if first {
                                window.admit_first(ids[p], next)
                            } else {
                                window.admit(ids[p], next)
                            };
                            prop_assert_eq!(admitted, expected);
                        }
                        Op::Finished(p, dropped) => {
                            let peer = &mut peers[p];
                            if peer.in_flight == 0 {
                                continue;
                            }
                            peer.in_flight -= 1;
                            if dropped {
                                peer.cap = peer.cap.min(peer.in_flight).max(1);
                            }
                            let mut expected = None;
                            while expected.is_none() && peer.in_flight < peer.cap {
                                let Some(item) = peer.firsts.pop().or_else(|| peer.rest.pop_front()) else {
                                    break;
                                };
                                if wanted(&item) {
                                    peer.in_flight += 1;
                                    prop_assert!(sent.insert(item), "{} sent twice", item);
                                    expected = Some(item);
                                }
                            }
                            let outcome = if dropped { Outcome::Dropped } else { Outcome::Done };
                            prop_assert_eq!(window.finished(&ids[p], outcome, wanted), expected);
                        }
                        Op::Disconnected(p) => {
                            window.disconnected(&ids[p]);
                            peers[p].cap = PER_PEER;
                        }
                        Op::Retain => {
                            window.retain(wanted);
                            for peer in &mut peers {
                                peer.firsts.retain(wanted);
                                peer.rest.retain(wanted);
                            }
                        }
                    }
                    for (p, peer) in peers.iter().enumerate() {
                        prop_assert!(peer.in_flight <= peer.cap);
                        prop_assert_eq!(window.cap(&ids[p]), peer.cap);
                    }
                }
                // What still waits comes back, and every item is accounted for.
                let mut drained = window.drain();
                drained.sort_unstable();
                let mut waiting: Vec<u32> =
                    peers.iter().flat_map(|p| p.firsts.iter().chain(&p.rest)).copied().collect();
                waiting.sort_unstable();
                prop_assert_eq!(&drained, &waiting);
                for item in 1..=next {
                    let accounted = sent.contains(&item)
                        || refused.contains(&item)
                        || drained.binary_search(&item).is_ok();
                    prop_assert!(accounted || !wanted(&item), "item {} was lost", item);
                }
            }
        }
    }
}
