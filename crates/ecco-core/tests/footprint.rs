//! `Capability::footprint` against the heap a capability really takes,
//! counted by this binary's allocator. One test only: the count is global,
//! so no other test may allocate alongside.

#![allow(clippy::unwrap_used)]

use std::alloc::System;

use cap::Cap;
use ecco_core::Capability;
use serde_json::json;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The heap a capability takes once deserialized from the wire (as a
/// node's directory gets it), plus the capability itself.
fn measured(capability: &Capability) -> usize {
    let wire = serde_json::to_vec(capability).unwrap();
    let before = ALLOCATOR.allocated();
    let decoded: Capability = serde_json::from_slice(&wire).unwrap();
    let heap = ALLOCATOR.allocated() - before;
    assert_eq!(&decoded, capability);
    drop(decoded);
    heap + size_of::<Capability>()
}

#[test]
fn the_estimate_follows_the_heap_whatever_the_shape() {
    let metadata = |value| {
        Capability::builder("tool/x", "n", "1.0.0")
            .metadata(value)
            .unwrap()
            .build()
            .unwrap()
    };
    let shapes: Vec<(&str, Capability)> = vec![
        ("bare", "tool/x n@1.0.0".parse().unwrap()),
        (
            "ordinary",
            "llm/chat atlas@1.2.0-beta.1 +summarize +french price=0.002 context_window=32000 region=eu"
                .parse()
                .unwrap(),
        ),
        (
            "64 features, 32 constraints",
            format!(
                "t/x n@1.0.0{}{}",
                (0..64).map(|f| format!(" +f{f}")).collect::<String>(),
                (0..32).map(|k| format!(" k{k}={k}")).collect::<String>()
            )
            .parse()
            .unwrap(),
        ),
        (
            "list constraints",
            format!(
                "t/x n@1.0.0 languages=[{}]",
                (0..64).map(|i| format!("l{i}")).collect::<Vec<_>>().join(",")
            )
            .parse()
            .unwrap(),
        ),
        ("4,000 zeros", metadata(json!({ "v": vec![0; 4_000] }))),
        (
            "1,000 small objects",
            metadata(json!({ "v": (0..1_000).map(|k| json!({ "k": k % 10 })).collect::<Vec<_>>() })),
        ),
        ("one long text", metadata(json!({ "text": "x".repeat(8_000) }))),
        (
            "nested",
            metadata(json!({ "a": { "b": { "c": { "d": [1, "two", null, true, { "e": 2.5 }] } } } })),
        ),
    ];
    for (name, capability) in shapes {
        let (estimate, heap) = (capability.footprint(), measured(&capability));
        let ratio = heap as f64 / estimate as f64;
        // Close enough to budget memory by: never off by more than a third.
        assert!(
            (0.75..=1.33).contains(&ratio),
            "{name}: estimated {estimate} bytes, measured {heap} (× {ratio:.2})"
        );
    }
}
