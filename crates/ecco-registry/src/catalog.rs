//! The hot-read cache: every registered agent in memory with a matcher index,
//! so that searches and analytics touch neither the database nor the network.
//!
//! Coherence, across instances too:
//! - A write that changes what a search returns (registration, update,
//!   deregistration, removal, new addresses) bumps a generation counter after
//!   it commits: in Redis when there is one, shared by every instance.
//! - A snapshot is labelled with the generation read *before* loading it, so
//!   it never claims to be newer than it is.
//! - An instance re-reads the generation at once after its own writes and
//!   after another instance's events (over Redis pub/sub), and at least every
//!   [`Config::catalog_check`](crate::Config::catalog_check) in case an event
//!   was lost; it reloads from the database at least every
//!   [`MAX_SNAPSHOT_AGE`].
//! - Heartbeats only move `last_seen`, kept per agent in an atomic beside the
//!   snapshot and fed by the live events, so they need no rebuild.
//!
//! With Redis, a snapshot is also stored there under its generation for a few
//! seconds, so that after a change one instance reads the database and the
//! others read Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ecco_core::matcher::Index;
use ecco_core::{AgentId, Offer};

use crate::shared::SharedError;
use crate::store::{AgentRow, StoreError};
use crate::wire::{Event, EventKind};

/// Why the catalog could not be checked or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis failed.
    #[error(transparent)]
    Shared(#[from] SharedError),
}

/// Longest a snapshot is used without reloading it from the database, so
/// that lost heartbeat events cannot leave `last_seen` behind for long.
pub const MAX_SNAPSHOT_AGE: Duration = Duration::from_secs(30);
/// How long a snapshot stays in Redis for the other instances.
pub const SHARED_SNAPSHOT_TTL: Duration = Duration::from_secs(5);

/// Every registered agent at one generation.
#[derive(Debug)]
pub struct Catalog {
    generation: u64,
    loaded_at: Instant,
    agents: Vec<AgentRow>,
    by_peer: HashMap<String, usize>,
    // Heartbeats heard since loading, per agent (Unix ms).
    last_seen: Vec<AtomicI64>,
    // One offer per capability, naming its agent by position in `agents`.
    index: Index,
}

impl Catalog {
    /// A catalog of `agents` at `generation`.
    #[must_use]
    pub fn new(generation: u64, agents: Vec<AgentRow>) -> Self {
        let mut offers = Vec::new();
        for agent in &agents {
            // Rows hold base58 peer ids, which are valid agent ids; a row that
            // somehow is not simply offers nothing.
            let Ok(id) = AgentId::new(agent.peer_id.clone()) else {
                continue;
            };
            offers.extend(
                agent
                    .document
                    .capabilities()
                    .iter()
                    .map(|c| Offer::new(id.clone(), c.clone())),
            );
        }
        let by_peer = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.peer_id.clone(), i))
            .collect();
        let last_seen = agents.iter().map(|a| AtomicI64::new(a.last_seen)).collect();
        Self {
            generation,
            loaded_at: Instant::now(),
            agents,
            by_peer,
            last_seen,
            index: Index::new(offers),
        }
    }

    /// The generation this snapshot reflects.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every registered agent, by peer id.
    #[must_use]
    pub fn agents(&self) -> &[AgentRow] {
        &self.agents
    }

    /// The matcher index over every agent's capabilities.
    #[must_use]
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Position of an agent in [`Catalog::agents`].
    #[must_use]
    pub fn position(&self, peer_id: &str) -> Option<usize> {
        self.by_peer.get(peer_id).copied()
    }

    /// When the agent at `position` was last heard from (Unix ms), heartbeats
    /// since loading included.
    #[must_use]
    pub fn last_seen(&self, position: usize) -> i64 {
        self.last_seen
            .get(position)
            .map_or(0, |t| t.load(Ordering::Relaxed))
    }

    /// Records that an agent was heard from at `at_ms`.
    pub fn heard(&self, peer_id: &str, at_ms: i64) {
        if let Some(t) = self.position(peer_id).and_then(|i| self.last_seen.get(i)) {
            t.fetch_max(at_ms, Ordering::Relaxed);
        }
    }

    /// Carries the heartbeats heard by `older` over, for agents it shares.
    fn inherit(&self, older: &Self) {
        for (agent, t) in older.agents.iter().zip(&older.last_seen) {
            self.heard(&agent.peer_id, t.load(Ordering::Relaxed));
        }
    }
}

/// The current snapshot and when to doubt it.
#[derive(Debug)]
pub struct Cache {
    current: RwLock<Arc<Catalog>>,
    // Something says the generation moved: check before the next read.
    doubtful: AtomicBool,
    // Events were lost: the next rebuild reads the database.
    reload: AtomicBool,
    checked_at: RwLock<Instant>,
    check_every: Duration,
    // One rebuild at a time; the others wait for it and use its result.
    rebuild: tokio::sync::Mutex<()>,
}

impl Cache {
    /// An empty cache that loads on first use.
    #[must_use]
    pub fn new(check_every: Duration) -> Self {
        Self {
            current: RwLock::new(Arc::new(Catalog::new(0, Vec::new()))),
            doubtful: AtomicBool::new(true),
            reload: AtomicBool::new(true),
            checked_at: RwLock::new(Instant::now()),
            check_every,
            rebuild: tokio::sync::Mutex::new(()),
        }
    }

    /// The snapshot, unless it must be checked first.
    #[must_use]
    pub fn fresh(&self) -> Option<Arc<Catalog>> {
        if self.doubtful.load(Ordering::Acquire) {
            return None;
        }
        let checked_at = *self.checked_at.read().unwrap_or_else(|e| e.into_inner());
        if checked_at.elapsed() >= self.check_every {
            return None;
        }
        Some(self.current())
    }

    /// The snapshot, however old.
    #[must_use]
    pub fn current(&self) -> Arc<Catalog> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Marks the snapshot as needing a generation check.
    pub fn doubt(&self) {
        self.doubtful.store(true, Ordering::Release);
    }

    /// Waits for any check in progress; hold the guard while checking.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.rebuild.lock().await
    }

    /// Starts a check (under [`Cache::lock`]): clears the doubt, so that a
    /// change during the check doubts again, and says whether the database
    /// must be read whatever the generation.
    pub fn start_check(&self) -> bool {
        self.doubtful.store(false, Ordering::Release);
        let too_old = self.current().loaded_at.elapsed() >= MAX_SNAPSHOT_AGE;
        self.reload.swap(false, Ordering::AcqRel) || too_old
    }

    /// Ends a check that kept the snapshot.
    pub fn confirm(&self) {
        *self.checked_at.write().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Ends a check that built a new snapshot.
    pub fn replace(&self, catalog: Arc<Catalog>) {
        catalog.inherit(&self.current());
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = catalog;
        self.confirm();
    }

    /// A failed check: try again on the next read.
    pub fn failed(&self, reload: bool) {
        if reload {
            self.reload.store(true, Ordering::Release);
        }
        self.doubt();
    }

    /// Applies a live event: heartbeats move `last_seen`; registrations and
    /// removals make the generation worth checking.
    pub fn apply(&self, event: &Event) {
        match event.kind {
            EventKind::Heartbeat => self.current().heard(&event.agent, event.at_ms),
            EventKind::Registered | EventKind::Updated | EventKind::Deregistered => self.doubt(),
            _ => {}
        }
    }

    /// Events were missed: doubt, and read the database next time.
    pub fn lagged(&self) {
        self.reload.store(true, Ordering::Release);
        self.doubt();
    }
}

/// Keeps `cache` in step with the live events until they end (the registry
/// closed) or the cache is dropped.
pub async fn follow(
    cache: std::sync::Weak<Cache>,
    mut events: tokio::sync::broadcast::Receiver<Event>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let received = events.recv().await;
        let Some(cache) = cache.upgrade() else {
            return;
        };
        match received {
            Ok(event) => cache.apply(&event),
            Err(RecvError::Lagged(_)) => cache.lagged(),
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecco_core::{Capability, CapabilityDocument};

    fn row(peer_id: &str, last_seen: i64) -> AgentRow {
        let capability: Capability = "llm/chat m@1.0.0 +summarize".parse().expect("parses");
        AgentRow {
            peer_id: peer_id.to_owned(),
            name: peer_id.to_owned(),
            document: CapabilityDocument::new(vec![capability]).expect("valid"),
            addresses: Vec::new(),
            registered_at: 0,
            updated_at: 0,
            last_seen,
            heartbeats: 0,
        }
    }

    fn event(kind: EventKind, agent: &str, at_ms: i64) -> Event {
        Event {
            kind,
            agent: agent.to_owned(),
            at_ms,
            health: None,
            reputation: None,
        }
    }

    #[test]
    fn heartbeats_move_last_seen_forward_only() {
        let cache = Cache::new(Duration::from_secs(60));
        assert!(cache.start_check());
        cache.replace(Arc::new(Catalog::new(1, vec![row("a", 100)])));
        cache.apply(&event(EventKind::Heartbeat, "a", 500));
        cache.apply(&event(EventKind::Heartbeat, "a", 300));
        cache.apply(&event(EventKind::Heartbeat, "unknown", 900));
        let catalog = cache.current();
        assert_eq!(catalog.last_seen(0), 500);
        assert!(cache.fresh().is_some(), "a heartbeat needs no rebuild");
    }

    #[test]
    fn a_rebuilt_snapshot_keeps_heartbeats_heard_since_its_rows_were_read() {
        let cache = Cache::new(Duration::from_secs(60));
        cache.replace(Arc::new(Catalog::new(
            1,
            vec![row("a", 100), row("b", 100)],
        )));
        cache.apply(&event(EventKind::Heartbeat, "a", 700));
        // Rows read from Redis or the database before that heartbeat landed.
        cache.replace(Arc::new(Catalog::new(2, vec![row("a", 200), row("c", 50)])));
        let catalog = cache.current();
        assert_eq!(catalog.last_seen(catalog.position("a").expect("a")), 700);
        assert_eq!(catalog.last_seen(catalog.position("c").expect("c")), 50);
        assert_eq!(catalog.position("b"), None);
    }

    #[test]
    fn registrations_and_lost_events_make_the_snapshot_doubtful() {
        let cache = Cache::new(Duration::from_secs(60));
        cache.replace(Arc::new(Catalog::new(1, Vec::new())));
        assert!(cache.start_check(), "the first check reads the database");
        cache.confirm();
        assert!(cache.fresh().is_some());
        cache.apply(&event(EventKind::Registered, "a", 1));
        assert!(
            cache.fresh().is_none(),
            "a registration is a reason to check"
        );
        assert!(!cache.start_check(), "the generation decides");
        cache.confirm();
        cache.lagged();
        assert!(cache.fresh().is_none());
        assert!(
            cache.start_check(),
            "after lost events the database is read"
        );
    }

    #[test]
    fn the_check_interval_bounds_trust() {
        let cache = Cache::new(Duration::ZERO);
        cache.replace(Arc::new(Catalog::new(1, Vec::new())));
        assert!(cache.fresh().is_none());
    }
}
