//! The HTTP API: [`router`] builds it, so that tests drive it without a socket.

mod agents;
mod analytics;
mod auth;
mod events;
mod feedback;
mod history;
mod ops;
mod params;
mod search;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use utoipa::OpenApi;

use crate::error::ApiError;
use crate::state::App;

pub(crate) use params::Params;

/// The OpenAPI document, generated from the handlers and wire types.
#[derive(OpenApi)]
#[openapi(
    info(title = "Ecco registry", description = "Global reputation, agent monitoring and analytics for Ecco agents. Writes are signed with the agent's Ed25519 key (see docs/REGISTRY.md)."),
    paths(
        agents::register, agents::heartbeat, agents::deregister, agents::detail, agents::feedback_about,
        agents::admin_remove, history::activity, search::search, feedback::submit,
        analytics::overview, analytics::series, analytics::top_capabilities, analytics::top_agents,
        events::stream, ops::health, ops::metrics, ops::openapi,
    ),
    components(schemas(crate::wire::ErrorBody, crate::wire::Event, crate::wire::EventKind, analytics::SeriesMetric)),
    tags((name = "agents"), (name = "feedback"), (name = "analytics"), (name = "operations")),
)]
pub struct ApiDoc;

/// The registry's router: the `/v1` API, `/health`, `/metrics`,
/// `/openapi.json` and the dashboard at `/`.
pub fn router(app: App) -> Router {
    let max_body = app.config().max_body_bytes;
    Router::new()
        .route("/v1/agents", get(search::search))
        .route(
            "/v1/agents/{peer_id}",
            get(agents::detail)
                .put(agents::register)
                .delete(agents::deregister),
        )
        .route("/v1/agents/{peer_id}/heartbeat", post(agents::heartbeat))
        .route("/v1/agents/{peer_id}/feedback", get(agents::feedback_about))
        .route("/v1/agents/{peer_id}/activity", get(history::activity))
        .route("/v1/feedback", post(feedback::submit))
        .route("/v1/analytics/overview", get(analytics::overview))
        .route("/v1/analytics/series", get(analytics::series))
        .route(
            "/v1/analytics/top-capabilities",
            get(analytics::top_capabilities),
        )
        .route("/v1/analytics/top-agents", get(analytics::top_agents))
        .route("/v1/events", get(events::stream))
        .route("/v1/admin/agents/{peer_id}", delete(agents::admin_remove))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(crate::dashboard::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn(json_errors))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// Counts and times every request by route.
async fn observe(State(app): State<App>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // The route template, never the raw path, keeps the label set bounded.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    app.metrics().observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Longest framework error text kept, in bytes (they are one sentence).
const MAX_FRAMEWORK_ERROR: usize = 4096;

/// Rewrites the framework's own plain-text errors (a body over the limit,
/// a method the route lacks, a path that does not decode) as the API's JSON
/// error, so that every 4xx and 5xx a client sees has the same shape. The
/// headers stay: a 405 keeps its `Allow`.
async fn json_errors(request: Request, next: Next) -> Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse as _;
    use http_body_util::BodyExt as _;

    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = http_body_util::Limited::new(body, MAX_FRAMEWORK_ERROR)
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
        .unwrap_or_default();
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "http_error",
    };
    let message = match (status, text.is_empty()) {
        (StatusCode::METHOD_NOT_ALLOWED, _) => {
            "this endpoint does not take that method; see the Allow header".to_owned()
        }
        (StatusCode::PAYLOAD_TOO_LARGE, _) => format!("{text} (see the registry's max_body_bytes)"),
        (_, true) => status.canonical_reason().unwrap_or("error").to_owned(),
        (_, false) => text,
    };
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut rewritten = ApiError::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        rewritten.headers_mut().insert(name.clone(), value.clone());
    }
    rewritten
}

/// Parses a JSON body strictly: unknown fields and wrong types are a 422
/// naming the problem; broken JSON is a 400.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::invalid(e.to_string()),
            Category::Io | Category::Syntax | Category::Eof => {
                ApiError::bad_request("bad_json", e.to_string())
            }
        }
    })
}

/// Checks `page` (from 1) and `per_page` against the cap.
pub(crate) fn page_bounds(
    app: &App,
    page: Option<u32>,
    per_page: Option<u32>,
) -> Result<(u32, u32), ApiError> {
    let cap = app.config().max_per_page;
    let page = page.unwrap_or(1);
    let per_page = per_page.unwrap_or(20.min(cap));
    if page == 0 || page > 1_000_000 {
        return Err(ApiError::bad_request(
            "bad_page",
            "page must be 1 to 1000000",
        ));
    }
    if per_page == 0 || per_page > cap {
        return Err(ApiError::bad_request(
            "bad_page",
            format!("per_page must be 1 to {cap}"),
        ));
    }
    Ok((page, per_page))
}

/// The four headers of a signed write (see docs/REGISTRY.md).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Only describes the headers to the OpenAPI document.
pub(crate) struct SignatureHeaders {
    /// The signer's peer id.
    #[param(rename = "x-ecco-agent")]
    agent: String,
    /// Unix time of signing, in seconds (within the registry's clock skew).
    #[param(rename = "x-ecco-timestamp")]
    timestamp: i64,
    /// A fresh random nonce, 8 to 64 visible ASCII bytes, good once.
    #[param(rename = "x-ecco-nonce")]
    nonce: String,
    /// Ed25519 signature, base64url without padding.
    #[param(rename = "x-ecco-signature")]
    signature: String,
}
