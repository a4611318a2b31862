//! TCP dials from a fresh port, never from the listening one.
//!
//! libp2p's TCP transport makes each dial leave from the node's listening
//! port when it can (`PortUse::Reuse`, the swarm's default, which helps NAT
//! traversal). Two nodes that dial each other at the same moment, as two
//! nodes that find each other by mDNS do, then send SYNs with the same pair
//! of addresses: TCP joins them into one connection opened from both ends,
//! both sides start the handshake as its initiator, and both dials fail.
//! Nothing dials again, so the two never connect (seen in about one run in
//! eight of the mDNS test; once it failed CI). Ecco has no NAT traversal to
//! gain from reuse: where a node listens is what it advertises.

use std::pin::Pin;
use std::task::{Context, Poll};

use libp2p::Multiaddr;
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent};

/// Wraps a transport so that every dial asks for a new local port.
#[derive(Debug)]
pub(crate) struct FreshPorts<T>(pub(crate) T);

impl<T> libp2p::core::Transport for FreshPorts<T>
where
    T: libp2p::core::Transport + Unpin,
{
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.0.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.0.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let opts = DialOpts {
            port_use: PortUse::New,
            ..opts
        };
        self.0.dial(addr, opts)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}
