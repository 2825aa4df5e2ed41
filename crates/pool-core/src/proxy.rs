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
use crate::shared::Shared;

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

    /// Applies a new config live (pools, limits, users). Changes that need a restart
    /// (listen addresses, TLS, log format) are reported by [`pgtide_config::diff`] and ignored
    /// here.
    pub fn reload(&self, config: Config) -> Result<(), ProxyError> {
        let auth = Authenticator::load(&config)?;
        // Unusable TLS material rejects the whole reload rather than closing a database's pools.
        let server_tls = crate::tls::server_setups(&config)?;
        self.shared.reload(config, auth, server_tls);
        Ok(())
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
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut accepts = JoinSet::new();
        let parking = Parking::start(stop_rx.clone());
        for listener in self.listeners {
            let shared = self.shared.clone();
            let stop = stop_rx.clone();
            accepts.spawn(accept_loop(listener, shared, stop, parking.clone()));
        }
        drop(parking);
        shutdown.await;
        tracing::info!(
            clients = self.shared.clients.load(Relaxed),
            "shutting down: no new clients"
        );
        let _ = stop_tx.send(true);
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
    mut stop: watch::Receiver<bool>,
    parking: Parking,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
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
