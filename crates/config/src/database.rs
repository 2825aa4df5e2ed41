//! `[databases.NAME]`: where a logical database lives and how its pool differs from `[pool]`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::pool::{AdaptiveSettings, PoolMode, PoolSettings};
use crate::secret::Secret;

/// One database clients may connect to, keyed by the name clients use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Server host name or IP address. Default `127.0.0.1`. Reload: live (new connections).
    pub host: String,
    /// Server port. Default 5432.
    pub port: u16,
    /// Name of the database on the server; defaults to the key.
    pub dbname: Option<String>,
    /// Server user for every client of this database; default: the client's own user name.
    pub user: Option<String>,
    /// Password for `user` (or for the client's user) when the server asks for one.
    pub password: Option<Secret>,
    /// TLS to the server.
    pub tls: ServerTls,
    /// Cap on server connections to this database across all its pools (0 = no cap).
    pub max_db_connections: u32,

    // Per-database overrides of `[pool]`; unset keys inherit.
    /// Overrides `pool.mode`.
    pub mode: Option<PoolMode>,
    /// Overrides `pool.min_size`.
    pub min_size: Option<u32>,
    /// Overrides `pool.max_size`.
    pub max_size: Option<u32>,
    /// Overrides `pool.acquire_timeout`.
    pub acquire_timeout: Option<HumanDuration>,
    /// Overrides `pool.idle_timeout`.
    pub idle_timeout: Option<HumanDuration>,
    /// Overrides `pool.evict_interval`.
    pub evict_interval: Option<HumanDuration>,
    /// Overrides `pool.max_lifetime`.
    pub max_lifetime: Option<HumanDuration>,
    /// Overrides `pool.connect_timeout`.
    pub connect_timeout: Option<HumanDuration>,
    /// Overrides `pool.statement_timeout`.
    pub statement_timeout: Option<HumanDuration>,
    /// Overrides `pool.query_timeout`.
    pub query_timeout: Option<HumanDuration>,
    /// Overrides `pool.client_idle_timeout`.
    pub client_idle_timeout: Option<HumanDuration>,
    /// Overrides `pool.idle_in_transaction_timeout`.
    pub idle_in_transaction_timeout: Option<HumanDuration>,
    /// Overrides `pool.reset_query`.
    pub reset_query: Option<String>,
    /// Overrides `pool.max_prepared_statements`.
    pub max_prepared_statements: Option<u32>,
    /// Overrides `pool.slow_query_threshold`.
    pub slow_query_threshold: Option<HumanDuration>,
    /// Replaces `pool.adaptive` as a whole table for this database's pools.
    pub adaptive: Option<AdaptiveSettings>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 5432,
            dbname: None,
            user: None,
            password: None,
            tls: ServerTls::default(),
            max_db_connections: 0,
            mode: None,
            min_size: None,
            max_size: None,
            acquire_timeout: None,
            idle_timeout: None,
            evict_interval: None,
            max_lifetime: None,
            connect_timeout: None,
            statement_timeout: None,
            query_timeout: None,
            client_idle_timeout: None,
            idle_in_transaction_timeout: None,
            reset_query: None,
            max_prepared_statements: None,
            slow_query_threshold: None,
            adaptive: None,
        }
    }
}

impl DatabaseConfig {
    /// The settings this database's pools run with: `[pool]` with this entry's overrides on top.
    pub fn pool_settings(&self, defaults: &PoolSettings) -> PoolSettings {
        let d = defaults;
        PoolSettings {
            mode: self.mode.unwrap_or(d.mode),
            min_size: self.min_size.unwrap_or(d.min_size),
            max_size: self.max_size.unwrap_or(d.max_size),
            acquire_timeout: self.acquire_timeout.unwrap_or(d.acquire_timeout),
            idle_timeout: self.idle_timeout.unwrap_or(d.idle_timeout),
            evict_interval: self.evict_interval.unwrap_or(d.evict_interval),
            max_lifetime: self.max_lifetime.unwrap_or(d.max_lifetime),
            connect_timeout: self.connect_timeout.unwrap_or(d.connect_timeout),
            statement_timeout: self.statement_timeout.unwrap_or(d.statement_timeout),
            query_timeout: self.query_timeout.unwrap_or(d.query_timeout),
            client_idle_timeout: self.client_idle_timeout.unwrap_or(d.client_idle_timeout),
            idle_in_transaction_timeout: self
                .idle_in_transaction_timeout
                .unwrap_or(d.idle_in_transaction_timeout),
            reset_query: self
                .reset_query
                .clone()
                .unwrap_or_else(|| d.reset_query.clone()),
            max_prepared_statements: self
                .max_prepared_statements
                .unwrap_or(d.max_prepared_statements),
            slow_query_threshold: self.slow_query_threshold.unwrap_or(d.slow_query_threshold),
            adaptive: self.adaptive.clone().unwrap_or_else(|| d.adaptive.clone()),
        }
    }

    /// The database name to ask the server for.
    pub fn server_dbname<'a>(&'a self, key: &'a str) -> &'a str {
        self.dbname.as_deref().unwrap_or(key)
    }
}

/// Whether and how to use TLS towards the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS when the server offers it, plain otherwise.
    Prefer,
    /// TLS or fail, without verifying the certificate (libpq's `require`).
    Require,
    /// TLS with the certificate verified against `ca_file` and the host name.
    VerifyFull,
}

/// `[databases.NAME.tls]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTls {
    /// Default `disable`.
    pub mode: ServerTlsMode,
    /// Server name sent in TLS SNI (Neon routes by it); default: `host`.
    pub sni: Option<String>,
    /// CA bundle for `verify-full`; default: none (required for verify-full).
    pub ca_file: Option<PathBuf>,
}
