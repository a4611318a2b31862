//! The capability itself, its builder and its validation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::CapabilityType;
use crate::validate::{self, Key};
use crate::{ConstraintValue, Invalid, ValidationError, limits};

/// What an agent offers. Always valid: every constructor and the
/// deserializer check the bounds in [`limits`](crate::limits).
///
/// JSON form:
///
/// ```json
/// {"type": "llm/chat", "name": "gpt-small", "version": "1.2.0",
///  "features": ["summarize"], "constraints": {"price": 0.002, "language": ["en", "fr"]},
///  "metadata": {"vendor": "acme"}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawCapability")]
pub struct Capability {
    #[serde(rename = "type")]
    kind: CapabilityType,
    name: String,
    version: semver::Version,
    features: BTreeSet<String>,
    constraints: BTreeMap<String, ConstraintValue>,
    metadata: Map<String, Value>,
}

/// The unvalidated wire form; `Capability` is only ever built from it through validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapability {
    #[serde(rename = "type")]
    kind: CapabilityType,
    name: String,
    version: String,
    #[serde(default)]
    features: Vec<String>,
    #[serde(default)]
    constraints: BTreeMap<String, ConstraintValue>,
    #[serde(default)]
    metadata: Map<String, Value>,
}

impl TryFrom<RawCapability> for Capability {
    type Error = ValidationError;

    fn try_from(raw: RawCapability) -> Result<Self, Self::Error> {
        let mut builder = Capability::builder(raw.kind, raw.name, raw.version);
        builder.features.extend(raw.features);
        builder.constraints.extend(raw.constraints);
        builder.metadata = raw.metadata;
        builder.build()
    }
}

impl Capability {
    /// Starts a capability of type `kind`, named `name`, at semver `version`.
    /// Nothing is checked until [`Builder::build`].
    pub fn builder(
        kind: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
    ) -> Builder {
        Builder {
            kind: kind.into(),
            name: name.into(),
            version: version.into(),
            features: Vec::new(),
            constraints: Vec::new(),
            metadata: Map::new(),
        }
    }

    /// The hierarchical type, such as `llm/chat`.
    pub fn kind(&self) -> &CapabilityType {
        &self.kind
    }

    /// The name, such as `gpt-small`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The semver version.
    pub fn version(&self) -> &semver::Version {
        &self.version
    }

    /// The features, sorted.
    pub fn features(&self) -> &BTreeSet<String> {
        &self.features
    }

    /// Whether the capability has this feature.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.contains(feature)
    }

    /// The constraints, sorted by key.
    pub fn constraints(&self) -> &BTreeMap<String, ConstraintValue> {
        &self.constraints
    }

    /// One constraint.
    pub fn constraint(&self, key: &str) -> Option<&ConstraintValue> {
        self.constraints.get(key)
    }

    /// The free JSON metadata (an object).
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// Follows a dot-separated path into the metadata: `vendor` or `model.family`.
    pub fn metadata_at<'a, I>(&'a self, path: I) -> Option<&'a Value>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut segments = path.into_iter();
        let mut current = self.metadata.get(segments.next()?)?;
        for segment in segments {
            current = current.as_object()?.get(segment)?;
        }
        Some(current)
    }

    /// A builder holding this capability's fields, for making a changed copy.
    pub fn to_builder(&self) -> Builder {
        Builder {
            kind: self.kind.to_string(),
            name: self.name.clone(),
            version: self.version.to_string(),
            features: self.features.iter().cloned().collect(),
            constraints: self
                .constraints
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            metadata: self.metadata.clone(),
        }
    }
}

/// Builds a validated [`Capability`]; see [`Capability::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    kind: String,
    name: String,
    version: String,
    features: Vec<String>,
    constraints: Vec<(String, ConstraintValue)>,
    metadata: Map<String, Value>,
}

impl Builder {
    /// Adds a feature such as `summarize`.
    pub fn feature(mut self, feature: impl Into<String>) -> Self {
        self.features.push(feature.into());
        self
    }

    /// Adds several features.
    pub fn features<I, S>(mut self, features: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.features.extend(features.into_iter().map(Into::into));
        self
    }

    /// Sets a constraint such as `price = 0.002` or `language = ["en", "fr"]`.
    pub fn constraint(mut self, key: impl Into<String>, value: impl Into<ConstraintValue>) -> Self {
        self.constraints.push((key.into(), value.into()));
        self
    }

    /// Sets one top-level metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Replaces the metadata; it must be a JSON object.
    pub fn metadata(mut self, metadata: Value) -> Result<Self, ValidationError> {
        match metadata {
            Value::Object(map) => {
                self.metadata = map;
                Ok(self)
            }
            _ => Err(ValidationError::new("metadata", Invalid::NotAnObject)),
        }
    }

    /// Validates everything and returns the capability.
    pub fn build(self) -> Result<Capability, ValidationError> {
        let kind = CapabilityType::new(self.kind)?;
        validate::text("name", &self.name, limits::MAX_NAME_LEN, false)?;
        if let Some((at, found)) = self
            .name
            .char_indices()
            .find(|&(_, c)| !crate::text::is_word_char(c) || c == '@' || c.is_control())
        {
            return Err(ValidationError::new(
                "name",
                Invalid::BadChar {
                    found,
                    at,
                    allowed: "printable characters other than whitespace and @ \" [ ] , < > = !",
                },
            ));
        }
        let version = parse_version(&self.version)?;

        validate::count("features", self.features.len(), limits::MAX_FEATURES)?;
        let mut features = BTreeSet::new();
        for feature in self.features {
            validate::name(Key("features", &feature), &feature)?;
            if features.contains(&feature) {
                return Err(ValidationError::new(
                    Key("features", &feature).to_string(),
                    Invalid::Duplicate,
                ));
            }
            features.insert(feature);
        }

        validate::count(
            "constraints",
            self.constraints.len(),
            limits::MAX_CONSTRAINTS,
        )?;
        let mut constraints = BTreeMap::new();
        for (key, value) in self.constraints {
            let field = Key("constraints", &key);
            validate::name(&field, &key)?;
            value.validate(&field)?;
            if constraints.contains_key(&key) {
                return Err(ValidationError::new(field.to_string(), Invalid::Duplicate));
            }
            constraints.insert(key, value);
        }

        check_metadata(&self.metadata)?;
        Ok(Capability {
            kind,
            name: self.name,
            version,
            features,
            constraints,
            metadata: self.metadata,
        })
    }
}

pub(crate) fn parse_version(text: &str) -> Result<semver::Version, ValidationError> {
    validate::text("version", text, limits::MAX_VERSION_LEN, false)?;
    semver::Version::parse(text).map_err(|e| {
        ValidationError::new(
            "version",
            Invalid::Semver {
                text: text.to_owned(),
                reason: e.to_string(),
            },
        )
    })
}

fn check_metadata(metadata: &Map<String, Value>) -> Result<(), ValidationError> {
    let depth = 1 + metadata.values().map(depth).max().unwrap_or(0);
    if depth > limits::MAX_METADATA_DEPTH {
        return Err(ValidationError::new(
            "metadata",
            Invalid::TooDeep {
                depth,
                max: limits::MAX_METADATA_DEPTH,
            },
        ));
    }
    // Depth is bounded above, so serializing cannot recurse without limit.
    let len = serde_json::to_vec(metadata).map_or(usize::MAX, |v| v.len());
    if len > limits::MAX_METADATA_BYTES {
        return Err(ValidationError::new(
            "metadata",
            Invalid::TooLong {
                len,
                max: limits::MAX_METADATA_BYTES,
            },
        ));
    }
    Ok(())
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> Capability {
        Capability::builder("llm/chat", "gpt-small", "1.2.0")
            .feature("summarize")
            .feature("french")
            .constraint("price", 0.002)
            .constraint("context_window", 32000_i64)
            .constraint("language", vec!["en", "fr"])
            .constraint("region", "eu")
            .constraint("streaming", true)
            .meta("vendor", "acme")
            .build()
            .unwrap()
    }

    #[test]
    fn builds_and_reads_back() {
        let c = sample();
        assert_eq!(c.kind().as_str(), "llm/chat");
        assert_eq!(c.version(), &semver::Version::new(1, 2, 0));
        assert!(c.has_feature("french"));
        assert_eq!(c.constraint("price"), Some(&ConstraintValue::Number(0.002)));
        assert_eq!(c.metadata_at(["vendor"]), Some(&json!("acme")));
    }

    #[test]
    fn json_round_trip_and_shape() {
        let c = sample();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["type"], "llm/chat");
        assert_eq!(v["version"], "1.2.0");
        assert_eq!(v["features"], json!(["french", "summarize"]));
        assert_eq!(v["constraints"]["language"], json!(["en", "fr"]));
        let back: Capability = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn deserializing_validates() {
        let bad = json!({"type": "llm/chat", "name": "x", "version": "1.0"});
        let e = serde_json::from_value::<Capability>(bad).unwrap_err();
        assert!(
            e.to_string()
                .contains("version: \"1.0\" is not valid semver"),
            "{e}"
        );

        let bad = json!({"type": "llm/chat", "name": "x", "version": "1.0.0", "features": ["Fr"]});
        let e = serde_json::from_value::<Capability>(bad).unwrap_err();
        assert!(
            e.to_string().contains("features[\"Fr\"]: contains 'F'"),
            "{e}"
        );

        let bad = json!({"type": "llm/chat", "name": "x", "version": "1.0.0", "surprise": 1});
        assert!(serde_json::from_value::<Capability>(bad).is_err());
    }

    #[test]
    fn rejects_each_bad_input_with_its_own_error() {
        let b = || Capability::builder("llm/chat", "n", "1.0.0");
        let err = |r: Result<Capability, ValidationError>| r.unwrap_err();

        let e = err(Capability::builder("", "n", "1.0.0").build());
        assert_eq!((e.field.as_str(), e.problem), ("type", Invalid::Empty));

        let e = err(Capability::builder("llm/chat", "n", "one").build());
        assert!(matches!(e.problem, Invalid::Semver { .. }));

        let e = err(b().constraint("price", f64::NAN).build());
        assert_eq!(e.field, "constraints[\"price\"]");
        assert_eq!(e.problem, Invalid::NotFinite);

        let e = err(b().constraint("latency_ms", f64::INFINITY).build());
        assert_eq!(e.problem, Invalid::NotFinite);

        let e = err(b().constraint("region", "x".repeat(300)).build());
        assert!(matches!(e.problem, Invalid::TooLong { len: 300, max: 256 }));

        let e = err(b().features((0..65).map(|i| format!("f{i}"))).build());
        assert_eq!(e.field, "features");
        assert!(matches!(e.problem, Invalid::TooMany { count: 65, max: 64 }));

        let e = err(b().feature("a").feature("a").build());
        assert_eq!(e.problem, Invalid::Duplicate);

        let e = err(b().constraint("version", 1_i64).build());
        assert_eq!(e.problem, Invalid::Reserved);

        let e = err(Capability::builder("llm/chat", "has space", "1.0.0").build());
        assert!(matches!(e.problem, Invalid::BadChar { found: ' ', .. }));

        let e = err(b().meta("blob", "x".repeat(9000)).build());
        assert!(matches!(e.problem, Invalid::TooLong { .. }));
        assert_eq!(e.field, "metadata");

        let deep = (0..10).fold(json!(1), |acc, _| json!({ "x": acc }));
        let e = err(b().meta("deep", deep).build());
        assert!(matches!(e.problem, Invalid::TooDeep { .. }));

        assert!(b().metadata(json!([1, 2])).is_err());
    }
}
