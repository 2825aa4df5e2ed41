//! The listener: accepts clients, spawns their sessions, reloads and shuts down.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use pgtide_config::{Config, ConfigError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::Authenticator;
use crate::client::{handle_client, ClientSlot, Parking};
use crate::lifecycle::{
    stopping as stopping_signal, ConfigSource, ReloadError, ReloadHook, ReloadReport,
};
use crate::shared::Shared;
use crate::sync::lock;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The auth file could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS files or settings are unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsSetupError),
}

/// A bound, not yet serving, pooler.
pub struct Proxy {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
}

/// A handle to a running proxy, for reloads and the admin API.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

impl ProxyHandle {
    /// The shared state (pools, config).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The one reload path: applies `config` live (pools, limits, users; runtime overrides
    /// and controller targets stay) and reports what changed, what needs a restart (listen
    /// addresses, TLS, log format: the running values are kept) and which overrides still
    /// mask the file. Refused as a whole, with every problem, when the users or TLS material
    /// it names are unusable.
    pub fn reload(&self, config: Config) -> Result<ReloadReport, ReloadError> {
        let rejected = |e: &dyn std::fmt::Display| ReloadError::Rejected {
            problems: vec![e.to_string()],
        };
        let auth = Authenticator::load(&config).map_err(|e| rejected(&e))?;
        // Unusable TLS material rejects the whole reload rather than closing a database's pools.
        let server_tls = crate::tls::server_setups(&config).map_err(|e| rejected(&e))?;
        let old = self.shared.config();
        let changes = ReloadReport::changes(&old, &config);
        let hooks: Vec<ReloadHook> = lock(&self.shared.reload_hooks).clone();
        let applied = config.clone();
        let overrides = self.shared.reload(config, auth, server_tls);
        for hook in hooks {
            hook(&applied);
        }
        Ok(ReloadReport {
            masked: overrides.masked,
            dropped: overrides.dropped,
            ..changes
        })
    }

    /// Reloads from the configuration source the daemon set (its file and flags), as SIGHUP
    /// does; what the admin API's reload calls.
    pub fn reload_from_source(&self) -> Result<ReloadReport, ReloadError> {
        let source = lock(&self.shared.config_source).clone();
        let source = source.ok_or(ReloadError::NoSource)?;
        let config = source().map_err(|problems| ReloadError::Rejected { problems })?;
        self.reload(config)
    }

    /// Sets where [`ProxyHandle::reload_from_source`] reads the configuration.
    pub fn set_config_source(&self, source: ConfigSource) {
        *lock(&self.shared.config_source) = Some(source);
    }

    /// Runs `hook` with the new configuration after every applied reload.
    pub fn on_reload(&self, hook: ReloadHook) {
        lock(&self.shared.reload_hooks).push(hook);
    }

    /// Starts a graceful shutdown, as SIGTERM does.
    pub fn shutdown(&self) {
        self.shared.start_shutdown();
    }

    /// A receiver of the shutdown signal, for tasks that must stop with pgtide.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shared.shutdown_signal()
    }
}

impl Proxy {
    /// Binds every listen address and loads the users.
    pub async fn bind(config: Config) -> Result<Proxy, ProxyError> {
        let auth = Authenticator::load(&config)?;
        let acceptor = crate::tls::client_acceptor(&config.pgtide.tls)?;
        let server_tls = crate::tls::server_setups(&config)?;
        let mut listeners = Vec::new();
        for addr in &config.pgtide.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind {
                    addr: *addr,
                    source,
                })?;
            listeners.push(listener);
        }
        Ok(Proxy {
            shared: Shared::new(config, auth, acceptor, server_tls),
            listeners,
        })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// A handle for reloads and inspection.
    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `shutdown` resolves, then stops accepting, tells idle clients pgtide is
    /// shutting down (57P01), lets clients inside a transaction finish it, and returns when all
    /// sessions ended or `drain_timeout` passed. Sessions still running then end when the
    /// runtime that runs them is dropped (the daemon drops it right after), their servers
    /// closed, never reused.
    pub async fn serve(self, shutdown: impl Future<Output = ()>, drain_timeout: Duration) {
        // `shutdown` (the daemon's signals) and `ProxyHandle::shutdown` (the admin API) start
        // the same shutdown: the process-wide signal every task waits on.
        let stop_rx = self.shared.shutdown_signal();
        let mut accepts = JoinSet::new();
        let parking = Parking::start(stop_rx.clone());
        for listener in self.listeners {
            let shared = self.shared.clone();
            let stop = stop_rx.clone();
            accepts.spawn(accept_loop(listener, shared, stop, parking.clone()));
        }
        drop(parking);
        let mut stopping = stop_rx.clone();
        tokio::select! {
            _ = shutdown => {}
            _ = stopping_signal(&mut stopping) => {}
        }
        tracing::info!(
            clients = self.shared.clients.load(Relaxed),
            "shutting down: no new clients"
        );
        self.shared.start_shutdown();
        while accepts.join_next().await.is_some() {}
        // Sessions are not tracked one by one (a join handle per client would cost memory per
        // idle client); the client count tells when they are all gone. Sessions still running
        // at the drain timeout end when the runtime stops.
        let drained = tokio::time::timeout(drain_timeout, async {
            while self.shared.clients.load(Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = self.shared.clients.load(Relaxed),
                "drain timeout: closing remaining sessions"
            );
        }
        for pool in self.shared.pools() {
            pool.close();
        }
    }
}

/// Accepts until told to stop. Each client gets a task (until its session parks while idle,
/// `client/park.rs`) and is counted in `shared.clients` from here until its session ends.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    parking: Parking,
) {
    let mut stopping = stop.clone();
    loop {
        tokio::select! {
            _ = stopping_signal(&mut stopping) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Counted before the task exists, so a drain that starts now waits for it.
                    let (slot, n) = ClientSlot::take(shared.clone());
                    tokio::spawn(handle_client(slot, n, stream, peer, stop.clone(), parking.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}
