//! Properties of what crosses the wire, over generated messages and bytes:
//! every request, reply, stream frame and announcement a node writes reads
//! back as itself through the same code that reads a peer's; no bytes a
//! peer sends make those readers panic, and whatever they accept reads back
//! the same once written again; a decoded message's memory bound is exact;
//! and a signed announcement changed in any one byte is refused or reads as
//! the original.

use futures::executor::block_on;
use futures::io::Cursor;
use libp2p::StreamProtocol;
use libp2p::request_response::Codec as _;
use proptest::prelude::*;
use serde_bytes::ByteBuf;
use serde_json::{Map, Value};

use super::codec::{Codec, Inbound};
use super::messaging::{Answer, RemoteError, RemoteErrorKind, Reply, Request};
use super::streaming::Frame;
use crate::Identity;
use crate::bounded::{self, DecodeError};
use crate::discovery::{Announcement, SignedAnnouncement, limits};
use crate::negotiation::Step;
use ecco_core::decoded::Cost;
use ecco_core::{Capability, CapabilityDocument, CapabilityType};

/// Any JSON value, a few levels deep: every kind of number (negative,
/// beyond `i64`, fractional), `null` anywhere (it once crossed as `[]`).
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("JSON has no NaN nor infinity", |f| {
                serde_json::Number::from_f64(f)
            })
            .prop_map(Value::Number),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((".{0,6}", inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn attachments() -> impl Strategy<Value = Vec<ByteBuf>> {
    prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..24).prop_map(ByteBuf::from),
        0..3,
    )
}

fn request() -> impl Strategy<Value = Request> {
    (
        "[a-z]{1,8}(/[a-z0-9-]{1,8}){0,2}",
        json(),
        attachments(),
        any::<bool>(),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
    )
        .prop_filter_map(
            "a valid capability type",
            |(kind, payload, attachments, negotiating, timeout_ms, id)| {
                let mut request = Request::new(CapabilityType::new(&kind).ok()?, payload);
                request.attachments = attachments;
                request.negotiation = negotiating.then_some(Step::Ask);
                request.timeout_ms = timeout_ms;
                request.id = id;
                Some(request)
            },
        )
}

fn answer() -> impl Strategy<Value = Answer> {
    (json(), attachments()).prop_map(|(result, attachments)| {
        let mut answer = Answer::new(result);
        answer.attachments = attachments;
        answer
    })
}

fn remote_error() -> impl Strategy<Value = RemoteError> {
    (
        prop_oneof![
            Just(RemoteErrorKind::NoHandler),
            Just(RemoteErrorKind::HandlerFailed),
            Just(RemoteErrorKind::Refused),
            Just(RemoteErrorKind::TooLarge),
        ],
        ".{0,40}",
    )
        .prop_map(|(kind, message)| RemoteError { kind, message })
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        answer().prop_map(Reply::Answer),
        remote_error().prop_map(Reply::Error)
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        answer().prop_map(Frame::Chunk),
        Just(Frame::End),
        remote_error().prop_map(Frame::Error),
    ]
}

/// A codec whose limits nothing generated here reaches.
fn codec() -> Codec {
    Codec {
        max_request: 1 << 20,
        max_response: 1 << 20,
        max_request_memory: 1 << 30,
        max_response_memory: 1 << 30,
    }
}

fn protocol() -> StreamProtocol {
    StreamProtocol::new("/ecco/test/request/1")
}

fn write_request(request: Request) -> Vec<u8> {
    let mut wire = Cursor::new(Vec::new());
    block_on(codec().write_request(&protocol(), &mut wire, Inbound::Request(request)))
        .expect("a request within the limits is written");
    wire.into_inner()
}

fn read_request(bytes: Vec<u8>) -> Inbound {
    block_on(codec().read_request(&protocol(), &mut Cursor::new(bytes)))
        .expect("reading from memory does not fail")
}

fn write_reply(reply: Reply) -> Vec<u8> {
    let mut wire = Cursor::new(Vec::new());
    block_on(codec().write_response(&protocol(), &mut wire, reply))
        .expect("a reply within the limits is written");
    wire.into_inner()
}

fn read_reply(bytes: Vec<u8>) -> std::io::Result<Reply> {
    block_on(codec().read_response(&protocol(), &mut Cursor::new(bytes)))
}

/// `bytes` with the byte at `at` (modulo the length) replaced by `by`, or,
/// when `by` is `None`, cut short there.
fn mutate(mut bytes: Vec<u8>, at: usize, by: Option<u8>) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    let at = at % bytes.len();
    match by {
        Some(by) => bytes[at] = by,
        None => bytes.truncate(at),
    }
    bytes
}

/// Whatever a reader accepted, written again, reads as itself.
fn request_is_stable(inbound: Inbound) -> Result<(), TestCaseError> {
    if let Inbound::Request(request) = inbound {
        match read_request(write_request(request.clone())) {
            Inbound::Request(again) => prop_assert_eq!(again, request),
            other => prop_assert!(false, "{:?} read back as {:?}", request, other),
        }
    }
    Ok(())
}

fn reply_is_stable(read: std::io::Result<Reply>) -> Result<(), TestCaseError> {
    if let Ok(reply) = read {
        prop_assert_eq!(read_reply(write_reply(reply.clone())).ok(), Some(reply));
    }
    Ok(())
}

fn frame_is_stable(read: Result<Frame, DecodeError>) -> Result<(), TestCaseError> {
    if let Ok(frame) = read {
        let bytes = crate::cbor::to_vec(&frame).expect("a frame encodes");
        prop_assert_eq!(bounded::decode::<Frame>(&bytes, u64::MAX).ok(), Some(frame));
    }
    Ok(())
}

const NOW_MS: u64 = 1_800_000_000_000;
const MESH: &str = "ecco";

fn announcement() -> impl Strategy<Value = Announcement> {
    (
        any::<u64>(),
        0..NOW_MS,
        limits::MIN_TTL_SECS..=limits::MAX_TTL_SECS,
        prop::collection::vec((any::<[u8; 4]>(), any::<u16>()), 0..4),
        prop::collection::vec(("[a-z]{1,6}", json()), 0..4)
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
    )
        .prop_map(|(seq, age_ms, ttl_secs, addrs, metadata)| {
            let capability = || {
                Capability::builder("llm/chat", "a", "1.0.0")
                    .feature("summarize")
                    .constraint("price", 0.002)
            };
            // Metadata the capability's own checks refuse is left out.
            let capability = capability()
                .metadata(metadata)
                .and_then(|b| b.build())
                .or_else(|_| capability().build())
                .expect("a valid capability");
            Announcement {
                peer: libp2p::PeerId::random(),
                mesh: MESH.into(),
                seq,
                // Issued within the TTL, so that it has not expired.
                issued_at_ms: NOW_MS - age_ms % (u64::from(ttl_secs) * 1000),
                ttl_secs,
                addrs: addrs
                    .into_iter()
                    .map(|(ip, port)| {
                        format!("/ip4/{}/tcp/{port}", std::net::Ipv4Addr::from(ip))
                            .parse()
                            .expect("a valid address")
                    })
                    .collect(),
                document: CapabilityDocument::new(vec![capability])
                    .expect("a document of one capability"),
            }
        })
}

// 256 cases each by default; PROPTEST_CASES=20000 for a longer search.
proptest! {
    #[test]
    fn requests_read_back_as_themselves(request in request()) {
        match read_request(write_request(request.clone())) {
            Inbound::Request(read) => prop_assert_eq!(read, request),
            other => prop_assert!(false, "read as {:?}", other),
        }
    }

    #[test]
    fn replies_and_frames_read_back_as_themselves(reply in reply(), frame in frame()) {
        prop_assert_eq!(read_reply(write_reply(reply.clone())).ok(), Some(reply));
        let bytes = crate::cbor::to_vec(&frame).expect("a frame encodes");
        prop_assert_eq!(bounded::decode::<Frame>(&bytes, u64::MAX).ok(), Some(frame));
    }

    /// What the memory bound compares is exact: a message whose estimate
    /// is the limit decodes, one byte less refuses it before decoding.
    #[test]
    fn the_memory_bound_is_exact(request in request()) {
        let bytes = crate::cbor::to_vec(&request).expect("a request encodes");
        let cost: Cost = cbor4ii::serde::from_slice(&bytes).expect("its estimate reads");
        prop_assert_eq!(bounded::decode::<Request>(&bytes, cost.bytes()).ok(), Some(request));
        let refused = matches!(
            bounded::decode::<Request>(&bytes, cost.bytes() - 1),
            Err(DecodeError::TooLarge { .. })
        );
        prop_assert!(refused);
    }

    /// Random bytes: nothing panics, and what is accepted is stable.
    #[test]
    fn random_bytes_do_not_break_the_readers(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        request_is_stable(read_request(bytes.clone()))?;
        reply_is_stable(read_reply(bytes.clone()))?;
        frame_is_stable(bounded::decode::<Frame>(&bytes, 1 << 20))?;
        prop_assert!(SignedAnnouncement::verify(&bytes, MESH, NOW_MS).is_err());
    }

    /// Real messages changed in one byte or cut short: the bytes a
    /// confused or hostile peer is likelier to send than random ones.
    #[test]
    fn changed_messages_do_not_break_the_readers(
        request in request(),
        reply in reply(),
        frame in frame(),
        at in any::<usize>(),
        by in any::<Option<u8>>(),
    ) {
        request_is_stable(read_request(mutate(write_request(request), at, by)))?;
        reply_is_stable(read_reply(mutate(write_reply(reply), at, by)))?;
        let bytes = crate::cbor::to_vec(&frame).expect("a frame encodes");
        frame_is_stable(bounded::decode::<Frame>(&mutate(bytes, at, by), 1 << 20))?;
    }

    /// A signed announcement reads as itself, and changed in any one byte
    /// it is refused or (a change outside the signed body that CBOR reads
    /// the same) still reads as the original: never as anything else.
    #[test]
    fn announcements_are_authentic(
        unsigned in announcement(),
        at in any::<usize>(),
        by in any::<Option<u8>>(),
    ) {
        let identity = Identity::generate();
        let announcement = Announcement { peer: identity.peer_id(), ..unsigned };
        let bytes = announcement.sign(&identity).to_bytes();
        let read = SignedAnnouncement::verify(&bytes, MESH, NOW_MS).ok();
        prop_assert_eq!(read, Some(announcement.clone()));
        let changed = mutate(bytes, at, by);
        if let Ok(read) = SignedAnnouncement::verify(&changed, MESH, NOW_MS) {
            prop_assert_eq!(read, announcement);
        }
    }
}
