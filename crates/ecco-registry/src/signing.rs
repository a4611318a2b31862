//! Signed registry requests.
//!
//! Every write carries four headers: the agent's peer id, a Unix timestamp in
//! seconds, a single-use nonce and an Ed25519 signature (base64url) over
//!
//! ```text
//! METHOD \n PATH_AND_QUERY \n base64url(SHA-256(body)) \n TIMESTAMP \n NONCE \n REGISTRY_ID
//! ```
//!
//! in the signature domain [`DOMAIN`]. The key is the one embedded in the
//! peer id, so no key exchange or password is needed. The registry's id
//! (from `GET /health`) binds a request to one registry: a write seen by one
//! registry cannot be replayed to another within the time window.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ecco_identity::{Domain, Identity, PeerId, verify_with_peer_id};
use sha2::{Digest, Sha256};

/// The signature domain of registry requests.
pub const DOMAIN: Domain = Domain::from_static("ecco/registry/request/v2");

/// Header carrying the signer's peer id.
pub const AGENT: &str = "x-ecco-agent";
/// Header carrying the Unix time of signing, in seconds.
pub const TIMESTAMP: &str = "x-ecco-timestamp";
/// Header carrying a fresh random nonce (8 to 64 visible ASCII bytes).
pub const NONCE: &str = "x-ecco-nonce";
/// Header carrying the signature, base64url without padding.
pub const SIGNATURE: &str = "x-ecco-signature";

/// Shortest nonce accepted, in bytes.
pub const MIN_NONCE_LEN: usize = 8;
/// Longest nonce accepted, in bytes.
pub const MAX_NONCE_LEN: usize = 64;

/// The four signature headers of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The signer.
    pub agent: PeerId,
    /// Unix seconds.
    pub timestamp: i64,
    /// Single-use nonce.
    pub nonce: String,
    /// base64url signature.
    pub signature: String,
}

impl Signed {
    /// Signs a request to the registry `registry` (its id) with a fresh nonce.
    #[must_use]
    pub fn sign(
        identity: &Identity,
        registry: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp: i64,
    ) -> Self {
        let mut raw = [0u8; 18];
        rand::fill(&mut raw);
        let nonce = B64.encode(raw);
        let msg = message(registry, method, path_and_query, body, timestamp, &nonce);
        Self {
            agent: identity.peer_id(),
            timestamp,
            nonce,
            signature: B64.encode(identity.sign(DOMAIN, &msg)),
        }
    }

    /// The headers to send, as `(name, value)` pairs.
    #[must_use]
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            (AGENT, self.agent.to_base58()),
            (TIMESTAMP, self.timestamp.to_string()),
            (NONCE, self.nonce.clone()),
            (SIGNATURE, self.signature.clone()),
        ]
    }

    /// Checks the signature of a request to the registry `registry` (not
    /// the time window nor the nonce's freshness: those need a clock and
    /// shared state, which the service holds).
    ///
    /// # Errors
    /// [`SignatureError`] saying which check failed.
    pub fn verify(
        &self,
        registry: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let sig = B64
            .decode(&self.signature)
            .map_err(|_| SignatureError::Malformed("x-ecco-signature is not base64url"))?;
        let msg = message(
            registry,
            method,
            path_and_query,
            body,
            self.timestamp,
            &self.nonce,
        );
        verify_with_peer_id(&self.agent, DOMAIN, &msg, &sig)
            .map_err(|_| SignatureError::BadSignature)
    }

    /// Reads the four headers through `get`, checking their syntax.
    ///
    /// # Errors
    /// [`SignatureError::Missing`] or [`SignatureError::Malformed`].
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, SignatureError> {
        let header = |name: &'static str| get(name).ok_or(SignatureError::Missing(name));
        let agent = header(AGENT)?
            .parse()
            .map_err(|_| SignatureError::Malformed("x-ecco-agent is not a peer id"))?;
        let timestamp = header(TIMESTAMP)?
            .parse()
            .map_err(|_| SignatureError::Malformed("x-ecco-timestamp is not an integer"))?;
        let nonce = header(NONCE)?;
        if nonce.len() < MIN_NONCE_LEN
            || nonce.len() > MAX_NONCE_LEN
            || !nonce.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(SignatureError::Malformed(
                "x-ecco-nonce must be 8 to 64 visible ASCII bytes",
            ));
        }
        Ok(Self {
            agent,
            timestamp,
            nonce: nonce.to_owned(),
            signature: header(SIGNATURE)?.to_owned(),
        })
    }
}

/// Why a request signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A signature header is absent.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// A signature header does not parse.
    #[error("{0}")]
    Malformed(&'static str),
    /// The signature does not verify under the agent's key (or was made for
    /// another registry, or another method, path or body).
    #[error(
        "the signature does not verify for x-ecco-agent and this request to this registry (see GET /health for its id)"
    )]
    BadSignature,
}

/// The exact bytes signed (before the domain prefix).
#[must_use]
pub fn message(
    registry: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: i64,
    nonce: &str,
) -> Vec<u8> {
    let digest = B64.encode(Sha256::digest(body));
    format!("{method}\n{path_and_query}\n{digest}\n{timestamp}\n{nonce}\n{registry}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = "5f0c";

    fn sample() -> (Identity, Signed) {
        let id = Identity::generate();
        let signed = Signed::sign(&id, REGISTRY, "PUT", "/v1/agents/x", b"{}", 1_700_000_000);
        (id, signed)
    }

    #[test]
    fn a_signature_verifies_through_the_headers() {
        let (_, signed) = sample();
        let headers = signed.headers();
        let parsed = Signed::from_headers(|name| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        })
        .expect("headers parse");
        assert_eq!(parsed, signed);
        assert_eq!(
            parsed.verify(REGISTRY, "PUT", "/v1/agents/x", b"{}"),
            Ok(())
        );
    }

    #[test]
    fn registry_method_path_body_time_and_nonce_are_all_covered() {
        let (_, signed) = sample();
        assert_eq!(
            signed.verify(REGISTRY, "POST", "/v1/agents/x", b"{}"),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            signed.verify(REGISTRY, "PUT", "/v1/agents/y", b"{}"),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            signed.verify(REGISTRY, "PUT", "/v1/agents/x", b"{ }"),
            Err(SignatureError::BadSignature)
        );
        let later = Signed {
            timestamp: signed.timestamp + 1,
            ..signed.clone()
        };
        assert_eq!(
            later.verify(REGISTRY, "PUT", "/v1/agents/x", b"{}"),
            Err(SignatureError::BadSignature)
        );
        let other_nonce = Signed {
            nonce: "AAAAAAAAAAAA".into(),
            ..signed.clone()
        };
        assert_eq!(
            other_nonce.verify(REGISTRY, "PUT", "/v1/agents/x", b"{}"),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            signed.verify("another registry", "PUT", "/v1/agents/x", b"{}"),
            Err(SignatureError::BadSignature),
            "a request to one registry does not verify at another"
        );
        let impostor = Signed {
            agent: Identity::generate().peer_id(),
            ..signed
        };
        assert_eq!(
            impostor.verify(REGISTRY, "PUT", "/v1/agents/x", b"{}"),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        assert_eq!(
            Signed::from_headers(|_| None),
            Err(SignatureError::Missing(AGENT))
        );
        let short = |name: &str| match name {
            AGENT => Some("12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"),
            TIMESTAMP => Some("1"),
            NONCE => Some("short"),
            _ => Some("x"),
        };
        assert!(matches!(
            Signed::from_headers(short),
            Err(SignatureError::Malformed(_))
        ));
    }
}
