//! Key file persistence: round trips, permissions, and every way a file can be wrong.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ecco_identity::{
    Error, Identity, KdfParams, MAX_KEY_FILE_SIZE, Passphrase, SaveOptions, inspect,
    permissions_too_open,
};
use serde_json::{Value, json};
use tempfile::TempDir;

fn fast() -> SaveOptions {
    SaveOptions::new().kdf_params(KdfParams::MINIMUM)
}

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s).expect("non-empty passphrase")
}

fn setup() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("identity.json");
    (dir, path)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).expect("read")).expect("json")
}

fn write_json(path: &Path, v: &Value) {
    fs::write(path, serde_json::to_vec_pretty(v).expect("json")).expect("write");
}

/// Saves a fresh encrypted identity with passphrase "pw" and returns it.
fn encrypted_file(path: &Path) -> Identity {
    let id = Identity::generate();
    id.save_with(path, Some(&pass("pw")), &fast())
        .expect("save");
    id
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

// ---- round trips and file shape -------------------------------------------

#[test]
fn plain_round_trip() {
    let (_dir, path) = setup();
    let id = Identity::generate();
    id.save(&path, None).unwrap();
    let (back, report) = Identity::load_with_report(&path, None).unwrap();
    assert_eq!(back.peer_id(), id.peer_id());
    assert_eq!(back.public(), id.public());
    assert!(!report.encrypted && !report.created && !report.permissions_too_open);
    assert_eq!(report.mode, Some(0o600));

    let v = read_json(&path);
    assert_eq!(v["ecco_identity"], json!(1));
    assert_eq!(v["peer_id"], json!(id.peer_id().to_base58()));
    let key = B64.decode(v["key"]["plain"].as_str().unwrap()).unwrap();
    assert_eq!(key, id.keypair().to_protobuf_encoding().unwrap());
}

#[test]
fn encrypted_round_trip() {
    let (_dir, path) = setup();
    let id = encrypted_file(&path);
    let (back, report) = Identity::load_with_report(&path, Some(&pass("pw"))).unwrap();
    assert_eq!(back.peer_id(), id.peer_id());
    assert!(report.encrypted);

    let text = fs::read_to_string(&path).unwrap();
    let plain_b64 = B64.encode(id.keypair().to_protobuf_encoding().unwrap());
    assert!(!text.contains(&plain_b64), "secret key stored in clear");
    let enc = &read_json(&path)["key"]["encrypted"];
    assert_eq!(enc["kdf"], json!("argon2id"));
    assert_eq!(enc["cipher"], json!("xchacha20poly1305"));
    assert_eq!(enc["m_cost"], json!(KdfParams::MIN_M_COST));
}

#[test]
fn encrypted_round_trip_with_default_params() {
    let (_dir, path) = setup();
    let id = Identity::generate();
    id.save(&path, Some(&pass("pw"))).unwrap();
    let info = inspect(&path).unwrap();
    assert_eq!(info.kdf, Some(KdfParams::DEFAULT));
    assert_eq!(
        Identity::load(&path, Some(&pass("pw"))).unwrap().peer_id(),
        id.peer_id()
    );
}

#[test]
fn inspect_shows_the_header_without_a_passphrase() {
    let (_dir, path) = setup();
    let id = encrypted_file(&path);
    let info = inspect(&path).unwrap();
    assert_eq!(info.peer_id, id.peer_id());
    assert!(info.encrypted);
    assert_eq!(info.kdf, Some(KdfParams::MINIMUM));
    assert!(!info.permissions_too_open);
}

// ---- permissions -----------------------------------------------------------

#[test]
fn saved_files_have_mode_0600() {
    let (dir, path) = setup();
    Identity::generate().save(&path, None).unwrap();
    assert_eq!(mode(&path), 0o600);
    let enc = dir.path().join("enc.json");
    encrypted_file(&enc);
    assert_eq!(mode(&enc), 0o600);
}

#[test]
fn open_permissions_load_but_are_flagged() {
    let (_dir, path) = setup();
    let id = Identity::generate();
    id.save(&path, None).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

    let (back, report) = Identity::load_with_report(&path, None).unwrap();
    assert_eq!(back.peer_id(), id.peer_id());
    assert!(report.permissions_too_open);
    assert_eq!(report.mode, Some(0o644));
    assert!(permissions_too_open(&path).unwrap());
    assert!(inspect(&path).unwrap().permissions_too_open);

    for (mode, too_open) in [
        (0o600, false),
        (0o400, false),
        (0o640, true),
        (0o604, true),
        (0o620, true),
        (0o601, true),
    ] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(permissions_too_open(&path).unwrap(), too_open, "{mode:o}");
        let (_, report) = Identity::load_with_report(&path, None).unwrap();
        assert_eq!(report.permissions_too_open, too_open, "{mode:o}");
    }
}

#[test]
fn overwrite_resets_mode_to_0600() {
    let (_dir, path) = setup();
    Identity::generate().save(&path, None).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    let id = Identity::generate();
    id.save_with(&path, None, &SaveOptions::new().overwrite(true))
        .unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(Identity::load(&path, None).unwrap().peer_id(), id.peer_id());
}

#[test]
fn missing_parent_directories_are_created_private() {
    let (dir, _) = setup();
    let path = dir.path().join("a/b/identity.json");
    Identity::generate().save(&path, None).unwrap();
    assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    assert_eq!(mode(&path), 0o600);
}

// ---- no clobbering -----------------------------------------------------------

#[test]
fn save_refuses_to_overwrite() {
    let (dir, path) = setup();
    let first = Identity::generate();
    first.save(&path, None).unwrap();
    let before = fs::read(&path).unwrap();

    let err = Identity::generate().save(&path, None).unwrap_err();
    assert!(matches!(&err, Error::AlreadyExists { path: p } if *p == path));
    assert!(err.to_string().contains("identity.json"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);
    // No temporary files left behind.
    assert_eq!(dir_entries(dir.path()), vec!["identity.json"]);
}

#[test]
fn save_refuses_to_replace_a_dangling_symlink() {
    let (dir, path) = setup();
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &path).unwrap();
    assert!(matches!(
        Identity::generate().save(&path, None),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(!dir.path().join("nowhere").exists());
}

#[test]
fn save_leaves_no_temporary_files() {
    let (dir, path) = setup();
    encrypted_file(&path);
    Identity::generate()
        .save_with(&path, None, &SaveOptions::new().overwrite(true))
        .unwrap();
    assert_eq!(dir_entries(dir.path()), vec!["identity.json"]);
}

// ---- load_or_create ------------------------------------------------------------

#[test]
fn load_or_create_creates_once_then_loads() {
    let (_dir, path) = setup();
    let (a, report) = Identity::load_or_create_with(&path, None, &fast()).unwrap();
    assert!(report.created);
    assert_eq!(report.mode, Some(0o600));
    let (b, report) = Identity::load_or_create_with(&path, None, &fast()).unwrap();
    assert!(!report.created);
    assert_eq!(a.peer_id(), b.peer_id());
    assert_eq!(
        Identity::load_or_create(&path, None).unwrap().peer_id(),
        a.peer_id()
    );
}

#[test]
fn load_or_create_encrypted() {
    let (_dir, path) = setup();
    let p = pass("pw");
    let (a, report) = Identity::load_or_create_with(&path, Some(&p), &fast()).unwrap();
    assert!(report.created && report.encrypted);
    let b = Identity::load_or_create(&path, Some(&p)).unwrap();
    assert_eq!(a.peer_id(), b.peer_id());

    let before = fs::read(&path).unwrap();
    assert!(matches!(
        Identity::load_or_create(&path, Some(&pass("nope"))),
        Err(Error::WrongPassphrase { .. })
    ));
    assert!(matches!(
        Identity::load_or_create(&path, None),
        Err(Error::PassphraseRequired { .. })
    ));
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn load_or_create_never_replaces_a_bad_file() {
    let (dir, path) = setup();
    let bad_files: [&[u8]; 4] = [
        b"",
        b"garbage",
        br#"{"ecco_identity": 99}"#,
        br#"{"ecco_identity": 1, "peer_id": "12D3"#,
    ];
    for bytes in bad_files {
        fs::write(&path, bytes).unwrap();
        let err = Identity::load_or_create(&path, None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Malformed { .. } | Error::UnsupportedVersion { .. }
            ),
            "{err:?}"
        );
        assert_eq!(fs::read(&path).unwrap(), bytes, "file was modified");
    }
    assert_eq!(dir_entries(dir.path()), vec!["identity.json"]);
}

// ---- passphrase handling -------------------------------------------------------

#[test]
fn wrong_passphrase() {
    let (_dir, path) = setup();
    encrypted_file(&path);
    let err = Identity::load(&path, Some(&pass("PW"))).unwrap_err();
    assert!(matches!(&err, Error::WrongPassphrase { path: p } if *p == path));
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
}

#[test]
fn passphrase_required() {
    let (_dir, path) = setup();
    encrypted_file(&path);
    assert!(matches!(
        Identity::load(&path, None),
        Err(Error::PassphraseRequired { .. })
    ));
}

#[test]
fn passphrase_for_a_plain_file_is_an_error() {
    let (_dir, path) = setup();
    Identity::generate().save(&path, None).unwrap();
    assert!(matches!(
        Identity::load(&path, Some(&pass("pw"))),
        Err(Error::PassphraseNotExpected { .. })
    ));
}

// ---- tampering and corruption ----------------------------------------------------

#[test]
fn flipped_ciphertext_byte_is_corruption() {
    let (_dir, path) = setup();
    encrypted_file(&path);
    let mut v = read_json(&path);
    let ct = v["key"]["encrypted"]["ciphertext"].as_str().unwrap();
    let mut bytes = B64.decode(ct).unwrap();
    bytes[5] ^= 0x01;
    v["key"]["encrypted"]["ciphertext"] = json!(B64.encode(&bytes));
    write_json(&path, &v);
    let before = fs::read(&path).unwrap();

    assert!(matches!(
        Identity::load(&path, Some(&pass("pw"))),
        Err(Error::Corrupted { .. })
    ));
    assert!(matches!(
        Identity::load_or_create(&path, Some(&pass("pw"))),
        Err(Error::Corrupted { .. })
    ));
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn header_peer_id_is_bound_to_the_ciphertext() {
    let (_dir, path) = setup();
    encrypted_file(&path);
    let mut v = read_json(&path);
    v["peer_id"] = json!(Identity::generate().peer_id().to_base58());
    write_json(&path, &v);
    assert!(matches!(
        Identity::load(&path, Some(&pass("pw"))),
        Err(Error::Corrupted { .. })
    ));
}

#[test]
fn altered_kdf_params_fail_to_decrypt() {
    // Changing the KDF parameters changes the derived key, so this looks like
    // a wrong passphrase; either way nothing is loaded.
    let (_dir, path) = setup();
    encrypted_file(&path);
    let mut v = read_json(&path);
    v["key"]["encrypted"]["t_cost"] = json!(2);
    write_json(&path, &v);
    assert!(matches!(
        Identity::load(&path, Some(&pass("pw"))),
        Err(Error::WrongPassphrase { .. })
    ));
}

#[test]
fn swapped_plain_key_is_a_peer_id_mismatch() {
    let (_dir, path) = setup();
    let id = Identity::generate();
    id.save(&path, None).unwrap();
    let other = Identity::generate();
    let mut v = read_json(&path);
    v["key"]["plain"] = json!(B64.encode(other.keypair().to_protobuf_encoding().unwrap()));
    write_json(&path, &v);

    let err = Identity::load(&path, None).unwrap_err();
    match &err {
        Error::PeerIdMismatch {
            recorded, actual, ..
        } => {
            assert_eq!(**recorded, id.peer_id());
            assert_eq!(**actual, other.peer_id());
        }
        e => panic!("expected PeerIdMismatch, got {e:?}"),
    }
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn undecodable_plain_key_is_malformed() {
    let (_dir, path) = setup();
    Identity::generate().save(&path, None).unwrap();
    let mut v = read_json(&path);
    v["key"]["plain"] = json!(B64.encode([8u8, 1, 18, 3, 1, 2, 3]));
    write_json(&path, &v);
    assert!(matches!(
        Identity::load(&path, None),
        Err(Error::Malformed { reason, .. }) if reason.contains("key cannot be decoded")
    ));
    v["key"]["plain"] = json!("not base64!");
    write_json(&path, &v);
    assert!(matches!(
        Identity::load(&path, None),
        Err(Error::Malformed { reason, .. }) if reason.contains("base64")
    ));
}

#[test]
fn bad_lengths_and_peer_ids_are_malformed() {
    let (_dir, path) = setup();
    encrypted_file(&path);
    let good = read_json(&path);
    let cases = [
        (
            "/key/encrypted/salt",
            json!(B64.encode([0u8; 8])),
            "salt is 8 bytes",
        ),
        (
            "/key/encrypted/nonce",
            json!(B64.encode([0u8; 12])),
            "nonce is 12 bytes",
        ),
        (
            "/key/encrypted/check",
            json!("%%%"),
            "check is not valid base64",
        ),
        (
            "/peer_id",
            json!("not-a-peer-id"),
            "peer_id is not a valid peer id",
        ),
    ];
    for (pointer, value, expected) in cases {
        let mut v = good.clone();
        *v.pointer_mut(pointer).unwrap() = value;
        write_json(&path, &v);
        match Identity::load(&path, Some(&pass("pw"))) {
            Err(Error::Malformed { reason, .. }) => {
                assert!(reason.contains(expected), "{pointer}: {reason}");
            }
            other => panic!("{pointer}: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn unknown_fields_are_rejected() {
    let (_dir, path) = setup();
    Identity::generate().save(&path, None).unwrap();
    let mut v = read_json(&path);
    v["extra"] = json!(true);
    write_json(&path, &v);
    assert!(matches!(
        Identity::load(&path, None),
        Err(Error::Malformed { reason, .. }) if reason.contains("unknown field `extra`")
    ));
}

// ---- not an identity file ----------------------------------------------------------

#[test]
fn missing_file() {
    let (_dir, path) = setup();
    let err = Identity::load(&path, None).unwrap_err();
    assert!(matches!(&err, Error::NotFound { path: p } if *p == path));
    assert!(err.to_string().contains("not found"), "{err}");
}

#[test]
fn unreadable_path_is_a_read_error() {
    let (dir, _) = setup();
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    // A path through a regular file: ENOTDIR.
    assert!(matches!(
        Identity::load(file.join("identity.json"), None),
        Err(Error::Read { .. })
    ));
}

#[test]
fn directory_is_not_an_identity_file() {
    let (dir, _) = setup();
    assert!(matches!(
        Identity::load(dir.path(), None),
        Err(Error::Malformed { reason, .. }) if reason.contains("not a regular file")
    ));
}

#[test]
fn fifo_is_refused_without_blocking() {
    let (dir, _) = setup();
    let fifo = dir.path().join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(status.success());
    assert!(matches!(
        Identity::load(&fifo, None),
        Err(Error::Malformed { reason, .. }) if reason.contains("not a regular file")
    ));
}

#[test]
fn empty_garbage_and_truncated_files() {
    let (_dir, path) = setup();
    Identity::generate().save(&path, None).unwrap();
    let good = fs::read(&path).unwrap();
    let cases: [(&[u8], &str); 4] = [
        (b"", "empty"),
        (b"\x7fELF\x02\x01\x01\x00garbage", "not a JSON object"),
        (&good[..good.len() / 2], "truncated"),
        (br#"{"name": "something else"}"#, "no \"ecco_identity\""),
    ];
    for (bytes, expected) in cases {
        fs::write(&path, bytes).unwrap();
        match Identity::load(&path, None) {
            Err(Error::Malformed { reason, path: p }) => {
                assert!(reason.contains(expected), "{reason}");
                assert_eq!(p, path);
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn oversized_file_is_rejected_before_parsing() {
    let (_dir, path) = setup();
    let limit = usize::try_from(MAX_KEY_FILE_SIZE).unwrap();
    // Valid JSON padded to exactly the limit is still read...
    Identity::generate().save(&path, None).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes.resize(limit, b' ');
    fs::write(&path, &bytes).unwrap();
    assert!(Identity::load(&path, None).is_ok());
    // ...one byte more is not.
    bytes.push(b' ');
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Identity::load(&path, None),
        Err(Error::TooLarge { size, limit: l, .. }) if size == l + 1
    ));
}

#[test]
fn unsupported_version() {
    let (_dir, path) = setup();
    Identity::generate().save(&path, None).unwrap();
    let mut v = read_json(&path);
    v["ecco_identity"] = json!(2);
    write_json(&path, &v);
    let err = Identity::load(&path, None).unwrap_err();
    assert!(matches!(
        err,
        Error::UnsupportedVersion {
            found: 2,
            supported: 1,
            ..
        }
    ));
    assert!(matches!(
        inspect(&path),
        Err(Error::UnsupportedVersion { .. })
    ));
}

#[test]
fn unsupported_algorithms() {
    let (_dir, path) = setup();
    encrypted_file(&path);
    let good = read_json(&path);
    for (field, name) in [("kdf", "scrypt"), ("cipher", "aes-256-gcm")] {
        let mut v = good.clone();
        v["key"]["encrypted"][field] = json!(name);
        write_json(&path, &v);
        assert!(matches!(
            Identity::load(&path, Some(&pass("pw"))),
            Err(Error::UnsupportedAlgorithm { what, found, .. }) if what == field && found == name
        ));
    }
}

// ---- crafted KDF parameters ----------------------------------------------------------

#[test]
fn absurd_kdf_params_are_rejected_quickly() {
    let (_dir, path) = setup();
    encrypted_file(&path);
    let good = read_json(&path);
    let cases = [
        ("m_cost", json!(u64::from(u32::MAX))),
        ("m_cost", json!(1u64 << 40)),
        ("m_cost", json!(KdfParams::MAX_M_COST + 1)),
        ("m_cost", json!(8)),
        ("t_cost", json!(1_000_000)),
        ("t_cost", json!(0)),
        ("p_cost", json!(0)),
        ("p_cost", json!(255)),
    ];
    for (field, value) in cases {
        let mut v = good.clone();
        v["key"]["encrypted"][field] = value.clone();
        write_json(&path, &v);
        let start = Instant::now();
        let result = Identity::load(&path, Some(&pass("pw")));
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{field}={value} was slow"
        );
        match result {
            Err(Error::KdfParamsOutOfBounds { reason, .. }) => {
                assert!(reason.contains(field), "{reason}");
            }
            other => panic!("{field}={value}: expected KdfParamsOutOfBounds, got {other:?}"),
        }
        assert!(matches!(
            inspect(&path),
            Err(Error::KdfParamsOutOfBounds { .. })
        ));
    }
}

#[test]
fn errors_name_the_file() {
    let (_dir, path) = setup();
    encrypted_file(&path);
    for err in [
        Identity::load(&path, None).unwrap_err(),
        Identity::load(&path, Some(&pass("x"))).unwrap_err(),
    ] {
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
