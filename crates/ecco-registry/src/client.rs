//! The registry client: what an agent uses to register, heartbeat, search
//! and report feedback. HTTP/1.1, over TLS for `https://` registries (the
//! system's trusted roots, plus any the caller adds for a private CA); every
//! write is signed with the agent's identity.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecco_core::decoded::Cost;
use ecco_identity::{Identity, PeerId};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::signing::Signed;
use crate::wire::{
    AgentDetail, ErrorBody, Feedback, FeedbackEntry, Heartbeat, Page, Registration, SearchHit,
    Status,
};

/// Largest response body read, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Most memory a response may take once decoded, estimated before decoding
/// ([`ecco_core::decoded::Cost`]). The body limit does not bound memory: 4 MiB
/// of `{"":0}` decodes into over 300 MiB. Ordinary answers take at most about
/// twelve times their size, within this limit.
pub const MAX_RESPONSE_MEMORY: u64 = 64 * 1024 * 1024;
/// Default time limit of one call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a registry call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The registry URL is not `http://host:port` or `https://host:port`.
    #[error("invalid registry URL {0:?}: expected http://host:port or https://host:port")]
    InvalidUrl(String),
    /// A root certificate given for the registry's TLS is not usable.
    #[error("invalid registry root certificate: {0}")]
    InvalidCertificate(String),
    /// The registry could not be reached.
    #[error("registry unreachable: {0}")]
    Unreachable(String),
    /// The registry did not answer in time.
    #[error("registry did not answer within {0:?}")]
    Timeout(Duration),
    /// The registry refused the call.
    #[error("registry refused ({status} {code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error code.
        code: String,
        /// The registry's explanation.
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from the registry: {0}")]
    Decode(String),
}

impl ClientError {
    /// Whether trying again later may help (the registry is down or busy),
    /// as opposed to a refusal that will repeat.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::Timeout(_) => true,
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            Self::InvalidUrl(_) | Self::InvalidCertificate(_) | Self::Decode(_) => false,
        }
    }
}

/// A registry client, acting as one agent. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    // The roots trusted for https, beyond the system's.
    extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    identity: Identity,
    read_token: Option<String>,
    timeout: Duration,
    // The registry's id, which signed writes cover: read from `/health` on
    // the first write, shared by clones.
    registry: Arc<Mutex<Option<Arc<str>>>>,
}

/// An error and its causes, `a: b: c`: hyper's own message ("client error
/// (Connect)") says little; the cause (a refused connection, a certificate
/// from an unknown issuer) is what the caller needs.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The system's trusted roots, read once per process.
fn native_roots() -> &'static [rustls_pki_types::CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<rustls_pki_types::CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::warn!(%error, "some system root certificates could not be read");
        }
        loaded.certs
    })
}

/// An HTTP/1.1 client for `http` and `https` URLs trusting the system's roots
/// and `extra`.
fn http_client(
    extra: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    // A system root that does not parse is skipped, as browsers do.
    let (_, _) = roots.add_parsable_certificates(native_roots().iter().cloned());
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| ClientError::InvalidCertificate(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::InvalidCertificate(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(HttpClient::builder(TokioExecutor::new()).build(connector))
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("agent", &self.identity.peer_id())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the registry at `url` (`http://host:port` or
    /// `https://host:port`), signing as `identity`. An `https` registry must
    /// present a certificate from a root the system trusts, or one added with
    /// [`Client::with_root_certificates`].
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`].
    pub fn new(url: &str, identity: Identity) -> Result<Self, ClientError> {
        let base = url.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|_| ClientError::InvalidUrl(url.to_owned()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https"))
            || uri.authority().is_none()
            || !matches!(uri.path(), "" | "/")
        {
            return Err(ClientError::InvalidUrl(url.to_owned()));
        }
        Ok(Self {
            base,
            http: http_client(&[])?,
            extra_roots: Vec::new(),
            identity,
            read_token: None,
            timeout: DEFAULT_TIMEOUT,
            registry: Arc::default(),
        })
    }

    /// Also trusts the root certificates in `pem` (one or more PEM
    /// `CERTIFICATE` blocks) for an `https` registry: a private or
    /// air-gapped deployment's own CA.
    ///
    /// # Errors
    /// [`ClientError::InvalidCertificate`] if `pem` holds no certificate or
    /// one that cannot be a root.
    pub fn with_root_certificates(mut self, pem: &[u8]) -> Result<Self, ClientError> {
        use rustls_pki_types::pem::PemObject as _;
        let mut found = Vec::new();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
            found.push(cert.map_err(|e| ClientError::InvalidCertificate(e.to_string()))?);
        }
        if found.is_empty() {
            return Err(ClientError::InvalidCertificate(
                "no PEM CERTIFICATE block found".to_owned(),
            ));
        }
        self.extra_roots.extend(found);
        self.http = http_client(&self.extra_roots)?;
        Ok(self)
    }

    /// Sends `Authorization: Bearer <token>` with reads (private registries).
    #[must_use]
    pub fn with_read_token(mut self, token: impl Into<String>) -> Self {
        self.read_token = Some(token.into());
        self
    }

    /// Sets the time limit of each call.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The registry's base URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The agent this client signs as.
    #[must_use]
    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// Registers this agent, or replaces its registration.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn register(&self, registration: &Registration) -> Result<AgentDetail, ClientError> {
        let path = format!("/v1/agents/{}", self.peer_id());
        self.signed(Method::PUT, &path, Some(registration)).await
    }

    /// Sends a heartbeat, with new addresses if they changed.
    ///
    /// # Errors
    /// [`ClientError`]; a 404 means the registry forgot this agent: register again.
    pub async fn heartbeat(
        &self,
        addresses: Option<Vec<String>>,
    ) -> Result<AgentDetail, ClientError> {
        let path = format!("/v1/agents/{}/heartbeat", self.peer_id());
        self.signed(Method::POST, &path, Some(&Heartbeat { addresses }))
            .await
    }

    /// Deregisters this agent.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn deregister(&self) -> Result<(), ClientError> {
        let path = format!("/v1/agents/{}", self.peer_id());
        self.signed::<(), serde_json::Value>(Method::DELETE, &path, None)
            .await
            .map(|_| ())
    }

    /// Reports how an interaction went, with the receipt the agent gave.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn feedback(&self, feedback: &Feedback) -> Result<FeedbackEntry, ClientError> {
        self.signed(Method::POST, "/v1/feedback", Some(feedback))
            .await
    }

    /// Searches agents with a query in the SDK's text syntax.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn search(
        &self,
        query: &str,
        page: u32,
        per_page: u32,
    ) -> Result<Page<SearchHit>, ClientError> {
        let qs = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", query)
            .append_pair("page", &page.to_string())
            .append_pair("per_page", &per_page.to_string())
            .finish();
        self.read(&format!("/v1/agents?{qs}")).await
    }

    /// One agent's detail.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn agent(&self, peer: &PeerId) -> Result<AgentDetail, ClientError> {
        self.read(&format!("/v1/agents/{peer}")).await
    }

    /// The registry's health.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn health(&self) -> Result<Status, ClientError> {
        self.read("/health").await
    }

    async fn read<R: DeserializeOwned>(&self, path: &str) -> Result<R, ClientError> {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.read_token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::InvalidUrl(e.to_string()))?;
        self.send(request).await
    }

    /// The registry's id, read once from `/health` (again when `refresh`).
    async fn registry_id(&self, refresh: bool) -> Result<Arc<str>, ClientError> {
        if !refresh
            && let Some(id) = self
                .registry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        {
            return Ok(id);
        }
        let id: Arc<str> = Arc::from(self.health().await?.registry);
        *self.registry.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
        Ok(id)
    }

    async fn signed<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, ClientError> {
        let body = Bytes::from(match body {
            Some(body) => {
                serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?
            }
            None => Vec::new(),
        });
        let registry = self.registry_id(false).await?;
        match self.send(self.sign(&registry, &method, path, &body)?).await {
            // The registry behind this URL changed (a new database): learn
            // its id and try once more.
            Err(refused @ ClientError::Api { status: 401, .. }) if matches!(&refused, ClientError::Api { code, .. } if code == "bad_signature") =>
            {
                let fresh = self.registry_id(true).await?;
                if fresh == registry {
                    return Err(refused);
                }
                self.send(self.sign(&fresh, &method, path, &body)?).await
            }
            outcome => outcome,
        }
    }

    /// A request to `registry` signed now, with a fresh nonce.
    fn sign(
        &self,
        registry: &str,
        method: &Method,
        path: &str,
        body: &Bytes,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signed = Signed::sign(
            &self.identity,
            registry,
            method.as_str(),
            path,
            body,
            i64::try_from(now).unwrap_or(0),
        );
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base));
        for (name, value) in signed.headers() {
            request = request.header(name, value);
        }
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        request
            .body(Full::new(body.clone()))
            .map_err(|e| ClientError::InvalidUrl(e.to_string()))
    }

    async fn send<R: DeserializeOwned>(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<R, ClientError> {
        let call = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| ClientError::Unreachable(with_causes(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        // Not transient: asking again brings the same answer.
                        ClientError::Decode(format!(
                            "the answer is longer than {MAX_RESPONSE_BYTES} bytes"
                        ))
                    } else {
                        ClientError::Unreachable(with_causes(&*e))
                    }
                })?
                .to_bytes();
            Ok::<_, ClientError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;
        if status.is_success() {
            // 204 carries no body; callers that expect one get a decode error.
            let body: &[u8] = if status == StatusCode::NO_CONTENT {
                b"null"
            } else {
                &body
            };
            return decode(body);
        }
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => ClientError::Api {
                status: status.as_u16(),
                code: e.error.code,
                message: e.error.message,
            },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                code: "http".to_owned(),
                message: String::from_utf8_lossy(&body).chars().take(200).collect(),
            },
        })
    }
}

/// Decodes a response if it fits [`MAX_RESPONSE_MEMORY`] once decoded: a
/// registry, or whatever answers at its address, must not make the client
/// allocate hundreds of times what it sent.
fn decode<R: DeserializeOwned>(body: &[u8]) -> Result<R, ClientError> {
    let cost: Cost =
        serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))?;
    if cost.bytes() > MAX_RESPONSE_MEMORY {
        return Err(ClientError::Decode(format!(
            "the answer would take {} bytes of memory once decoded, over the limit of {MAX_RESPONSE_MEMORY}",
            cost.bytes()
        )));
    }
    serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))
}
