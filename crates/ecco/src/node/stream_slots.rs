//! How many streaming requests go to one peer at once, and which wait.
//!
//! A provider serves at most `Limits::max_streaming_requests` streams at
//! once and refuses more as busy. A requester that opened more at once than
//! that would see some refused for no fault of the provider, so it keeps at
//! most that many open per peer and makes the rest wait, first come first
//! served, up to `Limits::max_waiting_requests` waiting over all peers (the
//! same rule as for request-response requests, whose window is in the event
//! loop; a stream is opened outside it, by the caller's task).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use libp2p::PeerId;
use tokio::sync::{Semaphore, TryAcquireError};

use super::messaging::RequestError;

/// Streams open per peer, shared by every clone of a node's handle.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    per_peer: usize,
    max_waiting: usize,
    waiting: AtomicUsize,
    /// Only peers with streams open or waiting, and how many slots (open or
    /// waiting) there are: an entry goes with the last.
    peers: Mutex<HashMap<PeerId, Peer>>,
}

#[derive(Debug)]
struct Peer {
    semaphore: Arc<Semaphore>,
    slots: usize,
}

/// One open stream's slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The peer's semaphore; the slot is counted in the peer's entry from
    /// before the wait until it is dropped.
    semaphore: Arc<Semaphore>,
    /// Whether this slot took a permit (given back when it is dropped).
    taken: bool,
    peer: PeerId,
    slots: Arc<Inner>,
}

/// Counts a caller as waiting while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Slots {
    /// At most `per_peer` streams open to one peer (at least one) and
    /// `max_waiting` callers waiting over all peers.
    pub(crate) fn new(per_peer: usize, max_waiting: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                per_peer: per_peer.max(1),
                max_waiting,
                waiting: AtomicUsize::new(0),
                peers: Mutex::default(),
            }),
        }
    }

    /// A slot for a stream to `peer`, at once if one is free, else when one
    /// is (callers that wait get them in order). Fails at once with
    /// [`RequestError::Busy`] when too many callers wait already.
    pub(crate) async fn take(&self, peer: PeerId) -> Result<Slot, RequestError> {
        let semaphore = {
            let mut peers = self.inner.lock();
            let entry = peers.entry(peer).or_insert_with(|| Peer {
                semaphore: Arc::new(Semaphore::new(self.inner.per_peer)),
                slots: 0,
            });
            entry.slots += 1;
            Arc::clone(&entry.semaphore)
        };
        // Dropping the slot, also with this future while it waits, uncounts
        // it, and removes the peer's entry with its last slot.
        let mut slot = Slot {
            semaphore,
            taken: false,
            peer,
            slots: Arc::clone(&self.inner),
        };
        let permit = match slot.semaphore.try_acquire() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                let admitted = self.inner.waiting.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |waiting| (waiting < self.inner.max_waiting).then_some(waiting + 1),
                );
                if admitted.is_err() {
                    return Err(RequestError::Busy(format!(
                        "{} streaming requests already wait for a free stream (limits.max_waiting_requests)",
                        self.inner.max_waiting
                    )));
                }
                let _waiting = Waiting(&self.inner.waiting);
                slot.semaphore
                    .acquire()
                    .await
                    .map_err(|_| RequestError::NodeStopped)?
            }
            // The semaphore is never closed.
            Err(TryAcquireError::Closed) => return Err(RequestError::NodeStopped),
        };
        // The slot gives the permit back itself when it is dropped.
        permit.forget();
        slot.taken = true;
        Ok(slot)
    }

    /// How many peers have streams open or waiting (for tests).
    #[cfg(test)]
    fn peers(&self) -> usize {
        self.inner.lock().len()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Peer>> {
        // The map stays consistent whatever a panicking holder did.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.taken {
            self.semaphore.add_permits(1);
        }
        let mut peers = self.slots.lock();
        if let Some(entry) = peers.get_mut(&self.peer) {
            entry.slots = entry.slots.saturating_sub(1);
            if entry.slots == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn at_most_per_peer_open_the_rest_wait_in_order_and_the_waiting_are_bounded() {
        let slots = Slots::new(2, 2);
        let (a, b) = (PeerId::random(), PeerId::random());
        let first = slots.take(a).await.unwrap();
        let second = slots.take(a).await.unwrap();
        // Another peer has slots of its own.
        let other = slots.take(b).await.unwrap();
        let (tx, mut order) = tokio::sync::mpsc::channel(4);
        let mut waiters = Vec::new();
        for n in 0..2 {
            let (shared, tx) = (slots.clone(), tx.clone());
            waiters.push(tokio::spawn(async move {
                let slot = shared.take(a).await.unwrap();
                tx.send(n).await.unwrap();
                slot
            }));
            // Queued in this order.
            while slots.inner.waiting.load(Ordering::Relaxed) <= n {
                tokio::task::yield_now().await;
            }
        }
        let refused = slots.take(a).await.unwrap_err();
        assert!(matches!(refused, RequestError::Busy(_)), "{refused}");
        // A free slot needs no wait; a full peer's next caller would.
        let another = slots.take(b).await.unwrap();
        assert!(
            matches!(slots.take(b).await, Err(RequestError::Busy(_))),
            "the bound on waiting is over all peers"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(50), order.recv())
                .await
                .is_err(),
            "nobody got a slot while both were taken"
        );
        drop(first);
        assert_eq!(order.recv().await, Some(0));
        drop(second);
        assert_eq!(order.recv().await, Some(1));
        assert_eq!(slots.inner.waiting.load(Ordering::Relaxed), 0);
        let held: Vec<Slot> = futures::future::try_join_all(waiters).await.unwrap();
        drop(other);
        assert_eq!(slots.peers(), 2, "b still has a stream open");
        drop(another);
        assert_eq!(slots.peers(), 1, "b is idle: its entry is gone");
        drop(held);
        assert_eq!(slots.peers(), 0, "and a's");
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_leaves_nothing_behind() {
        let slots = Slots::new(1, 8);
        let peer = PeerId::random();
        let open = slots.take(peer).await.unwrap();
        let gave_up = tokio::time::timeout(Duration::from_millis(20), slots.take(peer)).await;
        assert!(gave_up.is_err(), "it had to wait");
        assert_eq!(slots.inner.waiting.load(Ordering::Relaxed), 0);
        drop(open);
        assert_eq!(slots.peers(), 0);
        drop(slots.take(peer).await.unwrap());
        assert_eq!(slots.peers(), 0);
    }
}
