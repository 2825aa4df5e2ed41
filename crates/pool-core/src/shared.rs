//! State shared by every task of one pgtide process. No globals: tests run several proxies in
//! one process.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock, Weak};

use pgtide_config::{Config, PoolSettings};

use crate::auth::Authenticator;
use crate::cancel::CancelRegistry;
use crate::failure::FailureCounters;
use crate::pool::{lock, Pool, PoolKey};
use crate::server::ServerTarget;
use crate::tls::ServerTlsSetups;
use tokio_rustls::TlsAcceptor;

/// The process-wide state.
pub struct Shared {
    /// Swapped whole on reload; sessions take a snapshot at login.
    config: RwLock<Arc<Config>>,
    /// Swapped whole on reload.
    auth: RwLock<Arc<Authenticator>>,
    /// Pools by (database, user), created on the first client.
    pools: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    /// Cancel keys of live clients.
    pub cancels: Arc<CancelRegistry>,
    /// Connected clients, against `max_client_conn`.
    pub clients: AtomicUsize,
    /// Failures by class (also exported as `pgtide_failures_total`).
    pub failures: Arc<FailureCounters>,
    /// Server TLS per database, built with the config it belongs to (swapped on reload).
    server_tls: RwLock<Arc<ServerTlsSetups>>,
    /// Client TLS (bound at start-up; changing it needs a restart).
    pub tls_acceptor: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("clients", &self.clients)
            .field("client_tls", &self.tls_acceptor.is_some())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// State for a validated config and its prepared users.
    pub fn new(
        config: Config,
        auth: Authenticator,
        tls_acceptor: Option<TlsAcceptor>,
        server_tls: ServerTlsSetups,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            server_tls: RwLock::new(Arc::new(server_tls)),
            tls_acceptor,
            failures: Arc::new(FailureCounters::default()),
            config: RwLock::new(Arc::new(config)),
            auth: RwLock::new(Arc::new(auth)),
            pools: Mutex::new(HashMap::new()),
            cancels: Arc::new(CancelRegistry::default()),
            clients: AtomicUsize::new(0),
        })
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The users in force.
    pub fn auth(&self) -> Arc<Authenticator> {
        self.auth.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// All pools, for the admin API and shutdown.
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        lock(&self.pools).values().cloned().collect()
    }

    /// The pool for (`database`, `user`), created on first use; `None` when the database is not
    /// configured.
    pub fn pool_for(&self, database: &str, user: &str) -> Option<Arc<Pool>> {
        let key = PoolKey {
            database: database.to_owned(),
            user: user.to_owned(),
        };
        if let Some(pool) = lock(&self.pools).get(&key) {
            return Some(pool.clone());
        }
        let config = self.config();
        let settings = config.pool_settings(database, user)?;
        let target = self.target_for(&config, &key, &settings)?;
        let mut pools = lock(&self.pools);
        let pool = pools
            .entry(key.clone())
            .or_insert_with(|| {
                let pool = Pool::new(key, target, settings);
                spawn_maintenance(Arc::downgrade(&pool));
                pool
            })
            .clone();
        Some(pool)
    }

    /// Installs a new config (and users) live: pools of removed databases close, the others
    /// take their new limits without dropping clients.
    pub fn reload(&self, config: Config, auth: Authenticator, server_tls: ServerTlsSetups) {
        *self.auth.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(auth);
        *self.server_tls.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(server_tls);
        let mut pools = lock(&self.pools);
        pools.retain(
            |key, pool| match config.pool_settings(&key.database, &key.user) {
                Some(settings) => match self.target_for(&config, key, &settings) {
                    Some(target) => {
                        pool.reconfigure(target, settings);
                        true
                    }
                    None => {
                        pool.close();
                        false
                    }
                },
                None => {
                    pool.close();
                    false
                }
            },
        );
        drop(pools);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    fn target_for(
        &self,
        config: &Config,
        key: &PoolKey,
        settings: &PoolSettings,
    ) -> Option<ServerTarget> {
        let db = config.databases.get(&key.database)?;
        let user = db.user.clone().unwrap_or_else(|| key.user.clone());
        let password = db
            .password
            .clone()
            .or_else(|| self.auth().password_for(&user).cloned());
        let mut startup_params = vec![("application_name".to_owned(), "pgtide".to_owned())];
        if let Some(t) = settings.statement_timeout.non_zero() {
            startup_params.push(("statement_timeout".to_owned(), t.as_millis().to_string()));
        }
        let tls = self
            .server_tls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key.database)
            .cloned();
        Some(ServerTarget {
            tls,
            host: db.host.clone(),
            port: db.port,
            dbname: db.server_dbname(&key.database).to_owned(),
            user,
            password,
            startup_params,
            connect_timeout: settings.connect_timeout.get(),
            max_lifetime: settings.max_lifetime.non_zero(),
        })
    }
}

/// Sweeps a pool every `evict_interval` until the pool is dropped or closed.
fn spawn_maintenance(pool: Weak<Pool>) {
    tokio::spawn(async move {
        loop {
            let interval = match pool.upgrade() {
                Some(p) => p.settings().evict_interval.get(),
                None => return,
            };
            tokio::time::sleep(interval).await;
            let Some(p) = pool.upgrade() else { return };
            if p.is_closed() {
                return;
            }
            p.maintain().await;
        }
    });
}
