//! The compact text syntax shared by capabilities and queries.
//!
//! The grammar is documented in `docs/CAPABILITIES.md`; this module holds the
//! tokenizer, the value grammar both sides use, and the error type.

mod lexer;

pub(crate) use lexer::{Lexer, Token, TokenKind, is_word_char};

use std::fmt;

use crate::{Scalar, ValidationError, limits};

/// Why a text query or capability could not be parsed.
///
/// Displays with the byte offset of the problem, for example
/// `at byte 14: expected a value after `<=`, found the end of the input`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// The text does not follow the grammar.
    #[error("at byte {at}: {message}")]
    Syntax {
        /// Byte offset of the problem in the input.
        at: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// The text parsed but what it describes is invalid.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
}

impl ParseError {
    pub(crate) fn syntax(at: usize, message: impl Into<String>) -> Self {
        Self::Syntax {
            at,
            message: message.into(),
        }
    }
}

/// Rejects inputs longer than [`limits::MAX_TEXT_SYNTAX_LEN`].
pub(crate) fn check_length(input: &str) -> Result<(), ParseError> {
    if input.len() > limits::MAX_TEXT_SYNTAX_LEN {
        return Err(ParseError::syntax(
            limits::MAX_TEXT_SYNTAX_LEN,
            format!(
                "the text is {} bytes long; the limit is {}",
                input.len(),
                limits::MAX_TEXT_SYNTAX_LEN
            ),
        ));
    }
    Ok(())
}

/// Reads one scalar: `true`, `false`, a number, a bare word or a quoted string.
pub(crate) fn scalar(token: &Token<'_>) -> Result<Scalar, ParseError> {
    match &token.kind {
        TokenKind::Quoted(s) => Ok(Scalar::Text(s.clone())),
        TokenKind::Word(w) => Ok(bare_scalar(w)),
        other => Err(ParseError::syntax(
            token.at,
            format!("expected a value, found {}", other.describe()),
        )),
    }
}

fn bare_scalar(word: &str) -> Scalar {
    match word {
        "true" => Scalar::Bool(true),
        "false" => Scalar::Bool(false),
        _ => match word.parse::<f64>() {
            // Words such as `inf` or `nan` parse as floats; they are not numbers here.
            Ok(n) if n.is_finite() && looks_numeric(word) => Scalar::Number(n),
            _ => Scalar::Text(word.to_owned()),
        },
    }
}

fn looks_numeric(word: &str) -> bool {
    word.bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
}

/// Whether a bare word would read back as exactly this text.
pub(crate) fn is_bare_text(text: &str) -> bool {
    !text.is_empty()
        && text.chars().all(is_word_char)
        && !matches!(text.as_bytes()[0], b'+' | b'~')
        && matches!(bare_scalar(text), Scalar::Text(_))
        && !matches!(text, "in" | "not" | "version")
        && !text.starts_with("meta.")
}

/// Writes text so that the lexer reads it back unchanged.
pub(crate) struct QuotedIfNeeded<'a>(pub(crate) &'a str);

impl fmt::Display for QuotedIfNeeded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_bare_text(self.0) {
            f.write_str(self.0)
        } else {
            Quoted(self.0).fmt(f)
        }
    }
}

/// Writes text as a quoted string with `\"` and `\\` escapes.
pub(crate) struct Quoted<'a>(pub(crate) &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                _ => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(t) => QuotedIfNeeded(t).fmt(f),
        }
    }
}
