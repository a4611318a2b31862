//! Liveness, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use utoipa::OpenApi as _;

use crate::error::ApiError;
use crate::state::App;
use crate::store::Backend;
use crate::wire::{ErrorBody, Status};

/// Liveness and readiness.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Status), (status = 503, body = Status)))]
pub(super) async fn health(State(app): State<App>) -> impl IntoResponse {
    let database = match app.store().backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let ok = app.store().ping().await.is_ok();
    let status = Status {
        status: if ok { "ok" } else { "degraded" }.to_owned(),
        database: database.to_owned(),
        redis: app.shared().is_redis(),
        registry: app.registry_id().to_owned(),
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(status))
}

/// Prometheus metrics (OpenMetrics text). Behind the read token when one is
/// set: request counts by route and agent health say who uses the registry.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
        (status = 401, body = ErrorBody),
    ))]
pub(super) async fn metrics(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    super::auth::reader(&app, &headers)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics().render(),
    ))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub(super) async fn openapi() -> impl IntoResponse {
    Json(super::ApiDoc::openapi())
}
