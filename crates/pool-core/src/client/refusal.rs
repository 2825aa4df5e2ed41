//! Turning a client away, one way: a [`Refusal`] says everything about it (failure class,
//! SQLSTATE, message, hint, what the event records), and [`refuse`] counts it through
//! [`Failures::report`] and sends the FATAL. Building refusals by hand at each site is how
//! some went uncounted; with one type and one path, every refusal is counted, logged and in
//! the event ring, and its words are in one place (the constructors below).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use pgtide_protocol::{encode, ErrorFields, ProtocolError, Severity, SqlState};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::auth::ClientAuthError;
use crate::error::AcquireError;
use crate::failure::FailureClass;
use crate::report::{Failure, Failures};

/// Why pgtide refuses a client (at login) or ends its session, as the client and the operator
/// are told it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(super) struct Refusal {
    /// The one failure class it is counted under.
    pub class: FailureClass,
    /// The SQLSTATE the client gets.
    pub code: SqlState,
    /// What the client is told (and the event says).
    pub message: String,
    /// A DETAIL field, when the words come from a server that sent one.
    pub detail: Option<String>,
    /// What the client's operator can do about it.
    pub hint: Option<String>,
    /// The server involved, for the event.
    pub server: Option<SocketAddr>,
    /// How long the client waited or the operation ran, for the event.
    pub elapsed: Option<Duration>,
    /// The errno or the server's SQLSTATE behind it, for the event, when that is not `code`.
    pub cause: Option<String>,
}

impl Refusal {
    /// A refusal with only the required fields; the builder methods add the rest.
    pub(super) fn new(class: FailureClass, code: SqlState, message: impl Into<String>) -> Self {
        Refusal {
            class,
            code,
            message: message.into(),
            detail: None,
            hint: None,
            server: None,
            elapsed: None,
            cause: None,
        }
    }

    /// With a hint for the client.
    pub(super) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// With the server involved.
    pub(super) fn server(mut self, addr: SocketAddr) -> Self {
        self.server = Some(addr);
        self
    }

    /// With how long it took.
    pub(super) fn elapsed(mut self, d: Duration) -> Self {
        self.elapsed = Some(d);
        self
    }

    /// `max_client_conn` is reached.
    pub(super) fn client_limit(max: usize) -> Self {
        Refusal::new(
            FailureClass::ClientLimit,
            SqlState::TOO_MANY_CONNECTIONS,
            format!("no more connections allowed: pgtide's max_client_conn ({max}) reached"),
        )
        .hint("Raise pgtide.max_client_conn or reduce the number of client connections.")
    }

    /// The startup packet did not arrive within the startup timeout.
    pub(super) fn startup_timeout() -> Self {
        Refusal::new(
            FailureClass::ProtocolViolation,
            SqlState::PROTOCOL_VIOLATION,
            "startup packet not received in time",
        )
    }

    /// The startup packet could not be read (in the protocol crate's words, which say what
    /// was wrong with it).
    pub(super) fn bad_startup(e: &ProtocolError) -> Self {
        Refusal::new(FailureClass::ProtocolViolation, e.sqlstate(), e.to_string())
    }

    /// Bytes arrived after an SSLRequest before the TLS handshake (CVE-2021-23222).
    pub(super) fn data_before_tls() -> Self {
        Refusal::new(
            FailureClass::ProtocolViolation,
            SqlState::PROTOCOL_VIOLATION,
            "data after SSLRequest before the TLS handshake",
        )
    }

    /// The client's TLS handshake failed.
    pub(super) fn tls_handshake(e: &std::io::Error) -> Self {
        Refusal::new(
            FailureClass::ProtocolViolation,
            SqlState::PROTOCOL_VIOLATION,
            format!("client TLS handshake failed: {e}"),
        )
    }

    /// A plain connection where TLS is required.
    pub(super) fn tls_required() -> Self {
        Refusal::new(
            FailureClass::ClientAuthFailed,
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            "pgtide requires SSL (pgtide.tls.mode = \"require\")",
        )
        .hint("Connect with sslmode=require or stronger.")
    }

    /// The startup packet names no user (PostgreSQL's words and SQLSTATE; a startup packet
    /// without its one required parameter is malformed).
    pub(super) fn no_user() -> Self {
        Refusal::new(
            FailureClass::ProtocolViolation,
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            "no PostgreSQL user name specified in startup packet",
        )
    }

    /// A replication connection (`replication=true|database`).
    pub(super) fn replication() -> Self {
        Refusal::new(
            FailureClass::ProtocolViolation,
            SqlState::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported by pgtide",
        )
        .hint("Connect replication clients to the server directly.")
    }

    /// The database is not in the config (before authentication, or removed by a reload
    /// during it).
    pub(super) fn unknown_database(database: &str) -> Self {
        Refusal::new(
            FailureClass::ClientAuthFailed,
            SqlState::INVALID_CATALOG_NAME,
            format!("database \"{database}\" does not exist"),
        )
        .hint("pgtide serves only the databases listed under [databases] in its config.")
    }

    /// Client authentication failed.
    pub(super) fn auth(e: &ClientAuthError) -> Self {
        let class = match e {
            ClientAuthError::Protocol(_) => FailureClass::ProtocolViolation,
            _ => FailureClass::ClientAuthFailed,
        };
        Refusal::new(class, e.sqlstate(), e.to_string())
    }

    /// No server could be had (to validate the startup settings, or to run a transaction).
    pub(super) fn acquire(e: &AcquireError) -> Self {
        let mut r = Refusal::new(e.class(), e.sqlstate(), e.to_string()).hint(e.hint());
        match e {
            AcquireError::Timeout { waited, .. } | AcquireError::CapReached { waited, .. } => {
                r.elapsed = Some(*waited);
            }
            AcquireError::Unavailable { open_for, .. } => r.elapsed = Some(*open_for),
            AcquireError::Server { source, .. } => {
                r.server = source.addr();
                r.cause = source.code();
            }
            AcquireError::Closed { .. } => {}
        }
        r
    }

    /// The server rejected a startup setting: as PostgreSQL refuses such a login, FATAL with
    /// the server's own SQLSTATE, message, detail and hint.
    pub(super) fn setting_refused(fields: &ErrorFields) -> Self {
        let code = fields.code.unwrap_or(SqlState::INVALID_PARAMETER_VALUE);
        let mut r = Refusal::new(
            FailureClass::ClientAuthFailed,
            code,
            fields.message.clone().unwrap_or_default(),
        );
        r.detail = fields.detail.clone();
        r.hint = fields.hint.clone();
        r
    }

    /// Bytes after the password message: nothing legitimate is sent before ReadyForQuery, so
    /// pgtide refuses rather than guesses.
    pub(super) fn pipelined_login() -> Self {
        Refusal::new(
            FailureClass::ProtocolViolation,
            SqlState::PROTOCOL_VIOLATION,
            "unexpected data before ReadyForQuery",
        )
    }

    /// The client broke the protocol.
    pub(super) fn protocol(e: &ProtocolError) -> Self {
        Refusal::new(FailureClass::ProtocolViolation, e.sqlstate(), e.to_string())
    }

    /// Counts it, logs it (rate-limited) and records the event, without telling the client
    /// (for the cases where nothing can be sent: the connection is mid-TLS-handshake or
    /// already given up).
    pub(super) fn report(&self, failures: &Failures, pool: &str, client: SocketAddr) {
        let mut f = Failure::new(pool, self.class, &self.message)
            .client(client)
            .code(Some(
                self.cause
                    .clone()
                    .unwrap_or_else(|| self.code.as_str().to_owned()),
            ));
        f.server = self.server;
        f.elapsed = self.elapsed;
        failures.report(f);
    }
}

/// Refuses the client: counts `refusal` for `pool` (`database/user`, or `-` while unknown) and
/// `client`, then sends it as a FATAL ErrorResponse. Write errors are ignored: the client may
/// already be gone, and there is nobody left to tell.
pub(super) async fn refuse<S: AsyncWrite + Unpin>(
    stream: &mut S,
    failures: &Failures,
    pool: &str,
    client: SocketAddr,
    refusal: &Refusal,
) {
    refusal.report(failures, pool, client);
    let mut out = BytesMut::with_capacity(128 + refusal.message.len());
    encode::error_response(
        &mut out,
        Severity::Fatal,
        refusal.code,
        &refusal.message,
        refusal.detail.as_deref(),
        refusal.hint.as_deref(),
    );
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventRing;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    fn failures() -> (Failures, Arc<EventRing>) {
        let ring = Arc::new(EventRing::default());
        (Failures::new(ring.clone()), ring)
    }

    /// The fields of the one ErrorResponse in `bytes`, by field type.
    fn error_fields(bytes: &[u8]) -> std::collections::BTreeMap<char, String> {
        assert_eq!(bytes[0], b'E', "an ErrorResponse");
        let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        assert_eq!(bytes.len(), len + 1, "and nothing else");
        bytes[5..]
            .split(|&b| b == 0)
            .filter(|f| !f.is_empty())
            .map(|f| (f[0] as char, String::from_utf8_lossy(&f[1..]).into_owned()))
            .collect()
    }

    #[tokio::test]
    async fn a_refusal_is_counted_recorded_and_sent_as_fatal() {
        let (failures, ring) = failures();
        let (mut ours, mut theirs) = tokio::io::duplex(4096);
        let peer: SocketAddr = "10.0.0.1:5555".parse().unwrap();
        refuse(
            &mut ours,
            &failures,
            "app/app",
            peer,
            &Refusal::unknown_database("nope"),
        )
        .await;
        drop(ours);
        let mut sent = Vec::new();
        theirs.read_to_end(&mut sent).await.unwrap();
        let fields = error_fields(&sent);
        assert_eq!(fields[&'S'], "FATAL");
        assert_eq!(fields[&'C'], "3D000");
        assert_eq!(fields[&'M'], "database \"nope\" does not exist");
        assert!(fields[&'H'].contains("[databases]"));
        assert_eq!(failures.get(FailureClass::ClientAuthFailed), 1);
        let events = ring.recent(10);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].pool, "app/app");
        assert_eq!(events[0].client, Some(peer));
        assert_eq!(events[0].code.as_deref(), Some("3D000"));
        assert_eq!(events[0].class, Some(FailureClass::ClientAuthFailed));
    }

    #[tokio::test]
    async fn a_servers_refusal_keeps_its_words() {
        let (failures, _ring) = failures();
        let (mut ours, mut theirs) = tokio::io::duplex(4096);
        let fields = ErrorFields {
            code: Some(SqlState::new(b"22023")),
            message: Some("invalid value for parameter \"DateStyle\": \"x\"".into()),
            detail: Some("Unrecognized key word: \"x\".".into()),
            ..ErrorFields::default()
        };
        let peer = "127.0.0.1:1".parse().unwrap();
        refuse(
            &mut ours,
            &failures,
            "app/app",
            peer,
            &Refusal::setting_refused(&fields),
        )
        .await;
        drop(ours);
        let mut sent = Vec::new();
        theirs.read_to_end(&mut sent).await.unwrap();
        let got = error_fields(&sent);
        assert_eq!(got[&'C'], "22023");
        assert_eq!(got[&'D'], "Unrecognized key word: \"x\".");
        assert!(!got.contains_key(&'H'));
        assert_eq!(failures.get(FailureClass::ClientAuthFailed), 1);
    }

    #[test]
    fn the_refusals_once_uncounted_have_classes_and_postgres_codes() {
        let no_user = Refusal::no_user();
        assert_eq!(no_user.class, FailureClass::ProtocolViolation);
        assert_eq!(no_user.code, SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
        let replication = Refusal::replication();
        assert_eq!(replication.code, SqlState::FEATURE_NOT_SUPPORTED);
        assert!(replication.hint.is_some());
        assert_eq!(
            Refusal::unknown_database("x").class,
            FailureClass::ClientAuthFailed
        );
        assert_eq!(
            Refusal::pipelined_login().code,
            SqlState::PROTOCOL_VIOLATION
        );
    }

    #[test]
    fn a_wrong_password_and_a_bad_auth_message_are_told_apart() {
        let wrong = Refusal::auth(&ClientAuthError::Failed { user: "u".into() });
        assert_eq!(wrong.class, FailureClass::ClientAuthFailed);
        assert_eq!(wrong.code, SqlState::INVALID_PASSWORD);
        assert_eq!(
            wrong.message,
            "password authentication failed for user \"u\""
        );
        let garbled = Refusal::auth(&ClientAuthError::Protocol(
            ProtocolError::InvalidFrameLength { tag: b'p', len: 2 },
        ));
        assert_eq!(garbled.class, FailureClass::ProtocolViolation);
    }

    #[test]
    fn the_cause_behind_a_refusal_is_what_the_event_records() {
        let (failures, ring) = failures();
        let e = AcquireError::Server {
            pool: "app/app".into(),
            source: crate::error::ServerError::Connect {
                addr: "127.0.0.1:9".parse().unwrap(),
                source: std::io::Error::from_raw_os_error(111),
            },
        };
        let r = Refusal::acquire(&e);
        assert_eq!(r.class, FailureClass::ConnectRefused);
        r.report(&failures, "app/app", "127.0.0.1:2".parse().unwrap());
        let event = &ring.recent(1)[0];
        assert_eq!(event.code.as_deref(), Some("errno 111"));
        assert_eq!(event.server.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(failures.get(FailureClass::ConnectRefused), 1);
    }
}
