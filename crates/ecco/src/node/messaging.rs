//! Requests between agents, their replies and what can go wrong.

use std::time::Duration;

use ecco_core::CapabilityType;
use ecco_core::aggregation::FailureKind;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use serde_json::Value;

/// A request to an agent: which capability, a JSON payload and optional binary attachments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The capability type asked for, such as `llm/chat`.
    pub capability: CapabilityType,
    /// The input, as JSON.
    pub payload: Value,
    /// Binary attachments (images, documents), sent as CBOR byte strings.
    #[serde(default)]
    pub attachments: Vec<ByteBuf>,
    /// When set, this is a negotiation step about the capability, not work:
    /// the answer's result is a [`negotiation::Reply`](crate::negotiation::Reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negotiation: Option<crate::negotiation::Step>,
    /// How long the requester waits for the answer, in milliseconds from
    /// when it sent the request. Set by the sending node, so that the
    /// provider can stop work nobody waits for ([`Request::timeout`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout_ms: Option<u64>,
    /// The requester's number for this request, unique among its requests
    /// to this provider, so that it can cancel the request by that number
    /// once nobody waits for the answer. Set by the sending node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<u64>,
}

impl Request {
    /// A request without attachments.
    pub fn new(capability: CapabilityType, payload: Value) -> Self {
        Self {
            capability,
            payload,
            attachments: Vec::new(),
            negotiation: None,
            timeout_ms: None,
            id: None,
        }
    }

    /// How long the requester said it would wait for the answer, from when
    /// it sent the request: set on an inbound request whose requester said
    /// so (Ecco nodes do, for every [`Node::request`](super::Node::request)),
    /// `None` on one the application builds.
    /// [`InboundRequest::deadline`](super::InboundRequest::deadline) is when
    /// that runs out on the provider.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }

    /// Tells the provider that the requester waits `left` from now: the
    /// time left, not a clock time, so that the two clocks need not agree.
    pub(crate) fn set_timeout(&mut self, left: Duration) {
        // Rounded up: a provider told less than the requester waits would
        // give up first.
        let millis = left.as_micros().div_ceil(1000);
        self.timeout_ms = Some(u64::try_from(millis).unwrap_or(u64::MAX));
    }

    /// Adds a binary attachment.
    #[must_use]
    pub fn attach(mut self, bytes: Vec<u8>) -> Self {
        self.attachments.push(ByteBuf::from(bytes));
        self
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The result, as JSON.
    pub result: Value,
    /// Binary attachments.
    #[serde(default)]
    pub attachments: Vec<ByteBuf>,
    /// The answering agent's signed receipt for this interaction, which the
    /// client can attach to feedback for a registry. Agents that use a
    /// registry issue one with every answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Box<ecco_registry::Receipt>>,
}

impl Answer {
    /// An answer without attachments.
    pub fn new(result: Value) -> Self {
        Self {
            result,
            attachments: Vec::new(),
            receipt: None,
        }
    }

    /// Adds a binary attachment.
    #[must_use]
    pub fn attach(mut self, bytes: Vec<u8>) -> Self {
        self.attachments.push(ByteBuf::from(bytes));
        self
    }
}

/// What travels back: an answer or a typed error from the remote side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The handler answered.
    Answer(Answer),
    /// The remote side declined or failed.
    Error(RemoteError),
}

/// An error the remote side reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteError {
    /// Which kind.
    pub kind: RemoteErrorKind,
    /// Details for people.
    pub message: String,
}

/// The kinds of error a remote side reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteErrorKind {
    /// It has no handler for the capability.
    NoHandler,
    /// Its handler failed.
    HandlerFailed,
    /// It refused (busy, not allowed).
    Refused,
    /// The request or the answer exceeded a size limit.
    TooLarge,
}

/// Why a request got no answer. Each case says which thing happened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// The peer could not be reached (no address, dial failed, connection lost).
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The peer refused the request.
    #[error("refused: {0}")]
    Refused(String),
    /// The peer has no handler for the capability.
    #[error("no handler: {0}")]
    NoHandler(String),
    /// The peer's handler failed.
    #[error("handler failed: {0}")]
    HandlerFailed(String),
    /// The request or the answer exceeded a size limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// This node has too many requests under way to take another (a local
    /// limit, not the peer's refusal): try again once some have finished.
    #[error("busy: {0}")]
    Busy(String),
    /// The local node has shut down.
    #[error("the node has shut down")]
    NodeStopped,
}

impl RequestError {
    /// What happened, without the category that [`RequestError::kind`]
    /// names: a [`Failure`](ecco_core::aggregation::Failure) shows both, so
    /// its message must not repeat the kind.
    pub fn detail(&self) -> String {
        match self {
            Self::Unreachable(m)
            | Self::Refused(m)
            | Self::NoHandler(m)
            | Self::HandlerFailed(m)
            | Self::TooLarge(m)
            | Self::Busy(m) => m.clone(),
            Self::Timeout(after) => format!("no answer within {after:?}"),
            Self::NodeStopped => "the node has shut down".to_owned(),
        }
    }

    /// The failure category that aggregation reports.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Unreachable(_) | Self::NodeStopped => FailureKind::Unreachable,
            Self::Timeout(_) => FailureKind::Timeout,
            Self::Refused(_) | Self::Busy(_) => FailureKind::Refused,
            Self::NoHandler(_) => FailureKind::NoHandler,
            Self::HandlerFailed(_) => FailureKind::HandlerFailed,
            Self::TooLarge(_) => FailureKind::TooLarge,
        }
    }
}

impl From<RemoteError> for RequestError {
    fn from(e: RemoteError) -> Self {
        match e.kind {
            RemoteErrorKind::NoHandler => Self::NoHandler(e.message),
            RemoteErrorKind::HandlerFailed => Self::HandlerFailed(e.message),
            RemoteErrorKind::Refused => Self::Refused(e.message),
            RemoteErrorKind::TooLarge => Self::TooLarge(e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use ecco_core::aggregation::Failure;

    use super::*;

    #[test]
    fn the_time_told_is_rounded_up_to_the_millisecond() {
        let mut request = Request::new("x/y".parse().unwrap(), Value::Null);
        for (left, told) in [
            (Duration::from_micros(299_700), 300),
            (Duration::from_millis(300), 300),
            (Duration::from_micros(1), 1),
            (Duration::ZERO, 0),
            (Duration::MAX, u64::MAX),
        ] {
            request.set_timeout(left);
            assert_eq!(request.timeout_ms, Some(told), "{left:?}");
        }
    }

    #[test]
    fn a_failure_names_its_kind_once() {
        let errors = [
            RequestError::Unreachable("dial failed".into()),
            RequestError::Timeout(Duration::from_secs(5)),
            RequestError::Refused("busy".into()),
            RequestError::NoHandler("text/stats".into()),
            RequestError::HandlerFailed("exit status 1".into()),
            RequestError::TooLarge("2 MiB".into()),
            RequestError::NodeStopped,
        ];
        for error in errors {
            let kind = error.kind().to_string();
            let shown = Failure::new(error.kind(), error.detail()).to_string();
            assert!(shown.starts_with(&format!("{kind}: ")), "{shown}");
            assert_eq!(shown.matches(kind.as_str()).count(), 1, "{shown}");
        }
    }
}
