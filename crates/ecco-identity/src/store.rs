//! Saving and loading an [`Identity`] to and from a key file.

use std::path::Path;

use libp2p_identity::{Keypair, PeerId};

use crate::error::{Error, Result};
use crate::fsio;
use crate::identity::Identity;
use crate::kdf::KdfParams;
use crate::keyfile::{self, StoredKey};
use crate::passphrase::Passphrase;
use crate::seal;

/// Options for [`Identity::save_with`] and [`Identity::load_or_create_with`].
///
/// ```
/// use ecco_identity::{KdfParams, SaveOptions};
///
/// let opts = SaveOptions::new().overwrite(true).kdf_params(KdfParams::MINIMUM);
/// assert!(opts.is_overwrite());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveOptions {
    overwrite: bool,
    kdf: KdfParams,
}

impl SaveOptions {
    /// Default options: never overwrite, [`KdfParams::DEFAULT`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether an existing file may be replaced (default `false`).
    #[must_use]
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// The Argon2id parameters used when a passphrase is given.
    #[must_use]
    pub fn kdf_params(mut self, params: KdfParams) -> Self {
        self.kdf = params;
        self
    }

    /// Whether an existing file may be replaced.
    #[must_use]
    pub fn is_overwrite(&self) -> bool {
        self.overwrite
    }

    /// The Argon2id parameters.
    #[must_use]
    pub fn kdf(&self) -> KdfParams {
        self.kdf
    }
}

/// What [`Identity::load_with_report`] and [`Identity::load_or_create_with`]
/// found besides the identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadReport {
    /// The file did not exist and was created.
    pub created: bool,
    /// The key is stored encrypted.
    pub encrypted: bool,
    /// The file's permission bits (`None` on platforms without them).
    pub mode: Option<u32>,
    /// The group or others may access the file (`mode & 0o077 != 0`). A
    /// warning has been logged; `chmod 600` fixes it.
    pub permissions_too_open: bool,
}

/// What [`inspect`] reads from a key file without a passphrase.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyFileInfo {
    /// The peer id recorded in the file. Not checked against the key, which
    /// may be encrypted; [`Identity::load`] does that check.
    pub peer_id: PeerId,
    /// The key is stored encrypted.
    pub encrypted: bool,
    /// The Argon2id parameters, for an encrypted key.
    pub kdf: Option<KdfParams>,
    /// The file's permission bits (`None` on platforms without them).
    pub mode: Option<u32>,
    /// The group or others may access the file.
    pub permissions_too_open: bool,
}

/// Reads a key file's public header: its peer id and how the key is stored,
/// without a passphrase and without decrypting anything.
///
/// # Errors
/// The same file and format errors as [`Identity::load`].
pub fn inspect(path: impl AsRef<Path>) -> Result<KeyFileInfo> {
    let path = path.as_ref();
    let file = fsio::read_bounded(path)?;
    let parsed = keyfile::parse(path, &file.bytes)?;
    let kdf = match &parsed.key {
        StoredKey::Plain(_) => None,
        StoredKey::Encrypted(sealed) => Some(sealed.params),
    };
    Ok(KeyFileInfo {
        peer_id: parsed.peer_id,
        encrypted: kdf.is_some(),
        kdf,
        mode: file.mode,
        permissions_too_open: fsio::too_open(file.mode),
    })
}

/// Whether the group or others may access the file at `path`
/// (`mode & 0o077 != 0`; always `false` on platforms without permission bits).
///
/// # Errors
/// [`Error::NotFound`] or [`Error::Read`] if its metadata cannot be read.
pub fn permissions_too_open(path: impl AsRef<Path>) -> Result<bool> {
    fsio::file_mode(path.as_ref()).map(fsio::too_open)
}

impl Identity {
    /// Saves the identity to a new key file, encrypted if a passphrase is
    /// given (with [`KdfParams::DEFAULT`]).
    ///
    /// The write is atomic and the file gets mode 0600. An existing file is
    /// never replaced: use [`Identity::save_with`] and
    /// [`SaveOptions::overwrite`] for that.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::Write`], or (rarely)
    /// [`Error::Rng`] / [`Error::Crypto`].
    pub fn save(&self, path: impl AsRef<Path>, passphrase: Option<&Passphrase>) -> Result<()> {
        self.save_with(path, passphrase, &SaveOptions::default())
    }

    /// Saves the identity with explicit [`SaveOptions`].
    ///
    /// # Errors
    /// As [`Identity::save`]; [`Error::AlreadyExists`] only without overwrite.
    pub fn save_with(
        &self,
        path: impl AsRef<Path>,
        passphrase: Option<&Passphrase>,
        options: &SaveOptions,
    ) -> Result<()> {
        let path = path.as_ref();
        let secret = self.secret_protobuf()?;
        let key = match passphrase {
            None => StoredKey::Plain(secret),
            Some(pass) => {
                StoredKey::Encrypted(seal::seal(&secret, &self.peer_id(), pass, &options.kdf)?)
            }
        };
        let bytes = keyfile::encode(&self.peer_id(), key)?;
        fsio::write_atomic(path, &bytes, options.overwrite)?;
        tracing::info!(
            peer_id = %self.peer_id(),
            path = %path.display(),
            encrypted = passphrase.is_some(),
            "saved identity"
        );
        Ok(())
    }

    /// Loads an identity from a key file.
    ///
    /// A passphrase must be given exactly when the key is encrypted. If the
    /// file is readable by the group or others a warning is logged; use
    /// [`Identity::load_with_report`] to find out programmatically.
    ///
    /// # Errors
    /// One distinct variant per problem: [`Error::NotFound`], [`Error::Read`],
    /// [`Error::TooLarge`], [`Error::Malformed`], [`Error::UnsupportedVersion`],
    /// [`Error::UnsupportedAlgorithm`], [`Error::KdfParamsOutOfBounds`],
    /// [`Error::PassphraseRequired`], [`Error::PassphraseNotExpected`],
    /// [`Error::WrongPassphrase`], [`Error::Corrupted`], [`Error::PeerIdMismatch`].
    pub fn load(path: impl AsRef<Path>, passphrase: Option<&Passphrase>) -> Result<Self> {
        Self::load_with_report(path, passphrase).map(|(id, _)| id)
    }

    /// Like [`Identity::load`], also returning a [`LoadReport`].
    ///
    /// # Errors
    /// As [`Identity::load`].
    pub fn load_with_report(
        path: impl AsRef<Path>,
        passphrase: Option<&Passphrase>,
    ) -> Result<(Self, LoadReport)> {
        let path = path.as_ref();
        let file = fsio::read_bounded(path)?;
        let permissions_too_open = fsio::too_open(file.mode);
        if permissions_too_open {
            let mode = file.mode.unwrap_or_default();
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:03o}"),
                "identity file is accessible by group or others; \
                 restrict it with `chmod 600 {}`",
                path.display()
            );
        }
        let keyfile::Parsed {
            peer_id: recorded,
            key,
        } = keyfile::parse(path, &file.bytes)?;
        drop(file.bytes);

        let (secret, encrypted) = match (key, passphrase) {
            (StoredKey::Plain(_), Some(_)) => {
                return Err(Error::PassphraseNotExpected {
                    path: path.to_path_buf(),
                });
            }
            (StoredKey::Encrypted(_), None) => {
                return Err(Error::PassphraseRequired {
                    path: path.to_path_buf(),
                });
            }
            (StoredKey::Plain(secret), None) => (secret, false),
            (StoredKey::Encrypted(sealed), Some(pass)) => {
                (seal::unseal(&sealed, &recorded, pass, path)?, true)
            }
        };
        let keypair = Keypair::from_protobuf_encoding(&secret).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            reason: format!("its key cannot be decoded: {e}"),
        })?;
        drop(secret);
        let identity = Self::from_keypair(keypair).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if identity.peer_id() != recorded {
            return Err(Error::PeerIdMismatch {
                path: path.to_path_buf(),
                recorded: Box::new(recorded),
                actual: Box::new(identity.peer_id()),
            });
        }
        tracing::debug!(
            peer_id = %identity.peer_id(),
            path = %path.display(),
            encrypted,
            "loaded identity"
        );
        let report = LoadReport {
            created: false,
            encrypted,
            mode: file.mode,
            permissions_too_open,
        };
        Ok((identity, report))
    }

    /// Loads the identity at `path`, or, if there is no file there, generates
    /// a new one and saves it (encrypted if a passphrase is given).
    ///
    /// Any other load error is returned as it is: a damaged or unreadable file
    /// is never replaced by a new identity.
    ///
    /// # Errors
    /// As [`Identity::load`] (except [`Error::NotFound`]) and [`Identity::save`].
    pub fn load_or_create(path: impl AsRef<Path>, passphrase: Option<&Passphrase>) -> Result<Self> {
        Self::load_or_create_with(path, passphrase, &SaveOptions::default()).map(|(id, _)| id)
    }

    /// Like [`Identity::load_or_create`], with explicit [`SaveOptions`] for the
    /// create case ([`SaveOptions::overwrite`] is ignored: an existing file is
    /// never replaced) and a [`LoadReport`] whose `created` says which happened.
    ///
    /// # Errors
    /// As [`Identity::load_or_create`].
    pub fn load_or_create_with(
        path: impl AsRef<Path>,
        passphrase: Option<&Passphrase>,
        options: &SaveOptions,
    ) -> Result<(Self, LoadReport)> {
        let path = path.as_ref();
        match Self::load_with_report(path, passphrase) {
            Err(Error::NotFound { .. }) => {}
            other => return other,
        }
        let identity = Self::generate();
        match identity.save_with(path, passphrase, &options.overwrite(false)) {
            Ok(()) => {}
            // Someone else created it in the meantime: use theirs.
            Err(Error::AlreadyExists { .. }) => return Self::load_with_report(path, passphrase),
            Err(e) => return Err(e),
        }
        let mode = fsio::file_mode(path)?;
        let report = LoadReport {
            created: true,
            encrypted: passphrase.is_some(),
            mode,
            permissions_too_open: fsio::too_open(mode),
        };
        Ok((identity, report))
    }
}
