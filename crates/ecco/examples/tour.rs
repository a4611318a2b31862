//! A tour of Ecco's foundation, offline and deterministic: identities,
//! capabilities, matching with explanations, the five selection strategies
//! and the eight aggregation strategies.
//!
//! Run it with `cargo run -p ecco --example tour`.

#![allow(clippy::print_stdout, missing_docs)]

use std::collections::BTreeMap;
use std::error::Error;
use std::num::NonZeroUsize;
use std::time::Duration;

use ecco::aggregation::{self, Cluster, Failure, FailureKind, Grouping};
use ecco::identity::{self, Domain, Passphrase};
use ecco::{
    AgentId, Aggregation, Identity, Matcher, Offer, Performance, Query, Response, Selection,
    Selector,
};
use serde_json::{Value, json};

const FLEET: [(&str, &str); 6] = [
    (
        "atlas",
        "llm/chat atlas@1.4.0 +summarize +french price=0.004 latency_ms=350 context_window=128000 language=[en, fr] region=eu meta.vendor=acme",
    ),
    (
        "boreal",
        "llm/chat boreal@1.1.0 +summarize price=0.002 latency_ms=900 context_window=32000 language=[en] region=eu",
    ),
    (
        "cirrus",
        "llm/chat cirrus@2.0.0 +summarize +french +fast price=0.009 latency_ms=120 context_window=64000 language=[en, fr, de] region=eu",
    ),
    (
        "delta",
        "llm/chat delta@1.2.0 +summarize +fast price=0.03 latency_ms=200 context_window=200000 language=[en] region=us",
    ),
    (
        "echo",
        "llm/chat echo@0.9.0 +summarize +french price=0.001 latency_ms=2500 context_window=16000 language=[fr] region=eu",
    ),
    (
        "fjord",
        "tool/translate fjord@1.0.0 +french price=0.0005 language=[en, fr]",
    ),
];

const QUERY: &str = "llm/* +summarize ~french ~fast price<=0.01 context_window>=32000 language in [en, fr] version>=1.0 meta.vendor==acme";

fn main() -> Result<(), Box<dyn Error>> {
    identities()?;
    let offers = FLEET
        .iter()
        .map(|(agent, cap)| Ok(Offer::new(AgentId::new(*agent)?, cap.parse()?)))
        .collect::<Result<Vec<_>, Box<dyn Error>>>()?;
    matching(&offers)?;
    selection(&offers)?;
    aggregation()?;
    Ok(())
}

fn heading(title: &str) {
    println!(
        "\n== {title} {}",
        "=".repeat(70usize.saturating_sub(title.len()))
    );
}

fn identities() -> Result<(), Box<dyn Error>> {
    heading("Identity");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("identity.json");
    let pass = Passphrase::new("correct horse battery staple")?;
    let me = Identity::load_or_create(&path, Some(&pass))?;
    println!(
        "created an encrypted key file; this agent's id is {}",
        me.peer_id()
    );
    let again = Identity::load(&path, Some(&pass))?;
    println!(
        "loaded it back with the passphrase: same id? {}",
        again.peer_id() == me.peer_id()
    );
    let wrong = Passphrase::new("wrong")?;
    if let Err(e) = Identity::load(&path, Some(&wrong)) {
        println!("with a wrong passphrase: {e}");
    }
    const OFFER: Domain = Domain::from_static("ecco/tour/offer/v1");
    const VOTE: Domain = Domain::from_static("ecco/tour/vote/v1");
    let signature = me.sign(OFFER, b"I summarize for 0.004 a call");
    let valid = identity::verify_with_peer_id(
        &me.peer_id(),
        OFFER,
        b"I summarize for 0.004 a call",
        &signature,
    );
    let replayed = identity::verify_with_peer_id(
        &me.peer_id(),
        VOTE,
        b"I summarize for 0.004 a call",
        &signature,
    );
    println!(
        "signature checked from the peer id alone: {}",
        if valid.is_ok() { "valid" } else { "INVALID" }
    );
    println!(
        "the same signature in another domain: {}",
        if replayed.is_err() {
            "rejected"
        } else {
            "ACCEPTED"
        }
    );
    Ok(())
}

fn matching(offers: &[Offer]) -> Result<(), Box<dyn Error>> {
    heading("Capabilities");
    for o in offers {
        println!("{:<7} {}", o.agent, o.capability);
    }

    heading("Matching");
    let query: Query = QUERY.parse()?;
    println!("query: {query}\n");
    let matcher = Matcher::default();
    println!("{:<5} {:<7} {:<28} score", "rank", "agent", "capability");
    for (i, m) in matcher.rank(&query, offers).iter().enumerate() {
        let c = &m.offer.capability;
        println!(
            "{:<5} {:<7} {:<28} {:.3}",
            i + 1,
            m.offer.agent,
            format!("{} {}@{}", c.kind(), c.name(), c.version()),
            m.score
        );
    }
    println!("\nWhy was each agent picked, or not?");
    for e in matcher.explain_all(&query, offers) {
        println!("{e}");
    }
    Ok(())
}

fn selection(offers: &[Offer]) -> Result<(), Box<dyn Error>> {
    heading("Selection");
    let query: Query = "llm/* +summarize".parse()?;
    let ranked = Matcher::default().rank(&query, offers);
    let mut selector = Selector::new(2026);
    let mut history = BTreeMap::new();
    let mut reliable = Performance::default();
    let mut flaky = Performance::default();
    for _ in 0..20 {
        reliable.record_success(Duration::from_millis(150));
        flaky.record_failure();
    }
    history.insert(AgentId::new("cirrus")?, reliable);
    history.insert(AgentId::new("delta")?, flaky);

    let two = NonZeroUsize::new(2).ok_or("2 is not zero")?;
    let one = NonZeroUsize::MIN;
    let names = |picked: &[ecco::Match<'_>]| {
        picked
            .iter()
            .map(|m| m.offer.agent.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("candidates for `{query}`: {}", names(&ranked));
    for s in [Selection::All, Selection::TopN(two)] {
        println!(
            "{:<14} -> {}",
            s.to_string(),
            names(&selector.select(&s, &query, &ranked, &history, 1)?)
        );
    }
    for call in 1..=3 {
        let picked = selector.select(&Selection::RoundRobin(one), &query, &ranked, &history, 1)?;
        println!(
            "{:<14} -> {} (call {call})",
            Selection::RoundRobin(one).to_string(),
            names(&picked)
        );
    }
    for s in [Selection::Random(two), Selection::Weighted(two)] {
        println!(
            "{:<14} -> {}",
            s.to_string(),
            names(&selector.select(&s, &query, &ranked, &history, 1)?)
        );
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..1000 {
        for m in selector.select(&Selection::Weighted(one), &query, &ranked, &history, 1)? {
            *counts.entry(m.offer.agent.to_string()).or_default() += 1;
        }
    }
    println!(
        "weighted:1 over 1000 calls (cirrus is reliable and fast, delta keeps failing): {counts:?}"
    );
    match selector.select(&Selection::All, &query, &ranked, &history, 9) {
        Ok(_) => println!("min_agents 9: unexpectedly satisfied"),
        Err(e) => println!("min_agents 9: {e}"),
    }
    Ok(())
}

fn aggregation() -> Result<(), Box<dyn Error>> {
    heading("Aggregation");
    println!("question: what is the capital of France?");
    let answer =
        |agent: &str, text: &str, score: f64, ms: u64| -> Result<Response, Box<dyn Error>> {
            Ok(Response::answer(AgentId::new(agent)?, json!(text))
                .with_score(score)
                .with_latency(Duration::from_millis(ms)))
        };
    let responses = vec![
        answer("cirrus", "The capital of France is Paris.", 0.92, 120)?,
        answer("atlas", "Paris", 0.81, 350)?,
        answer("delta", "Lyon", 0.75, 200)?,
        answer("boreal", "paris.", 0.55, 900)?,
        Response::failed(
            AgentId::new("echo")?,
            Failure::new(FailureKind::Timeout, "no answer within 2s"),
        ),
    ];
    for r in &responses {
        match r.value() {
            Some(v) => println!(
                "  {:<7} answered {v} in {:?}",
                r.agent,
                r.latency.unwrap_or_default()
            ),
            None => println!("  {:<7} failed", r.agent),
        }
    }
    let shortest = Aggregation::custom(|responses: &[Response], _: &[Cluster]| {
        responses
            .iter()
            .filter_map(Response::value)
            .min_by_key(|v| v.as_str().map_or(usize::MAX, str::len))
            .cloned()
    });
    let exact = Grouping::exact();
    let lexical = Grouping::lexical(0.5)?;
    let runs: Vec<(Aggregation, &Grouping, &str)> = vec![
        ("majority-vote".parse()?, &exact, "exact"),
        ("majority-vote".parse()?, &lexical, "lexical"),
        ("weighted-vote".parse()?, &lexical, "lexical"),
        ("best-score".parse()?, &lexical, "lexical"),
        ("ensemble".parse()?, &lexical, "lexical"),
        ("consensus-threshold:0.8".parse()?, &lexical, "lexical"),
        ("first-response".parse()?, &lexical, "lexical"),
        ("longest".parse()?, &lexical, "lexical"),
        (shortest, &lexical, "lexical"),
    ];
    println!(
        "\n{:<26} {:<8} {:<14} {:<11} {:<6} agreeing",
        "strategy", "grouping", "verdict", "confidence", "agree"
    );
    for (strategy, grouping, label) in runs {
        let c = aggregation::aggregate(&strategy, grouping, responses.clone());
        let verdict = match &c.verdict {
            aggregation::Verdict::Decided => "decided".to_owned(),
            aggregation::Verdict::NoConsensus { .. } => "no consensus".to_owned(),
            other => format!("{other:?}"),
        };
        let agreeing: Vec<String> = c.agreeing.iter().map(ToString::to_string).collect();
        println!(
            "{:<26} {:<8} {:<14} {:<11.2} {:<6} {}",
            c.strategy,
            label,
            verdict,
            c.confidence,
            c.agreement,
            agreeing.join(", ")
        );
        println!(
            "    answer: {}",
            c.answer
                .as_ref()
                .map_or("(none)".to_owned(), Value::to_string)
        );
    }
    Ok(())
}
