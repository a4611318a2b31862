//! Who may do what: signed writes, the optional read token, the admin token.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use ecco_identity::PeerId;

use crate::error::ApiError;
use crate::signing::{SignatureError, Signed};
use crate::state::{App, now_ms};

/// Checks a signed write and returns the signer. The order matters: the
/// signature is checked before the nonce is spent, so that a forger cannot
/// burn another agent's nonces.
pub(crate) async fn signer(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PeerId, ApiError> {
    let refuse = |reason: &'static str, message: String| {
        app.metrics().auth_failure(reason);
        ApiError::unauthorized(reason, message)
    };
    let signed = Signed::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .map_err(|e| {
            let reason = match e {
                SignatureError::Missing(_) => "missing_signature",
                _ => "malformed_signature",
            };
            refuse(reason, e.to_string())
        })?;
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path(), |p| p.as_str());
    signed
        .verify(app.registry_id(), method.as_str(), path, body)
        .map_err(|e| refuse("bad_signature", e.to_string()))?;
    let skew = app.config().clock_skew;
    let drift = (now_ms() / 1000).abs_diff(signed.timestamp);
    if u128::from(drift) > u128::from(skew.as_secs()) {
        return Err(refuse(
            "stale_timestamp",
            format!(
                "x-ecco-timestamp is {drift} s away from the registry's clock (at most {} s)",
                skew.as_secs()
            ),
        ));
    }
    let key = format!("{}:{}", signed.agent, signed.nonce);
    // Remember a nonce for as long as its timestamp stays acceptable.
    let fresh = app
        .shared()
        .claim(&key, skew * 2 + Duration::from_secs(1))
        .await?;
    if !fresh {
        return Err(refuse(
            "replayed_nonce",
            "this nonce was already used".to_owned(),
        ));
    }
    let limit = app.config().writes_per_minute;
    if !app
        .shared()
        .hit(
            &format!("writes:{}", signed.agent),
            limit,
            Duration::from_secs(60),
        )
        .await?
    {
        return Err(ApiError::rate_limited(format!(
            "at most {limit} signed writes per minute per agent"
        )));
    }
    Ok(signed.agent)
}

/// Whether the presented bearer token is `expected`. Compares SHA-256
/// digests, so that the time taken says nothing about how much of the token
/// a guess got right.
fn token_matches(presented: Option<&str>, expected: &str) -> bool {
    use sha2::{Digest as _, Sha256};
    presented.is_some_and(|p| Sha256::digest(p.as_bytes()) == Sha256::digest(expected.as_bytes()))
}

/// Checks the read token, when the operator set one.
pub(crate) fn reader(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    match &app.config().read_token {
        None => Ok(()),
        Some(token) if token_matches(bearer(headers), token) => Ok(()),
        Some(_) => {
            app.metrics().auth_failure("read_token");
            Err(ApiError::unauthorized(
                "read_token",
                "this registry needs Authorization: Bearer <read token>",
            ))
        }
    }
}

/// Checks the operator token.
pub(crate) fn admin(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    match &app.config().admin_token {
        None => Err(ApiError::forbidden(
            "the admin API is disabled: no operator token is configured",
        )),
        Some(token) if token_matches(bearer(headers), token) => Ok(()),
        Some(_) => {
            app.metrics().auth_failure("admin_token");
            Err(ApiError::unauthorized(
                "admin_token",
                "admin endpoints need Authorization: Bearer <operator token>",
            ))
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Parses a peer id from the path.
pub(crate) fn peer_in_path(raw: &str) -> Result<PeerId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request("bad_peer_id", format!("{raw:?} is not a peer id")))
}

/// A write as received: what its signature covers.
pub(crate) struct Write {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    /// The raw body (within the body limit).
    pub(crate) body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Write {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let method = request.method().clone();
        let uri = request.uri().clone();
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            method,
            uri,
            headers,
            body,
        })
    }
}

impl Write {
    /// The verified signer.
    pub(crate) async fn signer(&self, app: &App) -> Result<PeerId, ApiError> {
        signer(app, &self.method, &self.uri, &self.headers, &self.body).await
    }

    /// The verified signer, which must be the agent named in the path:
    /// an agent may `action` only its own record.
    pub(crate) async fn by_owner(
        &self,
        app: &App,
        raw_peer: &str,
        action: &str,
    ) -> Result<PeerId, ApiError> {
        let target = peer_in_path(raw_peer)?;
        if self.signer(app).await? != target {
            return Err(ApiError::forbidden(format!(
                "an agent may only {action} its own record"
            )));
        }
        Ok(target)
    }
}
