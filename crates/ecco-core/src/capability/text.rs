//! The capability text form: `TYPE NAME@VERSION [+feature] [key=value] [meta.path=value]`.
//!
//! For example `llm/chat gpt-small@1.2.0 +summarize price=0.002 language=[en, fr] meta.vendor=acme`.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::Capability;
use crate::text::{self, Lexer, ParseError, QuotedIfNeeded, TokenKind};
use crate::{ConstraintValue, Scalar, limits};

impl FromStr for Capability {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        text::check_length(input)?;
        let mut lexer = Lexer::new(input);
        let kind = word(&mut lexer, "a capability type such as `llm/chat`")?;
        let id = lexer.expect("NAME@VERSION")?;
        let TokenKind::Word(id_text) = id.kind else {
            return Err(ParseError::syntax(
                id.at,
                format!("expected NAME@VERSION, found {}", id.kind.describe()),
            ));
        };
        let Some((name, version)) = id_text.split_once('@') else {
            return Err(ParseError::syntax(
                id.at,
                format!("expected NAME@VERSION such as `gpt-small@1.0.0`, found `{id_text}`"),
            ));
        };
        let mut builder = Capability::builder(kind, name, version);
        let mut metadata = Map::new();

        while let Some(token) = lexer.next_token()? {
            let TokenKind::Word(w) = token.kind else {
                return Err(ParseError::syntax(
                    token.at,
                    format!(
                        "expected `+feature` or `key=value`, found {}",
                        token.kind.describe()
                    ),
                ));
            };
            if let Some(feature) = w.strip_prefix('+') {
                builder = builder.feature(feature);
                continue;
            }
            let eq = lexer.expect("`=` and a value")?;
            if eq.kind != TokenKind::Op("==") {
                return Err(ParseError::syntax(
                    eq.at,
                    format!("expected `=` after `{w}`, found {}", eq.kind.describe()),
                ));
            }
            if let Some(path) = w.strip_prefix("meta.") {
                let value = text::scalar(&lexer.expect("a metadata value")?)?;
                insert_path(&mut metadata, path, value, token.at)?;
            } else {
                builder = builder.constraint(w, constraint_value(&mut lexer)?);
            }
        }
        Ok(builder.metadata(Value::Object(metadata))?.build()?)
    }
}

fn word(lexer: &mut Lexer<'_>, what: &str) -> Result<String, ParseError> {
    let token = lexer.expect(what)?;
    match token.kind {
        TokenKind::Word(w) => Ok(w.to_owned()),
        other => Err(ParseError::syntax(
            token.at,
            format!("expected {what}, found {}", other.describe()),
        )),
    }
}

fn constraint_value(lexer: &mut Lexer<'_>) -> Result<ConstraintValue, ParseError> {
    let token = lexer.expect("a value")?;
    if token.kind != TokenKind::LBracket {
        return Ok(match text::scalar(&token)? {
            Scalar::Bool(b) => ConstraintValue::Bool(b),
            Scalar::Number(n) => ConstraintValue::Number(n),
            Scalar::Text(t) => ConstraintValue::Text(t),
        });
    }
    let items = list(lexer)?
        .into_iter()
        .map(|s| match s {
            Scalar::Text(t) => t,
            other => other.to_string(),
        })
        .collect();
    Ok(ConstraintValue::List(items))
}

/// Reads `a, b, c]` after a `[` has been consumed.
pub(crate) fn list(lexer: &mut Lexer<'_>) -> Result<Vec<Scalar>, ParseError> {
    let mut items = Vec::new();
    loop {
        let token = lexer.expect("a list element or `]`")?;
        if token.kind == TokenKind::RBracket && items.is_empty() {
            return Ok(items);
        }
        if items.len() == limits::MAX_LIST_LEN {
            return Err(ParseError::syntax(
                token.at,
                format!("a list holds at most {} elements", limits::MAX_LIST_LEN),
            ));
        }
        items.push(text::scalar(&token)?);
        let sep = lexer.expect("`,` or `]`")?;
        match sep.kind {
            TokenKind::Comma => {}
            TokenKind::RBracket => return Ok(items),
            other => {
                return Err(ParseError::syntax(
                    sep.at,
                    format!("expected `,` or `]`, found {}", other.describe()),
                ));
            }
        }
    }
}

fn insert_path(
    metadata: &mut Map<String, Value>,
    path: &str,
    value: Scalar,
    at: usize,
) -> Result<(), ParseError> {
    let segments: Vec<&str> = path.split('.').collect();
    if segments.iter().any(|s| s.is_empty()) || segments.len() > limits::MAX_METADATA_PATH_SEGMENTS
    {
        return Err(ParseError::syntax(
            at,
            format!(
                "`meta.{path}` is not a metadata path: use 1 to {} non-empty dot-separated keys",
                limits::MAX_METADATA_PATH_SEGMENTS
            ),
        ));
    }
    let (last, parents) = segments.split_last().unwrap_or((&"", &[]));
    let mut map = metadata;
    for segment in parents {
        let entry = map
            .entry((*segment).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        map = match entry {
            Value::Object(inner) => inner,
            _ => {
                return Err(ParseError::syntax(
                    at,
                    format!("`meta.{path}` goes inside `{segment}`, which already holds a value"),
                ));
            }
        };
    }
    if map.insert((*last).to_owned(), scalar_json(value)).is_some() {
        return Err(ParseError::syntax(
            at,
            format!("`meta.{path}` is set twice"),
        ));
    }
    Ok(())
}

pub(crate) fn scalar_json(value: Scalar) -> Value {
    match value {
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Number(n) => crate::value::json_number(n),
        Scalar::Text(t) => Value::String(t),
    }
}

/// Writes the text form. Metadata holding arrays or `null`, which the text
/// form cannot express, is written as its JSON text in a string.
impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}@{}", self.kind(), self.name(), self.version())?;
        for feature in self.features() {
            write!(f, " +{feature}")?;
        }
        for (key, value) in self.constraints() {
            write!(f, " {key}=")?;
            match value {
                ConstraintValue::Bool(b) => write!(f, "{b}")?,
                ConstraintValue::Number(n) => write!(f, "{n}")?,
                ConstraintValue::Text(t) => write!(f, "{}", QuotedIfNeeded(t))?,
                ConstraintValue::List(items) => {
                    f.write_str("[")?;
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        // List elements are always text; quote ones that read as numbers.
                        write!(f, "{}", QuotedIfNeeded(item))?;
                    }
                    f.write_str("]")?;
                }
            }
        }
        write_metadata(f, "meta", self.metadata())
    }
}

fn write_metadata(
    f: &mut fmt::Formatter<'_>,
    prefix: &str,
    map: &Map<String, Value>,
) -> fmt::Result {
    for (key, value) in map {
        let path = format!("{prefix}.{key}");
        match value {
            Value::Object(inner) if !inner.is_empty() => write_metadata(f, &path, inner)?,
            Value::Bool(b) => write!(f, " {path}={b}")?,
            Value::Number(n) => write!(f, " {path}={n}")?,
            Value::String(s) => write!(f, " {path}={}", QuotedIfNeeded(s))?,
            other => write!(f, " {path}={}", text::Quoted(&other.to_string()))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let c: Capability = "llm/chat gpt-small@1.2.0 +summarize +french price=0.002 \
                             context_window=32000 language=[en, fr] region=eu streaming=true \
                             meta.vendor=acme meta.model.family=\"small one\""
            .parse()
            .unwrap();
        assert_eq!(c.kind().as_str(), "llm/chat");
        assert_eq!(c.name(), "gpt-small");
        assert!(c.has_feature("summarize") && c.has_feature("french"));
        assert_eq!(c.constraint("price"), Some(&ConstraintValue::Number(0.002)));
        assert_eq!(
            c.constraint("language"),
            Some(&ConstraintValue::List(vec!["en".into(), "fr".into()]))
        );
        assert_eq!(
            c.constraint("streaming"),
            Some(&ConstraintValue::Bool(true))
        );
        assert_eq!(
            c.metadata_at(["model", "family"]),
            Some(&json!("small one"))
        );
    }

    #[test]
    fn display_round_trips() {
        let text = "llm/chat gpt-small@1.2.0-beta.1 +french +summarize language=[en, \"42\"] \
                    price=0.002 region=\"eu west\" meta.model.family=small meta.tier=3";
        let c: Capability = text.parse().unwrap();
        assert_eq!(c.to_string(), text);
        assert_eq!(c.to_string().parse::<Capability>().unwrap(), c);
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = "llm/chat gpt".parse::<Capability>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "at byte 9: expected NAME@VERSION such as `gpt-small@1.0.0`, found `gpt`"
        );
        let e = "llm/chat a@1.0.0 price".parse::<Capability>().unwrap_err();
        assert!(e.to_string().contains("expected `=` and a value"), "{e}");
        let e = "llm/chat a@1.0.0 price<3"
            .parse::<Capability>()
            .unwrap_err();
        assert!(matches!(e, ParseError::Syntax { at: 22, .. }), "{e}");
        let e = "llm/chat a@1.x".parse::<Capability>().unwrap_err();
        assert!(matches!(e, ParseError::Invalid(_)), "{e}");
        let e = "llm/chat a@1.0.0 meta.a=1 meta.a.b=2"
            .parse::<Capability>()
            .unwrap_err();
        assert!(e.to_string().contains("already holds a value"), "{e}");
    }
}
