//! `/v1/clients`, `/v1/servers`, `/v1/events`, `/v1/config`: what pgtide holds and what
//! happened, read-only (killing a client is refused until pool-core can do it).

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use pgtide_pool_core::FailureClass;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::dto::{client_state_name, ClientDto, EventDto, ServerDto};
use crate::error::ApiError;
use crate::state::AdminState;

/// Filters of `GET /v1/clients`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFilter {
    /// `database/user`.
    pool: Option<String>,
    /// `idle`, `waiting` or `active`.
    state: Option<String>,
}

/// `{"clients": [...]}`.
#[derive(Debug, Serialize)]
pub struct ClientList {
    clients: Vec<ClientDto>,
}

/// Connected (logged-in) clients.
pub async fn clients(
    State(state): State<AdminState>,
    filter: Result<Query<ClientFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ClientList>, ApiError> {
    let Query(filter) = filter.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if let Some(s) = &filter.state {
        if !["idle", "waiting", "active"].contains(&s.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "state {s:?}: expected idle, waiting or active"
            )));
        }
    }
    let list = state.proxy().shared().registry.list();
    let clients = list
        .iter()
        .filter(|c| {
            filter.pool.as_deref().is_none_or(|p| {
                p.split_once('/')
                    .is_some_and(|(db, u)| db == c.info.database && u == c.info.user)
            })
        })
        .filter(|c| {
            filter
                .state
                .as_deref()
                .is_none_or(|s| s == client_state_name(&c.state))
        })
        .map(ClientDto::from)
        .collect();
    Ok(Json(ClientList { clients }))
}

/// Killing a client needs a hook pool-core does not have yet: refused with 501.
pub async fn kill_client(
    State(state): State<AdminState>,
    Extension(_caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Result<Json<()>, ApiError> {
    if !state
        .proxy()
        .shared()
        .registry
        .list()
        .iter()
        .any(|c| c.id == id)
    {
        return Err(ApiError::not_found(format!("no client {id}")));
    }
    Err(ApiError::NotImplemented(format!(
        "killing client {id} is not supported yet: pool-core has no way to end one session from outside"
    )))
}

/// `{"servers": [...]}`.
#[derive(Debug, Serialize)]
pub struct ServerList {
    servers: Vec<ServerDto>,
}

/// Filters of `GET /v1/servers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFilter {
    /// `database/user`.
    pool: Option<String>,
}

/// Open server connections.
pub async fn servers(
    State(state): State<AdminState>,
    filter: Result<Query<ServerFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ServerList>, ApiError> {
    let Query(filter) = filter.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let snap = state.proxy().shared().snapshot(u64::MAX);
    let servers = snap
        .servers
        .iter()
        .filter(|s| filter.pool.as_deref().is_none_or(|p| p == s.pool))
        .map(ServerDto::from)
        .collect();
    Ok(Json(ServerList { servers }))
}

/// Events returned by one call at most.
pub const MAX_EVENTS: usize = 1000;

/// Filters and cursor of `GET /v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// Only events after this sequence number (the previous answer's `next`).
    since: Option<u64>,
    /// At most this many (default and cap [`MAX_EVENTS`]).
    limit: Option<usize>,
    /// A failure class.
    class: Option<String>,
    /// `database/user` (or a server address for breaker events).
    pool: Option<String>,
    /// `failure`, `breaker_open`, `breaker_closed`, `slow_query`.
    kind: Option<String>,
}

/// A page of events, oldest first.
#[derive(Debug, Serialize)]
pub struct EventPage {
    events: Vec<EventDto>,
    /// Pass as `since` for the next page.
    next: u64,
}

/// Recent events (failures, breaker changes, slow queries), oldest first, paged by sequence
/// number.
pub async fn events(
    State(state): State<AdminState>,
    filter: Result<Query<EventFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    let Query(f) = filter.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if let Some(c) = &f.class {
        if !FailureClass::ALL.iter().any(|k| k.as_str() == c) {
            return Err(ApiError::BadRequest(format!(
                "class {c:?} is not a failure class (see docs/failures.md)"
            )));
        }
    }
    if let Some(k) = &f.kind {
        if !["failure", "breaker_open", "breaker_closed", "slow_query"].contains(&k.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "kind {k:?}: expected failure, breaker_open, breaker_closed or slow_query"
            )));
        }
    }
    let since = f.since.unwrap_or(0);
    let limit = f.limit.unwrap_or(MAX_EVENTS).clamp(1, MAX_EVENTS);
    let all = state.proxy().shared().events.since(since, usize::MAX);
    let mut next = since;
    let mut events = Vec::new();
    for e in &all {
        if events.len() == limit {
            break;
        }
        // The cursor moves past everything looked at, matching or not.
        next = e.seq;
        let keep = f
            .class
            .as_deref()
            .is_none_or(|c| e.class.is_some_and(|k| k.as_str() == c))
            && f.pool.as_deref().is_none_or(|p| p == e.pool)
            && f.kind.as_deref().is_none_or(|k| k == e.kind.as_str());
        if keep {
            events.push(EventDto::from(e));
        }
    }
    Ok(Json(EventPage { events, next }))
}

/// The configuration in force, secrets redacted (they serialize as `<redacted>`).
pub async fn config(State(state): State<AdminState>) -> Result<Json<serde_json::Value>, ApiError> {
    let config = state.proxy().shared().config();
    serde_json::to_value(&*config)
        .map(Json)
        .map_err(|e| ApiError::Conflict(format!("the configuration does not serialize: {e}")))
}
