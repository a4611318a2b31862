//! State that several registry instances must share: single-use nonces, rate
//! limit windows, the live event stream, and the generation and snapshots of
//! the hot-read catalog (see [`crate::catalog`]). With Redis it is shared;
//! without, an in-process equivalent serves one instance.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use tokio::sync::broadcast;

use crate::wire::Event;

/// Prefix of the registry-scoped Redis names (nonces, rate windows, the live
/// events channel and the catalog's keys), under the registry's id.
const SCOPE_PREFIX: &str = "ecco-registry";
/// Most entries the in-process nonce and rate tables hold before pruning.
const LOCAL_TABLE_CAP: usize = 1 << 20;
/// Live events buffered per subscriber; a slower one skips ahead.
const EVENT_BUFFER: usize = 1024;

/// Shared-state failures (Redis unreachable or misbehaving).
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The in-process table is full of live entries.
    #[error("too many nonces or rate windows in flight")]
    Full,
}

/// Nonces, rate limits and live events.
#[derive(Clone)]
pub struct Shared {
    backend: Backend,
    events: broadcast::Sender<Event>,
    // `ecco-registry:<registry id>`: names this registry in the Redis keys
    // and channel that only its own instances may share.
    scope: Arc<str>,
    // Ends the Redis relay task when the last clone goes.
    _relay: Option<Arc<AbortOnDrop>>,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone)]
enum Backend {
    Local(Arc<Local>),
    Redis(ConnectionManager),
}

#[derive(Default)]
struct Local {
    nonces: Mutex<HashMap<String, Instant>>,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            Backend::Local(_) => "local",
            Backend::Redis(_) => "redis",
        };
        f.debug_struct("Shared").field("backend", &kind).finish()
    }
}

impl Shared {
    /// In-process state for a single instance.
    #[must_use]
    pub fn local() -> Self {
        Self {
            backend: Backend::Local(Arc::default()),
            events: broadcast::channel(EVENT_BUFFER).0,
            scope: Arc::from(SCOPE_PREFIX),
            _relay: None,
        }
    }

    /// State in Redis at `url` for the registry `registry_id` (its database's
    /// [`registry_id`](crate::store::Store::registry_id)); events published by
    /// any of its instances reach the subscribers of every one of them.
    /// Registries sharing a Redis but not a database never see each other's
    /// nonces, rate windows, claims, events or cached catalog.
    ///
    /// # Errors
    /// [`SharedError::Redis`] if Redis cannot be reached.
    pub async fn redis(url: &str, registry_id: &str) -> Result<Self, SharedError> {
        let scope: Arc<str> = Arc::from(format!("{SCOPE_PREFIX}:{registry_id}"));
        let client = redis::Client::open(url)?;
        let manager = ConnectionManager::new(client.clone()).await?;
        let events = broadcast::channel(EVENT_BUFFER).0;
        // Fail now, not on the first request, if the subscription cannot start.
        let pubsub = client.get_async_pubsub().await?;
        let relay = tokio::spawn(relay_events(
            client,
            pubsub,
            format!("{scope}:events"),
            events.clone(),
        ));
        Ok(Self {
            backend: Backend::Redis(manager),
            events,
            scope,
            _relay: Some(Arc::new(AbortOnDrop(relay.abort_handle()))),
        })
    }

    /// Whether this is Redis-backed.
    #[must_use]
    pub fn is_redis(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// Claims `key` for `ttl`; `false` if it was already claimed (a replay).
    ///
    /// # Errors
    /// [`SharedError`] if the claim cannot be recorded.
    pub async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, SharedError> {
        match &self.backend {
            Backend::Local(local) => {
                let now = Instant::now();
                let mut nonces = local.nonces.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(&until) = nonces.get(key)
                    && until > now
                {
                    return Ok(false);
                }
                if nonces.len() >= LOCAL_TABLE_CAP {
                    nonces.retain(|_, until| *until > now);
                    if nonces.len() >= LOCAL_TABLE_CAP {
                        return Err(SharedError::Full);
                    }
                }
                nonces.insert(key.to_owned(), now + ttl);
                Ok(true)
            }
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let set: Option<String> = redis::cmd("SET")
                    .arg(format!("{}:nonce:{key}", self.scope))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
                    .query_async(&mut conn)
                    .await?;
                Ok(set.is_some())
            }
        }
    }

    /// Counts one hit on `key` in a fixed window; `false` once more than
    /// `limit` hits fell in the current window.
    ///
    /// # Errors
    /// [`SharedError`] if the count cannot be kept.
    pub async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<bool, SharedError> {
        match &self.backend {
            Backend::Local(local) => {
                let now = Instant::now();
                let mut windows = local.windows.lock().unwrap_or_else(|e| e.into_inner());
                if windows.len() >= LOCAL_TABLE_CAP && !windows.contains_key(key) {
                    windows.retain(|_, (start, _)| now.duration_since(*start) < window);
                    if windows.len() >= LOCAL_TABLE_CAP {
                        return Err(SharedError::Full);
                    }
                }
                let entry = windows.entry(key.to_owned()).or_insert((now, 0));
                if now.duration_since(entry.0) >= window {
                    *entry = (now, 0);
                }
                entry.1 = entry.1.saturating_add(1);
                Ok(entry.1 <= limit)
            }
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let key = format!("{}:rate:{key}", self.scope);
                let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
                let (count,): (u64,) = redis::pipe()
                    .atomic()
                    .incr(&key, 1)
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(window_ms)
                    .arg("NX")
                    .ignore()
                    .query_async(&mut conn)
                    .await?;
                Ok(count <= u64::from(limit))
            }
        }
    }

    /// Records that the catalog changed (after the change committed); the
    /// new generation.
    ///
    /// # Errors
    /// [`SharedError::Redis`] if Redis cannot count it.
    pub async fn bump_generation(&self) -> Result<u64, SharedError> {
        match &self.backend {
            Backend::Local(local) => Ok(local.generation.fetch_add(1, Ordering::AcqRel) + 1),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                Ok(conn
                    .incr(format!("{}:catalog:generation", self.scope), 1)
                    .await?)
            }
        }
    }

    /// The catalog's current generation.
    ///
    /// # Errors
    /// [`SharedError::Redis`] if Redis cannot be read.
    pub async fn generation(&self) -> Result<u64, SharedError> {
        match &self.backend {
            Backend::Local(local) => Ok(local.generation.load(Ordering::Acquire)),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let generation: Option<u64> = conn
                    .get(format!("{}:catalog:generation", self.scope))
                    .await?;
                Ok(generation.unwrap_or(0))
            }
        }
    }

    /// The catalog snapshot another instance stored for `generation`, if any
    /// (always `None` in process: there is no other instance).
    ///
    /// # Errors
    /// [`SharedError::Redis`] if Redis cannot be read.
    pub async fn snapshot(&self, generation: u64) -> Result<Option<Vec<u8>>, SharedError> {
        match &self.backend {
            Backend::Local(_) => Ok(None),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                Ok(conn
                    .get(format!("{}:catalog:snapshot:{generation}", self.scope))
                    .await?)
            }
        }
    }

    /// Stores a catalog snapshot for the other instances, for `ttl`.
    ///
    /// # Errors
    /// [`SharedError::Redis`] if Redis refuses it.
    pub async fn store_snapshot(
        &self,
        generation: u64,
        bytes: &[u8],
        ttl: Duration,
    ) -> Result<(), SharedError> {
        match &self.backend {
            Backend::Local(_) => Ok(()),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let _: () = conn
                    .set_ex(
                        format!("{}:catalog:snapshot:{generation}", self.scope),
                        bytes,
                        ttl.as_secs().max(1),
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// Publishes a live event to every subscriber (of every instance).
    ///
    /// # Errors
    /// [`SharedError::Redis`] if Redis refuses the publication.
    pub async fn publish(&self, event: &Event) -> Result<(), SharedError> {
        match &self.backend {
            Backend::Local(_) => {
                // No subscriber is not an error.
                let _ = self.events.send(event.clone());
                Ok(())
            }
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let json = serde_json::to_string(event).unwrap_or_default();
                let _: u64 = conn.publish(format!("{}:events", self.scope), json).await?;
                Ok(())
            }
        }
    }

    /// Receives live events from now on.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Live subscribers on this instance.
    #[must_use]
    pub fn subscribers(&self) -> usize {
        self.events.receiver_count()
    }
}

/// Forwards Redis pub/sub messages to this instance's subscribers, and
/// resubscribes with backoff when the connection drops.
async fn relay_events(
    client: redis::Client,
    mut pubsub: redis::aio::PubSub,
    channel: String,
    events: broadcast::Sender<Event>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match pubsub.subscribe(&channel).await {
            Ok(()) => {
                backoff = Duration::from_millis(100);
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    match serde_json::from_str::<Event>(&payload) {
                        Ok(event) => {
                            let _ = events.send(event);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "ignoring a malformed event from redis")
                        }
                    }
                }
                tracing::warn!("redis event subscription closed; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "redis event subscription failed; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
        match client.get_async_pubsub().await {
            Ok(fresh) => pubsub = fresh,
            Err(e) => tracing::warn!(error = %e, "redis unreachable for events"),
        }
    }
}
