//! Hard filters, a score in `[0, 1]`, a deterministic ranking, and explanations.
//!
//! # Filters
//! A capability is excluded unless all of these hold: its type matches the
//! query's pattern; it has every required feature; every constraint predicate
//! holds (a missing constraint or one of the wrong type fails); its version
//! satisfies the requirement; every *required* metadata filter holds.
//!
//! # Score
//! Each survivor gets a score in `[0, 1]`, a weighted mean of the components
//! that the query asks about (a component the query does not ask about is left
//! out, and its weight with it):
//!
//! - **features** (weight 0.5): the share of preferred features the capability has;
//! - **constraints** (weight 0.3): for each ordering predicate (`<`, `<=`, `>`,
//!   `>=`) on a number, the slack `m = |value - bound| / |bound|` turned into
//!   `m / (1 + m)`, averaged: an offer cheaper or faster than the bound scores higher;
//! - **metadata** (weight 0.2): the share of soft metadata filters that hold.
//!
//! `score = Σ wᵢ·cᵢ / Σ wᵢ` over the active components, or `1` when none is
//! active (every survivor fits equally well). The weights are configurable
//! with [`Weights`].
//!
//! # Ranking
//! A total order: score, highest first; ties broken by
//! [`Offer::cmp_identity`] (agent id, type, name, version, ascending); offers
//! identical in all of these keep their input order. The same inputs always
//! give the same ranking.

mod explain;
mod index;
mod score;

pub use explain::{Exclusion, Explanation, Verdict};
pub use index::Index;
pub use score::{Breakdown, Weights};

use std::cmp::Ordering;

use serde::Serialize;

use crate::capability::Offer;
use crate::{Capability, Query};

/// A capability that passed the filters, with its score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Match<'a> {
    /// The offer.
    pub offer: &'a Offer,
    /// Its score in `[0, 1]`.
    pub score: f64,
}

impl Match<'_> {
    /// The ranking order: higher score first, then identity.
    pub fn cmp_rank(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.offer.cmp_identity(other.offer))
    }
}

/// Filters, scores, ranks and explains; see the [module documentation](self).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matcher {
    weights: Weights,
}

impl Matcher {
    /// A matcher with custom component weights.
    pub fn new(weights: Weights) -> Self {
        Self { weights }
    }

    /// The component weights.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The score of a capability, or `None` when a filter excludes it.
    pub fn score(&self, query: &Query, capability: &Capability) -> Option<f64> {
        score::passes(query, capability)
            .then(|| self.weights.combine(&score::components(query, capability)))
    }

    /// Every offer that passes the filters, best first.
    pub fn rank<'a, I>(&self, query: &Query, offers: I) -> Vec<Match<'a>>
    where
        I: IntoIterator<Item = &'a Offer>,
    {
        order_all(offers.into_iter().filter_map(|offer| {
            self.score(query, &offer.capability)
                .map(|score| Match { offer, score })
        }))
    }

    /// The best `k` offers, best first: the same as the first `k` of
    /// [`rank`](Self::rank), without sorting the rest.
    pub fn rank_top<'a, I>(&self, query: &Query, offers: I, k: usize) -> Vec<Match<'a>>
    where
        I: IntoIterator<Item = &'a Offer>,
    {
        order_top(
            offers.into_iter().filter_map(|offer| {
                self.score(query, &offer.capability)
                    .map(|score| Match { offer, score })
            }),
            k,
        )
    }

    /// [`rank`](Self::rank) over an [`Index`]: the same result, much faster
    /// on large sets.
    pub fn rank_in<'a>(&self, index: &'a Index, query: &Query) -> Vec<Match<'a>> {
        order_all(index.scored(query, &self.weights).into_iter())
    }

    /// [`rank_top`](Self::rank_top) over an [`Index`].
    pub fn rank_top_in<'a>(&self, index: &'a Index, query: &Query, k: usize) -> Vec<Match<'a>> {
        order_top(index.scored(query, &self.weights).into_iter(), k)
    }

    /// Why an offer was excluded, or how its score was made.
    pub fn explain(&self, query: &Query, offer: &Offer) -> Explanation {
        explain::explain(&self.weights, query, offer)
    }

    /// Explanations for every offer: survivors in ranking order, then the excluded ones in input order.
    pub fn explain_all<'a, I>(&self, query: &Query, offers: I) -> Vec<Explanation>
    where
        I: IntoIterator<Item = &'a Offer>,
    {
        let offers: Vec<&Offer> = offers.into_iter().collect();
        let ranked = self.rank(query, offers.iter().copied());
        let mut out: Vec<Explanation> = ranked
            .iter()
            .map(|m| self.explain(query, m.offer))
            .collect();
        out.extend(
            offers
                .iter()
                .filter(|o| !score::passes(query, &o.capability))
                .map(|o| self.explain(query, o)),
        );
        out
    }
}

/// Sorts survivors into the ranking order. Stable, so offers equal in score
/// and identity keep their input order.
fn order_all<'a>(matches: impl Iterator<Item = Match<'a>>) -> Vec<Match<'a>> {
    let mut matches: Vec<Match<'a>> = matches.collect();
    matches.sort_by(Match::cmp_rank);
    matches
}

/// The first `k` of [`order_all`], found without sorting the rest.
fn order_top<'a>(matches: impl Iterator<Item = Match<'a>>, k: usize) -> Vec<Match<'a>> {
    if k == 0 {
        return Vec::new();
    }
    let mut matches: Vec<(usize, Match<'a>)> = matches.enumerate().collect();
    // The input position completes the order so that the partial sort agrees with `order_all`.
    let order =
        |a: &(usize, Match<'a>), b: &(usize, Match<'a>)| a.1.cmp_rank(&b.1).then(a.0.cmp(&b.0));
    if matches.len() > k {
        matches.select_nth_unstable_by(k - 1, order);
        matches.truncate(k);
    }
    matches.sort_unstable_by(order);
    matches.into_iter().map(|(_, m)| m).collect()
}

#[cfg(test)]
mod tests;
