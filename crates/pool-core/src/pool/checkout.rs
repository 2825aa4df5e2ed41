//! A checked-out server and the server time it measures for its transaction.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::Pool;
use crate::clock::Instant;
use crate::server::ServerConn;

/// A checked-out server. Give it back with [`Pool::release`]; dropping it instead closes the
/// server (the safe default when a session ends in an unknown state).
#[derive(Debug)]
pub struct Checkout {
    /// Boxed: a checkout moves between the pool, the session and back on every transaction,
    /// and a pointer moves for free where the connection's few hundred bytes would not.
    pub(super) conn: Option<Box<ServerConn>>,
    pub(super) permit: Option<OwnedSemaphorePermit>,
    pub(super) pool: Arc<Pool>,
    /// When it was checked out, in ns since the pool's epoch: the times a checkout keeps are
    /// integers, so that each transaction converts an instant twice (here and at release) and
    /// everything else is a subtraction.
    pub(super) acquired_ns: u64,
    /// Server time of the current transaction's finished round trips (ns).
    pub(super) busy_ns: u64,
    /// Start of the round trip in progress: the checkout itself for the first (its bytes go
    /// out right after), then each [`Checkout::asked`]; [`NOT_BUSY`] while the server waits
    /// for the client.
    pub(super) busy_from_ns: u64,
}

/// [`Checkout::busy_from_ns`] when no round trip is in progress.
pub(super) const NOT_BUSY: u64 = u64::MAX;

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

    pub(super) fn close_trip(&mut self, now_ns: u64, transaction_done: bool) {
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
    pub(super) fn close_books(&mut self, now_ns: u64) {
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
