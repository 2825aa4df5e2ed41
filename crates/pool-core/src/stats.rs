//! Per-pool counters the hot path updates with single atomic adds. They are the adaptive
//! controller's signals (acquire wait, server hold time, utilization) and the admin API's
//! numbers; reading them never blocks a client.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// Number of acquire-wait histogram buckets: bucket `i` counts waits below 2^i µs (the last one
/// catches everything longer, ~8 s and up).
pub const WAIT_BUCKETS: usize = 24;

/// Counters of one pool.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Clients queued for a server right now.
    pub waiting: AtomicUsize,
    /// Servers checked out right now.
    pub active: AtomicUsize,
    /// Checkouts completed.
    pub acquires: AtomicU64,
    /// Sum of acquire waits, in nanoseconds.
    pub acquire_wait_ns: AtomicU64,
    /// Acquire waits by power-of-two microsecond bucket (for percentiles over a window).
    pub acquire_wait_hist: [AtomicU64; WAIT_BUCKETS],
    /// Sum of server hold times (checkout to release), in nanoseconds: busy server-time, whose
    /// rate divided by open servers is the time-weighted utilization.
    pub hold_ns: AtomicU64,
    /// Server connections opened.
    pub connects: AtomicU64,
    /// Server connections that failed to open.
    pub connect_failures: AtomicU64,
    /// Server connections closed (expired, idle, broken, surplus).
    pub closes: AtomicU64,
    /// Clients that gave up at acquire_timeout.
    pub acquire_timeouts: AtomicU64,
    /// Successful connects: their latency (TCP, TLS, authentication).
    pub connect: DurationHist,
    /// Failed connects by class (indexed as `FailureClass::ALL`).
    pub connect_failures_by_class: [AtomicU64; crate::failure::FailureClass::ALL.len()],
    /// Sum of the checkout instants (ns since the pool's epoch) of the servers checked out
    /// now: with `hold_ns` it gives the integral of busy servers over time at any instant.
    pub active_since_ns: AtomicU64,
    /// Sum of the open instants of the established servers open now, and the lifetimes of
    /// those closed: the integral of open servers over time.
    pub open_since_ns: AtomicU64,
    /// Lifetimes of closed servers, summed (ns).
    pub closed_lifetimes_ns: AtomicU64,
    /// Server time of transactions (first byte sent to the ReadyForQuery that ends them,
    /// without the client's think time between statements): count, sum, histogram.
    pub server_tx: DurationHist,
    /// Server time of each round trip to the server (a Query, or extended messages up to
    /// their Sync, to its ReadyForQuery).
    pub server_query: DurationHist,
}

/// A count, a sum and a power-of-two histogram of durations, updated with relaxed atomic
/// adds (bucket `i` counts durations below 2^i µs, as [`wait_bucket`]).
#[derive(Debug, Default)]
pub struct DurationHist {
    /// Durations recorded.
    pub count: AtomicU64,
    /// Their sum, in nanoseconds.
    pub sum_ns: AtomicU64,
    /// By bucket.
    pub buckets: [AtomicU64; WAIT_BUCKETS],
}

impl DurationHist {
    /// Records one duration.
    pub fn record(&self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records one duration given in nanoseconds (the hot path's form: no conversions).
    pub fn record_ns(&self, ns: u64) {
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
        self.buckets[ns_bucket(ns)].fetch_add(1, Relaxed);
    }

    /// A copy of the buckets, for percentiles between two snapshots.
    pub fn histogram(&self) -> [u64; WAIT_BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Relaxed))
    }
}

impl PoolStats {
    /// Records one completed checkout.
    pub fn record_acquire(&self, waited: Duration) {
        self.acquires.fetch_add(1, Relaxed);
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.acquire_wait_ns.fetch_add(ns, Relaxed);
        self.acquire_wait_hist[ns_bucket(ns)].fetch_add(1, Relaxed);
    }

    /// Records an acquire that gave up after waiting `waited`: counted in `acquire_timeouts`
    /// and in the wait histogram at the time it waited, so an exhausted pool shows in the wait
    /// percentiles.
    pub fn record_timed_out_wait(&self, waited: Duration) {
        self.acquire_timeouts.fetch_add(1, Relaxed);
        self.acquire_wait_hist[wait_bucket(waited)].fetch_add(1, Relaxed);
    }

    /// Established servers open now: every successful connect is closed exactly once, through
    /// the pool's one close path.
    pub fn established(&self) -> u64 {
        self.connects
            .load(Relaxed)
            .saturating_sub(self.closes.load(Relaxed))
    }

    /// A copy of the histogram, for computing percentiles between two snapshots.
    pub fn wait_histogram(&self) -> [u64; WAIT_BUCKETS] {
        std::array::from_fn(|i| self.acquire_wait_hist[i].load(Relaxed))
    }
}

/// [`wait_bucket`] of a duration given in nanoseconds (integer work only).
#[inline]
pub fn ns_bucket(ns: u64) -> usize {
    let us = ns / 1000;
    ((u64::BITS - us.leading_zeros()) as usize).min(WAIT_BUCKETS - 1)
}

/// The bucket of a wait: the number of bits of its length in microseconds, capped.
pub fn wait_bucket(waited: Duration) -> usize {
    let us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
    ((u64::BITS - us.leading_zeros()) as usize).min(WAIT_BUCKETS - 1)
}

/// The upper bound of bucket `i`, for reporting percentiles.
pub fn bucket_upper_bound(i: usize) -> Duration {
    Duration::from_micros(1u64 << i.min(62))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_by_powers_of_two() {
        assert_eq!(wait_bucket(Duration::ZERO), 0);
        assert_eq!(wait_bucket(Duration::from_micros(1)), 1);
        assert_eq!(wait_bucket(Duration::from_micros(3)), 2);
        assert_eq!(wait_bucket(Duration::from_millis(1)), 10);
        assert_eq!(wait_bucket(Duration::from_secs(3600)), WAIT_BUCKETS - 1);
        for d in [1u64, 5, 100, 5000, 1_000_000] {
            let d = Duration::from_micros(d);
            assert!(bucket_upper_bound(wait_bucket(d)) >= d);
            assert_eq!(ns_bucket(d.as_nanos() as u64), wait_bucket(d));
        }
    }
}
