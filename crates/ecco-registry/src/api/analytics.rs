//! Analytics: health now, time series, top capabilities and agents.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Params, auth};
use crate::error::ApiError;
use crate::state::{App, now_ms};
use crate::store::Metric;
use crate::wire::{
    ErrorBody, Health, HealthCounts, Overview, Point, Series, TopAgent, TopCapability,
};

/// Most buckets one series may have.
const MAX_BUCKETS: i64 = 2000;
/// Most entries a top list may have.
const MAX_TOP: u32 = 100;

/// Agents by health now, and how many are registered.
#[utoipa::path(get, path = "/v1/analytics/overview", tag = "analytics",
    responses((status = 200, body = Overview), (status = 401, body = ErrorBody)))]
pub(super) async fn overview(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<Json<Overview>, ApiError> {
    auth::reader(&app, &headers)?;
    let catalog = app.catalog().await?;
    let now = now_ms();
    let mut counts = HealthCounts::default();
    for i in 0..catalog.agents().len() {
        match app.health(catalog.last_seen(i), now) {
            Health::Online => counts.online += 1,
            Health::Stale => counts.stale += 1,
            Health::Offline => counts.offline += 1,
        }
    }
    Ok(Json(Overview {
        agents: counts,
        registered: catalog.agents().len() as u64,
    }))
}

/// Which series.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum SeriesMetric {
    /// Distinct agents heard from (registration or heartbeat) per bucket.
    ActiveAgents,
    /// First registrations.
    Registrations,
    /// Interactions reported through feedback.
    Requests,
    /// Feedback with a star rating.
    Ratings,
}

/// Series parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct SeriesParams {
    /// The metric.
    metric: SeriesMetric,
    /// Bucket width in seconds (60 to 86400; default 3600).
    #[param(minimum = 60, maximum = 86400)]
    bucket_secs: Option<u32>,
    /// How far back, in seconds (default one day; at most 2000 buckets).
    window_secs: Option<u32>,
}

/// A time series of active agents, registrations, requests or ratings.
#[utoipa::path(get, path = "/v1/analytics/series", tag = "analytics", params(SeriesParams),
    responses((status = 200, body = Series), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn series(
    State(app): State<App>,
    Params(params): Params<SeriesParams>,
    headers: HeaderMap,
) -> Result<Json<Series>, ApiError> {
    auth::reader(&app, &headers)?;
    let bucket_secs = params.bucket_secs.unwrap_or(3600);
    if !(60..=86_400).contains(&bucket_secs) {
        return Err(ApiError::bad_request(
            "bad_bucket",
            "bucket_secs must be 60 to 86400",
        ));
    }
    let window_secs = i64::from(params.window_secs.unwrap_or(86_400));
    let bucket_ms = i64::from(bucket_secs) * 1000;
    let buckets = ((window_secs * 1000 + bucket_ms - 1) / bucket_ms).max(1);
    if buckets > MAX_BUCKETS {
        return Err(ApiError::bad_request(
            "bad_window",
            format!("window_secs / bucket_secs must be at most {MAX_BUCKETS}"),
        ));
    }
    let now = now_ms();
    let last = now.div_euclid(bucket_ms) * bucket_ms;
    let first = last - (buckets - 1) * bucket_ms;
    let store = app.store();
    let (name, found) = match params.metric {
        SeriesMetric::ActiveAgents => (
            "active_agents",
            store.active_series(first, bucket_ms).await?,
        ),
        SeriesMetric::Registrations => (
            "registrations",
            store
                .series(Metric::Registrations, first, bucket_ms)
                .await?,
        ),
        SeriesMetric::Requests => (
            "requests",
            store.series(Metric::Requests, first, bucket_ms).await?,
        ),
        SeriesMetric::Ratings => (
            "ratings",
            store.series(Metric::Ratings, first, bucket_ms).await?,
        ),
    };
    let found: BTreeMap<i64, u64> = found.into_iter().map(|p| (p.t_ms, p.value)).collect();
    let points = (0..buckets)
        .map(|i| {
            let t_ms = first + i * bucket_ms;
            Point {
                t_ms,
                value: found.get(&t_ms).copied().unwrap_or(0),
            }
        })
        .collect();
    Ok(Json(Series {
        metric: name.to_owned(),
        bucket_secs,
        points,
    }))
}

/// How many entries.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct TopParams {
    /// 1 to 100; default 10.
    limit: Option<u32>,
}

fn top_limit(limit: Option<u32>) -> Result<usize, ApiError> {
    match limit.unwrap_or(10) {
        n @ 1..=MAX_TOP => Ok(n as usize),
        _ => Err(ApiError::bad_request(
            "bad_limit",
            format!("limit must be 1 to {MAX_TOP}"),
        )),
    }
}

/// Capability types offered by the most registered agents.
#[utoipa::path(get, path = "/v1/analytics/top-capabilities", tag = "analytics", params(TopParams),
    responses((status = 200, body = Vec<TopCapability>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn top_capabilities(
    State(app): State<App>,
    Params(params): Params<TopParams>,
    headers: HeaderMap,
) -> Result<Json<Vec<TopCapability>>, ApiError> {
    auth::reader(&app, &headers)?;
    let limit = top_limit(params.limit)?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for agent in app.catalog().await?.agents() {
        let mut kinds: Vec<String> = agent
            .document
            .capabilities()
            .iter()
            .map(|c| c.kind().to_string())
            .collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            *counts.entry(kind).or_default() += 1;
        }
    }
    let mut top: Vec<TopCapability> = counts
        .into_iter()
        .map(|(capability, agents)| TopCapability { capability, agents })
        .collect();
    top.sort_by(|a, b| {
        b.agents
            .cmp(&a.agents)
            .then_with(|| a.capability.cmp(&b.capability))
    });
    top.truncate(limit);
    Ok(Json(top))
}

/// Registered agents with the best reputation.
#[utoipa::path(get, path = "/v1/analytics/top-agents", tag = "analytics", params(TopParams),
    responses((status = 200, body = Vec<TopAgent>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn top_agents(
    State(app): State<App>,
    Params(params): Params<TopParams>,
    headers: HeaderMap,
) -> Result<Json<Vec<TopAgent>>, ApiError> {
    auth::reader(&app, &headers)?;
    let limit = top_limit(params.limit)?;
    let book = app.book().await?;
    let now = now_ms();
    let catalog = app.catalog().await?;
    let mut top: Vec<TopAgent> = catalog
        .agents()
        .iter()
        .enumerate()
        .map(|(i, agent)| TopAgent {
            reputation: book.score(&agent.peer_id),
            health: app.health(catalog.last_seen(i), now),
            peer_id: agent.peer_id.clone(),
            name: agent.name.clone(),
        })
        .collect();
    top.sort_by(|a, b| {
        b.reputation
            .total_cmp(&a.reputation)
            .then_with(|| a.peer_id.cmp(&b.peer_id))
    });
    top.truncate(limit);
    Ok(Json(top))
}
