//! `ecco id` and `ecco swarm-key`.

use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use ecco::identity::{KdfParams, LoadReport, SaveOptions};
use ecco::{Identity, PeerId};
use serde_json::json;

use crate::output;
use crate::passphrase::{self, Given};

/// Where identities live unless `--identity` says otherwise.
pub(crate) fn default_identity_path() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".ecco").join("identity.key")
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The key file (default: ~/.ecco/identity.key).
    #[arg(long)]
    identity: Option<PathBuf>,
    /// A file holding the key's passphrase, less one trailing newline
    /// (default: $ECCO_PASSPHRASE). Not needed to show an encrypted key's
    /// peer id; given, it is checked.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Encrypts the existing plaintext key file with the passphrase given
    /// (--passphrase-file or ECCO_PASSPHRASE).
    #[arg(long, conflicts_with_all = ["decrypt", "new_passphrase_file"])]
    encrypt: bool,
    /// Changes the passphrase of the encrypted key file to the one in FILE
    /// (less one trailing newline); the current passphrase comes from
    /// --passphrase-file or ECCO_PASSPHRASE. The file is rewritten
    /// atomically, with the default key-derivation parameters.
    #[arg(long, value_name = "FILE", conflicts_with = "decrypt")]
    new_passphrase_file: Option<PathBuf>,
    /// Removes the encryption of the encrypted key file, given its
    /// passphrase (--passphrase-file or ECCO_PASSPHRASE).
    #[arg(long)]
    decrypt: bool,
}

/// A key file and where its passphrase is.
#[derive(Debug)]
pub(crate) struct Key {
    /// The key file (default: ~/.ecco/identity.key).
    pub(crate) path: Option<PathBuf>,
    /// The passphrase file (default: `ECCO_PASSPHRASE`, if set).
    pub(crate) passphrase_file: Option<PathBuf>,
}

impl From<Option<PathBuf>> for Key {
    fn from(path: Option<PathBuf>) -> Self {
        Self {
            path,
            passphrase_file: None,
        }
    }
}

/// Loads the identity `key` names (or the default), creating it if missing:
/// encrypted when a passphrase is given.
pub(crate) fn load(key: impl Into<Key>) -> anyhow::Result<(Identity, PathBuf)> {
    let key = key.into();
    let path = key.path.unwrap_or_else(default_identity_path);
    let given = passphrase::read(key.passphrase_file.as_deref())?;
    let (identity, _) = open(&path, given.as_ref())?;
    Ok((identity, path))
}

/// Loads or creates the key file at `path` (new encrypted keys get the
/// default key-derivation parameters).
fn open(path: &Path, given: Option<&Given>) -> anyhow::Result<(Identity, LoadReport)> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Identity::load_or_create_with(path, given.map(|g| &g.passphrase), &SaveOptions::new())
        .map_err(|e| explain(e, path, given))
}

/// The identity library's error, saying what to do where it is about the
/// passphrase.
fn explain(e: ecco::identity::Error, path: &Path, given: Option<&Given>) -> anyhow::Error {
    use ecco::identity::Error;
    let shown = path.display();
    match (e, given) {
        (Error::PassphraseRequired { .. }, _) => anyhow!(
            "identity file {shown} is encrypted: give its passphrase with {}",
            passphrase::HOW
        ),
        (Error::WrongPassphrase { .. }, Some(g)) => anyhow!(
            "wrong passphrase for identity file {shown} (read from {})",
            g.from
        ),
        (Error::PassphraseNotExpected { .. }, Some(g)) => anyhow!(
            "identity file {shown} is not encrypted, but a passphrase was given (from {}): \
             give none, or encrypt the key with `ecco id --encrypt`",
            g.from
        ),
        (e, _) => anyhow::Error::new(e).context(format!("identity {shown}")),
    }
}

/// Logs that a secret file is open to the group or others, as the identity
/// library does for the key files it loads.
pub(crate) fn warn_if_shared(path: &Path, what: &str) {
    if ecco::identity::permissions_too_open(path).unwrap_or(false) {
        tracing::warn!(
            path = %path.display(),
            "{what} is accessible by group or others; restrict it with `chmod 600 {}`",
            path.display()
        );
    }
}

pub(crate) fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let path = args.identity.unwrap_or_else(default_identity_path);
    let given = passphrase::read(args.passphrase_file.as_deref())?;
    let (peer_id, encrypted) = if args.encrypt {
        encrypt(&path, given.as_ref())?
    } else if let Some(file) = &args.new_passphrase_file {
        let new = passphrase::from_file(file)?;
        reencrypt(&path, given.as_ref(), Some(&new))?
    } else if args.decrypt {
        reencrypt(&path, given.as_ref(), None)?
    } else {
        show(&path, given.as_ref())?
    };
    if json {
        output::json_line(&json!({
            "peer_id": peer_id.to_base58(),
            "identity": path.display().to_string(),
            "encrypted": encrypted,
        }))
    } else {
        println!("peer id   {peer_id}");
        println!("key file  {}", path.display());
        println!("encrypted {}", if encrypted { "yes" } else { "no" });
        Ok(())
    }
}

/// The key's peer id and whether it is encrypted. An encrypted key without
/// a passphrase is only inspected (the file records its peer id in clear);
/// otherwise the key is loaded, which checks it and any passphrase, or
/// created if missing.
fn show(path: &Path, given: Option<&Given>) -> anyhow::Result<(PeerId, bool)> {
    if given.is_none()
        && let Ok(info) = ecco::identity::inspect(path)
        && info.encrypted
    {
        warn_if_shared(path, "identity file");
        return Ok((info.peer_id, true));
    }
    let (identity, report) = open(path, given)?;
    Ok((identity.peer_id(), report.encrypted))
}

/// Encrypts the plaintext key file at `path` in place (atomically).
fn encrypt(path: &Path, given: Option<&Given>) -> anyhow::Result<(PeerId, bool)> {
    let Some(given) = given else {
        bail!(
            "--encrypt needs the new passphrase: give it with {}",
            passphrase::HOW
        );
    };
    match ecco::identity::inspect(path) {
        Ok(info) if info.encrypted => bail!(
            "identity file {} is already encrypted; refusing to encrypt it again",
            path.display()
        ),
        Ok(_) => {}
        Err(ecco::identity::Error::NotFound { .. }) => bail!(
            "identity file {} not found: nothing to encrypt (`ecco id` with a passphrase \
             creates an encrypted key)",
            path.display()
        ),
        Err(e) => return Err(explain(e, path, None)),
    }
    let identity = Identity::load(path, None).map_err(|e| explain(e, path, None))?;
    identity
        .save_with(
            path,
            Some(&given.passphrase),
            &SaveOptions::new().overwrite(true),
        )
        .with_context(|| format!("cannot encrypt identity file {}", path.display()))?;
    Ok((identity.peer_id(), true))
}

/// Rewrites the encrypted key file at `path` (atomically) encrypted with
/// `new`, or in plaintext without it, after checking the current passphrase.
/// A new passphrase keeps the file's key-derivation parameters where they
/// are stronger than the default and gets the default's elsewhere: rotating
/// a passphrase is also when older, weaker parameters go.
fn reencrypt(
    path: &Path,
    given: Option<&Given>,
    new: Option<&Given>,
) -> anyhow::Result<(PeerId, bool)> {
    let (flag, verb) = match new {
        Some(_) => ("--new-passphrase-file", "change its passphrase"),
        None => ("--decrypt", "decrypt"),
    };
    let Some(given) = given else {
        bail!(
            "{flag} needs the key's current passphrase: give it with {}",
            passphrase::HOW
        );
    };
    let kdf = match ecco::identity::inspect(path) {
        Ok(info) if info.encrypted => info.kdf,
        Ok(_) => bail!(
            "identity file {} is not encrypted: nothing to {verb} (`ecco id --encrypt` \
             encrypts it)",
            path.display()
        ),
        Err(ecco::identity::Error::NotFound { .. }) => bail!(
            "identity file {} not found: nothing to {verb}",
            path.display()
        ),
        Err(e) => return Err(explain(e, path, None)),
    };
    let identity =
        Identity::load(path, Some(&given.passphrase)).map_err(|e| explain(e, path, Some(given)))?;
    let kdf = kdf.map_or(KdfParams::DEFAULT, |old| old.at_least(KdfParams::DEFAULT));
    identity
        .save_with(
            path,
            new.map(|g| &g.passphrase),
            &SaveOptions::new().overwrite(true).kdf_params(kdf),
        )
        .with_context(|| format!("cannot rewrite identity file {}", path.display()))?;
    Ok((identity.peer_id(), new.is_some()))
}

#[derive(Debug, Subcommand)]
pub(crate) enum SwarmKey {
    /// Prints a new private-mesh key (the standard swarm.key format).
    ///
    /// The key is a secret: printed to a file (`> swarm.key`) that the group
    /// or others could read, that file is made mode 0600 (said on stderr).
    Generate {
        /// Writes the key to FILE, with mode 0600, instead of printing it.
        /// An existing FILE is kept unless --force.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replaces an existing --out file.
        #[arg(long, requires = "out")]
        force: bool,
    },
}

pub(crate) fn swarm_key(cmd: SwarmKey, json: bool) -> anyhow::Result<()> {
    match cmd {
        SwarmKey::Generate { out, force } => {
            let mut key = ecco::node::generate_swarm_key().to_string();
            if !key.ends_with('\n') {
                key.push('\n');
            }
            if let Some(path) = out {
                write_private(&path, &key, force)?;
                return if json {
                    output::json_line(&json!({ "swarm_key_file": path.display().to_string() }))
                } else {
                    println!("swarm key written to {} (mode 0600)", path.display());
                    Ok(())
                };
            }
            protect_stdout()?;
            if json {
                output::json_line(&json!({ "swarm_key": key }))
            } else {
                print!("{key}");
                Ok(())
            }
        }
    }
}

/// Writes a new file that only its owner may read: mode 0600 from its
/// creation. An existing file is an error, or removed first with `force`.
fn write_private(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    let shown = path.display();
    if force {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot replace {shown}"));
            }
            _ => {}
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow!("{shown} already exists; refusing to replace it (--force replaces it)")
            } else {
                anyhow::Error::new(e).context(format!("cannot create {shown}"))
            }
        })?;
    if let Err(e) = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
    {
        // A partial key is no key.
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("cannot write {shown}"));
    }
    Ok(())
}

/// Makes stdout mode 0600 when it is a regular file (a redirection) that
/// the group or others could read, before a secret is printed there; a
/// terminal or a pipe is left alone.
fn protect_stdout() -> anyhow::Result<()> {
    // Stdout closed or unreadable: the print itself will fail, if anything.
    let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return Ok(());
    };
    let file = std::fs::File::from(fd);
    let Ok(meta) = file.metadata() else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_file() || mode & 0o077 == 0 {
        return Ok(());
    }
    file.set_permissions(Permissions::from_mode(0o600))
        .context(
            "stdout is a file that group or others can read, and its permissions cannot be \
             restricted; refusing to print the key there (use --out FILE)",
        )?;
    eprintln!(
        "the file on stdout was readable by group or others (mode {mode:04o}); \
         made it mode 0600, as it holds a secret key"
    );
    Ok(())
}
