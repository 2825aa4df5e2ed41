//! `/healthz` (the process answers), `/readyz` (pgtide should get traffic) and the OpenAPI
//! document; all open, none of them says anything secret.
//!
//! Readiness makes no connections of its own (a probe every few seconds would add load and log
//! noise on every database): pgtide is ready while it is not shutting down and no configured
//! database's server address has its circuit breaker open (connects there keep failing). A
//! database no client used yet counts as ready until a connect to it fails.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;

use crate::state::AdminState;

/// `{"status": "ok"}`.
#[derive(Debug, Serialize)]
pub struct Health {
    status: &'static str,
}

/// The process is up and its admin listener answers.
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// One database's readiness.
#[derive(Debug, Serialize)]
pub struct DatabaseCheck {
    database: String,
    server: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// Readiness, with each database's check.
#[derive(Debug, Serialize)]
pub struct Ready {
    ready: bool,
    shutting_down: bool,
    databases: Vec<DatabaseCheck>,
}

/// 200 when ready, 503 otherwise; the body says which check failed.
pub async fn readyz(State(state): State<AdminState>) -> (StatusCode, Json<Ready>) {
    let shared = state.proxy().shared();
    let config = shared.config();
    let shutting_down = shared.shutting_down();
    let databases: Vec<DatabaseCheck> = config
        .databases
        .iter()
        .map(|(name, db)| {
            let server = format!("{}:{}", db.host, db.port);
            let open = shared.breaker_for(&config, server.clone()).open_info();
            DatabaseCheck {
                database: name.clone(),
                ok: open.is_none(),
                detail: open.map(|o| {
                    format!(
                        "connects keep failing ({}) for {:.0}s: {}",
                        o.class,
                        o.open_for.as_secs_f64(),
                        o.reason
                    )
                }),
                server,
            }
        })
        .collect();
    let ready = !shutting_down && databases.iter().all(|d| d.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Ready {
            ready,
            shutting_down,
            databases,
        }),
    )
}

/// The OpenAPI 3 document.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI)
}
