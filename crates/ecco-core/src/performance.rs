//! What has been observed of an agent: how often it succeeds and how fast it answers.
//!
//! Weighted selection and weighted voting combine this with the match score
//! through [`weight`]. The SDK keeps one [`Performance`] per agent and
//! persists it; this module only holds the arithmetic.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::AgentId;

/// Smoothing factor of the latency moving average: each new sample counts for 20%.
pub const EWMA_ALPHA: f64 = 0.2;
/// The latency at which the speed factor is one half.
pub const REFERENCE_LATENCY_MS: f64 = 1000.0;

/// Observed reliability and latency of one agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Performance {
    /// Interactions that succeeded.
    pub successes: u64,
    /// Interactions that failed (error or timeout).
    pub failures: u64,
    /// Exponentially weighted moving average of successful latencies, in ms.
    pub latency_ms: Option<f64>,
}

impl Performance {
    /// Records a success and its latency.
    pub fn record_success(&mut self, latency: Duration) {
        self.successes = self.successes.saturating_add(1);
        let sample = latency.as_secs_f64() * 1000.0;
        self.latency_ms = Some(match self.latency_ms {
            Some(avg) => avg + EWMA_ALPHA * (sample - avg),
            None => sample,
        });
    }

    /// Records a failure.
    pub fn record_failure(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// Success rate with a uniform prior, `(s + 1) / (s + f + 2)`: an agent
    /// never seen is at ½, and a few lucky calls do not reach 1.
    pub fn reliability(&self) -> f64 {
        (self.successes as f64 + 1.0) / (self.successes as f64 + self.failures as f64 + 2.0)
    }

    /// `R / (R + latency)` with `R` = [`REFERENCE_LATENCY_MS`]; ½ when unknown.
    pub fn speed(&self) -> f64 {
        let latency = self.latency_ms.unwrap_or(REFERENCE_LATENCY_MS).max(0.0);
        REFERENCE_LATENCY_MS / (REFERENCE_LATENCY_MS + latency)
    }
}

/// The weight of an agent for weighted selection and weighted voting:
/// `(0.1 + 0.9 · score) · reliability · speed`, always in `(0, 1]`.
///
/// The floor of 0.1 keeps a matching agent with a zero score selectable;
/// an agent with no history gets the neutral `Performance::default()`.
pub fn weight(score: f64, performance: Option<&Performance>) -> f64 {
    let p = performance.copied().unwrap_or_default();
    let score = if score.is_finite() {
        score.clamp(0.0, 1.0)
    } else {
        0.0
    };
    (0.1 + 0.9 * score) * p.reliability() * p.speed()
}

/// Where selection and voting look up performance.
pub trait History {
    /// The observed performance of an agent, if any.
    fn performance(&self, agent: &AgentId) -> Option<&Performance>;
}

/// No history: every agent is unknown.
impl History for () {
    fn performance(&self, _: &AgentId) -> Option<&Performance> {
        None
    }
}

impl<S: std::hash::BuildHasher> History for HashMap<AgentId, Performance, S> {
    fn performance(&self, agent: &AgentId) -> Option<&Performance> {
        self.get(agent)
    }
}

impl History for BTreeMap<AgentId, Performance> {
    fn performance(&self, agent: &AgentId) -> Option<&Performance> {
        self.get(agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_follows_samples() {
        let mut p = Performance::default();
        p.record_success(Duration::from_millis(100));
        assert_eq!(p.latency_ms, Some(100.0));
        p.record_success(Duration::from_millis(200));
        assert!((p.latency_ms.unwrap() - 120.0).abs() < 1e-9);
    }

    #[test]
    fn reliability_and_speed_move_the_right_way() {
        let unknown = Performance::default();
        assert_eq!(unknown.reliability(), 0.5);
        assert_eq!(unknown.speed(), 0.5);
        let mut good = Performance::default();
        let mut bad = Performance::default();
        for _ in 0..10 {
            good.record_success(Duration::from_millis(50));
            bad.record_failure();
        }
        assert!(good.reliability() > unknown.reliability());
        assert!(bad.reliability() < unknown.reliability());
        assert!(good.speed() > unknown.speed());
        assert!(weight(0.5, Some(&good)) > weight(0.5, None));
        assert!(weight(0.5, Some(&bad)) < weight(0.5, None));
    }

    #[test]
    fn weight_is_bounded_and_monotone_in_score() {
        assert!(weight(0.0, None) > 0.0);
        assert!(weight(1.0, None) > weight(0.5, None));
        assert!(weight(f64::NAN, None) > 0.0);
        assert!(weight(7.0, None) <= 1.0);
    }
}
