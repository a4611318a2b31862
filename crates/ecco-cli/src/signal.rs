//! Waiting for the user or a service manager to stop a long-running command.

use anyhow::Context as _;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Ctrl-C (SIGINT) or SIGTERM, which service managers and `docker stop`
/// send: either stops the command cleanly (an agent deregisters and its
/// handler processes are killed), where their default action would end the
/// process on the spot.
pub(crate) struct Stop {
    interrupt: Signal,
    terminate: Signal,
}

impl Stop {
    /// Takes both signals over from now on. Call it before the command says
    /// it is up: whoever reads that line may signal at once, and a signal
    /// that arrives before this would still end the process on the spot.
    pub(crate) fn watch() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?,
            terminate: signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?,
        })
    }

    /// Waits for either signal (one sent since [`watch`](Self::watch) counts).
    pub(crate) async fn requested(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
