//! Property tests: determinism, ordering invariants, round trips and fairness.

// Generators build known-valid values; a failure there is a bug in the test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use ecco_core::aggregation::{self, Failure, FailureKind, Grouping, Verdict};
use ecco_core::matcher::{Index, Verdict as Explained};
use ecco_core::{
    AgentId, Aggregation, Capability, Matcher, Offer, Query, Response, Selection, Selector,
};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::test_runner::FileFailurePersistence;
use serde_json::json;

const TYPES: [&str; 5] = [
    "llm/chat",
    "llm/code",
    "llm/chat/fast",
    "tool/translate",
    "embedding/text",
];
const FEATURES: [&str; 5] = ["summarize", "french", "code", "vision", "fast"];
const REGIONS: [&str; 3] = ["eu", "us", "ap"];
const LANGUAGES: [&str; 4] = ["en", "fr", "de", "ja"];

fn capability() -> impl Strategy<Value = Capability> {
    (
        select(&TYPES[..]),
        select(&["alpha", "beta", "gamma"][..]),
        (0u64..3, 0u64..3, 0u64..3),
        subsequence(&FEATURES[..], 0..=5),
        proptest::option::of(0.0f64..0.05),
        proptest::option::of(10u32..3000),
        proptest::option::of(select(&REGIONS[..])),
        subsequence(&LANGUAGES[..], 0..=4),
        proptest::option::of(any::<bool>()),
        proptest::option::of(select(&["acme", "globex"][..])),
    )
        .prop_map(
            |(
                kind,
                name,
                (ma, mi, pa),
                features,
                price,
                latency,
                region,
                langs,
                streaming,
                vendor,
            )| {
                let mut b =
                    Capability::builder(kind, name, format!("{ma}.{mi}.{pa}")).features(features);
                if let Some(p) = price {
                    b = b.constraint("price", p);
                }
                if let Some(l) = latency {
                    b = b.constraint("latency_ms", i64::from(l));
                }
                if let Some(r) = region {
                    b = b.constraint("region", r);
                }
                if !langs.is_empty() {
                    b = b.constraint("language", langs);
                }
                if let Some(s) = streaming {
                    b = b.constraint("streaming", s);
                }
                if let Some(v) = vendor {
                    b = b.meta("vendor", v);
                }
                b.build().unwrap()
            },
        )
}

fn query() -> impl Strategy<Value = Query> {
    (
        select(&["*", "llm/*", "llm/chat", "tool/*", "embedding/text"][..]),
        subsequence(&FEATURES[..], 0..=2),
        subsequence(&FEATURES[..], 0..=3),
        proptest::option::of((select(&["<", "<=", ">", ">="][..]), 0.0f64..0.05)),
        proptest::option::of((select(&["<=", ">="][..]), 10u32..3000)),
        proptest::option::of((select(&["==", "!="][..]), select(&REGIONS[..]))),
        proptest::option::of((
            select(&["in", "not in"][..]),
            subsequence(&LANGUAGES[..], 1..=2),
        )),
        proptest::option::of(select(&["^1", ">=1.1", "<2", "~0.2"][..])),
        proptest::option::of((any::<bool>(), select(&["acme", "globex"][..]))),
    )
        .prop_map(
            |(kind, required, preferred, price, latency, region, langs, version, vendor)| {
                let mut text = kind.to_owned();
                for f in &required {
                    text += &format!(" +{f}");
                }
                for f in preferred.iter().filter(|f| !required.contains(f)) {
                    text += &format!(" ~{f}");
                }
                if let Some((op, v)) = price {
                    text += &format!(" price {op} {v}");
                }
                if let Some((op, v)) = latency {
                    text += &format!(" latency_ms{op}{v}");
                }
                if let Some((op, v)) = region {
                    text += &format!(" region {op} {v}");
                }
                if let Some((op, v)) = langs {
                    text += &format!(" language {op} [{}]", v.join(", "));
                }
                if let Some(v) = version {
                    text += &format!(" version \"{v}\"");
                }
                if let Some((hard, v)) = vendor {
                    text += &format!(" {}meta.vendor == {v}", if hard { "+" } else { "" });
                }
                text.parse().unwrap()
            },
        )
}

fn offers() -> impl Strategy<Value = Vec<Offer>> {
    proptest::collection::vec(capability(), 0..40).prop_map(|caps| {
        caps.into_iter()
            .enumerate()
            .map(|(i, c)| Offer::new(AgentId::new(format!("agent-{i:03}")).unwrap(), c))
            .collect()
    })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/properties.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

fn summary(ranked: &[ecco_core::Match<'_>]) -> Vec<(String, f64)> {
    ranked
        .iter()
        .map(|m| (m.offer.agent.to_string(), m.score))
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ranking_is_a_deterministic_total_order(offers in offers(), q in query(), seed in any::<u64>()) {
        let m = Matcher::default();
        let ranked = m.rank(&q, &offers);
        for pair in ranked.windows(2) {
            prop_assert!(pair[0].cmp_rank(&pair[1]).is_lt());
        }
        for r in &ranked {
            prop_assert!((0.0..=1.0).contains(&r.score));
        }
        let survivors = offers.iter().filter(|o| m.score(&q, &o.capability).is_some()).count();
        prop_assert_eq!(ranked.len(), survivors);

        // The same offers in another order rank the same.
        let mut shuffled: Vec<&Offer> = offers.iter().collect();
        let len = shuffled.len().max(1);
        shuffled.rotate_left((seed as usize) % len);
        shuffled.reverse();
        prop_assert_eq!(summary(&m.rank(&q, shuffled)), summary(&ranked));

        // The partial ranking agrees with the full one.
        let k = (seed % 8) as usize;
        prop_assert_eq!(m.rank_top(&q, &offers, k), ranked[..k.min(ranked.len())].to_vec());

        // The columnar index ranks exactly as the plain matcher, scores included to the bit.
        let index = Index::new(offers.clone());
        prop_assert_eq!(summary(&m.rank_in(&index, &q)), summary(&ranked));
        prop_assert_eq!(summary(&m.rank_top_in(&index, &q, k)), summary(&ranked[..k.min(ranked.len())]));
    }

    #[test]
    fn explanations_agree_with_the_matcher(offers in offers(), q in query()) {
        let m = Matcher::default();
        for o in &offers {
            let e = m.explain(&q, o);
            match (&e.verdict, m.score(&q, &o.capability)) {
                (Explained::Scored(b), Some(score)) => prop_assert_eq!(b.score, score),
                (Explained::Excluded { reasons }, None) => prop_assert!(!reasons.is_empty()),
                (v, s) => prop_assert!(false, "explain says {:?} but score is {:?}", v, s),
            }
        }
    }

    #[test]
    fn text_and_json_forms_round_trip(c in capability(), q in query()) {
        prop_assert_eq!(&c.to_string().parse::<Capability>().unwrap(), &c);
        prop_assert_eq!(&q.to_string().parse::<Query>().unwrap(), &q);
        let c_json = serde_json::to_string(&c).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Capability>(&c_json).unwrap(), &c);
        let q_json = serde_json::to_string(&q).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Query>(&q_json).unwrap(), &q);
    }

    #[test]
    fn round_robin_serves_everyone_equally(count in 1usize..12, per_call in 1usize..12) {
        let per_call = per_call.min(count);
        let offers: Vec<Offer> = (0..count)
            .map(|i| Offer::new(AgentId::new(format!("a{i}")).unwrap(), "x n@1.0.0".parse().unwrap()))
            .collect();
        let q: Query = "x".parse().unwrap();
        let ranked = Matcher::default().rank(&q, &offers);
        let mut selector = Selector::new(0);
        let mut served: BTreeMap<String, usize> = BTreeMap::new();
        // `count` calls of `per_call` each serve every agent exactly `per_call` times.
        let selection = Selection::RoundRobin(NonZeroUsize::new(per_call).unwrap());
        for _ in 0..count {
            for m in selector.select(&selection, &q, &ranked, &(), 1).unwrap() {
                *served.entry(m.offer.agent.to_string()).or_default() += 1;
            }
        }
        prop_assert_eq!(served.len(), count);
        prop_assert!(served.values().all(|&n| n == per_call), "{:?}", served);
    }

    #[test]
    fn selections_are_distinct_subsets_in_rank_order(offers in offers(), q in query(), k in 1usize..6, seed in any::<u64>()) {
        let ranked = Matcher::default().rank(&q, &offers);
        let k = NonZeroUsize::new(k).unwrap();
        let mut selector = Selector::new(seed);
        for s in [Selection::All, Selection::TopN(k), Selection::RoundRobin(k), Selection::Random(k), Selection::Weighted(k)] {
            let picked = selector.select(&s, &q, &ranked, &(), 0).unwrap();
            let expected = s.count().unwrap_or(ranked.len()).min(ranked.len());
            prop_assert_eq!(picked.len(), expected);
            let positions: Vec<usize> = picked
                .iter()
                .map(|p| ranked.iter().position(|r| r == p).unwrap())
                .collect();
            prop_assert!(positions.windows(2).all(|w| w[0] < w[1]), "{} {:?}", s, positions);
        }
    }

    #[test]
    fn votes_do_not_depend_on_arrival_order(
        answers in proptest::collection::vec(proptest::option::of(select(&ANSWERS[..])), 0..12),
        scores in proptest::collection::vec(0.0f64..1.0, 12),
        rotation in 0usize..12,
        lexical in any::<bool>(),
    ) {
        let responses = responses_from(&answers, &scores);
        let grouping = if lexical { Grouping::lexical(0.5).unwrap() } else { Grouping::exact() };
        let mut permuted = responses.clone();
        let len = permuted.len().max(1);
        permuted.rotate_left(rotation % len);
        permuted.reverse();
        let successes = answers.iter().filter(|a| a.is_some()).count();

        for strategy in [Aggregation::MajorityVote, Aggregation::WeightedVote, Aggregation::ConsensusThreshold(0.6), Aggregation::BestScore, Aggregation::Longest] {
            let a = aggregation::aggregate(&strategy, &grouping, responses.clone());
            let b = aggregation::aggregate(&strategy, &grouping, permuted.clone());
            prop_assert_eq!(&a.answer, &b.answer);
            prop_assert_eq!(&a.agreeing, &b.agreeing);
            prop_assert_eq!(&a.verdict, &b.verdict);
            prop_assert!((0.0..=1.0 + 1e-9).contains(&a.confidence));
            prop_assert!(a.agreement <= successes);
            prop_assert_eq!(a.clusters.iter().map(|c| c.agents.len()).sum::<usize>(), successes);
            prop_assert_eq!(a.failures.len(), answers.len() - successes);
            if successes == 0 {
                prop_assert!(matches!(a.verdict, Verdict::AllFailed | Verdict::NoResponses));
            }
        }
    }
}

fn responses_from(answers: &[Option<&str>], scores: &[f64]) -> Vec<Response> {
    answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let agent = AgentId::new(format!("agent-{i}")).unwrap();
            match a {
                Some(text) => {
                    Response::answer(agent, json!(text)).with_score(scores[i % scores.len()])
                }
                None => Response::failed(agent, Failure::new(FailureKind::Timeout, "late")),
            }
        })
        .collect()
}

const ANSWERS: [&str; 5] = ["Paris", "paris.", "London", "Rome", "The capital is Paris"];

proptest! {
    #![proptest_config(config())]

    /// When the aggregator says "decided" early, no continuation changes the answer.
    #[test]
    fn early_decisions_are_final(
        answers in proptest::collection::vec(proptest::option::of(select(&ANSWERS[..])), 1..12),
        scores in proptest::collection::vec(0.0f64..1.0, 1..12),
        threshold in 0.3f64..1.0,
        lexical in any::<bool>(),
    ) {
        let responses = responses_from(&answers, &scores);
        let grouping = if lexical { Grouping::lexical(0.5).unwrap() } else { Grouping::exact() };
        for strategy in [Aggregation::MajorityVote, Aggregation::ConsensusThreshold(threshold), Aggregation::FirstResponse] {
            let mut agg = aggregation::Aggregator::new(strategy.clone())
                .grouping(grouping.clone())
                .expect(responses.len());
            let mut early = None;
            for (k, r) in responses.iter().enumerate() {
                if agg.push(r.clone()) == aggregation::Progress::Decided {
                    early = Some((k, agg.clone().finish()));
                    break;
                }
            }
            let full = aggregation::aggregate(&strategy, &grouping, responses.clone());
            match early {
                Some((k, decided)) if k + 1 < responses.len() => {
                    prop_assert_eq!(&decided.verdict, &full.verdict, "{} decided at {}", strategy, k);
                    match (&decided.answer, &full.answer) {
                        (Some(a), Some(b)) => prop_assert!(grouping.agree(a, b), "{}: {} then {}", strategy, a, b),
                        (a, b) => prop_assert_eq!(a, b),
                    }
                }
                // Decided only with the last response, or never: the final result is the full one.
                _ => prop_assert_eq!(&agg.finish(), &full),
            }
        }
    }

    /// Feeding responses one at a time gives the same result as aggregating the list.
    #[test]
    fn incremental_equals_batch_and_first_response_is_first(
        answers in proptest::collection::vec(proptest::option::of(select(&ANSWERS[..])), 0..12),
        scores in proptest::collection::vec(0.0f64..1.0, 1..12),
    ) {
        let responses = responses_from(&answers, &scores);
        for strategy in [Aggregation::Ensemble, Aggregation::BestScore, Aggregation::Longest, Aggregation::FirstResponse, Aggregation::WeightedVote] {
            let mut agg = aggregation::Aggregator::new(strategy.clone());
            for r in &responses {
                agg.push(r.clone());
            }
            prop_assert_eq!(agg.finish(), aggregation::aggregate(&strategy, &Grouping::exact(), responses.clone()));
        }
        let first = aggregation::aggregate(&Aggregation::FirstResponse, &Grouping::exact(), responses.clone());
        let expected = responses.iter().find_map(|r| r.value().cloned());
        prop_assert_eq!(first.answer, expected);
        // The ensemble keeps every successful answer, attributed.
        let ensemble = aggregation::aggregate(&Aggregation::Ensemble, &Grouping::exact(), responses.clone());
        let attributed: usize = ensemble
            .answer
            .as_ref()
            .and_then(|a| a.as_array())
            .map_or(0, |parts| parts.iter().map(|p| p["agents"].as_array().map_or(0, Vec::len)).sum());
        prop_assert_eq!(attributed, answers.iter().filter(|a| a.is_some()).count());
    }
}
