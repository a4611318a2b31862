//! Running the service: storage and shared state, the HTTP listener, and the
//! background sweeper that turns silence into health events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::shared::{Shared, SharedError};
use crate::state::{App, now_ms};
use crate::store::{Store, StoreError};
use crate::wire::{EventKind, Health, HealthCounts};

/// Why the registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis could not be reached.
    #[error(transparent)]
    Shared(#[from] SharedError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Opens the database (applying migrations) and the shared state.
///
/// # Errors
/// [`ServeError`] if either cannot be reached.
pub async fn open(config: Config) -> Result<App, ServeError> {
    let store = Store::connect(&config.database_url).await?;
    let shared = match &config.redis_url {
        Some(url) => Shared::redis(url, &store.registry_id().await?).await?,
        None => Shared::local(),
    };
    Ok(App::new(config, store, shared).await?)
}

/// A running registry.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    app: App,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    sweeper: JoinHandle<()>,
}

impl Running {
    /// The address it listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, such as `http://127.0.0.1:7700`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its state.
    #[must_use]
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Stops accepting, lets requests in flight finish, then closes the
    /// database. Live event streams are cut.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        // Live event streams never end on their own; graceful shutdown waits
        // for open connections.
        self.app.close_streams();
        self.sweeper.abort();
        match tokio::time::timeout(Duration::from_secs(5), self.server).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "registry server ended with an error"),
            Ok(_) => {}
            Err(_) => tracing::warn!("registry server did not stop within 5 s"),
        }
        self.app.store().close().await;
    }

    /// Waits until the server ends on its own (an I/O error).
    ///
    /// # Errors
    /// The I/O error that ended it.
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match (&mut self.server).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Opens storage and shared state, binds `config.listen` and serves.
///
/// # Errors
/// [`ServeError`] if storage, Redis or the address is unavailable.
pub async fn serve(config: Config) -> Result<Running, ServeError> {
    let addr = config.listen;
    let app = open(config).await?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let router = crate::api::router(app.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    let sweeper = tokio::spawn(sweep(app.clone()));
    tracing::info!(%addr, "registry listening");
    Ok(Running {
        addr,
        app,
        stop,
        server,
        sweeper,
    })
}

/// How often analytics rows older than [`Config::retention`] are deleted.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Re-evaluates health periodically, announcing agents that went quiet,
/// follows reputation changes made by other instances, and prunes old
/// analytics rows.
async fn sweep(app: App) {
    let mut known: HashMap<String, Health> = HashMap::new();
    let mut events = app.shared().subscribe();
    let mut tick = tokio::time::interval(app.config().sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = prune.tick() => {
                let retention = i64::try_from(app.config().retention.as_millis()).unwrap_or(i64::MAX);
                match app.store().prune(now_ms().saturating_sub(retention)).await {
                    Ok(rows) if rows > 0 => tracing::info!(rows, "pruned analytics rows past retention"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning failed"),
                }
            }
            _ = tick.tick() => {
                if let Err(e) = sweep_once(&app, &mut known).await {
                    tracing::warn!(error = %e, "health sweep failed");
                }
            }
            event = events.recv() => match event {
                Ok(event) if event.kind == EventKind::Reputation => app.feedback_changed(),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => app.feedback_changed(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

async fn sweep_once(
    app: &App,
    known: &mut HashMap<String, Health>,
) -> Result<(), crate::error::ApiError> {
    let now = now_ms();
    let catalog = app.catalog().await?;
    let mut counts = HealthCounts::default();
    let mut changes = Vec::new();
    let mut seen = HashMap::with_capacity(catalog.agents().len());
    for (i, agent) in catalog.agents().iter().enumerate() {
        let health = app.health(catalog.last_seen(i), now);
        match health {
            Health::Online => counts.online += 1,
            Health::Stale => counts.stale += 1,
            Health::Offline => counts.offline += 1,
        }
        if known
            .get(&agent.peer_id)
            .is_some_and(|&before| before != health)
        {
            changes.push((agent.peer_id.clone(), health));
        }
        seen.insert(agent.peer_id.clone(), health);
    }
    *known = seen;
    app.metrics().set_health(&counts);
    // With several instances sharing Redis, one of them announces each period.
    let period = now.div_euclid(
        i64::try_from(app.config().sweep_every.as_millis())
            .unwrap_or(1)
            .max(1),
    );
    if changes.is_empty()
        || !app
            .shared()
            .claim(&format!("sweep:{period}"), app.config().sweep_every * 2)
            .await?
    {
        return Ok(());
    }
    for (peer_id, health) in changes {
        if health != Health::Online {
            app.announce(EventKind::HeartbeatMissed, &peer_id, Some(health), None)
                .await;
        }
        app.announce(EventKind::Health, &peer_id, Some(health), None)
            .await;
    }
    Ok(())
}
