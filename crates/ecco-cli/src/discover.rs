//! `ecco discover`: which agents match, with their scores.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ecco::Query;
use ecco::agent::{Agent, Ranked};
use ecco::node::Config;

use crate::mesh::{self, MeshArgs};
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The capability type, such as llm/chat or llm/*.
    #[arg(value_name = "TYPE")]
    kind: String,
    /// A required feature (repeatable).
    #[arg(long = "feature")]
    features: Vec<String>,
    /// A constraint, such as 'price<=0.01' or 'region in [eu, us]' (repeatable).
    #[arg(long = "where")]
    constraints: Vec<String>,
    #[command(flatten)]
    mesh: MeshArgs,
    /// How long to look for matches, such as 3s.
    #[arg(long, default_value = "3s")]
    wait: String,
    /// The key file to use (default: a new, ephemeral identity).
    #[arg(long)]
    identity: Option<PathBuf>,
}

/// The query the flags describe, in the query text syntax.
pub(crate) fn query(
    kind: &str,
    features: &[String],
    constraints: &[String],
) -> anyhow::Result<Query> {
    let mut text = kind.to_owned();
    for f in features {
        text.push_str(&format!(" +{f}"));
    }
    for c in constraints {
        text.push(' ');
        text.push_str(c);
    }
    text.parse()
        .map_err(|e| anyhow::anyhow!("query `{text}`: {e}"))
}

/// Starts a client agent (no capabilities) on the mesh the flags describe,
/// whose requests may last `calls`.
pub(crate) async fn client(
    mesh: &MeshArgs,
    identity: Option<PathBuf>,
    calls: Duration,
) -> anyhow::Result<Agent> {
    // A client listens on loopback only, unless told otherwise.
    let mut config = mesh.config(Config {
        discovery: Config::default().discovery,
        ..Config::loopback()
    })?;
    mesh::allow_calls_of(&mut config, calls);
    let mut builder = Agent::builder().config(config.clone());
    if identity.is_some() {
        builder = builder.identity(crate::id::load(identity)?.0);
    }
    let agent = builder.spawn().await.context("cannot start the client")?;
    mesh::reach_bootstrap(&agent, &config).await?;
    Ok(agent)
}

pub(crate) async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let query = query(&args.kind, &args.features, &args.constraints)?;
    let wait = crate::agent::duration(&args.wait)?;
    let agent = client(&args.mesh, args.identity, Duration::ZERO).await?;
    // Waits the whole time: there is no telling how many agents exist.
    let found = agent.discover(&query, usize::MAX, wait).await?;
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
