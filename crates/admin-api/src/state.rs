//! What every handler shares: the proxy, the tokens, the Prometheus handle.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use pgtide_pool_core::ProxyHandle;

use crate::auth::{AuthFailures, Tokens};

/// The admin API's state; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AdminState(Arc<Inner>);

struct Inner {
    proxy: ProxyHandle,
    /// Swapped whole when the tokens file is reloaded; read once per request.
    tokens: RwLock<Arc<Tokens>>,
    auth_failures: AuthFailures,
    prometheus: Option<PrometheusHandle>,
    metrics_need_token: bool,
    drain_timeout: Duration,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("tokens", &self.tokens().len())
            .field("prometheus", &self.0.prometheus.is_some())
            .field("metrics_need_token", &self.0.metrics_need_token)
            .finish_non_exhaustive()
    }
}

/// Builds an [`AdminState`].
#[must_use = "a builder does nothing until .build()"]
pub struct AdminStateBuilder {
    proxy: ProxyHandle,
    tokens: Tokens,
    prometheus: Option<PrometheusHandle>,
    metrics_need_token: bool,
    drain_timeout: Duration,
}

impl AdminState {
    /// A state for `proxy` with no tokens (only `/healthz`, `/readyz`, `/metrics` and the
    /// OpenAPI document answer), no Prometheus recorder and `/metrics` open.
    pub fn builder(proxy: ProxyHandle) -> AdminStateBuilder {
        AdminStateBuilder {
            proxy,
            tokens: Tokens::none(),
            prometheus: None,
            metrics_need_token: false,
            drain_timeout: Duration::from_secs(30),
        }
    }

    /// The proxy.
    pub fn proxy(&self) -> &ProxyHandle {
        &self.0.proxy
    }

    /// The tokens in force.
    pub fn tokens(&self) -> Arc<Tokens> {
        self.0
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the tokens (a reloaded tokens file).
    pub fn set_tokens(&self, tokens: Tokens) {
        *self.0.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tokens);
    }

    /// Authentication failures so far.
    pub fn auth_failures(&self) -> &AuthFailures {
        &self.0.auth_failures
    }

    /// The recorder of the `metrics` facade, when one is installed.
    pub fn prometheus(&self) -> Option<&PrometheusHandle> {
        self.0.prometheus.as_ref()
    }

    /// Whether `/metrics` needs a (viewer) token.
    pub fn metrics_need_token(&self) -> bool {
        self.0.metrics_need_token
    }

    /// How long a shutdown lets transactions finish (the daemon's drain timeout).
    pub fn drain_timeout(&self) -> Duration {
        self.0.drain_timeout
    }
}

impl AdminStateBuilder {
    /// The bearer tokens.
    pub fn tokens(mut self, tokens: Tokens) -> Self {
        self.tokens = tokens;
        self
    }

    /// The recorder whose metrics `/metrics` renders (pool-core's `metrics` facade calls).
    pub fn prometheus(mut self, handle: PrometheusHandle) -> Self {
        self.prometheus = Some(handle);
        self
    }

    /// Makes `/metrics` need a viewer token.
    pub fn metrics_need_token(mut self, yes: bool) -> Self {
        self.metrics_need_token = yes;
        self
    }

    /// The drain timeout `POST /v1/shutdown` reports (the daemon's).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// The state.
    pub fn build(self) -> AdminState {
        AdminState(Arc::new(Inner {
            proxy: self.proxy,
            tokens: RwLock::new(Arc::new(self.tokens)),
            auth_failures: AuthFailures::default(),
            prometheus: self.prometheus,
            metrics_need_token: self.metrics_need_token,
            drain_timeout: self.drain_timeout,
        }))
    }
}
