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
        app.book().await?;
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

    /// The reputation snapshot, recomputed from the stored feedback when
    /// feedback arrived and the last computation is older than
    /// [`Config::reputation_refresh`] (or ten times the last computation,
    /// if longer). While one caller recomputes, the others get the previous
    /// snapshot.
    ///
    /// # Errors
    /// [`StoreError`] if the feedback cannot be read.
    pub async fn book(&self) -> Result<Arc<Book>, StoreError> {
        if !self.0.dirty.load(Ordering::Acquire) {
            return Ok(self.0.book.read().await.clone());
        }
        // One request recomputes; the others answer from the current
        // snapshot instead of queueing behind it.
        // A zero refresh (tests) waits and recomputes on every read after
        // feedback, so that a read sees the writes before it.
        let refresh = self.0.config.reputation_refresh;
        let mut computed_at = if refresh.is_zero() {
            self.0.computed_at.lock().await
        } else {
            let Ok(guard) = self.0.computed_at.try_lock() else {
                return Ok(self.0.book.read().await.clone());
            };
            guard
        };
        // Recomputing reads all feedback: as it grows, space the runs out so
        // that they take at most a tenth of the time.
        let due = computed_at.is_none_or(|(at, took)| {
            refresh.is_zero() || at.elapsed() >= refresh.max(took * RECOMPUTE_SPACING)
        });
        if due && self.0.dirty.swap(false, Ordering::AcqRel) {
            let started = Instant::now();
            let reports = match self.0.store.reports().await {
                Ok(reports) => reports,
                Err(e) => {
                    self.0.dirty.store(true, Ordering::Release);
                    return Err(e);
                }
            };
            let book = Arc::new(Book::compute(&reports, now_ms(), Params::default()));
            *self.0.book.write().await = book;
            *computed_at = Some((Instant::now(), started.elapsed()));
        }
        drop(computed_at);
        Ok(self.0.book.read().await.clone())
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
