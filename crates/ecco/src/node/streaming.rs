//! Streaming replies: one request, then chunks, then an end.
//!
//! A stream of the mesh's `/ecco/<mesh>/stream/1.0.0` protocol carries
//! length-prefixed frames: a 4-byte big-endian length, then that many bytes
//! of CBOR. The requester writes one [`Request`] frame; the provider answers
//! with any number of `chunk` frames and ends with `end` or `error`. Each
//! frame is bounded (the request by `max_request_bytes`, each reply frame by
//! `max_response_bytes`; once decoded, by `max_request_memory` and
//! `max_response_memory`). Reply frames must arrive within `request_timeout`
//! of the previous one, or, when the requester gave the whole reply a time
//! (`timeout_ms`), within that time: a model's first token may take longer
//! than the request timeout, and the caller said how long it waits. Writes
//! are bounded by the request timeout on both sides, so that a peer that
//! stops reading frees what it holds.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::prelude::*;
use futures::stream::BoxStream;
use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use super::config::{Limits, OVERTIME};
use super::handle::{InboundRequest, Responder};
use super::messaging::{Answer, RemoteError, RemoteErrorKind, Reply, Request, RequestError};
use super::stream_slots::Slots;
use crate::bounded::{self, DecodeError};

/// One frame of a streaming reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Frame {
    /// A piece of the output.
    Chunk(Answer),
    /// The output is complete.
    End,
    /// The provider failed or declined; nothing follows.
    Error(RemoteError),
}

/// Most chunks collected for a requester that asked for one answer.
const MAX_COLLECTED_CHUNKS: usize = 65_536;

#[derive(Debug)]
enum ReadError {
    TooLarge(u64),
    Io(io::Error),
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(bytes).await?;
    w.flush().await
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: u64) -> Result<Vec<u8>, ReadError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.map_err(ReadError::Io)?;
    let len = u64::from(u32::from_be_bytes(len));
    if len > max {
        return Err(ReadError::TooLarge(len));
    }
    // `len` is at most `max`, itself a usize-sized limit.
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    r.read_exact(&mut buf).await.map_err(ReadError::Io)?;
    Ok(buf)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain data types into a Vec cannot fail.
    crate::cbor::to_vec(value).unwrap_or_default()
}

/// What the client side needs to know.
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) control: libp2p_stream::Control,
    pub(crate) protocol: StreamProtocol,
    pub(crate) timeout: Duration,
    pub(crate) max_request: u64,
    pub(crate) max_response: u64,
    pub(crate) max_response_memory: u64,
    /// At most `Limits::max_streaming_requests` open to one peer at once.
    pub(crate) slots: Slots,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// The chunks of a streaming reply, in order. Ends after the provider's
/// `end`; a failure is the last item. Dropping it cancels the request.
pub struct ReplyStream {
    inner: BoxStream<'static, Result<Answer, RequestError>>,
}

impl std::fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyStream").finish_non_exhaustive()
    }
}

impl Stream for ReplyStream {
    type Item = Result<Answer, RequestError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// How long the next step of a streaming request may take: until the whole
/// reply's deadline if the caller gave one, else the per-frame timeout, with
/// the error that says which ran out.
#[derive(Debug, Clone, Copy)]
struct Patience {
    per_frame: Duration,
    /// The deadline of every step left, and the timeout it came from; each
    /// step gets `per_frame` without one.
    until: Option<(Instant, Duration)>,
}

impl Patience {
    fn next(&self) -> (Duration, RequestError) {
        match self.until {
            Some((deadline, within)) => (
                deadline.saturating_duration_since(Instant::now()),
                RequestError::Timeout(within),
            ),
            None => (self.per_frame, RequestError::Timeout(self.per_frame)),
        }
    }

    /// Runs `step` within the next wait, or fails with the timeout that ran out.
    async fn run<T>(&self, step: impl Future<Output = T>) -> Result<T, RequestError> {
        let (wait, late) = self.next();
        // `timeout` polls the step before its clock: a provider that always
        // has a chunk ready would never run out of time.
        if wait.is_zero() {
            return Err(late);
        }
        tokio::time::timeout(wait, step).await.map_err(|_| late)
    }
}

impl Client {
    /// Sends `request` and returns its reply's frames; with `within`, the
    /// whole reply must arrive within that time (told to the provider as
    /// `timeout_ms`), else the stream ends with `Timeout`.
    pub(crate) async fn request(
        mut self,
        peer: PeerId,
        mut request: Request,
        within: Option<Duration>,
    ) -> Result<ReplyStream, RequestError> {
        let per_frame = self.timeout;
        let start = Instant::now();
        let whole = within.and_then(|within| Some((start.checked_add(within)?, within)));
        // Then each frame within `per_frame` of the last, unless the whole
        // reply has a time.
        let patience = Patience {
            per_frame,
            until: whole,
        };
        // Until the first frame, a free slot, opening the stream and writing
        // the request count against one time: the whole reply's, or the
        // first frame's, so that a request waiting for a slot does not get
        // `per_frame` anew at each step.
        let first = Patience {
            per_frame,
            until: whole.or_else(|| Some((start.checked_add(per_frame)?, per_frame))),
        };
        request.timeout_ms = None;
        if let Some(within) = within {
            request.set_timeout(within);
        }
        // Streams are cancelled by closing them, not by number.
        request.id = None;
        let mut bytes = encode(&request);
        if bytes.len() as u64 > self.max_request {
            return Err(RequestError::TooLarge(format!(
                "the request of {} bytes exceeds the size limit of {} bytes",
                bytes.len(),
                self.max_request
            )));
        }
        let slot = first.run(self.slots.take(peer)).await??;
        let open = first.run(self.control.open_stream(peer, self.protocol));
        let mut stream = match open.await {
            Err(late) => return Err(late),
            Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => {
                return Err(RequestError::Refused(format!(
                    "{peer} does not serve streaming requests in this mesh"
                )));
            }
            Ok(Err(e)) => return Err(RequestError::Unreachable(format!("{peer}: {e}"))),
            Ok(Ok(stream)) => stream,
        };
        // Less what opening the stream took.
        if let Some((deadline, _)) = whole {
            request.set_timeout(deadline.saturating_duration_since(Instant::now()));
            bytes = encode(&request);
        }
        let max = self.max_response;
        let max_memory = self.max_response_memory;
        // Bounded: a provider that never reads would otherwise hold the
        // request here once the stream's window is full.
        match first.run(write_frame(&mut stream, &bytes)).await {
            Err(late) => return Err(late),
            Ok(Err(e)) => {
                return Err(early_refusal(&mut stream, (max, max_memory), peer, &e).await);
            }
            Ok(Ok(())) => {}
        }
        // The slot is freed with the stream: at its end, its failure, or
        // when the caller drops it.
        let frames = stream::unfold(Some((stream, slot, first)), move |state| async move {
            let (mut stream, slot, wait) = state?;
            let item = match wait.run(read_frame(&mut stream, max)).await {
                Err(late) => Err(late),
                Ok(Err(ReadError::TooLarge(len))) => Err(RequestError::TooLarge(format!(
                    "a reply chunk of {len} bytes exceeds the size limit of {max} bytes"
                ))),
                Ok(Err(ReadError::Io(e))) => Err(RequestError::Unreachable(format!(
                    "the stream from {peer} ended before its end: {e}"
                ))),
                Ok(Ok(bytes)) => match bounded::decode::<Frame>(&bytes, max_memory) {
                    Ok(Frame::Chunk(answer)) => {
                        return Some((Ok(answer), Some((stream, slot, patience))));
                    }
                    Ok(Frame::End) => return None,
                    Ok(Frame::Error(e)) => Err(e.into()),
                    Err(DecodeError::Malformed(e)) => Err(RequestError::Refused(format!(
                        "{peer} sent a malformed frame: {e}"
                    ))),
                    Err(e @ DecodeError::TooLarge { .. }) => Err(RequestError::TooLarge(format!(
                        "a reply chunk of {} bytes exceeds the size limit: {e}",
                        bytes.len()
                    ))),
                },
            };
            // A failure is the last item.
            Some((item, None))
        });
        Ok(ReplyStream {
            inner: frames.boxed(),
        })
    }
}

/// Why writing the request failed. A provider that refuses at once (busy)
/// writes its reason and closes, and the reset that follows can fail the
/// write: the reason, already received, says more than the failed write.
async fn early_refusal(
    stream: &mut libp2p::Stream,
    (max, max_memory): (u64, u64),
    peer: PeerId,
    error: &io::Error,
) -> RequestError {
    // The reason is already here if there is one; do not wait for more.
    let read = tokio::time::timeout(EARLY_REFUSAL_WAIT, read_frame(stream, max)).await;
    if let Ok(Ok(bytes)) = read
        && let Ok(Frame::Error(e)) = bounded::decode::<Frame>(&bytes, max_memory)
    {
        return e.into();
    }
    RequestError::Unreachable(format!("{peer}: {error}"))
}

/// How long a requester whose request could not be written looks for the
/// provider's reason.
const EARLY_REFUSAL_WAIT: Duration = Duration::from_millis(100);

/// Writes one frame within `timeout`: a requester that stops reading must
/// not hold a provider's slot for ever. `false` when it could not.
async fn send_frame(stream: &mut libp2p::Stream, frame: &[u8], timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, write_frame(stream, frame)).await,
        Ok(Ok(()))
    )
}

/// Sends a last frame, then closes the stream so that it reaches the
/// requester before the stream ends (a dropped stream is reset).
async fn send_last(stream: &mut libp2p::Stream, frame: &Frame, timeout: Duration) {
    if send_frame(stream, &encode(frame), timeout).await {
        let _ = tokio::time::timeout(timeout, stream.close()).await;
    }
}

/// Where a handler writes a reply chunk by chunk. Obtained from
/// [`InboundRequest::stream`]. Dropping it before [`ReplySink::end`] tells
/// the requester that the handler failed.
#[derive(Debug)]
pub struct ReplySink {
    inner: Sink,
}

#[derive(Debug)]
enum Sink {
    /// The requester wants a stream: frames go to the network task.
    Stream(Option<mpsc::Sender<Frame>>),
    /// The requester wants one answer: chunks are collected.
    Collect {
        reply: Option<oneshot::Sender<Reply>>,
        chunks: Vec<Answer>,
    },
}

/// The requester is gone (it cancelled, or its connection closed), or a
/// one-answer reply collected too many chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the reply stream is closed")]
pub struct Closed;

impl ReplySink {
    pub(crate) fn new(responder: Responder) -> Self {
        Self {
            inner: match responder {
                Responder::Stream(tx) => Sink::Stream(Some(tx)),
                Responder::Unary(reply) => Sink::Collect {
                    reply: Some(reply),
                    chunks: Vec::new(),
                },
            },
        }
    }

    /// Sends a chunk. Waits while the network is behind (bounded buffer).
    pub async fn send(&mut self, chunk: Answer) -> Result<(), Closed> {
        match &mut self.inner {
            Sink::Stream(Some(tx)) => tx.send(Frame::Chunk(chunk)).await.map_err(|_| Closed),
            Sink::Stream(None) => Err(Closed),
            Sink::Collect { chunks, .. } => {
                if chunks.len() >= MAX_COLLECTED_CHUNKS {
                    return Err(Closed);
                }
                chunks.push(chunk);
                Ok(())
            }
        }
    }

    /// Ends the reply successfully. A requester that asked for one answer
    /// gets the chunks' results as a JSON array, with their attachments.
    pub async fn end(mut self) {
        match &mut self.inner {
            Sink::Stream(tx) => {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Frame::End).await;
                }
            }
            Sink::Collect { reply, chunks } => {
                let chunks = std::mem::take(chunks);
                let mut answer = Answer::new(serde_json::Value::Array(Vec::new()));
                let mut results = Vec::with_capacity(chunks.len());
                for chunk in chunks {
                    results.push(chunk.result);
                    answer.attachments.extend(chunk.attachments);
                }
                answer.result = serde_json::Value::Array(results);
                if let Some(reply) = reply.take() {
                    let _ = reply.send(Reply::Answer(answer));
                }
            }
        }
    }

    /// Ends the reply with an error for the requester.
    pub async fn fail(mut self, kind: RemoteErrorKind, message: impl Into<String>) {
        let error = RemoteError {
            kind,
            message: message.into(),
        };
        match &mut self.inner {
            Sink::Stream(tx) => {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Frame::Error(error)).await;
                }
            }
            Sink::Collect { reply, .. } => {
                if let Some(reply) = reply.take() {
                    let _ = reply.send(Reply::Error(error));
                }
            }
        }
    }
}

impl Drop for ReplySink {
    fn drop(&mut self) {
        // A stream's network task notices the closed channel by itself.
        if let Sink::Collect { reply, .. } = &mut self.inner
            && let Some(reply) = reply.take()
        {
            let _ = reply.send(Reply::Error(RemoteError {
                kind: RemoteErrorKind::HandlerFailed,
                message: "the handler dropped its reply without ending it".to_owned(),
            }));
        }
    }
}

/// Serves inbound streams until the node stops (`stop` is dropped).
pub(crate) async fn serve(
    mut incoming: libp2p_stream::IncomingStreams,
    inbox: mpsc::Sender<InboundRequest>,
    limits: Limits,
    mut stop: watch::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_streaming_requests));
    loop {
        let (peer, mut stream) = tokio::select! {
            _ = stop.changed() => return,
            next = incoming.next() => match next {
                Some(next) => next,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let timeout = limits.request_timeout;
            tokio::spawn(async move {
                let busy = refusal(
                    RemoteErrorKind::Refused,
                    "busy: too many streams in progress",
                );
                send_last(&mut stream, &busy, timeout).await;
            });
            continue;
        };
        let inbox = inbox.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            serve_one(peer, stream, inbox, &limits).await;
            drop(slot);
        });
    }
}

fn refusal(kind: RemoteErrorKind, message: impl Into<String>) -> Frame {
    Frame::Error(RemoteError {
        kind,
        message: message.into(),
    })
}

async fn serve_one(
    peer: PeerId,
    mut stream: libp2p::Stream,
    inbox: mpsc::Sender<InboundRequest>,
    limits: &Limits,
) {
    let read = read_frame(&mut stream, limits.max_request_bytes);
    let first = match tokio::time::timeout(limits.request_timeout, read).await {
        Ok(Ok(bytes)) => match bounded::decode::<Request>(&bytes, limits.max_request_memory) {
            Ok(request) => Ok(request),
            Err(DecodeError::Malformed(e)) => Err(refusal(
                RemoteErrorKind::Refused,
                format!("malformed request: {e}"),
            )),
            Err(e @ DecodeError::TooLarge { .. }) => Err(refusal(
                RemoteErrorKind::TooLarge,
                format!(
                    "the request of {} bytes exceeds the size limit: {e}",
                    bytes.len()
                ),
            )),
        },
        Ok(Err(ReadError::TooLarge(len))) => Err(refusal(
            RemoteErrorKind::TooLarge,
            format!(
                "the request of {len} bytes exceeds the size limit of {} bytes",
                limits.max_request_bytes
            ),
        )),
        // The requester went away or was too slow: nobody to answer.
        Ok(Err(ReadError::Io(_))) | Err(_) => return,
    };
    let timeout = limits.request_timeout;
    let request = match first {
        Ok(request) => request,
        Err(frame) => return send_last(&mut stream, &frame, timeout).await,
    };
    let (tx, mut rx) = mpsc::channel(limits.stream_buffer.max(2));
    // With a stated time the whole reply is bounded, a second more than the
    // requester waits (so that it times out first); without, each chunk is.
    let time = request
        .timeout()
        .map(|stated| limits.answer_within(Some(stated)));
    let ends = time.and_then(|time| Instant::now().checked_add(time.saturating_add(OVERTIME)));
    let handed = inbox.try_send(InboundRequest::arrived(
        peer,
        request,
        Responder::Stream(tx),
        time,
    ));
    if let Err(e) = handed {
        let frame = match e {
            mpsc::error::TrySendError::Full(_) => {
                refusal(RemoteErrorKind::Refused, "busy: the inbox is full")
            }
            mpsc::error::TrySendError::Closed(_) => {
                refusal(RemoteErrorKind::NoHandler, "this node serves no requests")
            }
        };
        return send_last(&mut stream, &frame, timeout).await;
    }
    loop {
        // The requester gives up then; so does the provider, and dropping
        // `rx` tells the handler.
        let wait = ends.map_or(timeout, |ends| {
            ends.saturating_duration_since(Instant::now())
        });
        // `timeout` polls `recv` before its clock: a handler that always has
        // a chunk ready would never run out of time.
        let next = if wait.is_zero() {
            Err(())
        } else {
            tokio::time::timeout(wait, rx.recv()).await.map_err(drop)
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => refusal(
                RemoteErrorKind::HandlerFailed,
                "the handler dropped the stream without ending it",
            ),
            Err(()) => refusal(
                RemoteErrorKind::HandlerFailed,
                match (ends, time) {
                    (Some(_), Some(time)) => format!("no end within {time:?}"),
                    _ => format!("the handler sent nothing for {timeout:?}"),
                },
            ),
        };
        let last = !matches!(frame, Frame::Chunk(_));
        let mut bytes = encode(&frame);
        let over = bytes.len() as u64 > limits.max_response_bytes;
        if over {
            bytes = encode(&refusal(
                RemoteErrorKind::TooLarge,
                format!(
                    "a reply chunk of {} bytes exceeds the size limit of {} bytes",
                    bytes.len(),
                    limits.max_response_bytes
                ),
            ));
        }
        if !send_frame(&mut stream, &bytes, timeout).await {
            // The requester is gone or stopped reading; dropping `rx`
            // tells the handler.
            return;
        }
        if last || over {
            let _ = tokio::time::timeout(timeout, stream.close()).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;

    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_are_bounded() {
        let mut wire = Cursor::new(Vec::new());
        let frame = Frame::Chunk(Answer::new(serde_json::json!("tok")));
        write_frame(&mut wire, &encode(&frame)).await.unwrap();
        write_frame(&mut wire, &encode(&Frame::End)).await.unwrap();
        let mut r = Cursor::new(wire.into_inner());
        let one: Frame = bounded::decode(&read_frame(&mut r, 100).await.unwrap(), 1 << 20).unwrap();
        assert_eq!(one, frame);
        let two: Frame = bounded::decode(&read_frame(&mut r, 100).await.unwrap(), 1 << 20).unwrap();
        assert_eq!(two, Frame::End);

        let mut big = Cursor::new(vec![0, 0, 1, 0, 7, 7]);
        assert!(matches!(
            read_frame(&mut big, 255).await,
            Err(ReadError::TooLarge(256))
        ));
        let mut short = Cursor::new(vec![0, 0, 0, 9, 1]);
        assert!(matches!(
            read_frame(&mut short, 255).await,
            Err(ReadError::Io(_))
        ));
    }

    #[tokio::test]
    async fn a_one_answer_requester_gets_the_chunks_collected() {
        let (tx, rx) = oneshot::channel();
        let mut sink = ReplySink::new(Responder::Unary(tx));
        sink.send(Answer::new(serde_json::json!("a")))
            .await
            .unwrap();
        sink.send(Answer::new(serde_json::json!("b")).attach(vec![1]))
            .await
            .unwrap();
        sink.end().await;
        match rx.await.unwrap() {
            Reply::Answer(a) => {
                assert_eq!(a.result, serde_json::json!(["a", "b"]));
                assert_eq!(a.attachments.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn dropping_a_sink_reports_a_handler_failure() {
        let (tx, rx) = oneshot::channel();
        drop(ReplySink::new(Responder::Unary(tx)));
        match rx.await.unwrap() {
            Reply::Error(e) => assert_eq!(e.kind, RemoteErrorKind::HandlerFailed),
            other => panic!("{other:?}"),
        }
    }
}
