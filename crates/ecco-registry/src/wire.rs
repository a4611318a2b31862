//! The registry's JSON wire types, shared by the service and its client.
//!
//! Request bodies reject unknown fields: a client cannot slip in fields it
//! may not set (reputation, health), and a typo is an error, not a no-op.

use ecco_core::{Capability, CapabilityDocument};
use serde::{Deserialize, Serialize};

use crate::receipt::Receipt;

#[cfg(feature = "server")]
use utoipa::ToSchema;

/// Longest agent name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Most addresses an agent may list.
pub const MAX_ADDRESSES: usize = 16;
/// Longest address accepted, in bytes.
pub const MAX_ADDRESS_LEN: usize = 256;

/// `PUT /v1/agents/{peer_id}`: register an agent, or replace its capabilities
/// and addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
#[cfg_attr(feature = "server", schema(example = registration_example))]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// A display name (1 to 128 bytes).
    pub name: String,
    /// The capability document the agent also announces on the mesh.
    #[cfg_attr(feature = "server", schema(value_type = Object))]
    pub capabilities: CapabilityDocument,
    /// Multiaddrs where the agent can be dialled (at most 16).
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// A valid registration for the OpenAPI document, built from the real types
/// so that it cannot drift from what the service accepts.
#[cfg(feature = "server")]
fn registration_example() -> serde_json::Value {
    let capability = "llm/chat small@1.2.0 +summarize +french price=0.002 region=eu"
        .parse::<Capability>()
        .ok();
    let registration = capability
        .and_then(|c| CapabilityDocument::new(vec![c]).ok())
        .map(|capabilities| Registration {
            name: "summarizer".to_owned(),
            capabilities,
            addresses: vec!["/ip4/127.0.0.1/tcp/4001".to_owned()],
        });
    serde_json::to_value(registration).unwrap_or_default()
}

/// `POST /v1/agents/{peer_id}/heartbeat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// New addresses, when they changed since the registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
}

/// An agent's health, derived by the registry from its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// A heartbeat arrived within the stale threshold.
    Online,
    /// The last heartbeat is older than the stale threshold.
    Stale,
    /// The last heartbeat is older than the offline threshold.
    Offline,
}

impl Health {
    /// The name used on the wire and in query strings.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Stale => "stale",
            Self::Offline => "offline",
        }
    }
}

/// Reputation on `[0, 100]` with what it is made of (see docs/REGISTRY.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct Reputation {
    /// The score on `[0, 100]`.
    pub score: f64,
    /// The breakdown of the score.
    pub breakdown: Breakdown,
}

/// The parts of a reputation score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct Breakdown {
    /// The score an agent starts from, on `[0, 100]`.
    pub prior: f64,
    /// How many (trusted, undecayed) feedbacks the prior weighs as.
    pub prior_weight: f64,
    /// The total weight of the feedback received, after trust and decay.
    pub evidence_weight: f64,
    /// The weighted mean of the feedback scores, on `[0, 100]` (`null`
    /// without feedback).
    pub evidence_score: Option<f64>,
    /// `evidence_weight / (evidence_weight + prior_weight)`.
    pub confidence: f64,
    /// Feedback reports received.
    pub feedback: u64,
    /// Distinct raters among them.
    pub raters: u64,
    /// Share of reported interactions that succeeded (`null` without feedback).
    pub success_rate: Option<f64>,
    /// Mean star rating, 1 to 5 (`null` without ratings).
    pub mean_rating: Option<f64>,
}

/// Everything the registry knows about one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct AgentDetail {
    /// The agent's peer id.
    pub peer_id: String,
    /// Its display name.
    pub name: String,
    /// Its capability document.
    #[cfg_attr(feature = "server", schema(value_type = Object))]
    pub capabilities: CapabilityDocument,
    /// Its addresses.
    pub addresses: Vec<String>,
    /// First registration, Unix milliseconds.
    pub registered_at_ms: i64,
    /// Last registration update, Unix milliseconds.
    pub updated_at_ms: i64,
    /// Last heartbeat (or registration), Unix milliseconds.
    pub last_seen_ms: i64,
    /// Health from the heartbeats.
    pub health: Health,
    /// Share of the time since registration covered by heartbeats, `[0, 1]`.
    pub uptime: f64,
    /// Reputation and its breakdown.
    pub reputation: Reputation,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct SearchHit {
    /// The agent's peer id.
    pub peer_id: String,
    /// Its display name.
    pub name: String,
    /// Its addresses.
    pub addresses: Vec<String>,
    /// Health from the heartbeats.
    pub health: Health,
    /// Reputation score on `[0, 100]`.
    pub reputation: f64,
    /// The matcher's score of its best capability, `[0, 1]`.
    pub match_score: f64,
    /// What results are ordered by: `0.7 × match_score + 0.3 × reputation / 100`.
    pub rank: f64,
    /// The capability that matched best.
    #[cfg_attr(feature = "server", schema(value_type = Object))]
    pub capability: Capability,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct Page<T> {
    /// The results on this page.
    pub items: Vec<T>,
    /// Results over all pages.
    pub total: u64,
    /// This page, from 1.
    pub page: u32,
    /// Results per page.
    pub per_page: u32,
}

/// `POST /v1/feedback`: how an interaction with an agent went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    /// The receipt the rated agent signed for this interaction.
    pub receipt: Receipt,
    /// Whether the interaction succeeded.
    pub success: bool,
    /// Observed latency in milliseconds (at most one hour).
    pub latency_ms: u32,
    /// A star rating, 1 to 5; absent when the client only reports the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
}

/// A feedback report as the registry shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct FeedbackEntry {
    /// Who reported it.
    pub rater: String,
    /// The rated agent.
    pub agent: String,
    /// The interaction, from the receipt.
    pub interaction: String,
    /// The capability type used.
    pub capability: String,
    /// Whether it succeeded.
    pub success: bool,
    /// Observed latency in milliseconds.
    pub latency_ms: u32,
    /// The star rating, if any.
    pub rating: Option<u8>,
    /// When it was reported, Unix milliseconds.
    pub at_ms: i64,
}

/// One point of a time series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct Point {
    /// Start of the bucket, Unix milliseconds.
    pub t_ms: i64,
    /// The value over that bucket.
    pub value: u64,
}

/// A time series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct Series {
    /// `active_agents`, `registrations`, `requests` or `ratings`.
    pub metric: String,
    /// Bucket width in seconds.
    pub bucket_secs: u32,
    /// Buckets from the oldest, empty ones included.
    pub points: Vec<Point>,
}

/// A capability type and how many registered agents offer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct TopCapability {
    /// The capability type, such as `llm/chat`.
    pub capability: String,
    /// Registered agents offering it.
    pub agents: u64,
}

/// Counts of agents by health, now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct HealthCounts {
    /// Online agents.
    pub online: u64,
    /// Stale agents.
    pub stale: u64,
    /// Offline agents.
    pub offline: u64,
}

/// What kind of thing happened, on the live event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An agent registered for the first time (or again after leaving).
    Registered,
    /// An agent changed its capabilities or addresses.
    Updated,
    /// An agent sent a heartbeat.
    Heartbeat,
    /// An agent missed its heartbeats: it became stale or offline.
    HeartbeatMissed,
    /// An agent's health changed (any direction).
    Health,
    /// An agent's reputation changed after feedback.
    Reputation,
    /// An agent deregistered, or an operator removed it.
    Deregistered,
}

/// One live event (`GET /v1/events`, server-sent events; the SSE event name
/// is the kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// To which agent.
    pub agent: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// The agent's health after the event, where it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// The agent's reputation after the event, where it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reputation: Option<f64>,
}

/// Every error response: `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A machine-readable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct ErrorDetail {
    /// Stable code such as `bad_signature`, `replayed_nonce`, `forbidden`.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// The registry right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct Overview {
    /// Agents by health.
    pub agents: HealthCounts,
    /// Registered agents.
    pub registered: u64,
}

/// A registered agent and its reputation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct TopAgent {
    /// Peer id.
    pub peer_id: String,
    /// Display name.
    pub name: String,
    /// Reputation on `[0, 100]`.
    pub reputation: f64,
    /// Health now.
    pub health: Health,
}

/// Whether the registry can serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct Status {
    /// `ok`, or `degraded` when the database does not answer.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// Whether shared state lives in Redis.
    pub redis: bool,
    /// This registry's id, which every signed write must cover (see
    /// [`crate::signing`]).
    pub registry: String,
}

/// `GET /v1/agents/{peer_id}/activity`: when an agent was heard from
/// (registrations and heartbeats), minute by minute, over the last hours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct Activity {
    /// The agent's peer id.
    pub peer_id: String,
    /// How many hours back the history goes.
    pub hours: u32,
    /// Bucket width in seconds (`hours` minutes: always 60 buckets).
    pub bucket_secs: u32,
    /// Buckets from the oldest, empty ones included.
    pub buckets: Vec<Presence>,
}

/// How present an agent was over one bucket of its activity history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
pub struct Presence {
    /// Start of the bucket, Unix milliseconds.
    pub t_ms: i64,
    /// Minutes of the bucket in which the agent was heard from.
    pub minutes: u32,
    /// `minutes` over the bucket's minutes elapsed so far, `[0, 1]`.
    pub share: f64,
}
