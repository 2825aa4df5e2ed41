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
use std::time::Duration;

use crate::clock::Instant;

use pgtide_config::PoolSettings;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

mod admission;
#[cfg(test)]
mod fake;
mod limits;
mod signals;
#[cfg(test)]
mod tests;
mod welcome;

pub use admission::Admission;
pub use limits::{size_in_force, PoolReload};
pub use signals::{Percentiles, Signals};

use crate::breaker::Breaker;
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

/// A checked-out server. Give it back with [`Pool::release`]; dropping it instead closes the
/// server (the safe default when a session ends in an unknown state).
#[derive(Debug)]
pub struct Checkout {
    /// Boxed: a checkout moves between the pool, the session and back on every transaction,
    /// and a pointer moves for free where the connection's few hundred bytes would not.
    conn: Option<Box<ServerConn>>,
    permit: Option<OwnedSemaphorePermit>,
    pool: Arc<Pool>,
    /// When it was checked out, in ns since the pool's epoch: the times a checkout keeps are
    /// integers, so that each transaction converts an instant twice (here and at release) and
    /// everything else is a subtraction.
    acquired_ns: u64,
    /// Server time of the current transaction's finished round trips (ns).
    busy_ns: u64,
    /// Start of the round trip in progress: the checkout itself for the first (its bytes go
    /// out right after), then each [`Checkout::asked`]; [`NOT_BUSY`] while the server waits
    /// for the client.
    busy_from_ns: u64,
}

/// [`Checkout::busy_from_ns`] when no round trip is in progress.
const NOT_BUSY: u64 = u64::MAX;

impl Checkout {
    /// The server connection.
    pub fn conn(&mut self) -> &mut ServerConn {
        self.conn
            .as_deref_mut()
            .expect("conn present until release")
    }

    /// The pool it came from.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The client sent the server a new sync point at `now` while it was waiting for the
    /// client (a transaction's second statement, or the next one in session mode). Not needed
    /// for the first: the checkout starts the clock.
    pub fn asked(&mut self, now: Instant) {
        if self.busy_from_ns == NOT_BUSY {
            self.busy_from_ns = self.pool.since_epoch(now);
        }
    }

    /// The server answered every sync point at `now` and the server stays with the client (a
    /// transaction goes on, or session mode). With `transaction_done` the transaction's server
    /// time is recorded and the next one starts from zero. The round trip that ends in a
    /// release is recorded by the release itself (one clock read serves both).
    pub fn answered(&mut self, now: Instant, transaction_done: bool) {
        let now_ns = self.pool.since_epoch(now);
        self.close_trip(now_ns, transaction_done);
    }

    fn close_trip(&mut self, now_ns: u64, transaction_done: bool) {
        let stats = &self.pool.stats;
        if self.busy_from_ns != NOT_BUSY {
            let trip = now_ns.saturating_sub(self.busy_from_ns);
            self.busy_from_ns = NOT_BUSY;
            stats.server_query.record_ns(trip);
            self.busy_ns += trip;
        }
        if transaction_done {
            stats.server_tx.record_ns(std::mem::take(&mut self.busy_ns));
        }
    }

    /// At release: the last round trip ends at `now_ns`, and with it the transaction.
    fn close_books(&mut self, now_ns: u64) {
        if self.busy_from_ns != NOT_BUSY || self.busy_ns != 0 {
            self.close_trip(now_ns, true);
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let permit = self.permit.take();
            self.pool
                .give_back(conn, permit, Some(self.acquired_ns), false);
        }
    }
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

    /// Waits (FIFO, at most `acquire_timeout`) for a server and checks it out. Fails fast
    /// when the server's circuit breaker is open and no idle server is left.
    pub async fn acquire(self: &Arc<Self>) -> Result<Checkout, AcquireError> {
        self.acquire_for(None).await
    }

    /// [`Pool::acquire`] for a server started with the client settings `want` (session mode;
    /// `None`: one of the pool's plain servers). An idle server with other settings is closed
    /// to make room when the pool is full. Safe to drop at any await: every count it took is
    /// given back.
    pub async fn acquire_for(
        self: &Arc<Self>,
        want: Option<&Arc<StartupSettings>>,
    ) -> Result<Checkout, AcquireError> {
        if !self.admitting.load(Relaxed) {
            // Paused or draining: wait to be let in; acquire_timeout starts after.
            let _queued = Waiting::enter(&self.stats.waiting);
            self.admitted().await;
        }
        let timeout = lock(&self.settings).acquire_timeout.get();
        // Clocks are read once on the fast path (a permit and a warm server at hand): the wait
        // is then recorded as zero and the hold time starts here.
        let start = Instant::now();
        let deadline = start + timeout;
        // The wait recorded is the time in the queue for a permit: not the connect, which is
        // measured on its own (connect latency), so the wait percentiles say "clients queued".
        let mut permit_at = start;
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return Err(self.closed_error()),
            Err(TryAcquireError::NoPermits) => {
                // Counted while queued, and uncounted however the wait ends (also when the
                // caller drops this future: a client's cancel aborts its wait).
                let _queued = Waiting::enter(&self.stats.waiting);
                let permit = self.wait_for_permit(timeout, start, deadline).await?;
                permit_at = Instant::now();
                permit
            }
        };
        let (conn, acquired_at) = match self.take_idle(permit_at, want) {
            Some(conn) => (conn, permit_at),
            None => {
                // Boxed: opening a server is rare, and its large state would otherwise sit in
                // every waiting `acquire`'s future.
                match Box::pin(self.open_new(deadline, start, want)).await {
                    Ok(conn) => (conn, Instant::now()),
                    Err(e) => {
                        self.return_permit(permit);
                        return Err(e);
                    }
                }
            }
        };
        Ok(self.check_out(conn, permit, permit_at - start, acquired_at))
    }

    /// Hands out `conn` under `permit`, recording the wait and the start of the hold time: the
    /// one place both acquire paths count a checkout.
    fn check_out(
        self: &Arc<Self>,
        conn: Box<ServerConn>,
        permit: OwnedSemaphorePermit,
        waited: Duration,
        acquired_at: Instant,
    ) -> Checkout {
        let acquired_ns = self.since_epoch(acquired_at);
        self.stats.record_acquire(waited);
        self.stats.active.fetch_add(1, Relaxed);
        self.stats.active_since_ns.fetch_add(acquired_ns, Relaxed);
        Checkout {
            conn: Some(conn),
            permit: Some(permit),
            pool: self.clone(),
            acquired_ns,
            busy_ns: 0,
            busy_from_ns: acquired_ns,
        }
    }

    /// A checkout without waiting: a free permit and a warm idle server, or `None` (then
    /// [`Pool::acquire`] waits or opens one). Synchronous, so the session's per-transaction
    /// future need not hold `acquire`'s state for the common case.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Checkout> {
        self.try_acquire_for(None)
    }

    /// [`Pool::try_acquire`] for a server started with the client settings `want`.
    pub fn try_acquire_for(
        self: &Arc<Self>,
        want: Option<&Arc<StartupSettings>>,
    ) -> Option<Checkout> {
        if !self.admitting.load(Relaxed) {
            return None;
        }
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        let now = Instant::now();
        let Some(conn) = self.take_idle(now, want) else {
            // Through the shrink bookkeeping: a max_size lowered meanwhile retires it.
            self.return_permit(permit);
            return None;
        };
        Some(self.check_out(conn, permit, Duration::ZERO, now))
    }

    /// Queued part of [`Pool::acquire`]: keeps its FIFO place until a permit comes, the
    /// deadline passes, or the breaker opens while no idle server is left.
    async fn wait_for_permit(
        &self,
        timeout: std::time::Duration,
        start: Instant,
        deadline: Instant,
    ) -> Result<OwnedSemaphorePermit, AcquireError> {
        let target = self.target();
        let breaker = &target.breaker;
        let queued = self.permits.clone().acquire_owned();
        tokio::pin!(queued);
        loop {
            let opened = breaker.opened();
            if breaker.is_open() && self.idle_count() == 0 {
                if let Some(open) = breaker.open_info() {
                    return Err(AcquireError::unavailable(&self.name, open));
                }
            }
            tokio::select! {
                biased;
                r = &mut queued => return r.map_err(|_| self.closed_error()),
                _ = tokio::time::sleep_until(deadline) => {
                    self.stats.acquire_timeouts.fetch_add(1, Relaxed);
                    self.stats.record_timed_out_wait(timeout);
                    return Err(AcquireError::Timeout {
                        pool: self.name.clone(),
                        timeout,
                        waited: start.elapsed(),
                        // This client has not left the queue yet.
                        waiting: self.stats.waiting.load(Relaxed).saturating_sub(1),
                        active: self.stats.active.load(Relaxed),
                        max_size: self.settings().max_size,
                    });
                }
                _ = opened => {}
            }
        }
    }

    /// Opens a new server under a permit the caller holds: breaker check, then the caps shared
    /// with other pools, then the connect itself.
    async fn open_new(
        self: &Arc<Self>,
        deadline: Instant,
        start: Instant,
        want: Option<&Arc<StartupSettings>>,
    ) -> Result<Box<ServerConn>, AcquireError> {
        let target = self.target();
        if let Some(open) = target.breaker.open_info() {
            self.spawn_probe(&target);
            return Err(AcquireError::unavailable(&self.name, open));
        }
        self.make_room();
        self.take_caps(Some(deadline), start).await?;
        // Counted in `open` (and holding its cap slots) from here; the guard undoes both if
        // the connect fails or this future is dropped mid-connect.
        let slot = OpeningSlot::take(self);
        let conn = self.open_conn(&target, want).await?;
        slot.keep();
        Ok(conn)
    }

    /// Closes the oldest idle server when the pool is full: a client holding a permit found no
    /// idle server with its settings, so every idle one has other settings (session mode).
    fn make_room(&self) {
        let surplus = {
            let mut st = lock(&self.state);
            if st.open < st.max_size {
                return;
            }
            let Some(conn) = st.idle.pop_front() else {
                return;
            };
            st.open -= 1;
            conn
        };
        self.close_conn(surplus);
    }

    /// Takes a slot from every cap, reclaiming idle servers of sibling pools and waiting (up to
    /// `deadline`; `None` = do not wait) when one is full.
    async fn take_caps(
        &self,
        deadline: Option<Instant>,
        start: Instant,
    ) -> Result<(), AcquireError> {
        // Slots taken so far are given back if this fails or is dropped while waiting.
        let mut taken = TakenCaps {
            caps: &self.env.caps,
            n: 0,
        };
        for cap in &self.env.caps {
            loop {
                let freed = cap.freed();
                if cap.try_take() {
                    taken.n += 1;
                    break;
                }
                // Only a client waiting now may close a sibling's idle server; a min_size fill
                // that did would make pools under one cap take servers from each other forever.
                if deadline.is_some() && cap.reclaim_idle(self) {
                    continue;
                }
                let timed_out = match deadline {
                    Some(d) => tokio::time::timeout_at(d, freed).await.is_err(),
                    None => true,
                };
                if timed_out {
                    if deadline.is_some() {
                        self.stats.acquire_timeouts.fetch_add(1, Relaxed);
                        self.stats.record_timed_out_wait(start.elapsed());
                    }
                    return Err(AcquireError::CapReached {
                        pool: self.name.clone(),
                        cap: cap.describe().to_owned(),
                        limit: cap.limit(),
                        timeout: self.settings().acquire_timeout.get(),
                        waited: start.elapsed(),
                    });
                }
            }
        }
        taken.n = 0;
        Ok(())
    }

    fn give_caps(&self) {
        for cap in &self.env.caps {
            cap.give();
        }
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

    /// One maintenance pass (run every `evict_interval`): closes idle servers past
    /// `idle_timeout` (never below `min_size`) or past their lifetime, then opens servers up to
    /// `min_size`. Opening happens under a permit, so it can never exceed `max_size`. Returns
    /// false when the pool is still below `min_size` (the caller retries with backoff).
    pub async fn maintain(self: &Arc<Self>) -> bool {
        let settings = self.settings();
        let now = Instant::now();
        let stale: Vec<Box<ServerConn>> = {
            let mut st = lock(&self.state);
            let mut keep = VecDeque::with_capacity(st.idle.len());
            let mut stale = Vec::new();
            while let Some(conn) = st.idle.pop_front() {
                let idle_for = now.saturating_duration_since(conn.idle_since);
                let idle_expired = settings
                    .idle_timeout
                    .non_zero()
                    .is_some_and(|t| idle_for >= t)
                    && st.open > settings.min_size;
                // A server that died while idle (terminated, restarted) is dropped here, so
                // the pool refills to min_size before a client trips over it.
                if conn.expired(now) || idle_expired || !conn.stream.looks_alive() {
                    st.open -= 1;
                    stale.push(conn);
                } else {
                    keep.push_back(conn);
                }
            }
            st.idle = keep;
            stale
        };
        for conn in stale {
            self.close_conn(conn);
        }
        self.fill_to(settings.min_size, "min_size").await
    }

    /// Opens up to `n` servers ahead of demand (the adaptive controller after raising the
    /// target), within the size in force; each takes a free permit, so none is opened for a
    /// size the pool may not reach, and a waiting client is never passed over.
    pub async fn prewarm(self: &Arc<Self>, n: u32) -> bool {
        let (open, _, size) = self.sizes();
        self.fill_to(open.saturating_add(n).min(size), "pre-warm")
            .await
    }

    /// Opens servers, one at a time, until `want` are open; false when it could not (breaker
    /// open, cap full, a connect failed: reported), true when `want` are open or no permit is
    /// free.
    async fn fill_to(self: &Arc<Self>, want: u32, why: &str) -> bool {
        let target = self.target();
        let now = Instant::now();
        // A paused or draining pool opens nothing (a drain must end with no server).
        while !self.closed.load(Relaxed)
            && self.admitting.load(Relaxed)
            && lock(&self.state).open < want
        {
            if target.breaker.is_open() {
                // The probe decides when connecting makes sense again.
                self.spawn_probe(&target);
                return false;
            }
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                break;
            };
            if self.take_caps(None, now).await.is_err() {
                self.return_permit(permit);
                return false;
            }
            let slot = OpeningSlot::take(self);
            match self.open_conn(&target, None).await {
                Ok(conn) => {
                    slot.keep();
                    self.give_back(conn, Some(permit), None, true);
                }
                Err(e) => {
                    drop(slot);
                    self.return_permit(permit);
                    let message = format!("cannot open a {why} connection: {e}");
                    self.env.failures.report(e.failure(&self.name, &message));
                    return false;
                }
            }
        }
        true
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
                self.stats.established.fetch_add(1, Relaxed);
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

    /// Probes the server behind an open breaker with backoff and jitter until a connect
    /// succeeds (one probe per address; the probe connection is closed at once and the pools
    /// refill on their own).
    fn spawn_probe(self: &Arc<Self>, target: &ServerTarget) {
        let breaker: Arc<Breaker> = target.breaker.clone();
        if !breaker.start_probing() {
            return;
        }
        let pool = Arc::downgrade(self);
        let mut shutdown = self.env.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(breaker.next_probe_delay()) => {}
                    _ = crate::lifecycle::stopping(&mut shutdown) => break,
                }
                if !breaker.is_open() {
                    break;
                }
                let Some((target, connector)) = pool
                    .upgrade()
                    .filter(|p| !p.is_closed())
                    .map(|p| (p.target(), p.env.connector.clone()))
                else {
                    break;
                };
                match connector.connect(&target, None).await {
                    Ok(conn) => {
                        breaker.on_success();
                        conn.stream.try_terminate();
                        if let Some(p) = pool.upgrade() {
                            p.refill.notify_one();
                        }
                        break;
                    }
                    Err(e) if !Breaker::counts(e.class()) => {
                        // The server answered (e.g. it rejected the credentials): the address
                        // is reachable again; that failure is the pools' to report.
                        tracing::debug!(server = %breaker.addr(), error = %e, "probe reached the server");
                        breaker.on_success();
                        if let Some(p) = pool.upgrade() {
                            p.refill.notify_one();
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(server = %breaker.addr(), class = %e.class(), error = %e, "probe failed");
                        breaker.on_failure(e.class(), &e.to_string());
                    }
                }
            }
            breaker.stop_probing();
        });
    }

    /// Signalled when the pool lost a server while below `min_size` (or a probe succeeded).
    pub fn refill_signal(&self) -> Arc<Notify> {
        self.refill.clone()
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
        self.stats.established.fetch_sub(1, Relaxed);
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

/// A client counted in [`PoolStats::waiting`] for as long as this lives.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The first `n` caps of a pool, taken by [`Pool::take_caps`] and given back on drop unless
/// the whole set was taken (then `n` is reset to 0 and the slots stay taken).
struct TakenCaps<'a> {
    caps: &'a [Arc<ConnCap>],
    n: usize,
}

impl Drop for TakenCaps<'_> {
    fn drop(&mut self) {
        for cap in &self.caps[..self.n] {
            cap.give();
        }
    }
}

/// A server being opened: counted in `open` and holding the pool's cap slots. Dropped without
/// [`OpeningSlot::keep`] (the connect failed, or the acquire was abandoned mid-connect) it
/// gives both back, so an abandoned connect can never shrink the pool for good.
struct OpeningSlot<'a> {
    pool: &'a Pool,
    kept: bool,
}

impl<'a> OpeningSlot<'a> {
    fn take(pool: &'a Pool) -> Self {
        lock(&pool.state).open += 1;
        OpeningSlot { pool, kept: false }
    }

    /// The connect succeeded: the count and the slots now belong to the new connection.
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for OpeningSlot<'_> {
    fn drop(&mut self) {
        if !self.kept {
            lock(&self.pool.state).open -= 1;
            self.pool.give_caps();
        }
    }
}

/// Re-exported for modules that still import it from here; new code uses `crate::sync::lock`.
pub(crate) use crate::sync::lock;
