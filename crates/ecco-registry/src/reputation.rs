//! Global reputation: a pure function of the feedback received, on `[0, 100]`.
//!
//! For agent `a`, each rater `r` (never `a` itself) contributes one score and
//! one weight:
//!
//! - a report's score `s` is `1` for a success and `0` for a failure, averaged
//!   half and half with `(rating − 1) / 4` when it carries a star rating;
//! - a report decays with age: `d = 0.5 ^ (age / half_life)`;
//! - rater `r`'s score for `a` is the decay-weighted mean of its reports, and
//!   its weight is `trust(r) × min(1, Σ d)`: repeating reports never gives a
//!   rater more than one report's worth of weight;
//! - `trust(r) = newcomer_trust + (1 − newcomer_trust) × confidence(r) × score(r) / 100`,
//!   where `score(r)` and `confidence(r)` are `r`'s own reputation computed
//!   in a first pass in which every rater has `newcomer_trust`. A rater no one
//!   has rated has trust `newcomer_trust`;
//! - the crowd cap: the `newcomer_trust` part of every rater's weight, the
//!   part anyone gets for free, together weighs at most `crowd_weight` for
//!   one agent (scaled down in proportion when more); the trust a rater
//!   earned beyond it is not capped. Identities cost nothing, so without
//!   the cap an agent could issue receipts to a thousand fresh identities of
//!   its own and have them rate it.
//!
//! The reputation is a Bayesian average against a prior:
//!
//! ```text
//! score(a) = 100 × (prior_weight × prior / 100 + Σ_r w_r s_r) / (prior_weight + Σ_r w_r)
//! ```
//!
//! so that: it rises with good ratings; no rater moves it by more than
//! `100 / (prior_weight + 1)` points (16.7 with the defaults); a rater without
//! reputation moves it by at most `100 × newcomer_trust / (prior_weight + newcomer_trust)`
//! points (2.0); any number of raters without reputation together move it
//! by at most `100 × crowd_weight / (prior_weight + crowd_weight)` points
//! (16.7); and old feedback fades. These properties are tested below.
//!
//! What the cap does not stop: identities that rate one another first earn
//! a little trust each (at most `(1 − newcomer_trust) × crowd_weight /
//! (crowd_weight + prior_weight)`, 0.15, beyond the newcomer's 0.1), and
//! that earned part is not capped. A large enough ring still moves a score;
//! anchoring trust in raters the operator vouches for would close it.

use std::collections::HashMap;

use crate::wire::{Breakdown, Reputation};

/// One feedback report, as the formula sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Who reported.
    pub rater: String,
    /// Who was rated.
    pub agent: String,
    /// Whether the interaction succeeded.
    pub success: bool,
    /// A star rating, 1 to 5.
    pub rating: Option<u8>,
    /// When it was reported, Unix milliseconds.
    pub at_ms: i64,
}

/// The formula's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// The score of an agent without feedback, on `[0, 100]`.
    pub prior: f64,
    /// How many fully trusted raters the prior weighs as.
    pub prior_weight: f64,
    /// Age at which a report counts half, in milliseconds.
    pub half_life_ms: f64,
    /// The trust of a rater no one has rated, on `(0, 1]`.
    pub newcomer_trust: f64,
    /// The most weight the `newcomer_trust` parts of all raters of one
    /// agent carry together, in fully trusted raters.
    pub crowd_weight: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            prior: 50.0,
            prior_weight: 5.0,
            half_life_ms: 30.0 * 24.0 * 3600.0 * 1000.0,
            newcomer_trust: 0.1,
            crowd_weight: 1.0,
        }
    }
}

/// Reputations of every agent that received feedback, keyed by peer id.
/// An agent absent from the map has [`Book::unrated`].
#[derive(Debug, Clone, Default)]
pub struct Book {
    params: Params,
    scores: HashMap<String, Reputation>,
}

impl Book {
    /// Computes every reputation from all reports at time `now_ms`.
    #[must_use]
    pub fn compute(reports: &[Report], now_ms: i64, params: Params) -> Self {
        let first = pass(reports, now_ms, &params, &|_| params.newcomer_trust);
        let trust = |rater: &str| match first.get(rater) {
            Some(rep) => {
                params.newcomer_trust
                    + (1.0 - params.newcomer_trust) * rep.breakdown.confidence * rep.score / 100.0
            }
            None => params.newcomer_trust,
        };
        let scores = pass(reports, now_ms, &params, &trust);
        Self { params, scores }
    }

    /// The reputation of `agent`.
    #[must_use]
    pub fn get(&self, agent: &str) -> Reputation {
        self.scores
            .get(agent)
            .cloned()
            .unwrap_or_else(|| self.unrated())
    }

    /// The score of `agent` on `[0, 100]`.
    #[must_use]
    pub fn score(&self, agent: &str) -> f64 {
        self.scores
            .get(agent)
            .map_or(self.params.prior, |r| r.score)
    }

    /// The reputation of an agent without feedback: the prior.
    #[must_use]
    pub fn unrated(&self) -> Reputation {
        Reputation {
            score: self.params.prior,
            breakdown: Breakdown {
                prior: self.params.prior,
                prior_weight: self.params.prior_weight,
                evidence_weight: 0.0,
                evidence_score: None,
                confidence: 0.0,
                feedback: 0,
                raters: 0,
                success_rate: None,
                mean_rating: None,
            },
        }
    }

    /// Agents with feedback, best first (ties by peer id), at most `n`.
    #[must_use]
    pub fn top(&self, n: usize) -> Vec<(String, f64)> {
        let mut all: Vec<_> = self
            .scores
            .iter()
            .map(|(a, r)| (a.clone(), r.score))
            .collect();
        all.sort_by(|x, y| y.1.total_cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        all.truncate(n);
        all
    }
}

/// One rater's reports about one agent.
#[derive(Default)]
struct PerRater {
    weighted_score: f64,
    decay_sum: f64,
}

#[derive(Default)]
struct PerAgent<'a> {
    raters: HashMap<&'a str, PerRater>,
    feedback: u64,
    successes: u64,
    rating_sum: u64,
    ratings: u64,
}

fn pass(
    reports: &[Report],
    now_ms: i64,
    params: &Params,
    trust: &dyn Fn(&str) -> f64,
) -> HashMap<String, Reputation> {
    let mut agents: HashMap<&str, PerAgent<'_>> = HashMap::new();
    for report in reports.iter().filter(|r| r.rater != r.agent) {
        let entry = agents.entry(report.agent.as_str()).or_default();
        entry.feedback += 1;
        entry.successes += u64::from(report.success);
        if let Some(stars) = report.rating {
            entry.rating_sum += u64::from(stars.clamp(1, 5));
            entry.ratings += 1;
        }
        let age = (now_ms - report.at_ms).max(0) as f64;
        let decay = 0.5f64.powf(age / params.half_life_ms);
        let rater = entry.raters.entry(report.rater.as_str()).or_default();
        rater.weighted_score += decay * report_score(report);
        rater.decay_sum += decay;
    }
    agents
        .into_iter()
        .map(|(agent, per)| {
            let base = params.newcomer_trust;
            let crowd: f64 = per
                .raters
                .values()
                .map(|r| base * r.decay_sum.min(1.0))
                .sum();
            let scale = if crowd > params.crowd_weight {
                params.crowd_weight / crowd
            } else {
                1.0
            };
            let mut weight = 0.0;
            let mut weighted = 0.0;
            for (rater, r) in &per.raters {
                if r.decay_sum <= 0.0 {
                    continue;
                }
                let t = trust(rater);
                let w = r.decay_sum.min(1.0) * (base.min(t) * scale + (t - base).max(0.0));
                weight += w;
                weighted += w * (r.weighted_score / r.decay_sum);
            }
            let prior = params.prior / 100.0;
            let score =
                100.0 * (params.prior_weight * prior + weighted) / (params.prior_weight + weight);
            let reputation = Reputation {
                score: score.clamp(0.0, 100.0),
                breakdown: Breakdown {
                    prior: params.prior,
                    prior_weight: params.prior_weight,
                    evidence_weight: weight,
                    evidence_score: (weight > 0.0).then(|| 100.0 * weighted / weight),
                    confidence: weight / (weight + params.prior_weight),
                    feedback: per.feedback,
                    raters: per.raters.len() as u64,
                    success_rate: Some(per.successes as f64 / per.feedback as f64),
                    mean_rating: (per.ratings > 0)
                        .then(|| per.rating_sum as f64 / per.ratings as f64),
                },
            };
            (agent.to_owned(), reputation)
        })
        .collect()
}

/// A report's score on `[0, 1]`.
fn report_score(report: &Report) -> f64 {
    let outcome = if report.success { 1.0 } else { 0.0 };
    match report.rating {
        Some(stars) => 0.5 * outcome + 0.5 * f64::from(stars.clamp(1, 5) - 1) / 4.0,
        None => outcome,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn report(rater: &str, agent: &str, success: bool, rating: Option<u8>) -> Report {
        Report {
            rater: rater.into(),
            agent: agent.into(),
            success,
            rating,
            at_ms: NOW,
        }
    }

    fn score(reports: &[Report], agent: &str) -> f64 {
        Book::compute(reports, NOW, Params::default()).score(agent)
    }

    /// Raters `t0..t{n}` who are themselves well rated by each other, so that
    /// they carry real trust.
    fn trusted_raters(n: usize) -> Vec<Report> {
        let mut out = Vec::new();
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    out.push(report(&format!("t{i}"), &format!("t{j}"), true, Some(5)));
                }
            }
        }
        out
    }

    #[test]
    fn an_agent_without_feedback_has_the_prior() {
        let book = Book::compute(&[], NOW, Params::default());
        assert_eq!(book.score("nobody"), 50.0);
        assert_eq!(book.get("nobody").breakdown.feedback, 0);
    }

    #[test]
    fn self_ratings_are_ignored() {
        let reports = vec![report("a", "a", true, Some(5)); 10];
        assert_eq!(score(&reports, "a"), 50.0);
    }

    #[test]
    fn a_trusted_rater_counts_more_than_a_newcomer() {
        let mut base = trusted_raters(6);
        let newcomer = {
            let mut r = base.clone();
            r.push(report("fresh", "a", true, Some(5)));
            score(&r, "a")
        };
        base.push(report("t0", "a", true, Some(5)));
        let trusted = score(&base, "a");
        assert!(
            trusted > newcomer,
            "trusted {trusted} vs newcomer {newcomer}"
        );
        assert!(newcomer - 50.0 <= 100.0 * 0.1 / 5.1 + 1e-9);
    }

    #[test]
    fn a_swarm_of_unrated_sybils_moves_little() {
        let reports: Vec<_> = (0..10)
            .map(|i| report(&format!("sybil{i}"), "a", true, Some(5)))
            .collect();
        // Ten raters of trust 0.1 weigh as one: at most 100 / 6 points.
        assert!(score(&reports, "a") - 50.0 <= 100.0 / 6.0 + 1e-9);
    }

    #[test]
    fn any_number_of_unrated_sybils_moves_it_at_most_as_one_trusted_rater() {
        let p = Params::default();
        let bound = 100.0 * p.crowd_weight / (p.prior_weight + p.crowd_weight);
        for n in [10, 100, 1_000] {
            // An agent that issued receipts to `n` fresh identities of its own.
            let reports: Vec<_> = (0..n)
                .map(|i| report(&format!("sybil{i}"), "a", true, Some(5)))
                .collect();
            let moved = score(&reports, "a") - 50.0;
            assert!(moved <= bound + 1e-9, "{n} sybils moved it {moved} points");
            assert!(moved > 0.0, "their ratings still count a little");
        }
        // And a crowd cannot sink an agent either.
        let reports: Vec<_> = (0..1_000)
            .map(|i| report(&format!("troll{i}"), "a", false, Some(1)))
            .collect();
        assert!(50.0 - score(&reports, "a") <= bound + 1e-9);
    }

    #[test]
    fn the_crowd_cap_leaves_earned_trust_whole() {
        // Twenty raters well rated by each other, and a thousand fresh ones:
        // the crowd's cap does not dilute the trust the twenty earned.
        let mut reports = trusted_raters(20);
        for i in 0..20 {
            reports.push(report(&format!("t{i}"), "a", false, Some(1)));
        }
        let trusted_only = score(&reports, "a");
        for i in 0..1_000 {
            reports.push(report(&format!("fresh{i}"), "a", true, Some(5)));
        }
        let p = Params::default();
        let bound = 100.0 * p.crowd_weight / (p.prior_weight + p.crowd_weight);
        let with_crowd = score(&reports, "a");
        assert!(
            with_crowd - trusted_only <= bound + 1e-9,
            "{trusted_only} -> {with_crowd}"
        );
        assert!(
            trusted_only < 40.0 && with_crowd < 50.0,
            "the trusted raters' verdict stands: {trusted_only} -> {with_crowd}"
        );
    }

    #[test]
    fn old_feedback_fades() {
        let params = Params::default();
        let fresh = vec![report("r", "a", false, Some(1))];
        let old = vec![Report {
            at_ms: NOW - 4 * params.half_life_ms as i64,
            ..fresh[0].clone()
        }];
        assert!(score(&old, "a") > score(&fresh, "a"));
    }

    #[test]
    fn the_breakdown_adds_up() {
        let mut reports = trusted_raters(3);
        reports.push(report("t0", "a", true, Some(4)));
        reports.push(report("t1", "a", false, None));
        let rep = Book::compute(&reports, NOW, Params::default()).get("a");
        let b = &rep.breakdown;
        assert_eq!((b.feedback, b.raters), (2, 2));
        assert_eq!(b.success_rate, Some(0.5));
        assert_eq!(b.mean_rating, Some(4.0));
        let evidence = b.evidence_score.expect("has evidence");
        let recomposed = (b.prior_weight * b.prior + b.evidence_weight * evidence)
            / (b.prior_weight + b.evidence_weight);
        assert!((recomposed - rep.score).abs() < 1e-9);
    }

    fn arb_reports() -> impl Strategy<Value = Vec<Report>> {
        let one = (
            0..6u8,
            0..4u8,
            any::<bool>(),
            proptest::option::of(1..=5u8),
            0..(400i64 * 86_400_000),
        )
            .prop_map(|(r, a, success, rating, age)| Report {
                rater: format!("p{r}"),
                agent: format!("p{a}"),
                success,
                rating,
                at_ms: NOW - age,
            });
        proptest::collection::vec(one, 0..60)
    }

    proptest! {
        #[test]
        fn scores_stay_within_0_and_100(reports in arb_reports()) {
            let book = Book::compute(&reports, NOW, Params::default());
            for a in 0..6 {
                let s = book.score(&format!("p{a}"));
                prop_assert!((0.0..=100.0).contains(&s));
            }
        }

        #[test]
        fn no_single_rater_moves_a_score_more_than_the_bound(reports in arb_reports(), rater in 0..6u8, agent in 0..4u8) {
            let rater = format!("p{rater}");
            let agent = format!("p{agent}");
            let with = score(&reports, &agent);
            // Remove this rater's reports about this agent only, so that the
            // trust of every rater stays the same.
            let without: Vec<_> = reports.iter().filter(|r| !(r.rater == rater && r.agent == agent)).cloned().collect();
            let bound = 100.0 / (Params::default().prior_weight + 1.0);
            prop_assert!((with - score(&without, &agent)).abs() <= bound + 1e-9);
        }

        #[test]
        fn a_good_rating_from_a_new_rater_never_lowers_a_score(reports in arb_reports(), agent in 0..4u8) {
            let agent = format!("p{agent}");
            let before = score(&reports, &agent);
            let mut more = reports.clone();
            more.push(report("newcomer", &agent, true, Some(5)));
            let after = score(&more, &agent);
            prop_assert!(after >= before - 1e-9);
            if before < 100.0 - 1e-6 {
                prop_assert!(after > before);
            }
        }

        #[test]
        fn an_unrated_rater_moves_a_score_by_at_most_two_points(reports in arb_reports(), agent in 0..4u8, good in any::<bool>()) {
            let agent = format!("p{agent}");
            let before = score(&reports, &agent);
            let mut more = reports.clone();
            more.push(report("newcomer", &agent, good, Some(if good { 5 } else { 1 })));
            let p = Params::default();
            let bound = 100.0 * p.newcomer_trust / (p.prior_weight + p.newcomer_trust);
            prop_assert!((score(&more, &agent) - before).abs() <= bound + 1e-9);
        }
    }
}
