//! `POST /v1/reload` and `POST /v1/shutdown`: the daemon's own lifecycle, through pool-core's
//! one reload path and one shutdown signal (what SIGHUP and SIGTERM do).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use pgtide_pool_core::lifecycle::ReloadError;
use serde::Serialize;

use crate::audit;
use crate::auth::Caller;
use crate::dto::ReloadDto;
use crate::error::{ApiError, ProblemDto};
use crate::state::AdminState;

/// Reloads the configuration from its source (the daemon's file and flags), as SIGHUP does;
/// the typed report says what applied live and what needs a restart.
pub async fn reload(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<ReloadDto>, ApiError> {
    match state.proxy().reload_from_source() {
        Ok(report) => {
            report.log();
            audit::action(
                &caller,
                "reload",
                "config",
                &format!(
                    "{} live, {} need a restart",
                    report.live.len(),
                    report.restart.len()
                ),
            );
            Ok(Json(ReloadDto::from(&report)))
        }
        Err(ReloadError::Rejected { problems }) => {
            tracing::error!(who = %caller.name, problems = ?problems, "reload through the admin API rejected: the running config is unchanged");
            Err(ApiError::Invalid {
                code: "reload_rejected",
                message: "the reload was rejected, the running config is unchanged".to_owned(),
                problems: problems
                    .into_iter()
                    .map(|message| ProblemDto {
                        key: String::new(),
                        message,
                    })
                    .collect(),
            })
        }
        Err(e @ ReloadError::NoSource) => Err(ApiError::Conflict(e.to_string())),
    }
}

/// The answer to a shutdown.
#[derive(Debug, Serialize)]
pub struct ShuttingDown {
    /// Always `shutting_down`.
    status: &'static str,
    /// How long clients inside a transaction get to finish it.
    drain_timeout_seconds: f64,
}

/// Starts a graceful shutdown, as SIGTERM does: no new clients, idle ones told, transactions
/// in flight get the drain timeout to finish.
pub async fn shutdown(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
) -> (StatusCode, Json<ShuttingDown>) {
    audit::action(&caller, "shutdown", "pgtide", "graceful");
    state.proxy().shutdown();
    (
        StatusCode::ACCEPTED,
        Json(ShuttingDown {
            status: "shutting_down",
            drain_timeout_seconds: state.drain_timeout().as_secs_f64(),
        }),
    )
}
