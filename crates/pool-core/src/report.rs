//! Reporting a failure: one call counts it (`pgtide_failures_total{pool,class}`), logs one
//! structured event (rate-limited per class, so a storm cannot flood the log) and appends it to
//! the event ring the admin API serves. Every failure site goes through [`Failures::report`], so
//! the three views can never disagree.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Instant;

use crate::events::{Event, EventKind, EventRing};
use crate::failure::FailureClass;
use crate::sync::lock;

/// Log lines per class per second before further ones are only counted (and summarised in the
/// next line that gets through).
pub const LOG_LINES_PER_CLASS_PER_SECOND: u32 = 20;

/// One failure, as the site that saw it knows it.
#[derive(Debug, Clone)]
pub struct Failure<'a> {
    /// `database/user`, or `-` before a pool is known.
    pub pool: &'a str,
    /// Its one class.
    pub class: FailureClass,
    /// What the client was (or would have been) told.
    pub message: &'a str,
    /// The client involved.
    pub client: Option<SocketAddr>,
    /// The server involved.
    pub server: Option<SocketAddr>,
    /// How long the client waited or the operation ran.
    pub elapsed: Option<Duration>,
    /// The SQLSTATE or errno the peer reported.
    pub code: Option<String>,
}

impl<'a> Failure<'a> {
    /// A failure with only the required fields; add the rest with the builder methods.
    pub fn new(pool: &'a str, class: FailureClass, message: &'a str) -> Self {
        Failure {
            pool,
            class,
            message,
            client: None,
            server: None,
            elapsed: None,
            code: None,
        }
    }

    /// The client's address.
    pub fn client(mut self, addr: SocketAddr) -> Self {
        self.client = Some(addr);
        self
    }

    /// The server's address.
    pub fn server(mut self, addr: SocketAddr) -> Self {
        self.server = Some(addr);
        self
    }

    /// How long it waited or ran.
    pub fn elapsed(mut self, d: Duration) -> Self {
        self.elapsed = Some(d);
        self
    }

    /// The SQLSTATE or errno.
    pub fn code(mut self, code: Option<String>) -> Self {
        self.code = code;
        self
    }
}

/// A query or transaction over `slow_query_threshold`.
#[derive(Debug, Clone, Copy)]
pub struct SlowQuery<'a> {
    /// `database/user`.
    pub pool: &'a str,
    /// The client.
    pub client: SocketAddr,
    /// `query` or `transaction`.
    pub kind: &'static str,
    /// From the client's first byte to ReadyForQuery (query) or to the release (transaction).
    pub total: Duration,
    /// Of that, waiting for a server: the pool's share.
    pub waited: Duration,
    /// Of that, the server working on queries: the database's share.
    pub server: Duration,
    /// The SQL (first characters, literals redacted unless configured otherwise).
    pub sql: &'a str,
}

#[derive(Debug, Clone, Copy)]
struct LogWindow {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

/// Failures counted by class, logged with a rate limit, and kept in the event ring.
#[derive(Debug)]
pub struct Failures {
    counts: [AtomicU64; FailureClass::ALL.len()],
    /// One log window per class, and the last one for slow queries.
    windows: Mutex<[LogWindow; FailureClass::ALL.len() + 1]>,
    slow: AtomicU64,
    events: Arc<EventRing>,
    /// Counts by pool (`database/user`, or `-` before a pool is known) and class: failures
    /// are rare, so a lock per report is fine; the controller and the admin API read them.
    by_pool: Mutex<std::collections::HashMap<String, [u64; FailureClass::ALL.len()]>>,
}

impl Failures {
    /// A reporter writing into `events`.
    pub fn new(events: Arc<EventRing>) -> Self {
        Failures {
            counts: Default::default(),
            windows: Mutex::new(
                [LogWindow {
                    started: None,
                    logged: 0,
                    suppressed: 0,
                }; FailureClass::ALL.len() + 1],
            ),
            slow: AtomicU64::new(0),
            events,
            by_pool: Mutex::default(),
        }
    }

    /// Failures of `pool` counted so far, by class (indexed as [`FailureClass::ALL`]).
    pub fn of_pool(&self, pool: &str) -> [u64; FailureClass::ALL.len()] {
        lock(&self.by_pool).get(pool).copied().unwrap_or_default()
    }

    /// Counts, logs (rate-limited) and records one failure.
    pub fn report(&self, f: Failure<'_>) {
        self.counts[f.class as usize].fetch_add(1, Relaxed);
        {
            // Allocates the pool's name once, at its first failure.
            let mut by_pool = lock(&self.by_pool);
            match by_pool.get_mut(f.pool) {
                Some(counts) => counts[f.class as usize] += 1,
                None => {
                    let mut counts = [0; FailureClass::ALL.len()];
                    counts[f.class as usize] = 1;
                    by_pool.insert(f.pool.to_owned(), counts);
                }
            }
        }
        metrics::counter!("pgtide_failures_total", "pool" => f.pool.to_owned(), "class" => f.class.as_str())
            .increment(1);
        let mut event = Event::new(EventKind::Failure, f.pool, f.message);
        event.class = Some(f.class);
        event.client = f.client;
        event.server = f.server.map(|s| s.to_string());
        event.elapsed = f.elapsed;
        event.code = f.code.clone();
        self.events.push(event);
        if let Some(suppressed) = self.admit_log_line(f.class) {
            log_failure(&f, suppressed);
        }
    }

    /// Logs (rate-limited), counts and records a slow query or transaction.
    pub fn report_slow(&self, q: SlowQuery<'_>) {
        self.slow.fetch_add(1, Relaxed);
        metrics::counter!("pgtide_slow_queries_total", "pool" => q.pool.to_owned(), "kind" => q.kind)
            .increment(1);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut event = Event::new(EventKind::SlowQuery, q.pool, q.sql);
        event.client = Some(q.client);
        event.elapsed = Some(q.total);
        event.code = Some(format!(
            "{} {:.1}ms: wait {:.1}ms, server {:.1}ms",
            q.kind,
            ms(q.total),
            ms(q.waited),
            ms(q.server)
        ));
        self.events.push(event);
        if let Some(suppressed) = self.admit(FailureClass::ALL.len()) {
            tracing::warn!(
                pool = q.pool,
                client = %q.client,
                kind = q.kind,
                duration_ms = ms(q.total),
                wait_ms = ms(q.waited),
                server_ms = ms(q.server),
                suppressed,
                sql = q.sql,
                "slow {}", q.kind
            );
        }
    }

    /// Slow queries and transactions reported so far.
    pub fn slow_count(&self) -> u64 {
        self.slow.load(Relaxed)
    }

    /// Failures of `class` so far.
    pub fn get(&self, class: FailureClass) -> u64 {
        self.counts[class as usize].load(Relaxed)
    }

    /// `Some(lines suppressed since the last logged one)` when this line may be logged.
    fn admit_log_line(&self, class: FailureClass) -> Option<u64> {
        self.admit(class as usize)
    }

    fn admit(&self, slot: usize) -> Option<u64> {
        let now = Instant::now();
        let mut windows = lock(&self.windows);
        let w = &mut windows[slot];
        if w.started
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            w.started = Some(now);
            w.logged = 0;
        }
        if w.logged < LOG_LINES_PER_CLASS_PER_SECOND {
            w.logged += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }
}

fn log_failure(f: &Failure<'_>, suppressed: u64) {
    let client = f.client.map(|a| a.to_string()).unwrap_or_default();
    let server = f.server.map(|a| a.to_string()).unwrap_or_default();
    let elapsed_ms = f.elapsed.map(|d| d.as_secs_f64() * 1000.0);
    let code = f.code.as_deref().unwrap_or("");
    if f.class.is_server_side() {
        tracing::warn!(pool = f.pool, class = %f.class, client, server, elapsed_ms, code, suppressed, "{}", f.message);
    } else {
        tracing::info!(pool = f.pool, class = %f.class, client, server, elapsed_ms, code, suppressed, "{}", f.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_is_counted_and_recorded_but_logged_at_a_bounded_rate() {
        let ring = Arc::new(EventRing::default());
        let failures = Failures::new(ring.clone());
        let mut logged = 0;
        for _ in 0..500 {
            if failures
                .admit_log_line(FailureClass::ConnectRefused)
                .is_some()
            {
                logged += 1;
            }
        }
        assert_eq!(logged, LOG_LINES_PER_CLASS_PER_SECOND);
        // Another class has its own budget.
        assert!(failures
            .admit_log_line(FailureClass::AcquireTimeout)
            .is_some());
        failures.report(
            Failure::new("db/u", FailureClass::ConnectRefused, "refused")
                .code(Some("111".into()))
                .elapsed(Duration::from_millis(3)),
        );
        assert_eq!(failures.get(FailureClass::ConnectRefused), 1);
        let events = ring.recent(10);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].class, Some(FailureClass::ConnectRefused));
        assert_eq!(events[0].code.as_deref(), Some("111"));
    }
}
