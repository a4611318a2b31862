//! Ranking 10,000 and 100,000 synthetic capabilities against a realistic query.
//!
//! Run: `cargo bench -p ecco-core --bench matcher`. The `baseline_*` benches
//! measure, in the same run, the least any ranking must do (touch every
//! capability once; sort the survivors' scores), so that results are read as
//! ratios rather than against numbers from another day or machine.

#![allow(missing_docs, clippy::unwrap_used)]

use divan::Bencher;
use ecco_core::matcher::Index;
use ecco_core::{AgentId, Capability, Matcher, Offer, Query};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn main() {
    divan::main();
}

const SIZES: [usize; 2] = [10_000, 100_000];
const QUERY: &str = "llm/* +summarize ~french ~fast price<=0.01 context_window>=32000 \
                     language in [en, fr] region==eu version ^1 meta.vendor==acme";

/// A mixed population: about a third are `llm/chat`, and the rest differ in
/// type, features, prices, context windows, languages, regions and versions,
/// so that every filter excludes some and about 0.6% (637 of 100,000) survive all of them.
fn population(n: usize) -> Vec<Offer> {
    let mut rng = StdRng::seed_from_u64(7);
    let types = [
        "llm/chat",
        "llm/code",
        "tool/translate",
        "embedding/text",
        "llm/chat/fast",
    ];
    let features = ["summarize", "french", "fast", "code", "vision", "math"];
    let regions = ["eu", "us", "ap"];
    let languages = ["en", "fr", "de", "ja", "es"];
    (0..n)
        .map(|i| {
            let mut b = Capability::builder(
                types[rng.random_range(0..types.len())],
                format!("model-{}", i % 97),
                format!("{}.{}.0", rng.random_range(0..3), rng.random_range(0..10)),
            );
            for f in features {
                if rng.random_bool(0.5) {
                    b = b.feature(f);
                }
            }
            let langs: Vec<&str> = languages
                .iter()
                .copied()
                .filter(|_| rng.random_bool(0.4))
                .collect();
            b = b
                .constraint("price", rng.random_range(0.0..0.03))
                .constraint(
                    "context_window",
                    i64::from(rng.random_range(4u32..256) * 1000),
                )
                .constraint("region", regions[rng.random_range(0..regions.len())])
                .constraint("language", langs)
                .constraint("latency_ms", i64::from(rng.random_range(50u32..3000)))
                .meta(
                    "vendor",
                    if rng.random_bool(0.3) {
                        "acme"
                    } else {
                        "other"
                    },
                );
            Offer::new(
                AgentId::new(format!("12D3KooW{i:044}")).unwrap(),
                b.build().unwrap(),
            )
        })
        .collect()
}

#[divan::bench(args = SIZES)]
fn rank(bencher: Bencher<'_, '_>, n: usize) {
    let offers = population(n);
    let query: Query = QUERY.parse().unwrap();
    let matcher = Matcher::default();
    bencher.bench_local(|| matcher.rank(divan::black_box(&query), &offers).len());
}

/// The same ranking over the columnar index that a directory keeps.
#[divan::bench(args = SIZES)]
fn rank_indexed(bencher: Bencher<'_, '_>, n: usize) {
    let index = Index::new(population(n));
    let query: Query = QUERY.parse().unwrap();
    let matcher = Matcher::default();
    bencher.bench_local(|| matcher.rank_in(&index, divan::black_box(&query)).len());
}

/// Ranking with no filter that excludes, over the index.
#[divan::bench(args = SIZES)]
fn rank_indexed_everything(bencher: Bencher<'_, '_>, n: usize) {
    let index = Index::new(population(n));
    let query: Query = "* ~french ~fast price<=0.02".parse().unwrap();
    let matcher = Matcher::default();
    bencher.bench_local(|| matcher.rank_in(&index, divan::black_box(&query)).len());
}

/// Building the index, which a directory does when its offers change.
#[divan::bench(args = SIZES, sample_count = 20)]
fn index_build(bencher: Bencher<'_, '_>, n: usize) {
    let offers = population(n);
    bencher
        .with_inputs(|| offers.clone())
        // Returning the index lets divan drop it outside the timed region.
        .bench_local_values(Index::new);
}

#[divan::bench(args = SIZES)]
fn rank_top_10(bencher: Bencher<'_, '_>, n: usize) {
    let offers = population(n);
    let query: Query = QUERY.parse().unwrap();
    let matcher = Matcher::default();
    bencher.bench_local(|| {
        matcher
            .rank_top(divan::black_box(&query), &offers, 10)
            .len()
    });
}

/// Ranking with no filter that excludes: every capability is scored and sorted.
#[divan::bench(args = SIZES)]
fn rank_everything(bencher: Bencher<'_, '_>, n: usize) {
    let offers = population(n);
    let query: Query = "* ~french ~fast price<=0.02".parse().unwrap();
    let matcher = Matcher::default();
    bencher.bench_local(|| matcher.rank(divan::black_box(&query), &offers).len());
}

/// Baseline: read one constraint of every capability.
#[divan::bench(args = SIZES)]
fn baseline_scan(bencher: Bencher<'_, '_>, n: usize) {
    let offers = population(n);
    bencher.bench_local(|| {
        divan::black_box(&offers)
            .iter()
            .filter(|o| matches!(o.capability.constraint("price"), Some(ecco_core::ConstraintValue::Number(p)) if *p <= 0.01))
            .count()
    });
}

/// Baseline: sort every capability by (score, agent id), scores precomputed.
#[divan::bench(args = SIZES)]
fn baseline_sort(bencher: Bencher<'_, '_>, n: usize) {
    let offers = population(n);
    let mut rng = StdRng::seed_from_u64(1);
    let scored: Vec<(f64, &Offer)> = offers.iter().map(|o| (rng.random::<f64>(), o)).collect();
    bencher
        .with_inputs(|| scored.clone())
        .bench_local_values(|mut v| {
            v.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.agent.cmp(&b.1.agent)));
            v.len()
        });
}
