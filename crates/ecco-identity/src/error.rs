//! The crate's error type.

use std::io;
use std::path::PathBuf;

use libp2p_identity::PeerId;

/// Everything that can go wrong in this crate.
///
/// Variants about a key file always carry the file's path, and their messages
/// say what is wrong with it, so they can be shown to a person as they are.
/// Messages never contain secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The identity file does not exist.
    #[error("identity file {} not found", .path.display())]
    NotFound {
        /// The file that was looked for.
        path: PathBuf,
    },

    /// The identity file exists but could not be read.
    #[error("cannot read identity file {}: {source}", .path.display())]
    Read {
        /// The file being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// The identity file (or its directory or temporary file) could not be written.
    #[error("cannot write identity file {}: {source}", .path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// Saving would replace an existing file, and overwriting was not asked for.
    #[error(
        "identity file {} already exists; refusing to overwrite it \
         (use SaveOptions::overwrite to replace it deliberately)",
        .path.display()
    )]
    AlreadyExists {
        /// The file that already exists.
        path: PathBuf,
    },

    /// The file is larger than any identity file can be; it was not parsed.
    #[error(
        "{} is too large to be an ecco identity file ({size} bytes, the limit is {limit})",
        .path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes (at least `limit + 1` if it grew while being read).
        size: u64,
        /// The largest size accepted.
        limit: u64,
    },

    /// The file is not an ecco identity file, or is damaged beyond recognition
    /// (not JSON, wrong structure, bad base64, bad lengths, undecodable key).
    #[error("{} is not a valid ecco identity file: {reason}", .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The file is an ecco identity file of a format version this build does not know.
    #[error(
        "identity file {} has format version {found}; this build only reads version {supported}",
        .path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version recorded in the file.
        found: u64,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// The file names a key-derivation function or cipher this build does not implement.
    #[error("identity file {} uses unsupported {what} {found:?}", .path.display())]
    UnsupportedAlgorithm {
        /// The file.
        path: PathBuf,
        /// Which slot: `"kdf"` or `"cipher"`.
        what: &'static str,
        /// The algorithm named in the file.
        found: String,
    },

    /// The file's key-derivation parameters are outside the accepted bounds
    /// (too weak, or so expensive that loading it would be a denial of service).
    #[error(
        "identity file {} has key-derivation parameters out of bounds: {reason}",
        .path.display()
    )]
    KdfParamsOutOfBounds {
        /// The file.
        path: PathBuf,
        /// Which parameter, its value and the bound.
        reason: String,
    },

    /// Key-derivation parameters given to [`KdfParams::new`](crate::KdfParams::new)
    /// are outside the accepted bounds.
    #[error("invalid key-derivation parameters: {reason}")]
    InvalidKdfParams {
        /// Which parameter, its value and the bound.
        reason: String,
    },

    /// The file's key is encrypted and no passphrase was given.
    #[error("identity file {} is encrypted; a passphrase is required to load it", .path.display())]
    PassphraseRequired {
        /// The file.
        path: PathBuf,
    },

    /// A passphrase was given but the file's key is stored unencrypted.
    ///
    /// This is an error rather than a warning so that nobody believes a key
    /// is protected when it is not.
    #[error(
        "identity file {} is not encrypted, but a passphrase was given; \
         load it without a passphrase (or re-save it encrypted)",
        .path.display()
    )]
    PassphraseNotExpected {
        /// The file.
        path: PathBuf,
    },

    /// The passphrase does not match the one the file was encrypted with.
    #[error("wrong passphrase for identity file {}", .path.display())]
    WrongPassphrase {
        /// The file.
        path: PathBuf,
    },

    /// The passphrase is right, but the encrypted key (or the header bound to it)
    /// failed authentication: the file was modified or damaged.
    #[error(
        "identity file {} is corrupt: the passphrase is right but the encrypted key \
         fails authentication (the file was modified or damaged)",
        .path.display()
    )]
    Corrupted {
        /// The file.
        path: PathBuf,
    },

    /// The key in the file does not belong to the peer id recorded beside it.
    #[error(
        "identity file {} is corrupt: it records peer id {recorded} but its key is that of {actual}",
        .path.display()
    )]
    PeerIdMismatch {
        /// The file.
        path: PathBuf,
        /// The peer id written in the file (boxed to keep `Error` small).
        recorded: Box<PeerId>,
        /// The peer id of the key actually in the file.
        actual: Box<PeerId>,
    },

    /// A key pair or public key is not Ed25519; ecco identities always are.
    #[error("expected an Ed25519 key, found a {key_type} key; ecco identities are always Ed25519")]
    NotEd25519 {
        /// The key type found, e.g. `"Secp256k1"`.
        key_type: String,
    },

    /// A passphrase must not be empty.
    #[error("passphrase must not be empty")]
    EmptyPassphrase,

    /// A signature domain label is not valid.
    #[error("invalid signature domain {label:?}: {reason}")]
    InvalidDomain {
        /// The label that was rejected.
        label: &'static str,
        /// Why.
        reason: &'static str,
    },

    /// The signature does not verify for this key, domain and message.
    #[error("signature verification failed")]
    BadSignature,

    /// The peer id does not embed its public key (it is not an identity-multihash
    /// peer id of an Ed25519 key), so signatures cannot be checked against it alone.
    #[error("peer id {peer_id} does not embed an Ed25519 public key")]
    PeerIdWithoutKey {
        /// The peer id.
        peer_id: PeerId,
    },

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Rng(String),

    /// Key derivation or encryption failed for a reason that is not the file's
    /// fault (for example the KDF's memory could not be allocated).
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
