//! The registry client: what an agent uses to register, heartbeat, search
//! and report feedback. Plain HTTP/1.1 (put TLS in front of a public
//! registry); every write is signed with the agent's identity.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecco_identity::{Identity, PeerId};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri};
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
/// Default time limit of one call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a registry call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The registry URL is not `http://host:port`.
    #[error("invalid registry URL {0:?}: expected http://host:port")]
    InvalidUrl(String),
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
            Self::InvalidUrl(_) | Self::Decode(_) => false,
        }
    }
}

/// A registry client, acting as one agent. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: HttpClient<HttpConnector, Full<Bytes>>,
    identity: Identity,
    read_token: Option<String>,
    timeout: Duration,
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
    /// A client of the registry at `url` (`http://host:port`), signing as
    /// `identity`.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`].
    pub fn new(url: &str, identity: Identity) -> Result<Self, ClientError> {
        let base = url.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|_| ClientError::InvalidUrl(url.to_owned()))?;
        if uri.scheme_str() != Some("http")
            || uri.authority().is_none()
            || !matches!(uri.path(), "" | "/")
        {
            return Err(ClientError::InvalidUrl(url.to_owned()));
        }
        let http = HttpClient::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            base,
            http,
            identity,
            read_token: None,
            timeout: DEFAULT_TIMEOUT,
        })
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

    async fn signed<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, ClientError> {
        let body = match body {
            Some(body) => {
                serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?
            }
            None => Vec::new(),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signed = Signed::sign(
            &self.identity,
            method.as_str(),
            path,
            &body,
            i64::try_from(now).unwrap_or(0),
        );
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in signed.headers() {
            request = request.header(name, value);
        }
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::InvalidUrl(e.to_string()))?;
        self.send(request).await
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
                .map_err(|e| ClientError::Unreachable(e.to_string()))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| ClientError::Unreachable(e.to_string()))?
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
            return serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()));
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
