//! What an agent answered, or how it failed.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AgentId, Performance};

/// One agent's response to a query, as the orchestrator received it.
/// Aggregation reads a list of these in arrival order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Who answered.
    pub agent: AgentId,
    /// The answer, or why there is none.
    pub outcome: Outcome,
    /// How long the agent took, if measured.
    #[serde(default, with = "millis")]
    pub latency: Option<Duration>,
    /// The agent's match score for the query, in `[0, 1]`.
    #[serde(default)]
    pub score: f64,
    /// What was observed of the agent before this call, if anything.
    #[serde(default)]
    pub performance: Option<Performance>,
}

/// An answer or a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The agent answered.
    Answer(Value),
    /// The agent did not.
    Failed(Failure),
}

/// Why an agent gave no answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The category.
    pub kind: FailureKind,
    /// Details for people.
    pub message: String,
}

impl Failure {
    /// A failure of some kind with a message.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// The categories of failure the network layer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The agent could not be reached.
    Unreachable,
    /// The agent did not answer in time.
    Timeout,
    /// The agent refused the request.
    Refused,
    /// The agent has no handler for the capability.
    NoHandler,
    /// The agent's handler failed.
    HandlerFailed,
    /// The request or the response exceeded a size limit.
    TooLarge,
    /// The call was cancelled because the result was already decided.
    Cancelled,
    /// Anything else.
    Other,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::NoHandler => "no handler",
            Self::HandlerFailed => "handler failed",
            Self::TooLarge => "too large",
            Self::Cancelled => "cancelled",
            Self::Other => "failed",
        })
    }
}

impl Response {
    /// A successful answer.
    pub fn answer(agent: AgentId, value: impl Into<Value>) -> Self {
        Self {
            agent,
            outcome: Outcome::Answer(value.into()),
            latency: None,
            score: 0.0,
            performance: None,
        }
    }

    /// A failure.
    pub fn failed(agent: AgentId, failure: Failure) -> Self {
        Self {
            agent,
            outcome: Outcome::Failed(failure),
            latency: None,
            score: 0.0,
            performance: None,
        }
    }

    /// Sets the latency.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Sets the match score.
    #[must_use]
    pub fn with_score(mut self, score: f64) -> Self {
        self.score = score;
        self
    }

    /// Sets the observed performance.
    #[must_use]
    pub fn with_performance(mut self, performance: Performance) -> Self {
        self.performance = Some(performance);
        self
    }

    /// The answer, if the agent gave one.
    pub fn value(&self) -> Option<&Value> {
        match &self.outcome {
            Outcome::Answer(v) => Some(v),
            Outcome::Failed(_) => None,
        }
    }

    /// The weight of this response in a weighted vote.
    pub(crate) fn weight(&self) -> f64 {
        crate::performance::weight(self.score, self.performance.as_ref())
    }
}

/// Serializes an optional duration as fractional milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let ms = Option::<f64>::deserialize(d)?;
        Ok(ms.and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok()))
    }
}
