//! What the adaptive controller (and the admin API) reads of a pool: [`Pool::signals`] turns
//! the pool's lock-free counters (`stats.rs`, updated with relaxed atomic adds on the hot path)
//! into the window since the previous call — counts, percentiles, rates and time-weighted
//! utilization. Only this reader takes a lock (its own, to keep the previous reading).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{lock, Pool};
use crate::clock::Instant;
use crate::failure::FailureClass;
use crate::stats::{bucket_upper_bound, DurationHist, WAIT_BUCKETS};

/// A distribution over a window: how many, their mean, and percentiles (upper bounds of
/// power-of-two microsecond buckets: within a factor of two, which is what a controller
/// comparing against a target needs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Samples in the window.
    pub count: u64,
    /// Their mean, when their sum is known.
    pub mean: Option<Duration>,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// One pool's signals over a window.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// The window: since the previous call (or the pool's creation).
    pub window: Duration,
    /// Clients queued for a server now.
    pub waiting: usize,
    /// Servers checked out now.
    pub active: usize,
    /// Established servers open now.
    pub open: u64,
    /// Checkouts in the window.
    pub acquires: u64,
    /// Acquires that gave up at acquire_timeout (or a cap) in the window.
    pub acquire_timeouts: u64,
    /// Time in the queue for a server, timed-out waits included (at the time they waited);
    /// connect time excluded.
    pub acquire_wait: Percentiles,
    /// Connect latency of servers opened in the window.
    pub connect_time: Percentiles,
    /// Connects that failed in the window, by class (only classes that occurred).
    pub connect_failures: Vec<(FailureClass, u64)>,
    /// Server time per transaction (first byte to the ReadyForQuery that ends it, without the
    /// client's think time).
    pub server_tx: Percentiles,
    /// Server time per round trip (a query, or extended messages up to their Sync).
    pub server_query: Percentiles,
    /// Busy servers over open servers, time-weighted over the window (`None` when no server
    /// was open).
    pub utilization: Option<f64>,
    /// Mean busy servers over the window.
    pub busy_servers: f64,
    /// Mean open servers over the window.
    pub open_servers: f64,
    /// Failures of this pool in the window, by class (only classes that occurred).
    pub failures: Vec<(FailureClass, u64)>,
}

/// The raw counters at one instant.
#[derive(Debug, Clone)]
pub(super) struct Reading {
    at: Instant,
    acquires: u64,
    timeouts: u64,
    wait_sum_ns: u64,
    wait: [u64; WAIT_BUCKETS],
    connect: Hist,
    connect_failures: [u64; FailureClass::ALL.len()],
    tx: Hist,
    query: Hist,
    busy_ns: u128,
    open_ns: u128,
    failures: [u64; FailureClass::ALL.len()],
}

#[derive(Debug, Clone, Copy)]
struct Hist {
    count: u64,
    sum_ns: u64,
    buckets: [u64; WAIT_BUCKETS],
}

impl Hist {
    fn read(h: &DurationHist) -> Self {
        Hist {
            count: h.count.load(Relaxed),
            sum_ns: h.sum_ns.load(Relaxed),
            buckets: h.histogram(),
        }
    }

    fn since(&self, old: &Hist) -> Percentiles {
        let count = self.count.saturating_sub(old.count);
        let sum = self.sum_ns.saturating_sub(old.sum_ns);
        let mut p = percentiles(&delta(&self.buckets, &old.buckets));
        p.mean = (count > 0).then(|| Duration::from_nanos(sum / count));
        p.count = count;
        p
    }
}

impl Pool {
    /// The pool's signals since the previous call (the first call: since the pool was
    /// created), read at `now`.
    pub fn signals(&self, now: Instant) -> Signals {
        let reading = self.read_counters(now);
        let mut last = lock(&self.last_signals);
        let origin = last.clone().unwrap_or_else(|| self.origin());
        *last = Some(reading.clone());
        drop(last);
        self.between(&origin, &reading)
    }

    /// The signals since the last [`Pool::signals`] call, without starting a new window: what
    /// an operator's snapshot shows, leaving the controller's windows alone.
    pub fn peek_signals(&self, now: Instant) -> Signals {
        let reading = self.read_counters(now);
        let origin = lock(&self.last_signals)
            .clone()
            .unwrap_or_else(|| self.origin());
        self.between(&origin, &reading)
    }

    fn between(&self, origin: &Reading, reading: &Reading) -> Signals {
        let window = reading.at.saturating_duration_since(origin.at);
        let busy = reading.busy_ns.saturating_sub(origin.busy_ns) as f64;
        let open = reading.open_ns.saturating_sub(origin.open_ns) as f64;
        let span = window.as_nanos().max(1) as f64;
        let mut wait = percentiles(&delta(&reading.wait, &origin.wait));
        let acquires = reading.acquires.saturating_sub(origin.acquires);
        wait.mean = (acquires > 0).then(|| {
            Duration::from_nanos(reading.wait_sum_ns.saturating_sub(origin.wait_sum_ns) / acquires)
        });
        Signals {
            window,
            waiting: self.stats.waiting.load(Relaxed),
            active: self.stats.active.load(Relaxed),
            open: self.stats.established(),
            acquires,
            acquire_timeouts: reading.timeouts.saturating_sub(origin.timeouts),
            acquire_wait: wait,
            connect_time: reading.connect.since(&origin.connect),
            connect_failures: by_class(&reading.connect_failures, &origin.connect_failures),
            server_tx: reading.tx.since(&origin.tx),
            server_query: reading.query.since(&origin.query),
            utilization: (open > 0.0).then(|| (busy / open).min(1.0)),
            busy_servers: busy / span,
            open_servers: open / span,
            failures: by_class(&reading.failures, &origin.failures),
        }
    }

    fn read_counters(&self, now: Instant) -> Reading {
        let s = &self.stats;
        let now_ns = u128::from(self.since_epoch(now));
        // Busy-server integral: finished holds, plus the running ones up to `now`.
        let active = s.active.load(Relaxed) as u128;
        let running = (active * now_ns).saturating_sub(u128::from(s.active_since_ns.load(Relaxed)));
        let established = u128::from(s.established());
        let open_now =
            (established * now_ns).saturating_sub(u128::from(s.open_since_ns.load(Relaxed)));
        Reading {
            at: now,
            acquires: s.acquires.load(Relaxed),
            timeouts: s.acquire_timeouts.load(Relaxed),
            wait_sum_ns: s.acquire_wait_ns.load(Relaxed),
            wait: s.wait_histogram(),
            connect: Hist::read(&s.connect),
            connect_failures: std::array::from_fn(|i| s.connect_failures_by_class[i].load(Relaxed)),
            tx: Hist::read(&s.server_tx),
            query: Hist::read(&s.server_query),
            busy_ns: u128::from(s.hold_ns.load(Relaxed)) + running,
            open_ns: u128::from(s.closed_lifetimes_ns.load(Relaxed)) + open_now,
            failures: self.env.failures.of_pool(self.name()),
        }
    }

    /// A reading of nothing at the pool's epoch: the first window starts there.
    fn origin(&self) -> Reading {
        let empty = Hist {
            count: 0,
            sum_ns: 0,
            buckets: [0; WAIT_BUCKETS],
        };
        Reading {
            at: self.epoch,
            acquires: 0,
            timeouts: 0,
            wait_sum_ns: 0,
            wait: [0; WAIT_BUCKETS],
            connect: empty,
            connect_failures: [0; FailureClass::ALL.len()],
            tx: empty,
            query: empty,
            busy_ns: 0,
            open_ns: 0,
            failures: [0; FailureClass::ALL.len()],
        }
    }
}

fn delta(new: &[u64; WAIT_BUCKETS], old: &[u64; WAIT_BUCKETS]) -> [u64; WAIT_BUCKETS] {
    std::array::from_fn(|i| new[i].saturating_sub(old[i]))
}

fn by_class(
    new: &[u64; FailureClass::ALL.len()],
    old: &[u64; FailureClass::ALL.len()],
) -> Vec<(FailureClass, u64)> {
    FailureClass::ALL
        .iter()
        .enumerate()
        .filter_map(|(i, class)| {
            let n = new[i].saturating_sub(old[i]);
            (n > 0).then_some((*class, n))
        })
        .collect()
}

/// p50/p95/p99 of a bucketed distribution (count and mean are filled in by the caller).
fn percentiles(buckets: &[u64; WAIT_BUCKETS]) -> Percentiles {
    let total: u64 = buckets.iter().sum();
    let at = |q: f64| {
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return if i == 0 {
                    Duration::ZERO
                } else {
                    bucket_upper_bound(i)
                };
            }
        }
        bucket_upper_bound(WAIT_BUCKETS - 1)
    };
    Percentiles {
        count: total,
        mean: None,
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::wait_bucket;

    #[test]
    fn percentiles_are_bucket_upper_bounds() {
        let mut b = [0u64; WAIT_BUCKETS];
        b[wait_bucket(Duration::from_micros(100))] += 98;
        b[wait_bucket(Duration::from_secs(2))] += 2;
        let p = percentiles(&b);
        assert_eq!(p.count, 100);
        assert!(p.p50 >= Duration::from_micros(100) && p.p50 < Duration::from_micros(256));
        assert!(p.p95 < Duration::from_millis(1));
        assert!(p.p99 >= Duration::from_secs(2) && p.p99 <= Duration::from_secs(5));
        assert_eq!(percentiles(&[0; WAIT_BUCKETS]), Percentiles::default());
    }
}
