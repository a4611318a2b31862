//! The handle callers hold, the inbox of inbound requests, and node events.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecco_core::{Capability, Matcher, Query};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{OnceCell, broadcast, mpsc, oneshot, watch};

use super::NodeError;
use super::config::Config;
use super::event_loop::{self, Command};
use super::fetch::FetchError;
use super::messaging::{Answer, RemoteError, RemoteErrorKind, Reply, Request, RequestError};
use super::stream_slots::Slots;
use super::streaming::{self, ReplySink, ReplyStream};
use crate::Identity;
use crate::discovery::{Entry, Found, Offers, Snapshot, dht};

/// Above this many capabilities, indexing the directory (about 1 µs per
/// capability) moves off the async workers.
const INDEX_INLINE_MAX: usize = 1024;

/// Indexes a snapshot's entries, off the async workers when they are many.
async fn index(entries: Vec<Arc<Entry>>) -> Result<Arc<Offers>, NodeError> {
    let capabilities: usize = entries.iter().map(|e| e.capabilities.len()).sum();
    let build = move || Arc::new(Offers::new(entries.iter().map(|e| &**e)));
    if capabilities <= INDEX_INLINE_MAX {
        return Ok(build());
    }
    match tokio::task::spawn_blocking(build).await {
        Ok(offers) => Ok(offers),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(NodeError::Stopped),
    }
}

/// A cheap, cloneable handle to a running node.
#[derive(Debug, Clone)]
pub struct Node {
    peer_id: PeerId,
    mesh: String,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    streams: streaming::Client,
    /// How long a request waits unless its caller says otherwise.
    request_timeout: Duration,
    /// The longest any request may wait (`Limits::longest_request`).
    longest_request: Duration,
    /// The last index built from a snapshot, by generation of the
    /// directory, shared by every clone of the handle. Once built it is the
    /// one the node's task caches too (the same allocation); after a change
    /// it is replaced by the next build.
    indexing: Arc<Mutex<Option<(u64, Indexing)>>>,
}

/// One build of the directory's index, awaited by every caller that needs it.
type Indexing = Arc<OnceCell<Arc<Offers>>>;

/// Something that happened in the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The node listens on a new address.
    Listening(Multiaddr),
    /// mDNS found a peer on the LAN (a hint until the handshake proves it).
    PeerDiscovered(PeerId),
    /// The first connection to a peer was established.
    PeerConnected(PeerId),
    /// The last connection to a peer closed.
    PeerDisconnected(PeerId),
    /// A peer's capabilities were learned or changed.
    CapabilitiesLearned(PeerId),
    /// A peer's capabilities expired, were withdrawn, or the peer left.
    CapabilitiesExpired(PeerId),
    /// This node's capabilities were published in the DHT, as provider
    /// records under this many keys.
    PublishedToDht {
        /// Keys whose publication reached at least one peer.
        keys: usize,
    },
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
    pub(crate) reply: Responder,
    /// When the requester stops waiting (`deadline`).
    deadline: Option<Instant>,
}

/// Where an inbound request's reply goes.
#[derive(Debug)]
pub(crate) enum Responder {
    /// One answer, over request/response.
    Unary(oneshot::Sender<Reply>),
    /// Chunks then an end, over a stream.
    Stream(mpsc::Sender<streaming::Frame>),
}

impl InboundRequest {
    /// A request that has just arrived, to be answered within `time` from
    /// now, if the node set one.
    pub(crate) fn arrived(
        peer: PeerId,
        request: Request,
        reply: Responder,
        time: Option<Duration>,
    ) -> Self {
        let deadline = time.and_then(|time| Instant::now().checked_add(time));
        Self {
            peer,
            request,
            reply,
            deadline,
        }
    }

    /// When the requester stops waiting for the answer, as it said in the
    /// request ([`Request::timeout`], counted from the request's arrival
    /// here, so a little after the requester's own deadline), at most
    /// `Limits::max_request_timeout` from the arrival. A request that does
    /// not say gets the node's `Limits::request_timeout`, a streaming one
    /// no deadline (each chunk is bounded instead). Work past it is work for
    /// nobody: the agent's handlers are cancelled then, and a second later
    /// (up to a quarter more) the node closes a request-response request
    /// ([`InboundRequest::closed`]) and answers its requester that the time
    /// ran out.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the requester asked for a streaming reply.
    pub fn is_stream(&self) -> bool {
        matches!(self.reply, Responder::Stream(_))
    }

    /// Answers the request (a streaming requester gets it as one chunk).
    pub fn respond(self, answer: Answer) {
        self.reply.respond(answer);
    }

    /// Declines or reports a failure, with a message for the requester.
    pub fn reject(self, kind: RemoteErrorKind, message: impl Into<String>) {
        self.reply.reject(kind, message.into());
    }

    /// Replies chunk by chunk. A requester that asked for one answer (with
    /// [`Node::request`]) gets the chunks collected into a JSON array when
    /// the sink ends, so a streaming handler serves both kinds.
    pub fn stream(self) -> ReplySink {
        ReplySink::new(self.reply)
    }

    /// Resolves once the requester can no longer get the reply: it
    /// cancelled the request (its caller stopped waiting), its last
    /// connection closed (it stopped, or gave up and hung up), or, for a
    /// streaming reply, its stream ended. A handler that races its work
    /// against this stops working for nobody.
    pub async fn closed(&mut self) {
        self.reply.closed().await;
    }

    /// Whether the requester can no longer get the reply (as
    /// [`closed`](Self::closed) says), without waiting: a request that
    /// waited in a queue may have been cancelled meanwhile.
    pub fn is_closed(&self) -> bool {
        self.reply.is_closed()
    }

    /// The request, and where its reply goes.
    pub(crate) fn into_parts(self) -> (PeerId, Request, Responder) {
        (self.peer, self.request, self.reply)
    }
}

impl Responder {
    /// Whether [`Responder::closed`] would resolve at once.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Responder::Unary(reply) => reply.is_closed(),
            Responder::Stream(tx) => tx.is_closed(),
        }
    }

    /// See [`InboundRequest::closed`].
    pub(crate) async fn closed(&mut self) {
        match self {
            Responder::Unary(reply) => reply.closed().await,
            Responder::Stream(tx) => tx.closed().await,
        }
    }

    pub(crate) fn respond(self, answer: Answer) {
        // The requester may have given up already; there is no one to tell.
        match self {
            Responder::Unary(reply) => {
                let _ = reply.send(Reply::Answer(answer));
            }
            Responder::Stream(tx) => {
                // The buffer holds at least two frames, and nothing else was sent.
                let _ = tx.try_send(streaming::Frame::Chunk(answer));
                let _ = tx.try_send(streaming::Frame::End);
            }
        }
    }

    pub(crate) fn reject(self, kind: RemoteErrorKind, message: String) {
        let error = RemoteError { kind, message };
        match self {
            Responder::Unary(reply) => {
                let _ = reply.send(Reply::Error(error));
            }
            Responder::Stream(tx) => {
                let _ = tx.try_send(streaming::Frame::Error(error));
            }
        }
    }
}

impl Node {
    /// Starts a node with `identity` and `config`, listening on the
    /// configured addresses before it returns, and dials the bootstrap peers.
    pub async fn spawn(identity: &Identity, config: Config) -> Result<(Node, Inbox), NodeError> {
        let (commands_tx, commands_rx) = mpsc::channel(config.limits.command_queue);
        let (inbound_tx, inbound_rx) = mpsc::channel(config.limits.inbound_queue);
        let (events, _) = broadcast::channel(config.limits.event_buffer);
        let (stop_tx, stop_rx) = watch::channel(());
        let event_loop = event_loop::EventLoop::start(
            identity,
            &config,
            commands_rx,
            inbound_tx.clone(),
            events.clone(),
            stop_tx,
        )
        .await?;
        let mut control = event_loop.stream_control();
        let protocols =
            super::behaviour::Protocols::new(&config.mesh).map_err(NodeError::Config)?;
        let incoming = control
            .accept(protocols.stream.clone())
            .map_err(|e| NodeError::Config(format!("stream protocol: {e:?}")))?;
        tokio::spawn(streaming::serve(
            incoming,
            inbound_tx,
            config.limits.clone(),
            stop_rx,
        ));
        tokio::spawn(event_loop.run());
        let l = &config.limits;
        let node = Node {
            peer_id: identity.peer_id(),
            mesh: config.mesh.clone(),
            commands: commands_tx,
            events,
            streams: streaming::Client {
                control,
                protocol: protocols.stream,
                timeout: l.request_timeout,
                max_request: l.max_request_bytes,
                max_response: l.max_response_bytes,
                max_response_memory: l.max_response_memory,
                slots: Slots::new(l.max_streaming_requests, l.max_waiting_requests),
            },
            request_timeout: l.request_timeout,
            longest_request: l.longest_request(),
            indexing: Arc::default(),
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

    /// Listens on one more address, such as `/ip4/0.0.0.0/tcp/0`, and
    /// returns the first address it is reachable at once the listener has
    /// one (the port chosen, for port 0). An agent registered with a
    /// registry registers its new addresses with the next heartbeat.
    pub async fn listen_on(&self, addr: Multiaddr) -> Result<Multiaddr, NodeError> {
        let asked = addr.to_string();
        let listening = self.ask(|tx| Command::ListenOn { addr, reply: tx });
        match tokio::time::timeout(super::event_loop::LISTEN_WAIT, listening).await {
            Ok(result) => result?,
            Err(_) => Err(NodeError::Listen {
                addr: asked,
                reason: format!(
                    "no address reported within {:?}",
                    super::event_loop::LISTEN_WAIT
                ),
            }),
        }
    }

    /// The peers with an established connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NodeError> {
        self.ask(Command::ConnectedPeers).await
    }

    /// Connects to an address and returns the peer's id, proven by the
    /// handshake. The peer's mesh is not checked yet: one of another mesh is
    /// disconnected once it identifies, just after this returns, and a
    /// warning naming both meshes is logged; [`dial_member`](Self::dial_member)
    /// waits for that.
    ///
    /// A handshake that fails or times out ends in [`NodeError::Dial`]
    /// whose reason adds the likely cause, as libp2p cannot tell a wrong
    /// swarm key from a broken peer (pnet garbles the stream): with a swarm
    /// key, "(a private mesh: does that peer use the same swarm key?)";
    /// without one, "(if that peer runs a private mesh, this node needs its
    /// swarm key)".
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NodeError> {
        self.ask(|tx| Command::Dial {
            addr,
            member: false,
            reply: tx,
        })
        .await?
    }

    /// Connects to an address like [`dial`](Self::dial), then waits until
    /// the peer identifies as a member of this mesh, at most
    /// `Limits::handshake_timeout` more. A peer of another mesh is
    /// disconnected and reported as [`NodeError::OtherMesh`], naming both
    /// meshes; one that closes the connection, or does not identify in time,
    /// as [`NodeError::Dial`].
    pub async fn dial_member(&self, addr: Multiaddr) -> Result<PeerId, NodeError> {
        self.ask(|tx| Command::Dial {
            addr,
            member: true,
            reply: tx,
        })
        .await?
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

    /// Sends a request and waits for the answer, at most the configured
    /// request timeout from this call on.
    ///
    /// At most `Limits::max_concurrent_streams` requests go to one peer at
    /// a time; more wait, in order, for one of them to finish, and the wait
    /// counts against the timeout. Beyond `Limits::max_waiting_requests`
    /// waiting over all peers, a request fails at once with
    /// [`RequestError::Busy`].
    ///
    /// The request tells the provider how long this node will wait (the
    /// time left when it is sent), so that the provider can stop work
    /// nobody waits for ([`InboundRequest::deadline`]). Dropping the
    /// returned future before the answer cancels the request at the
    /// provider too, within a quarter of a second
    /// ([`InboundRequest::closed`]).
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Answer, RequestError> {
        self.request_within(peer, request, self.request_timeout)
            .await
    }

    /// [`Node::request`], waiting at most `timeout` for the answer instead
    /// of the configured request timeout, longer or shorter. It is cut to
    /// `Limits::max_request_timeout` (10 min by default), which bounds
    /// every request. The provider is told the time, and works on the
    /// request no longer than that, nor than its own
    /// `max_request_timeout`.
    pub async fn request_within(
        &self,
        peer: PeerId,
        request: Request,
        timeout: Duration,
    ) -> Result<Answer, RequestError> {
        let timeout = timeout.min(self.longest_request);
        let deadline = Instant::now() + timeout;
        let asked = self.ask(|tx| Command::Request {
            peer,
            request,
            deadline,
            reply: tx,
        });
        // libp2p times a request from when it is sent; a request that waited
        // for a free stream would otherwise get the whole timeout again.
        match tokio::time::timeout(timeout, asked).await {
            Ok(answer) => answer.map_err(|_| RequestError::NodeStopped)?,
            Err(_) => Err(RequestError::Timeout(timeout)),
        }
    }

    /// Sends a request and receives the reply as a stream of chunks, for
    /// long outputs such as LLM tokens. The handler on the other side uses
    /// [`InboundRequest::stream`]; one that answers with `respond` sends one
    /// chunk. Each chunk must arrive within the request timeout of the last,
    /// the first within the request timeout of this call (a wait for a free
    /// stream to the peer included).
    pub async fn request_stream(
        &self,
        peer: PeerId,
        request: Request,
    ) -> Result<ReplyStream, RequestError> {
        self.streams.clone().request(peer, request, None).await
    }

    /// [`Node::request_stream`], with the whole reply due within `timeout`
    /// (longer or shorter than the request timeout; cut to
    /// `Limits::max_request_timeout`), which then bounds each chunk too: a
    /// first chunk may take longer than the request timeout, as a model's
    /// first token may. Past it the stream ends with
    /// [`RequestError::Timeout`] and the provider's handler is cancelled.
    /// The provider is told the time ([`InboundRequest::deadline`]) and
    /// ends the request a second after it.
    pub async fn request_stream_within(
        &self,
        peer: PeerId,
        request: Request,
        timeout: Duration,
    ) -> Result<ReplyStream, RequestError> {
        self.streams
            .clone()
            .request(peer, request, Some(timeout.min(self.longest_request)))
            .await
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

    /// Ranks the capabilities in the local directory for a query, best
    /// first, with the default [`Matcher`]. The ranking runs in the caller's
    /// task, over [`offers`](Self::offers).
    pub async fn find(&self, query: Query) -> Result<Vec<Found>, NodeError> {
        Ok(self.offers().await?.rank(&Matcher::default(), &query))
    }

    /// Every capability in the local directory, indexed for ranking: for
    /// rankings of one's own ([`Offers::rank`] with any [`Matcher`]).
    ///
    /// The node's task only hands out what it holds: the index, shared, when
    /// the directory has not changed since it was built (O(1)); otherwise
    /// the entries, shared, which this call indexes (off the async workers
    /// when there are many) and hands back for the queries that follow.
    pub async fn offers(&self) -> Result<Arc<Offers>, NodeError> {
        let (generation, entries) = match self.ask(Command::Offers).await? {
            Snapshot::Indexed(offers) => return Ok(offers),
            Snapshot::Changed {
                generation,
                entries,
            } => (generation, entries),
        };
        // Callers that meet the same change share one build (if the one
        // building gives up, another takes over with its own snapshot).
        let cell = {
            let mut slot = self
                .indexing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &*slot {
                Some((g, cell)) if *g == generation => Arc::clone(cell),
                _ => {
                    let cell = Arc::new(OnceCell::new());
                    *slot = Some((generation, Arc::clone(&cell)));
                    cell
                }
            }
        };
        let mut built = false;
        let offers = cell
            .get_or_try_init(|| {
                built = true;
                index(entries)
            })
            .await?;
        if built {
            // A full queue only means that the next query indexes again.
            let _ = self.commands.try_send(Command::CacheOffers {
                generation,
                offers: Arc::clone(offers),
            });
        }
        Ok(Arc::clone(offers))
    }

    /// Finds providers for `query` in the DHT, fetches their capability
    /// documents into the directory, and ranks the directory for the query,
    /// best first. Waits at most the lookup timeout for the DHT, then the
    /// request timeout for the fetches. Needs a capability type: `*` cannot
    /// be looked up.
    pub async fn lookup(&self, query: &Query) -> Result<Vec<Found>, NodeError> {
        self.fetch_providers(query).await?;
        self.find(query.clone()).await
    }

    /// [`lookup`](Self::lookup) without the ranking, which the caller does
    /// with its own matcher: says whether the DHT reached any peer, since
    /// one that asked nobody (no peer known yet) proves nothing about who
    /// else provides.
    pub(crate) async fn fetch_providers(&self, query: &Query) -> Result<bool, NodeError> {
        let key = dht::lookup_key(&self.mesh, query).ok_or_else(|| {
            NodeError::Config("a DHT lookup needs a capability type, not `*`".to_owned())
        })?;
        let looked = self.ask(|tx| Command::Lookup { key, reply: tx }).await??;
        let fetched =
            futures::future::join_all(looked.candidates.into_iter().map(|(peer, rx)| async move {
                match rx.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "provider not fetched"),
                    Err(_) => tracing::debug!(%peer, "provider fetch abandoned"),
                }
            }));
        fetched.await;
        Ok(looked.reached)
    }

    /// Asks a peer for its capability document and puts it in the
    /// directory; `None` when it offers nothing.
    pub async fn fetch_capabilities(&self, peer: PeerId) -> Result<Option<Entry>, FetchError> {
        self.ask(|tx| Command::Fetch { peer, reply: tx })
            .await
            .map_err(|_| FetchError::NodeStopped)?
    }

    /// Everything the local directory holds, copied in the caller's task.
    pub async fn directory(&self) -> Result<Vec<Entry>, NodeError> {
        let shared = self.ask(Command::Directory).await?;
        Ok(shared.into_iter().map(Arc::unwrap_or_clone).collect())
    }

    /// Publishes raw bytes on the announcement topic, for tests that play a
    /// misbehaving peer. Not part of the API.
    #[doc(hidden)]
    pub async fn publish_raw_announcement(&self, bytes: Vec<u8>) -> Result<(), NodeError> {
        self.ask(|tx| Command::PublishRaw(bytes, tx)).await
    }

    /// The gossipsub score this node gives a peer, for tests that check a
    /// misbehaving peer is penalised. Not part of the API.
    #[doc(hidden)]
    pub async fn gossip_score(&self, peer: PeerId) -> Result<Option<f64>, NodeError> {
        self.ask(|tx| Command::GossipScore(peer, tx)).await
    }

    /// Closes every connection and ends the node's task.
    pub async fn shutdown(self) {
        // An error means the task has already ended.
        let _ = self.ask(Command::Shutdown).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::Limits;
    use super::*;
    use crate::discovery::Source;

    /// A provider works on a request as long as its requester said it
    /// waits, the request timeout if it did not say, and never longer than
    /// the longest request: an absurd number (a peer may send any) is cut,
    /// not a panic.
    #[test]
    fn a_provider_works_as_long_as_the_requester_waits_within_its_limits() {
        let limits = Limits {
            request_timeout: Duration::from_secs(30),
            max_request_timeout: Duration::from_secs(600),
            ..Limits::default()
        };
        let inbound = |timeout_ms: Option<u64>| {
            let mut request = Request::new("x/y".parse().unwrap(), serde_json::Value::Null);
            request.timeout_ms = timeout_ms;
            let time = limits.answer_within(request.timeout());
            let (tx, _) = oneshot::channel();
            InboundRequest::arrived(
                Identity::generate().peer_id(),
                request,
                Responder::Unary(tx),
                Some(time),
            )
        };
        let left = |timeout_ms| {
            inbound(timeout_ms)
                .deadline()
                .expect("a deadline")
                .saturating_duration_since(Instant::now())
        };
        let about = |left: Duration, time: u64| {
            left <= Duration::from_secs(time) && left > Duration::from_secs(time - 5)
        };
        assert!(about(left(None), 30), "{:?}", left(None));
        assert!(about(left(Some(60_000)), 60), "above the request timeout");
        assert!(about(left(Some(u64::MAX)), 600), "cut to the longest");
        assert!(about(left(Some(3_600_000)), 600), "cut to the longest");
        // A request timeout above the longest raises the longest.
        let raised = Limits {
            request_timeout: Duration::from_secs(900),
            ..limits.clone()
        };
        assert_eq!(raised.longest_request(), Duration::from_secs(900));
        assert_eq!(raised.answer_within(None), Duration::from_secs(900));
        // No limit at all is a year: deadlines stay representable.
        let unlimited = Limits {
            max_request_timeout: Duration::MAX,
            ..limits.clone()
        };
        let year = Duration::from_secs(365 * 24 * 3600);
        assert_eq!(unlimited.longest_request(), year);
        assert_eq!(unlimited.answer_within(Some(Duration::MAX)), year);
        let (tx, _) = oneshot::channel();
        let request = Request::new("x/y".parse().unwrap(), serde_json::Value::Null);
        let unbounded =
            InboundRequest::arrived(PeerId::random(), request, Responder::Unary(tx), None);
        assert_eq!(unbounded.deadline(), None);
    }

    fn entries(peers: usize, per_peer: usize) -> Vec<Arc<Entry>> {
        (0..peers)
            .map(|p| {
                Arc::new(Entry {
                    peer: Identity::generate().peer_id(),
                    capabilities: (0..per_peer)
                        .map(|c| format!("tool/t{c} n{p}@1.0.0 price={p}").parse().unwrap())
                        .collect(),
                    addrs: Vec::new(),
                    seq: 1,
                    last_seen_ms: 0,
                    expires_at_ms: 0,
                    source: Source::Gossip,
                    footprint: 0,
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn many_offers_are_indexed_off_the_workers_alike() {
        let many = entries(40, 32);
        let n: usize = many.iter().map(|e| e.capabilities.len()).sum();
        assert!(n > INDEX_INLINE_MAX, "this takes the blocking path");
        let off = index(many.clone()).await.unwrap();
        let inline = Offers::new(many.iter().map(|e| &**e));
        let query: Query = "tool/t3 price<=20".parse().unwrap();
        let (a, b) = (
            off.rank(&Matcher::default(), &query),
            inline.rank(&Matcher::default(), &query),
        );
        assert_eq!(a.len(), 21);
        assert_eq!(a, b);
    }
}
