//! How a node is set up: mesh, addresses, transport, private key, limits.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
pub use libp2p::pnet::PreSharedKey as SwarmKey;
use libp2p::{Multiaddr, PeerId};

/// A node's configuration. [`Config::default`] suits a node on a LAN; tests
/// use [`Transport::Memory`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The mesh name. Protocol ids and topics are namespaced by it, so
    /// different meshes on one LAN do not mix. 1 to 64 of `a-z 0-9 - _ .`.
    pub mesh: String,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (with a `/p2p/<peer id>` suffix).
    pub bootstrap: Vec<Multiaddr>,
    /// Which transports to use.
    pub transport: Transport,
    /// The pre-shared key of a private mesh (libp2p pnet). Nodes without it
    /// cannot finish a handshake. QUIC is refused when it is set.
    pub swarm_key: Option<SwarmKey>,
    /// When set, only these peers may connect.
    pub allow: Option<BTreeSet<PeerId>>,
    /// Which discovery mechanisms run.
    pub discovery: Discovery,
    /// Bounds on sizes, times, connections and queues.
    pub limits: Limits,
}

/// Which transports a node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP with Noise and Yamux, plus QUIC unless a swarm key is set; DNS
    /// addresses are resolved.
    Network,
    /// In-process memory transport with Noise and Yamux, for tests.
    Memory,
}

/// Which discovery mechanisms a node runs. All are on by default; tests and
/// demos on one machine turn mDNS off so that nothing is multicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discovery {
    /// Zero-config discovery on the LAN by multicast DNS. Needs the network
    /// transport. What mDNS says is only a hint: the Noise handshake proves
    /// who a peer is.
    pub mdns: bool,
    /// The Kademlia DHT: this node's capabilities are published as provider
    /// records, and [`Node::lookup`](super::Node::lookup) finds others'.
    pub dht: bool,
    /// Signed gossipsub announcements, plus a capability fetch from each peer
    /// this node connects to.
    pub announcements: bool,
}

impl Default for Discovery {
    fn default() -> Self {
        Self {
            mdns: true,
            dht: true,
            announcements: true,
        }
    }
}

/// Bounds on everything a peer or a caller can make large.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest encoded request, in bytes (default 1 MiB).
    pub max_request_bytes: u64,
    /// Largest encoded answer, in bytes (default 8 MiB).
    pub max_response_bytes: u64,
    /// Most memory a request may take once decoded, estimated before it is
    /// decoded (`ecco_core::decoded::Cost`; default 16 MiB). A request within
    /// `max_request_bytes` can unfold into far more in memory (a CBOR `0` is
    /// one byte on the wire, a JSON value of 32 in memory); above this one it
    /// is refused as too large without being decoded.
    pub max_request_memory: u64,
    /// Most memory an answer, or one chunk of a streaming reply, may take
    /// once decoded, estimated before it is decoded (default 64 MiB).
    pub max_response_memory: u64,
    /// How long a request waits for its answer when its caller gives no
    /// time of its own (default 30 s): [`Node::request`](crate::node::Node::request),
    /// each chunk of a streaming reply not given a time of its own, and, on
    /// a provider, a request whose requester did not say how long it waits.
    pub request_timeout: Duration,
    /// The longest a request may take, on either side (default 10 min;
    /// never less than `request_timeout`, at most a year): a longer
    /// [`Node::request_within`](crate::node::Node::request_within) is cut
    /// to it, and a provider works on a request at most this long, however
    /// long its requester says it waits. See [`Limits::longest_request`].
    pub max_request_timeout: Duration,
    /// A new connection's handshake (pnet, Noise, Yamux) must finish within
    /// this (default 20 s); so must, after it, the identify that
    /// [`Node::dial_member`](crate::node::Node::dial_member) waits for.
    pub handshake_timeout: Duration,
    /// Most established connections in all (default 256).
    pub max_connections: u32,
    /// Most established connections per peer (default 2).
    pub max_connections_per_peer: u32,
    /// Most inbound connections still handshaking (default 64).
    pub max_pending_incoming: u32,
    /// New connections are refused above this share of the system's memory (default 0.9).
    pub max_memory_fraction: f64,
    /// Commands queued from handles to the node (default 64).
    pub command_queue: usize,
    /// Inbound requests queued for the application (default 64); beyond it requests are refused as busy.
    pub inbound_queue: usize,
    /// Events buffered per subscriber (default 256); a slower subscriber misses the oldest.
    pub event_buffer: usize,
    /// Most peers the capability directory holds (default 10,000).
    pub max_directory_peers: usize,
    /// Most memory the capability directory's entries may take, estimated
    /// (`discovery::Entry::footprint_of`; default 64 MiB). Bounds what peers
    /// with large capability documents can make a node keep; an index for
    /// ranking them takes about as much again.
    pub max_directory_bytes: usize,
    /// How long an announcement of this node's capabilities stays valid (default 5 min).
    pub announcement_ttl: Duration,
    /// How often the node re-announces unchanged capabilities (default 100 s,
    /// a third of the default TTL). It does not follow `announcement_ttl`:
    /// keep it below that, or peers drop the node between announcements.
    pub reannounce_every: Duration,
    /// Most request streams open at once on one connection, both
    /// directions counted (default 64). This node also sends at most this
    /// many requests to one peer at a time; the rest wait, in order, for one
    /// to finish. A peer that drops a stream unread (its own limit is
    /// reached) is sent no more at once than it took, until it disconnects.
    pub max_concurrent_streams: usize,
    /// Most requests waiting for a free stream, over all peers (default
    /// 1024), request-response and streaming requests each; beyond it
    /// [`Node::request`](crate::node::Node::request) and
    /// [`Node::request_stream`](crate::node::Node::request_stream) fail
    /// with [`RequestError::Busy`](crate::node::RequestError::Busy).
    /// Cancels of requests whose callers stopped waiting do not count: they
    /// wait apart, at most one per request in flight.
    pub max_waiting_requests: usize,
    /// Most streaming requests served at once, over all peers (default 64);
    /// more are refused as busy. This node also has at most this many
    /// streaming requests open to one peer at a time; the rest wait, in
    /// order, for one to end, and the wait counts against the time for
    /// the first chunk.
    pub max_streaming_requests: usize,
    /// Chunks a streaming handler may send ahead of the network (default 16).
    pub stream_buffer: usize,
    /// How long a DHT lookup may take (default 10 s).
    pub lookup_timeout: Duration,
    /// Most providers whose capabilities one lookup fetches (default 20).
    pub max_lookup_providers: usize,
    /// How long others keep this node's provider records (default 24 h).
    pub provider_ttl: Duration,
    /// How often this node republishes its provider records; less than the
    /// TTL so that they never lapse (default 6 h).
    pub provider_republish: Duration,
    /// Most provider records of other peers this node stores in the DHT
    /// (default 16,384), at most 20 per key. Room for the node's own
    /// records (up to 256 keys) is kept on top, so that others' records
    /// cannot crowd them out, nor they others'.
    pub max_dht_records: usize,
    /// Most DHT keys one peer may hold provider records under in this node's
    /// store (default 256): a peer cannot stuff it.
    pub max_provider_keys_per_peer: usize,
}

/// The longest any request may take, whatever the configuration says.
const A_YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

impl Limits {
    /// The longest a request may take: `max_request_timeout`, or
    /// `request_timeout` if that is longer, and at most a year (so that
    /// `Duration::MAX`, meaning no limit, still gives deadlines a clock can
    /// tell).
    pub fn longest_request(&self) -> Duration {
        self.max_request_timeout
            .max(self.request_timeout)
            .min(A_YEAR)
    }

    /// How long a provider works on a request whose requester said it
    /// waits `stated` (a peer may send any number): that, or the request
    /// timeout if it did not say, and never longer than the longest.
    pub(crate) fn answer_within(&self, stated: Option<Duration>) -> Duration {
        stated
            .unwrap_or(self.request_timeout)
            .min(self.longest_request())
    }
}

/// How long after a request's time (`Limits::answer_within`) a provider
/// ends it: the requester, whose deadline it mostly is, times out first and
/// says so, rather than getting the provider's "no answer" a moment before.
/// Below libp2p's backstop (`behaviour::BACKSTOP_MARGIN`), which would drop
/// a request-response stream unanswered.
pub(crate) const OVERTIME: Duration = Duration::from_secs(1);

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 1024 * 1024,
            max_response_bytes: 8 * 1024 * 1024,
            max_request_memory: 16 * 1024 * 1024,
            max_response_memory: 64 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_request_timeout: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(20),
            max_connections: 256,
            max_connections_per_peer: 2,
            max_pending_incoming: 64,
            max_memory_fraction: 0.9,
            command_queue: 64,
            inbound_queue: 64,
            event_buffer: 256,
            max_concurrent_streams: 64,
            max_waiting_requests: 1024,
            max_directory_peers: 10_000,
            max_directory_bytes: 64 * 1024 * 1024,
            announcement_ttl: Duration::from_secs(300),
            reannounce_every: Duration::from_secs(100),
            max_streaming_requests: 64,
            stream_buffer: 16,
            lookup_timeout: Duration::from_secs(10),
            max_lookup_providers: 20,
            provider_ttl: Duration::from_secs(24 * 3600),
            provider_republish: Duration::from_secs(6 * 3600),
            max_dht_records: 16_384,
            max_provider_keys_per_peer: 256,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mesh: "ecco".to_owned(),
            listen: vec![
                tcp(Ipv4Addr::UNSPECIFIED),
                Multiaddr::empty()
                    .with(Protocol::Ip4(Ipv4Addr::UNSPECIFIED))
                    .with(Protocol::Udp(0))
                    .with(Protocol::QuicV1),
            ],
            bootstrap: Vec::new(),
            transport: Transport::Network,
            swarm_key: None,
            allow: None,
            discovery: Discovery::default(),
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// A configuration for in-process tests: memory transport, one listener,
    /// no mDNS.
    pub fn memory() -> Self {
        Self {
            listen: vec![Multiaddr::empty().with(Protocol::Memory(0))],
            transport: Transport::Memory,
            discovery: Discovery {
                mdns: false,
                ..Discovery::default()
            },
            ..Self::default()
        }
    }

    /// A configuration listening on loopback TCP only, without mDNS, so that
    /// nothing leaves the machine (demos, tests, benchmarks).
    pub fn loopback() -> Self {
        Self {
            listen: vec![tcp(Ipv4Addr::LOCALHOST)],
            discovery: Discovery {
                mdns: false,
                ..Discovery::default()
            },
            ..Self::default()
        }
    }
}

fn tcp(ip: Ipv4Addr) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4(ip))
        .with(Protocol::Tcp(0))
}

/// Generates a new random swarm key for a private mesh.
pub fn generate_swarm_key() -> SwarmKey {
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    SwarmKey::new(key)
}
