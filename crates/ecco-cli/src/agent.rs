//! `ecco agent`: runs an agent from a TOML file and/or flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ecco::Capability;
use ecco::agent::Agent;
use ecco::node::Config;
use serde::Deserialize;
use serde_json::json;

use crate::handlers::{self, Spec};
use crate::mesh::{self, MeshArgs};
use crate::output;

/// The handler timeout when neither the flag nor the file gives one.
const DEFAULT_HANDLER_TIMEOUT: &str = "30s";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A TOML file describing the agent (flags add to it and override it).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    mesh: MeshArgs,
    /// The key file (default: ~/.ecco/identity.key).
    #[arg(long)]
    identity: Option<PathBuf>,
    /// A file holding the key's passphrase, less one trailing newline
    /// (default: the --config file's `passphrase_file`, else $ECCO_PASSPHRASE).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// A capability in text form, such as "llm/chat gpt@1.0.0 +summarize price=0.002" (repeatable).
    #[arg(long = "capability")]
    capabilities: Vec<String>,
    /// The handler of the flags' capabilities: echo, exec:CMD or http:URL.
    #[arg(long, default_value = "echo")]
    handler: String,
    /// Each request's deadline in the handler, such as 30s (default: the
    /// file's, else 30s).
    // No clap default: it would hide the file's value.
    #[arg(long)]
    handler_timeout: Option<String>,
    /// Keeps handler failures' details (an exec command's stderr and exit
    /// status, an HTTP handler's error body) in this agent's log: askers
    /// get only "the handler failed" and a reference to the log line. For
    /// agents open to strangers (default: the file's `private_errors`).
    #[arg(long, overrides_with = "no_private_errors")]
    private_errors: bool,
    /// Gives askers failures' details even if the file says
    /// `private_errors = true` (the last of the two flags wins).
    #[arg(long, overrides_with = "private_errors")]
    no_private_errors: bool,
    /// A registry to register with and heartbeat to (http:// or https://).
    #[arg(long, env = "ECCO_REGISTRY")]
    registry: Option<String>,
    /// A PEM file of root certificates to trust for an https registry,
    /// beyond the system's (a private CA).
    #[arg(long)]
    registry_ca: Option<PathBuf>,
    /// The name shown in the registry.
    #[arg(long)]
    name: Option<String>,
}

/// The TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    mesh: Option<String>,
    #[serde(default)]
    listen: Vec<String>,
    #[serde(default)]
    bootstrap: Vec<String>,
    swarm_key: Option<PathBuf>,
    mdns: Option<bool>,
    identity: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    handler_timeout: Option<String>,
    private_errors: Option<bool>,
    registry: Option<String>,
    registry_ca: Option<PathBuf>,
    name: Option<String>,
    #[serde(default, rename = "capability")]
    capabilities: Vec<FileCapability>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCapability {
    /// The text form.
    spec: String,
    /// echo, exec:CMD or http:URL.
    #[serde(default = "echo")]
    handler: String,
}

fn echo() -> String {
    "echo".to_owned()
}

pub(crate) fn duration(text: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("`{text}` is not a duration (such as 500ms, 30s, 2m)"))
}

fn capability(text: &str) -> anyhow::Result<Capability> {
    text.parse()
        .map_err(|e| anyhow::anyhow!("capability `{text}`: {e}"))
}

/// The node configuration and the handler timeout: flags win over the
/// file; lists add up.
fn settings(args: &Args, file: &File) -> anyhow::Result<(Config, Duration)> {
    let mut mesh_args = args.mesh.clone();
    if mesh_args.mesh.is_none() {
        mesh_args.mesh = file.mesh.clone();
    }
    if mesh_args.listen.is_empty() {
        mesh_args.listen = file.listen.clone();
    }
    mesh_args.bootstrap.extend(file.bootstrap.iter().cloned());
    if mesh_args.swarm_key.is_none() {
        mesh_args.swarm_key = file.swarm_key.clone();
    }
    if file.mdns == Some(false) && !mesh_args.mdns {
        mesh_args.no_mdns = true;
    }
    let mut config = mesh_args.config(Config::default())?;
    let timeout = duration(
        args.handler_timeout
            .as_deref()
            .or(file.handler_timeout.as_deref())
            .unwrap_or(DEFAULT_HANDLER_TIMEOUT),
    )?;
    if timeout.is_zero() {
        bail!("--handler-timeout must be above zero: every request would fail at once");
    }
    crate::mesh::allow_calls_of(&mut config, timeout);
    Ok((config, timeout))
}

/// Whether failures' details stay in the log: a flag, else the file's
/// `private_errors`, else not.
fn private_errors(args: &Args, file: &File) -> bool {
    if args.private_errors || args.no_private_errors {
        return args.private_errors;
    }
    file.private_errors == Some(true)
}

/// Reads the TOML file. Relative paths in it (handler commands, the swarm
/// key, the identity, the registry CA) are relative to the file's directory,
/// wherever `ecco agent` is started; the directory is returned.
fn read_file(path: &Path) -> anyhow::Result<(File, PathBuf)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut file: File = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().replace('\n', " ")))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    for p in [
        &mut file.swarm_key,
        &mut file.identity,
        &mut file.passphrase_file,
        &mut file.registry_ca,
    ]
    .into_iter()
    .flatten()
    {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    }
    Ok((file, dir))
}

pub(crate) async fn run(args: Args, json_out: bool) -> anyhow::Result<()> {
    let (file, dir) = match &args.config {
        Some(path) => read_file(path)?,
        None => (File::default(), PathBuf::from(".")),
    };
    let (config, timeout) = settings(&args, &file)?;

    let mut offered: Vec<(Capability, Spec)> = Vec::new();
    for c in &file.capabilities {
        offered.push((
            capability(&c.spec)?,
            c.handler.parse::<Spec>()?.in_dir(&dir),
        ));
    }
    let flag_handler: Spec = args.handler.parse()?;
    for c in &args.capabilities {
        offered.push((capability(c)?, flag_handler.clone()));
    }
    if offered.is_empty() {
        bail!(
            "an agent needs at least one capability (--capability or [[capability]] in --config)"
        );
    }
    let private = private_errors(&args, &file);
    let (identity, _) = crate::id::load(crate::id::Key {
        path: args.identity.or(file.identity),
        passphrase_file: args.passphrase_file.or(file.passphrase_file),
    })?;
    let mut builder = Agent::builder()
        .identity(identity)
        .config(config.clone())
        .private_errors(private);
    if let Some(url) = args.registry.or(file.registry) {
        builder = builder.registry(url);
    }
    if let Some(path) = args.registry_ca.or(file.registry_ca) {
        let pem = std::fs::read(&path)
            .with_context(|| format!("cannot read the registry CA file {}", path.display()))?;
        builder = builder.registry_root_certificates(pem);
    }
    if let Some(name) = args.name.or(file.name) {
        builder = builder.name(name);
    }
    for (capability, spec) in &offered {
        builder = builder
            .capability(capability.clone())
            .shared_handler(capability.kind().as_str(), handlers::build(spec, timeout));
    }
    let agent = builder.spawn().await?;
    mesh::reach_bootstrap(&agent, &config).await?;
    let stop = crate::signal::Stop::watch()?;
    let addrs: Vec<String> = agent
        .addresses()
        .await?
        .iter()
        .map(ToString::to_string)
        .collect();
    if json_out {
        output::json_line(&json!({
            "peer_id": agent.peer_id().to_base58(),
            "listen": addrs,
            "capabilities": offered.iter().map(|(c, _)| c.to_string()).collect::<Vec<_>>(),
            "registry": agent.registry(),
        }))?;
    } else {
        println!("agent {}", agent.peer_id());
        for a in &addrs {
            println!("  listening on {a}");
        }
        for (c, spec) in &offered {
            println!("  offers {c}  ({spec})");
        }
        if let Some(url) = agent.registry() {
            println!("  registers with {url}");
        }
        println!("Ctrl-C to stop.");
    }
    stop.requested().await;
    agent.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn settled(flags: &[&str], file: &str) -> (Config, Duration) {
        let args = Cli::try_parse_from(std::iter::once("agent").chain(flags.iter().copied()))
            .unwrap()
            .args;
        settings(&args, &toml::from_str(file).unwrap()).unwrap()
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = "mesh = \"file\"\nmdns = true\nhandler_timeout = \"10s\"\n\
                    listen = [\"/ip4/127.0.0.1/tcp/1\"]";
        let flags = [
            "--handler-timeout",
            "5s",
            "--mesh",
            "flag",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/2",
        ];
        let (config, timeout) = settled(&flags, file);
        assert_eq!(timeout, Duration::from_secs(5));
        assert_eq!(config.mesh, "flag");
        assert!(!config.discovery.mdns);
        assert_eq!(config.listen, vec!["/ip4/127.0.0.1/tcp/2".parse().unwrap()]);

        let (config, timeout) = settled(&[], file);
        assert_eq!(timeout, Duration::from_secs(10));
        assert_eq!(config.mesh, "file");
        assert!(config.discovery.mdns);
        assert_eq!(config.listen, vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()]);

        let (_, timeout) = settled(&[], "");
        assert_eq!(timeout, Duration::from_secs(30), "the default");
    }

    #[test]
    fn mdns_follows_the_last_flag_then_the_file() {
        let mdns = |flags: &[&str], file: &str| settled(flags, file).0.discovery.mdns;
        assert!(mdns(&[], ""), "on by default");
        assert!(!mdns(&[], "mdns = false"));
        assert!(mdns(&["--mdns"], "mdns = false"), "the flag wins");
        assert!(!mdns(&["--no-mdns"], "mdns = true"));
        assert!(!mdns(&["--mdns", "--no-mdns"], ""));
        assert!(mdns(&["--no-mdns", "--mdns"], "mdns = false"));
    }

    #[test]
    fn errors_are_private_by_the_flag_or_the_file() {
        let private = |flags: &[&str], file: &str| {
            let args = Cli::try_parse_from(std::iter::once("agent").chain(flags.iter().copied()))
                .unwrap()
                .args;
            private_errors(&args, &toml::from_str(file).unwrap())
        };
        assert!(!private(&[], ""), "off by default");
        assert!(private(&["--private-errors"], ""));
        assert!(private(&[], "private_errors = true"));
        assert!(!private(&[], "private_errors = false"));
        assert!(private(&["--private-errors"], "private_errors = false"));
        assert!(!private(&["--no-private-errors"], "private_errors = true"));
        assert!(private(
            &["--no-private-errors", "--private-errors"],
            "private_errors = false"
        ));
        assert!(!private(
            &["--private-errors", "--no-private-errors"],
            "private_errors = true"
        ));
    }

    #[test]
    fn a_zero_handler_timeout_is_refused() {
        let args = Cli::try_parse_from(["agent", "--handler-timeout", "0s"])
            .unwrap()
            .args;
        let e = settings(&args, &File::default()).unwrap_err();
        assert!(e.to_string().contains("above zero"), "{e}");
        let e = settings(
            &Cli::try_parse_from(["agent"]).unwrap().args,
            &toml::from_str("handler_timeout = \"0ms\"").unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("above zero"), "{e}");
    }

    #[test]
    fn a_long_handler_timeout_is_not_cut_short_by_the_request_timeout() {
        let (config, timeout) = settled(&["--handler-timeout", "2m"], "");
        assert_eq!(timeout, Duration::from_secs(120));
        assert!(config.limits.request_timeout > timeout);
        // A short one leaves the node's default alone.
        let (config, _) = settled(&["--handler-timeout", "1s"], "");
        assert_eq!(
            config.limits.request_timeout,
            Config::default().limits.request_timeout
        );
    }

    #[test]
    fn paths_in_the_file_are_relative_to_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "swarm_key = \"keys/swarm.key\"\nidentity = \"id.key\"\n\
             registry_ca = \"/etc/ca.pem\"\n\
             [[capability]]\nspec = \"x/y n@1.0.0\"\nhandler = \"exec:python3 h.py\"\n",
        )
        .unwrap();
        let (file, base) = read_file(&path).unwrap();
        assert_eq!(base, dir.path());
        assert_eq!(file.swarm_key, Some(dir.path().join("keys/swarm.key")));
        assert_eq!(file.identity, Some(dir.path().join("id.key")));
        assert_eq!(
            file.registry_ca,
            Some(PathBuf::from("/etc/ca.pem")),
            "absolute stays"
        );
        let spec: Spec = file.capabilities[0].handler.parse().unwrap();
        assert_eq!(
            spec.in_dir(&base),
            Spec::Exec {
                command: "python3 h.py".into(),
                dir: Some(dir.path().to_owned())
            }
        );
    }
}
