//! What estimating a message's decoded memory (`decoded::Cost`) adds to
//! decoding it, for the messages a node decodes: the node benchmark's small
//! request, a long prompt, token ids, and a capability document's worth of
//! small objects.
//!
//! Run: `cargo bench -p ecco-core --bench decoded`. `decode` (the baseline,
//! in the same run) decodes a message into a `serde_json::Value`;
//! `cost_then_decode` first estimates its cost, as a node does, then decodes
//! it. Read the ratio of the two.

#![allow(missing_docs, clippy::unwrap_used)]

use divan::Bencher;
use ecco_core::decoded::Cost;
use serde_json::{Value, json};

fn main() {
    divan::main();
}

const MESSAGES: [&str; 4] = [
    "small request",
    "prompt 100 kB",
    "30,000 token ids",
    "2,000 objects",
];

fn message(name: &str) -> Vec<u8> {
    let value = match name {
        // The node benchmark's request payload, in a request's envelope.
        "small request" => json!({
            "capability": "bench/echo",
            "payload": {
                "task": "echo",
                "text": "The quick brown fox jumps over the lazy dog.",
                "seq": 1000,
                "tags": ["bench", "loopback"],
            },
            "attachments": [],
        }),
        "prompt 100 kB" => {
            json!({"capability": "llm/chat", "payload": {"prompt": "x".repeat(100_000)}})
        }
        "30,000 token ids" => {
            json!({"capability": "llm/chat", "payload": {"tokens": (0..30_000).collect::<Vec<u32>>()}})
        }
        _ => {
            json!({"capability": "x/y", "payload": (0..2_000).map(|i| json!({"id": i, "name": format!("item {i}")})).collect::<Vec<_>>()})
        }
    };
    cbor4ii::serde::to_vec(Vec::new(), &value).unwrap()
}

#[divan::bench(args = MESSAGES)]
fn decode(bencher: Bencher<'_, '_>, name: &str) {
    let wire = message(name);
    bencher.bench(|| cbor4ii::serde::from_slice::<Value>(divan::black_box(&wire)).unwrap());
}

#[divan::bench(args = MESSAGES)]
fn cost_then_decode(bencher: Bencher<'_, '_>, name: &str) {
    let wire = message(name);
    bencher.bench(|| {
        let wire = divan::black_box(&wire);
        let cost: Cost = cbor4ii::serde::from_slice(wire).unwrap();
        assert!(cost.bytes() < u64::MAX);
        cbor4ii::serde::from_slice::<Value>(wire).unwrap()
    });
}
