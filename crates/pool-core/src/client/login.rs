//! From accept to the first ReadyForQuery: startup packet (SSL/GSS negotiation, cancel
//! requests), client limit, database lookup, authentication, and the session's initial
//! parameters. Every refusal on the way is a [`Refusal`] sent by [`refuse`]
//! (`client/refusal.rs`), which counts it first.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pgtide_config::{ClientTlsMode, Config, PoolMode};
use pgtide_protocol::startup::{CancelKey, StartupMessage, MAX_STARTUP_PACKET_LEN};
use pgtide_protocol::stream::StreamScanner;
use pgtide_protocol::{encode, parse_startup, SqlState, StartupPacket, TransactionStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::park::{drive, Parking};
use super::refusal::{refuse, Refusal};
use super::session::Session;
use crate::error::SettingsError;
use crate::failure::FailureClass;
use crate::server::{ParamSet, StartupSettings};
use crate::shared::Shared;
use crate::stream::Stream;

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
        let refusal = Refusal::client_limit(max);
        refuse(&mut stream, &shared.failures, "-", peer, &refusal).await;
        return None;
    }
    login(&shared, stream, peer, entry).await.map(Box::new)
}

/// Startup, database lookup, authentication and the initial parameters; `None` when the client
/// was refused (it has been told why, and the refusal counted) or left.
async fn login(
    shared: &Arc<Shared>,
    stream: Stream,
    peer: SocketAddr,
    entry: Entry,
) -> Option<Session> {
    let mut inbuf = BytesMut::new();
    let read = read_startup(shared, stream, peer, &mut inbuf);
    let (mut stream, startup) = match tokio::time::timeout(STARTUP_TIMEOUT, read).await {
        Ok(Some(read)) => read,
        Ok(None) => return None,
        Err(_) => {
            // A slowloris: nothing to tell it.
            Refusal::startup_timeout().report(&shared.failures, "-", peer);
            return None;
        }
    };
    let config = shared.config();
    let (user, database) = match identify(&config, &stream, &startup) {
        Ok(who) => who,
        Err(refusal) => return refused(shared, &mut stream, "-", peer, *refusal).await,
    };
    // The pool's name before the pool is known (made only for a refusal).
    let label = || format!("{database}/{user}");
    if !config.databases.contains_key(&database) {
        let refusal = Refusal::unknown_database(&database);
        return refused(shared, &mut stream, &label(), peer, refusal).await;
    }
    let auth = shared.auth();
    if let Err(e) = auth.authenticate(&mut stream, &mut inbuf, &user).await {
        return refused(shared, &mut stream, &label(), peer, Refusal::auth(&e)).await;
    }
    // The database may have left the config (a reload) while the client authenticated.
    let Some(pool) = shared.pool_for(&database, &user) else {
        let refusal = Refusal::unknown_database(&database);
        return refused(shared, &mut stream, &label(), peer, refusal).await;
    };
    let settings = Arc::new(StartupSettings::from_startup(&startup));
    let params = match pool.session_params(&settings).await {
        Ok(p) => p,
        Err(e) => {
            let refusal = settings_refusal(&e);
            return refused(shared, &mut stream, pool.name(), peer, refusal).await;
        }
    };
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
    welcome(&mut stream, &params, registration.key()).await?;
    let pipelined = !inbuf.is_empty();
    // Login buffers are not needed any more; an idle client should hold no memory but its task.
    drop(inbuf);
    if pipelined {
        let refusal = Refusal::pipelined_login();
        return refused(shared, &mut stream, pool.name(), peer, refusal).await;
    }
    let mode = pool.settings().mode;
    Some(Session {
        failures: shared.failures.clone(),
        // In session mode the client's server is one started with its settings, when they
        // change anything from the pool's defaults.
        startup: (mode == PoolMode::Session && params.has_overrides()).then_some(settings),
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

/// Refuses the client ([`refuse`]) and ends its login.
async fn refused(
    shared: &Shared,
    stream: &mut Stream,
    pool: &str,
    peer: SocketAddr,
    refusal: Refusal,
) -> Option<Session> {
    refuse(stream, &shared.failures, pool, peer, &refusal).await;
    None
}

/// Who the startup packet says the client is (user, database), unless pgtide does not serve
/// it at all: a plain connection where TLS is required, no user name, a replication
/// connection (boxed: an error this size would weigh on every login's happy path).
fn identify(
    config: &Config,
    stream: &Stream,
    startup: &StartupMessage,
) -> Result<(String, String), Box<Refusal>> {
    if !stream.is_tls() && config.pgtide.tls.mode == ClientTlsMode::Require {
        return Err(Box::new(Refusal::tls_required()));
    }
    let Some(user) = startup.user().map(str::to_owned) else {
        return Err(Box::new(Refusal::no_user()));
    };
    let database = startup.database_or_user().unwrap_or(&user).to_owned();
    if startup
        .param("replication")
        .is_some_and(|r| !matches!(r, "false" | "off" | "no" | "0"))
    {
        return Err(Box::new(Refusal::replication()));
    }
    Ok((user, database))
}

/// Why the client's startup settings could not be given to its session, as a refusal.
fn settings_refusal(e: &SettingsError) -> Refusal {
    match e {
        SettingsError::Acquire(e) => Refusal::acquire(e),
        SettingsError::Refused { fields } => Refusal::setting_refused(fields),
        e @ SettingsError::Lost { .. } => Refusal::new(
            FailureClass::ServerConnLost,
            SqlState::CONNECTION_FAILURE,
            e.to_string(),
        ),
    }
}

/// Sends what PostgreSQL sends after a successful login: AuthenticationOk, its reported
/// settings with the client's values, BackendKeyData (pgtide's own key) and ReadyForQuery.
/// `None` when the client is gone.
async fn welcome(stream: &mut Stream, params: &ParamSet, key: CancelKey) -> Option<()> {
    let mut out = BytesMut::with_capacity(512);
    encode::auth_ok(&mut out);
    for (name, value) in params.reported() {
        encode::parameter_status(&mut out, name, value);
    }
    encode::backend_key_data(&mut out, key);
    encode::ready_for_query(&mut out, TransactionStatus::Idle);
    stream.write_all(&out).await.ok()
}

/// Reads the startup packet, answering SSL and GSS requests and serving cancel requests.
/// `None` means the connection is done (cancel served, bad packet answered, client gone).
async fn read_startup(
    shared: &Shared,
    mut stream: Stream,
    peer: SocketAddr,
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
                        // middle (CVE-2021-23222); refuse rather than trust them. The client
                        // expects a handshake now, not an ErrorResponse.
                        Refusal::data_before_tls().report(&shared.failures, "-", peer);
                        return None;
                    }
                    let Stream::Plain(tcp) = stream else {
                        return None;
                    };
                    match acceptor.accept(tcp).await {
                        Ok(tls) => stream = Stream::Accepted(Box::new(tls)),
                        Err(e) => {
                            Refusal::tls_handshake(&e).report(&shared.failures, "-", peer);
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
                let refusal = Refusal::bad_startup(&e);
                refuse(&mut stream, &shared.failures, "-", peer, &refusal).await;
                return None;
            }
        }
    }
}
