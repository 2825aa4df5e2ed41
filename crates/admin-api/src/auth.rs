//! Bearer tokens with a role: `viewer` may GET, `operator` may do everything.
//!
//! Tokens are kept only as SHA-256 digests and a presented token is hashed and compared with
//! every digest in constant time (`subtle`), so neither the comparison's time nor its length
//! tells an attacker how close a guess was. A token never reaches a log line, an error body or
//! a metric: failures are logged with their reason, method, path and peer, and counted by
//! reason (`pgtide_admin_auth_failures_total`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pgtide_config::{ConfigError, Role, TokensFile};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::state::AdminState;

/// Who made a request: the token's name (what the audit log shows) and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

struct Entry {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// The tokens in force.
#[derive(Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<(&str, Role)> = self
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.role))
            .collect();
        f.debug_struct("Tokens").field("names", &names).finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tokens {
    /// No tokens: every `/v1` request is refused with 401.
    pub fn none() -> Self {
        Self::default()
    }

    /// The tokens of a loaded tokens file.
    pub fn from_file(file: &TokensFile) -> Self {
        let mut tokens = Self::none();
        for t in &file.tokens {
            tokens = tokens.with(&t.name, t.role, t.token.expose());
        }
        tokens
    }

    /// Reads `admin.tokens_file` (checked as `pgtide check-config` does).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        TokensFile::load(path).map(|f| Self::from_file(&f))
    }

    /// Adds a token (the demo's generated ones, tests).
    pub fn with(mut self, name: &str, role: Role, token: &str) -> Self {
        self.entries.push(Entry {
            name: name.to_owned(),
            role,
            digest: digest(token.as_bytes()),
        });
        self
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The holder of `presented`, if it is one of the tokens. Every entry is compared (no early
    /// exit), in constant time.
    pub fn check(&self, presented: &str) -> Option<Caller> {
        let d = digest(presented.as_bytes());
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&d)) && found.is_none() {
                found = Some(Caller {
                    name: e.name.clone(),
                    role: e.role,
                });
            }
        }
        found
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that is not one of the configured ones (or no token is configured).
    Invalid,
    /// A valid viewer token on a write.
    Forbidden,
}

impl AuthFailure {
    /// Every reason, for the metric.
    pub const ALL: [AuthFailure; 3] = [
        AuthFailure::Missing,
        AuthFailure::Invalid,
        AuthFailure::Forbidden,
    ];

    /// The `reason` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
            AuthFailure::Forbidden => "forbidden",
        }
    }
}

/// Refusal log lines per second before further ones are only counted (and summarised in the
/// next line that gets through): someone guessing tokens cannot flood the log.
pub const LOG_LINES_PER_SECOND: u32 = 10;

/// Refused requests by reason.
#[derive(Debug, Default)]
pub struct AuthFailures {
    counts: [AtomicU64; 3],
    /// (window start, lines logged in it, lines suppressed since the last one logged).
    log: Mutex<(Option<Instant>, u32, u64)>,
}

impl AuthFailures {
    /// `Some(lines suppressed since the last logged one)` when a refusal may be logged now.
    fn admit_log_line(&self) -> Option<u64> {
        let now = Instant::now();
        let mut w = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if w.0
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            *w = (Some(now), 0, w.2);
        }
        if w.1 < LOG_LINES_PER_SECOND {
            w.1 += 1;
            Some(std::mem::take(&mut w.2))
        } else {
            w.2 += 1;
            None
        }
    }

    /// Counts one.
    pub fn count(&self, why: AuthFailure) {
        self.counts[why as usize].fetch_add(1, Relaxed);
    }

    /// Refusals of this reason so far.
    pub fn get(&self, why: AuthFailure) -> u64 {
        self.counts[why as usize].load(Relaxed)
    }
}

/// The role a request needs: GET and HEAD read, everything else changes something.
pub fn role_needed(method: &Method) -> Role {
    if method == Method::GET || method == Method::HEAD {
        Role::Viewer
    } else {
        Role::Operator
    }
}

/// Checks the `Authorization` header of `req` against the tokens for `needed`.
fn authenticate(state: &AdminState, req: &Request, needed: Role) -> Result<Caller, ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let tokens = state.tokens();
    let refused = |why: AuthFailure, err: ApiError| {
        state.auth_failures().count(why);
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.to_string())
            .unwrap_or_default();
        // The token is never logged: only why it was refused.
        if let Some(suppressed) = state.auth_failures().admit_log_line() {
            tracing::warn!(
                reason = why.as_str(),
                method = %req.method(),
                path = req.uri().path(),
                peer,
                suppressed,
                "admin API request refused"
            );
        }
        err
    };
    let Some(presented) = presented else {
        return Err(refused(
            AuthFailure::Missing,
            ApiError::Unauthorized("an Authorization: Bearer <token> header is required"),
        ));
    };
    if tokens.is_empty() {
        return Err(refused(
            AuthFailure::Invalid,
            ApiError::Unauthorized(
                "no admin tokens are configured (admin.tokens_file): only /healthz, /readyz and /metrics answer",
            ),
        ));
    }
    let Some(caller) = tokens.check(presented) else {
        return Err(refused(
            AuthFailure::Invalid,
            ApiError::Unauthorized("the bearer token is not valid"),
        ));
    };
    if needed == Role::Operator && caller.role != Role::Operator {
        return Err(refused(
            AuthFailure::Forbidden,
            ApiError::Forbidden { name: caller.name },
        ));
    }
    Ok(caller)
}

/// Middleware of the `/v1` routes: a viewer token for reads, an operator token for writes; the
/// [`Caller`] is put in the request's extensions for the handlers (and the audit log).
pub async fn require_token(
    State(state): State<AdminState>,
    mut req: Request,
    next: Next,
) -> Response {
    let needed = role_needed(req.method());
    match authenticate(&state, &req, needed) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Middleware of `/metrics` when it is token-protected: any valid token.
pub async fn require_viewer(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    match authenticate(&state, &req, Role::Viewer) {
        Ok(_) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_only_by_itself() {
        let t = Tokens::none()
            .with("ops", Role::Operator, "operator-token-0123456789")
            .with("dash", Role::Viewer, "viewer-token-0123456789");
        assert_eq!(
            t.check("viewer-token-0123456789"),
            Some(Caller {
                name: "dash".into(),
                role: Role::Viewer
            })
        );
        assert_eq!(
            t.check("operator-token-0123456789").unwrap().role,
            Role::Operator
        );
        assert_eq!(t.check("viewer-token-012345678"), None);
        assert_eq!(t.check(""), None);
        assert!(!format!("{t:?}").contains("token-0123"));
    }

    #[test]
    fn refusals_are_logged_at_a_bounded_rate_and_all_counted() {
        let f = AuthFailures::default();
        let logged = (0..100)
            .filter(|_| {
                f.count(AuthFailure::Invalid);
                f.admit_log_line().is_some()
            })
            .count();
        assert_eq!(logged, LOG_LINES_PER_SECOND as usize);
        assert_eq!(f.get(AuthFailure::Invalid), 100);
    }

    #[test]
    fn writes_need_an_operator() {
        assert_eq!(role_needed(&Method::GET), Role::Viewer);
        assert_eq!(role_needed(&Method::PATCH), Role::Operator);
        assert_eq!(role_needed(&Method::DELETE), Role::Operator);
        assert_eq!(role_needed(&Method::POST), Role::Operator);
    }
}
