//! Inbound requests in progress, and what ends one before its handler
//! answers: its requester's cancel (`cancel.rs`) or the end of its time.
//!
//! The ends are checked on the node's tick, not with a timer per request:
//! a request's time is seconds to minutes, so ending it up to a tick late
//! is nothing, while arming a timer for every request cost the round trip
//! measurably (BENCHMARKS.md, "A provider's own timer per request").
//! Free of I/O and of the clock: callers pass the time in.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Instant;

use libp2p::PeerId;
use libp2p::request_response::InboundRequestId;
use tokio::sync::oneshot;

/// An inbound request, as its requester can name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Key {
    /// By the number its requester gave it, so that a cancel can name it.
    Numbered(PeerId, u64),
    /// A request without a number (another implementation's): it can only
    /// run out of time.
    Unnumbered(InboundRequestId),
}

/// Why a request ends before its handler answers.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stop {
    Cancelled,
    TimeUp,
}

struct Running {
    /// When the provider ends it; `None` for a time beyond what an
    /// `Instant` can hold.
    ends: Option<Instant>,
    /// Taken when the request is told to stop: it stays in progress, its
    /// number taken, until its stream is answered (`done`).
    stop: Option<oneshot::Sender<Stop>>,
}

/// Bounded by the requests the node accepts at once
/// (`Limits::inbound_queue` × 4, `EventLoop::max_pending_replies`).
#[derive(Default)]
pub(super) struct InProgress {
    running: HashMap<Key, Running>,
}

impl InProgress {
    /// Registers a request that ends at `ends`, unless answered first;
    /// `None` when its requester already has one in progress under that
    /// number (a broken requester: refused).
    pub(super) fn register(
        &mut self,
        key: Key,
        ends: Option<Instant>,
    ) -> Option<oneshot::Receiver<Stop>> {
        let Entry::Vacant(slot) = self.running.entry(key) else {
            return None;
        };
        let (tx, rx) = oneshot::channel();
        slot.insert(Running {
            ends,
            stop: Some(tx),
        });
        Some(rx)
    }

    /// The request's stream was answered, or its requester left.
    pub(super) fn done(&mut self, key: &Key) {
        self.running.remove(key);
    }

    /// Cancels the request, if it is still running; whether it was.
    pub(super) fn cancel(&mut self, key: &Key) -> bool {
        self.running
            .get_mut(key)
            .and_then(|running| running.stop.take())
            .is_some_and(|stop| stop.send(Stop::Cancelled).is_ok())
    }

    /// Ends the requests whose time is up at `now`; how many.
    pub(super) fn expire(&mut self, now: Instant) -> usize {
        let mut ended = 0;
        for running in self.running.values_mut() {
            if running.ends.is_some_and(|ends| ends <= now)
                && let Some(stop) = running.stop.take()
            {
                // Fails only if the request was answered meanwhile.
                ended += usize::from(stop.send(Stop::TimeUp).is_ok());
            }
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_registered_request_is_cancelled_once_and_numbers_are_per_requester() {
        let (alice, bob) = (PeerId::random(), PeerId::random());
        let mut in_progress = InProgress::default();
        let mut first = in_progress.register(Key::Numbered(alice, 1), None).unwrap();
        assert!(
            in_progress
                .register(Key::Numbered(alice, 1), None)
                .is_none(),
            "a number in progress is not taken twice"
        );
        let mut other = in_progress.register(Key::Numbered(bob, 1), None).unwrap();
        assert!(!in_progress.cancel(&Key::Numbered(alice, 2)), "never seen");
        assert!(in_progress.cancel(&Key::Numbered(alice, 1)));
        assert_eq!(first.try_recv(), Ok(Stop::Cancelled));
        assert!(
            !in_progress.cancel(&Key::Numbered(alice, 1)),
            "cancelled already"
        );
        assert!(
            in_progress
                .register(Key::Numbered(alice, 1), None)
                .is_none(),
            "the number stays taken until the cancelled request is answered"
        );
        assert!(other.try_recv().is_err(), "bob's request runs on");
        in_progress.done(&Key::Numbered(bob, 1));
        assert!(
            !in_progress.cancel(&Key::Numbered(bob, 1)),
            "answered already"
        );
        in_progress.done(&Key::Numbered(alice, 1));
        assert!(
            in_progress
                .register(Key::Numbered(alice, 1), None)
                .is_some(),
            "the number is free again"
        );
    }

    #[test]
    fn requests_end_when_their_time_is_up_and_only_once() {
        let peer = PeerId::random();
        let start = Instant::now();
        let at = |ms| Some(start + Duration::from_millis(ms));
        let mut in_progress = InProgress::default();
        let mut soon = in_progress
            .register(Key::Numbered(peer, 1), at(100))
            .unwrap();
        let mut later = in_progress
            .register(Key::Numbered(peer, 2), at(300))
            .unwrap();
        let mut never = in_progress.register(Key::Numbered(peer, 3), None).unwrap();

        assert_eq!(in_progress.expire(start + Duration::from_millis(99)), 0);
        assert!(soon.try_recv().is_err(), "not yet");
        assert_eq!(in_progress.expire(start + Duration::from_millis(100)), 1);
        assert_eq!(soon.try_recv(), Ok(Stop::TimeUp));
        assert_eq!(
            in_progress.expire(start + Duration::from_millis(200)),
            0,
            "told once"
        );
        assert!(
            !in_progress.cancel(&Key::Numbered(peer, 1)),
            "an ended request is not cancelled as well"
        );

        assert!(in_progress.cancel(&Key::Numbered(peer, 2)));
        assert_eq!(later.try_recv(), Ok(Stop::Cancelled));
        assert_eq!(
            in_progress.expire(start + Duration::from_secs(3600)),
            0,
            "a cancelled request does not run out of time as well, one without an end never does"
        );
        assert!(never.try_recv().is_err());
    }

    #[test]
    fn a_request_answered_before_its_time_is_not_ended() {
        let start = Instant::now();
        let mut in_progress = InProgress::default();
        let key = Key::Numbered(PeerId::random(), 7);
        let stop = in_progress
            .register(key, Some(start + Duration::from_millis(10)))
            .unwrap();
        // The reply future took the handler's answer: its stop receiver is gone.
        drop(stop);
        assert_eq!(in_progress.expire(start + Duration::from_secs(1)), 0);
        in_progress.done(&key);
        assert!(in_progress.running.is_empty());
    }
}
