//! File-system helpers: bounded reads, permission checks, atomic no-clobber writes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::Generate;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The largest key file accepted; a real one is under 1 KiB.
pub const MAX_KEY_FILE_SIZE: u64 = 64 * 1024;

/// Mode of a saved key file: read and write for the owner only.
const FILE_MODE: u32 = 0o600;
/// Mode of directories created to hold a key file.
const DIR_MODE: u32 = 0o700;

/// A key file's contents and permission bits.
pub(crate) struct ReadFile {
    pub(crate) bytes: Zeroizing<Vec<u8>>,
    /// Permission bits (`None` where the platform has none).
    pub(crate) mode: Option<u32>,
}

/// Reads a key file, refusing anything larger than [`MAX_KEY_FILE_SIZE`]
/// before reading it into memory.
pub(crate) fn read_bounded(path: &Path) -> Result<ReadFile> {
    let read_err = |source: io::Error| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let not_found_or = |e: io::Error| read_error(path, e);
    let not_regular = || Error::Malformed {
        path: path.to_path_buf(),
        reason: "it is not a regular file".into(),
    };
    // Checked before opening too, so that a FIFO or device is never opened.
    if !fs::metadata(path).map_err(not_found_or)?.is_file() {
        return Err(not_regular());
    }
    let file = File::open(path).map_err(not_found_or)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let too_large = |size: u64| Error::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: MAX_KEY_FILE_SIZE,
    };
    if meta.len() > MAX_KEY_FILE_SIZE {
        return Err(too_large(meta.len()));
    }
    // Sized up front (the length is bounded) so the buffer never reallocates.
    let capacity = usize::try_from(MAX_KEY_FILE_SIZE + 1).unwrap_or(usize::MAX);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(MAX_KEY_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if len > MAX_KEY_FILE_SIZE {
        // The file grew between the size check and the read.
        return Err(too_large(len));
    }
    Ok(ReadFile {
        bytes,
        mode: mode_of(&meta),
    })
}

/// Whether permission bits let the group or others at the file.
pub(crate) fn too_open(mode: Option<u32>) -> bool {
    mode.is_some_and(|m| m & 0o077 != 0)
}

/// Reads just the permission bits of `path`.
pub(crate) fn file_mode(path: &Path) -> Result<Option<u32>> {
    fs::metadata(path)
        .map(|m| mode_of(&m))
        .map_err(|e| read_error(path, e))
}

/// [`Error::NotFound`] for a missing file, [`Error::Read`] otherwise.
fn read_error(path: &Path, source: io::Error) -> Error {
    if source.kind() == io::ErrorKind::NotFound {
        Error::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        Error::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(unix)]
fn mode_of(meta: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(meta.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_meta: &fs::Metadata) -> Option<u32> {
    None
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory (created with mode 0600), fsync, then a rename or hard link into
/// place, then fsync of the directory. Missing parent directories are created
/// with mode 0700.
///
/// Without `overwrite` an existing `path` (even a dangling symlink) is never
/// replaced: the final step is a hard link, which fails if the name exists.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    let write_err = |source: io::Error| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let already_exists = || Error::AlreadyExists {
        path: path.to_path_buf(),
    };
    let name = path.file_name().ok_or_else(|| {
        write_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path does not name a file",
        ))
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !overwrite && fs::symlink_metadata(path).is_ok() {
        return Err(already_exists());
    }
    create_dir_all(&dir).map_err(write_err)?;

    let suffix = u64::try_generate().map_err(|e| Error::Rng(e.to_string()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}-{suffix:016x}", std::process::id()));
    let tmp = TempFile(dir.join(tmp_name));

    let mut file = create_private(&tmp.0).map_err(write_err)?;
    file.write_all(bytes).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);

    if overwrite {
        fs::rename(&tmp.0, path).map_err(write_err)?;
    } else {
        match fs::hard_link(&tmp.0, path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(already_exists()),
            Err(e) => {
                // Some file systems have no hard links; fall back to a checked rename.
                tracing::debug!(error = %e, "hard link failed, falling back to rename");
                if fs::symlink_metadata(path).is_ok() {
                    return Err(already_exists());
                }
                fs::rename(&tmp.0, path).map_err(write_err)?;
            }
        }
    }
    drop(tmp); // removes the temporary name if it is still there
    sync_dir(&dir);
    Ok(())
}

/// Removes the temporary file when dropped, whether or not the write succeeded.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        match fs::remove_file(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %self.0.display(),
                error = %e,
                "could not remove temporary identity file"
            ),
        }
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    // The umask may have removed bits; make the mode exactly 0600.
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn create_dir_all(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

#[cfg(not(unix))]
fn create_dir_all(dir: &Path) -> io::Result<()> {
    let _ = DIR_MODE;
    fs::create_dir_all(dir)
}

/// Makes the new directory entry durable. Failure is logged, not fatal: the
/// file itself is already synced, and some file systems refuse directory fsync.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not fsync directory");
    }
    #[cfg(not(unix))]
    let _ = dir;
}
