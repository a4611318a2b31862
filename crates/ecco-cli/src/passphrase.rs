//! Passphrases of encrypted identity files: read from a file or the
//! environment, never from a flag's value (which `ps` would show).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use ecco::identity::Passphrase;

/// The environment variable read when no passphrase file is given.
pub(crate) const ENV: &str = "ECCO_PASSPHRASE";

/// The two ways to give a passphrase, for error messages.
pub(crate) const HOW: &str = "--passphrase-file FILE or the ECCO_PASSPHRASE environment variable";

/// The largest passphrase file read: anything bigger is not a passphrase
/// (and `--passphrase-file /dev/zero` must not fill the memory).
const MAX_FILE_SIZE: usize = 64 * 1024;

/// A passphrase and where it came from.
pub(crate) struct Given {
    pub(crate) passphrase: Passphrase,
    /// `ECCO_PASSPHRASE` or `file …`, to say which passphrase was wrong.
    pub(crate) from: String,
}

/// The passphrase in `file` (its content, less one trailing `\n` or
/// `\r\n`), else in `ECCO_PASSPHRASE`; `None` when neither is given. An
/// empty passphrase is an error.
pub(crate) fn read(file: Option<&Path>) -> anyhow::Result<Option<Given>> {
    match file {
        Some(path) => from_file(path).map(Some),
        None => from_env(),
    }
}

/// The passphrase in `file` (its content, less one trailing `\n` or
/// `\r\n`); empty is an error. A file that the group or others can read
/// is used, with a warning, as a key file is.
pub(crate) fn from_file(path: &Path) -> anyhow::Result<Given> {
    // Sized up front so the buffer never moves, leaving no copy behind.
    let mut text = String::with_capacity(MAX_FILE_SIZE + 1);
    let limit = u64::try_from(MAX_FILE_SIZE + 1).unwrap_or(u64::MAX);
    std::fs::File::open(path)
        .and_then(|f| f.take(limit).read_to_string(&mut text))
        .with_context(|| format!("cannot read passphrase file {}", path.display()))?;
    if text.len() > MAX_FILE_SIZE {
        bail!(
            "passphrase file {} is larger than {MAX_FILE_SIZE} bytes: it cannot be a passphrase",
            path.display()
        );
    }
    crate::id::warn_if_shared(path, "passphrase file");
    strip_newline(&mut text);
    if text.is_empty() {
        bail!(
            "passphrase file {} is empty (one trailing newline is not part of the \
             passphrase): a passphrase must not be empty",
            path.display()
        );
    }
    Ok(Given {
        passphrase: Passphrase::new(text)?,
        from: format!("file {}", path.display()),
    })
}

fn from_env() -> anyhow::Result<Option<Given>> {
    let text = match std::env::var(ENV) {
        Ok(text) => text,
        Err(std::env::VarError::NotPresent) => return Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{ENV} is not valid UTF-8"),
    };
    if text.is_empty() {
        bail!("{ENV} is set but empty: a passphrase must not be empty (unset it to give none)");
    }
    Ok(Some(Given {
        passphrase: Passphrase::new(text)?,
        from: ENV.to_owned(),
    }))
}

/// Removes one trailing `\n` or `\r\n`: what an editor or `echo` adds.
fn strip_newline(text: &mut String) {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripped(text: &str) -> String {
        let mut text = text.to_owned();
        strip_newline(&mut text);
        text
    }

    #[test]
    fn only_one_trailing_newline_is_removed() {
        assert_eq!(stripped("pass\n"), "pass");
        assert_eq!(stripped("pass\r\n"), "pass");
        assert_eq!(stripped("pass\n\n"), "pass\n");
        assert_eq!(stripped("pass\r"), "pass\r");
        assert_eq!(stripped(" pass "), " pass ");
        assert_eq!(stripped("\n"), "");
    }
}
