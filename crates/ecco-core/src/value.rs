//! Typed values: what a capability states about itself and what a query compares against.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ValidationError, limits, validate};

/// A typed fact about an offer that queries filter on.
///
/// On the wire it is plain JSON: `true`, `0.002`, `"eu"` or `["en", "fr"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConstraintValue {
    /// A yes/no fact, such as `streaming`.
    Bool(bool),
    /// A number, such as `price` or `context_window`. Always finite.
    Number(f64),
    /// A string or enum value, such as `region`.
    Text(String),
    /// A set of strings, such as the `language`s an agent handles. A list
    /// matches a predicate when any element does (see [`crate::query::Op`]).
    List(Vec<String>),
}

impl ConstraintValue {
    /// Checks finiteness and the length bounds in [`limits`].
    pub(crate) fn validate(&self, field: &dyn fmt::Display) -> Result<(), ValidationError> {
        match self {
            Self::Bool(_) => Ok(()),
            Self::Number(n) => validate::finite(field, *n),
            Self::Text(t) => validate::text(field, t, limits::MAX_TEXT_LEN, true),
            Self::List(items) => {
                validate::count(field, items.len(), limits::MAX_LIST_LEN)?;
                for (i, item) in items.iter().enumerate() {
                    validate::text(format!("{field}[{i}]"), item, limits::MAX_TEXT_LEN, true)?;
                }
                Ok(())
            }
        }
    }

    /// Borrowed view used by predicate evaluation.
    pub(crate) fn view(&self) -> ValueView<'_> {
        match self {
            Self::Bool(b) => ValueView::Bool(*b),
            Self::Number(n) => ValueView::Number(*n),
            Self::Text(t) => ValueView::Text(t),
            Self::List(items) => ValueView::List(items),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Bool(_) => "a boolean",
            Self::Number(_) => "a number",
            Self::Text(_) => "a string",
            Self::List(_) => "a list",
        }
    }
}

impl<S: Into<String>> From<Vec<S>> for ConstraintValue {
    fn from(v: Vec<S>) -> Self {
        Self::List(v.into_iter().map(Into::into).collect())
    }
}

/// A single value a query compares against: a number, a string or a boolean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A boolean.
    Bool(bool),
    /// A finite number.
    Number(f64),
    /// A string.
    Text(String),
}

impl Scalar {
    pub(crate) fn validate(&self, field: &dyn fmt::Display) -> Result<(), ValidationError> {
        match self {
            Self::Bool(_) => Ok(()),
            Self::Number(n) => validate::finite(field, *n),
            Self::Text(t) => validate::text(field, t, limits::MAX_TEXT_LEN, true),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Bool(_) => "a boolean",
            Self::Number(_) => "a number",
            Self::Text(_) => "a string",
        }
    }

    /// Whether this scalar equals a single value of the same type.
    pub(crate) fn equals(&self, value: &ValueView<'_>) -> bool {
        match (self, value) {
            (Self::Bool(a), ValueView::Bool(b)) => a == b,
            (Self::Number(a), ValueView::Number(b)) => a == b,
            (Self::Text(a), ValueView::Text(b)) => a == b,
            _ => false,
        }
    }
}

/// `From` conversions for the single-value variants both enums share.
macro_rules! from_scalars {
    ($($target:ty),*) => {$(
        impl From<bool> for $target {
            fn from(v: bool) -> Self {
                Self::Bool(v)
            }
        }

        impl From<f64> for $target {
            fn from(v: f64) -> Self {
                Self::Number(v)
            }
        }

        impl From<i64> for $target {
            fn from(v: i64) -> Self {
                // Compared as f64; integers up to 2^53 are exact.
                Self::Number(v as f64)
            }
        }

        impl From<i32> for $target {
            fn from(v: i32) -> Self {
                Self::Number(f64::from(v))
            }
        }

        impl From<u32> for $target {
            fn from(v: u32) -> Self {
                Self::Number(f64::from(v))
            }
        }

        impl From<&str> for $target {
            fn from(v: &str) -> Self {
                Self::Text(v.to_owned())
            }
        }

        impl From<String> for $target {
            fn from(v: String) -> Self {
                Self::Text(v)
            }
        }
    )*};
}

from_scalars!(ConstraintValue, Scalar);

/// A borrowed value of either origin (a constraint or a piece of JSON
/// metadata), so that one predicate evaluator serves both.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ValueView<'a> {
    Bool(bool),
    Number(f64),
    Text(&'a str),
    List(&'a [String]),
    /// JSON that is none of the above (null, an object, a mixed array).
    Other,
}

impl<'a> ValueView<'a> {
    pub(crate) fn from_json(value: &'a serde_json::Value) -> Self {
        match value {
            serde_json::Value::Bool(b) => Self::Bool(*b),
            serde_json::Value::Number(n) => n.as_f64().map_or(Self::Other, Self::Number),
            serde_json::Value::String(s) => Self::Text(s),
            _ => Self::Other,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Bool(_) => "a boolean",
            Self::Number(_) => "a number",
            Self::Text(_) => "a string",
            Self::List(_) => "a list",
            Self::Other => "another JSON value",
        }
    }
}

impl fmt::Display for ValueView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(t) => write!(f, "{t:?}"),
            Self::List(items) => write!(f, "{items:?}"),
            Self::Other => f.write_str("(not comparable)"),
        }
    }
}

/// A JSON number for an f64, written as an integer when it is one (so `3`
/// stays `3`, not `3.0`) and within the range where f64 integers are exact.
pub(crate) fn json_number(n: f64) -> serde_json::Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() <= EXACT {
        serde_json::Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}
