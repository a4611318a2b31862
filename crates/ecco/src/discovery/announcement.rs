//! Signed capability announcements: who offers what, where, until when.

use ecco_core::CapabilityDocument;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::Identity;
use crate::bounded::DecodeError;
use crate::identity::{self, Domain};

/// The signature domain of announcements.
pub const DOMAIN: Domain = Domain::from_static("ecco/announce/v1");

/// Bounds on announcements (documented in `docs/PROTOCOL.md`).
pub mod limits {
    /// Largest encoded signed announcement, in bytes.
    pub const MAX_BYTES: usize = 300 * 1024;
    /// Most addresses in one announcement.
    pub const MAX_ADDRESSES: usize = 16;
    /// Shortest accepted time to live, in seconds.
    pub const MIN_TTL_SECS: u32 = 10;
    /// Longest accepted time to live, in seconds.
    pub const MAX_TTL_SECS: u32 = 24 * 3600;
    /// How far in the future an announcement's issue time may be (clock skew), in ms.
    pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;
    /// Most memory an announcement may take once decoded, estimated before
    /// it is decoded (`ecco_core::decoded::Cost`): a document within
    /// [`MAX_BYTES`] can unfold into far more. Ordinary documents take a
    /// few times their size.
    pub const MAX_DECODED_BYTES: u64 = 8 * 1024 * 1024;
}

/// What an agent says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    /// The announcing peer; the signature must be by its key.
    pub peer: PeerId,
    /// The mesh it is meant for.
    pub mesh: String,
    /// Grows with every new announcement of the peer; older or equal ones are stale.
    pub seq: u64,
    /// When it was issued, in ms since the Unix epoch.
    pub issued_at_ms: u64,
    /// How long it stays valid after `issued_at_ms`, in seconds.
    pub ttl_secs: u32,
    /// Where the peer can be reached.
    pub addrs: Vec<Multiaddr>,
    /// What it offers.
    pub document: CapabilityDocument,
}

/// An announcement as it travels: its CBOR encoding and the origin's signature over it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAnnouncement {
    /// The CBOR-encoded [`Announcement`], exactly as signed.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Ed25519 signature over `body` in the [`DOMAIN`].
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Why an announcement was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnouncementError {
    /// Larger than [`limits::MAX_BYTES`].
    #[error("announcement of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Not decodable, or invalid content.
    #[error("malformed announcement: {0}")]
    Malformed(String),
    /// Would take more than [`limits::MAX_DECODED_BYTES`] of memory once
    /// decoded (the estimate, in bytes); it was not decoded.
    #[error("announcement would take {0} bytes of memory once decoded, over the limit")]
    Unfolds(u64),
    /// The signature is not the announcing peer's (base58 id).
    #[error("signature does not match peer {0}")]
    BadSignature(String),
    /// Meant for another mesh.
    #[error("announcement for mesh `{0}`")]
    OtherMesh(String),
    /// Time to live out of bounds.
    #[error("time to live of {0} s is out of bounds")]
    BadTtl(u32),
    /// Issued too far in the future.
    #[error("issued in the future")]
    FromTheFuture,
    /// Its time to live has passed.
    #[error("expired")]
    Expired,
    /// Not newer than what is known of the peer (a replay or a late copy).
    #[error("stale: sequence {seq} is not newer than {known}")]
    Stale {
        /// Its sequence number.
        seq: u64,
        /// The newest known.
        known: u64,
    },
    /// The directory is full of entries that outlive this one.
    #[error("the directory is full")]
    DirectoryFull,
}

impl AnnouncementError {
    /// Whether the sender deserves a penalty (a forgery or garbage), as
    /// opposed to a harmless late or duplicate copy.
    pub fn is_misbehaviour(&self) -> bool {
        !matches!(
            self,
            Self::Expired | Self::Stale { .. } | Self::DirectoryFull
        )
    }
}

impl Announcement {
    /// Encodes and signs.
    pub fn sign(&self, identity: &Identity) -> SignedAnnouncement {
        // Encoding these plain types into a Vec cannot fail.
        let body = crate::cbor::to_vec(self).unwrap_or_default();
        SignedAnnouncement {
            signature: identity.sign(DOMAIN, &body),
            body,
        }
    }

    /// When it expires, in ms since the Unix epoch.
    pub fn expires_at_ms(&self) -> u64 {
        self.issued_at_ms
            .saturating_add(u64::from(self.ttl_secs) * 1000)
    }
}

impl SignedAnnouncement {
    /// Encodes for the wire (CBOR).
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::cbor::to_vec(self).unwrap_or_default()
    }

    /// Decodes and checks everything that does not depend on what is already
    /// known: size, form, signature, mesh, time to live, issue time. The
    /// sequence number is checked by the [`Directory`](super::Directory).
    pub fn verify(
        bytes: &[u8],
        mesh: &str,
        now_ms: u64,
    ) -> Result<Announcement, AnnouncementError> {
        if bytes.len() > limits::MAX_BYTES {
            return Err(AnnouncementError::TooLarge(bytes.len()));
        }
        let signed: SignedAnnouncement = decode(bytes)?;
        let a: Announcement = decode(&signed.body)?;
        identity::verify_with_peer_id(&a.peer, DOMAIN, &signed.body, &signed.signature)
            .map_err(|_| AnnouncementError::BadSignature(a.peer.to_base58()))?;
        if a.mesh != mesh {
            return Err(AnnouncementError::OtherMesh(a.mesh));
        }
        if a.addrs.len() > limits::MAX_ADDRESSES {
            return Err(AnnouncementError::Malformed(format!(
                "{} addresses",
                a.addrs.len()
            )));
        }
        if !(limits::MIN_TTL_SECS..=limits::MAX_TTL_SECS).contains(&a.ttl_secs) {
            return Err(AnnouncementError::BadTtl(a.ttl_secs));
        }
        if a.issued_at_ms > now_ms.saturating_add(limits::MAX_CLOCK_SKEW_MS) {
            return Err(AnnouncementError::FromTheFuture);
        }
        if a.expires_at_ms() <= now_ms {
            return Err(AnnouncementError::Expired);
        }
        Ok(a)
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AnnouncementError> {
    crate::bounded::decode(bytes, limits::MAX_DECODED_BYTES).map_err(|e| match e {
        DecodeError::Malformed(why) => AnnouncementError::Malformed(why),
        DecodeError::TooLarge { memory, .. } => AnnouncementError::Unfolds(memory),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn announcement(identity: &Identity, seq: u64) -> Announcement {
        Announcement {
            peer: identity.peer_id(),
            mesh: "ecco".into(),
            seq,
            issued_at_ms: NOW,
            ttl_secs: 300,
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
            document: CapabilityDocument::new(vec!["llm/chat a@1.0.0 +summarize".parse().unwrap()])
                .unwrap(),
        }
    }

    #[test]
    fn signed_announcements_verify() {
        let me = Identity::generate();
        let bytes = announcement(&me, 1).sign(&me).to_bytes();
        let a = SignedAnnouncement::verify(&bytes, "ecco", NOW).unwrap();
        assert_eq!(a, announcement(&me, 1));
    }

    /// JSON nulls in metadata arrive as nulls, not as empty arrays.
    #[test]
    fn metadata_nulls_survive_the_wire() {
        let me = Identity::generate();
        let metadata = serde_json::json!({"region": null, "tags": [null, "gpu"]});
        let mut sent = announcement(&me, 1);
        sent.document = CapabilityDocument::new(vec![
            ecco_core::Capability::builder("llm/chat", "a", "1.0.0")
                .metadata(metadata.clone())
                .unwrap()
                .build()
                .unwrap(),
        ])
        .unwrap();
        let bytes = sent.sign(&me).to_bytes();
        let got = SignedAnnouncement::verify(&bytes, "ecco", NOW).unwrap();
        assert_eq!(
            &serde_json::Value::Object(got.document.capabilities()[0].metadata().clone()),
            &metadata
        );
        assert_eq!(got, sent);
    }

    #[test]
    fn forgeries_are_rejected_as_misbehaviour() {
        let me = Identity::generate();
        let mallory = Identity::generate();
        // Mallory signs an announcement in my name.
        let forged = announcement(&me, 9).sign(&mallory).to_bytes();
        let e = SignedAnnouncement::verify(&forged, "ecco", NOW).unwrap_err();
        assert_eq!(e, AnnouncementError::BadSignature(me.peer_id().to_base58()));
        assert!(e.is_misbehaviour());

        // A genuine body with a byte changed.
        let mut signed = announcement(&me, 1).sign(&me);
        let last = signed.body.len() - 1;
        signed.body[last] ^= 1;
        assert!(SignedAnnouncement::verify(&signed.to_bytes(), "ecco", NOW).is_err());

        assert!(matches!(
            SignedAnnouncement::verify(b"garbage", "ecco", NOW),
            Err(AnnouncementError::Malformed(_))
        ));
        let huge = vec![0u8; limits::MAX_BYTES + 1];
        assert_eq!(
            SignedAnnouncement::verify(&huge, "ecco", NOW),
            Err(AnnouncementError::TooLarge(limits::MAX_BYTES + 1))
        );
    }

    /// The memory limit leaves room for any ordinary document up to the
    /// size limit: here 64 capabilities, each with every feature and
    /// constraint it may have and a metadata object of 150 entries.
    #[test]
    fn a_full_document_fits_the_memory_limit() {
        let me = Identity::generate();
        let capability = |i: usize| {
            let metadata: serde_json::Map<String, serde_json::Value> = (0..150)
                .map(|k| (format!("key{k}"), serde_json::json!(k)))
                .collect();
            (0..32)
                .fold(
                    ecco_core::Capability::builder("llm/chat", format!("model{i}"), "1.0.0")
                        .features((0..64).map(|f| format!("feature{f}"))),
                    |b, c| b.constraint(format!("constraint{c}"), f64::from(c)),
                )
                .metadata(serde_json::Value::Object(metadata))
                .unwrap()
                .build()
                .unwrap()
        };
        let mut full = announcement(&me, 1);
        full.document = CapabilityDocument::new((0..64).map(capability).collect()).unwrap();
        let bytes = full.sign(&me).to_bytes();
        assert!(bytes.len() > limits::MAX_BYTES / 2, "{} bytes", bytes.len());
        assert_eq!(
            SignedAnnouncement::verify(&bytes, "ecco", NOW).unwrap(),
            full
        );
    }

    #[test]
    fn an_announcement_that_would_unfold_is_refused_undecoded() {
        let me = Identity::generate();
        // 60,000 one-entry objects: 240 kB on the wire, 38 MB once decoded.
        let body = cbor4ii::serde::to_vec(
            Vec::new(),
            &serde_json::json!({ "metadata": vec![serde_json::json!({"a": 0}); 60_000] }),
        )
        .unwrap();
        let signed = SignedAnnouncement {
            signature: me.sign(DOMAIN, &body),
            body,
        };
        let bytes = signed.to_bytes();
        assert!(bytes.len() <= limits::MAX_BYTES);
        let e = SignedAnnouncement::verify(&bytes, "ecco", NOW).unwrap_err();
        assert!(
            matches!(e, AnnouncementError::Unfolds(m) if m > limits::MAX_DECODED_BYTES),
            "{e:?}"
        );
        assert!(e.is_misbehaviour());
    }

    #[test]
    fn mesh_ttl_and_time_are_checked() {
        let me = Identity::generate();
        let check =
            |a: Announcement, now| SignedAnnouncement::verify(&a.sign(&me).to_bytes(), "ecco", now);
        let mut other = announcement(&me, 1);
        other.mesh = "hospital".into();
        assert_eq!(
            check(other, NOW),
            Err(AnnouncementError::OtherMesh("hospital".into()))
        );
        let mut ttl = announcement(&me, 1);
        ttl.ttl_secs = 1;
        assert_eq!(check(ttl, NOW), Err(AnnouncementError::BadTtl(1)));
        assert_eq!(
            check(announcement(&me, 1), NOW + 301_000),
            Err(AnnouncementError::Expired)
        );
        assert_eq!(
            check(announcement(&me, 1), NOW - 61_000),
            Err(AnnouncementError::FromTheFuture)
        );
        assert!(!AnnouncementError::Expired.is_misbehaviour());
    }
}
