//! Secrets on disk from the CLI: encrypted identity keys (passphrases from
//! `--passphrase-file` or `ECCO_PASSPHRASE`) and swarm key files. Loopback
//! only, mDNS off.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, start_line, stderr};
use ecco::identity::{Identity, KdfParams, Passphrase, SaveOptions};

const PASS: &str = "correct horse battery staple";

/// Saves a new key encrypted with `pass` (cheap key derivation, so that
/// the tests stay fast) and returns its peer id.
fn encrypted_key(path: &Path, pass: &str) -> String {
    encrypted_key_with(path, pass, KdfParams::new(8192, 1, 1).unwrap())
}

/// `encrypted_key` with the given key-derivation parameters.
fn encrypted_key_with(path: &Path, pass: &str, kdf: KdfParams) -> String {
    let identity = Identity::generate();
    let options = SaveOptions::new().kdf_params(kdf);
    identity
        .save_with(path, Some(&Passphrase::new(pass).unwrap()), &options)
        .unwrap();
    identity.peer_id().to_base58()
}

/// `ecco`, with `ECCO_PASSPHRASE` set to `pass` if given and unset
/// otherwise, and logs at the default level.
fn command(args: &[&str], pass: Option<&str>) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("ECCO_PASSPHRASE")
        .env_remove("RUST_LOG");
    if let Some(pass) = pass {
        cmd.env("ECCO_PASSPHRASE", pass);
    }
    cmd
}

/// Runs [`command`] to the end.
fn run(args: &[&str], pass: Option<&str>) -> Output {
    command(args, pass).output().unwrap()
}

/// Runs a command that must succeed and print one JSON line.
fn run_json(args: &[&str], pass: Option<&str>) -> serde_json::Value {
    let out = run(args, pass);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Asserts that a command failed with exit status 1 and said `expected`.
fn fails(out: &Output, expected: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(expected), "expected {expected:?} in: {err}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A passphrase file holding `pass` and a newline, mode 0600.
fn passphrase_file(path: &Path, pass: &str) {
    std::fs::write(path, format!("{pass}\n")).unwrap();
    chmod(path, 0o600);
}

#[test]
fn id_shows_an_encrypted_key_without_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.key");
    let peer = encrypted_key(&key, PASS);

    let shown = run_json(&["--json", "id", "--identity", text(&key)], None);
    assert_eq!(shown["peer_id"], peer.as_str());
    assert_eq!(shown["encrypted"], true);
    let out = run(&["id", "--identity", text(&key)], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(&format!("peer id   {peer}")), "{stdout}");
    assert!(stdout.contains("encrypted yes"), "{stdout}");

    // With a passphrase, it is checked.
    let shown = run_json(&["--json", "id", "--identity", text(&key)], Some(PASS));
    assert_eq!(shown["peer_id"], peer.as_str());
    let out = run(&["id", "--identity", text(&key)], Some("not it"));
    fails(
        &out,
        &format!(
            "wrong passphrase for identity file {} (read from ECCO_PASSPHRASE)",
            key.display()
        ),
    );

    // A plaintext key says so.
    let plain = dir.path().join("plain.key");
    let shown = run_json(&["--json", "id", "--identity", text(&plain)], None);
    assert_eq!(shown["encrypted"], false);
    let out = run(&["id", "--identity", text(&plain)], None);
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("encrypted no")
    );
}

#[test]
fn id_warns_about_an_encrypted_key_open_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.key");
    encrypted_key(&key, PASS);
    let out = run(&["id", "--identity", text(&key)], None);
    assert!(!stderr(&out).contains("chmod"), "{}", stderr(&out));
    chmod(&key, 0o644);
    let out = run(&["id", "--identity", text(&key)], None);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains(&format!("chmod 600 {}", key.display())),
        "{}",
        stderr(&out)
    );
}

/// `ecco agent` on loopback with `key`, offering one echo capability.
fn agent(key: &Path, extra: &[&str], pass: Option<&str>) -> Command {
    let mut args = vec![
        "--json",
        "agent",
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--capability",
        "x/y n@1.0.0",
        "--identity",
        text(key),
    ];
    args.extend_from_slice(extra);
    command(&args, pass)
}

/// Runs an `ecco agent` that must stop on its own (on an error); one that
/// starts instead is killed after a while, failing the test rather than
/// hanging it.
fn finished(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// Starts the agent and returns the peer id it reports, then stops it.
fn started_peer(mut cmd: Command) -> String {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let started = start_line(&mut child);
    let _ = child.kill();
    let _ = child.wait();
    started["peer_id"].as_str().unwrap().to_owned()
}

#[test]
fn agent_needs_the_passphrase_of_an_encrypted_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.key");
    let peer = encrypted_key(&key, PASS);

    let out = finished(agent(&key, &[], None));
    fails(
        &out,
        &format!("identity file {} is encrypted", key.display()),
    );
    for way in ["--passphrase-file FILE", "ECCO_PASSPHRASE"] {
        assert!(stderr(&out).contains(way), "{}", stderr(&out));
    }
    let out = finished(agent(&key, &[], Some("not it")));
    fails(&out, "wrong passphrase for identity file");
    let wrong = dir.path().join("wrong.txt");
    passphrase_file(&wrong, "not it");
    let out = finished(agent(
        &key,
        &["--passphrase-file", text(&wrong)],
        Some(PASS),
    ));
    fails(
        &out,
        &format!("wrong passphrase for identity file {}", key.display()),
    );

    assert_eq!(started_peer(agent(&key, &[], Some(PASS))), peer);
    // The file wins over the environment; one trailing "\r\n" is dropped.
    let file = dir.path().join("pass.txt");
    std::fs::write(&file, format!("{PASS}\r\n")).unwrap();
    let cmd = agent(&key, &["--passphrase-file", text(&file)], Some("not it"));
    assert_eq!(started_peer(cmd), peer);
}

/// An exec handler runs with the agent's environment, but not with the
/// identity's passphrase; `ecco ask` takes a passphrase file as well.
#[test]
fn handlers_do_not_see_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.key");
    encrypted_key(&key, PASS);
    let handler = r#"exec:cat >/dev/null; printf '"%s"' "${ECCO_PASSPHRASE:-unset}""#;
    let mut child = agent(&key, &["--handler", handler], Some(PASS))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = start_line(&mut child);
    let addr = started["listen"][0].as_str().unwrap().to_owned();
    let asker_key = dir.path().join("asker.key");
    encrypted_key(&asker_key, "the asker's");
    let file = dir.path().join("asker-pass.txt");
    passphrase_file(&file, "the asker's");
    let args = [
        "--json",
        "ask",
        "x/y",
        "--input",
        "1",
        "--no-mdns",
        "--bootstrap",
        &addr,
        "--identity",
        text(&asker_key),
        "--passphrase-file",
        text(&file),
    ];
    let answered = run_json(&args, None);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answered["consensus"]["answer"], "unset", "{answered}");
}

/// `passphrase_file` in an agent's TOML file, relative to the file.
#[test]
fn agent_config_takes_a_passphrase_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.key");
    let peer = encrypted_key(&key, PASS);
    passphrase_file(&dir.path().join("pass.txt"), PASS);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "identity = \"id.key\"\npassphrase_file = \"pass.txt\"\nmdns = false\n\
         listen = [\"/ip4/127.0.0.1/tcp/0\"]\n[[capability]]\nspec = \"x/y n@1.0.0\"\n",
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let mut cmd = command(&["--json", "agent", "--config", text(&config)], None);
    cmd.current_dir(elsewhere.path());
    assert_eq!(started_peer(cmd), peer);
}

#[test]
fn discover_needs_the_passphrase_of_an_encrypted_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.key");
    encrypted_key(&key, PASS);
    let file = dir.path().join("pass.txt");
    passphrase_file(&file, PASS);
    let discover = ["discover", "x/y", "--no-mdns", "--wait", "100ms"];
    let with_key = |extra: &[&str], pass: Option<&str>| {
        let mut args = discover.to_vec();
        args.extend_from_slice(&["--identity", text(&key)]);
        args.extend_from_slice(extra);
        run(&args, pass)
    };

    fails(&with_key(&[], None), "is encrypted: give its passphrase");
    fails(
        &with_key(&[], Some("not it")),
        "wrong passphrase for identity file",
    );
    let out = with_key(&[], Some(PASS));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = with_key(&["--passphrase-file", text(&file)], None);
    assert!(out.status.success(), "{}", stderr(&out));

    // Without --identity (an ephemeral key) there is no passphrase to give.
    let mut args = discover.to_vec();
    args.extend_from_slice(&["--passphrase-file", text(&file)]);
    assert_eq!(run(&args, None).status.code(), Some(2));
    let out = run(&discover, Some("unused"));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn empty_missing_and_unexpected_passphrases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.key");
    encrypted_key(&key, PASS);
    let empty = dir.path().join("empty.txt");
    passphrase_file(&empty, "");
    let id = |extra: &[&str], pass: Option<&str>| {
        let mut args = vec!["id", "--identity", text(&key)];
        args.extend_from_slice(extra);
        run(&args, pass)
    };
    fails(&id(&["--passphrase-file", text(&empty)], None), "is empty");
    fails(&id(&[], Some("")), "ECCO_PASSPHRASE is set but empty");
    let missing = dir.path().join("missing.txt");
    fails(
        &id(&["--passphrase-file", text(&missing)], None),
        "cannot read passphrase file",
    );

    let plain = dir.path().join("plain.key");
    run_json(&["--json", "id", "--identity", text(&plain)], None);
    fails(
        &run(&["id", "--identity", text(&plain)], Some(PASS)),
        "is not encrypted, but a passphrase was given (from ECCO_PASSPHRASE)",
    );
}

#[test]
fn id_creates_an_encrypted_key_when_given_a_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("new").join("id.key");
    let pass = dir.path().join("pass.txt");
    passphrase_file(&pass, PASS);
    let created = run_json(
        &[
            "--json",
            "id",
            "--identity",
            text(&key),
            "--passphrase-file",
            text(&pass),
        ],
        None,
    );
    assert_eq!(created["encrypted"], true);
    let info = ecco::identity::inspect(&key).unwrap();
    assert!(info.encrypted);
    assert_eq!(info.kdf, Some(KdfParams::DEFAULT));
    assert_eq!(mode(&key), 0o600);
    // The trailing newline is not part of the passphrase.
    let loaded = Identity::load(&key, Some(&Passphrase::new(PASS).unwrap())).unwrap();
    assert_eq!(created["peer_id"], loaded.peer_id().to_base58().as_str());
    let shown = run_json(&["--json", "id", "--identity", text(&key)], None);
    assert_eq!(shown["peer_id"], created["peer_id"]);
    assert_eq!(shown["encrypted"], true);

    // From the environment too.
    let other = dir.path().join("other.key");
    let created = run_json(&["--json", "id", "--identity", text(&other)], Some(PASS));
    assert_eq!(created["encrypted"], true);
    assert!(Identity::load(&other, Some(&Passphrase::new(PASS).unwrap())).is_ok());
}

#[test]
fn id_encrypt_encrypts_a_plaintext_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.key");
    let pass = dir.path().join("pass.txt");
    passphrase_file(&pass, PASS);
    let plain = run_json(&["--json", "id", "--identity", text(&key)], None);
    assert_eq!(plain["encrypted"], false);

    fails(
        &run(&["id", "--identity", text(&key), "--encrypt"], None),
        "--encrypt needs the new passphrase",
    );
    assert!(!ecco::identity::inspect(&key).unwrap().encrypted);

    let encrypt = [
        "--json",
        "id",
        "--identity",
        text(&key),
        "--encrypt",
        "--passphrase-file",
        text(&pass),
    ];
    let encrypted = run_json(&encrypt, None);
    assert_eq!(encrypted["peer_id"], plain["peer_id"]);
    assert_eq!(encrypted["encrypted"], true);
    assert!(ecco::identity::inspect(&key).unwrap().encrypted);
    assert_eq!(mode(&key), 0o600);

    // It now loads with the passphrase only.
    let loaded = run_json(
        &[
            "--json",
            "id",
            "--identity",
            text(&key),
            "--passphrase-file",
            text(&pass),
        ],
        None,
    );
    assert_eq!(loaded["peer_id"], plain["peer_id"]);
    let out = finished(agent(&key, &[], None));
    fails(&out, "is encrypted");
    assert_eq!(
        started_peer(agent(&key, &["--passphrase-file", text(&pass)], None)),
        plain["peer_id"].as_str().unwrap()
    );

    fails_untouched(&key, &encrypt[1..], None, "is already encrypted");
    refuses_a_missing_key(dir.path(), "--encrypt", "encrypt");
}

/// Asserts that `args` fails saying `expected` and leaves `key` as it was.
fn fails_untouched(key: &Path, args: &[&str], pass: Option<&str>, expected: &str) {
    let before = std::fs::read(key).unwrap();
    fails(&run(args, pass), expected);
    assert_eq!(std::fs::read(key).unwrap(), before, "left alone");
}

/// Asserts that `ecco id FLAG` on a key file that does not exist fails,
/// saying there is nothing to `verb`, and creates none.
fn refuses_a_missing_key(dir: &Path, flag: &str, verb: &str) {
    let missing = dir.join("missing.key");
    fails(
        &run(&["id", "--identity", text(&missing), flag], Some(PASS)),
        &format!("not found: nothing to {verb}"),
    );
    assert!(!missing.exists());
}

fn is_swarm_key(text: &str) -> bool {
    text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n")
}

#[test]
fn swarm_key_out_is_private_and_never_replaced_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("swarm.key");
    let out = run(&["swarm-key", "generate", "--out", text(&file)], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&file), 0o600);
    let first = std::fs::read_to_string(&file).unwrap();
    assert!(is_swarm_key(&first), "{first}");

    let out = run(&["swarm-key", "generate", "--out", text(&file)], None);
    fails(&out, "already exists; refusing to replace it");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), first);

    chmod(&file, 0o644);
    let out = run(
        &["swarm-key", "generate", "--out", text(&file), "--force"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let second = std::fs::read_to_string(&file).unwrap();
    assert!(is_swarm_key(&second) && second != first);
    assert_eq!(mode(&file), 0o600);

    assert_eq!(
        run(&["swarm-key", "generate", "--force"], None)
            .status
            .code(),
        Some(2),
        "--force needs --out"
    );
}

#[test]
fn a_swarm_key_printed_to_a_shared_file_is_made_private() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("swarm.key");
    std::fs::write(&file, "").unwrap();
    chmod(&file, 0o644);
    let out = command(&["swarm-key", "generate"], None)
        .stdout(std::fs::File::options().write(true).open(&file).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&file), 0o600);
    assert!(
        stderr(&out).contains("made it mode 0600"),
        "{}",
        stderr(&out)
    );
    assert!(is_swarm_key(&std::fs::read_to_string(&file).unwrap()));

    // Already private: nothing to say. A pipe is left alone.
    let out = command(&["swarm-key", "generate"], None)
        .stdout(std::fs::File::create(&file).unwrap())
        .output()
        .unwrap();
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let out = run(&["swarm-key", "generate"], None);
    assert!(out.status.success() && stderr(&out).is_empty());
    assert!(is_swarm_key(&String::from_utf8(out.stdout).unwrap()));
}

#[test]
fn loading_a_swarm_key_open_to_others_warns() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("swarm.key");
    run(&["swarm-key", "generate", "--out", text(&file)], None);
    let discover = [
        "discover",
        "x/y",
        "--no-mdns",
        "--wait",
        "100ms",
        "--swarm-key",
        text(&file),
    ];
    warns_once_open_to_others(&discover, &file, "swarm key file");
}

/// Runs `args` (which must succeed) with `file` mode 0600, then 0644: it
/// warns, once, only the second time, naming `what` and the `chmod` to run.
fn warns_once_open_to_others(args: &[&str], file: &Path, what: &str) {
    chmod(file, 0o600);
    let out = run(args, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("chmod"), "{}", stderr(&out));

    chmod(file, 0o644);
    let out = run(args, None);
    assert!(out.status.success(), "still used: {}", stderr(&out));
    let err = stderr(&out);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(&format!("chmod 600 {}", file.display())))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains(what), "{err}");
}

/// `ecco --json id` changing `key`'s passphrase to `new`'s.
fn change_passphrase<'a>(key: &'a Path, new: &'a Path) -> [&'a str; 6] {
    [
        "--json",
        "id",
        "--identity",
        text(key),
        "--new-passphrase-file",
        text(new),
    ]
}

#[test]
fn id_changes_a_passphrase_then_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.key");
    let peer = encrypted_key(&key, PASS);
    let new = dir.path().join("new.txt");
    passphrase_file(&new, "a new passphrase");
    let change = change_passphrase(&key, &new);
    fails_untouched(
        &key,
        &change[1..],
        None,
        "needs the key's current passphrase",
    );
    fails_untouched(
        &key,
        &change[1..],
        Some("not it"),
        "wrong passphrase for identity file",
    );

    let changed = run_json(&change, Some(PASS));
    assert_eq!(changed["peer_id"], peer.as_str());
    assert_eq!(changed["encrypted"], true);
    assert_eq!(mode(&key), 0o600);
    let info = ecco::identity::inspect(&key).unwrap();
    assert!(info.encrypted);
    assert_eq!(
        info.kdf,
        Some(KdfParams::DEFAULT),
        "rotated to the default parameters"
    );
    assert!(matches!(
        Identity::load(&key, Some(&Passphrase::new(PASS).unwrap())),
        Err(ecco::identity::Error::WrongPassphrase { .. })
    ));
    let loaded = Identity::load(&key, Some(&Passphrase::new("a new passphrase").unwrap())).unwrap();
    assert_eq!(loaded.peer_id().to_base58(), peer);

    let decrypt = ["--json", "id", "--identity", text(&key), "--decrypt"];
    fails(
        &run(&decrypt[1..], Some(PASS)),
        "wrong passphrase for identity file",
    );
    let mut with_file = decrypt.to_vec();
    with_file.extend(["--passphrase-file", text(&new)]);
    let decrypted = run_json(&with_file, None);
    assert_eq!(decrypted["peer_id"], peer.as_str());
    assert_eq!(decrypted["encrypted"], false);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(
        Identity::load(&key, None).unwrap().peer_id().to_base58(),
        peer
    );

    fails_untouched(
        &key,
        &decrypt[1..],
        Some(PASS),
        "is not encrypted: nothing to decrypt",
    );
    fails_untouched(
        &key,
        &change[1..],
        Some(PASS),
        "is not encrypted: nothing to change",
    );
    refuses_a_missing_key(dir.path(), "--decrypt", "decrypt");

    let both = run(
        &["id", "--identity", text(&key), "--encrypt", "--decrypt"],
        Some(PASS),
    );
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
}

/// A key encrypted with stronger parameters than the default keeps them
/// when its passphrase changes; weaker ones are raised to the default
/// (`id_changes_a_passphrase_then_removes_it`).
#[test]
fn a_new_passphrase_keeps_stronger_key_derivation() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.key");
    encrypted_key_with(&key, PASS, KdfParams::new(32 * 1024, 1, 2).unwrap());
    let new = dir.path().join("new.txt");
    passphrase_file(&new, "a new passphrase");
    run_json(&change_passphrase(&key, &new), Some(PASS));
    let kdf = ecco::identity::inspect(&key).unwrap().kdf.unwrap();
    assert_eq!(
        (kdf.m_cost(), kdf.t_cost(), kdf.p_cost()),
        (32 * 1024, KdfParams::DEFAULT.t_cost(), 2),
        "the file's stronger memory and lanes, the default's passes"
    );
}

#[test]
fn a_passphrase_file_open_to_others_warns() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.key");
    encrypted_key(&key, PASS);
    let pass = dir.path().join("pass.txt");
    passphrase_file(&pass, PASS);
    let id = [
        "id",
        "--identity",
        text(&key),
        "--passphrase-file",
        text(&pass),
    ];
    warns_once_open_to_others(&id, &pass, "passphrase file");
}
