//! What a client asks for.
//!
//! A [`Query`] names a type pattern (`llm/chat`, `llm/*` or `*`), required and
//! preferred features, constraint predicates (hard filters), a semver
//! requirement, and metadata filters (soft unless marked required). Build one
//! with [`Query::builder`] or parse the text form:
//!
//! ```
//! use ecco_core::Query;
//!
//! let q: Query = "llm/* +summarize ~french price<=0.01 context_window>=32000 \
//!                 language in [en, fr] region==eu version>=1.2 meta.vendor==acme"
//!     .parse()?;
//! assert_eq!(q.to_string().parse::<Query>()?, q);
//! # Ok::<(), ecco_core::ParseError>(())
//! ```
//!
//! The same query with the builder:
//!
//! ```
//! use ecco_core::Query;
//! use ecco_core::query::Op;
//!
//! let built = Query::builder("llm/*")
//!     .require("summarize")
//!     .prefer("french")
//!     .constraint("price", Op::Le, 0.01)
//!     .constraint("context_window", Op::Ge, 32000)
//!     .one_of("language", ["en", "fr"])
//!     .constraint("region", Op::Eq, "eu")
//!     .version(">=1.2")
//!     .prefer_meta("vendor", Op::Eq, "acme")
//!     .build()?;
//! let parsed: Query = "llm/* +summarize ~french price<=0.01 context_window>=32000 \
//!                      language in [en, fr] region==eu version>=1.2 meta.vendor==acme"
//!     .parse()?;
//! assert_eq!(built, parsed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod predicate;
mod text;

pub(crate) use predicate::Eval;
pub use predicate::{Constraint, MetadataFilter, Op, Operand, Predicate};

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::capability::TypePattern;
use crate::validate::{self, Index, Key};
use crate::{Invalid, Scalar, ValidationError, limits};

/// A validated query; see the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawQuery")]
pub struct Query {
    #[serde(rename = "type")]
    kind: TypePattern,
    required: BTreeSet<String>,
    preferred: BTreeSet<String>,
    constraints: Vec<Constraint>,
    version: Option<semver::VersionReq>,
    metadata: Vec<MetadataFilter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    #[serde(rename = "type")]
    kind: TypePattern,
    #[serde(default)]
    required: BTreeSet<String>,
    #[serde(default)]
    preferred: BTreeSet<String>,
    #[serde(default)]
    constraints: Vec<Constraint>,
    #[serde(default)]
    version: Option<semver::VersionReq>,
    #[serde(default)]
    metadata: Vec<MetadataFilter>,
}

impl TryFrom<RawQuery> for Query {
    type Error = ValidationError;

    fn try_from(raw: RawQuery) -> Result<Self, Self::Error> {
        let q = Query {
            kind: raw.kind,
            required: raw.required,
            preferred: raw.preferred,
            constraints: raw.constraints,
            version: raw.version,
            metadata: raw.metadata,
        };
        q.validate()?;
        Ok(q)
    }
}

impl Query {
    /// Starts a query for a type pattern: `llm/chat`, `llm/*` or `*`.
    pub fn builder(kind: impl Into<String>) -> Builder {
        Builder {
            kind: kind.into(),
            required: Vec::new(),
            preferred: Vec::new(),
            constraints: Vec::new(),
            version: None,
            metadata: Vec::new(),
        }
    }

    /// The type pattern.
    pub fn kind(&self) -> &TypePattern {
        &self.kind
    }

    /// Features a capability must have.
    pub fn required(&self) -> &BTreeSet<String> {
        &self.required
    }

    /// Features that raise a capability's score.
    pub fn preferred(&self) -> &BTreeSet<String> {
        &self.preferred
    }

    /// Constraint predicates, all of which must hold.
    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    /// The semver requirement on the capability's version, if any.
    pub fn version(&self) -> Option<&semver::VersionReq> {
        self.version.as_ref()
    }

    /// Metadata filters.
    pub fn metadata(&self) -> &[MetadataFilter] {
        &self.metadata
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::count("required", self.required.len(), limits::MAX_FEATURES)?;
        validate::count("preferred", self.preferred.len(), limits::MAX_FEATURES)?;
        for f in &self.required {
            validate::name(Key("required", f), f)?;
        }
        for f in &self.preferred {
            validate::name(Key("preferred", f), f)?;
            if self.required.contains(f) {
                return Err(ValidationError::new(
                    Key("preferred", f).to_string(),
                    Invalid::Duplicate,
                ));
            }
        }
        validate::count(
            "constraints",
            self.constraints.len(),
            limits::MAX_CONSTRAINTS,
        )?;
        for (i, c) in self.constraints.iter().enumerate() {
            c.validate(&Index("constraints", i).to_string())?;
        }
        if let Some(req) = &self.version {
            let text = req.to_string();
            validate::text("version", &text, limits::MAX_VERSION_LEN, false)?;
        }
        validate::count(
            "metadata",
            self.metadata.len(),
            limits::MAX_METADATA_FILTERS,
        )?;
        for (i, m) in self.metadata.iter().enumerate() {
            m.validate(&Index("metadata", i).to_string())?;
        }
        Ok(())
    }
}

/// Builds a validated [`Query`]; see [`Query::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    kind: String,
    required: Vec<String>,
    preferred: Vec<String>,
    constraints: Vec<Constraint>,
    version: Option<String>,
    metadata: Vec<MetadataFilter>,
}

impl Builder {
    /// Requires a feature.
    pub fn require(mut self, feature: impl Into<String>) -> Self {
        self.required.push(feature.into());
        self
    }

    /// Prefers a feature (raises the score of capabilities that have it).
    pub fn prefer(mut self, feature: impl Into<String>) -> Self {
        self.preferred.push(feature.into());
        self
    }

    /// Adds a constraint predicate `key op value`, such as `("price", Op::Le, 0.01)`.
    pub fn constraint(mut self, key: impl Into<String>, op: Op, value: impl Into<Scalar>) -> Self {
        self.constraints.push(Constraint {
            key: key.into(),
            predicate: Predicate {
                op,
                value: Operand::One(value.into()),
            },
        });
        self
    }

    /// Adds `key in [values]`.
    pub fn one_of<I, S>(mut self, key: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Scalar>,
    {
        self.constraints.push(Constraint {
            key: key.into(),
            predicate: Predicate {
                op: Op::In,
                value: Operand::Many(values.into_iter().map(Into::into).collect()),
            },
        });
        self
    }

    /// Adds an already-built constraint, such as one parsed from `"price<=0.01"`.
    pub fn filter(mut self, constraint: Constraint) -> Self {
        self.constraints.push(constraint);
        self
    }

    /// Sets the semver requirement, such as `^1.2` or `>=1.2, <2`.
    pub fn version(mut self, requirement: impl Into<String>) -> Self {
        self.version = Some(requirement.into());
        self
    }

    /// Adds a soft metadata filter (it raises the score when it holds).
    pub fn prefer_meta(self, path: impl Into<String>, op: Op, value: impl Into<Scalar>) -> Self {
        self.meta(path, op, value, false)
    }

    /// Adds a hard metadata filter (capabilities failing it are excluded).
    pub fn require_meta(self, path: impl Into<String>, op: Op, value: impl Into<Scalar>) -> Self {
        self.meta(path, op, value, true)
    }

    fn meta(
        mut self,
        path: impl Into<String>,
        op: Op,
        value: impl Into<Scalar>,
        required: bool,
    ) -> Self {
        self.metadata.push(MetadataFilter {
            path: path.into(),
            predicate: Predicate {
                op,
                value: Operand::One(value.into()),
            },
            required,
        });
        self
    }

    /// Validates everything and returns the query.
    pub fn build(self) -> Result<Query, ValidationError> {
        let kind = TypePattern::new(&self.kind)?;
        let mut required = BTreeSet::new();
        for f in self.required {
            if required.contains(&f) {
                return Err(ValidationError::new(
                    Key("required", &f).to_string(),
                    Invalid::Duplicate,
                ));
            }
            required.insert(f);
        }
        let mut preferred = BTreeSet::new();
        for f in self.preferred {
            if preferred.contains(&f) {
                return Err(ValidationError::new(
                    Key("preferred", &f).to_string(),
                    Invalid::Duplicate,
                ));
            }
            preferred.insert(f);
        }
        let version = self.version.as_deref().map(parse_requirement).transpose()?;
        let q = Query {
            kind,
            required,
            preferred,
            constraints: self.constraints,
            version,
            metadata: self.metadata,
        };
        q.validate()?;
        Ok(q)
    }
}

pub(crate) fn parse_requirement(text: &str) -> Result<semver::VersionReq, ValidationError> {
    validate::text("version", text, limits::MAX_VERSION_LEN, false)?;
    semver::VersionReq::parse(text).map_err(|e| {
        ValidationError::new(
            "version",
            Invalid::Semver {
                text: text.to_owned(),
                reason: e.to_string(),
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        let q = Query::builder("llm/*")
            .require("summarize")
            .prefer("french")
            .constraint("price", Op::Le, 0.01)
            .one_of("language", ["en", "fr"])
            .version("^1.2")
            .prefer_meta("vendor", Op::Eq, "acme")
            .build()
            .unwrap();
        assert_eq!(q.constraints().len(), 2);
        assert!(q.version().unwrap().matches(&semver::Version::new(1, 3, 0)));

        let e = Query::builder("llm/*").version("one").build().unwrap_err();
        assert!(matches!(e.problem, Invalid::Semver { .. }));
        let e = Query::builder("llm/*")
            .constraint("price", Op::Le, "x")
            .build()
            .unwrap_err();
        assert_eq!(e.field, "constraints[0][\"price\"]");
        assert!(matches!(
            e.problem,
            Invalid::OperatorMismatch { op: "<=", .. }
        ));
        let e = Query::builder("llm/*")
            .require("a")
            .prefer("a")
            .build()
            .unwrap_err();
        assert_eq!(e.problem, Invalid::Duplicate);
        let e = Query::builder("").build().unwrap_err();
        assert_eq!(e.problem, Invalid::Empty);
        let e = Query::builder("x")
            .constraint("p", Op::Gt, f64::INFINITY)
            .build()
            .unwrap_err();
        assert_eq!(e.problem, Invalid::NotFinite);
    }

    #[test]
    fn json_round_trip_validates() {
        let q: Query = "llm/chat +a ~b price<=0.01 language in [en] version ^1 +meta.x==1"
            .parse()
            .unwrap();
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(serde_json::from_str::<Query>(&json).unwrap(), q);
        let bad = r#"{"type":"llm/chat","constraints":[{"key":"price","op":"<=","value":"x"}]}"#;
        assert!(serde_json::from_str::<Query>(bad).is_err());
    }
}
