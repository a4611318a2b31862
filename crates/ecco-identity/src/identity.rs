//! [`Identity`]: an agent's Ed25519 key pair and the [`PeerId`] derived from it.

use std::fmt;

use libp2p_identity::{KeyType, Keypair, PeerId, PublicKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// An agent's identity: an Ed25519 key pair and its [`PeerId`].
///
/// The key pair is always Ed25519, so the peer id embeds the public key and
/// anyone holding the peer id can check the agent's signatures
/// (see [`verify_with_peer_id`](crate::verify_with_peer_id)).
///
/// [`Debug`](fmt::Debug) shows only the peer id, never secret material.
/// The secret key is wiped from memory when the last copy is dropped.
#[derive(Clone)]
pub struct Identity {
    keypair: Keypair,
    peer_id: PeerId,
}

impl Identity {
    /// Generates a fresh random Ed25519 identity.
    #[must_use]
    pub fn generate() -> Self {
        let keypair = Keypair::generate_ed25519();
        let peer_id = keypair.public().to_peer_id();
        Self { keypair, peer_id }
    }

    /// Wraps an existing key pair.
    ///
    /// # Errors
    /// [`Error::NotEd25519`] if the key pair is of another type.
    pub fn from_keypair(keypair: Keypair) -> Result<Self> {
        match keypair.key_type() {
            KeyType::Ed25519 => {
                let peer_id = keypair.public().to_peer_id();
                Ok(Self { keypair, peer_id })
            }
            other => Err(Error::NotEd25519 {
                key_type: other.to_string(),
            }),
        }
    }

    /// The peer id of this identity (derived from its public key).
    #[must_use]
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The public half of the key pair.
    #[must_use]
    pub fn public(&self) -> PublicKey {
        self.keypair.public()
    }

    /// The libp2p key pair, for handing to the networking layer.
    #[must_use]
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// Consumes the identity and returns its libp2p key pair.
    #[must_use]
    pub fn into_keypair(self) -> Keypair {
        self.keypair
    }

    /// The libp2p protobuf encoding of the private key: `08 01 12 40` followed
    /// by the 64 bytes secret ‖ public. Built here rather than with
    /// `Keypair::to_protobuf_encoding` so that no intermediate copy is left
    /// un-wiped.
    pub(crate) fn secret_protobuf(&self) -> Result<Zeroizing<Vec<u8>>> {
        let ed = self
            .keypair
            .clone()
            .try_into_ed25519()
            .map_err(|_| Error::NotEd25519 {
                key_type: self.keypair.key_type().to_string(),
            })?;
        let raw = Zeroizing::new(ed.to_bytes());
        let mut out = Zeroizing::new(Vec::with_capacity(PROTOBUF_PREFIX.len() + raw.len()));
        out.extend_from_slice(&PROTOBUF_PREFIX);
        out.extend_from_slice(raw.as_slice());
        Ok(out)
    }
}

/// Protobuf header of an Ed25519 `PrivateKey` message: field 1 (`Type`) =
/// 1 (`Ed25519`), field 2 (`Data`) with length 64.
const PROTOBUF_PREFIX: [u8; 4] = [0x08, 0x01, 0x12, 0x40];

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_gives_distinct_ed25519_identities() {
        let a = Identity::generate();
        let b = Identity::generate();
        assert_ne!(a.peer_id(), b.peer_id());
        assert_eq!(a.keypair().key_type(), KeyType::Ed25519);
        assert_eq!(a.public().to_peer_id(), a.peer_id());
    }

    #[test]
    fn from_keypair_keeps_the_key() {
        let kp = Keypair::generate_ed25519();
        let expected = kp.public().to_peer_id();
        let id = Identity::from_keypair(kp).unwrap();
        assert_eq!(id.peer_id(), expected);
        assert_eq!(id.clone().into_keypair().public().to_peer_id(), expected);
    }

    #[test]
    fn protobuf_encoding_matches_libp2p() {
        let id = Identity::generate();
        let ours = id.secret_protobuf().unwrap();
        let theirs = id.keypair().to_protobuf_encoding().unwrap();
        assert_eq!(ours.as_slice(), theirs.as_slice());
        let back = Keypair::from_protobuf_encoding(&ours).unwrap();
        assert_eq!(back.public().to_peer_id(), id.peer_id());
    }

    #[test]
    fn debug_shows_peer_id_but_no_secret() {
        let id = Identity::generate();
        let dbg = format!("{id:?}");
        assert!(dbg.contains(&id.peer_id().to_base58()));
        let secret = id.secret_protobuf().unwrap();
        let secret_hex: String = secret[4..36].iter().map(|b| format!("{b:02x}")).collect();
        assert!(!dbg.contains(&secret_hex));
        assert!(!dbg.to_lowercase().contains("secret"));
    }
}
