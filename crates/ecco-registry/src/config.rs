//! The service's configuration. The CLI fills it from flags, environment
//! variables and a TOML file; every field has a default that a newcomer can
//! run with.

use std::net::SocketAddr;
use std::time::Duration;

/// Registry configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address to serve HTTP on.
    pub listen: SocketAddr,
    /// `sqlite:PATH` (default `sqlite:ecco-registry.db`) or `postgres://…`.
    pub database_url: String,
    /// Redis, for state shared by several instances (nonces, rate limits,
    /// live events, cache). Without it each instance keeps these in memory.
    pub redis_url: Option<String>,
    /// When set, reads need `Authorization: Bearer <token>`.
    pub read_token: Option<String>,
    /// When set, the admin endpoints accept `Authorization: Bearer <token>`;
    /// otherwise they are disabled.
    pub admin_token: Option<String>,
    /// How far a signed request's timestamp may be from the registry's clock.
    pub clock_skew: Duration,
    /// The heartbeat period agents are expected to keep (used for uptime).
    pub heartbeat_interval: Duration,
    /// Without a heartbeat for this long an agent is stale.
    pub stale_after: Duration,
    /// Without a heartbeat for this long an agent is offline.
    pub offline_after: Duration,
    /// How often health is re-evaluated for live events.
    pub sweep_every: Duration,
    /// How stale the reputation snapshot may get while feedback arrives
    /// (longer when recomputing takes more than a tenth of it); zero
    /// recomputes on every read after new feedback.
    pub reputation_refresh: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest page size accepted.
    pub max_per_page: u32,
    /// Signed writes allowed per agent per minute.
    pub writes_per_minute: u32,
    /// Feedback reports allowed per rater per minute.
    pub feedback_per_minute: u32,
    /// Longest the hot-read catalog is trusted without checking its
    /// generation (changes made through this instance, or announced by
    /// another over Redis, are seen at once; this bounds the rest).
    pub catalog_check: Duration,
    /// How long the analytics rows (registrations and per-minute activity)
    /// are kept; older ones are deleted hourly. Feedback is kept: reputation
    /// needs it.
    pub retention: Duration,
    /// Keep and serve only addresses that reach beyond one network
    /// ([`address::Reach::Public`](crate::address::Reach::Public)): for a
    /// registry open to the internet, whose clients must not be sent to
    /// addresses on their own LAN. Off by default, since a private
    /// registry serves a private network.
    pub public_addresses_only: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            database_url: "sqlite:ecco-registry.db".to_owned(),
            redis_url: None,
            read_token: None,
            admin_token: None,
            clock_skew: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(30),
            stale_after: Duration::from_secs(90),
            offline_after: Duration::from_secs(300),
            sweep_every: Duration::from_secs(5),
            reputation_refresh: Duration::from_millis(200),
            // A capability document may be 256 KiB; leave room for the rest.
            max_body_bytes: ecco_core::limits::MAX_DOCUMENT_BYTES + 16 * 1024,
            max_per_page: 100,
            writes_per_minute: 600,
            feedback_per_minute: 120,
            catalog_check: Duration::from_secs(1),
            retention: Duration::from_secs(90 * 24 * 3600),
            public_addresses_only: false,
        }
    }
}

impl Config {
    /// An in-memory SQLite configuration on an ephemeral port, for tests.
    #[must_use]
    pub fn ephemeral() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: "sqlite::memory:".to_owned(),
            reputation_refresh: Duration::ZERO,
            ..Self::default()
        }
    }
}
