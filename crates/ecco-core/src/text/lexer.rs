//! Splits the text syntax into tokens, remembering where each one starts.

use super::ParseError;

/// One token and its byte offset in the input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'a> {
    pub(crate) kind: TokenKind<'a>,
    pub(crate) at: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind<'a> {
    /// A run of word characters: `llm/*`, `+summarize`, `0.01`, `^1.2`.
    Word(&'a str),
    /// A double-quoted string, unescaped.
    Quoted(String),
    /// `==` (or `=`), `!=`, `<`, `<=`, `>`, `>=`.
    Op(&'static str),
    LBracket,
    RBracket,
    Comma,
}

impl TokenKind<'_> {
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Word(w) => format!("`{w}`"),
            Self::Quoted(s) => format!("the string {s:?}"),
            Self::Op(op) => format!("`{op}`"),
            Self::LBracket => "`[`".to_owned(),
            Self::RBracket => "`]`".to_owned(),
            Self::Comma => "`,`".to_owned(),
        }
    }
}

pub(crate) fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '[' | ']' | ',' | '"' | '<' | '>' | '=' | '!')
}

/// A token stream over one input.
pub(crate) struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(input: &'a str) -> Self {
        Self { input, pos: 0 }
    }

    /// Byte offset just past the last token read, for "end of input" errors.
    pub(crate) fn end(&self) -> usize {
        self.input.len()
    }

    pub(crate) fn next_token(&mut self) -> Result<Option<Token<'a>>, ParseError> {
        self.lex()
    }

    /// The next token, or an error naming what was expected.
    pub(crate) fn expect(&mut self, what: &str) -> Result<Token<'a>, ParseError> {
        self.next_token()?.ok_or_else(|| {
            ParseError::syntax(
                self.end(),
                format!("expected {what}, found the end of the input"),
            )
        })
    }

    fn lex(&mut self) -> Result<Option<Token<'a>>, ParseError> {
        let rest = &self.input[self.pos..];
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        let at = self.pos;
        let mut chars = trimmed.chars();
        let Some(first) = chars.next() else {
            return Ok(None);
        };
        let second = chars.next();
        let (kind, len) = match (first, second) {
            ('[', _) => (TokenKind::LBracket, 1),
            (']', _) => (TokenKind::RBracket, 1),
            (',', _) => (TokenKind::Comma, 1),
            ('<', Some('=')) => (TokenKind::Op("<="), 2),
            ('>', Some('=')) => (TokenKind::Op(">="), 2),
            ('=', Some('=')) => (TokenKind::Op("=="), 2),
            ('!', Some('=')) => (TokenKind::Op("!="), 2),
            ('<', _) => (TokenKind::Op("<"), 1),
            ('>', _) => (TokenKind::Op(">"), 1),
            ('=', _) => (TokenKind::Op("=="), 1),
            ('!', _) => {
                return Err(ParseError::syntax(at, "`!` must be followed by `=`"));
            }
            ('"', _) => {
                let (text, len) = quoted(trimmed, at)?;
                (TokenKind::Quoted(text), len)
            }
            _ => {
                let len = trimmed
                    .char_indices()
                    .find(|&(_, c)| !is_word_char(c))
                    .map_or(trimmed.len(), |(i, _)| i);
                (TokenKind::Word(&trimmed[..len]), len)
            }
        };
        self.pos += len;
        Ok(Some(Token { kind, at }))
    }
}

/// Reads a quoted string starting at `s[0] == '"'`; returns it and the bytes consumed.
fn quoted(s: &str, at: usize) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => match chars.next() {
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((j, other)) => {
                    return Err(ParseError::syntax(
                        at + j,
                        format!("unknown escape `\\{other}`; use \\\", \\\\, \\n or \\t"),
                    ));
                }
                None => break,
            },
            _ => out.push(c),
        }
    }
    Err(ParseError::syntax(
        at,
        "unterminated string: a `\"` is missing",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<TokenKind<'_>> {
        let mut lexer = Lexer::new(input);
        let mut out = Vec::new();
        while let Some(t) = lexer.next_token().unwrap() {
            out.push(t.kind);
        }
        out
    }

    #[test]
    fn operators_split_words_without_spaces() {
        assert_eq!(
            kinds("price<=0.01"),
            vec![
                TokenKind::Word("price"),
                TokenKind::Op("<="),
                TokenKind::Word("0.01")
            ]
        );
        assert_eq!(
            kinds("region=eu"),
            vec![
                TokenKind::Word("region"),
                TokenKind::Op("=="),
                TokenKind::Word("eu")
            ]
        );
    }

    #[test]
    fn lists_and_quotes() {
        assert_eq!(
            kinds(r#"language in [en, "fr \"x\""]"#),
            vec![
                TokenKind::Word("language"),
                TokenKind::Word("in"),
                TokenKind::LBracket,
                TokenKind::Word("en"),
                TokenKind::Comma,
                TokenKind::Quoted("fr \"x\"".to_owned()),
                TokenKind::RBracket,
            ]
        );
    }

    #[test]
    fn offsets_point_at_the_token() {
        let mut lexer = Lexer::new("  a  >= 3");
        assert_eq!(lexer.next_token().unwrap().unwrap().at, 2);
        assert_eq!(lexer.next_token().unwrap().unwrap().at, 5);
        assert_eq!(lexer.next_token().unwrap().unwrap().at, 8);
    }

    #[test]
    fn unterminated_string_is_an_error() {
        let err = Lexer::new("x == \"abc").next_token().and_then(|_| {
            let mut l = Lexer::new("x == \"abc");
            l.next_token()?;
            l.next_token()?;
            l.next_token()
        });
        assert!(
            matches!(err, Err(ParseError::Syntax { at: 5, .. })),
            "{err:?}"
        );
    }

    #[test]
    fn lone_bang_is_an_error() {
        let mut l = Lexer::new("a ! b");
        l.next_token().unwrap();
        assert!(matches!(
            l.next_token(),
            Err(ParseError::Syntax { at: 2, .. })
        ));
    }
}
