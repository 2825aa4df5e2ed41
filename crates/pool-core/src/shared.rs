//! State shared by every task of one pgtide process. No globals: tests run several proxies in
//! one process.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use pgtide_config::{Config, PoolSettings};

use crate::auth::Authenticator;
use crate::breaker::Breaker;
use crate::budget::ConnCap;
use crate::cancel::CancelRegistry;
use crate::events::EventRing;
use crate::pool::{Pool, PoolEnv, PoolKey};
use crate::report::Failures;
use crate::server::ServerTarget;
use crate::sync::lock;
use crate::tls::ServerTlsSetups;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::lifecycle::{ConfigSource, ReloadHook, ReloadReport};

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
    /// Logged-in clients, for the client list (and a future `kill client`).
    pub registry: Arc<crate::clients::ClientRegistry>,
    /// Failures: counted by class (`pgtide_failures_total`), logged, kept in `events`.
    pub failures: Arc<Failures>,
    /// Recent events for the admin API's `/v1/events`.
    pub events: Arc<EventRing>,
    /// Server TLS per database, built with the config it belongs to (swapped on reload).
    server_tls: RwLock<Arc<ServerTlsSetups>>,
    /// Circuit breakers by server `host:port`.
    breakers: Mutex<HashMap<String, Arc<Breaker>>>,
    /// `max_db_connections` caps by database and `max_user_connections` caps by user.
    caps: Mutex<Caps>,
    /// Client TLS (bound at start-up; changing it needs a restart).
    pub tls_acceptor: Option<TlsAcceptor>,
    /// Runtime overrides by pool name, also of pools not created yet; the state file's
    /// contents when `admin.state_file` is set (`overrides.rs`).
    pub(crate) overrides: Mutex<crate::state_file::State>,
    /// The one shutdown signal: `true` once pgtide is stopping. Every task that should stop
    /// with pgtide (accept loops, the parking hub, pool maintenance, breaker probes, the
    /// daemon's signal tasks) waits on a receiver of it.
    shutdown: watch::Sender<bool>,
    /// Where [`crate::ProxyHandle::reload_from_source`] reads the configuration.
    pub(crate) config_source: Mutex<Option<ConfigSource>>,
    /// Run after every applied reload.
    pub(crate) reload_hooks: Mutex<Vec<ReloadHook>>,
    /// The runtime pgtide serves on: pools created from another thread (an operator's call)
    /// still run their maintenance there.
    runtime: Option<tokio::runtime::Handle>,
    /// This process's id among pgtide instances sharing a learned budget (random per start).
    pub instance: String,
    /// Itself, for tasks that must not keep it alive (the budget learner).
    me: Weak<Shared>,
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
        let events = Arc::new(EventRing::default());
        let overrides = match &config.admin.state_file {
            Some(path) => crate::state_file::load(path).unwrap_or_else(|e| {
                // Starting matters more than the overrides; the operator is told loudly.
                tracing::error!(error = %e, "runtime overrides not restored");
                Default::default()
            }),
            None => Default::default(),
        };
        Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            overrides: Mutex::new(overrides),
            shutdown: watch::Sender::new(false),
            config_source: Mutex::new(None),
            reload_hooks: Mutex::new(Vec::new()),
            runtime: tokio::runtime::Handle::try_current().ok(),
            instance: format!("{:08x}", rand::random::<u32>()),
            failures: Arc::new(Failures::new(events.clone())),
            events,
            server_tls: RwLock::new(Arc::new(server_tls)),
            tls_acceptor,
            config: RwLock::new(Arc::new(config)),
            auth: RwLock::new(Arc::new(auth)),
            pools: Mutex::new(HashMap::new()),
            breakers: Mutex::new(HashMap::new()),
            caps: Mutex::new(Caps::default()),
            cancels: Arc::new(CancelRegistry::default()),
            clients: AtomicUsize::new(0),
            registry: Default::default(),
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
                let env = PoolEnv {
                    failures: self.failures.clone(),
                    caps: self.caps_for(&config, &key),
                    connector: Arc::new(crate::server::TcpConnector),
                    shutdown: self.shutdown_signal(),
                };
                let pool = Pool::new(key, target, settings, env);
                self.restore_overrides(&pool);
                self.learn_budget_for(&pool);
                let maintenance = maintenance(Arc::downgrade(&pool), self.shutdown_signal());
                let (weak, stop) = (Arc::downgrade(&pool), self.shutdown_signal());
                match &self.runtime {
                    Some(rt) => {
                        drop(rt.spawn(maintenance));
                        let _guard = rt.enter();
                        crate::adaptive::spawn_controller(weak, stop);
                    }
                    None => {
                        drop(tokio::spawn(maintenance));
                        crate::adaptive::spawn_controller(weak, stop);
                    }
                }
                pool
            })
            .clone();
        Some(pool)
    }

    /// A receiver of the shutdown signal (`true` once pgtide is stopping).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Starts the shutdown (idempotent): every task waiting on the signal sees it.
    pub fn start_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Whether the shutdown started.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Installs a new config (and users) live: pools of removed databases close, the others
    /// take their new limits without dropping clients; runtime overrides and controller
    /// targets stay. Returns what the overrides did (the caller adds the changed keys).
    pub fn reload(
        &self,
        config: Config,
        auth: Authenticator,
        server_tls: ServerTlsSetups,
    ) -> ReloadReport {
        let mut report = ReloadReport::default();
        *self.auth.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(auth);
        *self.server_tls.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(server_tls);
        self.reconfigure_limits(&config);
        let mut pools = lock(&self.pools);
        pools.retain(
            |key, pool| match config.pool_settings(&key.database, &key.user) {
                Some(settings) => match self.target_for(&config, key, &settings) {
                    Some(target) => {
                        let outcome = pool.reconfigure(target, settings);
                        let name = pool.name().to_owned();
                        for key in outcome.masked {
                            report.masked.push((name.clone(), key));
                        }
                        for problem in outcome.dropped {
                            report.dropped.push((name.clone(), problem.to_string()));
                        }
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
        if !report.dropped.is_empty() {
            for (pool, _) in &report.dropped {
                lock(&self.overrides).pools.remove(pool);
            }
            self.persist_overrides();
        }
        report
    }

    /// The breaker of `host:port`, created on first use.
    pub fn breaker_for(&self, config: &Config, addr: String) -> Arc<Breaker> {
        lock(&self.breakers)
            .entry(addr.clone())
            .or_insert_with(|| {
                Arc::new(Breaker::new(
                    addr,
                    config.pgtide.breaker_threshold,
                    config.pgtide.breaker_max_backoff.get(),
                    self.events.clone(),
                ))
            })
            .clone()
    }

    /// The caps a new pool counts against (its database's and its user's), created on first use.
    fn caps_for(&self, config: &Config, key: &PoolKey) -> Vec<Arc<ConnCap>> {
        let mut caps = lock(&self.caps);
        let db_limit = config
            .databases
            .get(&key.database)
            .map_or(0, |d| d.max_db_connections);
        let user_limit = config
            .users
            .get(&key.user)
            .map_or(0, |u| u.max_user_connections);
        let db = caps
            .databases
            .entry(key.database.clone())
            .or_insert_with(|| {
                Arc::new(ConnCap::new(
                    format!("max_db_connections of database {}", key.database),
                    db_limit,
                ))
            })
            .clone();
        let user = caps
            .users
            .entry(key.user.clone())
            .or_insert_with(|| {
                Arc::new(ConnCap::new(
                    format!("max_user_connections of user {}", key.user),
                    user_limit,
                ))
            })
            .clone();
        let server = config
            .databases
            .get(&key.database)
            .map(|d| format!("{}:{}", d.host, d.port))
            .unwrap_or_default();
        let budget = caps
            .servers
            .entry(server.clone())
            .or_insert_with(|| {
                Arc::new(ConnCap::budget(
                    format!("the learned connection budget of server {server}"),
                    0,
                ))
            })
            .clone();
        vec![db, user, budget]
    }

    /// Starts learning the budget of the server `pool` connects to, when its settings ask for
    /// it and no learner runs for that address yet.
    fn learn_budget_for(&self, pool: &Pool) {
        if !pool.settings().adaptive.learn_budget {
            return;
        }
        let addr = pool.target().display_addr();
        let Some(cap) = lock(&self.caps).servers.get(&addr).cloned() else {
            return;
        };
        if cap
            .learning
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let spawn = || {
            crate::budget_learn::spawn_learner(
                self.me.clone(),
                addr.clone(),
                cap.clone(),
                self.instance.clone(),
                self.shutdown_signal(),
            )
        };
        match &self.runtime {
            Some(rt) => {
                let _guard = rt.enter();
                spawn();
            }
            None => spawn(),
        }
    }

    /// Applies reloaded caps and breaker settings in place.
    fn reconfigure_limits(&self, config: &Config) {
        let caps = lock(&self.caps);
        for (name, cap) in &caps.databases {
            cap.set_limit(
                config
                    .databases
                    .get(name)
                    .map_or(0, |d| d.max_db_connections),
            );
        }
        for (name, cap) in &caps.users {
            cap.set_limit(config.users.get(name).map_or(0, |u| u.max_user_connections));
        }
        drop(caps);
        for breaker in lock(&self.breakers).values() {
            breaker.configure(
                config.pgtide.breaker_threshold,
                config.pgtide.breaker_max_backoff.get(),
            );
        }
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
        // No application_name of pgtide's own: a client that sets none must see the server's
        // default (usually ''), as on a direct connection, in ParameterStatus and SHOW.
        let mut startup_params = Vec::new();
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
            breaker: self.breaker_for(config, format!("{}:{}", db.host, db.port)),
            scram_keys: Default::default(),
        })
    }
}

/// The caps shared by pools.
#[derive(Debug, Default)]
struct Caps {
    databases: HashMap<String, Arc<ConnCap>>,
    users: HashMap<String, Arc<ConnCap>>,
    /// Learned budgets by server `host:port` (limit 0 until learned, or when not learned).
    servers: HashMap<String, Arc<ConnCap>>,
}

/// First retry delay when a pool cannot reach `min_size`; doubles up to `evict_interval`.
const REFILL_FIRST_RETRY: Duration = Duration::from_millis(250);

/// Sweeps a pool every `evict_interval` until the pool is dropped or closed. While the pool is
/// below `min_size` (a server died, a connect failed) it retries sooner, with exponential
/// backoff, and it is woken at once when a server of a `min_size` pool closes. Ends with the
/// pool or at shutdown.
async fn maintenance(pool: Weak<Pool>, mut shutdown: watch::Receiver<bool>) {
    {
        let mut retry = REFILL_FIRST_RETRY;
        let mut short = false;
        loop {
            let (interval, p) = match pool.upgrade() {
                Some(p) => (p.settings().evict_interval.get(), p),
                None => return,
            };
            let wait = if short { retry.min(interval) } else { interval };
            // Hold only a weak reference while sleeping, so a dropped pool ends the task. A
            // wake-up sent while no one listens is kept by the Notify, never lost.
            let signal = p.refill_signal();
            drop(p);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = signal.notified() => {}
                _ = crate::lifecycle::stopping(&mut shutdown) => return,
            }
            let Some(p) = pool.upgrade() else { return };
            if p.is_closed() {
                return;
            }
            let full = p.maintain().await;
            if full {
                short = false;
                retry = REFILL_FIRST_RETRY;
            } else if short {
                retry = (retry * 2).min(interval);
            } else {
                short = true;
            }
        }
    }
}
