//! Pause, resume, drain and reconnect: what an operator does to a pool at run time.
//!
//! - **pause**: new transactions wait (counted as waiting; their `acquire_timeout` starts only
//!   when the pool resumes), transactions in flight finish, no server is closed;
//! - **resume**: waiting clients go on, in their arrival order;
//! - **drain**: like pause, and the pool lets go of its servers: idle ones close at once, busy
//!   ones when their transaction ends, nothing new is opened (not even for `min_size`);
//!   [`Pool::drained`] resolves when none is left, and [`Pool::resume`] opens the pool again;
//! - **reconnect**: every server is replaced: idle ones close at once, busy ones when they come
//!   back; new ones are opened on demand (after a DNS change or a server's failover).

use std::sync::atomic::Ordering::Relaxed;

use super::{lock, Pool, ServerConn};

/// Whether a pool lets new transactions take servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Serving.
    Open,
    /// New transactions wait; servers stay.
    Paused,
    /// New transactions wait; servers are let go.
    Draining,
}

impl Admission {
    /// Its name, for operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Admission::Open => "open",
            Admission::Paused => "paused",
            Admission::Draining => "draining",
        }
    }
}

impl Pool {
    /// The pool's admission state now.
    pub fn admission(&self) -> Admission {
        *self.admission.borrow()
    }

    /// Holds new transactions until [`Pool::resume`]; in-flight ones finish.
    pub fn pause(&self) {
        self.set_admission(Admission::Paused);
    }

    /// Lets waiting and new transactions through again (after a pause or a drain).
    pub fn resume(&self) {
        self.set_admission(Admission::Open);
        self.refill.notify_one();
    }

    /// Holds new transactions and lets go of every server: idle ones now, busy ones when they
    /// come back. Await [`Pool::drained`] for the end.
    pub fn drain(&self) {
        self.set_admission(Admission::Draining);
        self.close_idle();
    }

    /// Resolves when a draining pool holds no server any more (at once if it holds none).
    pub async fn drained(&self) {
        let mut rx = self.admission.subscribe();
        loop {
            if lock(&self.state).open == 0 {
                return;
            }
            // Woken by every server closed while draining (`close_conn` pings the channel).
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Replaces every server: idle ones close now, busy ones when released; new ones are
    /// opened on demand. Clients are not interrupted.
    pub fn reconnect(&self) {
        self.generation.fetch_add(1, Relaxed);
        self.close_idle();
        self.refill.notify_one();
    }

    /// Whether a server may serve again: not while draining, not from before a reconnect.
    /// (Two relaxed loads on the hot path; the admission state is read only when not open.)
    pub(super) fn reuses(&self, conn: &ServerConn) -> bool {
        conn.generation == self.generation.load(Relaxed)
            && (self.admitting.load(Relaxed) || self.admission() != Admission::Draining)
    }

    /// Wakes [`Pool::drained`] waiters after a server closed while draining.
    pub(super) fn note_closed(&self) {
        if !self.admitting.load(Relaxed) && self.admission() == Admission::Draining {
            self.admission.send_modify(|_| {});
        }
    }

    /// Resolves once the pool admits transactions (or is closed).
    pub(super) async fn admitted(&self) {
        let mut rx = self.admission.subscribe();
        let _ = rx
            .wait_for(|a| *a == Admission::Open || self.is_closed())
            .await;
    }

    fn set_admission(&self, to: Admission) {
        self.admitting.store(to == Admission::Open, Relaxed);
        self.admission.send_replace(to);
        tracing::info!(pool = %self.name(), admission = to.as_str(), "pool admission changed");
    }

    fn close_idle(&self) {
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
}
