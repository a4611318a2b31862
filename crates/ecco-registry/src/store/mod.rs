//! Storage: one interface, two real backends.
//!
//! [`Store`] speaks portable SQL through sqlx's `Any` driver to SQLite (the
//! embedded default: one file, no setup) or PostgreSQL (production), chosen by
//! the URL. Each dialect has its own migrations; every query is shared.
//! Times are Unix milliseconds in `BIGINT` columns.

mod migrations;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ecco_core::CapabilityDocument;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::reputation::Report;
use crate::wire::{FeedbackEntry, Point};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (`sqlite:` URLs).
    Sqlite,
    /// PostgreSQL (`postgres:` or `postgresql:` URLs).
    Postgres,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names neither SQLite nor PostgreSQL.
    #[error("unsupported database URL {0:?}: use sqlite:PATH or postgres://…")]
    UnsupportedUrl(String),
    /// The database failed or is unreachable.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row holds something the registry never writes.
    #[error("corrupt row for {peer_id}: {reason}")]
    Corrupt {
        /// The agent concerned.
        peer_id: String,
        /// What is wrong.
        reason: String,
    },
}

/// A registered agent, as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentRow {
    /// Peer id (base58).
    pub peer_id: String,
    /// Display name.
    pub name: String,
    /// Capability document.
    pub document: CapabilityDocument,
    /// Addresses.
    pub addresses: Vec<String>,
    /// First registration (of the current registration period).
    pub registered_at: i64,
    /// Last registration update.
    pub updated_at: i64,
    /// Last heartbeat or registration.
    pub last_seen: i64,
    /// Heartbeats received since registering.
    pub heartbeats: i64,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// A new agent, or one that had deregistered.
    Created,
    /// An existing registration replaced.
    Updated,
}

/// Countable happenings for the analytics series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// First registrations.
    Registrations,
    /// Interactions reported through feedback.
    Requests,
    /// Feedback carrying a star rating.
    Ratings,
}

/// The registry's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    // The last minute of activity recorded per agent through this handle, so
    // that most heartbeats are one statement instead of a transaction.
    recorded: Arc<Mutex<HashMap<String, i64>>>,
}

/// Most agents whose recorded minute is remembered before forgetting all.
const RECORDED_CAP: usize = 100_000;

const AGENT_COLUMNS: &str =
    "peer_id, name, document, addresses, registered_at, updated_at, last_seen, heartbeats";

impl Store {
    /// Connects to `url` (`sqlite:PATH`, `sqlite::memory:`, `postgres://…`),
    /// creating a SQLite file if needed, and applies the migrations.
    ///
    /// # Errors
    /// [`StoreError`] if the URL is unsupported, the database unreachable or a
    /// migration fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let (backend, url, max) = if let Some(rest) = url.strip_prefix("sqlite:") {
            // SQLite allows one writer at a time; more connections only queue.
            let memory = rest.contains(":memory:");
            let with_mode = if memory || rest.contains("mode=") {
                url.to_owned()
            } else if rest.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            // An in-memory database lives in one connection.
            (Backend::Sqlite, with_mode, if memory { 1 } else { 4 })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned(), 16)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run during a write; the busy timeout makes
                        // writers queue instead of failing.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = FULL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let migrator = sqlx::migrate::Migrator::new(migrations::Embedded(backend)).await?;
        migrator.run(&pool).await?;
        Ok(Self {
            pool,
            backend,
            recorded: Arc::default(),
        })
    }

    /// Which database this is.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// [`StoreError::Database`] if it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and
    /// writes second fails with `SQLITE_BUSY` when another writer commits in
    /// between, and no busy timeout can save it.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        Ok(self.pool.begin_with(begin).await?)
    }

    /// This registry's id, made at random on first use and kept in the
    /// database, so that every instance on this database shares it.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn registry_id(&self) -> Result<String, StoreError> {
        let mut raw = [0u8; 16];
        rand::fill(&mut raw);
        let fresh: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('registry_id', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(fresh)
        .execute(&self.pool)
        .await?;
        let (id,): (String,) = sqlx::query_as("SELECT value FROM meta WHERE key = 'registry_id'")
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Registers an agent or replaces its registration.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn upsert_agent(
        &self,
        peer_id: &str,
        name: &str,
        document: &CapabilityDocument,
        addresses: &[String],
        now: i64,
    ) -> Result<Upsert, StoreError> {
        let document = String::from_utf8_lossy(&document.to_json_vec()).into_owned();
        let addresses = serde_json::to_string(addresses).unwrap_or_else(|_| "[]".to_owned());
        // Every statement below takes the same five parameters.
        let statement = |sql: &'static str| {
            sqlx::query(sql)
                .bind(peer_id)
                .bind(name)
                .bind(document.as_str())
                .bind(addresses.as_str())
                .bind(now)
        };
        let mut tx = self.begin_write().await?;
        // Each step decides by what it changed, never by an earlier read: on
        // PostgreSQL two first registrations racing would both read "absent".
        // The loser's INSERT waits for the winner's commit and changes
        // nothing; its conditional UPDATEs then see the committed row.
        let inserted = statement(
            "INSERT INTO agents (peer_id, name, document, addresses, registered_at, updated_at, \
             last_seen, heartbeats, deregistered_at) VALUES ($1, $2, $3, $4, $5, $5, $5, 0, NULL) \
             ON CONFLICT (peer_id) DO NOTHING",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        // Back after deregistering: a fresh registration period.
        let returned = !inserted
            && statement(
                "UPDATE agents SET name = $2, document = $3, addresses = $4, registered_at = $5, \
                 updated_at = $5, last_seen = $5, heartbeats = 0, deregistered_at = NULL \
                 WHERE peer_id = $1 AND deregistered_at IS NOT NULL",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
        let outcome = if inserted || returned {
            insert_registration(&mut tx, peer_id, now).await?;
            Upsert::Created
        } else {
            statement(
                "UPDATE agents SET name = $2, document = $3, addresses = $4, updated_at = $5, \
                 last_seen = $5 WHERE peer_id = $1",
            )
            .execute(&mut *tx)
            .await?;
            Upsert::Updated
        };
        insert_activity(&mut tx, peer_id, now).await?;
        tx.commit().await?;
        self.record_minute(peer_id, now);
        Ok(outcome)
    }

    /// Records a heartbeat; the agent as now stored, or `None` if it is not
    /// registered (or its row is unreadable: registering again repairs it).
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn heartbeat(
        &self,
        peer_id: &str,
        addresses: Option<&[String]>,
        now: i64,
    ) -> Result<Option<AgentRow>, StoreError> {
        // NULL keeps the stored addresses.
        let addresses =
            addresses.map(|a| serde_json::to_string(a).unwrap_or_else(|_| "[]".to_owned()));
        let sql = format!(
            "UPDATE agents SET last_seen = $2, heartbeats = heartbeats + 1, \
             addresses = COALESCE($3, addresses) WHERE peer_id = $1 AND deregistered_at IS NULL \
             RETURNING {AGENT_COLUMNS}"
        );
        let update = sqlx::query(&sql).bind(peer_id).bind(now).bind(addresses);
        if self.minute_recorded(peer_id, now) {
            let row = update.fetch_optional(&self.pool).await?;
            return Ok(row.map(|row| readable(&row)).transpose()?.flatten());
        }
        let mut tx = self.begin_write().await?;
        let Some(row) = update.fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        let Some(agent) = readable(&row)? else {
            return Ok(None);
        };
        insert_activity(&mut tx, peer_id, now).await?;
        tx.commit().await?;
        self.record_minute(peer_id, now);
        Ok(Some(agent))
    }

    fn minute_recorded(&self, peer_id: &str, now: i64) -> bool {
        let recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        recorded.get(peer_id) == Some(&now.div_euclid(60_000))
    }

    fn record_minute(&self, peer_id: &str, now: i64) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        if recorded.len() >= RECORDED_CAP && !recorded.contains_key(peer_id) {
            recorded.clear();
        }
        recorded.insert(peer_id.to_owned(), now.div_euclid(60_000));
    }

    /// Deregisters an agent; `false` if it was not registered.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn deregister(&self, peer_id: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE agents SET deregistered_at = $2 WHERE peer_id = $1 AND deregistered_at IS NULL",
        )
        .bind(peer_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// One registered agent (`None` if its row is unreadable).
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn agent(&self, peer_id: &str) -> Result<Option<AgentRow>, StoreError> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE peer_id = $1 AND deregistered_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(peer_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| readable(&row)).transpose()?.flatten())
    }

    /// Every registered agent, by peer id (skipping unreadable rows).
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE deregistered_at IS NULL ORDER BY peer_id"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .filter_map(|row| readable(row).transpose())
            .collect()
    }

    /// Stores a feedback report; `false` if this rater already reported this
    /// interaction.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn insert_feedback(&self, f: &FeedbackEntry) -> Result<bool, StoreError> {
        // One statement, so no transaction: the request and rating series
        // are counted from this table itself.
        let inserted = sqlx::query(
            "INSERT INTO feedback (rater, agent, interaction, capability, success, latency_ms, rating, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (rater, interaction) DO NOTHING",
        )
        .bind(&f.rater)
        .bind(&f.agent)
        .bind(&f.interaction)
        .bind(&f.capability)
        .bind(i64::from(f.success))
        .bind(i64::from(f.latency_ms))
        .bind(f.rating.map(i64::from))
        .bind(f.at_ms)
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() > 0)
    }

    /// Every feedback report, for the reputation formula.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn reports(&self) -> Result<Vec<Report>, StoreError> {
        let rows = sqlx::query("SELECT rater, agent, success, rating, at FROM feedback")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Report {
                    rater: row.try_get(0)?,
                    agent: row.try_get(1)?,
                    success: row.try_get::<i64, _>(2)? != 0,
                    rating: row
                        .try_get::<Option<i64>, _>(3)?
                        .and_then(|r| u8::try_from(r).ok()),
                    at_ms: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// Recent feedback about `agent`, newest first, and how many there are.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn feedback_about(
        &self,
        agent: &str,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<FeedbackEntry>, u64), StoreError> {
        let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM feedback WHERE agent = $1")
            .bind(agent)
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(
            "SELECT rater, agent, interaction, capability, success, latency_ms, rating, at FROM feedback \
             WHERE agent = $1 ORDER BY at DESC, id DESC LIMIT $2 OFFSET $3",
        )
        .bind(agent)
        .bind(i64::from(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let entries = rows
            .iter()
            .map(|row| {
                Ok(FeedbackEntry {
                    rater: row.try_get(0)?,
                    agent: row.try_get(1)?,
                    interaction: row.try_get(2)?,
                    capability: row.try_get(3)?,
                    success: row.try_get::<i64, _>(4)? != 0,
                    latency_ms: u32::try_from(row.try_get::<i64, _>(5)?).unwrap_or(u32::MAX),
                    rating: row
                        .try_get::<Option<i64>, _>(6)?
                        .and_then(|r| u8::try_from(r).ok()),
                    at_ms: row.try_get(7)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok((entries, u64::try_from(total).unwrap_or(0)))
    }

    /// Deletes the analytics rows (registration events, per-minute activity)
    /// older than `before` (Unix ms); how many went.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        let events = sqlx::query("DELETE FROM events WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        let activity = sqlx::query("DELETE FROM activity WHERE minute < $1")
            .bind(before.div_euclid(60_000))
            .execute(&self.pool)
            .await?;
        Ok(events.rows_affected() + activity.rows_affected())
    }

    /// Counts of `metric` per bucket of `bucket_ms` since `since` (only the
    /// non-empty buckets).
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn series(
        &self,
        metric: Metric,
        since: i64,
        bucket_ms: i64,
    ) -> Result<Vec<Point>, StoreError> {
        let sql = match metric {
            Metric::Registrations => {
                "SELECT (at / $1) * $1, COUNT(*) FROM events \
                 WHERE kind = 'registration' AND at >= $2 GROUP BY 1 ORDER BY 1"
            }
            Metric::Requests => {
                "SELECT (at / $1) * $1, COUNT(*) FROM feedback WHERE at >= $2 GROUP BY 1 ORDER BY 1"
            }
            Metric::Ratings => {
                "SELECT (at / $1) * $1, COUNT(*) FROM feedback \
                 WHERE rating IS NOT NULL AND at >= $2 GROUP BY 1 ORDER BY 1"
            }
        };
        let rows: Vec<(i64, i64)> = sqlx::query_as(sql)
            .bind(bucket_ms)
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        Ok(points(rows))
    }

    /// Distinct agents heard from per bucket of `bucket_ms` since `since`.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn active_series(
        &self,
        since: i64,
        bucket_ms: i64,
    ) -> Result<Vec<Point>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT (minute * 60000 / $1) * $1, COUNT(DISTINCT agent) FROM activity \
             WHERE minute >= $2 GROUP BY 1 ORDER BY 1",
        )
        .bind(bucket_ms)
        .bind(since.div_euclid(60_000))
        .fetch_all(&self.pool)
        .await?;
        Ok(points(rows))
    }
}

fn points(rows: Vec<(i64, i64)>) -> Vec<Point> {
    rows.into_iter()
        .map(|(t_ms, n)| Point {
            t_ms,
            value: u64::try_from(n).unwrap_or(0),
        })
        .collect()
}

async fn insert_registration(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    agent: &str,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO events (kind, agent, at) VALUES ('registration', $1, $2)")
        .bind(agent)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn insert_activity(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    agent: &str,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO activity (agent, minute) VALUES ($1, $2) ON CONFLICT (agent, minute) DO NOTHING")
        .bind(agent)
        .bind(at.div_euclid(60_000))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An agent row, or `None` (logged) when it cannot be read back, so that one
/// bad row reads as unregistered instead of failing every catalog load.
fn readable(row: &sqlx::any::AnyRow) -> Result<Option<AgentRow>, StoreError> {
    match agent_row(row) {
        Ok(agent) => Ok(Some(agent)),
        Err(StoreError::Corrupt { peer_id, reason }) => {
            tracing::warn!(%peer_id, %reason, "skipping an unreadable agent row");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn agent_row(row: &sqlx::any::AnyRow) -> Result<AgentRow, StoreError> {
    let peer_id: String = row.try_get(0)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        peer_id: peer_id.clone(),
        reason,
    };
    let document: String = row.try_get(2)?;
    let document = CapabilityDocument::from_json_slice(document.as_bytes())
        .map_err(|e| corrupt(e.to_string()))?;
    let addresses: String = row.try_get(3)?;
    let addresses = serde_json::from_str(&addresses).map_err(|e| corrupt(e.to_string()))?;
    Ok(AgentRow {
        name: row.try_get(1)?,
        document,
        addresses,
        registered_at: row.try_get(4)?,
        updated_at: row.try_get(5)?,
        last_seen: row.try_get(6)?,
        heartbeats: row.try_get(7)?,
        peer_id,
    })
}

impl Store {
    /// Minutes in which `agent` was heard from, counted per bucket of
    /// `bucket_minutes` since the minute `since_minute` (only the non-empty
    /// buckets; `t_ms` is the bucket's start).
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn activity_of(
        &self,
        agent: &str,
        since_minute: i64,
        bucket_minutes: i64,
    ) -> Result<Vec<Point>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT (minute / $2) * $2 * 60000, COUNT(*) FROM activity \
             WHERE agent = $1 AND minute >= $3 GROUP BY 1 ORDER BY 1",
        )
        .bind(agent)
        .bind(bucket_minutes.max(1))
        .bind(since_minute)
        .fetch_all(&self.pool)
        .await?;
        Ok(points(rows))
    }
}
