//! `/v1/pools`: read pools, change their limits (runtime overrides), pause, resume, drain,
//! reconnect. A pool is named by two path segments, `{database}/{user}` (a name containing `/`
//! is percent-encoded as `%2F`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use pgtide_pool_core::overrides::OverrideError;
use pgtide_pool_core::Pool;
use serde::Serialize;
use std::sync::Arc;

use crate::audit;
use crate::auth::Caller;
use crate::dto::PoolDto;
use crate::error::ApiError;
use crate::patch;
use crate::state::AdminState;

/// `{"pools": [...]}`.
#[derive(Debug, Serialize)]
pub struct PoolList {
    pools: Vec<PoolDto>,
}

/// Every pool, by name.
pub async fn list(State(state): State<AdminState>) -> Json<PoolList> {
    let shared = state.proxy().shared();
    let snap = shared.snapshot(u64::MAX);
    let pools = snap
        .pools
        .iter()
        .map(|p| PoolDto::new(p, &shared.failures.of_pool(&p.name)))
        .collect();
    Json(PoolList { pools })
}

/// The pool's view now, or 404.
fn view(state: &AdminState, database: &str, user: &str) -> Result<PoolDto, ApiError> {
    let shared = state.proxy().shared();
    let name = format!("{database}/{user}");
    let snap = shared.snapshot(u64::MAX);
    match snap.pools.iter().find(|p| p.name == name) {
        Some(p) => Ok(PoolDto::new(p, &shared.failures.of_pool(&p.name))),
        None if shared.config().databases.contains_key(database) => Err(ApiError::not_found(format!(
            "no pool {name} yet: it is created by its first client (or by a PATCH or an action on it)"
        ))),
        None => Err(ApiError::not_found(format!(
            "no pool {name}: database {database:?} is not configured"
        ))),
    }
}

/// One pool.
pub async fn get(
    State(state): State<AdminState>,
    Path((database, user)): Path<(String, String)>,
) -> Result<Json<PoolDto>, ApiError> {
    view(&state, &database, &user).map(Json)
}

/// Changes the pool's settings live (runtime overrides; `null` removes one).
pub async fn patch(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path((database, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<PoolDto>, ApiError> {
    // Parsed whatever the Content-Type says, so `curl -d '{...}'` works as documented.
    let body: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let changes = patch::changes(&body)?;
    let shared = state.proxy().shared();
    let applied = patch::apply(shared, &database, &user, changes)?;
    let after = shared
        .limits(&database, &user)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    audit::limits_changed(&caller, &format!("{database}/{user}"), &applied, &after);
    view(&state, &database, &user).map(Json)
}

/// Removes one override: the configuration's value is in force again.
pub async fn delete_override(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path((database, user, key)): Path<(String, String, String)>,
) -> Result<Json<PoolDto>, ApiError> {
    let changes = vec![patch::Change {
        key: key.clone(),
        value: None,
    }];
    let shared = state.proxy().shared();
    let had = shared
        .limits(&database, &user)
        .map_err(|e| match e {
            OverrideError::UnknownPool { .. } => ApiError::not_found(e.to_string()),
            OverrideError::Invalid { .. } => ApiError::BadRequest(e.to_string()),
        })?
        .iter()
        .any(|v| v.key == key && v.source == pgtide_config::Source::Override);
    if !had {
        return Err(ApiError::not_found(format!(
            "pool {database}/{user} has no override of {key:?}"
        )));
    }
    let applied = patch::apply(shared, &database, &user, changes)?;
    let after = shared
        .limits(&database, &user)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    audit::limits_changed(&caller, &format!("{database}/{user}"), &applied, &after);
    view(&state, &database, &user).map(Json)
}

/// What an operator does to a whole pool.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// New transactions wait; in-flight ones finish.
    Pause,
    /// Waiting and new transactions go on.
    Resume,
    /// Like pause, and every server is let go.
    Drain,
    /// Every server is replaced as it comes back.
    Reconnect,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Drain => "drain",
            Action::Reconnect => "reconnect",
        }
    }

    fn run(self, pool: &Pool) {
        match self {
            Action::Pause => pool.pause(),
            Action::Resume => pool.resume(),
            Action::Drain => pool.drain(),
            Action::Reconnect => pool.reconnect(),
        }
    }
}

/// Runs `action` on the pool (created if its database is configured but no client came yet,
/// so a pool can be paused before traffic arrives).
pub async fn act(
    action: Action,
    state: AdminState,
    caller: Caller,
    database: String,
    user: String,
) -> Result<Json<PoolDto>, ApiError> {
    let pool: Arc<Pool> = state
        .proxy()
        .shared()
        .pool_for(&database, &user)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no pool {database}/{user}: database {database:?} is not configured"
            ))
        })?;
    action.run(&pool);
    audit::action(
        &caller,
        action.name(),
        pool.name(),
        pool.admission().as_str(),
    );
    view(&state, &database, &user).map(Json)
}
