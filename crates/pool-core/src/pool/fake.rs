//! An in-memory [`Connect`] for the pool's own tests: servers that are sockets in memory, and
//! connects that take a chosen (virtual) time, fail with a chosen class, or are refused with
//! 53300 — so the pool's state machine runs without PostgreSQL, on a paused clock.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgtide_protocol::startup::CancelKey;
use pgtide_protocol::{ErrorFields, SqlState};
use tokio::io::DuplexStream;

use crate::clock::Instant;
use crate::error::ServerError;
use crate::server::{Connect, Connecting, ParamSet, ServerConn, ServerTarget, StartupSettings};
use crate::stream::Stream;
use crate::sync::lock;

/// What one connect does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A server, after the connector's delay.
    Open,
    /// TCP refused (class `connect_refused`).
    Refused,
    /// The server answers 53300 too_many_connections.
    TooMany,
    /// Nothing answers: the connect runs into `connect_timeout`.
    Hang,
}

/// The fake. Connects take `delay` each and follow `script`, then `otherwise`.
#[derive(Debug)]
pub struct FakeConnector {
    pub delay: Mutex<Duration>,
    pub script: Mutex<VecDeque<Outcome>>,
    pub otherwise: Mutex<Outcome>,
    /// Connects attempted.
    pub attempts: AtomicU32,
    /// The server ends of open connections with their liveness flags (the pool holds the
    /// other handle of a flag while the connection is open).
    peers: Mutex<Vec<(Arc<AtomicBool>, DuplexStream)>>,
    next_pid: AtomicU32,
}

impl Default for FakeConnector {
    fn default() -> Self {
        FakeConnector {
            delay: Mutex::new(Duration::from_millis(10)),
            script: Mutex::default(),
            otherwise: Mutex::new(Outcome::Open),
            attempts: AtomicU32::new(0),
            peers: Mutex::default(),
            next_pid: AtomicU32::new(1000),
        }
    }
}

impl FakeConnector {
    /// Every later connect does `outcome` (after the script).
    pub fn set(&self, outcome: Outcome) {
        *lock(&self.otherwise) = outcome;
    }

    /// The next connects do these, in order.
    pub fn then(&self, outcomes: &[Outcome]) {
        lock(&self.script).extend(outcomes.iter().copied());
    }

    /// Kills every open server (their sockets close, as when PostgreSQL restarts).
    pub fn kill_all(&self) {
        for (alive, _) in lock(&self.peers).drain(..) {
            alive.store(false, Relaxed);
        }
    }

    /// Servers still open: not killed, and not closed by the pool.
    pub fn live(&self) -> usize {
        let mut peers = lock(&self.peers);
        peers.retain(|(alive, _)| alive.load(Relaxed) && Arc::strong_count(alive) > 1);
        peers.len()
    }

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5432))
    }

    async fn run(
        &self,
        target: &ServerTarget,
        startup: Option<&Arc<StartupSettings>>,
    ) -> Result<ServerConn, ServerError> {
        self.attempts.fetch_add(1, Relaxed);
        let outcome = lock(&self.script)
            .pop_front()
            .unwrap_or(*lock(&self.otherwise));
        let delay = *lock(&self.delay);
        if outcome == Outcome::Hang {
            tokio::time::sleep(target.connect_timeout).await;
            return Err(ServerError::ConnectTimeout {
                target: target.display_addr(),
                timeout: target.connect_timeout,
            });
        }
        tokio::time::sleep(delay).await;
        match outcome {
            Outcome::Refused => Err(ServerError::Connect {
                addr: Self::addr(),
                source: io::Error::from(io::ErrorKind::ConnectionRefused),
            }),
            Outcome::TooMany => Err(ServerError::Refused {
                addr: Self::addr(),
                fields: Box::new(ErrorFields {
                    code: Some(SqlState::TOO_MANY_CONNECTIONS),
                    message: Some("sorry, too many clients already".into()),
                    ..ErrorFields::default()
                }),
            }),
            Outcome::Open | Outcome::Hang => {
                let pid = self.next_pid.fetch_add(1, Relaxed) as i32;
                let (ours, theirs) = tokio::io::duplex(1024);
                let alive = Arc::new(AtomicBool::new(true));
                lock(&self.peers).push((alive.clone(), theirs));
                let now = Instant::now();
                let mut params = ParamSet::new();
                params.set("TimeZone", "UTC");
                Ok(ServerConn {
                    id: ServerConn::next_id(),
                    stream: Stream::Memory(Box::new(ours), alive),
                    addr: Self::addr(),
                    cancel_key: CancelKey {
                        process_id: pid,
                        secret_key: 0,
                    },
                    params,
                    created: now,
                    idle_since: now,
                    retire_at: target.max_lifetime.map(|l| now + l),
                    startup: startup.cloned(),
                    statements: Default::default(),
                    generation: 0,
                    buffers: Default::default(),
                })
            }
        }
    }
}

impl Connect for FakeConnector {
    fn connect<'a>(
        &'a self,
        target: &'a ServerTarget,
        startup: Option<&'a Arc<StartupSettings>>,
    ) -> Connecting<'a> {
        Box::pin(self.run(target, startup))
    }
}
