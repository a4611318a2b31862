//! How much memory a message will take once decoded, estimated from its
//! encoding before it is decoded.
//!
//! A size limit on the wire does not bound memory: one CBOR byte (`0`, `{}`)
//! becomes a whole `serde_json::Value` of 32 bytes, and four (`{"a": 0}`) a
//! B-tree node of 632, so that a request of 1 MiB can unfold into more than
//! 200 MiB. Whoever decodes what peers send first reads it as a [`Cost`]
//! (through serde, allocating nothing), compares it with a budget, and only
//! then decodes it:
//!
//! ```
//! use ecco_core::decoded::Cost;
//!
//! let wire = cbor4ii::serde::to_vec(Vec::new(), &serde_json::json!({"a": [0, 0, 0]}))?;
//! let cost: Cost = cbor4ii::serde::from_slice(&wire)?;
//! assert!(cost.bytes() > wire.len() as u64);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The estimate counts what a `serde_json::Value` of the same shape takes,
//! a little over, never under: strings by length, arrays by their slots
//! (at least four, rounded up to a power of two, as a vector grows), objects by B-tree
//! nodes as sparse as insertion can leave them, and byte strings (which a
//! `Value` refuses, and a `serde_bytes` field holds) by length.

use std::fmt;
use std::mem::size_of;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// B-tree leaves are never less than this full, save the root.
const SPARSEST_PER_LEAF: usize = 5;

/// An upper estimate of the heap a value takes once decoded as a
/// `serde_json::Value` (or as a Rust type of the same shape, which takes
/// no more). See the [module documentation](self).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cost(u64);

impl Cost {
    /// The estimate, in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// The sum of two estimates.
    #[must_use]
    pub fn plus(self, other: Cost) -> Cost {
        Cost(self.0.saturating_add(other.0))
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The slots a vector of `n` elements of `size` bytes may take, grown by
/// doubling from its first four (the decoder gives no length up front).
fn slots(n: usize, size: usize) -> u64 {
    if n == 0 {
        return 0;
    }
    let capacity = n.checked_next_power_of_two().unwrap_or(usize::MAX).max(4);
    to_u64(capacity).saturating_mul(to_u64(size))
}

struct CostVisitor;

impl<'de> Visitor<'de> for CostVisitor {
    type Value = Cost;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Cost, E> {
        Ok(Cost(0))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Cost, E> {
        Ok(Cost(0))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Cost, E> {
        Ok(Cost(0))
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Cost, E> {
        Ok(Cost(0))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Cost, E> {
        Ok(Cost(0))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Cost, E> {
        Ok(Cost(0))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Cost, E> {
        Ok(Cost(to_u64(s.len())))
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Cost, E> {
        // Typed bytes (`serde_bytes`); a `Value` refuses them.
        Ok(Cost(to_u64(b.len())))
    }

    fn visit_none<E: de::Error>(self) -> Result<Cost, E> {
        Ok(Cost(0))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Cost, E> {
        Ok(Cost(0))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Cost, D::Error> {
        Cost::deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Cost, D::Error> {
        Cost::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cost, A::Error> {
        let (mut n, mut total) = (0usize, Cost(0));
        while let Some(item) = seq.next_element::<Cost>()? {
            n += 1;
            total = total.plus(item);
        }
        Ok(total.plus(Cost(slots(n, size_of::<Value>()))))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cost, A::Error> {
        let (mut n, mut total) = (0usize, Cost(0));
        while let Some((key, value)) = map.next_entry::<Cost, Cost>()? {
            n += 1;
            total = total.plus(key).plus(value);
        }
        let nodes = crate::heap::tree(
            n,
            size_of::<String>() + size_of::<Value>(),
            SPARSEST_PER_LEAF,
        );
        Ok(total.plus(Cost(to_u64(nodes))))
    }
}

impl<'de> Deserialize<'de> for Cost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cost, D::Error> {
        d.deserialize_any(CostVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cost(value: &Value) -> u64 {
        let wire = cbor4ii::serde::to_vec(Vec::new(), value).unwrap();
        cbor4ii::serde::from_slice::<Cost>(&wire).unwrap().bytes()
    }

    #[test]
    fn scalars_are_free_and_strings_cost_their_length() {
        assert_eq!(cost(&json!(null)), 0);
        assert_eq!(cost(&json!(true)), 0);
        assert_eq!(cost(&json!(-3)), 0);
        assert_eq!(cost(&json!(1.5)), 0);
        assert_eq!(cost(&json!("hello")), 5);
    }

    #[test]
    fn arrays_count_their_slots_and_objects_their_nodes() {
        assert_eq!(cost(&json!([])), 0);
        assert_eq!(cost(&json!([0, 0, 0])), 4 * 32);
        assert_eq!(cost(&json!(["ab"])), 4 * 32 + 2);
        assert_eq!(cost(&json!([0, 0, 0, 0, 0])), 8 * 32);
        // One entry takes a whole node: header and 11 keys and values.
        assert_eq!(cost(&json!({"a": 0})), 16 + 11 * (24 + 32) + 1);
        assert_eq!(cost(&json!({})), 0);
    }

    #[test]
    fn nesting_adds_up() {
        let inner = cost(&json!({"k": "v"}));
        assert_eq!(cost(&json!([{"k": "v"}, {"k": "v"}])), 4 * 32 + 2 * inner);
    }

    #[test]
    fn byte_strings_cost_their_length() {
        let list = vec![serde_bytes::ByteBuf::from(vec![7; 100]); 3];
        let wire = cbor4ii::serde::to_vec(Vec::new(), &list).unwrap();
        let cost: Cost = cbor4ii::serde::from_slice(&wire).unwrap();
        assert_eq!(cost.bytes(), 300 + 4 * 32);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // 100,000 nested one-element arrays.
        let mut wire = vec![0x81u8; 100_000];
        wire.push(0);
        assert!(cbor4ii::serde::from_slice::<Cost>(&wire).is_err());
    }
}
