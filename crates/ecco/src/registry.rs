//! The optional registry, from the agent's side: the client, the receipts
//! agents sign for the clients they serve, and the feedback clients report.
//!
//! Give an agent a registry URL ([`Builder::registry`](crate::agent::Builder::registry))
//! and it registers, heartbeats, deregisters on shutdown, issues a receipt
//! with each answer, searches the registry when the mesh knows too few
//! matching agents, and can report feedback ([`Agent::feedback`](crate::agent::Agent::feedback)).
//! A registry that is down never breaks the mesh: failures are logged and
//! retried with backoff.

pub use ecco_registry::wire::{AgentDetail, Feedback, Health, Page, Registration, SearchHit};
pub use ecco_registry::{Client, ClientError, Receipt};
