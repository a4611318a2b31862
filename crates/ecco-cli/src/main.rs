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
    Id(id::Args),
    /// Private-mesh keys.
    #[command(subcommand, name = "swarm-key")]
    SwarmKey(id::SwarmKey),
    /// Runs an agent until interrupted (Ctrl-C).
    Agent(agent::Args),
    /// Lists the agents that match a capability query, with their scores.
    Discover(discover::Args),
    /// Asks matching agents and prints the aggregated answer.
    #[command(
        after_help = "Exit status: 0 with an answer; 1 without one (every agent \
        failed, none responded, or no consensus), when fewer than --min-agents answered, \
        or on any other error; 2 on a usage error. The report, --json included, is \
        printed whenever the query ran."
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
        Err(e) => {
            // Help and version go to stdout with success; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    output::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return output::fail(&anyhow::anyhow!("cannot start the runtime: {e}")),
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
        Err(e) => output::fail(&e),
    }
}
