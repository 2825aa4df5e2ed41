//! One lifecycle for the daemon and everything that drives it (SIGHUP now, the admin API
//! later): one shutdown signal every task can wait on, and one reload path that returns a
//! typed report.

use std::sync::Arc;

use pgtide_config::{diff, Apply, Config};

/// Where a reload reads the configuration from (the daemon's file and flags); returns every
/// problem of an invalid configuration.
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, Vec<String>> + Send + Sync>;

/// Run after a reload was applied, with the new configuration (the daemon's log level).
pub type ReloadHook = Arc<dyn Fn(&Config) + Send + Sync>;

/// What a reload did.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// Changed keys now in force.
    pub live: Vec<String>,
    /// Changed keys that take effect only after a restart (the running value is kept).
    pub restart: Vec<String>,
    /// (pool, key): runtime overrides that still mask a different configured value.
    pub masked: Vec<(String, String)>,
    /// (pool, problem): overrides dropped because they no longer fit the new configuration.
    pub dropped: Vec<(String, String)>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration (or the files it names) is invalid: every problem.
    #[error("reload rejected, the running config is unchanged: {}", .problems.join("; "))]
    Rejected {
        /// Each problem, with its key path where it has one.
        problems: Vec<String>,
    },
    /// Nothing to reload from (an embedded proxy without a configuration source).
    #[error("reload rejected: no configuration source is set")]
    NoSource,
}

impl ReloadReport {
    /// The changes from `old` to `new`, split by whether they apply live.
    pub(crate) fn changes(old: &Config, new: &Config) -> Self {
        let mut report = ReloadReport::default();
        for change in diff(old, new) {
            match change.apply {
                Apply::Live => report.live.push(change.path),
                Apply::Restart => report.restart.push(change.path),
            }
        }
        report
    }

    /// Logs the report: one line per key, then a summary.
    pub fn log(&self) {
        for key in &self.live {
            tracing::info!(key = %key, "reload: applied");
        }
        for key in &self.restart {
            tracing::warn!(key = %key, "reload: needs a restart to take effect");
        }
        for (pool, key) in &self.masked {
            tracing::warn!(pool = %pool, key = %key, "reload: a runtime override still masks the configured value");
        }
        for (pool, problem) in &self.dropped {
            tracing::warn!(pool = %pool, problem = %problem, "reload: runtime overrides dropped, they no longer fit the configuration");
        }
        tracing::info!(
            live = self.live.len(),
            restart = self.restart.len(),
            masked = self.masked.len(),
            "config reloaded"
        );
    }
}

/// Resolves once `shutdown` (from [`crate::ProxyHandle::shutdown_signal`]) says pgtide is
/// stopping (at once if it already does, or if the signal's sender is gone).
pub async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
