//! What one ranking of the local directory costs, and where: in the node's
//! task (which must not stall: it drives the network) and in the caller's.
//!
//! The directory holds `peers` entries of 3 capabilities each. Contenders,
//! measured in the same run, interleaved:
//!
//! - **copy (baseline)**: what `Agent::ranked` did before `Node::offers`
//!   existed: the node's task copies every entry out, the caller turns them
//!   into offers and ranks them with the plain matcher;
//! - **shared index**: the node's task hands out the index it keeps
//!   (`Directory::snapshot`, an `Arc`), the caller ranks it (`Offers::rank`);
//! - **after a change**: the first ranking after the directory changed: the
//!   node's task hands out its entries shared, the caller indexes and ranks.
//!
//! A second table checks the directory's memory estimate
//! ([`Entry::footprint_of`], which `Limits::max_directory_bytes` bounds)
//! against the heap actually allocated, counted by this binary's allocator,
//! for ordinary documents and for shapes built to unfold in memory.
//!
//! Run: `cargo bench -p ecco --bench directory`; `ECCO_BENCH_QUICK=1` for a
//! smoke run. No I/O: the directory is filled with unsigned announcements,
//! as the node's task would after verifying them.

// A benchmark binary reports on stdout and may panic on failure.
#![allow(clippy::print_stdout)]

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cap::Cap;

use ecco::discovery::{Announcement, Directory, Entry, Offers, Snapshot, Source};
use ecco::{CapabilityDocument, PeerId, agent_id};
use ecco_core::{Matcher, Offer, Query};

const NOW: u64 = 1_800_000_000_000;

/// Counts the bytes allocated and not yet freed.
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The three capabilities of peer `i` in the ranking benchmark, a tenth of
/// which its query admits.
fn typical(i: usize) -> Vec<String> {
    vec![
        format!(
            "llm/chat m{i}@1.{}.0 +summarize{} price=0.0{} context_window={}",
            i % 7,
            if i.is_multiple_of(10) { " +french" } else { "" },
            1 + i % 9,
            8_000 * (1 + i % 8)
        ),
        format!("tool/translate t{i}@1.0.0 +french price=0.001 region=eu"),
        format!("vision/ocr o{i}@2.0.0 +pdf latency_ms={}", 100 + i % 500),
    ]
}

/// A directory of `peers` entries with three capabilities each.
fn directory(peers: usize) -> Directory {
    fill(peers, &[], |i| parse(&typical(i)))
}

fn parse(caps: &[String]) -> Vec<ecco::Capability> {
    caps.iter()
        .map(|c| c.parse().expect("a capability"))
        .collect()
}

/// A directory of `peers` entries, peer `i` offering `capabilities(i)` at `addrs`.
fn fill(
    peers: usize,
    addrs: &[ecco::Multiaddr],
    mut capabilities: impl FnMut(usize) -> Vec<ecco::Capability>,
) -> Directory {
    let mut d = Directory::new(peers, usize::MAX);
    for i in 0..peers {
        let document = CapabilityDocument::new(capabilities(i)).expect("a document");
        let announcement = Announcement {
            peer: PeerId::random(),
            mesh: "ecco".into(),
            seq: 1,
            issued_at_ms: NOW,
            ttl_secs: 300,
            addrs: addrs.to_vec(),
            document,
        };
        d.apply(announcement, Source::Gossip, NOW)
            .expect("room for every peer");
    }
    d
}

/// A kind of document: what it is, for how many peers, and peer `i`'s.
type Shape = (
    &'static str,
    usize,
    Box<dyn Fn(usize) -> Vec<ecco::Capability>>,
);

/// Documents built to take much more memory than their size on the wire,
/// each as large as the limits allow, and `peers` of them.
fn unfolding() -> Vec<Shape> {
    let with_metadata = |i: usize, c: usize, metadata: serde_json::Value| {
        ecco::Capability::builder("tool/x", format!("n{i}x{c}"), "1.0.0")
            .metadata(metadata)
            .expect("metadata within bounds")
            .build()
            .expect("a capability")
    };
    vec![
        (
            "30 capabilities, metadata: 4,000 zeros each",
            20,
            Box::new(move |i| {
                (0..30)
                    .map(|c| with_metadata(i, c, serde_json::json!({ "v": vec![0; 4_000] })))
                    .collect()
            }),
        ),
        (
            "30 capabilities, metadata: 1,000 one-key objects each",
            20,
            Box::new(move |i| {
                (0..30)
                    .map(|c| {
                        let objects: Vec<serde_json::Value> = (0..1_000)
                            .map(|k| serde_json::json!({ "k": k % 10 }))
                            .collect();
                        with_metadata(i, c, serde_json::json!({ "v": objects }))
                    })
                    .collect()
            }),
        ),
        (
            "64 capabilities, 64 features and 32 constraints each, short names",
            50,
            Box::new(|i| {
                (0..64)
                    .map(|c| {
                        let features: String = (0..64).map(|f| format!(" +f{f}")).collect();
                        let constraints: String = (0..32).map(|k| format!(" k{k}={k}")).collect();
                        format!("t/x n{i}x{c}@1.0.0{features}{constraints}")
                            .parse()
                            .expect("a capability")
                    })
                    .collect()
            }),
        ),
    ]
}

/// The directory's heap, and its index's, against the estimate it counts.
fn memory(quick: bool) {
    println!(
        "\n| documents | peers | estimate (`Directory::bytes`) | directory's heap | heap / estimate | index's heap | index / estimate |"
    );
    println!("|---|---|---|---|---|---|---|");
    let typical_peers = if quick { 1_000 } else { 10_000 };
    let mut shapes: Vec<Shape> = vec![(
        "3 capabilities (the ranking benchmark's)",
        typical_peers,
        Box::new(|i| parse(&typical(i))),
    )];
    shapes.extend(unfolding());
    let addrs: Vec<ecco::Multiaddr> = vec![
        "/ip4/192.0.2.1/tcp/4001".parse().expect("an address"),
        "/ip4/192.0.2.1/udp/4001/quic-v1"
            .parse()
            .expect("an address"),
    ];
    for (name, peers, capabilities) in shapes {
        // Everything the directory keeps is counted: what building the
        // documents leaves behind is exactly what the directory holds.
        let before = ALLOCATOR.allocated();
        let mut d = fill(peers, &addrs, &capabilities);
        let held = ALLOCATOR.allocated().saturating_sub(before);
        let before = ALLOCATOR.allocated();
        let offers = d.offers();
        let index = ALLOCATOR.allocated().saturating_sub(before);
        let estimate = d.bytes();
        let mib = |b: usize| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
        println!(
            "| {name} | {peers} | {} | {} | {:.2} | {} | {:.2} |",
            mib(estimate),
            mib(held),
            held as f64 / estimate as f64,
            mib(index),
            index as f64 / estimate as f64
        );
        drop(offers);
    }
}

/// The times of one ranking, split by task.
#[derive(Default)]
struct Samples {
    node: Vec<Duration>,
    caller: Vec<Duration>,
}

impl Samples {
    fn push(&mut self, node: Duration, caller: Duration) {
        self.node.push(node);
        self.caller.push(caller);
    }
}

/// The baseline: copy out, then offers and the plain matcher.
fn copy_then_rank(d: &Directory, matcher: &Matcher, q: &Query, s: &mut Samples) -> usize {
    let t = Instant::now();
    let copy: Vec<Entry> = d.entries().cloned().collect();
    let node = t.elapsed();
    let t = Instant::now();
    let mut peers = Vec::new();
    let mut offers = Vec::new();
    for entry in copy {
        let agent = agent_id(&entry.peer);
        for capability in entry.capabilities {
            peers.push(entry.peer);
            offers.push(Offer::new(agent.clone(), capability));
        }
    }
    let found = black_box(matcher.rank(q, &offers)).len();
    s.push(node, t.elapsed());
    found
}

fn shared_index(d: &Directory, matcher: &Matcher, q: &Query, s: &mut Samples) -> usize {
    let t = Instant::now();
    let snapshot = d.snapshot();
    let node = t.elapsed();
    let t = Instant::now();
    let Snapshot::Indexed(offers) = snapshot else {
        panic!("the directory was indexed before the run")
    };
    let found = black_box(offers.rank(matcher, q)).len();
    s.push(node, t.elapsed());
    found
}

fn after_a_change(d: &mut Directory, matcher: &Matcher, q: &Query, s: &mut Samples) -> usize {
    // A peer's capabilities renewed with a change, untimed.
    let peer = d.entries().next().expect("an entry").peer;
    let entry = d.remove(&peer).expect("its entry");
    let renewed = Announcement {
        peer,
        mesh: "ecco".into(),
        seq: entry.seq + 1,
        issued_at_ms: NOW,
        ttl_secs: 300,
        addrs: Vec::new(),
        document: CapabilityDocument::new(entry.capabilities).expect("a document"),
    };
    d.apply(renewed, Source::Gossip, NOW).expect("back in");
    let t = Instant::now();
    let snapshot = d.snapshot();
    let node = t.elapsed();
    let t = Instant::now();
    let Snapshot::Changed {
        generation,
        entries,
    } = snapshot
    else {
        panic!("the change did not invalidate the index")
    };
    let offers = Arc::new(Offers::new(entries.iter().map(|e| &**e)));
    let found = black_box(offers.rank(matcher, q)).len();
    let caller = t.elapsed();
    // Handed back, as `Node::offers` does, for the next shared-index run.
    assert!(d.cache(generation, offers));
    s.push(node, caller);
    found
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.2} µs")
    } else {
        format!("{us:.0} µs")
    }
}

fn main() {
    let quick = std::env::var_os("ECCO_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    let (sizes, iterations): (&[usize], usize) = if quick {
        (&[1_000], 20)
    } else {
        (&[1_000, 10_000], 200)
    };
    let matcher = Matcher::default();
    let query: Query = "llm/* +summarize ~french price<=0.03 context_window>=16000"
        .parse()
        .expect("a query");
    println!(
        "# Ranking the local directory{}\n",
        if quick { " (quick mode)" } else { "" }
    );
    println!(
        "Query `{query}`; 3 capabilities per peer; {iterations} iterations per size, \
         contenders interleaved; medians.\n"
    );
    println!(
        "| peers (offers) | contender | node's task | caller's task | total | total / baseline |"
    );
    println!("|---|---|---|---|---|---|");
    for &peers in sizes {
        let mut d = directory(peers);
        let _ = d.offers();
        let (mut copy, mut shared, mut changed) = Default::default();
        for i in 0..iterations {
            // Rotate the order, so that none always runs on a warmer cache.
            let mut counts = [0; 3];
            for k in 0..3 {
                match (i + k) % 3 {
                    0 => counts[0] = copy_then_rank(&d, &matcher, &query, &mut copy),
                    1 => counts[1] = shared_index(&d, &matcher, &query, &mut shared),
                    _ => counts[2] = after_a_change(&mut d, &matcher, &query, &mut changed),
                }
            }
            assert!(
                counts[0] > 0 && counts.iter().all(|&c| c == counts[0]),
                "every contender finds the same offers: {counts:?}"
            );
        }
        let mut baseline = None;
        for (name, s) in [
            ("copy, plain matcher (baseline)", &mut copy),
            ("shared index", &mut shared),
            ("after a change", &mut changed),
        ] {
            let mut total: Vec<Duration> =
                s.node.iter().zip(&s.caller).map(|(a, b)| *a + *b).collect();
            let (node, caller, total) = (
                median(&mut s.node),
                median(&mut s.caller),
                median(&mut total),
            );
            let base = *baseline.get_or_insert(total);
            println!(
                "| {peers} ({}) | {name} | {} | {} | {} | {:.3} × |",
                3 * peers,
                us(node),
                us(caller),
                us(total),
                total.as_secs_f64() / base.as_secs_f64()
            );
        }
    }
    memory(quick);
}
