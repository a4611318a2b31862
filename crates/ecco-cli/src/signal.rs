//! Waiting for the user or a service manager to stop a long-running command.

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

/// Ctrl-C (SIGINT) or SIGTERM, which service managers and `docker stop`
/// send: either stops the command cleanly (an agent deregisters and its
/// handler processes are killed), where the default action of SIGTERM
/// would end the process on the spot.
pub(crate) async fn stop_requested() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot wait for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}
