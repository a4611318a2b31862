//! The baselines: libp2p swarms echoing raw bytes over `request_response`,
//! driven by the task that measures. The swarm's behaviour is either
//! `request_response` alone (the baseline of the 1.3 × target) or that inside
//! the set of protocols an Ecco node runs (`same_protocols`).

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use futures::prelude::*;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{PeerId, StreamProtocol, Swarm, SwarmBuilder, noise, tcp, yamux};

use super::{Figures, IN_FLIGHT, Run, Settings, payload};

/// Raw bytes each way, ended by closing the write side, with a size cap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawCodec;

/// The largest message the raw codec reads.
const RAW_MAX: u64 = 1024 * 1024;

async fn read_capped<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(RAW_MAX + 1).read_to_end(&mut buf).await?;
    if buf.len() as u64 > RAW_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "too large"));
    }
    Ok(buf)
}

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_capped(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_capped(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&response).await
    }
}

pub(crate) type RawBehaviour = request_response::Behaviour<RawCodec>;
pub(crate) type RawEvent = request_response::Event<Vec<u8>, Vec<u8>>;

/// The measured `request_response` on `protocol`, as both baselines run it.
pub(crate) fn raw_request_response(protocol: &'static str) -> RawBehaviour {
    request_response::Behaviour::with_codec(
        RawCodec,
        [(StreamProtocol::new(protocol), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(30))
            .with_max_concurrent_streams(64),
    )
}

/// A swarm on the stack Ecco uses for TCP, running `behaviour`.
pub(crate) fn swarm<B: NetworkBehaviour>(behaviour: impl FnOnce(&Keypair) -> B) -> Swarm<B> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// The baseline: a swarm running only `request_response`.
pub(crate) fn raw_swarm() -> Swarm<RawBehaviour> {
    swarm(|_| raw_request_response("/bench/raw/1"))
}

/// A behaviour that carries the raw `request_response` the bench measures.
pub(crate) trait Echoes: NetworkBehaviour {
    fn messaging(&mut self) -> &mut RawBehaviour;
    /// The measured `request_response`'s event, if `event` is one.
    fn message(event: Self::ToSwarm) -> Option<RawEvent>;
}

impl Echoes for RawBehaviour {
    fn messaging(&mut self) -> &mut RawBehaviour {
        self
    }

    fn message(event: RawEvent) -> Option<RawEvent> {
        Some(event)
    }
}

/// One round: a fresh pair from `swarm`, the server echoing every request.
pub(crate) async fn round<B>(s: &Settings, swarm: fn() -> Swarm<B>) -> Figures
where
    B: Echoes + Send + 'static,
    B::ToSwarm: Send,
{
    let mut server = swarm();
    server
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("an address"))
        .expect("listen");
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            break address;
        }
    };
    let server_id = *server.local_peer_id();
    let serving = tokio::spawn(async move {
        loop {
            let SwarmEvent::Behaviour(event) = server.select_next_some().await else {
                continue;
            };
            if let Some(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) = B::message(event)
            {
                // Echo; fails only if the connection closed meanwhile.
                let _ = server
                    .behaviour_mut()
                    .messaging()
                    .send_response(channel, request);
            }
        }
    });
    let mut client = swarm();
    client.dial(addr).expect("dial");
    loop {
        match client.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == server_id => break,
            SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial failed: {error}"),
            _ => {}
        }
    }
    run(&mut client, server_id, s.warmup, IN_FLIGHT).await;
    let sequential = run(&mut client, server_id, s.sequential, 1).await;
    let pipelined = run(&mut client, server_id, s.pipelined, IN_FLIGHT).await;
    drop(client);
    serving.abort();
    Figures::new(sequential, pipelined)
}

/// Sends `n` requests, keeping `in_flight` outstanding, driving the swarm itself.
async fn run<B: Echoes>(swarm: &mut Swarm<B>, peer: PeerId, n: usize, in_flight: usize) -> Run {
    let send = |swarm: &mut Swarm<B>, i: usize| {
        let bytes = serde_json::to_vec(&payload(i)).expect("json");
        (
            swarm.behaviour_mut().messaging().send_request(&peer, bytes),
            Instant::now(),
        )
    };
    let start = Instant::now();
    let mut started = HashMap::with_capacity(in_flight);
    let mut latencies = Vec::with_capacity(n);
    let mut sent = 0;
    while sent < n.min(in_flight) {
        let (id, at) = send(swarm, sent);
        started.insert(id, at);
        sent += 1;
    }
    while latencies.len() < n {
        let SwarmEvent::Behaviour(event) = swarm.select_next_some().await else {
            continue;
        };
        match B::message(event) {
            Some(RawEvent::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            }) => {
                let at = started.remove(&request_id).expect("a request we sent");
                latencies.push(at.elapsed());
                assert!(response.len() > 50, "the echo of the request");
                if sent < n {
                    let (id, at) = send(swarm, sent);
                    started.insert(id, at);
                    sent += 1;
                }
            }
            Some(RawEvent::OutboundFailure { error, .. }) => {
                panic!("baseline request failed: {error}")
            }
            _ => {}
        }
    }
    Run {
        latencies,
        elapsed: start.elapsed(),
    }
}
