//! From accept to the first ReadyForQuery: startup packet (SSL/GSS negotiation, cancel
//! requests), client limit, database lookup, authentication, and the session's initial
//! parameters.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pgtide_protocol::startup::{StartupMessage, MAX_STARTUP_PACKET_LEN};
use pgtide_protocol::{
    encode, parse_startup, Severity, SqlState, StartupPacket, TransactionStatus,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::park::{drive, Parking};
use super::reply::fatal;
use super::session::Session;
use crate::error::SettingsError;
use crate::failure::FailureClass;
use crate::report::Failure;
use crate::server::StartupSettings;
use crate::shared::Shared;
use crate::stream::Stream;
use pgtide_config::{ClientTlsMode, PoolMode};
use pgtide_protocol::stream::StreamScanner;

/// A client that has not finished its startup packet in this long is dropped (slowloris).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// A client counted in `Shared::clients`, from its accept until its session ends, however it
/// ends (even a task dropped before it first ran): shutdown drains by this count. From login
/// on it also holds the client's place in the client list.
pub struct ClientSlot(Arc<Shared>, Option<crate::clients::Listing>);

impl ClientSlot {
    /// Counts one more client; returns the slot and the number of clients including it.
    pub fn take(shared: Arc<Shared>) -> (ClientSlot, usize) {
        let n = shared.clients.fetch_add(1, Relaxed) + 1;
        (ClientSlot(shared, None), n)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Relaxed);
    }
}

/// Serves one client connection until it ends or parks (`client/park.rs`); `n` is the client
/// count including it.
///
/// Admission and login run in their own boxed future: their state (startup buffer, SCRAM
/// exchange) is freed once the client is in. The session is boxed so that parking it moves a
/// pointer (`benches/compare.sh` measures the memory per idle client).
pub async fn handle_client(
    slot: ClientSlot,
    n: usize,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    parking: Parking,
) {
    let entry = Entry {
        slot,
        shutdown,
        parking,
    };
    if let Some(session) = Box::pin(admit(entry, n, tcp, peer)).await {
        drive(session).await;
    }
}

/// What a session is made with besides its login: carried through admission and login, and
/// dropped (uncounting the client) if the client never gets in.
struct Entry {
    slot: ClientSlot,
    shutdown: watch::Receiver<bool>,
    parking: Parking,
}

/// Refuses the `n`th client over `max_client_conn`, or logs it in.
async fn admit(entry: Entry, n: usize, tcp: TcpStream, peer: SocketAddr) -> Option<Box<Session>> {
    let shared = entry.slot.0.clone();
    let _ = tcp.set_nodelay(true);
    let mut stream = Stream::Plain(tcp);
    let max = shared.config().pgtide.max_client_conn as usize;
    if n > max {
        let message =
            format!("no more connections allowed: pgtide's max_client_conn ({max}) reached");
        shared
            .failures
            .report(Failure::new("-", FailureClass::ClientLimit, &message).client(peer));
        fatal(
            &mut stream,
            SqlState::TOO_MANY_CONNECTIONS,
            &message,
            Some("Raise pgtide.max_client_conn or reduce the number of client connections."),
        )
        .await;
        return None;
    }
    login(&shared, stream, peer, entry).await.map(Box::new)
}

/// Startup, database lookup, authentication and the initial parameters; `None` when the client
/// was refused (it has been told why) or left.
async fn login(
    shared: &Arc<Shared>,
    mut stream: Stream,
    peer: SocketAddr,
    entry: Entry,
) -> Option<Session> {
    let mut inbuf = BytesMut::new();
    let startup =
        match tokio::time::timeout(STARTUP_TIMEOUT, read_startup(shared, stream, &mut inbuf)).await
        {
            Ok(Some((upgraded, startup))) => {
                stream = upgraded;
                startup
            }
            Ok(None) => return None,
            Err(_) => {
                shared.failures.report(
                    Failure::new(
                        "-",
                        FailureClass::ProtocolViolation,
                        "startup packet not received in time",
                    )
                    .client(peer),
                );
                return None;
            }
        };
    let config = shared.config();
    if !stream.is_tls() && config.pgtide.tls.mode == ClientTlsMode::Require {
        let message = "pgtide requires SSL (pgtide.tls.mode = \"require\")";
        shared
            .failures
            .report(Failure::new("-", FailureClass::ClientAuthFailed, message).client(peer));
        fatal(
            &mut stream,
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            message,
            Some("Connect with sslmode=require or stronger."),
        )
        .await;
        return None;
    }
    let Some(user) = startup.user().map(str::to_owned) else {
        fatal(
            &mut stream,
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            "no PostgreSQL user name specified in startup packet",
            None,
        )
        .await;
        return None;
    };
    let database = startup.database_or_user().unwrap_or(&user).to_owned();
    if startup
        .param("replication")
        .is_some_and(|r| !matches!(r, "false" | "off" | "no" | "0"))
    {
        fatal(
            &mut stream,
            SqlState::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported by pgtide",
            Some("Connect replication clients to the server directly."),
        )
        .await;
        return None;
    }
    if !config.databases.contains_key(&database) {
        let message = format!("database \"{database}\" does not exist");
        shared.failures.report(
            Failure::new(
                &format!("{database}/{user}"),
                FailureClass::ClientAuthFailed,
                &message,
            )
            .client(peer),
        );
        fatal(
            &mut stream,
            SqlState::INVALID_CATALOG_NAME,
            &message,
            Some("pgtide serves only the databases listed under [databases] in its config."),
        )
        .await;
        return None;
    }
    let auth = shared.auth();
    if let Err(e) = auth.authenticate(&mut stream, &mut inbuf, &user).await {
        let class = match e {
            crate::auth::ClientAuthError::Protocol(_) => FailureClass::ProtocolViolation,
            _ => FailureClass::ClientAuthFailed,
        };
        let message = e.to_string();
        shared.failures.report(
            Failure::new(&format!("{database}/{user}"), class, &message)
                .client(peer)
                .code(Some(e.sqlstate().as_str().to_owned())),
        );
        fatal(&mut stream, e.sqlstate(), &message, None).await;
        return None;
    }
    let Some(pool) = shared.pool_for(&database, &user) else {
        fatal(
            &mut stream,
            SqlState::INVALID_CATALOG_NAME,
            &format!("database \"{database}\" does not exist"),
            None,
        )
        .await;
        return None;
    };
    let settings = Arc::new(StartupSettings::from_startup(&startup));
    let params = match pool.session_params(&settings).await {
        Ok(p) => p,
        Err(SettingsError::Acquire(e)) => {
            let message = e.to_string();
            shared
                .failures
                .report(e.failure(pool.name(), &message).client(peer));
            fatal(&mut stream, e.sqlstate(), &message, Some(e.hint())).await;
            return None;
        }
        Err(SettingsError::Refused { fields }) => {
            // As PostgreSQL refuses a login with a bad setting: FATAL, the server's words.
            let code = fields.code.unwrap_or(SqlState::INVALID_PARAMETER_VALUE);
            let message = fields.message.clone().unwrap_or_default();
            shared.failures.report(
                Failure::new(
                    pool.name(),
                    FailureClass::ClientAuthFailed,
                    &format!("startup setting refused by the server: {message}"),
                )
                .client(peer)
                .code(Some(code.as_str().to_owned())),
            );
            let mut out = BytesMut::with_capacity(128 + message.len());
            encode::error_response(
                &mut out,
                Severity::Fatal,
                code,
                &message,
                fields.detail.as_deref(),
                fields.hint.as_deref(),
            );
            let _ = stream.write_all(&out).await;
            return None;
        }
        Err(e @ SettingsError::Lost { .. }) => {
            let message = e.to_string();
            shared.failures.report(
                Failure::new(pool.name(), FailureClass::ServerConnLost, &message).client(peer),
            );
            fatal(&mut stream, SqlState::CONNECTION_FAILURE, &message, None).await;
            return None;
        }
    };
    let mode = pool.settings().mode;
    let registration = shared.cancels.register();
    let mut entry = entry;
    entry.slot.1 = Some(shared.registry.register(
        crate::clients::ClientInfo {
            addr: peer,
            database: database.clone(),
            user: user.clone(),
            since: std::time::SystemTime::now(),
        },
        registration.slot.clone(),
    ));
    let mut out = BytesMut::with_capacity(512);
    encode::auth_ok(&mut out);
    // What PostgreSQL reports at login: its reported settings, with the client's values.
    for (name, value) in params.reported() {
        encode::parameter_status(&mut out, name, value);
    }
    encode::backend_key_data(&mut out, registration.key());
    encode::ready_for_query(&mut out, TransactionStatus::Idle);
    if stream.write_all(&out).await.is_err() {
        return None;
    }
    drop(out);
    let pipelined = !inbuf.is_empty();
    // Login buffers are not needed any more; an idle client should hold no memory but its task.
    drop(inbuf);
    if pipelined {
        // Bytes after the password message (a pipelining client): nothing legitimate is sent
        // before ReadyForQuery, so refuse rather than guess.
        let message = "unexpected data before ReadyForQuery";
        shared.failures.report(
            Failure::new(pool.name(), FailureClass::ProtocolViolation, message).client(peer),
        );
        fatal(&mut stream, SqlState::PROTOCOL_VIOLATION, message, None).await;
        return None;
    }
    Some(Session {
        failures: shared.failures.clone(),
        // In session mode the client's server is one started with its settings.
        startup: (mode == PoolMode::Session && !settings.is_empty()).then_some(settings),
        mode,
        settings: pool.settings(),
        settings_seen: 0,
        pool,
        client: stream,
        peer,
        params,
        cancel: registration,
        client_scan: StreamScanner::new(config.pgtide.max_message_size as usize),
        shutdown: entry.shutdown,
        slow: None,
        prepared: None,
        parking: entry.parking,
        // Pools open connections long before they use them: park at once.
        park_now: true,
        _slot: entry.slot,
        slow_format: (
            config.log.slow_query_sql_chars,
            config.log.slow_query_redact,
        ),
    })
}

/// Reads the startup packet, answering SSL and GSS requests and serving cancel requests.
/// `None` means the connection is done (cancel served, bad packet answered, client gone).
async fn read_startup(
    shared: &Shared,
    mut stream: Stream,
    inbuf: &mut BytesMut,
) -> Option<(Stream, StartupMessage)> {
    loop {
        match parse_startup(inbuf, MAX_STARTUP_PACKET_LEN) {
            Ok(Some(StartupPacket::Startup(msg))) => return Some((stream, msg)),
            Ok(Some(StartupPacket::SslRequest)) => {
                let acceptor = shared.tls_acceptor.as_ref().filter(|_| !stream.is_tls());
                let mut out = BytesMut::with_capacity(1);
                encode::encryption_response(&mut out, acceptor.is_some());
                stream.write_all(&out).await.ok()?;
                if let Some(acceptor) = acceptor {
                    if !inbuf.is_empty() {
                        // Bytes sent before the handshake could be injected by a man in the
                        // middle (CVE-2021-23222); refuse rather than trust them.
                        shared.failures.report(Failure::new(
                            "-",
                            FailureClass::ProtocolViolation,
                            "data after SSLRequest before the TLS handshake",
                        ));
                        return None;
                    }
                    let Stream::Plain(tcp) = stream else {
                        return None;
                    };
                    match acceptor.accept(tcp).await {
                        Ok(tls) => stream = Stream::Accepted(Box::new(tls)),
                        Err(e) => {
                            let message = format!("client TLS handshake failed: {e}");
                            shared.failures.report(Failure::new(
                                "-",
                                FailureClass::ProtocolViolation,
                                &message,
                            ));
                            return None;
                        }
                    }
                }
            }
            Ok(Some(StartupPacket::GssEncRequest)) => {
                // GSSAPI encryption is not supported; 'N' lets the client continue or try SSL.
                let mut out = BytesMut::with_capacity(1);
                encode::encryption_response(&mut out, false);
                stream.write_all(&out).await.ok()?;
            }
            Ok(Some(StartupPacket::Cancel(key))) => {
                shared.cancels.cancel(key).await;
                return None;
            }
            Ok(None) => {
                inbuf.reserve(512);
                if stream.read_buf(inbuf).await.ok()? == 0 {
                    return None;
                }
            }
            Err(e) => {
                let message = format!("bad startup packet: {e}");
                shared.failures.report(Failure::new(
                    "-",
                    FailureClass::ProtocolViolation,
                    &message,
                ));
                let mut out = BytesMut::new();
                encode::protocol_error_response(&mut out, Severity::Fatal, &e);
                let _ = stream.write_all(&out).await;
                return None;
            }
        }
    }
}
