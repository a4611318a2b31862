//! The aggregation strategies and their text form (`consensus-threshold:0.66`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde_json::Value;

use super::{Cluster, Response};

/// An aggregation strategy; see the [module documentation](super).
///
/// Text form: `majority-vote`, `weighted-vote`, `best-score`, `ensemble`,
/// `consensus-threshold:T` (T in `(0, 1]`), `first-response`, `longest`.
/// `custom` has no text form: it is code, given with [`Aggregation::custom`].
#[derive(Clone)]
pub enum Aggregation {
    /// The answer most agents agree on.
    MajorityVote,
    /// The answer with the most weight behind it (match score and performance).
    WeightedVote,
    /// The answer of the best-scoring agent.
    BestScore,
    /// Every answer, attributed and grouped into agreeing clusters.
    Ensemble,
    /// The majority answer only if its share reaches the threshold.
    ConsensusThreshold(f64),
    /// The first successful answer to arrive.
    FirstResponse,
    /// The longest answer.
    Longest,
    /// A caller-supplied rule.
    Custom(Arc<dyn CustomAggregator>),
}

/// A caller-supplied aggregation rule.
///
/// It sees every response in arrival order and the agreeing clusters, and
/// returns the answer, or `None` for "no consensus". Closures of the form
/// `Fn(&[Response], &[Cluster]) -> Option<Value>` implement it.
pub trait CustomAggregator: Send + Sync {
    /// Picks or builds the answer.
    fn decide(&self, responses: &[Response], clusters: &[Cluster]) -> Option<Value>;

    /// A name for reports.
    fn name(&self) -> &str {
        "custom"
    }
}

impl<F> CustomAggregator for F
where
    F: Fn(&[Response], &[Cluster]) -> Option<Value> + Send + Sync,
{
    fn decide(&self, responses: &[Response], clusters: &[Cluster]) -> Option<Value> {
        self(responses, clusters)
    }
}

impl Aggregation {
    /// A custom strategy from a rule or closure.
    pub fn custom(rule: impl CustomAggregator + 'static) -> Self {
        Self::Custom(Arc::new(rule))
    }

    /// `consensus-threshold` with a checked threshold in `(0, 1]`.
    pub fn consensus_threshold(threshold: f64) -> Result<Self, crate::ValidationError> {
        if threshold > 0.0 && threshold <= 1.0 {
            Ok(Self::ConsensusThreshold(threshold))
        } else {
            Err(crate::ValidationError::new(
                "consensus-threshold",
                crate::Invalid::OutOfRange {
                    value: threshold,
                    range: "(0, 1]",
                },
            ))
        }
    }

    /// The strategy's name, without parameters.
    pub fn name(&self) -> &str {
        match self {
            Self::MajorityVote => "majority-vote",
            Self::WeightedVote => "weighted-vote",
            Self::BestScore => "best-score",
            Self::Ensemble => "ensemble",
            Self::ConsensusThreshold(_) => "consensus-threshold",
            Self::FirstResponse => "first-response",
            Self::Longest => "longest",
            Self::Custom(rule) => rule.name(),
        }
    }
}

impl fmt::Debug for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aggregation({self})")
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConsensusThreshold(t) => write!(f, "consensus-threshold:{t}"),
            other => f.write_str(other.name()),
        }
    }
}

/// Why an aggregation strategy's text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseAggregationError(String);

impl FromStr for Aggregation {
    type Err = ParseAggregationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let plain = |a: Self| match arg {
            None => Ok(a),
            Some(_) => Err(ParseAggregationError(format!(
                "`{name}` takes no parameter"
            ))),
        };
        match name {
            "majority-vote" => plain(Self::MajorityVote),
            "weighted-vote" => plain(Self::WeightedVote),
            "best-score" => plain(Self::BestScore),
            "ensemble" => plain(Self::Ensemble),
            "first-response" => plain(Self::FirstResponse),
            "longest" => plain(Self::Longest),
            "consensus-threshold" => {
                let arg = arg.ok_or_else(|| {
                    ParseAggregationError(
                        "`consensus-threshold` needs a threshold, as in `consensus-threshold:0.66`"
                            .to_owned(),
                    )
                })?;
                arg.parse::<f64>()
                    .ok()
                    .and_then(|t| Self::consensus_threshold(t).ok())
                    .ok_or_else(|| {
                        ParseAggregationError(format!(
                            "`{arg}` is not a threshold in (0, 1] for `consensus-threshold`"
                        ))
                    })
            }
            "custom" => Err(ParseAggregationError(
                "`custom` is code, not text: pass it with Aggregation::custom".to_owned(),
            )),
            _ => Err(ParseAggregationError(format!(
                "unknown aggregation strategy `{name}`; use one of majority-vote, weighted-vote, \
                 best-score, ensemble, consensus-threshold:T, first-response, longest"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for s in [
            "majority-vote",
            "weighted-vote",
            "best-score",
            "ensemble",
            "consensus-threshold:0.66",
            "first-response",
            "longest",
        ] {
            assert_eq!(s.parse::<Aggregation>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn thresholds_are_checked() {
        assert!(Aggregation::consensus_threshold(0.5).is_ok());
        assert!(Aggregation::consensus_threshold(1.0).is_ok());
        for bad in [0.0, -0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert!(Aggregation::consensus_threshold(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_text_is_explained() {
        let e = |s: &str| s.parse::<Aggregation>().unwrap_err().to_string();
        assert!(e("vote").starts_with("unknown aggregation strategy `vote`"));
        assert!(e("consensus-threshold").contains("needs a threshold"));
        assert!(e("consensus-threshold:1.5").contains("not a threshold in (0, 1]"));
        assert!(e("consensus-threshold:NaN").contains("not a threshold"));
        assert!(e("longest:3").contains("takes no parameter"));
        assert!(e("custom").contains("Aggregation::custom"));
    }
}
