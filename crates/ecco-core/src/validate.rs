//! Typed validation errors and the checks shared by capabilities and queries.

use std::fmt;

use crate::limits;

/// A value that failed validation: which field, and what is wrong with it.
///
/// Displays as `field: problem`, for example
/// `capabilities[2].features["Fr"]: contains 'F' at byte 0; allowed are a-z, 0-9, '-', '_', '.'`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// Where the bad value is, as a path such as `constraints["price"]`.
    pub field: String,
    /// What is wrong with it.
    pub problem: Invalid,
}

impl ValidationError {
    pub(crate) fn new(field: impl Into<String>, problem: Invalid) -> Self {
        Self {
            field: field.into(),
            problem,
        }
    }
}

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// An empty string or list where content is required.
    #[error("must not be empty")]
    Empty,
    /// A string longer than its bound.
    #[error("is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Actual length in bytes.
        len: usize,
        /// The bound, from [`limits`](crate::limits).
        max: usize,
    },
    /// A collection with more entries than its bound.
    #[error("has {count} entries; the limit is {max}")]
    TooMany {
        /// Actual number of entries.
        count: usize,
        /// The bound, from [`limits`](crate::limits).
        max: usize,
    },
    /// A structure nested deeper than its bound.
    #[error("is nested {depth} levels deep; the limit is {max}")]
    TooDeep {
        /// Actual depth.
        depth: usize,
        /// The bound.
        max: usize,
    },
    /// A character outside the allowed set.
    #[error("contains {found:?} at byte {at}; allowed are {allowed}")]
    BadChar {
        /// The offending character.
        found: char,
        /// Its byte offset.
        at: usize,
        /// A description of the allowed characters.
        allowed: &'static str,
    },
    /// An empty segment in a `/`- or `.`-separated path.
    #[error("has an empty segment")]
    EmptySegment,
    /// A number that is NaN or infinite.
    #[error("is not a finite number")]
    NotFinite,
    /// A version or version requirement that semver rejects.
    #[error("{text:?} is not valid semver: {reason}")]
    Semver {
        /// The rejected text.
        text: String,
        /// Semver's explanation.
        reason: String,
    },
    /// A name that Ecco reserves.
    #[error("is reserved")]
    Reserved,
    /// The same entry given twice.
    #[error("is given more than once")]
    Duplicate,
    /// An operator that cannot apply to the given operand.
    #[error("operator `{op}` cannot take {operand}")]
    OperatorMismatch {
        /// The operator.
        op: &'static str,
        /// The operand kind it was given.
        operand: &'static str,
    },
    /// A threshold or weight outside its range.
    #[error("{value} is outside {range}")]
    OutOfRange {
        /// The rejected value.
        value: f64,
        /// The accepted range.
        range: &'static str,
    },
    /// A document schema this version of Ecco does not know.
    #[error("schema version {found} is not supported (this build reads {supported})")]
    UnsupportedSchema {
        /// The schema version found.
        found: u32,
        /// The schema version supported.
        supported: u32,
    },
    /// Metadata that is not a JSON object.
    #[error("must be a JSON object")]
    NotAnObject,
}

const IDENT_ALLOWED: &str = "a-z, 0-9, '-', '_', '.'";

/// Checks a lowercase identifier: features, constraint keys, type segments.
pub(crate) fn identifier(field: impl fmt::Display, value: &str) -> Result<(), ValidationError> {
    let field = || field.to_string();
    if value.is_empty() {
        return Err(ValidationError::new(field(), Invalid::Empty));
    }
    if value.len() > limits::MAX_KEY_LEN {
        return Err(ValidationError::new(
            field(),
            Invalid::TooLong {
                len: value.len(),
                max: limits::MAX_KEY_LEN,
            },
        ));
    }
    if let Some((at, found)) = value.char_indices().find(|&(_, c)| !is_ident_char(c)) {
        return Err(ValidationError::new(
            field(),
            Invalid::BadChar {
                found,
                at,
                allowed: IDENT_ALLOWED,
            },
        ));
    }
    Ok(())
}

pub(crate) fn is_ident_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.')
}

/// Checks a string's length against a bound (and that it is not empty when `allow_empty` is false).
pub(crate) fn text(
    field: impl fmt::Display,
    value: &str,
    max: usize,
    allow_empty: bool,
) -> Result<(), ValidationError> {
    if value.is_empty() && !allow_empty {
        return Err(ValidationError::new(field.to_string(), Invalid::Empty));
    }
    if value.len() > max {
        return Err(ValidationError::new(
            field.to_string(),
            Invalid::TooLong {
                len: value.len(),
                max,
            },
        ));
    }
    Ok(())
}

/// Checks a collection size against a bound.
pub(crate) fn count(
    field: impl fmt::Display,
    count: usize,
    max: usize,
) -> Result<(), ValidationError> {
    if count > max {
        return Err(ValidationError::new(
            field.to_string(),
            Invalid::TooMany { count, max },
        ));
    }
    Ok(())
}

/// Checks that a number is finite.
pub(crate) fn finite(field: impl fmt::Display, value: f64) -> Result<(), ValidationError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(ValidationError::new(field.to_string(), Invalid::NotFinite))
    }
}

/// Formats a key for a field path: `features["summarize"]`.
pub(crate) struct Key<'a>(pub(crate) &'a str, pub(crate) &'a str);

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{:?}]", self.0, self.1)
    }
}

/// Formats an index for a field path: `capabilities[3]`.
pub(crate) struct Index<'a>(pub(crate) &'a str, pub(crate) usize);

impl fmt::Display for Index<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

/// Names the text syntax gives a meaning of their own, so constraint keys and
/// features may not use them.
pub(crate) fn is_reserved(name: &str) -> bool {
    matches!(name, "version" | "in" | "not" | "meta") || name.starts_with("meta.")
}

/// Checks a feature or constraint key: an identifier that is not reserved.
pub(crate) fn name(field: impl fmt::Display, value: &str) -> Result<(), ValidationError> {
    identifier(&field, value)?;
    if is_reserved(value) {
        return Err(ValidationError::new(field.to_string(), Invalid::Reserved));
    }
    Ok(())
}
