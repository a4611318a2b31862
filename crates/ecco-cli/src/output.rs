//! Printing: one-line errors, JSON, and logs on stderr.

use std::process::ExitCode;

use serde::Serialize;

/// Logs go to stderr, quiet unless `RUST_LOG` says otherwise.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints the error as one line (its causes joined by ": ") and exits 1.
pub(crate) fn fail(e: &anyhow::Error) -> ExitCode {
    let line = format!("{e:#}").replace('\n', " ");
    eprintln!("error: {line}");
    ExitCode::FAILURE
}

/// Prints a value as one line of JSON.
pub(crate) fn json_line(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
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
