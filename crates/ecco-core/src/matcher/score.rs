//! The filters and score components, shared by ranking and explanations.

use serde::{Deserialize, Serialize};

use crate::query::{Constraint, Eval, MetadataFilter};
use crate::value::ValueView;
use crate::{Capability, Invalid, Query, ValidationError};

/// The weight of each score component. Each is finite and non-negative, and
/// at least one is positive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    /// Preferred-feature coverage.
    pub features: f64,
    /// Slack on ordering constraints.
    pub constraints: f64,
    /// Soft metadata agreement.
    pub metadata: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            features: 0.5,
            constraints: 0.3,
            metadata: 0.2,
        }
    }
}

impl Weights {
    /// Checks and returns custom weights.
    pub fn new(features: f64, constraints: f64, metadata: f64) -> Result<Self, ValidationError> {
        for (field, w) in [
            ("features", features),
            ("constraints", constraints),
            ("metadata", metadata),
        ] {
            if !w.is_finite() || w < 0.0 {
                return Err(ValidationError::new(
                    format!("weights.{field}"),
                    Invalid::OutOfRange {
                        value: w,
                        range: "[0, ∞) and finite",
                    },
                ));
            }
        }
        if features + constraints + metadata <= 0.0 {
            return Err(ValidationError::new(
                "weights",
                Invalid::OutOfRange {
                    value: 0.0,
                    range: "a positive sum",
                },
            ));
        }
        Ok(Self {
            features,
            constraints,
            metadata,
        })
    }

    /// The weighted mean of the active components, or 1 when none is active.
    pub(crate) fn combine(&self, c: &Components) -> f64 {
        let mut num = 0.0;
        let mut den = 0.0;
        for (value, weight) in [
            (c.features, self.features),
            (c.constraints, self.constraints),
            (c.metadata, self.metadata),
        ] {
            if let Some(v) = value {
                num += weight * v;
                den += weight;
            }
        }
        if den > 0.0 {
            (num / den).clamp(0.0, 1.0)
        } else {
            1.0
        }
    }
}

/// The component values of a score; `None` where the query does not ask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Components {
    pub(crate) features: Option<f64>,
    pub(crate) constraints: Option<f64>,
    pub(crate) metadata: Option<f64>,
}

/// How a survivor's score was made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    /// The final score.
    pub score: f64,
    /// Preferred-feature coverage, if the query prefers features.
    pub features: Option<f64>,
    /// Preferred features the capability has.
    pub preferred_present: Vec<String>,
    /// Preferred features it lacks.
    pub preferred_missing: Vec<String>,
    /// Mean slack on ordering constraints, if the query has any.
    pub constraints: Option<f64>,
    /// Each ordering constraint with its slack in `[0, 1)`.
    pub margins: Vec<(String, f64)>,
    /// Soft metadata agreement, if the query has soft metadata filters.
    pub metadata: Option<f64>,
    /// Soft metadata filters that hold.
    pub metadata_agreed: Vec<String>,
    /// Soft metadata filters that do not.
    pub metadata_disagreed: Vec<String>,
    /// The weights used.
    pub weights: Weights,
}

pub(crate) fn constraint_eval(c: &Constraint, cap: &Capability) -> Option<Eval> {
    cap.constraint(&c.key).map(|v| c.predicate.eval(v.view()))
}

pub(crate) fn metadata_eval(m: &MetadataFilter, cap: &Capability) -> Option<Eval> {
    cap.metadata_at(m.segments())
        .map(|v| m.predicate.eval(ValueView::from_json(v)))
}

/// Whether every hard filter holds.
pub(crate) fn passes(q: &Query, cap: &Capability) -> bool {
    q.kind().matches(cap.kind())
        && q.required().iter().all(|f| cap.has_feature(f))
        && q.constraints()
            .iter()
            .all(|c| constraint_eval(c, cap) == Some(Eval::Holds))
        && q.version().is_none_or(|r| r.matches(cap.version()))
        && q.metadata()
            .iter()
            .filter(|m| m.required)
            .all(|m| metadata_eval(m, cap) == Some(Eval::Holds))
}

pub(crate) fn components(q: &Query, cap: &Capability) -> Components {
    let features = (!q.preferred().is_empty()).then(|| {
        let present = q.preferred().iter().filter(|f| cap.has_feature(f)).count();
        present as f64 / q.preferred().len() as f64
    });

    let mut sum = 0.0;
    let mut n = 0usize;
    for c in q
        .constraints()
        .iter()
        .filter(|c| c.predicate.op.is_ordering())
    {
        if let Some(m) = cap
            .constraint(&c.key)
            .and_then(|v| c.predicate.margin(v.view()))
        {
            sum += m;
        }
        n += 1;
    }
    let constraints = (n > 0).then(|| sum / n as f64);

    Components {
        features,
        constraints,
        ..metadata_component(q, cap)
    }
}

/// Only the metadata component (the others `None`).
pub(crate) fn metadata_component(q: &Query, cap: &Capability) -> Components {
    let mut agreed = 0usize;
    let mut soft = 0usize;
    for m in q.metadata().iter().filter(|m| !m.required) {
        soft += 1;
        if metadata_eval(m, cap) == Some(Eval::Holds) {
            agreed += 1;
        }
    }
    Components {
        features: None,
        constraints: None,
        metadata: (soft > 0).then(|| agreed as f64 / soft as f64),
    }
}

pub(crate) fn breakdown(weights: &Weights, q: &Query, cap: &Capability) -> Breakdown {
    let c = components(q, cap);
    let (preferred_present, preferred_missing) = q
        .preferred()
        .iter()
        .cloned()
        .partition(|f| cap.has_feature(f));
    let margins = q
        .constraints()
        .iter()
        .filter(|c| c.predicate.op.is_ordering())
        .map(|c| {
            let m = cap
                .constraint(&c.key)
                .and_then(|v| c.predicate.margin(v.view()))
                .unwrap_or(0.0);
            (c.to_string(), m)
        })
        .collect();
    let (metadata_agreed, metadata_disagreed) = q
        .metadata()
        .iter()
        .filter(|m| !m.required)
        .map(|m| (m.to_string(), metadata_eval(m, cap) == Some(Eval::Holds)))
        .partition::<Vec<_>, _>(|(_, ok)| *ok);
    Breakdown {
        score: weights.combine(&c),
        features: c.features,
        preferred_present,
        preferred_missing,
        constraints: c.constraints,
        margins,
        metadata: c.metadata,
        metadata_agreed: metadata_agreed.into_iter().map(|(s, _)| s).collect(),
        metadata_disagreed: metadata_disagreed.into_iter().map(|(s, _)| s).collect(),
        weights: *weights,
    }
}
