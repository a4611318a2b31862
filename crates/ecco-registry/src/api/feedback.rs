//! Feedback on interactions, backed by receipts from the rated agents.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::{auth, parse_body};
use crate::error::ApiError;
use crate::state::{App, now_ms};
use crate::wire::{ErrorBody, EventKind, Feedback, FeedbackEntry};

/// Longest latency accepted, in milliseconds (one hour).
const MAX_LATENCY_MS: u32 = 3_600_000;
/// Oldest receipt accepted, in milliseconds (seven days).
const MAX_RECEIPT_AGE_MS: i64 = 7 * 24 * 3600 * 1000;

/// Report how an interaction went. Signed by the client named in the
/// receipt; one report per rater and interaction; self-rating is refused.
#[utoipa::path(
    post, path = "/v1/feedback", tag = "feedback",
    params(super::SignatureHeaders),
    request_body = Feedback,
    responses(
        (status = 201, description = "Accepted", body = FeedbackEntry),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Already reported", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
    ),
)]
pub(super) async fn submit(
    State(app): State<App>,
    write: auth::Write,
) -> Result<(StatusCode, Json<FeedbackEntry>), ApiError> {
    let rater = write.signer(&app).await?;
    let feedback: Feedback = parse_body(&write.body)?;
    let (agent, client) = feedback
        .receipt
        .verify()
        .map_err(|e| ApiError::invalid(format!("receipt: {e}")))?;
    if client != rater {
        return Err(ApiError::forbidden(
            "only the client named in the receipt may report on it",
        ));
    }
    if agent == rater {
        return Err(ApiError::invalid("an agent cannot rate itself"));
    }
    if feedback.latency_ms > MAX_LATENCY_MS {
        return Err(ApiError::invalid(format!(
            "latency_ms must be at most {MAX_LATENCY_MS}"
        )));
    }
    if feedback.rating.is_some_and(|r| !(1..=5).contains(&r)) {
        return Err(ApiError::invalid("rating must be 1 to 5"));
    }
    let now = now_ms();
    let skew = i64::try_from(app.config().clock_skew.as_millis()).unwrap_or(i64::MAX);
    let age = now.saturating_sub(feedback.receipt.issued_at_ms);
    if age > MAX_RECEIPT_AGE_MS || age < -skew {
        return Err(ApiError::invalid(
            "the receipt must be issued within the last 7 days",
        ));
    }
    let limit = app.config().feedback_per_minute;
    if !app
        .shared()
        .hit(&format!("feedback:{rater}"), limit, Duration::from_secs(60))
        .await?
    {
        return Err(ApiError::rate_limited(format!(
            "at most {limit} feedback reports per minute per rater"
        )));
    }
    let agent = agent.to_base58();
    // The cache knows nearly every agent; one registered a moment ago on
    // another instance may be only in the database.
    let known = app.catalog().await?.position(&agent).is_some();
    if !known && app.store().agent(&agent).await?.is_none() {
        return Err(ApiError::not_found("the rated agent is not registered"));
    }
    let entry = FeedbackEntry {
        rater: rater.to_base58(),
        agent: agent.clone(),
        interaction: feedback.receipt.interaction.clone(),
        capability: feedback.receipt.capability.clone(),
        success: feedback.success,
        latency_ms: feedback.latency_ms,
        rating: feedback.rating,
        at_ms: now,
    };
    if !app.store().insert_feedback(&entry).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "duplicate",
            "this interaction was already reported",
        ));
    }
    app.metrics().feedback.inc();
    app.feedback_changed();
    let score = app.book().await?.score(&agent);
    app.announce(EventKind::Reputation, &agent, None, Some(score))
        .await;
    Ok((StatusCode::CREATED, Json(entry)))
}
