//! Server connections: opening one (TCP, startup, authentication) and what pgtide remembers
//! about it while it sits in a pool.

pub mod buffers;
mod connect;
mod connector;
mod own_query;
mod params;
mod settings;

pub use connect::{connect, ServerTarget};
pub use connector::{Connect, Connecting, TcpConnector};
pub use params::{quote_literal, Entries, ParamSet, UNSETTABLE_PARAMS};
pub use settings::StartupSettings;

use crate::clock::Instant;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::stream::Stream;
use pgtide_protocol::startup::CancelKey;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One authenticated server connection, ready for queries (last status ReadyForQuery 'I').
#[derive(Debug)]
pub struct ServerConn {
    /// Process-unique id, for logs and the admin API.
    pub id: u64,
    /// The socket; owned by the client session while checked out.
    pub stream: Stream,
    /// The server's address.
    pub addr: SocketAddr,
    /// The server's BackendKeyData: what a CancelRequest for this connection must carry.
    pub cancel_key: CancelKey,
    /// Parameter values pgtide knows this server session has (ParameterStatus reports plus the
    /// values pgtide itself set), so a client's settings are re-applied only when they differ.
    pub params: ParamSet,
    /// When the connection was opened.
    pub created: Instant,
    /// When it was last returned to the pool.
    pub idle_since: Instant,
    /// When it is retired once idle: `created` plus `max_lifetime` with per-connection jitter
    /// (kept as an instant so that the check on every checkout and return is one comparison).
    pub retire_at: Option<Instant>,
    /// The client settings this server was started with (session mode: a client's startup
    /// settings are its server's own, so that RESET returns to them), or `None` for the
    /// pool's plain servers. Only a client with the same settings is given this server.
    pub startup: Option<std::sync::Arc<StartupSettings>>,
    /// Named statements pgtide prepared on this server (transaction-mode tracking).
    pub statements: crate::prepared::ServerStatements,
    /// The pool's generation when this server was opened (`Pool::reconnect` retires older
    /// ones).
    pub generation: u64,
    /// Forwarding buffers, reused by every transaction this server serves.
    pub buffers: buffers::Buffers,
}

impl ServerConn {
    pub(crate) fn next_id() -> u64 {
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    }

    /// True when the connection has outlived its (jittered) lifetime.
    pub fn expired(&self, now: Instant) -> bool {
        self.retire_at.is_some_and(|at| now >= at)
    }
}
