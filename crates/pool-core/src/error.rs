//! Typed errors of the pool core; each knows its [`FailureClass`] and what the client may see.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use pgtide_protocol::{ErrorFields, ProtocolError, SqlState};

use crate::failure::FailureClass;
use crate::report::Failure;

/// Opening or using a server connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Connect + TLS + auth took longer than `connect_timeout`.
    #[error("connecting to server {target} timed out after {timeout:?}")]
    ConnectTimeout {
        /// host:port as configured.
        target: String,
        /// The limit that fired.
        timeout: Duration,
    },
    /// The host name did not resolve.
    #[error("cannot resolve server host {host:?}: {source}")]
    Dns {
        /// The configured host.
        host: String,
        /// Resolver error.
        source: io::Error,
    },
    /// TCP connect failed.
    #[error("cannot connect to server {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// The OS error (its errno decides the class).
        source: io::Error,
    },
    /// The server answered the startup or auth with an ErrorResponse.
    #[error("server {addr} refused the connection: {fields}")]
    Refused {
        /// The server.
        addr: SocketAddr,
        /// What it said.
        fields: Box<ErrorFields>,
    },
    /// The server wants a password and none is configured for this user.
    #[error("server {addr} asks for a password for user {user:?}, but none is configured (set databases.<db>.password or a plain password in the auth file)")]
    NoPassword {
        /// The server.
        addr: SocketAddr,
        /// The server user.
        user: String,
    },
    /// An authentication method pgtide does not speak (GSS, SSPI, ...).
    #[error("server {addr} asks for an unsupported authentication method ({method})")]
    UnsupportedAuth {
        /// The server.
        addr: SocketAddr,
        /// What it asked for.
        method: String,
    },
    /// The TLS handshake failed or the server declined TLS where it is required.
    #[error("TLS to server {addr} failed: {reason}")]
    Tls {
        /// The server.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The connection broke (EOF, reset) during startup or while in use.
    #[error("connection to server {addr} lost: {source}")]
    Lost {
        /// The server.
        addr: SocketAddr,
        /// The OS error, or UnexpectedEof.
        source: io::Error,
    },
    /// The server sent bytes pgtide cannot read.
    #[error("protocol error from server {addr}: {source}")]
    Protocol {
        /// The server.
        addr: SocketAddr,
        /// What was wrong.
        source: ProtocolError,
    },
}

impl ServerError {
    /// The one class this failure belongs to.
    pub fn class(&self) -> FailureClass {
        match self {
            ServerError::ConnectTimeout { .. } => FailureClass::ConnectTimeout,
            ServerError::Dns { .. } => FailureClass::DnsFailure,
            ServerError::Connect { source, .. } => FailureClass::from_connect_error(source),
            ServerError::Refused { fields, .. } => fields
                .code
                .as_ref()
                .and_then(|c| FailureClass::from_server_sqlstate(c.as_str()))
                .unwrap_or(FailureClass::ServerAuthFailed),
            ServerError::NoPassword { .. } | ServerError::UnsupportedAuth { .. } => {
                FailureClass::ServerAuthFailed
            }
            ServerError::Tls { .. } => FailureClass::TlsFailure,
            ServerError::Lost { .. } => FailureClass::ServerConnLost,
            ServerError::Protocol { .. } => FailureClass::ProtocolViolation,
        }
    }

    /// The server address involved, once one was resolved.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            ServerError::ConnectTimeout { .. } | ServerError::Dns { .. } => None,
            ServerError::Connect { addr, .. }
            | ServerError::Refused { addr, .. }
            | ServerError::NoPassword { addr, .. }
            | ServerError::UnsupportedAuth { addr, .. }
            | ServerError::Tls { addr, .. }
            | ServerError::Lost { addr, .. }
            | ServerError::Protocol { addr, .. } => Some(*addr),
        }
    }

    /// The errno or the server's SQLSTATE, as text for logs and events.
    pub fn code(&self) -> Option<String> {
        match self {
            ServerError::Connect { source, .. } | ServerError::Lost { source, .. } => {
                source.raw_os_error().map(|n| format!("errno {n}"))
            }
            ServerError::Refused { fields, .. } => fields.code.map(|c| c.as_str().to_owned()),
            _ => None,
        }
    }

    /// The SQLSTATE to show the client: the server's own when it sent one.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            ServerError::Refused { fields, .. } => {
                fields.code.unwrap_or(SqlState::CONNECTION_FAILURE)
            }
            other => other.class().sqlstate(),
        }
    }
}

/// A client could not get a server.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// The pool stayed full for `acquire_timeout`.
    #[error("pool {pool} exhausted: no server connection became free within acquire_timeout {timeout:?} (waited {waited:?}; {waiting} client(s) waiting, {active} of max_size {max_size} servers busy)")]
    Timeout {
        /// `database/user`.
        pool: String,
        /// The limit.
        timeout: Duration,
        /// How long this client waited.
        waited: Duration,
        /// Clients still queued.
        waiting: usize,
        /// Servers in use.
        active: usize,
        /// The pool's limit.
        max_size: u32,
    },
    /// Opening a new server connection failed.
    #[error("pool {pool}: {source}")]
    Server {
        /// `database/user`.
        pool: String,
        /// Why.
        source: ServerError,
    },
    /// Connects to the pool's server keep failing: the circuit breaker is open and clients
    /// fail fast while pgtide probes.
    #[error("pool {pool}: server {server} is unavailable ({class}: {reason}); failing fast for the last {open_for:.1?} while pgtide probes it")]
    Unavailable {
        /// `database/user`.
        pool: String,
        /// `host:port`.
        server: String,
        /// The class of the connect failures that opened the breaker.
        class: FailureClass,
        /// The last connect failure.
        reason: String,
        /// How long the breaker has been open.
        open_for: Duration,
    },
    /// A per-database or per-user connection cap stayed full for `acquire_timeout`.
    #[error("pool {pool} exhausted: {cap} ({limit}) reached and no connection was freed within acquire_timeout {timeout:?} (waited {waited:?})")]
    CapReached {
        /// `database/user`.
        pool: String,
        /// Which cap, e.g. `max_db_connections of database app`.
        cap: String,
        /// Its value.
        limit: u32,
        /// The limit waited against.
        timeout: Duration,
        /// How long this client waited.
        waited: Duration,
    },
    /// The pool was removed (database dropped from the config) or pgtide is shutting down.
    #[error("pool {pool} is closed")]
    Closed {
        /// `database/user`.
        pool: String,
    },
}

impl AcquireError {
    /// The one class this failure belongs to.
    pub fn class(&self) -> FailureClass {
        match self {
            AcquireError::Timeout { .. } | AcquireError::CapReached { .. } => {
                FailureClass::AcquireTimeout
            }
            AcquireError::Server { source, .. } => source.class(),
            AcquireError::Unavailable { class, .. } => *class,
            AcquireError::Closed { .. } => FailureClass::ServerShutdown,
        }
    }

    /// A client of `pool` needing a new server while its server's breaker is open.
    pub fn unavailable(pool: &str, open: crate::breaker::BreakerOpen) -> Self {
        AcquireError::Unavailable {
            pool: pool.to_owned(),
            server: open.server,
            class: open.class,
            reason: open.reason,
            open_for: open.open_for,
        }
    }

    /// The SQLSTATE the client sees.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            AcquireError::Server { source, .. } => source.sqlstate(),
            other => other.class().sqlstate(),
        }
    }

    /// The failure report for this error, with the server, code and wait it knows; `message`
    /// is what the client is told (usually `self.to_string()`).
    pub fn failure<'a>(&'a self, pool: &'a str, message: &'a str) -> Failure<'a> {
        let mut f = Failure::new(pool, self.class(), message);
        match self {
            AcquireError::Timeout { waited, .. } | AcquireError::CapReached { waited, .. } => {
                f = f.elapsed(*waited)
            }
            AcquireError::Unavailable { open_for, .. } => f = f.elapsed(*open_for),
            AcquireError::Server { source, .. } => {
                if let Some(addr) = source.addr() {
                    f = f.server(addr);
                }
                f = f.code(source.code());
            }
            AcquireError::Closed { .. } => {}
        }
        f
    }

    /// A hint that tells the client's operator what to look at.
    pub fn hint(&self) -> &'static str {
        if let AcquireError::CapReached { .. } = self {
            return "Other pools of this database or user hold every allowed server connection. Raise max_db_connections / max_user_connections, or shrink the other pools.";
        }
        match self.class() {
            FailureClass::AcquireTimeout => "All server connections of this pool stayed busy. Look for long transactions, raise max_size, or raise acquire_timeout.",
            FailureClass::ConnectRefused | FailureClass::ConnectUnreachable | FailureClass::ConnectTimeout | FailureClass::DnsFailure => "pgtide cannot reach the database server; check that it is up and that host/port in the pgtide config are right.",
            FailureClass::ServerAuthFailed => "The database server rejected pgtide's credentials for this user; check the password in the pgtide config or auth file.",
            FailureClass::ServerTooManyConnections => "The database server is out of connection slots; lower pool sizes or raise max_connections.",
            FailureClass::ServerShutdown => "The database server is shutting down or starting up; retry shortly.",
            _ => "See the pgtide log for this pool.",
        }
    }
}

/// Why a client's startup settings could not be given to its session
/// ([`crate::pool::Pool::session_params`]).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// No server to validate them on.
    #[error(transparent)]
    Acquire(#[from] AcquireError),
    /// The server rejected a setting; the client gets this error, as from a direct login.
    #[error("{fields}")]
    Refused {
        /// What the server said (its SQLSTATE, message, hint).
        fields: Box<ErrorFields>,
    },
    /// The server broke while the settings were applied.
    #[error("pool {pool}: server connection lost while applying startup settings: {reason}")]
    Lost {
        /// `database/user`.
        pool: String,
        /// What went wrong.
        reason: String,
    },
}
