//! Keeping an agent registered: register, heartbeat, re-register when the
//! capabilities change or the registry forgot us, back off while it is down.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecco_core::CapabilityDocument;
use ecco_registry::wire::Registration;
use ecco_registry::{Client, ClientError};
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
            Ok(addrs) => addrs.iter().map(ToString::to_string).collect(),
            // The node stopped: so do we.
            Err(_) => return,
        };
        let registration = Registration {
            name: name.clone(),
            capabilities,
            addresses,
        };
        match client.register(&registration).await {
            Ok(_) => {
                tracing::debug!(registry = client.url(), "registered");
                backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                log_failure("registration", &e);
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
            match client.heartbeat(None).await {
                Ok(_) => backoff = FIRST_BACKOFF,
                Err(ClientError::Api { status: 404, .. }) => {
                    tracing::info!("the registry forgot this agent; registering again");
                    break;
                }
                Err(e) => {
                    log_failure("heartbeat", &e);
                    tokio::time::sleep(backoff.min(heartbeat)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

fn log_failure(what: &str, e: &ClientError) {
    if e.is_transient() {
        tracing::info!(error = %e, "registry {what} failed; retrying with backoff");
    } else {
        tracing::warn!(error = %e, "registry refused the {what}; retrying later");
    }
}

/// The wall clock in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
