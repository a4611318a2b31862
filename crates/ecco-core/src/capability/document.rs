//! The versioned, size-bounded set of capabilities that an agent publishes.

use serde::{Deserialize, Serialize};

use super::Capability;
use crate::validate::{self, Index};
use crate::{Invalid, ValidationError, limits};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything one agent offers, as it travels on the wire:
/// `{"schema": 1, "capabilities": [...]}`.
///
/// Decoding checks the byte size before parsing, the schema version, the
/// number of capabilities and every capability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawDocument")]
pub struct CapabilityDocument {
    schema: u32,
    capabilities: Vec<Capability>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    schema: u32,
    capabilities: Vec<Capability>,
}

impl TryFrom<RawDocument> for CapabilityDocument {
    type Error = ValidationError;

    fn try_from(raw: RawDocument) -> Result<Self, Self::Error> {
        if raw.schema != SCHEMA_VERSION {
            return Err(ValidationError::new(
                "schema",
                Invalid::UnsupportedSchema {
                    found: raw.schema,
                    supported: SCHEMA_VERSION,
                },
            ));
        }
        Self::new(raw.capabilities)
    }
}

/// Why a capability document could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The encoded document is larger than [`limits::MAX_DOCUMENT_BYTES`].
    #[error("capability document is {len} bytes; the limit is {max}")]
    TooLarge {
        /// Its size in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The bytes are not a well-formed, valid document.
    #[error("invalid capability document: {0}")]
    Invalid(#[from] serde_json::Error),
}

impl Default for CapabilityDocument {
    /// The empty document: an agent that offers nothing (or withdraws what it offered).
    fn default() -> Self {
        Self {
            schema: SCHEMA_VERSION,
            capabilities: Vec::new(),
        }
    }
}

impl CapabilityDocument {
    /// Bundles capabilities, checking their number and that no two share type, name and version.
    pub fn new(capabilities: Vec<Capability>) -> Result<Self, ValidationError> {
        validate::count(
            "capabilities",
            capabilities.len(),
            limits::MAX_CAPABILITIES_PER_DOCUMENT,
        )?;
        for (i, c) in capabilities.iter().enumerate() {
            let twin = capabilities[..i].iter().any(|o| {
                o.kind() == c.kind() && o.name() == c.name() && o.version() == c.version()
            });
            if twin {
                return Err(ValidationError::new(
                    Index("capabilities", i).to_string(),
                    Invalid::Duplicate,
                ));
            }
        }
        Ok(Self {
            schema: SCHEMA_VERSION,
            capabilities,
        })
    }

    /// The capabilities.
    pub fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    /// Takes the capabilities out.
    pub fn into_capabilities(self) -> Vec<Capability> {
        self.capabilities
    }

    /// Decodes JSON bytes, refusing oversized input before parsing it.
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, DocumentError> {
        if bytes.len() > limits::MAX_DOCUMENT_BYTES {
            return Err(DocumentError::TooLarge {
                len: bytes.len(),
                max: limits::MAX_DOCUMENT_BYTES,
            });
        }
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Encodes as compact JSON.
    pub fn to_json_vec(&self) -> Vec<u8> {
        // A document holds only strings, finite numbers and JSON maps with
        // string keys, so serializing it cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(name: &str) -> Capability {
        Capability::builder("llm/chat", name, "1.0.0")
            .build()
            .unwrap()
    }

    #[test]
    fn round_trips() {
        let doc = CapabilityDocument::new(vec![cap("a"), cap("b")]).unwrap();
        let bytes = doc.to_json_vec();
        assert!(bytes.starts_with(br#"{"schema":1,"#));
        assert_eq!(CapabilityDocument::from_json_slice(&bytes).unwrap(), doc);
    }

    #[test]
    fn refuses_other_schemas_duplicates_and_oversize() {
        let e =
            CapabilityDocument::from_json_slice(br#"{"schema":2,"capabilities":[]}"#).unwrap_err();
        assert!(
            e.to_string().contains("schema version 2 is not supported"),
            "{e}"
        );

        let e = CapabilityDocument::new(vec![cap("a"), cap("a")]).unwrap_err();
        assert_eq!(e.field, "capabilities[1]");
        assert_eq!(e.problem, Invalid::Duplicate);

        let e =
            CapabilityDocument::new((0..65).map(|i| cap(&format!("c{i}"))).collect()).unwrap_err();
        assert!(matches!(e.problem, Invalid::TooMany { count: 65, .. }));

        let big = vec![b' '; limits::MAX_DOCUMENT_BYTES + 1];
        assert!(matches!(
            CapabilityDocument::from_json_slice(&big),
            Err(DocumentError::TooLarge { .. })
        ));
    }
}
