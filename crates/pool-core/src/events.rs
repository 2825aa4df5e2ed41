//! The in-memory ring of recent events (failures, circuit-breaker changes, slow queries) that
//! the admin API serves at `/v1/events`. On-call reads it to see what happened in the last
//! minutes without grepping logs; it is bounded, so a storm overwrites old entries instead of
//! growing memory.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::failure::FailureClass;
use crate::sync::lock;

/// Events kept; older ones are dropped first.
pub const EVENT_RING_CAPACITY: usize = 1024;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A failure of one class (also counted in `pgtide_failures_total`).
    Failure,
    /// Connects to a server address kept failing: clients now fail fast.
    BreakerOpen,
    /// A probe (or a connect) to a server address succeeded again.
    BreakerClosed,
    /// A query or transaction ran longer than `slow_query_threshold`.
    SlowQuery,
}

impl EventKind {
    /// The stable name used in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Failure => "failure",
            EventKind::BreakerOpen => "breaker_open",
            EventKind::BreakerClosed => "breaker_closed",
            EventKind::SlowQuery => "slow_query",
        }
    }
}

/// One entry of the ring.
#[derive(Debug, Clone)]
pub struct Event {
    /// Increasing per process, so a reader can ask for what is new since its last look.
    pub seq: u64,
    /// Wall-clock time it was recorded.
    pub at: SystemTime,
    /// What happened.
    pub kind: EventKind,
    /// `database/user`, or `-` before a pool is known, or the server address for breakers.
    pub pool: String,
    /// The failure class (for failures and breaker changes).
    pub class: Option<FailureClass>,
    /// The client's address, when a client was involved.
    pub client: Option<SocketAddr>,
    /// The server's address, when one was involved.
    pub server: Option<String>,
    /// How long the client waited or the operation ran.
    pub elapsed: Option<Duration>,
    /// SQLSTATE or errno, as the peer reported it.
    pub code: Option<String>,
    /// Human-readable detail (the client's error message, the slow SQL, ...).
    pub message: String,
}

/// A bounded ring of [`Event`]s.
#[derive(Debug)]
pub struct EventRing {
    inner: Mutex<RingState>,
}

#[derive(Debug, Default)]
struct RingState {
    events: VecDeque<Event>,
    next_seq: u64,
}

impl Default for EventRing {
    fn default() -> Self {
        Self {
            inner: Mutex::new(RingState {
                events: VecDeque::with_capacity(64),
                next_seq: 1,
            }),
        }
    }
}

impl EventRing {
    /// Appends an event (its `seq` and `at` are set here), dropping the oldest when full.
    pub fn push(&self, mut event: Event) {
        let mut st = lock(&self.inner);
        event.seq = st.next_seq;
        event.at = SystemTime::now();
        st.next_seq += 1;
        if st.events.len() == EVENT_RING_CAPACITY {
            st.events.pop_front();
        }
        st.events.push_back(event);
    }

    /// Events with `seq > after`, oldest first, at most `limit`.
    pub fn since(&self, after: u64, limit: usize) -> Vec<Event> {
        let st = lock(&self.inner);
        let newer = st.events.iter().filter(|e| e.seq > after);
        let skip = newer.clone().count().saturating_sub(limit);
        newer.skip(skip).cloned().collect()
    }

    /// The most recent events, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Event> {
        self.since(0, limit)
    }
}

impl Event {
    /// An event with the common fields empty; `seq` and `at` are filled in by the ring.
    pub fn new(kind: EventKind, pool: impl Into<String>, message: impl Into<String>) -> Self {
        Event {
            seq: 0,
            at: SystemTime::UNIX_EPOCH,
            kind,
            pool: pool.into(),
            class: None,
            client: None,
            server: None,
            elapsed: None,
            code: None,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_ordered() {
        let ring = EventRing::default();
        for i in 0..(EVENT_RING_CAPACITY + 10) {
            ring.push(Event::new(EventKind::Failure, "db/u", format!("e{i}")));
        }
        let all = ring.recent(usize::MAX);
        assert_eq!(all.len(), EVENT_RING_CAPACITY);
        assert_eq!(all[0].message, "e10");
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        let last_two = ring.recent(2);
        assert_eq!(last_two[1].message, format!("e{}", EVENT_RING_CAPACITY + 9));
        let newer = ring.since(all[all.len() - 3].seq, 10);
        assert_eq!(newer.len(), 2);
    }
}
