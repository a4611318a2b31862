//! Handlers: what an agent runs when a request arrives.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use libp2p::PeerId;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use ecco_core::Capability;
use ecco_identity::Identity;
use ecco_registry::Receipt;

use crate::negotiation::{self, Step};
use crate::node::{Answer, InboundRequest, Inbox, RemoteErrorKind, Request};

/// One request, as a handler sees it.
#[derive(Debug, Clone)]
pub struct Call {
    /// Who asked (proven by the connection's handshake).
    pub peer: PeerId,
    /// What they asked.
    pub request: Request,
}

/// Why a handler gave no answer; the requester gets its kind and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct HandlerError {
    /// The kind the requester sees.
    pub kind: RemoteErrorKind,
    /// Details for the requester.
    pub message: String,
    // Shown even when the agent keeps failures private (`public`).
    public: bool,
}

impl HandlerError {
    /// The handler failed.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: RemoteErrorKind::HandlerFailed,
            message: message.into(),
            public: false,
        }
    }

    /// The handler declines the request. A refusal is the handler's own
    /// answer, so its message always reaches the requester.
    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            kind: RemoteErrorKind::Refused,
            message: message.into(),
            public: true,
        }
    }

    /// Marks the message as safe for any requester: it reaches them even
    /// when the agent keeps failures private (`Builder::private_errors`).
    /// For messages that give nothing away, such as "did not finish within
    /// 30s", which tell an asker to retry or send less.
    #[must_use]
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    /// Whether the message reaches the requester under private errors.
    pub fn is_public(&self) -> bool {
        self.public
    }
}

/// Answers requests. Implemented for every `Fn(Call) -> impl Future<Output =
/// Result<Answer, HandlerError>>`, so an async closure is a handler.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, call: Call) -> BoxFuture<'static, Result<Answer, HandlerError>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Answer, HandlerError>> + Send + 'static,
{
    fn call(&self, call: Call) -> BoxFuture<'static, Result<Answer, HandlerError>> {
        Box::pin(self(call))
    }
}

/// A negotiation step, as a provider sees it.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// Who negotiates.
    pub peer: PeerId,
    /// The capability this agent offers under the type asked for, if any.
    pub capability: Option<Capability>,
    /// The work the client means to send, as it described it.
    pub payload: serde_json::Value,
    /// The client's step.
    pub step: Step,
}

/// Decides negotiations for a provider. Implemented for every
/// `Fn(Proposal) -> impl Future<Output = negotiation::Reply>`. Without one,
/// an agent follows [`negotiation::default_rule`].
pub trait Negotiator: Send + Sync + 'static {
    /// Answers one step.
    fn negotiate(&self, proposal: Proposal) -> BoxFuture<'static, negotiation::Reply>;
}

impl<F, Fut> Negotiator for F
where
    F: Fn(Proposal) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = negotiation::Reply> + Send + 'static,
{
    fn negotiate(&self, proposal: Proposal) -> BoxFuture<'static, negotiation::Reply> {
        Box::pin(self(proposal))
    }
}

/// The handlers of an agent: one per capability type, and an optional one
/// for every other type; likewise its negotiators.
#[derive(Clone, Default)]
pub(crate) struct Handlers {
    pub(crate) by_type: HashMap<String, Arc<dyn Handler>>,
    pub(crate) fallback: Option<Arc<dyn Handler>>,
    pub(crate) negotiators: HashMap<String, Arc<dyn Negotiator>>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("types", &self.by_type.keys().collect::<Vec<_>>())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Handlers {
    fn get(&self, kind: &str) -> Option<Arc<dyn Handler>> {
        self.by_type.get(kind).or(self.fallback.as_ref()).cloned()
    }
}

/// Serves the inbox until the node stops: each request runs in its own task,
/// at most `concurrency` at once (beyond that the inbox fills and the node
/// answers "busy"). Negotiation steps go to the negotiators. When the node
/// stops, the calls still running are cancelled (their futures dropped, so
/// that a handler's process is killed) before this returns.
pub(crate) async fn serve(
    mut inbox: Inbox,
    handlers: Handlers,
    capabilities: Arc<std::sync::Mutex<Vec<Capability>>>,
    concurrency: usize,
    // Set when the agent uses a registry: every answer then carries a receipt.
    receipts: Option<Identity>,
    // Failures' messages stay in the log (`Builder::private_errors`).
    private_errors: bool,
) {
    let receipts = receipts.map(Arc::new);
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    // Owned here rather than detached, so that they end with the agent.
    let mut calls = JoinSet::new();
    loop {
        let inbound = tokio::select! {
            inbound = inbox.recv() => match inbound {
                Some(inbound) => inbound,
                None => break,
            },
            // Reaps finished calls, so that the set holds only running ones.
            Some(_) = calls.join_next() => continue,
        };
        let kind = inbound.request.capability.as_str().to_owned();
        let deadline = inbound.deadline();
        // It waited in the inbox past its requester's patience.
        let Some(inbound) = unless_past(inbound, &kind) else {
            continue;
        };
        if inbound.request.negotiation.is_some() {
            let capability = super::lock(&capabilities)
                .iter()
                .find(|c| c.kind().as_str() == kind)
                .cloned();
            let negotiator = handlers.negotiators.get(&kind).cloned();
            let (peer, request, reply) = inbound.into_parts();
            calls.spawn(async move {
                let Some(decision) =
                    until(deadline, negotiate(negotiator, peer, capability, request)).await
                else {
                    tracing::debug!(%peer, capability = %kind, "the requester's deadline passed: negotiation cancelled");
                    return reply.reject(RemoteErrorKind::HandlerFailed, PAST_DEADLINE.to_owned());
                };
                match serde_json::to_value(decision) {
                    Ok(value) => reply.respond(Answer::new(value)),
                    Err(e) => reply.reject(RemoteErrorKind::HandlerFailed, e.to_string()),
                }
            });
            continue;
        }
        let Some(handler) = handlers.get(&kind) else {
            inbound.reject(
                RemoteErrorKind::NoHandler,
                format!("this agent has no handler for `{kind}`"),
            );
            continue;
        };
        // Waits for a slot while still reaping, or no slot would free up.
        let slot = loop {
            tokio::select! {
                slot = slots.clone().acquire_owned() => break slot,
                Some(_) = calls.join_next() => {}
            }
        };
        let Ok(slot) = slot else {
            break;
        };
        // Or waited for a slot that long: a process started now would be
        // killed at once.
        let Some(inbound) = unless_past(inbound, &kind) else {
            continue;
        };
        let (peer, request, mut reply) = inbound.into_parts();
        let receipts = receipts.clone();
        calls.spawn(async move {
            let result = tokio::select! {
                result = until(deadline, handler.call(Call { peer, request })) => match result {
                    Some(result) => result,
                    None => {
                        tracing::debug!(%peer, capability = %kind, "the requester's deadline passed: call cancelled");
                        return reply.reject(RemoteErrorKind::HandlerFailed, PAST_DEADLINE.to_owned());
                    }
                },
                // Dropping the call cancels it (an exec handler's process
                // is killed): nobody is left to read its answer.
                () = reply.closed() => {
                    tracing::debug!(%peer, capability = %kind, "the requester is gone: call cancelled");
                    return;
                }
            };
            match result {
                Ok(mut answer) => {
                    if let Some(identity) = &receipts {
                        answer.receipt = Some(Box::new(Receipt::issue(
                            identity,
                            &peer,
                            &kind,
                            super::registry::now_ms(),
                        )));
                    }
                    reply.respond(answer)
                }
                Err(e) => {
                    let message = report(&e, peer, &kind, private_errors);
                    reply.reject(e.kind, message)
                }
            }
            drop(slot);
        });
    }
    calls.shutdown().await;
}

/// What a call cut short by its requester's deadline answers; the requester
/// has stopped waiting, so this mostly closes the stream.
const PAST_DEADLINE: &str = "the requester's deadline passed before the handler finished";

/// The request, unless its requester's deadline has passed (then it is
/// answered so, unstarted) or its requester cancelled it.
fn unless_past(inbound: InboundRequest, kind: &str) -> Option<InboundRequest> {
    if inbound.is_closed() {
        tracing::debug!(peer = %inbound.peer, capability = %kind, "the requester cancelled: not started");
        return None;
    }
    if inbound.deadline().is_none_or(|d| d > Instant::now()) {
        return Some(inbound);
    }
    tracing::debug!(peer = %inbound.peer, capability = %kind, "the requester's deadline passed: not started");
    inbound.reject(RemoteErrorKind::HandlerFailed, PAST_DEADLINE.to_owned());
    None
}

/// `work`'s output, or `None` once `deadline` passes (dropping `work`, which
/// cancels it: an exec handler's process is killed).
async fn until<T>(deadline: Option<Instant>, work: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), work).await.ok(),
        None => Some(work.await),
    }
}

/// Logs a handler's error and returns the message for the requester. The
/// operator sees every failure (a refusal is the handler's own choice, so
/// only at debug); a private failure's message stays here, unless marked
/// public, and the requester gets a reference to the log line instead.
fn report(e: &HandlerError, peer: PeerId, kind: &str, private: bool) -> String {
    if e.kind != RemoteErrorKind::HandlerFailed {
        tracing::debug!(%peer, capability = %kind, error = %e.message, "handler refused");
        return e.message.clone();
    }
    if !private || e.public {
        tracing::warn!(%peer, capability = %kind, error = %e.message, "handler failed");
        return e.message.clone();
    }
    let reference = format!("{:08x}", rand::random::<u32>());
    tracing::warn!(%peer, capability = %kind, %reference, error = %e.message, "handler failed");
    format!("the handler failed (reference {reference}: the agent's log has the details)")
}

async fn negotiate(
    negotiator: Option<Arc<dyn Negotiator>>,
    peer: PeerId,
    capability: Option<Capability>,
    request: Request,
) -> negotiation::Reply {
    let Some(step) = request.negotiation else {
        return negotiation::Reply::Declined {
            reason: "not a negotiation".to_owned(),
        };
    };
    if let Err(refusal) = negotiation::check_round(&step) {
        return refusal;
    }
    match negotiator {
        Some(n) => {
            n.negotiate(Proposal {
                peer,
                capability,
                payload: request.payload,
                step,
            })
            .await
        }
        None => negotiation::default_rule(capability.as_ref(), &step),
    }
}
