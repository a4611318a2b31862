//! How much memory a capability takes, estimated, so that whoever holds
//! many of them (a node's directory of its peers' offers) can bound what it
//! keeps in bytes rather than only in count: a small encoded document can
//! unfold into a large one in memory (a JSON `0` takes one byte on the wire
//! and a whole `serde_json::Value` in memory).

use std::mem::size_of;

use serde_json::{Map, Value};

use super::Capability;
use crate::ConstraintValue;

/// Nodes built by insertion are about three quarters full.
const TYPICAL_PER_LEAF: usize = 8;

fn tree(entries: usize, entry: usize) -> usize {
    crate::heap::tree(entries, entry, TYPICAL_PER_LEAF)
}

impl Capability {
    /// Approximately how many bytes of memory this capability takes, itself
    /// included: strings by length, lists by element, and the B-tree nodes
    /// that hold features, constraints and metadata objects. Allocator
    /// rounding is not counted. Checked against the heap actually allocated
    /// for shapes from one long string to thousands of tiny values (within a
    /// third either way: `tests/footprint.rs`).
    pub fn footprint(&self) -> usize {
        let version = self.version();
        size_of::<Self>()
            + self.kind().as_str().len()
            + self.name().len()
            + version.pre.as_str().len()
            + version.build.as_str().len()
            + tree(self.features().len(), size_of::<String>())
            + self.features().iter().map(String::len).sum::<usize>()
            + tree(
                self.constraints().len(),
                size_of::<String>() + size_of::<ConstraintValue>(),
            )
            + self
                .constraints()
                .iter()
                .map(|(key, value)| key.len() + constraint_heap(value))
                .sum::<usize>()
            + object_heap(self.metadata())
    }
}

fn constraint_heap(value: &ConstraintValue) -> usize {
    match value {
        ConstraintValue::Bool(_) | ConstraintValue::Number(_) => 0,
        ConstraintValue::Text(text) => text.len(),
        ConstraintValue::List(items) => items.iter().map(|i| size_of::<String>() + i.len()).sum(),
    }
}

fn object_heap(object: &Map<String, Value>) -> usize {
    tree(object.len(), size_of::<String>() + size_of::<Value>())
        + object
            .iter()
            .map(|(key, value)| key.len() + value_heap(value))
            .sum::<usize>()
}

fn value_heap(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(text) => text.len(),
        Value::Array(items) => items
            .iter()
            .map(|v| size_of::<Value>() + value_heap(v))
            .sum(),
        Value::Object(object) => object_heap(object),
    }
}
