//! Every bound that validation enforces.
//!
//! These types travel over the network, so everything that a peer can make
//! long or numerous is capped. Values that exceed a bound are rejected with a
//! [`ValidationError`](crate::ValidationError) naming the field and the bound,
//! never truncated.

/// Longest capability type, in bytes (`llm/chat` is 8).
pub const MAX_TYPE_LEN: usize = 128;
/// Most `/`-separated segments in a capability type.
pub const MAX_TYPE_SEGMENTS: usize = 8;
/// Longest capability name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest feature, constraint key or metadata path segment, in bytes.
pub const MAX_KEY_LEN: usize = 64;
/// Most features on one capability, and most required or preferred features in one query.
pub const MAX_FEATURES: usize = 64;
/// Most constraints on one capability, and most constraint predicates in one query.
pub const MAX_CONSTRAINTS: usize = 32;
/// Longest text constraint value or list element, in bytes.
pub const MAX_TEXT_LEN: usize = 256;
/// Most elements in a list value (a capability's list constraint or a query's `in [..]`).
pub const MAX_LIST_LEN: usize = 64;
/// Largest serialized metadata object of a capability, in bytes of compact JSON.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Deepest nesting of a capability's metadata (an object holding an object is depth 2).
pub const MAX_METADATA_DEPTH: usize = 8;
/// Most metadata filters in one query.
pub const MAX_METADATA_FILTERS: usize = 16;
/// Most dot-separated segments in a metadata filter path.
pub const MAX_METADATA_PATH_SEGMENTS: usize = 8;
/// Longest semver version or requirement text, in bytes.
pub const MAX_VERSION_LEN: usize = 128;
/// Longest agent id, in bytes (a base58 libp2p `PeerId` is 52 or 53).
pub const MAX_AGENT_ID_LEN: usize = 128;
/// Most capabilities in one [`CapabilityDocument`](crate::CapabilityDocument).
pub const MAX_CAPABILITIES_PER_DOCUMENT: usize = 64;
/// Largest encoded [`CapabilityDocument`](crate::CapabilityDocument), in bytes of JSON.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Longest text form of a query or capability accepted by the parsers, in bytes.
pub const MAX_TEXT_SYNTAX_LEN: usize = 16 * 1024;
/// Most responses one aggregation considers; the clustering is quadratic in this.
pub const MAX_RESPONSES: usize = 1024;
/// Most distinct queries whose round-robin position a [`Selector`](crate::Selector) remembers.
pub const MAX_ROTATIONS: usize = 4096;
