//! Helpers shared by the CLI's process tests.
//!
//! `ECCO_BIN` runs the tests against another build of `ecco`.

// Each test file uses a different part of this module.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// The `ecco` binary under test.
pub(crate) fn bin() -> PathBuf {
    std::env::var_os("ECCO_BIN").map_or_else(|| env!("CARGO_BIN_EXE_ecco").into(), PathBuf::from)
}

/// Runs `ecco` with `args` to the end.
pub(crate) fn ecco(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

/// Runs a command that must succeed and print one JSON line.
pub(crate) fn ecco_json(args: &[&str]) -> Value {
    let out = ecco(args);
    assert!(
        out.status.success(),
        "ecco {args:?} failed: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What a finished command printed on stderr.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An exec handler that reads the request and answers `json`.
pub(crate) fn answer(json: &str) -> String {
    format!("exec:cat >/dev/null; echo '{json}'")
}

/// `ask CAPABILITY --input INPUT --no-mdns --bootstrap <via>`: the
/// arguments of asking one agent (more may follow).
pub(crate) fn ask_args<'a>(capability: &'a str, input: &'a str, via: &'a Running) -> Vec<&'a str> {
    vec![
        "ask",
        capability,
        "--input",
        input,
        "--no-mdns",
        "--bootstrap",
        &via.addr,
    ]
}

/// Reads the JSON line a `--json` command prints once it has started.
/// The child's stdout must be piped; it is taken.
pub(crate) fn start_line(child: &mut Child) -> Value {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("start line {line:?}: {e}"))
}

/// A running `ecco agent`, killed when dropped.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) peer: String,
    pub(crate) addr: String,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Kills the agent and returns what it logged (started with its logs
    /// piped: [`agent_with_logs`]).
    pub(crate) fn stop_and_read_logs(&mut self) -> String {
        use std::io::Read;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut logs = String::new();
        self.child
            .stderr
            .take()
            .expect("an agent started with its logs piped")
            .read_to_string(&mut logs)
            .unwrap();
        logs
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an agent on loopback, mDNS off, offering `capability` with
/// `handler`, joined to `via`; its logs are dropped.
pub(crate) fn agent(capability: &str, handler: &str, via: Option<&Running>) -> Running {
    start_agent(capability, handler, via, &[], Stdio::null())
}

/// [`agent`], with its stderr piped (logs at the default level) for the
/// test to read: read it only after the agent stopped, and keep the agent
/// quiet meanwhile, or it blocks on a full pipe.
pub(crate) fn agent_with_logs(capability: &str, handler: &str, via: Option<&Running>) -> Running {
    start_agent(capability, handler, via, &[], Stdio::piped())
}

/// [`agent_with_logs`], alone, with `extra` arguments.
pub(crate) fn agent_with_logs_and(capability: &str, handler: &str, extra: &[&str]) -> Running {
    start_agent(capability, handler, None, extra, Stdio::piped())
}

fn start_agent(
    capability: &str,
    handler: &str,
    via: Option<&Running>,
    extra: &[&str],
    logs: Stdio,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args([
        "--json",
        "agent",
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ])
    .args(["--capability", capability, "--handler", handler])
    .arg("--identity")
    .arg(dir.path().join("id.key"))
    .args(extra)
    .env_remove("RUST_LOG");
    if let Some(v) = via {
        cmd.args(["--bootstrap", &v.addr]);
    }
    start_with(cmd.stderr(logs), dir)
}

/// Spawns an `ecco --json agent …` command (its logs dropped) and reads
/// its start line; `dir` lives as long as the agent.
pub(crate) fn start(mut cmd: Command, dir: tempfile::TempDir) -> Running {
    start_with(cmd.stderr(Stdio::null()), dir)
}

fn start_with(cmd: &mut Command, dir: tempfile::TempDir) -> Running {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let started = start_line(&mut child);
    Running {
        child,
        peer: started["peer_id"].as_str().unwrap().to_owned(),
        addr: started["listen"][0].as_str().unwrap().to_owned(),
        _dir: dir,
    }
}
