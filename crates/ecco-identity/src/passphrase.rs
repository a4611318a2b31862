//! [`Passphrase`]: a secret string that is wiped from memory when dropped.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A non-empty passphrase protecting a key file.
///
/// The text is kept in a buffer that is overwritten with zeros when the
/// `Passphrase` is dropped, and [`Debug`](fmt::Debug) never shows it. It is
/// used exactly as given (UTF-8 bytes, no trimming or Unicode normalisation).
///
/// ```
/// use ecco_identity::{Error, Passphrase};
///
/// let pass = Passphrase::new("correct horse battery staple")?;
/// assert_eq!(format!("{pass:?}"), "Passphrase(<redacted>)");
/// assert!(matches!(Passphrase::new(""), Err(Error::EmptyPassphrase)));
/// # Ok::<(), ecco_identity::Error>(())
/// ```
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps `passphrase`, taking ownership of its buffer (no copy is made).
    ///
    /// # Errors
    /// [`Error::EmptyPassphrase`] if it is empty.
    pub fn new(passphrase: impl Into<String>) -> Result<Self> {
        let s = Zeroizing::new(passphrase.into());
        if s.is_empty() {
            return Err(Error::EmptyPassphrase);
        }
        Ok(Self(s))
    }

    /// The passphrase's bytes, for key derivation.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl TryFrom<String> for Passphrase {
    type Error = Error;

    fn try_from(value: String) -> Result<Self> {
        Self::new(value)
    }
}

impl TryFrom<&str> for Passphrase {
    type Error = Error;

    fn try_from(value: &str) -> Result<Self> {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty() {
        assert!(matches!(Passphrase::new(""), Err(Error::EmptyPassphrase)));
        assert!(matches!(
            Passphrase::try_from(String::new()),
            Err(Error::EmptyPassphrase)
        ));
    }

    #[test]
    fn keeps_bytes_exactly_and_hides_them_from_debug() {
        let p = Passphrase::try_from(" pässword ").unwrap();
        assert_eq!(p.as_bytes(), " pässword ".as_bytes());
        assert!(!format!("{p:?}").contains("word"));
    }
}
