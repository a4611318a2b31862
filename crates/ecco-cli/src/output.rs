//! Printing: one-line errors, JSON, and logs on stderr.

use std::fmt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// The log filter when `RUST_LOG` is not set: warnings, except libp2p
/// Kademlia's, which warns "Failed to trigger bootstrap: No known peers" on
/// every node started without a bootstrap peer (the first agent of a mesh,
/// any client without `--bootstrap`).
pub(crate) const DEFAULT_LOG_FILTER: &str = "warn,libp2p_kad=error";

/// Logs go to stderr, quiet unless `RUST_LOG` says otherwise.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// A usage error: a flag's value, or a combination of flags, that cannot
/// work. Exits 2, like the errors clap reports itself.
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A [`Usage`] error.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// The exit status of usage errors.
pub(crate) const USAGE_EXIT: u8 = 2;

/// The error as one line: its causes joined by ": ", each cause skipped when
/// the text before already says it (an error whose message includes its
/// source), and no empty cause leaving a dangling ": ".
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        // "cannot listen on …: " when the reason was empty.
        let text = text.trim().trim_end_matches(':').trim_end();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    line
}

/// What kind of failure `e` is, for `--json` error objects.
fn kind(e: &anyhow::Error) -> &'static str {
    use ecco::agent::QueryError;
    use ecco::selection::SelectionError;
    if e.downcast_ref::<Usage>().is_some() {
        return "usage";
    }
    match e.downcast_ref::<QueryError>() {
        Some(QueryError::Selection(SelectionError::TooFewAgents { .. })) => "no_match",
        Some(QueryError::Selection(_)) => "selection",
        Some(QueryError::Node(_)) => "node",
        None => "error",
    }
}

/// Prints the error as one line on stderr and exits 1, or 2 for a
/// [`Usage`] error. With `json`, and when the command has printed nothing on
/// stdout yet, also prints `{"error": …, "kind": …}` there, so that a script
/// reading stdout always gets one JSON value.
pub(crate) fn fail(e: &anyhow::Error, json: bool) -> ExitCode {
    let line = one_line(e);
    eprintln!("error: {line}");
    if json && !PRINTED.load(Ordering::Relaxed) {
        let _ = json_line(&serde_json::json!({ "error": line, "kind": kind(e) }));
    }
    if e.downcast_ref::<Usage>().is_some() {
        ExitCode::from(USAGE_EXIT)
    } else {
        ExitCode::FAILURE
    }
}

/// Whether a JSON value has been printed on stdout.
static PRINTED: AtomicBool = AtomicBool::new(false);

/// Prints a value as one line of JSON.
pub(crate) fn json_line(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    PRINTED.store(true, Ordering::Relaxed);
    Ok(())
}

/// A JSON value on one line, cut to `max` characters for tables.
pub(crate) fn brief(value: &serde_json::Value, max: usize) -> String {
    let text = value.to_string();
    if text.chars().count() <= max {
        return text;
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// A share in `[0, 1]` as a percentage: `50%`, `66.7%`.
pub(crate) fn percent(share: f64) -> String {
    let text = format!("{:.1}", share * 100.0);
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose message already includes its source, as thiserror's
    /// `#[error("…: {source}")]` makes them.
    #[derive(Debug)]
    struct Wrapping(std::io::Error);

    impl fmt::Display for Wrapping {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "cannot listen on 127.0.0.1:80: {}", self.0)
        }
    }

    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(Wrapping(io)).context("cannot start the registry");
        assert_eq!(
            one_line(&e),
            "cannot start the registry: cannot listen on 127.0.0.1:80: Address already in use"
        );
    }

    #[test]
    fn an_empty_cause_leaves_no_dangling_separator() {
        let e = anyhow::anyhow!("cannot listen on /ip4/127.0.0.1/tcp/1: ").context("agent");
        assert_eq!(one_line(&e), "agent: cannot listen on /ip4/127.0.0.1/tcp/1");
        let e = anyhow::anyhow!("").context("cannot start");
        assert_eq!(one_line(&e), "cannot start");
    }

    #[test]
    fn distinct_causes_are_all_kept() {
        let e = anyhow::anyhow!("unable to open database file").context("cannot open x.db");
        assert_eq!(
            one_line(&e),
            "cannot open x.db: unable to open database file"
        );
    }

    #[test]
    fn usage_errors_are_told_apart() {
        assert_eq!(kind(&usage("--timeout must be more than 0")), "usage");
        assert_eq!(kind(&anyhow::anyhow!("other")), "error");
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.6), "60%");
        assert_eq!(percent(2.0 / 3.0), "66.7%");
        assert_eq!(percent(1.0), "100%");
    }

    #[test]
    fn the_default_filter_silences_kademlias_bootstrap_warning_only() {
        assert!(DEFAULT_LOG_FILTER.split(',').any(|d| d == "warn"));
        assert!(DEFAULT_LOG_FILTER.contains("libp2p_kad=error"));
        assert!(tracing_subscriber::EnvFilter::try_new(DEFAULT_LOG_FILTER).is_ok());
    }
}
