//! Flags shared by the commands that join a mesh.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use ecco::Multiaddr;
use ecco::agent::Agent;
use ecco::node::{Config, NodeError, SwarmKey};

/// How long a command waits for each bootstrap peer to answer.
const BOOTSTRAP_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct MeshArgs {
    /// The mesh name (namespaces protocols and topics).
    #[arg(long)]
    pub(crate) mesh: Option<String>,
    /// An address to listen on, such as /ip4/0.0.0.0/tcp/4001 (repeatable).
    #[arg(long = "listen", value_name = "MULTIADDR", value_parser = multiaddr)]
    pub(crate) listen: Vec<String>,
    /// A peer to join through, /ip4/…/tcp/…/p2p/ID (repeatable).
    #[arg(long = "bootstrap", value_name = "MULTIADDR", value_parser = multiaddr)]
    pub(crate) bootstrap: Vec<String>,
    /// The private mesh's swarm key file (from `ecco swarm-key generate`).
    #[arg(long)]
    pub(crate) swarm_key: Option<PathBuf>,
    /// Turns mDNS (LAN discovery by multicast) off.
    #[arg(long, overrides_with = "mdns")]
    pub(crate) no_mdns: bool,
    /// Keeps mDNS on, even if an agent's file says `mdns = false` (the
    /// last of `--mdns` and `--no-mdns` wins; on is the default).
    #[arg(long, overrides_with = "no_mdns")]
    pub(crate) mdns: bool,
}

/// Checks a `--listen` or `--bootstrap` flag: one multiaddr.
fn multiaddr(text: &str) -> Result<String, String> {
    match text.parse::<Multiaddr>() {
        Ok(_) => Ok(text.to_owned()),
        Err(e) => Err(format!(
            "not a multiaddr (such as /ip4/127.0.0.1/tcp/4001): {e}"
        )),
    }
}

/// Checks a duration flag: a number with a unit, such as 500ms, 30s or 2m.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("not a duration such as 500ms, 30s or 2m: {e}"))
}

pub(crate) fn parse_addr(text: &str, what: &str) -> anyhow::Result<Multiaddr> {
    text.parse().with_context(|| {
        format!("{what} `{text}` is not a multiaddr (such as /ip4/127.0.0.1/tcp/4001)")
    })
}

impl MeshArgs {
    /// The node configuration these flags describe, over `base`.
    pub(crate) fn config(&self, mut base: Config) -> anyhow::Result<Config> {
        if let Some(mesh) = &self.mesh {
            base.mesh.clone_from(mesh);
        }
        if !self.listen.is_empty() {
            base.listen = self
                .listen
                .iter()
                .map(|a| parse_addr(a, "listen address"))
                .collect::<anyhow::Result<_>>()?;
        }
        base.bootstrap = self
            .bootstrap
            .iter()
            .map(|a| parse_addr(a, "bootstrap address"))
            .collect::<anyhow::Result<_>>()?;
        if let Some(path) = &self.swarm_key {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read swarm key {}", path.display()))?;
            crate::id::warn_if_shared(path, "swarm key file");
            let key: SwarmKey = text
                .parse()
                .map_err(|e| anyhow::anyhow!("swarm key {}: {}", path.display(), key_error(&e)))?;
            base.swarm_key = Some(key);
            // pnet does not cover QUIC: listen on TCP only unless told otherwise.
            if self.listen.is_empty() {
                base.listen.retain(|a| !a.to_string().contains("/quic"));
            }
        }
        if self.no_mdns {
            base.discovery.mdns = false;
        }
        Ok(base)
    }
}

/// Why a swarm key file was refused, in words (the parser's own error
/// only displays as its variant's name, such as `InvalidKeyFile`).
fn key_error(e: &<SwarmKey as FromStr>::Err) -> String {
    type KeyError = <SwarmKey as FromStr>::Err;
    let expected = "a swarm key file is three lines: /key/swarm/psk/1.0.0/, /base16/ and \
                    64 hex digits (make one with `ecco swarm-key generate`)";
    match e {
        KeyError::InvalidKeyFile => format!("not a swarm key file; {expected}"),
        KeyError::InvalidKeyType => {
            "unsupported key type: the first line must be /key/swarm/psk/1.0.0/".to_owned()
        }
        KeyError::InvalidKeyEncoding => {
            "unsupported key encoding: the second line must be /base16/".to_owned()
        }
        KeyError::InvalidKeyLength => "the key (third line) must be 64 hex digits".to_owned(),
        KeyError::InvalidKeyChar(e) => format!("the key (third line) is not hex digits: {e}"),
    }
}

/// Room for the answer to travel after a call's own deadline.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// Lets the node's requests last as long as calls of `call` need:
/// `Limits::request_timeout` (30 s by default) is how long a request waits,
/// and an agent works on one, when its requester does not say; a longer
/// handler or `ask --timeout` would be cut short. (It also raises
/// `Limits::longest_request` when above it.)
pub(crate) fn allow_calls_of(config: &mut Config, call: Duration) {
    let needed = call.saturating_add(ANSWER_MARGIN);
    if config.limits.request_timeout < needed {
        config.limits.request_timeout = needed;
    }
}

/// Connects to every bootstrap peer and waits until it identifies as a
/// member of this mesh, so that a wrong address, swarm key or mesh name is
/// an error now rather than an empty answer later.
pub(crate) async fn reach_bootstrap(agent: &Agent, config: &Config) -> anyhow::Result<()> {
    for addr in &config.bootstrap {
        match tokio::time::timeout(BOOTSTRAP_WAIT, agent.node().dial_member(addr.clone())).await {
            Ok(Ok(_)) => {}
            Ok(Err(NodeError::OtherMesh {
                theirs: Some(theirs),
                ours,
                ..
            })) => bail!(
                "bootstrap peer {addr} is on mesh `{theirs}`, this node on mesh `{ours}` (set --mesh to match)"
            ),
            // Says the likely cause of a failed handshake itself.
            Ok(Err(e)) => bail!("cannot reach bootstrap peer {addr}: {e}"),
            // A peer with another swarm key, or none, often stalls the
            // handshake rather than failing it.
            Err(_) => bail!(
                "bootstrap peer {addr} did not answer within {BOOTSTRAP_WAIT:?} ({})",
                if config.swarm_key.is_some() {
                    "a private mesh: does that peer use the same swarm key?"
                } else {
                    "if that peer runs a private mesh, this node needs its swarm key: --swarm-key"
                }
            ),
        }
    }
    Ok(())
}
