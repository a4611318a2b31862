//! What an agent offers.
//!
//! A [`Capability`] has a hierarchical [`CapabilityType`] (`llm/chat`), a name
//! and a semver version, a set of features, typed constraints that queries
//! filter on, and free JSON metadata. Construct one with [`Capability::builder`]
//! or parse the text form (`llm/chat gpt-small@1.2.0 +summarize price=0.002`);
//! either way it is validated, and so is every capability deserialized from
//! the wire.

mod document;
mod footprint;
mod kind;
mod model;
mod offer;
mod text;

pub use document::{CapabilityDocument, DocumentError, SCHEMA_VERSION};
pub use kind::{CapabilityType, TypePattern};
pub use model::{Builder, Capability};
pub use offer::Offer;
pub(crate) use text::list as text_list;
