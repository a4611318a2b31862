//! `ecco`: run agents, discover them, ask them, and a demo for a first run.

// A command-line tool prints: that is its output, not logging.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod agent;
mod ask;
mod demo;
mod discover;
mod handlers;
mod id;
mod mesh;
mod output;
mod passphrase;
mod registry;
mod signal;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Ecco: a peer-to-peer network for AI agents.
#[derive(Debug, Parser)]
#[command(name = "ecco", version, about)]
struct Cli {
    /// Machine-readable JSON output instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Shows this machine's agent identity, creating it if missing.
    #[command(
        after_help = "An encrypted key file's passphrase comes from --passphrase-file FILE \
        (the file's content, less one trailing newline: \\n or \\r\\n) or else from the \
        ECCO_PASSPHRASE environment variable, never from a flag's value; `ecco agent`, and \
        `ecco discover` and `ecco ask` with --identity, read it the same way. Without a passphrase, `ecco id` \
        still shows an encrypted key's peer id; with one, a missing key file is created \
        encrypted."
    )]
    Id(id::Args),
    /// Private-mesh keys (secrets: keep them mode 0600).
    #[command(subcommand, name = "swarm-key")]
    SwarmKey(id::SwarmKey),
    /// Runs an agent until interrupted (Ctrl-C).
    Agent(agent::Args),
    /// Lists the agents that match a capability query, with their scores.
    #[command(
        after_help = "Exit status: 0 when the search ran (found or not); 1 on an error; \
        2 on a usage error. With --json, an error also prints {\"error\": …, \"kind\": …} \
        on stdout (kind: usage for a usage error, else error)."
    )]
    Discover(discover::Args),
    /// Asks matching agents and prints the aggregated answer.
    #[command(
        after_help = "Exit status: 0 with an answer; 1 without one (every agent \
        failed, none responded, or no consensus), when fewer than --min-agents answered, \
        or on any other error; 2 on a usage error. The report, --json included, is \
        printed whenever the query ran; with --json, an error before that (a usage error, \
        no matching agent) prints {\"error\": …, \"kind\": …} on stdout instead \
        (kind: usage, no_match when too few agents match, selection, node or error)."
    )]
    Ask(ask::Args),
    /// A local mesh of six agents, every strategy, and what happened.
    Demo(demo::Args),
    /// Run the registry: reputation, monitoring and analytics over HTTP.
    #[command(subcommand)]
    Registry(registry::Command),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_error(&e),
    };
    output::init_logging();
    // With --json, ask and discover also print their failures as JSON.
    let json_errors = cli.json && matches!(cli.command, Command::Ask(_) | Command::Discover(_));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return output::fail(
                &anyhow::anyhow!("cannot start the runtime: {e}"),
                json_errors,
            );
        }
    };
    let json = cli.json;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Id(args) => id::run(args, json),
            Command::SwarmKey(cmd) => id::swarm_key(cmd, json),
            Command::Agent(args) => agent::run(args, json).await,
            Command::Discover(args) => discover::run(args, json).await,
            Command::Ask(args) => ask::run(args, json).await,
            Command::Demo(args) => demo::run(args, json).await,
            Command::Registry(cmd) => registry::run(cmd, json).await,
        }
    });
    // Do not wait for tasks still running (a node's background work).
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => output::fail(&e, json_errors),
    }
}

/// Help and version go to stdout with success. Usage errors exit 2; a bad
/// flag value is one line (`error: invalid value …`), like every other
/// error; `--json ask` and `--json discover` also print it as JSON.
fn parse_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let code = u8::try_from(e.exit_code()).unwrap_or(output::USAGE_EXIT);
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::from(code);
    }
    let rendered = e.render().to_string();
    let first = rendered.split("\n\n").next().unwrap_or_default();
    let line = first.split_whitespace().collect::<Vec<_>>().join(" ");
    if e.kind() == ErrorKind::ValueValidation {
        eprintln!("{line}");
    } else {
        let _ = e.print();
    }
    if json_command(std::env::args().skip(1)) {
        let message = line.strip_prefix("error: ").unwrap_or(&line);
        let _ = output::json_line(&serde_json::json!({ "error": message, "kind": "usage" }));
    }
    ExitCode::from(code)
}

/// Whether the arguments are those of `--json ask` or `--json discover`:
/// `--json` is the only global flag, so the command is the first argument
/// that is not a flag.
fn json_command(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.take_while(|a| a != "--").collect();
    let command = args.iter().find(|a| !a.starts_with('-'));
    args.iter().any(|a| a == "--json") && command.is_some_and(|c| c == "ask" || c == "discover")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> impl Iterator<Item = String> {
        args.iter()
            .map(|&a| a.to_owned())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn json_errors_are_for_ask_and_discover_with_json() {
        assert!(json_command(strings(&["--json", "ask", "x/y"])));
        assert!(json_command(strings(&["discover", "x/y", "--json"])));
        assert!(!json_command(strings(&["ask", "x/y"])));
        assert!(!json_command(strings(&["--json", "agent"])));
        assert!(!json_command(strings(&["ask", "x/y", "--", "--json"])));
    }
}
