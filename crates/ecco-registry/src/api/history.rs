//! An agent's health history: the minutes it was heard from, per bucket.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Params, auth};
use crate::error::ApiError;
use crate::state::{App, now_ms};
use crate::wire::{Activity, ErrorBody, Presence};

/// Longest history, in hours (a week).
const MAX_HOURS: u32 = 168;
/// Buckets per history: each is `hours` minutes wide.
const BUCKETS: i64 = 60;

/// How far back.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct ActivityParams {
    /// Hours of history, 1 to 168; default 24. The history has 60 buckets of
    /// `hours` minutes each.
    #[param(minimum = 1, maximum = 168)]
    hours: Option<u32>,
}

/// When an agent was heard from (registrations and heartbeats) over the last
/// hours: per bucket, the minutes with a sign of life and their share of the
/// bucket.
#[utoipa::path(
    get, path = "/v1/agents/{peer_id}/activity", tag = "agents",
    params(("peer_id" = String, Path, description = "The agent's peer id (base58; Ed25519 ids start with 12D3KooW)", pattern = r"^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$"), ActivityParams),
    responses(
        (status = 200, body = Activity),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
)]
pub(super) async fn activity(
    State(app): State<App>,
    Path(peer_id): Path<String>,
    Params(params): Params<ActivityParams>,
    headers: HeaderMap,
) -> Result<Json<Activity>, ApiError> {
    auth::reader(&app, &headers)?;
    let target = auth::peer_in_path(&peer_id)?;
    let hours = params.hours.unwrap_or(24);
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(ApiError::bad_request(
            "bad_hours",
            format!("hours must be 1 to {MAX_HOURS}"),
        ));
    }
    let peer_id = target.to_base58();
    if app.store().agent(&peer_id).await?.is_none() {
        return Err(ApiError::not_found("this agent is not registered"));
    }
    // One bucket is `hours` minutes, aligned on multiples of its width so that
    // successive calls see the same buckets.
    let width = i64::from(hours);
    let now_minute = now_ms().div_euclid(60_000);
    let last = now_minute.div_euclid(width) * width;
    let first = last - (BUCKETS - 1) * width;
    let found: BTreeMap<i64, u64> = app
        .store()
        .activity_of(&peer_id, first, width)
        .await?
        .into_iter()
        .map(|p| (p.t_ms, p.value))
        .collect();
    let buckets = (0..BUCKETS)
        .map(|i| {
            let start = first + i * width;
            let minutes = found.get(&(start * 60_000)).copied().unwrap_or(0);
            // The newest bucket is still filling: compare with what elapsed.
            let elapsed = (now_minute - start + 1).clamp(1, width);
            Presence {
                t_ms: start * 60_000,
                minutes: u32::try_from(minutes).unwrap_or(u32::MAX),
                share: (minutes as f64 / elapsed as f64).clamp(0.0, 1.0),
            }
        })
        .collect();
    Ok(Json(Activity {
        peer_id,
        hours,
        bucket_secs: hours * 60,
        buckets,
    }))
}
