//! Domain-separated Ed25519 signatures.
//!
//! The bytes actually signed are
//!
//! ```text
//! "ecco-sig-v1" 0x00 ‖ len(domain) as one byte ‖ domain ‖ message
//! ```
//!
//! so a signature made for one [`Domain`] never verifies under another, and
//! can never be confused with a signature over some other structure.

use std::fmt;

use libp2p_identity::{PeerId, PublicKey, ed25519};

use crate::error::{Error, Result};
use crate::identity::Identity;

/// Prefix of every signed message (`"ecco-sig-v1"` and a zero byte).
pub const SIGNATURE_PREFIX: &[u8; 12] = b"ecco-sig-v1\0";

/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// Multihash code of the identity hash, used by peer ids that embed their key.
const MULTIHASH_IDENTITY: u64 = 0x00;

/// A signature domain: a label naming what a signature is for, such as
/// `"ecco/announce/v1"`.
///
/// A label is 1 to [`Domain::MAX_LEN`] bytes of visible ASCII (`0x21..=0x7e`:
/// no spaces or control characters).
///
/// ```
/// use ecco_identity::Domain;
///
/// // Checked at compile time when used in a constant:
/// const ANNOUNCE: Domain = Domain::from_static("ecco/announce/v1");
/// assert_eq!(ANNOUNCE.as_str(), "ecco/announce/v1");
///
/// assert!(Domain::new("has space").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(&'static str);

impl Domain {
    /// The longest label accepted, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates `label` as a domain.
    ///
    /// # Errors
    /// [`Error::InvalidDomain`] if it is empty, longer than [`Domain::MAX_LEN`]
    /// bytes, or contains anything but visible ASCII.
    pub const fn new(label: &'static str) -> Result<Self> {
        match check_label(label) {
            None => Ok(Self(label)),
            Some(reason) => Err(Error::InvalidDomain { label, reason }),
        }
    }

    /// Like [`Domain::new`], for constants: an invalid label fails the build
    /// when evaluated in a `const`, and panics otherwise.
    ///
    /// # Panics
    /// If the label is invalid.
    pub const fn from_static(label: &'static str) -> Self {
        match check_label(label) {
            None => Self(label),
            Some(reason) => panic!("{}", reason),
        }
    }

    /// The label.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Domain").field(&self.0).finish()
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// `None` if `label` is a valid domain, otherwise why not.
const fn check_label(label: &str) -> Option<&'static str> {
    let bytes = label.as_bytes();
    if bytes.is_empty() {
        return Some("signature domain must not be empty");
    }
    if bytes.len() > Domain::MAX_LEN {
        return Some("signature domain must be at most 64 bytes");
    }
    let mut i = 0;
    while i < bytes.len() {
        if !(bytes[i] >= 0x21 && bytes[i] <= 0x7e) {
            return Some(
                "signature domain must be visible ASCII (no spaces or control characters)",
            );
        }
        i += 1;
    }
    None
}

/// The exact bytes signed for `domain` and `msg`.
///
/// Exposed so other implementations and tests can check the encoding.
#[must_use]
pub fn signing_input(domain: Domain, msg: &[u8]) -> Vec<u8> {
    let label = domain.as_str().as_bytes();
    let mut out = Vec::with_capacity(SIGNATURE_PREFIX.len() + 1 + label.len() + msg.len());
    out.extend_from_slice(SIGNATURE_PREFIX);
    // A valid domain is at most 64 bytes, so its length fits in one byte.
    out.push(label.len() as u8);
    out.extend_from_slice(label);
    out.extend_from_slice(msg);
    out
}

impl Identity {
    /// Signs `msg` for `domain`; the result is a 64-byte Ed25519 signature.
    #[must_use]
    pub fn sign(&self, domain: Domain, msg: &[u8]) -> Vec<u8> {
        // An `Identity` always holds an Ed25519 key pair (checked by every
        // constructor), and Ed25519 signing cannot fail.
        self.keypair()
            .sign(&signing_input(domain, msg))
            .expect("Ed25519 signing is infallible")
    }
}

/// Checks that `sig` is `public`'s signature of `msg` for `domain`.
///
/// Verification is strict (`verify_strict`): weak (small-order) public keys
/// and non-canonical signatures are refused, so a signature cannot be forged
/// for a key nobody holds, nor altered into a second valid one.
///
/// # Errors
/// - [`Error::NotEd25519`] if `public` is not an Ed25519 key.
/// - [`Error::BadSignature`] if the signature does not verify.
pub fn verify(public: &PublicKey, domain: Domain, msg: &[u8], sig: &[u8]) -> Result<()> {
    let ed = ed25519_of(public)?;
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(&ed.to_bytes()).map_err(|_| Error::BadSignature)?;
    let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| Error::BadSignature)?;
    key.verify_strict(&signing_input(domain, msg), &sig)
        .map_err(|_| Error::BadSignature)
}

/// Checks that `sig` is `peer`'s signature of `msg` for `domain`, using the
/// public key embedded in the peer id.
///
/// # Errors
/// - [`Error::PeerIdWithoutKey`] if `peer` does not embed an Ed25519 key.
/// - [`Error::BadSignature`] if the signature does not verify.
pub fn verify_with_peer_id(peer: &PeerId, domain: Domain, msg: &[u8], sig: &[u8]) -> Result<()> {
    verify(&public_key_from_peer_id(peer)?, domain, msg, sig)
}

/// Extracts the Ed25519 public key embedded in a peer id.
///
/// Ed25519 peer ids use the identity multihash (code `0x00`) whose digest is
/// the protobuf-encoded public key.
///
/// # Errors
/// [`Error::PeerIdWithoutKey`] if the peer id is a hash (e.g. of an RSA key),
/// its digest is not a public key, or the key is not Ed25519.
pub fn public_key_from_peer_id(peer: &PeerId) -> Result<PublicKey> {
    let missing = || Error::PeerIdWithoutKey { peer_id: *peer };
    let mh = peer.as_ref();
    if mh.code() != MULTIHASH_IDENTITY {
        return Err(missing());
    }
    let public = PublicKey::try_decode_protobuf(mh.digest()).map_err(|_| missing())?;
    // Re-deriving must give back the same peer id, and only Ed25519 counts.
    if public.key_type() != libp2p_identity::KeyType::Ed25519 || public.to_peer_id() != *peer {
        return Err(missing());
    }
    Ok(public)
}

fn ed25519_of(public: &PublicKey) -> Result<ed25519::PublicKey> {
    public
        .clone()
        .try_into_ed25519()
        .map_err(|_| Error::NotEd25519 {
            key_type: public.key_type().to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Domain = Domain::from_static("ecco/test-a/v1");
    const B: Domain = Domain::from_static("ecco/test-b/v1");

    #[test]
    fn domain_validation() {
        assert!(Domain::new("x").is_ok());
        assert!(Domain::new("ecco/announce/v1").is_ok());
        let max: &'static str = "a234567890123456789012345678901234567890123456789012345678901234";
        assert_eq!(max.len(), 64);
        assert!(Domain::new(max).is_ok());
        let too_long: &'static str = "b".repeat(65).leak();
        for bad in ["", "a b", "tab\t", "nul\0", "é", too_long] {
            assert!(
                matches!(Domain::new(bad), Err(Error::InvalidDomain { label, .. }) if label == bad),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    #[should_panic(expected = "visible ASCII")]
    fn from_static_panics_on_invalid_label() {
        let _ = Domain::from_static("no spaces please");
    }

    #[test]
    fn signing_input_is_byte_exact() {
        let d = Domain::from_static("ab");
        assert_eq!(signing_input(d, b"xyz"), b"ecco-sig-v1\0\x02abxyz".to_vec());
        assert_eq!(signing_input(d, b""), b"ecco-sig-v1\0\x02ab".to_vec());
    }

    #[test]
    fn sign_verify_round_trip() {
        let id = Identity::generate();
        let sig = id.sign(A, b"hello");
        assert_eq!(sig.len(), SIGNATURE_LEN);
        verify(&id.public(), A, b"hello", &sig).unwrap();
        verify_with_peer_id(&id.peer_id(), A, b"hello", &sig).unwrap();
    }

    #[test]
    fn signature_is_bound_to_domain_message_and_key() {
        let id = Identity::generate();
        let sig = id.sign(A, b"hello");
        assert!(matches!(
            verify(&id.public(), B, b"hello", &sig),
            Err(Error::BadSignature)
        ));
        assert!(matches!(
            verify(&id.public(), A, b"hellp", &sig),
            Err(Error::BadSignature)
        ));
        let other = Identity::generate();
        assert!(matches!(
            verify(&other.public(), A, b"hello", &sig),
            Err(Error::BadSignature)
        ));
        assert!(matches!(
            verify(&id.public(), A, b"hello", &sig[..63]),
            Err(Error::BadSignature)
        ));
        assert!(matches!(
            verify(&id.public(), A, b"hello", &[]),
            Err(Error::BadSignature)
        ));
    }

    #[test]
    fn domain_and_message_boundary_is_unambiguous() {
        // ("ab", "cd") and ("abc", "d") concatenate to the same text but must
        // not share signatures, thanks to the length byte.
        let id = Identity::generate();
        let sig = id.sign(Domain::from_static("ab"), b"cd");
        assert!(matches!(
            verify(&id.public(), Domain::from_static("abc"), b"d", &sig),
            Err(Error::BadSignature)
        ));
    }

    #[test]
    fn plain_libp2p_signature_does_not_verify() {
        let id = Identity::generate();
        let raw = id.keypair().sign(b"hello").unwrap();
        assert!(matches!(
            verify(&id.public(), A, b"hello", &raw),
            Err(Error::BadSignature)
        ));
    }

    #[test]
    fn random_peer_id_has_no_key() {
        // `PeerId::random()` is an identity multihash of 32 random bytes:
        // right code, but the digest is not a public key.
        let peer = PeerId::random();
        assert_eq!(peer.as_ref().code(), MULTIHASH_IDENTITY);
        assert!(matches!(
            public_key_from_peer_id(&peer),
            Err(Error::PeerIdWithoutKey { peer_id }) if peer_id == peer
        ));
        let id = Identity::generate();
        let sig = id.sign(A, b"m");
        assert!(matches!(
            verify_with_peer_id(&peer, A, b"m", &sig),
            Err(Error::PeerIdWithoutKey { .. })
        ));
    }

    #[test]
    fn sha256_peer_id_has_no_key() {
        // A sha2-256 multihash peer id (as used for RSA keys): 0x12, 0x20, 32 bytes.
        let mut bytes = vec![0x12, 0x20];
        bytes.extend_from_slice(&[7u8; 32]);
        let peer = PeerId::from_bytes(&bytes).unwrap();
        assert!(matches!(
            public_key_from_peer_id(&peer),
            Err(Error::PeerIdWithoutKey { .. })
        ));
    }

    #[test]
    fn public_key_from_peer_id_round_trips() {
        let id = Identity::generate();
        assert_eq!(public_key_from_peer_id(&id.peer_id()).unwrap(), id.public());
    }

    /// A small-order public key (here the identity point) with the
    /// signature (R = identity, s = 0) passes the plain Ed25519 equation for
    /// every message: anyone could "sign" anything as its peer id. Strict
    /// verification refuses weak keys.
    #[test]
    fn weak_key_forgery_is_refused() {
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        let ed = libp2p_identity::ed25519::PublicKey::try_from_bytes(&identity_point)
            .expect("the identity point decodes as a public key");
        let public = PublicKey::from(ed);
        let peer = public.to_peer_id();
        let mut forged = [0u8; 64];
        forged[0] = 1;
        for msg in [&b"any message"[..], b"another one"] {
            assert!(matches!(
                verify(&public, A, msg, &forged),
                Err(Error::BadSignature)
            ));
            assert!(matches!(
                verify_with_peer_id(&peer, A, msg, &forged),
                Err(Error::BadSignature)
            ));
        }
    }
}
