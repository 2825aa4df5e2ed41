//! What a new client's session starts with: the pool's welcome set (the settings its plain
//! servers report) with the client's own startup settings applied, validated and canonical.
//!
//! A client that asks for no settings costs nothing here. Settings seen before are looked up
//! in the pool's cache of validated settings; new ones are validated on a server once: in
//! every mode by `SET`s on a server brought to the welcome set first (so a value whose meaning
//! depends on the current one, such as `DateStyle = Postgres`, comes out as on a fresh
//! session); a setting only a new session can take is validated in session mode by opening a
//! server with it in its startup packet. In session mode a client whose settings change
//! anything gets servers started with them (`Session::startup`). The server's answer is the client's: a
//! rejected value refuses the login with the server's SQLSTATE and message, and the values the
//! server reports are the ones the client is told.

use std::sync::Arc;

use pgtide_config::PoolMode;

use super::{lock, Pool};
use crate::error::{AcquireError, ServerError, SettingsError};
use crate::server::{Entries, ParamSet, StartupSettings};
use pgtide_protocol::SqlState;

/// Validated settings kept per pool; the cache is emptied when full (a hostile client sending
/// ever new settings pays a server round trip per login, never unbounded memory).
const MAX_VALIDATED: usize = 256;

impl Pool {
    /// The session parameters of a client that logged in with `wanted`: the welcome set
    /// (opening a first server if the pool never had one) with the client's settings as the
    /// server gives them.
    pub async fn session_params(
        self: &Arc<Self>,
        wanted: &Arc<StartupSettings>,
    ) -> Result<ParamSet, SettingsError> {
        let mut params = self.welcome_params().await?;
        if wanted.is_empty() {
            return Ok(params);
        }
        let known = lock(&self.validated).get(&**wanted).cloned();
        let overrides = match known {
            Some(o) => o,
            None => self.validate(wanted).await?,
        };
        for (name, value) in overrides.iter() {
            params.set(name, value);
        }
        Ok(params)
    }

    /// Applies `wanted` on a server and returns the session's values that differ from the
    /// welcome set, with PostgreSQL's spelling of each reported name.
    async fn validate(
        self: &Arc<Self>,
        wanted: &Arc<StartupSettings>,
    ) -> Result<Arc<Entries>, SettingsError> {
        let welcome = lock(&self.welcome).clone().unwrap_or_default();
        // Validated with SETs on a plain server in every mode: most clients' settings equal
        // the server's defaults (drivers send client_encoding=UTF8 and the like), and such a
        // session-mode client can then use the pool's plain servers. Only a setting a running
        // session cannot take (55P02, a PGC_BACKEND setting) is validated by starting a server
        // with it.
        let mut checkout = self.acquire().await?;
        let conn = checkout.conn();
        // From the welcome set, as a fresh session would start.
        let mut sql = ParamSet::sync_query(&ParamSet::over(welcome.clone()), &conn.params)
            .unwrap_or_default();
        sql.push_str(&wanted.set_query());
        match conn.run_own_query(&sql, |_, _| {}).await {
            Ok(None) => {}
            Ok(Some(fields)) => {
                // The implicit transaction rolled every SET back: the server is clean.
                self.release(checkout, true);
                let backend_only = fields.code == Some(SqlState::CANT_CHANGE_RUNTIME_PARAM);
                if backend_only && self.settings().mode == PoolMode::Session {
                    checkout = self.acquire_for(Some(wanted)).await.map_err(refused)?;
                } else {
                    return Err(SettingsError::Refused {
                        fields: Box::new(fields),
                    });
                }
            }
            Err(reason) => {
                drop(checkout);
                return Err(SettingsError::Lost {
                    pool: self.name.clone(),
                    reason,
                });
            }
        }
        let conn = checkout.conn();
        let mut overrides = Entries::new();
        for (name, value) in wanted.iter() {
            let reported = welcome.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
            match reported {
                Some((spelling, default)) => {
                    let now = conn.params.get(name).unwrap_or(value);
                    if now != default {
                        overrides.push((spelling.clone(), now.to_owned()));
                    }
                }
                None => {
                    // Not reported by the server: kept as sent, and known to be on this one.
                    conn.params.set(name, value);
                    overrides.push((name.to_owned(), value.to_owned()));
                }
            }
        }
        self.release(checkout, true);
        let overrides = Arc::new(overrides);
        let mut validated = lock(&self.validated);
        if validated.len() >= MAX_VALIDATED {
            validated.clear();
        }
        validated.insert((**wanted).clone(), overrides.clone());
        Ok(overrides)
    }
}

/// A server that refused a connection started with a client's settings refused the settings.
fn refused(e: AcquireError) -> SettingsError {
    match e {
        AcquireError::Server {
            source: ServerError::Refused { fields, .. },
            ..
        } => SettingsError::Refused { fields },
        other => SettingsError::Acquire(other),
    }
}
