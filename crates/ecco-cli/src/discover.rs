//! `ecco discover`: which agents match, with their scores.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ecco::agent::{Agent, Ranked};
use ecco::capability::TypePattern;
use ecco::node::Config;
use ecco::query::Constraint;
use ecco::{Invalid, ParseError, Query};

use crate::mesh::{self, MeshArgs};
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The capability type, such as llm/chat or llm/*.
    #[arg(value_name = "TYPE", value_parser = type_pattern)]
    kind: String,
    /// A required feature: one name, such as cited or +cited (repeatable).
    #[arg(long = "feature", value_name = "NAME", value_parser = required_feature)]
    features: Vec<String>,
    /// One condition, such as 'price<=0.01', 'region in [eu, us]',
    /// 'version ^1.2' or 'meta.vendor==acme' (repeatable: all must hold).
    #[arg(long = "where", value_name = "CONDITION", value_parser = condition)]
    constraints: Vec<String>,
    #[command(flatten)]
    mesh: MeshArgs,
    /// How long to look for matches at most, such as 3s. With mDNS off, the
    /// listing ends sooner: once the DHT lookup (and registry search) is
    /// over and has found a match.
    #[arg(long, default_value = "3s", value_parser = mesh::duration)]
    wait: Duration,
    /// The key file to use (default: a new, ephemeral identity).
    #[arg(long)]
    identity: Option<PathBuf>,
    /// A file holding the key's passphrase, less one trailing newline
    /// (default: $ECCO_PASSPHRASE).
    #[arg(long, value_name = "FILE", requires = "identity")]
    passphrase_file: Option<PathBuf>,
}

/// Checks a TYPE argument: one type pattern, such as `llm/chat`, `llm/*` or `*`.
pub(crate) fn type_pattern(text: &str) -> Result<String, String> {
    if text.split_whitespace().nth(1).is_some() {
        return Err(
            "not one type pattern such as llm/chat, llm/* or *: it contains a space \
                    (features and conditions go in --feature and --where)"
                .to_owned(),
        );
    }
    match text.parse::<TypePattern>() {
        Ok(_) => Ok(text.to_owned()),
        Err(e) => Err(format!(
            "not a type pattern such as llm/chat, llm/* or *: it {}",
            e.problem
        )),
    }
}

/// Checks a `--feature`: one feature name; a leading `+` (as in the query
/// text) is accepted and dropped.
pub(crate) fn required_feature(text: &str) -> Result<String, String> {
    feature(text, '+')
}

/// Checks a `--prefer`: one feature name; a leading `~` (as in the query
/// text) is accepted and dropped.
pub(crate) fn preferred_feature(text: &str) -> Result<String, String> {
    feature(text, '~')
}

fn feature(text: &str, sign: char) -> Result<String, String> {
    let name = text.strip_prefix(sign).unwrap_or(text);
    let Err(e) = Query::builder("*").require(name).build() else {
        return Ok(name.to_owned());
    };
    // Offsets in what was typed, sign included.
    let problem = match e.problem {
        Invalid::BadChar {
            found, at, allowed, ..
        } => format!(
            "contains {found:?} at byte {}; allowed are {allowed}",
            at + (text.len() - name.len())
        ),
        other => other.to_string(),
    };
    Err(format!("not one feature name: it {problem}{}", hint(name)))
}

/// Suggests `--where` when a value looks like several terms or a condition.
fn hint(text: &str) -> &'static str {
    let condition = text.chars().any(|c| "<>=!".contains(c));
    if condition || text.split_whitespace().nth(1).is_some() {
        " (one per flag; conditions such as 'price<=0.01' go in --where)"
    } else {
        ""
    }
}

const NOT_A_CONDITION: &str = "not a query condition such as price<=0.01";

/// Checks a `--where`: exactly one condition of the query text, a
/// constraint (`price<=0.01`, `region in [eu, us]`), a version requirement
/// (`version ^1.2`) or a metadata filter (`meta.vendor==acme`, hard with a
/// leading `+`). Gives back its canonical text.
pub(crate) fn condition(text: &str) -> Result<String, String> {
    let constraint_error = match text.parse::<Constraint>() {
        Ok(c) => return Ok(c.to_string()),
        Err(e) => e,
    };
    let first = text.trim_start();
    let word: String = first
        .chars()
        .take_while(|c| c.is_alphanumeric() || "+~._-".contains(*c))
        .collect();
    let other_term = word == "version" || word.starts_with("meta.") || word.starts_with("+meta.");
    if !other_term {
        if let Some(name) = word.strip_prefix('+').or_else(|| word.strip_prefix('~'))
            && word.len() == first.trim_end().len()
        {
            let flag = if word.starts_with('+') {
                "--feature"
            } else {
                "--prefer"
            };
            return Err(format!("a feature, not a condition: use {flag} {name}"));
        }
        return Err(format!("{NOT_A_CONDITION}: {constraint_error}"));
    }
    // Parsed behind a type pattern, as part of a query.
    const PREFIX: &str = "* ";
    let query: Query = format!("{PREFIX}{text}").parse().map_err(|e| match e {
        ParseError::Syntax { at, message } => format!(
            "{NOT_A_CONDITION}: at byte {}: {message}",
            at.saturating_sub(PREFIX.len())
        ),
        ParseError::Invalid(e) => format!("{NOT_A_CONDITION}: {e}"),
    })?;
    let terms = query.required().len()
        + query.preferred().len()
        + query.constraints().len()
        + query.metadata().len()
        + usize::from(query.version().is_some());
    // Two version terms make one requirement: count the words too.
    let versions = text
        .split(|c: char| c.is_whitespace() || "<>=!^~\"".contains(c))
        .filter(|w| *w == "version")
        .count();
    if terms != 1 || versions > 1 {
        return Err("more than one condition (give each its own --where)".to_owned());
    }
    let canonical = query.to_string();
    Ok(canonical
        .strip_prefix(PREFIX)
        .unwrap_or(&canonical)
        .to_owned())
}

/// The query the flags describe; each part has been checked on its own
/// (by [`type_pattern`], [`required_feature`], [`preferred_feature`] and
/// [`condition`]), so that only their combination can fail here.
pub(crate) fn query(
    kind: &str,
    required: &[String],
    preferred: &[String],
    conditions: &[String],
) -> anyhow::Result<Query> {
    if let Some(both) = preferred.iter().find(|f| required.contains(f)) {
        return Err(output::usage(format!(
            "--feature {both} and --prefer {both}: a feature is either required or preferred"
        )));
    }
    let mut text = kind.to_owned();
    // The same feature twice is the same requirement.
    for f in required.iter().collect::<BTreeSet<_>>() {
        text.push_str(&format!(" +{f}"));
    }
    for f in preferred.iter().collect::<BTreeSet<_>>() {
        text.push_str(&format!(" ~{f}"));
    }
    for c in conditions {
        text.push(' ');
        text.push_str(c);
    }
    text.parse()
        .map_err(|e| output::usage(format!("the flags make an invalid query (`{text}`): {e}")))
}

/// Starts a client agent (no capabilities) on the mesh the flags describe,
/// whose requests may last `calls`.
pub(crate) async fn client(
    mesh: &MeshArgs,
    identity: impl Into<crate::id::Key>,
    calls: Duration,
) -> anyhow::Result<Agent> {
    // A client listens on loopback only, unless told otherwise.
    let mut config = mesh.config(Config {
        discovery: Config::default().discovery,
        ..Config::loopback()
    })?;
    mesh::allow_calls_of(&mut config, calls);
    let mut builder = Agent::builder().config(config.clone());
    let key = identity.into();
    if key.path.is_some() {
        builder = builder.identity(crate::id::load(key)?.0);
    }
    let agent = builder.spawn().await.context("cannot start the client")?;
    mesh::reach_bootstrap(&agent, &config).await?;
    Ok(agent)
}

pub(crate) async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let query = query(&args.kind, &args.features, &[], &args.constraints)?;
    let key = crate::id::Key {
        path: args.identity,
        passphrase_file: args.passphrase_file,
    };
    let agent = client(&args.mesh, key, Duration::ZERO).await?;
    let found = agent.discover_all(&query, args.wait).await?;
    print(&found, json)?;
    agent.shutdown().await;
    Ok(())
}

fn print(found: &[Ranked], json: bool) -> anyhow::Result<()> {
    if json {
        return output::json_line(&found);
    }
    if found.is_empty() {
        println!("no matching agent found");
        return Ok(());
    }
    println!("{:<6} {:<54} capability", "score", "agent");
    for r in found {
        println!(
            "{:<6.3} {:<54} {}",
            r.score,
            r.peer.to_base58(),
            r.capability
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feature_is_one_name() {
        assert_eq!(required_feature("cited").as_deref(), Ok("cited"));
        assert_eq!(required_feature("+cited").as_deref(), Ok("cited"));
        assert_eq!(preferred_feature("~fast").as_deref(), Ok("fast"));
        let e = required_feature("fast price>1").unwrap_err();
        assert!(
            e.contains("not one feature name") && e.contains("--where"),
            "{e}"
        );
        // Offsets are in what was typed.
        let e = required_feature("+x y").unwrap_err();
        assert!(e.contains("' ' at byte 2"), "{e}");
        assert!(required_feature("+").is_err());
        assert!(required_feature("++x").is_err());
        assert!(preferred_feature("+x").is_err());
    }

    #[test]
    fn a_condition_is_exactly_one() {
        let ok = |text: &str| condition(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(ok("price<=0.01"), "price <= 0.01");
        assert_eq!(ok("region in [eu, us]"), "region in [eu, us]");
        assert!(ok("version ^1.2").starts_with("version"));
        assert!(ok("meta.vendor==acme").starts_with("meta.vendor"));
        assert!(ok("+meta.tier >= 2").starts_with("+meta.tier"));
        for (text, expected) in [
            ("price<<3", "at byte 6"),
            ("price<=1 region==eu", "unexpected"),
            ("fast price>1", "expected an operator after `fast`"),
            ("+cited", "use --feature cited"),
            ("~cited", "use --prefer cited"),
            ("version ^1 version <2", "more than one condition"),
            ("version ^1 price<3", "more than one condition"),
            ("meta.vendor==acme +fast", "more than one condition"),
            ("meta.vendor==", "at byte 13"),
            ("", "expected"),
        ] {
            let e = condition(text).expect_err(text);
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn the_type_is_one_pattern() {
        assert!(type_pattern("llm/*").is_ok());
        assert!(type_pattern("*").is_ok());
        let e = type_pattern("text/* +x").unwrap_err();
        assert!(e.contains("--feature"), "{e}");
        assert!(type_pattern("Bad").is_err());
    }

    #[test]
    fn the_flags_make_one_query() {
        let strings = |v: &[&str]| v.iter().map(|&s| s.to_owned()).collect::<Vec<_>>();
        let q = query(
            "llm/*",
            &strings(&["a", "a"]),
            &strings(&["b"]),
            &strings(&["price <= 0.01", "version ^1"]),
        )
        .unwrap();
        assert_eq!(q.required().len(), 1);
        assert_eq!(q.preferred().len(), 1);
        assert_eq!(q.constraints().len(), 1);
        assert!(q.version().is_some());
        let e = query("llm/*", &strings(&["a"]), &strings(&["a"]), &[]).unwrap_err();
        assert!(e.downcast_ref::<output::Usage>().is_some(), "{e}");
        assert!(e.to_string().contains("--feature a and --prefer a"), "{e}");
    }
}
