//! The small top-level sections: `[pgtide]`, `[admin]`, `[log]`, `[users.NAME]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::HumanDuration;
use crate::pool::PoolMode;
use crate::secret::Secret;

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthType {
    /// SCRAM-SHA-256 (PostgreSQL's default since 14).
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// md5 challenge-response (legacy drivers).
    Md5,
    /// No password: every client is who it says. Only for local development.
    Trust,
}

/// `[pgtide]`: the client-facing listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct General {
    /// Addresses to accept clients on (one string or a list). Default `["127.0.0.1:6432"]`.
    /// Reload: restart.
    #[serde(deserialize_with = "one_or_many_addrs")]
    pub listen: Vec<SocketAddr>,
    /// Clients over this number get 53300 at once. Default 10000; must be > 0.
    pub max_client_conn: u32,
    /// Default `scram-sha-256`.
    pub auth_type: AuthType,
    /// Users and their secrets (TOML, `[[users]]`). Required unless `auth_type = "trust"` or an
    /// `auth_query` is set. Relative paths are relative to the config file.
    pub auth_file: Option<PathBuf>,
    /// Look users up on the server instead of (or after) the auth file.
    pub auth_query: Option<AuthQuery>,
    /// TLS for clients.
    pub tls: ClientTls,
    /// Largest client or server message pgtide accepts, in bytes; bigger ones are refused with
    /// 08P01/54000 (PostgreSQL itself allows 1 GiB). Default 64 MiB.
    pub max_message_size: u32,
    /// Connects in a row to one server address that must fail before its circuit breaker
    /// opens and clients fail fast instead of waiting (0 = never). Default 3.
    pub breaker_threshold: u32,
    /// Longest pause between probes of a server whose breaker is open (probes start at 100ms
    /// and double). Default 10s; must be > 0.
    pub breaker_max_backoff: HumanDuration,
    /// Threads that run client sessions. 1 (the default) runs every session on one thread, as
    /// PgBouncer does: no cross-thread wake-ups or work stealing, the least CPU per transaction
    /// (measured in docs/benchmarks.md). More threads scale past one core at some CPU cost per
    /// transaction; 0 = one per CPU. Reload: restart.
    pub workers: u32,
}

impl Default for General {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 6432))],
            max_client_conn: 10_000,
            auth_type: AuthType::ScramSha256,
            auth_file: None,
            auth_query: None,
            tls: ClientTls::default(),
            max_message_size: 64 * 1024 * 1024,
            breaker_threshold: 3,
            breaker_max_backoff: HumanDuration::from_secs(10),
            workers: 1,
        }
    }
}

fn one_or_many_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let raw = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    raw.iter()
        .map(|s| {
            s.parse::<SocketAddr>().map_err(|_| {
                serde::de::Error::custom(format!(
                    "invalid socket address {s:?} (expected IP:PORT, e.g. \"127.0.0.1:6432\")"
                ))
            })
        })
        .collect()
}

/// Looking a user's secret up on the server, as PgBouncer's `auth_query` does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthQuery {
    /// Returns `(usename, passwd)` for `$1`. Default is PgBouncer's `pg_shadow` query.
    #[serde(default = "default_auth_query")]
    pub query: String,
    /// The server user that runs the query.
    pub user: String,
    /// Its password.
    pub password: Option<Secret>,
}

fn default_auth_query() -> String {
    "SELECT usename, passwd FROM pg_shadow WHERE usename = $1".to_owned()
}

/// Whether clients may or must use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientTlsMode {
    /// SSLRequest is answered 'N'.
    #[default]
    Disable,
    /// TLS when the client asks for it.
    Allow,
    /// Clients that do not ask for TLS are refused (28000).
    Require,
}

/// `[pgtide.tls]`. Reload: restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTls {
    /// Default `disable`.
    pub mode: ClientTlsMode,
    /// PEM certificate chain; required unless mode is `disable`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key; required unless mode is `disable`.
    pub key_file: Option<PathBuf>,
}

/// `[admin]`: the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admin {
    /// Default `127.0.0.1:9930` (loopback: the API can change limits). Reload: restart.
    pub listen: SocketAddr,
    /// Bearer tokens with their roles (TOML, `[[tokens]]`). Without it the API serves only
    /// `/healthz`, `/readyz` and `/metrics`.
    pub tokens_file: Option<PathBuf>,
    /// Where runtime overrides made through the API are kept across restarts; none by default.
    pub state_file: Option<PathBuf>,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9930)),
            tokens_file: None,
            state_file: None,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logging {
    /// A tracing filter: `info`, `debug`, `pgtide_pool_core=debug,info`. Default `info`.
    /// `RUST_LOG` wins when set. Reload: live.
    pub level: String,
    /// Default `text`. Reload: restart.
    pub format: LogFormat,
    /// Characters of SQL shown in the slow query log. Default 200. Reload: new clients.
    pub slow_query_sql_chars: u32,
    /// Replace literals with `?` in the slow query log, so it carries no data. Default true.
    /// Reload: new clients.
    pub slow_query_redact: bool,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
            slow_query_sql_chars: 200,
            slow_query_redact: true,
        }
    }
}

/// `[users.NAME]`: limits for one client user across all databases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    /// Cap on server connections for this user across all pools (0 = no cap).
    pub max_user_connections: u32,
    /// Pool mode for this user's pools, over the database's.
    pub mode: Option<PoolMode>,
}
