//! Round-robin positions, one per query, bounded in number.

use std::collections::HashMap;

use crate::AgentId;
use crate::capability::{CapabilityType, Offer};
use crate::limits;
use crate::matcher::Match;

/// An offer's identity, ordered as [`Offer::cmp_identity`].
type Identity = (AgentId, CapabilityType, String, semver::Version);

fn identity(offer: &Offer) -> Identity {
    let c = &offer.capability;
    (
        offer.agent.clone(),
        c.kind().clone(),
        c.name().to_owned(),
        c.version().clone(),
    )
}

#[derive(Debug)]
struct Rotation {
    /// The last offer served.
    cursor: Identity,
    /// When this rotation was last used, for evicting the stalest.
    used: u64,
}

/// The round-robin state of up to [`limits::MAX_ROTATIONS`] queries.
#[derive(Debug, Default)]
pub(super) struct Rotations {
    by_query: HashMap<String, Rotation>,
    clock: u64,
}

impl Rotations {
    /// The indices (into `ranked`) of the next `n` offers in rotation for `key`.
    pub(super) fn next(&mut self, key: &str, ranked: &[Match<'_>], n: usize) -> Vec<usize> {
        if ranked.is_empty() || n == 0 {
            return Vec::new();
        }
        let mut order: Vec<usize> = (0..ranked.len()).collect();
        order.sort_by(|&a, &b| ranked[a].offer.cmp_identity(ranked[b].offer));

        // Start just after the last offer served, wherever it now sits (or
        // would sit, if it has left): membership changes do not reset fairness.
        let start = self.by_query.get(key).map_or(0, |r| {
            order
                .iter()
                .position(|&i| identity(ranked[i].offer) > r.cursor)
                .unwrap_or(0)
        });
        let picked: Vec<usize> = (0..n).map(|k| order[(start + k) % order.len()]).collect();

        self.clock += 1;
        let cursor = identity(ranked[picked[picked.len() - 1]].offer);
        if !self.by_query.contains_key(key) && self.by_query.len() >= limits::MAX_ROTATIONS {
            self.evict_stalest();
        }
        self.by_query.insert(
            key.to_owned(),
            Rotation {
                cursor,
                used: self.clock,
            },
        );
        picked
    }

    fn evict_stalest(&mut self) {
        if let Some(stalest) = self
            .by_query
            .iter()
            .min_by_key(|(_, r)| r.used)
            .map(|(k, _)| k.clone())
        {
            self.by_query.remove(&stalest);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_query.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Capability;

    fn offers(ids: &[&str]) -> Vec<Offer> {
        ids.iter()
            .map(|id| {
                Offer::new(
                    AgentId::new(*id).unwrap(),
                    Capability::builder("x", "n", "1.0.0").build().unwrap(),
                )
            })
            .collect()
    }

    fn equal_scores(offers: &[Offer]) -> Vec<Match<'_>> {
        offers
            .iter()
            .map(|o| Match {
                offer: o,
                score: 1.0,
            })
            .collect()
    }

    fn ids(ranked: &[Match<'_>], picked: &[usize]) -> Vec<String> {
        picked
            .iter()
            .map(|&i| ranked[i].offer.agent.to_string())
            .collect()
    }

    #[test]
    fn rotates_and_survives_membership_changes() {
        let all = offers(&["a", "b", "c", "d"]);
        let ranked = equal_scores(&all);
        let mut r = Rotations::default();
        assert_eq!(ids(&ranked, &r.next("q", &ranked, 3)), ["a", "b", "c"]);
        assert_eq!(ids(&ranked, &r.next("q", &ranked, 3)), ["d", "a", "b"]);
        // `c` leaves: the rotation goes on from after `b`.
        let without_c: Vec<Match<'_>> = ranked
            .iter()
            .copied()
            .filter(|m| m.offer.agent.as_str() != "c")
            .collect();
        assert_eq!(ids(&without_c, &r.next("q", &without_c, 1)), ["d"]);
        // Another query has its own rotation.
        assert_eq!(ids(&ranked, &r.next("other", &ranked, 1)), ["a"]);
    }

    #[test]
    fn state_is_bounded() {
        let all = offers(&["a"]);
        let ranked = equal_scores(&all);
        let mut r = Rotations::default();
        for i in 0..limits::MAX_ROTATIONS + 10 {
            r.next(&format!("q{i}"), &ranked, 1);
        }
        assert_eq!(r.len(), limits::MAX_ROTATIONS);
    }
}
