//! CBOR framing for requests and replies, with size limits that give clear errors.
//!
//! Each stream carries one CBOR value in each direction, ended by closing the
//! write side (as in libp2p's CBOR codec). Unlike that codec, an oversized
//! message is reported as such: the sender refuses to write a request over
//! the limit; the receiver of an oversized request drains it (up to a hard
//! cap) and replies with a typed `too_large` error; an answer over the limit is
//! replaced by that error before it is written.

use std::io;

use futures::prelude::*;
use libp2p::StreamProtocol;
use serde::Serialize;

use super::messaging::{RemoteError, RemoteErrorKind, Reply, Request};
use crate::bounded::{self, DecodeError};

/// What a node reads from an inbound stream.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A request within the limit.
    Request(Request),
    /// A request larger than the limit on the wire (its bytes were
    /// discarded) or in memory once decoded (it was not decoded): why.
    TooLarge(String),
    /// A request within the limit that does not decode (broken CBOR, a
    /// missing or unknown field): why, so that the sender is told instead
    /// of seeing its stream fail.
    Malformed(String),
    /// The requester no longer waits for its request of this number
    /// ([`Request`]'s `id`): its handler may stop.
    Cancel(u64),
}

/// A cancel on the wire: `{ "cancel": id }`.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Cancel {
    cancel: u64,
}

/// The request-response codec; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Codec {
    pub(crate) max_request: u64,
    pub(crate) max_response: u64,
    /// Most memory a decoded request may take (`Limits::max_request_memory`).
    pub(crate) max_request_memory: u64,
    /// Most memory a decoded answer may take (`Limits::max_response_memory`).
    pub(crate) max_response_memory: u64,
}

/// Oversized requests are drained up to this multiple of the limit so that the
/// sender can read our `too_large` reply; beyond it the stream is dropped.
const DRAIN_FACTOR: u64 = 4;

/// The message an `io::Error` carries when a request exceeds the local limit,
/// so that the node can tell this failure from others.
pub(crate) const TOO_LARGE: &str = "exceeds the size limit";

async fn read_limited<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: u64,
) -> io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::new();
    io.take(max + 1).read_to_end(&mut buf).await?;
    let over = buf.len() as u64 > max;
    Ok((buf, over))
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    crate::cbor::to_vec(value)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Inbound;
    type Response = Reply;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Inbound>
    where
        T: AsyncRead + Unpin + Send,
    {
        let (buf, over) = read_limited(io, self.max_request).await?;
        if !over {
            return Ok(match bounded::decode(&buf, self.max_request_memory) {
                Ok(request) => Inbound::Request(request),
                // Tried second, so that requests cost no more to read; a
                // message that is neither is reported as a request.
                // A cancel holds one integer: nothing to unfold in memory.
                Err(DecodeError::Malformed(why)) => match cbor4ii::serde::from_slice(&buf) {
                    Ok(Cancel { cancel }) => Inbound::Cancel(cancel),
                    Err(_) => Inbound::Malformed(why),
                },
                Err(e @ DecodeError::TooLarge { .. }) => Inbound::TooLarge(format!(
                    "the request of {} bytes {TOO_LARGE}: {e}",
                    buf.len()
                )),
            });
        }
        // Drain what remains so the sender can finish writing and read our reply.
        let drained = futures::io::copy(
            io.take(self.max_request * DRAIN_FACTOR),
            &mut futures::io::sink(),
        )
        .await?;
        Ok(Inbound::TooLarge(format!(
            "the request of at least {} bytes {TOO_LARGE} of {} bytes",
            buf.len() as u64 + drained,
            self.max_request
        )))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Reply>
    where
        T: AsyncRead + Unpin + Send,
    {
        let (buf, over) = read_limited(io, self.max_response).await?;
        // Every reply encodes to at least one byte: nothing at all means the
        // peer closed or reset the stream instead of answering.
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream ended without an answer",
            ));
        }
        if over {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the answer {TOO_LARGE} of {} bytes", self.max_response),
            ));
        }
        bounded::decode(&buf, self.max_response_memory).map_err(|e| match e {
            DecodeError::Malformed(why) => io::Error::new(io::ErrorKind::InvalidData, why),
            e @ DecodeError::TooLarge { .. } => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the answer of {} bytes {TOO_LARGE}: {e}", buf.len()),
            ),
        })
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Inbound,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = match request {
            Inbound::Request(request) => encode(&request)?,
            Inbound::Cancel(cancel) => encode(&Cancel { cancel })?,
            Inbound::TooLarge(_) | Inbound::Malformed(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "only a request or a cancel is sent, never a marker",
                ));
            }
        };
        if bytes.len() as u64 > self.max_request {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the request of {} bytes {TOO_LARGE} of {} bytes",
                    bytes.len(),
                    self.max_request
                ),
            ));
        }
        io.write_all(&bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        reply: Reply,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let mut bytes = encode(&reply)?;
        if bytes.len() as u64 > self.max_response {
            bytes = encode(&Reply::Error(RemoteError {
                kind: RemoteErrorKind::TooLarge,
                message: format!(
                    "the answer of {} bytes {TOO_LARGE} of {} bytes",
                    bytes.len(),
                    self.max_response
                ),
            }))?;
        }
        io.write_all(&bytes).await
    }
}

#[cfg(test)]
mod tests {
    use ecco_core::CapabilityType;
    use futures::io::Cursor;
    use libp2p::request_response::Codec as _;
    use serde_json::json;

    use super::*;
    use crate::node::messaging::Answer;

    /// Wire limits as given; memory limits that nothing here reaches.
    fn codec(max_request: u64, max_response: u64) -> Codec {
        Codec {
            max_request,
            max_response,
            max_request_memory: 1 << 30,
            max_response_memory: 1 << 30,
        }
    }

    fn protocol() -> StreamProtocol {
        StreamProtocol::new("/test")
    }

    fn request(len: usize) -> Request {
        Request::new(CapabilityType::new("x").unwrap(), json!("hello")).attach(vec![7; len])
    }

    #[tokio::test]
    async fn round_trips_within_limits() {
        let mut codec = codec(1024, 1024);
        let mut wire = Cursor::new(Vec::new());
        codec
            .write_request(&protocol(), &mut wire, Inbound::Request(request(10)))
            .await
            .unwrap();
        let mut read = Cursor::new(wire.into_inner());
        match codec.read_request(&protocol(), &mut read).await.unwrap() {
            Inbound::Request(r) => assert_eq!(r, request(10)),
            other => panic!("{other:?}"),
        }
    }

    /// The requester's timeout travels as an optional `timeout_ms`: absent
    /// when not set (older requesters), kept when set.
    #[tokio::test]
    async fn a_request_s_timeout_travels_and_may_be_absent() {
        let mut codec = codec(1024, 1024);
        for timeout_ms in [None, Some(1500)] {
            let mut sent = request(1);
            sent.timeout_ms = timeout_ms;
            let mut wire = Cursor::new(Vec::new());
            codec
                .write_request(&protocol(), &mut wire, Inbound::Request(sent.clone()))
                .await
                .unwrap();
            let bytes = wire.into_inner();
            let named = bytes.windows(10).any(|w| w == b"timeout_ms");
            assert_eq!(named, timeout_ms.is_some(), "the field only when set");
            match codec
                .read_request(&protocol(), &mut Cursor::new(bytes))
                .await
                .unwrap()
            {
                Inbound::Request(r) => {
                    assert_eq!(
                        r.timeout(),
                        timeout_ms.map(std::time::Duration::from_millis)
                    );
                    assert_eq!(r, sent);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    async fn through_the_wire(bytes: Vec<u8>) -> Inbound {
        codec(1024, 1024)
            .read_request(&protocol(), &mut Cursor::new(bytes))
            .await
            .unwrap()
    }

    /// A request's `id` travels when set; a cancel names one and is told
    /// from a request. A message that is neither is a malformed request.
    #[tokio::test]
    async fn ids_and_cancels_travel_and_anything_else_is_a_malformed_request() {
        let mut sent = request(1);
        sent.id = Some(41);
        let mut wire = Cursor::new(Vec::new());
        codec(1024, 1024)
            .write_request(&protocol(), &mut wire, Inbound::Request(sent.clone()))
            .await
            .unwrap();
        match through_the_wire(wire.into_inner()).await {
            Inbound::Request(r) => assert_eq!((r.id, r), (Some(41), sent)),
            other => panic!("{other:?}"),
        }
        let mut wire = Cursor::new(Vec::new());
        codec(1024, 1024)
            .write_request(&protocol(), &mut wire, Inbound::Cancel(41))
            .await
            .unwrap();
        let bytes = wire.into_inner();
        let on_the_wire: serde_json::Value = cbor4ii::serde::from_slice(&bytes).unwrap();
        assert_eq!(on_the_wire, json!({"cancel": 41}));
        assert!(matches!(through_the_wire(bytes).await, Inbound::Cancel(41)));
        for neither in [
            json!({"cancel": "41"}),
            json!({"cancel": 41, "capability": "x"}),
            json!({"cancel": -1}),
            json!({"payload": 1}),
        ] {
            let bytes = cbor4ii::serde::to_vec(Vec::new(), &neither).unwrap();
            match through_the_wire(bytes).await {
                Inbound::Malformed(why) => assert!(!why.is_empty()),
                other => panic!("{neither}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn the_sender_refuses_an_oversized_request() {
        let mut codec = codec(100, 100);
        let mut wire = Cursor::new(Vec::new());
        let e = codec
            .write_request(&protocol(), &mut wire, Inbound::Request(request(200)))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains(TOO_LARGE), "{e}");
        assert!(wire.into_inner().is_empty(), "nothing was written");
    }

    #[tokio::test]
    async fn the_receiver_marks_an_oversized_request() {
        let big = codec(10_000, 100);
        let small = codec(100, 100);
        let mut wire = Cursor::new(Vec::new());
        { big }
            .write_request(&protocol(), &mut wire, Inbound::Request(request(300)))
            .await
            .unwrap();
        let mut read = Cursor::new(wire.into_inner());
        match { small }
            .read_request(&protocol(), &mut read)
            .await
            .unwrap()
        {
            Inbound::TooLarge(why) => {
                assert!(why.contains(TOO_LARGE), "{why}");
                assert!(why.contains("of 100 bytes"), "names the limit: {why}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// Messages are strict, as the JSON ones are: a field this version does
    /// not know (or broken CBOR) is a malformed request, answered with a
    /// refusal that says why, not a failed stream.
    #[tokio::test]
    async fn a_request_with_an_unknown_field_is_malformed() {
        #[derive(Serialize)]
        struct Newer {
            capability: &'static str,
            payload: serde_json::Value,
            priority: u8,
        }
        let mut codec = codec(1024, 1024);
        let mut garbage = Cursor::new(vec![0xff, 0x00, 0x13]);
        match codec.read_request(&protocol(), &mut garbage).await.unwrap() {
            Inbound::Malformed(why) => assert!(!why.is_empty()),
            other => panic!("{other:?}"),
        }
        let unknown = encode(&Newer {
            capability: "x",
            payload: json!(1),
            priority: 1,
        })
        .unwrap();
        let Inbound::Malformed(why) = codec
            .read_request(&protocol(), &mut Cursor::new(unknown))
            .await
            .unwrap()
        else {
            panic!("malformed");
        };
        assert!(why.contains("priority"), "names the field: {why}");
    }

    #[tokio::test]
    async fn an_oversized_answer_becomes_a_typed_error() {
        let mut codec = codec(100, 100);
        let mut wire = Cursor::new(Vec::new());
        let huge = Reply::Answer(Answer::new(json!("x".repeat(500))));
        codec
            .write_response(&protocol(), &mut wire, huge)
            .await
            .unwrap();
        let mut read = Cursor::new(wire.into_inner());
        match codec.read_response(&protocol(), &mut read).await.unwrap() {
            Reply::Error(e) => assert_eq!(e.kind, RemoteErrorKind::TooLarge),
            other => panic!("{other:?}"),
        }
    }

    /// 4,000 empty JSON objects: 4 kB on the wire, 128 kB once decoded.
    fn unfolding() -> serde_json::Value {
        json!(vec![json!({}); 4_000])
    }

    #[tokio::test]
    async fn a_request_that_would_unfold_past_the_memory_limit_is_refused_undecoded() {
        let request = Request::new(CapabilityType::new("x").unwrap(), unfolding());
        let mut wire = Cursor::new(Vec::new());
        codec(10_000, 100)
            .write_request(&protocol(), &mut wire, Inbound::Request(request.clone()))
            .await
            .unwrap();
        let bytes = wire.into_inner();
        assert!(bytes.len() < 5_000);
        let mut tight = codec(10_000, 100);
        tight.max_request_memory = 100_000;
        match tight
            .read_request(&protocol(), &mut Cursor::new(bytes.clone()))
            .await
            .unwrap()
        {
            Inbound::TooLarge(why) => {
                assert!(why.contains("memory"), "{why}");
                assert!(why.contains("100000"), "names the limit: {why}");
            }
            other => panic!("{other:?}"),
        }
        // Within a limit that allows for it, the same request is decoded.
        tight.max_request_memory = 200_000;
        match tight
            .read_request(&protocol(), &mut Cursor::new(bytes))
            .await
            .unwrap()
        {
            Inbound::Request(r) => assert_eq!(r, request),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_answer_that_would_unfold_past_the_memory_limit_fails_the_call_as_too_large() {
        let mut wire = Cursor::new(Vec::new());
        codec(100, 10_000)
            .write_response(
                &protocol(),
                &mut wire,
                Reply::Answer(Answer::new(unfolding())),
            )
            .await
            .unwrap();
        let mut tight = codec(100, 10_000);
        tight.max_response_memory = 100_000;
        let e = tight
            .read_response(&protocol(), &mut Cursor::new(wire.into_inner()))
            .await
            .unwrap_err();
        // The node reports this as `RequestError::TooLarge`.
        assert!(e.to_string().contains(TOO_LARGE), "{e}");
        assert!(e.to_string().contains("memory"), "{e}");
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let mut codec = codec(100, 100);
        // A garbage request is answered (`Inbound::Malformed`, above); a
        // garbage answer fails the call.
        let mut read = Cursor::new(vec![0xff, 0x00, 0x13]);
        assert!(codec.read_response(&protocol(), &mut read).await.is_err());
    }

    #[tokio::test]
    async fn no_answer_at_all_is_an_unexpected_end_not_a_malformed_one() {
        let mut codec = codec(100, 100);
        // What a peer that closes or resets the stream without answering
        // leaves: the node tells it from a garbled answer by its kind.
        let mut read = Cursor::new(Vec::new());
        let e = codec
            .read_response(&protocol(), &mut read)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let mut read = Cursor::new(vec![0xff]);
        let e = codec
            .read_response(&protocol(), &mut read)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
