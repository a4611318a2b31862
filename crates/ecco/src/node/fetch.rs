//! The capability fetch protocol: ask a peer for its signed announcement.
//!
//! The request is empty; the answer is the peer's current
//! [`SignedAnnouncement`](crate::discovery::SignedAnnouncement) in its CBOR
//! form, or empty when it offers nothing. The answer is checked exactly as a
//! gossiped one, so a fetched document is as trustworthy as an announcement.

use std::io;

use futures::prelude::*;
use libp2p::StreamProtocol;

use crate::discovery::limits::MAX_BYTES;

/// One byte string each way, each bounded.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Codec;

async fn read_bounded<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(max as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a capability fetch message is limited to {max} bytes"),
        ));
    }
    Ok(buf)
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = ();
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_bounded(io, 0).await.map(drop)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_bounded(io, MAX_BYTES).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, _: &mut T, (): ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Ok(())
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&bytes).await
    }
}

/// Why a capability fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The peer could not be reached or did not answer.
    #[error("cannot fetch capabilities from {peer}: {reason}")]
    Unreachable {
        /// The peer.
        peer: libp2p::PeerId,
        /// Why.
        reason: String,
    },
    /// The peer is connected but did not answer within the request
    /// timeout. Unlike [`FetchError::Unreachable`], it has not left.
    #[error("{peer} did not answer the capability fetch in time")]
    Timeout {
        /// The peer.
        peer: libp2p::PeerId,
    },
    /// The answer was not a valid announcement by that peer for this mesh
    /// (too large, malformed, badly signed, or for another mesh).
    #[error("{peer} sent an invalid capability document: {reason}")]
    Invalid {
        /// The peer.
        peer: libp2p::PeerId,
        /// Why.
        reason: String,
    },
    /// The answer was valid, but the local directory is full of entries
    /// that outlive it (see `Limits::max_directory_peers` and `Limits::max_directory_bytes`), so it was not kept.
    #[error("{peer}'s capabilities are valid but not kept: the directory is full")]
    DirectoryFull {
        /// The peer.
        peer: libp2p::PeerId,
    },
    /// The local node has shut down.
    #[error("the node has shut down")]
    NodeStopped,
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;
    use libp2p::request_response::Codec as _;

    use super::*;

    #[tokio::test]
    async fn answers_are_bounded() {
        let p = StreamProtocol::new("/t");
        let mut ok = Cursor::new(vec![1u8; MAX_BYTES]);
        assert_eq!(
            Codec.read_response(&p, &mut ok).await.unwrap().len(),
            MAX_BYTES
        );
        let mut big = Cursor::new(vec![1u8; MAX_BYTES + 1]);
        assert!(Codec.read_response(&p, &mut big).await.is_err());
        let mut not_empty = Cursor::new(vec![0u8]);
        assert!(Codec.read_request(&p, &mut not_empty).await.is_err());
    }
}
