//! The key file's JSON format: encoding, and parsing with every structural
//! check done before any cryptography runs.

use std::path::Path;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use libp2p_identity::PeerId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::kdf::{CHECK_LEN, KdfParams, SALT_LEN};
use crate::seal::{CIPHER_NAME, FORMAT_VERSION, KDF_NAME, NONCE_LEN, Sealed};

/// The name of the version field, which also marks a file as an ecco identity.
const VERSION_FIELD: &str = "ecco_identity";

/// Version 1 of the file, as stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    ecco_identity: u32,
    peer_id: String,
    key: KeyV1,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum KeyV1 {
    /// Base64 of the libp2p protobuf encoding of the key pair.
    Plain(SecretString),
    Encrypted(EncryptedV1),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptedV1 {
    kdf: String,
    m_cost: u64,
    t_cost: u64,
    p_cost: u64,
    salt: String,
    check: String,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

/// A string holding secret material, wiped when dropped.
struct SecretString(Zeroizing<String>);

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| Self(Zeroizing::new(s)))
    }
}

/// Only the version field; everything else is skipped.
#[derive(Deserialize)]
struct Probe {
    ecco_identity: Option<serde_json::Value>,
}

/// The key as found in a parsed file.
pub(crate) enum StoredKey {
    /// The protobuf-encoded key pair.
    Plain(Zeroizing<Vec<u8>>),
    /// The key pair, encrypted.
    Encrypted(Sealed),
}

/// A structurally valid key file.
pub(crate) struct Parsed {
    /// The peer id recorded in the file (not yet checked against the key).
    pub(crate) peer_id: PeerId,
    pub(crate) key: StoredKey,
}

/// Serialises a key file: pretty JSON with a final newline.
pub(crate) fn encode(peer_id: &PeerId, key: StoredKey) -> Result<Zeroizing<Vec<u8>>> {
    let key = match key {
        StoredKey::Plain(secret) => {
            KeyV1::Plain(SecretString(Zeroizing::new(B64.encode(&*secret))))
        }
        StoredKey::Encrypted(s) => KeyV1::Encrypted(EncryptedV1 {
            kdf: KDF_NAME.to_owned(),
            m_cost: s.params.m_cost().into(),
            t_cost: s.params.t_cost().into(),
            p_cost: s.params.p_cost().into(),
            salt: B64.encode(s.salt),
            check: B64.encode(s.check),
            cipher: CIPHER_NAME.to_owned(),
            nonce: B64.encode(s.nonce),
            ciphertext: B64.encode(&s.ciphertext),
        }),
    };
    let file = FileV1 {
        ecco_identity: FORMAT_VERSION,
        peer_id: peer_id.to_base58(),
        key,
    };
    // Large enough that the buffer never reallocates (which would leave an
    // un-wiped copy of the secret behind): a key file is well under 1 KiB.
    let mut out = Zeroizing::new(Vec::with_capacity(4096));
    serde_json::to_writer_pretty(&mut *out, &file)
        .map_err(|e| Error::Crypto(format!("serialising the key file: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

/// Parses and structurally validates a key file's bytes.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let malformed = |reason: String| Error::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(malformed("the file is empty".into())),
        // Also keeps serde from accepting a struct written as a JSON array.
        Some(b) if *b != b'{' => return Err(malformed("it is not a JSON object".into())),
        Some(_) => {}
    }

    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| malformed(describe_json_error(&e)))?;
    let found = match probe.ecco_identity {
        None => {
            return Err(malformed(format!(
                "it has no \"{VERSION_FIELD}\" version field"
            )));
        }
        Some(v) => v.as_u64().ok_or_else(|| {
            malformed(format!(
                "its \"{VERSION_FIELD}\" field is not a version number"
            ))
        })?,
    };
    if found != u64::from(FORMAT_VERSION) {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        });
    }

    let file: FileV1 =
        serde_json::from_slice(bytes).map_err(|e| malformed(describe_json_error(&e)))?;
    let peer_id = PeerId::from_str(&file.peer_id)
        .map_err(|e| malformed(format!("its peer_id is not a valid peer id: {e}")))?;

    let key = match file.key {
        KeyV1::Plain(text) => StoredKey::Plain(decode_secret(&text.0).map_err(|reason| {
            malformed(format!("its plain key is not valid base64 ({reason})"))
        })?),
        KeyV1::Encrypted(enc) => StoredKey::Encrypted(parse_encrypted(path, enc)?),
    };
    Ok(Parsed { peer_id, key })
}

fn parse_encrypted(path: &Path, enc: EncryptedV1) -> Result<Sealed> {
    let unsupported = |what: &'static str, found: String| Error::UnsupportedAlgorithm {
        path: path.to_path_buf(),
        what,
        found,
    };
    if enc.kdf != KDF_NAME {
        return Err(unsupported("kdf", enc.kdf));
    }
    if enc.cipher != CIPHER_NAME {
        return Err(unsupported("cipher", enc.cipher));
    }
    let params = KdfParams::checked(enc.m_cost, enc.t_cost, enc.p_cost).map_err(|reason| {
        Error::KdfParamsOutOfBounds {
            path: path.to_path_buf(),
            reason,
        }
    })?;
    let field = |name: &str, text: &str, len: Option<usize>| -> Result<Vec<u8>> {
        let bytes = B64.decode(text).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            reason: format!("its {name} is not valid base64 ({e})"),
        })?;
        match len {
            Some(len) if bytes.len() != len => Err(Error::Malformed {
                path: path.to_path_buf(),
                reason: format!("its {name} is {} bytes, expected {len}", bytes.len()),
            }),
            _ => Ok(bytes),
        }
    };
    let salt = field("salt", &enc.salt, Some(SALT_LEN))?;
    let check = field("check", &enc.check, Some(CHECK_LEN))?;
    let nonce = field("nonce", &enc.nonce, Some(NONCE_LEN))?;
    let ciphertext = field("ciphertext", &enc.ciphertext, None)?;
    Ok(Sealed {
        params,
        salt: to_array(&salt),
        check: to_array(&check),
        nonce: to_array(&nonce),
        ciphertext,
    })
}

/// Copies a slice whose length was already checked into an array.
fn to_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

fn decode_secret(text: &str) -> Result<Zeroizing<Vec<u8>>, base64::DecodeError> {
    // Decode into a buffer sized up front so it never reallocates.
    let mut out = Zeroizing::new(Vec::with_capacity(text.len()));
    B64.decode_vec(text, &mut out)?;
    Ok(out)
}

/// Describes a JSON error without quoting the document (it may hold a key).
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "it could not be read".to_owned(),
        Category::Eof => "it is truncated JSON".to_owned(),
        Category::Syntax => "it is not JSON".to_owned(),
        Category::Data => {
            let msg = e.to_string();
            let safe = ["missing field", "unknown field", "duplicate field"];
            if safe.iter().any(|p| msg.starts_with(p)) {
                // "missing field `x` at line 1 column 2": cut the position, added below.
                let msg = msg.split(" at line ").next().unwrap_or_default();
                format!("unexpected structure: {msg}")
            } else {
                "unexpected structure: a field has the wrong type or value".to_owned()
            }
        }
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> &'static Path {
        Path::new("/x/id.json")
    }

    fn reason(bytes: &[u8]) -> String {
        match parse(path(), bytes) {
            Err(Error::Malformed { reason, .. }) => reason,
            Err(e) => panic!("expected Malformed, got {e:?}"),
            Ok(_) => panic!("expected Malformed, got Ok"),
        }
    }

    #[test]
    fn malformed_reasons_are_specific() {
        assert!(reason(b"").contains("empty"));
        assert!(reason(b" \n").contains("empty"));
        assert!(reason(b"{\"ecco_identity\": 1, \"peer").contains("truncated"));
        assert!(reason(b"\x00\x01garbage").contains("not a JSON object"));
        assert!(reason(b"[1,2]").contains("not a JSON object"));
        assert!(reason(b"{\"ecco_identity\": 1,, }").contains("not JSON"));
        assert!(reason(br#"{"ecco_identity": 1, "peer_id": 5}"#).contains("wrong type"));
        assert!(reason(b"{\"hello\": 1}").contains("no \"ecco_identity\""));
        assert!(reason(b"{\"ecco_identity\": \"1\"}").contains("not a version number"));
        assert!(reason(b"{\"ecco_identity\": 1}").contains("missing field `peer_id`"));
    }

    #[test]
    fn secrets_are_not_quoted_in_errors() {
        let doc = br#"{"ecco_identity": 1, "peer_id": "x", "key": {"plain": ["SECRETSECRET"]}}"#;
        let r = reason(doc);
        assert!(!r.contains("SECRET"), "{r}");
    }

    #[test]
    fn unknown_version_is_reported_as_such() {
        assert!(matches!(
            parse(path(), br#"{"ecco_identity": 2, "whatever": true}"#),
            Err(Error::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            })
        ));
    }
}
