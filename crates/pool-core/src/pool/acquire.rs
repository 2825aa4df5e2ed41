//! Checking a server out: the FIFO wait for a permit, a warm idle server or a new one (under
//! the breaker and the caps shared with other pools), and the guards that make every step
//! safe to abandon (a client's cancel drops the acquire at any await).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, TryAcquireError};

use super::{lock, Checkout, Pool};
use crate::budget::ConnCap;
use crate::clock::Instant;
use crate::error::AcquireError;
use crate::server::{ServerConn, StartupSettings};

impl Pool {
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
    pub(super) fn check_out(
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
    pub(super) async fn wait_for_permit(
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
    pub(super) async fn open_new(
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
    pub(super) fn make_room(&self) {
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
    pub(super) async fn take_caps(
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
                    Some(d) => {
                        // A client waiting for a cap slot is a waiting client too: the
                        // controller must see the demand of a pool starved by its siblings.
                        let _queued = Waiting::enter(&self.stats.waiting);
                        tokio::time::timeout_at(d, freed).await.is_err()
                    }
                    None => true,
                };
                if timed_out {
                    if deadline.is_some() {
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

    pub(super) fn give_caps(&self) {
        for cap in &self.env.caps {
            cap.give();
        }
    }
}

/// A client counted in [`PoolStats::waiting`] for as long as this lives.
pub(super) struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    pub(super) fn enter(count: &'a std::sync::atomic::AtomicUsize) -> Self {
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
pub(super) struct TakenCaps<'a> {
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
pub(super) struct OpeningSlot<'a> {
    pool: &'a Pool,
    kept: bool,
}

impl<'a> OpeningSlot<'a> {
    pub(super) fn take(pool: &'a Pool) -> Self {
        lock(&pool.state).open += 1;
        OpeningSlot { pool, kept: false }
    }

    /// The connect succeeded: the count and the slots now belong to the new connection.
    pub(super) fn keep(mut self) {
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
