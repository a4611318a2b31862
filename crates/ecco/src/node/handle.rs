//! The handle callers hold, the inbox of inbound requests, and node events.

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::NodeError;
use super::config::Config;
use super::event_loop::{self, Command};
use super::messaging::{Answer, RemoteError, RemoteErrorKind, Reply, Request, RequestError};
use crate::Identity;

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

    /// Closes every connection and ends the node's task.
    pub async fn shutdown(self) {
        // An error means the task has already ended.
        let _ = self.ask(Command::Shutdown).await;
    }
}
