//! Cancelling requests nobody waits for any more.
//!
//! A caller that drops its request (a query decided without that agent, a
//! task aborted) leaves the provider's handler working for nobody until the
//! request's deadline. Each request therefore carries a number of its
//! requester's choosing, and a requester whose caller has gone sends a
//! cancel naming it; the provider then drops the handler's reply channel,
//! which cancels the handler (`InboundRequest::closed`), and answers the
//! request at once, so that its stream is freed.
//!
//! A cancel needs a stream of its own, so it takes a slot of the window,
//! ahead of the requests waiting there. A provider with no room for it
//! drops it unread; it is sent again on the next tick, until the request's
//! deadline, so that a busy connection does not keep a provider working
//! for nobody.

use std::time::Instant;

use libp2p::PeerId;
use libp2p::request_response::{OutboundFailure, ResponseChannel};
use serde_json::Value;
use tokio::sync::oneshot;

use super::EventLoop;
use super::in_progress::Key;
use super::requests::{Outgoing, is_streams_full, refusal};
use super::window::{Admit, Outcome};
use crate::node::codec::Inbound;
use crate::node::messaging::{Answer, RemoteErrorKind, Reply, RequestError};

/// What the provider answers a request its requester cancelled. Nobody
/// reads it: it ends the stream cleanly, so that the requester does not
/// take it for a stream dropped unread.
const CANCELLED: &str = "cancelled by the requester";

/// A cancel of request `id`, worth sending until that request's deadline.
pub(super) struct Unsent {
    pub(super) id: u64,
    pub(super) deadline: Instant,
}

impl Unsent {
    pub(super) fn wanted(&self, now: Instant) -> bool {
        self.deadline > now
    }
}

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
        let mut cancels = std::mem::take(&mut self.cancels_to_retry);
        self.requests.retain(|_, sent| {
            if !sent.reply.is_closed() {
                return true;
            }
            let unsent = Unsent {
                id: sent.id,
                deadline: sent.deadline,
            };
            if unsent.wanted(now) {
                tracing::debug!(peer = %sent.peer, id = sent.id, "the caller stopped waiting: request cancelled");
                cancels.push((sent.peer, unsent));
            }
            false
        });
        for (peer, unsent) in cancels {
            // Over a connection that is still up only: a request to a peer
            // that left has failed, or will, on its own.
            if !unsent.wanted(now) || !self.swarm.is_connected(&peer) {
                continue;
            }
            match self.window.admit_first(peer, Outgoing::Cancel(unsent)) {
                Admit::Send(outgoing) => self.send(peer, outgoing),
                Admit::Wait | Admit::Full(_) => {}
            }
        }
    }

    pub(super) fn send_cancel(&mut self, peer: PeerId, unsent: Unsent) {
        let cancel = self
            .swarm
            .behaviour_mut()
            .messaging
            .send_request(&peer, Inbound::Cancel(unsent.id));
        self.cancels.insert(cancel, unsent);
    }

    /// A cancel that found no room for a stream, on the provider's side
    /// (`Outcome::Dropped`) or this one's (the connection carries the
    /// provider's requests too), goes again on the next tick; one that
    /// failed otherwise is given up: the connection is gone, or the
    /// provider does not take cancels.
    pub(super) fn cancel_failed(
        &mut self,
        peer: PeerId,
        unsent: Unsent,
        error: &OutboundFailure,
        outcome: Outcome,
    ) {
        let no_room = outcome == Outcome::Dropped
            || matches!(error, OutboundFailure::Io(e) if is_streams_full(e));
        if no_room {
            tracing::debug!(%peer, id = unsent.id, "no stream for a cancel: sent again on the tick");
            self.cancels_to_retry.push((peer, unsent));
        } else {
            tracing::debug!(%peer, id = unsent.id, %error, "a cancel did not reach the provider");
        }
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
