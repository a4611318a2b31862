//! `decoded::Cost` against the heap that decoding really takes, counted by
//! this binary's allocator: never under it, whatever the shape, and not far
//! over it for ordinary ones. One test only: the count is global, so no
//! other test may allocate alongside.

#![allow(clippy::unwrap_used)]

use std::alloc::System;

use cap::Cap;
use ecco_core::decoded::Cost;
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The most heap held at once while decoding `wire` into a `Value`, and
/// what stays held once it is decoded.
fn measured(wire: &[u8]) -> usize {
    let before = ALLOCATOR.allocated();
    let decoded: Value = cbor4ii::serde::from_slice(wire).unwrap();
    let held = ALLOCATOR.allocated() - before;
    drop(decoded);
    held
}

/// `n` copies of `item` in one definite-length CBOR array.
fn array_of(n: u32, item: &[u8]) -> Vec<u8> {
    let mut wire = vec![0x9a];
    wire.extend(n.to_be_bytes());
    for _ in 0..n {
        wire.extend_from_slice(item);
    }
    wire
}

/// One CBOR map of `n` entries whose keys come in the order given by `key`.
fn map_of(n: u32, key: impl Fn(u32) -> String) -> Vec<u8> {
    let map: serde_json::Map<String, Value> = (0..n).map(|i| (key(i), json!(0))).collect();
    // serde_json sorts the keys; re-encode in the order asked for.
    let mut wire = vec![0xba];
    wire.extend(n.to_be_bytes());
    for i in 0..n {
        let k = key(i);
        assert!(map.contains_key(&k));
        wire.extend(cbor4ii::serde::to_vec(Vec::new(), &k).unwrap());
        wire.push(0);
    }
    wire
}

#[test]
fn the_estimate_is_never_under_the_heap_and_close_for_ordinary_shapes() {
    let cbor = |v: &Value| cbor4ii::serde::to_vec(Vec::new(), v).unwrap();
    // Adversarial shapes: tiny on the wire, large in memory.
    let adversarial: Vec<(&str, Vec<u8>)> = vec![
        ("empty objects", array_of(100_000, &[0xa0])),
        ("zeros", array_of(100_000, &[0x00])),
        (
            "one-entry objects",
            array_of(50_000, &[0xa1, 0x61, 0x61, 0x00]),
        ),
        ("empty-key objects", array_of(50_000, &[0xa1, 0x60, 0x00])),
        ("one-element arrays", array_of(50_000, &[0x81, 0x00])),
        (
            "a wide object, sorted keys",
            map_of(20_000, |i| format!("{i:08}")),
        ),
        (
            "a wide object, reversed keys",
            map_of(20_000, |i| format!("{:08}", 20_000 - i)),
        ),
        (
            "a wide object, scattered keys",
            map_of(20_000, |i| format!("{:08}", (i * 7_919) % 20_000)),
        ),
    ];
    // Ordinary shapes: prompts, chats, token ids, embeddings.
    let ordinary: Vec<(&str, Vec<u8>)> = vec![
        (
            "a prompt",
            cbor(&json!({"prompt": "x".repeat(100_000), "max_tokens": 256})),
        ),
        (
            "a chat",
            cbor(
                &json!({"messages": (0..200).map(|i| json!({"role": "user", "content": format!("message {i} {}", "y".repeat(400))})).collect::<Vec<_>>()}),
            ),
        ),
        (
            "token ids",
            cbor(&json!({"tokens": (0..30_000).collect::<Vec<u32>>()})),
        ),
        (
            "an embedding",
            cbor(&json!({"embedding": (0..4_096).map(|i| f64::from(i) / 7.0).collect::<Vec<_>>()})),
        ),
    ];
    for (name, wire) in adversarial.iter().chain(&ordinary) {
        let estimate = cbor4ii::serde::from_slice::<Cost>(wire).unwrap().bytes();
        let heap = measured(wire) as u64;
        assert!(
            estimate >= heap,
            "{name}: estimated {estimate} bytes, decoding took {heap}"
        );
        println!(
            "{name}: {} bytes on the wire, {heap} in memory, {estimate} estimated",
            wire.len()
        );
    }
    for (name, wire) in &ordinary {
        let estimate = cbor4ii::serde::from_slice::<Cost>(wire).unwrap().bytes();
        let heap = measured(wire) as u64;
        assert!(
            estimate <= heap * 2,
            "{name}: estimated {estimate} bytes, more than twice the {heap} that decoding took"
        );
    }
}
