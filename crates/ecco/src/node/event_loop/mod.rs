//! The node's task: owns the `Swarm`, serves commands, routes events.

mod cancel;
pub(crate) mod dht;
mod dial;
mod fetch;
mod gossip;
mod in_progress;
mod peers;
mod redial;
mod requests;
mod window;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::core::transport::ListenerId;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::NodeError;
use super::behaviour::{Behaviour, BehaviourEvent, Protocols};
use super::config::{Config, Limits};
use super::handle::{Event, InboundRequest};
use super::messaging::{Answer, Request, RequestError};
use super::swarm;
use crate::Identity;
use crate::discovery::{Entry, Offers, Snapshot};
use ecco_core::Capability;
use requests::{Outgoing, PendingReply, Queued};

/// How long `spawn` waits for each listener to report its address.
pub(crate) const LISTEN_WAIT: Duration = Duration::from_secs(10);
/// How long a stopping node keeps running to deliver its withdrawal.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) enum Command {
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    ListenOn {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<Multiaddr, NodeError>>,
    },
    ConnectedPeers(oneshot::Sender<Vec<PeerId>>),
    Dial {
        addr: Multiaddr,
        /// Wait until the peer identifies as a member of this mesh.
        member: bool,
        reply: dial::DialReply,
    },
    AddAddress {
        peer: PeerId,
        addr: Multiaddr,
        reply: oneshot::Sender<()>,
    },
    Request {
        peer: PeerId,
        request: Request,
        /// When the caller stops waiting; the request tells the provider.
        deadline: Instant,
        reply: oneshot::Sender<Result<Answer, RequestError>>,
    },
    SetCapabilities {
        capabilities: Vec<Capability>,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// What ranking needs, without copying the directory in this task.
    Offers(oneshot::Sender<Snapshot>),
    /// Offers a caller indexed from a snapshot, for later rankings.
    CacheOffers {
        generation: u64,
        offers: Arc<Offers>,
    },
    Directory(oneshot::Sender<Vec<Arc<Entry>>>),
    Lookup {
        key: Vec<u8>,
        reply: dht::LookupReply,
    },
    Fetch {
        peer: PeerId,
        reply: fetch::FetchReply,
    },
    PublishRaw(Vec<u8>, oneshot::Sender<()>),
    GossipScore(PeerId, oneshot::Sender<Option<f64>>),
    Shutdown(oneshot::Sender<()>),
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<InboundRequest>,
    events: broadcast::Sender<Event>,
    requests: HashMap<OutboundRequestId, cancel::Sent>,
    /// Cancels sent for requests nobody waits for, until they are answered.
    cancels: HashMap<OutboundRequestId, cancel::Unsent>,
    /// Cancels that found no room for a stream, sent again on the tick.
    cancels_to_retry: Vec<(PeerId, cancel::Unsent)>,
    /// The number the next request sent carries.
    next_request_id: u64,
    /// Inbound requests handed to the application, until answered: what a
    /// cancel or the end of their time stops.
    in_progress: in_progress::InProgress,
    /// Requests and cancels in flight per peer, and those waiting for a
    /// free stream.
    window: window::Window<Outgoing>,
    max_concurrent_streams: usize,
    /// Dials callers asked for, until their connection is established or fails.
    dials: HashMap<ConnectionId, dial::Pending>,
    /// Dials of `Node::dial_member` that connected, until the peer identifies.
    identifying: HashMap<ConnectionId, dial::Identifying>,
    /// Whether this node has a swarm key (a private mesh).
    private: bool,
    /// This node's mesh name.
    mesh: String,
    /// How long a handshake, and a member's identify after it, may take.
    handshake_timeout: Duration,
    /// Listeners added by `Node::listen_on`, until they report an address or fail.
    listeners: HashMap<ListenerId, (Multiaddr, oneshot::Sender<Result<Multiaddr, NodeError>>)>,
    /// Inbound requests handed to the application, waiting for its reply.
    replies: FuturesUnordered<PendingReply>,
    /// Per peer with requests in progress, set when its last connection
    /// closes: those requests' handlers are then cancelled.
    gone: HashMap<PeerId, watch::Sender<bool>>,
    /// Connections on which this node answered the peer's identify request.
    identify_sent: HashSet<ConnectionId>,
    /// Connections of peers of another mesh, and when to close them:
    /// `peers::REFUSE_LINGER` after the peer has this node's identify, at
    /// the latest `peers::REFUSE_GRACE` after the refusal.
    refusing: HashMap<ConnectionId, tokio::time::Instant>,
    /// At most this many inbound requests wait for the application at once.
    max_pending_replies: usize,
    /// How long requests take: the longest, and how long a provider works
    /// on one (`Limits::answer_within`).
    limits: Limits,
    gossip: gossip::State,
    dht: dht::State,
    fetches: fetch::Fetches,
    /// Peers of other meshes, not to be dialled again on an mDNS hint.
    foreign: peers::Recent,
    /// Peers that mDNS found.
    mdns_found: peers::Recent,
    /// Peers that mDNS found and a dial did not reach, dialled again.
    redials: redial::Redials,
    /// The identify protocol version of this mesh; peers with another are dropped.
    identify_version: String,
    fetch_protocol: StreamProtocol,
    protocols_kad: StreamProtocol,
    announcements_on: bool,
    /// Dropped with the loop, which ends the stream server.
    _stop: watch::Sender<()>,
}

impl EventLoop {
    /// Builds the swarm, listens, and waits until every listener has an address.
    pub(crate) async fn start(
        identity: &Identity,
        config: &Config,
        commands: mpsc::Receiver<Command>,
        inbound: mpsc::Sender<InboundRequest>,
        events: broadcast::Sender<Event>,
        stop: watch::Sender<()>,
    ) -> Result<Self, NodeError> {
        swarm::check(config)?;
        let protocols = Protocols::new(&config.mesh).map_err(NodeError::Config)?;
        let mut swarm = swarm::build(identity, config, &protocols)?;
        for addr in &config.listen {
            swarm::check_port_free(addr)?;
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NodeError::Listen {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?;
        }
        let listen_error = |reason: String| NodeError::Listen {
            addr: config
                .listen
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            reason,
        };
        let mut listening = 0;
        while listening < config.listen.len() {
            match tokio::time::timeout(LISTEN_WAIT, swarm.select_next_some()).await {
                Ok(SwarmEvent::NewListenAddr { address, .. }) => {
                    tracing::info!(%address, "listening");
                    // Nothing is announced yet: no need to know what changed.
                    let _ = advertise(&mut swarm, address);
                    listening += 1;
                }
                Ok(SwarmEvent::ListenerError { error, .. })
                | Ok(SwarmEvent::ListenerClosed {
                    reason: Err(error), ..
                }) => return Err(listen_error(error.to_string())),
                Ok(_) => {}
                Err(_) => {
                    return Err(listen_error(format!(
                        "no address reported within {LISTEN_WAIT:?}"
                    )));
                }
            }
        }
        for addr in &config.bootstrap {
            if let Err(e) = swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
            if let Some(kad) = swarm.behaviour_mut().kad.as_mut()
                && let Some((peer, addr)) = split_peer(addr)
            {
                kad.add_address(&peer, addr);
            }
        }
        if let Some(kad) = swarm.behaviour_mut().kad.as_mut()
            && !config.bootstrap.is_empty()
            && let Err(e) = kad.bootstrap()
        {
            tracing::debug!(error = %e, "no DHT bootstrap");
        }
        Ok(Self {
            swarm,
            commands,
            inbound,
            events,
            requests: HashMap::new(),
            cancels: HashMap::new(),
            cancels_to_retry: Vec::new(),
            next_request_id: 0,
            in_progress: in_progress::InProgress::default(),
            window: window::Window::new(
                config.limits.max_concurrent_streams,
                config.limits.max_waiting_requests,
            ),
            max_concurrent_streams: config.limits.max_concurrent_streams,
            dials: HashMap::new(),
            identifying: HashMap::new(),
            private: config.swarm_key.is_some(),
            mesh: config.mesh.clone(),
            handshake_timeout: config.limits.handshake_timeout,
            listeners: HashMap::new(),
            replies: FuturesUnordered::new(),
            gone: HashMap::new(),
            identify_sent: HashSet::new(),
            refusing: HashMap::new(),
            max_pending_replies: config.limits.inbound_queue.saturating_mul(4).max(1),
            limits: config.limits.clone(),
            gossip: gossip::State::new(identity, config, protocols.announcements.clone()),
            dht: dht::State::new(config),
            fetches: fetch::Fetches::default(),
            foreign: peers::Recent::default(),
            mdns_found: peers::Recent::default(),
            redials: redial::Redials::default(),
            identify_version: protocols.identify.clone(),
            fetch_protocol: protocols.fetch.clone(),
            protocols_kad: protocols.kad.clone(),
            announcements_on: config.discovery.announcements,
            _stop: stop,
        })
    }

    /// A handle for opening and accepting streams (streaming replies).
    pub(crate) fn stream_control(&self) -> libp2p_stream::Control {
        self.swarm.behaviour().streams.new_control()
    }

    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(gossip::TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.window.retain(Outgoing::wanted);
                    self.on_tick();
                    self.dht_prune();
                    self.dials_expire();
                    self.refuse_late();
                    self.mdns_redial();
                    self.cancel_abandoned();
                    self.in_progress.expire(Instant::now());
                }
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(done)) => {
                        self.stop().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    // Every handle is gone: nobody can use the node any more.
                    None => {
                        self.stop().await;
                        return;
                    }
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some((key, done)) = self.replies.next(), if !self.replies.is_empty() => {
                    self.in_progress.done(&key);
                    if let Some((channel, reply)) = done {
                        self.respond(channel, reply);
                    }
                }
            }
        }
    }

    async fn stop(&mut self) {
        if self.gossip.document.is_some() && self.withdraw() {
            // Give the withdrawal a moment to leave before the connections close.
            let flush = tokio::time::sleep(SHUTDOWN_FLUSH);
            tokio::pin!(flush);
            loop {
                tokio::select! {
                    () = &mut flush => break,
                    event = self.swarm.select_next_some() => self.on_swarm_event(event),
                }
            }
        }
        self.fetch_stop();
        self.dht_stop();
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        for (_, sent) in self.requests.drain() {
            let _ = sent.reply.send(Err(RequestError::NodeStopped));
        }
        for outgoing in self.window.drain() {
            if let Outgoing::Request(queued) = outgoing {
                let _ = queued.reply.send(Err(RequestError::NodeStopped));
            }
        }
        tracing::info!("node stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::ListenOn { addr, reply } => {
                match swarm::check_port_free(&addr).and_then(|()| {
                    self.swarm
                        .listen_on(addr.clone())
                        .map_err(|e| NodeError::Listen {
                            addr: addr.to_string(),
                            reason: e.to_string(),
                        })
                }) {
                    Ok(id) => {
                        self.listeners.insert(id, (addr, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::Dial {
                addr,
                member,
                reply,
            } => self.dial(addr, member, reply),
            Command::AddAddress { peer, addr, reply } => {
                self.swarm.add_peer_address(peer, addr);
                let _ = reply.send(());
            }
            Command::Request {
                peer,
                request,
                deadline,
                reply,
            } => self.request(
                peer,
                Queued {
                    request,
                    deadline,
                    reply,
                },
            ),
            Command::SetCapabilities {
                capabilities,
                reply,
            } => {
                let _ = reply.send(self.set_capabilities(capabilities));
            }
            Command::Offers(reply) => {
                let _ = reply.send(self.gossip.directory.snapshot());
            }
            Command::CacheOffers { generation, offers } => {
                self.gossip.directory.cache(generation, offers);
            }
            Command::Directory(reply) => {
                let _ = reply.send(self.gossip.directory.shared_entries());
            }
            Command::Lookup { key, reply } => self.start_lookup(key, reply),
            Command::Fetch { peer, reply } => self.start_fetch(
                peer,
                Vec::new(),
                fetch::Fetch {
                    source: crate::discovery::Source::Fetch,
                    reply: Some(reply),
                    probe: false,
                },
            ),
            Command::PublishRaw(bytes, reply) => {
                self.publish(bytes);
                let _ = reply.send(());
            }
            Command::GossipScore(peer, reply) => {
                let score = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .as_ref()
                    .and_then(|g| g.peer_score(&peer));
                let _ = reply.send(score);
            }
            Command::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                if advertise(&mut self.swarm, address.clone()) {
                    self.addresses_changed();
                }
                if let Some((_, reply)) = self.listeners.remove(&listener_id) {
                    let _ = reply.send(Ok(address.clone()));
                }
                let _ = self.events.send(Event::Listening(address));
            }
            // An interface went away (a laptop left its network): peers
            // cannot reach the node there any more.
            SwarmEvent::ExpiredListenAddr { address, .. }
                if self.swarm.external_addresses().any(|a| *a == address) =>
            {
                self.swarm.remove_external_address(&address);
                self.addresses_changed();
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                if let Some((addr, reply)) = self.listeners.remove(&listener_id) {
                    let _ = reply.send(Err(NodeError::Listen {
                        addr: addr.to_string(),
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some((addr, reply)) = self.listeners.remove(&listener_id) {
                    let reason = reason
                        .err()
                        .map_or_else(|| "the listener closed".to_owned(), |e| e.to_string());
                    let _ = reply.send(Err(NodeError::Listen {
                        addr: addr.to_string(),
                        reason,
                    }));
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.dial_connected(connection_id, peer_id);
                self.redials.connected(connection_id, peer_id);
                if num_established.get() == 1 {
                    tracing::debug!(%peer_id, "connected");
                    let _ = self.events.send(Event::PeerConnected(peer_id));
                }
                self.fetch_connected(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                self.dial_closed(connection_id, cause.as_ref());
                self.identify_sent.remove(&connection_id);
                self.refusing.remove(&connection_id);
                if num_established == 0 {
                    tracing::debug!(%peer_id, ?cause, "disconnected");
                    if let Some(gone) = self.gone.remove(&peer_id) {
                        gone.send_replace(true);
                    }
                    self.window.disconnected(&peer_id);
                    self.on_peer_lost(peer_id, peers::closed_on_error(cause.as_ref()));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                if let Some(peer) = peer_id {
                    self.fetch_unreachable(peer, &error.to_string());
                }
                let unconnected = peer_id.is_some_and(|p| !self.swarm.is_connected(&p));
                self.mdns_dial_failed(connection_id, unconnected, &error);
                self.dial_failed(connection_id, &error);
            }
            SwarmEvent::Behaviour(event) => match event {
                BehaviourEvent::Messaging(event) => self.on_messaging(event),
                BehaviourEvent::Fetch(event) => self.on_fetch(event),
                BehaviourEvent::Gossipsub(event) => self.on_gossip(event),
                BehaviourEvent::Kad(event) => self.on_kad(event),
                BehaviourEvent::Identify(event) => self.on_identify(event),
                BehaviourEvent::Mdns(event) => self.on_mdns(event),
                _ => {}
            },
            _ => {}
        }
    }
}

/// Records a listen address as one peers can reach this node at. Ecco
/// meshes run on LANs, private clusters and hosts with public addresses:
/// where a node listens is where peers reach it (there is no NAT traversal).
/// Loopback addresses are advertised only while the node has no other, so
/// that LAN peers are not sent to their own loopback. Returns whether the
/// advertised addresses changed.
fn advertise(swarm: &mut Swarm<Behaviour>, address: Multiaddr) -> bool {
    let loopback = is_loopback(&address);
    let others: Vec<Multiaddr> = swarm.external_addresses().cloned().collect();
    if others.contains(&address) || (loopback && others.iter().any(|a| !is_loopback(a))) {
        return false;
    }
    if !loopback {
        for old in others.into_iter().filter(is_loopback) {
            swarm.remove_external_address(&old);
        }
    }
    swarm.add_external_address(address);
    true
}

fn is_loopback(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// Splits `/…/p2p/<id>` into the peer and the address before it.
fn split_peer(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut addr = addr.clone();
    match addr.pop()? {
        libp2p::multiaddr::Protocol::P2p(peer) => Some((peer, addr)),
        _ => None,
    }
}
