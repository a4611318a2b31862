use std::time::Duration;

use serde_json::json;

use super::*;
use crate::Performance;

fn id(s: &str) -> AgentId {
    AgentId::new(s).unwrap()
}

fn ok(agent: &str, value: Value) -> Response {
    Response::answer(id(agent), value).with_score(0.5)
}

fn failed(agent: &str) -> Response {
    Response::failed(
        id(agent),
        Failure::new(FailureKind::Timeout, "no answer in 5s"),
    )
}

fn run(strategy: &str, responses: Vec<Response>) -> Consensus {
    aggregate(&strategy.parse().unwrap(), &Grouping::exact(), responses)
}

fn agents(ids: &[&str]) -> Vec<AgentId> {
    ids.iter().map(|s| id(s)).collect()
}

#[test]
fn majority_vote_reports_everything() {
    let c = run(
        "majority-vote",
        vec![
            ok("a", json!("Paris")),
            failed("e"),
            ok("b", json!("paris.")),
            ok("c", json!("PARIS")),
            ok("d", json!("London")),
        ],
    );
    assert_eq!(c.verdict, Verdict::Decided);
    assert_eq!(c.answer, Some(json!("Paris")));
    assert_eq!(c.agreement, 3);
    assert_eq!(c.agreeing, agents(&["a", "b", "c"]));
    assert!((c.confidence - 0.75).abs() < 1e-12);
    assert_eq!(c.failures.len(), 1);
    assert_eq!(c.failures[0].agent, id("e"));
    assert_eq!(c.failures[0].failure.kind, FailureKind::Timeout);
    assert_eq!(c.clusters.len(), 2);
    assert_eq!(c.agents.len(), 5);
    assert!(!c.agents[1].ok);
}

#[test]
fn lexical_grouping_lets_paraphrases_vote_together() {
    let responses = vec![
        ok("a", json!("Paris")),
        ok("b", json!("paris.")),
        ok("c", json!("The capital is Paris")),
        ok("d", json!("London")),
        ok("e", json!("It is London, I believe")),
        ok("f", json!("London")),
    ];
    let exact = aggregate(
        &Aggregation::MajorityVote,
        &Grouping::exact(),
        responses.clone(),
    );
    // Exact: {Paris, paris.} and {London, London} tie at 2; the tie goes to the smaller agent id.
    assert_eq!(exact.agreement, 2);
    assert_eq!(exact.agreeing, agents(&["a", "b"]));

    let lexical = aggregate(
        &Aggregation::MajorityVote,
        &Grouping::lexical(0.5).unwrap(),
        responses,
    );
    assert_eq!(lexical.clusters.len(), 2);
    assert_eq!(lexical.agreement, 3);
    assert_eq!(lexical.agreeing, agents(&["a", "b", "c"]));
    assert_eq!(lexical.clusters[1].agents, agents(&["d", "e", "f"]));
    // The representative is the largest exact group within the cluster.
    assert_eq!(lexical.clusters[1].answer, json!("London"));
}

#[test]
fn weighted_vote_follows_weight_not_headcount() {
    let mut reliable = Performance::default();
    for _ in 0..50 {
        reliable.record_success(Duration::from_millis(20));
    }
    let mut flaky = Performance::default();
    for _ in 0..50 {
        flaky.record_failure();
    }
    let responses = vec![
        ok("a", json!("yes"))
            .with_score(0.2)
            .with_performance(flaky),
        ok("b", json!("yes"))
            .with_score(0.2)
            .with_performance(flaky),
        ok("c", json!("no"))
            .with_score(0.9)
            .with_performance(reliable),
    ];
    let majority = run("majority-vote", responses.clone());
    assert_eq!(majority.answer, Some(json!("yes")));
    let weighted = run("weighted-vote", responses);
    assert_eq!(weighted.answer, Some(json!("no")));
    assert_eq!(weighted.agreeing, agents(&["c"]));
    assert!(weighted.confidence > 0.5 && weighted.confidence <= 1.0);
}

#[test]
fn a_vote_says_when_a_tie_break_chose_its_answer() {
    let one_each = || vec![ok("b", json!("yes")), ok("a", json!("no"))];
    let tie = run("majority-vote", one_each());
    assert_eq!(tie.verdict, Verdict::Decided);
    // The documented tie-break: the smaller agent id.
    assert_eq!(tie.answer, Some(json!("no")));
    assert!(tie.tied);
    let at_half = run("consensus-threshold:0.5", one_each());
    assert_eq!(at_half.verdict, Verdict::Decided);
    assert!(at_half.tied);
    // Equal weights: same scores, no history.
    assert!(run("weighted-vote", one_each()).tied);

    let majority = run(
        "majority-vote",
        vec![
            ok("a", json!("no")),
            ok("b", json!("yes")),
            ok("c", json!("yes")),
        ],
    );
    assert_eq!(majority.answer, Some(json!("yes")));
    assert!(!majority.tied);
    // Two agents to one, but the one weighs more: not a tie either.
    let heavier = run(
        "weighted-vote",
        vec![
            ok("a", json!("no")).with_score(0.9),
            ok("b", json!("yes")).with_score(0.1),
            ok("c", json!("yes")).with_score(0.1),
        ],
    );
    assert!(!heavier.tied);
    assert!(!run("majority-vote", vec![ok("a", json!(1))]).tied);
    // Strategies that do not vote never report a tie.
    assert!(!run("first-response", one_each()).tied);
    assert!(!run("ensemble", one_each()).tied);
}

#[test]
fn best_score_picks_the_best_match_and_breaks_ties_by_latency() {
    let c = run(
        "best-score",
        vec![
            ok("a", json!("x"))
                .with_score(0.7)
                .with_latency(Duration::from_millis(30)),
            ok("b", json!("y"))
                .with_score(0.9)
                .with_latency(Duration::from_millis(90)),
            ok("c", json!("z"))
                .with_score(0.9)
                .with_latency(Duration::from_millis(10)),
            ok("d", json!("z")).with_score(0.1),
        ],
    );
    assert_eq!(c.answer, Some(json!("z")));
    assert_eq!(c.agreeing, agents(&["c", "d"]));
    assert!((c.confidence - 0.5).abs() < 1e-12);
}

#[test]
fn ensemble_keeps_every_answer_attributed_and_grouped() {
    let c = run(
        "ensemble",
        vec![
            ok("a", json!("x")),
            ok("b", json!("y")),
            ok("c", json!("X")),
            failed("d"),
        ],
    );
    let answer = c.answer.unwrap();
    let parts = answer.as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["answer"], json!("x"));
    assert_eq!(parts[0]["agents"], json!(["a", "c"]));
    assert_eq!(parts[1]["agents"], json!(["b"]));
    assert!((parts[0]["support"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(c.agreement, 2);
}

#[test]
fn consensus_threshold_edges() {
    let three_of_four = || {
        vec![
            ok("a", json!(1)),
            ok("b", json!(1.0)),
            ok("c", json!(1)),
            ok("d", json!(2)),
        ]
    };
    let at = run("consensus-threshold:0.75", three_of_four());
    assert_eq!(at.verdict, Verdict::Decided);
    assert_eq!(at.answer, Some(json!(1)));

    let above = run("consensus-threshold:0.76", three_of_four());
    assert_eq!(
        above.verdict,
        Verdict::NoConsensus {
            agreement: 0.75,
            threshold: 0.76
        }
    );
    assert_eq!(above.answer, None);
    assert_eq!(above.confidence, 0.75);
    // No consensus still carries every answer.
    assert_eq!(
        above.clusters.iter().map(|c| c.agents.len()).sum::<usize>(),
        4
    );

    // An unchecked NaN threshold never claims consensus.
    let nan = aggregate(
        &Aggregation::ConsensusThreshold(f64::NAN),
        &Grouping::exact(),
        three_of_four(),
    );
    assert!(matches!(nan.verdict, Verdict::NoConsensus { .. }));

    // Failures do not count against agreement.
    let with_failures = run(
        "consensus-threshold:1",
        vec![ok("a", json!("x")), failed("b"), failed("c")],
    );
    assert_eq!(with_failures.verdict, Verdict::Decided);
}

#[test]
fn first_response_takes_the_first_success_and_says_so_at_once() {
    let mut agg = Aggregator::new(Aggregation::FirstResponse).expect(3);
    assert_eq!(agg.push(failed("a")), Progress::Continue);
    assert_eq!(
        agg.push(ok("b", json!("late but first"))),
        Progress::Decided
    );
    let c = agg.finish();
    assert_eq!(c.answer, Some(json!("late but first")));
    assert_eq!(c.failures.len(), 1);
    assert_eq!(c.agents.len(), 2);
}

#[test]
fn longest_prefers_length_then_score() {
    let c = run(
        "longest",
        vec![
            ok("a", json!("short")),
            ok("b", json!("a much longer answer")).with_score(0.1),
            ok("c", json!("a much longer answer!")).with_score(0.1),
            ok("d", json!("twenty characters...")).with_score(0.9),
        ],
    );
    assert_eq!(c.answer, Some(json!("a much longer answer!")));
    // `b` and `c` normalize equal, so they agree.
    assert_eq!(c.agreeing, agents(&["b", "c"]));
}

#[test]
fn custom_rules_decide_and_agreement_is_measured() {
    let median = Aggregation::custom(|responses: &[Response], _: &[Cluster]| {
        let mut xs: Vec<f64> = responses
            .iter()
            .filter_map(|r| r.value()?.as_f64())
            .collect();
        xs.sort_by(f64::total_cmp);
        xs.get(xs.len() / 2).map(|&x| json!(x))
    });
    let c = aggregate(
        &median,
        &Grouping::exact(),
        vec![
            ok("a", json!(3)),
            ok("b", json!(10)),
            ok("c", json!(4)),
            ok("d", json!(4)),
        ],
    );
    assert_eq!(c.strategy, "custom");
    assert_eq!(c.answer, Some(json!(4.0)));
    assert_eq!(c.agreeing, agents(&["c", "d"]));

    let never = Aggregation::custom(|_: &[Response], _: &[Cluster]| None);
    let c = aggregate(&never, &Grouping::exact(), vec![ok("a", json!(1))]);
    assert!(matches!(c.verdict, Verdict::NoConsensus { .. }));
}

#[test]
fn all_failed_and_no_responses() {
    for strategy in [
        "majority-vote",
        "weighted-vote",
        "best-score",
        "ensemble",
        "consensus-threshold:0.5",
        "first-response",
        "longest",
    ] {
        let c = run(strategy, vec![failed("a"), failed("b")]);
        assert_eq!(c.verdict, Verdict::AllFailed, "{strategy}");
        assert_eq!(c.answer, None);
        assert_eq!(c.failures.len(), 2);
        assert_eq!(c.confidence, 0.0);
        let c = run(strategy, vec![]);
        assert_eq!(c.verdict, Verdict::NoResponses, "{strategy}");
    }
}

#[test]
fn votes_decide_early_once_a_majority_is_secured() {
    let mut agg = Aggregator::new(Aggregation::MajorityVote).expect(5);
    assert_eq!(agg.push(ok("a", json!("x"))), Progress::Continue);
    assert_eq!(agg.push(ok("b", json!("y"))), Progress::Continue);
    assert_eq!(agg.push(ok("c", json!("x"))), Progress::Continue);
    assert_eq!(agg.push(ok("d", json!("x"))), Progress::Decided);

    let mut strict = Aggregator::new(Aggregation::ConsensusThreshold(0.9)).expect(4);
    for agent in ["a", "b", "c"] {
        assert_eq!(strict.push(ok(agent, json!("x"))), Progress::Continue);
    }
    assert_eq!(strict.push(ok("d", json!("x"))), Progress::Decided);

    // Without an expected count only first-response decides early.
    let mut open = Aggregator::new(Aggregation::MajorityVote);
    for agent in ["a", "b", "c"] {
        assert_eq!(open.push(ok(agent, json!("x"))), Progress::Continue);
    }
}

#[test]
fn consensus_serializes_for_the_cli() {
    let c = run("majority-vote", vec![ok("a", json!("x")), failed("b")]);
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["verdict"]["kind"], "decided");
    assert_eq!(v["failures"][0]["failure"]["kind"], "timeout");
    assert_eq!(v["clusters"][0]["agents"], json!(["a"]));
}

#[test]
fn response_round_trips_through_json() {
    let r = ok("a", json!({"k": 1})).with_latency(Duration::from_millis(12));
    let back: Response = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}
