//! The handle callers hold, the inbox of inbound requests, and node events.

use ecco_core::{Capability, Query};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::NodeError;
use super::config::Config;
use super::event_loop::{self, Command};
use super::messaging::{Answer, RemoteError, RemoteErrorKind, Reply, Request, RequestError};
use crate::Identity;
use crate::discovery::Entry;

/// A cheap, cloneable handle to a running node.
#[derive(Debug, Clone)]
pub struct Node {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
}

/// Something that happened in the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The node listens on a new address.
    Listening(Multiaddr),
    /// The first connection to a peer was established.
    PeerConnected(PeerId),
    /// The last connection to a peer closed.
    PeerDisconnected(PeerId),
    /// A peer's capabilities were learned or changed.
    CapabilitiesLearned(PeerId),
    /// A peer's capabilities expired.
    CapabilitiesExpired(PeerId),
}

/// A capability found in the directory, with its match score.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Who offers it.
    pub peer: PeerId,
    /// What is offered.
    pub capability: Capability,
    /// The match score in `[0, 1]`.
    pub score: f64,
}

/// Inbound requests, in arrival order. Bounded: when it is full, further
/// requests are refused as busy until the application catches up.
#[derive(Debug)]
pub struct Inbox {
    pub(crate) rx: mpsc::Receiver<InboundRequest>,
}

impl Inbox {
    /// The next inbound request; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<InboundRequest> {
        self.rx.recv().await
    }
}

/// A request from a peer, waiting for its reply. Dropping it unanswered
/// replies `handler_failed`.
#[derive(Debug)]
pub struct InboundRequest {
    /// Who asked.
    pub peer: PeerId,
    /// What they asked.
    pub request: Request,
    pub(crate) reply: oneshot::Sender<Reply>,
}

impl InboundRequest {
    /// Answers the request.
    pub fn respond(self, answer: Answer) {
        // The requester may have given up already; there is no one to tell.
        let _ = self.reply.send(Reply::Answer(answer));
    }

    /// Declines or reports a failure, with a message for the requester.
    pub fn reject(self, kind: RemoteErrorKind, message: impl Into<String>) {
        let _ = self.reply.send(Reply::Error(RemoteError {
            kind,
            message: message.into(),
        }));
    }
}

impl Node {
    /// Starts a node with `identity` and `config`, listening on the
    /// configured addresses before it returns, and dials the bootstrap peers.
    pub async fn spawn(identity: &Identity, config: Config) -> Result<(Node, Inbox), NodeError> {
        let (commands_tx, commands_rx) = mpsc::channel(config.limits.command_queue);
        let (inbound_tx, inbound_rx) = mpsc::channel(config.limits.inbound_queue);
        let (events, _) = broadcast::channel(config.limits.event_buffer);
        let event_loop = event_loop::EventLoop::start(
            identity,
            &config,
            commands_rx,
            inbound_tx,
            events.clone(),
        )
        .await?;
        tokio::spawn(event_loop.run());
        let node = Node {
            peer_id: identity.peer_id(),
            commands: commands_tx,
            events,
        };
        Ok((node, Inbox { rx: inbound_rx }))
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Receives the node's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// The addresses the node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NodeError> {
        self.ask(Command::ListenAddrs).await
    }

    /// The peers with an established connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NodeError> {
        self.ask(Command::ConnectedPeers).await
    }

    /// Connects to an address and returns the peer's id, proven by the handshake.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NodeError> {
        self.ask(|tx| Command::Dial { addr, reply: tx }).await?
    }

    /// Remembers an address for a peer, for later requests.
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), NodeError> {
        self.ask(|tx| Command::AddAddress {
            peer,
            addr,
            reply: tx,
        })
        .await
    }

    /// Sends a request and waits for the answer (at most the configured
    /// request timeout).
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Answer, RequestError> {
        self.ask(|tx| Command::Request {
            peer,
            request,
            reply: tx,
        })
        .await
        .map_err(|_| RequestError::NodeStopped)?
    }

    /// Sets the capabilities this node offers and announces them at once
    /// (and then periodically, and whenever a peer joins).
    pub async fn set_capabilities(&self, capabilities: Vec<Capability>) -> Result<(), NodeError> {
        self.ask(|tx| Command::SetCapabilities {
            capabilities,
            reply: tx,
        })
        .await?
    }

    /// Ranks the capabilities in the local directory for a query, best first.
    pub async fn find(&self, query: Query) -> Result<Vec<Found>, NodeError> {
        self.ask(|tx| Command::Find { query, reply: tx }).await
    }

    /// Everything the local directory holds.
    pub async fn directory(&self) -> Result<Vec<Entry>, NodeError> {
        self.ask(Command::Directory).await
    }

    /// Publishes raw bytes on the announcement topic, for tests that play a
    /// misbehaving peer. Not part of the API.
    #[doc(hidden)]
    pub async fn publish_raw_announcement(&self, bytes: Vec<u8>) -> Result<(), NodeError> {
        self.ask(|tx| Command::PublishRaw(bytes, tx)).await
    }

    /// Closes every connection and ends the node's task.
    pub async fn shutdown(self) {
        // An error means the task has already ended.
        let _ = self.ask(Command::Shutdown).await;
    }
}
