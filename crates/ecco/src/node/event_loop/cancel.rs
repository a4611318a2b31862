//! Cancelling requests nobody waits for any more.
//!
//! A caller that drops its request (a query decided without that agent, a
//! task aborted) leaves the provider's handler working for nobody until the
//! request's deadline. Each request therefore carries a number of its
//! requester's choosing, and a requester whose caller has gone sends a
//! cancel naming it; the provider then drops the handler's reply channel,
//! which cancels the handler (`InboundRequest::closed`), and answers the
//! request at once, so that its stream is freed.

use std::time::Instant;

use libp2p::PeerId;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use serde_json::Value;
use tokio::sync::oneshot;

use super::in_progress::Key;
use super::{EventLoop, refusal};
use crate::node::codec::Inbound;
use crate::node::messaging::{Answer, RemoteErrorKind, Reply, RequestError};

/// What the provider answers a request its requester cancelled. Nobody
/// reads it: it ends the stream cleanly, so that the requester does not
/// take it for a stream dropped unread.
const CANCELLED: &str = "cancelled by the requester";

/// A request on its way to a provider, until its answer arrives.
pub(super) struct Sent {
    pub(super) peer: PeerId,
    /// The request's number on the wire.
    pub(super) id: u64,
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<Result<Answer, RequestError>>,
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
        let cancelled = self.in_progress.cancel(&Key::Numbered(peer, id));
        self.respond(channel, Reply::Answer(Answer::new(Value::Bool(cancelled))));
    }
}

/// What a cancelled request's stream gets instead of the handler's answer.
pub(super) fn cancelled() -> Reply {
    refusal(RemoteErrorKind::Refused, CANCELLED.to_owned())
}
