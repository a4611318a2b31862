use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use super::*;
use crate::{AgentId, Capability, Matcher, Offer, Performance};

fn n(k: usize) -> NonZeroUsize {
    NonZeroUsize::new(k).unwrap()
}

fn offers(count: usize) -> Vec<Offer> {
    (0..count)
        .map(|i| {
            let cap = Capability::builder("llm/chat", "m", "1.0.0")
                .constraint("price", (i + 1) as f64)
                .build()
                .unwrap();
            Offer::new(AgentId::new(format!("agent-{i:02}")).unwrap(), cap)
        })
        .collect()
}

fn query() -> Query {
    "llm/* price <= 100".parse().unwrap()
}

fn ranked(offers: &[Offer]) -> Vec<Match<'_>> {
    Matcher::default().rank(&query(), offers)
}

fn names(picked: &[Match<'_>]) -> Vec<String> {
    picked.iter().map(|m| m.offer.agent.to_string()).collect()
}

#[test]
fn all_and_top_n() {
    let o = offers(5);
    let r = ranked(&o);
    let mut s = Selector::new(1);
    assert_eq!(s.select(&Selection::All, &query(), &r, &(), 1).unwrap(), r);
    assert_eq!(
        s.select(&Selection::TopN(n(2)), &query(), &r, &(), 1)
            .unwrap(),
        r[..2]
    );
    assert_eq!(
        s.select(&Selection::TopN(n(9)), &query(), &r, &(), 1)
            .unwrap(),
        r
    );
    assert!(
        s.select(&Selection::All, &query(), &[], &(), 0)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn min_agents_is_enforced_with_clear_errors() {
    let o = offers(2);
    let r = ranked(&o);
    let mut s = Selector::new(1);
    let e = s.select(&Selection::All, &query(), &r, &(), 3).unwrap_err();
    assert_eq!(
        e,
        SelectionError::TooFewAgents {
            required: 3,
            available: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "2 agent(s) match but at least 3 are required"
    );
    let e = s
        .select(&Selection::TopN(n(1)), &query(), &r, &(), 2)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "`top-n:1` picks at most 1 agent(s), fewer than the 2 required"
    );
}

#[test]
fn round_robin_is_fair_over_many_calls() {
    let o = offers(7);
    let r = ranked(&o);
    let mut s = Selector::new(1);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    // 7 agents, 3 per call, 70 calls: each agent exactly 30 times.
    for _ in 0..70 {
        let picked = s
            .select(&Selection::RoundRobin(n(3)), &query(), &r, &(), 1)
            .unwrap();
        assert_eq!(picked.len(), 3);
        for name in names(&picked) {
            *counts.entry(name).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), 7);
    assert!(counts.values().all(|&c| c == 30), "{counts:?}");
    // Not the first n every time.
    let a = names(
        &s.select(&Selection::RoundRobin(n(2)), &query(), &r, &(), 1)
            .unwrap(),
    );
    let b = names(
        &s.select(&Selection::RoundRobin(n(2)), &query(), &r, &(), 1)
            .unwrap(),
    );
    assert_ne!(a, b);
}

#[test]
fn random_is_seeded_and_uniform() {
    let o = offers(5);
    let r = ranked(&o);
    let picks = |seed| {
        let mut s = Selector::new(seed);
        (0..20)
            .map(|_| {
                names(
                    &s.select(&Selection::Random(n(2)), &query(), &r, &(), 1)
                        .unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(picks(7), picks(7));
    assert_ne!(picks(7), picks(8));

    let mut s = Selector::new(42);
    let trials = 20_000;
    let mut counts = [0usize; 5];
    for _ in 0..trials {
        for m in s
            .select(&Selection::Random(n(2)), &query(), &r, &(), 1)
            .unwrap()
        {
            counts[o.iter().position(|x| x == m.offer).unwrap()] += 1;
        }
    }
    // Each agent is in a 2-of-5 sample with probability 0.4.
    for c in counts {
        let p = c as f64 / trials as f64;
        assert!((p - 0.4).abs() < 0.02, "{counts:?}");
    }
}

#[test]
fn weighted_sampling_frequencies_follow_the_weights() {
    let o = offers(3);
    let r = ranked(&o);
    // Same score for all; performance makes the difference.
    let mut history = BTreeMap::new();
    let mut good = Performance::default();
    for _ in 0..30 {
        good.record_success(std::time::Duration::from_millis(100));
    }
    let mut bad = Performance::default();
    for _ in 0..30 {
        bad.record_failure();
    }
    history.insert(o[0].agent.clone(), good);
    history.insert(o[2].agent.clone(), bad);
    let weights: Vec<f64> = r
        .iter()
        .map(|m| performance::weight(m.score, history.get(&m.offer.agent)))
        .collect();
    let total: f64 = weights.iter().sum();

    let mut s = Selector::new(3);
    let trials = 30_000;
    let mut counts = vec![0usize; r.len()];
    for _ in 0..trials {
        let picked = s
            .select(&Selection::Weighted(n(1)), &query(), &r, &history, 1)
            .unwrap();
        counts[r.iter().position(|m| m == &picked[0]).unwrap()] += 1;
    }
    for (i, &c) in counts.iter().enumerate() {
        let expected = weights[i] / total;
        let observed = c as f64 / trials as f64;
        // Four standard deviations of a binomial proportion.
        let tolerance = 4.0 * (expected * (1.0 - expected) / trials as f64).sqrt();
        assert!(
            (observed - expected).abs() < tolerance,
            "agent {i}: {observed} vs {expected}"
        );
    }
    // Without replacement: never the same agent twice.
    let picked = s
        .select(&Selection::Weighted(n(3)), &query(), &r, &history, 3)
        .unwrap();
    assert_eq!(picked, r, "all three, in ranking order");
}
