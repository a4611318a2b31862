//! Ecco's optional registry: global reputation, agent monitoring and
//! analytics over HTTP, and the client agents use to reach it.
//!
//! The mesh never needs a registry. Operators run one for curated visibility
//! (search across everyone registered), reputation built from feedback that
//! agents countersign with receipts, and analytics. See docs/REGISTRY.md.
//!
//! - [`wire`]: the JSON types of the API;
//! - [`signing`]: how writes are signed with an agent's Ed25519 key;
//! - [`receipt`]: what agents sign for the clients they serve;
//! - with the `server` feature (on by default): [`router`], [`serve`], the
//!   [`store`] (SQLite or PostgreSQL), [`shared`] state (in-process or Redis),
//!   the [`reputation`] formula and the dashboard, a live web page served at
//!   `/` from files embedded in the binary.

pub mod address;
pub mod client;
pub mod receipt;
pub mod signing;
pub mod wire;

#[cfg(feature = "server")]
mod api;
#[cfg(feature = "server")]
pub mod catalog;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
mod dashboard;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod reputation;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
pub mod shared;
#[cfg(feature = "server")]
pub mod state;
#[cfg(feature = "server")]
pub mod store;

#[cfg(feature = "server")]
pub use api::{ApiDoc, router};
#[cfg(feature = "server")]
pub use config::Config;
#[cfg(feature = "server")]
pub use server::{Running, ServeError, open, serve};
#[cfg(feature = "server")]
pub use state::App;

pub use client::{Client, ClientError};
pub use receipt::Receipt;
