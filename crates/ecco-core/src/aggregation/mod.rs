//! How to combine the answers of several agents.
//!
//! Feed an [`Aggregator`] the [`Response`]s as they arrive; it says when the
//! result is decided (so that an orchestrator can stop waiting and cancel the
//! rest) and [`finish`](Aggregator::finish)es into a [`Consensus`]. Or call
//! [`aggregate`] on a complete list.
//!
//! Votes group equal answers first: answers agree when their
//! [normalized](similarity::normalize) forms are equal, and, with a
//! [`Grouping`] built on a [`Similarity`](similarity::Similarity) such as
//! [`Lexical`](similarity::Lexical), when they are similar enough, so that
//! `Paris`, `paris.` and `The capital is Paris` can vote together.
//!
//! | strategy | answer | confidence |
//! |---|---|---|
//! | `majority-vote` | the representative of the largest cluster | its share of successes |
//! | `weighted-vote` | the representative of the heaviest cluster | its share of the weight |
//! | `best-score` | the answer of the highest match score (ties: faster, then smaller id) | share of successes agreeing with it |
//! | `ensemble` | every cluster as `[{answer, agents, support}]`, largest first | share of the largest cluster |
//! | `consensus-threshold:T` | the majority answer if its share ≥ T, else *no consensus* | the majority's share |
//! | `first-response` | the first success to arrive | share of successes agreeing with it |
//! | `longest` | the longest answer (characters of text, or of compact JSON) | share of successes agreeing with it |
//! | `custom` | whatever the rule returns (`None`: no consensus) | share of successes agreeing with it |
//!
//! Ties between clusters go to the one with more members, then more weight,
//! then the best match score, then the smallest agent id, so the outcome of a
//! vote does not depend on the order of arrival.

mod cluster;
mod response;
pub mod similarity;
mod strategy;

pub use cluster::{Cluster, Grouping};
pub use response::{Failure, FailureKind, Outcome, Response};
pub use strategy::{Aggregation, CustomAggregator, ParseAggregationError};

use std::cmp::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::{AgentId, limits};

/// The combined result of a query to several agents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Consensus {
    /// The strategy used, as text.
    pub strategy: String,
    /// Whether an answer was reached.
    pub verdict: Verdict,
    /// The answer, when one was reached.
    pub answer: Option<Value>,
    /// How strongly the successful responses back the answer, in `[0, 1]`
    /// (see the [module documentation](self)); 0 without an answer, except
    /// for *no consensus*, where it is the majority's share.
    pub confidence: f64,
    /// How many agents gave an answer agreeing with it.
    pub agreement: usize,
    /// Whether a vote's answer tied with another answer on what the
    /// strategy counts (agents for `majority-vote` and
    /// `consensus-threshold`, weight for `weighted-vote`), so that the
    /// tie-break rule (see the [module documentation](self)) chose it
    /// rather than a majority. Always false for the other strategies.
    pub tied: bool,
    /// Those agents, in ascending id order.
    pub agreeing: Vec<AgentId>,
    /// Every cluster of agreeing answers, largest (or heaviest) first.
    pub clusters: Vec<Cluster>,
    /// The agents that failed, and why.
    pub failures: Vec<AgentFailure>,
    /// Every agent's outcome and latency, in arrival order.
    pub agents: Vec<AgentReport>,
}

/// Whether an answer was reached.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// An answer was reached.
    Decided,
    /// Answers came, but agreement stayed below the threshold (or the custom
    /// rule declined); the clusters still carry every answer.
    NoConsensus {
        /// The majority's share.
        agreement: f64,
        /// The threshold it had to reach (1 for a declining custom rule).
        threshold: f64,
    },
    /// Every agent failed.
    AllFailed,
    /// No agent responded at all.
    NoResponses,
}

/// An agent that failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentFailure {
    /// The agent.
    pub agent: AgentId,
    /// Why.
    pub failure: Failure,
}

/// One agent's part in the result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentReport {
    /// The agent.
    pub agent: AgentId,
    /// Whether it answered.
    pub ok: bool,
    /// Its latency in milliseconds, where known.
    pub latency_ms: Option<f64>,
    /// Its match score.
    pub score: f64,
}

/// Whether the orchestrator should keep waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More responses can change the result.
    Continue,
    /// The result is decided; the remaining calls can be cancelled.
    Decided,
}

/// Collects responses as they arrive and decides; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Aggregator {
    strategy: Aggregation,
    grouping: Grouping,
    expected: Option<usize>,
    responses: Vec<Response>,
}

impl Aggregator {
    /// An aggregator for a strategy, with exact grouping.
    pub fn new(strategy: Aggregation) -> Self {
        Self {
            strategy,
            grouping: Grouping::exact(),
            expected: None,
            responses: Vec::new(),
        }
    }

    /// Sets how answers are grouped.
    #[must_use]
    pub fn grouping(mut self, grouping: Grouping) -> Self {
        self.grouping = grouping;
        self
    }

    /// Says how many responses to expect, which lets votes decide early once
    /// a majority is out of reach for the others.
    #[must_use]
    pub fn expect(mut self, responses: usize) -> Self {
        self.expected = Some(responses);
        self
    }

    /// The responses received so far, in arrival order.
    pub fn responses(&self) -> &[Response] {
        &self.responses
    }

    /// Adds a response (in arrival order) and says whether the result is
    /// now decided. Past [`limits::MAX_RESPONSES`] responses are ignored and
    /// the result counts as decided.
    pub fn push(&mut self, response: Response) -> Progress {
        if self.responses.len() >= limits::MAX_RESPONSES {
            return Progress::Decided;
        }
        self.responses.push(response);
        self.progress()
    }

    /// Whether the result is decided with what has arrived.
    pub fn progress(&self) -> Progress {
        let received = self.responses.len();
        if received >= limits::MAX_RESPONSES || self.expected.is_some_and(|e| received >= e) {
            return Progress::Decided;
        }
        let decided = match (&self.strategy, self.expected) {
            (Aggregation::FirstResponse, _) => self.responses.iter().any(|r| r.value().is_some()),
            (Aggregation::MajorityVote, Some(expected)) => self.majority_secured(expected, 0.0),
            (Aggregation::ConsensusThreshold(t), Some(expected)) => {
                self.majority_secured(expected, *t)
            }
            _ => false,
        };
        if decided {
            Progress::Decided
        } else {
            Progress::Continue
        }
    }

    /// A cluster holding more than half of all expected responses stays the
    /// largest whatever the rest answer (merges only add to it), and its final
    /// share can only grow as failures shrink the denominator.
    fn majority_secured(&self, expected: usize, threshold: f64) -> bool {
        let top = cluster::clusters(&self.responses, &self.grouping, false)
            .first()
            .map_or(0, |c| c.members.len());
        2 * top > expected && top as f64 >= threshold * expected as f64
    }

    /// Decides with the responses received.
    pub fn finish(self) -> Consensus {
        decide(&self.strategy, &self.grouping, self.responses)
    }
}

/// Aggregates a complete list of responses, in arrival order.
pub fn aggregate(
    strategy: &Aggregation,
    grouping: &Grouping,
    responses: Vec<Response>,
) -> Consensus {
    let mut responses = responses;
    responses.truncate(limits::MAX_RESPONSES);
    decide(strategy, grouping, responses)
}

fn decide(strategy: &Aggregation, grouping: &Grouping, responses: Vec<Response>) -> Consensus {
    let by_weight = matches!(strategy, Aggregation::WeightedVote);
    let clusters = cluster::clusters(&responses, grouping, by_weight);
    let failures = responses
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed(f) => Some(AgentFailure {
                agent: r.agent.clone(),
                failure: f.clone(),
            }),
            Outcome::Answer(_) => None,
        })
        .collect();
    let agents = responses
        .iter()
        .map(|r| AgentReport {
            agent: r.agent.clone(),
            ok: r.value().is_some(),
            latency_ms: r.latency.map(|d| d.as_secs_f64() * 1000.0),
            score: r.score,
        })
        .collect();
    let mut result = Consensus {
        strategy: strategy.to_string(),
        verdict: Verdict::Decided,
        answer: None,
        confidence: 0.0,
        agreement: 0,
        tied: false,
        agreeing: Vec::new(),
        clusters: Vec::new(),
        failures,
        agents,
    };
    if clusters.is_empty() {
        result.verdict = if responses.is_empty() {
            Verdict::NoResponses
        } else {
            Verdict::AllFailed
        };
        return result;
    }

    // Strategies that pick one response directly, and the one they pick.
    let direct: Option<fn(&Response, &Response) -> Ordering> = match strategy {
        Aggregation::FirstResponse => Some(|_, _| Ordering::Equal),
        Aggregation::BestScore => Some(best_score_first),
        Aggregation::Longest => Some(longest_first),
        _ => None,
    };
    if let Some(order) = direct {
        // `min_by` keeps the first of equals, which is arrival order for first-response.
        let pick = responses
            .iter()
            .enumerate()
            .filter(|(_, r)| r.value().is_some())
            .min_by(|(_, a), (_, b)| order(a, b))
            .map(|(i, _)| i);
        if let Some(i) = pick {
            fill(
                &mut result,
                &clusters,
                clusters
                    .iter()
                    .position(|c| c.members.binary_search(&i).is_ok()),
            );
            result.answer = responses[i].value().cloned();
        }
        result.clusters = clusters;
        return result;
    }

    let top_share = clusters[0].support;
    match strategy {
        // A threshold that is not a number never reaches consensus rather than always.
        Aggregation::ConsensusThreshold(t) if t.is_nan() || top_share + 1e-12 < *t => {
            result.verdict = Verdict::NoConsensus {
                agreement: top_share,
                threshold: *t,
            };
            result.confidence = top_share;
        }
        Aggregation::Custom(rule) => match rule.decide(&responses, &clusters) {
            Some(answer) => {
                fill(
                    &mut result,
                    &clusters,
                    clusters
                        .iter()
                        .position(|c| grouping.agree(&c.answer, &answer)),
                );
                result.answer = Some(answer);
            }
            None => {
                result.verdict = Verdict::NoConsensus {
                    agreement: top_share,
                    threshold: 1.0,
                };
                result.confidence = top_share;
            }
        },
        Aggregation::Ensemble => {
            fill(&mut result, &clusters, Some(0));
            result.answer = Some(ensemble(&clusters));
        }
        _ => {
            fill(&mut result, &clusters, Some(0));
            result.answer = Some(clusters[0].answer.clone());
            result.tied = clusters
                .get(1)
                .is_some_and(|second| level(&clusters[0], second, by_weight));
        }
    }
    result.clusters = clusters;
    result
}

/// Whether two clusters have the same support: the same number of agents,
/// or, for a weighted vote, the same weight (up to rounding in the sums).
fn level(a: &Cluster, b: &Cluster, by_weight: bool) -> bool {
    if by_weight {
        (a.weight - b.weight).abs() <= 1e-9 * a.weight.abs().max(b.weight.abs())
    } else {
        a.members.len() == b.members.len()
    }
}

/// Records the agreement with cluster `c` (none: the answer agrees with nobody).
fn fill(result: &mut Consensus, clusters: &[Cluster], c: Option<usize>) {
    let Some(cluster) = c.map(|c| &clusters[c]) else {
        return;
    };
    result.agreement = cluster.members.len();
    result.agreeing = cluster.agents.clone();
    result.confidence = cluster.support;
}

/// Highest match score first; ties to the faster, then the smaller id.
fn best_score_first(a: &Response, b: &Response) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| {
            a.latency
                .unwrap_or(Duration::MAX)
                .cmp(&b.latency.unwrap_or(Duration::MAX))
        })
        .then_with(|| a.agent.cmp(&b.agent))
}

/// Longest answer first; ties to the higher score, then the smaller id.
fn longest_first(a: &Response, b: &Response) -> Ordering {
    length(b.value())
        .cmp(&length(a.value()))
        .then_with(|| b.score.total_cmp(&a.score))
        .then_with(|| a.agent.cmp(&b.agent))
}

fn length(value: Option<&Value>) -> usize {
    match value {
        Some(Value::String(s)) => s.chars().count(),
        Some(other) => other.to_string().chars().count(),
        None => 0,
    }
}

fn ensemble(clusters: &[Cluster]) -> Value {
    Value::Array(
        clusters
            .iter()
            .map(|c| json!({"answer": c.answer, "agents": c.agents, "support": c.support}))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
