//! Cancelling requests nobody waits for any more.
//!
//! A caller that drops its request (a query decided without that agent, a
//! task aborted) leaves the provider's handler working for nobody until the
//! request's deadline. Each request therefore carries a number of its
//! requester's choosing, and a requester whose caller has gone sends a
//! cancel naming it; the provider then drops the handler's reply channel,
//! which cancels the handler (`InboundRequest::closed`), and answers the
//! request at once, so that its stream is freed.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{EventLoop, refusal};
use crate::node::codec::Inbound;
use crate::node::messaging::{Answer, RemoteErrorKind, Reply, RequestError};

/// What the provider answers a request its requester cancelled. Nobody
/// reads it: it ends the stream cleanly, so that the requester does not
/// take it for a stream dropped unread.
pub(super) const CANCELLED: &str = "cancelled by the requester";

/// A request on its way to a provider, until its answer arrives.
pub(super) struct Sent {
    pub(super) peer: PeerId,
    /// The request's number on the wire.
    pub(super) id: u64,
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<Result<Answer, RequestError>>,
}

/// The provider's side: inbound requests that carried a number, by
/// requester and number, until answered. Bounded by the requests in
/// progress (`Limits::inbound_queue` × 4).
#[derive(Default)]
pub(super) struct Cancellable {
    by_id: HashMap<(PeerId, u64), oneshot::Sender<()>>,
}

impl Cancellable {
    /// Registers a request; `None` when the requester already has one in
    /// progress under that number (a broken requester: refused).
    pub(super) fn register(&mut self, peer: PeerId, id: u64) -> Option<oneshot::Receiver<()>> {
        let slot = match self.by_id.entry((peer, id)) {
            std::collections::hash_map::Entry::Occupied(_) => return None,
            std::collections::hash_map::Entry::Vacant(slot) => slot,
        };
        let (tx, rx) = oneshot::channel();
        slot.insert(tx);
        Some(rx)
    }

    /// The request was answered (or cancelled, or its requester left).
    pub(super) fn done(&mut self, key: (PeerId, u64)) {
        self.by_id.remove(&key);
    }

    /// Cancels the request, if it is still in progress.
    fn cancel(&mut self, key: (PeerId, u64)) -> bool {
        self.by_id
            .remove(&key)
            .is_some_and(|cancel| cancel.send(()).is_ok())
    }
}

impl EventLoop {
    /// The next number for a request to a provider.
    pub(super) fn next_request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        id
    }

    /// Tells providers about the requests whose callers stopped waiting
    /// before the deadline (after it, the provider stops on its own). Runs
    /// on the tick: a drop is noticed within a quarter of a second, at no
    /// cost to the requests that are waited for.
    pub(super) fn cancel_abandoned(&mut self) {
        let now = Instant::now();
        let mut abandoned = Vec::new();
        self.requests.retain(|_, sent| {
            if !sent.reply.is_closed() {
                return true;
            }
            if sent.deadline > now {
                abandoned.push((sent.peer, sent.id));
            }
            false
        });
        for (peer, id) in abandoned {
            // Over a connection that is still up only: a request to a peer
            // that left has failed, or will, on its own.
            if !self.swarm.is_connected(&peer) {
                continue;
            }
            tracing::debug!(%peer, id, "the caller stopped waiting: request cancelled");
            let cancel = self
                .swarm
                .behaviour_mut()
                .messaging
                .send_request(&peer, Inbound::Cancel(id));
            self.cancels.insert(cancel);
        }
    }

    /// Whether `request_id` was a cancel, whose outcome nobody waits for.
    pub(super) fn cancel_finished(&mut self, request_id: OutboundRequestId) -> bool {
        self.cancels.remove(&request_id)
    }

    /// A requester's cancel of its request `id`: answered `true` when that
    /// request was in progress and is now cancelled, `false` otherwise
    /// (answered already, or never seen).
    pub(super) fn on_cancel(&mut self, peer: PeerId, id: u64, channel: ResponseChannel<Reply>) {
        let cancelled = self.cancellable.cancel((peer, id));
        // Fails only if the connection closed meanwhile.
        let _ = self
            .swarm
            .behaviour_mut()
            .messaging
            .send_response(channel, Reply::Answer(Answer::new(Value::Bool(cancelled))));
    }
}

/// What a cancelled request's stream gets instead of the handler's answer.
pub(super) fn cancelled() -> Reply {
    refusal(RemoteErrorKind::Refused, CANCELLED.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_request_is_cancelled_once_and_numbers_are_per_requester() {
        let (alice, bob) = (PeerId::random(), PeerId::random());
        let mut cancellable = Cancellable::default();
        let mut first = cancellable.register(alice, 1).unwrap();
        assert!(
            cancellable.register(alice, 1).is_none(),
            "a number in progress is not taken twice"
        );
        let mut other = cancellable.register(bob, 1).unwrap();
        assert!(!cancellable.cancel((alice, 2)), "never seen");
        assert!(cancellable.cancel((alice, 1)));
        assert_eq!(first.try_recv(), Ok(()));
        assert!(!cancellable.cancel((alice, 1)), "cancelled already");
        assert!(other.try_recv().is_err(), "bob's request runs on");
        cancellable.done((bob, 1));
        assert!(!cancellable.cancel((bob, 1)), "answered already");
        assert!(
            cancellable.register(alice, 1).is_some(),
            "the number is free again"
        );
    }
}
