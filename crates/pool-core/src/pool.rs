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
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pgtide_config::PoolSettings;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::error::AcquireError;
use crate::server::{connect, Entries, ParamSet, ServerConn, ServerTarget};
use crate::stats::PoolStats;

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
    idle: VecDeque<ServerConn>,
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
    permits: Arc<Semaphore>,
    state: Mutex<PoolState>,
    /// ParameterStatus of the first server, replayed to clients at login before they have a
    /// server of their own (transaction mode binds a server only at the first query).
    welcome: Mutex<Option<Arc<Entries>>>,
    closed: AtomicBool,
    /// Counters for the controller, metrics and the admin API.
    pub stats: PoolStats,
}

/// A checked-out server. Give it back with [`Pool::release`]; dropping it instead closes the
/// server (the safe default when a session ends in an unknown state).
#[derive(Debug)]
pub struct Checkout {
    conn: Option<ServerConn>,
    permit: Option<OwnedSemaphorePermit>,
    pool: Arc<Pool>,
    acquired_at: Instant,
}

impl Checkout {
    /// The server connection.
    pub fn conn(&mut self) -> &mut ServerConn {
        self.conn.as_mut().expect("conn present until release")
    }

    /// The pool it came from.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let permit = self.permit.take();
            self.pool
                .give_back(conn, permit, Some(self.acquired_at.elapsed()), false);
        }
    }
}

impl Pool {
    /// A new, empty pool. Connections are opened on demand (and up to `min_size` by
    /// [`Pool::maintain`]).
    pub fn new(key: PoolKey, target: ServerTarget, settings: PoolSettings) -> Arc<Pool> {
        let max = settings.max_size;
        Arc::new(Pool {
            name: key.to_string(),
            key,
            target: Mutex::new(Arc::new(target)),
            settings: Mutex::new(Arc::new(settings)),
            permits: Arc::new(Semaphore::new(max as usize)),
            state: Mutex::new(PoolState {
                idle: VecDeque::new(),
                open: 0,
                max_size: max,
                debt: 0,
            }),
            welcome: Mutex::new(None),
            closed: AtomicBool::new(false),
            stats: PoolStats::default(),
        })
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

    /// Where new connections go.
    pub fn target(&self) -> Arc<ServerTarget> {
        lock(&self.target).clone()
    }

    /// (open, idle, max_size) right now.
    pub fn sizes(&self) -> (u32, usize, u32) {
        let st = lock(&self.state);
        (st.open, st.idle.len(), st.max_size)
    }

    /// Applies new settings live: limits change without dropping any client; connections
    /// already open keep their target until they are next recycled.
    pub fn reconfigure(&self, target: ServerTarget, settings: PoolSettings) {
        self.set_max_size(settings.max_size);
        *lock(&self.target) = Arc::new(target);
        *lock(&self.settings) = Arc::new(settings);
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

    /// Waits (FIFO, at most `acquire_timeout`) for a server and checks it out.
    pub async fn acquire(self: &Arc<Self>) -> Result<Checkout, AcquireError> {
        let settings = self.settings();
        let start = Instant::now();
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return Err(self.closed_error()),
            Err(TryAcquireError::NoPermits) => {
                self.stats.waiting.fetch_add(1, Relaxed);
                let waited = tokio::time::timeout(
                    settings.acquire_timeout.get(),
                    self.permits.clone().acquire_owned(),
                )
                .await;
                let still_waiting = self.stats.waiting.fetch_sub(1, Relaxed) - 1;
                match waited {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(self.closed_error()),
                    Err(_) => {
                        self.stats.acquire_timeouts.fetch_add(1, Relaxed);
                        return Err(AcquireError::Timeout {
                            pool: self.name.clone(),
                            timeout: settings.acquire_timeout.get(),
                            waited: start.elapsed(),
                            waiting: still_waiting,
                            active: self.stats.active.load(Relaxed),
                            max_size: settings.max_size,
                        });
                    }
                }
            }
        };
        let conn = match self.take_idle() {
            Some(conn) => conn,
            None => {
                lock(&self.state).open += 1;
                match self.open_conn().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        lock(&self.state).open -= 1;
                        self.return_permit(permit);
                        return Err(e);
                    }
                }
            }
        };
        self.stats.record_acquire(start.elapsed());
        self.stats.active.fetch_add(1, Relaxed);
        Ok(Checkout {
            conn: Some(conn),
            permit: Some(permit),
            pool: self.clone(),
            acquired_at: Instant::now(),
        })
    }

    /// Returns a server. `reusable` is the session's verdict: the server is idle (ReadyForQuery
    /// 'I', nothing in flight); otherwise it is closed, never handed to another client.
    pub fn release(&self, mut checkout: Checkout, reusable: bool) {
        if let Some(conn) = checkout.conn.take() {
            let permit = checkout.permit.take();
            self.give_back(conn, permit, Some(checkout.acquired_at.elapsed()), reusable);
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
    /// `min_size`. Opening happens under a permit, so it can never exceed `max_size`.
    pub async fn maintain(self: &Arc<Self>) {
        let settings = self.settings();
        let now = Instant::now();
        let stale: Vec<ServerConn> = {
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
                if conn.expired(now) || idle_expired {
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
        while !self.closed.load(Relaxed) && lock(&self.state).open < settings.min_size {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                break;
            };
            lock(&self.state).open += 1;
            match self.open_conn().await {
                Ok(conn) => self.give_back(conn, Some(permit), None, true),
                Err(e) => {
                    lock(&self.state).open -= 1;
                    self.return_permit(permit);
                    tracing::warn!(pool = %self.name, class = %e.class(), error = %e, "cannot open min_size connection");
                    break;
                }
            }
        }
    }

    fn closed_error(&self) -> AcquireError {
        AcquireError::Closed {
            pool: self.name.clone(),
        }
    }

    /// Pops the warmest idle server that is still alive and not expired.
    fn take_idle(&self) -> Option<ServerConn> {
        let now = Instant::now();
        loop {
            let conn = lock(&self.state).idle.pop_back()?;
            if !conn.expired(now) && conn.stream.looks_alive() {
                return Some(conn);
            }
            lock(&self.state).open -= 1;
            self.close_conn(conn);
        }
    }

    async fn open_conn(&self) -> Result<ServerConn, AcquireError> {
        let target = self.target();
        match connect(&target).await {
            Ok(conn) => {
                self.stats.connects.fetch_add(1, Relaxed);
                let mut welcome = lock(&self.welcome);
                if welcome.is_none() {
                    *welcome = Some(conn.params.to_shared());
                }
                Ok(conn)
            }
            Err(source) => {
                self.stats.connect_failures.fetch_add(1, Relaxed);
                Err(AcquireError::Server {
                    pool: self.name.clone(),
                    source,
                })
            }
        }
    }

    /// Puts a server back (or closes it) and returns its permit; `held` is set when it comes
    /// from a [`Checkout`].
    fn give_back(
        &self,
        mut conn: ServerConn,
        permit: Option<OwnedSemaphorePermit>,
        held: Option<Duration>,
        reusable: bool,
    ) {
        if let Some(held) = held {
            self.stats.active.fetch_sub(1, Relaxed);
            self.stats.record_hold(held);
        }
        let now = Instant::now();
        let to_close = {
            let mut st = lock(&self.state);
            if reusable
                && !self.closed.load(Relaxed)
                && st.open <= st.max_size
                && !conn.expired(now)
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

    fn close_conn(&self, conn: ServerConn) {
        self.stats.closes.fetch_add(1, Relaxed);
        // Best effort, never blocking: a Terminate lets the server log a clean disconnect.
        conn.stream.try_terminate();
        drop(conn);
    }
}

/// Locks a mutex, recovering from poisoning: the guarded data is plain bookkeeping that stays
/// consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
