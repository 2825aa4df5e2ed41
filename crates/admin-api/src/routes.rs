//! Every endpoint in one table: [`router`] is built from [`endpoints`], and the OpenAPI test
//! compares the same table with `docs/openapi.json`, so the two cannot drift apart.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::{Extension, Router};

use crate::auth::{require_token, require_viewer, Caller};
use crate::error::ApiError;
use crate::pools::Action;
use crate::state::AdminState;
use crate::{health, lifecycle, listing, metrics, pools};

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, readiness, the OpenAPI document).
    Open,
    /// A viewer token for GET, an operator token for anything else.
    Token,
    /// `/metrics`: open, or any valid token when the state says so.
    Metrics,
}

/// One endpoint.
pub struct Endpoint {
    /// The HTTP method.
    pub method: Method,
    /// The path, with `{param}` segments as in the OpenAPI document.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    route: MethodRouter<AdminState>,
}

fn on(
    method: Method,
    path: &'static str,
    access: Access,
    route: MethodRouter<AdminState>,
) -> Endpoint {
    Endpoint {
        method,
        path,
        access,
        route,
    }
}

fn action(a: Action) -> MethodRouter<AdminState> {
    post(
        move |State(state): State<AdminState>,
              Extension(caller): Extension<Caller>,
              Path((database, user)): Path<(String, String)>| async move {
            pools::act(a, state, caller, database, user).await
        },
    )
}

/// Every endpoint of the API.
pub fn endpoints() -> Vec<Endpoint> {
    use Access::{Metrics, Open, Token};
    const POOL: &str = "/v1/pools/{database}/{user}";
    vec![
        on(Method::GET, "/healthz", Open, get(health::healthz)),
        on(Method::GET, "/readyz", Open, get(health::readyz)),
        on(Method::GET, "/metrics", Metrics, get(metrics::metrics)),
        on(Method::GET, "/v1/openapi.json", Open, get(health::openapi)),
        on(Method::GET, "/v1/pools", Token, get(pools::list)),
        on(Method::GET, POOL, Token, get(pools::get)),
        on(Method::PATCH, POOL, Token, patch(pools::patch)),
        on(
            Method::DELETE,
            "/v1/pools/{database}/{user}/overrides/{key}",
            Token,
            delete(pools::delete_override),
        ),
        on(
            Method::POST,
            "/v1/pools/{database}/{user}/pause",
            Token,
            action(Action::Pause),
        ),
        on(
            Method::POST,
            "/v1/pools/{database}/{user}/resume",
            Token,
            action(Action::Resume),
        ),
        on(
            Method::POST,
            "/v1/pools/{database}/{user}/drain",
            Token,
            action(Action::Drain),
        ),
        on(
            Method::POST,
            "/v1/pools/{database}/{user}/reconnect",
            Token,
            action(Action::Reconnect),
        ),
        on(Method::GET, "/v1/clients", Token, get(listing::clients)),
        on(
            Method::DELETE,
            "/v1/clients/{id}",
            Token,
            delete(listing::kill_client),
        ),
        on(Method::GET, "/v1/servers", Token, get(listing::servers)),
        on(Method::GET, "/v1/events", Token, get(listing::events)),
        on(Method::GET, "/v1/config", Token, get(listing::config)),
        on(Method::POST, "/v1/reload", Token, post(lifecycle::reload)),
        on(
            Method::POST,
            "/v1/shutdown",
            Token,
            post(lifecycle::shutdown),
        ),
    ]
}

/// The admin API.
pub fn router(state: AdminState) -> Router {
    let mut open = Router::new();
    let mut tokened = Router::new();
    let mut metrics = Router::new();
    for e in endpoints() {
        match e.access {
            Access::Open => open = open.route(e.path, e.route),
            Access::Token => tokened = tokened.route(e.path, e.route),
            Access::Metrics => metrics = metrics.route(e.path, e.route),
        }
    }
    let tokened = tokened.route_layer(from_fn_with_state(state.clone(), require_token));
    if state.metrics_need_token() {
        metrics = metrics.route_layer(from_fn_with_state(state.clone(), require_viewer));
    }
    open.merge(tokened)
        .merge(metrics)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound {
        code: "no_route",
        message: format!("no such endpoint: {} (see /v1/openapi.json)", uri.path()),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
