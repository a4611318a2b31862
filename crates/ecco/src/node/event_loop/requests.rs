//! Requests between agents: those this node sends, through the per-peer
//! window, and those it serves, handed to the application and answered.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use libp2p::PeerId;
use libp2p::request_response::{self, InboundRequestId, OutboundFailure, ResponseChannel};
use tokio::sync::{mpsc, oneshot, watch};

use super::{EventLoop, cancel, in_progress, window};
use crate::node::codec::{Inbound, TOO_LARGE};
use crate::node::config::OVERTIME;
use crate::node::handle::{InboundRequest, Responder};
use crate::node::messaging::{Answer, RemoteError, RemoteErrorKind, Reply, Request, RequestError};

/// How libp2p's request-response says that a connection already carries
/// its most streams (its handler's text; there is no typed error for it).
const STREAMS_FULL: &str = "max sub-streams reached";

pub(super) fn is_streams_full(error: &std::io::Error) -> bool {
    error.to_string() == STREAMS_FULL
}

/// The peer closed or reset the stream without answering: yamux fails a
/// write to a reset stream with `WriteZero`, and the codec reads an empty
/// answer as `UnexpectedEof`.
fn unanswered(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WriteZero | std::io::ErrorKind::UnexpectedEof
    )
}

/// A request waiting for a free stream to its peer.
pub(super) struct Queued {
    pub(super) request: Request,
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<Result<Answer, RequestError>>,
}

/// What takes a stream to a peer, in the window.
pub(super) enum Outgoing {
    Request(Queued),
    /// Ahead of the waiting requests (`Window::admit_first`).
    Cancel(cancel::Unsent),
}

impl Outgoing {
    /// Whether it is still worth sending: a request's caller waits for the
    /// answer, a cancel's request is not past its deadline.
    pub(super) fn wanted(&self) -> bool {
        match self {
            Self::Request(queued) => !queued.reply.is_closed(),
            Self::Cancel(unsent) => unsent.wanted(Instant::now()),
        }
    }
}

/// An inbound request's reply on its way, with the request's key in
/// `in_progress`; no reply when the requester went away first (its answer
/// could not reach it).
pub(super) type PendingReply =
    BoxFuture<'static, (in_progress::Key, Option<(ResponseChannel<Reply>, Reply)>)>;

impl EventLoop {
    pub(super) fn on_messaging(&mut self, event: request_response::Event<Inbound, Reply>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request_id,
                    request,
                    channel,
                } => self.on_request(peer, request_id, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if self.cancels.remove(&request_id).is_some() {
                        return self.request_finished(peer, window::Outcome::Done);
                    }
                    if let Some(sent) = self.requests.remove(&request_id) {
                        let _ = sent.reply.send(match response {
                            Reply::Answer(answer) => Ok(answer),
                            Reply::Error(e) => Err(e.into()),
                        });
                    }
                    self.request_finished(peer, window::Outcome::Done);
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                // The peer's handler drops a stream over its limit unread,
                // and the connection stays up: a closed connection is
                // reported as `ConnectionClosed`, not as an I/O error.
                let outcome = match &error {
                    OutboundFailure::Io(e) if unanswered(e) && self.swarm.is_connected(&peer) => {
                        window::Outcome::Dropped
                    }
                    _ => window::Outcome::Done,
                };
                // Finished first, so that the error can say what was learned.
                self.request_finished(peer, outcome);
                if let Some(unsent) = self.cancels.remove(&request_id) {
                    return self.cancel_failed(peer, unsent, &error, outcome);
                }
                if let Some(sent) = self.requests.remove(&request_id) {
                    let _ = sent
                        .reply
                        .send(Err(self.outbound_error(peer, error, outcome)));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn outbound_error(
        &self,
        peer: PeerId,
        error: OutboundFailure,
        outcome: window::Outcome,
    ) -> RequestError {
        match error {
            OutboundFailure::DialFailure => {
                RequestError::Unreachable(format!("cannot connect to {peer}"))
            }
            OutboundFailure::Timeout => RequestError::Timeout(self.limits.longest_request()),
            OutboundFailure::ConnectionClosed => RequestError::Unreachable(format!(
                "the connection to {peer} closed before the answer"
            )),
            OutboundFailure::UnsupportedProtocols => RequestError::Refused(format!(
                "{peer} does not speak this mesh's request protocol"
            )),
            OutboundFailure::Io(e) if is_streams_full(&e) => RequestError::Busy(format!(
                "the connection to {peer} already carries {} request streams, counting its requests to this node (limits.max_concurrent_streams)",
                self.max_concurrent_streams
            )),
            OutboundFailure::Io(e) if e.to_string().contains(TOO_LARGE) => {
                RequestError::TooLarge(e.to_string())
            }
            OutboundFailure::Io(e) if outcome == window::Outcome::Dropped => {
                RequestError::Busy(format!(
                    "{peer} had no free stream for the request and closed it unread (its limits.max_concurrent_streams, counting its own requests to this node, is reached); until it disconnects, this node sends it no more at once than it took ({e})"
                ))
            }
            OutboundFailure::Io(e) if unanswered(&e) => RequestError::Unreachable(format!(
                "the stream to {peer} closed before the answer: {e}"
            )),
            OutboundFailure::Io(e) => {
                RequestError::Refused(format!("the stream to {peer} failed: {e}"))
            }
        }
    }

    /// A caller's request to `peer`: sent at once if the window has room
    /// for it, else waiting for a free stream, else refused as busy.
    pub(super) fn request(&mut self, peer: PeerId, queued: Queued) {
        match self.window.admit(peer, Outgoing::Request(queued)) {
            window::Admit::Send(outgoing) => self.send(peer, outgoing),
            window::Admit::Wait => {}
            // What was offered comes back: the request.
            window::Admit::Full(outgoing) => {
                if let Outgoing::Request(queued) = outgoing {
                    let _ = queued.reply.send(Err(RequestError::Busy(format!(
                        "{} requests already wait for a free stream (limits.max_waiting_requests)",
                        self.window.max_waiting()
                    ))));
                }
            }
        }
    }

    pub(super) fn send(&mut self, peer: PeerId, outgoing: Outgoing) {
        match outgoing {
            Outgoing::Request(queued) => self.send_request(peer, queued),
            Outgoing::Cancel(unsent) => self.send_cancel(peer, unsent),
        }
    }

    fn send_request(&mut self, peer: PeerId, queued: Queued) {
        let mut request = queued.request;
        request.set_timeout(queued.deadline.saturating_duration_since(Instant::now()));
        let id = self.next_request_id();
        request.id = Some(id);
        let request_id = self
            .swarm
            .behaviour_mut()
            .messaging
            .send_request(&peer, Inbound::Request(request));
        self.requests.insert(
            request_id,
            cancel::Sent {
                peer,
                id,
                deadline: queued.deadline,
                reply: queued.reply,
            },
        );
    }

    /// A request or cancel to `peer` was answered or failed: its stream
    /// goes to the next one waiting.
    fn request_finished(&mut self, peer: PeerId, outcome: window::Outcome) {
        if let Some(next) = self.window.finished(&peer, outcome, Outgoing::wanted) {
            self.send(peer, next);
        }
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        request_id: InboundRequestId,
        request: Inbound,
        channel: ResponseChannel<Reply>,
    ) {
        let request = match request {
            Inbound::Request(request) => request,
            Inbound::Cancel(id) => return self.on_cancel(peer, id, channel),
            Inbound::Malformed(why) => {
                return self.respond(
                    channel,
                    refusal(
                        RemoteErrorKind::Refused,
                        format!("malformed request: {why}"),
                    ),
                );
            }
            Inbound::TooLarge(why) => {
                return self.respond(channel, refusal(RemoteErrorKind::TooLarge, why));
            }
        };
        let key = match request.id {
            Some(number) => in_progress::Key::Numbered(peer, number),
            None => in_progress::Key::Unnumbered(request_id),
        };
        let time = self.limits.answer_within(request.timeout());
        // A tick later at most (`in_progress`), still below libp2p's backstop.
        let ends = Instant::now().checked_add(time.saturating_add(OVERTIME));
        let Some(stop) = self.in_progress.register(key, ends) else {
            let number = request.id.unwrap_or_default();
            return self.respond(
                channel,
                refusal(
                    RemoteErrorKind::Refused,
                    format!("request number {number} is already in progress"),
                ),
            );
        };
        let reply = match self.hand_over(peer, request, time) {
            Ok(reply) => reply,
            Err(refused) => {
                self.in_progress.done(&key);
                return self.respond(channel, refused);
            }
        };
        let mut gone = self
            .gone
            .entry(peer)
            .or_insert_with(|| watch::channel(false).0)
            .subscribe();
        self.replies.push(Box::pin(async move {
            // Dropping `reply`, as every way out but the first does, tells
            // the handler (`InboundRequest::closed`).
            let done = tokio::select! {
                reply = reply => {
                    let reply = reply.unwrap_or_else(|_| {
                        refusal(
                            RemoteErrorKind::HandlerFailed,
                            "the handler dropped the request without answering".to_owned(),
                        )
                    });
                    Some((channel, reply))
                }
                // libp2p's own timeout is the longest request's: this
                // one's end is kept by `in_progress`, so that the handler
                // is told and the stream is freed when its time runs out.
                Ok(stop) = stop => Some((channel, match stop {
                    in_progress::Stop::Cancelled => cancel::cancelled(),
                    in_progress::Stop::TimeUp => refusal(
                        RemoteErrorKind::HandlerFailed,
                        format!("no answer within {time:?}"),
                    ),
                })),
                // The answer has no way back (a response travels on the
                // request's connection).
                _ = gone.wait_for(|gone| *gone) => None,
            };
            (key, done)
        }));
    }

    /// Answers an inbound request's stream.
    pub(super) fn respond(&mut self, channel: ResponseChannel<Reply>, reply: Reply) {
        // Fails only if the connection closed meanwhile; the requester then knows.
        let _ = self
            .swarm
            .behaviour_mut()
            .messaging
            .send_response(channel, reply);
    }

    /// Gives an inbound request to the application, or says at once why not.
    fn hand_over(
        &mut self,
        peer: PeerId,
        request: Request,
        time: Duration,
    ) -> Result<oneshot::Receiver<Reply>, Reply> {
        if self.replies.len() >= self.max_pending_replies {
            return Err(refusal(
                RemoteErrorKind::Refused,
                "busy: too many requests in progress".to_owned(),
            ));
        }
        let (tx, rx) = oneshot::channel();
        match self.inbound.try_send(InboundRequest::arrived(
            peer,
            request,
            Responder::Unary(tx),
            Some(time),
        )) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::TrySendError::Full(_)) => Err(refusal(
                RemoteErrorKind::Refused,
                "busy: the inbox is full".to_owned(),
            )),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(refusal(
                RemoteErrorKind::NoHandler,
                "this node serves no requests".to_owned(),
            )),
        }
    }
}

pub(super) fn refusal(kind: RemoteErrorKind, message: String) -> Reply {
    Reply::Error(RemoteError { kind, message })
}
