//! Registration, heartbeats, deregistration and agent detail.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth;
use super::{Params, parse_body};
use crate::error::ApiError;
use crate::state::{App, now_ms};
use crate::store::{AgentRow, Upsert};
use crate::wire::{
    AgentDetail, ErrorBody, EventKind, FeedbackEntry, Health, Heartbeat, MAX_ADDRESS_LEN,
    MAX_ADDRESSES, MAX_NAME_LEN, Page, Registration,
};

/// Register an agent, or replace its name, capabilities and addresses.
/// Signed by the agent itself.
#[utoipa::path(
    put, path = "/v1/agents/{peer_id}", tag = "agents",
    params(("peer_id" = String, Path, description = "The agent's peer id (base58; Ed25519 ids start with 12D3KooW)", pattern = r"^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$"), super::SignatureHeaders),
    request_body = Registration,
    responses(
        (status = 201, description = "Registered", body = AgentDetail),
        (status = 200, description = "Registration replaced", body = AgentDetail),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
    ),
)]
pub(super) async fn register(
    State(app): State<App>,
    Path(peer_id): Path<String>,
    write: auth::Write,
) -> Result<(StatusCode, Json<AgentDetail>), ApiError> {
    let target = write.by_owner(&app, &peer_id, "register").await?;
    let registration: Registration = parse_body(&write.body)?;
    check_name(&registration.name)?;
    check_addresses(&registration.addresses)?;
    let addresses = app.publishable(registration.addresses);
    let peer_id = target.to_base58();
    let now = now_ms();
    let outcome = app
        .store()
        .upsert_agent(
            &peer_id,
            &registration.name,
            &registration.capabilities,
            &addresses,
            now,
        )
        .await?;
    app.catalog_changed().await;
    app.metrics().registrations.inc();
    let (status, kind) = match outcome {
        Upsert::Created => (StatusCode::CREATED, EventKind::Registered),
        Upsert::Updated => (StatusCode::OK, EventKind::Updated),
    };
    app.announce(kind, &peer_id, Some(Health::Online), None)
        .await;
    Ok((status, Json(detail_of(&app, &peer_id).await?)))
}

/// Record a heartbeat (optionally with new addresses). Signed by the agent.
#[utoipa::path(
    post, path = "/v1/agents/{peer_id}/heartbeat", tag = "agents",
    params(("peer_id" = String, Path, description = "The agent's peer id (base58; Ed25519 ids start with 12D3KooW)", pattern = r"^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$"), super::SignatureHeaders),
    request_body(content = Heartbeat, description = "May be empty"),
    responses(
        (status = 200, description = "Recorded", body = AgentDetail),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
    ),
)]
pub(super) async fn heartbeat(
    State(app): State<App>,
    Path(peer_id): Path<String>,
    write: auth::Write,
) -> Result<Json<AgentDetail>, ApiError> {
    let target = write.by_owner(&app, &peer_id, "heartbeat").await?;
    let beat: Heartbeat = if write.body.is_empty() {
        Heartbeat::default()
    } else {
        parse_body(&write.body)?
    };
    if let Some(addresses) = &beat.addresses {
        check_addresses(addresses)?;
    }
    let addresses = beat.addresses.map(|a| app.publishable(a));
    let peer_id = target.to_base58();
    let now = now_ms();
    // Health before this heartbeat, from the cache: its `last_seen` follows
    // every instance's heartbeats through the live events.
    let catalog = app.catalog().await?;
    let before = catalog
        .position(&peer_id)
        .map(|i| app.health(catalog.last_seen(i), now));
    drop(catalog);
    let Some(agent) = app
        .store()
        .heartbeat(&peer_id, addresses.as_deref(), now)
        .await?
    else {
        return Err(ApiError::not_found(
            "this agent is not registered; register it first",
        ));
    };
    if addresses.is_some() {
        app.catalog_changed().await;
    }
    app.metrics().heartbeats.inc();
    app.announce(EventKind::Heartbeat, &peer_id, Some(Health::Online), None)
        .await;
    if before.is_some_and(|h| h != Health::Online) {
        app.announce(EventKind::Health, &peer_id, Some(Health::Online), None)
            .await;
    }
    Ok(Json(detail_from(&app, agent, now).await?))
}

/// Deregister an agent. Signed by the agent. Its feedback history stays.
#[utoipa::path(
    delete, path = "/v1/agents/{peer_id}", tag = "agents",
    params(("peer_id" = String, Path, description = "The agent's peer id (base58; Ed25519 ids start with 12D3KooW)", pattern = r"^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$"), super::SignatureHeaders),
    responses(
        (status = 204, description = "Deregistered"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody),
    ),
)]
pub(super) async fn deregister(
    State(app): State<App>,
    Path(peer_id): Path<String>,
    write: auth::Write,
) -> Result<StatusCode, ApiError> {
    let target = write.by_owner(&app, &peer_id, "deregister").await?;
    remove(&app, &target.to_base58()).await
}

/// Remove an agent (operator token).
#[utoipa::path(
    delete, path = "/v1/admin/agents/{peer_id}", tag = "agents",
    params(("peer_id" = String, Path, description = "The agent's peer id (base58; Ed25519 ids start with 12D3KooW)", pattern = r"^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$")),
    security(("operator_token" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
)]
pub(super) async fn admin_remove(
    State(app): State<App>,
    Path(peer_id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    auth::admin(&app, &headers)?;
    let target = auth::peer_in_path(&peer_id)?;
    remove(&app, &target.to_base58()).await
}

async fn remove(app: &App, peer_id: &str) -> Result<StatusCode, ApiError> {
    if !app.store().deregister(peer_id, now_ms()).await? {
        return Err(ApiError::not_found("this agent is not registered"));
    }
    app.catalog_changed().await;
    app.announce(EventKind::Deregistered, peer_id, None, None)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// An agent's capabilities, addresses, health, uptime and reputation.
#[utoipa::path(
    get, path = "/v1/agents/{peer_id}", tag = "agents",
    params(("peer_id" = String, Path, description = "The agent's peer id (base58; Ed25519 ids start with 12D3KooW)", pattern = r"^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$")),
    responses(
        (status = 200, body = AgentDetail),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
)]
pub(super) async fn detail(
    State(app): State<App>,
    Path(peer_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<AgentDetail>, ApiError> {
    auth::reader(&app, &headers)?;
    let target = auth::peer_in_path(&peer_id)?;
    Ok(Json(detail_of(&app, &target.to_base58()).await?))
}

/// Pagination of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct Paging {
    /// Page number, from 1.
    page: Option<u32>,
    /// Results per page (1 to the registry's cap, 100 by default).
    per_page: Option<u32>,
}

/// Recent feedback about an agent, newest first.
#[utoipa::path(
    get, path = "/v1/agents/{peer_id}/feedback", tag = "agents",
    params(("peer_id" = String, Path, description = "The agent's peer id (base58; Ed25519 ids start with 12D3KooW)", pattern = r"^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$"), Paging),
    responses(
        (status = 200, body = Page<FeedbackEntry>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    ),
)]
pub(super) async fn feedback_about(
    State(app): State<App>,
    Path(peer_id): Path<String>,
    Params(paging): Params<Paging>,
    headers: HeaderMap,
) -> Result<Json<Page<FeedbackEntry>>, ApiError> {
    auth::reader(&app, &headers)?;
    let target = auth::peer_in_path(&peer_id)?;
    let (page, per_page) = super::page_bounds(&app, paging.page, paging.per_page)?;
    let offset = u64::from(page - 1) * u64::from(per_page);
    let (items, total) = app
        .store()
        .feedback_about(&target.to_base58(), per_page, offset)
        .await?;
    Ok(Json(Page {
        items,
        total,
        page,
        per_page,
    }))
}

/// The full detail of a registered agent.
pub(super) async fn detail_of(app: &App, peer_id: &str) -> Result<AgentDetail, ApiError> {
    let agent = app
        .store()
        .agent(peer_id)
        .await?
        .ok_or_else(|| ApiError::not_found("this agent is not registered"))?;
    detail_from(app, agent, now_ms()).await
}

/// The detail of a stored agent at `now`.
async fn detail_from(app: &App, agent: AgentRow, now: i64) -> Result<AgentDetail, ApiError> {
    let book = app.book().await?;
    Ok(AgentDetail {
        health: app.health(agent.last_seen, now),
        uptime: app.uptime(&agent, now),
        reputation: book.get(&agent.peer_id),
        peer_id: agent.peer_id,
        name: agent.name,
        capabilities: agent.document,
        // Filtered again: rows written before `public_addresses_only` was on.
        addresses: app.publishable(agent.addresses),
        registered_at_ms: agent.registered_at,
        updated_at_ms: agent.updated_at,
        last_seen_ms: agent.last_seen,
    })
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "name must be 1 to {MAX_NAME_LEN} bytes, not blank, without control characters"
        )));
    }
    Ok(())
}

fn check_addresses(addresses: &[String]) -> Result<(), ApiError> {
    if addresses.len() > MAX_ADDRESSES {
        return Err(ApiError::invalid(format!(
            "at most {MAX_ADDRESSES} addresses"
        )));
    }
    for address in addresses {
        if address.len() > MAX_ADDRESS_LEN || address.parse::<multiaddr::Multiaddr>().is_err() {
            return Err(ApiError::invalid(format!(
                "{address:?} is not a multiaddr (such as /ip4/127.0.0.1/tcp/4001), at most {MAX_ADDRESS_LEN} bytes"
            )));
        }
    }
    Ok(())
}
