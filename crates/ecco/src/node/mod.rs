//! The node: one task owning the libp2p `Swarm`, driven by a cheap, cloneable
//! [`Node`] handle.
//!
//! Callers send bounded commands and get replies over oneshot channels (the
//! pattern of rust-libp2p's file-sharing example); inbound requests arrive on
//! a bounded [`Inbox`]; node events go to every [`Node::subscribe`]r. Every
//! channel and queue is bounded ([`Limits`]). [`Node::shutdown`] closes the
//! connections and ends the task; so does dropping the last handle.
//!
//! The node speaks TCP + Noise + Yamux, QUIC, DNS, identify and ping, with
//! connection and memory limits, private meshes (pnet) and an allow-list. It
//! serves requests ([`Node::request`]) and streaming replies
//! ([`Node::request_stream`]), and discovers capabilities by mDNS, the
//! Kademlia DHT ([`Node::lookup`]), signed gossipsub announcements and
//! direct fetches ([`Node::fetch_capabilities`]), all feeding a local
//! [directory](crate::discovery::Directory) that [`Node::find`] ranks. The
//! wire formats are in `docs/PROTOCOL.md`.
//!
//! Two nodes in one process, one streaming its reply word by word (as a
//! model streams tokens), the other reading the chunks as they come:
//!
//! ```
//! use ecco::node::{Answer, Config, Node, Request};
//! use ecco::{CapabilityType, Identity};
//! use futures::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (writer, mut inbox) = Node::spawn(&Identity::generate(), Config::memory()).await?;
//! tokio::spawn(async move {
//!     while let Some(inbound) = inbox.recv().await {
//!         let mut sink = inbound.stream();
//!         for word in ["once", "upon", "a", "time"] {
//!             if sink.send(Answer::new(word.into())).await.is_err() {
//!                 break; // the requester went away
//!             }
//!         }
//!         sink.end().await;
//!     }
//! });
//!
//! let (reader, _) = Node::spawn(&Identity::generate(), Config::memory()).await?;
//! let writer_id = reader.dial(writer.listen_addrs().await?.remove(0)).await?;
//! let request = Request::new(CapabilityType::new("llm/chat")?, "tell me a story".into());
//! let mut chunks = reader.request_stream(writer_id, request).await?;
//! let mut story = Vec::new();
//! while let Some(chunk) = chunks.next().await {
//!     story.push(chunk?.result);
//! }
//! assert_eq!(story, ["once", "upon", "a", "time"]);
//! # Ok(())
//! # }
//! ```

mod behaviour;
mod codec;
mod config;
mod event_loop;
mod fetch;
mod fresh_ports;
mod handle;
mod lazy;
mod messaging;
mod stream_slots;
mod streaming;
mod swarm;
#[cfg(test)]
mod wire_properties;

pub use crate::discovery::Found;
pub use config::{Config, Discovery, Limits, SwarmKey, Transport, generate_swarm_key};
pub use fetch::FetchError;
pub use handle::{Event, InboundRequest, Inbox, Node};
pub use messaging::{Answer, RemoteError, RemoteErrorKind, Reply, Request, RequestError};
pub use streaming::{Closed, ReplySink, ReplyStream};

/// Why a node could not start or carry out a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The configuration cannot work.
    #[error("invalid node configuration: {0}")]
    Config(String),
    /// A transport could not be set up.
    #[error("transport setup failed: {0}")]
    Transport(String),
    /// An address could not be listened on.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A peer could not be dialled or refused the connection.
    #[error("cannot connect to {addr}: {reason}")]
    Dial {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A peer dialled with [`Node::dial_member`] identified as a member of
    /// another mesh (or as no Ecco node of this version), so the connection
    /// was closed: its identify protocol version is not this mesh's
    /// `/ecco/<mesh>/1.0.0`.
    #[error("{addr} {}", mismatch(.ours, .version))]
    OtherMesh {
        /// The address dialled.
        addr: String,
        /// This node's mesh.
        ours: String,
        /// The peer's mesh; `None` when its protocol version is not an
        /// Ecco mesh's of this version.
        theirs: Option<String>,
        /// The identify protocol version the peer gave.
        version: String,
    },
    /// The node has shut down.
    #[error("the node has shut down")]
    Stopped,
}

/// The mesh a peer's identify protocol version `/ecco/<mesh>/1.0.0` names.
pub(crate) fn mesh_of(version: &str) -> Option<&str> {
    version
        .strip_prefix("/ecco/")?
        .strip_suffix("/1.0.0")
        .filter(|mesh| !mesh.is_empty() && !mesh.contains('/'))
}

/// Why a peer with identify protocol `version` is not of mesh `ours`, to
/// follow "<the peer> ".
pub(crate) fn mismatch(ours: &str, version: &str) -> String {
    match mesh_of(version) {
        Some(theirs) => format!("is on mesh `{theirs}`, this node on mesh `{ours}`"),
        None => format!(
            "is not on an Ecco mesh of this version (identify protocol version `{version}`; \
             this node's is `/ecco/{ours}/1.0.0`)"
        ),
    }
}
