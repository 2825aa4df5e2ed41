//! The admin API in the daemon: its listener on `admin.listen`, its tokens (from
//! `admin.tokens_file`, re-read on every reload), the global metrics recorder, all tied to
//! pgtide's one shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use pgtide_admin_api::{AdminState, Tokens};
use pgtide_config::{Config, ConfigError};
use pgtide_pool_core::ProxyHandle;
use tokio::task::JoinHandle;

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// `admin.listen` could not be bound.
    #[error("cannot listen for the admin API on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The tokens file is unreadable or invalid.
    #[error(transparent)]
    Tokens(#[from] ConfigError),
}

/// The running admin API.
pub struct Admin {
    /// Where it listens (port 0 resolved).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Admin {
    /// Waits for the server to finish the requests in progress after the shutdown signal.
    pub async fn stopped(self) {
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            tracing::warn!("admin API: requests still running at shutdown were cut off");
        }
    }
}

/// Installs the process-wide recorder behind pool-core's `metrics` facade calls; `None` (and
/// a warning) when another one is installed already.
pub fn install_metrics() -> Option<PrometheusHandle> {
    match pgtide_admin_api::metrics::install_recorder() {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed: /metrics shows only the scrape-time metrics");
            None
        }
    }
}

/// The tokens `config` names (none without `admin.tokens_file`).
pub fn tokens_of(config: &Config) -> Result<Tokens, ConfigError> {
    match &config.admin.tokens_file {
        Some(path) => Tokens::load(path),
        None => Ok(Tokens::none()),
    }
}

/// Binds `admin.listen` and serves the API until pgtide shuts down. With `tokens`, those are
/// used (the demo's); otherwise the tokens file is read now and again after every reload. With
/// `any_port` (the demo), a busy `admin.listen` falls back to a free port on the same address.
pub async fn start(
    config: &Config,
    proxy: &ProxyHandle,
    tokens: Option<Tokens>,
    prometheus: Option<PrometheusHandle>,
    drain_timeout: Duration,
    any_port: bool,
) -> Result<Admin, AdminError> {
    let from_file = tokens.is_none();
    let tokens = match tokens {
        Some(t) => t,
        None => tokens_of(config)?,
    };
    if tokens.is_empty() {
        tracing::warn!(
            "admin API: no tokens (admin.tokens_file): only /healthz, /readyz and /metrics answer"
        );
    }
    let mut builder = AdminState::builder(proxy.clone())
        .tokens(tokens)
        .drain_timeout(drain_timeout);
    if let Some(h) = prometheus {
        builder = builder.prometheus(h);
    }
    let state = builder.build();
    if from_file {
        let s = state.clone();
        proxy.on_reload(Arc::new(move |c: &Config| match tokens_of(c) {
            Ok(t) => s.set_tokens(t),
            Err(e) => {
                tracing::error!(error = %e, "admin tokens not reloaded: the previous ones stay in force")
            }
        }));
    }
    let addr = config.admin.listen;
    let listener = match pgtide_admin_api::bind(addr).await {
        Ok(l) => l,
        Err(e) if any_port && addr.port() != 0 => {
            let free = SocketAddr::new(addr.ip(), 0);
            tracing::warn!(listen = %addr, error = %e, "admin API: address busy, using a free port");
            pgtide_admin_api::bind(free)
                .await
                .map_err(|source| AdminError::Bind { addr: free, source })?
        }
        Err(source) => return Err(AdminError::Bind { addr, source }),
    };
    let addr = listener.local_addr().unwrap_or(addr);
    let mut stop = proxy.shutdown_signal();
    let task = tokio::spawn(async move {
        let shutdown = async move { pgtide_pool_core::lifecycle::stopping(&mut stop).await };
        if let Err(e) = pgtide_admin_api::serve(listener, state, shutdown).await {
            tracing::error!(error = %e, "admin API stopped");
        }
    });
    tracing::info!(listen = %addr, "admin API listening");
    Ok(Admin { addr, task })
}
