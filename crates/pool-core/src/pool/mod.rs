//! One pool of server connections for a (database, user) pair.
//!
//! Concurrency is bounded by a FIFO-fair semaphore of `max_size` permits: a client holds a
//! permit for as long as it holds a server, so waiting clients are served in arrival order and
//! the pool can never open more than `max_size` connections (a new connection is only opened
//! under a permit when no idle one exists). Changing `max_size` at run time adds permits, or
//! retires them as they come back (`debt`) and closes surplus idle servers — no client is
//! dropped. The locked part is tiny (an idle stack and three counters) and never held across
//! an `.await`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Acquire, Relaxed},
};
use std::sync::{Arc, Mutex};

use crate::clock::Instant;

use pgtide_config::PoolSettings;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

mod acquire;
mod admission;
mod checkout;
#[cfg(test)]
mod fake;
mod limits;
mod signals;
#[cfg(test)]
mod tests;
mod upkeep;
mod welcome;

pub use admission::Admission;
pub use checkout::Checkout;
pub use limits::{size_in_force, PoolReload};
pub use signals::{Percentiles, Signals};

use crate::budget::ConnCap;
use crate::error::AcquireError;
use crate::report::Failures;
use crate::server::{Connect, Entries, ParamSet, ServerConn, ServerTarget, StartupSettings};
use crate::stats::PoolStats;

/// What a pool shares with the rest of the process.
#[derive(Debug, Clone)]
pub struct PoolEnv {
    /// Where failures seen without a client (maintenance, probes) are reported.
    pub failures: Arc<Failures>,
    /// Caps across pools (`max_db_connections`, `max_user_connections`) this pool counts against.
    pub caps: Vec<Arc<ConnCap>>,
    /// How servers are opened: [`crate::server::TcpConnector`] in the daemon, a fake in the
    /// pool's own tests.
    pub connector: Arc<dyn Connect>,
    /// pgtide's shutdown signal: background work of the pool (breaker probes) stops with it.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// An open server, as operators see it.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// pgtide's id of the connection.
    pub id: u64,
    /// The server's address.
    pub addr: std::net::SocketAddr,
    /// The backend's process id (`pg_stat_activity.pid`).
    pub backend_pid: i32,
    /// When it was opened.
    pub created: Instant,
    /// Started with a client's own settings (session mode).
    pub with_client_settings: bool,
}

/// Which pool: the database name clients use and the client's user name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    /// Database name as clients send it (a key of `[databases]`).
    pub database: String,
    /// Client user name.
    pub user: String,
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.database, self.user)
    }
}

#[derive(Debug)]
struct PoolState {
    /// Idle servers; the most recently used is at the back and is handed out first (its caches
    /// are warm), the oldest at the front is the first to be closed by the idle sweep.
    idle: VecDeque<Box<ServerConn>>,
    /// Servers open or being opened, idle or checked out.
    open: u32,
    /// The current limit.
    max_size: u32,
    /// Permits to retire as they are released, after `max_size` was lowered.
    debt: u32,
}

/// A pool of server connections.
#[derive(Debug)]
pub struct Pool {
    key: PoolKey,
    name: String,
    target: Mutex<Arc<ServerTarget>>,
    settings: Mutex<Arc<PoolSettings>>,
    /// Bumped after every settings change, so sessions re-read the settings only when they
    /// changed ([`Pool::settings_since`]) instead of locking on every transaction.
    settings_version: AtomicU64,
    permits: Arc<Semaphore>,
    state: Mutex<PoolState>,
    /// ParameterStatus of the first server, replayed to clients at login before they have a
    /// server of their own (transaction mode binds a server only at the first query).
    welcome: Mutex<Option<Arc<Entries>>>,
    /// Client startup settings already validated on a server, with the values they give the
    /// session where those differ from the welcome set ([`Pool::session_params`]).
    validated: Mutex<std::collections::HashMap<StartupSettings, Arc<Entries>>>,
    closed: AtomicBool,
    env: PoolEnv,
    /// Wakes the maintenance task early when the pool fell below `min_size`.
    refill: Arc<Notify>,
    /// The configuration, runtime overrides and controller target behind `settings`
    /// (`limits.rs`); its lock orders writers, the hot path never takes it.
    layers: Mutex<limits::Layers>,
    /// Whether new transactions may take servers (`admission.rs`): pause and drain hold them.
    admission: tokio::sync::watch::Sender<Admission>,
    /// `admission` is `Open`: the one relaxed load the hot path pays for pausing.
    admitting: AtomicBool,
    /// Bumped by [`Pool::reconnect`]: servers of an older generation are closed when they come
    /// back instead of being reused.
    generation: AtomicU64,
    /// The servers open now, for operators (changed at open and close only).
    servers: Mutex<std::collections::BTreeMap<u64, ServerInfo>>,
    /// The origin of the nanosecond instants in `stats` (utilization integrals).
    epoch: Instant,
    /// The last [`Pool::signals`] reading: its window starts there.
    last_signals: Mutex<Option<signals::Reading>>,
    /// The adaptive controller's last decisions, with their inputs (`adaptive/runner.rs`).
    pub decisions: crate::adaptive::DecisionLog,
    /// Counters for the controller, metrics and the admin API.
    pub stats: PoolStats,
    /// Named prepared statements of this pool's clients (transaction-mode tracking).
    pub statements: crate::prepared::Registry,
}

impl Pool {
    /// A new, empty pool. Connections are opened on demand (and up to `min_size` by
    /// [`Pool::maintain`]).
    pub fn new(
        key: PoolKey,
        target: ServerTarget,
        settings: PoolSettings,
        env: PoolEnv,
    ) -> Arc<Pool> {
        let max = settings.max_size;
        let pool = Arc::new(Pool {
            name: key.to_string(),
            statements: crate::prepared::Registry::new(key.to_string()),
            key,
            target: Mutex::new(Arc::new(target)),
            layers: Mutex::new(limits::Layers {
                config: settings.clone(),
                overrides: Default::default(),
                size_target: None,
            }),
            admission: tokio::sync::watch::Sender::new(Admission::Open),
            admitting: AtomicBool::new(true),
            generation: AtomicU64::new(0),
            epoch: Instant::now(),
            last_signals: Mutex::new(None),
            servers: Mutex::default(),
            decisions: Default::default(),
            settings: Mutex::new(Arc::new(settings)),
            settings_version: AtomicU64::new(1),
            permits: Arc::new(Semaphore::new(max as usize)),
            state: Mutex::new(PoolState {
                idle: VecDeque::new(),
                open: 0,
                max_size: max,
                debt: 0,
            }),
            welcome: Mutex::new(None),
            validated: Mutex::default(),
            closed: AtomicBool::new(false),
            env,
            refill: Arc::new(Notify::new()),
            stats: PoolStats::default(),
        });
        let weak = Arc::downgrade(&pool);
        let member: std::sync::Weak<dyn crate::budget::ReclaimIdle> = weak;
        for cap in &pool.env.caps {
            cap.join(member.clone());
        }
        pool
    }

    /// The pool's key.
    pub fn key(&self) -> &PoolKey {
        &self.key
    }

    /// `database/user`, as used in logs, metrics and errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings in force now.
    pub fn settings(&self) -> Arc<PoolSettings> {
        lock(&self.settings).clone()
    }

    /// The settings and their version when they changed after version `seen` (0 = never
    /// read); `None` when the caller's copy is current.
    pub fn settings_since(&self, seen: u64) -> Option<(Arc<PoolSettings>, u64)> {
        let version = self.settings_version.load(Acquire);
        (version != seen).then(|| (self.settings(), version))
    }

    /// Where new connections go.
    pub fn target(&self) -> Arc<ServerTarget> {
        lock(&self.target).clone()
    }

    /// The servers open now, and the idle ones among them with when they became idle and how
    /// many prepared statements each holds (by id).
    pub fn servers(&self) -> (Vec<ServerInfo>, Vec<(u64, Instant, usize)>) {
        let open = lock(&self.servers).values().cloned().collect();
        let idle = lock(&self.state)
            .idle
            .iter()
            .map(|c| (c.id, c.idle_since, c.statements.len()))
            .collect();
        (open, idle)
    }

    /// Nanoseconds from the pool's epoch to `at` (0 for instants before it).
    fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Posts this pool's claim (`min`, `want`) on every cap it counts against and returns the
    /// smallest fair share among them: the budget its controller sizes within (`None` when no
    /// cap has a limit).
    pub fn budget_share(&self, min: u32, want: u32) -> Option<u32> {
        let claim = crate::adaptive::Claim {
            min,
            want: want.max(min),
        };
        self.env
            .caps
            .iter()
            .filter_map(|cap| cap.share(&self.name, claim))
            .min()
    }

    /// Withdraws this pool's claims (its controller stopped).
    pub fn withdraw_claims(&self) {
        for cap in &self.env.caps {
            cap.withdraw(&self.name);
        }
    }

    /// The backend process ids of the idle servers (for checks against `pg_stat_activity`).
    pub fn idle_backend_pids(&self) -> Vec<i32> {
        lock(&self.state)
            .idle
            .iter()
            .map(|c| c.cancel_key.process_id)
            .collect()
    }

    /// (open, idle, max_size) right now.
    pub fn sizes(&self) -> (u32, usize, u32) {
        let st = lock(&self.state);
        (st.open, st.idle.len(), st.max_size)
    }

    /// Changes `max_size` live. Growing adds permits at once; shrinking retires free permits at
    /// once and busy ones as they are released, and closes surplus idle servers.
    pub fn set_max_size(&self, new_max: u32) {
        let surplus = {
            let mut st = lock(&self.state);
            let old = st.max_size;
            st.max_size = new_max;
            if new_max > old {
                let mut grow = new_max - old;
                let repaid = grow.min(st.debt);
                st.debt -= repaid;
                grow -= repaid;
                self.permits.add_permits(grow as usize);
            } else if new_max < old {
                let shrink = old - new_max;
                let forgotten = self.permits.forget_permits(shrink as usize) as u32;
                st.debt += shrink - forgotten;
            }
            let mut surplus = Vec::new();
            while st.open > new_max {
                match st.idle.pop_front() {
                    Some(conn) => {
                        st.open -= 1;
                        surplus.push(conn);
                    }
                    None => break,
                }
            }
            surplus
        };
        for conn in surplus {
            self.close_conn(conn);
        }
    }

    /// Marks the pool closed: waiting clients fail with [`AcquireError::Closed`] and idle servers
    /// are closed; checked-out ones close when released.
    pub fn close(&self) {
        self.closed.store(true, Relaxed);
        self.permits.close();
        // Clients waiting for a paused pool go on to fail with `Closed`.
        self.admission.send_replace(Admission::Open);
        let idle: Vec<_> = {
            let mut st = lock(&self.state);
            let idle: Vec<_> = st.idle.drain(..).collect();
            st.open -= idle.len() as u32;
            idle
        };
        for conn in idle {
            self.close_conn(conn);
        }
    }

    /// True once [`Pool::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Closes the oldest idle server, if any (a sibling pool under a shared cap needs the slot).
    pub fn close_one_idle(&self) -> bool {
        crate::budget::ReclaimIdle::close_one_idle(self)
    }
}

impl crate::budget::ReclaimIdle for Pool {
    fn close_one_idle(&self) -> bool {
        let conn = {
            let mut st = lock(&self.state);
            let Some(conn) = st.idle.pop_front() else {
                return false;
            };
            st.open -= 1;
            conn
        };
        self.close_conn(conn);
        true
    }
}

impl Pool {
    fn idle_count(&self) -> usize {
        lock(&self.state).idle.len()
    }

    /// Returns a server. `reusable` is the session's verdict: the server is idle (ReadyForQuery
    /// 'I', nothing in flight); otherwise it is closed, never handed to another client.
    pub fn release(&self, mut checkout: Checkout, reusable: bool) {
        if let Some(conn) = checkout.conn.take() {
            let permit = checkout.permit.take();
            let now_ns = self.give_back(conn, permit, Some(checkout.acquired_ns), reusable);
            if reusable {
                // Server time is known only for transactions that ended cleanly.
                checkout.close_books(now_ns);
            }
        }
    }

    /// The parameters to announce to a new client; opens a connection if none was ever made.
    pub async fn welcome_params(self: &Arc<Self>) -> Result<ParamSet, AcquireError> {
        if let Some(base) = lock(&self.welcome).clone() {
            return Ok(ParamSet::over(base));
        }
        let checkout = self.acquire().await?;
        self.release(checkout, true);
        Ok(lock(&self.welcome)
            .clone()
            .map(ParamSet::over)
            .unwrap_or_default())
    }

    fn closed_error(&self) -> AcquireError {
        AcquireError::Closed {
            pool: self.name.clone(),
        }
    }

    /// Pops the warmest idle server started with `want` that is still alive and not expired.
    /// In transaction mode every server is a plain one and the warmest is at the back.
    fn take_idle(
        &self,
        now: Instant,
        want: Option<&Arc<StartupSettings>>,
    ) -> Option<Box<ServerConn>> {
        loop {
            let conn = {
                let mut st = lock(&self.state);
                let fits = |c: &ServerConn| c.startup.as_deref() == want.map(|w| &**w);
                if st.idle.back().is_some_and(|c| fits(c)) {
                    // The hot path: the warmest server fits (always, in transaction mode).
                    st.idle.pop_back()?
                } else {
                    let at = st.idle.iter().rposition(|c| fits(c))?;
                    st.idle.remove(at)?
                }
            };
            if !conn.expired(now) && conn.stream.looks_alive() && self.reuses(&conn) {
                return Some(conn);
            }
            lock(&self.state).open -= 1;
            self.close_conn(conn);
        }
    }

    async fn open_conn(
        self: &Arc<Self>,
        target: &ServerTarget,
        want: Option<&Arc<StartupSettings>>,
    ) -> Result<Box<ServerConn>, AcquireError> {
        let started = Instant::now();
        match self.env.connector.connect(target, want).await {
            Ok(conn) => {
                let mut conn = Box::new(conn);
                conn.generation = self.generation.load(Relaxed);
                target.breaker.on_success();
                self.stats.connects.fetch_add(1, Relaxed);
                self.stats
                    .connect
                    .record(conn.created.saturating_duration_since(started));
                lock(&self.servers).insert(
                    conn.id,
                    ServerInfo {
                        id: conn.id,
                        addr: conn.addr,
                        backend_pid: conn.cancel_key.process_id,
                        created: conn.created,
                        with_client_settings: conn.startup.is_some(),
                    },
                );
                self.stats
                    .open_since_ns
                    .fetch_add(self.since_epoch(conn.created), Relaxed);
                if conn.startup.is_some() {
                    // A client's own server: its settings are not the pool's welcome set.
                    return Ok(conn);
                }
                let mut welcome = lock(&self.welcome);
                let base = welcome.get_or_insert_with(|| conn.params.to_shared());
                // Servers of one pool report the same settings: share the welcome set, so the
                // per-transaction settings check compares only overrides.
                if conn
                    .params
                    .iter()
                    .eq(base.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                {
                    conn.params = ParamSet::over(base.clone());
                }
                Ok(conn)
            }
            Err(source) => {
                self.stats.connect_failures.fetch_add(1, Relaxed);
                self.stats.connect_failures_by_class[source.class() as usize].fetch_add(1, Relaxed);
                if target
                    .breaker
                    .on_failure(source.class(), &source.to_string())
                {
                    self.spawn_probe(target);
                }
                Err(AcquireError::Server {
                    pool: self.name.clone(),
                    source,
                })
            }
        }
    }

    /// Puts a server back (or closes it) and returns its permit; `acquired_ns` is set when it
    /// comes from a [`Checkout`] (its hold time is recorded). Returns the time of the release
    /// in ns since the epoch (0 without `acquired_ns`).
    fn give_back(
        &self,
        mut conn: Box<ServerConn>,
        permit: Option<OwnedSemaphorePermit>,
        acquired_ns: Option<u64>,
        reusable: bool,
    ) -> u64 {
        // One clock read serves the hold time, the server time and the idle stamp.
        let now = Instant::now();
        let mut now_ns = 0;
        if let Some(at) = acquired_ns {
            now_ns = self.since_epoch(now);
            self.stats.active.fetch_sub(1, Relaxed);
            self.stats.active_since_ns.fetch_sub(at, Relaxed);
            self.stats
                .hold_ns
                .fetch_add(now_ns.saturating_sub(at), Relaxed);
        }
        let to_close = {
            let mut st = lock(&self.state);
            if reusable
                && !self.closed.load(Relaxed)
                && st.open <= st.max_size
                && !conn.expired(now)
                && self.reuses(&conn)
            {
                conn.idle_since = now;
                st.idle.push_back(conn);
                None
            } else {
                st.open -= 1;
                Some(conn)
            }
        };
        if let Some(conn) = to_close {
            self.close_conn(conn);
        }
        if let Some(permit) = permit {
            self.return_permit(permit);
        }
        now_ns
    }

    /// Returns a permit to the semaphore (waking the next waiter), or retires it when the pool
    /// was shrunk. Called without the state lock held.
    fn return_permit(&self, permit: OwnedSemaphorePermit) {
        let retire = {
            let mut st = lock(&self.state);
            if st.debt > 0 {
                st.debt -= 1;
                true
            } else {
                false
            }
        };
        if retire {
            permit.forget();
        } else {
            drop(permit);
        }
    }

    /// The one place a server connection that was counted in `open` ends: its cap slots are
    /// given back, and the maintenance task is woken when the pool fell below `min_size`.
    fn close_conn(&self, conn: Box<ServerConn>) {
        self.stats.closes.fetch_add(1, Relaxed);
        lock(&self.servers).remove(&conn.id);
        self.stats
            .open_since_ns
            .fetch_sub(self.since_epoch(conn.created), Relaxed);
        let lifetime = Instant::now().saturating_duration_since(conn.created);
        self.stats.closed_lifetimes_ns.fetch_add(
            u64::try_from(lifetime.as_nanos()).unwrap_or(u64::MAX),
            Relaxed,
        );
        // Best effort, never blocking: a Terminate lets the server log a clean disconnect.
        conn.stream.try_terminate();
        drop(conn);
        self.give_caps();
        self.note_closed();
        if !self.is_closed() && lock(&self.state).open < self.settings().min_size {
            self.refill.notify_one();
        }
    }
}

use crate::sync::lock;
