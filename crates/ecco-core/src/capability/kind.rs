//! Hierarchical capability types (`llm/chat`) and the patterns queries use (`llm/*`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Invalid, ValidationError, limits, validate};

/// A hierarchical capability type: lowercase segments joined by `/`, such as
/// `llm/chat`, `tool/translate` or `embedding/text`.
///
/// Each segment is 1 to [`limits::MAX_KEY_LEN`] characters of `a-z`, `0-9`,
/// `-`, `_`, `.`; at most [`limits::MAX_TYPE_SEGMENTS`] segments and
/// [`limits::MAX_TYPE_LEN`] bytes in all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CapabilityType(String);

impl CapabilityType {
    /// Validates a type.
    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        check_path("type", &value)?;
        Ok(Self(value))
    }

    /// The type as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

fn check_path(field: &str, value: &str) -> Result<(), ValidationError> {
    validate::text(field, value, limits::MAX_TYPE_LEN, false)?;
    let segments = value.split('/').count();
    if segments > limits::MAX_TYPE_SEGMENTS {
        return Err(ValidationError::new(
            field,
            Invalid::TooMany {
                count: segments,
                max: limits::MAX_TYPE_SEGMENTS,
            },
        ));
    }
    let mut offset = 0;
    for segment in value.split('/') {
        if segment.is_empty() {
            return Err(ValidationError::new(field, Invalid::EmptySegment));
        }
        if let Err(mut e) = validate::identifier(field, segment) {
            // Report the offset in the whole type, not in the segment.
            if let Invalid::BadChar { at, .. } = &mut e.problem {
                *at += offset;
            }
            return Err(e);
        }
        offset += segment.len() + 1;
    }
    Ok(())
}

impl fmt::Display for CapabilityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, unlike `write_str`, honours width and alignment (`{:<8}`).
        f.pad(&self.0)
    }
}

impl FromStr for CapabilityType {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for CapabilityType {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<&str> for CapabilityType {
    type Error = ValidationError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<CapabilityType> for String {
    fn from(t: CapabilityType) -> Self {
        t.0
    }
}

/// Which capability types a query accepts.
///
/// Text forms: `*` (any type), `llm/*` (any type strictly below `llm`, such as
/// `llm/chat` or `llm/chat/fast`, but not `llm` itself), or an exact type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TypePattern {
    /// Every type.
    Any,
    /// Types strictly below this one.
    Below(CapabilityType),
    /// Exactly this type.
    Exact(CapabilityType),
}

impl TypePattern {
    /// Parses `*`, `prefix/*` or an exact type.
    pub fn new(pattern: &str) -> Result<Self, ValidationError> {
        if pattern == "*" {
            return Ok(Self::Any);
        }
        match pattern.strip_suffix("/*") {
            Some(prefix) => Ok(Self::Below(CapabilityType::new(prefix)?)),
            None => Ok(Self::Exact(CapabilityType::new(pattern)?)),
        }
    }

    /// Whether a capability of type `kind` is accepted.
    pub fn matches(&self, kind: &CapabilityType) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(t) => t == kind,
            Self::Below(prefix) => {
                let (p, k) = (prefix.as_str(), kind.as_str());
                k.len() > p.len() && k.starts_with(p) && k.as_bytes()[p.len()] == b'/'
            }
        }
    }
}

impl fmt::Display for TypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Below(p) => write!(f, "{p}/*"),
            Self::Exact(t) => write!(f, "{t}"),
        }
    }
}

impl FromStr for TypePattern {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for TypePattern {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<TypePattern> for String {
    fn from(p: TypePattern) -> Self {
        p.to_string()
    }
}

impl From<CapabilityType> for TypePattern {
    fn from(t: CapabilityType) -> Self {
        Self::Exact(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> CapabilityType {
        CapabilityType::new(s).unwrap()
    }

    #[test]
    fn valid_types() {
        for s in [
            "llm/chat",
            "tool/translate",
            "embedding/text",
            "a",
            "x-1/y_2/z.3",
        ] {
            assert!(CapabilityType::new(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn invalid_types_say_what_and_where() {
        let e = CapabilityType::new("").unwrap_err();
        assert_eq!(e.problem, Invalid::Empty);
        let e = CapabilityType::new("llm//chat").unwrap_err();
        assert_eq!(e.problem, Invalid::EmptySegment);
        let e = CapabilityType::new("llm/Chat").unwrap_err();
        assert!(
            matches!(
                e.problem,
                Invalid::BadChar {
                    found: 'C',
                    at: 4,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "type: contains 'C' at byte 4; allowed are a-z, 0-9, '-', '_', '.'"
        );
        let long = "a/".repeat(10) + "a";
        assert!(matches!(
            CapabilityType::new(long).unwrap_err().problem,
            Invalid::TooMany { count: 11, max: 8 }
        ));
        let long = "a".repeat(200);
        assert!(matches!(
            CapabilityType::new(long).unwrap_err().problem,
            Invalid::TooLong { len: 200, .. }
        ));
    }

    #[test]
    fn patterns() {
        let below = TypePattern::new("llm/*").unwrap();
        assert!(below.matches(&t("llm/chat")));
        assert!(below.matches(&t("llm/chat/fast")));
        assert!(!below.matches(&t("llm")));
        assert!(!below.matches(&t("llmx/chat")));
        assert!(!below.matches(&t("tool/translate")));
        let exact = TypePattern::new("llm/chat").unwrap();
        assert!(exact.matches(&t("llm/chat")));
        assert!(!exact.matches(&t("llm/chat/fast")));
        assert!(TypePattern::new("*").unwrap().matches(&t("anything")));
        assert!(TypePattern::new("llm/*/x").is_err());
    }

    #[test]
    fn serde_validates() {
        let ok: CapabilityType = serde_json::from_str("\"llm/chat\"").unwrap();
        assert_eq!(ok, t("llm/chat"));
        assert!(serde_json::from_str::<CapabilityType>("\"LLM\"").is_err());
        let p: TypePattern = serde_json::from_str("\"llm/*\"").unwrap();
        assert_eq!(p, TypePattern::Below(t("llm")));
    }
}
