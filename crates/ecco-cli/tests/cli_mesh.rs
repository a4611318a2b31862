//! A bootstrap peer on another mesh, or with another swarm key, is named as
//! the cause of the failure.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Running, bin, ecco, start, stderr};

/// An `ecco agent` on loopback with extra flags; killed when dropped.
fn agent(flags: &[&str]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["--json", "agent", "--no-mdns"])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--capability", "x/y a@1.0.0", "--handler", "echo"])
        .arg("--identity")
        .arg(dir.path().join("id.key"))
        .args(flags)
        .env_remove("RUST_LOG");
    start(cmd, dir)
}

/// A new swarm key file in `dir`, readable by its owner only.
fn swarm_key(dir: &Path, name: &str) -> PathBuf {
    let out = ecco(&["swarm-key", "generate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).unwrap();
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o600);
    std::fs::set_permissions(&path, permissions).unwrap();
    path
}

/// `ecco discover x/y` through `agent`, with extra flags.
fn discover(agent: &Running, flags: &[&str]) -> Output {
    Command::new(bin())
        .args(["discover", "x/y", "--no-mdns", "--wait", "1s"])
        .args(["--bootstrap", &agent.addr])
        .args(flags)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// The `error:` line of a failed command's stderr.
fn error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let err = stderr(out);
    err.lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {err:?}"))
        .to_owned()
}

#[test]
fn a_bootstrap_peer_on_another_mesh_is_named_with_both_meshes() {
    let agent = agent(&[]);
    let out = discover(&agent, &["--mesh", "other"]);
    assert_eq!(
        error_line(&out),
        format!(
            "error: bootstrap peer {} is on mesh `ecco`, this node on mesh `other` (set --mesh to match)",
            agent.addr
        )
    );
    // Said once: the error, not a warning of the client's node as well.
    // (The agent warns too when the client's identify reaches it before
    // the client hangs up, which is a race, so not checked here.)
    assert_eq!(
        stderr(&out).matches("is on mesh").count(),
        1,
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_wrong_swarm_key_is_named_as_the_likely_cause() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (
        swarm_key(dir.path(), "ours"),
        swarm_key(dir.path(), "theirs"),
    );
    let agent = agent(&["--swarm-key", theirs.to_str().unwrap()]);
    let out = discover(&agent, &["--swarm-key", ours.to_str().unwrap()]);
    // The handshake fails at once or stalls until the bootstrap wait, by chance.
    let error = error_line(&out);
    assert!(
        error.starts_with(&format!(
            "error: cannot reach bootstrap peer {}",
            agent.addr
        )) || error.starts_with(&format!(
            "error: bootstrap peer {} did not answer",
            agent.addr
        )),
        "{error}"
    );
    assert!(
        error.ends_with("(a private mesh: does that peer use the same swarm key?)"),
        "{error}"
    );
}

#[test]
fn a_missing_swarm_key_is_named_as_the_likely_cause() {
    let dir = tempfile::tempdir().unwrap();
    let key = swarm_key(dir.path(), "key");
    let agent = agent(&["--swarm-key", key.to_str().unwrap()]);
    let error = error_line(&discover(&agent, &[]));
    assert!(
        error.ends_with("(if that peer runs a private mesh, this node needs its swarm key)")
            || error.ends_with(
                "(if that peer runs a private mesh, this node needs its swarm key: --swarm-key)"
            ),
        "{error}"
    );
}
