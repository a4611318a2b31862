//! Handlers: what an agent runs when a request arrives.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use libp2p::PeerId;
use tokio::sync::Semaphore;

use crate::node::{Answer, Inbox, RemoteErrorKind, Request};

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
}

impl HandlerError {
    /// The handler failed.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: RemoteErrorKind::HandlerFailed,
            message: message.into(),
        }
    }

    /// The handler declines the request.
    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            kind: RemoteErrorKind::Refused,
            message: message.into(),
        }
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

/// The handlers of an agent: one per capability type, and an optional one
/// for every other type.
#[derive(Clone, Default)]
pub(crate) struct Handlers {
    pub(crate) by_type: HashMap<String, Arc<dyn Handler>>,
    pub(crate) fallback: Option<Arc<dyn Handler>>,
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
/// answers "busy").
pub(crate) async fn serve(mut inbox: Inbox, handlers: Handlers, concurrency: usize) {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    while let Some(inbound) = inbox.recv().await {
        let kind = inbound.request.capability.as_str().to_owned();
        let Some(handler) = handlers.get(&kind) else {
            inbound.reject(
                RemoteErrorKind::NoHandler,
                format!("this agent has no handler for `{kind}`"),
            );
            continue;
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (peer, request, reply) = inbound.into_parts();
        tokio::spawn(async move {
            match handler.call(Call { peer, request }).await {
                Ok(answer) => reply.respond(answer),
                Err(e) => reply.reject(e.kind, e.message),
            }
            drop(slot);
        });
    }
}
