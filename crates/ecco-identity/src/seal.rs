//! Passphrase encryption of the secret key: Argon2id, then XChaCha20-Poly1305
//! with the file's header bound in as associated data.

use std::path::Path;

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use libp2p_identity::PeerId;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::kdf::{self, CHECK_LEN, KdfParams, SALT_LEN};
use crate::passphrase::Passphrase;

/// Length of the XChaCha20-Poly1305 nonce.
pub(crate) const NONCE_LEN: usize = 24;
/// Name of the KDF in the file.
pub(crate) const KDF_NAME: &str = "argon2id";
/// Name of the cipher in the file.
pub(crate) const CIPHER_NAME: &str = "xchacha20poly1305";
/// Key file format version bound into the associated data.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// First bytes of the associated data.
const AAD_TAG: &[u8] = b"ecco-identity\0";

/// An encrypted secret key with everything needed to decrypt it but the passphrase.
#[derive(Clone, Debug)]
pub(crate) struct Sealed {
    pub(crate) params: KdfParams,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) check: [u8; CHECK_LEN],
    pub(crate) nonce: [u8; NONCE_LEN],
    pub(crate) ciphertext: Vec<u8>,
}

/// Encrypts `secret` (the protobuf-encoded key pair of `peer_id`).
pub(crate) fn seal(
    secret: &[u8],
    peer_id: &PeerId,
    passphrase: &Passphrase,
    params: &KdfParams,
) -> Result<Sealed> {
    let salt = random::<SALT_LEN>()?;
    let nonce = random::<NONCE_LEN>()?;
    let derived = kdf::derive(params, passphrase, &salt)?;
    let cipher = XChaCha20Poly1305::new_from_slice(derived.key())
        .map_err(|e| Error::Crypto(format!("cipher key: {e}")))?;
    let aad = associated_data(peer_id, params, &salt);
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: secret,
                aad: &aad,
            },
        )
        .map_err(|_| Error::Crypto("encryption failed".into()))?;
    let mut check = [0u8; CHECK_LEN];
    check.copy_from_slice(derived.check());
    Ok(Sealed {
        params: *params,
        salt,
        check,
        nonce,
        ciphertext,
    })
}

/// Decrypts a sealed key read from `path` (used only in error messages).
///
/// A check value that does not match means the passphrase is wrong (or the
/// KDF header was altered); a matching check value followed by an
/// authentication failure means the ciphertext or header was damaged.
pub(crate) fn unseal(
    sealed: &Sealed,
    peer_id: &PeerId,
    passphrase: &Passphrase,
    path: &Path,
) -> Result<Zeroizing<Vec<u8>>> {
    let derived = kdf::derive(&sealed.params, passphrase, &sealed.salt)?;
    if !constant_time_eq(derived.check(), &sealed.check) {
        return Err(Error::WrongPassphrase {
            path: path.to_path_buf(),
        });
    }
    let cipher = XChaCha20Poly1305::new_from_slice(derived.key())
        .map_err(|e| Error::Crypto(format!("cipher key: {e}")))?;
    let aad = associated_data(peer_id, &sealed.params, &sealed.salt);
    cipher
        .decrypt(
            &XNonce::from(sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| Error::Corrupted {
            path: path.to_path_buf(),
        })
}

/// The header fields bound to the ciphertext, in an unambiguous byte form
/// (see docs/IDENTITY.md).
pub(crate) fn associated_data(peer_id: &PeerId, params: &KdfParams, salt: &[u8]) -> Vec<u8> {
    let peer = peer_id.to_base58();
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(AAD_TAG);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    push_with_len(&mut out, peer.as_bytes());
    push_with_len(&mut out, KDF_NAME.as_bytes());
    out.extend_from_slice(&params.m_cost().to_be_bytes());
    out.extend_from_slice(&params.t_cost().to_be_bytes());
    out.extend_from_slice(&params.p_cost().to_be_bytes());
    push_with_len(&mut out, salt);
    push_with_len(&mut out, CIPHER_NAME.as_bytes());
    out
}

/// Appends a one-byte length and then `bytes`. Every field passed here is
/// short (a peer id is at most 90 base58 characters, the salt 16 bytes).
fn push_with_len(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() <= usize::from(u8::MAX));
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

fn random<const N: usize>() -> Result<[u8; N]> {
    <[u8; N]>::try_generate().map_err(|e| Error::Rng(e.to_string()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn setup() -> (Identity, Passphrase, Sealed) {
        let id = Identity::generate();
        let pass = Passphrase::new("hunter2").unwrap();
        let secret = id.secret_protobuf().unwrap();
        let sealed = seal(&secret, &id.peer_id(), &pass, &KdfParams::MINIMUM).unwrap();
        (id, pass, sealed)
    }

    #[test]
    fn round_trip() {
        let (id, pass, sealed) = setup();
        let back = unseal(&sealed, &id.peer_id(), &pass, Path::new("f")).unwrap();
        assert_eq!(back.as_slice(), id.secret_protobuf().unwrap().as_slice());
        assert_eq!(sealed.ciphertext.len(), 68 + 16);
    }

    #[test]
    fn salts_and_nonces_are_fresh() {
        let (_, _, a) = setup();
        let (_, _, b) = setup();
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.nonce, b.nonce);
    }

    #[test]
    fn wrong_passphrase_is_told_apart_from_damage() {
        let (id, _, sealed) = setup();
        let wrong = Passphrase::new("hunter3").unwrap();
        assert!(matches!(
            unseal(&sealed, &id.peer_id(), &wrong, Path::new("f")),
            Err(Error::WrongPassphrase { .. })
        ));
    }

    #[test]
    fn header_is_bound() {
        let (id, pass, sealed) = setup();
        // Another peer id in the header: the right passphrase, but authentication fails.
        let other = Identity::generate().peer_id();
        assert!(matches!(
            unseal(&sealed, &other, &pass, Path::new("f")),
            Err(Error::Corrupted { .. })
        ));
        // Tampered nonce or ciphertext.
        let mut bad = sealed.clone();
        bad.nonce[0] ^= 1;
        assert!(matches!(
            unseal(&bad, &id.peer_id(), &pass, Path::new("f")),
            Err(Error::Corrupted { .. })
        ));
        let mut bad = sealed;
        bad.ciphertext[10] ^= 0x80;
        assert!(matches!(
            unseal(&bad, &id.peer_id(), &pass, Path::new("f")),
            Err(Error::Corrupted { .. })
        ));
    }

    #[test]
    fn associated_data_layout() {
        let id = Identity::generate();
        let peer = id.peer_id().to_base58();
        let aad = associated_data(&id.peer_id(), &KdfParams::DEFAULT, &[9u8; 16]);
        let mut expected = b"ecco-identity\0\0\0\0\x01".to_vec();
        expected.push(peer.len() as u8);
        expected.extend_from_slice(peer.as_bytes());
        expected.extend_from_slice(b"\x08argon2id");
        expected.extend_from_slice(&[0, 0, 0x4c, 0, 0, 0, 0, 2, 0, 0, 0, 1]);
        expected.push(16);
        expected.extend_from_slice(&[9u8; 16]);
        expected.extend_from_slice(b"\x11xchacha20poly1305");
        assert_eq!(aad, expected);
    }
}
