//! Agents: a node that offers capabilities, answers requests with handlers,
//! and asks others through a query pipeline.
//!
//! ```
//! use ecco::agent::{Agent, Call, HandlerError};
//! use ecco::node::{Answer, Config};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // An agent that offers a capability and answers it.
//! let shouter = Agent::builder()
//!     .config(Config::memory())
//!     .capability("text/upper shout@1.0.0".parse()?)
//!     .handler("text/upper", |call: Call| async move {
//!         let text = call.request.payload.as_str().unwrap_or_default().to_uppercase();
//!         Ok::<_, HandlerError>(Answer::new(text.into()))
//!     })
//!     .spawn()
//!     .await?;
//!
//! // Another that knows only the first one's address, and asks.
//! let mut config = Config::memory();
//! config.bootstrap = shouter.addresses().await?;
//! let client = Agent::builder().config(config).spawn().await?;
//! let answered = client
//!     .query("text/upper".parse()?)
//!     .send("hello".into())
//!     .await?;
//! assert_eq!(answered.consensus.answer, Some("HELLO".into()));
//! # Ok(())
//! # }
//! ```

mod ask;
mod discovery;
mod handler;
mod lookups;
pub mod memory;
mod negotiate;
mod registry;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ecco_core::matcher::Explanation;
use ecco_core::{Capability, Matcher, Performance, Query, Selector};
use ecco_identity::Passphrase;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

pub use ask::{Answered, Ask, QueryError, Ranked};
pub use handler::{Call, Handler, HandlerError, Negotiator, Proposal};
pub use negotiate::{Negotiation, NegotiationError};

use crate::node::{Config, Node, NodeError};
use crate::{Identity, PeerId, agent_id};
use handler::Handlers;
use lookups::Lookups;
use memory::Memory;

/// How long `shutdown` waits for cancelled handler calls to end.
const SERVING_STOP: Duration = Duration::from_secs(5);

/// Why an agent could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The identity could not be loaded or created.
    #[error("identity: {0}")]
    Identity(#[from] ecco_identity::Error),
    /// The node failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The data directory could not be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The registry URL is not usable.
    #[error("registry: {0}")]
    Registry(#[from] ecco_registry::ClientError),
    /// The agent has no registry configured.
    #[error("this agent has no registry; set one with Builder::registry")]
    NoRegistry,
}

#[derive(Debug)]
enum IdentitySource {
    Ephemeral,
    Given(Box<Identity>),
    File {
        path: PathBuf,
        passphrase: Option<Passphrase>,
    },
}

/// Sets an agent up; see [`Agent::builder`].
#[derive(Debug)]
pub struct Builder {
    identity: IdentitySource,
    config: Config,
    capabilities: Vec<Capability>,
    handlers: Handlers,
    data_dir: Option<PathBuf>,
    registry: Option<String>,
    registry_roots: Vec<u8>,
    name: Option<String>,
    heartbeat: Duration,
    concurrency: usize,
    private_errors: bool,
    seed: Option<u64>,
}

impl Builder {
    /// Uses this identity (the default is a new, ephemeral one).
    #[must_use]
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = IdentitySource::Given(Box::new(identity));
        self
    }

    /// Loads the identity from a key file, creating it if missing.
    #[must_use]
    pub fn identity_file(
        mut self,
        path: impl Into<PathBuf>,
        passphrase: Option<Passphrase>,
    ) -> Self {
        self.identity = IdentitySource::File {
            path: path.into(),
            passphrase,
        };
        self
    }

    /// The node's configuration: mesh name, private key, bootstrap peers,
    /// listen addresses, mDNS on or off, limits.
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Offers a capability (more can be added while running).
    #[must_use]
    pub fn capability(mut self, capability: Capability) -> Self {
        self.capabilities.push(capability);
        self
    }

    /// Answers requests for capability type `kind` with `handler`.
    #[must_use]
    pub fn handler(mut self, kind: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.by_type.insert(kind.into(), Arc::new(handler));
        self
    }

    /// Answers requests for `kind` with a handler shared with other types
    /// or agents.
    #[must_use]
    pub fn shared_handler(mut self, kind: impl Into<String>, handler: Arc<dyn Handler>) -> Self {
        self.handlers.by_type.insert(kind.into(), handler);
        self
    }

    /// Decides negotiations about capability type `kind` (without one, the
    /// agent offers the declared terms: [`negotiation::default_rule`](crate::negotiation::default_rule)).
    #[must_use]
    pub fn negotiator(mut self, kind: impl Into<String>, negotiator: impl Negotiator) -> Self {
        self.handlers
            .negotiators
            .insert(kind.into(), Arc::new(negotiator));
        self
    }

    /// Answers requests for every type without a handler of its own.
    #[must_use]
    pub fn fallback_handler(mut self, handler: impl Handler) -> Self {
        self.handlers.fallback = Some(Arc::new(handler));
        self
    }

    /// Keeps the agent's memory of peers' performance in this directory, so
    /// that it survives restarts (without one it lives in memory only).
    #[must_use]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// A registry (`http://host:port` or `https://host:port`) to register
    /// with, heartbeat to, search when the mesh knows too few agents, and
    /// report feedback to. Answers then carry receipts. The registry being
    /// down never stops the agent.
    #[must_use]
    pub fn registry(mut self, url: impl Into<String>) -> Self {
        self.registry = Some(url.into());
        self
    }

    /// Also trusts these root certificates (PEM) for an `https` registry,
    /// beyond the system's: a private deployment's own CA. Checked by
    /// [`Builder::spawn`].
    #[must_use]
    pub fn registry_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.registry_roots.extend(pem.into());
        self
    }

    /// The name shown in the registry (default: `agent-` and the end of the
    /// peer id).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How often to heartbeat to the registry (default 30 s).
    #[must_use]
    pub fn registry_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// At most this many requests handled at once (default 64).
    #[must_use]
    pub fn concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests;
        self
    }

    /// Keeps a failing handler's message in this agent's log (default:
    /// off, the requester gets it). The requester then learns only that
    /// the handler failed, with a reference that finds the log line: for an
    /// agent open to strangers, whose handlers' errors may name files,
    /// hosts or worse. Refusals ([`HandlerError::refused`]) are the
    /// handler's answer and still reach the requester as written.
    #[must_use]
    pub fn private_errors(mut self, private: bool) -> Self {
        self.private_errors = private;
        self
    }

    /// Seeds the random and weighted selection strategies (default: random).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Starts the agent: its node listens, dials the bootstrap peers,
    /// announces the capabilities and serves requests.
    pub async fn spawn(self) -> Result<Agent, AgentError> {
        let identity = match self.identity {
            IdentitySource::Ephemeral => Identity::generate(),
            IdentitySource::Given(identity) => *identity,
            IdentitySource::File { path, passphrase } => {
                Identity::load_or_create(path, passphrase.as_ref())?
            }
        };
        let memory = match &self.data_dir {
            Some(dir) => Memory::open(dir).map_err(|source| AgentError::DataDir {
                path: dir.clone(),
                source,
            })?,
            None => Memory::default(),
        };
        let dht = self.config.discovery.dht;
        let mdns = self.config.discovery.mdns;
        let registry = match &self.registry {
            Some(url) => {
                let client = ecco_registry::Client::new(url, identity.clone())?;
                Some(if self.registry_roots.is_empty() {
                    client
                } else {
                    client.with_root_certificates(&self.registry_roots)?
                })
            }
            None => None,
        };
        let (node, inbox) = Node::spawn(&identity, self.config).await?;
        if !self.capabilities.is_empty() {
            node.set_capabilities(self.capabilities.clone()).await?;
        }
        let capabilities = Arc::new(Mutex::new(self.capabilities));
        let serving = tokio::spawn(handler::serve(
            inbox,
            self.handlers,
            capabilities.clone(),
            self.concurrency,
            registry.as_ref().map(|_| identity.clone()),
            self.private_errors,
        ));
        let registry = registry.map(|client| {
            let peer = identity.peer_id().to_base58();
            let name = self
                .name
                .unwrap_or_else(|| format!("agent-{}", &peer[peer.len().saturating_sub(6)..]));
            registry::Link::start(
                client,
                node.clone(),
                capabilities.clone(),
                name,
                self.heartbeat,
            )
        });
        let seed = self.seed.unwrap_or_else(rand::random);
        Ok(Agent {
            inner: Arc::new(Inner {
                node,
                capabilities,
                selector: Mutex::new(Selector::new(seed)),
                memory: Mutex::new(memory),
                matcher: Matcher::default(),
                registry,
                dht,
                mdns,
                lookups: Mutex::default(),
                serving: Mutex::new(Some(serving)),
            }),
        })
    }
}

/// A running agent. Cheap to clone; every clone is the same agent.
#[derive(Debug, Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node: Node,
    /// Shared with the serving task, which reads the declared terms.
    capabilities: Arc<Mutex<Vec<Capability>>>,
    selector: Mutex<Selector>,
    memory: Mutex<Memory>,
    matcher: Matcher,
    registry: Option<registry::Link>,
    dht: bool,
    /// Whether mDNS may bring peers at any time: see [`Agent::discover_all`].
    mdns: bool,
    /// Recent DHT lookups and registry searches, by query.
    lookups: Mutex<Lookups>,
    /// The task serving requests; it ends once the node stops.
    serving: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Locks a mutex that no code path can poison in a harmful way: every
/// critical section only reads or replaces plain data.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Agent {
    /// A builder with an ephemeral identity and the default configuration
    /// (a LAN node with mDNS; use [`Config::loopback`] for one machine).
    pub fn builder() -> Builder {
        Builder {
            identity: IdentitySource::Ephemeral,
            config: Config::default(),
            capabilities: Vec::new(),
            handlers: Handlers::default(),
            data_dir: None,
            registry: None,
            registry_roots: Vec::new(),
            name: None,
            heartbeat: Duration::from_secs(30),
            concurrency: 64,
            private_errors: false,
            seed: None,
        }
    }

    /// The agent's id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.node.peer_id()
    }

    /// The node underneath, for what the agent API does not cover.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The registry URL, if one was configured.
    pub fn registry(&self) -> Option<&str> {
        self.inner.registry.as_ref().map(|link| link.client.url())
    }

    /// Reports to the registry how an interaction went, with the receipt the
    /// agent gave in its answer ([`Answered::receipts`]). `rating` is 1 to 5.
    pub async fn feedback(
        &self,
        receipt: &ecco_registry::Receipt,
        success: bool,
        latency_ms: u32,
        rating: Option<u8>,
    ) -> Result<ecco_registry::wire::FeedbackEntry, AgentError> {
        let link = self.inner.registry.as_ref().ok_or(AgentError::NoRegistry)?;
        let feedback = ecco_registry::wire::Feedback {
            receipt: receipt.clone(),
            success,
            latency_ms,
            rating,
        };
        Ok(link.client.feedback(&feedback).await?)
    }

    /// Where peers reach this agent: its listen addresses, each ending with
    /// `/p2p/<id>`, as bootstrap addresses are written.
    pub async fn addresses(&self) -> Result<Vec<Multiaddr>, NodeError> {
        let id = self.peer_id();
        Ok(self
            .inner
            .node
            .listen_addrs()
            .await?
            .into_iter()
            .map(|a| a.with(Protocol::P2p(id)))
            .collect())
    }

    /// The capabilities offered now.
    pub fn capabilities(&self) -> Vec<Capability> {
        lock(&self.inner.capabilities).clone()
    }

    /// Replaces the capabilities offered, and re-announces them.
    pub async fn set_capabilities(&self, capabilities: Vec<Capability>) -> Result<(), NodeError> {
        self.inner
            .node
            .set_capabilities(capabilities.clone())
            .await?;
        *lock(&self.inner.capabilities) = capabilities;
        if let Some(link) = &self.inner.registry {
            link.capabilities_changed();
        }
        Ok(())
    }

    /// Adds a capability, or replaces the one with the same type and name.
    pub async fn add_capability(&self, capability: Capability) -> Result<(), NodeError> {
        let mut all = self.capabilities();
        all.retain(|c| !(c.kind() == capability.kind() && c.name() == capability.name()));
        all.push(capability);
        self.set_capabilities(all).await
    }

    /// Stops offering the capability of this type and name; says whether it was offered.
    pub async fn remove_capability(&self, kind: &str, name: &str) -> Result<bool, NodeError> {
        let mut all = self.capabilities();
        let before = all.len();
        all.retain(|c| !(c.kind().as_str() == kind && c.name() == name));
        let removed = all.len() < before;
        if removed {
            self.set_capabilities(all).await?;
        }
        Ok(removed)
    }

    /// What this agent has observed of a peer.
    pub fn performance(&self, peer: &PeerId) -> Option<Performance> {
        lock(&self.inner.memory)
            .peers()
            .get(&agent_id(peer))
            .copied()
    }

    /// Starts negotiating with `peer` about work of type `kind`, described by
    /// `payload`.
    pub fn negotiate(
        &self,
        peer: PeerId,
        kind: ecco_core::CapabilityType,
        payload: serde_json::Value,
    ) -> Negotiation {
        Negotiation::new(self.inner.node.clone(), peer, kind, payload)
    }

    /// Starts a query: discovery, matching, selection, fan-out, aggregation.
    pub fn query(&self, query: Query) -> Ask {
        Ask::new(self.clone(), query)
    }

    /// The offers known now, ranked for `query`, best first.
    pub async fn ranked(&self, query: &Query) -> Result<Vec<Ranked>, NodeError> {
        let offers = self.inner.node.offers().await?;
        Ok(offers
            .rank(&self.inner.matcher, query)
            .into_iter()
            .map(|f| Ranked {
                peer: f.peer,
                capability: f.capability,
                score: f.score,
            })
            .collect())
    }

    /// Why each known offer was or was not matched by `query`.
    pub async fn explain(&self, query: &Query) -> Result<Vec<Explanation>, NodeError> {
        let offers = self.inner.node.offers().await?;
        Ok(self
            .inner
            .matcher
            .explain_all(query, offers.index().offers()))
    }

    /// Saves the performance memory in the background, at most once per
    /// [`memory::SAVE_EVERY`], so that queries do not wait on the disk; a
    /// crash loses at most that much history. Shutdown saves what is left.
    pub(crate) fn save_memory_soon(&self) {
        let Some(snapshot) = lock(&self.inner.memory).snapshot_if_due() else {
            return;
        };
        tokio::task::spawn_blocking(move || {
            if let Err(e) = snapshot.write() {
                tracing::warn!(error = %e, "performance memory not saved");
            }
        });
    }

    /// Withdraws the capabilities, closes the connections and stops; the
    /// handler calls still running are cancelled (dropped) before it returns.
    pub async fn shutdown(self) {
        if let Err(e) = lock(&self.inner.memory).save() {
            tracing::warn!(error = %e, "performance memory not saved");
        }
        if let Some(link) = &self.inner.registry {
            link.stop().await;
        }
        self.inner.node.clone().shutdown().await;
        // The stopped node closes the inbox; the serving task then cancels
        // the calls still running, which kills handler processes, so that
        // none outlives the agent.
        let serving = lock(&self.inner.serving).take();
        if let Some(serving) = serving
            && tokio::time::timeout(SERVING_STOP, serving).await.is_err()
        {
            tracing::warn!("handlers still running {SERVING_STOP:?} after shutdown");
        }
    }
}
