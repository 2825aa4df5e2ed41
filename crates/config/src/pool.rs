//! Pool settings: the `[pool]` defaults every pool starts from, and their per-database overrides.

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

/// When a server connection goes back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// The client keeps one server for its whole connection; state is reset before reuse.
    Session,
    /// A server is held from the first message of a transaction to ReadyForQuery 'I'.
    #[default]
    Transaction,
    /// Like transaction, but a multi-statement transaction is refused.
    Statement,
}

/// Limits and timeouts of one pool. `[pool]` holds the defaults; `[databases.NAME]` may override
/// any of them (see [`crate::DatabaseConfig::pool_settings`]). All of these reload live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    /// Pooling mode. Default `transaction`.
    pub mode: PoolMode,
    /// Servers kept open even when idle (re-established with backoff). Default 0.
    pub min_size: u32,
    /// Never more server connections than this in the pool. Default 20.
    pub max_size: u32,
    /// How long a client may wait for a server before it gets an error. Default 5s; must be > 0.
    pub acquire_timeout: HumanDuration,
    /// Idle servers above `min_size` are closed after this long. Default 10m; 0 = never.
    pub idle_timeout: HumanDuration,
    /// How often idle and expired servers are swept. Default 30s; must be > 0.
    pub evict_interval: HumanDuration,
    /// A server is retired once idle after this age (with up to 10% jitter). Default 1h; 0 = never.
    pub max_lifetime: HumanDuration,
    /// Bound on TCP connect + TLS + authentication to the server. Default 5s; must be > 0.
    pub connect_timeout: HumanDuration,
    /// Sent to the server as `statement_timeout` at connect. Default 0s = off.
    pub statement_timeout: HumanDuration,
    /// pgtide itself cancels a query running longer than this. Default 0s = off.
    pub query_timeout: HumanDuration,
    /// A client idle (outside a transaction) this long is disconnected. Default 0s = off.
    pub client_idle_timeout: HumanDuration,
    /// A client idle inside a transaction this long is disconnected and its transaction rolled
    /// back, freeing the server. Default 0s = off.
    pub idle_in_transaction_timeout: HumanDuration,
    /// Run before a server is handed to another client in session mode. Default `DISCARD ALL`.
    pub reset_query: String,
    /// Named prepared statements tracked per server in transaction mode (LRU cap); 0 disables
    /// tracking. Default 256.
    pub max_prepared_statements: u32,
    /// Queries and transactions slower than this are logged and counted. Default 0s = off.
    pub slow_query_threshold: HumanDuration,
    /// The adaptive sizing controller's settings for this pool.
    pub adaptive: AdaptiveSettings,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            mode: PoolMode::Transaction,
            min_size: 0,
            max_size: 20,
            acquire_timeout: HumanDuration::from_secs(5),
            idle_timeout: HumanDuration::from_secs(600),
            evict_interval: HumanDuration::from_secs(30),
            max_lifetime: HumanDuration::from_secs(3600),
            connect_timeout: HumanDuration::from_secs(5),
            statement_timeout: HumanDuration::default(),
            query_timeout: HumanDuration::default(),
            client_idle_timeout: HumanDuration::default(),
            idle_in_transaction_timeout: HumanDuration::default(),
            reset_query: "DISCARD ALL".to_owned(),
            max_prepared_statements: 256,
            slow_query_threshold: HumanDuration::default(),
            adaptive: AdaptiveSettings::default(),
        }
    }
}

/// The adaptive sizing controller (see docs/adaptive.md). The pool's size floats inside
/// `[min_size, max_size]` and under the database's connection budget. Reloads live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveSettings {
    /// Let the controller size the pool; when off the pool may grow to `max_size`. Default true.
    pub enabled: bool,
    /// How often the controller decides. Default 1s; must be > 0.
    pub tick: HumanDuration,
    /// Acquire-wait p95 above this (while the server is not saturated) grows the pool.
    /// Default 5ms.
    pub target_acquire_wait: HumanDuration,
    /// At most this many new server connections per tick, so a burst cannot become a connection
    /// storm against the database. Default 4; must be > 0.
    pub max_connects_per_tick: u32,
    /// Utilization (busy/open servers, time-weighted) under this for `shrink_after` shrinks the
    /// pool. Default 0.5; must be in (0, 1).
    pub shrink_utilization: f64,
    /// How long utilization must stay low before shrinking (hysteresis). Default 30s.
    pub shrink_after: HumanDuration,
    /// Server latency over this multiple of its long-run baseline counts as saturation and blocks
    /// growth. Default 2.0; must be > 1.
    pub saturation_ratio: f64,
    /// Learn the budget from the server (`max_connections` minus reserved minus what other pgtide
    /// instances hold). Default false.
    pub learn_budget: bool,
    /// Server connections left for others when the budget is learned. Default 5.
    pub reserved_connections: u32,
    /// How often a learned budget is read again from the server (Neon autoscaling, instances
    /// coming and going). Default 10s; must be > 0.
    pub budget_interval: HumanDuration,
}

impl Default for AdaptiveSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            tick: HumanDuration::from_secs(1),
            target_acquire_wait: HumanDuration::from_millis(5),
            max_connects_per_tick: 4,
            shrink_utilization: 0.5,
            shrink_after: HumanDuration::from_secs(30),
            saturation_ratio: 2.0,
            learn_budget: false,
            reserved_connections: 5,
            budget_interval: HumanDuration::from_secs(10),
        }
    }
}
