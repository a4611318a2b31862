//! `ecco registry serve`: run the registry service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use ecco_registry::Config;
use serde::Deserialize;
use serde_json::json;

use crate::output;

/// Registry commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the registry over HTTP (flags, then environment, then the TOML file).
    Serve(ServeArgs),
}

/// `ecco registry serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// A TOML file with any of: listen, database_url, redis_url, read_token,
    /// admin_token, heartbeat_interval, stale_after, offline_after ("90s"),
    /// catalog_check ("1s"), retention ("90d"), public_addresses_only (true).
    #[arg(long, env = "ECCO_REGISTRY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7700].
    #[arg(long, env = "ECCO_REGISTRY_LISTEN")]
    listen: Option<SocketAddr>,
    /// sqlite:PATH or postgres://… [default: sqlite:ecco-registry.db].
    #[arg(long, env = "ECCO_DATABASE_URL")]
    database_url: Option<String>,
    /// Redis URL, to share nonces, rate limits and live events between instances.
    #[arg(long, env = "ECCO_REDIS_URL")]
    redis_url: Option<String>,
    /// Require `Authorization: Bearer <token>` for reads.
    #[arg(long, env = "ECCO_REGISTRY_READ_TOKEN", hide_env_values = true)]
    read_token: Option<String>,
    /// Enable the admin endpoints with this operator token.
    #[arg(long, env = "ECCO_REGISTRY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Keep and serve only public addresses (no loopback, LAN or link-local
    /// ones): for a registry open to the internet.
    #[arg(long, env = "ECCO_REGISTRY_PUBLIC_ADDRESSES_ONLY")]
    public_addresses_only: bool,
}

/// The TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    redis_url: Option<String>,
    read_token: Option<String>,
    admin_token: Option<String>,
    heartbeat_interval: Option<String>,
    stale_after: Option<String>,
    offline_after: Option<String>,
    catalog_check: Option<String>,
    retention: Option<String>,
    public_addresses_only: Option<bool>,
}

pub(crate) async fn run(command: Command, json_out: bool) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args, json_out).await,
    }
}

/// Flags and environment over the file over the defaults.
fn config(args: ServeArgs) -> anyhow::Result<Config> {
    let file: File = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("invalid registry config {}", path.display()))?
        }
        None => File::default(),
    };
    let mut config = Config::default();
    if let Some(listen) = args.listen.or(file.listen) {
        config.listen = listen;
    }
    if let Some(url) = args.database_url.or(file.database_url) {
        config.database_url = url;
    }
    config.redis_url = args.redis_url.or(file.redis_url).filter(|u| !u.is_empty());
    config.read_token = args
        .read_token
        .or(file.read_token)
        .filter(|t| !t.is_empty());
    config.admin_token = args
        .admin_token
        .or(file.admin_token)
        .filter(|t| !t.is_empty());
    let span = |name: &str, text: Option<String>, into: &mut Duration| -> anyhow::Result<()> {
        if let Some(text) = text {
            *into = crate::agent::duration(&text)
                .with_context(|| format!("{name} in the registry config"))?;
        }
        Ok(())
    };
    span(
        "heartbeat_interval",
        file.heartbeat_interval,
        &mut config.heartbeat_interval,
    )?;
    span("stale_after", file.stale_after, &mut config.stale_after)?;
    span(
        "offline_after",
        file.offline_after,
        &mut config.offline_after,
    )?;
    span(
        "catalog_check",
        file.catalog_check,
        &mut config.catalog_check,
    )?;
    span("retention", file.retention, &mut config.retention)?;
    config.public_addresses_only =
        args.public_addresses_only || file.public_addresses_only.unwrap_or(false);
    anyhow::ensure!(
        config.stale_after < config.offline_after,
        "stale_after ({:?}) must be shorter than offline_after ({:?})",
        config.stale_after,
        config.offline_after
    );
    Ok(config)
}

async fn serve(args: ServeArgs, json_out: bool) -> anyhow::Result<()> {
    let config = config(args)?;
    let database = redact(&config.database_url);
    let redis = config.redis_url.as_deref().map(redact);
    let running = ecco_registry::serve(config)
        .await
        .context("cannot start the registry")?;
    let stop = crate::signal::Stop::watch()?;
    if json_out {
        output::json_line(&json!({ "url": running.url(), "database": database, "redis": redis }))?;
    } else {
        println!("registry listening on {}", running.url());
        println!("  database {database}");
        if let Some(redis) = &redis {
            println!("  redis {redis}");
        }
        println!("  API /v1, OpenAPI /openapi.json, metrics /metrics. Ctrl-C to stop.");
    }
    stop.requested().await;
    running.shutdown().await;
    Ok(())
}

/// A URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{ServeArgs, config, redact};
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn configured(args: &[&str]) -> ecco_registry::Config {
        let cli =
            Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).unwrap();
        config(cli.serve).unwrap()
    }

    #[test]
    fn public_addresses_only_comes_from_the_flag_or_the_file() {
        assert!(!configured(&[]).public_addresses_only, "off by default");
        assert!(configured(&["--public-addresses-only"]).public_addresses_only);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("registry.toml");
        std::fs::write(&file, "public_addresses_only = true\n").unwrap();
        let from_file = configured(&["--config", file.to_str().unwrap()]);
        assert!(from_file.public_addresses_only);
        std::fs::write(&file, "public_addresses_only = \"yes\"\n").unwrap();
        let cli = Cli::try_parse_from(["serve", "--config", file.to_str().unwrap()]).unwrap();
        let refused = config(cli.serve).unwrap_err();
        assert!(
            format!("{refused:#}").contains("public_addresses_only"),
            "{refused:#}"
        );
    }

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redact("postgres://u:secret@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("sqlite:ecco-registry.db"), "sqlite:ecco-registry.db");
    }
}
