use super::*;
use crate::AgentId;

fn offer(agent: &str, capability: &str) -> Offer {
    Offer::new(AgentId::new(agent).unwrap(), capability.parse().unwrap())
}

fn q(text: &str) -> Query {
    text.parse().unwrap()
}

fn fleet() -> Vec<Offer> {
    vec![
        offer(
            "cheap",
            "llm/chat small@1.2.0 +summarize price=0.002 latency_ms=800 language=[en] region=eu meta.vendor=acme",
        ),
        offer(
            "dear",
            "llm/chat large@2.0.0 +summarize +french price=0.009 latency_ms=300 language=[en, fr] region=eu meta.vendor=other",
        ),
        offer(
            "pricey",
            "llm/chat huge@2.1.0 +summarize +french price=0.05 language=[en, fr] region=us",
        ),
        offer("translator", "tool/translate tr@1.0.0 +french price=0.001"),
        offer("no-price", "llm/chat mystery@1.0.0 +summarize"),
    ]
}

fn ids<'a>(ranked: &[Match<'a>]) -> Vec<&'a str> {
    ranked.iter().map(|m| m.offer.agent.as_str()).collect()
}

#[test]
fn hard_filters_exclude() {
    let offers = fleet();
    let m = Matcher::default();
    assert_eq!(
        ids(&m.rank(&q("llm/* +summarize price<=0.01"), &offers)),
        ["cheap", "dear"]
    );
    assert_eq!(
        ids(&m.rank(&q("llm/chat +french"), &offers)),
        ["dear", "pricey"]
    );
    assert_eq!(
        ids(&m.rank(&q("* language in [fr]"), &offers)),
        ["dear", "pricey"]
    );
    assert_eq!(ids(&m.rank(&q("llm/* region == us"), &offers)), ["pricey"]);
    assert_eq!(
        ids(&m.rank(&q("llm/* version ^2"), &offers)),
        ["dear", "pricey"]
    );
    assert_eq!(
        ids(&m.rank(&q("llm/* +meta.vendor == acme"), &offers)),
        ["cheap"]
    );
    assert!(m.rank(&q("embedding/*"), &offers).is_empty());
}

#[test]
fn cheaper_and_faster_score_higher_where_asked() {
    let offers = fleet();
    let m = Matcher::default();
    let ranked = m.rank(&q("llm/* price<=0.01"), &offers);
    assert_eq!(ids(&ranked), ["cheap", "dear"]);
    assert!(ranked[0].score > ranked[1].score);
    // Asking for speed instead reverses the order.
    let ranked = m.rank(&q("llm/* latency_ms<=1000"), &offers);
    assert_eq!(ids(&ranked), ["dear", "cheap"]);
}

#[test]
fn preferred_features_and_metadata_raise_the_score() {
    let offers = fleet();
    let m = Matcher::default();
    let ranked = m.rank(&q("llm/* ~french"), &offers);
    assert_eq!(ids(&ranked)[..2], ["dear", "pricey"]);
    assert_eq!(ranked[0].score, 1.0);
    assert_eq!(ranked[2].score, 0.0);
    let ranked = m.rank(&q("llm/* meta.vendor == acme"), &offers);
    assert_eq!(ranked[0].offer.agent.as_str(), "cheap");
    assert_eq!(ranked.len(), 4, "soft metadata filters do not exclude");
}

#[test]
fn ties_break_on_identity_and_nothing_to_score_scores_one() {
    let offers = fleet();
    let ranked = Matcher::default().rank(&q("llm/*"), &offers);
    assert_eq!(ids(&ranked), ["cheap", "dear", "no-price", "pricey"]);
    assert!(ranked.iter().all(|m| m.score == 1.0));
}

#[test]
fn rank_top_agrees_with_rank() {
    let offers = fleet();
    let m = Matcher::default();
    let query = q("* ~french ~summarize");
    let all = m.rank(&query, &offers);
    for k in 0..=offers.len() + 1 {
        let top = m.rank_top(&query, &offers, k);
        assert_eq!(top, all[..k.min(all.len())], "k = {k}");
    }
}

#[test]
fn a_match_leads_back_to_its_position_in_the_index() {
    let offers = fleet();
    let index = Index::new(offers.clone());
    for m in Matcher::default().rank_in(&index, &q("*")) {
        let i = index.position_of(m.offer).unwrap();
        assert_eq!(&index.offers()[i], m.offer);
    }
    // An equal offer that lives elsewhere is not the index's.
    assert_eq!(index.position_of(&offers[0]), None);
    assert_eq!(Index::default().position_of(&offers[0]), None);
}

#[test]
fn weights_change_the_balance() {
    let offers = fleet();
    let query = q("llm/* ~french price<=0.01");
    let features_only = Matcher::new(Weights::new(1.0, 0.0, 0.0).unwrap());
    assert_eq!(ids(&features_only.rank(&query, &offers)), ["dear", "cheap"]);
    let price_only = Matcher::new(Weights::new(0.0, 1.0, 0.0).unwrap());
    assert_eq!(ids(&price_only.rank(&query, &offers)), ["cheap", "dear"]);
    assert!(Weights::new(-1.0, 1.0, 1.0).is_err());
    assert!(Weights::new(0.0, 0.0, 0.0).is_err());
    assert!(Weights::new(f64::NAN, 1.0, 1.0).is_err());
}

#[test]
fn explain_lists_every_reason() {
    let offers = fleet();
    let m = Matcher::default();
    let query = q("llm/* +french price<=0.01 region==eu version ^2 +meta.vendor==acme");
    let e = m.explain(&query, &offers[2]);
    let Verdict::Excluded { reasons } = &e.verdict else {
        panic!("pricey should be excluded: {e}");
    };
    let text: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "`price <= 0.01` fails: the capability has 0.05",
            "`region == eu` fails: the capability has \"us\"",
            "`+meta.vendor == acme` fails: the metadata has no such path",
        ]
    );
    let e = m.explain(&query, &offers[3]);
    let Verdict::Excluded { reasons } = &e.verdict else {
        panic!()
    };
    assert!(matches!(&reasons[0], Exclusion::Type { actual, .. } if actual == "tool/translate"));
    let e = m.explain(&query, &offers[4]);
    let Verdict::Excluded { reasons } = &e.verdict else {
        panic!()
    };
    assert!(reasons.contains(&Exclusion::MissingConstraint {
        constraint: "price <= 0.01".into()
    }));
    assert!(
        reasons
            .iter()
            .any(|r| matches!(r, Exclusion::Version { actual, .. } if actual == "1.0.0"))
    );

    let e = m.explain(&q("* region < 3"), &offers[0]);
    let Verdict::Excluded { reasons } = &e.verdict else {
        panic!()
    };
    assert_eq!(
        reasons[0].to_string(),
        "`region < 3` cannot compare the capability's value, which is a string"
    );
}

#[test]
fn explain_shows_how_a_score_was_made() {
    let offers = fleet();
    let m = Matcher::default();
    let query = q("llm/* ~french ~fast price<=0.01 meta.vendor==acme");
    let e = m.explain(&query, &offers[1]);
    let Verdict::Scored(b) = &e.verdict else {
        panic!("{e}")
    };
    assert_eq!(b.preferred_present, ["french"]);
    assert_eq!(b.preferred_missing, ["fast"]);
    assert_eq!(b.features, Some(0.5));
    assert_eq!(b.margins.len(), 1);
    assert_eq!(b.metadata, Some(0.0));
    assert_eq!(b.metadata_disagreed, ["meta.vendor == acme"]);
    assert_eq!(Some(b.score), m.score(&query, &offers[1].capability));
    let text = e.to_string();
    assert!(
        text.starts_with("dear llm/chat large@2.0.0: score "),
        "{text}"
    );
    assert!(
        text.contains("has [\"french\"], lacks [\"fast\"]"),
        "{text}"
    );

    let all = m.explain_all(&query, &offers);
    assert_eq!(all.len(), offers.len());
    assert!(matches!(all[0].verdict, Verdict::Scored(_)));
    assert!(matches!(
        all.last().unwrap().verdict,
        Verdict::Excluded { .. }
    ));
}
