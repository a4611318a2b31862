//! Comparison predicates, shared by constraint filters and metadata filters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::validate;
use crate::value::ValueView;
use crate::{Invalid, Scalar, ValidationError, limits};

/// A comparison operator.
///
/// On a list value (such as `language = [en, fr]`) the operators mean "any
/// element": `== x` holds when the list contains `x`, `!= x` when it does not,
/// `in [..]` when the two share an element, `not in [..]` when they share none.
/// Ordering operators apply to numbers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// `==` (also written `=`).
    #[serde(rename = "==")]
    Eq,
    /// `!=`.
    #[serde(rename = "!=")]
    Ne,
    /// `<`.
    #[serde(rename = "<")]
    Lt,
    /// `<=`.
    #[serde(rename = "<=")]
    Le,
    /// `>`.
    #[serde(rename = ">")]
    Gt,
    /// `>=`.
    #[serde(rename = ">=")]
    Ge,
    /// `in [a, b]`.
    #[serde(rename = "in")]
    In,
    /// `not in [a, b]`.
    #[serde(rename = "not in")]
    NotIn,
}

impl Op {
    /// The operator's text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::In => "in",
            Self::NotIn => "not in",
        }
    }

    /// Whether this is `<`, `<=`, `>` or `>=`.
    pub fn is_ordering(self) -> bool {
        matches!(self, Self::Lt | Self::Le | Self::Gt | Self::Ge)
    }

    pub(crate) fn from_symbol(symbol: &str) -> Option<Self> {
        Some(match symbol {
            "==" | "=" => Self::Eq,
            "!=" => Self::Ne,
            "<" => Self::Lt,
            "<=" => Self::Le,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operator compares against: one value, or a set for `in` and `not in`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Operand {
    /// A single value.
    One(Scalar),
    /// A set of values.
    Many(Vec<Scalar>),
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::One(s) => s.fmt(f),
            Self::Many(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    item.fmt(f)?;
                }
                f.write_str("]")
            }
        }
    }
}

/// An operator with its operand, such as `<= 0.01` or `in [en, fr]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predicate {
    /// The operator.
    pub op: Op,
    /// The operand.
    pub value: Operand,
}

/// The outcome of applying a predicate to a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Eval {
    Holds,
    Fails,
    /// The value's type cannot be compared this way (a string with `<`).
    Mismatch,
}

impl Predicate {
    /// Checks that the operand suits the operator: a number for ordering, a
    /// non-empty bounded set for `in`, a single finite value otherwise.
    pub(crate) fn validate(&self, field: &dyn fmt::Display) -> Result<(), ValidationError> {
        let mismatch = |operand| {
            ValidationError::new(
                field.to_string(),
                Invalid::OperatorMismatch {
                    op: self.op.as_str(),
                    operand,
                },
            )
        };
        match (&self.value, self.op) {
            (Operand::Many(items), Op::In | Op::NotIn) => {
                if items.is_empty() {
                    return Err(ValidationError::new(field.to_string(), Invalid::Empty));
                }
                validate::count(field, items.len(), limits::MAX_LIST_LEN)?;
                for (i, item) in items.iter().enumerate() {
                    item.validate(&format!("{field}[{i}]"))?;
                }
                Ok(())
            }
            (Operand::One(_), Op::In | Op::NotIn) => Err(mismatch("a single value (use a list)")),
            (Operand::Many(_), _) => Err(mismatch("a list")),
            (Operand::One(Scalar::Number(n)), _) => validate::finite(field, *n),
            (Operand::One(other), op) if op.is_ordering() => Err(mismatch(other.kind())),
            (Operand::One(other), _) => other.validate(field),
        }
    }

    pub(crate) fn eval(&self, value: ValueView<'_>) -> Eval {
        let holds = |b: bool| if b { Eval::Holds } else { Eval::Fails };
        match (&self.value, value) {
            (_, ValueView::Other) => Eval::Mismatch,
            (Operand::One(Scalar::Number(bound)), ValueView::Number(x))
                if self.op.is_ordering() =>
            {
                holds(match self.op {
                    Op::Lt => x < *bound,
                    Op::Le => x <= *bound,
                    Op::Gt => x > *bound,
                    _ => x >= *bound,
                })
            }
            _ if self.op.is_ordering() => Eval::Mismatch,
            (Operand::One(s), ValueView::List(items)) => {
                let contains = items.iter().any(|i| s.equals(&ValueView::Text(i)));
                if !matches!(s, Scalar::Text(_)) {
                    Eval::Mismatch
                } else {
                    holds(contains == (self.op == Op::Eq))
                }
            }
            (Operand::One(s), v) => {
                if s.kind() != v.kind() {
                    Eval::Mismatch
                } else {
                    holds(s.equals(&v) == (self.op == Op::Eq))
                }
            }
            (Operand::Many(set), ValueView::List(items)) => {
                let shared = items
                    .iter()
                    .any(|i| set.iter().any(|s| s.equals(&ValueView::Text(i))));
                holds(shared == (self.op == Op::In))
            }
            (Operand::Many(set), v) => {
                let member = set.iter().any(|s| s.equals(&v));
                holds(member == (self.op == Op::In))
            }
        }
    }

    /// How comfortably a number satisfies an ordering bound, in `[0, 1)`:
    /// `m / (1 + m)` with `m` the margin relative to the bound. `None` for
    /// predicates that are not ordering bounds on numbers.
    pub(crate) fn margin(&self, value: ValueView<'_>) -> Option<f64> {
        let (Operand::One(Scalar::Number(bound)), ValueView::Number(x)) = (&self.value, value)
        else {
            return None;
        };
        let gap = match self.op {
            Op::Lt | Op::Le => bound - x,
            Op::Gt | Op::Ge => x - bound,
            _ => return None,
        };
        // Relative to the bound so that cents and milliseconds score alike;
        // the floor keeps a zero bound from dividing by zero.
        let m = (gap / bound.abs().max(1e-9)).max(0.0);
        Some(if m.is_finite() { m / (1.0 + m) } else { 1.0 })
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.value)
    }
}

/// A predicate on a named constraint: `price <= 0.01`. Always a hard filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    /// The constraint key.
    pub key: String,
    /// The comparison.
    #[serde(flatten)]
    pub predicate: Predicate,
}

impl Constraint {
    /// Builds and validates `key op value`.
    pub fn new(key: impl Into<String>, op: Op, value: Operand) -> Result<Self, ValidationError> {
        let c = Self {
            key: key.into(),
            predicate: Predicate { op, value },
        };
        c.validate("constraint")?;
        Ok(c)
    }

    pub(crate) fn validate(&self, field: &str) -> Result<(), ValidationError> {
        let key = validate::Key(field, &self.key);
        validate::name(&key, &self.key)?;
        self.predicate.validate(&key)
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.predicate)
    }
}

/// Parses one predicate in the query syntax, such as `price<=0.01` or
/// `language in [en, fr]`, as given to `ecco discover --where`.
impl FromStr for Constraint {
    type Err = crate::ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        super::text::parse_constraint(s)
    }
}

/// A filter on a capability's metadata, at a dot-separated path.
///
/// Soft by default: it only adds to the score (metadata agreement). A
/// `required` filter also excludes capabilities that fail it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataFilter {
    /// The path into the metadata, such as `vendor` or `model.family`.
    pub path: String,
    /// The comparison.
    #[serde(flatten)]
    pub predicate: Predicate,
    /// Whether failing it excludes the capability.
    #[serde(default)]
    pub required: bool,
}

impl MetadataFilter {
    pub(crate) fn validate(&self, field: &str) -> Result<(), ValidationError> {
        let key = validate::Key(field, &self.path);
        validate::text(&key, &self.path, limits::MAX_KEY_LEN * 4, false)?;
        let segments = self.path.split('.').count();
        validate::count(&key, segments, limits::MAX_METADATA_PATH_SEGMENTS)?;
        if self.path.split('.').any(str::is_empty) {
            return Err(ValidationError::new(key.to_string(), Invalid::EmptySegment));
        }
        self.predicate.validate(&key)
    }

    /// The path's segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('.')
    }
}

impl fmt::Display for MetadataFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plus = if self.required { "+" } else { "" };
        write!(f, "{plus}meta.{} {}", self.path, self.predicate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(op: Op, value: Operand) -> Predicate {
        Predicate { op, value }
    }
    fn one(s: impl Into<Scalar>) -> Operand {
        Operand::One(s.into())
    }
    fn many(items: &[&str]) -> Operand {
        Operand::Many(items.iter().map(|s| Scalar::from(*s)).collect())
    }

    #[test]
    fn numbers() {
        let le = p(Op::Le, one(0.01));
        assert_eq!(le.eval(ValueView::Number(0.005)), Eval::Holds);
        assert_eq!(le.eval(ValueView::Number(0.01)), Eval::Holds);
        assert_eq!(le.eval(ValueView::Number(0.02)), Eval::Fails);
        assert_eq!(le.eval(ValueView::Text("cheap")), Eval::Mismatch);
        assert_eq!(
            p(Op::Lt, one(1.0)).eval(ValueView::Number(1.0)),
            Eval::Fails
        );
        assert_eq!(
            p(Op::Ge, one(32000.0)).eval(ValueView::Number(32000.0)),
            Eval::Holds
        );
    }

    #[test]
    fn lists_mean_any_element() {
        let langs = ["en".to_owned(), "fr".to_owned()];
        let v = ValueView::List(&langs);
        assert_eq!(p(Op::Eq, one("fr")).eval(v), Eval::Holds);
        assert_eq!(p(Op::Ne, one("fr")).eval(v), Eval::Fails);
        assert_eq!(p(Op::In, many(&["de", "fr"])).eval(v), Eval::Holds);
        assert_eq!(p(Op::NotIn, many(&["de", "fr"])).eval(v), Eval::Fails);
        assert_eq!(p(Op::NotIn, many(&["de"])).eval(v), Eval::Holds);
        assert_eq!(p(Op::Lt, one(3.0)).eval(v), Eval::Mismatch);
    }

    #[test]
    fn text_and_bool() {
        assert_eq!(
            p(Op::Eq, one("eu")).eval(ValueView::Text("eu")),
            Eval::Holds
        );
        assert_eq!(
            p(Op::Ne, one("eu")).eval(ValueView::Text("us")),
            Eval::Holds
        );
        assert_eq!(
            p(Op::In, many(&["eu", "us"])).eval(ValueView::Text("us")),
            Eval::Holds
        );
        assert_eq!(
            p(Op::Eq, one(true)).eval(ValueView::Bool(true)),
            Eval::Holds
        );
        assert_eq!(
            p(Op::Eq, one(true)).eval(ValueView::Text("true")),
            Eval::Mismatch
        );
    }

    #[test]
    fn margins_reward_slack() {
        let le = p(Op::Le, one(0.01));
        let cheap = le.margin(ValueView::Number(0.002)).unwrap();
        let dear = le.margin(ValueView::Number(0.009)).unwrap();
        assert!(cheap > dear, "{cheap} > {dear}");
        assert_eq!(le.margin(ValueView::Number(0.01)), Some(0.0));
        let ge = p(Op::Ge, one(32000.0));
        assert!(
            ge.margin(ValueView::Number(128000.0)).unwrap()
                > ge.margin(ValueView::Number(64000.0)).unwrap()
        );
        assert!(p(Op::Eq, one(1.0)).margin(ValueView::Number(1.0)).is_none());
        let zero = p(Op::Le, one(0.0)).margin(ValueView::Number(-5.0)).unwrap();
        assert!((0.0..=1.0).contains(&zero));
    }

    #[test]
    fn validation_rejects_operand_mismatches() {
        let f: &dyn fmt::Display = &"c";
        assert!(p(Op::Le, one("eu")).validate(f).is_err());
        assert!(p(Op::In, one("eu")).validate(f).is_err());
        assert!(p(Op::Eq, many(&["a"])).validate(f).is_err());
        assert!(p(Op::In, Operand::Many(vec![])).validate(f).is_err());
        assert_eq!(
            p(Op::Le, one(f64::NAN)).validate(f).unwrap_err().problem,
            Invalid::NotFinite
        );
        assert!(p(Op::In, many(&["a", "b"])).validate(f).is_ok());
    }
}
