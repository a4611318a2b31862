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
use serde::de::DeserializeOwned;

use super::messaging::{RemoteError, RemoteErrorKind, Reply, Request};

/// What a node reads from an inbound stream.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A request within the limit.
    Request(Request),
    /// A request larger than the limit; its bytes were discarded.
    Oversized {
        /// Bytes read before giving up (more than the limit).
        at_least: u64,
    },
    /// A request within the limit that does not decode (broken CBOR, a
    /// missing or unknown field): why, so that the sender is told instead
    /// of seeing its stream fail.
    Malformed(String),
}

/// The request-response codec; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Codec {
    pub(crate) max_request: u64,
    pub(crate) max_response: u64,
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

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    cbor4ii::serde::from_slice(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    cbor4ii::serde::to_vec(Vec::new(), value)
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
            return Ok(match decode(&buf) {
                Ok(request) => Inbound::Request(request),
                Err(e) => Inbound::Malformed(e.to_string()),
            });
        }
        // Drain what remains so the sender can finish writing and read our reply.
        let drained = futures::io::copy(
            io.take(self.max_request * DRAIN_FACTOR),
            &mut futures::io::sink(),
        )
        .await?;
        Ok(Inbound::Oversized {
            at_least: buf.len() as u64 + drained,
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Reply>
    where
        T: AsyncRead + Unpin + Send,
    {
        let (buf, over) = read_limited(io, self.max_response).await?;
        if over {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the answer {TOO_LARGE} of {} bytes", self.max_response),
            ));
        }
        decode(&buf)
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
        let Inbound::Request(request) = request else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "only a decoded request is sent, never a marker",
            ));
        };
        let bytes = encode(&request)?;
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

    fn protocol() -> StreamProtocol {
        StreamProtocol::new("/test")
    }

    fn request(len: usize) -> Request {
        Request::new(CapabilityType::new("x").unwrap(), json!("hello")).attach(vec![7; len])
    }

    #[tokio::test]
    async fn round_trips_within_limits() {
        let mut codec = Codec {
            max_request: 1024,
            max_response: 1024,
        };
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

    #[tokio::test]
    async fn the_sender_refuses_an_oversized_request() {
        let mut codec = Codec {
            max_request: 100,
            max_response: 100,
        };
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
        let big = Codec {
            max_request: 10_000,
            max_response: 100,
        };
        let small = Codec {
            max_request: 100,
            max_response: 100,
        };
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
            Inbound::Oversized { at_least } => assert!(at_least > 300),
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
        let mut codec = Codec {
            max_request: 1024,
            max_response: 1024,
        };
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
        let mut codec = Codec {
            max_request: 100,
            max_response: 100,
        };
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

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let mut codec = Codec {
            max_request: 100,
            max_response: 100,
        };
        // A garbage request is answered (`Inbound::Malformed`, above); a
        // garbage answer fails the call.
        let mut read = Cursor::new(vec![0xff, 0x00, 0x13]);
        assert!(codec.read_response(&protocol(), &mut read).await.is_err());
    }
}
