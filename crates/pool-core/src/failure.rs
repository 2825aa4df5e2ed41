//! Every failure pgtide reports carries exactly one [`FailureClass`]: the same word in the
//! metric label, the log event, the admin API's event list and the client's error message, so an
//! SRE can go from a client's stack trace to the dashboard panel without translating.

use std::fmt;
use std::io;

use pgtide_protocol::SqlState;

/// The fixed set of failure classes (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// TCP connect, TLS or server authentication did not finish within `connect_timeout`.
    ConnectTimeout,
    /// The server's address refused the TCP connection (ECONNREFUSED).
    ConnectRefused,
    /// No route to the server (EHOSTUNREACH, ENETUNREACH).
    ConnectUnreachable,
    /// The server's host name did not resolve.
    DnsFailure,
    /// The TLS handshake with the server failed.
    TlsFailure,
    /// The server rejected pgtide's credentials (28P01, 28000).
    ServerAuthFailed,
    /// The server has no connection slots left (53300).
    ServerTooManyConnections,
    /// The server is shutting down or starting up (57P01, 57P02, 57P03).
    ServerShutdown,
    /// An established server connection broke (ECONNRESET, EPIPE, EOF).
    ServerConnLost,
    /// A client waited longer than `acquire_timeout` for a server: the pool is exhausted.
    AcquireTimeout,
    /// The server cancelled a statement at `statement_timeout`.
    StatementTimeout,
    /// pgtide cancelled a query at `query_timeout`.
    QueryTimeout,
    /// A client sat idle longer than `client_idle_timeout`.
    ClientIdleTimeout,
    /// A client sat idle inside a transaction longer than `idle_in_transaction_timeout`.
    IdleInTransactionTimeout,
    /// `max_client_conn` (or a per-user/database client cap) was reached.
    ClientLimit,
    /// A client failed authentication (wrong password, unknown user).
    ClientAuthFailed,
    /// A peer sent bytes that are not valid protocol (malformed, oversized, wrong version).
    ProtocolViolation,
}

impl FailureClass {
    /// All classes, for pre-registering metric series and documentation tests.
    pub const ALL: [FailureClass; 17] = [
        FailureClass::ConnectTimeout,
        FailureClass::ConnectRefused,
        FailureClass::ConnectUnreachable,
        FailureClass::DnsFailure,
        FailureClass::TlsFailure,
        FailureClass::ServerAuthFailed,
        FailureClass::ServerTooManyConnections,
        FailureClass::ServerShutdown,
        FailureClass::ServerConnLost,
        FailureClass::AcquireTimeout,
        FailureClass::StatementTimeout,
        FailureClass::QueryTimeout,
        FailureClass::ClientIdleTimeout,
        FailureClass::IdleInTransactionTimeout,
        FailureClass::ClientLimit,
        FailureClass::ClientAuthFailed,
        FailureClass::ProtocolViolation,
    ];

    /// The label value: snake_case, stable, documented in docs/failures.md.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureClass::ConnectTimeout => "connect_timeout",
            FailureClass::ConnectRefused => "connect_refused",
            FailureClass::ConnectUnreachable => "connect_unreachable",
            FailureClass::DnsFailure => "dns_failure",
            FailureClass::TlsFailure => "tls_failure",
            FailureClass::ServerAuthFailed => "server_auth_failed",
            FailureClass::ServerTooManyConnections => "server_too_many_connections",
            FailureClass::ServerShutdown => "server_shutdown",
            FailureClass::ServerConnLost => "server_conn_lost",
            FailureClass::AcquireTimeout => "acquire_timeout",
            FailureClass::StatementTimeout => "statement_timeout",
            FailureClass::QueryTimeout => "query_timeout",
            FailureClass::ClientIdleTimeout => "client_idle_timeout",
            FailureClass::IdleInTransactionTimeout => "idle_in_transaction_timeout",
            FailureClass::ClientLimit => "client_limit",
            FailureClass::ClientAuthFailed => "client_auth_failed",
            FailureClass::ProtocolViolation => "protocol_violation",
        }
    }

    /// The SQLSTATE a client sees for this class when pgtide itself reports it.
    pub fn sqlstate(self) -> SqlState {
        use FailureClass::*;
        match self {
            ConnectTimeout | ConnectRefused | ConnectUnreachable | DnsFailure | TlsFailure
            | ServerConnLost => SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            ServerAuthFailed => SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            ServerTooManyConnections | AcquireTimeout | ClientLimit => {
                SqlState::TOO_MANY_CONNECTIONS
            }
            ServerShutdown => SqlState::CANNOT_CONNECT_NOW,
            StatementTimeout | QueryTimeout => SqlState::QUERY_CANCELED,
            ClientIdleTimeout => SqlState::IDLE_SESSION_TIMEOUT,
            IdleInTransactionTimeout => SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            ClientAuthFailed => SqlState::INVALID_PASSWORD,
            ProtocolViolation => SqlState::PROTOCOL_VIOLATION,
        }
    }

    /// The class of a connect-phase socket error, by errno as users know them.
    pub fn from_connect_error(e: &io::Error) -> FailureClass {
        match e.raw_os_error() {
            Some(libc_errno::ECONNREFUSED) => FailureClass::ConnectRefused,
            Some(libc_errno::EHOSTUNREACH) | Some(libc_errno::ENETUNREACH) => {
                FailureClass::ConnectUnreachable
            }
            Some(libc_errno::ETIMEDOUT) => FailureClass::ConnectTimeout,
            _ => match e.kind() {
                io::ErrorKind::ConnectionRefused => FailureClass::ConnectRefused,
                io::ErrorKind::TimedOut => FailureClass::ConnectTimeout,
                _ => FailureClass::ServerConnLost,
            },
        }
    }

    /// The class of an ErrorResponse a server sent while pgtide connected or used it.
    pub fn from_server_sqlstate(code: &str) -> Option<FailureClass> {
        match code {
            "53300" => Some(FailureClass::ServerTooManyConnections),
            "57P01" | "57P02" | "57P03" => Some(FailureClass::ServerShutdown),
            "28P01" | "28000" => Some(FailureClass::ServerAuthFailed),
            _ => None,
        }
    }
}

/// errno values on Linux, spelled out so pool-core needs no libc dependency for four numbers.
mod libc_errno {
    pub const ECONNREFUSED: i32 = 111;
    pub const EHOSTUNREACH: i32 = 113;
    pub const ENETUNREACH: i32 = 101;
    pub const ETIMEDOUT: i32 = 110;
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FailureClass {
    /// True for failures on pgtide's side of the pool or the server's (logged as warnings);
    /// false for what a client did (logged as info).
    pub const fn is_server_side(self) -> bool {
        !matches!(
            self,
            FailureClass::ClientIdleTimeout
                | FailureClass::IdleInTransactionTimeout
                | FailureClass::ClientLimit
                | FailureClass::ClientAuthFailed
                | FailureClass::ProtocolViolation
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for c in FailureClass::ALL {
            assert!(seen.insert(c.as_str()));
            assert!(c
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn errno_mapping() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(
            FailureClass::from_connect_error(&e(111)),
            FailureClass::ConnectRefused
        );
        assert_eq!(
            FailureClass::from_connect_error(&e(113)),
            FailureClass::ConnectUnreachable
        );
        assert_eq!(
            FailureClass::from_connect_error(&e(101)),
            FailureClass::ConnectUnreachable
        );
        assert_eq!(
            FailureClass::from_connect_error(&e(110)),
            FailureClass::ConnectTimeout
        );
        assert_eq!(
            FailureClass::from_server_sqlstate("57P03"),
            Some(FailureClass::ServerShutdown)
        );
        assert_eq!(
            FailureClass::from_server_sqlstate("53300"),
            Some(FailureClass::ServerTooManyConnections)
        );
    }
}
