//! Ecco agent identities.
//!
//! An agent is identified by an Ed25519 key pair; its libp2p [`PeerId`]
//! embeds the public key, so anyone who knows the peer id can check the
//! agent's signatures. This crate provides:
//!
//! - [`Identity`]: the key pair, ready for the networking layer
//!   ([`Identity::keypair`]);
//! - key files: a small versioned JSON document, optionally encrypted with a
//!   [`Passphrase`] (Argon2id + XChaCha20-Poly1305), written atomically with
//!   mode 0600 ([`Identity::save`], [`Identity::load`],
//!   [`Identity::load_or_create`], [`inspect`]);
//! - domain-separated signatures ([`Identity::sign`], [`verify`],
//!   [`verify_with_peer_id`]), so a signature made for one purpose
//!   ([`Domain`]) is never valid for another.
//!
//! The byte-exact file format and signature encoding are specified in
//! `docs/IDENTITY.md` at the root of the repository.
//!
//! # Example
//!
//! ```
//! use ecco_identity::{Domain, Identity, KdfParams, Passphrase, SaveOptions, verify_with_peer_id};
//!
//! const GREETING: Domain = Domain::from_static("ecco/example/v1");
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("identity.json");
//!
//! // First run: nothing there yet, so a new identity is created and saved.
//! let me = Identity::load_or_create(&path, None)?;
//! // Later runs load the same identity.
//! assert_eq!(Identity::load_or_create(&path, None)?.peer_id(), me.peer_id());
//!
//! // Sign; anyone who knows only the peer id can verify.
//! let sig = me.sign(GREETING, b"hello");
//! verify_with_peer_id(&me.peer_id(), GREETING, b"hello", &sig)?;
//!
//! // An encrypted copy (cheap KDF parameters to keep the example fast).
//! let pass = Passphrase::new("correct horse battery staple")?;
//! let enc = dir.path().join("encrypted.json");
//! me.save_with(&enc, Some(&pass), &SaveOptions::new().kdf_params(KdfParams::MINIMUM))?;
//! assert_eq!(Identity::load(&enc, Some(&pass))?.peer_id(), me.peer_id());
//! # Ok(())
//! # }
//! ```

mod error;
mod fsio;
mod identity;
mod kdf;
mod keyfile;
mod passphrase;
mod seal;
mod signing;
mod store;

pub use error::{Error, Result};
pub use fsio::MAX_KEY_FILE_SIZE;
pub use identity::Identity;
pub use kdf::KdfParams;
pub use libp2p_identity::{Keypair, PeerId, PublicKey};
pub use passphrase::Passphrase;
pub use signing::{
    Domain, SIGNATURE_LEN, SIGNATURE_PREFIX, public_key_from_peer_id, signing_input, verify,
    verify_with_peer_id,
};
pub use store::{KeyFileInfo, LoadReport, SaveOptions, inspect, permissions_too_open};

/// The key file format version this build reads and writes.
pub const KEY_FILE_VERSION: u32 = seal::FORMAT_VERSION;
