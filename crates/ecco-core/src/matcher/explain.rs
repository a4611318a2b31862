//! Explanations: why an offer was excluded, or how its score was made.

use std::fmt;

use serde::Serialize;

use super::score::{self, Breakdown, Weights};
use crate::capability::Offer;
use crate::query::Eval;
use crate::{AgentId, Query};

/// The answer to "why wasn't my agent picked?" for one offer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The agent.
    pub agent: AgentId,
    /// The capability, as `type name@version`.
    pub capability: String,
    /// Excluded, or scored.
    pub verdict: Verdict,
}

/// Whether the offer survived the filters.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// At least one hard filter failed; every failing filter is listed.
    Excluded {
        /// The reasons, in filter order.
        reasons: Vec<Exclusion>,
    },
    /// All filters passed.
    Scored(Breakdown),
}

/// One failed hard filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Exclusion {
    /// The type does not match the pattern.
    Type {
        /// The query's pattern.
        pattern: String,
        /// The capability's type.
        actual: String,
    },
    /// A required feature is missing.
    MissingFeature {
        /// The feature.
        feature: String,
    },
    /// The capability does not state the constrained key.
    MissingConstraint {
        /// The predicate, as text.
        constraint: String,
    },
    /// The constraint's value fails the predicate.
    ConstraintFailed {
        /// The predicate, as text.
        constraint: String,
        /// The capability's value.
        actual: String,
    },
    /// The constraint's value has a type the predicate cannot compare.
    ConstraintType {
        /// The predicate, as text.
        constraint: String,
        /// The kind of value the capability has.
        actual: &'static str,
    },
    /// The version does not satisfy the requirement.
    Version {
        /// The requirement.
        requirement: String,
        /// The capability's version.
        actual: String,
    },
    /// A required metadata filter fails or its path is absent.
    Metadata {
        /// The filter, as text.
        filter: String,
        /// The value at the path, if any.
        actual: Option<String>,
    },
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Type { pattern, actual } => {
                write!(f, "type `{actual}` does not match `{pattern}`")
            }
            Self::MissingFeature { feature } => write!(f, "lacks the required feature `{feature}`"),
            Self::MissingConstraint { constraint } => {
                write!(
                    f,
                    "`{constraint}`: the capability does not state this constraint"
                )
            }
            Self::ConstraintFailed { constraint, actual } => {
                write!(f, "`{constraint}` fails: the capability has {actual}")
            }
            Self::ConstraintType { constraint, actual } => {
                write!(
                    f,
                    "`{constraint}` cannot compare the capability's value, which is {actual}"
                )
            }
            Self::Version {
                requirement,
                actual,
            } => {
                write!(f, "version {actual} does not satisfy `{requirement}`")
            }
            Self::Metadata {
                filter,
                actual: Some(v),
            } => write!(f, "`{filter}` fails: metadata has {v}"),
            Self::Metadata {
                filter,
                actual: None,
            } => write!(f, "`{filter}` fails: the metadata has no such path"),
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.agent, self.capability)?;
        match &self.verdict {
            Verdict::Excluded { reasons } => {
                f.write_str("excluded")?;
                for r in reasons {
                    write!(f, "\n  - {r}")?;
                }
                Ok(())
            }
            Verdict::Scored(b) => {
                write!(f, "score {:.3}", b.score)?;
                if let Some(v) = b.features {
                    write!(
                        f,
                        "\n  - features {v:.3} × {}: has {:?}, lacks {:?}",
                        b.weights.features, b.preferred_present, b.preferred_missing
                    )?;
                }
                if let Some(v) = b.constraints {
                    write!(f, "\n  - constraints {v:.3} × {}:", b.weights.constraints)?;
                    for (c, m) in &b.margins {
                        write!(f, " `{c}` slack {m:.3};")?;
                    }
                }
                if let Some(v) = b.metadata {
                    write!(
                        f,
                        "\n  - metadata {v:.3} × {}: agrees {:?}, differs {:?}",
                        b.weights.metadata, b.metadata_agreed, b.metadata_disagreed
                    )?;
                }
                if b.features.is_none() && b.constraints.is_none() && b.metadata.is_none() {
                    f.write_str(
                        "\n  - the query asks for nothing to score, so every survivor scores 1",
                    )?;
                }
                Ok(())
            }
        }
    }
}

pub(super) fn explain(weights: &Weights, q: &Query, offer: &Offer) -> Explanation {
    let cap = &offer.capability;
    let mut reasons = Vec::new();
    if !q.kind().matches(cap.kind()) {
        reasons.push(Exclusion::Type {
            pattern: q.kind().to_string(),
            actual: cap.kind().to_string(),
        });
    }
    for feature in q.required().iter().filter(|f| !cap.has_feature(f)) {
        reasons.push(Exclusion::MissingFeature {
            feature: feature.clone(),
        });
    }
    for c in q.constraints() {
        let constraint = c.to_string();
        match (score::constraint_eval(c, cap), cap.constraint(&c.key)) {
            (Some(Eval::Holds), _) => {}
            (Some(Eval::Fails), Some(v)) => reasons.push(Exclusion::ConstraintFailed {
                constraint,
                actual: v.view().to_string(),
            }),
            (Some(Eval::Mismatch), Some(v)) => reasons.push(Exclusion::ConstraintType {
                constraint,
                actual: v.kind(),
            }),
            _ => reasons.push(Exclusion::MissingConstraint { constraint }),
        }
    }
    if let Some(req) = q.version().filter(|r| !r.matches(cap.version())) {
        reasons.push(Exclusion::Version {
            requirement: req.to_string(),
            actual: cap.version().to_string(),
        });
    }
    for m in q.metadata().iter().filter(|m| m.required) {
        if score::metadata_eval(m, cap) != Some(Eval::Holds) {
            reasons.push(Exclusion::Metadata {
                filter: m.to_string(),
                actual: cap.metadata_at(m.segments()).map(ToString::to_string),
            });
        }
    }
    let verdict = if reasons.is_empty() {
        Verdict::Scored(score::breakdown(weights, q, cap))
    } else {
        Verdict::Excluded { reasons }
    };
    Explanation {
        agent: offer.agent.clone(),
        capability: format!("{} {}@{}", cap.kind(), cap.name(), cap.version()),
        verdict,
    }
}
