//! Decoding what peers send within a memory budget. A size limit on the wire
//! does not bound memory (a 1 MiB request can unfold into 200 MiB of JSON
//! values), so a message is first read as an [`ecco_core::decoded::Cost`],
//! which allocates nothing, and decoded only if its estimate fits.

use ecco_core::decoded::Cost;
use serde::de::DeserializeOwned;

/// Why a message was not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Not well-formed, or not of the expected shape.
    #[error("{0}")]
    Malformed(String),
    /// It would take more memory than allowed once decoded.
    #[error("it would take {memory} bytes of memory once decoded, over the limit of {limit} bytes")]
    TooLarge {
        /// The estimate.
        memory: u64,
        /// The limit.
        limit: u64,
    },
}

/// Decodes `bytes` (CBOR) if they take at most `limit` bytes of memory once decoded.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], limit: u64) -> Result<T, DecodeError> {
    let cost: Cost =
        cbor4ii::serde::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if cost.bytes() > limit {
        return Err(DecodeError::TooLarge {
            memory: cost.bytes(),
            limit,
        });
    }
    cbor4ii::serde::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// As PROTOCOL.md says: inside a JSON value a repeated key is not
    /// checked, and the last one wins.
    #[test]
    fn a_repeated_key_inside_a_json_value_keeps_the_last() {
        // {"a": 1, "a": 2}: a map of two pairs, both keyed "a".
        let twice = [0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02];
        assert_eq!(decode::<Value>(&twice, 10_000).unwrap(), json!({"a": 2}));
    }

    #[test]
    fn what_fits_is_decoded_and_what_unfolds_is_refused_before_decoding() {
        let small = cbor4ii::serde::to_vec(Vec::new(), &json!({"a": [1, 2]})).unwrap();
        assert_eq!(
            decode::<Value>(&small, 10_000).unwrap(),
            json!({"a": [1, 2]})
        );
        // 10,000 empty objects: 10 kB on the wire, 512 kB as values.
        let wide = cbor4ii::serde::to_vec(Vec::new(), &vec![json!({}); 10_000]).unwrap();
        assert!(wide.len() < 11_000);
        match decode::<Value>(&wide, 100_000) {
            Err(DecodeError::TooLarge { memory, limit }) => {
                assert_eq!(limit, 100_000);
                assert!(memory >= 10_000 * 32, "{memory}");
            }
            other => panic!("expected too large, got {other:?}"),
        }
        assert!(matches!(
            decode::<Value>(b"\xff\x00", 100),
            Err(DecodeError::Malformed(_))
        ));
    }
}
