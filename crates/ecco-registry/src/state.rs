//! What every request handler shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, RwLock};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::reputation::{Book, Params};
use crate::shared::Shared;
use crate::store::{AgentRow, Store, StoreError};
use crate::wire::{Event, EventKind, Health};

/// The registry's shared state: configuration, storage, shared state, metrics
/// and the reputation snapshot. Cheap to clone.
#[derive(Clone, Debug)]
pub struct App(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    config: Config,
    store: Store,
    shared: Shared,
    metrics: Metrics,
    book: RwLock<Arc<Book>>,
    // Feedback arrived since the snapshot was computed.
    dirty: AtomicBool,
    // Held while recomputing, so that concurrent readers do not all recompute.
    computed_at: Mutex<Option<Instant>>,
    // Flips to true when the server shuts down, ending live event streams.
    closing: tokio::sync::watch::Sender<bool>,
}

impl App {
    /// Assembles the state and computes the first reputation snapshot.
    ///
    /// # Errors
    /// [`StoreError`] if the feedback cannot be read.
    pub async fn new(config: Config, store: Store, shared: Shared) -> Result<Self, StoreError> {
        let app = Self(Arc::new(Inner {
            config,
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
    /// [`Config::reputation_refresh`].
    ///
    /// # Errors
    /// [`StoreError`] if the feedback cannot be read.
    pub async fn book(&self) -> Result<Arc<Book>, StoreError> {
        if !self.0.dirty.load(Ordering::Acquire) {
            return Ok(self.0.book.read().await.clone());
        }
        let mut computed_at = self.0.computed_at.lock().await;
        let due = computed_at.is_none_or(|at| at.elapsed() >= self.0.config.reputation_refresh);
        if due && self.0.dirty.swap(false, Ordering::AcqRel) {
            let reports = match self.0.store.reports().await {
                Ok(reports) => reports,
                Err(e) => {
                    self.0.dirty.store(true, Ordering::Release);
                    return Err(e);
                }
            };
            let book = Arc::new(Book::compute(&reports, now_ms(), Params::default()));
            *self.0.book.write().await = book;
            *computed_at = Some(Instant::now());
        }
        drop(computed_at);
        Ok(self.0.book.read().await.clone())
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
