//! Keeping a pool healthy between clients: the maintenance pass (idle and expired servers,
//! `min_size`), pre-warming for the adaptive controller, and the breaker's probe.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::Notify;

use super::acquire::OpeningSlot;
use super::{lock, Pool};
use crate::breaker::Breaker;
use crate::clock::Instant;
use crate::server::{ServerConn, ServerTarget};

impl Pool {
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
    pub(super) async fn fill_to(self: &Arc<Self>, want: u32, why: &str) -> bool {
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

    /// Probes the server behind an open breaker with backoff and jitter until a connect
    /// succeeds (one probe per address; the probe connection is closed at once and the pools
    /// refill on their own).
    pub(super) fn spawn_probe(self: &Arc<Self>, target: &ServerTarget) {
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
}
