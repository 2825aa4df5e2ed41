//! Fail fast, then probe: a circuit breaker per server address.
//!
//! Without it, every client of a pool whose server is down waits out its own connect attempt
//! (up to `connect_timeout`) or its place in the queue (up to `acquire_timeout`) — PgBouncer
//! users' long-standing complaint. Once `breaker_threshold` connects in a row to one address
//! fail with a class that says the address itself is unusable (refused, unreachable, timed out,
//! shutting down, out of slots, TLS), the breaker opens: clients that need a new connection,
//! and those already queued, get that failure's class and message at once. One probe per
//! address keeps trying with exponential backoff and jitter; the first successful connect (the
//! probe's or anyone's) closes the breaker and the pools refill.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Instant;

use tokio::sync::Notify;

use crate::events::{Event, EventKind, EventRing};
use crate::failure::FailureClass;
use crate::sync::lock;

/// First probe delay; it doubles after each failed probe up to the configured maximum.
const FIRST_PROBE_DELAY: Duration = Duration::from_millis(100);

/// An open breaker, as facts for the error a client gets.
#[derive(Debug, Clone)]
pub struct BreakerOpen {
    /// `host:port`.
    pub server: String,
    /// The class of the failures that opened it.
    pub class: FailureClass,
    /// The last failure's text.
    pub reason: String,
    /// How long it has been open.
    pub open_for: std::time::Duration,
}

/// The breaker of one server address (`host:port`), shared by every pool that connects there.
#[derive(Debug)]
pub struct Breaker {
    addr: String,
    open: AtomicBool,
    /// Failed connects in a row (reset by any success).
    consecutive: AtomicU32,
    state: Mutex<OpenState>,
    /// Wakes clients queued for a server when the breaker opens.
    opened: Notify,
    /// Set while a probe task runs, so there is one per address.
    probing: AtomicBool,
    events: Arc<EventRing>,
    threshold: AtomicU32,
    max_backoff: Mutex<Duration>,
}

#[derive(Debug, Clone)]
struct OpenState {
    since: Option<Instant>,
    class: FailureClass,
    reason: String,
    probes: u32,
}

impl Breaker {
    /// A closed breaker for `addr`; `threshold` 0 disables it.
    pub fn new(
        addr: String,
        threshold: u32,
        max_backoff: Duration,
        events: Arc<EventRing>,
    ) -> Self {
        Breaker {
            addr,
            open: AtomicBool::new(false),
            consecutive: AtomicU32::new(0),
            state: Mutex::new(OpenState {
                since: None,
                class: FailureClass::ConnectRefused,
                reason: String::new(),
                probes: 0,
            }),
            opened: Notify::new(),
            probing: AtomicBool::new(false),
            events,
            threshold: AtomicU32::new(threshold),
            max_backoff: Mutex::new(max_backoff),
        }
    }

    /// The address this breaker guards.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Applies reloaded settings.
    pub fn configure(&self, threshold: u32, max_backoff: Duration) {
        self.threshold.store(threshold, Relaxed);
        *lock(&self.max_backoff) = max_backoff;
        if threshold == 0 {
            self.close();
        }
    }

    /// True while clients should fail fast instead of connecting.
    pub fn is_open(&self) -> bool {
        self.open.load(Relaxed)
    }

    /// What a client needing a new server is told while the breaker is open (`None` when it
    /// is closed): plain facts; the pool turns them into its error.
    pub fn open_info(&self) -> Option<BreakerOpen> {
        if !self.is_open() {
            return None;
        }
        let st = lock(&self.state).clone();
        Some(BreakerOpen {
            server: self.addr.clone(),
            class: st.class,
            reason: st.reason,
            open_for: st.since.map(|s| s.elapsed()).unwrap_or_default(),
        })
    }

    /// Resolves when the breaker opens (created before checking [`Breaker::is_open`], it
    /// cannot miss the change).
    pub fn opened(&self) -> tokio::sync::futures::Notified<'_> {
        self.opened.notified()
    }

    /// Whether a connect failure of `class` says the address itself is unusable.
    pub fn counts(class: FailureClass) -> bool {
        matches!(
            class,
            FailureClass::ConnectTimeout
                | FailureClass::ConnectRefused
                | FailureClass::ConnectUnreachable
                | FailureClass::DnsFailure
                | FailureClass::TlsFailure
                | FailureClass::ServerShutdown
                | FailureClass::ServerTooManyConnections
        )
    }

    /// Notes a failed connect; true when this failure opened the breaker (the caller then
    /// starts the probe).
    pub fn on_failure(&self, class: FailureClass, reason: &str) -> bool {
        let threshold = self.threshold.load(Relaxed);
        if threshold == 0 || !Self::counts(class) {
            return false;
        }
        let n = self.consecutive.fetch_add(1, Relaxed) + 1;
        let mut st = lock(&self.state);
        st.class = class;
        st.reason = reason.to_owned();
        if n < threshold || self.open.load(Relaxed) {
            return false;
        }
        st.since = Some(Instant::now());
        st.probes = 0;
        self.open.store(true, Relaxed);
        drop(st);
        metrics::gauge!("pgtide_breaker_open", "server" => self.addr.clone()).set(1.0);
        let mut event = Event::new(
            EventKind::BreakerOpen,
            self.addr.clone(),
            format!("{n} connects in a row failed ({class}: {reason}); clients fail fast while pgtide probes the server"),
        );
        event.class = Some(class);
        event.server = Some(self.addr.clone());
        self.events.push(event);
        tracing::warn!(server = %self.addr, %class, failures = n, reason, "circuit breaker open: failing fast, probing");
        self.opened.notify_waiters();
        true
    }

    /// Notes a successful connect: closes the breaker if it was open.
    pub fn on_success(&self) {
        self.consecutive.store(0, Relaxed);
        if self.is_open() {
            self.close();
        }
    }

    fn close(&self) {
        if !self.open.swap(false, Relaxed) {
            return;
        }
        self.consecutive.store(0, Relaxed);
        let st = lock(&self.state).clone();
        let open_for = st.since.map(|s| s.elapsed()).unwrap_or_default();
        metrics::gauge!("pgtide_breaker_open", "server" => self.addr.clone()).set(0.0);
        let mut event = Event::new(
            EventKind::BreakerClosed,
            self.addr.clone(),
            format!(
                "server reachable again after {open_for:?} and {} probe(s)",
                st.probes
            ),
        );
        event.server = Some(self.addr.clone());
        event.elapsed = Some(open_for);
        self.events.push(event);
        tracing::info!(server = %self.addr, ?open_for, probes = st.probes, "circuit breaker closed: server reachable again");
    }

    /// Claims the probe role; false when another task already probes this address.
    pub fn start_probing(&self) -> bool {
        !self.probing.swap(true, Relaxed)
    }

    /// Gives the probe role up (the breaker closed, or the probing pool went away).
    pub fn stop_probing(&self) {
        self.probing.store(false, Relaxed);
    }

    /// How long to wait before the next probe: exponential from 100 ms up to the configured
    /// maximum, with ±20% jitter so many pgtide instances do not probe in step.
    pub fn next_probe_delay(&self) -> Duration {
        let probes = {
            let mut st = lock(&self.state);
            st.probes += 1;
            st.probes
        };
        let max = *lock(&self.max_backoff);
        let base = FIRST_PROBE_DELAY
            .saturating_mul(1u32 << (probes - 1).min(16))
            .min(max);
        base.mul_f64(0.8 + rand::random::<f64>() * 0.4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> (Breaker, Arc<EventRing>) {
        let ring = Arc::new(EventRing::default());
        (
            Breaker::new(
                "db:5432".into(),
                threshold,
                Duration::from_secs(2),
                ring.clone(),
            ),
            ring,
        )
    }

    #[test]
    fn opens_after_threshold_and_closes_on_success() {
        let (b, ring) = breaker(3);
        assert!(!b.on_failure(FailureClass::ConnectRefused, "refused"));
        assert!(!b.on_failure(FailureClass::ConnectRefused, "refused"));
        assert!(b.open_info().is_none());
        assert!(b.on_failure(FailureClass::ConnectRefused, "refused"));
        let open = b.open_info().expect("open");
        assert_eq!(open.class, FailureClass::ConnectRefused);
        assert_eq!(open.server, "db:5432");
        b.on_success();
        assert!(!b.is_open());
        let kinds: Vec<_> = ring.recent(10).iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::BreakerOpen, EventKind::BreakerClosed]);
    }

    #[test]
    fn auth_failures_and_disabled_breakers_never_open() {
        let (b, _) = breaker(1);
        assert!(!b.on_failure(FailureClass::ServerAuthFailed, "bad password"));
        let (off, _) = breaker(0);
        assert!(!off.on_failure(FailureClass::ConnectRefused, "refused"));
        assert!(!off.is_open());
    }

    #[test]
    fn a_success_between_failures_resets_the_count() {
        let (b, _) = breaker(2);
        b.on_failure(FailureClass::ConnectTimeout, "t");
        b.on_success();
        assert!(!b.on_failure(FailureClass::ConnectTimeout, "t"));
    }

    #[test]
    fn probe_delay_backs_off_exponentially_with_jitter_and_a_cap() {
        let (b, _) = breaker(1);
        let d: Vec<_> = (0..10).map(|_| b.next_probe_delay()).collect();
        assert!(d[0] >= Duration::from_millis(80) && d[0] <= Duration::from_millis(120));
        assert!(d[3] >= Duration::from_millis(640), "{d:?}");
        assert!(d.iter().all(|x| *x <= Duration::from_millis(2400)), "{d:?}");
    }
}
