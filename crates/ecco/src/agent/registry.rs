//! Keeping an agent registered: register, heartbeat (with the new listen
//! addresses when they change), re-register when the capabilities change or
//! the registry forgot us, back off while it is down.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecco_core::CapabilityDocument;
use ecco_registry::address::{Reach, reach};
use ecco_registry::wire::{MAX_ADDRESS_LEN, MAX_ADDRESSES, Registration};
use ecco_registry::{Client, ClientError};
use libp2p::Multiaddr;
use tokio::sync::Notify;

use crate::node::Node;

/// First wait after a failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between attempts while the registry is down.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long shutdown waits for the deregistration.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent's link to its registry.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) client: Client,
    changed: Arc<Notify>,
    task: tokio::task::AbortHandle,
}

impl Link {
    /// Starts keeping `node`'s agent registered under `name`.
    pub(crate) fn start(
        client: Client,
        node: Node,
        capabilities: Arc<std::sync::Mutex<Vec<ecco_core::Capability>>>,
        name: String,
        heartbeat: Duration,
    ) -> Self {
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn(keep_registered(
            client.clone(),
            node,
            capabilities,
            name,
            heartbeat,
            changed.clone(),
        ))
        .abort_handle();
        Self {
            client,
            changed,
            task,
        }
    }

    /// The capabilities changed: register again with the new ones.
    pub(crate) fn capabilities_changed(&self) {
        self.changed.notify_one();
    }

    /// Stops heartbeating and deregisters, waiting a little at most.
    pub(crate) async fn stop(&self) {
        self.task.abort();
        match tokio::time::timeout(DEREGISTER_TIMEOUT, self.client.deregister()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::info!(error = %e, "registry deregistration failed"),
            Err(_) => tracing::info!("registry deregistration timed out"),
        }
    }
}

async fn keep_registered(
    client: Client,
    node: Node,
    capabilities: Arc<std::sync::Mutex<Vec<ecco_core::Capability>>>,
    name: String,
    heartbeat: Duration,
    changed: Arc<Notify>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut failures = Failures::default();
    loop {
        let offered = super::lock(&capabilities).clone();
        let capabilities = match CapabilityDocument::new(offered) {
            Ok(doc) => doc,
            Err(e) => {
                tracing::warn!(error = %e, "capabilities cannot be registered");
                changed.notified().await;
                continue;
            }
        };
        let addresses = match node.listen_addrs().await {
            Ok(addrs) => registrable(&addrs),
            // The node stopped: so do we.
            Err(_) => return,
        };
        let registration = Registration {
            name: name.clone(),
            capabilities,
            addresses,
        };
        let mut registered = registration.addresses.clone();
        match client.register(&registration).await {
            Ok(_) => {
                tracing::debug!(registry = client.url(), "registered");
                failures.succeeded(client.url());
                backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                failures.failed("registration", &e);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = changed.notified() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        // Heartbeat until something calls for a new registration.
        loop {
            tokio::select! {
                () = tokio::time::sleep(heartbeat) => {}
                () = changed.notified() => break,
            }
            // Where the node listens changes with its interfaces (a laptop
            // that joins another network) and its listeners: a heartbeat
            // carries the addresses when they changed.
            let current = match node.listen_addrs().await {
                Ok(addrs) => registrable(&addrs),
                Err(_) => return,
            };
            let moved = (current != registered).then_some(current);
            match client.heartbeat(moved.clone()).await {
                Ok(_) => {
                    if let Some(now) = moved {
                        tracing::info!("the registry has the new listen addresses");
                        registered = now;
                    }
                    failures.succeeded(client.url());
                    backoff = FIRST_BACKOFF;
                }
                Err(ClientError::Api { status: 404, .. }) => {
                    tracing::info!("the registry forgot this agent; registering again");
                    break;
                }
                Err(e) => {
                    failures.failed("heartbeat", &e);
                    tokio::time::sleep(backoff.min(heartbeat)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The addresses to register: at most [`MAX_ADDRESSES`], each within
/// [`MAX_ADDRESS_LEN`], the most widely reachable first (public, then
/// LAN, then loopback: [`Reach`]). A node listening on every
/// interface of a busy host can have more than the registry takes; sending
/// them all would have every registration refused.
fn registrable(addrs: &[Multiaddr]) -> Vec<String> {
    let mut ranked: Vec<(Reach, String)> = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let text = addr.to_string();
        if text.len() > MAX_ADDRESS_LEN || ranked.iter().any(|(_, t)| *t == text) {
            continue;
        }
        ranked.push((reach(addr), text));
    }
    // Stable: within a rank, the node's own order stays.
    ranked.sort_by_key(|(rank, _)| *rank);
    ranked.truncate(MAX_ADDRESSES);
    ranked.into_iter().map(|(_, text)| text).collect()
}

/// How loud registry failures are. The first of a run is a warning, so
/// that an operator sees a registry that is down or misconfigured (by
/// default only warnings are shown); the retries that follow are quiet, and
/// the recovery is a warning again, to close the story. A refusal (the
/// registry answered no) is always a warning.
#[derive(Debug, Default)]
struct Failures {
    in_a_row: u32,
}

impl Failures {
    /// Logs a failure; whether it was loud.
    fn failed(&mut self, what: &str, e: &ClientError) -> bool {
        self.in_a_row = self.in_a_row.saturating_add(1);
        let loud = !e.is_transient() || self.in_a_row == 1;
        if !e.is_transient() {
            tracing::warn!(error = %e, "registry refused the {what}; retrying later");
        } else if loud {
            tracing::warn!(error = %e, "registry {what} failed; retrying with backoff (retries are logged at info level)");
        } else {
            tracing::info!(error = %e, attempt = self.in_a_row, "registry {what} failed again");
        }
        loud
    }

    /// Logs a success; whether it ended a run of failures.
    fn succeeded(&mut self, registry: &str) -> bool {
        let ended = std::mem::take(&mut self.in_a_row);
        if ended > 0 {
            tracing::warn!(registry, failures = ended, "registry reached again");
        }
        ended > 0
    }
}

/// The wall clock in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_of_a_run_is_loud_and_the_retries_are_quiet() {
        let down = ClientError::Unreachable("connection refused".into());
        let refused = ClientError::Api {
            status: 401,
            code: "bad_signature".into(),
            message: "bad signature".into(),
        };
        let mut f = Failures::default();
        assert!(!f.succeeded("http://r"), "nothing to recover from");
        assert!(f.failed("registration", &down));
        assert!(!f.failed("registration", &down));
        assert!(!f.failed("registration", &down));
        assert!(
            f.failed("registration", &refused),
            "a refusal is always loud"
        );
        assert!(f.succeeded("http://r"));
        assert!(!f.succeeded("http://r"));
        assert!(f.failed("heartbeat", &down), "a new run starts loud");
    }

    #[test]
    fn at_most_the_registrys_limit_is_registered_most_reachable_first() {
        let mut addrs: Vec<Multiaddr> = Vec::new();
        addrs.push("/ip4/127.0.0.1/tcp/4001".parse().unwrap());
        for i in 0..12 {
            addrs.push(format!("/ip4/10.0.0.{i}/tcp/4001").parse().unwrap());
        }
        addrs.push("/ip6/::1/tcp/4001".parse().unwrap());
        addrs.push("/ip4/203.0.114.7/tcp/4001".parse().unwrap());
        addrs.push("/dns4/agent.example.com/tcp/4001".parse().unwrap());
        for i in 0..6 {
            addrs.push(format!("/ip6/fd00::{i}/udp/4001/quic-v1").parse().unwrap());
        }
        // Twice the same: registered once.
        addrs.push("/ip4/203.0.114.7/tcp/4001".parse().unwrap());
        // Longer than the registry takes.
        let long = format!("/dns4/{}.example.com/tcp/1", "a".repeat(MAX_ADDRESS_LEN));
        addrs.push(long.parse().unwrap());
        assert!(addrs.len() > MAX_ADDRESSES);

        let chosen = registrable(&addrs);
        assert_eq!(chosen.len(), MAX_ADDRESSES);
        assert_eq!(
            chosen[..2],
            [
                "/ip4/203.0.114.7/tcp/4001",
                "/dns4/agent.example.com/tcp/4001"
            ]
        );
        assert_eq!(
            chosen[2], "/ip4/10.0.0.0/tcp/4001",
            "then the LAN, in order"
        );
        assert!(chosen.iter().all(|a| a.len() <= MAX_ADDRESS_LEN));
        assert!(
            !chosen
                .iter()
                .any(|a| a == "/ip4/127.0.0.1/tcp/4001" || a == "/ip6/::1/tcp/4001"),
            "loopback goes last, here past the limit: {chosen:?}"
        );
    }

    #[test]
    fn a_loopback_only_node_registers_its_loopback_addresses() {
        let addrs: Vec<Multiaddr> = vec![
            "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
            "/ip6/::1/tcp/4001".parse().unwrap(),
        ];
        assert_eq!(
            registrable(&addrs),
            ["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001"]
        );
    }
}
