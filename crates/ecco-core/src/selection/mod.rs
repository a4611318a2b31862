//! Which of the ranked agents to ask.
//!
//! [`Selection`] names a strategy; a [`Selector`] applies it, keeping what
//! must persist between calls (round-robin positions, the random generator).
//! Every strategy returns its choice in ranking order.
//!
//! - `all`: every match.
//! - `top-n:N`: the N best.
//! - `round-robin:N`: N at a time, rotating through the matches in identity
//!   order ([`Offer::cmp_identity`](crate::Offer::cmp_identity)), remembered
//!   per query: over many calls each match is chosen equally often, and agents
//!   joining or leaving do not restart the rotation.
//! - `random:N`: N chosen uniformly without replacement.
//! - `weighted:N`: N chosen without replacement with probability proportional
//!   to [`performance::weight`] (match score and
//!   observed performance), by Efraimidis–Spirakis sampling.

mod rotation;
mod strategy;

pub use strategy::Selection;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::Query;
use crate::matcher::Match;
use crate::performance::{self, History};
use rotation::Rotations;

/// Why a selection could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// Fewer agents match than the caller requires.
    #[error("{available} agent(s) match but at least {required} are required")]
    TooFewAgents {
        /// The caller's `min_agents`.
        required: usize,
        /// How many matched.
        available: usize,
    },
    /// The strategy picks fewer agents than the caller requires.
    #[error("`{selection}` picks at most {count} agent(s), fewer than the {required} required")]
    Unsatisfiable {
        /// The strategy, as text.
        selection: String,
        /// How many it picks.
        count: usize,
        /// The caller's `min_agents`.
        required: usize,
    },
}

/// Applies [`Selection`] strategies; holds round-robin positions and a seeded
/// random generator.
#[derive(Debug)]
pub struct Selector {
    rng: StdRng,
    rotations: Rotations,
}

impl Selector {
    /// A selector whose random choices are determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            rotations: Rotations::default(),
        }
    }

    /// Chooses from `ranked` (best first, as [`Matcher::rank`](crate::Matcher::rank)
    /// returns them). Fails when fewer than `min_agents` would be chosen.
    pub fn select<'a>(
        &mut self,
        selection: &Selection,
        query: &Query,
        ranked: &[Match<'a>],
        history: &dyn History,
        min_agents: usize,
    ) -> Result<Vec<Match<'a>>, SelectionError> {
        if let Some(count) = selection.count()
            && count < min_agents
        {
            return Err(SelectionError::Unsatisfiable {
                selection: selection.to_string(),
                count,
                required: min_agents,
            });
        }
        if ranked.len() < min_agents {
            return Err(SelectionError::TooFewAgents {
                required: min_agents,
                available: ranked.len(),
            });
        }
        let n = selection.count().unwrap_or(ranked.len()).min(ranked.len());
        let mut picked: Vec<usize> = match selection {
            Selection::All => (0..ranked.len()).collect(),
            Selection::TopN(_) => (0..n).collect(),
            Selection::RoundRobin(_) => self.rotations.next(&query.to_string(), ranked, n),
            Selection::Random(_) => {
                rand::seq::index::sample(&mut self.rng, ranked.len(), n).into_vec()
            }
            Selection::Weighted(_) => self.weighted(ranked, history, n),
        };
        picked.sort_unstable();
        Ok(picked.into_iter().map(|i| ranked[i]).collect())
    }

    /// Efraimidis–Spirakis: key `ln(u) / w` for `u` uniform in (0, 1]; the `n` largest keys win.
    fn weighted(&mut self, ranked: &[Match<'_>], history: &dyn History, n: usize) -> Vec<usize> {
        let mut keyed: Vec<(f64, usize)> = ranked
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let w = performance::weight(m.score, history.performance(&m.offer.agent));
                let u = 1.0 - self.rng.random::<f64>();
                (u.ln() / w, i)
            })
            .collect();
        keyed.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        keyed.into_iter().take(n).map(|(_, i)| i).collect()
    }
}

#[cfg(test)]
mod tests;
