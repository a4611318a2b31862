//! The query text form, for the CLI and for people.
//!
//! ```text
//! query     := pattern clause*
//! clause    := '+' feature                    required feature
//!            | '~' feature                    preferred feature
//!            | key predicate                  constraint (hard filter)
//!            | 'version' version-spec         semver requirement (repeatable: all must hold)
//!            | ['+'] 'meta.' path predicate   metadata filter (soft; '+' makes it hard)
//! predicate := op value | 'in' list | 'not' 'in' list
//! op        := '==' | '=' | '!=' | '<' | '<=' | '>' | '>='
//! ```

use std::fmt;
use std::str::FromStr;

use super::{
    Builder, Constraint, MetadataFilter, Op, Operand, Predicate, Query, parse_requirement,
};
use crate::capability::text_list;
use crate::text::{self, Lexer, ParseError, Quoted, Token, TokenKind};

impl FromStr for Query {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        text::check_length(input)?;
        let mut lexer = Lexer::new(input);
        let first = lexer.expect("a capability type pattern such as `llm/*`")?;
        let TokenKind::Word(pattern) = first.kind else {
            return Err(ParseError::syntax(
                first.at,
                format!(
                    "expected a type pattern such as `llm/*`, found {}",
                    first.kind.describe()
                ),
            ));
        };
        let mut builder = Query::builder(pattern);
        let mut version: Vec<String> = Vec::new();

        while let Some(token) = lexer.next_token()? {
            let TokenKind::Word(word) = token.kind else {
                return Err(ParseError::syntax(
                    token.at,
                    format!(
                        "expected `+feature`, `~feature`, `key op value`, `version ..` or `meta.path op value`, found {}",
                        token.kind.describe()
                    ),
                ));
            };
            let (required, rest) = match word.strip_prefix('+') {
                Some(rest) => (true, rest),
                None => (false, word),
            };
            if let Some(path) = rest.strip_prefix("meta.") {
                let predicate = predicate(&mut lexer, word)?;
                builder.metadata.push(MetadataFilter {
                    path: path.to_owned(),
                    predicate,
                    required,
                });
            } else if required {
                builder = builder.require(rest);
            } else if let Some(feature) = word.strip_prefix('~') {
                builder = builder.prefer(feature);
            } else if word == "version" {
                version.push(version_spec(&mut lexer)?);
            } else {
                let predicate = predicate(&mut lexer, word)?;
                builder.constraints.push(Constraint {
                    key: word.to_owned(),
                    predicate,
                });
            }
        }
        if !version.is_empty() {
            builder.version = Some(version.join(", "));
        }
        build(builder)
    }
}

fn build(builder: Builder) -> Result<Query, ParseError> {
    Ok(builder.build()?)
}

/// Parses a single predicate such as `price<=0.01`, for `--where` flags.
pub(super) fn parse_constraint(input: &str) -> Result<Constraint, ParseError> {
    text::check_length(input)?;
    let mut lexer = Lexer::new(input);
    let first = lexer.expect("a constraint such as `price<=0.01`")?;
    let TokenKind::Word(key) = first.kind else {
        return Err(ParseError::syntax(
            first.at,
            format!("expected a constraint key, found {}", first.kind.describe()),
        ));
    };
    let predicate = predicate(&mut lexer, key)?;
    if let Some(extra) = lexer.next_token()? {
        return Err(ParseError::syntax(
            extra.at,
            format!("unexpected {} after the constraint", extra.kind.describe()),
        ));
    }
    let constraint = Constraint {
        key: key.to_owned(),
        predicate,
    };
    constraint.validate("constraint")?;
    Ok(constraint)
}

/// Reads `op value`, `in [..]` or `not in [..]` after `subject`.
fn predicate(lexer: &mut Lexer<'_>, subject: &str) -> Result<Predicate, ParseError> {
    let what = format!("an operator after `{subject}` (==, !=, <, <=, >, >=, in, not in)");
    let token = lexer.expect(&what)?;
    let op = match &token.kind {
        TokenKind::Op(symbol) => Op::from_symbol(symbol),
        TokenKind::Word("in") => Some(Op::In),
        TokenKind::Word("not") => {
            let next = lexer.expect("`in` after `not`")?;
            if next.kind != TokenKind::Word("in") {
                return Err(ParseError::syntax(
                    next.at,
                    format!("expected `in` after `not`, found {}", next.kind.describe()),
                ));
            }
            Some(Op::NotIn)
        }
        _ => None,
    };
    let Some(op) = op else {
        return Err(ParseError::syntax(
            token.at,
            format!("expected {what}, found {}", token.kind.describe()),
        ));
    };
    let value_token = lexer.expect(&format!("a value after `{op}`"))?;
    let value = match (op, &value_token.kind) {
        (Op::In | Op::NotIn, TokenKind::LBracket) => Operand::Many(text_list(lexer)?),
        (Op::In | Op::NotIn, other) => {
            return Err(ParseError::syntax(
                value_token.at,
                format!(
                    "expected a list such as `[en, fr]` after `{op}`, found {}",
                    other.describe()
                ),
            ));
        }
        _ => Operand::One(text::scalar(&value_token)?),
    };
    Ok(Predicate { op, value })
}

/// Reads a semver requirement: `"^1.2, <1.5"`, `^1.2`, `>= 1.2` or `1.2` (caret).
fn version_spec(lexer: &mut Lexer<'_>) -> Result<String, ParseError> {
    let token = lexer.expect("a version requirement such as `^1.2` or `>=1.2`")?;
    let spec = match token.kind {
        TokenKind::Quoted(s) => s,
        TokenKind::Word(w) => w.to_owned(),
        TokenKind::Op(symbol) => {
            let version = lexer.expect(&format!("a version after `{symbol}`"))?;
            let Token {
                kind: TokenKind::Word(v),
                ..
            } = version
            else {
                return Err(ParseError::syntax(
                    version.at,
                    format!(
                        "expected a version after `{symbol}`, found {}",
                        version.kind.describe()
                    ),
                ));
            };
            // semver writes equality as a single `=`.
            let symbol = if symbol == "==" { "=" } else { symbol };
            format!("{symbol}{v}")
        }
        other => {
            return Err(ParseError::syntax(
                token.at,
                format!("expected a version requirement, found {}", other.describe()),
            ));
        }
    };
    parse_requirement(&spec)?;
    Ok(spec)
}

/// Writes the canonical text form; parsing it gives back an equal query.
impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        for feature in &self.required {
            write!(f, " +{feature}")?;
        }
        for feature in &self.preferred {
            write!(f, " ~{feature}")?;
        }
        for c in &self.constraints {
            write!(f, " {c}")?;
        }
        if let Some(req) = &self.version {
            write!(f, " version {}", Quoted(&req.to_string()))?;
        }
        for m in &self.metadata {
            write!(f, " {m}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scalar;

    #[test]
    fn parses_every_clause() {
        let q: Query = "llm/* +summarize ~french price<=0.01 context_window >= 32000 \
                        language in [en, fr] region==eu tier not in [free] streaming=true \
                        version>=1.2 version <2 meta.vendor == acme +meta.model.family != big"
            .parse()
            .unwrap();
        assert_eq!(q.kind().to_string(), "llm/*");
        assert!(q.required().contains("summarize"));
        assert!(q.preferred().contains("french"));
        assert_eq!(q.constraints().len(), 6);
        assert_eq!(q.constraints()[2].predicate.op, Op::In);
        assert_eq!(q.constraints()[4].predicate.op, Op::NotIn);
        assert_eq!(
            q.constraints()[5].predicate.value,
            Operand::One(Scalar::Bool(true))
        );
        let req = q.version().unwrap();
        assert!(req.matches(&semver::Version::new(1, 5, 0)));
        assert!(!req.matches(&semver::Version::new(2, 0, 0)));
        assert_eq!(q.metadata().len(), 2);
        assert!(!q.metadata()[0].required);
        assert!(q.metadata()[1].required);
        assert_eq!(q.metadata()[1].path, "model.family");
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "*",
            "llm/chat +a +b ~c price <= 0.01 language in [en, \"42\", 3] version \">=1.2.0, <2\"",
            "tool/translate region != \"eu west\" +meta.tier >= 2 meta.vendor == acme",
        ] {
            let q: Query = text.parse().unwrap();
            assert_eq!(q.to_string().parse::<Query>().unwrap(), q, "{text} -> {q}");
        }
    }

    #[test]
    fn errors_are_located() {
        let cases = [
            ("", "at byte 0: expected a capability type pattern"),
            (
                "llm/* price",
                "at byte 11: expected an operator after `price`",
            ),
            ("llm/* price <=", "at byte 14: expected a value after `<=`"),
            (
                "llm/* price ~ 3",
                "at byte 12: expected an operator after `price`",
            ),
            (
                "llm/* lang in en",
                "at byte 14: expected a list such as `[en, fr]`",
            ),
            ("llm/* lang in [en fr]", "at byte 18: expected `,` or `]`"),
            ("llm/* lang not en", "at byte 15: expected `in` after `not`"),
            ("llm/* version ^x", "version: \"^x\" is not valid semver"),
            ("llm/* price <= cheap", "operator `<=` cannot take a string"),
            ("Llm/*", "type: contains 'L' at byte 0"),
            ("llm/* [", "at byte 6: expected `+feature`"),
        ];
        for (input, expected) in cases {
            let e = input.parse::<Query>().unwrap_err().to_string();
            assert!(
                e.starts_with(expected) || e.contains(expected),
                "{input:?}: {e}"
            );
        }
    }

    #[test]
    fn single_constraints_parse() {
        let c: Constraint = "price<=0.01".parse().unwrap();
        assert_eq!(c.key, "price");
        assert_eq!(c.predicate.op, Op::Le);
        assert!("price<=0.01 extra".parse::<Constraint>().is_err());
        assert!("version>=1".parse::<Constraint>().is_err());
    }

    #[test]
    fn overlong_input_is_refused() {
        let long = format!("llm/* {}", "+a ".repeat(10_000));
        assert!(
            long.parse::<Query>()
                .unwrap_err()
                .to_string()
                .contains("the limit is")
        );
    }
}
