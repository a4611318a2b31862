//! `ecco id` and `ecco swarm-key`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use ecco::Identity;
use serde_json::json;

use crate::output;

/// Where identities live unless `--identity` says otherwise.
pub(crate) fn default_identity_path() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".ecco").join("identity.key")
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The key file (default: ~/.ecco/identity.key).
    #[arg(long)]
    identity: Option<PathBuf>,
}

/// Loads the identity at `path` (or the default), creating it if missing.
pub(crate) fn load(path: Option<PathBuf>) -> anyhow::Result<(Identity, PathBuf)> {
    let path = path.unwrap_or_else(default_identity_path);
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let identity = Identity::load_or_create(&path, None)
        .with_context(|| format!("identity {}", path.display()))?;
    Ok((identity, path))
}

pub(crate) fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let (identity, path) = load(args.identity)?;
    if json {
        output::json_line(&json!({
            "peer_id": identity.peer_id().to_base58(),
            "identity": path.display().to_string(),
        }))
    } else {
        println!("peer id   {}", identity.peer_id());
        println!("key file  {}", path.display());
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum SwarmKey {
    /// Prints a new private-mesh key (the standard swarm.key format).
    Generate,
}

pub(crate) fn swarm_key(cmd: SwarmKey, json: bool) -> anyhow::Result<()> {
    match cmd {
        SwarmKey::Generate => {
            let key = ecco::node::generate_swarm_key().to_string();
            if json {
                output::json_line(&json!({ "swarm_key": key }))
            } else {
                print!("{key}");
                if !key.ends_with('\n') {
                    println!();
                }
                Ok(())
            }
        }
    }
}
