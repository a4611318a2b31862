//! Which discovery lookups finished lately, so that repeated queries do not
//! walk the DHT and search the registry again each time: a walk asks peer
//! after peer (about a millisecond on loopback for ten agents, seconds
//! across the internet), and a `select(all)` query waits for it. What a
//! lookup found stays in the directory, kept current by announcements.
//! Free of I/O: the time is passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a finished lookup stands for a new one of the same query.
pub(crate) const REUSE: Duration = Duration::from_secs(30);

/// Most lookups remembered at once.
const MAX_REMEMBERED: usize = 256;

/// When each recent lookup finished, by query.
#[derive(Debug, Default)]
pub(crate) struct Lookups {
    finished: HashMap<String, Instant>,
}

impl Lookups {
    /// Whether a lookup for `query` finished less than [`REUSE`] ago.
    pub(crate) fn is_recent(&self, query: &str, now: Instant) -> bool {
        self.finished
            .get(query)
            .is_some_and(|&at| now.saturating_duration_since(at) < REUSE)
    }

    /// A lookup for `query` finished at `now`. Beyond the bound, the
    /// stale are forgotten, then the oldest.
    pub(crate) fn finished(&mut self, query: String, now: Instant) {
        if self.finished.len() >= MAX_REMEMBERED && !self.finished.contains_key(&query) {
            self.finished
                .retain(|_, &mut at| now.saturating_duration_since(at) < REUSE);
            if self.finished.len() >= MAX_REMEMBERED
                && let Some(oldest) = self
                    .finished
                    .iter()
                    .min_by_key(|&(_, &at)| at)
                    .map(|(q, _)| q.clone())
            {
                self.finished.remove(&oldest);
            }
        }
        self.finished.insert(query, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_stands_for_a_while_then_not() {
        let mut lookups = Lookups::default();
        let t0 = Instant::now();
        assert!(!lookups.is_recent("llm/chat", t0));
        lookups.finished("llm/chat".into(), t0);
        assert!(lookups.is_recent("llm/chat", t0));
        assert!(lookups.is_recent("llm/chat", t0 + REUSE - Duration::from_millis(1)));
        assert!(!lookups.is_recent("llm/chat", t0 + REUSE));
        assert!(!lookups.is_recent("llm/chat +french", t0), "per query");
        lookups.finished("llm/chat".into(), t0 + REUSE);
        assert!(lookups.is_recent("llm/chat", t0 + REUSE), "renewed");
    }

    #[test]
    fn the_memory_is_bounded_and_forgets_the_oldest() {
        let mut lookups = Lookups::default();
        let t0 = Instant::now();
        for n in 0..MAX_REMEMBERED {
            lookups.finished(format!("q{n}"), t0 + Duration::from_millis(n as u64));
        }
        let now = t0 + Duration::from_secs(1);
        lookups.finished("new".into(), now);
        assert_eq!(lookups.finished.len(), MAX_REMEMBERED);
        assert!(!lookups.is_recent("q0", now), "the oldest went");
        assert!(lookups.is_recent("q1", now) && lookups.is_recent("new", now));
        // The stale go first, all of them.
        let later = t0 + REUSE + Duration::from_millis(MAX_REMEMBERED as u64);
        lookups.finished("newer".into(), later);
        assert_eq!(lookups.finished.len(), 2);
    }
}
