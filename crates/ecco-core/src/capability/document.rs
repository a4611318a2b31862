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
/// number of capabilities and every capability. Every document, however
/// built or decoded (JSON, CBOR), encodes to at most
/// [`limits::MAX_DOCUMENT_BYTES`] of compact JSON: each capability may be
/// within its own bounds while all of them together are not.
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
    /// Bundles capabilities, checking their number, that no two share type,
    /// name and version, and that together they encode to at most
    /// [`limits::MAX_DOCUMENT_BYTES`] of compact JSON.
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
        let document = Self {
            schema: SCHEMA_VERSION,
            capabilities,
        };
        let len = document.json_len();
        if len > limits::MAX_DOCUMENT_BYTES {
            return Err(ValidationError::new(
                "document",
                Invalid::TooLong {
                    len,
                    max: limits::MAX_DOCUMENT_BYTES,
                },
            ));
        }
        Ok(document)
    }

    /// The size of its compact JSON encoding, counted without building it.
    pub fn json_len(&self) -> usize {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0 += bytes.len();
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        // As in `to_json_vec`: serializing a document cannot fail.
        let _ = serde_json::to_writer(&mut count, self);
        count.0
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

    /// 33 capabilities, each within its own bounds (8 KB of metadata),
    /// over the document's 256 KiB together.
    fn too_much() -> Vec<Capability> {
        (0..33)
            .map(|i| {
                Capability::builder("tool/x", format!("n{i}"), "1.0.0")
                    .metadata(serde_json::json!({ "text": "x".repeat(8_000) }))
                    .unwrap()
                    .build()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn the_size_bound_holds_however_a_document_is_made() {
        let e = CapabilityDocument::new(too_much()).unwrap_err();
        assert!(e.to_string().contains("262144"), "{e}");
        // The same capabilities, hand-encoded: JSON through serde (not
        // `from_json_slice`, which would refuse the bytes first) and CBOR.
        let raw = serde_json::json!({ "schema": 1, "capabilities": too_much() });
        assert!(serde_json::from_value::<CapabilityDocument>(raw.clone()).is_err());
        let cbor = cbor4ii::serde::to_vec(Vec::new(), &raw).unwrap();
        assert!(cbor4ii::serde::from_slice::<CapabilityDocument>(&cbor).is_err());
        // One fewer fits, and its length is counted exactly.
        let fits = CapabilityDocument::new(too_much()[..32].to_vec()).unwrap();
        assert_eq!(fits.json_len(), fits.to_json_vec().len());
        assert!(fits.json_len() <= limits::MAX_DOCUMENT_BYTES);
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
