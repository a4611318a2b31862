//! Agent search with the SDK's query language, ranked by match and reputation.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use ecco_core::{Capability, Matcher, Query};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Params, auth};
use crate::error::ApiError;
use crate::state::{App, now_ms};
use crate::wire::{ErrorBody, Health, Page, SearchHit};

/// Longest query text accepted, in bytes.
const MAX_QUERY_LEN: usize = 4096;
/// Weight of the match score in the rank; reputation gets the rest.
const MATCH_WEIGHT: f64 = 0.7;

/// Search parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct SearchParams {
    /// A query in the SDK's text syntax, such as `llm/* +summarize price<=0.01`;
    /// absent lists every agent.
    q: Option<String>,
    /// Only agents with this health.
    health: Option<Health>,
    /// Page number, from 1.
    page: Option<u32>,
    /// Results per page (1 to the registry's cap, 100 by default).
    per_page: Option<u32>,
}

/// Search agents: capability type, features, constraints and version in the
/// SDK's query language; results ranked by `0.7 × match + 0.3 × reputation`.
#[utoipa::path(
    get, path = "/v1/agents", tag = "agents",
    params(SearchParams),
    responses((status = 200, body = Page<SearchHit>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
)]
pub(super) async fn search(
    State(app): State<App>,
    Params(params): Params<SearchParams>,
    headers: HeaderMap,
) -> Result<Json<Page<SearchHit>>, ApiError> {
    auth::reader(&app, &headers)?;
    let (page, per_page) = super::page_bounds(&app, params.page, params.per_page)?;
    let query = match params.q.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) if text.len() > MAX_QUERY_LEN => {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("q is longer than {MAX_QUERY_LEN} bytes"),
            ));
        }
        Some(text) => Some(
            text.parse::<Query>()
                .map_err(|e| ApiError::bad_request("bad_query", format!("q: {e}")))?,
        ),
    };
    let catalog = app.catalog().await?;
    let book = app.book().await?;
    let now = now_ms();
    // The best-matching capability of each agent, by position in the catalog.
    let mut best: HashMap<usize, (f64, &Capability)> = HashMap::new();
    match &query {
        Some(query) => {
            for m in Matcher::default().rank_in(catalog.index(), query) {
                if let Some(i) = catalog.position(m.offer.agent.as_str()) {
                    best.entry(i).or_insert((m.score, &m.offer.capability));
                }
            }
        }
        None => {
            for (i, agent) in catalog.agents().iter().enumerate() {
                if let Some(first) = agent.document.capabilities().first() {
                    best.insert(i, (1.0, first));
                }
            }
        }
    }
    let agents = catalog.agents();
    // Rank every candidate, then build hits for the requested page only.
    struct Candidate<'a> {
        i: usize,
        score: f64,
        capability: &'a Capability,
        health: Health,
        reputation: f64,
        rank: f64,
    }
    let mut candidates: Vec<Candidate<'_>> = best
        .into_iter()
        .filter_map(|(i, (score, capability))| {
            let health = app.health(catalog.last_seen(i), now);
            if params.health.is_some_and(|wanted| wanted != health) {
                return None;
            }
            let reputation = book.score(&agents[i].peer_id);
            Some(Candidate {
                i,
                score,
                capability,
                health,
                reputation,
                rank: MATCH_WEIGHT * score + (1.0 - MATCH_WEIGHT) * reputation / 100.0,
            })
        })
        .collect();
    candidates.sort_by(|a, b| {
        b.rank
            .total_cmp(&a.rank)
            .then_with(|| agents[a.i].peer_id.cmp(&agents[b.i].peer_id))
    });
    let total = candidates.len() as u64;
    let start = usize::try_from(u64::from(page - 1) * u64::from(per_page)).unwrap_or(usize::MAX);
    let items = candidates
        .into_iter()
        .skip(start)
        .take(per_page as usize)
        .map(|c| {
            let agent = &agents[c.i];
            SearchHit {
                peer_id: agent.peer_id.clone(),
                name: agent.name.clone(),
                addresses: app.publishable(agent.addresses.clone()),
                health: c.health,
                reputation: c.reputation,
                match_score: c.score,
                rank: c.rank,
                capability: c.capability.clone(),
            }
        })
        .collect();
    Ok(Json(Page {
        items,
        total,
        page,
        per_page,
    }))
}
