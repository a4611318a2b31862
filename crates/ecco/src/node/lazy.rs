//! Poll a behaviour, and its handler on each connection, only when it may
//! have work.
//!
//! libp2p-swarm polls every behaviour each time the node's task wakes, and
//! every connection handler each time a connection's task wakes. A request
//! wakes both several times, so on a node with a rich behaviour most of a
//! round trip's CPU went into polling gossipsub, Kademlia, identify, ping and
//! the capability fetch, which had nothing to do (BENCHMARKS.md, "Node").
//! [`Lazy`] skips those polls: it hands the inner behaviour (and each inner
//! handler) a waker of its own and polls it only when
//!
//! - that waker fired (one of its timers, streams or channels is ready),
//! - one of its methods was called since (an event for it, or `DerefMut`:
//!   the event loop changed it), or it returned an event last time (it may
//!   have more), or
//! - for a handler: its behaviour did anything since the handler's last poll,
//!   because behaviours and handlers share queues that do not always wake
//!   the handler (gossipsub pushes into a queue that wakes nobody while the
//!   outbound stream is not open yet). Stock libp2p would poll the handler
//!   at the next wake-up of the connection for any reason; so does this.
//!
//! Nothing is ever polled less often than "after anything that could have
//! changed it", so a behaviour that follows the `poll` contract behaves as
//! before. Kademlia does not quite (it finds a query timed out only when
//! polled, with no timer to wake it), so only its handlers are lazy
//! ([`Lazy::handlers_only`]). `poll_close`, `listen_protocol` and
//! `connection_keep_alive` are passed straight through.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use futures::task::{ArcWake, AtomicWaker};
use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::ConnectionEvent;
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};

/// A behaviour polled only when it may have work; see the module docs.
pub(crate) struct Lazy<B> {
    inner: B,
    wake: Wake,
    /// Set by any `&mut` access; cleared when the inner behaviour is polled.
    dirty: bool,
    /// Bumped after anything that may have changed state shared with the
    /// handlers; each handler compares it with the value it last saw.
    generation: Arc<AtomicU64>,
    /// Poll the inner behaviour on every turn of the swarm, as without
    /// `Lazy` (see [`Lazy::handlers_only`]).
    always: bool,
}

impl<B> Lazy<B> {
    pub(crate) fn new(inner: B) -> Self {
        Self {
            inner,
            wake: Wake::new(),
            dirty: true,
            generation: Arc::new(AtomicU64::new(0)),
            always: false,
        }
    }

    /// Only the handlers are lazy; the behaviour is polled on every turn of
    /// the swarm. For a behaviour that notices deadlines when polled rather
    /// than by a timer of its own: Kademlia finds a query timed out only in
    /// `poll`. Such a behaviour talks to its handlers by events alone, so
    /// its polls that return nothing do not concern them.
    pub(crate) fn handlers_only(inner: B) -> Self {
        Self {
            always: true,
            ..Self::new(inner)
        }
    }

    /// After a method of the inner behaviour ran: poll it next time, and let
    /// the handlers look at what it may have queued for them.
    fn touched(&mut self) {
        self.dirty = true;
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn handler(&self, inner: B::ConnectionHandler) -> Handler<B::ConnectionHandler>
    where
        B: NetworkBehaviour,
    {
        Handler::new(inner, self.generation.clone())
    }
}

impl<B> Deref for Lazy<B> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.inner
    }
}

impl<B> DerefMut for Lazy<B> {
    /// The caller may change anything, so the behaviour is polled at the
    /// swarm's next turn, and that poll tells the handlers.
    fn deref_mut(&mut self) -> &mut B {
        self.dirty = true;
        &mut self.inner
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for Lazy<B> {
    type ConnectionHandler = Handler<B::ConnectionHandler>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let result =
            self.inner
                .handle_pending_inbound_connection(connection_id, local_addr, remote_addr);
        self.touched();
        result
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let result = self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        );
        self.touched();
        result.map(|inner| self.handler(inner))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        let result = self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        );
        self.touched();
        result
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let result = self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        );
        self.touched();
        result.map(|inner| self.handler(inner))
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        self.inner.on_swarm_event(event);
        self.touched();
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event);
        self.touched();
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if self.always {
            let polled = self.inner.poll(cx);
            if polled.is_ready() || std::mem::take(&mut self.dirty) {
                self.generation.fetch_add(1, Ordering::Release);
            }
            return polled;
        }
        let Some(mut cx) = self.wake.turn(cx, &mut self.dirty) else {
            return Poll::Pending;
        };
        let polled = self.inner.poll(&mut cx);
        // Set after the poll: what it queued is visible to a handler that
        // sees the new generation.
        self.generation.fetch_add(1, Ordering::Release);
        if polled.is_ready() {
            self.dirty = true;
        }
        polled
    }
}

/// The connection handler of a [`Lazy`] behaviour.
pub(crate) struct Handler<H> {
    inner: H,
    wake: Wake,
    dirty: bool,
    generation: Arc<AtomicU64>,
    /// The behaviour's generation at this handler's last poll.
    seen: u64,
}

impl<H> Handler<H> {
    fn new(inner: H, generation: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            wake: Wake::new(),
            dirty: true,
            generation,
            seen: u64::MAX,
        }
    }
}

impl<H: ConnectionHandler> ConnectionHandler for Handler<H> {
    type FromBehaviour = H::FromBehaviour;
    type ToBehaviour = H::ToBehaviour;
    type InboundProtocol = H::InboundProtocol;
    type OutboundProtocol = H::OutboundProtocol;
    type InboundOpenInfo = H::InboundOpenInfo;
    type OutboundOpenInfo = H::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        self.inner.listen_protocol()
    }

    fn connection_keep_alive(&self) -> bool {
        self.inner.connection_keep_alive()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        let generation = self.generation.load(Ordering::Acquire);
        if generation != self.seen {
            self.seen = generation;
            self.dirty = true;
        }
        let Some(mut cx) = self.wake.turn(cx, &mut self.dirty) else {
            return Poll::Pending;
        };
        let polled = self.inner.poll(&mut cx);
        if polled.is_ready() {
            self.dirty = true;
        }
        polled
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        self.inner.poll_close(cx)
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        self.inner.on_behaviour_event(event);
        self.dirty = true;
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            '_,
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        self.inner.on_connection_event(event);
        self.dirty = true;
    }
}

/// A waker of one's own that remembers it fired and wakes the task polling
/// the wrapper.
struct Wake {
    flag: Arc<Flag>,
    waker: Waker,
}

struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl ArcWake for Flag {
    fn wake_by_ref(flag: &Arc<Self>) {
        flag.woken.store(true, Ordering::Release);
        flag.task.wake();
    }
}

impl Wake {
    fn new() -> Self {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        let waker = futures::task::waker(flag.clone());
        Self { flag, waker }
    }

    /// The context to poll the inner value with, or `None` when it neither
    /// was woken nor is `dirty`. Clears both: a wake during the poll that
    /// follows sets the flag again.
    fn turn<'a>(&'a self, cx: &Context<'_>, dirty: &mut bool) -> Option<Context<'a>> {
        self.flag.task.register(cx.waker());
        let woken = self.flag.woken.swap(false, Ordering::AcqRel);
        if !woken && !*dirty {
            return None;
        }
        *dirty = false;
        Some(Context::from_waker(&self.waker))
    }
}

#[cfg(test)]
mod tests;
