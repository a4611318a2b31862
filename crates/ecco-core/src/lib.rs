//! Ecco's domain, free of I/O.
//!
//! This crate holds what every other part of Ecco agrees on, with no network,
//! no runtime and no clock, so that it can be tested deterministically:
//!
//! - [`capability`]: what an agent offers ([`Capability`]), and the versioned,
//!   size-bounded [`CapabilityDocument`] that carries a set of them on the wire;
//! - [`query`]: what a client asks for ([`Query`]), with a builder and a compact
//!   text syntax (`llm/* +summarize price<=0.01 language in [en, fr]`);
//! - [`matcher`]: hard filters, a score in `[0, 1]`, a deterministic ranking and
//!   an explain mode;
//! - [`selection`]: which of the ranked agents to ask (`all`, `top-n`,
//!   `round-robin`, `random`, `weighted`);
//! - [`aggregation`]: how to combine their answers (`majority-vote`,
//!   `weighted-vote`, `best-score`, `ensemble`, `consensus-threshold`,
//!   `first-response`, `longest`, `custom`);
//! - [`performance`]: the observed reliability and latency of an agent, which
//!   weighted selection and weighted voting use.
//!
//! Every bound on sizes and counts lives in [`limits`]; [`decoded`] estimates
//! the memory a message will take before it is decoded.
//!
//! ```
//! use ecco_core::{AgentId, Capability, Matcher, Offer, Query};
//!
//! let offers = vec![
//!     Offer::new(
//!         AgentId::new("agent-a")?,
//!         "llm/chat gpt-small@1.0.0 +summarize price=0.004".parse::<Capability>()?,
//!     ),
//!     Offer::new(
//!         AgentId::new("agent-b")?,
//!         "llm/chat gpt-large@2.1.0 +summarize +french price=0.02".parse::<Capability>()?,
//!     ),
//! ];
//! let query: Query = "llm/* +summarize price<=0.01".parse()?;
//! let ranked = Matcher::default().rank(&query, &offers);
//! assert_eq!(ranked.len(), 1);
//! assert_eq!(ranked[0].offer.agent.as_str(), "agent-a");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod aggregation;
pub mod capability;
pub mod decoded;
pub mod limits;
pub mod matcher;
pub mod performance;
pub mod query;
pub mod selection;

mod agent_id;
mod heap;
mod text;
mod validate;
mod value;

pub use agent_id::AgentId;

pub use aggregation::{Aggregation, Aggregator, Consensus, Response};
pub use capability::{Capability, CapabilityDocument, CapabilityType, Offer};
pub use matcher::{Match, Matcher};
pub use performance::Performance;
pub use selection::{Selection, Selector};

pub use query::Query;

pub use text::ParseError;
pub use validate::{Invalid, ValidationError};
pub use value::{ConstraintValue, Scalar};
