//! What every request handler shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, RwLock};

use crate::address;
use crate::catalog::{self, Cache, Catalog, CatalogError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::reputation::{Book, Params};
use crate::shared::Shared;
use crate::store::{AgentRow, Store, StoreError};
use crate::wire::{Event, EventKind, Health};

/// Least time between two reputation recomputations, in multiples of the
/// last one's duration.
const RECOMPUTE_SPACING: u32 = 10;

/// The registry's shared state: configuration, storage, shared state, metrics
/// and the reputation snapshot. Cheap to clone.
#[derive(Clone, Debug)]
pub struct App(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    config: Config,
    // Signed writes name it, so that they cannot be replayed elsewhere.
    registry_id: String,
    store: Store,
    shared: Shared,
    metrics: Metrics,
    book: RwLock<Arc<Book>>,
    // Every registered agent in memory, for searches and analytics.
    catalog: Arc<Cache>,
    // Feedback arrived since the snapshot was computed.
    dirty: AtomicBool,
    // Held while recomputing, so that concurrent readers do not all
    // recompute: when the last computation ended, and how long it took.
    computed_at: Mutex<Option<(Instant, Duration)>>,
    // Flips to true when the server shuts down, ending live event streams.
    closing: tokio::sync::watch::Sender<bool>,
}

impl App {
    /// Assembles the state and computes the first reputation snapshot. A
    /// Redis-backed `shared` must be scoped by `store`'s
    /// [`registry_id`](Store::registry_id), as [`crate::open`] does.
    ///
    /// # Errors
    /// [`StoreError`] if the feedback cannot be read.
    pub async fn new(config: Config, store: Store, shared: Shared) -> Result<Self, StoreError> {
        let registry_id = store.registry_id().await?;
        let catalog = Arc::new(Cache::new(config.catalog_check));
        tokio::spawn(catalog::follow(
            Arc::downgrade(&catalog),
            shared.subscribe(),
        ));
        let app = Self(Arc::new(Inner {
            catalog,
            config,
            registry_id,
            store,
            shared,
            metrics: Metrics::default(),
            book: RwLock::new(Arc::new(Book::default())),
            dirty: AtomicBool::new(true),
            computed_at: Mutex::new(None),
            closing: tokio::sync::watch::channel(false).0,
        }));
        app.recompute_now().await?;
        Ok(app)
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The addresses this registry keeps and serves of `addresses`: all of
    /// them, or with `public_addresses_only` only the public ones.
    #[must_use]
    pub fn publishable(&self, mut addresses: Vec<String>) -> Vec<String> {
        if self.0.config.public_addresses_only {
            addresses.retain(|a| {
                a.parse::<multiaddr::Multiaddr>()
                    .is_ok_and(|a| address::reach(&a) == address::Reach::Public)
            });
        }
        addresses
    }

    /// This registry's id, shared by every instance on its database (see
    /// [`Store::registry_id`]). Signed writes name it.
    #[must_use]
    pub fn registry_id(&self) -> &str {
        &self.0.registry_id
    }

    /// The database.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// Nonces, rate limits and live events.
    #[must_use]
    pub fn shared(&self) -> &Shared {
        &self.0.shared
    }

    /// The metrics.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Ends every live event stream (the server is shutting down).
    pub fn close_streams(&self) {
        self.0.closing.send_replace(true);
    }

    /// Becomes true when live event streams must end.
    #[must_use]
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.closing.subscribe()
    }

    /// Marks the reputation snapshot out of date.
    pub fn feedback_changed(&self) {
        self.0.dirty.store(true, Ordering::Release);
    }

    /// The reputation snapshot. After feedback arrived, it is recomputed
    /// from all stored feedback once the last computation is older than
    /// [`Config::reputation_refresh`] (or ten times the last computation,
    /// if longer), in the background: readers get the current snapshot
    /// meanwhile, so that none waits for a re-read of the feedback table
    /// (3–5 s for a million reports on SQLite; BENCHMARKS.md). With a zero
    /// refresh (tests), a read after feedback waits for the recompute, so
    /// that it sees the writes before it.
    ///
    /// # Errors
    /// [`StoreError`] if the feedback cannot be read (only with a zero
    /// refresh or at start; a background recompute logs the error and
    /// tries again at the next read).
    pub async fn book(&self) -> Result<Arc<Book>, StoreError> {
        let current = self.0.book.read().await.clone();
        if !self.0.dirty.load(Ordering::Acquire) {
            return Ok(current);
        }
        if self.0.config.reputation_refresh.is_zero() {
            self.recompute_now().await?;
            return Ok(self.0.book.read().await.clone());
        }
        // Checked here as well as in the task, so that reads between two
        // recomputes spawn nothing.
        if self.recompute_due() {
            let app = self.clone();
            tokio::spawn(async move {
                // Another task got there first: it recomputes.
                let Ok(mut computed_at) = app.0.computed_at.try_lock() else {
                    return;
                };
                if app.is_due(*computed_at)
                    && app.0.dirty.swap(false, Ordering::AcqRel)
                    && let Err(e) = app.recompute(&mut computed_at).await
                {
                    tracing::warn!(error = %e, "cannot recompute the reputations");
                }
            });
        }
        Ok(current)
    }

    /// Recomputes now if feedback arrived since the last time, waiting for
    /// a recompute already running.
    async fn recompute_now(&self) -> Result<(), StoreError> {
        let mut computed_at = self.0.computed_at.lock().await;
        if self.0.dirty.swap(false, Ordering::AcqRel) {
            self.recompute(&mut computed_at).await?;
        }
        Ok(())
    }

    /// Whether a recompute may start now: none is running, and the last
    /// ended long enough ago.
    fn recompute_due(&self) -> bool {
        self.0
            .computed_at
            .try_lock()
            .is_ok_and(|computed_at| self.is_due(*computed_at))
    }

    fn is_due(&self, computed_at: Option<(Instant, Duration)>) -> bool {
        // Recomputing reads all feedback: as it grows, space the runs out so
        // that they take at most a tenth of the time.
        let refresh = self.0.config.reputation_refresh;
        computed_at.is_none_or(|(at, took)| at.elapsed() >= refresh.max(took * RECOMPUTE_SPACING))
    }

    /// Reads all feedback and replaces the snapshot; the caller holds
    /// `computed_at` and has cleared `dirty`, which is set again on failure.
    async fn recompute(
        &self,
        computed_at: &mut Option<(Instant, Duration)>,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let reports = match self.0.store.reports().await {
            Ok(reports) => reports,
            Err(e) => {
                self.0.dirty.store(true, Ordering::Release);
                // Spaced like a success, so that a database that is down
                // is not asked again (and logged) at every read.
                *computed_at = Some((Instant::now(), started.elapsed()));
                return Err(e);
            }
        };
        // About 0.2 s of CPU per million reports: off the async workers.
        let computing = tokio::task::spawn_blocking(move || {
            Book::compute(&reports, now_ms(), Params::default())
        });
        let book = match computing.await {
            Ok(book) => book,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down.
            Err(_) => {
                self.0.dirty.store(true, Ordering::Release);
                return Ok(());
            }
        };
        *self.0.book.write().await = Arc::new(book);
        *computed_at = Some((Instant::now(), started.elapsed()));
        Ok(())
    }

    /// Every registered agent, from the hot-read cache; checked against the
    /// shared generation when in doubt (see [`crate::catalog`]).
    ///
    /// # Errors
    /// [`CatalogError`] if a needed check or reload fails.
    pub async fn catalog(&self) -> Result<Arc<Catalog>, CatalogError> {
        let cache = &self.0.catalog;
        if let Some(catalog) = cache.fresh() {
            return Ok(catalog);
        }
        let _guard = cache.lock().await;
        // A check that finished while this one waited will do.
        if let Some(catalog) = cache.fresh() {
            return Ok(catalog);
        }
        let reload = cache.start_check();
        let checked = self.check_catalog(reload).await;
        if checked.is_err() {
            cache.failed(reload);
        }
        checked
    }

    async fn check_catalog(&self, reload: bool) -> Result<Arc<Catalog>, CatalogError> {
        let cache = &self.0.catalog;
        // Read before loading, so that the snapshot is never labelled newer
        // than what it holds.
        let generation = self.0.shared.generation().await?;
        let current = cache.current();
        if !reload && current.generation() == generation {
            cache.confirm();
            return Ok(current);
        }
        let shared = if reload {
            None
        } else {
            self.0.shared.snapshot(generation).await?
        };
        let rows = match shared.and_then(|bytes| serde_json::from_slice(&bytes).ok()) {
            Some(rows) => rows,
            None => {
                let rows = self.0.store.agents().await?;
                if self.0.shared.is_redis() {
                    self.share_snapshot(generation, &rows).await;
                }
                rows
            }
        };
        let catalog = Arc::new(Catalog::new(generation, rows));
        cache.replace(catalog.clone());
        Ok(catalog)
    }

    async fn share_snapshot(&self, generation: u64, rows: &[AgentRow]) {
        let stored = match serde_json::to_vec(rows) {
            Ok(bytes) => {
                self.0
                    .shared
                    .store_snapshot(generation, &bytes, catalog::SHARED_SNAPSHOT_TTL)
                    .await
            }
            Err(e) => {
                tracing::warn!(error = %e, "catalog snapshot not serialisable");
                return;
            }
        };
        // The others read the database instead: slower, not wrong.
        if let Err(e) = stored {
            tracing::warn!(error = %e, "catalog snapshot not shared");
        }
    }

    /// Records a committed change to what searches return (registration,
    /// update, deregistration, new addresses), for every instance.
    pub async fn catalog_changed(&self) {
        match self.0.shared.bump_generation().await {
            Ok(_) => self.0.catalog.doubt(),
            Err(e) => {
                // This instance reloads from the database; the others see the
                // change when its event reaches them, or at their next reload.
                tracing::warn!(error = %e, "catalog generation not bumped");
                self.0.catalog.lagged();
            }
        }
    }

    /// An agent's health at `now`.
    #[must_use]
    pub fn health(&self, last_seen: i64, now: i64) -> Health {
        let silent = u128::try_from(now.saturating_sub(last_seen)).unwrap_or(0);
        if silent >= self.0.config.offline_after.as_millis() {
            Health::Offline
        } else if silent >= self.0.config.stale_after.as_millis() {
            Health::Stale
        } else {
            Health::Online
        }
    }

    /// Share of the time since registration covered by heartbeats, each
    /// covering one heartbeat interval.
    #[must_use]
    pub fn uptime(&self, agent: &AgentRow, now: i64) -> f64 {
        let interval = self.0.config.heartbeat_interval.as_millis() as f64;
        let lived = (now.saturating_sub(agent.registered_at) as f64).max(interval);
        ((agent.heartbeats.saturating_add(1)) as f64 * interval / lived).clamp(0.0, 1.0)
    }

    /// Publishes an event, logging (not failing) if it cannot be sent: the
    /// write it reports has already been stored.
    pub async fn announce(
        &self,
        kind: EventKind,
        agent: &str,
        health: Option<Health>,
        reputation: Option<f64>,
    ) {
        let event = Event {
            kind,
            agent: agent.to_owned(),
            at_ms: now_ms(),
            health,
            reputation,
        };
        if let Err(e) = self.0.shared.publish(&event).await {
            tracing::warn!(error = %e, ?kind, "live event lost");
        }
    }
}

/// The wall clock in Unix milliseconds.
#[must_use]
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::FeedbackEntry;

    async fn app(refresh: Duration) -> App {
        let config = Config {
            reputation_refresh: refresh,
            ..Config::ephemeral()
        };
        let store = Store::connect(&config.database_url).await.unwrap();
        App::new(config, store, Shared::local()).await.unwrap()
    }

    async fn rate(app: &App, n: usize) {
        let entry = FeedbackEntry {
            rater: format!("rater-{n}"),
            agent: "agent".into(),
            interaction: format!("interaction-{n}"),
            capability: "llm/chat".into(),
            success: true,
            latency_ms: 10,
            rating: Some(5),
            at_ms: now_ms(),
        };
        assert!(app.store().insert_feedback(&entry).await.unwrap());
        app.feedback_changed();
    }

    async fn feedback(app: &App) -> u64 {
        app.book().await.unwrap().get("agent").breakdown.feedback
    }

    /// A read after feedback answers from the snapshot at once; the
    /// recompute runs in the background and later reads see it.
    #[tokio::test]
    async fn reads_do_not_wait_for_a_recompute() {
        let app = app(Duration::from_millis(1)).await;
        rate(&app, 1).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(feedback(&app).await, 0, "the snapshot from before");
        let deadline = Instant::now() + Duration::from_secs(10);
        while feedback(&app).await == 0 {
            assert!(Instant::now() < deadline, "the recompute never ran");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(feedback(&app).await, 1);
    }

    /// The first snapshot is computed before the registry serves, however
    /// long the refresh: feedback stored before a restart counts at once.
    #[tokio::test]
    async fn a_registry_starts_with_the_stored_reputations() {
        let config = Config {
            reputation_refresh: Duration::from_secs(3600),
            ..Config::ephemeral()
        };
        let store = Store::connect(&config.database_url).await.unwrap();
        let first = App::new(config.clone(), store.clone(), Shared::local())
            .await
            .unwrap();
        rate(&first, 1).await;
        let again = App::new(config, store, Shared::local()).await.unwrap();
        assert_eq!(feedback(&again).await, 1);
    }

    /// A recompute that fails (the database is down) waits like one that
    /// succeeded before the next try, rather than at every read.
    #[tokio::test]
    async fn a_failed_recompute_is_not_retried_at_once() {
        // Long enough that a busy machine does not make the check late.
        let app = app(Duration::from_millis(500)).await;
        rate(&app, 1).await;
        tokio::time::sleep(Duration::from_millis(550)).await;
        assert!(app.recompute_due());
        app.store().close().await;
        assert!(app.recompute_now().await.is_err());
        assert!(!app.recompute_due(), "retried at once");
        assert!(app.0.dirty.load(Ordering::Acquire), "still to do");
    }

    /// With a zero refresh, a read after feedback waits and sees it.
    #[tokio::test]
    async fn a_zero_refresh_reads_its_writes() {
        let app = app(Duration::ZERO).await;
        for n in 1..=3 {
            rate(&app, n).await;
            assert_eq!(feedback(&app).await, n as u64);
        }
    }
}
